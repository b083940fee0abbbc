//! The `Municipality` aggregate: a city, town, village or association (市町村・任意団体) that the system
//! administrator registers, renames, reorders for display, and abolishes.
//!
//! Owns its value types and events. A code is never reused: registering over an abolished municipality fails.
//! A municipality is registered with its 全国地方公共団体コード, an association (任意団体, which has none) with an
//! association ID (`A` + 5 digits); `MunicipalityCode` holds either, and `decide` refuses the wrong form.
//!
//! Length: about half of this file is its given/when/then tests, one per branch of `decide`; the code is under 600
//! lines.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::ids::parse_text;
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, ParseError};

/// The stream id of a municipality: its code.
pub fn stream_key(code: &MunicipalityCode) -> String {
    code.as_str().to_owned()
}

/// 市町村・任意団体名, e.g. `千代田区`: trimmed, 1..=50 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityName(String);

impl MunicipalityName {
    pub const MAX_CHARS: usize = 50;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MunicipalityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for MunicipalityName {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MunicipalityName> for String {
    fn from(name: MunicipalityName) -> Self {
        name.0
    }
}

/// Whether the tenant is a municipality proper or a voluntary association of them (任意団体・協議会).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MunicipalityKind {
    Municipality,
    Association,
}

impl MunicipalityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Municipality => "municipality",
            Self::Association => "association",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        match s {
            "municipality" => Ok(Self::Municipality),
            "association" => Ok(Self::Association),
            _ => Err(ParseError::UnknownValue { value: s.to_owned() }),
        }
    }
}

/// Position in lists of municipalities (運用環境設定: 市町村表示順), 1..=999 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct DisplayOrder(u32);

impl DisplayOrder {
    pub const MIN: u32 = 1;
    pub const MAX: u32 = 999_999;

