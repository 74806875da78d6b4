//! The admin JSON API: start a sync (202 with its id, 409 when one is running here
//! or on another replica, 503 when the shared run lock is unavailable, 404 without
//! a sync service), a sync's status or report, the last report, audit
//! queries and the person explanation. Same gate as the pages; errors are JSON.

use std::time::SystemTime;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::json;

use crate::provision::audit::AuditLog;
use crate::sync::job::{Refused, RunStatus};

use super::page::{self, BASE};
use super::{audit_view, lookup, Ctx};

/// Starts a sync for the signed-in admin. `approve` applies past a safety limit and
/// records the admin as the approver; `redirect` answers a browser form with a 303
/// to the report page instead of JSON.
pub(super) async fn start_sync(
    cx: &Ctx<'_>,
    dry_run: bool,
    approve: bool,
    redirect: bool,
) -> Response<Bytes> {
    let Some(sync) = cx.admin.sync.as_ref() else {
        return cx.no_sync();
    };
    let approved_by = (approve && !dry_run).then(|| cx.email.clone());
    match sync
        .start_now(dry_run, Some(cx.email.clone()), approved_by.clone())
        .await
    {
        Ok(id) => {
            tracing::info!(
                admin = %cx.email,
                sync_id = %id,
                dry_run,
                approved = approved_by.is_some(),
                "sync started from the admin console"
            );
            if redirect {
                return page::see_other(&format!("{BASE}/report/{}", page::url_enc(&id)));
            }
            page::json(
                StatusCode::ACCEPTED,
                &json!({
                    "id": id,
                    "dry_run": dry_run,
                    "approved_by": approved_by,
                    "status": format!("{BASE}/sync/{id}"),
                }),
            )
        }
        Err(Refused::SharedStateUnavailable(why)) => {
            let msg = Refused::SharedStateUnavailable(why).to_string();
            if redirect {
                let body = format!("<p>{}</p>", page::esc(&msg));
                return page::html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    page::layout("The sync could not start", "/", &cx.email, &body, None),
                );
            }
            page::json_error(StatusCode::SERVICE_UNAVAILABLE, &msg, &[])
        }
        Err(Refused::Busy(busy)) => {
            if redirect {
                let body = format!(
                    "<p>Sync <a href=\"{BASE}/report/{}\">{}</a> is still running; one sync runs at a time.</p>",
                    page::url_enc(&busy.running),
                    page::esc(&busy.running)
                );
                return page::html(
                    StatusCode::CONFLICT,
                    page::layout("A sync is already running", "/", &cx.email, &body, None),
                );
            }
            page::json_error(
                StatusCode::CONFLICT,
                &busy.to_string(),
                &[("running", json!(busy.running))],
            )
        }
    }
}

/// `GET /_usher/admin/sync/{id}`: `{"state":"running","progress":..}` or
/// `{"state":"done","report":..}`.
pub(super) async fn status(cx: &Ctx<'_>, id: &str) -> Response<Bytes> {
    let Some(sync) = cx.admin.sync.as_ref() else {
        return cx.no_sync();
    };
    match sync.status(id).await {
        Some(st) => match serde_json::to_value(&st) {
            Ok(v) => page::json(StatusCode::OK, &v),
            Err(e) => page::json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), &[]),
        },
        None => page::json_error(
            StatusCode::NOT_FOUND,
            &format!("no sync {id:?} is running or kept in memory (the report may still be under [state] dir/reports)"),
            &[],
        ),
    }
}

/// `GET /_usher/admin/sync/last`: the newest finished report.
pub(super) async fn last(cx: &Ctx<'_>) -> Response<Bytes> {
    let Some(sync) = cx.admin.sync.as_ref() else {
        return cx.no_sync();
    };
    match sync.last().await {
        Some(report) => {
            let st = RunStatus::Done { report };
            match serde_json::to_value(&st) {
                Ok(v) => page::json(StatusCode::OK, &v),
                Err(e) => page::json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), &[]),
            }
        }
        None => page::json_error(
            StatusCode::NOT_FOUND,
            "no sync has finished since usher started",
            &[("running", json!(sync.running().await))],
        ),
    }
}

/// Reads the audit entries for the request's filter (newest last).
pub(super) fn audit_entries(
    cx: &Ctx<'_>,
) -> Result<Vec<crate::provision::audit::AuditEntry>, (StatusCode, String)> {
    let filter = audit_view::filter_from_query(&cx.query, SystemTime::now())
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let log = AuditLog::open(&cx.admin.settings.state.dir)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    log.read(&filter)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `GET /_usher/admin/audit?person=&target=&op=&since=&until=&limit=`.
pub(super) fn audit(cx: &Ctx<'_>) -> Response<Bytes> {
    match audit_entries(cx) {
        Ok(entries) => page::json(
            StatusCode::OK,
            &json!({ "count": entries.len(), "entries": entries }),
        ),
        Err((status, msg)) => page::json_error(status, &msg, &[]),
    }
}

/// `GET /_usher/admin/person?email=`: why the person has or lacks each group.
pub(super) async fn person(cx: &Ctx<'_>) -> Response<Bytes> {
    let Some(email) = cx
        .query
        .get("email")
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
    else {
        return page::json_error(StatusCode::BAD_REQUEST, "give ?email=ADDRESS", &[]);
    };
    let Some(sync) = cx.admin.sync.as_ref() else {
        return cx.no_sync();
    };
    match lookup::lookup_with(&cx.admin.settings, sync, email).await {
        Ok(l) => match serde_json::to_value(&l) {
            Ok(v) => page::json(StatusCode::OK, &v),
            Err(e) => page::json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), &[]),
        },
        Err(e @ lookup::LookupError::NotFound(_)) => {
            page::json_error(StatusCode::NOT_FOUND, &e.to_string(), &[])
        }
        Err(e) => page::json_error(StatusCode::BAD_GATEWAY, &e.to_string(), &[]),
    }
}
