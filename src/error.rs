//! THE one table from failure to HTTP response. Every synthetic error page usher
//! sends is built here: short readable HTML for browsers, JSON for API clients,
//! never an internal detail (addresses, causes, secrets). The cause is logged
//! once by the caller, in the request's context.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::proxy::route::PathRejection;

/// Everything that can end a request before or instead of the upstream's answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request line or headers are unacceptable.
    #[error("bad request: {0}")]
    BadPath(#[from] PathRejection),
    /// A header or framing problem other than the path.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// Nothing is served here (unknown `/_usher/` endpoint).
    #[error("not found")]
    NotFound,
    /// The request body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request head is larger than allowed.
    #[error("request headers too large")]
    HeadersTooLarge,
    /// The upstream could not be reached or broke the exchange.
    #[error("upstream {upstream} failed: {cause}")]
    BadGateway {
        /// Upstream name from the config.
        upstream: String,
        /// What went wrong (logged, never sent to the client).
        cause: String,
    },
    /// The upstream did not answer within `response_timeout`/`connect_timeout`.
    #[error("upstream {upstream} timed out ({phase})")]
    GatewayTimeout {
        /// Upstream name from the config.
        upstream: String,
        /// `connect` or `response`.
        phase: &'static str,
    },
    /// usher itself is not ready (e.g. shutting down, upstream not answering).
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
}

impl RequestError {
    /// The status code this failure maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::BadPath(_) | RequestError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RequestError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            RequestError::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            RequestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The sentence shown to the person (safe to disclose).
    pub fn public_message(&self) -> &'static str {
        match self {
            RequestError::BadPath(_) | RequestError::BadRequest(_) => {
                "The request was malformed and was not forwarded."
            }
            RequestError::NotFound => "There is nothing at this address.",
            RequestError::PayloadTooLarge => "The request body is too large.",
            RequestError::HeadersTooLarge => {
                "The request headers are too large. Clearing this site's cookies usually helps."
            }
            RequestError::BadGateway { .. } => {
                "The application behind this address could not be reached. Try again in a moment."
            }
            RequestError::GatewayTimeout { .. } => {
                "The application behind this address took too long to answer. Try again in a moment."
            }
            RequestError::Unavailable(_) => "The service is not ready. Try again in a moment.",
        }
    }
}

/// Whether the client prefers JSON (API clients, XHR) over an HTML page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    static X_REQUESTED_WITH: http::HeaderName = http::HeaderName::from_static("x-requested-with");
    (accept.contains("application/json") && !accept.contains("text/html"))
        || headers.contains_key(&X_REQUESTED_WITH)
}

/// Builds the response for a failure. The page states the status and a safe
/// sentence; the request id lets an operator find the logged cause.
pub fn rescue(err: &RequestError, json: bool, request_id: &HeaderValue) -> Response<Bytes> {
    page(err.status(), err.public_message(), json, request_id)
}

/// A small status page (also used for denials and sign-in messages).
pub fn page(
    status: StatusCode,
    message: &str,
    json: bool,
    request_id: &HeaderValue,
) -> Response<Bytes> {
    let rid = request_id.to_str().unwrap_or("");
    let (body, ctype) = if json {
        let v = serde_json::json!({
            "error": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "message": message,
            "request_id": rid,
        });
        (v.to_string(), "application/json")
    } else {
        let reason = status.canonical_reason().unwrap_or("Error");
        (
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {reason}</title>\
                 <style>body{{font:16px system-ui,sans-serif;max-width:36em;margin:4em auto;color:#222}}\
                 small{{color:#777}}</style></head><body><h1>{code} {reason}</h1><p>{msg}</p>\
                 <p><small>Request id: {rid}</small></p></body></html>\n",
                code = status.as_u16(),
                msg = html_escape(message),
                rid = html_escape(rid),
            ),
            "text/html; charset=utf-8",
        )
    };
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A page usher made itself: HTML, never cached, never sniffed as anything else.
pub fn html_response(status: StatusCode, body: String) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status() {
        let table: Vec<(RequestError, u16)> = vec![
            (RequestError::BadPath(PathRejection::Fragment), 400),
            (RequestError::BadRequest("x"), 400),
            (RequestError::NotFound, 404),
            (RequestError::PayloadTooLarge, 413),
            (RequestError::HeadersTooLarge, 431),
            (
                RequestError::BadGateway {
                    upstream: "jira".into(),
                    cause: "connection refused 10.0.0.1:8080".into(),
                },
                502,
            ),
            (RequestError::Unavailable("x"), 503),
            (
                RequestError::GatewayTimeout {
                    upstream: "jira".into(),
                    phase: "response",
                },
                504,
            ),
        ];
        for (err, code) in table {
            assert_eq!(err.status().as_u16(), code, "{err}");
        }
    }

    #[test]
    fn pages_never_leak_the_cause() {
        let err = RequestError::BadGateway {
            upstream: "jira".into(),
            cause: "connection refused 10.0.0.1:8080".into(),
        };
        let rid = HeaderValue::from_static("rid-1");
        for json in [false, true] {
            let resp = rescue(&err, json, &rid);
            let body = String::from_utf8(resp.body().to_vec()).unwrap();
            assert!(!body.contains("10.0.0.1"), "{body}");
            assert!(!body.contains("refused"), "{body}");
            assert!(body.contains("rid-1"));
            assert_eq!(resp.status(), 502);
        }
        let json = rescue(&err, true, &rid);
        let v: serde_json::Value = serde_json::from_slice(json.body()).unwrap();
        assert_eq!(v["status"], 502);
        assert_eq!(json.headers()["content-type"], "application/json");
    }

    #[test]
    fn json_is_chosen_for_api_clients() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/json"),
        );
        assert!(!wants_json(&h));
        h.insert(
            "x-requested-with",
            HeaderValue::from_static("XMLHttpRequest"),
        );
        assert!(wants_json(&h));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
