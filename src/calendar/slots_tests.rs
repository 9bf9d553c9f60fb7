//! The acceptance rows of issue 13 for slot computation. Every expected instant was worked out by
//! hand from the zone's rules (noted beside it), not copied from the code's output.

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn next(zone: &str, exprs: &[&str], from: &str, n: usize) -> Vec<DateTime<Utc>> {
    let s = Schedule::parse(zone, exprs).unwrap();
    s.instants_from(utc(from)).take(n).collect()
}

fn all(v: &[&str]) -> Vec<DateTime<Utc>> {
    v.iter().map(|s| utc(s)).collect()
}

#[test]
fn translate_dow_to_cron_numbers() {
    for (crontab, cron) in [
        ("*", "*"),
        ("0", "1"),
        ("7", "1"),
        ("0,7", "1"),
        ("SUN", "1"),
        ("sat", "7"),
        ("1-5", "2,3,4,5,6"),
        ("MON-FRI", "2,3,4,5,6"),
        ("5-7", "1,6,7"),
        ("FRI-SUN", "1,6,7"),
        ("*/2", "1,3,5,7"),
        ("1-7/3", "1,2,5"),
        ("MON,WED,5", "2,4,6"),
        ("6/1", "1,7"),
    ] {
        assert_eq!(translate_dow(crontab).as_deref(), Ok(cron), "{crontab}");
    }
    assert!(translate_dow("8").unwrap_err().contains("0-7"));
    assert!(translate_dow("FOO").unwrap_err().contains("SUN-SAT"));
    assert!(translate_dow("5-1").unwrap_err().contains("backwards"));
    assert!(translate_dow("*/0").unwrap_err().contains("positive"));
}

#[test]
fn new_york_spring_forward_moves_by_the_gap() {
    // 2026-03-08 02:00 EST (-5) jumps to 03:00 EDT (-4).
    assert_eq!(
        next(
            "America/New_York",
            &["30 2 * * *"],
            "2026-03-07T00:00:00Z",
            3
        ),
        all(&[
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:30:00Z",
            "2026-03-09T06:30:00Z"
        ])
    );
}

#[test]
fn new_york_fall_back_takes_the_first_occurrence() {
    // 2026-11-01 02:00 EDT (-4) falls back to 01:00 EST (-5): 01:30 happens at 05:30Z and 06:30Z.
    assert_eq!(
        next(
            "America/New_York",
            &["30 1 * * *"],
            "2026-10-31T00:00:00Z",
            3
        ),
        all(&[
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z"
        ])
    );
}

#[test]
fn berlin_both_directions_and_nine_oclock_stays_local() {
    // 2026-03-29 02:00 CET (+1) → 03:00 CEST (+2).
    assert_eq!(
        next("Europe/Berlin", &["30 2 * * *"], "2026-03-28T00:00:00Z", 3),
        all(&[
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:30:00Z",
            "2026-03-30T00:30:00Z"
        ])
    );
    // 2026-10-25 03:00 CEST → 02:00 CET: 02:30 first at 00:30Z (CEST), second 01:30Z skipped.
    assert_eq!(
        next("Europe/Berlin", &["30 2 * * *"], "2026-10-24T00:00:00Z", 3),
        all(&[
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z"
        ])
    );
    // The Postiz bug: 09:00 Berlin is 08:00Z in winter and 07:00Z in summer.
    assert_eq!(
        next("Europe/Berlin", &["0 9 * * *"], "2026-03-28T00:00:00Z", 2),
        all(&["2026-03-28T08:00:00Z", "2026-03-29T07:00:00Z"])
    );
}

#[test]
fn santiago_changes_at_midnight() {
    // 2026-09-06 00:00 (-4) does not exist: clocks go to 01:00 (-3) at 04:00Z.
    assert_eq!(
        next(
            "America/Santiago",
            &["0 0 * * *"],
            "2026-09-05T00:00:00Z",
            3
        ),
        all(&[
            "2026-09-05T04:00:00Z",
            "2026-09-06T04:00:00Z",
            "2026-09-07T03:00:00Z"
        ])
    );
    // 2026-04-05 00:00 (-3) goes back to 2026-04-04 23:00 (-4) at 03:00Z: 23:30 on the 4th happens
    // at 02:30Z and 03:30Z; only the first counts.
    assert_eq!(
        next(
            "America/Santiago",
            &["30 23 * * *"],
            "2026-04-03T12:00:00Z",
            3
        ),
        all(&[
            "2026-04-04T02:30:00Z",
            "2026-04-05T02:30:00Z",
            "2026-04-06T03:30:00Z"
        ])
    );
}

