//! The commands that talk to Redis: enqueue, status, list, cancel, retry, accounts.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::{AccountsCommand, CliError, EnqueueArgs, load_settings};
use crate::accounts::{Accounts, connect};
use crate::config::{ConfigError, Settings};
use crate::db::{Keys, now_ms, random_id};
use crate::posts::{Created, Ledger, PostRecord, parse_fields, parse_json, state};
use crate::tiktok::Client;

type CallbackState = (
    Accounts,
    Keys,
    std::sync::Arc<Settings>,
    tokio::sync::mpsc::Sender<Result<String, String>>,
);

pub(super) struct Env {
    pub(super) settings: Settings,
    pub(super) keys: Keys,
    pub(super) conn: redis::aio::ConnectionManager,
}

pub(super) async fn env(config: Option<&Path>) -> Result<Env, CliError> {
    let settings = load_settings(config)?;
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        crate::db::connect(&settings.redis.url),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "Redis at {} did not answer within 10 s",
            crate::db::redact_url(&settings.redis.url)
        )
    })?
    .with_context(|| {
        format!(
            "cannot connect to Redis at {} ([redis] url)",
            crate::db::redact_url(&settings.redis.url)
        )
    })?;
    let keys = Keys::new(&settings.redis.namespace);
    Ok(Env {
        settings,
        keys,
        conn,
    })
}

pub(super) fn accounts(env: &Env) -> Result<Accounts, CliError> {
    let (key, previous) = env.settings.token_keys()?;
    let client =
        Client::new(env.settings.client_config()?).map_err(|e| CliError::Failure(e.into()))?;
    Ok(Accounts::new(env.conn.clone(), env.keys.clone(), key, client).with_previous(previous))
}

/// `redis-loss-ack`: writes a new namespace marker that running daemons adopt.
pub async fn redis_loss_ack(config: Option<&Path>) -> Result<(), CliError> {
    let mut env = env(config).await?;
    let id = crate::health::acknowledge_loss(&mut env.conn, &env.keys)
        .await
        .map_err(|e| CliError::Failure(anyhow::anyhow!(crate::db::explain(&e))))?;
    println!(
        "acknowledged: the namespace {:?} starts again with marker {id}; running daemons stop reporting the loss within seconds. Connect the accounts again (`tiktok-poster accounts connect NAME`) and resubmit what was lost.",
        env.keys.namespace()
    );
    Ok(())
}

/// `keys rotate`: re-seals every stored secret under the current key.
pub async fn rotate_keys(config: Option<&Path>) -> Result<(), CliError> {
    let env = env(config).await?;
    if env.settings.tokens.previous_key_file.is_none() {
        return Err(CliError::Config(ConfigError(
            "tokens.previous_key_file is not set; point it at the old key and encryption_key_file at the new one, then run this again".into(),
        )));
    }
    let accounts = accounts(&env)?;
    let n = accounts
        .rotate_keys()
        .await
        .map_err(|e| CliError::Failure(e.into()))?;
    println!(
        "re-sealed {n} values under key {}; previous_key_file can now be removed",
        accounts_key_id(&env)?
    );
    Ok(())
}

fn accounts_key_id(env: &Env) -> Result<String, CliError> {
    Ok(env.settings.token_keys()?.0.id().to_string())
}

/// `enqueue`: validates at once (the same checks as ingest) and records the post.
pub async fn enqueue(config: Option<&Path>, args: EnqueueArgs) -> Result<(), CliError> {
    let sub = match &args.file {
        Some(path) => {
            let text = read_submission_file(path)?;
            parse_json(&text)
        }
        None => parse_fields(&args.fields()),
    }
    .map_err(|e| CliError::Failure(anyhow::anyhow!("rejected: {e}")))?;
    let env = env(config).await?;
    let accounts = accounts(&env)?;
    let mut extra = crate::ingest::check(&sub, &accounts, &env.settings.video)
        .await
        .map_err(|e| match e {
            crate::ingest::Refusal::Rejected(r) => {
                CliError::Failure(anyhow::anyhow!("rejected: {r}"))
            }
            later => CliError::Failure(anyhow::anyhow!("not recorded: {later}")),
        })?;
    if let Some(path) = &sub.video {
        // Read the file through once: a file that cannot be read to its end (a bad disk, a copy still
        // running) is refused now, and its SHA-256 is kept on the post. A bar shows on a terminal.
        let sha = read_through(path)
            .await
            .map_err(|e| CliError::Failure(anyhow::anyhow!("rejected: {e}")))?;
        extra.push(("video_sha256", sha));
    }
    let id = sub
        .id
        .clone()
        .unwrap_or_else(|| format!("cli-{}", &random_id()[..16]));
    let ledger = Ledger::new(env.conn.clone(), env.keys.clone());
    let created = ledger
        .create(&id, &sub, &extra)
        .await
        .context("recording the post")?;
    if created == Created::Conflict {
        return Err(CliError::Failure(anyhow::anyhow!(
            "rejected: {}",
            crate::ingest::conflict_reason(&id)
        )));
    }
    if args.json {
        println!(
            "{}",
            json!({"id": id, "duplicate": created == Created::Duplicate})
        );
    } else if created == Created::Duplicate {
        println!("{id} (already recorded; nothing changed)");
    } else {
        println!("{id}");
    }
    Ok(())
}

