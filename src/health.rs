//! Liveness of the daemon's main loops, for systemd's watchdog: each loop beats as it goes round (even
//! while it waits for Redis); the watchdog is pinged only while every loop has beaten recently.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::db::now_ms;

/// Last beat of each main loop (ms since the epoch).
#[derive(Debug, Default)]
pub struct Heartbeats {
    ingest: AtomicI64,
    workers: AtomicI64,
}

impl Heartbeats {
    /// The ingest loop went round.
    pub fn ingest(&self) {
        self.ingest.store(now_ms(), Ordering::Relaxed);
    }

    /// The worker machinery (lease renewer) went round.
    pub fn workers(&self) {
        self.workers.store(now_ms(), Ordering::Relaxed);
    }

    /// True when every loop beat within `max_age`.
    pub fn healthy(&self, max_age: Duration) -> bool {
        let oldest = now_ms() - max_age.as_millis() as i64;
        self.ingest.load(Ordering::Relaxed) >= oldest
            && self.workers.load(Ordering::Relaxed) >= oldest
    }
}
