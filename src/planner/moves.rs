//! The only ways a post with a time moves: `calendar reslot` (one post, on request) and a resume
//! (the posts whose time passed while the account was paused). A post that has started, or holds a
//! `publish_id`, never moves. Each move is the ledger's script, which checks again that the instant
//! is free in the same step as the write; when another writer took it meanwhile, the plan is made
//! again from what Redis holds now.

use chrono::{DateTime, FixedOffset, Utc};
use redis::AsyncCommands;

use super::assign::local_text;
use super::{Calendar, Calendars, Caps, PlanError};
use crate::calendar::settings::PAUSED_FIELD;
use crate::calendar::{first_free, first_spaced};
use crate::db::now_ms;
use crate::posts::{Field, Moved, PostRecord, Rules, State};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Plans made again after another writer took an instant first, before giving up.
const REPLANS: usize = 5;
/// How far before the pause a post's own instant may lie and still be moved at resume (a post
/// deferred into the pause, e.g. by the daily budget).
const BEFORE_PAUSE_MS: i64 = 7 * DAY_MS;

/// How long after a resume the first moved post goes: the pause ends after the posts are moved, so
/// no worker holds a moved post back again for a pause that is ending.
const RESUME_LEAD_MS: i64 = 5_000;

/// What a resume did.
#[derive(Debug, Clone, Default)]
pub struct Resumed {
    /// Whether the account was paused.
    pub was_paused: bool,
    /// The posts moved: (post id, new instant in the account's zone).
    pub moved: Vec<(String, String)>,
}

fn waiting(p: &PostRecord) -> bool {
    matches!(
        p.current(),
        Some(State::Scheduled | State::Queued | State::Deferred)
    ) && p.publish_id().is_none()
        && p.lease_owner().is_none()
}

