//! Scalar accessors of a [`Table`] being decoded: strings (with references), secrets,
//! string arrays, booleans, bounded integers, durations, limits and enum words. Each
//! reports a located problem and returns [`Field::Bad`] instead of stopping.

use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::de::DeValue;

use super::refs::{secret_node, string_node};
use super::secret::Secret;
use super::settings::Limit;
use super::units;
use super::walk::{suggest, type_error, Ctx, Field, Str, Table};

impl Table<'_, '_> {
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
        Field::all(items.iter().enumerate().map(|(i, item)| {
            match string_node(cx, item, &format!("{path}[{i}]"), expand, false) {
                Field::Ok(s) => Some(s),
                _ => None,
            }
        }))
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
        Field::all(items.iter().enumerate().map(|(i, item)| {
            match secret_node(cx, item, &format!("{path}[{i}]")) {
                Field::Ok(s) => Some(s),
                _ => None,
            }
        }))
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
                Field::Absent => return Field::Absent,
                Field::Bad => return Field::Bad,
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
}
