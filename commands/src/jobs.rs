//! Jobs: an import too long for one request (the operator CSV: thousands of rows, one Argon2id hash each) is
//! accepted at once and runs in the background; the caller follows it as a job resource — its progress (rows
//! read, passwords hashed, rows registered, errors so far) and its outcome (the report, or why it failed) — and
//! fetches the generated passwords from it, once (issue 9, point 7).
//!
//! Owns the job table of one server process and its rules: a job is seen by the operator who started it and by
//! the system administrator, and by nobody else (to them it does not exist); its generated passwords are handed
//! out once, to the operator who started it, and then forgotten; a finished job is kept for
//! [`crate::imports::ImportLimits::keep_finished`] and then dropped (at most [`MAX_FINISHED`] of them). The table
//! lives in memory: a restart loses the jobs and any password not fetched yet (the registrations themselves are
//! events and stay; an administrator resets such a password). A job holds its [`ImportSlot`] while it runs.
//!
//! Knows nothing of HTTP: the failure of a job is the edge's own type `F`, kept as it was given. Never logs a
//! password.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cardap_domain::operator::OperatorId;
use cardap_domain::{MunicipalityCode, OperatorKey};
use cardap_store::CommandId;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::authz::Actor;
use crate::clock::Clock;
use crate::imports::ImportSlot;
use crate::passwords::Secret;

/// Finished jobs kept at most, whatever their age: the oldest go first.
pub const MAX_FINISHED: usize = 1000;

/// A job's id: random, so that nobody learns of another's job by counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(Uuid);

impl JobId {
    fn generate() -> Self {
        JobId(Uuid::new_v4())
    }

    /// The id as written in a path; `None` for anything that is not one.
    pub fn parse(s: &str) -> Option<JobId> {
        Uuid::parse_str(s).ok().map(JobId)
    }
}

impl From<JobId> for Uuid {
    fn from(id: JobId) -> Uuid {
        id.0
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// オペレータ一括登録 from a CSV file.
    OperatorImport,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::OperatorImport => "operator-import",
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// What a running job is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading the file and checking every row.
    Validating,
    /// Hashing the passwords (before anything is written).
    Hashing,
    /// Writing the registrations, all in one transaction.
    Registering,
    Finished,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Validating => "validating",
            Phase::Hashing => "hashing",
            Phase::Registering => "registering",
            Phase::Finished => "finished",
        }
    }

    fn from_u8(n: u8) -> Phase {
        match n {
            0 => Phase::Validating,
            1 => Phase::Hashing,
            2 => Phase::Registering,
            _ => Phase::Finished,
        }
    }
}

/// A running job's counters, moved by the job as it goes and read by whoever looks at it.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    rows: AtomicU64,
    rows_hashed: AtomicU64,
    rows_done: AtomicU64,
    errors: AtomicU64,
}

impl Progress {
    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// `n` more data rows read and checked.
    pub fn add_rows(&self, n: u64) {
        self.rows.fetch_add(n, Ordering::Relaxed);
    }

    /// The errors found so far.
    pub fn set_errors(&self, n: u64) {
        self.errors.store(n, Ordering::Relaxed);
    }

    /// One more password hashed.
    pub fn hashed_one(&self) {
        self.rows_hashed.fetch_add(1, Ordering::Relaxed);
    }

    /// Rows registered (all of them at once: the registration is atomic).
    pub fn set_done(&self, n: u64) {
        self.rows_done.store(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressView {
        ProgressView {
            phase: Phase::from_u8(self.phase.load(Ordering::Relaxed)),
            rows: self.rows.load(Ordering::Relaxed),
            rows_hashed: self.rows_hashed.load(Ordering::Relaxed),
            rows_done: self.rows_done.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// The counters of a job at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressView {
    pub phase: Phase,
    /// Data rows read and checked so far (all of the file's once it has been read).
    pub rows: u64,
    /// Passwords hashed so far.
    pub rows_hashed: u64,
    /// Rows registered.
    pub rows_done: u64,
    /// Errors found so far.
    pub errors: u64,
}

/// A row a job registered, as the job hands it over: the generated password goes to the table's safe keeping,
/// the rest to the report.
pub struct ImportedItem {
    /// The row in the file (the header is row 1).
    pub row: u64,
    pub operator_id: OperatorId,
    /// The generated password; `None` when the row gave one, kept a hash, or the import was a replay.
    pub password: Option<Secret>,
}

impl std::fmt::Debug for ImportedItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedItem").field("row", &self.row).field("operator_id", &self.operator_id).finish()
    }
}

/// One row of a succeeded job's report: never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportItem {
    pub row: u64,
    pub operator_id: OperatorId,
    /// A password was generated for him: fetch it from the job, once.
    pub password_generated: bool,
}

/// What a job that succeeded reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub items: Vec<ReportItem>,
}

/// A generated password, handed to the operator who started the job.
#[derive(Debug, Clone)]
pub struct GeneratedPassword {
    pub row: u64,
    pub operator_id: OperatorId,
    pub password: Secret,
}

