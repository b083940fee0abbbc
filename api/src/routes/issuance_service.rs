//! `GET`/`PUT /api/v1/municipalities/{code}/issuance-service`: the municipality's issuance service (証明書等自動交付の
//! 提供内容, issue 11 point 3) — the certificates its residents may obtain at the kiosks, the service hours and the
//! closed periods — for its operations managers (運用管理部門) and the system administrator. The feed of the
//! certificate issuance system (`01`) tells the issuance server (`cardap_commands::feeds`).
//!
//! Owns the HTTP shape of the setting (certificate codes, `HH:MM`, `MM-DD`) and the mapping of its refusals to
//! fields; another municipality's path is 404 before the body is read. The rules are the domain's, the use cases
//! `cardap_commands::issuance_service`'s.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cardap_commands::{Permission, authorize};
use cardap_domain::issuance_service::{
    Certificate, ClosedPeriod, IssuanceServiceError, IssuanceServiceState, IssuanceServiceValue, MonthDay, TimeOfDay,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::Text;
use crate::json::DeferredJson;
use crate::routes::{RequestMeta, etag, if_match, municipality_in_path};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/municipalities/{code}/issuance-service", get(show).put(replace))
}

/// Days without service, every year: `from` to `to`, both included; `from` after `to` wraps the year.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "12-29", "to": "01-03"}))]
pub struct ClosedPeriodView {
    /// `MM-DD`.
    #[schema(example = "12-29")]
    pub from: String,
    /// `MM-DD`.
    #[schema(example = "01-03")]
    pub to: String,
}

/// The municipality's issuance service as set (or the defaults).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"certificates": ["juminhyo", "inkan"], "opens": "06:30", "closes": "23:00",
    "closed_periods": [{"from": "12-29", "to": "01-03"}], "default": true, "version": 0}))]
pub struct IssuanceServiceView {
    /// The certificates offered, by code: `juminhyo` 住民票の写し, `juminhyo_kisai` 住民票記載事項証明書, `inkan`
    /// 印鑑登録証明書, `koseki` 戸籍証明書, `koseki_fuhyo` 戸籍の附票の写し, `shotoku_kazei` 所得・課税証明書.
    pub certificates: Vec<String>,
    /// Service hours, `HH:MM`: from `opens` until `closes`, every day that is not closed.
    pub opens: String,
    pub closes: String,
    /// No service on these days.
    pub closed_periods: Vec<ClosedPeriodView>,
    /// `true`: never set; the defaults apply (住民票の写し and 印鑑登録証明書, 06:30–23:00, closed 12-29 to 01-03).
    pub default: bool,
    /// The setting's version (also its `ETag`); 0: never set.
    pub version: u64,
}

/// The whole setting: it replaces the one before.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"certificates": ["juminhyo", "inkan", "koseki"], "opens": "07:00", "closes": "21:00",
    "closed_periods": [{"from": "12-29", "to": "01-03"}, {"from": "08-13", "to": "08-16"}]}))]
pub struct IssuanceServiceInput {
    /// At least one certificate code of the catalogue (see `IssuanceServiceView`), each once.
    pub certificates: Vec<String>,
    /// `HH:MM` (00:00–24:00), before `closes`.
    pub opens: String,
    /// `HH:MM` (00:00–24:00), after `opens`.
    pub closes: String,
    /// Each once; may be empty (open every day).
    pub closed_periods: Vec<ClosedPeriodView>,
}

fn view(state: &IssuanceServiceState, version: u64) -> IssuanceServiceView {
    let value = state.current();
    IssuanceServiceView {
        certificates: value.certificates.iter().map(|c| c.code().to_owned()).collect(),
        opens: value.opens.to_string(),
        closes: value.closes.to_string(),
        closed_periods: value
            .closed_periods
            .iter()
            .map(|p| ClosedPeriodView { from: p.from.to_string(), to: p.to.to_string() })
            .collect(),
        default: !state.is_set(),
        version,
    }
}

