//! `/api/v1/municipalities/{code}/operators`: operators (手引き I 2.1(5), 2.2(5)–(6)) — register one or a batch,
//! read, change, revoke, reset passwords (one or in bulk), unlock, end sessions, and map 業務内IDs.
//!
//! Operators of another municipality do not exist for the caller (404). Passwords are only ever shown once, in
//! the answer that generated them; they are stored as Argon2id hashes outside the event log.
//!
//! Length: the request and answer types of twelve operations with their OpenAPI annotations and examples, and
//! the field-by-field parsing that names every bad field; the use cases and the queries of the operator directory
//! are in `commands::operators` and `commands::access`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cardap_commands::operators::{OperatorFilter, OperatorRow};
use cardap_commands::{CommandContext, Executed, Permission, authorize};
use cardap_domain::contact::{Email, Phone, Sex, Text100, Text200};
use cardap_domain::operator::{
    Extension, InternalId, LoginCommand, Operator, OperatorError, OperatorId, OperatorName, OperatorProfile,
    OperatorProfilePatch, Password, PasswordPolicy, Role,
};
use cardap_domain::{BusinessId, Localized, MunicipalityCode, OperatorKey, ParseError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::{ApiJson, ApiQuery, DeferredJson, from_value};
use crate::paging;
use crate::routes::sessions::password_error;
use crate::routes::{RequestMeta, etag, if_match, municipality_in_path};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities/{code}/operators", get(list).post(register))
        .route("/api/v1/municipalities/{code}/operators/passwords", post(bulk_passwords))
        .route("/api/v1/municipalities/{code}/operators/{operator_id}", get(show).patch(change))
        .route("/api/v1/municipalities/{code}/operators/{operator_id}/revoke", post(revoke))
        .route("/api/v1/municipalities/{code}/operators/{operator_id}/unlock", post(unlock))
        .route("/api/v1/municipalities/{code}/operators/{operator_id}/password", post(reset_password))
        .route("/api/v1/municipalities/{code}/operators/{operator_id}/sessions", axum::routing::delete(end_sessions))
        .route(
            "/api/v1/municipalities/{code}/operators/{operator_id}/internal-ids/{business_id}",
            put(assign_internal_id).delete(remove_internal_id),
        )
}

/// An operator to register (オペレータ情報). `password` omitted → one is generated and shown once.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operator_id": "OP0501", "name": "窓口 太郎", "department": "市民課", "sex": "1",
    "phone": "03-3333-4444", "roles": ["clerk"], "business_systems": ["01"]}))]
pub struct OperatorInput {
    /// オペレータID (half-width alphanumeric, unique in the municipality).
    pub operator_id: String,
    /// パスワード (half-width alphanumeric); generated when omitted.
    #[serde(default)]
    pub password: Option<String>,
    /// 氏名・組織名.
    pub name: String,
    #[serde(default)]
    pub department: Option<String>,
    /// ISO 5218: "0" unknown, "1" male, "2" female, "9" not applicable.
    #[serde(default)]
    pub sex: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    /// 内線.
    #[serde(default)]
    pub extension: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// 情報.
    #[serde(default)]
    pub info: Option<String>,
    /// 付帯情報.
    #[serde(default)]
    pub extra: Option<String>,
    /// Any of `operations_manager`, `business_admin`, `clerk`, `auditor`.
    pub roles: Vec<String>,
    /// 許可業務: business ids; each must be usable by the municipality (shared use).
    #[serde(default)]
    pub business_systems: Vec<String>,
}

impl std::fmt::Debug for OperatorInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorInput").field("operator_id", &self.operator_id).finish_non_exhaustive()
    }
}

