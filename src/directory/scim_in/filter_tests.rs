//! Tests of `filter.rs` (split out to keep the module small).

use super::filter::*;
use serde_json::{json, Map, Value};

fn ce(_: Option<&str>, name: &str, _: Option<&str>) -> bool {
    name.eq_ignore_ascii_case("id") || name.eq_ignore_ascii_case("externalId")
}

fn user() -> Map<String, Value> {
    match json!({
        "id": "u-1",
        "externalId": "Ext-1",
        "userName": "Ann.Lee@Example.com",
        "active": true,
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [
            {"value": "ann@example.com", "type": "work", "primary": true},
            {"value": "ann@home.example", "type": "home"}
        ],
        "meta": {"lastModified": "2026-11-29T01:00:00Z"},
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "manager": {"value": "u-9"}},
        "logins": 5
    }) {
        Value::Object(o) => o,
        _ => unreachable!(),
    }
}

fn group() -> Map<String, Value> {
    match json!({"id": "g-1", "displayName": "Eng", "members": [{"value": "u-1"}, {"value": "u-2"}]})
    {
        Value::Object(o) => o,
        _ => unreachable!(),
    }
}

#[test]
fn table_of_filters_against_a_user() {
    let table: &[(&str, bool)] = &[
        (r#"userName eq "ann.lee@example.com""#, true),
        (r#"USERNAME EQ "ANN.LEE@EXAMPLE.COM""#, true),
        (r#"userName eq "bob@example.com""#, false),
        (r#"externalId eq "ext-1""#, false),
        (r#"externalId eq "Ext-1""#, true),
        (r#"id eq "u-1""#, true),
        (r#"userName sw "ann""#, true),
        (r#"userName sw "lee""#, false),
        (r#"userName co "lee@""#, true),
        (r#"userName ew ".com""#, true),
        (r#"userName ne "x""#, true),
        (r#"name.givenName eq "ann""#, true),
        (r#"emails.value eq "ann@home.example""#, true),
        (r#"emails eq "ann@example.com""#, true),
        (r#"emails[type eq "work" and value co "example.com"]"#, true),
        (r#"emails[type eq "work" and value co "home"]"#, false),
        (r#"emails[type eq "home"]"#, true),
        ("title pr", false),
        ("emails pr", true),
        ("name.givenName pr", true),
        ("active eq true", true),
        ("active eq false", false),
        ("title eq null", true),
        (r#"meta.lastModified gt "2026-01-01T00:00:00Z""#, true),
        (r#"meta.lastModified lt "2026-01-01T00:00:00Z""#, false),
        ("logins ge 5", true),
        ("logins gt 5", false),
        ("logins le 5", true),
        ("logins lt 10.5", true),
        (r#"userName eq "x" or active eq true"#, true),
        (r#"userName eq "x" and active eq true"#, false),
        (
            r#"(userName eq "x" or userName sw "ann") and active eq true"#,
            true,
        ),
        (
            r#"userName eq "x" or userName eq "y" and active eq true"#,
            false,
        ),
        (r#"not (userName eq "x")"#, true),
        (r#"not (active eq true)"#, false),
        (
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "ANN""#,
            true,
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "r&d""#,
            true,
        ),
        (
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "u-9""#,
            true,
        ),
    ];
    let u = user();
    for (f, want) in table {
        let parsed = parse(f).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(parsed.matches(&u, &ce), *want, "{f}");
    }
}

#[test]
fn members_value_eq_on_groups() {
    let g = group();
    assert!(parse(r#"members.value eq "u-2""#).unwrap().matches(&g, &ce));
    assert!(!parse(r#"members.value eq "u-3""#).unwrap().matches(&g, &ce));
    assert!(parse(r#"displayName eq "eng""#).unwrap().matches(&g, &ce));
    assert!(parse(r#"members[value eq "u-1"]"#)
        .unwrap()
        .matches(&g, &ce));
}

#[test]
fn precedence_and_binds_tighter_than_or() {
    let f = parse("a eq 1 or b eq 2 and c eq 3").unwrap();
    assert!(matches!(f, Filter::Or(_, ref r) if matches!(**r, Filter::And(_, _))));
}

#[test]
fn bad_filters_are_errors_not_panics() {
    for f in [
        "",
        "userName",
        "userName eq",
        "userName zz \"x\"",
        "(userName eq \"x\"",
        "userName eq \"x",
        "userName eq x",
        "emails[type eq \"work\"",
        "userName eq \"x\" )",
        "urn:bogus:thing:attr eq \"x\"",
        "user name eq \"x\"",
        "and",
    ] {
        assert!(parse(f).is_err(), "{f:?} should not parse");
    }
}

#[test]
fn string_literals_honour_escapes() {
    let f = parse(r#"displayName eq "say \"hi\"""#).unwrap();
    let o = match json!({"displayName": "say \"hi\""}) {
        Value::Object(o) => o,
        _ => unreachable!(),
    };
    assert!(f.matches(&o, &ce));
}

#[test]
fn attr_paths() {
    let p =
        AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
            .unwrap();
    assert_eq!(p.urn.as_deref(), Some(super::wire::ENTERPRISE));
    assert_eq!(
        (p.name.as_str(), p.sub.as_deref()),
        ("manager", Some("value"))
    );
    let bare =
        AttrPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User").unwrap();
    assert!(bare.name.is_empty());
    let core = AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:Group:members.$ref").unwrap();
    assert_eq!(
        (core.urn, core.name.as_str(), core.sub.as_deref()),
        (None, "members", Some("$ref"))
    );
}
