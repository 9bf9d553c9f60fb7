//! `[worker]` as written in the file, and [`WorkerConfig`], the worker runtime's view of it (durations
//! instead of numbers of seconds). Both live with the configuration so that the settings do not
//! depend on the code that consumes them; the worker imports `WorkerConfig` from here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[worker]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Posts worked on at once by this daemon.
    pub concurrency: u32,
    /// Lease of a claimed post; a crashed daemon's posts come back after it.
    pub lease_secs: u64,
    /// Longest idle sleep between claims, in milliseconds.
    pub idle_poll_ms: u64,
    /// Transient failures of one post before it is settled.
    pub max_attempts: u32,
    /// First retry delay in milliseconds (doubles per attempt, with jitter).
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds.
    pub backoff_max_secs: u64,
    /// Interval between status fetches of one post, in milliseconds.
    pub status_interval_ms: u64,
    /// How long after its upload a post may stay unsettled before it is marked unconfirmed.
    pub settle_timeout_secs: u64,
    /// How long SIGTERM waits for posts in flight.
    pub shutdown_grace_secs: u64,
    /// The first look for an `unconfirmed` public post on TikTok's video list, in milliseconds; later
    /// looks double up to 60 times this and end after 4320 times this (72 h at the default). The posts'
    /// stats are read at 60, 1440 and 10080 times this after publishing (1 h, 1 d, 7 d).
    pub confirm_look_ms: u64,
    /// Direct Posts per account per rolling 24 hours before the daemon defers the rest (TikTok's own
    /// cap is about 15 and shared by every app the creator uses).
    pub daily_post_budget: u32,
    /// How often, in seconds, one worker asks `creator_info` whether a `posting_blocked` account (or
    /// the app's block) may post again.
    pub blocked_recheck_secs: u64,
    /// This daemon's identity in claim tokens; unique per daemon sharing a Redis (default: the host name).
    pub id: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease_secs: 30,
            idle_poll_ms: 250,
            max_attempts: 8,
            backoff_base_ms: 2000,
            backoff_max_secs: 600,
            status_interval_ms: 3000,
            settle_timeout_secs: 6 * 3600,
            shutdown_grace_secs: 30,
            confirm_look_ms: 60_000,
            daily_post_budget: 15,
            blocked_recheck_secs: 1800,
            id: String::new(),
        }
    }
}

impl WorkerSettings {
    /// The worker runtime's settings.
    pub fn worker_config(&self) -> WorkerConfig {
        WorkerConfig {
            concurrency: self.concurrency as usize,
            lease: Duration::from_secs(self.lease_secs),
            idle_poll: Duration::from_millis(self.idle_poll_ms),
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            status_interval: Duration::from_millis(self.status_interval_ms),
            follow_slice: Duration::from_secs(300),
            settle_timeout: Duration::from_secs(self.settle_timeout_secs),
            daily_budget: self.daily_post_budget,
            blocked_recheck: Duration::from_secs(self.blocked_recheck_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            confirm_look: Duration::from_millis(self.confirm_look_ms),
        }
    }
}

/// Worker settings (from `[worker]`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Posts worked on at once.
    pub concurrency: usize,
    /// Lease of a claim; renewed every third of it while the handler runs.
    pub lease: Duration,
    /// Longest idle sleep between claims.
    pub idle_poll: Duration,
    /// Transient failures of one post before it is settled (failed, or unconfirmed once TikTok has it).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Interval between status fetches while following a post.
    pub status_interval: Duration,
    /// How long one claim follows a post's status before handing it back.
    pub follow_slice: Duration,
    /// How long after the upload a post may stay unsettled before it is marked unconfirmed.
    pub settle_timeout: Duration,
    /// Per-account daily budget of Direct Posts kept by the daemon (TikTok's cap is about 15).
    pub daily_budget: u32,
    /// How often a `posting_blocked` account's (or the app's) block is checked with `creator_info`.
    pub blocked_recheck: Duration,
    /// How long SIGTERM waits for in-flight posts.
    pub shutdown_grace: Duration,
    /// The unit of the video-list looks and the stats reads (see `WorkerSettings::confirm_look_ms`).
    pub confirm_look: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(250),
            max_attempts: 8,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            status_interval: Duration::from_secs(3),
            follow_slice: Duration::from_secs(300),
            settle_timeout: Duration::from_secs(6 * 3600),
            daily_budget: 15,
            blocked_recheck: Duration::from_secs(1800),
            shutdown_grace: Duration::from_secs(30),
            confirm_look: Duration::from_secs(60),
        }
    }
}