#[test]
fn lord_howe_gap_is_thirty_minutes() {
    // 2026-10-04 02:00 (+10:30) → 02:30 (+11): 02:15 moves to 02:45 (+11) = 15:45Z the day before.
    assert_eq!(
        next(
            "Australia/Lord_Howe",
            &["15 2 * * *"],
            "2026-10-02T00:00:00Z",
            3
        ),
        all(&[
            "2026-10-02T15:45:00Z",
            "2026-10-03T15:45:00Z",
            "2026-10-04T15:15:00Z"
        ])
    );
}

#[test]
fn gap_shift_keeps_the_day_sorted() {
    // New York, 2026-03-08: 02:30 moves to 03:30 EDT (07:30Z), after 03:15 EDT (07:15Z).
    assert_eq!(
        next(
            "America/New_York",
            &["30 2 * * *", "15 3 * * *"],
            "2026-03-08T05:00:00Z",
            2
        ),
        all(&["2026-03-08T07:15:00Z", "2026-03-08T07:30:00Z"])
    );
}

#[test]
fn leap_day() {
    // 09:00 CET (+1) on 29 February: 2028 and 2032.
    assert_eq!(
        next("Europe/Berlin", &["0 9 29 2 *"], "2026-12-01T00:00:00Z", 2),
        all(&["2028-02-29T08:00:00Z", "2032-02-29T08:00:00Z"])
    );
}

#[test]
fn day_of_month_and_week_both_restricted_means_either() {
    // December 2026: the 1st is a Tuesday; Fridays are 4, 11, 18; the 13th is a Sunday.
    assert_eq!(
        next("UTC", &["0 12 13 * FRI"], "2026-12-01T00:00:00Z", 4),
        all(&[
            "2026-12-04T12:00:00Z",
            "2026-12-11T12:00:00Z",
            "2026-12-13T12:00:00Z",
            "2026-12-18T12:00:00Z"
        ])
    );
    // With one of them `*`, only the other applies.
    assert_eq!(
        next("UTC", &["0 12 13 * *"], "2026-12-01T00:00:00Z", 2),
        all(&["2026-12-13T12:00:00Z", "2027-01-13T12:00:00Z"])
    );
    assert_eq!(
        next("UTC", &["0 12 * * FRI"], "2026-12-01T00:00:00Z", 2),
        all(&["2026-12-04T12:00:00Z", "2026-12-11T12:00:00Z"])
    );
}

#[test]
fn weekday_names_and_zero_and_seven() {
    // Sunday 2026-12-06, whichever way it is written.
    for dow in ["0", "7", "SUN", "sun", "0,7"] {
        let expr = format!("0 10 * * {dow}");
        assert_eq!(
            next("UTC", &[&expr], "2026-12-01T00:00:00Z", 2),
            all(&["2026-12-06T10:00:00Z", "2026-12-13T10:00:00Z"]),
            "{dow}"
        );
    }
    // MON-FRI from Friday 2026-12-04 skips the weekend; 1-5 is the same.
    for dow in ["MON-FRI", "1-5"] {
        let expr = format!("0 10 * * {dow}");
        assert_eq!(
            next("UTC", &[&expr], "2026-12-04T00:00:00Z", 3),
            all(&[
                "2026-12-04T10:00:00Z",
                "2026-12-07T10:00:00Z",
                "2026-12-08T10:00:00Z"
            ]),
            "{dow}"
        );
    }
    // 5-7 is Friday, Saturday, Sunday.
    assert_eq!(
        next("UTC", &["0 10 * * 5-7"], "2026-12-01T00:00:00Z", 4),
        all(&[
            "2026-12-04T10:00:00Z",
            "2026-12-05T10:00:00Z",
            "2026-12-06T10:00:00Z",
            "2026-12-11T10:00:00Z"
        ])
    );
}