/// How a job ended.
#[derive(Debug)]
pub enum JobOutcome<F> {
    Succeeded(JobReport),
    /// Why, as the edge said it.
    Failed(F),
    /// The job's task went away without a word (it panicked): nothing is known of it but that it stopped.
    Lost,
}

/// What became of a job's generated passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordsState {
    /// None were generated (every row gave a password or a hash, the job failed or is running).
    None,
    /// Waiting to be fetched, once.
    Held,
    /// Fetched, or dropped when the job expired.
    Taken,
}

/// A job as the operator who may see it sees it.
#[derive(Debug)]
pub struct JobView<'a, F> {
    pub id: JobId,
    pub kind: JobKind,
    pub municipality: &'a MunicipalityCode,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub state: JobState,
    pub progress: ProgressView,
    pub outcome: Option<&'a JobOutcome<F>>,
    pub passwords: PasswordsState,
}

/// Why the generated passwords were not handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordsRefused {
    /// No such job for this operator (another's, expired, or never).
    #[error("no such job")]
    NotFound,
    /// The job is still running: the passwords come with its success.
    #[error("the job is still running")]
    Running,
    /// The job failed: nothing was registered, no password was kept.
    #[error("the job failed")]
    Failed,
    /// They were fetched already, and are kept nowhere any more.
    #[error("the passwords were fetched already")]
    Taken,
}

enum Passwords {
    None,
    Held(Vec<GeneratedPassword>),
    Taken,
}

impl Passwords {
    fn state(&self) -> PasswordsState {
        match self {
            Passwords::None => PasswordsState::None,
            Passwords::Held(_) => PasswordsState::Held,
            Passwords::Taken => PasswordsState::Taken,
        }
    }
}

struct Entry<F> {
    kind: JobKind,
    municipality: MunicipalityCode,
    /// The operator who started it: the only one who gets its passwords.
    owner: OperatorKey,
    /// The command id of the request that started it (a retry with the same `Idempotency-Key` finds it).
    command: CommandId,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    progress: Arc<Progress>,
    outcome: Option<JobOutcome<F>>,
    passwords: Passwords,
}

impl<F> Entry<F> {
    fn visible_to(&self, viewer: &Actor) -> bool {
        viewer.operator == self.owner || viewer.is_system_admin()
    }
}

type Table<F> = Arc<Mutex<HashMap<JobId, Entry<F>>>>;

/// The jobs of this server process; `F` is the edge's account of a failure.
pub struct Jobs<F> {
    table: Table<F>,
    clock: Arc<dyn Clock>,
    keep: Duration,
}

impl<F> Clone for Jobs<F> {
    fn clone(&self) -> Self {
        Jobs { table: self.table.clone(), clock: self.clock.clone(), keep: self.keep }
    }
}

impl<F> std::fmt::Debug for Jobs<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("keep", &self.keep).finish_non_exhaustive()
    }
}

