//! The keys of crypto-shredding: the master key from configuration and the per-subject data keys that seal
//! personal data in events (the sealed form itself is `sealed.rs`'s).
//!
//! Owns [`MasterKey`] (loading, creating and redacting it), [`KeyVault`] (the `personal_data_keys` table on either
//! backend, wrapping and unwrapping, the master-key check, the in-process cache of unwrapped keys) and
//! [`DataKey`]. A data key is 32 random bytes for AES-256-GCM; it is stored only wrapped: sealed under the master
//! key with AAD = subject, as `nonce || ciphertext`. Destroying a subject's key sets `wrapped_key` to NULL for
//! good: the subject is never given a new key, so nothing personal can be recorded for it again.
//!
//! Must not: store a data key in clear, or put key material or plaintext into a log line or an error message.
//!
//! Limits an operator should know:
//! - The cache is per process. [`KeyVault::destroy`] clears this process's entry; another node keeps using its
//!   cached key until the erasure workflow (a later issue) tells it, through [`KeyVault::forget`].
//! - Old copies of a wrapped key (PostgreSQL row versions until VACUUM, WAL, backups; SQLite WAL frames until the
//!   next checkpoint) stay readable by whoever also has the master key until they age out. SQLite connections of
//!   the vault run with `secure_delete` so the database file itself does not keep the overwritten key.
//! - Keys are not zeroed in memory when dropped (there is no safe way to do that without another dependency).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::{PgPool, Row, SqlitePool};
use tokio::sync::OnceCell;

use crate::{Database, StoreError, StreamId, corrupt};

/// Bytes in a master key and in a data key (AES-256).
const KEY_LEN: usize = 32;

/// AES-GCM appends a 16-byte tag.
const TAG_LEN: usize = 16;

/// The canary row: a random key wrapped under the master key, to tell a wrong master key from altered rows.
/// Not a valid stream id, so no subject can collide with it.
const MASTER_KEY_CHECK: &str = "__master_key_check__";

/// How many unwrapped data keys (and destroyed subjects) a [`KeyVault`] keeps in memory, about 100 bytes each: two
/// generations of half as many ([`KeyCache`]).
pub const KEY_CACHE_CAPACITY: usize = 100_000;

/// Why a master key could not be loaded or made. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key is not valid base64 (standard alphabet, with padding)")]
    NotBase64,
    #[error("the master key must be {KEY_LEN} bytes, found {0}")]
    WrongLength(usize),
    #[error("master key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random generator failed")]
    Random,
}

/// The key that wraps every data key: 32 bytes from configuration (base64). Never printed or logged.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    key: LessSafeKey,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<MasterKey, MasterKeyError> {
        let mut bytes = [0_u8; KEY_LEN];
        SystemRandom::new().fill(&mut bytes).map_err(|_| MasterKeyError::Random)?;
        Self::from_bytes(bytes)
    }

    /// A master key from its base64 text (surrounding whitespace ignored), as in a key file or a setting.
    pub fn from_base64(text: &str) -> Result<MasterKey, MasterKeyError> {
        let decoded = STANDARD.decode(text.trim()).map_err(|_| MasterKeyError::NotBase64)?;
        let bytes: [u8; KEY_LEN] =
            decoded.as_slice().try_into().map_err(|_| MasterKeyError::WrongLength(decoded.len()))?;
        Self::from_bytes(bytes)
    }

    /// Reads the base64 key file at `path`, or creates it (mode 0600, parent folders as needed) with a new key.
    /// Returns the key and whether it was created now. Concurrent callers end with one file and one key (see
    /// [`read_or_create_private_file`]).
    pub fn load_or_create(path: impl AsRef<Path>) -> Result<(MasterKey, bool), MasterKeyError> {
        let path = path.as_ref();
        let fresh = format!("{}\n", STANDARD.encode(Self::generate()?.bytes));
        let (text, created) = read_or_create_private_file(path, "master key", &fresh)
            .map_err(|source| MasterKeyError::Io { path: path.to_owned(), source })?;
        Ok((Self::from_base64(&text)?, created))
    }

    /// Seals a secret that is kept outside the event log (the CA's private keys) under the master key itself:
    /// AES-256-GCM with AAD = `label` (what the secret is, so a sealed value cannot be moved to another row),
    /// as `nonce || ciphertext || tag`. Never put the plaintext in a log line or an error.
    pub fn seal_secret(&self, label: &str, plaintext: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let (nonce, mut sealed) = seal_with(&self.key, label.as_bytes(), plaintext)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.append(&mut sealed);
        Ok(out)
    }

    /// A key for one purpose, derived from the master key (HMAC-SHA-256 keyed with it over `label`): the same on
    /// every node that has the master key, another for every label, and telling nothing of the master key.
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.bytes);
        let tag = ring::hmac::sign(&key, label.as_bytes());
        let mut out = [0_u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The secret [`MasterKey::seal_secret`] sealed under `label`, or `None` when this is not the master key it
    /// was sealed with, the label differs, or the bytes were altered.
    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        open_with(&self.key, nonce.try_into().ok()?, label.as_bytes(), ciphertext.to_vec())
    }

    /// A secret derived from the master key for one purpose (`label`): HMAC-SHA-256 of the label under the master
    /// key (HKDF's extract-and-expand in one step, for a single 32-byte output). It exists only in memory, as
    /// sealed as the master key itself: whoever has one has the other. The card keys of the local-area profile
    /// derive from `cardap card keys v1` (`cardap_commands::card_writes`).
    pub fn derive_secret(&self, label: &str) -> [u8; KEY_LEN] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.bytes);
        let mut out = [0_u8; KEY_LEN];
        out.copy_from_slice(ring::hmac::sign(&key, label.as_bytes()).as_ref());
        out
    }

    fn from_bytes(bytes: [u8; KEY_LEN]) -> Result<MasterKey, MasterKeyError> {
        let key = aes_key(&bytes).ok_or(MasterKeyError::WrongLength(KEY_LEN))?;
        Ok(MasterKey { bytes, key })
    }
}

