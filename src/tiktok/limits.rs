//! TikTok's limits, as numbers the rest of the daemon plans with: the per-minute rate limits of the
//! Content Posting and Display APIs, the cap on pending inbox drafts, how long an upload URL lives,
//! and the Display API's page, query and caption sizes.
//!
//! They are TikTok's, not ours, so they live with the client; the worker's rate limiter
//! (`worker::rate`) only keeps Redis windows of whatever size it is given.

use std::time::Duration;

/// A rate limit: `limit` calls per `window`, per access token (one token per account here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The endpoint family, as named in the limiter's Redis key.
    pub name: &'static str,
    /// Calls allowed per window.
    pub limit: u32,
    /// The window.
    pub window: Duration,
}

/// `post/publish/video/init` and `post/publish/inbox/video/init`: TikTok documents 6 per minute per
/// token.
pub const INIT: RateLimit = RateLimit {
    name: "init",
    limit: 6,
    window: RATE_WINDOW,
};

/// `post/publish/creator_info/query`: 20 per minute per token.
pub const CREATOR_INFO: RateLimit = RateLimit {
    name: "creator_info",
    limit: 20,
    window: RATE_WINDOW,
};

/// `post/publish/status/fetch`: 30 per minute per token.
pub const STATUS: RateLimit = RateLimit {
    name: "status",
    limit: 30,
    window: RATE_WINDOW,
};

/// TikTok's per-token rate limits use a one-minute sliding window.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// TikTok allows at most this many inbox drafts pending per creator in 24 hours.
pub const PENDING_DRAFTS: u32 = 5;

/// The window of TikTok's daily caps (Direct Posts, pending drafts): a rolling 24 hours.
pub const DAILY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The `upload_url` lives one hour; we stop using it a little earlier.
pub const UPLOAD_URL_LIFE: Duration = Duration::from_secs(55 * 60);

/// `user/info`: 600 per minute per token, each Display endpoint in its own sliding window.
pub const USER_INFO_RATE: RateLimit = RateLimit {
    name: "user_info",
    limit: 600,
    window: RATE_WINDOW,
};

/// `video/list`: 600 per minute per token.
pub const VIDEO_LIST_RATE: RateLimit = RateLimit {
    name: "video_list",
    limit: 600,
    window: RATE_WINDOW,
};

/// `video/query`: 600 per minute per token.
pub const VIDEO_QUERY_RATE: RateLimit = RateLimit {
    name: "video_query",
    limit: 600,
    window: RATE_WINDOW,
};

/// `video/list` answers at most this many videos a page (`max_count`).
pub const DISPLAY_PAGE_MAX: u32 = 20;

/// `video/query` takes at most this many ids.
pub const VIDEO_QUERY_MAX_IDS: usize = 20;

/// The Display API cuts `title` and `video_description` at this many characters.
pub const DISPLAY_TEXT_MAX: usize = 150;
