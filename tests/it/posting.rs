use std::time::Duration;

use serde_json::json;
use tiktok_poster::tiktok::{
    ChunkPlan, DAILY_WINDOW as DAILY_WINDOW_FOR_TESTS, Disposition, ErrorKind, PostInfo,
    PrivacyLevel, Source, StatusKind,
};

use crate::support::{TestSim, wait_until};

fn file_source(size: u64) -> Source {
    Source::FileUpload(ChunkPlan::for_size(size).unwrap())
}

/// creator_info returns the creator's options: public accounts may post publicly, private ones to followers.
#[tokio::test]
async fn creator_info_lists_the_privacy_options_of_public_and_private_accounts() {
    let t = TestSim::spawn(|_| {}).await;
    let public = t.connect("pub", false).await;
    let info = t.client.creator_info(&public.access_token).await.unwrap();
    assert_eq!(info.creator_username, "pub");
    assert!(info.allows(PrivacyLevel::PublicToEveryone));
    assert!(!info.allows(PrivacyLevel::FollowerOfCreator));
    assert_eq!(info.max_video_post_duration_sec, Some(600));
    let private = t.connect("priv", true).await;
    let info = t.client.creator_info(&private.access_token).await.unwrap();
    assert!(info.allows(PrivacyLevel::FollowerOfCreator));
    assert!(!info.allows(PrivacyLevel::PublicToEveryone));
    assert!(info.duet_disabled && info.stitch_disabled);
}

/// A Direct Post goes from PROCESSING_UPLOAD to PUBLISH_COMPLETE with a public post id.
#[tokio::test]
async fn a_direct_post_publishes_with_a_post_id() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("direct", false).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    let sha = crate::support::make_video(&path, 3_000_000);
    let plan = ChunkPlan::for_size(3_000_000).unwrap();
    let mut post = PostInfo::new(PrivacyLevel::PublicToEveryone);
    post.title = Some("my cat #cat 😺".into());
    post.disable_comment = true;
    post.video_cover_timestamp_ms = Some(1000);
    post.is_aigc = true;
    let init = t
        .client
        .init_direct(&tok.access_token, &post, &Source::FileUpload(plan))
        .await
        .unwrap();
    assert!(
        init.publish_id.starts_with("v_pub_file~v2-1."),
        "{}",
        init.publish_id
    );
    assert!(
        !format!("{init:?}").contains("upload_token"),
        "the upload URL is redacted in Debug"
    );
    let status = t
        .client
        .fetch_status(&tok.access_token, &init.publish_id)
        .await
        .unwrap();
    assert_eq!(status.status, StatusKind::ProcessingUpload);
    assert_eq!(status.uploaded_bytes, Some(0));

    let url = init.upload_url.unwrap();
    t.client
        .upload_file(
            tiktok_poster::tiktok::UploadRequest {
                url: &url,
                path: &path,
                plan,
                content_type: "video/mp4",
                start_offset: 0,
                check: None,
            },
            &mut |_| {},
        )
        .await
        .unwrap();
    let done = wait_until(Duration::from_secs(5), "PUBLISH_COMPLETE", || async {
        let s = t
            .client
            .fetch_status(&tok.access_token, &init.publish_id)
            .await
            .unwrap();
        (s.status == StatusKind::PublishComplete).then_some(s)
    })
    .await;
    assert_eq!(done.post_ids.len(), 1);
    assert!(
        done.post_ids[0] >= 1_000_000_000_000_000_000,
        "19-digit post id"
    );
    let p = t.post(&init.publish_id).await;
    assert_eq!(p["sha256"], sha);
    assert_eq!(p["post_info"]["title"], "my cat #cat 😺");
    assert_eq!(
        p["post_info"]["brand_content_toggle"], false,
        "brand toggles are always sent"
    );
    assert_eq!(p["post_info"]["is_aigc"], true);
}

