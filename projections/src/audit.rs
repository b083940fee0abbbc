//! The tamper-evident chain over the event log (issue 12, point 5; first part): a sealer walks the global order
//! and stores, per event, `hash = SHA-256(previous hash || the event's canonical bytes)`; [`AuditChain::verify`]
//! (`cardap audit verify`) recomputes the chain from the events and names the first event that was altered,
//! removed or moved. Owns the `audit_chain` table and the canonical form of an event.
//!
//! The chain is over the events *as stored* (read from the event store without the sealing decorator): a
//! resident's personal data is hashed sealed, so destroying his key (erasure) leaves the chain verifying.
//! Canonical bytes: the JSON array `[event_id, stream_id, stream_type, version, event_type, event_version, payload,
//! metadata, municipality, operator, recorded_at]`, with object keys in sorted order (serde_json's map) and the
//! time in RFC 3339 with microseconds.
//!
//! Not yet here: signed checkpoints with a dedicated audit key, exported where the database administrator cannot
//! rewrite them (so that someone who rewrites events *and* the chain is caught too), and the read access log.

use std::sync::Arc;
use std::time::Duration;

use cardap_store::{Checkpoint, EventStore, ReadFilter, RecordedEvent};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::ProjectionError;

/// Events sealed per round, and read per page while verifying.
const PAGE: usize = 1000;

/// The hash before the first event.
const GENESIS: [u8; 32] = [0; 32];

/// One link of the chain as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    seq: u64,
    event_id: String,
    checkpoint: Checkpoint,
    hash: String,
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every sealed event is as it was sealed (`events`), in its place.
    Intact { events: u64 },
    /// The event at chain position `seq` is not what was sealed: its content changed.
    Altered { seq: u64, event_id: String },
    /// The event sealed at `seq` is no longer in the log (deleted), or the log ends before the chain does.
    Missing { seq: u64, event_id: String },
    /// The event sealed at `seq` is still in the log, but not in its place (its order was changed).
    Reordered { seq: u64, event_id: String },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Intact { events } => write!(f, "intact: {events} events verified"),
            Verdict::Altered { seq, event_id } => write!(f, "ALTERED: event {event_id} (chain position {seq})"),
            Verdict::Missing { seq, event_id } => {
                write!(f, "MISSING: event {event_id} (chain position {seq}) is no longer in the log")
            }
            Verdict::Reordered { seq, event_id } => {
                write!(f, "REORDERED: event {event_id} (chain position {seq}) is no longer in its place")
            }
        }
    }
}

/// The chain over `store` (the event store *without* the sealing decorator), kept in `pool`.
#[derive(Debug, Clone)]
pub struct AuditChain {
    pool: AnyPool,
    store: Arc<dyn EventStore>,
}

impl AuditChain {
    pub fn new(pool: AnyPool, store: Arc<dyn EventStore>) -> Self {
        AuditChain { pool, store }
    }

