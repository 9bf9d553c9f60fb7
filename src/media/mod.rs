//! Video checks before any upload: [`probe`] describes a file with bounded memory and time, never
//! reading it whole; [`validate`] lists every rule the description breaks under a [`Policy`](crate::config::Policy).
//!
//! MP4/MOV go through our own box walker (it seeks over media data, sums the sample tables and
//! fragment runs as they stream past and keeps no per-sample list) and `mp4-atom` for the small rest
//! of the movie metadata; WebM through our own EBML walk (it reads element headers and the few small
//! values it needs, seeks over CodecPrivate, Cues and frame data, and reads only block headers of a
//! live recording's clusters). Truncated, corrupt, empty and non-video
//! files give a typed [`ProbeError`], never a panic or a hang; only regular files are opened (a FIFO
//! would block the open). Every read checks a [`Deadline`], so a probe that runs out of time stops
//! its work instead of going on in the background; the daemon probes off the async runtime, behind
//! `catch_unwind` ([`probe_async`]).
//!
//! [`check`] is the one probe-and-policy step under the `[video]` settings, shared by ingest, the
//! publish job (through [`check_video`]) and the CLI's `validate`.

mod boxes;
mod check;
mod deadline;
mod ebml;
pub(crate) mod file;
mod fragments;
mod mkv;
mod model;
mod mp4;
mod policy;
mod tables;

pub use check::{Checked, VideoRejected, check, check_video};
pub use deadline::Deadline;
pub use model::*;
pub use policy::*;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use deadline::TimedFile;

/// Describes the video at `path`, taking as long as it needs (see [`probe_until`]).
pub fn probe(path: &Path) -> Result<VideoInfo, ProbeError> {
    probe_until(path, &Deadline::never())
}

/// Describes the video at `path`, or stops with [`ProbeError::Timeout`] at the first read after
/// `deadline` passed.
pub fn probe_until(path: &Path, deadline: &Deadline) -> Result<VideoInfo, ProbeError> {
    match probe_file(path, deadline) {
        Err(_) if deadline.passed() => Err(deadline.error()),
        r => r,
    }
}

/// What a path that is not a regular file is, for the error.
fn file_kind(t: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    match t {
        t if t.is_file() => None,
        t if t.is_dir() => Some("directory"),
        t if t.is_fifo() => Some("FIFO (named pipe)"),
        t if t.is_socket() => Some("socket"),
        t if t.is_char_device() || t.is_block_device() => Some("device"),
        _ => Some("special file"),
    }
}

fn probe_file(path: &Path, deadline: &Deadline) -> Result<VideoInfo, ProbeError> {
    // Looked at before opening: opening a FIFO for reading blocks until someone writes to it.
    if let Some(kind) = file_kind(std::fs::metadata(path)?.file_type()) {
        return Err(ProbeError::NotAFile(kind));
    }
    let f = File::open(path)?;
    let meta = f.metadata()?;
    if let Some(kind) = file_kind(meta.file_type()) {
        return Err(ProbeError::NotAFile(kind));
    }
    let len = meta.len();
    if len == 0 {
        return Err(ProbeError::Empty);
    }
    let mut f = TimedFile::new(f, deadline.clone());
    let mut magic = [0u8; 8];
    let n = read_up_to(&mut f, &mut magic)?;
    if n >= 4 && magic[..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return mkv::probe(f, len);
    }
    if n == 8 && mp4::is_top_box(&magic[4..8]) {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))?;
        return mp4::probe(&mut boxes::Src::new(f, len));
    }
    Err(ProbeError::UnrecognizedFormat)
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// [`probe`] on a blocking thread, behind `catch_unwind`, stopped at `timeout`: nothing in a file
/// can stall or crash the daemon, and a probe that runs out of time stops working (its deadline is
/// also cancelled from here, should the thread have started late).
pub async fn probe_async(path: PathBuf, timeout: Duration) -> Result<VideoInfo, ProbeError> {
    let deadline = Deadline::after(timeout);
    let in_thread = deadline.clone();
    let task = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(|| probe_until(&path, &in_thread)).unwrap_or_else(|p| {
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
        Err(_) => {
            deadline.cancel();
            Err(deadline.error())
        }
    }
}

/// A probe error as a violation, so callers report both the same way.
pub fn probe_violation(e: &ProbeError) -> Violation {
    Violation {
        code: e.code(),
        message: e.to_string(),
    }
}
