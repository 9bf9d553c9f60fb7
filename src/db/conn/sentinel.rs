//! The questions [`Redis`] asks the sentinels: where the primary is (checked with `ROLE`), and,
//! after a replicas' `WAIT`, whether a majority of them still name it.

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisError, RedisResult, Value};
use secrecy::ExposeSecret;

use super::super::{SentinelTarget, Target, now_ms};
use super::{ASK_TIMEOUT, DIAL_TIMEOUT, REDIAL_AFTER_MS, Redis};

impl Redis {
    /// Whether the primary of `generation` is still the primary for the sentinels: every sentinel
    /// is asked at once, and `Ok` needs a majority of them to answer and none to name another
    /// server. Run after a write and its `WAIT` (`[redis] min_replica_acks`): a primary that
    /// sentinels have just replaced still takes writes, and still has a replica (one the
    /// sentinels have not pointed at the new primary yet) to acknowledge them, until it is
    /// demoted seconds later; those writes are then lost. The sentinel that led the promotion
    /// names the new primary at once, so a step that passes this cannot have written to a
    /// replaced primary, up to the sentinels' own view. Without sentinels: `Ok`.
    pub async fn confirm_primary(&self, generation: u64) -> Result<(), String> {
        let Some(sentinels) = &self.target.sentinel else {
            return Ok(());
        };
        let (now, addr) = {
            let s = self.state();
            (s.generation, s.addr.clone())
        };
        let Some(addr) = addr.filter(|_| now == generation) else {
            return Err("the Redis primary changed while the post's record was written; the step is tried again on the new primary".into());
        };
        let mut conns = self.confirming.lock().await;
        conns.resize_with(sentinels.addrs.len(), || (None, 0));
        let asks =
            conns
                .iter_mut()
                .zip(&sentinels.addrs)
                .map(|((slot, next_dial), at)| async move {
                    if slot.is_none() && now_ms() >= *next_dial {
                        // A sentinel that cannot be dialled is tried again in a few seconds, not at
                        // every step (each dial may wait out the dial timeout).
                        *slot = self.dial_sentinel(sentinels, at).await.ok();
                        if slot.is_none() {
                            *next_dial = now_ms() + REDIAL_AFTER_MS;
                        }
                    }
                    let conn = slot.as_mut()?;
                    let named = tokio::time::timeout(
                        ASK_TIMEOUT,
                        redis::cmd("SENTINEL")
                            .arg("get-master-addr-by-name")
                            .arg(&sentinels.master)
                            .query_async::<Option<(String, u16)>>(conn),
                    )
                    .await;
                    match named {
                        Ok(Ok(Some(named))) => Some((at.clone(), named)),
                        // A sentinel that monitors no primary of that name (restarted without its
                        // config, say) did not answer; it names no other server either.
                        Ok(Ok(None)) => None,
                        _ => {
                            *slot = None;
                            None
                        }
                    }
                });
        let answers: Vec<_> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Some((at, (h, p))) = answers.iter().find(|(_, n)| *n != addr) {
            return Err(format!(
                "sentinel {at} names {h}:{p}, not {}:{}: the primary is being replaced; the step is tried again on the new one",
                addr.0, addr.1
            ));
        }
        if answers.len() * 2 <= sentinels.addrs.len() {
            return Err(format!(
                "only {} of {} sentinels answered, so the primary cannot be confirmed; the step waits for a majority",
                answers.len(),
                sentinels.addrs.len()
            ));
        }
        Ok(())
    }

    /// Asks the sentinels (the one that answered last first) for the primary and checks it with
    /// `ROLE`. `Err` says why no primary was found, for the log and `/healthz`.
    pub(super) async fn ask(&self) -> Result<(String, u16), String> {
        let Some(sentinels) = &self.target.sentinel else {
            return Ok((String::new(), 0));
        };
        let mut cached = self.sentinel.lock().await;
        let first = cached.as_ref().map_or(0, |c| c.0);
        let mut problems = Vec::new();
        for k in 0..sentinels.addrs.len() {
            let i = (first + k) % sentinels.addrs.len();
            let addr = &sentinels.addrs[i];
            let mut conn = match cached.take() {
                Some((j, c)) if j == i => c,
                _ => match self.dial_sentinel(sentinels, addr).await {
                    Ok(c) => c,
                    Err(e) => {
                        problems.push(format!("sentinel {addr}: {}", super::super::explain(&e)));
                        continue;
                    }
                },
            };
            let asked = tokio::time::timeout(
                ASK_TIMEOUT,
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&sentinels.master)
                    .query_async::<Option<(String, u16)>>(&mut conn),
            )
            .await;
            let named = match asked {
                Ok(Ok(Some(a))) => a,
                Ok(Ok(None)) => {
                    problems.push(format!(
                        "sentinel {addr} monitors no primary named {:?} (check [redis] sentinel_master)",
                        sentinels.master
                    ));
                    *cached = Some((i, conn));
                    continue;
                }
                Ok(Err(e)) => {
                    problems.push(format!("sentinel {addr}: {}", super::super::explain(&e)));
                    continue;
                }
                Err(_) => {
                    problems.push(format!("sentinel {addr} did not answer in time"));
                    continue;
                }
            };
            *cached = Some((i, conn));
            match self.is_master(&named.0, named.1).await {
                Ok(true) => return Ok(named),
                Ok(false) => problems.push(format!(
                    "sentinel {addr} names {}:{}, which says it is a replica (a failover under way?)",
                    named.0, named.1
                )),
                Err(e) => problems.push(format!(
                    "sentinel {addr} names {}:{}, which cannot be used: {}",
                    named.0,
                    named.1,
                    super::super::explain(&e)
                )),
            }
        }
        Err(format!(
            "no Redis primary is known: {}",
            problems.join("; ")
        ))
    }

    async fn dial_sentinel(
        &self,
        sentinels: &SentinelTarget,
        addr: &str,
    ) -> RedisResult<MultiplexedConnection> {
        let (host, port) = super::super::parse_host_port(addr).map_err(|why| {
            RedisError::from((ErrorKind::InvalidClientConfig, "bad sentinel address", why))
        })?;
        let password = sentinels
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_string());
        let target = self
            .target
            .at(&host, port, Some(password.as_deref().unwrap_or("")))?;
        dial(&target).await
    }

    /// Whether `host:port` answers `ROLE` as a master.
    pub(super) async fn is_master(&self, host: &str, port: u16) -> RedisResult<bool> {
        let mut cached = self.role.lock().await;
        let key = (host.to_string(), port);
        let mut conn = match cached.take() {
            Some((k, c)) if k == key => c,
            _ => dial(&self.target.at(host, port, None)?).await?,
        };
        let role = tokio::time::timeout(
            ASK_TIMEOUT,
            redis::cmd("ROLE").query_async::<Vec<Value>>(&mut conn),
        )
        .await
        .map_err(|_| RedisError::from((ErrorKind::Io, "ROLE timed out")))??;
        *cached = Some((key, conn));
        Ok(
            matches!(role.first(), Some(Value::BulkString(b)) if b == b"master")
                || matches!(role.first(), Some(Value::SimpleString(s)) if s == "master"),
        )
    }
}

/// A multiplexed connection to `target` within [`DIAL_TIMEOUT`].
async fn dial(target: &Target) -> RedisResult<MultiplexedConnection> {
    let client = target.client()?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(DIAL_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}
