//! Biometric login (生体認証, 手引き I 2.1(2)② 生体情報登録, 2.1(4)(b)) over HTTP: an operator's authenticators
//! (`/api/v1/municipalities/{code}/operators/{operator_id}/authenticators`), the municipality's biometric policy
//! (`/api/v1/municipalities/{code}/biometric-policy`) and WebAuthn login (`/api/v1/sessions/biometric`).
//!
//! Registration runs on the operator's terminal in the operations manager's session: the manager begins it, the
//! terminal's browser passes the options to `navigator.credentials.create()` while the operator touches the
//! reader, and the manager's session sends the answer to `…/finish`. Only the manager who began a registration
//! finishes it. The WebAuthn bodies are the browser's JSON with binary fields as base64url (as webauthn-rs and
//! `PublicKeyCredential.toJSON()` write them). The use cases are `cardap_commands::biometric`.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cardap_commands::biometric::{AuthenticatorError, PublicKeyCredential, RegisterPublicKeyCredential};
use cardap_commands::{Permission, authorize};
use cardap_domain::biometric_policy::{BiometricPolicyError, BiometricPolicyState, BiometricRequirement};
use cardap_domain::operator::{
    Aaguid, AuthenticatorLabel, CredentialId, OperatorError, OperatorId, OperatorState, RegisteredAuthenticator,
};
use cardap_domain::{Localized, MunicipalityCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::{ApiJson, DeferredJson, from_value};
use crate::routes::sessions::{SessionCreated, login_error};
use crate::routes::{RequestMeta, etag, if_match, municipality_in_path};
use crate::state::AppState;

/// The largest WebAuthn answer accepted (an attestation with a certificate chain is a few KiB).
pub const WEBAUTHN_BODY_LIMIT: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    let operator = "/api/v1/municipalities/{code}/operators/{operator_id}/authenticators";
    Router::new()
        .route(operator, get(list))
        .route(&format!("{operator}/registrations"), post(begin_registration))
        .route(
            &format!("{operator}/registrations/{{registration_id}}/finish"),
            post(finish_registration).layer(DefaultBodyLimit::max(WEBAUTHN_BODY_LIMIT)),
        )
        .route(&format!("{operator}/{{credential_id}}"), delete(remove))
        .route("/api/v1/municipalities/{code}/biometric-policy", get(show_policy).put(set_policy))
        .route(
            "/api/v1/sessions/biometric/challenges",
            post(begin_login).layer(DefaultBodyLimit::max(crate::routes::sessions::LOGIN_BODY_LIMIT)),
        )
        .route("/api/v1/sessions/biometric", post(finish_login).layer(DefaultBodyLimit::max(WEBAUTHN_BODY_LIMIT)))
}

// ---- authenticators ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"label": "窓口3番 指静脈リーダー"}))]
pub struct RegistrationInput {
    /// What the authenticator is called in lists (1–50 characters), e.g. where it is.
    pub label: String,
}

/// A begun registration: pass `options` to `navigator.credentials.create()` on the operator's terminal (binary
/// fields are base64url), then send the answer to `…/registrations/{registration_id}/finish` before `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistrationStarted {
    pub registration_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// WebAuthn `CredentialCreationOptions` (`{"publicKey": {...}}`): user verification required, his registered
    /// authenticators excluded.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// An authenticator registered for an operator (the private key and the biometric data never leave it).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthenticatorView {
    /// The WebAuthn credential ID, base64url.
    #[schema(example = "3q2-7wABAgMEBQYHCAkKCw")]
    pub credential_id: String,
    /// The authenticator model (AAGUID); all zeros when it did not say.
    #[schema(example = "0fb9bcbc-a0d4-4042-bbb0-559bc1631e28")]
    pub aaguid: String,
    pub label: String,
    /// Its signature counter at registration.
    pub sign_count: u32,
    /// The credential may be synchronised to other devices (a passkey rather than a reader-bound key).
    pub backup_eligible: bool,
    pub registered_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthenticatorList {
    pub items: Vec<AuthenticatorView>,
}

/// The operator in the path, as his stream has it; 404 when the caller may not see the municipality, or no such
/// operator exists.
async fn operator_in_path(
    state: &AppState,
    auth: &Authenticated,
    code: &str,
    operator_id: &str,
) -> Result<(MunicipalityCode, OperatorId), ApiError> {
    let code = municipality_in_path(state, auth, code).await?;
    let id = OperatorId::parse(operator_id).map_err(|_| ApiError::not_found())?;
    state.operators.by_login(&code, &id).await?.ok_or_else(ApiError::not_found)?;
    Ok((code, id))
}