/// An operator as shown (passwords are never shown, except a generated one, once).
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorView {
    pub operator_id: String,
    pub municipality: Option<String>,
    /// 氏名・組織名; `null` once the operator is revoked: 失効 erases his management information (name, department,
    /// sex, phone, extension, e-mail, info, extra) and keeps his ID, roles and history.
    pub name: Option<String>,
    pub department: Option<String>,
    pub sex: Option<String>,
    pub phone: Option<String>,
    pub extension: Option<String>,
    pub email: Option<String>,
    pub info: Option<String>,
    pub extra: Option<String>,
    pub roles: Vec<String>,
    pub business_systems: Vec<String>,
    /// 業務内IDs per business system.
    pub internal_ids: Vec<InternalIdView>,
    /// 失効: the operator can do nothing.
    pub revoked: bool,
    pub locked: bool,
    /// When a temporary lock ends (RFC 3339); `null` while locked means until an administrator unlocks.
    pub locked_until: Option<String>,
    pub version: i64,
    /// A generated password, shown only in the answer that generated it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InternalIdView {
    pub business_id: String,
    pub internal_id: String,
    pub role: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorPage {
    pub items: Vec<OperatorView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OperatorQuery {
    /// Substring of the operator ID.
    pub operator_id: Option<String>,
    pub name: Option<String>,
    pub department: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub info: Option<String>,
    /// Include revoked operators (default false).
    pub include_revoked: Option<bool>,
    pub cursor: Option<String>,
    /// 1–500, default 100.
    #[param(minimum = 1, maximum = 500, example = 100)]
    pub limit: Option<i64>,
}

/// Change an operator: absent fields stay; `null` clears an optional field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"department": "住民課", "phone": null, "roles": ["clerk", "auditor"]}))]
pub struct OperatorChange {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub department: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub sex: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub extension: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub info: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    pub extra: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
    pub business_systems: Option<Vec<String>>,
}

/// Set a password (or omit `password` to generate one, shown once in the answer).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "Passw0rd2026"}))]
pub struct PasswordReset {
    #[serde(default)]
    pub password: Option<String>,
}

impl std::fmt::Debug for PasswordReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordReset { .. }")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewPassword {
    pub operator_id: String,
    /// The generated password, shown once; absent when the administrator chose it, or on a retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `true` when this answers a retry (same `Idempotency-Key`) of a change already made: nothing changed now,
    /// and a generated password is not shown again (it is kept nowhere).
    pub replayed: bool,
}

/// パスワード一括変更: new generated passwords for the selected operators, all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"operator_ids": ["OP0501", "OP0502"]}))]
pub struct BulkPasswords {
    pub operator_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewPasswords {
    pub items: Vec<NewPassword>,
}

/// 業務内ID of an operator in one business system, with that system's own role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"internal_id": "1000000010", "role": "窓口担当"}))]
pub struct InternalIdInput {
    pub internal_id: String,
    #[serde(default)]
    pub role: Option<String>,
}

/// A validated registration.
pub use cardap_commands::operators::{NewOperator as Parsed, Registered};

/// Parses one registration, naming each bad field under `prefix` (`/3/name` in a batch, `/name` alone).
pub fn parse_input(input: &OperatorInput, prefix: &str, state: &AppState) -> Result<Parsed, Vec<FieldError>> {
    parse_input_with(input, prefix, &state.access.policy.passwords)
}

/// [`parse_input`] under the password policy `passwords` (off the request: an import job).
pub fn parse_input_with(
    input: &OperatorInput,
    prefix: &str,
    passwords: &PasswordPolicy,
) -> Result<Parsed, Vec<FieldError>> {
    let mut errors = vec![];
    let field = |name: &str| format!("{prefix}/{name}");
    let mut check = |name: &str, r: Result<(), ParseError>| {
        if let Err(e) = r {
            errors.push(FieldError::parse(field(name), &e));
        }
    };
    let mut operator_id = None;
    check("operator_id", OperatorId::parse(&input.operator_id).map(|v| operator_id = Some(v)));
    let mut password = None;
    if let Some(p) = &input.password {
        check("password", Password::parse(p, passwords).map(|v| password = Some(v)));
    }
    let mut name = None;
    check("name", OperatorName::parse(&input.name).map(|v| name = Some(v)));
    let mut profile_fields = ProfileFields::default();
    profile_fields.parse(input, &mut check);
    let mut roles = vec![];
    for (i, r) in input.roles.iter().enumerate() {
        check(&format!("roles/{i}"), Role::parse(r).map(|v| roles.push(v)));
    }
    let mut business_systems = vec![];
    for (i, b) in input.business_systems.iter().enumerate() {
        check(&format!("business_systems/{i}"), BusinessId::parse(b).map(|v| business_systems.push(v)));
    }
    match (operator_id, name) {
        (Some(operator_id), Some(name)) if errors.is_empty() => {
            Ok(Parsed::new(operator_id, password, profile_fields.into_profile(name), roles, business_systems))
        }
        _ => Err(errors),
    }
}

/// Parses every item of a list, naming each bad one by its index (`/roles/1`).
fn parse_each<T>(
    errors: &mut Vec<FieldError>,
    at: &str,
    items: &[String],
    parse: impl Fn(&str) -> Result<T, ParseError>,
) -> Vec<T> {
    let mut parsed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse(item) {
            Ok(v) => parsed.push(v),
            Err(e) => errors.push(FieldError::parse(format!("{at}/{i}"), &e)),
        }
    }
    parsed
}

/// Parses a PATCH: each field it names, parsed (`null` or blank clears an optional field; the name cannot be
/// cleared); every bad field named.
fn parse_change(body: &OperatorChange) -> Result<cardap_commands::operators::OperatorChange, Vec<FieldError>> {
    fn part<T>(
        errors: &mut Vec<FieldError>,
        field: &str,
        raw: &Option<Option<String>>,
        parse: impl Fn(&str) -> Result<T, ParseError>,
    ) -> Option<Option<T>> {
        let raw = raw.as_ref()?;
        match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Some(None),
            Some(v) => parse(v).map_err(|e| errors.push(FieldError::parse(field, &e))).ok().map(Some),
        }
    }
    let mut errors = vec![];
    let name = match &body.name {
        None => None,
        Some(n) => OperatorName::parse(n).map_err(|e| errors.push(FieldError::parse("/name", &e))).ok(),
    };
    let profile = OperatorProfilePatch {
        name,
        department: part(&mut errors, "/department", &body.department, Text100::parse),
        sex: part(&mut errors, "/sex", &body.sex, Sex::parse),
        phone: part(&mut errors, "/phone", &body.phone, Phone::parse),
        extension: part(&mut errors, "/extension", &body.extension, Extension::parse),
        email: part(&mut errors, "/email", &body.email, Email::parse),
        info: part(&mut errors, "/info", &body.info, Text200::parse),
        extra: part(&mut errors, "/extra", &body.extra, Text200::parse),
    };
    let roles = body.roles.as_ref().map(|roles| parse_each(&mut errors, "/roles", roles, Role::parse));
    let business_systems =
        body.business_systems.as_ref().map(|ids| parse_each(&mut errors, "/business_systems", ids, BusinessId::parse));
    if errors.is_empty() {
        Ok(cardap_commands::operators::OperatorChange { profile, roles, business_systems })
    } else {
        Err(errors)
    }
}

