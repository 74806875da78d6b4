//! Table tests (the miniOrange-style settings) and property tests for mapping +
//! planning: apply the plan to the model, plan again, nothing left to do.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use crate::config::{
    Deprovision, GroupMap, GroupsMode, GroupsSettings, LinkExisting, LoginProvisioning, OnFailure,
    ProvisioningSettings, RewriteRule, UserPattern, UsernameRule,
};
use crate::identity::{ExternalId, GroupRef, Person, PersonWithGroups};
use crate::target::{Capabilities, TargetUser};

use super::links::LinkedAccount;
use super::mapping::{Mapper, Rule};
use super::plan::{plan_for, Operation, Phase, Plan, PlanInput, Policy, Population, Removal};
use super::state::{apply_to_state, ActualState};

pub(crate) fn rule(re: &str, rep: &str) -> RewriteRule {
    RewriteRule {
        regex: Regex::new(re).unwrap(),
        replacement: rep.into(),
    }
}

pub(crate) fn prov() -> ProvisioningSettings {
    ProvisioningSettings {
        username: UsernameRule {
            rule: rule("(.*)@.*", "$1"),
            lowercase: true,
        },
        display_name: "{given_name} {family_name}".into(),
        create_users: true,
        update_users: true,
        link_existing: LinkExisting::Email,
        protected_users: vec![
            UserPattern::Exact("admin".into()),
            UserPattern::Regex(Regex::new("^svc-").unwrap()),
        ],
        login: LoginProvisioning {
            enabled: true,
            refresh_after: Duration::from_secs(900),
            on_failure: OnFailure::Deny,
            timeout: Duration::from_secs(10),
        },
    }
}

pub(crate) fn groups() -> GroupsSettings {
    GroupsSettings {
        mode: GroupsMode::OnTheFly,
        default_new_users: vec!["jira-software-users".into()],
        default_all_users: vec![],
        keep_existing: true,
        filter: None,
        create_missing: true,
        name: Some(rule(r"^(.*)@example\.com$", "$1")),
        map: vec![],
    }
}

pub(crate) fn caps() -> Capabilities {
    Capabilities {
        can_deactivate: true,
        can_rename: true,
        can_update_email: true,
        can_update_display_name: true,
        can_create_groups: true,
        email_lookup_scans: false,
        max_page_size: 1000,
    }
}

pub(crate) fn policy(p: &ProvisioningSettings, g: &GroupsSettings) -> Policy {
    Policy {
        create_users: p.create_users,
        update_users: p.update_users,
        link_existing: p.link_existing,
        deprovision: Deprovision::Deactivate,
        keep_existing: g.keep_existing,
        create_missing_groups: g.create_missing,
        capabilities: caps(),
        protected: p.protected_users.clone(),
        complete_read: true,
        population: Population::Everyone,
        source: None,
    }
}

pub(crate) fn person(id: &str, email: &str, groups: &[&str]) -> PersonWithGroups {
    let local = email.split('@').next().unwrap_or_default();
    PersonWithGroups {
        person: Person {
            id: id.into(),
            primary_email: email.into(),
            aliases: vec![],
            given_name: local.to_uppercase(),
            family_name: "Test".into(),
            full_name: String::new(),
            suspended: false,
            archived: false,
            org_unit_path: "/".into(),
            is_admin: false,
        },
        groups: groups
            .iter()
            .map(|g| GroupRef {
                id: format!("gid-{g}"),
                email: g.to_string(),
                name: g.to_string(),
            })
            .collect(),
    }
}

pub(crate) fn user(name: &str, email: &str, active: bool) -> TargetUser {
    TargetUser {
        username: name.into(),
        key: Some(format!("KEY-{name}")),
        email: Some(email.into()),
        display_name: format!("{} Test", name.to_uppercase()),
        active,
    }
}

pub(crate) fn xid(id: &str) -> ExternalId {
    ExternalId {
        source: "google".into(),
        id: id.into(),
    }
}

/// Everything one planning run needs, owned.
pub(crate) struct World {
    pub(crate) prov: ProvisioningSettings,
    pub(crate) groups: GroupsSettings,
    pub(crate) people: Vec<PersonWithGroups>,
    pub(crate) actual: ActualState,
    pub(crate) links: BTreeMap<ExternalId, LinkedAccount>,
    pub(crate) tweak: fn(&mut Policy),
}

