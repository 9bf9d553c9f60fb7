//! `[redis]`: where the daemon's Redis is, how a TLS connection to it is trusted, and the namespace
//! of its keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Settings;

/// `[redis]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// `redis://host:port/db`, `rediss://` for TLS, or `unix:///path`.
    pub url: String,
    /// PEM file of the CA that signed the server's certificate (`rediss://` only); unset: the host's
    /// root certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate this daemon presents to a server that asks for one (mutual TLS), with
    /// `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Prefix of every key the daemon owns.
    pub namespace: String,
    /// Start even when Redis may evict keys (`maxmemory-policy allkeys-*`), which can drop posts.
    pub allow_eviction: bool,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            namespace: "tiktok-poster".into(),
            allow_eviction: false,
        }
    }
}

impl Settings {
    /// Where every connection of the daemon and the CLI goes, TLS files included.
    pub fn redis_target(&self) -> crate::db::Target {
        crate::db::Target {
            url: self.redis.url.clone(),
            ca_file: self.redis.ca_file.clone(),
            client_cert_file: self.redis.client_cert_file.clone(),
            client_key_file: self.redis.client_key_file.clone(),
        }
    }

    /// The problems of the TLS settings: (key, variable, message).
    pub(super) fn redis_tls_problems(&self) -> Vec<(&'static str, &'static str, String)> {
        let r = &self.redis;
        let mut out = Vec::new();
        let tls = url::Url::parse(&r.url).is_ok_and(|u| u.scheme() == "rediss");
        let files = [
            ("redis.ca_file", "REDIS__CA_FILE", &r.ca_file),
            (
                "redis.client_cert_file",
                "REDIS__CLIENT_CERT_FILE",
                &r.client_cert_file,
            ),
            (
                "redis.client_key_file",
                "REDIS__CLIENT_KEY_FILE",
                &r.client_key_file,
            ),
        ];
        for (key, env, path) in files {
            let Some(path) = path else { continue };
            if !tls {
                out.push((
                    key,
                    env,
                    "is for TLS only: use a rediss:// [redis] url, or remove it".to_string(),
                ));
            } else if let Err(e) = crate::db::Target::read_check(key, path) {
                out.push((key, env, e));
            }
        }
        match (&r.client_cert_file, &r.client_key_file) {
            (Some(_), None) => out.push((
                "redis.client_key_file",
                "REDIS__CLIENT_KEY_FILE",
                "is missing: client_cert_file needs the private key that goes with it".to_string(),
            )),
            (None, Some(_)) => out.push((
                "redis.client_cert_file",
                "REDIS__CLIENT_CERT_FILE",
                "is missing: client_key_file needs the certificate that goes with it".to_string(),
            )),
            _ => {}
        }
        if tls && out.is_empty() {
            // Parsed as the connection will: each part alone, so the message names the right key.
            let t = self.redis_target();
            let ca_only = crate::db::Target {
                client_cert_file: None,
                client_key_file: None,
                ..t.clone()
            };
            if let Some(Err(e)) = ca_only.ca_file.is_some().then(|| ca_only.client()) {
                out.push((
                    "redis.ca_file",
                    "REDIS__CA_FILE",
                    format!("cannot be parsed as PEM certificates ({e})"),
                ));
            }
            let client_only = crate::db::Target { ca_file: None, ..t };
            let client = client_only.client_cert_file.is_some();
            if let Some(Err(e)) = client.then(|| client_only.client()) {
                out.push((
                    "redis.client_cert_file",
                    "REDIS__CLIENT_CERT_FILE",
                    format!("the certificate or its key cannot be parsed as PEM ({e})"),
                ));
            }
        }
        out
    }
}
