//! What the benchmark programs share: their own `redis-server`, the simulator as a process, simulated
//! accounts connected through the simulator's OAuth endpoints, and small helpers.

#![allow(dead_code, reason = "each benchmark uses a part")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use secrecy::SecretString;
use tiktok_poster::accounts::{Accounts, TokenKey};
use tiktok_poster::db::Keys;
use tiktok_poster::tiktok::{AuthorizeRequest, Client, ClientConfig};
use url::Url;

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A number from the environment, or the default.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// True when run by `cargo bench` (it passes `--bench`); `cargo test --all-targets` runs harness-less
/// benches without it, and they should then do nothing.
pub fn run_by_cargo_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A `redis-server` of the benchmark's own (no persistence), and its URL.
pub fn start_redis(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    (Proc(child), format!("redis://127.0.0.1:{port}"))
}

/// A connection to it, once it answers.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    loop {
        if let Ok(c) = client.get_multiplexed_async_connection().await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `tiktok-poster sim` with these flags on a free port, and its base URL.
pub fn start_sim(flags: &[&str]) -> (Proc, String) {
    let mut sim = Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .args(["sim", "--listen", "127.0.0.1:0"])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulator");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sim.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    (Proc(sim), base)
}

/// A client for the simulator.
pub fn sim_client(sim_base: &str) -> Client {
    let base = Url::parse(sim_base).unwrap();
    let mut cfg = ClientConfig::new(
        base.clone(),
        base,
        "bench",
        SecretString::from("bench".to_string()),
    );
    cfg.upload_chunk_timeout = Duration::from_secs(120);
    Client::new(cfg).unwrap()
}

/// Connects `n` simulated creators as accounts `a0`…: a grant from the simulator's own OAuth endpoints,
/// stored sealed under a new key at `key_path`, as `accounts connect` would.
pub async fn connect_accounts(
    redis_url: &str,
    sim_base: &str,
    key_path: &Path,
    n: usize,
    user_prefix: &str,
) {
    let key = TokenKey::generate_file(key_path).unwrap();
    let tt = sim_client(sim_base);
    let manager = tiktok_poster::db::connect(redis_url).await.unwrap();
    let accounts = Accounts::new(manager, Keys::new("tiktok-poster"), key, tt.clone());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (tt, http, accounts) = (tt.clone(), http.clone(), accounts.clone());
            async move {
                let username = format!("{user_prefix}{i}");
                // Retried: a simulator with background faults fails some OAuth calls on purpose.
                for attempt in 0.. {
                    let url = tt.authorize_url(&AuthorizeRequest {
                        scopes: vec![
                            "user.info.basic".into(),
                            "video.publish".into(),
                            "video.upload".into(),
                        ],
                        redirect_uri: "http://127.0.0.1:1/cb".into(),
                        state: "s".into(),
                        pkce_challenge: None,
                        extra: vec![("sim_username".into(), username.clone())],
                    });
                    let code = match http.get(url).send().await {
                        Ok(resp) => resp
                            .headers()
                            .get("location")
                            .and_then(|l| l.to_str().ok())
                            .and_then(|l| Url::parse(l).ok())
                            .and_then(|u| {
                                u.query_pairs()
                                    .find(|(k, _)| k == "code")
                                    .map(|(_, v)| v.to_string())
                            }),
                        Err(_) => None,
                    };
                    let grant = match code {
                        Some(code) => tt
                            .exchange_code(&code, "http://127.0.0.1:1/cb", None)
                            .await
                            .ok(),
                        None => None,
                    };
                    if let Some(grant) = grant
                        && accounts
                            .save_grant(&format!("a{i}"), &grant, &username)
                            .await
                            .is_ok()
                    {
                        break;
                    }
                    assert!(attempt < 50, "could not connect account {i}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A `kB` field (`VmRSS:`, `VmHWM:`) of `/proc/<pid>/status`; `pid` "self" for this process. 0 when
/// the process is gone.
pub fn proc_status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
