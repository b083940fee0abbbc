//! Operator authentication at the HTTP edge: Argon2id password hashes (hashed off the async threads),
//! opaque session tokens (only their SHA-256 is stored), idle and absolute timeouts, and the [`Authenticated`]
//! extractor that turns a `Bearer` token into the acting operator. Never logs a password or a token.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardap_commands::Actor;
use cardap_domain::OperatorKey;
use cardap_projections::operators;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::error::ApiError;
use crate::state::AppState;

/// A secret (password, token) that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub absolute: Duration,
}

/// Hashes a password with Argon2id (OWASP parameters: m=19456 KiB, t=2, p=1) on a blocking thread.
pub async fn hash_password(password: Secret) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(ApiError::internal)?
}

fn hash_now(password: &Secret) -> Result<String, ApiError> {
    let mut salt = [0_u8; 16];
    getrandom::fill(&mut salt).map_err(ApiError::internal)?;
    Argon2::default()
        .hash_password_with_salt(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

/// Verifies a password against a stored hash on a blocking thread. With no stored hash, a dummy hash with the
/// same parameters is verified instead, so an unknown operator ID takes as long to refuse as a wrong password.
pub async fn verify_password(password: Secret, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let hash = match stored {
            Some(h) => h,
            None => dummy_hash()?.to_owned(),
        };
        let ok = Argon2::default().verify_password(password.expose().as_bytes(), hash.as_str()).is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(ApiError::internal)?
}

/// The hash of a random password nobody knows, made once per process with the real parameters.
fn dummy_hash() -> Result<&'static str, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let hash = hash_now(&generate_password(24)?)?;
    Ok(DUMMY.get_or_init(|| hash))
}

/// A random password of `len` half-width alphanumerics (CSPRNG, no modulo bias).
pub fn generate_password(len: usize) -> Result<Secret, ApiError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0_u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).map_err(ApiError::internal)?;
        for b in buf {
            // 57 symbols: accept bytes below 4 × 57 = 228 to keep the distribution uniform.
            if b < 228 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    Ok(Secret(out))
}

/// Stores the password hash of an operator. With `only_if_absent`, an existing hash is kept (returns false).
pub async fn store_credential(
    pool: &AnyPool,
    operator: OperatorKey,
    hash: &str,
    only_if_absent: bool,
) -> Result<bool, ApiError> {
    let sql = if only_if_absent {
        "INSERT INTO credentials (operator_key, password_hash, changed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (operator_key) DO NOTHING"
    } else {
        "INSERT INTO credentials (operator_key, password_hash, changed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (operator_key) DO UPDATE SET password_hash = excluded.password_hash, changed_at = excluded.changed_at"
    };
    let done = sqlx::query(sql)
        .bind(operator.to_string())
        .bind(hash.to_owned())
        .bind(Utc::now().to_rfc3339())
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected() > 0)
}

pub async fn credential_of(pool: &AnyPool, operator: OperatorKey) -> Result<Option<String>, ApiError> {
    let row = sqlx::query("SELECT password_hash FROM credentials WHERE operator_key = $1")
        .bind(operator.to_string())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    row.map(|r| r.try_get::<String, _>("password_hash").map_err(ApiError::internal)).transpose()
}

/// A new session's token (shown once to the client) and its absolute expiry.
#[derive(Debug)]
pub struct NewSession {
    pub token: Secret,
    pub expires_at: DateTime<Utc>,
}

pub async fn create_session(
    pool: &AnyPool,
    operator: OperatorKey,
    policy: SessionPolicy,
) -> Result<NewSession, ApiError> {
    let mut raw = [0_u8; 32];
    getrandom::fill(&mut raw).map_err(ApiError::internal)?;
    let token = URL_SAFE_NO_PAD.encode(raw);
    let now = Utc::now();
    let expires_at = now + chrono::Duration::from_std(policy.absolute).map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, operator_key, created_at, last_seen_at, expires_at, ended) \
         VALUES ($1, $2, $3, $3, $4, 0)",
    )
    .bind(token_hash(&token))
    .bind(operator.to_string())
    .bind(now.timestamp())
    .bind(expires_at.timestamp())
    .execute(pool)
    .await
    .map_err(db_error)?;
    Ok(NewSession { token: Secret(token), expires_at })
}

