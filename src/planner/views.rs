//! What the CLI, the page and the feed read of a calendar: its slot instants with the posts holding
//! them, a week, the feed. Reads only.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;

use super::assign::local_text;
use super::{Calendars, PlanError};
use crate::calendar::feed::{self, FeedItem};
use crate::calendar::settings::YEARS;
use crate::calendar::week::WeekPost;
use crate::calendar::{Week, build_week, is_free, week_range, week_start};
use crate::db::now_ms;
use crate::posts::PostRecord;

/// Slot instants `calendar slots` lists at most.
pub const MAX_SLOTS_LISTED: usize = 1000;

/// One slot instant and the post holding it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlotView {
    /// RFC 3339 with the zone's offset at that instant.
    pub at: String,
    /// The id of the post holding the slot, if any.
    pub post: Option<String>,
}

impl Calendars {
    /// The next `count` slot instants at or after `from` (any instant: the horizon bounds only
    /// what `slot` = `next` may take), with the post holding each.
    pub async fn slots(
        &self,
        account: &str,
        from: DateTime<Utc>,
        count: usize,
    ) -> Result<Vec<SlotView>, PlanError> {
        let cal = self.require(account).await?;
        if count > MAX_SLOTS_LISTED {
            return Err(PlanError::Invalid(format!(
                "--count {count} is more than {MAX_SLOTS_LISTED}; list fewer, or start later with --from"
            )));
        }
        let instants: Vec<DateTime<Utc>> = cal.schedule.instants_from(from).take(count).collect();
        let (Some(first), Some(last)) = (instants.first(), instants.last()) else {
            return Ok(Vec::new());
        };
        let mut holder: HashMap<i64, String> = HashMap::new();
        for (id, ms) in self
            .ledger
            .held_between(account, first.timestamp_millis(), last.timestamp_millis())
            .await?
        {
            holder.entry(ms).or_insert(id);
        }
        Ok(instants
            .into_iter()
            .map(|t| SlotView {
                at: local_text(&cal, t),
                post: holder.get(&t.timestamp_millis()).cloned(),
            })
            .collect())
    }
}

/// Posts a week or a feed shows at most (a week of 500 posts is the page's design load).
pub const MAX_POSTS_SHOWN: usize = 2_000;
/// The feed's span: posts from this long ago…
const FEED_PAST_MS: i64 = 60 * DAY_MS;
/// …to this far ahead (submissions are at most a year ahead).
const FEED_AHEAD_MS: i64 = 400 * DAY_MS;
const DAY_MS: i64 = 24 * 3600 * 1000;

impl Calendars {
    /// The posts of an account between two instants, read in one round trip: (instant, record).
    async fn posts_between(
        &self,
        account: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, PostRecord)>, PlanError> {
        let listed = self
            .ledger
            .account_posts_between(account, from_ms, to_ms, MAX_POSTS_SHOWN)
            .await?;
        let ids: Vec<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        let records = self.ledger.get_many(&ids).await?;
        Ok(listed
            .into_iter()
            .zip(records)
            .filter_map(|((_, at), p)| p.map(|p| (at, p)))
            .collect())
    }

    /// The week holding `date` (default: today in the account's zone), Monday to Sunday in its
    /// zone: the calendar page and `calendar week --json`.
    pub async fn week(&self, account: &str, date: Option<NaiveDate>) -> Result<Week, PlanError> {
        let cal = self.require(account).await?;
        let zone = cal.schedule.zone();
        let date = date.unwrap_or_else(|| Utc::now().with_timezone(&zone).date_naive());
        if !YEARS.contains(&date.year()) {
            return Err(PlanError::Invalid(format!(
                "the week {date} is out of range; give a date from year {} to {}",
                YEARS.start(),
                YEARS.end()
            )));
        }
        let monday = week_start(zone, date);
        let (start, end) = week_range(zone, monday);
        let (start_ms, end_ms) = (start.timestamp_millis(), end.timestamp_millis());
        let posts = self.posts_between(account, start_ms, end_ms).await?;
        // The free rule needs the held posts up to a day (plus the spacing) around the week.
        let margin = DAY_MS + cal.settings.spacing_ms();
        let mut taken: Vec<i64> = self
            .ledger
            .held_between(account, start_ms - margin, end_ms + margin)
            .await?
            .into_iter()
            .map(|(_, ms)| ms)
            .collect();
        taken.sort_unstable();
        let shown = posts
            .into_iter()
            .map(|(at, p)| {
                (
                    at,
                    WeekPost {
                        id: p.id().unwrap_or_default().to_string(),
                        title: p.fields.get("title").cloned().filter(|t| !t.is_empty()),
                        state: p.state_name().to_string(),
                        url: p.url().map(str::to_string),
                        stats: stats_of(&p),
                    },
                )
            })
            .collect();
        let spacing = cal.settings.spacing_ms();
        let caps = self.caps(account, cal.settings.daily_budget).await?;
        Ok(build_week(
            account,
            &cal.schedule,
            monday,
            cal.settings.paused_ms.is_some(),
            now_ms(),
            shown,
            |t| is_free(t, &taken, spacing, caps.at(t)),
        ))
    }

    /// The account's feed when `token` is its feed token; `None` otherwise (the caller answers 404,
    /// the same as for an account without a calendar).
    pub async fn feed(&self, account: &str, token: &str) -> Result<Option<String>, PlanError> {
        if !self.feed_token_matches(account, token).await? {
            return Ok(None);
        }
        let now = now_ms();
        let items = self
            .posts_between(account, now - FEED_PAST_MS, now + FEED_AHEAD_MS)
            .await?
            .into_iter()
            .map(|(at, p)| FeedItem {
                id: p.id().unwrap_or_default().to_string(),
                at_ms: at,
                title: p.fields.get("title").cloned(),
                state: p.state_name().to_string(),
                sequence: u32::try_from(p.sequence()).unwrap_or(0),
                url: p.url().map(str::to_string),
            })
            .collect::<Vec<_>>();
        Ok(Some(feed::render(account, &items, Utc::now())))
    }
}

/// A post's counts at its last stats read, when there was one (unreadable counts are 0).
fn stats_of(p: &crate::posts::PostRecord) -> Option<crate::calendar::week::PostStats> {
    let read = p.stats_read()?;
    let n = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Some(crate::calendar::week::PostStats {
        views: n(p.view_count()),
        likes: n(p.like_count()),
        comments: n(p.comment_count()),
        shares: n(p.share_count()),
        read: read.chars().take(8).collect(),
        read_ms: p.stats_read_ms(),
    })
}
