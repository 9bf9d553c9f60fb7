//! One week of an account's calendar, Monday to Sunday in its zone: the data behind the calendar
//! page and `calendar week --json`, built without Redis from the schedule and the posts read
//! for it.
//!
//! A week is half-open, `[Monday 00:00, next Monday 00:00)` local, so a day is as long as the zone
//! makes it: 25 hours on an autumn-back Sunday in Berlin, 23 on a spring-forward one, and a day
//! whose midnight falls in a gap (Santiago's September change) starts at 01:00, by the rule of
//! [`slots::resolve`]. Each instant belongs to the local date it has in the zone, which is why
//! a post or slot can never fall between two days or into two of them.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::slots::{self, Schedule};

/// A post as the week shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WeekPost {
    /// The post id.
    pub id: String,
    /// Its title, when it has one.
    pub title: Option<String>,
    /// Its state's name (`queued`, `published`, …).
    pub state: String,
    /// The live post's address, once TikTok gave one.
    pub url: Option<String>,
    /// How the post did at its last stats read, once read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<PostStats>,
}

/// A published post's counts at its last stats read (`video/query`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostStats {
    /// Views.
    pub views: u64,
    /// Likes.
    pub likes: u64,
    /// Comments.
    pub comments: u64,
    /// Shares.
    pub shares: u64,
    /// Which read: `1h`, `1d` or `7d` after publishing.
    pub read: String,
    /// When it was read (ms).
    pub read_ms: i64,
}

/// One line of a day: a slot instant, a post, or a post in its slot.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The instant, RFC 3339 with the zone's offset at that instant.
    pub at: String,
    /// The same instant in epoch milliseconds (not in the JSON: `at` says it there).
    #[serde(skip)]
    pub at_ms: i64,
    /// Whether the instant is one of the calendar's slots.
    pub slot: bool,
    /// Whether a `slot next` could take it now: a slot with no post, not past, and free under the
    /// spacing and budget rules.
    pub free: bool,
    /// The post at this instant, if any.
    pub post: Option<WeekPost>,
}

/// One local day of the week.
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// The local date.
    pub date: NaiveDate,
    /// Its weekday, `Mon` … `Sun`.
    pub weekday: String,
    /// Its slots and posts, by time.
    pub entries: Vec<Entry>,
}

/// A week of one account's calendar.
#[derive(Debug, Clone, Serialize)]
pub struct Week {
    /// The account.
    pub account: String,
    /// The calendar's IANA zone.
    pub zone: String,
    /// The week's Monday.
    pub week: NaiveDate,
    /// The Monday before.
    pub prev: NaiveDate,
    /// The Monday after.
    pub next: NaiveDate,
    /// Whether the account's calendar is paused.
    pub paused: bool,
    /// Monday to Sunday.
    pub days: Vec<Day>,
}

/// The Monday of the week holding the local date `date`. The zone does not change which Monday
/// that is; it is taken so that every week function reads the same way at the call site.
pub fn week_start(_zone: Tz, date: NaiveDate) -> NaiveDate {
    date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
}

/// The local midnight that starts `date`, as an instant (moved forward when it falls in a gap).
fn day_start(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    slots::resolve(zone, midnight).unwrap_or_else(|| midnight.and_utc())
}

/// The week starting on `monday` as the UTC half-open range `[Monday 00:00, next Monday 00:00)`
/// local.
pub fn week_range(zone: Tz, monday: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    (
        day_start(zone, monday),
        day_start(zone, monday + Duration::days(7)),
    )
}

/// Builds the week starting on `monday`: each day's slot instants with the posts holding them, and
/// the posts off any slot at their own instants, sorted by time. `posts` are the account's posts
/// with the instant each holds (ms); those outside the week are ignored. A slot is `free` when no
/// post holds it, it is not before `now_ms`, and `is_free` (the spacing and budget rule) says so.
/// Several posts at one instant give one entry each, in id order.
pub fn build_week(
    account: &str,
    schedule: &Schedule,
    monday: NaiveDate,
    paused: bool,
    now_ms: i64,
    posts: Vec<(i64, WeekPost)>,
    is_free: impl Fn(i64) -> bool,
) -> Week {
    let zone = schedule.zone();
    let (start, end) = week_range(zone, monday);
    let (start_ms, end_ms) = (start.timestamp_millis(), end.timestamp_millis());

    let mut by_instant: HashMap<i64, Vec<WeekPost>> = HashMap::new();
    for (at, post) in posts {
        if (start_ms..end_ms).contains(&at) {
            by_instant.entry(at).or_default().push(post);
        }
    }

    let mut entries: Vec<Entry> = Vec::with_capacity(by_instant.len() + 64);
    for t in schedule.instants_from(start).take_while(|t| *t < end) {
        let at_ms = t.timestamp_millis();
        match by_instant.remove(&at_ms) {
            Some(held) => {
                entries.extend(held.into_iter().map(|p| entry(zone, at_ms, true, Some(p))))
            }
            None => {
                let mut e = entry(zone, at_ms, true, None);
                e.free = at_ms >= now_ms && is_free(at_ms);
                entries.push(e);
            }
        }
    }
    for (at_ms, held) in by_instant {
        entries.extend(held.into_iter().map(|p| entry(zone, at_ms, false, Some(p))));
    }
    entries.sort_by(|a, b| {
        (a.at_ms, a.post.as_ref().map(|p| p.id.as_str()))
            .cmp(&(b.at_ms, b.post.as_ref().map(|p| p.id.as_str())))
    });

    let mut days: Vec<Day> = (0..7)
        .map(|i| {
            let date = monday + Duration::days(i);
            Day {
                date,
                weekday: date.weekday().to_string(),
                entries: Vec::new(),
            }
        })
        .collect();
    for e in entries {
        let Some(t) = DateTime::from_timestamp_millis(e.at_ms) else {
            continue;
        };
        let offset = (t.with_timezone(&zone).date_naive() - monday).num_days();
        if let Some(day) = usize::try_from(offset).ok().and_then(|i| days.get_mut(i)) {
            day.entries.push(e);
        }
    }

    Week {
        account: account.to_owned(),
        zone: zone.name().to_owned(),
        week: monday,
        prev: monday - Duration::days(7),
        next: monday + Duration::days(7),
        paused,
        days,
    }
}

fn entry(zone: Tz, at_ms: i64, slot: bool, post: Option<WeekPost>) -> Entry {
    let at = DateTime::from_timestamp_millis(at_ms)
        .map(|t| {
            t.with_timezone(&zone)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        })
        .unwrap_or_default();
    Entry {
        at,
        at_ms,
        slot,
        free: false,
        post,
    }
}

#[cfg(test)]
#[path = "week_tests.rs"]
mod tests;
