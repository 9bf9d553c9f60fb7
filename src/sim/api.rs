//! The simulator's HTTP handlers.

#![expect(
    clippy::result_large_err,
    reason = "handlers return a ready axum Response as the error; one per request, never stored"
)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::state::{
    Fault, MAX_PAD_BYTES, Post, PostKind, PostSource, SimState, log_id, open_id_for, random_digits,
    random_token, unix_ms,
};
use super::{ConnKill, Sim};

const MIN_CHUNK: u64 = 5 * 1024 * 1024;
const MAX_CHUNK: u64 = 64_000_000;
const MAX_FINAL_CHUNK: u64 = 128_000_000;
const MAX_VIDEO_BYTES: u64 = 4 * 1024 * 1024 * 1024;
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) fn router(sim: Sim) -> Router {
    Router::new()
        .route("/v2/auth/authorize/", get(authorize))
        .route("/v2/oauth/token/", post(token))
        .route("/v2/oauth/revoke/", post(revoke))
        .route("/v2/post/publish/creator_info/query/", post(creator_info))
        .route("/v2/post/publish/video/init/", post(video_init))
        .route("/v2/post/publish/inbox/video/init/", post(inbox_init))
        .route("/v2/post/publish/status/fetch/", post(status_fetch))
        .route("/v2/post/publish/cancel/", post(cancel))
        .route("/upload", put(upload))
        .route("/upload/", put(upload))
        .route("/_sim/posts", get(sim_posts))
        .route("/_sim/stats", get(sim_stats))
        .route(
            "/_sim/faults",
            post(add_faults).get(list_faults).delete(clear_faults),
        )
        .route("/_sim/creators", post(set_creator))
        .with_state(sim)
}

// === responses ===

