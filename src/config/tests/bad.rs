//! Bad configurations: exact position, key path and message of each problem, several
//! problems at once, and redaction of secrets in messages and `Debug`.

use super::super::StaticEnv;
use super::{errs, errs_with, ok_with, MIN, SECRET};

/// MIN is 17 lines; text appended to it starts on line 18 (inside the last `[[upstream]]`
/// unless it opens a new table).
fn append(extra: &str) -> String {
    format!("{MIN}{extra}")
}

/// `MIN` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(MIN.contains(from), "MIN has no {from:?}");
    MIN.replacen(from, to, 1)
}

struct Case {
    name: &'static str,
    text: String,
    env: StaticEnv,
    /// How many problems the config has in total.
    count: usize,
    line: usize,
    column: usize,
    key: &'static str,
    /// Must appear in `message; fix`.
    phrase: &'static str,
}

fn case(
    name: &'static str,
    text: String,
    at: (usize, usize),
    key: &'static str,
    phrase: &'static str,
) -> Case {
    Case {
        name,
        text,
        env: StaticEnv::new(),
        count: 1,
        line: at.0,
        column: at.1,
        key,
        phrase,
    }
}

impl Case {
    fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }
    fn env(mut self, env: StaticEnv) -> Self {
        self.env = env;
        self
    }
}

