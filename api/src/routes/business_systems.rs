//! `/api/v1/business-systems`: business systems (業務システム, with what their server certificate carries,
//! 手引き I 2.2) and shared use (共同利用業務設定, 運用環境設定): the municipalities permitted to use each.
//!
//! The system administrator registers, updates and retires business systems and permits or withdraws
//! municipalities; every operator may read them (names and URLs are not secret). Choices of this module, also
//! stated in `/openapi.json`:
//! - business IDs `03`–`99` are free for other systems (the source registers `05`); only `00`–`02` are built
//!   in, and registering one of those is a 409 (they exist from the first start);
//! - in a body, an empty or blank optional field is the same as `null` (no value);
//! - `POST …/permitted-municipalities` answers `201` with the permitted entry, or `200` with it when the
//!   municipality was already permitted (nothing written);
//! - `DELETE …/permitted-municipalities/{code}` of a municipality that is not permitted is `409`
//!   `/problems/shared-use-not-permitted` (the business system exists; the permit does not);
//! - an operator of a municipality sees in `GET …/permitted-municipalities` only his own municipality (if it
//!   is permitted): which other municipalities share a system is not his to know.
//!
//! Must not decide who may do what (that is `cardap_commands::authorize`) nor the business rules (the
//! `BusinessSystem` aggregate); it parses, runs the command and answers from the read model.
//!
//! Length: the business system's request and answer types with their OpenAPI annotations, and the PATCH parsing;
//! the use cases are in `commands::business_systems`.

use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cardap_commands::AppendOutcome;
use cardap_commands::business_systems::{BusinessSystemRow, PermitError};
use cardap_commands::{Permission, Shown, authorize};
use cardap_domain::business_system::{
    BusinessSystemError, BusinessSystemName, BusinessSystemProfile, BusinessSystemState, ProfilePatch,
};
use cardap_domain::contact::{Email, Phone, Text100, Url};
use cardap_domain::{BusinessId, MunicipalityCode, ParseError};
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
        .route("/api/v1/business-systems", get(list).post(register))
        .route("/api/v1/business-systems/{business_id}", get(show).patch(update))
        .route("/api/v1/business-systems/{business_id}/retire", post(retire))
        .route("/api/v1/business-systems/{business_id}/permitted-municipalities", get(permitted).post(permit))
        .route("/api/v1/business-systems/{business_id}/permitted-municipalities/{code}", delete(withdraw))
}

/// A business system (業務システム) with the items of its business server certificate.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "business_id": "10", "name": "施設予約", "organization": "南江戸市 情報政策課",
    "image": "https://portal.example.jp/img/hall.png", "top_url": "https://portal.example.jp/",
    "operator_admin_url": "https://portal.example.jp/operators", "personalize_url": "https://portal.example.jp/me",
    "phone": "03-3333-4444", "email": "portal@example.jp", "builtin": false, "retired": false, "version": 1
}))]
pub struct BusinessSystemView {
    /// 業務ID: two half-width digits. `00`–`02` are built in.
    pub business_id: String,
    /// 業務システム名.
    pub name: String,
    /// 管理組織名.
    pub organization: Option<String>,
    /// 業務画像: URL of the icon on the operator top page.
    pub image: Option<String>,
    /// 業務トップURL (`null` only for the built-ins and systems registered before it was required).
    pub top_url: Option<String>,
    /// オペレータ管理URL (`null` as `top_url`).
    pub operator_admin_url: Option<String>,
    /// パーソナライズURL (`null` as `top_url`).
    pub personalize_url: Option<String>,
    /// 連絡先電話.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// One of the built-ins `00`–`02`, present from the first start and never retired.
    pub builtin: bool,
    /// Retired for good: nothing of it can change any more, and it permits nobody.
    pub retired: bool,
    /// The resource version, also sent as `ETag`.
    pub version: i64,
}

