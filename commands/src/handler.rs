//! The generic command path: authorize → load → decide → append(expected version), with bounded retry.

use std::marker::PhantomData;
use std::sync::Arc;

use cardap_domain::{Aggregate, EventDecodeError, MunicipalityCode};
use cardap_store::{AppendOutcome, EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend, StreamId};

use crate::authz::{AuthzError, Permission, authorize};
use crate::context::CommandContext;

/// How often a command is decided again after another writer changed the stream first.
const MAX_ATTEMPTS: usize = 5;

/// Why a command was not applied. Nothing was written in any case.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error + 'static> {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(E),
    /// The domain refused one command of a batch (`index` counts from 0); nothing of the batch was written.
    #[error("item {index}: {error}")]
    Item { index: usize, error: E },
    #[error(transparent)]
    Unauthorized(#[from] AuthzError),
    /// The caller's `If-Match` version no longer holds.
    #[error("the resource is at version {current}, not {expected}")]
    PreconditionFailed { expected: u64, current: u64 },
    /// Other writers kept changing the stream; the command gave up after bounded retries.
    #[error("the resource kept changing concurrently; try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] EventDecodeError),
}

/// An aggregate's state as loaded from its stream.
#[derive(Debug, Clone)]
pub struct Loaded<A: Aggregate> {
    pub state: A::State,
    /// The stream version (0 = no stream): the resource's ETag.
    pub version: u64,
}

/// A command that went through.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the command.
    pub state: A::State,
    /// The stream version after the command.
    pub version: u64,
    /// The events this command wrote (empty when it changed nothing or was a retry of an applied command).
    pub events: Vec<A::Event>,
    /// Where the append landed in the global order, when it wrote (to wait for views to catch up).
    pub outcome: Option<AppendOutcome>,
}

/// Runs commands against an event store.
#[derive(Debug, Clone)]
pub struct CommandHandler<A> {
    store: Arc<dyn EventStore>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> CommandHandler<A>
where
    A: Aggregate,
    A::Command: Clone,
{
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        CommandHandler { store, _aggregate: PhantomData }
    }

    /// Loads and folds one stream.
    pub async fn load(&self, stream: &StreamId) -> Result<Loaded<A>, CommandError<A::Error>> {
        let recorded = self.store.read_stream(stream, 1).await?;
        let mut state = A::State::default();
        let mut version = 0;
        for r in &recorded {
            let event = r.decode::<A::Event>()?;
            state = A::evolve(state, &event);
            version = r.version;
        }
        Ok(Loaded { state, version })
    }

    /// Authorizes, then decides `command` against the current state and appends the result.
    ///
    /// `if_match` is the version the caller last saw (HTTP `If-Match`); without it, a concurrent change makes
    /// the command be decided again on the new state (at most [`MAX_ATTEMPTS`] times).
    pub async fn execute(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        stream: &StreamId,
        municipality: Option<MunicipalityCode>,
        if_match: Option<u64>,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        if let Some(actor) = &ctx.actor {
            authorize(actor, permission)?;
        }
        let metadata = ctx.metadata(municipality);
        for _ in 0..MAX_ATTEMPTS {
            // Load first, then look for the command: if a first attempt commits in between, the second read
            // sees it, so a retry is never decided against the state the first attempt produced.
            let loaded = self.load(stream).await?;
            // A retry of a command that already went through answers with the current state, writing nothing.
            if let Some(outcome) = self.store.command_outcome(ctx.command_id).await? {
                let loaded = self.load(stream).await?;
                return Ok(Executed {
                    state: loaded.state,
                    version: loaded.version,
                    events: vec![],
                    outcome: Some(outcome),
                });
            }
            if let Some(expected) = if_match
                && expected != loaded.version
            {
                return Err(CommandError::PreconditionFailed { expected, current: loaded.version });
            }
            let events = A::decide(&loaded.state, command.clone()).map_err(CommandError::Domain)?;
            if events.is_empty() {
                return Ok(Executed { state: loaded.state, version: loaded.version, events, outcome: None });
            }
            let new: Vec<NewEvent> = events.iter().map(NewEvent::from_domain).collect();
            match self.store.append(stream, ExpectedVersion::Exact(loaded.version), new, &metadata).await {
                Ok(outcome) if outcome.already_applied => continue,
                Ok(outcome) => {
                    let state = events.iter().fold(loaded.state, A::evolve);
                    tracing::info!(stream = %stream, version = outcome.stream_version, command = %ctx.command_id, "command applied");
                    return Ok(Executed { state, version: outcome.stream_version, events, outcome: Some(outcome) });
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    if let Some(expected) = if_match {
                        return Err(CommandError::PreconditionFailed { expected, current: actual });
                    }
                    tracing::debug!(stream = %stream, "concurrent change; deciding again");
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(CommandError::Contended)
    }

    /// Decides one command per stream and appends all their events atomically: every command goes through, or
    /// none does (a batch registration, a CSV import, a bulk password change).
    pub async fn execute_many(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        municipality: Option<MunicipalityCode>,
        items: Vec<(StreamId, A::Command)>,
    ) -> Result<Vec<Executed<A>>, CommandError<A::Error>> {
        if let Some(actor) = &ctx.actor {
            authorize(actor, permission)?;
        }
        let metadata = ctx.metadata(municipality);
        for _ in 0..MAX_ATTEMPTS {
            let mut loaded = Vec::with_capacity(items.len());
            for (stream, _) in &items {
                loaded.push(self.load(stream).await?);
            }
            if self.store.command_outcome(ctx.command_id).await?.is_some() {
                let mut done = Vec::with_capacity(items.len());
                for (stream, _) in &items {
                    let l = self.load(stream).await?;
                    done.push(Executed { state: l.state, version: l.version, events: vec![], outcome: None });
                }
                return Ok(done);
            }
            let mut decided = Vec::with_capacity(items.len());
            for (index, ((_, command), l)) in items.iter().zip(&loaded).enumerate() {
                let events =
                    A::decide(&l.state, command.clone()).map_err(|error| CommandError::Item { index, error })?;
                decided.push(events);
            }
            let appends = items
                .iter()
                .zip(&loaded)
                .zip(&decided)
                .filter(|(_, events)| !events.is_empty())
                .map(|(((stream, _), l), events)| StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(l.version),
                    events: events.iter().map(NewEvent::from_domain).collect(),
                })
                .collect::<Vec<_>>();
            let outcome = if appends.is_empty() {
                None
            } else {
                match self.store.append_many(appends, &metadata).await {
                    Ok(o) if o.already_applied => continue,
                    Ok(o) => Some(o),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(other) => return Err(other.into()),
                }
            };
            tracing::info!(commands = items.len(), command = %ctx.command_id, "batch applied");
            return Ok(loaded
                .into_iter()
                .zip(decided)
                .map(|(l, events)| {
                    let version = l.version + events.len() as u64;
                    let state = events.iter().fold(l.state, A::evolve);
                    Executed {
                        state,
                        version,
                        outcome: outcome.as_ref().filter(|_| !events.is_empty()).map(|o| AppendOutcome {
                            stream_version: version,
                            checkpoint: o.checkpoint,
                            already_applied: false,
                        }),
                        events,
                    }
                })
                .collect());
        }
        Err(CommandError::Contended)
    }
}
