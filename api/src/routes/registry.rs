//! The resident registry at the HTTP edge (手引き I 1.1 利用者登録: 既存住基システム・住基ネットCS からの取り込み):
//! the streamed bulk import of a registry file with a per-row report, and the prefill of 利用者登録 from it, by
//! registry key or by the four facts read from a card (本人確認4情報).
//!
//! - `POST /api/v1/municipalities/{code}/registry/import`: admitted only while the municipality runs no other
//!   registry import and the server fewer than `imports.registry_max` (`cardap_commands::imports`; else `429`
//!   before the body is read). The body is read as a stream and parsed row by row on a thread of its own (never
//!   the blocking pool, which a trickling upload would hold for hours) into batches of [`BATCH_ROWS`], which the
//!   import use case (`ResidentServices::import_registry`) imports while the answer streams NDJSON: one line per
//!   row that was not unchanged, then a summary line. Nothing holds the whole file: the body, the parsed batches,
//!   their outcomes and the report lines all pass through bounded channels, so memory stays flat whatever the
//!   file's size. Before each batch, and every [`SESSION_CHECK`] while it waits for one, the import asks whether
//!   its operator's session still permits it, and
//!   stops (a problem line, `"aborted": true`) when he logged out, his session expired or he was revoked.
//! - `GET …/registry/{registry_key}` and `POST …/registry/lookup`: an entry shaped like a registration draft,
//!   from `ResidentServices::read_registry_entry` and `lookup_registry`, which record the read in the read
//!   access log.
//!
//! Owns the HTTP of these routes, the report (its lines and their schemas) and the draft. What a registry file
//! looks like and its parser are `file`'s; reading a CSV (charsets, the streamed body, row
//! numbers, header matching) is `crate::import`'s. Which batches run at once, the decision per row and the counts
//! are `cardap_commands::registry_import`'s, the two prefill queries `cardap_commands::registry`'s. Never logs a
//! cell's content: only counts, row numbers and municipality codes.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::imports::{ImportKind, ImportSlot};
use cardap_commands::registry_import::{BatchError, BatchOutcome, Guard, ImportFailure, RowOutcome, RowReport};
use cardap_commands::residents::ResidentServices;
use cardap_commands::{CommandContext, Permission, authorize};
use cardap_domain::MunicipalityCode;
use cardap_domain::cells::{self, BirthDateCell, SexCell};
use cardap_domain::registry::{FullName, RegistryFacts, RegistryKey, split_kana};
use cardap_domain::resident::Address;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::auth::{Authenticated, still_permitted};
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::{Lang, Text};
use crate::import::body::BodySource;
use crate::import::{self, CsvRows, declared_charset};
use crate::routes::RequestMeta;
use crate::routes::municipality_in_path;
use crate::routes::residents::registration_error;
use crate::state::AppState;

mod file;

use file::{BadRow, Column, Layout, MAX_ROW_BYTES, Message, parse_file};

/// Rows per batch: one registry-view query and one atomic append each.
pub const BATCH_ROWS: usize = 1000;

/// Parsed batches waiting for the import (on top of those in flight, `registry_import::IN_FLIGHT`).
const PARSED_BATCHES: usize = 2;

/// Report chunks (one per batch) waiting for the client to read them.
const REPORT_CHUNKS: usize = 4;

/// How long the upload may pause (no bytes arriving while the server waits for them) before the import stops.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest an import may take from its first to its last byte: its own limit, instead of the 300 s of the
/// other routes (which here bound only the wait for the header row, as the report starts right after it).
pub const IMPORT_TIME_LIMIT: Duration = Duration::from_secs(2 * 60 * 60);

/// How often a running import asks whether its operator's session is still live and still permits it.
pub const SESSION_CHECK: Duration = Duration::from_secs(2);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities/{code}/registry/import", post(import))
        .route("/api/v1/municipalities/{code}/registry/lookup", post(lookup))
        .route("/api/v1/municipalities/{code}/registry/{registry_key}", get(show))
}

// ---------------------------------------------------------------------------------------------------------------
// Import

/// One line of the import's NDJSON answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ImportLine {
    Row(ImportRowReport),
    Problem(ImportProblemLine),
    /// With `?progress=true`: after every batch.
    Progress(ImportProgressLine),
    Summary(ImportSummaryLine),
}

/// How far the import is (`?progress=true`): after each batch of rows, for a progress bar.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProgressLine {
    pub progress: ImportProgress,
}

