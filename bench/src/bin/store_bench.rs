//! `store-bench`: throughput of the cardap event store against plain SQL INSERTs on the same database.
//!
//! For each backend given, on a fresh database (PostgreSQL: `cardap_bench_<random>` created on the server and
//! dropped at the end; SQLite: a new file in the given directory, removed at the end), it measures:
//! - `append` events/s with 1, 10 and 100 events per append (one transaction each) and 1 and 8 concurrent
//!   writers. Every writer appends to its own streams (a new stream every 50 appends) with
//!   `ExpectedVersion::Exact`, a fresh command id per append, realistic metadata and ~200-byte JSON payloads;
//! - the baseline of each cell: the same rows inserted with plain SQL into a scratch table `bench_baseline` with
//!   the same columns and indexes as `events` (PostgreSQL: one `INSERT … SELECT … FROM unnest(…)` per batch in
//!   autocommit; SQLite: one `BEGIN IMMEDIATE` transaction per batch, one prepared INSERT per row), on the same
//!   pool settings. Store and baseline run in alternating ~250 ms slices (S B | B S | …) after a warm-up, so neither
//!   gets a warmer cache or a bigger table systematically;
//! - `read_all` events/s over every event in the store (topped up to at least 200,000 events first), following
//!   checkpoints in pages of 1,000 and 5,000.
//!
//! It prints one table per backend (`batch | writers | store ev/s | baseline ev/s | ratio`), the `read_all`
//! lines, and a `targets:` section for PostgreSQL (issue 11: store ≥ 0.80 × baseline in every row, `read_all` ≥ 250,000
//! events/s). Run it with `scripts/bench` (starts a throwaway durable PostgreSQL), or by hand:
//!
//! ```text
//! cargo run --release -p cardap-bench --bin store-bench -- \
//!     --postgres postgres://postgres@127.0.0.1:5432/postgres --sqlite /tmp/bench [--seconds 3] [--quick]
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cardap_domain::{MunicipalityCode, OperatorKey};
use cardap_store::{
    Checkpoint, CommandId, CorrelationId, Database, EventStore, ExpectedVersion, Metadata, NewEvent, ReadFilter,
    StreamId, redact,
};
use chrono::Utc;
use clap::Parser;
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use uuid::Uuid;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(name = "store-bench", about = "Event store throughput against a plain-INSERT baseline")]
struct Args {
    /// A PostgreSQL server URL; the bench creates (and drops) its own database `cardap_bench_<random>` on it.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// A directory for a fresh SQLite database file (removed at the end).
    #[arg(long, value_name = "DIR")]
    sqlite: Option<PathBuf>,
    /// Measured seconds per cell and per side (store, baseline).
    #[arg(long, default_value_t = 3.0, value_name = "N")]
    seconds: f64,
    /// A tiny run for CI smoke tests (0.3 s per cell, small read set): numbers are not meaningful.
    #[arg(long)]
    quick: bool,
    /// Only `read_all` (no append cells): for working on the read path.
    #[arg(long)]
    read_only: bool,
}

/// Connections per pool, as the server uses.
const POOL_SIZE: u32 = 16;
const BATCHES: [usize; 3] = [1, 10, 100];
const WRITERS: [usize; 2] = [1, 8];
const READ_PAGES: [usize; 2] = [1_000, 5_000];
/// A writer moves to a new stream after this many appends, as aggregates do.
const APPENDS_PER_STREAM: u32 = 50;
const MUNICIPALITY: &str = "131016";
const RATIO_TARGET: f64 = 0.80;
const READ_TARGET: f64 = 250_000.0;
/// The length of one measured slice of one side, roughly.
const SLICE: Duration = Duration::from_millis(250);

