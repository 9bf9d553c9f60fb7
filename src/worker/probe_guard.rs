//! The probe just before upload, bounded against crash loops. A video that kills the process while
//! it is probed (out of memory, an abort) would come back to a worker every time its lease expires,
//! and take the daemon down each time. The post counts probes started and not finished
//! (`probes_unfinished`, set before the probe, cleared after it); past [`MAX_UNFINISHED_PROBES`]
//! the post fails instead of being probed again.

use crate::posts::Field;

/// Probes of one post that may die unfinished before the post fails. Three, as for a submission's
/// check: a daemon killed for an unrelated reason (a restart, a deploy, the crash tests' SIGKILLs)
/// while it probed a valid file twice in a row must not lose that post.
pub const MAX_UNFINISHED_PROBES: i64 = 3;

/// The post field counting unfinished probes.
pub const FIELD: Field = Field::ProbesUnfinished;

/// The failure message for a post whose probe never finished `n` times.
pub fn reason(path: &std::path::Path, n: i64) -> String {
    format!(
        "checking video {} before upload never finished {n} times: the daemon crashed or was killed (for example for lack of memory) while probing it; check it with `tiktok-poster validate FILE` on another machine or under a memory limit, replace it, and submit the post again",
        path.display()
    )
}
