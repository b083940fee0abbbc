//! Operator history for auditors: `GET /api/v1/audit/events`, streamed as NDJSON (or CSV with `Accept:
//! text/csv`) page by page, never loaded whole; and the state as of an instant of an operator, a business
//! system's shared use, a resident and a card. The rules of the queries are in `cardap_commands::history`.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cardap_commands::history::{History, HistoryCursor, HistoryLine, HistoryQuery};
use cardap_domain::MunicipalityCode;
use cardap_domain::operator::OperatorId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails};
use crate::i18n::Text;
use crate::routes::RequestMeta;
use crate::state::AppState;

/// Lines per chunk of the answer.
const PAGE: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit/events", get(events))
        .route("/api/v1/municipalities/{code}/operators/{operator_id}/as-of", get(operator_as_of))
        .route("/api/v1/business-systems/{business_id}/as-of", get(shared_use_as_of))
        .route("/api/v1/municipalities/{code}/residents/{resident_id}/as-of", get(resident_as_of))
        .route("/api/v1/municipalities/{code}/cards/{fid}/as-of", get(card_as_of))
}

/// The filters; all optional but `municipality` (the system administrator may leave it out for every
/// municipality and the installation's own events).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// The municipality's code.
    pub municipality: Option<String>,
    /// Only what this operator (of `municipality`) did.
    pub operator_id: Option<String>,
    /// Only what concerns this resident.
    pub resident_id: Option<String>,
    /// From this instant (RFC 3339), inclusive.
    pub from: Option<String>,
    /// Up to this instant (RFC 3339), exclusive.
    pub to: Option<String>,
}

/// One line of the history (NDJSON; the same columns in CSV, `changes` as JSON text).
#[derive(Debug, ToSchema)]
#[schema(example = json!({"position": 42, "recorded_at": "2026-12-05T10:00:00Z", "municipality": "131016",
    "operator_id": "OP0501", "operator_key": "5f0c…", "terminal": "窓口3番", "type": "ResidentRegistered",
    "stream": "resident/0193…", "changes": {"personal": {"kana_name": {"family": "ヤマダ", "given": "タロウ"}}}}))]
#[allow(dead_code)] // documents the line; the line itself is `cardap_commands::history::HistoryLine`
pub struct HistoryLineSchema {
    pub position: u64,
    pub recorded_at: String,
    pub municipality: Option<String>,
    pub operator_id: Option<String>,
    pub operator_key: Option<String>,
    pub terminal: Option<String>,
    #[schema(rename = "type")]
    pub event_type: String,
    pub stream: String,
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
}

/// The history's filters, read (the read access log reads them the same way).
pub(crate) fn parse_history(params: HistoryParams) -> Result<HistoryQuery, ApiError> {
    let mut errors = vec![];
    let municipality = params
        .municipality
        .as_deref()
        .map(MunicipalityCode::parse)
        .transpose()
        .map_err(|e| errors.push(FieldError::parse("municipality", &e)))
        .ok()
        .flatten();
    let operator_id = params
        .operator_id
        .as_deref()
        .map(OperatorId::parse)
        .transpose()
        .map_err(|e| errors.push(FieldError::parse("operator_id", &e)))
        .ok()
        .flatten();
    let mut instant = |name: &str, value: Option<&str>| match value.map(DateTime::parse_from_rfc3339).transpose() {
        Ok(at) => at.map(|t| t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                name,
                Text::new(
                    "日時は RFC 3339 形式（例: 2026-12-05T10:00:00+09:00）で指定してください",
                    "an instant in RFC 3339 form, e.g. 2026-12-05T10:00:00+09:00",
                ),
            ));
            None
        }
    };
    let from = instant("from", params.from.as_deref());
    let to = instant("to", params.to.as_deref());
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let resident_id = params.resident_id.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    Ok(HistoryQuery { municipality, operator_id, resident_id, from, to })
}

