//! OAuth v2 (Login Kit): the authorize URL, PKCE, code exchange, refresh and revoke.
//!
//! Token responses are judged by their body, never by their HTTP status: TikTok has been seen answering
//! HTTP 200 with `{"error":"invalid_grant",…}` (`tiktok-api.md` 2.6). A body with a non-empty `error`, or
//! without an `access_token`, is a failure.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::body::{Reply, send_and_read};
use super::{Client, ErrorKind, TikTokError, join};

/// The scopes a posting account needs: its identity (`user.info.basic`), its public posts
/// (`video.list`: confirming posts whose outcome is unknown, the warm-up's activity check, the posts'
/// counts), Direct Post (`video.publish`) and inbox drafts (`video.upload`). The configuration's
/// default list; `user.info.stats` may be added (the warm-up then also reads `video_count`).
pub const REQUIRED_SCOPES: [&str; 4] = [
    "user.info.basic",
    super::display::SCOPE_VIDEO_LIST,
    "video.upload",
    PUBLISH_SCOPE,
];

/// The scope that allows Direct Post, and with it the `creator_info` query that names the creator.
pub const PUBLISH_SCOPE: &str = "video.publish";

/// The query parameter of the authorize URL (and of the callback) that carries the CSRF state.
pub const STATE_PARAM: &str = "state";

/// What TikTok's redirect back to the app (the OAuth callback) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// The user approved: the code to exchange and the state to match.
    Granted {
        /// The authorization code.
        code: String,
        /// The state given on the authorize URL.
        state: String,
    },
    /// TikTok (or the user) refused; [`Callback::refusal`] puts it in words.
    Refused {
        /// TikTok's `error`.
        error: String,
        /// TikTok's `error_description` (empty when absent).
        description: String,
    },
    /// Neither a code and state nor an error: not a callback TikTok made.
    Incomplete,
}

impl Callback {
    /// Reads the callback's query parameters.
    pub fn parse(query: &[(String, String)]) -> Self {
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        if let Some(error) = get("error") {
            return Self::Refused {
                error,
                description: get("error_description").unwrap_or_default(),
            };
        }
        match (get("code"), get(STATE_PARAM)) {
            (Some(code), Some(state)) => Self::Granted { code, state },
            _ => Self::Incomplete,
        }
    }

    /// A refusal in words for the operator, with TikTok's code and description; `None` unless
    /// [`Callback::Refused`].
    pub fn refusal(&self) -> Option<String> {
        let Self::Refused { error, description } = self else {
            return None;
        };
        let words = match error.as_str() {
            "access_denied" => "the TikTok user declined to connect the app",
            "invalid_scope" => {
                "TikTok refused the requested scopes; check [tiktok] scopes and the app's products"
            }
            "invalid_request" => {
                "TikTok refused the request (often a redirect_uri that is not registered for the app)"
            }
            _ => "TikTok refused the connection",
        };
        Some(format!("{words} ({error}: {description})"))
    }
}

/// PKCE for a desktop app, with TikTok's non-standard challenge: the lowercase **hex** SHA-256 of the
/// verifier (not RFC 7636's base64url), method `S256`.
#[derive(Clone)]
pub struct Pkce {
    /// Kept until the code exchange; 64 characters from the unreserved set.
    pub verifier: SecretString,
    /// `hex(sha256(verifier))`, sent on the authorize URL.
    pub challenge: String,
}

impl Pkce {
    /// A fresh verifier (one per authorization request) and its challenge.
    pub fn generate() -> Self {
        const UNRESERVED: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
        let mut rng = rand::rng();
        let verifier: String = (0..64)
            .map(|_| UNRESERVED[rng.random_range(0..UNRESERVED.len())] as char)
            .collect();
        Self::from_verifier(verifier)
    }

    /// The challenge for a given verifier.
    pub fn from_verifier(verifier: String) -> Self {
        let challenge = challenge_for(&verifier);
        Self {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }
}

impl fmt::Debug for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

/// TikTok's PKCE challenge: lowercase hex of SHA-256 of the verifier.
pub fn challenge_for(verifier: &str) -> String {
    hex::encode(Sha256::digest(verifier.as_bytes()))
}

/// What goes on the authorize URL.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// Scopes to ask for, e.g. `user.info.basic`, `video.publish`, `video.upload`.
    pub scopes: Vec<String>,
    /// Must match a redirect URI registered for the app.
    pub redirect_uri: String,
    /// The CSRF token echoed back on the callback.
    pub state: String,
    /// Present for desktop apps.
    pub pkce_challenge: Option<String>,
    /// Extra query parameters (the simulator uses these to pick a simulated creator).
    pub extra: Vec<(String, String)>,
}

