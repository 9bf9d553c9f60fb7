//! WebM (and other Matroska, told apart by the DocType) through our own bounded EBML walk
//! ([`super::ebml`]): the EBML header, then the Segment's top-level elements until Info, Tracks and
//! the first Cluster are known. Only the values the description needs are read; CodecPrivate, Cues,
//! Tags, Chapters, Attachments and frame data are seeked over, whatever their size, so the probe's
//! memory is a constant. A live recording (no Duration, or no DefaultDuration for the video) has
//! its Clusters walked for the block headers alone: track number and timestamp, never the frames.

use std::io::{Read, Seek};

use super::ebml::{Element, Reader, malformed};
use super::model::*;

/// Most frames scanned when the header lacks a duration or frame rate (a live recording). A
/// 10-minute 60 fps file with audio has about 64,000.
const MAX_SCAN_FRAMES: u64 = 200_000;

/// The longest DocType and CodecID read; no registered one comes close.
const MAX_NAME: usize = 64;

const EBML: u32 = 0x1A45_DFA3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const DURATION: u32 = 0x4489;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const DEFAULT_DURATION: u32 = 0x23_E383;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const AUDIO: u32 = 0xE1;
const SAMPLING_FREQUENCY: u32 = 0xB5;
const CHANNELS: u32 = 0x9F;
const CLUSTER: u32 = 0x1F43_B675;
const TIMESTAMP: u32 = 0xE7;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_DURATION: u32 = 0x9B;
const VOID: u32 = 0xEC;
const CRC32: u32 = 0xBF;

/// What a TrackEntry says that the description uses.
#[derive(Debug, Default)]
struct Track {
    number: u64,
    kind: u64,
    codec: String,
    default_duration: Option<u64>,
    pixels: Option<(u64, u64)>,
    audio: Option<(f64, u64)>,
}

/// What the Segment's header elements say.
#[derive(Debug)]
struct Header {
    scale: u64,
    duration: Option<f64>,
    video: Option<Track>,
    audio: Option<Track>,
    first_cluster: u64,
}

pub(super) fn probe<R: Read + Seek>(f: R, file_len: u64) -> Result<VideoInfo, ProbeError> {
    let mut r = Reader::new(f, file_len)?;
    let head = r.next()?.ok_or(ProbeError::Empty)?;
    if head.id != EBML {
        return Err(malformed("the file does not start with an EBML header"));
    }
    let container = ebml_header(&mut r, &head)?;
    let segment = loop {
        match r.next()? {
            Some(e) if e.id == SEGMENT => break e,
            Some(e) if e.id == VOID || e.id == CRC32 => r.seek_to(r.known_end(&e)?)?,
            Some(e) => {
                return Err(malformed(format!(
                    "expected a Segment after the EBML header, found element {:#x} at offset {}",
                    e.id, e.start
                )));
            }
            None => {
                return Err(ProbeError::Truncated(
                    "no Segment after the EBML header".into(),
                ));
            }
        }
    };
    let seg_end = segment.end().map_or(r.len(), |e| e.min(r.len()));
    let h = header(&mut r, &segment, seg_end)?;
    let scale = h.scale as f64; // ns per tick
    let mut duration_secs = h.duration.map(|d| d * scale / 1e9);
    let mut notes = Vec::new();

    let mut video = h.video.as_ref().map(|t| {
        let (w, h) = t.pixels.unwrap_or((0, 0));
        VideoTrack {
            codec: match t.codec.as_str() {
                "V_VP8" => VideoCodec::Vp8,
                "V_VP9" => VideoCodec::Vp9,
                "V_AV1" => VideoCodec::Av1,
                "V_MPEG4/ISO/AVC" => VideoCodec::H264,
                "V_MPEGH/ISO/HEVC" => VideoCodec::Hevc,
                other => VideoCodec::Other(other.chars().take(32).collect()),
            },
            coded_width: w.min(u32::MAX.into()) as u32,
            coded_height: h.min(u32::MAX.into()) as u32,
            rotation: 0,
            fps: t
                .default_duration
                .filter(|&ns| ns > 0)
                .map(|ns| 1e9 / ns as f64)
                .filter(|f| f.is_finite()),
            frame_count: None,
            bitrate_bps: None,
        }
    });
    let audio = h.audio.as_ref().map(|t| AudioTrack {
        codec: match t.codec.as_str() {
            "A_OPUS" => AudioCodec::Opus,
            "A_VORBIS" => AudioCodec::Vorbis,
            "A_MPEG/L3" => AudioCodec::Mp3,
            id if id.starts_with("A_AAC") => AudioCodec::Aac,
            other => AudioCodec::Other(other.chars().take(32).collect()),
        },
        sample_rate: t.audio.map(|(hz, _)| hz as u32),
        channels: t.audio.map(|(_, n)| n.min(u16::MAX.into()) as u16),
    });

    let need_fps = video.as_ref().is_some_and(|v| v.fps.is_none());
    if duration_secs.is_none() || need_fps {
        // A live recording: no Duration (and often no DefaultDuration). Read the blocks' timestamps.
        let video_number = h.video.as_ref().map(|t| t.number);
        let s = scan(&mut r, h.first_cluster, seg_end, video_number)?;
        if s.frames > MAX_SCAN_FRAMES {
            notes.push(format!(
                "stopped reading frames after {MAX_SCAN_FRAMES}; duration unknown"
            ));
        } else {
            let vfps = (s.vcount > 1 && s.vlast > s.vfirst)
                .then(|| (s.vcount - 1) as f64 / ((s.vlast - s.vfirst) as f64 * scale / 1e9));
            if let Some(v) = video.as_mut() {
                v.frame_count = Some(s.vcount);
                if v.fps.is_none() {
                    v.fps = vfps;
                }
            }
            if duration_secs.is_none() && s.last >= s.first && s.first != u64::MAX {
                // The last frame lasts one frame interval.
                let tail = video.as_ref().and_then(|v| v.fps).map_or(0.0, |f| 1.0 / f);
                duration_secs = Some((s.last - s.first) as f64 * scale / 1e9 + tail);
                notes.push("no duration in the header; derived by reading the frames".into());
            }
        }
    }
    Ok(VideoInfo::new(
        container,
        r.len(),
        duration_secs,
        video,
        audio,
        notes,
    ))
}

