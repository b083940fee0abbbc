//! The `Resident` aggregate (利用者, 手引き I 1.1 利用者登録): a person a municipality registered for its card
//! services, his personal data, whether he moved out, and which card is his active one.
//!
//! Owns the resident's events and their stored shape. Personal data sits under the payload's top-level
//! `personal` key, which the store seals under the resident's own data key; an event read back after the key
//! was destroyed carries `Erasable::Erased`. The value types are in [`values`], the personal-data value in
//! [`personal`].

mod personal;
mod values;

pub use personal::{Address, Erasable, PersonName, PersonalChanges, PersonalData};
pub(crate) use personal::ascii_to_full_width;
pub use values::*;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::aggregate::decode_payload;
use crate::registry::RegistryKey;
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, ParseError};

/// A resident's identity in cardap (利用者ID): a UUID chosen when he is registered, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResidentId(Uuid);

impl ResidentId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Uuid::parse_str(s).map(Self).map_err(|_| ParseError::InvalidResidentId)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<String> for ResidentId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ResidentId> for String {
    fn from(id: ResidentId) -> Self {
        id.0.to_string()
    }
}

/// The stream id of a resident: his `ResidentId`. It is also the subject of his data key.
pub fn stream_key(id: &ResidentId) -> String {
    id.to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResidentCommand {
    /// 利用者登録. `registry_key` links him to the registry entry he was prefilled from, if any.
    Register {
        id: ResidentId,
        municipality: MunicipalityCode,
        registry_key: Option<RegistryKey>,
        personal: PersonalData,
    },
    /// Changes personal fields; only what really differs is recorded, nothing differing yields no event.
    Change { changes: PersonalChanges },
    /// 転出: the resident left the municipality. His card must be abolished first.
    MoveOut,
    /// Makes `fid` his active card (one at a time).
    AttachCard { fid: CardFid },
    /// The card `fid` was abolished; no event if it is not his active card.
    DetachCard { fid: CardFid },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResidentEvent {
    Registered {
        id: ResidentId,
        municipality: MunicipalityCode,
        registry_key: Option<RegistryKey>,
        personal: Erasable<PersonalData>,
    },
    /// Carries only the fields that changed.
    FieldsChanged { changes: Erasable<PersonalChanges> },
    MovedOut,
    CardAttached { fid: CardFid },
    CardDetached { fid: CardFid },
}

const REGISTERED: &str = "ResidentRegistered";
const FIELDS_CHANGED: &str = "ResidentFieldsChanged";
const MOVED_OUT: &str = "ResidentMovedOut";
const CARD_ATTACHED: &str = "ResidentCardAttached";
const CARD_DETACHED: &str = "ResidentCardDetached";

/// Stored payload shapes, one per `(event_type, version)`; never edit a released one.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub resident_id: ResidentId,
        pub municipality: MunicipalityCode,
        pub registry_key: Option<RegistryKey>,
        /// `null` once erased.
        pub personal: Option<PersonalData>,
    }

    #[derive(Deserialize)]
    pub(super) struct FieldsChanged {
        pub personal: Option<Value>,
    }

    #[derive(Deserialize)]
    pub(super) struct Card {
        pub fid: CardFid,
    }

    #[derive(Deserialize)]
    pub(super) struct MovedOut {}
}

