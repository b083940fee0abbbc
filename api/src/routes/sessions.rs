//! Login, logout and "who am I" (手引き I 2.1(4)(a): municipality + operator ID + password → top page).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use cardap_commands::{CommandContext, CommandError, CommandHandler, Permission};
use cardap_domain::operator::{self, Operator, OperatorCommand, OperatorError, OperatorEvent, OperatorId, Password};
use cardap_domain::{Aggregate, MunicipalityCode, OperatorKey, Timestamp};
use cardap_projections::{business_systems, operators};
use cardap_store::{CommandId, StreamId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Authenticated, Secret};
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::Text;
use crate::json::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(login))
        .route("/api/v1/sessions/current", delete(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", put(change_own_password))
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
    /// The business systems usable now (his permission ∩ shared use ∩ not retired), with their URLs.
    pub business_systems: Vec<UsableBusinessSystem>,
}

/// Log in with municipality, operator ID and password.
///
/// Every attempt costs one Argon2id verification, known operator or not. A wrong password is recorded as an event
/// (in the background, so a known ID answers as fast as an unknown one); after too many the operator is locked.
#[utoipa::path(post, operation_id = "login", path = "/api/v1/sessions", tag = "sessions", request_body = Login,
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
    let login = match (municipality, OperatorId::parse(&body.operator_id).ok()) {
        (Some(municipality), Some(id)) => Some((municipality, id)),
        _ => None,
    };
    let operator = match &login {
        Some((municipality, id)) => operators::find_by_login(state.read.pool(), municipality.as_ref(), id).await?,
        None => None,
    };
    let stored = match &operator {
        Some(op) if !op.revoked => auth::credential_of(state.read.pool(), op.key).await?,
        _ => None,
    };
    let verified = auth::verify_password(password, stored).await?;
    let (Some(operator), Some((municipality, operator_id))) = (operator, login) else {
        return Err(ApiError::invalid_credentials());
    };
    let now = Timestamp::from_unix(Utc::now().timestamp());
    if !verified {
        tracing::info!(operator = %operator.key, "login refused: wrong password");
        if !operator.revoked {
            record_failure(state.clone(), municipality, operator_id, now);
        }
        return Err(ApiError::invalid_credentials());
    }
    // The password is right: the lock decides (a temporary lock that has run out simply passes).
    let command = OperatorCommand::RecordLogin { at: now };
    match operator_command(&state, municipality.as_ref(), &operator_id, command).await {
        Ok(_) => {}
        Err(CommandError::Domain(OperatorError::Locked { until })) => return Err(locked(until)),
        Err(e) => return Err(command_error(e, ApiError::internal)),
    }
    let session = auth::create_session(state.read.pool(), operator.key, state.sessions).await?;
    tracing::info!(operator = %operator.key, "login");
    Ok((
        StatusCode::CREATED,
        Json(SessionCreated { token: session.token.expose().to_owned(), expires_at: session.expires_at }),
    ))
}

/// Records a failed login without making the answer wait for it. Failures that arrive together contend for the
/// operator's stream: each is retried (with jitter) until it is recorded, so a burst cannot outrun the lockout.
/// A lock ends his sessions. The system administrator's lock is never permanent (nobody could lift it).
fn record_failure(state: AppState, municipality: Option<MunicipalityCode>, operator_id: OperatorId, at: Timestamp) {
    tokio::spawn(async move {
        let mut policy = state.lockout;
        if municipality.is_none() {
            policy.max_lockouts = u32::MAX;
        }
        for _ in 0..200 {
            let command = OperatorCommand::RecordLoginFailure { at, policy };
            match operator_command(&state, municipality.as_ref(), &operator_id, command).await {
                Ok(events) => {
                    if events.iter().any(|e| matches!(e, OperatorEvent::Locked { .. })) {
                        let key = OperatorKey::for_login(municipality.as_ref(), &operator_id);
                        if let Err(e) = auth::end_sessions_of(state.read.pool(), key).await {
                            tracing::warn!(error = ?e, "could not end the sessions of a locked operator");
                        }
                    }
                    return;
                }
                Err(CommandError::Contended) => {
                    let jitter = u64::from(getrandom::u32().unwrap_or(0) % 45) + 5;
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not record a failed login");
                    return;
                }
            }
        }
        tracing::warn!("could not record a failed login: the operator's stream stayed contended");
    });
}