fn ok(data: Value) -> Response {
    let body = json!({"data": data, "error": {"code": "ok", "message": "", "log_id": log_id()}});
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn api_error(st: &mut SimState, status: u16, code: &str, message: &str) -> Response {
    st.count_error(code);
    let body = json!({"data": {}, "error": {"code": code, "message": message, "log_id": log_id()}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn oauth_error(st: &mut SimState, status: u16, code: &str, description: &str) -> Response {
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
async fn drop_connection(conn: &ConnKill) -> Response {
    conn.0.cancel();
    std::future::pending::<()>().await;
    unreachable!("the connection task is gone")
}

/// Counts the request and applies a queued or background fault. `Err` is the response to send.
async fn prelude(sim: &Sim, endpoint: &str, conn: &ConnKill) -> Result<Option<Fault>, Response> {
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
async fn finish(fault: &Option<Fault>, conn: &ConnKill, resp: Response) -> Response {
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
fn bearer(
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

// === OAuth ===

async fn authorize(State(sim): State<Sim>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut st = sim.lock();
    st.count_request("authorize");
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let redirect_uri = get("redirect_uri");
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        st.count_error("invalid_request");
        return (
            StatusCode::BAD_REQUEST,
            Html(
                "<h1>Invalid request</h1><p>redirect_uri is missing or is not an absolute URL.</p>",
            ),
        )
            .into_response();
    };
    if get("client_key").is_empty()
        || sim
            .cfg
            .client_key
            .as_deref()
            .is_some_and(|k| k != get("client_key"))
    {
        st.count_error("invalid_client");
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>Invalid request</h1><p>client_key is missing or unknown.</p>"),
        )
            .into_response();
    }
    let fail = |target: &mut url::Url, code: &str, desc: &str| {
        target
            .query_pairs_mut()
            .append_pair("error", code)
            .append_pair("error_description", desc)
            .append_pair("state", get("state"));
        Redirect::to(target.as_str()).into_response()
    };
    if get("response_type") != "code" {
        st.count_error("unsupported_response_type");
        return fail(
            &mut target,
            "unsupported_response_type",
            "response_type must be code",
        );
    }
    let scopes: Vec<String> = get("scope")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        st.count_error("invalid_scope");
        return fail(
            &mut target,
            "invalid_scope",
            "scope is required (comma-separated)",
        );
    }
    let challenge = q.get("code_challenge").cloned();
    if let Some(c) = &challenge {
        let hex64 = c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit());
        if get("code_challenge_method") != "S256" || !hex64 {
            st.count_error("invalid_request");
            return fail(
                &mut target,
                "invalid_request",
                "Code verifier or code challenge is invalid.",
            );
        }
    }
    if get("sim_deny") == "1" || get("sim_deny") == "true" {
        st.count_error("access_denied");
        return fail(
            &mut target,
            "access_denied",
            "The user denied the authorization request.",
        );
    }
    let username = match get("sim_username") {
        "" => "sim_creator".to_string(),
        u => u.to_string(),
    };
    let private = get("sim_private") == "1" || get("sim_private") == "true";
    let creator = st.creator_mut(&username, private);
    if let Ok(secs) = get("sim_max_duration").parse() {
        creator.max_duration_sec = secs;
    }
    let open_id = creator.open_id.clone();
    let code = random_token(40);
    st.codes.insert(
        code.clone(),
        super::state::AuthCode {
            open_id,
            scopes: scopes.clone(),
            redirect_uri: redirect_uri.to_string(),
            challenge,
            expires_at: Instant::now() + Duration::from_secs(sim.cfg.code_ttl_secs),
            used: false,
        },
    );
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("scopes", &scopes.join(","))
        .append_pair("state", get("state"));
    Redirect::to(target.as_str()).into_response()
}

fn parse_form(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return None;
    }
    Some(url::form_urlencoded::parse(body).into_owned().collect())
}

async fn token(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "token", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = token_inner(&sim, &headers, &body);
    finish(&fault, &conn, resp).await
}

fn token_inner(sim: &Sim, headers: &HeaderMap, body: &[u8]) -> Response {
    let es = sim.cfg.oauth_error_status;
    let mut st = sim.lock();
    let Some(form) = parse_form(headers, body) else {
        return oauth_error(
            &mut st,
            es,
            "invalid_request",
            "The request parameters are malformed.",
        );
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let key_ok = !get("client_key").is_empty()
        && sim
            .cfg
            .client_key
            .as_deref()
            .is_none_or(|k| k == get("client_key"));
    let secret_ok = !get("client_secret").is_empty()
        && sim
            .cfg
            .client_secret
            .as_deref()
            .is_none_or(|s| s == get("client_secret"));
    if !key_ok || !secret_ok {
        return oauth_error(
            &mut st,
            es,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    let access_ttl = Duration::from_secs(sim.cfg.token_ttl_secs);
    let refresh_ttl = Duration::from_secs(sim.cfg.refresh_ttl_secs);
    let now = Instant::now();
    let (open_id, scopes, refresh_expires_at) = match get("grant_type") {
        "authorization_code" => {
            let Some(code) = st.codes.get_mut(get("code")) else {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Authorization code is invalid.",
                );
            };
            if code.used {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Authorization code has been used.",
                );
            }
            if code.expires_at <= now {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Authorization code is expired.",
                );
            }
            if code.redirect_uri != get("redirect_uri") {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_request",
                    "Redirect_uri is not matched with the uri when requesting code.",
                );
            }
            if let Some(challenge) = code.challenge.clone() {
                let verifier = get("code_verifier");
                if verifier.is_empty()
                    || hex::encode(Sha256::digest(verifier.as_bytes())) != challenge
                {
                    return oauth_error(
                        &mut st,
                        es,
                        "invalid_request",
                        "Code verifier or code challenge is invalid.",
                    );
                }
            }
            code.used = true;
            (code.open_id.clone(), code.scopes.clone(), None)
        }
        "refresh_token" => {
            let Some(rt) = st.refresh.get(get("refresh_token")).cloned() else {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Refresh token is invalid or expired.",
                );
            };
            if rt.expires_at <= now {
                return oauth_error(
                    &mut st,
                    es,
                    "invalid_grant",
                    "Refresh token is invalid or expired.",
                );
            }
            // Rotation: the old refresh token stops working at once.
            st.refresh.remove(get("refresh_token"));
            st.stats.refreshes += 1;
            // A refresh does not extend the refresh token's life ("365 days after the initial issuance").
            (rt.open_id, rt.scopes, Some(rt.expires_at))
        }
        "" => return oauth_error(&mut st, es, "invalid_request", "grant_type is required."),
        _ => {
            return oauth_error(
                &mut st,
                es,
                "unsupported_grant_type",
                "The grant type is not supported.",
            );
        }
    };
    let (access, refresh, refresh_expiry) = st.issue_tokens(
        &open_id,
        &scopes,
        access_ttl,
        refresh_ttl,
        refresh_expires_at,
    );
    let body = json!({
        "access_token": access,
        "expires_in": access_ttl.as_secs(),
        "open_id": open_id,
        "refresh_expires_in": refresh_expiry.saturating_duration_since(now).as_secs(),
        "refresh_token": refresh,
        "scope": scopes.join(","),
        "token_type": "Bearer",
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn revoke(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "revoke", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let es = sim.cfg.oauth_error_status;
        let mut st = sim.lock();
        match parse_form(&headers, &body) {
            None => oauth_error(
                &mut st,
                es,
                "invalid_request",
                "The request parameters are malformed.",
            ),
            Some(form) => {
                let token = form.get("token").cloned().unwrap_or_default();
                match st.access.remove(&token) {
                    None => oauth_error(&mut st, es, "invalid_request", "The token is invalid."),
                    Some(t) => {
                        // Revoking ends the whole grant: every token of this user.
                        st.access.retain(|_, a| a.open_id != t.open_id);
                        st.refresh.retain(|_, r| r.open_id != t.open_id);
                        (StatusCode::OK, "").into_response()
                    }
                }
            }
        }
    };
    finish(&fault, &conn, resp).await
}

// === Content Posting ===

async fn creator_info(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "creator_info", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let mut st = sim.lock();
        match bearer(
            &mut st,
            &headers,
            "creator_info",
            sim.cfg.creator_info_rate_per_min,
            &["video.publish"],
        ) {
            Err(r) => r,
            Ok(open_id) => {
                let body_ok = body.iter().all(u8::is_ascii_whitespace)
                    || serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.is_object());
                if !body_ok {
                    api_error(
                        &mut st,
                        400,
                        "invalid_params",
                        "The request body must be empty or a JSON object.",
                    )
                } else {
                    creator_info_inner(&sim, &mut st, &open_id)
                }
            }
        }
    };
    finish(&fault, &conn, resp).await
}

fn creator_info_inner(sim: &Sim, st: &mut SimState, open_id: &str) -> Response {
    let cap = sim.cfg.daily_post_cap as usize;
    let Some(c) = st.creators.get_mut(open_id) else {
        return api_error(
            st,
            401,
            "access_token_invalid",
            "The user of this token no longer exists.",
        );
    };
    prune_day(&mut c.direct_posts);
    if c.banned {
        return api_error(
            st,
            200,
            "spam_risk_user_banned_from_posting",
            "The user is banned from posting.",
        );
    }
    if c.direct_posts.len() >= cap {
        return api_error(
            st,
            200,
            "spam_risk_too_many_posts",
            "The user has reached the daily post limit.",
        );
    }
    ok(json!({
        "creator_avatar_url": format!("{}/_sim/avatar/{}.png", sim.base_url, c.username),
        "creator_username": c.username,
        "creator_nickname": c.nickname,
        "privacy_level_options": c.privacy_options(sim.cfg.unaudited),
        "comment_disabled": c.comment_disabled,
        "duet_disabled": c.duet_disabled,
        "stitch_disabled": c.stitch_disabled,
        "max_video_post_duration_sec": c.max_duration_sec,
    }))
}

fn prune_day(q: &mut std::collections::VecDeque<Instant>) {
    let now = Instant::now();
    while q.front().is_some_and(|&at| now.duration_since(at) >= DAY) {
        q.pop_front();
    }
}

async fn video_init(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    init(sim, conn, headers, body, PostKind::Direct).await
}

async fn inbox_init(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    init(sim, conn, headers, body, PostKind::Inbox).await
}

async fn init(
    sim: Sim,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
    kind: PostKind,
) -> Response {
    let (endpoint, scope) = match kind {
        PostKind::Direct => ("video_init", "video.publish"),
        PostKind::Inbox => ("inbox_init", "video.upload"),
    };
    let fault = match prelude(&sim, endpoint, &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let mut st = sim.lock();
        match bearer(
            &mut st,
            &headers,
            endpoint,
            sim.cfg.init_rate_per_min,
            &[scope],
        ) {
            Err(r) => r,
            Ok(open_id) => match init_inner(&sim, &mut st, &open_id, &body, kind) {
                Ok(r) | Err(r) => r,
            },
        }
    };
    finish(&fault, &conn, resp).await
}

const POST_INFO_FIELDS: &[&str] = &[
    "title",
    "privacy_level",
    "disable_duet",
    "disable_stitch",
    "disable_comment",
    "video_cover_timestamp_ms",
    "brand_content_toggle",
    "brand_organic_toggle",
    "is_aigc",
];

/// Checks the chunk plan the way the strictest reading of the rules does.
pub(crate) fn check_plan(
    size: u64,
    chunk: u64,
    count: u64,
    reject_multi: bool,
) -> Result<(), &'static str> {
    const CHUNK: &str = "The chunk size is invalid";
    const COUNT: &str = "total chunk count is invalid";
    if chunk == 0 || count == 0 || count > 1000 || count != size / chunk {
        return Err(if chunk == 0 { CHUNK } else { COUNT });
    }
    if count == 1 {
        // One chunk: the whole file, at most 64 MB under either reading of "MB".
        if chunk != size || size > MAX_CHUNK {
            return Err(CHUNK);
        }
        return Ok(());
    }
    if reject_multi || !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
        return Err(CHUNK);
    }
    if size - (count - 1) * chunk > MAX_FINAL_CHUNK {
        return Err(CHUNK);
    }
    Ok(())
}

