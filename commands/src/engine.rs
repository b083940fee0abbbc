//! The one command engine: every change in cardap goes through [`transact`].
//!
//! Load what the decision needs through [`Tx`], decide, append every stream at the version it was loaded at —
//! together with the [`Companion`] writes that must commit with the events (a password hash, ended sessions) —
//! in one atomic `append_with`; when another writer got there first, load and decide again (bounded). A retry of
//! an already applied command (same command id) writes nothing. A long stream of a [`Snapshotted`] aggregate is
//! loaded from its last snapshot, and a new snapshot is saved after the commit when enough events were added. A decision over one stream
//! ([`crate::CommandHandler`]) is the one-stream case of the same loop, not a second engine.

use std::sync::Arc;

use cardap_domain::{Aggregate, MunicipalityCode, Snapshotted};
use cardap_store::{
    Checkpoint, Companion, EventStore, ExpectedVersion, NewEvent, Snapshot, StoreError, StreamAppend, StreamId,
};

use crate::authz::{Permission, authorize};
use crate::context::CommandContext;
use crate::handler::{CommandError, Loaded};

/// How often a decision is made again after another writer changed one of its streams first.
const MAX_ATTEMPTS: usize = 5;

/// The streams one decision read and the events it appends.
#[derive(Debug)]
pub struct Tx {
    store: Arc<dyn EventStore>,
    appends: Vec<StreamAppend>,
    companions: Vec<Companion>,
    /// The version of the snapshot each snapshotted stream was loaded from (0: none).
    snapshot_bases: Vec<(StreamId, u64)>,
    /// Snapshots to save once the appends committed.
    snapshots: Vec<(StreamId, Snapshot)>,
}

impl Tx {
    pub(crate) fn new(store: Arc<dyn EventStore>) -> Tx {
        Tx { store, appends: Vec::new(), companions: Vec::new(), snapshot_bases: Vec::new(), snapshots: Vec::new() }
    }

    /// Stages a write that commits with this decision's events or not at all (a password hash, ended sessions).
    pub fn companion(&mut self, companion: Companion) {
        self.companions.push(companion);
    }

    /// Loads and folds one stream.
    pub async fn load<A: Aggregate, E: std::error::Error + 'static>(
        &mut self,
        stream: &StreamId,
    ) -> Result<Loaded<A>, CommandError<E>> {
        let recorded = self.store.read_stream(stream, 1).await?;
        let mut state = A::State::default();
        let mut version = 0;
        for r in &recorded {
            state = A::evolve(state, &r.decode::<A::Event>()?);
            version = r.version;
        }
        Ok(Loaded { state, version })
    }

    /// Loads one stream of a [`Snapshotted`] aggregate: its last snapshot (when it has this state's shape) and only
    /// the events after it.
    pub async fn load_snapshotted<A: Snapshotted, E: std::error::Error + 'static>(
        &mut self,
        stream: &StreamId,
    ) -> Result<Loaded<A>, CommandError<E>> {
        let snapshot = match self.store.snapshot(stream).await? {
            Some(s) if s.kind == A::SNAPSHOT_KIND => A::from_snapshot(s.state).map(|state| (s.version, state)),
            _ => None,
        };
        let (mut version, mut state) = snapshot.unwrap_or((0, A::State::default()));
        self.snapshot_bases.push((stream.clone(), version));
        for r in &self.store.read_stream(stream, version + 1).await? {
            state = A::evolve(state, &r.decode::<A::Event>()?);
            version = r.version;
        }
        Ok(Loaded { state, version })
    }

    /// [`Tx::append`] to a stream loaded with [`Tx::load_snapshotted`] as `loaded`; when the stream has grown by
    /// `SNAPSHOT_EVERY` events since its snapshot, the state after `events` is saved as the new one once they
    /// committed.
    pub fn append_snapshotted<A: Snapshotted>(&mut self, stream: &StreamId, loaded: &Loaded<A>, events: &[A::Event]) {
        self.append::<A>(stream, loaded.version, events);
        let base = self.snapshot_bases.iter().find(|(s, _)| s == stream).map_or(0, |(_, base)| *base);
        let version = loaded.version + events.len() as u64;
        if !events.is_empty() && version.saturating_sub(base) >= A::SNAPSHOT_EVERY {
            let state = events.iter().fold(loaded.state.clone(), A::evolve);
            let snapshot = Snapshot { kind: A::SNAPSHOT_KIND.to_owned(), version, state: A::to_snapshot(&state) };
            self.snapshots.push((stream.clone(), snapshot));
        }
    }

    /// Appends `events` to `stream`, which must still be at `version` (0: must not exist) when committing.
    pub fn append<A: Aggregate>(&mut self, stream: &StreamId, version: u64, events: &[A::Event]) {
        if events.is_empty() {
            return;
        }
        let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version) };
        self.appends.push(StreamAppend {
            stream: stream.clone(),
            expected,
            events: events.iter().map(NewEvent::from_domain).collect(),
        });
    }
}

