//! The blue/green rebuild of one read model: its new version is built beside the live one, from the start of the
//! event log, while the live one keeps answering; when the new one has caught up, it replaces the live one in one
//! transaction. Readers see the old version until that commit and the new one after it, never an empty or half-built
//! read model; the live runners (of every node) wait on the checkpoint row during the switch and go on from where
//! the new version stands.
//!
//! Owns the build space and the switch:
//! - **PostgreSQL**: a schema `cardap_rebuild_<name>` holds copies of the read model's tables (columns, defaults,
//!   checks, keys and indexes, under the same names) and its own `projection_checkpoints`; the build's connections
//!   put that schema first in their `search_path`, so the projection's unqualified SQL writes there and reads
//!   everything else (other read models) from the live schema. The switch drops the live tables and moves the new
//!   ones into the live schema (`ALTER TABLE … SET SCHEMA`): a rename, whatever the size. It waits at most
//!   [`LOCK_TIMEOUT`] for a reader still holding a table, then gives way and tries again.
//! - **SQLite**: a file beside the database (`<file>.rebuild-<name>`) holds the copies and is the build's main
//!   database, with the live one attached after it; the switch copies the rows into the live tables in one
//!   transaction (readers of the WAL keep the old rows until it commits) and removes the file.

use std::sync::Arc;
use std::time::Duration;

use cardap_store::{Checkpoint, EventStore};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use crate::runner::{REBUILD_BATCH, lock_checkpoint};
use crate::{Projection, ProjectionError, ProjectionRunner};

/// How long the switch waits for a reader holding a live table before it gives way (and tries again).
const LOCK_TIMEOUT: &str = "2s";
/// How often the switch tries before it gives up.
const SWITCH_ATTEMPTS: usize = 10;

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Rebuilt {
    /// The checkpoint the new version stood at when it became the live one.
    pub reached: Checkpoint,
    /// Time to build the new version up to the head of the log.
    pub built: Duration,
    /// Time of the switch (the final catch-up under the checkpoint's lock included).
    pub switched: Duration,
}

fn db(e: sqlx::Error) -> ProjectionError {
    ProjectionError::from_sqlx(e)
}

fn failed(reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Database(sqlx::Error::Protocol(reason.to_string()))
}

/// Builds a new version of `projection` beside the live one and switches to it (see the module's comment).
pub(crate) async fn rebuild_beside(
    live: &AnyPool,
    url: &str,
    store: Arc<dyn EventStore>,
    projection: Arc<dyn Projection>,
) -> Result<Rebuilt, ProjectionError> {
    let started = std::time::Instant::now();
    let space = if url.starts_with("postgres") {
        Space::postgres(live, url, projection.as_ref()).await?
    } else {
        Space::sqlite(live, url, projection.as_ref()).await?
    };
    let runner = ProjectionRunner::new(store, space.pool.clone(), projection.clone()).with_batch(REBUILD_BATCH);
    let result = async {
        runner.catch_up().await?;
        space.make_durable(projection.as_ref()).await?;
        let built = started.elapsed();
        let reached = space.switch(live, &runner, projection.as_ref()).await?;
        Ok(Rebuilt { reached, built, switched: started.elapsed() - built })
    }
    .await;
    space.pool.close().await;
    if result.is_err() {
        space.discard(live).await;
    }
    result
}

/// Where the new version is built.
struct Space {
    pool: AnyPool,
    kind: Kind,
}

enum Kind {
    /// `after_load`: the statements that create the projection's indexes and keys built after the load.
    Postgres {
        live_schema: String,
        schema: String,
        after_load: Vec<String>,
    },
    Sqlite {
        file: std::path::PathBuf,
    },
}

