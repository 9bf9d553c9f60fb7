//! `cargo bench --bench upload`: the client's chunked upload against `curl`, side by side, in one run.
//!
//! Starts `tiktok-poster sim` as its own process, connects a simulated account, then alternates over
//! several rounds: the client uploads a 1 GiB file (in a child process, so its peak RSS is its own), and
//! curl PUTs the very same chunks (one curl process, one connection, `--next` per chunk) to a fresh
//! upload URL of the same simulator. Both uploads are checked against the simulator's sha256 of the file.
//! Prints MB/s for both, their ratio (median of the rounds), and the client's peak RSS for a 256 MiB and a
//! 1 GiB file. Then 1, 4 and 8 uploads at once of a 256 MiB file, each to its own upload URL: k client
//! processes against k curl processes, aggregate MB/s and the ratio.
//!
//! Options (environment): `TP_BENCH_ROUNDS` (default 3), `TP_BENCH_MIB` (default 1024).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use tiktok_poster::tiktok::{
    AuthorizeRequest, ChunkPlan, Client, PostInfo, PrivacyLevel, Source, UploadRequest,
};
use url::Url;

#[path = "../common/mod.rs"]
mod common;

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const MIB: u64 = 1 << 20;

fn main() {
    if std::env::var("TP_BENCH_CHILD").is_ok() {
        child();
        return;
    }
    // `cargo test --all-targets` runs harness-less benches without `--bench`: do nothing then.
    if !common::run_by_cargo_bench() {
        println!("upload benchmark: run it with `cargo bench --bench upload`");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(parent());
}

/// Child mode: init + upload one file, print `secs bytes peak_rss_kib` on stdout.
fn child() {
    let base = std::env::var("TP_BENCH_SIM").expect("TP_BENCH_SIM");
    let file = PathBuf::from(std::env::var("TP_BENCH_FILE").expect("TP_BENCH_FILE"));
    let token = SecretString::from(std::env::var("TP_BENCH_TOKEN").expect("TP_BENCH_TOKEN"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let secs = rt.block_on(async {
        let client = common::bench_client(&base);
        let size = std::fs::metadata(&file).expect("file").len();
        let plan = ChunkPlan::for_size(size).expect("plan");
        let init = client
            .init_direct(
                &token,
                &PostInfo::new(PrivacyLevel::SelfOnly),
                &Source::FileUpload(plan),
            )
            .await
            .expect("init");
        let url = init.upload_url.expect("upload url");
        let started = Instant::now();
        let started_ms = chrono::Utc::now().timestamp_millis();
        let req = UploadRequest {
            url: &url,
            path: &file,
            plan,
            content_type: "video/mp4",
            start_offset: 0,
            check: None,
        };
        let out = client.upload_file(req, &mut |_| {}).await.expect("upload");
        assert_eq!(out.retries, 0);
        let secs = started.elapsed().as_secs_f64();
        println!("publish_id {}", init.publish_id);
        println!(
            "window {started_ms} {}",
            chrono::Utc::now().timestamp_millis()
        );
        secs
    });
    println!(
        "{secs} {} {}",
        std::fs::metadata(&file).unwrap().len(),
        peak_rss_kib()
    );
}

fn peak_rss_kib() -> u64 {
    common::proc_status_kib("self", "VmHWM:")
}

/// Writes a file with a distinct pattern in every 4 KiB block (so any reordering changes the hash).
fn make_file(path: &Path, size: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 4096];
    let mut at = 0u64;
    let mut n = 0u64;
    while at < size {
        for (i, b) in block.iter_mut().enumerate() {
            *b = ((i as u64 * 31 + n * 7919) % 251) as u8;
        }
        let len = block.len().min((size - at) as usize);
        f.write_all(&block[..len]).unwrap();
        at += len as u64;
        n += 1;
    }
    f.flush().unwrap();
}

/// The file's chunk plan and its chunks as files of their own (for curl's `-T`).
fn cut_chunks(file: &Path, dir: &Path, prefix: &str) -> (ChunkPlan, Vec<(PathBuf, u64, u64)>) {
    let data = std::fs::read(file).unwrap();
    let plan = ChunkPlan::for_size(data.len() as u64).unwrap();
    let chunks = (0..plan.total_chunk_count)
        .map(|i| {
            let (start, len) = plan.chunk(i);
            let p = dir.join(format!("{prefix}{i}"));
            std::fs::write(&p, &data[start as usize..(start + len) as usize]).unwrap();
            (p, start, len)
        })
        .collect();
    (plan, chunks)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn parent() {
    let rounds: usize = std::env::var("TP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mib: u64 = std::env::var("TP_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    if Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("curl is not installed; the baseline cannot run (apt-get install curl)");
        std::process::exit(1);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.mp4");
    let small = dir.path().join("small.mp4");
    make_file(&big, mib * MIB);
    make_file(&small, 256 * MIB);
    let expected_sha = common::sha256_file(&big);

    // The simulator as its own process, so its CPU and memory are not counted as the client's.
    let (sim, base) = common::start_sim(&[
        "--publish-delay-ms",
        "0",
        "--init-rate-per-min",
        "100000",
        "--daily-post-cap",
        "100000",
    ]);
    let client = common::bench_client(&base);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let auth = client.authorize_url(&AuthorizeRequest {
        scopes: vec!["video.publish".into(), "video.upload".into()],
        redirect_uri: REDIRECT.into(),
        state: "s".into(),
        pkce_challenge: None,
        extra: vec![("sim_username".into(), "bench".into())],
    });
    let loc = http.get(auth).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    let code = Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let tokens = client
        .exchange_code(&code, REDIRECT, None)
        .await
        .expect("exchange");

    // Chunk files for curl, cut from the same file beforehand (not timed).
    let (plan, chunk_files) = cut_chunks(&big, dir.path(), "chunk");

    println!(
        "upload benchmark: {mib} MiB file, {} chunks of {} bytes, {rounds} rounds, alternating",
        plan.total_chunk_count, plan.chunk_size
    );
    let mut ours = Vec::new();
    let mut curls = Vec::new();
    let mut rss_big = 0;
    for round in 1..=rounds {
        let (secs, rss) = run_child(&base, &big, &tokens.access_token, &http, &expected_sha).await;
        rss_big = rss_big.max(rss);
        let mbps = (mib * MIB) as f64 / 1e6 / secs;
        ours.push(mbps);
        let csecs = run_curl(
            &client,
            &http,
            &base,
            &tokens.access_token,
            plan,
            &chunk_files,
            &expected_sha,
        )
        .await;
        let cmbps = (mib * MIB) as f64 / 1e6 / csecs;
        curls.push(cmbps);
        println!("round {round}: tiktok-poster {mbps:8.1} MB/s   curl {cmbps:8.1} MB/s");
    }
    let small_sha = common::sha256_file(&small);
    let (_, rss_small) = run_child(&base, &small, &tokens.access_token, &http, &small_sha).await;

    // Concurrent uploads: k clients (k child processes) against k curl processes, each uploading the
    // 256 MiB file to its own upload URL at the same time; aggregate MB/s over the window from the first
    // byte to the last upload's end.
    let (small_plan, small_chunks) = cut_chunks(&small, dir.path(), "small");
    let mut conc_rows = Vec::new();
    for k in [1usize, 4, 8] {
        let (mut o, mut c) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let a =
                concurrent_ours(k, &base, &small, &tokens.access_token, &http, &small_sha).await;
            let b = concurrent_curl(
                k,
                &client,
                &http,
                &base,
                &tokens.access_token,
                small_plan,
                &small_chunks,
                &small_sha,
            )
            .await;
            println!(
                "concurrency {k}, round {}: tiktok-poster {a:8.1} MB/s   curl {b:8.1} MB/s",
                round + 1
            );
            o.push(a);
            c.push(b);
        }
        conc_rows.push((k, median(o), median(c)));
    }
    let (o, c) = (median(ours), median(curls));
    println!();
    println!("| figure | tiktok-poster | baseline (curl) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| upload {mib} MiB, MB/s (median of {rounds}) | {o:.1} | {c:.1} | {:.2} |",
        o / c
    );
    println!(
        "| client peak RSS, 256 MiB file | {:.1} MiB | | |",
        rss_small as f64 / 1024.0
    );
    println!(
        "| client peak RSS, {mib} MiB file | {:.1} MiB | | |",
        rss_big as f64 / 1024.0
    );
    println!(
        "| peak RSS difference | {:.1} MiB | | |",
        (rss_big as f64 - rss_small as f64).abs() / 1024.0
    );
    for (k, o, c) in conc_rows {
        println!(
            "| {k} concurrent uploads of 256 MiB, aggregate MB/s (median of {rounds}) | {o:.1} | {c:.1} | {:.2} |",
            o / c
        );
    }
    drop(sim);
}

async fn run_child(
    base: &str,
    file: &Path,
    token: &SecretString,
    http: &reqwest::Client,
    sha: &str,
) -> (f64, u64) {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("TP_BENCH_CHILD", "1")
        .env("TP_BENCH_SIM", base)
        .env("TP_BENCH_FILE", file)
        .env("TP_BENCH_TOKEN", token.expose_secret())
        .output()
        .expect("run the client child");
    assert!(
        out.status.success(),
        "client child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let publish_id = lines
        .next()
        .unwrap()
        .trim_start_matches("publish_id ")
        .to_string();
    let _window = lines.next();
    let nums: Vec<f64> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    check_sha(http, base, &publish_id, sha).await;
    (nums[0], nums[2] as u64)
}

async fn run_curl(
    client: &Client,
    http: &reqwest::Client,
    base: &str,
    token: &SecretString,
    plan: ChunkPlan,
    chunks: &[(PathBuf, u64, u64)],
    sha: &str,
) -> f64 {
    let init = client
        .init_direct(
            token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &Source::FileUpload(plan),
        )
        .await
        .expect("init");
    let url = init.upload_url.unwrap();
    let mut cmd = curl_command(url.expose(), plan, chunks);
    let started = Instant::now();
    let out = cmd.output().expect("run curl");
    let secs = started.elapsed().as_secs_f64();
    let codes = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {} {}",
        codes,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        codes.lines().last(),
        Some("201"),
        "curl's last chunk completes the upload"
    );
    check_sha(http, base, &init.publish_id, sha).await;
    secs
}

/// k clients at once (child processes); aggregate MB/s over the children's joint upload window.
async fn concurrent_ours(
    k: usize,
    base: &str,
    file: &Path,
    token: &SecretString,
    http: &reqwest::Client,
    sha: &str,
) -> f64 {
    let size = std::fs::metadata(file).unwrap().len();
    let children: Vec<_> = (0..k)
        .map(|_| {
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .env("TP_BENCH_CHILD", "1")
                .env("TP_BENCH_SIM", base)
                .env("TP_BENCH_FILE", file)
                .env("TP_BENCH_TOKEN", token.expose_secret())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut first, mut last) = (i64::MAX, 0i64);
    for child in children {
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut lines = text.lines();
        let publish_id = lines
            .next()
            .unwrap()
            .trim_start_matches("publish_id ")
            .to_string();
        let w: Vec<i64> = lines
            .next()
            .unwrap()
            .trim_start_matches("window ")
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        first = first.min(w[0]);
        last = last.max(w[1]);
        check_sha(http, base, &publish_id, sha).await;
    }
    (k as u64 * size) as f64 / 1e6 / ((last - first) as f64 / 1000.0)
}

/// k curl processes at once, each to its own upload URL (the inits are made first, not timed).
#[allow(clippy::too_many_arguments)]
async fn concurrent_curl(
    k: usize,
    client: &Client,
    http: &reqwest::Client,
    base: &str,
    token: &SecretString,
    plan: ChunkPlan,
    chunks: &[(PathBuf, u64, u64)],
    sha: &str,
) -> f64 {
    let mut inits = Vec::new();
    for _ in 0..k {
        inits.push(
            client
                .init_direct(
                    token,
                    &PostInfo::new(PrivacyLevel::SelfOnly),
                    &Source::FileUpload(plan),
                )
                .await
                .expect("init"),
        );
    }
    let started = Instant::now();
    let children: Vec<_> = inits
        .iter()
        .map(|init| {
            let url = init.upload_url.as_ref().unwrap();
            curl_command(url.expose(), plan, chunks).spawn().unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "curl failed");
    }
    let secs = started.elapsed().as_secs_f64();
    for init in &inits {
        check_sha(http, base, &init.publish_id, sha).await;
    }
    (k as u64 * plan.video_size) as f64 / 1e6 / secs
}

fn curl_command(url: &str, plan: ChunkPlan, chunks: &[(PathBuf, u64, u64)]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body"]);
    for (i, (path, start, len)) in chunks.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "-H",
            "Content-Type: video/mp4",
        ]);
        cmd.arg("-H").arg(format!(
            "Content-Range: bytes {}-{}/{}",
            start,
            start + len - 1,
            plan.video_size
        ));
        cmd.arg("-T").arg(path).arg(url);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

async fn check_sha(http: &reqwest::Client, base: &str, publish_id: &str, sha: &str) {
    let post = common::sim_posts(http, base)
        .await
        .into_iter()
        .find(|p| p["publish_id"] == publish_id)
        .unwrap();
    assert_eq!(post["sha256"], sha, "the simulator received the exact file");
}
