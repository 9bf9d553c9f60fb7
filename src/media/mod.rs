//! Video checks before any upload: [`probe`] describes a file with bounded memory and time, never
//! reading it whole; [`validate`] lists every rule the description breaks under a [`Policy`].
//!
//! MP4/MOV go through our own top-level box walker (it seeks over media data) and `mp4-atom` for the
//! movie metadata; WebM through `matroska-demuxer`. Truncated, corrupt, empty and non-video files
//! give a typed [`ProbeError`], never a panic or a hang; the daemon still probes off the async
//! runtime, behind `catch_unwind` and a timeout ([`probe_async`]).

pub mod file;
mod mkv;
mod model;
mod mp4;
mod policy;

pub use model::*;
pub use policy::*;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the daemon lets one probe run.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Describes the video at `path`.
pub fn probe(path: &Path) -> Result<VideoInfo, ProbeError> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Err(ProbeError::Empty);
    }
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut f, &mut magic)?;
    if n >= 4 && magic[..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return mkv::probe(f, len);
    }
    if n == 8 && mp4::is_top_box(&magic[4..8]) {
        return mp4::probe(&mut f, len);
    }
    Err(ProbeError::UnrecognizedFormat)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// [`probe`] on a blocking thread, behind `catch_unwind` and `timeout`: nothing in a file can stall
/// or crash the daemon.
pub async fn probe_async(path: PathBuf, timeout: Duration) -> Result<VideoInfo, ProbeError> {
    let task = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| probe(&path)).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(ProbeError::Panicked(what))
        })
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(ProbeError::Panicked(e.to_string())),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

/// A probe error as a violation, so callers report both the same way.
pub fn probe_violation(e: &ProbeError) -> Violation {
    Violation {
        code: e.code(),
        message: e.to_string(),
    }
}

/// Probes and validates: the file's description (when it could be read) and every problem.
pub async fn check(
    path: PathBuf,
    policy: Policy,
    creator_max_secs: Option<u64>,
) -> (Option<VideoInfo>, Vec<Violation>) {
    match probe_async(path, PROBE_TIMEOUT).await {
        Ok(info) => {
            let v = validate(&info, policy, creator_max_secs);
            (Some(info), v)
        }
        Err(e) => (None, vec![probe_violation(&e)]),
    }
}
