//! One crafted file must not take the daemon down (issue 11, point 1, and the probe parts of point
//! 12): bounded memory on a fragmented MP4 with millions of samples and on WebMs with huge frames,
//! CodecPrivate and Cues (`validate` and ingest, each a real process whose peak RSS is read), a probe timeout that stops the work, a FIFO refused at
//! once, inconsistent MP4s refused, and the crash-loop bounds of ingest and of the pre-upload probe.

use std::process::{Command, Stdio};
use std::time::Duration;

use redis::AsyncCommands;
use tiktok_poster::media::{self, Deadline};

use crate::app::{TestApp, path_str};
use crate::crafted_mp4::write_fragmented;
use crate::crafted_webm::{Crafted, FRAMES, write_webm};
use crate::support::{TestRedis, TestSim, fixture, wait_until};

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(30);

/// `validate` on a 64 MB fragmented MP4 whose runs list 8 million samples: the probe reads them all
/// (the JSON has the frame count) and the process's peak RSS, from `wait4` through GNU time, stays
/// under 64 MiB. The old probe held about ten times the file.
#[test]
fn validate_stays_under_64_mib_on_a_64_mb_fragmented_mp4_with_millions_of_samples() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frag64.mp4");
    let (bytes, samples) = write_fragmented(&path, 64 * MIB);
    assert!(
        bytes >= 64 * MIB && samples >= 8_000_000,
        "{bytes} {samples}"
    );
    let (json, kib) = validate_peak_rss(&path);
    let frames = &json[0]["info"]["video"]["frame_count"];
    assert_eq!(
        frames.as_u64(),
        Some(samples),
        "the probe counted every sample: {json}"
    );
    eprintln!("validate on {bytes} bytes, {samples} samples: peak RSS {kib} KiB");
    assert!(kib < 64 * 1024, "validate peaked at {kib} KiB");
}

/// `validate --json` on `path` as a real process: its JSON answer and its peak RSS in KiB, from
/// `wait4` through GNU time.
fn validate_peak_rss(path: &std::path::Path) -> (serde_json::Value, u64) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "PEAK_RSS_KIB %M"])
        .arg(env!("CARGO_BIN_EXE_tiktok-poster"))
        .args(["validate", "--json"])
        .arg(path)
        .env_remove("TIKTOK_POSTER_CONFIG")
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .output()
        .expect("GNU time is installed (apt-get install time)");
    let err = String::from_utf8_lossy(&out.stderr);
    let kib: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in: {err}"));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{err}", String::from_utf8_lossy(&out.stdout)));
    (json, kib)
}

/// The daemon's ingest on the same kind of file, submitted through Redis: the real binary's peak
/// RSS (VmHWM, read while it still runs) stays under 64 MiB, the submission is rejected with the
/// probe's reason, and the daemon is still up.
#[tokio::test]
async fn ingest_stays_under_64_mib_on_a_64_mb_fragmented_mp4_with_millions_of_samples() {
    let (reason, kib) = ingest_peak_rss("frag64.mp4", |path| {
        let (_, samples) = write_fragmented(path, 64 * MIB);
        eprintln!("{samples} samples");
    })
    .await;
    assert!(reason.contains("duration_too_long"), "{reason}");
    assert!(kib < 64 * 1024, "the daemon peaked at {kib} KiB");
}

