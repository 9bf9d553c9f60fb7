//! `calendar …`: set, show and remove an account's posting calendar, list its slots and a week,
//! pause and resume the account, move one post, and rotate the feed's token.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use serde_json::json;

use super::CliError;
use super::commands::{accounts, env};
use crate::calendar::CalendarSettings;
use crate::calendar::settings::{DEFAULT_HORIZON_DAYS, DEFAULT_SPACING, spacing_from_text};
use crate::planner::{Calendar, Calendars, PlanError};
use crate::posts::Ledger;

/// `calendar` subcommands.
#[derive(Debug, Subcommand)]
pub enum CalendarCommand {
    /// Set an account's slots (crontab expressions read in its zone) and rules. Posts that already
    /// have a slot keep it.
    Set {
        /// The account name.
        account: String,
        /// IANA zone, e.g. Europe/Berlin.
        #[arg(long)]
        tz: String,
        /// A 5-field crontab expression (`30 9 * * MON-FRI`); give --slot once per expression.
        #[arg(long = "slot", required = true)]
        slots: Vec<String>,
        /// No two posts of the account closer than this (`10m`, `2h`, `1h30m`). Default 15m.
        #[arg(long)]
        min_spacing: Option<String>,
        /// How far ahead `slot` = `next` looks, in days. Default 60.
        #[arg(long)]
        horizon_days: Option<u32>,
        /// Posts in any rolling 24 hours. Default: the configuration's worker.daily_post_budget.
        #[arg(long)]
        daily_budget: Option<u32>,
    },
    /// Show an account's calendar, its next slots and the feed's path.
    Show {
        /// The account name.
        account: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account's calendar (its posts stay where they are).
    Remove {
        /// The account name.
        account: String,
    },
    /// Hold every post of the account, fixed-time ones too: nothing starts until `resume`.
    Pause {
        /// The account name.
        account: String,
    },
    /// End a pause: posts whose time passed move to the next free slots, or `min-spacing` apart.
    Resume {
        /// The account name.
        account: String,
    },
    /// Move one post that has not started to the next free slot, or to --at.
    Reslot {
        /// The post id.
        post_id: String,
        /// RFC 3339 time with an offset (must be free for the post).
        #[arg(long)]
        at: Option<String>,
    },
    /// List the next slot instants and the posts holding them.
    Slots {
        /// The account name.
        account: String,
        /// RFC 3339 time to start from (default: now; any instant, past or years ahead).
        #[arg(long)]
        from: Option<String>,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Print a JSON array of {"at", "post"}.
        #[arg(long)]
        json: bool,
    },
    /// One week, Monday to Sunday in the account's zone: its slots and posts (what the page shows).
    Week {
        /// The account name.
        account: String,
        /// A date (YYYY-MM-DD) in the week to show (default: this week).
        #[arg(long)]
        week: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the feed's token (a new one with --rotate: the old feed URL stops working).
    FeedToken {
        /// The account name.
        account: String,
        /// Make a new token.
        #[arg(long)]
        rotate: bool,
    },
}

fn failure(e: PlanError) -> CliError {
    match e {
        PlanError::Redis(e) => CliError::Failure(anyhow::anyhow!("redis: {e}")),
        other => CliError::Failure(anyhow::anyhow!("{other}")),
    }
}

fn time_arg(flag: &str, text: &str) -> Result<DateTime<chrono::FixedOffset>, CliError> {
    DateTime::parse_from_rfc3339(text).map_err(|e| {
        CliError::Usage(format!(
            "{flag} {text:?} is not an RFC 3339 time with an offset ({e}); write e.g. 2026-12-01T18:00:00+01:00"
        ))
    })
}

/// The feed's path with its token, and the page's path.
fn paths(account: &str, token: &str) -> (String, String) {
    let name = url::form_urlencoded::byte_serialize(account.as_bytes()).collect::<String>();
    (
        format!("/calendar/{name}.ics?token={token}"),
        format!("/calendar?account={name}"),
    )
}

fn describe(cal: &Calendar, feed: &str, page: &str, listen: &str, next: &[String]) {
    let s = &cal.settings;
    println!("account:       {}", cal.account);
    println!("zone:          {}", s.zone);
    for slot in &s.slots {
        println!("slot:          {slot}");
    }
    println!(
        "min spacing:   {}",
        crate::calendar::duration::format_duration(s.min_spacing)
    );
    println!("horizon:       {} days", s.horizon_days);
    println!("daily budget:  {} posts in any 24 hours", s.daily_budget);
    match s.paused_ms.and_then(DateTime::from_timestamp_millis) {
        Some(t) => println!(
            "paused since:  {} (nothing starts until `calendar resume {}`)",
            t.with_timezone(&cal.schedule.zone()).to_rfc3339(),
            cal.account
        ),
        None => println!("paused:        no"),
    }
    println!("page:          http://{listen}{page}");
    println!("feed:          http://{listen}{feed}");
    println!("next slots:    {}", next.join(", "));
}

/// `calendar …`.
pub async fn calendar_cmd(config: Option<&Path>, cmd: CalendarCommand) -> Result<(), CliError> {
    let env = env(config).await?;
    let accounts = accounts(&env)?;
    let ledger = Ledger::new(env.conn.clone(), env.keys.clone());
    let calendars = Calendars::new(
        ledger,
        accounts,
        env.settings.worker.daily_post_budget,
        env.settings.warmup.clone(),
    );
    let listen = env.settings.http.listen.clone();
    match cmd {
        CalendarCommand::Set {
            account,
            tz,
            slots,
            min_spacing,
            horizon_days,
            daily_budget,
        } => {
            let min_spacing = match min_spacing {
                Some(text) => spacing_from_text(&text).map_err(CliError::Usage)?,
                None => DEFAULT_SPACING,
            };
            let settings = CalendarSettings {
                zone: tz,
                slots,
                min_spacing,
                horizon_days: horizon_days.unwrap_or(DEFAULT_HORIZON_DAYS),
                daily_budget: daily_budget.unwrap_or(calendars.default_budget()),
                paused_ms: None,
                updated_ms: 0,
                version: 0,
            };
            // Refused before Redis is touched, with the reason (a bad zone, cron or bound).
            settings.schedule().map_err(CliError::Usage)?;
            let cal = calendars.set(&account, settings).await.map_err(failure)?;
            let token = calendars
                .feed_token(&account, false)
                .await
                .map_err(failure)?;
            let (feed, page) = paths(&account, &token);
            let next = next_slots(&calendars, &account, 3).await?;
            println!("calendar of {account} set; posts that already have a slot keep it");
            if cal.settings.daily_budget > calendars.default_budget() {
                eprintln!(
                    "warning: --daily-budget {} is above [worker] daily_post_budget {}: posts beyond that are deferred by the worker; raise it there too, or lower this one",
                    cal.settings.daily_budget,
                    calendars.default_budget()
                );
            }
            describe(&cal, &feed, &page, &listen, &next);
        }
        CalendarCommand::Show { account, json } => {
            let cal = calendars.require(&account).await.map_err(failure)?;
            let token = calendars
                .feed_token(&account, false)
                .await
                .map_err(failure)?;
            let (feed, page) = paths(&account, &token);
            let next = next_slots(&calendars, &account, 5).await?;
            if json {
                let s = &cal.settings;
                println!(
                    "{}",
                    json!({
                        "account": account,
                        "tz": s.zone,
                        "slots": s.slots,
                        "min_spacing_secs": s.min_spacing.as_secs(),
                        "horizon_days": s.horizon_days,
                        "daily_budget": s.daily_budget,
                        "paused_since": s.paused_ms.and_then(DateTime::from_timestamp_millis)
                            .map(|t| t.with_timezone(&cal.schedule.zone()).to_rfc3339()),
                        "page_path": page,
                        "feed_path": feed,
                        "next_slots": next,
                    })
                );
            } else {
                describe(&cal, &feed, &page, &listen, &next);
            }
        }
        CalendarCommand::Remove { account } => {
            if calendars.remove(&account).await.map_err(failure)? {
                println!("calendar of {account} removed; its posts stay where they are");
            } else {
                return Err(CliError::Failure(anyhow::anyhow!(
                    "account {account:?} has no calendar"
                )));
            }
        }
        CalendarCommand::Pause { account } => {
            let since = calendars.pause(&account).await.map_err(failure)?;
            let t = DateTime::from_timestamp_millis(since).unwrap_or_default();
            println!(
                "{account} paused since {}: none of its posts starts until `tiktok-poster calendar resume {account}`",
                t.to_rfc3339()
            );
        }
        CalendarCommand::Resume { account } => {
            let r = calendars.resume(&account).await.map_err(failure)?;
            if !r.was_paused {
                println!("{account} was not paused; nothing changed");
            } else {
                println!("{account} resumed; {} post(s) moved", r.moved.len());
                for (id, at) in r.moved {
                    println!("  {id} -> {at}");
                }
            }
        }
        CalendarCommand::Reslot { post_id, at } => {
            let at = at.map(|t| time_arg("--at", &t)).transpose()?;
            let new = calendars.reslot(&post_id, at).await.map_err(failure)?;
            println!("{post_id} moved to {new}");
        }
        CalendarCommand::Slots {
            account,
            from,
            count,
            json,
        } => {
            let from = match from {
                Some(t) => time_arg("--from", &t)?.with_timezone(&Utc),
                None => Utc::now(),
            };
            let list = calendars
                .slots(&account, from, count)
                .await
                .map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string(&list).unwrap_or_default());
            } else {
                for s in list {
                    println!("{}  {}", s.at, s.post.as_deref().unwrap_or("free"));
                }
            }
        }
        CalendarCommand::Week {
            account,
            week,
            json,
        } => {
            let date = week
                .map(|d| {
                    NaiveDate::parse_from_str(&d, "%Y-%m-%d").map_err(|e| {
                        CliError::Usage(format!(
                            "--week {d:?} is not a date ({e}); write YYYY-MM-DD"
                        ))
                    })
                })
                .transpose()?;
            let w = calendars.week(&account, date).await.map_err(failure)?;
            if json {
                println!("{}", serde_json::to_string(&w).unwrap_or_default());
            } else {
                println!("{} ({}), week of {}", w.account, w.zone, w.week);
                for d in &w.days {
                    println!("{} {}", d.weekday, d.date);
                    for e in &d.entries {
                        let what = match &e.post {
                            Some(p) => format!(
                                "{} [{}] {}",
                                p.id,
                                p.state,
                                p.title.as_deref().unwrap_or("")
                            ),
                            None if e.free => "free".into(),
                            None => "-".into(),
                        };
                        println!("  {}  {what}", e.at);
                    }
                }
            }
        }
        CalendarCommand::FeedToken { account, rotate } => {
            let token = calendars
                .feed_token(&account, rotate)
                .await
                .map_err(failure)?;
            let (feed, _) = paths(&account, &token);
            if rotate {
                println!("new feed token; the old feed URL no longer works");
            }
            println!("http://{listen}{feed}");
        }
    }
    Ok(())
}

async fn next_slots(
    calendars: &Calendars,
    account: &str,
    n: usize,
) -> Result<Vec<String>, CliError> {
    Ok(calendars
        .slots(account, Utc::now(), n)
        .await
        .map_err(failure)?
        .into_iter()
        .map(|s| s.at)
        .collect())
}
