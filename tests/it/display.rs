//! The Display API and user info, through the real client against the simulator over loopback: fields
//! by scope (a missing scope fails the whole call; the field picker never asks for one), the video
//! list's paging (newest first, cursor in milliseconds, `create_time` in seconds, at most 20 a page),
//! only public posts, titles cut at 150, queries of at most 20 of the user's own ids, videos posted
//! "by hand" through `/_sim/videos`, and the 600-a-minute window of each endpoint.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tiktok_poster::sim::CaptionField;
use tiktok_poster::tiktok::{
    ChunkPlan, Disposition, ErrorKind, PostInfo, PrivacyLevel, Source, StatusKind, TokenSet,
    UploadRequest, UserField, VIDEO_FIELDS,
};

use crate::support::{REDIRECT, TestSim, auth_request, param, wait_until};

/// Connects `username` asking for `scopes`, with the user unticking `deny` on the consent page.
async fn connect_with(t: &TestSim, username: &str, scopes: &[&str], deny: &[&str]) -> TokenSet {
    let mut req = auth_request(username, false);
    req.scopes = scopes.iter().map(|s| s.to_string()).collect();
    req.extra.push(("sim_deny_scopes".into(), deny.join(",")));
    let q = t.authorize(&req).await;
    let code = param(&q, "code").expect("the callback carries a code");
    t.client.exchange_code(&code, REDIRECT, None).await.unwrap()
}

const ALL_SCOPES: &[&str] = &[
    "user.info.basic",
    "user.info.profile",
    "user.info.stats",
    "video.list",
    "video.publish",
    "video.upload",
];

/// Adds videos through the control endpoint and returns their ids.
async fn add_videos(t: &TestSim, specs: Value) -> Vec<u64> {
    let resp = t
        .http
        .post(t.url("/_sim/videos"))
        .json(&specs)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let v: Value = resp.json().await.unwrap();
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().parse().unwrap())
        .collect()
}