fn init_inner(
    sim: &Sim,
    st: &mut SimState,
    open_id: &str,
    body: &[u8],
    kind: PostKind,
) -> Result<Response, Response> {
    let bad = |st: &mut SimState, msg: &str| api_error(st, 400, "invalid_params", msg);
    let v: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => return Err(bad(st, "The request body is not a valid JSON object.")),
    };
    if let Some(k) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "post_info" && *k != "source_info"))
    {
        return Err(bad(st, &format!("Unknown field: {k}")));
    }
    // post_info: required for Direct Post, tolerated (title only is used) for inbox.
    let post_info = v.get("post_info").cloned().unwrap_or(Value::Null);
    let mut privacy = None;
    if !post_info.is_null() {
        let Some(pi) = post_info.as_object() else {
            return Err(bad(st, "post_info must be an object."));
        };
        if let Some(k) = pi.keys().find(|k| !POST_INFO_FIELDS.contains(&k.as_str())) {
            return Err(bad(st, &format!("Invalid field in post_info: {k}")));
        }
        for k in [
            "disable_duet",
            "disable_stitch",
            "disable_comment",
            "brand_content_toggle",
            "brand_organic_toggle",
            "is_aigc",
        ] {
            if pi.get(k).is_some_and(|x| !x.is_boolean()) {
                return Err(bad(st, &format!("post_info.{k} must be a boolean.")));
            }
        }
        if let Some(t) = pi.get("title") {
            let Some(t) = t.as_str() else {
                return Err(bad(st, "post_info.title must be a string."));
            };
            if t.encode_utf16().count() > 2200 {
                return Err(bad(st, "The title exceeds the maximum length of 2200."));
            }
        }
        if pi
            .get("video_cover_timestamp_ms")
            .is_some_and(|x| x.as_u64().is_none_or(|n| n > i32::MAX as u64))
        {
            return Err(bad(
                st,
                "post_info.video_cover_timestamp_ms must be a non-negative int32.",
            ));
        }
        privacy = pi
            .get("privacy_level")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    let si = match v.get("source_info") {
        Some(Value::Object(o)) => o.clone(),
        _ => return Err(bad(st, "source_info is required.")),
    };
    let int = |k: &str| si.get(k).and_then(Value::as_u64);
    let source = match si.get("source").and_then(Value::as_str) {
        Some("FILE_UPLOAD") => {
            let (Some(size), Some(chunk), Some(count)) = (
                int("video_size"),
                int("chunk_size"),
                int("total_chunk_count"),
            ) else {
                return Err(bad(
                    st,
                    "FILE_UPLOAD needs video_size, chunk_size and total_chunk_count as integers.",
                ));
            };
            if size == 0 || size > MAX_VIDEO_BYTES {
                return Err(bad(st, "The video size is invalid."));
            }
            if let Err(m) = check_plan(size, chunk, count, sim.cfg.reject_multi_chunk) {
                return Err(bad(st, m));
            }
            PostSource::File { size, chunk, count }
        }
        Some("PULL_FROM_URL") => {
            let Some(url) = si.get("video_url").and_then(Value::as_str) else {
                return Err(bad(st, "PULL_FROM_URL needs video_url."));
            };
            let parsed = url::Url::parse(url).ok();
            let host_ok = parsed
                .as_ref()
                .is_some_and(|u| matches!(u.host(), Some(url::Host::Domain(_))));
            if parsed.as_ref().is_none_or(|u| u.scheme() != "https") || !host_ok {
                return Err(bad(st, "video_url must be an https URL on a domain name."));
            }
            if !sim
                .cfg
                .verified_url_prefixes
                .iter()
                .any(|p| url.starts_with(p.as_str()))
            {
                return Err(api_error(
                    st,
                    403,
                    "url_ownership_unverified",
                    "The domain or URL prefix of video_url is not verified.",
                ));
            }
            PostSource::Pull {
                url: url.to_string(),
            }
        }
        _ => {
            return Err(bad(
                st,
                "source_info.source must be FILE_UPLOAD or PULL_FROM_URL.",
            ));
        }
    };
    let unaudited = sim.cfg.unaudited;
    let cap = sim.cfg.daily_post_cap as usize;
    let pending_cap = sim.cfg.pending_inbox_cap as usize;
    let pending = st
        .posts
        .iter()
        .filter(|p| {
            p.open_id == open_id
                && p.kind == PostKind::Inbox
                && p.failed.is_none()
                && p.created.elapsed() < DAY
        })
        .count();
    let Some(c) = st.creators.get_mut(open_id) else {
        return Err(api_error(
            st,
            401,
            "access_token_invalid",
            "The user of this token no longer exists.",
        ));
    };
    prune_day(&mut c.direct_posts);
    if c.banned {
        return Err(api_error(
            st,
            403,
            "spam_risk_user_banned_from_posting",
            "The user is banned from posting.",
        ));
    }
    let mut public = false;
    match kind {
        PostKind::Direct => {
            let options = c.privacy_options(unaudited);
            let is_private = c.private;
            let Some(p) = privacy.filter(|p| options.contains(&p.as_str())) else {
                return Err(api_error(
                    st,
                    403,
                    "privacy_level_option_mismatch",
                    "privacy_level is missing or not among the creator's options.",
                ));
            };
            if unaudited && !is_private {
                return Err(api_error(
                    st,
                    403,
                    "unaudited_client_can_only_post_to_private_accounts",
                    "Unaudited clients can only post to private accounts.",
                ));
            }
            if post_info.get("brand_content_toggle") == Some(&Value::Bool(true)) && p == "SELF_ONLY"
            {
                return Err(bad(
                    st,
                    "Branded content cannot be posted with privacy SELF_ONLY.",
                ));
            }
            if c.direct_posts.len() >= cap {
                return Err(api_error(
                    st,
                    403,
                    "spam_risk_too_many_posts",
                    "The user has reached the daily post limit.",
                ));
            }
            c.direct_posts.push_back(Instant::now());
            public = p == "PUBLIC_TO_EVERYONE";
        }
        PostKind::Inbox => {
            if pending >= pending_cap {
                return Err(api_error(
                    st,
                    403,
                    "spam_risk_too_many_pending_share",
                    "Too many pending shares in the last 24 hours.",
                ));
            }
        }
    }
    let digits = random_digits(19);
    let publish_id = match (kind, &source) {
        (PostKind::Direct, PostSource::File { .. }) => format!("v_pub_file~v2-1.{digits}"),
        (PostKind::Direct, PostSource::Pull { .. }) => format!("v_pub_url~v2.{digits}"),
        (PostKind::Inbox, PostSource::File { .. }) => format!("v_inbox_file~v2.{digits}"),
        (PostKind::Inbox, PostSource::Pull { .. }) => format!("v_inbox_url~v2.{digits}"),
    };
    let upload_id = random_digits(19);
    let upload_token = format!(
        "{}-{}-{}-{}-{}",
        random_token(8).to_lowercase(),
        random_token(4).to_lowercase(),
        random_token(4).to_lowercase(),
        random_token(4).to_lowercase(),
        random_token(12).to_lowercase()
    );
    let now = Instant::now();
    let is_pull = matches!(source, PostSource::Pull { .. });
    let post = Post {
        publish_id: publish_id.clone(),
        open_id: open_id.to_string(),
        kind,
        source,
        post_info,
        public,
        created: now,
        created_unix_ms: unix_ms(),

        upload_token: upload_token.clone(),
        upload_expires_at: now + Duration::from_secs(sim.cfg.upload_url_ttl_secs),
        uploaded: 0,
        hasher: Sha256::new(),
        in_flight: false,
        sha256: None,
        ready_at: is_pull.then_some(now),
        completed_unix_ms: None,
        completed_at: None,
        failed: None,
        post_id: None,
    };
    let idx = st.posts.len();
    st.by_publish_id.insert(publish_id.clone(), idx);
    st.by_upload_id.insert(upload_id.clone(), idx);
    st.posts.push(post);
    let mut data = json!({ "publish_id": publish_id });
    if !is_pull {
        data["upload_url"] = json!(format!(
            "{}/upload?upload_id={upload_id}&upload_token={upload_token}",
            sim.base_url
        ));
    }
    Ok(ok(data))
}

