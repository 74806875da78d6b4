//! A client connection's lifetime as its worker watches it: how many requests it
//! is answering, how long it has had none, and whether it must drain or close.
//!
//! Why not a timer per request: hyper's `header_read_timeout` boxes a fresh
//! sleep for every request head, registers it in the runtime's timer wheel when
//! the connection waits and removes it again when the head arrives, and
//! hyper-util's graceful-shutdown watcher polls a `watch` channel on every wake
//! of every connection — about a thousand instructions per proxied request, and
//! code that crowds the instruction cache. Here a request costs two counter
//! updates; the worker sweeps its connections a few times per timeout instead
//! and closes those that had no request in flight for the whole timeout (a slow
//! request head, or an idle keep-alive connection: the slow-loris guard), and at
//! shutdown asks each to finish what it is answering and close.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::Duration;

/// What the worker and the connection's requests share about one connection.
#[derive(Debug, Default)]
pub struct ConnLife {
    /// Requests being answered now (HTTP/2 may answer several at once).
    in_flight: AtomicU32,
    /// Sweeps in a row that found no request in flight.
    idle_sweeps: AtomicU32,
    /// Finish the requests in flight, then close (shutdown).
    drain: AtomicBool,
    /// Close now (timed out).
    close: AtomicBool,
    /// The connection's task has ended; the worker forgets it.
    done: AtomicBool,
    /// Wakes the connection's task so it sees `drain` or `close`.
    waker: Mutex<Option<Waker>>,
}

/// How often a worker sweeps and after how many idle sweeps it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPlan {
    /// Time between sweeps.
    pub every: Duration,
    /// A connection is closed at the sweep that finds it idle for the
    /// `limit + 1`-th time in a row: idle for at least `limit × every`, the
    /// timeout, and at most one sweep longer.
    pub limit: u32,
}

impl SweepPlan {
    /// Four sweeps per timeout (closing within 1.25× of it), at most one per
    /// second and at least every 10 ms.
    pub fn for_timeout(timeout: Duration) -> Self {
        let every = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let limit = timeout.as_nanos().div_ceil(every.as_nanos().max(1));
        SweepPlan {
            every,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    }
}

impl ConnLife {
    /// A request started on this connection.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A request on this connection ended (answered, or abandoned).
    pub fn end(&self) {
        // Saturating: an `end` without its `begin` must not wrap to "busy forever".
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.idle_sweeps.store(0, Ordering::Relaxed);
    }

    /// One sweep of the worker: counts an idle sweep and, past the plan's limit,
    /// tells the connection to close. Returns whether the connection is still
    /// there (the worker drops ended ones from its list).
    pub fn sweep(&self, plan: SweepPlan) -> bool {
        if self.done.load(Ordering::Relaxed) {
            return false;
        }
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            self.idle_sweeps.store(0, Ordering::Relaxed);
            return true;
        }
        let idle = self.idle_sweeps.load(Ordering::Relaxed).saturating_add(1);
        self.idle_sweeps.store(idle, Ordering::Relaxed);
        if idle > plan.limit && !self.close.swap(true, Ordering::Relaxed) {
            self.wake();
        }
        true
    }

    /// Shutdown: finish what is in flight, take no new request, then close.
    pub fn drain(&self) {
        if !self.drain.swap(true, Ordering::Relaxed) {
            self.wake();
        }
    }

    /// Whether the connection's task has ended.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    fn wake(&self) {
        let waker = match self.waker.lock() {
            Ok(mut w) => w.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        match self.waker.lock() {
            Ok(mut w) => *w = Some(waker.clone()),
            Err(poisoned) => *poisoned.into_inner() = Some(waker.clone()),
        }
    }
}

/// Marks the connection's task as ended however it ends (finished, failed,
/// timed out, or a TLS handshake that never completed).
pub struct DoneOnDrop<'a>(pub &'a ConnLife);

impl Drop for DoneOnDrop<'_> {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Relaxed);
    }
}

/// A connection that can be asked to finish gracefully (hyper's connections).
pub trait Drainable: Future {
    /// Stop taking new requests; end once those in flight are answered.
    fn start_draining(self: std::pin::Pin<&mut Self>);
}

