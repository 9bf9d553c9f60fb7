//! The real binary: commands, exit codes, the simulator as a process.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tiktok-poster"));
    c.env_remove("TIKTOK_POSTER_CONFIG");
    c.current_dir(env!("CARGO_TARGET_TMPDIR"));
    c
}

/// `check-config` prints the effective values with the secret masked.
#[test]
fn check_config_prints_effective_values_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    // check-config refuses what `run` refuses, a missing token key included: give it one.
    let key = dir.path().join("token.key");
    tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[tiktok]\nclient_key = \"ck\"\nclient_secret = \"very-secret\"\n[tokens]\nencryption_key_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    let out = bin()
        .args(["--config", cfg.to_str().unwrap(), "check-config"])
        .env("TIKTOK_POSTER__WORKER__CONCURRENCY", "12")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("concurrency = 12"), "{stdout}");
    assert!(stdout.contains("client_secret = \"********\""), "{stdout}");
    assert!(!stdout.contains("very-secret"));
}

/// A bad configuration exits 78 with a message naming the key; a usage error exits 2.
#[test]
fn exit_codes_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[worker]\nconcurrency = 0\n").unwrap();
    let out = bin()
        .args(["--config", cfg.to_str().unwrap(), "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("worker.concurrency"), "{stderr}");

    let out = bin()
        .args(["--config", "/nonexistent.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));

    let out = bin().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = bin()
        .args(["sim", "--fault-5xx-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fault-5xx-rate"));
}

/// `sim --listen 127.0.0.1:0` prints the address it bound, serves TikTok's API there, and stops on
/// SIGTERM.
#[test]
fn the_simulator_binary_prints_its_address_serves_and_stops_on_sigterm() {
    let mut child = bin()
        .args(["sim", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("tiktok-poster sim listening on ")
        .expect(&line)
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{base}/v2/post/publish/creator_info/query/"))
            .bearer_auth("act.nope")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "access_token_invalid");
        status
    });
    assert_eq!(status, 401);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let code = child.wait().unwrap();
    assert!(code.success(), "exits cleanly on SIGTERM: {code:?}");
}

/// The README's quick start, run from a clean clone of the committed tree: it builds, starts Redis, the
/// simulator and the daemon, connects an account through the Connect page, submits the sample with
/// `redis-cli XADD` and sees it published with its exact bytes. The build shares this checkout's
/// target directory, so only the crate itself is compiled again.
#[test]
fn the_quick_start_publishes_the_sample_from_a_clean_clone() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join(".git").exists() {
        eprintln!("not a git checkout: nothing to clone");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("clone");
    let st = Command::new("git")
        .args(["clone", "--quiet"])
        .arg(root)
        .arg(&clone)
        .status()
        .unwrap();
    assert!(st.success(), "git clone");
    let out = Command::new("bash")
        .args(["deploy/quickstart.sh", "--exit"])
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("TIKTOK_CLIENT_KEY")
        .env_remove("TIKTOK_CLIENT_SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quick start failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Published: the simulator received the exact bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("state                  published"),
        "{stdout}"
    );
}
