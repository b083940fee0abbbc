//! The sealed event store: a decorator over any [`EventStore`] that encrypts the personal data in event payloads
//! on the way in and decrypts it on the way out, so that destroying a subject's data key erases that data in
//! every copy of the events while the events themselves stay.
//!
//! The convention (domain events are written against it; do not change it):
//! - A payload that is a JSON object with a top-level `"personal"` that is not `null` is sealed on append. The
//!   subject (key owner) is the stream id, or — when the payload also has a top-level `"personal_key"` (1 to 32
//!   ASCII letters, digits or `_`) — `<stream id>#<personal_key>` ([`personal_subject`]): a stream whose personal
//!   data is erased in parts (an operator's, one key per registration) names the part's key.
//! - Sealed form: `"personal": {"sealed": "aes-256-gcm/v1", "key": "<subject>", "nonce": "<base64>",
//!   "ciphertext": "<base64>"}`, standard base64; plaintext = the JSON text of the original value; AAD =
//!   `"<subject>\n<event id>"` (the event id as a lowercase hyphenated UUID), so a ciphertext cannot be moved to
//!   another event.
//! - Reads give back the original value, or `null` when the subject's key was destroyed (or never existed); the
//!   rest of the payload is unchanged. A ciphertext that does not open under a present key is
//!   [`StoreError::Corrupt`].
//! - Payloads without `personal`, or with `"personal": null`, pass through untouched both ways.
//!
//! Appending personal data for an erased subject is refused ([`StoreError::Erased`]); events without personal
//! data may still be appended to its stream (the erasure itself is recorded that way). Owns the sealed form and
//! the decoration only: keys are the vault's (`vault.rs`). Must not log or put into an error a payload's
//! personal part.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::stream::BoxStream;
use ring::aead::NONCE_LEN;
use serde_json::{Map, Value, json};

use crate::credentials::Companion;
use crate::types::{
    AppendOutcome, BatchOutcome, Checkpoint, CommandId, EventId, ExpectedVersion, Metadata, NewEvent, ReadFilter,
    RecordedEvent, StoreHealth, StoredEvent, StreamAppend, StreamId, TypedRead,
};
use crate::vault::{DataKey, KeyVault};
use crate::wakeup::Wakeups;
use crate::{EventStore, Snapshot, StoreError};

/// The value of `"sealed"` in a sealed `personal`: the algorithm and the version of this form.
pub const SEALING_SCHEME: &str = "aes-256-gcm/v1";

/// The top-level payload key whose value is personal data.
const PERSONAL: &str = "personal";

/// The top-level payload key that names, within its stream, the key its personal data is sealed under.
const PERSONAL_KEY: &str = "personal_key";

/// The subject (data key owner) of the personal data in `payload` of an event of `stream`: the stream, or
/// `<stream>#<personal_key>` when the payload names a key of its own. The erasure follower destroys the key an
/// event names with the same function. A `personal_key` that is not 1 to 32 ASCII letters, digits or `_` is
/// refused as corrupt.
pub fn personal_subject(stream: &StreamId, payload: &Value) -> Result<StreamId, StoreError> {
    let Some(key) = payload.get(PERSONAL_KEY) else {
        return Ok(stream.clone());
    };
    let bad = || StoreError::Corrupt(format!("an event of {stream} names no valid personal key"));
    let key = key.as_str().ok_or_else(bad)?;
    let valid = (1..=32).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(bad());
    }
    StreamId::parse(&format!("{stream}#{key}")).map_err(|_| bad())
}

/// An [`EventStore`] that seals personal data with the subjects' data keys. Holds no secret of its own.
#[derive(Debug, Clone)]
pub struct SealedEventStore {
    inner: Arc<dyn EventStore>,
    vault: Arc<KeyVault>,
}

impl SealedEventStore {
    pub fn new(inner: Arc<dyn EventStore>, vault: Arc<KeyVault>) -> Self {
        SealedEventStore { inner, vault }
    }

    /// The vault whose keys this store seals with (for the erasure workflow).
    pub fn vault(&self) -> &Arc<KeyVault> {
        &self.vault
    }