    /// Seals the events committed since the last link, a page at a time; how many were sealed.
    pub async fn extend(&self) -> Result<u64, ProjectionError> {
        let (mut seq, mut hash, mut after) = match self.last().await? {
            Some(link) => (link.seq, decode_hash(&link.hash)?, link.checkpoint),
            None => (0, GENESIS, Checkpoint::START),
        };
        let mut sealed = 0;
        loop {
            let events = self.store.read_all(after, PAGE, &ReadFilter::All).await?;
            let Some(last) = events.last() else {
                return Ok(sealed);
            };
            let mut tx = self.pool.begin().await.map_err(ProjectionError::from_sqlx)?;
            for (i, event) in events.iter().enumerate() {
                hash = link(&hash, event);
                sqlx::query(
                    "INSERT INTO audit_chain (seq, event_id, transaction_id, global_position, hash) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(to_i64(seq + 1 + i as u64))
                .bind(event.event_id.to_string())
                .bind(to_i64(event.checkpoint.transaction))
                .bind(to_i64(event.checkpoint.position))
                .bind(hex::encode(hash))
                .execute(&mut *tx)
                .await
                .map_err(ProjectionError::from_sqlx)?;
            }
            // Two sealers at once (two nodes): the second's rows collide on `seq` and it rolls back.
            tx.commit().await.map_err(ProjectionError::from_sqlx)?;
            sealed += events.len() as u64;
            seq += events.len() as u64;
            after = last.checkpoint;
        }
    }

    /// Seals new events as they come, until `stop`.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut wake = self.store.wakeups();
        loop {
            // Wake-ups from before this round are covered by it.
            wake.mark_seen();
            if let Err(e) = self.extend().await {
                tracing::warn!(error = %e, "the audit chain could not be extended; trying again");
            }
            tokio::select! {
                _ = wake.wait(Duration::from_secs(5)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Recomputes the chain from the events, in the global order, and compares it with every stored link.
    pub async fn verify(&self) -> Result<Verdict, ProjectionError> {
        let mut hash = GENESIS;
        let mut after = Checkpoint::START;
        let mut seq = 0_u64;
        loop {
            let links = self.links(seq, PAGE).await?;
            if links.is_empty() {
                return Ok(Verdict::Intact { events: seq });
            }
            let events = self.store.read_all(after, links.len(), &ReadFilter::All).await?;
            for (i, link) in links.iter().enumerate() {
                let Some(event) = events.get(i) else {
                    // The log ends before the chain: its tail was cut off.
                    return Ok(Verdict::Missing { seq: link.seq, event_id: link.event_id.clone() });
                };
                if event.event_id.to_string() != link.event_id {
                    return self.misplaced(link).await;
                }
                hash = self::link(&hash, event);
                if hex::encode(hash) != link.hash {
                    return Ok(Verdict::Altered { seq: link.seq, event_id: link.event_id.clone() });
                }
                after = event.checkpoint;
                seq = link.seq;
            }
        }
    }

    /// The event sealed as `link` is not the one in its place: still in the log elsewhere (moved), or gone.
    async fn misplaced(&self, link: &Link) -> Result<Verdict, ProjectionError> {
        let mut after = Checkpoint::START;
        loop {
            let events = self.store.read_all(after, PAGE, &ReadFilter::All).await?;
            let Some(last) = events.last() else {
                return Ok(Verdict::Missing { seq: link.seq, event_id: link.event_id.clone() });
            };
            if events.iter().any(|e| e.event_id.to_string() == link.event_id) {
                return Ok(Verdict::Reordered { seq: link.seq, event_id: link.event_id.clone() });
            }
            after = last.checkpoint;
        }
    }

    async fn last(&self) -> Result<Option<Link>, ProjectionError> {
        let row = sqlx::query(
            "SELECT seq, event_id, transaction_id, global_position, hash FROM audit_chain ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        row.map(|r| link_of(&r)).transpose()
    }

    async fn links(&self, after_seq: u64, limit: usize) -> Result<Vec<Link>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, transaction_id, global_position, hash FROM audit_chain WHERE seq > $1 \
             ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(after_seq))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        rows.iter().map(link_of).collect()
    }
}

fn link_of(row: &sqlx::any::AnyRow) -> Result<Link, ProjectionError> {
    let number = |name: &str| -> Result<u64, ProjectionError> {
        let n: i64 = row.try_get(name).map_err(ProjectionError::from_sqlx)?;
        u64::try_from(n)
            .map_err(|_| ProjectionError::Store(cardap_store::StoreError::Corrupt(format!("audit_chain.{name} {n}"))))
    };
    Ok(Link {
        seq: number("seq")?,
        event_id: row.try_get("event_id").map_err(ProjectionError::from_sqlx)?,
        checkpoint: Checkpoint { transaction: number("transaction_id")?, position: number("global_position")? },
        hash: row.try_get("hash").map_err(ProjectionError::from_sqlx)?,
    })
}

/// The next hash of the chain: SHA-256 over the previous one and the event's canonical bytes.
pub fn link(previous: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(previous);
    digest.update(canonical(event));
    digest.finalize().into()
}

/// The event's canonical bytes (see the module comment).
fn canonical(event: &RecordedEvent) -> Vec<u8> {
    let metadata = serde_json::to_value(&event.metadata).unwrap_or(serde_json::Value::Null);
    let form = serde_json::json!([
        event.event_id.to_string(),
        event.stream_id.as_str(),
        event.stream_type,
        event.version,
        event.event_type,
        event.event_version,
        event.payload,
        metadata,
        event.metadata.municipality.as_ref().map(|m| m.as_str().to_owned()),
        event.metadata.operator.map(|o| o.to_string()),
        event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    ]);
    serde_json::to_vec(&form).unwrap_or_default()
}

fn decode_hash(text: &str) -> Result<[u8; 32], ProjectionError> {
    let bytes = hex::decode(text)
        .map_err(|e| ProjectionError::Store(cardap_store::StoreError::Corrupt(format!("audit_chain hash: {e}"))))?;
    bytes.try_into().map_err(|_| {
        ProjectionError::Store(cardap_store::StoreError::Corrupt("audit_chain hash of the wrong length".into()))
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