/// Reads the secret file at `path` (a key file: the master key, the audit key), or creates it with `fresh` (mode
/// 0600, parent folders as needed); the text and whether it was created now. Concurrent callers end with one file:
/// it is written under a temporary name and linked into place, never over an existing one. `what` names the file
/// in the log lines (a warning when other users may read it); the contents are never logged.
pub fn read_or_create_private_file(path: &Path, what: &str, fresh: &str) -> std::io::Result<(String, bool)> {
    match read_private(path, what) {
        Ok(text) => return Ok((text, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path.file_name().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut suffix = [0_u8; 8];
    SystemRandom::new().fill(&mut suffix).map_err(|_| std::io::Error::other("the system random generator failed"))?;
    let temp = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let linked = write_private(&temp, fresh.as_bytes()).and_then(|()| std::fs::hard_link(&temp, path));
    // The temporary name is only a step; a failure to remove it changes nothing for the key.
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // Best effort: make the new name durable too.
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            tracing::info!(path = %path.display(), "created a new {what} file");
            Ok((fresh.to_owned(), true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read_private(path, what)?, false)),
        Err(e) => Err(e),
    }
}

fn read_private(path: &Path, what: &str) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the {what} file can be read by other users: chmod 600 it");
        }
    }
    Ok(text)
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn aes_key(bytes: &[u8]) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, bytes).ok().map(LessSafeKey::new)
}

/// AES-256-GCM with a random 96-bit nonce. Returns the nonce and the ciphertext with its tag.
fn seal_with(key: &LessSafeKey, aad: &[u8], mut in_out: Vec<u8>) -> Result<([u8; NONCE_LEN], Vec<u8>), StoreError> {
    let nonce = fresh_nonce()?;
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| StoreError::Crypto("AES-256-GCM sealing failed"))?;
    Ok((nonce, in_out))
}

/// Random nonces drawn from the system's generator [`NONCES_PER_DRAW`] at a time (one system call for many seals:
/// a registry import seals several values per row). A nonce is stored beside its ciphertext and is no secret; what
/// matters is that it is random, which a buffer of the system generator's output is.
const NONCES_PER_DRAW: usize = 256;

struct NoncePool {
    bytes: [u8; NONCE_LEN * NONCES_PER_DRAW],
    used: usize,
}

