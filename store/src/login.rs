//! What cardap keeps for logging operators into business systems (OpenID Connect): the business systems'
//! client-secret hashes (written as companions of their events, read here) and the authorization codes (only
//! their hashes; taken once). Same SQL on both backends.

use cardap_domain::OperatorKey;
use cardap_domain::operator::AuthMethod;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// An authorization code as stored (the code itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    pub code_hash: String,
    pub business_id: String,
    pub operator: OperatorKey,
    pub redirect_uri: String,
    /// The PKCE S256 challenge (base64url).
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub method: AuthMethod,
    /// Unix seconds of the operator's authentication.
    pub auth_time: i64,
    pub expires_at: i64,
}

/// What taking a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The code is now used: the caller may exchange it.
    Now(CodeRow),
    /// It was used already: a replay.
    Before(CodeRow),
    /// Unknown or expired.
    Nothing,
}

/// The login tables over the read-model pool (the database of the event store).
#[derive(Debug, Clone)]
pub struct LoginGrants {
    pool: AnyPool,
}

impl LoginGrants {
    pub fn new(pool: AnyPool) -> Self {
        LoginGrants { pool }
    }

    /// The SHA-256 (hex) of the business system's client secret, if it has one.
    pub async fn client_secret_hash(&self, business_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret_hash FROM login_client_secrets WHERE business_id = $1")
            .bind(business_id.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.map(|r| r.try_get::<String, _>("secret_hash").map_err(crate::corrupt)).transpose()
    }

    pub async fn store_code(&self, code: &CodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_codes (code_hash, business_id, operator_key, redirect_uri, code_challenge, nonce, \
             method, auth_time, expires_at, used) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
        )
        .bind(code.code_hash.clone())
        .bind(code.business_id.clone())
        .bind(code.operator.to_string())
        .bind(code.redirect_uri.clone())
        .bind(code.code_challenge.clone())
        .bind(code.nonce.clone())
        .bind(code.method.as_str())
        .bind(code.auth_time)
        .bind(code.expires_at)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Marks the code used, once: of two concurrent exchanges exactly one gets [`Taken::Now`].
    pub async fn take_code(&self, code_hash: &str, now: i64) -> Result<Taken, StoreError> {
        let done = sqlx::query("UPDATE login_codes SET used = 1 WHERE code_hash = $1 AND used = 0 AND expires_at > $2")
            .bind(code_hash.to_owned())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        let row = sqlx::query(
            "SELECT code_hash, business_id, operator_key, redirect_uri, code_challenge, nonce, method, auth_time, \
             expires_at FROM login_codes WHERE code_hash = $1 AND expires_at > $2",
        )
        .bind(code_hash.to_owned())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        let Some(row) = row else { return Ok(Taken::Nothing) };
        let get = |name: &str| row.try_get::<String, _>(name).map_err(crate::corrupt);
        let key = get("operator_key")?;
        let operator = uuid::Uuid::parse_str(&key)
            .map(OperatorKey::from_uuid)
            .map_err(|e| StoreError::Corrupt(format!("login code of operator {key}: {e}")))?;
        let method = get("method")?;
        let method = AuthMethod::parse(&method)
            .map_err(|e| StoreError::Corrupt(format!("login code method {method:?}: {e}")))?;
        let code = CodeRow {
            code_hash: get("code_hash")?,
            business_id: get("business_id")?,
            operator,
            redirect_uri: get("redirect_uri")?,
            code_challenge: get("code_challenge")?,
            nonce: row.try_get::<Option<String>, _>("nonce").map_err(crate::corrupt)?,
            method,
            auth_time: row.try_get("auth_time").map_err(crate::corrupt)?,
            expires_at: row.try_get("expires_at").map_err(crate::corrupt)?,
        };
        Ok(if done.rows_affected() == 1 { Taken::Now(code) } else { Taken::Before(code) })
    }

    /// Deletes expired codes; how many went.
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM login_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }
}
