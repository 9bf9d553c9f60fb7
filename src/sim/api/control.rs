//! The simulator's own endpoints under `/_sim/`, which TikTok does not have: the posts and counters as
//! the simulated TikTok sees them (so a test can assert "published exactly once" against TikTok's own
//! view), the fault queue, and creating or changing a simulated creator.
//!
//! Strict about its input only so a mistyped fault fails loudly instead of never firing: an unknown
//! endpoint name, `times` 0 or an out-of-range `pad_bytes` is refused with the allowed values.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::status::{settle, status_name};
use crate::sim::Sim;
use crate::sim::state::{Fault, MAX_PAD_BYTES, PostSource, open_id_for};

pub(super) async fn sim_posts(State(sim): State<Sim>) -> Response {
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

pub(super) async fn sim_stats(State(sim): State<Sim>) -> Response {
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

pub(super) async fn add_faults(State(sim): State<Sim>, body: Bytes) -> Response {
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

pub(super) async fn list_faults(State(sim): State<Sim>) -> Response {
    let st = sim.lock();
    let all: Vec<&Fault> = st.faults.values().flatten().collect();
    axum::Json(json!({"faults": all})).into_response()
}

pub(super) async fn clear_faults(State(sim): State<Sim>) -> Response {
    sim.lock().faults.clear();
    axum::Json(json!({"queued": 0})).into_response()
}

/// `POST /_sim/creators {"username", "private", "banned", "max_video_post_duration_sec", "comment_disabled"}`:
/// creates or changes a simulated creator.
pub(super) async fn set_creator(
    State(sim): State<Sim>,
    axum::Json(v): axum::Json<Value>,
) -> Response {
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
