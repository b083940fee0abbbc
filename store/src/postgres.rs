//! The PostgreSQL event store.
//!
//! An append is one SQL statement (one round trip, atomic in autocommit): it checks the command id, reads the
//! stream's version, checks the expected version, inserts the events with `unnest` and records the command.
//! Because the statement's transaction gets its xid only when it inserts, after its snapshot saw the previous
//! version committed, versions of one stream are also in xid order: the global order
//! `(transaction_id, global_position)` keeps per-stream order. A multi-stream append (`append_many`) is one
//! set-based statement too ([`APPEND_BATCH`]), for the same reason.
//!
//! Readers take only rows of transactions older than the oldest running one (`pg_snapshot_xmin`), so a late
//! commit delays an event but is never skipped. Wake-ups: a background task sends `NOTIFY cardap_events` after
//! local appends (coalesced, off the append path, so commits are not serialized by the notify lock) and a
//! listener task on its own tokio-postgres connection wakes local readers on any node's notification.
//!
//! Length: the two append statements (one stream, many streams) with the order argument they rely on, the
//! companion transaction, the reads, and the NOTIFY/LISTEN wake-ups; splitting them would separate SQL from the
//! reasoning that makes it correct.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cardap_domain::{MunicipalityCode, OperatorKey};
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::credentials::{self, Companion};
use crate::types::{
    AppendOutcome, BatchOutcome, Checkpoint, CommandId, Envelope, EventId, ExpectedVersion, Metadata, NewEvent,
    ReadFilter, RecordedEvent, StoreHealth, StoredEvent, StreamId,
};
use crate::types::{OpenTransaction, Payload, StreamAppend, TypedRead};
use crate::wakeup::{WakeupSender, Wakeups};
use crate::{EventStore, Snapshot, StoreError, corrupt, to_i64, to_u64};

const CHANNEL: &str = "cardap_events";

/// How long the notifier waits to gather appends into one NOTIFY.
const NOTIFY_COALESCE: Duration = Duration::from_millis(2);

/// How many times an `ExpectedVersion::Any` append retries when another writer took the same version.
const ANY_RETRIES: usize = 100;

/// One append in one statement. The command id goes on the last event; its partial unique index
/// (`events_command_key`) makes a concurrent duplicate fail with 23505, answered with the first outcome.
const APPEND: &str = r#"
WITH cur AS (
    SELECT coalesce(max(version), 0)::bigint AS v FROM events WHERE stream_id = $2
),
go AS (
    SELECT v FROM cur WHERE ($4::bigint IS NULL OR v = $4)
),
ins AS (
    INSERT INTO events (event_id, stream_id, stream_type, version, municipality, operator_id,
                        event_type, event_version, payload, metadata, command_id)
    SELECT e.event_id, $2, $3, go.v + e.ord, $5, $6, e.event_type, e.event_version, e.payload::json, $7::json,
           CASE WHEN e.ord = $12 THEN $1::uuid END
    FROM go, unnest($8::uuid[], $9::text[], $10::int4[], $11::text[])
             WITH ORDINALITY AS e(event_id, event_type, event_version, payload, ord)
    RETURNING version, global_position, transaction_id
)
SELECT cur.v AS current_version, count(ins.version) AS n, max(ins.version) AS last_version,
       max(ins.global_position) AS last_position, max(ins.transaction_id::text::bigint) AS tx
FROM cur LEFT JOIN ins ON true GROUP BY cur.v
"#;

