//! Cluster-ready keys: with the namespace in braces (`{tiktok-poster}`) every key the daemon creates
//! hashes to one slot, and every script it runs declares at least one key (so a Cluster routes it to
//! that slot's node). Shown on a standalone `redis-server` and on a one-node Redis Cluster (all 16384
//! slots on one node), where a multi-key command or script across slots fails with `CROSSSLOT`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::app::{TestApp, path_str};
use crate::calendar::cli_ok;
use crate::support::{Proc, TestRedis, wait_until};

const T: Duration = Duration::from_secs(30);
const NS: &str = "{tiktok-poster}";

/// `redis-cli MONITOR` into a file from now on: every command the server runs.
fn monitor(redis: &TestRedis, dir: &std::path::Path) -> (Proc, std::path::PathBuf) {
    let path = dir.join("monitor.log");
    let out = std::fs::File::create(&path).unwrap();
    let child = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli is installed (apt-get install redis-tools)");
    (Proc(child), path)
}

/// The quoted arguments of one MONITOR line (`ts [db addr] "CMD" "arg" …`), unescaped enough to
/// read key names.
fn args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        s.push(n);
                    }
                }
                '"' => break,
                c => s.push(c),
            }
        }
        out.push(s);
    }
    out
}

/// A realistic run: an account connected, a post published and its webhook, a rejected submission,
/// a calendar with a `slot` = `next` post, a cancel.
async fn flow(app: &TestApp) {
    app.connect("main", false).await;
    let (id, _) = app.submit("main", "one.mp4", 300_000).await;
    let post = app.wait_state(&id, &["published"], T).await;
    let url = format!("{}/webhooks/tiktok", app.base);
    let (code, body) = crate::webhooks::deliver(
        &url,
        "post.publish.complete",
        &post["publish_id"],
        serde_json::json!({}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    app.xadd(&[("account", "main"), ("privacy_level", "SELF_ONLY")])
        .await;
    wait_until(T, "the rejection", || async {
        (!app.rejected().await.is_empty()).then_some(())
    })
    .await;
    let cfg = app.cli_config("cli", &[], "");
    cli_ok(
        &cfg,
        &[
            "calendar",
            "set",
            "main",
            "--tz",
            "UTC",
            "--slot",
            "0 9 * * *",
        ],
    )
    .await;
    let (video, _) = app.video("slot.mp4", 300_000);
    let slotted = app
        .xadd(&[
            ("account", "main"),
            ("video", path_str(&video)),
            ("privacy_level", "SELF_ONLY"),
            ("slot", "next"),
        ])
        .await;
    app.wait_state(&slotted, &["scheduled"], T).await;
    let (queued, _) = app.submit("main", "later.mp4", 300_000).await;
    app.wait_state(&queued, &["published"], T).await;
    cli_ok(&cfg, &["cancel", &slotted]).await;
    app.wait_state(&slotted, &["cancelled"], T).await;
}

/// Redis Cluster's hash slot of `key`: CRC16 (XMODEM) of its hash tag (the part in the first
/// `{…}`, when not empty) or of the whole key, modulo 16384. For a standalone server, which has no
/// `CLUSTER KEYSLOT` before Redis 7.2 (checked against the server's own in the Cluster test).
fn slot_of(key: &str) -> i64 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let close = b[open + 1..].iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &b[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(b) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    i64::from(crc % 16384)
}

/// Every key in the app's Redis, with its slot: `CLUSTER KEYSLOT` where the server has it (and then
/// [`slot_of`] must agree), else [`slot_of`].
async fn key_slots(app: &TestApp) -> BTreeMap<String, i64> {
    let mut conn = app.redis.conn().await;
    let mut keys = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = BTreeMap::new();
    for k in keys {
        let server: redis::RedisResult<i64> = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&k)
            .query_async(&mut conn)
            .await;
        let slot = match server {
            Ok(slot) => {
                assert_eq!(slot, slot_of(&k), "the local slot of {k} is the server's");
                slot
            }
            Err(e) if e.to_string().contains("cluster support disabled") => slot_of(&k),
            Err(e) => panic!("CLUSTER KEYSLOT {k}: {e}"),
        };
        out.insert(k, slot);
    }
    out
}

/// The run's keys are all under the namespace and in one slot; every script declared a key of it.
async fn check(app: &TestApp, log: &std::path::Path) {
    let slots = key_slots(app).await;
    for want in [
        "submit",
        "rejected",
        "events",
        "posts",
        "accounts",
        "account:main",
        "calendar:main",
        "held:main",
        "account_posts:main",
        "instance",
        "state_counts",
    ] {
        let key = format!("{NS}:{want}");
        assert!(slots.contains_key(&key), "{key} exists: {slots:#?}");
    }
    assert!(
        slots
            .keys()
            .any(|k| k.starts_with(&format!("{NS}:webhook:"))),
        "the webhook was recorded: {slots:#?}"
    );
    let stray: Vec<&String> = slots
        .keys()
        .filter(|k| !k.starts_with(&format!("{NS}:")))
        .collect();
    assert!(stray.is_empty(), "keys outside the namespace: {stray:?}");
    let distinct: BTreeSet<i64> = slots.values().copied().collect();
    assert_eq!(distinct.len(), 1, "every key in one hash slot: {slots:#?}");

    let text = std::fs::read_to_string(log).unwrap();
    let mut scripts = 0;
    for line in text.lines() {
        let a = args(line);
        let Some(cmd) = a.first().map(|c| c.to_ascii_uppercase()) else {
            continue;
        };
        if !["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"].contains(&cmd.as_str()) {
            continue;
        }
        scripts += 1;
        let n: usize = a.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(n >= 1, "a script declares at least one key: {line}");
        for key in a.iter().skip(3).take(n) {
            assert!(
                key.starts_with(&format!("{NS}:")),
                "a declared key under the namespace: {key} in {line}"
            );
        }
    }
    assert!(scripts > 20, "the run ran scripts ({scripts} seen)");
}

/// The slot function on Redis's own examples (the CRC16 check value, hash tags).
#[test]
fn slots_are_computed_as_redis_does() {
    assert_eq!(slot_of("123456789"), 0x31C3, "CRC16/XMODEM's check value");
    assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    assert_eq!(slot_of("foo{bar}{zap}"), slot_of("bar"));
    assert_ne!(
        slot_of("foo{}{bar}"),
        slot_of("bar"),
        "an empty tag hashes the whole key"
    );
    assert_eq!(slot_of("{tiktok-poster}:submit"), slot_of("tiktok-poster"));
}

/// On a standalone server: the keys and scripts of a realistic run.
#[tokio::test]
async fn with_the_namespace_in_braces_every_key_is_in_one_slot() {
    let redis = TestRedis::start(true);
    let dir = tempfile::tempdir().unwrap();
    let (_monitor, log) = monitor(&redis, dir.path());
    let app = TestApp::spawn_on(redis, |_| {}, |s| s.redis.namespace = NS.into()).await;
    flow(&app).await;
    check(&app, &log).await;
}

/// On a Cluster-mode endpoint (one node holding every slot) the same run works: Redis Cluster
/// refuses a command or script whose keys are in different slots, and none is.
#[tokio::test]
async fn the_daemon_runs_on_a_cluster_mode_endpoint() {
    let redis = TestRedis::start_with(
        true,
        [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ]
        .map(String::from)
        .to_vec(),
        "",
    );
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(0)
        .arg(16383)
        .query_async(&mut conn)
        .await
        .unwrap();
    wait_until(T, "the cluster to be ok", || {
        let mut conn = conn.clone();
        async move {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut conn)
                .await
                .unwrap();
            info.contains("cluster_state:ok").then_some(())
        }
    })
    .await;
    // The control: keys of two slots in one command are refused here.
    let cross: redis::RedisResult<()> = redis::cmd("MSET")
        .arg("a")
        .arg(1)
        .arg("b")
        .arg(2)
        .query_async(&mut conn)
        .await;
    assert!(
        cross
            .as_ref()
            .is_err_and(|e| format!("{e:?}").contains("CrossSlot")),
        "{cross:?}"
    );
    // A namespace without a hash tag is refused there, with the fix.
    let msg = crate::redis_tls::refusal(&redis, |_| {}).await;
    assert!(
        msg.contains(
            "Redis is a Cluster endpoint and [redis] namespace \"tiktok-poster\" has no hash tag"
        ) && msg.contains("namespace = \"{tiktok-poster}\""),
        "{msg}"
    );
    // A namespace without a hash tag is refused there, with the fix.
    let msg = crate::redis_tls::refusal(&redis, |_| {}).await;
    assert!(
        msg.contains(
            "Redis is a Cluster endpoint and [redis] namespace \"tiktok-poster\" has no hash tag"
        ) && msg.contains("namespace = \"{tiktok-poster}\""),
        "{msg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let (_monitor, log) = monitor(&redis, dir.path());
    let app = TestApp::spawn_on(redis, |_| {}, |s| s.redis.namespace = NS.into()).await;
    flow(&app).await;
    check(&app, &log).await;
}
