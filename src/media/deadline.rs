//! When a probe must stop. A timeout around a blocking thread only stops the waiting, not the thread,
//! so the probe itself reads through a [`TimedFile`] that refuses every read and seek once the
//! [`Deadline`] has passed or was cancelled: whatever loop the file drives (ours or `mp4-atom`'s),
//! it ends at its next read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::ProbeError;

/// A point in time after which a probe stops, or earlier when [`Deadline::cancel`]led. Clones share
/// the cancel flag, so the async side can stop the blocking thread it gave up waiting for.
#[derive(Debug, Clone)]
pub struct Deadline {
    at: Option<Instant>,
    limit: Duration,
    cancelled: Arc<AtomicBool>,
}

impl Deadline {
    /// Passes `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now().checked_add(limit),
            limit,
            cancelled: Arc::default(),
        }
    }

    /// Never passes unless cancelled (for tests and benchmarks that time the probe themselves).
    pub fn never() -> Self {
        Self {
            at: None,
            limit: Duration::MAX,
            cancelled: Arc::default(),
        }
    }

    /// Stops the probe at its next read, in whichever thread it runs.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the probe must stop now.
    pub fn passed(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.at.is_some_and(|t| Instant::now() >= t)
    }

    /// The error a probe that ran out of time returns.
    pub fn error(&self) -> ProbeError {
        ProbeError::Timeout(self.limit)
    }
}

/// A file that fails every read and seek (with `TimedOut`) once its deadline has passed.
#[derive(Debug)]
pub(super) struct TimedFile {
    file: File,
    deadline: Deadline,
}

impl TimedFile {
    pub(super) fn new(file: File, deadline: Deadline) -> Self {
        Self { file, deadline }
    }

    fn check(&self) -> io::Result<()> {
        if self.deadline.passed() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the probe ran out of time",
            ));
        }
        Ok(())
    }
}

impl Read for TimedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        self.file.read(buf)
    }
}

impl Seek for TimedFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.check()?;
        self.file.seek(pos)
    }
}
