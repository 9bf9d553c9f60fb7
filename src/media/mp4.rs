//! MP4 and MOV: our own top-level box walker (it seeks over media data and checks every box ends
//! inside the file), the movie box read without its sample tables ([`super::tables`]), fragments
//! streamed ([`super::fragments`]), and `mp4-atom` for the small rest of the movie box. Memory stays
//! bounded by constants, whatever the file declares.

use super::boxes::{BoxHeader, Src, fourcc, malformed, top_header};
use super::fragments::Fragments;
use super::model::*;
use super::tables::{TrackTables, reduce_moov};
use mp4_atom::{Codec, Decode, Moov, Trak};

/// Largest `moov` walked; a 10-minute 60 fps movie's is under 1 MiB. Only its sums and its small
/// boxes are kept, so this bounds the time spent, not the memory.
const MAX_MOOV: u64 = 64 << 20;
/// Most top-level boxes we walk (a fragmented 10-minute file has a few thousand).
const MAX_TOP_BOXES: usize = 200_000;
/// Deepest box nesting handed to mp4-atom, whose decoder recurses (a crafted 100,000-deep file
/// overflowed its stack, an abort no `catch_unwind` can stop).
const MAX_DEPTH: usize = 16;

/// The top-level box types that can open an MP4 or QuickTime file.
pub(super) fn is_top_box(kind: &[u8]) -> bool {
    matches!(
        kind,
        b"ftyp" | b"styp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide" | b"pnot" | b"uuid"
    )
}

/// Boxes whose bodies are boxes (after `skip` bytes), and so where mp4-atom recurses.
fn container_skip(kind: &[u8]) -> Option<usize> {
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"dinf" | b"edts" | b"mvex" | b"udta"
        | b"moof" | b"traf" | b"mfra" | b"tref" | b"ilst" | b"sinf" | b"schi" | b"gmhd" => Some(0),
        b"meta" => Some(4),
        _ => None,
    }
}

/// Walks the nesting of `body` (a box's whole bytes) without recursion and refuses it when it goes
/// deeper than [`MAX_DEPTH`].
fn check_depth(bytes: &[u8]) -> Result<(), ProbeError> {
    // (position, end) of each open container.
    let mut stack: Vec<(usize, usize)> = vec![(0, bytes.len())];
    while let Some(top) = stack.last_mut() {
        let (pos, end) = *top;
        if pos + 8 > end {
            stack.pop();
            continue;
        }
        let size32 = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let (size, hl) = match size32 {
            0 => (end - pos, 8),
            1 if pos + 16 <= end => {
                let s = u64::from_be_bytes(bytes[pos + 8..pos + 16].try_into().unwrap());
                (usize::try_from(s).unwrap_or(usize::MAX), 16)
            }
            s => (s, 8),
        };
        if size < hl || size > end - pos {
            // mp4-atom reports this one as a decode error; nothing deeper to look at.
            stack.pop();
            continue;
        }
        top.0 = pos + size;
        if let Some(skip) = container_skip(kind) {
            if stack.len() > MAX_DEPTH {
                return Err(ProbeError::LimitExceeded(format!(
                    "boxes nested more than {MAX_DEPTH} deep"
                )));
            }
            stack.push(((pos + hl + skip).min(pos + size), pos + size));
        }
    }
    Ok(())
}

/// Reads a small top-level box whole.
fn read_small(src: &mut Src, h: &BoxHeader, max: u64) -> Result<Vec<u8>, ProbeError> {
    if h.len() > max {
        return Err(ProbeError::LimitExceeded(format!(
            "{:?} box of {} bytes (the most read is {max})",
            h.name(),
            h.len()
        )));
    }
    let mut buf = Vec::new();
    src.copy(h.start, h.end, &mut buf)?;
    Ok(buf)
}