impl World {
    pub(crate) fn new(people: Vec<PersonWithGroups>) -> Self {
        World {
            prov: prov(),
            groups: groups(),
            people,
            actual: ActualState::default(),
            links: BTreeMap::new(),
            tweak: |_| {},
        }
    }

    fn plan(&self) -> Plan {
        let mapper = Mapper::new("google", &self.prov, &self.groups).unwrap();
        let (desired, skipped) = mapper.map_all(&self.people);
        let scope = mapper.managed_scope(self.people.iter().flat_map(|p| &p.groups));
        let mut pol = policy(&self.prov, &self.groups);
        (self.tweak)(&mut pol);
        plan_for(PlanInput {
            target: "jira",
            desired: &desired,
            skipped: &skipped,
            actual: &self.actual,
            links: &self.links,
            scope: &scope,
            policy: &pol,
        })
    }

    /// Plans, applies to the model, and checks a second plan is empty.
    fn converge(&mut self) -> Plan {
        let plan = self.plan();
        apply_to_state(&mut self.actual, &mut self.links, &plan);
        let again = self.plan();
        assert!(
            again.is_empty(),
            "second plan not empty: {:#?}",
            again.operations
        );
        plan
    }
}

fn kinds(plan: &Plan) -> Vec<String> {
    plan.operations
        .iter()
        .map(|o| format!("{}:{}", o.kind(), describe(o)))
        .collect()
}

fn describe(o: &Operation) -> String {
    match o {
        Operation::CreateGroup { group } => group.clone(),
        Operation::AddMember { group, username }
        | Operation::RemoveMember {
            group, username, ..
        } => {
            format!("{group}/{username}")
        }
        other => other.username().unwrap_or_default().to_string(),
    }
}

#[test]
fn new_person_gets_regex_username_defaults_and_on_the_fly_groups_in_order() {
    let mut w = World::new(vec![person(
        "1",
        "Alice.Smith@example.com",
        &["eng@example.com"],
    )]);
    w.actual.insert_group("jira-software-users");
    let plan = w.converge();
    assert_eq!(
        kinds(&plan),
        vec![
            "create-group:eng",
            "create-user:alice.smith",
            "add-member:eng/alice.smith",
            "add-member:jira-software-users/alice.smith",
        ]
    );
    let phases: Vec<Phase> = plan.operations.iter().map(Operation::phase).collect();
    assert!(phases.windows(2).all(|p| p[0] <= p[1]));
    assert_eq!(plan.accounts[&xid("1")], "alice.smith");
    assert_eq!(plan.summary()["add-member"], 2);
    assert_eq!(
        w.actual.user("alice.smith").unwrap().display_name,
        "ALICE.SMITH Test"
    );
}

#[test]
fn default_new_users_only_at_creation_default_all_users_always() {
    let mut w = World::new(vec![
        person("1", "new@example.com", &[]),
        person("2", "old@example.com", &[]),
    ]);
    w.groups.default_all_users = vec!["everyone".into()];
    for g in ["jira-software-users", "everyone"] {
        w.actual.insert_group(g);
    }
    w.actual.insert_user(user("old", "old@example.com", true));
    let plan = w.converge();
    let k = kinds(&plan);
    assert!(k.contains(&"add-member:jira-software-users/new".to_string()));
    assert!(!k.contains(&"add-member:jira-software-users/old".to_string()));
    assert!(k.contains(&"add-member:everyone/old".to_string()));
    assert!(k.contains(&"add-member:everyone/new".to_string()));
    assert!(k.contains(&"link:old".to_string()));
}

#[test]
fn manual_mapping_one_to_many_and_unmapped_groups_ignored() {
    let mut w = World::new(vec![person(
        "1",
        "bob@example.com",
        &["engineering@example.com", "random@example.com"],
    )]);
    w.groups.mode = GroupsMode::Manual;
    w.groups.default_new_users = vec![];
    w.groups.map = vec![GroupMap {
        idp: "Engineering@example.com".into(),
        target: vec!["jira-developers".into(), "confluence-users".into()],
    }];
    let plan = w.converge();
    let k = kinds(&plan);
    assert!(k.contains(&"add-member:jira-developers/bob".to_string()));
    assert!(k.contains(&"add-member:confluence-users/bob".to_string()));
    assert!(!k.iter().any(|o| o.contains("random")));
    // Reasons name the rule and the IdP group.
    let mapper = Mapper::new("google", &w.prov, &w.groups).unwrap();
    let d = mapper.map(&w.people[0]).unwrap();
    let r = d.reasons("jira-developers");
    assert_eq!(r[0].rule, Rule::Map);
    assert_eq!(r[0].idp_group.as_deref(), Some("engineering@example.com"));
    assert!(r[0].to_string().contains("engineering@example.com"));
}