/// Begin registering an authenticator for the operator (生体情報登録, the operations manager's decision). Records
/// nothing: the registration is recorded by its finish.
#[utoipa::path(post, operation_id = "beginAuthenticatorRegistration",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/authenticators/registrations",
    tag = "biometrics", request_body = RegistrationInput,
    params(("code" = String, Path), ("operator_id" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = RegistrationStarted),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of \
            the municipality (or the system administrator)"),
        (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/operator-revoked`, or \
            `/problems/too-many-authenticators`"),
        (status = 422, body = ProblemDetails)))]
pub async fn begin_registration(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    authorize(&auth.actor, &Permission::ManageBiometrics(code.clone()))?;
    let body: RegistrationInput = body.parse().await?;
    let label = AuthenticatorLabel::parse(&body.label)
        .map_err(|e| ApiError::validation(vec![FieldError::parse("/label", &e)]))?;
    let ctx =
        RequestMeta::from_headers(&headers).context(&auth, "biometrics.begin_registration", &format!("{code}/{id}"));
    let started = state
        .biometrics
        .begin_registration(&ctx, &code, &id, label)
        .await
        .map_err(|e| command_error(e, authenticator_error))?;
    let view =
        RegistrationStarted { registration_id: started.id, expires_at: started.expires_at, options: started.options };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Finish a registration with the authenticator's answer (the JSON of the `PublicKeyCredential` that
/// `navigator.credentials.create()` gave, binary fields base64url). It is verified — challenge, origin, RP ID,
/// user verification, the attestation statement's signature when there is one — and its model (AAGUID) must be
/// on the municipality's allow-list, if it has one. A registration is finished once: a second finish, an expired
/// one (`webauthn.challenge_seconds`) or one begun by another manager is `404` — but a retry with the same
/// `Idempotency-Key` gets the first answer.
#[utoipa::path(post, operation_id = "finishAuthenticatorRegistration",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/authenticators/registrations/{registration_id}/finish",
    tag = "biometrics",
    request_body(content = Object, description = "The `PublicKeyCredential` of `navigator.credentials.create()` as \
        JSON (`id`, `rawId`, `type`, `response.attestationObject`, `response.clientDataJSON`; binary as base64url)",
        example = json!({"id": "3q2-7wABAgMEBQYHCAkKCw", "rawId": "3q2-7wABAgMEBQYHCAkKCw", "type": "public-key",
            "response": {"attestationObject": "o2NmbXRkbm9uZWdhdHRTdG10oGhhdXRoRGF0YVjE",
                "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uY3JlYXRlIn0"}, "extensions": {}})),
    params(("code" = String, Path), ("operator_id" = String, Path), ("registration_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key gets the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = AuthenticatorView),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of \
            the municipality (or the system administrator)"),
        (status = 404, body = ProblemDetails, description = "`/problems/not-found`: no such operator, or no such \
            registration in progress (finished already, expired, begun by another manager)"),
        (status = 409, body = ProblemDetails, description = "`/problems/already-exists` (this authenticator is \
            registered already), `/problems/operator-revoked`, `/problems/too-many-authenticators`"),
        (status = 422, body = ProblemDetails, description = "`/problems/authenticator-not-verified`: the answer \
            does not verify; `/problems/authenticator-model-not-allowed`: the municipality does not allow this \
            model; `/problems/validation`: not a credential")))]
pub async fn finish_registration(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, registration_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let registration_id = Uuid::parse_str(&registration_id).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ManageBiometrics(code.clone()))?;
    let answer: RegisterPublicKeyCredential = from_value(body.parse::<serde_json::Value>().await?, "")?;
    let ctx = RequestMeta::from_headers(&headers).context(
        &auth,
        "biometrics.finish_registration",
        &format!("{code}/{id}/{registration_id}"),
    );
    let executed = state
        .biometrics
        .finish_registration(&ctx, &code, &id, registration_id, &answer)
        .await
        .map_err(|e| command_error(e, authenticator_error))?;
    let credential_id = CredentialId::from_bytes(answer.raw_id.to_vec()).map_err(|_| ApiError::not_found())?;
    let registered = executed.state.authenticator(&credential_id).ok_or_else(ApiError::not_found)?;
    let mut response = (StatusCode::CREATED, etag(executed.version), Json(view_of(registered))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!(
        "/api/v1/municipalities/{code}/operators/{id}/authenticators/{}",
        registered.credential_id
    )) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The operator's authenticators (those who may read operators, and the operator himself). `ETag`: the operator's
/// version, for `If-Match` on a deletion.
#[utoipa::path(get, operation_id = "listAuthenticators",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/authenticators", tag = "biometrics",
    params(("code" = String, Path), ("operator_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = AuthenticatorList), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let op = state.biometrics.operator(&code, &id).await.map_err(|e| command_error(e, operator_error))?;
    if op.state.key() != Some(auth.actor.operator) {
        authorize(&auth.actor, &Permission::ViewOperators(code))?;
    }
    Ok((etag(op.version), Json(list_of(&op.state))).into_response())
}

/// Delete an authenticator of the operator: it no longer logs him in (recorded as `OperatorAuthenticatorRemoved`).
#[utoipa::path(delete, operation_id = "removeAuthenticator",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/authenticators/{credential_id}", tag = "biometrics",
    params(("code" = String, Path), ("operator_id" = String, Path), ("credential_id" = String, Path),
        ("If-Match" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails), (status = 412, body = ProblemDetails)))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, credential_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (code, id) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let credential_id = CredentialId::parse(&credential_id).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ManageBiometrics(code.clone()))?;
    let ctx = RequestMeta::from_headers(&headers).context(
        &auth,
        "biometrics.remove",
        &format!("{code}/{id}/{credential_id}"),
    );
    let executed = state
        .biometrics
        .remove_authenticator(&ctx, &code, &id, credential_id, if_match(&headers)?)
        .await
        .map_err(|e| command_error(e, operator_error))?;
    Ok((StatusCode::NO_CONTENT, etag(executed.version)).into_response())
}

fn view_of(a: &RegisteredAuthenticator) -> AuthenticatorView {
    AuthenticatorView {
        credential_id: a.credential_id.to_string(),
        aaguid: a.aaguid.to_string(),
        label: a.label.to_string(),
        sign_count: a.sign_count,
        backup_eligible: a.backup_eligible,
        registered_at: DateTime::from_timestamp(a.registered_at.unix(), 0).unwrap_or_default(),
    }
}

fn list_of(op: &OperatorState) -> AuthenticatorList {
    AuthenticatorList { items: op.authenticators().map(view_of).collect() }
}

fn authenticator_error(e: AuthenticatorError) -> ApiError {
    match e {
        AuthenticatorError::Operator(e) => operator_error(e),
        AuthenticatorError::UnknownCeremony => ApiError::not_found().with_detail(Text::new(
            "この登録は完了済みか期限切れです。最初からやり直してください",
            "no such registration in progress: it was finished already, expired, or begun by someone else; begin again",
        )),
        AuthenticatorError::NotVerified(reason) => ApiError::authenticator(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::AuthenticatorNotVerified,
            Text::new(
                "認証器の応答を検証できませんでした（本人確認（生体認証）が行われていない、期限切れ、別の画面からの応答など）。最初からやり直してください",
                format!("the authenticator's answer does not verify ({reason}); begin again"),
            ),
        ),
    }
}

fn operator_error(e: OperatorError) -> ApiError {
    match e {
        OperatorError::AuthenticatorModelNotAllowed(aaguid) => ApiError::authenticator(
            StatusCode::UNPROCESSABLE_ENTITY,
            ProblemType::AuthenticatorModelNotAllowed,
            Text::new(
                format!("{}（AAGUID {aaguid}）", e.message_ja()),
                format!("{e}; the municipality's biometric policy lists the models it allows"),
            ),
        ),
        OperatorError::TooManyAuthenticators { .. } => {
            ApiError::authenticator(StatusCode::CONFLICT, ProblemType::TooManyAuthenticators, Text::of(&e))
        }
        OperatorError::AuthenticatorNotRegistered => ApiError::not_found(),
        other => crate::routes::operators::domain_error(other),
    }
}

// ---- the municipality's policy ----

/// A municipality's biometric policy (生体認証の設定).
#[derive(Debug, Serialize, ToSchema)]
pub struct BiometricPolicyView {
    /// Who must log in biometrically: `none`, `all`, or `listed` (the operators in `operators`). Their password
    /// login is refused (`/problems/biometric-required`); a client certificate (mutual TLS) stays allowed.
    #[schema(example = "listed")]
    pub required: String,
    #[schema(example = json!(["OP0501"]))]
    pub operators: Vec<String>,
    /// The authenticator models (AAGUIDs) that may be registered; empty: any.
    #[schema(example = json!(["0fb9bcbc-a0d4-4042-bbb0-559bc1631e28"]))]
    pub allowed_models: Vec<String>,
    /// The policy's version (also its `ETag`); 0: never set.
    pub version: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"required": "listed", "operators": ["OP0501"],
    "allowed_models": ["0fb9bcbc-a0d4-4042-bbb0-559bc1631e28"]}))]
pub struct BiometricPolicyInput {
    /// `none`, `all` or `listed`.
    pub required: String,
    /// With `listed`: the operator IDs (at least one); otherwise empty.
    #[serde(default)]
    pub operators: Vec<String>,
    /// AAGUIDs; empty or omitted: any model.
    #[serde(default)]
    pub allowed_models: Vec<String>,
}

fn policy_view(state: &BiometricPolicyState, version: u64) -> BiometricPolicyView {
    let operators = match state.required() {
        BiometricRequirement::Listed(ids) => ids.iter().map(ToString::to_string).collect(),
        _ => vec![],
    };
    BiometricPolicyView {
        required: state.required().as_str().to_owned(),
        operators,
        allowed_models: state.allowed_models().iter().map(ToString::to_string).collect(),
        version,
    }
}

/// The municipality's biometric policy (every operator of it may read it).
#[utoipa::path(get, operation_id = "showBiometricPolicy",
    path = "/api/v1/municipalities/{code}/biometric-policy", tag = "biometrics",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = BiometricPolicyView), (status = 404, body = ProblemDetails)))]
pub async fn show_policy(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    let policy = state.biometrics.policy(&code).await.map_err(|e| command_error(e, policy_error))?;
    Ok((etag(policy.version), Json(policy_view(&policy.state, policy.version))).into_response())
}

/// Replace the municipality's biometric policy (運用管理部門): who must log in biometrically, and which authenticator
/// models may be registered. Recorded as `MunicipalityBiometricPolicySet`; the same policy again records nothing.
/// Authenticators registered before stay registered.
#[utoipa::path(put, operation_id = "setBiometricPolicy",
    path = "/api/v1/municipalities/{code}/biometric-policy", tag = "biometrics", request_body = BiometricPolicyInput,
    params(("code" = String, Path), ("If-Match" = Option<String>, Header)), security(("bearer" = [])),
    responses((status = 200, body = BiometricPolicyView),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of \
            the municipality (or the system administrator)"),
        (status = 404, body = ProblemDetails), (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails)))]
pub async fn set_policy(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ManageBiometrics(code.clone()))?;
    let body: BiometricPolicyInput = body.parse().await?;
    let mut errors = vec![];
    let operators: std::collections::BTreeSet<OperatorId> = body
        .operators
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| {
            OperatorId::parse(raw).map_err(|e| errors.push(FieldError::parse(format!("/operators/{i}"), &e))).ok()
        })
        .collect();
    let allowed_models = body
        .allowed_models
        .iter()
        .enumerate()
        .filter_map(|(i, raw)| {
            Aaguid::parse(raw).map_err(|e| errors.push(FieldError::parse(format!("/allowed_models/{i}"), &e))).ok()
        })
        .collect();
    let unexpected = || {
        FieldError::new(
            "/operators",
            Text::new("「listed」のときだけオペレータを指定します", "operators are listed only with `listed`"),
        )
    };
    let required = match body.required.as_str() {
        "none" if body.operators.is_empty() => Some(BiometricRequirement::None),
        "all" if body.operators.is_empty() => Some(BiometricRequirement::All),
        "none" | "all" => {
            errors.push(unexpected());
            None
        }
        "listed" => Some(BiometricRequirement::Listed(operators)),
        other => {
            let e = cardap_domain::ParseError::UnknownValue { value: other.to_owned() };
            errors.push(FieldError::parse("/required", &e));
            None
        }
    };
    let Some(required) = required.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "biometrics.set_policy", code.as_str());
    let executed = state
        .biometrics
        .set_policy(&ctx, &code, if_match(&headers)?, required, allowed_models)
        .await
        .map_err(|e| command_error(e, policy_error))?;
    if executed.outcome.is_some() {
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok((etag(executed.version), Json(policy_view(&executed.state, executed.version))).into_response())
}

fn policy_error(e: BiometricPolicyError) -> ApiError {
    let field = match e {
        BiometricPolicyError::NoOperatorsListed | BiometricPolicyError::TooManyOperators { .. } => "/operators",
        BiometricPolicyError::TooManyModels { .. } => "/allowed_models",
    };
    ApiError::validation(vec![FieldError::new(field, Text::of(&e))])
}

// ---- login ----

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"municipality": "131016", "operator_id": "OP0501"}))]
pub struct BiometricLoginStart {
    /// The operator's municipality (code or association ID); omitted for the system administrator.
    pub municipality: Option<String>,
    pub operator_id: String,
}

impl std::fmt::Debug for BiometricLoginStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BiometricLoginStart").field("operator_id", &self.operator_id).finish_non_exhaustive()
    }
}

/// A begun biometric login: pass `options` to `navigator.credentials.get()` (binary fields are base64url), then
/// send the assertion with `challenge_id` to `POST /api/v1/sessions/biometric` before `expires_at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BiometricChallenge {
    pub challenge_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// WebAuthn `CredentialRequestOptions` (`{"publicKey": {...}}`), user verification required.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"challenge_id": "0190a6c2-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "credential": {
    "id": "3q2-7wABAgMEBQYHCAkKCw", "rawId": "3q2-7wABAgMEBQYHCAkKCw", "type": "public-key",
    "response": {"authenticatorData": "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ",
        "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0", "signature": "MEUCIQ", "userHandle": null},
    "extensions": {}}}))]
