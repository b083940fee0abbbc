//! Importing the resident registry (既存住基システム, 住基ネットCS): the import of a whole file as a stream of
//! batches, and the decision of one batch.
//!
//! Owns the pipeline ([`ResidentServices::import_registry`]): the batches the edge parsed arrive in file order,
//! up to [`IN_FLIGHT`] are imported at once, a batch that shares a registry key with a running one waits for it
//! (so the rows of one key apply in file order and the file's last row of a key is what the registry keeps), the
//! outcomes go back in file order with the counts, a failed batch stops the import, and at the end the import
//! waits for the read models. Owns the per-row outcome (imported, changed, unchanged, refused) too: each row becomes
//! a `RegistryEntry` command, decided against what the registry view already holds and appended in one atomic
//! `append_many` per batch. The view may lag: a stream that moved on since the view saw it makes the append
//! conflict, and the batch is then decided again from the streams themselves, so a re-import never duplicates an
//! entry and a changed row always becomes a change event.
//!
//! An import stops when the edge's guard says so ([`Guard`]: asked every few seconds whether the importing
//! operator's session is still live), like a source that failed.
//!
//! Knows nothing of the file's format, HTTP or languages: rows the edge could not read, and a source that failed,
//! pass through untouched (as `U` and `F`) so that the edge reports them in their place.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use cardap_domain::registry::{
    self, RegistryChanges, RegistryCommand, RegistryEntry, RegistryError, RegistryFacts, RegistryKey, RegistryState,
};
use cardap_domain::resident::Erasable;
use cardap_domain::{Aggregate, MunicipalityCode};
use cardap_projections::registry as view;
use cardap_store::CommandId;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;

use crate::QueryError;
use crate::authz::Permission;
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::CommandError;
use crate::residents::{RegistrationError, ResidentServices, stream_of};

/// Batches being imported at once (with no registry key in common). The appends of one batch are one transaction
/// of many short statements, so a second and third batch keep the database busy while the first waits for its
/// round trips.
pub const IN_FLIGHT: usize = 3;

/// One parsed row of a registry file.
#[derive(Debug, Clone)]
pub struct RegistryRow {
    /// The row number in the file (the header is row 1).
    pub row: u64,
    pub key: RegistryKey,
    pub facts: RegistryFacts,
}

/// One row of a batch as the edge read it.
#[derive(Debug)]
pub enum ImportRow<U> {
    /// A row to import.
    Read(RegistryRow),
    /// A row the edge could not read, at its row number; `why` comes back untouched in the batch's outcome, in its
    /// place in file order, and counts as an error.
    Unread { row: u64, why: U },
}

impl<U> ImportRow<U> {
    /// The row number in the file.
    pub fn row(&self) -> u64 {
        match self {
            ImportRow::Read(r) => r.row,
            ImportRow::Unread { row, .. } => *row,
        }
    }
}

/// What the edge sends, in file order.
#[derive(Debug)]
pub enum ImportInput<U, F> {
    /// The next rows of the file (blank rows left out).
    Batch(Vec<ImportRow<U>>),
    /// The source failed after the batches before: `F` comes back as the failure of the last outcome, and the
    /// import stops.
    Failed(F),
}

/// Which optional facts the file carries. A fact it has no column for keeps what the registry holds (a 住基ネットCS
/// file knows no kana and no postal code, and must not clear them); an empty cell of a column it has clears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuppliedFacts {
    pub kana: bool,
    pub postal_code: bool,
    pub address: bool,
}

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Imported,
    /// The names of the fields that changed.
    Changed(Vec<&'static str>),
    Unchanged,
    Refused(RegistryError),
}

/// One row of a batch's outcome.
#[derive(Debug)]
pub enum RowReport<U> {
    /// A row that was decided.
    Decided { key: RegistryKey, outcome: RowOutcome },
    /// A row the edge could not read, as it sent it.
    Unread(U),
}

