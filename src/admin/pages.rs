//! The console's HTML pages: status (service, IdPs, upstreams, targets with their
//! last error, recent syncs, the safety brake and the Synchronize buttons), one
//! sync's report with live progress, the plan preview, the audit log and the person
//! lookup. Server-rendered, every value escaped; works without JavaScript.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::sync::job::RunStatus;
use crate::sync::report::rfc3339;
use crate::sync::{SyncReport, SyncStatus};

use super::page::{self, esc, layout, post_button, url_enc, BASE};
use super::plan_view::{self, PlanFilter};
use super::{api, audit_view, lookup, Ctx};

fn status_word(s: SyncStatus) -> (&'static str, &'static str) {
    match s {
        SyncStatus::Running => ("running", "muted"),
        SyncStatus::Succeeded => ("succeeded", "ok"),
        SyncStatus::Planned => ("planned (dry run)", "ok"),
        SyncStatus::Stopped => ("stopped by the safety brake", "bad"),
        SyncStatus::Failed => ("failed", "bad"),
    }
}

/// A safety limit as written in the config (`5%`, `100`).
fn limit(l: crate::config::Limit) -> String {
    match l {
        crate::config::Limit::Count(n) => n.to_string(),
        crate::config::Limit::Percent(p) => format!("{p}%"),
    }
}

fn report_link(id: &str) -> String {
    format!(
        "<a href=\"{BASE}/report/{}\"><code>{}</code></a>",
        url_enc(id),
        esc(id)
    )
}

/// The two sync buttons (or the running sync's progress).
async fn sync_panel(cx: &Ctx<'_>, out: &mut String) -> bool {
    let Some(sync) = cx.admin.sync.as_ref() else {
        out.push_str("<div class=\"panel\"><p class=\"muted\">No sync is configured: a full sync needs a <code>[directory]</code> and at least one <code>[[target]]</code>.</p></div>");
        return false;
    };
    if let Some(me) = sync.replica() {
        // Several replicas: which one this page comes from and which runs the schedule.
        let leader = match sync.leader().await {
            Some(l) if l == me => "this replica".to_string(),
            Some(l) => esc(&l),
            None => "none (no schedule, or the lease is changing hands)".into(),
        };
        let _ = write!(
            out,
            "<p class=\"muted\">Replica <code>{}</code>; scheduled syncs run on the sync leader: {leader}.</p>",
            esc(me)
        );
    }
    if let Some(id) = sync.running().await {
        let progress = match sync.status(&id).await {
            Some(RunStatus::Running { progress, .. }) => format!(
                "{}: {} of {} changes written",
                progress.phase, progress.done, progress.total
            ),
            _ => "starting".into(),
        };
        let _ = write!(
            out,
            "<div class=\"panel\"><p>Sync {} is running: <span data-sync-id=\"{}\">{}</span></p></div>",
            report_link(&id),
            esc(&id),
            esc(&progress)
        );
        return true;
    }
    let action = format!("{BASE}/sync");
    let _ = write!(
        out,
        "<div class=\"panel\"><p>{}{}</p><p class=\"muted\">A preview reads everything and changes nothing; \
         Synchronize applies the plan unless a safety limit stops it.</p></div>",
        post_button(&action, &cx.csrf_token, &[("dry_run", "1")], "Preview plan (dry run)", "secondary"),
        post_button(&action, &cx.csrf_token, &[], "Synchronize", ""),
    );
    false
}

/// The brake panel for a stopped report: why, and "apply anyway".
fn brake_panel(cx: &Ctx<'_>, r: &SyncReport, out: &mut String) {
    let _ = write!(
        out,
        "<div class=\"panel brake\"><h2>Safety brake engaged</h2><p>Sync {} planned more than the limits allow, so nothing was changed:</p><ul>",
        report_link(&r.id)
    );
    for why in &r.stopped_because {
        let _ = write!(out, "<li>{}</li>", esc(why));
    }
    let _ = write!(
        out,
        "</ul><p>Check the <a href=\"{BASE}/plan?id={}\">plan</a> first. Applying anyway records you ({}) as the approver in the report and the audit log.</p>{}</div>",
        url_enc(&r.id),
        esc(&cx.email),
        post_button(
            &format!("{BASE}/sync"),
            &cx.csrf_token,
            &[("approve", "1")],
            "Apply anyway",
            "danger"
        )
    );
}

