//! Mapping: one source person (+ their IdP groups) -> the account usher wants in a
//! target (username, names, e-mail, groups with the reasons for each), or a skip
//! with a reason. Pure: reads only the validated settings; never touches a target.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{
    GroupsMode, GroupsSettings, IdpSettings, ProvisioningSettings, RewriteRule, UsernameRule,
};
use crate::identity::{ExternalId, GroupRef, PersonWithGroups};

/// A target group name, shared between the many accounts that get the same group.
pub type GroupName = Arc<str>;

/// Longest username or group name usher will write (Atlassian column limit).
pub const MAX_NAME_LEN: usize = 255;

/// Which configuration rule gave a person a group; shown in the admin console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// `[groups] default_new_users`: given once, when usher creates the account.
    DefaultNewUsers,
    /// `[groups] default_all_users`: every provisioned account.
    DefaultAllUsers,
    /// A `[[groups.map]]` entry.
    Map,
    /// `[groups] mode = "on-the-fly"` (IdP group name through `filter` and `name`).
    OnTheFly,
}

/// Why an account has one target group: the rule and, for mapped groups, the IdP group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Reason {
    pub rule: Rule,
    /// The IdP group email that triggered the rule (`None` for defaults).
    pub idp_group: Option<Arc<str>>,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = match self.rule {
            Rule::DefaultNewUsers => "groups.default_new_users",
            Rule::DefaultAllUsers => "groups.default_all_users",
            Rule::Map => "groups.map",
            Rule::OnTheFly => "groups on-the-fly",
        };
        match &self.idp_group {
            Some(g) => write!(f, "{rule} (member of {g})"),
            None => f.write_str(rule),
        }
    }
}

/// The account usher wants for one person in a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredAccount {
    /// Who this is in the source (the linking key).
    pub external_id: ExternalId,
    /// The source's verified primary e-mail (lower-case).
    pub person_email: String,
    /// The person's other verified addresses (Google aliases, often a former primary
    /// after a rename), lower-case: an account still carrying one is theirs.
    pub aliases: Vec<String>,
    /// Login name from `[provisioning] username`.
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub given_name: String,
    pub family_name: String,
    /// `false` when the person is suspended or archived in the source.
    pub active: bool,
    /// Target groups the account should have in every sync, each with a reason, sorted
    /// by group; a group given by several rules appears once per reason. (A flat list:
    /// 100,000 people x 10 groups must fit comfortably in memory.)
    pub group_reasons: Vec<(GroupName, Reason)>,
    /// Groups given only when usher creates the account (`default_new_users`).
    pub groups_on_create: Vec<GroupName>,
}

impl DesiredAccount {
    /// Whether `email` (any case) is the primary address or one of the aliases.
    pub fn owns_email(&self, email: &str) -> bool {
        self.person_email.eq_ignore_ascii_case(email)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(email))
    }

    /// The target groups the account should have, each once, sorted.
    pub fn groups(&self) -> impl Iterator<Item = &GroupName> + '_ {
        let mut last: Option<&GroupName> = None;
        self.group_reasons.iter().filter_map(move |(g, _)| {
            if last == Some(g) {
                return None;
            }
            last = Some(g);
            Some(g)
        })
    }

    /// Whether the account should have `group` (exact name).
    pub fn has_group(&self, group: &str) -> bool {
        self.group_reasons
            .binary_search_by(|(g, _)| (**g).cmp(group))
            .is_ok()
    }

    /// Why the account has `group` (empty when it should not).
    pub fn reasons(&self, group: &str) -> Vec<&Reason> {
        self.group_reasons
            .iter()
            .filter(|(g, _)| &**g == group)
            .map(|(_, r)| r)
            .collect()
    }
}

/// Why a person gets no account: shown in plans and reports; nothing is half-created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub external_id: ExternalId,
    pub email: String,
    pub reason: String,
}

