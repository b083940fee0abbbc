//! The values that cross the store's boundary: stream ids, versions, checkpoints, new and recorded events.

use std::fmt;

use cardap_domain::{DomainEvent, MunicipalityCode, OperatorKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            /// A fresh, time-ordered (v7) id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// Identity of one stored event (UUID v7).
    EventId
);
uuid_id!(
    /// Identity of one command; an append carrying an already applied command id writes nothing.
    CommandId
);
uuid_id!(
    /// Ties together everything one user action caused, across commands and systems.
    CorrelationId
);
uuid_id!(
    /// The message (command or event) that directly caused this one.
    CausationId
);

/// A stream: `<stream_type>-<key>`, e.g. `municipality-131016`. The stream type is the part before the first `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

/// Why a string is not a stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream id {0:?}: expected <type>-<key>, printable ASCII or any non-control text, at most 200 chars")]
pub struct StreamIdError(String);

impl StreamId {
    /// The stream of one aggregate instance.
    pub fn new(stream_type: &str, key: &str) -> Result<Self, StreamIdError> {
        Self::parse(&format!("{stream_type}-{key}"))
    }

    /// The stream of an aggregate instance keyed by a parsed id (`stream_type` is an aggregate's constant, all
    /// lowercase). Cannot fail: control characters, which no parsed id contains, are dropped, the key is cut to
    /// fit, and an empty key becomes `_`.
    pub fn of(stream_type: &'static str, key: &str) -> Self {
        let room = 199usize.saturating_sub(stream_type.chars().count());
        let key: String = key.chars().filter(|c| !c.is_control()).take(room).collect();
        let key = if key.is_empty() { "_".to_owned() } else { key };
        Self(format!("{stream_type}-{key}"))
    }

    pub fn parse(s: &str) -> Result<Self, StreamIdError> {
        let valid = s.chars().count() <= 200
            && !s.chars().any(char::is_control)
            && s.split_once('-').is_some_and(|(t, k)| {
                !t.is_empty() && !k.is_empty() && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            });
        if valid { Ok(Self(s.to_owned())) } else { Err(StreamIdError(s.to_owned())) }
    }

    /// A stream id read back from the store, which only ever stored parsed ids.
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The aggregate instance's key (the part after the first `-`).
    pub fn key(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, k)| k)
    }

    /// The aggregate type this stream belongs to.
    pub fn stream_type(&self) -> &str {
        self.0.split_once('-').map_or(self.0.as_str(), |(t, _)| t)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> Self {
        id.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the caller believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (0 = does not exist).
    Exact(u64),
}

impl ExpectedVersion {
    /// The version the stream must be at, if any is required.
    pub fn required(self) -> Option<u64> {
        match self {
            Self::Any => None,
            Self::NoStream => Some(0),
            Self::Exact(n) => Some(n),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

/// A place in the global order. On PostgreSQL `transaction` is the writing transaction's xid8, on SQLite 0;
/// checkpoints order by `(transaction, position)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Checkpoint {
    pub transaction: u64,
    pub position: u64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint { transaction: 0, position: 0 };
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transaction, self.position)
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (t, p) = s.split_once('.').ok_or_else(|| format!("invalid checkpoint {s:?}"))?;
        Ok(Checkpoint {
            transaction: t.parse().map_err(|_| format!("invalid checkpoint {s:?}"))?,
            position: p.parse().map_err(|_| format!("invalid checkpoint {s:?}"))?,
        })
    }
}

/// Who did it, from where, and why: stored with every event of one append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Retries of the same command carry the same id and are applied once.
    pub command_id: Option<CommandId>,
    pub correlation_id: CorrelationId,
    pub causation_id: Option<CausationId>,
    /// The municipality whose data this is (tenant of the stream); `None` for installation-wide data.
    #[serde(skip)]
    pub municipality: Option<MunicipalityCode>,
    /// The operator who did it; `None` for actions of the system itself.
    #[serde(skip)]
    pub operator: Option<OperatorKey>,
    /// The terminal (窓口端末) the request came from, as the client identifies it.
    pub terminal: Option<String>,
    /// The HTTP request id, to find the request in the logs.
    pub request_id: Option<String>,
}

impl Metadata {
    /// Metadata of an action by the system itself (no operator), in its own correlation.
    pub fn system() -> Self {
        Metadata {
            command_id: None,
            correlation_id: CorrelationId::generate(),
            causation_id: None,
            municipality: None,
            operator: None,
            terminal: None,
            request_id: None,
        }
    }

    /// The part stored as JSON (municipality and operator have columns of their own).
    pub(crate) fn to_json(&self) -> Value {
        // Serializing plain ids and strings cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: EventId,
    pub event_type: String,
    pub event_version: u32,
    pub payload: Value,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, event_version: u32, payload: Value) -> Self {
        NewEvent { event_id: EventId::generate(), event_type: event_type.into(), event_version, payload }
    }

