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
