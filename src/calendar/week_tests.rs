//! The week view across DST changes. Every expected instant and offset was worked out from the
//! zones' rules (and cross-checked with Python's `zoneinfo`), not copied from the code's output.

use super::*;

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
}

fn post(id: &str, state: &str) -> WeekPost {
    WeekPost {
        id: id.to_owned(),
        title: Some(format!("title of {id}")),
        state: state.to_owned(),
        url: None,
        stats: None,
    }
}

/// Each day's entries as `at` strings, with the post id after a space when one is there.
fn lines(week: &Week) -> Vec<Vec<String>> {
    week.days
        .iter()
        .map(|d| {
            d.entries
                .iter()
                .map(|e| match &e.post {
                    Some(p) => format!("{} {}", e.at, p.id),
                    None => e.at.clone(),
                })
                .collect()
        })
        .collect()
}

fn hours(range: (DateTime<Utc>, DateTime<Utc>)) -> i64 {
    (range.1 - range.0).num_hours()
}

#[test]
fn week_start_is_the_monday() {
    let z = chrono_tz::Europe::Berlin;
    assert_eq!(week_start(z, date("2026-10-21")), date("2026-10-19"));
    assert_eq!(week_start(z, date("2026-10-19")), date("2026-10-19"));
    assert_eq!(week_start(z, date("2026-10-25")), date("2026-10-19"));
    assert_eq!(week_start(z, date("2027-01-01")), date("2026-12-28"));
    assert_eq!(week_start(z, date("2028-02-29")), date("2028-02-28"));
}

#[test]
fn berlin_october_week_has_a_25_hour_sunday() {
    // 2026-10-25 03:00 CEST (+2) goes back to 02:00 CET (+1): 02:30 happens twice.
    let s = Schedule::parse(
        "Europe/Berlin",
        &["30 2 * * SAT,SUN", "0 9 * * *", "30 23 * * SUN"],
    )
    .unwrap();
    let monday = date("2026-10-19");
    let range = week_range(s.zone(), monday);
    assert_eq!(
        range.0,
        DateTime::parse_from_rfc3339("2026-10-18T22:00:00Z").unwrap()
    );
    assert_eq!(
        range.1,
        DateTime::parse_from_rfc3339("2026-10-25T23:00:00Z").unwrap()
    );
    assert_eq!(hours(range), 7 * 24 + 1);

    let w = build_week("acct", &s, monday, false, 0, vec![], |_| true);
    let l = lines(&w);
    assert_eq!(l[0], vec!["2026-10-19T09:00:00+02:00"]);
    assert_eq!(
        l[5],
        vec!["2026-10-24T02:30:00+02:00", "2026-10-24T09:00:00+02:00"]
    );
    // Sunday: 02:30 once (its first occurrence, summer time), 09:00 in winter time, and 23:30 in
    // the day's 25th hour still on Sunday.
    assert_eq!(
        l[6],
        vec![
            "2026-10-25T02:30:00+02:00",
            "2026-10-25T09:00:00+01:00",
            "2026-10-25T23:30:00+01:00"
        ]
    );
    assert_eq!(w.days[6].entries[0].at_ms, ms("2026-10-25T00:30:00Z"));
    assert_eq!(w.days[6].entries[2].at_ms, ms("2026-10-25T22:30:00Z"));
    assert_eq!(w.days[6].weekday, "Sun");
    assert_eq!(w.days[6].date, date("2026-10-25"));
}

