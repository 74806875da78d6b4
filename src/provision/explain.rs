//! Why a person has (or lacks) each target group: runs the [`Mapper`] for one person
//! and, for every group the rules could give, says which rule and which IdP group
//! gave it, or why not; for every IdP group of the person, what it leads to or why it
//! is ignored. Pure (the admin console's person lookup renders it); reads no target.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::GroupsMode;
use crate::identity::{GroupRef, PersonWithGroups};

use super::mapping::{Mapper, Reason, Rule};

/// Whether the person's account gets one target group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// Given in every sync and at login.
    Has,
    /// Given once, when usher creates the account (`default_new_users`); never
    /// re-added or removed afterwards.
    OnCreate,
    /// Not given.
    Lacks,
}

/// One target group and the verdict for this person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupVerdict {
    /// Target group name.
    pub group: String,
    pub grant: Grant,
    /// Every rule that gives it (with the IdP group), when granted.
    pub reasons: Vec<Reason>,
    /// Human explanation: which rule and IdP group, or why not.
    pub why: String,
}

/// One of the person's IdP groups and what the rules make of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdpGroupVerdict {
    /// Group e-mail (lower-case) and display name, as the source has them.
    pub email: String,
    pub name: String,
    /// Target groups it leads to, with the rule.
    pub leads_to: Vec<(String, Rule)>,
    /// Why it leads to nothing (`None` when it leads somewhere).
    pub ignored_because: Option<String>,
}

/// The whole explanation for one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `source:id` of the person.
    pub person: String,
    pub email: String,
    /// The account name the username rule gives.
    pub username: Option<String>,
    /// Why the person gets no account at all (the mapping skipped them).
    pub skipped: Option<String>,
    /// False when suspended or archived in the source (the account is deprovisioned).
    pub active: bool,
    /// Every group any rule could give this person, sorted by name.
    pub groups: Vec<GroupVerdict>,
    /// The person's IdP groups, sorted by e-mail.
    pub idp_groups: Vec<IdpGroupVerdict>,
}

/// Why one IdP group leads to no target group under `mapper`'s rules.
fn why_ignored(mapper: &Mapper, g: &GroupRef) -> String {
    let settings = mapper.groups_settings();
    if settings.mode != GroupsMode::OnTheFly {
        return "no [[groups.map]] entry names it (groups mode = \"manual\")".into();
    }
    let email = g.email.to_ascii_lowercase();
    if let Some(f) = &settings.filter {
        if !f.is_match(&email) && !f.is_match(&g.name) {
            return format!(
                "neither its e-mail nor its name matches [groups] filter {:?}",
                f.as_str()
            );
        }
    }
    if let Some(rule) = &settings.name {
        if !rule.regex.is_match(&email) {
            return format!(
                "[groups] name regex {:?} does not match {email:?}",
                rule.regex.as_str()
            );
        }
    }
    "the target group name it would get is not a valid group name".into()
}

