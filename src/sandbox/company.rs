//! One seed for the whole sandbox: a small company described once (domain, people,
//! groups with nesting, the OAuth client, the directory service account, the
//! Atlassian bot and pre-existing Atlassian accounts/groups), checked for
//! consistency and converted into each emulator's own seed. Owns no HTTP and
//! starts nothing; `sandbox::run` does that.
//!
//! The built-in demo company is `company.json` beside this file; `usher sandbox
//! --seed FILE` reads a file of the same format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::atlassian::Fixture;
use super::bitbucket::BitbucketSeed;
use super::confluence::ConfluenceSeed;
use super::crowd::CrowdSeed;
use super::google_directory::{
    DirectorySeed, SeedGroup, SeedMember, SeedOAuthClient, SeedServiceAccount, SeedUser,
};
use super::google_oidc::{GoogleOidcConfig, SeedPerson};
use super::jira::JiraSeed;
use super::scim::ScimSeed;
use crate::config::Secret;
use crate::directory::google_auth::ServiceAccountKey;

/// The embedded demo company (`usher demo`, `usher sandbox` without `--seed`).
pub const DEMO_SEED: &str = include_str!("company.json");

/// Why a company seed cannot be used. Names the file, the problem and the fix.
#[derive(Debug, thiserror::Error)]
#[error("sandbox seed {file}: {problem}; {fix}")]
pub struct CompanyError {
    /// The seed file (or `<built-in demo seed>`).
    pub file: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// A small company, consistent across Google and the Atlassian products.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Company {
    /// The Workspace primary domain (`example.com`); also the `hd` claim.
    pub domain: String,
    /// Google customer id.
    #[serde(default = "default_customer")]
    pub customer_id: String,
    /// Everyone with a Google account, in directory list order.
    pub people: Vec<Person>,
    /// Google groups; members are person or group emails (nesting allowed).
    #[serde(default)]
    pub groups: Vec<Group>,
    /// The OAuth web client usher signs people in with.
    pub oauth_client: OAuthClient,
    /// The service account usher reads the directory with.
    pub service_account: ServiceAccount,
    /// Credentials and pre-existing state on the Atlassian side.
    pub atlassian: Atlassian,
    /// The service-account key read from `service_account.key_file` (never printed).
    #[serde(skip)]
    key_json: Option<Secret>,
}

fn default_customer() -> String {
    "C0sandbox".into()
}

fn root_ou() -> String {
    "/".into()
}

/// One person with a Google account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// Primary email (sign-in name).
    pub email: String,
    /// Google's immutable numeric id: the directory user id and the OIDC `sub`.
    pub id: String,
    /// Given name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Alias addresses.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Suspended in Workspace: cannot sign in, sync deactivates them.
    #[serde(default)]
    pub suspended: bool,
    /// Archived in Workspace: like suspended for sign-in.
    #[serde(default)]
    pub archived: bool,
    /// Workspace super admin (may be the service account's delegation subject).
    #[serde(default)]
    pub admin: bool,
    /// Org unit, `/` = root.
    #[serde(default = "root_ou")]
    pub org_unit: String,
    /// The username of an Atlassian account this person already has (pre-existing,
    /// with the same email), e.g. one that differs from what usher would derive.
    #[serde(default)]
    pub atlassian_username: Option<String>,
}

impl Person {
    /// Whether Google lets this person sign in (neither suspended nor archived).
    pub fn can_sign_in(&self) -> bool {
        !self.suspended && !self.archived
    }

    /// `Given Family`.
    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

/// One Google group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Group email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Google's group id; derived from the position when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Direct members: person emails (or aliases) and group emails.
    #[serde(default)]
    pub members: Vec<String>,
}

/// The OAuth client for sign-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Client secret (a sandbox value; printed by `describe`).
    pub client_secret: String,
    /// Redirect URIs accepted (usher's `/_usher/callback` URLs).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

/// The directory service account (domain-wide delegation for usher's scopes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// The account's email (JWT `iss`).
    pub client_email: String,
    /// Numeric client id.
    pub client_id: String,
    /// The admin the account acts as (`[directory] admin_subject`).
    pub admin_subject: String,
    /// A JSON key file (relative to the seed file); absent: a key is generated at start.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The Atlassian side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Atlassian {
    /// usher's service account in Jira, Confluence and Bitbucket.
    pub bot: Bot,
    /// Accounts with product admin rights (besides the bot).
    #[serde(default)]
    pub admins: Vec<String>,
    /// Accounts that exist before usher runs (not tied to a Google person).
    #[serde(default)]
    pub accounts: Vec<Account>,
    /// Groups that exist before usher runs; members are Atlassian usernames.
    #[serde(default)]
    pub groups: Vec<AtlassianGroup>,
    /// The Crowd application usher authenticates as.
    pub crowd_application: CrowdApplication,
    /// The SCIM directory usher pushes to.
    pub scim: ScimDirectory,
}