/// A whole multi-stream append in one statement (autocommit). Per-entry arrays `$1..$3` are in the caller's
/// order: stream id, expected version (NULL for `Any`) and `prior`, the number of events that earlier entries
/// of the same stream append first (a stream named twice is applied in the caller's order, as on SQLite).
/// Per-event arrays `$4..$10` hold the batch's events sorted by stream (see `append_many_once`), each with its
/// offset in its stream (`prior` + 1..n). `cur` reads every stream's version once (one index probe per
/// distinct stream); `bad` is the first entry, in the caller's order, that is not at its expected version: if
/// there is one nothing is inserted. The command id goes on event `$15`, the batch's very last.
///
/// Why no `cardap_assert_stream_order` guard (migration 0003, kept for the record): this is ONE statement in
/// autocommit, so its transaction gets its xid only at the first insert, after the statement's snapshot saw
/// every stream's previous version committed. Those versions' transactions got their xids before they
/// committed, hence before ours: as for the single-stream `APPEND`, per-stream order holds in the global order
/// `(transaction_id, global_position)`.
const APPEND_BATCH: &str = r#"
WITH req AS (
    SELECT r.stream_id, r.expected, r.prior, r.idx
    FROM unnest($1::text[], $2::int8[], $3::int8[]) WITH ORDINALITY AS r(stream_id, expected, prior, idx)
),
cur AS (
    SELECT s.stream_id, c.v
    FROM (SELECT DISTINCT stream_id FROM req) s
    CROSS JOIN LATERAL (
        SELECT coalesce(max(version), 0)::bigint AS v FROM events WHERE events.stream_id = s.stream_id
    ) c
),
bad AS (
    SELECT req.idx, cur.v + req.prior AS actual
    FROM req JOIN cur USING (stream_id)
    WHERE req.expected IS NOT NULL AND req.expected <> cur.v + req.prior
    ORDER BY req.idx LIMIT 1
),
ins AS (
    INSERT INTO events (event_id, stream_id, stream_type, version, municipality, operator_id,
                        event_type, event_version, payload, metadata, command_id)
    SELECT e.event_id, e.stream_id, e.stream_type, cur.v + e.off, $11, $12, e.event_type, e.event_version,
           e.payload::json, $13::json, CASE WHEN e.ord = $15 THEN $14::uuid END
    FROM unnest($4::text[], $5::text[], $6::int8[], $7::uuid[], $8::text[], $9::int4[], $10::text[])
             WITH ORDINALITY AS e(stream_id, stream_type, off, event_id, event_type, event_version, payload, ord)
         JOIN cur USING (stream_id)
    WHERE NOT EXISTS (SELECT 1 FROM bad)
    ORDER BY e.ord
    RETURNING global_position, transaction_id
)
SELECT (SELECT array_agg(cur.v ORDER BY req.idx) FROM req JOIN cur USING (stream_id)) AS current_versions,
       (SELECT idx FROM bad) AS bad_index,
       (SELECT actual FROM bad) AS bad_actual,
       (SELECT count(*) FROM ins) AS n,
       (SELECT max(global_position) FROM ins) AS last_position,
       (SELECT max(transaction_id::text::bigint) FROM ins) AS tx
"#;

/// The columns every read of events selects, in the order [`decode_row`] reads them, and `FROM events`. The
/// transaction id comes as the `xid8` itself, whose binary form is a 64-bit integer (no text conversion per row).
macro_rules! event_columns {
    () => {
        "SELECT global_position, transaction_id AS tx, event_id, stream_id, stream_type, version, municipality, \
         operator_id, event_type, event_version, payload::text, metadata, recorded_at FROM events"
    };
}

const READ_STREAM: &str = concat!(event_columns!(), " WHERE stream_id = $1 AND version >= $2 ORDER BY version");

/// Every event of several streams in one statement ([`EventStore::read_streams`]).
const READ_STREAMS: &str = concat!(event_columns!(), " WHERE stream_id = ANY($1) ORDER BY stream_id, version");

const READ_ALL: &str = concat!(
    event_columns!(),
    " \
     WHERE (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, global_position LIMIT $3"
);

const READ_TYPES: &str = concat!(
    event_columns!(),
    " \
     WHERE stream_type = ANY($4) AND (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, global_position LIMIT $3"
);

const READ_ONE_TYPE: &str = concat!(
    event_columns!(),
    " \
     WHERE stream_type = ($4::text[])[1] AND (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, global_position LIMIT $3"
);

const READ_MUNICIPALITY: &str = concat!(
    event_columns!(),
    " \
     WHERE municipality = $4 AND (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, global_position LIMIT $3"
);

const READ_OPERATOR: &str = concat!(
    event_columns!(),
    " \
     WHERE operator_id = $4 AND (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, global_position LIMIT $3"
);

