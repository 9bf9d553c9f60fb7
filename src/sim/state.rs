//! The simulator's memory: creators, codes, tokens, posts, faults and counters.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A simulated TikTok user.
#[derive(Debug, Clone)]
pub(crate) struct Creator {
    pub open_id: String,
    pub username: String,
    pub nickname: String,
    pub private: bool,
    pub max_duration_sec: u32,
    pub comment_disabled: bool,
    pub duet_disabled: bool,
    pub stitch_disabled: bool,
    pub banned: bool,
    /// Times of Direct Post inits in the last 24 h.
    pub direct_posts: VecDeque<Instant>,
    /// Public videos the creator posted "by hand" in the app (set through `/_sim/videos`).
    pub manual_videos: Vec<Video>,
    /// `user.info.stats` counters; `video_count` `None` means "count the videos" (`/_sim/creators`).
    pub follower_count: u64,
    pub following_count: u64,
    pub likes_count: u64,
    pub video_count: Option<u64>,
}

/// A video as the Display API shows it: a manual one, or one of our posts once it is public.
#[derive(Debug, Clone, Default)]
pub(crate) struct Video {
    /// The 19-digit public id.
    pub id: u64,
    /// UTC milliseconds (the list's cursor unit); the API shows seconds.
    pub create_time_ms: i64,
    /// Whole seconds.
    pub duration: u32,
    pub width: u32,
    pub height: u32,
    /// The caption as posted (the API cuts it at 150 characters).
    pub caption: String,
    pub view_count: u64,
    pub like_count: u64,
    pub comment_count: u64,
    pub share_count: u64,
    pub is_aigc: bool,
}

/// What the Display API shows of one of our posts beyond its `post_info` (set through `/_sim/videos`
/// with its `publish_id`; the simulator does not decode videos).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DisplayMeta {
    pub duration: Option<u32>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub view_count: u64,
    pub like_count: u64,
    pub comment_count: u64,
    pub share_count: u64,
}

