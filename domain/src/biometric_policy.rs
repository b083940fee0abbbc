//! `BiometricPolicy` (生体認証の設定): what one municipality decides about biometric login (手引き I 2.1(4)(b),
//! 2.2(1)) — which of its operators must log in biometrically (none, all, or those listed), and which authenticator
//! models (AAGUIDs) may be registered for them, so that it can require fingerprint or vein readers.
//!
//! Owns the rules that the login and the registration of authenticators ask of it
//! ([`BiometricPolicyState::requires_biometric`], [`BiometricPolicyState::allowed_models`]); the decisions
//! themselves are the operator's (`operator`) and the login's (`commands::biometric`). A municipality without a
//! stream has the default policy: nobody is required, any model is allowed. Every change is one event,
//! `BiometricPolicySet`, carrying the whole policy.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::operator::{Aaguid, OperatorId};
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, Timestamp};

/// The stream id of a municipality's biometric policy: its code.
pub fn stream_key(code: &MunicipalityCode) -> String {
    code.as_str().to_owned()
}

/// The most operators a policy may list by name (more: require it of all).
pub const MAX_LISTED_OPERATORS: usize = 1000;
/// The most authenticator models a policy may allow.
pub const MAX_ALLOWED_MODELS: usize = 100;

/// Who must log in biometrically (password login is refused for them; a client certificate stays allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BiometricRequirement {
    /// Nobody: password login stays open to every operator.
    #[default]
    None,
    /// Every operator of the municipality.
    All,
    /// The operators listed (at least one).
    Listed(BTreeSet<OperatorId>),
}

impl BiometricRequirement {
    /// The stored and shown name: `none`, `all`, `listed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::All => "all",
            Self::Listed(_) => "listed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BiometricPolicyCommand {
    /// Replace the policy (an HTTP PUT); the same policy again yields no event.
    Set {
        required: BiometricRequirement,
        /// Empty: any model.
        allowed_models: BTreeSet<Aaguid>,
        at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BiometricPolicyEvent {
    /// `MunicipalityBiometricPolicySet` v1: the whole policy as it is from now on.
    Set { required: BiometricRequirement, allowed_models: BTreeSet<Aaguid>, at: Timestamp },
}

const SET: &str = "MunicipalityBiometricPolicySet";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Set {
        pub required: String,
        pub operators: Vec<OperatorId>,
        pub allowed_models: Vec<Aaguid>,
        pub at: Timestamp,
    }
}

impl DomainEvent for BiometricPolicyEvent {
    fn event_type(&self) -> &'static str {
        SET
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let Self::Set { required, allowed_models, at } = self;
        let operators: Vec<&str> = match required {
            BiometricRequirement::Listed(ids) => ids.iter().map(OperatorId::as_str).collect(),
            _ => vec![],
        };
        json!({
            "required": required.as_str(),
            "operators": operators,
            "allowed_models": allowed_models.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "at": at.unix(),
        })
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (SET, 1) => {
                let v1::Set { required, operators, allowed_models, at } =
                    decode_payload(event_type, event_version, payload)?;
                let bad = |reason: &str| EventDecodeError::Payload {
                    event_type: event_type.to_owned(),
                    event_version,
                    reason: reason.to_owned(),
                };
                let required = match (required.as_str(), operators.is_empty()) {
                    ("none", true) => BiometricRequirement::None,
                    ("all", true) => BiometricRequirement::All,
                    ("listed", false) => BiometricRequirement::Listed(operators.into_iter().collect()),
                    _ => return Err(bad("`required` is none, all or listed; only listed names operators")),
                };
                Ok(Self::Set { required, allowed_models: allowed_models.into_iter().collect(), at })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BiometricPolicyError {
    #[error("list at least one operator, or require biometric login of all or none")]
    NoOperatorsListed,
    #[error("at most {max} operators may be listed; require biometric login of all instead")]
    TooManyOperators { max: usize },
    #[error("at most {max} authenticator models may be allowed")]
    TooManyModels { max: usize },
}

impl crate::message::Localized for BiometricPolicyError {
    fn message_ja(&self) -> String {
        match self {
            Self::NoOperatorsListed => {
                "生体認証を必須とするオペレータを1人以上指定するか、全員・なしを選択してください".to_owned()
            }
            Self::TooManyOperators { max } => {
                format!("指定できるオペレータは{max}人までです。全員に必須とする場合は「全員」を選択してください")
            }
            Self::TooManyModels { max } => format!("許可する認証器の機種は{max}件までです"),
        }
    }
}

/// The folded state; `Default` is the policy of a municipality that never set one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BiometricPolicyState {
    required: BiometricRequirement,
    allowed_models: BTreeSet<Aaguid>,
    changed_at: Option<Timestamp>,
}

impl BiometricPolicyState {
    pub fn required(&self) -> &BiometricRequirement {
        &self.required
    }