/// The container, from the DocType; refuses what is not Matroska or a version past ours.
fn ebml_header<R: Read + Seek>(r: &mut Reader<R>, head: &Element) -> Result<Container, ProbeError> {
    let (mut doc_type, mut read_version) = (None, 1);
    r.children(head, |r, c| {
        match c.id {
            DOC_TYPE => doc_type = Some(r.string(c, MAX_NAME)?),
            DOC_TYPE_READ_VERSION => read_version = r.uint(c)?,
            _ => {}
        }
        Ok(())
    })?;
    let container = match doc_type.as_deref() {
        Some("webm") => Container::WebM,
        Some("matroska") => Container::Matroska,
        Some(other) => return Err(malformed(format!("unsupported DocType {other:?}"))),
        None => return Err(malformed("the EBML header has no DocType")),
    };
    if read_version > 3 {
        return Err(malformed(format!(
            "unsupported DocTypeReadVersion {read_version} (at most 3 is read)"
        )));
    }
    Ok(container)
}

/// Walks the Segment's top-level elements for Info and Tracks, seeking over the rest, up to the
/// first Cluster once both are known (past Clusters otherwise: known sizes are seeked over, one of
/// unknown size is entered and its blocks seeked over).
fn header<R: Read + Seek>(
    r: &mut Reader<R>,
    segment: &Element,
    end: u64,
) -> Result<Header, ProbeError> {
    let (mut info, mut tracks, mut first_cluster) = (None, None, None);
    r.seek_to(segment.data)?;
    while r.pos() < end {
        let Some(e) = r.next()? else { break };
        match e.id {
            INFO if info.is_none() => info = Some(parse_info(r, &e)?),
            TRACKS if tracks.is_none() => tracks = Some(parse_tracks(r, &e)?),
            CLUSTER => {
                first_cluster.get_or_insert(e.start);
                if info.is_some() && tracks.is_some() {
                    break;
                }
            }
            _ => {}
        }
        // Into an element of unknown size (a live Cluster), over any other.
        r.seek_to(e.end().unwrap_or(e.data))?;
    }
    let (scale, duration) = info.unwrap_or((1_000_000, None));
    let (video, audio) = tracks.ok_or_else(|| malformed("no Tracks element in the Segment"))?;
    let first_cluster =
        first_cluster.ok_or_else(|| malformed("no Cluster in the Segment (no media data)"))?;
    Ok(Header {
        scale,
        duration,
        video,
        audio,
        first_cluster,
    })
}

/// TimestampScale (ns per tick) and Duration (ticks).
fn parse_info<R: Read + Seek>(
    r: &mut Reader<R>,
    e: &Element,
) -> Result<(u64, Option<f64>), ProbeError> {
    let (mut scale, mut duration) = (1_000_000, None);
    r.children(e, |r, c| {
        match c.id {
            TIMESTAMP_SCALE => scale = r.uint(c)?,
            DURATION => duration = Some(r.float(c)?),
            _ => {}
        }
        Ok(())
    })?;
    if scale == 0 {
        return Err(malformed("TimestampScale is 0"));
    }
    if let Some(d) = duration
        && !(d.is_finite() && d >= 0.0)
    {
        return Err(malformed(format!("Duration {d} is not a positive number")));
    }
    Ok((scale, duration))
}

