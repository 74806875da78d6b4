//! The person lookup: reads one person (by e-mail, alias or id) from the directory,
//! runs the mapping rules' explanation (`provision::explain`), reads the person's
//! account and groups in each target as they are now, and renders why they have or
//! lack each group: which rule, which IdP group. Reads only; changes nothing.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::Settings;
use crate::directory::Directory;
use crate::identity::ExternalId;
use crate::provision::explain::{explain, Explanation, Grant};
use crate::provision::link_store::LinkStore;
use crate::provision::mapping::Mapper;
use crate::target::Target;

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

/// Longest time one target may take to answer the lookup's reads.
const TARGET_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One group the account has in a target now, and what the rules say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldGroup {
    pub group: String,
    /// Whether a rule gives it to this person.
    pub justified: bool,
    pub note: String,
}

/// The person's account in one target, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetView {
    pub target: String,
    /// The account looked at: the linked one, else the mapped username.
    pub account: String,
    /// Whether usher has linked this account to the person.
    pub linked: bool,
    /// `None` when the target has no such account.
    pub active: Option<bool>,
    pub groups: Vec<HeldGroup>,
    /// Groups the rules give that the account does not have yet (added at the next
    /// sync or sign-in).
    pub missing: Vec<String>,
    /// Why the target could not be read.
    pub error: Option<String>,
}

/// An explanation plus whether the person is an usher administrator.
#[derive(Debug, Clone, Serialize)]
pub struct Lookup {
    #[serde(flatten)]
    pub explanation: Explanation,
    /// Whether `[admin]` makes this person an administrator of usher.
    pub usher_admin: bool,
    /// The account in each target now (empty when the person gets no account).
    pub targets: Vec<TargetView>,
}

/// Compares what the rules give with what a target holds (pure).
pub fn compare(
    e: &Explanation,
    held: &[String],
    keep_existing: bool,
) -> (Vec<HeldGroup>, Vec<String>) {
    let granted = |g: &str| {
        e.groups
            .iter()
            .any(|v| v.group.eq_ignore_ascii_case(g) && v.grant != Grant::Lacks)
    };
    let managed_lacking = |g: &str| {
        e.groups
            .iter()
            .any(|v| v.group.eq_ignore_ascii_case(g) && v.grant == Grant::Lacks)
    };
    let mut groups: Vec<HeldGroup> = held
        .iter()
        .map(|g| {
            let (justified, note) = if granted(g) {
                (true, "given by the rules".to_string())
            } else if managed_lacking(g) {
                (
                    false,
                    if keep_existing {
                        "no rule gives it; kept because [groups] keep_existing = true".to_string()
                    } else {
                        "no rule gives it; removed at the next sync".to_string()
                    },
                )
            } else {
                (
                    false,
                    "no rule gives it to this person (usher changes only the groups it manages)"
                        .to_string(),
                )
            };
            HeldGroup {
                group: g.clone(),
                justified,
                note,
            }
        })
        .collect();
    groups.sort_by_key(|g| g.group.to_lowercase());
    let missing = e
        .groups
        .iter()
        .filter(|v| v.grant == Grant::Has)
        .filter(|v| !held.iter().any(|h| h.eq_ignore_ascii_case(&v.group)))
        .map(|v| v.group.clone())
        .collect();
    (groups, missing)
}

/// Reads the person's account and groups in one target.
async fn view(
    target: &dyn Target,
    account: String,
    linked: bool,
    e: &Explanation,
    keep_existing: bool,
) -> TargetView {
    let mut v = TargetView {
        target: target.name().to_string(),
        account: account.clone(),
        linked,
        active: None,
        groups: Vec::new(),
        missing: Vec::new(),
        error: None,
    };
    let read = async {
        let user = target.get_user(&account).await?;
        let groups = match &user {
            Some(u) => target.user_groups(&u.username).await?,
            None => Vec::new(),
        };
        Ok::<_, crate::target::TargetError>((user, groups))
    };
    match tokio::time::timeout(TARGET_READ_TIMEOUT, read).await {
        Ok(Ok((user, held))) => {
            v.active = user.as_ref().map(|u| u.active);
            let (groups, missing) = compare(e, &held, keep_existing);
            v.groups = groups;
            v.missing = missing;
        }
        Ok(Err(err)) => v.error = Some(err.to_string()),
        Err(_) => v.error = Some(format!("no answer within {TARGET_READ_TIMEOUT:?}")),
    }
    v
}