async fn set_creator(t: &TestSim, body: Value) {
    let resp = t
        .http
        .post(t.url("/_sim/creators"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

/// A raw Display API call, for what the client refuses to send.
async fn raw(
    t: &TestSim,
    tok: &SecretString,
    path: &str,
    fields: &str,
    body: Value,
) -> (u16, Value) {
    let resp = t
        .http
        .post(t.url(path))
        .query(&[("fields", fields)])
        .bearer_auth(tok.expose_secret())
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// Posts a video through the Content Posting API and waits for it to complete; returns its
/// publish_id and public id (none for a non-public post).
async fn post_video(
    t: &TestSim,
    tok: &TokenSet,
    privacy: PrivacyLevel,
    title: &str,
) -> (String, Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    crate::support::make_video(&path, 1_000_000);
    let plan = ChunkPlan::for_size(1_000_000).unwrap();
    let mut info = PostInfo::new(privacy);
    info.title = Some(title.to_string());
    let init = t
        .client
        .init_direct(&tok.access_token, &info, &Source::FileUpload(plan))
        .await
        .unwrap();
    let url = init.upload_url.unwrap();
    t.client
        .upload_file(
            UploadRequest {
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
    (init.publish_id, done.post_ids.first().copied())
}

/// User info serves each field only with its scope: one field without it fails the whole call; the
/// picker's fields never do; unknown fields are refused; stats set on the creator read back.
#[tokio::test]
async fn user_info_fields_follow_the_granted_scopes() {
    let t = TestSim::spawn(|_| {}).await;
    let full = connect_with(&t, "full", ALL_SCOPES, &[]).await;
    set_creator(
        &t,
        json!({"username": "full", "video_count": 42, "follower_count": 7}),
    )
    .await;
    let info = t
        .client
        .user_info(&full.access_token, &UserField::ALL)
        .await
        .unwrap();
    assert_eq!(info.open_id.as_deref(), Some(full.open_id.as_str()));
    assert_eq!(info.username.as_deref(), Some("full"));
    assert_eq!(info.video_count, Some(42));
    assert_eq!(info.follower_count, Some(7));
    assert_eq!(info.likes_count, Some(0));

    // The user unticked stats and profile on the consent page.
    let partial = connect_with(
        &t,
        "partial",
        ALL_SCOPES,
        &["user.info.stats", "user.info.profile"],
    )
    .await;
    assert!(
        !partial.scopes.iter().any(|s| s == "user.info.stats"),
        "{:?}",
        partial.scopes
    );
    assert!(partial.scopes.iter().any(|s| s == "video.list"));
    let e = t
        .client
        .user_info(
            &partial.access_token,
            &[UserField::OpenId, UserField::VideoCount],
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "scope_permission_missed", "{e}");
    assert_eq!(e.http_status, Some(400));
    assert_eq!(e.disposition(), Disposition::Fail);
    let e = t
        .client
        .user_info(&partial.access_token, &[UserField::Username])
        .await
        .unwrap_err();
    assert_eq!(e.code, "scope_permission_missed", "{e}");

    let picked = UserField::allowed(&UserField::ALL, &partial.scopes);
    assert!(picked.contains(&UserField::OpenId) && !picked.contains(&UserField::VideoCount));
    let info = t
        .client
        .user_info(&partial.access_token, &picked)
        .await
        .unwrap();
    assert_eq!(info.open_id.as_deref(), Some(partial.open_id.as_str()));
    assert!(info.display_name.is_some());
    assert_eq!(info.video_count, None);
    assert_eq!(info.username, None);
    // With every scope the picker asks for everything.
    assert_eq!(
        UserField::allowed(&UserField::ALL, &full.scopes).len(),
        UserField::ALL.len()
    );

    let resp = t
        .http
        .get(t.url("/v2/user/info/"))
        .query(&[("fields", "open_id,shoe_size")])
        .bearer_auth(full.access_token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_params");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shoe_size"),
        "{v}"
    );
    let stats = t.stats().await;
    assert_eq!(stats["errors"]["scope_permission_missed"], 2, "{stats}");
}

/// Without `video.list` the list and the query are refused with `scope_not_authorized`.
#[tokio::test]
async fn video_list_and_query_need_the_video_list_scope() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = connect_with(&t, "nolist", ALL_SCOPES, &["video.list"]).await;
    let e = t
        .client
        .video_list(&tok.access_token, None, 10)
        .await
        .unwrap_err();
    assert_eq!(e.code, "scope_not_authorized", "{e}");
    assert_eq!(e.http_status, Some(401));
    let e = t
        .client
        .video_query(&tok.access_token, &[1])
        .await
        .unwrap_err();
    assert_eq!(e.code, "scope_not_authorized", "{e}");
}

/// 25 manual videos page newest first, 20 then 5, with the cursor in milliseconds and `create_time`
/// in the seconds they were given; a 21-video page is refused by the client and by TikTok.
#[tokio::test]
async fn the_list_pages_newest_first_with_a_millisecond_cursor() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = connect_with(&t, "pager", ALL_SCOPES, &[]).await;
    let base = chrono::Utc::now().timestamp() - 3 * 24 * 3600;
    // Given oldest first, so the order of the answer is the simulator's sorting.
    let specs: Vec<Value> = (0..25)
        .map(|i| json!({"username": "pager", "create_time": base + i * 3600, "duration": 10 + i, "title": format!("manual {i}")}))
        .collect();
    let ids = add_videos(&t, Value::Array(specs)).await;
    assert_eq!(ids.len(), 25);

    let first = t
        .client
        .video_list(&tok.access_token, None, 20)
        .await
        .unwrap();
    assert_eq!(first.videos.len(), 20);
    assert!(first.has_more);
    assert_eq!(first.videos[0].id, ids[24], "newest first");
    assert_eq!(
        first.videos[0].create_time,
        base + 24 * 3600,
        "create_time in seconds"
    );
    assert_eq!(first.videos[0].duration, 34);
    assert!(first.videos[0].caption_starts_with("manual 24"));
    assert!(
        first
            .videos
            .windows(2)
            .all(|w| w[0].create_time > w[1].create_time)
    );
    let last = first.videos.last().unwrap();
    assert_eq!(
        first.cursor,
        last.create_time * 1000,
        "the cursor is in milliseconds"
    );

    let second = t
        .client
        .video_list(&tok.access_token, Some(first.cursor), 20)
        .await
        .unwrap();
    assert_eq!(second.videos.len(), 5);
    assert!(!second.has_more);
    assert_eq!(second.videos.last().unwrap().id, ids[0]);
    let mut seen: Vec<u64> = first
        .videos
        .iter()
        .chain(&second.videos)
        .map(|v| v.id)
        .collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every video once");

    // A cursor in seconds would be read as 1970: nothing is older.
    let wrong = t
        .client
        .video_list(&tok.access_token, Some(base + 30 * 3600), 20)
        .await
        .unwrap();
    assert!(wrong.videos.is_empty() && !wrong.has_more);

    let e = t
        .client
        .video_list(&tok.access_token, None, 21)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Local);
    assert!(e.to_string().contains("1 to 20"), "{e}");
    let (status, v) = raw(
        &t,
        &tok.access_token,
        "/v2/video/list/",
        VIDEO_FIELDS,
        json!({"max_count": 21}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_params")),
        "{v}"
    );
    let (status, v) = raw(
        &t,
        &tok.access_token,
        "/v2/video/list/",
        "id,shoe_size",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("invalid_params")),
        "{v}"
    );
    let (status, v) = raw(
        &t,
        &tok.access_token,
        "/v2/video/list/",
        "id",
        json!({"max_count": 2}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["videos"][0],
        json!({"id": ids[24].to_string()}),
        "only the asked fields"
    );
}

/// The list shows our public post (with the id status fetch gave, its title cut at 150) and the
/// manual videos, never a SELF_ONLY post; `video_count` counts what the list shows.
#[tokio::test]
async fn only_public_posts_are_listed_with_titles_cut_at_150() {
    let t = TestSim::spawn(|c| c.publish_delay_ms = 0).await;
    let tok = connect_with(&t, "mixed", ALL_SCOPES, &[]).await;
    let long: String = "é".repeat(149) + "xyz";
    let public = post_video(&t, &tok, PrivacyLevel::PublicToEveryone, &long)
        .await
        .1
        .expect("a public post has an id");
    let private = post_video(&t, &tok, PrivacyLevel::SelfOnly, "secret")
        .await
        .1;
    assert_eq!(private, None);
    let old = chrono::Utc::now().timestamp() - 5 * 24 * 3600;
    let manual = add_videos(
        &t,
        json!({"username": "mixed", "create_time": old, "title": "by hand"}),
    )
    .await;

    let page = t
        .client
        .video_list(&tok.access_token, None, 20)
        .await
        .unwrap();
    let ids: Vec<u64> = page.videos.iter().map(|v| v.id).collect();
    assert_eq!(ids, vec![public, manual[0]], "{page:?}");
    let ours = &page.videos[0];
    assert_eq!(ours.title.chars().count(), 150);
    assert_eq!(ours.title, long.chars().take(150).collect::<String>());
    assert!(ours.caption_starts_with(&long));
    assert!(ours.share_url.ends_with(&format!("/video/{public}")));
    let now = chrono::Utc::now().timestamp();
    assert!(
        (now - 60..=now).contains(&ours.create_time),
        "{} vs {now}",
        ours.create_time
    );
    assert!(page.videos.iter().all(|v| !v.caption_starts_with("secret")));

    let info = t
        .client
        .user_info(&tok.access_token, &[UserField::VideoCount])
        .await
        .unwrap();
    assert_eq!(info.video_count, Some(2), "public videos only, by default");
}

/// The other reading of the unconfirmed caption field: it is in `video_description`, `title` empty.
#[tokio::test]
async fn the_caption_can_be_served_in_video_description() {
    let t = TestSim::spawn(|c| c.display_caption = CaptionField::VideoDescription).await;
    let tok = connect_with(&t, "desc", ALL_SCOPES, &[]).await;
    add_videos(
        &t,
        json!({"username": "desc", "title": "in the description"}),
    )
    .await;
    let page = t
        .client
        .video_list(&tok.access_token, None, 5)
        .await
        .unwrap();
    assert_eq!(page.videos.len(), 1);
    assert_eq!(page.videos[0].title, "");
    assert_eq!(page.videos[0].video_description, "in the description");
    assert!(page.videos[0].caption_starts_with("in the description"));
}

/// A query answers the user's own ids with their counts, leaves another user's out (or, under the
/// other reading, is refused), and takes at most 20 ids.
#[tokio::test]
async fn a_query_reads_up_to_20_own_videos_with_their_counts() {
    for refuse in [false, true] {
        let t = TestSim::spawn(|c| c.display_refuse_foreign_ids = refuse).await;
        let tok = connect_with(&t, "owner", ALL_SCOPES, &[]).await;
        let mine = add_videos(
            &t,
            json!([
                {"username": "owner", "title": "a", "view_count": 100, "like_count": 5},
                {"username": "owner", "title": "b"},
            ]),
        )
        .await;
        let theirs = add_videos(&t, json!({"username": "stranger", "title": "c"})).await;
        add_videos(&t, json!({"id": mine[1].to_string(), "view_count": 9, "comment_count": 2, "share_count": 1})).await;

        let got = t
            .client
            .video_query(&tok.access_token, &mine)
            .await
            .unwrap();
        assert_eq!(got.iter().map(|v| v.id).collect::<Vec<_>>(), mine);
        assert_eq!((got[0].view_count, got[0].like_count), (Some(100), Some(5)));
        assert_eq!(
            (got[1].view_count, got[1].comment_count, got[1].share_count),
            (Some(9), Some(2), Some(1))
        );
        let with_foreign = t
            .client
            .video_query(&tok.access_token, &[mine[0], theirs[0]])
            .await;
        if refuse {
            let e = with_foreign.unwrap_err();
            assert_eq!(e.code, "invalid_params", "{e}");
        } else {
            let got = with_foreign.unwrap();
            assert_eq!(got.iter().map(|v| v.id).collect::<Vec<_>>(), vec![mine[0]]);
        }

        let e = t
            .client
            .video_query(&tok.access_token, &[mine[0]; 21])
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Local);
        let twenty_one: Vec<String> = (0..21).map(|_| mine[0].to_string()).collect();
        let (status, v) = raw(
            &t,
            &tok.access_token,
            "/v2/video/query/",
            VIDEO_FIELDS,
            json!({"filters": {"video_ids": twenty_one}}),
        )
        .await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (400, Some("invalid_params")),
            "{v}"
        );
        let got = t
            .client
            .video_query(&tok.access_token, &[mine[0]; 20])
            .await
            .unwrap();
        assert_eq!(got.len(), 20, "20 ids are allowed");
    }
}

/// Each Display endpoint allows 600 calls a minute per token, then answers 429
/// `rate_limit_exceeded`; the other endpoints keep their own windows.
#[tokio::test]
async fn each_display_endpoint_allows_600_calls_a_minute() {
    let t = TestSim::spawn(|_| {}).await;
    let tok = connect_with(&t, "busy", ALL_SCOPES, &[]).await;
    for i in 0..600 {
        t.client
            .user_info(&tok.access_token, &[UserField::OpenId])
            .await
            .unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    let e = t
        .client
        .user_info(&tok.access_token, &[UserField::OpenId])
        .await
        .unwrap_err();
    assert_eq!(e.code, "rate_limit_exceeded", "{e}");
    assert_eq!(e.http_status, Some(429));
    assert!(matches!(e.disposition(), Disposition::RetryAfter(_)));
    t.client
        .video_list(&tok.access_token, None, 1)
        .await
        .unwrap();
    // Another token of another user has its own window.
    let other = connect_with(&t, "calm", ALL_SCOPES, &[]).await;
    t.client
        .user_info(&other.access_token, &[UserField::OpenId])
        .await
        .unwrap();
}

/// A test sets what the Display API shows of one of our posts (duration, size, counts) by its
/// publish_id; under the other reading of `video_count`, private posts count too.
#[tokio::test]
async fn our_posts_show_the_duration_and_counts_a_test_sets() {
    let t = TestSim::spawn(|c| {
        c.publish_delay_ms = 0;
        c.video_count_includes_private = true;
    })
    .await;
    let tok = connect_with(&t, "ours", ALL_SCOPES, &[]).await;
    let (publish_id, id) = post_video(&t, &tok, PrivacyLevel::PublicToEveryone, "mine").await;
    let id = id.expect("a public post has an id");
    post_video(&t, &tok, PrivacyLevel::SelfOnly, "hidden").await;
    let page = t
        .client
        .video_list(&tok.access_token, None, 20)
        .await
        .unwrap();
    assert_eq!(page.videos.len(), 1);
    assert_eq!(
        (
            page.videos[0].duration,
            page.videos[0].width,
            page.videos[0].height
        ),
        (1, 720, 1280),
        "the fixture's shape unless told"
    );
    add_videos(
        &t,
        json!({"publish_id": publish_id, "duration": 7, "width": 1080, "height": 1920, "view_count": 55}),
    )
    .await;
    let got = t
        .client
        .video_query(&tok.access_token, &[id])
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].duration, got[0].width, got[0].height),
        (7, 1080, 1920)
    );
    assert_eq!(got[0].view_count, Some(55));
    let info = t
        .client
        .user_info(&tok.access_token, &[UserField::VideoCount])
        .await
        .unwrap();
    assert_eq!(
        info.video_count,
        Some(2),
        "the private post counts under this reading"
    );
    let resp = t
        .http
        .post(t.url("/_sim/videos"))
        .json(&json!({"publish_id": publish_id, "title": "no"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a post's caption is its own");
}