/// A `display_name` template that names an unknown placeholder or is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provisioning.display_name {template:?}: {problem}; use {{given_name}}, {{family_name}}, {{name}}, {{email}} or {{username}}")]
pub struct TemplateError {
    pub template: String,
    pub problem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Given,
    Family,
    Full,
    Email,
    Username,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// The values a display-name template can use.
#[derive(Debug, Clone, Copy)]
pub struct NameFields<'a> {
    pub given_name: &'a str,
    pub family_name: &'a str,
    /// The source's full name (`{name}` or `{full_name}`).
    pub full_name: &'a str,
    pub email: &'a str,
    pub username: &'a str,
}

/// A parsed `display_name` template such as `{given_name} {family_name}`; the
/// placeholders are those `config` accepts (`given_name`, `family_name`, `name`,
/// `email`, `username`) plus `full_name` as another spelling of `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayTemplate {
    pieces: Vec<Piece>,
}

impl DisplayTemplate {
    /// Parses the template; unknown placeholders and unbalanced braces are errors.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let err = |problem: String| TemplateError {
            template: template.to_string(),
            problem,
        };
        let mut pieces = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match (rest.find('{'), rest.find('}')) {
                (Some(_), None) => return Err(err("a '{' is never closed".into())),
                (Some(open), Some(close)) if close > open => {
                    if open > 0 {
                        pieces.push(Piece::Text(rest[..open].to_string()));
                    }
                    let after = &rest[open + 1..];
                    let end = close - open - 1;
                    let field = match &after[..end] {
                        "given_name" => Field::Given,
                        "family_name" => Field::Family,
                        "name" | "full_name" => Field::Full,
                        "email" => Field::Email,
                        "username" => Field::Username,
                        other => return Err(err(format!("unknown placeholder {{{other}}}"))),
                    };
                    pieces.push(Piece::Field(field));
                    rest = &after[end + 1..];
                }
                (_, Some(_)) => return Err(err("a '}' has no matching '{'".into())),
                (None, None) => {
                    pieces.push(Piece::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        Ok(DisplayTemplate { pieces })
    }

    /// Fills the template; collapses the doubled spaces left by empty fields.
    pub fn render(&self, f: &NameFields<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Field(Field::Given) => out.push_str(f.given_name),
                Piece::Field(Field::Family) => out.push_str(f.family_name),
                Piece::Field(Field::Full) => out.push_str(f.full_name),
                Piece::Field(Field::Email) => out.push_str(f.email),
                Piece::Field(Field::Username) => out.push_str(f.username),
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Checks a login name: non-empty, no whitespace or control characters,
/// at most [`MAX_NAME_LEN`] characters. Returns the problem in words.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains the character {c:?}"));
    }
    Ok(())
}

/// Checks a target group name: non-empty, no control characters, no leading or
/// trailing spaces, at most [`MAX_NAME_LEN`] characters (inner spaces are fine).
pub fn validate_group_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("it is empty".into());
    }
    if name.trim() != name {
        return Err("it starts or ends with a space".into());
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("it contains the character {c:?}"));
    }
    Ok(())
}

/// Applies a rewrite rule like `sed 's/regex/replacement/'`: the first match is
/// replaced (with `$1`-style groups expanded) and the rest of the input kept, so
/// `(.*)@.*` -> `$1` and `@example\.com$` -> `` both turn `ann@example.com` into
/// `ann`. `None` when the regex does not match at all (the person or group is skipped).
fn rewrite(rule: &RewriteRule, input: &str) -> Option<String> {
    let caps = rule.regex.captures(input)?;
    let whole = caps.get(0)?;
    let mut out = String::with_capacity(input.len());
    out.push_str(&input[..whole.start()]);
    caps.expand(&rule.replacement, &mut out);
    out.push_str(&input[whole.end()..]);
    Some(out)
}

/// IdP group e-mail -> (shared e-mail, target groups with their rule).
type GroupCache = HashMap<String, (Arc<str>, Vec<(GroupName, Rule)>)>;

