//! The resident registry at the HTTP edge (手引き I 1.1 利用者登録: 既存住基システム・住基ネットCS からの取り込み):
//! the streamed bulk import of a registry file with a per-row report, and the prefill of 利用者登録 from it, by
//! registry key or by the four facts read from a card (本人確認4情報).
//!
//! - `POST /api/v1/municipalities/{code}/registry/import`: the body is read as a stream and parsed row by row on
//!   the blocking pool into batches of [`BATCH_ROWS`], which the import use case
//!   (`ResidentServices::import_registry`) imports while the answer streams NDJSON: one line per row that was not
//!   unchanged, then a summary line. Nothing holds the whole file: the body, the parsed batches, their outcomes
//!   and the report lines all pass through bounded channels, so memory stays flat whatever the file's size.
//! - `GET …/registry/{registry_key}` and `POST …/registry/lookup`: an entry shaped like a registration draft,
//!   from `ResidentServices::registry_entry` and `registry_matches`.
//!
//! Owns the registry file's layout (its columns, the two recognised layouts, the row parser), the report (its
//! lines and their schemas) and the draft; reading the file (charsets, the streamed body, row numbers, header
//! matching) is `crate::import`'s, the cell formats of dates and sex `cardap_domain::cells`'. Which batches run
//! at once, the decision per row and the counts are `cardap_commands::registry_import`'s. Never logs a cell's
//! content: only counts, row numbers and municipality codes.
//!
//! Longer than 600 lines because it holds both halves of a streamed file import: the file's layout with its row
//! parser, and the report with its OpenAPI schemas.

use std::io;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::registry_import::{
    BatchError, BatchOutcome, ImportFailure, ImportInput, ImportRow, RegistryRow, RowOutcome, RowReport, SuppliedFacts,
};
use cardap_commands::residents::ResidentServices;
use cardap_commands::{CommandContext, Permission, authorize};
use cardap_domain::cells::{self, BirthDateCell, SexCell, half_width};
use cardap_domain::registry::{FullName, RegistryFacts, RegistryKey, parse_full_kana, split_kana};
use cardap_domain::resident::{Address, PostalCode};
use cardap_domain::{MunicipalityCode, ParseError};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::{Lang, Text};
use crate::import::body::{BodyFailure, BodySource};
use crate::import::layout::header_form;
use crate::import::{
    self, CellError, Charset, CsvRow, CsvRows, Header, HeaderError, ReadError, Unknown, declared_charset,
};
use crate::routes::RequestMeta;
use crate::routes::municipality_in_path;
use crate::state::AppState;

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

/// The longest row accepted (a registry row is a few hundred bytes): bounds the memory of one row.
const MAX_ROW_BYTES: u64 = 64 * 1024;

/// Characters of an unparseable registry key echoed in the report.
const MAX_ECHOED_KEY: usize = 40;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities/{code}/registry/import", post(import))
        .route("/api/v1/municipalities/{code}/registry/lookup", post(lookup))
        .route("/api/v1/municipalities/{code}/registry/{registry_key}", get(show))
}

// ---------------------------------------------------------------------------------------------------------------
// Columns and layouts

/// A column of a registry file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    Key,
    Name,
    KanjiFamily,
    KanjiGiven,
    Kana,
    BirthDate,
    Sex,
    PostalCode,
    Address,
}

