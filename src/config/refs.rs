//! Secret references in string values: `${ENV_VAR}` (the whole value is that variable) and
//! `file:/path` (the whole value is that file, trailing newlines trimmed), resolved through
//! the [`Env`](super::Env) trait. Messages name the variable or path, never the value.

use std::ops::Range;
use std::path::Path;

use toml::de::DeValue;

use super::secret::Secret;
use super::walk::{type_error, Ctx, Field, Node, Source, Str};

/// Decodes a string node; expands references when `expand`.
pub(crate) fn string_node(
    cx: &mut Ctx,
    node: &Node,
    path: &str,
    expand: bool,
    secret: bool,
) -> Field<Str> {
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

pub(crate) fn secret_node(cx: &mut Ctx, node: &Node, path: &str) -> Field<(Secret, Range<usize>)> {
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
        return match cx.env().var(name) {
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
        return match cx.env().read_file(Path::new(file)) {
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