impl From<BusinessSystemRow> for BusinessSystemView {
    fn from(r: BusinessSystemRow) -> Self {
        let builtin = BusinessId::parse(&r.business_id).is_ok_and(|id| id.is_builtin());
        BusinessSystemView {
            business_id: r.business_id,
            name: r.name,
            organization: r.organization,
            image: r.image,
            top_url: r.top_url,
            operator_admin_url: r.operator_admin_url,
            personalize_url: r.personalize_url,
            phone: r.phone,
            email: r.email,
            builtin,
            retired: r.retired,
            version: r.version,
        }
    }
}

impl BusinessSystemView {
    /// From the folded stream, when the read model has not caught up yet.
    fn of(state: &BusinessSystemState, version: u64) -> Option<Self> {
        let (id, p) = (state.id()?, state.profile()?);
        let text = |v: Option<&str>| v.map(str::to_owned);
        Some(BusinessSystemView {
            business_id: id.as_str().to_owned(),
            name: p.name.as_str().to_owned(),
            organization: text(p.organization.as_ref().map(Text100::as_str)),
            image: text(p.image.as_ref().map(Url::as_str)),
            top_url: text(p.top_url.as_ref().map(Url::as_str)),
            operator_admin_url: text(p.operator_admin_url.as_ref().map(Url::as_str)),
            personalize_url: text(p.personalize_url.as_ref().map(Url::as_str)),
            phone: text(p.phone.as_ref().map(Phone::as_str)),
            email: text(p.email.as_ref().map(Email::as_str)),
            builtin: id.is_builtin(),
            retired: state.is_retired(),
            version: i64::try_from(version).unwrap_or(i64::MAX),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BusinessSystemPage {
    /// In business-ID order.
    pub items: Vec<BusinessSystemView>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–100 (default 100).
    #[param(minimum = 1, maximum = 100, example = 100)]
    pub limit: Option<i64>,
    /// Include retired business systems (default false).
    pub include_retired: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PermittedParams {
    /// Opaque cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500, example = 100)]
    pub limit: Option<i64>,
}

/// Register a business system (手引き I 2.2 (2) ①). Required, as on the source's screen: `business_id`, `name`,
/// `top_url`, `operator_admin_url` and `personalize_url` (a missing or empty one is a 422 naming each); an
/// empty optional field is the same as `null`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "business_id": "05", "name": "利用環境設定", "organization": "南江戸市 情報政策課",
    "image": "https://portal.example.jp/img/file_05.png",
    "top_url": "https://portal.example.jp/BizSys/?gid=05&type=1",
    "operator_admin_url": "https://portal.example.jp/BizSys/?gid=05&type=2",
    "personalize_url": "https://portal.example.jp/BizSys/?gid=05&type=3",
    "phone": "03-3333-4444", "email": "portal@example.jp"
}))]
pub struct RegisterBusinessSystem {
    /// 業務ID: two half-width digits, `03`–`99` (`00`–`02` are built in).
    pub business_id: String,
    /// 業務システム名, 1–50 characters.
    pub name: String,
    /// 管理組織名, at most 100 characters.
    pub organization: Option<String>,
    /// 業務画像 (`http://` or `https://` URL).
    pub image: Option<String>,
    /// 業務トップURL (required; `http://` or `https://`). Optional in the Rust type only so that every missing
    /// URL is named in one answer.
    #[schema(value_type = String, required = true, min_length = 1, example = "https://portal.example.jp/BizSys/?gid=05&type=1")]
    pub top_url: Option<String>,
    /// オペレータ管理URL (required; `http://` or `https://`).
    #[schema(value_type = String, required = true, min_length = 1, example = "https://portal.example.jp/BizSys/?gid=05&type=2")]
    pub operator_admin_url: Option<String>,
    /// パーソナライズURL (required; `http://` or `https://`).
    #[schema(value_type = String, required = true, min_length = 1, example = "https://portal.example.jp/BizSys/?gid=05&type=3")]
    pub personalize_url: Option<String>,
    /// 連絡先電話: half-width digits and hyphens, e.g. `03-3333-4444`.
    pub phone: Option<String>,
    /// E-mail.
    pub email: Option<String>,
}

/// Change a business system: an absent field stays as it is, `null` (or an empty string) clears it. The name
/// and the three required URLs (`top_url`, `operator_admin_url`, `personalize_url`) cannot be cleared.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"top_url": "https://portal.example.jp/v2/", "personalize_url": null}))]
pub struct UpdateBusinessSystem {
    /// 業務システム名 (cannot be cleared).
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub organization: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub image: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub top_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub operator_admin_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub personalize_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::paging::nullable")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
}

/// Permit a municipality (共同利用業務設定).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "131016"}))]
pub struct PermitMunicipality {
    /// 全国地方公共団体コード (or association ID, `A` + 5 digits) of a registered, not abolished municipality.
    pub code: String,
}

/// A municipality permitted to use a business system.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"code": "131016", "name": "千代田区"}))]
pub struct PermittedMunicipality {
    /// 全国地方公共団体コード, or an association's ID (`A` + 5 digits).
    pub code: String,
    /// Its name, as the municipality list shows it (`null` if the list does not know it yet).
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PermittedPage {
    /// In code order.
    pub items: Vec<PermittedMunicipality>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, operation_id = "listBusinessSystems",
    path = "/api/v1/business-systems", tag = "business-systems", params(ListParams),
    security(("bearer" = [])),
    responses((status = 200, body = BusinessSystemPage), (status = 401, body = ProblemDetails),
        (status = 422, body = ProblemDetails)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<BusinessSystemPage>, ApiError> {
    authorize(&auth.actor, &Permission::ViewBusinessSystems)?;
    let limit = paging::limit_or_422(params.limit, 100)?;
    let after: Option<String> = params.cursor.as_deref().map(paging::decode_cursor_or_422).transpose()?;
    // At most 100 business IDs exist: the whole list is small, so it is paged here.
    let rows = state.business_systems.list(params.include_retired.unwrap_or(false)).await?;
    let rows = rows.into_iter().filter(|r| after.as_deref().is_none_or(|a| r.business_id.as_str() > a));
    let rows: Vec<_> = rows.take(limit.saturating_add(1)).collect();
    let (items, next_cursor) = paging::page(rows, limit, |r| r.business_id.clone())?;
    Ok(Json(BusinessSystemPage { items: items.into_iter().map(Into::into).collect(), next_cursor }))
}

#[utoipa::path(post, operation_id = "registerBusinessSystem",
    path = "/api/v1/business-systems", tag = "business-systems",
    request_body = RegisterBusinessSystem,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = BusinessSystemView, description = "Registered; `Location` names it"),
        (status = 400, body = ProblemDetails), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails, description = "Only the system administrator registers business systems"),
        (status = 409, body = ProblemDetails, description = "`/problems/already-exists`: the business ID is taken (never reused)"),
        (status = 422, body = ProblemDetails,
            description = "Invalid fields, named by JSON pointer; each missing required URL is named too")))]
