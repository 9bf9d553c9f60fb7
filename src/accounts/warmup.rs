//! Where an account stands in its warm-up, kept in its hash so every daemon, the CLI and the page see
//! the same: when its first Direct Post through the daemon went out (`warmup_first_post_ms`), why the
//! ramp does not apply to it (`warmup_skip`: the operator said so, or TikTok shows it active), and
//! when the daemon last asked TikTok (`warmup_checked_ms`, with `warmup_note` saying what it found or
//! why it could not tell).
//!
//! The ramp itself (`[warmup] ramp`) is a list of daily caps: day `d` (counted in whole 24 hours from
//! the first post) allows `ramp[d]` Direct Posts in any rolling 24 hours, never more than the budget.

use std::collections::HashMap;

use serde::Serialize;

use super::{AccountError, Accounts};
use crate::db::now_ms;

/// When the account's first Direct Post through the daemon was sent (ms).
pub const FIRST_POST_FIELD: &str = "warmup_first_post_ms";
/// Why the ramp does not apply (absent: it does).
pub const SKIP_FIELD: &str = "warmup_skip";
/// When the daemon last asked TikTok whether the account is already active (ms).
pub const CHECKED_FIELD: &str = "warmup_checked_ms";
/// What that check found, or why it could not tell.
pub const NOTE_FIELD: &str = "warmup_note";

/// Set when the operator put the account back on its ramp (`accounts warmup NAME --ramp`): the
/// activity check may not skip it again.
pub const FORCED_FIELD: &str = "warmup_forced";

/// The prefix of a skip the operator asked for.
pub const SKIP_BY_OPERATOR: &str = "operator";

const DAY_MS: i64 = 86_400_000;

/// Sets a field of an existing account only (a removed account is never brought back as a hash of
/// warm-up fields). ARGV: mode (`set`, `min`: only when absent or lower, `del`), field, value.
const SET_FIELD: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == 'del' then redis.call('HDEL', KEYS[1], ARGV[2]) return 1 end
if ARGV[1] == 'min' then
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[2]) or '')
  if cur and cur <= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"#;

/// An account's warm-up record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Warmup {
    /// When its first Direct Post through the daemon was sent; `None`: not yet.
    pub first_post_ms: Option<i64>,
    /// Why the ramp does not apply; `None`: it does.
    pub skip: Option<String>,
    /// When TikTok was last asked whether the account is already active (0: never).
    pub checked_ms: i64,
    /// What that check found, or why it could not tell.
    pub note: String,
    /// Set (with when) when the operator put the account back on its ramp.
    pub forced: Option<String>,
}

/// One day of the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The day, from 1.
    pub day: u32,
    /// How many days the ramp has.
    pub days: u32,
    /// Direct Posts allowed in any rolling 24 hours on this day.
    pub cap: u32,
    /// When this day ends (ms) and the next day's cap (or the budget) applies.
    pub ends_ms: i64,
}

impl Warmup {
    /// Reads the record from an account hash.
    pub fn from_hash(h: &HashMap<String, String>) -> Self {
        let int = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok());
        Self {
            first_post_ms: int(FIRST_POST_FIELD).filter(|v| *v > 0),
            skip: h.get(SKIP_FIELD).filter(|v| !v.is_empty()).cloned(),
            checked_ms: int(CHECKED_FIELD).unwrap_or(0),
            note: h.get(NOTE_FIELD).cloned().unwrap_or_default(),
            forced: h.get(FORCED_FIELD).filter(|v| !v.is_empty()).cloned(),
        }
    }

    /// The ramp's day at instant `t_ms`, or `None` when the ramp does not apply (skipped, or over).
    /// Before the first post the ramp starts at `t_ms` itself: a post sent then is day 1's.
    pub fn step(&self, ramp: &[u32], budget: u32, t_ms: i64) -> Option<Step> {
        if self.skip.is_some() {
            return None;
        }
        let start = self.first_post_ms.unwrap_or(t_ms).min(t_ms);
        let day = usize::try_from((t_ms - start) / DAY_MS).ok()?;
        let cap = *ramp.get(day)?;
        Some(Step {
            day: day as u32 + 1,
            days: ramp.len() as u32,
            cap: cap.min(budget),
            ends_ms: start + (day as i64 + 1) * DAY_MS,
        })
    }

    /// In words, for `accounts list` and the page: `day 2 of 5: 3 a day`, `skipped (…)`, `done`.
    pub fn describe(&self, ramp: &[u32], budget: u32, enabled: bool, now: i64) -> String {
        if !enabled {
            return "off".into();
        }
        if let Some(why) = &self.skip {
            return format!("skipped ({why})");
        }
        match self.step(ramp, budget, now) {
            Some(s) if self.first_post_ms.is_none() => {
                format!("not started: day 1 of {} allows {}", s.days, s.cap)
            }
            Some(s) => format!("day {} of {}: {} a day", s.day, s.days, s.cap),
            None => "done".into(),
        }
    }
}

