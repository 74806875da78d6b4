//! Jira refuses to deactivate a project lead: before deactivation the projects and
//! components a user leads are handed to `default_project_lead` /
//! `default_component_lead`. Only that hand-over; no other Jira calls.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::{JiraTarget, NameOnly, API};
use crate::target::http::seg;
use crate::target::TargetError;

#[derive(Debug, Deserialize)]
struct ProjectJson {
    key: String,
    lead: Option<NameOnly>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ComponentJson {
    id: String,
    lead_user_name: Option<String>,
    lead: Option<NameOnly>,
}

impl JiraTarget {
    /// Hands projects and components led by `username` to the configured defaults.
    pub(super) async fn reassign_leads(&self, username: &str) -> Result<(), TargetError> {
        let what = format!("reassign the project and component leads of {username}");
        let reply = self
            .rest
            .expect(
                Method::GET,
                &format!("{API}/project"),
                &[("expand", "lead")],
                None,
                &[StatusCode::OK],
                &what,
            )
            .await?;
        let projects: Vec<ProjectJson> = self.rest.json(&reply, &what)?;
        for p in &projects {
            let leads = p
                .lead
                .as_ref()
                .is_some_and(|l| l.name.eq_ignore_ascii_case(username));
            if leads {
                let Some(new_lead) = &self.default_project_lead else {
                    return Err(TargetError::Rejected {
                        target: self.rest.target().to_string(),
                        what: format!("deactivate {username}"),
                        status: 400,
                        message: format!("{username} leads project {}; set default_project_lead in the [[target]] so usher can hand the project over", p.key),
                    });
                };
                let body = json!({"lead": new_lead});
                let w = format!("make {new_lead} lead of project {}", p.key);
                self.rest
                    .expect(
                        Method::PUT,
                        &format!("{API}/project/{}", seg(&p.key)),
                        &[],
                        Some(&body),
                        &[StatusCode::OK],
                        &w,
                    )
                    .await?;
                tracing::info!(target_name = %self.rest.target(), project = %p.key, from = %username, to = %new_lead, "project lead reassigned");
            }
            let cpath = format!("{API}/project/{}/components", seg(&p.key));
            let reply = self
                .rest
                .expect(Method::GET, &cpath, &[], None, &[StatusCode::OK], &what)
                .await?;
            let components: Vec<ComponentJson> = self.rest.json(&reply, &what)?;
            for c in components {
                let lead = c.lead_user_name.or(c.lead.map(|l| l.name));
                if !lead.is_some_and(|l| l.eq_ignore_ascii_case(username)) {
                    continue;
                }
                // Without a default the project lead takes over, as Jira itself does.
                let new_lead = self
                    .default_component_lead
                    .clone()
                    .or_else(|| self.default_project_lead.clone())
                    .unwrap_or_default();
                let body = json!({"leadUserName": new_lead});
                let w = format!("make {new_lead} lead of component {}", c.id);
                self.rest
                    .expect(
                        Method::PUT,
                        &format!("{API}/component/{}", seg(&c.id)),
                        &[],
                        Some(&body),
                        &[StatusCode::OK],
                        &w,
                    )
                    .await?;
            }
        }
        Ok(())
    }
}
