//! The Content Posting API's start of a post: `creator_info`, Direct Post init, inbox (draft) init.
//! What follows an init (status fetch, cancel, fail reasons) is in `status.rs`.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::upload::{ChunkPlan, UploadUrl};
use super::{Client, ErrorKind, TikTokError, utf16_len};

/// Longest video title TikTok accepts, in UTF-16 code units.
pub const MAX_TITLE_UTF16: usize = 2200;

/// Who may see a post. Never defaulted: the user must choose, among the creator's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PrivacyLevel {
    /// Everyone.
    PublicToEveryone,
    /// Mutual followers.
    MutualFollowFriends,
    /// Followers (private accounts).
    FollowerOfCreator,
    /// Only the creator.
    SelfOnly,
}

impl PrivacyLevel {
    /// Every level, in TikTok's spelling.
    pub const ALL: [PrivacyLevel; 4] = [
        Self::PublicToEveryone,
        Self::MutualFollowFriends,
        Self::FollowerOfCreator,
        Self::SelfOnly,
    ];

    /// Every level in TikTok's spelling, for a message: comma-separated, `last` before the last one
    /// (`", "` or `" or "`).
    pub fn listed(last: &str) -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
        match names.split_last() {
            Some((tail, head)) if !head.is_empty() => format!("{}{last}{tail}", head.join(", ")),
            _ => names.join(", "),
        }
    }

    /// TikTok's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PublicToEveryone => "PUBLIC_TO_EVERYONE",
            Self::MutualFollowFriends => "MUTUAL_FOLLOW_FRIENDS",
            Self::FollowerOfCreator => "FOLLOWER_OF_CREATOR",
            Self::SelfOnly => "SELF_ONLY",
        }
    }
}

impl fmt::Display for PrivacyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PrivacyLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim())
            .ok_or_else(|| format!("privacy_level {s:?} is not one of {}", Self::listed(", ")))
    }
}

/// `post_info` of a Direct Post init: every field in the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostInfo {
    /// The caption (hashtags and mentions are parsed by TikTok); at most 2200 UTF-16 code units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Required; must be among the creator's `privacy_level_options`.
    pub privacy_level: PrivacyLevel,
    /// Turn duets off.
    #[serde(default)]
    pub disable_duet: bool,
    /// Turn stitches off.
    #[serde(default)]
    pub disable_stitch: bool,
    /// Turn comments off.
    #[serde(default)]
    pub disable_comment: bool,
    /// The frame used as the cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_cover_timestamp_ms: Option<u32>,
    /// Paid partnership promoting a third party. Always sent explicitly (the docs mark it required).
    #[serde(default)]
    pub brand_content_toggle: bool,
    /// Promotes the creator's own business. Always sent explicitly.
    #[serde(default)]
    pub brand_organic_toggle: bool,
    /// Labels the video as AI-generated.
    #[serde(default)]
    pub is_aigc: bool,
}

impl PostInfo {
    /// A post with just a privacy level (all toggles off).
    pub fn new(privacy_level: PrivacyLevel) -> Self {
        Self {
            title: None,
            privacy_level,
            disable_duet: false,
            disable_stitch: false,
            disable_comment: false,
            video_cover_timestamp_ms: None,
            brand_content_toggle: false,
            brand_organic_toggle: false,
            is_aigc: false,
        }
    }

