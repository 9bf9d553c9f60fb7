//! The daemon's HTTP server: the accounts page with its "Connect TikTok" button, the OAuth callback,
//! and `/healthz`. Plain HTML forms; no JavaScript. Loopback by default (`[http] listen`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

use crate::accounts::{Accounts, connect};
use crate::config::Settings;
use crate::db::{Keys, now_ms};
use crate::queue::JobStore;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Tokens.
    pub accounts: Accounts,
    /// Key names.
    pub keys: Keys,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The job store (for health).
    pub store: JobStore,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/connect", get(connect_start))
        .route("/oauth/callback", get(callback))
        .route("/healthz", get(healthz))
        .with_state(state)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{t} · tiktok-poster</title><style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#111}}\
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}}\
.bad{{color:#a00}}.ok{{color:#070}}button{{font-size:1rem;padding:.4rem .9rem}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

async fn index(State(st): State<AppState>) -> Response {
    let accounts = match st.accounts.list().await {
        Ok(a) => a,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                page(
                    "TikTok accounts",
                    &format!(
                        "<p class=bad>Cannot read accounts: {}</p>",
                        esc(&e.to_string())
                    ),
                ),
            )
                .into_response();
        }
    };
    let mut rows = String::new();
    for a in &accounts {
        let state_class = if a.state == "ok" { "ok" } else { "bad" };
        let warn = if a.refresh_expires_ms - now_ms() < 7 * 86_400_000 {
            " class=bad"
        } else {
            ""
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>@{}</td><td class={state_class}>{}</td><td>{}</td><td{warn}>{}</td></tr>",
            esc(&a.name),
            esc(&a.username),
            esc(&a.state),
            when(a.access_expires_ms),
            when(a.refresh_expires_ms)
        ));
    }
    if accounts.is_empty() {
        rows.push_str("<tr><td colspan=5>No account is connected yet.</td></tr>");
    }
    let body = format!(
        "<table><thead><tr><th>Account</th><th>TikTok user</th><th>Token</th><th>Access token expires</th><th>Reconnect before</th></tr></thead><tbody>{rows}</tbody></table>\
<h2>Connect an account</h2><form method=get action=/connect><label>Account name <input name=account required pattern=\"[A-Za-z0-9._-]{{1,64}}\"></label> \
<button type=submit>Connect TikTok</button></form>"
    );
    page("TikTok accounts", &body).into_response()
}

async fn connect_start(
    State(st): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let name = q
        .iter()
        .find(|(k, _)| k == "account")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let extra: Vec<(String, String)> = q
        .into_iter()
        .filter(|(k, _)| k.starts_with("sim_"))
        .collect();
    match connect::begin(&st.accounts, &st.keys, &st.settings, &name, extra).await {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            page(
                "Cannot connect",
                &format!("<p class=bad>{}</p><p><a href=/>Back</a></p>", esc(&e)),
            ),
        )
            .into_response(),
    }
}

async fn callback(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
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
        Err(e) => (StatusCode::BAD_REQUEST, page("Connection failed", &format!("<p class=bad>{}</p><p><a href=/>Back</a></p>", esc(&e)))).into_response(),
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    let depth = st.store.depth().await;
    let accounts = st.accounts.list().await.unwrap_or_default();
    let reauth = accounts.iter().filter(|a| a.state != "ok").count();
    let ok = depth.is_ok();
    let (due, leased) = depth.unwrap_or((0, 0));
    let body = json!({"ok": ok, "redis": ok, "queue": {"due_or_scheduled": due, "leased": leased}, "accounts": accounts.len(), "accounts_needing_reconnect": reauth});
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        axum::Json(body),
    )
        .into_response()
}
