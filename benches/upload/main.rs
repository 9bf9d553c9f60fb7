//! `cargo bench --bench upload`: the whole daemon's FILE_UPLOAD against curl's, over HTTP and HTTPS,
//! side by side in one run.
//!
//! For each protocol the simulator runs as its own process (`sim`, or `sim --tls` with a CA it makes,
//! trusted by the daemon through `[tiktok] ca_file` and by curl through `--cacert`), with its own
//! `redis-server` and the release daemon (`tiktok-poster run`). Then, at 1, 4 and 8 concurrent uploads
//! of one video (`TP_BENCH_MIB`, 1 GiB by default, cut into TikTok's 10,000,000-byte chunks), rounds
//! of two sides in counterbalanced order (A B B A …: ours first in rounds 1, 4, 5, 8, …; curl first in
//! the others):
//! - **ours**: k posts are added to the submit stream at once, one per account; the window runs from
//!   that `XADD` to the simulator's answer to the last final chunk (`uploaded_unix_ms`), and the CPU is
//!   the daemon process's user + system time over the same window (`/proc/PID/stat`, sampled every 5 ms
//!   by this process; the daemon's probe, init and Redis work are in it); the side ends once the posts
//!   are published, so the daemon's tail never overlaps the next side;
//! - **curl**: k curl processes, each PUTting the same chunks (`-T` per chunk file, `--next`, one
//!   connection, `Expect:` removed), to upload URLs of inits made beforehand (not timed); the window runs
//!   from the first process's start to the last one's exit, and the CPU is their user + system time
//!   (this process's `cutime` + `cstime` before and after it waited for them).
//!
//! Throughput is bytes / window; CPU per MB is CPU ms / (bytes / 10^6). Each round gives a ratio of
//! ours to curl's; the median of the per-round ratios is reported with its min and max, beside each
//! side's median and min–max (the run-to-run spread). The timed rounds use `sim --skip-upload-hash` so the
//! simulator's sha256 is not the ceiling; before them, one upload of each side goes to a hashing
//! simulator and is checked against the file's sha256. HTTPS is HTTP/1.1 on both sides (the simulator
//! offers only `http/1.1` by ALPN; curl is run with `--http1.1`).
//!
//! Options (environment): `TP_BENCH_ROUNDS` (default 6), `TP_BENCH_MIB` (default 1024),
//! `TP_BENCH_CONC` (default `1,4,8`), `TP_BENCH_PROTOS` (default `http,https`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tiktok_poster::tiktok::{
    AuthorizeRequest, ChunkPlan, Client, PostInfo, PrivacyLevel, Source, TokenSet,
};
use url::Url;

#[path = "../common/mod.rs"]
mod common;
use common::{Proc, TestRedis, env_num, free_port, sim_client, start_sim_ca};

const MIB: u64 = 1 << 20;
const REDIRECT: &str = "http://127.0.0.1:1/cb";

fn main() {
    // `cargo test --all-targets` runs harness-less benches without `--bench`: do nothing then.
    if !common::run_by_cargo_bench() {
        println!("upload benchmark: run it with `cargo bench --bench upload`");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run());
}

/// Fields of `/proc/<pid>/stat` after the command name (which may hold spaces), 0-based: field 14 of
/// the man page (utime) is index 11.
fn stat_fields(pid: &str) -> Vec<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .collect()
}

/// cutime + cstime of this process: the CPU of every child it has waited for, in clock ticks.
fn reaped_children_ticks() -> u64 {
    let f = stat_fields("self");
    f.get(13).unwrap_or(&0) + f.get(14).unwrap_or(&0)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One side of one round.
#[derive(Clone, Copy, Debug)]
struct Side {
    cpu_ms: f64,
    secs: f64,
    bytes: u64,
}

impl Side {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs
    }
    fn cpu_per_mb(&self) -> f64 {
        self.cpu_ms / (self.bytes as f64 / 1e6)
    }
}

/// A dense copy of a test video of `size` bytes (make_video's is sparse; curl's chunk files are not,
/// so both sides read the same kind of pages), and its sha256.
fn make_dense_video(dir: &Path, size: u64) -> (PathBuf, String) {
    let sparse = dir.join("sparse.mp4");
    common::make_video(&sparse, size);
    let path = dir.join("video.mp4");
    let mut from = std::fs::File::open(&sparse).unwrap();
    let mut to = std::fs::File::create(&path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut to, &buf[..n]).unwrap();
    }
    to.sync_all().unwrap();
    std::fs::remove_file(&sparse).unwrap();
    let sha = common::sha256_file(&path);
    (path, sha)
}