impl Space {
    async fn postgres(live: &AnyPool, url: &str, projection: &dyn Projection) -> Result<Space, ProjectionError> {
        let schema = format!("cardap_rebuild_{}", projection.name());
        let live_schema: String =
            sqlx::query_scalar("SELECT current_schema()::text").fetch_one(live).await.map_err(db)?;
        let mut tx = live.begin().await.map_err(db)?;
        // Definitions printed with every name qualified.
        sqlx::query("SET LOCAL search_path TO pg_catalog").execute(&mut *tx).await.map_err(db)?;
        exec(&mut tx, format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
        exec(&mut tx, format!("CREATE SCHEMA {schema}")).await?;
        let deferred = projection.built_after_load();
        let mut after_load = Vec::new();
        for table in projection.tables().iter().copied().chain(["projection_checkpoints"]) {
            let (from, to) = (format!("{live_schema}.{table}"), format!("{schema}.{table}"));
            exec(
                &mut tx,
                format!(
                    "CREATE UNLOGGED TABLE {to} (LIKE {from} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED \
                     INCLUDING STORAGE)"
                ),
            )
            .await?;
            // Keys and unique constraints under their own names (a later migration may name them).
            let constraints = sqlx::query(
                "SELECT conname::text AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint \
                 WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u', 'x') ORDER BY conname",
            )
            .bind(&from)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for row in constraints {
                let (name, def): (String, String) = (row.try_get("name").map_err(db)?, row.try_get("def").map_err(db)?);
                let add = format!("ALTER TABLE {to} ADD CONSTRAINT {name} {def}");
                if deferred.contains(&name.as_str()) {
                    after_load.push(add);
                } else {
                    exec(&mut tx, add).await?;
                }
            }
            // Every other index, under its own name.
            let indexes = sqlx::query(
                "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = $1::text::regclass \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY i.indexrelid",
            )
            .bind(&from)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            for row in indexes {
                let (name, def): (String, String) = (row.try_get("name").map_err(db)?, row.try_get("def").map_err(db)?);
                let moved = def.replacen(&format!(" ON {from} "), &format!(" ON {to} "), 1).replacen(
                    &format!(" ON ONLY {from} "),
                    &format!(" ON ONLY {to} "),
                    1,
                );
                if moved == def {
                    return Err(failed(format!("cannot copy the index {def:?}")));
                }
                if deferred.contains(&name.as_str()) {
                    after_load.push(moved);
                } else {
                    exec(&mut tx, moved).await?;
                }
            }
        }
        if after_load.len() != deferred.len() {
            return Err(failed(format!(
                "{} names indexes to build after the load that its tables do not have: {deferred:?}",
                projection.name()
            )));
        }
        tx.commit().await.map_err(db)?;
        // Unlogged tables and commits not waited for: a crash loses only the build, which is discarded anyway; the
        // tables are made durable before the switch, whose commit is.
        let path = format!("SET search_path TO {schema}, {live_schema}");
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let path = path.clone();
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(path)).execute(&mut *conn).await?;
                    sqlx::query("SET synchronous_commit TO off").execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_lazy(url)
            .map_err(db)?;
        Ok(Space { pool, kind: Kind::Postgres { live_schema, schema, after_load } })
    }

