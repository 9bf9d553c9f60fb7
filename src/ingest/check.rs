//! The checks of one submission that only the daemon can make (the clock, the account, the video
//! file and its probe), and why a submission is refused ([`Refusal`]). Used by the ingest loop and by
//! the CLI's `submit`, so both refuse the same submissions with the same reasons.

use crate::accounts::Accounts;
use crate::media::file;
use crate::posts::Submission;

/// Why a submission is not recorded now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Refused for good, with this reason (it goes to the rejected stream).
    Rejected(String),
    /// The host is short of something for a moment (descriptors, memory) while reading the video: the
    /// entry is read again later, never rejected for it.
    Later(String),
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Self::Rejected(reason)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected(r) => f.write_str(r),
            Self::Later(r) => write!(f, "{r}; try again in a moment"),
        }
    }
}

/// Checks a submission against what only the daemon knows: the clock (`publish_at` within a year),
/// the account exists, the file is there, inside `[video] allowed_dirs` once resolved, and passes the
/// probe (with the cover frame inside it). Returns extra ledger fields: the file's size,
/// modification time and identity (device, inode, size, change time), to catch a change before and
/// during upload.
pub async fn check(
    sub: &Submission,
    accounts: &Accounts,
    video: &crate::config::VideoSettings,
) -> Result<Vec<(&'static str, String)>, Refusal> {
    sub.check_schedule(chrono::Utc::now())?;
    match accounts.exists(&sub.account).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "account {:?} is not connected; connect it with `tiktok-poster accounts connect {}` and submit again",
                sub.account, sub.account
            )
            .into());
        }
        Err(e) => return Err(format!("cannot check the account now ({e})").into()),
    }
    let mut extra = Vec::new();
    if let Some(path) = &sub.video {
        let io_refusal = |what: &str, e: std::io::Error, fix: &str| {
            let msg = format!("video {} {what} ({e}){fix}", path.display());
            if crate::health::is_transient(&e) {
                Refusal::Later(msg)
            } else {
                Refusal::Rejected(msg)
            }
        };
        let resolved = match file::check_allowed_async(path, &video.allowed_dirs).await {
            Ok(r) => r,
            Err(file::PathRefused::Outside(reason)) => return Err(Refusal::Rejected(reason)),
            Err(file::PathRefused::Unresolvable(e)) => {
                return Err(io_refusal(
                    "cannot be read",
                    e,
                    "; check the path and that the daemon's user may read it",
                ));
            }
        };
        let meta = tokio::fs::metadata(&resolved).await.map_err(|e| {
            io_refusal(
                "cannot be read",
                e,
                "; check the path and that the daemon's user may read it",
            )
        })?;
        if !meta.is_file() {
            return Err(format!("video {} is not a regular file", path.display()).into());
        }
        if meta.len() == 0 {
            return Err(format!("video {} is empty (0 bytes)", path.display()).into());
        }
        if crate::tiktok::upload::content_type_for(path).is_none() {
            return Err(format!(
                "video {} is not an .mp4, .mov or .webm file; TikTok accepts MP4, MOV and WebM",
                path.display()
            )
            .into());
        }
        let opened = tokio::fs::File::open(&resolved)
            .await
            .map_err(|e| io_refusal("cannot be opened", e, "; check its permissions"))?;
        // The identity of the file actually opened, taken before the probe: any later change to it
        // moves its change time and is caught before upload.
        let identity = opened
            .metadata()
            .await
            .map(|m| file::FileIdentity::of(&m))
            .map_err(|e| io_refusal("cannot be read", e, ""))?;
        drop(opened);
        crate::tiktok::ChunkPlan::for_size(meta.len())
            .map_err(|e| format!("video {}: {e}", path.display()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let info = crate::media::check_video(&resolved, video, None)
            .await
            .map_err(|r| {
                if r.transient {
                    Refusal::Later(r.message)
                } else {
                    Refusal::Rejected(r.message)
                }
            })?;
        extra.push(("video_size", meta.len().to_string()));
        extra.push(("video_mtime_ms", mtime.to_string()));
        extra.push(("video_identity", identity.to_field()));
        if let Some(d) = info.duration_secs {
            sub.check_cover((d * 1000.0).round() as u64)?;
            extra.push((
                "video_duration_ms",
                ((d * 1000.0).round() as u64).to_string(),
            ));
        }
        extra.push(("video_summary", summary(&info)));
    }
    Ok(extra)
}

/// One line describing a probed video, kept on the post.
pub fn summary(i: &crate::media::VideoInfo) -> String {
    let mut parts = vec![i.container.name().to_string()];
    if let Some(d) = i.duration_secs {
        parts.push(format!("{d:.2} s"));
    }
    if let Some(v) = &i.video {
        let (w, h) = v.display_size();
        parts.push(format!("{w}x{h}"));
        if let Some(f) = v.fps {
            parts.push(format!("{f:.2} fps"));
        }
        parts.push(v.codec.to_string());
    }
    if let Some(a) = &i.audio {
        parts.push(a.codec.to_string());
    }
    if let Some(b) = i.bitrate_bps {
        parts.push(format!("{} kbps", b / 1000));
    }
    parts.join(" ")
}
