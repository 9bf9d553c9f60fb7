//! The feed's format rules, and the feed read back by an independent parser (Python's
//! `icalendar`), hostile titles included.

use std::io::Write;
use std::process::{Command, Stdio};

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn item(id: &str, at: &str, title: Option<&str>, state: &str, sequence: u32) -> FeedItem {
    FeedItem {
        id: id.to_owned(),
        at_ms: DateTime::parse_from_rfc3339(at).unwrap().timestamp_millis(),
        title: title.map(str::to_owned),
        state: state.to_owned(),
        sequence,
        url: None,
    }
}

/// The content lines with their folds undone.
fn unfolded(feed: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in feed.split("\r\n") {
        match l.strip_prefix(' ') {
            Some(cont) => out.last_mut().unwrap().push_str(cont),
            None => out.push(l.to_owned()),
        }
    }
    assert_eq!(out.pop().as_deref(), Some(""), "the feed ends with CRLF");
    out
}

fn prop<'a>(lines: &'a [String], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .collect()
}

/// Every physical line ends in CRLF (no bare CR or LF) and has at most 75 octets.
fn assert_well_formed(feed: &str) {
    assert!(feed.ends_with("\r\n"));
    for l in feed.split("\r\n") {
        assert!(
            !l.contains('\r') && !l.contains('\n'),
            "bare line break in {l:?}"
        );
        assert!(l.len() <= 75, "{} octets: {l:?}", l.len());
        assert!(
            !l.chars().any(|c| c.is_control() && c != '\t'),
            "control character in {l:?}"
        );
    }
}

#[test]
fn folds_at_75_octets_without_splitting_a_character() {
    // 'é' is 2 octets, '😀' is 4: the cut has to step back to a character boundary.
    let value = format!("{}{}", "a".repeat(70), "é😀".repeat(30));
    let mut out = String::new();
    line(&mut out, &format!("SUMMARY:{value}"));
    let physical: Vec<&str> = out.trim_end_matches("\r\n").split("\r\n").collect();
    assert!(physical.len() > 3);
    // "SUMMARY:" (8) + 70 'a' is 78: the first line takes 75 octets of ASCII exactly.
    assert_eq!(physical[0].len(), 75);
    for l in &physical[1..] {
        assert!(l.starts_with(' '));
        assert!(l.len() <= 75, "{}", l.len());
        // The budget is used: a line ends short only by less than one character (at most 3).
        assert!(
            l.len() >= 72 || std::ptr::eq(l, physical.last().unwrap()),
            "{}",
            l.len()
        );
    }
    let back: String = physical
        .iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { *l } else { &l[1..] })
        .collect();
    assert_eq!(back, format!("SUMMARY:{value}"));

    // A line of exactly 75 octets is not folded; 76 is.
    let mut out = String::new();
    line(&mut out, &"x".repeat(75));
    assert_eq!(out, format!("{}\r\n", "x".repeat(75)));
    let mut out = String::new();
    line(&mut out, &"x".repeat(76));
    assert_eq!(out, format!("{}\r\n x\r\n", "x".repeat(75)));
}

#[test]
fn text_is_escaped_and_controls_cannot_break_lines() {
    assert_eq!(text(r"a\b;c,d"), r"a\\b\;c\,d");
    assert_eq!(text("one\ntwo\r\nthree\rfour"), r"one\ntwo\nthree\nfour");
    assert_eq!(
        text("bell\u{7}nul\u{0}esc\u{1b}nel\u{85}ls\u{2028}tab\t"),
        "bell nul esc nel ls tab\t"
    );
    assert_eq!(text("emoji 😀 ünïcode: ok"), "emoji 😀 ünïcode: ok");

    let feed = render(
        "acct",
        &[item(
            "p1",
            "2026-06-02T07:00:00Z",
            Some("line1\r\nBEGIN:VEVENT\rEND:VCALENDAR\nx;y,z\\"),
            "queued",
            0,
        )],
        now(),
    );
    assert_well_formed(&feed);
    let lines = unfolded(&feed);
    assert_eq!(prop(&lines, "BEGIN"), vec!["VCALENDAR", "VEVENT"]);
    assert_eq!(prop(&lines, "END"), vec!["VEVENT", "VCALENDAR"]);
    assert_eq!(
        prop(&lines, "SUMMARY"),
        vec![r"acct: line1\nBEGIN:VEVENT\nEND:VCALENDAR\nx\;y\,z\\"]
    );
}

