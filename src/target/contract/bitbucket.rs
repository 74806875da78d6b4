//! The shared contract run against the bitbucket client and its emulator, with the
//! inspector that reads the emulator's state behind the client's back.

use super::*;
use crate::sandbox::bitbucket::{BitbucketEmulator, BitbucketSeed};
use crate::target::bitbucket::BitbucketTarget;

struct BitbucketInspector(Arc<BitbucketEmulator>);

impl Inspector for BitbucketInspector {
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
    /// Bitbucket's "deactivated": no global permission, directly or through a group.
    fn signed_out(&self, username: &str) -> bool {
        !self.0.state().can_sign_in(username)
    }
}

pub(crate) fn client(
    url: &str,
    auth: TargetAuth,
    clock: Arc<RecordingClock>,
    page: usize,
) -> Arc<dyn Target> {
    let rest = rest_client(TargetKind::Bitbucket, url, auth, clock);
    Arc::new(BitbucketTarget::new(rest).with_page_size(page))
}

async fn contract(auth: TargetAuth, bad: TargetAuth) {
    let (emu, running) = BitbucketEmulator::start(BitbucketSeed::default())
        .await
        .unwrap();
    let inspector = Arc::new(BitbucketInspector(emu));
    run_with(client, &running.url(), (auth, bad), inspector, 3).await;
    running.stop();
}

#[tokio::test]
async fn bitbucket_contract_basic_auth() {
    contract(
        basic("usher-bot", "bot-password"),
        basic("usher-bot", "wrong-secret"),
    )
    .await;
}

#[tokio::test]
async fn bitbucket_contract_bearer_token() {
    contract(bearer("bot-pat"), bearer("wrong-secret")).await;
}
