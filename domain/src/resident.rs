//! The `Resident` aggregate (利用者, 手引き I 1.1 利用者登録): a person a municipality registered for its card
//! services, his personal data, whether he moved out, and which card is his active one.
//!
//! Owns the resident's events and their stored shape. Personal data sits under the payload's top-level
//! `personal` key, which the store seals under the resident's own data key; an event read back after the key
//! was destroyed carries `Erasable::Erased`. The value types are in [`values`], the personal-data value in
//! [`personal`].
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

mod erasure;
mod personal;
mod values;

pub use erasure::{ErasureReason, ErasureReference, RetentionPeriod};
pub(crate) use personal::parse_full_width_text;
pub use personal::{Address, Erasable, NamePatch, PersonName, PersonalChanges, PersonalData};
pub use values::*;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::aggregate::decode_payload;
use crate::registry::RegistryKey;
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, ParseError, Timestamp};

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
    /// A change whose names may name one half only (a PATCH): the halves are merged with the current name here,
    /// inside the decision, then recorded as [`ResidentCommand::Change`] would.
    Merge { changes: PersonalChanges, kana_name: NamePatch<KanaName>, kanji_name: NamePatch<KanjiName> },
    /// 転出: the resident left the municipality. His card must be abolished first.
    MoveOut,
    /// Makes `fid` his active card (one at a time).
    AttachCard { fid: CardFid },
    /// The card `fid` was abolished; no event if it is not his active card.
    DetachCard { fid: CardFid },
    /// 消去: erase his personal data for good. `at` is now; `moved_out_at` when his move-out was recorded (looked
    /// up by the use case; the retention period runs from it); `retention` the configured retention period.
    Erase { reason: ErasureReason, at: Timestamp, moved_out_at: Option<Timestamp>, retention: RetentionPeriod },
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
    FieldsChanged {
        changes: Erasable<PersonalChanges>,
    },
    MovedOut,
    CardAttached {
        fid: CardFid,
    },
    CardDetached {
        fid: CardFid,
    },
    /// His personal data is erased for good (its data key is destroyed right after): every later read of his
    /// earlier events sees `Erasable::Erased`. Carries no personal data, so it stays readable and a replication
    /// feed can forward it as it is (`ResidentErased` v1: `{"reason": "retention_expired"}` or
    /// `{"reason": "request", "reference": "<document number>"}`).
    Erased {
        reason: ErasureReason,
    },
}

const REGISTERED: &str = "ResidentRegistered";
const FIELDS_CHANGED: &str = "ResidentFieldsChanged";
const MOVED_OUT: &str = "ResidentMovedOut";
const CARD_ATTACHED: &str = "ResidentCardAttached";
const CARD_DETACHED: &str = "ResidentCardDetached";
const ERASED: &str = "ResidentErased";

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

    #[derive(Deserialize)]
    #[serde(tag = "reason", rename_all = "snake_case", deny_unknown_fields)]
    pub(super) enum Erased {
        RetentionExpired,
        Request { reference: ErasureReference },
    }
}

impl DomainEvent for ResidentEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
            Self::FieldsChanged { .. } => FIELDS_CHANGED,
            Self::MovedOut => MOVED_OUT,
            Self::CardAttached { .. } => CARD_ATTACHED,
            Self::CardDetached { .. } => CARD_DETACHED,
            Self::Erased { .. } => ERASED,
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
            Self::Erased { reason: ErasureReason::RetentionExpired } => json!({ "reason": "retention_expired" }),
            Self::Erased { reason: ErasureReason::Request { reference } } => {
                json!({ "reason": "request", "reference": reference.as_str() })
            }
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (REGISTERED, 1) => {
                let v1::Registered { resident_id, municipality, registry_key, personal } =
                    decode_payload(event_type, event_version, payload)?;
                Self::Registered {
                    id: resident_id,
                    municipality,
                    registry_key,
                    personal: Erasable::from_option(personal),
                }
            }
            (FIELDS_CHANGED, 1) => {
                let v1::FieldsChanged { personal } = decode_payload(event_type, event_version, payload)?;
                let changes =
                    personal.filter(|p| !p.is_null()).map(|p| PersonalChanges::from_json(&p)).transpose().map_err(
                        |reason| EventDecodeError::Payload { event_type: event_type.to_owned(), event_version, reason },
                    )?;
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
            (ERASED, 1) => match decode_payload(event_type, event_version, payload)? {
                v1::Erased::RetentionExpired => Self::Erased { reason: ErasureReason::RetentionExpired },
                v1::Erased::Request { reference } => Self::Erased { reason: ErasureReason::Request { reference } },
            },
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
    #[error("the resident still has the active card {0}; abolish it before the erasure")]
    ErasureCardActive(CardFid),
    #[error("the resident has not moved out: before a move-out only a documented request erases him")]
    NotMovedOut,
    /// `until`: the first moment the erasure is allowed.
    #[error("the retention period after the move-out has not passed; erasure is possible from {}", until.date_text())]
    RetentionNotPassed { until: Timestamp },
    #[error("the resident has already been erased")]
    AlreadyErased,
}

