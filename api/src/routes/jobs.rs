//! `/api/v1/jobs/{job_id}`: the imports that run in the background (the operator CSV import answers `202
//! Accepted` with one): where a job stands, and its generated passwords, once.
//!
//! Owns the HTTP of the job resource and the shape of its answers; the jobs themselves, who sees them and the
//! rule "passwords once, to the operator who started the job" are `cardap_commands::jobs`'. A job another
//! operator started does not exist for the caller (404), except for the system administrator, who sees every
//! job but never its passwords. Jobs live in the memory of the server that runs them: after a restart they are
//! gone (404).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cardap_commands::Actor;
use cardap_commands::jobs::{
    GeneratedPassword, JobId, JobOutcome, JobState, JobView, PasswordsRefused, PasswordsState, Phase,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, ProblemDetails};
use crate::i18n::{Lang, Text};
use crate::routes::operator_csv::{ImportReport, ImportedRow};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs/{job_id}", get(show))
        .route("/api/v1/jobs/{job_id}/passwords", post(take_passwords))
}

/// A job: an import running in the background, and how it ended.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"job_id": "0190a6c2-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "kind": "operator-import",
    "municipality": "131016", "state": "running", "started_at": "2025-04-01T09:00:00Z",
    "progress": {"phase": "hashing", "rows": 2000, "rows_hashed": 812, "rows_done": 0, "errors": 0}}))]
pub struct JobResource {
    pub job_id: uuid::Uuid,
    /// What the job does: `operator-import` (オペレータ一括登録).
    pub kind: String,
    /// The municipality it works in.
    pub municipality: String,
    pub state: JobStateName,
    pub started_at: DateTime<Utc>,
    /// Present once it has ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: JobProgress,
    /// Present once it has ended: the report of a job that succeeded (`imported`, `items`, no password), or the
    /// problem of one that failed (`type`, `status`, `errors` with `row` and `column`, as a `4xx` answer has it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<JobOutcomeBody>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStateName {
    Running,
    /// Every row registered: see `outcome`, and fetch the generated passwords (once).
    Succeeded,
    /// Nothing registered: `outcome` is the problem.
    Failed,
}

/// How far the job has come.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobProgress {
    pub phase: JobPhase,
    /// Data rows read and checked so far (all of the file's once the phase is past `validating`).
    pub rows: u64,
    /// Passwords hashed so far (rows that give a password hash need none).
    pub rows_hashed: u64,
    /// Rows registered: 0 until the registration, which writes them all at once.
    pub rows_done: u64,
    /// Errors found so far (`validating`).
    pub errors: u64,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Reading the file and checking every row; nothing is hashed or written before the whole file is valid.
    Validating,
    /// Hashing the passwords (Argon2id), before anything is written.
    Hashing,
    /// Writing every registration in one transaction.
    Registering,
    Finished,
}

/// How a job ended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum JobOutcomeBody {
    Report(ImportReport),
    Problem(ProblemDetails),
}

/// The generated passwords of a job.
#[derive(Serialize, ToSchema)]
pub struct JobPasswords {
    pub items: Vec<JobPassword>,
}

impl std::fmt::Debug for JobPasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPasswords").field("items", &self.items.len()).finish()
    }
}

/// One generated password.
#[derive(Serialize, ToSchema)]
pub struct JobPassword {
    /// The row in the file (the header is row 1).
    pub row: u64,
    pub operator_id: String,
    pub password: String,
}

impl std::fmt::Debug for JobPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPassword").field("row", &self.row).field("operator_id", &self.operator_id).finish()
    }
}

impl JobResource {
    fn of(view: JobView<'_, ApiError>, lang: Lang) -> JobResource {
        let p = view.progress;
        let phase = match p.phase {
            Phase::Validating => JobPhase::Validating,
            Phase::Hashing => JobPhase::Hashing,
            Phase::Registering => JobPhase::Registering,
            Phase::Finished => JobPhase::Finished,
        };
        let state = match view.state {
            JobState::Running => JobStateName::Running,
            JobState::Succeeded => JobStateName::Succeeded,
            JobState::Failed => JobStateName::Failed,
        };
        let outcome = view.outcome.map(|outcome| match outcome {
            JobOutcome::Succeeded(report) => JobOutcomeBody::Report(ImportReport {
                imported: report.items.len(),
                items: report
                    .items
                    .iter()
                    .map(|i| ImportedRow {
                        row: i.row,
                        operator_id: i.operator_id.to_string(),
                        password_generated: i.password_generated,
                    })
                    .collect(),
                passwords: match view.passwords {
                    PasswordsState::None => "none",
                    PasswordsState::Held => "available",
                    PasswordsState::Taken => "retrieved",
                }
                .to_owned(),
            }),
            JobOutcome::Failed(problem) => JobOutcomeBody::Problem(problem.problem(lang)),
            JobOutcome::Lost => JobOutcomeBody::Problem(ApiError::internal("the job stopped").problem(lang)),
        });
        JobResource {
            job_id: view.id.into(),
            kind: view.kind.as_str().to_owned(),
            municipality: view.municipality.to_string(),
            state,
            started_at: view.started_at,
            finished_at: view.finished_at,
            progress: JobProgress {
                phase,
                rows: p.rows,
                rows_hashed: p.rows_hashed,
                rows_done: p.rows_done,
                errors: p.errors,
            },
            outcome,
        }
    }
}

