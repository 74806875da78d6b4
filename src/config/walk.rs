//! The decoder's toolkit: walks the span-annotated TOML tree against the schema in
//! `raw.rs` (tables, arrays of tables, unknown keys with "did you mean") and records every
//! problem with its position instead of stopping. Scalar accessors live in `scalars.rs`,
//! references in `refs.rs`. Must not echo a secret or a referenced value in a message.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::problems::Problem;
use super::raw;
use super::Env;

/// A TOML value with its byte span.
pub(crate) type Node<'i> = Spanned<DeValue<'i>>;

/// Shared state of one decode: the text (for positions), the environment (for references)
/// and the problems found so far.
pub(crate) struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
    env: &'a dyn Env,
    problems: Vec<Problem>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(text: &'a str, origin: &'a str, env: &'a dyn Env) -> Self {
        Ctx {
            text,
            origin,
            env,
            problems: Vec::new(),
        }
    }

    /// Records a problem at `span`.
    pub(crate) fn report(
        &mut self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let p = Problem::at(self.origin, self.text, span, key, message, fix);
        self.problems.push(p);
    }

    /// 1-based line of byte offset `at` (for "first defined at line N" messages).
    pub(crate) fn line_of(&self, at: usize) -> usize {
        super::problems::line_column(self.text, at).0
    }

    /// Where references are resolved.
    pub(crate) fn env(&self) -> &'a dyn Env {
        self.env
    }

    pub(crate) fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// Result of reading one key: absent (use the default), present but wrong (already
/// reported), or a good value.
#[derive(Debug)]
pub(crate) enum Field<T> {
    Absent,
    Bad,
    Ok(T),
}

impl<T> Field<T> {
    /// The value, or `default` when absent; `None` when bad.
    pub(crate) fn or(self, default: T) -> Option<T> {
        match self {
            Field::Absent => Some(default),
            Field::Bad => None,
            Field::Ok(v) => Some(v),
        }
    }

    /// `Some(None)` when absent, `Some(Some(v))` when good, `None` when bad.
    pub(crate) fn opt(self) -> Option<Option<T>> {
        match self {
            Field::Absent => Some(None),
            Field::Bad => None,
            Field::Ok(v) => Some(Some(v)),
        }
    }

    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Bad => Field::Bad,
            Field::Ok(v) => Field::Ok(f(v)),
        }
    }

    /// Chains a validation that may turn a good value bad (having reported why).
    pub(crate) fn check<U>(self, f: impl FnOnce(T) -> Option<U>) -> Field<U> {
        match self {
            Field::Absent => Field::Absent,
            Field::Bad => Field::Bad,
            Field::Ok(v) => f(v).map_or(Field::Bad, Field::Ok),
        }
    }
}

impl<T> Field<Vec<T>> {
    /// Gathers a list's items, each already checked (`None` = reported as bad): all the
    /// values when every item was good, `Bad` otherwise. Callers check every item before
    /// this sees the result, so one bad entry never hides the problems of the next.
    pub(crate) fn all(items: impl IntoIterator<Item = Option<T>>) -> Self {
        let mut out = Vec::new();
        let mut bad = false;
        for item in items {
            match item {
                Some(v) => out.push(v),
                None => bad = true,
            }
        }
        if bad {
            Field::Bad
        } else {
            Field::Ok(out)
        }
    }
}

/// Where a string value came from; decides whether it may be quoted back in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Literal,
    Env(String),
    File(String),
}

/// A decoded string with its span and origin.
#[derive(Debug, Clone)]
pub(crate) struct Str {
    pub value: String,
    pub span: Range<usize>,
    pub source: Source,
}

impl Str {
    /// How a message refers to this value: quoted when literal, by reference otherwise
    /// (the expanded value may be sensitive).
    pub(crate) fn shown(&self) -> String {
        match &self.source {
            Source::Literal => format!("`{}`", self.value),
            Source::Env(name) => format!("the value of ${{{name}}}"),
            Source::File(path) => format!("the content of file:{path}"),
        }
    }
}

/// One table being decoded: its entries, where it starts, its display path
/// (`upstream[1]`) and its schema path (`upstream`).
pub(crate) struct Table<'t, 'i> {
    table: &'t DeTable<'i>,
    pub span: Range<usize>,
    pub path: String,
    shape: String,
    used: Vec<String>,
}

impl<'t, 'i> Table<'t, 'i> {
    /// The document root.
    pub(crate) fn root(table: &'t DeTable<'i>) -> Self {
        Table {
            table,
            span: 0..0,
            path: String::new(),
            shape: String::new(),
            used: Vec::new(),
        }
    }

