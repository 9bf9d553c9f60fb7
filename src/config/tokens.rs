//! `[tokens]`: the key files that seal the stored tokens and the refresher's cadence. The keys are
//! loaded by the wiring (`Settings::token_keys`, in `daemon/settings.rs`): the settings name files,
//! the token store knows what a key is.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
