//! The daemon's HTTP server: the accounts page with its "Connect TikTok" button, the OAuth callback,
//! and `/healthz`. Plain HTML forms; no JavaScript. Loopback by default (`[http] listen`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::accounts::{Accounts, STATE_OK};
use crate::config::Settings;
use crate::db::{Keys, now_ms};
use crate::queue::JobStore;

mod calendar_page;
mod calendar_routes;
mod connect_pages;
pub(crate) mod listeners;
mod serve;
mod webhook;

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
    /// The accounts' calendars (the calendar page and feed).
    pub calendars: crate::planner::Calendars,
    /// Liveness of the main loops (for health).
    pub heartbeats: Arc<crate::health::Heartbeats>,
}

/// The main listener's routes; `/webhooks/tiktok` too unless webhooks have their own listener
/// (`[http] webhook_listen`).
pub fn router(state: AppState, with_webhooks: bool) -> Router {
    let r = Router::new()
        .route("/", get(index))
        .route("/connect", get(connect_pages::connect_start))
        .route(
            "/connect/replace",
            axum::routing::post(connect_pages::replace),
        )
        .route("/oauth/callback", get(connect_pages::callback))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route("/calendar", get(calendar_routes::week_page))
        .route("/calendar/{file}", get(calendar_routes::feed));
    let r = if with_webhooks {
        r.route("/webhooks/tiktok", axum::routing::post(webhook::webhook))
    } else {
        r
    };
    r.with_state(state)
}

/// The webhook listener's routes: `/webhooks/tiktok` and nothing else (it is the one exposed to the
/// Internet, so nothing there manages accounts or tells about them).
pub fn webhook_router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/tiktok", axum::routing::post(webhook::webhook))
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
    let warm = &st.settings.warmup;
    let budget = st.settings.worker.daily_post_budget;
    for a in &accounts {
        let warmup = a
            .warmup
            .describe(&warm.ramp, budget, warm.enabled, now_ms());
        let state_class = if a.state == STATE_OK { "ok" } else { "bad" };
        let warn = if a.refresh_expires_ms - now_ms() < 7 * 86_400_000 {
            " class=bad"
        } else {
            ""
        };
        let posting = match &a.posting_blocked {
            Some(b) => format!(
                "<td class=bad title=\"{}\">posting_blocked ({}) since {}: {}</td>",
                esc(&b.message),
                b.scope.as_str(),
                when(b.since_ms),
                esc(&b.code)
            ),
            None => "<td class=ok>ok</td>".to_string(),
        };
        rows.push_str(&format!(
            "<tr><td>{}</td><td>@{}</td><td class={state_class}>{}</td>{posting}<td>{}</td><td>{}</td><td{warn}>{}</td><td>{}</td><td><a href=\"/calendar?account={}\">calendar</a></td></tr>",
            esc(&a.name),
            esc(&a.username),
            esc(&a.state),
            when(a.access_expires_ms),
            if a.next_refresh_ms > 0 { when(a.next_refresh_ms) } else { "-".into() },
            when(a.refresh_expires_ms),
            esc(&warmup),
            esc(&a.name)
        ));
    }
    if accounts.is_empty() {
        rows.push_str("<tr><td colspan=9>No account is connected yet.</td></tr>");
    }
    let body = format!(
        "<table><thead><tr><th>Account</th><th>TikTok user</th><th>Token</th><th>Posting</th><th>Access token expires</th><th>Next refresh</th><th>Reconnect before</th><th>Warm-up</th><th>Posting calendar</th></tr></thead><tbody>{rows}</tbody></table>\
<h2>Connect an account</h2><form method=get action=/connect><label>Account name <input name=account required pattern=\"{pattern}\"></label> \
<button type=submit>Connect TikTok</button></form>",
        pattern = crate::accounts::NAME_PATTERN
    );
    page("TikTok accounts", &body).into_response()
}

