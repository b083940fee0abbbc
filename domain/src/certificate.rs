//! Certificates of the internal CA (手引き I 2.1, 2.2): the `Certificate` aggregate, one stream per serial — issued
//! once, revoked at most once — and the `CertificateAuthority` aggregate, one stream for the installation, created
//! once with its root and issuing certificates.
//!
//! Owns what is recorded of a certificate: its serial, kind, holder, subject, validity and the certificate itself
//! (DER; certificates are public), and why and when it was revoked. Holds no private key: the CA's keys are sealed
//! outside the event log (a companion of `CaCreated`), a holder's key never reaches the server.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::decode_payload;
use crate::operator::OperatorId;
use crate::{Aggregate, BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, ParseError, Timestamp};

/// A certificate serial as lower-case hex: 1–20 bytes (RFC 5280), positive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertificateSerial(String);

impl CertificateSerial {
    /// Upper or lower case hex of 1–20 bytes (an even number of digits); kept in lower case.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseError::Empty);
        }
        if let Some(ch) = s.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(ParseError::InvalidCharacter { ch });
        }
        if s.len() > 40 {
            return Err(ParseError::TooLong { max: 40 });
        }
        if !s.len().is_multiple_of(2) {
            return Err(ParseError::WrongLength { expected: s.len() + 1 });
        }
        Ok(Self(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CertificateSerial {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<CertificateSerial> for String {
    fn from(s: CertificateSerial) -> String {
        s.0
    }
}

impl std::fmt::Display for CertificateSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Certificates in event payloads: standard base64 with padding.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    pub(super) fn encode(der: &[u8]) -> String {
        STANDARD.encode(der)
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        STANDARD.decode(text).ok()
    }
}

/// The stream id of a certificate: its serial.
pub fn stream_key(serial: &CertificateSerial) -> String {
    serial.as_str().to_owned()
}

/// Who holds a certificate, which also says its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Holder {
    /// オペレータ証明書: one operator (`municipality` `None`: the system administrator).
    Operator { municipality: Option<MunicipalityCode>, operator_id: OperatorId },
    /// 業務サーバ証明書: a business system's server.
    BusinessServer { business_id: BusinessId },
    /// SSL通信用証明書: one of cardap's own TLS endpoints, by name.
    Tls { endpoint: String },
}

impl Holder {
    /// `operator`, `business-server` or `tls`.
    pub fn kind(&self) -> &'static str {
        match self {
            Holder::Operator { .. } => "operator",
            Holder::BusinessServer { .. } => "business-server",
            Holder::Tls { .. } => "tls",
        }
    }
}

/// Why a certificate was revoked: the RFC 5280 reason codes cardap uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    /// The holder left: an operator revoked, a business system retired.
    AffiliationChanged,
    /// Replaced by a reissued certificate.
    Superseded,
    CessationOfOperation,
    /// A permission the certificate names was withdrawn.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 6] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 name (`keyCompromise` …), as `openssl crl -text` prints it in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| ParseError::UnknownValue { value: s.to_owned() })
    }
}