    /// Encodes a domain event.
    pub fn from_domain<E: DomainEvent>(event: &E) -> Self {
        Self::new(event.event_type(), event.event_version(), event.encode())
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub stream_type: String,
    /// Position in its stream, from 1.
    pub version: u64,
    /// Place in the global order.
    pub checkpoint: Checkpoint,
    pub event_type: String,
    pub event_version: u32,
    /// Parsed when first looked at (`Deref` to a `Value`).
    pub payload: Payload,
    /// Includes the municipality and operator columns.
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

/// An event's payload as read from the log: the JSON text the database returned, parsed into a [`Value`] only when
/// something first looks at it (a reader that routes, counts or skips events by their envelope never parses it).
/// Dereferences to the `Value`; changing it through `DerefMut` drops the text.
#[derive(Clone, Default)]
pub struct Payload {
    text: Option<Box<str>>,
    value: std::sync::OnceLock<Value>,
}

impl Payload {
    /// A payload read as text (valid JSON: the stores only ever write `Value`s; a text that does not parse reads as
    /// `null`, which no event decodes, so the reader names the event).
    pub fn from_text(text: impl Into<Box<str>>) -> Self {
        Payload { text: Some(text.into()), value: std::sync::OnceLock::new() }
    }

    /// The payload's JSON text: as read when still unparsed and unchanged, else written out.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match &self.text {
            Some(text) => std::borrow::Cow::Borrowed(text),
            None => std::borrow::Cow::Owned(self.value().to_string()),
        }
    }

    /// Whether the payload may have `key` as an object key: `false` only when its unparsed text does not hold it
    /// at all (the stores write keys as they are, never escaped), without parsing it.
    pub fn may_contain(&self, key: &str) -> bool {
        match (&self.text, self.value.get()) {
            (Some(text), None) => text.contains(&format!("\"{key}\"")),
            _ => true,
        }
    }

    /// The parsed payload.
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| parse(self.text.as_deref()))
    }

    /// The parsed payload, taken out.
    pub fn into_value(self) -> Value {
        let _ = self.value();
        self.value.into_inner().unwrap_or(Value::Null)
    }
}

fn parse(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload { text: None, value: std::sync::OnceLock::from(value) }
    }
}

impl std::ops::Deref for Payload {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.value()
    }
}

impl std::ops::DerefMut for Payload {
    fn deref_mut(&mut self) -> &mut Value {
        let text = self.text.take();
        if self.value.get().is_none() {
            self.value = std::sync::OnceLock::from(parse(text.as_deref()));
        }
        match self.value.get_mut() {
            Some(value) => value,
            None => unreachable!("the value was set just above"),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value(), f)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl RecordedEvent {
    /// Decodes the payload as a domain event (with upcasting).
    pub fn decode<E: DomainEvent>(&self) -> Result<E, cardap_domain::EventDecodeError> {
        E::decode(&self.event_type, self.event_version, &self.payload)
    }
}

/// An event as stored, its payload left as the JSON text the database returns: for a reader that hashes every
/// event and needs no `Value` of it (the audit chain builds its canonical bytes from the text).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub stream_type: String,
    /// Position in its stream, from 1.
    pub version: u64,
    /// Place in the global order.
    pub checkpoint: Checkpoint,
    pub event_type: String,
    pub event_version: u32,
    /// The payload's JSON text as stored (on PostgreSQL the `json` column keeps the text it was given), unparsed.
    pub payload: String,
    /// Includes the municipality and operator columns.
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

impl From<RecordedEvent> for StoredEvent {
    /// The payload written back out as JSON text (what a store without a text path of its own hands out).
    fn from(event: RecordedEvent) -> Self {
        let RecordedEvent {
            event_id,
            stream_id,
            stream_type,
            version,
            checkpoint,
            event_type,
            event_version,
            payload,
            metadata,
            recorded_at,
        } = event;
        StoredEvent {
            event_id,
            stream_id,
            stream_type,
            version,
            checkpoint,
            event_type,
            event_version,
            payload: payload.text().into_owned(),
            metadata,
            recorded_at,
        }
    }
}

/// What a backend decodes of an event's row besides its payload: a [`RecordedEvent`] or a [`StoredEvent`] once
/// the payload is added (parsed or as text).
pub(crate) struct Envelope {
    pub event_id: EventId,
    pub stream_id: StreamId,
    pub stream_type: String,
    pub version: u64,
    pub checkpoint: Checkpoint,
    pub event_type: String,
    pub event_version: u32,
    pub metadata: Metadata,
    pub recorded_at: DateTime<Utc>,
}

impl Envelope {
    pub fn recorded(self, payload: Payload) -> RecordedEvent {
        let Envelope {
            event_id,
            stream_id,
            stream_type,
            version,
            checkpoint,
            event_type,
            event_version,
            metadata,
            recorded_at,
        } = self;
        RecordedEvent {
            event_id,
            stream_id,
            stream_type,
            version,
            checkpoint,
            event_type,
            event_version,
            payload,
            metadata,
            recorded_at,
        }
    }

    pub fn stored(self, payload: String) -> StoredEvent {
        let Envelope {
            event_id,
            stream_id,
            stream_type,
            version,
            checkpoint,
            event_type,
            event_version,
            metadata,
            recorded_at,
        } = self;
        StoredEvent {
            event_id,
            stream_id,
            stream_type,
            version,
            checkpoint,
            event_type,
            event_version,
            payload,
            metadata,
            recorded_at,
        }
    }
}

/// The result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append.
    pub stream_version: u64,
    /// The global place of the last event written (for waiting until a view has caught up with it).
    pub checkpoint: Checkpoint,
    /// True when the command id had already been applied and nothing was written now.
    pub already_applied: bool,
}

/// One stream's part of an atomic multi-stream append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// The result of an atomic multi-stream append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Each stream's version after the append, in the order given (empty when `already_applied`).
    pub stream_versions: Vec<u64>,
    /// The global place of the last event written.
    pub checkpoint: Checkpoint,
    pub already_applied: bool,
}

