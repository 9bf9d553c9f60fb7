//! The video file as the daemon sees it: only from `[video] allowed_dirs` (on the resolved path, at
//! submission and before upload), never published when it changes during its upload, and a momentary
//! shortage of descriptors while reading it is waited out, never a rejection.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::AsyncCommands;

use crate::app::{TestApp, path_str};
use crate::support::{TestRedis, TestSim, make_video, sha256_file, wait_until};

const T: Duration = Duration::from_secs(30);

/// A directory tree of the test's own: `allowed/` (the only allowed directory), `outside/`, and
/// `missing/` (configured but never created).
struct Tree {
    _root: tempfile::TempDir,
    allowed: PathBuf,
    outside: PathBuf,
    missing: PathBuf,
}

fn tree() -> Tree {
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("allowed");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let missing = root.path().join("missing");
    Tree {
        _root: root,
        allowed,
        outside,
        missing,
    }
}

/// The rejection of the submission with id `id`, once it is there.
async fn rejection(app: &TestApp, id: &str) -> String {
    wait_until(T, &format!("the rejection of {id}"), || async {
        app.rejected()
            .await
            .into_iter()
            .find(|r| r.get("id").map(String::as_str) == Some(id))
            .map(|r| r["reason"].clone())
    })
    .await
}

async fn submit(app: &TestApp, id: &str, video: &str) {
    app.xadd(&[
        ("id", id),
        ("account", "main"),
        ("video", video),
        ("privacy_level", "SELF_ONLY"),
    ])
    .await;
}

/// A file outside the allowed directory, a symlink inside that points outside, and a `..` path out
/// of it are each rejected at submission with `video_outside_allowed_dirs` and a reason naming the
/// resolved path, the list and the key to change; `enqueue` refuses the same. A configured directory
/// that does not exist does not stop the daemon, and a file inside the allowed one is published.
#[tokio::test]
async fn videos_outside_the_allowed_dirs_are_rejected_at_submission_on_the_resolved_path() {
    let t = tree();
    let dirs = vec![t.allowed.clone(), t.missing.clone()];
    let app = TestApp::spawn(|_| {}, |s| s.video.allowed_dirs = dirs).await;
    app.connect("main", false).await;
    let (inside_sha, inside) = {
        let p = t.allowed.join("in.mp4");
        (make_video(&p, 500_000), p)
    };
    let outside = t.outside.join("secret.mp4");
    let outside_sha = make_video(&outside, 500_000);
    let link = t.allowed.join("link.mp4");
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let dotdot = t.allowed.join("../outside/secret.mp4");
    let resolved_outside = std::fs::canonicalize(&outside).unwrap();

    submit(&app, "outside", path_str(&outside)).await;
    submit(&app, "symlink", path_str(&link)).await;
    submit(&app, "dotdot", path_str(&dotdot)).await;
    submit(&app, "inside", path_str(&inside)).await;

    for id in ["outside", "symlink", "dotdot"] {
        let reason = rejection(&app, id).await;
        for want in [
            "video_outside_allowed_dirs",
            resolved_outside.to_str().unwrap(),
            t.allowed.to_str().unwrap(),
            "video.allowed_dirs",
        ] {
            assert!(reason.contains(want), "{id}: {want:?} not in {reason}");
        }
        assert!(app.post(id).await.is_empty(), "{id} was recorded");
    }
    app.wait_state("inside", &["published"], T).await;
    assert_eq!(app.sim_posts_with(&inside_sha).await.len(), 1);
    assert!(app.sim_posts_with(&outside_sha).await.is_empty());

    // `enqueue` runs the same check.
    let cfg = app.cli_config("cli", &[&t.allowed], "");
    let out = crate::cli::bin()
        .arg("--config")
        .arg(&cfg)
        .args([
            "enqueue",
            "--account",
            "main",
            "--privacy-level",
            "SELF_ONLY",
        ])
        .arg("--video")
        .arg(&link)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("video_outside_allowed_dirs"), "{err}");
    assert!(err.contains(resolved_outside.to_str().unwrap()), "{err}");
}

/// A scheduled post whose file is moved out of the allowed directory (a symlink left in its place)
/// after it was accepted fails with `video_outside_allowed_dirs` just before upload, before any
/// TikTok init.
#[tokio::test]
async fn a_video_moved_outside_after_submission_fails_before_any_init() {
    let t = tree();
    let dirs = vec![t.allowed.clone()];
    let app = TestApp::spawn(|_| {}, |s| s.video.allowed_dirs = dirs).await;
    app.connect("main", false).await;
    let path = t.allowed.join("moved.mp4");
    let sha = make_video(&path, 500_000);
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    app.xadd(&[
        ("id", "moved"),
        ("account", "main"),
        ("video", path_str(&path)),
        ("privacy_level", "SELF_ONLY"),
        ("publish_at", &at),
    ])
    .await;
    app.wait_state("moved", &["scheduled"], T).await;
    let moved = t.outside.join("moved.mp4");
    std::fs::rename(&path, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &path).unwrap();
    let post = app.wait_state("moved", &["failed"], T).await;
    assert_eq!(post["error_code"], "video_outside_allowed_dirs", "{post:?}");
    assert!(
        post["error_message"].contains(std::fs::canonicalize(&moved).unwrap().to_str().unwrap()),
        "{post:?}"
    );
    assert!(!post.contains_key("publish_id"), "{post:?}");
    let stats = app.sim.stats().await;
    assert_eq!(
        stats["requests"]["video_init"].as_u64().unwrap_or(0),
        0,
        "no init reached TikTok: {stats}"
    );
    assert!(app.sim_posts_with(&sha).await.is_empty());
}

