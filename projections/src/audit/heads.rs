//! Signed heads of the audit chains (issue 12, point 5): at intervals the sealer signs the last links of the
//! events' chain and of the read access log's chain — `(position, hash)` of each and the time — with the dedicated
//! **audit key**, keeps the signed head in `audit_heads` and appends
//! it to a file outside the database. Someone who rewrites events *and* recomputes the chain (a database
//! administrator) cannot sign the new chain: verification against the signed heads names the stretch he rewrote,
//! and a tail cut off together with its links is caught by a head signed past the cut.
//!
//! Owns [`AuditKey`] (an Ed25519 key in its own file, never in the database and never logged), [`AuditPublicKey`]
//! (what an auditor verifies with), [`SignedHead`] and its signed message, and the head file (JSON lines, one head
//! per line, appended and synced; [`read_head_file`] reads it back and names a malformed line).
//!
//! The signed message is `cardap audit head v1\n{seq}\n{hash}\n{reads_seq}\n{reads_hash}\n{signed_at}` with the
//! time in RFC 3339 with microseconds; `key_id` is the first 8 bytes of SHA-256 over the public key, in hex.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why the audit key or a head file could not be used. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("audit key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit key file {0}: not an Ed25519 key (base64 of a PKCS#8 document)")]
    NotAKey(PathBuf),
    #[error("the audit public key must be base64 of 32 bytes (as `cardap audit public-key` prints it)")]
    NotAPublicKey,
    #[error("the system random generator failed")]
    Random,
    #[error("head file {path}: {source}")]
    HeadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("head file {path}, line {line}: not a signed head ({reason})")]
    BadHead { path: PathBuf, line: usize, reason: String },
}

/// The key that signs the chain's heads. Its private half stays in its file; `Debug` shows only the key ID.
pub struct AuditKey {
    pair: Ed25519KeyPair,
    public: AuditPublicKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey({})", self.public.id())
    }
}

impl AuditKey {
    /// Reads the key file at `path`, or creates it (mode 0600) with a new key; whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(AuditKey, bool), AuditKeyError> {
        let fresh = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| AuditKeyError::Random)?;
        let fresh = format!("{}\n", STANDARD.encode(fresh.as_ref()));
        let (text, created) = cardap_store::read_or_create_private_file(path, "audit key", &fresh)
            .map_err(|source| AuditKeyError::Io { path: path.to_owned(), source })?;
        Ok((Self::from_text(path, &text)?, created))
    }

    /// Reads the key file at `path`; a missing file is an error (verification never creates a key).
    pub fn load(path: &Path) -> Result<AuditKey, AuditKeyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AuditKeyError::Io { path: path.to_owned(), source })?;
        Self::from_text(path, &text)
    }

    fn from_text(path: &Path, text: &str) -> Result<AuditKey, AuditKeyError> {
        let not_a_key = || AuditKeyError::NotAKey(path.to_owned());
        let der = STANDARD.decode(text.trim()).map_err(|_| not_a_key())?;
        let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|_| not_a_key())?;
        let public = AuditPublicKey(pair.public_key().as_ref().try_into().map_err(|_| not_a_key())?);
        Ok(AuditKey { pair, public })
    }

    pub fn public(&self) -> &AuditPublicKey {
        &self.public
    }

    /// Signs the heads `events` and `reads` (each `(position, hash)`) at `signed_at`.
    pub fn sign(&self, events: (u64, &str), reads: (u64, &str), signed_at: DateTime<Utc>) -> SignedHead {
        let signed_at = at_micros(signed_at);
        let (seq, hash) = events;
        let (reads_seq, reads_hash) = reads;
        let signature = self.pair.sign(&message(seq, hash, reads_seq, reads_hash, signed_at));
        SignedHead {
            seq,
            hash: hash.to_owned(),
            reads_seq,
            reads_hash: reads_hash.to_owned(),
            signed_at,
            key_id: self.public.id(),
            signature: STANDARD.encode(signature.as_ref()),
        }
    }
}

/// The public half of an audit key: base64 of its 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPublicKey([u8; 32]);

impl AuditPublicKey {
    pub fn parse(text: &str) -> Result<AuditPublicKey, AuditKeyError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| AuditKeyError::NotAPublicKey)?;
        Ok(AuditPublicKey(bytes.as_slice().try_into().map_err(|_| AuditKeyError::NotAPublicKey)?))
    }

    /// The first 8 bytes of SHA-256 over the key, in hex: which key signed a head.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }
}

