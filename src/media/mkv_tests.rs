//! The WebM probe on small files built in memory: what it reads, what it seeks over unread, what it
//! refuses.

use super::*;
use std::io::Cursor;

fn el(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = id
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    v.push(0x01);
    v.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    v.extend_from_slice(body);
    v
}

fn uint(id: u32, v: u64) -> Vec<u8> {
    el(id, &v.to_be_bytes())
}

fn ebml(doc_type: &str) -> Vec<u8> {
    el(
        EBML,
        &[
            el(DOC_TYPE, doc_type.as_bytes()),
            uint(DOC_TYPE_READ_VERSION, 2),
        ]
        .concat(),
    )
}

fn track(number: u64, kind: u64, codec: &str, extra: &[u8]) -> Vec<u8> {
    let body = [
        uint(TRACK_NUMBER, number),
        uint(TRACK_TYPE, kind),
        el(CODEC_ID, codec.as_bytes()),
        extra.to_vec(),
    ]
    .concat();
    el(TRACK_ENTRY, &body)
}

fn video_track(extra: &[u8]) -> Vec<u8> {
    let pixels = el(
        VIDEO,
        &[uint(PIXEL_WIDTH, 720), uint(PIXEL_HEIGHT, 1280)].concat(),
    );
    track(1, 1, "V_VP9", &[pixels, extra.to_vec()].concat())
}

fn block(track: u8, ts: i16, flags: u8, tail: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80 | track];
    b.extend(ts.to_be_bytes());
    b.push(flags);
    b.extend_from_slice(tail);
    el(SIMPLE_BLOCK, &b)
}

/// EBML header, a Segment of unknown size holding `body`.
fn file(body: &[u8]) -> Vec<u8> {
    let mut f = ebml("webm");
    f.extend([0x18, 0x53, 0x80, 0x67, 0xFF]);
    f.extend_from_slice(body);
    f
}

fn probe_bytes(b: &[u8]) -> Result<VideoInfo, ProbeError> {
    probe(Cursor::new(b.to_vec()), b.len() as u64)
}

/// A live cluster of unknown size: Timestamp 1000, video frames at +0, +40, +80, an Opus block.
fn live_cluster() -> Vec<u8> {
    let mut c = vec![0x1F, 0x43, 0xB6, 0x75, 0xFF];
    c.extend(uint(TIMESTAMP, 1000));
    c.extend(block(1, 0, 0x80, &[0; 10]));
    c.extend(block(2, 0, 0x80, &[0; 5]));
    c.extend(block(1, 40, 0, &[0; 10]));
    c.extend(block(1, 80, 0, &[0; 10]));
    c
}

#[test]
fn a_live_file_is_timed_from_its_block_headers() {
    let info = el(INFO, &uint(TIMESTAMP_SCALE, 1_000_000));
    let tracks = el(
        TRACKS,
        &[video_track(&[]), track(2, 2, "A_OPUS", &[])].concat(),
    );
    let i = probe_bytes(&file(&[info, tracks, live_cluster()].concat())).unwrap();
    assert_eq!(i.container, Container::WebM);
    let v = i.video.unwrap();
    assert_eq!(
        (v.codec, v.coded_width, v.coded_height),
        (VideoCodec::Vp9, 720, 1280)
    );
    assert_eq!(v.frame_count, Some(3));
    assert!((v.fps.unwrap() - 25.0).abs() < 1e-9, "{:?}", v.fps);
    assert!(
        (i.duration_secs.unwrap() - 0.12).abs() < 1e-9,
        "{:?}",
        i.duration_secs
    );
    assert_eq!(i.audio.unwrap().codec, AudioCodec::Opus);
    assert!(i.notes[0].contains("derived"), "{:?}", i.notes);
}

#[test]
fn a_huge_codec_private_cues_and_frame_are_seeked_over_unread() {
    // 1 MB of each, which a probe that read them would have to hold; this one reads a few buffers
    // of 8 KiB around them.
    struct Counting(Cursor<Vec<u8>>, u64);
    impl Read for Counting {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.read(b)?;
            self.1 += n as u64;
            Ok(n)
        }
    }
    impl Seek for Counting {
        fn seek(&mut self, p: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(p)
        }
    }
    const BIG: usize = 1 << 20;
    let private = el(0x63A2, &vec![0xAA; BIG]);
    let tracks = el(TRACKS, &video_track(&private));
    let cues = el(0x1C53_BB6B, &[0xBB, 0x80].repeat(BIG / 2));
    let mut cluster = vec![0x1F, 0x43, 0xB6, 0x75, 0xFF];
    cluster.extend(uint(TIMESTAMP, 0));
    cluster.extend(block(1, 0, 0x80, &vec![0; BIG]));
    cluster.extend(block(1, 33, 0, &[0; 10]));
    let b = file(&[tracks, cues, cluster].concat());
    let mut src = Counting(Cursor::new(b.clone()), 0);
    let info = probe(&mut src, b.len() as u64).unwrap();
    assert_eq!(info.video.unwrap().frame_count, Some(2));
    assert!(src.1 < 128 << 10, "read {} of {} bytes", src.1, b.len());
}

