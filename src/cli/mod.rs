//! The command line: one binary, the commands of DESIGN section 1.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage error, 69 no usable Redis primary for `[redis]
//! give_up_after_secs` (systemd starts `run` again), 78 configuration error (so systemd's
//! `RestartPreventExitStatus=78` stops a restart loop on a bad config).

use std::path::PathBuf;
use std::process::ExitCode;

pub use calendar::CalendarCommand;
use clap::{Parser, Subcommand};

use crate::config::{CONFIG_ENV, ConfigError, Settings, resolve_path};
use crate::sim::SimConfig;

/// Posts videos to TikTok through the official Content Posting API, fed from Redis.
#[derive(Debug, Parser)]
#[command(name = "tiktok-poster", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (default: $TIKTOK_POSTER_CONFIG, ./config.toml, /etc/tiktok-poster/config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: ingest, scheduler, workers, token refresher, reconciler, HTTP server.
    Run,
    /// Run a local TikTok simulator (same HTTP API as TikTok) for tests, demos and dry runs.
    Sim(SimConfig),
    /// Add a post from flags or a JSON file; validates at once and prints the post id.
    Enqueue(EnqueueArgs),
    /// Show one post and its state.
    Status {
        /// The post id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List posts with their state.
    List {
        /// Only posts in this state.
        #[arg(long)]
        state: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a post that has not been sent.
    Cancel {
        /// The post id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a failed post again (refused where the post may already be live).
    Retry {
        /// The post id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The TikTok accounts and their token state.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Each account's posting calendar: slots in its zone, "add to queue", pause, the page and feed.
    #[command(subcommand)]
    Calendar(CalendarCommand),
    /// Probe videos locally and print every rule each one breaks (exit 1 when any fails).
    Validate {
        /// Video files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON array: one {"path", "ok", "info", "violations"} object per file.
        #[arg(long)]
        json: bool,
        /// The rules to check: `brief` or `api` (default: `[video] policy` from the configuration,
        /// else `brief`).
        #[arg(long, value_enum)]
        policy: Option<crate::config::Policy>,
    },
    /// Load and validate the configuration and print the effective values (secrets masked).
    CheckConfig,
    /// The token sealing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Accept that Redis lost the daemon's data (it restarted empty or was flushed): running daemons
    /// stop reporting the loss in /healthz and go on with what Redis holds now.
    RedisLossAck,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
#[expect(
    rustdoc::broken_intra_doc_links,
    reason = "`[tokens]` is the config section in clap's help text, which shows the doc comment as written"
)]
pub enum KeysCommand {
    /// Write a new random 32-byte key file with mode 0600 (never overwrites).
    Generate {
        /// Where to write it (default: [tokens] encryption_key_file).
        path: Option<PathBuf>,
    },
    /// Re-seal every stored token and upload URL under [tokens] encryption_key_file (the old key is
    /// [tokens] previous_key_file).
    Rotate,
}

/// `enqueue` flags: the submission fields, or a JSON file.
#[derive(Debug, clap::Args)]
pub struct EnqueueArgs {
    /// A JSON file holding the whole submission (see jobs/); other flags are then not allowed.
    #[arg(long, conflicts_with_all = ["account", "video", "video_url", "title", "privacy_level"])]
    pub file: Option<PathBuf>,
    /// Idempotency key: the same id is never posted twice (default: a new id).
    #[arg(long)]
    pub id: Option<String>,
    /// The account name given at `accounts connect`.
    #[arg(long)]
    pub account: Option<String>,
    /// Absolute path of the video file.
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// A URL TikTok downloads (PULL_FROM_URL; the domain must be verified with TikTok).
    #[arg(long)]
    pub video_url: Option<String>,
    /// Caption, up to 2200 UTF-16 code units.
    #[arg(long)]
    pub title: Option<String>,
    /// PUBLIC_TO_EVERYONE, MUTUAL_FOLLOW_FRIENDS, FOLLOWER_OF_CREATOR or SELF_ONLY (required).
    #[arg(long)]
    pub privacy_level: Option<String>,
    /// Upload to the creator's inbox as a draft.
    #[arg(long)]
    pub draft: bool,
    /// RFC 3339 time with an offset (default: now).
    #[arg(long, conflicts_with = "slot")]
    pub publish_at: Option<String>,
    /// `next`: the account's next free calendar slot (see `calendar set`) instead of --publish-at.
    #[arg(long)]
    pub slot: Option<String>,
    /// Turn duets off.
    #[arg(long)]
    pub disable_duet: bool,
    /// Turn stitches off.
    #[arg(long)]
    pub disable_stitch: bool,
    /// Turn comments off.
    #[arg(long)]
    pub disable_comment: bool,
    /// Label as AI-generated.
    #[arg(long)]
    pub is_aigc: bool,
    /// Paid partnership (not with SELF_ONLY).
    #[arg(long)]
    pub brand_content_toggle: bool,
    /// Promotes the creator's own business.
    #[arg(long)]
    pub brand_organic_toggle: bool,
    /// Cover frame, in milliseconds.
    #[arg(long)]
    pub video_cover_timestamp_ms: Option<u32>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl EnqueueArgs {
    fn fields(&self) -> Vec<(String, String)> {
        let mut f = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                f.push((k.to_string(), v));
            }
        };
        put("id", self.id.clone());
        put("account", self.account.clone());
        put(
            "video",
            self.video.as_ref().map(|p| {
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string()
            }),
        );
        put("video_url", self.video_url.clone());
        put("title", self.title.clone());
        put("privacy_level", self.privacy_level.clone());
        put("publish_at", self.publish_at.clone());
        put("slot", self.slot.clone());
        put(
            "video_cover_timestamp_ms",
            self.video_cover_timestamp_ms.map(|v| v.to_string()),
        );
        for (k, v) in [
            ("draft", self.draft),
            ("disable_duet", self.disable_duet),
            ("disable_stitch", self.disable_stitch),
            ("disable_comment", self.disable_comment),
            ("is_aigc", self.is_aigc),
            ("brand_content_toggle", self.brand_content_toggle),
            ("brand_organic_toggle", self.brand_organic_toggle),
        ] {
            if v {
                put(k, Some("true".into()));
            }
        }
        f
    }
}

/// `accounts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List connected accounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the URL to connect an account and wait for the callback.
    Connect {
        /// The account name posts will refer to.
        name: String,
        /// Allow connecting an existing account to a different TikTok user than the one it has
        /// (without it, that is refused and nothing changes).
        #[arg(long)]
        replace: bool,
    },
    /// Refresh an account's tokens now.
    Refresh {
        /// The account name.
        name: String,
    },
    /// Revoke an account's token at TikTok, then forget it.
    Remove {
        /// The account name.
        name: String,
    },
    /// Show where an account stands in its warm-up, or skip it (`--skip`) or put it back on its
    /// ramp (`--ramp`).
    Warmup {
        /// The account name.
        name: String,
        /// The account is not new: give it the full daily budget from now on.
        #[arg(long, conflicts_with = "ramp")]
        skip: bool,
        /// Undo a skip (the operator's or the activity check's): the ramp applies again, counted
        /// from the account's first post through the daemon.
        #[arg(long)]
        ramp: bool,
    },
    /// Clear an account's `posting_blocked` state (or, with --app, the app-wide one) and make the
    /// posts it held due now, a few seconds apart.
    Resume {
        /// The account name.
        #[arg(required_unless_present = "app", conflicts_with = "app")]
        name: Option<String>,
        /// Clear the app-wide block (TikTok's `reached_active_user_cap`) instead.
        #[arg(long)]
        app: bool,
    },
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum CliError {
    /// Exit 78.
    Config(ConfigError),
    /// Exit 2.
    Usage(String),
    /// Exit 1.
    Failure(anyhow::Error),
    /// This exit code, with nothing more to say (the command printed its findings).
    Quiet(u8),
    /// Exit 69 (`EX_UNAVAILABLE`): `run` found no usable Redis primary for `[redis]
    /// give_up_after_secs`; systemd starts it again.
    Unavailable(String),
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Failure(e)
    }
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Config(_) => 78,
            Self::Usage(_) => 2,
            Self::Failure(_) => 1,
            Self::Quiet(c) => *c,
            Self::Unavailable(_) => 69,
        })
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::Usage(m) | Self::Unavailable(m) => write!(f, "{m}"),
            // The whole chain, once.
            Self::Failure(e) => write!(f, "{e:#}"),
            Self::Quiet(_) => Ok(()),
        }
    }
}

