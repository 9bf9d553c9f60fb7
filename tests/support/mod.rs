//! The harness the integration tests and the benchmarks share, written once: a `redis-server` of their
//! own, a replicated Redis (a primary, a replica and three sentinels), the simulator (in-process or
//! as the binary), simulated accounts connected through the simulator's OAuth endpoints, test
//! videos, polling, free ports.
//!
//! It is a source folder, not a library module behind a cargo feature, so the library carries no test
//! code and `Cargo.toml` needs nothing: `tests/it/main.rs` includes it with
//! `#[path = "../support/mod.rs"] mod support;` and `benches/common/mod.rs` with
//! `#[path = "../../tests/support/mod.rs"]`. Each includer compiles its own copy, so a helper only one
//! side uses is dead code on the other.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test crate and benchmark includes all of it and uses a part"
)]

mod accounts;
mod redis_server;
mod sentinel;
mod sim;
mod tls;
mod video;
mod wait;

pub use accounts::{
    REDIRECT, auth_request, authorize, connect, connect_accounts, connect_accounts_with,
    connect_via_daemon, connect_via_daemon_with, param,
};
pub use redis_server::{ServerTls, TestRedis};
pub use sentinel::{SentinelTls, SwitchWatch, TestSentinels};
pub use sim::{TestSim, sim_client, sim_posts, sim_stats, start_sim, start_sim_ca, trusting};
pub use tls::{CertFiles, TestCerts};
pub use video::{GOOD_MP4, fixture, make_video, sha256_file};
pub use wait::{wait_healthy, wait_until};

/// A child process killed (SIGKILL) and reaped when dropped, so a panicking test or benchmark leaves
/// nothing running.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free TCP port on loopback: bound and released at once, so it is free when the caller binds it
/// unless another process took it in between (good enough for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
