//! Redis behind Sentinel: one primary, one replica and three sentinels of the test's own
//! (`support::TestSentinels`), failed over with `SENTINEL FAILOVER` and with a SIGKILL of the primary.
//!
//! The first test checks the topology itself, without a daemon, so that a daemon test that fails
//! here points at the daemon and not at the harness. Daemon tests follow it; their shared helpers
//! belong in `tests/support/sentinel.rs`.

use std::time::Duration;

use redis::AsyncCommands;

use crate::support::{TestCerts, TestSentinels, wait_until};

const T: Duration = Duration::from_secs(30);

/// `GET key` on data node `port`, `None` when absent or the node does not answer.
async fn get(t: &TestSentinels, port: u16, key: &str) -> Option<String> {
    let mut c = t.conn(port).await;
    c.get::<_, Option<String>>(key).await.ok().flatten()
}

/// Waits until data node `port` holds `key` = `value` (a replica gets it asynchronously).
async fn wait_value(t: &TestSentinels, port: u16, key: &str, value: &str) {
    wait_until(T, &format!("{key}={value} on data node {port}"), || async {
        (get(t, port, key).await.as_deref() == Some(value)).then_some(())
    })
    .await;
}

/// The first word of `ROLE` on data node `port`.
async fn role(t: &TestSentinels, port: u16) -> String {
    let mut c = t.conn(port).await;
    let v: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut c).await.unwrap();
    redis::from_redis_value(v[0].clone()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The topology alone (no daemon).
// ---------------------------------------------------------------------------------------------

/// The harness's topology behaves as a deployment's: a write on the primary reaches the replica,
/// which refuses writes; `SENTINEL FAILOVER` swaps the two and the old primary keeps the data as a
/// replica; a SIGKILLed primary is replaced by its replica; the killed node comes back as a replica
/// with every write; and a second `SENTINEL FAILOVER` works after all that. A connection from
/// `target()` reaches the primary the sentinels name.
#[tokio::test]
async fn the_sentinel_topology_fails_over_both_ways_and_keeps_the_data() {
    // Arrange: the topology, and a write on its primary.
    let mut t = TestSentinels::start().await;
    let first = t.master_port().await;
    let replica = t.replica_port().await;
    let mut ports = t.ports();
    ports.sort();
    let mut expected = vec![first, replica];
    expected.sort();
    assert_eq!(ports, expected, "two distinct data nodes");
    assert_eq!(t.sentinel_addrs().len(), 3);
    assert_eq!(role(&t, first).await, "master");
    assert_eq!(role(&t, replica).await, "slave");
    let mut c = t.conn(first).await;
    let _: () = c.set("k1", "v1").await.unwrap();
    wait_value(&t, replica, "k1", "v1").await;
    let refused: redis::RedisResult<()> = t.conn(replica).await.set("k0", "x").await;
    let refused = refused.expect_err("a replica refuses writes");
    assert_eq!(refused.code(), Some("READONLY"), "{refused}");
    // The target the daemon's settings describe reaches the primary through the sentinels.
    let mut through = tiktok_poster::db::connect(t.target()).await.unwrap();
    let _: () = through.set("via-target", "yes").await.unwrap();
    assert_eq!(get(&t, first, "via-target").await.as_deref(), Some("yes"));

    // Act 1: SENTINEL FAILOVER.
    let before = chrono::Utc::now().timestamp_millis();
    let promoted = t.failover().await;
    // Assert: the replica is the primary, the old primary a replica holding the data.
    assert!(
        promoted >= before,
        "the promotion instant is this failover's, not an older one"
    );
    let second = t.master_port().await;
    assert_eq!(second, replica, "the replica was promoted");
    assert_eq!(role(&t, second).await, "master");
    assert_eq!(
        role(&t, first).await,
        "slave",
        "the old primary was demoted"
    );
    assert_eq!(get(&t, first, "k1").await.as_deref(), Some("v1"));
    let mut c = t.conn(second).await;
    let _: () = c.set("k2", "v2").await.unwrap();
    wait_value(&t, first, "k2", "v2").await;

    // Act 2: SIGKILL of the primary.
    let (killed, promoted2) = t.kill_master_and_wait_promotion().await;
    // Assert: the other node is the primary again, with both keys.
    assert_eq!(killed, second);
    assert!(promoted2 > promoted, "a new promotion instant");
    let third = t.master_port().await;
    assert_eq!(third, first, "the surviving replica was promoted");
    assert_eq!(role(&t, third).await, "master");
    assert_eq!(get(&t, third, "k1").await.as_deref(), Some("v1"));
    assert_eq!(get(&t, third, "k2").await.as_deref(), Some("v2"));
    let mut c = t.conn(third).await;
    let _: () = c.set("k3", "v3").await.unwrap();

    // Act 3: the killed node comes back as a replica.
    t.restart_as_replica(killed).await;
    // Assert: it is a replica of the new primary with every write, old and new.
    assert_eq!(role(&t, killed).await, "slave");
    assert_eq!(t.replica_port().await, killed);
    wait_value(&t, killed, "k3", "v3").await;
    assert_eq!(get(&t, killed, "k1").await.as_deref(), Some("v1"));
    assert_eq!(get(&t, killed, "k2").await.as_deref(), Some("v2"));

    // Act 4: a second SENTINEL FAILOVER, onto the restarted node.
    let promoted3 = t.failover().await;
    // Assert: it is the primary, with everything, and the other node its replica.
    assert!(promoted3 > promoted2);
    assert_eq!(t.master_port().await, killed);
    assert_eq!(role(&t, third).await, "slave");
    for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
        assert_eq!(get(&t, killed, k).await.as_deref(), Some(v), "{k}");
    }
    let mut c = t.conn(killed).await;
    let _: () = c.set("k4", "v4").await.unwrap();
    wait_value(&t, third, "k4", "v4").await;
}