/// The compiled mapping rules for one source (with its per-IdP overrides applied).
#[derive(Debug, Clone)]
pub struct Mapper {
    source: String,
    username: UsernameRule,
    display: DisplayTemplate,
    groups: GroupsSettings,
    /// IdP group email -> `[[groups.map]]` targets.
    map: HashMap<String, Vec<GroupName>>,
    defaults_all: Vec<GroupName>,
    defaults_new: Vec<GroupName>,
}

impl Mapper {
    /// Rules from `[provisioning]` and `[groups]` for people of `source`.
    pub fn new(
        source: &str,
        provisioning: &ProvisioningSettings,
        groups: &GroupsSettings,
    ) -> Result<Self, TemplateError> {
        Self::build(
            source,
            &provisioning.username,
            &provisioning.display_name,
            groups,
        )
    }

    /// Like [`Mapper::new`] but honouring the `[[idp]]`'s own `username`/`groups`.
    pub fn for_idp(
        idp: &IdpSettings,
        provisioning: &ProvisioningSettings,
        groups: &GroupsSettings,
    ) -> Result<Self, TemplateError> {
        Self::build(
            &idp.name,
            idp.username.as_ref().unwrap_or(&provisioning.username),
            &provisioning.display_name,
            idp.groups.as_ref().unwrap_or(groups),
        )
    }

    fn build(
        source: &str,
        username: &UsernameRule,
        display: &str,
        groups: &GroupsSettings,
    ) -> Result<Self, TemplateError> {
        let mut map: HashMap<String, Vec<GroupName>> = HashMap::new();
        for m in &groups.map {
            let e = map.entry(m.idp.to_ascii_lowercase()).or_default();
            e.extend(m.target.iter().map(|t| GroupName::from(t.as_str())));
        }
        let names = |v: &[String]| v.iter().map(|g| GroupName::from(g.as_str())).collect();
        Ok(Mapper {
            source: source.to_string(),
            username: username.clone(),
            display: DisplayTemplate::parse(display)?,
            groups: groups.clone(),
            map,
            defaults_all: names(&groups.default_all_users),
            defaults_new: names(&groups.default_new_users),
        })
    }

    /// The source name put into every [`ExternalId`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `[[groups.map]]` rules: IdP group e-mail (lower-case) -> target groups.
    pub fn map_rules(&self) -> impl Iterator<Item = (&str, &[GroupName])> + '_ {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The `[groups]` settings in force for this source (per-IdP override applied).
    pub fn groups_settings(&self) -> &GroupsSettings {
        &self.groups
    }

    /// `[groups] default_all_users` and `default_new_users`, in that order.
    pub fn defaults(&self) -> (&[GroupName], &[GroupName]) {
        (&self.defaults_all, &self.defaults_new)
    }

    /// `[groups] keep_existing`.
    pub fn keep_existing(&self) -> bool {
        self.groups.keep_existing
    }

    /// `[groups] create_missing`.
    pub fn create_missing(&self) -> bool {
        self.groups.create_missing
    }

    /// The login name for a primary e-mail, or why there is none.
    pub fn username_for(&self, email: &str) -> Result<String, String> {
        let mut name = rewrite(&self.username.rule, email).ok_or_else(|| {
            format!(
                "provisioning.username regex {:?} does not match {email:?}",
                self.username.rule.regex.as_str()
            )
        })?;
        if self.username.lowercase {
            name = name.to_lowercase();
        }
        validate_name(&name)
            .map_err(|p| format!("the username {name:?} derived from {email:?} is invalid: {p}"))?;
        Ok(name)
    }