/// Moves a post along by the clock: processing → complete after the configured delay.
fn settle(post: &mut Post, delay: Duration, id_delay: Duration) {
    if post.failed.is_some() {
        return;
    }
    if post.completed_unix_ms.is_none()
        && let Some(ready) = post.ready_at
        && ready.elapsed() >= delay
    {
        post.completed_unix_ms = Some(unix_ms());
        post.completed_at = Some(Instant::now());
    }
    // Public posts get their id once "moderation" is over.
    if post.kind == PostKind::Direct
        && post.public
        && post.post_id.is_none()
        && post.completed_at.is_some_and(|at| at.elapsed() >= id_delay)
    {
        post.post_id = random_digits(19).parse().ok();
    }
}

fn status_name(post: &Post) -> &'static str {
    if post.failed.is_some() {
        return "FAILED";
    }
    match (post.completed_unix_ms.is_some(), post.kind, &post.source) {
        (true, PostKind::Direct, _) => "PUBLISH_COMPLETE",
        (true, PostKind::Inbox, _) => "SEND_TO_USER_INBOX",
        (false, _, PostSource::Pull { .. }) => "PROCESSING_DOWNLOAD",
        (false, _, PostSource::File { .. }) => "PROCESSING_UPLOAD",
    }
}

fn publish_id_of(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()?
        .get("publish_id")?
        .as_str()
        .map(str::to_string)
}

