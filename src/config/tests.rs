//! Loading, layering, validation and secrecy of the settings, and the README's list of keys.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_example_config_loads_and_matches_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let s = Settings::load(Some(&path), env(&[])).unwrap();
    let d = Settings::default();
    assert_eq!(s.redis.url, d.redis.url);
    assert_eq!(s.worker.concurrency, d.worker.concurrency);
    assert_eq!(s.tiktok.scopes, d.tiktok.scopes);
    assert_eq!(
        s.to_masked_toml(),
        d.to_masked_toml(),
        "config.example.toml must document the defaults"
    );
}

#[test]
fn environment_overrides_use_double_underscores() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "c.toml",
        "[worker]\nconcurrency = 2\n[tiktok]\nclient_key = \"abc\"\n",
    );
    let s = Settings::load(
        Some(&p),
        env(&[
            ("TIKTOK_POSTER__WORKER__CONCURRENCY", "9"),
            ("TIKTOK_POSTER__TIKTOK__CLIENT_KEY", "12345"),
            (
                "TIKTOK_POSTER__TIKTOK__SCOPES",
                "video.publish,video.upload",
            ),
            ("TIKTOK_POSTER__REDIS__NAMESPACE", "ns1"),
            // Wrong forms are not ours and must not be mistaken for overrides.
            ("TIKTOK_POSTER_WORKER_CONCURRENCY", "7"),
            ("TIKTOK_POSTER_CONFIG", "/nonexistent"),
        ]),
    )
    .unwrap();
    assert_eq!(s.worker.concurrency, 9);
    assert_eq!(
        s.tiktok.client_key, "12345",
        "a numeric-looking key stays a string"
    );
    assert_eq!(s.tiktok.scopes, vec!["video.publish", "video.upload"]);
    assert_eq!(s.redis.namespace, "ns1");
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "c.toml", "[worker]\nconcurency = 2\n");
    let e = Settings::load(Some(&p), env(&[])).unwrap_err().to_string();
    assert!(e.contains("concurency"), "{e}");
    let e = Settings::load(None, env(&[("TIKTOK_POSTER__WORKER__THREADS", "3")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("threads"), "{e}");
}

#[test]
fn validation_names_every_bad_key_and_its_variable() {
    let e = Settings::load(
        None,
        env(&[
            ("TIKTOK_POSTER__WORKER__CONCURRENCY", "0"),
            ("TIKTOK_POSTER__HTTP__LISTEN", "localhost"),
            ("TIKTOK_POSTER__REDIS__URL", "http://x"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("worker.concurrency: 0 is out of range")
            && e.contains("TIKTOK_POSTER__WORKER__CONCURRENCY"),
        "{e}"
    );
    assert!(e.contains("http.listen"), "{e}");
    assert!(e.contains("redis.url"), "{e}");
}

#[test]
fn the_client_secret_comes_from_a_file_and_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = write(&dir, "secret", "s3cr3t-value\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let s = Settings::load(
        None,
        env(&[(
            "TIKTOK_POSTER__TIKTOK__CLIENT_SECRET_FILE",
            secret.to_str().unwrap(),
        )]),
    )
    .unwrap();
    assert_eq!(
        s.tiktok.client_secret.as_ref().unwrap().expose(),
        "s3cr3t-value"
    );
    assert!(!s.to_masked_toml().contains("s3cr3t"));
    assert!(!format!("{s:?}").contains("s3cr3t"));
    let both = Settings::load(
        None,
        env(&[
            (
                "TIKTOK_POSTER__TIKTOK__CLIENT_SECRET_FILE",
                secret.to_str().unwrap(),
            ),
            ("TIKTOK_POSTER__TIKTOK__CLIENT_SECRET", "x"),
        ]),
    );
    assert!(both.unwrap_err().to_string().contains("both set"));
    let missing = Settings::load(
        None,
        env(&[(
            "TIKTOK_POSTER__TIKTOK__CLIENT_SECRET_FILE",
            "/nonexistent/secret",
        )]),
    );
    assert!(missing.unwrap_err().to_string().contains("cannot read it"));
}

#[test]
fn a_named_config_file_must_exist() {
    let e = resolve_path(Some(Path::new("/nonexistent/c.toml")), None).unwrap_err();
    assert!(e.to_string().contains("--config"));
    let e = resolve_path(None, Some("/nonexistent/c.toml".into())).unwrap_err();
    assert!(e.to_string().contains(CONFIG_ENV));
}

/// The README's configuration table names every key of the example, so neither drifts.
#[test]
fn the_readme_lists_every_config_key() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../../config.example.toml");
    let mut section = "";
    let mut missing = Vec::new();
    for line in example.lines() {
        let l = line.trim_start_matches('#').trim();
        if l.starts_with('[') && l.ends_with(']') {
            section = l.trim_matches(|c| c == '[' || c == ']');
            continue;
        }
        let Some((key, _)) = l.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let name = format!("`{section}.{key}`");
        if !readme.contains(&name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "README lacks {missing:?}");
}

#[test]
fn warmup_ramp_is_checked() {
    let mut s = Settings::default();
    assert!(s.validate().is_ok(), "the default ramp is valid");
    for (ramp, want) in [
        (vec![], "give 1 to 60 daily caps"),
        (vec![4, 5], "the first day allows 4 posts"),
        (vec![0, 5], "the first day allows 0 posts"),
        (vec![3, 2], "goes down"),
    ] {
        s.warmup.ramp = ramp.clone();
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("warmup.ramp") && e.contains(want),
            "{ramp:?}: {e}"
        );
        assert!(e.contains("TIKTOK_POSTER__WARMUP__RAMP"), "{e}");
    }
    s.warmup.ramp = vec![3, 3, 20];
    s.warmup.active_video_count = 0;
    let e = s.validate().unwrap_err().to_string();
    assert!(e.contains("warmup.active_video_count"), "{e}");
}

/// `[tiktok] ca_file`: a readable PEM file of certificates that parse, bounded in size; each problem
/// names the key, the file and the variable.
#[test]
fn tiktok_ca_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["sim.example".to_string()]).unwrap();
    let ca = write(&dir, "ca.pem", &made.cert.pem());
    let fake = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let broken = write(&dir, "broken.pem", fake);
    let not_pem = write(&dir, "junk.pem", "hello");
    let huge = write(&dir, "huge.pem", &"x".repeat((1 << 20) + 1));
    let problems = |path: &std::path::Path| {
        let mut s = Settings::default();
        s.tiktok.ca_file = Some(path.to_path_buf());
        s.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let missing = problems(&dir.path().join("nope.pem"));
    assert!(
        missing.contains("tiktok.ca_file: cannot read")
            && missing.contains("TIKTOK_POSTER__TIKTOK__CA_FILE"),
        "{missing}"
    );
    assert!(
        problems(&not_pem).contains("tiktok.ca_file:")
            && problems(&not_pem).contains("holds no PEM certificate")
    );
    let e = problems(&broken);
    assert!(
        e.contains("cannot be parsed as PEM certificates")
            || e.contains("holds no PEM certificate"),
        "{e}"
    );
    assert!(
        problems(&huge).contains("is over 1048576 bytes"),
        "{}",
        problems(&huge)
    );
    assert_eq!(problems(&ca), "", "a real certificate is accepted");
    let open = write(&dir, "open.pem", &made.cert.pem());
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let e = problems(&open);
    assert!(
        e.contains("tiktok.ca_file:") && e.contains("is writable by every user (mode 666)"),
        "{e}"
    );
    let mut s = Settings::default();
    s.tiktok.ca_file = Some(ca.clone());
    let c = s.client_config().unwrap();
    assert!(
        c.extra_roots_pem
            .is_some_and(|p| p.starts_with(b"-----BEGIN CERTIFICATE-----"))
    );
    assert!(crate::tiktok::Client::new(s.client_config().unwrap()).is_ok());
}

/// `[redis]` TLS files: only with rediss://, certificate and key together, readable PEM; each
/// problem names its key and the fix. The environment sets them too.
#[test]
fn redis_tls_files_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["redis.example".to_string()]).unwrap();
    let ca = write(&dir, "ca.pem", &made.cert.pem());
    let fake = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let broken = write(&dir, "broken.pem", fake);
    let not_pem = write(&dir, "junk.pem", "hello");
    let problems = |f: &dyn Fn(&mut Settings)| {
        let mut s = Settings::default();
        s.redis.url = "rediss://redis.example:6380".into();
        f(&mut s);
        s.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let plain = problems(&|s| {
        s.redis.url = "redis://127.0.0.1:6379".into();
        s.redis.ca_file = Some(ca.clone());
    });
    assert!(
        plain.contains("redis.ca_file: is for TLS only: use a rediss:// [redis] url"),
        "{plain}"
    );
    let lone = problems(&|s| s.redis.client_cert_file = Some(ca.clone()));
    assert!(
        lone.contains("redis.client_key_file: is missing: client_cert_file needs the private key"),
        "{lone}"
    );
    let missing = problems(&|s| s.redis.ca_file = Some(dir.path().join("nope.pem")));
    assert!(
        missing.contains("redis.ca_file:") && missing.contains("cannot read it"),
        "{missing}"
    );
    assert!(
        missing.contains("TIKTOK_POSTER__REDIS__CA_FILE"),
        "{missing}"
    );
    let junk = problems(&|s| s.redis.ca_file = Some(not_pem.clone()));
    assert!(junk.contains("holds no PEM certificate"), "{junk}");
    let key = problems(&|s| {
        s.redis.client_cert_file = Some(ca.clone());
        s.redis.client_key_file = Some(ca.clone());
    });
    assert!(
        key.contains("redis.client_key_file:") && key.contains("holds no PEM private key"),
        "{key}"
    );
    let unparsable = problems(&|s| s.redis.ca_file = Some(broken.clone()));
    assert!(
        unparsable.contains("redis.ca_file: cannot be parsed as PEM certificates"),
        "{unparsable}"
    );
    let good = problems(&|s| s.redis.ca_file = Some(ca.clone()));
    assert_eq!(good, "", "a real certificate is accepted");
    // From the environment, as every other key.
    let s = Settings::load(
        None,
        env(&[
            ("TIKTOK_POSTER__REDIS__URL", "rediss://127.0.0.1:6380"),
            ("TIKTOK_POSTER__REDIS__CA_FILE", ca.to_str().unwrap()),
        ]),
    )
    .unwrap();
    assert_eq!(s.redis_target().ca_file.as_deref(), Some(ca.as_path()));
}

