//! A client connection's lifetime as its worker watches it: how many requests it
//! is answering, how long it has had none, and whether it must drain or close.
//!
//! Why not a timer per request: hyper's `header_read_timeout` boxes a fresh
//! sleep for every request head, registers it in the runtime's timer wheel when
//! the connection waits and removes it again when the head arrives, and
//! hyper-util's graceful-shutdown watcher polls a `watch` channel on every wake
//! of every connection — about a thousand instructions per proxied request, and
//! code that crowds the instruction cache. Here a request costs two counter
//! updates and a read one flag check; the worker sweeps its connections a few
//! times per timeout instead and closes those that had no request in flight for
//! the whole of theirs: `header_read_timeout` for a request head that is slow to
//! arrive (the slow-loris guard) or a new connection that sends nothing,
//! `keepalive_timeout` for a keep-alive connection with no next request yet.
//! At shutdown it asks each to finish what it is answering and close.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the worker and the connection's requests share about one connection.
#[derive(Debug, Default)]
pub struct ConnLife {
    /// Requests being answered now (HTTP/2 may answer several at once).
    in_flight: AtomicU32,
    /// Sweeps in a row that found no request in flight.
    idle_sweeps: AtomicU32,
    /// At least one request was answered: waiting for the next is keep-alive.
    served: AtomicBool,
    /// Bytes arrived since the last request ended (a head is on its way).
    reading: AtomicBool,
    /// The connection speaks HTTP/2: bytes between requests are pings and
    /// window updates as often as heads, so they do not start a head's clock.
    multiplexed: AtomicBool,
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
    /// A connection waiting for a request head (a new one, or one whose next
    /// head has begun to arrive) is closed at the sweep that finds it so for the
    /// `head_limit + 1`-th time in a row: after at least `head_limit × every`,
    /// the timeout, and at most one sweep longer.
    pub head_limit: u32,
    /// The same for a keep-alive connection with no next request yet.
    pub keepalive_limit: u32,
}

