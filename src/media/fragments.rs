//! Movie fragments (`moof`) streamed in constant memory: each track fragment's header (`tfhd`) and
//! runs (`trun`) are read field by field and summed per track; no sample list is ever kept, so a
//! crafted file with millions of samples costs time (bounded by its size and the probe's deadline),
//! not memory.

use super::ProbeError;
use super::boxes::{BoxHeader, Src, child_header, malformed};
use super::tables::MAX_TRACKS;

/// One track's fragment sums. Samples that take the movie's default (`trex`) duration or size are
/// only counted here, because the `moov` holding those defaults may come after them in the file.
#[derive(Debug, Default, Clone)]
pub(super) struct FragTotals {
    pub samples: u64,
    /// Durations known here (explicit, or the fragment header's default).
    pub ticks: u64,
    pub bytes: u64,
    /// Samples whose duration is the movie's default.
    pub default_duration: u64,
    /// Samples whose size is the movie's default.
    pub default_size: u64,
}

impl FragTotals {
    /// (samples, ticks, bytes) with the movie's defaults applied.
    pub(super) fn resolve(&self, duration: u32, size: u32) -> (u64, u64, u64) {
        (
            self.samples,
            self.ticks
                .saturating_add(self.default_duration.saturating_mul(duration as u64)),
            self.bytes
                .saturating_add(self.default_size.saturating_mul(size as u64)),
        )
    }
}

/// Every fragment's sums, by track id.
#[derive(Debug, Default)]
pub(super) struct Fragments {
    pub count: u64,
    tracks: Vec<(u32, FragTotals)>,
}

impl Fragments {
    pub(super) fn get(&self, track_id: u32) -> Option<&FragTotals> {
        self.tracks
            .iter()
            .find(|(id, _)| *id == track_id)
            .map(|(_, t)| t)
    }

    fn track(&mut self, track_id: u32) -> Result<&mut FragTotals, ProbeError> {
        let i = match self.tracks.iter().position(|(id, _)| *id == track_id) {
            Some(i) => i,
            None if self.tracks.len() >= MAX_TRACKS => {
                return Err(ProbeError::LimitExceeded(format!(
                    "fragments of more than {MAX_TRACKS} tracks"
                )));
            }
            None => {
                self.tracks.push((track_id, FragTotals::default()));
                self.tracks.len() - 1
            }
        };
        Ok(&mut self.tracks[i].1)
    }

    /// Adds the `moof` box `h`.
    pub(super) fn add_moof(&mut self, src: &mut Src, h: &BoxHeader) -> Result<(), ProbeError> {
        self.count += 1;
        src.seek(h.body)?;
        while let Some(c) = child_header(src, h)? {
            if &c.kind == b"traf" {
                self.add_traf(src, &c)?;
            }
            src.seek(c.end)?;
        }
        Ok(())
    }

    fn add_traf(&mut self, src: &mut Src, h: &BoxHeader) -> Result<(), ProbeError> {
        // (track id, default duration, default size) from the tfhd, which comes first.
        let mut header: Option<(u32, Option<u32>, Option<u32>)> = None;
        src.seek(h.body)?;
        while let Some(c) = child_header(src, h)? {
            match &c.kind {
                b"tfhd" => header = Some(tfhd(src, &c)?),
                b"trun" => {
                    let Some((id, dur, size)) = header else {
                        return Err(malformed(format!(
                            "a track run (trun) at offset {} comes before its track fragment header (tfhd)",
                            c.start
                        )));
                    };
                    trun(src, &c, self.track(id)?, dur, size)?;
                }
                _ => {}
            }
            src.seek(c.end)?;
        }
        Ok(())
    }
}

fn short(h: &BoxHeader) -> ProbeError {
    malformed(format!(
        "the {:?} box at offset {} is too short for the fields its flags announce",
        h.name(),
        h.start
    ))
}

/// A track fragment header: track id and the defaults it sets.
fn tfhd(src: &mut Src, h: &BoxHeader) -> Result<(u32, Option<u32>, Option<u32>), ProbeError> {
    let flags = src.u32()? & 0x00FF_FFFF;
    let optional = |bit: u32, n: u64| if flags & bit != 0 { n } else { 0 };
    let need = 8
        + optional(0x01, 8)
        + optional(0x02, 4)
        + optional(0x08, 4)
        + optional(0x10, 4)
        + optional(0x20, 4);
    if h.end - h.body < need {
        return Err(short(h));
    }
    let id = src.u32()?;
    src.seek(src.pos() + optional(0x01, 8) + optional(0x02, 4))?;
    let duration = if flags & 0x08 != 0 {
        Some(src.u32()?)
    } else {
        None
    };
    let size = if flags & 0x10 != 0 {
        Some(src.u32()?)
    } else {
        None
    };
    Ok((id, duration, size))
}

