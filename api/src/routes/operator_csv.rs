//! Operator CSV: batch registration by import, export with the screen's filters, and migration (移行) of
//! operators from one municipality to another (手引き I 2.1(5), 2.2(6) 操作者情報の移行).
//!
//! - `POST /api/v1/municipalities/{code}/operators/import`: a job (`202`, then `routes::jobs`), all or nothing.
//!   Every row is parsed and asked of the registration's own dry run (`Operators::registration_check`: roles,
//!   shared use, 業務内IDs, IDs twice in the file or already registered), every error is reported with its row
//!   and column, and only a file without errors is registered, in one atomic batch. No password is hashed
//!   before the whole file is valid. The job's work is `job`'s.
//! - `GET /api/v1/municipalities/{code}/operators/export`: streamed page by page from the operator directory
//!   (read through `Operators`); never a password.
//! - `POST /api/v1/operator-migrations` (system administrator): the use case `Operators::migrate`
//!   (`commands::operator_migration`); this module parses the request and maps the report and the refusals.
//!
//! The file format (charsets, row numbers, header matching, per-cell errors, writing) is `crate::import`'s; the
//! parsing of an operator is `routes::operators`'; this module maps columns to fields and refusals to cells.
//!
//! Longer than 600 lines because import and export share the column layout, and each of the three operations
//! carries its OpenAPI description of the file format and of every answer.

use cardap_domain::Localized;
use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::access::Access;
use cardap_commands::imports::ImportKind;
use cardap_commands::jobs::JobKind;
use cardap_commands::operator_migration::{Migrated, Migration, MigrationError, SourceRefusal};
use cardap_commands::operators::{OperatorFilter, OperatorRow, Operators, Refusals};
use cardap_commands::{Permission, authorize};
use cardap_domain::cells::{InternalIdsCell, SexCell};
use cardap_domain::contact::{Sex, Text100};
use cardap_domain::operator::{InternalId, InternalIdAssignment, OperatorError, OperatorId};
use cardap_domain::{BusinessId, MunicipalityCode};
use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::import::{self, Charset, CsvWriter, Header, Unknown, declared_charset};
use crate::json::{ApiJson, ApiQuery};
use crate::routes::operators::{self, OperatorInput, OperatorQuery};
use crate::routes::{RequestMeta, jobs};
use crate::state::AppState;

mod job;

/// The largest import accepted: about 100,000 rows of typical operators (the API default is 1 MiB); the row
/// limit (`imports.operator_rows`, 10,000 by default) comes first for most files.
pub const IMPORT_LIMIT: usize = 32 * 1024 * 1024;

/// Rows per read-model query in the export: the table is never read in one query.
const PAGE: i64 = 500;

/// The role of an imported operator whose row gives none.
const DEFAULT_ROLE: &str = "clerk";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/municipalities/{code}/operators/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_LIMIT)),
        )
        .route("/api/v1/municipalities/{code}/operators/export", get(export))
        .route("/api/v1/operator-migrations", post(migrate))
}

// ---------------------------------------------------------------------------------------------------------------
// Columns

/// A column of the operator CSV: a field of `OperatorInput`, named in the header by its JSON name or by the
/// screen's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    OperatorId,
    Password,
    Name,
    Department,
    Sex,
    Phone,
    Extension,
    Email,
    Info,
    Extra,
    BusinessSystems,
    Roles,
    /// 業務内ID: `business_id:internal_id[:role]` entries separated by spaces (`cardap_domain::cells`).
    InternalIds,
    /// The password's Argon2id hash (PHC string): only in a migration file (`include_password_hash`).
    PasswordHash,
}

impl Column {
    /// The export's columns, in the screen's order and 業務内ID last: all but the password, which is never
    /// exported, and its hash, which only a migration file has.
    const EXPORTED: [Column; 12] = [
        Column::OperatorId,
        Column::Name,
        Column::Department,
        Column::Sex,
        Column::Phone,
        Column::Extension,
        Column::Email,
        Column::Info,
        Column::Extra,
        Column::BusinessSystems,
        Column::Roles,
        Column::InternalIds,
    ];

    fn of_field(field: &str) -> Option<Column> {
        <Column as import::Column>::ALL.iter().copied().find(|c| import::Column::field(*c) == field)
    }
}