#[test]
fn events_carry_uid_times_status_and_sequence() {
    let mut published = item("p2", "2026-06-03T18:30:00Z", Some("Hello"), "published", 0);
    published.url = Some("https://www.tiktok.com/@u/video/7".to_owned());
    let items = [
        item("p1", "2026-06-02T07:00:00Z", None, "cancelled", 3),
        published,
        item("p3", "2026-06-04T09:00:00Z", Some("   "), "queued", 1),
        item("p4", "2026-06-04T10:00:00Z", Some("x"), "inbox", 0),
    ];
    let feed = render("acct", &items, now());
    assert_well_formed(&feed);
    let lines = unfolded(&feed);
    assert_eq!(prop(&lines, "VERSION"), vec!["2.0"]);
    assert_eq!(prop(&lines, "CALSCALE"), vec!["GREGORIAN"]);
    assert_eq!(prop(&lines, "X-WR-CALNAME"), vec!["TikTok: acct"]);
    assert_eq!(prop(&lines, "PRODID").len(), 1);
    assert_eq!(
        prop(&lines, "UID"),
        vec![
            "p1@tiktok-poster",
            "p2@tiktok-poster",
            "p3@tiktok-poster",
            "p4@tiktok-poster"
        ]
    );
    assert_eq!(prop(&lines, "DTSTAMP"), vec!["20260601T080000Z"; 4]);
    assert_eq!(
        prop(&lines, "DTSTART"),
        vec![
            "20260602T070000Z",
            "20260603T183000Z",
            "20260604T090000Z",
            "20260604T100000Z"
        ]
    );
    assert_eq!(
        prop(&lines, "DTEND"),
        vec![
            "20260602T071500Z",
            "20260603T184500Z",
            "20260604T091500Z",
            "20260604T101500Z"
        ]
    );
    assert_eq!(
        prop(&lines, "STATUS"),
        vec!["CANCELLED", "CONFIRMED", "TENTATIVE", "CONFIRMED"]
    );
    assert_eq!(prop(&lines, "SEQUENCE"), vec!["3", "0", "1", "0"]);
    assert_eq!(
        prop(&lines, "SUMMARY"),
        vec![
            "acct: (no title)",
            "acct: Hello",
            "acct: (no title)",
            "acct: x"
        ]
    );
    assert_eq!(
        prop(&lines, "URL"),
        vec!["https://www.tiktok.com/@u/video/7"]
    );
    assert_eq!(
        prop(&lines, "DESCRIPTION"),
        vec![
            "State: cancelled",
            r"State: published\nhttps://www.tiktok.com/@u/video/7",
            "State: queued",
            "State: inbox"
        ]
    );
}

#[test]
fn long_titles_are_cut_at_60_characters() {
    let long = "é".repeat(2200);
    let feed = render(
        "acct",
        &[item("p", "2026-06-02T07:00:00Z", Some(&long), "queued", 0)],
        now(),
    );
    assert_well_formed(&feed);
    let lines = unfolded(&feed);
    assert_eq!(
        prop(&lines, "SUMMARY"),
        vec![format!("acct: {}…", "é".repeat(60))]
    );
    let exact = "b".repeat(60);
    let feed = render(
        "acct",
        &[item("p", "2026-06-02T07:00:00Z", Some(&exact), "queued", 0)],
        now(),
    );
    assert_eq!(
        prop(&unfolded(&feed), "SUMMARY"),
        vec![format!("acct: {exact}")]
    );
}

#[test]
fn a_url_that_is_not_plain_stays_out_of_the_url_property() {
    let mut it = item("p", "2026-06-02T07:00:00Z", Some("t"), "published", 0);
    it.url = Some("https://x.example/a b\r\nATTENDEE:evil".to_owned());
    let feed = render("acct", &[it], now());
    assert_well_formed(&feed);
    let lines = unfolded(&feed);
    assert!(prop(&lines, "URL").is_empty());
    assert!(prop(&lines, "ATTENDEE").is_empty());
    assert_eq!(
        prop(&lines, "DESCRIPTION"),
        vec![r"State: published\nhttps://x.example/a b\nATTENDEE:evil"]
    );
}

/// Reads a feed on stdin with Python's `icalendar` and prints its events as JSON.
const PY_READER: &str = r#"
import json, sys
try:
    import icalendar
except ImportError:
    sys.stderr.write("the Python module icalendar is missing\n")
    sys.exit(3)
def iso(v):
    return v.isoformat() if hasattr(v, "isoformat") else str(v)