fn syncs_table(reports: &[Arc<SyncReport>]) -> String {
    if reports.is_empty() {
        return "<p class=\"muted\">No sync has finished since usher started.</p>".into();
    }
    let mut s = String::from("<table class=\"syncs\"><thead><tr><th>Sync</th><th>Trigger</th><th>Status</th><th>Started</th><th>Duration</th><th>Approved by</th><th>Summary</th></tr></thead><tbody>");
    for r in reports {
        let (word, cls) = status_word(r.status);
        let trigger = serde_json::to_value(r.trigger)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}{}{}</td><td class=\"{cls}\">{word}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td></tr>",
            report_link(&r.id),
            esc(&trigger),
            if r.dry_run { " (dry run)" } else { "" },
            r.requested_by
                .as_deref()
                .map(|by| format!("<br><small>{}</small>", esc(by)))
                .unwrap_or_default(),
            esc(&r.started_at),
            r.duration_ms as f64 / 1000.0,
            esc(r.approved_by.as_deref().unwrap_or("")),
            esc(&r.summary_line()),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// The `[directory]`: where people are read from and, in refresh-token mode,
/// whether an admin has connected it (with the link to do so).
fn directory_panel(cx: &Ctx<'_>, b: &mut String) {
    let Some(d) = &cx.admin.settings.directory else {
        return;
    };
    let access = match (&d.auth, &cx.admin.connect) {
        (crate::config::DirectoryAuth::ServiceAccount { admin_subject, .. }, _) => format!(
            "service account acting as {}",
            esc(admin_subject)
        ),
        (_, Some(connect)) if connect.is_connected() => format!(
            "<span class=\"ok\">connected</span> by an admin's consent (<a href=\"{BASE}/connect/google\">reconnect</a>)"
        ),
        (_, _) => format!(
            "<span class=\"bad\">not connected</span>: sign-ins and syncs cannot read it until an admin <a href=\"{BASE}/connect/google\">connects Google</a>"
        ),
    };
    let _ = write!(
        b,
        "<h2>Directory</h2><table class=\"directory\"><tr><th>Identity provider</th><td>{}</td></tr>\
         <tr><th>API</th><td>{}</td></tr><tr><th>Access</th><td>{access}</td></tr></table>",
        esc(&d.idp),
        esc(d.api_url.as_str()),
    );
}

/// `GET /_usher/admin/`.
pub(super) async fn status(cx: &Ctx<'_>) -> Response<Bytes> {
    let mut b = String::new();
    let running = sync_panel(cx, &mut b).await;
    let recent = match cx.admin.sync.as_ref() {
        Some(s) => s.recent().await,
        None => Vec::new(),
    };
    match recent.iter().find(|r| !r.dry_run) {
        Some(r) if r.status == SyncStatus::Stopped => brake_panel(cx, r, &mut b),
        _ => {
            let l = &cx.admin.settings.sync;
            let _ = write!(
                b,
                "<div class=\"panel\"><p><span class=\"ok\">Safety brake not engaged.</span> Limits: max_deprovision {}, max_changes {}, max_group_removals {}.</p></div>",
                limit(l.max_deprovision),
                l.max_changes,
                limit(l.max_group_removals)
            );
        }
    }
    b.push_str("<h2>Recent syncs</h2>");
    b.push_str(&syncs_table(&recent));

    // Targets with the outcome of the newest sync that covered them.
    b.push_str("<h2>Targets</h2><table class=\"targets\"><thead><tr><th>Target</th><th>Kind</th><th>URL</th><th>Last sync</th></tr></thead><tbody>");
    for t in &cx.admin.settings.targets {
        let last = recent.iter().find_map(|r| {
            r.targets
                .iter()
                .find(|tr| tr.name == t.name)
                .map(|tr| (r, tr))
        });
        let outcome = match last {
            None => "<span class=\"muted\">not synced yet</span>".to_string(),
            Some((r, tr)) => match (&tr.error, tr.applied) {
                (Some(e), _) => format!(
                    "<span class=\"bad\">error</span>: {} ({})",
                    esc(e),
                    report_link(&r.id)
                ),
                (None, Some(c)) if c.failed + c.skipped > 0 => format!(
                    "<span class=\"bad\">{} failed, {} skipped</span> ({})",
                    c.failed,
                    c.skipped,
                    report_link(&r.id)
                ),
                (None, Some(c)) => format!(
                    "<span class=\"ok\">ok</span>: {} changed ({})",
                    c.done,
                    report_link(&r.id)
                ),
                (None, None) => format!(
                    "{} change(s) planned ({})",
                    tr.planned_changes(),
                    report_link(&r.id)
                ),
            },
        };
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{outcome}</td></tr>",
            esc(&t.name),
            esc(&format!("{:?}", t.kind).to_lowercase()),
            esc(t.url.as_str()),
        );
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Identity providers</h2><table class=\"idps\"><thead><tr><th>Name</th><th>Kind</th><th>Issuer</th><th>Discovery</th></tr></thead><tbody>");
    let rps = cx.proxy.sign_in.relying_parties();
    for idp in &cx.admin.settings.idps {
        let ready = rps.iter().any(|rp| rp.name() == idp.name && rp.is_ready());
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&idp.name),
            esc(&format!("{:?}", idp.kind).to_lowercase()),
            esc(idp.issuer.as_str()),
            if ready {
                "<span class=\"ok\">loaded</span>"
            } else {
                "<span class=\"muted\">not loaded yet</span>"
            }
        );
    }
    b.push_str("</tbody></table>");
    directory_panel(cx, &mut b);
    b.push_str("<h2>Upstreams</h2><table class=\"upstreams\"><thead><tr><th>Name</th><th>Host</th><th>URL</th><th>Provisions into</th></tr></thead><tbody>");
    for u in &cx.admin.settings.upstreams {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&u.name),
            esc(&u.host),
            esc(u.url.as_str()),
            esc(&u.targets.join(", "))
        );
    }
    let uptime = Duration::from_secs(cx.admin.started.elapsed().as_secs());
    let _ = write!(
        b,
        "</tbody></table><h2>Service</h2><table class=\"service\"><tr><th>Version</th><td>usher {}</td></tr>\
         <tr><th>Started</th><td>{}</td></tr><tr><th>Uptime</th><td>{}</td></tr>\
         <tr><th>Config</th><td>{}</td></tr></table>",
        env!("CARGO_PKG_VERSION"),
        esc(&rfc3339(cx.admin.started_at)),
        esc(&humantime::format_duration(uptime).to_string()),
        esc(&cx
            .admin
            .settings
            .source
            .as_ref()
            .map_or("(built in)".to_string(), |p| p.display().to_string())),
    );
    page::html(
        StatusCode::OK,
        layout("Status", "/", &cx.email, &b, running.then_some(3)),
    )
}