#[test]
fn two_expressions_merge_without_duplicates() {
    // Monday 2026-12-07: 09:00 is named by both.
    assert_eq!(
        next(
            "UTC",
            &["0 9 * * *", "0 9,17 * * MON"],
            "2026-12-07T00:00:00Z",
            4
        ),
        all(&[
            "2026-12-07T09:00:00Z",
            "2026-12-07T17:00:00Z",
            "2026-12-08T09:00:00Z",
            "2026-12-09T09:00:00Z"
        ])
    );
}

#[test]
fn from_is_inclusive_and_instants_strictly_ascend() {
    let s = Schedule::parse("Europe/Berlin", &["*/20 8-9 * * *"]).unwrap();
    let v: Vec<_> = s
        .instants_from(utc("2026-03-29T07:20:00Z"))
        .take(4)
        .collect();
    assert_eq!(
        v,
        all(&[
            "2026-03-29T07:20:00Z",
            "2026-03-29T07:40:00Z",
            "2026-03-30T06:00:00Z",
            "2026-03-30T06:20:00Z"
        ])
    );
}

#[test]
fn bad_zone_names_the_fix() {
    let e = Schedule::parse("Europe/Berln", &["0 9 * * *"]).unwrap_err();
    assert_eq!(
        e,
        ScheduleError::UnknownZone {
            name: "Europe/Berln".into(),
            suggestion: Some("Europe/Berlin".into())
        }
    );
    assert_eq!(
        e.to_string(),
        "`Europe/Berln` is not an IANA zone name; did you mean `Europe/Berlin`?"
    );
    let e = Schedule::parse("+02:00", &["0 9 * * *"]).unwrap_err();
    assert!(e.to_string().contains("not an IANA zone name"), "{e}");
    assert!(e.to_string().contains("Europe/Berlin"), "{e}");
}

#[test]
fn bad_expressions_say_what_is_wrong() {
    let err = |x: &str| Schedule::parse("UTC", &[x]).unwrap_err().to_string();
    assert!(err("0 9 * *").contains("has 4 fields"));
    assert!(err("0 0 9 * * *").contains("has 6 fields"));
    assert!(err("0 9 * * 8").contains("0-7"));
    assert!(err("61 9 * * *").starts_with("slot `61 9 * * *`"));
    assert!(err("0 9 31 2 *").contains("matches no day"));
    assert_eq!(
        Schedule::parse::<&str>("UTC", &[]).unwrap_err(),
        ScheduleError::NoExpressions
    );
}

/// What the `cron` crate's own iterator does, the reason this module computes instants itself (see
/// the module doc). If a new `cron` changes this, the doc should say so.
#[test]
fn cron_crate_own_iterator_differs() {
    use chrono::TimeZone;
    let ny: Tz = "America/New_York".parse().unwrap();
    let run = |expr: &str, from: DateTime<Tz>, n: usize| -> Vec<DateTime<Utc>> {
        let s = cron::Schedule::from_str(expr).unwrap();
        s.after(&from)
            .take(n)
            .map(|t| t.with_timezone(&Utc))
            .collect()
    };
    // The gap: 2026-03-08 is skipped.
    assert_eq!(
        run(
            "0 30 2 * * *",
            ny.with_ymd_and_hms(2026, 3, 7, 0, 0, 0).unwrap(),
            2
        ),
        all(&["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"])
    );
    // The repeat: 01:30 on 2026-11-01 fires twice.
    assert_eq!(
        run(
            "0 30 1 * * *",
            ny.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap(),
            4
        ),
        all(&[
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-01T06:30:00Z",
            "2026-11-02T06:30:00Z"
        ])
    );
    // Both day fields: Friday the 13th only (August 2027 is the next).
    assert_eq!(
        run(
            "0 0 12 13 * 6",
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
                .unwrap()
                .with_timezone(&chrono_tz::UTC),
            1
        ),
        all(&["2027-08-13T12:00:00Z"])
    );
}
