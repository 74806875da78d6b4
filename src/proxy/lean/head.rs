//! The upstream response head on the lean path: parsing it from the connection's
//! read buffer (bounded, zero-copy header values) and the pure decision how the
//! body that follows is framed (RFC 9112 §6.3) and whether the connection may be
//! reused. No I/O here; hostile bytes are errors, never panics.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;

/// Largest response head accepted (status line and all header lines).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields accepted in a response head.
pub const MAX_HEADERS: usize = 128;

/// Why a response head was refused (each becomes a 502 with this cause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Over [`MAX_HEAD`] bytes or [`MAX_HEADERS`] fields.
    #[error("upstream response head too large")]
    TooLarge,
    /// The status line or a header line is not valid HTTP/1.x.
    #[error("invalid upstream response head: {0}")]
    Invalid(&'static str),
    /// A header name or value that cannot be represented.
    #[error("invalid header in upstream response")]
    InvalidHeader,
    /// `Content-Length` is not one valid non-negative integer.
    #[error("invalid Content-Length in upstream response")]
    InvalidContentLength,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: StatusCode,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor: u8,
    /// The reason phrase when it differs from the canonical one for `status`.
    pub reason: Option<Bytes>,
    /// Every header field, values sharing the head's bytes.
    pub headers: HeaderMap,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// The framing of a response body and whether its connection may be reused
/// after the body was read completely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPlan {
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may serve another request afterwards.
    pub reusable: bool,
}

/// Parses a complete response head off the front of `buf`. `Ok(None)`: the
/// head is not complete yet (read more). On success the head's bytes are split
/// off `buf` (the body's first bytes stay in it).
pub fn parse(buf: &mut BytesMut) -> Result<Option<Head>, HeadError> {
    // Offsets of each name and value in `buf`, so the values can be sliced out of
    // the frozen head without copying (the parser's borrows end first).
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let (len, status, minor, reason_span, count) = {
        // Uninitialised slots: no 4 KiB memset per parse (as hyper does).
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() >= MAX_HEAD {
                    return Err(HeadError::TooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Invalid(parse_error(e))),
        };
        if len > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| -> (u32, u32) {
            if s.is_empty() {
                return (0, 0);
            }
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            (start as u32, start.wrapping_add(s.len()) as u32)
        };
        let code = resp.code.ok_or(HeadError::Invalid("no status code"))?;
        let status =
            StatusCode::from_u16(code).map_err(|_| HeadError::Invalid("bad status code"))?;
        let minor = resp.version.ok_or(HeadError::Invalid("no version"))?;
        let reason = resp.reason.unwrap_or("");
        let reason_span = if reason.is_empty() || Some(reason) == status.canonical_reason() {
            None
        } else {
            Some(span(reason.as_bytes()))
        };
        let count = resp.headers.len();
        for (slot, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let (ns, ne) = span(h.name.as_bytes());
            let (vs, ve) = span(h.value);
            *slot = (ns, ne, vs, ve);
        }
        (len, status, minor, reason_span, count)
    };
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(ns, ne, vs, ve) in spans.iter().take(count) {
        let name = HeaderName::from_bytes(
            head.get(ns as usize..ne as usize)
                .ok_or(HeadError::InvalidHeader)?,
        )
        .map_err(|_| HeadError::InvalidHeader)?;
        let value = HeaderValue::from_maybe_shared(sub(&head, vs, ve)?)
            .map_err(|_| HeadError::InvalidHeader)?;
        headers.append(name, value);
    }
    let reason = match reason_span {
        Some((s, e)) => Some(sub(&head, s, e)?),
        None => None,
    };
    Ok(Some(Head {
        status,
        minor,
        reason,
        headers,
    }))
}

