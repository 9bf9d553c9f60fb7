//! The token refresher: refreshes each account when its planned time comes (several at once,
//! single-flight across processes), plans a failed refresh again with backoff, and warns about accounts
//! that must reconnect soon. Started by the daemon's wiring.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AccountError, Accounts};

/// Refreshes each account when its planned time comes (several at once, single-flight across
/// processes), retries failed refreshes with backoff, and warns about accounts that must reconnect soon.
pub async fn refresh_loop(
    accounts: Accounts,
    every: Duration,
    warn_days: u64,
    shutdown: CancellationToken,
) {
    let mut last_warning = tokio::time::Instant::now() - Duration::from_secs(24 * 3600);
    let mut failures: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    // A poll on the fixed `[tokens] refresh_check_ms` cadence, not a backoff loop: the backoff of a
    // failed refresh is a later planned time in Redis (below), shared by every daemon.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if last_warning.elapsed() > Duration::from_secs(3600) {
            last_warning = tokio::time::Instant::now();
            if let Ok(list) = accounts.list().await {
                let limit = crate::db::now_ms() + (warn_days as i64) * 86_400_000;
                for a in list
                    .iter()
                    .filter(|a| a.state == "ok" && a.refresh_expires_ms < limit)
                {
                    let until = chrono::DateTime::from_timestamp_millis(a.refresh_expires_ms)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default();
                    tracing::warn!(account = %a.name, until = %until, "The account must be connected again before its authorization expires.");
                }
            }
        }
        let due = match accounts.due_for_refresh(200).await {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(%error, "Refresher cannot read the plan; retrying.");
                continue;
            }
        };
        let results = futures_util::future::join_all(due.into_iter().map(|name| {
            let accounts = accounts.clone();
            async move {
                let r = accounts.planned_refresh(&name).await;
                (name, r)
            }
        }))
        .await;
        for (name, r) in results {
            match r {
                Ok(()) | Err(AccountError::ReauthRequired(_)) => {
                    crate::telemetry::metrics::refresh(true);
                    failures.remove(&name);
                }
                Err(error) => {
                    crate::telemetry::metrics::refresh(false);
                    let n = failures.entry(name.clone()).or_default();
                    *n += 1;
                    let delay = (1_000i64 << (*n - 1).min(9)).min(300_000);
                    tracing::warn!(account = %name, %error, retry_in_ms = delay, "Token refresh failed; retrying with backoff.");
                    let _ = accounts
                        .plan_refresh_at(&name, crate::db::now_ms() + delay)
                        .await;
                }
            }
        }
    }
}