/// A non-public post completes with an empty id list; a draft ends in the inbox.
#[tokio::test]
async fn private_posts_have_no_public_id_and_drafts_land_in_the_inbox() {
    let t = TestSim::spawn(|c| c.publish_delay_ms = 0).await;
    let tok = t.connect("quiet", false).await;
    let init = t
        .client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &Source::PullFromUrl("https://x.invalid/v.mp4".into()),
        )
        .await
        .unwrap_err();
    assert_eq!(init.code, "url_ownership_unverified");
    assert_eq!(init.disposition(), Disposition::Fail);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.mov");
    crate::support::make_video(&path, 100_000);
    let plan = ChunkPlan::for_size(100_000).unwrap();
    let draft = t
        .client
        .init_inbox(&tok.access_token, &Source::FileUpload(plan))
        .await
        .unwrap();
    assert!(draft.publish_id.starts_with("v_inbox_file~v2."));
    let url = draft.upload_url.unwrap();
    let req = tiktok_poster::tiktok::UploadRequest {
        url: &url,
        path: &path,
        plan,
        content_type: "video/quicktime",
        start_offset: 0,
        check: None,
    };
    t.client.upload_file(req, &mut |_| {}).await.unwrap();
    let s = t
        .client
        .fetch_status(&tok.access_token, &draft.publish_id)
        .await
        .unwrap();
    assert_eq!(s.status, StatusKind::SendToUserInbox);
    assert!(s.post_ids.is_empty());
}

/// A privacy level the creator does not offer is refused for good (403 privacy_level_option_mismatch).
#[tokio::test]
async fn a_privacy_level_outside_the_options_fails_for_good() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("strict", false).await;
    let err = t
        .client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::FollowerOfCreator),
            &file_source(1000),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("privacy_level_option_mismatch", Some(403))
    );
    assert_eq!(err.disposition(), Disposition::Fail);
}

/// An unaudited app may not post to a public account.
#[tokio::test]
async fn an_unaudited_client_cannot_post_to_a_public_account() {
    let t = TestSim::spawn(|c| c.unaudited = true).await;
    let tok = t.connect("loud", false).await;
    let info = t.client.creator_info(&tok.access_token).await.unwrap();
    assert_eq!(info.privacy_level_options, vec!["SELF_ONLY"]);
    let err = t
        .client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &file_source(1000),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code,
        "unaudited_client_can_only_post_to_private_accounts"
    );
    assert_eq!(err.disposition(), Disposition::Fail);
    let private = t.connect("hushed", true).await;
    t.client
        .init_direct(
            &private.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &file_source(1000),
        )
        .await
        .unwrap();
}

/// The daily cap answers 403 at init and, inside HTTP 200, at creator_info; both defer by 24 hours.
#[tokio::test]
async fn the_daily_cap_defers_for_a_day_and_arrives_inside_http_200_at_creator_info() {
    let t = TestSim::spawn(|c| c.daily_post_cap = 2).await;
    let tok = t.connect("busy", false).await;
    let post = PostInfo::new(PrivacyLevel::SelfOnly);
    for _ in 0..2 {
        t.client
            .init_direct(&tok.access_token, &post, &file_source(1000))
            .await
            .unwrap();
    }
    let err = t
        .client
        .init_direct(&tok.access_token, &post, &file_source(1000))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("spam_risk_too_many_posts", Some(403))
    );
    assert_eq!(
        err.disposition(),
        Disposition::Defer(DAILY_WINDOW_FOR_TESTS)
    );
    let err = t.client.creator_info(&tok.access_token).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("spam_risk_too_many_posts", Some(200))
    );
    assert_eq!(err.kind, ErrorKind::Api);
    assert_eq!(
        err.disposition(),
        Disposition::Defer(DAILY_WINDOW_FOR_TESTS)
    );
}

/// At most 5 drafts may be pending; the sixth is deferred.
#[tokio::test]
async fn a_sixth_pending_draft_is_refused() {
    let t = TestSim::spawn(|c| c.init_rate_per_min = 100).await;
    let tok = t.connect("drafty", false).await;
    for _ in 0..5 {
        t.client
            .init_inbox(&tok.access_token, &file_source(1000))
            .await
            .unwrap();
    }
    let err = t
        .client
        .init_inbox(&tok.access_token, &file_source(1000))
        .await
        .unwrap_err();
    assert_eq!(err.code, "spam_risk_too_many_pending_share");
    assert!(matches!(err.disposition(), Disposition::Defer(_)));
}

/// The seventh init in a minute is rate limited (429) and waits for the window.
#[tokio::test]
async fn the_seventh_init_in_a_minute_is_rate_limited() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("quick", false).await;
    let post = PostInfo::new(PrivacyLevel::SelfOnly);
    for _ in 0..6 {
        t.client
            .init_direct(&tok.access_token, &post, &file_source(1000))
            .await
            .unwrap();
    }
    let err = t
        .client
        .init_direct(&tok.access_token, &post, &file_source(1000))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("rate_limit_exceeded", Some(429))
    );
    assert_eq!(
        err.disposition(),
        Disposition::RetryAfter(Duration::from_secs(60))
    );
    // Status fetches have their own budget of 30 a minute.
    let init = t.posts().await[0]["publish_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..30 {
        t.client
            .fetch_status(&tok.access_token, &init)
            .await
            .unwrap();
    }
    assert_eq!(
        t.client
            .fetch_status(&tok.access_token, &init)
            .await
            .unwrap_err()
            .code,
        "rate_limit_exceeded"
    );
}