/// `GET /_usher/admin/report/{id}`: one sync, live while it runs.
pub(super) async fn report(cx: &Ctx<'_>, id: &str) -> Response<Bytes> {
    let Some(sync) = cx.admin.sync.as_ref() else {
        return cx.no_sync();
    };
    let report = match sync.status(id).await {
        None => {
            return cx.error(
                StatusCode::NOT_FOUND,
                "No such sync is running or kept in memory (older reports are under [state] dir/reports).",
            )
        }
        Some(RunStatus::Running { progress, .. }) => {
            let body = format!(
                "<div class=\"panel\"><p>Sync <code>{}</code> is running: <span data-sync-id=\"{}\">{}: {} of {} changes written</span></p>\
                 <p class=\"muted\">This page refreshes by itself.</p></div>",
                esc(id),
                esc(id),
                esc(&progress.phase),
                progress.done,
                progress.total
            );
            return page::html(
                StatusCode::OK,
                layout("Sync running", "/", &cx.email, &body, Some(2)),
            );
        }
        Some(RunStatus::Done { report }) => report,
    };
    let r = report.as_ref();
    let (word, cls) = status_word(r.status);
    let mut b = format!(
        "<div class=\"panel\"><p class=\"{cls}\" id=\"sync-status\">Sync {word}.</p><p>{}</p>",
        esc(&r.summary_line())
    );
    let trigger = serde_json::to_value(r.trigger)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = write!(
        b,
        "<table><tr><th>Id</th><td><code>{}</code> (<a href=\"{BASE}/sync/{}\">JSON</a>)</td></tr><tr><th>Trigger</th><td>{}{}</td></tr>\
         <tr><th>Started</th><td>{}</td></tr><tr><th>Finished</th><td>{}</td></tr><tr><th>Approved by</th><td>{}</td></tr>\
         <tr><th>Directory</th><td>{} people ({} active), {} groups, {} memberships, {} skipped</td></tr></table></div>",
        esc(&r.id),
        url_enc(&r.id),
        esc(&trigger),
        match (&r.requested_by, r.dry_run) {
            (Some(by), true) => format!(", dry run, by {}", esc(by)),
            (Some(by), false) => format!(", by {}", esc(by)),
            (None, true) => ", dry run".to_string(),
            (None, false) => String::new(),
        },
        esc(&r.started_at),
        esc(&r.finished_at),
        esc(r.approved_by.as_deref().unwrap_or("nobody (no override)")),
        r.directory.people,
        r.directory.active_people,
        r.directory.groups,
        r.directory.memberships,
        r.directory.skipped,
    );
    for e in &r.errors {
        let _ = write!(b, "<p class=\"bad\">Error: {}</p>", esc(e));
    }
    if r.status == SyncStatus::Stopped {
        brake_panel(cx, r, &mut b);
    } else if !r.stopped_because.is_empty() {
        let _ = write!(
            b,
            "<div class=\"panel\"><p>Limits exceeded{}:</p><ul>",
            if r.approved_by.is_some() {
                ", applied anyway as approved"
            } else {
                " (a real run would be stopped)"
            }
        );
        for why in &r.stopped_because {
            let _ = write!(b, "<li>{}</li>", esc(why));
        }
        b.push_str("</ul></div>");
    }
    b.push_str("<h2>Targets</h2><table class=\"targets\"><thead><tr><th>Target</th><th>Planned</th><th>Applied</th><th>Problem</th></tr></thead><tbody>");
    for t in &r.targets {
        let planned: Vec<String> = t.planned.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let applied = t.applied.map_or("—".to_string(), |c| {
            format!(
                "{} changed, {} already so, {} failed, {} skipped",
                c.done, c.already_done, c.failed, c.skipped
            )
        });
        let problem = t.error.clone().unwrap_or_default();
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td></tr>",
            esc(&t.name),
            esc(&if planned.is_empty() {
                "no changes".to_string()
            } else {
                planned.join(", ")
            }),
            esc(&applied),
            esc(&problem)
        );
    }
    b.push_str("</tbody></table>");
    let failures: Vec<_> = r
        .targets
        .iter()
        .flat_map(|t| t.failures.iter().map(move |f| (t.name.as_str(), f)))
        .take(50)
        .collect();
    if !failures.is_empty() {
        b.push_str("<h2>Failed or skipped operations</h2><table><thead><tr><th>Target</th><th>Operation</th><th>Outcome</th></tr></thead><tbody>");
        for (t, f) in failures {
            let (subject, detail) = crate::sync::report::describe(&f.op);
            let outcome = serde_json::to_string(&f.outcome).unwrap_or_default();
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code> {} {}</td><td>{}</td></tr>",
                esc(t),
                esc(f.op.kind()),
                esc(&subject),
                esc(&detail),
                esc(&outcome)
            );
        }
        b.push_str("</tbody></table>");
    }
    let ops: usize = r.targets.iter().map(|t| t.operations.len()).sum();
    let _ = write!(
        b,
        "<p><a href=\"{BASE}/plan?id={}\">Planned operations ({ops})</a> · <a href=\"{BASE}/audit?since=1d\">Audit log</a></p>",
        url_enc(&r.id)
    );
    let title = if r.dry_run {
        "Plan report"
    } else {
        "Sync report"
    };
    page::html(StatusCode::OK, layout(title, "/", &cx.email, &b, None))
}

