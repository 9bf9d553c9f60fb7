//! Crafted fragmented MP4s, written on the fly: the movie box of the committed
//! `good_fragmented.mp4`, then fragments whose track runs (`trun`) list millions of samples, 8 bytes
//! each (duration and size), with empty media data. Such a file made the old probe hold about ten
//! times its size in memory. Shared with `benches/probe` (included by path).

use std::io::Write;
use std::path::Path;

/// Samples per fragment: a 1 MiB track run, under the old 16 MiB fragment limit.
pub const SAMPLES_PER_FRAGMENT: u64 = 131_072;

/// Writes a fragmented MP4 of at least `target` bytes; returns (bytes, samples).
pub fn write_fragmented(path: &Path, target: u64) -> (u64, u64) {
    let src = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/video/good_fragmented.mp4"
    ))
    .unwrap();
    // ftyp and moov of the source, in their order at its start.
    let mut at = 0usize;
    let mut head = Vec::new();
    while at + 8 <= src.len() {
        let size = u32::from_be_bytes(src[at..at + 4].try_into().unwrap()) as usize;
        let kind = &src[at + 4..at + 8];
        if kind == b"ftyp" || kind == b"moov" {
            head.extend_from_slice(&src[at..at + size]);
        }
        if kind == b"moov" {
            break;
        }
        at += size;
    }
    let video_track = 1u32;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    f.write_all(&head).unwrap();
    let mut written = head.len() as u64;
    let mut samples = 0u64;
    let mut seq = 0u32;
    let mut run = Vec::with_capacity((SAMPLES_PER_FRAGMENT * 8) as usize);
    for i in 0..SAMPLES_PER_FRAGMENT {
        run.extend_from_slice(&512u32.to_be_bytes()); // duration
        run.extend_from_slice(&(100 + (i % 50) as u32).to_be_bytes()); // size
    }
    while written < target {
        seq += 1;
        let trun_len = 8 + 4 + 4 + 4 + run.len() as u32; // header, flags, count, data offset
        let tfhd_len = 8 + 4 + 4;
        let traf_len = 8 + tfhd_len + trun_len;
        let mfhd_len = 16;
        let moof_len = 8 + mfhd_len + traf_len;
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&moof_len.to_be_bytes());
        b.extend_from_slice(b"moof");
        b.extend_from_slice(&mfhd_len.to_be_bytes());
        b.extend_from_slice(b"mfhd");
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&traf_len.to_be_bytes());
        b.extend_from_slice(b"traf");
        b.extend_from_slice(&tfhd_len.to_be_bytes());
        b.extend_from_slice(b"tfhd");
        b.extend_from_slice(&0u32.to_be_bytes()); // no defaults: the movie's trex ones
        b.extend_from_slice(&video_track.to_be_bytes());
        b.extend_from_slice(&trun_len.to_be_bytes());
        b.extend_from_slice(b"trun");
        b.extend_from_slice(&0x0000_0301u32.to_be_bytes()); // data offset, duration, size
        b.extend_from_slice(&(SAMPLES_PER_FRAGMENT as u32).to_be_bytes());
        b.extend_from_slice(&(moof_len + 8).to_be_bytes());
        f.write_all(&b).unwrap();
        f.write_all(&run).unwrap();
        f.write_all(&8u32.to_be_bytes()).unwrap();
        f.write_all(b"mdat").unwrap();
        written += moof_len as u64 + 8;
        samples += SAMPLES_PER_FRAGMENT;
    }
    f.flush().unwrap();
    (written, samples)
}
