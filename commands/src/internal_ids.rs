//! 業務内IDs unique per municipality and business system (issue 9, point 9): what a decision about an operator
//! does to the claims of his 業務内IDs ([`InternalIdClaim`]), staged in that decision's own transaction, and the
//! fact each claim needs — whether another operator holds the ID now: the one its claim names, as his own stream
//! says; for an ID never claimed (assigned before claims existed), one the operator directory shows.
//!
//! Used by the operator use cases ([`crate::operators`]); writes nothing itself but through the [`Tx`] it is
//! given. A revocation releases nothing (its claims go stale and are taken over by the next claimant), so the
//! revocation itself needs no claim.

use std::collections::BTreeSet;

use cardap_domain::operator::{
    ClaimCommand, InternalId, InternalIdClaim, Operator, OperatorError, OperatorId, OperatorState, claim_stream_key,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode, OperatorKey};
use cardap_projections::ReadModels;
use cardap_projections::operators as directory;
use cardap_store::StreamId;

use crate::access::operator_stream;
use crate::engine::Tx;
use crate::handler::CommandError;
use crate::ids::stream_of;

type Result<T> = std::result::Result<T, CommandError<OperatorError>>;

/// One 業務内ID in one business system.
pub(crate) type Held = (BusinessId, InternalId);

/// The 業務内IDs an operator holds: none unless he is registered and not revoked.
pub(crate) fn held(state: &OperatorState) -> BTreeSet<Held> {
    if !state.is_active() {
        return BTreeSet::new();
    }
    state.internal_ids().iter().map(|(b, a)| (b.clone(), a.internal_id.clone())).collect()
}

/// What one decision about an operator does to the claims: the IDs he takes, and those he gives up.
#[derive(Debug, Default)]
pub(crate) struct ClaimChanges {
    pub claims: Vec<Held>,
    pub releases: Vec<Held>,
}

impl ClaimChanges {
    /// From his state before the decision to his state after it.
    pub(crate) fn between(before: &OperatorState, after: &OperatorState) -> ClaimChanges {
        let (before, after) = (held(before), held(after));
        ClaimChanges {
            claims: after.difference(&before).cloned().collect(),
            releases: before.difference(&after).cloned().collect(),
        }
    }
}

/// The stream of the claim of `held` in `code`.
fn claim_stream(code: &MunicipalityCode, (business_id, internal_id): &Held) -> StreamId {
    stream_of::<InternalIdClaim>(&claim_stream_key(code, business_id, internal_id))
}

/// Stages the claims and releases of one decision about operator `key` (`operator_id`) of `code`: a claim of an
/// ID another operator holds is `OperatorError::InternalIdTaken`.
pub(crate) async fn stage(
    tx: &mut Tx,
    read: &ReadModels,
    code: &MunicipalityCode,
    (key, operator_id): (OperatorKey, &OperatorId),
    changes: &ClaimChanges,
) -> Result<()> {
    for held in &changes.releases {
        let stream = claim_stream(code, held);
        let loaded = tx.load::<InternalIdClaim, OperatorError>(&stream).await?;
        let events = InternalIdClaim::decide(&loaded.state, ClaimCommand::Release { operator: key })
            .map_err(CommandError::Domain)?;
        tx.append::<InternalIdClaim>(&stream, loaded.version, &events);
    }
    for held in &changes.claims {
        let stream = claim_stream(code, held);
        let loaded = tx.load::<InternalIdClaim, OperatorError>(&stream).await?;
        let held_by_another = match loaded.state.holder() {
            Some((holder, _)) if holder == key => false,
            Some((_, holder_id)) => still_holds(tx, code, holder_id, held).await?,
            // Never claimed: assigned before claims existed, if at all (the directory knows).
            None if loaded.version == 0 => {
                let (business_id, internal_id) = held;
                directory::internal_id_holder_keys(read.pool(), code, business_id, internal_id.as_str())
                    .await
                    .map_err(|e| CommandError::Internal(e.to_string()))?
                    .into_iter()
                    .any(|holder| holder != key)
            }
            None => false,
        };
        let command = ClaimCommand::Claim {
            municipality: code.clone(),
            business_id: held.0.clone(),
            internal_id: held.1.clone(),
            operator: key,
            operator_id: operator_id.clone(),
            held_by_another,
        };
        let events = InternalIdClaim::decide(&loaded.state, command).map_err(CommandError::Domain)?;
        tx.append::<InternalIdClaim>(&stream, loaded.version, &events);
    }
    Ok(())
}

/// Whether operator `operator_id` of `code` holds `held` now, as his stream says.
async fn still_holds(tx: &mut Tx, code: &MunicipalityCode, operator_id: &OperatorId, held: &Held) -> Result<bool> {
    let loaded = tx.load::<Operator, OperatorError>(&operator_stream(Some(code), operator_id)).await?;
    Ok(self::held(&loaded.state).contains(held))
}
