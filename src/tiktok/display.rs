//! TikTok's Display API and user info, what a posting daemon can read back (`tiktok-api.md`
//! section 13): `GET /v2/user/info/` ([`Client::user_info`]), `POST /v2/video/list/`
//! ([`Client::video_list`]) and `POST /v2/video/query/` ([`Client::video_query`]).
//!
//! TikTok fails a whole user-info call that asks for one field whose scope the token lacks, so the
//! fields are typed ([`UserField`], each knowing its scope) and [`UserField::allowed`] picks the ones
//! the granted scopes cover: ask with its result and that failure cannot happen. The list and query
//! limits (20 a page, 20 ids) are checked here before any call, answers are read within the client's
//! body cap, and every failure is a [`TikTokError`]. Which of `title` and `video_description`
//! carries a Content Posting title is unconfirmed, so [`Video`] keeps both and
//! [`Video::caption_starts_with`] compares either.

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::limits::{DISPLAY_PAGE_MAX, DISPLAY_TEXT_MAX, VIDEO_QUERY_MAX_IDS};
use super::{Client, ErrorKind, TikTokError, body, parse_envelope};

/// A field of `user/info`, with the scope that grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserField {
    /// `open_id` (`user.info.basic`).
    OpenId,
    /// `union_id` (`user.info.basic`).
    UnionId,
    /// `avatar_url` (`user.info.basic`).
    AvatarUrl,
    /// `avatar_url_100` (`user.info.basic`).
    AvatarUrl100,
    /// `avatar_large_url` (`user.info.basic`).
    AvatarLargeUrl,
    /// `display_name` (`user.info.basic`).
    DisplayName,
    /// `bio_description` (`user.info.profile`).
    BioDescription,
    /// `profile_deep_link` (`user.info.profile`).
    ProfileDeepLink,
    /// `is_verified` (`user.info.profile`).
    IsVerified,
    /// `username` (`user.info.profile`).
    Username,
    /// `follower_count` (`user.info.stats`).
    FollowerCount,
    /// `following_count` (`user.info.stats`).
    FollowingCount,
    /// `likes_count` (`user.info.stats`).
    LikesCount,
    /// `video_count` (`user.info.stats`; whether it counts private posts is unconfirmed).
    VideoCount,
}

/// The scope of the basic user fields.
pub const SCOPE_USER_INFO_BASIC: &str = "user.info.basic";
/// The scope of the profile fields (`username`, `bio_description`, …).
pub const SCOPE_USER_INFO_PROFILE: &str = "user.info.profile";
/// The scope of the counters (`video_count`, `follower_count`, …).
pub const SCOPE_USER_INFO_STATS: &str = "user.info.stats";
/// The scope of `video/list` and `video/query`.
pub const SCOPE_VIDEO_LIST: &str = "video.list";

impl UserField {
    /// Every field, in the order section 13 lists them.
    pub const ALL: [UserField; 14] = [
        Self::OpenId,
        Self::UnionId,
        Self::AvatarUrl,
        Self::AvatarUrl100,
        Self::AvatarLargeUrl,
        Self::DisplayName,
        Self::BioDescription,
        Self::ProfileDeepLink,
        Self::IsVerified,
        Self::Username,
        Self::FollowerCount,
        Self::FollowingCount,
        Self::LikesCount,
        Self::VideoCount,
    ];

    /// TikTok's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenId => "open_id",
            Self::UnionId => "union_id",
            Self::AvatarUrl => "avatar_url",
            Self::AvatarUrl100 => "avatar_url_100",
            Self::AvatarLargeUrl => "avatar_large_url",
            Self::DisplayName => "display_name",
            Self::BioDescription => "bio_description",
            Self::ProfileDeepLink => "profile_deep_link",
            Self::IsVerified => "is_verified",
            Self::Username => "username",
            Self::FollowerCount => "follower_count",
            Self::FollowingCount => "following_count",
            Self::LikesCount => "likes_count",
            Self::VideoCount => "video_count",
        }
    }

    /// The scope a token needs for this field.
    pub fn scope(self) -> &'static str {
        match self {
            Self::OpenId
            | Self::UnionId
            | Self::AvatarUrl
            | Self::AvatarUrl100
            | Self::AvatarLargeUrl
            | Self::DisplayName => SCOPE_USER_INFO_BASIC,
            Self::BioDescription | Self::ProfileDeepLink | Self::IsVerified | Self::Username => {
                SCOPE_USER_INFO_PROFILE
            }
            Self::FollowerCount | Self::FollowingCount | Self::LikesCount | Self::VideoCount => {
                SCOPE_USER_INFO_STATS
            }
        }
    }

    /// The fields of `wanted` that the `granted` scopes (a token's `scope`) cover, in `wanted`'s
    /// order: what to pass to [`Client::user_info`] so TikTok never fails the call for a scope.
    pub fn allowed(wanted: &[UserField], granted: &[String]) -> Vec<UserField> {
        wanted
            .iter()
            .copied()
            .filter(|f| granted.iter().any(|g| g.trim() == f.scope()))
            .collect()
    }
}

