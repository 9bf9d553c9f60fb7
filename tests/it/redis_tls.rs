//! Redis over TLS (`rediss://`): a private CA and mutual TLS end to end against a real
//! `redis-server --tls-port` with certificates made at test time, and the connections the daemon
//! must refuse (a certificate of another CA, one for another host name, no client certificate where
//! the server wants one), each with a message that names the problem and the setting that fixes it.

use std::time::Duration;

use tiktok_poster::config::Settings;
use tokio_util::sync::CancellationToken;

use crate::app::{TestApp, path_str, run_cli};
use crate::support::{CertFiles, ServerTls, TestCerts, TestRedis, free_port};

const T: Duration = Duration::from_secs(30);

fn server(certs: &TestCerts, cert: &CertFiles, auth_clients: bool, trusted: bool) -> TestRedis {
    let client = trusted.then(|| (certs.ca.clone(), Some(certs.client.clone())));
    TestRedis::start_tls(ServerTls {
        cert: cert.clone(),
        ca: certs.ca.clone(),
        auth_clients,
        client,
    })
}

/// Runs the daemon against `redis` with `tweak`ed settings and returns the error it stops with
/// (it must stop on its own: a refused certificate is not an outage to wait out).
pub(crate) async fn refusal(redis: &TestRedis, tweak: impl FnOnce(&mut Settings)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    tiktok_poster::accounts::TokenKey::generate_file(&key).unwrap();
    let mut s = Settings::default();
    s.redis.url = redis.url();
    s.tokens.encryption_key_file = key;
    s.http.listen = format!("127.0.0.1:{}", free_port());
    tweak(&mut s);
    s.validate().unwrap();
    let run = tiktok_poster::daemon::run(s, CancellationToken::new());
    let err = tokio::time::timeout(T, run)
        .await
        .expect("the daemon stops on its own instead of waiting for Redis")
        .expect_err("the daemon refuses the connection");
    assert!(
        err.downcast_ref::<tiktok_poster::config::ConfigError>()
            .is_some(),
        "a configuration error (exit 78), not an outage: {err:#}"
    );
    format!("{err:#}")
}

/// A daemon with `rediss://`, a private CA and a client certificate (the server requires one)
/// publishes a post end to end, and the CLI reaches the same server with the same settings.
#[tokio::test]
async fn a_post_is_published_over_mutual_tls_with_a_private_ca() {
    let certs = TestCerts::generate();
    let redis = server(&certs, &certs.server, true, true);
    // The server has no plain port: nothing reaches it without TLS.
    let plain = format!("redis://127.0.0.1:{}", redis.port);
    let no_tls = redis::Client::open(plain.as_str())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(no_tls.is_err(), "a plain connection is refused");

    let app = TestApp::spawn_on(redis, |_| {}, |_| {}).await;
    assert!(app.settings.redis.url.starts_with("rediss://127.0.0.1:"));
    assert_eq!(app.settings.redis.ca_file.as_ref(), Some(&certs.ca));
    assert_eq!(
        app.settings.redis.client_cert_file.as_ref(),
        Some(&certs.client.cert)
    );
    app.connect("main", false).await;
    let (video, sha) = app.video("tls.mp4", 600_000);
    let id = app
        .xadd(&[
            ("account", "main"),
            ("video", path_str(&video)),
            ("title", "over tls"),
            ("privacy_level", "SELF_ONLY"),
        ])
        .await;
    let post = app.wait_state(&id, &["published"], T).await;
    assert!(post["publish_id"].starts_with("v_pub_file~"), "{post:?}");
    let sims = app.sim_posts_with(&sha).await;
    assert_eq!(sims.len(), 1, "published exactly once: {sims:?}");
    assert_eq!(sims[0]["post_info"]["title"], "over tls");

    // The CLI's connection takes the same [redis] TLS settings from its file.
    let cfg = app.cli_config("tls", &[], "");
    let (code, out, err) = run_cli(&cfg, &["status", &id, "--json"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "published", "{out}");

    // Without the client certificate the same CLI is refused, and says why.
    let bare = app.dir.path().join("bare.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("client_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, text).unwrap();
    let (code, out, err) = run_cli(&bare, &["status", &id]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("client certificate"), "{err}");
}

/// A server whose certificate another CA signed is refused: the message says the certificate is
/// not signed by a trusted CA and names `[redis] ca_file`.
#[tokio::test]
async fn a_server_certificate_of_another_ca_is_refused() {
    let certs = TestCerts::generate();
    let redis = server(&certs, &certs.other_ca_server, false, false);
    let msg = refusal(&redis, |s| s.redis.ca_file = Some(certs.ca.clone())).await;
    assert!(msg.contains("not signed by a trusted CA"), "{msg}");
    assert!(msg.contains("[redis] ca_file"), "{msg}");
    assert!(msg.contains("over TLS"), "{msg}");
}

/// A certificate from the right CA but for another host name is refused, and the message says so.
#[tokio::test]
async fn a_server_certificate_for_another_host_is_refused() {
    let certs = TestCerts::generate();
    let redis = server(&certs, &certs.wrong_host, false, false);
    let msg = refusal(&redis, |s| s.redis.ca_file = Some(certs.ca.clone())).await;
    assert!(msg.contains("does not name this host"), "{msg}");
}

/// A server that requires client certificates (`--tls-auth-clients yes`) refuses a daemon that
/// has none; the daemon stops and names `client_cert_file`.
#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_refused() {
    let certs = TestCerts::generate();
    let redis = server(&certs, &certs.server, true, true);
    let msg = refusal(&redis, |s| s.redis.ca_file = Some(certs.ca.clone())).await;
    assert!(msg.contains("requires a client certificate"), "{msg}");
    assert!(msg.contains("client_cert_file"), "{msg}");
}
