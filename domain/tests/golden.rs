//! Stored events must stay readable forever: each `golden/<EventType>_v<N>.json` still decodes, and a current
//! version re-encodes to the same JSON (an older one is upcast to the current version). A new event or version
//! gets a new golden file; an existing one is never edited. Another stored form of the same version (e.g. with its
//! personal data erased) is `golden/<EventType>_v<N>.<variant>.json`. `golden_residents.rs` checks the residents'
//! events against their expected values.

use std::path::{Path, PathBuf};

use cardap_domain::biometric_policy::{BiometricPolicyEvent, BiometricRequirement};
use cardap_domain::business_system::{BusinessSystemEvent, BusinessSystemName, BusinessSystemProfile};
use cardap_domain::card::{CardEvent, StandardIdEvent};
use cardap_domain::certificate::{
    AuthorityEvent, CertificateEvent, CertificateSerial, Holder, IssuedCertificate, RevocationReason,
};
use cardap_domain::contact::Text100;
use cardap_domain::feed_fields::{FeedField, FeedFields};
use cardap_domain::issuance_service::{
    Certificate, ClosedPeriod, IssuanceServiceEvent, IssuanceServiceValue, MonthDay, TimeOfDay,
};
use cardap_domain::library_link::{LibraryId, LibraryLinkEvent};
use cardap_domain::local_settings::LocalSettingsEvent;
use cardap_domain::login_client::{LoginClient, LoginKeysEvent, RedirectUri, SigningKey};
use cardap_domain::municipality::{DisplayOrder, MunicipalityEvent, MunicipalityKind, MunicipalityName};
use cardap_domain::operator::{
    Aaguid, AuthenticatorLabel, ClaimEvent, CosePublicKey, CredentialId, InternalId, OperatorEvent, OperatorId,
    OperatorName, OperatorProfile, Role,
};
use cardap_domain::read_alert::ReadAlertEvent;
use cardap_domain::registry::RegistryEvent;
use cardap_domain::resident::{Erasable, ResidentEvent};
use cardap_domain::{BusinessId, DomainEvent, EventDecodeError, MunicipalityCode, OperatorKey, Timestamp};
use serde_json::{Value, json};
use uuid::Uuid;

