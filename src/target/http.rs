//! The one REST helper every target client uses: auth header, timeouts, no redirects,
//! a per-target concurrency cap, bounded retries of 429/5xx honouring `Retry-After`
//! and `X-RateLimit-*`, and product error bodies turned into [`TargetError`].
//! Must not know any product endpoint; the product files build paths and bodies.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::dialect::clip;
pub use super::dialect::Flavor;
use super::retry::server_hint;
pub use super::retry::{retry_delay, Clock, RecordingClock, RetryPolicy, SystemClock};
use super::TargetError;
use crate::admin::metrics::{self, Api, RetryReason};
use crate::config::{TargetAuth, TargetSettings};

/// Characters escaped inside one path segment (everything but unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a user or group name for use as one path segment.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A product's answer: any status the retry loop did not swallow.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers (rate-limit hints, `X-AUSERNAME`, `Location`).
    pub headers: HeaderMap,
    /// The whole body (target answers are small JSON).
    pub body: Bytes,
}

/// The shared REST client of one target.
#[derive(Clone)]
pub struct RestClient {
    target: String,
    base: String,
    http: reqwest::Client,
    auth: HeaderValue,
    permits: Arc<Semaphore>,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    flavor: Flavor,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("target", &self.target)
            .field("base", &self.base)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// Builds the client from validated settings (timeouts, extra CA, auth).
    pub fn new(settings: &TargetSettings, flavor: Flavor) -> Result<Self, TargetError> {
        let setup = |message: String| TargetError::Setup {
            target: settings.name.clone(),
            message,
        };
        let timeout = if settings.timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            settings.timeout
        };
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("usher/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| setup(format!("reading ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("ca_file {} is not PEM: {e}", path.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| setup(format!("building the HTTP client: {e}")))?;
        let raw = match &settings.auth {
            TargetAuth::Basic { username, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            ),
            TargetAuth::Bearer { token } => format!("Bearer {}", token.expose()),
        };
        let mut auth = HeaderValue::from_str(&raw).map_err(|_| {
            setup("the auth token contains characters not allowed in an HTTP header".into())
        })?;
        auth.set_sensitive(true);
        Ok(RestClient {
            target: settings.name.clone(),
            base: settings.url.as_str().trim_end_matches('/').to_string(),
            http,
            auth,
            permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            flavor,
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The `[[target]] name`, for error messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Sends one call, retrying 429/503 (and other 5xx and connection failures for
    /// idempotent methods) within the policy; returns the first other answer.
    /// `path` starts with `/` and is appended to the target url (segments already
    /// encoded with [`seg`]); `what` names the operation for messages.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> Result<Reply, TargetError> {
        let mut url = url::Url::parse(&format!("{}{}", self.base, path))
            .map_err(|e| self.protocol(what, format!("bad url for {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let idempotent = method != Method::POST;
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(&method, &url, body).await;
            metrics::target_request(
                &self.target,
                self.flavor,
                &method,
                outcome.as_ref().ok().map(|r| r.status.as_u16()),
            );
            let (retryable, headers, last, why) = match outcome {
                Ok(reply) => {
                    let s = reply.status;
                    let retry = s == StatusCode::TOO_MANY_REQUESTS
                        || s == StatusCode::SERVICE_UNAVAILABLE
                        || (idempotent && s.is_server_error());
                    if !retry {
                        return self.check_identity(reply);
                    }
                    let why = if s == StatusCode::TOO_MANY_REQUESTS {
                        RetryReason::RateLimited
                    } else {
                        RetryReason::ServerError
                    };
                    (
                        true,
                        reply.headers.clone(),
                        Err(self.error(&reply, what)),
                        why,
                    )
                }
                Err((retry, err)) => (
                    retry && (idempotent || is_connect(&err)),
                    HeaderMap::new(),
                    Err(err),
                    RetryReason::Connection,
                ),
            };
            if !retryable || attempt >= self.retry.max_attempts {
                return last;
            }
            let jitter: f64 = rand::thread_rng().gen();
            let delay = retry_delay(&self.retry, attempt - 1, &headers, self.clock.now(), jitter);
            if waited + delay > self.retry.max_total_wait {
                return last;
            }
            tracing::debug!(target_name = %self.target, what, attempt, ?delay, "retrying");
            metrics::api_retry(Api::Target, &self.target, why, delay);
            self.clock.sleep(delay).await;
            waited += delay;
        }
    }

    /// One HTTP exchange under the concurrency cap. The error side says whether a
    /// retry may help.
    async fn attempt(
        &self,
        method: &Method,
        url: &url::Url,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, (bool, TargetError)> {
        let unavailable = |message: String| TargetError::Unavailable {
            target: self.target.clone(),
            message,
        };
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| (false, unavailable("client shut down".into())))?;
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(http::header::AUTHORIZATION, self.auth.clone())
            .header(http::header::ACCEPT, "application/json")
            // Atlassian XSRF protection: REST callers opt out explicitly; harmless elsewhere.
            .header("x-atlassian-token", "no-check");
        if let Some(body) = body {
            let content_type = if self.flavor == Flavor::Scim {
                "application/scim+json"
            } else {
                "application/json"
            };
            req = req
                .header(http::header::CONTENT_TYPE, content_type)
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            let err = unavailable(format!("{kind}: {} {}", method, redact_url(url)));
            (true, err)
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            (
                true,
                unavailable(format!(
                    "reading the answer to {method} {}: {e}",
                    redact_url(url)
                )),
            )
        })?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Confluence and Jira answer a bad PAT as anonymous with 200: catch it.
    fn check_identity(&self, reply: Reply) -> Result<Reply, TargetError> {
        let anonymous = reply
            .headers
            .get("x-ausername")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("anonymous"));
        if anonymous {
            return Err(TargetError::Unauthorized {
                target: self.target.clone(),
                message: "the product answered as the anonymous user (X-AUSERNAME: anonymous), so the token was not accepted".into(),
            });
        }
        Ok(reply)
    }

    /// Turns a non-success answer into the typed error, with the product's own words.
    pub fn error(&self, reply: &Reply, what: &str) -> TargetError {
        let target = self.target.clone();
        let message = self.message(reply);
        let what = what.to_string();
        match reply.status {
            StatusCode::UNAUTHORIZED => {
                let denied = reply
                    .headers
                    .get("x-seraph-loginreason")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("AUTHENTICATION_DENIED"))
                    || reply.headers.contains_key("x-authentication-denied-reason");
                let message = if denied {
                    format!("{message}; the account is locked behind a CAPTCHA: sign in once in a browser as the bot account")
                } else {
                    message
                };
                TargetError::Unauthorized { target, message }
            }
            StatusCode::FORBIDDEN => TargetError::Forbidden {
                target,
                what,
                permission: self.flavor.permission().to_string(),
                message,
            },
            StatusCode::NOT_FOUND => TargetError::NotFound {
                target,
                what,
                message,
            },
            StatusCode::CONFLICT => TargetError::Conflict {
                target,
                what,
                message,
            },
            StatusCode::TOO_MANY_REQUESTS => TargetError::RateLimited {
                target,
                retry_after: server_hint(&reply.headers, self.clock.now()),
                message,
            },
            s if s.is_server_error() => TargetError::Unavailable {
                target,
                message: format!("HTTP {} to {what}: {message}", s.as_u16()),
            },
            s if s.is_redirection() => {
                let location = reply
                    .headers
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?");
                TargetError::Protocol {
                    target,
                    what,
                    message: format!("redirected ({}) to {}", s.as_u16(), clip(location)),
                }
            }
            s if s.is_client_error() => TargetError::Rejected {
                target,
                what,
                status: s.as_u16(),
                message,
            },
            s => TargetError::Protocol {
                target,
                what,
                message: format!("unexpected HTTP {}: {message}", s.as_u16()),
            },
        }
    }

    /// The product's own words from an answer (or a short description of the body).
    pub fn message(&self, reply: &Reply) -> String {
        self.flavor.message(&reply.body).unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&reply.body);
            if text.trim_start().starts_with('<') {
                format!("HTTP {} with an HTML page", reply.status.as_u16())
            } else if text.trim().is_empty() {
                format!("HTTP {} with an empty body", reply.status.as_u16())
            } else {
                clip(&text)
            }
        })
    }