impl Accounts {
    /// The account's warm-up record.
    pub async fn warmup(&self, name: &str) -> Result<Warmup, AccountError> {
        let mut conn = self.conn.clone();
        let fields = [
            FIRST_POST_FIELD,
            SKIP_FIELD,
            CHECKED_FIELD,
            NOTE_FIELD,
            FORCED_FIELD,
        ];
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.account(name))
            .arg(&fields[..])
            .query_async(&mut conn)
            .await?;
        let h: HashMap<String, String> = fields
            .iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect();
        Ok(Warmup::from_hash(&h))
    }

    /// Records a Direct Post sent at `at_ms`: the ramp starts at the first one (an earlier one found
    /// later, e.g. sent by a version before the ramp, moves the start back).
    pub async fn note_post_sent(&self, name: &str, at_ms: i64) -> Result<(), AccountError> {
        self.set_field(name, "min", FIRST_POST_FIELD, &at_ms.to_string())
            .await
            .map(|_| ())
    }

    /// The operator skips the account's ramp (`accounts warmup NAME --skip`), or puts it back on it
    /// for good (`skip` false: no activity check skips it again). Returns false when the account
    /// does not exist.
    pub async fn set_warmup_skip(&self, name: &str, skip: bool) -> Result<bool, AccountError> {
        let why = format!(
            "{SKIP_BY_OPERATOR}, {}",
            chrono::DateTime::from_timestamp_millis(now_ms())
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default()
        );
        let (set, clear) = if skip {
            (SKIP_FIELD, FORCED_FIELD)
        } else {
            (FORCED_FIELD, SKIP_FIELD)
        };
        if !self.set_field(name, "set", set, &why).await? {
            return Ok(false);
        }
        self.set_field(name, "del", clear, "").await
    }

    /// Records what a check of the account's activity found: `active` (why the ramp does not apply)
    /// or only a note, at `now`.
    pub async fn record_warmup_check(
        &self,
        name: &str,
        active: Option<&str>,
        note: &str,
    ) -> Result<(), AccountError> {
        if let Some(why) = active {
            self.set_field(name, "set", SKIP_FIELD, why).await?;
        }
        self.set_field(name, "set", NOTE_FIELD, note).await?;
        self.set_field(name, "set", CHECKED_FIELD, &now_ms().to_string())
            .await
            .map(|_| ())
    }

    async fn set_field(
        &self,
        name: &str,
        mode: &str,
        field: &str,
        value: &str,
    ) -> Result<bool, AccountError> {
        let mut conn = self.conn.clone();
        let done: i64 = redis::Script::new(SET_FIELD)
            .key(self.keys.account(name))
            .arg(mode)
            .arg(field)
            .arg(value)
            .invoke_async(&mut conn)
            .await?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAMP: [u32; 3] = [2, 3, 5];

    #[test]
    fn the_ramp_counts_whole_days_from_the_first_post_and_ends() {
        let w = Warmup {
            first_post_ms: Some(1_000),
            ..Default::default()
        };
        let at = |t| w.step(&RAMP, 15, t);
        assert_eq!(
            at(1_000),
            Some(Step {
                day: 1,
                days: 3,
                cap: 2,
                ends_ms: 1_000 + DAY_MS
            })
        );
        assert_eq!(at(1_000 + DAY_MS - 1).unwrap().day, 1);
        assert_eq!(at(1_000 + DAY_MS).unwrap().cap, 3);
        assert_eq!(at(1_000 + 2 * DAY_MS).unwrap().cap, 5);
        assert_eq!(
            at(1_000 + 3 * DAY_MS),
            None,
            "after the list: the budget alone"
        );
        // Never above the budget.
        assert_eq!(w.step(&RAMP, 4, 1_000 + 2 * DAY_MS).unwrap().cap, 4);
    }

    #[test]
    fn before_the_first_post_it_is_day_one_and_a_skip_ends_it() {
        let fresh = Warmup::default();
        let s = fresh.step(&RAMP, 15, 50 * DAY_MS).unwrap();
        assert_eq!((s.day, s.cap, s.ends_ms), (1, 2, 51 * DAY_MS));
        assert_eq!(
            fresh.describe(&RAMP, 15, true, 0),
            "not started: day 1 of 3 allows 2"
        );
        let skipped = Warmup {
            skip: Some("operator, 2026-12-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(skipped.step(&RAMP, 15, 0), None);
        assert!(
            skipped
                .describe(&RAMP, 15, true, 0)
                .starts_with("skipped (operator")
        );
        assert_eq!(fresh.describe(&RAMP, 15, false, 0), "off");
        let h = HashMap::from([
            (FIRST_POST_FIELD.to_string(), "7".to_string()),
            (SKIP_FIELD.to_string(), String::new()),
        ]);
        assert_eq!(
            Warmup::from_hash(&h),
            Warmup {
                first_post_ms: Some(7),
                ..Default::default()
            }
        );
        let w = Warmup::from_hash(&h);
        assert_eq!(
            w.describe(&RAMP, 15, true, 7 + DAY_MS),
            "day 2 of 3: 3 a day"
        );
        assert_eq!(w.describe(&RAMP, 15, true, 7 + 3 * DAY_MS), "done");
    }
}
