//! The claim of one 業務内ID (手引き I 2.1(2)③) in one business system of one municipality: an internal ID names one
//! operator in his business system, so two operators never hold the same one (issue 9, point 9).
//!
//! One stream per (municipality, business system, 業務内ID), appended in the same transaction as the operator's
//! assignment, so that of two concurrent assignments of one ID only one commits. The claim names the operator
//! who holds the ID; removing the ID from him (or the business system it belongs to) or assigning him another
//! one releases it. A claim whose operator no longer holds the ID (revoked since: a revocation releases
//! nothing itself) is stale: whoever claims the ID next takes it over. Whether another operator holds the ID
//! now is a fact the caller reads from that operator's own stream and gives in the command.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{InternalId, OperatorError, OperatorId};
use crate::aggregate::decode_payload;
use crate::{Aggregate, BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, OperatorKey};

/// The stream id of a claim: `<municipality>.<business id>.<業務内ID>` (`131016.01.1000000010`); unambiguous, as
/// the first two parts have a fixed length and the last is alphanumeric.
pub fn claim_stream_key(municipality: &MunicipalityCode, business_id: &BusinessId, internal_id: &InternalId) -> String {
    format!("{municipality}.{business_id}.{internal_id}")
}

#[derive(Debug)]
pub struct InternalIdClaim;

/// The folded state; `Default` is "nobody holds it".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimState {
    holder: Option<(OperatorKey, OperatorId)>,
}

