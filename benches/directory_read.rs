//! Benchmark: read a 100,000-person, 10,000-group, 1,000,000-membership
//! directory from the sandbox emulator through the Google client (service
//! account auth, full paging, nested-group flattening) and report wall time,
//! API calls (must equal the number of pages: no per-person calls) and peak RSS.
//! Run once: `cargo bench --bench directory_read`. `USHER_BENCH_SCALE=0.01`
//! shrinks the directory for a smoke run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use usher::config::{DirectoryAuth, DirectorySettings};
use usher::directory::google::{GoogleDirectory, GoogleDirectoryOptions};
use usher::directory::google_auth::{Credentials, ServiceAccountKey};
use usher::directory::{snapshot, Directory};
use usher::sandbox::google_directory::{
    generate_service_account_key, start, DirectorySeed, SeedServiceAccount,
};

/// A line of /proc/self/status in kB (Linux), e.g. `VmHWM`.
fn proc_status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resets the peak-RSS mark (Linux >= 4.0) so the read is measured on its own.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn pages(n: u64, size: u64) -> u64 {
    n.div_ceil(size).max(1)
}

fn main() {
    let scale: f64 = std::env::var("USHER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let people = (100_000.0 * scale) as u32;
    let groups = (10_000.0 * scale).max(1.0) as u32;
    let memberships = (1_000_000.0 * scale) as u64;
    let concurrency = 8;

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async move {
        let t_seed = Instant::now();
        let mut seed = DirectorySeed::generate("bench.example.com", people, groups, memberships);
        // Expected pages: users at 500, groups at 200, each group's members at 200.
        let expected_pages = pages(u64::from(people), 500)
            + pages(u64::from(groups), 200)
            + seed
                .groups
                .iter()
                .map(|g| pages(g.members.len() as u64, 200))
                .sum::<u64>();
        let member_rows: u64 = seed.groups.iter().map(|g| g.members.len() as u64).sum();
        let key_json = generate_service_account_key("bench@sandbox.iam.gserviceaccount.com", "1")
            .unwrap_or_default();
        let key = match ServiceAccountKey::from_json(&key_json) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };
        seed.service_accounts.push(SeedServiceAccount::for_key(&key));
        let (emu, running) = match start(seed).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("emulator: {e}");
                std::process::exit(1);
            }
        };
        let seed_time = t_seed.elapsed();
        let rss_after_seed = proc_status_kb("VmRSS:").unwrap_or(0);
        let hwm_after_seed = proc_status_kb("VmHWM:").unwrap_or(0);
        let reset = reset_peak_rss();

        let base = running.url();
        let settings = DirectorySettings {
            idp: "google".into(),
            customer: "my_customer".into(),
            domain: None,
            api_url: base.parse().unwrap_or_else(|_| std::process::exit(1)),
            token_url: format!("{base}/token")
                .parse()
                .unwrap_or_else(|_| std::process::exit(1)),
            nested_groups: true,
            auth: DirectoryAuth::OAuth,
            users_query: String::new(),
            include_suspended: true,
            // Unlimited here: the benchmark measures usher, not Google's quota.
            rate_limit_per_minute: 0,
        };
        let creds = Credentials::ServiceAccount {
            key,
            subject: "user0@bench.example.com".into(),
        };
        let options = GoogleDirectoryOptions {
            request_timeout: Duration::from_secs(120),
            ..GoogleDirectoryOptions::default()
        };
        let dir = match GoogleDirectory::new("google", &settings, creds, options) {
            Ok(d) => Arc::new(d),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        };

        let t_read = Instant::now();
        let snap = match snapshot(dir.as_ref(), concurrency).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("read failed: {e}");
                std::process::exit(1);
            }
        };
        let read_time = t_read.elapsed();
        let calls = dir.api_calls();
        let hwm = proc_status_kb("VmHWM:").unwrap_or(0);
        let counts = emu.counts();

        let t_login = Instant::now();
        let before = dir.api_calls();
        let lookups = 20u32;
        for i in 0..lookups {
            let key = format!("user{}@bench.example.com", (i * 4999) % people.max(1));
            if let Err(e) = dir.person(&key).await {
                eprintln!("lookup failed: {e}");
                std::process::exit(1);
            }
        }
        let lookup_time = t_login.elapsed() / lookups;
        let lookup_calls = (dir.api_calls() - before) as f64 / f64::from(lookups);
        running.stop();

        let default_quota_secs = calls as f64 / (2400.0 / 60.0);
        println!("directory_read: {people} people, {groups} groups, {member_rows} member rows (concurrency {concurrency})");
        println!("| metric | value | target |");
        println!("|---|---|---|");
        println!("| seed + start emulator | {:.2} s | - |", seed_time.as_secs_f64());
        println!("| full read (people + groups + members + flatten) | {:.2} s | <= 30 s |", read_time.as_secs_f64());
        println!("| API calls (client) | {calls} | = pages = {expected_pages} |");
        println!(
            "| API calls (emulator: users.list/groups.list/members.list/users.get) | {}/{}/{}/{} | users.get = 0 |",
            counts.users_list, counts.groups_list, counts.members_list, counts.users_get
        );
        println!("| token requests | {} | 1 |", counts.token_jwt);
        println!("| people / groups read | {} / {} | {people} / {groups} |", snap.people.len(), snap.groups.len());
        println!(
            "| flattened memberships | {} | >= {memberships} |",
            snap.membership_count()
        );
        println!("| RSS after seeding emulator (in-process) | {} MB | - |", rss_after_seed / 1024);
        println!("| peak RSS before read (VmHWM) | {} MB | - |", hwm_after_seed / 1024);
        println!(
            "| peak RSS during read (VmHWM{}) | {} MB | <= 300 MB |",
            if reset { ", reset after seeding" } else { ", whole process" },
            hwm / 1024
        );
        println!("| person lookup (users.get + groups.list?userKey, nested) | {:.2} ms, {lookup_calls:.1} calls | - |", lookup_time.as_secs_f64() * 1000.0);
        println!("| same read at Google's default 2,400 queries/min | >= {default_quota_secs:.0} s | (quota-bound) |");
        let ok = calls == expected_pages && counts.users_get == 0;
        if !ok {
            eprintln!("API calls {calls} != pages {expected_pages}");
            std::process::exit(2);
        }
    });
}
