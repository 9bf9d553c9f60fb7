//! Redis plumbing shared by the ledger, the job store and the account store: key names and the
//! connection; `startup` waits for Redis at start and checks it cannot drop posts.
//!
//! Every key the daemon owns starts with `[redis] namespace` (default `tiktok-poster`). The names a
//! producer touches (`:submit`, `:rejected`, `:post:{id}`, `:events`) are part of the public contract.

pub(crate) mod conn;
pub mod replicas;
pub(crate) mod startup;
mod target;

pub use conn::{Conn, Primary, Redis, is_failover_error};
pub use startup::Unavailable;

pub use target::{MAX_SENTINELS, SentinelTarget, Target, parse_host_port, tls_problem};

/// Key names under one namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    ns: String,
}

impl Keys {
    /// Keys under `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            ns: namespace.to_string(),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Stream producers add submissions to.
    pub fn submit(&self) -> String {
        format!("{}:submit", self.ns)
    }
    /// Deliveries of pending submit entries that were left for later on purpose, by entry id.
    pub fn ingest_later(&self) -> String {
        format!("{}:submit:later", self.ns)
    }
    /// Stream of rejected submissions with their reason.
    pub fn rejected(&self) -> String {
        format!("{}:rejected", self.ns)
    }
    /// Stream of post state changes.
    pub fn events(&self) -> String {
        format!("{}:events", self.ns)
    }
    /// Prefix of post hashes (`{ns}:post:`).
    pub fn post_prefix(&self) -> String {
        format!("{}:post:", self.ns)
    }
    /// A post's hash.
    pub fn post(&self, id: &str) -> String {
        format!("{}:post:{id}", self.ns)
    }
    /// Every post id, scored by creation time (for `list`).
    pub fn posts(&self) -> String {
        format!("{}:posts", self.ns)
    }
    /// Job queue: post ids scored by the time they are due (ms).
    pub fn due(&self) -> String {
        format!("{}:q:due", self.ns)
    }
    /// Job queue: claimed post ids scored by lease expiry (ms).
    pub fn lease(&self) -> String {
        format!("{}:q:lease", self.ns)
    }
    /// How many posts are in each state now (a hash kept by the ledger's scripts, for `/metrics`).
    pub fn state_counts(&self) -> String {
        format!("{}:state_counts", self.ns)
    }
    /// Dead letters: ids of posts that ended `failed` or `unconfirmed`, scored by when (for operators).
    pub fn dead(&self) -> String {
        format!("{}:dead", self.ns)
    }
    /// Pub/sub channel that wakes idle workers.
    pub fn wake(&self) -> String {
        format!("{}:q:wake", self.ns)
    }
    /// An account's hash.
    pub fn account(&self, name: &str) -> String {
        format!("{}:account:{name}", self.ns)
    }
    /// The set of account names.
    pub fn accounts(&self) -> String {
        format!("{}:accounts", self.ns)
    }
    /// The refresh lock of an account.
    pub fn refresh_lock(&self, name: &str) -> String {
        format!("{}:lock:refresh:{name}", self.ns)
    }
    /// The lock of one warm-up activity check of an account (one daemon asks TikTok at a time).
    pub fn warmup_lock(&self, name: &str) -> String {
        format!("{}:lock:warmup:{name}", self.ns)
    }
    /// Accounts by planned refresh time (ms).
    pub fn refresh_due(&self) -> String {
        format!("{}:refresh_due", self.ns)
    }
    /// open_id → account name (for webhooks).
    pub fn open_ids(&self) -> String {
        format!("{}:open_ids", self.ns)
    }
    /// publish_id → post id (for webhooks).
    pub fn publish_ids(&self) -> String {
        format!("{}:publish_ids", self.ns)
    }
    /// TikTok video id → the post that claimed it (a hash): every public id recorded on a post, so the
    /// list lookup of an `unconfirmed` post never takes another post's video.
    pub fn claimed_videos(&self) -> String {
        format!("{}:claimed_videos", self.ns)
    }
    /// A webhook delivery already handled (by body hash).
    pub fn webhook_seen(&self, digest: &str) -> String {
        format!("{}:webhook:{digest}", self.ns)
    }
    /// The namespace's marker: a hash with a random `id` written when the namespace is first used, so
    /// that a running daemon notices a Redis that came back without its data.
    pub fn instance(&self) -> String {
        format!("{}:instance", self.ns)
    }
    /// The key a daemon writes just before it waits for replicas (`WAIT`, `[redis] min_replica_acks`).
    pub fn replica_ack(&self, worker: &str) -> String {
        format!("{}:replica_ack:{worker}", self.ns)
    }
    /// A key each daemon writes now and then to prove Redis still takes writes.
    pub fn write_probe(&self, worker: &str) -> String {
        format!("{}:probe:{worker}", self.ns)
    }
    /// A daemon's identity (`{ns}:worker:{id}`), held while it runs.
    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.ns)
    }
    /// A pending OAuth `state`.
    pub fn oauth_state(&self, state: &str) -> String {
        format!("{}:oauth:state:{state}", self.ns)
    }
    /// Pending OAuth states, scored by their expiry (ms): bounds how many there are.
    pub fn oauth_pending(&self) -> String {
        format!("{}:oauth:pending", self.ns)
    }
    /// A one-time token that confirms replacing an account's TikTok user (the connect page's button).
    pub fn oauth_confirm(&self, token: &str) -> String {
        format!("{}:oauth:confirm:{token}", self.ns)
    }
    /// An account's posting calendar (a hash: zone, slots, spacing, horizon, budget, pause, feed token).
    pub fn calendar(&self, account: &str) -> String {
        format!("{}:calendar:{account}", self.ns)
    }
    /// Prefix of the per-account held sets (`{ns}:held:`), for scripts that learn the account from
    /// the post.
    pub fn held_prefix(&self) -> String {
        format!("{}:held:", self.ns)
    }
    /// The posts of an account that hold their instant (every state but `cancelled` and a failure
    /// that never reached TikTok), scored by that instant (ms): what "free" is computed from.
    pub fn held(&self, account: &str) -> String {
        format!("{}{account}", self.held_prefix())
    }
    /// Prefix of the per-account sets of every post (`{ns}:account_posts:`).
    pub fn account_posts_prefix(&self) -> String {
        format!("{}:account_posts:", self.ns)
    }
    /// Every post of an account, cancelled ones too, scored by its instant (ms): the feed and the page.
    pub fn account_posts(&self, account: &str) -> String {
        format!("{}{account}", self.account_posts_prefix())
    }
    /// Set once every post recorded before the calendar existed is in the per-account sets.
    pub fn calendar_indexed(&self) -> String {
        format!("{}:calendar_indexed", self.ns)
    }
    /// Set once the accounts' first posts were read from the posts recorded before the warm-up.
    pub fn warmup_indexed(&self) -> String {
        format!("{}:warmup_indexed", self.ns)
    }
    /// The app-wide posting block (TikTok's `reached_active_user_cap`): a hash with the fields an
    /// account's block has in the account hash (`blocked_code`, `blocked_message`, `blocked_since_ms`,
    /// `blocked_checked_ms`).
    pub fn app_blocked(&self) -> String {
        format!("{}:app_blocked", self.ns)
    }
    /// The lock one worker holds while it asks `creator_info` whether a posting block has lifted
    /// (`scope`: `account:NAME` or `app`).
    pub fn blocked_check_lock(&self, scope: &str) -> String {
        format!("{}:lock:blocked_check:{scope}", self.ns)
    }
    /// A per-account sliding-window rate limit.
    pub fn rate(&self, account: &str, what: &str) -> String {
        format!("{}:rate:{account}:{what}", self.ns)
    }
}

