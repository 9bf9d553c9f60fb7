//! `sim --tls`: the simulator serves HTTPS with a certificate of its own CA, as TikTok serves its
//! hosts, and the daemon trusts it only through `[tiktok] ca_file`; `--skip-upload-hash` keeps every
//! upload check but the hash.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use tiktok_poster::tiktok::ChunkPlan;

use crate::app::TestApp;
use crate::support::{Proc, TestSim, make_video, sim_client, trusting};
use crate::upload::{init as init_upload, req};

const T: Duration = Duration::from_secs(60);

/// A whole post over HTTPS: connect, init, a three-chunk upload, publish, all against a TLS simulator
/// whose CA the daemon knows from `[tiktok] ca_file`.
#[tokio::test]
async fn a_post_goes_to_a_tls_simulator_trusted_through_ca_file() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("sim-ca.pem");
    let ca_for_sim = ca.clone();
    let app = TestApp::spawn(
        |s| {
            s.tls = true;
            s.tls_ca_out = Some(ca_for_sim);
        },
        |s| s.tiktok.ca_file = Some(ca.clone()),
    )
    .await;
    assert!(app.sim.sim.base_url.starts_with("https://127.0.0.1:"));
    assert_eq!(app.sim.sim.ca_file.as_deref(), Some(ca.as_path()));
    app.connect("tls", false).await;
    // Three chunks: 64,000,001 bytes is past the single-chunk limit.
    let (id, sha) = app.submit("tls", "tls.mp4", 64_000_001).await;
    app.wait_state(&id, &["published"], T).await;
    let posts = app.sim_posts_with(&sha).await;
    assert_eq!(posts.len(), 1, "posted once: {posts:?}");
    assert_eq!(posts[0]["bytes"], 64_000_001u64);
    assert!(posts[0]["uploaded_unix_ms"].as_i64().is_some());
}

/// Without the CA the simulator's certificate is refused (`config::tests` covers a bad `ca_file`).
#[tokio::test]
async fn without_its_ca_the_tls_simulator_is_refused() {
    let t = TestSim::spawn(|s| s.tls = true).await;
    let plain = sim_client(&t.sim.base_url, "k", "s", |_| {});
    let err = plain
        .creator_info(&secrecy::SecretString::from("x".to_string()))
        .await;
    let text = format!("{}", err.unwrap_err());
    assert!(
        text.to_lowercase().contains("certificate"),
        "an untrusted certificate fails the request, and the error says so: {text}"
    );
    // The trusting client gets TikTok's own answer (an invalid token), so TLS itself worked.
    let trusted = t
        .client
        .creator_info(&secrecy::SecretString::from("x".to_string()))
        .await;
    let e = trusted.unwrap_err();
    assert_eq!(e.code, "access_token_invalid", "{e}");
    // Without --tls-ca-out the CA goes into a directory only this user can enter, removed with the
    // simulator.
    let dir = t
        .sim
        .ca_file
        .as_ref()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
    drop(t);
    assert!(
        !dir.exists(),
        "{} is removed with the simulator",
        dir.display()
    );
}

/// `tiktok-poster sim --tls` names its CA file on stdout, then its https address; a client that
/// trusts that file is served.
#[tokio::test]
async fn the_sim_binary_serves_https_and_names_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .args(["sim", "--listen", "127.0.0.1:0", "--tls", "--tls-ca-out"])
        .arg(&ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let _sim = Proc(child);
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).unwrap();
    out.read_line(&mut second).unwrap();
    assert_eq!(
        first.trim(),
        format!("tiktok-poster sim CA certificate at {}", ca.display())
    );
    let base = second.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("https://127.0.0.1:"), "{second}");
    let pem = std::fs::read(&ca).unwrap();
    let http = trusting(Some(&pem), reqwest::redirect::Policy::none());
    let stats = http.get(format!("{base}/_sim/stats")).send().await.unwrap();
    assert_eq!(stats.status(), 200);
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{base}/_sim/stats"))
            .send()
            .await
            .is_err()
    );
}

/// `--skip-upload-hash`: the upload is checked and completes as always, only `sha256` stays null.
#[tokio::test]
async fn skip_upload_hash_keeps_every_check_but_the_hash() {
    let t = TestSim::spawn(|s| s.skip_upload_hash = true).await;
    let tok = t.connect("nohash", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    let size = 64_000_001;
    make_video(&path, size);
    let plan = ChunkPlan::for_size(size).unwrap();
    let init = init_upload(&t, &tok, plan).await;
    let url = init.upload_url.unwrap();
    let out = t
        .client
        .upload_file(req(&url, &path, plan), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(out.requests, plan.total_chunk_count as u32);
    let p = t.post(&init.publish_id).await;
    assert_eq!(p["bytes"], size);
    assert!(p["sha256"].is_null(), "{p}");
    // A chunk out of order is still refused with 416.
    let init2 = init_upload(&t, &tok, plan).await;
    let url2 = init2.upload_url.unwrap();
    let (start, len) = plan.chunk(1);
    let r = t
        .http
        .put(url2.expose())
        .header("Content-Type", "video/mp4")
        .header(
            "Content-Range",
            format!("bytes {start}-{}/{size}", start + len - 1),
        )
        .body(vec![0u8; len as usize])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
}
