//! TikTok's Display API and user info: `GET /v2/user/info/`, `POST /v2/video/list/` and
//! `POST /v2/video/query/` (`tiktok-api.md` section 13).
//!
//! As strict as TikTok reads: `fields` is required and an unknown field is refused; a user-info field
//! whose scope the token lacks fails the whole call with `scope_permission_missed`; the list shows only
//! the creator's public posts (our public Direct Posts once they have their public id, and the videos
//! posted "by hand" through `/_sim/videos`), newest first, with `cursor` in UTC milliseconds,
//! `max_count` 1 to 20 and `create_time` in seconds; a query takes 1 to 20 ids; captions are cut at
//! 150 characters; each endpoint has its own 600-per-minute window per token.
//!
//! Where the reference says UNCONFIRMED the simulator serves either reading, chosen by a flag: which
//! of `title` and `video_description` carries a post's caption, whether `video_count` counts private
//! posts, and whether a query naming another user's id is refused or leaves it out.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::status::settle;
use super::{api_error, bearer, finish, ok, prelude};
use crate::sim::state::{Creator, SimState, Video};
use crate::sim::{CaptionField, ConnKill, Sim};

/// User-info fields by the scope that grants them, as section 13 lists them.
const USER_FIELDS: &[(&str, &[&str])] = &[
    (
        "user.info.basic",
        &[
            "open_id",
            "union_id",
            "avatar_url",
            "avatar_url_100",
            "avatar_large_url",
            "display_name",
        ],
    ),
    (
        "user.info.profile",
        &[
            "bio_description",
            "profile_deep_link",
            "is_verified",
            "username",
        ],
    ),
    (
        "user.info.stats",
        &[
            "follower_count",
            "following_count",
            "likes_count",
            "video_count",
        ],
    ),
];

/// The fields of the Display API's video object.
const VIDEO_FIELDS: &[&str] = &[
    "id",
    "create_time",
    "cover_image_url",
    "share_url",
    "video_description",
    "duration",
    "height",
    "width",
    "title",
    "embed_html",
    "embed_link",
    "like_count",
    "comment_count",
    "share_count",
    "view_count",
    "is_aigc",
];

/// `max_count` of `video/list` and the number of ids of `video/query`: at most 20.
const MAX_PAGE: u64 = 20;
/// `max_count` when the body has none.
const DEFAULT_PAGE: u64 = 10;
/// Titles and descriptions are cut at 150 characters.
const MAX_TEXT_CHARS: usize = 150;
/// What the Display API shows of one of our posts when a test set nothing else: the test fixture is
/// 1.2 s of 720x1280 (the simulator does not decode videos).
const POSTED_DURATION: u32 = 1;
const POSTED_SIZE: (u32, u32) = (720, 1280);

/// The `fields` query parameter as a list; `Err` is TikTok's answer to a missing or unknown field.
fn fields_of(
    st: &mut SimState,
    q: &HashMap<String, String>,
    known: &[&str],
) -> Result<Vec<String>, Response> {
    let fields: Vec<String> = q
        .get("fields")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    if fields.is_empty() {
        return Err(api_error(
            st,
            400,
            "invalid_params",
            "The fields parameter is required.",
        ));
    }
    if let Some(f) = fields.iter().find(|f| !known.contains(&f.as_str())) {
        return Err(api_error(
            st,
            400,
            "invalid_params",
            &format!("Invalid field: {f}"),
        ));
    }
    Ok(fields)
}

/// One Display API call: the endpoint's faults (as every endpoint has), then `handle` under the
/// simulator's lock, its refusal or answer alike, then what a fault does after answering.
async fn serve(
    sim: &Sim,
    endpoint: &str,
    conn: &ConnKill,
    handle: impl FnOnce(&Sim, &mut SimState) -> Result<Response, Response>,
) -> Response {
    let fault = match prelude(sim, endpoint, conn).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let resp = {
        let mut st = sim.lock();
        match handle(sim, &mut st) {
            Ok(r) | Err(r) => r,
        }
    };
    finish(&fault, conn, resp).await
}

