//! Tests of the inbound SCIM HTTP handling and rendering (split from `server.rs`).

use super::render::{project, Query};
use super::server::*;
use super::store::ScimStore;
use super::wire::{self, MAX_RESULTS};
use crate::config::Secret;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

#[test]
fn constant_time_eq_is_plain_equality() {
    for (a, b, want) in [
        ("token-0123456789", "token-0123456789", true),
        ("token-0123456789", "token-012345678", false),
        ("token-012345678", "token-0123456789", false),
        ("token-0123456789", "token-0123456788", false),
        ("", "", true),
        ("", "x", false),
    ] {
        assert_eq!(
            constant_time_eq(a.as_bytes(), b.as_bytes()),
            want,
            "{a:?} {b:?}"
        );
    }
}

#[test]
fn query_parameters_clamp_and_parse() {
    let q = Query::from_uri(Some(
        "startIndex=0&count=-5&attributes=userName,name.givenName",
    ))
    .unwrap();
    assert_eq!((q.start, q.count), (1, 0));
    assert_eq!(q.attributes.len(), 2);
    let q = Query::from_uri(Some("count=99999&FILTER=userName%20pr")).unwrap();
    assert_eq!(q.count, MAX_RESULTS);
    assert_eq!(q.filter.as_deref(), Some("userName pr"));
    assert!(Query::from_uri(Some("attributes=a%20b")).is_err());
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(o) => o,
        _ => unreachable!(),
    }
}

