//! The plan preview: a sync report's planned operations as rows (target, operation,
//! account or group, detail), filtered by target, operation (a kind such as
//! `create-user` or a family: `creates`, `updates`, `deactivations`, `groups`) and
//! person (a substring of the account, group or detail), and the HTML table. Pure.

use std::collections::BTreeMap;

use crate::provision::plan::Operation;
use crate::sync::report::describe;
use crate::sync::SyncReport;

use super::page::esc;

/// Query parameters of the plan preview (empty = no condition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanFilter {
    /// Exact target name.
    pub target: String,
    /// Operation kind or family.
    pub op: String,
    /// Case-insensitive substring of the account/group or the detail.
    pub person: String,
}

/// The operation families offered in the filter, with the kinds in each.
pub const FAMILIES: &[(&str, &[&str])] = &[
    ("creates", &["create-user", "create-group"]),
    ("updates", &["update-user", "reactivate", "link"]),
    ("deactivations", &["deactivate"]),
    ("groups", &["add-member", "remove-member", "create-group"]),
];

impl PlanFilter {
    /// Reads `target`, `op` and `person` from query pairs.
    pub fn from_query(q: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        PlanFilter {
            target: get("target"),
            op: get("op").to_ascii_lowercase(),
            person: get("person"),
        }
    }

    fn op_matches(&self, kind: &str) -> bool {
        if self.op.is_empty() || self.op == kind {
            return true;
        }
        FAMILIES
            .iter()
            .any(|(f, kinds)| *f == self.op && kinds.contains(&kind))
    }
}

/// One line of the preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub target: String,
    pub kind: &'static str,
    pub subject: String,
    pub detail: String,
}

/// The operations of `report` that pass `filter`, in plan order per target, and the
/// total number of operations before filtering.
pub fn rows(report: &SyncReport, filter: &PlanFilter) -> (Vec<PlanRow>, usize) {
    let needle = filter.person.to_lowercase();
    let mut out = Vec::new();
    let mut total = 0;
    for t in &report.targets {
        total += t.operations.len();
        if !filter.target.is_empty() && !t.name.eq_ignore_ascii_case(&filter.target) {
            continue;
        }
        for op in &t.operations {
            if !filter.op_matches(op.kind()) {
                continue;
            }
            let (subject, detail) = describe(op);
            if !needle.is_empty()
                && !subject.to_lowercase().contains(&needle)
                && !detail.to_lowercase().contains(&needle)
                && !person_of(op).is_some_and(|p| p.to_lowercase().contains(&needle))
            {
                continue;
            }
            out.push(PlanRow {
                target: t.name.clone(),
                kind: op.kind(),
                subject,
                detail,
            });
        }
    }
    (out, total)
}

/// `source:id` of the person an operation concerns, when it says.
fn person_of(op: &Operation) -> Option<String> {
    match op {
        Operation::CreateUser { person, .. }
        | Operation::Link { person, .. }
        | Operation::UpdateUser { person, .. } => Some(format!("{}:{}", person.source, person.id)),
        Operation::Reactivate { person, .. } | Operation::Deactivate { person, .. } => {
            person.as_ref().map(|p| format!("{}:{}", p.source, p.id))
        }
        _ => None,
    }
}

/// The filter form (GET, keeps the report id).
pub fn filter_form(action: &str, id: &str, targets: &[String], f: &PlanFilter) -> String {
    let mut target_opts = String::from("<option value=\"\">all targets</option>");
    for t in targets {
        let sel = if t.eq_ignore_ascii_case(&f.target) {
            " selected"
        } else {
            ""
        };
        target_opts.push_str(&format!("<option{sel}>{}</option>", esc(t)));
    }
    let mut op_opts = String::from("<option value=\"\">all operations</option>");
    let kinds = [
        "create-user",
        "create-group",
        "update-user",
        "reactivate",
        "link",
        "add-member",
        "remove-member",
        "deactivate",
    ];
    for o in FAMILIES.iter().map(|(f, _)| *f).chain(kinds) {
        let sel = if o == f.op { " selected" } else { "" };
        op_opts.push_str(&format!("<option{sel}>{o}</option>"));
    }
    format!(
        "<form method=\"get\" action=\"{}\" class=\"filters\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
         <label>Target <select name=\"target\">{target_opts}</select></label>\
         <label>Operation <select name=\"op\">{op_opts}</select></label>\
         <label>Person <input name=\"person\" value=\"{}\" placeholder=\"name, e-mail or group\"></label>\
         <button class=\"secondary\">Filter</button></form>",
        esc(action),
        esc(id),
        esc(&f.person)
    )
}