/// usher's bot account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bot {
    /// Username.
    pub username: String,
    /// Password (Basic auth).
    pub password: String,
    /// Personal access token (Bearer).
    pub token: String,
}

/// A pre-existing Atlassian account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: String,
}

/// A pre-existing Atlassian group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtlassianGroup {
    /// Group name.
    pub name: String,
    /// Member usernames.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A Crowd application's credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrowdApplication {
    /// Application name (Basic user).
    pub name: String,
    /// Application password.
    pub password: String,
}

/// The SCIM directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimDirectory {
    /// `{directoryId}` in `/scim/directory/{id}`.
    pub directory_id: String,
    /// The directory API key (Bearer).
    pub token: String,
}

const BUILT_IN: &str = "<built-in demo seed>";

impl Company {
    /// The built-in demo company.
    pub fn demo() -> Result<Self, CompanyError> {
        Self::from_json(DEMO_SEED, BUILT_IN, None)
    }

    /// Reads and checks a seed file; a `service_account.key_file` is read relative to it.
    pub fn load(path: &Path) -> Result<Self, CompanyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CompanyError {
            file: file.clone(),
            problem: format!("cannot be read ({e})"),
            fix: "check the path given to --seed".into(),
        })?;
        Self::from_json(&text, &file, path.parent())
    }

    /// Parses and checks seed `text`; `origin` names it in errors, `dir` resolves a
    /// relative key file (`None`: the current directory).
    pub fn from_json(text: &str, origin: &str, dir: Option<&Path>) -> Result<Self, CompanyError> {
        let err = |problem: String, fix: &str| CompanyError {
            file: origin.to_string(),
            problem,
            fix: fix.to_string(),
        };
        let mut company: Company = serde_json::from_str(text).map_err(|e| {
            err(
                format!("is not a valid company seed ({e})"),
                "compare it with the built-in demo seed src/sandbox/company.json",
            )
        })?;
        if let Some(key_file) = company.service_account.key_file.clone() {
            let path = match dir {
                Some(d) if key_file.is_relative() => d.join(&key_file),
                _ => key_file,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                err(
                    format!("service_account.key_file {} cannot be read ({e})", path.display()),
                    "give a path to a service-account JSON key, relative to the seed file, or remove key_file to generate one",
                )
            })?;
            company.key_json = Some(Secret::new(text));
        }
        company
            .check()
            .map_err(|(problem, fix)| err(problem, &fix))?;
        Ok(company)
    }

    /// The service-account key from `key_file`, if one was given.
    pub fn service_account_key(&self) -> Option<&Secret> {
        self.key_json.as_ref()
    }

    /// Atlassian usernames known before usher runs: the bot, the accounts and
    /// people with `atlassian_username`.
    pub fn atlassian_usernames(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .atlassian
            .accounts
            .iter()
            .map(|a| a.username.to_lowercase())
            .collect();
        names.insert(self.atlassian.bot.username.to_lowercase());
        names.extend(
            self.people
                .iter()
                .filter_map(|p| p.atlassian_username.as_ref())
                .map(|u| u.to_lowercase()),
        );
        names
    }

    fn check(&self) -> Result<(), (String, String)> {
        let bad = |p: String, f: &str| Err((p, f.to_string()));
        if self.domain.is_empty() || self.domain.contains('@') {
            return bad(
                format!("domain {:?} is not a domain", self.domain),
                "write a domain such as \"example.com\"",
            );
        }
        // Every address (person, alias, group) names one thing.
        let mut addresses: BTreeMap<String, &str> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for p in &self.people {
            let parts: Vec<&str> = p.email.split('@').collect();
            if parts.len() != 2 || parts.iter().any(|s| s.is_empty()) {
                return bad(
                    format!("person email {:?} is not an email address", p.email),
                    "write it as name@domain",
                );
            }
            if p.id.is_empty() || !p.id.chars().all(|c| c.is_ascii_digit()) {
                return bad(
                    format!("person {}: id {:?} is not a numeric Google id", p.email, p.id),
                    "give every person a unique numeric id (the OIDC sub), e.g. \"108100000000000000007\"",
                );
            }
            if !ids.insert(p.id.clone()) {
                return bad(
                    format!("person {}: id {} is used twice", p.email, p.id),
                    "give every person a unique id",
                );
            }
            for a in std::iter::once(&p.email).chain(&p.aliases) {
                if addresses.insert(a.to_lowercase(), "person").is_some() {
                    return bad(
                        format!("address {a} is used twice"),
                        "every person email, alias and group email must be unique",
                    );
                }
            }
        }
        for g in &self.groups {
            if addresses.insert(g.email.to_lowercase(), "group").is_some() {
                return bad(
                    format!("group address {} is used twice", g.email),
                    "every person email, alias and group email must be unique",
                );
            }
        }
        for g in &self.groups {
            for m in &g.members {
                if !addresses.contains_key(&m.to_lowercase()) {
                    return bad(
                        format!(
                            "group {}: member {m} is neither a person nor a group",
                            g.email
                        ),
                        "add the person or group, or remove the member",
                    );
                }
            }
        }
        if let Some(cycle) = self.group_cycle() {
            return bad(
                format!("groups contain each other in a cycle ({cycle})"),
                "nested groups must form a tree: remove one of the memberships",
            );
        }
        let subject = self.people.iter().find(|p| {
            p.email
                .eq_ignore_ascii_case(&self.service_account.admin_subject)
        });
        match subject {
            Some(p) if p.admin && p.can_sign_in() => {}
            _ => {
                return bad(
                    format!(
                        "service_account.admin_subject {} is not an active admin person",
                        self.service_account.admin_subject
                    ),
                    "name a person with \"admin\": true who is not suspended or archived",
                )
            }
        }
        if self.oauth_client.client_id.is_empty() || self.oauth_client.client_secret.is_empty() {
            return bad(
                "oauth_client needs a client_id and a client_secret".into(),
                "fill in both (any strings work in the sandbox)",
            );
        }
        let at = &self.atlassian;
        if at.bot.username.is_empty() || at.bot.password.is_empty() || at.bot.token.is_empty() {
            return bad(
                "atlassian.bot needs a username, password and token".into(),
                "fill in all three",
            );
        }
        let mut names = BTreeSet::new();
        let person_names = self
            .people
            .iter()
            .filter_map(|p| p.atlassian_username.as_deref());
        let account_names = at.accounts.iter().map(|a| a.username.as_str());
        for n in std::iter::once(at.bot.username.as_str())
            .chain(account_names)
            .chain(person_names)
        {
            if n.is_empty() || !names.insert(n.to_lowercase()) {
                return bad(
                    format!("Atlassian username {n:?} is empty or used twice"),
                    "bot, accounts and people's atlassian_username must be unique (case-insensitive)",
                );
            }
        }
        let known = |n: &String| names.contains(&n.to_lowercase());
        for a in &at.admins {
            if !known(a) {
                return bad(
                    format!("atlassian.admins names {a}, who has no Atlassian account"),
                    "add the account to atlassian.accounts",
                );
            }
        }
        for g in &at.groups {
            if let Some(m) = g.members.iter().find(|m| !known(m)) {
                return bad(
                    format!(
                        "Atlassian group {}: member {m} has no Atlassian account",
                        g.name
                    ),
                    "add the account to atlassian.accounts or a person's atlassian_username",
                );
            }
        }
        Ok(())
    }

    /// A group cycle as `a -> b -> a`, if any.
    fn group_cycle(&self) -> Option<String> {
        let edges: BTreeMap<String, Vec<String>> = self
            .groups
            .iter()
            .map(|g| {
                (
                    g.email.to_lowercase(),
                    g.members.iter().map(|m| m.to_lowercase()).collect(),
                )
            })
            .collect();
        fn visit(
            g: &str,
            edges: &BTreeMap<String, Vec<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<String> {
            if let Some(pos) = path.iter().position(|p| p == g) {
                let mut cycle = path[pos..].to_vec();
                cycle.push(g.to_string());
                return Some(cycle.join(" -> "));
            }
            if done.contains(g) {
                return None;
            }
            path.push(g.to_string());
            for m in edges.get(g).into_iter().flatten() {
                if edges.contains_key(m) {
                    if let Some(c) = visit(m, edges, path, done) {
                        return Some(c);
                    }
                }
            }
            path.pop();
            done.insert(g.to_string());
            None
        }
        let mut done = BTreeSet::new();
        edges
            .keys()
            .find_map(|g| visit(g, &edges, &mut Vec::new(), &mut done))
    }
}

#[path = "company_convert.rs"]
mod convert;

#[cfg(test)]
#[path = "company_tests.rs"]
mod tests;