/// The result of [`EventStore::read_types`](crate::EventStore::read_types).
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRead {
    /// Events of the asked stream types, in global order.
    pub events: Vec<RecordedEvent>,
    /// How far the log was looked through: no event of those types at or before it is missing from `events`
    /// (or lay before `after`). A reader continues after it, even when `events` is empty.
    pub scanned: Checkpoint,
    /// Events committed past `scanned` that an older transaction still open holds back from readers (PostgreSQL:
    /// a transaction of a later xid commits first). No wake-up comes when that older transaction ends, so a
    /// reader that wants them soon looks again shortly.
    pub held_back: bool,
}

/// Which events `read_all` returns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ReadFilter {
    #[default]
    All,
    Municipality(MunicipalityCode),
    Operator(OperatorKey),
    /// An operator's history: the events he did (his key in the metadata) or that happened on one of `streams`
    /// (his own), recorded in `[since, until)` when given. The time bounds only narrow the read (an index range
    /// on PostgreSQL); a caller that needs them exact checks them too.
    Actor {
        operator: OperatorKey,
        streams: Vec<StreamId>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    },
}

/// Figures for health checks and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreHealth {
    pub backend: &'static str,
    /// Age of the oldest open writing transaction (PostgreSQL): it delays delivery of later events.
    pub oldest_transaction_ms: Option<u64>,
    /// That transaction (PostgreSQL): in *any* database of the cluster, since the order of commits readers wait
    /// for (`xid8` visibility) is the cluster's.
    pub oldest_transaction: Option<OpenTransaction>,
}

/// An open transaction that holds readers of the event log back, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenTransaction {
    /// The backend's process id (`SELECT pg_terminate_backend(pid)` ends it).
    pub pid: i32,
    /// Its database: not necessarily cardap's.
    pub database: Option<String>,
    pub application: Option<String>,
    /// `active`, `idle in transaction` …
    pub state: Option<String>,
    /// Milliseconds since the transaction began.
    pub age_ms: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_payload_keeps_the_text_it_was_read_as_until_it_is_changed() {
        // Key order and spacing as stored (the audit chain hashes this text): a look does not rewrite it.
        let payload = Payload::from_text(r#"{"b": 1, "a": [true]}"#);
        assert_eq!(payload["a"][0], true);
        assert_eq!(payload.text(), r#"{"b": 1, "a": [true]}"#);
        assert_eq!(payload, serde_json::json!({"a": [true], "b": 1}));

        let mut changed = payload.clone();
        changed["b"] = serde_json::json!(2);
        assert_eq!(changed.text(), r#"{"a":[true],"b":2}"#, "a changed payload is written out anew");
        assert_eq!(payload["b"], 1, "the clone it came from is unchanged");
        assert_eq!(changed.into_value(), serde_json::json!({"a": [true], "b": 2}));
    }

    #[test]
    fn a_payload_that_is_not_json_reads_as_null_which_no_event_decodes() {
        let payload = Payload::from_text("{not json");
        assert!(payload.is_null());
        assert_eq!(payload.text(), "{not json", "the text stays for whoever names the event");
    }

    #[test]
    fn whether_a_key_may_be_there_is_told_without_parsing() {
        let payload = Payload::from_text(r#"{"personal": {"sealed": "x"}, "n": "personally"}"#);
        assert!(payload.may_contain("personal"));
        assert!(!payload.may_contain("person"), "only a whole key counts");
        assert!(payload.value.get().is_none(), "nothing was parsed");
        assert!(Payload::from(serde_json::json!({})).may_contain("personal"), "a parsed payload is simply looked at");
    }
}
