//! Durations as users write them (`90s`, `10m`, `1h30m`) and as people read them.

use std::time::Duration;

const ACCEPTED: &str =
    "expected a number with a unit, like 90s, 10m, 1h30m or 500ms (units: ms, s, m, h, d; a bare number means seconds)";

/// Parse `"90s"`, `"10m"`, `"1h30m"`, `"1h 30m"`, `"500ms"`, `"1.5h"`, `"2d"`; a bare integer is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid duration {s:?}: {ACCEPTED}");
    let t = s.trim();
    if t.is_empty() {
        return Err(err());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<u64>().map(Duration::from_secs).map_err(|_| err());
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        // number: digits with an optional fraction
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &t[start..i];
        let mut frac_part = "";
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let fs = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &t[fs..i];
            if frac_part.is_empty() {
                return Err(err());
            }
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let us = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit_nanos: u128 = match &t[us..i] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(err()),
        };
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        let mut part = int.checked_mul(unit_nanos).ok_or_else(err)?;
        if !frac_part.is_empty() {
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| err())?;
            part += frac * unit_nanos / 10u128.pow(digits.len() as u32);
        }
        total = total.checked_add(part).ok_or_else(err)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Human form: `"120ms"` under a second, `"4.2s"` under a minute, else `"1h 2m 3s"`
/// (zero parts left out, days shown as `d`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let ms = d.as_millis();
    if ms == 0 {
        return "<1ms".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let mut secs = (ms + 500) / 1000;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400u128), ("h", 3600), ("m", 60), ("s", 1)] {
        let n = secs / size;
        secs %= size;
        if n > 0 {
            parts.push(format!("{n}{unit}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_accepted_forms() {
        let cases: &[(&str, u64)] = &[
            ("90s", 90_000),
            ("10m", 600_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("500ms", 500),
            ("2h", 7_200_000),
            ("45", 45_000),
            (" 7 ", 7_000),
            ("1.5h", 5_400_000),
            ("0.25s", 250),
            ("1d", 86_400_000),
            ("1m30s250ms", 90_250),
            ("0s", 0),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(*ms)),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_bad_forms_and_says_what_is_accepted() {
        for input in [
            "",
            "abc",
            "10x",
            "m",
            "1.s",
            "1h-2m",
            "10 minutes",
            "-5s",
            "1e3s",
            "99999999999999999999999d",
        ] {
            let e = parse_duration(input).unwrap_err();
            assert!(e.contains("90s") && e.contains("units"), "{input}: {e}");
        }
    }

    #[test]
    fn formats_for_people() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (120, "120ms"),
            (999, "999ms"),
            (4_200, "4.2s"),
            (4_000, "4s"),
            (59_960, "1m"),
            (62_000, "1m 2s"),
            (3_723_000, "1h 2m 3s"),
            (3_600_000, "1h"),
            (90_061_000, "1d 1h 1m 1s"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_duration(Duration::from_millis(*ms)), *want, "{ms}ms");
        }
        assert_eq!(format_duration(Duration::from_micros(300)), "<1ms");
    }

    #[test]
    fn formatted_durations_parse_back() {
        for ms in [120u64, 4_200, 62_000, 3_723_000] {
            let text = format_duration(Duration::from_millis(ms));
            assert_eq!(
                parse_duration(&text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }
}