/// An operator's history: by him or on his streams, optionally between two instants (`$6`, `$7`).
const READ_ACTOR: &str = concat!(
    event_columns!(),
    " \
     WHERE (operator_id = $4 OR stream_id = ANY($5)) \
       AND ($6::timestamptz IS NULL OR recorded_at >= $6) AND ($7::timestamptz IS NULL OR recorded_at < $7) \
       AND (transaction_id, global_position) > ($1::text::xid8, $2) \
       AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY transaction_id, global_position LIMIT $3"
);

/// The PostgreSQL event store. Cheap to clone; the background tasks stop when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PostgresEventStore {
    pool: PgPool,
    wake: WakeupSender,
    appended: Arc<Notify>,
    _tasks: Arc<TaskGuard>,
}

#[derive(Debug)]
struct TaskGuard(Vec<JoinHandle<()>>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl PostgresEventStore {
    /// Wraps a migrated pool. `listen_url` is the same database, for the LISTEN connection.
    /// Must be called inside a tokio runtime (it starts the notify and listen tasks).
    pub fn new(pool: PgPool, listen_url: &str) -> Self {
        let wake = WakeupSender::new();
        let appended = Arc::new(Notify::new());
        let notifier = tokio::spawn(notify_loop(pool.clone(), appended.clone()));
        let listener = tokio::spawn(listen_loop(listen_url.to_owned(), wake.clone()));
        PostgresEventStore { pool, wake, appended, _tasks: Arc::new(TaskGuard(vec![notifier, listener])) }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn append_once(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: &[NewEvent],
        metadata: &Metadata,
    ) -> Result<AppendOutcome, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
        append_statement(&mut conn, stream, expected, events, metadata).await
    }

    /// Appends inside a transaction that stays open for `hold` before it commits: a slow writer whose events
    /// get their positions early and become visible late. For the contract suite and the benchmark.
    pub async fn append_and_hold(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
        hold: Duration,
    ) -> Result<AppendOutcome, StoreError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        let outcome = append_statement(&mut tx, stream, expected, &events, metadata).await?;
        tokio::time::sleep(hold).await;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        self.wake.wake();
        Ok(outcome)
    }

    /// One attempt at a multi-stream append: the command check, then [`APPEND_BATCH`], both in autocommit; with
    /// companions, all three in one transaction (its xid is still assigned at the first insert, after the
    /// statement's snapshot, so the order argument of [`APPEND_BATCH`] holds as it does for `append_and_hold`).
    async fn append_many_once(
        &self,
        appends: &[StreamAppend],
        companions: &[Companion],
        metadata: &Metadata,
    ) -> Result<BatchOutcome, StoreError> {
        if companions.is_empty() {
            let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
            return append_many_on(&mut conn, appends, metadata).await;
        }
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        let outcome = append_many_on(&mut tx, appends, metadata).await?;
        if outcome.already_applied {
            return Ok(outcome);
        }
        credentials::write_postgres(&mut tx, companions).await?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(outcome)
    }

    async fn current_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let v: i64 = sqlx::query_scalar("SELECT coalesce(max(version), 0)::bigint FROM events WHERE stream_id = $1")
            .bind(stream.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        to_u64(v)
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
    ) -> Result<AppendOutcome, StoreError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.append_once(stream, expected, &events, metadata).await {
                Ok(outcome) => {
                    if !outcome.already_applied && outcome.checkpoint != Checkpoint::START {
                        self.wake.wake();
                        self.appended.notify_one();
                    }
                    return Ok(outcome);
                }
                Err(StoreError::Database(sqlx::Error::Database(db))) if db.code().as_deref() == Some("23505") => {
                    match db.constraint() {
                        // The same command committed concurrently: its outcome is the answer.
                        Some("events_command_key") => {
                            if let Some(command) = metadata.command_id
                                && let Some(outcome) = self.command_outcome(command).await?
                            {
                                return Ok(outcome);
                            }
                            return Err(StoreError::Corrupt("duplicate command without outcome".into()));
                        }
                        // Another writer took the version between our read and our insert.
                        Some("events_stream_version_key") => {
                            if expected.required().is_some() || attempts >= ANY_RETRIES {
                                let actual = self.current_version(stream).await?;
                                return Err(StoreError::Conflict { stream: stream.clone(), expected, actual });
                            }
                        }
                        _ => return Err(StoreError::Database(sqlx::Error::Database(db))),
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn append_with(
        &self,
        appends: Vec<StreamAppend>,
        companions: Vec<Companion>,
        metadata: &Metadata,
    ) -> Result<BatchOutcome, StoreError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.append_many_once(&appends, &companions, metadata).await {
                Ok(outcome) => {
                    if !outcome.already_applied && outcome.checkpoint != Checkpoint::START {
                        self.wake.wake();
                        self.appended.notify_one();
                    }
                    return Ok(outcome);
                }
                Err(StoreError::Database(sqlx::Error::Database(db))) => {
                    let retry = match (db.code().as_deref(), db.constraint()) {
                        // Serialization failure or deadlock (not expected from the one-statement batch, whose
                        // events are inserted in stream order): both are safe to run again.
                        (Some("40001" | "40P01"), _) => true,
                        (Some("23505"), Some("events_command_key")) => {
                            if let Some(command) = metadata.command_id
                                && let Some(outcome) = self.command_outcome(command).await?
                            {
                                return Ok(BatchOutcome {
                                    stream_versions: vec![],
                                    checkpoint: outcome.checkpoint,
                                    already_applied: true,
                                });
                            }
                            false
                        }
                        // Another writer committed a version this batch meant to write. The next attempt reads
                        // the new versions: a conflict if a stream had an expected version (the statement names
                        // the first such stream in the caller's order), a fresh try if every stream said `Any`.
                        (Some("23505"), Some("events_stream_version_key")) => true,
                        _ => false,
                    };
                    if !retry || attempts >= ANY_RETRIES {
                        return Err(StoreError::Database(sqlx::Error::Database(db)));
                    }
                }
                Err(other) => return Err(other),
            }
        }
    }

    async fn command_outcome(&self, command: CommandId) -> Result<Option<AppendOutcome>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
        command_outcome_on(&mut conn, command).await
    }

    async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(READ_STREAM)
            .bind(stream.as_str())
            .bind(to_i64(from_version)?)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter().map(decode_row).collect()
    }

    async fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        if streams.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = streams.iter().map(StreamId::as_str).collect();
        decoded(sqlx::query(READ_STREAMS).bind(&ids), &self.pool).await
    }

    async fn snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        crate::snapshots::load_pg(&self.pool, stream).await
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        crate::snapshots::save_pg(&self.pool, stream, snapshot).await
    }

    async fn read_all(
        &self,
        after: Checkpoint,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let tx = after.transaction.to_string();
        let pos = to_i64(after.position)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match filter {
            ReadFilter::All => sqlx::query(READ_ALL).bind(tx).bind(pos).bind(limit),
            ReadFilter::Municipality(code) => {
                sqlx::query(READ_MUNICIPALITY).bind(tx).bind(pos).bind(limit).bind(code.as_str().to_owned())
            }
            ReadFilter::Operator(op) => sqlx::query(READ_OPERATOR).bind(tx).bind(pos).bind(limit).bind(op.as_uuid()),
            ReadFilter::Actor { operator, streams, since, until } => sqlx::query(READ_ACTOR)
                .bind(tx)
                .bind(pos)
                .bind(limit)
                .bind(operator.as_uuid())
                .bind(streams.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>())
                .bind(*since)
                .bind(*until),
        };
        decoded(query, &self.pool).await
    }

    fn stored_events(&self, after: Checkpoint, limit: usize) -> BoxStream<'_, Result<StoredEvent, StoreError>> {
        let position = match to_i64(after.position) {
            Ok(position) => position,
            Err(e) => return futures_util::stream::once(async move { Err(e) }).boxed(),
        };
        // The payload is already the text the `json` column keeps (a binary-coercible cast: no conversion).
        sqlx::query(READ_ALL)
            .bind(after.transaction.to_string())
            .bind(position)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch(&self.pool)
            .map(|row| {
                let row = row.map_err(StoreError::from_sqlx)?;
                Ok(decode_envelope(&row)?.stored(row.try_get(10).map_err(corrupt)?))
            })
            .boxed()
    }

    async fn read_types(
        &self,
        after: Checkpoint,
        limit: usize,
        stream_types: &[&'static str],
    ) -> Result<TypedRead, StoreError> {
        // Every transaction older than this xmin has finished: the query (whose own snapshot's xmin is at least
        // this) sees all their events, so when it returns less than a page, the log is looked through up to the
        // last possible event of the transaction just below it. Events of transactions from xmin on that have
        // committed are held back (an older one is still open): said in the same round trip, by looking for an
        // event in the gaps between the transactions still in progress (and below the snapshot's xmax). Not by
        // scanning from xmin: that visited every row the open transactions had written so far, all invisible,
        // on every poll of every runner (during an import, most of PostgreSQL's time).
        let (xmin, held_back): (i64, bool) = sqlx::query_as(
            "WITH snap AS (SELECT pg_current_snapshot() AS s), \
             busy AS (SELECT xid, coalesce(lead(xid) OVER (ORDER BY xid), pg_snapshot_xmax(s)) AS next \
                      FROM snap, pg_snapshot_xip(s) AS xid) \
             SELECT (SELECT pg_snapshot_xmin(s)::text::bigint FROM snap), \
                    EXISTS (SELECT 1 FROM busy WHERE EXISTS \
                      (SELECT 1 FROM events WHERE transaction_id > busy.xid AND transaction_id < busy.next))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        // One type (every projection): a range of `events_by_stream_type`, already in global order.
        let statement = if stream_types.len() == 1 { READ_ONE_TYPE } else { READ_TYPES };
        let query = sqlx::query(statement)
            .bind(after.transaction.to_string())
            .bind(to_i64(after.position)?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(stream_types);
        let events = decoded(query, &self.pool).await?;
        let last = events.last().map_or(after, |e| e.checkpoint);
        let below_xmin = Checkpoint { transaction: to_u64(xmin)?.saturating_sub(1), position: i64::MAX as u64 };
        let scanned = if events.len() < limit { last.max(below_xmin) } else { last };
        let held_back = held_back && events.len() < limit;
        Ok(TypedRead { events, scanned, held_back })
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        let row = sqlx::query(
            "SELECT transaction_id::text::bigint AS tx, global_position FROM events \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| {
            Ok(Checkpoint {
                transaction: to_u64(r.try_get("tx").map_err(corrupt)?)?,
                position: to_u64(r.try_get("global_position").map_err(corrupt)?)?,
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
    }

    async fn count_after(&self, after: Checkpoint, cap: u64) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM events \
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2) LIMIT $3) AS behind",
        )
        .bind(after.transaction.to_string())
        .bind(to_i64(after.position).unwrap_or(i64::MAX))
        .bind(to_i64(cap).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        to_u64(count)
    }

    fn wakeups(&self) -> Wakeups {
        self.wake.subscribe()
    }

    async fn health(&self) -> Result<StoreHealth, StoreError> {
        let row = sqlx::query(
            "SELECT pid, datname, application_name, state, \
             (extract(epoch FROM clock_timestamp() - xact_start) * 1000)::bigint AS age_ms \
             FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        let oldest = row
            .map(|r| {
                Ok::<_, sqlx::Error>(OpenTransaction {
                    pid: r.try_get("pid")?,
                    database: r.try_get("datname")?,
                    application: r.try_get::<Option<String>, _>("application_name")?.filter(|a| !a.is_empty()),
                    state: r.try_get("state")?,
                    age_ms: r.try_get::<Option<i64>, _>("age_ms")?.and_then(|ms| u64::try_from(ms).ok()).unwrap_or(0),
                })
            })
            .transpose()
            .map_err(crate::corrupt)?;
        Ok(StoreHealth {
            backend: "postgres",
            oldest_transaction_ms: oldest.as_ref().map(|t| t.age_ms),
            oldest_transaction: oldest,
        })
    }
}

/// The command check and [`APPEND_BATCH`] on `conn` (autocommit, or inside the caller's transaction).
async fn append_many_on(
    conn: &mut sqlx::PgConnection,
    appends: &[StreamAppend],
    metadata: &Metadata,
) -> Result<BatchOutcome, StoreError> {
    if let Some(command) = metadata.command_id
        && let Some(outcome) = command_outcome_on(&mut *conn, command).await?
    {
        return Ok(BatchOutcome { stream_versions: vec![], checkpoint: outcome.checkpoint, already_applied: true });
    }
    // Per entry, in the caller's order. A stream named twice is appended in the caller's order: `prior` counts
    // the events its earlier entries append first (the second entry's expected version counts them too).
    let lengths: Vec<i64> = appends.iter().map(|a| i64::try_from(a.events.len()).unwrap_or(i64::MAX)).collect();
    let mut prior = Vec::with_capacity(appends.len());
    let mut appended: HashMap<&str, i64> = HashMap::with_capacity(appends.len());
    for (append, len) in appends.iter().zip(&lengths) {
        let before = appended.entry(append.stream.as_str()).or_insert(0);
        prior.push(*before);
        *before = before.saturating_add(*len);
    }
    let entry_streams: Vec<&str> = appends.iter().map(|a| a.stream.as_str()).collect();
    let expected: Vec<Option<i64>> =
        appends.iter().map(|a| a.expected.required().map(to_i64).transpose()).collect::<Result<_, _>>()?;

    // The events, sorted by stream: concurrent batches then insert their (stream_id, version) keys in one
    // order, so one waits for the other (and retries on 23505) instead of deadlocking.
    let mut order: Vec<usize> = (0..appends.len()).collect();
    order.sort_by(|a, b| appends[*a].stream.cmp(&appends[*b].stream));
    let total = appends.iter().map(|a| a.events.len()).sum::<usize>();
    let mut streams = Vec::with_capacity(total);
    let mut stream_types = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    let mut types = Vec::with_capacity(total);
    let mut event_versions = Vec::with_capacity(total);
    let mut payloads = Vec::with_capacity(total);
    for index in order {
        let append = &appends[index];
        for (offset, event) in (prior[index] + 1..).zip(&append.events) {
            streams.push(append.stream.as_str());
            stream_types.push(append.stream.stream_type());
            offsets.push(offset);
            ids.push(event.event_id.as_uuid());
            types.push(event.event_type.as_str());
            event_versions.push(to_i32(event.event_version)?);
            payloads.push(event.payload.to_string());
        }
    }

    let row = sqlx::query(APPEND_BATCH)
        .bind(&entry_streams)
        .bind(&expected)
        .bind(&prior)
        .bind(&streams)
        .bind(&stream_types)
        .bind(&offsets)
        .bind(&ids)
        .bind(&types)
        .bind(&event_versions)
        .bind(&payloads)
        .bind(metadata.municipality.as_ref().map(|m| m.as_str()))
        .bind(metadata.operator.map(|o| o.as_uuid()))
        .bind(metadata.to_json().to_string())
        .bind(metadata.command_id.map(|c| c.as_uuid()))
        .bind(i64::try_from(total).unwrap_or(i64::MAX))
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?;

    let get = |name: &str| row.try_get::<Option<i64>, _>(name).map_err(corrupt);
    if let Some(bad) = get("bad_index")? {
        // Nothing was written. A retry of a command that went through meanwhile gets its first outcome.
        if let Some(command) = metadata.command_id
            && let Some(outcome) = command_outcome_on(&mut *conn, command).await?
        {
            return Ok(BatchOutcome { stream_versions: vec![], checkpoint: outcome.checkpoint, already_applied: true });
        }
        let append = usize::try_from(bad)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| appends.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("batch append named entry {bad}")))?;
        let actual = to_u64(get("bad_actual")?.unwrap_or(0))?;
        return Err(StoreError::Conflict { stream: append.stream.clone(), expected: append.expected, actual });
    }
    let current: Option<Vec<i64>> = row.try_get("current_versions").map_err(corrupt)?;
    let current = current.unwrap_or_default();
    if current.len() != appends.len() {
        return Err(StoreError::Corrupt("batch append returned the wrong number of versions".into()));
    }
    let stream_versions = current
        .iter()
        .zip(&prior)
        .zip(&lengths)
        .map(|((v, p), n)| to_u64(v.saturating_add(*p).saturating_add(*n)))
        .collect::<Result<Vec<_>, _>>()?;
    let written = get("n")?.unwrap_or(0);
    let checkpoint = if written == 0 {
        Checkpoint::START
    } else {
        let (Some(position), Some(txid)) = (get("last_position")?, get("tx")?) else {
            return Err(StoreError::Corrupt("batch append returned no positions".into()));
        };
        Checkpoint { transaction: to_u64(txid)?, position: to_u64(position)? }
    };
    Ok(BatchOutcome { stream_versions, checkpoint, already_applied: false })
}

/// Runs the one-statement append on `conn` (autocommit, or inside the caller's transaction).
async fn append_statement(
    conn: &mut sqlx::PgConnection,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[NewEvent],
    metadata: &Metadata,
) -> Result<AppendOutcome, StoreError> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id.as_uuid()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let versions: Vec<i32> = events.iter().map(|e| to_i32(e.event_version)).collect::<Result<_, _>>()?;
    let payloads: Vec<String> = events.iter().map(|e| e.payload.to_string()).collect();
    let required = expected.required().map(to_i64).transpose()?;

    let row = sqlx::query(APPEND)
        .bind(metadata.command_id.map(|c| c.as_uuid()))
        .bind(stream.as_str())
        .bind(stream.stream_type())
        .bind(required)
        .bind(metadata.municipality.as_ref().map(|m| m.as_str()))
        .bind(metadata.operator.map(|o| o.as_uuid()))
        .bind(metadata.to_json().to_string())
        .bind(&ids)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(i64::try_from(events.len()).unwrap_or(i64::MAX))
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?;

    let get_i64 = |name: &str| row.try_get::<Option<i64>, _>(name).map_err(corrupt);
    let current = to_u64(get_i64("current_version")?.unwrap_or(0))?;
    let written = get_i64("n")?.unwrap_or(0);
    if written == 0 {
        // Nothing written: a retry of a command that already went through is answered with its first outcome
        // (even when it came with a stale expected version); anything else is a conflict or an empty append.
        if let Some(command) = metadata.command_id
            && let Some(outcome) = command_outcome_on(&mut *conn, command).await?
        {
            return Ok(outcome);
        }
        if let Some(required) = expected.required()
            && required != current
        {
            return Err(StoreError::Conflict { stream: stream.clone(), expected, actual: current });
        }
        return Ok(AppendOutcome { stream_version: current, checkpoint: Checkpoint::START, already_applied: false });
    }
    let (Some(last), Some(tx), Some(pos)) = (get_i64("last_version")?, get_i64("tx")?, get_i64("last_position")?)
    else {
        return Err(StoreError::Corrupt("append returned no positions".into()));
    };
    Ok(AppendOutcome {
        stream_version: to_u64(last)?,
        checkpoint: Checkpoint { transaction: to_u64(tx)?, position: to_u64(pos)? },
        already_applied: false,
    })
}

