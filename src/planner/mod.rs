//! The posting calendar in Redis: each account's settings (`{ns}:calendar:{account}`), shared by every
//! daemon, the CLI and the page; "add to queue" (`slot` = `next`, `assign`); pause, resume and
//! `reslot` (`moves`); and what the CLI and the page read (`views`).
//!
//! The slot rules are `calendar`'s (pure); which instant is free is decided by the ledger's scripts
//! (`posts::held`) in the same step as the write, so concurrent producers and daemons never take the
//! same slot. Editing a calendar never moves a post that has a slot: only `reslot` and a resume do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::accounts::Accounts;
use crate::calendar::settings::{PAUSED_FIELD, VERSION_FIELD};
use crate::calendar::{CalendarSettings, Schedule};
use crate::db::{Keys, now_ms};
use crate::posts::{Ledger, Rules};

mod assign;
mod moves;
mod views;

pub use assign::Assigned;
pub use moves::{Resumed, paused_fields, paused_message};
pub use views::SlotView;

/// The field of the calendar hash that holds the sealed feed token.
const FEED_TOKEN_FIELD: &str = "feed_token_sealed";
/// Parsed calendars kept in memory (each checked against Redis's copy on every use).
const CACHE_MAX: usize = 20_000;
/// How often a post of a paused account looks again: a resume moves the posts it finds at once; this
/// bounds how late one it could not move (a worker held it at that moment) goes.
pub const PAUSED_RECHECK_MS: i64 = 5 * 60_000;

/// Why a calendar operation could not be done; the message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The account has no calendar.
    #[error(
        "account {0:?} has no posting calendar; set one with `tiktok-poster calendar set {0} --tz ZONE --slot CRON`"
    )]
    NoCalendar(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<crate::accounts::AccountError> for PlanError {
    fn from(e: crate::accounts::AccountError) -> Self {
        match e {
            crate::accounts::AccountError::Redis(r) => Self::Redis(r),
            other => Self::Invalid(other.to_string()),
        }
    }
}

/// A calendar as read: its settings, parsed slots and feed token (sealed).
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The account.
    pub account: String,
    /// The settings.
    pub settings: CalendarSettings,
    /// The slots, parsed.
    pub schedule: Schedule,
    feed_token_sealed: Option<String>,
}

impl Calendar {
    /// The rules the free check applies.
    pub fn rules(&self) -> Rules {
        Rules {
            spacing_ms: self.settings.spacing_ms(),
            daily_budget: self.settings.daily_budget,
        }
    }
}

/// The calendars of every account.
#[derive(Clone)]
pub struct Calendars {
    ledger: Ledger,
    accounts: Accounts,
    default_budget: u32,
    warmup: crate::config::WarmupSettings,
    cache: Arc<Mutex<HashMap<String, Arc<Calendar>>>>,
}

impl std::fmt::Debug for Calendars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calendars").finish_non_exhaustive()
    }
}

impl Calendars {
    /// The calendars, over the ledger's connection. `default_budget` is `worker.daily_post_budget`,
    /// the budget of a calendar set without `--daily-budget`; a warming-up account's free slots also
    /// respect the day's cap of `warmup`'s ramp.
    pub fn new(
        ledger: Ledger,
        accounts: Accounts,
        default_budget: u32,
        warmup: crate::config::WarmupSettings,
    ) -> Self {
        Self {
            ledger,
            accounts,
            default_budget,
            warmup,
            cache: Arc::default(),
        }
    }