pub(super) fn probe(src: &mut Src) -> Result<VideoInfo, ProbeError> {
    let file_len = src.len;
    let mut container = None;
    let mut moov: Option<(Moov, Vec<TrackTables>)> = None;
    let mut frags = Fragments::default();
    let mut at = 0u64;
    let mut boxes = 0usize;
    while at < file_len {
        boxes += 1;
        if boxes > MAX_TOP_BOXES {
            return Err(ProbeError::LimitExceeded(format!(
                "more than {MAX_TOP_BOXES} top-level boxes"
            )));
        }
        let h = top_header(src, at)?;
        match &h.kind {
            b"ftyp" => {
                let body = read_small(src, &h, 4096)?;
                let ftyp = mp4_atom::Ftyp::decode(&mut body.as_slice())
                    .map_err(|e| malformed(format!("ftyp: {e}")))?;
                container = Some(if &ftyp.major_brand.to_string() == "qt  " {
                    Container::Mov
                } else {
                    Container::Mp4
                });
            }
            b"moov" => {
                if moov.is_some() {
                    return Err(malformed("two moov boxes"));
                }
                if h.len() > MAX_MOOV {
                    return Err(ProbeError::LimitExceeded(format!(
                        "\"moov\" box of {} bytes (the most read is {MAX_MOOV})",
                        h.len()
                    )));
                }
                let reduced = reduce_moov(src, &h)?;
                check_depth(&reduced.moov)?;
                let decoded = Moov::decode(&mut reduced.moov.as_slice())
                    .map_err(|e| malformed(format!("moov: {e}")))?;
                moov = Some((decoded, reduced.tracks));
            }
            b"moof" => frags.add_moof(src, &h)?,
            k if at == 0 && !is_top_box(k) => return Err(ProbeError::UnrecognizedFormat),
            _ => {}
        }
        at = h.end;
    }
    let (moov, tables) =
        moov.ok_or_else(|| malformed("no moov box (the movie's description is missing)"))?;
    let container = container.unwrap_or(Container::Mov);

    // Every track's two tables must count the same samples (ISO 14496-12 8.6.1.2 and 8.7.3).
    for (t, sums) in moov.trak.iter().zip(&tables) {
        if sums.stts_samples != sums.stsz_samples {
            return Err(malformed(format!(
                "track {}: the time-to-sample table (stts) counts {} samples but the sample size table (stsz) {}; the file's index is inconsistent: export or remux it again",
                t.tkhd.track_id, sums.stts_samples, sums.stsz_samples
            )));
        }
    }

    // Fragment durations and sizes, with the movie's (trex) defaults where the fragments set none.
    let frag = |track: u32| {
        let (dur, size) = moov
            .mvex
            .as_ref()
            .and_then(|m| m.trex.iter().find(|t| t.track_id == track))
            .map(|t| (t.default_sample_duration, t.default_sample_size))
            .unwrap_or((0, 0));
        frags.get(track).map(|f| f.resolve(dur, size))
    };

    let mut notes = Vec::new();
    let mut duration_secs = None;
    if moov.mvhd.timescale > 0 && moov.mvhd.duration > 0 && moov.mvhd.duration != u32::MAX as u64 {
        duration_secs = Some(moov.mvhd.duration as f64 / moov.mvhd.timescale as f64);
    } else if let Some(mehd) = moov.mvex.as_ref().and_then(|m| m.mehd.as_ref())
        && moov.mvhd.timescale > 0
        && mehd.fragment_duration > 0
    {
        duration_secs = Some(mehd.fragment_duration as f64 / moov.mvhd.timescale as f64);
    }

    let find = |handler: &str| {
        moov.trak
            .iter()
            .zip(&tables)
            .find(|(t, _)| t.mdia.hdlr.handler.to_string() == handler)
    };
    let video_trak = find("vide");
    let audio_trak = find("soun");

    let mut video = None;
    if let Some((t, sums)) = video_trak {
        let (v, span) = video_track(t, sums, frag(t.tkhd.track_id))?;
        if duration_secs.is_none()
            && let Some(s) = span
        {
            notes.push("duration derived from the fragments".to_string());
            duration_secs = Some(s);
        }
        video = Some(v);
    }
    if frags.count > 0 {
        notes.push(format!("fragmented MP4 ({} fragments)", frags.count));
    }
    let audio = audio_trak.map(|(t, _)| audio_track(t));
    Ok(VideoInfo::new(
        container,
        file_len,
        duration_secs,
        video,
        audio,
        notes,
    ))
}

