//! TikTok's upload endpoint: the chunked `PUT` to an init's `upload_url`.
//!
//! As strict as TikTok: the URL's id and token must match and not have expired, the content type must
//! be a video type, `Content-Range` must be sequential (416 with the range received so far otherwise,
//! and for a second chunk while one is in flight), each chunk must be the one the init's plan
//! declared, and the body must be exactly `Content-Length` bytes. A chunk is kept only when fully
//! received ([`commit`]); the last one marks the post ready and records its SHA-256 (unless
//! `--skip-upload-hash`) and the instant it was answered.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::{drop_connection, finish, prelude};
use crate::sim::state::{PostSource, SimState};
use crate::sim::{ConnKill, Sim};

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

pub(super) async fn upload(
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
    // Hashing is skipped on request (throughput runs); the post's sha256 then stays unknown.
    let hash = !sim.cfg.skip_upload_hash;
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
        if hash {
            hasher.update(&bytes);
        }
        if drop_mid_body && received >= len / 2 {
            drop(guard);
            return drop_connection(&conn).await;
        }
    }
    let Some((done, uploaded)) = commit(&sim, idx, start, len, received, hash.then_some(hasher))
    else {
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
    hasher: Option<Sha256>,
) -> Option<(bool, u64)> {
    let mut st = sim.lock();
    if received != len {
        return None;
    }
    st.stats.bytes_received += len;
    let post = &mut st.posts[idx];
    post.uploaded = start + len;
    let hashed = hasher.is_some();
    if let Some(h) = hasher {
        post.hasher = h;
    }
    let total = match post.source {
        PostSource::File { size, .. } => size,
        PostSource::Pull { .. } => post.uploaded,
    };
    let done = post.uploaded == total;
    if done {
        post.sha256 = hashed.then(|| hex::encode(post.hasher.clone().finalize()));
        post.ready_at = Some(Instant::now());
        post.uploaded_unix_ms = Some(crate::sim::state::unix_ms());
    }
    Some((done, post.uploaded))
}
