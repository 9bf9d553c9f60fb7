//! Simulated accounts, connected the way a user connects one: the authorize page (the simulator
//! approves at once and redirects to the callback), then the code exchange.
//!
//! The steps return an error instead of panicking, so a test can assert on it (through [`TestSim`]'s
//! wrappers, which panic with the message) and a benchmark against a simulator with background faults
//! can retry.
//!
//! [`TestSim`]: super::TestSim

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use tiktok_poster::accounts::{Accounts, TokenKey};
use tiktok_poster::db::Keys;
use tiktok_poster::tiktok::{AuthorizeRequest, Client, TokenSet};
use url::Url;

/// The redirect URI of every simulated grant; nothing listens there, the redirect is read, not followed.
pub const REDIRECT: &str = "http://127.0.0.1:1/oauth/callback";

/// An authorize request for simulated creator `username` (public or private) with the scopes the
/// daemon asks for.
pub fn auth_request(username: &str, private: bool) -> AuthorizeRequest {
    AuthorizeRequest {
        scopes: tiktok_poster::config::TikTokSettings::default().scopes,
        redirect_uri: REDIRECT.into(),
        state: "st-123".into(),
        pkce_challenge: None,
        extra: vec![
            ("sim_username".into(), username.into()),
            ("sim_private".into(), private.to_string()),
        ],
    }
}

/// The value of `k` in a query.
pub fn param(q: &[(String, String)], k: &str) -> Option<String> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

/// Follows the authorize URL with `http` (which must not follow redirects) and returns the callback's
/// query.
pub async fn authorize(
    client: &Client,
    http: &reqwest::Client,
    req: &AuthorizeRequest,
) -> Result<Vec<(String, String)>, String> {
    let url = client.authorize_url(req);
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("authorize request failed: {e}"))?;
    if !resp.status().is_redirection() {
        return Err(format!(
            "authorize should redirect to the callback, got {}",
            resp.status()
        ));
    }
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !location.starts_with(&req.redirect_uri) {
        return Err(format!("redirected to {location}"));
    }
    Ok(Url::parse(&location)
        .map_err(|e| format!("redirected to {location}: {e}"))?
        .query_pairs()
        .into_owned()
        .collect())
}

/// Connects simulated creator `username` and returns its tokens.
pub async fn connect(
    client: &Client,
    http: &reqwest::Client,
    username: &str,
    private: bool,
) -> Result<TokenSet, String> {
    let req = auth_request(username, private);
    let q = authorize(client, http, &req).await?;
    let code = param(&q, "code").ok_or_else(|| format!("callback carries no code: {q:?}"))?;
    client
        .exchange_code(&code, REDIRECT, None)
        .await
        .map_err(|e| format!("code exchange failed: {e}"))
}

/// Connects simulated creator `username` as account `account` through the Connect page of the daemon
/// at `base` (its callback does the code exchange and stores the grant), as a user would.
pub async fn connect_via_daemon(base: &str, account: &str, username: &str, private: bool) {
    connect_via_daemon_with(&reqwest::Client::new(), base, account, username, private).await;
}

/// [`connect_via_daemon`] with the caller's HTTP client (one that follows redirects), e.g. one that
/// trusts a `sim --tls` simulator's CA.
pub async fn connect_via_daemon_with(
    http: &reqwest::Client,
    base: &str,
    account: &str,
    username: &str,
    private: bool,
) {
    let url =
        format!("{base}/connect?account={account}&sim_username={username}&sim_private={private}");
    let body = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("is connected"), "connect page said: {body}");
}

/// Connects `n` simulated creators `{user_prefix}0`… as accounts `a0`…, 32 at a time, stored sealed
/// under a new key at `key_path`, as `accounts connect` would. Each is retried (up to 50 times): a
/// simulator with background faults fails some OAuth calls on purpose.
pub async fn connect_accounts(
    client: &Client,
    redis_url: &str,
    key_path: &Path,
    n: usize,
    user_prefix: &str,
) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    connect_accounts_with(client, http, redis_url, key_path, n, user_prefix).await;
}

/// [`connect_accounts`] with the caller's HTTP client for the authorize page (one that follows no
/// redirects), e.g. one that trusts a `sim --tls` simulator's CA.
pub async fn connect_accounts_with(
    client: &Client,
    http: reqwest::Client,
    redis_url: &str,
    key_path: &Path,
    n: usize,
    user_prefix: &str,
) {
    let key = TokenKey::generate_file(key_path).unwrap();
    let manager = tiktok_poster::db::connect(redis_url).await.unwrap();
    let accounts = Accounts::new(manager, Keys::new("tiktok-poster"), key, client.clone());
    futures_util::stream::iter(0..n)
        .map(|i| {
            let (client, http, accounts) = (client.clone(), http.clone(), accounts.clone());
            async move {
                let username = format!("{user_prefix}{i}");
                for attempt in 0.. {
                    if let Ok(grant) = connect(&client, &http, &username, false).await
                        && accounts
                            .save_grant(&format!("a{i}"), &grant, &username)
                            .await
                            .is_ok()
                    {
                        break;
                    }
                    assert!(attempt < 50, "could not connect account {i}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}
