//! The Prometheus text exposition format (version 0.0.4), both ways: escaping label
//! values for the series usher renders itself, and a strict reader of a whole
//! scrape for tests and tools that check what `/metrics` says. Knows no series names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One sample line of a scrape: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (for histograms with its `_bucket`/`_sum`/`_count` suffix).
    pub name: String,
    /// Every label of the line (order-independent).
    pub labels: BTreeMap<String, String>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

/// A scrape, read into samples; lookups match the label set exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Every sample, in the order of the text.
    pub samples: Vec<Sample>,
    /// `# TYPE` lines: series family name -> `counter` | `gauge` | `histogram` | ...
    pub types: BTreeMap<String, String>,
}

/// Why a scrape could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the scrape is not valid Prometheus text format: {reason}: {text:?}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
    /// The offending line.
    pub text: String,
}

impl Scrape {
    /// Reads a whole scrape. Every non-comment line must be a valid sample, so a
    /// rendering bug shows up as an error instead of a silently missing series.
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut out = Scrape::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |reason| ParseError {
                line: i + 1,
                reason,
                text: raw.to_string(),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(name), Some(kind), None) => {
                        out.types.insert(name.to_string(), kind.to_string());
                    }
                    _ => return Err(err("a TYPE line needs a name and a type")),
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            out.samples.push(parse_sample(line).map_err(err)?);
        }
        Ok(out)
    }

    /// The value of the series `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && same_labels(&s.labels, labels))
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], with an absent series counting as 0 (counters not yet touched).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// Every sample of the series `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

fn same_labels(have: &BTreeMap<String, String>, want: &[(&str, &str)]) -> bool {
    have.len() == want.len()
        && want
            .iter()
            .all(|(k, v)| have.get(*k).is_some_and(|h| h == v))
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample needs a value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err("invalid metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = parse_labels(body, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample needs a value")?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse::<f64>().map_err(|_| "the value is not a number")?,
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|_| "the timestamp is not an integer")?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp");
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Reads `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, &'static str> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let eq = s.find('=').ok_or("a label needs `=`")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("invalid label name");
        }
        s = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    _ => return Err("invalid escape in a label value"),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value"),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err("a label appears twice");
        }
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("labels must be separated by `,`");
        }
    }
}

/// Appends `value` escaped for use inside a quoted label value.
pub fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `# HELP` and `# TYPE` lines for a series family.
pub fn push_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_labels_types_and_special_values() {
        let text = "# HELP a_total Things.\n# TYPE a_total counter\n\
                    a_total{x=\"1\",y=\"two\"} 3\n\
                    a_total{y=\"q\\\"uote\\\\back\\nline\",x=\"2\",} 4.5 1700000000000\n\
                    b 7\n\
                    h_bucket{le=\"+Inf\"} +Inf\n";
        let s = Scrape::parse(text).unwrap();
        assert_eq!(s.types["a_total"], "counter");
        assert_eq!(s.get("a_total", &[("x", "1"), ("y", "two")]), Some(3.0));
        assert_eq!(s.get("a_total", &[("y", "two"), ("x", "1")]), Some(3.0));
        // The label set must match exactly: a subset is another series.
        assert_eq!(s.get("a_total", &[("x", "1")]), None);
        assert_eq!(
            s.get("a_total", &[("x", "2"), ("y", "q\"uote\\back\nline")]),
            Some(4.5)
        );
        assert_eq!(s.get("b", &[]), Some(7.0));
        assert_eq!(s.value("missing", &[]), 0.0);
        assert!(s.get("h_bucket", &[("le", "+Inf")]).unwrap().is_infinite());
        assert_eq!(s.series("a_total").count(), 2);
    }

    #[test]
    fn refuses_broken_lines() {
        for bad in [
            "a{x=\"1\" 3",
            "a{x=1} 3",
            "a{x=\"1\",x=\"2\"} 3",
            "a{x=\"1\"}",
            "a{x=\"1\"} three",
            "a{x=\"\\q\"} 1",
            "a-b 1",
            "a 1 2 3",
            "# TYPE a",
        ] {
            assert!(Scrape::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn escaping_round_trips_through_the_reader() {
        let mut line = String::from("x{v=\"");
        push_label_value(&mut line, "a\"b\\c\nd");
        line.push_str("\"} 1");
        let s = Scrape::parse(&line).unwrap();
        assert_eq!(s.get("x", &[("v", "a\"b\\c\nd")]), Some(1.0));
    }
}