/// How long things run, from `--seconds` and `--quick`.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Measured time per cell and per side.
    per_side: Duration,
    /// Alternating slices per side (S B | B S | …).
    slices: u32,
    /// Unmeasured run of both sides before each cell.
    cell_warmup: Duration,
    /// Unmeasured run of both sides before the first cell of a backend.
    backend_warmup: Duration,
    /// `read_all` reads at least this many events (the store is topped up first).
    read_min_events: u64,
    /// Measured `read_all` time per page size (at least one full pass).
    read_time: Duration,
    quick: bool,
    read_only: bool,
}

impl Plan {
    fn new(args: &Args) -> Result<Plan> {
        let seconds = if args.quick { 0.3 } else { args.seconds };
        ensure!(seconds.is_finite() && seconds > 0.0, "--seconds must be a positive number");
        let per_side = Duration::from_secs_f64(seconds);
        Ok(Plan {
            per_side,
            // Short slices: the disk's fsync latency drifts a lot on shared machines, and fine-grained
            // alternation exposes both sides to the same drift.
            slices: u32::try_from((per_side.as_millis() / SLICE.as_millis()).max(2))?,
            cell_warmup: (per_side / 6).min(Duration::from_millis(500)),
            backend_warmup: (per_side / 2).min(Duration::from_secs(2)),
            read_min_events: if args.quick { 5_000 } else { 200_000 },
            read_time: per_side,
            quick: args.quick,
            read_only: args.read_only,
        })
    }
}

/// Events written (or read) in some time. Rates are computed only when printing.
#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    events: u64,
    elapsed: Duration,
}

impl Measure {
    fn add(&mut self, other: Measure) {
        self.events += other.events;
        self.elapsed += other.elapsed;
    }

    fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.events as f64 / secs } else { 0.0 }
    }
}

#[derive(Debug)]
struct Cell {
    batch: usize,
    writers: usize,
    store: Measure,
    baseline: Measure,
}

impl Cell {
    fn ratio(&self) -> f64 {
        let base = self.baseline.rate();
        if base > 0.0 { self.store.rate() / base } else { 0.0 }
    }
}

/// `read_all` throughput with one page size: `passes` full passes over the log.
#[derive(Debug)]
struct Read {
    page: usize,
    passes: u32,
    measure: Measure,
}

#[derive(Debug)]
struct Report {
    backend: &'static str,
    header: String,
    cells: Vec<Cell>,
    /// Events in the store when `read_all` was measured.
    stored: u64,
    reads: Vec<Read>,
}

/// Where a writer's batches go.
#[derive(Debug, Clone)]
enum Side {
    Store(Arc<dyn EventStore>),
    PgBaseline(PgPool),
    SqliteBaseline(SqlitePool),
}

impl Side {
    fn is_store(&self) -> bool {
        matches!(self, Side::Store(_))
    }
}

/// One writer's state: its operator, its current stream and the version it expects.
#[derive(Debug)]
struct Writer {
    municipality: MunicipalityCode,
    operator: OperatorKey,
    terminal: String,
    stream: StreamId,
    resident: Uuid,
    version: u64,
    appends_in_stream: u32,
    seq: u64,
}

const EVENT_TYPES: [&str; 3] = ["ResidentRegistered", "ResidentAddressChanged", "ResidentNameChanged"];

impl Writer {
    fn new(index: usize) -> Result<Writer> {
        let resident = Uuid::now_v7();
        Ok(Writer {
            municipality: MunicipalityCode::parse(MUNICIPALITY)?,
            operator: OperatorKey::from_uuid(Uuid::new_v4()),
            terminal: format!("窓口端末-{:02}", index + 1),
            stream: StreamId::new("resident", &resident.to_string())?,
            resident,
            version: 0,
            appends_in_stream: 0,
            seq: 0,
        })
    }

    /// The next batch: ~200 bytes of JSON each, Japanese text included.
    fn events(&mut self, batch: usize) -> Vec<NewEvent> {
        (0..batch)
            .map(|i| {
                self.seq += 1;
                let event_type = EVENT_TYPES[i % EVENT_TYPES.len()];
                NewEvent::new(
                    event_type,
                    1,
                    json!({
                        "resident_id": self.resident,
                        "name": "山田 太郎",
                        "kana": "ヤマダ タロウ",
                        "address": "東京都千代田区千代田1番1号",
                        "birth_date": "1985-04-01",
                        "seq": self.seq,
                    }),
                )
            })
            .collect()
    }

