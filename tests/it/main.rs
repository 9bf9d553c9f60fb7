//! Integration tests: the real client against the real simulator over loopback, and the real binary.
//!
//! - `oauth`: authorize, code exchange, refresh with rotation, revoke, PKCE.
//! - `posting`: creator_info, inits, status, cancel, caps and rate limits, faults.
//! - `upload`: chunked uploads, resumes after 416 and dropped connections, expiry.
//! - `pipeline`: the daemon end to end with its own redis-server.
//! - `cluster_keys`: a `{namespace}` puts every key in one slot; the daemon on a Cluster-mode endpoint.
//! - `redis_tls`: `rediss://` with a private CA and mutual TLS; certificates that must be refused.
//! - `sentinel`: a primary, a replica and three sentinels; `SENTINEL FAILOVER` and a killed primary.
//! - `input`: hostile submissions and oversized answers (rejected with a reason, echoed within bounds).
//! - `cli`: the binary's commands and exit codes.
//! - `blocked`: `posting_blocked`: a banned account, the app's active-user cap, `accounts resume`.
//! - `confirm`: `unconfirmed` posts resolved from TikTok's video list; posts' stats read back.
//! - `display`: the Display API and user info: fields by scope, list paging, queries, rate limits.
//! - `files`: where videos may come from, a file changed during upload, transient read errors.
//! - `hostile_video`: crafted files against the probe's memory and time bounds, and crash loops.
//! - `safety`: the warm-up of new accounts (caps, the activity check, scopes, skips, calendar slots).
//! - `calendar`, `calendar_views`: the posting calendar through two daemons; its feed, page and
//!   screenshot over real HTTP and in headless Chromium.
//!
//! The harness (a `redis-server` of the test's own, the simulator, connected accounts, videos,
//! `wait_until`, free ports) is `tests/support/`, shared with the benchmarks; `app` builds the daemon
//! under test on it.

mod accounts;
mod app;
mod blocked;
mod browser;
mod calendar;
mod calendar_views;
mod cli;
mod cluster_keys;
mod confirm;
mod crafted_mp4;
mod crafted_webm;
mod crash;
mod display;
mod exposure;
mod faults;
mod files;
mod flood;
mod hostile_video;
mod input;
mod media;
mod oauth;
mod pipeline;
mod posting;
mod redis_ha;
mod redis_tls;
mod safety;
mod sentinel;
mod sim_tls;
mod upload;
mod webhooks;

#[path = "../support/mod.rs"]
mod support;
