//! Login, logout and "who am I" (手引き I 2.1(4)(a): municipality + operator ID + password → top page).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cardap_domain::MunicipalityCode;
use cardap_domain::operator::OperatorId;
use cardap_projections::operators;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Authenticated, Secret};
use crate::error::{ApiError, ProblemDetails};
use crate::json::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(login))
        .route("/api/v1/sessions/current", delete(logout))
        .route("/api/v1/me", get(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"municipality": "131016", "operator_id": "OP0501", "password": "…"}))]
pub struct Login {
    /// The operator's municipality; omitted for the system administrator.
    pub municipality: Option<String>,
    pub operator_id: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("municipality", &self.municipality)
            .field("operator_id", &self.operator_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// Send as `Authorization: Bearer <token>`. Shown once; the server keeps only its hash.
    pub token: String,
    /// The session ends at this time at the latest (it also ends after a period without use).
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    #[schema(example = "OP0501")]
    pub operator_id: String,
    /// `null` for the system administrator.
    #[schema(example = "131016")]
    pub municipality: Option<String>,
    #[schema(example = json!(["clerk"]))]
    pub roles: Vec<String>,
    /// The business systems usable now (his permission ∩ shared use ∩ not revoked).
    pub business_systems: Vec<String>,
}

/// Log in with municipality, operator ID and password.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = Login,
    responses((status = 201, body = SessionCreated), (status = 401, body = ProblemDetails),
        (status = 422, body = ProblemDetails)))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Login>,
) -> Result<impl IntoResponse, ApiError> {
    let password = Secret::new(body.password);
    // A login that names nothing valid is refused exactly like a wrong password, after the same work.
    let municipality = match body.municipality.as_deref() {
        Some(code) => MunicipalityCode::parse(code).ok().map(Some),
        None => Some(None),
    };
    let operator = match (municipality, OperatorId::parse(&body.operator_id).ok()) {
        (Some(municipality), Some(id)) => {
            operators::find_by_login(state.read.pool(), municipality.as_ref(), &id).await?
        }
        _ => None,
    };
    let stored = match &operator {
        Some(op) => auth::credential_of(state.read.pool(), op.key).await?,
        None => None,
    };
    let verified = auth::verify_password(password, stored).await?;
    let Some(operator) = operator.filter(|_| verified) else {
        tracing::info!(operator_id = %body.operator_id, "login refused");
        return Err(ApiError::invalid_credentials());
    };
    let session = auth::create_session(state.read.pool(), operator.key, state.sessions).await?;
    tracing::info!(operator = %operator.key, "login");
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated { token: session.token.expose().to_owned(), expires_at: session.expires_at }),
    ))
}

/// End the current session.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemDetails)))]
pub async fn logout(State(state): State<AppState>, auth: Authenticated) -> Result<StatusCode, ApiError> {
    auth::end_session(state.read.pool(), &auth.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who am I, and which business systems may I use now (the operator top page).
#[utoipa::path(get, path = "/api/v1/me", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ProblemDetails)))]
pub async fn me(auth: Authenticated) -> Json<Me> {
    Json(Me {
        operator_id: auth.operator_id,
        municipality: auth.actor.municipality.map(|m| m.to_string()),
        roles: auth.actor.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        business_systems: vec![],
    })
}
