//! The per-request series (`usher_requests_total`, `usher_request_duration_seconds`,
//! `usher_upstream_errors_total`): a fixed table of plain atomics per upstream,
//! resolved once when the proxy is built, sharded per worker thread so cores never
//! write the same cache line, and rendered by hand next to the recorder's output.
//! Recording is three relaxed atomic adds: no lock, no allocation, no map lookup.
//! Must not grow with anything a client controls (the status slot is bounded).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::text::{push_header, push_label_value};
use crate::error::RequestError;

/// `usher_requests_total{upstream,status}`.
pub const REQUESTS_TOTAL: &str = "usher_requests_total";
/// `usher_request_duration_seconds{upstream}` (histogram).
pub const REQUEST_DURATION: &str = "usher_request_duration_seconds";
/// `usher_upstream_errors_total{upstream,kind}`.
pub const UPSTREAM_ERRORS: &str = "usher_upstream_errors_total";

/// Upper bounds (seconds) of the request-duration buckets: 1 ms to 30 s, the
/// range between a cached static asset and a slow Jira report.
pub const REQUEST_DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// The same bounds in microseconds (what is compared on the hot path).
const BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];
const BUCKETS: usize = BOUNDS_US.len() + 1;
/// Status codes 100..=599 each have a slot; anything else shares the last one.
const STATUS_SLOTS: usize = 501;
const OTHER_STATUS: usize = STATUS_SLOTS - 1;
/// Worker threads beyond this share shards (still correct, just contended).
const SHARDS: usize = 8;

/// What went wrong between usher and an upstream (`kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// No connection within `connect_timeout`.
    ConnectTimeout,
    /// No response head within `response_timeout`.
    ResponseTimeout,
    /// Connection refused or reset, or the exchange broke before a response.
    BadGateway,
    /// The response body broke off while streaming to the client.
    Body,
}