impl import::Column for Column {
    const ALL: &'static [Column] = &[
        Column::OperatorId,
        Column::Password,
        Column::Name,
        Column::Department,
        Column::Sex,
        Column::Phone,
        Column::Extension,
        Column::Email,
        Column::Info,
        Column::Extra,
        Column::BusinessSystems,
        Column::Roles,
        Column::InternalIds,
        Column::PasswordHash,
    ];

    /// The field's JSON name (as in `POST …/operators`).
    fn field(self) -> &'static str {
        match self {
            Column::OperatorId => "operator_id",
            Column::Password => "password",
            Column::Name => "name",
            Column::Department => "department",
            Column::Sex => "sex",
            Column::Phone => "phone",
            Column::Extension => "extension",
            Column::Email => "email",
            Column::Info => "info",
            Column::Extra => "extra",
            Column::BusinessSystems => "business_systems",
            Column::Roles => "roles",
            Column::InternalIds => "internal_ids",
            Column::PasswordHash => "password_hash",
        }
    }

    /// The label on the operator screens (手引き I 2.1(5)).
    fn label(self) -> &'static str {
        match self {
            Column::OperatorId => "オペレータID",
            Column::Password => "パスワード",
            Column::Name => "氏名・組織名",
            Column::Department => "部門",
            Column::Sex => "性別",
            Column::Phone => "連絡先電話",
            Column::Extension => "内線",
            Column::Email => "E-Mail",
            Column::Info => "情報",
            Column::Extra => "付帯情報",
            Column::BusinessSystems => "許可業務",
            Column::Roles => "役割",
            Column::InternalIds => "業務内ID",
            Column::PasswordHash => "パスワードハッシュ",
        }
    }

    /// Other names clerks use for the same column.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Column::Roles => &["権限"],
            Column::Email => &["メールアドレス", "Eメール"],
            Column::Name => &["氏名"],
            _ => &[],
        }
    }
}

/// The file's header: which column is where, and how the file names it.
#[derive(Debug, Clone)]
struct Layout {
    header: Header<Column>,
}

impl Layout {
    fn of(cells: &[String], row: u64) -> Result<Layout, Vec<FieldError>> {
        let (header, mut errors) = Header::of(cells, row, Unknown::Refuse, |_| None);
        for required in [Column::OperatorId, Column::Name] {
            if !header.has(required) {
                errors.push(header.missing(required));
            }
        }
        if errors.is_empty() { Ok(Layout { header }) } else { Err(errors) }
    }

    /// How the file names `column` (its label when the file has no such column).
    fn name(&self, column: Column) -> &str {
        self.header.name(column)
    }

    /// An error about `column` in `row`.
    fn error(&self, row: u64, column: Column, message: Text) -> FieldError {
        self.header.error(column, message).at(row)
    }

    /// The registration a row asks for, and its 業務内ID and password hash cells; cell-level problems
    /// (undecodable text, values outside any column) are added to `errors`.
    fn input_of(
        &self,
        row: import::CsvRow,
        errors: &mut Vec<FieldError>,
    ) -> (OperatorInput, Option<String>, Option<String>) {
        let mut row = self.header.row_of(row);
        let number = row.row;
        errors.extend(std::mem::take(&mut row.errors).into_iter().map(|e| e.at(number)));
        let words = |v: Option<String>| v.map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
        let internal_ids = row.take(Column::InternalIds);
        let password_hash = row.take(Column::PasswordHash);
        let input = OperatorInput {
            operator_id: row.take(Column::OperatorId).unwrap_or_default(),
            password: row.take(Column::Password),
            name: row.take(Column::Name).unwrap_or_default(),
            department: row.take(Column::Department),
            sex: row.take(Column::Sex).map(|v| sex_code(&v)),
            phone: row.take(Column::Phone),
            extension: row.take(Column::Extension),
            email: row.take(Column::Email),
            info: row.take(Column::Info),
            extra: row.take(Column::Extra),
            roles: words(row.take(Column::Roles)).unwrap_or_else(|| vec![DEFAULT_ROLE.to_owned()]),
            business_systems: words(row.take(Column::BusinessSystems)).unwrap_or_default(),
        };
        (input, internal_ids, password_hash)
    }

    /// `parse_input`'s errors (`/rows/12/roles/0`) located in the file.
    fn locate(&self, row: u64, prefix: &str, errors: Vec<FieldError>) -> impl Iterator<Item = FieldError> + '_ {
        let prefix = format!("{prefix}/");
        errors.into_iter().map(move |e| {
            let field = e.field.strip_prefix(&prefix).and_then(|rest| rest.split('/').next()).unwrap_or_default();
            let column = Column::of_field(field).map_or_else(String::new, |c| self.name(c).to_owned());
            e.in_cell(row, column)
        })
    }
}

