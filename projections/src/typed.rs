//! The one typed adapter between the runner and a read model: a [`View`] names the stream types it reads and gets
//! each event already decoded, with the facts of its recording ([`Recorded`]); the adapter ([`Typed`]) owns the
//! preamble every projection used to repeat (skip other streams, decode, name the event in an error).

use async_trait::async_trait;
use cardap_domain::DomainEvent;
use cardap_store::RecordedEvent;
use sqlx::AnyConnection;

use crate::{Projection, ProjectionError};

/// A read model over the events of one kind of stream (or several that share one event type).
#[async_trait]
pub trait View: Send + Sync + std::fmt::Debug + 'static {
    /// The events of the streams it reads.
    type Event: DomainEvent;
    /// Stable name; also the checkpoint's key.
    const NAME: &'static str;
    /// The stream types whose events it applies.
    const STREAM_TYPES: &'static [&'static str];

    /// Applies one decoded event inside the runner's transaction.
    async fn apply(
        &self,
        conn: &mut AnyConnection,
        event: Self::Event,
        recorded: &Recorded<'_>,
    ) -> Result<(), ProjectionError>;

    /// Applies a batch of decoded events, in order, inside the runner's transaction. The default applies them one
    /// by one; a view with many events of one kind overrides it with set-based statements, with the same result.
    async fn apply_all(
        &self,
        conn: &mut AnyConnection,
        events: Vec<(Self::Event, Recorded<'_>)>,
    ) -> Result<(), ProjectionError> {
        for (event, recorded) in events {
            self.apply(conn, event, &recorded).await?;
        }
        Ok(())
    }

    /// The tables this view owns and nothing else writes (emptied by a rebuild in place, built beside the live
    /// ones by a blue/green rebuild).
    const TABLES: &'static [&'static str];

    /// Indexes and keys a blue/green rebuild creates after loading the rows (see
    /// [`Projection::built_after_load`]).
    const BUILT_AFTER_LOAD: &'static [&'static str] = &[];
}

/// What a view may know of an event besides its content: where and when it was recorded.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    name: &'static str,
    event: &'a RecordedEvent,
}

impl Recorded<'_> {
    /// The aggregate's key, as the stream id holds it.
    pub fn key(&self) -> &str {
        self.event.stream_id.key()
    }

    /// The stream: the subject whose data key sealed the event's personal data.
    pub fn stream_id(&self) -> &cardap_store::StreamId {
        &self.event.stream_id
    }

    pub fn stream_type(&self) -> &str {
        &self.event.stream_type
    }

    /// The stream version after this event (the resource's `ETag`).
    pub fn version(&self) -> i64 {
        i64::try_from(self.event.version).unwrap_or(i64::MAX)
    }

    /// Its place in the global order (unique, and the same in every rebuild).
    pub fn position(&self) -> i64 {
        i64::try_from(self.event.checkpoint.position).unwrap_or(i64::MAX)
    }

    /// When it was recorded, as the read models store times (RFC 3339, milliseconds, UTC).
    pub fn at(&self) -> String {
        self.event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// An event this view cannot apply, named.
    pub fn error(&self, reason: impl std::fmt::Display) -> ProjectionError {
        ProjectionError::event(self.name, self.event, reason)
    }
}

/// A [`View`] as the runner's [`Projection`].
#[derive(Debug)]
pub struct Typed<V>(pub V);

#[async_trait]
impl<V: View> Projection for Typed<V> {
    fn name(&self) -> &'static str {
        V::NAME
    }

    fn stream_types(&self) -> Option<&'static [&'static str]> {
        Some(V::STREAM_TYPES)
    }

    async fn apply(&self, conn: &mut AnyConnection, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if !V::STREAM_TYPES.contains(&event.stream_type.as_str()) {
            return Ok(());
        }
        let recorded = Recorded { name: V::NAME, event };
        let decoded: V::Event = event.decode().map_err(|e| recorded.error(e))?;
        self.0.apply(conn, decoded, &recorded).await
    }

    async fn apply_batch(&self, conn: &mut AnyConnection, events: &[&RecordedEvent]) -> Result<(), ProjectionError> {
        let mut decoded = Vec::with_capacity(events.len());
        for event in events.iter().filter(|e| V::STREAM_TYPES.contains(&e.stream_type.as_str())) {
            let recorded = Recorded { name: V::NAME, event };
            decoded.push((event.decode().map_err(|e| recorded.error(e))?, recorded));
        }
        self.0.apply_all(conn, decoded).await
    }

    fn tables(&self) -> &'static [&'static str] {
        V::TABLES
    }

    fn built_after_load(&self) -> &'static [&'static str] {
        V::BUILT_AFTER_LOAD
    }
}