/// The post a status or cancel call names, after the bearer token, rate limit and ownership checks.
fn owned_post(
    st: &mut SimState,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: &'static str,
    limit: u32,
) -> Result<usize, Response> {
    let open_id = bearer(
        st,
        headers,
        endpoint,
        limit,
        &["video.publish", "video.upload"],
    )?;
    let Some(pid) = publish_id_of(body) else {
        return Err(api_error(
            st,
            400,
            "invalid_params",
            "publish_id is required.",
        ));
    };
    match st.by_publish_id.get(&pid).copied() {
        None => Err(api_error(
            st,
            400,
            "invalid_publish_id",
            "The publish_id does not exist.",
        )),
        Some(i) if st.posts[i].open_id != open_id => Err(api_error(
            st,
            400,
            "token_not_authorized_for_specified_publish_id",
            "The token does not own this publish_id.",
        )),
        Some(i) => Ok(i),
    }
}

async fn status_fetch(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "status", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let delays = (
            Duration::from_millis(sim.cfg.publish_delay_ms),
            Duration::from_millis(sim.cfg.post_id_delay_ms),
        );
        let mut st = sim.lock();
        match owned_post(
            &mut st,
            &headers,
            &body,
            "status",
            sim.cfg.status_rate_per_min,
        ) {
            Err(r) => r,
            Ok(i) => {
                let post = &mut st.posts[i];
                if let Some(reason) = fault.as_ref().and_then(|f| f.fail_reason.clone())
                    && post.completed_unix_ms.is_none()
                {
                    post.failed = Some(reason);
                }
                settle(post, delays.0, delays.1);
                let mut data = json!({
                    "status": status_name(post),
                    "publicaly_available_post_id": post.post_id.map(|id| vec![id]).unwrap_or_default(),
                });
                match &post.source {
                    PostSource::File { .. } => data["uploaded_bytes"] = json!(post.uploaded),
                    PostSource::Pull { .. } => {
                        data["downloaded_bytes"] = json!(if post.completed_unix_ms.is_some() {
                            1_000_000
                        } else {
                            0
                        })
                    }
                }
                if let Some(r) = &post.failed {
                    data["fail_reason"] = json!(r);
                }
                ok(data)
            }
        }
    };
    finish(&fault, &conn, resp).await
}