#[derive(Default)]
struct ProfileFields {
    department: Option<Text100>,
    sex: Option<Sex>,
    phone: Option<Phone>,
    extension: Option<Extension>,
    email: Option<Email>,
    info: Option<Text200>,
    extra: Option<Text200>,
}

impl ProfileFields {
    fn parse(&mut self, input: &OperatorInput, check: &mut impl FnMut(&str, Result<(), ParseError>)) {
        let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(v) = present(&input.department) {
            check("department", Text100::parse(&v).map(|x| self.department = Some(x)));
        }
        if let Some(v) = present(&input.sex) {
            check("sex", Sex::parse(&v).map(|x| self.sex = Some(x)));
        }
        if let Some(v) = present(&input.phone) {
            check("phone", Phone::parse(&v).map(|x| self.phone = Some(x)));
        }
        if let Some(v) = present(&input.extension) {
            check("extension", Extension::parse(&v).map(|x| self.extension = Some(x)));
        }
        if let Some(v) = present(&input.email) {
            check("email", Email::parse(&v).map(|x| self.email = Some(x)));
        }
        if let Some(v) = present(&input.info) {
            check("info", Text200::parse(&v).map(|x| self.info = Some(x)));
        }
        if let Some(v) = present(&input.extra) {
            check("extra", Text200::parse(&v).map(|x| self.extra = Some(x)));
        }
    }