/// Explains `person` under `mapper`'s rules.
pub fn explain(mapper: &Mapper, person: &PersonWithGroups) -> Explanation {
    let p = &person.person;
    let mut idp_groups: Vec<IdpGroupVerdict> = person
        .groups
        .iter()
        .map(|g| {
            let leads_to: Vec<(String, Rule)> = mapper
                .targets_of(g)
                .into_iter()
                .map(|(t, r)| (t.to_string(), r))
                .collect();
            let ignored_because = leads_to.is_empty().then(|| why_ignored(mapper, g));
            IdpGroupVerdict {
                email: g.email.to_ascii_lowercase(),
                name: g.name.clone(),
                leads_to,
                ignored_because,
            }
        })
        .collect();
    idp_groups.sort_by(|a, b| a.email.cmp(&b.email));

    // Every group a rule could give: manual map targets (with who they are for), both
    // default lists, and whatever the person's own IdP groups lead to.
    let mut map_for: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (idp, targets) in mapper.map_rules() {
        for t in targets {
            map_for
                .entry(t.to_string())
                .or_default()
                .insert(idp.to_string());
        }
    }
    let (defaults_all, defaults_new) = mapper.defaults();
    let mut candidates: BTreeSet<String> = map_for.keys().cloned().collect();
    candidates.extend(defaults_all.iter().map(|g| g.to_string()));
    candidates.extend(defaults_new.iter().map(|g| g.to_string()));
    for v in &idp_groups {
        candidates.extend(v.leads_to.iter().map(|(t, _)| t.clone()));
    }

    let external = format!("{}:{}", mapper.source(), p.id);
    let desired = match mapper.map(person) {
        Ok(d) => d,
        Err(skip) => {
            let groups = candidates
                .into_iter()
                .map(|group| GroupVerdict {
                    group,
                    grant: Grant::Lacks,
                    reasons: Vec::new(),
                    why: format!("no account at all: {}", skip.reason),
                })
                .collect();
            return Explanation {
                person: external,
                email: p.primary_email.clone(),
                username: None,
                skipped: Some(skip.reason),
                active: p.is_active(),
                groups,
                idp_groups,
            };
        }
    };

    let groups = candidates
        .into_iter()
        .map(|group| {
            let reasons: Vec<Reason> = desired.reasons(&group).into_iter().cloned().collect();
            if !reasons.is_empty() {
                let why = reasons
                    .iter()
                    .map(Reason::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return GroupVerdict {
                    group,
                    grant: Grant::Has,
                    reasons,
                    why,
                };
            }
            if desired.groups_on_create.iter().any(|g| **g == *group) {
                return GroupVerdict {
                    group,
                    grant: Grant::OnCreate,
                    reasons: vec![Reason {
                        rule: Rule::DefaultNewUsers,
                        idp_group: None,
                    }],
                    why: "groups.default_new_users: given once when usher creates the account"
                        .into(),
                };
            }
            let why = match map_for.get(&group) {
                Some(idps) => format!(
                    "groups.map gives it to members of {}; {} is in none of them",
                    idps.iter().cloned().collect::<Vec<_>>().join(", "),
                    p.primary_email
                ),
                None => "no rule gives it to this person".into(),
            };
            GroupVerdict {
                group,
                grant: Grant::Lacks,
                reasons: Vec::new(),
                why,
            }
        })
        .collect();
    Explanation {
        person: external,
        email: desired.person_email.clone(),
        username: Some(desired.username.clone()),
        skipped: None,
        active: desired.active,
        groups,
        idp_groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupMap;
    use crate::identity::Person;
    use crate::provision::plan_tests::{groups, prov, rule};

    fn person(email: &str, groups: &[(&str, &str)]) -> PersonWithGroups {
        PersonWithGroups {
            person: Person {
                id: "42".into(),
                primary_email: email.into(),
                aliases: vec![],
                given_name: "Ann".into(),
                family_name: "Lee".into(),
                full_name: "Ann Lee".into(),
                suspended: false,
                archived: false,
                org_unit_path: "/".into(),
                is_admin: false,
            },
            groups: groups
                .iter()
                .map(|(e, n)| GroupRef {
                    id: e.to_string(),
                    email: e.to_string(),
                    name: n.to_string(),
                })
                .collect(),
        }
    }

    fn verdict<'a>(e: &'a Explanation, group: &str) -> &'a GroupVerdict {
        e.groups
            .iter()
            .find(|g| g.group == group)
            .unwrap_or_else(|| panic!("{group} not explained: {e:#?}"))
    }

    fn settings() -> crate::config::GroupsSettings {
        let mut g = groups();
        g.filter = Some(regex::Regex::new("^eng").unwrap());
        g.default_all_users = vec!["staff".into()];
        g.map = vec![
            GroupMap {
                idp: "Eng@example.com".into(),
                target: vec!["jira-developers".into()],
            },
            GroupMap {
                idp: "it-admins@example.com".into(),
                target: vec!["jira-administrators".into()],
            },
        ];
        g
    }

    #[test]
    fn each_group_says_which_rule_and_which_idp_group() {
        let m = Mapper::new("google", &prov(), &settings()).unwrap();
        let e = explain(
            &m,
            &person(
                "ann@example.com",
                &[
                    ("eng@example.com", "Eng"),
                    ("eng-backend@example.com", "Backend"),
                    ("sales@example.com", "Sales"),
                ],
            ),
        );
        assert_eq!(e.username.as_deref(), Some("ann"));
        assert_eq!(e.person, "google:42");
        // Table: group -> (grant, words the explanation must contain).
        let table: &[(&str, Grant, &str)] = &[
            (
                "jira-developers",
                Grant::Has,
                "groups.map (member of eng@example.com)",
            ),
            (
                "eng-backend",
                Grant::Has,
                "groups on-the-fly (member of eng-backend@example.com)",
            ),
            ("staff", Grant::Has, "groups.default_all_users"),
            (
                "jira-software-users",
                Grant::OnCreate,
                "given once when usher creates the account",
            ),
            (
                "jira-administrators",
                Grant::Lacks,
                "members of it-admins@example.com; ann@example.com is in none",
            ),
        ];
        for (group, grant, words) in table {
            let v = verdict(&e, group);
            assert_eq!(v.grant, *grant, "{group}: {v:?}");
            assert!(
                v.why.contains(words),
                "{group}: {:?} lacks {words:?}",
                v.why
            );
        }
        // Only groups some rule could give are listed.
        assert_eq!(e.groups.len(), table.len(), "{:#?}", e.groups);
        // IdP groups: mapped, on-the-fly, filtered out.
        let sales = e
            .idp_groups
            .iter()
            .find(|g| g.email == "sales@example.com")
            .unwrap();
        assert!(sales.leads_to.is_empty());
        assert!(
            sales.ignored_because.as_deref().unwrap().contains("filter"),
            "{sales:?}"
        );
        let eng = e
            .idp_groups
            .iter()
            .find(|g| g.email == "eng@example.com")
            .unwrap();
        assert_eq!(eng.leads_to, vec![("jira-developers".into(), Rule::Map)]);
        assert_eq!(eng.ignored_because, None);
    }

    #[test]
    fn ignored_idp_groups_name_the_rule_that_drops_them() {
        type Case<'a> = (Option<&'a str>, Option<(&'a str, &'a str)>, bool, &'a str);
        let table: &[Case] = &[
            // (filter, name rule, on-the-fly?, expected words)
            (None, None, false, "groups mode = \"manual\""),
            (Some("^eng"), None, true, "[groups] filter \"^eng\""),
            (
                None,
                Some((r"^(.*)@corp\.example$", "$1")),
                true,
                "name regex",
            ),
            (
                None,
                Some((r"^(.*)@example\.com$", " ")),
                true,
                "not a valid",
            ),
        ];
        for (filter, name, otf, words) in table {
            let mut g = groups();
            g.filter = filter.map(|f| regex::Regex::new(f).unwrap());
            g.name = name.map(|(re, rep)| rule(re, rep));
            g.mode = if *otf {
                GroupsMode::OnTheFly
            } else {
                GroupsMode::Manual
            };
            let m = Mapper::new("google", &prov(), &g).unwrap();
            let e = explain(
                &m,
                &person("ann@example.com", &[("ops@example.com", "Ops")]),
            );
            let ops = &e.idp_groups[0];
            assert!(ops.leads_to.is_empty(), "{words}: {ops:?}");
            let why = ops.ignored_because.as_deref().unwrap();
            assert!(why.contains(words), "{why:?} lacks {words:?}");
        }
    }

    #[test]
    fn a_skipped_person_lacks_everything_with_the_reason() {
        let mut p = prov();
        p.username.rule = rule(r"^(.*)@corp\.example$", "$1");
        let m = Mapper::new("google", &p, &settings()).unwrap();
        let mut who = person("ann@example.com", &[("eng@example.com", "Eng")]);
        who.person.suspended = true;
        let e = explain(&m, &who);
        assert_eq!(e.username, None);
        assert!(!e.active);
        let why = e.skipped.as_deref().unwrap();
        assert!(why.contains("does not match"), "{why}");
        assert!(e.groups.iter().all(|g| g.grant == Grant::Lacks));
        assert!(verdict(&e, "jira-developers").why.contains("no account"));
    }
}
