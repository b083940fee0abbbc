//! Personal data at rest in the read models (issue 12, point 7): the sealed column of a row and the keyed blind
//! indexes its searches go through.
//!
//! Owns [`RowSealer`]: sealing a row's personal fields as one blob under the subject's own data key (the key of
//! his events, from the [`KeyVault`]; AAD = table and row key, so a blob cannot be moved to another row), opening
//! the blobs of a page with one key fetch, writing a batch's new rows a group at a time (each group sealed while the
//! one before is written), and the search tokens: HMAC-SHA-256 under a search key derived from
//! the master key (`cardap read-model search index v1`) over `municipality 0x1f kind 0x1f value`, cut to
//! [`TOKEN_LEN`] bytes (the resident register's: 8 bytes, as an integer). Without the master key a copy of the
//! database shows neither the fields nor what the tokens stand for; a destroyed data key leaves a blob nobody can
//! open (the row reads as erased).
//!
//! Must not: log or put into an error a plaintext, a key, or the value a token was made of.

use std::collections::HashMap;
use std::sync::Arc;

use cardap_store::{DataKey, KeyVault, StoreError, StreamId};
use ring::hmac;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AnyConnection, Row};

use crate::ProjectionError;

/// Bytes of a search token: 128 bits are plenty against collisions in one municipality.
pub const TOKEN_LEN: usize = 16;

/// Subjects looked up per statement when a projection's batch needs keys this process has not cached.
const KEY_LOOKUP_CHUNK: usize = 500;

/// The label the search key is derived under; a new version means new tokens (a rebuild).
const SEARCH_KEY_LABEL: &str = "cardap read-model search index v1";

/// Rows sealed and ready to be written by one statement (a group of [`RowSealer::write_groups`]).
pub(crate) trait GroupWrite {
    async fn write(self, conn: &mut AnyConnection) -> Result<(), ProjectionError>;
}

/// Seals and opens read-model rows and makes their search tokens. Cheap to clone (shares the vault).
#[derive(Clone)]
pub struct RowSealer {
    vault: Arc<KeyVault>,
    search: hmac::Key,
}

impl std::fmt::Debug for RowSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowSealer(<redacted>)")
    }
}

impl RowSealer {
    /// Seals with the data keys of `vault` (share the process's one: it holds the key cache).
    pub fn new(vault: Arc<KeyVault>) -> Self {
        let search = hmac::Key::new(hmac::HMAC_SHA256, &vault.derive_key(SEARCH_KEY_LABEL));
        RowSealer { vault, search }
    }

    /// The blind index token of `value` as a `kind` of search in `municipality`.
    pub fn token(&self, municipality: &str, kind: &str, value: &str) -> Vec<u8> {
        self.mac(municipality, kind, value).as_ref()[..TOKEN_LEN].to_vec()
    }

    /// The same token cut to 64 bits, as an integer (the resident register's narrow blind index): the first 8 bytes
    /// of the HMAC, big-endian. A search through it checks each match against the opened row, so that a collision
    /// (about 2⁻⁶⁴ per pair of values) can only leave a page a row short, never show a wrong one.
    pub fn token64(&self, municipality: &str, kind: &str, value: &str) -> i64 {
        let mut first = [0_u8; 8];
        first.copy_from_slice(&self.mac(municipality, kind, value).as_ref()[..8]);
        i64::from_be_bytes(first)
    }

