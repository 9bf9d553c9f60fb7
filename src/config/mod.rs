//! Typed settings: defaults in code, then the TOML file, then `TIKTOK_POSTER__SECTION__KEY` variables;
//! unknown keys refused; secrets from the file, a variable or a `*_file` path; every value validated with
//! a message that names the key and the fix.
//!
//! The file is the first of: `--config PATH`, `$TIKTOK_POSTER_CONFIG`, `./config.toml`,
//! `/etc/tiktok-poster/config.toml`. Without any, defaults and variables alone are used.

//!
//! One file per section family (`redis`, `tiktok`, `http`, `worker`, `tokens`, `video`,
//! `log`, `warmup`), the checks of every value in `validate.rs`; this file holds the loading and layering.
//! The configuration is near the bottom of the layers (only `db` is below it): it describes values
//! and knows none of the code that consumes them. The wiring turns settings into token keys and a
//! TikTok client (`daemon/settings.rs`), the worker reads [`WorkerConfig`].

mod http;
mod log;
mod redis;
#[cfg(test)]
mod tests;
mod tiktok;
mod tokens;
mod validate;
mod video;
mod warmup;
mod worker;

pub use http::HttpSettings;
pub use log::{LogFormat, LogSettings};
pub use redis::RedisSettings;
pub use tiktok::{AppType, TikTokSettings};
pub use tokens::TokenSettings;
pub use video::{Policy, VideoSettings};
pub use warmup::WarmupSettings;
pub use worker::{WorkerConfig, WorkerSettings};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// `[warmup]`
    pub warmup: WarmupSettings,
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
                .with_list_parse_key("redis.sentinels")
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
        if let Some(file) = &self.redis.sentinel_password_file {
            if self.redis.sentinel_password.is_some() {
                return Err(ConfigError(
                    "redis.sentinel_password and redis.sentinel_password_file are both set; keep only one (the file is preferred)".into(),
                ));
            }
            let text = read_private_file("redis.sentinel_password_file", file)?;
            if text.is_empty() {
                return Err(ConfigError(format!(
                    "redis.sentinel_password_file = {} is empty; put the sentinels' password (requirepass in sentinel.conf) in it",
                    file.display()
                )));
            }
            self.redis.sentinel_password = Some(Secret(SecretString::from(text)));
        }
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
            let secret = read_private_file("tiktok.client_secret_file", file)?;
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

    /// True when no client key is configured, which is fine only against a simulator.
    pub fn has_credentials(&self) -> bool {
        !self.tiktok.client_key.is_empty()
            && self
                .tiktok
                .client_secret
                .as_ref()
                .is_some_and(|s| !s.expose().is_empty())
    }

    pub fn to_masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.redis.url = crate::db::redact_url(&self.redis.url);
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render settings: {e}\n"))
    }
}

/// The trimmed text of a secret file named by `key`: refused when other users may read it, and read
/// up to 64 KB (a password or a secret is a line).
fn read_private_file(key: &str, file: &std::path::Path) -> Result<String, ConfigError> {
    use std::io::Read;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(file) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError(format!(
                "{key} = {}: mode {mode:03o} lets other users read it; run `chmod 600 {}` (as the token key file must be)",
                file.display(),
                file.display()
            )));
        }
    }
    let cannot = |e: std::io::Error| {
        ConfigError(format!(
            "{key} = {}: cannot read it ({e}); check the path and that the service user may read it",
            file.display()
        ))
    };
    let mut text = String::new();
    std::fs::File::open(file)
        .map_err(cannot)?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    Ok(text.trim().to_string())
}
