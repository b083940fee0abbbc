//! The webhook push's own state (issue 11 point 2): a business system's sealed signing secret (written by
//! [`crate::Companion::SetWebhookSecret`] with its event) and its push row — the push cursor, the failures since
//! the last success, when to try next, and which node holds the lease.
//!
//! Owns the SQL of `webhook_secrets` and `webhook_pushes` on both backends. Decides nothing: the lease length,
//! the backoff and what counts as a success come from the caller. Never sees a secret in clear.

use sqlx::{AnyPool, Row};

use crate::StoreError;

/// A push row as a node that holds its lease sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRow {
    /// The last item the webhook acknowledged (`None`: none yet; the push starts at the feed's start).
    pub cursor: Option<String>,
    pub failures: i64,
    /// Unix milliseconds before which no attempt is made.
    pub next_attempt: i64,
}

#[derive(Debug, Clone)]
pub struct WebhookStore {
    pool: AnyPool,
}

impl WebhookStore {
    pub fn new(pool: AnyPool) -> Self {
        WebhookStore { pool }
    }

    /// The sealed signing secret of `business_id` (base64), if one was issued.
    pub async fn sealed_secret(&self, business_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sealed FROM webhook_secrets WHERE business_id = $1")
            .bind(business_id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.map(|r| r.try_get::<String, _>(0)).transpose().map_err(StoreError::from_sqlx)
    }

    /// Takes the lease of `business_id`'s push for `node` until `until` (unix ms) when it is free (never taken,
    /// run out, or `node`'s own) and its next attempt is due at `now`; the row as it stands, or `None` when
    /// another node holds it or it is not due. One conditional UPDATE: on PostgreSQL the row lock serializes two
    /// nodes, on SQLite the database lock does.
    pub async fn lease(
        &self,
        business_id: &str,
        node: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<PushRow>, StoreError> {
        sqlx::query("INSERT INTO webhook_pushes (business_id) VALUES ($1) ON CONFLICT (business_id) DO NOTHING")
            .bind(business_id.to_owned())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        let row = sqlx::query(
            "UPDATE webhook_pushes SET leased_by = $1, leased_until = $2 \
             WHERE business_id = $3 AND next_attempt <= $4 AND (leased_until < $4 OR leased_by = $1) \
             RETURNING cursor, failures, next_attempt",
        )
        .bind(node.to_owned())
        .bind(until)
        .bind(business_id.to_owned())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| Ok(PushRow { cursor: r.try_get(0)?, failures: r.try_get(1)?, next_attempt: r.try_get(2)? }))
            .transpose()
            .map_err(StoreError::from_sqlx)
    }

    /// The webhook acknowledged everything up to `cursor`: it becomes the push cursor, the failures end and
    /// `node`'s lease is renewed until `until` (unix ms). False when another node has taken the push over (this
    /// node's lease ran out): nothing is written.
    pub async fn advance(&self, business_id: &str, node: &str, cursor: &str, until: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_pushes SET cursor = $1, failures = 0, next_attempt = 0, leased_until = $2 \
             WHERE business_id = $3 AND leased_by = $4",
        )
        .bind(cursor.to_owned())
        .bind(until)
        .bind(business_id.to_owned())
        .bind(node.to_owned())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    /// The node whose lease on `business_id`'s push runs at `now` (unix ms), if any.
    pub async fn holder(&self, business_id: &str, now: i64) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT leased_by FROM webhook_pushes WHERE business_id = $1 AND leased_until >= $2 \
             AND leased_by IS NOT NULL",
        )
        .bind(business_id.to_owned())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| r.try_get::<String, _>(0)).transpose().map_err(StoreError::from_sqlx)
    }

    /// An attempt failed: counts it, sets when to try next (unix ms) and gives the lease back.
    pub async fn failed(
        &self,
        business_id: &str,
        node: &str,
        failures: i64,
        next_attempt: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_pushes SET failures = $1, next_attempt = $2, leased_until = 0 \
             WHERE business_id = $3 AND leased_by = $4",
        )
        .bind(failures)
        .bind(next_attempt)
        .bind(business_id.to_owned())
        .bind(node.to_owned())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Gives the lease back (the round is over).
    pub async fn release(&self, business_id: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE webhook_pushes SET leased_until = 0 WHERE business_id = $1 AND leased_by = $2")
            .bind(business_id.to_owned())
            .bind(node.to_owned())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }
}