pub async fn register(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBusinessSystem>,
) -> Result<Response, ApiError> {
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let meta = RequestMeta::from_headers(&headers);
    let mut errors = vec![];
    let id = BusinessId::parse(&body.business_id).map_err(|e| errors.push(FieldError::parse("/business_id", &e))).ok();
    let name = BusinessSystemName::parse(&body.name).map_err(|e| errors.push(FieldError::parse("/name", &e))).ok();
    let organization = optional(&mut errors, "/organization", body.organization.as_deref(), Text100::parse);
    let image = optional(&mut errors, "/image", body.image.as_deref(), Url::parse);
    let top_url = optional(&mut errors, "/top_url", body.top_url.as_deref(), Url::parse);
    let operator_admin_url =
        optional(&mut errors, "/operator_admin_url", body.operator_admin_url.as_deref(), Url::parse);
    let personalize_url = optional(&mut errors, "/personalize_url", body.personalize_url.as_deref(), Url::parse);
    let phone = optional(&mut errors, "/phone", body.phone.as_deref(), Phone::parse);
    let email = optional(&mut errors, "/email", body.email.as_deref(), Email::parse);
    let (Some(id), Some(name), true) = (id, name, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let profile =
        BusinessSystemProfile { name, organization, image, top_url, operator_admin_url, personalize_url, phone, email };

    let ctx = meta.context(&auth, "business-systems.register", id.as_str());
    let executed =
        state.business_systems.register(&ctx, id.clone(), profile).await.map_err(|e| command_error(e, domain_error))?;
    settle(&state, executed.outcome).await;
    let view = current(&state, &id, executed.version).await?;
    let mut response = (StatusCode::CREATED, etag(executed.version), Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/business-systems/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, operation_id = "showBusinessSystem",
    path = "/api/v1/business-systems/{business_id}", tag = "business-systems",
    params(("business_id" = String, Path, description = "業務ID")),
    security(("bearer" = [])),
    responses((status = 200, body = BusinessSystemView), (status = 401, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ViewBusinessSystems)?;
    let row = state.business_systems.view(&id).await?.ok_or_else(ApiError::not_found)?;
    let version = u64::try_from(row.version).unwrap_or(0);
    Ok((etag(version), Json(BusinessSystemView::from(row))).into_response())
}

#[utoipa::path(patch, operation_id = "changeBusinessSystem",
    path = "/api/v1/business-systems/{business_id}", tag = "business-systems",
    request_body = UpdateBusinessSystem,
    params(("business_id" = String, Path, description = "業務ID"),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since")),
    security(("bearer" = [])),
    responses((status = 200, body = BusinessSystemView, description = "Changed (or already so: nothing written)"),
        (status = 400, body = ProblemDetails), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`"),
        (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails,
            description = "Invalid fields, or clearing the name or a required URL, named by JSON pointer")))]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<UpdateBusinessSystem>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let change = parse_patch(&body)?;
    let client_version = if_match(&headers)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.update", id.as_str());
    // The merge happens inside the decision, on the profile as it is then.
    let executed = state
        .business_systems
        .update(&ctx, &id, client_version, change)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    settle(&state, executed.outcome).await;
    let view = current(&state, &id, executed.version).await?;
    Ok((etag(executed.version), Json(view)).into_response())
}

#[utoipa::path(post, operation_id = "retireBusinessSystem",
    path = "/api/v1/business-systems/{business_id}/retire", tag = "business-systems",
    params(("business_id" = String, Path, description = "業務ID"),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since")),
    security(("bearer" = [])),
    responses((status = 200, body = BusinessSystemView, description = "Retired: it permits nobody from now on"),
        (status = 401, body = ProblemDetails), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails,
            description = "`/problems/business-system-retired` (already), `/problems/builtin-business-system` (00–02)"),
        (status = 412, body = ProblemDetails)))]
pub async fn retire(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.retire", id.as_str());
    let executed = state
        .business_systems
        .retire(&ctx, &id, if_match(&headers)?)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    settle(&state, executed.outcome).await;
    let view = current(&state, &id, executed.version).await?;
    Ok((etag(executed.version), Json(view)).into_response())
}

#[utoipa::path(get, operation_id = "listPermittedMunicipalities",
    path = "/api/v1/business-systems/{business_id}/permitted-municipalities",
    tag = "business-systems",
    params(("business_id" = String, Path, description = "業務ID"), PermittedParams),
    security(("bearer" = [])),
    responses((status = 200, body = PermittedPage,
            description = "The system administrator sees every permitted municipality; an operator of a \
                municipality sees only his own, if it is permitted. `ETag` is the business system's version."),
        (status = 401, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 422, body = ProblemDetails)))]
pub async fn permitted(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    ApiQuery(params): ApiQuery<PermittedParams>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ViewBusinessSystems)?;
    let limit = paging::limit_or_422(params.limit, 500)?;
    let after: Option<String> = params.cursor.as_deref().map(paging::decode_cursor_or_422).transpose()?;
    let (row, codes) = state.business_systems.permitted(&auth.actor, &id).await?.ok_or_else(ApiError::not_found)?;
    let codes = codes.into_iter().filter(|code| after.as_deref().is_none_or(|a| code.as_str() > a));
    let codes: Vec<String> = codes.take(limit.saturating_add(1)).collect();
    let (codes, next_cursor) = paging::page(codes, limit, Clone::clone)?;
    let mut items = Vec::with_capacity(codes.len());
    for code in codes {
        items.push(permitted_entry(&state, code).await?);
    }
    let version = u64::try_from(row.version).unwrap_or(0);
    Ok((etag(version), Json(PermittedPage { items, next_cursor })).into_response())
}

#[utoipa::path(post, operation_id = "permitMunicipality",
    path = "/api/v1/business-systems/{business_id}/permitted-municipalities",
    tag = "business-systems", request_body = PermitMunicipality,
    params(("business_id" = String, Path, description = "業務ID"),
        ("If-Match" = Option<String>, Header, description = "The business system's ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = PermittedMunicipality,
            description = "Permitted now; `ETag` is the business system's new version. Withdraw with \
                `DELETE …/permitted-municipalities/{code}`."),
        (status = 200, body = PermittedMunicipality, description = "It was already permitted: nothing written"),
        (status = 400, body = ProblemDetails), (status = 401, body = ProblemDetails),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`"),
        (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails,
            description = "`/code` is no code, or no registered municipality, or an abolished one")))]
pub async fn permit(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PermitMunicipality>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let code =
        MunicipalityCode::parse(&body.code).map_err(|e| ApiError::validation(vec![FieldError::parse("/code", &e)]))?;
    let unusable = |ja: &str, en: &str| ApiError::validation(vec![FieldError::new("/code", Text::new(ja, en))]);
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.permit", &format!("{id}/{code}"));
    let executed = state.business_systems.permit(&ctx, &id, if_match(&headers)?, code.clone()).await.map_err(|e| {
        command_error(e, |e| match e {
            PermitError::MunicipalityAbolished => {
                unusable("この市町村・任意団体は廃止されています", "the municipality has been abolished")
            }
            PermitError::NoSuchMunicipality => {
                unusable("この市町村・任意団体は登録されていません", "no municipality with this code is registered")
            }
            PermitError::BusinessSystem(e) => domain_error(e),
        })
    })?;
    // Written now, or by the first attempt of this retry: 201. Already permitted before: 200, nothing written.
    let status = if executed.outcome.is_some() { StatusCode::CREATED } else { StatusCode::OK };
    settle(&state, executed.outcome).await;
    let entry = permitted_entry(&state, code.as_str().to_owned()).await?;
    Ok((status, etag(executed.version), Json(entry)).into_response())
}

#[utoipa::path(delete, operation_id = "withdrawMunicipality",
    path = "/api/v1/business-systems/{business_id}/permitted-municipalities/{code}",
    tag = "business-systems",
    params(("business_id" = String, Path, description = "業務ID"),
        ("code" = String, Path, description = "全国地方公共団体コード"),
        ("If-Match" = Option<String>, Header, description = "The business system's ETag last seen; 412 if it changed since")),
    security(("bearer" = [])),
    responses((status = 204, description = "Withdrawn; `ETag` is the business system's new version"),
        (status = 401, body = ProblemDetails), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails, description = "No such business system (or the code is no code)"),
        (status = 409, body = ProblemDetails,
            description = "`/problems/shared-use-not-permitted`: the municipality is not permitted (a repeated \
                withdrawal answers this too); `/problems/business-system-retired`"),
        (status = 412, body = ProblemDetails)))]
