//! Exhaustive mutations of the example file: no mutation panics, every key rejects a value
//! of the wrong type with a problem on that key's line, and every problem is located.

use super::super::parse;
use super::example::{example_env, EXAMPLE};

/// Lines of the example that set a key (`key = value`), as (index, key, value start).
fn key_lines() -> Vec<(usize, String, usize)> {
    EXAMPLE
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            if line.trim_start().starts_with('#') {
                return None;
            }
            let (key, _) = line.split_once('=')?;
            let key = key.trim();
            let ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ok.then(|| (i, key.to_string(), line.find('=').unwrap_or(0) + 1))
        })
        .collect()
}

fn with_line(i: usize, replacement: &str) -> String {
    EXAMPLE
        .lines()
        .enumerate()
        .map(|(j, l)| if i == j { replacement } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_key_rejects_a_value_of_the_wrong_type_on_its_own_line() {
    let lines = key_lines();
    assert!(
        lines.len() > 120,
        "the example sets many keys: {}",
        lines.len()
    );
    let env = example_env();
    let mut failures = Vec::new();
    for (i, key, _) in &lines {
        // A float is the wrong type for every key usher has.
        let text = with_line(*i, &format!("{key} = 3.5"));
        match parse(&text, "x.toml", &env) {
            Ok(_) => failures.push(format!("line {}: `{key} = 3.5` was accepted", i + 1)),
            Err(e) => {
                let on_line = e.iter().any(|p| {
                    p.line == Some(i + 1)
                        && p.message.contains("found float")
                        && p.key.ends_with(key.as_str())
                });
                if !on_line {
                    failures.push(format!("line {}: `{key} = 3.5` gave:\n  {e}", i + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deleting_any_line_never_panics_and_problems_are_located() {
    let env = example_env();
    let count = EXAMPLE.lines().count();
    let mut rejected = 0;
    for i in 0..count {
        let text = EXAMPLE
            .lines()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| l)
            .collect::<Vec<_>>()
            .join("\n");
        if let Err(e) = parse(&text, "x.toml", &env) {
            rejected += 1;
            for p in e.iter() {
                let line = p.line.unwrap_or(0);
                assert!(line >= 1 && line <= count, "line {}: {p}", i + 1);
                assert!(!p.message.is_empty() && !p.fix.is_empty(), "{p}");
            }
        }
    }
    // Deleting a required key, a section header or a referenced target must be caught.
    assert!(rejected >= 10, "only {rejected} deletions were rejected");
}

#[test]
fn arbitrary_text_never_panics() {
    use proptest::prelude::*;
    let env = example_env();
    proptest!(ProptestConfig::with_cases(300), |(text in "[\\[\\]a-z_=\"{}, .0-9%$\n#:/@-]{0,200}")| {
        let _ = parse(&text, "x.toml", &env);
    });
    proptest!(ProptestConfig::with_cases(300), |(cut in 0usize..EXAMPLE.len())| {
        let mut end = cut;
        while !EXAMPLE.is_char_boundary(end) {
            end -= 1;
        }
        let _ = parse(&EXAMPLE[..end], "x.toml", &env);
    });
}
#[test]
fn an_unknown_key_is_still_reported_next_to_a_bad_value() {
    // Guards against a decoder returning early (on a bad value) before it checks the
    // table for unknown keys: both problems must be reported, in every table.
    let env = example_env();
    let mut failures = Vec::new();
    let lines: Vec<&str> = EXAMPLE.lines().collect();
    for (i, key, value_at) in key_lines() {
        let line = lines[i];
        let value = line[value_at..].trim();
        let mutated = if value.starts_with('{') {
            // Inline table: break its first value and add an unknown key inside it.
            let Some(eq) = value.find('=') else { continue };
            let rest = value[eq + 1..].trim_start();
            let start = value.len() - rest.len();
            let end = match rest.strip_prefix('"') {
                Some(q) => start + 2 + q.find('"').unwrap_or(q.len()),
                None => value[eq..].find([',', '}']).map_or(value.len(), |e| eq + e),
            };
            let inner = format!("{} 3.5{}", &value[..=eq], &value[end..]);
            let closed = inner
                .trim_end()
                .trim_end_matches('}')
                .trim_end()
                .to_string();
            format!("{key} = {closed}, zz_unknown = 1 }}")
        } else {
            format!("{key} = 3.5\nzz_unknown = 1")
        };
        let text = lines
            .iter()
            .enumerate()
            .map(|(j, l)| {
                if i == j {
                    mutated.clone()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let Err(e) = parse(&text, "x.toml", &env) else {
            failures.push(format!("line {}: accepted", i + 1));
            continue;
        };
        let bad = e.iter().any(|p| p.message.contains("found float"));
        let unknown = e
            .iter()
            .any(|p| p.message.starts_with("unknown key `zz_unknown`"));
        if !(bad && unknown) {
            failures.push(format!("line {} ({mutated}):\n  {e}", i + 1));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