async fn cancel(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = match prelude(&sim, "cancel", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let delays = (
            Duration::from_millis(sim.cfg.publish_delay_ms),
            Duration::from_millis(sim.cfg.post_id_delay_ms),
        );
        let mut st = sim.lock();
        match owned_post(&mut st, &headers, &body, "cancel", u32::MAX) {
            Err(r) => r,
            Ok(i) => {
                let post = &mut st.posts[i];
                settle(post, delays.0, delays.1);
                if status_name(post) == "PROCESSING_DOWNLOAD" {
                    post.failed = Some("publish_cancelled".into());
                    ok(Value::Null)
                } else {
                    api_error(
                        &mut st,
                        400,
                        "publish_not_cancellable",
                        "The publish is already final or cannot be cancelled.",
                    )
                }
            }
        }
    };
    finish(&fault, &conn, resp).await
}

// === upload ===

/// Clears a post's in-flight flag however the handler ends (a dropped connection drops the future).
struct InFlight {
    sim: Sim,
    idx: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(p) = self.sim.lock().posts.get_mut(self.idx) {
            p.in_flight = false;
        }
    }
}

fn range_header(uploaded: u64, total: u64) -> HeaderValue {
    let v = if uploaded == 0 {
        format!("bytes */{total}")
    } else {
        format!("bytes 0-{}/{total}", uploaded - 1)
    };
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("bytes */0"))
}

fn upload_status(
    st: &mut SimState,
    status: u16,
    code: &str,
    uploaded_total: Option<(u64, u64)>,
) -> Response {
    st.count_error(code);
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        "",
    )
        .into_response();
    if let Some((u, t)) = uploaded_total {
        resp.headers_mut()
            .insert(header::CONTENT_RANGE, range_header(u, t));
    }
    resp
}

fn parse_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