/// `GET /_usher/admin/plan?id=&target=&op=&person=`: the plan preview.
pub(super) async fn plan(cx: &Ctx<'_>) -> Response<Bytes> {
    let Some(sync) = cx.admin.sync.as_ref() else {
        return cx.no_sync();
    };
    let action = format!("{BASE}/sync");
    let mut b = String::new();
    let running = sync.running().await;
    if let Some(id) = &running {
        let _ = write!(
            b,
            "<div class=\"panel\"><p>Sync {} is running: <span data-sync-id=\"{}\">…</span></p></div>",
            report_link(id),
            esc(id)
        );
    }
    let chosen = match cx.query.get("id").filter(|i| !i.is_empty()) {
        Some(id) => match sync.status(id).await {
            Some(RunStatus::Done { report }) => Some(report),
            _ => {
                return cx.error(
                    StatusCode::NOT_FOUND,
                    "No finished sync with that id is kept in memory.",
                )
            }
        },
        None => sync.recent().await.into_iter().find(|r| r.dry_run),
    };
    let Some(report) = chosen else {
        let _ = write!(
            b,
            "<div class=\"panel\"><p>No plan yet. A preview reads the directory and every target and lists what a sync would change, without changing anything.</p>{}</div>",
            post_button(&action, &cx.csrf_token, &[("dry_run", "1")], "Preview plan (dry run)", "")
        );
        return page::html(
            StatusCode::OK,
            layout(
                "Plan preview",
                "/plan",
                &cx.email,
                &b,
                running.is_some().then_some(3),
            ),
        );
    };
    let filter = PlanFilter::from_query(&cx.query);
    let (rows, total) = plan_view::rows(&report, &filter);
    let _ = write!(
        b,
        "<div class=\"panel\"><p>{} {} from {} ({}).</p>",
        if report.dry_run {
            "Plan"
        } else {
            "Operations of sync"
        },
        report_link(&report.id),
        esc(&report.started_at),
        esc(status_word(report.status).0)
    );
    for t in &report.targets {
        match (&t.error, &t.safety) {
            (Some(e), _) => {
                let _ = write!(
                    b,
                    "<p><b>{}</b>: <span class=\"bad\">not planned</span>: {}</p>",
                    esc(&t.name),
                    esc(e)
                );
            }
            (None, Some(s)) if !s.passed() => {
                for h in &s.hits {
                    let _ = write!(
                        b,
                        "<p><b>{}</b>: <span class=\"bad\">limit exceeded</span>: {}</p>",
                        esc(&t.name),
                        esc(&h.to_string())
                    );
                }
            }
            _ => {}
        }
    }
    if running.is_none() {
        b.push_str(&post_button(
            &action,
            &cx.csrf_token,
            &[("dry_run", "1")],
            "Preview again",
            "secondary",
        ));
        b.push_str(&post_button(
            &action,
            &cx.csrf_token,
            &[],
            "Synchronize",
            "",
        ));
    }
    b.push_str("</div>");
    let targets: Vec<String> = report.targets.iter().map(|t| t.name.clone()).collect();
    b.push_str(&plan_view::filter_form(
        &format!("{BASE}/plan"),
        &report.id,
        &targets,
        &filter,
    ));
    let _ = write!(
        b,
        "<p class=\"muted\" id=\"plan-count\">{} of {total} planned operation(s) shown.</p>",
        rows.len()
    );
    for t in report.targets.iter().filter(|t| t.operations_truncated) {
        let _ = write!(
            b,
            "<p class=\"bad\">{}: the list was cut at {} operations; the counts in the report cover everything.</p>",
            esc(&t.name),
            crate::sync::report::MAX_LISTED
        );
    }
    b.push_str(&plan_view::table(&rows));
    page::html(
        StatusCode::OK,
        layout(
            "Plan preview",
            "/plan",
            &cx.email,
            &b,
            running.is_some().then_some(3),
        ),
    )
}