    async fn sqlite(live: &AnyPool, url: &str, projection: &dyn Projection) -> Result<Space, ProjectionError> {
        let live_file = cardap_store::sqlite_file(url)
            .ok_or_else(|| failed("a blue/green rebuild needs a SQLite database file"))?;
        let mut file = live_file.clone().into_os_string();
        file.push(format!(".rebuild-{}", projection.name()));
        let file = std::path::PathBuf::from(file);
        remove_sqlite_files(&file);
        create_private(&file).map_err(|e| failed(format!("cannot create {}: {e}", file.display())))?;
        let tables: Vec<&str> = projection.tables().iter().copied().chain(["projection_checkpoints"]).collect();
        let mut definitions = Vec::new();
        for table in &tables {
            let rows = sqlx::query(
                "SELECT name, sql FROM sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL \
                 ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END, name",
            )
            .bind(*table)
            .fetch_all(live)
            .await
            .map_err(db)?;
            if rows.is_empty() {
                return Err(failed(format!("no table {table} in the database")));
            }
            for row in rows {
                let (name, sql): (String, String) = (row.try_get("name").map_err(db)?, row.try_get("sql").map_err(db)?);
                // The switch copies the rows into the live tables, which have every index: the build file needs
                // none of those built after the load.
                if !projection.built_after_load().contains(&name.as_str()) {
                    definitions.push(sql);
                }
            }
        }
        let live_path = live_file.to_string_lossy().into_owned();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                let live_path = live_path.clone();
                Box::pin(async move {
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("ATTACH DATABASE $1 AS live").bind(live_path).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect_lazy(&format!("sqlite://{}?mode=rw", file.display()))
            .map_err(db)?;
        let mut conn = pool.acquire().await.map_err(db)?;
        for sql in definitions {
            // `CREATE TABLE name …` and `CREATE INDEX name ON table …`: unqualified, so in the build's main.
            exec(&mut conn, sql).await?;
        }
        drop(conn);
        Ok(Space { pool, kind: Kind::Sqlite { file } })
    }

    /// Makes the built tables durable (PostgreSQL: they were built unlogged; `SET LOGGED` writes each to the WAL in
    /// one pass, indexes included), then creates the indexes and keys built after the load (each sorted in one
    /// pass; a key that the rows break fails the rebuild here, before anything is switched).
    async fn make_durable(&self, projection: &dyn Projection) -> Result<(), ProjectionError> {
        if let Kind::Postgres { schema, after_load, .. } = &self.kind {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            for table in projection.tables().iter().copied().chain(["projection_checkpoints"]) {
                exec(&mut conn, format!("ALTER TABLE {schema}.{table} SET LOGGED")).await?;
            }
            // More memory to sort in than a session's default (64 MB), for this one connection.
            exec(&mut conn, "SET maintenance_work_mem TO '256MB'".to_owned()).await?;
            for create in after_load {
                exec(&mut conn, create.clone()).await?;
            }
        }
        Ok(())
    }

    /// Catches the new version up to the live one under the live checkpoint's lock, then makes it the live one.
    async fn switch(
        &self,
        live: &AnyPool,
        runner: &ProjectionRunner,
        projection: &dyn Projection,
    ) -> Result<Checkpoint, ProjectionError> {
        match &self.kind {
            Kind::Postgres { live_schema, schema, .. } => {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match switch_postgres(live, runner, projection, live_schema, schema).await {
                        Err(e) if attempt < SWITCH_ATTEMPTS && lock_timed_out(&e) => {
                            tracing::info!(
                                projection = projection.name(),
                                attempt,
                                "a reader holds the read model; switching again"
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => return other,
                    }
                }
            }
            Kind::Sqlite { file } => {
                let reached = switch_sqlite(live, runner, projection, file).await?;
                remove_sqlite_files(file);
                Ok(reached)
            }
        }
    }

    /// Removes what a failed rebuild left.
    async fn discard(&self, live: &AnyPool) {
        match &self.kind {
            Kind::Postgres { schema, .. } => {
                let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(live).await {
                    tracing::warn!(error = %e, schema, "cannot remove the rebuild's schema");
                }
            }
            Kind::Sqlite { file } => remove_sqlite_files(file),
        }
    }
}

async fn switch_postgres(
    live: &AnyPool,
    runner: &ProjectionRunner,
    projection: &dyn Projection,
    live_schema: &str,
    schema: &str,
) -> Result<Checkpoint, ProjectionError> {
    let mut tx = live.begin().await.map_err(db)?;
    exec(&mut tx, format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")).await?;
    // Every node's live runner of this read model now waits here.
    let at = lock_checkpoint(&mut tx, projection.name()).await?;
    let reached = runner.catch_up_to(at).await?;
    for table in projection.tables() {
        exec(&mut tx, format!("DROP TABLE {live_schema}.{table}")).await?;
        exec(&mut tx, format!("ALTER TABLE {schema}.{table} SET SCHEMA {live_schema}")).await?;
    }
    store_checkpoint(&mut tx, projection.name(), reached).await?;
    exec(&mut tx, format!("DROP SCHEMA {schema} CASCADE")).await?;
    tx.commit().await.map_err(db)?;
    Ok(reached)
}

async fn switch_sqlite(
    live: &AnyPool,
    runner: &ProjectionRunner,
    projection: &dyn Projection,
    file: &std::path::Path,
) -> Result<Checkpoint, ProjectionError> {
    let mut conn = live.acquire().await.map_err(db)?;
    sqlx::query("ATTACH DATABASE $1 AS rebuild")
        .bind(file.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    let result = async {
        let mut tx = conn.begin().await.map_err(db)?;
        // The write lock: the live runners (and the log's writers) wait until the commit.
        let at = lock_checkpoint(&mut tx, projection.name()).await?;
        let reached = runner.catch_up_to(at).await?;
        for table in projection.tables() {
            exec(&mut tx, format!("DELETE FROM main.{table}")).await?;
            exec(&mut tx, format!("INSERT INTO main.{table} SELECT * FROM rebuild.{table}")).await?;
        }
        store_checkpoint(&mut tx, projection.name(), reached).await?;
        tx.commit().await.map_err(db)?;
        Ok(reached)
    }
    .await;
    if let Err(e) = sqlx::query("DETACH DATABASE rebuild").execute(&mut *conn).await {
        tracing::warn!(error = %e, "cannot detach the rebuild's file; closing the connection");
        let _ = conn.detach().close().await;
    }
    result
}

async fn store_checkpoint(conn: &mut AnyConnection, name: &str, at: Checkpoint) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $1, position = $2, updated_at = $3 WHERE name = $4",
    )
    .bind(i64::try_from(at.transaction).unwrap_or(i64::MAX))
    .bind(i64::try_from(at.position).unwrap_or(i64::MAX))
    .bind(crate::now_text())
    .bind(name)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

async fn exec(conn: &mut AnyConnection, sql: String) -> Result<(), ProjectionError> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(conn).await.map_err(db)?;
    Ok(())
}

/// PostgreSQL's `lock_not_available` (a reader held a table longer than [`LOCK_TIMEOUT`]).
fn lock_timed_out(e: &ProjectionError) -> bool {
    let (ProjectionError::Database(sqlx::Error::Database(d)) | ProjectionError::Unavailable(sqlx::Error::Database(d))) =
        e
    else {
        return false;
    };
    d.code().as_deref() == Some("55P03")
}

fn remove_sqlite_files(file: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = file.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(std::path::PathBuf::from(name));
    }
}

/// An empty file readable by its owner only (the copies hold sealed personal data).
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}