/// `head[start..end]` sharing its bytes; an out-of-range span is an error.
fn sub(head: &Bytes, start: u32, end: u32) -> Result<Bytes, HeadError> {
    let (start, end) = (start as usize, end as usize);
    if start > end || end > head.len() {
        return Err(HeadError::InvalidHeader);
    }
    Ok(head.slice(start..end))
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token",
        httparse::Error::Version => "invalid version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

/// Decides the body framing (RFC 9112 §6.3) and reuse of a final response.
/// `head_request`: the request method was HEAD.
pub fn plan(
    head_request: bool,
    status: StatusCode,
    minor: u8,
    headers: &HeaderMap,
) -> Result<BodyPlan, HeadError> {
    let mut reusable = minor == 1 && !has_token(headers, &header::CONNECTION, "close");
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyPlan {
            framing: Framing::Empty,
            reusable,
        });
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if headers.contains_key(header::CONTENT_LENGTH) {
            // Request-smuggling shape: honour Transfer-Encoding, never reuse.
            reusable = false;
        }
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
            .map(trim);
        if last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            return Ok(BodyPlan {
                framing: Framing::Chunked,
                reusable,
            });
        }
        return Ok(BodyPlan {
            framing: Framing::UntilClose,
            reusable: false,
        });
    }
    match content_length(headers)? {
        Some(n) => Ok(BodyPlan {
            framing: Framing::Length(n),
            reusable,
        }),
        None => Ok(BodyPlan {
            framing: Framing::UntilClose,
            reusable: false,
        }),
    }
}