/// The table of rows.
pub fn table(rows: &[PlanRow]) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">No planned operation matches.</p>".into();
    }
    let mut s = String::from(
        "<table class=\"plan\"><thead><tr><th>Target</th><th>Operation</th><th>Account / group</th><th>Detail</th></tr></thead><tbody>",
    );
    for r in rows {
        s.push_str(&format!(
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            esc(&r.target),
            esc(r.kind),
            esc(&r.subject),
            esc(&r.detail)
        ));
    }
    s.push_str("</tbody></table>");
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::ExternalId;
    use crate::provision::plan::{NewAccount, Removal};
    use crate::sync::{TargetReport, Trigger};

    fn ext(id: &str) -> ExternalId {
        ExternalId {
            source: "google".into(),
            id: id.into(),
        }
    }

    /// A dry-run report with two targets and one operation of most kinds; the new
    /// person's display name is hostile HTML.
    pub(crate) fn report() -> SyncReport {
        let mut r = SyncReport::begin("s1".into(), Trigger::Admin, true, None);
        let jira = TargetReport {
            name: "jira".into(),
            operations: vec![
                Operation::CreateUser {
                    person: ext("7"),
                    account: Box::new(NewAccount {
                        username: "mallory".into(),
                        email: "mallory@example.com".into(),
                        display_name: "<script>alert(1)</script>".into(),
                        given_name: "<script>".into(),
                        family_name: "x".into(),
                    }),
                },
                Operation::AddMember {
                    group: "jira-developers".into(),
                    username: "ann".into(),
                },
                Operation::Deactivate {
                    username: "bob".into(),
                    person: Some(ext("3")),
                },
            ],
            ..TargetReport::default()
        };
        let conf = TargetReport {
            name: "confluence".into(),
            operations: vec![
                Operation::CreateGroup {
                    group: "eng".into(),
                },
                Operation::RemoveMember {
                    group: "eng".into(),
                    username: "bob".into(),
                    why: Removal::Deprovision,
                },
            ],
            ..TargetReport::default()
        };
        r.targets = vec![jira, conf];
        r
    }

    fn filter(target: &str, op: &str, person: &str) -> PlanFilter {
        PlanFilter {
            target: target.into(),
            op: op.into(),
            person: person.into(),
        }
    }

    #[test]
    fn filters_by_target_operation_and_person() {
        let r = report();
        let table: &[(PlanFilter, &[(&str, &str)])] = &[
            (
                filter("", "", ""),
                &[
                    ("jira", "create-user"),
                    ("jira", "add-member"),
                    ("jira", "deactivate"),
                    ("confluence", "create-group"),
                    ("confluence", "remove-member"),
                ],
            ),
            (
                filter("confluence", "", ""),
                &[
                    ("confluence", "create-group"),
                    ("confluence", "remove-member"),
                ],
            ),
            (
                filter("JIRA", "deactivations", ""),
                &[("jira", "deactivate")],
            ),
            (
                filter("", "creates", ""),
                &[("jira", "create-user"), ("confluence", "create-group")],
            ),
            (
                filter("", "groups", ""),
                &[
                    ("jira", "add-member"),
                    ("confluence", "create-group"),
                    ("confluence", "remove-member"),
                ],
            ),
            (
                filter("", "", "BOB"),
                &[("jira", "deactivate"), ("confluence", "remove-member")],
            ),
            (filter("", "", "google:7"), &[("jira", "create-user")]),
            (
                filter("", "", "mallory@example"),
                &[("jira", "create-user")],
            ),
            (filter("", "update-user", ""), &[]),
            (filter("nowhere", "", ""), &[]),
        ];
        for (f, want) in table {
            let (got, total) = rows(&r, f);
            assert_eq!(total, 5);
            let got: Vec<(&str, &str)> = got.iter().map(|r| (r.target.as_str(), r.kind)).collect();
            assert_eq!(got, *want, "{f:?}");
        }
    }

    #[test]
    fn the_table_escapes_everything() {
        let (rs, _) = rows(&report(), &PlanFilter::default());
        let html = table(&rs);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        let form = filter_form(
            "/_usher/admin/plan",
            "s1\"><script>",
            &["jira".into()],
            &filter("jira", "creates", "<b>"),
        );
        assert!(
            !form.contains("<script>") && !form.contains("<b>"),
            "{form}"
        );
        assert!(form.contains("<option selected>jira</option>"));
        assert!(form.contains("<option selected>creates</option>"));
        let q: BTreeMap<String, String> = [("op".to_string(), " Creates ".to_string())].into();
        assert_eq!(PlanFilter::from_query(&q).op, "creates");
    }
}