    /// Metadata as a command handler sets it: one command id and correlation per append.
    fn metadata(&self) -> Metadata {
        Metadata {
            command_id: Some(CommandId::generate()),
            correlation_id: CorrelationId::generate(),
            causation_id: None,
            municipality: Some(self.municipality.clone()),
            operator: Some(self.operator),
            terminal: Some(self.terminal.clone()),
            request_id: Some(Uuid::now_v7().simple().to_string()),
        }
    }

    fn advance(&mut self, batch: usize) -> Result<()> {
        self.version += u64::try_from(batch)?;
        self.appends_in_stream += 1;
        if self.appends_in_stream >= APPENDS_PER_STREAM {
            self.resident = Uuid::now_v7();
            self.stream = StreamId::new("resident", &self.resident.to_string())?;
            self.version = 0;
            self.appends_in_stream = 0;
        }
        Ok(())
    }

    /// Writes one batch to `side`, one transaction.
    async fn write(&mut self, side: &Side, batch: usize) -> Result<()> {
        let events = self.events(batch);
        let metadata = self.metadata();
        match side {
            Side::Store(store) => {
                let outcome =
                    store.append(&self.stream, ExpectedVersion::Exact(self.version), events, &metadata).await?;
                let expected = self.version + u64::try_from(batch)?;
                ensure!(
                    !outcome.already_applied && outcome.stream_version == expected,
                    "append to {} returned version {} (expected {expected})",
                    self.stream,
                    outcome.stream_version
                );
            }
            Side::PgBaseline(pool) => pg_baseline_insert(pool, self, &events, &metadata).await?,
            Side::SqliteBaseline(pool) => sqlite_baseline_insert(pool, self, &events, &metadata).await?,
        }
        self.advance(batch)
    }
}

const PG_BASELINE_INSERT: &str = "INSERT INTO bench_baseline (event_id, stream_id, stream_type, version, \
     municipality, operator_id, event_type, event_version, payload, metadata) \
     SELECT e.event_id, $1, $2, e.version, $3, $4, e.event_type, e.event_version, e.payload, $5 \
     FROM unnest($6::uuid[], $7::int8[], $8::text[], $9::int4[], $10::jsonb[]) \
          AS e(event_id, version, event_type, event_version, payload)";

/// The plain-SQL baseline on PostgreSQL: the same rows in one multi-row INSERT, autocommit.
async fn pg_baseline_insert(pool: &PgPool, w: &Writer, events: &[NewEvent], metadata: &Metadata) -> Result<()> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id.as_uuid()).collect();
    let versions: Vec<i64> =
        (1..=events.len()).map(|i| i64::try_from(w.version + u64::try_from(i)?)).collect::<Result<_, _>>()?;
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let event_versions: Vec<i32> = events.iter().map(|e| i32::try_from(e.event_version)).collect::<Result<_, _>>()?;
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    sqlx::query(PG_BASELINE_INSERT)
        .bind(w.stream.as_str())
        .bind(w.stream.stream_type())
        .bind(metadata.municipality.as_ref().map(|m| m.as_str()))
        .bind(metadata.operator.map(|o| o.as_uuid()))
        .bind(serde_json::to_value(metadata)?)
        .bind(&ids)
        .bind(&versions)
        .bind(&types)
        .bind(&event_versions)
        .bind(&payloads)
        .execute(pool)
        .await?;
    Ok(())
}

