//! A `redis-server` of the test's (or benchmark's) own, on a free port in a temporary directory, never
//! the Redis on 6379: tests kill it, restart it, empty it and change its settings.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a start or restart may take before the server is taken for broken; generous, as a restart
/// replays the append-only file (a long soak leaves a large one).
const READY_WITHIN: Duration = Duration::from_secs(30);

/// TLS on the server's only port (`--port 0 --tls-port P`).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// The server's certificate and key.
    pub cert: super::CertFiles,
    /// The CA client certificates must chain to (`--tls-ca-cert-file`).
    pub ca: PathBuf,
    /// `--tls-auth-clients yes`: a client without a certificate is refused.
    pub auth_clients: bool,
    /// The CA and client certificate of the test's own connections; `None` when the server's
    /// certificate is one the test means to be refused (then "ready" is a TCP connect).
    pub client: Option<(PathBuf, Option<super::CertFiles>)>,
}

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
    /// TLS instead of a plain port.
    tls: Option<ServerTls>,
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
            tls: None,
        };
        r.spawn();
        r
    }

    /// A server (append-only) that speaks only TLS, on a free port.
    pub fn start_tls(tls: ServerTls) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Self {
            child: None,
            port: super::free_port(),
            dir,
            appendonly: true,
            extra: Vec::new(),
            auth: String::new(),
            tls: Some(tls),
        };
        r.spawn();
        r
    }

    /// `redis-server`'s port arguments: the plain port, or TLS on the port and no plain one.
    fn port_args(&self) -> Vec<String> {
        let Some(t) = &self.tls else {
            return vec!["--port".into(), self.port.to_string()];
        };
        let mut a = vec!["--port".into(), "0".into(), "--tls-port".into()];
        a.push(self.port.to_string());
        for (flag, path) in [
            ("--tls-cert-file", &t.cert.cert),
            ("--tls-key-file", &t.cert.key),
            ("--tls-ca-cert-file", &t.ca),
        ] {
            a.push(flag.into());
            a.push(path.display().to_string());
        }
        a.push("--tls-auth-clients".into());
        a.push(if t.auth_clients { "yes" } else { "no" }.into());
        a
    }

    /// Whether the server answers: PING through the test's own target, or for a server whose
    /// certificate the test means to be refused, a TCP connect.
    fn answers(&self) -> bool {
        if self.tls.as_ref().is_some_and(|t| t.client.is_none()) {
            return std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        self.target()
            .client()
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Where the test's own connections go, with the TLS files they trust and present.
    pub fn target(&self) -> tiktok_poster::db::Target {
        let mut t = tiktok_poster::db::Target::from(&self.url());
        if let Some((ca, client)) = self.tls.as_ref().and_then(|t| t.client.clone()) {
            t.ca_file = Some(ca);
            t.client_cert_file = client.as_ref().map(|c| c.cert.clone());
            t.client_key_file = client.map(|c| c.key);
        }
        t
    }

    /// Starts the server and waits until it answers PING (a server still loading its append-only file
    /// answers `LOADING`, so this waits that out too).
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(self.port_args())
            .args(["--bind", "127.0.0.1", "--save", ""])
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
        let deadline = std::time::Instant::now() + READY_WITHIN;
        loop {
            if self.answers() {
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
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}127.0.0.1:{}", self.auth, self.port)
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
        self.target()
            .client()
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