impl import::Column for Column {
    const ALL: &'static [Column] = &[
        Column::Key,
        Column::Name,
        Column::KanjiFamily,
        Column::KanjiGiven,
        Column::Kana,
        Column::BirthDate,
        Column::Sex,
        Column::PostalCode,
        Column::Address,
    ];

    /// The English header name.
    fn field(self) -> &'static str {
        match self {
            Column::Key => "registry_key",
            Column::Name => "name",
            Column::KanjiFamily => "kanji_family",
            Column::KanjiGiven => "kanji_given",
            Column::Kana => "kana",
            Column::BirthDate => "birth_date",
            Column::Sex => "sex",
            Column::PostalCode => "postal_code",
            Column::Address => "address",
        }
    }

    /// The Japanese header as the registry systems write it.
    fn label(self) -> &'static str {
        match self {
            Column::Key => "宛名番号",
            Column::Name => "氏名",
            Column::KanjiFamily => "氏名（姓）",
            Column::KanjiGiven => "氏名（名）",
            Column::Kana => "カナ氏名",
            Column::BirthDate => "生年月日",
            Column::Sex => "性別",
            Column::PostalCode => "郵便番号",
            Column::Address => "住所",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::Key => &["宛名コード", "住民番号"],
            Column::Name => &["漢字氏名", "氏名(漢字)"],
            Column::KanjiFamily => &["漢字氏名(姓)", "姓"],
            Column::KanjiGiven => &["漢字氏名(名)", "名"],
            Column::Kana => &["氏名カナ", "カナ", "フリガナ", "氏名(カナ)", "氏名(フリガナ)", "カナ氏名(全角)"],
            Column::BirthDate => &[],
            Column::Sex => &[],
            Column::PostalCode => &["〒"],
            Column::Address => &[],
        }
    }
}

/// Whether a header names the 個人番号, which cardap never takes (not even to ignore it).
fn is_my_number(header: &str) -> bool {
    let h = header_form(header);
    ["個人番号", "マイナンバー", "my_number", "mynumber", "individual_number"].contains(&h.as_str())
}

/// Which of the two files this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 既存住基システム's export: key, name (whole or split), birth date, sex; kana, postal code, address optional.
    Registry,
    /// 住基ネットCS's 本人確認4情報: key, 氏名, 住所, 生年月日, 性別 and nothing else; the address is required.
    JukiNetCs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Registry => "registry",
            Kind::JukiNetCs => "juki_net_cs",
        }
    }
}

/// The file's header: which column is where, and which of the two layouts it is.
#[derive(Debug, Clone)]
struct Layout {
    kind: Kind,
    header: Header<Column>,
}

