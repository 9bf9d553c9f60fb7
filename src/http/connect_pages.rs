//! The connect pages: `/connect` (starts TikTok's authorization), `/oauth/callback` (finishes it) and
//! `POST /connect/replace`, the confirm step that connects an existing account to another TikTok
//! user.
//!
//! Reconnecting an account to the TikTok user it has renews its grant. When the user who approved is
//! another one, the callback changes nothing and shows a page that says so, with a Replace button: a
//! form carrying a one-time token (kept in Redis for a few minutes, bound to the account), so a link
//! from elsewhere cannot replace an account; only a person on this page can.

use axum::extract::{Form, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use redis::AsyncCommands;

use super::{AppState, esc, page};
use crate::accounts::connect::{self, ConnectError};
use crate::db::random_id;

/// `GET /connect?account=NAME`: to TikTok's authorize page (`sim_*` parameters are passed on).
pub async fn connect_start(
    State(st): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let name = q
        .iter()
        .find(|(k, _)| k == "account")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    begin(&st, &name, sim_params(q), false).await
}

fn sim_params(q: Vec<(String, String)>) -> Vec<(String, String)> {
    q.into_iter()
        .filter(|(k, _)| k.starts_with("sim_"))
        .collect()
}

async fn begin(st: &AppState, name: &str, extra: Vec<(String, String)>, replace: bool) -> Response {
    match connect::begin(&st.accounts, &st.keys, &st.settings, name, extra, replace).await {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(e) => {
            let status = match e {
                ConnectError::TooManyPending => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            (
                status,
                page(
                    "Cannot connect",
                    &format!(
                        "<p class=bad>{}</p><p><a href=/>Back</a></p>",
                        esc(&e.to_string())
                    ),
                ),
            )
                .into_response()
        }
    }
}

/// `GET /oauth/callback`.
pub async fn callback(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    match connect::complete(&st.accounts, &st.keys, &st.settings, &query).await {
        Ok(a) => page(
            "Connected",
            &format!("<p class=ok>Account <b>{}</b> is connected to TikTok user @{}.</p><p><a href=/>Back to the accounts</a></p>", esc(&a.name), esc(&a.username)),
        )
        .into_response(),
        Err(ConnectError::OtherUser { account, connected, approved }) => other_user(&st, &account, &connected, &approved).await,
        Err(e) => (StatusCode::BAD_REQUEST, page("Connection failed", &format!("<p class=bad>{}</p><p><a href=/>Back</a></p>", esc(&e.to_string())))).into_response(),
    }
}

/// The refusal page, with the confirm step.
async fn other_user(st: &AppState, account: &str, connected: &str, approved: &str) -> Response {
    let token = random_id();
    let mut conn = st.accounts.conn.clone();
    let stored: redis::RedisResult<()> = conn
        .set_ex(
            st.keys.oauth_confirm(&token),
            account,
            connect::STATE_TTL_SECS,
        )
        .await;
    let button = match stored {
        Ok(()) => format!(
            "<form method=post action=/connect/replace><input type=hidden name=account value=\"{a}\"><input type=hidden name=confirm value=\"{token}\">\
<p>To connect <b>{a}</b> to another TikTok user instead, replace it; TikTok asks for the approval again.</p>\
<button type=submit>Replace @{c} with another TikTok user</button></form>",
            a = esc(account),
            c = esc(connected)
        ),
        Err(_) => "<p>Redis cannot be reached now; try again later.</p>".into(),
    };
    (
        StatusCode::CONFLICT,
        page(
            "Another TikTok user",
            &format!(
                "<p class=bad>Account <b>{a}</b> is connected to TikTok user @{c}, and the app was just approved as @{n}, a different TikTok user. Nothing was changed, and the new approval was given back.</p>{button}<p><a href=/>Back</a></p>",
                a = esc(account),
                c = esc(connected),
                n = esc(approved)
            ),
        ),
    )
        .into_response()
}

/// `POST /connect/replace` (account, confirm, and `sim_*` passed on): the operator confirmed
/// replacing the account's TikTok user; starts a connect that may do so.
pub async fn replace(
    State(st): State<AppState>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (account, confirm) = (get("account"), get("confirm"));
    let mut conn = st.accounts.conn.clone();
    let bound: Option<String> = if confirm.is_empty() {
        None
    } else {
        redis::cmd("GETDEL")
            .arg(st.keys.oauth_confirm(&confirm))
            .query_async(&mut conn)
            .await
            .unwrap_or(None)
    };
    if bound.as_deref() != Some(account.as_str()) || account.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            page(
                "Cannot replace",
                "<p class=bad>This confirmation is unknown, expired or already used; connect the account again from the accounts page.</p><p><a href=/>Back</a></p>",
            ),
        )
            .into_response();
    }
    begin(&st, &account, sim_params(form), true).await
}
