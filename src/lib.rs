//! tiktok-poster: a daemon that posts videos to TikTok through the official Content Posting API.
//!
//! # How a post flows
//!
//! A producer (a calendar, a script, a person with `redis-cli`) adds an entry to the submit stream.
//! Ingest validates it and records the post in the ledger (a hash per post, the source of truth) and
//! in the due index; anything rejected goes to the rejected stream with its reason. The scheduler moves
//! due posts to the job queue in bounded batches; workers take jobs, get a fresh token, check the video,
//! call TikTok (creator_info, init, chunked upload, status) and record each state change. A reconciler
//! re-queues any post that is neither finished nor being worked on, so a lost queue entry never loses a
//! post; a post that has a `publish_id` is never initialised twice unless TikTok said the first attempt
//! cannot be published.
//!
//! # Modules
//!
//! - [`config`]: typed settings from defaults, a TOML file and `TIKTOK_POSTER__…` variables.
//! - [`cli`]: the commands.
//! - [`tiktok`]: the only code that knows TikTok's URLs and JSON (OAuth, posting, upload, errors).
//! - [`sim`]: a local TikTok as strict as TikTok, for tests, benchmarks and dry runs.
//! - `posts`, `queue`, `worker`, `accounts`, `media`, `http`: the ledger, the job store, the handlers,
//!   the token store, the video probe and the daemon's HTTP server (being built; see the issues).

pub mod accounts;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub mod health;
pub mod http;
pub mod ingest;
pub mod media;
pub mod posts;
pub mod queue;
pub mod sim;
pub mod telemetry;
pub mod telemetry_metrics;
pub mod tiktok;
pub mod worker;

/// Completes on SIGINT or SIGTERM (systemd stops services with SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
