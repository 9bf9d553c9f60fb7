//! The daemon under test: its own `redis-server` on a free port, the simulator on port 0, and
//! `tiktok-poster run` in-process with settings built in code and millisecond timings.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use tiktok_poster::config::Settings;
use tiktok_poster::sim::SimConfig;
use tokio_util::sync::CancellationToken;

use crate::support::{TestRedis, TestSim, free_port, wait_healthy};

/// A running daemon with its Redis and simulator.
pub struct TestApp {
    pub redis: TestRedis,
    pub sim: TestSim,
    pub settings: Settings,
    pub base: String,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The test's own connection through the daemon's settings (sentinels included), opened at the
    /// first use; only on sentinels, where `redis` is not the daemon's Redis.
    followed: tokio::sync::OnceCell<tiktok_poster::db::Conn>,
}

impl TestApp {
    pub async fn spawn(
        sim_tweak: impl FnOnce(&mut SimConfig),
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::spawn_on(TestRedis::start(true), sim_tweak, tweak).await
    }

    /// The same, on a Redis the test started its own way.
    pub async fn spawn_on(
        redis: TestRedis,
        sim_tweak: impl FnOnce(&mut SimConfig),
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let sim = TestSim::spawn(sim_tweak).await;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("token.key");
        tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
        let port = free_port();
        let mut s = Settings::default();
        let target = redis.target();
        s.redis.url = target.url;
        s.redis.ca_file = target.ca_file;
        s.redis.client_cert_file = target.client_cert_file;
        s.redis.client_key_file = target.client_key_file;
        s.tiktok.client_key = "test-client-key".into();
        s.tiktok.client_secret = Some(tiktok_poster::config::Secret(secrecy::SecretString::from(
            "test-secret".to_string(),
        )));
        s.tiktok.api_base = sim.sim.base_url.clone();
        s.tiktok.auth_base = sim.sim.base_url.clone();
        s.tiktok.redirect_uri = format!("http://127.0.0.1:{port}/oauth/callback");
        s.tiktok.request_timeout_secs = 5;
        s.http.listen = format!("127.0.0.1:{port}");
        s.tokens.encryption_key_file = key;
        s.worker.concurrency = 4;
        s.worker.lease_secs = 3;
        s.worker.idle_poll_ms = 50;
        s.worker.backoff_base_ms = 100;
        s.worker.backoff_max_secs = 2;
        s.worker.status_interval_ms = 50;
        s.worker.shutdown_grace_secs = 5;
        s.tokens.refresh_check_ms = 100;
        // Test videos are a real 1.2 s MP4 padded to the size a test needs (support::make_video), so
        // their overall bitrate is far above the brief's 20 Mbps; the `api` policy has no bitrate
        // rule. tests/it/media.rs covers the `brief` policy at submission.
        s.video.policy = tiktok_poster::config::Policy::Api;
        // Videos come from the test's own directory and the fixtures, nowhere else.
        s.video.allowed_dirs = vec![dir.path().to_path_buf(), crate::support::fixture("")];
        // Tests post many times for a fresh account; the ramp has its own tests (tests/it/safety.rs).
        s.warmup.enabled = false;
        tweak(&mut s);
        s.validate().unwrap();
        let mut app = Self {
            redis,
            sim,
            settings: s,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            shutdown: CancellationToken::new(),
            task: None,
            followed: tokio::sync::OnceCell::new(),
        };
        app.start_daemon().await;
        app
    }

    /// The same on a replicated Redis behind `sentinels`: the daemon finds the primary through them.
    /// The app's own `redis` then only stands by (it is not the daemon's); `xadd`, `post` and
    /// `wait_state` go through a connection that follows the primary, as the daemon's do.
    pub async fn spawn_on_sentinels(
        sentinels: &crate::support::TestSentinels,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::spawn_on(
            TestRedis::start(false),
            |_| {},
            |s| {
                sentinels.configure(s);
                tweak(s);
            },
        )
        .await
    }