    /// Whether `operator_id` must log in biometrically (his password login is refused).
    pub fn requires_biometric(&self, operator_id: &OperatorId) -> bool {
        match &self.required {
            BiometricRequirement::None => false,
            BiometricRequirement::All => true,
            BiometricRequirement::Listed(ids) => ids.contains(operator_id),
        }
    }

    /// The models an authenticator may be of; empty: any.
    pub fn allowed_models(&self) -> &BTreeSet<Aaguid> {
        &self.allowed_models
    }

    /// When the policy was last changed; `None`: never set.
    pub fn changed_at(&self) -> Option<Timestamp> {
        self.changed_at
    }
}

#[derive(Debug)]
pub struct BiometricPolicy;

impl Aggregate for BiometricPolicy {
    type State = BiometricPolicyState;
    type Command = BiometricPolicyCommand;
    type Event = BiometricPolicyEvent;
    type Error = BiometricPolicyError;

    const STREAM_TYPE: &'static str = "biometric_policy";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let BiometricPolicyCommand::Set { required, allowed_models, at } = command;
        match &required {
            BiometricRequirement::Listed(ids) if ids.is_empty() => return Err(BiometricPolicyError::NoOperatorsListed),
            BiometricRequirement::Listed(ids) if ids.len() > MAX_LISTED_OPERATORS => {
                return Err(BiometricPolicyError::TooManyOperators { max: MAX_LISTED_OPERATORS });
            }
            _ => {}
        }
        if allowed_models.len() > MAX_ALLOWED_MODELS {
            return Err(BiometricPolicyError::TooManyModels { max: MAX_ALLOWED_MODELS });
        }
        if required == state.required && allowed_models == state.allowed_models {
            return Ok(vec![]);
        }
        Ok(vec![BiometricPolicyEvent::Set { required, allowed_models, at }])
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        let BiometricPolicyEvent::Set { required, allowed_models, at } = event;
        state.required = required.clone();
        state.allowed_models = allowed_models.clone();
        state.changed_at = Some(*at);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use BiometricPolicyCommand as C;
    use BiometricPolicyEvent as E;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_700_000_000 + s)
    }

    fn op(id: &str) -> OperatorId {
        OperatorId::parse(id).unwrap()
    }

    fn vein() -> Aaguid {
        Aaguid::parse("0fb9bcbc-a0d4-4042-bbb0-559bc1631e28").unwrap()
    }

    fn listed(ids: &[&str]) -> BiometricRequirement {
        BiometricRequirement::Listed(ids.iter().map(|id| op(id)).collect())
    }

    #[test]
    fn by_default_nobody_is_required_and_any_model_is_allowed() {
        let state = BiometricPolicyState::default();
        assert!(!state.requires_biometric(&op("OP0501")));
        assert!(state.allowed_models().is_empty());
        assert_eq!(state.changed_at(), None);
    }

