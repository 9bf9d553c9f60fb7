//! Crafted WebMs, written on the fly: a 720x1280 VP9 track and one Cluster of 31 SimpleBlocks 33 ms
//! apart, plus one hazard in a place `matroska-demuxer` buffered whole: a CodecPrivate of many MB,
//! a Cues of millions of (empty) cue points, or one frame of many MB. Big payloads are left as holes
//! (a sparse file: quick to write, but read back as zeros like any other data).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Frames in the cluster, the first at 0 ms and the last at 990 ms.
pub const FRAMES: u64 = 31;

#[derive(Debug, Default, Clone, Copy)]
pub struct Crafted {
    /// No Duration in Info and no DefaultDuration: the probe has to read the frames.
    pub live: bool,
    /// Bytes of CodecPrivate in the video track (0: none).
    pub codec_private: u64,
    /// Empty CuePoints (2 bytes each) in a top-level Cues before the Cluster (0: no Cues).
    pub cue_points: u64,
    /// Bytes of the first frame's data (else 100).
    pub first_frame: u64,
    /// The Duration in Info, in ms, when not live (0: 1023, the frames' span).
    pub duration_ms: f64,
}

/// An element id and an 8-byte size (`0x01` then 7 bytes), as muxers that patch sizes later write.
fn head(id: &[u8], size: u64) -> Vec<u8> {
    let mut v = id.to_vec();
    v.push(0x01);
    v.extend_from_slice(&size.to_be_bytes()[1..]);
    v
}

fn el(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = head(id, body.len() as u64);
    v.extend_from_slice(body);
    v
}

fn uint(id: &[u8], v: u64) -> Vec<u8> {
    el(id, &v.to_be_bytes())
}

/// Writes the file; returns its length.
pub fn write_webm(path: &Path, c: Crafted) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut ebml = Vec::new();
    ebml.extend(uint(&[0x42, 0x86], 1)); // EBMLVersion
    ebml.extend(uint(&[0x42, 0xF7], 1)); // EBMLReadVersion
    ebml.extend(el(&[0x42, 0x82], b"webm")); // DocType
    ebml.extend(uint(&[0x42, 0x87], 4)); // DocTypeVersion
    ebml.extend(uint(&[0x42, 0x85], 2)); // DocTypeReadVersion
    f.write_all(&el(&[0x1A, 0x45, 0xDF, 0xA3], &ebml)).unwrap();
    // Segment of unknown size, as a live recording writes it.
    f.write_all(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ])
    .unwrap();

    let mut info = uint(&[0x2A, 0xD7, 0xB1], 1_000_000); // TimestampScale: ms
    info.extend(el(&[0x4D, 0x80], b"crafted")); // MuxingApp
    info.extend(el(&[0x57, 0x41], b"crafted")); // WritingApp
    if !c.live {
        let ms = if c.duration_ms > 0.0 {
            c.duration_ms
        } else {
            1023.0
        };
        info.extend(el(&[0x44, 0x89], &ms.to_be_bytes())); // Duration
    }
    f.write_all(&el(&[0x15, 0x49, 0xA9, 0x66], &info)).unwrap();

    let mut video = uint(&[0xB0], 720); // PixelWidth
    video.extend(uint(&[0xBA], 1280)); // PixelHeight
    let mut entry = uint(&[0xD7], 1); // TrackNumber
    entry.extend(uint(&[0x73, 0xC5], 1)); // TrackUID
    entry.extend(uint(&[0x83], 1)); // TrackType: video
    entry.extend(el(&[0x86], b"V_VP9")); // CodecID
    if !c.live {
        entry.extend(uint(&[0x23, 0xE3, 0x83], 33_000_000)); // DefaultDuration
    }
    entry.extend(el(&[0xE0], &video));
    let private_head = head(&[0x63, 0xA2], c.codec_private);
    let entry_len = entry.len() as u64
        + if c.codec_private > 0 {
            private_head.len() as u64 + c.codec_private
        } else {
            0
        };
    let entry_head = head(&[0xAE], entry_len);
    f.write_all(&head(
        &[0x16, 0x54, 0xAE, 0x6B],
        entry_head.len() as u64 + entry_len,
    ))
    .unwrap();
    f.write_all(&entry_head).unwrap();
    f.write_all(&entry).unwrap();
    if c.codec_private > 0 {
        f.write_all(&private_head).unwrap();
        f.seek(SeekFrom::Current(c.codec_private as i64)).unwrap();
    }

    if c.cue_points > 0 {
        f.write_all(&head(&[0x1C, 0x53, 0xBB, 0x6B], 2 * c.cue_points))
            .unwrap();
        let chunk = [0xBB, 0x80].repeat(1 << 16);
        let mut left = c.cue_points;
        while left > 0 {
            let n = left.min(1 << 16);
            f.write_all(&chunk[..2 * n as usize]).unwrap();
            left -= n;
        }
    }

    // A Cluster of unknown size: Timestamp 0, then the frames.
    f.write_all(&[0x1F, 0x43, 0xB6, 0x75, 0xFF]).unwrap();
    f.write_all(&uint(&[0xE7], 0)).unwrap();
    for i in 0..FRAMES {
        let data = if i == 0 && c.first_frame > 0 {
            c.first_frame
        } else {
            100
        };
        f.write_all(&head(&[0xA3], 4 + data)).unwrap();
        f.write_all(&[0x81]).unwrap(); // track 1
        f.write_all(&((i * 33) as i16).to_be_bytes()).unwrap();
        f.write_all(&[if i == 0 { 0x80 } else { 0x00 }]).unwrap(); // keyframe, no lacing
        if data > 100 {
            f.seek(SeekFrom::Current(data as i64)).unwrap();
        } else {
            f.write_all(&[0x55; 100]).unwrap();
        }
    }
    f.flush().unwrap();
    let len = f.stream_position().unwrap();
    f.into_inner().unwrap().set_len(len).unwrap();
    len
}
