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
//! A module uses only modules of a lower layer, never one of its own layer or above, so there is no
//! import circle (`.ci/check-layers` enforces it; `ARCHITECTURE.md` says where each feature lives):
//!
//! 0. [`db`]: Redis key names, time, connections (and waiting for Redis at start).
//! 1. `health`: the main loops' heartbeats for the watchdog, the Redis watch, the host's passing
//!    shortages (descriptors, memory).
//! 2. [`tiktok`]: the client, the only code that knows TikTok's URLs, fields, codes, limits, scopes
//!    and webhook format.
//! 3. [`config`]: typed settings from defaults, a TOML file and `TIKTOK_POSTER__…` variables (its
//!    TikTok defaults are the client's own constants).
//! 4. [`telemetry`]: logs and Prometheus metrics; [`media`]: the video probe and policy; [`sim`]: a
//!    local TikTok as strict as TikTok, for tests, benchmarks and dry runs (it may not use the client,
//!    so a misreading of TikTok cannot hide in both); [`calendar`]: posting slots in an account's
//!    zone and which of them is free (pure so far).
//! 5. [`accounts`]: the token store, its single-flight refresh and refresher, the one account-name
//!    rule.
//! 6. [`posts`]: the submission format, the states and the ledger.
//! 7. [`queue`]: the job store (due and lease indexes), its apalis backend and verdict, the
//!    reconciler, the worker identity.
//! 8. [`ingest`]: the submit stream into the ledger; [`worker`]: the publish job.
//! 9. `http`: the accounts page, the OAuth callback, webhooks, `/healthz`, `/metrics`.
//! 10. [`daemon`]: `run`'s wiring only.
//! 11. [`cli`]: the commands (`run` starts the daemon).
//!
//! Modules are private unless the binary, the integration tests or the benchmarks name them: `health`
//! and `http` are the crate's own (the daemon wires them), and each folder re-exports the few types
//! its callers need rather than opening its submodules. The submodules still public are the ones the
//! tests and benches name by path (`queue::backend`, `tiktok::upload`, `tiktok::error`,
//! `worker::rate`).

pub mod accounts;
pub mod calendar;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod db;
pub(crate) mod health;
pub(crate) mod http;
pub mod ingest;
pub mod media;
pub mod planner;
pub mod posts;
pub mod queue;
pub mod sim;
pub mod telemetry;
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
