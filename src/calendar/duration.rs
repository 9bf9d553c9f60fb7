//! Durations as people type them for `--min-spacing`: `90s`, `10m`, `2h`, `1h30m`, `1d`.
//!
//! Units are whole numbers of `d`, `h`, `m`, `s`, each at most once and largest first, so a typo
//! (`10`, `1m1h`, `5min`) is refused with the fix rather than read as something else.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "duration `{input}`: {reason}; write whole numbers with units d, h, m, s, largest first (`90s`, `10m`, `2h`, `1h30m`)"
)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// A duration as [`parse_duration`] reads it (`1h30m`, `15m`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let mut total: u64 = 0;
    let mut last_rank = usize::MAX;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(err("a unit needs a number before it"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("the number is too large"))?;
        rest = &rest[digits..];
        let Some(unit) = rest.chars().next() else {
            return Err(err("the last number has no unit"));
        };
        let (rank, secs) = match unit {
            'd' => (3, 86_400),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            _ => return Err(err("unknown unit")),
        };
        if rank >= last_rank {
            return Err(err("units repeat or are not largest first"));
        }
        last_rank = rank;
        rest = &rest[1..];
        total = n
            .checked_mul(secs)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("it is too large"))?;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1d2h3m4s"), Ok(Duration::from_secs(93_784)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refused_forms_say_why() {
        for (input, reason) in [
            ("", "it is empty"),
            ("10", "the last number has no unit"),
            ("5min", "a unit needs a number before it"),
            ("1m1h", "units repeat or are not largest first"),
            ("10m10m", "units repeat or are not largest first"),
            ("1w", "unknown unit"),
            ("h", "a unit needs a number before it"),
            ("-5m", "a unit needs a number before it"),
            ("99999999999999999999s", "the number is too large"),
        ] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(e.reason, reason, "{input}");
            assert!(e.to_string().contains("1h30m"), "{e}");
        }
    }
}
