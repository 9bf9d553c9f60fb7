//! The TikTok API client: the only code that knows TikTok's URLs and JSON.
//!
//! It speaks OAuth v2 (authorize URL, code exchange, refresh, revoke: `oauth`), the Content Posting API
//! (`creator_info`, Direct Post and inbox init: `publish`; status fetch, cancel, fail reasons:
//! `status`), the Display API and user info (what a daemon reads back: `display`), TikTok's rate
//! limits and caps (`limits`) and the media transfer
//! protocol (chunk planning and a streaming, resumable upload: `upload`), and reads its webhook
//! deliveries (signature and event format: `webhook`). Every failure is a
//! [`TikTokError`] carrying TikTok's code, message and `log_id` and its [`Disposition`].
//!
//! It knows nothing of Redis, apalis or the post ledger. Tokens are passed in per call as
//! [`secrecy::SecretString`]s and never logged or put into an error.

mod body;
mod chunk_body;
pub(crate) mod display;
pub(crate) mod error;
pub(crate) mod limits;
pub(crate) mod oauth;
pub(crate) mod publish;
pub(crate) mod status;
pub(crate) mod upload;
pub(crate) mod webhook;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

pub use body::MAX_BODY_BYTES;
pub use display::{
    SCOPE_USER_INFO_BASIC, SCOPE_USER_INFO_PROFILE, SCOPE_USER_INFO_STATS, SCOPE_VIDEO_LIST,
    UserField, UserInfo, VIDEO_FIELDS, Video, VideoPage,
};
pub use error::{Disposition, ErrorKind, TikTokError};
pub use limits::{
    DAILY_WINDOW, DISPLAY_PAGE_MAX, DISPLAY_TEXT_MAX, RateLimit, USER_INFO_RATE, VIDEO_LIST_RATE,
    VIDEO_QUERY_MAX_IDS, VIDEO_QUERY_RATE,
};
pub use oauth::{AuthorizeRequest, Pkce, TokenSet};
pub use publish::{CreatorInfo, InitResponse, PostInfo, PrivacyLevel, Source};
pub use status::{PublishStatus, StatusKind};
pub use upload::{ChunkPlan, UploadOutcome, UploadRequest, UploadUrl};

/// TikTok's API host (`[tiktok] api_base` defaults to it).
pub const API_BASE: &str = "https://open.tiktokapis.com";
/// TikTok's web host, where the authorize page lives (`[tiktok] auth_base` defaults to it).
pub const AUTH_BASE: &str = "https://www.tiktok.com";

/// Where the client sends its requests and how long it waits.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://open.tiktokapis.com`, or a `tiktok-poster sim` address.
    pub api_base: Url,
    /// `https://www.tiktok.com`, where the authorize page lives.
    pub auth_base: Url,
    /// The app's client key.
    pub client_key: String,
    /// The app's client secret.
    pub client_secret: SecretString,
    /// Whole-request timeout of every API call.
    pub request_timeout: Duration,
    /// TCP and TLS connect timeout of every request, uploads included.
    pub connect_timeout: Duration,
    /// Timeout of one chunk PUT (a 64 MB chunk on a slow link needs minutes).
    pub upload_chunk_timeout: Duration,
    /// How often one chunk is retried after a 5xx or a dropped connection before the upload gives up.
    pub upload_chunk_retries: u32,
    /// More CAs to trust for TikTok's hosts (PEM), beside the built-in roots: a simulator's
    /// (`sim --tls`) or a corporate proxy's. Read with [`read_ca_file`].
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// Largest CA file read for `[tiktok] ca_file`.
pub const MAX_CA_FILE_BYTES: u64 = 1 << 20;

