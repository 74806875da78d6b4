//! The two little languages of the Directory API the emulator understands: the
//! `users.list` `query` subset (google.md §2.4: `email`, `givenName`,
//! `familyName`, `name`, `isAdmin`, `isDelegatedAdmin`, `isSuspended`,
//! `isArchived`, `orgUnitPath`, bare words; `=`, `:`, `:PREFIX*`) and the
//! `fields` partial-response mask (`a,b(c,d(e)),f/g`). Pure parsing and matching.

use std::collections::BTreeMap;

use super::seed::SeedUser;

/// One parsed clause of a users query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    /// Empty for a bare word.
    field: String,
    /// `=` or `:` (bare words behave like `:`).
    exact: bool,
    /// Lower-case value without quotes; a trailing `*` kept for prefix matches.
    value: String,
}

/// A parsed `users.list` query: clauses ANDed together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserQuery {
    clauses: Vec<Clause>,
}

const STRING_FIELDS: [&str; 4] = ["email", "givenname", "familyname", "name"];
const BOOL_FIELDS: [&str; 4] = ["isadmin", "isdelegatedadmin", "issuspended", "isarchived"];

impl UserQuery {
    /// Parses `text`; `Err` names the clause Google would reject as "Invalid Input".
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut clauses = Vec::new();
        for token in split_clauses(text)? {
            let op = token.find(['=', ':']);
            let clause = match op {
                None => Clause {
                    field: String::new(),
                    exact: false,
                    value: unquote(&token).to_ascii_lowercase(),
                },
                Some(i) => {
                    let field = token[..i].trim().to_ascii_lowercase();
                    let exact = token.as_bytes()[i] == b'=';
                    let value = unquote(token[i + 1..].trim()).to_ascii_lowercase();
                    let known = STRING_FIELDS.contains(&field.as_str())
                        || BOOL_FIELDS.contains(&field.as_str())
                        || field == "orgunitpath";
                    if !known {
                        return Err(format!("unsupported query field in {token:?}"));
                    }
                    if BOOL_FIELDS.contains(&field.as_str())
                        && (!exact || !matches!(value.as_str(), "true" | "false"))
                    {
                        return Err(format!("{token:?} needs =true or =false"));
                    }
                    if field == "orgunitpath" && !exact {
                        return Err(format!("{token:?}: orgUnitPath only supports ="));
                    }
                    Clause {
                        field,
                        exact,
                        value,
                    }
                }
            };
            if clause.value.is_empty() {
                return Err(format!("empty value in {token:?}"));
            }
            clauses.push(clause);
        }
        Ok(UserQuery { clauses })
    }

    /// Whether `user` satisfies every clause.
    pub fn matches(&self, user: &SeedUser) -> bool {
        self.clauses.iter().all(|c| clause_matches(c, user))
    }
}

fn clause_matches(c: &Clause, u: &SeedUser) -> bool {
    let b = |flag: bool| c.value == if flag { "true" } else { "false" };
    match c.field.as_str() {
        "" => [&u.given_name, &u.family_name, &u.primary_email]
            .iter()
            .any(|f| text_matches(f, &c.value, false)),
        "email" => std::iter::once(&u.primary_email)
            .chain(&u.aliases)
            .any(|f| text_matches(f, &c.value, c.exact)),
        "givenname" => text_matches(&u.given_name, &c.value, c.exact),
        "familyname" => text_matches(&u.family_name, &c.value, c.exact),
        "name" => text_matches(
            &format!("{} {}", u.given_name, u.family_name),
            &c.value,
            c.exact,
        ),
        "isadmin" => b(u.is_admin),
        "isdelegatedadmin" => b(false),
        "issuspended" => b(u.suspended),
        "isarchived" => b(u.archived),
        // "matches all org unit chains under the target"
        "orgunitpath" => {
            let want = c.value.trim_end_matches('/');
            let have = u.org_unit_path.to_ascii_lowercase();
            want.is_empty() || have == want || have.starts_with(&format!("{want}/"))
        }
        _ => false,
    }
}