/// A track run: adds its samples, durations and sizes to `t`.
fn trun(
    src: &mut Src,
    h: &BoxHeader,
    t: &mut FragTotals,
    default_duration: Option<u32>,
    default_size: Option<u32>,
) -> Result<(), ProbeError> {
    if h.end - h.body < 8 {
        return Err(short(h));
    }
    let flags = src.u32()? & 0x00FF_FFFF;
    let count = src.u32()? as u64;
    let skip = if flags & 0x01 != 0 { 4 } else { 0 } + if flags & 0x04 != 0 { 4 } else { 0 };
    // Per sample: duration, size, flags, composition offset, each present by its flag.
    let has_duration = flags & 0x100 != 0;
    let has_size = flags & 0x200 != 0;
    let per = 4 * (flags & 0xF00).count_ones() as u64;
    if h.end - h.body < 8 + skip + count * per {
        return Err(malformed(format!(
            "the track run (trun) at offset {} announces {count} samples of {per} bytes but holds {} bytes",
            h.start,
            h.end - h.body
        )));
    }
    src.seek(src.pos() + skip)?;
    t.samples += count;
    if !has_duration {
        match default_duration {
            Some(d) => t.ticks = t.ticks.saturating_add(count * d as u64),
            None => t.default_duration += count,
        }
    }
    if !has_size {
        match default_size {
            Some(s) => t.bytes = t.bytes.saturating_add(count * s as u64),
            None => t.default_size += count,
        }
    }
    if per == 0 {
        return Ok(());
    }
    // Bounded by the box's length, checked above; the file's reader checks the deadline.
    let mut b = [0u8; 16];
    let b = &mut b[..per as usize];
    for _ in 0..count {
        src.read_exact(b)?;
        let mut at = 0;
        if has_duration {
            t.ticks = t
                .ticks
                .saturating_add(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64);
            at = 4;
        }
        if has_size {
            t.bytes =
                t.bytes.saturating_add(
                    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64,
                );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Deadline;
    use crate::media::boxes::top_header;
    use crate::media::deadline::TimedFile;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    fn moof_totals(traf_body: &[u8]) -> Result<Fragments, ProbeError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("moof");
        std::fs::write(&path, bx(b"moof", &bx(b"traf", traf_body))).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        let mut src = Src::new(TimedFile::new(f, Deadline::never()), len);
        let h = top_header(&mut src, 0)?;
        let mut frags = Fragments::default();
        frags.add_moof(&mut src, &h)?;
        Ok(frags)
    }

    fn tfhd_with_defaults(track: u32, duration: u32, size: u32) -> Vec<u8> {
        let mut b = 0x18u32.to_be_bytes().to_vec();
        b.extend_from_slice(&track.to_be_bytes());
        b.extend_from_slice(&duration.to_be_bytes());
        b.extend_from_slice(&size.to_be_bytes());
        bx(b"tfhd", &b)
    }

    #[test]
    fn a_run_of_four_billion_samples_without_per_sample_fields_is_summed_at_once() {
        let mut traf = tfhd_with_defaults(7, 10, 20);
        let mut run = 0u32.to_be_bytes().to_vec();
        run.extend_from_slice(&u32::MAX.to_be_bytes());
        traf.extend(bx(b"trun", &run));
        let frags = moof_totals(&traf).unwrap();
        let t = frags.get(7).unwrap();
        let n = u32::MAX as u64;
        assert_eq!(t.resolve(0, 0), (n, n * 10, n * 20));
    }

    #[test]
    fn per_sample_fields_and_movie_defaults_are_summed() {
        let mut tfhd = 0u32.to_be_bytes().to_vec();
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        let mut traf = bx(b"tfhd", &tfhd);
        // Durations per sample, sizes from the movie's trex.
        let mut run = 0x100u32.to_be_bytes().to_vec();
        run.extend_from_slice(&3u32.to_be_bytes());
        for d in [5u32, 6, 7] {
            run.extend_from_slice(&d.to_be_bytes());
        }
        traf.extend(bx(b"trun", &run));
        let frags = moof_totals(&traf).unwrap();
        assert_eq!(frags.get(1).unwrap().resolve(100, 9), (3, 18, 27));
    }

    #[test]
    fn a_run_longer_than_its_box_or_before_its_header_is_malformed() {
        let mut traf = tfhd_with_defaults(1, 1, 1);
        let mut run = 0x300u32.to_be_bytes().to_vec();
        run.extend_from_slice(&1000u32.to_be_bytes());
        run.extend_from_slice(&[0; 16]);
        traf.extend(bx(b"trun", &run));
        let e = moof_totals(&traf).unwrap_err();
        assert!(e.to_string().contains("1000 samples"), "{e}");

        let mut run = 0u32.to_be_bytes().to_vec();
        run.extend_from_slice(&1u32.to_be_bytes());
        let e = moof_totals(&bx(b"trun", &run)).unwrap_err();
        assert_eq!(e.code(), "malformed", "{e}");
    }
}