#[test]
fn a_namespace_in_braces_is_accepted_and_a_broken_tag_is_not() {
    let mut s = Settings::default();
    s.redis.namespace = "{tiktok-poster}".into();
    assert!(s.validate().is_ok());
    s.redis.namespace = "{tiktok-poster".into();
    let e = s.validate().unwrap_err().to_string();
    assert!(
        e.contains("redis.namespace: \"{tiktok-poster\" has braces that enclose no hash tag"),
        "{e}"
    );
}

/// `[redis]` Sentinel, give-up and replica settings: sentinels and the master name go together,
/// each address is host:port, the numbers are bounded, and the sentinels' password comes from a
/// private file or the environment and is never printed.
#[test]
fn redis_sentinel_and_replica_settings_are_checked() {
    let problems = |f: &dyn Fn(&mut Settings)| {
        let mut s = Settings::default();
        f(&mut s);
        s.validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let e = problems(&|s| s.redis.sentinels = vec!["127.0.0.1:26379".into()]);
    assert!(
        e.contains("redis.sentinel_master: is missing")
            && e.contains("TIKTOK_POSTER__REDIS__SENTINEL_MASTER"),
        "{e}"
    );
    let e = problems(&|s| s.redis.sentinel_master = "mymaster".into());
    assert!(e.contains("redis.sentinels: is empty"), "{e}");
    let e = problems(&|s| {
        s.redis.sentinel_master = "mymaster".into();
        s.redis.sentinels = vec!["10.0.0.1".into(), "10.0.0.2:0".into(), "[::1]:26379".into()];
    });
    assert!(e.contains("\"10.0.0.1\": is not host:port"), "{e}");
    assert!(e.contains("\"10.0.0.2:0\": \"0\" is not a port"), "{e}");
    assert!(!e.contains("[::1]"), "an IPv6 sentinel is fine: {e}");
    let e = problems(&|s| {
        s.redis.sentinel_master = "mymaster".into();
        s.redis.sentinels = vec!["127.0.0.1:26379".into()];
        s.redis.url = "unix:///run/redis.sock".into();
    });
    assert!(e.contains("redis.url: with [redis] sentinels"), "{e}");
    let e = problems(&|s| {
        s.redis.sentinel_master = "mymaster".into();
        s.redis.sentinels = vec!["127.0.0.1:26379".into(), "127.0.0.1:26379".into()];
    });
    assert!(e.contains("\"127.0.0.1:26379\" is listed twice"), "{e}");
    let e = problems(&|s| {
        s.redis.give_up_after_secs = 0;
        s.redis.min_replica_acks = 17;
        s.redis.replica_ack_timeout_ms = 5;
    });
    for key in [
        "redis.give_up_after_secs",
        "redis.min_replica_acks",
        "redis.replica_ack_timeout_ms",
    ] {
        assert!(e.contains(key), "{key}: {e}");
    }
    assert_eq!(problems(&|_| {}), "", "the defaults are valid");

    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "sentinel-password", "s3cret-sentinel\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let toml = write(
            &dir,
            "c.toml",
            &format!(
                "[redis]\nsentinels = [\"127.0.0.1:26379\"]\nsentinel_master = \"m\"\nsentinel_password_file = {:?}\n",
                file.display().to_string()
            ),
        );
        let e = Settings::load(Some(&toml), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = Settings::load(Some(&toml), env(&[])).unwrap();
        let t = s.redis_target();
        let sentinel = t.sentinel.as_ref().unwrap();
        assert_eq!(sentinel.master, "m");
        use secrecy::ExposeSecret;
        assert_eq!(
            sentinel.password.as_ref().unwrap().expose_secret(),
            "s3cret-sentinel"
        );
        let shown = format!("{} {:?}", s.to_masked_toml(), t);
        assert!(!shown.contains("s3cret-sentinel"), "{shown}");
    }
    let s = Settings::load(
        None,
        env(&[
            (
                "TIKTOK_POSTER__REDIS__SENTINELS",
                "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379",
            ),
            ("TIKTOK_POSTER__REDIS__SENTINEL_MASTER", "mymaster"),
            ("TIKTOK_POSTER__REDIS__MIN_REPLICA_ACKS", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(s.redis.sentinels.len(), 3, "a list from the environment");
    assert_eq!(s.redis.min_replica_acks, 1);
}