/// The single `Content-Length` of `headers` (repeated equal values allowed, as
/// fields or as a list); anything else is an error.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(trim(item)).ok_or(HeadError::InvalidContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(HeadError::InvalidContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// Whether a comma-separated header holds `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn plan_of(head: bool, status: u16, minor: u8, pairs: &[(&str, &str)]) -> BodyPlan {
        plan(
            head,
            StatusCode::from_u16(status).unwrap(),
            minor,
            &headers(pairs),
        )
        .unwrap()
    }

    fn p(framing: Framing, reusable: bool) -> BodyPlan {
        BodyPlan { framing, reusable }
    }

    #[test]
    fn bodyless_responses() {
        let cl = [("content-length", "10")];
        assert_eq!(plan_of(true, 200, 1, &cl), p(Framing::Empty, true));
        assert_eq!(plan_of(false, 204, 1, &cl), p(Framing::Empty, true));
        assert_eq!(plan_of(false, 304, 1, &cl), p(Framing::Empty, true));
        assert_eq!(plan_of(false, 103, 1, &[]), p(Framing::Empty, true));
        assert_eq!(
            plan_of(true, 200, 1, &[("transfer-encoding", "chunked")]),
            p(Framing::Empty, true)
        );
        assert_eq!(
            plan_of(false, 304, 1, &[("connection", "close")]),
            p(Framing::Empty, false)
        );
        assert_eq!(plan_of(true, 200, 0, &cl), p(Framing::Empty, false));
    }

    #[test]
    fn content_length_framing() {
        assert_eq!(
            plan_of(false, 200, 1, &[("content-length", "42")]),
            p(Framing::Length(42), true)
        );
        assert_eq!(
            plan_of(false, 200, 1, &[("content-length", "0")]),
            p(Framing::Length(0), true)
        );
        assert_eq!(
            plan_of(
                false,
                200,
                1,
                &[("content-length", "7, 7"), ("content-length", "7")]
            ),
            p(Framing::Length(7), true)
        );
        assert_eq!(
            plan_of(false, 200, 0, &[("content-length", "7")]),
            p(Framing::Length(7), false)
        );
        assert_eq!(
            plan_of(
                false,
                200,
                1,
                &[("content-length", "7"), ("connection", "keep-alive, Close")]
            ),
            p(Framing::Length(7), false)
        );
        for bad in [
            "",
            "-1",
            "+5",
            "5a",
            "1 2",
            "0x10",
            "99999999999999999999",
            "7, 8",
        ] {
            let h = headers(&[("content-length", bad)]);
            assert_eq!(
                plan(false, StatusCode::OK, 1, &h),
                Err(HeadError::InvalidContentLength),
                "{bad:?}"
            );
        }
        let h = headers(&[("content-length", "7"), ("content-length", "8")]);
        assert_eq!(
            plan(false, StatusCode::OK, 1, &h),
            Err(HeadError::InvalidContentLength)
        );
    }

    #[test]
    fn transfer_encoding_framing() {
        assert_eq!(
            plan_of(false, 200, 1, &[("transfer-encoding", "chunked")]),
            p(Framing::Chunked, true)
        );
        assert_eq!(
            plan_of(false, 200, 1, &[("transfer-encoding", "gzip, CHUNKED ")]),
            p(Framing::Chunked, true)
        );
        assert_eq!(
            plan_of(
                false,
                200,
                1,
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked")
                ]
            ),
            p(Framing::Chunked, true)
        );
        assert_eq!(
            plan_of(false, 200, 1, &[("transfer-encoding", "chunked, gzip")]),
            p(Framing::UntilClose, false)
        );
        // Both headers: Transfer-Encoding wins, the connection is not reused, and
        // even a bad Content-Length does not matter.
        assert_eq!(
            plan_of(
                false,
                200,
                1,
                &[("transfer-encoding", "chunked"), ("content-length", "5")]
            ),
            p(Framing::Chunked, false)
        );
        assert_eq!(
            plan_of(
                false,
                200,
                1,
                &[("transfer-encoding", "chunked"), ("content-length", "x")]
            ),
            p(Framing::Chunked, false)
        );
    }

    #[test]
    fn no_length_means_until_close() {
        assert_eq!(plan_of(false, 200, 1, &[]), p(Framing::UntilClose, false));
        assert_eq!(plan_of(false, 500, 0, &[]), p(Framing::UntilClose, false));
    }

    #[test]
    fn parses_a_head_and_keeps_the_body_bytes() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: one\r\nx-a: two\r\n\r\nhello"[..],
        );
        let head = parse(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.minor, 1);
        assert_eq!(head.reason, None);
        assert_eq!(head.headers["content-length"], "5");
        let xa: Vec<_> = head.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["one", "two"]);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn custom_reason_is_kept() {
        let mut buf = BytesMut::from(&b"HTTP/1.0 404 Gone Fishing\r\n\r\n"[..]);
        let head = parse(&mut buf).unwrap().unwrap();
        assert_eq!(head.minor, 0);
        assert_eq!(head.reason.as_deref(), Some(&b"Gone Fishing"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_heads_need_more_at_every_length() {
        let wire = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
        for end in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..end]);
            assert!(parse(&mut buf).unwrap().is_none(), "complete at {end}");
            assert_eq!(buf.len(), end);
        }
    }

    #[test]
    fn random_heads_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let alphabet = b"HTP/1.0 2345:\r\n\t;,=abcXYZ-\x00\x7f\xff";
        for _ in 0..5000 {
            let mut wire = if rng.gen() {
                b"HTTP/1.1 200 OK\r\n".to_vec()
            } else {
                Vec::new()
            };
            let len = rng.gen_range(0..80);
            wire.extend((0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())]));
            if rng.gen() {
                wire.extend_from_slice(b"\r\n\r\n");
            }
            let mut buf = BytesMut::from(&wire[..]);
            if let Ok(Some(head)) = parse(&mut buf) {
                let _ = plan(rng.gen(), head.status, head.minor, &head.headers);
            }
        }
    }

    #[test]
    fn bounds_and_garbage() {
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(
            parse(&mut BytesMut::from(&big[..])).map(|h| h.is_some()),
            Err(HeadError::TooLarge)
        );
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&mut BytesMut::from(&many[..])).map(|h| h.is_some()),
            Err(HeadError::TooLarge)
        );
        for bad in [
            &b"HTTP/2.0 200 OK\r\n\r\n"[..],
            b"HTTX/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: \x01\r\n\r\n",
            b"<html>\r\n\r\n",
        ] {
            let got = parse(&mut BytesMut::from(bad));
            assert!(
                got.is_err(),
                "{:?} -> {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