// ---------------------------------------------------------------------------------------------
// Daemons on the topology.
// ---------------------------------------------------------------------------------------------

/// Accounts the posts are spread over (TikTok allows 6 inits a minute per account).
const ACCOUNTS: usize = 6;
/// How soon after a promotion the daemons must publish again and answer `/healthz` 200.
const BACK_WITHIN_MS: i64 = 10_000;

/// What the submitter saw: posts whose `XADD` at least one replica acknowledged (`WAIT 1`), and
/// posts whose acknowledgement never came (they may or may not exist after a failover).
#[derive(Default)]
struct Submitted {
    accepted: Vec<(String, String)>,
    unsure: Vec<String>,
}

/// Submits a post every 2.5 s, round robin over the accounts (each gets one every 15 s, within
/// TikTok's 6 inits a minute, so no backlog hides a stall), until `stop`: `XADD` on a connection
/// that follows the primary, then `WAIT` for every connected replica and the sentinels'
/// confirmation, as a careful producer does across failovers.
async fn submit_steadily(
    app: std::sync::Arc<crate::app::TestApp>,
    stop: tokio_util::sync::CancellationToken,
) -> Submitted {
    let mut conn = tiktok_poster::db::connect(app.settings.redis_target())
        .await
        .unwrap();
    let mut out = Submitted::default();
    let mut n = 0;
    while !stop.is_cancelled() {
        n += 1;
        let (video, sha) = app.video(&format!("steady{n}.mp4"), 300_000);
        let account = format!("a{}", n % ACCOUNTS);
        let generation = conn.redis().generation();
        let added: redis::RedisResult<String> = conn
            .xadd(
                app.keys().submit(),
                "*",
                &[
                    ("account", account.as_str()),
                    ("video", video.to_str().unwrap()),
                    ("privacy_level", "SELF_ONLY"),
                ],
            )
            .await;
        match added {
            Ok(id) => {
                // Every connected replica, as the daemon waits: the sentinels may promote any.
                let acked = tiktok_poster::db::replicas::wait_connected(&mut conn, 1, 2000).await;
                // And the sentinels still name the primary it went to.
                let confirmed = conn.redis().confirm_primary(generation).await.is_ok();
                if matches!(acked, Ok((k, need)) if k >= need) && confirmed {
                    out.accepted.push((id, sha));
                } else {
                    out.unsure.push(sha);
                }
            }
            Err(_) => out.unsure.push(sha),
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
    out
}

/// Polls both daemons' `/healthz` every 200 ms until `stop`: (epoch ms, both answered 200).
async fn watch_health(
    bases: Vec<String>,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<(i64, bool)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut seen = Vec::new();
    while !stop.is_cancelled() {
        let mut all = true;
        for b in &bases {
            let ok = http
                .get(format!("{b}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            all &= ok;
        }
        seen.push((chrono::Utc::now().timestamp_millis(), all));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

/// The earliest `published_ms` after `after` among all posts, waiting (up to 60 s) for one.
async fn first_published_after(app: &crate::app::TestApp, after: i64) -> i64 {
    wait_until(
        Duration::from_secs(60),
        "a post published after the promotion",
        || async {
            let mut first: Option<i64> = None;
            for id in &all_post_ids(app).await {
                let p = app.post(id).await;
                if let Some(ms) = p.get("published_ms").and_then(|v| v.parse::<i64>().ok())
                    && ms > after
                {
                    first = Some(first.map_or(ms, |f: i64| f.min(ms)));
                }
            }
            first
        },
    )
    .await
}

/// Every post recorded so far (the namespace's index), read through a connection that follows the
/// primary.
async fn all_post_ids(app: &crate::app::TestApp) -> Vec<String> {
    let mut conn = tiktok_poster::db::connect(app.settings.redis_target())
        .await
        .unwrap();
    conn.zrange(app.keys().posts(), 0, -1).await.unwrap()
}

/// Posts flow through two daemons on Sentinel with `min_replica_acks = 1` while the primary is
/// switched with `SENTINEL FAILOVER`, then SIGKILLed (a replica promoted, the killed node back as a
/// replica): every accepted post is published exactly once at the simulator, none is lost, none
/// ends failed or unconfirmed, and after each promotion a post is published and both daemons
/// answer `/healthz` 200 within 10 s.
///
/// Two replicas: `min_replica_acks = 1` (without which a switch can double a post: the old primary
/// takes writes until the daemons move, and loses them) needs the new primary to have a replica at
/// once. With one, a `SENTINEL FAILOVER` leaves none until the sentinels turn the old primary into
/// a replica, 8 to 18 s later, and posts wait that long (measured by `benches/failover`).
#[tokio::test]
async fn posts_survive_a_switch_and_a_killed_primary_exactly_once() {
    if std::env::var_os("TP_TEST_LOG").is_some() {
        // The daemons' own log, to see a failover as an operator would.
        tiktok_poster::telemetry::init(tiktok_poster::config::LogFormat::Text, "info");
    }
    let mut t = TestSentinels::start_with_replicas(2).await;
    let app = crate::app::TestApp::spawn_on_sentinels(&t, |s| {
        s.redis.min_replica_acks = 1;
        s.redis.replica_ack_timeout_ms = 500;
        s.worker.daily_post_budget = 100;
    })
    .await;
    for i in 0..ACCOUNTS {
        app.connect(&format!("a{i}"), false).await;
    }
    let (sibling_stop, sibling, sibling_base) = app.spawn_sibling_at("daemon-b").await;
    let app = std::sync::Arc::new(app);
    let stop = tokio_util::sync::CancellationToken::new();
    let submitter = tokio::spawn(submit_steadily(app.clone(), stop.clone()));
    let health = tokio::spawn(watch_health(
        vec![app.base.clone(), sibling_base],
        stop.clone(),
    ));
    // Posts flow before anything fails.
    tokio::time::sleep(Duration::from_secs(8)).await;

    // A switch with both nodes alive.
    let promoted1 = t.failover().await;
    let back1 = first_published_after(&app, promoted1).await;
    eprintln!(
        "SENTINEL FAILOVER: promoted at {promoted1}; first post published {} ms after it",
        back1 - promoted1
    );

    // The primary killed; its replica promoted, then the killed node back as a replica.
    let (killed, promoted2) = t.kill_master_and_wait_promotion().await;
    let back2 = first_published_after(&app, promoted2).await;
    t.restart_as_replica(killed).await;
    eprintln!(
        "SIGKILL: promoted at {promoted2}; first post published {} ms after it",
        back2 - promoted2
    );

    stop.cancel();
    let submitted = submitter.await.unwrap();
    let seen = health.await.unwrap();
    assert!(
        submitted.accepted.len() >= 10,
        "posts kept flowing: {} accepted, {} unsure",
        submitted.accepted.len(),
        submitted.unsure.len()
    );

    // Every accepted post is published, exactly once; none failed or unconfirmed.
    for (id, sha) in &submitted.accepted {
        let p = app.post(id).await;
        if p.is_empty() {
            let mut c = tiktok_poster::db::connect(app.settings.redis_target())
                .await
                .unwrap();
            let entry: redis::Value = redis::cmd("XRANGE")
                .arg(app.keys().submit())
                .arg(id)
                .arg(id)
                .query_async(&mut c)
                .await
                .unwrap();
            let pending: redis::Value = redis::cmd("XPENDING")
                .arg(app.keys().submit())
                .arg("ingest")
                .arg("-")
                .arg("+")
                .arg(10)
                .query_async(&mut c)
                .await
                .unwrap_or(redis::Value::Nil);
            eprintln!("post {id} has no hash yet; its entry: {entry:?}; pending: {pending:?}");
        }
        let p = app
            .wait_state(
                id,
                &["published", "failed", "unconfirmed"],
                Duration::from_secs(120),
            )
            .await;
        assert_eq!(p["state"], "published", "post {id}: {p:?}");
        assert_eq!(
            app.sim_posts_with(sha).await.len(),
            1,
            "post {id} exactly once"
        );
    }
    // A submission whose acknowledgement never came is published at most once.
    for sha in &submitted.unsure {
        assert!(
            app.sim_posts_with(sha).await.len() <= 1,
            "{sha} at most once"
        );
    }
    for (name, promoted, back) in [
        ("SENTINEL FAILOVER", promoted1, back1),
        ("SIGKILL", promoted2, back2),
    ] {
        assert!(
            back - promoted <= BACK_WITHIN_MS,
            "{name}: the first post after the promotion was published {} ms after it",
            back - promoted
        );
        let healthy = seen
            .iter()
            .find(|(at, ok)| *at > promoted && *ok)
            .map(|(at, _)| at - promoted);
        assert!(
            healthy.is_some_and(|ms| ms <= BACK_WITHIN_MS),
            "{name}: /healthz answered 200 again {healthy:?} ms after the promotion"
        );
    }
    sibling_stop.cancel();
    let _ = sibling.await;
}

/// With every data node down, the sentinels still name the dead primary: the daemon says in
/// `/healthz` (503) that no primary is known and why, keeps waiting within `give_up_after_secs`,
/// and works again, without a restart, once the primary is back.
#[tokio::test]
async fn healthz_says_no_primary_is_known_until_one_is_back() {
    let mut t = TestSentinels::start().await;
    let app =
        crate::app::TestApp::spawn_on_sentinels(&t, |s| s.redis.give_up_after_secs = 600).await;
    app.connect("main", false).await;
    let (id, sha) = app.submit("main", "before.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    let primary = t.master_port().await;
    let replica = t.replica_port().await;
    let (_, h) = app.healthz().await;
    assert_eq!(
        h["redis_primary"]["address"],
        format!("127.0.0.1:{primary}"),
        "{h}"
    );

    // The replica first, so there is nothing to promote; then the primary.
    t.kill_node(replica);
    t.kill_node(primary);
    let h = wait_until(T, "/healthz to say no primary is known", || async {
        let (code, h) = app.healthz().await;
        (code == 503 && h["redis_primary"]["known"] == false).then_some(h)
    })
    .await;
    let why = h["redis_primary"]["problem"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("names 127.0.0.1:{primary}, which cannot be used")),
        "the reason names the sentinels' answer: {h}"
    );
    assert!(h["problem"].as_str().is_some_and(|p| !p.is_empty()), "{h}");

    t.restart_node(primary, None).await;
    t.restart_node(replica, Some(primary)).await;
    wait_until(T, "/healthz to find the primary again", || async {
        let (code, h) = app.healthz().await;
        (code == 200 && h["redis_primary"]["known"] == true).then_some(())
    })
    .await;
    let (id, sha2) = app.submit("main", "after.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
    assert_eq!(app.sim_posts_with(&sha2).await.len(), 1);
}

/// The same topology over mutual TLS only (every node and sentinel requires a client certificate,
/// replication and the sentinels' links present one): a plain connection to a sentinel is refused,
/// a write reaches the replica, a connection from `target()` reaches the primary, and
/// `SENTINEL FAILOVER` swaps the two with the data kept. `configure` gives a daemon `rediss://`
/// and the TLS files.
#[tokio::test]
async fn the_sentinel_topology_works_over_mutual_tls() {
    // Arrange
    let certs = TestCerts::generate();
    let t = TestSentinels::start_tls(&certs).await;
    let first = t.master_port().await;
    let replica = t.replica_port().await;
    assert!(t.url(first).starts_with("rediss://127.0.0.1:"));
    let plain = redis::Client::open(format!("redis://{}", t.sentinel_addrs()[0]))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(plain.is_err(), "a sentinel has no plain port");
    let mut c = t.conn(first).await;
    let _: () = c.set("k1", "v1").await.unwrap();
    wait_value(&t, replica, "k1", "v1").await;
    let mut through = tiktok_poster::db::connect(t.target()).await.unwrap();
    let _: () = through.set("via-target", "yes").await.unwrap();
    assert_eq!(get(&t, first, "via-target").await.as_deref(), Some("yes"));

    // Act
    t.failover().await;

    // Assert
    assert_eq!(t.master_port().await, replica, "the replica was promoted");
    assert_eq!(role(&t, first).await, "slave");
    assert_eq!(get(&t, replica, "k1").await.as_deref(), Some("v1"));
    assert_eq!(get(&t, replica, "via-target").await.as_deref(), Some("yes"));
    let mut s = tiktok_poster::config::Settings::default();
    t.configure(&mut s);
    assert!(s.redis.url.starts_with("rediss://"), "{}", s.redis.url);
    assert_eq!(s.redis.ca_file.as_ref(), Some(&certs.ca));
    assert_eq!(s.redis.client_cert_file.as_ref(), Some(&certs.client.cert));
    assert_eq!(s.redis.sentinels, t.sentinel_addrs());
}

/// A daemon finds the primary through sentinels that speak only mutual TLS, with the same `[redis]`
/// TLS files for the sentinels and the primary, and keeps posting after a `SENTINEL FAILOVER`.
#[tokio::test]
async fn a_daemon_posts_through_sentinels_over_mutual_tls() {
    let certs = TestCerts::generate();
    let t = TestSentinels::start_tls(&certs).await;
    let app = crate::app::TestApp::spawn_on_sentinels(&t, |s| {
        assert!(s.redis.url.starts_with("rediss://"), "{}", s.redis.url);
    })
    .await;
    app.connect("main", false).await;
    let (id, sha) = app.submit("main", "tls-before.mp4", 300_000).await;
    app.wait_state(&id, &["published"], T).await;
    let before = t.master_port().await;
    t.failover().await;
    assert_ne!(t.master_port().await, before);
    let (id2, sha2) = app.submit("main", "tls-after.mp4", 300_000).await;
    app.wait_state(&id2, &["published"], T).await;
    let (_, h) = app.healthz().await;
    assert_eq!(
        h["redis_primary"]["address"],
        format!("127.0.0.1:{}", t.master_port().await),
        "{h}"
    );
    assert_eq!(app.sim_posts_with(&sha).await.len(), 1);
    assert_eq!(app.sim_posts_with(&sha2).await.len(), 1);
}
