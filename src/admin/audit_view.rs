//! The audit log view: query parameters (`person`, `target`, `op`, `since`, `until`,
//! `limit`) -> [`AuditFilter`] with readable errors, and the HTML table and filter
//! form. Times are RFC 3339, a date (`2026-11-29`), a browser `datetime-local`
//! value (`2026-11-29T10:30`, UTC), or an age such as `2h` / `7d` (before `now`).
//! Pure: `now` is a parameter; reading the file is the caller's job.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::provision::audit::{AuditEntry, AuditFilter, AuditResult};

use super::page::esc;

/// Entries shown when no `limit` is given.
pub const DEFAULT_LIMIT: usize = 200;
/// Most entries one answer carries.
pub const MAX_LIMIT: usize = 5000;

/// Parses one time bound.
pub fn parse_time(raw: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = raw.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if s.len() == 10 {
        if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{s}T00:00:00")) {
            return Ok(t);
        }
    }
    if s.len() == 16 {
        if let Ok(t) = humantime::parse_rfc3339_weak(&format!("{s}:00")) {
            return Ok(t);
        }
    }
    if let Ok(age) = humantime::parse_duration(s) {
        return Ok(now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    Err(format!(
        "{raw:?} is not a time: use RFC 3339 (2026-11-29T10:30:00Z), a date (2026-11-29) or an age (2h, 7d)"
    ))
}

/// The filter from query pairs, or what is wrong with them.
pub fn filter_from_query(
    q: &BTreeMap<String, String>,
    now: SystemTime,
) -> Result<AuditFilter, String> {
    let text = |k: &str| {
        q.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let time = |k: &str| -> Result<Option<SystemTime>, String> {
        text(k)
            .map(|v| parse_time(&v, now).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    let limit = match text("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| format!("limit: {v:?} is not a number"))?
            .clamp(1, MAX_LIMIT),
    };
    let filter = AuditFilter {
        person: text("person"),
        target: text("target"),
        operation: text("op").or_else(|| text("operation")),
        since: time("since")?,
        until: time("until")?,
        limit: Some(limit),
    };
    if let (Some(s), Some(u)) = (filter.since, filter.until) {
        if s > u {
            return Err("since is after until: swap them".into());
        }
    }
    Ok(filter)
}

/// The filter form, keeping what was typed.
pub fn filter_form(action: &str, q: &BTreeMap<String, String>) -> String {
    let v = |k: &str| esc(q.get(k).map(String::as_str).unwrap_or(""));
    format!(
        "<form method=\"get\" action=\"{}\" class=\"filters\">\
         <label>Person <input name=\"person\" value=\"{}\" placeholder=\"username or google:id\"></label>\
         <label>Target <input name=\"target\" value=\"{}\" size=\"10\"></label>\
         <label>Operation <input name=\"op\" value=\"{}\" size=\"12\" placeholder=\"add-member\"></label>\
         <label>Since <input name=\"since\" value=\"{}\" size=\"16\" placeholder=\"24h or 2026-11-29\"></label>\
         <label>Until <input name=\"until\" value=\"{}\" size=\"16\"></label>\
         <label>Limit <input name=\"limit\" value=\"{}\" size=\"5\"></label>\
         <button class=\"secondary\">Filter</button></form>",
        esc(action),
        v("person"),
        v("target"),
        v("op"),
        v("since"),
        v("until"),
        v("limit"),
    )
}

fn result_cell(r: &AuditResult) -> String {
    match r {
        AuditResult::Ok => "<span class=\"ok\">ok</span>".into(),
        AuditResult::Unchanged => "<span class=\"muted\">unchanged</span>".into(),
        AuditResult::Failed { error } => {
            format!("<span class=\"bad\">failed</span>: {}", esc(error))
        }
        AuditResult::Skipped { reason } => format!("skipped: {}", esc(reason)),
    }
}

fn json_cell(v: &Option<serde_json::Value>) -> String {
    v.as_ref().map(|v| esc(&v.to_string())).unwrap_or_default()
}

/// The table, newest first.
pub fn table(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "<p class=\"muted\">No audit entry matches.</p>".into();
    }
    let mut s = String::from(
        "<table class=\"audit\"><thead><tr><th>Time (UTC)</th><th>Actor</th><th>By</th><th>Sync</th>\
         <th>Target</th><th>Operation</th><th>Account</th><th>Group</th><th>Before → after</th>\
         <th>Result</th></tr></thead><tbody>",
    );
    for e in entries.iter().rev() {
        let actor = serde_json::to_value(e.actor)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td>\
             <td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
            esc(&e.time),
            esc(&actor),
            esc(e.by.as_deref().unwrap_or("")),
            esc(e.sync_id.as_deref().unwrap_or("")),
            esc(&e.target),
            esc(&e.operation),
            esc(e.username.as_deref().unwrap_or("")),
            esc(e.group.as_deref().unwrap_or("")),
            json_cell(&e.before),
            json_cell(&e.after),
            result_cell(&e.result),
        ));
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::audit::Actor;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn times_in_every_accepted_spelling() {
        let now = at("2026-11-29T12:00:00Z");
        let table: &[(&str, &str)] = &[
            ("2026-11-29T10:30:00Z", "2026-11-29T10:30:00Z"),
            ("2026-11-29T10:30:00.250Z", "2026-11-29T10:30:00.250Z"),
            ("2026-11-29", "2026-11-29T00:00:00Z"),
            ("2026-11-29T10:30", "2026-11-29T10:30:00Z"),
            ("2h", "2026-11-29T10:00:00Z"),
            ("7d", "2026-11-22T12:00:00Z"),
        ];
        for (raw, want) in table {
            assert_eq!(parse_time(raw, now).unwrap(), at(want), "{raw}");
        }
        for bad in ["yesterday", "2026-13-01", "", "10:30"] {
            let e = parse_time(bad, now).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }

    #[test]
    fn query_to_filter() {
        let now = at("2026-11-29T12:00:00Z");
        let f = filter_from_query(
            &q(&[
                ("person", " ann "),
                ("target", "jira"),
                ("op", "add-member"),
                ("since", "1h"),
                ("limit", "10"),
                ("until", ""),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(f.person.as_deref(), Some("ann"));
        assert_eq!(f.target.as_deref(), Some("jira"));
        assert_eq!(f.operation.as_deref(), Some("add-member"));
        assert_eq!(f.since, Some(at("2026-11-29T11:00:00Z")));
        assert_eq!(f.until, None);
        assert_eq!(f.limit, Some(10));
        let f = filter_from_query(&q(&[]), now).unwrap();
        assert_eq!(f.limit, Some(DEFAULT_LIMIT));
        assert!(f.person.is_none() && f.since.is_none());
        let f = filter_from_query(&q(&[("limit", "999999")]), now).unwrap();
        assert_eq!(f.limit, Some(MAX_LIMIT));
        for (bad, words) in [
            (q(&[("limit", "ten")]), "limit"),
            (q(&[("since", "soon")]), "since:"),
            (q(&[("since", "1h"), ("until", "2h")]), "after until"),
        ] {
            let e = filter_from_query(&bad, now).unwrap_err();
            assert!(e.contains(words), "{e}");
        }
    }

    #[test]
    fn table_is_newest_first_and_escaped() {
        let entry = |time: &str, user: &str| AuditEntry {
            time: time.into(),
            actor: Actor::Admin,
            by: Some("it-admin@example.com".into()),
            sync_id: Some("s1".into()),
            target: "jira".into(),
            operation: "create-user".into(),
            username: Some(user.into()),
            group: None,
            person: None,
            before: None,
            after: Some(serde_json::json!({"display_name": "<script>"})),
            result: AuditResult::Failed {
                error: "<img src=x>".into(),
            },
        };
        let html = table(&[
            entry("2026-11-29T10:00:00Z", "older"),
            entry("2026-11-29T11:00:00Z", "<b>newer</b>"),
        ]);
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"));
        assert!(html.find("newer").unwrap() < html.find("older").unwrap());
        assert!(html.contains(">admin<"), "{html}");
        assert!(html.contains("it-admin@example.com"));
        let form = filter_form("/x", &q(&[("person", "\"><script>")]));
        assert!(!form.contains("<script>"));
    }
}
