//! The command line: one binary, the commands of DESIGN section 1.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage error, 78 configuration error (so systemd's
//! `RestartPreventExitStatus=78` stops a restart loop on a bad config).

use std::path::PathBuf;
use std::process::ExitCode;

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
    Enqueue {
        /// A JSON file holding the submission (see jobs/).
        #[arg(long)]
        file: Option<PathBuf>,
    },
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
    },
    /// Run a failed post again (refused where the post may already be live).
    Retry {
        /// The post id.
        id: String,
    },
    /// The TikTok accounts and their token state.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Probe videos locally and print every rule each one breaks.
    Validate {
        /// Video files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load and validate the configuration and print the effective values (secrets masked).
    CheckConfig,
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
        })
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Config(e) => write!(f, "{e}"),
            Self::Usage(m) => write!(f, "{m}"),
            // The whole chain, once.
            Self::Failure(e) => write!(f, "{e:#}"),
        }
    }
}

/// Loads the settings named by the flag or the usual places.
pub fn load_settings(flag: Option<&std::path::Path>) -> Result<Settings, ConfigError> {
    let path = resolve_path(flag, std::env::var(CONFIG_ENV).ok())?;
    Settings::load(path.as_deref(), std::env::vars())
}

fn not_yet(command: &str, issue: u32, what: &str) -> CliError {
    CliError::Failure(anyhow::anyhow!(
        "`tiktok-poster {command}` is not implemented yet: it arrives with issue #{issue} ({what})"
    ))
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
            print!("{}", s.to_masked_toml());
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
            Err(not_yet("run", 3, "the posting pipeline"))
        }
        Command::Enqueue { .. } => Err(not_yet("enqueue", 3, "the posting pipeline")),
        Command::Status { .. } => Err(not_yet("status", 3, "the posting pipeline")),
        Command::List { .. } => Err(not_yet("list", 3, "the posting pipeline")),
        Command::Cancel { .. } => Err(not_yet("cancel", 3, "the posting pipeline")),
        Command::Retry { .. } => Err(not_yet("retry", 3, "the posting pipeline")),
        Command::Accounts(_) => Err(not_yet("accounts", 4, "accounts and the token store")),
        Command::Validate { .. } => Err(not_yet("validate", 5, "video checks")),
    }
}

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
            vec!["accounts", "refresh", "main"],
            vec!["accounts", "remove", "main"],
            vec!["validate", "a.mp4", "b.mp4"],
            vec!["check-config"],
            vec!["--config", "/x.toml", "check-config"],
        ] {
            let argv = std::iter::once("tiktok-poster").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_ok(), "{args:?}");
        }
    }
}
