//! Ban durations as operators write them: `90s`, `10m`, `1h`, `2d`, `1w`, `permanent`.

use std::fmt;

/// How long a ban lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BanTime {
    Secs(u64),
    Permanent,
}

/// A duration string that is not of the accepted form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationError(pub String);

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad duration {:?}: expected a number with a unit s, m, h, d or w (e.g. 90s, 10m, 1h, 2d, 1w), or 'permanent'",
            self.0
        )
    }
}

impl std::error::Error for DurationError {}

/// Parses `N<unit>` with unit s|m|h|d|w (a bare number is seconds), or `permanent`.
/// Zero is refused: a zero-length ban is a mistake, not a request.
pub fn parse_bantime(s: &str) -> Result<BanTime, DurationError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("permanent") || t == "-1" {
        return Ok(BanTime::Permanent);
    }
    parse_secs(t).map(BanTime::Secs)
}

/// Parses a finite duration (as [`parse_bantime`] without `permanent`) into seconds.
pub fn parse_secs(s: &str) -> Result<u64, DurationError> {
    let err = || DurationError(s.to_string());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(err());
    }
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(err()),
    };
    let secs = n.checked_mul(mult).ok_or_else(err)?;
    if secs == 0 {
        return Err(err());
    }
    Ok(secs)
}

/// Shortest exact rendering: 3600 -> "1h", 90 -> "90s".
pub fn format_secs(secs: u64) -> String {
    for (unit, m) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= m && secs.is_multiple_of(m) {
            return format!("{}{}", secs / m, unit);
        }
    }
    format!("{secs}s")
}

impl fmt::Display for BanTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTime::Permanent => f.write_str("permanent"),
            BanTime::Secs(s) => f.write_str(&format_secs(*s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_bantime("90s"), Ok(BanTime::Secs(90)));
        assert_eq!(parse_bantime("10m"), Ok(BanTime::Secs(600)));
        assert_eq!(parse_bantime("1h"), Ok(BanTime::Secs(3600)));
        assert_eq!(parse_bantime("2d"), Ok(BanTime::Secs(172_800)));
        assert_eq!(parse_bantime("1w"), Ok(BanTime::Secs(604_800)));
        assert_eq!(parse_bantime("45"), Ok(BanTime::Secs(45)));
        assert_eq!(parse_bantime("permanent"), Ok(BanTime::Permanent));
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "h",
            "10x",
            "1.5h",
            "-5m",
            "0s",
            "10 m",
            "99999999999999999999w",
        ] {
            assert!(parse_bantime(bad).is_err(), "{bad:?} should be refused");
        }
        let msg = parse_bantime("10x").unwrap_err().to_string();
        assert!(msg.contains("10x") && msg.contains("permanent"), "{msg}");
    }

    #[test]
    fn format_roundtrip() {
        for s in [1, 59, 60, 90, 3600, 5400, 86_400, 604_800, 1_209_600] {
            assert_eq!(parse_secs(&format_secs(s)), Ok(s));
        }
        assert_eq!(format_secs(3600), "1h");
        assert_eq!(format_secs(90), "90s");
    }
}
