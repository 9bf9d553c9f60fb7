//! The simulator's HTTP surface: the router, and what every endpoint family shares.
//!
//! Split the way the client in `src/tiktok/` is split, one file per TikTok endpoint family:
//! [`oauth`] (authorize, token, revoke), [`publish`] (creator_info and the two inits),
//! [`status`] (status fetch and cancel, and the clock that moves a post along), [`upload`] (the
//! chunked PUT), [`display`] (user info, video list and query), and [`control`] (the simulator's own
//! `/_sim/*` endpoints, which TikTok does not have).
//! This file holds the pieces every family uses, so each imitates TikTok the same way: TikTok's
//! response envelopes (`ok`, `api_error`, `oauth_error`), the HTTP status TikTok documents for each
//! error code, the fault prelude and finish that every handler runs, and the bearer-token check with
//! its per-token rate limit.

#![expect(
    clippy::result_large_err,
    reason = "handlers return a ready axum Response as the error; one per request, never stored"
)]

mod control;
mod display;
mod oauth;
mod publish;
mod status;
mod upload;

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rand::Rng;
use serde_json::{Value, json};

use super::state::{Fault, SimState, log_id};
use super::{ConnKill, Sim};

const MINUTE: Duration = Duration::from_secs(60);

pub(super) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/v2/auth/authorize/", get(oauth::authorize))
        .route("/v2/oauth/token/", post(oauth::token))
        .route("/v2/oauth/revoke/", post(oauth::revoke))
        .route(
            "/v2/post/publish/creator_info/query/",
            post(publish::creator_info),
        )
        .route("/v2/post/publish/video/init/", post(publish::video_init))
        .route(
            "/v2/post/publish/inbox/video/init/",
            post(publish::inbox_init),
        )
        .route("/v2/post/publish/status/fetch/", post(status::status_fetch))
        .route("/v2/post/publish/cancel/", post(status::cancel))
        .route("/v2/user/info/", get(display::user_info))
        .route("/v2/video/list/", post(display::video_list))
        .route("/v2/video/query/", post(display::video_query))
        .route("/upload", put(upload::upload))
        .route("/upload/", put(upload::upload))
        .route("/_sim/posts", get(control::sim_posts))
        .route("/_sim/stats", get(control::sim_stats))
        .route(
            "/_sim/faults",
            post(control::add_faults)
                .get(control::list_faults)
                .delete(control::clear_faults),
        )
        .route("/_sim/creators", post(control::set_creator))
        .route("/_sim/videos", post(control::set_video))
        .route("/_sim/app", post(control::set_app))
        .with_state(sim)
}

