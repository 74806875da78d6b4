//! The error dialect of each product: which JSON fields carry its own message and
//! which permission a 403 means the bot account lacks. Pure; no I/O.

/// The product whose error dialect and permission names a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{"errorMessages":[..],"errors":{..}}`
    Jira,
    /// `{"statusCode","data":{"errors":[..]},"message"}`
    Confluence,
    /// `{"errors":[{"context","message","exceptionName"}]}`
    Bitbucket,
    /// `{"reason","message"}`
    Crowd,
    /// RFC 7644 `{"schemas":[..Error],"status","scimType","detail"}`
    Scim,
}

impl Flavor {
    /// The permission an administrator must grant the bot account, for 403 messages.
    pub fn permission(self) -> &'static str {
        match self {
            Flavor::Jira => "the Jira Administrators global permission (and WebSudo disabled or not challenging REST)",
            Flavor::Confluence => "the Confluence Administrator global permission",
            Flavor::Bitbucket => "the ADMIN global permission (SYS_ADMIN to manage administrators), and a free licence seat for new users",
            Flavor::Crowd => "an application with write permission on its directory and this host's IP address in the application's allowlist",
            Flavor::Scim => "a directory API key of this SCIM directory (Atlassian Guard) with a verified e-mail domain",
        }
    }

    /// Extracts the product's own error text from a body, if the body is in its format.
    pub fn message(self, body: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let mut parts: Vec<String> = Vec::new();
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        match self {
            Flavor::Jira => {
                if let Some(list) = v.get("errorMessages").and_then(|m| m.as_array()) {
                    parts.extend(list.iter().filter_map(text));
                }
                if let Some(map) = v.get("errors").and_then(|m| m.as_object()) {
                    parts.extend(
                        map.iter()
                            .map(|(k, e)| format!("{k}: {}", e.as_str().unwrap_or_default())),
                    );
                }
                if parts.is_empty() {
                    parts.extend(v.as_str().map(str::to_string));
                }
            }
            Flavor::Confluence => {
                parts.extend(v.get("message").and_then(text));
                if let Some(list) = v.pointer("/data/errors").and_then(|m| m.as_array()) {
                    parts.extend(
                        list.iter()
                            .filter_map(|e| e.pointer("/message/translation").and_then(text)),
                    );
                }
            }
            Flavor::Bitbucket => {
                if let Some(list) = v.get("errors").and_then(|m| m.as_array()) {
                    parts.extend(list.iter().filter_map(|e| e.get("message").and_then(text)));
                }
            }
            Flavor::Crowd => {
                let reason = v.get("reason").and_then(text);
                let message = v.get("message").and_then(text);
                match (reason, message) {
                    (Some(r), Some(m)) => parts.push(format!("{r}: {m}")),
                    (r, m) => parts.extend(r.or(m)),
                }
            }
            Flavor::Scim => {
                parts.extend(v.get("detail").and_then(text));
                if let Some(t) = v.get("scimType").and_then(|t| t.as_str()) {
                    parts.push(format!("scimType {t}"));
                }
            }
        }
        let clipped = clip(&parts.join("; "));
        (!clipped.is_empty()).then_some(clipped)
    }
}

/// Shortens and de-controls product text before it goes into an error message.
pub(crate) fn clip(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    clean.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_messages() {
        let jira = br#"{"errorMessages":["A user with that username already exists."],"errors":{"email":"bad"}}"#;
        assert_eq!(
            Flavor::Jira.message(jira).unwrap(),
            "A user with that username already exists.; email: bad"
        );
        assert_eq!(Flavor::Jira.message(br#""plain""#).unwrap(), "plain");
        let conf = br#"{"statusCode":404,"data":{"errors":[{"message":{"translation":"no such user","args":[]}}]},"message":"User not found"}"#;
        assert_eq!(
            Flavor::Confluence.message(conf).unwrap(),
            "User not found; no such user"
        );
        let bb = br#"{"errors":[{"context":null,"message":"User exists","exceptionName":"x"}]}"#;
        assert_eq!(Flavor::Bitbucket.message(bb).unwrap(), "User exists");
        let crowd = br#"{"reason":"USER_NOT_FOUND","message":"User <x> does not exist"}"#;
        assert_eq!(
            Flavor::Crowd.message(crowd).unwrap(),
            "USER_NOT_FOUND: User <x> does not exist"
        );
        let scim = br#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"exists"}"#;
        assert_eq!(
            Flavor::Scim.message(scim).unwrap(),
            "exists; scimType uniqueness"
        );
        assert_eq!(Flavor::Scim.message(b"<html>"), None);
    }

    proptest::proptest! {
        #[test]
        fn product_text_is_clipped_and_decontrolled(text in "\\PC{0,40}[\\x00-\\x1f]{0,3}\\PC{0,400}") {
            let t = serde_json::Value::String(text.clone());
            let bodies = [
                (Flavor::Jira, serde_json::json!({"errorMessages": [t.clone()], "errors": {}})),
                (Flavor::Confluence, serde_json::json!({"message": t.clone()})),
                (Flavor::Bitbucket, serde_json::json!({"errors": [{"message": t.clone()}]})),
                (Flavor::Crowd, serde_json::json!({"reason": "X", "message": t.clone()})),
                (Flavor::Scim, serde_json::json!({"detail": t.clone()})),
            ];
            for (f, body) in bodies {
                let m = f.message(body.to_string().as_bytes());
                if let Some(m) = m {
                    proptest::prop_assert!(m.chars().count() <= 300 && !m.is_empty());
                    proptest::prop_assert!(!m.chars().any(char::is_control));
                } else {
                    proptest::prop_assert!(clip(&text).is_empty());
                }
            }
        }

        #[test]
        fn any_bytes_are_parsed_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            for f in [Flavor::Jira, Flavor::Confluence, Flavor::Bitbucket, Flavor::Crowd, Flavor::Scim] {
                let _ = f.message(&body);
            }
        }
    }
}
