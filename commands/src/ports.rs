//! The ports the use cases own: what is not an event but a use case must read or write. Their adapters live
//! beside the store (`cardap_store::CredentialStore` for PostgreSQL and SQLite); the writes that must commit with
//! an event are not here but are `cardap_store::Companion`s of that event's append.

use async_trait::async_trait;
use cardap_domain::OperatorKey;
use cardap_domain::operator::AuthMethod;
use cardap_store::{CeremonyStore, CredentialStore, KeyVault, SessionRow, StoreError, StreamId};
use uuid::Uuid;

/// Password hashes, their history, and sessions (only a token's hash).
#[async_trait]
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// The operator's password hash, if he has one.
    async fn password_hash(&self, operator: OperatorKey) -> Result<Option<String>, StoreError>;
    /// Whether he must change his password before his sessions may do anything else.
    async fn password_change_required(&self, operator: OperatorKey) -> Result<bool, StoreError>;
    /// His last `depth` password hashes, newest first.
    async fn recent_hashes(&self, operator: OperatorKey, depth: usize) -> Result<Vec<String>, StoreError>;
    /// Stores a new session (Unix seconds).
    async fn create_session(
        &self,
        token_hash: &str,
        operator: OperatorKey,
        method: AuthMethod,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    /// The live session with this token hash: not ended, not expired, used after `idle_since`.
    async fn live_session(&self, token_hash: &str, now: i64, idle_since: i64)
    -> Result<Option<SessionRow>, StoreError>;
    /// Records a use of the session.
    async fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError>;
    /// Ends one session (logout).
    async fn end_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of an operator now; how many ended.
    async fn end_sessions_of(&self, operator: OperatorKey) -> Result<u64, StoreError>;
    /// Deletes the sessions that can never be used again (ended, expired, idle since before `idle_since`).
    async fn purge_sessions(&self, now: i64, idle_since: i64) -> Result<u64, StoreError>;
}

#[async_trait]
impl Credentials for CredentialStore {
    async fn password_hash(&self, operator: OperatorKey) -> Result<Option<String>, StoreError> {
        CredentialStore::password_hash(self, operator).await
    }

    async fn password_change_required(&self, operator: OperatorKey) -> Result<bool, StoreError> {
        CredentialStore::password_change_required(self, operator).await
    }

    async fn recent_hashes(&self, operator: OperatorKey, depth: usize) -> Result<Vec<String>, StoreError> {
        CredentialStore::recent_hashes(self, operator, depth).await
    }

    async fn create_session(
        &self,
        token_hash: &str,
        operator: OperatorKey,
        method: AuthMethod,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        CredentialStore::create_session(self, token_hash, operator, method, now, expires_at).await
    }

    async fn live_session(
        &self,
        token_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        CredentialStore::live_session(self, token_hash, now, idle_since).await
    }

    async fn touch_session(&self, token_hash: &str, now: i64) -> Result<(), StoreError> {
        CredentialStore::touch_session(self, token_hash, now).await
    }

    async fn end_session(&self, token_hash: &str) -> Result<(), StoreError> {
        CredentialStore::end_session(self, token_hash).await
    }

    async fn end_sessions_of(&self, operator: OperatorKey) -> Result<u64, StoreError> {
        CredentialStore::end_sessions_of(self, operator).await
    }

    async fn purge_sessions(&self, now: i64, idle_since: i64) -> Result<u64, StoreError> {
        CredentialStore::purge_sessions(self, now, idle_since).await
    }
}

/// WebAuthn ceremonies in progress (biometric login), shared by every node: each is taken once at most.
#[async_trait]
pub trait Ceremonies: Send + Sync + std::fmt::Debug {
    /// Keeps a ceremony of `kind` until `expires_at` (Unix seconds).
    async fn put(&self, id: Uuid, kind: &str, payload: &str, expires_at: i64) -> Result<(), StoreError>;
    /// The ceremony, removed in the same step; `None` when unknown, taken already, of another kind or expired.
    async fn take(&self, id: Uuid, kind: &str, now: i64) -> Result<Option<String>, StoreError>;
    /// Deletes the expired ceremonies; how many.
    async fn purge(&self, now: i64) -> Result<u64, StoreError>;
}

#[async_trait]
impl Ceremonies for CeremonyStore {
    async fn put(&self, id: Uuid, kind: &str, payload: &str, expires_at: i64) -> Result<(), StoreError> {
        CeremonyStore::put(self, id, kind, payload, expires_at).await
    }

    async fn take(&self, id: Uuid, kind: &str, now: i64) -> Result<Option<String>, StoreError> {
        CeremonyStore::take(self, id, kind, now).await
    }

    async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        CeremonyStore::purge(self, now).await
    }
}

/// The data keys of crypto-shredding, as erasure needs them: destroy one for good.
#[async_trait]
pub trait DataKeys: Send + Sync + std::fmt::Debug {
    /// Destroys the data key of `subject` (a stream id) for good; idempotent.
    async fn destroy(&self, subject: &StreamId) -> Result<(), StoreError>;
}

#[async_trait]
impl DataKeys for KeyVault {
    async fn destroy(&self, subject: &StreamId) -> Result<(), StoreError> {
        KeyVault::destroy(self, subject).await
    }
}