/// Reads an `enqueue --file` JSON file: at most a `json` field's size, and strict UTF-8 (what the
/// file holds is what is posted).
fn read_submission_file(path: &Path) -> Result<String, CliError> {
    use std::io::Read;
    let max = crate::posts::submission::MAX_JSON_BYTES;
    let cannot =
        |e: std::io::Error| CliError::Usage(format!("cannot read {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() > max {
        return Err(CliError::Failure(anyhow::anyhow!(
            "rejected: {} is larger than {max} bytes; a submission is one small JSON object",
            path.display()
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        CliError::Failure(anyhow::anyhow!(
            "rejected: {} is not valid UTF-8 (byte {at} does not continue a UTF-8 character); save it as UTF-8",
            path.display()
        ))
    })
}

/// Reads `path` to its end on a blocking thread, with a progress bar on a terminal; its SHA-256.
async fn read_through(path: &Path) -> Result<String, String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        use std::io::Read;
        let fail = |e: std::io::Error| {
            format!(
                "video {} cannot be read to its end ({e}); check the file and submit it again",
                path.display()
            )
        };
        let mut f = std::fs::File::open(&path).map_err(fail)?;
        let len = f.metadata().map_err(fail)?.len();
        let bar = crate::cli::progress::bytes(len, "reading");
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(fail)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            total += n as u64;
            bar.set_position(total);
        }
        bar.finish_and_clear();
        if total != len {
            return Err(format!(
                "video {} changed while it was read ({len} bytes expected, {total} read)",
                path.display()
            ));
        }
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(|e| e.to_string())?
}

fn post_json(p: &PostRecord) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in p.public_fields() {
        m.insert(k.to_string(), Value::String(v.to_string()));
    }
    Value::Object(m)
}

/// `status ID`.
pub async fn status(config: Option<&Path>, id: &str, as_json: bool) -> Result<(), CliError> {
    let env = env(config).await?;
    let ledger = Ledger::new(env.conn.clone(), env.keys.clone());
    let Some(p) = ledger.get(id).await.context("reading the post")? else {
        return Err(CliError::Failure(anyhow::anyhow!("no post {id:?}")));
    };
    if as_json {
        println!("{}", post_json(&p));
    } else {
        for (k, v) in p.public_fields() {
            if !v.is_empty() {
                println!("{k:<22} {v}");
            }
        }
    }
    Ok(())
}

/// `list [--state S]`.
pub async fn list(
    config: Option<&Path>,
    only: Option<&str>,
    as_json: bool,
) -> Result<(), CliError> {
    if let Some(s) = only
        && !state::ALL.contains(&s)
    {
        return Err(CliError::Usage(format!(
            "--state {s:?} is not a state; use one of {}",
            state::ALL.join(", ")
        )));
    }
    let env = env(config).await?;
    let ledger = Ledger::new(env.conn.clone(), env.keys.clone());
    let posts = ledger.list(only, 1000).await.context("listing posts")?;
    if as_json {
        println!("{}", Value::Array(posts.iter().map(post_json).collect()));
        return Ok(());
    }
    println!(
        "{:<28} {:<12} {:<16} {:<25} NOTE",
        "ID", "STATE", "ACCOUNT", "DUE"
    );
    for p in posts {
        let due = chrono::DateTime::from_timestamp_millis(p.num("due_ms"))
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let note = p
            .get("url")
            .or(p.get("error_message"))
            .or(p.get("publish_id"))
            .unwrap_or("");
        println!(
            "{:<28} {:<12} {:<16} {:<25} {}",
            p.get("id").unwrap_or(""),
            p.state(),
            p.get("account").unwrap_or(""),
            due,
            note
        );
    }
    Ok(())
}

/// `cancel ID`.
pub async fn cancel(config: Option<&Path>, id: &str, as_json: bool) -> Result<(), CliError> {
    let env = env(config).await?;
    let r = Ledger::new(env.conn.clone(), env.keys.clone())
        .cancel(id)
        .await;
    report(id, "cancelled", r, as_json)
}

