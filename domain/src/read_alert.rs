//! `ReadAlertPolicy` (大量閲覧の警告): one municipality's threshold for bulk reads of its residents' personal data —
//! an alert is raised when one operator reads more distinct residents than this within an hour (issue 12, point
//! 4). The counting, the window and the alert itself are `commands::read_access`'s; this owns the setting and its
//! bounds. A municipality without a stream has no threshold (no alert). Every change is one event,
//! `MunicipalityReadAlertSet`, carrying the whole setting, so the auditors see who set what when.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, Timestamp};

/// The stream id of a municipality's read alert policy: its code.
pub fn stream_key(code: &MunicipalityCode) -> String {
    code.as_str().to_owned()
}

/// The largest threshold that can be set (more residents an hour than any counter reads).
pub const MAX_RESIDENTS_PER_HOUR: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAlertCommand {
    /// Replace the threshold (`None`: no alert); the same value again yields no event.
    Set { residents_per_hour: Option<u32>, at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadAlertEvent {
    /// `MunicipalityReadAlertSet` v1.
    Set { residents_per_hour: Option<u32>, at: Timestamp },
}

const SET: &str = "MunicipalityReadAlertSet";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Set {
        pub residents_per_hour: Option<u32>,
        pub at: Timestamp,
    }
}

impl DomainEvent for ReadAlertEvent {
    fn event_type(&self) -> &'static str {
        SET
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let Self::Set { residents_per_hour, at } = self;
        json!({ "residents_per_hour": residents_per_hour, "at": at.unix() })
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (SET, 1) => {
                let v1::Set { residents_per_hour, at } = decode_payload(event_type, event_version, payload)?;
                Ok(Self::Set { residents_per_hour, at })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadAlertError {
    /// 0 would alert on every read; a threshold is at least 1 (no alert: no threshold).
    #[error("the threshold is between 1 and {max} residents an hour, or none")]
    OutOfRange { max: u32 },
}

impl crate::message::Localized for ReadAlertError {
    fn message_ja(&self) -> String {
        match self {
            Self::OutOfRange { max } => {
                format!("しきい値は1時間あたり1〜{max}人で指定してください（警告しない場合は null）")
            }
        }
    }
}

/// The folded state; `Default` is a municipality that never set a threshold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadAlertState {
    residents_per_hour: Option<u32>,
    changed_at: Option<Timestamp>,
}

impl ReadAlertState {
    /// More distinct residents than this read by one operator within an hour raise an alert; `None`: never.
    pub fn residents_per_hour(&self) -> Option<u32> {
        self.residents_per_hour
    }

    pub fn changed_at(&self) -> Option<Timestamp> {
        self.changed_at
    }
}

#[derive(Debug)]
pub struct ReadAlertPolicy;

impl Aggregate for ReadAlertPolicy {
    type State = ReadAlertState;
    type Command = ReadAlertCommand;
    type Event = ReadAlertEvent;
    type Error = ReadAlertError;

    const STREAM_TYPE: &'static str = "read_alert_policy";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let ReadAlertCommand::Set { residents_per_hour, at } = command;
        if residents_per_hour.is_some_and(|n| n == 0 || n > MAX_RESIDENTS_PER_HOUR) {
            return Err(ReadAlertError::OutOfRange { max: MAX_RESIDENTS_PER_HOUR });
        }
        if residents_per_hour == state.residents_per_hour {
            return Ok(vec![]);
        }
        Ok(vec![ReadAlertEvent::Set { residents_per_hour, at }])
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        let ReadAlertEvent::Set { residents_per_hour, at } = event;
        state.residents_per_hour = *residents_per_hour;
        state.changed_at = Some(*at);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use ReadAlertCommand as C;
    use ReadAlertEvent as E;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_700_000_000 + s)
    }

    #[test]
    fn by_default_there_is_no_threshold() {
        assert_eq!(ReadAlertState::default().residents_per_hour(), None);
    }

    #[test]
    fn set_a_threshold_then_lift_it() {
        let state = given::<ReadAlertPolicy>([])
            .when(C::Set { residents_per_hour: Some(3), at: t(1) })
            .then([E::Set { residents_per_hour: Some(3), at: t(1) }]);
        assert_eq!(state.residents_per_hour(), Some(3));
        let state = given::<ReadAlertPolicy>([E::Set { residents_per_hour: Some(3), at: t(1) }])
            .when(C::Set { residents_per_hour: None, at: t(2) })
            .then([E::Set { residents_per_hour: None, at: t(2) }]);
        assert_eq!(state.residents_per_hour(), None);
    }

    #[test]
    fn the_same_threshold_again_changes_nothing() {
        given::<ReadAlertPolicy>([E::Set { residents_per_hour: Some(3), at: t(1) }])
            .when(C::Set { residents_per_hour: Some(3), at: t(2) })
            .then([]);
    }

    #[test]
    fn zero_or_too_large_is_refused() {
        for n in [0, MAX_RESIDENTS_PER_HOUR + 1] {
            given::<ReadAlertPolicy>([])
                .when(C::Set { residents_per_hour: Some(n), at: t(1) })
                .then_err(ReadAlertError::OutOfRange { max: MAX_RESIDENTS_PER_HOUR });
        }
        assert!(!ReadAlertError::OutOfRange { max: 1 }.message_ja().is_empty());
    }

    #[test]
    fn the_event_has_the_documented_shape() {
        let event = E::Set { residents_per_hour: Some(50), at: t(1) };
        assert_eq!(event.encode(), json!({"residents_per_hour": 50, "at": 1_700_000_001}));
        assert_eq!(E::decode(SET, 1, &event.encode()).unwrap(), event);
        let off = E::Set { residents_per_hour: None, at: t(1) };
        assert_eq!(E::decode(SET, 1, &off.encode()).unwrap(), off);
    }
}