    /// Seals the personal data of `events`, all of `stream`, each under its subject's key from `keys`.
    fn seal(stream: &StreamId, events: &mut [NewEvent], keys: &HashMap<StreamId, DataKey>) -> Result<(), StoreError> {
        for event in events {
            if !has_personal(event) {
                continue;
            }
            let subject = &personal_subject(stream, &event.payload)?;
            let key = key_of(keys, subject)?;
            let Some(personal) = personal_mut(&mut event.payload) else { continue };
            let plaintext = serde_json::to_vec(&*personal).map_err(|_| {
                StoreError::Corrupt(format!("the personal data of event {} is not JSON", event.event_id))
            })?;
            let (nonce, ciphertext) = key.seal(aad(subject, event.event_id).as_bytes(), plaintext)?;
            *personal = json!({
                "sealed": SEALING_SCHEME,
                "key": subject.as_str(),
                "nonce": STANDARD.encode(nonce),
                "ciphertext": STANDARD.encode(ciphertext),
            });
        }
        Ok(())
    }

    /// The data keys of `subjects`, created as needed. When a subject is erased but this very command was already
    /// applied before, the answer is that first outcome, as the inner store would give it.
    async fn sealing_keys(&self, subjects: &[StreamId], metadata: &Metadata) -> Result<SealingKeys, StoreError> {
        match self.vault.get_or_create(subjects).await {
            Ok(keys) => Ok(SealingKeys::Ready(keys)),
            Err(erased @ StoreError::Erased { .. }) => match metadata.command_id {
                Some(command) => match self.inner.command_outcome(command).await? {
                    Some(outcome) => Ok(SealingKeys::AlreadyApplied(outcome)),
                    None => Err(erased),
                },
                None => Err(erased),
            },
            Err(e) => Err(e),
        }
    }

    /// Opens the sealed personal data of `events` (one key lookup for all their subjects).
    async fn unseal(&self, mut events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut sealed = Vec::new();
        for (index, event) in events.iter().enumerate() {
            if let Some(envelope) = Envelope::of(event)? {
                sealed.push((index, envelope));
            }
        }
        if sealed.is_empty() {
            return Ok(events);
        }
        let mut seen = HashSet::new();
        let subjects: Vec<StreamId> =
            sealed.iter().filter(|(_, e)| seen.insert(e.subject.as_str())).map(|(_, e)| e.subject.clone()).collect();
        let keys = self.vault.get(&subjects).await?;
        for (index, envelope) in sealed {
            let Some(event) = events.get_mut(index) else { continue };
            let value = match keys.get(&envelope.subject) {
                None => Value::Null,
                Some(key) => {
                    let plaintext = key
                        .open(envelope.nonce, aad(&envelope.subject, event.event_id).as_bytes(), envelope.ciphertext)
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "the personal data of event {} in {} does not decrypt under the key of {}: altered, \
                                 moved from another event, or sealed under another key",
                                event.event_id, event.stream_id, envelope.subject
                            ))
                        })?;
                    serde_json::from_slice(&plaintext).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "the decrypted personal data of event {} is not JSON",
                            event.event_id
                        ))
                    })?
                }
            };
            if let Some(payload) = event.payload.as_object_mut() {
                payload.insert(PERSONAL.to_owned(), value);
            }
        }
        Ok(events)
    }
}

enum SealingKeys {
    Ready(HashMap<StreamId, DataKey>),
    AlreadyApplied(AppendOutcome),
}

fn key_of<'a>(keys: &'a HashMap<StreamId, DataKey>, subject: &StreamId) -> Result<&'a DataKey, StoreError> {
    keys.get(subject).ok_or_else(|| StoreError::Corrupt(format!("the vault returned no data key for {subject}")))
}

/// The distinct subjects whose keys sealing `events` of `stream` needs, in order of first use.
fn subjects_of(stream: &StreamId, events: &[NewEvent]) -> Result<Vec<StreamId>, StoreError> {
    let mut subjects: Vec<StreamId> = Vec::new();
    for event in events.iter().filter(|e| has_personal(e)) {
        let subject = personal_subject(stream, &event.payload)?;
        if !subjects.contains(&subject) {
            subjects.push(subject);
        }
    }
    Ok(subjects)
}

/// The payload's personal data, when it has some to seal.
fn personal_mut(payload: &mut Value) -> Option<&mut Value> {
    payload.as_object_mut()?.get_mut(PERSONAL).filter(|p| !p.is_null())
}

fn has_personal(event: &NewEvent) -> bool {
    event.payload.get(PERSONAL).is_some_and(|p| !p.is_null())
}

fn aad(subject: &StreamId, event: EventId) -> String {
    format!("{subject}\n{event}")
}

