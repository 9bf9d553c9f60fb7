//! The rules a video must meet before any upload. Every broken rule is reported, each with a stable
//! code (for scripts, logs and metrics) and a sentence that says what to fix.

use super::model::*;
use serde::Serialize;

use crate::config::Policy;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub code: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn v(code: &'static str, message: String) -> Violation {
    Violation { code, message }
}

/// 4 GB. TikTok says "4 GB" without saying which; the decimal reading is the smaller, so a file
/// under it passes under both.
pub const MAX_FILE_BYTES: u64 = 4_000_000_000;
/// 10 minutes, plus the slack a real "10:00" file carries (AAC priming and the last frame's
/// duration make it measure 600.02 s).
pub const MAX_DURATION_SECS: f64 = 600.0;
pub const DURATION_TOLERANCE_SECS: f64 = 0.5;
/// The slack on a duration limit: 0.1% of it, at most [`DURATION_TOLERANCE_SECS`] (a "1:00" file
/// measures 60.02 s).
fn duration_slack(limit: f64) -> f64 {
    (limit * 0.001).min(DURATION_TOLERANCE_SECS)
}

/// 23.976 (24000/1001) counts as 24; so does anything within this of a limit.
const FPS_TOLERANCE: f64 = 0.03;

fn secs(s: f64) -> String {
    if s >= 60.0 {
        format!("{s:.2} s ({}:{:05.2})", (s / 60.0) as u64, s % 60.0)
    } else {
        format!("{s:.2} s")
    }
}

fn rate(bps: u64) -> String {
    if bps >= 1_000_000 {
        format!("{:.1} Mbps", bps as f64 / 1e6)
    } else {
        format!("{} kbps", bps / 1000)
    }
}

fn size(bytes: u64) -> String {
    format!("{:.2} GB ({bytes} bytes)", bytes as f64 / 1e9)
}

