//! When and how long to wait before retrying a target call: the pure delay
//! function (honouring `Retry-After` and the DC `X-RateLimit-*` headers, else
//! exponential backoff with jitter) and the injectable clock that sleeps. No I/O
//! besides sleeping; the retry loop itself lives in `http.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// Time source and sleeper; injectable so retry tests run instantly.
pub trait Clock: Send + Sync {
    /// Wall-clock now (for HTTP-date `Retry-After`).
    fn now(&self) -> SystemTime;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that does not wait but records every requested sleep; for tests that
/// prove backoff and `Retry-After` handling without spending the time.
#[derive(Debug, Default)]
pub struct RecordingClock {
    slept: Mutex<Vec<Duration>>,
}

impl RecordingClock {
    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.slept.lock().map(|s| s.clone()).unwrap_or_default()
    }
    /// Forgets the recorded sleeps.
    pub fn reset(&self) {
        if let Ok(mut s) = self.slept.lock() {
            s.clear();
        }
    }
}

impl Clock for RecordingClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if let Ok(mut s) = self.slept.lock() {
            s.push(d);
        }
        Box::pin(std::future::ready(()))
    }
}

/// How hard to retry 429s, 503s and connection failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, including the first.
    pub max_attempts: u32,
    /// First backoff step (doubled each attempt) when the server gives no hint.
    pub base_delay: Duration,
    /// Cap on one wait.
    pub max_delay: Duration,
    /// Cap on all waits of one call; a `Retry-After` beyond it ends the call at once.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_total_wait: Duration::from_secs(180),
        }
    }
}

/// How long to wait before attempt `attempt + 1` (attempt counts from 0). Pure:
/// honours `Retry-After` (seconds or HTTP date), then `X-RateLimit-*`/`X-RateLimiting-*`
/// hints when no tokens remain, else exponential backoff; `jitter` in `[0,1)` adds up
/// to 10% on server hints and picks within the upper half of the backoff step.
pub fn retry_delay(
    policy: &RetryPolicy,
    attempt: u32,
    headers: &HeaderMap,
    now: SystemTime,
    jitter: f64,
) -> Duration {
    if let Some(hint) = server_hint(headers, now) {
        return hint + hint.mul_f64(jitter.clamp(0.0, 1.0) * 0.1);
    }
    let step = policy
        .base_delay
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(policy.max_delay);
    step / 2 + (step / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// The wait the server asked for, if any.
pub(crate) fn server_hint(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            if secs > 0 {
                return Some(Duration::from_secs(secs));
            }
        } else if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(now).unwrap_or_default());
        }
    }
    for prefix in ["x-ratelimit-", "x-ratelimiting-"] {
        let remaining = get(&format!("{prefix}remaining")).and_then(|v| v.parse::<f64>().ok());
        if remaining.is_some_and(|r| r < 1.0) {
            // Token bucket: one token arrives every interval/fill-rate seconds.
            let interval = get(&format!("{prefix}interval-seconds"))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(1.0);
            let fill = get(&format!("{prefix}fillrate"))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|f| *f > 0.0)
                .unwrap_or(1.0);
            return Some(Duration::from_secs_f64(
                (interval / fill).clamp(0.0, 3600.0),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn retry_after_seconds_wins_and_jitter_only_adds() {
        let p = RetryPolicy::default();
        let h = headers(&[("retry-after", "7")]);
        let now = SystemTime::now();
        assert_eq!(retry_delay(&p, 0, &h, now, 0.0), Duration::from_secs(7));
        let d = retry_delay(&p, 0, &h, now, 0.99);
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_millis(7700),
            "{d:?}"
        );
    }

    #[test]
    fn retry_after_http_date() {
        let p = RetryPolicy::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(&at).unwrap());
        assert_eq!(retry_delay(&p, 3, &h, now, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn ratelimit_headers_without_retry_after() {
        let p = RetryPolicy::default();
        let now = SystemTime::now();
        let h = headers(&[
            ("retry-after", "0"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-interval-seconds", "10"),
            ("x-ratelimit-fillrate", "5"),
        ]);
        assert_eq!(retry_delay(&p, 0, &h, now, 0.0), Duration::from_secs(2));
        let old = headers(&[
            ("x-ratelimiting-remaining", "0"),
            ("x-ratelimiting-interval-seconds", "3"),
        ]);
        assert_eq!(retry_delay(&p, 0, &old, now, 0.0), Duration::from_secs(3));
    }

    #[test]
    fn exponential_backoff_is_capped_and_jittered() {
        let p = RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            ..RetryPolicy::default()
        };
        let none = HeaderMap::new();
        let now = SystemTime::now();
        assert_eq!(
            retry_delay(&p, 0, &none, now, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(retry_delay(&p, 2, &none, now, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(&p, 10, &none, now, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(&p, 10, &none, now, 1.0), Duration::from_secs(8));
    }

    proptest::proptest! {
        #[test]
        fn backoff_stays_within_its_step(attempt in 0u32..200, jitter in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = retry_delay(&p, attempt, &HeaderMap::new(), SystemTime::now(), jitter);
            let step = p.base_delay.saturating_mul(1u32 << attempt.min(20)).min(p.max_delay);
            proptest::prop_assert!(d <= p.max_delay);
            proptest::prop_assert!(d >= step / 2);
        }

        #[test]
        fn retry_after_is_never_shortened(secs in 1u64..100_000, attempt in 0u32..10, jitter in 0.0f64..1.0) {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from(secs));
            let d = retry_delay(&RetryPolicy::default(), attempt, &h, SystemTime::now(), jitter);
            proptest::prop_assert!(d >= Duration::from_secs(secs));
            proptest::prop_assert!(d <= Duration::from_secs(secs).mul_f64(1.1) + Duration::from_millis(1));
        }
    }
}
