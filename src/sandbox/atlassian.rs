//! What every Atlassian emulator does before and after its own routing: check the
//! caller's credentials like the product, apply injected faults and the DC token
//! bucket rate limit (with the DC `X-RateLimit-*` headers), and garble answers on
//! request; plus the plumbing they share around that: seeding users and groups,
//! reading the state, query and JSON body fields. Renders errors through the
//! product's own formatter; knows no endpoint.
// Emulator answers travel as `Err(Response)`; their size does not matter off the hot path.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};

use super::faults::{Faults, Injected};

/// Renders an error in the product's format (status, human message).
pub type ErrorRenderer = fn(StatusCode, &str) -> Response<Bytes>;

/// Who is calling, as the product decided from the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authenticated as this account (or Crowd application).
    User(String),
    /// No or unrecognised credentials where the product falls back to anonymous.
    Anonymous,
}

/// How the product reacts to credentials it does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCredentials {
    /// 401 (Jira, Bitbucket, Crowd, SCIM).
    Reject,
    /// A bad bearer token is served as anonymous (Confluence PATs), bad Basic is 401.
    BearerAsAnonymous,
}

/// DC-style token bucket settings (per identity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Bucket size (`X-RateLimit-Limit`).
    pub capacity: u32,
    /// Tokens added per interval (`X-RateLimit-FillRate`).
    pub fill_rate: u32,
    /// Interval length (`X-RateLimit-Interval-Seconds`).
    pub interval: Duration,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Credentials, faults, rate limit and garbling shared by the product emulators.
#[derive(Debug)]
pub struct Gate {
    /// Injected 429/5xx/latency/truncation (shared fault plan).
    pub faults: Faults,
    basic: BTreeMap<String, String>,
    bearer: BTreeMap<String, String>,
    bad: BadCredentials,
    garbage: AtomicU32,
    requests: AtomicU64,
    limit: Mutex<Option<RateLimit>>,
    exempt: Mutex<Vec<String>>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
    captcha_after: AtomicU32,
    failures: Mutex<BTreeMap<String, u32>>,
}

impl Gate {
    /// A gate accepting these Basic `(user, password)` pairs and bearer `(token, user)`.
    pub fn new(basic: &[(&str, &str)], bearer: &[(&str, &str)], bad: BadCredentials) -> Self {
        Gate {
            faults: Faults::default(),
            basic: basic
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            bearer: bearer
                .iter()
                .map(|(t, u)| (t.to_string(), u.to_string()))
                .collect(),
            bad,
            garbage: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            limit: Mutex::new(None),
            exempt: Mutex::new(Vec::new()),
            buckets: Mutex::new(BTreeMap::new()),
            captcha_after: AtomicU32::new(0),
            failures: Mutex::new(BTreeMap::new()),
        }
    }

    /// A gate from a seed's owned Basic `(user, password)` and bearer `(token, user)`
    /// lists, the form every product seed keeps them in.
    pub fn from_seed(
        basic: &[(String, String)],
        bearer: &[(String, String)],
        bad: BadCredentials,
    ) -> Self {
        let basic: Vec<(&str, &str)> = basic
            .iter()
            .map(|(u, p)| (u.as_str(), p.as_str()))
            .collect();
        let bearer: Vec<(&str, &str)> = bearer
            .iter()
            .map(|(t, u)| (t.as_str(), u.as_str()))
            .collect();
        Gate::new(&basic, &bearer, bad)
    }

    /// The next `n` answers are replaced by a 200 HTML login page (a misrouted proxy).
    pub fn garble_next(&self, n: u32) {
        self.garbage.store(n, Ordering::SeqCst);
    }

    /// Switches the token-bucket rate limit on (Some) or off (None).
    pub fn set_rate_limit(&self, limit: Option<RateLimit>, exempt: &[&str]) {
        if let Ok(mut l) = self.limit.lock() {
            *l = limit;
        }
        if let Ok(mut e) = self.exempt.lock() {
            *e = exempt.iter().map(|s| s.to_string()).collect();
        }
        if let Ok(mut b) = self.buckets.lock() {
            b.clear();
        }
    }

    /// Seraph's CAPTCHA lockout (Jira, Confluence): after `n` failed Basic logins of
    /// an account, Basic auth stops working for it even with the right password
    /// (401, `X-Seraph-LoginReason: AUTHENTICATION_DENIED`). 0 switches it off.
    pub fn set_captcha_after(&self, n: u32) {
        self.captcha_after.store(n, Ordering::SeqCst);
    }

    /// Requests seen so far (including rejected ones).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Runs before routing: latency, injected faults, credentials, rate limit.
    /// `Err` is the finished answer.
    pub async fn admit(
        &self,
        req: &Request<Bytes>,
        render: ErrorRenderer,
    ) -> Result<Caller, Response<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let latency = self.faults.latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match self.faults.take() {
            Some(Injected::RateLimited { retry_after_secs }) => {
                let mut resp = render(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
                let h = resp.headers_mut();
                h.insert("retry-after", HeaderValue::from(retry_after_secs));
                h.insert("x-ratelimit-limit", HeaderValue::from(10u32));
                h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
                h.insert("x-ratelimit-interval-seconds", HeaderValue::from(1u32));
                h.insert("x-ratelimit-fillrate", HeaderValue::from(1u32));
                return Err(resp);
            }
            Some(Injected::ServerError) => {
                return Err(render(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The service is temporarily unavailable (injected fault).",
                ));
            }
            None => {}
        }
        let caller = self.authenticate(req, render)?;
        if let Caller::User(name) = &caller {
            self.take_token(req, name, render)?;
        }
        Ok(caller)
    }