    pub fn parse(n: i64) -> Result<Self, ParseError> {
        u32::try_from(n)
            .ok()
            .filter(|n| (Self::MIN..=Self::MAX).contains(n))
            .map(Self)
            .ok_or(ParseError::OutOfRange { min: Self::MIN.into(), max: Self::MAX.into() })
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for DisplayOrder {
    type Error = ParseError;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        Self::parse(n)
    }
}

impl From<DisplayOrder> for u32 {
    fn from(order: DisplayOrder) -> Self {
        order.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MunicipalityCommand {
    Register {
        code: MunicipalityCode,
        name: MunicipalityName,
        kind: MunicipalityKind,
        display_order: DisplayOrder,
    },
    /// Rename and/or reorder in one decision (an HTTP PATCH); a field that is `None` or unchanged yields no event.
    Change {
        name: Option<MunicipalityName>,
        display_order: Option<DisplayOrder>,
    },
    Abolish,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MunicipalityEvent {
    Registered { code: MunicipalityCode, name: MunicipalityName, kind: MunicipalityKind, display_order: DisplayOrder },
    Renamed { name: MunicipalityName },
    DisplayOrderChanged { display_order: DisplayOrder },
    Abolished,
}

const REGISTERED: &str = "MunicipalityRegistered";
const RENAMED: &str = "MunicipalityRenamed";
const DISPLAY_ORDER_CHANGED: &str = "MunicipalityDisplayOrderChanged";
const ABOLISHED: &str = "MunicipalityAbolished";

/// Stored payload shapes, one per `(event_type, version)`; never edit a released one.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub code: MunicipalityCode,
        pub name: MunicipalityName,
        pub kind: MunicipalityKind,
        pub display_order: DisplayOrder,
    }

    #[derive(Deserialize)]
    pub(super) struct Renamed {
        pub name: MunicipalityName,
    }

    #[derive(Deserialize)]
    pub(super) struct DisplayOrderChanged {
        pub display_order: DisplayOrder,
    }

    #[derive(Deserialize)]
    pub(super) struct Abolished {}
}

impl DomainEvent for MunicipalityEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
            Self::Renamed { .. } => RENAMED,
            Self::DisplayOrderChanged { .. } => DISPLAY_ORDER_CHANGED,
            Self::Abolished => ABOLISHED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { code, name, kind, display_order } => json!({
                "code": code.as_str(),
                "name": name.as_str(),
                "kind": kind.as_str(),
                "display_order": display_order.value(),
            }),
            Self::Renamed { name } => json!({ "name": name.as_str() }),
            Self::DisplayOrderChanged { display_order } => {
                json!({ "display_order": display_order.value() })
            }
            Self::Abolished => json!({}),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (REGISTERED, 1) => {
                let v1::Registered { code, name, kind, display_order } =
                    decode_payload(event_type, event_version, payload)?;
                Self::Registered { code, name, kind, display_order }
            }
            (RENAMED, 1) => {
                let v1::Renamed { name } = decode_payload(event_type, event_version, payload)?;
                Self::Renamed { name }
            }
            (DISPLAY_ORDER_CHANGED, 1) => {
                let v1::DisplayOrderChanged { display_order } = decode_payload(event_type, event_version, payload)?;
                Self::DisplayOrderChanged { display_order }
            }
            (ABOLISHED, 1) => {
                let v1::Abolished {} = decode_payload(event_type, event_version, payload)?;
                Self::Abolished
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MunicipalityError {
    #[error("a municipality with this code is already registered (codes are never reused)")]
    AlreadyRegistered,
    #[error("no municipality with this code is registered")]
    NotRegistered,
    #[error("the municipality has been abolished")]
    Abolished,
    /// A municipality with an association ID, or an association with a 全国地方公共団体コード.
    #[error("{}", .0)]
    CodeDoesNotMatchKind(ParseError),
}

impl crate::message::Localized for MunicipalityError {
    fn message_ja(&self) -> String {
        match self {
            Self::AlreadyRegistered => "この団体コードは既に登録されています".to_owned(),
            Self::NotRegistered => "この団体コードは登録されていません".to_owned(),
            Self::Abolished => "この市町村・任意団体は廃止されています".to_owned(),
            Self::CodeDoesNotMatchKind(e) => e.message_ja(),
        }
    }
}

/// The folded state; `Default` is "not registered".
#[derive(Debug, Clone, Default)]
pub struct MunicipalityState {
    registered: Option<Registered>,
    abolished: bool,
}

#[derive(Debug, Clone)]
struct Registered {
    code: MunicipalityCode,
    name: MunicipalityName,
    kind: MunicipalityKind,
    display_order: DisplayOrder,
}

impl MunicipalityState {
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    pub fn is_abolished(&self) -> bool {
        self.abolished
    }

    pub fn code(&self) -> Option<&MunicipalityCode> {
        self.registered.as_ref().map(|r| &r.code)
    }

    pub fn name(&self) -> Option<&MunicipalityName> {
        self.registered.as_ref().map(|r| &r.name)
    }

    pub fn kind(&self) -> Option<MunicipalityKind> {
        self.registered.as_ref().map(|r| r.kind)
    }

    pub fn display_order(&self) -> Option<DisplayOrder> {
        self.registered.as_ref().map(|r| r.display_order)
    }
}

#[derive(Debug)]
pub struct Municipality;

impl Aggregate for Municipality {
    type State = MunicipalityState;
    type Command = MunicipalityCommand;
    type Event = MunicipalityEvent;
    type Error = MunicipalityError;

    const STREAM_TYPE: &'static str = "municipality";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        use MunicipalityCommand as C;
        use MunicipalityEvent as E;

        let Some(current) = &state.registered else {
            return match command {
                C::Register { code, name, kind, display_order } => {
                    MunicipalityCode::parse_for(kind, code.as_str())
                        .map_err(MunicipalityError::CodeDoesNotMatchKind)?;
                    Ok(vec![E::Registered { code, name, kind, display_order }])
                }
                _ => Err(MunicipalityError::NotRegistered),
            };
        };
        match command {
            C::Register { .. } => Err(MunicipalityError::AlreadyRegistered),
            _ if state.abolished => Err(MunicipalityError::Abolished),
            C::Change { name, display_order } => {
                let renamed = name.filter(|n| *n != current.name).map(|name| E::Renamed { name });
                let reordered = display_order
                    .filter(|o| *o != current.display_order)
                    .map(|display_order| E::DisplayOrderChanged { display_order });
                Ok(renamed.into_iter().chain(reordered).collect())
            }
            C::Abolish => Ok(vec![E::Abolished]),
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        match (event, state.registered.as_mut()) {
            (MunicipalityEvent::Registered { code, name, kind, display_order }, _) => {
                state.registered = Some(Registered {
                    code: code.clone(),
                    name: name.clone(),
                    kind: *kind,
                    display_order: *display_order,
                });
            }
            (MunicipalityEvent::Renamed { name }, Some(r)) => r.name = name.clone(),
            (MunicipalityEvent::DisplayOrderChanged { display_order }, Some(r)) => r.display_order = *display_order,
            (MunicipalityEvent::Abolished, _) => state.abolished = true,
            // A change to a stream that was never registered cannot be stored; there is nothing to change.
            (MunicipalityEvent::Renamed { .. } | MunicipalityEvent::DisplayOrderChanged { .. }, None) => {}
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use MunicipalityCommand as C;
    use MunicipalityEvent as E;
    use proptest::prelude::*;

    fn code() -> MunicipalityCode {
        MunicipalityCode::parse("131016").unwrap()
    }

    fn name(s: &str) -> MunicipalityName {
        MunicipalityName::parse(s).unwrap()
    }

    fn order(n: i64) -> DisplayOrder {
        DisplayOrder::parse(n).unwrap()
    }

    fn register() -> C {
        C::Register {
            code: code(),
            name: name("千代田区"),
            kind: MunicipalityKind::Municipality,
            display_order: order(1),
        }
    }

    fn registered() -> E {
        E::Registered {
            code: code(),
            name: name("千代田区"),
            kind: MunicipalityKind::Municipality,
            display_order: order(1),
        }
    }

    #[test]
    fn register_a_new_municipality() {
        let state = given::<Municipality>([]).when(register()).then([registered()]);
        assert!(state.is_registered() && !state.is_abolished());
        assert_eq!(state.code(), Some(&code()));
        assert_eq!(state.name(), Some(&name("千代田区")));
        assert_eq!(state.kind(), Some(MunicipalityKind::Municipality));
        assert_eq!(state.display_order(), Some(order(1)));
        assert_eq!(stream_key(&code()), "131016");
    }

    #[test]
    fn register_an_association_with_its_association_id() {
        // 西関東協議会 (手引き I 2.2 (4)): a voluntary association, which has no 全国地方公共団体コード.
        let id = MunicipalityCode::parse("A00001").unwrap();
        let registered = E::Registered {
            code: id.clone(),
            name: name("西関東協議会"),
            kind: MunicipalityKind::Association,
            display_order: order(7),
        };
        let state = given::<Municipality>([])
            .when(C::Register {
                code: id.clone(),
                name: name("西関東協議会"),
                kind: MunicipalityKind::Association,
                display_order: order(7),
            })
            .then([registered]);
        assert_eq!(state.kind(), Some(MunicipalityKind::Association));
        assert_eq!(state.code(), Some(&id));
        assert_eq!(stream_key(&id), "A00001");
    }

    #[test]
    fn an_association_with_a_municipality_code_is_refused() {
        given::<Municipality>([])
            .when(C::Register {
                code: code(),
                name: name("西関東協議会"),
                kind: MunicipalityKind::Association,
                display_order: order(7),
            })
            .then_err(MunicipalityError::CodeDoesNotMatchKind(ParseError::NotAnAssociationId));
    }

    #[test]
    fn a_municipality_with_an_association_id_is_refused() {
        given::<Municipality>([])
            .when(C::Register {
                code: MunicipalityCode::parse("A00001").unwrap(),
                name: name("千代田区"),
                kind: MunicipalityKind::Municipality,
                display_order: order(1),
            })
            .then_err(MunicipalityError::CodeDoesNotMatchKind(ParseError::NotAMunicipalityCode));
    }

    #[test]
    fn an_association_stored_with_a_municipality_code_before_the_rule_still_decodes() {
        let stored = json!({"code": "011002", "name": "札幌広域協議会", "kind": "association", "display_order": 2});
        let event = MunicipalityEvent::decode(REGISTERED, 1, &stored).unwrap();
        let state = given::<Municipality>([event])
            .when(C::Change { name: Some(name("札幌広域連合")), display_order: None })
            .then([E::Renamed { name: name("札幌広域連合") }]);
        assert_eq!(state.kind(), Some(MunicipalityKind::Association));
    }

    #[test]
    fn register_twice_is_refused() {
        given::<Municipality>([registered()]).when(register()).then_err(MunicipalityError::AlreadyRegistered);
    }

    #[test]
    fn register_over_an_abolished_municipality_is_refused_because_codes_are_never_reused() {
        given::<Municipality>([registered(), E::Abolished])
            .when(register())
            .then_err(MunicipalityError::AlreadyRegistered);
    }

    #[test]
    fn any_other_command_before_register_is_refused() {
        for command in [
            C::Change { name: Some(name("千代田")), display_order: None },
            C::Change { name: None, display_order: Some(order(2)) },
            C::Abolish,
        ] {
            given::<Municipality>([]).when(command).then_err(MunicipalityError::NotRegistered);
        }
    }

    #[test]
    fn any_command_after_abolish_is_refused() {
        for command in [
            C::Change { name: Some(name("千代田")), display_order: None },
            C::Change { name: None, display_order: Some(order(2)) },
            C::Abolish,
        ] {
            given::<Municipality>([registered(), E::Abolished]).when(command).then_err(MunicipalityError::Abolished);
        }
    }

    #[test]
    fn rename() {
        let state = given::<Municipality>([registered()])
            .when(C::Change { name: Some(name("新千代田区")), display_order: None })
            .then([E::Renamed { name: name("新千代田区") }]);
        assert_eq!(state.name(), Some(&name("新千代田区")));
    }

    #[test]
    fn rename_to_the_same_name_changes_nothing() {
        given::<Municipality>([registered()])
            .when(C::Change { name: Some(name("千代田区")), display_order: None })
            .then([]);
    }

    #[test]
    fn change_display_order() {
        let state = given::<Municipality>([registered()])
            .when(C::Change { name: None, display_order: Some(order(2)) })
            .then([E::DisplayOrderChanged { display_order: order(2) }]);
        assert_eq!(state.display_order(), Some(order(2)));
    }

    #[test]
    fn change_display_order_to_the_same_order_changes_nothing() {
        given::<Municipality>([registered()]).when(C::Change { name: None, display_order: Some(order(1)) }).then([]);
    }

    #[test]
    fn rename_and_reorder_together() {
        given::<Municipality>([registered()])
            .when(C::Change { name: Some(name("新千代田区")), display_order: Some(order(5)) })
            .then([E::Renamed { name: name("新千代田区") }, E::DisplayOrderChanged { display_order: order(5) }]);
    }

    #[test]
    fn a_change_of_nothing_changes_nothing() {
        given::<Municipality>([registered()]).when(C::Change { name: None, display_order: None }).then([]);
    }

    #[test]
    fn abolish() {
        let state = given::<Municipality>([registered()]).when(C::Abolish).then([E::Abolished]);
        assert!(state.is_registered() && state.is_abolished());
    }

    #[test]
    fn decode_refuses_unknown_types_versions_and_bad_payloads() {
        assert_eq!(
            MunicipalityEvent::decode("MunicipalityMerged", 1, &json!({})),
            Err(EventDecodeError::unknown("MunicipalityMerged", 1))
        );
        assert_eq!(
            MunicipalityEvent::decode(RENAMED, 2, &json!({ "name": "千代田区" })),
            Err(EventDecodeError::unknown(RENAMED, 2))
        );
        for payload in [json!({ "name": "" }), json!({}), json!("千代田区")] {
            assert!(matches!(MunicipalityEvent::decode(RENAMED, 1, &payload), Err(EventDecodeError::Payload { .. })));
        }
        assert!(matches!(
            MunicipalityEvent::decode(DISPLAY_ORDER_CHANGED, 1, &json!({ "display_order": 0 })),
            Err(EventDecodeError::Payload { .. })
        ));
    }

    #[test]
    fn kind_parses_its_own_names_only() {
        for kind in [MunicipalityKind::Municipality, MunicipalityKind::Association] {
            assert_eq!(MunicipalityKind::parse(kind.as_str()), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        assert_eq!(
            MunicipalityKind::parse("Municipality"),
            Err(ParseError::UnknownValue { value: "Municipality".into() })
        );
    }

    #[test]
    fn name_errors() {
        assert_eq!(MunicipalityName::parse(" \u{3000}\t"), Err(ParseError::Empty));
        assert_eq!(MunicipalityName::parse("千代\n田区"), Err(ParseError::InvalidCharacter { ch: '\n' }));
        assert_eq!(MunicipalityName::parse(&"あ".repeat(51)), Err(ParseError::TooLong { max: 50 }));
        assert!(serde_json::from_value::<MunicipalityName>(json!("")).is_err());
    }

    proptest! {
        #[test]
        fn names_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,48}[^\\p{Cc}\\s])?",
            pad_left in "[ \u{3000}]{0,3}",
            pad_right in "[ \u{3000}]{0,3}",
        ) {
            let parsed = MunicipalityName::parse(&format!("{pad_left}{core}{pad_right}")).unwrap();
            prop_assert_eq!(parsed.as_str(), core.as_str());
            let json = serde_json::to_value(&parsed).unwrap();
            prop_assert_eq!(serde_json::from_value::<MunicipalityName>(json).unwrap(), parsed);
        }

        #[test]
        fn names_longer_than_50_are_rejected(core in "[^\\p{Cc}\\s]{51,80}") {
            prop_assert_eq!(MunicipalityName::parse(&core), Err(ParseError::TooLong { max: 50 }));
        }

        #[test]
        fn names_with_a_control_character_inside_are_rejected(
            left in "[^\\p{Cc}\\s]{1,10}",
            ch in "\\p{Cc}",
            right in "[^\\p{Cc}\\s]{1,10}",
        ) {
            let ch = ch.chars().next().unwrap();
            prop_assert_eq!(
                MunicipalityName::parse(&format!("{left}{ch}{right}")),
                Err(ParseError::InvalidCharacter { ch })
            );
        }

        #[test]
        fn display_orders_in_range_parse_and_round_trip(n in 1i64..=999_999) {
            let parsed = DisplayOrder::parse(n).unwrap();
            prop_assert_eq!(i64::from(parsed.value()), n);
            let json = serde_json::to_value(parsed).unwrap();
            prop_assert_eq!(&json, &json!(n));
            prop_assert_eq!(serde_json::from_value::<DisplayOrder>(json).unwrap(), parsed);
        }

        #[test]
        fn display_orders_out_of_range_are_rejected(n in prop_oneof![i64::MIN..=0, 1_000_000i64..]) {
            prop_assert_eq!(DisplayOrder::parse(n), Err(ParseError::OutOfRange { min: 1, max: 999_999 }));
            prop_assert!(serde_json::from_value::<DisplayOrder>(json!(n)).is_err());
        }
    }
}