/// The plain-SQL baseline on SQLite: one write transaction, one multi-row INSERT (as the store inserts, and as the
/// PostgreSQL baseline does).
async fn sqlite_baseline_insert(pool: &SqlitePool, w: &Writer, events: &[NewEvent], metadata: &Metadata) -> Result<()> {
    let metadata_json = serde_json::to_string(metadata)?;
    let municipality = metadata.municipality.as_ref().map(|m| m.as_str().to_owned());
    let operator = metadata.operator.map(|o| o.as_uuid());
    let now = Utc::now();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut sql = String::from(
        "INSERT INTO bench_baseline (event_id, stream_id, stream_type, version, municipality, operator_id, \
         event_type, event_version, payload, metadata, recorded_at) VALUES ",
    );
    for i in 0..events.len() {
        sql.push_str(if i == 0 { "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" });
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    let mut version = w.version;
    for event in events {
        version += 1;
        query = query
            .bind(event.event_id.as_uuid())
            .bind(w.stream.as_str())
            .bind(w.stream.stream_type())
            .bind(i64::try_from(version)?)
            .bind(municipality.as_deref())
            .bind(operator)
            .bind(event.event_type.as_str())
            .bind(i64::from(event.event_version))
            .bind(event.payload.to_string())
            .bind(metadata_json.as_str())
            .bind(now);
    }
    query.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// When the writers of one run stop.
#[derive(Debug, Clone, Copy)]
enum Stop {
    After(Duration),
    Appends(u64),
}

/// Runs `writers` concurrent writers on `side` with `batch` events per append; returns the events committed and
/// the wall time from start until the last writer finished.
async fn run(side: &Side, batch: usize, writers: usize, stop: Stop) -> Result<Measure> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for index in 0..writers {
        let side = side.clone();
        let mut writer = Writer::new(index)?;
        tasks.push(tokio::spawn(async move {
            let per_batch = u64::try_from(batch)?;
            let mut written = 0_u64;
            let mut appends = 0_u64;
            loop {
                let done = match stop {
                    Stop::After(d) => start.elapsed() >= d,
                    Stop::Appends(n) => appends >= n,
                };
                if done {
                    break;
                }
                writer.write(&side, batch).await?;
                written += per_batch;
                appends += 1;
            }
            anyhow::Ok(written)
        }));
    }
    let mut events = 0_u64;
    for task in tasks {
        events += task.await.context("writer task failed")??;
    }
    Ok(Measure { events, elapsed: start.elapsed() })
}

/// One cell: a warm-up of both sides, then alternating measured slices of about 250 ms (S B | B S | S B | …).
async fn cell(store: &Side, baseline: &Side, batch: usize, writers: usize, plan: &Plan) -> Result<Cell> {
    run(store, batch, writers, Stop::After(plan.cell_warmup)).await?;
    run(baseline, batch, writers, Stop::After(plan.cell_warmup)).await?;
    let slice = plan.per_side / plan.slices;
    let mut result = Cell { batch, writers, store: Measure::default(), baseline: Measure::default() };
    for i in 0..plan.slices {
        let order = if i % 2 == 0 { [store, baseline] } else { [baseline, store] };
        for side in order {
            let m = run(side, batch, writers, Stop::After(slice)).await?;
            if side.is_store() { result.store.add(m) } else { result.baseline.add(m) }
        }
    }
    Ok(result)
}

/// Every cell of one backend, after a warm-up of both sides.
async fn append_cells(backend: &str, store: &Side, baseline: &Side, plan: &Plan) -> Result<Vec<Cell>> {
    run(store, 10, 8, Stop::After(plan.backend_warmup)).await?;
    run(baseline, 10, 8, Stop::After(plan.backend_warmup)).await?;
    let mut cells = Vec::new();
    for batch in BATCHES {
        for writers in WRITERS {
            let c = cell(store, baseline, batch, writers, plan).await?;
            eprintln!(
                "  {backend}: batch {batch:>3}, writers {writers}: store {} ev/s, baseline {} ev/s, ratio {:.2}",
                thousands(c.store.rate()),
                thousands(c.baseline.rate()),
                c.ratio()
            );
            cells.push(c);
        }
    }
    Ok(cells)
}

/// Appends big batches until the store holds at least `min` events.
async fn top_up(store: &Side, have: u64, min: u64) -> Result<()> {
    const BATCH: u64 = 500;
    const WRITERS: u64 = 4;
    if have >= min {
        return Ok(());
    }
    let appends_per_writer = (min - have).div_ceil(BATCH * WRITERS);
    eprintln!("  topping up the store from {have} to at least {min} events for read_all");
    run(store, usize::try_from(BATCH)?, usize::try_from(WRITERS)?, Stop::Appends(appends_per_writer)).await?;
    Ok(())
}

/// Reads the whole log once, following checkpoints, `page` events at a time.
async fn read_pass(store: &dyn EventStore, page: usize) -> Result<u64> {
    let mut after = Checkpoint::START;
    let mut events = 0_u64;
    loop {
        let batch = store.read_all(after, page, &ReadFilter::All).await?;
        let Some(last) = batch.last() else { break };
        ensure!(last.checkpoint > after, "read_all did not advance past {after}");
        after = last.checkpoint;
        events += u64::try_from(batch.len())?;
    }
    Ok(events)
}

/// `read_all` throughput per page size: one unmeasured pass, then alternating passes until each page size has
/// run for `plan.read_time` (at least one pass each).
async fn read_all_rates(store: &dyn EventStore, expected: u64, plan: &Plan) -> Result<Vec<Read>> {
    let warm = read_pass(store, READ_PAGES[READ_PAGES.len() - 1]).await?;
    ensure!(warm == expected, "read_all returned {warm} events, the store holds {expected}");
    let mut reads: Vec<Read> =
        READ_PAGES.iter().map(|&page| Read { page, passes: 0, measure: Measure::default() }).collect();
    while reads.iter().any(|r| r.measure.elapsed < plan.read_time || r.passes == 0) {
        for read in &mut reads {
            let start = Instant::now();
            let events = read_pass(store, read.page).await?;
            ensure!(events == expected, "read_all returned {events} events, the store holds {expected}");
            read.measure.add(Measure { events, elapsed: start.elapsed() });
            read.passes += 1;
        }
    }
    Ok(reads)
}

// ---------------------------------------------------------------- PostgreSQL

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> Result<String> {
    let authority_start = url.find("://").context("the PostgreSQL URL has no scheme")? + 3;
    let rest = &url[authority_start..];
    let (path_and_more, query) = match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority = match path_and_more.find('/') {
        Some(i) => &path_and_more[..i],
        None => path_and_more,
    };
    Ok(format!("{}{authority}/{database}{query}", &url[..authority_start]))
}

async fn bench_postgres(server_url: &str, plan: &Plan) -> Result<Report> {
    let name = format!("cardap_bench_{}", Uuid::new_v4().simple());
    let mut admin =
        PgConnection::connect(server_url).await.with_context(|| format!("connecting to {}", redact(server_url)))?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    admin.close().await?;
    eprintln!("postgres: created database {name}");

    let result = bench_postgres_in(&with_database(server_url, &name)?, plan).await;

    let dropped = async {
        let mut admin = PgConnection::connect(server_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        anyhow::Ok(())
    }
    .await;
    let report = result?;
    dropped.with_context(|| format!("dropping database {name}"))?;
    eprintln!("postgres: dropped database {name}");
    Ok(report)
}

async fn bench_postgres_in(url: &str, plan: &Plan) -> Result<Report> {
    let db = Database::connect(url, POOL_SIZE).await?;
    db.migrate().await?;
    let pool = db.postgres_pool().context("not a PostgreSQL database")?.clone();
    sqlx::raw_sql("CREATE TABLE bench_baseline (LIKE events INCLUDING ALL)").execute(&pool).await?;

    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    let mut settings = Vec::new();
    for setting in ["fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"] {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)").bind(setting).fetch_one(&pool).await?;
        settings.push(format!("{setting}={value}"));
    }
    let header = format!("PostgreSQL {version} ({}, pool {POOL_SIZE})", settings.join(", "));

    let store = Side::Store(db.event_store());
    let baseline = Side::PgBaseline(pool.clone());
    let cells = if plan.read_only { Vec::new() } else { append_cells("postgres", &store, &baseline, plan).await? };

    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&pool).await?;
            anyhow::Ok(u64::try_from(n)?)
        }
    };
    top_up(&store, count("events").await?, plan.read_min_events).await?;
    let events = count("events").await?;
    // What autovacuum does to an insert-only table soon anyway; the unmeasured first pass then sets hint bits.
    sqlx::raw_sql("VACUUM ANALYZE events").execute(&pool).await?;
    eprintln!("  postgres: read_all over {events} events");
    let reads = read_all_rates(db.event_store().as_ref(), events, plan).await?;

    drop(store);
    pool.close().await;
    drop(db);
    Ok(Report { backend: "PostgreSQL", header, cells, stored: events, reads })
}