impl Calendars {
    /// The instants the account's posts hold from `from_ms` on, sorted, without `except`.
    async fn taken(
        &self,
        cal: &Calendar,
        from_ms: i64,
        except: &[String],
    ) -> Result<Vec<i64>, PlanError> {
        let mut v: Vec<i64> = self
            .ledger
            .held_between(&cal.account, from_ms, i64::MAX)
            .await?
            .into_iter()
            .filter(|(id, _)| !except.contains(id))
            .map(|(_, ms)| ms)
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The first free slot for a post at or after `from`, given `taken` and the account's `caps`.
    fn next_slot(
        cal: &Calendar,
        caps: &Caps,
        taken: &[i64],
        from: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let horizon_end = now + chrono::Duration::days(i64::from(cal.settings.horizon_days));
        first_free(
            cal.schedule.instants_from(from),
            taken,
            cal.settings.min_spacing,
            |ms| caps.at(ms),
            horizon_end,
        )
    }

    /// Moves one post that has not started: to the next free slot of its account's calendar, or to
    /// `at` (which must be in the future and free for it). Returns the new instant in the account's
    /// zone.
    pub async fn reslot(
        &self,
        post_id: &str,
        at: Option<DateTime<FixedOffset>>,
    ) -> Result<String, PlanError> {
        let post = self
            .ledger
            .get(post_id)
            .await?
            .ok_or_else(|| PlanError::Invalid(format!("no post {post_id:?}")))?;
        let account = post.account().unwrap_or_default().to_string();
        let cal = self.require(&account).await?;
        let caps = self.caps(&account, cal.settings.daily_budget).await?;
        let me = [post_id.to_string()];
        for _ in 0..REPLANS {
            let (t, slot_text) = match at {
                Some(at) => {
                    let t = at.with_timezone(&Utc);
                    if t <= Utc::now() {
                        return Err(PlanError::Invalid(format!(
                            "--at {} is not in the future; give a later time, or leave --at out for the next free slot",
                            at.to_rfc3339()
                        )));
                    }
                    let text = post.slot_at().map(|_| local_text(&cal, t));
                    (t, text)
                }
                None => {
                    let taken = self
                        .taken(&cal, now_ms() - DAY_MS - cal.settings.spacing_ms(), &me)
                        .await?;
                    let t = Self::next_slot(&cal, &caps, &taken, Utc::now()).ok_or_else(|| {
                        PlanError::Invalid(format!(
                            "calendar_full: no free slot in the calendar of {account:?} within its horizon of {} days; add slots or raise --daily-budget or --horizon-days",
                            cal.settings.horizon_days
                        ))
                    })?;
                    (t, Some(local_text(&cal, t)))
                }
            };
            let message = format!("moved by calendar reslot to {}", local_text(&cal, t));
            let rules = Rules {
                daily_budget: caps.at(t.timestamp_millis()),
                ..cal.rules()
            };
            match self
                .ledger
                .move_post(
                    post_id,
                    &account,
                    t.timestamp_millis(),
                    slot_text.as_deref(),
                    rules,
                    &[],
                    &message,
                )
                .await?
            {
                Moved::Ok => return Ok(local_text(&cal, t)),
                Moved::Refused(why) => return Err(PlanError::Invalid(why)),
                Moved::Taken if at.is_some() => {
                    return Err(PlanError::Invalid(format!(
                        "{} is not free for post {post_id}: another post of {account:?} is closer than --min-spacing, or the 24 hours around it already hold {} posts; pick another time",
                        local_text(&cal, t),
                        rules.daily_budget
                    )));
                }
                Moved::Taken => continue,
            }
        }
        Err(PlanError::Invalid(
            "other posts kept taking the free slots; run the command again".into(),
        ))
    }

    /// Resumes a paused account. The posts whose time passed during the pause move first (queue
    /// posts to the next free slots, fixed-time ones to the first instants `min-spacing` apart from
    /// every other post), then the pause ends, then any post a worker deferred meanwhile is moved too:
    /// never a burst.
    pub async fn resume(&self, account: &str) -> Result<Resumed, PlanError> {
        let cal = self.require(account).await?;
        let Some(since) = cal.settings.paused_ms else {
            return Ok(Resumed::default());
        };
        let mut moved = self.move_missed(&cal, since, false).await?;
        let now = now_ms();
        let mut conn = self.ledger.conn();
        let _: () = conn
            .hset_multiple(
                self.keys().calendar(account),
                &[
                    (PAUSED_FIELD, String::new()),
                    ("updated_ms", now.to_string()),
                ],
            )
            .await?;
        moved.extend(self.move_missed(&cal, since, true).await?);
        Ok(Resumed {
            was_paused: true,
            moved,
        })
    }

    /// Moves the account's waiting posts whose time passed since `since` (or, with `only_held`, the
    /// posts a worker held back for the pause).
    async fn move_missed(
        &self,
        cal: &Calendar,
        since: i64,
        only_held: bool,
    ) -> Result<Vec<(String, String)>, PlanError> {
        let mut done = Vec::new();
        let caps = self.caps(&cal.account, cal.settings.daily_budget).await?;
        'plan: for _ in 0..REPLANS {
            let now = now_ms();
            let start = now + RESUME_LEAD_MS;
            let mut posts = Vec::new();
            for (id, held) in self
                .ledger
                .held_between(&cal.account, since - BEFORE_PAUSE_MS, now)
                .await?
            {
                let Some(p) = self.ledger.get(&id).await? else {
                    continue;
                };
                let held_back = p.error_code() == Some("calendar_paused");
                let time = p.due_ms().max(p.deferred_until_ms());
                let missed = !only_held && time >= since && time <= now;
                if waiting(&p) && (held_back || missed) {
                    posts.push((held, id, p));
                }
            }
            posts.sort_by_key(|(held, id, _)| (*held, id.clone()));
            let mut moving: Vec<String> = posts.iter().map(|(_, id, _)| id.clone()).collect();
            let mut taken = self
                .taken(cal, now - DAY_MS - cal.settings.spacing_ms(), &moving)
                .await?;
            for (_, id, post) in &posts {
                let queue_post = post.slot_at().is_some();
                let slot = if queue_post {
                    DateTime::from_timestamp_millis(start)
                        .and_then(|from| Self::next_slot(cal, &caps, &taken, from))
                        .map(|t| t.timestamp_millis())
                } else {
                    None
                };
                let (t, rules) = match slot {
                    Some(t) => (
                        t,
                        Rules {
                            daily_budget: caps.at(t),
                            ..cal.rules()
                        },
                    ),
                    // A fixed-time post (or a queue post with no free slot left): spread by the
                    // spacing; the daily budget defers it at posting time if it must.
                    None => (
                        first_spaced(start, &taken, cal.settings.spacing_ms()),
                        Rules {
                            spacing_ms: cal.settings.spacing_ms(),
                            daily_budget: u32::MAX,
                        },
                    ),
                };
                let Some(when) = DateTime::from_timestamp_millis(t) else {
                    continue;
                };
                let text = local_text(cal, when);
                moving.retain(|m| m != id);
                let message = format!("moved by calendar resume to {text}");
                let slot_text = slot.map(|_| text.as_str());
                match self
                    .ledger
                    .move_post(id, &cal.account, t, slot_text, rules, &moving, &message)
                    .await?
                {
                    Moved::Ok => {
                        let at = taken.partition_point(|&p| p < t);
                        taken.insert(at, t);
                        done.push((id.clone(), text));
                    }
                    Moved::Refused(_) => {}
                    Moved::Taken => continue 'plan,
                }
            }
            return Ok(done);
        }
        Err(PlanError::Invalid(
            "other posts kept taking the free slots while resuming; run `calendar resume` again"
                .into(),
        ))
    }
}

/// The message of [`paused_fields`].
pub fn paused_message(fields: &[(Field, String)]) -> String {
    fields
        .iter()
        .find(|(f, _)| *f == Field::ErrorMessage)
        .map(|(_, m)| m.clone())
        .unwrap_or_default()
}

/// The fields a paused account's post is deferred with.
pub fn paused_fields(account: &str, since_ms: i64, until_ms: i64) -> Vec<(Field, String)> {
    let since = DateTime::from_timestamp_millis(since_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    vec![
        (Field::DeferredUntilMs, until_ms.to_string()),
        (Field::ErrorCode, "calendar_paused".into()),
        (
            Field::ErrorMessage,
            format!(
                "the calendar of account {account:?} is paused since {since}; the post waits for `tiktok-poster calendar resume {account}`"
            ),
        ),
    ]
}