/// Every rule `info` breaks under `policy`; empty means fine to upload. `creator_max_secs` is the
/// account's `max_video_post_duration_sec` from creator_info, when known.
pub fn validate(info: &VideoInfo, policy: Policy, creator_max_secs: Option<u64>) -> Vec<Violation> {
    let brief = policy == Policy::Brief;
    let mut out = Vec::new();

    if !matches!(
        info.container,
        Container::Mp4 | Container::Mov | Container::WebM
    ) {
        out.push(v(
            "container_not_allowed",
            format!(
                "container {} is not accepted (a .webm name does not make it WebM); remux to MP4, MOV or WebM",
                info.container.name()
            ),
        ));
    }
    if info.file_size > MAX_FILE_BYTES {
        out.push(v(
            "file_too_large",
            format!(
                "file is {}; the most TikTok accepts is 4 GB: shorten or re-encode it",
                size(info.file_size)
            ),
        ));
    }

    match info.duration_secs {
        None => out.push(v(
            "duration_unknown",
            "the file does not say how long it is and it could not be measured; remux it (e.g. `ffmpeg -i in -c copy out.mp4`)".into(),
        )),
        Some(d) => {
            if brief && d < 1.0 {
                out.push(v(
                    "duration_too_short",
                    format!("video is {} long; the minimum is 1 s", secs(d)),
                ));
            }
            if d <= 0.0 && !brief {
                out.push(v("duration_too_short", "video has no length".into()));
            }
            if d > MAX_DURATION_SECS + duration_slack(MAX_DURATION_SECS) {
                out.push(v(
                    "duration_too_long",
                    format!("video is {} long; the most is 10 min (600 s)", secs(d)),
                ));
            }
            if let Some(max) = creator_max_secs
                && max > 0
                && d > max as f64 + duration_slack(max as f64)
            {
                out.push(v(
                    "duration_over_creator_limit",
                    format!(
                        "video is {} long; this creator may post at most {max} s (max_video_post_duration_sec)",
                        secs(d)
                    ),
                ));
            }
        }
    }

    let Some(video) = &info.video else {
        out.push(v(
            "no_video_track",
            "the file has no video track (audio only?)".into(),
        ));
        return out;
    };

    let codec_ok = match (policy, info.container) {
        (Policy::Brief, Container::WebM) => {
            matches!(video.codec, VideoCodec::Vp8 | VideoCodec::Vp9)
        }
        (Policy::Brief, _) => matches!(video.codec, VideoCodec::H264 | VideoCodec::Hevc),
        (Policy::Api, _) => matches!(
            video.codec,
            VideoCodec::H264 | VideoCodec::Hevc | VideoCodec::Vp8 | VideoCodec::Vp9
        ),
    };
    if !codec_ok {
        let want = match (policy, info.container) {
            (Policy::Brief, Container::WebM) => "VP8 or VP9 in WebM",
            (Policy::Brief, _) => "H.264 or HEVC",
            (Policy::Api, _) => "H.264, HEVC, VP8 or VP9",
        };
        out.push(v(
            "video_codec_not_allowed",
            format!(
                "video codec {} is not accepted; re-encode to {want}",
                video.codec
            ),
        ));
    }

    let (w, h) = video.display_size();
    if brief {
        let ratio = if h > 0 { w as f64 / h as f64 } else { 0.0 };
        if ((ratio / (9.0 / 16.0)) - 1.0).abs() > 0.01 {
            out.push(v(
                "aspect_ratio",
                format!("picture {w}x{h} is not 9:16 (within 1%); crop or pad it to 9:16, e.g. 1080x1920"),
            ));
        }
        if w < 720 || h < 1280 {
            out.push(v(
                "resolution_too_low",
                format!("resolution {w}x{h} is below the minimum 720x1280"),
            ));
        }
    } else if !(360..=4096).contains(&w) || !(360..=4096).contains(&h) {
        out.push(v(
            "resolution_out_of_range",
            format!("picture {w}x{h}: each side must be 360–4096 px"),
        ));
    }

    let (fmin, fmax) = if brief { (24.0, 60.0) } else { (23.0, 60.0) };
    match video.fps {
        None => out.push(v(
            "frame_rate_unknown",
            "the frame rate could not be measured".into(),
        )),
        Some(fps) if fps < fmin - FPS_TOLERANCE || fps > fmax + FPS_TOLERANCE => out.push(v(
            "frame_rate_out_of_range",
            format!("frame rate {fps:.3} fps is outside {fmin}–{fmax} fps"),
        )),
        Some(_) => {}
    }

    if brief {
        if let Some(a) = &info.audio {
            let (ok, want) = if info.container == Container::WebM {
                (
                    matches!(a.codec, AudioCodec::Opus | AudioCodec::Vorbis),
                    "Opus or Vorbis in WebM",
                )
            } else {
                (a.codec == AudioCodec::Aac, "AAC")
            };
            if !ok {
                out.push(v(
                    "audio_codec_not_allowed",
                    format!(
                        "audio codec {} is not accepted; re-encode it to {want}",
                        a.codec
                    ),
                ));
            }
        }
        match info.bitrate_bps {
            None => {
                if info.duration_secs.is_some() {
                    out.push(v(
                        "bitrate_unknown",
                        "the bitrate could not be measured".into(),
                    ))
                }
            }
            Some(b) if b < 516_000 => out.push(v(
                "bitrate_too_low",
                format!("overall bitrate {} is below 516 kbps", rate(b)),
            )),
            Some(b) if b > 20_000_000 => out.push(v(
                "bitrate_too_high",
                format!(
                    "overall bitrate {} is above 20 Mbps; re-encode at a lower bitrate",
                    rate(b)
                ),
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A description that passes the brief: 10 s, 720x1280, 30 fps, H.264 + AAC, 4 Mbps.
    fn info() -> VideoInfo {
        VideoInfo {
            container: Container::Mp4,
            file_size: 5_000_000,
            duration_secs: Some(10.0),
            width: None,
            height: None,
            video: Some(VideoTrack {
                codec: VideoCodec::H264,
                coded_width: 720,
                coded_height: 1280,
                rotation: 0,
                fps: Some(30.0),
                frame_count: Some(300),
                bitrate_bps: None,
            }),
            audio: Some(AudioTrack {
                codec: AudioCodec::Aac,
                sample_rate: Some(44_100),
                channels: Some(2),
            }),
            bitrate_bps: None,
            notes: vec![],
        }
        .finish()
    }

    fn codes(i: &VideoInfo, p: Policy) -> Vec<&'static str> {
        validate(i, p, None).into_iter().map(|v| v.code).collect()
    }

    /// Sets duration and keeps the bitrate at 4 Mbps.
    fn with_duration(d: f64) -> VideoInfo {
        let mut i = info();
        i.duration_secs = Some(d);
        i.file_size = (d * 500_000.0) as u64;
        i.finish()
    }

    fn with_fps(f: f64) -> VideoInfo {
        let mut i = info();
        i.video.as_mut().unwrap().fps = Some(f);
        i
    }

    fn with_bitrate(bps: u64) -> VideoInfo {
        let mut i = info();
        i.file_size = bps * 10 / 8;
        i.finish()
    }

    fn with_size(w: u32, h: u32, rotation: u16) -> VideoInfo {
        let mut i = info();
        let v = i.video.as_mut().unwrap();
        (v.coded_width, v.coded_height, v.rotation) = (w, h, rotation);
        i.finish()
    }

    #[test]
    fn the_baseline_passes_both_policies() {
        assert!(codes(&info(), Policy::Brief).is_empty());
        assert!(codes(&info(), Policy::Api).is_empty());
    }

    #[test]
    fn duration_limits_hold_at_their_edges() {
        assert!(codes(&with_duration(1.0), Policy::Brief).is_empty());
        assert_eq!(
            codes(&with_duration(0.999), Policy::Brief),
            ["duration_too_short"]
        );
        // The API documents no minimum.
        assert!(codes(&with_duration(0.5), Policy::Api).is_empty());
        assert!(codes(&with_duration(600.0), Policy::Brief).is_empty());
        // A real "10:00" file measures 600.02 s.
        assert!(codes(&with_duration(600.024), Policy::Brief).is_empty());
        assert!(codes(&with_duration(600.5), Policy::Api).is_empty());
        assert_eq!(
            codes(&with_duration(600.6), Policy::Brief),
            ["duration_too_long"]
        );
        assert_eq!(
            codes(&with_duration(600.6), Policy::Api),
            ["duration_too_long"]
        );
        let mut unknown = info();
        unknown.duration_secs = None;
        let unknown = unknown.finish();
        assert_eq!(codes(&unknown, Policy::Brief), ["duration_unknown"]);
    }

    #[test]
    fn the_creators_limit_always_applies_with_a_small_slack() {
        let i = with_duration(60.02);
        assert!(validate(&i, Policy::Api, Some(60)).is_empty());
        let over = with_duration(61.0);
        let v = validate(&over, Policy::Api, Some(60));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].code, "duration_over_creator_limit");
        assert!(v[0].message.contains("at most 60 s"), "{}", v[0].message);
        assert_eq!(
            validate(&with_duration(1.2), Policy::Brief, Some(1))[0].code,
            "duration_over_creator_limit"
        );
        // 0 means TikTok did not say.
        assert!(validate(&over, Policy::Brief, Some(0)).is_empty());
    }

    #[test]
    fn frame_rate_limits_count_23_976_as_24() {
        assert!(codes(&with_fps(24000.0 / 1001.0), Policy::Brief).is_empty());
        assert!(codes(&with_fps(24.0), Policy::Brief).is_empty());
        assert!(codes(&with_fps(60.0), Policy::Brief).is_empty());
        assert_eq!(
            codes(&with_fps(23.9), Policy::Brief),
            ["frame_rate_out_of_range"]
        );
        assert_eq!(
            codes(&with_fps(60.1), Policy::Brief),
            ["frame_rate_out_of_range"]
        );
        assert_eq!(
            codes(&with_fps(60.1), Policy::Api),
            ["frame_rate_out_of_range"]
        );
        // The API's floor is 23.
        assert!(codes(&with_fps(23.0), Policy::Api).is_empty());
        assert_eq!(
            codes(&with_fps(22.9), Policy::Api),
            ["frame_rate_out_of_range"]
        );
        let v = validate(&with_fps(15.0), Policy::Brief, None);
        assert_eq!(v[0].message, "frame rate 15.000 fps is outside 24–60 fps");
    }

    #[test]
    fn bitrate_limits_are_inclusive() {
        assert!(codes(&with_bitrate(516_000), Policy::Brief).is_empty());
        assert_eq!(
            codes(&with_bitrate(515_000), Policy::Brief),
            ["bitrate_too_low"]
        );
        assert!(codes(&with_bitrate(20_000_000), Policy::Brief).is_empty());
        assert_eq!(
            codes(&with_bitrate(20_001_000), Policy::Brief),
            ["bitrate_too_high"]
        );
        // No bitrate rule in the API's limits.
        assert!(codes(&with_bitrate(100_000), Policy::Api).is_empty());
    }

    #[test]
    fn aspect_is_9_16_within_one_percent_after_rotation() {
        assert!(codes(&with_size(1080, 1920, 0), Policy::Brief).is_empty());
        // 1088x1920 is 0.74% wide of 9:16.
        assert!(codes(&with_size(1088, 1920, 0), Policy::Brief).is_empty());
        // 1100x1920 is 1.85% wide.
        assert_eq!(
            codes(&with_size(1100, 1920, 0), Policy::Brief),
            ["aspect_ratio"]
        );
        // Stored landscape, shown portrait.
        assert!(codes(&with_size(1280, 720, 90), Policy::Brief).is_empty());
        assert!(codes(&with_size(1280, 720, 270), Policy::Brief).is_empty());
        assert_eq!(
            codes(&with_size(1280, 720, 0), Policy::Brief),
            ["aspect_ratio", "resolution_too_low"]
        );
        assert_eq!(
            codes(&with_size(540, 960, 0), Policy::Brief),
            ["resolution_too_low"]
        );
        // The API wants 360–4096 per side and no aspect.
        assert!(codes(&with_size(1280, 720, 0), Policy::Api).is_empty());
        assert_eq!(
            codes(&with_size(300, 640, 0), Policy::Api),
            ["resolution_out_of_range"]
        );
    }

    #[test]
    fn codecs_follow_the_container_under_the_brief() {
        let mut webm = info();
        webm.container = Container::WebM;
        webm.video.as_mut().unwrap().codec = VideoCodec::Vp9;
        webm.audio.as_mut().unwrap().codec = AudioCodec::Opus;
        assert!(codes(&webm, Policy::Brief).is_empty());
        webm.audio.as_mut().unwrap().codec = AudioCodec::Aac;
        assert_eq!(codes(&webm, Policy::Brief), ["audio_codec_not_allowed"]);
        let mut mp4_vp9 = info();
        mp4_vp9.video.as_mut().unwrap().codec = VideoCodec::Vp9;
        assert_eq!(codes(&mp4_vp9, Policy::Brief), ["video_codec_not_allowed"]);
        assert!(codes(&mp4_vp9, Policy::Api).is_empty());
        let mut no_audio = info();
        no_audio.audio = None;
        assert!(
            codes(&no_audio, Policy::Brief).is_empty(),
            "audio is optional"
        );
    }

    #[test]
    fn four_gb_is_read_as_the_smaller_decimal_value() {
        let mut i = info();
        i.file_size = 4_000_000_000;
        i.duration_secs = Some(600.0);
        assert!(!codes(&i.clone().finish(), Policy::Api).contains(&"file_too_large"));
        i.file_size = 4_000_000_001;
        assert_eq!(codes(&i.finish(), Policy::Api), ["file_too_large"]);
    }
}