// ---------------------------------------------------------------- SQLite

const SQLITE_BASELINE_DDL: &str = "
CREATE TABLE bench_baseline (
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        BLOB    NOT NULL,
    stream_id       TEXT    NOT NULL,
    stream_type     TEXT    NOT NULL,
    version         INTEGER NOT NULL CHECK (version > 0),
    municipality    TEXT,
    operator_id     BLOB,
    event_type      TEXT    NOT NULL,
    event_version   INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    metadata        TEXT    NOT NULL,
    recorded_at     TEXT    NOT NULL,
    CONSTRAINT bench_baseline_stream_version_key UNIQUE (stream_id, version)
);
CREATE INDEX bench_baseline_by_municipality ON bench_baseline (municipality, global_position)
    WHERE municipality IS NOT NULL;
CREATE INDEX bench_baseline_by_operator ON bench_baseline (operator_id, global_position)
    WHERE operator_id IS NOT NULL;
";

async fn bench_sqlite(dir: &std::path::Path, plan: &Plan) -> Result<Report> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let file = dir.join(format!("cardap_bench_{}.db", Uuid::new_v4().simple()));
    let file_str = file.to_str().context("the SQLite directory is not valid UTF-8")?;
    eprintln!("sqlite: database file {file_str}");
    let result = bench_sqlite_in(file_str, plan).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{file_str}{suffix}"));
    }
    result
}

