//! `cargo bench --bench probe`: time and peak memory to probe a video, against its size, and against
//! `ffprobe` when it is installed, in one run.
//!
//! Builds real MP4 files of 64 MiB, 256 MiB and 1 GiB, each a 10-minute, 30 fps video of 18,000
//! frames (the committed `good_no_audio.mp4`'s frames cycled and grown with H.264 filler), each with
//! the movie box first (faststart) and last. For every file:
//! - the probe in a child process of this benchmark: the median time of 20 probes (page cache warm)
//!   and the child's peak RSS;
//! - the whole `tiktok-poster validate --json FILE` process and `ffprobe -show_format -show_streams
//!   FILE`, both timed alike (from spawn to exit, output read) over `TP_PROBE_ROUNDS` rounds (default
//!   5), the order within a round counterbalanced (A B B A, A B B A, …): each side's median wall time,
//!   the median of the per-round ratios `validate` / ffprobe with their min and max, the per-round
//!   ratios, and each side's peak RSS (a separate run of each under `/usr/bin/time` per round).
//!
//! Then crafted fragmented MP4s of 64 MiB and 256 MiB (and the largest size), whose track runs list
//! 8 to 33 million samples (tests/it/crafted_mp4.rs): the same columns, and a closing line checking
//! that `validate`'s peak RSS stays under 64 MiB and within 5 MiB of the 64 MiB file's.
//!
//! Options (environment): `TP_BENCH_MIB` (largest file, default 1024), `TP_PROBE_ROUNDS` (default 5).
//! The CPU model is printed first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mp4_atom::{Co64, Decode, Encode, Moov, Stsc, StscEntry, Stss, StszSamples, SttsEntry};

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/it/crafted_mp4.rs"]
mod crafted_mp4;

const MIB: u64 = 1 << 20;

fn main() {
    if let Ok(file) = std::env::var("TP_BENCH_PROBE_CHILD") {
        child(Path::new(&file));
        return;
    }
    if !common::run_by_cargo_bench() {
        println!("probe benchmark: run it with `cargo bench --bench probe`");
        return;
    }
    parent();
}

/// Child mode: 20 probes of one file; prints `median_ms peak_rss_kib`.
fn child(file: &Path) {
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let info = tiktok_poster::media::probe(file).expect("probe");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(info.duration_secs.unwrap() > 0.0);
    }
    println!("{} {}", common::median(&times), peak_rss_kib());
}

fn peak_rss_kib() -> u64 {
    common::proc_status_kib("self", "VmHWM:")
}

