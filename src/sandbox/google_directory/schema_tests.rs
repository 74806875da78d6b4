//! Contract tests: every field the emulator emits (users, groups, members, list
//! envelopes, hasMember) exists in Google's discovery document
//! (tests/fixtures/admin.directory_v1.json) with the right JSON type and `kind`;
//! every request the client sends matches a discovery `flatPath` + `httpMethod`
//! and uses only documented parameters. Test-only.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt;
use serde_json::Value;

use super::{start, DirectorySeed, GoogleFault};
use crate::config::{DirectoryAuth, DirectorySettings, Secret};
use crate::directory::google::{GoogleDirectory, GoogleDirectoryOptions};
use crate::directory::google_auth::Credentials;
use crate::directory::token_store::RefreshTokenStore;
use crate::directory::{snapshot, Directory};

const DISCOVERY: &str = include_str!("../../../tests/fixtures/admin.directory_v1.json");
const FIXTURE: &str = include_str!("../../../tests/fixtures/google_directory_seed.json");

struct Checker<'a> {
    schemas: &'a serde_json::Map<String, Value>,
    /// `Schema.field` names seen, to prove the walk covered the emitted fields.
    seen: BTreeSet<String>,
}

impl Checker<'_> {
    fn check(&mut self, schema: &str, value: &Value, path: &str) {
        let def = self
            .schemas
            .get(schema)
            .unwrap_or_else(|| panic!("{path}: no schema {schema}"));
        let obj = value
            .as_object()
            .unwrap_or_else(|| panic!("{path}: {schema} must be a JSON object"));
        let props = def["properties"].as_object().unwrap();
        for (key, v) in obj {
            let prop = props
                .get(key)
                .unwrap_or_else(|| panic!("{path}.{key}: not a property of {schema}"));
            self.seen.insert(format!("{schema}.{key}"));
            if key == "kind" {
                assert_eq!(
                    Some(v),
                    prop.get("default"),
                    "{path}.kind must equal the schema default"
                );
            }
            self.check_prop(prop, v, &format!("{path}.{key}"));
        }
    }

    fn check_prop(&mut self, prop: &Value, v: &Value, path: &str) {
        if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
            return self.check(r, v, path);
        }
        let ty = prop["type"].as_str().unwrap_or("any");
        match ty {
            "any" => {}
            "string" => assert!(
                v.is_string(),
                "{path}: expected a string (format {:?}), got {v}",
                prop.get("format")
            ),
            "boolean" => assert!(v.is_boolean(), "{path}: expected a boolean, got {v}"),
            "integer" => assert!(
                v.is_i64() || v.is_u64(),
                "{path}: expected an integer, got {v}"
            ),
            "array" => {
                let items = v
                    .as_array()
                    .unwrap_or_else(|| panic!("{path}: expected an array, got {v}"));
                for (i, item) in items.iter().enumerate() {
                    self.check_prop(&prop["items"], item, &format!("{path}[{i}]"));
                }
            }
            "object" => {
                let obj = v
                    .as_object()
                    .unwrap_or_else(|| panic!("{path}: expected an object, got {v}"));
                if let Some(extra) = prop.get("additionalProperties") {
                    for (k, item) in obj {
                        self.check_prop(extra, item, &format!("{path}.{k}"));
                    }
                }
            }
            other => panic!("{path}: unhandled discovery type {other}"),
        }
    }
}

async fn admin_token(base: &str) -> String {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "1//sandbox-alice-refresh"),
        ("client_id", "sandbox-client.apps.googleusercontent.com"),
        ("client_secret", "sandbox-client-secret"),
    ];
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    v["access_token"].as_str().unwrap().to_string()
}

