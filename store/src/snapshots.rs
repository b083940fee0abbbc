//! Stream snapshots: the folded state of a stream at a version, kept so that a decision over a long stream reads
//! only the events after it. Owns their SQL on both backends.
//!
//! A snapshot is a cache, never the truth: the events are. It is written after its events committed (a lost
//! write costs a longer read next time), a newer one replaces an older one (never the other way round), and a
//! snapshot of another shape (`kind`) is ignored by the reader and replaced by the next write. Stored in clear:
//! only for streams whose state holds no personal data.

use sqlx::{PgPool, Row, SqlitePool};

use crate::{StoreError, StreamId, to_i64, to_u64};

/// The state of one stream after its event `version`, in the shape `kind` names.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The state's shape and its version (`operator_login/2`): a reader of another shape ignores the snapshot.
    pub kind: String,
    /// The stream version the state includes.
    pub version: u64,
    pub state: serde_json::Value,
}

const LOAD: &str = "SELECT kind, version, state FROM stream_snapshots WHERE stream_id = $1";
/// Replaces only an older snapshot, or one of another shape.
const SAVE: &str = "INSERT INTO stream_snapshots (stream_id, kind, version, state) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, version = excluded.version, state = excluded.state \
     WHERE stream_snapshots.version < excluded.version OR stream_snapshots.kind <> excluded.kind";

fn decode(kind: String, version: i64, state: &str) -> Result<Snapshot, StoreError> {
    let state = serde_json::from_str(state).map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
    Ok(Snapshot { kind, version: to_u64(version)?, state })
}

fn encode(snapshot: &Snapshot) -> Result<(i64, String), StoreError> {
    let state = serde_json::to_string(&snapshot.state).map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
    Ok((to_i64(snapshot.version)?, state))
}

/// The same SQL on either backend's pool (as `credentials::write_companions!` does for the companions).
macro_rules! load {
    ($pool:expr, $stream:expr) => {{
        let row =
            sqlx::query(LOAD).bind($stream.as_str()).fetch_optional($pool).await.map_err(StoreError::from_sqlx)?;
        row.map(|r| decode(r.get("kind"), r.get("version"), r.get::<&str, _>("state"))).transpose()
    }};
}

macro_rules! save {
    ($pool:expr, $stream:expr, $snapshot:expr) => {{
        let (version, state) = encode($snapshot)?;
        sqlx::query(SAVE)
            .bind($stream.as_str())
            .bind(&$snapshot.kind)
            .bind(version)
            .bind(state)
            .execute($pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }};
}

pub(crate) async fn load_pg(pool: &PgPool, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
    load!(pool, stream)
}

pub(crate) async fn save_pg(pool: &PgPool, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
    save!(pool, stream, snapshot)
}

pub(crate) async fn load_sqlite(pool: &SqlitePool, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
    load!(pool, stream)
}

pub(crate) async fn save_sqlite(pool: &SqlitePool, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
    save!(pool, stream, snapshot)
}