pub async fn withdraw(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((business_id, code)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    let code = MunicipalityCode::parse(&code).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.withdraw", &format!("{id}/{code}"));
    let executed = state
        .business_systems
        .withdraw(&ctx, &id, if_match(&headers)?, code)
        .await
        .map_err(|e| command_error(e, domain_error))?;
    settle(&state, executed.outcome).await;
    Ok((StatusCode::NO_CONTENT, etag(executed.version)).into_response())
}

/// A PATCH, parsed: `None` = unchanged, `Some(None)` = cleared.
fn parse_patch(body: &UpdateBusinessSystem) -> Result<ProfilePatch, ApiError> {
    let mut errors = vec![];
    let name = match &body.name {
        None => None,
        Some(None) => {
            errors.push(FieldError::new(
                "/name",
                Text::new("業務システム名は消去できません", "the name cannot be cleared"),
            ));
            None
        }
        Some(Some(s)) => BusinessSystemName::parse(s).map_err(|e| errors.push(FieldError::parse("/name", &e))).ok(),
    };
    let change = ProfilePatch {
        name,
        organization: change_of(&mut errors, "/organization", &body.organization, Text100::parse),
        image: change_of(&mut errors, "/image", &body.image, Url::parse),
        top_url: change_of(&mut errors, "/top_url", &body.top_url, Url::parse),
        operator_admin_url: change_of(&mut errors, "/operator_admin_url", &body.operator_admin_url, Url::parse),
        personalize_url: change_of(&mut errors, "/personalize_url", &body.personalize_url, Url::parse),
        phone: change_of(&mut errors, "/phone", &body.phone, Phone::parse),
        email: change_of(&mut errors, "/email", &body.email, Email::parse),
    };
    if errors.is_empty() { Ok(change) } else { Err(ApiError::validation(errors)) }
}

/// One optional field of a PATCH: absent → `None` (unchanged), else the parsed value or `Some(None)` (cleared).
fn change_of<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &Option<Option<String>>,
    parse: impl Fn(&str) -> Result<T, ParseError>,
) -> Option<Option<T>> {
    value.as_ref().map(|v| optional(errors, field, v.as_deref(), parse))
}

