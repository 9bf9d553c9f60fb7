//! The OAuth connect flow, shared by the daemon's `/connect` and `/oauth/callback` and by
//! `accounts connect`: a single-use `state` (random, expires in 10 minutes, bound to the account name)
//! is kept in Redis, so the callback may arrive at any daemon sharing the Redis.

use redis::AsyncCommands;
use url::Url;

use super::{AccountInfo, Accounts};
use crate::config::{AppType, Settings};
use crate::db::{Keys, random_id};
use crate::tiktok::{AuthorizeRequest, Pkce};

/// How long a connect link stays valid.
pub const STATE_TTL_SECS: u64 = 600;

/// True for names posts can refer to.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Starts a connect: stores a fresh state and returns TikTok's authorize URL. `extra` is passed on
/// (the simulator reads `sim_*` parameters to choose the simulated creator).
pub async fn begin(
    accounts: &Accounts,
    keys: &Keys,
    settings: &Settings,
    name: &str,
    extra: Vec<(String, String)>,
) -> Result<Url, String> {
    if !valid_name(name) {
        return Err(format!(
            "account name {name:?} is not valid; use 1 to 64 letters, digits, - _ ."
        ));
    }
    let state = random_id();
    let pkce = (settings.tiktok.app_type == AppType::Desktop).then(Pkce::generate);
    let verifier = pkce
        .as_ref()
        .map(|p| accounts.seal("oauth-state", &p.verifier))
        .unwrap_or_default();
    let mut conn = accounts.conn.clone();
    let _: () = redis::pipe()
        .hset_multiple(
            keys.oauth_state(&state),
            &[("account", name), ("verifier", verifier.as_str())],
        )
        .expire(keys.oauth_state(&state), STATE_TTL_SECS as i64)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("cannot store the connect state in Redis: {e}"))?;
    Ok(accounts.client().authorize_url(&AuthorizeRequest {
        scopes: settings.tiktok.scopes.clone(),
        redirect_uri: settings.tiktok.redirect_uri.clone(),
        state,
        pkce_challenge: pkce.map(|p| p.challenge),
        extra,
    }))
}

/// Finishes a connect from the callback's query; returns the connected account.
pub async fn complete(
    accounts: &Accounts,
    keys: &Keys,
    settings: &Settings,
    query: &[(String, String)],
) -> Result<AccountInfo, String> {
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if let Some(error) = get("error") {
        let desc = get("error_description").unwrap_or_default();
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
        return Err(format!("{words} ({error}: {desc})"));
    }
    let (Some(code), Some(state)) = (get("code"), get("state")) else {
        return Err(
            "the callback has no code or state; start again from the Connect TikTok button".into(),
        );
    };
    let mut conn = accounts.conn.clone();
    let key = keys.oauth_state(&state);
    let (fields, _): (std::collections::HashMap<String, String>, i32) = redis::pipe()
        .atomic()
        .hgetall(&key)
        .del(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("cannot read the connect state from Redis: {e}"))?;
    let Some(name) = fields.get("account").cloned() else {
        return Err("this connect link is unknown, expired or already used; start again from the Connect TikTok button".into());
    };
    let verifier = match fields.get("verifier").filter(|v| !v.is_empty()) {
        Some(sealed) => Some(
            accounts
                .unseal("oauth-state", sealed)
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let tokens = accounts
        .client()
        .exchange_code(&code, &settings.tiktok.redirect_uri, verifier.as_ref())
        .await
        .map_err(|e| format!("exchanging the authorization code failed: {e}"))?;
    let username = if tokens.scopes.iter().any(|s| s == "video.publish") {
        accounts
            .client()
            .creator_info(&tokens.access_token)
            .await
            .map(|i| i.creator_username)
            .unwrap_or_default()
    } else {
        String::new()
    };
    accounts
        .save_grant(&name, &tokens, &username)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(account = %name, username = %username, "Account connected.");
    let _ = conn
        .publish::<_, _, i64>(format!("{}:connected", keys.namespace()), &name)
        .await;
    accounts.info(&name).await.map_err(|e| e.to_string())
}