    fn into_profile(self, name: OperatorName) -> OperatorProfile {
        OperatorProfile {
            name,
            department: self.department,
            sex: self.sex,
            phone: self.phone,
            extension: self.extension,
            email: self.email,
            info: self.info,
            extra: self.extra,
        }
    }
}

/// An existing operator of a visible municipality; else 404.
async fn operator_in_path(
    state: &AppState,
    auth: &Authenticated,
    code: &str,
    operator_id: &str,
) -> Result<(MunicipalityCode, OperatorId, OperatorRow), ApiError> {
    let code = municipality_in_path(state, auth, code).await?;
    let id = OperatorId::parse(operator_id).map_err(|_| ApiError::not_found())?;
    let row = state.operators.by_login(&code, &id).await?.ok_or_else(ApiError::not_found)?;
    Ok((code, id, row))
}

pub fn domain_error(e: OperatorError) -> ApiError {
    let text = Text::of(&e);
    match e {
        OperatorError::AlreadyRegistered | OperatorError::InternalIdTaken(_) => ApiError::already_exists(text),
        OperatorError::NotRegistered => ApiError::not_found(),
        OperatorError::Revoked => ApiError::state_conflict(ProblemType::OperatorRevoked, text),
        OperatorError::Locked { .. } => ApiError::state_conflict(ProblemType::OperatorLocked, text),
        OperatorError::InternalIdNotAssigned | OperatorError::AuthenticatorNotRegistered => ApiError::not_found(),
        OperatorError::AuthenticatorAlreadyRegistered => ApiError::already_exists(text),
        OperatorError::TooManyAuthenticators { .. } => {
            ApiError::state_conflict(ProblemType::TooManyAuthenticators, text)
        }
        OperatorError::AuthenticatorModelNotAllowed(_) => ApiError::validation(vec![FieldError::new("/", text)]),
        OperatorError::NoRoles
        | OperatorError::SystemAdminHasNoMunicipality
        | OperatorError::MunicipalityRequired
        | OperatorError::BusinessSystemNotUsable(_)
        | OperatorError::BusinessSystemNotPermitted(_)
        | OperatorError::ProfileErased
        | OperatorError::Refused(_) => ApiError::validation(refusal_fields("", e)),
    }
}

/// Like [`domain_error`], with the batch index in every field pointer.
fn item_error(index: usize, e: OperatorError) -> ApiError {
    ApiError::validation(refusal_fields(&format!("/{index}"), e))
}

/// Each refusal of what a registration or a change asks for, at its field under `prefix`: one alone as the
/// domain says it; several (`Refused`) each naming its business system, as they may share a field.
fn refusal_fields(prefix: &str, e: OperatorError) -> Vec<FieldError> {
    let several = matches!(e, OperatorError::Refused(_));
    e.into_refusals()
        .iter()
        .map(|r| {
            let text = if several { named(r) } else { Text::of(r) };
            FieldError::new(format!("{prefix}/{}", field_of(r)), text)
        })
        .collect()
}

/// The field of the registration form a refusal is about.
fn field_of(e: &OperatorError) -> &'static str {
    match e {
        OperatorError::AlreadyRegistered => "operator_id",
        OperatorError::BusinessSystemNotUsable(_) | OperatorError::BusinessSystemNotPermitted(_) => "business_systems",
        OperatorError::InternalIdTaken(_) => "internal_ids",
        OperatorError::ProfileErased => "name",
        _ => "roles",
    }
}

