//! Login, logout and "who am I" (手引き I 2.1(4)(a): municipality + operator ID + password → top page).

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use cardap_commands::access::{LoginError, PasswordError};
use cardap_domain::Timestamp;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authenticated, Secret};
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::Text;
use crate::json::ApiJson;
use crate::routes::RequestMeta;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        // A login body is a few dozen bytes: the limit keeps anonymous callers from sending megabytes to parse.
        .route("/api/v1/sessions", post(login).layer(DefaultBodyLimit::max(LOGIN_BODY_LIMIT)))
        .route("/api/v1/sessions/current", delete(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", put(change_own_password))
}

/// The largest login body accepted (a password is at most 64 characters).
pub const LOGIN_BODY_LIMIT: usize = 4 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"municipality": "131016", "operator_id": "OP0501", "password": "…"}))]
pub struct Login {
    /// The operator's municipality: its 全国地方公共団体コード, or for an association (任意団体) its association ID
    /// (`A` + 5 digits); omitted for the system administrator.
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
    /// `true`: the password was generated for the operator (the first system administrator's) and must be changed
    /// with `PUT /api/v1/me/password` first; until then every other operation answers `403`
    /// `/problems/password-change-required`.
    pub password_change_required: bool,
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
    /// The business systems usable now (his permission ∩ shared use ∩ not retired), with their URLs; none while
    /// his password must be changed.
    pub business_systems: Vec<UsableBusinessSystem>,
    /// His password was generated for him and must be changed (`PUT /api/v1/me/password`) before anything else.
    pub password_change_required: bool,
}

/// Log in with municipality, operator ID and password.
///
/// Every attempt costs one Argon2id verification, known operator or not. A wrong password is recorded as an event
/// (in the background, so a known ID answers as fast as an unknown one); after too many the operator is locked.
/// The verifications run on a few workers (one per core) with a short queue: when it is full the login is
/// answered `503` `/problems/busy` with `Retry-After` at once, before anything is checked or recorded. The body
/// may be 4 KiB at most.
///
/// Failed logins are throttled per client address (10 free) and per login name (3 free): each further failure
/// doubles the wait before the next attempt (1 s, 2 s, 4 s … 15 min), and an attempt that comes too early is
/// answered `429` `/problems/too-many-attempts` with `Retry-After`, before any password is checked. While the
/// operator is locked every password is answered `operator-locked`; a lock stops new logins only, his running
/// sessions go on. An operator whose municipality requires biometric login is answered `403`
/// `/problems/biometric-required` after a right password (a wrong one is answered as always).
#[utoipa::path(post, operation_id = "login", path = "/api/v1/sessions", tag = "sessions", request_body = Login,
    responses((status = 201, body = SessionCreated), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails, description = "`/problems/biometric-required`: the password is right, \
            but the operator's municipality requires him to log in biometrically (`POST /api/v1/sessions/biometric`) \
            or with his operator certificate"),
        (status = 413, body = ProblemDetails), (status = 422, body = ProblemDetails),
        (status = 429, body = ProblemDetails, description = "`/problems/too-many-attempts`: too many failed logins \
            from this address or for this operator; retry after `Retry-After` seconds"),
        (status = 503, body = ProblemDetails, description = "`/problems/busy`: too many logins at once; retry after \
            `Retry-After` seconds")))]
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<Login>,
) -> Result<impl IntoResponse, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let password = Secret::new(body.password);
    let session = state
        .access
        .login(body.municipality.as_deref(), &body.operator_id, password, client)
        .await
        .map_err(login_error)?;
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated {
            token: session.token.expose().to_owned(),
            expires_at: session.expires_at,
            password_change_required: session.password_change_required,
        }),
    ))
}

/// A refused login (password or biometric), as the client is told.
pub fn login_error(e: LoginError) -> ApiError {
    match e {
        LoginError::InvalidCredentials => ApiError::invalid_credentials(),
        LoginError::Locked { until } => locked(until),
        LoginError::Busy => ApiError::busy(),
        LoginError::Throttled { retry_after } => ApiError::too_many_attempts(retry_after),
        LoginError::BiometricRequired => ApiError::biometric_required(),
        LoginError::Failed(f) => f.into(),
    }
}