/// A decision that went through.
#[derive(Debug)]
pub struct Transacted<T> {
    /// What the decision returned; `None` when this was a retry of an already applied command (nothing was
    /// decided now: answer with the current state).
    pub value: Option<T>,
    /// Where the append landed, when something was written (to wait for the views).
    pub checkpoint: Option<Checkpoint>,
}

/// Authorizes every permission, then runs `decide` and appends what it staged, retrying on conflicts.
///
/// `decide` must be repeatable: it is called again, on fresh state, after a conflict. It gets a fresh [`Tx`] per
/// attempt and hands it back with its value. (Not an async closure over `&mut Tx`: rustc cannot prove such a
/// closure's future `Send` for every lifetime, so the whole command could not run in an axum handler or a spawned
/// task — "implementation of `AsyncFnMut` is not general enough".)
pub async fn transact<T, E, F>(
    store: &Arc<dyn EventStore>,
    ctx: &CommandContext,
    permissions: &[Permission],
    municipality: Option<MunicipalityCode>,
    mut decide: impl FnMut(Tx) -> F,
) -> Result<Transacted<T>, CommandError<E>>
where
    E: std::error::Error + 'static,
    F: Future<Output = Result<(T, Tx), CommandError<E>>>,
{
    if let Some(actor) = &ctx.actor {
        for permission in permissions {
            authorize(actor, permission)?;
        }
    }
    let metadata = ctx.metadata(municipality);
    for _ in 0..MAX_ATTEMPTS {
        if let Some(outcome) = store.command_outcome(ctx.command_id).await? {
            return Ok(Transacted { value: None, checkpoint: Some(outcome.checkpoint) });
        }
        let (value, tx) = match decide(Tx::new(store.clone())).await {
            Ok(done) => done,
            Err(
                e @ (CommandError::Domain(_) | CommandError::Item { .. } | CommandError::PreconditionFailed { .. }),
            ) => {
                // The first attempt of this very command may have committed after the check above: then this
                // refusal is about its own effect (e.g. "already registered"), and the retry succeeded.
                if let Some(outcome) = store.command_outcome(ctx.command_id).await? {
                    return Ok(Transacted { value: None, checkpoint: Some(outcome.checkpoint) });
                }
                return Err(e);
            }
            Err(other) => return Err(other),
        };
        if tx.appends.is_empty() {
            return Ok(Transacted { value: Some(value), checkpoint: None });
        }
        match store.append_with(tx.appends, tx.companions, &metadata).await {
            Ok(outcome) if outcome.already_applied => {
                return Ok(Transacted { value: None, checkpoint: Some(outcome.checkpoint) });
            }
            Ok(outcome) => {
                tracing::info!(command = %ctx.command_id, "transaction applied");
                for (stream, snapshot) in &tx.snapshots {
                    // A cache: a snapshot not saved now only makes the next load of the stream a little longer.
                    if let Err(e) = store.save_snapshot(stream, snapshot).await {
                        tracing::warn!(%stream, error = %e, "could not save a snapshot");
                    }
                }
                return Ok(Transacted { value: Some(value), checkpoint: Some(outcome.checkpoint) });
            }
            Err(StoreError::Conflict { stream, .. }) => {
                tracing::debug!(%stream, "concurrent change; deciding again");
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(CommandError::Contended)
}
