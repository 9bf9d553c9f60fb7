//! Prometheus metrics (served at `/metrics`): counters and histograms recorded where things happen,
//! gauges computed from Redis when scraped.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the global recorder once per process (several in-process daemons share it in tests).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                ])
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// A post changed state.
pub fn post_state(state: &str) {
    metrics::counter!("tiktok_poster_post_transitions_total", "state" => state.to_string())
        .increment(1);
}

/// TikTok answered with an error code.
pub fn tiktok_error(code: &str) {
    metrics::counter!("tiktok_poster_tiktok_errors_total", "code" => code.to_string()).increment(1);
}

/// A whole upload finished.
pub fn upload(bytes: u64, secs: f64) {
    metrics::counter!("tiktok_poster_uploaded_bytes_total").increment(bytes);
    metrics::histogram!("tiktok_poster_upload_seconds").record(secs);
}

/// A post first reached a worker this long after it was due.
pub fn start_lag(secs: f64) {
    metrics::histogram!("tiktok_poster_due_to_start_seconds").record(secs.max(0.0));
}

/// A token refresh finished.
pub fn refresh(ok: bool) {
    if ok {
        metrics::counter!("tiktok_poster_token_refreshes_total").increment(1);
    } else {
        metrics::counter!("tiktok_poster_token_refresh_failures_total").increment(1);
    }
}
