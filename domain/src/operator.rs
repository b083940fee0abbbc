//! The `Operator` aggregate, reduced to what the foundation needs: registering an operator (first of all the
//! bootstrap system administrator) with a login ID, a name and roles.
//!
//! Owns the operator's value types and events. Passwords, certificates and biometrics live elsewhere: an
//! event here never carries a secret.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::ids::parse_text;
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, OperatorKey, ParseError};

/// The stream id of an operator: his stable key, not his login ID (which is unique only per municipality).
pub fn stream_key(key: &OperatorKey) -> String {
    key.to_string()
}

/// オペレータID, the login ID, e.g. `OP0501`: half-width alphanumeric (手引き I 2.1(5)①), 1..=32 characters.
///
/// The source gives no maximum length; 32 is ours. Case is kept as typed and nothing is trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorId(String);

impl OperatorId {
    pub const MAX_CHARS: usize = 32;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ParseError::NotHalfWidthAlphanumeric);
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ParseError::TooLong { max: Self::MAX_CHARS });
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OperatorId {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OperatorId> for String {
    fn from(id: OperatorId) -> Self {
        id.0
    }
}

/// 氏名・組織名 (required): trimmed, 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorName(String);

impl OperatorName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        parse_text(s, Self::MAX_CHARS).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OperatorName {
    type Error = ParseError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OperatorName> for String {
    fn from(name: OperatorName) -> Self {
        name.0
    }
}

/// What an operator may do. Only the system administrator works across municipalities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// システム管理: registers municipalities, bulk operator work, migration. Belongs to no municipality.
    SystemAdmin,
    /// 運用管理部門: registers the municipality's operators and biometrics.
    OperationsManager,
    /// 業務システムの管理者: maps operators to business-internal IDs.
    BusinessAdmin,
    /// 窓口: registers residents.
    Clerk,
    /// Reads history, changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] =
        [Self::SystemAdmin, Self::OperationsManager, Self::BusinessAdmin, Self::Clerk, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SystemAdmin => "system_admin",
            Self::OperationsManager => "operations_manager",
            Self::BusinessAdmin => "business_admin",
            Self::Clerk => "clerk",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| ParseError::UnknownValue { value: s.to_owned() })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OperatorCommand {
    Register {
        key: OperatorKey,
        /// `None` for the system administrator, who belongs to no municipality.
        municipality: Option<MunicipalityCode>,
        operator_id: OperatorId,
        name: OperatorName,
        roles: Vec<Role>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorEvent {
    Registered {
        key: OperatorKey,
        municipality: Option<MunicipalityCode>,
        operator_id: OperatorId,
        name: OperatorName,
        /// Deduplicated and sorted.
        roles: Vec<Role>,
    },
}

const REGISTERED: &str = "OperatorRegistered";

/// Stored payload shapes, one per `(event_type, version)`; never edit a released one.
mod v1 {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Registered {
        pub key: OperatorKey,
        pub municipality: Option<MunicipalityCode>,
        pub operator_id: OperatorId,
        pub name: OperatorName,
        pub roles: Vec<Role>,
    }
}

impl DomainEvent for OperatorEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => REGISTERED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Registered { key, municipality, operator_id, name, roles } => json!({
                "key": key.to_string(),
                "municipality": municipality.as_ref().map(MunicipalityCode::as_str),
                "operator_id": operator_id.as_str(),
                "name": name.as_str(),
                "roles": roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (REGISTERED, 1) => {
                let v1::Registered { key, municipality, operator_id, name, roles } =
                    decode_payload(event_type, event_version, payload)?;
                Ok(Self::Registered { key, municipality, operator_id, name, roles })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("the operator is already registered")]
    AlreadyRegistered,
    #[error("an operator needs at least one role")]
    NoRoles,
    #[error("a system administrator belongs to no municipality")]
    SystemAdminHasNoMunicipality,
    #[error("an operator other than a system administrator must belong to a municipality")]
    MunicipalityRequired,
}

impl OperatorError {
    pub fn message_ja(&self) -> &'static str {
        match self {
            Self::AlreadyRegistered => "このオペレータは既に登録されています",
            Self::NoRoles => "権限を1つ以上選択してください",
            Self::SystemAdminHasNoMunicipality => "システム管理者には市町村・任意団体を指定できません",
            Self::MunicipalityRequired => "市町村・任意団体を選択してください",
        }
    }
}

/// The folded state; `Default` is "not registered".
#[derive(Debug, Clone, Default)]
pub struct OperatorState {
    registered: Option<Registered>,
}

#[derive(Debug, Clone)]
struct Registered {
    key: OperatorKey,
    municipality: Option<MunicipalityCode>,
    operator_id: OperatorId,
    name: OperatorName,
    roles: Vec<Role>,
}

impl OperatorState {
    pub fn is_registered(&self) -> bool {
        self.registered.is_some()
    }

    pub fn key(&self) -> Option<OperatorKey> {
        self.registered.as_ref().map(|r| r.key)
    }

    /// `None` when not registered and for the system administrator.
    pub fn municipality(&self) -> Option<&MunicipalityCode> {
        self.registered.as_ref().and_then(|r| r.municipality.as_ref())
    }

    pub fn operator_id(&self) -> Option<&OperatorId> {
        self.registered.as_ref().map(|r| &r.operator_id)
    }

    pub fn name(&self) -> Option<&OperatorName> {
        self.registered.as_ref().map(|r| &r.name)
    }

    /// Empty when not registered.
    pub fn roles(&self) -> &[Role] {
        self.registered.as_ref().map_or(&[], |r| &r.roles)
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles().contains(&role)
    }
}

#[derive(Debug)]
pub struct Operator;

impl Aggregate for Operator {
    type State = OperatorState;
    type Command = OperatorCommand;
    type Event = OperatorEvent;
    type Error = OperatorError;

    const STREAM_TYPE: &'static str = "operator";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let OperatorCommand::Register { key, municipality, operator_id, name, mut roles } = command;
        if state.is_registered() {
            return Err(OperatorError::AlreadyRegistered);
        }
        roles.sort_unstable();
        roles.dedup();
        if roles.is_empty() {
            return Err(OperatorError::NoRoles);
        }
        let is_system_admin = roles.contains(&Role::SystemAdmin);
        let has_municipal_role = roles.iter().any(|&role| role != Role::SystemAdmin);
        if is_system_admin && municipality.is_some() {
            return Err(OperatorError::SystemAdminHasNoMunicipality);
        }
        if has_municipal_role && municipality.is_none() {
            return Err(OperatorError::MunicipalityRequired);
        }
        Ok(vec![OperatorEvent::Registered { key, municipality, operator_id, name, roles }])
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        match event {
            OperatorEvent::Registered { key, municipality, operator_id, name, roles } => {
                state.registered = Some(Registered {
                    key: *key,
                    municipality: municipality.clone(),
                    operator_id: operator_id.clone(),
                    name: name.clone(),
                    roles: roles.clone(),
                });
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn key() -> OperatorKey {
        OperatorKey::from_uuid(Uuid::from_u128(0x0192_5c4e_6a80_7000_8000_0000_0000_0001))
    }

    fn chiyoda() -> Option<MunicipalityCode> {
        Some(MunicipalityCode::parse("131016").unwrap())
    }

    fn register(municipality: Option<MunicipalityCode>, roles: Vec<Role>) -> OperatorCommand {
        OperatorCommand::Register {
            key: key(),
            municipality,
            operator_id: OperatorId::parse("OP0501").unwrap(),
            name: OperatorName::parse("ICS").unwrap(),
            roles,
        }
    }

    fn registered(municipality: Option<MunicipalityCode>, roles: Vec<Role>) -> OperatorEvent {
        OperatorEvent::Registered {
            key: key(),
            municipality,
            operator_id: OperatorId::parse("OP0501").unwrap(),
            name: OperatorName::parse("ICS").unwrap(),
            roles,
        }
    }

    #[test]
    fn register_the_system_administrator_without_a_municipality() {
        let state = given::<Operator>([])
            .when(register(None, vec![Role::SystemAdmin]))
            .then([registered(None, vec![Role::SystemAdmin])]);
        assert!(state.is_registered());
        assert_eq!(state.key(), Some(key()));
        assert_eq!(state.municipality(), None);
        assert_eq!(state.operator_id().map(OperatorId::as_str), Some("OP0501"));
        assert_eq!(state.name().map(OperatorName::as_str), Some("ICS"));
        assert!(state.has_role(Role::SystemAdmin) && !state.has_role(Role::Clerk));
        assert_eq!(stream_key(&key()), key().to_string());
    }

    #[test]
    fn register_a_municipal_operator_with_roles_deduplicated_and_sorted() {
        let state = given::<Operator>([])
            .when(register(chiyoda(), vec![Role::Clerk, Role::BusinessAdmin, Role::Clerk]))
            .then([registered(chiyoda(), vec![Role::BusinessAdmin, Role::Clerk])]);
        assert_eq!(state.municipality(), chiyoda().as_ref());
        assert_eq!(state.roles(), [Role::BusinessAdmin, Role::Clerk]);
    }

    #[test]
    fn register_twice_is_refused() {
        given::<Operator>([registered(None, vec![Role::SystemAdmin])])
            .when(register(None, vec![Role::SystemAdmin]))
            .then_err(OperatorError::AlreadyRegistered);
    }

    #[test]
    fn register_without_roles_is_refused() {
        given::<Operator>([]).when(register(chiyoda(), vec![])).then_err(OperatorError::NoRoles);
    }

    #[test]
    fn a_system_administrator_with_a_municipality_is_refused() {
        given::<Operator>([])
            .when(register(chiyoda(), vec![Role::SystemAdmin]))
            .then_err(OperatorError::SystemAdminHasNoMunicipality);
    }

    #[test]
    fn a_municipal_role_without_a_municipality_is_refused() {
        given::<Operator>([]).when(register(None, vec![Role::Clerk])).then_err(OperatorError::MunicipalityRequired);
        given::<Operator>([])
            .when(register(None, vec![Role::SystemAdmin, Role::Auditor]))
            .then_err(OperatorError::MunicipalityRequired);
    }

    #[test]
    fn the_payload_has_the_documented_shape() {
        let payload = registered(None, vec![Role::SystemAdmin]).encode();
        assert_eq!(
            payload,
            json!({
                "key": "01925c4e-6a80-7000-8000-000000000001",
                "municipality": null,
                "operator_id": "OP0501",
                "name": "ICS",
                "roles": ["system_admin"],
            })
        );
        assert_eq!(OperatorEvent::decode(REGISTERED, 2, &payload), Err(EventDecodeError::unknown(REGISTERED, 2)));
        let bad = json!({ "key": "x", "municipality": null, "operator_id": "OP0501", "name": "ICS", "roles": [] });
        assert!(matches!(OperatorEvent::decode(REGISTERED, 1, &bad), Err(EventDecodeError::Payload { .. })));
    }

    #[test]
    fn roles_parse_their_own_names_only() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
            assert_eq!(serde_json::to_value(role).unwrap(), json!(role.as_str()));
        }
        assert_eq!(Role::parse("admin"), Err(ParseError::UnknownValue { value: "admin".into() }));
    }

    #[test]
    fn operator_id_and_name_errors() {
        assert_eq!(OperatorId::parse(""), Err(ParseError::Empty));
        assert_eq!(OperatorId::parse(" OP0501"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(OperatorId::parse("ＯＰ０５０１"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(OperatorId::parse("op_0501"), Err(ParseError::NotHalfWidthAlphanumeric));
        assert_eq!(OperatorName::parse("\u{3000}"), Err(ParseError::Empty));
        assert_eq!(OperatorName::parse(&"x".repeat(101)), Err(ParseError::TooLong { max: 100 }));
        assert_eq!(OperatorName::parse("南江戸市\u{7f}"), Err(ParseError::InvalidCharacter { ch: '\u{7f}' }));
    }

    proptest! {
        #[test]
        fn alphanumeric_ids_up_to_32_parse_and_round_trip(s in "[A-Za-z0-9]{1,32}") {
            let id = OperatorId::parse(&s).unwrap();
            prop_assert_eq!(id.as_str(), s.as_str());
            prop_assert_eq!(id.to_string(), s.clone());
            let json = serde_json::to_value(&id).unwrap();
            prop_assert_eq!(serde_json::from_value::<OperatorId>(json).unwrap(), id);
        }

        #[test]
        fn ids_longer_than_32_are_rejected(s in "[A-Za-z0-9]{33,64}") {
            prop_assert_eq!(OperatorId::parse(&s), Err(ParseError::TooLong { max: 32 }));
        }

        #[test]
        fn ids_with_any_other_character_are_rejected(
            left in "[A-Za-z0-9]{0,10}",
            ch in any::<char>().prop_filter("not ASCII alphanumeric", |c| !c.is_ascii_alphanumeric()),
            right in "[A-Za-z0-9]{0,10}",
        ) {
            prop_assert_eq!(
                OperatorId::parse(&format!("{left}{ch}{right}")),
                Err(ParseError::NotHalfWidthAlphanumeric)
            );
        }

        #[test]
        fn names_parse_trimmed_and_round_trip(
            core in "[^\\p{Cc}\\s]([^\\p{Cc}]{0,98}[^\\p{Cc}\\s])?",
            pad in "[ \u{3000}]{0,3}",
        ) {
            let name = OperatorName::parse(&format!("{pad}{core}{pad}")).unwrap();
            prop_assert_eq!(name.as_str(), core.as_str());
            let json = serde_json::to_value(&name).unwrap();
            prop_assert_eq!(serde_json::from_value::<OperatorName>(json).unwrap(), name);
        }

        #[test]
        fn names_longer_than_100_are_rejected(core in "[^\\p{Cc}\\s]{101,140}") {
            prop_assert_eq!(OperatorName::parse(&core), Err(ParseError::TooLong { max: 100 }));
        }

        #[test]
        fn role_sets_are_stored_sorted_and_unique(roles in proptest::collection::vec(
            prop::sample::select(&Role::ALL[1..]), 1..10,
        )) {
            let events = Operator::decide(&OperatorState::default(), register(chiyoda(), roles.clone())).unwrap();
            let [OperatorEvent::Registered { roles: stored, .. }] = events.as_slice() else {
                panic!("expected one event, got {events:?}");
            };
            prop_assert!(stored.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(roles.iter().all(|r| stored.contains(r)));
        }
    }
}