/// 性別 as the ISO 5218 digit: any form `SexCell` reads (the screen's words 指定なし, 男性, 女性, 適用不能, also
/// 男/女 and full-width digits), else the cell as written, for `parse_input` to refuse with its own message.
fn sex_code(value: &str) -> String {
    SexCell::parse(value).map_or_else(|_| value.to_owned(), |s| s.code().to_owned())
}

fn text_of(e: &OperatorError) -> Text {
    Text::of(&e)
}

/// The column a refusal of the registration is about, and its place among a row's errors (the order of the
/// screen's checks: 業務内ID, 役割, 許可業務, オペレータID).
fn column_of(e: &OperatorError) -> (u8, Column) {
    match e {
        OperatorError::BusinessSystemNotPermitted(_) | OperatorError::InternalIdTaken(_) => (0, Column::InternalIds),
        OperatorError::BusinessSystemNotUsable(_) => (2, Column::BusinessSystems),
        OperatorError::AlreadyRegistered => (3, Column::OperatorId),
        _ => (1, Column::Roles),
    }
}

/// Every refusal of one row, each in its cell: the dry run's refusals, the row of an earlier one with the same
/// ID (`rows`: the row of each item checked, in order).
fn refusal_errors(
    layout: &Layout,
    row: u64,
    operator_id: &OperatorId,
    refusals: Refusals,
    rows: &[u64],
) -> Vec<FieldError> {
    let mut errors: Vec<(u8, FieldError)> = vec![];
    if let Some(first) = refusals.same_as.and_then(|i| rows.get(i)) {
        let text = Text::new(
            format!("同じオペレータID {operator_id} が{first}行目にもあります"),
            format!("operator ID {operator_id} also appears in row {first}"),
        );
        errors.push((3, layout.error(row, Column::OperatorId, text)));
    }
    for e in &refusals.refused {
        let text = match e {
            OperatorError::AlreadyRegistered => {
                Text::new(format!("{}（{operator_id}）", e.message_ja()), e.to_string())
            }
            _ => operators::named(e),
        };
        let (order, column) = column_of(e);
        errors.push((order, layout.error(row, column, text)));
    }
    errors.sort_by_key(|(order, _)| *order);
    errors.into_iter().map(|(_, e)| e).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Import

/// The report of an import job that succeeded: one entry per registered row, never a password.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// How many operators were registered (every data row of the file).
    pub imported: usize,
    pub items: Vec<ImportedRow>,
    /// The generated passwords: `available` (fetch them, once, with `POST /api/v1/jobs/{job_id}/passwords`),
    /// `retrieved` (fetched already, or dropped), or `none` (every row gave a password or a password hash).
    #[schema(example = "available")]
    pub passwords: String,
}

/// One registered row.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportedRow {
    /// The row in the file, as a spreadsheet numbers it (the header is row 1).
    pub row: u64,
    pub operator_id: String,
    /// A password was generated for him (the row gave none): it is among the job's passwords.
    pub password_generated: bool,
}

