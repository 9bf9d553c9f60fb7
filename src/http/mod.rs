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

/// Webhook timestamps further than this from now are refused (replays).
const WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// Verifies `TikTok-Signature: t=<unix>,s=<hex>` = HMAC-SHA256(client_secret, "<t>.<body>"), in constant
/// time, and refuses stale timestamps. Returns why not.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), &'static str> {
    use hmac::Mac;
    let mut t = None;
    let mut sig = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.trim().parse::<i64>().ok(),
            Some(("s", v)) => sig = hex::decode(v.trim()).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(sig)) = (t, sig) else {
        return Err("malformed TikTok-Signature header");
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| "bad key")?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| "signature does not match")?;
    if (now_secs - t).abs() > WEBHOOK_TOLERANCE_SECS {
        return Err("stale timestamp");
    }
    Ok(())
}

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
    /// The post ledger (posts by state for `/metrics`).
    pub ledger: crate::posts::Ledger,
    /// Liveness of the main loops (for health).
    pub heartbeats: Arc<crate::health::Heartbeats>,
}

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/connect", get(connect_start))
        .route("/oauth/callback", get(callback))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route("/webhooks/tiktok", axum::routing::post(webhook))
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
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
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
            "<tr><td>{}</td><td>@{}</td><td class={state_class}>{}</td><td>{}</td><td>{}</td><td{warn}>{}</td></tr>",
            esc(&a.name),
            esc(&a.username),
            esc(&a.state),
            when(a.access_expires_ms),
            if a.next_refresh_ms > 0 { when(a.next_refresh_ms) } else { "-".into() },
            when(a.refresh_expires_ms)
        ));
    }
    if accounts.is_empty() {
        rows.push_str("<tr><td colspan=6>No account is connected yet.</td></tr>");
    }
    let body = format!(
        "<table><thead><tr><th>Account</th><th>TikTok user</th><th>Token</th><th>Access token expires</th><th>Next refresh</th><th>Reconnect before</th></tr></thead><tbody>{rows}</tbody></table>\
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

/// `POST /webhooks/tiktok`: verified, deduplicated (deliveries are at-least-once), answered at once.
async fn webhook(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use redis::AsyncCommands;
    let secret = st
        .settings
        .tiktok
        .client_secret
        .as_ref()
        .map(|s| s.expose().to_string())
        .unwrap_or_default();
    let header = headers
        .get("tiktok-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if secret.is_empty() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no client secret configured",
        )
            .into_response();
    }
    if let Err(why) = verify_signature(
        secret.as_bytes(),
        header,
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::warn!(reason = why, "Webhook refused.");
        return (StatusCode::UNAUTHORIZED, why).into_response();
    }
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let mut conn = st.accounts.conn.clone();
    let first: Option<String> = redis::cmd("SET")
        .arg(st.keys.webhook_seen(&digest))
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(72 * 3600)
        .query_async(&mut conn)
        .await
        .unwrap_or(Some("OK".into()));
    if first.is_none() {
        return (StatusCode::OK, "duplicate").into_response();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let event = v["event"].as_str().unwrap_or("");
    let open_id = v["user_openid"].as_str().unwrap_or("");
    let content: serde_json::Value = v["content"]
        .as_str()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_else(|| v["content"].clone());
    match event {
        "authorization.removed" => {
            if let Ok(Some(name)) = st.accounts.by_open_id(open_id).await {
                let reason = content["reason"].as_i64().unwrap_or(0);
                let why = format!(
                    "TikTok reported the authorization removed (reason {reason}); connect the account again"
                );
                let _ = st.accounts.mark_reauth(&name, &why).await;
                tracing::warn!(account = %name, reason, "Authorization removed at TikTok; the account must be connected again.");
            }
        }
        "post.publish.complete"
        | "post.publish.publicly_available"
        | "post.publish.inbox_delivered"
        | "post.publish.failed" => {
            let publish_id = content["publish_id"].as_str().unwrap_or("");
            let post: Option<String> = conn
                .hget(st.keys.publish_ids(), publish_id)
                .await
                .unwrap_or(None);
            if let Some(post) = post {
                let ledger = crate::posts::Ledger::new(conn.clone(), st.keys.clone());
                let draft = ledger
                    .get(&post)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|p| p.get("draft") == Some("true"));
                let mut fields: Vec<(&str, String)> = Vec::new();
                let (to, msg) = match event {
                    "post.publish.complete" => (
                        if draft { "inbox" } else { "published" },
                        String::from("webhook: publish complete"),
                    ),
                    "post.publish.inbox_delivered" => {
                        ("inbox", "webhook: delivered to the inbox".into())
                    }
                    "post.publish.publicly_available" => {
                        let id = content["post_id"]
                            .as_u64()
                            .or_else(|| content["post_id"].as_str().and_then(|s| s.parse().ok()));
                        if let Some(id) = id {
                            fields.push(("post_id", id.to_string()));
                        }
                        ("published", "webhook: publicly available".into())
                    }
                    _ => {
                        let reason = content["reason"].as_str().unwrap_or("").to_string();
                        if matches!(reason.as_str(), "internal" | "video_pull_failed") {
                            // Retryable: the worker's own status follow decides on a new attempt.
                            ("", String::new())
                        } else {
                            let text = crate::tiktok::publish::fail_reason_text(&reason);
                            fields.push(("error_code", reason.clone()));
                            fields.push((
                                "error_message",
                                format!("TikTok failed the post: {text} ({reason})"),
                            ));
                            ("failed", format!("webhook: {reason}"))
                        }
                    }
                };
                let _ = ledger.advance(&post, to, &fields, &msg).await;
            }
        }
        _ => {}
    }
    (StatusCode::OK, "ok").into_response()
}

