//! The tamper-evident chain over the event log (issue 12, point 5; first part): a sealer walks the global order
//! and stores, per event, `hash = SHA-256(previous hash || the event's canonical bytes)`; [`AuditChain::verify`]
//! (`cardap audit verify`) recomputes the chain from the events and names the first event that was altered,
//! removed or moved. Owns the `audit_chain` table and the canonical form of an event.
//!
//! The chain is over the events *as stored* (read from the event store without the sealing decorator): a
//! resident's personal data is hashed sealed, so destroying his key (erasure) leaves the chain verifying.
//! Canonical bytes ([`canonical`]): the JSON array `[event_id, stream_id, stream_type, version, event_type,
//! event_version, payload, metadata, municipality, operator, recorded_at]`, with object keys in sorted order
//! (serde_json's map) and the time in RFC 3339 with microseconds. Both the sealer and the verifier build them from
//! the payload's text as stored, without parsing it into a `Value` where the text allows.
//!
//! The verifier streams the links and the events (one statement per chunk of each, the next chunk's links read
//! while this chunk's events come) on a reader task, and hashes on its own task: on a 2-core server the database,
//! the reader and the hashing run side by side.
//!
//! Someone who rewrites events *and* recomputes the chain is caught by the signed heads ([`heads`]): at intervals
//! the sealer signs the chain's last link with the audit key and exports the signed head to a file the database
//! administrator cannot rewrite; [`AuditChain::verify_against`] checks the chain against them.
//!
//! The read access log has a chain of its own ([`reads`]), sealed by the same runner; each signed head covers both.

use std::sync::Arc;
use std::time::Duration;

use cardap_store::{Checkpoint, EventStore, ReadFilter, StoreError, StoredEvent};
use futures_util::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, Row};

use crate::ProjectionError;

mod canonical;
pub mod heads;
pub mod reads;

pub use heads::{AuditKey, AuditKeyError, AuditPublicKey, SignedHead};
pub use reads::{ReadsChain, ReadsVerdict};

/// Events sealed per round, and handed from the verifier's reader to its hashing per page.
const PAGE: usize = 1000;

/// Links the verifier reads per statement, and events per statement after them: few statements, and none holds
/// its snapshot for long.
const CHUNK: usize = 20_000;

/// How the verifier reads: links per statement (`chunk`), and links with their events per page handed to the
/// hashing (`page`).
#[derive(Debug, Clone, Copy)]
struct Reading {
    chunk: usize,
    page: usize,
}

/// Links written per statement while sealing (five parameters each).
const INSERT_ROWS: usize = 200;

/// The hash before the first event.
const GENESIS: [u8; 32] = [0; 32];

/// One link of the chain as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    seq: u64,
    event_id: String,
    checkpoint: Checkpoint,
    hash: String,
}

/// A link as the verifier reads it: without its event id, which only names an event that does not verify (the
/// hash covers the event's id, so a link whose hash matches is of that event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sealed {
    seq: u64,
    /// The stored hash, `None` when its text is not the lowercase hex of 32 bytes (no recomputed hash matches it).
    hash: Option<[u8; 32]>,
}