fn fresh_nonce() -> Result<[u8; NONCE_LEN], StoreError> {
    thread_local! {
        static POOL: std::cell::RefCell<NoncePool> =
            const { std::cell::RefCell::new(NoncePool { bytes: [0; NONCE_LEN * NONCES_PER_DRAW], used: usize::MAX }) };
    }
    POOL.with_borrow_mut(|pool| {
        if pool.used >= NONCES_PER_DRAW {
            SystemRandom::new()
                .fill(&mut pool.bytes)
                .map_err(|_| StoreError::Crypto("the system random generator failed"))?;
            pool.used = 0;
        }
        let mut nonce = [0_u8; NONCE_LEN];
        nonce.copy_from_slice(&pool.bytes[pool.used * NONCE_LEN..(pool.used + 1) * NONCE_LEN]);
        pool.used += 1;
        Ok(nonce)
    })
}

/// The plaintext, or `None` when the tag does not match (altered, other AAD, other key).
fn open_with(key: &LessSafeKey, nonce: [u8; NONCE_LEN], aad: &[u8], mut in_out: Vec<u8>) -> Option<Vec<u8>> {
    let len = key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out).ok()?.len();
    in_out.truncate(len);
    Some(in_out)
}

/// One subject's unwrapped data key. Lives in memory only; never printed.
#[derive(Clone)]
pub struct DataKey(Arc<LessSafeKey>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// Seals `plaintext` with a fresh random nonce: `(nonce, ciphertext || tag)`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: Vec<u8>) -> Result<([u8; NONCE_LEN], Vec<u8>), StoreError> {
        seal_with(&self.0, aad, plaintext)
    }

    /// The plaintext, or `None` if the ciphertext, the nonce or the AAD is not the sealed one.
    pub(crate) fn open(&self, nonce: [u8; NONCE_LEN], aad: &[u8], ciphertext: Vec<u8>) -> Option<Vec<u8>> {
        open_with(&self.0, nonce, aad, ciphertext)
    }

    /// Seals a value kept outside the event log under this subject's key (a read model's personal columns):
    /// AES-256-GCM with a fresh random nonce, as `nonce || ciphertext || tag`. `aad` says where the value belongs
    /// (table and row), so that it cannot be moved to another row.
    pub fn seal_value(&self, aad: &[u8], plaintext: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let (nonce, mut sealed) = self.seal(aad, plaintext)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.append(&mut sealed);
        Ok(out)
    }

    /// The value [`DataKey::seal_value`] sealed with `aad`, or `None` when it was altered, belongs to another row
    /// or was sealed under another key.
    pub fn open_value(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.open(nonce.try_into().ok()?, aad, ciphertext.to_vec())
    }
}

/// What the cache knows of a subject. A destroyed key is destroyed for good, so that is cached too; a subject
/// without a key is not (another node may create it).
#[derive(Clone)]
enum Cached {
    Key(DataKey),
    Destroyed,
}

/// The vault's cache in two generations: new entries go into the young one; when it is full it becomes the old
/// one (the old one is dropped) and a new young one starts; a hit in the old one moves the entry back into the young
/// one. So a follower a little behind a writer (a projection behind an import of a million new subjects) still
/// finds the keys the writer made, where clearing a full cache would lose them all at once.
#[derive(Default)]
struct KeyCache {
    young: HashMap<String, Cached>,
    old: HashMap<String, Cached>,
}

impl KeyCache {
    const GENERATION: usize = KEY_CACHE_CAPACITY / 2;

    fn get(&mut self, subject: &str) -> Option<Cached> {
        if let Some(entry) = self.young.get(subject) {
            return Some(entry.clone());
        }
        let entry = self.old.remove(subject)?;
        self.insert(subject.to_owned(), entry.clone());
        Some(entry)
    }

    fn insert(&mut self, subject: String, entry: Cached) {
        if self.young.len() >= Self::GENERATION && !self.young.contains_key(&subject) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&subject);
        self.young.insert(subject, entry);
    }

    fn remove(&mut self, subject: &str) {
        self.young.remove(subject);
        self.old.remove(subject);
    }

    fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[derive(Clone)]
enum VaultPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The data keys of all subjects, in the `personal_data_keys` table of the event store's database.
pub struct KeyVault {
    pool: VaultPool,
    master: MasterKey,
    cache: Mutex<KeyCache>,
    /// Set once the canary row has been unwrapped by this vault's master key.
    checked: OnceCell<()>,
}

