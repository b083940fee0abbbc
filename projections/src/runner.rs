//! The projection runner: follows the global order, applies each event to one read model, and stores the
//! checkpoint in the same transaction as the read-model change.
//!
//! At-least-once delivery made exactly-once: the stored checkpoint is locked and re-read inside the transaction,
//! and events at or before it are skipped. That also makes several nodes running the same projection safe,
//! and lets a rebuild (reset + checkpoint back to the start) happen while servers run.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cardap_store::{Checkpoint, EventStore, ReadFilter, RecordedEvent, StoreError};
use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::watch;

/// Events read per transaction.
const BATCH: usize = 500;
/// Events read per transaction by a rebuild's runner (nobody waits for its single events).
pub(crate) const REBUILD_BATCH: usize = 5_000;
/// How long `catch_up` waits for events held back by an open transaction.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// The safety-net poll when no wake-up arrives.
const POLL: Duration = Duration::from_secs(1);
/// The first look again at events an older open transaction holds back (no wake-up comes when it ends); doubled
/// while they stay held back, up to [`POLL`], so that a transaction left open for long costs little.
const HELD_BACK_POLL: Duration = Duration::from_millis(5);

/// One read of the log for a runner: the events after `from`, how far it looked, whether some are held back.
struct Batch {
    from: Checkpoint,
    events: Vec<RecordedEvent>,
    scanned: Checkpoint,
    held_back: bool,
}

/// The next batch, read while the runner applies the current one (a catch-up of many batches then overlaps the
/// store's read and decryption with the read model's writes). Dropping it aborts the read.
struct ReadAhead(tokio::task::JoinHandle<Result<Batch, ProjectionError>>);

impl ReadAhead {
    /// The batch read ahead, if it starts at `from` and holds events (an empty read is done again: a wake-up may
    /// have come since); a failed read is done again too.
    async fn starting_at(mut self, from: Checkpoint) -> Option<Batch> {
        match (&mut self.0).await {
            Ok(Ok(batch)) if batch.from == from && !batch.events.is_empty() => Some(batch),
            _ => None,
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads up to `batch` events after `from` of `types` (`None`: every event).
async fn read_batch(
    store: &dyn EventStore,
    types: Option<&'static [&'static str]>,
    from: Checkpoint,
    batch: usize,
) -> Result<Batch, ProjectionError> {
    Ok(match types {
        Some(types) => {
            let read = store.read_types(from, batch, types).await?;
            Batch { from, events: read.events, scanned: read.scanned, held_back: read.held_back }
        }
        None => {
            let events = store.read_all(from, batch, &ReadFilter::All).await?;
            let scanned = events.last().map_or(from, |e| e.checkpoint);
            Batch { from, events, scanned, held_back: false }
        }
    })
}

/// What one step did.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// Events applied (or 1 when only the scanned mark moved).
    applied: usize,
    /// Committed events lie past what the step could see (see `cardap_store::TypedRead::held_back`).
    held_back: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read model database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("read model database error: {0}")]
    Database(#[source] sqlx::Error),
    /// An event this projection cannot understand: it stops rather than build a wrong view.
    #[error("projection {projection} cannot apply event {event}: {reason}")]
    Event { projection: &'static str, event: String, reason: String },
    #[error("timed out waiting for the read models to catch up")]
    Timeout,
    /// The audit key or the head file (the audit chain's signed heads).
    #[error(transparent)]
    AuditKey(#[from] crate::audit::AuditKeyError),
}

impl ProjectionError {
    pub fn from_sqlx(e: sqlx::Error) -> Self {
        match StoreError::from_sqlx(e) {
            StoreError::Unavailable(e) => ProjectionError::Unavailable(e),
            StoreError::Database(e) => ProjectionError::Database(e),
            other => ProjectionError::Store(other),
        }
    }

    pub(crate) fn event(projection: &'static str, event: &RecordedEvent, reason: impl std::fmt::Display) -> Self {
        ProjectionError::Event {
            projection,
            event: format!("{} {} v{}", event.event_id, event.event_type, event.event_version),
            reason: reason.to_string(),
        }
    }
}

/// One read model.
#[async_trait]
pub trait Projection: Send + Sync + std::fmt::Debug {
    /// Stable name; also the checkpoint's key.
    fn name(&self) -> &'static str;
    /// Applies one event inside the runner's transaction. Events of other aggregates are ignored.
    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError>;
    /// Applies a batch of events, in order, inside the runner's transaction: by default one by one.
    async fn apply_batch(&self, conn: &mut AnyConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            self.apply(conn, event).await?;
        }
        Ok(())
    }
    /// The tables this read model owns and nothing else writes.
    fn tables(&self) -> &'static [&'static str];
    /// Deletes every row of this read model (rebuild in place).
    async fn reset(&self, conn: &mut AnyConnection) -> Result<(), ProjectionError> {
        for table in self.tables() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(&mut *conn)
                .await
                .map_err(ProjectionError::from_sqlx)?;
        }
        Ok(())
    }
    /// Indexes and keys (by name) of its tables that none of its statements needs while a blue/green rebuild
    /// builds it (no lookup goes through them, no `ON CONFLICT` names them): the rebuild creates them once the rows
    /// are in, sorted in one pass, instead of inserting every row into them at random.
    fn built_after_load(&self) -> &'static [&'static str] {
        &[]
    }
    /// The stream types whose events it applies; the runner then reads only those (`None`: every event).
    fn stream_types(&self) -> Option<&'static [&'static str]> {
        None
    }
}

