//! The person lookup: reads one person (by e-mail, alias or id) from the directory,
//! runs the mapping rules' explanation (`provision::explain`) and renders why they
//! have or lack each group: which rule, which IdP group. Reads the directory only;
//! changes nothing.

use serde::Serialize;

use crate::config::Settings;
use crate::directory::Directory;
use crate::provision::explain::{explain, Explanation, Grant};
use crate::provision::mapping::Mapper;

use super::access::is_admin;
use super::page::esc;

/// Why a lookup has no explanation.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The directory does not know the key.
    #[error("the directory has no person {0:?} (try the primary e-mail)")]
    NotFound(String),
    /// The directory could not be read.
    #[error("the directory could not be read: {0}")]
    Directory(String),
    /// The mapping rules could not be compiled (should have failed at start).
    #[error("the mapping rules are unusable: {0}")]
    Rules(String),
}

/// An explanation plus whether the person is an usher administrator.
#[derive(Debug, Clone, Serialize)]
pub struct Lookup {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// Whether `[admin]` makes this person an administrator of usher.
    pub usher_admin: bool,
}

/// Looks `key` up in `directory` and explains it under the rules for the
/// directory's IdP (with its per-IdP overrides).
pub async fn lookup(
    settings: &Settings,
    directory: &dyn Directory,
    key: &str,
) -> Result<Lookup, LookupError> {
    let found = directory
        .person(key)
        .await
        .map_err(|e| LookupError::Directory(e.to_string()))?
        .ok_or_else(|| LookupError::NotFound(key.to_string()))?;
    let source = directory.source();
    let mapper = match settings.idps.iter().find(|i| i.name == source) {
        Some(idp) => Mapper::for_idp(idp, &settings.provisioning, &settings.groups),
        None => Mapper::new(source, &settings.provisioning, &settings.groups),
    }
    .map_err(|e| LookupError::Rules(e.to_string()))?;
    let names: Vec<String> = found
        .groups
        .iter()
        .flat_map(|g| [g.email.clone(), g.name.clone()])
        .collect();
    Ok(Lookup {
        usher_admin: is_admin(&settings.admin, &found.person.primary_email, &names),
        explanation: explain(&mapper, &found),
    })
}

/// The lookup form.
pub fn form(action: &str, email: &str) -> String {
    format!(
        "<form method=\"get\" action=\"{}\" class=\"filters\"><label>E-mail \
         <input name=\"email\" value=\"{}\" size=\"32\" placeholder=\"ann@example.com\"></label>\
         <button>Explain</button></form>",
        esc(action),
        esc(email)
    )
}

/// The explanation as HTML.
pub fn render(l: &Lookup) -> String {
    let e = &l.explanation;
    let mut s = String::from("<div class=\"panel\"><table>");
    let row = |k: &str, v: String| format!("<tr><th>{k}</th><td>{v}</td></tr>");
    s.push_str(&row("Person", esc(&e.email)));
    s.push_str(&row(
        "Source id",
        format!("<code>{}</code>", esc(&e.person)),
    ));
    s.push_str(&row(
        "Account",
        match (&e.username, &e.skipped) {
            (Some(u), _) => format!("<code>{}</code>", esc(u)),
            (None, Some(why)) => format!("<span class=\"bad\">none</span>: {}", esc(why)),
            (None, None) => "none".into(),
        },
    ));
    s.push_str(&row(
        "State in the directory",
        if e.active {
            "<span class=\"ok\">active</span>".into()
        } else {
            "<span class=\"bad\">suspended or archived</span> (the account is deprovisioned)".into()
        },
    ));
    s.push_str(&row(
        "usher administrator",
        if l.usher_admin { "yes" } else { "no" }.into(),
    ));
    s.push_str("</table></div><h2>Target groups</h2>");
    if e.groups.is_empty() {
        s.push_str("<p class=\"muted\">No rule gives any group.</p>");
    } else {
        s.push_str("<table class=\"groups\"><thead><tr><th>Group</th><th>Has it?</th><th>Why</th></tr></thead><tbody>");
        for g in &e.groups {
            let verdict = match g.grant {
                Grant::Has => "<span class=\"ok\">yes</span>",
                Grant::OnCreate => "at creation only",
                Grant::Lacks => "<span class=\"bad\">no</span>",
            };
            s.push_str(&format!(
                "<tr><td>{}</td><td>{verdict}</td><td>{}</td></tr>",
                esc(&g.group),
                esc(&g.why)
            ));
        }
        s.push_str("</tbody></table>");
    }
    s.push_str("<h2>IdP groups</h2>");
    if e.idp_groups.is_empty() {
        s.push_str("<p class=\"muted\">The directory lists no group for this person.</p>");
    } else {
        s.push_str("<table class=\"idp-groups\"><thead><tr><th>IdP group</th><th>Name</th><th>Leads to</th></tr></thead><tbody>");
        for g in &e.idp_groups {
            let leads = if g.leads_to.is_empty() {
                format!(
                    "<span class=\"muted\">nothing: {}</span>",
                    esc(g.ignored_because.as_deref().unwrap_or(""))
                )
            } else {
                g.leads_to
                    .iter()
                    .map(|(t, r)| {
                        let rule = serde_json::to_value(r)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        format!("{} ({})", esc(t), esc(&rule))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            s.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{leads}</td></tr>",
                esc(&g.email),
                esc(&g.name)
            ));
        }
        s.push_str("</tbody></table>");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::explain::{GroupVerdict, IdpGroupVerdict};
    use crate::provision::mapping::Rule;

    #[test]
    fn a_person_named_script_renders_escaped() {
        let l = Lookup {
            usher_admin: false,
            explanation: Explanation {
                person: "google:<1>".into(),
                email: "<script>alert(1)</script>@example.com".into(),
                username: Some("<script>".into()),
                skipped: None,
                active: true,
                groups: vec![GroupVerdict {
                    group: "<i>g</i>".into(),
                    grant: Grant::Has,
                    reasons: vec![],
                    why: "groups.map (member of <b>@example.com)".into(),
                }],
                idp_groups: vec![IdpGroupVerdict {
                    email: "<b>@example.com".into(),
                    name: "<svg onload=x>".into(),
                    leads_to: vec![("<i>g</i>".into(), Rule::Map)],
                    ignored_because: None,
                }],
            },
        };
        let html = render(&l);
        for raw in ["<script>", "<i>", "<b>", "<svg", "<1>"] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;@example.com"));
        assert!(html.contains("&lt;i&gt;g&lt;/i&gt; (map)"), "{html}");
        assert!(form("/a", "\"><script>").contains("&quot;&gt;&lt;script&gt;"));
    }
}