/// `GET /_usher/admin/audit`: the audit log with filters.
pub(super) fn audit(cx: &Ctx<'_>) -> Response<Bytes> {
    let mut b = audit_view::filter_form(&format!("{BASE}/audit"), &cx.query);
    let status = match api::audit_entries(cx) {
        Ok(entries) => {
            let _ = write!(
                b,
                "<p class=\"muted\">{} entr{} (newest first).</p>",
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" }
            );
            b.push_str(&audit_view::table(&entries));
            StatusCode::OK
        }
        Err((status, msg)) => {
            let _ = write!(b, "<p class=\"bad\">{}</p>", esc(&msg));
            status
        }
    };
    page::html(status, layout("Audit log", "/audit", &cx.email, &b, None))
}

/// `GET /_usher/admin/person?email=`: why someone has or lacks each group.
pub(super) async fn person(cx: &Ctx<'_>) -> Response<Bytes> {
    let email = cx
        .query
        .get("email")
        .map(|e| e.trim().to_string())
        .unwrap_or_default();
    let mut b = lookup::form(&format!("{BASE}/person"), &email);
    let mut status = StatusCode::OK;
    if !email.is_empty() {
        match cx.admin.sync.as_ref() {
            None => {
                status = StatusCode::NOT_FOUND;
                b.push_str("<p class=\"bad\">No directory is configured for syncs: the lookup reads people from the <code>[directory]</code>.</p>");
            }
            Some(sync) => match lookup::lookup_with(&cx.admin.settings, sync, &email).await {
                Ok(l) => b.push_str(&lookup::render(&l)),
                Err(e) => {
                    status = match e {
                        lookup::LookupError::NotFound(_) => StatusCode::NOT_FOUND,
                        _ => StatusCode::BAD_GATEWAY,
                    };
                    let _ = write!(b, "<p class=\"bad\">{}</p>", esc(&e.to_string()));
                }
            },
        }
    }
    page::html(
        status,
        layout("Person lookup", "/person", &cx.email, &b, None),
    )
}
