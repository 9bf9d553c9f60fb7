//! Shared test harness: a simulator on a free port and a client pointed at it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tiktok_poster::sim::{self, SimConfig, SimHandle};
use tiktok_poster::tiktok::{AuthorizeRequest, Client, ClientConfig, TokenSet};
use url::Url;

pub const REDIRECT: &str = "http://127.0.0.1:1/oauth/callback";

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
        let base = Url::parse(&sim.base_url).unwrap();
        let mut cc = ClientConfig::new(
            base.clone(),
            base,
            "test-client-key",
            SecretString::from("test-secret".to_string()),
        );
        cc.request_timeout = Duration::from_secs(10);
        cc.upload_chunk_timeout = Duration::from_secs(60);
        let client = Client::new(cc).unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self { sim, client, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url, path)
    }

    /// Follows the authorize URL (the simulator approves at once) and returns the callback's query.
    pub async fn authorize(&self, req: &AuthorizeRequest) -> Vec<(String, String)> {
        let url = self.client.authorize_url(req);
        let resp = self.http.get(url).send().await.unwrap();
        assert!(
            resp.status().is_redirection(),
            "authorize should redirect to the callback, got {}",
            resp.status()
        );
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(
            location.starts_with(&req.redirect_uri),
            "redirected to {location}"
        );
        Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    /// Connects a simulated creator and returns its tokens.
    pub async fn connect(&self, username: &str, private: bool) -> TokenSet {
        let req = auth_request(username, private);
        let q = self.authorize(&req).await;
        let code = param(&q, "code").expect("callback carries a code");
        self.client
            .exchange_code(&code, REDIRECT, None)
            .await
            .expect("code exchange succeeds")
    }

    pub async fn posts(&self) -> Vec<Value> {
        let v: Value = self
            .http
            .get(self.url("/_sim/posts"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["posts"].as_array().cloned().unwrap_or_default()
    }

    pub async fn post(&self, publish_id: &str) -> Value {
        self.posts()
            .await
            .into_iter()
            .find(|p| p["publish_id"] == publish_id)
            .expect("the simulator knows the post")
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(self.url("/_sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
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

pub fn auth_request(username: &str, private: bool) -> AuthorizeRequest {
    AuthorizeRequest {
        scopes: vec![
            "user.info.basic".into(),
            "video.publish".into(),
            "video.upload".into(),
        ],
        redirect_uri: REDIRECT.into(),
        state: "st-123".into(),
        pkce_challenge: None,
        extra: vec![
            ("sim_username".into(), username.into()),
            ("sim_private".into(), private.to_string()),
        ],
    }
}

pub fn param(q: &[(String, String)], k: &str) -> Option<String> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes a file of `size` bytes: sparse where possible, with a distinct 4 KiB pattern every MiB so that
/// a reordered, repeated or lost chunk changes the hash. Returns its sha256.
/// A fixture that passes both video policies; `make_video` grows it.
pub const GOOD_MP4: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/video/good.mp4");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/video")
        .join(name)
}

/// Writes a `size`-byte video at `path` and returns its sha256: a real MP4 (the `good.mp4` fixture,
/// 1.2 s of 720x1280) followed by a `free` box of filler, so the probe accepts it under the `api`
/// policy (TestApp's) at any size. The filler is seeded by the file name, so two test videos of one
/// size still differ. Below the fixture's own size (client-level upload tests only) the file is all
/// filler.
pub fn make_video(path: &Path, size: u64) -> String {
    use std::io::{Seek, SeekFrom, Write};
    let good = std::fs::read(GOOD_MP4).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let head = good.len() as u64 + 16;
    let filler_from = if size >= head {
        f.write_all(&good).unwrap();
        // A 64-bit-size `free` box over the rest of the file.
        f.write_all(&1u32.to_be_bytes()).unwrap();
        f.write_all(b"free").unwrap();
        f.write_all(&(size - good.len() as u64).to_be_bytes())
            .unwrap();
        head
    } else {
        0
    };
    // Seeded by the file name, so two test videos of one size still differ.
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    let seed = u64::from_le_bytes(digest[..8].try_into().unwrap()) % 10_007;
    let mut at = filler_from;
    let mut n = 0u64;
    while at < size {
        let mut block: Vec<u8> = (0..4096u64)
            .map(|i| ((i * 31 + n * 7919 + seed) % 251) as u8)
            .collect();
        // The name's whole digest in every block: files of one size never collide (the pattern alone
        // repeats for seeds equal modulo 251).
        block[..32].copy_from_slice(&digest);
        let len = block.len().min((size - at) as usize);
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&block[..len]).unwrap();
        at += 1 << 20;
        n += 1;
    }
    f.sync_all().unwrap();
    drop(f);
    sha256_file(path)
}

pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
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