impl UpstreamErrorKind {
    /// Every kind, in rendering order.
    pub const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::ResponseTimeout,
        UpstreamErrorKind::BadGateway,
        UpstreamErrorKind::Body,
    ];

    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::ResponseTimeout => "response_timeout",
            UpstreamErrorKind::BadGateway => "bad_gateway",
            UpstreamErrorKind::Body => "body",
        }
    }

    /// The kind of an upstream failure; `None` for failures that are not the
    /// upstream's (bad requests, unknown endpoints, usher not ready).
    pub fn of(err: &RequestError) -> Option<UpstreamErrorKind> {
        match err {
            RequestError::GatewayTimeout { phase, .. } if *phase == "connect" => {
                Some(UpstreamErrorKind::ConnectTimeout)
            }
            RequestError::GatewayTimeout { .. } => Some(UpstreamErrorKind::ResponseTimeout),
            RequestError::BadGateway { .. } => Some(UpstreamErrorKind::BadGateway),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One worker's counters for one upstream, on its own cache lines.
#[repr(align(128))]
struct Shard {
    status: [AtomicU64; STATUS_SLOTS],
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
    errors: [AtomicU64; UpstreamErrorKind::ALL.len()],
}

impl Shard {
    fn new() -> Self {
        Shard {
            status: [const { AtomicU64::new(0) }; STATUS_SLOTS],
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
            sum_us: AtomicU64::new(0),
            errors: [const { AtomicU64::new(0) }; UpstreamErrorKind::ALL.len()],
        }
    }
}

/// The request series of one upstream (or of `usher` for its own answers). Made
/// once per upstream name per process and never freed, so the access record can
/// hold a plain `&'static` to it.
pub struct UpstreamMetrics {
    name: String,
    shards: Box<[Shard]>,
}

impl std::fmt::Debug for UpstreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamMetrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each thread writes one shard: worker threads are long-lived, so in practice
    /// every worker owns its shard.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl UpstreamMetrics {
    fn new(name: &str) -> Self {
        UpstreamMetrics {
            name: name.to_string(),
            shards: (0..SHARDS).map(|_| Shard::new()).collect(),
        }
    }

    fn shard(&self) -> Option<&Shard> {
        let i = SHARD.try_with(|s| *s).unwrap_or(0);
        self.shards.get(i)
    }

    /// Counts one finished request: its status and how long it took from the
    /// request head to the last body byte (what the access log reports).
    pub fn record(&self, status: u16, elapsed: Duration) {
        let Some(shard) = self.shard() else { return };
        let slot = usize::from(status)
            .checked_sub(100)
            .filter(|i| *i < OTHER_STATUS)
            .unwrap_or(OTHER_STATUS);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BOUNDS_US.len());
        if let Some(c) = shard.status.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = shard.buckets.get(bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        shard.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Counts one upstream failure.
    pub fn error(&self, kind: UpstreamErrorKind) {
        if let Some(c) = self.shard().and_then(|s| s.errors.get(kind.index())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn total(&self, pick: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| pick(s).load(Ordering::Relaxed))
            .fold(0u64, u64::wrapping_add)
    }
}

/// Every table made so far, by upstream name.
static TABLES: Mutex<BTreeMap<String, &'static UpstreamMetrics>> = Mutex::new(BTreeMap::new());

/// The table for `upstream`, made on first use. Apps built in one process (tests)
/// with the same upstream name share it, like any other series.
pub fn table(upstream: &str) -> Option<&'static UpstreamMetrics> {
    let mut tables = TABLES.lock().ok()?;
    if let Some(t) = tables.get(upstream) {
        return Some(*t);
    }
    let t: &'static UpstreamMetrics = Box::leak(Box::new(UpstreamMetrics::new(upstream)));
    tables.insert(upstream.to_string(), t);
    Some(t)
}

/// Appends the three request series for every upstream table to `out`.
pub fn render(out: &mut String) {
    let tables: Vec<&'static UpstreamMetrics> = match TABLES.lock() {
        Ok(t) => t.values().copied().collect(),
        Err(_) => return,
    };
    if tables.is_empty() {
        return;
    }
    push_header(
        out,
        REQUESTS_TOTAL,
        "counter",
        "Requests answered, by upstream (`usher` for usher's own endpoints) and HTTP status code.",
    );
    for t in &tables {
        for slot in 0..STATUS_SLOTS {
            let n = t.total(|s| &s.status[slot]);
            if n == 0 {
                continue;
            }
            out.push_str(REQUESTS_TOTAL);
            out.push_str("{upstream=\"");
            push_label_value(out, &t.name);
            if slot == OTHER_STATUS {
                out.push_str("\",status=\"other\"} ");
            } else {
                let _ = write!(out, "\",status=\"{}\"}} ", slot + 100);
            }
            let _ = writeln!(out, "{n}");
        }
    }
    push_header(
        out,
        REQUEST_DURATION,
        "histogram",
        "Time from the request head to the last response byte, by upstream.",
    );
    for t in &tables {
        let mut cumulative = 0u64;
        for (i, bound) in REQUEST_DURATION_BUCKETS.iter().enumerate() {
            cumulative += t.total(|s| &s.buckets[i]);
            bucket_line(out, &t.name, &bound.to_string(), cumulative);
        }
        cumulative += t.total(|s| &s.buckets[BUCKETS - 1]);
        bucket_line(out, &t.name, "+Inf", cumulative);
        let sum = t.total(|s| &s.sum_us) as f64 / 1e6;
        for (suffix, value) in [
            ("_sum", sum.to_string()),
            ("_count", cumulative.to_string()),
        ] {
            let _ = write!(out, "{REQUEST_DURATION}{suffix}{{upstream=\"");
            push_label_value(out, &t.name);
            let _ = writeln!(out, "\"}} {value}");
        }
    }
    push_header(
        out,
        UPSTREAM_ERRORS,
        "counter",
        "Failures reaching or reading an upstream, by upstream and kind.",
    );
    for t in tables.iter().filter(|t| t.name != "usher") {
        for kind in UpstreamErrorKind::ALL {
            let n = t.total(|s| &s.errors[kind.index()]);
            let _ = write!(out, "{UPSTREAM_ERRORS}{{upstream=\"");
            push_label_value(out, &t.name);
            let _ = writeln!(out, "\",kind=\"{}\"}} {n}", kind.label());
        }
    }
}

fn bucket_line(out: &mut String, upstream: &str, le: &str, n: u64) {
    let _ = write!(out, "{REQUEST_DURATION}_bucket{{upstream=\"");
    push_label_value(out, upstream);
    let _ = writeln!(out, "\",le=\"{le}\"}} {n}");
}

#[cfg(test)]
mod tests {
    use super::super::text::Scrape;
    use super::*;

    fn scrape() -> Scrape {
        let mut out = String::new();
        render(&mut out);
        Scrape::parse(&out).unwrap()
    }

    #[test]
    fn counts_statuses_buckets_and_errors_per_upstream() {
        let t = table("unit-requests").unwrap();
        assert!(
            std::ptr::eq(t, table("unit-requests").unwrap()),
            "made once"
        );
        t.record(200, Duration::from_micros(800));
        t.record(200, Duration::from_millis(7));
        t.record(502, Duration::from_secs(40));
        t.record(999, Duration::from_millis(1));
        // Other threads land on other shards; the totals still add up.
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| t.record(200, Duration::from_millis(2)));
            }
        });
        t.error(UpstreamErrorKind::BadGateway);
        let s = scrape();
        let up = ("upstream", "unit-requests");
        assert_eq!(s.types[REQUESTS_TOTAL], "counter");
        assert_eq!(s.types[REQUEST_DURATION], "histogram");
        assert_eq!(s.get(REQUESTS_TOTAL, &[up, ("status", "200")]), Some(5.0));
        assert_eq!(s.get(REQUESTS_TOTAL, &[up, ("status", "502")]), Some(1.0));
        assert_eq!(s.get(REQUESTS_TOTAL, &[up, ("status", "other")]), Some(1.0));
        assert_eq!(s.get(REQUESTS_TOTAL, &[up, ("status", "404")]), None);
        let bucket = |le| s.get("usher_request_duration_seconds_bucket", &[up, ("le", le)]);
        assert_eq!(
            bucket("0.001"),
            Some(2.0),
            "0.8 ms and exactly 1 ms (le is inclusive)"
        );
        assert_eq!(bucket("0.0025"), Some(5.0), "cumulative: plus 3 x 2 ms");
        assert_eq!(bucket("0.01"), Some(6.0));
        assert_eq!(bucket("30"), Some(6.0));
        assert_eq!(bucket("+Inf"), Some(7.0), "40 s only in +Inf");
        assert_eq!(
            s.get("usher_request_duration_seconds_count", &[up]),
            Some(7.0)
        );
        let sum = s.get("usher_request_duration_seconds_sum", &[up]).unwrap();
        assert!((sum - 40.0148).abs() < 1e-6, "{sum}");
        assert_eq!(
            s.get(UPSTREAM_ERRORS, &[up, ("kind", "bad_gateway")]),
            Some(1.0)
        );
        assert_eq!(s.get(UPSTREAM_ERRORS, &[up, ("kind", "body")]), Some(0.0));
    }

    #[test]
    fn error_kinds_come_from_request_errors() {
        let timeout = |phase| RequestError::GatewayTimeout {
            upstream: "u".into(),
            phase,
        };
        assert_eq!(
            UpstreamErrorKind::of(&timeout("connect")),
            Some(UpstreamErrorKind::ConnectTimeout)
        );
        assert_eq!(
            UpstreamErrorKind::of(&timeout("response")),
            Some(UpstreamErrorKind::ResponseTimeout)
        );
        let bad = RequestError::BadGateway {
            upstream: "u".into(),
            cause: "refused".into(),
        };
        assert_eq!(
            UpstreamErrorKind::of(&bad),
            Some(UpstreamErrorKind::BadGateway)
        );
        assert_eq!(UpstreamErrorKind::of(&RequestError::NotFound), None);
    }

    #[test]
    fn hostile_upstream_names_are_escaped() {
        let t = table("we\"ird\\name").unwrap();
        t.record(204, Duration::ZERO);
        let s = scrape();
        assert_eq!(
            s.get(
                REQUESTS_TOTAL,
                &[("upstream", "we\"ird\\name"), ("status", "204")]
            ),
            Some(1.0)
        );
    }
}
