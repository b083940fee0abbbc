//! 消去 (erasure by crypto-shredding, issue 12 point 6): erase a resident's personal data for good — after his
//! move-out once the municipality's retention period has passed, or earlier on a documented request.
//!
//! Owns the erase use case: who may (the municipality's operations manager, the system administrator), the facts
//! the decision needs (now from the [`Clock`], when his move-out was recorded, the configured
//! [`RetentionPeriod`]), and the order of the two writes:
//! 1. one atomic append of `ResidentErased` to his stream and, when he was registered from a registry entry,
//!    `RegistryEntryErased` to that entry's stream (the facts of that entry are him too);
//! 2. then the destruction of those streams' data keys ([`DataKeys`]).
//!
//! The two cannot commit together (the key vault may sit behind another connection, and destroying is not
//! undoable), so the event comes first and the destruction is made sure of twice: this use case destroys right
//! after the append, again on a retry of the same command and again when asked to erase someone already erased
//! (destroying is idempotent); and every node's erasure follower (`cardap_projections::erasure::KeyShredder`)
//! destroys the keys of every erasure event it finds after its stored checkpoint — so a process that died between
//! the two writes has its erasure finished by the next follower, and every node's key cache learns of it.
//!
//! For the replication feeds (issue 11): `ResidentErased` (v1: `{"reason": "retention_expired"}` or `{"reason":
//! "request", "reference": "<document number>"}`) carries no personal data and is the event a feed forwards to
//! tell a business system to erase the resident on its side.

use std::sync::Arc;

use cardap_domain::registry::{self, RegistryCommand, RegistryEntry};
use cardap_domain::resident::{
    self, ErasureReason, Resident, ResidentCommand, ResidentError, ResidentId, RetentionPeriod,
};
use cardap_domain::{Aggregate, MunicipalityCode, Timestamp};
use cardap_store::{Checkpoint, EventStore, StreamId};

use crate::authz::Permission;
use crate::clock::Clock;
use crate::context::CommandContext;
use crate::engine::{Tx, transact};
use crate::handler::CommandError;
use crate::ids::stream_of;
use crate::ports::DataKeys;
use crate::residents::{RegistrationError, load_resident_state, resident_error};
use crate::views::Views;

type Result<T> = std::result::Result<T, CommandError<RegistrationError>>;

/// The outcome of an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    pub resident_id: ResidentId,
    /// Why, as recorded; `None` when this was a retry of an erasure already applied.
    pub reason: Option<ErasureReason>,
    /// His stream version after the erasure (`None` on a retry).
    pub version: Option<u64>,
}

/// The erase use case over one event store.
#[derive(Clone)]
pub struct Erasure {
    store: Arc<dyn EventStore>,
    views: Views,
    keys: Arc<dyn DataKeys>,
    clock: Arc<dyn Clock>,
    retention: RetentionPeriod,
}

impl std::fmt::Debug for Erasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Erasure").field("retention", &self.retention).finish_non_exhaustive()
    }
}

impl Erasure {
    pub fn new(
        store: Arc<dyn EventStore>,
        views: Views,
        keys: Arc<dyn DataKeys>,
        clock: Arc<dyn Clock>,
        retention: RetentionPeriod,
    ) -> Self {
        Erasure { store, views, keys, clock, retention }
    }

    /// The retention period after a move-out that this server applies.
    pub fn retention(&self) -> RetentionPeriod {
        self.retention
    }

    /// 消去: records the erasure of the resident `id` of `code` and destroys his data keys. Another
    /// municipality's resident is `ResidentNotFound`; the refusals are the domain's ([`ResidentError`]).
    pub async fn erase(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        id: &ResidentId,
        reason: ErasureReason,
    ) -> Result<(Erased, Option<Checkpoint>)> {
        let his_stream = stream_of::<Resident>(&resident::stream_key(id));
        let permission = Permission::EraseResidents(code.clone());
        let (store, reason_ref, retention, at) = (&self.store, &reason, self.retention, self.clock.timestamp());
        let done = transact(&self.store, ctx, &[permission], Some(code.clone()), |mut tx: Tx| async move {
            let (loaded, stream) = load_resident_state(&mut tx, code, id).await?;
            let registry_key = loaded.state.registered.as_ref().and_then(|r| r.registry_key.clone());
            let moved_out_at = moved_out_at(store, &stream).await?;
            let command = ResidentCommand::Erase { reason: reason_ref.clone(), at, moved_out_at, retention };
            let events = Resident::decide(&loaded.state, command).map_err(resident_error)?;
            tx.append::<Resident>(&stream, loaded.version, &events);
            let mut subjects = vec![stream.clone()];
            if let Some(key) = registry_key {
                let entry_stream = stream_of::<RegistryEntry>(&registry::stream_key(code, &key));
                let entry = tx.load::<RegistryEntry, RegistrationError>(&entry_stream).await?;
                // Erasing an entry is never refused (nothing to erase records nothing).
                let erased = RegistryEntry::decide(&entry.state, RegistryCommand::Erase).unwrap_or_default();
                tx.append::<RegistryEntry>(&entry_stream, entry.version, &erased);
                subjects.push(entry_stream);
            }
            Ok(((subjects, loaded.version + events.len() as u64), tx))
        })
        .await;
        let done = match done {
            Ok(done) => done,
            Err(CommandError::Domain(RegistrationError::Resident(ResidentError::AlreadyErased))) => {
                // Erased before, perhaps by a process that died before destroying: make sure, then refuse.
                self.keys.destroy(&his_stream).await?;
                return Err(resident_error(ResidentError::AlreadyErased));
            }
            Err(other) => return Err(other),
        };
        let (subjects, version) = match done.value {
            Some((subjects, version)) => (subjects, Some(version)),
            // A retry: his own key is destroyed again here, the registry entry's by the erasure follower.
            None => (vec![his_stream], None),
        };
        for subject in &subjects {
            self.keys.destroy(subject).await?;
        }
        if let Some(checkpoint) = done.checkpoint {
            self.views.wait_for_view(checkpoint, cardap_projections::residents::NAME).await;
            self.views.wait_for_view(checkpoint, cardap_projections::registry::NAME).await;
        }
        let reason = version.map(|_| reason);
        tracing::info!(command = %ctx.command_id, resident = %id, "resident erased");
        Ok((Erased { resident_id: *id, reason, version }, done.checkpoint))
    }
}

/// When his (last) move-out was recorded, as the store recorded it; `None` if he never moved out.
async fn moved_out_at(store: &Arc<dyn EventStore>, stream: &StreamId) -> Result<Option<Timestamp>> {
    let recorded = store.read_stream(stream, 1).await?;
    Ok(recorded
        .iter()
        .rev()
        .find(|e| e.event_type == "ResidentMovedOut")
        .map(|e| Timestamp::from_unix(e.recorded_at.timestamp())))
}
