//! The shared contract run against the confluence client and its emulator, with the
//! inspector that reads the emulator's state behind the client's back.

use super::*;
use crate::sandbox::confluence::{ConfluenceEmulator, ConfluenceSeed};
use crate::target::confluence::ConfluenceTarget;

struct ConfluenceInspector(Arc<ConfluenceEmulator>);

impl Inspector for ConfluenceInspector {
    fn user(&self, username: &str) -> Option<Seen> {
        self.0.state().users.get(username).map(|u| Seen {
            email: Some(u.email.clone()),
            display_name: u.full_name.clone(),
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
            .get(username)
            .is_some_and(|u| !u.active)
    }
}

pub(crate) fn client(
    url: &str,
    auth: TargetAuth,
    clock: Arc<RecordingClock>,
    page: usize,
) -> Arc<dyn Target> {
    let rest = rest_client(TargetKind::Confluence, url, auth, clock);
    Arc::new(ConfluenceTarget::new(rest).with_page_size(page))
}

async fn contract(auth: TargetAuth, bad: TargetAuth) {
    let (emu, running) = ConfluenceEmulator::start(ConfluenceSeed::default())
        .await
        .unwrap();
    let inspector = Arc::new(ConfluenceInspector(emu));
    run_with(client, &running.url(), (auth, bad), inspector, 4).await;
    running.stop();
}

#[tokio::test]
async fn confluence_contract_basic_auth() {
    contract(
        basic("usher-bot", "bot-password"),
        basic("usher-bot", "wrong-secret"),
    )
    .await;
}

/// A bad PAT is served as anonymous with 200; the client must still say Unauthorized.
#[tokio::test]
async fn confluence_contract_bearer_pat() {
    contract(bearer("bot-pat"), bearer("wrong-secret")).await;
}
