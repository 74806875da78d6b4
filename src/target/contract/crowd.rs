//! The shared contract run against the crowd client and its emulator, with the
//! inspector that reads the emulator's state behind the client's back.

use super::*;
use crate::sandbox::crowd::{CrowdEmulator, CrowdSeed};
use crate::target::crowd::CrowdTarget;

struct CrowdInspector(Arc<CrowdEmulator>);

impl Inspector for CrowdInspector {
    fn user(&self, username: &str) -> Option<Seen> {
        self.0
            .state()
            .users
            .get(&username.to_lowercase())
            .map(|u| Seen {
                email: Some(u.email.clone()),
                display_name: u.display_name.clone(),
                active: u.active,
            })
    }
    fn members(&self, group: &str) -> BTreeSet<String> {
        self.0
            .state()
            .groups
            .get(group)
            .cloned()
            .unwrap_or_default()
    }
    fn has_group(&self, group: &str) -> bool {
        self.0.state().groups.contains_key(group)
    }
    fn seed_user(&self, username: &str, email: &str, display: &str) {
        self.0
            .with_state(|s| s.insert_user(username, email, display));
    }
    fn seed_member(&self, group: &str, username: &str) {
        self.0.with_state(|s| s.insert_member(group, username));
    }
    fn gate(&self) -> &Gate {
        &self.0.gate
    }
    fn signed_out(&self, username: &str) -> bool {
        self.0
            .state()
            .users
            .get(&username.to_lowercase())
            .is_some_and(|u| !u.active)
    }
}

pub(crate) fn client(
    url: &str,
    auth: TargetAuth,
    clock: Arc<RecordingClock>,
    page: usize,
) -> Arc<dyn Target> {
    let rest = rest_client(TargetKind::Crowd, url, auth, clock);
    Arc::new(CrowdTarget::new(rest).with_page_size(page))
}

/// Crowd's base url carries the `/crowd` context path, as in production.
#[tokio::test]
async fn crowd_contract_application_auth() {
    let (emu, running) = CrowdEmulator::start(CrowdSeed::default()).await.unwrap();
    let url = format!("{}/crowd", running.url());
    let auth = (
        basic("usher", "app-password"),
        basic("usher", "wrong-secret"),
    );
    run_with(client, &url, auth, Arc::new(CrowdInspector(emu)), 6).await;
    running.stop();
}