    /// A connection to the daemon's Redis that follows the primary (sentinels only).
    async fn followed(&self) -> tiktok_poster::db::Conn {
        self.followed
            .get_or_init(|| async {
                tiktok_poster::db::connect(self.settings.redis_target())
                    .await
                    .unwrap()
            })
            .await
            .clone()
    }

    fn on_sentinels(&self) -> bool {
        !self.settings.redis.sentinels.is_empty()
    }

    /// Starts another daemon on the same Redis (its own port and worker id); stopped with the returned
    /// token.
    pub async fn spawn_sibling(
        &self,
        id: &str,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let (token, task, _) = self.spawn_sibling_at(id).await;
        (token, task)
    }

    /// [`Self::spawn_sibling`], also giving the sibling's base URL (`http://127.0.0.1:PORT`).
    pub async fn spawn_sibling_at(
        &self,
        id: &str,
    ) -> (
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
        String,
    ) {
        let mut s = self.settings.clone();
        let port = free_port();
        s.http.listen = format!("127.0.0.1:{port}");
        s.worker.id = id.to_string();
        let token = CancellationToken::new();
        let task = tokio::spawn(tiktok_poster::daemon::run(s, token.clone()));
        wait_healthy(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(10),
            "a sibling daemon's /healthz",
        )
        .await;
        (token, task, format!("http://127.0.0.1:{port}"))
    }

    pub async fn start_daemon(&mut self) {
        self.shutdown = CancellationToken::new();
        let task = tokio::spawn(tiktok_poster::daemon::run(
            self.settings.clone(),
            self.shutdown.clone(),
        ));
        self.task = Some(task);
        wait_healthy(
            &format!("{}/healthz", self.base),
            Duration::from_secs(10),
            "the daemon's /healthz",
        )
        .await;
    }

    /// Waits up to `within` for the daemon to stop on its own, and returns how it stopped.
    pub async fn daemon_stops_by_itself(&mut self, within: Duration) -> anyhow::Result<()> {
        let task = self.task.take().expect("the daemon runs");
        tokio::time::timeout(within, task)
            .await
            .expect("the daemon stops by itself in time")
            .unwrap()
    }

