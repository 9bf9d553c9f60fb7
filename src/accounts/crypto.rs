//! Sealing tokens: XChaCha20-Poly1305 with the account name as associated data.
//!
//! A sealed value is `v1.<key id>.<base64url(nonce || ciphertext)>`. The key id (the first 8 hex digits
//! of SHA-256 of the key) is stored with each value so that `keys rotate` can tell which key sealed it.
//! Binding the account name as associated data means a sealed token copied to another account's record
//! does not open.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Why sealing or opening failed. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file cannot be used.
    #[error("token key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// The value was sealed with another key.
    #[error(
        "this token was sealed with key {found}, but the configured key is {expected}; configure the old key or connect the account again"
    )]
    WrongKey {
        /// Key id in the value.
        found: String,
        /// Key id configured.
        expected: String,
    },
    /// Tampered, truncated, or sealed for another account.
    #[error("a sealed token does not open (corrupt, or sealed for another account)")]
    Corrupt,
}

/// The token sealing key.
#[derive(Clone)]
pub struct TokenKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key from 32 bytes.
    pub fn from_bytes(key: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(key)[..4]);
        Self { key, id }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self::from_bytes(key)
    }

    /// The key's id (stored beside every sealed value).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads a key file: exactly 32 bytes, or 64 hex digits (a trailing newline is allowed). Refused if
    /// the group or others may read it.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::Key {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            err(format!(
                "cannot read it ({e}); create one with `tiktok-poster keys generate {}`",
                path.display()
            ))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "mode {mode:03o} lets other users read it; run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        let raw = std::fs::read(path).map_err(|e| err(format!("cannot read it ({e})")))?;
        let bytes: Vec<u8> = if raw.len() == 32 {
            raw
        } else {
            let text = String::from_utf8_lossy(&raw).trim().to_string();
            hex::decode(&text).map_err(|_| err("must hold 32 raw bytes or 64 hex digits".into()))?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("must hold 32 raw bytes or 64 hex digits".into()))?;
        Ok(Self::from_bytes(key))
    }

    /// Writes a new random key file with mode 0600; refuses to overwrite.
    pub fn generate_file(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::Key {
            path: path.display().to_string(),
            reason,
        };
        let key = Self::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(path)
            .map_err(|e| err(format!("cannot create it ({e}); it must not exist yet")))?;
        std::io::Write::write_all(&mut f, hex::encode(key.key).as_bytes())
            .and_then(|_| std::io::Write::write_all(&mut f, b"\n"))
            .map_err(|e| err(format!("cannot write it ({e})")))?;
        Ok(key)
    }

    /// Seals a secret for an account.
    pub fn seal(&self, account: &str, secret: &SecretString) -> String {
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: account.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut buf = nonce.to_vec();
        buf.extend_from_slice(&ct);
        format!("v1.{}.{}", self.id, URL_SAFE_NO_PAD.encode(buf))
    }

    /// Opens a sealed value for an account.
    pub fn open(&self, account: &str, sealed: &str) -> Result<SecretString, CryptoError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Corrupt);
        };
        if id != self.id {
            return Err(CryptoError::WrongKey {
                found: id.to_string(),
                expected: self.id.clone(),
            });
        }
        let buf = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CryptoError::Corrupt)?;
        if buf.len() < 24 + 16 {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ct) = buf.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let pt = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: account.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(pt)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Corrupt)
    }

    /// The key id of a sealed value.
    pub fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.strip_prefix("v1.")?.split('.').next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_for_its_account_and_key() {
        let k = TokenKey::generate();
        let s = k.seal("main", &SecretString::from("act.secret".to_string()));
        assert!(!s.contains("act.secret"));
        assert_eq!(TokenKey::key_id_of(&s), Some(k.id()));
        assert_eq!(k.open("main", &s).unwrap().expose_secret(), "act.secret");
        assert!(matches!(k.open("other", &s), Err(CryptoError::Corrupt)));
        let k2 = TokenKey::generate();
        assert!(matches!(
            k2.open("main", &s),
            Err(CryptoError::WrongKey { .. })
        ));
        let mut tampered = s.clone();
        tampered.pop();
        tampered.push(if s.ends_with('A') { 'B' } else { 'A' });
        assert!(k.open("main", &tampered).is_err());
    }

    #[test]
    fn key_files_are_generated_private_and_refused_when_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token.key");
        let k = TokenKey::generate_file(&p).unwrap();
        assert_eq!(TokenKey::load(&p).unwrap().id(), k.id());
        assert!(
            TokenKey::generate_file(&p).is_err(),
            "never overwrites a key"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = TokenKey::load(&p).unwrap_err().to_string();
            assert!(e.contains("chmod 600"), "{e}");
        }
    }
}