impl Creator {
    pub fn privacy_options(&self, unaudited: bool) -> Vec<&'static str> {
        if unaudited {
            return vec!["SELF_ONLY"];
        }
        if self.private {
            vec!["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        } else {
            vec!["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        }
    }
}

/// The open_id of a simulated username: stable, so reconnecting gives the same user.
pub(crate) fn open_id_for(username: &str) -> String {
    let h = hex::encode(Sha256::digest(username.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub open_id: String,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub challenge: Option<String>,
    pub expires_at: Instant,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub open_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
    /// Accepted calls per endpoint in the current sliding minute.
    pub calls: HashMap<&'static str, VecDeque<Instant>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshToken {
    pub open_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

/// Direct Post or inbox draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PostKind {
    Direct,
    Inbox,
}

#[derive(Debug, Clone)]
pub(crate) enum PostSource {
    File { size: u64, chunk: u64, count: u64 },
    Pull { url: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub publish_id: String,
    pub open_id: String,
    pub kind: PostKind,
    pub source: PostSource,
    pub post_info: Value,
    pub public: bool,
    pub created: Instant,
    pub created_unix_ms: i64,
    pub upload_token: String,
    pub upload_expires_at: Instant,
    pub uploaded: u64,
    pub hasher: Sha256,
    pub in_flight: bool,
    pub sha256: Option<String>,
    /// When the last byte arrived (or the pull started).
    pub ready_at: Option<Instant>,
    pub completed_unix_ms: Option<i64>,
    /// When the final chunk was answered (UTC ms).
    pub uploaded_unix_ms: Option<i64>,
    pub completed_at: Option<Instant>,
    pub failed: Option<String>,
    pub post_id: Option<u64>,
    /// Duration, size and counts for the Display API.
    pub display: DisplayMeta,
}

/// One queued failure for an endpoint (the body of `POST /_sim/faults`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `token`, `revoke`, `creator_info`, `video_init`, `inbox_init`, `upload`, `status` or `cancel`.
    pub endpoint: String,
    /// Answer with this TikTok error code (with its documented HTTP status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Answer with this HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Cut the connection before answering (uploads: halfway through the body; the chunk is not kept).
    #[serde(default)]
    pub drop: bool,
    /// Process the request, then cut the connection instead of answering (the response is lost).
    #[serde(default)]
    pub drop_after: bool,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Send `Retry-After: N` with the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// For `status`: the post fails with this `fail_reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// Answer as usual, then send this many bytes of JSON whitespace after the answer, streamed
    /// without a `Content-Length` (the body stays valid JSON; only a client's size cap can refuse it).
    /// At most `MAX_PAD_BYTES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_bytes: Option<usize>,
    /// How many calls this applies to (default 1).
    #[serde(default = "one")]
    pub times: u32,
}

/// The largest `pad_bytes` a fault may ask for: enough to pass any sane client cap many times over.
pub const MAX_PAD_BYTES: usize = 64 << 20;

fn one() -> u32 {
    1
}

/// Counters served at `/_sim/stats`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub refreshes: u64,
    pub expired_token_calls: u64,
    pub bytes_received: u64,
}

/// Everything the simulator remembers.
#[derive(Debug, Default)]
pub struct SimState {
    pub(crate) creators: HashMap<String, Creator>,
    pub(crate) codes: HashMap<String, AuthCode>,
    pub(crate) access: HashMap<String, AccessToken>,
    pub(crate) refresh: HashMap<String, RefreshToken>,
    pub(crate) posts: Vec<Post>,
    pub(crate) by_publish_id: HashMap<String, usize>,
    pub(crate) by_upload_id: HashMap<String, usize>,
    pub(crate) faults: HashMap<String, VecDeque<Fault>>,
    pub(crate) stats: Stats,
    /// The app reached its daily quota of active creators (`POST /_sim/app`): Direct Post inits
    /// answer 403 and `creator_info` 200 `reached_active_user_cap`, for every creator.
    pub(crate) active_user_cap_reached: bool,
}

impl SimState {
    /// Takes the next queued fault for an endpoint.
    pub(crate) fn take_fault(&mut self, endpoint: &str) -> Option<Fault> {
        let q = self.faults.get_mut(endpoint)?;
        let f = q.front_mut()?;
        let out = f.clone();
        f.times = f.times.saturating_sub(1);
        if f.times == 0 {
            q.pop_front();
        }
        Some(out)
    }

    pub(crate) fn count_error(&mut self, code: &str) {
        *self.stats.errors.entry(code.to_string()).or_default() += 1;
    }

    pub(crate) fn count_request(&mut self, endpoint: &str) {
        *self.stats.requests.entry(endpoint.to_string()).or_default() += 1;
    }

    pub(crate) fn creator_mut(&mut self, username: &str, private: bool) -> &mut Creator {
        let open_id = open_id_for(username);
        self.creators
            .entry(open_id.clone())
            .or_insert_with(|| Creator {
                open_id,
                username: username.to_string(),
                nickname: format!("Sim {username}"),
                private,
                max_duration_sec: 600,
                comment_disabled: false,
                duet_disabled: private,
                stitch_disabled: private,
                banned: false,
                direct_posts: VecDeque::new(),
                manual_videos: Vec::new(),
                follower_count: 0,
                following_count: 0,
                likes_count: 0,
                video_count: None,
            })
    }

    /// Issues an access/refresh token pair.
    pub(crate) fn issue_tokens(
        &mut self,
        open_id: &str,
        scopes: &[String],
        access_ttl: Duration,
        refresh_ttl: Duration,
        refresh_expires_at: Option<Instant>,
    ) -> (String, String, Instant) {
        let now = Instant::now();
        let access = format!("act.{}", random_token(48));
        let refresh = format!("rft.{}", random_token(48));
        let refresh_expiry = refresh_expires_at.unwrap_or(now + refresh_ttl);
        self.access.insert(
            access.clone(),
            AccessToken {
                open_id: open_id.to_string(),
                scopes: scopes.to_vec(),
                expires_at: now + access_ttl,
                calls: HashMap::new(),
            },
        );
        self.refresh.insert(
            refresh.clone(),
            RefreshToken {
                open_id: open_id.to_string(),
                scopes: scopes.to_vec(),
                expires_at: refresh_expiry,
            },
        );
        (access, refresh, refresh_expiry)
    }
}

pub(crate) fn random_token(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub(crate) fn random_digits(n: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(n);
    s.push(char::from(b'1' + rng.random_range(0..9)));
    for _ in 1..n {
        s.push(char::from(b'0' + rng.random_range(0..10)));
    }
    s
}

/// A TikTok-looking log_id: a UTC timestamp and 20 uppercase hex digits, 34 characters.
pub(crate) fn log_id() -> String {
    let ts = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let r: u128 = rand::rng().random();
    format!("{ts}{:020X}", r & ((1u128 << 80) - 1))
}

pub(crate) fn unix_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