raw = sys.stdin.buffer.read()
cal = icalendar.Calendar.from_ical(raw)
events = []
for ev in cal.walk("VEVENT"):
    events.append({
        "uid": str(ev.get("UID")),
        "dtstart": iso(ev.decoded("DTSTART")),
        "dtend": iso(ev.decoded("DTEND")),
        "status": str(ev.get("STATUS")),
        "sequence": int(ev.get("SEQUENCE", -1)),
        "summary": str(ev.get("SUMMARY")),
        "description": str(ev.get("DESCRIPTION")),
        "url": str(ev.get("URL")) if ev.get("URL") is not None else None,
    })
print(json.dumps({
    "calname": str(cal.get("X-WR-CALNAME")),
    "version": str(cal.get("VERSION")),
    "errors": [str(e) for c in cal.walk() for e in getattr(c, "errors", [])],
    "events": events,
}))
"#;

const INSTALL: &str =
    "install it with `python3 -m pip install icalendar==7.3.2` (CI installs the same)";

fn python_parse(feed: &str) -> serde_json::Value {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY_READER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): install Python 3, then run {INSTALL}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(feed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) {
        panic!("{}: run {INSTALL}", stderr.trim());
    }
    assert!(
        out.status.success(),
        "Python's icalendar refused the feed: {stderr}\n{feed}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The reader is a real check: a line that is no content line, or a bad DTSTART, is reported.
#[test]
fn pythons_icalendar_reports_a_broken_feed() {
    let broken = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:2026bad\r\n\
        DTEND:20260101T000000Z\r\nSEQUENCE:0\r\nstray text\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    let v = python_parse(broken);
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(2), "{v}");
}

#[test]
fn pythons_icalendar_reads_the_feed_back() {
    // Under 60 characters, so the SUMMARY holds all of it.
    let hostile = "Ü😀\"q\"<b>;a,b\\c\r\nSUMMARY:x\rEND:VEVENT\n\u{0}\u{7}\u{1b}\u{85}\u{2028}z ";
    let long = format!("{}{}", "ß😀".repeat(1000), "x".repeat(200)); // 2200 characters
    let mut published = item("p2", "2026-06-03T18:30:00Z", Some(&long), "published", 0);
    published.url = Some("https://www.tiktok.com/@u/video/7".to_owned());
    let items = [
        item("p1", "2026-06-02T07:00:00Z", Some(hostile), "cancelled", 4),
        published,
        item("p3,x;y", "2026-06-04T09:00:00Z", None, "queued", 1),
    ];
    // Account names are `[A-Za-z0-9._-]`; Python reads X-WR-CALNAME as an unknown property
    // and would not unescape it.
    let feed = render("shop.main-1", &items, now());
    assert_well_formed(&feed);
    let v = python_parse(&feed);
    assert_eq!(v["version"], "2.0");
    assert_eq!(v["calname"], "TikTok: shop.main-1");
    assert_eq!(v["errors"], serde_json::json!([]), "{feed}");
    let ev = v["events"].as_array().unwrap();
    assert_eq!(ev.len(), 3, "{feed}");
    let field = |k: &str| ev.iter().map(|e| e[k].clone()).collect::<Vec<_>>();
    assert_eq!(
        field("uid"),
        vec![
            "p1@tiktok-poster",
            "p2@tiktok-poster",
            "p3,x;y@tiktok-poster"
        ]
    );
    assert_eq!(
        field("dtstart"),
        vec![
            "2026-06-02T07:00:00+00:00",
            "2026-06-03T18:30:00+00:00",
            "2026-06-04T09:00:00+00:00"
        ]
    );
    assert_eq!(
        field("dtend"),
        vec![
            "2026-06-02T07:15:00+00:00",
            "2026-06-03T18:45:00+00:00",
            "2026-06-04T09:15:00+00:00"
        ]
    );
    assert_eq!(field("status"), vec!["CANCELLED", "CONFIRMED", "TENTATIVE"]);
    assert_eq!(field("sequence"), vec![4, 0, 1]);
    // The hostile title comes back as written, its line breaks as "\n" and its other controls as
    // spaces; the long one cut at 60 characters.
    let hostile_back = "Ü😀\"q\"<b>;a,b\\c\nSUMMARY:x\nEND:VEVENT\n     z";
    let long_back: String = long.chars().take(60).collect();
    assert_eq!(
        field("summary"),
        vec![
            format!("shop.main-1: {hostile_back}"),
            format!("shop.main-1: {long_back}…"),
            "shop.main-1: (no title)".to_owned()
        ]
    );
    assert_eq!(
        field("description"),
        vec![
            "State: cancelled",
            "State: published\nhttps://www.tiktok.com/@u/video/7",
            "State: queued"
        ]
    );
    assert_eq!(
        field("url"),
        vec![
            serde_json::Value::Null,
            "https://www.tiktok.com/@u/video/7".into(),
            serde_json::Value::Null
        ]
    );
}
