//! The daemon's connections to Redis, which follow the primary. With `[redis] url` alone a [`Conn`] is
//! a `ConnectionManager` to that address (it reconnects by itself after a drop). With `[redis]
//! sentinels`, [`Redis`] asks the sentinels where the primary is, checks the answer with `ROLE`, and
//! every [`Conn`] opened from it moves to a new primary before its next command once
//!
//! - a command fails in a way that says this server is no longer the primary or is gone (a dropped
//!   connection, `READONLY`, `MASTERDOWN`, `NOREPLICAS`, `LOADING`, `UNBLOCKED`, also inside a script
//!   error's text), or
//! - the check that runs every second (from the first connection on) finds the sentinels naming another primary, or
//!   the one in use answering `ROLE` as a replica (a client that missed the switch otherwise stays
//!   on a demoted primary).
//!
//! The `redis` crate's own Sentinel client finds the primary once and never follows a failover, and
//! its `ConnectionManager` reconnects to the same address, where a demoted primary answers `READONLY`
//! for ever; so the daemon owns this. A command that failed is never sent again here: the callers
//! already treat a Redis error as "hand back and try later", and a write must not be repeated blindly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use super::{Target, now_ms};

mod sentinel;

/// How long a connection to a sentinel or a candidate primary may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a sentinel's or a candidate's answer may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the follow task asks the sentinels.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How long [`Redis::confirm_primary`] leaves a sentinel it could not dial before dialling it again.
const REDIAL_AFTER_MS: i64 = 5_000;
/// While no primary is known, commands fail at once with the last reason for this long before the
/// sentinels are asked again (so a burst of commands does not become a burst of questions).
const ASK_AGAIN_AFTER_MS: i64 = 250;

/// Where the primary is now, as the daemon knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Primary {
    /// This address answered `ROLE` as a master.
    Known(String),
    /// No primary is known: the reason, since when (ms).
    Unknown { why: String, since_ms: i64 },
}

#[derive(Debug)]
struct State {
    /// Bumped each time the primary changes or is lost: a [`Conn`] whose connection is of an older
    /// generation opens a new one.
    generation: u64,
    /// The primary's host and port, while known.
    addr: Option<(String, u16)>,
    /// Why no primary is known, and since when.
    lost: Option<(String, i64)>,
    /// When the sentinels were last asked without an answer (ms), so that the next ask waits.
    last_failed_ms: i64,
}

/// The daemon's Redis: the target, and with sentinels where the primary is now. Shared by every
/// [`Conn`] opened from it.
pub struct Redis {
    target: Target,
    state: Mutex<State>,
    /// One question to the sentinels at a time.
    asking: tokio::sync::Mutex<()>,
    /// The sentinel that answered last (its index), and a connection to it.
    sentinel: tokio::sync::Mutex<Option<(usize, MultiplexedConnection)>>,
    /// A connection to the server last checked with `ROLE`, kept for the next check.
    role: tokio::sync::Mutex<Option<((String, u16), MultiplexedConnection)>>,
    /// Whether the follow task runs.
    following: std::sync::atomic::AtomicBool,
    /// A connection to each sentinel for [`Redis::confirm_primary`], by index, and when one that
    /// could not be dialled may be dialled again (ms).
    confirming: tokio::sync::Mutex<Vec<(Option<MultiplexedConnection>, i64)>>,
    /// When a command's error last asked for a check out of turn (ms).
    last_recheck_ms: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &super::redact_url(&self.target.url))
            .field("sentinel", &self.target.sentinel)
            .finish()
    }
}