/// Runs `conn` until it ends, is told to close (returns `None`, dropping it: the
/// socket is closed), or is told to drain (it finishes its requests first).
pub async fn run<C: Drainable>(life: &ConnLife, conn: C) -> Option<C::Output> {
    let mut conn = pin!(conn);
    let mut draining = false;
    let mut registered: Option<Waker> = None;
    std::future::poll_fn(|cx| {
        if life.close.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        // The task's waker does not change between polls; store it once, not on
        // every wake (a lock per poll).
        if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            life.register(cx.waker());
            registered = Some(cx.waker().clone());
        }
        if !draining && life.drain.load(Ordering::Relaxed) {
            draining = true;
            conn.as_mut().start_draining();
        }
        conn.as_mut().poll(cx).map(Some)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Context;

    #[test]
    fn plans_sweep_four_times_per_timeout_within_bounds() {
        let p = SweepPlan::for_timeout(Duration::from_secs(10));
        assert_eq!(p.every, Duration::from_secs(1));
        assert_eq!(p.limit, 10);
        let p = SweepPlan::for_timeout(Duration::from_millis(400));
        assert_eq!(p.every, Duration::from_millis(100));
        assert_eq!(p.limit, 4);
        let p = SweepPlan::for_timeout(Duration::from_millis(1));
        assert_eq!(p.every, Duration::from_millis(10));
        assert_eq!(p.limit, 1);
        // Absurd timeouts neither panic nor wrap.
        let p = SweepPlan::for_timeout(Duration::MAX);
        assert_eq!(p.every, Duration::from_secs(1));
        assert_eq!(p.limit, u32::MAX);
    }

    #[test]
    fn an_idle_connection_closes_only_after_the_whole_timeout() {
        let plan = SweepPlan {
            every: Duration::from_millis(100),
            limit: 4,
        };
        let life = ConnLife::default();
        for _ in 0..4 {
            assert!(life.sweep(plan));
            assert!(!life.close.load(Ordering::Relaxed), "closed too early");
        }
        assert!(life.sweep(plan));
        assert!(life.close.load(Ordering::Relaxed), "idle past the timeout");
    }

    #[test]
    fn a_request_in_flight_keeps_the_connection_and_its_end_restarts_the_count() {
        let plan = SweepPlan {
            every: Duration::from_millis(100),
            limit: 2,
        };
        let life = ConnLife::default();
        life.sweep(plan);
        life.sweep(plan);
        life.begin();
        for _ in 0..10 {
            life.sweep(plan);
        }
        assert!(
            !life.close.load(Ordering::Relaxed),
            "a long request is not idle"
        );
        life.end();
        life.sweep(plan);
        life.sweep(plan);
        assert!(
            !life.close.load(Ordering::Relaxed),
            "the count restarted at the end"
        );
        life.sweep(plan);
        assert!(life.close.load(Ordering::Relaxed));
    }

    #[test]
    fn an_unmatched_end_does_not_make_the_connection_busy_forever() {
        let plan = SweepPlan {
            every: Duration::from_millis(100),
            limit: 1,
        };
        let life = ConnLife::default();
        life.end();
        life.sweep(plan);
        life.sweep(plan);
        assert!(life.close.load(Ordering::Relaxed));
    }

    #[test]
    fn ended_connections_leave_the_sweep() {
        let plan = SweepPlan {
            every: Duration::from_millis(100),
            limit: 1,
        };
        let life = ConnLife::default();
        drop(DoneOnDrop(&life));
        assert!(life.is_done());
        assert!(!life.sweep(plan));
    }

    /// A stand-in connection: pending until drained, then finishes.
    struct Conn {
        drained: bool,
    }

    impl Future for Conn {
        type Output = &'static str;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<&'static str> {
            if self.drained {
                Poll::Ready("drained")
            } else {
                Poll::Pending
            }
        }
    }

    impl Drainable for Conn {
        fn start_draining(mut self: Pin<&mut Self>) {
            self.drained = true;
        }
    }

    #[tokio::test]
    async fn close_and_drain_reach_a_waiting_connection() {
        let life = Arc::new(ConnLife::default());
        let l = life.clone();
        let task = tokio::spawn(async move { run(&l, Conn { drained: false }).await });
        tokio::task::yield_now().await;
        life.drain();
        assert_eq!(task.await.unwrap(), Some("drained"));

        let life = Arc::new(ConnLife::default());
        let l = life.clone();
        let task = tokio::spawn(async move { run(&l, Conn { drained: false }).await });
        tokio::task::yield_now().await;
        life.close.store(true, Ordering::Relaxed);
        life.wake();
        assert_eq!(task.await.unwrap(), None, "closed, not drained");
    }
}
