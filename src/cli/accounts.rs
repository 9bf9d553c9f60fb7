//! `accounts …`: list, connect (serving the OAuth callback itself when the daemon does not), remove,
//! resume (a `posting_blocked` account, or the app).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::commands::{Env, accounts, env};
use super::{AccountsCommand, CliError};
use crate::accounts::{Accounts, connect};
use crate::config::Settings;
use crate::db::{Keys, now_ms};

type CallbackState = (
    Accounts,
    Keys,
    std::sync::Arc<Settings>,
    tokio::sync::mpsc::Sender<Result<String, String>>,
);

/// How far apart the posts a skipped warm-up held back are made due.
const SKIP_STAGGER_MS: i64 = 60_000;

/// `accounts …`.
pub async fn accounts_cmd(config: Option<&Path>, cmd: AccountsCommand) -> Result<(), CliError> {
    let env = env(config).await?;
    let accounts = accounts(&env)?;
    match cmd {
        AccountsCommand::List { json } => {
            let list = accounts.list().await.context("listing accounts")?;
            let warm = &env.settings.warmup;
            let budget = env.settings.worker.daily_post_budget;
            let now = now_ms();
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|a| {
                        let mut v = serde_json::to_value(a).unwrap_or_default();
                        let step = warm
                            .enabled
                            .then(|| a.warmup.step(&warm.ramp, budget, now))
                            .flatten();
                        v["warmup_status"] = a
                            .warmup
                            .describe(&warm.ramp, budget, warm.enabled, now)
                            .into();
                        v["warmup_day"] = step.map(|s| s.day).into();
                        v["cap_today"] = step.map_or(budget, |s| s.cap).into();
                        v
                    })
                    .collect();
                println!("{}", serde_json::to_string(&rows).unwrap_or_default());
            } else {
                println!(
                    "{:<20} {:<20} {:<16} {:<16} {:<26} {:<26} WARM-UP",
                    "NAME",
                    "TIKTOK USER",
                    "STATE",
                    "POSTING",
                    "ACCESS TOKEN EXPIRES",
                    "RECONNECT BEFORE"
                );
                for a in &list {
                    let t = |ms: i64| {
                        chrono::DateTime::from_timestamp_millis(ms)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    };
                    let soon = if a.refresh_expires_ms - now < 7 * 86_400_000 {
                        " (soon!)"
                    } else {
                        ""
                    };
                    let posting = if a.posting_blocked.is_some() {
                        crate::accounts::blocked::POSTING_BLOCKED
                    } else {
                        "ok"
                    };
                    println!(
                        "{:<20} @{:<19} {:<16} {:<16} {:<26} {:<26} {}",
                        a.name,
                        a.username,
                        a.state,
                        posting,
                        t(a.access_expires_ms),
                        format!("{}{soon}", t(a.refresh_expires_ms)),
                        a.warmup.describe(&warm.ramp, budget, warm.enabled, now)
                    );
                }
                for a in &list {
                    if let Some(b) = &a.posting_blocked {
                        println!(
                            "{}: posting_blocked ({}) since {}: {}: {}",
                            a.name,
                            b.scope.as_str(),
                            rfc3339(b.since_ms),
                            b.code,
                            b.message
                        );
                    }
                }
            }
        }
        AccountsCommand::Warmup { name, skip, ramp } => {
            if skip || ramp {
                if !accounts
                    .set_warmup_skip(&name, skip)
                    .await
                    .map_err(|e| CliError::Failure(e.into()))?
                {
                    return Err(CliError::Failure(anyhow::anyhow!(
                        "no account {name:?}; `tiktok-poster accounts list` shows the connected ones"
                    )));
                }
                if skip {
                    // What the ramp held back goes now, a minute apart (the daily budget still
                    // applies).
                    let ledger = crate::posts::Ledger::new(env.conn.clone(), env.keys.clone());
                    let woken = crate::queue::release::release_held(
                        &ledger,
                        std::slice::from_ref(&name),
                        "warming_up",
                        now_ms(),
                        SKIP_STAGGER_MS,
                    )
                    .await
                    .context("waking the posts the ramp held back")?;
                    if woken > 0 {
                        println!(
                            "{name}: {woken} post(s) held back by the warm-up are due again, one a minute"
                        );
                    }
                }
            }
            let info = accounts
                .info(&name)
                .await
                .map_err(|e| CliError::Failure(e.into()))?;
            let warm = &env.settings.warmup;
            let budget = env.settings.worker.daily_post_budget;
            let now = now_ms();
            println!(
                "{name}: warm-up {}",
                info.warmup.describe(&warm.ramp, budget, warm.enabled, now)
            );
            if let Some(first) = info.warmup.first_post_ms {
                println!(
                    "  first post through the daemon: {}",
                    chrono::DateTime::from_timestamp_millis(first)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                );
            }
            if !info.warmup.note.is_empty() {
                println!("  last activity check: {}", info.warmup.note);
            }
            if warm.enabled {
                println!("  ramp: {:?} Direct Posts a day, then {budget}", warm.ramp);
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
        AccountsCommand::Resume { name, app } => {
            resume(&env, &accounts, name.as_deref().filter(|_| !app)).await?;
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
                .find(|(k, _)| k == crate::tiktok::oauth::STATE_PARAM)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            wait_for_callback(&env, &accounts, &name, started, &state).await?;
        }
    }
    Ok(())
}

/// `accounts resume NAME` (or, with `None`, `accounts resume --app`): clears the block and makes the
/// held posts due now (`queue::release`, the same release the daemon makes when TikTok allows
/// posting again).
async fn resume(env: &Env, accounts: &Accounts, name: Option<&str>) -> Result<(), CliError> {
    use crate::accounts::blocked::Scope;
    let ledger = crate::posts::Ledger::new(env.conn.clone(), env.keys.clone());
    let (scope, who, whom) = match name {
        Some(n) => {
            if !accounts.exists(n).await.context("reading the account")? {
                return Err(CliError::Failure(anyhow::anyhow!(
                    "account {n:?} is not connected; `tiktok-poster accounts list` shows the accounts"
                )));
            }
            (Scope::Account, n.to_string(), vec![n.to_string()])
        }
        None => {
            let all = accounts.list().await.context("listing accounts")?;
            (
                Scope::App,
                "the app".to_string(),
                all.into_iter().map(|a| a.name).collect(),
            )
        }
    };
    let how = match name {
        Some(n) => format!("cleared by `tiktok-poster accounts resume {n}`"),
        None => "cleared by `tiktok-poster accounts resume --app`".to_string(),
    };
    let cleared = accounts
        .clear_block(scope, name.unwrap_or(""), &how)
        .await
        .context("clearing the block")?;
    let moved = crate::queue::release::release_held(
        &ledger,
        &whom,
        crate::accounts::blocked::POSTING_BLOCKED,
        now_ms(),
        crate::queue::release::RELEASE_STAGGER_MS,
    )
    .await
    .context("releasing the held posts")?;
    match cleared {
        Some(b) => println!(
            "{who}: posting resumed (posting_blocked since {} by {}); {moved} held posts are due now",
            rfc3339(b.since_ms),
            b.code
        ),
        None => println!("{who}: was not posting_blocked; {moved} held posts are due now"),
    }
    if scope == Scope::Account
        && let Some(app) = accounts
            .app_block()
            .await
            .context("reading the app block")?
    {
        println!(
            "note: the app itself is posting_blocked since {} ({}); `tiktok-poster accounts resume --app` clears that",
            rfc3339(app.since_ms),
            app.code
        );
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
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
