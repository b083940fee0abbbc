//! Commands on one aggregate type: authorize → load → decide → append(expected version), through the one engine
//! ([`transact`]); also the error every use case answers with.

use std::marker::PhantomData;
use std::sync::Arc;

use cardap_domain::{Aggregate, EventDecodeError, MunicipalityCode};
use cardap_store::{AppendOutcome, Companion, EventStore, StoreError, StreamId};

use crate::authz::{AuthzError, Permission};
use crate::context::CommandContext;
use crate::engine::{Tx, transact};

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
    /// A failure of the machinery that is no fault of the caller (hashing threads, the system's randomness).
    #[error("internal failure: {0}")]
    Internal(String),
}

impl<E: std::error::Error + 'static> CommandError<E> {
    /// The same failure with the domain's refusal turned into another error type.
    pub fn map_domain<F: std::error::Error + 'static>(self, f: impl Fn(E) -> F) -> CommandError<F> {
        match self {
            CommandError::Domain(d) => CommandError::Domain(f(d)),
            CommandError::Item { index, error } => CommandError::Item { index, error: f(error) },
            CommandError::Unauthorized(a) => CommandError::Unauthorized(a),
            CommandError::PreconditionFailed { expected, current } => {
                CommandError::PreconditionFailed { expected, current }
            }
            CommandError::Contended => CommandError::Contended,
            CommandError::Store(s) => CommandError::Store(s),
            CommandError::Decode(d) => CommandError::Decode(d),
            CommandError::Internal(i) => CommandError::Internal(i),
        }
    }
}

/// An aggregate's state as loaded from its stream.
#[derive(Debug, Clone)]
pub struct Loaded<A: Aggregate> {
    pub state: A::State,
    /// The stream version (0 = no stream): the resource's ETag.
    pub version: u64,
}

/// Where the answer to a write comes from: the read model's row once it shows the write (the usual case, after
/// waiting for it), else the aggregate as its stream has it (the view lags).
#[derive(Debug)]
pub enum Shown<R, A: Aggregate> {
    View(R),
    Stream(Loaded<A>),
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
#[derive(Debug)]
pub struct CommandHandler<A> {
    store: Arc<dyn EventStore>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> Clone for CommandHandler<A> {
    fn clone(&self) -> Self {
        CommandHandler { store: self.store.clone(), _aggregate: PhantomData }
    }
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
        Tx::new(self.store.clone()).load::<A, A::Error>(stream).await
    }

    /// Authorizes, then decides `command` against the current state and appends the result: [`transact`] over
    /// one stream.
    ///
    /// `if_match` is the version the caller last saw (HTTP `If-Match`); without it, a concurrent change makes
    /// the command be decided again on the new state (a bounded number of times).
    pub async fn execute(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        stream: &StreamId,
        municipality: Option<MunicipalityCode>,
        if_match: Option<u64>,
        command: A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_with(ctx, permission, stream, municipality, if_match, command, |_| vec![]).await
    }

    /// [`CommandHandler::execute`] with writes that commit with the events or not at all: `companions` gets the
    /// events the command decided (none: nothing is written, the companions neither).
    #[allow(clippy::too_many_arguments)]
    pub async fn execute_with(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        stream: &StreamId,
        municipality: Option<MunicipalityCode>,
        if_match: Option<u64>,
        command: A::Command,
        companions: impl Fn(&[A::Event]) -> Vec<Companion>,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let companions = &companions;
        let (command, stream_ref) = (&command, stream);
        let done =
            transact(&self.store, ctx, std::slice::from_ref(permission), municipality, |mut tx: Tx| async move {
                let loaded = tx.load::<A, A::Error>(stream_ref).await?;
                if let Some(expected) = if_match
                    && expected != loaded.version
                {
                    return Err(CommandError::PreconditionFailed { expected, current: loaded.version });
                }
                let events = A::decide(&loaded.state, command.clone()).map_err(CommandError::Domain)?;
                tx.append::<A>(stream_ref, loaded.version, &events);
                for companion in companions(&events) {
                    tx.companion(companion);
                }
                let version = loaded.version + events.len() as u64;
                let state = events.iter().fold(loaded.state, A::evolve);
                Ok(((state, version, events), tx))
            })
            .await?;
        match done.value {
            Some((state, version, events)) => {
                if !events.is_empty() {
                    tracing::info!(stream = %stream, version, command = %ctx.command_id, "command applied");
                }
                let outcome = done.checkpoint.filter(|_| !events.is_empty()).map(|checkpoint| AppendOutcome {
                    stream_version: version,
                    checkpoint,
                    already_applied: false,
                });
                Ok(Executed { state, version, events, outcome })
            }
            // A retry of a command that already went through answers with the current state, writing nothing.
            None => {
                let loaded = self.load(stream).await?;
                let outcome = done.checkpoint.map(|checkpoint| AppendOutcome {
                    stream_version: loaded.version,
                    checkpoint,
                    already_applied: true,
                });
                Ok(Executed { state: loaded.state, version: loaded.version, events: vec![], outcome })
            }
        }
    }

    /// Decides one command per stream and appends all their events atomically: every command goes through, or
    /// none does (a batch registration, a CSV import, a bulk password change). A refusal names the item.
    pub async fn execute_many(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        municipality: Option<MunicipalityCode>,
        items: Vec<(StreamId, A::Command)>,
    ) -> Result<Vec<Executed<A>>, CommandError<A::Error>> {
        self.execute_many_with(ctx, permission, municipality, items, |_, _| vec![]).await
    }

    /// [`CommandHandler::execute_many`] with companions per item (given the item's index and decided events).
    pub async fn execute_many_with(
        &self,
        ctx: &CommandContext,
        permission: &Permission,
        municipality: Option<MunicipalityCode>,
        items: Vec<(StreamId, A::Command)>,
        companions: impl Fn(usize, &[A::Event]) -> Vec<Companion>,
    ) -> Result<Vec<Executed<A>>, CommandError<A::Error>> {
        let (items_ref, companions) = (&items, &companions);
        let done =
            transact(&self.store, ctx, std::slice::from_ref(permission), municipality, |mut tx: Tx| async move {
                let mut out = Vec::with_capacity(items_ref.len());
                for (index, (stream, command)) in items_ref.iter().enumerate() {
                    let loaded = tx.load::<A, A::Error>(stream).await?;
                    let events = A::decide(&loaded.state, command.clone())
                        .map_err(|error| CommandError::Item { index, error })?;
                    tx.append::<A>(stream, loaded.version, &events);
                    for companion in companions(index, &events) {
                        tx.companion(companion);
                    }
                    let version = loaded.version + events.len() as u64;
                    out.push((events.iter().fold(loaded.state, A::evolve), version, events));
                }
                Ok((out, tx))
            })
            .await?;
        match done.value {
            Some(decided) => {
                tracing::info!(commands = decided.len(), command = %ctx.command_id, "batch applied");
                Ok(decided
                    .into_iter()
                    .map(|(state, version, events)| {
                        let outcome = done.checkpoint.filter(|_| !events.is_empty()).map(|checkpoint| AppendOutcome {
                            stream_version: version,
                            checkpoint,
                            already_applied: false,
                        });
                        Executed { state, version, events, outcome }
                    })
                    .collect())
            }
            None => {
                let mut now = Vec::with_capacity(items.len());
                for (stream, _) in &items {
                    let l = self.load(stream).await?;
                    now.push(Executed { state: l.state, version: l.version, events: vec![], outcome: None });
                }
                Ok(now)
            }
        }
    }
}