/// The hash tag of a namespace: the non-empty text between its first `{` and the first `}` after it,
/// both inside the namespace. With one, every key of the namespace is in the same Redis Cluster
/// hash slot (`{tiktok-poster}:submit`, `{tiktok-poster}:post:…`).
pub fn hash_tag(namespace: &str) -> Option<&str> {
    let open = namespace.find('{')?;
    let rest = &namespace[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

/// Opens a connection that reconnects by itself after a drop and follows the primary (see [`Conn`])
/// to a [`Target`]: the daemon and the CLI pass the settings' one (`Settings::redis_target`, TLS
/// files and sentinels included); a bare URL is a target without either.
pub async fn connect(target: impl Into<Target>) -> redis::RedisResult<Conn> {
    Redis::new(target).connect().await
}

/// The URL with its password replaced by `***`, for logs, errors and `check-config`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => raw.to_string(),
        // Not a URL we can take apart: hide everything between "://" and the last '@'.
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(a), Some(b)) if b > a => format!("{}***{}", &raw[..a + 3], &raw[b..]),
            _ => raw.to_string(),
        },
    }
}

/// Redis refused our credentials (a configuration error, not an outage).
pub fn is_auth_error(e: &redis::RedisError) -> bool {
    let text = e.to_string();
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
}

/// Redis is at `maxmemory` and refuses writes.
pub fn is_out_of_memory(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed")
}

/// One line that says what a Redis error means for the operator.
pub fn explain(e: &redis::RedisError) -> String {
    if let Some(problem) = tls_problem(e) {
        format!("cannot connect to Redis over TLS: {problem}")
    } else if is_out_of_memory(e) {
        format!(
            "Redis is out of memory (maxmemory reached) and refuses writes: raise maxmemory or free memory ({e})"
        )
    } else if is_auth_error(e) {
        format!("Redis refused the credentials: check the password in [redis] url ({e})")
    } else if e.is_timeout() {
        format!("Redis does not answer in time (stalled or overloaded) ({e})")
    } else if e.is_connection_refusal() || e.is_connection_dropped() || e.is_io_error() {
        format!("cannot reach Redis ({e})")
    } else {
        format!("Redis error: {e}")
    }
}

/// Milliseconds since the epoch on this host.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A random 32-character identifier (lock owners, OAuth states, worker ids).
pub fn random_id() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_tags_are_read_as_redis_cluster_does() {
        assert_eq!(super::hash_tag("{tiktok-poster}"), Some("tiktok-poster"));
        assert_eq!(super::hash_tag("agency-{a}"), Some("a"));
        assert_eq!(super::hash_tag("tiktok-poster"), None);
        assert_eq!(super::hash_tag("{}x"), None, "an empty tag is no tag");
        assert_eq!(
            super::hash_tag("{open"),
            None,
            "a tag must close inside the namespace"
        );
    }
}
