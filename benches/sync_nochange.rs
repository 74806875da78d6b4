//! Benchmark: a no-change full sync (`usher::sync::run`) of a 100,000-person,
//! 10,000-group, 1,000,000-membership directory (Google directory emulator)
//! into a Jira emulator already holding the same accounts and memberships.
//! The identity links a first sync records are written beforehand, so both runs are
//! the steady state and must plan nothing and make zero write calls. Prints wall
//! time, call counts and peak RSS.
//!
//! `cargo bench --bench sync_nochange`. Knobs:
//! - `USHER_BENCH_SCALE=0.1` shrinks the directory (people, groups, memberships);
//! - `USHER_BENCH_MANAGED=N` manages only groups `group0..group{N-1}` in Jira
//!   (default: all). The Jira emulator answers `/group/member` by scanning every
//!   user, so with 100,000 accounts managing all 10,000 groups is beyond it.

use std::collections::BTreeSet;
use std::time::Instant;

use usher::config::{self, SystemEnv};
use usher::directory::google_auth::ServiceAccountKey;
use usher::sandbox::google_directory::{
    self, generate_service_account_key, DirectorySeed, MemberKey, SeedServiceAccount,
};
use usher::sandbox::jira::{JiraEmulator, JiraSeed};
use usher::sync::{self, Progress, Sources, SyncOptions, SyncReport};

const DOMAIN: &str = "bench.example.com";

fn proc_status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// This run's scratch directory (the service-account key and sync state).
fn scratch_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("usher-bench-sync-{}", std::process::id()))
}

/// Stops the bench. `exit` skips destructors, so the scratch directory is
/// removed here rather than by a guard.
fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    let _ = std::fs::remove_dir_all(scratch_dir());
    std::process::exit(1)
}

fn print_run(label: &str, r: &SyncReport, secs: f64) {
    let t = r.targets.first();
    println!(
        "{label}: {secs:.1} s, status {:?}; directory {} people / {} groups / {} memberships in {} ms ({} API calls); \
         jira read {} ms, {} read calls, {} write calls; planned {:?}",
        r.status,
        r.directory.people,
        r.directory.groups,
        r.directory.memberships,
        r.directory.read_ms,
        r.directory.api_calls.unwrap_or(0),
        t.map_or(0, |t| t.read_ms),
        t.map_or(0, |t| t.calls.reads),
        t.map_or(0, |t| t.calls.writes),
        t.map(|t| &t.planned),
    );
    for e in &r.errors {
        println!("  error: {e}");
    }
    if let Some(e) = t.and_then(|t| t.error.as_ref()) {
        println!("  target error: {e}");
    }
}