pub struct BiometricLogin {
    pub challenge_id: Uuid,
    /// The `PublicKeyCredential` of `navigator.credentials.get()` as JSON (binary as base64url).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

impl std::fmt::Debug for BiometricLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BiometricLogin").field("challenge_id", &self.challenge_id).finish_non_exhaustive()
    }
}

/// Begin a biometric login (手引き I 2.1(4)(b): municipality + operator ID, then the authenticator). The answer has
/// the same shape whether the operator exists or not: one who does not (or has no authenticator) is offered
/// credential IDs derived from a key only the server holds, the same ones every time. Throttled like a password
/// login (`429`); records nothing. The challenge may be answered once, within `webauthn.challenge_seconds`.
#[utoipa::path(post, operation_id = "beginBiometricLogin", path = "/api/v1/sessions/biometric/challenges",
    tag = "sessions", request_body = BiometricLoginStart,
    responses((status = 201, body = BiometricChallenge),
        (status = 429, body = ProblemDetails, description = "`/problems/too-many-attempts`: too many failed logins \
            from this address or for this operator; retry after `Retry-After` seconds")))]
pub async fn begin_login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<BiometricLoginStart>,
) -> Result<Response, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let started = state
        .biometrics
        .begin_login(body.municipality.as_deref(), &body.operator_id, client)
        .await
        .map_err(login_error)?;
    let view =
        BiometricChallenge { challenge_id: started.id, expires_at: started.expires_at, options: started.options };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Finish a biometric login with the authenticator's assertion: a session (`token`, `expires_at`) exactly as a
