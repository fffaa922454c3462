//! Durations as people write them in a delay or a timeout: `"90s"`, `"15m"`, `"2h"`, `"3d"`,
//! `"1w"`, compounds such as `"1d12h"`, ISO 8601 (`"P3D"`, `"PT2H30M"`, `"P1W"`), and — as a
//! convenience for designs that only carry a label — "Wait 3 Days".

use chrono::Duration;

const MAX_SECONDS: i64 = 5 * 366 * 86_400;

/// Parses a duration; `None` when it is not one, zero, or longer than five years.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    let secs =
        if let Some(iso) = s.strip_prefix('P').or_else(|| s.strip_prefix('p')) { iso8601(iso)? } else { compact(s)? };
    (secs > 0 && secs <= MAX_SECONDS).then(|| Duration::seconds(secs))
}

fn unit_seconds(unit: &str) -> Option<i64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return None,
    })
}

/// `3d`, `1d12h`, `90 s`, `2 hours`.
fn compact(s: &str) -> Option<i64> {
    let s = s.to_ascii_lowercase();
    let mut total = 0i64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
        let unit = unit_seconds(&rest[..unit_len])?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = rest[unit_len..].trim_start().trim_start_matches(',').trim_start();
    }
    Some(total)
}

/// The part after `P`: `3D`, `T2H30M`, `1W`, `1DT2H`.
fn iso8601(s: &str) -> Option<i64> {
    let s = s.to_ascii_uppercase();
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d.to_string(), Some(t.to_string())),
        None => (s.clone(), None),
    };
    let mut total = 0i64;
    let mut take = |part: &str, units: &[(char, i64)]| -> Option<()> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                num.push(c);
            } else {
                let (_, secs) = units.iter().find(|(u, _)| *u == c)?;
                let n: i64 = num.parse().ok()?;
                total = total.checked_add(n.checked_mul(*secs)?)?;
                num.clear();
            }
        }
        num.is_empty().then_some(())
    };
    take(&date, &[('W', 604_800), ('D', 86_400)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return None;
        }
        take(&t, &[('H', 3_600), ('M', 60), ('S', 1)])?;
    }
    (date.len() + s.len() > 0).then_some(total)
}

/// Reads a delay out of a label such as "Wait 3 Days" or "Delay 2 hours".
pub fn from_label(label: &str) -> Option<Duration> {
    let lower = label.to_ascii_lowercase();
    let start = lower.find(|c: char| c.is_ascii_digit())?;
    let tail = &lower[start..];
    let words: Vec<&str> = tail.split_whitespace().collect();
    let candidate = match words.as_slice() {
        [n, unit, ..] if n.chars().all(|c| c.is_ascii_digit()) => format!("{n}{unit}"),
        [one, ..] => one.to_string(),
        [] => return None,
    };
    parse(candidate.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms() {
        assert_eq!(parse("90s"), Some(Duration::seconds(90)));
        assert_eq!(parse("2h"), Some(Duration::hours(2)));
        assert_eq!(parse("3d"), Some(Duration::days(3)));
        assert_eq!(parse("1w"), Some(Duration::days(7)));
        assert_eq!(parse("1d12h"), Some(Duration::hours(36)));
        assert_eq!(parse("2 hours"), Some(Duration::hours(2)));
        assert_eq!(parse("15 min"), Some(Duration::minutes(15)));
    }

    #[test]
    fn iso_forms() {
        assert_eq!(parse("P3D"), Some(Duration::days(3)));
        assert_eq!(parse("PT2H30M"), Some(Duration::minutes(150)));
        assert_eq!(parse("P1DT2H"), Some(Duration::hours(26)));
        assert_eq!(parse("P1W"), Some(Duration::days(7)));
        assert_eq!(parse("PT90S"), Some(Duration::seconds(90)));
    }

    #[test]
    fn refused() {
        for bad in ["", "3", "d", "3x", "-3d", "0s", "P", "PT", "P3X", "PT2H3", "10000d"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(from_label("Wait 3 Days"), Some(Duration::days(3)));
        assert_eq!(from_label("Delay 2 hours"), Some(Duration::hours(2)));
        assert_eq!(from_label("wait 90s"), Some(Duration::seconds(90)));
        assert_eq!(from_label("Wait a bit"), None);
    }
}