pub async fn end_session(pool: &AnyPool, token: &Secret) -> Result<(), ApiError> {
    sqlx::query("UPDATE sessions SET ended = 1 WHERE token_hash = $1")
        .bind(token_hash(token.expose()))
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Ends every session of an operator (revocation, password reset, or an administrator's decision).
pub async fn end_sessions_of(pool: &AnyPool, operator: OperatorKey) -> Result<u64, ApiError> {
    let done = sqlx::query("UPDATE sessions SET ended = 1 WHERE operator_key = $1 AND ended = 0")
        .bind(operator.to_string())
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected())
}

/// Sets an operator's password hash and remembers it for the reuse check.
pub async fn set_password(pool: &AnyPool, operator: OperatorKey, hash: &str) -> Result<(), ApiError> {
    store_credential(pool, operator, hash, false).await?;
    sqlx::query("INSERT INTO password_history (operator_key, password_hash, changed_at) VALUES ($1, $2, $3)")
        .bind(operator.to_string())
        .bind(hash.to_owned())
        .bind(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Whether `password` is one of the operator's last `history` passwords.
pub async fn was_used_recently(
    pool: &AnyPool,
    operator: OperatorKey,
    password: &Secret,
    history: usize,
) -> Result<bool, ApiError> {
    if history == 0 {
        return Ok(false);
    }
    let rows = sqlx::query(
        "SELECT password_hash FROM password_history WHERE operator_key = $1 ORDER BY changed_at DESC LIMIT $2",
    )
    .bind(operator.to_string())
    .bind(i64::try_from(history).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await
    .map_err(db_error)?;
    let hashes: Vec<String> =
        rows.iter().map(|r| r.try_get("password_hash")).collect::<Result<_, _>>().map_err(ApiError::internal)?;
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        hashes.iter().any(|h| Argon2::default().verify_password(password.expose().as_bytes(), h.as_str()).is_ok())
    })
    .await
    .map_err(ApiError::internal)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn db_error(e: sqlx::Error) -> ApiError {
    cardap_store::StoreError::from_sqlx(e).into()
}

/// The operator behind a request, from a valid `Authorization: Bearer` session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub actor: Actor,
    /// The operator's login ID (for `/me`).
    pub operator_id: String,
    pub token: Secret,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| Secret(t.trim().to_owned()))
            .ok_or_else(ApiError::unauthenticated)?;
        let pool = state.read.pool();
        let now = Utc::now().timestamp();
        let idle = i64::try_from(state.sessions.idle.as_secs()).unwrap_or(i64::MAX);
        let row = sqlx::query(
            "SELECT operator_key, last_seen_at FROM sessions \
             WHERE token_hash = $1 AND ended = 0 AND expires_at > $2 AND last_seen_at > $3",
        )
        .bind(token_hash(token.expose()))
        .bind(now)
        .bind(now.saturating_sub(idle))
        .fetch_optional(pool)
        .await
        .map_err(db_error)?
        .ok_or_else(ApiError::unauthenticated)?;
        let key: String = row.try_get("operator_key").map_err(ApiError::internal)?;
        let last_seen: i64 = row.try_get("last_seen_at").map_err(ApiError::internal)?;
        let key = OperatorKey::from_uuid(uuid::Uuid::parse_str(&key).map_err(ApiError::internal)?);
        let operator = operators::get(pool, key).await?.ok_or_else(ApiError::unauthenticated)?;
        // A revoked or locked operator's sessions die at once.
        if !operator.is_active_at(now) {
            return Err(ApiError::unauthenticated());
        }
        // Touch the session at most once a minute: the idle timeout needs no finer grain.
        if now - last_seen >= 60 {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash(token.expose()))
                .execute(pool)
                .await
                .map_err(db_error)?;
        }
        Ok(Authenticated {
            actor: Actor {
                operator: operator.key,
                municipality: operator.municipality,
                roles: operator.roles,
                business_systems: operator.business_systems,
            },
            operator_id: operator.operator_id,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password(Secret::new("Passw0rdOK")).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Secret::new("Passw0rdOK"), Some(hash.clone())).await.unwrap());
        assert!(!verify_password(Secret::new("wrong"), Some(hash)).await.unwrap());
        assert!(!verify_password(Secret::new("anything"), None).await.unwrap());
    }

    #[test]
    fn generated_passwords_are_half_width_alphanumeric_and_differ() {
        let a = generate_password(16).unwrap();
        let b = generate_password(16).unwrap();
        assert_eq!(a.expose().len(), 16);
        assert!(a.expose().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }
}