/// A page of the chain's links and the events in their places, as the verifier's reader sends it.
type Page = Result<(Vec<Sealed>, Vec<StoredEvent>), ProjectionError>;

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every sealed event is as it was sealed (`events`), in its place.
    Intact { events: u64 },
    /// The event at chain position `seq` is not what was sealed: its content changed.
    Altered { seq: u64, event_id: String },
    /// The event sealed at `seq` is no longer in the log (deleted), or the log ends before the chain does.
    Missing { seq: u64, event_id: String },
    /// The event sealed at `seq` is still in the log, but not in its place (its order was changed).
    Reordered { seq: u64, event_id: String },
    /// The head signed at chain position `seq` was not signed by any of the given audit keys (a forged or altered
    /// head, or the wrong key given).
    Unsigned { seq: u64, key_id: String },
    /// The chain verifies in itself, but its hash at `seq` is not the one signed then: events after position
    /// `after` up to `seq` were rewritten and the chain recomputed.
    Rewritten { after: u64, seq: u64 },
    /// The chain ends at position `ends`, before the head signed at `seq`: its tail was cut off with its links.
    Truncated { ends: u64, seq: u64 },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Intact { events } => write!(f, "intact: {events} events verified"),
            Verdict::Altered { seq, event_id } => write!(f, "ALTERED: event {event_id} (chain position {seq})"),
            Verdict::Missing { seq, event_id } => {
                write!(f, "MISSING: event {event_id} (chain position {seq}) is no longer in the log")
            }
            Verdict::Reordered { seq, event_id } => {
                write!(f, "REORDERED: event {event_id} (chain position {seq}) is no longer in its place")
            }
            Verdict::Unsigned { seq, key_id } => write!(
                f,
                "UNSIGNED: the head at chain position {seq} (key {key_id}) was not signed by the given audit key"
            ),
            Verdict::Rewritten { after, seq } => write!(
                f,
                "REWRITTEN: the chain at position {seq} is not the one signed; events after position {after} up to \
                 {seq} were changed and the chain recomputed"
            ),
            Verdict::Truncated { ends, seq } => {
                write!(f, "TRUNCATED: the chain ends at position {ends}, before the head signed at position {seq}")
            }
        }
    }
}

/// The chain over `store` (the event store *without* the sealing decorator), kept in `pool`.
#[derive(Debug, Clone)]
pub struct AuditChain {
    pool: AnyPool,
    store: Arc<dyn EventStore>,
    reads: ReadsChain,
    signer: Option<HeadSigner>,
    reading: Reading,
}

/// How the running sealer signs heads: with `key`, at most every `every`, each head appended to `file` too.
#[derive(Debug, Clone)]
pub struct HeadSigner {
    pub key: Arc<AuditKey>,
    pub file: Option<std::path::PathBuf>,
    pub every: Duration,
}

impl AuditChain {
    pub fn new(pool: AnyPool, store: Arc<dyn EventStore>) -> Self {
        let reading = Reading { chunk: CHUNK, page: PAGE };
        AuditChain { reads: ReadsChain::new(pool.clone()), pool, store, signer: None, reading }
    }

    /// The chain whose verifier reads `chunk` links per statement and hands them on `page` at a time (at least
    /// one each): small sizes let a test cross those boundaries with a short log.
    pub fn verifying_in_chunks(self, chunk: usize, page: usize) -> Self {
        AuditChain { reading: Reading { chunk: chunk.max(1), page: page.max(1) }, ..self }
    }

    /// The chain over the read access log, kept beside this one.
    pub fn reads(&self) -> &ReadsChain {
        &self.reads
    }

    /// The chain whose [`Self::run`] also signs heads.
    pub fn signing(self, signer: HeadSigner) -> Self {
        AuditChain { signer: Some(signer), ..self }
    }

