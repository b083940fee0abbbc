//! The read access log at the HTTP edge (issue 12, point 4): `GET /api/v1/audit/access` (every recorded read of
//! residents' personal data) and `GET /api/v1/audit/access-alerts` (the bulk-read alerts), streamed as NDJSON (or
//! CSV with `Accept: text/csv`) page by page, never loaded whole, with the filters of `/api/v1/audit/events`; and
//! the municipality's bulk-read threshold, `GET`/`PUT /api/v1/municipalities/{code}/read-alert-policy`.
//!
//! Owns the HTTP shape of these lines and of the threshold. What is recorded, the alert's rule and who may ask
//! are `cardap_commands::read_access`'s. The lines hold ids only (resident ids, registry keys, operator IDs).

use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cardap_commands::read_access::{
    LogCursor, OperatorNames, ReadAccess, ReadAccessLine, ReadAccessQuery, ReadAlertLine, WINDOW,
};
use cardap_domain::read_alert::{ReadAlertError, ReadAlertState};
use cardap_domain::resident::ResidentId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::Text;
use crate::json::DeferredJson;
use crate::routes::audit::{HistoryParams, parse_history};
use crate::routes::{RequestMeta, etag, if_match, municipality_in_path};
use crate::state::AppState;

/// Lines per chunk of the answer.
const PAGE: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit/access", get(access))
        .route("/api/v1/audit/access-alerts", get(alerts))
        .route("/api/v1/municipalities/{code}/read-alert-policy", get(show_policy).put(set_policy))
}

/// One recorded read (NDJSON; the same columns in CSV, the lists space-separated).
#[derive(Debug, ToSchema)]
#[schema(example = json!({"seq": 17, "recorded_at": "2026-12-05T10:00:00Z", "municipality": "131016",
    "operator_id": "OP0501", "operator_key": "5f0c…", "terminal": "窓口3番", "request_id": null,
    "operation": "resident.search", "residents": ["0190a6c2-3c4d-7e5f-8a9b-0c1d2e3f4a5b"], "registry_keys": []}))]
#[allow(dead_code)] // documents the line; the line itself is `cardap_commands::read_access::ReadAccessLine`
pub struct ReadAccessLineSchema {
    /// The record's place in the log (increasing).
    pub seq: u64,
    pub recorded_at: String,
    pub municipality: String,
    pub operator_id: Option<String>,
    pub operator_key: String,
    pub terminal: Option<String>,
    pub request_id: Option<String>,
    /// `resident.read`, `resident.search`, `registry.read` or `registry.lookup`.
    pub operation: String,
    /// The resident ids the read returned.
    pub residents: Vec<String>,
    /// The registry entries (宛名番号) the read returned.
    pub registry_keys: Vec<String>,
}

/// One bulk-read alert (NDJSON; the same columns in CSV).
#[derive(Debug, ToSchema)]
#[schema(example = json!({"seq": 3, "raised_at": "2026-12-05T10:00:00Z", "municipality": "131016",
    "operator_id": "OP0501", "operator_key": "5f0c…", "window_start": "2026-12-05T09:00:00Z",
    "distinct_residents": 51, "threshold": 50}))]
#[allow(dead_code)] // documents the line; the line itself is `cardap_commands::read_access::ReadAlertLine`
pub struct ReadAlertLineSchema {
    pub seq: u64,
    pub raised_at: String,
    pub municipality: String,
    pub operator_id: Option<String>,
    pub operator_key: String,
    /// The hour looked at began after this instant and ended at `raised_at`.
    pub window_start: String,
    /// Distinct residents (and registry entries) he read in that hour.
    pub distinct_residents: u64,
    /// The municipality's threshold then.
    pub threshold: u64,
}

fn parse(params: HistoryParams) -> Result<ReadAccessQuery, ApiError> {
    let resident_id = match params.resident_id.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(raw) => {
            Some(ResidentId::parse(raw).map_err(|e| ApiError::validation(vec![FieldError::parse("resident_id", &e)]))?)
        }
        None => None,
    };
    let history = parse_history(HistoryParams { resident_id: None, ..params })?;
    Ok(ReadAccessQuery {
        municipality: history.municipality,
        operator_id: history.operator_id,
        resident_id,
        from: history.from,
        to: history.to,
    })
}