/// The first video track and the first audio track.
fn parse_tracks<R: Read + Seek>(
    r: &mut Reader<R>,
    e: &Element,
) -> Result<(Option<Track>, Option<Track>), ProbeError> {
    let (mut video, mut audio) = (None, None);
    r.children(e, |r, c| {
        if c.id != TRACK_ENTRY {
            return Ok(());
        }
        let mut t = Track::default();
        r.children(c, |r, f| {
            match f.id {
                TRACK_NUMBER => t.number = r.uint(f)?,
                TRACK_TYPE => t.kind = r.uint(f)?,
                CODEC_ID => t.codec = r.string(f, MAX_NAME)?,
                DEFAULT_DURATION => t.default_duration = Some(r.uint(f)?),
                VIDEO => {
                    let (mut w, mut h) = (0, 0);
                    r.children(f, |r, v| {
                        match v.id {
                            PIXEL_WIDTH => w = r.uint(v)?,
                            PIXEL_HEIGHT => h = r.uint(v)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    t.pixels = Some((w, h));
                }
                AUDIO => {
                    let (mut hz, mut n) = (8000.0, 1);
                    r.children(f, |r, a| {
                        match a.id {
                            SAMPLING_FREQUENCY => hz = r.float(a)?,
                            CHANNELS => n = r.uint(a)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    t.audio = Some((hz, n));
                }
                _ => {}
            }
            Ok(())
        })?;
        match t.kind {
            1 if video.is_none() => video = Some(t),
            2 if audio.is_none() => audio = Some(t),
            _ => {}
        }
        Ok(())
    })?;
    Ok((video, audio))
}

/// What the blocks' headers say, in ticks.
#[derive(Debug)]
struct Scan {
    frames: u64,
    first: u64,
    last: u64,
    vfirst: u64,
    vlast: u64,
    vcount: u64,
}

/// Walks the Clusters from the first one, entering Clusters and BlockGroups and reading only each
/// block's header (track, timestamp, lacing) and BlockDurations; frame data is seeked over. Stops
/// past [`MAX_SCAN_FRAMES`] frames.
fn scan<R: Read + Seek>(
    r: &mut Reader<R>,
    from: u64,
    end: u64,
    video: Option<u64>,
) -> Result<Scan, ProbeError> {
    let mut s = Scan {
        frames: 0,
        first: u64::MAX,
        last: 0,
        vfirst: u64::MAX,
        vlast: 0,
        vcount: 0,
    };
    let (mut cluster_ts, mut block_ts) = (0u64, 0u64);
    r.seek_to(from)?;
    while r.pos() < end && s.frames <= MAX_SCAN_FRAMES {
        let Some(e) = r.next()? else { break };
        match e.id {
            CLUSTER | BLOCK_GROUP => {
                r.seek_to(e.data)?;
                continue;
            }
            TIMESTAMP => cluster_ts = r.uint(&e)?,
            SIMPLE_BLOCK | BLOCK => {
                let block_end = r.known_end(&e)?;
                r.seek_to(e.data)?;
                let (track, _) = r.vint("a block's track number")?;
                let mut b = [0u8; 3];
                for x in &mut b {
                    *x = r.u8("a block header")?;
                }
                let rel = i16::from_be_bytes([b[0], b[1]]);
                let laced = b[2] & 0x06 != 0;
                let frames = if laced {
                    u64::from(r.u8("a block header")?) + 1
                } else {
                    1
                };
                if r.pos() > block_end {
                    return Err(malformed(format!(
                        "the block at offset {} is smaller than its header",
                        e.start
                    )));
                }
                block_ts = cluster_ts.saturating_add_signed(rel.into());
                s.frames += frames;
                s.first = s.first.min(block_ts);
                s.last = s.last.max(block_ts);
                if Some(track) == video {
                    s.vfirst = s.vfirst.min(block_ts);
                    s.vlast = s.vlast.max(block_ts);
                    s.vcount += frames;
                }
            }
            BLOCK_DURATION => {
                let d = r.uint(&e)?;
                s.last = s.last.max(block_ts.saturating_add(d));
            }
            _ => {}
        }
        r.seek_to(e.end().unwrap_or(e.data))?;
    }
    Ok(s)
}

#[cfg(test)]
#[path = "mkv_tests.rs"]
mod tests;