    /// A [`TargetError::Conflict`] carrying the product's words.
    pub fn conflict(&self, reply: &Reply, what: &str) -> TargetError {
        TargetError::Conflict {
            target: self.target.clone(),
            what: what.to_string(),
            message: self.message(reply),
        }
    }

    /// Decodes a JSON answer; anything else is a [`TargetError::Protocol`].
    pub fn json<T: DeserializeOwned>(&self, reply: &Reply, what: &str) -> Result<T, TargetError> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            let ct = reply
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type");
            self.protocol(what, format!("body is not the expected JSON ({ct}): {e}"))
        })
    }

    /// A [`TargetError::Protocol`] for this target.
    pub fn protocol(&self, what: &str, message: String) -> TargetError {
        TargetError::Protocol {
            target: self.target.clone(),
            what: what.to_string(),
            message,
        }
    }

    /// A [`TargetError::NotFound`] for this target, for a thing the product answered
    /// without an error but does not have (an empty search, a 200 with nothing in it).
    pub fn not_found(&self, what: &str, message: String) -> TargetError {
        TargetError::NotFound {
            target: self.target.clone(),
            what: what.to_string(),
            message,
        }
    }

    /// The [`TargetError::NotFound`] every connector gives when a write needs
    /// `username` to exist first (read-modify-write, licence changes) and it does not.
    pub fn no_user(&self, what: &str, username: &str) -> TargetError {
        self.not_found(what, format!("no user {username}"))
    }

    /// A [`TargetError::Unsupported`] for this target.
    pub fn unsupported(&self, what: &str) -> TargetError {
        TargetError::Unsupported {
            target: self.target.clone(),
            what: what.to_string(),
        }
    }

    /// Sends and requires one of `ok`; other statuses become typed errors.
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        ok: &[StatusCode],
        what: &str,
    ) -> Result<Reply, TargetError> {
        let reply = self.send(method, path, query, body, what).await?;
        if ok.contains(&reply.status) {
            Ok(reply)
        } else {
            Err(self.error(&reply, what))
        }
    }
}