async fn command_outcome_on(
    conn: &mut sqlx::PgConnection,
    command: CommandId,
) -> Result<Option<AppendOutcome>, StoreError> {
    let row = sqlx::query(
        "SELECT version, transaction_id::text::bigint AS tx, global_position FROM events WHERE command_id = $1",
    )
    .bind(command.as_uuid())
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::from_sqlx)?;
    row.map(|r| {
        Ok(AppendOutcome {
            stream_version: to_u64(r.try_get("version").map_err(corrupt)?)?,
            checkpoint: Checkpoint {
                transaction: to_u64(r.try_get("tx").map_err(corrupt)?)?,
                position: to_u64(r.try_get("global_position").map_err(corrupt)?)?,
            },
            already_applied: true,
        })
    })
    .transpose()
}

/// The events a query of [`event_columns!`] selects, each decoded as soon as it arrives: decoding a page overlaps
/// with PostgreSQL producing the rest of it (with `fetch_all`, the two took turns and each core idled meanwhile).
async fn decoded(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &PgPool,
) -> Result<Vec<RecordedEvent>, StoreError> {
    query.fetch(pool).map(|row| decode_row(&row.map_err(StoreError::from_sqlx)?)).try_collect().await
}

/// Decodes a row of [`event_columns!`] by position (the hot path of read_all).
fn decode_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let payload: String = row.try_get_unchecked(10).map_err(corrupt)?;
    Ok(decode_envelope(row)?.recorded(Payload::from_text(payload)))
}