/// A user-info answer: each field is `None` when it was not asked for (or TikTok left it out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    /// The user's id for this app.
    pub open_id: Option<String>,
    /// The user's id across the developer's apps.
    pub union_id: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
    /// 100x100 avatar URL.
    pub avatar_url_100: Option<String>,
    /// Large avatar URL.
    pub avatar_large_url: Option<String>,
    /// The profile name.
    pub display_name: Option<String>,
    /// The bio.
    pub bio_description: Option<String>,
    /// A link to the profile.
    pub profile_deep_link: Option<String>,
    /// Verified badge.
    pub is_verified: Option<bool>,
    /// The `@username`.
    pub username: Option<String>,
    /// Followers.
    #[serde(default, deserialize_with = "opt_u64")]
    pub follower_count: Option<u64>,
    /// Accounts followed.
    #[serde(default, deserialize_with = "opt_u64")]
    pub following_count: Option<u64>,
    /// Likes over all videos.
    #[serde(default, deserialize_with = "opt_u64")]
    pub likes_count: Option<u64>,
    /// Videos (public ones only, say third parties; unconfirmed).
    #[serde(default, deserialize_with = "opt_u64")]
    pub video_count: Option<u64>,
}

/// The video fields this client asks for on `video/list` and `video/query`.
pub const VIDEO_FIELDS: &str = "id,create_time,title,video_description,duration,width,height,share_url,view_count,like_count,comment_count,share_count";

/// A public video as the Display API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Video {
    /// The 19-digit public id (the `publicaly_available_post_id` of a status fetch).
    #[serde(deserialize_with = "id_u64")]
    pub id: u64,
    /// When it was posted, UTC seconds.
    #[serde(default)]
    pub create_time: i64,
    /// At most 150 characters.
    #[serde(default)]
    pub title: String,
    /// At most 150 characters.
    #[serde(default)]
    pub video_description: String,
    /// Whole seconds.
    #[serde(default)]
    pub duration: u32,
    /// Pixels.
    #[serde(default)]
    pub width: u32,
    /// Pixels.
    #[serde(default)]
    pub height: u32,
    /// The public URL.
    #[serde(default)]
    pub share_url: String,
    /// Views.
    #[serde(default, deserialize_with = "opt_u64")]
    pub view_count: Option<u64>,
    /// Likes.
    #[serde(default, deserialize_with = "opt_u64")]
    pub like_count: Option<u64>,
    /// Comments.
    #[serde(default, deserialize_with = "opt_u64")]
    pub comment_count: Option<u64>,
    /// Shares.
    #[serde(default, deserialize_with = "opt_u64")]
    pub share_count: Option<u64>,
}

impl Video {
    /// Whether `title` or `video_description` (which one carries a posted title is unconfirmed) is
    /// the start of `caption` as TikTok cuts it (150 characters).
    pub fn caption_starts_with(&self, caption: &str) -> bool {
        let cut: String = caption.chars().take(DISPLAY_TEXT_MAX).collect();
        let cut = cut.trim();
        !cut.is_empty() && (self.title.trim() == cut || self.video_description.trim() == cut)
    }
}

/// One page of `video/list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VideoPage {
    /// Newest first.
    #[serde(default)]
    pub videos: Vec<Video>,
    /// The cursor (UTC milliseconds) for the next, older page.
    #[serde(default)]
    pub cursor: i64,
    /// Whether older videos remain.
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Deserialize)]
struct UserData {
    #[serde(default)]
    user: UserInfo,
}

#[derive(Deserialize)]
struct QueryData {
    #[serde(default)]
    videos: Vec<Video>,
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Value>::deserialize(d)?.as_ref().and_then(as_u64))
}

/// An id as a string or an integer, read exactly (a float would round 19 digits).
fn id_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = Value::deserialize(d)?;
    as_u64(&v).ok_or_else(|| serde::de::Error::custom(format!("video id {v} is not an integer")))
}