impl<U> RowReport<U> {
    /// The row was not imported (unreadable, or refused by the decision).
    pub fn is_error(&self) -> bool {
        matches!(self, RowReport::Unread(_) | RowReport::Decided { outcome: RowOutcome::Refused(_), .. })
    }
}

/// Rows counted by what became of them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportCounts {
    /// Data rows read (blank rows are not sent).
    pub rows: u64,
    pub imported: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Rows refused by the decision or not read by the edge.
    pub errors: u64,
}

impl ImportCounts {
    fn add(&mut self, other: ImportCounts) {
        self.rows += other.rows;
        self.imported += other.imported;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.errors += other.errors;
    }
}

/// Why importing a batch failed; nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// What the registry view holds for the batch's keys could not be read.
    #[error(transparent)]
    View(#[from] QueryError),
    /// The decision or the append failed.
    #[error(transparent)]
    Command(#[from] CommandError<RegistrationError>),
}

/// Why an import stopped at a batch.
#[derive(Debug)]
pub enum ImportFailure<F> {
    /// The source failed, as the edge said ([`ImportInput::Failed`]).
    Source(F),
    /// Importing the batch of rows `first..=last` failed; the batches before it were imported.
    Batch { first: u64, last: u64, error: BatchError },
}

/// What became of one batch.
#[derive(Debug)]
pub struct BatchOutcome<U, F> {
    /// Every row of the batch in file order, unchanged rows included; empty when the batch failed.
    pub rows: Vec<(u64, RowReport<U>)>,
    pub counts: ImportCounts,
    /// The import stops after this batch.
    pub failure: Option<ImportFailure<F>>,
}

impl<U, F> BatchOutcome<U, F> {
    fn failed(failure: ImportFailure<F>) -> Self {
        BatchOutcome { rows: vec![], counts: ImportCounts::default(), failure: Some(failure) }
    }
}

/// What an import did in all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportTotals {
    pub counts: ImportCounts,
    /// A batch failed and the import stopped early.
    pub aborted: bool,
    /// The edge stopped reading the outcomes (the client went away): the import stopped and the batches still
    /// running were dropped.
    pub abandoned: bool,
}

/// A row that was decided: its number, its key and its outcome.
type Decided = (u64, RegistryKey, RowOutcome);

impl ResidentServices {
    /// 住基データ取り込み: imports the batches of `input` into the registry of `code`, sending the outcome of each
    /// batch to `output` in file order, and answers the totals once the read models show the import (or gave up
    /// waiting). Stops at the first failed batch, and when `output` is closed; either way it closes `input`, which
    /// tells the source to stop.
    ///
    /// Every batch is one command (a fresh command id, the import's correlation id): a re-import is idempotent by
    /// itself, and one id for all would make every batch after the first look like a retry of it.
    ///
    /// `guard` is asked every `guard.every` while the import runs (the importing operator's session, his
    /// permission): when it answers `Some(why)`, no batch is started any more, and `why` is the failure of the
    /// last outcome, after the batches already running.
    pub async fn import_registry<U: Send, F: Send, G, GFut>(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        supplied: SuppliedFacts,
        input: mpsc::Receiver<ImportInput<U, F>>,
        output: mpsc::Sender<BatchOutcome<U, F>>,
        guard: Guard<G>,
    ) -> ImportTotals
    where
        G: FnMut() -> GFut,
        GFut: Future<Output = Option<F>>,
    {
        let decide = |rows: Vec<RegistryRow>| async move {
            let ctx = CommandContext { command_id: CommandId::generate(), ..ctx.clone() };
            self.decide_registry_batch(&ctx, code, supplied, rows).await
        };
        let (guarded_tx, guarded_rx) = mpsc::channel(1);
        let ((), totals) = tokio::join!(guarded(input, guarded_tx, guard), run(guarded_rx, output, decide));
        if totals.counts.imported + totals.counts.changed > 0 {
            match self.store().head().await {
                Ok(head) => self.views().wait_for(head).await,
                Err(e) => tracing::warn!(error = %e, "could not read the event log's head after the import"),
            }
        }
        totals
    }