    fn authenticate(
        &self,
        req: &Request<Bytes>,
        render: ErrorRenderer,
    ) -> Result<Caller, Response<Bytes>> {
        let Some(value) = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(Caller::Anonymous);
        };
        let unauthorized = || {
            let mut r = render(
                StatusCode::UNAUTHORIZED,
                "Client must be authenticated to access this resource.",
            );
            r.headers_mut().insert(
                "x-seraph-loginreason",
                HeaderValue::from_static("AUTHENTICATED_FAILED"),
            );
            r
        };
        if let Some(b64) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return Err(unauthorized());
            };
            let limit = self.captcha_after.load(Ordering::SeqCst);
            let failed = self
                .failures
                .lock()
                .map(|f| f.get(user).copied().unwrap_or(0))
                .unwrap_or(0);
            if limit > 0 && failed >= limit {
                let mut r = render(
                    StatusCode::UNAUTHORIZED,
                    "CAPTCHA required: log in through the web UI.",
                );
                let h = r.headers_mut();
                h.insert(
                    "x-seraph-loginreason",
                    HeaderValue::from_static("AUTHENTICATION_DENIED"),
                );
                h.insert(
                    "x-authentication-denied-reason",
                    HeaderValue::from_static("CAPTCHA_CHALLENGE; login-url=/login.jsp"),
                );
                return Err(r);
            }
            if self.basic.get(user).is_some_and(|p| p == pass) {
                return Ok(Caller::User(user.to_string()));
            }
            if let Ok(mut f) = self.failures.lock() {
                *f.entry(user.to_string()).or_insert(0) += 1;
            }
            return Err(unauthorized());
        }
        if let Some(token) = value.strip_prefix("Bearer ") {
            if let Some(user) = self.bearer.get(token.trim()) {
                return Ok(Caller::User(user.clone()));
            }
            return match self.bad {
                BadCredentials::BearerAsAnonymous => Ok(Caller::Anonymous),
                BadCredentials::Reject => Err(unauthorized()),
            };
        }
        Err(unauthorized())
    }

    fn take_token(
        &self,
        req: &Request<Bytes>,
        who: &str,
        render: ErrorRenderer,
    ) -> Result<(), Response<Bytes>> {
        let Some(limit) = self.limit.lock().ok().and_then(|l| *l) else {
            return Ok(());
        };
        if self.exempt.lock().is_ok_and(|e| e.iter().any(|x| x == who)) {
            return Ok(());
        }
        // Requests that look like the browser UI (session + XSRF cookie) are not limited.
        let cookie = req
            .headers()
            .get(http::header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if cookie.contains("JSESSIONID=") && cookie.contains("atlassian.xsrf.token=") {
            return Ok(());
        }
        let per_sec = f64::from(limit.fill_rate) / limit.interval.as_secs_f64().max(0.001);
        let now = Instant::now();
        let (allowed, remaining) = {
            let Ok(mut buckets) = self.buckets.lock() else {
                return Ok(());
            };
            let b = buckets.entry(who.to_string()).or_insert(Bucket {
                tokens: f64::from(limit.capacity),
                last: now,
            });
            let elapsed = now.duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * per_sec).min(f64::from(limit.capacity));
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                (true, b.tokens)
            } else {
                (false, b.tokens)
            }
        };
        if allowed {
            return Ok(());
        }
        let wait = ((1.0 - remaining) / per_sec).ceil().max(1.0) as u64;
        let mut resp = render(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded.");
        let h = resp.headers_mut();
        h.insert("retry-after", HeaderValue::from(wait));
        h.insert("x-ratelimit-limit", HeaderValue::from(limit.capacity));
        h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
        h.insert(
            "x-ratelimit-interval-seconds",
            HeaderValue::from(limit.interval.as_secs()),
        );
        h.insert("x-ratelimit-fillrate", HeaderValue::from(limit.fill_rate));
        Err(resp)
    }

    /// Runs after routing: replaces the answer with garbage when asked to.
    pub fn finish(&self, resp: Response<Bytes>) -> Response<Bytes> {
        let garble = self
            .garbage
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !garble {
            return resp;
        }
        let mut r = Response::new(Bytes::from_static(
            b"<!DOCTYPE html><html><head><title>Log in</title></head><body>Please log in</body></html>",
        ));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/html;charset=UTF-8"),
        );
        r
    }
}

/// Demo or test data that every product emulator can be seeded from, so `usher demo`
/// and tests can put the same people into Jira, Confluence, Bitbucket, Crowd and SCIM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixture {
    /// `(username, email, display name)`.
    pub users: Vec<(String, String, String)>,
    /// `(group, member usernames)`.
    pub groups: Vec<(String, Vec<String>)>,
}

