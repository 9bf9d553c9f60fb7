//! Typed settings: defaults in code, then the TOML file, then `TIKTOK_POSTER__SECTION__KEY` variables;
//! unknown keys refused; secrets from the file, a variable or a `*_file` path; every value validated with
//! a message that names the key and the fix.
//!
//! The file is the first of: `--config PATH`, `$TIKTOK_POSTER_CONFIG`, `./config.toml`,
//! `/etc/tiktok-poster/config.toml`. Without any, defaults and variables alone are used.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "TIKTOK_POSTER_CONFIG";
/// Prefix of override variables: `TIKTOK_POSTER__WORKER__CONCURRENCY=8`.
pub const ENV_PREFIX: &str = "TIKTOK_POSTER";

/// A configuration problem; the daemon exits with 78 (EX_CONFIG) so systemd does not restart-loop.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A secret value from the configuration: never printed, serialised as `********`.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl Secret {
    /// The value.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(SecretString::from(String::deserialize(d)?)))
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.expose().is_empty() {
            ""
        } else {
            "********"
        })
    }
}

/// All settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[redis]`
    pub redis: RedisSettings,
    /// `[tiktok]`
    pub tiktok: TikTokSettings,
    /// `[http]`
    pub http: HttpSettings,
    /// `[worker]`
    pub worker: WorkerSettings,
    /// `[tokens]`
    pub tokens: TokenSettings,
    /// `[video]`
    pub video: VideoSettings,
    /// `[log]`
    pub log: LogSettings,
}

/// `[redis]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:port/db`, `rediss://` for TLS, or `unix:///path`.
    pub url: String,
    /// Prefix of every key the daemon owns.
    pub namespace: String,
    /// Start even when Redis may evict keys (`maxmemory-policy allkeys-*`), which can drop posts.
    pub allow_eviction: bool,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            namespace: "tiktok-poster".into(),
            allow_eviction: false,
        }
    }
}

/// Web app (confidential client) or desktop app (PKCE with TikTok's hex challenge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    /// Registered as a web app: no PKCE.
    #[default]
    Web,
    /// Registered as a desktop app: PKCE required.
    Desktop,
}

/// `[tiktok]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TikTokSettings {
    /// The app's client key from the developer portal.
    pub client_key: String,
    /// The app's client secret (prefer `client_secret_file`).
    pub client_secret: Option<Secret>,
    /// A file holding the client secret (e.g. `/run/credentials/tiktok-poster.service/client_secret`).
    pub client_secret_file: Option<PathBuf>,
    /// The OAuth callback registered with TikTok.
    pub redirect_uri: String,
    /// TikTok's API host, or a simulator.
    pub api_base: String,
    /// TikTok's authorize host, or a simulator.
    pub auth_base: String,
    /// Scopes asked for at connect.
    pub scopes: Vec<String>,
    /// `web` or `desktop` (PKCE).
    pub app_type: AppType,
    /// Whole-request timeout of API calls.
    pub request_timeout_secs: u64,
    /// Connect timeout of every request.
    pub connect_timeout_secs: u64,
    /// Timeout of one chunk PUT.
    pub upload_chunk_timeout_secs: u64,
    /// Retries of one chunk after a 5xx or dropped connection.
    pub upload_chunk_retries: u32,
}

