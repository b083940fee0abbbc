//! `/api/v1/municipalities`: the system administrator registers, renames, reorders and abolishes
//! municipalities (運用環境設定: 市町村設定, 表示順); every operator lists those he may see.
//!
//! A municipality (`kind: municipality`) is registered with its 全国地方公共団体コード (6 digits, check digit);
//! a voluntary association (`kind: association`, 任意団体 such as 西関東協議会), which has none, with an
//! association ID of the system administrator's choosing: `A` followed by 5 digits (`A00001`). Either is the
//! `{code}` of every path under `/api/v1/municipalities/{code}/…` and the `municipality` of a login.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::municipalities::MunicipalityRow;
use cardap_commands::{Executed, Permission, Shown, authorize};
use cardap_domain::MunicipalityCode;
use cardap_domain::municipality::{DisplayOrder, Municipality, MunicipalityError, MunicipalityKind, MunicipalityName};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::{ApiJson, ApiQuery};
use crate::paging;
use crate::routes::{RequestMeta, etag, if_match};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities", get(list).post(register))
        .route("/api/v1/municipalities/{code}", get(show).patch(change))
        .route("/api/v1/municipalities/{code}/abolish", post(abolish))
}

/// A municipality (市町村) or voluntary association (任意団体).
#[derive(Debug, Serialize, ToSchema)]
pub struct MunicipalityView {
    /// 全国地方公共団体コード (6 digits with check digit) of a municipality, or the association ID (`A` + 5
    /// digits, e.g. `A00001`) of an association.
    #[schema(example = "131016")]
    pub code: String,
    #[schema(example = "千代田区")]
    pub name: String,
    /// `municipality` or `association`.
    #[schema(example = "municipality")]
    pub kind: String,
    #[schema(example = 1)]
    pub display_order: i64,
    pub abolished: bool,
    /// The resource version, also sent as `ETag`.
    pub version: i64,
}

impl From<MunicipalityRow> for MunicipalityView {
    fn from(r: MunicipalityRow) -> Self {
        MunicipalityView {
            code: r.code,
            name: r.name,
            kind: r.kind,
            display_order: r.display_order,
            abolished: r.abolished,
            version: r.version,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MunicipalityPage {
    pub items: Vec<MunicipalityView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500, example = 100)]
    pub limit: Option<i64>,
    /// Include abolished municipalities (default false).
    pub include_abolished: Option<bool>,
}

/// Register a municipality, or an association (任意団体) with an association ID of its own, e.g.
/// `{"code": "A00001", "name": "西関東協議会", "kind": "association", "display_order": 7}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "131016", "name": "千代田区", "kind": "municipality", "display_order": 1}))]
pub struct RegisterMunicipality {
    /// For `kind: municipality` its 全国地方公共団体コード (6 half-width digits with a valid check digit); for
    /// `kind: association` an association ID: `A` followed by 5 half-width digits (never a real code).
    #[schema(pattern = "^([0-9]{6}|A[0-9]{5})$")]
    pub code: String,
    /// 市町村・任意団体名, 1–50 characters.
    pub name: String,
    /// `municipality` or `association`.
    #[schema(example = "municipality")]
    pub kind: String,
    /// 表示順, 1–999999.
    pub display_order: i64,
}

/// Rename and/or reorder; omitted fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "新千代田区", "display_order": 2}))]
pub struct ChangeMunicipality {
    pub name: Option<String>,
    pub display_order: Option<i64>,
}

#[utoipa::path(get, operation_id = "listMunicipalities",
    path = "/api/v1/municipalities", tag = "municipalities", params(ListParams),
    security(("bearer" = [])),
    responses((status = 200, body = MunicipalityPage), (status = 401, body = ProblemDetails)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<MunicipalityPage>, ApiError> {
    authorize(&auth.actor, &Permission::ListMunicipalities)?;
    let limit = paging::limit_or_422(params.limit, 500)?;
    let after: Option<(i64, String)> = params.cursor.as_deref().map(paging::decode_cursor_or_422).transpose()?;
    let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let include_abolished = params.include_abolished.unwrap_or(false);
    let rows = state.municipalities.list(&auth.actor, after, fetch, include_abolished).await?;
    let (rows, next_cursor) = paging::page(rows, limit, |r| (r.display_order, r.code.clone()))?;
    Ok(Json(MunicipalityPage { items: rows.into_iter().map(Into::into).collect(), next_cursor }))
}

#[utoipa::path(post, operation_id = "registerMunicipality",
    path = "/api/v1/municipalities", tag = "municipalities", request_body = RegisterMunicipality,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = MunicipalityView), (status = 400, body = ProblemDetails),
        (status = 401, body = ProblemDetails), (status = 403, body = ProblemDetails),
        (status = 409, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn register(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterMunicipality>,
) -> Result<Response, ApiError> {
    let meta = RequestMeta::from_headers(&headers);
    let mut errors = vec![];
    let kind = MunicipalityKind::parse(&body.kind);
    // The code's form must suit the kind (an association has no 全国地方公共団体コード); with no valid kind, any form.
    let code = match kind {
        Ok(kind) => MunicipalityCode::parse_for(kind, &body.code),
        Err(_) => MunicipalityCode::parse(&body.code),
    };
    let code = code.map_err(|e| errors.push(FieldError::parse("/code", &e))).ok();
    let name = MunicipalityName::parse(&body.name).map_err(|e| errors.push(FieldError::parse("/name", &e))).ok();
    let kind = kind.map_err(|e| errors.push(FieldError::parse("/kind", &e))).ok();
    let order =
        DisplayOrder::parse(body.display_order).map_err(|e| errors.push(FieldError::parse("/display_order", &e))).ok();
    let (Some(code), Some(name), Some(kind), Some(display_order)) = (code, name, kind, order) else {
        // Say who may not do this before saying what is wrong with the fields.
        authorize(&auth.actor, &Permission::ManageMunicipalities)?;
        return Err(ApiError::validation(errors));
    };
    let ctx = meta.context(&auth, "municipalities.register", body.code.as_str());
    let executed = state
        .municipalities
        .register(&ctx, code.clone(), name, kind, display_order)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    let view = shown(&state, &code, &executed).await?;
    let mut response = (StatusCode::CREATED, etag(executed.version), Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/municipalities/{code}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, operation_id = "showMunicipality", path = "/api/v1/municipalities/{code}", tag = "municipalities",
    params(("code" = String, Path, description = "全国地方公共団体コード, or an association ID (A + 5 digits)")),
    security(("bearer" = [])),
    responses((status = 200, body = MunicipalityView), (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = MunicipalityCode::parse(&code).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ViewMunicipality(code.clone()))?;
    let row = state.municipalities.view(&code).await?.ok_or_else(ApiError::not_found)?;
    let version = u64::try_from(row.version).unwrap_or(0);
    Ok((etag(version), Json(MunicipalityView::from(row))).into_response())
}

#[utoipa::path(patch, operation_id = "changeMunicipality",
    path = "/api/v1/municipalities/{code}", tag = "municipalities", request_body = ChangeMunicipality,
    params(("code" = String, Path, description = "全国地方公共団体コード, or an association ID (A + 5 digits)"),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since")),
    security(("bearer" = [])),
    responses((status = 200, body = MunicipalityView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails), (status = 412, body = ProblemDetails), (status = 422, body = ProblemDetails)))]
pub async fn change(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChangeMunicipality>,
) -> Result<Response, ApiError> {
    let code = visible_code(&auth, &code)?;
    let mut errors = vec![];
    let name = body
        .name
        .as_deref()
        .map(MunicipalityName::parse)
        .transpose()
        .map_err(|e| errors.push(FieldError::parse("/name", &e)))
        .ok()
        .flatten();
    let display_order = body
        .display_order
        .map(DisplayOrder::parse)
        .transpose()
        .map_err(|e| errors.push(FieldError::parse("/display_order", &e)))
        .ok()
        .flatten();
    if !errors.is_empty() {
        authorize(&auth.actor, &Permission::ManageMunicipalities)?;
        return Err(ApiError::validation(errors));
    }
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "municipalities.change", code.as_str());
    let executed = state
        .municipalities
        .change(&ctx, &code, if_match(&headers)?, name, display_order)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    answer(&state, &code, executed).await
}

#[utoipa::path(post, operation_id = "abolishMunicipality",
    path = "/api/v1/municipalities/{code}/abolish", tag = "municipalities",
    params(("code" = String, Path, description = "全国地方公共団体コード, or an association ID (A + 5 digits)"),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since")),
    security(("bearer" = [])),
    responses((status = 200, body = MunicipalityView), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails), (status = 412, body = ProblemDetails)))]