/// An optional field: `null`, absent, empty or blank is no value; anything else must parse.
fn optional<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, ParseError>,
) -> Option<T> {
    let value = value.filter(|v| !v.trim().is_empty())?;
    parse(value).map_err(|e| errors.push(FieldError::parse(field, &e))).ok()
}

/// A business ID from the path; anything that is no business ID is "not found".
pub(crate) fn path_id(business_id: &str) -> Result<BusinessId, ApiError> {
    BusinessId::parse(business_id).map_err(|_| ApiError::not_found())
}

/// After a write (or the retry of one): wait until the read models show it.
async fn settle(state: &AppState, outcome: Option<AppendOutcome>) {
    if outcome.is_some() {
        state.metrics.commands_applied.fetch_add(1, Ordering::Relaxed);
    }
    state.business_systems.settle(outcome.as_ref()).await;
}

/// The business system at `version` or later: from the read model, or from the stream while the view lags.
async fn current(state: &AppState, id: &BusinessId, version: u64) -> Result<BusinessSystemView, ApiError> {
    match state.business_systems.shown(id, version).await.map_err(|e| command_error(e, domain_error))? {
        Shown::View(row) => Ok(row.into()),
        Shown::Stream(loaded) => BusinessSystemView::of(&loaded.state, loaded.version).ok_or_else(ApiError::not_found),
    }
}