/// What a refusal says, naming the business system it is about (the Japanese message does not).
pub fn named(e: &OperatorError) -> Text {
    match e {
        OperatorError::BusinessSystemNotUsable(b)
        | OperatorError::BusinessSystemNotPermitted(b)
        | OperatorError::InternalIdTaken(b) => Text::new(format!("{}（{b}）", e.message_ja()), e.to_string()),
        _ => Text::of(e),
    }
}

/// Registers operators of one municipality atomically (all or none), each with his password hash.
pub async fn register_all(
    state: &AppState,
    ctx: &CommandContext,
    code: &MunicipalityCode,
    parsed: Vec<Parsed>,
    on_item_error: impl Fn(usize, OperatorError) -> ApiError,
) -> Result<Vec<Registered>, ApiError> {
    state.operators.register(ctx, code, parsed).await.map_err(|e| match e {
        cardap_commands::CommandError::Item { index, error } => on_item_error(index, error),
        other => command_error(other, domain_error),
    })
}

/// Register one operator (an object) or a batch (an array, all or none). An operations manager gives only roles
/// and business systems he holds himself (else `403`, naming each); the system administrator any.
#[utoipa::path(post, operation_id = "registerOperator",
    path = "/api/v1/municipalities/{code}/operators", tag = "operators",
    request_body(content = OperatorInput, description = "One operator, or an array of them (all or none)"),
    params(("code" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 201, body = OperatorView),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of the \
            municipality, or a role or business system he does not hold himself (only the system administrator \
            gives what he does not hold; `detail` names each); nothing was registered"),
        (status = 404, body = ProblemDetails), (status = 409, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn register(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ManageOperators(code.clone()))?;
    let batch = body.is_array();
    let inputs: Vec<OperatorInput> = match body {
        serde_json::Value::Array(items) => {
            items.into_iter().enumerate().map(|(i, v)| from_value(v, &format!("/{i}"))).collect::<Result<_, _>>()?
        }
        other => vec![from_value(other, "")?],
    };
    if inputs.is_empty() {
        return Err(ApiError::validation(vec![FieldError::required("/0")]));
    }
    let mut parsed = vec![];
    let mut errors = vec![];
    for (i, input) in inputs.iter().enumerate() {
        let prefix = if batch { format!("/{i}") } else { String::new() };
        match parse_input(input, &prefix, &state) {
            Ok(p) => parsed.push(p),
            Err(e) => errors.extend(e),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in parsed.iter().enumerate() {
        if !seen.insert(p.operator_id.clone()) {
            errors.push(FieldError::new(
                format!("/{i}/operator_id"),
                Text::new("同じオペレータIDが重複しています", "the same operator ID appears twice"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let meta = RequestMeta::from_headers(&headers);
    let target = parsed.iter().map(|p| p.operator_id.as_str()).collect::<Vec<_>>().join(",");
    let ctx = meta.context(&auth, "operators.register", &format!("{code}/{target}"));
    let on_error = |index: usize, e: OperatorError| if batch { item_error(index, e) } else { domain_error(e) };
    let registered = register_all(&state, &ctx, &code, parsed, on_error).await?;
    let mut views = vec![];
    for r in &registered {
        let mut v = view_of(&state, r.key).await?;
        v.password = r.generated.as_ref().map(|s| s.expose().to_owned());
        views.push(v);
    }
    if batch {
        return Ok((StatusCode::CREATED, Json(serde_json::json!({ "items": views }))).into_response());
    }
    let view = views.pop().ok_or_else(|| ApiError::internal("no operator registered"))?;
    let mut response = (StatusCode::CREATED, etag(view.version), Json(view)).into_response();
    if let Some(r) = registered.first()
        && let Ok(location) =
            HeaderValue::from_str(&format!("/api/v1/municipalities/{code}/operators/{}", r.operator_id))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// List a municipality's operators with the filter conditions of the screen (substrings).
#[utoipa::path(get, operation_id = "listOperators", path = "/api/v1/municipalities/{code}/operators", tag = "operators",
    params(("code" = String, Path), OperatorQuery), security(("bearer" = [])),
    responses((status = 200, body = OperatorPage), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    ApiQuery(q): ApiQuery<OperatorQuery>,
) -> Result<Json<OperatorPage>, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewOperators(code.clone()))?;
    let limit = paging::limit_or_422(q.limit, 500)?;
    let after: Option<String> = q.cursor.as_deref().map(paging::decode_cursor_or_422).transpose()?;
    let filter = filter_of(&q);
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let rows = state.operators.page(&code, &filter, after.as_deref(), fetch).await?;
    let (rows, next_cursor) = paging::page(rows, limit, |r| r.operator_id.clone())?;
    let mut items = vec![];
    for row in rows {
        items.push(render(&state, row).await?);
    }
    Ok(Json(OperatorPage { items, next_cursor }))
}

pub fn filter_of(q: &OperatorQuery) -> OperatorFilter {
    let some = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    OperatorFilter {
        operator_id: some(&q.operator_id),
        name: some(&q.name),
        department: some(&q.department),
        phone: some(&q.phone),
        email: some(&q.email),
        info: some(&q.info),
        include_revoked: q.include_revoked.unwrap_or(false),
    }
}

#[utoipa::path(get, operation_id = "showOperator",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}", tag = "operators",
    params(("code" = String, Path), ("operator_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OperatorView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (code, _, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    // An operator may always see himself.
    if row.key != auth.actor.operator {
        authorize(&auth.actor, &Permission::ViewOperators(code))?;
    }
    let view = render(&state, row).await?;
    Ok((etag(view.version), Json(view)).into_response())
}

/// Change an operator's management information, roles or permitted business systems (all parts or none).
/// Nobody changes his own roles or business systems, and only the system administrator gives a role or a
/// business system he does not hold himself: both are `403 /problems/forbidden`, nothing changed. Taking one
/// away, or keeping what the operator has, needs no such privilege.
#[utoipa::path(patch, operation_id = "changeOperator",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}", tag = "operators",
    request_body = OperatorChange,
    params(("code" = String, Path), ("operator_id" = String, Path), ("If-Match" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 200, body = OperatorView),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of the \
            municipality; his own roles or business systems (nobody changes his own); or giving a role or business \
            system he does not hold himself (`detail` names each). Nothing was changed"),
        (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails), (status = 412, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn change(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<OperatorChange>,
) -> Result<Response, ApiError> {
    let (code, id, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    authorize(&auth.actor, &Permission::ManageOperators(code.clone()))?;
    let change = parse_change(&body).map_err(ApiError::validation)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "operators.change", &format!("{code}/{id}"));
    // One command: the parts of a PATCH change together or not at all, merged with his profile of now.
    let executed = state
        .operators
        .change(&ctx, &code, &id, if_match(&headers)?, change)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    finish(&state, row.key, Some(executed)).await
}

#[utoipa::path(post, operation_id = "revokeOperator",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/revoke", tag = "operators",
    params(("code" = String, Path), ("operator_id" = String, Path), ("If-Match" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 200, body = OperatorView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails), (status = 409, body = ProblemDetails)))]
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (code, id, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "operators.revoke", &format!("{code}/{id}"));
    state
        .access
        .revoke(&ctx, &code, &id, row.key, if_match(&headers)?)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    finish(&state, row.key, None).await
}

#[utoipa::path(post, operation_id = "unlockOperator",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/unlock", tag = "operators",
    params(("code" = String, Path), ("operator_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = OperatorView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn unlock(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (code, id, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "operators.unlock", &format!("{code}/{id}"));
    let permission = Permission::ManageOperators(code.clone());
    // On his login stream: an unlock leaves his version (ETag) as it is.
    state
        .access
        .login_step(&ctx, &permission, Some(&code), &id, LoginCommand::Unlock)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    finish(&state, row.key, None).await
}

/// End every session of an operator.
#[utoipa::path(delete, operation_id = "endOperatorSessions",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/sessions", tag = "operators",
    params(("code" = String, Path), ("operator_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn end_sessions(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (code, _, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    authorize(&auth.actor, &Permission::ManageOperators(code))?;
    state.access.end_sessions_of(row.key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Reset an operator's password (an administrator's decision): the given one, or a generated one shown once.
/// His sessions end.
#[utoipa::path(post, operation_id = "resetOperatorPassword",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/password", tag = "operators",
    request_body = PasswordReset,
    params(("code" = String, Path), ("operator_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = NewPassword), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn reset_password(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Result<Json<NewPassword>, ApiError> {
    let (code, id, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    authorize(&auth.actor, &Permission::ManageOperators(code.clone()))?;
    // The body is optional: none (or `{}`) generates a password.
    let body: PasswordReset =
        if body.iter().all(u8::is_ascii_whitespace) { PasswordReset::default() } else { crate::json::parse(&body)? };
    let chosen = match &body.password {
        Some(p) => Some(
            state
                .access
                .acceptable(row.key, p)
                .await
                .map_err(|e| command_error(e, |e| password_error(e, "/password")))?,
        ),
        None => None,
    };
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "operators.reset_password", &format!("{code}/{id}"));
    let set =
        state.access.reset_password(&ctx, &code, &row, chosen).await.map_err(|e| command_error(e, domain_error))?;
    Ok(Json(NewPassword {
        operator_id: id.to_string(),
        password: set.generated.map(|s| s.expose().to_owned()),
        replayed: set.replayed,
    }))
}

/// パスワード一括変更: generated passwords for the selected operators (all or none), shown once.
#[utoipa::path(post, operation_id = "changeOperatorPasswords",
    path = "/api/v1/municipalities/{code}/operators/passwords", tag = "operators",
    request_body = BulkPasswords, params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = NewPasswords), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn bulk_passwords(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Json<NewPasswords>, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ManageOperators(code.clone()))?;
    let body: BulkPasswords = body.parse().await?;
    let mut errors = vec![];
    let mut targets = vec![];
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in body.operator_ids.iter().enumerate() {
        if !seen.insert(raw.as_str()) {
            errors.push(FieldError::new(
                format!("/operator_ids/{i}"),
                Text::new("同じオペレータIDが重複しています", "the same operator ID appears twice"),
            ));
            continue;
        }
        let found = match OperatorId::parse(raw) {
            Ok(id) => state.operators.by_login(&code, &id).await?.map(|row| (id, row)),
            Err(_) => None,
        };
        match found {
            Some(t) => targets.push(t),
            None => errors.push(FieldError::new(
                format!("/operator_ids/{i}"),
                Text::new("このオペレータは登録されていません", "no such operator"),
            )),
        }
    }
    if body.operator_ids.is_empty() {
        errors.push(FieldError::required("/operator_ids"));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "operators.bulk_passwords", code.as_str());
    let targets = targets.into_iter().map(|(id, row)| (id, row.key, None)).collect();
    let set = state.access.reset_many(&ctx, &code, targets).await.map_err(|e| match e {
        cardap_commands::CommandError::Item { index, error } => {
            let text = Text::of(&error);
            ApiError::validation(vec![FieldError::new(format!("/operator_ids/{index}"), text)])
        }
        other => command_error(other, domain_error),
    })?;
    let items = set
        .into_iter()
        .map(|s| NewPassword {
            operator_id: s.operator_id.to_string(),
            password: s.generated.map(|p| p.expose().to_owned()),
            replayed: s.replayed,
        })
        .collect();
    Ok(Json(NewPasswords { items }))
}

/// Map the operator to his 業務内ID in one business system (that system's administrator, or the system admin).
/// A 業務内ID names one operator per municipality and business system: one another operator (not revoked) holds
/// there is refused; his previous one is freed.
#[utoipa::path(put, operation_id = "assignInternalId",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/internal-ids/{business_id}",
    tag = "operators", request_body = InternalIdInput,
    params(("code" = String, Path), ("operator_id" = String, Path), ("business_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OperatorView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/already-exists`: another operator (not \
            revoked) holds this 業務内ID in this business system of the municipality; nothing was changed"),
        (status = 422, body = ProblemDetails)))]
pub async fn assign_internal_id(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, business_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let business_id = BusinessId::parse(&business_id).map_err(|_| ApiError::not_found())?;
    let (code, id, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let permission = Permission::ManageInternalIds(code.clone(), business_id.clone());
    authorize(&auth.actor, &permission)?;
    let body: InternalIdInput = body.parse().await?;
    let mut errors = vec![];
    let internal_id =
        InternalId::parse(&body.internal_id).map_err(|e| errors.push(FieldError::parse("/internal_id", &e))).ok();
    let role = match body.role.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => Text100::parse(r).map_err(|e| errors.push(FieldError::parse("/role", &e))).ok(),
        None => None,
    };
    let Some(internal_id) = internal_id.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "operators.internal_id", &format!("{code}/{id}/{business_id}"));
    let executed = state
        .operators
        .assign_internal_id(&ctx, &code, &id, if_match(&headers)?, business_id, internal_id, role)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    finish(&state, row.key, Some(executed)).await
}

#[utoipa::path(delete, operation_id = "removeInternalId",
    path = "/api/v1/municipalities/{code}/operators/{operator_id}/internal-ids/{business_id}",
    tag = "operators",
    params(("code" = String, Path), ("operator_id" = String, Path), ("business_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OperatorView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn remove_internal_id(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id, business_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let business_id = BusinessId::parse(&business_id).map_err(|_| ApiError::not_found())?;
    let (code, id, row) = operator_in_path(&state, &auth, &code, &operator_id).await?;
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "operators.remove_internal_id", &format!("{code}/{id}/{business_id}"));
    let executed = state
        .operators
        .remove_internal_id(&ctx, &code, &id, if_match(&headers)?, business_id)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    finish(&state, row.key, Some(executed)).await
}

async fn finish(
    state: &AppState,
    key: OperatorKey,
    executed: Option<Executed<Operator>>,
) -> Result<Response, ApiError> {
    // The use case waited for the directory to show the write.
    if executed.as_ref().is_some_and(|e| e.outcome.is_some()) {
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let view = view_of(state, key).await?;
    Ok((etag(view.version), Json(view)).into_response())
}

async fn view_of(state: &AppState, key: OperatorKey) -> Result<OperatorView, ApiError> {
    let row = state.operators.view(key).await?.ok_or_else(ApiError::not_found)?;
    render(state, row).await
}

pub async fn render(state: &AppState, row: OperatorRow) -> Result<OperatorView, ApiError> {
    let internal_ids = state
        .operators
        .internal_ids(row.key)
        .await?
        .into_iter()
        .map(|(business_id, internal_id, role)| InternalIdView { business_id, internal_id, role })
        .collect();
    Ok(OperatorView {
        operator_id: row.operator_id,
        municipality: row.municipality.map(|m| m.to_string()),
        name: row.name,
        department: row.department,
        sex: row.sex,
        phone: row.phone,
        extension: row.extension,
        email: row.email,
        info: row.info,
        extra: row.extra,
        roles: row.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        business_systems: row.business_systems.iter().map(|b| b.as_str().to_owned()).collect(),
        internal_ids,
        revoked: row.revoked,
        locked: row.locked,
        locked_until: row.locked_until.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|t| t.to_rfc3339()),
        version: row.version,
        password: None,
    })
}
