//! Polling: a test or benchmark waits for an outcome it cannot be told about, with a deadline that
//! names what it waited for.

use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` after `timeout`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `url` (a daemon's `/healthz`) answers with a success, failing with `what` after
/// `timeout`.
pub async fn wait_healthy(url: &str, timeout: Duration, what: &str) {
    let http = reqwest::Client::new();
    wait_until(timeout, what, || {
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
}
