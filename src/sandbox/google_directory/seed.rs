//! What the Directory emulator starts with: the seed format (a JSON fixture of
//! people, groups with nesting, service accounts and OAuth clients), a
//! generator for large synthetic directories (benchmarks), and a helper that
//! mints a throw-away service-account key. Owns no HTTP.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::directory::google_auth::{ServiceAccountKey, SCOPES};

/// A whole seeded directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySeed {
    /// Google customer id (`my_customer` is its alias in requests).
    pub customer_id: String,
    /// Primary domain (the `domain=` list parameter must match it).
    pub domain: String,
    #[serde(default)]
    /// People, in the order users.list returns them.
    pub users: Vec<SeedUser>,
    #[serde(default)]
    /// Groups with their direct members, in list order.
    pub groups: Vec<SeedGroup>,
    #[serde(default)]
    /// Service accounts whose JWT assertions /token accepts.
    pub service_accounts: Vec<SeedServiceAccount>,
    #[serde(default)]
    /// OAuth clients whose refresh tokens /token accepts.
    pub oauth_clients: Vec<SeedOAuthClient>,
}

/// One person.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// Immutable user id (the OIDC `sub`).
    pub id: String,
    pub primary_email: String,
    #[serde(default)]
    /// Alias addresses (users.get and `email` queries find them).
    pub aliases: Vec<String>,
    pub given_name: String,
    pub family_name: String,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub archived: bool,
    /// Super admin: may act as a delegation subject / consenting admin.
    #[serde(default)]
    pub is_admin: bool,
    #[serde(default = "root_ou")]
    /// Org unit, `/` = root.
    pub org_unit_path: String,
}

fn root_ou() -> String {
    "/".into()
}

/// One group with its direct members.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGroup {
    pub id: String,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    /// Direct members (users, nested groups, the customer).
    pub members: Vec<SeedMember>,
}

/// `OWNER`, `MANAGER` or `MEMBER`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SeedRole {
    Owner,
    Manager,
    #[default]
    Member,
}

impl SeedRole {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SeedRole::Owner => "OWNER",
            SeedRole::Manager => "MANAGER",
            SeedRole::Member => "MEMBER",
        }
    }
}

/// Who a member is: a user or group by email/id (JSON fixtures), by index into
/// `users`/`groups` (generated seeds, cheap at a million rows), or the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberKey {
    /// Email (or id) of a user or group in this seed.
    Email(String),
    UserIndex(u32),
    GroupIndex(u32),
    /// Everyone in the organisation (`type: CUSTOMER`); the value is ignored.
    Customer(bool),
}

/// One direct membership row: `{"email": "a@x", "role": "OWNER"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedMember {
    #[serde(flatten)]
    /// Who the member is.
    pub key: MemberKey,
    #[serde(default)]
    /// OWNER, MANAGER or MEMBER (default).
    pub role: SeedRole,
}

impl SeedMember {
    /// A plain `MEMBER` row for `key`.
    pub fn email(key: &str) -> Self {
        SeedMember {
            key: MemberKey::Email(key.to_string()),
            role: SeedRole::Member,
        }
    }
}

/// A service account allowed domain-wide delegation for `scopes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedServiceAccount {
    /// JWT `iss`.
    pub client_email: String,
    /// Numeric client id (what an admin authorises for delegation).
    pub client_id: String,
    /// Base64 of the PKCS#1 `RSAPublicKey` DER the assertions are checked with.
    pub public_key_der: String,
    /// Scopes an admin authorised for this client id (Admin console > DWD).
    /// Scopes the consent granted.
    pub scopes: Vec<String>,
}