impl Fixture {
    /// Appends this fixture's users and groups to a seed's lists.
    pub fn extend_into(
        &self,
        users: &mut Vec<(String, String, String)>,
        groups: &mut Vec<(String, Vec<String>)>,
    ) {
        users.extend(self.users.iter().cloned());
        groups.extend(self.groups.iter().cloned());
    }
}

/// The seeding operations an Atlassian product state offers, so the order in which
/// every emulator seeds accounts, users, groups and members is written once.
pub trait SeedDirectory {
    /// Adds a user directly, as the product's seeding would.
    fn seed_user(&mut self, name: &str, email: &str, display: &str);
    /// Makes sure the group exists (seeded groups may be empty).
    fn seed_group(&mut self, group: &str);
    /// Adds a membership directly.
    fn seed_member(&mut self, group: &str, member: &str);
}

/// Seeds `state`: each Basic account becomes a user (`name@example.com`, display name
/// = name), then the seed's users, then its groups with their members.
pub fn seed_directory(
    state: &mut impl SeedDirectory,
    accounts: &[(String, String)],
    users: &[(String, String, String)],
    groups: &[(String, Vec<String>)],
) {
    for (name, _) in accounts {
        state.seed_user(name, &format!("{name}@example.com"), name);
    }
    for (name, email, display) in users {
        state.seed_user(name, email, display);
    }
    for (group, members) in groups {
        state.seed_group(group);
        for m in members {
            state.seed_member(group, m);
        }
    }
}

/// A clone of an emulator's state for tests and the admin views; a poisoned lock
/// reads as the empty state rather than panicking.
pub fn snapshot<S: Clone + Default>(state: &Mutex<S>) -> S {
    state.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Runs `f` on an emulator's state (direct seeding in tests); `None` if the lock is
/// poisoned.
pub fn mutate<S, R>(state: &Mutex<S>, f: impl FnOnce(&mut S) -> R) -> Option<R> {
    state.lock().ok().map(|mut s| f(&mut s))
}

/// A string field of a JSON request body, `""` when missing or not a string (the
/// products treat both as empty).
pub fn str_field<'a>(body: &'a serde_json::Value, key: &str) -> &'a str {
    body.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}

/// Parses a JSON request body; `Err` is a 400 in the product's format.
pub fn body_json(
    req: &Request<Bytes>,
    render: ErrorRenderer,
) -> Result<serde_json::Value, Response<Bytes>> {
    serde_json::from_slice(req.body()).map_err(|e| {
        render(
            StatusCode::BAD_REQUEST,
            &format!("Unable to parse the request body as JSON: {e}"),
        )
    })
}

/// First value of a query parameter.
pub fn param(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// A numeric query parameter with a default.
pub fn num(pairs: &[(String, String)], key: &str, default: usize) -> usize {
    param(pairs, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Percent-decodes one path segment.
pub fn decode_seg(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(status: StatusCode, msg: &str) -> Response<Bytes> {
        crate::sandbox::http::json(status, &serde_json::json!({ "message": msg }))
    }

    fn req(auth: Option<&str>) -> Request<Bytes> {
        let mut b = Request::get("/x");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Bytes::new()).unwrap()
    }

    #[tokio::test]
    async fn credentials_like_the_product() {
        let gate = Gate::new(
            &[("bot", "pw")],
            &[("tok", "bot")],
            BadCredentials::BearerAsAnonymous,
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot:pw")
        );
        assert_eq!(
            gate.admit(&req(Some(&basic)), render).await.unwrap(),
            Caller::User("bot".into())
        );
        assert_eq!(
            gate.admit(&req(Some("Bearer tok")), render).await.unwrap(),
            Caller::User("bot".into())
        );
        assert_eq!(
            gate.admit(&req(Some("Bearer nope")), render).await.unwrap(),
            Caller::Anonymous
        );
        assert_eq!(
            gate.admit(&req(None), render).await.unwrap(),
            Caller::Anonymous
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot:x")
        );
        let r = gate.admit(&req(Some(&bad)), render).await.unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn token_bucket_limits_then_exempts() {
        let gate = Gate::new(&[], &[("tok", "bot")], BadCredentials::Reject);
        gate.set_rate_limit(
            Some(RateLimit {
                capacity: 2,
                fill_rate: 1,
                interval: Duration::from_secs(60),
            }),
            &[],
        );
        assert!(gate.admit(&req(Some("Bearer tok")), render).await.is_ok());
        assert!(gate.admit(&req(Some("Bearer tok")), render).await.is_ok());
        let r = gate
            .admit(&req(Some("Bearer tok")), render)
            .await
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["x-ratelimit-limit"], "2");
        assert_eq!(r.headers()["retry-after"], "60");
        gate.set_rate_limit(
            Some(RateLimit {
                capacity: 0,
                fill_rate: 1,
                interval: Duration::from_secs(60),
            }),
            &["bot"],
        );
        assert!(gate.admit(&req(Some("Bearer tok")), render).await.is_ok());
    }
}