/// Released versions that are no longer written but must still decode (upcast on read).
const OLDER_VERSIONS: [(&str, u32); 5] = [
    ("OperatorRegistered", 1),
    ("OperatorRegistered", 2),
    ("OperatorProfileUpdated", 1),
    ("OperatorRevoked", 1),
    ("CardApInstalled", 1),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden_path(event_type: &str, event_version: u32) -> PathBuf {
    golden_dir().join(format!("{event_type}_v{event_version}.json"))
}

fn read_golden(event_type: &str, event_version: u32) -> Value {
    let path = golden_path(event_type, event_version);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes with `E`; `None` when the event belongs to another enum. A current version must re-encode to the
/// same JSON; an older one must come back as a newer version of the same event type, which itself round-trips.
fn round_trip<E: DomainEvent + PartialEq>(event_type: &str, event_version: u32, payload: &Value) -> Option<()> {
    match E::decode(event_type, event_version, payload) {
        Ok(event) => {
            assert_eq!(event.event_type(), event_type);
            let encoded = event.encode();
            if event.event_version() == event_version {
                assert_eq!(encoded, *payload, "{event_type} v{event_version}");
            } else {
                assert!(event.event_version() > event_version, "{event_type} v{event_version} decodes as older");
                assert!(OLDER_VERSIONS.contains(&(event_type, event_version)), "{event_type} v{event_version}");
                let again = E::decode(event_type, event.event_version(), &encoded);
                assert_eq!(again, Ok(event), "{event_type} v{event_version} upcast does not round-trip");
            }
            Some(())
        }
        Err(EventDecodeError::Unknown { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_golden_file_decodes_and_re_encodes_unchanged() {
    let mut checked = 0;
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_name().unwrap().to_str().unwrap().strip_suffix(".json").unwrap();
        // `<EventType>_v<N>` or `<EventType>_v<N>.<variant>`.
        let name = stem.split_once('.').map_or(stem, |(name, _variant)| name);
        let (event_type, version) = name.rsplit_once("_v").unwrap();
        let version: u32 = version.parse().unwrap();
        let payload: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

        round_trip::<MunicipalityEvent>(event_type, version, &payload)
            .or_else(|| round_trip::<OperatorEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<BusinessSystemEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<LocalSettingsEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<ResidentEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<CardEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<StandardIdEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<ClaimEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<RegistryEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<CertificateEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<AuthorityEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<LoginKeysEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<BiometricPolicyEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<ReadAlertEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<LibraryLinkEvent>(event_type, version, &payload))
            .or_else(|| round_trip::<IssuanceServiceEvent>(event_type, version, &payload))
            .unwrap_or_else(|| panic!("{stem}: no event enum knows this type and version"));
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn operator_registered_v1_is_upcast_to_v3_with_a_name_only_profile() {
    let event = OperatorEvent::decode("OperatorRegistered", 1, &read_golden("OperatorRegistered", 1)).unwrap();
    assert_eq!(
        event,
        OperatorEvent::Registered {
            key: OperatorKey::from_uuid(Uuid::from_u128(0x0192_5c4e_6a80_7000_8000_0000_0000_0001)),
            municipality: None,
            operator_id: OperatorId::parse("admin").unwrap(),
            registration: 0,
            profile: Erasable::Known(OperatorProfile::named(OperatorName::parse("システム管理者").unwrap())),
            roles: vec![Role::SystemAdmin],
            business_systems: vec![],
        }
    );
    assert_eq!(event.event_version(), 3);
    assert_eq!(event.encode()["personal"]["department"], json!(null));
}

#[test]
fn a_municipalitys_issuance_service_reads_back_as_written() {
    let payload = read_golden("MunicipalityIssuanceServiceSet", 1);
    let event = IssuanceServiceEvent::decode("MunicipalityIssuanceServiceSet", 1, &payload).unwrap();
    let day = |s: &str| MonthDay::parse(s).unwrap();
    assert_eq!(
        event,
        IssuanceServiceEvent::Set {
            value: IssuanceServiceValue {
                certificates: vec![Certificate::Juminhyo, Certificate::Inkan, Certificate::Koseki],
                opens: TimeOfDay::parse("07:00").unwrap(),
                closes: TimeOfDay::parse("21:00").unwrap(),
                closed_periods: vec![
                    ClosedPeriod { from: day("12-29"), to: day("01-03") },
                    ClosedPeriod { from: day("08-13"), to: day("08-16") },
                ],
            },
            at: Timestamp::from_unix(1_700_000_000),
        }
    );
}

#[test]
fn every_event_type_and_version_has_a_golden_file() {
    let code = MunicipalityCode::parse("131016").unwrap();
    let name = MunicipalityName::parse("千代田区").unwrap();
    let order = DisplayOrder::parse(1).unwrap();
    // Add every new variant here (the residents' events: in `golden_residents.rs`).
    let municipality = [
        MunicipalityEvent::Registered {
            code: code.clone(),
            name: name.clone(),
            kind: MunicipalityKind::Municipality,
            display_order: order,
        },
        MunicipalityEvent::Renamed { name },
        MunicipalityEvent::DisplayOrderChanged { display_order: order },
        MunicipalityEvent::Abolished,
    ];
    let at = Timestamp::from_unix(1_700_000_000);
    let operator = [
        OperatorEvent::Registered {
            key: OperatorKey::from_uuid(Uuid::nil()),
            municipality: None,
            operator_id: OperatorId::parse("admin").unwrap(),
            registration: 1,
            profile: Erasable::Known(OperatorProfile::named(OperatorName::parse("システム管理者").unwrap())),
            roles: vec![Role::SystemAdmin],
            business_systems: vec![],
        },
        OperatorEvent::ProfileUpdated {
            registration: 1,
            profile: Erasable::Known(OperatorProfile::named(OperatorName::parse("ICS").unwrap())),
        },
        OperatorEvent::RolesChanged { roles: vec![Role::Clerk] },
        OperatorEvent::BusinessSystemsChanged { business_systems: vec![BusinessId::LIBRARY] },
        OperatorEvent::PasswordChanged { at, by_administrator: false },
        OperatorEvent::Revoked { at, registration: 1 },
        OperatorEvent::LoginFailed { at, failures_in_row: 1 },
        OperatorEvent::LoggedIn { at },
        OperatorEvent::Locked { at, until: None },
        OperatorEvent::Unlocked,
        OperatorEvent::InternalIdAssigned {
            business_id: BusinessId::LIBRARY,
            internal_id: InternalId::parse("1000000010").unwrap(),
            role: Some(Text100::parse("窓口交付").unwrap()),
        },
        OperatorEvent::InternalIdRemoved { business_id: BusinessId::LIBRARY },
        OperatorEvent::AuthenticatorRegistered {
            credential_id: CredentialId::from_bytes(vec![1; 16]).unwrap(),
            public_key: CosePublicKey::from_bytes(vec![0xa5]).unwrap(),
            aaguid: Aaguid::UNKNOWN,
            sign_count: 0,
            backup_eligible: false,
            label: AuthenticatorLabel::parse("指静脈").unwrap(),
            at,
        },
        OperatorEvent::AuthenticatorRemoved { credential_id: CredentialId::from_bytes(vec![1; 16]).unwrap(), at },
        OperatorEvent::AuthenticatorUsed {
            at,
            credential_id: CredentialId::from_bytes(vec![1; 16]).unwrap(),
            sign_count: 2,
        },
        OperatorEvent::SignCountRegressed {
            at,
            credential_id: CredentialId::from_bytes(vec![1; 16]).unwrap(),
            sign_count: 1,
            last_sign_count: 2,
        },
    ];
    let biometric_policy =
        [BiometricPolicyEvent::Set { required: BiometricRequirement::All, allowed_models: Default::default(), at }];
    let read_alert = [ReadAlertEvent::Set { residents_per_hour: Some(50), at }];
    let issuance_service = [IssuanceServiceEvent::Set { value: IssuanceServiceValue::default(), at }];
    let standard_id = cardap_domain::card::StandardId::new(&code, 1234567890);
    let library_link = [
        LibraryLinkEvent::Linked {
            business_id: BusinessId::LIBRARY,
            standard_id: standard_id.clone(),
            library_id: LibraryId::parse("0001234").unwrap(),
        },
        LibraryLinkEvent::Unlinked { business_id: BusinessId::LIBRARY, standard_id },
    ];
    let profile = BusinessSystemProfile::named(BusinessSystemName::parse("施設予約").unwrap());
    let business_system = [
        BusinessSystemEvent::Registered { id: BusinessId::parse("10").unwrap(), profile: profile.clone() },
        BusinessSystemEvent::Updated { profile },
        BusinessSystemEvent::Retired,
        BusinessSystemEvent::MunicipalityPermitted { municipality: code.clone() },
        BusinessSystemEvent::MunicipalityWithdrawn { municipality: code },
        BusinessSystemEvent::LoginConfigured {
            client: LoginClient::new(vec![RedirectUri::parse("https://b10.example.jp/oidc/callback").unwrap()])
                .unwrap(),
        },
        BusinessSystemEvent::LoginSecretIssued { at: Timestamp::from_unix(1_700_000_000) },
        BusinessSystemEvent::FeedFieldsSet {
            fields: FeedFields::new([FeedField::KanaName, FeedField::KanjiName, FeedField::StandardId]),
        },
        BusinessSystemEvent::WebhookSet {
            url: cardap_domain::webhook::WebhookUrl::parse("https://b10.example.jp/cardap/feed").unwrap(),
        },
        BusinessSystemEvent::WebhookRemoved,
        BusinessSystemEvent::WebhookSecretIssued { at: Timestamp::from_unix(1_700_000_000) },
    ];
    let operator_key = OperatorKey::from_uuid(Uuid::nil());
    let claim = [
        ClaimEvent::Claimed {
            municipality: MunicipalityCode::parse("131016").unwrap(),
            business_id: BusinessId::CERTIFICATE_ISSUANCE,
            internal_id: InternalId::parse("1000000010").unwrap(),
            operator: operator_key,
            operator_id: OperatorId::parse("OP0501").unwrap(),
        },
        ClaimEvent::Released { operator: operator_key },
    ];
    let certificate = [
        CertificateEvent::Issued(IssuedCertificate {
            serial: CertificateSerial::parse("4a01").unwrap(),
            holder: Holder::Tls { endpoint: "api".to_owned() },
            subject: "CN=cardap.example.jp".to_owned(),
            not_before: at,
            not_after: at,
            der: vec![0x30, 0x00],
        }),
        CertificateEvent::Revoked { reason: RevocationReason::Superseded, at },
    ];
    let authority = [AuthorityEvent::Created { root_der: vec![0x30, 0x00], issuing_der: vec![0x30, 0x00], at }];
    let login_keys = [LoginKeysEvent::SigningKeyCreated(SigningKey {
        kid: "k1".to_owned(),
        x: "x".to_owned(),
        y: "y".to_owned(),
        at,
    })];
    let kinds = municipality
        .iter()
        .map(|e| (e.event_type(), e.event_version()))
        .chain(operator.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(claim.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(business_system.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(certificate.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(authority.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(login_keys.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(biometric_policy.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(read_alert.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(issuance_service.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(library_link.iter().map(|e| (e.event_type(), e.event_version())))
        .chain(OLDER_VERSIONS);
    for (event_type, version) in kinds {
        let path = golden_path(event_type, version);
        assert!(path.exists(), "missing golden file {}", path.display());
    }
}