/// Who read which residents' personal data, when, from which terminal, through which operation: every single
/// read, search page and registry lookup, in the order recorded. A municipality's log is for its auditors and the
/// system administrator; every municipality's (no `municipality`) for the system administrator only.
#[utoipa::path(get, operation_id = "auditReadAccess", path = "/api/v1/audit/access", tag = "audit",
    params(HistoryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "NDJSON, one line per recorded read (CSV with `Accept: text/csv`), streamed",
            content((ReadAccessLineSchema = "application/x-ndjson"), (String = "text/csv"))),
        (status = 403, body = ProblemDetails, description = "Not an auditor of this municipality (nor the system \
            administrator); every municipality at once is for the system administrator"),
        (status = 404, body = ProblemDetails, description = "Another municipality's log"),
        (status = 422, body = ProblemDetails, description = "A filter that cannot be read")))]
pub async fn access(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let query = parse(params)?;
    state.reads.authorize(&auth.actor, &query)?;
    stream_log(state.reads.clone(), query, Log::Reads, crate::routes::streamed::wants_csv(&headers)).await
}

/// The bulk-read alerts: an operator read more distinct residents within an hour than the municipality's
/// threshold (`read-alert-policy`). Same filters and access as `/api/v1/audit/access` (`resident_id` is ignored).
#[utoipa::path(get, operation_id = "auditReadAlerts", path = "/api/v1/audit/access-alerts", tag = "audit",
    params(HistoryParams),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "NDJSON, one line per alert (CSV with `Accept: text/csv`), streamed",
            content((ReadAlertLineSchema = "application/x-ndjson"), (String = "text/csv"))),
        (status = 403, body = ProblemDetails, description = "Not an auditor of this municipality (nor the system \
            administrator)"),
        (status = 404, body = ProblemDetails, description = "Another municipality's alerts"),
        (status = 422, body = ProblemDetails, description = "A filter that cannot be read")))]
pub async fn alerts(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let query = parse(params)?;
    state.reads.authorize(&auth.actor, &query)?;
    stream_log(state.reads.clone(), query, Log::Alerts, crate::routes::streamed::wants_csv(&headers)).await
}

#[derive(Debug, Clone, Copy)]
enum Log {
    Reads,
    Alerts,
}

struct Pages {
    reads: ReadAccess,
    query: ReadAccessQuery,
    names: OperatorNames,
    log: Log,
    csv: bool,
}

impl crate::routes::streamed::Pages for Pages {
    type Cursor = LogCursor;

    async fn fetch(&mut self, after: Option<LogCursor>) -> Result<(Vec<u8>, Option<LogCursor>), ApiError> {
        Ok(match self.log {
            Log::Reads => {
                let page = self.reads.page(&self.query, after, PAGE, &mut self.names).await?;
                (render_reads(&page.lines, self.csv), page.next)
            }
            Log::Alerts => {
                let page = self.reads.alerts(&self.query, after, PAGE, &mut self.names).await?;
                (render_alerts(&page.lines, self.csv), page.next)
            }
        })
    }
}

async fn stream_log(reads: ReadAccess, query: ReadAccessQuery, log: Log, csv: bool) -> Result<Response, ApiError> {
    let pages = Pages { reads, query, names: OperatorNames::new(), log, csv };
    let head = if csv { csv_row(header_of(log)) } else { vec![] };
    crate::routes::streamed::streamed(pages, head, csv, "the read access log").await
}

fn header_of(log: Log) -> Vec<String> {
    let columns: &[&str] = match log {
        Log::Reads => &[
            "seq",
            "recorded_at",
            "municipality",
            "operator_id",
            "operator_key",
            "terminal",
            "request_id",
            "operation",
            "residents",
            "registry_keys",
        ],
        Log::Alerts => &[
            "seq",
            "raised_at",
            "municipality",
            "operator_id",
            "operator_key",
            "window_start",
            "distinct_residents",
            "threshold",
        ],
    };
    columns.iter().map(|c| (*c).to_owned()).collect()
}

// The CSV writer writes into memory: its results cannot fail but for a broken record, which these are not.
fn csv_rows(rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(vec![]);
    for row in rows {
        let _ = writer.write_record(row);
    }
    writer.into_inner().unwrap_or_default()
}

fn csv_row(row: Vec<String>) -> Vec<u8> {
    csv_rows([row])
}

fn ndjson<T: Serialize>(lines: &[T]) -> Vec<u8> {
    let mut out = vec![];
    for line in lines {
        if let Ok(json) = serde_json::to_vec(line) {
            out.extend(json);
            out.push(b'\n');
        }
    }
    out
}

