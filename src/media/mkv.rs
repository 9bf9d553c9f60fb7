//! WebM (and other Matroska, told apart by the DocType) through `matroska-demuxer`.

use super::deadline::TimedFile;
use super::model::*;
use matroska_demuxer::{Frame, MatroskaFile, TrackType};
use std::io::{BufReader, Seek, SeekFrom};

/// Most frames scanned when the header lacks a duration or frame rate (a live recording). A
/// 10-minute 60 fps file with audio has about 64,000.
const MAX_SCAN_FRAMES: u64 = 200_000;

fn malformed(detail: impl Into<String>) -> ProbeError {
    ProbeError::Malformed {
        container: "WebM",
        detail: detail.into(),
    }
}

pub(super) fn probe(mut f: TimedFile, file_len: u64) -> Result<VideoInfo, ProbeError> {
    f.seek(SeekFrom::Start(0))?;
    let mut mkv = MatroskaFile::open(BufReader::with_capacity(64 << 10, f))
        .map_err(|e| malformed(e.to_string()))?;
    let container = match mkv.ebml_header().doc_type() {
        "webm" => Container::WebM,
        _ => Container::Matroska,
    };
    let scale = mkv.info().timestamp_scale().get() as f64; // ns per tick
    let mut duration_secs = mkv.info().duration().map(|d| d * scale / 1e9);
    let mut notes = Vec::new();

    let vt = mkv
        .tracks()
        .iter()
        .find(|t| t.track_type() == TrackType::Video);
    let at = mkv
        .tracks()
        .iter()
        .find(|t| t.track_type() == TrackType::Audio);
    let video_number = vt.map(|t| t.track_number().get());
    let mut video = vt.map(|t| {
        let (w, h) = t
            .video()
            .map(|v| (v.pixel_width().get() as u32, v.pixel_height().get() as u32))
            .unwrap_or((0, 0));
        VideoTrack {
            codec: match t.codec_id() {
                "V_VP8" => VideoCodec::Vp8,
                "V_VP9" => VideoCodec::Vp9,
                "V_AV1" => VideoCodec::Av1,
                "V_MPEG4/ISO/AVC" => VideoCodec::H264,
                "V_MPEGH/ISO/HEVC" => VideoCodec::Hevc,
                other => VideoCodec::Other(other.chars().take(32).collect()),
            },
            coded_width: w,
            coded_height: h,
            rotation: 0,
            fps: t
                .default_duration()
                .map(|ns| 1e9 / ns.get() as f64)
                .filter(|f| f.is_finite()),
            frame_count: None,
            bitrate_bps: None,
        }
    });
    let audio = at.map(|t| AudioTrack {
        codec: match t.codec_id() {
            "A_OPUS" => AudioCodec::Opus,
            "A_VORBIS" => AudioCodec::Vorbis,
            "A_MPEG/L3" => AudioCodec::Mp3,
            id if id.starts_with("A_AAC") => AudioCodec::Aac,
            other => AudioCodec::Other(other.chars().take(32).collect()),
        },
        sample_rate: t.audio().map(|a| a.sampling_frequency() as u32),
        channels: t.audio().map(|a| a.channels().get() as u16),
    });

    let need_fps = video.as_ref().is_some_and(|v| v.fps.is_none());
    if duration_secs.is_none() || need_fps {
        // A live recording: no Duration (and often no DefaultDuration). Read the frames' timestamps.
        let mut frame = Frame::default();
        let mut n = 0u64;
        let (mut first, mut last) = (u64::MAX, 0u64);
        let (mut vfirst, mut vlast, mut vcount) = (u64::MAX, 0u64, 0u64);
        loop {
            match mkv.next_frame(&mut frame) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(malformed(format!("frame {n}: {e}"))),
            }
            n += 1;
            if n > MAX_SCAN_FRAMES {
                notes.push(format!(
                    "stopped reading frames after {MAX_SCAN_FRAMES}; duration unknown"
                ));
                break;
            }
            first = first.min(frame.timestamp);
            last = last.max(frame.timestamp + frame.duration.unwrap_or(0));
            if Some(frame.track) == video_number {
                vfirst = vfirst.min(frame.timestamp);
                vlast = vlast.max(frame.timestamp);
                vcount += 1;
            }
        }
        let vfps = (vcount > 1 && vlast > vfirst)
            .then(|| (vcount - 1) as f64 / ((vlast - vfirst) as f64 * scale / 1e9));
        if n <= MAX_SCAN_FRAMES {
            if let Some(v) = video.as_mut() {
                v.frame_count = Some(vcount);
                if v.fps.is_none() {
                    v.fps = vfps;
                }
            }
            if duration_secs.is_none() && last >= first && first != u64::MAX {
                // The last frame lasts one frame interval.
                let tail = video.as_ref().and_then(|v| v.fps).map_or(0.0, |f| 1.0 / f);
                duration_secs = Some((last - first) as f64 * scale / 1e9 + tail);
                notes.push("no duration in the header; derived by reading the frames".into());
            }
        }
    }
    Ok(VideoInfo::new(
        container,
        file_len,
        duration_secs,
        video,
        audio,
        notes,
    ))
}
