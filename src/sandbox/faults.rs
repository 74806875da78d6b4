//! Fault injection shared by every emulator: the next N requests answer 429 or
//! 503, every answer is delayed, or list pages come back truncated. Tests switch
//! faults on per emulator; each emulator renders the fault in its product's own
//! error format.

use std::sync::Mutex;
use std::time::Duration;

/// What a test asks an emulator to do wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// The next N requests get 429 with `Retry-After: retry_after_secs`.
    pub rate_limited: u32,
    /// Seconds put in `Retry-After` for injected 429s.
    pub retry_after_secs: u64,
    /// The next N requests (after the 429s) get a 5xx.
    pub server_errors: u32,
    /// Every request is delayed this long before it is answered.
    pub latency: Duration,
    /// List endpoints return a short page that claims to be the last one.
    pub truncate_pages: bool,
}

/// What to inject into the request being handled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// Answer 429 with this `Retry-After` (seconds).
    RateLimited { retry_after_secs: u64 },
    /// Answer 503.
    ServerError,
}

/// Thread-safe holder of a [`FaultPlan`]; never held across an `.await`.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<FaultPlan>,
}

impl Faults {
    /// Replaces the plan.
    pub fn set(&self, plan: FaultPlan) {
        if let Ok(mut p) = self.plan.lock() {
            *p = plan;
        }
    }

    /// Clears every fault.
    pub fn clear(&self) {
        self.set(FaultPlan::default());
    }

    /// Consumes one injected failure for the current request, if any is due.
    pub fn take(&self) -> Option<Injected> {
        let mut p = self.plan.lock().ok()?;
        if p.rate_limited > 0 {
            p.rate_limited -= 1;
            return Some(Injected::RateLimited {
                retry_after_secs: p.retry_after_secs,
            });
        }
        if p.server_errors > 0 {
            p.server_errors -= 1;
            return Some(Injected::ServerError);
        }
        None
    }

    /// The configured per-request delay.
    pub fn latency(&self) -> Duration {
        self.plan.lock().map(|p| p.latency).unwrap_or_default()
    }

    /// Whether list pages should be truncated.
    pub fn truncate_pages(&self) -> bool {
        self.plan.lock().map(|p| p.truncate_pages).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_then_errors_then_nothing() {
        let f = Faults::default();
        f.set(FaultPlan {
            rate_limited: 2,
            retry_after_secs: 3,
            server_errors: 1,
            ..FaultPlan::default()
        });
        let rl = Some(Injected::RateLimited {
            retry_after_secs: 3,
        });
        assert_eq!(f.take(), rl);
        assert_eq!(f.take(), rl);
        assert_eq!(f.take(), Some(Injected::ServerError));
        assert_eq!(f.take(), None);
    }
}