#[test]
fn on_the_fly_filter_and_name_rule() {
    let mut w = World::new(vec![person(
        "1",
        "carol@example.com",
        &[
            "eng-core@example.com",
            "sales@example.com",
            "eng-x@other.org",
        ],
    )]);
    w.groups.filter = Some(Regex::new("^eng-").unwrap());
    w.groups.default_new_users = vec![];
    let plan = w.converge();
    let k = kinds(&plan);
    assert_eq!(
        k,
        vec![
            "create-group:eng-core",
            "create-user:carol",
            "add-member:eng-core/carol"
        ]
    );
}

#[test]
fn on_the_fly_without_name_rule_uses_the_display_name_and_filter_sees_both() {
    let mut g = groups();
    g.name = None;
    g.filter = Some(Regex::new("^eng").unwrap());
    let mapper = Mapper::new("google", &prov(), &g).unwrap();
    let gr = |email: &str, name: &str| GroupRef {
        id: "x".into(),
        email: email.into(),
        name: name.into(),
    };
    let names = |r: Vec<(super::mapping::GroupName, Rule)>| -> Vec<String> {
        r.into_iter().map(|(n, _)| n.to_string()).collect()
    };
    assert_eq!(
        names(mapper.targets_of(&gr("eng@example.com", "Engineering Team"))),
        vec!["Engineering Team"]
    );
    assert_eq!(
        names(mapper.targets_of(&gr("x@example.com", "eng-leads"))),
        vec!["eng-leads"]
    );
    assert_eq!(
        names(mapper.targets_of(&gr("eng2@example.com", " "))),
        vec!["eng2"]
    );
    assert!(mapper
        .targets_of(&gr("sales@example.com", "Sales"))
        .is_empty());
}

#[test]
fn keep_existing_true_never_removes_false_removes_only_managed() {
    let setup = |keep: bool| {
        let mut w = World::new(vec![person("1", "dan@example.com", &["eng@example.com"])]);
        w.groups.keep_existing = keep;
        w.groups.default_new_users = vec![];
        w.actual.insert_user(user("dan", "dan@example.com", true));
        w.links.insert(
            xid("1"),
            LinkedAccount {
                username: "dan".into(),
                key: Some("KEY-dan".into()),
                pending: false,
            },
        );
        // "ops" is managed (some IdP group maps to it), "local-admins" is not.
        w.people
            .push(person("2", "erin@example.com", &["ops@example.com"]));
        w.actual.insert_member("ops", "dan");
        w.actual.insert_member("local-admins", "dan");
        w.actual.insert_member("eng", "dan");
        w
    };
    let mut w = setup(true);
    let plan = w.converge();
    assert!(!plan
        .operations
        .iter()
        .any(|o| matches!(o, Operation::RemoveMember { .. })));
    let mut w = setup(false);
    let plan = w.converge();
    let removes: Vec<String> = kinds(&plan)
        .into_iter()
        .filter(|k| k.starts_with("remove"))
        .collect();
    assert_eq!(removes, vec!["remove-member:ops/dan"]);
    assert!(w.actual.is_member("local-admins", "dan"));
}

#[test]
fn create_users_and_update_users_off() {
    let mut w = World::new(vec![
        person("1", "fay@example.com", &[]),
        person("2", "gus@example.com", &[]),
    ]);
    w.prov.create_users = false;
    w.prov.update_users = false;
    w.actual
        .insert_user(user("gus", "old-gus@example.com", true));
    w.prov.link_existing = LinkExisting::Username;
    let plan = w.converge();
    assert_eq!(kinds(&plan), vec!["link:gus"]);
    assert!(plan
        .notes
        .iter()
        .any(|n| n.message.contains("create_users = false")));
}