/// Prints the outcome of cancel/retry; with `--json` also the refusal, as `{"id","ok","error"}`.
pub(super) fn report(
    id: &str,
    state: &str,
    r: Result<(), String>,
    as_json: bool,
) -> Result<(), CliError> {
    match (r, as_json) {
        (Ok(()), true) => println!("{}", json!({"id": id, "ok": true, "state": state})),
        (Ok(()), false) => println!("{id} {state}"),
        (Err(e), true) => {
            println!("{}", json!({"id": id, "ok": false, "error": e}));
            return Err(CliError::Failure(anyhow::anyhow!(e)));
        }
        (Err(e), false) => return Err(CliError::Failure(anyhow::anyhow!(e))),
    }
    Ok(())
}

/// `accounts …`.
pub async fn accounts_cmd(config: Option<&Path>, cmd: AccountsCommand) -> Result<(), CliError> {
    let env = env(config).await?;
    let accounts = accounts(&env)?;
    match cmd {
        AccountsCommand::List { json } => {
            let list = accounts.list().await.context("listing accounts")?;
            if json {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
            } else {
                println!(
                    "{:<20} {:<20} {:<16} {:<26} RECONNECT BEFORE",
                    "NAME", "TIKTOK USER", "STATE", "ACCESS TOKEN EXPIRES"
                );
                for a in list {
                    let t = |ms: i64| {
                        chrono::DateTime::from_timestamp_millis(ms)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    };
                    let soon = if a.refresh_expires_ms - now_ms() < 7 * 86_400_000 {
                        " (soon!)"
                    } else {
                        ""
                    };
                    println!(
                        "{:<20} @{:<19} {:<16} {:<26} {}{soon}",
                        a.name,
                        a.username,
                        a.state,
                        t(a.access_expires_ms),
                        t(a.refresh_expires_ms)
                    );
                }
            }
        }
        AccountsCommand::Refresh { name } => {
            accounts
                .force_refresh(&name)
                .await
                .map_err(|e| CliError::Failure(e.into()))?;
            println!("{name}: token refreshed");
        }
        AccountsCommand::Remove { name } => {
            accounts
                .remove(&name)
                .await
                .map_err(|e| CliError::Failure(e.into()))?;
            println!("{name}: revoked and removed");
        }
        AccountsCommand::Connect { name, replace } => {
            let started = now_ms();
            let url = connect::begin(
                &accounts,
                &env.keys,
                &env.settings,
                &name,
                Vec::new(),
                replace,
            )
            .await
            .map_err(|e| CliError::Failure(anyhow::anyhow!(e)))?;
            println!("Open this URL in a browser and approve the app:\n\n  {url}\n");
            println!(
                "Waiting for TikTok to send the browser back to {} ...",
                env.settings.tiktok.redirect_uri
            );
            let state = url
                .query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            wait_for_callback(&env, &accounts, &name, started, &state).await?;
        }
    }
    Ok(())
}

/// Serves the callback itself when nothing listens on the redirect address; otherwise (the daemon runs
/// there) waits until the account shows up connected.
async fn wait_for_callback(
    env: &Env,
    accounts: &Accounts,
    name: &str,
    started: i64,
    state: &str,
) -> Result<(), CliError> {
    let redirect = url::Url::parse(&env.settings.tiktok.redirect_uri)
        .map_err(|e| CliError::Failure(e.into()))?;
    let addr = format!(
        "{}:{}",
        redirect.host_str().unwrap_or("127.0.0.1"),
        redirect.port_or_known_default().unwrap_or(80)
    );
    if let Ok(listener) = tokio::net::TcpListener::bind(&addr).await {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, String>>(1);
        let state = (
            accounts.clone(),
            env.keys.clone(),
            std::sync::Arc::new(env.settings.clone()),
            tx,
        );
        let app = axum::Router::new()
            .route(
                redirect.path(),
                axum::routing::get(
                    |axum::extract::State((accounts, keys, settings, tx)): axum::extract::State<
                        CallbackState,
                    >,
                     axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                        let query: Vec<(String, String)> =
                            url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                                .into_owned()
                                .collect();
                        let r = connect::complete(&accounts, &keys, &settings, &query)
                            .await
                            .map(|a| a.username)
                            .map_err(|e| e.to_string());
                        let page = match &r {
                            Ok(u) => {
                                format!("Connected to TikTok user @{u}. You can close this page.")
                            }
                            Err(e) => format!("Connection failed: {e}"),
                        };
                        let _ = tx.send(r).await;
                        page
                    },
                ),
            )
            .with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let r = tokio::time::timeout(Duration::from_secs(connect::STATE_TTL_SECS), rx.recv()).await;
        server.abort();
        return match r {
            Ok(Some(Ok(user))) => {
                println!("{name}: connected to TikTok user @{user}");
                Ok(())
            }
            Ok(Some(Err(e))) => Err(CliError::Failure(anyhow::anyhow!(e))),
            _ => Err(CliError::Failure(anyhow::anyhow!(
                "no callback arrived within 5 minutes; run the command again"
            ))),
        };
    }
    // The daemon owns the redirect address: it completes the flow; watch the account record.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(connect::STATE_TTL_SECS);
    let mut used_at: Option<tokio::time::Instant> = None;
    while tokio::time::Instant::now() < deadline {
        // The daemon took the state but did not connect the account (after a moment to write it):
        // it refused, and its page says why.
        if used_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            return Err(CliError::Failure(anyhow::anyhow!(
                "the daemon refused to connect {name}; its page in the browser says why (an account connected to a different TikTok user needs --replace)"
            )));
        }
        if used_at.is_none()
            && let Ok(false) = redis::cmd("EXISTS")
                .arg(env.keys.oauth_state(state))
                .query_async::<bool>(&mut env.conn.clone())
                .await
        {
            used_at = Some(tokio::time::Instant::now());
        }
        if let Ok(info) = accounts.info(name).await
            && let Ok(raw) = redis::cmd("HGET")
                .arg(env.keys.account(name))
                .arg("connected_ms")
                .query_async::<Option<i64>>(&mut env.conn.clone())
                .await
            && raw.unwrap_or(0) >= started
        {
            println!("{name}: connected to TikTok user @{}", info.username);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(CliError::Failure(anyhow::anyhow!(
        "no callback arrived within 5 minutes; run the command again"
    )))
}

