//! Cron schedules (`on.schedule`): 5-field expressions and `@daily`-style aliases,
//! in UTC or in a given time zone.

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

fn parse(expr: &str) -> Result<Cron, String> {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    parser.parse(expr.trim()).map_err(|e| {
        format!(
            "invalid cron expression {expr:?}: {e} (expected 5 fields \"minute hour day-of-month month day-of-week\", like \"0 3 * * *\", or @hourly, @daily, @weekly, @monthly, @yearly)"
        )
    })
}

/// Check a schedule: it must parse and fire at least once.
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let cron = parse(expr)?;
    // A fixed start keeps this function pure; any pattern that can fire does so within
    // a few years of any date (29 February needs at most 8).
    let start = Utc
        .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date");
    match cron.find_next_occurrence(&start, true) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("cron expression {expr:?} never fires")),
    }
}

/// The first time strictly after `after` at which the schedule fires (UTC), or `None` if the
/// expression is invalid or never fires.
pub fn next_after(expr: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    next_after_in(expr, after, &Utc)
}

/// As `next_after`, with the expression's hours and days read in `zone` (daylight
/// saving included); the answer is still in UTC.
pub fn next_after_in<Z: TimeZone>(expr: &str, after: DateTime<Utc>, zone: &Z) -> Option<DateTime<Utc>> {
    parse(expr).ok()?.find_next_occurrence(&after.with_timezone(zone), false).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn reads_hours_in_the_given_zone() {
        let two_hours_east = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        // 03:00 at UTC+2 is 01:00 UTC.
        assert_eq!(next_after_in("0 3 * * *", t("2026-01-01T00:00:00Z"), &two_hours_east), Some(t("2026-01-01T01:00:00Z")));
        assert_eq!(next_after_in("0 3 * * *", t("2026-01-01T00:00:00Z"), &Utc), Some(t("2026-01-01T03:00:00Z")));
    }

    #[test]
    fn validates_expressions() {
        for ok in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 9 * * MON-FRI",
            "@daily",
            "@hourly",
            " 0 0 1 1 * ",
            "0 0 29 2 *",
        ] {
            assert_eq!(validate_cron(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "0 0 3 * * *",
            "61 * * * *",
            "hello",
            "0 25 * * *",
            "@sometimes",
        ] {
            let e = validate_cron(bad).unwrap_err();
            assert!(
                e.contains("invalid cron expression") && e.contains("0 3 * * *"),
                "{bad}: {e}"
            );
        }
        let e = validate_cron("0 0 30 2 *").unwrap_err();
        assert!(e.contains("never fires"), "{e}");
    }

    #[test]
    fn next_fire_times() {
        let cases = [
            (
                "0 3 * * *",
                "2026-03-01T10:00:00Z",
                Some("2026-03-02T03:00:00Z"),
            ),
            (
                "0 3 * * *",
                "2026-03-01T02:59:59Z",
                Some("2026-03-01T03:00:00Z"),
            ),
            (
                "0 3 * * *",
                "2026-03-01T03:00:00Z",
                Some("2026-03-02T03:00:00Z"),
            ),
            (
                "*/15 * * * *",
                "2026-03-01T10:07:30Z",
                Some("2026-03-01T10:15:00Z"),
            ),
            (
                "@daily",
                "2026-12-31T23:00:00Z",
                Some("2027-01-01T00:00:00Z"),
            ),
            (
                "0 12 * * MON",
                "2026-03-04T00:00:00Z",
                Some("2026-03-09T12:00:00Z"),
            ),
            ("not cron", "2026-03-01T00:00:00Z", None),
        ];
        for (expr, after, want) in cases {
            assert_eq!(
                next_after(expr, t(after)),
                want.map(t),
                "{expr} after {after}"
            );
        }
    }
}
