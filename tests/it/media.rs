//! Video checks: the probe and both policies on every committed fixture (made by
//! scripts/make-video-fixtures.sh), a sparse file over 4 GB, a seeded mutation run, the `validate`
//! command, and the checks at submission and just before upload.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tiktok_poster::config::Policy;
use tiktok_poster::media;

use crate::app::{TestApp, path_str};
use crate::support::fixture;

/// The codes each policy reports for a file: the broken rules, or the probe error.
fn codes(path: &Path, policy: Policy) -> Vec<&'static str> {
    match media::probe(path) {
        Ok(info) => media::validate(&info, policy, None)
            .into_iter()
            .map(|v| v.code)
            .collect(),
        Err(e) => vec![e.code()],
    }
}

/// Every fixture, with the exact codes under `brief` and under `api`.
const EXPECTED: &[(&str, &[&str], &[&str])] = &[
    ("good.mp4", &[], &[]),
    ("good_moov_end.mp4", &[], &[]),
    ("good.mov", &[], &[]),
    ("good_1080x1920_60fps.mp4", &[], &[]),
    ("good_hevc_hvc1.mp4", &[], &[]),
    ("good_hevc_hev1.mp4", &[], &[]),
    ("good_no_audio.mp4", &[], &[]),
    ("good_rotated.mp4", &[], &[]),
    ("good_fragmented.mp4", &[], &[]),
    ("good_fps23976.mp4", &[], &[]),
    ("good_vfr.mp4", &[], &[]),
    ("good_vp9_opus.webm", &[], &[]),
    ("good_webm_live.webm", &[], &[]),
    ("short_0_5s.mp4", &["duration_too_short"], &[]),
    ("square_1280x1280.mp4", &["aspect_ratio"], &[]),
    ("small_540x960.mp4", &["resolution_too_low"], &[]),
    (
        "fps15.mp4",
        &["frame_rate_out_of_range"],
        &["frame_rate_out_of_range"],
    ),
    ("bitrate_26mbps.mp4", &["bitrate_too_high"], &[]),
    ("bitrate_low.mp4", &["bitrate_too_low"], &[]),
    ("mp3_audio.mp4", &["audio_codec_not_allowed"], &[]),
    ("audio_only.mp4", &["no_video_track"], &["no_video_track"]),
    (
        "mpeg4_part2.mp4",
        &["video_codec_not_allowed"],
        &["video_codec_not_allowed"],
    ),
    (
        "matroska_named.webm",
        &["container_not_allowed"],
        &["container_not_allowed"],
    ),
    (
        "long_11min.mp4",
        &[
            "duration_too_long",
            "frame_rate_out_of_range",
            "bitrate_too_low",
        ],
        &["duration_too_long", "frame_rate_out_of_range"],
    ),
    ("truncated.mp4", &["truncated"], &["truncated"]),
    ("truncated_moov_end.mp4", &["truncated"], &["truncated"]),
    ("corrupt_moov.mp4", &["malformed"], &["malformed"]),
    (
        "not_video.mp4",
        &["unrecognized_format"],
        &["unrecognized_format"],
    ),
    ("empty.mp4", &["empty_file"], &["empty_file"]),
];

