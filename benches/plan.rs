//! Planner benchmark: mapping + planning for 100,000 people, 10,000 groups and
//! 1,000,000 memberships (synthetic), printing wall time per stage and peak RSS
//! (VmHWM). Budget: <= 2 s and <= 512 MB. Run: `cargo bench --bench plan`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use regex::Regex;
use usher::config::{
    Deprovision, GroupsMode, GroupsSettings, LinkExisting, LoginProvisioning, OnFailure,
    ProvisioningSettings, RewriteRule, UserPattern, UsernameRule,
};
use usher::identity::{ExternalId, GroupRef, Person, PersonWithGroups};
use usher::provision::plan::{plan_for, PlanInput, Policy, Population};
use usher::provision::{ActualState, LinkedAccount, Mapper};
use usher::target::{Capabilities, TargetUser};

const PEOPLE: usize = 100_000;
const GROUPS: usize = 10_000;
const PER_PERSON: usize = 10;

fn vm_hwm_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rule(re: &str, rep: &str) -> Result<RewriteRule, regex::Error> {
    Ok(RewriteRule {
        regex: Regex::new(re)?,
        replacement: rep.into(),
    })
}

fn group_of(i: usize, k: usize) -> usize {
    (i + k * (GROUPS / PER_PERSON)) % GROUPS
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let idp_groups: Vec<GroupRef> = (0..GROUPS)
        .map(|g| GroupRef {
            id: format!("gid{g}"),
            email: format!("team{g}@example.com"),
            name: format!("Team {g}"),
        })
        .collect();
    let people: Vec<PersonWithGroups> = (0..PEOPLE)
        .map(|i| PersonWithGroups {
            person: Person {
                id: format!("{}", 100_000_000 + i),
                primary_email: format!("user{i}@example.com"),
                aliases: vec![],
                given_name: format!("Given{i}"),
                family_name: "Family".into(),
                full_name: String::new(),
                suspended: i % 100 == 0,
                archived: false,
                org_unit_path: "/".into(),
                is_admin: false,
            },
            groups: (0..PER_PERSON)
                .map(|k| idp_groups[group_of(i, k)].clone())
                .collect(),
        })
        .collect();
    // The target: every other person already has an account, linked, with 9 of their
    // 10 groups plus one stale membership; every group exists but the last 100.
    let mut actual = ActualState::default();
    let mut links = BTreeMap::new();
    for g in 0..GROUPS - 100 {
        actual.insert_group(&format!("team{g}"));
    }
    for i in (0..PEOPLE).step_by(2) {
        let name = format!("user{i}");
        actual.insert_user(TargetUser {
            username: name.clone(),
            key: Some(format!("JIRAUSER{i}")),
            email: Some(format!("user{i}@example.com")),
            display_name: if i % 10 == 0 {
                "Old Name".into()
            } else {
                format!("Given{i} Family")
            },
            active: true,
        });
        for k in 0..PER_PERSON - 1 {
            let g = group_of(i, k);
            if g < GROUPS - 100 {
                actual.insert_member(&format!("team{g}"), &name);
            }
        }
        actual.insert_member(&format!("team{}", (i * 7919) % (GROUPS - 100)), &name);
        links.insert(
            ExternalId {
                source: "google".into(),
                id: format!("{}", 100_000_000 + i),
            },
            LinkedAccount {
                username: name,
                key: Some(format!("JIRAUSER{i}")),
                pending: false,
            },
        );
    }
    let setup = t0.elapsed();
    let rss_setup = vm_hwm_kb();

    let provisioning = ProvisioningSettings {
        username: UsernameRule {
            rule: rule("(.*)@.*", "$1")?,
            lowercase: true,
        },
        display_name: "{given_name} {family_name}".into(),
        create_users: true,
        update_users: true,
        link_existing: LinkExisting::Email,
        protected_users: vec![UserPattern::Exact("admin".into())],
        login: LoginProvisioning {
            enabled: true,
            refresh_after: Duration::from_secs(900),
            on_failure: OnFailure::Deny,
            timeout: Duration::from_secs(10),
        },
    };
    let groups = GroupsSettings {
        mode: GroupsMode::OnTheFly,
        default_new_users: vec!["jira-software-users".into()],
        default_all_users: vec![],
        keep_existing: false,
        filter: Some(Regex::new("^team")?),
        create_missing: true,
        name: Some(rule(r"^(.*)@example\.com$", "$1")?),
        map: vec![],
    };
    let t1 = Instant::now();
    let mapper = Mapper::new("google", &provisioning, &groups)?;
    let (desired, skipped) = mapper.map_all(&people);
    let scope = mapper.managed_scope(&idp_groups);
    // As the sync job does: the source snapshot is not needed once mapped.
    drop(people);
    let mapping = t1.elapsed();
    let policy = Policy {
        create_users: true,
        update_users: true,
        link_existing: LinkExisting::Email,
        deprovision: Deprovision::Deactivate,
        keep_existing: false,
        create_missing_groups: true,
        capabilities: Capabilities {
            can_deactivate: true,
            can_rename: true,
            can_update_email: true,
            can_update_display_name: true,
            can_create_groups: true,
            email_lookup_scans: false,
            max_page_size: 1000,
        },
        protected: provisioning.protected_users.clone(),
        complete_read: true,
        population: Population::Everyone,
        source: None,
    };
    let t2 = Instant::now();
    let plan = plan_for(PlanInput {
        target: "jira",
        desired: &desired,
        skipped: &skipped,
        actual: &actual,
        links: &links,
        scope: &scope,
        policy: &policy,
    });
    let planning = t2.elapsed();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for op in &plan.operations {
        *kinds.entry(op.kind()).or_default() += 1;
    }
    println!(
        "people {PEOPLE}, idp groups {GROUPS}, memberships {}",
        PEOPLE * PER_PERSON
    );
    println!(
        "setup (synthetic input)   {:>8.0} ms",
        setup.as_secs_f64() * 1e3
    );
    println!(
        "mapping + managed scope   {:>8.0} ms",
        mapping.as_secs_f64() * 1e3
    );
    println!(
        "planning                  {:>8.0} ms",
        planning.as_secs_f64() * 1e3
    );
    println!(
        "mapping + planning        {:>8.0} ms",
        (mapping + planning).as_secs_f64() * 1e3
    );
    println!("operations {} {:?}", plan.operations.len(), kinds);
    println!("denied {}, notes {}", plan.denied.len(), plan.notes.len());
    if let (Some(a), Some(b)) = (rss_setup, vm_hwm_kb()) {
        println!(
            "peak RSS after setup {} MB, at end {} MB",
            a / 1024,
            b / 1024
        );
    }
    Ok(())
}