/// A title over 2200 UTF-16 units never reaches TikTok.
#[tokio::test]
async fn an_overlong_title_is_refused_before_any_request() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("wordy", false).await;
    let mut post = PostInfo::new(PrivacyLevel::SelfOnly);
    post.title = Some("😀".repeat(1101));
    let err = t
        .client
        .init_direct(&tok.access_token, &post, &file_source(1000))
        .await
        .unwrap_err();
    assert_eq!(err.disposition(), Disposition::Fail);
    assert!(err.message.contains("2202 UTF-16"), "{err}");
    assert!(t.stats().await["requests"].get("video_init").is_none());
}

/// The simulator is strict about the chunk plan and the post_info fields, with TikTok's messages.
#[tokio::test]
async fn bad_plans_and_unknown_fields_get_invalid_params_with_tiktoks_message() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("raw", false).await;
    let send = |body: serde_json::Value| {
        let req = t
            .http
            .post(t.url("/v2/post/publish/video/init/"))
            .bearer_auth(secrecy::ExposeSecret::expose_secret(&tok.access_token))
            .json(&body);
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let pi = json!({"privacy_level": "SELF_ONLY"});
    let (s, v) = send(json!({"post_info": pi, "source_info": {"source": "FILE_UPLOAD", "video_size": 158_000_000u64, "chunk_size": 158_000_000u64, "total_chunk_count": 1}})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str().unwrap()),
        (400, "invalid_params")
    );
    assert_eq!(v["error"]["message"], "The chunk size is invalid");
    let (s, v) = send(json!({"post_info": pi, "source_info": {"source": "FILE_UPLOAD", "video_size": 50_000_123u64, "chunk_size": 10_000_000u64, "total_chunk_count": 6}})).await;
    assert_eq!(
        (s, v["error"]["message"].as_str().unwrap()),
        (400, "total chunk count is invalid")
    );
    let (s, v) = send(json!({"post_info": {"privacy_level": "SELF_ONLY", "description": "x"}, "source_info": {"source": "FILE_UPLOAD", "video_size": 10, "chunk_size": 10, "total_chunk_count": 1}})).await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("description")
    );
    // The documented example is accepted.
    let (s, v) = send(json!({"post_info": pi, "source_info": {"source": "FILE_UPLOAD", "video_size": 50_000_123u64, "chunk_size": 10_000_000u64, "total_chunk_count": 5}})).await;
    assert_eq!((s, v["error"]["code"].as_str().unwrap()), (200, "ok"));
}

/// With the August 2026 behaviour on, every multi-chunk init fails and the client reads both spellings.
#[tokio::test]
async fn multi_chunk_inits_can_be_refused_like_in_august_2026() {
    let t = TestSim::spawn(|c| c.reject_multi_chunk = true).await;
    let tok = t.connect("aug", false).await;
    let post = PostInfo::new(PrivacyLevel::SelfOnly);
    let err = t
        .client
        .init_direct(&tok.access_token, &post, &file_source(200_000_000))
        .await
        .unwrap_err();
    assert!(err.is_invalid_params(), "{err}");
    assert_eq!(err.message, "The chunk size is invalid");
    t.client
        .init_direct(&tok.access_token, &post, &file_source(64_000_000))
        .await
        .unwrap();
}

/// Status fetch refuses unknown ids and other users' ids.
#[tokio::test]
async fn status_refuses_unknown_and_foreign_publish_ids() {
    let t = TestSim::spawn(|_| {}).await;
    let a = t.connect("owner", false).await;
    let b = t.connect("other", false).await;
    let init = t
        .client
        .init_direct(
            &a.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &file_source(1000),
        )
        .await
        .unwrap();
    let err = t
        .client
        .fetch_status(&b.access_token, &init.publish_id)
        .await
        .unwrap_err();
    assert_eq!(err.code, "token_not_authorized_for_specified_publish_id");
    let err = t
        .client
        .fetch_status(&a.access_token, "v_pub_file~v2-1.1")
        .await
        .unwrap_err();
    assert_eq!(err.code, "invalid_publish_id");
    assert_eq!(err.disposition(), Disposition::Fail);
}