    /// Decides the batch's rows against the registry view (one query) and appends them (one transaction).
    async fn decide_registry_batch(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        supplied: SuppliedFacts,
        mut rows: Vec<RegistryRow>,
    ) -> Result<Vec<Decided>, BatchError> {
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let mut seen = HashSet::with_capacity(rows.len());
        let keys: Vec<RegistryKey> = rows.iter().filter(|r| seen.insert(&r.key)).map(|r| r.key.clone()).collect();
        let known: KnownEntries = view::versions(self.read().pool(), self.read().sealer(), code, &keys)
            .await?
            .into_iter()
            .map(|(key, entry)| (String::from(key), entry))
            .collect();
        keep_absent(supplied, &mut rows, &known);
        let outcomes = self.import_registry_batch(ctx, code, &rows, &known).await?;
        Ok(rows.into_iter().zip(outcomes).map(|(r, (row, outcome))| (row, r.key, outcome)).collect())
    }
}

/// What an import asks, before each batch and now and then while it waits for the next, whether it may go on
/// (see [`ResidentServices::import_registry`]).
#[derive(Debug, Clone)]
pub struct Guard<G> {
    /// How often while no batch comes (a trickling upload): the first time one period after the start (the
    /// request was authorized just before).
    pub every: Duration,
    /// `Some(why)` stops the import.
    pub check: G,
}

/// Passes the edge's input on to the pipeline while `guard` allows it, asking it before each batch and every
/// `guard.every`; when it stops allowing, passes on its reason as the source's failure instead and stops reading
/// the edge (which tells the source to stop). Ends when the pipeline stops reading.
async fn guarded<U, F, G, GFut>(
    mut input: mpsc::Receiver<ImportInput<U, F>>,
    forward: mpsc::Sender<ImportInput<U, F>>,
    mut guard: Guard<G>,
) where
    G: FnMut() -> GFut,
    GFut: Future<Output = Option<F>>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + guard.every, guard.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            next = input.recv() => match next {
                Some(next @ ImportInput::Batch(_)) => (guard.check)().await.map_or(next, ImportInput::Failed),
                Some(failed) => failed,
                None => return,
            },
            _ = tick.tick() => match (guard.check)().await {
                Some(why) => ImportInput::Failed(why),
                None => continue,
            },
            () = forward.closed() => return,
        };
        if matches!(next, ImportInput::Failed(_)) {
            // Nothing more is read: the source hears of it at once.
            drop(input);
            let _ = forward.send(next).await;
            return;
        }
        if forward.send(next).await.is_err() {
            return;
        }
    }
}

/// The pipeline of [`ResidentServices::import_registry`], with the decision of a batch's rows as `decide` (so
/// that its scheduling can be tested on its own).
async fn run<U, F, D, Fut>(
    mut input: mpsc::Receiver<ImportInput<U, F>>,
    output: mpsc::Sender<BatchOutcome<U, F>>,
    decide: D,
) -> ImportTotals
where
    D: Fn(Vec<RegistryRow>) -> Fut,
    Fut: Future<Output = Result<Vec<Decided>, BatchError>>,
{
    let decide = &decide;
    let mut totals = ImportTotals::default();
    let mut in_flight = FuturesOrdered::new();
    // The keys each running batch writes, in the order of `in_flight`.
    let mut busy: VecDeque<HashSet<RegistryKey>> = VecDeque::new();
    let mut pending: Option<(ImportInput<U, F>, HashSet<RegistryKey>)> = None;
    let mut input_open = true;
    loop {
        if !totals.aborted
            && in_flight.len() < IN_FLIGHT
            && let Some((_, keys)) = &pending
            && busy.iter().all(|b| b.is_disjoint(keys))
            && let Some((next, keys)) = pending.take()
        {
            busy.push_back(keys);
            in_flight.push_back(async move {
                match next {
                    ImportInput::Batch(rows) => batch(rows, decide).await,
                    ImportInput::Failed(f) => BatchOutcome::failed(ImportFailure::Source(f)),
                }
            });
            continue;
        }
        let want_input = pending.is_none() && input_open && !totals.aborted;
        tokio::select! {
            next = input.recv(), if want_input => match next {
                Some(next) => {
                    // Nothing after a failed source is read.
                    input_open = !matches!(next, ImportInput::Failed(_));
                    let keys = keys_of(&next);
                    pending = Some((next, keys));
                }
                None => input_open = false,
            },
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                busy.pop_front();
                let outcome: BatchOutcome<U, F> = outcome;
                totals.counts.add(outcome.counts);
                totals.aborted |= outcome.failure.is_some();
                if output.send(outcome).await.is_err() {
                    totals.abandoned = true;
                    break;
                }
            }
            else => break,
        }
    }
    // Stops whatever batch was still running, and the source (its channel closes).
    drop(in_flight);
    drop(input);
    totals
}

