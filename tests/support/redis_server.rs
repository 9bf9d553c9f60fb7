//! A `redis-server` of the test's (or benchmark's) own, on a free port in a temporary directory, never
//! the Redis on 6379: tests kill it, restart it, empty it and change its settings.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a start or restart may take before the server is taken for broken; generous, as a restart
/// replays the append-only file (a long soak leaves a large one).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running `redis-server`; killed on drop.
pub struct TestRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    appendonly: bool,
    /// Extra `redis-server` arguments (an ACL file, say).
    extra: Vec<String>,
    /// `user:password@` for every connection, when the server has ACL users.
    auth: String,
}

impl TestRedis {
    /// A server with append-only persistence (fsync on every write, so a SIGKILL loses nothing
    /// acknowledged) or none at all.
    pub fn start(appendonly: bool) -> Self {
        Self::start_with(appendonly, Vec::new(), "")
    }

    /// A server with extra arguments, reached as `auth` (`user:password@`, or empty).
    pub fn start_with(appendonly: bool, extra: Vec<String>, auth: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Self {
            child: None,
            port: super::free_port(),
            dir,
            appendonly,
            extra,
            auth: auth.to_string(),
        };
        r.spawn();
        r
    }

    /// Starts the server and waits until it answers PING (a server still loading its append-only file
    /// answers `LOADING`, so this waits that out too).
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args([
                "--appendfsync",
                "always",
                "--maxmemory-policy",
                "noeviction",
                "--enable-debug-command",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let url = self.url();
        let deadline = std::time::Instant::now() + READY_WITHIN;
        loop {
            let ok = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}127.0.0.1:{}", self.auth, self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server and starts it again on the same port with nothing on disk: a Redis that came
    /// back empty.
    pub fn restart_empty(&mut self) {
        self.kill();
        for entry in std::fs::read_dir(self.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
        self.spawn();
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A connection for the caller's own commands; patient enough to wait out a `DEBUG SLEEP` or a
    /// benchmark's large pipeline.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
