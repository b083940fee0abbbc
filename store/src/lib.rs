//! The cardap event store: every change in cardap is an event appended here, and every view is built from here.
//!
//! Owns one object-safe trait, [`EventStore`], with a PostgreSQL and a SQLite implementation that pass one
//! shared contract suite (`tests/contract.rs`), the embedded migrations of both backends, and the wake-ups that
//! tell waiting readers that something was appended. It knows nothing of any aggregate: payloads are JSON.
//!
//! Guarantees (both backends):
//! - `append` is atomic and checks the expected version; a mismatch is [`StoreError::Conflict`] and writes nothing.
//! - An append carrying a command id that was already applied returns the first outcome and writes nothing.
//! - `read_all` walks one global order that never skips an event whose transaction committed late.
//!
//! [`SealedEventStore`] decorates either store with crypto-shredding: the `personal` part of payloads is sealed
//! under a per-subject data key from the [`KeyVault`], and destroying that key erases it wherever events go.
//!
//! Beside the events: the read access log ([`AccessLogStore`]), append-only rows of who read which residents.

mod access_log;
mod ceremonies;
mod credentials;
mod database;
mod login;
mod postgres;
mod sealed;
mod snapshots;
mod sqlite;
mod types;
mod vault;
mod wakeup;
mod webhooks;

pub use access_log::{AccessLogStore, NewReadAccess, ReadAccessFilter, ReadAccessRow, ReadAlertRow};
pub use ceremonies::CeremonyStore;
pub use credentials::{Companion, CredentialStore, SessionRow};
pub use database::{Backend, Database, redact, sqlite_file};
pub use login::{CodeRow, LoginGrants, Taken};
pub use postgres::PostgresEventStore;
pub use sealed::{SEALING_SCHEME, SealedEventStore, personal_subject};
pub use snapshots::Snapshot;
pub use sqlite::SqliteEventStore;
pub use types::{
    AppendOutcome, BatchOutcome, CausationId, Checkpoint, CommandId, CorrelationId, EventId, ExpectedVersion, Metadata,
    NewEvent, OpenTransaction, Payload, ReadFilter, RecordedEvent, StoreHealth, StoredEvent, StreamAppend, StreamId,
    StreamIdError, TypedRead,
};
pub use vault::{DataKey, KEY_CACHE_CAPACITY, KeyVault, MasterKey, MasterKeyError, read_or_create_private_file};
pub use wakeup::Wakeups;
pub use webhooks::{PushRow, WebhookStore};

use async_trait::async_trait;
use futures_util::stream::{BoxStream, StreamExt};

/// Failures of the event store, as the layers above need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected version: someone else changed it first. Nothing was written.
    #[error("stream {stream} is at version {actual}, expected {expected}")]
    Conflict { stream: StreamId, expected: ExpectedVersion, actual: u64 },
    /// The database cannot be reached right now (down, restarting, pool exhausted). Safe to retry later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A stored row that this build cannot read.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The subject's data key was destroyed (its personal data erased): no personal data can be recorded for it
    /// again. Nothing was written.
    #[error("the personal data of {subject} was erased: no personal data can be recorded for it any more")]
    Erased { subject: StreamId },
    /// The configured master key is not the one this database's data keys are wrapped with.
    #[error(
        "the configured master key cannot unwrap this database's personal data keys: it is not the master key the \
         database was set up with (check the key file or setting)"
    )]
    WrongMasterKey,
    /// A cryptographic primitive failed (e.g. the system random generator). Nothing was written.
    #[error("cryptography failed: {0}")]
    Crypto(&'static str),
}

impl StoreError {
    /// Sorts a driver error into "try again later" and "something is wrong".
    pub fn from_sqlx(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(err),
            sqlx::Error::Database(ref db) if db.code().is_some_and(|c| c.starts_with("57P") || c.starts_with("08")) => {
                // 57P01 admin shutdown, 57P03 cannot connect now, 08xxx connection exceptions.
                StoreError::Unavailable(err)
            }
            sqlx::Error::Database(ref db) if is_sqlite_busy(db.code().as_deref()) => StoreError::Unavailable(err),
            other => StoreError::Database(other),
        }
    }
}