pub async fn abolish(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = visible_code(&auth, &code)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "municipalities.abolish", code.as_str());
    let executed = state
        .municipalities
        .abolish(&ctx, &code, if_match(&headers)?)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    answer(&state, &code, executed).await
}

/// Answers a change with the municipality's new view, once the read model shows it.
async fn answer(
    state: &AppState,
    code: &MunicipalityCode,
    executed: Executed<Municipality>,
) -> Result<Response, ApiError> {
    let view = shown(state, code, &executed).await?;
    Ok((etag(executed.version), Json(view)).into_response())
}

/// A code from the path that the caller may see; anything else is "not found".
fn visible_code(auth: &Authenticated, code: &str) -> Result<MunicipalityCode, ApiError> {
    let code = MunicipalityCode::parse(code).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ViewMunicipality(code.clone()))?;
    Ok(code)
}

/// The municipality after a write, from the view once it shows the write, else from the stream.
async fn shown(
    state: &AppState,
    code: &MunicipalityCode,
    executed: &Executed<Municipality>,
) -> Result<MunicipalityView, ApiError> {
    if executed.outcome.is_some() {
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let loaded = match state.municipalities.shown(code, executed).await.map_err(|e| command_error(e, domain_error))? {
        Shown::View(row) => return Ok(row.into()),
        Shown::Stream(loaded) => loaded,
    };
    let s = &loaded.state;
    match (s.code(), s.name(), s.kind(), s.display_order()) {
        (Some(code), Some(name), Some(kind), Some(order)) => Ok(MunicipalityView {
            code: code.to_string(),
            name: name.to_string(),
            kind: kind.as_str().to_owned(),
            display_order: i64::from(order.value()),
            abolished: s.is_abolished(),
            version: i64::try_from(loaded.version).unwrap_or(i64::MAX),
        }),
        _ => Err(ApiError::not_found()),
    }
}

fn domain_error(e: MunicipalityError) -> ApiError {
    let text = Text::of(&e);
    match e {
        MunicipalityError::AlreadyRegistered => ApiError::already_exists(text),
        MunicipalityError::NotRegistered => ApiError::not_found(),
        MunicipalityError::Abolished => ApiError::state_conflict(ProblemType::MunicipalityAbolished, text),
        MunicipalityError::CodeDoesNotMatchKind(e) => ApiError::validation(vec![FieldError::parse("/code", &e)]),
    }
}