/// Where a job is: `/api/v1/jobs/{job_id}`.
pub fn job_path(id: JobId) -> String {
    format!("/api/v1/jobs/{id}")
}

/// The answer to a request that started (or, retried, found) job `id`: `202 Accepted`, the job at `Location`.
pub fn accepted(state: &AppState, id: JobId, by: &Actor) -> Result<Response, ApiError> {
    let lang = Lang::current();
    let job = state.jobs.show(id, by, |view| JobResource::of(view, lang)).ok_or_else(ApiError::not_found)?;
    let location = HeaderValue::from_str(&job_path(id)).map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(job)).into_response())
}

/// Where a job stands: its progress while it runs, its outcome once it has ended. Poll it (every second or two)
/// until `state` is `succeeded` or `failed`. The messages of a failed job's problem are in the language of this
/// request (`Accept-Language`), whoever started the job.
///
/// Seen by the operator who started the job and by the system administrator; for anyone else it does not exist
/// (`404`). A finished job is kept for an hour (`imports.keep_jobs_minutes`), and jobs live in the memory of
/// the server that runs them: after that, or after a restart, `404` (the registrations themselves stay).
#[utoipa::path(get, operation_id = "showJob", path = "/api/v1/jobs/{job_id}", tag = "jobs",
    params(("job_id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = JobResource),
        (status = 404, body = ProblemDetails, description = "No such job for the caller: another operator's, \
            expired, or lost with a restart")))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = JobId::parse(&job_id).ok_or_else(ApiError::not_found)?;
    let lang = Lang::current();
    let job = state.jobs.show(id, &auth.actor, |view| JobResource::of(view, lang)).ok_or_else(ApiError::not_found)?;
    Ok(Json(job).into_response())
}

/// The passwords the job generated (rows without a password), **once**, to the operator who started the job.
///
/// A `POST` because it changes the job: the passwords are handed out and then kept nowhere, so a second call
/// answers `410` (an administrator then resets the password of an operator whose password was lost). Anyone but
/// the operator who started the job, the system administrator included, is told there is no such job (`404`).
/// A job still running, or one that failed (nothing registered), answers `409`. Passwords not fetched within
/// the job's hour, or lost with a restart, are gone too: reset them.
#[utoipa::path(post, operation_id = "takeJobPasswords", path = "/api/v1/jobs/{job_id}/passwords", tag = "jobs",
    params(("job_id" = String, Path)),
    security(("bearer" = [])),
    responses(
        (status = 200, body = JobPasswords, description = "Every generated password, in file order (empty when \
            every row gave a password or a password hash)",
            example = json!({"items": [{"row": 2, "operator_id": "OP0501", "password": "Xk3vT9qLm2Pz"}]})),
        (status = 404, body = ProblemDetails, description = "No such job for the caller (only the operator who \
            started it gets its passwords)"),
        (status = 409, body = ProblemDetails, description = "`/problems/job-not-succeeded`: the job is still \
            running, or it failed"),
        (status = 410, body = ProblemDetails, description = "`/problems/passwords-gone`: fetched already")))]
pub async fn take_passwords(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(job_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = JobId::parse(&job_id).ok_or_else(ApiError::not_found)?;
    let passwords = state.jobs.take_passwords(id, &auth.actor).map_err(|e| match e {
        PasswordsRefused::NotFound => ApiError::not_found(),
        PasswordsRefused::Running => ApiError::job_not_succeeded(Text::new(
            "ジョブは実行中です。成功してから取得してください",
            "the job is still running; fetch the passwords once it has succeeded",
        )),
        PasswordsRefused::Failed => ApiError::job_not_succeeded(Text::new(
            "ジョブは失敗しました。何も登録していないため、パスワードはありません",
            "the job failed: nothing was registered, so there are no passwords",
        )),
        PasswordsRefused::Taken => ApiError::passwords_gone(),
    })?;
    let items = passwords
        .into_iter()
        .map(|GeneratedPassword { row, operator_id, password }| JobPassword {
            row,
            operator_id: operator_id.to_string(),
            password: password.expose().to_owned(),
        })
        .collect();
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(JobPasswords { items }))
        .into_response())
}