/// Writes a 10-minute, 30 fps MP4 (18,000 frames) of about `target` bytes: `good_no_audio.mp4`'s
/// 36 frames cycled, each grown to `target / 18000` bytes with an H.264 filler NAL unit (so the
/// frames stay valid), one chunk per 36 frames. Returns (bytes, frames, seconds).
fn make_mp4(path: &Path, target: u64, faststart: bool) -> (u64, u64, f64) {
    use std::io::Write;
    let src = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/video/good_no_audio.mp4"
    ))
    .unwrap();
    // Top-level boxes of the (faststart) source: ftyp, moov, free?, mdat.
    let mut at = 0usize;
    let (mut ftyp, mut moov_bytes, mut mdat) = (None, None, None);
    while at + 8 <= src.len() {
        let size = u32::from_be_bytes(src[at..at + 4].try_into().unwrap()) as usize;
        match &src[at + 4..at + 8] {
            b"ftyp" => ftyp = Some(src[at..at + size].to_vec()),
            b"moov" => moov_bytes = Some(src[at..at + size].to_vec()),
            b"mdat" => mdat = Some(src[at + 8..at + size].to_vec()),
            _ => {}
        }
        at += size;
    }
    let (ftyp, moov_bytes, mdat) = (ftyp.unwrap(), moov_bytes.unwrap(), mdat.unwrap());
    let mut moov = Moov::decode(&mut moov_bytes.as_slice()).unwrap();
    let trak = &mut moov.trak[0];
    trak.edts = None;
    let stbl = &mut trak.mdia.minf.stbl;
    let sizes = match &stbl.stsz.samples {
        StszSamples::Different { sizes } => sizes.clone(),
        StszSamples::Identical { count, size } => vec![*size; *count as usize],
    };
    assert_eq!(
        sizes.iter().map(|&s| s as u64).sum::<u64>(),
        mdat.len() as u64
    );
    let mut samples = Vec::new();
    let mut off = 0usize;
    for &s in &sizes {
        samples.push(&mdat[off..off + s as usize]);
        off += s as usize;
    }
    let per = samples.len() as u64;
    let timescale = trak.mdia.mdhd.timescale as u64;
    let delta = stbl.stts.entries[0].sample_delta as u64;
    let frames = 600 * timescale / delta; // 10 minutes
    let reps = frames / per;
    let frames = reps * per;
    let want = target / frames;
    // Each frame: the source frame, then a filler NAL (type 12) of 0xFF bytes ending in 0x80.
    let frame = |i: u64| -> Vec<u8> {
        let s = samples[(i % per) as usize];
        let mut out = s.to_vec();
        let pad = want.saturating_sub(s.len() as u64);
        if pad >= 6 {
            let nal = pad - 4;
            out.extend_from_slice(&(nal as u32).to_be_bytes());
            out.push(0x0C);
            out.extend(std::iter::repeat_n(0xFF, (nal - 2) as usize));
            out.push(0x80);
        }
        out
    };
    let frame_sizes: Vec<u32> = (0..frames).map(|i| frame(i).len() as u32).collect();
    stbl.stts.entries = vec![SttsEntry {
        sample_count: frames as u32,
        sample_delta: delta as u32,
    }];
    stbl.ctts = None;
    stbl.stss = Some(Stss {
        entries: (0..reps).map(|r| (r * per + 1) as u32).collect(),
    });
    stbl.stsc = Stsc {
        entries: vec![StscEntry {
            first_chunk: 1,
            samples_per_chunk: per as u32,
            sample_description_index: 1,
        }],
    };
    stbl.stsz.samples = StszSamples::Different {
        sizes: frame_sizes.clone(),
    };
    stbl.stco = None;
    stbl.co64 = Some(Co64 {
        entries: vec![0; reps as usize],
    });
    let ticks = frames * delta;
    trak.mdia.mdhd.duration = ticks;
    trak.tkhd.duration = ticks * moov.mvhd.timescale as u64 / timescale;
    moov.mvhd.duration = ticks * moov.mvhd.timescale as u64 / timescale;
    let secs = moov.mvhd.duration as f64 / moov.mvhd.timescale as f64;

    let encode = |m: &Moov| {
        let mut out = Vec::new();
        m.encode(&mut out).unwrap();
        out
    };
    let moov_len = encode(&moov).len() as u64; // offsets are fixed-width: the size does not change
    let mdat_header = 16u64;
    let data_start = ftyp.len() as u64 + if faststart { moov_len } else { 0 } + mdat_header;
    let chunk_len = |r: u64| -> u64 {
        (r * per..(r + 1) * per)
            .map(|i| frame_sizes[i as usize] as u64)
            .sum()
    };
    let mut offsets = Vec::new();
    let mut pos = data_start;
    for r in 0..reps {
        offsets.push(pos);
        pos += chunk_len(r);
    }
    let data_len = pos - data_start;
    moov.trak[0].mdia.minf.stbl.co64 = Some(Co64 { entries: offsets });
    let moov_out = encode(&moov);
    assert_eq!(moov_out.len() as u64, moov_len);

    let mut f = std::io::BufWriter::with_capacity(4 << 20, std::fs::File::create(path).unwrap());
    f.write_all(&ftyp).unwrap();
    if faststart {
        f.write_all(&moov_out).unwrap();
    }
    f.write_all(&1u32.to_be_bytes()).unwrap();
    f.write_all(b"mdat").unwrap();
    f.write_all(&(mdat_header + data_len).to_be_bytes())
        .unwrap();
    for i in 0..frames {
        f.write_all(&frame(i)).unwrap();
    }
    if !faststart {
        f.write_all(&moov_out).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    (std::fs::metadata(path).unwrap().len(), frames, secs)
}

/// `/usr/bin/time -f "%e %M" cmd...`: (wall ms, peak RSS KiB).
fn timed(cmd: &[&str]) -> Option<(f64, u64)> {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %M"])
        .args(cmd)
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with("TIME "))?;
    let mut it = line.split_whitespace().skip(1);
    let secs: f64 = it.next()?.parse().ok()?;
    let kib: u64 = it.next()?.parse().ok()?;
    Some((secs * 1000.0, kib))
}