/// Runs a command of the system itself (no acting operator) on one operator's stream.
async fn operator_command(
    state: &AppState,
    municipality: Option<&MunicipalityCode>,
    operator_id: &OperatorId,
    command: OperatorCommand,
) -> Result<Vec<OperatorEvent>, CommandError<OperatorError>> {
    let stream = StreamId::new(Operator::STREAM_TYPE, &operator::stream_key(municipality, operator_id))
        .map_err(|e| CommandError::Store(cardap_store::StoreError::Corrupt(e.to_string())))?;
    let executed = CommandHandler::<Operator>::new(state.store.clone())
        .execute(
            &CommandContext::system(CommandId::generate()),
            &Permission::ChangeOwnPassword,
            &stream,
            municipality.cloned(),
            None,
            command,
        )
        .await?;
    if let Some(outcome) = executed.outcome {
        state.wait_for_views(outcome.checkpoint).await;
    }
    Ok(executed.events)
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
    auth::end_session(state.read.pool(), &auth.token).await?;
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
    let pool = state.read.pool();
    let usable = match &auth.actor.municipality {
        Some(code) => business_systems::usable_by(pool, code).await?,
        None => business_systems::active(pool).await?,
    };
    let mut systems = vec![];
    for id in usable {
        if !auth.actor.is_system_admin() && !auth.actor.business_systems.contains(&id) {
            continue;
        }
        if let Some(row) = business_systems::get(pool, &id).await? {
            systems.push(UsableBusinessSystem {
                business_id: row.business_id,
                name: row.name,
                top_url: row.top_url,
                operator_admin_url: row.operator_admin_url,
                personalize_url: row.personalize_url,
            });
        }
    }
    Ok(Json(Me {
        operator_id: auth.operator_id,
        municipality: auth.actor.municipality.map(|m| m.to_string()),
        roles: auth.actor.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        business_systems: systems,
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

/// Change one's own password (the current one is required; the last few may not be reused).
#[utoipa::path(put, operation_id = "changeOwnPassword",
    path = "/api/v1/me/password", tag = "sessions", request_body = ChangeOwnPassword,
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn change_own_password(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<ChangeOwnPassword>,
) -> Result<StatusCode, ApiError> {
    let pool = state.read.pool();
    let key = auth.actor.operator;
    let stored = auth::credential_of(pool, key).await?;
    if !auth::verify_password(Secret::new(body.current_password), stored).await? {
        return Err(ApiError::validation(vec![FieldError::new(
            "/current_password",
            Text::new("現在のパスワードが正しくありません", "the current password is wrong"),
        )]));
    }
    let new = Password::parse(&body.new_password, &state.passwords)
        .map_err(|e| ApiError::validation(vec![FieldError::parse("/new_password", &e)]))?;
    let new = Secret::new(new.expose());
    if auth::was_used_recently(pool, key, &new, state.passwords.history).await? {
        return Err(ApiError::validation(vec![FieldError::new(
            "/new_password",
            Text::new(
                format!("直近{}回に使用したパスワードは使えません", state.passwords.history),
                format!("may not be one of the last {} passwords", state.passwords.history),
            ),
        )]));
    }
    let operator_id = OperatorId::parse(&auth.operator_id).map_err(ApiError::internal)?;
    let now = Timestamp::from_unix(Utc::now().timestamp());
    operator_command(
        &state,
        auth.actor.municipality.as_ref(),
        &operator_id,
        OperatorCommand::ChangePassword { at: now },
    )
    .await
    .map_err(|e| command_error(e, ApiError::internal))?;
    let hash = auth::hash_password(new).await?;
    auth::set_password(pool, key, &hash).await?;
    Ok(StatusCode::NO_CONTENT)
}