/// Register operators from a CSV file (一括登録), all or nothing, as a job: `202 Accepted`, then follow the job.
///
/// **Body**: the file itself, `Content-Type: text/csv; charset=UTF-8` (a BOM is fine) or `text/csv;
/// charset=Shift_JIS` (also `shift_jis`, `windows-31j`, `cp932`, `ms932`, as Excel on Japanese Windows saves
/// it). Without a charset the file must be UTF-8, else `415`. At most 32 MiB and 10,000 data rows
/// (`imports.operator_rows`).
///
/// **Header row** (row 1): the JSON field names of `POST …/operators` or the screen's labels, in any order and
/// any subset that has the operator ID and the name: `operator_id`/オペレータID, `password`/パスワード,
/// `name`/氏名・組織名, `department`/部門, `sex`/性別, `phone`/連絡先電話, `extension`/内線, `email`/E-Mail,
/// `info`/情報, `extra`/付帯情報, `business_systems`/許可業務, `roles`/役割, `internal_ids`/業務内ID,
/// `password_hash`/パスワードハッシュ. The screens' forms (`*オペレータID(半角英数)`) are accepted too, and so is
/// the header of `GET …/operators/export`.
///
/// **Cells**: empty = absent; surrounding spaces (full-width too) are ignored. 許可業務 and 役割 are
/// space-separated (`01 02`; `operations_manager clerk`). **Without a 役割 column, or with an empty cell, the
/// operator gets the role `clerk`.** 性別 is the ISO 5218 digit (0, 1, 2, 9) or the screen's word (指定なし,
/// 男性, 女性, 適用不能). Without a password one is generated, and handed out once by the job.
/// 業務内ID is space-separated `business_id:internal_id` or `business_id:internal_id:role` entries (`01:1000000010
/// 02:A77:窓口担当`; `%` and spaces in a role as `%25`, `%20`), each in one of the row's 許可業務; importing them
/// takes `ManageInternalIds` in those systems. パスワードハッシュ (an Argon2id PHC string, as
/// `GET …/operators/export?include_password_hash=true` writes it) registers the operator with that password
/// instead of a password (migration by file, システム管理 only).
///
/// **The job** (`Location: /api/v1/jobs/{job_id}`, `GET` it until `state` is `succeeded` or `failed`): every row
/// is validated first; then the passwords are hashed; then every operator is registered in one transaction.
/// **All or nothing**: any error fails the job with `outcome` the problem a `422` would have carried — *every*
/// error as `{field, row, column, message}` — and nothing is registered. `row` is the row as a spreadsheet numbers
/// it (the header is row 1, the first data row row 2); `column` is the header cell as written in the file (absent
/// for an error about a whole row); `field` is `/rows/{row}/{json name}`. An operator ID that appears twice in the
/// file, or that is already registered (and not revoked) in the municipality, is a row error too; a revoked
/// operator's ID may be imported again (a new registration, as with `POST …/operators`). So is a 業務内ID that
/// another operator (not revoked) holds in that business system, or that an earlier row takes: a 業務内ID names
/// one operator per municipality and business system. A file with more data rows than the limit fails the job
/// with the row past the limit. **Privileges**: an operations manager imports only operators whose roles and
/// 許可業務 he holds himself; 業務内IDs and password hashes take their own permissions: else the job fails with a
/// `403` problem (`detail` names each role and business system he does not hold). The job stops, registering
/// nothing, when its operator's session ends (logout, expiry, revocation) before the registration.
///
/// On success `outcome` is the report (`imported`, `items` with `row`, `operator_id`, `password_generated`);
/// **the generated passwords** are fetched once, by the operator who started the job, with `POST
/// /api/v1/jobs/{job_id}/passwords`. Only that operator and the system administrator see the job.
///
/// **Before the job** (answered at once, nothing started): the path, the permission, the charset and the size,
/// the header row (`422` naming its cells), and the limits: one operator import per municipality at a time and a
/// few on the server (`429 /problems/too-many-imports` with `Retry-After`). A retry with the same
/// `Idempotency-Key` and the same file answers the job the first request started (while it is kept), or —
/// after — a job that registers nothing again and generates no password.
#[utoipa::path(post, operation_id = "importOperators",
    path = "/api/v1/municipalities/{code}/operators/import", tag = "operators",
    request_body(content = String, content_type = "text/csv",
        description = "CSV, UTF-8 (with or without BOM) or Shift_JIS, header row first",
        example = "オペレータID,氏名・組織名,部門,性別,連絡先電話,許可業務,役割\r\nOP0501,窓口 太郎,市民課,男性,03-3333-4444,01,clerk\r\n"),
    params(("code" = String, Path), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses(
        (status = 202, body = crate::routes::jobs::JobResource,
            description = "The job started (or, for a retry, the job the first request started); `Location` is \
                the job",
            headers(("Location" = String, description = "`/api/v1/jobs/{job_id}`"))),
        (status = 403, body = ProblemDetails, description = "`/problems/forbidden`: not an operations manager of \
            the municipality. Nothing was started"),
        (status = 404, body = ProblemDetails),
        (status = 413, body = ProblemDetails, description = "Larger than 32 MiB"),
        (status = 415, body = ProblemDetails, description = "Not `text/csv`, an unknown charset, or a file that is \
            not UTF-8 sent without a charset"),
        (status = 422, body = ProblemDetails, description = "`/problems/validation`: an empty file, or a header \
            row without the operator ID or the name, or with unknown columns (each with `row` and `column`)"),
        (status = 429, body = ProblemDetails, description = "`/problems/too-many-imports`: the municipality runs an \
            operator import already, or the server as many as it may; `Retry-After` says when to try again")))]
