//! Validation of every value after loading: each problem names its key, the variable that sets it
//! and the fix, and all of them are reported at once (one per line) so a broken file is fixed in one
//! pass. The messages are part of the public contract: tests and the README quote them.

use std::net::SocketAddr;

use url::Url;

use super::{ConfigError, Settings};

impl Settings {
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
        let ns = &self.redis.namespace;
        if ns.contains(['{', '}']) && crate::db::hash_tag(ns).is_none() {
            bad(
                "redis.namespace",
                "REDIS__NAMESPACE",
                format!(
                    "{ns:?} has braces that enclose no hash tag: write the whole namespace in braces, e.g. \"{{tiktok-poster}}\", or none"
                ),
            );
        }
        for (key, env, msg) in self.redis_ha_problems() {
            bad(key, env, msg);
        }
        for (key, env, msg) in self.redis_tls_problems() {
            bad(key, env, msg);
        }
        for (key, env, msg) in self.warmup.problems() {
            bad(key, env, msg);
        }
        if self.tiktok.scopes.is_empty() {
            bad(
                "tiktok.scopes",
                "TIKTOK__SCOPES",
                format!(
                    "at least one scope is needed, e.g. {:?}",
                    crate::tiktok::oauth::REQUIRED_SCOPES
                ),
            );
        }
        if let Some(path) = &self.tiktok.ca_file
            && let Err(e) = crate::tiktok::read_ca_file(path)
        {
            bad("tiktok.ca_file", "TIKTOK__CA_FILE", e);
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
                "worker.confirm_look_ms",
                "WORKER__CONFIRM_LOOK_MS",
                self.worker.confirm_look_ms,
                10,
                3_600_000,
            ),
            (
                "worker.daily_post_budget",
                "WORKER__DAILY_POST_BUDGET",
                self.worker.daily_post_budget as u64,
                1,
                1000,
            ),
            (
                "worker.blocked_recheck_secs",
                "WORKER__BLOCKED_RECHECK_SECS",
                self.worker.blocked_recheck_secs,
                1,
                7 * 86_400,
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
}