async fn upload(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let fault = match prelude(&sim, "upload", &conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    // Check everything that can be checked before reading the body.
    let checked = (|| -> Result<(usize, u64, u64, u64), Response> {
        let mut st = sim.lock();
        let idx = q
            .get("upload_id")
            .and_then(|id| st.by_upload_id.get(id).copied());
        let Some(idx) = idx.filter(|&i| Some(&st.posts[i].upload_token) == q.get("upload_token"))
        else {
            return Err(upload_status(&mut st, 404, "upload_not_found", None));
        };
        if st.posts[idx].upload_expires_at <= Instant::now() {
            return Err(upload_status(&mut st, 403, "upload_url_expired", None));
        }
        let PostSource::File { size, chunk, count } = st.posts[idx].source else {
            return Err(upload_status(&mut st, 404, "upload_not_found", None));
        };
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !["video/mp4", "video/quicktime", "video/webm"].contains(&ct) {
            return Err(upload_status(&mut st, 400, "bad_content_type", None));
        }
        let Some(len) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return Err(upload_status(&mut st, 400, "missing_content_length", None));
        };
        let Some((a, b, t)) = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_range)
        else {
            return Err(upload_status(&mut st, 400, "bad_content_range", None));
        };
        if t != size || b < a || b - a + 1 != len {
            return Err(upload_status(&mut st, 400, "bad_content_range", None));
        }
        let uploaded = st.posts[idx].uploaded;
        if st.posts[idx].in_flight || a != uploaded || uploaded == size {
            return Err(upload_status(
                &mut st,
                416,
                "range_not_satisfiable",
                Some((uploaded, size)),
            ));
        }
        // The chunk must be the one the plan declared at init.
        let i = a / chunk;
        let want = if i + 1 == count {
            size - i * chunk
        } else {
            chunk
        };
        if len != want {
            return Err(upload_status(
                &mut st,
                400,
                "chunk_does_not_match_plan",
                None,
            ));
        }
        st.posts[idx].in_flight = true;
        Ok((idx, a, len, size))
    })();
    let (idx, start, len, total) = match checked {
        Ok(v) => v,
        Err(resp) => {
            // Read and discard the body before answering, as a real front end does, so the client
            // can read the status instead of failing on a reset connection.
            let mut stream = body.into_data_stream();
            while let Some(Ok(_)) = stream.next().await {}
            return resp;
        }
    };
    let guard = InFlight {
        sim: sim.clone(),
        idx,
    };
    let mut hasher = sim.lock().posts[idx].hasher.clone();
    let drop_mid_body = fault.as_ref().is_some_and(|f| f.drop);
    let mut received = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(frame) = stream.next().await {
        let Ok(bytes) = frame else {
            // The client went away mid-chunk: nothing of this chunk is kept.
            return (StatusCode::BAD_REQUEST, "").into_response();
        };
        received += bytes.len() as u64;
        if received > len {
            return upload_status(&mut sim.lock(), 400, "content_length_mismatch", None);
        }
        hasher.update(&bytes);
        if drop_mid_body && received >= len / 2 {
            drop(guard);
            return drop_connection(&conn).await;
        }
    }
    let Some((done, uploaded)) = commit(&sim, idx, start, len, received, hasher) else {
        return upload_status(&mut sim.lock(), 400, "content_length_mismatch", None);
    };
    drop(guard);
    let status = if done {
        StatusCode::CREATED
    } else {
        StatusCode::PARTIAL_CONTENT
    };
    let mut resp = (status, "").into_response();
    resp.headers_mut()
        .insert(header::CONTENT_RANGE, range_header(uploaded, total));
    finish(&fault, &conn, resp).await
}

/// Keeps a fully received chunk; `None` when the body length did not match `Content-Length`.
fn commit(
    sim: &Sim,
    idx: usize,
    start: u64,
    len: u64,
    received: u64,
    hasher: Sha256,
) -> Option<(bool, u64)> {
    let mut st = sim.lock();
    if received != len {
        return None;
    }
    st.stats.bytes_received += len;
    let post = &mut st.posts[idx];
    post.uploaded = start + len;
    post.hasher = hasher;
    let total = match post.source {
        PostSource::File { size, .. } => size,
        PostSource::Pull { .. } => post.uploaded,
    };
    let done = post.uploaded == total;
    if done {
        post.sha256 = Some(hex::encode(post.hasher.clone().finalize()));
        post.ready_at = Some(Instant::now());
    }
    Some((done, post.uploaded))
}

// === inspection and faults ===

async fn sim_posts(State(sim): State<Sim>) -> Response {
    let delay = Duration::from_millis(sim.cfg.publish_delay_ms);
    let mut st = sim.lock();
    let creators: HashMap<String, String> = st
        .creators
        .values()
        .map(|c| (c.open_id.clone(), c.username.clone()))
        .collect();
    let posts: Vec<Value> = st
        .posts
        .iter_mut()
        .map(|p| {
            settle(p, delay, Duration::from_millis(sim.cfg.post_id_delay_ms));
            let (source, video_size, video_url) = match &p.source {
                PostSource::File { size, .. } => ("FILE_UPLOAD", Some(*size), None),
                PostSource::Pull { url } => ("PULL_FROM_URL", None, Some(url.clone())),
            };
            json!({
                "publish_id": p.publish_id,
                "open_id": p.open_id,
                "username": creators.get(&p.open_id),
                "kind": p.kind,
                "source": source,
                "video_url": video_url,
                "video_size": video_size,
                "status": status_name(p),
                "fail_reason": p.failed,
                "post_info": p.post_info,
                "bytes": p.uploaded,
                "sha256": p.sha256,
                "post_id": p.post_id.map(|id| id.to_string()),
                "created_unix_ms": p.created_unix_ms,
                "completed_unix_ms": p.completed_unix_ms,
            })
        })
        .collect();
    axum::Json(json!({ "posts": posts })).into_response()
}

