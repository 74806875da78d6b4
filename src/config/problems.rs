//! Configuration problems and their report: `FILE:LINE:COL: key.path: what is wrong; fix`.
//! Owns byte-offset -> line/column conversion and ordering. Must never hold or print a
//! secret value: messages are composed by the decoder, which redacts before calling here.

use std::fmt;
use std::ops::Range;

/// One thing wrong with a configuration file, located as precisely as the TOML allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or built-in origin name) the text came from.
    pub origin: String,
    /// 1-based line; `None` when the problem is about the file as a whole (unreadable).
    pub line: Option<usize>,
    /// 1-based column in characters.
    pub column: Option<usize>,
    /// Dotted key path such as `upstream[0].targets[1]`; empty for file-level problems.
    pub key: String,
    /// What is wrong (never contains a secret value).
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl Problem {
    /// A problem at byte range `span` of `text`.
    pub(crate) fn at(
        origin: &str,
        text: &str,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(text, span.start);
        Problem {
            origin: origin.to_string(),
            line: Some(line),
            column: Some(column),
            key: key.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A problem about the whole file (it cannot be read at all).
    pub(crate) fn file(origin: &str, message: impl Into<String>, fix: impl Into<String>) -> Self {
        Problem {
            origin: origin.to_string(),
            line: None,
            column: None,
            key: String::new(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

/// Every problem found in one configuration, in file order. Returned by
/// [`super::load`]/[`super::parse`] so `usher check-config` can print them all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    problems: Vec<Problem>,
}

impl ConfigErrors {
    /// Sorts by position (file-level problems first) and keeps the original order for ties.
    pub(crate) fn new(mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.line.unwrap_or(0), p.column.unwrap_or(0)));
        ConfigErrors { problems }
    }

    /// How many problems were found.
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// True when there is nothing to report (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Problem> {
        self.problems.iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.problems.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// 1-based line and character column of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // byte 10 is the `=` ("bé" is 3 bytes): the column counts characters.
        assert_eq!(line_column(text, 10), (2, 4));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_one_problem_per_line_in_file_order() {
        let text = "x\ny\nz\n";
        let errs = ConfigErrors::new(vec![
            Problem::at("u.toml", text, 4..5, "b.c", "late", "fix it"),
            Problem::at("u.toml", text, 0..1, "a", "early", "do this"),
            Problem::file("u.toml", "unreadable", ""),
        ]);
        assert_eq!(errs.len(), 3);
        assert_eq!(
            errs.to_string(),
            "u.toml: unreadable\nu.toml:1:1: a: early; do this\nu.toml:3:1: b.c: late; fix it"
        );
    }
}