fn render_reads(lines: &[ReadAccessLine], csv: bool) -> Vec<u8> {
    if !csv {
        return ndjson(lines);
    }
    csv_rows(lines.iter().map(|l| {
        vec![
            l.seq.to_string(),
            l.recorded_at.to_rfc3339(),
            l.municipality.clone(),
            l.operator_id.clone().unwrap_or_default(),
            l.operator_key.clone(),
            l.terminal.clone().unwrap_or_default(),
            l.request_id.clone().unwrap_or_default(),
            l.operation.clone(),
            l.residents.join(" "),
            l.registry_keys.join(" "),
        ]
    }))
}

fn render_alerts(lines: &[ReadAlertLine], csv: bool) -> Vec<u8> {
    if !csv {
        return ndjson(lines);
    }
    csv_rows(lines.iter().map(|l| {
        vec![
            l.seq.to_string(),
            l.raised_at.to_rfc3339(),
            l.municipality.clone(),
            l.operator_id.clone().unwrap_or_default(),
            l.operator_key.clone(),
            l.window_start.to_rfc3339(),
            l.distinct_residents.to_string(),
            l.threshold.to_string(),
        ]
    }))
}

// ---- the threshold ----

/// A municipality's bulk-read alert threshold (大量閲覧の警告).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"residents_per_hour": 50, "window_minutes": 60, "version": 1}))]
pub struct ReadAlertPolicyView {
    /// An alert is raised when one operator reads more distinct residents than this within `window_minutes`;
    /// `null`: no alert.
    pub residents_per_hour: Option<u32>,
    /// The window the residents are counted in (a sliding hour).
    pub window_minutes: u64,
    /// The setting's version (also its `ETag`); 0: never set.
    pub version: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"residents_per_hour": 50}))]
pub struct ReadAlertPolicyInput {
    /// 1–1000000, or `null` for no alert.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub residents_per_hour: Option<u64>,
}

fn policy_view(state: &ReadAlertState, version: u64) -> ReadAlertPolicyView {
    ReadAlertPolicyView {
        residents_per_hour: state.residents_per_hour(),
        window_minutes: WINDOW.as_secs() / 60,
        version,
    }
}

fn policy_error(e: ReadAlertError) -> ApiError {
    ApiError::validation(vec![FieldError::new("/residents_per_hour", Text::of(&e))])
}

/// The municipality's bulk-read alert threshold (its operations managers, auditors and the system administrator).
#[utoipa::path(get, operation_id = "showReadAlertPolicy",
    path = "/api/v1/municipalities/{code}/read-alert-policy", tag = "audit",
    params(("code" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ReadAlertPolicyView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails, description = "Neither an operations manager nor an auditor of the \
            municipality"),
        (status = 404, body = ProblemDetails)))]
pub async fn show_policy(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    let policy = state.reads.threshold_for(&auth.actor, &code).await.map_err(|e| command_error(e, policy_error))?;
    Ok((etag(policy.version), Json(policy_view(&policy.state, policy.version))).into_response())
}

/// Set (or with `null` lift) the municipality's bulk-read alert threshold (運用管理部門, the system administrator).
/// Recorded as `MunicipalityReadAlertSet`; the same value again records nothing.
#[utoipa::path(put, operation_id = "setReadAlertPolicy",
    path = "/api/v1/municipalities/{code}/read-alert-policy", tag = "audit", request_body = ReadAlertPolicyInput,
    params(("code" = String, Path), ("If-Match" = Option<String>, Header)), security(("bearer" = [])),
    responses((status = 200, body = ReadAlertPolicyView, headers(("ETag" = String))),
        (status = 400, body = ProblemDetails),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of \
            the municipality (or the system administrator)"),
        (status = 404, body = ProblemDetails), (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "`/residents_per_hour` out of range")))]
pub async fn set_policy(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    cardap_commands::authorize(&auth.actor, &cardap_commands::Permission::ConfigureReadAlerts(code.clone()))?;
    let body: ReadAlertPolicyInput = body.parse().await?;
    // Beyond u32 is out of range all the same: the domain refuses it with its message.
    let residents_per_hour = body.residents_per_hour.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "read_alerts.set", code.as_str());
    let executed = state
        .reads
        .set_threshold(&ctx, &code, if_match(&headers)?, residents_per_hour)
        .await
        .map_err(|e| command_error(e, policy_error))?;
    if executed.outcome.is_some() {
        state.metrics.commands_applied.fetch_add(1, Ordering::Relaxed);
    }
    Ok((etag(executed.version), Json(policy_view(&executed.state, executed.version))).into_response())
}