pub async fn import(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let code = crate::routes::municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ManageOperators(code.clone()))?;
    let declared = declared_charset(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            ApiError::malformed(Text::new("本文を読み取れません", format!("cannot read the body: {e}")), vec![])
        }
    })?;
    // Hashing the file, checking its charset and reading its header: CPU work on the whole body, off the
    // async workers.
    let opened =
        tokio::task::spawn_blocking(move || job::Opened::of(body, declared)).await.map_err(ApiError::internal)??;
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "operators.import", &format!("{code}/{}", opened.digest));
    // A retry of the same request (the same Idempotency-Key and file) answers the job the first one started.
    if let Some(id) = state.jobs.for_command(&auth.actor, ctx.command_id) {
        return jobs::accepted(&state, id, &auth.actor);
    }
    let slot = state.imports.admit(ImportKind::Operators, &code)?;
    let handle = state.jobs.start(JobKind::OperatorImport, &auth.actor, ctx.command_id, slot);
    let id = handle.id();
    tracing::info!(municipality = %code, job = %id, "operator import started");
    let run = job::run(state.clone(), ctx, code, auth.credential.clone(), opened, handle);
    tokio::spawn(run.instrument(tracing::Span::current()));
    jobs::accepted(&state, id, &auth.actor)
}

// ---------------------------------------------------------------------------------------------------------------
// Export

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Substring of the オペレータID.
    pub operator_id: Option<String>,
    /// Substring of 氏名・組織名.
    pub name: Option<String>,
    /// Substring of 部門.
    pub department: Option<String>,
    /// Substring of 連絡先電話.
    pub phone: Option<String>,
    /// Substring of E-Mail.
    pub email: Option<String>,
    /// Substring of 情報.
    pub info: Option<String>,
    /// Substring of 付帯情報.
    pub extra: Option<String>,
    /// A migration file (移行, システム管理 only): adds the column パスワードハッシュ with each operator's password
    /// hash, so that importing the file into another municipality keeps everyone's password (default false).
    pub include_password_hash: Option<bool>,
    /// Include revoked operators (default false). The file does not say who is revoked: imported again, they
    /// are registered as active operators.
    pub include_revoked: Option<bool>,
    /// `UTF-8` (default; written with a BOM so that Excel opens it) or `Shift_JIS`.
    pub charset: Option<String>,
}

/// オペレータ情報出力: a municipality's operators as CSV, filtered like the list (every given condition is a
/// substring that must match).
///
/// The header row is the screen's labels: オペレータID, 氏名・組織名, 部門, 性別, 連絡先電話, 内線, E-Mail, 情報,
/// 付帯情報, 許可業務, 役割, 業務内ID (性別 as the screen's word, 許可業務, 役割 and 業務内ID space-separated), and
/// パスワードハッシュ in a migration file (`include_password_hash=true`, システム管理 only). **Passwords are never
/// exported.** The file imports as it is (`POST …/operators/import`), also into another municipality: passwords
/// are then generated. Cells that a spreadsheet would take for a formula get a leading `'`, which the import
/// takes off again. In Shift_JIS a character it cannot hold is written as 〓: use UTF-8 for a lossless file.
/// Streamed page by page from the operator directory.
#[utoipa::path(get, operation_id = "exportOperators",
    path = "/api/v1/municipalities/{code}/operators/export", tag = "operators",
    params(("code" = String, Path), ExportQuery), security(("bearer" = [])),
    responses(
        (status = 200, content_type = "text/csv", body = String,
            description = "`text/csv; charset=UTF-8` (with BOM) or `text/csv; charset=Shift_JIS`, CRLF line ends",
            example = "\u{feff}オペレータID,氏名・組織名,部門,性別,連絡先電話,内線,E-Mail,情報,付帯情報,許可業務,役割,業務内ID\r\nOP0501,窓口 太郎,市民課,男性,03-3333-4444,,,,,01,clerk,01:1000000010\r\n"),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "An unknown `charset`")))]
pub async fn export(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let code = crate::routes::municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewOperators(code.clone()))?;
    let with_hash = q.include_password_hash.unwrap_or(false);
    if with_hash {
        authorize(&auth.actor, &Permission::MigrateOperators)?;
    }
    let extra = q.extra.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned);
    let charset = match q.charset.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => Charset::Utf8,
        Some(label) => Charset::from_label(label).ok_or_else(|| {
            ApiError::validation(vec![FieldError::new(
                "/charset",
                Text::new("UTF-8 または Shift_JIS を指定してください", "use UTF-8 or Shift_JIS"),
            )])
        })?,
    };
    let filter = operators::filter_of(&OperatorQuery {
        operator_id: q.operator_id,
        name: q.name,
        department: q.department,
        phone: q.phone,
        email: q.email,
        info: q.info,
        include_revoked: q.include_revoked,
        cursor: None,
        limit: None,
    });
    let writer = CsvWriter::new(charset);
    let operators = state.operators.clone();
    // The first page is read before answering, so that a failing database is still a proper error response.
    let first = operators.page(&code, &filter, None, PAGE).await?;
    let mut head = writer.preamble().to_vec();
    let mut columns = Column::EXPORTED.to_vec();
    if with_hash {
        columns.push(Column::PasswordHash);
    }
    head.extend(writer.chunk([columns.iter().map(|c| import::Column::label(*c))])?);
    let filename = format!("operators-{code}.csv");
    let access = state.access.clone();
    let pages = Pages {
        operators,
        access,
        code,
        filter,
        extra,
        with_hash,
        writer,
        next: Some(first),
        after: None,
        finished: false,
    };
    let body =
        stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(head)) }).chain(stream::unfold(pages, next_page));
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_str(&charset.content_type()).map_err(ApiError::internal)?),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")).map_err(ApiError::internal)?,
        ),
        // Personal data: not for shared caches.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    Ok((headers, Body::from_stream(body)).into_response())
}