async fn bench_sqlite_in(file: &str, plan: &Plan) -> Result<Report> {
    let url = format!("sqlite:{file}");
    let db = Database::connect(&url, POOL_SIZE).await?;
    db.migrate().await?;
    // The baseline's own single writer connection, with the store's settings (WAL, synchronous=FULL).
    let options = SqliteConnectOptions::from_str(&url)?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    sqlx::raw_sql(SQLITE_BASELINE_DDL).execute(&pool).await?;
    let version: String = sqlx::query_scalar("SELECT sqlite_version()").fetch_one(&pool).await?;
    let header = format!("SQLite {version} (WAL, synchronous=FULL, one writer connection per side)");

    let store = Side::Store(db.event_store());
    let baseline = Side::SqliteBaseline(pool.clone());
    let cells = if plan.read_only { Vec::new() } else { append_cells("sqlite", &store, &baseline, plan).await? };

    let count = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&pool).await?;
        anyhow::Ok(u64::try_from(n)?)
    };
    top_up(&store, count().await?, plan.read_min_events).await?;
    let events = count().await?;
    eprintln!("  sqlite: read_all over {events} events");
    let reads = read_all_rates(db.event_store().as_ref(), events, plan).await?;

    drop(store);
    pool.close().await;
    drop(db);
    Ok(Report { backend: "SQLite", header, cells, stored: events, reads })
}

// ---------------------------------------------------------------- output