#[derive(Debug, Default, Clone, Copy, Serialize, ToSchema)]
pub struct ImportProgress {
    /// Data rows decided so far (imported, changed, unchanged or refused).
    pub rows: u64,
    /// Rows refused so far.
    pub errors: u64,
}

/// The import's query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportOptions {
    /// `true`: a `{"progress": {"rows", "errors"}}` line after every batch (1,000 rows), for a progress bar.
    #[serde(default)]
    pub progress: Option<bool>,
}

impl ImportOptions {
    /// Read after the municipality in the path was checked (another municipality's import is 404 first).
    fn parse(query: Option<&str>) -> Result<ImportOptions, ApiError> {
        let mut options = ImportOptions::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match (name.as_ref(), value.as_ref()) {
                ("progress", "true") => options.progress = Some(true),
                ("progress", "false") => options.progress = Some(false),
                ("progress", _) => {
                    return Err(ApiError::validation(vec![FieldError::new(
                        "progress",
                        Text::new("true または false を指定してください", "expected true or false"),
                    )]));
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// A row that was imported, changed or refused (unchanged rows get no line).
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportRowReport {
    /// The row as a spreadsheet numbers it: the header is row 1, the first data row row 2.
    pub row: u64,
    /// The row's 宛名番号 (as written, when it could not be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_key: Option<String>,
    pub outcome: RowOutcomeKind,
    /// `changed`: the fields that changed (`name`, `kana`, `birth_date`, `sex`, `postal_code`, `address`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// `error`: what is wrong, per cell.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ImportCellError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowOutcomeKind {
    /// A new registry entry (`RegistryEntryImported`).
    Imported,
    /// An entry whose facts changed (`RegistryEntryChanged` with only the changed fields).
    Changed,
    /// The row was not imported; the rest of the file was.
    Error,
}

/// One bad cell of a row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportCellError {
    /// The column's header as written in the file (`N列目` for a column without a header).
    pub column: String,
    /// The column's English name (`birth_date`), when it is a known column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// The import stopped early (the database failed, the upload stalled or broke off): the rows reported before
/// were imported; those of `rows` (when given) and after were not. Importing the same file again is safe.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProblemLine {
    pub problem: ProblemDetails,
    /// The first and last row of the batch that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<[u64; 2]>,
}

/// The last line.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportSummaryLine {
    pub summary: ImportSummary,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ImportSummary {
    /// Data rows read (blank rows are not counted).
    pub rows: u64,
    pub imported: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Rows refused (each reported with its errors).
    pub errors: u64,
    /// The layout recognised from the header: `registry` (既存住基システム) or `juki_net_cs` (住基ネットCS).
    pub layout: String,
    /// Header cells of columns that were not read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_columns: Vec<String>,
    /// The import stopped early (see the `problem` line before).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aborted: bool,
}

/// What the report of one import needs besides the outcomes.
#[derive(Debug)]
struct Report {
    code: MunicipalityCode,
    layout: Layout,
    lang: Lang,
    /// A progress line after every batch.
    progress: bool,
}

/// 住基データ取り込み: import a file of the resident registry, streamed, with a report per row.
///
/// **Body**: the file, `Content-Type: text/csv; charset=UTF-8` (a BOM is fine, and means UTF-8 whatever the
/// label) or `text/csv; charset=Shift_JIS` (also `windows-31j`, `cp932`, `ms932`). Without a charset the file
/// must be UTF-8. The body is read as it arrives and the file may be of any size (1,000,000 rows and more):
/// it is imported in atomic batches of 1,000 rows while the report streams back.
///
/// **Header row** (row 1), recognised as one of two layouts:
/// - **既存住基システム** export: `registry_key`/宛名番号 (also 宛名コード, 住民番号), `name`/氏名 (the whole name,
///   family and given separated by a space) or `kanji_family`/氏名（姓） + `kanji_given`/氏名（名）,
///   `kana`/カナ氏名 (optional, whole kana name with a space), `birth_date`/生年月日, `sex`/性別,
///   `postal_code`/郵便番号 (optional), `address`/住所 (optional). Other columns of the export (世帯番号, 続柄 …)
///   are ignored and named in the summary's `ignored_columns`.
/// - **住基ネットCS** 本人確認4情報: exactly the key column, 氏名, 住所, 生年月日 and 性別; the address is then
///   required in every row.
///
/// Headers are matched ignoring spaces, ASCII case, full-width brackets, a leading `*` and a trailing hint such
/// as `生年月日(YYYYMMDD)`. A file with a 個人番号/マイナンバー column is refused whole (`422`).
///
/// **Cells**: 生年月日 as `EYYMMDD` (`3640107`), `YYYYMMDD` (`19890107`), `YYYY-MM-DD`, `YYYY/M/D` or the era
/// in words (`昭和64年1月7日`); 性別 as the ISO 5218 digit or 男/女 (男性/女性, 指定なし, 適用不能); 郵便番号
/// with or without hyphen; names and addresses in full width (half-width characters are converted); kana in
/// katakana (half-width kana converted). A column the file does not have keeps the entry's current value (a
/// 住基ネットCS file does not clear the kana and postal code of an earlier 既存住基 import); an empty cell of a
/// column it has clears that optional fact.
///
/// **Answer** `200`, `application/x-ndjson`, streamed while importing: one line per row that was not unchanged,
/// `{"row", "registry_key", "outcome": "imported"|"changed"|"error", "changed"?, "errors"?: [{"column",
/// "field"?, "message"}]}` (rows in file order; `row` counts lines as a spreadsheet does, the header being
/// row 1), then `{"summary": {"rows", "imported", "changed", "unchanged", "errors", "layout",
/// "ignored_columns"?}}`. A bad row is reported and skipped; the good rows are imported. Importing the same file
/// again changes nothing (every row `unchanged`, no event); a changed row becomes one `RegistryEntryChanged`
/// naming the changed fields. If the import stops early (database failure, the upload pausing for 120 s or
/// breaking off, or longer than 2 hours in all) a `{"problem": {…}, "rows"?: [first, last]}` line says why and
/// the summary carries `"aborted": true`; batches reported before it were imported, and the file can simply be
/// imported again. The import stops the same way (`"type": "/problems/unauthenticated"` in the problem line)
/// when the importing operator's session ends — he logs out, it expires, he is revoked — or `/problems/forbidden`
/// when he loses the permission: it is checked before each batch and every 2 seconds. Errors found before the first row (header,
/// charset, permissions) are ordinary `application/problem+json` answers. `Idempotency-Key` is not needed (a
/// re-import is idempotent by itself).
///
/// **Limits**: one registry import per municipality at a time, and `imports.registry_max` (4) on the server;
/// another one is answered `429 /problems/too-many-imports` with `Retry-After` before its body is read.
#[utoipa::path(post, operation_id = "importRegistry",
    path = "/api/v1/municipalities/{code}/registry/import", tag = "registry",
    request_body(content = String, content_type = "text/csv",
        description = "CSV, UTF-8 (with or without BOM) or Shift_JIS, header row first",
        example = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n000123456,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n"),
    params(("code" = String, Path), ImportOptions),
    security(("bearer" = [])),
    responses(
        (status = 200, content_type = "application/x-ndjson", body = ImportLine,
            description = "One line per imported, changed or refused row, then a summary line",
            example = "{\"row\":2,\"registry_key\":\"000123456\",\"outcome\":\"imported\"}\n{\"row\":3,\"registry_key\":\"000123457\",\"outcome\":\"error\",\"errors\":[{\"column\":\"生年月日\",\"field\":\"birth_date\",\"message\":\"存在しない日付です\"}]}\n{\"summary\":{\"rows\":2,\"imported\":1,\"changed\":0,\"unchanged\":0,\"errors\":1,\"layout\":\"registry\"}}\n"),
        (status = 400, body = ProblemDetails, description = "The upload broke off or stalled before the header"),
        (status = 403, body = ProblemDetails, description = "Not the municipality's operations manager"),
        (status = 404, body = ProblemDetails),
        (status = 415, body = ProblemDetails, description = "Not `text/csv`, an unknown charset, or a header that \
            is not UTF-8 without a charset"),
        (status = 422, body = ProblemDetails, description = "An empty file, a header without the required columns \
            (named with `row` and `column`), or a 個人番号 column; nothing was imported"),
        (status = 429, body = ProblemDetails, description = "`/problems/too-many-imports`: the municipality runs a \
            registry import already, or the server as many as it may; `Retry-After` says when to try again. The \
            body was not read")))]
pub async fn import(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    query: axum::extract::RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    let options = ImportOptions::parse(query.0.as_deref())?;
    let permission = Permission::ConfigureResidentServices(code.clone());
    authorize(&auth.actor, &permission)?;
    let declared = declared_charset(&headers)?;
    // Before a byte of the body is read: one import per municipality, a few on the server.
    let slot = state.imports.admit(ImportKind::Registry, &code)?;

    let (header_tx, header_rx) = oneshot::channel();
    let (rows_tx, rows_rx) = mpsc::channel(PARSED_BATCHES);
    let (stop, stopped) = oneshot::channel();
    let source =
        BodySource::new(body.into_data_stream(), tokio::runtime::Handle::current(), STALL_TIMEOUT, IMPORT_TIME_LIMIT)
            .stopped_by(stopped);
    let csv = CsvRows::new(source, Some(MAX_ROW_BYTES));
    std::thread::Builder::new()
        .name("registry-import".into())
        .spawn(move || parse_file(csv, declared, header_tx, rows_tx))
        .map_err(ApiError::internal)?;
    let layout = header_rx.await.map_err(|_| ApiError::internal("the registry file parser stopped"))??;

    // The use case gives every batch a fresh command id: a re-import is idempotent by itself.
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "registry.import", code.as_str());
    let report = Report { code, layout, lang: Lang::current(), progress: options.progress == Some(true) };
    let (report_tx, report_rx) = mpsc::channel::<Result<Bytes, io::Error>>(REPORT_CHUNKS);
    let (access, credential) = (state.access.clone(), auth.credential.clone());
    let guard = Guard {
        every: SESSION_CHECK,
        check: move || {
            let (access, credential, permission) = (access.clone(), credential.clone(), permission.clone());
            async move { still_permitted(&access, &credential, &permission).await }
        },
    };
    let held = Held { _slot: slot, _stop: stop };
    let import = run_import(state.residents, ctx, report, (rows_rx, guard), report_tx, held);
    tokio::spawn(import.instrument(tracing::Span::current()));

    let body = stream::unfold(report_rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson")),
        // Personal data (names in error messages): not for shared caches.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
}

/// What a running import holds until it has ended: its place among the imports, and the stop signal of the
/// body's reader (dropped, the parser's thread stops waiting for the upload).
struct Held {
    _slot: ImportSlot,
    _stop: oneshot::Sender<()>,
}

/// Runs the import use case on the parsed batches and writes its outcomes as the report, in file order; then logs
/// the summary and ends the report with it. When the client goes away the outcomes are no longer read, which stops
/// the import; so does the guard when the operator's session ends.
async fn run_import<G, GFut>(
    residents: ResidentServices,
    ctx: CommandContext,
    report: Report,
    (rows, guard): (mpsc::Receiver<Message>, Guard<G>),
    out: mpsc::Sender<Result<Bytes, io::Error>>,
    held: Held,
) where
    G: FnMut() -> GFut,
    GFut: Future<Output = Option<ApiError>>,
{
    let started = Instant::now();
    let (outcomes_tx, outcomes_rx) = mpsc::channel(1);
    let import = residents.import_registry(&ctx, &report.code, report.layout.supplied(), rows, outcomes_tx, guard);
    let forward = async {
        // Owned here, so that it is dropped (and the import stops) as soon as the client is gone.
        let mut outcomes = outcomes_rx;
        let mut progress = ImportProgress::default();
        while let Some(outcome) = outcomes.recv().await {
            progress.rows += outcome.rows.len() as u64;
            progress.errors += outcome.rows.iter().filter(|(_, r)| r.is_error()).count() as u64;
            let mut lines = report.lines(outcome);
            if report.progress {
                push_line(&mut lines, &ImportLine::Progress(ImportProgressLine { progress }));
            }
            if !lines.is_empty() && out.send(Ok(Bytes::from(lines))).await.is_err() {
                return true;
            }
        }
        false
    };
    let (totals, client_gone) = tokio::join!(import, forward);
    // Given back before the summary: whoever reads it may start the next import at once.
    drop(held);
    let counts = totals.counts;
    tracing::info!(
        municipality = %report.code,
        rows = counts.rows,
        imported = counts.imported,
        changed = counts.changed,
        unchanged = counts.unchanged,
        errors = counts.errors,
        aborted = totals.aborted || totals.abandoned || client_gone,
        seconds = started.elapsed().as_secs_f64(),
        "registry imported"
    );
    if !(client_gone || totals.abandoned) {
        let summary = ImportSummary {
            rows: counts.rows,
            imported: counts.imported,
            changed: counts.changed,
            unchanged: counts.unchanged,
            errors: counts.errors,
            layout: report.layout.kind_name().to_owned(),
            ignored_columns: report.layout.ignored().to_vec(),
            aborted: totals.aborted,
        };
        let mut line = Vec::new();
        push_line(&mut line, &ImportLine::Summary(ImportSummaryLine { summary }));
        let _ = out.send(Ok(Bytes::from(line))).await;
    }
}

/// `value` as one NDJSON line.
fn push_line(out: &mut Vec<u8>, value: &ImportLine) {
    // Serializing these plain structs cannot fail; an empty line would only be skipped by a reader.
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'\n');
}

impl Report {
    /// The report lines of one batch: a line per row that was not unchanged, in file order, then the problem
    /// that stopped the import, if one did.
    fn lines(&self, outcome: BatchOutcome<BadRow, ApiError>) -> Vec<u8> {
        let mut out = Vec::new();
        for (row, report) in outcome.rows {
            let line = match report {
                RowReport::Decided { key, outcome } => match self.decided(row, &key, outcome) {
                    Some(line) => line,
                    None => continue,
                },
                RowReport::Unread(bad) => self.unread(row, bad),
            };
            push_line(&mut out, &ImportLine::Row(line));
        }
        let (problem, rows) = match outcome.failure {
            None => return out,
            Some(ImportFailure::Source(problem)) => (problem, None),
            Some(ImportFailure::Batch { first, last, error }) => {
                let e = match error {
                    BatchError::View(e) => ApiError::from(e),
                    BatchError::Command(e) => command_error(e, ApiError::internal),
                };
                tracing::error!(
                    municipality = %self.code, first_row = first, last_row = last, kind = e.kind(),
                    "a registry import batch failed; the import stops"
                );
                (e, Some([first, last]))
            }
        };
        push_line(&mut out, &ImportLine::Problem(ImportProblemLine { problem: problem.problem(self.lang), rows }));
        out
    }

