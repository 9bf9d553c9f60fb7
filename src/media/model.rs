//! What a probe learns about a file, and how it can fail.

use serde::Serialize;
use std::fmt;

/// The container, told by its content (the ftyp brand, the EBML DocType), never by the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Mp4,
    Mov,
    WebM,
    /// A Matroska file that is not WebM (DocType `matroska`), whatever its name says.
    Matroska,
}

impl Container {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mp4 => "MP4",
            Self::Mov => "MOV",
            Self::WebM => "WebM",
            Self::Matroska => "Matroska",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    H264,
    Hevc,
    Vp8,
    Vp9,
    Av1,
    /// Anything else, by its sample entry fourcc or Matroska CodecID.
    Other(String),
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::H264 => f.write_str("H.264"),
            Self::Hevc => f.write_str("HEVC"),
            Self::Vp8 => f.write_str("VP8"),
            Self::Vp9 => f.write_str("VP9"),
            Self::Av1 => f.write_str("AV1"),
            Self::Other(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioCodec {
    Aac,
    Mp3,
    Opus,
    Vorbis,
    Other(String),
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Aac => f.write_str("AAC"),
            Self::Mp3 => f.write_str("MP3"),
            Self::Opus => f.write_str("Opus"),
            Self::Vorbis => f.write_str("Vorbis"),
            Self::Other(s) => write!(f, "{s:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    /// Coded picture size, as stored.
    pub coded_width: u32,
    pub coded_height: u32,
    /// Clockwise display rotation in degrees: 0, 90, 180 or 270.
    pub rotation: u16,
    /// Average frame rate (frames over the track's span).
    pub fps: Option<f64>,
    pub frame_count: Option<u64>,
    pub bitrate_bps: Option<u64>,
}

impl VideoTrack {
    /// The size as shown: width and height swapped for 90° and 270°.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.coded_height, self.coded_width)
        } else {
            (self.coded_width, self.coded_height)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioTrack {
    pub codec: AudioCodec,
    pub sample_rate: Option<u32>,
    pub channels: Option<u16>,
}

/// A typed description of a video file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoInfo {
    pub container: Container,
    pub file_size: u64,
    /// Seconds; `None` when the file does not say and it could not be derived.
    pub duration_secs: Option<f64>,
    /// Display size after rotation (copied from the video track for readers of the JSON).
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub video: Option<VideoTrack>,
    pub audio: Option<AudioTrack>,
    /// Whole-file bitrate, size × 8 / duration (what ffprobe calls `format.bit_rate`).
    pub bitrate_bps: Option<u64>,
    /// Things noticed on the way that are not errors (a derived duration, a fragmented file).
    pub notes: Vec<String>,
}

impl VideoInfo {
    /// A description with the derived fields (display size, overall bitrate) filled in.
    pub(crate) fn new(
        container: Container,
        file_size: u64,
        duration_secs: Option<f64>,
        video: Option<VideoTrack>,
        audio: Option<AudioTrack>,
        notes: Vec<String>,
    ) -> Self {
        Self {
            container,
            file_size,
            duration_secs,
            width: None,
            height: None,
            video,
            audio,
            bitrate_bps: None,
            notes,
        }
        .finish()
    }

    pub(crate) fn finish(mut self) -> Self {
        if let Some(v) = &self.video {
            let (w, h) = v.display_size();
            self.width = Some(w);
            self.height = Some(h);
        }
        self.bitrate_bps = match self.duration_secs {
            Some(d) if d > 0.0 => Some((self.file_size as f64 * 8.0 / d).round() as u64),
            _ => None,
        };
        self
    }
}

/// Why a file could not be described. Every variant has a stable [`ProbeError::code`].
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file but a {0}; give the path of a video file")]
    NotAFile(&'static str),
    #[error("the file is empty (0 bytes)")]
    Empty,
    #[error(
        "not an MP4, MOV or WebM file (the first bytes are neither an MP4 box nor an EBML header)"
    )]
    UnrecognizedFormat,
    #[error("the file looks truncated: {0}; copy or download it again")]
    Truncated(String),
    #[error("the {container} file is malformed: {detail}")]
    Malformed {
        container: &'static str,
        detail: String,
    },
    #[error("the file is beyond what the probe reads safely: {0}")]
    LimitExceeded(String),
    #[error("probing took longer than {0:?}; the file is not readable quickly enough")]
    Timeout(std::time::Duration),
    #[error("the probe failed unexpectedly: {0}")]
    Panicked(String),
}

impl ProbeError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io(_) => "unreadable",
            Self::NotAFile(_) => "not_a_file",
            Self::Empty => "empty_file",
            Self::UnrecognizedFormat => "unrecognized_format",
            Self::Truncated(_) => "truncated",
            Self::Malformed { .. } => "malformed",
            Self::LimitExceeded(_) => "limit_exceeded",
            Self::Timeout(_) => "probe_timeout",
            Self::Panicked(_) => "probe_failed",
        }
    }
}
