//! A bounded memo of session cookies already opened: the same cookie value on the
//! next request costs a hash lookup instead of AES-GCM + JSON (the hot path of
//! every signed-in request). Only values that decrypted successfully are kept, so
//! a client cannot fill it with garbage; a full table is simply emptied. Owns the
//! memo only: ttl, idle and revocation are still checked on every request.

use dashmap::DashMap;
use foldhash::fast::RandomState;

use super::CookiePayload;

/// How many distinct cookie values are remembered before the table is emptied.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// Decoded session cookies by their exact value. Hashed with foldhash (randomly
/// seeded per process): SipHash over a ~300-byte cookie was a visible share of
/// the lookup, and only values that decrypted are ever inserted, so a client
/// cannot pick the keys.
#[derive(Debug)]
pub struct DecodedCookies {
    map: DashMap<Box<str>, CookiePayload, RandomState>,
    capacity: usize,
}

impl Default for DecodedCookies {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl DecodedCookies {
    /// A memo holding at most `capacity` values (0 turns it off).
    pub fn with_capacity(capacity: usize) -> Self {
        DecodedCookies {
            map: DashMap::with_hasher(RandomState::default()),
            capacity,
        }
    }

    /// The payload a cookie value decoded to before (exact byte match); a full
    /// session is shared, not copied.
    pub fn get(&self, value: &str) -> Option<CookiePayload> {
        self.map.get(value).map(|p| p.value().clone())
    }

    /// Remembers a value that decoded successfully.
    pub fn put(&self, value: &str, payload: &CookiePayload) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            self.map.clear();
        }
        self.map.insert(value.into(), payload.clone());
    }

    /// How many values are remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(id: &str) -> CookiePayload {
        CookiePayload::Ref { id: id.into() }
    }

    #[test]
    fn only_exact_values_hit() {
        let m = DecodedCookies::default();
        m.put("1.abc", &payload("s1"));
        assert_eq!(m.get("1.abc"), Some(payload("s1")));
        assert_eq!(m.get("1.abd"), None);
        assert_eq!(m.get("1.ab"), None);
        assert_eq!(m.get("1.abc "), None);
    }

    #[test]
    fn a_full_table_is_emptied_not_grown() {
        let m = DecodedCookies::with_capacity(3);
        for i in 0..3 {
            m.put(&format!("v{i}"), &payload("s"));
        }
        assert_eq!(m.len(), 3);
        m.put("v3", &payload("s"));
        assert_eq!(m.len(), 1);
        assert!(m.get("v0").is_none() && m.get("v3").is_some());
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let m = DecodedCookies::with_capacity(0);
        m.put("v", &payload("s"));
        assert!(m.is_empty());
    }
}