/// Starts the daemon, submits the file `write` makes (after the start) through Redis, and waits for
/// its rejection: the reason and the daemon's peak RSS in KiB (VmHWM, read while it still runs),
/// after checking the daemon is still up.
async fn ingest_peak_rss(name: &str, write: impl FnOnce(&std::path::Path)) -> (String, u64) {
    let redis = TestRedis::start(false);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) =
        crate::crash::write_config_named(&dir, "", &redis, &sim, 5, "rss-test");
    let mut daemon = crate::crash::start(&config, &log);
    crate::crash::wait_healthy(port).await;
    let body = reqwest::get(format!(
        "http://127.0.0.1:{port}/connect?account=main&sim_username=rss"
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(body.contains("is connected"), "{body}");
    let path = dir.path().join(name);
    write(&path);
    let mut conn = redis.conn().await;
    let _: String = conn
        .xadd(
            "tiktok-poster:submit",
            "*",
            &[
                ("id", "crafted"),
                ("account", "main"),
                ("video", path_str(&path)),
                ("privacy_level", "SELF_ONLY"),
            ],
        )
        .await
        .unwrap();
    let reason: String = wait_until(T, "the crafted video's rejection", || {
        let mut conn = conn.clone();
        async move {
            let r: redis::streams::StreamRangeReply =
                conn.xrange_all("tiktok-poster:rejected").await.ok()?;
            let e = r.ids.first()?;
            e.get::<String>("reason")
        }
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.id())).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
    let _ = daemon.kill();
    let _ = daemon.wait();
    eprintln!("daemon ingesting {name}: peak RSS {kib} KiB; reason: {reason}");
    (reason, kib)
}

/// `validate` on a live WebM (no Duration, no DefaultDuration: the probe reads the frames) whose
/// first frame is 80 MB: the frames are counted and timed, and the peak RSS stays under 64 MiB; a
/// deadline already passed stops the probe. The old probe (`matroska-demuxer`'s `next_frame`) read
/// each frame whole into memory.
#[test]
fn validate_stays_under_64_mib_on_a_live_webm_with_an_80_mb_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.webm");
    let crafted = Crafted {
        live: true,
        first_frame: 80 * MIB,
        ..Crafted::default()
    };
    let bytes = write_webm(&path, crafted);
    assert!(bytes > 80 * MIB, "{bytes}");
    let (json, kib) = validate_peak_rss(&path);
    eprintln!("validate on a live WebM with an 80 MB frame: peak RSS {kib} KiB; {json}");
    let info = &json[0]["info"];
    assert_eq!(info["video"]["frame_count"], FRAMES, "{json}");
    let d = info["duration_secs"].as_f64().expect("a derived duration");
    assert!((1.0..1.05).contains(&d), "{d}");
    assert!(kib < 64 * 1024, "validate peaked at {kib} KiB");
    // The deadline still stops the WebM probe.
    let e = media::probe_until(&path, &Deadline::after(Duration::ZERO)).unwrap_err();
    assert_eq!(e.code(), "probe_timeout", "{e}");
}

/// `validate` on WebMs with a hazard in their header: a 200 MB CodecPrivate, and a 16 MB Cues of
/// 8 million empty cue points (the old demuxer listed every child of a master element, about 40
/// bytes each, before parsing any). Each is described (the probe reads neither) with a peak RSS
/// under 64 MiB; the old probe read the CodecPrivate whole and listed the cue points.
#[test]
fn validate_stays_under_64_mib_on_webms_with_a_200_mb_codec_private_or_a_16_mb_cues() {
    let dir = tempfile::tempdir().unwrap();
    for (name, crafted) in [
        (
            "private.webm",
            Crafted {
                codec_private: 200 * MIB,
                ..Crafted::default()
            },
        ),
        (
            "cues.webm",
            Crafted {
                cue_points: 8 << 20,
                ..Crafted::default()
            },
        ),
    ] {
        let path = dir.path().join(name);
        write_webm(&path, crafted);
        let (json, kib) = validate_peak_rss(&path);
        eprintln!("validate on {name}: peak RSS {kib} KiB; {json}");
        let info = &json[0]["info"];
        assert_eq!(info["container"], "webm", "{name}: {json}");
        let d = info["duration_secs"].as_f64();
        assert!(
            d.is_some_and(|d| (d - 1.023).abs() < 1e-6),
            "{name}: {json}"
        );
        assert_eq!(info["video"]["codec"], "vp9", "{name}: {json}");
        assert_eq!(info["width"], 720, "{name}: {json}");
        assert!(kib < 64 * 1024, "validate on {name} peaked at {kib} KiB");
    }
}