#[test]
fn missing_group_without_create_missing_is_noted_not_created() {
    let mut w = World::new(vec![person("1", "hal@example.com", &["eng@example.com"])]);
    w.groups.create_missing = false;
    w.groups.default_new_users = vec![];
    let plan = w.converge();
    assert_eq!(kinds(&plan), vec!["create-user:hal"]);
    assert!(plan.notes.iter().any(|n| n.subject == "eng"));
}

#[test]
fn renamed_person_is_renamed_in_place_never_duplicated() {
    let mut w = World::new(vec![person("1", "ivy.new@example.com", &[])]);
    w.actual.insert_user(user("ivy", "ivy@example.com", true));
    w.links.insert(
        xid("1"),
        LinkedAccount {
            username: "ivy".into(),
            key: Some("KEY-ivy".into()),
            pending: false,
        },
    );
    let plan = w.converge();
    assert_eq!(kinds(&plan), vec!["update-user:ivy"]);
    assert!(w.actual.user("ivy.new").is_some() && w.actual.user("ivy").is_none());
    assert_eq!(w.links[&xid("1")].username, "ivy.new");
    assert_eq!(plan.accounts[&xid("1")], "ivy.new");
}

#[test]
fn link_existing_policies_on_first_meeting() {
    let run = |policy: LinkExisting, email: &str| {
        let mut w = World::new(vec![person("1", "jo@example.com", &[])]);
        w.prov.link_existing = policy;
        w.actual.insert_user(user("jo", email, true));
        w.plan()
    };
    let p = run(LinkExisting::Email, "jo@example.com");
    assert_eq!(kinds(&p)[0], "link:jo");
    let p = run(LinkExisting::Email, "someone-else@example.com");
    assert!(p.operations.is_empty() && p.denied.len() == 1, "{p:?}");
    let p = run(LinkExisting::Username, "someone-else@example.com");
    assert_eq!(kinds(&p)[0], "link:jo");
    let p = run(LinkExisting::Never, "jo@example.com");
    assert!(p.operations.is_empty() && p.denied[0].message.contains("never"));
}

#[test]
fn account_linked_to_another_person_is_never_handed_over() {
    let mut w = World::new(vec![person("2", "kim@example.com", &[])]);
    w.actual.insert_user(user("kim", "kim@example.com", true));
    w.links.insert(
        xid("1"),
        LinkedAccount {
            username: "kim".into(),
            key: Some("KEY-kim".into()),
            pending: false,
        },
    );
    w.tweak = |p| p.population = Population::Listed;
    let p = w.plan();
    assert!(p.operations.is_empty());
    assert!(p.denied[0].message.contains("another person"));
}

#[test]
fn suspended_gone_and_returning_people() {
    let mut w = World::new(vec![
        person("1", "lee@example.com", &[]),
        person("3", "max@example.com", &[]),
    ]);
    w.people[0].person.suspended = true;
    w.groups.default_new_users = vec![];
    w.actual.insert_user(user("lee", "lee@example.com", true));
    w.actual.insert_user(user("ned", "ned@example.com", true));
    w.actual.insert_user(user("max", "max@example.com", false));
    for (id, n) in [("1", "lee"), ("2", "ned"), ("3", "max")] {
        w.links.insert(
            xid(id),
            LinkedAccount {
                username: n.into(),
                key: Some(format!("KEY-{n}")),
                pending: false,
            },
        );
    }
    let plan = w.converge();
    assert_eq!(
        kinds(&plan),
        vec!["reactivate:max", "deactivate:lee", "deactivate:ned"]
    );
    assert!(!w.actual.user("lee").unwrap().active && w.actual.user("max").unwrap().active);
}

#[test]
fn deprovision_none_incomplete_read_and_login_population_change_nothing() {
    for tweak in [
        (|p: &mut Policy| p.deprovision = Deprovision::None) as fn(&mut Policy),
        |p| p.complete_read = false,
        |p| p.population = Population::Listed,
    ] {
        let mut w = World::new(vec![]);
        w.actual.insert_user(user("ned", "ned@example.com", true));
        w.actual.insert_member("eng", "ned");
        w.links.insert(
            xid("2"),
            LinkedAccount {
                username: "ned".into(),
                key: None,
                pending: false,
            },
        );
        w.tweak = tweak;
        assert!(w.plan().is_empty());
    }
}