async fn get(base: &str, token: &str, path_and_query: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{base}/admin/directory/v1/{path_and_query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn every_emitted_field_matches_the_discovery_schemas() {
    let doc: Value = serde_json::from_str(DISCOVERY).unwrap();
    let mut checker = Checker {
        schemas: doc["schemas"].as_object().unwrap(),
        seen: BTreeSet::new(),
    };
    let (emu, running) = start(DirectorySeed::from_json(FIXTURE).unwrap())
        .await
        .unwrap();
    let base = running.url();
    let token = admin_token(&base).await;

    // Full (no `fields`) bodies, small pages so nextPageToken appears.
    let (s, users) = get(
        &base,
        &token,
        "users?customer=my_customer&maxResults=3&projection=full",
    )
    .await;
    assert_eq!(s, 200);
    assert!(users["nextPageToken"].is_string());
    checker.check("Users", &users, "users.list");
    let (_, all) = get(&base, &token, "users?customer=my_customer&maxResults=500").await;
    checker.check("Users", &all, "users.list(all)");
    for u in all["users"].as_array().unwrap() {
        let key = u["primaryEmail"].as_str().unwrap();
        let (s, one) = get(&base, &token, &format!("users/{key}")).await;
        assert_eq!(s, 200);
        checker.check("User", &one, "users.get");
    }
    let (_, groups) = get(&base, &token, "groups?customer=my_customer&maxResults=2").await;
    checker.check("Groups", &groups, "groups.list");
    let (_, groups) = get(&base, &token, "groups?customer=my_customer").await;
    checker.check("Groups", &groups, "groups.list(all)");
    let (_, by_user) = get(&base, &token, "groups?userKey=erin@example.com").await;
    checker.check("Groups", &by_user, "groups.list(userKey)");
    for g in groups["groups"].as_array().unwrap() {
        let id = g["id"].as_str().unwrap();
        assert!(
            g["directMembersCount"].is_string(),
            "int64 travels as a string"
        );
        let (_, one) = get(&base, &token, &format!("groups/{id}")).await;
        checker.check("Group", &one, "groups.get");
        for q in [
            "",
            "?includeDerivedMembership=true",
            "?maxResults=1",
            "?roles=OWNER",
        ] {
            let (s, members) = get(&base, &token, &format!("groups/{id}/members{q}")).await;
            assert_eq!(s, 200);
            checker.check("Members", &members, "members.list");
            // members.get answers for direct members only (derived rows are not rows).
            let direct = if q.is_empty() {
                members["members"].as_array()
            } else {
                None
            };
            for m in direct.into_iter().flatten() {
                if let Some(e) = m["email"].as_str() {
                    let (s, one) = get(&base, &token, &format!("groups/{id}/members/{e}")).await;
                    assert_eq!(s, 200, "members.get {e}: {one}");
                    checker.check("Member", &one, "members.get");
                }
            }
        }
    }
    let (_, has) = get(
        &base,
        &token,
        "groups/eng@example.com/hasMember/frank@example.com",
    )
    .await;
    assert_eq!(has["isMember"], true, "nested membership counts");
    checker.check("MembersHasMember", &has, "members.hasMember");
    // An empty page: no `users` key at all (empty arrays are omitted).
    let (_, none) = get(&base, &token, "users?customer=my_customer&query=email:zzz*").await;
    assert!(none.get("users").is_none());
    checker.check("Users", &none, "users.list(empty)");

    for must in [
        "Users.kind",
        "Users.etag",
        "Users.users",
        "Users.nextPageToken",
        "User.kind",
        "User.id",
        "User.etag",
        "User.primaryEmail",
        "User.name",
        "UserName.givenName",
        "UserName.familyName",
        "UserName.fullName",
        "User.suspended",
        "User.suspensionReason",
        "User.archived",
        "User.isAdmin",
        "User.orgUnitPath",
        "User.aliases",
        "User.emails",
        "Groups.kind",
        "Groups.groups",
        "Groups.nextPageToken",
        "Group.id",
        "Group.email",
        "Group.name",
        "Group.directMembersCount",
        "Group.aliases",
        "Members.kind",
        "Members.members",
        "Members.nextPageToken",
        "Member.id",
        "Member.email",
        "Member.role",
        "Member.type",
        "Member.status",
        "MembersHasMember.isMember",
    ] {
        assert!(checker.seen.contains(must), "the walk never saw {must}");
    }
    drop(emu);
    running.stop();
}

#[tokio::test]
async fn errors_use_googles_envelope_and_bad_parameters_are_refused() {
    let (emu, running) = start(DirectorySeed::from_json(FIXTURE).unwrap())
        .await
        .unwrap();
    let base = running.url();
    let token = admin_token(&base).await;
    let cases = [
        ("users?customer=my_customer&maxResults=501", 400, "invalid"),
        ("users?customer=my_customer&bogus=1", 400, "invalid"),
        ("users", 400, "badRequest"),
        ("users?customer=my_customer&query=bogus=1", 400, "invalid"),
        (
            "groups?customer=my_customer&userKey=erin@example.com",
            400,
            "badRequest",
        ),
        ("groups?customer=my_customer&maxResults=201", 400, "invalid"),
        (
            "users?customer=my_customer&pageToken=forged",
            400,
            "invalid",
        ),
        ("users/ghost@example.com", 404, "notFound"),
        ("groups/ghost@example.com/members", 404, "notFound"),
    ];
    for (path, status, reason) in cases {
        let (s, body) = get(&base, &token, path).await;
        assert_eq!(s, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], status, "{path}");
        assert_eq!(body["error"]["errors"][0]["reason"], reason, "{path}");
        assert!(body["error"]["message"].is_string(), "{path}");
    }
    let (s, body) = get(&base, "not-a-token", "users?customer=my_customer").await;
    assert_eq!(
        (s, body["error"]["errors"][0]["reason"].as_str()),
        (401, Some("authError"))
    );
    emu.inject(GoogleFault::TooManyRequests, 1);
    let (s, body) = get(&base, &token, "users?customer=my_customer").await;
    assert_eq!(
        (s, body["error"]["status"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED"))
    );
    emu.inject(GoogleFault::BackendError, 1);
    let (s, body) = get(&base, &token, "users?customer=my_customer").await;
    assert_eq!(
        (s, body["error"]["errors"][0]["reason"].as_str()),
        (503, Some("backendError"))
    );
    running.stop();
}

/// Matches a concrete path against a discovery `flatPath` template.
fn matches_template(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

#[tokio::test]
async fn every_client_request_matches_a_discovery_method_and_its_parameters() {
    let doc: Value = serde_json::from_str(DISCOVERY).unwrap();
    let global: BTreeSet<&str> = doc["parameters"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut methods: Vec<(String, String, BTreeSet<String>)> = Vec::new();
    for res in doc["resources"].as_object().unwrap().values() {
        for m in res["methods"].as_object().unwrap().values() {
            let params = m["parameters"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            methods.push((
                m["httpMethod"].as_str().unwrap().into(),
                m["flatPath"].as_str().unwrap().into(),
                params,
            ));
        }
    }
    let (emu, running) = start(DirectorySeed::from_json(FIXTURE).unwrap())
        .await
        .unwrap();
    let base = running.url();
    let tmp = crate::test_support::temp_dir("schema");
    let dir_path = tmp.path().join("state");
    let store = RefreshTokenStore::new(&dir_path, &Secret::new("y".repeat(40)), &[]);
    store
        .save(&Secret::new("1//sandbox-alice-refresh"))
        .unwrap();
    let settings = DirectorySettings {
        idp: "google".into(),
        customer: "my_customer".into(),
        domain: None,
        api_url: base.parse().unwrap(),
        token_url: format!("{base}/token").parse().unwrap(),
        nested_groups: true,
        auth: DirectoryAuth::OAuth,
        users_query: "isArchived=false".into(),
        include_suspended: false,
        rate_limit_per_minute: 0,
    };
    let creds = Credentials::OAuth {
        client_id: "sandbox-client.apps.googleusercontent.com".into(),
        client_secret: Secret::new("sandbox-client-secret"),
        store,
    };
    let dir = GoogleDirectory::new(
        "google",
        &settings,
        creds,
        GoogleDirectoryOptions::default(),
    )
    .unwrap();
    let snap = snapshot(&dir, 2).await.unwrap();
    assert_eq!(
        snap.people.len(),
        7,
        "archived dave filtered by the users query"
    );
    dir.person("erin@example.com").await.unwrap().unwrap();
    let _: Vec<_> = dir.members("eng@example.com").try_concat().await.unwrap();

    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    for line in emu.requests() {
        let (verb, target) = line.split_once(' ').unwrap();
        if target.starts_with("/token") {
            continue;
        }
        let url = url::Url::parse(&format!("http://x{target}")).unwrap();
        let path = url.path().trim_start_matches('/');
        let (_, template, params) = methods
            .iter()
            .find(|(m, t, _)| m == verb && matches_template(t, path))
            .unwrap_or_else(|| panic!("{line}: no discovery method matches"));
        for (k, _) in url.query_pairs() {
            assert!(
                params.contains(k.as_ref()) || global.contains(k.as_ref()),
                "{line}: undocumented parameter {k}"
            );
        }
        if let Some(max) = url.query_pairs().find(|(k, _)| k == "maxResults") {
            let n: u32 = max.1.parse().unwrap();
            let limit = if template.ends_with("users") {
                500
            } else {
                200
            };
            assert_eq!(
                n, limit,
                "{line}: the client asks for the largest page Google allows"
            );
        }
        *used.entry(template.clone()).or_default() += 1;
    }
    for t in [
        "admin/directory/v1/users",
        "admin/directory/v1/users/{userKey}",
        "admin/directory/v1/groups",
        "admin/directory/v1/groups/{groupKey}/members",
    ] {
        assert!(used.contains_key(t), "client never called {t}: {used:?}");
    }
    running.stop();
}