/// Reads a PEM file of CA certificates (at most [`MAX_CA_FILE_BYTES`]) and checks that it holds at
/// least one that parses; the error says what is wrong with the file, without naming the setting.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    // A trust anchor anyone may rewrite would let anyone on the machine stand in for TikTok.
    let mode = file
        .metadata()
        .map_err(|e| format!("cannot read {} ({e})", path.display()))?
        .permissions()
        .mode();
    if mode & 0o002 != 0 {
        return Err(format!(
            "{} is writable by every user (mode {:o}); make it writable by its owner only (chmod o-w)",
            path.display(),
            mode & 0o7777
        ));
    }
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut pem)
        .map_err(|e| format!("cannot read {} ({e})", path.display()))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!(
            "{} is over {} bytes; a CA bundle is a few KB, name the PEM file of the CA itself",
            path.display(),
            MAX_CA_FILE_BYTES
        ));
    }
    // Each certificate is parsed as a trust anchor, as the TLS stack will, so a broken one is named
    // here and not at the first request.
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let parsed = cert
            .map_err(|e| e.to_string())
            .and_then(|c| roots.add(c).map_err(|e| e.to_string()));
        if let Err(e) = parsed {
            return Err(format!(
                "{} cannot be parsed as PEM certificates ({e})",
                path.display()
            ));
        }
    }
    if roots.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(pem)
}