/// `GET /metrics`: Prometheus text. Gauges about the queue and the accounts are computed now.
async fn metrics_page(State(st): State<AppState>) -> Response {
    if let Ok((due, leased)) = st.store.depth().await {
        metrics::gauge!("tiktok_poster_queue_due_or_scheduled").set(due as f64);
        metrics::gauge!("tiktok_poster_queue_leased").set(leased as f64);
    }
    if let Ok(counts) = st.ledger.state_counts().await {
        for state in crate::posts::state::ALL {
            let n = counts.get(state.as_str()).copied().unwrap_or(0).max(0);
            metrics::gauge!("tiktok_poster_posts", "state" => state.as_str()).set(n as f64);
        }
    }
    if let Ok(list) = st.accounts.list().await {
        let now = now_ms();
        let warn_ms = st.settings.tokens.reconnect_warning_days as i64 * 86_400_000;
        let ok: Vec<_> = list.iter().filter(|a| a.state == STATE_OK).collect();
        metrics::gauge!("tiktok_poster_accounts").set(list.len() as f64);
        metrics::gauge!("tiktok_poster_accounts_reauth_required")
            .set((list.len() - ok.len()) as f64);
        metrics::gauge!("tiktok_poster_accounts_reconnect_soon").set(
            ok.iter()
                .filter(|a| a.refresh_expires_ms - now < warn_ms)
                .count() as f64,
        );
        metrics::gauge!("tiktok_poster_accounts_posting_blocked")
            .set(list.iter().filter(|a| a.posting_blocked.is_some()).count() as f64);
        if let Some(min) = ok.iter().map(|a| a.access_expires_ms - now).min() {
            metrics::gauge!("tiktok_poster_token_min_seconds_left").set(min as f64 / 1000.0);
        }
        warmup_gauges(&st.settings, &list, now);
    }
    if let Ok(app) = st.accounts.app_block().await {
        metrics::gauge!("tiktok_poster_app_posting_blocked")
            .set(f64::from(u8::from(app.is_some())));
    }
    match crate::telemetry::metrics::handle() {
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

/// Accounts shown with warm-up gauges since this process started: one that leaves its ramp is set
/// to 0 once, so a scrape never shows a stale day (and the series stay bounded by the accounts
/// that were ever warming up).
static WARMING: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

/// `tiktok_poster_accounts_warming_up`, and per warming-up account its ramp day and today's cap.
fn warmup_gauges(
    settings: &crate::config::Settings,
    list: &[crate::accounts::AccountInfo],
    now: i64,
) {
    let warm = &settings.warmup;
    let budget = settings.worker.daily_post_budget;
    let mut seen = WARMING.lock().unwrap_or_else(|p| p.into_inner());
    let mut n = 0;
    for a in list {
        let step = warm
            .enabled
            .then(|| a.warmup.step(&warm.ramp, budget, now))
            .flatten();
        let (day, cap) = match step {
            Some(s) => {
                n += 1;
                seen.insert(a.name.clone());
                (s.day, s.cap)
            }
            None if seen.remove(&a.name) => (0, 0),
            None => continue,
        };
        metrics::gauge!("tiktok_poster_account_warmup_day", "account" => a.name.clone())
            .set(f64::from(day));
        metrics::gauge!("tiktok_poster_account_warmup_cap", "account" => a.name.clone())
            .set(f64::from(cap));
    }
    metrics::gauge!("tiktok_poster_accounts_warming_up").set(f64::from(n));
}

async fn healthz(State(st): State<AppState>) -> Response {
    let problem = st.heartbeats.redis.problem();
    let workers = st.heartbeats.healthy(std::time::Duration::from_secs(30));
    // A stalled Redis must not stall the answer: what Redis cannot tell within the probe's bound is
    // reported as a stall.
    let read = tokio::time::timeout(crate::health::REDIS_PROBE_TIMEOUT, async {
        let backlog = st.store.backlog().await?;
        let accounts = st.accounts.list().await.unwrap_or_default();
        let app_blocked = st.accounts.app_block().await?;
        // How late the oldest due post still to be sent is (0 when nothing waits past its time);
        // follow-ups of settled posts (list looks, stats reads) are no backlog.
        let oldest = backlog.oldest_due_ms;
        Ok::<_, redis::RedisError>((
            (backlog.waiting, backlog.leased),
            accounts,
            oldest,
            app_blocked,
        ))
    })
    .await;
    let (redis_ok, problem, (due, leased), accounts, oldest, app_blocked) = match read {
        Ok(Ok((depth, accounts, oldest, app))) => (true, problem, depth, accounts, oldest, app),
        Ok(Err(e)) => (
            false,
            problem.or_else(|| Some(crate::db::explain(&e))),
            (0, 0),
            Vec::new(),
            None,
            None,
        ),
        Err(_) => (
            false,
            Some(format!(
                "Redis does not answer within {} s (stalled or overloaded)",
                crate::health::REDIS_PROBE_TIMEOUT.as_secs()
            )),
            (0, 0),
            Vec::new(),
            None,
            None,
        ),
    };
    let reauth = accounts.iter().filter(|a| a.state != STATE_OK).count();
    // Posting blocks do not make the daemon unhealthy (it is doing the right thing: holding the
    // posts), but a monitor should see them: the accounts that may not post, and the app's block.
    let blocked: Vec<&str> = accounts
        .iter()
        .filter(|a| a.posting_blocked.is_some())
        .map(|a| a.name.as_str())
        .take(100)
        .collect();
    let lag_ms = oldest.map(|at| (now_ms() - at).max(0)).unwrap_or(0);
    let ok = redis_ok && workers && problem.is_none();
    // Where the primary is (with sentinels, the address they gave; while none is known, why).
    let primary = match st.ledger.conn().redis().primary() {
        crate::db::Primary::Known(address) => json!({"known": true, "address": address}),
        crate::db::Primary::Unknown { why, since_ms } => {
            json!({"known": false, "problem": why, "since_ms": since_ms})
        }
    };
    let want = st.settings.redis.min_replica_acks;
    let replicas =
        (want > 0).then(|| json!({"wanted": want, "online": st.heartbeats.redis.replicas()}));
    let body = json!({
        "ok": ok,
        "redis": redis_ok && problem.is_none(),
        "problem": problem,
        "redis_primary": primary,
        "replicas": replicas,
        "workers_alive": workers,
        "oldest_due_lag_ms": lag_ms,
        "queue": {"due_or_scheduled": due, "leased": leased},
        "accounts": accounts.len(),
        "accounts_needing_reconnect": reauth,
        "accounts_posting_blocked": accounts.iter().filter(|a| a.posting_blocked.is_some()).count(),
        "posting_blocked": blocked,
        "app_posting_blocked": app_blocked.map(|b| json!({"code": b.code, "since_ms": b.since_ms})),
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

/// Until the daemon is ready (Redis not reached yet, or its worker identity held by another daemon):
/// every path answers 503 with `message`, so a client learns why instead of waiting.
pub fn starting_router(redis: bool, message: &str) -> Router {
    let body = json!({"ok": false, "redis": redis, "starting": true, "message": message});
    Router::new().fallback(move || {
        let body = body.clone();
        async move { (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)) }
    })
}