/// `GET /metrics`: Prometheus text. Gauges about the queue and the accounts are computed now.
async fn metrics_page(State(st): State<AppState>) -> Response {
    if let Ok((due, leased)) = st.store.depth().await {
        metrics::gauge!("tiktok_poster_queue_due_or_scheduled").set(due as f64);
        metrics::gauge!("tiktok_poster_queue_leased").set(leased as f64);
    }
    if let Ok(counts) = st.ledger.state_counts().await {
        for state in crate::posts::state::ALL {
            let n = counts.get(*state).copied().unwrap_or(0).max(0);
            metrics::gauge!("tiktok_poster_posts", "state" => *state).set(n as f64);
        }
    }
    if let Ok(list) = st.accounts.list().await {
        let now = now_ms();
        let warn_ms = st.settings.tokens.reconnect_warning_days as i64 * 86_400_000;
        let ok: Vec<_> = list.iter().filter(|a| a.state == "ok").collect();
        metrics::gauge!("tiktok_poster_accounts").set(list.len() as f64);
        metrics::gauge!("tiktok_poster_accounts_reauth_required")
            .set((list.len() - ok.len()) as f64);
        metrics::gauge!("tiktok_poster_accounts_reconnect_soon").set(
            ok.iter()
                .filter(|a| a.refresh_expires_ms - now < warn_ms)
                .count() as f64,
        );
        if let Some(min) = ok.iter().map(|a| a.access_expires_ms - now).min() {
            metrics::gauge!("tiktok_poster_token_min_seconds_left").set(min as f64 / 1000.0);
        }
    }
    match crate::telemetry_metrics::handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    let problem = st.heartbeats.redis.problem();
    let workers = st.heartbeats.healthy(std::time::Duration::from_secs(30));
    // A stalled Redis must not stall the answer: what Redis cannot tell within the probe's bound is
    // reported as a stall.
    let read = tokio::time::timeout(crate::health::REDIS_PROBE_TIMEOUT, async {
        let depth = st.store.depth().await?;
        let accounts = st.accounts.list().await.unwrap_or_default();
        // How late the oldest due post is (0 when nothing is waiting past its time).
        let mut conn = st.accounts.conn.clone();
        let oldest: Vec<(String, f64)> =
            redis::AsyncCommands::zrange_withscores(&mut conn, st.keys.due(), 0, 0).await?;
        Ok::<_, redis::RedisError>((depth, accounts, oldest))
    })
    .await;
    let (redis_ok, problem, (due, leased), accounts, oldest) = match read {
        Ok(Ok((depth, accounts, oldest))) => (true, problem, depth, accounts, oldest),
        Ok(Err(e)) => (
            false,
            problem.or_else(|| Some(crate::db::explain(&e))),
            (0, 0),
            Vec::new(),
            Vec::new(),
        ),
        Err(_) => (
            false,
            Some(format!(
                "Redis does not answer within {} s (stalled or overloaded)",
                crate::health::REDIS_PROBE_TIMEOUT.as_secs()
            )),
            (0, 0),
            Vec::new(),
            Vec::new(),
        ),
    };
    let reauth = accounts.iter().filter(|a| a.state != "ok").count();
    let lag_ms = oldest
        .first()
        .map(|(_, at)| (now_ms() - *at as i64).max(0))
        .unwrap_or(0);
    let ok = redis_ok && workers && problem.is_none();
    let body = json!({
        "ok": ok,
        "redis": redis_ok && problem.is_none(),
        "problem": problem,
        "workers_alive": workers,
        "oldest_due_lag_ms": lag_ms,
        "queue": {"due_or_scheduled": due, "leased": leased},
        "accounts": accounts.len(),
        "accounts_needing_reconnect": reauth,
    });
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

/// While Redis is not reachable yet at start-up: `/healthz` says so (503), everything else waits.
pub fn starting_router() -> Router {
    Router::new().fallback(|| async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ok": false, "redis": false, "starting": true, "message": "waiting for Redis"})),
        )
    })
}

#[cfg(test)]
mod tests {
    use hmac::Mac;

    use super::verify_signature;

    fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},s={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn signatures_are_checked_in_full_and_stale_ones_refused() {
        let body = br#"{"event":"authorization.removed"}"#;
        let now = 1_800_000_000;
        assert_eq!(
            verify_signature(b"secret", &sign(b"secret", now, body), body, now),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"secret", &sign(b"other", now, body), body, now),
            Err("signature does not match")
        );
        assert_eq!(
            verify_signature(b"secret", &sign(b"secret", now, body), b"{}", now),
            Err("signature does not match")
        );
        assert_eq!(
            verify_signature(b"secret", &sign(b"secret", now - 301, body), body, now),
            Err("stale timestamp")
        );
        assert_eq!(
            verify_signature(b"secret", "garbage", body, now),
            Err("malformed TikTok-Signature header")
        );
    }
}