impl<F: Send + 'static> Jobs<F> {
    /// Finished jobs are kept `keep` after they finished.
    pub fn new(clock: Arc<dyn Clock>, keep: Duration) -> Self {
        Jobs { table: Arc::new(Mutex::new(HashMap::new())), clock, keep }
    }

    /// Starts a job of `kind` for `by` in the municipality of `slot`, which it holds until it finishes.
    pub fn start(&self, kind: JobKind, by: &Actor, command: CommandId, slot: ImportSlot) -> JobHandle<F> {
        let id = JobId::generate();
        let progress = Arc::new(Progress::default());
        let entry = Entry {
            kind,
            municipality: slot.municipality().clone(),
            owner: by.operator,
            command,
            started_at: self.clock.now(),
            finished_at: None,
            progress: progress.clone(),
            outcome: None,
            passwords: Passwords::None,
        };
        let mut table = self.lock();
        self.purge(&mut table);
        table.insert(id, entry);
        JobHandle { id, jobs: self.clone(), progress, slot: Some(slot), finished: false }
    }

    /// The job `by` started with this command (a retry of the same request), if it is still kept.
    pub fn for_command(&self, by: &Actor, command: CommandId) -> Option<JobId> {
        let mut table = self.lock();
        self.purge(&mut table);
        table.iter().find(|(_, e)| e.owner == by.operator && e.command == command).map(|(id, _)| *id)
    }

    /// Looks at a job through `f`, if `viewer` may see it.
    pub fn show<R>(&self, id: JobId, viewer: &Actor, f: impl FnOnce(JobView<'_, F>) -> R) -> Option<R> {
        let mut table = self.lock();
        self.purge(&mut table);
        let entry = table.get(&id).filter(|e| e.visible_to(viewer))?;
        let state = match &entry.outcome {
            None => JobState::Running,
            Some(JobOutcome::Succeeded(_)) => JobState::Succeeded,
            Some(JobOutcome::Failed(_) | JobOutcome::Lost) => JobState::Failed,
        };
        Some(f(JobView {
            id,
            kind: entry.kind,
            municipality: &entry.municipality,
            started_at: entry.started_at,
            finished_at: entry.finished_at,
            state,
            progress: entry.progress.snapshot(),
            outcome: entry.outcome.as_ref(),
            passwords: entry.passwords.state(),
        }))
    }

    /// The job's generated passwords, handed to the operator who started it, once: afterwards they are kept
    /// nowhere. Anyone else is told there is no such job.
    pub fn take_passwords(&self, id: JobId, by: &Actor) -> Result<Vec<GeneratedPassword>, PasswordsRefused> {
        let mut table = self.lock();
        self.purge(&mut table);
        let entry = table.get_mut(&id).filter(|e| e.owner == by.operator).ok_or(PasswordsRefused::NotFound)?;
        match (&entry.outcome, &entry.passwords) {
            (None, _) => Err(PasswordsRefused::Running),
            (Some(JobOutcome::Failed(_) | JobOutcome::Lost), _) => Err(PasswordsRefused::Failed),
            (Some(JobOutcome::Succeeded(_)), Passwords::Taken) => Err(PasswordsRefused::Taken),
            (Some(JobOutcome::Succeeded(_)), _) => {
                let passwords = std::mem::replace(&mut entry.passwords, Passwords::Taken);
                tracing::info!(job = %id, "the generated passwords of a job were handed out");
                match passwords {
                    Passwords::Held(passwords) => Ok(passwords),
                    Passwords::None | Passwords::Taken => Ok(vec![]),
                }
            }
        }
    }

    /// Drops the finished jobs past their time (they are dropped too whenever the table is looked at).
    pub fn purge_expired(&self) {
        let mut table = self.lock();
        self.purge(&mut table);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Entry<F>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the jobs finished longer than `keep` ago, and the oldest finished ones beyond [`MAX_FINISHED`].
    fn purge(&self, table: &mut HashMap<JobId, Entry<F>>) {
        let keep = chrono::Duration::from_std(self.keep).unwrap_or(chrono::Duration::MAX);
        let now = self.clock.now();
        table.retain(|_, e| e.finished_at.is_none_or(|at| at + keep > now));
        let mut finished: Vec<(DateTime<Utc>, JobId)> =
            table.iter().filter_map(|(id, e)| e.finished_at.map(|at| (at, *id))).collect();
        if finished.len() > MAX_FINISHED {
            finished.sort_by_key(|(at, _)| *at);
            for (_, id) in &finished[..finished.len() - MAX_FINISHED] {
                table.remove(id);
            }
        }
    }

    fn finish(&self, id: JobId, outcome: JobOutcome<F>, passwords: Passwords) {
        let mut table = self.lock();
        if let Some(entry) = table.get_mut(&id) {
            entry.progress.set_phase(Phase::Finished);
            entry.finished_at = Some(self.clock.now());
            entry.outcome = Some(outcome);
            entry.passwords = passwords;
        }
    }
}

/// The running job's side: moves its progress and says how it ended. Dropped without a word, the job is lost.
pub struct JobHandle<F: Send + 'static> {
    id: JobId,
    jobs: Jobs<F>,
    progress: Arc<Progress>,
    /// Given back once the job's outcome is recorded.
    slot: Option<ImportSlot>,
    finished: bool,
}

impl<F: Send + 'static> std::fmt::Debug for JobHandle<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

impl<F: Send + 'static> JobHandle<F> {
    pub fn id(&self) -> JobId {
        self.id
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The job registered `items`: their report is shown to whoever may see the job, their generated passwords
    /// are kept for the operator who started it.
    pub fn succeed(mut self, items: Vec<ImportedItem>) {
        self.progress.set_done(items.len() as u64);
        let mut report = Vec::with_capacity(items.len());
        let mut passwords = vec![];
        for item in items {
            report.push(ReportItem {
                row: item.row,
                operator_id: item.operator_id.clone(),
                password_generated: item.password.is_some(),
            });
            if let Some(password) = item.password {
                passwords.push(GeneratedPassword { row: item.row, operator_id: item.operator_id, password });
            }
        }
        let passwords = if passwords.is_empty() { Passwords::None } else { Passwords::Held(passwords) };
        self.end(JobOutcome::Succeeded(JobReport { items: report }), passwords);
    }

    /// The job failed; nothing was registered.
    pub fn fail(mut self, failure: F) {
        self.end(JobOutcome::Failed(failure), Passwords::None);
    }

    fn end(&mut self, outcome: JobOutcome<F>, passwords: Passwords) {
        self.finished = true;
        // The place is given back first: who sees the job finished may start the next one at once.
        self.slot.take();
        self.jobs.finish(self.id, outcome, passwords);
    }
}

impl<F: Send + 'static> Drop for JobHandle<F> {
    fn drop(&mut self) {
        if !self.finished {
            tracing::error!(job = %self.id, "a job stopped without an outcome");
            self.end(JobOutcome::Lost, Passwords::None);
        }
    }
}

#[cfg(test)]
mod tests;
