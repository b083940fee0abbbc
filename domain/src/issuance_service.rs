//! `IssuanceService` (証明書等自動交付の提供内容, 手引き II 1): what one municipality offers at the kiosks and automatic
//! issuing machines of the certificate issuance system — the certificates its residents may obtain there, the
//! service hours and the closed periods — as the issuance server (証明発行サーバ) must know it (issue 11, point 3;
//! the feed of business system `01` carries it, `commands::feeds`).
//!
//! Owns the catalogue of certificates with their stable codes ([`Certificate`]), the values of a setting (a time of
//! day `HH:MM`, a day of the year `MM-DD`, a closed period that may wrap the year), its rules (at least one
//! certificate, each once; opening before closing; each closed period once) and the defaults that apply until the
//! municipality sets its own: 住民票の写し and 印鑑登録証明書, 06:30–23:00, closed 12-29 to 01-03 (the source's コンビニ
//! 交付: 年末年始を除く 6:30 から 23:00). Every change is one event, `MunicipalityIssuanceServiceSet`, carrying the
//! whole setting, on the municipality's own `issuance_service` stream (keyed by its code, as its read alert policy:
//! a change does not move the municipality's ETag). Must not know who may change it or how the feed delivers it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::{Aggregate, DomainEvent, EventDecodeError, MunicipalityCode, ParseError, Timestamp};

/// The stream id of a municipality's issuance service: its code.
pub fn stream_key(code: &MunicipalityCode) -> String {
    code.as_str().to_owned()
}

/// A certificate the issuance system can print, by its stable code (never renamed: the issuance server keys on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Certificate {
    /// 住民票の写し.
    Juminhyo,
    /// 住民票記載事項証明書.
    JuminhyoKisai,
    /// 印鑑登録証明書.
    Inkan,
    /// 戸籍証明書 (戸籍謄本・抄本).
    Koseki,
    /// 戸籍の附票の写し.
    KosekiFuhyo,
    /// 所得・課税証明書.
    ShotokuKazei,
}

impl Certificate {
    /// The catalogue, in the order the kiosks usually list them.
    pub const ALL: [Certificate; 6] =
        [Self::Juminhyo, Self::JuminhyoKisai, Self::Inkan, Self::Koseki, Self::KosekiFuhyo, Self::ShotokuKazei];

    pub fn code(self) -> &'static str {
        match self {
            Self::Juminhyo => "juminhyo",
            Self::JuminhyoKisai => "juminhyo_kisai",
            Self::Inkan => "inkan",
            Self::Koseki => "koseki",
            Self::KosekiFuhyo => "koseki_fuhyo",
            Self::ShotokuKazei => "shotoku_kazei",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Juminhyo => "住民票の写し",
            Self::JuminhyoKisai => "住民票記載事項証明書",
            Self::Inkan => "印鑑登録証明書",
            Self::Koseki => "戸籍証明書",
            Self::KosekiFuhyo => "戸籍の附票の写し",
            Self::ShotokuKazei => "所得・課税証明書",
        }
    }

    /// A code of the catalogue, exactly as [`Certificate::code`] writes it.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL.into_iter().find(|c| c.code() == s).ok_or_else(|| ParseError::UnknownValue { value: s.to_owned() })
    }
}