/// `validate FILE...`: probes each file, prints a table (or JSON), exits 1 when any fails.
pub async fn validate(
    config: Option<&Path>,
    files: &[std::path::PathBuf],
    as_json: bool,
    policy: Option<crate::media::Policy>,
) -> Result<(), CliError> {
    use crate::media;
    // The flag wins; then the configuration, when there is one that loads; then `brief`.
    let settings = match config {
        Some(_) => Some(load_settings(config)?),
        None => load_settings(None).ok(),
    };
    let mut video = settings.map(|s| s.video).unwrap_or_default();
    if let Some(p) = policy {
        video.policy = p;
    }
    let bar = crate::cli::progress::bar(files.len() as u64, "probing");
    let mut results = Vec::new();
    for path in files {
        bar.set_message(path.display().to_string());
        let checked = media::check(path, &video, None).await;
        bar.inc(1);
        results.push((path, checked.info, checked.violations));
    }
    bar.finish_and_clear();
    let failed = results.iter().filter(|r| !r.2.is_empty()).count();
    if as_json {
        let arr: Vec<Value> = results
            .iter()
            .map(|(path, info, v)| {
                json!({
                    "path": path.display().to_string(),
                    "ok": v.is_empty(),
                    "info": info,
                    "violations": v,
                })
            })
            .collect();
        println!("{}", Value::Array(arr));
    } else {
        let fw = results
            .iter()
            .map(|r| r.0.display().to_string().chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        println!(
            "{:<fw$} {:<6} {:<9} {:>9} {:>10} {:>7} {:<6} {:<6} {:>10}",
            "FILE", "RESULT", "CONTAINER", "DURATION", "SIZE", "FPS", "VIDEO", "AUDIO", "BITRATE"
        );
        for (path, info, v) in &results {
            let name = path.display().to_string();
            let result = if v.is_empty() { "ok" } else { "FAIL" };
            match info {
                Some(i) => {
                    let dash = || "-".to_string();
                    println!(
                        "{:<fw$} {:<6} {:<9} {:>9} {:>10} {:>7} {:<6} {:<6} {:>10}",
                        name,
                        result,
                        i.container.name(),
                        i.duration_secs.map_or_else(dash, |d| format!("{d:.2} s")),
                        i.video.as_ref().map_or_else(dash, |t| {
                            let (w, h) = t.display_size();
                            format!("{w}x{h}")
                        }),
                        i.video
                            .as_ref()
                            .and_then(|t| t.fps)
                            .map_or_else(dash, |f| format!("{f:.2}")),
                        i.video.as_ref().map_or_else(dash, |t| t.codec.to_string()),
                        i.audio.as_ref().map_or_else(dash, |a| a.codec.to_string()),
                        i.bitrate_bps
                            .map_or_else(dash, |b| format!("{} kbps", b / 1000)),
                    );
                }
                None => println!("{name:<fw$} {result:<6}"),
            }
            for x in v {
                println!("    {}: {}", x.code, x.message);
            }
        }
        println!(
            "{} of {} file(s) pass the {} policy",
            results.len() - failed,
            results.len(),
            video.policy.as_str()
        );
    }
    if failed > 0 {
        return Err(CliError::Quiet(1));
    }
    Ok(())
}
