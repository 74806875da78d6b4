//! The shared contract run against the scim client and its emulator, with the
//! inspector that reads the emulator's state behind the client's back.

use super::*;
use crate::sandbox::scim::{ScimEmulator, ScimSeed};
use crate::target::scim::ScimTarget;

struct ScimInspector(Arc<ScimEmulator>);

impl Inspector for ScimInspector {
    fn user(&self, username: &str) -> Option<Seen> {
        self.0.state().user_by_name(username).map(|u| Seen {
            email: u["emails"][0]["value"].as_str().map(str::to_string),
            display_name: u["displayName"].as_str().unwrap_or_default().to_string(),
            active: u["active"].as_bool().unwrap_or(true),
        })
    }
    fn members(&self, group: &str) -> BTreeSet<String> {
        self.0.state().member_names(group).into_iter().collect()
    }
    fn has_group(&self, group: &str) -> bool {
        self.0.state().group_by_name(group).is_some()
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
        self.user(username).is_some_and(|u| !u.active)
    }
}

pub(crate) fn client(
    url: &str,
    auth: TargetAuth,
    clock: Arc<RecordingClock>,
    page: usize,
) -> Arc<dyn Target> {
    let rest = rest_client(TargetKind::Scim, url, auth, clock);
    Arc::new(ScimTarget::new(rest).with_page_size(page))
}

#[tokio::test]
async fn scim_contract_directory_key() {
    let (emu, running) = ScimEmulator::start(ScimSeed::default()).await.unwrap();
    let url = format!("{}{}", running.url(), emu.base_path());
    let auth = (bearer("directory-key"), bearer("wrong-secret"));
    run_with(client, &url, auth, Arc::new(ScimInspector(emu)), 4).await;
    running.stop();
}
