//! Identity links: which IdP person owns which account in each target, so renames
//! update in place and nobody inherits someone else's account. Owns the pure
//! `decide_link` rule (stores live in `link_store`); never talks to a target.

use serde::{Deserialize, Serialize};

use crate::config::LinkExisting;
use crate::identity::ExternalId;
use crate::target::TargetUser;

use super::mapping::DesiredAccount;

pub use super::link_store::{FileLinkStore, LinkError, LinkStore, MemoryLinkStore};

/// The account a person owns in one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedAccount {
    /// Login name as last written by usher.
    pub username: String,
    /// The product's stable key (survives renames), when it has one.
    pub key: Option<String>,
    /// usher created this account and has not yet confirmed the groups given at
    /// creation (`default_new_users`). Written before the create call, cleared once
    /// every creation-time membership is in place, so a run that dies in between
    /// finishes the job next time instead of treating the account as adopted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// An existing target account met while linking, and the person already linked to it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub user: &'a TargetUser,
    /// The person this account is linked to, if any.
    pub linked_to: Option<&'a ExternalId>,
}

/// What to do with a person's account in one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum LinkDecision {
    /// The linked account already has the desired username.
    UseLinked { username: String },
    /// First meeting: take over this existing account (policy allowed it).
    Adopt { username: String },
    /// No account yet: create one.
    Create,
    /// The person's account exists under another name: rename it (never duplicate).
    /// `adopt` = the account was not linked yet (found by its verified e-mail).
    Rename {
        from: String,
        to: String,
        adopt: bool,
    },
    /// The person is denied in this target; the reason says why and what to do.
    Conflict(String),
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Decides how a person maps onto a target account.
///
/// `linked` is the account the person's existing link points at (already looked up
/// by key or username), `by_username` the account holding the desired username,
/// `by_email` every account whose e-mail is the person's verified primary e-mail
/// (or, when none has it, one of their verified aliases).
/// A conflict denies the person; it never hands them an account linked to someone
/// else or one the `link_existing` policy does not allow.
pub fn decide_link(
    desired: &DesiredAccount,
    linked: Option<&TargetUser>,
    by_username: Option<Candidate<'_>>,
    by_email: &[Candidate<'_>],
    policy: LinkExisting,
) -> LinkDecision {
    let me = &desired.external_id;
    let owned_by_other = |c: &Candidate<'_>| c.linked_to.is_some_and(|o| o != me);
    if let Some(acct) = linked {
        if same(&acct.username, &desired.username) {
            return LinkDecision::UseLinked {
                username: acct.username.clone(),
            };
        }
        if let Some(c) = by_username {
            if !same(&c.user.username, &acct.username) {
                return LinkDecision::Conflict(format!(
                    "the person's account {} should be renamed to {}, but another account already has that username; rename or remove that account in the target, or change provisioning.username",
                    acct.username, desired.username
                ));
            }
        }
        return LinkDecision::Rename {
            from: acct.username.clone(),
            to: desired.username.clone(),
            adopt: false,
        };
    }
    if let Some(c) = by_username {
        if owned_by_other(&c) {
            return LinkDecision::Conflict(format!(
                "the username {} belongs to an account linked to another person; check provisioning.username for a collision",
                c.user.username
            ));
        }
        let username = c.user.username.clone();
        return match policy {
            LinkExisting::Username => LinkDecision::Adopt { username },
            LinkExisting::Email
                if c.user
                    .email
                    .as_deref()
                    .is_some_and(|e| desired.owns_email(e)) =>
            {
                LinkDecision::Adopt { username }
            }
            LinkExisting::Email => LinkDecision::Conflict(format!(
                "an account {username} exists but its e-mail ({}) is not the person's verified e-mail {}; fix the account's e-mail in the target or set provisioning.link_existing = \"username\"",
                c.user.email.as_deref().unwrap_or("hidden"),
                desired.person_email
            )),
            LinkExisting::Never => LinkDecision::Conflict(format!(
                "an account {username} already exists and provisioning.link_existing = \"never\"; rename or remove it in the target"
            )),
        };
    }
    match by_email {
        [] => LinkDecision::Create,
        [c] if owned_by_other(c) => LinkDecision::Conflict(format!(
            "the account {} with e-mail {} is linked to another person",
            c.user.username, desired.person_email
        )),
        [c] => match policy {
            LinkExisting::Email => LinkDecision::Rename {
                from: c.user.username.clone(),
                to: desired.username.clone(),
                adopt: true,
            },
            _ => LinkDecision::Conflict(format!(
                "an account {} already has the e-mail {} under another username; with provisioning.link_existing = \"email\" usher would take it over and rename it",
                c.user.username, desired.person_email
            )),
        },
        many => LinkDecision::Conflict(format!(
            "{} accounts share the e-mail {} ({}); merge them in the target first",
            many.len(),
            desired.person_email,
            many.iter()
                .map(|c| c.user.username.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(id: &str, username: &str, email: &str) -> DesiredAccount {
        DesiredAccount {
            external_id: xid(id),
            person_email: email.into(),
            aliases: vec![],
            username: username.into(),
            email: email.into(),
            display_name: username.into(),
            given_name: String::new(),
            family_name: String::new(),
            active: true,
            group_reasons: Vec::new(),
            groups_on_create: Vec::new(),
        }
    }

    fn xid(id: &str) -> ExternalId {
        ExternalId {
            source: "google".into(),
            id: id.into(),
        }
    }

    fn acct(name: &str, email: &str) -> TargetUser {
        TargetUser {
            username: name.into(),
            key: Some(format!("K-{name}")),
            email: Some(email.into()),
            display_name: name.into(),
            active: true,
        }
    }

    fn cand<'a>(user: &'a TargetUser, linked_to: Option<&'a ExternalId>) -> Candidate<'a> {
        Candidate { user, linked_to }
    }

    #[test]
    fn linked_account_is_used_or_renamed_never_duplicated() {
        let d = desired("1", "ann.b", "ann.b@x.com");
        let old = acct("ann", "ann@x.com");
        assert_eq!(
            decide_link(&d, Some(&old), None, &[], LinkExisting::Never),
            LinkDecision::Rename {
                from: "ann".into(),
                to: "ann.b".into(),
                adopt: false
            }
        );
        let same = acct("ANN.B", "ann@x.com");
        assert_eq!(
            decide_link(
                &d,
                Some(&same),
                Some(cand(&same, Some(&xid("1")))),
                &[],
                LinkExisting::Never
            ),
            LinkDecision::UseLinked {
                username: "ANN.B".into()
            }
        );
        // The new name is taken by somebody else's account: conflict, not a takeover.
        let other = acct("ann.b", "other@x.com");
        assert!(matches!(
            decide_link(
                &d,
                Some(&old),
                Some(cand(&other, None)),
                &[],
                LinkExisting::Username
            ),
            LinkDecision::Conflict(_)
        ));
    }

    #[test]
    fn first_meeting_follows_link_existing() {
        let d = desired("1", "bo", "bo@x.com");
        let match_email = acct("bo", "BO@x.com");
        let other_email = acct("bo", "boris@x.com");
        let by = |u, p| decide_link(&d, None, Some(cand(u, None)), &[], p);
        assert_eq!(
            by(&match_email, LinkExisting::Email),
            LinkDecision::Adopt {
                username: "bo".into()
            }
        );
        assert!(
            matches!(by(&other_email, LinkExisting::Email), LinkDecision::Conflict(r) if r.contains("verified e-mail"))
        );
        assert_eq!(
            by(&other_email, LinkExisting::Username),
            LinkDecision::Adopt {
                username: "bo".into()
            }
        );
        assert!(matches!(
            by(&match_email, LinkExisting::Never),
            LinkDecision::Conflict(_)
        ));
        assert_eq!(
            decide_link(&d, None, None, &[], LinkExisting::Never),
            LinkDecision::Create
        );
    }

    #[test]
    fn email_match_under_another_username_and_ownership() {
        let d = desired("1", "cy", "cy@x.com");
        let renamed = acct("cyrus", "cy@x.com");
        assert_eq!(
            decide_link(&d, None, None, &[cand(&renamed, None)], LinkExisting::Email),
            LinkDecision::Rename {
                from: "cyrus".into(),
                to: "cy".into(),
                adopt: true
            }
        );
        assert!(matches!(
            decide_link(
                &d,
                None,
                None,
                &[cand(&renamed, None)],
                LinkExisting::Username
            ),
            LinkDecision::Conflict(_)
        ));
        let someone = xid("2");
        assert!(matches!(
            decide_link(&d, None, None, &[cand(&renamed, Some(&someone))], LinkExisting::Email),
            LinkDecision::Conflict(r) if r.contains("another person")
        ));
        let mine = acct("cy", "cy@x.com");
        assert!(matches!(
            decide_link(
                &d,
                None,
                Some(cand(&mine, Some(&someone))),
                &[],
                LinkExisting::Username
            ),
            LinkDecision::Conflict(_)
        ));
        let twin = acct("cy2", "cy@x.com");
        assert!(matches!(
            decide_link(&d, None, None, &[cand(&renamed, None), cand(&twin, None)], LinkExisting::Email),
            LinkDecision::Conflict(r) if r.contains("2 accounts")
        ));
    }
}