#[test]
fn new_york_march_week_moves_the_gap_slot_and_keeps_late_sunday() {
    // 2026-03-08 02:00 EST (-5) jumps to 03:00 EDT (-4): a 23-hour Sunday.
    let s = Schedule::parse("America/New_York", &["30 2 * * *"]).unwrap();
    let monday = date("2026-03-02");
    let range = week_range(s.zone(), monday);
    assert_eq!(
        range.0,
        DateTime::parse_from_rfc3339("2026-03-02T05:00:00Z").unwrap()
    );
    assert_eq!(
        range.1,
        DateTime::parse_from_rfc3339("2026-03-09T04:00:00Z").unwrap()
    );
    assert_eq!(hours(range), 7 * 24 - 1);

    let posts = vec![
        // Sunday 23:30 EDT: still Sunday, though 03:30 UTC on Monday.
        (ms("2026-03-09T03:30:00Z"), post("late", "queued")),
        // Next Monday 00:00 EDT: the next week's, not this one's.
        (ms("2026-03-09T04:00:00Z"), post("next-week", "queued")),
        // This Monday 00:00 EST: the first instant of the week.
        (ms("2026-03-02T05:00:00Z"), post("first", "queued")),
    ];
    let w = build_week("acct", &s, monday, false, 0, posts, |_| true);
    let l = lines(&w);
    assert_eq!(
        l[0],
        vec![
            "2026-03-02T00:00:00-05:00 first",
            "2026-03-02T02:30:00-05:00"
        ]
    );
    assert_eq!(
        l[6],
        vec![
            "2026-03-08T03:30:00-04:00",
            "2026-03-08T23:30:00-04:00 late"
        ]
    );
    assert!(
        !w.days
            .iter()
            .flat_map(|d| &d.entries)
            .any(|e| e.post.as_ref().is_some_and(|p| p.id == "next-week"))
    );
    assert!(!w.days[0].entries[0].slot && w.days[0].entries[1].slot);
}

#[test]
fn santiago_days_start_at_one_when_midnight_is_skipped() {
    // 2026-09-06 00:00 -04 jumps to 01:00 -03: Sunday starts at 01:00.
    let s = Schedule::parse("America/Santiago", &["0 0 * * *"]).unwrap();
    let monday = date("2026-08-31");
    let range = week_range(s.zone(), monday);
    assert_eq!(
        range.0,
        DateTime::parse_from_rfc3339("2026-08-31T04:00:00Z").unwrap()
    );
    assert_eq!(
        range.1,
        DateTime::parse_from_rfc3339("2026-09-07T03:00:00Z").unwrap()
    );
    assert_eq!(hours(range), 7 * 24 - 1);
    let w = build_week("acct", &s, monday, false, 0, vec![], |_| true);
    let l = lines(&w);
    assert_eq!(l[5], vec!["2026-09-05T00:00:00-04:00"]);
    assert_eq!(l[6], vec!["2026-09-06T01:00:00-03:00"]);
    assert!(l.iter().all(|d| d.len() == 1));

    // The way back: 2026-04-05 00:00 -03 goes back to 23:00 -04 on Saturday the 4th, so Saturday
    // has 25 hours and its 23:30 comes twice; the first one counts.
    let s = Schedule::parse("America/Santiago", &["30 23 * * *"]).unwrap();
    let monday = date("2026-03-30");
    let range = week_range(s.zone(), monday);
    assert_eq!(
        range.0,
        DateTime::parse_from_rfc3339("2026-03-30T03:00:00Z").unwrap()
    );
    assert_eq!(
        range.1,
        DateTime::parse_from_rfc3339("2026-04-06T04:00:00Z").unwrap()
    );
    assert_eq!(hours(range), 7 * 24 + 1);
    let w = build_week("acct", &s, monday, false, 0, vec![], |_| true);
    let l = lines(&w);
    assert_eq!(l[5], vec!["2026-04-04T23:30:00-03:00"]);
    assert_eq!(l[6], vec!["2026-04-05T23:30:00-04:00"]);
}