impl crate::message::Localized for ResidentError {
    fn message_ja(&self) -> String {
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
            Self::ErasureCardActive(fid) => {
                format!("運用中のカード（FID {fid}）があるため消去できません。先にカードを廃止してください")
            }
            Self::NotMovedOut => {
                "この利用者は転出していません。転出前の消去は文書による請求（参照番号）がある場合に限られます"
                    .to_owned()
            }
            Self::RetentionNotPassed { until } => {
                format!("転出後の保存期間が経過していません。{}以降に消去できます", until.date_text())
            }
            Self::AlreadyErased => "この利用者は既に消去されています".to_owned(),
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
    /// He was erased (`ResidentErased`): nothing about him may be recorded or shown any more.
    pub erased: bool,
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
            C::Erase { reason, at, moved_out_at, retention } => {
                Self::decide_erasure(r, reason, at, moved_out_at, retention)
            }
            _ if r.erased => Err(ResidentError::Erased),
            _ if r.moved_out => Err(ResidentError::MovedOut),
            C::Change { changes } => Self::decide(
                state,
                C::Merge { changes, kana_name: NamePatch::default(), kanji_name: NamePatch::default() },
            ),
            C::Merge { mut changes, kana_name, kanji_name } => {
                let Erasable::Known(current) = &r.personal else {
                    return Err(ResidentError::Erased);
                };
                if let Some(name) = kana_name.apply(&current.kana_name) {
                    changes.kana_name = Some(name);
                }
                if let Some(name) = kanji_name.apply(&current.kanji_name) {
                    changes.kanji_name = Some(name);
                }
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
                    erased: false,
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
            (E::Erased { .. }, Some(r)) => {
                r.personal = Erasable::Erased;
                r.registry_key = None;
                r.erased = true;
            }
            // Events of a stream that was never registered cannot be stored; nothing to change.
            _ => {}
        }
        state
    }
}

