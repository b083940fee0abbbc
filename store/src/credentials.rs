//! The adapter for what an operator's authentication keeps outside the event log: password hashes (Argon2id PHC
//! strings), the recent hashes for the reuse check, and sessions (only the SHA-256 of a token); and the internal
//! CA's private keys, sealed under the master key before they get here (`ca_keys`).
//!
//! Owns the SQL of the `credentials`, `password_history`, `sessions` and `ca_keys` tables on both backends.
//! Writes that must commit with an event (a new password hash, the end of an operator's sessions) are [`Companion`]s: the event
//! store runs them in the transaction of the append that needs them ([`crate::EventStore::append_with`]), so a
//! password change either happens whole — event, hash, ended sessions — or not at all. It never sees a password
//! or a token in clear, and it decides nothing: the rules (lifetimes, reuse depth) come from the caller.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{AnyPool, Row};

use cardap_domain::OperatorKey;
use cardap_domain::operator::AuthMethod;

use crate::StoreError;

/// A write that is not an event but must commit in the same transaction as the events that need it.
#[derive(Clone, PartialEq, Eq)]
pub enum Companion {
    /// The operator's password hash becomes `hash` (an Argon2id PHC string), remembered for the reuse check.
    SetPassword { operator: OperatorKey, hash: String, at: DateTime<Utc> },
    /// Every running session of the operator ends.
    EndSessions { operator: OperatorKey },
    /// Every session of the operator ends but the one whose token hashes to `keep` (his own password change:
    /// whoever else holds a session of his is out).
    EndOtherSessions { operator: OperatorKey, keep: String },
    /// The password just stored must be changed at the next login before anything else (a password someone else
    /// knows: the generated first password of the system administrator). Storing a new password clears it.
    RequirePasswordChange { operator: OperatorKey },
    /// Everything kept for the operator's logins goes: his password hash, its history and his sessions (a
    /// revocation: an operator registered later under the same ID starts with nothing of his).
    Forget { operator: OperatorKey },
    /// A private key of the internal CA (`name`: `issuing` or `root`), already sealed under the master key
    /// (base64 of [`crate::MasterKey::seal_secret`]'s output): stored with `CaCreated`, never in clear.
    StoreCaKey { name: String, sealed: String, at: DateTime<Utc> },
    /// A business system's new client secret (its SHA-256, hex) replaces the old one: stored with
    /// `BusinessSystemLoginSecretIssued`.
    SetLoginSecret { business_id: String, hash: String, at: DateTime<Utc> },
    /// A business system's new webhook signing secret, sealed under the master key (base64), replaces the old
    /// one: stored with `BusinessSystemWebhookSecretIssued` (table of `crate::webhooks`).
    SetWebhookSecret { business_id: String, sealed: String, at: DateTime<Utc> },
}

impl std::fmt::Debug for Companion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // A hash is no password, but it is still nothing for a log.
            Companion::SetPassword { operator, at, .. } => {
                f.debug_struct("SetPassword").field("operator", operator).field("at", at).finish_non_exhaustive()
            }
            Companion::EndSessions { operator } => f.debug_struct("EndSessions").field("operator", operator).finish(),
            Companion::Forget { operator } => f.debug_struct("Forget").field("operator", operator).finish(),
            Companion::RequirePasswordChange { operator } => {
                f.debug_struct("RequirePasswordChange").field("operator", operator).finish()
            }
            Companion::EndOtherSessions { operator, .. } => {
                f.debug_struct("EndOtherSessions").field("operator", operator).finish_non_exhaustive()
            }
            Companion::StoreCaKey { name, at, .. } => {
                f.debug_struct("StoreCaKey").field("name", name).field("at", at).finish_non_exhaustive()
            }
            Companion::SetWebhookSecret { business_id, at, .. } => f
                .debug_struct("SetWebhookSecret")
                .field("business_id", business_id)
                .field("at", at)
                .finish_non_exhaustive(),
            Companion::SetLoginSecret { business_id, at, .. } => f
                .debug_struct("SetLoginSecret")
                .field("business_id", business_id)
                .field("at", at)
                .finish_non_exhaustive(),
        }
    }
}

const UPSERT_CREDENTIAL: &str = "INSERT INTO credentials (operator_key, password_hash, changed_at) VALUES ($1, $2, $3) \
     ON CONFLICT (operator_key) DO UPDATE SET password_hash = excluded.password_hash, changed_at = excluded.changed_at, \
     must_change = 0";
