//! What the pushed resources mean as a source: a SCIM User becomes a [`Person`]
//! (identity = the IdP's `externalId`, else the SCIM `id`), a SCIM Group a
//! [`GroupRef`] named by its `displayName`, and [`ScimDirectory`] serves an IdP's
//! pushed people through the [`Directory`] trait so a full sync can read them.
//! Pure mapping plus an in-memory read of the store; never writes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::stream;
use serde_json::Value;

use super::store::{member_ids, IdpResources, ScimStore, StoredResource};
use super::wire::Kind;
use crate::directory::{BoxFuture, Directory, DirectoryError, Pages};
use crate::identity::{GroupMember, GroupRef, MemberKind, Person, PersonWithGroups};

/// The immutable id usher links a pushed user by: `externalId` (Okta, Entra ID and
/// Keycloak put their own user id there, which is also the OIDC `sub` for Okta and
/// Keycloak), else the SCIM `id` usher assigned.
pub fn identity_id(u: &StoredResource) -> String {
    u.str_attr("externalId")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| u.id.clone())
}

fn emails(u: &StoredResource) -> Vec<(String, bool)> {
    u.attrs
        .get("emails")
        .and_then(Value::as_array)
        .map(|es| {
            es.iter()
                .filter_map(|e| {
                    let v = e.get("value")?.as_str()?.trim().to_ascii_lowercase();
                    let primary = e.get("primary").and_then(Value::as_bool).unwrap_or(false);
                    (!v.is_empty()).then_some((v, primary))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A pushed user as a [`Person`]: primary e-mail from the primary `emails` entry, else
/// the first, else a `userName` that is an address; `active: false` = suspended.
pub fn person_of(u: &StoredResource) -> Person {
    let mut all = emails(u);
    let user_name = u.str_attr("userName").unwrap_or("").to_ascii_lowercase();
    let primary = all
        .iter()
        .find(|(_, p)| *p)
        .or_else(|| all.first())
        .map(|(e, _)| e.clone())
        .unwrap_or_else(|| {
            if user_name.contains('@') {
                user_name.clone()
            } else {
                String::new()
            }
        });
    all.retain(|(e, _)| *e != primary);
    let mut aliases: Vec<String> = all.into_iter().map(|(e, _)| e).collect();
    aliases.sort();
    aliases.dedup();
    let name = u.attrs.get("name");
    let part = |k: &str| {
        name.and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let full = u
        .str_attr("displayName")
        .map(str::to_string)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| part("formatted"));
    Person {
        id: identity_id(u),
        primary_email: primary,
        aliases,
        given_name: part("givenName"),
        family_name: part("familyName"),
        full_name: full,
        suspended: u.attrs.get("active") == Some(&Value::Bool(false)),
        archived: false,
        org_unit_path: String::new(),
        is_admin: false,
    }
}

/// A pushed group as a [`GroupRef`]: id = SCIM id; `email` (what `[[groups.map]] idp`
/// and `[groups] filter`/`name` match) = the lower-cased `displayName`, exactly as a
/// `groups` claim value of an OIDC provider is treated.
pub fn group_ref(g: &StoredResource) -> GroupRef {
    let name = g.str_attr("displayName").unwrap_or("").trim().to_string();
    GroupRef {
        id: g.id.clone(),
        email: name.to_lowercase(),
        name,
    }
}

/// The groups a user (by SCIM id) belongs to, through nested groups too, sorted by
/// email without duplicates.
pub fn groups_of(data: &IdpResources, user_scim_id: &str) -> Vec<GroupRef> {
    // Reverse edges: member id -> groups that list it.
    let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let ids: Vec<(&String, Vec<String>)> = data
        .groups
        .iter()
        .map(|(id, g)| (id, member_ids(g)))
        .collect();
    for (gid, members) in &ids {
        for m in members {
            if let Some((k, _)) = data
                .users
                .get_key_value(m.as_str())
                .or_else(|| data.groups.get_key_value(m.as_str()))
            {
                parents.entry(k.as_str()).or_default().push(gid.as_str());
            }
        }
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut queue: Vec<&str> = parents.get(user_scim_id).cloned().unwrap_or_default();
    while let Some(g) = queue.pop() {
        if seen.insert(g) {
            queue.extend(parents.get(g).cloned().unwrap_or_default());
        }
    }
    let mut out: Vec<GroupRef> = seen
        .into_iter()
        .filter_map(|g| data.groups.get(g).map(group_ref))
        .collect();
    out.sort_by(|a, b| a.email.cmp(&b.email));
    out.dedup_by(|a, b| a.email == b.email);
    out
}

/// One pushed user with their groups (`None` when the id is unknown).
pub fn person_with_groups(data: &IdpResources, user_scim_id: &str) -> Option<PersonWithGroups> {
    let u = data.users.get(user_scim_id)?;
    Some(PersonWithGroups {
        person: person_of(u),
        groups: groups_of(data, user_scim_id),
    })
}

/// The pushed people of one IdP as a [`Directory`], for full syncs (`usher sync
/// --source NAME`) and any other reader of the trait. Reads the in-memory store.
pub struct ScimDirectory {
    store: Arc<ScimStore>,
    idp: String,
}

impl ScimDirectory {
    /// The pushed people of `idp`.
    pub fn new(store: Arc<ScimStore>, idp: &str) -> Self {
        ScimDirectory {
            store,
            idp: idp.to_string(),
        }
    }

    fn data(&self) -> Result<IdpResources, DirectoryError> {
        self.store
            .snapshot(&self.idp)
            .ok_or_else(|| DirectoryError::Config {
                detail: format!(
                    "[[idp]] {} has no scim_token, so nothing is pushed to it; set scim_token",
                    self.idp
                ),
            })
    }
}

impl Directory for ScimDirectory {
    fn source(&self) -> &str {
        &self.idp
    }

    fn person<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersonWithGroups>, DirectoryError>> {
        Box::pin(async move {
            let data = self.data()?;
            let key_l = key.to_ascii_lowercase();
            let found = data.users.values().find(|u| {
                identity_id(u) == key
                    || u.id == key
                    || u.str_attr("userName")
                        .is_some_and(|n| n.eq_ignore_ascii_case(key))
                    || emails(u).iter().any(|(e, _)| *e == key_l)
            });
            Ok(found.and_then(|u| person_with_groups(&data, &u.id)))
        })
    }

    fn people(&self) -> Pages<'_, crate::identity::Person> {
        let page = self
            .data()
            .map(|d| d.users.values().map(person_of).collect::<Vec<_>>());
        Box::pin(stream::iter(vec![page]))
    }

    fn groups(&self) -> Pages<'_, GroupRef> {
        let page = self
            .data()
            .map(|d| d.groups.values().map(group_ref).collect::<Vec<_>>());
        Box::pin(stream::iter(vec![page]))
    }

    fn members(&self, group_key: &str) -> Pages<'_, GroupMember> {
        let key = group_key.to_string();
        let page = self.data().map(|d| {
            let Some(g) = d.groups.get(&key).or_else(|| {
                d.groups
                    .values()
                    .find(|g| group_ref(g).email == key.to_lowercase())
            }) else {
                return Vec::new();
            };
            member_ids(g)
                .into_iter()
                .filter_map(|m| {
                    if let Some(u) = d.users.get(&m) {
                        let p = person_of(u);
                        return Some(GroupMember {
                            id: p.id,
                            email: Some(p.primary_email),
                            kind: MemberKind::User,
                            role: "MEMBER".into(),
                            status: if p.suspended { "SUSPENDED" } else { "ACTIVE" }.into(),
                        });
                    }
                    d.groups.get(&m).map(|sub| GroupMember {
                        id: sub.id.clone(),
                        email: Some(group_ref(sub).email),
                        kind: MemberKind::Group,
                        role: "MEMBER".into(),
                        status: String::new(),
                    })
                })
                .collect()
        });
        Box::pin(stream::iter(vec![page]))
    }

    fn nested_groups(&self) -> bool {
        true
    }
}

/// The kind of a stored resource id in one IdP's data (`None` when unknown).
pub fn kind_of(data: &IdpResources, id: &str) -> Option<Kind> {
    if data.users.contains_key(id) {
        Some(Kind::User)
    } else if data.groups.contains_key(id) {
        Some(Kind::Group)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::snapshot;
    use serde_json::json;
    use std::time::SystemTime;

    fn attrs(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn store() -> (Arc<ScimStore>, String, String, String, tempfile::TempDir) {
        let tmp = crate::test_support::temp_dir("scim-src");
        let dir = tmp.path().join("state");
        let s = Arc::new(ScimStore::open(&dir, &["okta".into()]).unwrap());
        let now = SystemTime::now();
        let ann = s
            .create("okta", Kind::User, attrs(json!({
                "userName": "ann@example.com", "externalId": "00u1",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "emails": [{"value": "Ann.Alias@example.com"}, {"value": "ANN@example.com", "primary": true}]
            })), now)
            .unwrap();
        let bob = s
            .create(
                "okta",
                Kind::User,
                attrs(json!({"userName": "bob@example.com", "active": false})),
                now,
            )
            .unwrap();
        let backend = s
            .create(
                "okta",
                Kind::Group,
                attrs(json!({"displayName": "Backend", "members": [{"value": bob.id}]})),
                now,
            )
            .unwrap();
        s.create("okta", Kind::Group, attrs(json!({"displayName": "Eng", "members": [{"value": ann.id}, {"value": backend.id, "type": "Group"}]})), now)
            .unwrap();
        (s, ann.id, bob.id, backend.id, tmp)
    }

    #[test]
    fn users_become_people_with_nested_groups() {
        let (s, ann, bob, _, _tmp) = store();
        let data = s.snapshot("okta").unwrap();
        let a = person_with_groups(&data, &ann).unwrap();
        assert_eq!(a.person.id, "00u1", "externalId is the identity");
        assert_eq!(a.person.primary_email, "ann@example.com");
        assert_eq!(a.person.aliases, vec!["ann.alias@example.com"]);
        assert_eq!(
            (a.person.given_name.as_str(), a.person.family_name.as_str()),
            ("Ann", "Lee")
        );
        assert!(a.person.is_active());
        assert_eq!(
            a.groups
                .iter()
                .map(|g| g.email.as_str())
                .collect::<Vec<_>>(),
            vec!["eng"]
        );
        let b = person_with_groups(&data, &bob).unwrap();
        assert_eq!(b.person.id, bob, "no externalId: the SCIM id");
        assert_eq!(b.person.primary_email, "bob@example.com");
        assert!(!b.person.is_active());
        assert_eq!(
            b.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            vec!["Backend", "Eng"]
        );
    }

    #[tokio::test]
    async fn the_directory_view_snapshots_like_any_source() {
        let (s, _, bob, _, _tmp) = store();
        let dir = ScimDirectory::new(s, "okta");
        assert_eq!(dir.source(), "okta");
        let found = dir.person("ANN@example.com").await.unwrap().unwrap();
        assert_eq!(found.person.id, "00u1");
        assert!(dir.person("00u1").await.unwrap().is_some());
        assert!(dir.person("nobody").await.unwrap().is_none());
        let snap = snapshot(&dir, 2).await.unwrap();
        assert_eq!(snap.people.len(), 2);
        assert_eq!(snap.groups.len(), 2);
        let eng = snap.groups.iter().position(|g| g.email == "eng").unwrap();
        let mut in_eng: Vec<String> = snap.memberships[eng]
            .iter()
            .map(|&i| snap.people[i as usize].id.clone())
            .collect();
        in_eng.sort();
        let mut want = vec!["00u1".to_string(), bob];
        want.sort();
        assert_eq!(in_eng, want, "nested Backend members count for Eng");
    }
}