impl Layout {
    fn of(cells: &[String], row: u64) -> Result<Layout, ApiError> {
        let refuse = |h: &str| {
            is_my_number(h).then(|| {
                Text::new(
                    "個人番号（マイナンバー）の列があるファイルは取り込めません。その列を削除してから取り込んでください",
                    "a file with a My Number column is refused: cardap never takes the My Number; remove the column",
                )
            })
        };
        let (header, mut errors) = Header::<Column>::of(cells, row, Unknown::Ignore, refuse);
        let has = |c: Column| header.has(c);
        if !has(Column::Key) {
            errors.push(header.missing(Column::Key));
        }
        let split = has(Column::KanjiFamily) || has(Column::KanjiGiven);
        if has(Column::Name) && split {
            errors.push(
                FieldError::new(
                    format!("/rows/{row}/name"),
                    Text::new(
                        "「氏名」と「氏名（姓）」「氏名（名）」の列は、どちらか一方にしてください",
                        "give either the whole name (name) or kanji_family and kanji_given, not both",
                    ),
                )
                .in_cell(row, header.name(Column::Name).to_owned()),
            );
        } else if split {
            for c in [Column::KanjiFamily, Column::KanjiGiven] {
                if !has(c) {
                    errors.push(header.missing(c));
                }
            }
        } else if !has(Column::Name) {
            errors.push(header.missing(Column::Name));
        }
        for c in [Column::BirthDate, Column::Sex] {
            if !has(c) {
                errors.push(header.missing(c));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors).with_detail(Text::new(
                "見出し行（1行目）を確認してください。何も取り込んでいません",
                "check the header row; nothing was imported",
            )));
        }
        let four_facts_only = has(Column::Name)
            && has(Column::Address)
            && !has(Column::Kana)
            && !has(Column::PostalCode)
            && header.ignored().is_empty();
        let kind = if four_facts_only { Kind::JukiNetCs } else { Kind::Registry };
        Ok(Layout { kind, header })
    }

    fn has(&self, column: Column) -> bool {
        self.header.has(column)
    }

    /// How the file names `column`.
    fn name(&self, column: Column) -> &str {
        self.header.name(column)
    }

    fn error(&self, column: Column, message: Text) -> CellError {
        self.header.error(column, message)
    }

    /// `value`, or a "required" error about `column`.
    fn required(&self, column: Column, value: Option<String>, errors: &mut Vec<CellError>) -> Option<String> {
        if value.is_none() {
            errors.push(self.error(column, Text::new("必須項目です", "is required")));
        }
        value
    }

    /// The parsed value, or the parse error about `column`.
    fn parsed<T>(&self, column: Column, result: Result<T, ParseError>, errors: &mut Vec<CellError>) -> Option<T> {
        result.map_err(|e| errors.push(self.error(column, Text::of(&e)))).ok()
    }

    /// The cell format's value, or its error about `column`.
    fn cell<T>(&self, column: Column, result: Result<T, cells::CellError>, errors: &mut Vec<CellError>) -> Option<T> {
        result.map_err(|e| errors.push(self.error(column, Text::of(&e)))).ok()
    }

    /// One data row, parsed into a registry row or the errors of its cells.
    /// `None` for a blank row (every cell empty, full-width spaces included), which is skipped.
    fn parse_row(&self, row: CsvRow) -> Option<Parsed> {
        if row.is_blank() {
            return None;
        }
        let mut cells = self.header.row_of(row);
        let row = cells.row;
        let mut errors = std::mem::take(&mut cells.errors);
        let mut take = |c: Column| cells.take(c);
        let raw_key = take(Column::Key);
        let name = take(Column::Name);
        let family = take(Column::KanjiFamily);
        let given = take(Column::KanjiGiven);
        let kana = take(Column::Kana);
        let birth_date = take(Column::BirthDate);
        let sex = take(Column::Sex);
        let postal_code = take(Column::PostalCode);
        let address = take(Column::Address);

        let key = self
            .required(Column::Key, raw_key.clone(), &mut errors)
            .and_then(|v| self.parsed(Column::Key, RegistryKey::parse(&half_width(&v)), &mut errors));
        let name = if self.has(Column::Name) {
            self.required(Column::Name, name, &mut errors)
                .and_then(|v| self.parsed(Column::Name, FullName::parse(&v), &mut errors))
        } else {
            let family = self
                .required(Column::KanjiFamily, family, &mut errors)
                .and_then(|v| self.parsed(Column::KanjiFamily, FullName::parse(&v), &mut errors));
            let given = self
                .required(Column::KanjiGiven, given, &mut errors)
                .and_then(|v| self.parsed(Column::KanjiGiven, FullName::parse(&v), &mut errors));
            match (family, given) {
                (Some(f), Some(g)) => self.parsed(
                    Column::KanjiGiven,
                    FullName::parse(&format!("{}\u{3000}{}", f.as_str(), g.as_str())),
                    &mut errors,
                ),
                _ => None,
            }
        };
        let kana = kana.and_then(|v| self.parsed(Column::Kana, parse_full_kana(&v), &mut errors));
        let birth_date = self
            .required(Column::BirthDate, birth_date, &mut errors)
            .and_then(|v| self.cell(Column::BirthDate, BirthDateCell::parse(&v), &mut errors));
        let sex = self
            .required(Column::Sex, sex, &mut errors)
            .and_then(|v| self.cell(Column::Sex, SexCell::parse(&v), &mut errors));
        let postal_code = postal_code.and_then(|v| self.parsed(Column::PostalCode, parse_postal_code(&v), &mut errors));
        let address =
            if self.kind == Kind::JukiNetCs { self.required(Column::Address, address, &mut errors) } else { address }
                .and_then(|v| self.parsed(Column::Address, Address::parse(&v), &mut errors));

        Some(match (key, name, birth_date, sex) {
            (Some(key), Some(name), Some(birth_date), Some(sex)) if errors.is_empty() => {
                let facts = RegistryFacts { name, kana, birth_date, sex, postal_code, address };
                ImportRow::Read(RegistryRow { row, key, facts })
            }
            _ => ImportRow::Unread {
                row,
                why: BadRow { key: raw_key.map(|k| k.chars().take(MAX_ECHOED_KEY).collect()), errors },
            },
        })
    }

    /// The optional facts the file has a column for: the others keep what the registry holds.
    fn supplied(&self) -> SuppliedFacts {
        SuppliedFacts {
            kana: self.has(Column::Kana),
            postal_code: self.has(Column::PostalCode),
            address: self.has(Column::Address),
        }
    }
}