impl fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.pool {
            VaultPool::Postgres(_) => "postgres",
            VaultPool::Sqlite(_) => "sqlite",
        };
        f.debug_struct("KeyVault")
            .field("backend", &backend)
            .field("master", &self.master)
            .field("cached", &self.lock_cache().len())
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The key vault of this database, with `master` wrapping its data keys. Build one per process and share it
    /// (it holds the key cache). On SQLite it writes through the event store's single writer.
    pub fn key_vault(&self, master: MasterKey) -> Result<Arc<KeyVault>, StoreError> {
        match (self.postgres_pool(), self.sqlite_writer()) {
            (Some(pool), _) => Ok(Arc::new(KeyVault::postgres(pool.clone(), master))),
            // The event store's single writer: key creation and appends take turns instead of racing for the lock.
            (None, Some(writer)) => Ok(Arc::new(KeyVault::sqlite(writer.clone(), master))),
            (None, None) => Err(StoreError::Corrupt("the database has no pool for the key vault".to_owned())),
        }
    }
}

impl KeyVault {
    /// A vault on a migrated PostgreSQL database.
    pub fn postgres(pool: PgPool, master: MasterKey) -> KeyVault {
        Self::with_pool(VaultPool::Postgres(pool), master)
    }

    /// A vault on a migrated SQLite database (key creation takes the write lock with `BEGIN IMMEDIATE`).
    pub fn sqlite(pool: SqlitePool, master: MasterKey) -> KeyVault {
        Self::with_pool(VaultPool::Sqlite(pool), master)
    }

    fn with_pool(pool: VaultPool, master: MasterKey) -> KeyVault {
        KeyVault { pool, master, cache: Mutex::default(), checked: OnceCell::new() }
    }

    /// Checks that the configured master key is the one this database's keys are wrapped with; the first check
    /// on a new database stores the canary row it checks against. Every other operation of the vault runs it
    /// once first, so a wrong master key fails loudly instead of reading as erased data. Call it at start-up.
    pub async fn check_master_key(&self) -> Result<(), StoreError> {
        let subject = MASTER_KEY_CHECK.to_owned();
        let mut rows = self.fetch(std::slice::from_ref(&subject)).await?;
        if rows.is_empty() {
            let mut canary = vec![0_u8; KEY_LEN];
            SystemRandom::new()
                .fill(&mut canary)
                .map_err(|_| StoreError::Crypto("the system random generator failed"))?;
            let wrapped = self.wrap(&subject, canary)?;
            rows = self.insert_missing(vec![(subject.clone(), wrapped)]).await?;
        }
        match rows.remove(&subject) {
            Some(Some(wrapped)) => match self.unwrap_bytes(&subject, wrapped) {
                Some(_) => Ok(()),
                None => Err(StoreError::WrongMasterKey),
            },
            _ => Err(StoreError::Corrupt("the master key check row of personal_data_keys is missing its key".into())),
        }
    }

    /// The data keys of `subjects`, creating the missing ones (one batch). Every caller, on any node, gets the
    /// same key for a subject. A destroyed subject is [`StoreError::Erased`] (the first one, in the order given).
    pub async fn get_or_create(&self, subjects: &[StreamId]) -> Result<HashMap<StreamId, DataKey>, StoreError> {
        let found = self.lookup(subjects, true).await?;
        let mut keys = HashMap::with_capacity(subjects.len());
        for subject in subjects {
            match found.get(subject.as_str()) {
                Some(Cached::Key(key)) => {
                    keys.insert(subject.clone(), key.clone());
                }
                Some(Cached::Destroyed) => return Err(StoreError::Erased { subject: subject.clone() }),
                None => {
                    return Err(StoreError::Corrupt(format!("the data key of {subject} was created but not stored")));
                }
            }
        }
        Ok(keys)
    }

    /// The data keys of those `subjects` that have one; destroyed and unknown subjects are left out.
    pub async fn get(&self, subjects: &[StreamId]) -> Result<HashMap<StreamId, DataKey>, StoreError> {
        let found = self.lookup(subjects, false).await?;
        Ok(subjects
            .iter()
            .filter_map(|s| match found.get(s.as_str()) {
                Some(Cached::Key(key)) => Some((s.clone(), key.clone())),
                _ => None,
            })
            .collect())
    }