/// password login gives, of method `biometric`. The assertion must verify with user verification against one of
/// the operator's authenticators, and its signature counter must move past the last one seen (else it is
/// recorded as `OperatorAuthenticatorCounterRegressed`). Refused — a wrong assertion, an unknown, used or expired
/// challenge, a counter that does not move — is `401` `/problems/invalid-credentials` and counts as a failed login
/// towards the throttle and the lock; a locked operator is answered `operator-locked` whatever he presents.
#[utoipa::path(post, operation_id = "biometricLogin", path = "/api/v1/sessions/biometric", tag = "sessions",
    request_body = BiometricLogin,
    responses((status = 201, body = SessionCreated), (status = 401, body = ProblemDetails),
        (status = 429, body = ProblemDetails, description = "`/problems/too-many-attempts`: too many failed logins \
            from this address or for this operator; retry after `Retry-After` seconds")))]
pub async fn finish_login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ApiJson(body): ApiJson<BiometricLogin>,
) -> Result<Response, ApiError> {
    let client = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let assertion: PublicKeyCredential = from_value(body.credential, "/credential")?;
    let session = state.biometrics.finish_login(body.challenge_id, &assertion, client).await.map_err(login_error)?;
    let view = SessionCreated {
        token: session.token.expose().to_owned(),
        expires_at: session.expires_at,
        password_change_required: session.password_change_required,
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}
