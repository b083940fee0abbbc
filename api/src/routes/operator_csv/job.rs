//! The operator CSV import as a job (issue 9, point 7): the file, read and checked once accepted, then the
//! registration of every row with its password hashed, all in the background while the caller follows the job.
//!
//! Owns the work of one import job: the file opened before the job starts ([`Opened`]: its digest, its charset
//! and its header, so that a bad header is still answered at once), the validation of its rows in chunks on the
//! blocking pool ([`Validation`]: each chunk a few milliseconds of CPU, the row limit, every error with its row
//! and column, nothing kept once the file has an error), and then one use case: the batch registration
//! (`Operators::register_reporting`: authorization, the hashes on the password workers, one transaction of
//! appends). Between the steps the job asks whether its operator's session still permits the import. The job's
//! bookkeeping (progress, outcome, generated passwords) is `cardap_commands::jobs`'. Never logs a cell or a
//! password.

use std::collections::BTreeMap;
use std::io::Cursor;

use axum::body::Bytes;
use cardap_commands::jobs::{ImportedItem, JobHandle, Phase};
use cardap_commands::operators::{Refusals, RegistrationCheck};
use cardap_commands::{CommandContext, Permission};
use cardap_domain::BusinessId;
use cardap_domain::MunicipalityCode;
use cardap_domain::cells::InternalIdsCell;
use cardap_domain::operator::{InternalIdAssignment, OperatorError, OperatorId, PasswordPolicy};
use sha2::{Digest, Sha256};

use super::{Column, Layout, refusal_errors};
use crate::auth::still_permitted;
use crate::error::{ApiError, FieldError};
use crate::i18n::Text;
use crate::import::{Charset, CsvRows, HeaderError, body_charset};
use crate::routes::operators::{self, OperatorInput, Parsed};
use crate::state::AppState;
use cardap_commands::access::Presented;

/// Errors reported for one import at most; a file with more is wrong throughout, and the first ones tell why.
const MAX_ERRORS: usize = 1000;

/// Data rows validated per turn on the blocking pool: a few milliseconds each.
const CHUNK_ROWS: usize = 500;

/// A file whose charset and header are known, before its rows are read.
pub(super) struct Opened {
    /// SHA-256 of the whole body, for the command id of an `Idempotency-Key`.
    pub(super) digest: String,
    table: CsvRows<Cursor<Bytes>>,
    layout: Layout,
    header_row: u64,
}

impl Opened {
    /// Hashes the body, decides its charset and reads its header row (blocking: CPU over the whole body).
    /// The problems found here are answered at once, before any job.
    pub(super) fn of(body: Bytes, declared: Option<Charset>) -> Result<Opened, ApiError> {
        let digest = hex::encode(Sha256::digest(&body));
        let (charset, content) = body_charset(declared, &body)?;
        let content = body.slice(body.len() - content.len()..);
        let mut table = CsvRows::new(Cursor::new(content), None);
        let (header, header_row) = table.header(Some(charset)).map_err(|e| match e {
            HeaderError::Problem(problem) => problem,
            HeaderError::Read(e) => ApiError::validation(vec![unreadable(e.row())]),
        })?;
        let layout = Layout::of(&header, header_row).map_err(ApiError::validation)?;
        Ok(Opened { digest, table, layout, header_row })
    }
}

/// Runs the job to its end and records how it ended.
pub(super) async fn run(
    state: AppState,
    ctx: CommandContext,
    code: MunicipalityCode,
    credential: Presented,
    opened: Opened,
    job: JobHandle<ApiError>,
) {
    let id = job.id();
    match work(&state, &ctx, &code, &credential, opened, &job).await {
        Ok(items) => {
            tracing::info!(municipality = %code, job = %id, operators = items.len(), "operators imported");
            job.succeed(items);
        }
        Err(e) => {
            tracing::info!(municipality = %code, job = %id, kind = e.kind(), "an operator import failed");
            job.fail(e);
        }
    }
}