#[test]
fn tracks_after_a_live_cluster_and_a_crc_first_in_the_segment_are_found() {
    // matroska-demuxer 0.8 re-read a Segment's leading CRC-32 forever (until the deadline).
    let crc = el(CRC32, &[0; 4]);
    let tracks = el(TRACKS, &video_track(&uint(DEFAULT_DURATION, 40_000_000)));
    let i = probe_bytes(&file(&[crc, live_cluster(), tracks].concat())).unwrap();
    let v = i.video.unwrap();
    assert_eq!(v.fps, Some(25.0));
    assert_eq!(v.frame_count, Some(3), "read for the missing duration");
}

#[test]
fn a_matroska_doc_type_is_told_and_an_unknown_one_refused() {
    let body = [el(TRACKS, &video_track(&[])), live_cluster()].concat();
    let mut m = ebml("matroska");
    m.extend(&file(&body)[ebml("webm").len()..]);
    assert_eq!(probe_bytes(&m).unwrap().container, Container::Matroska);
    let mut x = ebml("qt");
    x.extend(&file(&body)[ebml("webm").len()..]);
    let e = probe_bytes(&x).unwrap_err();
    assert_eq!(e.code(), "malformed", "{e}");
    assert!(e.to_string().contains("DocType \"qt\""), "{e}");
}

#[test]
fn what_a_file_only_claims_is_refused_as_truncated_or_malformed() {
    // A CodecPrivate claiming 2^56 bytes.
    let entry = video_track(&[0x63, 0xA2, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]);
    let e = probe_bytes(&file(&[el(TRACKS, &entry), live_cluster()].concat())).unwrap_err();
    assert_eq!(e.code(), "truncated", "{e}");
    // A live frame claiming 1 GB at the end of the file.
    let mut c = live_cluster();
    c.extend([0xA3, 0x08, 0x40, 0, 0, 0, 0x81, 0, 0, 0x80]);
    let tracks = el(TRACKS, &video_track(&[]));
    let e = probe_bytes(&file(&[tracks.clone(), c].concat())).unwrap_err();
    assert_eq!(e.code(), "truncated", "{e}");
    // A CodecID of 100 bytes, a block smaller than its header, no Tracks, no Cluster.
    let long = el(TRACKS, &track(1, 1, &"V".repeat(100), &[]));
    let e = probe_bytes(&file(&[long, live_cluster()].concat())).unwrap_err();
    assert!(e.to_string().contains("100 bytes"), "{e}");
    let mut c = vec![0x1F, 0x43, 0xB6, 0x75, 0xFF];
    c.extend(el(SIMPLE_BLOCK, &[0x81, 0]));
    c.extend(block(1, 40, 0, &[0; 10]));
    let e = probe_bytes(&file(&[tracks.clone(), c].concat())).unwrap_err();
    assert!(e.to_string().contains("smaller than its header"), "{e}");
    let e = probe_bytes(&file(&live_cluster())).unwrap_err();
    assert!(e.to_string().contains("no Tracks"), "{e}");
    let e = probe_bytes(&file(&tracks)).unwrap_err();
    assert!(e.to_string().contains("no Cluster"), "{e}");
}

#[test]
fn laced_blocks_count_each_frame_and_block_durations_extend_the_end() {
    // Xiph lacing (flags 0x02), 3 frames in one block at +0; a BlockGroup at +40 lasting 100.
    let tracks = el(TRACKS, &video_track(&[]));
    let mut c = vec![0x1F, 0x43, 0xB6, 0x75, 0xFF];
    c.extend(uint(TIMESTAMP, 0));
    c.extend(block(1, 0, 0x02, &[2, 1, 1, 0, 0, 0]));
    let mut b = vec![0x81];
    b.extend(40i16.to_be_bytes());
    b.extend([0, 9, 9]);
    c.extend(el(
        BLOCK_GROUP,
        &[el(BLOCK, &b), uint(BLOCK_DURATION, 100)].concat(),
    ));
    let i = probe_bytes(&file(&[tracks, c].concat())).unwrap();
    let v = i.video.unwrap();
    assert_eq!(v.frame_count, Some(4));
    // (4 - 1) frames over 40 ms; the end at 140 ms plus one frame interval.
    assert!((v.fps.unwrap() - 75.0).abs() < 1e-9, "{:?}", v.fps);
    let d = i.duration_secs.unwrap();
    assert!((d - (0.14 + 1.0 / 75.0)).abs() < 1e-9, "{d}");
}
