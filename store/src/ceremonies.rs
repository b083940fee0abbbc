//! The adapter for WebAuthn ceremonies in progress (biometric login): a registration or a login begun on one node
//! and finished on any, kept in `webauthn_ceremonies` until it is finished or expires.
//!
//! Owns the SQL of that table on both backends (the same statements). A ceremony is taken, never read: [`take`]
//! deletes the row and returns it in one statement, so two finishes of one challenge (a replay, or a race between
//! nodes) get it once at most. It decides nothing about the ceremony itself; the payload is the caller's JSON.
//!
//! [`take`]: CeremonyStore::take

use sqlx::{AnyPool, Row};
use uuid::Uuid;

use crate::StoreError;

/// Ceremonies in progress over the read-model pool (the same database as the event store).
#[derive(Debug, Clone)]
pub struct CeremonyStore {
    pool: AnyPool,
}

impl CeremonyStore {
    pub fn new(pool: AnyPool) -> Self {
        CeremonyStore { pool }
    }

    /// Keeps a ceremony of `kind` until `expires_at` (Unix seconds).
    pub async fn put(&self, id: Uuid, kind: &str, payload: &str, expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO webauthn_ceremonies (id, kind, payload, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id.to_string())
            .bind(kind.to_owned())
            .bind(payload.to_owned())
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// The payload of the ceremony `id` of `kind`, removed so that nobody gets it again; `None` when there is no
    /// such ceremony (never begun, taken already, of another kind) or it expired before `now` (Unix seconds).
    pub async fn take(&self, id: Uuid, kind: &str, now: i64) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 RETURNING payload, expires_at")
                .bind(id.to_string())
                .bind(kind.to_owned())
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::from_sqlx)?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at").map_err(crate::corrupt)?;
        if expires_at <= now {
            return Ok(None);
        }
        Ok(Some(row.try_get("payload").map_err(crate::corrupt)?))
    }

    /// Deletes the ceremonies that expired before `now`; how many.
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }
}
