//! MP4 and MOV: our own top-level box walker (it seeks over media data and checks every box ends
//! inside the file) plus `mp4-atom` for the bounded `moov` and `moof` bodies.

use super::model::*;
use mp4_atom::{Codec, Decode, Moof, Moov, Trak};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Largest `moov` we read; a 10-minute 60 fps movie's is under 1 MiB.
const MAX_MOOV: u64 = 64 << 20;
/// Largest `moof` we read.
const MAX_MOOF: u64 = 16 << 20;
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

fn malformed(detail: impl Into<String>) -> ProbeError {
    ProbeError::Malformed {
        container: "MP4",
        detail: detail.into(),
    }
}

struct BoxHeader {
    kind: [u8; 4],
    start: u64,
    end: u64,
}

fn read_header(f: &mut File, at: u64, file_len: u64) -> Result<BoxHeader, ProbeError> {
    if file_len - at < 8 {
        return Err(ProbeError::Truncated(format!(
            "{} stray bytes after the last box at offset {at}",
            file_len - at
        )));
    }
    let mut h = [0u8; 16];
    f.seek(SeekFrom::Start(at))?;
    let n = 16.min(file_len - at) as usize;
    f.read_exact(&mut h[..n])?;
    let size32 = u32::from_be_bytes(h[0..4].try_into().unwrap()) as u64;
    let kind: [u8; 4] = h[4..8].try_into().unwrap();
    let (size, header_len) = match size32 {
        0 => (file_len - at, 8),
        1 => {
            if n < 16 {
                return Err(ProbeError::Truncated(format!(
                    "box header at offset {at} is cut off"
                )));
            }
            (u64::from_be_bytes(h[8..16].try_into().unwrap()), 16)
        }
        s => (s, 8),
    };
    if size < header_len {
        return Err(malformed(format!(
            "box {:?} at offset {at} declares {size} bytes, less than its own header",
            fourcc(&kind)
        )));
    }
    let end = at.checked_add(size).ok_or_else(|| {
        malformed(format!(
            "box {:?} at offset {at} has an impossible size",
            fourcc(&kind)
        ))
    })?;
    if end > file_len {
        return Err(ProbeError::Truncated(format!(
            "box {:?} at offset {at} needs {size} bytes but the file ends at {file_len}",
            fourcc(&kind)
        )));
    }
    Ok(BoxHeader {
        kind,
        start: at,
        end,
    })
}

fn fourcc(k: &[u8]) -> String {
    k.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
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

fn read_box(f: &mut File, h: &BoxHeader, max: u64) -> Result<Vec<u8>, ProbeError> {
    let len = h.end - h.start;
    if len > max {
        return Err(ProbeError::LimitExceeded(format!(
            "{:?} box of {len} bytes (the most read is {max})",
            fourcc(&h.kind)
        )));
    }
    let mut buf = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(h.start))?;
    f.read_exact(&mut buf)?;
    check_depth(&buf)?;
    Ok(buf)
}

/// One track fragment run summary: samples, the sum of explicit durations, how many samples took
/// the default duration, and the bytes they hold.
#[derive(Default)]
struct FragTotals {
    samples: u64,
    ticks: u64,
    bytes: u64,
}

pub(super) fn probe(f: &mut File, file_len: u64) -> Result<VideoInfo, ProbeError> {
    let mut container = None;
    let mut moov: Option<Moov> = None;
    let mut frags: HashMap<u32, FragTotals> = HashMap::new();
    let mut moofs: Vec<Moof> = Vec::new();
    let mut at = 0u64;
    let mut boxes = 0usize;
    while at < file_len {
        boxes += 1;
        if boxes > MAX_TOP_BOXES {
            return Err(ProbeError::LimitExceeded(format!(
                "more than {MAX_TOP_BOXES} top-level boxes"
            )));
        }
        let h = read_header(f, at, file_len)?;
        match &h.kind {
            b"ftyp" => {
                let body = read_box(f, &h, 4096)?;
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
                let body = read_box(f, &h, MAX_MOOV)?;
                moov = Some(
                    Moov::decode(&mut body.as_slice())
                        .map_err(|e| malformed(format!("moov: {e}")))?,
                );
            }
            b"moof" => {
                let body = read_box(f, &h, MAX_MOOF)?;
                let moof = Moof::decode(&mut body.as_slice())
                    .map_err(|e| malformed(format!("moof: {e}")))?;
                moofs.push(moof);
            }
            k if at == 0 && !is_top_box(k) => return Err(ProbeError::UnrecognizedFormat),
            _ => {}
        }
        at = h.end;
    }
    let moov = moov.ok_or_else(|| malformed("no moov box (the movie's description is missing)"))?;
    let container = container.unwrap_or(Container::Mov);

    // Fragment durations, with tfhd, then trex defaults.
    let trex_default = |track: u32| {
        moov.mvex
            .as_ref()
            .and_then(|m| m.trex.iter().find(|t| t.track_id == track))
            .map(|t| (t.default_sample_duration, t.default_sample_size))
            .unwrap_or((0, 0))
    };
    for moof in &moofs {
        for traf in &moof.traf {
            let id = traf.tfhd.track_id;
            let (tdur, tsize) = trex_default(id);
            let dur = traf.tfhd.default_sample_duration.unwrap_or(tdur) as u64;
            let size = traf.tfhd.default_sample_size.unwrap_or(tsize) as u64;
            let t = frags.entry(id).or_default();
            for run in &traf.trun {
                for s in run.samples.iter() {
                    t.samples += 1;
                    t.ticks += s.duration.map(u64::from).unwrap_or(dur);
                    t.bytes += s.size.map(u64::from).unwrap_or(size);
                }
            }
        }
    }

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

    let video_trak = moov
        .trak
        .iter()
        .find(|t| &t.mdia.hdlr.handler.to_string() == "vide");
    let audio_trak = moov
        .trak
        .iter()
        .find(|t| &t.mdia.hdlr.handler.to_string() == "soun");

    let mut video = None;
    if let Some(t) = video_trak {
        let (v, span) = video_track(t, frags.get(&t.tkhd.track_id))?;
        if duration_secs.is_none()
            && let Some(s) = span
        {
            notes.push("duration derived from the fragments".to_string());
            duration_secs = Some(s);
        }
        video = Some(v);
    }
    if !moofs.is_empty() {
        notes.push(format!("fragmented MP4 ({} fragments)", moofs.len()));
    }
    let audio = audio_trak.map(audio_track);
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
    frag: Option<&FragTotals>,
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
    let mut frames: u64 = stbl
        .stts
        .entries
        .iter()
        .map(|e| e.sample_count as u64)
        .sum();
    let mut ticks: u64 = stbl
        .stts
        .entries
        .iter()
        .map(|e| e.sample_count as u64 * e.sample_delta as u64)
        .sum();
    let mut bytes: u64 = match &stbl.stsz.samples {
        mp4_atom::StszSamples::Identical { count, size } => *count as u64 * *size as u64,
        mp4_atom::StszSamples::Different { sizes } => sizes.iter().map(|&s| s as u64).sum(),
    };
    if let Some(fr) = frag {
        frames += fr.samples;
        ticks += fr.ticks;
        bytes += fr.bytes;
    }
    let span = (timescale > 0 && ticks > 0).then(|| ticks as f64 / timescale as f64);
    let fps = span.filter(|_| frames > 0).map(|s| frames as f64 / s);
    let bitrate_bps = span.map(|s| (bytes as f64 * 8.0 / s).round() as u64);
    let frag_span = frag.filter(|f| f.samples > 0).and(span);
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
