//! The daemon's listeners: the main one (`[http] listen`: account pages, OAuth callback, health,
//! metrics) and, when `[http] webhook_listen` is set, one that serves `/webhooks/tiktok` alone.
//!
//! Both are bound before anything else and answer from then on: 503 with the reason while the daemon
//! is starting (Redis not reached yet, its worker identity held by another daemon), then the real
//! routes. They stop with the daemon, and when the daemon's start fails.

use anyhow::Context;
use axum::Router;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{AppState, serve};
use crate::config::HttpSettings;

/// The bound listeners and the routes they serve.
pub struct Listeners {
    main: watch::Sender<Router>,
    webhook: Option<watch::Sender<Router>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Stops the servers when the daemon returns, whichever way.
    _stop: DropGuard,
}

impl Listeners {
    /// Raises the open-file limit, binds the listeners and serves the start-up answer on them.
    pub async fn bind(http: &HttpSettings, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let nofile = serve::raise_nofile_limit();
        let count = if http.webhook_listen.is_empty() { 1 } else { 2 };
        let cap = serve::connection_cap(http.max_connections, nofile, count);
        if cap < http.max_connections {
            tracing::warn!(
                configured = http.max_connections,
                cap,
                nofile = nofile.unwrap_or(0),
                "The open-file limit is low; each HTTP listener serves fewer connections than [http] max_connections. Raise LimitNOFILE= in the unit."
            );
        }
        let stop = shutdown.child_token();
        let starting = super::starting_router(false, "waiting for Redis");
        let listener = tokio::net::TcpListener::bind(&http.listen)
            .await
            .with_context(|| format!("cannot listen on {} ([http] listen)", http.listen))?;
        let main_addr = listener.local_addr()?;
        if !main_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %main_addr,
                "The main HTTP listener is not on loopback: whoever reaches it can connect accounts and read their state. Keep [http] listen on 127.0.0.1 and expose only [http] webhook_listen."
            );
        }
        tracing::info!(addr = %main_addr, max_connections = cap, "HTTP server listening.");
        let (main, rx) = watch::channel(starting.clone());
        let mut tasks = vec![serve::spawn("main", listener, rx, cap, stop.clone())];
        let webhook = if http.webhook_listen.is_empty() {
            None
        } else {
            let listener = tokio::net::TcpListener::bind(&http.webhook_listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} ([http] webhook_listen)",
                        http.webhook_listen
                    )
                })?;
            tracing::info!(addr = %listener.local_addr()?, max_connections = cap, "Webhook listener listening (only /webhooks/tiktok).");
            let (tx, rx) = watch::channel(starting);
            tasks.push(serve::spawn("webhook", listener, rx, cap, stop.clone()));
            Some(tx)
        };
        Ok(Self {
            main,
            webhook,
            tasks,
            _stop: stop.drop_guard(),
        })
    }

    /// Every path of every listener answers 503 with `message` (the daemon is not ready).
    pub fn starting(&self, redis: bool, message: &str) {
        let r = super::starting_router(redis, message);
        if let Some(w) = &self.webhook {
            w.send_modify(|old| *old = r.clone());
        }
        self.main.send_modify(|old| *old = r);
    }

    /// The real routes: webhooks on their own listener when there is one, else on the main one.
    pub fn ready(&self, state: AppState) {
        match &self.webhook {
            Some(w) => {
                w.send_modify(|old| *old = super::webhook_router(state.clone()));
                self.main
                    .send_modify(|old| *old = super::router(state, false));
            }
            None => {
                self.main
                    .send_modify(|old| *old = super::router(state, true));
            }
        }
    }

    /// Waits for the servers to finish (after the daemon's shutdown token was cancelled).
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
