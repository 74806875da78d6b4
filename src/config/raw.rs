//! The raw shape of the TOML file: every table, the keys it accepts, and the defaults of
//! optional keys. This table is what `deny_unknown_fields` means here: a key not listed is
//! reported with a "did you mean" suggestion. Decoding lives in the section modules;
//! this file holds no logic, so a key is added in exactly two places (here + its decoder).
//!
//! Why not `#[derive(Deserialize)]`: serde stops at the first error, and `check-config`
//! must report every problem at once with its line, so the decoder walks the span-annotated
//! TOML tree (`toml::de::DeTable`) itself against this schema.

/// Keys accepted in one table. `path` is the schema path: array indices are dropped
/// (`upstream[2].identity_headers` -> `upstream.identity_headers`).
pub(crate) struct TableShape {
    pub path: &'static str,
    pub keys: &'static [&'static str],
}

/// Every table of the configuration (SPEC §3 plus the documented extras).
pub(crate) const SHAPES: &[TableShape] = &[
    TableShape {
        path: "",
        keys: &[
            "server",
            "session",
            "idp",
            "directory",
            "upstream",
            "target",
            "provisioning",
            "groups",
            "sync",
            "state",
            "admin",
        ],
    },
    TableShape {
        path: "server",
        keys: &[
            "listen",
            "public_url",
            "tls",
            "admin_listen",
            "trusted_proxies",
            "workers",
            "max_connections",
            "max_header_bytes",
            "header_read_timeout",
            "shutdown_grace",
            "keepalive_timeout",
        ],
    },
    TableShape {
        path: "server.tls",
        keys: &["cert", "key"],
    },
    TableShape {
        path: "session",
        keys: &[
            "secret",
            "previous_secrets",
            "cookie_name",
            "ttl",
            "idle_timeout",
            "revalidate_after",
            "store",
            "redis_url",
        ],
    },
    TableShape {
        path: "idp",
        keys: &[
            "name",
            "kind",
            "issuer",
            "client_id",
            "client_secret",
            "allowed_domains",
            "allowed_groups",
            "groups_claim",
            "scim_token",
            "scopes",
            "revoke_on_logout",
            "username",
            "groups",
        ],
    },
    TableShape {
        path: "idp.username",
        keys: USERNAME_KEYS,
    },
    TableShape {
        path: "idp.groups",
        keys: GROUPS_KEYS,
    },
    TableShape {
        path: "idp.groups.name",
        keys: REWRITE_KEYS,
    },
    TableShape {
        path: "idp.groups.map",
        keys: GROUP_MAP_KEYS,
    },
    TableShape {
        path: "directory",
        keys: &[
            "idp",
            "customer",
            "domain",
            "api_url",
            "token_url",
            "nested_groups",
            "service_account_key",
            "admin_subject",
            "oauth",
            "users_query",
            "include_suspended",
            "rate_limit_per_minute",
        ],
    },
    TableShape {
        path: "upstream",
        keys: &[
            "name",
            "host",
            "url",
            "targets",
            "identity_headers",
            "assertion_header",
            "passthrough",
            "public",
            "connect_timeout",
            "response_timeout",
            "ca_file",
            "max_idle_per_worker",
            "idle_timeout",
        ],
    },
    TableShape {
        path: "upstream.identity_headers",
        keys: &["user", "email", "groups"],
    },
    TableShape {
        path: "target",
        keys: &[
            "name",
            "kind",
            "url",
            "auth",
            "default_project_lead",
            "default_component_lead",
            "directory_id",
            "concurrency",
            "timeout",
            "ca_file",
        ],
    },
    TableShape {
        path: "target.auth",
        keys: &["username", "password", "token"],
    },
    TableShape {
        path: "provisioning",
        keys: &[
            "username",
            "display_name",
            "create_users",
            "update_users",
            "link_existing",
            "protected_users",
            "login",
        ],
    },
    TableShape {
        path: "provisioning.username",
        keys: USERNAME_KEYS,
    },
    TableShape {
        path: "provisioning.login",
        keys: &["enabled", "refresh_after", "on_failure", "timeout"],
    },
    TableShape {
        path: "groups",
        keys: GROUPS_KEYS,
    },
    TableShape {
        path: "groups.name",
        keys: REWRITE_KEYS,
    },
    TableShape {
        path: "groups.map",
        keys: GROUP_MAP_KEYS,
    },
    TableShape {
        path: "sync",
        keys: &[
            "interval",
            "jitter",
            "deprovision",
            "max_deprovision",
            "max_changes",
            "max_group_removals",
            "concurrency",
            "notify_webhook",
        ],
    },
    TableShape {
        path: "state",
        keys: &["dir", "redis_url"],
    },
    TableShape {
        path: "admin",
        keys: &["users", "groups"],
    },
];

