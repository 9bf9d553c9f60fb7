//! The movie box (`moov`) read in bounded memory: its sample tables (one entry per frame, the only
//! part that grows with the file) are summed as they stream past and left out, and the rest, small
//! by nature, is copied into a reduced `moov` for `mp4-atom` to decode.
//!
//! What is kept of the tables is a handful of sums per track ([`TrackTables`]); in the reduced copy
//! each table is an empty one of the same type, so the decoder still finds the boxes it requires.

use super::ProbeError;
use super::boxes::{BoxHeader, Src, child_header, malformed};

/// Largest reduced `moov` (everything but the sample tables); a real one is a few KiB.
const MAX_REDUCED: usize = 4 << 20;
/// Largest single box copied into it; a bigger one that the probe does not need is left out.
const MAX_COPIED_BOX: u64 = 1 << 20;
/// Most tracks in a movie.
pub(super) const MAX_TRACKS: usize = 64;

/// Sums of one track's sample tables.
#[derive(Debug, Default, Clone)]
pub(super) struct TrackTables {
    /// Samples counted by the time-to-sample table (`stts`).
    pub stts_samples: u64,
    /// The track's length in its timescale: the sum of count × delta.
    pub ticks: u64,
    /// Samples counted by the sample size table (`stsz`).
    pub stsz_samples: u64,
    /// The samples' bytes.
    pub bytes: u64,
}

/// A `moov` without its sample tables, and their sums, one per `trak` in order.
pub(super) struct Reduced {
    pub moov: Vec<u8>,
    pub tracks: Vec<TrackTables>,
}

/// Reads the `moov` box `h` from the file.
pub(super) fn reduce_moov(src: &mut Src, h: &BoxHeader) -> Result<Reduced, ProbeError> {
    let mut r = Reduced {
        moov: Vec::new(),
        tracks: Vec::new(),
    };
    let mark = open(&mut r.moov, b"moov");
    src.seek(h.body)?;
    walk(src, h, &mut r)?;
    close(&mut r.moov, mark);
    Ok(r)
}

/// The containers walked into here (the path down to the sample tables), by their parent.
fn descend(parent: &[u8; 4], kind: &[u8; 4]) -> bool {
    matches!(
        (parent, kind),
        (b"moov", b"trak") | (b"trak", b"mdia") | (b"mdia", b"minf") | (b"minf", b"stbl")
    )
}

fn walk(src: &mut Src, parent: &BoxHeader, r: &mut Reduced) -> Result<(), ProbeError> {
    while let Some(h) = child_header(src, parent)? {
        if descend(&parent.kind, &h.kind) {
            if &h.kind == b"trak" {
                if r.tracks.len() >= MAX_TRACKS {
                    return Err(ProbeError::LimitExceeded(format!(
                        "more than {MAX_TRACKS} tracks"
                    )));
                }
                r.tracks.push(TrackTables::default());
            }
            let mark = open(&mut r.moov, &h.kind);
            src.seek(h.body)?;
            walk(src, &h, r)?;
            close(&mut r.moov, mark);
        } else if &parent.kind == b"stbl" {
            stbl_child(src, &h, r)?;
        } else if matches!(&h.kind, b"free" | b"skip") {
            // Padding; the decoder skips it anyway.
        } else if h.len() <= MAX_COPIED_BOX {
            src.copy(h.start, h.end, &mut r.moov)?;
        } else {
            // Too big to be anything the probe reads (track and media headers, handler, edit
            // list, movie extends are a few dozen bytes each): leave it out. The decoder then
            // reports a missing required box, if it was one.
        }
        // Each step adds at most one copied box, so this bounds the copy.
        if r.moov.len() > MAX_REDUCED {
            return Err(ProbeError::LimitExceeded(format!(
                "movie box metadata over {} MiB",
                MAX_REDUCED >> 20
            )));
        }
        src.seek(h.end)?;
    }
    Ok(())
}

/// One box of a sample table (`stbl`): the tables are summed and replaced by empty ones; the sample
/// descriptions are copied.
fn stbl_child(src: &mut Src, h: &BoxHeader, r: &mut Reduced) -> Result<(), ProbeError> {
    let mut dummy = TrackTables::default();
    let t = r.tracks.last_mut().unwrap_or(&mut dummy);
    // Every table is a full box: version and flags first.
    let body = h.end - h.body;
    let need = |n: u64| {
        if body < n {
            Err(malformed(format!(
                "the {:?} box at offset {} is {body} bytes long, too short for its fields",
                h.name(),
                h.start
            )))
        } else {
            Ok(())
        }
    };
    match &h.kind {
        b"stts" => {
            need(8)?;
            src.seek(h.body + 4)?;
            let n = src.u32()? as u64;
            if n * 8 > body - 8 {
                return Err(malformed(format!(
                    "the time-to-sample table (stts) lists {n} entries but has room for {}",
                    (body - 8) / 8
                )));
            }
            for _ in 0..n {
                let count = src.u32()? as u64;
                let delta = src.u32()? as u64;
                t.stts_samples += count;
                t.ticks = t.ticks.saturating_add(count * delta);
            }
            leaf(&mut r.moov, b"stts", &[0; 8]);
        }
        b"stsz" => {
            need(12)?;
            src.seek(h.body + 4)?;
            let size = src.u32()? as u64;
            let count = src.u32()? as u64;
            t.stsz_samples += count;
            if size == 0 {
                if count * 4 > body - 12 {
                    return Err(malformed(format!(
                        "the sample size table (stsz) lists {count} sizes but has room for {}",
                        (body - 12) / 4
                    )));
                }
                for _ in 0..count {
                    t.bytes += src.u32()? as u64;
                }
            } else {
                t.bytes = t.bytes.saturating_add(count * size);
            }
            leaf(&mut r.moov, b"stsz", &[0; 12]);
        }
        // Required by the decoder, not read by the probe: empty ones of the same type.
        b"stsc" | b"stco" | b"co64" => leaf(&mut r.moov, &h.kind, &[0; 8]),
        b"stsd" => {
            if h.len() > MAX_COPIED_BOX {
                return Err(ProbeError::LimitExceeded(format!(
                    "sample description box (stsd) of {} bytes (the most read is {MAX_COPIED_BOX})",
                    h.len()
                )));
            }
            src.copy(h.start, h.end, &mut r.moov)?;
        }
        // Composition offsets, sync samples, sample groups, auxiliary information, padding: one
        // entry per sample or group, and nothing the probe reads.
        _ => {}
    }
    Ok(())
}

/// Starts a container box in `out`; [`close`] writes its size.
fn open(out: &mut Vec<u8>, kind: &[u8; 4]) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    at
}

fn close(out: &mut [u8], at: usize) {
    // The reduced movie is at most a few MiB, so its sizes fit 32 bits.
    let size = (out.len() - at) as u32;
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

fn leaf(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    let at = open(out, kind);
    out.extend_from_slice(body);
    close(out, at);
}