    /// Display path of a key in this table.
    pub(crate) fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn shape_of(&self, key: &str) -> String {
        if self.shape.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.shape)
        }
    }

    /// The raw node of `key`, marking it as read.
    pub(crate) fn node(&mut self, key: &str) -> Option<&'t Node<'i>> {
        debug_assert!(
            raw::keys_of(&self.shape).contains(&key),
            "decoder reads `{key}` which raw.rs does not list under `{}`",
            self.shape
        );
        self.used.push(key.to_string());
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// Reports a missing required key at the table's header and returns `None`.
    pub(crate) fn missing<T>(&self, cx: &mut Ctx, key: &str, example: &str) -> Option<T> {
        let where_ = if self.path.is_empty() {
            "the file".to_string()
        } else {
            format!("[{}]", self.path)
        };
        cx.report(
            self.span.clone(),
            &self.key_path(key),
            format!("missing required key `{key}`"),
            format!("add `{key} = {example}` to {where_}"),
        );
        None
    }

    /// Reports a missing required section (`[server]`, `[[idp]]`) and returns `None`.
    pub(crate) fn missing_section<T>(&self, cx: &mut Ctx, key: &str, fix: &str) -> Option<T> {
        cx.report(
            self.span.clone(),
            &self.key_path(key),
            format!("missing required section `{key}`"),
            fix,
        );
        None
    }

    /// The value of a required key, reporting it as missing when absent.
    pub(crate) fn required<T>(
        &self,
        cx: &mut Ctx,
        key: &str,
        field: Field<T>,
        example: &str,
    ) -> Option<T> {
        match field {
            Field::Absent => self.missing(cx, key, example),
            Field::Bad => None,
            Field::Ok(v) => Some(v),
        }
    }

    /// A sub-table (`[a.b]` or inline `{ ... }`).
    pub(crate) fn table(&mut self, cx: &mut Ctx, key: &str) -> Field<Table<'t, 'i>> {
        let path = self.key_path(key);
        let shape = self.shape_of(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        match node.get_ref() {
            DeValue::Table(t) => Field::Ok(Table {
                table: t,
                span: node.span(),
                path,
                shape,
                used: Vec::new(),
            }),
            DeValue::Array(_) => {
                cx.report(
                    node.span(),
                    &path,
                    "expected a table, found an array of tables",
                    format!("write a single `[{path}]` table, not `[[{path}]]`"),
                );
                Field::Bad
            }
            _ => {
                type_error(cx, node, &path, "a table", "{ ... }");
                Field::Bad
            }
        }
    }

    /// An array of tables (`[[x]]` blocks or `x = [{...}]`).
    pub(crate) fn tables(&mut self, cx: &mut Ctx, key: &str) -> Field<Vec<Table<'t, 'i>>> {
        let path = self.key_path(key);
        let shape = self.shape_of(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        let items = match node.get_ref() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                cx.report(
                    node.span(),
                    &path,
                    "expected an array of tables, found a single table",
                    format!("write `[[{path}]]` (double brackets) for each entry"),
                );
                return Field::Bad;
            }
            _ => {
                type_error(cx, node, &path, "an array of tables", "[[...]]");
                return Field::Bad;
            }
        };
        Field::all(items.iter().enumerate().map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            match item.get_ref() {
                DeValue::Table(t) => Some(Table {
                    table: t,
                    span: item.span(),
                    path: item_path,
                    shape: shape.clone(),
                    used: Vec::new(),
                }),
                _ => {
                    type_error(cx, item, &item_path, "a table", "{ ... }");
                    None
                }
            }
        }))
    }

    /// Reports every key this table does not accept, with a "did you mean".
    pub(crate) fn finish(self, cx: &mut Ctx) {
        let known = raw::keys_of(&self.shape);
        for (k, _) in self.table.iter() {
            let key = k.get_ref().as_ref();
            if known.contains(&key) {
                debug_assert!(
                    self.used.iter().any(|u| u == key),
                    "decoder never reads `{key}` of `{}`",
                    self.shape
                );
                continue;
            }
            let where_ = if self.path.is_empty() {
                "the top level".to_string()
            } else {
                format!("[{}]", self.path)
            };
            let elsewhere = raw::SHAPES
                .iter()
                .find(|shape| shape.path != self.shape && shape.keys.contains(&key));
            let fix = match (suggest(key, known), elsewhere) {
                (Some(best), _) => format!("did you mean `{best}`?"),
                (None, Some(shape)) => format!(
                    "`{key}` belongs in [{}]; move it there or remove it",
                    shape.path
                ),
                (None, None) => format!("remove it; {where_} accepts: {}", known.join(", ")),
            };
            cx.report(
                k.span(),
                &self.key_path(key),
                format!("unknown key `{key}` in {where_}"),
                fix,
            );
        }
    }
}

/// The closest candidate to a misspelt word, if one is close enough to be a likely typo:
/// similar by Jaro-Winkler, or at most one edit (two for longer words) away.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let w = norm(word);
    let max_edits = if w.chars().count() >= 8 { 2 } else { 1 };
    candidates
        .iter()
        .filter_map(|c| {
            let n = norm(c);
            let edits = strsim::damerau_levenshtein(&w, &n);
            let similarity = strsim::jaro_winkler(&w, &n);
            let close = edits <= max_edits || similarity >= 0.85;
            // Fewer edits first, then higher similarity.
            close.then_some((edits, -similarity, *c))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
        .map(|(_, _, c)| c)
}

pub(crate) fn type_error(cx: &mut Ctx, node: &Node, path: &str, expected: &str, example: &str) {
    let found = node.get_ref().type_str();
    let key = path.rsplit('.').next().unwrap_or(path);
    cx.report(
        node.span(),
        path,
        format!("expected {expected}, found {found}"),
        format!("write it as `{key} = {example}`"),
    );
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggestions_catch_typos_and_ignore_strangers() {
        let keys = [
            "ttl",
            "idle_timeout",
            "revalidate_after",
            "cookie_name",
            "secret",
            "store",
        ];
        for (typo, want) in [
            ("ttll", Some("ttl")),
            ("tll", Some("ttl")),
            ("TTL", Some("ttl")),
            ("idle-timeout", Some("idle_timeout")),
            ("idle_timout", Some("idle_timeout")),
            ("revalidate_afetr", Some("revalidate_after")),
            ("cookiename", Some("cookie_name")),
            ("secrets", Some("secret")),
            ("zzz", None),
            ("colour", None),
            ("listen", None),
        ] {
            assert_eq!(suggest(typo, &keys), want, "{typo}");
        }
        assert_eq!(suggest("kye", &["cert", "key"]), Some("key"));
        assert_eq!(
            suggest("coookie", &["cookie", "memory", "redis"]),
            Some("cookie")
        );
        assert_eq!(suggest("disk", &["cookie", "memory", "redis"]), None);
    }
}