/// `check-config` prints the resolved list, and a configured directory that does not exist is a
/// warning, not an error.
#[test]
fn check_config_prints_the_resolved_allowed_dirs_and_warns_about_a_missing_one() {
    let t = tree();
    let link = t.outside.join("to-allowed");
    std::os::unix::fs::symlink(&t.allowed, &link).unwrap();
    let cfg = t.outside.join("c.toml");
    // check-config refuses a missing token key, as `run` does.
    let key = t.outside.join("token.key");
    tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[video]\nallowed_dirs = [\"{}\", \"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n",
            link.display(),
            t.missing.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = crate::cli::bin()
        .args(["--config", cfg.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let resolved = std::fs::canonicalize(&t.allowed).unwrap();
    assert!(
        stdout.contains(&format!(
            "# effective video.allowed_dirs (resolved): [{:?}]",
            resolved.display().to_string()
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("warning:") && stderr.contains(t.missing.to_str().unwrap()),
        "{stderr}"
    );
}

/// Overwrites the last MiB of `path` with other bytes, in place (same inode, same size), and sets
/// its modification time back: only the inode change time tells. Returns the new sha256.
fn rewrite_in_place_keeping_mtime(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    let mut f = std::fs::File::options().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(meta.len() - (1 << 20))).unwrap();
    f.write_all(&vec![0x5A; 1 << 20]).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let after = std::fs::metadata(path).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (meta.len(), mtime)
    );
    sha256_file(path)
}

/// A 90 MB video (9 chunks) whose upload the simulator slows down; waits until some of it is at
/// TikTok. Returns its path and sha256.
async fn slow_upload_in_flight(app: &TestApp, id: &str) -> (PathBuf, String) {
    app.sim
        .fault(serde_json::json!({"endpoint": "upload", "delay_ms": 400, "times": 20}))
        .await;
    let (path, sha) = app.video(&format!("{id}.mp4"), 90_000_000);
    submit(app, id, path_str(&path)).await;
    let publish_id = wait_until(T, "the upload to start", || async {
        app.post(id)
            .await
            .get("publish_id")
            .filter(|p| !p.is_empty())
            .cloned()
    })
    .await;
    wait_until(T, "the first chunk to arrive", || async {
        let p = app.sim.post(&publish_id).await;
        (p["bytes"].as_u64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    (path, sha)
}

/// A file rewritten in place mid-upload, same size and its modification time restored, fails its
/// post with `video_changed`; TikTok has no published post with either the old or the new bytes.
#[tokio::test]
async fn a_file_rewritten_in_place_during_upload_is_never_published() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (path, old_sha) = slow_upload_in_flight(&app, "rewritten").await;
    let new_sha = rewrite_in_place_keeping_mtime(&path);
    assert_ne!(old_sha, new_sha);
    let post = app
        .wait_state("rewritten", &["failed", "published", "unconfirmed"], T)
        .await;
    assert_eq!(post["state"], "failed", "{post:?}");
    assert_eq!(post["error_code"], "video_changed", "{post:?}");
    // Give a completed upload time to be processed, then look at everything TikTok holds.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for sha in [&old_sha, &new_sha] {
        assert!(app.sim_posts_with(sha).await.is_empty(), "{sha} at TikTok");
    }
    let posts = app.sim.posts().await;
    assert!(
        posts.iter().all(|p| p["status"] != "PUBLISH_COMPLETE"),
        "{posts:?}"
    );
}

/// A file truncated mid-upload fails its post at once with `video_truncated`, in its first attempt,
/// instead of being sent again as if the network had failed.
#[tokio::test]
async fn a_file_truncated_during_upload_fails_at_once_as_truncated() {
    let app = TestApp::spawn(|_| {}, |_| {}).await;
    app.connect("main", false).await;
    let (path, sha) = slow_upload_in_flight(&app, "shrunk").await;
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(45_000_000)
        .unwrap();
    let post = app
        .wait_state("shrunk", &["failed", "published", "unconfirmed"], T)
        .await;
    assert_eq!(post["state"], "failed", "{post:?}");
    assert_eq!(post["error_code"], "video_truncated", "{post:?}");
    assert!(post["error_message"].contains("truncated"), "{post:?}");
    assert_eq!(
        post["attempts"], "1",
        "failed in its first attempt: {post:?}"
    );
    assert!(app.sim_posts_with(&sha).await.is_empty());
}

/// The soft limit of open files of process `pid`.
fn soft_nofile(pid: u32) -> String {
    let out = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            "--nofile",
            "--output=SOFT",
            "--noheadings",
        ])
        .output()
        .expect("prlimit (util-linux) is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn set_soft_nofile(pid: u32, soft: &str) {
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .status()
        .unwrap();
    assert!(st.success(), "prlimit --nofile={soft}:");
}

/// With the daemon's soft limit of open files dropped to 3 (so every new descriptor fails with
/// EMFILE) while a video is being uploaded and another is submitted, neither is refused: the upload
/// waits and resumes, the submission is read again; once descriptors are available both are
/// published.
#[tokio::test]
async fn running_out_of_descriptors_while_reading_videos_delays_posts_and_never_refuses_them() {
    let redis = TestRedis::start(true);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = crate::crash::write_config(&dir, &redis, &sim, 3);
    // The shortage lasts a few seconds: enough attempts that it cannot use them all up.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[worker]\n", "[worker]\nmax_attempts = 100\n");
    std::fs::write(&config, text).unwrap();
    let daemon = Killed(crate::crash::start_connected(&config, &log, port, "fd").await);
    let pid = daemon.0.id();
    let (up_sha, _) = crate::crash::submit_slow_upload(&sim, &redis, &dir, "fd-up").await;
    let normal = soft_nofile(pid);
    set_soft_nofile(pid, "3");
    let video = dir.path().join("fd-in.mp4");
    let in_sha = make_video(&video, 400_000);
    let mut conn = redis.conn().await;
    let _: String = conn
        .xadd(
            "tiktok-poster:submit",
            "*",
            &[
                ("id", "fd-in"),
                ("account", "main"),
                ("video", path_str(&video)),
                ("privacy_level", "SELF_ONLY"),
            ],
        )
        .await
        .unwrap();
    // Both reads met the shortage: the submission was put off, the chunk's file could not be opened.
    wait_until(T, "the daemon to meet EMFILE on both reads", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let deferred = text.lines().any(|l| {
            l.contains("Submission cannot be checked now") && l.contains("Too many open files")
        });
        let upload = text
            .lines()
            .any(|l| l.contains("local_transient") && l.contains("Too many open files"));
        (deferred && upload).then_some(())
    })
    .await;
    // Held off more often than a submission that crashed the daemon may be read again: waiting on
    // the host is not a crash, so it must still not be rejected.
    let max = tiktok_poster::ingest::MAX_DELIVERIES as i64;
    wait_until(
        T,
        "the put-off submission to be read again many times",
        || async {
            let pending: redis::Value = redis::cmd("XPENDING")
                .arg("tiktok-poster:submit")
                .arg(tiktok_poster::ingest::GROUP)
                .arg("-")
                .arg("+")
                .arg(10)
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            let most = match pending {
                redis::Value::Array(entries) => entries
                    .iter()
                    .filter_map(|e| match e {
                        redis::Value::Array(f) => f.get(3).and_then(|n| match n {
                            redis::Value::Int(n) => Some(*n),
                            _ => None,
                        }),
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0),
                _ => 0,
            };
            (most > max + 1).then_some(())
        },
    )
    .await;
    let rejected: redis::streams::StreamRangeReply =
        conn.xrange_all("tiktok-poster:rejected").await.unwrap();
    assert!(rejected.ids.is_empty(), "nothing is rejected: {rejected:?}");
    let up: Option<String> = conn
        .hget("tiktok-poster:post:fd-up", "state")
        .await
        .unwrap();
    assert!(
        !matches!(up.as_deref(), Some("failed" | "unconfirmed")),
        "the upload is not given up: {up:?}"
    );
    set_soft_nofile(pid, &normal);
    crate::crash::wait_published(&conn, "fd-in", Duration::from_secs(60)).await;
    crate::crash::wait_published(&conn, "fd-up", Duration::from_secs(60)).await;
    for sha in [&up_sha, &in_sha] {
        let n = sim
            .posts()
            .await
            .into_iter()
            .filter(|p| p["sha256"] == **sha)
            .count();
        assert_eq!(n, 1, "{sha} published once");
    }
    let rejected: redis::streams::StreamRangeReply =
        conn.xrange_all("tiktok-poster:rejected").await.unwrap();
    assert!(rejected.ids.is_empty(), "nothing is rejected: {rejected:?}");
}

/// The daemon binary, killed when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A configured directory that does not exist is a warning at start, naming it, and the daemon runs.
#[tokio::test]
async fn a_missing_allowed_dir_is_a_warning_at_start_not_an_error() {
    let redis = TestRedis::start(false);
    let sim = TestSim::spawn(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, log, port) = crate::crash::write_config(&dir, &redis, &sim, 3);
    let missing = dir.path().join("not-there");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "allowed_dirs = [",
        &format!("allowed_dirs = [\"{}\", ", missing.display()),
    );
    std::fs::write(&config, text).unwrap();
    let _daemon = Killed(crate::crash::start(&config, &log));
    crate::crash::wait_healthy(port).await;
    let line = wait_until(T, "the warning about the missing directory", || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("allowed_dirs is unusable"))
            .map(str::to_string)
    })
    .await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
}
