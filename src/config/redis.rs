//! `[redis]`: where the daemon's Redis is and the namespace of its keys.

use serde::{Deserialize, Serialize};

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