/// A certificate as issued: everything but its revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub serial: CertificateSerial,
    pub holder: Holder,
    /// The subject as written in the certificate (`CN=…, O=…`), for lists and the audit trail.
    pub subject: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// The certificate, DER (public).
    pub der: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateCommand {
    Issue(IssuedCertificate),
    Revoke { reason: RevocationReason, at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateEvent {
    Issued(IssuedCertificate),
    Revoked { reason: RevocationReason, at: Timestamp },
}

const ISSUED: &str = "CertificateIssued";
const REVOKED: &str = "CertificateRevoked";

mod v1 {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(super) struct Issued {
        pub serial: CertificateSerial,
        pub holder: Holder,
        pub subject: String,
        pub not_before: Timestamp,
        pub not_after: Timestamp,
        /// Base64 (standard, padded).
        pub der: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Revoked {
        pub reason: RevocationReason,
        pub at: Timestamp,
    }
}

impl DomainEvent for CertificateEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Issued(_) => ISSUED,
            Self::Revoked { .. } => REVOKED,
        }
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        match self {
            Self::Issued(c) => json!({
                "serial": c.serial.as_str(),
                "holder": c.holder,
                "subject": c.subject,
                "not_before": c.not_before,
                "not_after": c.not_after,
                "der": b64::encode(&c.der),
            }),
            Self::Revoked { reason, at } => json!({ "reason": reason, "at": at }),
        }
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        Ok(match (event_type, event_version) {
            (ISSUED, 1) => {
                let v: v1::Issued = decode_payload(event_type, event_version, payload)?;
                let der = b64::decode(&v.der).ok_or_else(|| EventDecodeError::Payload {
                    event_type: event_type.to_owned(),
                    event_version,
                    reason: "der is not base64".to_owned(),
                })?;
                Self::Issued(IssuedCertificate {
                    serial: v.serial,
                    holder: v.holder,
                    subject: v.subject,
                    not_before: v.not_before,
                    not_after: v.not_after,
                    der,
                })
            }
            (REVOKED, 1) => {
                let v: v1::Revoked = decode_payload(event_type, event_version, payload)?;
                Self::Revoked { reason: v.reason, at: v.at }
            }
            _ => return Err(EventDecodeError::unknown(event_type, event_version)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("a certificate with this serial was issued already (serials are never reused)")]
    AlreadyIssued,
    #[error("no certificate with this serial was issued")]
    Unknown,
    #[error("the certificate has been revoked already")]
    AlreadyRevoked,
}

impl crate::message::Localized for CertificateError {
    fn message_ja(&self) -> String {
        match self {
            Self::AlreadyIssued => "このシリアル番号の証明書は発行済みです",
            Self::Unknown => "このシリアル番号の証明書は発行されていません",
            Self::AlreadyRevoked => "この証明書は失効済みです",
        }
        .to_owned()
    }
}

/// The folded state; `Default` is "not issued".
#[derive(Debug, Clone, Default)]
pub struct CertificateState {
    issued: Option<IssuedCertificate>,
    revoked: Option<(RevocationReason, Timestamp)>,
}

impl CertificateState {
    pub fn issued(&self) -> Option<&IssuedCertificate> {
        self.issued.as_ref()
    }

    pub fn revoked(&self) -> Option<(RevocationReason, Timestamp)> {
        self.revoked
    }
}

#[derive(Debug)]
pub struct Certificate;

impl Aggregate for Certificate {
    type State = CertificateState;
    type Command = CertificateCommand;
    type Event = CertificateEvent;
    type Error = CertificateError;

    const STREAM_TYPE: &'static str = "certificate";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        match (command, &state.issued) {
            (CertificateCommand::Issue(c), None) => Ok(vec![CertificateEvent::Issued(c)]),
            (CertificateCommand::Issue(_), Some(_)) => Err(CertificateError::AlreadyIssued),
            (CertificateCommand::Revoke { .. }, None) => Err(CertificateError::Unknown),
            (CertificateCommand::Revoke { .. }, Some(_)) if state.revoked.is_some() => {
                Err(CertificateError::AlreadyRevoked)
            }
            (CertificateCommand::Revoke { reason, at }, Some(_)) => Ok(vec![CertificateEvent::Revoked { reason, at }]),
        }
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        match event {
            CertificateEvent::Issued(c) => state.issued = Some(c.clone()),
            CertificateEvent::Revoked { reason, at } => state.revoked = Some((*reason, *at)),
        }
        state
    }
}

/// The one stream of the installation's CA.
pub const AUTHORITY_STREAM_KEY: &str = "cardap";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityCommand {
    /// Records a new CA: the root certificate and the issuing CA certificate under it (DER).
    Create { root_der: Vec<u8>, issuing_der: Vec<u8>, at: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityEvent {
    Created { root_der: Vec<u8>, issuing_der: Vec<u8>, at: Timestamp },
}

const CA_CREATED: &str = "CaCreated";

#[derive(Serialize, Deserialize)]
struct CaCreatedV1 {
    root: String,
    issuing: String,
    at: Timestamp,
}

impl DomainEvent for AuthorityEvent {
    fn event_type(&self) -> &'static str {
        CA_CREATED
    }

    fn event_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Value {
        let Self::Created { root_der, issuing_der, at } = self;
        json!({ "root": b64::encode(root_der), "issuing": b64::encode(issuing_der), "at": at })
    }

    fn decode(event_type: &str, event_version: u32, payload: &Value) -> Result<Self, EventDecodeError> {
        if (event_type, event_version) != (CA_CREATED, 1) {
            return Err(EventDecodeError::unknown(event_type, event_version));
        }
        let v: CaCreatedV1 = decode_payload(event_type, event_version, payload)?;
        let bad = || EventDecodeError::Payload {
            event_type: event_type.to_owned(),
            event_version,
            reason: "a certificate is not base64".to_owned(),
        };
        Ok(Self::Created {
            root_der: b64::decode(&v.root).ok_or_else(bad)?,
            issuing_der: b64::decode(&v.issuing).ok_or_else(bad)?,
            at: v.at,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("the CA exists already")]
    AlreadyCreated,
}

/// The CA's certificates once created.
#[derive(Debug, Clone, Default)]
pub struct AuthorityState {
    pub created: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug)]
pub struct CertificateAuthority;

impl Aggregate for CertificateAuthority {
    type State = AuthorityState;
    type Command = AuthorityCommand;
    type Event = AuthorityEvent;
    type Error = AuthorityError;

    const STREAM_TYPE: &'static str = "certificate_authority";

    fn decide(state: &Self::State, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error> {
        let AuthorityCommand::Create { root_der, issuing_der, at } = command;
        if state.created.is_some() {
            return Err(AuthorityError::AlreadyCreated);
        }
        Ok(vec![AuthorityEvent::Created { root_der, issuing_der, at }])
    }

    fn evolve(mut state: Self::State, event: &Self::Event) -> Self::State {
        let AuthorityEvent::Created { root_der, issuing_der, .. } = event;
        state.created = Some((root_der.clone(), issuing_der.clone()));
        state
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testing::given;

    fn issued(serial: &str) -> IssuedCertificate {
        IssuedCertificate {
            serial: CertificateSerial::parse(serial).unwrap(),
            holder: Holder::BusinessServer { business_id: BusinessId::parse("05").unwrap() },
            subject: "CN=portal.example.jp".to_owned(),
            not_before: Timestamp::from_unix(1_700_000_000),
            not_after: Timestamp::from_unix(1_734_000_000),
            der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        }
    }

    const AT: Timestamp = Timestamp::from_unix(1_700_000_100);

    #[test]
    fn a_new_serial_is_issued() {
        let state = given::<Certificate>([])
            .when(CertificateCommand::Issue(issued("4a01")))
            .then([CertificateEvent::Issued(issued("4a01"))]);
        assert!(state.revoked().is_none());
    }

    #[test]
    fn a_serial_is_never_issued_twice() {
        given::<Certificate>([CertificateEvent::Issued(issued("4a01"))])
            .when(CertificateCommand::Issue(issued("4a01")))
            .then_err(CertificateError::AlreadyIssued);
    }

    #[test]
    fn an_issued_certificate_is_revoked_with_its_reason() {
        let state = given::<Certificate>([CertificateEvent::Issued(issued("4a01"))])
            .when(CertificateCommand::Revoke { reason: RevocationReason::KeyCompromise, at: AT })
            .then([CertificateEvent::Revoked { reason: RevocationReason::KeyCompromise, at: AT }]);
        assert_eq!(state.revoked(), Some((RevocationReason::KeyCompromise, AT)));
    }

    #[test]
    fn a_revoked_certificate_is_not_revoked_again() {
        given::<Certificate>([
            CertificateEvent::Issued(issued("4a01")),
            CertificateEvent::Revoked { reason: RevocationReason::Superseded, at: AT },
        ])
        .when(CertificateCommand::Revoke { reason: RevocationReason::KeyCompromise, at: AT })
        .then_err(CertificateError::AlreadyRevoked);
    }

    #[test]
    fn an_unknown_serial_cannot_be_revoked() {
        given::<Certificate>([])
            .when(CertificateCommand::Revoke { reason: RevocationReason::Unspecified, at: AT })
            .then_err(CertificateError::Unknown);
    }

    #[test]
    fn the_ca_is_created_once() {
        let create = || AuthorityCommand::Create { root_der: vec![1], issuing_der: vec![2], at: AT };
        let state = given::<CertificateAuthority>([]).when(create()).then([AuthorityEvent::Created {
            root_der: vec![1],
            issuing_der: vec![2],
            at: AT,
        }]);
        assert_eq!(state.created, Some((vec![1], vec![2])));
        given::<CertificateAuthority>([AuthorityEvent::Created { root_der: vec![1], issuing_der: vec![2], at: AT }])
            .when(create())
            .then_err(AuthorityError::AlreadyCreated);
    }

    #[test]
    fn serials_parse_as_hex_of_at_most_20_bytes() {
        assert_eq!(CertificateSerial::parse("4A0B").unwrap().as_str(), "4a0b");
        assert!(CertificateSerial::parse("").is_err());
        assert!(CertificateSerial::parse("4a0").is_err());
        assert!(CertificateSerial::parse("zz").is_err());
        assert!(CertificateSerial::parse(&"ab".repeat(21)).is_err());
    }

    #[test]
    fn reasons_parse_by_their_rfc_5280_names() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::parse(r.as_str()), Ok(r));
            assert_eq!(serde_json::to_value(r).unwrap(), json!(r.as_str()));
        }
        assert!(RevocationReason::parse("removeFromCRL").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_even_length_hex_serial_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..=20)) {
            let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
            let serial = CertificateSerial::parse(&hex).unwrap();
            proptest::prop_assert_eq!(serial.as_str(), hex.to_ascii_lowercase());
        }
    }
}
