//! A replicated Redis of the test's (or benchmark's) own: one primary, one replica and three
//! sentinels, each a `redis-server` on a free port in a temporary directory, all killed on drop.
//! Never the Redis on 6379.
//!
//! The data nodes are configured as [`super::TestRedis`] is (append-only with fsync on every write,
//! `noeviction`, no RDB snapshots, loopback only), so a SIGKILLed primary keeps every write it
//! acknowledged. The helpers cause the two failovers a deployment meets, and wait until the
//! topology has settled again before they return, so the next one can happen:
//!
//! - [`TestSentinels::failover`]: `SENTINEL FAILOVER`, an operator's switch with both nodes alive;
//! - [`TestSentinels::kill_master_and_wait_promotion`]: the primary SIGKILLed, the sentinels agree
//!   it is down and promote the replica; [`TestSentinels::restart_as_replica`] brings the killed
//!   node back as a replica of the new primary.
//!
//! Each returns the instant of the promotion as the sentinels announce it (`+switch-master`), for
//! figures such as "from the promotion to the first post published afterwards". Every wait has a
//! generous deadline (CI has two busy cores) and panics with [`TestSentinels::dump`], what each
//! node and sentinel reports, so a failure says which part did not settle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use redis::FromRedisValue;
use tiktok_poster::db::Target;

use super::{CertFiles, TestCerts};

/// The name the sentinels monitor the primary under (`sentinel monitor NAME …`).
const MASTER_NAME: &str = "tp-primary";
/// How long a start, a promotion or a restart may take before the topology is taken for broken.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long the topology may take to settle after a failover: the sentinels turn a demoted primary
/// that still says it is a master into a replica only after 8 s (4 × their 2 s publish period), and
/// read a replica's link state every 10 s, so this is longer than [`READY_WITHIN`].
const SETTLED_WITHIN: Duration = Duration::from_secs(60);
/// How long one connection to a node or a sentinel, or one answer, may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The sentinel settings, chosen for failovers that are quick and reliable on a busy machine:
///
/// - `down-after-milliseconds 5000`: a primary that answers no PING for 5 s is taken for down
///   (subjectively; the failover still needs the quorum of 2 to agree), so a SIGKILL leads to a
///   promotion in about 6 s. Not lower: with 1000 ms, `benches/failover` once saw a sentinel fail
///   the new primary over again on its own 1 s after the switch of a SIGKILL failover (the 5th),
///   promoting the node restarted a moment before. The likely cause: a sentinel closes its links
///   to the new primary at the switch and reconnects on a later tick, and it keeps the other
///   sentinels' "the primary is down" answers about the old primary for up to 5 s
///   (`SENTINEL_ASK_PERIOD * 5`); one slow reconnection made it take the new primary for down,
///   with those stale answers as its quorum.
/// - `failover-timeout 5000`: how long a started failover may take before it is abandoned, and
///   (twice it) how long a sentinel waits before it tries again after a failed election. A
///   promotion on loopback takes milliseconds, so 5 s is ample, and a split vote is retried after
///   10 s instead of the default 6 minutes.
/// - `parallel-syncs 1`: the only replica resynchronises at once.
fn sentinel_conf(port: u16, dir: &Path, primary_port: u16, tls: Option<&SentinelTls>) -> String {
    let listen = match tls {
        None => format!("port {port}\n"),
        Some(t) => format!(
            "port 0\ntls-port {port}\ntls-replication yes\ntls-auth-clients yes\n\
             tls-cert-file \"{}\"\ntls-key-file \"{}\"\ntls-ca-cert-file \"{}\"\n\
             tls-client-cert-file \"{}\"\ntls-client-key-file \"{}\"\n",
            t.server.cert.display(),
            t.server.key.display(),
            t.ca.display(),
            t.client.cert.display(),
            t.client.key.display()
        ),
    };
    format!(
        "{listen}bind 127.0.0.1\ndir \"{dir}\"\nlogfile \"{dir}/sentinel.log\"\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 5000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n",
        dir = dir.display()
    )
}

