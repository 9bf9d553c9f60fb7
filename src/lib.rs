//! tiktok-poster: a daemon that posts videos to TikTok through the official Content Posting API.
//!
//! # How a post flows
//!
//! A producer (a calendar, a script, a person with `redis-cli`) adds an entry to the submit stream.
//! Ingest validates it and records the post in the ledger (a hash per post, the source of truth) and
//! in the due index; anything rejected goes to the rejected stream with its reason. Workers claim due
//! posts straight from the due index under a lease (no separate scheduler stage), get a fresh token,
//! check the video, call TikTok (creator_info, init, chunked upload, status) and record each state
//! change; each claim ends with the handler's verdict (done, or due again at a time). A reconciler
//! re-queues any post that is neither finished nor queued nor leased, so a lost queue entry never loses
//! a post; a post that has a `publish_id` is never initialised twice unless TikTok said the first
//! attempt cannot be published.
//!
//! # Modules, lowest layer first
//!
//! A module uses only modules of a lower layer (`.ci/check-layers` enforces it):
//!
//! 0. [`db`]: Redis key names, time, connections (and waiting for Redis at start).
//! 1. [`config`]: typed settings from defaults, a TOML file and `TIKTOK_POSTER__…` variables.
//! 2. [`telemetry`] and [`telemetry_metrics`]: logs and Prometheus metrics; [`health`]: the main loops'
//!    heartbeats for the watchdog, the Redis watch, the host's passing shortages.
//! 3. [`tiktok`]: the only code that knows TikTok's URLs, fields, codes, limits and webhook format;
//!    [`media`]: the video probe and policy; [`sim`]: a local TikTok as strict as TikTok, for tests,
//!    benchmarks and dry runs (it does not use the client).
//! 4. [`posts`]: the submission format, the states and the ledger; [`accounts`]: the token store and
//!    its refresher.
//! 5. [`queue`]: the job store (due and lease indexes), its apalis backend and verdict, the
//!    reconciler, the worker identity.
//! 6. [`ingest`]: the submit stream into the ledger; [`worker`]: the publish job.
//! 7. [`http`]: the accounts page, the OAuth callback, webhooks, `/healthz`, `/metrics`.
//! 8. [`daemon`]: `run`'s wiring only.
//! 9. [`cli`]: the commands (`run` starts the daemon).

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