    /// Destroys the subject's data key for good (idempotent): its sealed personal data reads as `null`
    /// everywhere, and no new key is ever created for it. A subject that never had a key is marked destroyed
    /// too. Reaches other nodes' caches only through [`KeyVault::forget`].
    pub async fn destroy(&self, subject: &StreamId) -> Result<(), StoreError> {
        match &self.pool {
            VaultPool::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO personal_data_keys (subject, wrapped_key, destroyed_at) VALUES ($1, NULL, now()) \
                     ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, \
                     destroyed_at = coalesce(personal_data_keys.destroyed_at, excluded.destroyed_at)",
                )
                .bind(subject.as_str())
                .execute(pool)
                .await
                .map_err(StoreError::from_sqlx)?;
            }
            VaultPool::Sqlite(pool) => {
                let now = Utc::now();
                sqlx::query(
                    "INSERT INTO personal_data_keys (subject, wrapped_key, created_at, destroyed_at) \
                     VALUES (?, NULL, ?, ?) \
                     ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, \
                     destroyed_at = coalesce(personal_data_keys.destroyed_at, excluded.destroyed_at)",
                )
                .bind(subject.as_str())
                .bind(now)
                .bind(now)
                .execute(pool)
                .await
                .map_err(StoreError::from_sqlx)?;
            }
        }
        self.remember(vec![(subject.as_str().to_owned(), Cached::Destroyed)]);
        tracing::info!(subject = %subject, "destroyed a personal data key");
        Ok(())
    }

    /// Drops the subject from this process's cache, so the next use reads the table again (for the erasure
    /// workflow, after another node destroyed the key).
    pub fn forget(&self, subject: &StreamId) {
        self.lock_cache().remove(subject.as_str());
    }

    /// Drops every cached key.
    pub fn clear_cache(&self) {
        self.lock_cache().clear();
    }

    /// A key for one purpose derived from the master key ([`MasterKey::derive_key`]), e.g. the search key of
    /// the read models' blind indexes.
    pub fn derive_key(&self, label: &str) -> [u8; KEY_LEN] {
        self.master.derive_key(label)
    }

    /// A data key derived from the master key for `label`, for values that have no subject of their own to be
    /// erased with (the management information of operators registered before it was sealed per registration).
    /// Destroying no subject's key erases it: only losing the master key does.
    pub fn derived_data_key(&self, label: &str) -> Result<DataKey, StoreError> {
        aes_key(&self.master.derive_key(label))
            .map(|key| DataKey(Arc::new(key)))
            .ok_or(StoreError::Crypto("cannot make an AES-256-GCM key of a derived key"))
    }

    /// What this process's cache knows of `subjects`, without any IO: `Some(key)`, `None` for a destroyed key;
    /// subjects it does not know are absent (look them up with [`KeyVault::adopt`]).
    pub fn cached(&self, subjects: &[StreamId]) -> HashMap<StreamId, Option<DataKey>> {
        let mut cache = self.lock_cache();
        subjects
            .iter()
            .filter_map(|s| {
                cache.get(s.as_str()).map(|c| match c {
                    Cached::Key(key) => (s.clone(), Some(key.clone())),
                    Cached::Destroyed => (s.clone(), None),
                })
            })
            .collect()
    }

    /// Unwraps (and caches) a `personal_data_keys` row the caller read itself, inside its own transaction (a
    /// projection: on SQLite it must not wait for the event store's writer while it holds the write lock).
    /// `wrapped` is the row's `wrapped_key`: `None` once destroyed.
    pub fn adopt(&self, subject: &StreamId, wrapped: Option<Vec<u8>>) -> Result<Option<DataKey>, StoreError> {
        let entry = match wrapped {
            Some(wrapped) => Cached::Key(self.unwrap_key(subject.as_str(), wrapped)?),
            None => Cached::Destroyed,
        };
        self.remember([(subject.as_str().to_owned(), entry.clone())]);
        Ok(match entry {
            Cached::Key(key) => Some(key),
            Cached::Destroyed => None,
        })
    }

    /// Cached entries first, then one read for the misses and, with `create`, one batch creation for the subjects
    /// still without a row. Returns what is known of each subject (absent: no key and none created).
    async fn lookup(&self, subjects: &[StreamId], create: bool) -> Result<HashMap<String, Cached>, StoreError> {
        self.checked.get_or_try_init(|| self.check_master_key()).await?;
        let mut found = HashMap::with_capacity(subjects.len());
        let mut misses = Vec::new();
        {
            let mut cache = self.lock_cache();
            let mut seen = HashSet::new();
            for subject in subjects {
                let subject = subject.as_str();
                if !seen.insert(subject) {
                    continue;
                }
                match cache.get(subject) {
                    Some(entry) => {
                        found.insert(subject.to_owned(), entry);
                    }
                    None => misses.push(subject.to_owned()),
                }
            }
        }
        if misses.is_empty() {
            return Ok(found);
        }
        let mut rows = self.fetch(&misses).await?;
        let absent: Vec<String> = misses.iter().filter(|s| !rows.contains_key(*s)).cloned().collect();
        if create && !absent.is_empty() {
            let mut new = Vec::with_capacity(absent.len());
            // The new keys' bytes in one call to the system's generator (a batch of an import makes a thousand).
            let mut bytes = vec![0_u8; KEY_LEN * absent.len()];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| StoreError::Crypto("the system random generator failed"))?;
            for (subject, key) in absent.into_iter().zip(bytes.chunks_exact(KEY_LEN)) {
                let wrapped = self.wrap(&subject, key.to_vec())?;
                new.push((subject, wrapped));
            }
            bytes.fill(0);
            // What is stored now may be another node's key for the same subject: that one is used.
            rows.extend(self.insert_missing(new).await?);
        }
        let mut fresh = Vec::with_capacity(rows.len());
        for (subject, wrapped) in rows {
            let entry = match wrapped {
                Some(wrapped) => Cached::Key(self.unwrap_key(&subject, wrapped)?),
                None => Cached::Destroyed,
            };
            fresh.push((subject, entry));
        }
        self.remember(fresh.iter().cloned());
        found.extend(fresh);
        Ok(found)
    }

    /// `subject → wrapped_key` (NULL once destroyed) of the rows that exist.
    async fn fetch(&self, subjects: &[String]) -> Result<HashMap<String, Option<Vec<u8>>>, StoreError> {
        let rows = match &self.pool {
            VaultPool::Postgres(pool) => {
                sqlx::query("SELECT subject, wrapped_key FROM personal_data_keys WHERE subject = ANY($1)")
                    .bind(subjects)
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::from_sqlx)?
                    .iter()
                    .map(|r| Ok((r.try_get("subject").map_err(corrupt)?, r.try_get("wrapped_key").map_err(corrupt)?)))
                    .collect::<Result<_, StoreError>>()?
            }
            VaultPool::Sqlite(pool) => {
                let list = serde_json::to_string(subjects).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                sqlx::query(
                    "SELECT subject, wrapped_key FROM personal_data_keys \
                     WHERE subject IN (SELECT value FROM json_each(?))",
                )
                .bind(list)
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_sqlx)?
                .iter()
                .map(|r| Ok((r.try_get("subject").map_err(corrupt)?, r.try_get("wrapped_key").map_err(corrupt)?)))
                .collect::<Result<_, StoreError>>()?
            }
        };
        Ok(rows)
    }

    /// Inserts the rows whose subject has none yet (one statement on PostgreSQL, one transaction on SQLite) and
    /// returns the rows of those subjects as stored afterwards, whoever won.
    async fn insert_missing(
        &self,
        new: Vec<(String, Vec<u8>)>,
    ) -> Result<HashMap<String, Option<Vec<u8>>>, StoreError> {
        let (subjects, wrapped): (Vec<String>, Vec<Vec<u8>>) = new.into_iter().unzip();
        match &self.pool {
            VaultPool::Postgres(pool) => {
                // ON CONFLICT DO NOTHING waits for a concurrent insert of the same subject to commit; the rows it
                // inserted are ours, and the SELECT that follows (its own snapshot) sees the winners' rows of the
                // others.
                let inserted: Vec<String> = sqlx::query_scalar(
                    "INSERT INTO personal_data_keys (subject, wrapped_key) \
                     SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT (subject) DO NOTHING RETURNING subject",
                )
                .bind(&subjects)
                .bind(&wrapped)
                .fetch_all(pool)
                .await
                .map_err(StoreError::from_sqlx)?;
                self.ours_then_winners(subjects, wrapped, inserted.into_iter().collect()).await
            }
            VaultPool::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(StoreError::from_sqlx)?;
                let now = Utc::now();
                let mut inserted = HashSet::new();
                for (subject, wrapped) in subjects.iter().zip(&wrapped) {
                    let done = sqlx::query(
                        "INSERT INTO personal_data_keys (subject, wrapped_key, created_at) VALUES (?, ?, ?) \
                         ON CONFLICT (subject) DO NOTHING",
                    )
                    .bind(subject.as_str())
                    .bind(wrapped.as_slice())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::from_sqlx)?;
                    if done.rows_affected() == 1 {
                        inserted.insert(subject.clone());
                    }
                }
                tx.commit().await.map_err(StoreError::from_sqlx)?;
                self.ours_then_winners(subjects, wrapped, inserted).await
            }
        }
    }

    /// The rows of `subjects` as stored after an insert that skipped those another writer had stored first: the ones
    /// in `inserted` hold the key made here (`wrapped`), the others are read again (the winners' rows).
    async fn ours_then_winners(
        &self,
        subjects: Vec<String>,
        wrapped: Vec<Vec<u8>>,
        inserted: HashSet<String>,
    ) -> Result<HashMap<String, Option<Vec<u8>>>, StoreError> {
        let mut rows = HashMap::with_capacity(subjects.len());
        let mut lost = Vec::new();
        for (subject, wrapped) in subjects.into_iter().zip(wrapped) {
            if inserted.contains(&subject) {
                rows.insert(subject, Some(wrapped));
            } else {
                lost.push(subject);
            }
        }
        if !lost.is_empty() {
            rows.extend(self.fetch(&lost).await?);
        }
        Ok(rows)
    }

    /// `nonce || ciphertext` of `key` under the master key, AAD = subject.
    fn wrap(&self, subject: &str, key: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let (nonce, mut sealed) = seal_with(&self.master.key, subject.as_bytes(), key)?;
        let mut wrapped = Vec::with_capacity(NONCE_LEN + sealed.len());
        wrapped.extend_from_slice(&nonce);
        wrapped.append(&mut sealed);
        Ok(wrapped)
    }

    fn unwrap_bytes(&self, subject: &str, wrapped: Vec<u8>) -> Option<Vec<u8>> {
        if wrapped.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        open_with(&self.master.key, nonce, subject.as_bytes(), sealed.to_vec())
    }

    fn unwrap_key(&self, subject: &str, wrapped: Vec<u8>) -> Result<DataKey, StoreError> {
        self.unwrap_bytes(subject, wrapped)
            .and_then(|bytes| aes_key(&bytes))
            .map(|key| DataKey(Arc::new(key)))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the data key of {subject} cannot be unwrapped although the master key is right: \
                     its personal_data_keys row was altered"
                ))
            })
    }

    fn remember(&self, entries: impl IntoIterator<Item = (String, Cached)>) {
        let mut cache = self.lock_cache();
        for (subject, entry) in entries {
            cache.insert(subject, entry);
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        // The map is consistent after any panic (single inserts and removes), so a poisoned lock is still usable.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{Cached, KeyCache};

    fn fill(cache: &mut KeyCache, prefix: &str, count: usize) {
        for i in 0..count {
            cache.insert(format!("{prefix}-{i}"), Cached::Destroyed);
        }
    }

    #[test]
    fn nonces_are_never_repeated_across_draws() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 * super::NONCES_PER_DRAW {
            assert!(seen.insert(super::fresh_nonce().expect("a nonce")), "a nonce came twice");
        }
        assert!(!seen.contains(&[0_u8; super::NONCE_LEN]));
    }

    #[test]
    fn a_key_made_one_generation_ago_is_still_found() {
        let mut cache = KeyCache::default();
        cache.insert("first".into(), Cached::Destroyed);
        fill(&mut cache, "later", KeyCache::GENERATION);
        assert!(cache.get("first").is_some(), "a full young generation must not drop what it held");
        assert!(cache.len() <= 2 * KeyCache::GENERATION);
    }

    #[test]
    fn the_cache_stays_bounded_and_forgets_the_oldest() {
        let mut cache = KeyCache::default();
        cache.insert("first".into(), Cached::Destroyed);
        fill(&mut cache, "later", 3 * KeyCache::GENERATION);
        assert!(cache.get("first").is_none());
        assert!(cache.len() <= 2 * KeyCache::GENERATION);
    }

    #[test]
    fn a_hit_in_the_old_generation_keeps_the_key() {
        let mut cache = KeyCache::default();
        cache.insert("used".into(), Cached::Destroyed);
        fill(&mut cache, "a", KeyCache::GENERATION);
        assert!(cache.get("used").is_some());
        fill(&mut cache, "b", KeyCache::GENERATION - 1);
        assert!(cache.get("used").is_some(), "a key used again is moved into the young generation");
        cache.remove("used");
        assert!(cache.get("used").is_none());
    }
}