/// The registry keys a batch writes.
fn keys_of<U, F>(input: &ImportInput<U, F>) -> HashSet<RegistryKey> {
    match input {
        ImportInput::Batch(rows) => rows
            .iter()
            .filter_map(|r| match r {
                ImportRow::Read(r) => Some(r.key.clone()),
                ImportRow::Unread { .. } => None,
            })
            .collect(),
        ImportInput::Failed(_) => HashSet::new(),
    }
}

/// Imports one batch: decides its rows, and counts and orders the outcomes with the rows the edge could not read.
async fn batch<U, F, Fut>(rows: Vec<ImportRow<U>>, decide: impl FnOnce(Vec<RegistryRow>) -> Fut) -> BatchOutcome<U, F>
where
    Fut: Future<Output = Result<Vec<Decided>, BatchError>>,
{
    let (first, last) = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => (first.row(), last.row()),
        _ => return BatchOutcome { rows: vec![], counts: ImportCounts::default(), failure: None },
    };
    let mut read = Vec::with_capacity(rows.len());
    let mut unread = Vec::new();
    for r in rows {
        match r {
            ImportRow::Read(r) => read.push(r),
            ImportRow::Unread { row, why } => unread.push((row, RowReport::Unread(why))),
        }
    }
    let decided = match decide(read).await {
        Ok(decided) => decided,
        Err(error) => return BatchOutcome::failed(ImportFailure::Batch { first, last, error }),
    };
    let mut counts = ImportCounts {
        rows: (decided.len() + unread.len()) as u64,
        errors: unread.len() as u64,
        ..ImportCounts::default()
    };
    let mut rows = Vec::with_capacity(decided.len() + unread.len());
    for (row, key, outcome) in decided {
        match &outcome {
            RowOutcome::Imported => counts.imported += 1,
            RowOutcome::Changed(_) => counts.changed += 1,
            RowOutcome::Unchanged => counts.unchanged += 1,
            RowOutcome::Refused(_) => counts.errors += 1,
        }
        rows.push((row, RowReport::Decided { key, outcome }));
    }
    rows.extend(unread);
    rows.sort_by_key(|(row, _)| *row);
    BatchOutcome { rows, counts, failure: None }
}

/// What the registry view holds for a key: the stream version and the facts (`None` once erased).
type KnownEntries = HashMap<String, (u64, Option<RegistryFacts>)>;

/// Optional facts the file does not supply keep what the registry holds.
fn keep_absent(supplied: SuppliedFacts, rows: &mut [RegistryRow], known: &KnownEntries) {
    let SuppliedFacts { kana, postal_code, address } = supplied;
    if kana && postal_code && address {
        return;
    }
    for row in rows {
        let Some((_, Some(current))) = known.get(row.key.as_str()) else { continue };
        if !kana {
            row.facts.kana = current.kana.clone();
        }
        if !postal_code {
            row.facts.postal_code = current.postal_code.clone();
        }
        if !address {
            row.facts.address = current.address.clone();
        }
    }
}

