//! Prometheus metrics (`GET /metrics`): request counts by status class, commands applied, bulk-read alerts raised,
//! and per-projection checkpoints and lag. Plain counters: nothing here may slow a request.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

#[derive(Debug, Default)]
pub struct Metrics {
    responses: [AtomicU64; 5],
    pub commands_applied: AtomicU64,
}

impl Metrics {
    fn record(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Middleware: counts every response by status class.
pub async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.record(response.status().as_u16());
    response
}

/// `GET /metrics`
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP cardap_http_responses_total HTTP responses by status class.");
    let _ = writeln!(out, "# TYPE cardap_http_responses_total counter");
    for (i, n) in state.metrics.responses.iter().enumerate() {
        let _ = writeln!(out, "cardap_http_responses_total{{class=\"{}xx\"}} {}", i + 1, n.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP cardap_commands_applied_total Commands that appended events.");
    let _ = writeln!(out, "# TYPE cardap_commands_applied_total counter");
    let _ = writeln!(out, "cardap_commands_applied_total {}", state.metrics.commands_applied.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP cardap_read_alerts_total Bulk-read alerts raised (one operator over his municipality's threshold)."
    );
    let _ = writeln!(out, "# TYPE cardap_read_alerts_total counter");
    let _ = writeln!(out, "cardap_read_alerts_total {}", state.reads.alerts_raised());
    let _ = writeln!(out, "# HELP cardap_projection_position Global position each read model has applied.");
    let _ = writeln!(out, "# TYPE cardap_projection_position gauge");
    for (name, progress) in state.views.progress() {
        let _ = writeln!(out, "cardap_projection_position{{projection=\"{name}\"}} {}", progress.current().position);
    }
    if let Ok(lags) = state.status.projections().await {
        let _ = writeln!(out, "# HELP cardap_projection_lag Positions of the event log a read model has not applied.");
        let _ = writeln!(out, "# TYPE cardap_projection_lag gauge");
        for lag in lags {
            let _ = writeln!(out, "cardap_projection_lag{{projection=\"{}\"}} {}", lag.name, lag.behind);
        }
    }
    if let Ok(health) = state.status.store().await
        && let Some(ms) = health.oldest_transaction_ms
    {
        let _ = writeln!(out, "# HELP cardap_oldest_transaction_ms Age of the oldest open writing transaction.");
        let _ = writeln!(out, "# TYPE cardap_oldest_transaction_ms gauge");
        let _ = writeln!(out, "cardap_oldest_transaction_ms {ms}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