/// The history of a municipality (its auditors, the system administrator), or of everything (the system
/// administrator), in the global order: each line the position, when, where, who (operator ID and terminal), the
/// event type, its stream and what changed. Logins, failed logins, lockouts, certificates, imports are events too.
#[utoipa::path(get, operation_id = "auditEvents", path = "/api/v1/audit/events", tag = "audit",
    params(HistoryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "NDJSON, one line per event (CSV with `Accept: text/csv`), streamed",
            content((HistoryLineSchema = "application/x-ndjson"), (String = "text/csv"))),
        (status = 403, body = ProblemDetails, description = "Not an auditor of this municipality (nor the system \
            administrator); every municipality at once is for the system administrator"),
        (status = 404, body = ProblemDetails, description = "Another municipality's history")))]
pub async fn events(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let query = parse_history(params)?;
    let history = state.history.clone();
    history.authorize(&auth.actor, &query)?;
    let csv = crate::routes::streamed::wants_csv(&headers);
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "audit.events", "");
    let pages = Pages { history, ctx, query, names: HashMap::new(), csv };
    let head = if csv { csv_header() } else { vec![] };
    crate::routes::streamed::streamed(pages, head, csv, "the audit history").await
}

struct Pages {
    history: History,
    /// The auditor's read, recorded page by page.
    ctx: cardap_commands::CommandContext,
    query: HistoryQuery,
    names: HashMap<cardap_domain::OperatorKey, Option<String>>,
    csv: bool,
}

impl crate::routes::streamed::Pages for Pages {
    type Cursor = HistoryCursor;

    async fn fetch(&mut self, after: Option<HistoryCursor>) -> Result<(Vec<u8>, Option<HistoryCursor>), ApiError> {
        let page = self.history.page(&self.ctx, &self.query, after, PAGE, &mut self.names).await?;
        Ok((render(&page.lines, self.csv), page.next))
    }
}

const COLUMNS: [&str; 9] =
    ["position", "recorded_at", "municipality", "operator_id", "operator_key", "terminal", "type", "stream", "changes"];

// The CSV writer writes into memory: its results cannot fail but for a broken record, which these are not.
fn csv_header() -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(vec![]);
    let _ = writer.write_record(COLUMNS);
    writer.into_inner().unwrap_or_default()
}

fn render(lines: &[HistoryLine], csv: bool) -> Vec<u8> {
    if csv {
        let mut writer = csv::Writer::from_writer(vec![]);
        for line in lines {
            let _ = writer.write_record([
                line.position.to_string(),
                line.recorded_at.to_rfc3339(),
                line.municipality.clone().unwrap_or_default(),
                line.operator_id.clone().unwrap_or_default(),
                line.operator_key.clone().unwrap_or_default(),
                line.terminal.clone().unwrap_or_default(),
                line.event_type.clone(),
                line.stream.clone(),
                line.changes.to_string(),
            ]);
        }
        return writer.into_inner().unwrap_or_default();
    }
    let mut out = vec![];
    for line in lines {
        if let Ok(json) = serde_json::to_vec(line) {
            out.extend(json);
            out.push(b'\n');
        }
    }
    out
}

/// The instant to look at.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AsOfParams {
    /// RFC 3339, e.g. `2026-04-01T09:00:00+09:00`.
    pub at: Option<String>,
}

/// An operator as he stood at an instant, and what he could use then.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"at": "2026-04-01T00:00:00Z", "version": 3, "registered": true, "revoked": false,
    "locked": false, "roles": ["clerk"], "business_systems": ["01", "02"], "usable_business_systems": ["01"],
    "internal_ids": [{"business_id": "02", "internal_id": "L0042", "role": "司書"}]}))]
pub struct OperatorAsOfView {
    pub at: String,
    /// His stream's version then (0: not registered yet).
    pub version: u64,
    pub registered: bool,
    pub revoked: bool,
    /// Locked out of new password logins at that instant.
    pub locked: bool,
    pub roles: Vec<String>,
    /// His permitted business systems (許可業務) then.
    pub business_systems: Vec<String>,
    /// Those he could use then: permitted ∩ his municipality's shared use then ∩ in service then.
    pub usable_business_systems: Vec<String>,
    pub internal_ids: Vec<InternalIdThen>,
}