/// A sealed `personal`, decoded.
struct Envelope {
    subject: StreamId,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Envelope {
    /// The envelope of a recorded event, `None` when its `personal` is absent, `null` or not sealed.
    fn of(event: &RecordedEvent) -> Result<Option<Envelope>, StoreError> {
        // Most events have no personal data: their payload is not even parsed.
        if !event.payload.may_contain(PERSONAL) {
            return Ok(None);
        }
        let Some(sealed) = event.payload.get(PERSONAL).and_then(Value::as_object).filter(|p| p.contains_key("sealed"))
        else {
            return Ok(None);
        };
        let bad = |what: &str| {
            StoreError::Corrupt(format!("the sealed personal data of event {} has {what}", event.event_id))
        };
        if field(sealed, "sealed") != Some(SEALING_SCHEME) {
            return Err(bad("an unknown sealing scheme"));
        }
        let subject = field(sealed, "key").and_then(|k| StreamId::parse(k).ok()).ok_or_else(|| bad("no valid key"))?;
        let nonce = field(sealed, "nonce")
            .and_then(|n| STANDARD.decode(n).ok())
            .and_then(|n| <[u8; NONCE_LEN]>::try_from(n.as_slice()).ok())
            .ok_or_else(|| bad("no valid nonce"))?;
        let ciphertext = field(sealed, "ciphertext")
            .and_then(|c| STANDARD.decode(c).ok())
            .ok_or_else(|| bad("no valid ciphertext"))?;
        Ok(Some(Envelope { subject, nonce, ciphertext }))
    }
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

#[async_trait]
impl EventStore for SealedEventStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
        metadata: &Metadata,
    ) -> Result<AppendOutcome, StoreError> {
        let subjects = subjects_of(stream, &events)?;
        if !subjects.is_empty() {
            let keys = match self.sealing_keys(&subjects, metadata).await? {
                SealingKeys::Ready(keys) => keys,
                SealingKeys::AlreadyApplied(first) => return Ok(first),
            };
            Self::seal(stream, &mut events, &keys)?;
        }
        self.inner.append(stream, expected, events, metadata).await
    }

    async fn append_with(
        &self,
        mut appends: Vec<StreamAppend>,
        companions: Vec<Companion>,
        metadata: &Metadata,
    ) -> Result<BatchOutcome, StoreError> {
        // In order of first use, each once (a registry import's batch names about a thousand).
        let mut subjects: Vec<StreamId> = Vec::new();
        let mut seen: HashSet<StreamId> = HashSet::new();
        for append in &appends {
            for subject in subjects_of(&append.stream, &append.events)? {
                if seen.insert(subject.clone()) {
                    subjects.push(subject);
                }
            }
        }
        if !subjects.is_empty() {
            let keys = match self.sealing_keys(&subjects, metadata).await? {
                SealingKeys::Ready(keys) => keys,
                SealingKeys::AlreadyApplied(first) => {
                    return Ok(BatchOutcome {
                        stream_versions: vec![],
                        checkpoint: first.checkpoint,
                        already_applied: true,
                    });
                }
            };
            for append in appends.iter_mut() {
                Self::seal(&append.stream, &mut append.events, &keys)?;
            }
        }
        self.inner.append_with(appends, companions, metadata).await
    }

    async fn command_outcome(&self, command: CommandId) -> Result<Option<AppendOutcome>, StoreError> {
        self.inner.command_outcome(command).await
    }

    async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(stream, from_version).await?;
        self.unseal(events).await
    }

    async fn read_streams(&self, streams: &[StreamId]) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_streams(streams).await?;
        self.unseal(events).await
    }

    /// Forwarded as it is: snapshots are only taken of streams without personal data.
    async fn snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.snapshot(stream).await
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(stream, snapshot).await
    }

    async fn read_all(
        &self,
        after: Checkpoint,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all(after, limit, filter).await?;
        self.unseal(events).await
    }

    /// Forwarded as it is: the events as stored, personal data sealed (what the audit chain hashes).
    fn stored_events(&self, after: Checkpoint, limit: usize) -> BoxStream<'_, Result<StoredEvent, StoreError>> {
        self.inner.stored_events(after, limit)
    }

    async fn read_types(
        &self,
        after: Checkpoint,
        limit: usize,
        stream_types: &[&'static str],
    ) -> Result<TypedRead, StoreError> {
        let read = self.inner.read_types(after, limit, stream_types).await?;
        Ok(TypedRead { events: self.unseal(read.events).await?, ..read })
    }

    async fn count_after(&self, after: Checkpoint, cap: u64) -> Result<u64, StoreError> {
        self.inner.count_after(after, cap).await
    }

    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.inner.head().await
    }

    fn wakeups(&self) -> Wakeups {
        self.inner.wakeups()
    }

    async fn health(&self) -> Result<StoreHealth, StoreError> {
        self.inner.health().await
    }
}
