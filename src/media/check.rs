//! The probe-and-policy step under the `[video]` settings: probe within `probe_timeout_secs`, then
//! list every rule the file breaks. Written once here for ingest, the publish job's check before
//! upload and the CLI's `validate`, so the three cannot disagree about a file.

use std::path::Path;
use std::time::Duration;

use super::{ProbeError, VideoInfo, Violation, probe_async, probe_violation, validate};
use crate::config::VideoSettings;

/// What [`check`] found: the file's description (when it could be read) and every broken rule.
#[derive(Debug)]
pub struct Checked {
    /// The description; `None` when the probe failed.
    pub info: Option<VideoInfo>,
    /// Every broken rule (a failed probe is one); empty when the file passes.
    pub violations: Vec<Violation>,
    /// The file could not be read for a momentary shortage (descriptors, memory): try again later.
    pub transient: bool,
}

/// Probes `path` and checks it against the policy (and the creator's longest allowed duration when
/// known).
pub async fn check(path: &Path, video: &VideoSettings, creator_max_secs: Option<u64>) -> Checked {
    let timeout = Duration::from_secs(video.probe_timeout_secs.max(1));
    match probe_async(path.to_path_buf(), timeout).await {
        Ok(info) => {
            let violations = validate(&info, video.policy, creator_max_secs);
            Checked {
                info: Some(info),
                violations,
                transient: false,
            }
        }
        Err(e) => Checked {
            info: None,
            transient: matches!(&e, ProbeError::Io(io) if crate::health::is_transient(io)),
            violations: vec![probe_violation(&e)],
        },
    }
}

/// A video that fails the policy: every broken rule, and one sentence naming them all.
#[derive(Debug)]
pub struct VideoRejected {
    pub violations: Vec<Violation>,
    pub message: String,
    /// The file could not be read for a momentary shortage (descriptors, memory): try again later.
    pub transient: bool,
}

impl VideoRejected {
    /// The first broken rule's code.
    pub fn code(&self) -> &'static str {
        self.violations.first().map_or("video_rejected", |v| v.code)
    }
}

/// [`check`] as a verdict: the description of a file that passes, or why it does not.
pub async fn check_video(
    path: &Path,
    video: &VideoSettings,
    creator_max_secs: Option<u64>,
) -> Result<VideoInfo, VideoRejected> {
    let checked = check(path, video, creator_max_secs).await;
    match checked.info {
        Some(info) if checked.violations.is_empty() => Ok(info),
        _ => Err(VideoRejected {
            message: format!(
                "video {} fails the {} video policy: {}",
                path.display(),
                video.policy.as_str(),
                checked
                    .violations
                    .iter()
                    .map(|v| format!("[{}] {}", v.code, v.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            violations: checked.violations,
            transient: checked.transient,
        }),
    }
}
