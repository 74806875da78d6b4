//! SCIM filters (RFC 7644 §3.4.2.2) and attribute paths: a pure parser into
//! [`Filter`] and an evaluator over a resource's JSON. Operators `eq ne co sw ew gt
//! ge lt le pr`, `and`/`or`/`not`, parentheses and value paths (`emails[type eq
//! "work"]`); attribute names and keywords in any letter case. No I/O, no storage.

use serde_json::{Map, Value};

use super::schema;

/// An attribute path: `[urn:]name[.sub]`. `name` is empty when the path is a bare
/// extension URN (the whole extension object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// Extension schema URN; `None` for the core schema (a core URN prefix is dropped).
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Parses `userName`, `name.givenName`, `members.$ref`,
    /// `urn:ietf:params:scim:schemas:core:2.0:User:userName`, an extension attribute
    /// `urn:...:enterprise:2.0:User:manager.value`, or the bare extension URN.
    pub fn parse(text: &str) -> Result<AttrPath, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an attribute path is empty".into());
        }
        if schema::is_enterprise(text) {
            return Ok(AttrPath {
                urn: Some(super::wire::ENTERPRISE.to_string()),
                name: String::new(),
                sub: None,
            });
        }
        let (urn, rest) = match text.rfind(':') {
            Some(i) => (Some(&text[..i]), &text[i + 1..]),
            None => (None, text),
        };
        let urn = match urn {
            Some(u) if schema::core_urn(u) => None,
            Some(u) if schema::is_enterprise(u) => Some(super::wire::ENTERPRISE.to_string()),
            Some(u) => return Err(format!("unknown schema URN {u:?} in path {text:?}")),
            None => None,
        };
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        };
        if !ok(name) || sub.is_some_and(|s| !ok(s)) {
            return Err(format!("{text:?} is not an attribute path"));
        }
        Ok(AttrPath {
            urn,
            name: name.to_string(),
            sub: sub.map(str::to_string),
        })
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Value,
    },
    Present(AttrPath),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches `filter`
    /// (whose paths name sub-attributes).
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LBracket,
    RBracket,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | '[' | ']' => {
                chars.next();
                out.push(match c {
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    '[' => Tok::LBracket,
                    _ => Tok::RBracket,
                });
            }
            '"' => {
                // A JSON string literal: find its end honouring backslash escapes.
                let mut end = None;
                let mut escaped = false;
                for (j, d) in s[i + 1..].char_indices() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == '"' {
                        end = Some(i + 1 + j);
                        break;
                    }
                }
                let end = end.ok_or("a string literal is not closed")?;
                let lit: String = serde_json::from_str(&s[i..=end])
                    .map_err(|e| format!("bad string literal: {e}"))?;
                out.push(Tok::Str(lit));
                while chars.peek().is_some_and(|&(k, _)| k <= end) {
                    chars.next();
                }
            }
            _ => {
                let start = i;
                let mut end = s.len();
                while let Some(&(k, d)) = chars.peek() {
                    if d.is_whitespace() || matches!(d, '(' | ')' | '[' | ']' | '"') {
                        end = k;
                        break;
                    }
                    chars.next();
                }
                out.push(Tok::Word(s[start..end].to_string()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.not()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, String> {
        if self.keyword("not") && self.toks.get(self.pos + 1) == Some(&Tok::Open) {
            self.pos += 1;
            return Ok(Filter::Not(Box::new(self.primary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Filter, String> {
        match self.next() {
            Some(Tok::Open) => {
                let f = self.or()?;
                match self.next() {
                    Some(Tok::Close) => Ok(f),
                    _ => Err("a '(' is not closed".into()),
                }
            }
            Some(Tok::Word(w)) => {
                let path = AttrPath::parse(&w)?;
                if self.peek() == Some(&Tok::LBracket) {
                    self.pos += 1;
                    let inner = self.or()?;
                    return match self.next() {
                        Some(Tok::RBracket) => Ok(Filter::ValuePath {
                            path,
                            filter: Box::new(inner),
                        }),
                        _ => Err("a '[' is not closed".into()),
                    };
                }
                let op = match self.next() {
                    Some(Tok::Word(op)) => op,
                    _ => return Err(format!("an operator is missing after {w:?}")),
                };
                if op.eq_ignore_ascii_case("pr") {
                    return Ok(Filter::Present(path));
                }
                let op = CompareOp::parse(&op).ok_or_else(|| format!("unknown operator {op:?}"))?;
                let value = match self.next() {
                    Some(Tok::Str(s)) => Value::String(s),
                    Some(Tok::Word(v)) => match v.to_ascii_lowercase().as_str() {
                        "true" => Value::Bool(true),
                        "false" => Value::Bool(false),
                        "null" => Value::Null,
                        _ => serde_json::from_str::<serde_json::Number>(&v)
                            .map(Value::Number)
                            .map_err(|_| format!("{v:?} is not a value (quote strings)"))?,
                    },
                    _ => return Err(format!("a value is missing after {w} {op:?}")),
                };
                Ok(Filter::Compare { path, op, value })
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("the filter ends too early".into()),
        }
    }
}

/// Parses a filter expression.
pub fn parse(text: &str) -> Result<Filter, String> {
    let mut p = Parser {
        toks: tokenize(text)?,
        pos: 0,
    };
    let f = p.or()?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?} after the filter", p.toks[p.pos]));
    }
    Ok(f)
}

/// Looks up `key` in an object in any letter case.
pub fn get_ci<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// The values an attribute path reaches in a resource (multi-valued attributes are
/// flattened; a multi-valued complex attribute without a sub-attribute yields its
/// elements' `value`).
pub fn values_at<'a>(res: &'a Map<String, Value>, path: &AttrPath) -> Vec<&'a Value> {
    let container = match &path.urn {
        Some(u) => match get_ci(res, u) {
            Some(Value::Object(o)) => o,
            _ => return Vec::new(),
        },
        None => res,
    };
    if path.name.is_empty() {
        return Vec::new();
    }
    let Some(v) = get_ci(container, &path.name) else {
        return Vec::new();
    };
    let pick = |v: &'a Value| -> Option<&'a Value> {
        match (&path.sub, v) {
            (Some(s), Value::Object(o)) => get_ci(o, s),
            (Some(_), _) => None,
            (None, Value::Object(o)) => get_ci(o, "value"),
            (None, other) => Some(other),
        }
    };
    match v {
        Value::Array(items) => items.iter().filter_map(pick).collect(),
        Value::Object(_) if path.sub.is_none() => vec![v],
        other => pick(other).into_iter().collect(),
    }
}

/// Whether comparisons on (urn, name, sub) are case-exact.
pub type CaseExact<'a> = &'a dyn Fn(Option<&str>, &str, Option<&str>) -> bool;

fn fold(s: &str, exact: bool) -> String {
    if exact {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

fn compare(have: &Value, op: CompareOp, want: &Value, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ord = match (have, want) {
        (Value::String(a), Value::String(b)) => {
            let (a, b) = (fold(a, exact), fold(b, exact));
            match op {
                CompareOp::Co => return a.contains(&b),
                CompareOp::Sw => return a.starts_with(&b),
                CompareOp::Ew => return a.ends_with(&b),
                _ => a.cmp(&b),
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            match a
                .as_f64()
                .zip(b.as_f64())
                .and_then(|(a, b)| a.partial_cmp(&b))
            {
                Some(o) => o,
                None => return false,
            }
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            CompareOp::Eq | CompareOp::Ne => a.cmp(b),
            _ => return false,
        },
        _ => return false,
    };
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

impl Filter {
    /// Every top-level attribute path the filter names (value paths by their attribute).
    pub fn paths(&self) -> Vec<&AttrPath> {
        match self {
            Filter::Compare { path, .. } | Filter::Present(path) => vec![path],
            Filter::ValuePath { path, .. } => vec![path],
            Filter::And(a, b) | Filter::Or(a, b) => {
                let mut v = a.paths();
                v.extend(b.paths());
                v
            }
            Filter::Not(f) => f.paths(),
        }
    }

    /// Whether the resource (or, inside a value path, one element) matches.
    pub fn matches(&self, res: &Map<String, Value>, case_exact: CaseExact<'_>) -> bool {
        self.eval(res, None, case_exact)
    }

    fn eval(&self, res: &Map<String, Value>, parent: Option<&AttrPath>, ce: CaseExact<'_>) -> bool {
        let exact = |p: &AttrPath| match parent {
            Some(par) => ce(par.urn.as_deref(), &par.name, Some(&p.name)),
            None => ce(p.urn.as_deref(), &p.name, p.sub.as_deref()),
        };
        match self {
            Filter::And(a, b) => a.eval(res, parent, ce) && b.eval(res, parent, ce),
            Filter::Or(a, b) => a.eval(res, parent, ce) || b.eval(res, parent, ce),
            Filter::Not(f) => !f.eval(res, parent, ce),
            Filter::Present(p) => values_at(res, p).iter().any(|v| !schema::unassigned(v)),
            Filter::Compare { path, op, value } => {
                let have = values_at(res, path);
                if value.is_null() {
                    let present = have.iter().any(|v| !schema::unassigned(v));
                    return match op {
                        CompareOp::Eq => !present,
                        CompareOp::Ne => present,
                        _ => false,
                    };
                }
                let ex = exact(path);
                if *op == CompareOp::Ne {
                    return !have.iter().any(|h| compare(h, CompareOp::Eq, value, ex));
                }
                have.iter().any(|h| compare(h, *op, value, ex))
            }
            Filter::ValuePath { path, filter } => {
                let elements: Vec<&Map<String, Value>> = {
                    let container = match &path.urn {
                        Some(u) => match get_ci(res, u) {
                            Some(Value::Object(o)) => Some(o),
                            _ => None,
                        },
                        None => Some(res),
                    };
                    match container.and_then(|c| get_ci(c, &path.name)) {
                        Some(Value::Array(items)) => {
                            items.iter().filter_map(Value::as_object).collect()
                        }
                        Some(Value::Object(o)) => vec![o],
                        _ => Vec::new(),
                    }
                };
                elements.into_iter().any(|e| filter.eval(e, Some(path), ce))
            }
        }
    }
}