/// Looks `key` up in `directory`, explains it under the rules for the directory's
/// IdP (with its per-IdP overrides) and reads the person's account in each target
/// (the linked account when `links` knows one, else the mapped username).
pub async fn lookup(
    settings: &Settings,
    directory: &dyn Directory,
    targets: &[Arc<dyn Target>],
    links: Option<&dyn LinkStore>,
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
    let explanation = explain(&mapper, &found);
    let mut views = Vec::new();
    if let Some(username) = &explanation.username {
        let id = ExternalId {
            source: source.to_string(),
            id: found.person.id.clone(),
        };
        for t in targets {
            let link = links
                .and_then(|l| l.get(t.name(), &id).ok().flatten())
                .map(|l| l.username);
            let linked = link.is_some();
            let account = link.unwrap_or_else(|| username.clone());
            views.push(
                view(
                    t.as_ref(),
                    account,
                    linked,
                    &explanation,
                    mapper.keep_existing(),
                )
                .await,
            );
        }
    }
    Ok(Lookup {
        usher_admin: is_admin(&settings.admin, &found.person.primary_email, &names),
        explanation,
        targets: views,
    })
}

/// [`lookup`] through the sync service's directory and targets and the identity
/// links under `[state] dir`.
pub async fn lookup_with(
    settings: &Settings,
    sync: &crate::sync::SyncService,
    key: &str,
) -> Result<Lookup, LookupError> {
    let links = crate::provision::link_store::FileLinkStore::open(&settings.state.dir).ok();
    let sources = sync.sources();
    lookup(
        settings,
        sources.directory.as_ref(),
        &sources.targets,
        links.as_ref().map(|l| l as &dyn LinkStore),
        key,
    )
    .await
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
    if !l.targets.is_empty() {
        s.push_str("<h2>In the targets now</h2><table class=\"held\"><thead><tr><th>Target</th><th>Account</th><th>Groups it has</th><th>Still to add</th></tr></thead><tbody>");
        for t in &l.targets {
            let account = format!(
                "<code>{}</code>{} {}",
                esc(&t.account),
                if t.linked { " (linked)" } else { "" },
                match (t.active, &t.error) {
                    (_, Some(e)) => format!("<span class=\"bad\">unreadable: {}</span>", esc(e)),
                    (None, None) => "<span class=\"muted\">no such account</span>".into(),
                    (Some(true), None) => "<span class=\"ok\">active</span>".into(),
                    (Some(false), None) => "<span class=\"bad\">inactive</span>".into(),
                }
            );
            let groups = t
                .groups
                .iter()
                .map(|g| {
                    format!(
                        "<div><span class=\"{}\">{}</span>: {}</div>",
                        if g.justified { "ok" } else { "muted" },
                        esc(&g.group),
                        esc(&g.note)
                    )
                })
                .collect::<String>();
            s.push_str(&format!(
                "<tr><td>{}</td><td>{account}</td><td>{groups}</td><td>{}</td></tr>",
                esc(&t.target),
                esc(&t.missing.join(", "))
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
            targets: vec![TargetView {
                target: "<t>".into(),
                account: "<script>".into(),
                linked: true,
                active: Some(true),
                groups: vec![HeldGroup {
                    group: "<u>x</u>".into(),
                    justified: false,
                    note: "n".into(),
                }],
                missing: vec!["<s>".into()],
                error: None,
            }],
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
        for raw in ["<script>", "<i>", "<b>", "<svg", "<1>", "<t>", "<u>", "<s>"] {
            assert!(!html.contains(raw), "{raw} unescaped in {html}");
        }
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;@example.com"));
        assert!(html.contains("&lt;i&gt;g&lt;/i&gt; (map)"), "{html}");
        assert!(form("/a", "\"><script>").contains("&quot;&gt;&lt;script&gt;"));
    }

    #[test]
    fn held_groups_are_compared_with_the_rules() {
        let verdict = |group: &str, grant| GroupVerdict {
            group: group.into(),
            grant,
            reasons: vec![],
            why: String::new(),
        };
        let e = Explanation {
            person: "google:1".into(),
            email: "ann@example.com".into(),
            username: Some("ann".into()),
            skipped: None,
            active: true,
            groups: vec![
                verdict("jira-developers", Grant::Has),
                verdict("jira-administrators", Grant::Lacks),
                verdict("jira-software-users", Grant::OnCreate),
                verdict("backend", Grant::Has),
            ],
            idp_groups: vec![],
        };
        let held: Vec<String> = [
            "Jira-Developers",
            "jira-administrators",
            "jira-software-users",
            "release-managers",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (keep, admin_note) in [
            (true, "kept because [groups] keep_existing = true"),
            (false, "removed at the next sync"),
        ] {
            let (groups, missing) = compare(&e, &held, keep);
            let note = |g: &str| groups.iter().find(|h| h.group == g).unwrap().clone();
            assert!(note("Jira-Developers").justified);
            assert!(note("jira-software-users").justified);
            let a = note("jira-administrators");
            assert!(!a.justified);
            assert!(a.note.contains(admin_note), "{a:?}");
            assert!(note("release-managers")
                .note
                .contains("only the groups it manages"));
            assert_eq!(missing, vec!["backend".to_string()]);
        }
    }
}
