//! `[video]`: which rules a video must meet, how long its probe may take, and where videos may live.
//! [`Policy`] is defined here, not in `media/`, so that the settings do not depend on the prober;
//! `media` gives it its rules.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which rules apply (`[video] policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The project brief's table: MP4/MOV/WebM, 1 s–10 min, ≤ 4 GB, 9:16, ≥ 720x1280, 24–60 fps,
    /// H.264/HEVC + AAC (WebM: VP8/VP9 + Opus/Vorbis), 516 kbps–20 Mbps.
    #[default]
    Brief,
    /// Only TikTok's documented limits: MP4/MOV/WebM, ≤ 10 min, ≤ 4 GB, 23–60 fps, 360–4096 px per
    /// side, H.264/H.265/VP8/VP9.
    Api,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Brief => "brief",
            Self::Api => "api",
        }
    }
}

/// `[video]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoSettings {
    /// `brief` (the project brief's table) or `api` (only TikTok's documented limits).
    pub policy: Policy,
    /// Longest one probe may take before the file is refused, in seconds.
    pub probe_timeout_secs: u64,
    /// The only directories a submitted `video` may resolve into (symlinks followed), so a producer
    /// cannot have any file the daemon can read uploaded.
    pub allowed_dirs: Vec<PathBuf>,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self {
            policy: Policy::Brief,
            probe_timeout_secs: 5,
            allowed_dirs: vec![PathBuf::from("/srv/videos")],
        }
    }
}
