//! The decoder's toolkit: walks the span-annotated TOML tree against the schema in
//! `raw.rs`, converts values (strings with `${ENV}`/`file:` references, secrets, integers,
//! durations, limits, enums, tables) and records every problem with its position instead of
//! stopping. Must not echo a secret or a value that came from a reference in a message.

use std::ops::{Range, RangeInclusive};
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::problems::Problem;
use super::raw;
use super::secret::Secret;
use super::settings::Limit;
use super::units;
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

    /// A string with `${ENV}` / `file:` references expanded.
    pub(crate) fn string(&mut self, cx: &mut Ctx, key: &str) -> Field<Str> {
        let path = self.key_path(key);
        match self.node(key) {
            None => Field::Absent,
            Some(node) => string_node(cx, node, &path, true, false),
        }
    }

    /// A string taken literally (regexes, replacements, templates: `${1}` means a group).
    pub(crate) fn literal(&mut self, cx: &mut Ctx, key: &str) -> Field<Str> {
        let path = self.key_path(key);
        match self.node(key) {
            None => Field::Absent,
            Some(node) => string_node(cx, node, &path, false, false),
        }
    }

    /// A secret: expanded like [`Self::string`], never quoted in messages, never empty.
    pub(crate) fn secret(&mut self, cx: &mut Ctx, key: &str) -> Field<(Secret, Range<usize>)> {
        let path = self.key_path(key);
        match self.node(key) {
            None => Field::Absent,
            Some(node) => secret_node(cx, node, &path),
        }
    }

    /// An array of strings with references expanded.
    pub(crate) fn strings(&mut self, cx: &mut Ctx, key: &str) -> Field<Vec<Str>> {
        self.string_array(cx, key, true)
    }

    /// An array of strings taken literally (regexes).
    pub(crate) fn literals(&mut self, cx: &mut Ctx, key: &str) -> Field<Vec<Str>> {
        self.string_array(cx, key, false)
    }

    fn string_array(&mut self, cx: &mut Ctx, key: &str, expand: bool) -> Field<Vec<Str>> {
        let path = self.key_path(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        let Some(items) = node.get_ref().as_array() else {
            type_error(cx, node, &path, "an array of strings", "[\"...\"]");
            return Field::Bad;
        };
        let mut out = Vec::new();
        let mut bad = false;
        for (i, item) in items.iter().enumerate() {
            match string_node(cx, item, &format!("{path}[{i}]"), expand, false) {
                Field::Ok(s) => out.push(s),
                _ => bad = true,
            }
        }
        if bad {
            Field::Bad
        } else {
            Field::Ok(out)
        }
    }

    /// An array of secrets.
    pub(crate) fn secrets(
        &mut self,
        cx: &mut Ctx,
        key: &str,
    ) -> Field<Vec<(Secret, Range<usize>)>> {
        let path = self.key_path(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        let Some(items) = node.get_ref().as_array() else {
            type_error(
                cx,
                node,
                &path,
                "an array of strings",
                "[\"${OLD_SECRET}\"]",
            );
            return Field::Bad;
        };
        let mut out = Vec::new();
        let mut bad = false;
        for (i, item) in items.iter().enumerate() {
            match secret_node(cx, item, &format!("{path}[{i}]")) {
                Field::Ok(s) => out.push(s),
                _ => bad = true,
            }
        }
        if bad {
            Field::Bad
        } else {
            Field::Ok(out)
        }
    }

    /// `true` / `false`.
    pub(crate) fn boolean(&mut self, cx: &mut Ctx, key: &str) -> Field<bool> {
        let path = self.key_path(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        match node.get_ref() {
            DeValue::Boolean(b) => Field::Ok(*b),
            DeValue::String(s) if s == "true" || s == "false" => {
                cx.report(
                    node.span(),
                    &path,
                    "expected a boolean, found the string \"".to_string() + s + "\"",
                    format!("remove the quotes: `{key} = {s}`"),
                );
                Field::Bad
            }
            _ => {
                type_error(cx, node, &path, "a boolean", "true");
                Field::Bad
            }
        }
    }

    /// A non-negative integer within `range`.
    pub(crate) fn uint(
        &mut self,
        cx: &mut Ctx,
        key: &str,
        range: RangeInclusive<u64>,
    ) -> Field<u64> {
        let path = self.key_path(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        let value = match node.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            DeValue::String(s) if s.trim().parse::<i64>().is_ok() => {
                cx.report(
                    node.span(),
                    &path,
                    "expected an integer, found a string",
                    format!("remove the quotes: `{key} = {}`", s.trim()),
                );
                return Field::Bad;
            }
            _ => {
                type_error(cx, node, &path, "an integer", &range.start().to_string());
                return Field::Bad;
            }
        };
        match value.and_then(|v| u64::try_from(v).ok()) {
            Some(v) if range.contains(&v) => Field::Ok(v),
            _ => {
                cx.report(
                    node.span(),
                    &path,
                    format!("must be between {} and {}", range.start(), range.end()),
                    format!("choose a value from {} to {}", range.start(), range.end()),
                );
                Field::Bad
            }
        }
    }

    /// A human duration (`"15m"`); the bare integer `0` is accepted as zero.
    pub(crate) fn duration(&mut self, cx: &mut Ctx, key: &str) -> Field<Duration> {
        let path = self.key_path(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        if let DeValue::Integer(i) = node.get_ref() {
            if i.as_str() == "0" {
                return Field::Ok(Duration::ZERO);
            }
            cx.report(
                node.span(),
                &path,
                "a duration needs a unit",
                format!(
                    "write it as a string with a unit, e.g. `{key} = \"{}s\"`",
                    i.as_str()
                ),
            );
            return Field::Bad;
        }
        let s = match string_node(cx, node, &path, true, false) {
            Field::Ok(s) => s,
            Field::Bad => return Field::Bad,
            Field::Absent => return Field::Absent,
        };
        match units::parse_duration(&s.value) {
            Ok(d) => Field::Ok(d),
            Err(why) => {
                cx.report(
                    s.span.clone(),
                    &path,
                    format!("{} is not a duration: {why}", s.shown()),
                    "write a duration such as \"90s\", \"15m\", \"12h\" or \"1h30m\"",
                );
                Field::Bad
            }
        }
    }

    /// A duration that must be greater than zero.
    pub(crate) fn positive_duration(&mut self, cx: &mut Ctx, key: &str) -> Field<Duration> {
        let path = self.key_path(key);
        let span = self.node(key).map(|n| n.span());
        self.duration(cx, key).check(|d| {
            if d.is_zero() {
                if let Some(span) = span {
                    cx.report(
                        span,
                        &path,
                        "must be longer than 0",
                        "give a duration such as \"30s\"",
                    );
                }
                None
            } else {
                Some(d)
            }
        })
    }

    /// A count (`5000`) or a percentage (`"5%"`).
    pub(crate) fn limit(&mut self, cx: &mut Ctx, key: &str) -> Field<Limit> {
        let path = self.key_path(key);
        let Some(node) = self.node(key) else {
            return Field::Absent;
        };
        let result = match node.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .and_then(|v| u64::try_from(v).ok())
                .map(Limit::Count)
                .ok_or_else(|| "a count cannot be negative".to_string()),
            DeValue::String(s) => units::parse_limit(s),
            _ => {
                type_error(cx, node, &path, "a count or a percentage", "\"5%\"");
                return Field::Bad;
            }
        };
        match result {
            Ok(l) => Field::Ok(l),
            Err(why) => {
                cx.report(
                    node.span(),
                    &path,
                    why,
                    "write a count such as 50 or a percentage such as \"5%\" (0% to 100%)",
                );
                Field::Bad
            }
        }
    }

    /// One of a fixed set of words, with a suggestion for a near miss.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        cx: &mut Ctx,
        key: &str,
        options: &[(&str, T)],
    ) -> Field<T> {
        let path = self.key_path(key);
        let s = match self.node(key) {
            None => return Field::Absent,
            Some(node) => match string_node(cx, node, &path, true, false) {
                Field::Ok(s) => s,
                other => return other.map(|_| options[0].1),
            },
        };
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == s.value) {
            return Field::Ok(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let listed = names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let fix = match suggest(&s.value, &names) {
            Some(best) => format!("did you mean \"{best}\"? (one of {listed})"),
            None => format!("use one of {listed}"),
        };
        cx.report(
            s.span.clone(),
            &path,
            format!("{} is not a valid value", s.shown()),
            fix,
        );
        Field::Bad
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
        let mut out = Vec::new();
        let mut bad = false;
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match item.get_ref() {
                DeValue::Table(t) => out.push(Table {
                    table: t,
                    span: item.span(),
                    path: item_path,
                    shape: shape.clone(),
                    used: Vec::new(),
                }),
                _ => {
                    type_error(cx, item, &item_path, "a table", "{ ... }");
                    bad = true;
                }
            }
        }
        if bad {
            Field::Bad
        } else {
            Field::Ok(out)
        }
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
            let fix = match suggest(key, known) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("remove it; {where_} accepts: {}", known.join(", ")),
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

fn type_error(cx: &mut Ctx, node: &Node, path: &str, expected: &str, example: &str) {
    let found = node.get_ref().type_str();
    let key = path.rsplit('.').next().unwrap_or(path);
    cx.report(
        node.span(),
        path,
        format!("expected {expected}, found {found}"),
        format!("write it as `{key} = {example}`"),
    );
}

/// Decodes a string node; expands references when `expand`.
fn string_node(cx: &mut Ctx, node: &Node, path: &str, expand: bool, secret: bool) -> Field<Str> {
    let DeValue::String(raw) = node.get_ref() else {
        let example = if secret {
            "\"${MY_SECRET}\""
        } else {
            "\"...\""
        };
        type_error(cx, node, path, "a string", example);
        return Field::Bad;
    };
    let span = node.span();
    if !expand {
        return Field::Ok(Str {
            value: raw.to_string(),
            span,
            source: Source::Literal,
        });
    }
    match resolve(cx, raw, span.clone(), path) {
        Some((value, source)) => Field::Ok(Str {
            value,
            span,
            source,
        }),
        None => Field::Bad,
    }
}

fn secret_node(cx: &mut Ctx, node: &Node, path: &str) -> Field<(Secret, Range<usize>)> {
    match string_node(cx, node, path, true, true) {
        Field::Ok(s) if s.value.is_empty() => {
            let what = match &s.source {
                Source::Literal => "is empty".to_string(),
                _ => format!("is empty ({})", s.shown()),
            };
            cx.report(s.span, path, what, "give the secret a value");
            Field::Bad
        }
        Field::Ok(s) => Field::Ok((Secret::new(s.value), s.span)),
        Field::Bad => Field::Bad,
        Field::Absent => Field::Absent,
    }
}

/// Expands `${NAME}` (whole value) and `file:/path` (content, trailing newlines trimmed).
fn resolve(cx: &mut Ctx, raw: &str, span: Range<usize>, path: &str) -> Option<(String, Source)> {
    if let Some(rest) = raw.strip_prefix("${") {
        let name = rest.strip_suffix('}').unwrap_or("");
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            cx.report(
                span,
                path,
                "malformed environment reference",
                "write the whole value as `${NAME}` (letters, digits, `_`)",
            );
            return None;
        }
        return match cx.env.var(name) {
            Some(v) => Some((v, Source::Env(name.to_string()))),
            None => {
                cx.report(
                    span,
                    path,
                    format!("environment variable `{name}` is not set"),
                    format!("set {name} in usher's environment, or write the value directly"),
                );
                None
            }
        };
    }
    if let Some(file) = raw.strip_prefix("file:") {
        if file.is_empty() {
            cx.report(
                span,
                path,
                "`file:` names no file",
                "write `file:/path/to/file`",
            );
            return None;
        }
        return match cx.env.read_file(Path::new(file)) {
            Ok(content) => {
                let trimmed = content.trim_end_matches(['\n', '\r']).to_string();
                Some((trimmed, Source::File(file.to_string())))
            }
            Err(e) => {
                cx.report(
                    span,
                    path,
                    format!("cannot read file:{file}: {e}"),
                    "check the path and that usher's user may read the file",
                );
                None
            }
        };
    }
    Some((raw.to_string(), Source::Literal))
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