/// Where an export stands.
struct Pages {
    /// The operator directory.
    operators: Operators,
    /// Where the password hashes of a migration file come from.
    access: Access,
    code: MunicipalityCode,
    filter: OperatorFilter,
    /// Substring of 付帯情報 (the directory's filter has no such condition: applied to each page).
    extra: Option<String>,
    /// Whether the file has the password hashes (a migration file).
    with_hash: bool,
    writer: CsvWriter,
    /// A page read but not written yet.
    next: Option<Vec<OperatorRow>>,
    /// The last operator ID written.
    after: Option<String>,
    finished: bool,
}

/// The next chunk of the file: one page of operators. A failure ends the stream with an error, which cuts
/// the response off (the client sees an incomplete transfer, never a silently short file).
async fn next_page(mut p: Pages) -> Option<(Result<Bytes, std::io::Error>, Pages)> {
    let rows = match p.next.take() {
        Some(rows) => rows,
        None if p.finished => return None,
        None => match p.operators.page(&p.code, &p.filter, p.after.as_deref(), PAGE).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, municipality = %p.code, "operator export failed");
                p.finished = true;
                return Some((Err(std::io::Error::other("the export failed")), p));
            }
        },
    };
    if rows.is_empty() {
        return None;
    }
    p.finished = (rows.len() as i64) < PAGE;
    p.after = rows.last().map(|r| r.operator_id.clone());
    match exported_page(&p, &rows).await.and_then(|cells| p.writer.chunk(cells)) {
        Ok(bytes) => Some((Ok(Bytes::from(bytes)), p)),
        Err(e) => {
            tracing::error!(error = ?e, municipality = %p.code, "operator export failed");
            p.finished = true;
            Some((Err(std::io::Error::other("the export failed")), p))
        }
    }
}

/// The export rows of one page: those that match the 付帯情報 condition, with their 業務内IDs (and hashes).
async fn exported_page(p: &Pages, rows: &[OperatorRow]) -> Result<Vec<Vec<String>>, ApiError> {
    let wanted =
        |r: &&OperatorRow| p.extra.as_deref().is_none_or(|x| r.extra.as_deref().is_some_and(|e| e.contains(x)));
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter().filter(wanted) {
        let mut ids = BTreeMap::new();
        for (business_id, internal_id, role) in p.operators.internal_ids(row.key).await? {
            let assignment = InternalIdAssignment {
                internal_id: InternalId::parse(&internal_id).map_err(ApiError::internal)?,
                role: role.as_deref().map(Text100::parse).transpose().map_err(ApiError::internal)?,
            };
            ids.insert(BusinessId::parse(&business_id).map_err(ApiError::internal)?, assignment);
        }
        let mut cells = exported(row, &ids).to_vec();
        if p.with_hash {
            cells.push(p.access.password_hash(row.key).await?.unwrap_or_default());
        }
        out.push(cells);
    }
    Ok(out)
}

/// One operator as an export row, in [`Column::EXPORTED`] order.
fn exported(row: &OperatorRow, internal_ids: &BTreeMap<BusinessId, InternalIdAssignment>) -> [String; 12] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let sex =
        row.sex.as_deref().map(|s| Sex::parse(s).map_or_else(|_| s.to_owned(), |x| SexCell::format(x).to_owned()));
    [
        row.operator_id.clone(),
        opt(&row.name),
        opt(&row.department),
        sex.unwrap_or_default(),
        opt(&row.phone),
        opt(&row.extension),
        opt(&row.email),
        opt(&row.info),
        opt(&row.extra),
        row.business_systems.iter().map(BusinessId::as_str).collect::<Vec<_>>().join(" "),
        row.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" "),
        InternalIdsCell::format(internal_ids),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Migration

