//! `[warmup]`: how a new account is ramped in before it gets the full daily budget of Direct Posts.
//!
//! The ramp is our heuristic, not TikTok's rule (TikTok documents none; see the README's "Account
//! safety"): day `d` after the account's first post through the daemon allows `ramp[d]` Direct Posts
//! in any rolling 24 hours (never more than the daily budget), and from the day after the list ends
//! the daily budget alone applies.

use serde::{Deserialize, Serialize};

/// `[warmup]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WarmupSettings {
    /// Whether new accounts are ramped in at all (`false`: every account gets the daily budget).
    pub enabled: bool,
    /// Direct Posts allowed in any rolling 24 hours on day 1, 2, … after the account's first post
    /// through us; the first at most 3, none above the next.
    pub ramp: Vec<u32>,
    /// An account whose `video_count` (with `user.info.stats`) is at least this is already active:
    /// no ramp.
    pub active_video_count: u64,
    /// An account with a public video on `video/list` that we did not post, older than this many
    /// hours, is already active: no ramp.
    pub manual_min_age_hours: u32,
}

/// The default ramp: 2, 3, 5, 8 and 12 posts on days 1 to 5, then the budget (15 by default).
pub const DEFAULT_RAMP: [u32; 5] = [2, 3, 5, 8, 12];

/// The most days a ramp may have.
pub const MAX_RAMP_DAYS: usize = 60;

/// The most posts the first day may allow.
pub const MAX_FIRST_DAY: u32 = 3;

impl Default for WarmupSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            ramp: DEFAULT_RAMP.to_vec(),
            active_video_count: 10,
            manual_min_age_hours: 48,
        }
    }
}

impl WarmupSettings {
    /// The problems of these values, each as (key, env suffix, message).
    pub(super) fn problems(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        let ramp = &self.ramp;
        if ramp.is_empty() || ramp.len() > MAX_RAMP_DAYS {
            out.push((
                "warmup.ramp",
                "WARMUP__RAMP",
                format!(
                    "give 1 to {MAX_RAMP_DAYS} daily caps, e.g. {DEFAULT_RAMP:?}, or set warmup.enabled = false"
                ),
            ));
        } else if ramp[0] == 0 || ramp[0] > MAX_FIRST_DAY {
            out.push((
                "warmup.ramp",
                "WARMUP__RAMP",
                format!(
                    "the first day allows {} posts; give 1 to {MAX_FIRST_DAY} (a new account's first day is the riskiest)",
                    ramp[0]
                ),
            ));
        } else if ramp.windows(2).any(|w| w[1] < w[0]) {
            out.push((
                "warmup.ramp",
                "WARMUP__RAMP",
                format!("{ramp:?} goes down; each day's cap must be at least the day before's"),
            ));
        }
        if self.active_video_count == 0 {
            out.push((
                "warmup.active_video_count",
                "WARMUP__ACTIVE_VIDEO_COUNT",
                "0 would skip the ramp for every account; give at least 1 (default 10)".into(),
            ));
        }
        if !(1..=24 * 365).contains(&self.manual_min_age_hours) {
            out.push((
                "warmup.manual_min_age_hours",
                "WARMUP__MANUAL_MIN_AGE_HOURS",
                format!(
                    "{} is out of range; give 1 to 8760 hours (default 48)",
                    self.manual_min_age_hours
                ),
            ));
        }
        out
    }
}