    #[test]
    fn require_it_of_listed_operators_and_allow_one_model() {
        let state = given::<BiometricPolicy>([])
            .when(C::Set { required: listed(&["OP0501"]), allowed_models: BTreeSet::from([vein()]), at: t(1) })
            .then([E::Set { required: listed(&["OP0501"]), allowed_models: BTreeSet::from([vein()]), at: t(1) }]);
        assert!(state.requires_biometric(&op("OP0501")));
        assert!(!state.requires_biometric(&op("OP0502")));
        assert_eq!(state.allowed_models(), &BTreeSet::from([vein()]));
    }

    #[test]
    fn require_it_of_all() {
        let state = given::<BiometricPolicy>([])
            .when(C::Set { required: BiometricRequirement::All, allowed_models: BTreeSet::new(), at: t(1) })
            .then([E::Set { required: BiometricRequirement::All, allowed_models: BTreeSet::new(), at: t(1) }]);
        assert!(state.requires_biometric(&op("ANYONE")));
    }

    #[test]
    fn the_same_policy_again_changes_nothing() {
        let set = E::Set { required: BiometricRequirement::All, allowed_models: BTreeSet::new(), at: t(1) };
        given::<BiometricPolicy>([set])
            .when(C::Set { required: BiometricRequirement::All, allowed_models: BTreeSet::new(), at: t(2) })
            .then([]);
    }

    #[test]
    fn lifting_the_requirement_is_an_event_too() {
        let set = E::Set { required: listed(&["OP0501"]), allowed_models: BTreeSet::new(), at: t(1) };
        let state = given::<BiometricPolicy>([set])
            .when(C::Set { required: BiometricRequirement::None, allowed_models: BTreeSet::new(), at: t(2) })
            .then([E::Set { required: BiometricRequirement::None, allowed_models: BTreeSet::new(), at: t(2) }]);
        assert!(!state.requires_biometric(&op("OP0501")));
    }

    #[test]
    fn an_empty_or_too_long_list_is_refused() {
        given::<BiometricPolicy>([])
            .when(C::Set { required: listed(&[]), allowed_models: BTreeSet::new(), at: t(1) })
            .then_err(BiometricPolicyError::NoOperatorsListed);
        let many = (0..=MAX_LISTED_OPERATORS).map(|i| op(&format!("OP{i}"))).collect();
        given::<BiometricPolicy>([])
            .when(C::Set { required: BiometricRequirement::Listed(many), allowed_models: BTreeSet::new(), at: t(1) })
            .then_err(BiometricPolicyError::TooManyOperators { max: MAX_LISTED_OPERATORS });
        let models = (0..=MAX_ALLOWED_MODELS as u8).map(|i| Aaguid::from_bytes([i; 16])).collect();
        given::<BiometricPolicy>([])
            .when(C::Set { required: BiometricRequirement::None, allowed_models: models, at: t(1) })
            .then_err(BiometricPolicyError::TooManyModels { max: MAX_ALLOWED_MODELS });
    }

    #[test]
    fn the_event_has_the_documented_shape_and_refuses_inconsistent_payloads() {
        let event = E::Set { required: listed(&["OP0501"]), allowed_models: BTreeSet::from([vein()]), at: t(1) };
        assert_eq!(
            event.encode(),
            json!({"required": "listed", "operators": ["OP0501"],
                "allowed_models": ["0fb9bcbc-a0d4-4042-bbb0-559bc1631e28"], "at": 1_700_000_001})
        );
        for bad in [
            json!({"required": "all", "operators": ["OP0501"], "allowed_models": [], "at": 1}),
            json!({"required": "listed", "operators": [], "allowed_models": [], "at": 1}),
            json!({"required": "some", "operators": [], "allowed_models": [], "at": 1}),
        ] {
            assert!(matches!(E::decode(SET, 1, &bad), Err(EventDecodeError::Payload { .. })), "{bad}");
        }
    }

    #[test]
    fn errors_have_japanese_messages() {
        for e in [
            BiometricPolicyError::NoOperatorsListed,
            BiometricPolicyError::TooManyOperators { max: 1 },
            BiometricPolicyError::TooManyModels { max: 1 },
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty());
        }
    }
}
