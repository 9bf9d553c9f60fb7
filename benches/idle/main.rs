//! `cargo bench --bench idle`: the daemon at rest: time from start to ready, resident memory, and CPU
//! over a minute.
//!
//! Starts its own `redis-server` and `tiktok-poster sim`, connects one simulated account, then starts
//! `tiktok-poster run` (release build) five times with `NOTIFY_SOCKET` pointing at a datagram socket of
//! its own: start-to-ready is from `spawn` until systemd's `READY=1` arrives (sent once Redis answered and
//! the workers run), median of 5. The last daemon then idles with its watchdog, refresher, reconciler,
//! ingest and workers running: CPU time (utime + stime from `/proc/PID/stat`) over the window and
//! resident memory (`VmRSS`, `VmHWM`) at its end.
//!
//! Options (environment): `TP_IDLE_SECS` (the CPU window, default 60).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../common/mod.rs"]
mod common;
use common::{Proc, TestRedis, bench_client, connect_accounts, env_num, free_port, start_sim};

fn main() {
    if !common::run_by_cargo_bench() {
        println!("idle benchmark: run it with `cargo bench --bench idle`");
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

fn proc_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the state field.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    common::proc_status_kib(&pid.to_string(), field)
}

fn clock_ticks_per_sec() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100)
}

async fn run() {
    let window = env_num("TP_IDLE_SECS", 60u64);
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_tiktok-poster");
    let redis = TestRedis::start(false);
    let redis_url = redis.url();
    let (_sim, sim_base) = start_sim(&[]);
    let key_path = dir.path().join("token.key");
    connect_accounts(&bench_client(&sim_base), &redis_url, &key_path, 1, "idle").await;
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[redis]\nurl = \"{redis_url}\"\n[tiktok]\nclient_key = \"bench\"\nclient_secret = \"bench\"\napi_base = \"{sim_base}\"\nauth_base = \"{sim_base}\"\nredirect_uri = \"http://127.0.0.1:{port}/oauth/callback\"\n\
[http]\nlisten = \"127.0.0.1:{port}\"\n[worker]\nid = \"idle\"\n[video]\nallowed_dirs = [\"{}\"]\n[tokens]\nencryption_key_file = \"{}\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
            dir.path().display(),
            key_path.display()
        ),
    )
    .unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // Drained all along: a full datagram queue would block the daemon's next WATCHDOG=1.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Instant>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok(n) = sock.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                let _ = ready_tx.send(Instant::now());
            }
        }
    });

    let mut ready_ms = Vec::new();
    let mut daemon = None;
    for round in 0..5 {
        let started = Instant::now();
        let child = Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "10000000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("READY=1 within 10 s");
        ready_ms.push(at.duration_since(started).as_secs_f64() * 1000.0);
        if round < 4 {
            // SIGTERM and wait, so the next start finds no live daemon with this id.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let mut p = Proc(child);
            let _ = p.0.wait();
        } else {
            daemon = Some(Proc(child));
        }
    }
    let daemon = daemon.unwrap();
    let pid = daemon.0.id();
    ready_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Let start-up work settle, then measure the window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let hz = clock_ticks_per_sec();
    let t0 = proc_ticks(pid);
    let w0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(window)).await;
    let cpu_secs = (proc_ticks(pid) - t0) as f64 / hz as f64;
    let wall = w0.elapsed().as_secs_f64();
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert!(health.status().is_success(), "the daemon is healthy");
    println!(
        "| start to ready (READY=1), median of 5 (min / max) | {:.0} ms ({:.0} / {:.0}) | < 300 ms |",
        ready_ms[2], ready_ms[0], ready_ms[4]
    );
    println!(
        "| CPU while idle over {window} s | {:.2}% of one core ({cpu_secs:.2} s of CPU in {wall:.1} s) | < 1% |",
        cpu_secs / wall * 100.0
    );
    println!(
        "| resident memory after {} s idle: VmRSS / peak VmHWM | {:.1} MiB / {:.1} MiB | < 25 MiB |",
        window + 5,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
}