    fn mac(&self, municipality: &str, kind: &str, value: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.search);
        for (i, part) in [municipality, kind, value].into_iter().enumerate() {
            if i > 0 {
                ctx.update(&[0x1f]);
            }
            ctx.update(part.as_bytes());
        }
        ctx.sign()
    }

    /// The data keys of `subjects` for a projection, read inside its transaction `conn` when this process has
    /// not cached them (never through the vault's own pool: on SQLite that would wait for the event store's
    /// writer while this transaction holds the write lock). Destroyed and unknown subjects are absent.
    pub async fn keys_in(
        &self,
        conn: &mut AnyConnection,
        subjects: &[StreamId],
    ) -> Result<HashMap<StreamId, DataKey>, ProjectionError> {
        let cached = self.vault.cached(subjects);
        let mut keys: HashMap<StreamId, DataKey> =
            cached.iter().filter_map(|(s, k)| k.clone().map(|k| (s.clone(), k))).collect();
        let mut missing: Vec<&StreamId> = subjects.iter().filter(|s| !cached.contains_key(*s)).collect();
        missing.sort();
        missing.dedup();
        // One statement per chunk of subjects not cached (a batch of registrations brings hundreds at once).
        for chunk in missing.chunks(KEY_LOOKUP_CHUNK) {
            let marks = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT subject, wrapped_key FROM personal_data_keys WHERE subject IN ({marks})"
            )));
            for subject in chunk {
                query = query.bind(subject.as_str().to_owned());
            }
            let asked: HashMap<&str, &StreamId> = chunk.iter().map(|s| (s.as_str(), *s)).collect();
            let rows = query.fetch_all(&mut *conn).await.map_err(ProjectionError::from_sqlx)?;
            for row in rows {
                let subject: String = row.try_get("subject").map_err(ProjectionError::Database)?;
                let Some(subject) = asked.get(subject.as_str()) else { continue };
                let wrapped: Option<Vec<u8>> = row.try_get("wrapped_key").map_err(ProjectionError::Database)?;
                if let Some(key) = self.vault.adopt(subject, wrapped)? {
                    keys.insert((*subject).clone(), key);
                }
            }
        }
        Ok(keys)
    }

    /// Writes `items` (a batch's new rows) a group of `size` at a time: the data keys of their subjects (`subject`:
    /// none for a row without personal data) fetched first inside the transaction `conn`, then each group made ready
    /// (sealed, tokenized) by `prepare` while the database writes the group before it: the INSERT's future waits on
    /// the socket while the next group is sealed.
    pub(crate) async fn write_groups<'a, T, R: GroupWrite>(
        &self,
        conn: &mut AnyConnection,
        items: &'a [T],
        size: usize,
        subject: impl Fn(&T) -> Option<&StreamId>,
        prepare: impl Fn(&HashMap<StreamId, DataKey>, &'a [T]) -> Result<R, ProjectionError>,
    ) -> Result<(), ProjectionError> {
        if items.is_empty() {
            return Ok(());
        }
        let subjects: Vec<StreamId> = items.iter().filter_map(|item| subject(item).cloned()).collect();
        let keys = self.keys_in(conn, &subjects).await?;
        let mut groups = items.chunks(size);
        let mut next = groups.next().map(|group| prepare(&keys, group)).transpose()?;
        while let Some(ready) = next {
            let upcoming = groups.next();
            let (written, prepared) =
                tokio::join!(ready.write(conn), async { upcoming.map(|group| prepare(&keys, group)).transpose() });
            written?;
            next = prepared?;
        }
        Ok(())
    }

    /// The data keys of `subjects` for a query (one batch for those not cached). Destroyed and unknown subjects
    /// are absent: their rows read as erased.
    pub async fn keys(&self, subjects: &[StreamId]) -> Result<HashMap<StreamId, DataKey>, ProjectionError> {
        Ok(self.vault.get(subjects).await?)
    }

    /// A key derived from the master key for `label`, for rows with no subject to be erased with (see
    /// [`KeyVault::derived_data_key`]).
    pub fn derived_key(&self, label: &str) -> Result<DataKey, ProjectionError> {
        Ok(self.vault.derived_data_key(label)?)
    }

    /// `value` as JSON sealed under `key` for the row `aad`.
    pub fn seal<T: Serialize>(key: &DataKey, aad: &str, value: &T) -> Result<Vec<u8>, ProjectionError> {
        let plaintext = serde_json::to_vec(value).map_err(|_| {
            ProjectionError::Store(StoreError::Corrupt(format!("the personal data of {aad} is not JSON")))
        })?;
        Ok(key.seal_value(aad.as_bytes(), plaintext)?)
    }

    /// The value [`RowSealer::seal`] sealed for the row `aad`. A blob that does not open under the subject's key
    /// (altered, moved from another row) is an error, never silently erased data.
    pub fn open<T: DeserializeOwned>(key: &DataKey, aad: &str, sealed: &[u8]) -> Result<T, ProjectionError> {
        let corrupt = |what: &str| ProjectionError::Store(StoreError::Corrupt(format!("the sealed row {aad} {what}")));
        let plaintext = key.open_value(aad.as_bytes(), sealed).ok_or_else(|| corrupt("does not open under its key"))?;
        serde_json::from_slice(&plaintext).map_err(|_| corrupt("does not hold the expected fields"))
    }
}