/// The daemon's ingest on a WebM with all three hazards (a 100 MB CodecPrivate, 8 million cue
/// points, an 80 MB frame) and an 11-minute Duration: rejected for its duration, not for the
/// hazards, with the daemon's peak RSS under 64 MiB and the daemon still up.
#[tokio::test]
async fn ingest_stays_under_64_mib_on_a_webm_with_a_huge_codec_private_cues_and_frame() {
    let (reason, kib) = ingest_peak_rss("hazards.webm", |path| {
        let crafted = Crafted {
            codec_private: 100 * MIB,
            cue_points: 8 << 20,
            first_frame: 80 * MIB,
            duration_ms: 660_000.0,
            ..Crafted::default()
        };
        write_webm(path, crafted);
    })
    .await;
    assert!(reason.contains("duration_too_long"), "{reason}");
    assert!(kib < 64 * 1024, "the daemon peaked at {kib} KiB");
}

/// A probe given a tiny timeout on a big crafted file (256 MB, 33 million samples) returns
/// `probe_timeout`, and its blocking thread stops working: on a runtime with a single blocking
/// thread, the next blocking task gets it at once (the old probe kept it for seconds, reading the
/// whole file). `probe_until` with a deadline
/// already passed stops too.
#[test]
fn a_probe_out_of_time_stops_its_work_and_frees_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frag.mp4");
    write_fragmented(&path, 256 * MIB);
    let e = media::probe_until(&path, &Deadline::after(Duration::ZERO)).unwrap_err();
    assert_eq!(e.code(), "probe_timeout", "{e}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let e = media::probe_async(path.clone(), Duration::from_millis(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "probe_timeout", "{e}");
        // Generous: the stopped probe gives the thread back within one buffered read.
        let next = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::task::spawn_blocking(|| "free"),
        )
        .await;
        assert!(
            matches!(next, Ok(Ok("free"))),
            "the probe kept its thread after its timeout"
        );
    });
}

/// `validate` on a FIFO answers at once with `not_a_file` (the old one blocked in `open` forever).
#[test]
fn validate_refuses_a_fifo_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.mp4");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    let mut child = crate::cli::bin()
        .args(["validate", "--json"])
        .arg(&fifo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("validate on a FIFO did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["violations"][0]["code"], "not_a_file", "{v}");
    let msg = v[0]["violations"][0]["message"].as_str().unwrap();
    assert!(msg.contains("FIFO"), "{msg}");
}

/// Two inconsistent MP4s the old probe passed: an `stts` counting one sample more than `stsz`, and
/// a `moov` of size 0 ("to the end of the file", which ISO 14496-12 reserves for a last box and in
/// practice for media data; a movie box of unknown size was never finished). Both are `malformed`,
/// with a message naming the problem; the untouched files still pass.
#[test]
fn an_stts_longer_than_stsz_and_a_moov_of_size_0_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("good.mp4")).unwrap();
    assert!(media::probe(&fixture("good.mp4")).is_ok());

    // The video track's first stts entry counts one sample more.
    let mut bytes = good.clone();
    let stts = bytes.windows(4).position(|w| w == b"stts").unwrap();
    let count_at = stts + 4 + 4 + 4; // type, version/flags, entry count
    let count = u32::from_be_bytes(bytes[count_at..count_at + 4].try_into().unwrap());
    bytes[count_at..count_at + 4].copy_from_slice(&(count + 1).to_be_bytes());
    let p = dir.path().join("stts.mp4");
    std::fs::write(&p, &bytes).unwrap();
    let e = media::probe(&p).unwrap_err();
    assert_eq!(e.code(), "malformed", "{e}");
    assert!(
        e.to_string().contains("stts") && e.to_string().contains("stsz"),
        "{e}"
    );

    // moov last, with size 0.
    let end = std::fs::read(fixture("good_moov_end.mp4")).unwrap();
    assert!(media::probe(&fixture("good_moov_end.mp4")).is_ok());
    let mut bytes = end.clone();
    let moov = bytes.windows(4).rposition(|w| w == b"moov").unwrap() - 4;
    bytes[moov..moov + 4].copy_from_slice(&0u32.to_be_bytes());
    let p = dir.path().join("moov0.mp4");
    std::fs::write(&p, &bytes).unwrap();
    let e = media::probe(&p).unwrap_err();
    assert_eq!(e.code(), "malformed", "{e}");
    assert!(e.to_string().contains("size 0"), "{e}");
}

