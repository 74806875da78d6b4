//! Source-neutral identity types: the people, groups and memberships a source
//! (Google Workspace, an OIDC claim, inbound SCIM) reports, as plain data.
//! Owns no I/O and no policy: mapping to target accounts lives in `provision/`.

use serde::{Deserialize, Serialize};

/// Which source a person or group came from plus its immutable id there, so a
/// renamed person (new email) stays linked to the same target account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExternalId {
    /// The source name, e.g. the `[[idp]] name` (`"google"`).
    pub source: String,
    /// The source's immutable id (Google user id = OIDC `sub`).
    pub id: String,
}

/// One person as a source knows them. Suspended and archived people are still
/// reported (with the flags set) so sync can deactivate them rather than guess.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Person {
    /// Immutable id (Google user id, equal to the OIDC `sub`); the linking key.
    pub id: String,
    /// Primary email, lower-case.
    pub primary_email: String,
    /// Other addresses that reach the same person (aliases, secondary emails),
    /// lower-case, sorted, without the primary.
    pub aliases: Vec<String>,
    /// Given (first) name as the source has it.
    pub given_name: String,
    /// Family (last) name as the source has it.
    pub family_name: String,
    /// The source's display form of the name (may be empty).
    pub full_name: String,
    /// Suspended in the source: may not sign in; sync deactivates.
    pub suspended: bool,
    /// Archived in the source (Google "archived user"): treated like suspended.
    pub archived: bool,
    /// Google org unit (`/` = root); empty for sources without org units.
    pub org_unit_path: String,
    /// Super admin in the source (informational; usher admins come from `[admin]`).
    pub is_admin: bool,
}

impl Person {
    /// Whether the person may be active in targets (neither suspended nor archived).
    pub fn is_active(&self) -> bool {
        !self.suspended && !self.archived
    }

    /// Whether `email` (any case) is the primary address or one of the aliases.
    pub fn has_email(&self, email: &str) -> bool {
        let email = email.to_ascii_lowercase();
        self.primary_email == email || self.aliases.contains(&email)
    }
}

/// A group as a source knows it: the immutable id, its email and display name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupRef {
    /// Immutable id in the source.
    pub id: String,
    /// Group email, lower-case (what `[[groups.map]] idp` and `[groups] name` match).
    pub email: String,
    /// Display name.
    pub name: String,
}

/// What kind of entity a group member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberKind {
    /// A person in the directory.
    User,
    /// A nested group: its members count as members of the parent when nesting is on.
    Group,
    /// "Everyone in the organisation".
    Customer,
    /// Someone outside the directory (no person to provision).
    External,
}

/// One direct member of a group, as listed by the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupMember {
    /// Immutable id of the member (person id, group id or customer id).
    pub id: String,
    /// Member email, lower-case; `None` for `Customer` members.
    pub email: Option<String>,
    /// Person, nested group, whole organisation or outsider.
    pub kind: MemberKind,
    /// `OWNER`, `MANAGER` or `MEMBER` as the source says it.
    pub role: String,
    /// `ACTIVE`, `SUSPENDED`, ... as the source says it (may be empty).
    pub status: String,
}

/// One person together with the groups they belong to (flattened through nested
/// groups when the source is configured so). What login-time provisioning needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonWithGroups {
    /// The person.
    pub person: Person,
    /// Sorted by email, no duplicates.
    pub groups: Vec<GroupRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Person {
        Person {
            id: "1".into(),
            primary_email: "alice@example.com".into(),
            aliases: vec!["al@example.com".into()],
            given_name: "Alice".into(),
            family_name: "Liddell".into(),
            full_name: "Alice Liddell".into(),
            suspended: false,
            archived: false,
            org_unit_path: "/".into(),
            is_admin: false,
        }
    }

    #[test]
    fn active_unless_suspended_or_archived() {
        let mut p = alice();
        assert!(p.is_active());
        p.archived = true;
        assert!(!p.is_active());
        p.archived = false;
        p.suspended = true;
        assert!(!p.is_active());
    }

    #[test]
    fn has_email_matches_primary_and_aliases_case_insensitively() {
        let p = alice();
        assert!(p.has_email("ALICE@example.com"));
        assert!(p.has_email("al@Example.com"));
        assert!(!p.has_email("bob@example.com"));
    }

    #[test]
    fn serde_round_trip() {
        let p = alice();
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Person>(&text).unwrap(), p);
    }
}