fn cases() -> Vec<Case> {
    const SA: &str = r#"{"type":"service_account","client_email":"a@b.iam","private_key":"k"}"#;
    vec![
        case("unknown key", edit("[session]\n", "[session]\nttll = \"1h\"\n"), (6, 1), "session.ttll", "did you mean `ttl`?"),
        case("unknown section", append("[sesion]\nttl = \"1h\"\n"), (18, 2), "sesion", "did you mean `session`?"),
        case("unknown key, no near miss", edit("[session]\n", "[session]\nzzz = 1\n"), (6, 1), "session.zzz", "[session] accepts: secret, previous_secrets"),
        case("wrong type", edit("listen = \"127.0.0.1:8443\"", "listen = 8443"), (2, 10), "server.listen", "expected a string, found integer"),
        case("missing required key", edit("public_url = \"https://jira.example.com\"\n", ""), (1, 1), "server.public_url", "missing required key `public_url`; add `public_url = "),
        case("missing section", edit("[session]\nsecret = \"0123456789abcdef0123456789abcdef\"\n", ""), (1, 1), "session", "missing required section `session`; add a [session] section"),
        case("bad duration", edit("[session]\n", "[session]\nttl = \"12 hours\"\n"), (6, 7), "session.ttl", "`12 hours` is not a duration"),
        case("duration without unit", edit("[session]\n", "[session]\nttl = 30\n"), (6, 7), "session.ttl", "needs a unit; write it as a string with a unit, e.g. `ttl = \"30s\"`"),
        case("zero timeout", edit("[session]\n", "[session]\nidle_timeout = \"0s\"\n"), (6, 16), "session.idle_timeout", "must be longer than 0"),
        case("bad regex", append("passthrough = [\"^/ok/\", \"^/rest/(\"]\n"), (18, 25), "upstream[0].passthrough[1]", "invalid regex `^/rest/(`: unclosed group"),
        case("bad address", edit("listen = \"127.0.0.1:8443\"", "listen = \"localhost:8443\""), (2, 10), "server.listen", "`localhost:8443` is not an IP address with a port"),
        case("http issuer off loopback", edit("name = \"google\"\n", "name = \"google\"\nkind = \"oidc\"\nissuer = \"http://idp.example.com\"\n"), (11, 10), "idp[0].issuer", "http:// is accepted only for loopback"),
        case("oidc without issuer", edit("name = \"google\"\n", "name = \"google\"\nkind = \"oidc\"\n"), (8, 1), "idp[0].issuer", "missing required key `issuer`"),
        case("short session secret", edit(SECRET, "short"), (6, 10), "session.secret", "the secret is 5 bytes; it needs at least 32; generate one with `usher keygen`"),
        case("short previous secret", edit("[session]\n", "[session]\nprevious_secrets = [\"old\"]\n"), (6, 21), "session.previous_secrets[0]", "needs at least 32"),
        case("unknown target", append("targets = [\"jira\"]\n"), (18, 12), "upstream[0].targets[0]", "no [[target]] is named `jira`; add a [[target]]"),
        case("target typo", append("targets = [\"jirra\"]\n[[target]]\nname = \"jira\"\nkind = \"jira\"\nurl = \"http://127.0.0.1:8080\"\nauth = { token = \"t\" }\n"), (18, 12), "upstream[0].targets[0]", "did you mean \"jira\"?"),
        case("duplicate upstream host", append("[[upstream]]\nname = \"two\"\nhost = \"JIRA.example.com\"\nurl = \"http://127.0.0.1:8081\"\n"), (20, 8), "upstream[1].host", "duplicate upstream host `JIRA.example.com` (first used on line 16)"),
        case("duplicate upstream name", append("[[upstream]]\nname = \"jira\"\nhost = \"b.example.com\"\nurl = \"http://127.0.0.1:8081\"\n"), (19, 8), "upstream[1].name", "duplicate upstream name `jira` (first used on line 15)"),
        case("upstream url with path", edit("url = \"http://127.0.0.1:8080\"", "url = \"http://127.0.0.1:8080/jira\""), (17, 7), "upstream[0].url", "has a path"),
        case("bad host", edit("host = \"jira.example.com\"", "host = \"https://jira.example.com\""), (16, 8), "upstream[0].host", "is not a host name"),
        case("directory idp typo", append("[directory]\nidp = \"gogle\"\noauth = true\n"), (19, 7), "directory.idp", "no [[idp]] is named `gogle`; did you mean \"google\"?"),
        case("service account and oauth", append("[directory]\nservice_account_key = \"${SA}\"\nadmin_subject = \"a@example.com\"\noauth = true\n"), (21, 9), "directory.oauth", "both `service_account_key` and `oauth = true`").env(StaticEnv::new().var("SA", SA)),
        case("neither service account nor oauth", append("[directory]\ncustomer = \"C01\"\n"), (18, 1), "directory", "no way to authenticate to the directory"),
        case("service account without subject", append("[directory]\nservice_account_key = \"${SA}\"\n"), (18, 1), "directory.admin_subject", "missing required key `admin_subject`").env(StaticEnv::new().var("SA", SA)),
        case("service account key not json", append("[directory]\nservice_account_key = \"file:/sa.json\"\nadmin_subject = \"a@example.com\"\n"), (19, 23), "directory.service_account_key", "is not a service-account JSON key: not valid JSON").env(StaticEnv::new().file("/sa.json", "not json")),
        case("env var unset", edit(&format!("\"{SECRET}\""), "\"${NOPE}\""), (6, 10), "session.secret", "environment variable `NOPE` is not set; set NOPE"),
        case("malformed env reference", edit("client_id = \"cid\"", "client_id = \"${not a name}\""), (10, 13), "idp[0].client_id", "malformed environment reference"),
        case("file unreadable", edit("client_secret = \"csecret\"", "client_secret = \"file:/nonexistent\""), (11, 17), "idp[0].client_secret", "cannot read file:/nonexistent"),
        case("empty secret", edit("client_secret = \"csecret\"", "client_secret = \"\""), (11, 17), "idp[0].client_secret", "is empty"),
        case("percent over 100", append("[sync]\nmax_deprovision = \"150%\"\n"), (19, 19), "sync.max_deprovision", "150% is more than 100%"),
        case("limit not a number", append("[sync]\nmax_group_removals = \"lots\"\n"), (19, 22), "sync.max_group_removals", "expected a count (5000) or a percentage"),
        case("enum typo", edit("[session]\n", "[session]\nstore = \"coookie\"\n"), (6, 9), "session.store", "did you mean \"cookie\"?"),
        case("enum far off", edit("[session]\n", "[session]\nstore = \"disk\"\n"), (6, 9), "session.store", "use one of \"cookie\", \"memory\", \"redis\""),
        case("table instead of array", edit("[[idp]]", "[idp]"), (8, 1), "idp", "expected an array of tables, found a single table; write `[[idp]]`"),
        case("toml syntax", edit("listen = \"127.0.0.1:8443\"", "listen = = 1"), (2, 10), "", "TOML syntax").count(2),
        case("quoted boolean", append("[provisioning]\ncreate_users = \"true\"\n"), (19, 16), "provisioning.create_users", "remove the quotes: `create_users = true`"),
        case("integer out of range", edit("[server]\n", "[server]\nworkers = 5000\n"), (2, 11), "server.workers", "must be between 0 and 1024"),
        case("quoted integer", edit("[server]\n", "[server]\nmax_connections = \"100\"\n"), (2, 19), "server.max_connections", "remove the quotes: `max_connections = 100`"),
        case("reserved identity header", append("identity_headers = { user = \"Authorization\" }\n"), (18, 29), "upstream[0].identity_headers.user", "is a header usher or HTTP itself controls"),
        case("invalid header name", append("assertion_header = \"X Bad\"\n"), (18, 20), "upstream[0].assertion_header", "not a valid HTTP header name"),
        case("same identity header twice", append("identity_headers = { user = \"X-Id\", email = \"x-id\" }\n"), (18, 20), "upstream[0].identity_headers", "used for two identity fields"),
        case("replacement names a missing group", append("[provisioning]\nusername = { regex = \"(.*)@.*\", replacement = \"$2\" }\n"), (19, 47), "provisioning.username.replacement", "refers to group `2`"),
        case("display name placeholder typo", append("[provisioning]\ndisplay_name = \"{given} {family_name}\"\n"), (19, 16), "provisioning.display_name", "did you mean {given_name}?"),
        case("bad protected regex", append("[provisioning]\nprotected_users = [\"re:[\"]\n"), (19, 20), "provisioning.protected_users[0]", "invalid regex"),
        case("password and token", append("[[target]]\nname = \"j\"\nkind = \"jira\"\nurl = \"http://127.0.0.1:1\"\nauth = { username = \"u\", password = \"p\", token = \"t\" }\n"), (22, 50), "target[0].auth.token", "both `password` and `token` are set"),
        case("auth without credentials", append("[[target]]\nname = \"j\"\nkind = \"jira\"\nurl = \"http://127.0.0.1:1\"\nauth = {}\n"), (22, 8), "target[0].auth", "no credentials"),
        case("jira-only key on confluence", append("[[target]]\nname = \"c\"\nkind = \"confluence\"\nurl = \"http://127.0.0.1:1\"\nauth = { token = \"t\" }\ndefault_project_lead = \"x\"\n"), (23, 24), "target[0].default_project_lead", "only used by kind = \"jira\""),
        case("target without kind", append("[[target]]\nname = \"c\"\nurl = \"http://127.0.0.1:1\"\nauth = { token = \"t\" }\n"), (18, 1), "target[0].kind", "missing required key `kind`"),
        case("google idp open to everyone", edit("allowed_domains = [\"example.com\"]\n", ""), (8, 1), "idp[0].allowed_domains", "lets every Google account sign in"),
        case("bad allowed domain", edit("allowed_domains = [\"example.com\"]", "allowed_domains = [\"@example.com\"]"), (12, 20), "idp[0].allowed_domains[0]", "is not a domain name"),
        case("jitter not below interval", append("[sync]\ninterval = \"10m\"\njitter = \"10m\"\n"), (20, 10), "sync.jitter", "must be shorter than `interval`"),
        case("admin email", append("[admin]\nusers = [\"it-admin\"]\n"), (19, 10), "admin.users[0]", "`it-admin` is not an email address"),
        case("public url with path", edit("public_url = \"https://jira.example.com\"", "public_url = \"https://jira.example.com/jira\""), (3, 14), "server.public_url", "has a path, query or fragment"),
        case("cookie name", edit("[session]\n", "[session]\ncookie_name = \"my cookie\"\n"), (6, 15), "session.cookie_name", "is not a valid cookie name"),
        case("trusted proxy", edit("[server]\n", "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n"), (2, 20), "server.trusted_proxies[0]", "is not an IP address or network"),
        case("admin listener same as listen", edit("[server]\n", "[server]\nadmin_listen = \"127.0.0.1:8443\"\n"), (2, 16), "server.admin_listen", "is the same address as `listen`"),
        case("redis store without url", edit("[session]\n", "[session]\nstore = \"redis\"\n"), (5, 1), "session.store", "needs a Redis URL"),
        case("directory names an oidc idp", append("[[idp]]\nname = \"kc\"\nkind = \"oidc\"\nissuer = \"https://kc.example.com\"\nclient_id = \"a\"\nclient_secret = \"b\"\n[directory]\nidp = \"kc\"\noauth = true\n"), (25, 7), "directory.idp", "is a kind = \"oidc\" IdP"),
        case("group map without target", append("[groups]\n[[groups.map]]\nidp = \"eng@example.com\"\n"), (19, 1), "groups.map[0].target", "missing required key `target`"),
        case("typo in inline table", edit("[server]\n", "[server]\ntls = { cert = \"a\", kye = \"b\" }\n"), (2, 7), "server.tls.key", "missing required key `key`").count(2),
        case("did you mean inside inline table", edit("[server]\n", "[server]\ntls = { cert = \"a\", kye = \"b\" }\n"), (2, 21), "server.tls.kye", "did you mean `key`?").count(2),
        case("short scim token", edit("client_id = \"cid\"", "client_id = \"cid\"\nscim_token = \"short\""), (11, 14), "idp[0].scim_token", "shorter than 16 characters"),
        case("groups claim", edit("client_id = \"cid\"", "client_id = \"cid\"\ngroups_claim = \"a..b\""), (11, 16), "idp[0].groups_claim", "not a claim name or dotted path"),
        case("bad name", edit("name = \"jira\"", "name = \"jira prod\""), (15, 8), "upstream[0].name", "is not a valid name"),
        case("webhook not a url", append("[sync]\nnotify_webhook = \"${HOOK}\"\n"), (19, 18), "sync.notify_webhook", "is not an http(s) URL").env(StaticEnv::new().var("HOOK", "not a url")),
        case("misplaced key", edit("[session]\n", "[session]\nlisten = \"127.0.0.1:1\"\n"), (6, 1), "session.listen", "`listen` belongs in [server]"),
        case("no follow-on errors after a malformed [[target]]", append("targets = [\"jira\"]\n[target]\nname = \"jira\"\n"), (19, 1), "target", "expected an array of tables"),
        case("no follow-on errors after a bad idp name", edit("name = \"google\"", "name = \"goo gle\"") + "[directory]\nidp = \"goo gle\"\noauth = true\n", (9, 8), "idp[0].name", "is not a valid name"),
        case("state redis url", append("[state]\nredis_url = \"http://x\"\n"), (19, 13), "state.redis_url", "is not a redis:// or rediss:// URL"),
    ]
}