    /// The line of a decided row; none for an unchanged row.
    fn decided(&self, row: u64, key: &RegistryKey, outcome: RowOutcome) -> Option<ImportRowReport> {
        let (outcome, changed, errors) = match outcome {
            RowOutcome::Unchanged => return None,
            RowOutcome::Imported => (RowOutcomeKind::Imported, vec![], vec![]),
            RowOutcome::Changed(fields) => {
                (RowOutcomeKind::Changed, fields.into_iter().map(str::to_owned).collect(), vec![])
            }
            RowOutcome::Refused(e) => {
                let error = ImportCellError {
                    column: self.layout.name(Column::Key).to_owned(),
                    field: Some(import::Column::field(Column::Key).to_owned()),
                    message: Text::of(&e).get(self.lang).to_owned(),
                };
                (RowOutcomeKind::Error, vec![], vec![error])
            }
        };
        Some(ImportRowReport { row, registry_key: Some(key.to_string()), outcome, changed, errors })
    }

    /// The line of a row that could not be read.
    fn unread(&self, row: u64, bad: BadRow) -> ImportRowReport {
        let errors = bad
            .errors
            .into_iter()
            .map(|e| ImportCellError {
                column: e.column,
                field: e.field.map(str::to_owned),
                message: e.message.get(self.lang).to_owned(),
            })
            .collect();
        ImportRowReport { row, registry_key: bad.key, outcome: RowOutcomeKind::Error, changed: vec![], errors }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Prefill

/// A registry entry shaped like the body of `POST …/residents` (利用者登録), for the clerk to complete.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryDraft {
    /// 宛名番号: send it with the registration to link the resident to the entry.
    pub registry_key: String,
    /// Present when the registry's kana splits into family and given name at its space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kana_name: Option<NamePair>,
    /// Present when the registry's name splits into family and given name at its space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kanji_name: Option<NamePair>,
    /// `EYYMMDD`.
    #[schema(example = "3640107")]
    pub birth_date: String,
    /// ISO 5218 digit.
    #[schema(example = "1")]
    pub sex: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "100-0001")]
    pub postal_code: Option<String>,
    /// The registry's 住所.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address1: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NamePair {
    pub family: String,
    pub given: String,
}