async fn sim_stats(State(sim): State<Sim>) -> Response {
    let st = sim.lock();
    axum::Json(json!({
        "requests": st.stats.requests,
        "errors": st.stats.errors,
        "refreshes": st.stats.refreshes,
        "expired_token_calls": st.stats.expired_token_calls,
        "bytes_received": st.stats.bytes_received,
        "posts": st.posts.len(),
    }))
    .into_response()
}

const FAULT_ENDPOINTS: &[&str] = &[
    "token",
    "revoke",
    "creator_info",
    "video_init",
    "inbox_init",
    "upload",
    "status",
    "cancel",
];

async fn add_faults(State(sim): State<Sim>, body: Bytes) -> Response {
    // One fault object or an array of them.
    let parsed: Result<Vec<Fault>, _> =
        serde_json::from_slice::<Value>(&body).and_then(|v| match v {
            Value::Array(_) => serde_json::from_value(v),
            other => serde_json::from_value(other).map(|f| vec![f]),
        });
    let faults = match parsed {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("bad fault: {e}")})),
            )
                .into_response();
        }
    };
    for f in &faults {
        if !FAULT_ENDPOINTS.contains(&f.endpoint.as_str()) {
            let msg = format!(
                "unknown endpoint {:?}; use one of {}",
                f.endpoint,
                FAULT_ENDPOINTS.join(", ")
            );
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response();
        }
        if f.times == 0 {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "times must be at least 1"})),
            )
                .into_response();
        }
        if f.pad_bytes.is_some_and(|n| n == 0 || n > MAX_PAD_BYTES) {
            let msg = format!("pad_bytes must be between 1 and {MAX_PAD_BYTES}");
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg}))).into_response();
        }
    }
    let mut st = sim.lock();
    for f in faults {
        st.faults
            .entry(f.endpoint.clone())
            .or_default()
            .push_back(f);
    }
    let queued: usize = st.faults.values().map(|q| q.len()).sum();
    axum::Json(json!({"queued": queued})).into_response()
}

async fn list_faults(State(sim): State<Sim>) -> Response {
    let st = sim.lock();
    let all: Vec<&Fault> = st.faults.values().flatten().collect();
    axum::Json(json!({"faults": all})).into_response()
}

async fn clear_faults(State(sim): State<Sim>) -> Response {
    sim.lock().faults.clear();
    axum::Json(json!({"queued": 0})).into_response()
}

/// `POST /_sim/creators {"username", "private", "banned", "max_video_post_duration_sec", "comment_disabled"}`:
/// creates or changes a simulated creator.
async fn set_creator(State(sim): State<Sim>, axum::Json(v): axum::Json<Value>) -> Response {
    let Some(username) = v.get("username").and_then(Value::as_str) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "username is required"})),
        )
            .into_response();
    };
    let mut st = sim.lock();
    let private = v.get("private").and_then(Value::as_bool).unwrap_or(false);
    let c = st.creator_mut(username, private);
    if let Some(p) = v.get("private").and_then(Value::as_bool) {
        c.private = p;
    }
    if let Some(b) = v.get("banned").and_then(Value::as_bool) {
        c.banned = b;
    }
    if let Some(b) = v.get("comment_disabled").and_then(Value::as_bool) {
        c.comment_disabled = b;
    }
    if let Some(n) = v.get("max_video_post_duration_sec").and_then(Value::as_u64) {
        c.max_duration_sec = n as u32;
    }
    axum::Json(json!({"open_id": open_id_for(username)})).into_response()
}

#[cfg(test)]
mod tests {
    use super::check_plan;

    #[test]
    fn the_plan_check_is_strict_under_both_readings_of_mb() {
        assert!(check_plan(4_194_304, 4_194_304, 1, false).is_ok());
        assert!(check_plan(50_000_123, 10_000_000, 5, false).is_ok());
        assert_eq!(
            check_plan(50_000_123, 10_000_000, 6, false),
            Err("total chunk count is invalid")
        );
        // A single chunk over 64,000,000 bytes fails under the decimal reading.
        assert_eq!(
            check_plan(64 * 1024 * 1024, 64 * 1024 * 1024, 1, false),
            Err("The chunk size is invalid")
        );
        // 5,000,000-byte chunks are under 5 MiB.
        assert_eq!(
            check_plan(100_000_000, 5_000_000, 20, false),
            Err("The chunk size is invalid")
        );
        // 158 MB sent as one chunk (a real rejection).
        assert!(check_plan(158_000_000, 158_000_000, 1, false).is_err());
        // The August 2026 behaviour.
        assert!(check_plan(50_000_123, 10_000_000, 5, true).is_err());
        // With the floor rule the final chunk stays under twice the chunk size.
        assert!(check_plan(63_000_000 + 130_000_000, 63_000_000, 3, false).is_ok());
        assert!(check_plan(64_000_000 * 2 + 127_000_000, 64_000_000, 3, false).is_ok());
        assert!(check_plan(0, 0, 0, false).is_err());
    }
}
