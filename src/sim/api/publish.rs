//! TikTok's Content Posting start: `creator_info/query` and the two inits (Direct Post and inbox
//! upload), for both `FILE_UPLOAD` and `PULL_FROM_URL`.
//!
//! As strict as the strictest reading of TikTok's rules, so client bugs cannot pass: unknown fields
//! are refused, the chunk plan is checked at init under both readings of "MB" ([`check_plan`]),
//! privacy levels must be among the creator's `creator_info` options, an unaudited app may post only
//! to private accounts, pulled URLs must be on a verified prefix, and the daily Direct Post cap and
//! the pending-inbox cap apply per creator; a banned creator (and, while the app's quota of active
//! creators is reached, every creator) cannot post.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{api_error, bearer, finish, ok, prelude};
use crate::sim::state::{
    Post, PostKind, PostSource, SimState, random_digits, random_token, unix_ms,
};
use crate::sim::{ConnKill, Sim};

const MIN_CHUNK: u64 = 5 * 1024 * 1024;
const MAX_CHUNK: u64 = 64_000_000;
const MAX_FINAL_CHUNK: u64 = 128_000_000;
const MAX_VIDEO_BYTES: u64 = 4 * 1024 * 1024 * 1024;
const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) async fn creator_info(
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
    let app_capped = st.active_user_cap_reached;
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
    if app_capped {
        return api_error(
            st,
            200,
            "reached_active_user_cap",
            "The app has reached its daily quota of active creators.",
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

pub(super) async fn video_init(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    init(sim, conn, headers, body, PostKind::Direct).await
}

pub(super) async fn inbox_init(
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
    let app_capped = st.active_user_cap_reached;
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
            if app_capped {
                return Err(api_error(
                    st,
                    403,
                    "reached_active_user_cap",
                    "The app has reached its daily quota of active creators.",
                ));
            }
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
        uploaded_unix_ms: None,
        completed_at: None,
        failed: None,
        post_id: None,
        display: Default::default(),
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
