//! The shared contract run against the jira client and its emulator, with the
//! inspector that reads the emulator's state behind the client's back.

use super::*;
use crate::sandbox::jira::{JiraEmulator, JiraSeed};
use crate::target::http::RestClient;
use crate::target::jira::JiraTarget;

struct JiraInspector(Arc<JiraEmulator>);

impl Inspector for JiraInspector {
    fn user(&self, username: &str) -> Option<Seen> {
        self.0.state().user(username).map(|u| Seen {
            email: Some(u.email.clone()),
            display_name: u.display_name.clone(),
            active: u.active,
        })
    }
    fn members(&self, group: &str) -> BTreeSet<String> {
        self.0.state().members(group)
    }
    fn has_group(&self, group: &str) -> bool {
        self.0.state().groups.contains_key(group)
    }
    fn seed_user(&self, username: &str, email: &str, display: &str) {
        self.0
            .with_state(|s| s.insert_user(username, email, display, true));
    }
    fn seed_member(&self, group: &str, username: &str) {
        self.0.with_state(|s| s.insert_member(group, username));
    }
    fn gate(&self) -> &Gate {
        &self.0.gate
    }
    fn signed_out(&self, username: &str) -> bool {
        self.0.state().user(username).is_some_and(|u| !u.active)
    }
}

pub(crate) async fn client(
    url: &str,
    auth: TargetAuth,
    clock: Arc<RecordingClock>,
    page: usize,
) -> Arc<dyn Target> {
    let s = settings(TargetKind::Jira, url, auth);
    let rest = RestClient::new(&s, crate::target::http::Flavor::Jira)
        .unwrap()
        .with_clock(clock);
    Arc::new(JiraTarget::new(&s, rest).with_page_size(page))
}

#[tokio::test]
async fn jira_contract_basic_auth() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    let clock = Arc::new(RecordingClock::default());
    let url = running.url();
    run(Harness {
        target: client(&url, basic("usher-bot", "bot-password"), clock.clone(), 5).await,
        bad_auth: client(&url, basic("usher-bot", "wrong-secret"), clock.clone(), 5).await,
        inspector: Arc::new(JiraInspector(emu)),
        clock,
        page_size: 5,
    })
    .await;
    running.stop();
}

#[tokio::test]
async fn jira_contract_bearer_pat() {
    let (emu, running) = JiraEmulator::start(JiraSeed::default()).await.unwrap();
    let clock = Arc::new(RecordingClock::default());
    let url = running.url();
    run(Harness {
        target: client(&url, bearer("bot-pat"), clock.clone(), 7).await,
        bad_auth: client(&url, bearer("wrong-secret"), clock.clone(), 7).await,
        inspector: Arc::new(JiraInspector(emu)),
        clock,
        page_size: 7,
    })
    .await;
    running.stop();
}