    /// The checks TikTok makes on `post_info` that can be made without asking TikTok.
    pub fn check(&self) -> Result<(), String> {
        if let Some(title) = &self.title {
            let n = utf16_len(title);
            if n > MAX_TITLE_UTF16 {
                return Err(format!(
                    "title is {n} UTF-16 code units long; TikTok allows at most {MAX_TITLE_UTF16} (emoji count as 2)"
                ));
            }
        }
        if self.brand_content_toggle && self.privacy_level == PrivacyLevel::SelfOnly {
            return Err(
                "branded content (brand_content_toggle) cannot be posted with privacy SELF_ONLY; choose a public or friends level"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Where TikTok gets the video from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// We PUT the bytes to the returned `upload_url` following this plan.
    FileUpload(ChunkPlan),
    /// TikTok downloads the URL (which must be on a verified domain or prefix).
    PullFromUrl(String),
}

impl Source {
    fn to_json(&self) -> Value {
        match self {
            Source::FileUpload(p) => json!({
                "source": "FILE_UPLOAD",
                "video_size": p.video_size,
                "chunk_size": p.chunk_size,
                "total_chunk_count": p.total_chunk_count,
            }),
            Source::PullFromUrl(url) => json!({"source": "PULL_FROM_URL", "video_url": url}),
        }
    }
}

/// `creator_info/query` data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreatorInfo {
    /// Avatar URL (lives 2 h).
    pub creator_avatar_url: String,
    /// The @handle.
    pub creator_username: String,
    /// Display name; the UX must show it.
    pub creator_nickname: String,
    /// The privacy levels the creator may use now.
    pub privacy_level_options: Vec<String>,
    /// Comments set to "No one".
    pub comment_disabled: bool,
    /// Duets off (private account or "No one").
    pub duet_disabled: bool,
    /// Stitches off (private account or "No one").
    pub stitch_disabled: bool,
    /// The longest video this creator may post.
    pub max_video_post_duration_sec: Option<u32>,
}

impl CreatorInfo {
    /// True when the creator's options include this privacy level.
    pub fn allows(&self, level: PrivacyLevel) -> bool {
        self.privacy_level_options
            .iter()
            .any(|o| o == level.as_str())
    }
}

/// What an init returns.
#[derive(Clone, PartialEq, Eq)]
pub struct InitResponse {
    /// Opaque, up to 64 characters; the handle for status, cancel and webhooks.
    pub publish_id: String,
    /// For FILE_UPLOAD: where to PUT the chunks, valid one hour.
    pub upload_url: Option<UploadUrl>,
}

impl fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitResponse")
            .field("publish_id", &self.publish_id)
            .field(
                "upload_url",
                &self.upload_url.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[derive(Deserialize)]
struct InitData {
    publish_id: String,
    #[serde(default)]
    upload_url: Option<String>,
}

impl Client {
    /// `POST /v2/post/publish/creator_info/query/` (no body). Errors such as `spam_risk_too_many_posts`
    /// arrive inside HTTP 200 and are returned as errors.
    pub async fn creator_info(&self, token: &SecretString) -> Result<CreatorInfo, TikTokError> {
        self.post_envelope(
            "creator info",
            "/v2/post/publish/creator_info/query/",
            token,
            None,
        )
        .await
    }

    /// Direct Post init: `POST /v2/post/publish/video/init/`. Not idempotent: a second call makes a
    /// second post. The caller must persist `publish_id` before uploading.
    pub async fn init_direct(
        &self,
        token: &SecretString,
        post: &PostInfo,
        source: &Source,
    ) -> Result<InitResponse, TikTokError> {
        let op = "video init";
        post.check().map_err(|m| TikTokError::local(op, m))?;
        let body = json!({ "post_info": post, "source_info": source.to_json() });
        self.init(op, "/v2/post/publish/video/init/", token, &body, source)
            .await
    }

    /// Inbox (draft) init: `POST /v2/post/publish/inbox/video/init/`. The docs define only
    /// `source_info` for this endpoint; the creator finishes the post in the app.
    pub async fn init_inbox(
        &self,
        token: &SecretString,
        source: &Source,
    ) -> Result<InitResponse, TikTokError> {
        let body = json!({ "source_info": source.to_json() });
        self.init(
            "inbox init",
            "/v2/post/publish/inbox/video/init/",
            token,
            &body,
            source,
        )
        .await
    }

    async fn init(
        &self,
        op: &str,
        path: &str,
        token: &SecretString,
        body: &Value,
        source: &Source,
    ) -> Result<InitResponse, TikTokError> {
        let data: InitData = self.post_envelope(op, path, token, Some(body)).await?;
        if data.publish_id.is_empty() {
            return Err(TikTokError::new(op, ErrorKind::Decode, "decode")
                .with_message("init returned an empty publish_id"));
        }
        let upload_url = match (source, data.upload_url) {
            (Source::FileUpload(_), Some(u)) if !u.is_empty() => Some(UploadUrl::new(u)),
            (Source::FileUpload(_), _) => {
                return Err(
                    TikTokError::new(op, ErrorKind::Decode, "decode").with_message(format!(
                        "FILE_UPLOAD init for publish_id {} returned no upload_url",
                        data.publish_id
                    )),
                );
            }
            (Source::PullFromUrl(_), _) => None,
        };
        Ok(InitResponse {
            publish_id: data.publish_id,
            upload_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privacy_levels_listed_for_messages() {
        assert_eq!(
            PrivacyLevel::listed(" or "),
            "PUBLIC_TO_EVERYONE, MUTUAL_FOLLOW_FRIENDS, FOLLOWER_OF_CREATOR or SELF_ONLY"
        );
        assert_eq!(
            PrivacyLevel::listed(", "),
            "PUBLIC_TO_EVERYONE, MUTUAL_FOLLOW_FRIENDS, FOLLOWER_OF_CREATOR, SELF_ONLY"
        );
    }

    #[test]
    fn post_info_serialises_every_field_with_brand_toggles_explicit() {
        let p = PostInfo::new(PrivacyLevel::SelfOnly);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["privacy_level"], "SELF_ONLY");
        assert_eq!(v["brand_content_toggle"], false);
        assert_eq!(v["brand_organic_toggle"], false);
        assert_eq!(v["is_aigc"], false);
        assert!(v.get("title").is_none());
    }

    #[test]
    fn a_title_over_2200_utf16_units_is_refused_before_sending() {
        let mut p = PostInfo::new(PrivacyLevel::SelfOnly);
        p.title = Some("😀".repeat(1100));
        assert!(p.check().is_ok(), "1100 emoji = 2200 units");
        p.title = Some("😀".repeat(1100) + "a");
        assert!(p.check().unwrap_err().contains("2201 UTF-16"));
    }

    #[test]
    fn privacy_levels_parse_in_tiktok_spelling_only() {
        assert_eq!(
            "SELF_ONLY".parse::<PrivacyLevel>().unwrap(),
            PrivacyLevel::SelfOnly
        );
        assert!(
            "self_only"
                .parse::<PrivacyLevel>()
                .unwrap_err()
                .contains("PUBLIC_TO_EVERYONE")
        );
    }
}