#[test]
fn projection_keeps_id_schemas_meta_and_honours_sub_attributes() {
    let res = obj(json!({
        "schemas": ["s"], "id": "1", "meta": {"version": "W/\"1\""},
        "userName": "a", "title": "t",
        "name": {"givenName": "G", "familyName": "F"},
        "emails": [{"value": "a@x", "type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D", "division": "V"}
    }));
    let q = Query::from_uri(Some(
        "attributes=USERNAME,name.givenName,emails.value,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ))
    .unwrap();
    assert_eq!(
        Value::Object(project(res.clone(), &q)),
        json!({
            "schemas": ["s"], "id": "1", "meta": {"version": "W/\"1\""},
            "userName": "a", "name": {"givenName": "G"}, "emails": [{"value": "a@x"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "D"}
        })
    );
    let q = Query::from_uri(Some("excludedAttributes=title,id,name.familyName,emails")).unwrap();
    let out = project(res, &q);
    assert!(out.get("title").is_none() && out.get("emails").is_none());
    assert_eq!(out["id"], "1", "id is always returned");
    assert_eq!(out["name"], json!({"givenName": "G"}));
}

fn server() -> (ScimServer, tempfile::TempDir) {
    let tmp = crate::test_support::temp_dir("scim-srv");
    let dir = tmp.path().join("state");
    let store = Arc::new(ScimStore::open(&dir, &["okta".into()]).unwrap());
    let mut tokens = BTreeMap::new();
    tokens.insert("okta".to_string(), Secret::new("token-0123456789abcdef"));
    let server = ScimServer::new(
        store,
        tokens,
        &url::Url::parse("https://jira.example.com/").unwrap(),
        None,
    );
    (server, tmp)
}

async fn send(
    s: &ScimServer,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let resp = s
        .handle(
            path.split('?').next().unwrap(),
            req.body(Full::new(bytes)).unwrap(),
        )
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body();
    Some((
        status,
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        },
    ))
}

#[tokio::test]
async fn auth_routing_and_error_shapes() {
    let (s, _tmp) = server();
    let ok = Some("Bearer token-0123456789abcdef");
    // The endpoint is off for IdPs without a token (the caller answers 404).
    assert!(send(&s, "GET", "/_usher/scim/v2/other/Users", ok, None)
        .await
        .is_none());
    assert!(send(&s, "GET", "/_usher/other", ok, None).await.is_none());
    for bad in [
        None,
        Some("Bearer nope"),
        Some("bearer"),
        Some("Token token-0123456789abcdef"),
    ] {
        let (st, body) = send(&s, "GET", "/_usher/scim/v2/okta/Users", bad, None)
            .await
            .unwrap();
        assert_eq!((st, body["status"].as_str()), (401, Some("401")), "{bad:?}");
    }
    let (st, _) = send(
        &s,
        "GET",
        "/_usher/scim/v2/okta/Users",
        Some("BEARER token-0123456789abcdef"),
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 200, "the scheme is case-insensitive");
    for (m, p, want) in [
        ("POST", "/_usher/scim/v2/okta/ServiceProviderConfig", 405),
        ("DELETE", "/_usher/scim/v2/okta/Schemas", 405),
        ("GET", "/_usher/scim/v2/okta/ResourceTypes/Nope", 404),
        ("GET", "/_usher/scim/v2/okta/Schemas/urn:nope", 404),
        ("POST", "/_usher/scim/v2/okta/Bulk", 501),
        ("GET", "/_usher/scim/v2/okta/Users/missing", 404),
        ("PUT", "/_usher/scim/v2/okta/Users", 405),
        ("GET", "/_usher/scim/v2/okta/Users/a/b", 404),
        ("GET", "/_usher/scim/v2/okta/", 404),
    ] {
        let (st, body) = send(&s, m, p, ok, None).await.unwrap();
        assert_eq!(st, want, "{m} {p}");
        assert_eq!(body["schemas"][0], wire::ERROR, "{m} {p}");
    }
    let (st, doc) = send(
        &s,
        "GET",
        "/_usher/scim/v2/okta/Schemas/urn:ietf:params:scim:schemas:core:2.0:user",
        ok,
        None,
    )
    .await
    .unwrap();
    assert_eq!((st, doc["name"].as_str()), (200, Some("User")));
    assert_eq!(doc["meta"]["location"], "https://jira.example.com/_usher/scim/v2/okta/Schemas/urn:ietf:params:scim:schemas:core:2.0:User");
    let (st, body) = send(
        &s,
        "POST",
        "/_usher/scim/v2/okta/Users",
        ok,
        Some(json!(["not", "an", "object"])),
    )
    .await
    .unwrap();
    assert_eq!(
        (st, body["scimType"].as_str()),
        (400, Some("invalidSyntax"))
    );
}

#[tokio::test]
async fn crud_round_trip_with_search_and_user_groups() {
    let (s, _tmp) = server();
    let ok = Some("Bearer token-0123456789abcdef");
    let (st, u) = send(
        &s,
        "POST",
        "/_usher/scim/v2/okta/Users",
        ok,
        Some(json!({"userName": "ann@example.com", "password": "p"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    assert!(
        u.get("password").is_none(),
        "passwords are never stored or returned"
    );
    let id = u["id"].as_str().unwrap().to_string();
    let (st, g) = send(
        &s,
        "POST",
        "/_usher/scim/v2/okta/Groups",
        ok,
        Some(json!({"displayName": "Eng", "members": [{"value": id}]})),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    let (_, u2) = send(
        &s,
        "GET",
        &format!("/_usher/scim/v2/okta/Users/{id}"),
        ok,
        None,
    )
    .await
    .unwrap();
    assert_eq!(u2["groups"][0]["value"], g["id"]);
    assert_eq!(u2["groups"][0]["display"], "Eng");
    let (st, found) = send(&s, "POST", "/_usher/scim/v2/okta/.search", ok, Some(json!({"schemas": [wire::SEARCH], "filter": "displayName eq \"eng\" or userName sw \"ANN\""}))).await.unwrap();
    assert_eq!((st, found["totalResults"].as_u64()), (200, Some(2)));
    let (st, _) = send(
        &s,
        "PUT",
        &format!("/_usher/scim/v2/okta/Users/{id}"),
        ok,
        Some(json!({"userName": "ann@example.com", "title": "x"})),
    )
    .await
    .unwrap();
    assert_eq!(st, 200);
    let (st, body) = send(
        &s,
        "DELETE",
        &format!("/_usher/scim/v2/okta/Users/{id}"),
        ok,
        None,
    )
    .await
    .unwrap();
    assert_eq!((st, body), (204, Value::Null));
    let (st, _) = send(
        &s,
        "GET",
        &format!("/_usher/scim/v2/okta/Users/{id}"),
        ok,
        None,
    )
    .await
    .unwrap();
    assert_eq!(st, 404);
    let (_, g2) = send(
        &s,
        "GET",
        &format!("/_usher/scim/v2/okta/Groups/{}", g["id"].as_str().unwrap()),
        ok,
        None,
    )
    .await
    .unwrap();
    assert!(
        g2.get("members").is_none(),
        "a deleted user leaves the group: {g2}"
    );
}
