//! `[redis]`: where the daemon's Redis is, how a TLS connection to it is trusted, and the namespace
//! of its keys.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Secret, Settings};

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
    /// Sentinels (`host:port`) to ask for the primary of `sentinel_master`. When set, `url` gives only
    /// the scheme (`redis://` or `rediss://`), the primary's credentials and the database; its host
    /// and port are replaced by the address the sentinels give.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary under (`sentinel monitor NAME …`).
    pub sentinel_master: String,
    /// The sentinels' own password (`requirepass` in sentinel.conf); prefer `sentinel_password_file`.
    pub sentinel_password: Option<Secret>,
    /// A file (mode 600) holding the sentinels' password.
    pub sentinel_password_file: Option<PathBuf>,
    /// How long the daemon waits without a usable primary (unreachable, no master known, a replica
    /// that refuses writes) before it exits with status 69 so that systemd restarts it.
    pub give_up_after_secs: u64,
    /// How many replicas must hold the record of an attempt (`WAIT`) before the daemon calls
    /// TikTok's init and before the first chunk; 0 does not wait.
    pub min_replica_acks: u32,
    /// How long one `WAIT` for `min_replica_acks` replicas may take before the post is handed back.
    pub replica_ack_timeout_ms: u64,
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
            sentinels: Vec::new(),
            sentinel_master: String::new(),
            sentinel_password: None,
            sentinel_password_file: None,
            give_up_after_secs: 300,
            min_replica_acks: 0,
            replica_ack_timeout_ms: 1000,
        }
    }
}

impl Settings {
    /// Where every connection of the daemon and the CLI goes, TLS files and sentinels included.
    pub fn redis_target(&self) -> crate::db::Target {
        let sentinel = (!self.redis.sentinels.is_empty()).then(|| crate::db::SentinelTarget {
            addrs: self.redis.sentinels.clone(),
            master: self.redis.sentinel_master.clone(),
            password: self.redis.sentinel_password.as_ref().map(|p| p.0.clone()),
        });
        crate::db::Target {
            url: self.redis.url.clone(),
            ca_file: self.redis.ca_file.clone(),
            client_cert_file: self.redis.client_cert_file.clone(),
            client_key_file: self.redis.client_key_file.clone(),
            sentinel,
        }
    }

    /// The problems of the Sentinel, give-up and replica settings: (key, variable, message).
    pub(super) fn redis_ha_problems(&self) -> Vec<(&'static str, &'static str, String)> {
        let r = &self.redis;
        let mut out = Vec::new();
        let scheme = url::Url::parse(&r.url).map(|u| u.scheme().to_string());
        match (r.sentinels.is_empty(), r.sentinel_master.trim().is_empty()) {
            (false, true) => out.push((
                "redis.sentinel_master",
                "REDIS__SENTINEL_MASTER",
                "is missing: with [redis] sentinels, name the primary the sentinels monitor (`sentinel monitor NAME …`)".to_string(),
            )),
            (true, false) => out.push((
                "redis.sentinels",
                "REDIS__SENTINELS",
                "is empty: sentinel_master needs the sentinels to ask, e.g. [\"10.0.0.1:26379\", \"10.0.0.2:26379\", \"10.0.0.3:26379\"]".to_string(),
            )),
            _ => {}
        }
        if r.sentinels.len() > crate::db::MAX_SENTINELS {
            out.push((
                "redis.sentinels",
                "REDIS__SENTINELS",
                format!(
                    "lists {} sentinels; at most {} are asked",
                    r.sentinels.len(),
                    crate::db::MAX_SENTINELS
                ),
            ));
        }
        for a in &r.sentinels {
            if let Err(why) = crate::db::parse_host_port(a) {
                out.push((
                    "redis.sentinels",
                    "REDIS__SENTINELS",
                    format!("{a:?}: {why}"),
                ));
            }
        }
        if !r.sentinels.is_empty()
            && scheme
                .as_deref()
                .is_ok_and(|s| s != "redis" && s != "rediss")
        {
            out.push((
                "redis.url",
                "REDIS__URL",
                "with [redis] sentinels the url must be redis:// or rediss:// (the sentinels give a TCP address)".to_string(),
            ));
        }
        if r.sentinels.is_empty()
            && (r.sentinel_password.is_some() || r.sentinel_password_file.is_some())
        {
            out.push((
                "redis.sentinel_password",
                "REDIS__SENTINEL_PASSWORD",
                "is set without [redis] sentinels: remove it, or list the sentinels".to_string(),
            ));
        }
        if !(1..=86_400).contains(&r.give_up_after_secs) {
            out.push((
                "redis.give_up_after_secs",
                "REDIS__GIVE_UP_AFTER_SECS",
                format!(
                    "{} is out of range (1 to 86400 seconds; default 300)",
                    r.give_up_after_secs
                ),
            ));
        }
        if r.min_replica_acks > 16 {
            out.push((
                "redis.min_replica_acks",
                "REDIS__MIN_REPLICA_ACKS",
                format!("{} is out of range (0 to 16 replicas)", r.min_replica_acks),
            ));
        }
        // Below the connection's 10 s response timeout, so a WAIT that runs its course is answered.
        if !(10..=5_000).contains(&r.replica_ack_timeout_ms) {
            out.push((
                "redis.replica_ack_timeout_ms",
                "REDIS__REPLICA_ACK_TIMEOUT_MS",
                format!(
                    "{} is out of range (10 to 5000 ms; default 1000)",
                    r.replica_ack_timeout_ms
                ),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = r.sentinels.iter().find(|a| !seen.insert(a.as_str())) {
            out.push((
                "redis.sentinels",
                "REDIS__SENTINELS",
                format!("{dup:?} is listed twice; list each sentinel once (a majority of them confirms the primary)"),
            ));
        }
        out
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
