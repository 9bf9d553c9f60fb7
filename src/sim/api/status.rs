//! TikTok's Content Posting follow-up: `status/fetch` and `cancel`, and the clock that moves a post
//! from processing to complete.
//!
//! A post's status is worked out when it is looked at ([`settle`]): complete once the configured
//! publish delay has passed since its last byte (or its pull init), and, for a public Direct Post, a
//! public post id once the moderation delay has passed. Both endpoints check the bearer token, the
//! per-token rate limit (status only) and that the token owns the `publish_id`, with TikTok's codes.
//! Only a pull still downloading can be cancelled, as on TikTok.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::{api_error, bearer, finish, ok, prelude};
use crate::sim::state::{Post, PostKind, PostSource, SimState, random_digits, unix_ms};
use crate::sim::{ConnKill, Sim};

/// Moves a post along by the clock: processing → complete after the configured delay.
pub(super) fn settle(post: &mut Post, delay: Duration, id_delay: Duration) {
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

pub(super) fn status_name(post: &Post) -> &'static str {
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

pub(super) async fn status_fetch(
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

pub(super) async fn cancel(
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
