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
    /// That transaction, in whichever database of the PostgreSQL cluster it is (README: "When the read models
    /// lag").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_transaction: Option<OldestTransaction>,
    /// This node's read models and how far each is behind the event log.
    pub projections: Vec<ProjectionState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OldestTransaction {
    /// The server process running it (`SELECT pg_terminate_backend(pid)` ends it).
    pub pid: i32,
    /// Its database, which need not be cardap's.
    pub database: Option<String>,
    pub application: Option<String>,
    #[schema(example = "idle in transaction")]
    pub state: Option<String>,
    pub age_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionState {
    #[schema(example = "residents")]
    pub name: &'static str,
    /// Where in the event log it has applied up to (`transaction.position`).
    #[schema(example = "0.1234")]
    pub checkpoint: String,
    /// Committed events it has not applied yet: 0 when caught up (counted up to 100,000).
    pub behind: u64,
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
    let (health, projections) = match tokio::try_join!(state.status.store(), state.status.projections()) {
        Ok(answers) => answers,
        Err(e) => return ApiError::unavailable(e).into_response(),
    };
    let readiness = Readiness {
        status: "ready",
        backend: health.backend,
        oldest_transaction_ms: health.oldest_transaction_ms,
        oldest_transaction: health.oldest_transaction.map(|t| OldestTransaction {
            pid: t.pid,
            database: t.database,
            application: t.application,
            state: t.state,
            age_ms: t.age_ms,
        }),
        projections: projections
            .into_iter()
            .map(|p| ProjectionState { name: p.name, checkpoint: p.checkpoint, behind: p.behind })
            .collect(),
    };
    (StatusCode::OK, Json(readiness)).into_response()
}
