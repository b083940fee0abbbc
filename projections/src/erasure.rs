//! Erasure made whole on every node (消去, issue 12 point 6): a follower of the event log that, for every
//! `ResidentErased` and `RegistryEntryErased`, destroys the erased stream's data key, and for every
//! `OperatorRevoked` (v2) the key of the registration it names (失効 erases the operator's management
//! information, issue 12 point 7; subject [`cardap_store::personal_subject`]).
//!
//! Owns the `erasure_keys` checkpoint (a row of `projection_checkpoints`) and nothing else: no read model. Why it
//! exists, twice over:
//! - **Atomicity.** The erase use case appends the erasure event, then destroys the key. If the process dies in
//!   between, the event is there and the key is not: this follower starts at the stored checkpoint (everything
//!   before it was destroyed for good) and finishes the destruction. [`cardap_store::KeyVault::destroy`] is
//!   idempotent, so destroying again what the use case destroyed changes nothing.
//! - **Every node's key cache.** Each node runs its own follower with its own position in memory (the stored
//!   checkpoint only tells where to start), so every node sees every erasure event; destroying the key through
//!   this node's vault also marks the subject destroyed in this node's cache, so a node that had the key cached
//!   stops reading the erased personal data within one wake-up (NOTIFY on PostgreSQL, the ~1 s poll otherwise)
//!   without a restart. Forgetting the cached key would not be enough: a read between the event and the
//!   destruction by the erasing node could cache the key again.
//!
//! Reads the events as stored (the store *without* the sealing decorator: nothing here needs personal data) and
//! only the resident, registry and operator streams. Must not log personal data (it sees none) or key material.

use std::sync::Arc;
use std::time::Duration;

use cardap_store::{Checkpoint, EventStore, KeyVault, RecordedEvent, StreamId, personal_subject};
use sqlx::{AnyPool, Row};
use tokio::sync::watch;

use crate::ProjectionError;

/// The checkpoint's name in `projection_checkpoints`.
pub const NAME: &str = "erasure_keys";

/// The events after which a stream's data key must be destroyed. Plain events without personal data: a
/// replication feed (issue 11) forwards them as they are.
pub const ERASURE_EVENTS: [&str; 2] = ["ResidentErased", "RegistryEntryErased"];

/// The event after which the key of the operator's registration it names (`personal_key`) must be destroyed.
pub const OPERATOR_REVOKED: &str = "OperatorRevoked";

/// The stream types those events belong to.
const STREAM_TYPES: &[&str] = &["resident", "registry_entry", "operator"];

/// The data key `event` says to destroy, if any: the erased stream's, or the revoked registration's (an
/// `OperatorRevoked` written before registrations had keys of their own names none).
pub fn key_to_destroy(event: &RecordedEvent) -> Result<Option<StreamId>, ProjectionError> {
    let kind = event.event_type.as_str();
    if ERASURE_EVENTS.contains(&kind) {
        return Ok(Some(event.stream_id.clone()));
    }
    if kind == OPERATOR_REVOKED && event.payload.get("personal_key").is_some() {
        return Ok(Some(personal_subject(&event.stream_id, &event.payload)?));
    }
    Ok(None)
}

/// Events read per step.
const BATCH: usize = 1000;

/// The safety-net poll when no wake-up arrives.
const POLL: Duration = Duration::from_secs(1);

/// Destroys the data keys of erased streams, on every node.
#[derive(Debug, Clone)]
pub struct KeyShredder {
    pool: AnyPool,
    /// The event store as stored (no sealing decorator).
    store: Arc<dyn EventStore>,
    vault: Arc<KeyVault>,
}

impl KeyShredder {
    pub fn new(pool: AnyPool, store: Arc<dyn EventStore>, vault: Arc<KeyVault>) -> Self {
        KeyShredder { pool, store, vault }
    }

    /// Follows the log from the stored checkpoint until `shutdown`; errors are logged and retried with backoff.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut wake = self.store.wakeups();
        let mut backoff = Duration::from_millis(100);
        let mut at: Option<Checkpoint> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            wake.mark_seen();
            let stepped = match at {
                Some(after) => self.step(after).await,
                None => self.stored().await,
            };
            match stepped {
                Ok(next) => {
                    backoff = Duration::from_millis(100);
                    let moved = at != Some(next);
                    at = Some(next);
                    if !moved {
                        tokio::select! {
                            _ = wake.wait(POLL) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(follower = NAME, error = %e, "erasure follower paused; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Destroys the keys of every erasure committed so far (from the stored checkpoint); returns where it got.
    /// For start-up, the command line and tests.
    pub async fn catch_up(&self) -> Result<Checkpoint, ProjectionError> {
        let mut at = self.stored().await?;
        loop {
            let next = self.step(at).await?;
            if next == at {
                return Ok(at);
            }
            at = next;
        }
    }

    /// One batch after `after`: destroys the keys of the erasure events in it, stores the new checkpoint (never
    /// backwards), returns how far the log was looked through.
    pub async fn step(&self, after: Checkpoint) -> Result<Checkpoint, ProjectionError> {
        let read = self.store.read_types(after, BATCH, STREAM_TYPES).await?;
        for event in &read.events {
            if let Some(subject) = key_to_destroy(event)? {
                self.vault.destroy(&subject).await?;
            }
        }
        if read.scanned > after {
            self.advance(read.scanned).await?;
        }
        Ok(read.scanned.max(after))
    }

    /// The stored checkpoint (the start when there is none).
    async fn stored(&self) -> Result<Checkpoint, ProjectionError> {
        let row = sqlx::query("SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1")
            .bind(NAME)
            .fetch_optional(&self.pool)
            .await
            .map_err(ProjectionError::from_sqlx)?;
        Ok(match row {
            Some(r) => {
                let tx: i64 = r.try_get("transaction_id").map_err(ProjectionError::Database)?;
                let pos: i64 = r.try_get("position").map_err(ProjectionError::Database)?;
                Checkpoint { transaction: u64::try_from(tx).unwrap_or(0), position: u64::try_from(pos).unwrap_or(0) }
            }
            None => Checkpoint::START,
        })
    }

    /// Moves the stored checkpoint forward to `to` (another node may be further already: then it stays).
    async fn advance(&self, to: Checkpoint) -> Result<(), ProjectionError> {
        let (tx, pos) = (to_i64(to.transaction), to_i64(to.position));
        let now = crate::now_text();
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at) VALUES ($1, 0, 0, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(NAME)
        .bind(now.clone())
        .execute(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        sqlx::query(
            "UPDATE projection_checkpoints SET transaction_id = $1, position = $2, updated_at = $3 \
             WHERE name = $4 AND (transaction_id < $1 OR (transaction_id = $1 AND position < $2))",
        )
        .bind(tx)
        .bind(pos)
        .bind(now)
        .bind(NAME)
        .execute(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        Ok(())
    }
}

fn to_i64(v: u64) -> i64 {
    // Checkpoints come from the store, which reads them from BIGINT columns.
    i64::try_from(v).unwrap_or(i64::MAX)
}