impl SweepPlan {
    /// Four sweeps per (shorter) timeout, so a connection closes within 1.25× of
    /// it; at most one sweep per second and at least 10 ms between sweeps.
    pub fn new(header_read_timeout: Duration, keepalive_timeout: Duration) -> Self {
        let every = (header_read_timeout.min(keepalive_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let limit = |t: Duration| {
            u32::try_from(t.as_nanos().div_ceil(every.as_nanos().max(1))).unwrap_or(u32::MAX)
        };
        SweepPlan {
            every,
            head_limit: limit(header_read_timeout),
            keepalive_limit: limit(keepalive_timeout),
        }
    }
}

impl ConnLife {
    /// A request started on this connection (`multiplexed`: an HTTP/2 one).
    pub fn begin(&self, multiplexed: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if multiplexed {
            self.multiplexed.store(true, Ordering::Relaxed);
        }
    }

    /// A request on this connection ended (answered, or abandoned).
    pub fn end(&self) {
        // Saturating: an `end` without its `begin` must not wrap to "busy forever".
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.idle_sweeps.store(0, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        self.reading.store(false, Ordering::Relaxed);
    }

    /// Bytes arrived from the client. The first after a request ended starts
    /// the head's clock: from then on `header_read_timeout` applies, counted
    /// afresh (a head that begins after 59 idle seconds still gets all of it).
    pub fn saw_bytes(&self) {
        if !self.reading.load(Ordering::Relaxed) && !self.multiplexed.load(Ordering::Relaxed) {
            self.reading.store(true, Ordering::Relaxed);
            self.idle_sweeps.store(0, Ordering::Relaxed);
        }
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
        let keepalive =
            self.served.load(Ordering::Relaxed) && !self.reading.load(Ordering::Relaxed);
        let limit = if keepalive {
            plan.keepalive_limit
        } else {
            plan.head_limit
        };
        if idle > limit && !self.close.swap(true, Ordering::Relaxed) {
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
        let waker = self.waker_slot().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        *self.waker_slot() = Some(waker.clone());
    }

    /// The stored waker; a panic elsewhere while holding it leaves a valid value.
    fn waker_slot(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        self.waker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The client's socket, telling the connection's [`ConnLife`] when bytes arrive
/// (the start of a request head). Below TLS, so any record counts.
pub struct WatchedIo<T> {
    io: T,
    conn: super::ConnInfo,
}

impl<T> WatchedIo<T> {
    /// Wraps the accepted socket of `conn`.
    pub fn new(io: T, conn: super::ConnInfo) -> Self {
        WatchedIo { io, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.life.saw_bytes();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
    fn start_draining(self: Pin<&mut Self>);
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
    use std::sync::Arc;

    fn plan(head_limit: u32, keepalive_limit: u32) -> SweepPlan {
        SweepPlan {
            every: Duration::from_millis(100),
            head_limit,
            keepalive_limit,
        }
    }

    fn closed(life: &ConnLife) -> bool {
        life.close.load(Ordering::Relaxed)
    }

    #[test]
    fn plans_sweep_four_times_per_shorter_timeout_within_bounds() {
        let ms = Duration::from_millis;
        // (header_read_timeout, keepalive_timeout) -> (every, head_limit, keepalive_limit)
        for ((head, keep), (every, head_limit, keepalive_limit)) in [
            ((ms(10_000), ms(60_000)), (ms(1_000), 10, 60)),
            ((ms(400), ms(2_000)), (ms(100), 4, 20)),
            ((ms(10_000), ms(400)), (ms(100), 100, 4)),
            ((ms(1), ms(1)), (ms(10), 1, 1)),
        ] {
            let p = SweepPlan::new(head, keep);
            assert_eq!(p.every, every, "{head:?} {keep:?}");
            assert_eq!(
                (p.head_limit, p.keepalive_limit),
                (head_limit, keepalive_limit),
                "{head:?} {keep:?}"
            );
        }
        // Absurd timeouts neither panic nor wrap.
        let p = SweepPlan::new(Duration::MAX, Duration::MAX);
        assert_eq!(p.every, Duration::from_secs(1));
        assert_eq!((p.head_limit, p.keepalive_limit), (u32::MAX, u32::MAX));
    }

    /// A connection that has answered one request.
    fn served(multiplexed: bool) -> ConnLife {
        let life = ConnLife::default();
        life.begin(multiplexed);
        life.end();
        life
    }

    /// Sweeps until the connection is told to close (calling `between` after each
    /// sweep that leaves it open); returns the sweep that closed it.
    fn sweeps_to_close(life: &ConnLife, plan: SweepPlan, between: impl Fn(&ConnLife)) -> u32 {
        for n in 1..=1000 {
            assert!(life.sweep(plan));
            if closed(life) {
                return n;
            }
            between(life);
        }
        panic!("never closed");
    }

    #[test]
    fn a_new_connection_that_sends_nothing_gets_the_head_timeout() {
        let life = ConnLife::default();
        assert_eq!(sweeps_to_close(&life, plan(4, 50), |_| {}), 5);
    }

    #[test]
    fn a_slow_head_gets_the_head_timeout_counted_from_its_first_bytes() {
        let plan = plan(3, 50);
        let life = served(false);
        // Keep-alive: well past the head timeout without a byte is fine.
        for _ in 0..10 {
            life.sweep(plan);
        }
        assert!(
            !closed(&life),
            "an idle keep-alive connection gets the keep-alive timeout"
        );
        // A head starts to trickle in: the head timeout runs from here.
        life.saw_bytes();
        assert_eq!(sweeps_to_close(&life, plan, ConnLife::saw_bytes), 4);
    }

    #[test]
    fn http2_pings_between_requests_do_not_shorten_the_keepalive_timeout() {
        let life = served(true);
        assert_eq!(sweeps_to_close(&life, plan(2, 5), ConnLife::saw_bytes), 6);
    }

    #[test]
    fn an_idle_keep_alive_connection_closes_after_the_keepalive_timeout() {
        let life = served(false);
        assert_eq!(sweeps_to_close(&life, plan(2, 5), |_| {}), 6);
    }

    #[test]
    fn a_request_in_flight_keeps_the_connection_and_its_end_restarts_the_count() {
        let plan = plan(2, 2);
        let life = ConnLife::default();
        life.sweep(plan);
        life.sweep(plan);
        life.begin(false);
        life.saw_bytes();
        for _ in 0..10 {
            life.sweep(plan);
        }
        assert!(!closed(&life), "a long request is not idle");
        life.end();
        life.sweep(plan);
        life.sweep(plan);
        assert!(!closed(&life), "the count restarted at the end");
        life.sweep(plan);
        assert!(closed(&life));
    }

    #[test]
    fn an_unmatched_end_does_not_make_the_connection_busy_forever() {
        let plan = plan(1, 1);
        let life = ConnLife::default();
        life.end();
        life.sweep(plan);
        life.sweep(plan);
        assert!(life.close.load(Ordering::Relaxed));
    }

    #[test]
    fn ended_connections_leave_the_sweep() {
        let plan = plan(1, 1);
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
