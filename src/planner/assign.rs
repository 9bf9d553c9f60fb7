//! "Add to queue": a submission with `slot` = `next` gets the first free slot of its account's
//! calendar at or after now, within the horizon. The candidates are computed here (cron in the
//! account's zone); the ledger's script takes the first of them that is free and records the post in
//! the same step.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::{Calendar, Calendars, PlanError};
use crate::posts::{Candidate, Created, Slotted, Submission};

/// Candidates offered to the script in its first call, which usually decides (each one costs an
/// RFC 3339 text and a script argument)…
const FIRST_CHUNK: usize = 16;
/// …and in each further call, walking a full stretch of the calendar.
const CHUNK: usize = 64;
/// Times a calendar that changed under the assignment is read again before the entry is left for
/// later.
const STALE_RETRIES: usize = 5;

/// What [`Calendars::assign`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assigned {
    /// Recorded in this slot.
    Slot(DateTime<FixedOffset>),
    /// The id existed: the same post, or other content.
    Existing(Created),
    /// No calendar: the rejection's reason.
    NoCalendar(String),
    /// No free slot within the horizon: the rejection's reason.
    Full(String),
}

/// A slot instant as the post hash and the CLI show it: RFC 3339 with the zone's offset.
pub fn local_text(cal: &Calendar, t: DateTime<Utc>) -> String {
    t.with_timezone(&cal.schedule.zone())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

impl Calendars {
    /// Records `sub` (which asks for `slot` = `next`) in its account's first free slot.
    pub async fn assign(
        &self,
        id: &str,
        sub: &Submission,
        extra: &[(&str, String)],
    ) -> Result<Assigned, PlanError> {
        let mut cal = self.get_fast(&sub.account).await?;
        for _ in 0..STALE_RETRIES {
            let Some(c) = cal else {
                return self
                    .unless_recorded(id, sub, || {
                        Assigned::NoCalendar(format!(
                            "no_calendar: field `slot` is `next` but account {:?} has no posting calendar; set one with `tiktok-poster calendar set {} --tz ZONE --slot CRON`, or give `publish_at` instead",
                            sub.account, sub.account
                        ))
                    })
                    .await;
            };
            match self.take_first_free(id, sub, extra, &c).await? {
                Some(done) => return Ok(done),
                // The calendar changed since this process read it: read it again.
                None => cal = self.get(&sub.account).await?,
            }
        }
        Err(PlanError::Invalid(format!(
            "the calendar of {:?} changed {STALE_RETRIES} times while a slot was chosen; submit the post again",
            sub.account
        )))
    }

    /// Walks the calendar's candidates in chunks; `None` when the script says the calendar is not
    /// the one `cal` is.
    async fn take_first_free(
        &self,
        id: &str,
        sub: &Submission,
        extra: &[(&str, String)],
        cal: &Calendar,
    ) -> Result<Option<Assigned>, PlanError> {
        let now = Utc::now();
        let horizon_end = now + chrono::Duration::days(i64::from(cal.settings.horizon_days));
        let mut instants = cal
            .schedule
            .instants_from(now)
            .take_while(|t| *t <= horizon_end);
        // A warming-up account's free slots respect each day's cap of its ramp.
        let caps = self.caps(&sub.account, cal.settings.daily_budget).await?;
        let mut size = FIRST_CHUNK;
        loop {
            let chunk: Vec<Candidate> = instants
                .by_ref()
                .take(size)
                .map(|t| {
                    let ms = t.timestamp_millis();
                    (ms, local_text(cal, t), caps.at(ms))
                })
                .collect();
            size = CHUNK;
            if chunk.is_empty() {
                return self
                    .unless_recorded(id, sub, || {
                        Assigned::Full(format!(
                            "calendar_full: no free slot in the calendar of {:?} within its horizon of {} days (until {}); add slots, raise --daily-budget or --horizon-days with `tiktok-poster calendar set`, or give `publish_at`",
                            sub.account,
                            cal.settings.horizon_days,
                            local_text(cal, horizon_end)
                        ))
                    })
                    .await
                    .map(Some);
            }
            let taken = self
                .ledger
                .create_in_slot(id, sub, extra, &chunk, cal.rules(), cal.settings.version)
                .await?;
            match taken {
                Slotted::Taken(i) => {
                    let at = chunk
                        .get(i)
                        .and_then(|(_, text, _)| DateTime::parse_from_rfc3339(text).ok())
                        .ok_or_else(|| {
                            PlanError::Invalid("the slot taken is not one offered".into())
                        })?;
                    return Ok(Some(Assigned::Slot(at)));
                }
                Slotted::Exists => {
                    return Ok(Some(Assigned::Existing(
                        self.ledger.compare(id, sub).await?,
                    )));
                }
                Slotted::Stale => return Ok(None),
                Slotted::NoneFree => {}
            }
        }
    }

    /// The `rejection`, unless the post is recorded already (an entry read again after a
    /// crash is compared as a plain submission is: whatever became of the calendar since must not
    /// reject it).
    async fn unless_recorded(
        &self,
        id: &str,
        sub: &Submission,
        rejection: impl FnOnce() -> Assigned,
    ) -> Result<Assigned, PlanError> {
        if self.ledger.exists(id).await? {
            return Ok(Assigned::Existing(self.ledger.compare(id, sub).await?));
        }
        Ok(rejection())
    }
}
