//! `[tiktok]`: the app's credentials, TikTok's hosts (or a simulator's) and the client's timeouts.
//! Only the values live here; what they mean to TikTok is `tiktok/`'s business, and the daemon's
//! wiring turns them into a client (`Settings::client_config`, in `daemon/settings.rs`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;

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
    /// A PEM file of CAs to trust for `api_base`, `auth_base` and the upload host, beside the built-in
    /// roots (a `sim --tls` simulator's CA, or a TLS-inspecting proxy's).
    pub ca_file: Option<PathBuf>,
}

impl Default for TikTokSettings {
    fn default() -> Self {
        Self {
            client_key: String::new(),
            client_secret: None,
            client_secret_file: None,
            redirect_uri: "http://127.0.0.1:8080/oauth/callback".into(),
            api_base: crate::tiktok::API_BASE.into(),
            auth_base: crate::tiktok::AUTH_BASE.into(),
            scopes: crate::tiktok::oauth::REQUIRED_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            app_type: AppType::Web,
            request_timeout_secs: 30,
            connect_timeout_secs: 10,
            upload_chunk_timeout_secs: 300,
            upload_chunk_retries: 5,
            ca_file: None,
        }
    }
}