pub(super) fn ok(data: Value) -> Response {
    let body = json!({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id()}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) fn api_error(st: &mut SimState, status: u16, code: &str, message: &str) -> Response {
    st.count_error(code);
    let body = json!({"data": {}, "error": {"code": code, "message": message, "log_id": log_id()}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

pub(super) fn oauth_error(
    st: &mut SimState,
    status: u16,
    code: &str,
    description: &str,
) -> Response {
    st.count_error(code);
    let body = json!({"error": code, "error_description": description, "log_id": log_id()});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response()
}

/// The HTTP status TikTok documents for a code on an endpoint.
fn status_for(endpoint: &str, code: &str) -> u16 {
    match code {
        "rate_limit_exceeded" => 429,
        "access_token_invalid" | "scope_not_authorized" => 401,
        "internal_error" => 500,
        "spam_risk_too_many_posts"
        | "spam_risk_user_banned_from_posting"
        | "reached_active_user_cap"
            if endpoint == "creator_info" =>
        {
            200
        }
        c if c.starts_with("spam_risk")
            || c == "reached_active_user_cap"
            || c == "unaudited_client_can_only_post_to_private_accounts"
            || c == "url_ownership_unverified"
            || c == "privacy_level_option_mismatch" =>
        {
            403
        }
        _ => 400,
    }
}

/// Closes this request's TCP connection and never returns.
pub(super) async fn drop_connection(conn: &ConnKill) -> Response {
    conn.0.cancel();
    std::future::pending::<()>().await;
    unreachable!("the connection task is gone")
}

/// Counts the request and applies a queued or background fault. `Err` is the response to send.
pub(super) async fn prelude(
    sim: &Sim,
    endpoint: &str,
    conn: &ConnKill,
) -> Result<Option<Fault>, Response> {
    let fault = {
        let mut st = sim.lock();
        st.count_request(endpoint);
        st.take_fault(endpoint)
            .or_else(|| background_fault(sim, endpoint))
    };
    let Some(fault) = fault else { return Ok(None) };
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.drop && endpoint != "upload" {
        return Err(drop_connection(conn).await);
    }
    let mut st = sim.lock();
    let oauth = endpoint == "token" || endpoint == "revoke";
    let with_retry_after = |mut r: Response| {
        if let Some(secs) = fault.retry_after_secs {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    };
    let result = match (&fault.error, fault.status) {
        (Some(code), status) if oauth => Err(oauth_error(
            &mut st,
            status.unwrap_or(200),
            code,
            "injected fault",
        )),
        (Some(code), status) => {
            let status = status.unwrap_or_else(|| status_for(endpoint, code));
            Err(api_error(&mut st, status, code, "injected fault"))
        }
        (None, Some(status)) if endpoint == "upload" => {
            st.count_error(&format!("http_{status}"));
            Err((
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "",
            )
                .into_response())
        }
        (None, Some(status)) if oauth => Err(oauth_error(
            &mut st,
            status,
            "server_error",
            "injected fault",
        )),
        (None, Some(status)) => {
            let code = if status >= 500 {
                "internal_error"
            } else if status == 429 {
                "rate_limit_exceeded"
            } else {
                "invalid_params"
            };
            Err(api_error(&mut st, status, code, "injected fault"))
        }
        (None, None) => Ok(Some(fault.clone())),
    };
    result.map_err(with_retry_after)
}

fn background_fault(sim: &Sim, endpoint: &str) -> Option<Fault> {
    let c = &sim.cfg;
    if c.fault_5xx_rate + c.fault_drop_rate + c.fault_429_rate <= 0.0 {
        return None;
    }
    let roll: f64 = rand::rng().random();
    let base = Fault {
        endpoint: endpoint.to_string(),
        times: 1,
        ..Fault::default()
    };
    if roll < c.fault_5xx_rate {
        Some(Fault {
            status: Some(if endpoint == "upload" { 503 } else { 500 }),
            ..base
        })
    } else if roll < c.fault_5xx_rate + c.fault_drop_rate {
        Some(Fault { drop: true, ..base })
    } else if roll < c.fault_5xx_rate + c.fault_drop_rate + c.fault_429_rate {
        Some(Fault {
            error: Some("rate_limit_exceeded".into()),
            ..base
        })
    } else {
        None
    }
}

/// Finishes a handler: a `drop_after` fault cuts the connection instead of answering; a `pad_bytes`
/// fault streams whitespace after the answer.
pub(super) async fn finish(fault: &Option<Fault>, conn: &ConnKill, resp: Response) -> Response {
    if fault.as_ref().is_some_and(|f| f.drop_after) {
        return drop_connection(conn).await;
    }
    match fault.as_ref().and_then(|f| f.pad_bytes) {
        Some(pad) => padded(resp, pad).await,
        None => resp,
    }
}

/// `resp` with `pad` bytes of spaces after its body, streamed in 64 KiB pieces without a length.
async fn padded(resp: Response, pad: usize) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(head) = axum::body::to_bytes(body, 1 << 20).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "unreadable answer").into_response();
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    const PIECE: usize = 64 * 1024;
    let spaces = Bytes::from(vec![b' '; PIECE]);
    let pieces = (0..pad.div_ceil(PIECE)).map(move |i| {
        let n = PIECE.min(pad - i * PIECE);
        Ok::<_, std::convert::Infallible>(spaces.slice(..n))
    });
    let stream = futures_util::stream::iter(std::iter::once(Ok(head)).chain(pieces));
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Checks the bearer token, its scope and the endpoint's per-token rate limit; returns the open_id.
pub(super) fn bearer(
    st: &mut SimState,
    headers: &HeaderMap,
    endpoint: &'static str,
    limit: u32,
    scopes: &[&str],
) -> Result<String, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    let now = Instant::now();
    let Some(t) = st.access.get_mut(token) else {
        return Err(api_error(
            st,
            401,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        ));
    };
    if t.expires_at <= now {
        st.stats.expired_token_calls += 1;
        return Err(api_error(
            st,
            401,
            "access_token_invalid",
            "The access token has expired.",
        ));
    }
    if !scopes.iter().any(|s| t.scopes.iter().any(|g| g == s)) {
        let msg = format!(
            "The user did not authorize the scope required for completing this request: {}",
            scopes.join(" or ")
        );
        return Err(api_error(st, 401, "scope_not_authorized", &msg));
    }
    let window = t.calls.entry(endpoint).or_default();
    while window
        .front()
        .is_some_and(|&at| now.duration_since(at) >= MINUTE)
    {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        return Err(api_error(
            st,
            429,
            "rate_limit_exceeded",
            "Rate limit exceeded: too many requests per minute for this token.",
        ));
    }
    window.push_back(now);
    Ok(t.open_id.clone())
}
