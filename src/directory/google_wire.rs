//! The Directory API's wire shapes as usher reads them (users, groups, members
//! pages and Google's error envelope): lenient about extra fields, strict about
//! the ones usher needs, so a garbage answer becomes a Protocol error, never a
//! panic. Pure decoding; no HTTP.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::DirectoryError;
use crate::identity::{GroupMember, GroupRef, MemberKind, Person};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsersPage {
    #[serde(default)]
    users: Vec<ApiUser>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl UsersPage {
    pub(super) fn split(self) -> Result<(Vec<Person>, Option<String>), DirectoryError> {
        let people = self
            .users
            .into_iter()
            .map(|u| u.into_person("users.list"))
            .collect::<Result<_, _>>()?;
        Ok((people, self.next_page_token))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ApiName {
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    full_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ApiUser {
    id: String,
    primary_email: String,
    #[serde(default)]
    name: ApiName,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    org_unit_path: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    non_editable_aliases: Vec<String>,
}

impl ApiUser {
    pub(super) fn into_person(self, method: &'static str) -> Result<Person, DirectoryError> {
        if self.id.is_empty() || !self.primary_email.contains('@') {
            return Err(DirectoryError::Protocol {
                method,
                detail: "a user has an empty id or an invalid primaryEmail".into(),
            });
        }
        let primary = self.primary_email.to_ascii_lowercase();
        let aliases: BTreeSet<String> = self
            .aliases
            .iter()
            .chain(&self.non_editable_aliases)
            .map(|a| a.to_ascii_lowercase())
            .filter(|a| *a != primary)
            .collect();
        Ok(Person {
            id: self.id,
            primary_email: primary,
            aliases: aliases.into_iter().collect(),
            given_name: self.name.given_name,
            family_name: self.name.family_name,
            full_name: self.name.full_name,
            suspended: self.suspended,
            archived: self.archived,
            org_unit_path: self.org_unit_path,
            is_admin: self.is_admin,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GroupsPage {
    #[serde(default)]
    groups: Vec<ApiGroup>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ApiGroup {
    id: String,
    email: String,
    #[serde(default)]
    name: String,
}

impl GroupsPage {
    pub(super) fn split(self) -> Result<(Vec<GroupRef>, Option<String>), DirectoryError> {
        let mut out = Vec::with_capacity(self.groups.len());
        for g in self.groups {
            if g.id.is_empty() || !g.email.contains('@') {
                return Err(DirectoryError::Protocol {
                    method: "groups.list",
                    detail: "a group has an empty id or an invalid email".into(),
                });
            }
            out.push(GroupRef {
                id: g.id,
                email: g.email.to_ascii_lowercase(),
                name: g.name,
            });
        }
        Ok((out, self.next_page_token))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MembersPage {
    #[serde(default)]
    members: Vec<ApiMember>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ApiMember {
    #[serde(default)]
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    status: String,
}

impl MembersPage {
    pub(super) fn split(self) -> Result<(Vec<GroupMember>, Option<String>), DirectoryError> {
        let mut out = Vec::with_capacity(self.members.len());
        for m in self.members {
            let kind = match m.kind.as_str() {
                "USER" => MemberKind::User,
                "GROUP" => MemberKind::Group,
                "CUSTOMER" => MemberKind::Customer,
                _ => MemberKind::External,
            };
            if m.id.is_empty() && m.email.is_none() {
                return Err(DirectoryError::Protocol {
                    method: "members.list",
                    detail: "a member has neither id nor email".into(),
                });
            }
            out.push(GroupMember {
                id: m.id,
                email: m.email.map(|e| e.to_ascii_lowercase()),
                kind,
                role: m.role,
                status: m.status,
            });
        }
        Ok((out, self.next_page_token))
    }
}

/// Google's error envelope (google.md §2.8), read leniently: a garbage body
/// still yields an error with the HTTP status, never a panic.
#[derive(Debug, Default)]
pub(super) struct ApiError {
    /// Google's human-readable message (truncated).
    pub message: String,
    /// `errors[0].reason` (or `status` for the newer envelope).
    pub reason: String,
}

impl ApiError {
    pub(super) fn parse(status: u16, body: &[u8]) -> ApiError {
        #[derive(Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            message: String,
            #[serde(default)]
            errors: Vec<Detail>,
            #[serde(default)]
            status: String,
        }
        #[derive(Deserialize)]
        struct Detail {
            #[serde(default)]
            reason: String,
        }
        match serde_json::from_slice::<Envelope>(body) {
            Ok(env) => {
                let reason = env
                    .error
                    .errors
                    .into_iter()
                    .map(|d| d.reason)
                    .find(|r| !r.is_empty())
                    .unwrap_or(env.error.status);
                let mut message = env.error.message;
                message.truncate(300);
                ApiError { message, reason }
            }
            Err(_) => ApiError {
                message: format!("HTTP {status} without Google's error body"),
                reason: String::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_is_parsed_and_garbage_is_tolerated() {
        let body = br#"{"error":{"code":403,"message":"Quota exceeded","errors":[{"message":"Quota exceeded","domain":"usageLimits","reason":"rateLimitExceeded"}]}}"#;
        let e = ApiError::parse(403, body);
        assert_eq!(e.reason, "rateLimitExceeded");
        assert_eq!(e.message, "Quota exceeded");
        let e = ApiError::parse(
            429,
            br#"{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(e.reason, "RESOURCE_EXHAUSTED");
        let e = ApiError::parse(502, b"<html>bad gateway</html>");
        assert_eq!(e.reason, "");
        assert!(e.message.contains("502"));
    }

    #[test]
    fn user_conversion_lowercases_and_merges_aliases() {
        let u: ApiUser = serde_json::from_str(
            r#"{"id":"1","primaryEmail":"Alice@Example.com","aliases":["AL@example.com","alice@example.com"],
                "nonEditableAliases":["alice@example.test-google-a.com"],"suspended":true}"#,
        )
        .unwrap();
        let p = u.into_person("users.get").unwrap();
        assert_eq!(p.primary_email, "alice@example.com");
        assert_eq!(
            p.aliases,
            vec!["al@example.com", "alice@example.test-google-a.com"]
        );
        assert!(p.suspended);
        assert!(!p.archived);
    }
}
