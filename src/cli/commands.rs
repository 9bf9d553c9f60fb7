//! The commands that work on posts in Redis (enqueue, status, list, cancel; retry is in `retry`),
//! the Redis-side maintenance ones (keys rotate, redis-loss-ack), and the environment they share.
//! `accounts …` is in `accounts`, `validate` in `validate`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use super::{CliError, EnqueueArgs, load_settings};
use crate::accounts::Accounts;
use crate::config::{ConfigError, Settings};
use crate::db::{Keys, random_id};
use crate::posts::{Created, Field, Ledger, PostRecord, State, parse_fields, parse_json, state};
use crate::tiktok::Client;

pub(super) struct Env {
    pub(super) settings: Settings,
    pub(super) keys: Keys,
    pub(super) conn: crate::db::Conn,
}

pub(super) async fn env(config: Option<&Path>) -> Result<Env, CliError> {
    let settings = load_settings(config)?;
    let conn = tokio::time::timeout(
        Duration::from_secs(10),
        crate::db::connect(settings.redis_target()),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "Redis at {} did not answer within 10 s",
            crate::db::redact_url(&settings.redis.url)
        )
    })?
    .map_err(|e| {
        let url = crate::db::redact_url(&settings.redis.url);
        match crate::db::tls_problem(&e) {
            Some(problem) => {
                anyhow::anyhow!("cannot connect to Redis at {url} over TLS: {problem}")
            }
            None => anyhow::Error::new(e)
                .context(format!("cannot connect to Redis at {url} ([redis] url)")),
        }
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
    let created = if sub.slot_next {
        let calendars = crate::planner::Calendars::new(
            ledger,
            accounts,
            env.settings.worker.daily_post_budget,
            env.settings.warmup.clone(),
        );
        match calendars.assign(&id, &sub, &extra).await {
            Ok(crate::planner::Assigned::Slot(at)) => {
                if args.json {
                    println!(
                        "{}",
                        json!({"id": id, "duplicate": false, "slot_at": at.to_rfc3339()})
                    );
                } else {
                    println!("{id} (slot {})", at.to_rfc3339());
                }
                return Ok(());
            }
            Ok(crate::planner::Assigned::Existing(c)) => c,
            Ok(crate::planner::Assigned::NoCalendar(why) | crate::planner::Assigned::Full(why)) => {
                return Err(CliError::Failure(anyhow::anyhow!("rejected: {why}")));
            }
            Err(e) => return Err(CliError::Failure(anyhow::anyhow!("not recorded: {e}"))),
        }
    } else {
        ledger
            .create(&id, &sub, &extra)
            .await
            .context("recording the post")?
    };
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
    let only = match only {
        None => None,
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            CliError::Usage(format!(
                "--state {s:?} is not a state; use one of {}",
                state::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
    };
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
        let due = chrono::DateTime::from_timestamp_millis(p.due_ms())
            .map(|t| t.to_rfc3339())
            .unwrap_or_default();
        let note = p
            .url()
            .or(p.error_message())
            .or(p.publish_id())
            .unwrap_or("");
        println!(
            "{:<28} {:<12} {:<16} {:<25} {}",
            p.id().unwrap_or(""),
            p.text(Field::State).unwrap_or(""),
            p.account().unwrap_or(""),
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
    report(id, State::Cancelled.as_str(), r, as_json)
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