    /// Signs the last links of both chains (events and read access log) with `key` at `now` unless a head at
    /// those positions exists; the new head (also appended to `file` when given), or `None` when there was nothing
    /// new to sign. Two nodes signing at once keep one head: the other's insert is ignored and it exports nothing.
    pub async fn sign_head(
        &self,
        key: &AuditKey,
        file: Option<&std::path::Path>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<SignedHead>, ProjectionError> {
        let (seq, hash) = match self.last().await? {
            Some(last) => (last.seq, last.hash),
            None => (0, hex::encode(GENESIS)),
        };
        let (reads_seq, reads_hash) = self.reads.head().await?;
        if seq == 0 && reads_seq == 0 {
            return Ok(None);
        }
        let head = key.sign((seq, &hash), (reads_seq, &reads_hash), now);
        let inserted = sqlx::query(
            "INSERT INTO audit_heads (seq, hash, reads_seq, reads_hash, signed_at, key_id, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq, reads_seq) DO NOTHING",
        )
        .bind(to_i64(head.seq))
        .bind(&head.hash)
        .bind(to_i64(head.reads_seq))
        .bind(&head.reads_hash)
        .bind(head.signed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .bind(&head.key_id)
        .bind(&head.signature)
        .execute(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(file) = file {
            heads::append_head(file, &head)?;
        }
        tracing::info!(seq = head.seq, hash = %head.hash, key_id = %head.key_id, "signed the audit chain's head");
        Ok(Some(head))
    }

    /// The signed heads kept in the database, in chain order.
    pub async fn heads(&self) -> Result<Vec<SignedHead>, ProjectionError> {
        let rows = sqlx::query(
            "SELECT seq, hash, reads_seq, reads_hash, signed_at, key_id, signature FROM audit_heads ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        rows.iter()
            .map(|row| {
                let corrupt = |what: String| ProjectionError::Store(cardap_store::StoreError::Corrupt(what));
                let seq: i64 = row.try_get("seq").map_err(ProjectionError::from_sqlx)?;
                let reads_seq: i64 = row.try_get("reads_seq").map_err(ProjectionError::from_sqlx)?;
                let signed_at: String = row.try_get("signed_at").map_err(ProjectionError::from_sqlx)?;
                Ok(SignedHead {
                    seq: u64::try_from(seq).map_err(|_| corrupt(format!("audit_heads.seq {seq}")))?,
                    hash: row.try_get("hash").map_err(ProjectionError::from_sqlx)?,
                    reads_seq: u64::try_from(reads_seq)
                        .map_err(|_| corrupt(format!("audit_heads.reads_seq {reads_seq}")))?,
                    reads_hash: row.try_get("reads_hash").map_err(ProjectionError::from_sqlx)?,
                    signed_at: chrono::DateTime::parse_from_rfc3339(&signed_at)
                        .map_err(|e| corrupt(format!("audit_heads.signed_at: {e}")))?
                        .with_timezone(&chrono::Utc),
                    key_id: row.try_get("key_id").map_err(ProjectionError::from_sqlx)?,
                    signature: row.try_get("signature").map_err(ProjectionError::from_sqlx)?,
                })
            })
            .collect()
    }

    /// Seals the events committed since the last link, a page at a time; how many were sealed.
    pub async fn extend(&self) -> Result<u64, ProjectionError> {
        let (mut seq, mut hash, mut after) = match self.last().await? {
            Some(link) => (link.seq, decode_hash(&link.hash)?, link.checkpoint),
            None => (0, GENESIS, Checkpoint::START),
        };
        let mut sealed = 0;
        let mut canonical = Vec::new();
        loop {
            let events: Vec<StoredEvent> = self.store.stored_events(after, PAGE).try_collect().await?;
            let Some(last) = events.last() else {
                return Ok(sealed);
            };
            let mut tx = self.pool.begin().await.map_err(ProjectionError::from_sqlx)?;
            let mut n = seq;
            for rows in events.chunks(INSERT_ROWS) {
                // One statement per chunk of links: `($1, …, $5), ($6, …, $10), …`.
                let values = crate::values_list(rows.len(), 5);
                let sql = format!(
                    "INSERT INTO audit_chain (seq, event_id, transaction_id, global_position, hash) VALUES {values}"
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for event in rows {
                    hash = link(&hash, event, &mut canonical)?;
                    n += 1;
                    insert = insert
                        .bind(to_i64(n))
                        .bind(event.event_id.to_string())
                        .bind(to_i64(event.checkpoint.transaction))
                        .bind(to_i64(event.checkpoint.position))
                        .bind(hex::encode(hash));
                }
                insert.execute(&mut *tx).await.map_err(ProjectionError::from_sqlx)?;
            }
            // Two sealers at once (two nodes): the second's rows collide on `seq` and it rolls back.
            tx.commit().await.map_err(ProjectionError::from_sqlx)?;
            sealed += events.len() as u64;
            seq += events.len() as u64;
            after = last.checkpoint;
        }
    }

    /// Seals new events as they come, until `stop`; with a signer, signs the head at most every `every` and once
    /// more when stopped.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut wake = self.store.wakeups();
        let mut next_head = tokio::time::Instant::now();
        loop {
            // Wake-ups from before this round are covered by it.
            wake.mark_seen();
            if let Err(e) = self.extend().await {
                tracing::warn!(error = %e, "the audit chain could not be extended; trying again");
            }
            if let Err(e) = self.reads.extend().await {
                tracing::warn!(error = %e, "the read access log's chain could not be extended; trying again");
            }
            if let Some(signer) = self.signer.as_ref().filter(|_| tokio::time::Instant::now() >= next_head) {
                self.sign_logged(signer).await;
                next_head = tokio::time::Instant::now() + signer.every;
            }
            tokio::select! {
                _ = wake.wait(Duration::from_secs(5)) => {}
                _ = stop.changed() => {
                    if let Some(signer) = &self.signer {
                        // What was committed before the stop is sealed and signed.
                        if let Err(e) = self.extend().await {
                            tracing::warn!(error = %e, "the audit chain could not be extended at shutdown");
                        }
                        if let Err(e) = self.reads.extend().await {
                            tracing::warn!(error = %e, "the read access log's chain could not be extended at shutdown");
                        }
                        self.sign_logged(signer).await;
                    }
                    return;
                }
            }
        }
    }

    async fn sign_logged(&self, signer: &HeadSigner) {
        if let Err(e) = self.sign_head(&signer.key, signer.file.as_deref(), chrono::Utc::now()).await {
            tracing::warn!(error = %e, "the audit chain's head could not be signed; trying again later");
        }
    }

    /// Recomputes the chain from the events, in the global order, and compares it with every stored link.
    pub async fn verify(&self) -> Result<Verdict, ProjectionError> {
        self.verify_against(&[], &[]).await
    }

    /// [`Self::verify`], and checks the chain against signed `heads` (from the database or a head file): each
    /// must be signed by one of `keys`, and the chain must pass through every signed hash.
    pub async fn verify_against(
        &self,
        heads: &[SignedHead],
        keys: &[AuditPublicKey],
    ) -> Result<Verdict, ProjectionError> {
        if let Some(forged) = heads.iter().find(|h| !h.signed_by(keys)) {
            return Ok(Verdict::Unsigned { seq: forged.seq, key_id: forged.key_id.clone() });
        }
        // A head signed before the first event (seq 0) says nothing about the events' chain.
        let mut heads: Vec<&SignedHead> = heads.iter().filter(|h| h.seq > 0).collect();
        heads.sort_by_key(|h| h.seq);
        let mut heads = heads.into_iter().peekable();
        let mut signed_up_to = 0;
        let mut hash = GENESIS;
        let mut seq = 0_u64;
        let mut canonical = Vec::new();
        // The next pages are read while this one is hashed.
        let (pages, mut next) = tokio::sync::mpsc::channel(2);
        let reader = AbortOnDrop(tokio::spawn(self.clone().read_pages(pages)));
        let (seq, found) = 'pages: loop {
            let Some(page) = next.recv().await else {
                return Err(ProjectionError::Store(cardap_store::StoreError::Corrupt(
                    "the audit chain's reader stopped".into(),
                )));
            };
            let (links, events) = page?;
            if links.is_empty() {
                return Ok(match heads.find(|h| h.seq > seq) {
                    Some(head) => Verdict::Truncated { ends: seq, seq: head.seq },
                    None => Verdict::Intact { events: seq },
                });
            }
            for (i, link) in links.iter().enumerate() {
                let Some(event) = events.get(i) else {
                    // The log ends before the chain: its tail was cut off.
                    break 'pages (link.seq, None);
                };
                let next = self::link(&hash, event, &mut canonical)?;
                if link.hash != Some(next) {
                    break 'pages (link.seq, Some(event.event_id));
                }
                hash = next;
                while let Some(head) = heads.next_if(|h| h.seq <= link.seq) {
                    // A head between two links (none is signed there) is a head the chain never had.
                    if head.seq != link.seq || head.hash != hex::encode(hash) {
                        return Ok(Verdict::Rewritten { after: signed_up_to, seq: head.seq });
                    }
                    signed_up_to = head.seq;
                }
                seq = link.seq;
            }
        };
        // The link at `seq` does not verify: the reader stops (its connections go back) and the sealed event is
        // named, by the event id its link keeps.
        drop(reader);
        let event_id = self.sealed_event_id(seq).await?;
        match found {
            // Another event in the sealed one's place (moved or deleted)...
            Some(found) if found.to_string() != event_id => self.misplaced(seq, event_id).await,
            // ...or the sealed one, altered.
            Some(_) => Ok(Verdict::Altered { seq, event_id }),
            None => Ok(Verdict::Missing { seq, event_id }),
        }
    }

    /// Sends the chain's links a page at a time with the events in their places (as many as there are links, or
    /// fewer when the log ends first), until an empty page; stops when the receiver is gone or on an error.
    ///
    /// A chunk's links are read whole before its events are asked for (and the next chunk's while these events
    /// come): a link the sealer wrote names an event it had read, so the events' later snapshot sees it too, even
    /// while a running server seals more.
    async fn read_pages(self, pages: tokio::sync::mpsc::Sender<Page>) {
        let (chunks, mut next_chunk) = tokio::sync::mpsc::channel(1);
        let _stop_reading = AbortOnDrop(tokio::spawn(self.clone().read_links(chunks)));
        let mut after = Checkpoint::START;
        loop {
            let links = match next_chunk.recv().await {
                Some(Ok(links)) => links,
                Some(Err(e)) => {
                    let _ = pages.send(Err(e)).await;
                    return;
                }
                None => {
                    let stopped = StoreError::Corrupt("the audit chain's link reader stopped".into());
                    let _ = pages.send(Err(stopped.into())).await;
                    return;
                }
            };
            if links.is_empty() {
                let _ = pages.send(Ok((links, Vec::new()))).await;
                return;
            }
            let mut events = self.store.stored_events(after, links.len());
            let mut links = links.into_iter().peekable();
            while links.peek().is_some() {
                let page: Vec<Sealed> = links.by_ref().take(self.reading.page).collect();
                let mut placed = Vec::with_capacity(page.len());
                while placed.len() < page.len() {
                    match events.next().await {
                        Some(Ok(event)) => placed.push(event),
                        Some(Err(e)) => {
                            let _ = pages.send(Err(e.into())).await;
                            return;
                        }
                        None => break,
                    }
                }
                // The log ended before the chain: the verifier stops there.
                let ended = placed.len() < page.len();
                if let Some(last) = placed.last() {
                    after = last.checkpoint;
                }
                if pages.send(Ok((page, placed))).await.is_err() || ended {
                    return;
                }
            }
        }
    }

    /// Sends the chain's links a chunk at a time, until an empty chunk; stops when the receiver is gone or on an
    /// error.
    async fn read_links(self, chunks: tokio::sync::mpsc::Sender<Result<Vec<Sealed>, ProjectionError>>) {
        let mut seq = 0;
        loop {
            let chunk = self.sealed(seq, self.reading.chunk).await;
            let last = match &chunk {
                Ok(links) => links.last().map(|l| l.seq),
                Err(_) => None,
            };
            if chunks.send(chunk).await.is_err() {
                return;
            }
            match last {
                Some(last) => seq = last,
                None => return,
            }
        }
    }

    /// The event sealed at `seq` (`event_id`) is not the one in its place: still in the log elsewhere (moved), or
    /// gone.
    async fn misplaced(&self, seq: u64, event_id: String) -> Result<Verdict, ProjectionError> {
        let mut after = Checkpoint::START;
        loop {
            let events = self.store.read_all(after, PAGE, &ReadFilter::All).await?;
            let Some(last) = events.last() else {
                return Ok(Verdict::Missing { seq, event_id });
            };
            if events.iter().any(|e| e.event_id.to_string() == event_id) {
                return Ok(Verdict::Reordered { seq, event_id });
            }
            after = last.checkpoint;
        }
    }

    /// The id of the event the link at `seq` was sealed over.
    async fn sealed_event_id(&self, seq: u64) -> Result<String, ProjectionError> {
        sqlx::query_scalar("SELECT event_id FROM audit_chain WHERE seq = $1")
            .bind(to_i64(seq))
            .fetch_one(&self.pool)
            .await
            .map_err(ProjectionError::from_sqlx)
    }

    async fn last(&self) -> Result<Option<Link>, ProjectionError> {
        let row = sqlx::query(
            "SELECT seq, event_id, transaction_id, global_position, hash FROM audit_chain ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(ProjectionError::from_sqlx)?;
        row.map(|r| link_of(&r)).transpose()
    }

    /// Up to `limit` links after position `after_seq`, as the verifier compares them.
    async fn sealed(&self, after_seq: u64, limit: usize) -> Result<Vec<Sealed>, ProjectionError> {
        sqlx::query("SELECT seq, hash FROM audit_chain WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(to_i64(after_seq))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch(&self.pool)
            .map(|row| {
                let row = row.map_err(ProjectionError::from_sqlx)?;
                let seq: i64 = row.try_get(0).map_err(ProjectionError::from_sqlx)?;
                let hash: &str = row.try_get(1).map_err(ProjectionError::from_sqlx)?;
                Ok(Sealed {
                    seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("audit_chain.seq {seq}")))?,
                    hash: lowercase_hex(hash),
                })
            })
            .try_collect()
            .await
    }
}

/// The 32 bytes whose lowercase hex (as the sealer writes it) `text` is; `None` for any other text.
fn lowercase_hex(text: &str) -> Option<[u8; 32]> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

fn link_of(row: &sqlx::any::AnyRow) -> Result<Link, ProjectionError> {
    let number = |name: &str| -> Result<u64, ProjectionError> {
        let n: i64 = row.try_get(name).map_err(ProjectionError::from_sqlx)?;
        u64::try_from(n)
            .map_err(|_| ProjectionError::Store(cardap_store::StoreError::Corrupt(format!("audit_chain.{name} {n}"))))
    };
    Ok(Link {
        seq: number("seq")?,
        event_id: row.try_get("event_id").map_err(ProjectionError::from_sqlx)?,
        checkpoint: Checkpoint { transaction: number("transaction_id")?, position: number("global_position")? },
        hash: row.try_get("hash").map_err(ProjectionError::from_sqlx)?,
    })
}

/// The next hash of the chain: SHA-256 over the previous one and the event's canonical bytes (built in
/// `canonical`, a buffer kept from one event to the next).
fn link(previous: &[u8; 32], event: &StoredEvent, canonical: &mut Vec<u8>) -> Result<[u8; 32], StoreError> {
    canonical::write(event, canonical)
        .map_err(|e| StoreError::Corrupt(format!("event {}: payload: {e}", event.event_id)))?;
    let mut digest = Sha256::new();
    digest.update(previous);
    digest.update(&canonical[..]);
    Ok(digest.finalize().into())
}

/// Aborts the task when dropped (the verifier's page reader, when the verifier returns early).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn decode_hash(text: &str) -> Result<[u8; 32], ProjectionError> {
    let bytes = hex::decode(text)
        .map_err(|e| ProjectionError::Store(cardap_store::StoreError::Corrupt(format!("audit_chain hash: {e}"))))?;
    bytes.try_into().map_err(|_| {
        ProjectionError::Store(cardap_store::StoreError::Corrupt("audit_chain hash of the wrong length".into()))
    })
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_hash_is_read_only_as_the_sealer_writes_it() {
        let hash: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        assert_eq!(lowercase_hex(&hex::encode(hash)), Some(hash));
        assert_eq!(lowercase_hex(&hex::encode_upper(hash)), None, "upper case is not what was sealed");
        assert_eq!(lowercase_hex(&hex::encode(&hash[..31])), None);
        assert_eq!(lowercase_hex(&format!("{}0", hex::encode(hash))), None);
        assert_eq!(lowercase_hex(&format!("{}g", &hex::encode(hash)[..63])), None);
        assert_eq!(lowercase_hex(""), None);
    }
}