impl RegistryDraft {
    fn of(key: &RegistryKey, facts: &RegistryFacts) -> Self {
        RegistryDraft {
            registry_key: key.to_string(),
            kana_name: facts
                .kana
                .as_ref()
                .and_then(split_kana)
                .map(|n| NamePair { family: n.family.to_string(), given: n.given.to_string() }),
            kanji_name: facts
                .name
                .split()
                .map(|n| NamePair { family: n.family.to_string(), given: n.given.to_string() }),
            birth_date: facts.birth_date.to_string(),
            sex: facts.sex.code().to_owned(),
            postal_code: facts.postal_code.as_ref().map(ToString::to_string),
            address1: facts.address.as_ref().map(ToString::to_string),
        }
    }
}

/// Personal data: never cached by anyone in between.
fn no_store() -> [(header::HeaderName, HeaderValue); 1] {
    [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]
}

/// 既存住基からの呼び出し: the registry entry `registry_key` as a registration draft.
///
/// `404` when the municipality has no such entry (another municipality's entries do not exist here), or when
/// the entry's personal data was erased.
#[utoipa::path(get, operation_id = "showRegistryEntry",
    path = "/api/v1/municipalities/{code}/registry/{registry_key}", tag = "registry",
    params(("code" = String, Path), ("registry_key" = String, Path, description = "宛名番号")),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RegistryDraft),
        (status = 403, body = ProblemDetails, description = "Not a clerk of the municipality"),
        (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, registry_key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let key = RegistryKey::parse(&registry_key).map_err(|_| ApiError::not_found())?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "registry.read", &format!("{code}/{key}"));
    let entry = state
        .residents
        .read_registry_entry(&ctx, &code, &key)
        .await
        .map_err(|e| command_error(e, |d| registration_error(d, &[])))?
        .ok_or_else(ApiError::not_found)?;
    let facts = entry.facts.ok_or_else(|| {
        ApiError::not_found().with_detail(Text::new(
            "この住基レコードの個人情報は消去されています",
            "the registry entry's personal data has been erased",
        ))
    })?;
    Ok((no_store(), Json(RegistryDraft::of(&entry.registry_key, &facts))).into_response())
}