/// `GET /v2/user/info/?fields=…`.
pub(super) async fn user_info(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    serve(&sim, "user_info", &conn, |sim, st| {
        user_info_inner(sim, st, &headers, &q)
    })
    .await
}

fn user_info_inner(
    sim: &Sim,
    st: &mut SimState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Response, Response> {
    let scopes: Vec<&str> = USER_FIELDS.iter().map(|(s, _)| *s).collect();
    let open_id = bearer(
        st,
        headers,
        "user_info",
        sim.cfg.display_rate_per_min,
        &scopes,
    )?;
    let all: Vec<&str> = USER_FIELDS
        .iter()
        .flat_map(|(_, f)| f.iter().copied())
        .collect();
    let fields = fields_of(st, q, &all)?;
    let granted = granted_scopes(st, headers);
    let missing: Vec<&str> = fields
        .iter()
        .filter_map(|f| {
            let (scope, _) = USER_FIELDS
                .iter()
                .find(|(_, fs)| fs.contains(&f.as_str()))?;
            (!granted.iter().any(|g| g.as_str() == *scope)).then_some(*scope)
        })
        .collect();
    if let Some(scope) = missing.first() {
        let msg = format!("Some fields need additional scopes: {scope} was not authorized.");
        return Err(api_error(st, 400, "scope_permission_missed", &msg));
    }
    let videos = public_videos(sim, st, &open_id).len() as u64;
    let private_posts = st
        .posts
        .iter()
        .filter(|p| p.open_id == open_id && !p.public && p.completed_unix_ms.is_some())
        .count() as u64;
    let Some(c) = st.creators.get(&open_id) else {
        return Err(api_error(
            st,
            401,
            "access_token_invalid",
            "The user of this token no longer exists.",
        ));
    };
    let video_count = c
        .video_count
        .unwrap_or(if sim.cfg.video_count_includes_private {
            videos + private_posts
        } else {
            videos
        });
    let mut user = Map::new();
    for f in &fields {
        let v = match f.as_str() {
            "open_id" => json!(c.open_id),
            "union_id" => json!(format!("u{}", &c.open_id.replace('-', "")[..24])),
            "avatar_url" | "avatar_url_100" | "avatar_large_url" => {
                json!(format!("{}/_sim/avatar/{}.png", sim.base_url, c.username))
            }
            "display_name" => json!(c.nickname),
            "bio_description" => json!(""),
            "profile_deep_link" => json!(format!("https://vm.tiktok.com/sim/{}", &c.open_id[..8])),
            "is_verified" => json!(false),
            "username" => json!(c.username),
            "follower_count" => json!(c.follower_count),
            "following_count" => json!(c.following_count),
            "likes_count" => json!(c.likes_count),
            "video_count" => json!(video_count),
            _ => continue,
        };
        user.insert(f.clone(), v);
    }
    Ok(ok(json!({ "user": user })))
}

/// The scopes of the request's bearer token (already checked by [`bearer`]).
fn granted_scopes(st: &SimState, headers: &HeaderMap) -> Vec<String> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    st.access
        .get(token)
        .map(|t| t.scopes.clone())
        .unwrap_or_default()
}