/// Loads the settings named by the flag or the usual places.
pub fn load_settings(flag: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
    let path = resolve_path(flag, std::env::var(CONFIG_ENV).ok())?;
    let settings = Settings::load(path.as_deref(), std::env::vars())?;
    if path.is_none() {
        eprintln!(
            "note: no configuration file found (--config, ${CONFIG_ENV}, ./config.toml, /etc/tiktok-poster/config.toml); using the built-in defaults and TIKTOK_POSTER__* variables: Redis at {}, namespace {:?}",
            crate::db::redact_url(&settings.redis.url),
            settings.redis.namespace
        );
    }
    Ok(settings)
}

/// Runs a parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Sim(cfg) => {
            crate::telemetry::init(crate::config::LogFormat::Auto, "info");
            cfg.validate().map_err(CliError::Usage)?;
            crate::sim::run(cfg).await?;
            Ok(())
        }
        Command::CheckConfig => {
            let s = load_settings(cli.config.as_deref())?;
            // What `run` would refuse, check-config refuses too.
            s.token_keys()?;
            print!("{}", s.to_masked_toml());
            let (dirs, problems) = crate::media::file::resolve_dirs(&s.video.allowed_dirs);
            let dirs: Vec<String> = dirs
                .iter()
                .map(|d| format!("{:?}", d.display().to_string()))
                .collect();
            println!(
                "# effective video.allowed_dirs (resolved): [{}]",
                dirs.join(", ")
            );
            for p in problems {
                eprintln!("warning: {p}");
            }
            if !s.has_credentials() {
                eprintln!(
                    "note: no TikTok client key and secret are configured; only a simulator at tiktok.api_base ({}) will accept requests",
                    s.tiktok.api_base
                );
            }
            Ok(())
        }
        Command::Run => {
            let s = load_settings(cli.config.as_deref())?;
            crate::telemetry::init(s.log.format, &s.log.level);
            let shutdown = tokio_util::sync::CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                crate::shutdown_signal().await;
                signal.cancel();
            });
            crate::daemon::run(s, shutdown)
                .await
                .map_err(|e| match e.downcast::<ConfigError>() {
                    Ok(c) => CliError::Config(c),
                    Err(e) => match e.downcast::<crate::db::startup::Unavailable>() {
                        Ok(u) => CliError::Unavailable(u.0),
                        Err(e) => CliError::Failure(e),
                    },
                })
        }
        Command::Keys(KeysCommand::Generate { path }) => {
            let path = match path {
                Some(p) => p,
                None => {
                    load_settings(cli.config.as_deref())?
                        .tokens
                        .encryption_key_file
                }
            };
            let key = crate::accounts::TokenKey::generate_file(&path)
                .map_err(|e| CliError::Failure(e.into()))?;
            println!(
                "wrote a new token key to {} (key id {}, mode 0600)",
                path.display(),
                key.id()
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => commands::rotate_keys(cli.config.as_deref()).await,
        Command::RedisLossAck => commands::redis_loss_ack(cli.config.as_deref()).await,
        Command::Enqueue(args) => commands::enqueue(cli.config.as_deref(), args).await,
        Command::Status { id, json } => commands::status(cli.config.as_deref(), &id, json).await,
        Command::List { state, json } => {
            commands::list(cli.config.as_deref(), state.as_deref(), json).await
        }
        Command::Cancel { id, json } => commands::cancel(cli.config.as_deref(), &id, json).await,
        Command::Retry { id, json } => retry::retry(cli.config.as_deref(), &id, json).await,
        Command::Accounts(cmd) => accounts::accounts_cmd(cli.config.as_deref(), cmd).await,
        Command::Calendar(cmd) => calendar::calendar_cmd(cli.config.as_deref(), cmd).await,
        Command::Validate {
            files,
            json,
            policy,
        } => validate::validate(cli.config.as_deref(), &files, json, policy).await,
    }
}

