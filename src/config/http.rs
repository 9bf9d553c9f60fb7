//! `[http]`: the daemon's listeners.

use serde::{Deserialize, Serialize};

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