impl std::fmt::Display for AuditPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

/// The events' chain's head at `seq` and the read access log's chain's at `reads_seq` (their hashes, in hex),
/// signed at `signed_at` by the key `key_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    pub reads_seq: u64,
    pub reads_hash: String,
    pub signed_at: DateTime<Utc>,
    pub key_id: String,
    /// Ed25519, base64.
    pub signature: String,
}

impl SignedHead {
    /// Whether one of `keys` signed exactly this head.
    pub fn signed_by(&self, keys: &[AuditPublicKey]) -> bool {
        let Ok(signature) = STANDARD.decode(&self.signature) else {
            return false;
        };
        let message = message(self.seq, &self.hash, self.reads_seq, &self.reads_hash, self.signed_at);
        keys.iter()
            .filter(|k| k.id() == self.key_id)
            .any(|k| UnparsedPublicKey::new(&ED25519, k.0).verify(&message, &signature).is_ok())
    }
}

fn message(seq: u64, hash: &str, reads_seq: u64, reads_hash: &str, signed_at: DateTime<Utc>) -> Vec<u8> {
    let at = signed_at.to_rfc3339_opts(SecondsFormat::Micros, true);
    format!("cardap audit head v1\n{seq}\n{hash}\n{reads_seq}\n{reads_hash}\n{at}").into_bytes()
}

/// The time as the message carries it, so that a head read back from a file or the database verifies.
fn at_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Appends `head` as one JSON line to the file at `path` (created mode 0600 when missing) and syncs it.
pub fn append_head(path: &Path, head: &SignedHead) -> Result<(), AuditKeyError> {
    let io = |source| AuditKeyError::HeadFile { path: path.to_owned(), source };
    let mut line = serde_json::to_vec(head).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(&line).map_err(io)?;
    file.sync_data().map_err(io)
}

/// The heads of a head file, in the file's order; a line that is not a head is an error naming it (blank lines
/// are skipped).
pub fn read_head_file(path: &Path) -> Result<Vec<SignedHead>, AuditKeyError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AuditKeyError::HeadFile { path: path.to_owned(), source })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| AuditKeyError::BadHead {
                path: path.to_owned(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_head_verifies_with_its_key_only_and_only_as_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (key, created) = AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
        assert!(created);
        let (again, created) = AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public(), "the file keeps the key");
        let (other, _) = AuditKey::load_or_create(&dir.path().join("other.key")).unwrap();

        let head = key.sign((42, &"ab".repeat(32)), (7, &"01".repeat(32)), Utc::now());
        assert!(head.signed_by(std::slice::from_ref(key.public())));
        assert!(!head.signed_by(std::slice::from_ref(other.public())), "another key's public half");
        let moved = SignedHead { seq: 43, ..head.clone() };
        assert!(!moved.signed_by(std::slice::from_ref(key.public())), "a head moved to another position");
        let rehashed = SignedHead { hash: "cd".repeat(32), ..head.clone() };
        assert!(!rehashed.signed_by(std::slice::from_ref(key.public())), "a head given another hash");
        let reads = SignedHead { reads_hash: "cd".repeat(32), ..head.clone() };
        assert!(!reads.signed_by(std::slice::from_ref(key.public())), "a head given another read log hash");

        let file = dir.path().join("heads.jsonl");
        append_head(&file, &head).unwrap();
        append_head(&file, &key.sign((50, &"ef".repeat(32)), (7, &"01".repeat(32)), Utc::now())).unwrap();
        let read = read_head_file(&file).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], head);
        assert!(read.iter().all(|h| h.signed_by(std::slice::from_ref(key.public()))), "heads survive the file");
        let printed = AuditPublicKey::parse(&key.public().to_string()).unwrap();
        assert_eq!(&printed, key.public());
    }

    #[test]
    fn a_malformed_head_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("heads.jsonl");
        std::fs::write(&file, "\n{\"seq\": 1}\n").unwrap();
        let e = read_head_file(&file).unwrap_err();
        assert!(matches!(e, AuditKeyError::BadHead { line: 2, .. }), "{e}");
    }
}