impl ClientConfig {
    /// Settings for the given endpoints with the default timeouts.
    pub fn new(
        api_base: Url,
        auth_base: Url,
        client_key: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            api_base,
            auth_base,
            client_key: client_key.into(),
            client_secret,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            upload_chunk_timeout: Duration::from_secs(300),
            upload_chunk_retries: 5,
            extra_roots_pem: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("api_base", &self.api_base.as_str())
            .field("auth_base", &self.auth_base.as_str())
            .field("client_key", &self.client_key)
            .field("client_secret", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A TikTok API client. Cheap to clone; clones share connection pools.
#[derive(Clone, Debug)]
pub struct Client {
    cfg: std::sync::Arc<ClientConfig>,
    /// For API calls: whole-request timeout.
    api: reqwest::Client,
    /// For upload PUTs: never follows redirects (the upload URL is a credential and must not be sent
    /// anywhere else), no whole-request timeout (each chunk gets its own).
    upload: reqwest::Client,
}

impl Client {
    /// Builds a client; fails only if the TLS backend cannot be initialised.
    pub fn new(cfg: ClientConfig) -> Result<Self, TikTokError> {
        let ua = concat!("tiktok-poster/", env!("CARGO_PKG_VERSION"));
        let roots = match &cfg.extra_roots_pem {
            None => Vec::new(),
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| TikTokError::transport("client setup", e))?,
        };
        let trust = |mut b: reqwest::ClientBuilder| {
            for cert in &roots {
                b = b.add_root_certificate(cert.clone());
            }
            b
        };
        let api = trust(reqwest::Client::builder())
            .user_agent(ua)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TikTokError::transport("client setup", e))?;
        let upload = trust(reqwest::Client::builder())
            .user_agent(ua)
            .connect_timeout(cfg.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TikTokError::transport("client setup", e))?;
        Ok(Self {
            cfg: std::sync::Arc::new(cfg),
            api,
            upload,
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn api_url(&self, path: &str) -> Url {
        join(&self.cfg.api_base, path)
    }

    /// POSTs JSON with a bearer token to a Content Posting endpoint and unwraps the `data`/`error`
    /// envelope, judging success by `error.code`, never by the HTTP status alone.
    async fn post_envelope<T: DeserializeOwned>(
        &self,
        op: &str,
        path: &str,
        token: &SecretString,
        body: Option<&Value>,
    ) -> Result<T, TikTokError> {
        let mut req = self
            .api
            .post(self.api_url(path))
            .bearer_auth(token.expose_secret())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            );
        if let Some(body) = body {
            req = req
                .body(serde_json::to_vec(body).map_err(|e| TikTokError::local(op, e.to_string()))?);
        }
        let reply = body::send_and_read(op, req).await?;
        let data = parse_envelope(op, reply.status, &reply.body).map_err(|mut e| {
            e.retry_after = reply.retry_after;
            e
        })?;
        let status = reply.status;
        serde_json::from_value(data).map_err(|e| {
            TikTokError::new(op, ErrorKind::Decode, "decode")
                .with_status(status)
                .with_message(format!("unexpected response data: {e}"))
        })
    }
}

/// Joins an API path to a base URL that may itself carry a path prefix.
fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{prefix}{path}"));
    url
}

/// Unwraps `{"data": …, "error": {"code", "message", "log_id"}}`. Also accepts the general v2 error page's
/// flat `{"code", "message", "log_id"}` shape. Any code other than `ok`, whatever the HTTP status, is an
/// error; so is a non-2xx status with no readable code.
pub(crate) fn parse_envelope(op: &str, status: u16, body: &[u8]) -> Result<Value, TikTokError> {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(Value::Object(mut obj)) = parsed else {
        let code = if (200..300).contains(&status) {
            "decode".to_string()
        } else {
            format!("http_{status}")
        };
        let kind = if (200..300).contains(&status) {
            ErrorKind::Decode
        } else {
            ErrorKind::Api
        };
        let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
        let message = if snippet.trim().is_empty() {
            "empty response body".to_string()
        } else {
            format!("response is not a JSON object: {snippet}")
        };
        return Err(TikTokError::new(op, kind, code)
            .with_status(status)
            .with_message(message));
    };
    let err_obj = match obj.get("error") {
        Some(Value::Object(e)) => Some(e.clone()),
        _ if obj.contains_key("code") => Some(obj.clone()),
        _ => None,
    };
    let (code, message, log_id) = match &err_obj {
        Some(e) => (
            e.get("code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            e.get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            e.get("log_id")
                .or_else(|| e.get("logid"))
                .and_then(Value::as_str)
                .map(str::to_string),
        ),
        None => (String::new(), String::new(), None),
    };
    if code == "ok" && (200..300).contains(&status) {
        return Ok(obj
            .remove("data")
            .unwrap_or(Value::Object(Default::default())));
    }
    let code = if code.is_empty() || code == "ok" {
        format!("http_{status}")
    } else {
        code
    };
    Err(TikTokError::new(op, ErrorKind::Api, code)
        .with_status(status)
        .with_message(message)
        .with_log_id(log_id))
}

/// Counts a string's length the way TikTok limits titles: in UTF-16 code units.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_ok_returns_data() {
        let v = parse_envelope(
            "x",
            200,
            br#"{"data":{"a":1},"error":{"code":"ok","message":"","log_id":"L"}}"#,
        )
        .unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn an_error_inside_http_200_is_an_error() {
        let e = parse_envelope(
            "creator info",
            200,
            br#"{"data":{},"error":{"code":"spam_risk_too_many_posts","message":"m","log_id":"L1"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "spam_risk_too_many_posts");
        assert_eq!(e.http_status, Some(200));
        assert_eq!(e.log_id.as_deref(), Some("L1"));
    }

    #[test]
    fn flat_v2_error_and_logid_spelling_are_read() {
        let e = parse_envelope(
            "x",
            400,
            br#"{"code":"invalid_params","message":"The chunk size is invalid","logid":"Z"}"#,
        )
        .unwrap_err();
        assert!(e.is_invalid_params());
        assert_eq!(e.message, "The chunk size is invalid");
        assert_eq!(e.log_id.as_deref(), Some("Z"));
    }

    #[test]
    fn a_gateway_page_becomes_an_http_code_that_retries() {
        let e = parse_envelope("x", 502, b"<html>bad gateway</html>").unwrap_err();
        assert_eq!(e.code, "http_502");
        assert_eq!(e.disposition(), Disposition::Retry);
    }

    #[test]
    fn join_keeps_a_base_path_prefix() {
        let base = Url::parse("http://127.0.0.1:9/prefix/").unwrap();
        assert_eq!(
            join(&base, "/v2/oauth/token/").as_str(),
            "http://127.0.0.1:9/prefix/v2/oauth/token/"
        );
        let base = Url::parse("https://open.tiktokapis.com").unwrap();
        assert_eq!(
            join(&base, "/v2/oauth/token/").as_str(),
            "https://open.tiktokapis.com/v2/oauth/token/"
        );
    }

    #[test]
    fn utf16_counts_code_units_not_bytes_or_chars() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("😀"), 2);
    }
}