async fn permitted_entry(state: &AppState, code: String) -> Result<PermittedMunicipality, ApiError> {
    let entry = state.business_systems.permitted_entry(code).await?;
    Ok(PermittedMunicipality { code: entry.code, name: entry.name })
}

pub(crate) fn domain_error(e: BusinessSystemError) -> ApiError {
    let text = Text::of(&e);
    match e {
        BusinessSystemError::AlreadyRegistered => ApiError::already_exists(text),
        BusinessSystemError::NotRegistered => ApiError::not_found(),
        BusinessSystemError::Retired => ApiError::state_conflict(ProblemType::BusinessSystemRetired, text),
        BusinessSystemError::BuiltInCannotBeRetired => {
            ApiError::state_conflict(ProblemType::BuiltinBusinessSystem, text)
        }
        BusinessSystemError::NotPermitted => ApiError::state_conflict(ProblemType::SharedUseNotPermitted, text),
        BusinessSystemError::LoginNotConfigured => ApiError::state_conflict(ProblemType::LoginNotConfigured, text),
        BusinessSystemError::WebhookNotSet => ApiError::state_conflict(ProblemType::WebhookNotConfigured, text),
        BusinessSystemError::CardStatusRequired => ApiError::validation(vec![FieldError::new("/fields", text)]),
        BusinessSystemError::UrlsRequired(missing) => ApiError::validation(
            missing
                .into_iter()
                .map(|url| {
                    let (field, label) = (url.field(), url.label_ja());
                    FieldError::new(
                        format!("/{field}"),
                        Text::new(format!("{label}は必須項目です"), format!("{field} ({label}) is required")),
                    )
                })
                .collect(),
        ),
    }
}