impl ResidentServices {
    /// Imports one batch of rows atomically, one outcome per row in the rows' order. `known` is what the
    /// registry view says about the batch's keys; a stale view only costs a second, slower decision.
    async fn import_registry_batch(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        rows: &[RegistryRow],
        known: &KnownEntries,
    ) -> Result<Vec<(u64, RowOutcome)>, CommandError<RegistrationError>> {
        let permission = Permission::ConfigureResidentServices(code.clone());
        let mut attempt = 0;
        let done = transact(self.store(), ctx, &[permission], Some(code.clone()), |mut tx: Tx| {
            attempt += 1;
            let attempt = attempt;
            async move {
                // Per stream: the version it was at and the state it reaches within this batch.
                let mut states: HashMap<&str, (u64, RegistryState, Vec<registry::RegistryEvent>)> = HashMap::new();
                let mut order: Vec<&RegistryKey> = Vec::new();
                let mut outcomes = Vec::with_capacity(rows.len());
                for row in rows {
                    let key = row.key.as_str();
                    if !states.contains_key(key) {
                        let (version, state) = if attempt == 1 {
                            match known.get(key) {
                                None => (0, RegistryState::default()),
                                Some((version, facts)) => {
                                    let facts = facts.clone().map_or(Erasable::Erased, Erasable::Known);
                                    (*version, RegistryState { entry: Some((code.clone(), row.key.clone(), facts)) })
                                }
                            }
                        } else {
                            let stream = stream_of::<RegistryEntry>(&registry::stream_key(code, &row.key));
                            let loaded = tx.load::<RegistryEntry, RegistrationError>(&stream).await?;
                            (loaded.version, loaded.state)
                        };
                        states.insert(key, (version, state, Vec::new()));
                        order.push(&row.key);
                    }
                    let Some((_, state, pending)) = states.get_mut(key) else { continue };
                    let command = RegistryCommand::Import {
                        municipality: code.clone(),
                        key: row.key.clone(),
                        facts: row.facts.clone(),
                    };
                    let outcome = match RegistryEntry::decide(state, command) {
                        Err(e) => RowOutcome::Refused(e),
                        Ok(events) => {
                            let outcome = match events.first() {
                                None => RowOutcome::Unchanged,
                                Some(registry::RegistryEvent::Imported { .. }) => RowOutcome::Imported,
                                Some(registry::RegistryEvent::Changed { changes }) => {
                                    RowOutcome::Changed(changes.known().map(changed_fields).unwrap_or_default())
                                }
                                // An import never erases (only the erasure of its resident does).
                                Some(registry::RegistryEvent::Erased) => RowOutcome::Refused(RegistryError::Erased),
                            };
                            for e in &events {
                                *state = RegistryEntry::evolve(std::mem::take(state), e);
                            }
                            pending.extend(events);
                            outcome
                        }
                    };
                    outcomes.push((row.row, outcome));
                }
                for key in order {
                    if let Some((version, _, pending)) = states.get(key.as_str()) {
                        let stream = stream_of::<RegistryEntry>(&registry::stream_key(code, key));
                        tx.append::<RegistryEntry>(&stream, *version, pending);
                    }
                }
                Ok((outcomes, tx))
            }
        })
        .await?;
        match done.value {
            Some(outcomes) => Ok(outcomes),
            // A retry of a batch that was applied: every row of it went through before.
            None => Ok(rows.iter().map(|r| (r.row, RowOutcome::Unchanged)).collect()),
        }
    }
}

fn changed_fields(c: &RegistryChanges) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut note = |changed: bool, name: &'static str| {
        if changed {
            fields.push(name);
        }
    };
    note(c.name.is_some(), "name");
    note(c.kana.is_some(), "kana");
    note(c.birth_date.is_some(), "birth_date");
    note(c.sex.is_some(), "sex");
    note(c.postal_code.is_some(), "postal_code");
    note(c.address.is_some(), "address");
    fields
}

#[cfg(test)]
mod tests;