impl SeedServiceAccount {
    /// The account of `key`, delegated for usher's read-only scopes.
    pub fn for_key(key: &ServiceAccountKey) -> Self {
        SeedServiceAccount {
            client_email: key.client_email.clone(),
            client_id: key.client_id.clone(),
            public_key_der: STANDARD.encode(key.public_key_der()),
            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// An OAuth web client and the refresh tokens it already holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOAuthClient {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    /// Refresh tokens already granted to this client.
    pub refresh_tokens: Vec<SeedRefreshToken>,
}

/// A refresh token granted by `subject` for `scopes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRefreshToken {
    /// The refresh token value.
    pub token: String,
    /// The user who consented (must be an admin to read the directory).
    pub subject: String,
    pub scopes: Vec<String>,
}

impl DirectorySeed {
    /// Parses a JSON fixture.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A synthetic directory: `people` users (`user{i}@{domain}`, every 50th
    /// suspended, every 97th archived, user 0 a super admin), `groups` groups and
    /// `memberships` rows spread evenly (deterministic). Every 100th group also
    /// nests the next group, so flattening has real work but stays shallow.
    pub fn generate(domain: &str, people: u32, groups: u32, memberships: u64) -> Self {
        let users = (0..people)
            .map(|i| SeedUser {
                id: format!("{}", 100_000_000_000_000_000u64 + u64::from(i)),
                primary_email: format!("user{i}@{domain}"),
                aliases: Vec::new(),
                given_name: format!("Given{i}"),
                family_name: format!("Family{}", i % 1000),
                suspended: i % 50 == 49,
                archived: i % 97 == 96,
                is_admin: i == 0,
                org_unit_path: if i % 2 == 0 {
                    "/Eng".into()
                } else {
                    "/Sales".into()
                },
            })
            .collect();
        let per_group = if groups == 0 {
            0
        } else {
            memberships / u64::from(groups)
        };
        let extra = if groups == 0 {
            0
        } else {
            memberships % u64::from(groups)
        };
        let mut cursor: u64 = 0;
        let groups = (0..groups)
            .map(|g| {
                let n = per_group + u64::from(u64::from(g) < extra);
                let mut members: Vec<SeedMember> = Vec::with_capacity(n as usize + 1);
                for _ in 0..n {
                    let user = if people == 0 {
                        0
                    } else {
                        (cursor % u64::from(people)) as u32
                    };
                    cursor += 1;
                    members.push(SeedMember {
                        key: MemberKey::UserIndex(user),
                        role: SeedRole::Member,
                    });
                }
                if g % 100 == 0 && g + 1 < groups {
                    members.push(SeedMember {
                        key: MemberKey::GroupIndex(g + 1),
                        role: SeedRole::Member,
                    });
                }
                SeedGroup {
                    id: format!("0{:015x}", 0x1000_0000u64 + u64::from(g)),
                    email: format!("group{g}@{domain}"),
                    name: format!("Group {g}"),
                    description: String::new(),
                    aliases: Vec::new(),
                    members,
                }
            })
            .collect();
        DirectorySeed {
            customer_id: "C0sandbox".into(),
            domain: domain.to_string(),
            users,
            groups,
            service_accounts: Vec::new(),
            oauth_clients: Vec::new(),
        }
    }

    /// Index of every user key (id, primary email, aliases), lower-case.
    pub(super) fn user_keys(&self) -> HashMap<String, u32> {
        let mut map = HashMap::with_capacity(self.users.len() * 2);
        for (i, u) in (0u32..).zip(&self.users) {
            map.insert(u.id.clone(), i);
            map.insert(u.primary_email.to_ascii_lowercase(), i);
            for a in &u.aliases {
                map.insert(a.to_ascii_lowercase(), i);
            }
        }
        map
    }

    /// Index of every group key (id, email, aliases), lower-case.
    pub(super) fn group_keys(&self) -> HashMap<String, u32> {
        let mut map = HashMap::with_capacity(self.groups.len() * 2);
        for (i, g) in (0u32..).zip(&self.groups) {
            map.insert(g.id.clone(), i);
            map.insert(g.email.to_ascii_lowercase(), i);
            for a in &g.aliases {
                map.insert(a.to_ascii_lowercase(), i);
            }
        }
        map
    }
}

/// Mints a fresh 2048-bit service-account JSON key (sandbox/tests only; the
/// private key never leaves the process unless the caller writes it out).
pub fn generate_service_account_key(client_email: &str, client_id: &str) -> Result<String, String> {
    use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
    let mut rng = rand::rngs::OsRng;
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(|e| e.to_string())?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "usher-sandbox",
        "private_key_id": format!("{:040x}", rand::random::<u128>()),
        "private_key": pem.as_str(),
        "client_email": client_email,
        "client_id": client_id,
        "token_uri": crate::directory::google_auth::GOOGLE_TOKEN_AUDIENCE,
    });
    Ok(json.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_rows_parse_from_fixture_shapes() {
        let rows: Vec<SeedMember> = serde_json::from_str(
            r#"[{"email":"a@x.com"},{"email":"eng@x.com","role":"OWNER"},{"customer":true}]"#,
        )
        .unwrap();
        assert_eq!(rows[0], SeedMember::email("a@x.com"));
        assert_eq!(rows[1].role, SeedRole::Owner);
        assert_eq!(rows[2].key, MemberKey::Customer(true));
    }

    #[test]
    fn generator_spreads_memberships_exactly() {
        let seed = DirectorySeed::generate("example.com", 100, 7, 1000);
        assert_eq!(seed.users.len(), 100);
        assert_eq!(seed.groups.len(), 7);
        let user_rows: usize = seed
            .groups
            .iter()
            .flat_map(|g| &g.members)
            .filter(|m| matches!(m.key, MemberKey::UserIndex(_)))
            .count();
        assert_eq!(user_rows, 1000);
        assert!(seed.users[49].suspended && seed.users[96].archived && seed.users[0].is_admin);
        // group 0 nests group 1.
        assert!(seed.groups[0]
            .members
            .iter()
            .any(|m| m.key == MemberKey::GroupIndex(1)));
    }
}