/// Every field of `input` that does not parse, or the setting.
fn parse(input: &IssuanceServiceInput) -> Result<IssuanceServiceValue, ApiError> {
    let mut errors = vec![];
    let mut certificates = vec![];
    for (i, code) in input.certificates.iter().enumerate() {
        match Certificate::parse(code) {
            Ok(c) => certificates.push(c),
            Err(e) => errors.push(FieldError::parse(format!("/certificates/{i}"), &e)),
        }
    }
    let mut time =
        |field: &str, text: &str| TimeOfDay::parse(text).map_err(|e| errors.push(FieldError::parse(field, &e))).ok();
    let (opens, closes) = (time("/opens", &input.opens), time("/closes", &input.closes));
    let mut closed_periods = vec![];
    for (i, period) in input.closed_periods.iter().enumerate() {
        let mut day = |end: &str, text: &str| {
            MonthDay::parse(text)
                .map_err(|e| errors.push(FieldError::parse(format!("/closed_periods/{i}/{end}"), &e)))
                .ok()
        };
        if let (Some(from), Some(to)) = (day("from", &period.from), day("to", &period.to)) {
            closed_periods.push(ClosedPeriod { from, to });
        }
    }
    match (opens, closes) {
        (Some(opens), Some(closes)) if errors.is_empty() => {
            Ok(IssuanceServiceValue { certificates, opens, closes, closed_periods })
        }
        _ => Err(ApiError::validation(errors)),
    }
}

/// The refusals of the setting, each on its field.
fn refused(e: IssuanceServiceError) -> ApiError {
    let all = match e {
        IssuanceServiceError::All(all) => all,
        one => vec![one],
    };
    let field = |e: &IssuanceServiceError| match e {
        IssuanceServiceError::NoCertificates | IssuanceServiceError::All(_) => "/certificates".to_owned(),
        IssuanceServiceError::DuplicateCertificate { index, .. } => format!("/certificates/{index}"),
        IssuanceServiceError::OpensNotBeforeCloses => "/closes".to_owned(),
        IssuanceServiceError::DuplicateClosedPeriod { index } => format!("/closed_periods/{index}"),
    };
    ApiError::validation(all.iter().map(|e| FieldError::new(field(e), Text::of(e))).collect())
}

/// The municipality's issuance service: what the issuance server is told through the feed of business system `01`
/// (the defaults until it is set).
#[utoipa::path(get, operation_id = "showIssuanceService",
    path = "/api/v1/municipalities/{code}/issuance-service", tag = "municipalities",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = IssuanceServiceView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails, description = "Not an operations manager of the municipality"),
        (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    let loaded = state.issuance.setting(&auth.actor, &code).await.map_err(|e| command_error(e, refused))?;
    Ok((etag(loaded.version), Json(view(&loaded.state, loaded.version))).into_response())
}

/// Replace the municipality's issuance service (its operations managers, the system administrator). Recorded as
/// `MunicipalityIssuanceServiceSet`; the setting in force again records nothing. The certificate issuance system's
/// feed (`01`) gets an `issuance_service` item with it while the municipality is permitted to use `01`.
#[utoipa::path(put, operation_id = "setIssuanceService",
    path = "/api/v1/municipalities/{code}/issuance-service", tag = "municipalities",
    request_body = IssuanceServiceInput,
    params(("code" = String, Path), ("If-Match" = Option<String>, Header)), security(("bearer" = [])),
    responses((status = 200, body = IssuanceServiceView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails, description = "Not an operations manager of the municipality"),
        (status = 404, body = ProblemDetails), (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "`/certificates/{i}` (not a code of the catalogue, or \
            given twice), `/certificates` (none), `/opens`, `/closes` (not `HH:MM`, or not after `opens`), \
            `/closed_periods/{i}/from`, `/closed_periods/{i}/to` (not an `MM-DD` that exists), \
            `/closed_periods/{i}` (given twice)")))]
pub async fn replace(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ConfigureResidentServices(code.clone()))?;
    let if_match = if_match(&headers)?;
    let value = parse(&body.parse::<IssuanceServiceInput>().await?)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "issuance_service.set", code.as_str());
    let executed = state.issuance.set(&ctx, &code, if_match, value).await.map_err(|e| command_error(e, refused))?;
    if executed.outcome.is_some() {
        state.metrics.commands_applied.fetch_add(1, Ordering::Relaxed);
    }
    Ok((etag(executed.version), Json(view(&executed.state, executed.version))).into_response())
}