/// The creator's public videos, newest first: the manual ones and our public Direct Posts that have
/// their public id.
fn public_videos(sim: &Sim, st: &mut SimState, open_id: &str) -> Vec<Video> {
    let delay = Duration::from_millis(sim.cfg.publish_delay_ms);
    let id_delay = Duration::from_millis(sim.cfg.post_id_delay_ms);
    let mut out: Vec<Video> = Vec::new();
    for p in st.posts.iter_mut().filter(|p| p.open_id == open_id) {
        settle(p, delay, id_delay);
        let (Some(id), true, Some(at)) = (p.post_id, p.public, p.completed_unix_ms) else {
            continue;
        };
        let d = p.display;
        out.push(Video {
            id,
            create_time_ms: at,
            duration: d.duration.unwrap_or(POSTED_DURATION),
            width: d.width.unwrap_or(POSTED_SIZE.0),
            height: d.height.unwrap_or(POSTED_SIZE.1),
            caption: p
                .post_info
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            view_count: d.view_count,
            like_count: d.like_count,
            comment_count: d.comment_count,
            share_count: d.share_count,
            is_aigc: p.post_info.get("is_aigc") == Some(&Value::Bool(true)),
        });
    }
    if let Some(c) = st.creators.get(open_id) {
        out.extend(c.manual_videos.iter().cloned());
    }
    out.sort_by(|a, b| {
        b.create_time_ms
            .cmp(&a.create_time_ms)
            .then(b.id.cmp(&a.id))
    });
    out
}

/// A video object with the asked fields.
fn video_json(sim: &Sim, c: &Creator, v: &Video, fields: &[String]) -> Value {
    let caption: String = v.caption.chars().take(MAX_TEXT_CHARS).collect();
    let (title, description) = match sim.cfg.display_caption {
        CaptionField::Title => (caption, String::new()),
        CaptionField::VideoDescription => (String::new(), caption),
    };
    let mut o = Map::new();
    for f in fields {
        let x = match f.as_str() {
            // TikTok documents the id as a string.
            "id" => json!(v.id.to_string()),
            "create_time" => json!(v.create_time_ms.div_euclid(1000)),
            "cover_image_url" => json!(format!("{}/_sim/cover/{}.jpg", sim.base_url, v.id)),
            "share_url" => json!(format!(
                "https://www.tiktok.com/@{}/video/{}",
                c.username, v.id
            )),
            "video_description" => json!(description),
            "duration" => json!(v.duration),
            "height" => json!(v.height),
            "width" => json!(v.width),
            "title" => json!(title),
            "embed_html" => json!(format!(
                "<blockquote class=\"tiktok-embed\" data-video-id=\"{}\"></blockquote>",
                v.id
            )),
            "embed_link" => json!(format!("https://www.tiktok.com/player/v1/{}", v.id)),
            "like_count" => json!(v.like_count),
            "comment_count" => json!(v.comment_count),
            "share_count" => json!(v.share_count),
            "view_count" => json!(v.view_count),
            "is_aigc" => json!(v.is_aigc),
            _ => continue,
        };
        o.insert(f.clone(), x);
    }
    Value::Object(o)
}

/// The request body as a JSON object with only `allowed` keys.
fn body_object(
    st: &mut SimState,
    body: &[u8],
    allowed: &[&str],
) -> Result<Map<String, Value>, Response> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ if body.iter().all(u8::is_ascii_whitespace) => Map::new(),
        _ => {
            return Err(api_error(
                st,
                400,
                "invalid_params",
                "The request body is not a valid JSON object.",
            ));
        }
    };
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        let msg = format!("Unknown field: {k}");
        return Err(api_error(st, 400, "invalid_params", &msg));
    }
    Ok(obj)
}

/// `POST /v2/video/list/?fields=…` with `{"cursor": ms, "max_count": n}`.
pub(super) async fn video_list(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    serve(&sim, "video_list", &conn, |sim, st| {
        video_list_inner(sim, st, &headers, &q, &body)
    })
    .await
}