    /// Stops the daemon gracefully (as SIGTERM does) and waits for it.
    pub async fn stop_daemon(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    /// Connects a simulated creator as account `name` through the daemon's Connect page.
    pub async fn connect(&self, name: &str, private: bool) {
        let http = self.sim.following_client();
        let user = format!("{name}_creator");
        crate::support::connect_via_daemon_with(&http, &self.base, name, &user, private).await;
    }

    /// `GET /healthz`: its status and body.
    pub async fn healthz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("{}/healthz", self.base))
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// The body of `GET path` on the daemon's main listener (`/metrics`, `/`, …).
    pub async fn get_text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn xadd(&self, fields: &[(&str, &str)]) -> String {
        if self.on_sentinels() {
            // A connection cut by a failover fails once; the next try goes to the new primary.
            let mut conn = self.followed().await;
            for _ in 0..50 {
                match conn.xadd(self.keys().submit(), "*", fields).await {
                    Ok(id) => return id,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            panic!("no Redis primary took the submission for 10 s");
        }
        let mut conn = self.redis.conn().await;
        conn.xadd(self.keys().submit(), "*", fields).await.unwrap()
    }

    /// The key names of this app's namespace.
    pub fn keys(&self) -> tiktok_poster::db::Keys {
        tiktok_poster::db::Keys::new(&self.settings.redis.namespace)
    }

    /// The post ledger over this app's Redis.
    pub async fn ledger(&self) -> tiktok_poster::posts::Ledger {
        let conn = tiktok_poster::db::connect(self.redis.target())
            .await
            .unwrap();
        tiktok_poster::posts::Ledger::new(conn, self.keys())
    }

    pub async fn post(&self, id: &str) -> std::collections::HashMap<String, String> {
        if self.on_sentinels() {
            // Across a failover a read may fail once; the next one goes to the new primary.
            let mut conn = self.followed().await;
            for _ in 0..50 {
                match conn.hgetall(self.keys().post(id)).await {
                    Ok(h) => return h,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
            panic!("no Redis primary answered for 10 s");
        }
        let mut conn = self.redis.conn().await;
        conn.hgetall(self.keys().post(id)).await.unwrap()
    }

    /// Waits until the post reaches one of `states`; returns its fields.
    pub async fn wait_state(
        &self,
        id: &str,
        states: &[&str],
        timeout: Duration,
    ) -> std::collections::HashMap<String, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let p = self.post(id).await;
            if p.get("state").is_some_and(|s| states.contains(&s.as_str())) {
                return p;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for post {id} to reach {states:?}; it is {p:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn rejected(&self) -> Vec<std::collections::HashMap<String, String>> {
        let mut conn = self.redis.conn().await;
        let reply: redis::streams::StreamRangeReply =
            conn.xrange_all(self.keys().rejected()).await.unwrap();
        reply
            .ids
            .into_iter()
            .map(|e| {
                e.map
                    .into_iter()
                    .map(|(k, v)| (k, redis::from_redis_value::<String>(v).unwrap_or_default()))
                    .collect()
            })
            .collect()
    }

    /// Simulator posts whose video hash is `sha`.
    pub async fn sim_posts_with(&self, sha: &str) -> Vec<Value> {
        self.sim
            .posts()
            .await
            .into_iter()
            .filter(|p| p["sha256"] == sha)
            .collect()
    }

    /// Makes a video `name` of `size` bytes and submits it for `account` (SELF_ONLY, now) with XADD;
    /// returns the post id (the entry id) and the video's sha256.
    pub async fn submit(&self, account: &str, name: &str, size: u64) -> (String, String) {
        let (video, sha) = self.video(name, size);
        let id = self
            .xadd(&[
                ("account", account),
                ("video", path_str(&video)),
                ("privacy_level", "SELF_ONLY"),
            ])
            .await;
        (id, sha)
    }

    /// A configuration file for the binary's commands against this app (its Redis, simulator, client
    /// and token key), videos allowed from `video_dirs` (the app's own directory when empty), plus
    /// `extra` TOML sections; returns its path.
    pub fn cli_config(&self, name: &str, video_dirs: &[&Path], extra: &str) -> PathBuf {
        let dirs: Vec<String> = if video_dirs.is_empty() {
            vec![format!("{:?}", self.dir.path().display().to_string())]
        } else {
            video_dirs
                .iter()
                .map(|d| format!("{:?}", d.display().to_string()))
                .collect()
        };
        let cfg = self.dir.path().join(format!("{name}.toml"));
        let r = &self.settings.redis;
        let mut redis = format!("namespace = {:?}\n", r.namespace);
        for (key, file) in [
            ("ca_file", &r.ca_file),
            ("client_cert_file", &r.client_cert_file),
            ("client_key_file", &r.client_key_file),
        ] {
            if let Some(f) = file {
                redis.push_str(&format!("{key} = {:?}\n", f.display().to_string()));
            }
        }
        std::fs::write(
            &cfg,
            format!(
                "[redis]\nurl = \"{}\"\n{redis}[tiktok]\nclient_key = \"test-client-key\"\nclient_secret = \"test-secret\"\napi_base = \"{sim}\"\nauth_base = \"{sim}\"\nredirect_uri = \"{}\"\n[video]\nallowed_dirs = [{}]\n[tokens]\nencryption_key_file = \"{}\"\n{extra}",
                self.redis.url(),
                self.settings.tiktok.redirect_uri,
                dirs.join(", "),
                self.settings.tokens.encryption_key_file.display(),
                sim = self.sim.sim.base_url,
            ),
        )
        .unwrap();
        cfg
    }

    pub fn video(&self, name: &str, size: u64) -> (PathBuf, String) {
        let p = self.dir.path().join(name);
        let sha = crate::support::make_video(&p, size);
        (p, sha)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the binary with `--config cfg` (blocking: only for commands that do not call the in-process
/// simulator); its exit code, stdout and stderr.
pub fn run_cli(cfg: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