/// How far a runner has got: lets a request wait until its own write is visible (read-your-writes).
#[derive(Debug, Clone)]
pub struct Progress(watch::Receiver<Checkpoint>);

impl Progress {
    /// Waits until the projection has applied everything up to `checkpoint`, or `timeout`.
    pub async fn wait_for(&mut self, checkpoint: Checkpoint, timeout: Duration) -> Result<(), ProjectionError> {
        match tokio::time::timeout(timeout, self.0.wait_for(|c| *c >= checkpoint)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ProjectionError::Timeout),
        }
    }

    pub fn current(&self) -> Checkpoint {
        *self.0.borrow()
    }

    /// Waits until the projection has got past `seen`, or `max`: true when it has (its rows for what lies past
    /// `seen` are committed by then).
    pub async fn wait_past(&mut self, seen: Checkpoint, max: Duration) -> bool {
        matches!(tokio::time::timeout(max, self.0.wait_for(|c| *c > seen)).await, Ok(Ok(_)))
    }
}

/// Runs one projection.
#[derive(Debug)]
pub struct ProjectionRunner {
    store: Arc<dyn EventStore>,
    pool: AnyPool,
    projection: Arc<dyn Projection>,
    progress: watch::Sender<Checkpoint>,
    /// Events read per transaction.
    batch: usize,
    /// How far this runner has looked through the log without anything to apply, and the stored checkpoint that
    /// was based on: when the stored checkpoint changes (another node, a rebuild by another process), it is
    /// forgotten.
    scanned: std::sync::Mutex<(Checkpoint, Checkpoint)>,
}