#[test]
fn every_fixture_gives_exactly_its_expected_codes_under_both_policies() {
    let dir = fixture("");
    let on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in &on_disk {
        assert!(
            EXPECTED.iter().any(|(n, _, _)| n == name),
            "fixture {name} has no expected outcome here"
        );
    }
    let mut wrong = Vec::new();
    for (name, brief, api) in EXPECTED {
        let path = fixture(name);
        let got_brief = codes(&path, Policy::Brief);
        let got_api = codes(&path, Policy::Api);
        if got_brief != *brief || got_api != *api {
            wrong.push(format!(
                "{name}: brief {got_brief:?} (want {brief:?}), api {got_api:?} (want {api:?})"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// What the probe reads from the files, compared with what ffprobe printed for them.
#[test]
fn the_probe_reads_the_fields_right() {
    let i = media::probe(&fixture("good.mp4")).unwrap();
    assert_eq!(i.container, media::Container::Mp4);
    assert!((i.duration_secs.unwrap() - 1.2).abs() < 0.001, "{i:?}");
    let v = i.video.as_ref().unwrap();
    assert_eq!(
        (v.codec.clone(), v.coded_width, v.coded_height),
        (media::VideoCodec::H264, 720, 1280)
    );
    assert!((v.fps.unwrap() - 30.0).abs() < 0.001);
    assert_eq!(i.audio.as_ref().unwrap().codec, media::AudioCodec::Aac);
    // size × 8 / duration, like ffprobe's format.bit_rate (945,586 for this file).
    assert_eq!(i.bitrate_bps, Some(945_587));

    let i = media::probe(&fixture("good.mov")).unwrap();
    assert_eq!(i.container, media::Container::Mov);

    let r = media::probe(&fixture("good_rotated.mp4")).unwrap();
    let v = r.video.unwrap();
    assert_eq!(
        (v.coded_width, v.coded_height, v.rotation % 180),
        (1280, 720, 90)
    );
    assert_eq!(v.display_size(), (720, 1280));

    let h = media::probe(&fixture("good_hevc_hev1.mp4")).unwrap();
    assert_eq!(h.video.unwrap().codec, media::VideoCodec::Hevc);

    let m = media::probe(&fixture("mp3_audio.mp4")).unwrap();
    assert_eq!(
        m.audio.unwrap().codec,
        media::AudioCodec::Mp3,
        "mp4a with MP3 inside"
    );

    let f = media::probe(&fixture("good_fps23976.mp4")).unwrap();
    assert!((f.video.unwrap().fps.unwrap() - 24000.0 / 1001.0).abs() < 0.001);

    let live = media::probe(&fixture("good_webm_live.webm")).unwrap();
    assert_eq!(live.container, media::Container::WebM);
    let d = live.duration_secs.expect("derived by reading the frames");
    assert!((1.15..1.3).contains(&d), "{d}");
    assert!(
        live.notes.iter().any(|n| n.contains("derived")),
        "{:?}",
        live.notes
    );

    let mkv = media::probe(&fixture("matroska_named.webm")).unwrap();
    assert_eq!(mkv.container, media::Container::Matroska);

    let frag = media::probe(&fixture("good_fragmented.mp4")).unwrap();
    assert!((frag.duration_secs.unwrap() - 1.2).abs() < 0.05, "{frag:?}");
}

/// A file over 4 GB (sparse: a 64-bit `free` box after a good file) is refused for its size, read in
/// a few block reads.
#[test]
fn a_sparse_file_over_4_gb_is_refused_for_its_size() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.mp4");
    let good = std::fs::read(fixture("good.mp4")).unwrap();
    let total: u64 = 4_300_000_000;
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&good).unwrap();
    f.write_all(&1u32.to_be_bytes()).unwrap();
    f.write_all(b"free").unwrap();
    f.write_all(&(total - good.len() as u64).to_be_bytes())
        .unwrap();
    f.set_len(total).unwrap();
    drop(f);
    let info = media::probe(&path).unwrap();
    assert_eq!(info.file_size, total);
    let brief = media::validate(&info, Policy::Brief, None);
    let codes: Vec<_> = brief.iter().map(|v| v.code).collect();
    assert!(codes.contains(&"file_too_large"), "{codes:?}");
    let api: Vec<_> = media::validate(&info, Policy::Api, None)
        .into_iter()
        .map(|v| v.code)
        .collect();
    assert_eq!(api, ["file_too_large"]);
}

/// Thousands of seeded corruptions of the fixtures: every probe returns (info or a typed error), none
/// panics, none takes 100 ms.
#[test]
fn thousands_of_corrupted_fixtures_never_panic_or_stall_the_probe() {
    let seeds = [
        "good.mp4",
        "good_moov_end.mp4",
        "good.mov",
        "good_fragmented.mp4",
        "good_hevc_hvc1.mp4",
        "good_vp9_opus.webm",
        "good_webm_live.webm",
        "mp3_audio.mp4",
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64; // fixed seed: a failure reproduces
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut outcomes: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut runs = 0;
    for name in seeds {
        let original = std::fs::read(fixture(name)).unwrap();
        // The headers are where parsers go wrong: aim most mutations at the first 4 KB and the last
        // 4 KB (moov at the end), some anywhere.
        for i in 0..400 {
            let mut data = original.clone();
            let len = data.len();
            let pick = |r: u64| -> usize {
                match r % 3 {
                    0 => (r >> 8) as usize % len.min(4096),
                    1 => len - 1 - (r >> 8) as usize % len.min(4096),
                    _ => (r >> 8) as usize % len,
                }
            };
            match i % 5 {
                0 => {
                    for _ in 0..1 + next() % 8 {
                        let at = pick(next());
                        data[at] ^= 1 << (next() % 8);
                    }
                }
                1 => {
                    let at = pick(next()).min(len - 4);
                    let v: u32 = [0, 1, 0xFFFF_FFFF, 0x7FFF_FFFF, 8, 7][next() as usize % 6];
                    data[at..at + 4].copy_from_slice(&v.to_be_bytes());
                }
                2 => data.truncate(pick(next())),
                3 => {
                    let at = pick(next());
                    let n = (next() % 64) as usize;
                    for b in data.iter_mut().skip(at).take(n) {
                        *b = next() as u8;
                    }
                }
                _ => {
                    // Splice: a chunk copied over another place.
                    let from = pick(next());
                    let to = pick(next());
                    let n = ((next() % 256) as usize).min(len - from).min(len - to);
                    let chunk = data[from..from + n].to_vec();
                    data[to..to + n].copy_from_slice(&chunk);
                }
            }
            let ext = Path::new(name).extension().unwrap().to_str().unwrap();
            let path = dir.path().join(format!("m.{ext}"));
            std::fs::write(&path, &data).unwrap();
            let started = Instant::now();
            let r = std::panic::catch_unwind(|| media::probe(&path));
            let took = started.elapsed();
            slowest = slowest.max(took);
            runs += 1;
            match r {
                Ok(Ok(_)) => *outcomes.entry("probed").or_default() += 1,
                Ok(Err(e)) => *outcomes.entry(e.code()).or_default() += 1,
                Err(_) => panic!(
                    "the probe panicked on mutant {i} of {name} (seed fixed; rerun reproduces)"
                ),
            }
            assert!(
                took < Duration::from_millis(100),
                "mutant {i} of {name} took {took:?}"
            );
        }
    }
    eprintln!("{runs} mutants: {outcomes:?}; slowest probe {slowest:?}");
    assert_eq!(runs, seeds.len() * 400);
    assert!(
        outcomes.len() >= 3,
        "mutations exercised several outcomes: {outcomes:?}"
    );
}

use crate::cli::bin;

/// `validate --json`: one object per file with path, ok, info and violations; exit 1 when any file
/// fails, 0 when all pass, 2 on a usage error; `--policy api` switches the rules.
#[test]
fn the_validate_command_prints_json_and_exits_by_the_contract() {
    let good = fixture("good.mp4");
    let fps = fixture("fps15.mp4");
    let empty = fixture("empty.mp4");
    let out = bin()
        .args(["validate", "--json"])
        .args([&good, &fps, &empty])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 3);
    assert_eq!(arr[0]["path"], path_str(&good));
    assert_eq!(arr[0]["ok"], true);
    assert_eq!(arr[0]["info"]["width"], 720);
    assert_eq!(arr[0]["info"]["container"], "mp4");
    assert_eq!(arr[0]["violations"], serde_json::json!([]));
    assert_eq!(arr[1]["ok"], false);
    assert_eq!(arr[1]["violations"][0]["code"], "frame_rate_out_of_range");
    assert_eq!(
        arr[1]["violations"][0]["message"],
        "frame rate 15.000 fps is outside 24–60 fps"
    );
    assert_eq!(arr[2]["info"], Value::Null);
    assert_eq!(arr[2]["violations"][0]["code"], "empty_file");

    let ok = bin().args(["validate"]).arg(&good).output().unwrap();
    assert_eq!(ok.status.code(), Some(0));
    let table = String::from_utf8_lossy(&ok.stdout);
    assert!(
        table.contains("1 of 1 file(s) pass the brief policy"),
        "{table}"
    );

    let api = bin()
        .args(["validate", "--policy", "api"])
        .arg(fixture("bitrate_low.mp4"))
        .output()
        .unwrap();
    assert_eq!(api.status.code(), Some(0), "no bitrate rule in api");
    let brief = bin()
        .args(["validate"])
        .arg(fixture("bitrate_low.mp4"))
        .output()
        .unwrap();
    assert_eq!(brief.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&brief.stdout).contains("bitrate_too_low"));

    let usage = bin()
        .args(["validate", "--policy", "nope", "x.mp4"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let none = bin().args(["validate"]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
}

const T: Duration = Duration::from_secs(20);

/// Under the default `brief` policy, a submitted video that breaks rules is rejected at once with
/// every reason, and a good one is published.
#[tokio::test]
async fn a_video_that_breaks_the_policy_is_rejected_at_submission_with_every_reason() {
    let app = TestApp::spawn(|_| {}, |s| s.video.policy = Policy::Brief).await;
    app.connect("main", false).await;
    let bad = fixture("long_11min.mp4");
    app.xadd(&[
        ("id", "too-long"),
        ("account", "main"),
        ("video", path_str(&bad)),
        ("privacy_level", "SELF_ONLY"),
    ])
    .await;
    let good = fixture("good.mp4");
    let sha = crate::support::sha256_file(&good);
    app.xadd(&[
        ("id", "fine"),
        ("account", "main"),
        ("video", path_str(&good)),
        ("privacy_level", "SELF_ONLY"),
    ])
    .await;
    let post = app.wait_state("fine", &["published"], T).await;
    assert!(post["video_summary"].contains("720x1280"), "{post:?}");
    assert_eq!(post["video_duration_ms"], "1200");
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
    let rejected = app.rejected().await;
    let r = rejected
        .iter()
        .find(|r| r.get("id").map(String::as_str) == Some("too-long"))
        .expect("the bad video is in the rejected stream");
    let reason = &r["reason"];
    for code in [
        "duration_too_long",
        "frame_rate_out_of_range",
        "bitrate_too_low",
    ] {
        assert!(reason.contains(code), "{reason}");
    }
    assert!(reason.contains("660.00 s"), "{reason}");
    assert!(app.post("too-long").await.is_empty(), "no post recorded");
}

/// Just before upload the file is checked again: with the creator's own longest duration (1 s here,
/// the video is 1.2 s) the post fails with that reason and TikTok never sees an init.
#[tokio::test]
async fn the_creators_longest_duration_is_applied_just_before_upload() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("short", false).await;
    let body = serde_json::json!({"username": "short_creator", "max_video_post_duration_sec": 1});
    reqwest::Client::new()
        .post(format!("{}/_sim/creators", app.sim.sim.base_url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let (video, sha) = app.video("a.mp4", 300_000);
    app.xadd(&[
        ("id", "over-limit"),
        ("account", "short"),
        ("video", path_str(&video)),
        ("privacy_level", "SELF_ONLY"),
    ])
    .await;
    let post = app.wait_state("over-limit", &["failed"], T).await;
    assert_eq!(
        post["error_code"], "duration_over_creator_limit",
        "{post:?}"
    );
    assert!(post["error_message"].contains("at most 1 s"), "{post:?}");
    assert!(app.sim_posts_with(&sha).await.is_empty());
    assert!(!post.contains_key("publish_id"));
}

/// A file rewritten between submission and upload with one of the same size and time stamp (its
/// sample tables broken) is caught before upload: its inode change time moved, so the identity
/// recorded at submission no longer matches (before identities were kept, only the second probe
/// caught it, as `malformed`).
#[tokio::test]
async fn a_file_swapped_for_a_broken_one_before_upload_fails_the_second_check() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let path = app.dir.path().join("swap.mp4");
    std::fs::copy(fixture("good.mp4"), &path).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    app.xadd(&[
        ("id", "swapped"),
        ("account", "main"),
        ("video", path_str(&path)),
        ("privacy_level", "SELF_ONLY"),
        ("publish_at", &at),
    ])
    .await;
    app.wait_state("swapped", &["scheduled"], T).await;
    // Same length, same mtime, but the sample tables are gone: only a probe can tell.
    let mut bytes = std::fs::read(&path).unwrap();
    let stbl = bytes.windows(4).position(|w| w == b"stbl").unwrap();
    for b in &mut bytes[stbl + 4..stbl + 68] {
        *b = 0xAB;
    }
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let post = app.wait_state("swapped", &["failed"], T).await;
    assert_eq!(post["error_code"], "video_changed", "{post:?}");
    assert!(!post.contains_key("publish_id"));
}

/// Crafted files that broke other parsers: boxes nested 100,000 deep (a stack overflow in a
/// recursive decoder), a moov claiming 4 GB, zero timescales, a 64-bit mdat size of 2^62.
#[test]
fn crafted_hostile_files_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ftyp = b"\0\0\0\x14ftypisom\0\0\x02\0mp41".to_vec();
    let probe = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        media::probe(&p)
    };
    // trak inside trak inside ... 100,000 deep, inside a moov.
    let depth = 100_000usize;
    let mut nested = Vec::with_capacity(depth * 8 + 64);
    nested.extend_from_slice(&ftyp);
    let moov_len = 8 + depth * 8;
    nested.extend_from_slice(&(moov_len as u32).to_be_bytes());
    nested.extend_from_slice(b"moov");
    for level in 0..depth {
        nested.extend_from_slice(&(((depth - level) * 8) as u32).to_be_bytes());
        nested.extend_from_slice(b"trak");
    }
    let e = probe("deep.mp4", &nested).unwrap_err();
    assert_eq!(e.code(), "limit_exceeded", "{e}");

    let mut big_moov = ftyp.clone();
    big_moov.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    big_moov.extend_from_slice(b"moov");
    assert_eq!(
        probe("bigmoov.mp4", &big_moov).unwrap_err().code(),
        "truncated"
    );

    let mut huge_mdat = ftyp.clone();
    huge_mdat.extend_from_slice(&1u32.to_be_bytes());
    huge_mdat.extend_from_slice(b"mdat");
    huge_mdat.extend_from_slice(&(1u64 << 62).to_be_bytes());
    assert_eq!(
        probe("hugemdat.mp4", &huge_mdat).unwrap_err().code(),
        "truncated"
    );

    assert_eq!(probe("ftyp.mp4", &ftyp).unwrap_err().code(), "malformed");

    // mvhd and mdhd timescales of 0 in the good file: no division by zero, a typed outcome.
    let mut good = std::fs::read(fixture("good.mp4")).unwrap();
    for tag in [&b"mvhd"[..], &b"mdhd"[..]] {
        let mut from = 0;
        while let Some(p) = good[from..].windows(4).position(|w| w == tag) {
            let at = from + p + 4 + 4 + 8; // version/flags, creation, modification
            good[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
            from = at;
        }
    }
    match probe("timescale0.mp4", &good) {
        Ok(info) => assert!(!media::validate(&info, Policy::Api, None).is_empty()),
        Err(e) => assert!(["malformed", "truncated"].contains(&e.code()), "{e}"),
    }
}

/// On a terminal (a pseudo-terminal from util-linux `script`) `validate` draws a progress bar on
/// standard error; through a pipe it does not.
#[test]
fn validate_shows_a_progress_bar_only_on_a_terminal() {
    let bin = env!("CARGO_BIN_EXE_tiktok-poster");
    let files = format!(
        "{} {}",
        fixture("good.mp4").display(),
        fixture("good.mov").display()
    );
    let out = Command::new("script")
        .args(["-qec", &format!("{bin} validate {files}"), "/dev/null"])
        .output()
        .expect("util-linux `script` is installed");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("probing"), "{tty}");
    assert!(tty.contains("/2"), "{tty}");
    assert!(tty.contains("2 of 2 file(s) pass"), "{tty}");
    let piped = bin_output(&["validate", &fixture("good.mp4").to_string_lossy()]);
    assert!(!piped.contains("probing"), "{piped}");
}

fn bin_output(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
