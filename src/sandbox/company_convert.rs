//! The company seed converted into each emulator's own seed: Google OIDC accounts,
//! the Directory seed, and the Atlassian fixture and product seeds. Pure
//! conversions; checks live in `company.rs`, starting in `run.rs`.

use super::*;

type Pairs = Vec<(String, String)>;
type BotAuth = (Pairs, Pairs, Vec<String>);

impl Company {
    /// The Google OIDC emulator's configuration; `extra_redirect_uris` are accepted
    /// besides the seed's (e.g. the demo proxy's callback on its real port).
    /// Suspension is not part of it: apply [`Person::can_sign_in`] after start.
    pub fn oidc_config(&self, extra_redirect_uris: &[String]) -> GoogleOidcConfig {
        let mut redirect_uris = self.oauth_client.redirect_uris.clone();
        for uri in extra_redirect_uris {
            // usher has two redirect URIs on the same client (sign-in and the
            // directory consent); an admin registers both, so the sandbox does too.
            let consent = uri
                .strip_suffix(crate::auth::oidc::CALLBACK_PATH)
                .map(|origin| format!("{origin}{}", crate::directory::CONNECT_PATH));
            for u in std::iter::once(uri.clone()).chain(consent) {
                if !redirect_uris.contains(&u) {
                    redirect_uris.push(u);
                }
            }
        }
        GoogleOidcConfig {
            client_id: self.oauth_client.client_id.clone(),
            client_secret: self.oauth_client.client_secret.clone(),
            redirect_uris,
            people: self.oidc_people(),
        }
    }

    /// Everyone as the OIDC emulator's accounts (`sub` = directory id; `hd` = the
    /// domain for addresses in it, none for consumer addresses elsewhere).
    pub fn oidc_people(&self) -> Vec<SeedPerson> {
        self.people
            .iter()
            .map(|p| {
                let mut s = SeedPerson::workspace(&p.email, &p.id, &p.given_name, &p.family_name);
                // `hd` is the Workspace domain; an address elsewhere is a consumer account.
                s.hd = p
                    .email
                    .rsplit_once('@')
                    .filter(|(_, d)| d.eq_ignore_ascii_case(&self.domain))
                    .map(|_| self.domain.clone());
                s
            })
            .collect()
    }

    /// The Directory emulator's seed, with `service_account` allowed to delegate and
    /// the OAuth client registered (for the refresh-token mode).
    pub fn directory_seed(&self, service_account: SeedServiceAccount) -> DirectorySeed {
        let users = self
            .people
            .iter()
            .map(|p| SeedUser {
                id: p.id.clone(),
                primary_email: p.email.clone(),
                aliases: p.aliases.clone(),
                given_name: p.given_name.clone(),
                family_name: p.family_name.clone(),
                suspended: p.suspended,
                archived: p.archived,
                is_admin: p.admin,
                org_unit_path: p.org_unit.clone(),
            })
            .collect();
        let groups = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| SeedGroup {
                id: g
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("03sandbox{:06x}", i + 1)),
                email: g.email.clone(),
                name: g.name.clone(),
                description: g.description.clone(),
                aliases: Vec::new(),
                members: g.members.iter().map(|m| SeedMember::email(m)).collect(),
            })
            .collect();
        DirectorySeed {
            customer_id: self.customer_id.clone(),
            domain: self.domain.clone(),
            users,
            groups,
            service_accounts: vec![service_account],
            oauth_clients: vec![SeedOAuthClient {
                client_id: self.oauth_client.client_id.clone(),
                client_secret: self.oauth_client.client_secret.clone(),
                refresh_tokens: Vec::new(),
            }],
        }
    }

    /// Checks that a key (from `key_file` or generated) belongs to the seed's account.
    pub fn check_key(&self, key: &ServiceAccountKey) -> Result<(), CompanyError> {
        if key.client_email == self.service_account.client_email {
            return Ok(());
        }
        Err(CompanyError {
            file: "service_account.key_file".into(),
            problem: format!(
                "the key belongs to {}, not to service_account.client_email {}",
                key.client_email, self.service_account.client_email
            ),
            fix: "use that account's key, or set client_email to the key's account".into(),
        })
    }

    /// The Atlassian state before usher runs: the accounts, people who already have
    /// an account (same email), and the groups. The bot is added by each product seed.
    pub fn fixture(&self) -> Fixture {
        let mut users: Vec<(String, String, String)> = self
            .atlassian
            .accounts
            .iter()
            .map(|a| (a.username.clone(), a.email.clone(), a.display_name.clone()))
            .collect();
        for p in &self.people {
            if let Some(u) = &p.atlassian_username {
                users.push((u.clone(), p.email.clone(), p.display_name()));
            }
        }
        let groups = self
            .atlassian
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.members.clone()))
            .collect();
        Fixture { users, groups }
    }

    /// Basic `(user, password)`, bearer `(token, user)` and admin usernames of the bot.
    fn bot_auth(&self) -> BotAuth {
        let bot = &self.atlassian.bot;
        let mut admins = vec![bot.username.clone()];
        admins.extend(self.atlassian.admins.iter().cloned());
        (
            vec![(bot.username.clone(), bot.password.clone())],
            vec![(bot.token.clone(), bot.username.clone())],
            admins,
        )
    }

    /// The Jira emulator's seed (Jira 10 behaviour).
    pub fn jira_seed(&self) -> JiraSeed {
        let (basic, bearer, admins) = self.bot_auth();
        JiraSeed {
            basic,
            bearer,
            admins,
            users: Vec::new(),
            groups: Vec::new(),
            ..JiraSeed::default()
        }
        .with_fixture(&self.fixture())
    }

    /// The Confluence emulator's seed.
    pub fn confluence_seed(&self) -> ConfluenceSeed {
        let (basic, bearer, admins) = self.bot_auth();
        ConfluenceSeed {
            basic,
            bearer,
            admins,
            users: Vec::new(),
            groups: Vec::new(),
            ..ConfluenceSeed::default()
        }
        .with_fixture(&self.fixture())
    }

    /// The Bitbucket emulator's seed.
    pub fn bitbucket_seed(&self) -> BitbucketSeed {
        let (basic, bearer, admins) = self.bot_auth();
        BitbucketSeed {
            basic,
            bearer,
            admins,
            users: Vec::new(),
            groups: Vec::new(),
            ..BitbucketSeed::default()
        }
        .with_fixture(&self.fixture())
    }

    /// The Crowd emulator's seed (the bot is not a Crowd user; the application is).
    pub fn crowd_seed(&self) -> CrowdSeed {
        let app = &self.atlassian.crowd_application;
        CrowdSeed {
            applications: vec![(app.name.clone(), app.password.clone())],
            users: Vec::new(),
            groups: Vec::new(),
            ..CrowdSeed::default()
        }
        .with_fixture(&self.fixture())
    }

    /// The SCIM emulator's seed.
    pub fn scim_seed(&self) -> ScimSeed {
        ScimSeed {
            tokens: vec![self.atlassian.scim.token.clone()],
            directory_id: self.atlassian.scim.directory_id.clone(),
            users: Vec::new(),
            groups: Vec::new(),
        }
        .with_fixture(&self.fixture())
    }
}