    /// Target groups one IdP group leads to, with the rule that did it. Manual
    /// `[[groups.map]]` entries win; otherwise on-the-fly mode keeps groups whose
    /// e-mail or display name matches `filter`, then names the target group with the
    /// `name` rule applied to the group e-mail (no rule: the display name unchanged,
    /// or the e-mail's local part when there is none). A name the rule does not match
    /// or that is not a valid group name skips the group.
    pub fn targets_of(&self, group: &GroupRef) -> Vec<(GroupName, Rule)> {
        let email = group.email.to_ascii_lowercase();
        if let Some(t) = self.map.get(&email) {
            return t.iter().map(|g| (g.clone(), Rule::Map)).collect();
        }
        if self.groups.mode != GroupsMode::OnTheFly {
            return Vec::new();
        }
        if let Some(f) = &self.groups.filter {
            if !f.is_match(&email) && !f.is_match(&group.name) {
                return Vec::new();
            }
        }
        let name = match &self.groups.name {
            Some(rule) => rewrite(rule, &email),
            None if !group.name.trim().is_empty() => Some(group.name.trim().to_string()),
            None => email.split('@').next().map(str::to_string),
        };
        match name {
            Some(n) if validate_group_name(&n).is_ok() => {
                vec![(GroupName::from(n.as_str()), Rule::OnTheFly)]
            }
            _ => Vec::new(),
        }
    }

    /// Every target group usher manages given the IdP groups that exist: mapping
    /// targets, both default lists and on-the-fly names. Nothing else is ever touched.
    pub fn managed_scope<'a>(
        &self,
        idp_groups: impl IntoIterator<Item = &'a GroupRef>,
    ) -> ManagedScope {
        let mut scope = ManagedScope::default();
        for g in self.map.values().flatten().chain(&self.defaults_all) {
            scope.groups.insert(g.clone());
        }
        for g in &self.defaults_new {
            scope.groups.insert(g.clone());
            scope.create_only.insert(g.clone());
        }
        for g in idp_groups {
            for (t, _) in self.targets_of(g) {
                scope.groups.insert(t);
            }
        }
        // A group that is also given by a lasting rule may be removed again.
        for g in self.map.values().flatten().chain(&self.defaults_all) {
            scope.create_only.remove(g);
        }
        scope
    }

    /// Maps one person. Uses a per-call cache of IdP group -> targets; for many people
    /// call [`Mapper::map_all`], which shares the cache.
    pub fn map(&self, p: &PersonWithGroups) -> Result<DesiredAccount, Skip> {
        self.map_cached(p, &mut HashMap::new())
    }

    /// Maps everyone; accounts and skips both come back sorted by external id.
    pub fn map_all<'a>(
        &self,
        people: impl IntoIterator<Item = &'a PersonWithGroups>,
    ) -> (Vec<DesiredAccount>, Vec<Skip>) {
        let mut cache = HashMap::new();
        let (mut ok, mut skipped) = (Vec::new(), Vec::new());
        for p in people {
            match self.map_cached(p, &mut cache) {
                Ok(d) => ok.push(d),
                Err(s) => skipped.push(s),
            }
        }
        ok.sort_by(|a, b| a.external_id.cmp(&b.external_id));
        skipped.sort_by(|a, b| a.external_id.cmp(&b.external_id));
        (ok, skipped)
    }

    fn map_cached(
        &self,
        pg: &PersonWithGroups,
        cache: &mut GroupCache,
    ) -> Result<DesiredAccount, Skip> {
        let p = &pg.person;
        let external_id = ExternalId {
            source: self.source.clone(),
            id: p.id.clone(),
        };
        let email = p.primary_email.to_ascii_lowercase();
        let skip = |reason: String| Skip {
            external_id: external_id.clone(),
            email: email.clone(),
            reason,
        };
        if p.id.is_empty() {
            return Err(skip(
                "the source gave no immutable id for this person".into(),
            ));
        }
        if !email.contains('@') || validate_name(&email).is_err() {
            return Err(skip(format!(
                "the primary e-mail {email:?} is not a usable address"
            )));
        }
        let username = self.username_for(&email).map_err(skip)?;
        let display_name = self.display.render(&NameFields {
            given_name: &p.given_name,
            family_name: &p.family_name,
            full_name: &p.full_name,
            email: &email,
            username: &username,
        });
        let display_name = if display_name.is_empty() {
            username.clone()
        } else {
            display_name
        };
        let mut groups: Vec<(GroupName, Reason)> = Vec::with_capacity(pg.groups.len() + 1);
        for g in &self.defaults_all {
            groups.push((
                g.clone(),
                Reason {
                    rule: Rule::DefaultAllUsers,
                    idp_group: None,
                },
            ));
        }
        for g in &pg.groups {
            let key: std::borrow::Cow<'_, str> = if g.email.bytes().any(|b| b.is_ascii_uppercase())
            {
                g.email.to_ascii_lowercase().into()
            } else {
                g.email.as_str().into()
            };
            if !cache.contains_key(&*key) {
                let v = (Arc::from(&*key), self.targets_of(g));
                cache.insert(key.to_string(), v);
            }
            let Some((idp, targets)) = cache.get(&*key) else {
                continue;
            };
            for (t, rule) in targets {
                groups.push((
                    t.clone(),
                    Reason {
                        rule: *rule,
                        idp_group: Some(idp.clone()),
                    },
                ));
            }
        }
        groups.sort();
        groups.dedup();
        groups.shrink_to_fit();
        let groups_on_create = self
            .defaults_new
            .iter()
            .filter(|g| groups.binary_search_by(|(h, _)| h.cmp(g)).is_err())
            .cloned()
            .collect();
        Ok(DesiredAccount {
            external_id,
            person_email: email.clone(),
            aliases: p.aliases.iter().map(|a| a.to_ascii_lowercase()).collect(),
            username,
            email,
            display_name,
            given_name: p.given_name.clone(),
            family_name: p.family_name.clone(),
            active: p.is_active(),
            group_reasons: groups,
            groups_on_create,
        })
    }
}

