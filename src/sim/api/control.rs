//! The simulator's own endpoints under `/_sim/`, which TikTok does not have: the posts and counters as
//! the simulated TikTok sees them (so a test can assert "published exactly once" against TikTok's own
//! view), the fault queue, creating or changing a simulated creator, and giving a creator public
//! videos posted "by hand" (what the Display API lists besides our posts), and the app's own
//! switches (its daily quota of active creators reached).
//!
//! Strict about its input only so a mistyped fault fails loudly instead of never firing: an unknown
//! endpoint name, `times` 0 or an out-of-range `pad_bytes` is refused with the allowed values.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::status::{settle, status_name};
use crate::sim::Sim;
use crate::sim::state::{
    Fault, MAX_PAD_BYTES, PostSource, SimState, Video, open_id_for, random_digits, unix_ms,
};

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
                "uploaded_unix_ms": p.uploaded_unix_ms,
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
    "user_info",
    "video_list",
    "video_query",
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

/// `POST /_sim/creators {"username", "private", "banned", "max_video_post_duration_sec",
/// "comment_disabled", "follower_count", "following_count", "likes_count", "video_count"}`: creates or
/// changes a simulated creator. `video_count` null goes back to counting the creator's videos.
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
    for (k, slot) in [
        ("follower_count", &mut c.follower_count),
        ("following_count", &mut c.following_count),
        ("likes_count", &mut c.likes_count),
    ] {
        if let Some(n) = v.get(k).and_then(Value::as_u64) {
            *slot = n;
        }
    }
    match v.get("video_count") {
        Some(Value::Null) => c.video_count = None,
        Some(n) => c.video_count = n.as_u64(),
        None => {}
    }
    axum::Json(json!({"open_id": open_id_for(username)})).into_response()
}

/// The body of `POST /_sim/app`: switches of the app as a whole.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppSpec {
    /// The app reached TikTok's daily quota of active creators: Direct Post inits answer 403 and
    /// `creator_info` 200 `reached_active_user_cap`, for every creator, until set back to false.
    active_user_cap_reached: bool,
}

/// `POST /_sim/app {"active_user_cap_reached": bool}`: sets the app-wide switches; answers them.
pub(super) async fn set_app(State(sim): State<Sim>, body: Bytes) -> Response {
    let spec: AppSpec = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return bad_request(format!("bad app settings: {e}")),
    };
    let mut st = sim.lock();
    st.active_user_cap_reached = spec.active_user_cap_reached;
    axum::Json(json!({"active_user_cap_reached": st.active_user_cap_reached})).into_response()
}

/// The body of `POST /_sim/videos`: a public video the creator posted "by hand" (with `username`), or
/// what the Display API shows of a video already there (with `id`, or `publish_id` for one of our
/// posts: the simulator does not decode videos, so a test sets duration and size).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VideoSpec {
    username: Option<String>,
    id: Option<String>,
    publish_id: Option<String>,
    /// UTC seconds (a new manual video; default now).
    create_time: Option<i64>,
    /// Whole seconds.
    duration: Option<u32>,
    title: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    view_count: Option<u64>,
    like_count: Option<u64>,
    comment_count: Option<u64>,
    share_count: Option<u64>,
    is_aigc: Option<bool>,
}

fn bad_request(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": msg.into()})),
    )
        .into_response()
}

/// `POST /_sim/videos`: adds a manual public video (answers its `id`) or changes a video's counts,
/// duration and size. One spec or an array of them.
pub(super) async fn set_video(State(sim): State<Sim>, body: Bytes) -> Response {
    let parsed: Result<Vec<VideoSpec>, _> =
        serde_json::from_slice::<Value>(&body).and_then(|v| match v {
            Value::Array(_) => serde_json::from_value(v),
            other => serde_json::from_value(other).map(|s| vec![s]),
        });
    let specs = match parsed {
        Ok(s) => s,
        Err(e) => return bad_request(format!("bad video: {e}")),
    };
    let mut st = sim.lock();
    let mut ids = Vec::new();
    for s in specs {
        match apply_video(&mut st, s) {
            Ok(id) => ids.push(id.to_string()),
            Err(msg) => return bad_request(msg),
        }
    }
    axum::Json(json!({"ids": ids})).into_response()
}

fn apply_video(st: &mut SimState, s: VideoSpec) -> Result<u64, String> {
    if let Some(pid) = &s.publish_id {
        let Some(&i) = st.by_publish_id.get(pid) else {
            return Err(format!("no post has publish_id {pid:?}"));
        };
        if s.username.is_some() || s.id.is_some() || s.create_time.is_some() || s.title.is_some() {
            return Err("with publish_id, give only duration, width, height and counts".into());
        }
        let p = &mut st.posts[i];
        let d = &mut p.display;
        d.duration = s.duration.or(d.duration);
        d.width = s.width.or(d.width);
        d.height = s.height.or(d.height);
        d.view_count = s.view_count.unwrap_or(d.view_count);
        d.like_count = s.like_count.unwrap_or(d.like_count);
        d.comment_count = s.comment_count.unwrap_or(d.comment_count);
        d.share_count = s.share_count.unwrap_or(d.share_count);
        return Ok(p.post_id.unwrap_or(0));
    }
    if let Some(id) = &s.id {
        let Ok(id) = id.parse::<u64>() else {
            return Err(format!(
                "id {id:?} is not a video id; give the 19 digits as a string"
            ));
        };
        let Some(v) = st
            .creators
            .values_mut()
            .flat_map(|c| c.manual_videos.iter_mut())
            .find(|v| v.id == id)
        else {
            return Err(format!(
                "no manual video has id {id}; use publish_id for our posts"
            ));
        };
        v.duration = s.duration.unwrap_or(v.duration);
        v.width = s.width.unwrap_or(v.width);
        v.height = s.height.unwrap_or(v.height);
        v.view_count = s.view_count.unwrap_or(v.view_count);
        v.like_count = s.like_count.unwrap_or(v.like_count);
        v.comment_count = s.comment_count.unwrap_or(v.comment_count);
        v.share_count = s.share_count.unwrap_or(v.share_count);
        return Ok(id);
    }
    let Some(username) = &s.username else {
        return Err("give username (a new manual video), id or publish_id".into());
    };
    let id: u64 = random_digits(19)
        .parse()
        .map_err(|_| "id generation failed".to_string())?;
    let video = Video {
        id,
        create_time_ms: s
            .create_time
            .map_or_else(unix_ms, |t| t.saturating_mul(1000)),
        duration: s.duration.unwrap_or(15),
        width: s.width.unwrap_or(1080),
        height: s.height.unwrap_or(1920),
        caption: s.title.unwrap_or_default(),
        view_count: s.view_count.unwrap_or(0),
        like_count: s.like_count.unwrap_or(0),
        comment_count: s.comment_count.unwrap_or(0),
        share_count: s.share_count.unwrap_or(0),
        is_aigc: s.is_aigc.unwrap_or(false),
    };
    st.creator_mut(username, false).manual_videos.push(video);
    Ok(id)
}