/// Wall time of a whole process in ms (more precise than `time`'s 10 ms steps).
fn wall(cmd: &[&str]) -> f64 {
    let t = Instant::now();
    let st = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(
        st.status.success() || cmd[0].ends_with("tiktok-poster"),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    ms
}

fn parent() {
    common::print_cpu("probe");
    let largest = common::env_num("TP_BENCH_MIB", 1024u64);
    let rounds = common::env_num("TP_PROBE_ROUNDS", 5usize);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let me = std::env::current_exe().unwrap();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tiktok-poster"));
    let ffprobe = Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ffprobe {
        println!(
            "ffprobe is not installed: its column stays empty (apt-get install ffmpeg to fill it)"
        );
    }
    let mut sizes = vec![64, 256, largest];
    sizes.dedup();
    println!("{}", common::order_note(rounds));
    println!(
        "| file | frames | duration | probe (in process, median of 20) | probe process peak RSS | `validate` process: wall (median of {rounds}) / peak RSS | ffprobe process: wall (median of {rounds}) / peak RSS | wall ratio `validate` / ffprobe: median of the per-round ratios (min, max) | per-round ratios |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for mib in sizes {
        for faststart in [true, false] {
            let path = dir.path().join(format!(
                "v{mib}{}.mp4",
                if faststart { "" } else { "_moov_end" }
            ));
            let (bytes, frames, secs) = make_mp4(&path, mib * MIB, faststart);
            let p = path.to_str().unwrap();
            // Warm the page cache for everyone alike.
            let _ = wall(&["cat", p]);
            let out = Command::new(&me)
                .env("TP_BENCH_PROBE_CHILD", &path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let mut it = text.split_whitespace();
            let probe_ms: f64 = it.next().unwrap().parse().unwrap();
            let child_rss: u64 = it.next().unwrap().parse().unwrap();
            let b = bin.to_str().unwrap();
            let ours_cmd = [b, "validate", "--policy", "api", "--json", p];
            let ff_cmd = [
                "ffprobe",
                "-v",
                "error",
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                p,
            ];
            // Both timed alike (spawn to exit, output read), in the order A B B A …, one ratio per
            // round.
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            let (mut ours_rss, mut theirs_rss) = (0u64, 0u64);
            let mut ratios = common::Ratios::default();
            for round in 0..rounds {
                let mut t = [f64::NAN; 2];
                let sides: &[usize] = match (ffprobe, common::ours_first(round)) {
                    (false, _) => &[0],
                    (true, true) => &[0, 1],
                    (true, false) => &[1, 0],
                };
                for &side in sides {
                    let cmd: &[&str] = if side == 0 { &ours_cmd } else { &ff_cmd };
                    t[side] = wall(cmd);
                    if let Some((_, kib)) = timed(cmd) {
                        let peak = if side == 0 {
                            &mut ours_rss
                        } else {
                            &mut theirs_rss
                        };
                        *peak = (*peak).max(kib);
                    }
                }
                ours.push(t[0]);
                theirs.push(t[1]);
                ratios.push(t[0], t[1]);
            }
            let ff = if ffprobe {
                format!(
                    "{:.1} ms / {:.1} MiB",
                    common::median(&theirs),
                    theirs_rss as f64 / 1024.0
                )
            } else {
                "-".into()
            };
            println!(
                "| {} MiB{} ({bytes} bytes) | {frames} | {secs:.0} s | {probe_ms:.3} ms | {:.1} MiB | {:.1} ms / {:.1} MiB | {ff} | {} | {} |",
                mib,
                if faststart {
                    ", moov first"
                } else {
                    ", moov last"
                },
                child_rss as f64 / 1024.0,
                common::median(&ours),
                ours_rss as f64 / 1024.0,
                ratios.summary(),
                ratios.rounds(),
            );
            std::fs::remove_file(&path).unwrap();
        }
    }
    fragmented(&[64, 256, largest], dir.path(), &me, &bin);
}

/// The crafted fragmented files: probe time and RSS, `validate` wall time and peak RSS.
fn fragmented(sizes: &[u64], dir: &Path, me: &Path, bin: &Path) {
    let mut sizes = sizes.to_vec();
    sizes.dedup();
    println!();
    println!(
        "| crafted fragmented file | samples in track runs | probe (in process, median of 20) | probe process peak RSS | `validate` process: wall / peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|");
    let mut peaks = Vec::new();
    for mib in sizes {
        let path = dir.join(format!("frag{mib}.mp4"));
        let (bytes, samples) = crafted_mp4::write_fragmented(&path, mib * MIB);
        let p = path.to_str().unwrap();
        let _ = wall(&["cat", p]);
        let out = Command::new(me)
            .env("TP_BENCH_PROBE_CHILD", &path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        let probe_ms: f64 = it.next().unwrap().parse().unwrap();
        let child_rss: u64 = it.next().unwrap().parse().unwrap();
        let b = bin.to_str().unwrap();
        let mut times = Vec::new();
        let mut rss = 0u64;
        for _ in 0..5 {
            times.push(wall(&[b, "validate", "--policy", "api", "--json", p]));
            if let Some((_, kib)) = timed(&[b, "validate", "--policy", "api", "--json", p]) {
                rss = rss.max(kib);
            }
        }
        println!(
            "| {mib} MiB ({bytes} bytes) | {samples} | {probe_ms:.1} ms | {:.1} MiB | {:.1} ms / {:.1} MiB |",
            child_rss as f64 / 1024.0,
            common::median(&times),
            rss as f64 / 1024.0,
        );
        peaks.push((mib, rss));
        std::fs::remove_file(&path).unwrap();
    }
    let base = peaks[0].1 as f64 / 1024.0;
    let worst = peaks.iter().map(|p| p.1).max().unwrap() as f64 / 1024.0;
    println!(
        "validate peak RSS on crafted fragmented files: {base:.1} MiB at {} MiB, at most {worst:.1} MiB; under 64 MiB: {}; within 5 MiB of the {} MiB file's: {}",
        peaks[0].0,
        worst < 64.0,
        peaks[0].0,
        worst - base <= 5.0
    );
}