const USERNAME_KEYS: &[&str] = &["regex", "replacement", "lowercase"];
const REWRITE_KEYS: &[&str] = &["regex", "replacement"];
const GROUP_MAP_KEYS: &[&str] = &["idp", "target"];
const GROUPS_KEYS: &[&str] = &[
    "mode",
    "default_new_users",
    "default_all_users",
    "keep_existing",
    "filter",
    "create_missing",
    "name",
    "map",
];

/// The keys of the table at schema path `path` (empty when the path is unknown).
pub(crate) fn keys_of(path: &str) -> &'static [&'static str] {
    SHAPES
        .iter()
        .find(|s| s.path == path)
        .map_or(&[], |s| s.keys)
}

/// Defaults of optional keys, shared by the decoders and documented in the example file.
pub(crate) mod defaults {
    /// `[server] workers`: 0 = one worker per CPU core.
    pub const WORKERS: u64 = 0;
    pub const MAX_CONNECTIONS: u64 = 10_000;
    pub const MAX_HEADER_BYTES: u64 = 16_384;
    pub const HEADER_READ_TIMEOUT: &str = "10s";
    pub const SHUTDOWN_GRACE: &str = "30s";
    pub const KEEPALIVE_TIMEOUT: &str = "60s";

    pub const COOKIE_NAME: &str = "_usher";
    pub const SESSION_TTL: &str = "12h";
    pub const SESSION_IDLE: &str = "2h";
    pub const REVALIDATE_AFTER: &str = "5m";
    /// Bytes of key material a session secret needs at least.
    pub const MIN_SECRET_BYTES: usize = 32;
    /// Characters an inbound SCIM bearer token needs at least.
    pub const MIN_SCIM_TOKEN: usize = 16;

    pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
    pub const GROUPS_CLAIM: &str = "groups";

    pub const DIRECTORY_CUSTOMER: &str = "my_customer";
    pub const DIRECTORY_API_URL: &str = "https://admin.googleapis.com";
    pub const DIRECTORY_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
    pub const DIRECTORY_RATE_PER_MINUTE: u64 = 2_400;

    pub const IDENTITY_USER: &str = "X-Forwarded-User";
    pub const IDENTITY_EMAIL: &str = "X-Forwarded-Email";
    pub const IDENTITY_GROUPS: &str = "X-Forwarded-Groups";
    pub const ASSERTION_HEADER: &str = "X-Usher-Assertion";
    pub const CONNECT_TIMEOUT: &str = "5s";
    pub const RESPONSE_TIMEOUT: &str = "60s";
    pub const MAX_IDLE_PER_WORKER: u64 = 256;
    pub const UPSTREAM_IDLE: &str = "90s";

    pub const TARGET_CONCURRENCY: u64 = 4;
    pub const TARGET_TIMEOUT: &str = "30s";

    pub const USERNAME_REGEX: &str = "(.*)@.*";
    pub const USERNAME_REPLACEMENT: &str = "$1";
    pub const DISPLAY_NAME: &str = "{given_name} {family_name}";
    pub const REFRESH_AFTER: &str = "15m";
    pub const LOGIN_TIMEOUT: &str = "10s";

    pub const MAX_DEPROVISION_PERCENT: f64 = 5.0;
    pub const MAX_GROUP_REMOVALS_PERCENT: f64 = 10.0;
    pub const MAX_CHANGES: u64 = 5_000;
    pub const SYNC_CONCURRENCY: u64 = 8;
    /// Default jitter is a tenth of the interval, but never more than this.
    pub const MAX_DEFAULT_JITTER: &str = "5m";

    pub const STATE_DIR: &str = "./data";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn no_table_or_key_is_listed_twice() {
        let paths: BTreeSet<_> = SHAPES.iter().map(|s| s.path).collect();
        assert_eq!(paths.len(), SHAPES.len());
        for shape in SHAPES {
            let keys: BTreeSet<_> = shape.keys.iter().collect();
            assert_eq!(keys.len(), shape.keys.len(), "{}", shape.path);
        }
        assert!(keys_of("server").contains(&"listen"));
        assert!(keys_of("no.such.table").is_empty());
    }
}