mod accounts;
mod calendar;
mod commands;
mod progress;
mod retry;
mod validate;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_documented_command_parses() {
        for args in [
            vec!["run"],
            vec!["sim", "--listen", "127.0.0.1:0"],
            vec!["enqueue", "--file", "x.json"],
            vec!["status", "p1", "--json"],
            vec!["list", "--state", "failed"],
            vec!["cancel", "p1"],
            vec!["retry", "p1"],
            vec!["accounts", "list", "--json"],
            vec!["accounts", "connect", "main"],
            vec!["accounts", "connect", "main", "--replace"],
            vec!["accounts", "refresh", "main"],
            vec!["accounts", "remove", "main"],
            vec![
                "calendar",
                "set",
                "main",
                "--tz",
                "Europe/Berlin",
                "--slot",
                "30 9 * * MON-FRI",
                "--slot",
                "0 18 * * *",
                "--min-spacing",
                "2h",
                "--horizon-days",
                "30",
                "--daily-budget",
                "5",
            ],
            vec!["calendar", "show", "main", "--json"],
            vec!["calendar", "remove", "main"],
            vec!["calendar", "pause", "main"],
            vec!["calendar", "resume", "main"],
            vec!["calendar", "reslot", "p1"],
            vec![
                "calendar",
                "reslot",
                "p1",
                "--at",
                "2026-12-01T18:00:00+01:00",
            ],
            vec![
                "calendar",
                "slots",
                "main",
                "--from",
                "2027-03-28T00:00:00Z",
                "--count",
                "5",
                "--json",
            ],
            vec!["calendar", "week", "main", "--week", "2026-12-01", "--json"],
            vec!["calendar", "feed-token", "main", "--rotate"],
            vec![
                "enqueue",
                "--account",
                "main",
                "--video",
                "/v.mp4",
                "--privacy-level",
                "SELF_ONLY",
                "--slot",
                "next",
            ],
            vec!["validate", "a.mp4", "b.mp4"],
            vec!["check-config"],
            vec!["redis-loss-ack"],
            vec!["keys", "generate", "/tmp/k"],
            vec![
                "enqueue",
                "--account",
                "main",
                "--video",
                "/v.mp4",
                "--privacy-level",
                "SELF_ONLY",
                "--draft",
            ],
            vec!["--config", "/x.toml", "check-config"],
        ] {
            let argv = std::iter::once("tiktok-poster").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_ok(), "{args:?}");
        }
    }
}