/// Which operators to move where.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "131016", "to": "011002", "operator_ids": ["OP0501", "CP1011"]}))]
pub struct MigrationInput {
    /// The municipality the operators come from (移行元).
    pub from: String,
    /// The municipality they are registered in (移行先).
    pub to: String,
    /// The operators to migrate; absent = every operator of `from` that is not revoked.
    #[serde(default)]
    pub operator_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MigrationReport {
    pub migrated: Vec<MigratedOperator>,
}

/// One migrated operator.
#[derive(Debug, Serialize, ToSchema)]
pub struct MigratedOperator {
    pub operator_id: String,
    /// 許可業務 in the target: those of the source that the target municipality may use.
    pub business_systems: Vec<String>,
    /// 許可業務 of the source that the target municipality may not use (shared use): not carried over, nor their
    /// 業務内IDs.
    pub dropped_business_systems: Vec<String>,
    /// Business systems whose 業務内ID was carried over.
    pub internal_ids: Vec<String>,
    /// Whether his password was carried over (false only if he had none in the source: he has none in the target
    /// either, until an administrator resets it).
    pub password_kept: bool,
}

/// 操作者情報の移行: register operators of one municipality in another (system administrator only).
///
/// Each operator is registered in `to` with the same オペレータID, management information and roles, and **the
/// same password** (its hash is copied; the operator logs in to the target with the password he has). Of his
/// 許可業務 only those the target municipality may use (共同利用) are kept; the others are reported per operator
/// in `dropped_business_systems`. His 業務内IDs in the kept business systems are assigned in the target too.
/// The operators in `from` stay as they are (revoke them there if they should no longer work there).
///
/// All or nothing: an operator ID that is already registered (and not revoked) in the target answers `409`
/// naming every such ID, and nothing is written.
#[utoipa::path(post, operation_id = "migrateOperators", path = "/api/v1/operator-migrations", tag = "operators",
    request_body = MigrationInput,
    params(("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses(
        (status = 201, body = MigrationReport),
        (status = 403, body = ProblemDetails, description = "Not the system administrator"),
        (status = 404, body = ProblemDetails, description = "`from` or `to` is no registered municipality"),
        (status = 409, body = ProblemDetails, description = "`/problems/already-exists`: operator IDs already \
            registered in the target (named in `detail`), or a 業務内ID another operator of the target holds in \
            that business system; `/problems/municipality-abolished`: the target is abolished"),
        (status = 422, body = ProblemDetails, description = "Bad codes, `from` = `to`, unknown or revoked \
            operators in `operator_ids`, or nothing to migrate")))]
pub async fn migrate(
    State(state): State<AppState>,
    auth: Authenticated,
    headers: HeaderMap,
    ApiJson(body): ApiJson<MigrationInput>,
) -> Result<Response, ApiError> {
    authorize(&auth.actor, &Permission::MigrateOperators)?;
    let migration = parse_migration(&body)?;
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "operators.migrate", &format!("{}/{}", migration.from, migration.to));
    let migrated =
        state.operators.migrate(&ctx, migration).await.map_err(|e| command_error(e, |e| migration_error(e, &body)))?;
    let migrated = migrated.into_iter().map(migrated_view).collect();
    Ok((StatusCode::CREATED, Json(MigrationReport { migrated })).into_response())
}

fn migrated_view(m: Migrated) -> MigratedOperator {
    let ids = |ids: Vec<BusinessId>| ids.iter().map(|b| b.as_str().to_owned()).collect();
    MigratedOperator {
        operator_id: m.operator_id.to_string(),
        business_systems: ids(m.business_systems),
        dropped_business_systems: ids(m.dropped_business_systems),
        internal_ids: ids(m.internal_ids),
        password_kept: m.password_kept,
    }
}

/// The request, parsed: the codes, and the named operator IDs (one that is no operator ID at all is no operator
/// of the source either).
fn parse_migration(body: &MigrationInput) -> Result<Migration, ApiError> {
    let mut errors = vec![];
    let from = MunicipalityCode::parse(&body.from).map_err(|e| errors.push(FieldError::parse("/from", &e))).ok();
    let to = MunicipalityCode::parse(&body.to).map_err(|e| errors.push(FieldError::parse("/to", &e))).ok();
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::validation(errors));
    };
    let operators = match &body.operator_ids {
        None => None,
        Some(raw) => {
            let mut ids = Vec::with_capacity(raw.len());
            for (i, r) in raw.iter().enumerate() {
                match OperatorId::parse(r) {
                    Ok(id) => ids.push(id),
                    Err(_) => errors.push(FieldError::new(format!("/operator_ids/{i}"), not_in_source(r))),
                }
            }
            Some(ids)
        }
    };
    if errors.is_empty() { Ok(Migration { from, to, operators }) } else { Err(ApiError::validation(errors)) }
}