/// A pull from a verified prefix downloads, can be cancelled while downloading, then reads FAILED.
#[tokio::test]
async fn a_pull_can_be_cancelled_while_downloading() {
    let t = TestSim::spawn(|c| {
        c.verified_url_prefixes = vec!["https://cdn.example.com/v/".into()];
        c.publish_delay_ms = 60_000;
    })
    .await;
    let tok = t.connect("puller", false).await;
    let src = Source::PullFromUrl("https://cdn.example.com/v/cat.mp4".into());
    let init = t
        .client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &src,
        )
        .await
        .unwrap();
    assert!(init.upload_url.is_none());
    assert!(init.publish_id.starts_with("v_pub_url~v2."));
    let s = t
        .client
        .fetch_status(&tok.access_token, &init.publish_id)
        .await
        .unwrap();
    assert_eq!(s.status, StatusKind::ProcessingDownload);
    t.client
        .cancel(&tok.access_token, &init.publish_id)
        .await
        .unwrap();
    let s = t
        .client
        .fetch_status(&tok.access_token, &init.publish_id)
        .await
        .unwrap();
    assert_eq!(
        (s.status, s.fail_reason.as_deref()),
        (StatusKind::Failed, Some("publish_cancelled"))
    );
    assert_eq!(
        t.client
            .cancel(&tok.access_token, &init.publish_id)
            .await
            .unwrap_err()
            .code,
        "publish_not_cancellable"
    );
}

/// Injected failures reach the client with the right disposition: 5xx retries, a dropped connection
/// retries, an error code inside HTTP 200 fails, a FAILED status carries its reason.
#[tokio::test]
async fn injected_faults_map_to_their_dispositions() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("faulty", false).await;
    t.fault(json!({"endpoint": "creator_info", "status": 503}))
        .await;
    let err = t.client.creator_info(&tok.access_token).await.unwrap_err();
    assert_eq!(
        (err.code.as_str(), err.http_status),
        ("internal_error", Some(503))
    );
    assert_eq!(err.disposition(), Disposition::Retry);

    t.fault(json!({"endpoint": "creator_info", "drop": true}))
        .await;
    let err = t.client.creator_info(&tok.access_token).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transport { .. }), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Retry);

    t.fault(json!({"endpoint": "creator_info", "error": "spam_risk_user_banned_from_posting", "times": 2})).await;
    for _ in 0..2 {
        let err = t.client.creator_info(&tok.access_token).await.unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.http_status),
            ("spam_risk_user_banned_from_posting", Some(200))
        );
        assert_eq!(err.disposition(), Disposition::Fail);
    }
    t.client.creator_info(&tok.access_token).await.unwrap();

    t.fault(json!({"endpoint": "video_init", "error": "invalid_param"}))
        .await;
    let err = t
        .client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &file_source(10),
        )
        .await
        .unwrap_err();
    assert!(err.is_invalid_params());

    let init = t
        .client
        .init_direct(
            &tok.access_token,
            &PostInfo::new(PrivacyLevel::SelfOnly),
            &file_source(10),
        )
        .await
        .unwrap();
    t.fault(json!({"endpoint": "status", "fail_reason": "frame_rate_check_failed"}))
        .await;
    let s = t
        .client
        .fetch_status(&tok.access_token, &init.publish_id)
        .await
        .unwrap();
    assert_eq!(
        (s.status, s.fail_reason.as_deref()),
        (StatusKind::Failed, Some("frame_rate_check_failed"))
    );

    let stats = t.stats().await;
    assert_eq!(stats["errors"]["spam_risk_user_banned_from_posting"], 2);
    assert_eq!(stats["requests"]["creator_info"], 5);
}

/// A slow answer past the request timeout is a retryable timeout.
#[tokio::test]
async fn a_slow_answer_times_out_and_is_retryable() {
    let mut t = TestSim::spawn(|_| {}).await;
    let tok = t.connect("slow", false).await;
    let mut cfg = t.client.config().clone();
    cfg.request_timeout = Duration::from_millis(200);
    t.client = tiktok_poster::tiktok::Client::new(cfg).unwrap();
    t.fault(json!({"endpoint": "creator_info", "delay_ms": 1000}))
        .await;
    let err = t.client.creator_info(&tok.access_token).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transport { timeout: true }, "{err}");
    assert_eq!(err.disposition(), Disposition::Retry);
}