/// A `redis-server` process of the topology: a data node or a sentinel.
struct Node {
    port: u16,
    /// Its working directory: the append-only file of a data node, the rewritten config of a
    /// sentinel, and the log of either.
    dir: tempfile::TempDir,
    /// `None` while killed.
    child: Option<Child>,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last lines of its log (at most 8 KiB read), for a dump.
    fn log_tail(&self, name: &str, lines: usize) -> String {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(self.dir.path().join(name)) else {
            return "(no log)".into();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(8192)));
        let mut text = String::new();
        let _ = f.take(8192).read_to_string(&mut text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// TLS on every port of the topology ([`TestSentinels::start_tls`]): each node and sentinel
/// presents `server` and requires a client certificate from `ca`; their own connections (replication,
/// the sentinels' links) present `client`, and so do the harness's and the daemon's.
#[derive(Clone, Debug)]
pub struct SentinelTls {
    /// The CA every certificate chains to, trusted by every side.
    pub ca: PathBuf,
    /// What each node and sentinel presents as a server (for 127.0.0.1).
    pub server: CertFiles,
    /// What every connection presents as a client.
    pub client: CertFiles,
}

/// A running topology: two data nodes (one primary, one replica) and three sentinels monitoring
/// them under [`TestSentinels::master_name`]; every process is killed on drop.
pub struct TestSentinels {
    /// The data nodes; which one is the primary changes with each failover.
    nodes: Vec<Node>,
    sentinels: Vec<Node>,
    /// TLS instead of plain ports.
    tls: Option<SentinelTls>,
}

impl TestSentinels {
    /// Starts the primary, the replica and the three sentinels, and returns once the topology is
    /// usable: the replica's link to the primary is up, and every sentinel names the primary, knows
    /// the replica as healthy (`SENTINEL FAILOVER` refuses without one) and knows the two other
    /// sentinels (a promotion after a kill needs the quorum of 2).
    pub async fn start() -> Self {
        Self::start_with(1, None).await
    }

    /// The same with `replicas` replicas (at least 1): with two, a failover leaves the new primary
    /// a replica at once (the sentinels point the other one at it), which `[redis]
    /// min_replica_acks = 1` needs to keep posting through a failover.
    pub async fn start_with_replicas(replicas: usize) -> Self {
        Self::start_with(replicas, None).await
    }

    /// The same topology speaking only TLS (mutual: a client certificate is required on every
    /// port), with `certs`' CA, server and client certificates.
    pub async fn start_tls(certs: &TestCerts) -> Self {
        Self::start_with(
            1,
            Some(SentinelTls {
                ca: certs.ca.clone(),
                server: certs.server.clone(),
                client: certs.client.clone(),
            }),
        )
        .await
    }

    async fn start_with(replicas: usize, tls: Option<SentinelTls>) -> Self {
        assert!(replicas >= 1, "a failover needs a replica");
        let mut t = Self {
            nodes: Vec::new(),
            sentinels: Vec::new(),
            tls,
        };
        for _ in 0..=replicas {
            t.nodes.push(Node {
                port: super::free_port(),
                dir: tempfile::tempdir().unwrap(),
                child: None,
            });
        }
        let primary = t.nodes[0].port;
        t.spawn_data(primary, None).await;
        for i in 1..=replicas {
            let replica = t.nodes[i].port;
            t.spawn_data(replica, Some(primary)).await;
        }
        for _ in 0..3 {
            let port = super::free_port();
            let dir = tempfile::tempdir().unwrap();
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                sentinel_conf(port, dir.path(), primary, t.tls.as_ref()),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server is installed (apt-get install redis-server)");
            t.sentinels.push(Node {
                port,
                dir,
                child: Some(child),
            });
        }
        t.wait_for(READY_WITHIN, "the topology to be ready", || {
            t.settled_all(primary)
        })
        .await;
        t
    }

    /// The name the sentinels monitor the primary under, for `[redis] sentinel_master`.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The sentinels' addresses (`127.0.0.1:port`), for `[redis] sentinels`.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// The ports of the two data nodes (primary and replica, in no particular order).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `redis://127.0.0.1:port` (`rediss://` with TLS): a data node's own address, for a test's
    /// direct look at it.
    pub fn url(&self, port: u16) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// Where the harness's own connections to `port` (a data node or a sentinel) go, with the TLS
    /// files they trust and present.
    pub fn at(&self, port: u16) -> Target {
        let mut t = Target::from(&self.url(port));
        if let Some(tls) = &self.tls {
            t.ca_file = Some(tls.ca.clone());
            t.client_cert_file = Some(tls.client.cert.clone());
            t.client_key_file = Some(tls.client.key.clone());
        }
        t
    }

    /// An async connection to data node `port` (primary or replica), for the caller's own commands.
    pub async fn conn(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        self.at(port)
            .client()
            .unwrap()
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
            .unwrap_or_else(|e| panic!("connect to data node {port}: {e}"))
    }

    /// Points a daemon's settings at the sentinels: `[redis] sentinels` and `sentinel_master`, and
    /// `url = "redis://127.0.0.1:1"` (`rediss://` and the TLS files with TLS), whose host and port
    /// the daemon replaces with the primary the sentinels name (nothing listens on port 1, so a
    /// daemon that ignored the sentinels fails at once instead of passing by luck).
    pub fn configure(&self, s: &mut tiktok_poster::config::Settings) {
        let t = self.target();
        s.redis.url = t.url;
        s.redis.ca_file = t.ca_file;
        s.redis.client_cert_file = t.client_cert_file;
        s.redis.client_key_file = t.client_key_file;
        s.redis.sentinels = self.sentinel_addrs();
        s.redis.sentinel_master = MASTER_NAME.into();
    }

    /// The same as a connection target that follows the primary (`db::connect(t.target())`), for a
    /// test's or benchmark's own reads and writes across failovers. Such a connection moves only
    /// when a command fails; one that must also move after `SENTINEL FAILOVER` (the old primary
    /// takes writes until the sentinels demote it, then drops them) runs `db::Redis::follow` too.
    pub fn target(&self) -> Target {
        Target {
            sentinel: Some(tiktok_poster::db::SentinelTarget {
                addrs: self.sentinel_addrs(),
                master: MASTER_NAME.into(),
                password: None,
            }),
            ..self.at(1)
        }
    }

    /// The current primary's port: the one every sentinel names and that answers `ROLE` as a
    /// master. Waits (up to 30 s) while they disagree or the one they name is down.
    pub async fn master_port(&self) -> u16 {
        self.wait_for(
            READY_WITHIN,
            "the sentinels to agree on a live primary",
            || self.agreed_master(),
        )
        .await
    }

    /// The data node that is not the primary.
    pub async fn replica_port(&self) -> u16 {
        let master = self.master_port().await;
        self.other(master)
    }

    /// Subscribes to `+switch-master` on every sentinel; take it BEFORE causing a failover, so the
    /// announcement cannot be missed. The earliest announcement of the three is the promotion
    /// instant: each sentinel publishes the switch when it learns of it, the leader first.
    pub async fn watch_switch(&self) -> SwitchWatch {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = tokio::task::JoinSet::new();
        for s in &self.sentinels {
            let client = self.at(s.port).client().unwrap();
            let mut pubsub = tokio::time::timeout(READY_WITHIN, client.get_async_pubsub())
                .await
                .unwrap_or_else(|_| panic!("sentinel {} did not take a subscriber", s.port))
                .unwrap_or_else(|e| panic!("subscribe to sentinel {}: {e}", s.port));
            pubsub
                .subscribe("+switch-master")
                .await
                .unwrap_or_else(|e| panic!("subscribe to sentinel {}: {e}", s.port));
            let tx = tx.clone();
            tasks.spawn(async move {
                let mut messages = pubsub.into_on_message();
                while let Some(m) = messages.next().await {
                    let at = chrono::Utc::now().timestamp_millis();
                    let text: String = m.get_payload().unwrap_or_default();
                    if tx.send((at, text)).is_err() {
                        return;
                    }
                }
            });
        }
        SwitchWatch { rx, _tasks: tasks }
    }

    /// `SENTINEL FAILOVER`: promotes the replica while both nodes are alive. Returns once the new
    /// primary answers `ROLE` as a master and every sentinel names it, and the old primary is a
    /// replica of it again with its link up (and known as such to every sentinel, so the next
    /// failover has a replica). The value is the promotion instant (epoch ms): when the first
    /// sentinel announced `+switch-master`.
    pub async fn failover(&self) -> i64 {
        let old = self.master_port().await;
        let mut watch = self.watch_switch().await;
        // NOGOODSLAVE only while a sentinel's view of the replica is stale; anything else is a bug.
        self.wait_for(READY_WITHIN, "SENTINEL FAILOVER to be accepted", || async {
            let mut cmd = redis::cmd("SENTINEL");
            cmd.arg("FAILOVER").arg(MASTER_NAME);
            match ask::<String>(&self.at(self.sentinels[0].port), &cmd).await {
                Ok(_) => Ok(()),
                Err(e) if e.contains("NOGOODSLAVE") => Err(e),
                Err(e) => panic!("SENTINEL FAILOVER was refused: {e}\n{}", self.dump().await),
            }
        })
        .await;
        let at = self.wait_promotion(&mut watch, old).await;
        let new = self.master_port().await;
        self.wait_for(
            SETTLED_WITHIN,
            "the old primary (and every other node) to be a replica of the new one",
            || self.settled_all(new),
        )
        .await;
        at
    }

    /// SIGKILLs the current primary's process and returns its port. Take [`Self::watch_switch`]
    /// first to learn when its replica is promoted.
    pub async fn kill_master(&mut self) -> u16 {
        let port = self.master_port().await;
        self.node_mut(port).kill();
        port
    }

    /// Waits until the sentinels announce a primary other than `old_port` on `watch`, the new one
    /// answers `ROLE` as a master and every sentinel names it; returns the promotion instant (epoch
    /// ms of the first `+switch-master`).
    pub async fn wait_promotion(&self, watch: &mut SwitchWatch, old_port: u16) -> i64 {
        let deadline = tokio::time::Instant::now() + SETTLED_WITHIN;
        let (at, new) = loop {
            let got = tokio::time::timeout_at(deadline, watch.rx.recv()).await;
            match got {
                Ok(Some((at, text))) => {
                    // `<name> <old ip> <old port> <new ip> <new port>`
                    let new = text
                        .split_whitespace()
                        .nth(4)
                        .and_then(|p| p.parse::<u16>().ok());
                    if let Some(new) = new.filter(|&p| p != old_port) {
                        break (at, new);
                    }
                }
                Ok(None) => panic!("the +switch-master subscriptions ended"),
                Err(_) => panic!(
                    "no +switch-master away from {old_port} within {SETTLED_WITHIN:?}\n{}",
                    self.dump().await
                ),
            }
        };
        self.wait_for(
            READY_WITHIN,
            "every sentinel to name the new primary",
            || async {
                match self.agreed_master().await? {
                    p if p == new => Ok(()),
                    p => Err(format!("the sentinels name {p}, the switch said {new}")),
                }
            },
        )
        .await;
        at
    }

    /// SIGKILLs the primary and waits for the promotion of the replica; the killed port and the
    /// promotion instant (epoch ms of the first `+switch-master`). The topology has no replica
    /// until [`Self::restart_as_replica`] of the killed port.
    pub async fn kill_master_and_wait_promotion(&mut self) -> (u16, i64) {
        let mut watch = self.watch_switch().await;
        let killed = self.kill_master().await;
        let at = self.wait_promotion(&mut watch, killed).await;
        (killed, at)
    }

    /// Starts the killed data node `port` again (same directory, so the same append-only file) as
    /// a replica of the current primary, and waits until its link is up and every sentinel knows
    /// it as a healthy replica again (so the next failover has one).
    pub async fn restart_as_replica(&mut self, port: u16) {
        assert!(
            self.node_mut(port).child.is_none(),
            "data node {port} is running; kill it first"
        );
        let master = self.master_port().await;
        assert_ne!(master, port, "data node {port} is the primary");
        self.spawn_data(port, Some(master)).await;
        self.wait_for(
            SETTLED_WITHIN,
            "the restarted node to be a replica the sentinels know",
            || self.settled_all(master),
        )
        .await;
    }

    /// SIGKILLs data node `port` (primary or replica), whatever the sentinels do next.
    pub fn kill_node(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Starts killed data node `port` again from its own data, as it was configured before: a
    /// primary (`replica_of` `None`) or a replica of `replica_of`. Returns once it answers PING.
    pub async fn restart_node(&mut self, port: u16, replica_of: Option<u16>) {
        assert!(
            self.node_mut(port).child.is_none(),
            "data node {port} is running; kill it first"
        );
        self.spawn_data(port, replica_of).await;
    }

    /// What every data node and sentinel reports now, with the end of each sentinel's log: the
    /// message of a wait that timed out.
    pub async fn dump(&self) -> String {
        let mut out = String::from("--- topology ---\n");
        for n in &self.nodes {
            let state = if n.child.is_none() {
                "killed".to_string()
            } else {
                match ask::<String>(&self.at(n.port), redis::cmd("INFO").arg("replication")).await {
                    Ok(info) => {
                        let f = info_fields(&info);
                        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
                        format!(
                            "role={} master_port={} master_link_status={} connected_slaves={}",
                            get("role"),
                            get("master_port"),
                            get("master_link_status"),
                            get("connected_slaves")
                        )
                    }
                    Err(e) => format!("no answer: {e}"),
                }
            };
            out.push_str(&format!("data node {}: {state}\n", n.port));
        }
        for s in &self.sentinels {
            out.push_str(&format!("sentinel {}:\n", s.port));
            let master = ask::<Vec<String>>(
                &self.at(s.port),
                redis::cmd("SENTINEL").arg("master").arg(MASTER_NAME),
            )
            .await
            .map(|v| {
                let f = pairs(v);
                [
                    "port",
                    "flags",
                    "num-slaves",
                    "num-other-sentinels",
                    "failover-state",
                    "config-epoch",
                ]
                .iter()
                .map(|k| format!("{k}={}", f.get(*k).map_or("", String::as_str)))
                .collect::<Vec<_>>()
                .join(" ")
            });
            out.push_str(&format!("  master: {}\n", master.unwrap_or_else(|e| e)));
            for (what, sub) in [("replicas", "replicas"), ("sentinels", "sentinels")] {
                let listed = ask::<Vec<Vec<String>>>(
                    &self.at(s.port),
                    redis::cmd("SENTINEL").arg(sub).arg(MASTER_NAME),
                )
                .await
                .map(|v| {
                    v.into_iter()
                        .map(|e| {
                            let f = pairs(e);
                            ["port", "flags", "master-port", "master-link-status"]
                                .iter()
                                .filter_map(|k| f.get(*k).map(|v| format!("{k}={v}")))
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                out.push_str(&format!("  {what}: {}\n", listed.unwrap_or_else(|e| e)));
            }
            out.push_str(&format!("  log:\n{}\n", s.log_tail("sentinel.log", 15)));
        }
        out
    }

    // --- internals ---

    /// Starts data node `port` (a replica of `replica_of` when given) in its directory and waits
    /// until it answers PING (a node still loading its append-only file answers `LOADING`).
    async fn spawn_data(&mut self, port: u16, replica_of: Option<u16>) {
        let tls = self.tls.clone();
        let node = self.node_mut(port);
        let mut cmd = Command::new("redis-server");
        match &tls {
            None => cmd.args(["--port", &port.to_string()]),
            Some(t) => cmd
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args(["--tls-replication", "yes", "--tls-auth-clients", "yes"])
                .arg("--tls-cert-file")
                .arg(&t.server.cert)
                .arg("--tls-key-file")
                .arg(&t.server.key)
                .arg("--tls-ca-cert-file")
                .arg(&t.ca)
                .arg("--tls-client-cert-file")
                .arg(&t.client.cert)
                .arg("--tls-client-key-file")
                .arg(&t.client.key),
        };
        cmd.args(["--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--maxmemory-policy", "noeviction"])
            .arg("--dir")
            .arg(node.dir.path())
            .args(["--logfile", "redis.log"]);
        if let Some(p) = replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &p.to_string()]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        node.child = Some(child);
        self.wait_for(READY_WITHIN, "a data node to answer PING", || async {
            ask::<String>(&self.at(port), &redis::cmd("PING"))
                .await
                .map(|_| ())
        })
        .await;
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        let ports = self.ports();
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("{port} is not a data node of this topology ({ports:?})"))
    }

    /// A running data node that is not `port` (with one replica: the other node).
    fn other(&self, port: u16) -> u16 {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .find(|&p| p != port)
            .expect("another running data node")
    }

    /// The port every sentinel names, if they agree and it answers `ROLE` as a master.
    async fn agreed_master(&self) -> Result<u16, String> {
        let mut named = Vec::new();
        for s in &self.sentinels {
            named.push(sentinel_names(&self.at(s.port)).await?);
        }
        if named.windows(2).any(|w| w[0] != w[1]) {
            return Err(format!("the sentinels disagree: {named:?}"));
        }
        let port = named[0];
        match role(&self.at(port)).await? {
            r if r == "master" => Ok(port),
            r => Err(format!("{port}, named by the sentinels, answers ROLE {r}")),
        }
    }

    /// `Ok` once `master` answers `ROLE` as a master, `replica` is its replica with the link up,
    /// and every sentinel names `master`, lists `replica` as a healthy replica of it, and knows the
    /// two other sentinels; otherwise what is missing.
    /// [`Self::settled`] for every running data node but `master`.
    async fn settled_all(&self, master: u16) -> Result<(), String> {
        let replicas: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| n.port != master && n.child.is_some())
            .map(|n| n.port)
            .collect();
        for r in replicas {
            self.settled(master, r).await?;
        }
        Ok(())
    }

    async fn settled(&self, master: u16, replica: u16) -> Result<(), String> {
        // First what no wait can mend: the sentinels moved on to another primary by themselves.
        if let Ok(other) = self.agreed_master().await
            && other != master
        {
            return Err(format!(
                "every sentinel names {other}, not {master}: a failover nobody asked for"
            ));
        }
        let r = role(&self.at(master)).await?;
        if r != "master" {
            return Err(format!("{master} answers ROLE {r}"));
        }
        let info = ask::<String>(&self.at(replica), redis::cmd("INFO").arg("replication")).await?;
        let f = info_fields(&info);
        let link = (
            f.get("role").map(String::as_str),
            f.get("master_port").map(String::as_str),
            f.get("master_link_status").map(String::as_str),
        );
        if link != (Some("slave"), Some(master.to_string().as_str()), Some("up")) {
            return Err(format!(
                "{replica} is not yet a connected replica of {master}: {link:?}"
            ));
        }
        for s in &self.sentinels {
            let named = sentinel_names(&self.at(s.port)).await?;
            if named != master {
                return Err(format!("sentinel {} names {named}", s.port));
            }
            let replicas = ask::<Vec<Vec<String>>>(
                &self.at(s.port),
                redis::cmd("SENTINEL").arg("replicas").arg(MASTER_NAME),
            )
            .await?;
            let good = replicas.into_iter().map(pairs).any(|r| {
                r.get("port") == Some(&replica.to_string())
                    && r.get("flags").map(String::as_str) == Some("slave")
                    && r.get("master-port") == Some(&master.to_string())
                    && r.get("master-link-status").map(String::as_str) == Some("ok")
            });
            if !good {
                return Err(format!(
                    "sentinel {} does not list {replica} as a healthy replica yet",
                    s.port
                ));
            }
            let others = ask::<Vec<Vec<String>>>(
                &self.at(s.port),
                redis::cmd("SENTINEL").arg("sentinels").arg(MASTER_NAME),
            )
            .await?;
            let live = others
                .into_iter()
                .map(pairs)
                .filter(|o| o.get("flags").map(String::as_str) == Some("sentinel"))
                .count();
            if live < 2 {
                return Err(format!(
                    "sentinel {} knows {live} other live sentinels, not 2",
                    s.port
                ));
            }
        }
        Ok(())
    }

    /// Polls `check` every 50 ms until it is `Ok`; after `within`, panics with its last error and
    /// [`Self::dump`].
    async fn wait_for<T, F, Fut>(&self, within: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match check().await {
                Ok(v) => return v,
                Err(why) if tokio::time::Instant::now() >= deadline => panic!(
                    "timed out after {within:?} waiting for {what}: {why}\n{}",
                    self.dump().await
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

impl Drop for TestSentinels {
    fn drop(&mut self) {
        for n in self.sentinels.iter_mut().chain(self.nodes.iter_mut()) {
            n.kill();
        }
    }
}

/// The `+switch-master` announcements of every sentinel, from [`TestSentinels::watch_switch`]:
/// (epoch ms received, the message's text). Unsubscribes when dropped.
pub struct SwitchWatch {
    rx: tokio::sync::mpsc::UnboundedReceiver<(i64, String)>,
    /// One forwarding task per sentinel; aborted on drop.
    _tasks: tokio::task::JoinSet<()>,
}

/// One command to `at` on a connection of its own, within [`ASK_TIMEOUT`]; the error as text
/// naming the address.
async fn ask<T: FromRedisValue>(at: &Target, cmd: &redis::Cmd) -> Result<T, String> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(ASK_TIMEOUT))
        .set_response_timeout(Some(ASK_TIMEOUT));
    let client = at.client().map_err(|e| format!("{}: {e}", at.url))?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .map_err(|e| format!("{}: {e}", at.url))?;
    cmd.query_async(&mut conn)
        .await
        .map_err(|e| format!("{}: {e}", at.url))
}

/// The primary's port the sentinel at `at` names.
async fn sentinel_names(at: &Target) -> Result<u16, String> {
    let named = ask::<Option<(String, u16)>>(
        at,
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(MASTER_NAME),
    )
    .await?;
    named
        .map(|(_, p)| p)
        .ok_or_else(|| format!("sentinel {} monitors no {MASTER_NAME}", at.url))
}

/// The first word of `ROLE` (`master`, `slave`) of the data node at `at`.
async fn role(at: &Target) -> Result<String, String> {
    let v = ask::<Vec<redis::Value>>(at, &redis::cmd("ROLE")).await?;
    v.first()
        .and_then(|r| String::from_redis_value(r.clone()).ok())
        .ok_or_else(|| format!("{}: ROLE answered {v:?}", at.url))
}

/// A flat `[key, value, key, value, …]` reply (`SENTINEL master`, an entry of `SENTINEL replicas`)
/// as a map.
fn pairs(flat: Vec<String>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.insert(k, v);
    }
    out
}

/// The `key:value` lines of an `INFO` reply.
fn info_fields(info: &str) -> HashMap<String, String> {
    info.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
