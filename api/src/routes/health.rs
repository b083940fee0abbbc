//! Liveness and readiness for load balancers and orchestrators.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `postgres` or `sqlite`.
    pub backend: &'static str,
    /// Age of the oldest open writing transaction (PostgreSQL): it delays event delivery to views and feeds.
    pub oldest_transaction_ms: Option<u64>,
}

/// The process is alive.
#[utoipa::path(get, operation_id = "healthz",
    path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database answers: this node can serve requests.
#[utoipa::path(get, operation_id = "readyz", path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, body = crate::error::ProblemDetails)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.status.store().await {
        Ok(h) => (
            StatusCode::OK,
            Json(Readiness { status: "ready", backend: h.backend, oldest_transaction_ms: h.oldest_transaction_ms }),
        )
            .into_response(),
        Err(e) => ApiError::unavailable(e).into_response(),
    }
}