fn main() {
    let scale: f64 = std::env::var("USHER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let people = (100_000.0 * scale) as u32;
    let groups = (10_000.0 * scale).max(1.0) as u32;
    let memberships = (1_000_000.0 * scale) as u64;
    let managed: u32 = std::env::var("USHER_BENCH_MANAGED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(groups)
        .min(groups);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("tokio", e));
    rt.block_on(async move {
        let mut seed = DirectorySeed::generate(DOMAIN, people, groups, memberships);
        let key_json = generate_service_account_key("bench@sandbox.iam.gserviceaccount.com", "1")
            .unwrap_or_else(|e| fail("key", e));
        let key = ServiceAccountKey::from_json(&key_json).unwrap_or_else(|e| fail("key", e));
        seed.service_accounts.push(SeedServiceAccount::for_key(&key));

        // The Jira side: every active person's account, and every managed group with
        // its flattened members (the generator nests group g+1 in every 100th group g).
        let active: Vec<bool> = seed.users.iter().map(|u| !u.suspended && !u.archived).collect();
        let direct: Vec<Vec<u32>> = seed
            .groups
            .iter()
            .map(|g| {
                g.members
                    .iter()
                    .filter_map(|m| match m.key {
                        MemberKey::UserIndex(i) => Some(i),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let users = seed
            .users
            .iter()
            .zip(&active)
            .filter(|(_, a)| **a)
            .map(|(u, _)| {
                let name = u.primary_email.split('@').next().unwrap_or_default().to_string();
                (name, u.primary_email.clone(), format!("{} {}", u.given_name, u.family_name))
            })
            .collect();
        let mut jira = JiraSeed {
            users,
            ..JiraSeed::default()
        };
        let mut jira_memberships = 0usize;
        for g in 0..managed as usize {
            let mut members: BTreeSet<u32> = direct[g].iter().copied().collect();
            if g % 100 == 0 && g + 1 < direct.len() {
                members.extend(direct[g + 1].iter().copied());
            }
            let names: Vec<String> = members
                .into_iter()
                .filter(|&i| active[i as usize])
                .map(|i| format!("user{i}"))
                .collect();
            jira_memberships += names.len();
            jira.groups.push((format!("group{g}"), names));
        }
        let user_ids: std::collections::HashMap<String, String> = seed
            .users
            .iter()
            .map(|u| {
                let name = u.primary_email.split('@').next().unwrap_or_default().to_string();
                (name, u.id.clone())
            })
            .collect();
        let t = Instant::now();
        let (_google, google_run) = google_directory::start(seed)
            .await
            .unwrap_or_else(|e| fail("google emulator", e));
        let (jira_emu, jira_run) = JiraEmulator::start(jira)
            .await
            .unwrap_or_else(|e| fail("jira emulator", e));
        println!(
            "seeded in {:.1} s: {people} people, {groups} groups, {memberships} membership rows; jira: {} managed groups, {jira_memberships} memberships; RSS {} MB",
            t.elapsed().as_secs_f64(),
            managed,
            proc_status_kb("VmRSS:").unwrap_or(0) / 1024
        );

        let dir = scratch_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| fail("temp dir", e));
        let key_file = dir.join("sa.json");
        std::fs::write(&key_file, &key_json).unwrap_or_else(|e| fail("key file", e));
        let filter = if managed == groups {
            String::new()
        } else {
            // group0 .. group{managed-1} (by number).
            let alts: Vec<String> = (0..managed).map(|g| g.to_string()).collect();
            format!("filter = \"^group({})@\"", alts.join("|"))
        };
        let google = google_run.url();
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://jira.test"
[session]
secret = "bench-secret-bench-secret-bench-secret-0000"
[[idp]]
name = "google"
kind = "google"
issuer = "http://127.0.0.1:9/"
client_id = "c"
client_secret = "s"
allowed_domains = ["{DOMAIN}"]
[directory]
idp = "google"
api_url = "{google}"
token_url = "{google}/token"
service_account_key = "file:{key}"
admin_subject = "user0@{DOMAIN}"
rate_limit_per_minute = 1000000
[[upstream]]
name = "jira"
host = "jira.test"
url = "{jira}"
[[target]]
name = "jira"
kind = "jira"
url = "{jira}"
auth = {{ username = "usher-bot", password = "bot-password" }}
concurrency = 16
timeout = "120s"
[provisioning]
username = {{ regex = "(.*)@.*", replacement = "$1" }}
[groups]
mode = "on-the-fly"
name = {{ regex = "^(.*)@bench\\.example\\.com$", replacement = "$1" }}
keep_existing = false
create_missing = true
{filter}
[sync]
concurrency = 16
max_changes = 10000000
[state]
dir = "{state}"
"#,
            key = key_file.display(),
            jira = jira_run.url(),
            state = dir.join("state").display(),
        );
        // The identity links a first sync would have recorded (one line per account, as
        // `provision::link_store` writes them), so both runs below are the steady state.
        // (Adopting 100,000 accounts through the sync records each link with an fsync.)
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap_or_else(|e| fail("state dir", e));
        let mut links = String::new();
        for u in jira_emu.state().users.values() {
            if let Some(id) = user_ids.get(&u.name) {
                links.push_str(
                    &serde_json::json!({"target": "jira", "source": "google", "id": id,
                        "username": u.name, "key": u.key})
                    .to_string(),
                );
                links.push('\n');
            }
        }
        std::fs::write(state.join("links.jsonl"), links).unwrap_or_else(|e| fail("links", e));
        let settings = config::parse(&text, "bench.toml", &SystemEnv)
            .unwrap_or_else(|e| fail("config", e));
        let sources = Sources::from_settings(&settings).unwrap_or_else(|e| fail("sources", e));
        for label in ["run 1 (no change, cold)", "run 2 (no change, warm)"] {
            let t = Instant::now();
            let r = sync::run(&settings, &sources, &SyncOptions::default(), &Progress::default()).await;
            print_run(label, &r, t.elapsed().as_secs_f64());
        }
        println!("peak RSS {} MB", proc_status_kb("VmHWM:").unwrap_or(0) / 1024);
        let _ = std::fs::remove_dir_all(&dir);
    });
}
