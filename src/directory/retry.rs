//! Backoff and client-side rate limiting for the Directory API: which answers
//! are worth retrying, how long to wait (exponential with full jitter, capped,
//! `Retry-After` honoured) and a token bucket for the per-minute quota. The
//! waiting itself goes through [`Sleeper`] so tests run without real sleeps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::BoxFuture;

/// Waits; injectable so tests can record delays instead of sleeping.
pub trait Sleeper: Send + Sync {
    /// Resolves after `d` (or immediately, in tests).
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The real sleeper (tokio timer).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A sleeper that returns at once and remembers every requested delay (tests, benches).
#[derive(Debug, Default)]
pub struct RecordingSleeper {
    slept: Mutex<Vec<Duration>>,
}

impl RecordingSleeper {
    /// Every delay asked for so far, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        if let Ok(mut s) = self.slept.lock() {
            s.push(d);
        }
        Box::pin(async {})
    }
}

/// How often and how long to retry a retryable answer.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (so `max_attempts - 1` retries).
    pub max_attempts: u32,
    /// Base of the exponential: attempt n waits up to `base * 2^n`.
    pub base: Duration,
    /// No single wait exceeds this (a `Retry-After` above it is capped too).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Like google-api-python-client (`random() * 2**n` seconds), capped at 32 s, 6 attempts.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(32),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based), given a uniform `jitter`
    /// in [0, 1) and the server's `Retry-After`, if any. Pure.
    pub fn delay(&self, retry: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let exp = self.base.as_secs_f64() * 2f64.powi(retry.min(30) as i32);
        let backoff = Duration::from_secs_f64((exp * jitter.clamp(0.0, 1.0)).max(0.0));
        let wanted = match retry_after {
            Some(ra) => ra.max(backoff),
            None => backoff,
        };
        wanted.min(self.max_delay)
    }
}

/// Whether an error answer is worth retrying: 429, every 5xx, and 403 only for
/// the rate/quota reasons (Google's own client library rule, google.md §2.9).
pub fn is_retryable(status: u16, reason: &str) -> bool {
    match status {
        429 => true,
        s if s >= 500 => true,
        403 => matches!(
            reason,
            "userRateLimitExceeded" | "rateLimitExceeded" | "quotaExceeded"
        ),
        _ => false,
    }
}

/// A token bucket: `per_minute` requests a minute, bursts up to one second's worth.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Bucket>,
    sleeper: Arc<dyn Sleeper>,
}

impl std::fmt::Debug for dyn Sleeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sleeper")
    }
}

/// The bucket's pure arithmetic (time passed in).
#[derive(Debug, Clone)]
pub struct Bucket {
    per_sec: f64,
    capacity: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl Bucket {
    /// A full bucket for `per_minute` requests a minute (0 = unlimited).
    pub fn new(per_minute: u32) -> Self {
        let per_sec = f64::from(per_minute) / 60.0;
        let capacity = per_sec.max(1.0);
        Bucket {
            per_sec,
            capacity,
            tokens: capacity,
            last: None,
        }
    }

    /// Takes one token at `now`; returns how long the caller must wait first
    /// (zero when a token was available). Waiting callers queue up fairly
    /// because the bucket goes negative.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        if self.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        }
        self.last = Some(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.per_sec)
        }
    }
}

impl RateLimiter {
    /// A limiter for `per_minute` requests (0 = unlimited) that waits with `sleeper`.
    pub fn new(per_minute: u32, sleeper: Arc<dyn Sleeper>) -> Self {
        RateLimiter {
            state: Mutex::new(Bucket::new(per_minute)),
            sleeper,
        }
    }

    /// Waits until one more request fits the budget; returns how long it waited
    /// (zero almost always), for the rate-limit metrics.
    pub async fn acquire(&self) -> Duration {
        let wait = match self.state.lock() {
            Ok(mut b) => b.reserve(Instant::now()),
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            self.sleeper.sleep(wait).await;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_answers_follow_googles_rule() {
        assert!(is_retryable(429, ""));
        assert!(is_retryable(503, "backendError"));
        assert!(is_retryable(500, ""));
        assert!(is_retryable(403, "rateLimitExceeded"));
        assert!(is_retryable(403, "userRateLimitExceeded"));
        assert!(is_retryable(403, "quotaExceeded"));
        assert!(!is_retryable(403, "forbidden"));
        assert!(!is_retryable(404, "notFound"));
        assert!(!is_retryable(401, "authError"));
        assert!(!is_retryable(400, "invalid"));
    }

    #[test]
    fn delay_grows_exponentially_with_jitter_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0, 0.5, None), Duration::from_millis(500));
        assert_eq!(p.delay(3, 0.5, None), Duration::from_secs(4));
        assert_eq!(p.delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(p.delay(10, 0.99, None), Duration::from_secs(32));
        // Retry-After wins when longer, but is capped as well.
        assert_eq!(
            p.delay(0, 0.5, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(0, 0.5, Some(Duration::from_secs(600))),
            Duration::from_secs(32)
        );
    }

    #[test]
    fn bucket_allows_a_burst_then_spaces_requests() {
        let mut b = Bucket::new(120); // 2 per second, burst 2
        let t0 = Instant::now();
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::ZERO);
        assert_eq!(b.reserve(t0), Duration::from_millis(500));
        assert_eq!(b.reserve(t0), Duration::from_secs(1));
        // After 1 s the debt (2 tokens) is paid, but there is no new credit yet.
        assert_eq!(
            b.reserve(t0 + Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        // Long idle refills to the burst capacity, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert_eq!(b.reserve(later), Duration::ZERO);
        assert_eq!(b.reserve(later), Duration::from_millis(500));
    }

    #[test]
    fn zero_means_unlimited() {
        let mut b = Bucket::new(0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(b.reserve(t0), Duration::ZERO);
        }
    }
}