/// The file's chunks as files of their own (for curl's `-T`): `(path, first byte, length)`.
fn cut_chunks(file: &Path, dir: &Path) -> (ChunkPlan, Vec<(PathBuf, u64, u64)>) {
    let size = std::fs::metadata(file).unwrap().len();
    let plan = ChunkPlan::for_size(size).unwrap();
    let mut f = std::fs::File::open(file).unwrap();
    let chunks = (0..plan.total_chunk_count)
        .map(|i| {
            let (start, len) = plan.chunk(i);
            let p = dir.join(format!("chunk{i}"));
            let mut data = vec![0u8; len as usize];
            f.read_exact(&mut data).unwrap();
            std::fs::write(&p, &data).unwrap();
            (p, start, len)
        })
        .collect();
    (plan, chunks)
}

/// One protocol's simulator, Redis and daemon, with accounts connected for every upload to come.
struct Stage {
    base: String,
    ca: Option<PathBuf>,
    client: Client,
    http: reqwest::Client,
    redis: TestRedis,
    daemon: Proc,
    _sim: Proc,
    next_account: usize,
    accounts: usize,
    /// Token of each account, for curl's inits (`a{i}`).
    curl_tokens: Vec<TokenSet>,
}

impl Stage {
    async fn start(
        dir: &Path,
        tls: bool,
        hash: bool,
        accounts: usize,
        curl_uploads: usize,
    ) -> Self {
        let mut flags = vec![
            "--publish-delay-ms",
            "0",
            "--init-rate-per-min",
            "100000",
            "--daily-post-cap",
            "100000",
            "--status-rate-per-min",
            "100000",
            "--creator-info-rate-per-min",
            "100000",
        ];
        if tls {
            flags.push("--tls");
        }
        if !hash {
            flags.push("--skip-upload-hash");
        }
        let (sim, base, ca) = start_sim_ca(&flags);
        let pem = ca.as_ref().map(|p| std::fs::read(p).unwrap());
        let client = sim_client(&base, "bench", "bench", |cfg| {
            cfg.upload_chunk_timeout = Duration::from_secs(120);
            cfg.extra_roots_pem = pem.clone();
        });
        let mut hb = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &pem {
            hb = hb.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
        }
        let http = hb.build().unwrap();
        let redis = TestRedis::start(false);
        let key = dir.join(format!("token-{}.key", free_port()));
        common::connect_accounts_with(&client, http.clone(), &redis.url(), &key, accounts, "up")
            .await;
        let mut curl_tokens = Vec::new();
        for i in 0..curl_uploads.min(8) {
            curl_tokens.push(connect_one(&client, &http, &format!("curl{i}")).await);
        }
        let port = free_port();
        let config = dir.join(format!("config-{port}.toml"));
        let ca_line = ca
            .as_ref()
            .map(|p| format!("ca_file = \"{}\"\n", p.display()))
            .unwrap_or_default();
        std::fs::write(
            &config,
            format!(
                "[redis]\nurl = \"{}\"\n[tiktok]\nclient_key = \"bench\"\nclient_secret = \"bench\"\napi_base = \"{base}\"\nauth_base = \"{base}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\n{ca_line}\
[http]\nlisten = \"127.0.0.1:{port}\"\n[worker]\nconcurrency = 8\nidle_poll_ms = 20\nstatus_interval_ms = 1000\n[video]\npolicy = \"api\"\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n[warmup]\nenabled = false\n[log]\nformat = \"text\"\nlevel = \"warn\"\n",
                redis.url(),
                dir.display(),
                key.display()
            ),
        )
        .unwrap();
        let daemon = common::start_daemon(&config, &dir.join(format!("daemon-{port}.log")));
        common::wait_healthy(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(30),
            "the daemon",
        )
        .await;
        Self {
            base,
            ca,
            client,
            http,
            redis,
            daemon,
            _sim: sim,
            next_account: 0,
            accounts,
            curl_tokens,
        }
    }

    async fn posts(&self) -> Vec<Value> {
        common::sim_posts(&self.http, &self.base).await
    }