impl Resident {
    /// 消去: refused while he has an active card, before his move-out unless it is a documented request, before
    /// the retention period since his move-out has passed, and when he was erased already.
    fn decide_erasure(
        r: &RegisteredResident,
        reason: ErasureReason,
        at: Timestamp,
        moved_out_at: Option<Timestamp>,
        retention: RetentionPeriod,
    ) -> Result<Vec<ResidentEvent>, ResidentError> {
        if r.erased {
            return Err(ResidentError::AlreadyErased);
        }
        if let Some(fid) = &r.active_card {
            return Err(ResidentError::ErasureCardActive(fid.clone()));
        }
        if reason == ErasureReason::RetentionExpired {
            if !r.moved_out {
                return Err(ResidentError::NotMovedOut);
            }
            // A move-out whose time is unknown counts from now: the period is never cut short.
            let until = moved_out_at.unwrap_or(at).plus_seconds(retention.seconds());
            if at < until {
                return Err(ResidentError::RetentionNotPassed { until });
            }
        }
        Ok(vec![ResidentEvent::Erased { reason }])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Localized;
    use crate::contact::{Email, Phone, Sex};
    use crate::local_settings::{CustomValue, FieldKey};
    use crate::testing::given;
    use ResidentCommand as C;
    use ResidentEvent as E;
    use proptest::prelude::*;

    fn id() -> ResidentId {
        ResidentId::from_uuid(Uuid::from_u128(0x0192_5c4e_6a80_7000_8000_0000_0000_0042))
    }

    fn chiyoda() -> MunicipalityCode {
        MunicipalityCode::parse("131016").unwrap()
    }

    fn fid(s: &str) -> CardFid {
        CardFid::parse(s).unwrap()
    }

    fn key(s: &str) -> FieldKey {
        FieldKey::parse(s).unwrap()
    }

    fn kana(family: &str, given: &str) -> PersonName<KanaName> {
        PersonName { family: KanaName::parse(family).unwrap(), given: KanaName::parse(given).unwrap() }
    }

    fn kanji(family: &str, given: &str) -> PersonName<KanjiName> {
        PersonName { family: KanjiName::parse(family).unwrap(), given: KanjiName::parse(given).unwrap() }
    }

    fn address(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn personal() -> PersonalData {
        PersonalData {
            kana_name: kana("ヤマダ", "タロウ"),
            kanji_name: kanji("山田", "太郎"),
            birth_date: EraDate::parse("3640107").unwrap(),
            sex: Sex::Male,
            postal_code: Some(PostalCode::parse("100-0001").unwrap()),
            address1: Some(address("東京都千代田区千代田1-1")),
            address2: None,
            phone: Some(Phone::parse("03-3333-4444").unwrap()),
            email: Some(Email::parse("taro@example.jp").unwrap()),
            occupation: Some(Occupation::parse("会社員").unwrap()),
            custom_fields: BTreeMap::from([
                (key("household_size"), CustomValue::Number(3)),
                (key("school_district"), CustomValue::Text("第一".into())),
            ]),
        }
    }

    fn registered() -> E {
        E::Registered {
            id: id(),
            municipality: chiyoda(),
            registry_key: Some(RegistryKey::parse("000123456").unwrap()),
            personal: Erasable::Known(personal()),
        }
    }

    fn register() -> C {
        C::Register {
            id: id(),
            municipality: chiyoda(),
            registry_key: Some(RegistryKey::parse("000123456").unwrap()),
            personal: personal(),
        }
    }

    fn erased_registration() -> E {
        E::Registered { id: id(), municipality: chiyoda(), registry_key: None, personal: Erasable::Erased }
    }

    fn attached(s: &str) -> E {
        E::CardAttached { fid: fid(s) }
    }

    fn resident(state: &ResidentState) -> &RegisteredResident {
        state.registered.as_ref().unwrap()
    }

    #[test]
    fn register_a_resident() {
        let state = given::<Resident>([]).when(register()).then([registered()]);
        let r = resident(&state);
        assert_eq!((r.id, &r.municipality), (id(), &chiyoda()));
        assert_eq!(r.registry_key.as_ref().map(RegistryKey::as_str), Some("000123456"));
        assert_eq!(r.personal, Erasable::Known(personal()));
        assert!(!r.moved_out && r.active_card.is_none());
        assert_eq!(stream_key(&id()), "01925c4e-6a80-7000-8000-000000000042");
    }

    #[test]
    fn register_twice_is_refused() {
        given::<Resident>([registered()]).when(register()).then_err(ResidentError::AlreadyRegistered);
        given::<Resident>([registered(), E::MovedOut]).when(register()).then_err(ResidentError::AlreadyRegistered);
        given::<Resident>([erased_registration()]).when(register()).then_err(ResidentError::AlreadyRegistered);
    }

    #[test]
    fn any_other_command_before_register_is_refused() {
        for command in [
            C::Change { changes: PersonalChanges { sex: Some(Sex::Female), ..Default::default() } },
            C::MoveOut,
            C::AttachCard { fid: fid("0A1B") },
            C::DetachCard { fid: fid("0A1B") },
            erase(request(), 0),
        ] {
            given::<Resident>([]).when(command).then_err(ResidentError::NotRegistered);
        }
    }

    #[test]
    fn a_change_of_one_name_half_keeps_the_other_half_as_it_is_when_decided() {
        // Another clerk changed the family name after this clerk read the resident: the given-name change is
        // merged with the family name of now, not of the earlier read.
        let family_changed = E::FieldsChanged {
            changes: Erasable::Known(PersonalChanges {
                kanji_name: Some(kanji("田中", "太郎")), ..Default::default()
            }),
        };
        given::<Resident>([registered(), family_changed])
            .when(C::Merge {
                changes: PersonalChanges::default(),
                kana_name: NamePatch::default(),
                kanji_name: NamePatch { family: None, given: Some(KanjiName::parse("次郎").unwrap()) },
            })
            .then([E::FieldsChanged {
                changes: Erasable::Known(PersonalChanges {
                    kanji_name: Some(kanji("田中", "次郎")),
                    ..Default::default()
                }),
            }]);
    }

    #[test]
    fn a_change_records_only_what_differs() {
        let changes = PersonalChanges {
            kana_name: Some(kana("ヤマダ", "タロウ")), // same
            kanji_name: Some(kanji("山田", "次郎")),
            birth_date: None,
            sex: Some(Sex::Male),                                           // same
            postal_code: Some(Some(PostalCode::parse("1000001").unwrap())), // same after parsing
            address1: Some(Some(address("東京都千代田区千代田２－２"))),
            address2: Some(Some(address("ABCマンション 101"))),
            phone: Some(None),                                           // cleared
            email: Some(Some(Email::parse("taro@example.jp").unwrap())), // same
            occupation: Some(None),                                      // cleared
            custom_fields: BTreeMap::from([
                (key("household_size"), None),                                    // cleared
                (key("moved_in"), None),                                          // was never set
                (key("note"), Some(CustomValue::Text("メモ".into()))),            // set
                (key("school_district"), Some(CustomValue::Text("第一".into()))), // same
            ]),
        };
        let recorded = PersonalChanges {
            kanji_name: Some(kanji("山田", "次郎")),
            address1: Some(Some(address("東京都千代田区千代田２－２"))),
            address2: Some(Some(address("ＡＢＣマンション\u{3000}１０１"))),
            phone: Some(None),
            occupation: Some(None),
            custom_fields: BTreeMap::from([
                (key("household_size"), None),
                (key("note"), Some(CustomValue::Text("メモ".into()))),
            ]),
            ..Default::default()
        };
        let state = given::<Resident>([registered()])
            .when(C::Change { changes })
            .then([E::FieldsChanged { changes: Erasable::Known(recorded.clone()) }]);
        let expected = PersonalData {
            kanji_name: kanji("山田", "次郎"),
            address1: Some(address("東京都千代田区千代田２－２")),
            address2: Some(address("ＡＢＣマンション\u{3000}１０１")),
            phone: None,
            occupation: None,
            custom_fields: BTreeMap::from([
                (key("note"), CustomValue::Text("メモ".into())),
                (key("school_district"), CustomValue::Text("第一".into())),
            ]),
            ..personal()
        };
        assert_eq!(resident(&state).personal, Erasable::Known(expected.clone()));
        assert_eq!(recorded.apply_to(personal()), expected);
    }

    #[test]
    fn every_required_field_can_change() {
        let changes = PersonalChanges {
            kana_name: Some(kana("スズキ", "ハナコ")),
            kanji_name: Some(kanji("鈴木", "花子")),
            birth_date: Some(EraDate::parse("4010108").unwrap()),
            sex: Some(Sex::Female),
            ..Default::default()
        };
        let state = given::<Resident>([registered()])
            .when(C::Change { changes: changes.clone() })
            .then([E::FieldsChanged { changes: Erasable::Known(changes) }]);
        let PersonalData { kana_name, kanji_name, birth_date, sex, .. } = resident(&state).personal.known().unwrap();
        assert_eq!((kana_name, kanji_name), (&kana("スズキ", "ハナコ"), &kanji("鈴木", "花子")));
        assert_eq!((birth_date.as_str(), *sex), ("4010108", Sex::Female));
    }

    #[test]
    fn a_cleared_optional_field_can_be_set_again() {
        let state = given::<Resident>([
            registered(),
            E::FieldsChanged {
                changes: Erasable::Known(PersonalChanges { postal_code: Some(None), ..Default::default() }),
            },
        ])
        .when(C::Change {
            changes: PersonalChanges {
                postal_code: Some(Some(PostalCode::parse("1000001").unwrap())),
                ..Default::default()
            },
        })
        .then([E::FieldsChanged {
            changes: Erasable::Known(PersonalChanges {
                postal_code: Some(Some(PostalCode::parse("100-0001").unwrap())),
                ..Default::default()
            }),
        }]);
        assert_eq!(resident(&state).personal, Erasable::Known(personal()));
    }

    #[test]
    fn a_change_without_differences_changes_nothing() {
        let same = PersonalChanges {
            kana_name: Some(kana("ヤマダ", "タロウ")),
            address2: Some(None),
            phone: Some(Some(Phone::parse("03-3333-4444").unwrap())),
            custom_fields: BTreeMap::from([(key("household_size"), Some(CustomValue::Number(3))), (key("note"), None)]),
            ..Default::default()
        };
        given::<Resident>([registered()]).when(C::Change { changes: same }).then([]);
        given::<Resident>([registered()]).when(C::Change { changes: PersonalChanges::default() }).then([]);
    }

    #[test]
    fn a_change_after_erasure_is_refused() {
        let changes = || PersonalChanges { sex: Some(Sex::Female), ..Default::default() };
        given::<Resident>([erased_registration()])
            .when(C::Change { changes: changes() })
            .then_err(ResidentError::Erased);
        // The key was destroyed after a change: the whole history reads as erased.
        given::<Resident>([registered(), E::FieldsChanged { changes: Erasable::Erased }])
            .when(C::Change { changes: changes() })
            .then_err(ResidentError::Erased);
    }

    #[test]
    fn an_erased_resident_keeps_his_card_lifecycle() {
        let state = given::<Resident>([erased_registration()])
            .when(C::AttachCard { fid: fid("0A1B") })
            .then([attached("0A1B")]);
        assert_eq!(resident(&state).active_card, Some(fid("0A1B")));
        given::<Resident>([erased_registration()]).when(C::MoveOut).then([E::MovedOut]);
    }

    #[test]
    fn a_moved_out_resident_refuses_change_attach_and_move_out() {
        for command in [
            C::Change { changes: PersonalChanges { sex: Some(Sex::Female), ..Default::default() } },
            C::Change { changes: PersonalChanges::default() },
            C::MoveOut,
            C::AttachCard { fid: fid("0A1B") },
        ] {
            given::<Resident>([registered(), E::MovedOut]).when(command).then_err(ResidentError::MovedOut);
        }
        // Moved out is checked before erasure.
        given::<Resident>([erased_registration(), E::MovedOut])
            .when(C::Change { changes: PersonalChanges::default() })
            .then_err(ResidentError::MovedOut);
    }

    #[test]
    fn a_moved_out_resident_still_takes_a_detach() {
        given::<Resident>([registered(), E::MovedOut]).when(C::DetachCard { fid: fid("0A1B") }).then([]);
        // A history in which the card outlived the move-out (not produced by `decide`, but foldable).
        let state = given::<Resident>([registered(), attached("0A1B"), E::MovedOut])
            .when(C::DetachCard { fid: fid("0A1B") })
            .then([E::CardDetached { fid: fid("0A1B") }]);
        assert!(resident(&state).moved_out && resident(&state).active_card.is_none());
    }

    #[test]
    fn move_out() {
        let state = given::<Resident>([registered(), attached("0A1B"), E::CardDetached { fid: fid("0A1B") }])
            .when(C::MoveOut)
            .then([E::MovedOut]);
        assert!(resident(&state).moved_out);
        assert_eq!(resident(&state).personal, Erasable::Known(personal()));
    }

    #[test]
    fn move_out_with_an_active_card_is_refused() {
        given::<Resident>([registered(), attached("0A1B")])
            .when(C::MoveOut)
            .then_err(ResidentError::CardStillActive(fid("0A1B")));
    }

    #[test]
    fn attach_a_card() {
        let state = given::<Resident>([registered()]).when(C::AttachCard { fid: fid("0A1B") }).then([attached("0A1B")]);
        assert_eq!(resident(&state).active_card, Some(fid("0A1B")));
    }

    #[test]
    fn attach_the_active_card_again_changes_nothing() {
        given::<Resident>([registered(), attached("0A1B")]).when(C::AttachCard { fid: fid("0A1B") }).then([]);
    }

    #[test]
    fn attach_a_second_card_is_refused() {
        given::<Resident>([registered(), attached("0A1B")])
            .when(C::AttachCard { fid: fid("0A1C") })
            .then_err(ResidentError::AlreadyHasCard(fid("0A1B")));
    }

    #[test]
    fn detach_the_active_card() {
        let state = given::<Resident>([registered(), attached("0A1B")])
            .when(C::DetachCard { fid: fid("0A1B") })
            .then([E::CardDetached { fid: fid("0A1B") }]);
        assert_eq!(resident(&state).active_card, None);
        // Then another card can be attached.
        given::<Resident>([registered(), attached("0A1B"), E::CardDetached { fid: fid("0A1B") }])
            .when(C::AttachCard { fid: fid("0A1C") })
            .then([attached("0A1C")]);
    }

    #[test]
    fn detach_another_card_changes_nothing() {
        given::<Resident>([registered(), attached("0A1B")]).when(C::DetachCard { fid: fid("0A1C") }).then([]);
        given::<Resident>([registered()]).when(C::DetachCard { fid: fid("0A1B") }).then([]);
        // Only the matching card is detached when folding, too.
        let state = Resident::fold(&[registered(), attached("0A1B"), E::CardDetached { fid: fid("0A1C") }]);
        assert_eq!(resident(&state).active_card, Some(fid("0A1B")));
    }

    #[test]
    fn events_of_an_unregistered_stream_change_nothing() {
        let state = Resident::fold(&[E::MovedOut, attached("0A1B"), E::FieldsChanged { changes: Erasable::Erased }]);
        assert!(state.registered.is_none());
    }

    const MOVED_AT: Timestamp = Timestamp::from_unix(1_700_000_000);
    const DAY: i64 = 86_400;

    fn retention() -> RetentionPeriod {
        RetentionPeriod::days(30).unwrap()
    }

    fn request() -> ErasureReason {
        ErasureReason::Request { reference: ErasureReference::parse("R8-SOMU-0123").unwrap() }
    }

    /// Erase for `reason`, decided `days_after` the move-out at [`MOVED_AT`].
    fn erase(reason: ErasureReason, days_after: i64) -> C {
        C::Erase {
            reason,
            at: MOVED_AT.plus_seconds(days_after * DAY),
            moved_out_at: Some(MOVED_AT),
            retention: retention(),
        }
    }

    fn erased(reason: ErasureReason) -> E {
        E::Erased { reason }
    }

    #[test]
    fn erase_once_the_retention_period_after_the_move_out_has_passed() {
        let state = given::<Resident>([registered(), E::MovedOut])
            .when(erase(ErasureReason::RetentionExpired, 30))
            .then([erased(ErasureReason::RetentionExpired)]);
        let r = resident(&state);
        assert!(r.erased);
        assert_eq!(r.personal, Erasable::Erased);
        assert_eq!(r.registry_key, None, "his registry link says nothing about him any more");
    }

    #[test]
    fn erase_on_a_documented_request_before_the_move_out() {
        given::<Resident>([registered()]).when(erase(request(), -400)).then([erased(request())]);
        // After an abolished card too.
        given::<Resident>([registered(), attached("0A1B"), E::CardDetached { fid: fid("0A1B") }])
            .when(erase(request(), 0))
            .then([erased(request())]);
    }

    #[test]
    fn erase_with_an_active_card_is_refused() {
        for reason in [request(), ErasureReason::RetentionExpired] {
            given::<Resident>([registered(), attached("0A1B")])
                .when(erase(reason, 400))
                .then_err(ResidentError::ErasureCardActive(fid("0A1B")));
        }
    }

    #[test]
    fn erase_before_the_move_out_without_a_request_is_refused() {
        given::<Resident>([registered()])
            .when(erase(ErasureReason::RetentionExpired, 400))
            .then_err(ResidentError::NotMovedOut);
    }

    #[test]
    fn erase_before_the_retention_period_has_passed_is_refused() {
        let until = MOVED_AT.plus_seconds(30 * DAY);
        given::<Resident>([registered(), E::MovedOut])
            .when(erase(ErasureReason::RetentionExpired, 29))
            .then_err(ResidentError::RetentionNotPassed { until });
        given::<Resident>([registered(), E::MovedOut])
            .when(C::Erase {
                reason: ErasureReason::RetentionExpired,
                at: until.plus_seconds(-1),
                moved_out_at: Some(MOVED_AT),
                retention: retention(),
            })
            .then_err(ResidentError::RetentionNotPassed { until });
        // A move-out whose time is unknown counts from now.
        given::<Resident>([registered(), E::MovedOut])
            .when(C::Erase {
                reason: ErasureReason::RetentionExpired,
                at: until,
                moved_out_at: None,
                retention: retention(),
            })
            .then_err(ResidentError::RetentionNotPassed { until: until.plus_seconds(30 * DAY) });
    }

    #[test]
    fn erase_twice_is_refused() {
        for reason in [request(), ErasureReason::RetentionExpired] {
            given::<Resident>([registered(), E::MovedOut, erased(request())])
                .when(erase(reason, 400))
                .then_err(ResidentError::AlreadyErased);
        }
    }

    #[test]
    fn nothing_is_recorded_about_an_erased_resident() {
        let history = [registered(), erased(request())];
        for command in [
            C::Change { changes: PersonalChanges { sex: Some(Sex::Female), ..Default::default() } },
            C::MoveOut,
            C::AttachCard { fid: fid("0A1B") },
        ] {
            given::<Resident>(history.clone()).when(command).then_err(ResidentError::Erased);
        }
        given::<Resident>(history).when(register()).then_err(ResidentError::AlreadyRegistered);
    }

    #[test]
    fn the_erasure_payload_carries_no_personal_data() {
        assert_eq!(erased(ErasureReason::RetentionExpired).encode(), json!({ "reason": "retention_expired" }));
        assert_eq!(erased(request()).encode(), json!({ "reason": "request", "reference": "R8-SOMU-0123" }));
        assert_eq!(erased(request()).event_type(), "ResidentErased");
        for bad in [
            json!({}),
            json!({ "reason": "request" }),
            json!({ "reason": "other" }),
            json!({ "reason": "request", "reference": "山田" }),
        ] {
            assert!(matches!(ResidentEvent::decode(ERASED, 1, &bad), Err(EventDecodeError::Payload { .. })), "{bad}");
        }
    }

    #[test]
    fn the_payloads_have_the_documented_shape() {
        assert_eq!(
            registered().encode(),
            json!({
                "resident_id": "01925c4e-6a80-7000-8000-000000000042",
                "municipality": "131016",
                "registry_key": "000123456",
                "personal": {
                    "kana_name": { "family": "ヤマダ", "given": "タロウ" },
                    "kanji_name": { "family": "山田", "given": "太郎" },
                    "birth_date": "3640107",
                    "sex": "1",
                    "postal_code": "100-0001",
                    "address1": "東京都千代田区千代田１－１",
                    "address2": null,
                    "phone": "03-3333-4444",
                    "email": "taro@example.jp",
                    "occupation": "会社員",
                    "custom_fields": { "household_size": 3, "school_district": "第一" },
                },
            })
        );
        let changes = PersonalChanges {
            sex: Some(Sex::Female),
            address2: Some(None),
            custom_fields: BTreeMap::from([(key("note"), None), (key("size"), Some(CustomValue::Number(4)))]),
            ..Default::default()
        };
        assert_eq!(
            E::FieldsChanged { changes: Erasable::Known(changes) }.encode(),
            json!({ "personal": { "sex": "2", "address2": null, "custom_fields": { "note": null, "size": 4 } } })
        );
        assert_eq!(E::FieldsChanged { changes: Erasable::Erased }.encode(), json!({ "personal": null }));
        assert_eq!(E::MovedOut.encode(), json!({}));
        assert_eq!(attached("0A1B").encode(), json!({ "fid": "0A1B" }));
        assert_eq!(E::CardDetached { fid: fid("0A1B") }.encode(), json!({ "fid": "0A1B" }));
    }

    #[test]
    fn an_event_whose_personal_is_null_decodes_as_erased() {
        let payload = json!({
            "resident_id": "01925c4e-6a80-7000-8000-000000000042",
            "municipality": "131016",
            "registry_key": null,
            "personal": null,
        });
        let event = ResidentEvent::decode(REGISTERED, 1, &payload).unwrap();
        assert_eq!(event, erased_registration());
        assert_eq!(event.encode(), payload);
        let changed = ResidentEvent::decode(FIELDS_CHANGED, 1, &json!({ "personal": null })).unwrap();
        assert_eq!(changed, E::FieldsChanged { changes: Erasable::Erased });
        // A missing `personal` is read the same way.
        assert_eq!(ResidentEvent::decode(FIELDS_CHANGED, 1, &json!({})), Ok(changed.clone()));

        let state = Resident::fold(&[event, attached("0A1B")]);
        let r = resident(&state);
        assert_eq!((r.id, &r.municipality, &r.personal), (id(), &chiyoda(), &Erasable::Erased));
        assert_eq!(r.active_card, Some(fid("0A1B")));
        // Registered known, then a change whose key was destroyed: erased from then on.
        let state = Resident::fold(&[registered(), changed]);
        assert_eq!(resident(&state).personal, Erasable::Erased);
        // And a known change cannot bring erased data back.
        let state = Resident::fold(&[
            erased_registration(),
            E::FieldsChanged {
                changes: Erasable::Known(PersonalChanges { sex: Some(Sex::Male), ..Default::default() }),
            },
        ]);
        assert_eq!(resident(&state).personal, Erasable::Erased);
    }

    #[test]
    fn decode_errors_name_the_event() {
        assert_eq!(ResidentEvent::decode(REGISTERED, 2, &json!({})), Err(EventDecodeError::unknown(REGISTERED, 2)));
        assert_eq!(ResidentEvent::decode("Nope", 1, &json!({})), Err(EventDecodeError::unknown("Nope", 1)));
        for (event_type, payload) in [
            (
                REGISTERED,
                json!({ "resident_id": "x", "municipality": "131016", "registry_key": null, "personal": null }),
            ),
            (FIELDS_CHANGED, json!({ "personal": { "kana_name": "やまだ" } })),
            (FIELDS_CHANGED, json!({ "personal": { "kana_name": null } })),
            (FIELDS_CHANGED, json!({ "personal": { "custom_fields": { "Bad": 1 } } })),
            (FIELDS_CHANGED, json!({ "personal": [] })),
            (CARD_ATTACHED, json!({ "fid": "0A-1B" })),
            (CARD_DETACHED, json!({})),
            (MOVED_OUT, json!(null)),
        ] {
            assert!(
                matches!(ResidentEvent::decode(event_type, 1, &payload), Err(EventDecodeError::Payload { .. })),
                "{event_type} {payload}"
            );
        }
    }

    #[test]
    fn changes_round_trip_through_their_stored_form() {
        let all = PersonalChanges {
            kana_name: Some(kana("ヤマダ", "ハナコ")),
            kanji_name: Some(kanji("山田", "花子")),
            birth_date: Some(EraDate::parse("5010501").unwrap()),
            sex: Some(Sex::NotApplicable),
            postal_code: Some(None),
            address1: Some(Some(address("大阪府"))),
            address2: Some(None),
            phone: Some(Some(Phone::parse("090-1234-5678").unwrap())),
            email: Some(None),
            occupation: Some(Some(Occupation::parse("学生").unwrap())),
            custom_fields: BTreeMap::from([(key("a"), None), (key("b"), Some(CustomValue::Text("12".into())))]),
        };
        let json = all.to_json();
        assert_eq!(json["custom_fields"], json!({ "a": null, "b": "12" }));
        assert_eq!(PersonalChanges::from_json(&json), Ok(all));
        assert_eq!(PersonalChanges::default().to_json(), json!({}));
        assert_eq!(PersonalChanges::from_json(&json!({})), Ok(PersonalChanges::default()));
        assert!(PersonalChanges::from_json(&json!("x")).is_err());
        assert!(PersonalChanges::default().is_empty() && !PersonalChanges::from_json(&json).unwrap().is_empty());
    }

    #[test]
    fn every_error_has_a_japanese_message() {
        for e in [
            ResidentError::AlreadyRegistered,
            ResidentError::NotRegistered,
            ResidentError::MovedOut,
            ResidentError::Erased,
            ResidentError::AlreadyHasCard(fid("0A1B")),
            ResidentError::CardStillActive(fid("0A1B")),
            ResidentError::ErasureCardActive(fid("0A1B")),
            ResidentError::NotMovedOut,
            ResidentError::RetentionNotPassed { until: Timestamp::from_unix(1_796_482_800) },
            ResidentError::AlreadyErased,
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty(), "{e:?}");
        }
        assert!(ResidentError::CardStillActive(fid("0A1B")).message_ja().contains("0A1B"));
        let until = ResidentError::RetentionNotPassed { until: Timestamp::from_unix(1_796_482_800) };
        assert!(until.message_ja().contains("2026-12-06") && until.to_string().contains("2026-12-06"));
    }

    #[test]
    fn addresses_as_typed() {
        for (typed, stored) in [
            ("東京都千代田区千代田1-1", "東京都千代田区千代田１－１"),
            (" 東京都\u{3000}千代田区 ", "東京都\u{3000}千代田区"),
            ("ﾄｳｷｮｳﾄ ﾁﾖﾀﾞｸ 1ﾁｮｳﾒ", "トウキョウト\u{3000}チヨダク\u{3000}１チョウメ"),
            ("ｶﾞｰﾃﾞﾝ", "ガーデン"),
            ("Ｒｏｏｍ１０１", "Ｒｏｏｍ１０１"),
        ] {
            assert_eq!(Address::parse(typed).unwrap().as_str(), stored, "{typed}");
        }
        assert_eq!(Address::parse(""), Err(ParseError::Empty));
        assert_eq!(Address::parse(" \u{3000}\t"), Err(ParseError::Empty));
        assert_eq!(Address::parse("東京\n都"), Err(ParseError::InvalidCharacter { ch: '\n' }));
        assert_eq!(Address::parse(&"ｶﾞ".repeat(100)).unwrap().as_str().chars().count(), 100);
        assert_eq!(Address::parse(&"a".repeat(101)), Err(ParseError::TooLong { max: 100 }));
        assert_eq!(serde_json::to_value(address("1-1")).unwrap(), json!("１－１"));
        assert_eq!(serde_json::from_value::<Address>(json!("1-1")).unwrap(), address("１－１"));
        assert!(serde_json::from_value::<Address>(json!("")).is_err());
    }

    #[test]
    fn resident_ids_are_uuids() {
        assert_eq!(ResidentId::parse("01925c4e-6a80-7000-8000-000000000042"), Ok(id()));
        for bad in ["", "42", "01925c4e-6a80-7000-8000-00000000004", "01925c4e-6a80-7000-8000-00000000004g"] {
            assert_eq!(ResidentId::parse(bad), Err(ParseError::InvalidResidentId), "{bad}");
        }
        assert_eq!(serde_json::to_value(id()).unwrap(), json!("01925c4e-6a80-7000-8000-000000000042"));
        assert!(serde_json::from_value::<ResidentId>(json!(42)).is_err());
    }

    /// Optional text that `Address::parse` accepts unchanged: full-width text, kanji, kana.
    fn full_width_text(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(&format!("[一-龥ぁ-んァ-ヶ０-９Ａ-Ｚ－\u{3000}]{{1,{max}}}"))
            .unwrap()
            .prop_filter("no surrounding full-width space", |s| s.trim() == s)
    }

    fn optional<T: std::fmt::Debug + Clone + 'static>(
        strategy: impl Strategy<Value = T> + 'static,
    ) -> impl Strategy<Value = Option<Option<T>>> {
        proptest::option::of(proptest::option::of(strategy))
    }