/// A 業務内ID held at the instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct InternalIdThen {
    pub business_id: String,
    pub internal_id: String,
    pub role: Option<String>,
}

/// What operator X could do on date D (auditors of his municipality, the system administrator): his stream and
/// those of his business systems replayed up to `at`.
#[utoipa::path(get, operation_id = "operatorAsOf", path = "/api/v1/municipalities/{code}/operators/{operator_id}/as-of",
    tag = "audit",
    params(("code" = String, Path), ("operator_id" = String, Path), AsOfParams),
    security(("bearer" = [])),
    responses((status = 200, body = OperatorAsOfView),
        (status = 403, body = ProblemDetails, description = "Not an auditor of this municipality"),
        (status = 404, body = ProblemDetails, description = "Another municipality, or not an operator ID"),
        (status = 422, body = ProblemDetails, description = "`at` missing or not RFC 3339")))]
pub async fn operator_as_of(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, operator_id)): Path<(String, String)>,
    Query(params): Query<AsOfParams>,
) -> Result<Response, ApiError> {
    let code = crate::routes::municipality_in_path(&state, &auth, &code).await?;
    let operator_id = OperatorId::parse(&operator_id).map_err(|_| ApiError::not_found())?;
    cardap_commands::authorize(&auth.actor, &cardap_commands::Permission::ReadHistory(code.clone()))?;
    let at = instant_at(&params)?;
    let then = state.history.operator_as_of(&code, &operator_id, at).await?;
    let then = then.ok_or_else(ApiError::not_found)?;
    Ok(Json(OperatorAsOfView {
        at: then.at.to_rfc3339(),
        version: then.version,
        registered: then.registered,
        revoked: then.revoked,
        locked: then.locked,
        roles: then.roles,
        business_systems: then.business_systems,
        usable_business_systems: then.usable_business_systems,
        internal_ids: then
            .internal_ids
            .into_iter()
            .map(|(business_id, internal_id, role)| InternalIdThen { business_id, internal_id, role })
            .collect(),
    })
    .into_response())
}

/// A resident as he stood at an instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResidentAsOfView {
    pub at: String,
    /// As the resident is shown, with the personal data he had then (`erased` when his key is destroyed since)
    /// and his stream's version then.
    pub resident: crate::routes::residents::ResidentView,
}

/// A resident as he stood at an instant (auditors of his municipality, the system administrator): his stream
/// replayed up to `at`.
#[utoipa::path(get, operation_id = "residentAsOf", path = "/api/v1/municipalities/{code}/residents/{resident_id}/as-of",
    tag = "audit",
    params(("code" = String, Path), ("resident_id" = String, Path), AsOfParams),
    security(("bearer" = [])),
    responses((status = 200, body = ResidentAsOfView),
        (status = 403, body = ProblemDetails, description = "Not an auditor of this municipality"),
        (status = 404, body = ProblemDetails, description = "Another municipality, or not registered here by then"),
        (status = 422, body = ProblemDetails, description = "`at` missing or not RFC 3339")))]
pub async fn resident_as_of(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    Path((code, resident_id)): Path<(String, String)>,
    Query(params): Query<AsOfParams>,
) -> Result<Response, ApiError> {
    let code = crate::routes::municipality_in_path(&state, &auth, &code).await?;
    let id = crate::routes::residents::resident_in_path(&resident_id)?;
    cardap_commands::authorize(&auth.actor, &cardap_commands::Permission::ReadHistory(code.clone()))?;
    let at = instant_at(&params)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "residents.as_of", &format!("{code}/{id}"));
    let then = state.history.resident_as_of(&ctx, &code, &id, at).await?.ok_or_else(ApiError::not_found)?;
    Ok(Json(ResidentAsOfView { at: at.to_rfc3339(), resident: crate::routes::residents::view(&then) }).into_response())
}