/// An entry the daemon died on, as a dead daemon leaves it: read into the group by this consumer
/// and never acknowledged, once and then again at each of three restarts (four deliveries). At the
/// next start it is rejected unchecked with a reason saying it crashed the daemon and what to do;
/// the good entry after it is published.
#[tokio::test]
async fn an_entry_the_daemon_died_on_is_rejected_at_the_next_start_and_the_next_one_published() {
    let mut app = TestApp::spawn(|_| {}, |s| s.worker.id = "probe-test".into()).await;
    app.connect("main", false).await;
    app.stop_daemon().await;
    let (video, sha) = app.video("poison.mp4", 300_000);
    let poison = app
        .xadd(&[
            ("id", "poison"),
            ("account", "main"),
            ("video", path_str(&video)),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let mut conn = app.redis.conn().await;
    for from in [">", "0", "0", "0"] {
        let v: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("ingest")
            .arg("probe-test")
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg("tiktok-poster:submit")
            .arg(from)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(format!("{v:?}").contains(&poison), "{v:?}");
    }
    let (good, good_sha) = app.video("good.mp4", 310_000);
    app.xadd(&[
        ("id", "after"),
        ("account", "main"),
        ("video", path_str(&good)),
        ("privacy_level", "SELF_ONLY"),
    ])
    .await;
    app.start_daemon().await;
    app.wait_state("after", &["published"], T).await;
    assert_eq!(app.sim_posts_with(&good_sha).await.len(), 1);
    let rejected = app.rejected().await;
    let r = rejected
        .iter()
        .find(|r| r.get("id").map(String::as_str) == Some("poison"))
        .expect("the entry the daemon died on is in the rejected stream");
    assert_eq!(r["entry_id"], poison);
    let reason = &r["reason"];
    assert!(reason.contains("read 5 times"), "{reason}");
    assert!(reason.contains("crashed"), "{reason}");
    assert!(reason.contains("tiktok-poster validate"), "{reason}");
    assert!(app.post("poison").await.is_empty(), "no post recorded");
    assert!(app.sim_posts_with(&sha).await.is_empty());
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg("tiktok-poster:submit")
        .arg("ingest")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        matches!(&pending, redis::Value::Array(a) if a.first() == Some(&redis::Value::Int(0))),
        "nothing left pending: {pending:?}"
    );
}

/// A post whose probe just before upload never finished three times (as workers that died probing
/// it leave it) fails with `video_probe_crashed` and a reason, instead of being probed again; TikTok
/// never sees an init.
#[tokio::test]
async fn a_post_whose_pre_upload_probe_died_three_times_fails_with_a_reason() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (video, sha) = app.video("crashy.mp4", 300_000);
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    app.xadd(&[
        ("id", "crashy"),
        ("account", "main"),
        ("video", path_str(&video)),
        ("privacy_level", "SELF_ONLY"),
        ("publish_at", &at),
    ])
    .await;
    app.wait_state("crashy", &["scheduled"], T).await;
    let mut conn = app.redis.conn().await;
    let _: () = conn
        .hset("tiktok-poster:post:crashy", "probes_unfinished", 3)
        .await
        .unwrap();
    let post = app.wait_state("crashy", &["failed"], T).await;
    assert_eq!(post["error_code"], "video_probe_crashed", "{post:?}");
    assert!(
        post["error_message"].contains("never finished 3 times"),
        "{post:?}"
    );
    assert!(!post.contains_key("publish_id"));
    assert!(app.sim_posts_with(&sha).await.is_empty());

    // The count is cleared after a probe that finishes: a normal post publishes.
    let (id, sha) = app.submit("main", "fine.mp4", 320_000).await;
    let post = app.wait_state(&id, &["published"], T).await;
    assert_eq!(post["probes_unfinished"], "0", "{post:?}");
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
}