impl fmt::Display for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Certificate {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Certificate> for String {
    fn from(c: Certificate) -> Self {
        c.code().to_owned()
    }
}

/// Reads exactly two half-width digits.
fn two_digits(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

/// A time of day, `HH:MM` (00:00 to 24:00; 24:00 is the end of the day, for a service open until midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeOfDay(u16);

impl TimeOfDay {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (h, m) = s.split_once(':').ok_or(ParseError::InvalidTimeOfDay)?;
        let (h, m) = (two_digits(h), two_digits(m));
        match (h, m) {
            (Some(h @ 0..=23), Some(m @ 0..=59)) | (Some(h @ 24), Some(m @ 0)) => {
                Ok(Self(u16::from(h) * 60 + u16::from(m)))
            }
            _ => Err(ParseError::InvalidTimeOfDay),
        }
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl TryFrom<String> for TimeOfDay {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TimeOfDay> for String {
    fn from(t: TimeOfDay) -> Self {
        t.to_string()
    }
}

/// A day of the year, `MM-DD`, that exists in some year (02-29 included: a closed period that names it applies
/// in leap years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MonthDay {
    month: u8,
    day: u8,
}

impl MonthDay {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (m, d) = s.split_once('-').ok_or(ParseError::InvalidMonthDay)?;
        let (Some(month), Some(day)) = (two_digits(m), two_digits(d)) else { return Err(ParseError::InvalidMonthDay) };
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 => 29,
            _ => return Err(ParseError::InvalidMonthDay),
        };
        if !(1..=days).contains(&day) {
            return Err(ParseError::InvalidMonthDay);
        }
        Ok(Self { month, day })
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }
}

impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

impl TryFrom<String> for MonthDay {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<MonthDay> for String {
    fn from(d: MonthDay) -> Self {
        d.to_string()
    }
}

/// Days on which the service is closed, `from` to `to` both included, every year. `from` after `to` wraps the year:
/// `12-29`..`01-03` is closed from 29 December to 3 January.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedPeriod {
    pub from: MonthDay,
    pub to: MonthDay,
}

/// One municipality's issuance service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuanceServiceValue {
    /// The certificates offered, in the order the municipality lists them; at least one, each once.
    pub certificates: Vec<Certificate>,
    /// Service hours, every day that is not closed: from `opens` until `closes` (the same day; `opens` first).
    pub opens: TimeOfDay,
    pub closes: TimeOfDay,
    /// No service on these days (empty: open every day of the year).
    pub closed_periods: Vec<ClosedPeriod>,
}

impl Default for IssuanceServiceValue {
    /// The source's コンビニ交付: 住民票の写し and 印鑑登録証明書, 06:30–23:00, closed 12-29 to 01-03.
    fn default() -> Self {
        IssuanceServiceValue {
            certificates: vec![Certificate::Juminhyo, Certificate::Inkan],
            opens: TimeOfDay(6 * 60 + 30),
            closes: TimeOfDay(23 * 60),
            closed_periods: vec![ClosedPeriod {
                from: MonthDay { month: 12, day: 29 },
                to: MonthDay { month: 1, day: 3 },
            }],
        }
    }
}