const REQUIRE_CHANGE: &str = "UPDATE credentials SET must_change = 1 WHERE operator_key = $1";
const REMEMBER_HASH: &str =
    "INSERT INTO password_history (operator_key, password_hash, changed_at) VALUES ($1, $2, $3)";
const END_SESSIONS: &str = "UPDATE sessions SET ended = 1 WHERE operator_key = $1 AND ended = 0";
const END_OTHER_SESSIONS: &str =
    "UPDATE sessions SET ended = 1 WHERE operator_key = $1 AND ended = 0 AND token_hash <> $2";
const SET_LOGIN_SECRET: &str = "INSERT INTO login_client_secrets (business_id, secret_hash, issued_at) \
     VALUES ($1, $2, $3) ON CONFLICT (business_id) DO UPDATE SET secret_hash = excluded.secret_hash, \
     issued_at = excluded.issued_at";
const SET_WEBHOOK_SECRET: &str = "INSERT INTO webhook_secrets (business_id, sealed, issued_at) \
     VALUES ($1, $2, $3) ON CONFLICT (business_id) DO UPDATE SET sealed = excluded.sealed, \
     issued_at = excluded.issued_at";
const STORE_CA_KEY: &str = "INSERT INTO ca_keys (name, sealed_key, created_at) VALUES ($1, $2, $3)";
const FORGET: [&str; 3] = [
    "DELETE FROM credentials WHERE operator_key = $1",
    "DELETE FROM password_history WHERE operator_key = $1",
    "DELETE FROM sessions WHERE operator_key = $1",
];