/// The four facts as read from a card (券面事項入力補助AP: 氏名, 住所, 生年月日, 性別).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "山田 太郎", "address": "東京都千代田区千代田1-1", "birth_date": "19890107", "sex": "1"}))]
pub struct CardFacts {
    /// The whole name; spaces and half/full width do not matter.
    pub name: String,
    /// Not compared (notations of addresses differ); entries at the same address are listed first.
    #[serde(default)]
    pub address: Option<String>,
    /// `YYYYMMDD` (as the card has it) or `EYYMMDD`; also `YYYY-MM-DD`.
    pub birth_date: String,
    /// ISO 5218 digit (as the card has it), or 男/女.
    pub sex: String,
}

impl std::fmt::Debug for CardFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardFacts").finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryMatches {
    pub items: Vec<RegistryDraft>,
}

/// カード読み取りからの呼び出し: the registry entries matching the four facts read from a card.
///
/// An entry matches when its birth date and sex are the same and its name is the same once spaces are removed
/// and half-width characters are taken as full-width. Usually one; several when namesakes share a birthday
/// (those at the card's address first); none in another municipality's registry.
#[utoipa::path(post, operation_id = "lookupRegistry",
    path = "/api/v1/municipalities/{code}/registry/lookup", tag = "registry",
    request_body = CardFacts,
    params(("code" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = RegistryMatches),
        (status = 403, body = ProblemDetails, description = "Not a clerk of the municipality"),
        (status = 404, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "A fact that cannot be read: `/name`, `/birth_date`, \
            `/sex`")))]
pub async fn lookup(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: crate::json::DeferredJson,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let body: CardFacts = body.parse().await?;
    let mut errors = vec![];
    let name = FullName::parse(&body.name).map_err(|e| errors.push(FieldError::parse("/name", &e))).ok();
    let cell_error = |field: &str, e: cells::CellError| FieldError::new(field, Text::of(&e));
    let birth_date = BirthDateCell::parse(&body.birth_date).map_err(|e| errors.push(cell_error("/birth_date", e))).ok();
    let sex = SexCell::parse(&body.sex).map_err(|e| errors.push(cell_error("/sex", e))).ok();
    let (Some(name), Some(birth_date), Some(sex)) = (name, birth_date, sex) else {
        return Err(ApiError::validation(errors));
    };
    let address = body.address.as_deref().and_then(|a| Address::parse(a).ok());
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "registry.lookup", code.as_str());
    let matches = state
        .residents
        .lookup_registry(&ctx, &code, (&name, &birth_date, sex), address.as_ref())
        .await
        .map_err(|e| command_error(e, |d| registration_error(d, &[])))?;
    let items = matches.iter().map(|(key, facts)| RegistryDraft::of(key, facts)).collect();
    Ok((no_store(), Json(RegistryMatches { items })).into_response())
}