/// The video track and, for fragmented files, its span in seconds.
fn video_track(
    t: &Trak,
    sums: &TrackTables,
    frag: Option<(u64, u64, u64)>,
) -> Result<(VideoTrack, Option<f64>), ProbeError> {
    let stbl = &t.mdia.minf.stbl;
    let entry = stbl
        .stsd
        .codecs
        .first()
        .ok_or_else(|| malformed("the video track has no sample description"))?;
    let codec = match entry {
        Codec::Avc1(_) | Codec::Avc3(_) => VideoCodec::H264,
        Codec::Hvc1(_) | Codec::Hev1(_) => VideoCodec::Hevc,
        Codec::Vp08(_) => VideoCodec::Vp8,
        Codec::Vp09(_) => VideoCodec::Vp9,
        Codec::Av01(_) => VideoCodec::Av1,
        Codec::Unknown(k, _) => VideoCodec::Other(fourcc(&<[u8; 4]>::from(*k))),
        other => VideoCodec::Other(format!("{other:?}").chars().take(12).collect()),
    };
    let (cw, ch) = match entry.visual() {
        Some(v) => (v.width as u32, v.height as u32),
        None => (
            t.tkhd.width.integer() as u32,
            t.tkhd.height.integer() as u32,
        ),
    };
    let m = &t.tkhd.matrix;
    let rotation = match (m.a.signum(), m.b.signum(), m.c.signum(), m.d.signum()) {
        (0, 1, -1, 0) => 90,
        (-1, 0, 0, -1) => 180,
        (0, -1, 1, 0) => 270,
        _ => 0,
    };
    let timescale = t.mdia.mdhd.timescale as u64;
    let mut frames = sums.stts_samples;
    let mut ticks = sums.ticks;
    let mut bytes = sums.bytes;
    if let Some((samples, t, b)) = frag {
        frames += samples;
        ticks = ticks.saturating_add(t);
        bytes = bytes.saturating_add(b);
    }
    let span = (timescale > 0 && ticks > 0).then(|| ticks as f64 / timescale as f64);
    let fps = span.filter(|_| frames > 0).map(|s| frames as f64 / s);
    let bitrate_bps = span.map(|s| (bytes as f64 * 8.0 / s).round() as u64);
    let frag_span = frag.filter(|f| f.0 > 0).and(span);
    Ok((
        VideoTrack {
            codec,
            coded_width: cw,
            coded_height: ch,
            rotation,
            fps,
            frame_count: (frames > 0).then_some(frames),
            bitrate_bps,
        },
        frag_span,
    ))
}

fn audio_track(t: &Trak) -> AudioTrack {
    let entry = t.mdia.minf.stbl.stsd.codecs.first();
    let (codec, audio) = match entry {
        // `mp4a` does not mean AAC: the decoder configuration's object type tells.
        Some(Codec::Mp4a(a)) => {
            let oti = a.esds.es_desc.dec_config.object_type_indication;
            let c = match oti {
                0x40 | 0x66..=0x68 => AudioCodec::Aac,
                0x69 | 0x6B => AudioCodec::Mp3,
                other => AudioCodec::Other(format!("mp4a object type 0x{other:02x}")),
            };
            (c, Some(&a.audio))
        }
        Some(Codec::Mp3(a)) => (AudioCodec::Mp3, Some(&a.audio)),
        Some(Codec::Opus(a)) => (AudioCodec::Opus, Some(&a.audio)),
        Some(Codec::Unknown(k, _)) => (AudioCodec::Other(fourcc(&<[u8; 4]>::from(*k))), None),
        Some(other) => (
            AudioCodec::Other(format!("{other:?}").chars().take(12).collect()),
            None,
        ),
        None => (AudioCodec::Other("none".into()), None),
    };
    AudioTrack {
        codec,
        sample_rate: audio.map(|a| a.sample_rate.integer() as u32),
        channels: audio.map(|a| a.channel_count),
    }
}