#[test]
fn each_bad_config_is_reported_at_its_line_column_and_key() {
    let mut failures = Vec::new();
    for c in cases() {
        let problems = errs_with(&c.text, &c.env);
        let hit = problems.iter().find(|p| {
            p.line == Some(c.line)
                && p.column == Some(c.column)
                && p.key == c.key
                && format!("{}; {}", p.message, p.fix).contains(c.phrase)
        });
        if hit.is_none() || problems.len() != c.count {
            let got: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            failures.push(format!(
                "{}: want {}:{} {} {:?} ({} problem(s)), got:\n    {}",
                c.name,
                c.line,
                c.column,
                c.key,
                c.phrase,
                c.count,
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let text = r#"[server]
listen = "nope"
public_url = "ftp://x"
colour = "blue"

[session]
secret = "short"
ttl = "forever"

[[idp]]
name = "google"
client_id = "cid"
client_secret = "${UNSET_SECRET}"
allowed_domains = ["example.com"]

[[upstream]]
name = "jira"
host = "jira.example.com"
url = "http://127.0.0.1:8080"
targets = ["ghost"]

[sync]
max_deprovision = "200%"
"#;
    let problems = errs(text);
    let got: Vec<(usize, &str)> = problems
        .iter()
        .map(|p| (p.line.unwrap(), p.key.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "server.listen"),
            (3, "server.public_url"),
            (4, "server.colour"),
            (7, "session.secret"),
            (8, "session.ttl"),
            (13, "idp[0].client_secret"),
            (20, "upstream[0].targets[0]"),
            (23, "sync.max_deprovision"),
        ]
    );
    let shown = super::super::parse(text, "usher.toml", &StaticEnv::new())
        .unwrap_err()
        .to_string();
    assert_eq!(shown.lines().count(), 8);
    assert!(shown.starts_with(
        "usher.toml:2:10: server.listen: `nope` is not an IP address with a port; write it as"
    ));
    assert!(shown
        .contains("\nusher.toml:4:1: server.colour: unknown key `colour` in [server]; remove it;"));
}

#[test]
fn syntax_errors_are_all_reported() {
    let text = "[server]\nlisten = = 1\n[session\nsecret = \"x\"\n";
    let problems = errs(text);
    assert!(problems.len() >= 2, "{problems:?}");
    assert!(problems
        .iter()
        .all(|p| p.message.starts_with("TOML syntax")));
    assert_eq!(problems[0].line, Some(2));
    assert!(problems.iter().any(|p| p.line == Some(3)));
}

#[test]
fn duplicate_keys_are_syntax_errors_with_a_position() {
    let text = edit("[session]\n", "[session]\nttl = \"1h\"\nttl = \"2h\"\n");
    let problems = errs(&text);
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].line, problems[0].column), (Some(7), Some(1)));
    assert!(problems[0].message.contains("duplicate key"));
}