impl Redis {
    /// The daemon's Redis at `target` (nothing is connected yet).
    pub fn new(target: impl Into<Target>) -> Arc<Self> {
        let target = target.into();
        let addr = if target.sentinel.is_some() {
            None
        } else {
            Some((String::new(), 0))
        };
        Arc::new(Self {
            target,
            state: Mutex::new(State {
                generation: 0,
                addr,
                lost: None,
                last_failed_ms: 0,
            }),
            asking: tokio::sync::Mutex::new(()),
            sentinel: tokio::sync::Mutex::new(None),
            role: tokio::sync::Mutex::new(None),
            following: std::sync::atomic::AtomicBool::new(false),
            confirming: tokio::sync::Mutex::new(Vec::new()),
            last_recheck_ms: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The target the connections are made from.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The primary's generation: it changes each time the primary is lost or moves, so two
    /// connections used under one generation reached the same server.
    pub fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Whether the primary is found through sentinels.
    pub fn uses_sentinels(&self) -> bool {
        self.target.sentinel.is_some()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the primary is, as far as the daemon knows (`url`'s address without sentinels).
    pub fn primary(&self) -> Primary {
        let s = self.state();
        match (&s.addr, &s.lost) {
            (Some(_), _) if !self.uses_sentinels() => {
                Primary::Known(super::redact_url(&self.target.url))
            }
            (Some((h, p)), _) => Primary::Known(format!("{h}:{p}")),
            (None, Some((why, since))) => Primary::Unknown {
                why: why.clone(),
                since_ms: *since,
            },
            (None, None) => Primary::Unknown {
                why: "the sentinels have not been asked yet".into(),
                since_ms: now_ms(),
            },
        }
    }

    /// Opens a connection of its own (its own socket) that follows the primary. Fails when no
    /// primary can be reached now. With sentinels, the first call starts the follow task for as
    /// long as any connection (or other handle) of this Redis lives.
    pub async fn connect(self: &Arc<Self>) -> RedisResult<Conn> {
        if self.uses_sentinels()
            && !self
                .following
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tokio::spawn(follow_while_alive(Arc::downgrade(self)));
        }
        let conn = Conn {
            redis: self.clone(),
            slot: Arc::new(Slot::default()),
        };
        conn.manager().await?;
        Ok(conn)
    }

    /// The primary's generation and the target to connect to, asking the sentinels when no primary
    /// is known.
    async fn current(&self) -> RedisResult<(u64, Target)> {
        if let Some(found) = self.known() {
            return Ok(found);
        }
        let _one = self.asking.lock().await;
        if let Some(found) = self.known() {
            return Ok(found);
        }
        {
            let s = self.state();
            if now_ms() - s.last_failed_ms < ASK_AGAIN_AFTER_MS
                && let Some((why, _)) = &s.lost
            {
                return Err(no_primary(why));
            }
        }
        match self.ask().await {
            Ok(addr) => {
                self.adopt(addr);
                self.known()
                    .ok_or_else(|| no_primary("the primary was lost again"))
            }
            Err(why) => {
                let mut s = self.state();
                s.last_failed_ms = now_ms();
                let since = s.lost.as_ref().map_or_else(now_ms, |l| l.1);
                s.lost = Some((why.clone(), since));
                Err(no_primary(&why))
            }
        }
    }

    fn known(&self) -> Option<(u64, Target)> {
        let s = self.state();
        let (host, port) = s.addr.as_ref()?;
        if !self.uses_sentinels() {
            return Some((s.generation, self.target.clone()));
        }
        self.target
            .at(host, *port, None)
            .ok()
            .map(|t| (s.generation, t))
    }

    /// Takes `addr` as the primary; a change bumps the generation so every connection moves.
    fn adopt(&self, addr: (String, u16)) {
        let mut s = self.state();
        if s.addr.as_ref() == Some(&addr) {
            return;
        }
        let was = s
            .addr
            .as_ref()
            .map(|(h, p)| format!("{h}:{p}"))
            .unwrap_or_else(|| "none".into());
        let down_ms = s.lost.as_ref().map(|l| now_ms() - l.1);
        s.generation += 1;
        s.addr = Some(addr.clone());
        s.lost = None;
        drop(s);
        tracing::info!(
            primary = %format!("{}:{}", addr.0, addr.1),
            was = %was,
            without_primary_ms = down_ms.unwrap_or(0),
            "Redis primary found; every connection moves to it."
        );
    }

    /// Runs one check of the primary now (at most once a second), without forgetting it first.
    fn recheck_soon(self: Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.uses_sentinels() {
            return;
        }
        let now = now_ms();
        let last = self.last_recheck_ms.load(Relaxed);
        if now - last < 1_000
            || self
                .last_recheck_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        tokio::spawn(async move { self.check(&mut false).await });
    }

    /// Forgets the primary of `generation` (a command said it is gone or no longer the primary):
    /// the next command of every connection asks the sentinels again. A no-op without sentinels
    /// or when the primary already changed.
    fn suspect(&self, generation: u64, error: &RedisError) {
        if !self.uses_sentinels() {
            return;
        }
        let mut s = self.state();
        if s.generation != generation || s.addr.is_none() {
            return;
        }
        let was = s
            .addr
            .take()
            .map(|(h, p)| format!("{h}:{p}"))
            .unwrap_or_default();
        s.generation += 1;
        let why = format!("the primary {was} failed: {}", super::explain(error));
        s.lost = Some((why.clone(), now_ms()));
        s.last_failed_ms = 0;
        drop(s);
        tracing::warn!(primary = %was, error = %super::explain(error), "Redis primary lost; asking the sentinels where it is now.");
    }

    /// One check of [`follow_while_alive`]: asks the sentinels where the primary is and moves every
    /// connection when the answer is another address, or forgets the primary when the one in use
    /// no longer says it is the master. Sentinels that cannot be asked do not make a working
    /// primary unusable: it is kept while it still says it is the master. `said` keeps the
    /// "cannot ask" warning to one line per outage.
    async fn check(&self, said: &mut bool) {
        let _one = self.asking.lock().await;
        let why = match self.ask().await {
            Ok(addr) => {
                *said = false;
                self.adopt(addr);
                return;
            }
            Err(why) => why,
        };
        let current = self.state().addr.clone();
        if let Some((host, port)) = current
            && matches!(self.is_master(&host, port).await, Ok(true))
        {
            if !*said {
                tracing::warn!(problem = %why, primary = %format!("{host}:{port}"), "The sentinels cannot confirm the primary; staying on it while it still says it is the master.");
                *said = true;
            }
            return;
        }
        let mut s = self.state();
        s.last_failed_ms = now_ms();
        if let Some((host, port)) = s.addr.take() {
            s.generation += 1;
            s.lost = Some((why.clone(), now_ms()));
            drop(s);
            tracing::warn!(primary = %format!("{host}:{port}"), problem = %why, "Redis primary no longer confirmed; connections wait for the sentinels to name one.");
        } else {
            let since = s.lost.as_ref().map_or_else(now_ms, |l| l.1);
            s.lost = Some((why.clone(), since));
            drop(s);
            if !*said {
                tracing::warn!(problem = %why, "No Redis primary is known; asking the sentinels every second.");
                *said = true;
            }
        }
    }
}

/// Every [`FOLLOW_EVERY`], while anything still holds the [`Redis`] (a daemon's connections, a
/// command's), runs its check; the task ends on the first tick after the last handle is dropped.
async fn follow_while_alive(redis: std::sync::Weak<Redis>) {
    let mut said = false;
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let Some(redis) = redis.upgrade() else {
            return;
        };
        redis.check(&mut said).await;
    }
}

/// The error a command gets while no primary is known.
fn no_primary(why: &str) -> RedisError {
    RedisError::from((ErrorKind::Io, "no Redis primary", why.to_string()))
}

/// True for an error that says the server in use is gone or no longer the primary, so the sentinels
/// must be asked again: a dropped or refused connection, `READONLY` (a demoted primary), `MASTERDOWN`
/// and `NOREPLICAS` (a replica or a primary that cannot take writes now), `LOADING` (a restarted
/// server) and `UNBLOCKED` (a blocked read cut off by a role change), also inside a script error.
pub fn is_failover_error(e: &RedisError) -> bool {
    if e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    if matches!(
        e.code(),
        Some("READONLY" | "MASTERDOWN" | "NOREPLICAS" | "LOADING" | "UNBLOCKED")
    ) {
        return true;
    }
    let text = e.to_string();
    [
        "READONLY",
        "MASTERDOWN",
        "NOREPLICAS",
        "LOADING",
        "UNBLOCKED",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// True for an error from a server that answers and may still be the primary: `NOREPLICAS` (a
/// primary with `min-replicas-to-write` whose replicas lag) and `LOADING` (a server loading its
/// data). Forgetting the primary over these would reconnect every connection at each write.
fn server_still_answers(e: &RedisError) -> bool {
    let text = e.to_string();
    matches!(e.code(), Some("NOREPLICAS" | "LOADING"))
        || text.contains("NOREPLICAS")
        || text.contains("LOADING")
}

/// The connection of a [`Conn`] and its clones, with the primary generation it was made for.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<(u64, ConnectionManager)>>,
    /// One (re)connection at a time.
    opening: tokio::sync::Mutex<()>,
}

/// A connection to the primary: a `ConnectionManager` that is replaced when the primary moves.
/// Clones share it (one socket, commands multiplexed), as clones of a `ConnectionManager` do; a
/// connection of its own comes from [`Redis::connect`].
#[derive(Clone)]
pub struct Conn {
    redis: Arc<Redis>,
    slot: Arc<Slot>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("redis", &self.redis).finish()
    }
}

impl Conn {
    /// The Redis this connection follows.
    pub fn redis(&self) -> &Arc<Redis> {
        &self.redis
    }

    /// A new connection of its own to the same Redis.
    pub async fn separate(&self) -> RedisResult<Conn> {
        self.redis.connect().await
    }

    /// The manager for the current primary, opening one when the primary changed since.
    async fn manager(&self) -> RedisResult<(u64, ConnectionManager)> {
        let (generation, target) = self.redis.current().await?;
        if let Some(found) = self.held(generation) {
            return Ok(found);
        }
        let _one = self.slot.opening.lock().await;
        if let Some(found) = self.held(generation) {
            return Ok(found);
        }
        match open_manager(&target).await {
            Ok(m) => {
                *self.slot.current.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((generation, m.clone()));
                Ok((generation, m))
            }
            Err(e) => {
                if is_failover_error(&e) {
                    self.redis.suspect(generation, &e);
                }
                Err(e)
            }
        }
    }

    fn held(&self, generation: u64) -> Option<(u64, ConnectionManager)> {
        let held = self.slot.current.lock().unwrap_or_else(|p| p.into_inner());
        match &*held {
            Some((g, m)) if *g == generation => Some((*g, m.clone())),
            _ => None,
        }
    }

    fn after<T>(&self, generation: u64, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r {
            if server_still_answers(e) {
                // NOREPLICAS, LOADING: the server answers and may still be the primary; ask the
                // sentinels soon, and move only if they name another one.
                self.redis.clone().recheck_soon();
            } else if is_failover_error(e) {
                self.redis.suspect(generation, e);
            }
        }
        r
    }
}

/// A `ConnectionManager` to `target`, with the daemon's timeouts.
async fn open_manager(target: &Target) -> RedisResult<ConnectionManager> {
    let client = target.client()?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(2);
    ConnectionManager::new_with_config(client, cfg).await
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let (generation, mut m) = self.manager().await?;
            let r = m.req_packed_command(cmd).await;
            self.after(generation, r)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut m) = self.manager().await?;
            let r = m.req_packed_commands(cmd, offset, count).await;
            self.after(generation, r)
        })
    }

    fn get_db(&self) -> i64 {
        self.slot
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |(_, m)| m.get_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_say_the_primary_moved_are_told_from_the_rest() {
        let readonly = RedisError::from((
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly),
            "READONLY",
            "You can't write against a read only replica.".to_string(),
        ));
        assert!(is_failover_error(&readonly), "{readonly}");
        // A script that wrote on a demoted primary: the code is ERR, the reason is in the text.
        let script = RedisError::from((
            ErrorKind::Extension,
            "ERR",
            "Error running script (call to f_1234): @user_script:3: READONLY You can't write against a read only replica.".to_string(),
        ));
        assert!(is_failover_error(&script), "{script}");
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_failover_error(&refused));
        let oom = RedisError::from((
            ErrorKind::Extension,
            "OOM",
            "command not allowed when used memory > 'maxmemory'.".to_string(),
        ));
        assert!(!is_failover_error(&oom), "out of memory is not a failover");
        let wrongtype = RedisError::from((
            ErrorKind::Extension,
            "WRONGTYPE",
            "Operation against a key holding the wrong kind of value".to_string(),
        ));
        assert!(!is_failover_error(&wrongtype));
    }
}