async fn work(
    state: &AppState,
    ctx: &CommandContext,
    code: &MunicipalityCode,
    credential: &Presented,
    opened: Opened,
    job: &JobHandle<ApiError>,
) -> Result<Vec<ImportedItem>, ApiError> {
    let progress = job.progress();
    let permission = Permission::ManageOperators(code.clone());
    progress.set_phase(Phase::Validating);
    let check = state.operators.registration_check(code).await?;
    let limit = state.imports.limits().operator_rows;
    let mut validation = Validation::new(opened, check, state.access.policy.passwords, limit);
    loop {
        let (v, read) = tokio::task::spawn_blocking(move || {
            let read = validation.next_chunk(CHUNK_ROWS);
            (validation, read)
        })
        .await
        .map_err(ApiError::internal)?;
        validation = v;
        progress.add_rows(read as u64);
        progress.set_errors(validation.total_errors as u64);
        if validation.finished {
            break;
        }
        if let Some(stopped) = still_permitted(&state.access, credential, &permission).await {
            return Err(stopped);
        }
    }
    let Validated { rows, layout, parsed } = validation.outcome()?;
    if let Some(stopped) = still_permitted(&state.access, credential, &permission).await {
        return Err(stopped);
    }
    // Refused now although the dry run passed: the facts changed meanwhile (shared use withdrawn, someone
    // registered): every refusal of that row, in its cells.
    let on_item_error = {
        let rows = rows.clone();
        let ids: Vec<OperatorId> = parsed.iter().map(|p| p.operator_id.clone()).collect();
        move |index: usize, e: OperatorError| {
            let (row, id) = (rows.get(index).copied().unwrap_or_default(), ids.get(index));
            let refusals = Refusals { same_as: None, refused: e.into_refusals() };
            match id {
                Some(id) => ApiError::validation(refusal_errors(&layout, row, id, refusals, &[])),
                None => ApiError::internal(format!("item {index} of {} refused", ids.len())),
            }
        }
    };
    // Each row's 業務内IDs and copied password hash go with its registration, in one transaction; the use case
    // authorizes them (and every role and business system given) before any password is hashed.
    let registered = state.operators.register_reporting(ctx, code, parsed, progress).await.map_err(|e| match e {
        cardap_commands::CommandError::Item { index, error } => on_item_error(index, error),
        other => crate::error::command_error(other, operators::domain_error),
    })?;
    Ok(registered
        .into_iter()
        .zip(rows)
        .map(|(r, row)| ImportedItem { row, operator_id: r.operator_id, password: r.generated })
        .collect())
}

/// A valid file: the registrations (with their 業務内IDs and kept password hashes), the row each comes from, and
/// how the file names its columns (for the errors that only the batch itself can find).
#[derive(Debug)]
struct Validated {
    rows: Vec<u64>,
    layout: Layout,
    parsed: Vec<Parsed>,
}

/// A file being validated, chunk by chunk: what a row asks for is refused by the registration's own dry run
/// ([`RegistrationCheck`]), not by rules of this module. Nothing is hashed or written here.
struct Validation {
    table: CsvRows<Cursor<Bytes>>,
    layout: Layout,
    header_row: u64,
    check: RegistrationCheck,
    policy: PasswordPolicy,
    /// Data rows a file may have.
    limit: usize,
    /// Data rows read (blank ones are skipped).
    data_rows: usize,
    /// The first data row past the limit, once there is one: the reading stops there.
    past_limit: Option<u64>,
    /// Every error found (at most [`MAX_ERRORS`]), and how many there are in all.
    errors: Vec<FieldError>,
    total_errors: usize,
    rows: Vec<u64>,
    parsed: Vec<Parsed>,
    /// The row of each registration the dry run was asked about, in order (to name an earlier row).
    checked_rows: Vec<u64>,
    finished: bool,
}

impl Validation {
    fn new(opened: Opened, check: RegistrationCheck, policy: PasswordPolicy, limit: usize) -> Self {
        let Opened { table, layout, header_row, .. } = opened;
        Validation {
            table,
            layout,
            header_row,
            check,
            policy,
            limit,
            data_rows: 0,
            past_limit: None,
            errors: vec![],
            total_errors: 0,
            rows: vec![],
            parsed: vec![],
            checked_rows: vec![],
            finished: false,
        }
    }

    /// Reads and checks up to `max` more data rows (blocking); how many it read. Sets `finished` at the end of
    /// the file or past the row limit.
    fn next_chunk(&mut self, max: usize) -> usize {
        let mut read = 0;
        while read < max {
            let Some(next) = self.table.next_row() else {
                self.finished = true;
                break;
            };
            let row = match next {
                Ok(row) if row.is_blank() => continue,
                Ok(row) => row,
                Err(e) => {
                    read += 1;
                    self.total_errors += 1;
                    self.errors.push(unreadable(e.row()));
                    self.errors.truncate(MAX_ERRORS);
                    continue;
                }
            };
            self.data_rows += 1;
            if self.data_rows > self.limit {
                self.past_limit = Some(row.row);
                self.finished = true;
                break;
            }
            read += 1;
            self.check_row(row);
        }
        read
    }