/// Everything of such a row but its payload (column 10). The columns are read unchecked: their types are fixed by
/// the store's own queries above, and checking each cell's type was a tenth of reading the log.
fn decode_envelope(row: &PgRow) -> Result<Envelope, StoreError> {
    let municipality: Option<String> = row.try_get_unchecked(6).map_err(corrupt)?;
    let municipality = municipality
        .map(|m| MunicipalityCode::parse(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("municipality: {e}")))?;
    let operator: Option<Uuid> = row.try_get_unchecked(7).map_err(corrupt)?;
    let sqlx::types::Json(mut metadata): sqlx::types::Json<Metadata> = row.try_get_unchecked(11).map_err(corrupt)?;
    metadata.municipality = municipality;
    metadata.operator = operator.map(OperatorKey::from_uuid);
    let event_version: i32 = row.try_get_unchecked(9).map_err(corrupt)?;
    Ok(Envelope {
        event_id: EventId::from_uuid(row.try_get_unchecked(2).map_err(corrupt)?),
        stream_id: StreamId::from_stored(row.try_get_unchecked(3).map_err(corrupt)?),
        stream_type: row.try_get_unchecked(4).map_err(corrupt)?,
        version: to_u64(row.try_get_unchecked(5).map_err(corrupt)?)?,
        checkpoint: Checkpoint {
            transaction: to_u64(row.try_get_unchecked(1).map_err(corrupt)?)?,
            position: to_u64(row.try_get_unchecked(0).map_err(corrupt)?)?,
        },
        event_type: row.try_get_unchecked(8).map_err(corrupt)?,
        event_version: u32::try_from(event_version).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        metadata,
        recorded_at: row.try_get_unchecked::<DateTime<Utc>, _>(12).map_err(corrupt)?,
    })
}

