//! The local video just before its upload: still inside `[video] allowed_dirs` once resolved, still
//! the file that was submitted (the identity, size and modification time recorded then), still within
//! the video policy and the creator's longest duration. Also the check the upload runs on every chunk,
//! so a file changed during the upload is never published.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::VideoSettings;
use crate::media::file::{self, FileIdentity, PathRefused};
use crate::posts::PostRecord;
use crate::tiktok::ChunkPlan;
use crate::tiktok::upload::{SourceChanged, SourceCheck};

/// A video ready to upload.
#[derive(Debug, Clone)]
pub struct LocalVideo {
    /// The chunk plan for its size.
    pub plan: ChunkPlan,
    /// The resolved path (symlinks followed), inside an allowed directory.
    pub path: PathBuf,
    /// The identity every chunk is checked against: the one recorded at submission (or, for a post
    /// recorded before identities were kept, the one seen now).
    pub identity: FileIdentity,
    /// The probed duration (ms) and display size, matched against TikTok's video list when the post's
    /// outcome is unknown.
    pub duration_ms: Option<i64>,
    /// Display width and height after rotation.
    pub size: Option<(u32, u32)>,
}

impl LocalVideo {
    /// The check for [`crate::tiktok::upload::UploadRequest::check`].
    pub fn check(&self) -> SourceCheck {
        let expected = self.identity;
        let path = self.path.clone();
        Arc::new(move |meta: &std::fs::Metadata| {
            expected
                .compare(&FileIdentity::of(meta), &path)
                .map_err(|(code, message)| SourceChanged { code, message })
        })
    }
}

/// Why the video cannot be uploaded now.
#[derive(Debug)]
pub enum Refused {
    /// For good: the post fails with this code and message.
    Fail {
        /// The post's `error_code`.
        code: &'static str,
        /// The post's `error_message`.
        message: String,
    },
    /// The host was short of descriptors or memory for a moment: try the post again later.
    Later(String),
}

/// Checks the post's video at `path` again and plans its upload.
pub async fn prepare(
    video: &VideoSettings,
    post: &PostRecord,
    path: &Path,
    creator_max_secs: Option<u32>,
) -> Result<LocalVideo, Refused> {
    let io_refused = |e: std::io::Error| {
        let message = format!(
            "video {} cannot be read now ({e}); restore it and retry the post",
            path.display()
        );
        if crate::health::is_transient(&e) {
            Refused::Later(message)
        } else {
            Refused::Fail {
                code: "video_unreadable",
                message,
            }
        }
    };
    let resolved = match file::check_allowed_async(path, &video.allowed_dirs).await {
        Ok(r) => r,
        Err(PathRefused::Outside(message)) => {
            return Err(Refused::Fail {
                code: file::OUTSIDE_CODE,
                message,
            });
        }
        Err(PathRefused::Unresolvable(e)) => return Err(io_refused(e)),
    };
    let meta = tokio::fs::metadata(&resolved).await.map_err(io_refused)?;
    let now = FileIdentity::of(&meta);
    let recorded = post.video_identity().and_then(FileIdentity::parse);
    if let Some(recorded) = recorded {
        recorded
            .compare(&now, path)
            .map_err(|(code, message)| Refused::Fail { code, message })?;
    }
    // Posts recorded before identities were kept have the size and modification time only.
    let size = post.video_size();
    let mtime = post.video_mtime_ms();
    let now_mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    if (size > 0 && meta.len() as i64 != size) || (mtime > 0 && now_mtime != mtime) {
        return Err(Refused::Fail {
            code: file::CHANGED_CODE,
            message: format!(
                "video {} changed after it was submitted ({} bytes then, {} now); submit it again",
                path.display(),
                size,
                meta.len()
            ),
        });
    }
    let creator_max = creator_max_secs.map(u64::from);
    let info = match crate::media::check_video(&resolved, video, creator_max).await {
        Ok(info) => info,
        Err(r) if r.transient => {
            return Err(Refused::Later(r.message));
        }
        // The first rule's code names the failure; the message lists them all.
        Err(r) => {
            return Err(Refused::Fail {
                code: r.code(),
                message: r.message,
            });
        }
    };
    let plan = ChunkPlan::for_size(meta.len()).map_err(|e| Refused::Fail {
        code: "video_too_large",
        message: e.to_string(),
    })?;
    Ok(LocalVideo {
        plan,
        path: resolved,
        identity: recorded.unwrap_or(now),
        duration_ms: info
            .duration_secs
            .filter(|d| d.is_finite() && *d >= 0.0)
            .map(|d| (d * 1000.0).round() as i64),
        size: info.width.zip(info.height),
    })
}