#[test]
fn remove_groups_strips_only_managed_groups_and_bitbucket_falls_back_to_it() {
    for tweak in [
        (|p: &mut Policy| p.deprovision = Deprovision::RemoveGroups) as fn(&mut Policy),
        |p| p.capabilities.can_deactivate = false,
    ] {
        let mut w = World::new(vec![person("9", "zed@example.com", &["eng@example.com"])]);
        w.actual.insert_user(user("ned", "ned@example.com", true));
        w.actual.insert_member("eng", "ned");
        w.actual.insert_member("local", "ned");
        w.actual.insert_group("jira-software-users");
        w.links.insert(
            xid("2"),
            LinkedAccount {
                username: "ned".into(),
                key: None,
                pending: false,
            },
        );
        w.tweak = tweak;
        let plan = w.converge();
        let removes: Vec<&Operation> = plan
            .operations
            .iter()
            .filter(|o| matches!(o, Operation::RemoveMember { .. }))
            .collect();
        assert_eq!(
            removes,
            vec![&Operation::RemoveMember {
                group: "eng".into(),
                username: "ned".into(),
                why: Removal::Deprovision
            }]
        );
        assert!(w.actual.user("ned").unwrap().active && w.actual.is_member("local", "ned"));
    }
}

#[test]
fn protected_users_are_never_in_a_plan() {
    let mut w = World::new(vec![
        person("1", "admin@example.com", &["eng@example.com"]),
        person("2", "svc-ci@example.com", &[]),
    ]);
    w.people[0].person.family_name = "Changed".into();
    w.actual
        .insert_user(user("admin", "admin@example.com", true));
    w.actual
        .insert_user(user("svc-ci", "svc-ci@example.com", true));
    w.links.insert(
        xid("9"),
        LinkedAccount {
            username: "svc-ci".into(),
            key: None,
            pending: false,
        },
    );
    let plan = w.plan();
    assert!(
        plan.operations.iter().all(|o| o.username().is_none()),
        "{:?}",
        plan.operations
    );
}

#[test]
fn two_people_mapping_to_one_username_are_both_denied() {
    let mut w = World::new(vec![
        person("1", "pat@example.com", &[]),
        person("2", "pat@example.org", &[]),
    ]);
    let plan = w.converge();
    assert!(plan.operations.is_empty());
    assert_eq!(plan.denied.len(), 2);
}

#[test]
fn invalid_username_is_skipped_and_never_deprovisioned() {
    let mut w = World::new(vec![person("1", "quinn@example.com", &[])]);
    w.prov.username.rule = rule("^([^@]*)@(.*)$", "$1 at $2");
    w.actual.insert_user(user("old", "old@example.com", true));
    w.links.insert(
        xid("1"),
        LinkedAccount {
            username: "old".into(),
            key: None,
            pending: false,
        },
    );
    let mapper = Mapper::new("google", &w.prov, &w.groups).unwrap();
    let (_, skipped) = mapper.map_all(&w.people);
    assert!(skipped[0].reason.contains("invalid"), "{skipped:?}");
    assert!(w.converge().is_empty());
}

#[test]
fn adopt_by_email_renames_the_existing_account() {
    let mut w = World::new(vec![person("1", "rita@example.com", &[])]);
    w.actual
        .insert_user(user("rita.old", "rita@example.com", false));
    w.groups.default_new_users = vec![];
    let plan = w.converge();
    assert_eq!(
        kinds(&plan),
        vec![
            "link:rita.old",
            "reactivate:rita.old",
            "update-user:rita.old"
        ]
    );
    assert!(w.actual.user("rita").unwrap().active);
    assert_eq!(w.links[&xid("1")].username, "rita");
}

#[test]
fn first_meeting_after_a_google_rename_adopts_the_account_with_the_old_address() {
    // Google keeps the former primary address as an alias.
    let mut w = World::new(vec![person("1", "sam.new@example.com", &[])]);
    w.people[0].person.aliases = vec!["sam@example.com".into()];
    w.groups.default_new_users = vec![];
    w.actual.insert_user(user("sam", "sam@example.com", true));
    let plan = w.converge();
    assert_eq!(kinds(&plan), vec!["link:sam", "update-user:sam"]);
    assert_eq!(w.actual.users.len(), 1, "no duplicate account");
    assert_eq!(
        w.actual.user("sam.new").unwrap().email.as_deref(),
        Some("sam.new@example.com")
    );
}