/// A token grant. `Debug` never shows the tokens.
#[derive(Clone)]
pub struct TokenSet {
    /// `act.…`; sent as the bearer token.
    pub access_token: SecretString,
    /// Seconds the access token lives, as TikTok said (24 h in one version of the docs, 2 h in another:
    /// never assume either).
    pub expires_in: Duration,
    /// `rft.…`; may rotate on every refresh, and the new one must replace the old.
    pub refresh_token: SecretString,
    /// Seconds the refresh token lives (365 days from the first grant, per the docs).
    pub refresh_expires_in: Duration,
    /// The user's id for this app.
    pub open_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `Bearer`.
    pub token_type: String,
}

impl TokenSet {
    /// True when the grant includes Direct Post (`PUBLISH_SCOPE`), and with it `creator_info`.
    pub fn can_publish(&self) -> bool {
        self.scopes.iter().any(|s| s == PUBLISH_SCOPE)
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"[redacted]")
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("open_id", &self.open_id)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl Client {
    /// The URL of TikTok's authorize page for this request (`response_type=code`, comma-separated
    /// scopes, and `code_challenge`/`code_challenge_method=S256` for PKCE).
    pub fn authorize_url(&self, req: &AuthorizeRequest) -> Url {
        let mut url = join(&self.cfg.auth_base, "/v2/auth/authorize/");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_key", &self.cfg.client_key)
                .append_pair("scope", &req.scopes.join(","))
                .append_pair("redirect_uri", &req.redirect_uri)
                .append_pair(STATE_PARAM, &req.state)
                .append_pair("response_type", "code");
            if let Some(challenge) = &req.pkce_challenge {
                q.append_pair("code_challenge", challenge)
                    .append_pair("code_challenge_method", "S256");
            }
            for (k, v) in &req.extra {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Exchanges an authorization code (as received on the callback) for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&SecretString>,
    ) -> Result<TokenSet, TikTokError> {
        let secret = self.cfg.client_secret.expose_secret().to_string();
        let mut form = vec![
            ("client_key", self.cfg.client_key.clone()),
            ("client_secret", secret),
            ("code", code.to_string()),
            ("grant_type", "authorization_code".to_string()),
            ("redirect_uri", redirect_uri.to_string()),
        ];
        if let Some(v) = code_verifier {
            form.push(("code_verifier", v.expose_secret().to_string()));
        }
        self.token_call("code exchange", &form).await
    }

    /// Trades a refresh token for a new access token (and possibly a new refresh token, which the caller
    /// must store atomically with the access token).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenSet, TikTokError> {
        let form = vec![
            ("client_key", self.cfg.client_key.clone()),
            (
                "client_secret",
                self.cfg.client_secret.expose_secret().to_string(),
            ),
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.expose_secret().to_string()),
        ];
        self.token_call("token refresh", &form).await
    }

    /// Revokes an access token. Success is an empty body (or any body without an `error`).
    pub async fn revoke(&self, access_token: &SecretString) -> Result<(), TikTokError> {
        let op = "token revoke";
        let form = [
            ("client_key", self.cfg.client_key.clone()),
            (
                "client_secret",
                self.cfg.client_secret.expose_secret().to_string(),
            ),
            ("token", access_token.expose_secret().to_string()),
        ];
        let req = self
            .api
            .post(self.api_url("/v2/oauth/revoke/"))
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .form(&form);
        let Reply { status, body, .. } = send_and_read(op, req).await?;
        if let Some(err) = flat_error(op, status, &body) {
            return Err(err);
        }
        if !(200..300).contains(&status) {
            return Err(
                TikTokError::new(op, ErrorKind::OAuth, format!("http_{status}"))
                    .with_status(status),
            );
        }
        Ok(())
    }

    async fn token_call(&self, op: &str, form: &[(&str, String)]) -> Result<TokenSet, TikTokError> {
        let req = self
            .api
            .post(self.api_url("/v2/oauth/token/"))
            .header(reqwest::header::CACHE_CONTROL, "no-cache")
            .form(form);
        let Reply { status, body, .. } = send_and_read(op, req).await?;
        parse_token_response(op, status, &body)
    }
}

/// The flat OAuth error (`error`, `error_description`, `log_id`), or the posting envelope's error object,
/// if the body holds one.
fn flat_error(op: &str, status: u16, body: &[u8]) -> Option<TikTokError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    match v.get("error") {
        Some(Value::String(code)) if !code.is_empty() => Some(
            TikTokError::new(op, ErrorKind::OAuth, code.clone())
                .with_status(status)
                .with_message(
                    v.get("error_description")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                )
                .with_log_id(v.get("log_id").and_then(Value::as_str).map(str::to_string)),
        ),
        Some(Value::Object(e)) => {
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            if code.is_empty() || code == "ok" {
                return None;
            }
            Some(
                TikTokError::new(op, ErrorKind::OAuth, code)
                    .with_status(status)
                    .with_message(e.get("message").and_then(Value::as_str).unwrap_or(""))
                    .with_log_id(e.get("log_id").and_then(Value::as_str).map(str::to_string)),
            )
        }
        _ => None,
    }
}