fn is_sqlite_busy(code: Option<&str>) -> bool {
    // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
    code.and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// The event store. Object-safe so the server can hold an `Arc<dyn EventStore>` for either backend.
#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Appends `events` to `stream` atomically if it is at `expected`.
    ///
    /// With a command id in `metadata` that was already applied, returns that first outcome
    /// (`already_applied = true`) and writes nothing.
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
    ) -> Result<AppendOutcome, StoreError>;

    /// Appends to several streams atomically: every stream must be at its expected version, or nothing is
    /// written ([`StoreError::Conflict`] names the first stream that was not). One command id covers the batch.
    /// Per-stream order in the global order holds as for single appends.
    async fn append_many(&self, appends: Vec<StreamAppend>, metadata: &Metadata) -> Result<BatchOutcome, StoreError> {
        self.append_with(appends, vec![], metadata).await
    }

    /// [`EventStore::append_many`] with writes that are not events but must commit with them (a password hash, the
    /// end of sessions): all of it commits in one transaction, or nothing does. A retry of an applied command
    /// writes neither events nor companions.
    async fn append_with(
        &self,
        appends: Vec<StreamAppend>,
        companions: Vec<Companion>,
        metadata: &Metadata,
    ) -> Result<BatchOutcome, StoreError>;

    /// The outcome of an already applied command, if any.
    async fn command_outcome(&self, command: CommandId) -> Result<Option<AppendOutcome>, StoreError>;

    /// The events of one stream with `version >= from_version`, in version order.
    async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Every event of each of `streams`, grouped by stream and in version order within each (the groups in no
    /// particular order): for a reader that needs many whole streams at once (a feed page builds its items from
    /// the streams of every resident and card it names). This default reads them one by one.
    async fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut all = Vec::new();
        for stream in streams {
            all.extend(self.read_stream(stream, 1).await?);
        }
        Ok(all)
    }

    /// The latest saved [`Snapshot`] of `stream`, if any (of whatever shape: the caller checks its `kind`).
    async fn snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError>;

    /// Saves `snapshot` of `stream` unless a newer one of the same shape is saved. Call it only after the events
    /// it folds committed, and only for streams whose state holds no personal data (it is stored in clear).
    async fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Up to `limit` events after `after` in global order, optionally only those of one municipality or operator.
    /// Never skips an event that commits later than an event already returned.
    async fn read_all(
        &self,
        after: Checkpoint,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events after `after` in global order as stored ([`StoredEvent`]: the payload's JSON text,
    /// unparsed), streamed as the database sends them (one statement; the caller decodes while the database still
    /// sends): for a reader of every event that needs no parsed payload (the audit chain). Never skips a
    /// late-committing event, as `read_all`. This default reads them with `read_all` and writes each payload back
    /// out as text.
    fn stored_events(&self, after: Checkpoint, limit: usize) -> BoxStream<'_, Result<StoredEvent, StoreError>> {
        futures_util::stream::once(async move { self.read_all(after, limit, &ReadFilter::All).await })
            .flat_map(|page| {
                let page: Vec<Result<StoredEvent, StoreError>> = match page {
                    Ok(events) => events.into_iter().map(|e| Ok(StoredEvent::from(e))).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures_util::stream::iter(page)
            })
            .boxed()
    }

    /// Up to `limit` events of the given stream types after `after`, and how far the log was looked through, so
    /// that a reader interested in a few aggregates (a projection) neither ships nor parses the others. Never
    /// skips a late-committing event, as `read_all`. This default reads everything and filters.
    async fn read_types(
        &self,
        after: Checkpoint,
        limit: usize,
        stream_types: &[&'static str],
    ) -> Result<TypedRead, StoreError> {
        let events = self.read_all(after, limit, &ReadFilter::All).await?;
        let scanned = events.last().map_or(after, |e| e.checkpoint);
        let events = events.into_iter().filter(|e| stream_types.contains(&e.stream_type.as_str())).collect();
        Ok(TypedRead { events, scanned, held_back: false })
    }

    /// How many committed events lie after `after`, counting at most `cap`, whether or not a reader may see them
    /// yet (an older open transaction holds readers back on PostgreSQL): how far behind a reader at `after` is.
    /// This default reads what a reader may see.
    async fn count_after(&self, after: Checkpoint, cap: u64) -> Result<u64, StoreError> {
        let limit = usize::try_from(cap).unwrap_or(usize::MAX);
        Ok(self.read_all(after, limit, &ReadFilter::All).await?.len() as u64)
    }

    /// The place of the last committed event in the global order (`Checkpoint::START` when empty). A reader
    /// that has reached it has seen everything committed before this call (once older transactions finish).
    async fn head(&self) -> Result<Checkpoint, StoreError>;

    /// A receiver that wakes when events may have been appended (by this process or, on PostgreSQL, any node).
    fn wakeups(&self) -> Wakeups;

    /// Liveness of the database and the figures an operator watches.
    async fn health(&self) -> Result<StoreHealth, StoreError>;
}

pub(crate) fn corrupt(e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative number {v} in the event store")))
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("number {v} too large for the event store")))
}