/// Runs companions on a connection of either backend (the SQL is the same on both).
macro_rules! write_companions {
    ($conn:expr, $companions:expr) => {{
        for companion in $companions {
            match companion {
                Companion::SetPassword { operator, hash, at } => {
                    sqlx::query(UPSERT_CREDENTIAL)
                        .bind(operator.to_string())
                        .bind(hash.clone())
                        .bind(at.to_rfc3339())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                    sqlx::query(REMEMBER_HASH)
                        .bind(operator.to_string())
                        .bind(hash.clone())
                        .bind(at.to_rfc3339_opts(SecondsFormat::Micros, true))
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::RequirePasswordChange { operator } => {
                    sqlx::query(REQUIRE_CHANGE)
                        .bind(operator.to_string())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::EndSessions { operator } => {
                    sqlx::query(END_SESSIONS)
                        .bind(operator.to_string())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::EndOtherSessions { operator, keep } => {
                    sqlx::query(END_OTHER_SESSIONS)
                        .bind(operator.to_string())
                        .bind(keep.clone())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::StoreCaKey { name, sealed, at } => {
                    sqlx::query(STORE_CA_KEY)
                        .bind(name.clone())
                        .bind(sealed.clone())
                        .bind(at.to_rfc3339())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::SetLoginSecret { business_id, hash, at } => {
                    sqlx::query(SET_LOGIN_SECRET)
                        .bind(business_id.clone())
                        .bind(hash.clone())
                        .bind(at.to_rfc3339())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::SetWebhookSecret { business_id, sealed, at } => {
                    sqlx::query(SET_WEBHOOK_SECRET)
                        .bind(business_id.clone())
                        .bind(sealed.clone())
                        .bind(at.to_rfc3339())
                        .execute(&mut *$conn)
                        .await
                        .map_err(StoreError::from_sqlx)?;
                }
                Companion::Forget { operator } => {
                    for statement in FORGET {
                        sqlx::query(statement)
                            .bind(operator.to_string())
                            .execute(&mut *$conn)
                            .await
                            .map_err(StoreError::from_sqlx)?;
                    }
                }
            }
        }
        Ok::<(), StoreError>(())
    }};
}

pub(crate) async fn write_postgres(conn: &mut sqlx::PgConnection, companions: &[Companion]) -> Result<(), StoreError> {
    write_companions!(conn, companions)
}

pub(crate) async fn write_sqlite(
    conn: &mut sqlx::SqliteConnection,
    companions: &[Companion],
) -> Result<(), StoreError> {
    write_companions!(conn, companions)
}

/// A session found by its token's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRow {
    pub operator: OperatorKey,
    /// Unix seconds of the last recorded use.
    pub last_seen_at: i64,
    /// His password must be changed before the session may do anything else.
    pub password_change_required: bool,
    /// How he proved who he was when the session began.
    pub method: AuthMethod,
}

/// Credentials and sessions over the read-model pool (the same database as the event store).
#[derive(Debug, Clone)]
pub struct CredentialStore {
    pool: AnyPool,
}

impl CredentialStore {
    pub fn new(pool: AnyPool) -> Self {
        CredentialStore { pool }
    }

    /// The sealed CA key `name` (`issuing`, `root`) as stored by [`Companion::StoreCaKey`], if there is one.
    pub async fn sealed_ca_key(&self, name: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT sealed_key FROM ca_keys WHERE name = $1")
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.map(|r| r.try_get::<String, _>("sealed_key").map_err(crate::corrupt)).transpose()
    }

    /// Deletes the sealed CA key `name` (the root key, once exported to be kept offline); whether there was one.
    pub async fn remove_ca_key(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM ca_keys WHERE name = $1")
            .bind(name.to_owned())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected() > 0)
    }

    /// The operator's password hash, if he has one.
    pub async fn password_hash(&self, operator: OperatorKey) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM credentials WHERE operator_key = $1")
            .bind(operator.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.map(|r| r.try_get::<String, _>("password_hash").map_err(crate::corrupt)).transpose()
    }

    /// Whether the operator must change his password before his sessions may do anything else.
    pub async fn password_change_required(&self, operator: OperatorKey) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT must_change FROM credentials WHERE operator_key = $1")
            .bind(operator.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        let must_change = row.map(|r| r.try_get::<i64, _>("must_change").map_err(crate::corrupt)).transpose()?;
        Ok(must_change.is_some_and(|m| m != 0))
    }

    /// The operator's last `depth` password hashes, newest first.
    pub async fn recent_hashes(&self, operator: OperatorKey, depth: usize) -> Result<Vec<String>, StoreError> {
        if depth == 0 {
            return Ok(vec![]);
        }
        let rows = sqlx::query(
            "SELECT password_hash FROM password_history WHERE operator_key = $1 ORDER BY changed_at DESC LIMIT $2",
        )
        .bind(operator.to_string())
        .bind(i64::try_from(depth).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter().map(|r| r.try_get("password_hash").map_err(crate::corrupt)).collect()
    }

    /// Stores a new session (times in Unix seconds).
    pub async fn create_session(
        &self,
        token_hash: &str,
        operator: OperatorKey,
        method: AuthMethod,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, operator_key, created_at, last_seen_at, expires_at, ended, method) \
             VALUES ($1, $2, $3, $3, $4, 0, $5)",
        )
        .bind(token_hash.to_owned())
        .bind(operator.to_string())
        .bind(now)
        .bind(expires_at)
        .bind(method.as_str())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// The live session with this token hash: not ended, not past `expires_at`, used after `idle_since`.
    pub async fn live_session(
        &self,
        token_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT s.operator_key, s.last_seen_at, s.method, COALESCE(c.must_change, 0) AS must_change FROM sessions s \
             LEFT JOIN credentials c ON c.operator_key = s.operator_key \
             WHERE s.token_hash = $1 AND s.ended = 0 AND s.expires_at > $2 AND s.last_seen_at > $3",
        )
        .bind(token_hash.to_owned())
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        let Some(row) = row else { return Ok(None) };
        let key: String = row.try_get("operator_key").map_err(crate::corrupt)?;
        let last_seen_at: i64 = row.try_get("last_seen_at").map_err(crate::corrupt)?;
        let must_change: i64 = row.try_get("must_change").map_err(crate::corrupt)?;
        let method: String = row.try_get("method").map_err(crate::corrupt)?;
        let method = AuthMethod::parse(&method)
            .map_err(|e| StoreError::Corrupt(format!("session of operator {key}: method {method:?}: {e}")))?;
        let operator = uuid::Uuid::parse_str(&key)
            .map(OperatorKey::from_uuid)
            .map_err(|e| StoreError::Corrupt(format!("session of operator {key}: {e}")))?;
        Ok(Some(SessionRow { operator, last_seen_at, password_change_required: must_change != 0, method }))
    }

    /// Records a use of the session.
    pub async fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Ends one session (logout).
    pub async fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET ended = 1 WHERE token_hash = $1")
            .bind(token_hash.to_owned())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    /// Ends every session of an operator that is not tied to an event of its own; returns how many ended.
    pub async fn end_sessions_of(&self, operator: OperatorKey) -> Result<u64, StoreError> {
        let done = sqlx::query(END_SESSIONS)
            .bind(operator.to_string())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }

    /// Deletes the sessions that can never be used again: ended ones, and those past their absolute expiry or
    /// unused since `idle_since` (Unix seconds); how many.
    pub async fn purge_sessions(&self, now: i64, idle_since: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE ended = 1 OR expires_at <= $1 OR last_seen_at < $2")
            .bind(now)
            .bind(idle_since)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }
}