/// The groups usher manages in a target. Memberships in any other group are never
/// read into a plan, added or removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManagedScope {
    /// Every managed group (usher may create it and add members).
    pub groups: BTreeSet<GroupName>,
    /// Groups given only at account creation (`default_new_users`): usher adds but
    /// never removes them for active people, since nothing lasting justifies them.
    pub create_only: BTreeSet<GroupName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_template_fields_and_errors() {
        let f = |given, family, full| NameFields {
            given_name: given,
            family_name: family,
            full_name: full,
            email: "a@x",
            username: "ada",
        };
        let t = DisplayTemplate::parse("{given_name} {family_name}").unwrap();
        assert_eq!(t.render(&f("Ada", "Lovelace", "")), "Ada Lovelace");
        assert_eq!(t.render(&f("", "Lovelace", "")), "Lovelace");
        let t = DisplayTemplate::parse("{full_name} <{email}>").unwrap();
        assert_eq!(t.render(&f("", "", "Ada L")), "Ada L <a@x>");
        let t = DisplayTemplate::parse("{name} ({username})").unwrap();
        assert_eq!(t.render(&f("", "", "Ada L")), "Ada L (ada)");
        for bad in ["{nickname}", "{given_name", "given}", "}{"] {
            let e = DisplayTemplate::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("provisioning.display_name"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn rewrite_replaces_the_match_and_keeps_the_rest() {
        let r = |re: &str, rep: &str| RewriteRule {
            regex: regex::Regex::new(re).unwrap(),
            replacement: rep.into(),
        };
        assert_eq!(
            rewrite(&r("(.*)@.*", "$1"), "ann@example.com").as_deref(),
            Some("ann")
        );
        assert_eq!(
            rewrite(&r(r"@example\.com$", ""), "ann@example.com").as_deref(),
            Some("ann")
        );
        assert_eq!(
            rewrite(&r(r"^(\w)\w*\.(\w+)@.*$", "$1$2"), "ann.lee@x.org").as_deref(),
            Some("alee")
        );
        assert_eq!(rewrite(&r(r"@example\.com$", ""), "ann@other.org"), None);
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("alice.smith").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("a\u{7}b").is_err());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(validate_group_name("Engineering Team").is_ok());
        assert!(validate_group_name(" eng").is_err());
        assert!(validate_group_name("").is_err());
        assert!(validate_group_name("a\nb").is_err());
    }
}