    /// k posts through the daemon at once; the window from the `XADD` to the last final chunk's
    /// answer, and the daemon's CPU over it.
    async fn ours(&mut self, k: usize, video: &Path, size: u64) -> (Side, Vec<String>) {
        assert!(
            self.next_account + k <= self.accounts,
            "not enough accounts"
        );
        let users: Vec<String> = (self.next_account..self.next_account + k)
            .map(|i| format!("up{i}"))
            .collect();
        let accounts: Vec<String> = (self.next_account..self.next_account + k)
            .map(|i| format!("a{i}"))
            .collect();
        self.next_account += k;
        let pid = self.daemon.0.id();
        // The daemon's CPU, sampled every 5 ms with the time of the sample.
        let samples: Arc<Mutex<Vec<(i64, f64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t = common::proc_cpu_secs(pid);
                    samples.lock().unwrap().push((now_ms(), t));
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let mut conn = self.redis.conn().await;
        let mut pipe = redis::pipe();
        for (n, account) in accounts.iter().enumerate() {
            let id = format!("{account}-{n}");
            pipe.xadd(
                "tiktok-poster:submit",
                "*",
                &[
                    ("id", id.as_str()),
                    ("account", account.as_str()),
                    ("video", video.to_str().unwrap()),
                    ("title", "bench"),
                    ("privacy_level", "SELF_ONLY"),
                ],
            )
            .ignore();
        }
        let cpu0 = common::proc_cpu_secs(pid);
        let t0 = now_ms();
        let _: () = pipe.query_async(&mut conn).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(600);
        let (end, ids) = loop {
            // The end comes from the simulator's clock, not from this poll: polling rarely keeps its
            // load off the simulator.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let posts = self.posts().await;
            let mine: Vec<&Value> = posts
                .iter()
                .filter(|p| users.iter().any(|u| p["username"] == u.as_str()))
                .collect();
            let done: Vec<i64> = mine
                .iter()
                .filter_map(|p| p["uploaded_unix_ms"].as_i64())
                .collect();
            if done.len() == k {
                for p in &mine {
                    assert_eq!(p["bytes"].as_u64(), Some(size), "every byte arrived");
                }
                let ids = mine
                    .iter()
                    .map(|p| p["publish_id"].as_str().unwrap().to_string())
                    .collect();
                break (*done.iter().max().unwrap(), ids);
            }
            assert!(
                Instant::now() < deadline,
                "the daemon's uploads did not finish: {mine:?}"
            );
        };
        // Let the sampler pass the end of the window, then take the first sample at or after it.
        while samples.lock().unwrap().last().is_none_or(|s| s.0 < end) {
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        let cpu1 = samples
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.0 >= end)
            .unwrap()
            .1;
        // The daemon's tail (status, publish) ends before the next side starts, so it is neither
        // counted in the next window nor competing with curl for the cores.
        let post_ids: Vec<String> = accounts
            .iter()
            .enumerate()
            .map(|(n, a)| format!("{a}-{n}"))
            .collect();
        loop {
            let mut p = redis::pipe();
            for id in &post_ids {
                p.hget(format!("tiktok-poster:post:{id}"), "state");
            }
            let states: Vec<Option<String>> = p.query_async(&mut conn).await.unwrap();
            if states.iter().all(|s| s.as_deref() == Some("published")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon's posts were not published: {states:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let side = Side {
            cpu_ms: (cpu1 - cpu0) * 1000.0,
            secs: (end - t0) as f64 / 1000.0,
            bytes: k as u64 * size,
        };
        (side, ids)
    }

    /// k curl processes at once, to inits made first (not timed).
    async fn curl(
        &self,
        k: usize,
        plan: ChunkPlan,
        chunks: &[(PathBuf, u64, u64)],
    ) -> (Side, Vec<String>) {
        let mut inits = Vec::new();
        for token in self.curl_tokens.iter().take(k) {
            inits.push(
                self.client
                    .init_direct(
                        &token.access_token,
                        &PostInfo::new(PrivacyLevel::SelfOnly),
                        &Source::FileUpload(plan),
                    )
                    .await
                    .expect("init for curl"),
            );
        }
        assert_eq!(inits.len(), k, "one curl account per concurrent upload");
        let cmds: Vec<Command> = inits
            .iter()
            .map(|i| {
                curl_command(
                    i.upload_url.as_ref().unwrap().expose(),
                    plan,
                    chunks,
                    self.ca.as_deref(),
                )
            })
            .collect();
        let ticks0 = reaped_children_ticks();
        let started = Instant::now();
        let handles: Vec<_> = cmds
            .into_iter()
            .map(|mut c| {
                let mut child = c.spawn().expect("run curl");
                std::thread::spawn(move || {
                    let mut codes = String::new();
                    child
                        .stdout
                        .take()
                        .unwrap()
                        .read_to_string(&mut codes)
                        .unwrap();
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    let status = child.wait().unwrap();
                    (Instant::now(), status, codes, err)
                })
            })
            .collect();
        let mut end = started;
        for h in handles {
            let (at, status, codes, err) = h.join().unwrap();
            assert!(status.success(), "curl failed: {codes} {err}");
            assert_eq!(
                codes.lines().last(),
                Some("201"),
                "curl's last chunk completes the upload: {codes} {err}"
            );
            end = end.max(at);
        }
        // No other child of this process is waited for meanwhile: the simulator and the daemon run
        // until the end, and the other side never overlaps this one.
        let cpu_ms = (reaped_children_ticks() - ticks0) as f64 * 1000.0 / common::clk_tck();
        let ids: Vec<String> = inits.iter().map(|i| i.publish_id.clone()).collect();
        let posts = self.posts().await;
        for id in &ids {
            let p = posts
                .iter()
                .find(|p| p["publish_id"] == id.as_str())
                .unwrap();
            assert_eq!(
                p["bytes"].as_u64(),
                Some(plan.video_size),
                "every byte arrived"
            );
        }
        let side = Side {
            cpu_ms,
            secs: end.duration_since(started).as_secs_f64(),
            bytes: k as u64 * plan.video_size,
        };
        (side, ids)
    }
}

/// One creator connected through the simulator's OAuth, for curl's inits.
async fn connect_one(client: &Client, http: &reqwest::Client, username: &str) -> TokenSet {
    let auth = client.authorize_url(&AuthorizeRequest {
        scopes: vec!["video.publish".into(), "video.upload".into()],
        redirect_uri: REDIRECT.into(),
        state: "s".into(),
        pkce_challenge: None,
        extra: vec![("sim_username".into(), username.into())],
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
    client
        .exchange_code(&code, REDIRECT, None)
        .await
        .expect("exchange")
}

fn curl_command(
    url: &str,
    plan: ChunkPlan,
    chunks: &[(PathBuf, u64, u64)],
    ca: Option<&Path>,
) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--http1.1"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    for (i, (path, start, len)) in chunks.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
            if let Some(ca) = ca {
                cmd.arg("--cacert").arg(ca);
            }
        }
        cmd.args([
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}\\n",
            "-H",
            "Expect:",
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

fn min_max(v: &[f64]) -> (f64, f64) {
    (
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// "median (min–max)".
fn spread(v: &[f64], digits: usize) -> String {
    let (lo, hi) = min_max(v);
    format!("{:.d$} ({lo:.d$}–{hi:.d$})", common::median(v), d = digits)
}

async fn run() {
    let rounds: usize = env_num("TP_BENCH_ROUNDS", 6);
    let mib: u64 = env_num("TP_BENCH_MIB", 1024);
    let conc: Vec<usize> = std::env::var("TP_BENCH_CONC")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .map(|v| v.trim().parse().expect("TP_BENCH_CONC: numbers"))
        .collect();
    let protos: Vec<String> = std::env::var("TP_BENCH_PROTOS")
        .unwrap_or_else(|_| "http,https".into())
        .split(',')
        .map(|v| v.trim().to_string())
        .collect();
    assert!(
        conc.iter().all(|&k| (1..=8).contains(&k)),
        "1 to 8 uploads at once"
    );
    if Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("curl is not installed; the baseline cannot run (apt-get install curl)");
        std::process::exit(1);
    }
    let curl_version = Command::new("curl")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    common::clk_tck();
    let size = mib * MIB;
    let (video, sha) = make_dense_video(dir.path(), size);
    let (plan, chunks) = cut_chunks(&video, dir.path());
    common::print_cpu("upload");
    println!(
        "{mib} MiB video, {} chunks of {} bytes; {curl_version}",
        plan.total_chunk_count, plan.chunk_size
    );
    println!(
        "per protocol and concurrency: {}",
        common::order_note(rounds)
    );
    let mut table: Vec<String> = Vec::new();
    for proto in &protos {
        let tls = match proto.as_str() {
            "http" => false,
            "https" => true,
            other => panic!("TP_BENCH_PROTOS: {other:?} is neither http nor https"),
        };
        // The check: one upload of each side to a hashing simulator.
        {
            let mut stage = Stage::start(dir.path(), tls, true, 1, 1).await;
            let (_, ours_ids) = stage.ours(1, &video, size).await;
            let (_, curl_ids) = stage.curl(1, plan, &chunks).await;
            let posts = stage.posts().await;
            for id in ours_ids.iter().chain(&curl_ids) {
                let p = posts
                    .iter()
                    .find(|p| p["publish_id"] == id.as_str())
                    .unwrap();
                assert_eq!(
                    p["sha256"],
                    sha.as_str(),
                    "{proto}: the simulator received the exact file"
                );
            }
            println!("{proto}: the daemon's and curl's uploads both arrived intact (sha256 {sha})");
        }
        let total_ours: usize = conc.iter().sum::<usize>() * rounds;
        let mut stage = Stage::start(dir.path(), tls, false, total_ours, 8).await;
        let rss_before = common::proc_status_kib(&stage.daemon.0.id().to_string(), "VmRSS:");
        for &k in &conc {
            let mut ours = Vec::new();
            let mut curls = Vec::new();
            for r in 0..rounds {
                let ours_first = common::ours_first(r);
                let (o, c) = if ours_first {
                    let o = stage.ours(k, &video, size).await.0;
                    let c = stage.curl(k, plan, &chunks).await.0;
                    (o, c)
                } else {
                    let c = stage.curl(k, plan, &chunks).await.0;
                    let o = stage.ours(k, &video, size).await.0;
                    (o, c)
                };
                println!(
                    "{proto} k={k} round {} ({}): ours {:7.1} MB/s {:.3} ms CPU/MB ({:.0} ms in {:.3} s) | curl {:7.1} MB/s {:.3} ms CPU/MB ({:.0} ms in {:.3} s) | ratio MB/s {:.3}, CPU/MB {:.3}",
                    r + 1,
                    if ours_first {
                        "ours first"
                    } else {
                        "curl first"
                    },
                    o.mbps(),
                    o.cpu_per_mb(),
                    o.cpu_ms,
                    o.secs,
                    c.mbps(),
                    c.cpu_per_mb(),
                    c.cpu_ms,
                    c.secs,
                    o.mbps() / c.mbps(),
                    o.cpu_per_mb() / c.cpu_per_mb(),
                );
                ours.push(o);
                curls.push(c);
            }
            let pick = |v: &[Side], f: fn(&Side) -> f64| v.iter().map(f).collect::<Vec<f64>>();
            let tput_ratio: Vec<f64> = ours
                .iter()
                .zip(&curls)
                .map(|(o, c)| o.mbps() / c.mbps())
                .collect();
            let cpu_ratio: Vec<f64> = ours
                .iter()
                .zip(&curls)
                .map(|(o, c)| o.cpu_per_mb() / c.cpu_per_mb())
                .collect();
            table.push(format!(
                "| {proto} | {k} | {} | {} | {} | {} | {} | {} |",
                spread(&pick(&ours, Side::mbps), 1),
                spread(&pick(&curls, Side::mbps), 1),
                spread(&tput_ratio, 3),
                spread(&pick(&ours, Side::cpu_per_mb), 3),
                spread(&pick(&curls, Side::cpu_per_mb), 3),
                spread(&cpu_ratio, 3),
            ));
        }
        let pid = stage.daemon.0.id().to_string();
        println!(
            "{proto}: daemon RSS before the rounds {:.1} MiB, after {:.1} MiB, peak (VmHWM) {:.1} MiB",
            rss_before as f64 / 1024.0,
            common::proc_status_kib(&pid, "VmRSS:") as f64 / 1024.0,
            common::proc_status_kib(&pid, "VmHWM:") as f64 / 1024.0,
        );
    }
    println!();
    println!(
        "medians of {rounds} rounds (min–max); ratios are the median of the per-round ratios, ours / curl"
    );
    println!(
        "| protocol | uploads at once | ours MB/s | curl MB/s | MB/s ratio | ours CPU ms/MB | curl CPU ms/MB | CPU/MB ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in table {
        println!("{row}");
    }
}