impl Client {
    /// Sends a Display API request and unwraps its envelope into `T`.
    async fn display_call<T: DeserializeOwned>(
        &self,
        op: &str,
        req: reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<T, TikTokError> {
        let req = req.bearer_auth(token.expose_secret());
        let reply = body::send_and_read(op, req).await?;
        let data = parse_envelope(op, reply.status, &reply.body).map_err(|mut e| {
            e.retry_after = reply.retry_after;
            e
        })?;
        serde_json::from_value(data).map_err(|e| {
            TikTokError::new(op, ErrorKind::Decode, "decode")
                .with_status(reply.status)
                .with_message(format!("unexpected response data: {e}"))
        })
    }

    /// `GET /v2/user/info/?fields=…`. Pass fields from [`UserField::allowed`]: one field without its
    /// scope fails the whole call (`scope_permission_missed`).
    pub async fn user_info(
        &self,
        token: &SecretString,
        fields: &[UserField],
    ) -> Result<UserInfo, TikTokError> {
        const OP: &str = "user info";
        if fields.is_empty() {
            return Err(TikTokError::local(
                OP,
                "no user-info field to ask for; the account granted none of their scopes",
            ));
        }
        let list: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
        let req = self
            .api
            .get(self.api_url("/v2/user/info/"))
            .query(&[("fields", list.join(","))]);
        let d: UserData = self.display_call(OP, req, token).await?;
        Ok(d.user)
    }

    /// `POST /v2/video/list/`: the user's public videos created before `cursor` (UTC milliseconds;
    /// `None` for the newest), newest first, `max_count` 1 to 20.
    pub async fn video_list(
        &self,
        token: &SecretString,
        cursor: Option<i64>,
        max_count: u32,
    ) -> Result<VideoPage, TikTokError> {
        const OP: &str = "video list";
        if !(1..=DISPLAY_PAGE_MAX).contains(&max_count) {
            return Err(TikTokError::local(
                OP,
                format!(
                    "max_count {max_count} is out of range; TikTok lists 1 to {DISPLAY_PAGE_MAX} videos a page"
                ),
            ));
        }
        let mut body = json!({ "max_count": max_count });
        if let Some(c) = cursor {
            body["cursor"] = json!(c);
        }
        let req = self.display_post("/v2/video/list/", &body, OP)?;
        self.display_call(OP, req, token).await
    }

    /// `POST /v2/video/query/`: fresh data of up to 20 of the user's own public videos. Ids TikTok
    /// does not show this user are absent from the answer.
    pub async fn video_query(
        &self,
        token: &SecretString,
        ids: &[u64],
    ) -> Result<Vec<Video>, TikTokError> {
        const OP: &str = "video query";
        if ids.is_empty() || ids.len() > VIDEO_QUERY_MAX_IDS {
            return Err(TikTokError::local(
                OP,
                format!(
                    "{} video ids given; TikTok queries 1 to {VIDEO_QUERY_MAX_IDS} at a time",
                    ids.len()
                ),
            ));
        }
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        let body = json!({ "filters": { "video_ids": ids } });
        let req = self.display_post("/v2/video/query/", &body, OP)?;
        let d: QueryData = self.display_call(OP, req, token).await?;
        Ok(d.videos)
    }

    fn display_post(
        &self,
        path: &str,
        body: &Value,
        op: &str,
    ) -> Result<reqwest::RequestBuilder, TikTokError> {
        let bytes = serde_json::to_vec(body).map_err(|e| TikTokError::local(op, e.to_string()))?;
        Ok(self
            .api
            .post(self.api_url(path))
            .query(&[("fields", VIDEO_FIELDS)])
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=UTF-8",
            )
            .body(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picker_keeps_only_fields_of_granted_scopes() {
        let granted = vec!["user.info.basic".to_string(), "video.list".to_string()];
        let picked = UserField::allowed(&UserField::ALL, &granted);
        assert!(!picked.is_empty());
        assert!(picked.iter().all(|f| f.scope() == SCOPE_USER_INFO_BASIC));
        let granted = vec!["user.info.stats".to_string()];
        assert_eq!(
            UserField::allowed(&[UserField::OpenId, UserField::VideoCount], &granted),
            vec![UserField::VideoCount]
        );
    }

    #[test]
    fn a_video_id_reads_exactly_from_a_string_or_an_integer() {
        let a: Video = serde_json::from_str(r#"{"id":"7663542984343883021"}"#).unwrap();
        let b: Video = serde_json::from_str(r#"{"id":7663542984343883021}"#).unwrap();
        assert_eq!(a.id, 7663542984343883021);
        assert_eq!(b.id, a.id);
        assert!(serde_json::from_str::<Video>(r#"{"id":7.6e18}"#).is_err());
    }

    #[test]
    fn a_caption_matches_either_field_cut_at_150() {
        let long = "x".repeat(200);
        let v = Video {
            video_description: "x".repeat(150),
            ..Video::default()
        };
        assert!(v.caption_starts_with(&long));
        let v = Video {
            title: "hello".into(),
            ..Video::default()
        };
        assert!(v.caption_starts_with("hello"));
        assert!(!v.caption_starts_with("hello world"));
        assert!(!v.caption_starts_with(""));
    }
}