/// `1234567.8` → `1,234,568`.
fn thousands(rate: f64) -> String {
    let digits = format!("{:.0}", rate.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} — {}", report.backend, report.header);
    let _ = writeln!(out, "batch | writers | store ev/s | baseline ev/s | ratio");
    let _ = writeln!(out, "------+---------+------------+---------------+------");
    for c in &report.cells {
        let _ = writeln!(
            out,
            "{:>5} | {:>7} | {:>10} | {:>13} | {:>5.2}",
            c.batch,
            c.writers,
            thousands(c.store.rate()),
            thousands(c.baseline.rate()),
            c.ratio()
        );
    }
    for read in &report.reads {
        let _ = writeln!(
            out,
            "read_all, pages of {:>5}: {:>9} ev/s ({} {} over {} events in {:.2} s)",
            thousands(read.page as f64),
            thousands(read.measure.rate()),
            read.passes,
            if read.passes == 1 { "pass" } else { "passes" },
            thousands(report.stored as f64),
            read.measure.elapsed.as_secs_f64()
        );
    }
    out
}

fn targets(postgres: Option<&Report>, sqlite: Option<&Report>, quick: bool) -> String {
    let mut out = String::from("targets:\n");
    for (backend, report) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
        let Some(report) = report else { continue };
        if report.cells.is_empty() {
            continue;
        }
        let misses: Vec<String> = report
            .cells
            .iter()
            .filter(|c| c.ratio() < RATIO_TARGET)
            .map(|c| format!("batch {} × {} writers {:.2}", c.batch, c.writers, c.ratio()))
            .collect();
        let min = report.cells.iter().min_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        let min_text = min
            .map_or_else(String::new, |c| format!("min {:.2} at batch {} × {} writers", c.ratio(), c.batch, c.writers));
        if misses.is_empty() {
            let _ = writeln!(out, "  {backend} store ≥ {RATIO_TARGET:.2} × baseline in every row: PASS ({min_text})");
        } else {
            let _ = writeln!(
                out,
                "  {backend} store ≥ {RATIO_TARGET:.2} × baseline in every row: MISS ({min_text}; below: {})",
                misses.join(", ")
            );
        }
    }
    let Some(report) = postgres else {
        out.push_str("  PostgreSQL: not run (no --postgres)\n");
        return out;
    };
    match report.reads.first() {
        Some(Read { page, measure: m, .. }) => {
            let verdict = if m.rate() >= READ_TARGET { "PASS" } else { "MISS" };
            let _ = writeln!(
                out,
                "  PostgreSQL read_all ≥ {} ev/s (pages of {}): {verdict} ({} ev/s)",
                thousands(READ_TARGET),
                thousands(*page as f64),
                thousands(m.rate())
            );
        }
        None => out.push_str("  PostgreSQL read_all: not measured\n"),
    }
    if quick {
        out.push_str("  (--quick: a smoke run, these numbers are not meaningful)\n");
    }
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.postgres.is_none() && args.sqlite.is_none() {
        bail!("nothing to measure: give --postgres URL and/or --sqlite DIR");
    }
    let plan = Plan::new(&args)?;
    let started = Instant::now();
    let sample = Writer::new(0)?.events(1);
    let payload_bytes = sample.first().map_or(0, |e| e.payload.to_string().len());
    println!(
        "store-bench: {:.1} s per cell and side in {} alternating slices; payload {payload_bytes} bytes of JSON; \
         a new stream every {APPENDS_PER_STREAM} appends; municipality {MUNICIPALITY}",
        plan.per_side.as_secs_f64(),
        plan.slices
    );

    let mut postgres = None;
    if let Some(url) = &args.postgres {
        let report = bench_postgres(url, &plan).await?;
        println!("\n{}", table(&report));
        postgres = Some(report);
    }
    let mut sqlite = None;
    if let Some(dir) = &args.sqlite {
        let report = bench_sqlite(dir, &plan).await?;
        println!("\n{}", table(&report));
        sqlite = Some(report);
    }
    println!("{}", targets(postgres.as_ref(), sqlite.as_ref(), plan.quick));
    println!("total run time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