#[test]
fn secrets_never_appear_in_messages() {
    let leaked = "hunter2-leaked";
    let env = StaticEnv::new()
        .var("SHORT", leaked)
        .var("LISTEN", "listen-from-env-value")
        .var("HOOK", "https-not://hunter2-leaked")
        .file("/k.json", "{\"hunter2-leaked\": 1}");
    let text = MIN
        .replace(&format!("\"{SECRET}\""), "\"${SHORT}\"")
        .replace("listen = \"127.0.0.1:8443\"", "listen = \"${LISTEN}\"")
        .replace("client_secret = \"csecret\"", "client_secret = \"${not valid hunter2-leaked}\"")
        + "redis_url = \"hunter2-leaked\"\n"
        + "[[target]]\nname = \"t\"\nkind = \"jira\"\nurl = \"http://127.0.0.1:1\"\nauth = { password = \"hunter2-leaked\" }\n"
        + "[directory]\nservice_account_key = \"file:/k.json\"\nadmin_subject = \"a@example.com\"\n"
        + "[sync]\nnotify_webhook = \"${HOOK}\"\n";
    // `redis_url` lands in [[upstream]] where it is unknown: the key is named, not the value.
    let shown = super::super::parse(&text, "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(shown.lines().count() >= 6, "{shown}");
    assert!(!shown.contains(leaked), "{shown}");
    assert!(!shown.contains("listen-from-env-value"), "{shown}");
    assert!(
        shown.contains("the value of ${LISTEN} is not an IP address"),
        "{shown}"
    );
    assert!(
        shown.contains("session.secret: the secret is 14 bytes"),
        "{shown}"
    );
}

#[test]
fn settings_debug_redacts_every_secret() {
    let env = StaticEnv::new()
        .var("SESSION", "session-secret-session-secret-123")
        .var("CLIENT", "client-secret-value")
        .var("PAT", "target-token-value")
        .var("SCIM", "scim-token-value-0123");
    let text = MIN
        .replace(&format!("\"{SECRET}\""), "\"${SESSION}\"")
        .replace("\"csecret\"", "\"${CLIENT}\"\nscim_token = \"${SCIM}\"")
        + "[[target]]\nname = \"t\"\nkind = \"jira\"\nurl = \"http://127.0.0.1:1\"\nauth = { username = \"bot\", token = \"${PAT}\" }\n";
    let s = ok_with(&text, &env);
    let debug = format!("{s:?}");
    for value in [
        "session-secret-session-secret-123",
        "client-secret-value",
        "target-token-value",
        "scim-token-value-0123",
    ] {
        assert!(!debug.contains(value), "{value} leaked in Debug");
    }
    assert!(debug.contains("Secret(***)"));
    assert!(debug.contains("bot"), "non-secret fields stay visible");
}