impl Default for TikTokSettings {
    fn default() -> Self {
        Self {
            client_key: String::new(),
            client_secret: None,
            client_secret_file: None,
            redirect_uri: "http://127.0.0.1:8080/oauth/callback".into(),
            api_base: "https://open.tiktokapis.com".into(),
            auth_base: "https://www.tiktok.com".into(),
            scopes: vec![
                "user.info.basic".into(),
                "video.publish".into(),
                "video.upload".into(),
            ],
            app_type: AppType::Web,
            request_timeout_secs: 30,
            connect_timeout_secs: 10,
            upload_chunk_timeout_secs: 300,
            upload_chunk_retries: 5,
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Where the connect page, OAuth callback, /healthz and /metrics listen (and the webhooks, unless
    /// `webhook_listen` is set). It manages accounts: keep it on loopback.
    pub listen: String,
    /// When set, `/webhooks/tiktok` is served on this address only (the one to expose to TikTok) and
    /// no longer on `listen`. Empty: webhooks stay on `listen`.
    pub webhook_listen: String,
    /// Connections each listener serves at once; more are answered 503 and closed. Lowered at start
    /// when the open-file limit would not leave enough descriptors for Redis and videos.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            webhook_listen: String::new(),
            max_connections: 512,
        }
    }
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Posts worked on at once by this daemon.
    pub concurrency: u32,
    /// Lease of a claimed post; a crashed daemon's posts come back after it.
    pub lease_secs: u64,
    /// Longest idle sleep between claims, in milliseconds.
    pub idle_poll_ms: u64,
    /// Transient failures of one post before it is settled.
    pub max_attempts: u32,
    /// First retry delay in milliseconds (doubles per attempt, with jitter).
    pub backoff_base_ms: u64,
    /// Longest retry delay in seconds.
    pub backoff_max_secs: u64,
    /// Interval between status fetches of one post, in milliseconds.
    pub status_interval_ms: u64,
    /// How long after its upload a post may stay unsettled before it is marked unconfirmed.
    pub settle_timeout_secs: u64,
    /// How long SIGTERM waits for posts in flight.
    pub shutdown_grace_secs: u64,
    /// Direct Posts per account per rolling 24 hours before the daemon defers the rest (TikTok's own
    /// cap is about 15 and shared by every app the creator uses).
    pub daily_post_budget: u32,
    /// This daemon's identity in claim tokens; unique per daemon sharing a Redis (default: the host name).
    pub id: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease_secs: 30,
            idle_poll_ms: 250,
            max_attempts: 8,
            backoff_base_ms: 2000,
            backoff_max_secs: 600,
            status_interval_ms: 3000,
            settle_timeout_secs: 6 * 3600,
            shutdown_grace_secs: 30,
            daily_post_budget: 15,
            id: String::new(),
        }
    }
}