impl DomainEvent for ResidentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
            Self::FieldsChanged { .. } => FIELDS_CHANGED,
            Self::MovedOut => MOVED_OUT,
            Self::CardAttached { .. } => CARD_ATTACHED,
            Self::CardDetached { .. } => CARD_DETACHED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { id, municipality, registry_key, personal } => json!({
                "resident_id": id,
                "municipality": municipality.as_str(),
                "registry_key": registry_key,
                "personal": personal.known(),
            }),
            Self::FieldsChanged { changes } => json!({ "personal": changes.known().map(PersonalChanges::to_json) }),
            Self::MovedOut => json!({}),
            Self::CardAttached { fid } | Self::CardDetached { fid } => json!({ "fid": fid.as_str() }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (REGISTERED, 1) => {
                let v1::Registered { resident_id, municipality, registry_key, personal } =
                    decode_payload(event_type, event_version, payload)?;
                Self::Registered { id: resident_id, municipality, registry_key, personal: Erasable::from_option(personal) }
            }
            (FIELDS_CHANGED, 1) => {
                let v1::FieldsChanged { personal } = decode_payload(event_type, event_version, payload)?;
                let changes = personal
                    .filter(|p| !p.is_null())
                    .map(|p| PersonalChanges::from_json(&p))
                    .transpose()
                    .map_err(|reason| EventDecodeError::Payload {
                        event_type: event_type.to_owned(),
                        event_version,
                        reason,
                    })?;
                Self::FieldsChanged { changes: Erasable::from_option(changes) }
            }
            (MOVED_OUT, 1) => {
                let v1::MovedOut {} = decode_payload(event_type, event_version, payload)?;
                Self::MovedOut
            }
            (CARD_ATTACHED, 1) => {
                let v1::Card { fid } = decode_payload(event_type, event_version, payload)?;
                Self::CardAttached { fid }
            }
            (CARD_DETACHED, 1) => {
                let v1::Card { fid } = decode_payload(event_type, event_version, payload)?;
                Self::CardDetached { fid }
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResidentError {
    #[error("the resident is already registered")]
    AlreadyRegistered,
    #[error("no such resident")]
    NotRegistered,
    #[error("the resident has moved out")]
    MovedOut,
    #[error("the resident's personal data has been erased")]
    Erased,
    #[error("the resident already has an active card {0}; abolish it first")]
    AlreadyHasCard(CardFid),
    #[error("the resident still has the active card {0}; abolish it before the move-out")]
    CardStillActive(CardFid),
}

impl ResidentError {
    pub fn message_ja(&self) -> String {
        match self {
            Self::AlreadyRegistered => "この利用者は既に登録されています".to_owned(),
            Self::NotRegistered => "利用者が見つかりません".to_owned(),
            Self::MovedOut => "この利用者は転出済みです".to_owned(),
            Self::Erased => "この利用者の個人情報は消去されています".to_owned(),
            Self::AlreadyHasCard(fid) => {
                format!("この利用者には運用中のカード（FID {fid}）があります。先に廃止してください")
            }
            Self::CardStillActive(fid) => {
                format!("運用中のカード（FID {fid}）があるため転出できません。先にカードを廃止してください")
            }
        }
    }
}

/// The folded state; `Default` is "not registered".
#[derive(Debug, Clone, Default)]
pub struct ResidentState {
    pub registered: Option<RegisteredResident>,
}

#[derive(Debug, Clone)]
pub struct RegisteredResident {
    pub id: ResidentId,
    pub municipality: MunicipalityCode,
    pub registry_key: Option<RegistryKey>,
    pub personal: Erasable<PersonalData>,
    pub moved_out: bool,
    pub active_card: Option<CardFid>,
}

#[derive(Debug)]
pub struct Resident;

impl Aggregate for Resident {
    type State = ResidentState;
    type Command = ResidentCommand;
    type Event = ResidentEvent;
    type Error = ResidentError;

    const STREAM_TYPE: &'static str = "resident";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        use ResidentCommand as C;
        use ResidentEvent as E;

        let Some(r) = &state.registered else {
            return match command {
                C::Register { id, municipality, registry_key, personal } => {
                    Ok(vec![E::Registered { id, municipality, registry_key, personal: Erasable::Known(personal) }])
                }
                _ => Err(ResidentError::NotRegistered),
            };
        };
        match command {
            C::Register { .. } => Err(ResidentError::AlreadyRegistered),
            C::DetachCard { fid } if r.active_card.as_ref() == Some(&fid) => Ok(vec![E::CardDetached { fid }]),
            C::DetachCard { .. } => Ok(vec![]),
            _ if r.moved_out => Err(ResidentError::MovedOut),
            C::Change { changes } => {
                let Erasable::Known(current) = &r.personal else {
                    return Err(ResidentError::Erased);
                };
                let changes = changes.against(current);
                if changes.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![E::FieldsChanged { changes: Erasable::Known(changes) }])
            }
            C::MoveOut => match &r.active_card {
                Some(fid) => Err(ResidentError::CardStillActive(fid.clone())),
                None => Ok(vec![E::MovedOut]),
            },
            C::AttachCard { fid } => match &r.active_card {
                Some(active) if *active == fid => Ok(vec![]),
                Some(active) => Err(ResidentError::AlreadyHasCard(active.clone())),
                None => Ok(vec![E::CardAttached { fid }]),
            },
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        use ResidentEvent as E;
        match (event, state.registered.as_mut()) {
            (E::Registered { id, municipality, registry_key, personal }, _) => {
                state.registered = Some(RegisteredResident {
                    id: *id,
                    municipality: municipality.clone(),
                    registry_key: registry_key.clone(),
                    personal: personal.clone(),
                    moved_out: false,
                    active_card: None,
                });
            }
            (E::FieldsChanged { changes }, Some(r)) => {
                r.personal = match (std::mem::replace(&mut r.personal, Erasable::Erased), changes) {
                    (Erasable::Known(data), Erasable::Known(changes)) => Erasable::Known(changes.apply_to(data)),
                    _ => Erasable::Erased,
                };
            }
            (E::MovedOut, Some(r)) => r.moved_out = true,
            (E::CardAttached { fid }, Some(r)) => r.active_card = Some(fid.clone()),
            (E::CardDetached { fid }, Some(r)) if r.active_card.as_ref() == Some(fid) => r.active_card = None,
            // Events of a stream that was never registered cannot be stored; nothing to change.
            _ => {}
        }
        state
    }
}
