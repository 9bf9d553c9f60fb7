use std::path::Path;

use serde_json::json;
use tiktok_poster::tiktok::{
    ChunkPlan, Disposition, InitResponse, PostInfo, PrivacyLevel, Source, TokenSet, UploadRequest,
    UploadUrl,
};

use crate::support::{TestSim, make_video};

/// A Direct Post init for a FILE_UPLOAD of this plan (SELF_ONLY).
pub(crate) async fn init(t: &TestSim, tok: &TokenSet, plan: ChunkPlan) -> InitResponse {
    t.client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &Source::FileUpload(plan),
        )
        .await
        .unwrap()
}

/// The upload of the whole file from 0, without a source check.
pub(crate) fn req<'a>(url: &'a UploadUrl, path: &'a Path, plan: ChunkPlan) -> UploadRequest<'a> {
    UploadRequest {
        url,
        path,
        plan,
        content_type: "video/mp4",
        start_offset: 0,
        check: None,
    }
}

/// PUTs one chunk by hand, as an earlier attempt would have.
async fn put_chunk_by_hand(
    t: &TestSim,
    url: &UploadUrl,
    path: &Path,
    plan: ChunkPlan,
    index: u64,
) -> u16 {
    let (start, len) = plan.chunk(index);
    let bytes = std::fs::read(path).unwrap()[start as usize..(start + len) as usize].to_vec();
    t.http
        .put(url.expose())
        .header("content-type", "video/mp4")
        .header(
            "content-range",
            format!("bytes {}-{}/{}", start, start + len - 1, plan.video_size),
        )
        .body(bytes)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A multi-chunk upload of a few hundred MB arrives whole, in order, with the right sha256, and the
/// progress callback sees every chunk boundary.
#[tokio::test]
async fn a_300_mb_multi_chunk_upload_arrives_with_the_right_sha256() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("big", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mp4");
    let size = 300_000_123;
    let sha = make_video(&path, size);
    let plan = ChunkPlan::for_size(size).unwrap();
    assert_eq!(plan.total_chunk_count, 30);
    let init = init(&t, &tok, plan).await;
    let url = init.upload_url.unwrap();
    let mut seen = Vec::new();
    let out = t
        .client
        .upload_file(req(&url, &path, plan), &mut |n| seen.push(n))
        .await
        .unwrap();
    assert_eq!(out.requests, 30);
    assert_eq!((out.retries, out.resyncs), (0, 0));
    assert_eq!(seen.len(), 30);
    assert_eq!(*seen.last().unwrap(), size);
    let p = t.post(&init.publish_id).await;
    assert_eq!(p["bytes"], size);
    assert_eq!(p["sha256"], sha);
}

/// After a 416 the client resumes from the server's Content-Range instead of failing or re-sending
/// everything.
#[tokio::test]
async fn a_416_is_resumed_from_the_response_content_range() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("resume", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.mp4");
    let size = 35_000_000 + 64_000_000;
    let sha = make_video(&path, size);
    let plan = ChunkPlan::for_size(size).unwrap();
    let init = init(&t, &tok, plan).await;
    let url = init.upload_url.unwrap();
    // An earlier attempt got two chunks in before it died.
    assert_eq!(put_chunk_by_hand(&t, &url, &path, plan, 0).await, 206);
    assert_eq!(put_chunk_by_hand(&t, &url, &path, plan, 1).await, 206);
    // A repeated chunk is refused with 416, as TikTok does.
    assert_eq!(put_chunk_by_hand(&t, &url, &path, plan, 1).await, 416);
    let out = t
        .client
        .upload_file(req(&url, &path, plan), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(out.resyncs, 1, "{out:?}");
    assert_eq!(out.requests, 1 + (plan.total_chunk_count as u32 - 2));
    assert_eq!(t.post(&init.publish_id).await["sha256"], sha);
}

/// A connection dropped halfway through a chunk is retried with the same chunk and the upload is not
/// corrupted; a response lost after the chunk was kept is resolved through a 416.
#[tokio::test]
async fn dropped_connections_mid_chunk_and_after_it_do_not_corrupt_the_upload() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("droppy", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.mp4");
    let size = 90_000_000;
    let sha = make_video(&path, size);
    let plan = ChunkPlan::for_size(size).unwrap();
    let init = init(&t, &tok, plan).await;
    let url = init.upload_url.unwrap();
    t.fault(json!([
        {"endpoint": "upload", "drop": true},
        {"endpoint": "upload"},
        {"endpoint": "upload", "drop_after": true},
    ]))
    .await;
    let out = t
        .client
        .upload_file(req(&url, &path, plan), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(out.retries, 2, "{out:?}");
    assert_eq!(out.resyncs, 1, "{out:?}");
    let p = t.post(&init.publish_id).await;
    assert_eq!(p["sha256"], sha);
    assert_eq!(p["status"], "PROCESSING_UPLOAD");
}

/// A 5xx from the upload host sends the same chunk again.
#[tokio::test]
async fn a_5xx_retries_the_same_chunk() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("flaky", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.webm");
    let sha = make_video(&path, 2_000_000);
    let plan = ChunkPlan::for_size(2_000_000).unwrap();
    let init = init(&t, &tok, plan).await;
    let url = init.upload_url.unwrap();
    t.fault(json!({"endpoint": "upload", "status": 502, "times": 2}))
        .await;
    let mut r = req(&url, &path, plan);
    r.content_type = "video/webm";
    let out = t.client.upload_file(r, &mut |_| {}).await.unwrap();
    assert_eq!((out.requests, out.retries), (3, 2));
    assert_eq!(t.post(&init.publish_id).await["sha256"], sha);
}

/// Past its hour the upload_url is refused with 403 and the client gives up: the post must be
/// initialised again (which only the pipeline may decide).
#[tokio::test]
async fn an_expired_upload_url_fails_for_good() {
    let t = TestSim::spawn(|c| c.upload_url_ttl_secs = 0).await;
    let tok = t.connect("late", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.mp4");
    make_video(&path, 1_000_000);
    let plan = ChunkPlan::for_size(1_000_000).unwrap();
    let init = init(&t, &tok, plan).await;
    let url = init.upload_url.unwrap();
    let err = t
        .client
        .upload_file(req(&url, &path, plan), &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("upload_url_expired", Some(403))
    );
    assert_eq!(err.disposition(), Disposition::Fail);
    assert!(!err.to_string().contains("upload_token"), "{err}");
}

/// A file that changed size since it was planned is refused before anything is sent.
#[tokio::test]
async fn a_file_that_changed_since_planning_is_refused() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("changed", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.mp4");
    make_video(&path, 1_000_000);
    let plan = ChunkPlan::for_size(1_000_000).unwrap();
    let init = init(&t, &tok, plan).await;
    make_video(&path, 1_000_001);
    let url = init.upload_url.unwrap();
    let err = t
        .client
        .upload_file(req(&url, &path, plan), &mut |_| {})
        .await
        .unwrap_err();
    assert!(err.message.contains("file changed"), "{err}");
    assert!(t.stats().await["requests"].get("upload").is_none());
}

/// Transport errors never carry the upload URL (its query string is a credential).
#[tokio::test]
async fn transport_errors_never_show_the_upload_url() {
    let t = TestSim::spawn(|_| {}).await;
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()));
    let url = UploadUrl::new(format!(
        "http://{closed}/upload/?upload_id=1&upload_token=SECRET-TOKEN"
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.mp4");
    make_video(&path, 1000);
    let mut cfg = t.client.config().clone();
    cfg.upload_chunk_retries = 0;
    let client = tiktok_poster::tiktok::Client::new(cfg).unwrap();
    let err = client
        .upload_file(
            req(&url, &path, ChunkPlan::for_size(1000).unwrap()),
            &mut |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(err.disposition(), Disposition::Retry);
    assert!(!err.to_string().contains("SECRET-TOKEN"), "{err}");
    assert!(!format!("{err:?}").contains("SECRET-TOKEN"), "{err:?}");
}