fn locked(until: Option<Timestamp>) -> ApiError {
    let detail = match until.and_then(|t| chrono::DateTime::from_timestamp(t.unix(), 0)) {
        Some(t) => {
            let jst = chrono::FixedOffset::east_opt(9 * 3600)
                .map_or_else(|| t.to_rfc3339(), |tz| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string());
            Text::new(format!("{jst} までログインできません"), format!("locked until {}", t.to_rfc3339()))
        }
        None => Text::new("管理者による解除が必要です", "locked until an administrator unlocks the operator"),
    };
    ApiError::operator_locked(detail)
}

/// End the current session.
#[utoipa::path(delete, operation_id = "logout",
    path = "/api/v1/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemDetails)))]
pub async fn logout(State(state): State<AppState>, auth: Authenticated) -> Result<StatusCode, ApiError> {
    state.access.logout(&auth.credential).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A business system on the operator top page.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsableBusinessSystem {
    #[schema(example = "01")]
    pub business_id: String,
    #[schema(example = "証明書等自動交付")]
    pub name: String,
    pub top_url: Option<String>,
    pub operator_admin_url: Option<String>,
    pub personalize_url: Option<String>,
}

/// Who am I, and which business systems may I use now (the operator top page):
/// his permission ∩ his municipality's shared-use permission ∩ not retired.
#[utoipa::path(get, operation_id = "showMe", path = "/api/v1/me", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ProblemDetails)))]
pub async fn me(State(state): State<AppState>, auth: Authenticated) -> Result<Json<Me>, ApiError> {
    let systems = state
        .business_systems
        .usable_now(&auth.actor)
        .await?
        .into_iter()
        .map(|row| UsableBusinessSystem {
            business_id: row.business_id,
            name: row.name,
            top_url: row.top_url,
            operator_admin_url: row.operator_admin_url,
            personalize_url: row.personalize_url,
        })
        .collect();
    Ok(Json(Me {
        operator_id: auth.operator_id,
        municipality: auth.actor.municipality.map(|m| m.to_string()),
        roles: auth.actor.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        business_systems: systems,
        password_change_required: auth.actor.password_change_required,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "OldPassw0rd1", "new_password": "NewPassw0rd2"}))]
pub struct ChangeOwnPassword {
    pub current_password: String,
    pub new_password: String,
}

impl std::fmt::Debug for ChangeOwnPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeOwnPassword { .. }")
    }
}

/// Change one's own password (the current one is required; the last few may not be reused). His other sessions
/// end; this one goes on. A wrong current password counts as a failed login towards the lock.
#[utoipa::path(put, operation_id = "changeOwnPassword",
    path = "/api/v1/me/password", tag = "sessions", request_body = ChangeOwnPassword,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn change_own_password(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChangeOwnPassword>,
) -> Result<StatusCode, ApiError> {
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "sessions.change_own_password", &auth.operator_id);
    state
        .access
        .change_own_password(
            &ctx,
            &auth.session(),
            &auth.credential,
            Secret::new(body.current_password),
            &body.new_password,
        )
        .await
        .map_err(|e| command_error(e, |e| password_error(e, "/new_password")))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A refused password change, named at the field it concerns.
pub fn password_error(e: PasswordError, field: &str) -> ApiError {
    match e {
        PasswordError::WrongCurrent => ApiError::validation(vec![FieldError::new(
            "/current_password",
            Text::new("現在のパスワードが正しくありません", "the current password is wrong"),
        )]),
        PasswordError::Weak(e) => ApiError::validation(vec![FieldError::parse(field, &e)]),
        PasswordError::Reused { history } => ApiError::validation(vec![FieldError::new(
            field,
            Text::new(
                format!("直近{history}回に使用したパスワードは使えません"),
                format!("may not be one of the last {history} passwords"),
            ),
        )]),
        PasswordError::Operator(e) => crate::routes::operators::domain_error(e),
    }
}