/// A card as it stood at an instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardAsOfView {
    pub at: String,
    /// As the card is shown, with its status, local area and APs then and its stream's version then.
    pub card: crate::routes::cards::CardView,
}

/// A card as it stood at an instant (auditors of its municipality, the system administrator): its stream
/// replayed up to `at`.
#[utoipa::path(get, operation_id = "cardAsOf", path = "/api/v1/municipalities/{code}/cards/{fid}/as-of",
    tag = "audit",
    params(("code" = String, Path), ("fid" = String, Path), AsOfParams),
    security(("bearer" = [])),
    responses((status = 200, body = CardAsOfView),
        (status = 403, body = ProblemDetails, description = "Not an auditor of this municipality"),
        (status = 404, body = ProblemDetails, description = "Another municipality, or not registered here by then"),
        (status = 422, body = ProblemDetails, description = "`at` missing or not RFC 3339")))]
pub async fn card_as_of(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    Query(params): Query<AsOfParams>,
) -> Result<Response, ApiError> {
    let code = crate::routes::municipality_in_path(&state, &auth, &code).await?;
    let fid = crate::routes::cards::fid_in_path(&fid)?;
    cardap_commands::authorize(&auth.actor, &cardap_commands::Permission::ReadHistory(code.clone()))?;
    let at = instant_at(&params)?;
    let then = state.history.card_as_of(&code, &fid, at).await?.ok_or_else(ApiError::not_found)?;
    Ok(Json(CardAsOfView { at: at.to_rfc3339(), card: crate::routes::cards::view(&then) }).into_response())
}

/// The required `at`.
fn instant_at(params: &AsOfParams) -> Result<DateTime<Utc>, ApiError> {
    let at = params.at.as_deref().map(DateTime::parse_from_rfc3339).and_then(Result::ok);
    at.map(|t| t.with_timezone(&Utc)).ok_or_else(|| {
        ApiError::validation(vec![FieldError::new(
            "at",
            Text::new(
                "日時（at）を RFC 3339 形式（例: 2026-04-01T09:00:00+09:00）で指定してください",
                "at: an instant in RFC 3339 form, e.g. 2026-04-01T09:00:00+09:00",
            ),
        )])
    })
}

/// A business system's shared use as it stood at an instant.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"at": "2026-04-01T00:00:00Z", "version": 4, "registered": true, "retired": false,
    "permitted_municipalities": ["131016"]}))]
pub struct SharedUseAsOfView {
    pub at: String,
    pub version: u64,
    pub registered: bool,
    pub retired: bool,
    /// The municipalities permitted then (for an auditor: his own, if it was).
    pub permitted_municipalities: Vec<String>,
}

/// Which municipalities could use a business system at an instant (共同利用 as of then): the system
/// administrator sees them all, an auditor whether his own municipality could.
#[utoipa::path(get, operation_id = "sharedUseAsOf", path = "/api/v1/business-systems/{business_id}/as-of",
    tag = "audit",
    params(("business_id" = String, Path, description = "業務ID"), AsOfParams),
    security(("bearer" = [])),
    responses((status = 200, body = SharedUseAsOfView),
        (status = 403, body = ProblemDetails, description = "Neither the system administrator nor an auditor"),
        (status = 404, body = ProblemDetails, description = "No such business system"),
        (status = 422, body = ProblemDetails, description = "`at` missing or not RFC 3339")))]
pub async fn shared_use_as_of(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    Query(params): Query<AsOfParams>,
) -> Result<Response, ApiError> {
    let id = crate::routes::business_systems::path_id(&business_id)?;
    let at = instant_at(&params)?;
    let then = state
        .history
        .shared_use_as_of(&auth.actor, &id, at)
        .await
        .map_err(|e| crate::error::command_error(e, |never: std::convert::Infallible| match never {}))?;
    let then = then.ok_or_else(ApiError::not_found)?;
    Ok(Json(SharedUseAsOfView {
        at: then.at.to_rfc3339(),
        version: then.version,
        registered: then.registered,
        retired: then.retired,
        permitted_municipalities: then.permitted_municipalities,
    })
    .into_response())
}