fn not_in_source(raw: &str) -> Text {
    Text::new(
        format!("移行元に登録されていないオペレータIDです（{raw}）"),
        format!("{raw} is not an operator of the source municipality"),
    )
}

/// A refusal of the migration as today's answers have it.
fn migration_error(e: MigrationError, body: &MigrationInput) -> ApiError {
    match e {
        MigrationError::SameMunicipality => ApiError::validation(vec![FieldError::new(
            "/to",
            Text::new("移行元と同じ市町村・任意団体には移行できません", "must differ from `from`"),
        )]),
        MigrationError::UnknownMunicipality(_) => ApiError::not_found(),
        MigrationError::TargetAbolished => ApiError::state_conflict(
            ProblemType::MunicipalityAbolished,
            Text::new("移行先の市町村・任意団体は廃止されています", "the target municipality has been abolished"),
        ),
        MigrationError::NoneNamed => ApiError::validation(vec![FieldError::required("/operator_ids/0")]),
        MigrationError::NothingToMigrate => ApiError::validation(vec![FieldError::new(
            "/from",
            Text::new("移行するオペレータがいません", "the municipality has no operators to migrate"),
        )]),
        MigrationError::Sources(refused) => {
            let raw = |i: usize| body.operator_ids.as_ref().and_then(|ids| ids.get(i)).cloned().unwrap_or_default();
            let errors = refused
                .into_iter()
                .map(|(i, why)| {
                    let text = match why {
                        SourceRefusal::NotInSource => not_in_source(&raw(i)),
                        SourceRefusal::Revoked => text_of(&OperatorError::Revoked),
                        SourceRefusal::Twice => {
                            Text::new("同じオペレータIDが重複しています", "the same operator ID appears twice")
                        }
                    };
                    FieldError::new(format!("/operator_ids/{i}"), text)
                })
                .collect();
            ApiError::validation(errors)
        }
        MigrationError::AlreadyInTarget(ids) => {
            let list = ids.iter().map(OperatorId::as_str).collect::<Vec<_>>().join(", ");
            ApiError::already_exists(Text::new(
                format!("移行先に既に登録されているオペレータIDがあります: {list}。何も移行していません"),
                format!("already registered in the target municipality: {list}; nothing was migrated"),
            ))
        }
        MigrationError::Refused(e) => operators::domain_error(e),
        MigrationError::Query(e) => e.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::import::Column as _;

    #[test]
    fn headers_are_json_names_or_the_screens_labels() {
        for &c in Column::ALL {
            assert_eq!(Column::of_header(c.field()), Some(c));
            assert_eq!(Column::of_header(c.label()), Some(c));
        }
        assert_eq!(Column::of_header("*オペレータID(半角英数)"), Some(Column::OperatorId));
        assert_eq!(Column::of_header("連絡先電話（半角数字）"), Some(Column::Phone));
        assert_eq!(Column::of_header("e-mail"), Some(Column::Email));
        assert_eq!(Column::of_header("Operator_ID"), Some(Column::OperatorId));
        assert_eq!(Column::of_header("住所"), None);
    }

    #[test]
    fn the_export_header_is_importable_and_has_no_password() {
        let header: Vec<String> = Column::EXPORTED.map(|c| c.label().to_owned()).to_vec();
        let layout = Layout::of(&header, 1).unwrap();
        assert!(!layout.header.has(Column::Password));
        assert!(Column::EXPORTED.iter().all(|c| layout.header.has(*c)));
    }

    #[test]
    fn sex_takes_the_screens_words_and_the_digit() {
        assert_eq!(sex_code("男性"), "1");
        assert_eq!(sex_code("女性"), "2");
        assert_eq!(sex_code("指定なし"), "0");
        assert_eq!(sex_code("9"), "9");
    }

    #[test]
    fn a_header_without_the_required_columns_or_with_unknown_ones_is_refused() {
        let errors = Layout::of(&["部門".to_owned(), "住所".to_owned()], 1).unwrap_err();
        let columns: Vec<_> = errors.iter().map(|e| e.column.clone().unwrap()).collect();
        assert_eq!(columns, ["住所", "オペレータID", "氏名・組織名"]);
        assert!(errors.iter().all(|e| e.row == Some(1)));
    }
}