impl ClaimState {
    /// The operator the claim names, with his オペレータID (his stream, in the claim's municipality), if any; he
    /// may have lost the ID since (see the module comment).
    pub fn holder(&self) -> Option<(OperatorKey, &OperatorId)> {
        self.holder.as_ref().map(|(key, id)| (*key, id))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimCommand {
    /// `operator` takes the ID, in the same transaction as its assignment to him; a claim already naming him is
    /// recorded again, so that a concurrent assignment to another operator conflicts with this one.
    Claim {
        municipality: MunicipalityCode,
        business_id: BusinessId,
        internal_id: InternalId,
        operator: OperatorKey,
        operator_id: OperatorId,
        /// Fact: another operator holds this ID now (registered, not revoked, with this 業務内ID in this
        /// business system): the one the claim names, as his stream says; for an ID never claimed (assigned
        /// before claims existed), one the operator directory shows.
        held_by_another: bool,
    },
    /// `operator` gives the ID up; nothing happens when the claim does not name him.
    Release { operator: OperatorKey },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimEvent {
    Claimed {
        municipality: MunicipalityCode,
        business_id: BusinessId,
        internal_id: InternalId,
        operator: OperatorKey,
        operator_id: OperatorId,
    },
    Released {
        operator: OperatorKey,
    },
}

const CLAIMED: &str = "InternalIdClaimed";
const RELEASED: &str = "InternalIdReleased";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Claimed {
        pub municipality: MunicipalityCode,
        pub business_id: BusinessId,
        pub internal_id: InternalId,
        pub operator: OperatorKey,
        pub operator_id: OperatorId,
    }

    #[derive(Deserialize)]
    pub(super) struct Released {
        pub operator: OperatorKey,
    }
}

impl DomainEvent for ClaimEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Claimed { .. } => CLAIMED,
            Self::Released { .. } => RELEASED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Claimed { municipality, business_id, internal_id, operator, operator_id } => json!({
                "municipality": municipality.as_str(),
                "business_id": business_id.as_str(),
                "internal_id": internal_id.as_str(),
                "operator": operator.to_string(),
                "operator_id": operator_id.as_str(),
            }),
            Self::Released { operator } => json!({ "operator": operator.to_string() }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (CLAIMED, 1) => {
                let v1::Claimed { municipality, business_id, internal_id, operator, operator_id } =
                    decode_payload(event_type, event_version, payload)?;
                Self::Claimed { municipality, business_id, internal_id, operator, operator_id }
            }
            (RELEASED, 1) => {
                let v1::Released { operator } = decode_payload(event_type, event_version, payload)?;
                Self::Released { operator }
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

impl Aggregate for InternalIdClaim {
    type State = ClaimState;
    type Command = ClaimCommand;
    type Event = ClaimEvent;
    type Error = OperatorError;

    const STREAM_TYPE: &'static str = "internal_id";

    fn decide(state: &ClaimState, command: ClaimCommand) -> Result<Vec<ClaimEvent>, OperatorError> {
        match command {
            ClaimCommand::Claim { business_id, held_by_another: true, .. } => {
                Err(OperatorError::InternalIdTaken(business_id))
            }
            ClaimCommand::Claim { municipality, business_id, internal_id, operator, operator_id, .. } => {
                Ok(vec![ClaimEvent::Claimed { municipality, business_id, internal_id, operator, operator_id }])
            }
            ClaimCommand::Release { operator } if state.holder().is_some_and(|(holder, _)| holder == operator) => {
                Ok(vec![ClaimEvent::Released { operator }])
            }
            ClaimCommand::Release { .. } => Ok(vec![]),
        }
    }

    fn evolve(_: ClaimState, event: &ClaimEvent) -> ClaimState {
        match event {
            ClaimEvent::Claimed { operator, operator_id, .. } => {
                ClaimState { holder: Some((*operator, operator_id.clone())) }
            }
            ClaimEvent::Released { .. } => ClaimState { holder: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use uuid::Uuid;

    fn key(n: u128) -> OperatorKey {
        OperatorKey::from_uuid(Uuid::from_u128(n))
    }

    fn operator_id(n: u128) -> OperatorId {
        OperatorId::parse(&format!("OP{n:04}")).unwrap()
    }

    fn claim(n: u128, held_by_another: bool) -> ClaimCommand {
        ClaimCommand::Claim {
            municipality: MunicipalityCode::parse("131016").unwrap(),
            business_id: BusinessId::CERTIFICATE_ISSUANCE,
            internal_id: InternalId::parse("1000000010").unwrap(),
            operator: key(n),
            operator_id: operator_id(n),
            held_by_another,
        }
    }

    fn claimed(n: u128) -> ClaimEvent {
        ClaimEvent::Claimed {
            municipality: MunicipalityCode::parse("131016").unwrap(),
            business_id: BusinessId::CERTIFICATE_ISSUANCE,
            internal_id: InternalId::parse("1000000010").unwrap(),
            operator: key(n),
            operator_id: operator_id(n),
        }
    }

    #[test]
    fn a_free_id_is_claimed() {
        let state = given::<InternalIdClaim>([]).when(claim(1, false)).then([claimed(1)]);
        assert_eq!(state.holder(), Some((key(1), &operator_id(1))));
    }

    #[test]
    fn an_id_another_operator_holds_is_refused() {
        given::<InternalIdClaim>([claimed(1)])
            .when(claim(2, true))
            .then_err(OperatorError::InternalIdTaken(BusinessId::CERTIFICATE_ISSUANCE));
        // Also one assigned before claims existed (no claim yet; the directory shows its holder).
        given::<InternalIdClaim>([])
            .when(claim(2, true))
            .then_err(OperatorError::InternalIdTaken(BusinessId::CERTIFICATE_ISSUANCE));
    }

    #[test]
    fn a_stale_claim_is_taken_over() {
        let state = given::<InternalIdClaim>([claimed(1)]).when(claim(2, false)).then([claimed(2)]);
        assert_eq!(state.holder(), Some((key(2), &operator_id(2))));
    }

    #[test]
    fn his_own_claim_is_recorded_again() {
        given::<InternalIdClaim>([claimed(1)]).when(claim(1, false)).then([claimed(1)]);
    }

    #[test]
    fn a_released_id_is_free_again() {
        let state = given::<InternalIdClaim>([claimed(1)])
            .when(ClaimCommand::Release { operator: key(1) })
            .then([ClaimEvent::Released { operator: key(1) }]);
        assert_eq!(state.holder(), None);
    }

    #[test]
    fn only_the_holder_releases() {
        given::<InternalIdClaim>([claimed(1)]).when(ClaimCommand::Release { operator: key(2) }).then([]);
        given::<InternalIdClaim>([]).when(ClaimCommand::Release { operator: key(2) }).then([]);
    }

    #[test]
    fn the_stream_key_names_municipality_business_system_and_id() {
        let key = claim_stream_key(
            &MunicipalityCode::parse("131016").unwrap(),
            &BusinessId::LIBRARY,
            &InternalId::parse("L77").unwrap(),
        );
        assert_eq!(key, "131016.02.L77");
    }
}
