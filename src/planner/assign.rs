//! "Add to queue": a submission with `slot` = `next` gets the first free slot of its account's
//! calendar at or after now, within the horizon. The candidates are computed here (cron in the
//! account's zone); the ledger's script takes the first of them that is free and records the post in
//! the same step.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

use super::{Calendar, Calendars, PlanError};
use crate::posts::{Candidate, Created, Slotted, Submission};

/// Candidates offered to the script per call: the first call usually decides; a full stretch of the
/// calendar is walked in further calls.
const CHUNK: usize = 64;

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
        // A post recorded already (an entry read again after a crash) is compared first, as a
        // plain submission is: whatever became of the calendar since must not reject it.
        if self.ledger.exists(id).await? {
            return Ok(Assigned::Existing(self.ledger.compare(id, sub).await?));
        }
        let cal = match self.get(&sub.account).await? {
            Some(c) => c,
            None => {
                return Ok(Assigned::NoCalendar(format!(
                    "no_calendar: field `slot` is `next` but account {:?} has no posting calendar; set one with `tiktok-poster calendar set {} --tz ZONE --slot CRON`, or give `publish_at` instead",
                    sub.account, sub.account
                )));
            }
        };
        let now = Utc::now();
        let horizon_end = now + chrono::Duration::days(i64::from(cal.settings.horizon_days));
        let mut instants = cal
            .schedule
            .instants_from(now)
            .take_while(|t| *t <= horizon_end);
        loop {
            let chunk: Vec<Candidate> = instants
                .by_ref()
                .take(CHUNK)
                .map(|t| (t.timestamp_millis(), local_text(&cal, t)))
                .collect();
            if chunk.is_empty() {
                return Ok(Assigned::Full(format!(
                    "calendar_full: no free slot in the calendar of {:?} within its horizon of {} days (until {}); add slots, raise --daily-budget or --horizon-days with `tiktok-poster calendar set`, or give `publish_at`",
                    sub.account,
                    cal.settings.horizon_days,
                    local_text(&cal, horizon_end)
                )));
            }
            match self
                .ledger
                .create_in_slot(id, sub, extra, &chunk, cal.rules())
                .await?
            {
                Slotted::Taken(i) => {
                    let at = chunk
                        .get(i)
                        .and_then(|(_, text)| DateTime::parse_from_rfc3339(text).ok())
                        .ok_or_else(|| {
                            PlanError::Invalid("the slot taken is not one offered".into())
                        })?;
                    return Ok(Assigned::Slot(at));
                }
                Slotted::Exists => {
                    return Ok(Assigned::Existing(self.ledger.compare(id, sub).await?));
                }
                Slotted::NoneFree => continue,
            }
        }
    }
}