/// Whether the product's error text contains `needle` (lowercase), for the answers
/// Jira, Confluence and Crowd give with a generic status (duplicates as 400) and only
/// the words tell apart; lives here because every connector reads replies the same way.
pub(crate) fn body_says(reply: &Reply, needle: &str) -> bool {
    String::from_utf8_lossy(&reply.body)
        .to_lowercase()
        .contains(needle)
}

/// URL without query (queries may carry names; never credentials, but keep logs short).
fn redact_url(url: &url::Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

const CONNECT_MARK: &str = "connection failed";

fn is_connect(err: &TargetError) -> bool {
    matches!(err, TargetError::Unavailable { message, .. } if message.starts_with(CONNECT_MARK))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn a_segment_stays_one_segment_and_round_trips(name in "\\PC{0,40}") {
            let s = seg(&name);
            proptest::prop_assert!(!s.contains(['/', '?', '#', ' ']));
            let back = percent_encoding::percent_decode_str(&s).decode_utf8().unwrap();
            proptest::prop_assert_eq!(back, name);
        }
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(seg("jira users/ä b"), "jira%20users%2F%C3%A4%20b");
        assert_eq!(seg("a.b-c_d~e"), "a.b-c_d~e");
    }
}

#[cfg(test)]
mod client_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;
    use crate::config::{Secret, TargetKind};
    use crate::sandbox::http::{empty, serve, Handler, Running};
    use crate::target::contract::{basic, settings};

    async fn server(handler: Handler) -> Running {
        serve("127.0.0.1:0".parse().unwrap(), handler)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let running = server(Arc::new(|_req| {
            Box::pin(async {
                let mut r = empty(StatusCode::FOUND);
                r.headers_mut().insert(
                    "location",
                    HeaderValue::from_static("/login.jsp?os_destination=x"),
                );
                r
            })
        }))
        .await;
        let s = settings(TargetKind::Jira, &running.url(), basic("bot", "pw"));
        let c = RestClient::new(&s, Flavor::Jira).unwrap();
        let reply = c
            .send(Method::GET, "/rest/api/2/user", &[], None, "get user")
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::FOUND);
        let err = c.error(&reply, "get user");
        assert!(matches!(err, TargetError::Protocol { .. }), "{err:?}");
        assert!(err.to_string().contains("/login.jsp"), "{err}");
    }

    #[tokio::test]
    async fn concurrency_is_capped_per_target() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (f, p) = (in_flight.clone(), peak.clone());
        let running = server(Arc::new(move |_req| {
            let (f, p) = (f.clone(), p.clone());
            Box::pin(async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                empty(StatusCode::NO_CONTENT)
            })
        }))
        .await;
        let mut s = settings(TargetKind::Jira, &running.url(), basic("bot", "pw"));
        s.concurrency = 2;
        let c = RestClient::new(&s, Flavor::Jira).unwrap();
        let started = Instant::now();
        let calls = (0..6).map(|_| c.send(Method::GET, "/x", &[], None, "probe"));
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.unwrap().status, StatusCode::NO_CONTENT);
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn posts_are_not_retried_on_500_but_are_on_503() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let running = server(Arc::new(move |req| {
            let h = h.clone();
            Box::pin(async move {
                assert_eq!(req.headers()["x-atlassian-token"], "no-check");
                let n = h.fetch_add(1, Ordering::SeqCst);
                let status = if req.uri().path() == "/500" {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else if n == 0 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::CREATED
                };
                empty(status)
            })
        }))
        .await;
        let s = settings(TargetKind::Jira, &running.url(), basic("bot", "pw"));
        let clock = Arc::new(RecordingClock::default());
        let c = RestClient::new(&s, Flavor::Jira)
            .unwrap()
            .with_clock(clock.clone());
        let ok = c
            .send(Method::POST, "/503", &[], None, "create")
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::CREATED);
        assert_eq!(hits.swap(0, Ordering::SeqCst), 2);
        let r = c
            .send(Method::POST, "/500", &[], None, "create")
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a POST answered 500 may have run: not repeated"
        );
        assert!(matches!(
            c.error(&r, "create"),
            TargetError::Unavailable { .. }
        ));
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable_after_bounded_retries() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = settings(
            TargetKind::Jira,
            &format!("http://127.0.0.1:{port}"),
            basic("bot", "pw"),
        );
        let clock = Arc::new(RecordingClock::default());
        let c = RestClient::new(&s, Flavor::Jira)
            .unwrap()
            .with_clock(clock.clone());
        let err = c
            .send(Method::GET, "/x", &[], None, "probe")
            .await
            .unwrap_err();
        assert!(matches!(err, TargetError::Unavailable { .. }), "{err:?}");
        assert_eq!(
            clock.sleeps().len(),
            RetryPolicy::default().max_attempts as usize - 1
        );
    }

    #[test]
    fn ca_file_is_loaded_or_named_in_the_error() {
        let tmp = crate::test_support::temp_dir("ca");
        let dir = tmp.path();
        let cert = rcgen::generate_simple_self_signed(vec!["jira.test".into()]).unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, cert.cert.pem()).unwrap();
        let mut s = settings(TargetKind::Jira, "https://jira.test", basic("bot", "pw"));
        s.ca_file = Some(good);
        assert!(RestClient::new(&s, Flavor::Jira).is_ok());
        s.ca_file = Some(dir.join("missing.pem"));
        let err = RestClient::new(&s, Flavor::Jira).unwrap_err();
        assert!(
            matches!(err, TargetError::Setup { .. }) && err.to_string().contains("missing.pem"),
            "{err}"
        );
        tmp.close().unwrap();
    }

    #[test]
    fn debug_never_shows_the_credentials() {
        let mut s = settings(
            TargetKind::Jira,
            "http://127.0.0.1:1",
            basic("bot", "hunter2-secret"),
        );
        let c = RestClient::new(&s, Flavor::Jira).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        s.auth = TargetAuth::Bearer {
            token: Secret::new("pat-hunter2"),
        };
        let c = RestClient::new(&s, Flavor::Jira).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