    /// The daily budget a calendar gets when none is given.
    pub fn default_budget(&self) -> u32 {
        self.default_budget
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn keys(&self) -> &Keys {
        self.ledger.keys()
    }

    /// An account's calendar, if it has one.
    pub async fn get(&self, account: &str) -> Result<Option<Arc<Calendar>>, PlanError> {
        let mut conn = self.ledger.conn();
        let raw: HashMap<String, String> = conn.hgetall(self.keys().calendar(account)).await?;
        if raw.is_empty() {
            return Ok(None);
        }
        let settings = CalendarSettings::from_fields(&raw).map_err(PlanError::Invalid)?;
        let sealed = raw.get(FEED_TOKEN_FIELD).filter(|s| !s.is_empty()).cloned();
        if let Some(hit) = self.cached(account)
            && hit.settings == settings
            && hit.feed_token_sealed == sealed
        {
            return Ok(Some(hit));
        }
        let schedule = settings.schedule().map_err(|e| {
            PlanError::Invalid(format!(
                "the stored calendar of {account:?} is not valid ({e}); set it again"
            ))
        })?;
        let cal = Arc::new(Calendar {
            account: account.to_string(),
            settings,
            schedule,
            feed_token_sealed: sealed,
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(account.to_string(), cal.clone());
        Ok(Some(cal))
    }

    /// The calendar this process read last, without asking Redis; the script that takes a slot
    /// checks it is still current (by its `version`), and a stale copy is read again.
    pub(crate) async fn get_fast(&self, account: &str) -> Result<Option<Arc<Calendar>>, PlanError> {
        match self.cached(account) {
            Some(hit) => Ok(Some(hit)),
            None => self.get(account).await,
        }
    }

    fn cached(&self, account: &str) -> Option<Arc<Calendar>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(account).cloned()
    }

    /// An account's calendar, or [`PlanError::NoCalendar`].
    pub async fn require(&self, account: &str) -> Result<Arc<Calendar>, PlanError> {
        self.get(account)
            .await?
            .ok_or_else(|| PlanError::NoCalendar(account.to_string()))
    }

    /// Sets an account's calendar (its pause and its feed token stay as they were; a new calendar
    /// gets a feed token). Posts that have a slot keep it. The account must exist.
    pub async fn set(
        &self,
        account: &str,
        mut settings: CalendarSettings,
    ) -> Result<Arc<Calendar>, PlanError> {
        let exists = self
            .accounts
            .exists(account)
            .await
            .map_err(|e| PlanError::Invalid(e.to_string()))?;
        if !exists {
            return Err(PlanError::Invalid(format!(
                "no account {account:?}; connect it first with `tiktok-poster accounts connect {account}`"
            )));
        }
        settings.schedule().map_err(PlanError::Invalid)?;
        settings.updated_ms = now_ms();
        // The pause and the feed token are not the settings' to change: a pause that lands meanwhile
        // stays, and a calendar keeps its token (a new one only when it has none).
        let fields: Vec<(&str, String)> = settings
            .to_fields()
            .into_iter()
            .filter(|(k, _)| *k != PAUSED_FIELD)
            .collect();
        let key = self.keys().calendar(account);
        let mut conn = self.ledger.conn();
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(&key, &fields)
            .ignore()
            // A new calendar's version starts at the clock, so one removed and set again never has a
            // version an old cached copy could still match.
            .hset_nx(&key, VERSION_FIELD, now_ms())
            .ignore()
            .hincr(&key, VERSION_FIELD, 1)
            .ignore()
            .hset_nx(&key, FEED_TOKEN_FIELD, self.new_sealed_token(account))
            .ignore()
            .query_async(&mut conn)
            .await?;
        self.require(account).await
    }

    /// Removes an account's calendar; its posts stay where they are. False when it had none.
    pub async fn remove(&self, account: &str) -> Result<bool, PlanError> {
        let mut conn = self.ledger.conn();
        let n: i64 = conn.del(self.keys().calendar(account)).await?;
        Ok(n > 0)
    }

    /// Pauses an account: none of its posts starts until `resume`. Returns since when it is paused
    /// (the earlier time when it already was).
    pub async fn pause(&self, account: &str) -> Result<i64, PlanError> {
        let cal = self.require(account).await?;
        if let Some(since) = cal.settings.paused_ms {
            return Ok(since);
        }
        let now = now_ms();
        let mut conn = self.ledger.conn();
        let _: () = conn
            .hset_multiple(
                self.keys().calendar(account),
                &[
                    (PAUSED_FIELD, now.to_string()),
                    ("updated_ms", now.to_string()),
                ],
            )
            .await?;
        Ok(now)
    }

    /// Since when an account's calendar is paused, if it is (one field read, for the worker).
    pub async fn paused_since(&self, account: &str) -> redis::RedisResult<Option<i64>> {
        let mut conn = self.ledger.conn();
        let v: Option<String> = conn
            .hget(self.keys().calendar(account), PAUSED_FIELD)
            .await?;
        Ok(v.and_then(|s| s.parse().ok()))
    }

    /// The feed token of an account (a new one with `rotate`: the old URL stops working).
    pub async fn feed_token(&self, account: &str, rotate: bool) -> Result<String, PlanError> {
        let cal = self.require(account).await?;
        let sealed = match (&cal.feed_token_sealed, rotate) {
            (Some(s), false) => s.clone(),
            _ => {
                let s = self.new_sealed_token(account);
                let mut conn = self.ledger.conn();
                let _: () = conn
                    .hset(self.keys().calendar(account), FEED_TOKEN_FIELD, &s)
                    .await?;
                s
            }
        };
        let token = self.accounts.unseal(account, &sealed).map_err(|e| {
            PlanError::Invalid(format!(
                "the feed token cannot be opened ({e}); make a new one with `tiktok-poster calendar feed-token {account} --rotate`"
            ))
        })?;
        Ok(token.expose_secret().to_string())
    }

    /// Whether `token` is the account's feed token (compared as digests, so the time taken says
    /// nothing about the token).
    pub async fn feed_token_matches(&self, account: &str, token: &str) -> Result<bool, PlanError> {
        let Some(cal) = self.get(account).await? else {
            return Ok(false);
        };
        let Some(sealed) = &cal.feed_token_sealed else {
            return Ok(false);
        };
        let Ok(real) = self.accounts.unseal(account, sealed) else {
            return Ok(false);
        };
        Ok(Sha256::digest(real.expose_secret().as_bytes()) == Sha256::digest(token.as_bytes()))
    }

    fn new_sealed_token(&self, account: &str) -> String {
        use base64::Engine;
        let bytes: [u8; 24] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.accounts.seal(account, &SecretString::from(token))
    }
}

/// The most posts any rolling 24 hours around an instant may hold for one account: its calendar's
/// budget, or less while the account warms up (the day's cap of its ramp, counted from its first
/// post, or before that from the earliest post it holds, which will be the first).
#[derive(Debug, Clone)]
pub struct Caps {
    warmup: Option<crate::accounts::Warmup>,
    ramp: Vec<u32>,
    budget: u32,
    now_ms: i64,
}

impl Caps {
    /// The budget at instant `ms`.
    pub fn at(&self, ms: i64) -> u32 {
        match &self.warmup {
            Some(w) => w
                .step(&self.ramp, self.budget, ms.max(self.now_ms))
                .map_or(self.budget, |s| s.cap),
            None => self.budget,
        }
    }
}

impl Calendars {
    /// The caps of `account`'s calendar whose budget is `budget`, as of now.
    pub async fn caps(&self, account: &str, budget: u32) -> Result<Caps, PlanError> {
        let now_ms = crate::db::now_ms();
        let warmup = if self.warmup.enabled {
            let mut w = self.accounts.warmup(account).await?;
            if w.first_post_ms.is_none() {
                let day_ago = now_ms - crate::tiktok::DAILY_WINDOW.as_millis() as i64;
                w.first_post_ms = self.ledger.first_held_from(account, day_ago).await?;
            }
            Some(w)
        } else {
            None
        };
        Ok(Caps {
            warmup,
            ramp: self.warmup.ramp.clone(),
            budget,
            now_ms,
        })
    }
}