/// Sends one NOTIFY per burst of local appends, on a pooled connection, after the appends committed.
async fn notify_loop(pool: PgPool, appended: Arc<Notify>) {
    loop {
        appended.notified().await;
        // Coalesce a burst of appends into one NOTIFY: a notification costs a transaction of its own, and other
        // nodes only need to know that something changed (2 ms later is soon enough; readers also poll).
        tokio::time::sleep(NOTIFY_COALESCE).await;
        // The notification needs no durability (readers also poll): don't wait for its commit to be flushed.
        let notify = sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')");
        if let Err(e) = notify.bind(CHANNEL).execute(&pool).await {
            tracing::debug!(error = %e, "could not send NOTIFY; other nodes will see the events on their next poll");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Keeps a LISTEN connection open, reconnecting with backoff; every notification wakes local readers.
async fn listen_loop(url: String, wake: WakeupSender) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&url, &wake).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection lost; readers fall back to polling until it is back");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        // Events may have been appended while we were not listening.
        wake.wake();
        tokio::time::sleep(backoff).await;
    }
}

async fn listen_once(url: &str, wake: &WakeupSender) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let wake_driver = wake.clone();
    let driver = async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(_) = message? {
                wake_driver.wake();
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    };
    tokio::pin!(driver);
    tokio::select! {
        r = &mut driver => return r,
        r = client.batch_execute("LISTEN cardap_events") => r?,
    }
    wake.wake();
    let result = driver.await;
    drop(client);
    result
}

fn to_i32(v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Corrupt(format!("event version {v} too large")))
}