/// 郵便番号 with or without hyphen, a leading 〒 and full-width digits allowed.
fn parse_postal_code(s: &str) -> Result<PostalCode, ParseError> {
    PostalCode::parse(half_width(s).trim_start_matches('〒').trim())
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing the streamed body (on the blocking pool)

/// One data row after parsing: a registry row, or a row that cannot be imported.
type Parsed = ImportRow<BadRow>;

/// Why a row cannot be imported.
#[derive(Debug)]
struct BadRow {
    /// The registry key cell as written (cut short), when there was one.
    key: Option<String>,
    errors: Vec<CellError>,
}

/// What the parser hands to the import: batches of rows, or the reason the body could not be read on (the rows
/// before were sent).
type Message = ImportInput<BadRow, ApiError>;

/// The answer to a file that stopped before its end at `row`.
fn read_problem(rows: &CsvRows<BodySource>, error: ReadError) -> ApiError {
    match (error, rows.source().failure()) {
        (ReadError::TooLong { row }, _) => ApiError::validation(vec![
            FieldError::new(
                format!("/rows/{row}"),
                Text::new(
                    format!("1行が長すぎます（{} KiB まで）。取り込みを中止しました", MAX_ROW_BYTES / 1024),
                    format!("a row longer than {} KiB; the import was stopped", MAX_ROW_BYTES / 1024),
                ),
            )
            .in_row(row),
        ]),
        (_, Some(BodyFailure::Stalled)) => ApiError::malformed(
            Text::new(
                format!("{}秒間データが届かなかったため、取り込みを中止しました", STALL_TIMEOUT.as_secs()),
                format!("the upload stalled for {} s; the import was stopped", STALL_TIMEOUT.as_secs()),
            ),
            vec![],
        ),
        (_, Some(BodyFailure::TimeLimit)) => ApiError::malformed(
            Text::new(
                format!("取り込みが{}分を超えたため中止しました", IMPORT_TIME_LIMIT.as_secs() / 60),
                format!("the import took longer than {} minutes and was stopped", IMPORT_TIME_LIMIT.as_secs() / 60),
            ),
            vec![],
        ),
        (_, Some(BodyFailure::Broken) | None) => {
            ApiError::malformed(Text::new("送信が途中で切れました", "the upload was cut off"), vec![])
        }
    }
}

/// The parser, on the blocking pool: reads the header (answering the handler through `header`), then every data
/// row, sending them in batches of [`BATCH_ROWS`] through the bounded `rows` channel. Stops when the importer
/// goes away.
fn parse_file(
    mut csv: CsvRows<BodySource>,
    declared: Option<Charset>,
    header: oneshot::Sender<Result<Layout, ApiError>>,
    rows: mpsc::Sender<Message>,
) {
    let layout = match csv.header(declared) {
        Ok((cells, row)) => Layout::of(&cells, row),
        Err(HeaderError::Problem(problem)) => Err(problem),
        Err(HeaderError::Read(e)) => Err(read_problem(&csv, e)),
    };
    let layout = match layout {
        Ok(layout) => layout,
        Err(e) => {
            let _ = header.send(Err(e));
            return;
        }
    };
    if header.send(Ok(layout.clone())).is_err() {
        return;
    }
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while let Some(next) = csv.next_row() {
        match next {
            Ok(row) => {
                let Some(parsed) = layout.parse_row(row) else { continue };
                batch.push(parsed);
                if batch.len() >= BATCH_ROWS
                    && rows
                        .blocking_send(Message::Batch(std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS))))
                        .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                if !batch.is_empty() && rows.blocking_send(Message::Batch(std::mem::take(&mut batch))).is_err() {
                    return;
                }
                let _ = rows.blocking_send(Message::Failed(read_problem(&csv, e)));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = rows.blocking_send(Message::Batch(batch));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Import

/// One line of the import's NDJSON answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ImportLine {
    Row(ImportRowReport),
    Problem(ImportProblemLine),
    Summary(ImportSummaryLine),
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
/// imported again. Errors found before the first row (header, charset, permissions) are ordinary
/// `application/problem+json` answers. `Idempotency-Key` is not needed (a re-import is idempotent by itself).
#[utoipa::path(post, operation_id = "importRegistry",
    path = "/api/v1/municipalities/{code}/registry/import", tag = "registry",
    request_body(content = String, content_type = "text/csv",
        description = "CSV, UTF-8 (with or without BOM) or Shift_JIS, header row first",
        example = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n000123456,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n"),
    params(("code" = String, Path)),
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
            (named with `row` and `column`), or a 個人番号 column; nothing was imported")))]
pub async fn import(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ConfigureResidentServices(code.clone()))?;
    let declared = declared_charset(&headers)?;

    let (header_tx, header_rx) = oneshot::channel();
    let (rows_tx, rows_rx) = mpsc::channel(PARSED_BATCHES);
    let source =
        BodySource::new(body.into_data_stream(), tokio::runtime::Handle::current(), STALL_TIMEOUT, IMPORT_TIME_LIMIT);
    let csv = CsvRows::new(source, Some(MAX_ROW_BYTES));
    tokio::task::spawn_blocking(move || parse_file(csv, declared, header_tx, rows_tx));
    let layout = header_rx.await.map_err(|_| ApiError::internal("the registry file parser stopped"))??;

    // The use case gives every batch a fresh command id: a re-import is idempotent by itself.
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "registry.import", code.as_str());
    let report = Report { code, layout, lang: Lang::current() };
    let (report_tx, report_rx) = mpsc::channel::<Result<Bytes, io::Error>>(REPORT_CHUNKS);
    let import = run_import(state.residents, ctx, report, rows_rx, report_tx);
    tokio::spawn(import.instrument(tracing::Span::current()));

    let body = stream::unfold(report_rx, |mut rx| async move { rx.recv().await.map(|chunk| (chunk, rx)) });
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson")),
        // Personal data (names in error messages): not for shared caches.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
}

/// Runs the import use case on the parsed batches and writes its outcomes as the report, in file order; then logs
/// the summary and ends the report with it. When the client goes away the outcomes are no longer read, which stops
/// the import.
async fn run_import(
    residents: ResidentServices,
    ctx: CommandContext,
    report: Report,
    rows: mpsc::Receiver<Message>,
    out: mpsc::Sender<Result<Bytes, io::Error>>,
) {
    let started = Instant::now();
    let (outcomes_tx, outcomes_rx) = mpsc::channel(1);
    let import = residents.import_registry(&ctx, &report.code, report.layout.supplied(), rows, outcomes_tx);
    let forward = async {
        // Owned here, so that it is dropped (and the import stops) as soon as the client is gone.
        let mut outcomes = outcomes_rx;
        while let Some(outcome) = outcomes.recv().await {
            let lines = report.lines(outcome);
            if !lines.is_empty() && out.send(Ok(Bytes::from(lines))).await.is_err() {
                return true;
            }
        }
        false
    };
    let (totals, client_gone) = tokio::join!(import, forward);
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
            layout: report.layout.kind.name().to_owned(),
            ignored_columns: report.layout.header.ignored().to_vec(),
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
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let key = RegistryKey::parse(&registry_key).map_err(|_| ApiError::not_found())?;
    let entry = state.residents.registry_entry(&code, &key).await?.ok_or_else(ApiError::not_found)?;
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
    let matches = state.residents.registry_matches(&code, &name, &birth_date, sex, address.as_ref()).await?;
    let items = matches.iter().map(|(key, facts)| RegistryDraft::of(key, facts)).collect();
    Ok((no_store(), Json(RegistryMatches { items })).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::import::Column as _;

    fn header(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn headers_are_english_names_labels_or_aliases() {
        for &c in Column::ALL {
            assert_eq!(Column::of_header(c.field()), Some(c), "{}", c.field());
            assert_eq!(Column::of_header(c.label()), Some(c), "{}", c.label());
        }
        assert_eq!(Column::of_header("氏名(姓)"), Some(Column::KanjiFamily));
        assert_eq!(Column::of_header("*生年月日（YYYYMMDD）"), Some(Column::BirthDate));
        assert_eq!(Column::of_header("Registry_Key"), Some(Column::Key));
        assert_eq!(Column::of_header("氏名（フリガナ）"), Some(Column::Kana));
        assert_eq!(Column::of_header("世帯番号"), None);
    }

    #[test]
    fn the_two_layouts_are_told_apart_by_their_header() {
        let registry =
            Layout::of(&header(&["宛名番号", "氏名", "カナ氏名", "生年月日", "性別", "郵便番号", "住所"]), 1).unwrap();
        assert_eq!(registry.kind, Kind::Registry);
        let split =
            Layout::of(&header(&["registry_key", "kanji_family", "kanji_given", "birth_date", "sex"]), 1).unwrap();
        assert_eq!(split.kind, Kind::Registry);
        let cs = Layout::of(&header(&["宛名番号", "氏名", "住所", "生年月日", "性別"]), 1).unwrap();
        assert_eq!(cs.kind, Kind::JukiNetCs);
        let extra = Layout::of(&header(&["宛名番号", "氏名", "住所", "生年月日", "性別", "世帯番号"]), 1).unwrap();
        assert_eq!((extra.kind, extra.header.ignored().to_vec()), (Kind::Registry, vec!["世帯番号".to_owned()]));
    }

    #[test]
    fn a_header_without_required_columns_or_with_the_my_number_is_refused() {
        let e = Layout::of(&header(&["氏名", "性別"]), 1).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let columns: Vec<_> = e.problem(Lang::En).errors.into_iter().filter_map(|f| f.column).collect();
        assert_eq!(columns, ["宛名番号", "生年月日"]);
        let e = Layout::of(&header(&["宛名番号", "氏名", "生年月日", "性別", "個人番号"]), 1).unwrap_err();
        assert_eq!(e.problem(Lang::En).errors[0].column.as_deref(), Some("個人番号"));
        let e = Layout::of(&header(&["宛名番号", "氏名", "氏名（姓）", "生年月日", "性別"]), 1).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    fn record(row: u64, cells: &[&str]) -> CsvRow {
        CsvRow { row, cells: cells.iter().map(|c| Ok(c.trim().to_owned())).collect() }
    }

    #[test]
    fn a_row_is_parsed_or_its_bad_cells_named() {
        let layout =
            Layout::of(&header(&["宛名番号", "氏名", "カナ氏名", "生年月日", "性別", "郵便番号", "住所"]), 1).unwrap();
        let Some(ImportRow::Read(row)) = layout
            .parse_row(record(2, &["000123456", "山田 太郎", "ﾔﾏﾀﾞ ﾀﾛｳ", "19890107", "男", "1000001", "千代田1-1"]))
        else {
            panic!("a good row")
        };
        assert_eq!(row.key.as_str(), "000123456");
        assert_eq!(row.facts.name.as_str(), "山田\u{3000}太郎");
        assert_eq!(row.facts.kana.as_ref().unwrap().as_str(), "ヤマダ\u{3000}タロウ");
        assert_eq!(row.facts.postal_code.as_ref().unwrap().as_str(), "100-0001");
        assert_eq!(row.facts.address.as_ref().unwrap().as_str(), "千代田１－１");
        let Some(ImportRow::Unread { why: bad, .. }) =
            layout.parse_row(record(3, &["000123457", "", "やまだ", "3640108", "x", "", "", "extra"]))
        else {
            panic!("a bad row")
        };
        let columns: Vec<_> = bad.errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(columns, ["8列目", "氏名", "カナ氏名", "生年月日", "性別"]);
        assert_eq!(bad.key.as_deref(), Some("000123457"));
    }

    #[test]
    fn the_cs_layout_requires_the_address() {
        let layout = Layout::of(&header(&["宛名番号", "氏名", "住所", "生年月日", "性別"]), 1).unwrap();
        let Some(ImportRow::Unread { why: bad, .. }) =
            layout.parse_row(record(2, &["1", "山田 太郎", "", "3640107", "1"]))
        else {
            panic!("the address is required")
        };
        assert_eq!(bad.errors[0].column, "住所");
        assert!(layout.parse_row(record(3, &["", "\u{3000}", " ", "", ""])).is_none(), "a blank row is skipped");
    }
}