    prop_compose! {
        fn any_changes()(
            sex in proptest::option::of(proptest::sample::select(Sex::ALL.to_vec())),
            birth in proptest::option::of(proptest::sample::select(vec!["3640107", "4010108", "5010501"])),
            postal in optional("[0-9]{7}"),
            address1 in optional(full_width_text(20)),
            occupation in optional("[a-zあ-ん]{1,10}"),
            custom in proptest::collection::btree_map("[a-z]{1,5}", proptest::option::of(prop_oneof![
                any::<i64>().prop_map(CustomValue::Number),
                "[a-z0-9あ-ん]{0,5}".prop_map(CustomValue::Text),
            ]), 0..4),
        ) -> PersonalChanges {
            PersonalChanges {
                sex,
                birth_date: birth.map(|b| EraDate::parse(b).unwrap()),
                postal_code: postal.map(|p| p.map(|p| PostalCode::parse(&p).unwrap())),
                address1: address1.map(|a| a.map(|a| address(&a))),
                occupation: occupation.map(|o| o.map(|o| Occupation::parse(&o).unwrap())),
                custom_fields: custom.into_iter().map(|(k, v)| (key(&k), v)).collect(),
                ..Default::default()
            }
        }
    }

    proptest! {
        #[test]
        fn half_width_ascii_becomes_full_width(s in "[!-~]([ -~]{0,98}[!-~])?") {
            let expected: String = s
                .chars()
                .map(|c| if c == ' ' { '\u{3000}' } else { char::from_u32(c as u32 + 0xFEE0).unwrap() })
                .collect();
            let parsed = Address::parse(&s).unwrap();
            prop_assert_eq!(parsed.as_str(), expected.as_str());
            prop_assert!(!parsed.as_str().chars().any(|c| c.is_ascii()));
            prop_assert_eq!(Address::parse(parsed.as_str()).unwrap(), parsed.clone());
            let json = serde_json::to_value(&parsed).unwrap();
            prop_assert_eq!(serde_json::from_value::<Address>(json).unwrap(), parsed);
        }

        #[test]
        fn full_width_text_is_kept_and_trimmed(core in full_width_text(100), pad in "[ \u{3000}]{0,3}") {
            let parsed = Address::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(parsed.as_str(), core.as_str());
        }

        #[test]
        fn an_address_is_never_longer_than_100(s in "[^\\p{Cc}]{0,130}") {
            match Address::parse(&s) {
                Ok(a) => {
                    prop_assert!((1..=100).contains(&a.as_str().chars().count()));
                    prop_assert!(!a.as_str().chars().any(|c| c.is_ascii() || c.is_control()));
                    prop_assert_eq!(Address::parse(a.as_str()).unwrap(), a);
                }
                Err(e) => prop_assert!(
                    matches!(e, ParseError::Empty | ParseError::TooLong { max: 100 }),
                    "{:?}", e
                ),
            }
        }

        #[test]
        fn addresses_longer_than_100_are_rejected(s in "[^\\p{Cc}\\s\u{FF61}-\u{FF9F}]{101,130}") {
            prop_assert_eq!(Address::parse(&s), Err(ParseError::TooLong { max: 100 }));
        }

        #[test]
        fn addresses_with_a_control_character_inside_are_rejected(
            left in "[^\\p{Cc}\\s]{1,10}",
            ch in "\\p{Cc}",
            right in "[^\\p{Cc}\\s]{1,10}",
        ) {
            let ch = ch.chars().next().unwrap();
            prop_assert_eq!(Address::parse(&format!("{left}{ch}{right}")), Err(ParseError::InvalidCharacter { ch }));
        }

        #[test]
        fn resident_ids_round_trip(n in any::<u128>()) {
            let id = ResidentId::from_uuid(Uuid::from_u128(n));
            prop_assert_eq!(ResidentId::parse(&id.to_string()), Ok(id));
            prop_assert_eq!(id.as_uuid().as_u128(), n);
            let json = serde_json::to_value(id).unwrap();
            prop_assert_eq!(serde_json::from_value::<ResidentId>(json).unwrap(), id);
        }

        #[test]
        fn resident_ids_reject_what_is_not_a_uuid(s in "[^0-9a-fA-F-]{1,36}") {
            prop_assert_eq!(ResidentId::parse(&s), Err(ParseError::InvalidResidentId));
        }

        /// What a change records, applied, gives what the whole change gives; applied again it records nothing.
        #[test]
        fn against_keeps_exactly_what_apply_to_needs(changes in any_changes()) {
            let recorded = changes.clone().against(&personal());
            let after = changes.apply_to(personal());
            prop_assert_eq!(recorded.apply_to(personal()), after.clone());
            prop_assert!(changes.against(&after).is_empty());
            prop_assert_eq!(PersonalChanges::from_json(&recorded.to_json()), Ok(recorded.clone()));
            prop_assert_eq!(recorded.is_empty(), after == personal());
        }
    }
}