#[test]
fn posts_on_and_off_slots_and_which_slots_are_free() {
    let s = Schedule::parse("UTC", &["0 9,18 * * *"]).unwrap();
    let monday = date("2026-06-01");
    let now = ms("2026-06-03T12:00:00Z"); // Wednesday noon
    let blocked = ms("2026-06-05T18:00:00Z"); // Friday 18:00, refused by spacing or budget
    let posts = vec![
        (ms("2026-06-01T09:00:00Z"), post("pub", "published")),
        (ms("2026-06-04T09:00:00Z"), post("b", "queued")),
        (ms("2026-06-04T09:00:00Z"), post("a", "queued")),
        (ms("2026-06-04T10:15:00Z"), post("fixed", "queued")),
        (ms("2026-06-08T09:00:00Z"), post("later", "queued")),
        (ms("2026-05-31T23:59:00Z"), post("before", "queued")),
    ];
    let w = build_week("acct", &s, monday, true, now, posts, |t| t != blocked);
    assert_eq!(
        lines(&w)[3],
        vec![
            "2026-06-04T09:00:00+00:00 a",
            "2026-06-04T09:00:00+00:00 b",
            "2026-06-04T10:15:00+00:00 fixed",
            "2026-06-04T18:00:00+00:00",
        ]
    );
    let flags = |d: usize| -> Vec<(bool, bool)> {
        w.days[d].entries.iter().map(|e| (e.slot, e.free)).collect()
    };
    // Monday: a published post holds 09:00; 18:00 has passed, so it is never free.
    assert_eq!(flags(0), vec![(true, false), (true, false)]);
    assert_eq!(
        w.days[0].entries[0].post.as_ref().unwrap().state,
        "published"
    );
    assert_eq!(flags(1), vec![(true, false), (true, false)]);
    // Wednesday: 09:00 is past, 18:00 is ahead and free.
    assert_eq!(flags(2), vec![(true, false), (true, true)]);
    // Thursday: both posts in the slot, the fixed-time one off it, then a free slot.
    assert_eq!(
        flags(3),
        vec![(true, false), (true, false), (false, false), (true, true)]
    );
    // Friday: 18:00 is refused by the free rule.
    assert_eq!(flags(4), vec![(true, true), (true, false)]);
    let all: Vec<&Entry> = w.days.iter().flat_map(|d| &d.entries).collect();
    assert_eq!(all.len(), 16);
    assert!(all.iter().all(|e| {
        e.post
            .as_ref()
            .is_none_or(|p| p.id != "later" && p.id != "before")
    }));
    assert!(w.paused);
    assert_eq!((w.prev, w.next), (date("2026-05-25"), date("2026-06-08")));

    // A slot at exactly `now` is still free.
    let w = build_week(
        "acct",
        &s,
        monday,
        false,
        ms("2026-06-03T18:00:00Z"),
        vec![],
        |_| true,
    );
    assert_eq!(
        w.days[2].entries.iter().map(|e| e.free).collect::<Vec<_>>(),
        vec![false, true]
    );
}

#[test]
fn json_has_the_contract_fields_and_not_at_ms() {
    let s = Schedule::parse("Europe/Berlin", &["0 9 * * MON"]).unwrap();
    let mut p = post("p1", "published");
    p.url = Some("https://www.tiktok.com/@u/video/1".to_owned());
    let w = build_week(
        "acct",
        &s,
        date("2026-06-01"),
        false,
        0,
        vec![(ms("2026-06-01T07:00:00Z"), p)],
        |_| true,
    );
    let v = serde_json::to_value(&w).unwrap();
    assert_eq!(v["account"], "acct");
    assert_eq!(v["zone"], "Europe/Berlin");
    assert_eq!(v["week"], "2026-06-01");
    assert_eq!(v["prev"], "2026-05-25");
    assert_eq!(v["next"], "2026-06-08");
    assert_eq!(v["paused"], false);
    assert_eq!(v["days"].as_array().unwrap().len(), 7);
    assert_eq!(v["days"][0]["weekday"], "Mon");
    assert_eq!(v["days"][0]["date"], "2026-06-01");
    let e = &v["days"][0]["entries"][0];
    assert_eq!(e["at"], "2026-06-01T09:00:00+02:00");
    assert_eq!(e["slot"], true);
    assert_eq!(e["free"], false);
    assert_eq!(e["post"]["id"], "p1");
    assert_eq!(e["post"]["state"], "published");
    assert_eq!(e["post"]["url"], "https://www.tiktok.com/@u/video/1");
    assert!(e.get("at_ms").is_none());
}
