//! The accept loop behind the daemon's listeners (the main one and the webhook one), written on hyper
//! because `axum::serve` can bound neither the time a connection may sit idle nor how many there are.
//!
//! A flood of idle connections must not take the daemon down: each connection holds a descriptor, and
//! the descriptors the daemon has are shared with its Redis connections and the videos it reads. So:
//! - at most `max_connections` connections are served at once; one over the cap is answered `503` and
//!   closed at once (never left holding a descriptor);
//! - a connection that sends no complete request head within [`HEADER_READ_TIMEOUT`] (the first one,
//!   or the next one on a kept-alive connection) is closed, and none lives past [`MAX_CONNECTION_AGE`];
//! - an accept error (EMFILE, ENFILE, ENOMEM) is logged and waited out for a moment, never spun on;
//! - the routes can be swapped while serving (the start-up pages, then the real ones), so the port
//!   answers from the first moment, with the reason while the daemon is not ready yet.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// How long a connection may take to send a request head, counted from when it is accepted or from
/// its previous response: slow or idle clients give their descriptor back after this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection is served (every request the daemon answers takes milliseconds).
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// Descriptors kept for everything but HTTP connections (Redis, the TikTok client, videos, logs).
pub const RESERVED_DESCRIPTORS: u64 = 256;
/// How long the loop waits after an accept error before accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// What a connection over the cap gets before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 36\r\nconnection: close\r\nretry-after: 5\r\n\r\ntoo many connections; try again soon\n";

/// Raises the soft limit of open descriptors to the hard one (systemd gives services 1,024 by
/// default) and returns the soft limit now in force (`None` when it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    let before = rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) => {
            if before.is_some_and(|b| b < now) {
                tracing::info!(
                    from = before.unwrap_or(0),
                    to = now,
                    "Raised the open-file limit to the hard limit."
                );
            }
            Some(now)
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot raise the open-file limit; keeping the current one.");
            before
        }
    }
}

/// The connections each of `listeners` may serve: `configured`, but never so many that the
/// listeners together leave fewer than [`RESERVED_DESCRIPTORS`] of the `nofile` limit.
pub fn connection_cap(configured: usize, nofile: Option<u64>, listeners: usize) -> usize {
    let budget = nofile
        .map(|n| n.saturating_sub(RESERVED_DESCRIPTORS) / listeners.max(1) as u64)
        .unwrap_or(u64::MAX);
    configured
        .min(budget.min(usize::MAX as u64) as usize)
        .max(1)
}

/// Serves `routes` (the current value, read at each request) on `listener` until `shutdown`; then lets
/// the connections in flight finish their request (a few seconds at most) and returns.
pub fn spawn(
    name: &'static str,
    listener: TcpListener,
    routes: watch::Receiver<Router>,
    max_connections: usize,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(accept_loop(
        name,
        listener,
        routes,
        max_connections,
        shutdown,
    ))
}

async fn accept_loop(
    name: &'static str,
    listener: TcpListener,
    routes: watch::Receiver<Router>,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    let mut last_error_log: Option<tokio::time::Instant> = None;
    let mut last_busy_log: Option<tokio::time::Instant> = None;
    let quiet = |last: &mut Option<tokio::time::Instant>| {
        let now = tokio::time::Instant::now();
        let due = last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60));
        if due {
            *last = Some(now);
        }
        due
    };
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if quiet(&mut last_error_log) {
                        tracing::warn!(listener = name, %error, "Cannot accept an HTTP connection (out of descriptors?); pausing briefly.");
                    }
                    // Not a backoff (so not backon): the accept loop runs forever, pausing a fixed
                    // moment so a descriptor shortage does not spin it.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: say so and give the descriptor back at once.
            let _ = stream.try_write(BUSY);
            drop(stream);
            if quiet(&mut last_busy_log) {
                tracing::warn!(
                    listener = name,
                    max_connections,
                    "Too many HTTP connections; refusing new ones until some close ([http] max_connections)."
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            serve_connection(stream, routes, shutdown).await;
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    routes: watch::Receiver<Router>,
    shutdown: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = routes.borrow().clone();
        async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(age);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                age.as_mut().reset(tokio::time::Instant::now() + HEADER_READ_TIMEOUT);
            }
            _ = &mut age => {
                if closing {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                // A client that does not finish its request after this is cut off.
                age.as_mut().reset(tokio::time::Instant::now() + HEADER_READ_TIMEOUT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::connection_cap;

    #[test]
    fn the_connection_cap_leaves_descriptors_for_everything_else() {
        assert_eq!(connection_cap(512, Some(1_048_576), 1), 512);
        assert_eq!(connection_cap(512, Some(1024), 1), 512);
        assert_eq!(connection_cap(512, Some(1024), 2), 384);
        assert_eq!(connection_cap(512, Some(512), 1), 256);
        assert_eq!(connection_cap(512, Some(100), 1), 1, "never zero");
        assert_eq!(connection_cap(512, None, 2), 512);
    }
}