/// `=` exact (case-insensitive); `:` a whole word (or the whole value); `:X*` a prefix.
fn text_matches(field: &str, value: &str, exact: bool) -> bool {
    let field = field.to_ascii_lowercase();
    if exact {
        return field == value;
    }
    let words = || field.split(|c: char| !c.is_alphanumeric());
    match value.strip_suffix('*') {
        Some(prefix) => field.starts_with(prefix) || words().any(|w| w.starts_with(prefix)),
        None => field == value || words().any(|w| w == value),
    }
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// Splits on spaces outside quotes.
fn split_clauses(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in text.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => {
                quote = Some(ch);
                cur.push(ch);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(ch);
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(ch),
        }
    }
    if quote.is_some() {
        return Err("unbalanced quote in query".into());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A `fields` partial-response selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    /// Everything below this point.
    All,
    /// Only these keys (each with its own sub-mask).
    Some(BTreeMap<String, Mask>),
}

static ALL: Mask = Mask::All;

impl Mask {
    /// Parses a `fields` value; an absent parameter means [`Mask::All`].
    pub fn parse(text: &str) -> Result<Mask, String> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(Mask::All);
        }
        let mut map: BTreeMap<String, Mask> = BTreeMap::new();
        for item in split_top(text)? {
            let (name, sub) = if let Some(open) = item.find('(') {
                let inner = item[open + 1..]
                    .strip_suffix(')')
                    .ok_or_else(|| format!("unbalanced parentheses in {item:?}"))?;
                (item[..open].trim().to_string(), Mask::parse(inner)?)
            } else if let Some((head, rest)) = item.split_once('/') {
                (head.trim().to_string(), Mask::parse(rest)?)
            } else {
                (item.trim().to_string(), Mask::All)
            };
            if name.is_empty() {
                return Err(format!("empty field name in {item:?}"));
            }
            let merged = match map.remove(&name) {
                Some(old) => old.union(sub),
                None => sub,
            };
            map.insert(name, merged);
        }
        Ok(Mask::Some(map))
    }

    fn union(self, other: Mask) -> Mask {
        match (self, other) {
            (Mask::Some(mut a), Mask::Some(b)) => {
                for (k, v) in b {
                    let merged = match a.remove(&k) {
                        Some(old) => old.union(v),
                        None => v,
                    };
                    a.insert(k, merged);
                }
                Mask::Some(a)
            }
            _ => Mask::All,
        }
    }

    /// The sub-mask for `key`, or `None` if `key` is not selected.
    pub fn wants(&self, key: &str) -> Option<&Mask> {
        match self {
            Mask::All => Some(&ALL),
            Mask::Some(map) => map.get(key),
        }
    }

    /// Drops unselected keys from `value` (objects; arrays element-wise).
    pub fn apply(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match (self, value) {
            (Mask::All, v) => v,
            (m, Value::Array(items)) => {
                Value::Array(items.into_iter().map(|v| m.apply(v)).collect())
            }
            (Mask::Some(map), Value::Object(obj)) => Value::Object(
                obj.into_iter()
                    .filter_map(|(k, v)| map.get(&k).map(|sub| (k, sub.apply(v))))
                    .collect(),
            ),
            (_, v) => v,
        }
    }
}

/// Splits on commas outside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, ch) in text.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced parentheses in fields".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses in fields".into());
    }
    out.push(&text[start..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(email: &str, given: &str, family: &str, ou: &str) -> SeedUser {
        SeedUser {
            id: "1".into(),
            primary_email: email.into(),
            aliases: vec!["alias@example.com".into()],
            given_name: given.into(),
            family_name: family.into(),
            org_unit_path: ou.into(),
            ..SeedUser::default()
        }
    }

    #[test]
    fn query_subset_matches_like_google() {
        let jane = user("jane.smith@example.com", "Jane", "Smith", "/Eng/Backend");
        let q = |s: &str| UserQuery::parse(s).unwrap().matches(&jane);
        assert!(q(""));
        assert!(q("email:jane*"));
        assert!(q("email=JANE.SMITH@example.com"));
        assert!(q("email=alias@example.com"), "aliases count for email");
        assert!(!q("email=jane@example.com"));
        assert!(q("givenName:Jane familyName=smith"));
        assert!(!q("givenName:Jane familyName=jones"));
        assert!(q("name:'Jane Smith'"));
        assert!(q("smith"));
        assert!(q("orgUnitPath='/Eng'"));
        assert!(q("orgUnitPath=/Eng/Backend"));
        assert!(!q("orgUnitPath='/Sales'"));
        assert!(q("isSuspended=false isArchived=false isAdmin=false"));
        assert!(!q("isSuspended=true"));
    }

    #[test]
    fn bad_queries_are_rejected() {
        for bad in [
            "bogus=1",
            "isSuspended:true",
            "isAdmin=maybe",
            "email:'x",
            "email=",
        ] {
            assert!(UserQuery::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_mask_parses_nested_and_slash_forms() {
        let m = Mask::parse("nextPageToken,users(id,name(givenName)),kind/x").unwrap();
        let v = json!({"kind":{"x":1,"y":2},"etag":"e","nextPageToken":"t",
            "users":[{"id":"1","primaryEmail":"a","name":{"givenName":"A","familyName":"B"}}]});
        assert_eq!(
            m.apply(v),
            json!({"kind":{"x":1},"nextPageToken":"t","users":[{"id":"1","name":{"givenName":"A"}}]})
        );
        assert!(m.wants("users").unwrap().wants("primaryEmail").is_none());
        assert_eq!(Mask::parse("").unwrap(), Mask::All);
        assert!(Mask::parse("users(id").is_err());
        assert!(Mask::parse("a,,b").is_err());
    }
}
