//! One client connection's memory of its last session cookie. A browser sends
//! the same `Cookie` header on every request of a keep-alive connection, so the
//! common case is one byte comparison: no search for the cookie in the header,
//! no lookup in the memo every worker shares, and the session read is a copy
//! owned by this connection's worker (reading the shared one would move its
//! cache lines between cores on every request). Holds only payloads that
//! decoded successfully; ttl, idle and revocation are still checked on every
//! request by the caller.

use std::sync::Mutex;

use super::CookiePayload;

/// The last `Cookie` header of one connection and what its session cookie held.
pub type ConnCookieMemo = LastCookieHeader<CookiePayload>;

/// One connection's last `Cookie` header and an answer worked out from it
/// (the session payload here, what was forwarded in `proxy::cookies`). Holds
/// its own copy of the header, never a slice of the connection's read buffer
/// (that would pin the buffer).
pub struct LastCookieHeader<T> {
    last: Mutex<Option<(Box<[u8]>, T)>>,
}

impl<T> Default for LastCookieHeader<T> {
    fn default() -> Self {
        LastCookieHeader {
            last: Mutex::new(None),
        }
    }
}

impl<T> std::fmt::Debug for LastCookieHeader<T> {
    /// Never shows the cookie (it is a credential).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastCookieHeader").finish_non_exhaustive()
    }
}

impl<T: Clone> LastCookieHeader<T> {
    /// The answer remembered for exactly this `Cookie` header, if any.
    pub fn get(&self, cookie_header: &[u8]) -> Option<T> {
        let last = self.last.lock().ok()?;
        match last.as_ref() {
            Some((header, answer)) if **header == *cookie_header => Some(answer.clone()),
            _ => None,
        }
    }

    /// Remembers `answer` (worked out from `cookie_header`), replacing the last one.
    pub fn put(&self, cookie_header: &[u8], answer: T) {
        if let Ok(mut last) = self.last.lock() {
            *last = Some((cookie_header.into(), answer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(id: &str) -> CookiePayload {
        CookiePayload::Ref { id: id.into() }
    }

    #[test]
    fn only_the_exact_last_header_hits() {
        let m = ConnCookieMemo::default();
        assert_eq!(m.get(b"_usher=1.a"), None);
        m.put(b"_usher=1.a", payload("s1"));
        assert_eq!(m.get(b"_usher=1.a"), Some(payload("s1")));
        assert_eq!(m.get(b"_usher=1.a; x=1"), None);
        assert_eq!(m.get(b"_usher=1.b"), None);
        m.put(b"_usher=1.b", payload("s2"));
        assert_eq!(
            m.get(b"_usher=1.a"),
            None,
            "one header remembered, the last"
        );
        assert_eq!(m.get(b"_usher=1.b"), Some(payload("s2")));
        assert!(
            !format!("{m:?}").contains("1.b"),
            "the cookie is never shown"
        );
    }
}