fn video_list_inner(
    sim: &Sim,
    st: &mut SimState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response, Response> {
    let open_id = bearer(
        st,
        headers,
        "video_list",
        sim.cfg.display_rate_per_min,
        &["video.list"],
    )?;
    let fields = fields_of(st, q, VIDEO_FIELDS)?;
    let b = body_object(st, body, &["cursor", "max_count"])?;
    let cursor = match b.get("cursor") {
        None | Some(Value::Null) => i64::MAX,
        Some(v) => match v.as_i64().filter(|n| *n >= 0) {
            Some(n) => n,
            None => {
                return Err(api_error(
                    st,
                    400,
                    "invalid_params",
                    "cursor must be a non-negative int64 (UTC milliseconds).",
                ));
            }
        },
    };
    let max: u64 = match b.get("max_count") {
        None | Some(Value::Null) => DEFAULT_PAGE,
        Some(v) => match v.as_u64().filter(|n| (1..=MAX_PAGE).contains(n)) {
            Some(n) => n,
            None => {
                return Err(api_error(
                    st,
                    400,
                    "invalid_params",
                    "max_count must be an integer from 1 to 20.",
                ));
            }
        },
    };
    let older: Vec<Video> = public_videos(sim, st, &open_id)
        .into_iter()
        .filter(|v| v.create_time_ms < cursor)
        .collect();
    let page = &older[..older.len().min(max as usize)];
    let has_more = older.len() > page.len();
    let next = page
        .last()
        .map_or(cursor.min(crate::sim::state::unix_ms()), |v| {
            v.create_time_ms
        });
    let Some(c) = st.creators.get(&open_id) else {
        return Err(api_error(
            st,
            401,
            "access_token_invalid",
            "The user of this token no longer exists.",
        ));
    };
    let videos: Vec<Value> = page
        .iter()
        .map(|v| video_json(sim, c, v, &fields))
        .collect();
    Ok(ok(json!({
        "videos": videos,
        "cursor": next,
        "has_more": has_more,
    })))
}

/// `POST /v2/video/query/?fields=…` with `{"filters": {"video_ids": [...]}}`.
pub(super) async fn video_query(
    State(sim): State<Sim>,
    conn: axum::Extension<ConnKill>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    serve(&sim, "video_query", &conn, |sim, st| {
        video_query_inner(sim, st, &headers, &q, &body)
    })
    .await
}

fn video_query_inner(
    sim: &Sim,
    st: &mut SimState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<Response, Response> {
    let open_id = bearer(
        st,
        headers,
        "video_query",
        sim.cfg.display_rate_per_min,
        &["video.list"],
    )?;
    let fields = fields_of(st, q, VIDEO_FIELDS)?;
    let b = body_object(st, body, &["filters"])?;
    let ids = b
        .get("filters")
        .and_then(Value::as_object)
        .filter(|f| f.keys().all(|k| k == "video_ids"))
        .and_then(|f| f.get("video_ids"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().and_then(|s| s.parse::<u64>().ok()))
                .collect::<Option<Vec<u64>>>()
        });
    let ids = match ids {
        Some(Some(ids)) if (1..=MAX_PAGE as usize).contains(&ids.len()) => ids,
        Some(Some(ids)) if !ids.is_empty() => {
            return Err(api_error(
                st,
                400,
                "invalid_params",
                "video_ids may hold at most 20 ids.",
            ));
        }
        _ => {
            return Err(api_error(
                st,
                400,
                "invalid_params",
                "filters.video_ids must be a list of 1 to 20 video ids as strings.",
            ));
        }
    };
    let own = public_videos(sim, st, &open_id);
    if sim.cfg.display_refuse_foreign_ids
        && let Some(id) = ids.iter().find(|id| !own.iter().any(|v| v.id == **id))
    {
        let msg = format!("The video {id} does not belong to this user.");
        return Err(api_error(st, 400, "invalid_params", &msg));
    }
    let Some(c) = st.creators.get(&open_id) else {
        return Err(api_error(
            st,
            401,
            "access_token_invalid",
            "The user of this token no longer exists.",
        ));
    };
    let videos: Vec<Value> = ids
        .iter()
        .filter_map(|id| own.iter().find(|v| v.id == *id))
        .map(|v| video_json(sim, c, v, &fields))
        .collect();
    Ok(ok(json!({ "videos": videos })))
}