impl IssuanceServiceValue {
    /// The setting as the API and the feed show it: `certificates` (codes), `opens`, `closes`, `closed_periods`
    /// (`[{from, to}]`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Every rule the setting breaks, in the order of its fields (none: it may be set).
    fn violations(&self) -> Vec<IssuanceServiceError> {
        let mut out = vec![];
        if self.certificates.is_empty() {
            out.push(IssuanceServiceError::NoCertificates);
        }
        for (index, certificate) in self.certificates.iter().enumerate() {
            if self.certificates[..index].contains(certificate) {
                out.push(IssuanceServiceError::DuplicateCertificate { index, certificate: *certificate });
            }
        }
        if self.opens >= self.closes {
            out.push(IssuanceServiceError::OpensNotBeforeCloses);
        }
        for (index, period) in self.closed_periods.iter().enumerate() {
            if self.closed_periods[..index].contains(period) {
                out.push(IssuanceServiceError::DuplicateClosedPeriod { index });
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuanceServiceCommand {
    /// Replace the setting; the setting in force again yields no event (the defaults set explicitly for the first
    /// time do: the municipality has then set its service, and the feed tells the issuance server).
    Set { value: IssuanceServiceValue, at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuanceServiceEvent {
    /// `MunicipalityIssuanceServiceSet` v1.
    Set { value: IssuanceServiceValue, at: Timestamp },
}

const SET: &str = "MunicipalityIssuanceServiceSet";

mod v1 {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Set {
        pub certificates: Vec<Certificate>,
        pub opens: TimeOfDay,
        pub closes: TimeOfDay,
        pub closed_periods: Vec<ClosedPeriod>,
        pub at: Timestamp,
    }
}

impl DomainEvent for IssuanceServiceEvent {
    fn event_type(&self) -> &'static str {
        SET
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let Self::Set { value, at } = self;
        let mut payload = value.to_json();
        if let Some(object) = payload.as_object_mut() {
            object.insert("at".to_owned(), json!(at.unix()));
        }
        payload
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        match (event_type, event_version) {
            (SET, 1) => {
                let v1::Set { certificates, opens, closes, closed_periods, at } =
                    decode_payload(event_type, event_version, payload)?;
                Ok(Self::Set { value: IssuanceServiceValue { certificates, opens, closes, closed_periods }, at })
            }
            _ => Err(EventDecodeError::unknown(event_type, event_version)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuanceServiceError {
    #[error("at least one certificate must be offered")]
    NoCertificates,
    /// The certificate at `index` is listed before it, too.
    #[error("certificate {certificate} is given more than once")]
    DuplicateCertificate { index: usize, certificate: Certificate },
    #[error("the service must open before it closes")]
    OpensNotBeforeCloses,
    /// The closed period at `index` is listed before it, too.
    #[error("closed period {index} is given more than once")]
    DuplicateClosedPeriod { index: usize },
    /// More than one of the above, in the order of the fields.
    #[error("{} problems with the issuance service", .0.len())]
    All(Vec<IssuanceServiceError>),
}

impl crate::message::Localized for IssuanceServiceError {
    fn message_ja(&self) -> String {
        match self {
            Self::NoCertificates => "交付する証明書を1つ以上選択してください".to_owned(),
            Self::DuplicateCertificate { certificate, .. } => {
                format!("証明書「{}」が重複して指定されています", certificate.label_ja())
            }
            Self::OpensNotBeforeCloses => "終了時刻は開始時刻より後にしてください".to_owned(),
            Self::DuplicateClosedPeriod { .. } => "休止期間が重複して指定されています".to_owned(),
            Self::All(all) => format!("設定に{}件の誤りがあります", all.len()),
        }
    }
}

/// The folded state; `Default` is a municipality that never set its service (the defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuanceServiceState {
    set: Option<IssuanceServiceValue>,
    changed_at: Option<Timestamp>,
}

impl IssuanceServiceState {
    /// The service in force: the municipality's own setting, else the defaults.
    pub fn current(&self) -> IssuanceServiceValue {
        self.set.clone().unwrap_or_default()
    }

    /// Whether the municipality has set it (else the defaults apply).
    pub fn is_set(&self) -> bool {
        self.set.is_some()
    }

    pub fn changed_at(&self) -> Option<Timestamp> {
        self.changed_at
    }
}

#[derive(Debug)]
pub struct IssuanceService;

impl Aggregate for IssuanceService {
    type State = IssuanceServiceState;
    type Command = IssuanceServiceCommand;
    type Event = IssuanceServiceEvent;
    type Error = IssuanceServiceError;

    const STREAM_TYPE: &'static str = "issuance_service";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let IssuanceServiceCommand::Set { value, at } = command;
        let mut violations = value.violations();
        match violations.len() {
            0 => {}
            1 => return Err(violations.remove(0)),
            _ => return Err(IssuanceServiceError::All(violations)),
        }
        if state.set.as_ref() == Some(&value) {
            return Ok(vec![]);
        }
        Ok(vec![IssuanceServiceEvent::Set { value, at }])
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        let IssuanceServiceEvent::Set { value, at } = event;
        state.set = Some(value.clone());
        state.changed_at = Some(*at);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Localized;
    use crate::testing::given;
    use IssuanceServiceCommand as C;
    use IssuanceServiceEvent as E;
    use proptest::prelude::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(1_700_000_000 + s)
    }

    fn time(s: &str) -> TimeOfDay {
        TimeOfDay::parse(s).unwrap()
    }

    fn day(s: &str) -> MonthDay {
        MonthDay::parse(s).unwrap()
    }

    fn period(from: &str, to: &str) -> ClosedPeriod {
        ClosedPeriod { from: day(from), to: day(to) }
    }

    /// 住民票の写し, 印鑑登録証明書 and 戸籍証明書, 07:00–21:00, closed over the new year and in mid-August.
    fn own() -> IssuanceServiceValue {
        IssuanceServiceValue {
            certificates: vec![Certificate::Juminhyo, Certificate::Inkan, Certificate::Koseki],
            opens: time("07:00"),
            closes: time("21:00"),
            closed_periods: vec![period("12-29", "01-03"), period("08-13", "08-16")],
        }
    }

    #[test]
    fn until_set_the_defaults_apply() {
        let state = IssuanceServiceState::default();
        assert!(!state.is_set());
        assert_eq!(
            state.current().to_json(),
            json!({"certificates": ["juminhyo", "inkan"], "opens": "06:30", "closes": "23:00",
                   "closed_periods": [{"from": "12-29", "to": "01-03"}]})
        );
    }

    #[test]
    fn set_the_municipalitys_own_service() {
        let state = given::<IssuanceService>([])
            .when(C::Set { value: own(), at: t(1) })
            .then([E::Set { value: own(), at: t(1) }]);
        assert!(state.is_set());
        assert_eq!(state.current(), own());
        assert_eq!(state.changed_at(), Some(t(1)));
        assert_eq!(stream_key(&MunicipalityCode::parse("131016").unwrap()), "131016");
    }

    #[test]
    fn the_same_setting_again_changes_nothing() {
        given::<IssuanceService>([E::Set { value: own(), at: t(1) }]).when(C::Set { value: own(), at: t(2) }).then([]);
    }

    #[test]
    fn the_defaults_set_explicitly_the_first_time_are_a_change() {
        let defaults = IssuanceServiceValue::default();
        let state = given::<IssuanceService>([])
            .when(C::Set { value: defaults.clone(), at: t(1) })
            .then([E::Set { value: defaults.clone(), at: t(1) }]);
        assert!(state.is_set());
        // Back to the defaults after an own setting is a change too.
        given::<IssuanceService>([E::Set { value: own(), at: t(1) }])
            .when(C::Set { value: defaults.clone(), at: t(2) })
            .then([E::Set { value: defaults, at: t(2) }]);
    }

    #[test]
    fn a_service_without_certificates_is_refused() {
        let value = IssuanceServiceValue { certificates: vec![], ..own() };
        given::<IssuanceService>([]).when(C::Set { value, at: t(1) }).then_err(IssuanceServiceError::NoCertificates);
    }

    #[test]
    fn a_certificate_listed_twice_is_refused() {
        let value = IssuanceServiceValue {
            certificates: vec![Certificate::Inkan, Certificate::Juminhyo, Certificate::Inkan],
            ..own()
        };
        given::<IssuanceService>([])
            .when(C::Set { value, at: t(1) })
            .then_err(IssuanceServiceError::DuplicateCertificate { index: 2, certificate: Certificate::Inkan });
    }

    #[test]
    fn the_service_must_open_before_it_closes() {
        for (opens, closes) in [("23:00", "06:30"), ("09:00", "09:00"), ("24:00", "24:00")] {
            let value = IssuanceServiceValue { opens: time(opens), closes: time(closes), ..own() };
            given::<IssuanceService>([])
                .when(C::Set { value, at: t(1) })
                .then_err(IssuanceServiceError::OpensNotBeforeCloses);
        }
        // Until midnight is fine.
        let value = IssuanceServiceValue { opens: time("00:00"), closes: time("24:00"), ..own() };
        given::<IssuanceService>([]).when(C::Set { value: value.clone(), at: t(1) }).then([E::Set { value, at: t(1) }]);
    }

    #[test]
    fn a_closed_period_listed_twice_is_refused() {
        let value = IssuanceServiceValue {
            closed_periods: vec![period("12-29", "01-03"), period("08-13", "08-16"), period("12-29", "01-03")],
            ..own()
        };
        given::<IssuanceService>([])
            .when(C::Set { value, at: t(1) })
            .then_err(IssuanceServiceError::DuplicateClosedPeriod { index: 2 });
    }

    #[test]
    fn closed_periods_may_wrap_the_year_or_be_none() {
        for closed_periods in [vec![], vec![period("12-29", "01-03")], vec![period("02-29", "02-29")]] {
            let value = IssuanceServiceValue { closed_periods, ..own() };
            given::<IssuanceService>([])
                .when(C::Set { value: value.clone(), at: t(1) })
                .then([E::Set { value, at: t(1) }]);
        }
    }

    #[test]
    fn every_broken_rule_is_named_at_once() {
        let value = IssuanceServiceValue {
            certificates: vec![],
            opens: time("22:00"),
            closes: time("08:00"),
            closed_periods: vec![period("05-03", "05-05"), period("05-03", "05-05")],
        };
        given::<IssuanceService>([]).when(C::Set { value, at: t(1) }).then_err(IssuanceServiceError::All(vec![
            IssuanceServiceError::NoCertificates,
            IssuanceServiceError::OpensNotBeforeCloses,
            IssuanceServiceError::DuplicateClosedPeriod { index: 1 },
        ]));
    }

    #[test]
    fn the_event_has_the_documented_shape() {
        let event = E::Set { value: own(), at: t(1) };
        let payload = json!({
            "certificates": ["juminhyo", "inkan", "koseki"], "opens": "07:00", "closes": "21:00",
            "closed_periods": [{"from": "12-29", "to": "01-03"}, {"from": "08-13", "to": "08-16"}],
            "at": 1_700_000_001
        });
        assert_eq!(event.encode(), payload);
        assert_eq!(E::decode(SET, 1, &payload), Ok(event));
        assert_eq!(E::decode(SET, 2, &payload), Err(EventDecodeError::unknown(SET, 2)));
        for bad in [
            json!({"certificates": ["juminhyo", "jumin"], "opens": "07:00", "closes": "21:00", "closed_periods": [], "at": 1}),
            json!({"certificates": [], "opens": "7:00", "closes": "21:00", "closed_periods": [], "at": 1}),
            json!({"certificates": [], "opens": "07:00", "closes": "21:00",
                   "closed_periods": [{"from": "02-30", "to": "03-01"}], "at": 1}),
            json!({"certificates": [], "opens": "07:00", "closes": "21:00", "closed_periods": []}),
        ] {
            assert!(matches!(E::decode(SET, 1, &bad), Err(EventDecodeError::Payload { .. })), "{bad}");
        }
    }

    #[test]
    fn errors_speak_japanese() {
        for e in [
            IssuanceServiceError::NoCertificates,
            IssuanceServiceError::DuplicateCertificate { index: 1, certificate: Certificate::Koseki },
            IssuanceServiceError::OpensNotBeforeCloses,
            IssuanceServiceError::DuplicateClosedPeriod { index: 1 },
            IssuanceServiceError::All(vec![IssuanceServiceError::NoCertificates]),
        ] {
            assert!(!e.message_ja().is_empty() && !e.to_string().is_empty(), "{e:?}");
        }
        assert!(
            IssuanceServiceError::DuplicateCertificate { index: 1, certificate: Certificate::Koseki }
                .message_ja()
                .contains("戸籍証明書")
        );
    }

    #[test]
    fn the_catalogue_has_stable_codes_and_japanese_names() {
        let codes: Vec<(&str, &str)> = Certificate::ALL.iter().map(|c| (c.code(), c.label_ja())).collect();
        assert_eq!(
            codes,
            [
                ("juminhyo", "住民票の写し"),
                ("juminhyo_kisai", "住民票記載事項証明書"),
                ("inkan", "印鑑登録証明書"),
                ("koseki", "戸籍証明書"),
                ("koseki_fuhyo", "戸籍の附票の写し"),
                ("shotoku_kazei", "所得・課税証明書"),
            ]
        );
        for c in Certificate::ALL {
            assert_eq!(Certificate::parse(c.code()), Ok(c));
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.code()));
        }
        for bad in ["", "Juminhyo", "juminhyo ", "住民票の写し", "jumin"] {
            assert_eq!(Certificate::parse(bad), Err(ParseError::UnknownValue { value: bad.to_owned() }));
        }
    }

    #[test]
    fn times_of_day_examples() {
        assert_eq!(time("06:30").minutes(), 390);
        assert_eq!(time("00:00").minutes(), 0);
        assert_eq!(time("24:00").minutes(), 1440);
        assert_eq!(time("23:59").to_string(), "23:59");
        for bad in ["", "6:30", "06:3", "06-30", "24:01", "25:00", "06:60", "０６:３０", "06:30 ", "+6:30", "0630"]
        {
            assert_eq!(TimeOfDay::parse(bad), Err(ParseError::InvalidTimeOfDay), "{bad:?}");
        }
        assert!(!ParseError::InvalidTimeOfDay.message_ja().is_empty());
    }

    #[test]
    fn days_of_the_year_examples() {
        assert_eq!((day("12-29").month(), day("12-29").day()), (12, 29));
        assert_eq!(day("02-29").to_string(), "02-29");
        assert!(day("01-03") < day("12-29"));
        for bad in ["", "1-03", "01-3", "00-10", "13-01", "02-30", "04-31", "06-00", "12/29", "12-29-", "１２-２９"]
        {
            assert_eq!(MonthDay::parse(bad), Err(ParseError::InvalidMonthDay), "{bad:?}");
        }
        assert!(!ParseError::InvalidMonthDay.message_ja().is_empty());
    }

    proptest! {
        #[test]
        fn every_time_of_day_round_trips(minutes in 0u16..=1440) {
            let text = format!("{:02}:{:02}", minutes / 60, minutes % 60);
            let parsed = TimeOfDay::parse(&text).unwrap();
            prop_assert_eq!(parsed.minutes(), minutes);
            prop_assert_eq!(parsed.to_string(), text.clone());
            prop_assert_eq!(serde_json::from_value::<TimeOfDay>(json!(text)).unwrap(), parsed);
        }

        #[test]
        fn times_out_of_range_are_refused(h in 0u8..100, m in 0u8..100) {
            let valid = (h < 24 && m < 60) || (h == 24 && m == 0);
            prop_assume!(!valid);
            prop_assert_eq!(TimeOfDay::parse(&format!("{h:02}:{m:02}")), Err(ParseError::InvalidTimeOfDay));
        }

        #[test]
        fn a_day_parses_exactly_when_it_exists_in_a_leap_year(m in 0u8..100, d in 0u8..100) {
            let exists = (1..=12).contains(&m) && d >= 1 && d <= [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][usize::from(m.clamp(1, 12)) - 1];
            let text = format!("{m:02}-{d:02}");
            match MonthDay::parse(&text) {
                Ok(parsed) => {
                    prop_assert!(exists);
                    prop_assert_eq!(parsed.to_string(), text.clone());
                    prop_assert_eq!(serde_json::from_value::<MonthDay>(json!(text)).unwrap(), parsed);
                }
                Err(e) => {
                    prop_assert!(!exists);
                    prop_assert_eq!(e, ParseError::InvalidMonthDay);
                }
            }
        }

        #[test]
        fn anything_but_a_catalogue_code_is_refused(s in "\\PC{0,20}") {
            prop_assume!(!Certificate::ALL.iter().any(|c| c.code() == s));
            prop_assert_eq!(Certificate::parse(&s), Err(ParseError::UnknownValue { value: s.clone() }));
        }
    }
}
