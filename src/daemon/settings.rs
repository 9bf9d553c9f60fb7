//! Settings turned into the things they configure: the token keys and the TikTok client's settings.
//! These are inherent methods of [`Settings`] written here, in the wiring, because the configuration
//! is below the token store and the TikTok client in the layers and must not know its consumers.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::config::{ConfigError, Settings};

impl Settings {
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
        if let Some(path) = &self.tiktok.ca_file {
            let pem = crate::tiktok::read_ca_file(path)
                .map_err(|e| ConfigError(format!("tiktok.ca_file: {e}")))?;
            c.extra_roots_pem = Some(pem);
        }
        Ok(c)
    }
}