    fn check_row(&mut self, row: crate::import::CsvRow) {
        let layout = &self.layout;
        let number = row.row;
        let mut row_errors = vec![];
        let (input, internal_ids, password_hash) = layout.input_of(row, &mut row_errors);
        let prefix = format!("/rows/{number}");
        let extras = extras_of(layout, number, &input, internal_ids, password_hash, &mut row_errors);
        match operators::parse_input_with(&input, &prefix, &self.policy) {
            Err(e) => row_errors.extend(layout.locate(number, &prefix, e)),
            Ok(mut p) => {
                p.internal_ids = extras.internal_ids;
                p.kept_hash = extras.password_hash;
                let refusals = self.check.refusals(&p);
                self.checked_rows.push(number);
                row_errors.extend(refusal_errors(layout, number, &p.operator_id, refusals, &self.checked_rows));
                if row_errors.is_empty() && self.errors.is_empty() {
                    self.parsed.push(p);
                    self.rows.push(number);
                }
            }
        }
        self.total_errors += row_errors.len();
        if !row_errors.is_empty() {
            // Once the file has an error nothing will be registered: stop keeping registrations.
            self.parsed.clear();
            self.rows.clear();
        }
        self.errors.extend(row_errors);
        self.errors.truncate(MAX_ERRORS);
    }

    /// The valid file, or every error found.
    fn outcome(self) -> Result<Validated, ApiError> {
        if let Some(row) = self.past_limit {
            let limit = self.limit;
            return Err(ApiError::validation(vec![
                FieldError::new(
                    "/rows",
                    Text::new(
                        format!("データ行は{limit}行までです。ファイルを分けて取り込んでください"),
                        format!("at most {limit} data rows; split the file"),
                    ),
                )
                .in_row(row),
            ])
            .with_detail(Text::new(
                format!("{limit}行を超えるファイルは取り込めません。何も登録していません"),
                format!("a file of more than {limit} data rows is refused; nothing was registered"),
            )));
        }
        if !self.errors.is_empty() {
            let (total, shown) = (self.total_errors, self.errors.len());
            let detail = if total > shown {
                Text::new(
                    format!("{total}件の誤りがあります（最初の{shown}件を表示）。何も登録していません"),
                    format!("{total} errors (the first {shown} shown); nothing was registered"),
                )
            } else {
                Text::new(
                    format!("{total}件の誤りがあります。何も登録していません"),
                    format!("{total} errors; nothing was registered"),
                )
            };
            return Err(ApiError::validation(self.errors).with_detail(detail));
        }
        if self.parsed.is_empty() {
            return Err(ApiError::validation(vec![
                FieldError::new(
                    "/rows",
                    Text::new("データ行がありません（1行目は見出しです）", "no data rows (row 1 is the header)"),
                )
                .in_row(self.header_row + 1),
            ]));
        }
        Ok(Validated { rows: self.rows, layout: self.layout, parsed: self.parsed })
    }
}

/// What a row carries besides the registration.
#[derive(Default)]
struct Extras {
    /// 業務内IDs to assign once registered.
    internal_ids: BTreeMap<BusinessId, InternalIdAssignment>,
    /// A password hash to store instead of a password (a migration file).
    password_hash: Option<String>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras").field("internal_ids", &self.internal_ids).finish_non_exhaustive()
    }
}

/// A row's 業務内ID and password hash cells, parsed; their errors added to `errors`.
fn extras_of(
    layout: &Layout,
    row: u64,
    input: &OperatorInput,
    internal_ids: Option<String>,
    password_hash: Option<String>,
    errors: &mut Vec<FieldError>,
) -> Extras {
    let internal_ids = match internal_ids.as_deref().map(InternalIdsCell::parse) {
        None => BTreeMap::new(),
        Some(Ok(ids)) => ids,
        Some(Err(e)) => {
            errors.push(layout.error(row, Column::InternalIds, Text::of(&e)));
            BTreeMap::new()
        }
    };
    let password_hash = password_hash.filter(|hash| {
        let argon2id = argon2::PasswordHash::new(hash)
            .is_ok_and(|h| h.algorithm == argon2::ARGON2ID_IDENT && h.hash.is_some() && h.salt.is_some());
        if !argon2id {
            errors.push(layout.error(
                row,
                Column::PasswordHash,
                Text::new(
                    "パスワードハッシュは Argon2id の PHC 形式（$argon2id$…）で指定してください",
                    "a password hash must be an Argon2id PHC string ($argon2id$…)",
                ),
            ));
        } else if input.password.is_some() {
            errors.push(layout.error(
                row,
                Column::PasswordHash,
                Text::new(
                    "パスワードとパスワードハッシュは、どちらか一方にしてください",
                    "give either a password or a password hash, not both",
                ),
            ));
        }
        argon2id
    });
    Extras { internal_ids, password_hash }
}

/// A row the CSV parser could not read.
fn unreadable(row: u64) -> FieldError {
    FieldError::new(format!("/rows/{row}"), Text::new("CSV として読み取れない行です", "this row cannot be read as CSV"))
        .in_row(row)
}