#[test]
fn hidden_target_email_is_not_rewritten_every_sync() {
    let mut w = World::new(vec![person("1", "tia@example.com", &[])]);
    w.prov.link_existing = LinkExisting::Username;
    w.groups.default_new_users = vec![];
    let mut u = user("tia", "ignored", true);
    u.email = None;
    u.display_name = "TIA Test".into();
    w.actual.insert_user(u);
    assert_eq!(kinds(&w.converge()), vec!["link:tia"]);
}

#[test]
fn one_account_is_never_given_to_two_people_even_with_a_damaged_link_store() {
    let mut w = World::new(vec![
        person("1", "uma@example.com", &[]),
        person("2", "val@example.com", &[]),
    ]);
    w.groups.default_new_users = vec![];
    w.actual
        .insert_user(user("shared", "shared@example.com", true));
    for id in ["1", "2"] {
        w.links.insert(
            xid(id),
            LinkedAccount {
                username: "shared".into(),
                key: None,
                pending: false,
            },
        );
    }
    let plan = w.plan();
    assert_eq!(kinds(&plan), vec!["update-user:shared"]);
    assert_eq!(plan.denied.len(), 1);
    assert_eq!(plan.denied[0].person, Some(xid("2")));
}

#[test]
fn a_directory_answering_almost_nobody_trips_the_safety_brake() {
    use crate::config::Limit;
    use crate::sync::safety::{check, LimitHit, Limits};
    // 40 linked people; the source now returns only 30 of them (10 "gone").
    let all: Vec<PersonWithGroups> = (0..40)
        .map(|i| {
            person(
                &format!("{i:02}"),
                &format!("p{i:02}@example.com"),
                &["eng@example.com"],
            )
        })
        .collect();
    let mut w = World::new(all.clone());
    w.groups.default_new_users = vec![];
    w.converge();
    assert_eq!(w.links.len(), 40);
    w.people.truncate(30);
    let plan = w.plan();
    let limits = Limits {
        max_deprovision: Limit::Percent(5.0),
        max_changes: 5000,
        max_group_removals: Limit::Percent(10.0),
    };
    let verdict = check(&plan, &limits);
    assert_eq!(
        verdict.hits,
        vec![LimitHit::Deprovision {
            count: 10,
            allowed: 2,
            base: 40
        }]
    );
    // remove-groups instead: the per-group brake trips as well.
    w.tweak = |p| p.deprovision = Deprovision::RemoveGroups;
    let verdict = check(&w.plan(), &limits);
    assert!(verdict.hits.iter().any(|h| matches!(h, LimitHit::GroupRemovals { group, count: 10, size: 40, .. } if group == "eng")), "{:?}", verdict.hits);
}

#[test]
fn a_full_sync_of_one_source_never_deprovisions_people_of_another_idp() {
    // ann came from Google, pat from a second provider ("okta": OIDC sign-in or SCIM).
    let mut w = World::new(vec![person("1", "ann@example.com", &[])]);
    w.actual.insert_user(user("ann", "ann@example.com", true));
    w.actual
        .insert_user(user("pat", "pat@partner.example", true));
    let okta = ExternalId {
        source: "okta".into(),
        id: "00u-pat".into(),
    };
    for (id, name) in [(xid("1"), "ann"), (okta.clone(), "pat")] {
        w.links.insert(
            id,
            LinkedAccount {
                username: name.into(),
                key: Some(format!("KEY-{name}")),
                pending: false,
            },
        );
    }
    // Told which source it read, the Google sync leaves pat alone...
    w.tweak = |p| p.source = Some("google".into());
    assert!(
        !kinds(&w.plan()).iter().any(|k| k.starts_with("deactivate")),
        "{:?}",
        kinds(&w.plan())
    );
    // ...while a person of that source who is gone is still deprovisioned.
    w.people.clear();
    assert_eq!(kinds(&w.plan()), vec!["deactivate:ann"]);
    // Without a source (single-IdP setups) every linked person counts, as before.
    w.tweak = |p| p.source = None;
    assert_eq!(kinds(&w.plan()), vec!["deactivate:ann", "deactivate:pat"]);
}
