//! The shape every aggregate and every event enum follows, so `commands` can run any of them generically.

use serde::Deserialize;
use serde_json::Value;

/// An aggregate: a pure decision function over its folded state.
///
/// `decide` turns a command into events (or refuses it); `evolve` folds one event into the state.
/// Both are synchronous and free of side effects.
pub trait Aggregate {
    /// The folded state; `Default` is "the stream does not exist yet".
    type State: Default + Clone + std::fmt::Debug + Send + Sync;
    type Command: std::fmt::Debug + Send;
    type Event: DomainEvent;
    type Error: std::error::Error + PartialEq + Send + Sync + 'static;

    /// The stream type stored with every event of this aggregate (e.g. `municipality`).
    const STREAM_TYPE: &'static str;

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds a history into the current state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}

/// An aggregate whose streams grow long (an operator's login record, one event per failed login): its state is
/// saved now and then as a snapshot, so that a decision folds only the events after it. Only for states that hold
/// no personal data (a snapshot is stored in clear).
pub trait Snapshotted: Aggregate {
    /// The state's serialized shape, with a version: change it whenever the form changes, and older snapshots are
    /// ignored (the stream is folded from its start once, and a new snapshot replaces them).
    const SNAPSHOT_KIND: &'static str;
    /// A snapshot is taken once this many events were appended after the last one.
    const SNAPSHOT_EVERY: u64;

    fn to_snapshot(state: &Self::State) -> serde_json::Value;
    /// `None` when `value` is not a state of this shape (the stream is then folded from its start).
    fn from_snapshot(value: serde_json::Value) -> Option<Self::State>;
}

/// An event enum with stable names and versions.
///
/// A released `(event_type, event_version)` shape is never edited: a new shape gets a new version, and
/// `decode` upcasts the old one.
pub trait DomainEvent: Sized + std::fmt::Debug + Clone + Send + Sync + 'static {
    /// Stable, past-tense name, e.g. `MunicipalityRegistered`.
    fn event_type(&self) -> &'static str;
    /// Version of this event's JSON shape.
    fn event_version(&self) -> u32;
    /// The payload as stored (without the type tag: that is `event_type`).
    fn encode(&self) -> Value;
    /// Reads a stored payload back, upcasting older versions.
    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError>;
}

/// A stored event that this build cannot read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventDecodeError {
    #[error("unknown event type {event_type} v{event_version}")]
    Unknown { event_type: String, event_version: u32 },
    #[error("event {event_type} v{event_version} has a payload this build cannot read: {reason}")]
    Payload { event_type: String, event_version: u32, reason: String },
}

impl EventDecodeError {
    pub(crate) fn unknown(event_type: &str, event_version: u32) -> Self {
        Self::Unknown { event_type: event_type.to_owned(), event_version }
    }
}

/// Reads a payload into the shape of one event version; the error names the event.
pub(crate) fn decode_payload<'de, T: Deserialize<'de>>(
    event_type: &str,
    event_version: u32,
    payload: &'de Value,
) -> Result<T, EventDecodeError> {
    T::deserialize(payload).map_err(|e| EventDecodeError::Payload {
        event_type: event_type.to_owned(),
        event_version,
        reason: e.to_string(),
    })
}