impl ProjectionRunner {
    pub fn new(store: Arc<dyn EventStore>, pool: AnyPool, projection: Arc<dyn Projection>) -> Self {
        ProjectionRunner {
            store,
            pool,
            projection,
            progress: watch::channel(Checkpoint::START).0,
            batch: BATCH,
            scanned: std::sync::Mutex::new((Checkpoint::START, Checkpoint::START)),
        }
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The same runner reading `batch` events per transaction.
    pub(crate) fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    pub fn progress(&self) -> Progress {
        Progress(self.progress.subscribe())
    }

    /// Follows the log until `shutdown` resolves. Errors are logged and retried with backoff: a database
    /// restart pauses the view, it does not stop it.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut wake = self.store.wakeups();
        let mut backoff = Duration::from_millis(100);
        let mut held_back_poll = HELD_BACK_POLL;
        let mut ahead = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            wake.mark_seen();
            match self.step(&mut ahead).await {
                Ok(Step { applied: 0, held_back }) => {
                    backoff = Duration::from_millis(100);
                    let nap = if held_back { held_back_poll } else { POLL };
                    held_back_poll = if held_back { (held_back_poll * 2).min(POLL) } else { HELD_BACK_POLL };
                    tokio::select! {
                        _ = wake.wait(nap) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    held_back_poll = HELD_BACK_POLL;
                }
                Err(e) => {
                    tracing::warn!(projection = self.name(), error = %e, "projection paused; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Follows the read model built by another process (`cardap project`) instead of building it: its progress is
    /// the stored checkpoint, or past it when nothing of its stream types follows it, so read-your-writes and the
    /// lag in `/readyz` and `/metrics` work on a node that runs no projection.
    pub async fn watch(self, mut shutdown: watch::Receiver<bool>) {
        let mut wake = self.store.wakeups();
        loop {
            if *shutdown.borrow() {
                return;
            }
            wake.mark_seen();
            match self.built_elsewhere().await {
                Ok(reached) => {
                    self.progress.send_if_modified(|c| {
                        let changed = *c != reached;
                        *c = reached;
                        changed
                    });
                }
                Err(e) => tracing::warn!(projection = self.name(), error = %e, "cannot read the read model's progress"),
            }
            tokio::select! {
                _ = wake.wait(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// How far the read model stands, as another process built it.
    async fn built_elsewhere(&self) -> Result<Checkpoint, ProjectionError> {
        let stored = self.stored_checkpoint().await?;
        let Some(types) = self.projection.stream_types() else {
            return Ok(stored);
        };
        let next = self.store.read_types(stored, 1, types).await?;
        Ok(if next.events.is_empty() { stored.max(next.scanned) } else { stored })
    }

    /// Applies everything committed before this call, then returns the checkpoint reached. Waits (at most
    /// [`CATCH_UP_TIMEOUT`] without progress) for events whose delivery an older open transaction still holds
    /// back; a long catch-up (a rebuild of millions of events) goes on as long as it moves.
    pub async fn catch_up(&self) -> Result<Checkpoint, ProjectionError> {
        let head = self.store.head().await?;
        self.catch_up_to(head).await
    }

    /// Applies everything up to `target` (at least), then returns the checkpoint reached; gives up after
    /// [`CATCH_UP_TIMEOUT`] without progress.
    pub(crate) async fn catch_up_to(&self, target: Checkpoint) -> Result<Checkpoint, ProjectionError> {
        let mut wake = self.store.wakeups();
        let mut deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        let mut ahead = None;
        loop {
            wake.mark_seen();
            let applied = self.step(&mut ahead).await?.applied;
            let reached = *self.progress.borrow();
            if reached >= target {
                return Ok(reached);
            }
            if applied > 0 {
                deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
            } else if tokio::time::Instant::now() >= deadline {
                return Err(ProjectionError::Timeout);
            } else {
                wake.wait(Duration::from_millis(20)).await;
            }
        }
    }

    /// Empties the read model and moves its checkpoint back to the start; the runners then rebuild it.
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await.map_err(ProjectionError::from_sqlx)?;
        self.projection.reset(&mut tx).await?;
        sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
            .bind(self.name())
            .execute(&mut *tx)
            .await
            .map_err(ProjectionError::from_sqlx)?;
        tx.commit().await.map_err(ProjectionError::from_sqlx)?;
        *self.scanned.lock().unwrap_or_else(|p| p.into_inner()) = (Checkpoint::START, Checkpoint::START);
        self.progress.send_replace(Checkpoint::START);
        tracing::info!(projection = self.name(), "read model reset; rebuilding from the event log");
        Ok(())
    }

    /// One batch: read after the stored checkpoint, apply in one transaction. Returns how many were applied, and
    /// whether committed events are still held back. After a full batch it starts reading the next one into
    /// `ahead`, which the next step uses if it starts where that read did ([`ReadAhead::starting_at`]).
    async fn step(&self, ahead: &mut Option<ReadAhead>) -> Result<Step, ProjectionError> {
        // Where this node has looked through the log without finding anything to apply (not stored: a restart
        // only looks through it again).
        let stored_now = self.stored_checkpoint().await?;
        let stored = {
            let (base, scanned) = *self.scanned.lock().unwrap_or_else(|p| p.into_inner());
            // Only while the stored checkpoint is exactly the one the mark was made on: if another runner moved
            // it (or a rebuild reset it), this runner's view of what it applied is stale; look again from there.
            if stored_now == base { stored_now.max(scanned) } else { stored_now }
        };
        let types = self.projection.stream_types();
        let prefetched = match ahead.take() {
            Some(read) => read.starting_at(stored).await,
            None => None,
        };
        let batch = match prefetched {
            Some(batch) => batch,
            None => read_batch(self.store.as_ref(), types, stored, self.batch).await?,
        };
        let Batch { events, scanned, held_back, .. } = batch;
        let Some(last) = events.last().map(|e| e.checkpoint) else {
            *self.scanned.lock().unwrap_or_else(|p| p.into_inner()) = (stored_now, scanned);
            self.progress.send_if_modified(|c| {
                let changed = *c != scanned;
                *c = scanned;
                changed
            });
            return Ok(Step { applied: usize::from(scanned > stored), held_back });
        };
        let mut tx = self.pool.begin().await.map_err(ProjectionError::from_sqlx)?;
        if tx.backend_name().eq_ignore_ascii_case("PostgreSQL") {
            // A read model is derived from the durable log and its checkpoint commits with its rows: a crash that
            // loses this commit loses both, and the batch is applied again. So it need not wait for its WAL flush
            // (an fsync per batch per read model, in the way of every reader waiting for it).
            sqlx::query("SELECT set_config('synchronous_commit', 'off', true)")
                .execute(&mut *tx)
                .await
                .map_err(ProjectionError::from_sqlx)?;
        }
        // A full batch means a backlog: the next one is read meanwhile (one batch ahead at most: a server catching
        // up on a bulk import keeps at most two batches per read model in memory).
        if events.len() >= self.batch {
            let (store, next, size) = (self.store.clone(), last.max(scanned), self.batch);
            *ahead = Some(ReadAhead(tokio::spawn(async move { read_batch(store.as_ref(), types, next, size).await })));
        }
        // Lock the checkpoint row and re-read it: another node may have applied this batch meanwhile.
        let locked = lock_checkpoint(&mut tx, self.name()).await?;
        let fresh: Vec<&RecordedEvent> = events.iter().filter(|e| e.checkpoint > locked).collect();
        let applied = fresh.len();
        self.projection.apply_batch(&mut tx, &fresh).await?;
        if last > locked {
            sqlx::query(
                "UPDATE projection_checkpoints SET transaction_id = $1, position = $2, updated_at = $3 WHERE name = $4",
            )
            .bind(to_i64(last.transaction))
            .bind(to_i64(last.position))
            .bind(crate::now_text())
            .bind(self.name())
            .execute(&mut *tx)
            .await
            .map_err(ProjectionError::from_sqlx)?;
        }
        tx.commit().await.map_err(ProjectionError::from_sqlx)?;
        // Everything of its types up to `scanned` was in this batch (or applied before).
        let reached = last.max(locked).max(scanned);
        *self.scanned.lock().unwrap_or_else(|p| p.into_inner()) = (last.max(locked), reached);
        self.progress.send_replace(reached);
        Ok(Step { applied: applied.max(usize::from(last > stored)), held_back })
    }

    async fn stored_checkpoint(&self) -> Result<Checkpoint, ProjectionError> {
        let row = sqlx::query("SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(self.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(ProjectionError::from_sqlx)?;
        row.map(|r| checkpoint_of(&r)).transpose().map(Option::unwrap_or_default)
    }
}

/// Locks (PostgreSQL: row lock until commit; SQLite: the write lock) and returns the stored checkpoint,
/// creating the row at the start if the projection never ran.
pub(crate) async fn lock_checkpoint(
    conn: &mut AnyConnection,
    name: &'static str,
) -> Result<Checkpoint, ProjectionError> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at) VALUES ($1, 0, 0, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(crate::now_text())
    .execute(&mut *conn)
    .await
    .map_err(ProjectionError::from_sqlx)?;
    let row =
        sqlx::query("UPDATE projection_checkpoints SET name = name WHERE name = $1 RETURNING transaction_id, position")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(ProjectionError::from_sqlx)?;
    checkpoint_of(&row)
}

fn checkpoint_of(row: &sqlx::any::AnyRow) -> Result<Checkpoint, ProjectionError> {
    let tx: i64 = row.try_get("transaction_id").map_err(ProjectionError::Database)?;
    let pos: i64 = row.try_get("position").map_err(ProjectionError::Database)?;
    Ok(Checkpoint { transaction: u64::try_from(tx).unwrap_or(0), position: u64::try_from(pos).unwrap_or(0) })
}

fn to_i64(v: u64) -> i64 {
    // Checkpoints come from the store, which reads them from BIGINT columns.
    i64::try_from(v).unwrap_or(i64::MAX)
}