impl WorkerSettings {
    /// The worker runtime's settings.
    pub fn worker_config(&self) -> crate::worker::WorkerConfig {
        crate::worker::WorkerConfig {
            concurrency: self.concurrency as usize,
            lease: Duration::from_secs(self.lease_secs),
            idle_poll: Duration::from_millis(self.idle_poll_ms),
            max_attempts: self.max_attempts,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_secs(self.backoff_max_secs),
            status_interval: Duration::from_millis(self.status_interval_ms),
            follow_slice: Duration::from_secs(300),
            settle_timeout: Duration::from_secs(self.settle_timeout_secs),
            daily_budget: self.daily_post_budget,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

/// `[tokens]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// 32 random bytes that seal the stored tokens.
    pub encryption_key_file: PathBuf,
    /// During a key rotation: the old key, which still opens what it sealed (see `keys rotate`).
    pub previous_key_file: Option<PathBuf>,
    /// How often the refresher looks for accounts whose planned refresh time has come, in milliseconds.
    pub refresh_check_ms: u64,
    /// Warn this many days before an account's refresh token expires (the user must reconnect).
    pub reconnect_warning_days: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            encryption_key_file: "/etc/tiktok-poster/token.key".into(),
            previous_key_file: None,
            refresh_check_ms: 1000,
            reconnect_warning_days: 7,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise (journald).
    #[default]
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[video]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoSettings {
    /// `brief` (the project brief's table) or `api` (only TikTok's documented limits).
    pub policy: crate::media::Policy,
    /// Longest one probe may take before the file is refused, in seconds.
    pub probe_timeout_secs: u64,
    /// The only directories a submitted `video` may resolve into (symlinks followed), so a producer
    /// cannot have any file the daemon can read uploaded.
    pub allowed_dirs: Vec<PathBuf>,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self {
            policy: crate::media::Policy::Brief,
            probe_timeout_secs: 5,
            allowed_dirs: vec![PathBuf::from("/srv/videos")],
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `auto`, `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `tiktok_poster=debug,info`, …; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".into(),
        }
    }
}

/// Which file to read: the flag, then `$TIKTOK_POSTER_CONFIG`, then `./config.toml`, then
/// `/etc/tiktok-poster/config.toml`. `Ok(None)` when none exists and none was named.
pub fn resolve_path(
    flag: Option<&Path>,
    env_value: Option<String>,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = flag {
        if !p.exists() {
            return Err(ConfigError(format!(
                "config file {} (from --config) does not exist; check the path",
                p.display()
            )));
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = env_value.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.exists() {
            return Err(ConfigError(format!(
                "config file {} (from ${CONFIG_ENV}) does not exist; fix or unset the variable",
                p.display()
            )));
        }
        return Ok(Some(p));
    }
    for candidate in ["config.toml", "/etc/tiktok-poster/config.toml"] {
        let p = PathBuf::from(candidate);
        if p.exists() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

impl Settings {
    /// Loads from an optional file and a set of environment variables (pass `std::env::vars()`; tests
    /// pass their own map, never `set_var`), then reads secret files and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("tiktok.scopes")
                .with_list_parse_key("video.allowed_dirs")
                .source(Some(vars)),
        );
        let where_ = path
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default();
        let raw = builder
            .build()
            .map_err(|e| ConfigError(format!("cannot read the configuration{where_}: {e}")))?;
        let mut s: Settings = raw.try_deserialize().map_err(|e| {
            ConfigError(format!(
                "invalid configuration{where_}: {e}; see config.example.toml for every key (variables use TIKTOK_POSTER__SECTION__KEY)"
            ))
        })?;
        s.read_secret_files()?;
        s.validate()?;
        Ok(s)
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        if let Some(file) = &self.tiktok.client_secret_file {
            if self
                .tiktok
                .client_secret
                .as_ref()
                .is_some_and(|s| !s.expose().is_empty())
            {
                return Err(ConfigError(
                    "tiktok.client_secret and tiktok.client_secret_file are both set; keep only one (the file is preferred)".into(),
                ));
            }
            #[cfg(unix)]
            if let Ok(meta) = std::fs::metadata(file) {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(ConfigError(format!(
                        "tiktok.client_secret_file = {}: mode {mode:03o} lets other users read it; run `chmod 600 {}` (as the token key file must be)",
                        file.display(),
                        file.display()
                    )));
                }
            }
            let text = std::fs::read_to_string(file).map_err(|e| {
                ConfigError(format!(
                    "tiktok.client_secret_file = {}: cannot read it ({e}); check the path and that the service user may read it",
                    file.display()
                ))
            })?;
            let secret = text.trim().to_string();
            if secret.is_empty() {
                return Err(ConfigError(format!(
                    "tiktok.client_secret_file = {} is empty; put the client secret from the TikTok developer portal in it",
                    file.display()
                )));
            }
            self.tiktok.client_secret = Some(Secret(SecretString::from(secret)));
        }
        Ok(())
    }

    /// Checks every value; all problems are reported at once, one per line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, env: &str, msg: String| {
            problems.push(format!(
                "{key}: {msg} (set it in the config file or with TIKTOK_POSTER__{env})"
            ));
        };
        match Url::parse(&self.redis.url) {
            Ok(u) if ["redis", "rediss", "unix", "redis+unix"].contains(&u.scheme()) => {}
            _ => bad(
                "redis.url",
                "REDIS__URL",
                format!(
                    "{:?} is not a redis:// , rediss:// or unix:// URL",
                    crate::db::redact_url(&self.redis.url)
                ),
            ),
        }
        if self.redis.namespace.is_empty() || self.redis.namespace.contains(char::is_whitespace) {
            bad(
                "redis.namespace",
                "REDIS__NAMESPACE",
                format!(
                    "{:?} must be non-empty and without spaces",
                    self.redis.namespace
                ),
            );
        }
        for (key, env, value) in [
            ("tiktok.api_base", "TIKTOK__API_BASE", &self.tiktok.api_base),
            (
                "tiktok.auth_base",
                "TIKTOK__AUTH_BASE",
                &self.tiktok.auth_base,
            ),
            (
                "tiktok.redirect_uri",
                "TIKTOK__REDIRECT_URI",
                &self.tiktok.redirect_uri,
            ),
        ] {
            match Url::parse(value) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => bad(
                    key,
                    env,
                    format!("{value:?} is not an absolute http(s) URL"),
                ),
            }
        }
        if Url::parse(&self.tiktok.redirect_uri)
            .is_ok_and(|u| u.query().is_some() || u.fragment().is_some())
        {
            bad(
                "tiktok.redirect_uri",
                "TIKTOK__REDIRECT_URI",
                "TikTok requires a static redirect URI without query or fragment".into(),
            );
        }
        if self.tiktok.scopes.is_empty() {
            bad("tiktok.scopes", "TIKTOK__SCOPES", "at least one scope is needed, e.g. [\"user.info.basic\", \"video.publish\", \"video.upload\"]".into());
        }
        for (key, env, v, lo, hi) in [
            (
                "tiktok.request_timeout_secs",
                "TIKTOK__REQUEST_TIMEOUT_SECS",
                self.tiktok.request_timeout_secs,
                1,
                600,
            ),
            (
                "tiktok.connect_timeout_secs",
                "TIKTOK__CONNECT_TIMEOUT_SECS",
                self.tiktok.connect_timeout_secs,
                1,
                120,
            ),
            (
                "tiktok.upload_chunk_timeout_secs",
                "TIKTOK__UPLOAD_CHUNK_TIMEOUT_SECS",
                self.tiktok.upload_chunk_timeout_secs,
                5,
                3600,
            ),
            (
                "tiktok.upload_chunk_retries",
                "TIKTOK__UPLOAD_CHUNK_RETRIES",
                self.tiktok.upload_chunk_retries as u64,
                0,
                100,
            ),
            (
                "worker.concurrency",
                "WORKER__CONCURRENCY",
                self.worker.concurrency as u64,
                1,
                1024,
            ),
            (
                "worker.lease_secs",
                "WORKER__LEASE_SECS",
                self.worker.lease_secs,
                1,
                3600,
            ),
            (
                "worker.idle_poll_ms",
                "WORKER__IDLE_POLL_MS",
                self.worker.idle_poll_ms,
                10,
                60_000,
            ),
            (
                "worker.max_attempts",
                "WORKER__MAX_ATTEMPTS",
                self.worker.max_attempts as u64,
                1,
                1000,
            ),
            (
                "worker.backoff_base_ms",
                "WORKER__BACKOFF_BASE_MS",
                self.worker.backoff_base_ms,
                1,
                3_600_000,
            ),
            (
                "worker.backoff_max_secs",
                "WORKER__BACKOFF_MAX_SECS",
                self.worker.backoff_max_secs,
                1,
                86_400,
            ),
            (
                "worker.status_interval_ms",
                "WORKER__STATUS_INTERVAL_MS",
                self.worker.status_interval_ms,
                10,
                600_000,
            ),
            (
                "worker.settle_timeout_secs",
                "WORKER__SETTLE_TIMEOUT_SECS",
                self.worker.settle_timeout_secs,
                1,
                30 * 86_400,
            ),
            (
                "worker.shutdown_grace_secs",
                "WORKER__SHUTDOWN_GRACE_SECS",
                self.worker.shutdown_grace_secs,
                0,
                3600,
            ),
            (
                "worker.daily_post_budget",
                "WORKER__DAILY_POST_BUDGET",
                self.worker.daily_post_budget as u64,
                1,
                1000,
            ),
            (
                "tokens.refresh_check_ms",
                "TOKENS__REFRESH_CHECK_MS",
                self.tokens.refresh_check_ms,
                10,
                600_000,
            ),
            (
                "tokens.reconnect_warning_days",
                "TOKENS__RECONNECT_WARNING_DAYS",
                self.tokens.reconnect_warning_days,
                0,
                365,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                bad(
                    key,
                    env,
                    format!("{v} is out of range; give a value from {lo} to {hi}"),
                );
            }
        }
        if !self.worker.id.is_empty()
            && (self.worker.id.len() > 64
                || !self
                    .worker
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            bad(
                "worker.id",
                "WORKER__ID",
                format!(
                    "{:?} must be 1 to 64 letters, digits, - _ .",
                    self.worker.id
                ),
            );
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            bad(
                "http.listen",
                "HTTP__LISTEN",
                format!(
                    "{:?} is not an address such as 127.0.0.1:8080",
                    self.http.listen
                ),
            );
        }
        if !self.http.webhook_listen.is_empty() {
            match self.http.webhook_listen.parse::<SocketAddr>() {
                Err(_) => bad(
                    "http.webhook_listen",
                    "HTTP__WEBHOOK_LISTEN",
                    format!(
                        "{:?} is not an address such as 0.0.0.0:8443; leave it empty to serve webhooks on http.listen",
                        self.http.webhook_listen
                    ),
                ),
                Ok(w) if self.http.listen.parse::<SocketAddr>().is_ok_and(|l| l == w) => bad(
                    "http.webhook_listen",
                    "HTTP__WEBHOOK_LISTEN",
                    "is the same address as http.listen; give the webhooks their own port, or leave it empty".into(),
                ),
                Ok(_) => {}
            }
        }
        if !(1..=65_536).contains(&self.http.max_connections) {
            bad(
                "http.max_connections",
                "HTTP__MAX_CONNECTIONS",
                format!(
                    "{} is out of range; give a value from 1 to 65536",
                    self.http.max_connections
                ),
            );
        }
        if self.tokens.encryption_key_file.as_os_str().is_empty() {
            bad(
                "tokens.encryption_key_file",
                "TOKENS__ENCRYPTION_KEY_FILE",
                "a path is required".into(),
            );
        }
        if self.video.allowed_dirs.is_empty()
            || self.video.allowed_dirs.iter().any(|d| !d.is_absolute())
        {
            bad(
                "video.allowed_dirs",
                "VIDEO__ALLOWED_DIRS",
                format!(
                    "{:?} must list at least one absolute directory, e.g. [\"/srv/videos\"]",
                    self.video.allowed_dirs
                ),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            bad(
                "log.level",
                "LOG__LEVEL",
                format!(
                    "{:?} is not a valid filter ({e}); use e.g. info or debug",
                    self.log.level
                ),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(format!(
                "invalid configuration:\n  {}",
                problems.join("\n  ")
            )))
        }
    }

    /// True when no client key is configured, which is fine only against a simulator.
    pub fn has_credentials(&self) -> bool {
        !self.tiktok.client_key.is_empty()
            && self
                .tiktok
                .client_secret
                .as_ref()
                .is_some_and(|s| !s.expose().is_empty())
    }

    /// The token keys: the current one, and the previous one during a rotation.
    pub fn token_keys(
        &self,
    ) -> Result<(crate::accounts::TokenKey, Option<crate::accounts::TokenKey>), ConfigError> {
        let key = crate::accounts::TokenKey::load(&self.tokens.encryption_key_file)
            .map_err(|e| ConfigError(format!("tokens.encryption_key_file: {e}")))?;
        let previous = match &self.tokens.previous_key_file {
            Some(p) => Some(
                crate::accounts::TokenKey::load(p)
                    .map_err(|e| ConfigError(format!("tokens.previous_key_file: {e}")))?,
            ),
            None => None,
        };
        Ok((key, previous))
    }

    /// The TikTok client settings.
    pub fn client_config(&self) -> Result<crate::tiktok::ClientConfig, ConfigError> {
        let api = Url::parse(&self.tiktok.api_base)
            .map_err(|e| ConfigError(format!("tiktok.api_base: {e}")))?;
        let auth = Url::parse(&self.tiktok.auth_base)
            .map_err(|e| ConfigError(format!("tiktok.auth_base: {e}")))?;
        let secret = self
            .tiktok
            .client_secret
            .clone()
            .map(|s| s.0)
            .unwrap_or_else(|| SecretString::from(String::new()));
        let mut c =
            crate::tiktok::ClientConfig::new(api, auth, self.tiktok.client_key.clone(), secret);
        c.request_timeout = Duration::from_secs(self.tiktok.request_timeout_secs);
        c.connect_timeout = Duration::from_secs(self.tiktok.connect_timeout_secs);
        c.upload_chunk_timeout = Duration::from_secs(self.tiktok.upload_chunk_timeout_secs);
        c.upload_chunk_retries = self.tiktok.upload_chunk_retries;
        Ok(c)
    }

    /// The effective settings as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.redis.url = crate::db::redact_url(&self.redis.url);
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_example_config_loads_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let s = Settings::load(Some(&path), env(&[])).unwrap();
        let d = Settings::default();
        assert_eq!(s.redis.url, d.redis.url);
        assert_eq!(s.worker.concurrency, d.worker.concurrency);
        assert_eq!(s.tiktok.scopes, d.tiktok.scopes);
        assert_eq!(
            s.to_masked_toml(),
            d.to_masked_toml(),
            "config.example.toml must document the defaults"
        );
    }

    #[test]
    fn environment_overrides_use_double_underscores() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            &dir,
            "c.toml",
            "[worker]\nconcurrency = 2\n[tiktok]\nclient_key = \"abc\"\n",
        );
        let s = Settings::load(
            Some(&p),
            env(&[
                ("TIKTOK_POSTER__WORKER__CONCURRENCY", "9"),
                ("TIKTOK_POSTER__TIKTOK__CLIENT_KEY", "12345"),
                (
                    "TIKTOK_POSTER__TIKTOK__SCOPES",
                    "video.publish,video.upload",
                ),
                ("TIKTOK_POSTER__REDIS__NAMESPACE", "ns1"),
                // Wrong forms are not ours and must not be mistaken for overrides.
                ("TIKTOK_POSTER_WORKER_CONCURRENCY", "7"),
                ("TIKTOK_POSTER_CONFIG", "/nonexistent"),
            ]),
        )
        .unwrap();
        assert_eq!(s.worker.concurrency, 9);
        assert_eq!(
            s.tiktok.client_key, "12345",
            "a numeric-looking key stays a string"
        );
        assert_eq!(s.tiktok.scopes, vec!["video.publish", "video.upload"]);
        assert_eq!(s.redis.namespace, "ns1");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "c.toml", "[worker]\nconcurency = 2\n");
        let e = Settings::load(Some(&p), env(&[])).unwrap_err().to_string();
        assert!(e.contains("concurency"), "{e}");
        let e = Settings::load(None, env(&[("TIKTOK_POSTER__WORKER__THREADS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("threads"), "{e}");
    }

    #[test]
    fn validation_names_every_bad_key_and_its_variable() {
        let e = Settings::load(
            None,
            env(&[
                ("TIKTOK_POSTER__WORKER__CONCURRENCY", "0"),
                ("TIKTOK_POSTER__HTTP__LISTEN", "localhost"),
                ("TIKTOK_POSTER__REDIS__URL", "http://x"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("worker.concurrency: 0 is out of range")
                && e.contains("TIKTOK_POSTER__WORKER__CONCURRENCY"),
            "{e}"
        );
        assert!(e.contains("http.listen"), "{e}");
        assert!(e.contains("redis.url"), "{e}");
    }

    #[test]
    fn the_client_secret_comes_from_a_file_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = write(&dir, "secret", "s3cr3t-value\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let s = Settings::load(
            None,
            env(&[(
                "TIKTOK_POSTER__TIKTOK__CLIENT_SECRET_FILE",
                secret.to_str().unwrap(),
            )]),
        )
        .unwrap();
        assert_eq!(
            s.tiktok.client_secret.as_ref().unwrap().expose(),
            "s3cr3t-value"
        );
        assert!(!s.to_masked_toml().contains("s3cr3t"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let both = Settings::load(
            None,
            env(&[
                (
                    "TIKTOK_POSTER__TIKTOK__CLIENT_SECRET_FILE",
                    secret.to_str().unwrap(),
                ),
                ("TIKTOK_POSTER__TIKTOK__CLIENT_SECRET", "x"),
            ]),
        );
        assert!(both.unwrap_err().to_string().contains("both set"));
        let missing = Settings::load(
            None,
            env(&[(
                "TIKTOK_POSTER__TIKTOK__CLIENT_SECRET_FILE",
                "/nonexistent/secret",
            )]),
        );
        assert!(missing.unwrap_err().to_string().contains("cannot read it"));
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let e = resolve_path(Some(Path::new("/nonexistent/c.toml")), None).unwrap_err();
        assert!(e.to_string().contains("--config"));
        let e = resolve_path(None, Some("/nonexistent/c.toml".into())).unwrap_err();
        assert!(e.to_string().contains(CONFIG_ENV));
    }

    /// The README's configuration table names every key of the example, so neither drifts.
    #[test]
    fn the_readme_lists_every_config_key() {
        let readme = include_str!("../README.md");
        let example = include_str!("../config.example.toml");
        let mut section = "";
        let mut missing = Vec::new();
        for line in example.lines() {
            let l = line.trim_start_matches('#').trim();
            if l.starts_with('[') && l.ends_with(']') {
                section = l.trim_matches(|c| c == '[' || c == ']');
                continue;
            }
            let Some((key, _)) = l.split_once(" = ") else {
                continue;
            };
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            let name = format!("`{section}.{key}`");
            if !readme.contains(&name) {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "README lacks {missing:?}");
    }
}
