//! The simulator for a test or a benchmark, and a TikTok client pointed at it.
//!
//! Two ways to run it, for two needs: in-process ([`TestSim`], millisecond timings, a test tweaks its
//! [`SimConfig`] in code), or as the `tiktok-poster sim` binary ([`start_sim`], for benchmarks, whose
//! memory and CPU figures must not include the simulator's).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tiktok_poster::sim::{self, SimConfig, SimHandle};
use tiktok_poster::tiktok::{AuthorizeRequest, Client, ClientConfig, TokenSet};
use url::Url;

use super::Proc;

/// A TikTok client for the simulator at `base_url` (it serves both the API and the authorize page),
/// with the caller's changes to its settings.
pub fn sim_client(
    base_url: &str,
    client_key: &str,
    client_secret: &str,
    tweak: impl FnOnce(&mut ClientConfig),
) -> Client {
    let base = Url::parse(base_url).unwrap();
    let mut cfg = ClientConfig::new(
        base.clone(),
        base,
        client_key,
        SecretString::from(client_secret.to_string()),
    );
    tweak(&mut cfg);
    Client::new(cfg).unwrap()
}

/// `tiktok-poster sim` with these flags on a free port (it prints the address it bound), and its base
/// URL.
pub fn start_sim(flags: &[&str]) -> (Proc, String) {
    let (sim, base, _) = start_sim_ca(flags);
    (sim, base)
}

/// [`start_sim`], and the CA certificate file it names on stdout when `--tls` is among the flags.
pub fn start_sim_ca(flags: &[&str]) -> (Proc, String, Option<PathBuf>) {
    let mut sim = Proc(
        Command::new(env!("CARGO_BIN_EXE_tiktok-poster"))
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator"),
    );
    let mut out = std::io::BufReader::new(sim.0.stdout.take().unwrap());
    let mut ca = None;
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "the simulator exited before it printed its address");
        let last = line.trim().rsplit(' ').next().unwrap_or("").to_string();
        if line.contains("CA certificate at") {
            ca = Some(PathBuf::from(last));
        } else if line.contains("listening on") {
            return (sim, last, ca);
        }
    }
}

/// The simulator's own record of its posts (`GET /_sim/posts`), as TikTok would see them.
pub async fn sim_posts(http: &reqwest::Client, base_url: &str) -> Vec<Value> {
    let v: Value = http
        .get(format!("{base_url}/_sim/posts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["posts"]
        .as_array()
        .cloned()
        .expect("the simulator lists its posts")
}

/// The simulator's counters (`GET /_sim/stats`): requests, errors, refreshes, bytes received.
pub async fn sim_stats(http: &reqwest::Client, base_url: &str) -> Value {
    http.get(format!("{base_url}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A running simulator, a client for it, and a plain HTTP client for the inspection endpoints.
pub struct TestSim {
    pub sim: SimHandle,
    pub client: Client,
    pub http: reqwest::Client,
}

impl TestSim {
    /// A simulator with millisecond timings (publish delay 50 ms) and the given changes.
    pub async fn spawn(tweak: impl FnOnce(&mut SimConfig)) -> Self {
        let mut cfg = SimConfig {
            publish_delay_ms: 50,
            ..SimConfig::default()
        };
        tweak(&mut cfg);
        let sim = sim::spawn(cfg).await.expect("simulator binds a free port");
        // With `tls`, the test's clients trust the simulator's CA, as `[tiktok] ca_file` makes the
        // daemon's do.
        let pem = sim.ca_file.as_ref().map(|p| std::fs::read(p).unwrap());
        let client = sim_client(&sim.base_url, "test-client-key", "test-secret", |cc| {
            cc.request_timeout = Duration::from_secs(10);
            cc.upload_chunk_timeout = Duration::from_secs(60);
            cc.extra_roots_pem = pem.clone();
        });
        let http = trusting(pem.as_deref(), reqwest::redirect::Policy::none());
        Self { sim, client, http }
    }

    /// An HTTP client that trusts this simulator's CA (when it has one) and follows redirects.
    pub fn following_client(&self) -> reqwest::Client {
        let pem = self.sim.ca_file.as_ref().map(|p| std::fs::read(p).unwrap());
        trusting(pem.as_deref(), reqwest::redirect::Policy::default())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url, path)
    }

    /// Follows the authorize URL (the simulator approves at once) and returns the callback's query.
    pub async fn authorize(&self, req: &AuthorizeRequest) -> Vec<(String, String)> {
        super::authorize(&self.client, &self.http, req)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Connects a simulated creator and returns its tokens.
    pub async fn connect(&self, username: &str, private: bool) -> TokenSet {
        super::connect(&self.client, &self.http, username, private)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn posts(&self) -> Vec<Value> {
        sim_posts(&self.http, &self.sim.base_url).await
    }

    pub async fn post(&self, publish_id: &str) -> Value {
        self.posts()
            .await
            .into_iter()
            .find(|p| p["publish_id"] == publish_id)
            .expect("the simulator knows the post")
    }

    pub async fn stats(&self) -> Value {
        sim_stats(&self.http, &self.sim.base_url).await
    }

    pub async fn fault(&self, fault: Value) {
        let resp = self
            .http
            .post(self.url("/_sim/faults"))
            .json(&fault)
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "fault accepted: {}",
            resp.text().await.unwrap()
        );
    }
}

/// An HTTP client with this redirect policy that trusts the CA in `pem`, if any, beside the usual roots.
pub fn trusting(pem: Option<&[u8]>, redirect: reqwest::redirect::Policy) -> reqwest::Client {
    let mut b = reqwest::Client::builder().redirect(redirect);
    if let Some(pem) = pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
    }
    b.build().unwrap()
}
