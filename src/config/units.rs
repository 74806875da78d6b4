//! Human units in the config: durations (`90s`, `15m`, `1h30m`, `0`) and limits given as a
//! count or a percentage (`5000`, `"5%"`). Pure string -> value functions; errors are
//! short phrases the decoder places into a located problem. No I/O.

use std::time::Duration;

use super::settings::Limit;

/// Parses a human duration as written in the config (also handy for CLI flags):
/// `0`, `500ms`, `90s`, `15m`, `12h`, `1d`, or a concatenation such as `1h30m`.
/// Whitespace between parts is allowed (`1h 30m`). Units may not repeat out of order.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err("expected a number followed by a unit (ms, s, m, h, d)".into());
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| "number is too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (rank, millis) = match unit {
            "d" => (0, 86_400_000),
            "h" => (1, 3_600_000),
            "m" => (2, 60_000),
            "s" => (3, 1_000),
            "ms" => (4, 1),
            "" => return Err("a number needs a unit (ms, s, m, h, d)".into()),
            _ => return Err(format!("unknown unit `{unit}` (use ms, s, m, h, d)")),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err("units must go from largest to smallest, each once (1h30m)".into());
        }
        last_rank = rank;
        total = total
            .checked_add(number.saturating_mul(millis))
            .ok_or_else(|| "is too large".to_string())?;
    }
    let millis = u64::try_from(total).map_err(|_| "is too large".to_string())?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the way the config writes it (`1h30m`, `90s` -> `1m30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// Parses a percentage string such as `5%` or `2.5%` into 0..=100.
pub(crate) fn parse_percent(text: &str) -> Result<f64, String> {
    let s = text.trim();
    let Some(number) = s.strip_suffix('%') else {
        return Err("a percentage ends with `%`".into());
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| "is not a number followed by `%`".to_string())?;
    if !value.is_finite() || value < 0.0 {
        return Err("a percentage must be between 0% and 100%".into());
    }
    if value > 100.0 {
        return Err(format!("{number}% is more than 100%"));
    }
    Ok(value)
}

/// Parses the string form of a [`Limit`]: `"5%"` or a plain count `"5000"`.
pub(crate) fn parse_limit(text: &str) -> Result<Limit, String> {
    let s = text.trim();
    if s.ends_with('%') {
        return parse_percent(s).map(Limit::Percent);
    }
    s.parse::<u64>()
        .map(Limit::Count)
        .map_err(|_| "expected a count (5000) or a percentage (\"5%\")".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn durations_in_every_unit_and_combination() {
        let table = [
            ("0", Duration::ZERO),
            ("90s", secs(90)),
            ("15m", secs(900)),
            ("12h", secs(43_200)),
            ("1d", secs(86_400)),
            ("250ms", Duration::from_millis(250)),
            ("1h30m", secs(5_400)),
            ("1h 30m", secs(5_400)),
            ("2m5s", secs(125)),
            ("1d2h3m4s5ms", Duration::from_millis(93_784_005)),
            (" 5m ", secs(300)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        let table = [
            ("", "empty"),
            ("15", "needs a unit"),
            ("15x", "unknown unit `x`"),
            ("15 minutes", "needs a unit"),
            ("15minutes", "unknown unit `minutes`"),
            ("m", "expected a number"),
            ("30m1h", "largest to smallest"),
            ("1h1h", "largest to smallest"),
            ("-5m", "expected a number"),
            ("1.5h", "needs a unit"),
            ("99999999999999999999999999999999999999999d", "too large"),
        ];
        for (text, phrase) in table {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(phrase), "{text}: {err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["0", "90s", "1h30m", "250ms", "1d2h3m4s5ms", "12h"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{text}");
        }
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(300)), "5m");
    }

    #[test]
    fn percentages_and_counts() {
        assert_eq!(parse_percent("5%"), Ok(5.0));
        assert_eq!(parse_percent("2.5%"), Ok(2.5));
        assert_eq!(parse_percent("100%"), Ok(100.0));
        assert_eq!(parse_percent("0%"), Ok(0.0));
        assert!(parse_percent("101%")
            .unwrap_err()
            .contains("more than 100%"));
        assert!(parse_percent("-1%")
            .unwrap_err()
            .contains("between 0% and 100%"));
        assert!(parse_percent("5").unwrap_err().contains("ends with `%`"));
        assert!(parse_percent("x%").unwrap_err().contains("not a number"));
        assert_eq!(parse_limit("5%"), Ok(Limit::Percent(5.0)));
        assert_eq!(parse_limit("40"), Ok(Limit::Count(40)));
        assert!(parse_limit("five").unwrap_err().contains("count"));
        assert!(parse_limit("150%").unwrap_err().contains("more than 100%"));
    }

    proptest::proptest! {
        #[test]
        fn any_duration_round_trips_through_its_text(ms in 0u64..10_000_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[0-9a-z% .-]{0,24}") {
            let _ = parse_duration(&text);
            let _ = parse_limit(&text);
        }

        #[test]
        fn percentages_in_range_parse(p in 0.0f64..=100.0) {
            let text = format!("{p}%");
            proptest::prop_assert_eq!(parse_limit(&text), Ok(Limit::Percent(p)));
        }
    }
}