/// Judges a token response by its body.
pub(crate) fn parse_token_response(
    op: &str,
    status: u16,
    body: &[u8],
) -> Result<TokenSet, TikTokError> {
    if let Some(err) = flat_error(op, status, body) {
        return Err(err);
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        let code = if (200..300).contains(&status) {
            "decode".to_string()
        } else {
            format!("http_{status}")
        };
        let kind = if (200..300).contains(&status) {
            ErrorKind::Decode
        } else {
            ErrorKind::OAuth
        };
        TikTokError::new(op, kind, code)
            .with_status(status)
            .with_message("token response is not JSON")
    })?;
    // Some proxies and SDKs wrap the grant in `data`; accept both.
    let g = match v.get("data") {
        Some(d @ Value::Object(_)) if d.get("access_token").is_some() => d,
        _ => &v,
    };
    let s = |k: &str| g.get(k).and_then(Value::as_str).map(str::to_string);
    let n = |k: &str| {
        g.get(k).and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let missing = |what: &str| {
        TikTokError::new(op, ErrorKind::OAuth, format!("http_{status}"))
            .with_status(status)
            .with_message(format!("token response has no {what}"))
    };
    let access = s("access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("access_token"))?;
    let refresh = s("refresh_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("refresh_token"))?;
    let expires_in = n("expires_in").ok_or_else(|| missing("expires_in"))?;
    Ok(TokenSet {
        access_token: SecretString::from(access),
        expires_in: Duration::from_secs(expires_in),
        refresh_token: SecretString::from(refresh),
        refresh_expires_in: Duration::from_secs(n("refresh_expires_in").unwrap_or(365 * 24 * 3600)),
        open_id: s("open_id").unwrap_or_default(),
        scopes: s("scope")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        token_type: s("token_type").unwrap_or_else(|| "Bearer".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_lowercase_hex_sha256_of_the_verifier() {
        // echo -n abc | sha256sum
        assert_eq!(
            challenge_for("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let p = Pkce::generate();
        let v = p.verifier.expose_secret();
        assert!((43..=128).contains(&v.len()));
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        );
        assert_eq!(p.challenge.len(), 64);
        assert!(!format!("{p:?}").contains(v));
    }

    #[test]
    fn token_body_with_error_is_a_failure_even_with_http_200() {
        let e = parse_token_response(
            "token refresh",
            200,
            br#"{"error":"invalid_grant","error_description":"Refresh token is invalid.","log_id":"L"}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_grant");
        assert_eq!(e.kind, ErrorKind::OAuth);
        assert_eq!(e.log_id.as_deref(), Some("L"));
    }

    #[test]
    fn token_body_without_access_token_is_a_failure() {
        let e = parse_token_response("code exchange", 200, br#"{"open_id":"x"}"#).unwrap_err();
        assert!(e.message.contains("access_token"), "{e}");
    }

    #[test]
    fn a_grant_is_parsed_and_never_shown_in_debug() {
        let t = parse_token_response(
            "code exchange",
            200,
            br#"{"access_token":"act.SECRET1","expires_in":7200,"open_id":"o1","refresh_expires_in":31536000,"refresh_token":"rft.SECRET2","scope":"user.info.basic,video.publish","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(7200));
        assert_eq!(t.scopes, vec!["user.info.basic", "video.publish"]);
        assert!(t.can_publish());
        let dbg = format!("{t:?}");
        assert!(
            !dbg.contains("SECRET1") && !dbg.contains("SECRET2"),
            "{dbg}"
        );
    }

    #[test]
    fn a_callback_is_a_grant_a_refusal_in_words_or_incomplete() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            Callback::parse(&q(&[("code", "c"), ("state", "s")])),
            Callback::Granted {
                code: "c".into(),
                state: "s".into()
            }
        );
        let refused = Callback::parse(&q(&[
            ("error", "access_denied"),
            ("error_description", "no"),
            ("code", "c"),
        ]));
        assert_eq!(
            refused.refusal().as_deref(),
            Some("the TikTok user declined to connect the app (access_denied: no)")
        );
        assert_eq!(Callback::parse(&q(&[("code", "c")])), Callback::Incomplete);
        assert_eq!(Callback::Incomplete.refusal(), None);
    }
}
