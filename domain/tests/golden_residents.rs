//! The golden files of the resident registration events (local settings, residents, cards, 標準ID allocations,
//! registry entries): each decodes to exactly the value written here, and that value encodes back to the file.
//! `golden.rs` checks that every golden file round-trips; this file checks what they mean, including the forms
//! whose personal data was erased (`<EventType>_v<N>.erased.json`: the store hands back `personal: null`).

// The fixtures below are outside `#[test]` functions; a literal that does not parse is a broken test.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cardap_domain::card::{CardEvent, ConsentRecord, IssuanceConsent, StandardId, StandardIdEvent};
use cardap_domain::contact::{Email, Phone, Sex};
use cardap_domain::local_settings::{
    CustomFieldDefinition, CustomFieldType, CustomValue, FieldKey, FieldLabel, LocalSettingsEvent, LocalSettingsValue,
};
use cardap_domain::registry::{FullName, RegistryChanges, RegistryEvent, RegistryFacts, RegistryKey};
use cardap_domain::resident::{
    Address, CardFid, EraDate, Erasable, ErasureReason, ErasureReference, KanaName, KanjiName, Occupation, PersonName,
    PersonalChanges, PersonalData, PostalCode, ResidentEvent, ResidentId,
};
use cardap_domain::{BusinessId, DomainEvent, MunicipalityCode, OperatorKey, Timestamp};
use serde_json::Value;
use uuid::Uuid;

/// Reads `golden/<file>.json`, checks it decodes to `expected` and that `expected` encodes to it.
#[track_caller]
fn check<E: DomainEvent + PartialEq>(file: &str, expected: &E) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let payload: Value = serde_json::from_str(&text).unwrap();
    let name = file.split_once('.').map_or(file, |(name, _variant)| name);
    assert_eq!(name, format!("{}_v{}", expected.event_type(), expected.event_version()), "{file}");
    let decoded = E::decode(expected.event_type(), expected.event_version(), &payload);
    assert_eq!(decoded.as_ref(), Ok(expected), "{file} decodes to another value");
    assert_eq!(expected.encode(), payload, "{file} is not what the value encodes to");
}

/// Reads `golden/<file>.json`, a released older version (`<EventType>_v<N>[.<variant>]`), and checks it decodes to
/// `expected`, a value of the current version.
#[track_caller]
fn check_upcast<E: DomainEvent + PartialEq>(file: &str, expected: &E) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{file}.json"));
    let payload: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let name = file.split_once('.').map_or(file, |(name, _variant)| name);
    let (event_type, version) = name.rsplit_once("_v").unwrap();
    let version: u32 = version.parse().unwrap();
    assert!(version < expected.event_version(), "{file} is not an older version");
    assert_eq!(E::decode(event_type, version, &payload).as_ref(), Ok(expected), "{file} upcasts to another value");
}

fn chiyoda() -> MunicipalityCode {
    MunicipalityCode::parse("131016").unwrap()
}

fn resident_id() -> ResidentId {
    ResidentId::from_uuid(Uuid::from_u128(0x0192_5c4e_6a80_7000_8000_0000_0000_0042))
}

fn fid() -> CardFid {
    CardFid::parse("0A1B2C3D4E5F").unwrap()
}

fn key(s: &str) -> FieldKey {
    FieldKey::parse(s).unwrap()
}

fn registry_key() -> RegistryKey {
    RegistryKey::parse("000123456").unwrap()
}

fn standard_id() -> StandardId {
    StandardId::new(&chiyoda(), 1_234_567_890)
}

fn business_ids(list: &[&str]) -> BTreeSet<BusinessId> {
    list.iter().map(|s| BusinessId::parse(s).unwrap()).collect()
}

fn field(k: &str, label: &str, field_type: CustomFieldType, required: bool) -> CustomFieldDefinition {
    CustomFieldDefinition { key: key(k), label: FieldLabel::parse(label).unwrap(), field_type, required }
}

fn local_settings_events() -> Vec<(&'static str, LocalSettingsEvent)> {
    let settings = LocalSettingsValue {
        custom_fields: vec![
            field(
                "school_district",
                "学区",
                CustomFieldType::Choice { options: vec!["第一".into(), "第二".into()] },
                true,
            ),
            field("household_size", "世帯人数", CustomFieldType::Number { min: Some(1), max: Some(20) }, false),
            field("moved_in", "転入日", CustomFieldType::Date, false),
            field("note", "備考", CustomFieldType::Text { max_length: 200 }, false),
        ],
        catalog: business_ids(&["01", "02", "10"]),
        presets: business_ids(&["01"]),
    };
    vec![("LocalSettingsConfigured_v1", LocalSettingsEvent::Configured { municipality: chiyoda(), settings })]
}

fn personal() -> PersonalData {
    PersonalData {
        kana_name: PersonName {
            family: KanaName::parse("ヤマダ").unwrap(), given: KanaName::parse("タロウ").unwrap()
        },
        kanji_name: PersonName {
            family: KanjiName::parse("山田").unwrap(), given: KanjiName::parse("太郎").unwrap()
        },
        birth_date: EraDate::parse("3640107").unwrap(),
        sex: Sex::Male,
        postal_code: Some(PostalCode::parse("1000001").unwrap()),
        address1: Some(Address::parse("東京都千代田区千代田1-1").unwrap()),
        address2: Some(Address::parse("千代田マンション 101").unwrap()),
        phone: Some(Phone::parse("03-3333-4444").unwrap()),
        email: Some(Email::parse("taro@example.jp").unwrap()),
        occupation: Some(Occupation::parse("会社員").unwrap()),
        custom_fields: BTreeMap::from([
            (key("household_size"), CustomValue::Number(3)),
            (key("school_district"), CustomValue::Text("第一".into())),
        ]),
    }
}

fn resident_events() -> Vec<(&'static str, ResidentEvent)> {
    let changes = PersonalChanges {
        kanji_name: Some(PersonName {
            family: KanjiName::parse("山田").unwrap(),
            given: KanjiName::parse("次郎").unwrap(),
        }),
        sex: Some(Sex::NotApplicable),
        address2: Some(None),
        phone: Some(None),
        email: Some(Some(Email::parse("jiro@example.jp").unwrap())),
        custom_fields: BTreeMap::from([
            (key("household_size"), None),
            (key("note"), Some(CustomValue::Text("メモ".into()))),
        ]),
        ..PersonalChanges::default()
    };
    let registered = |personal| ResidentEvent::Registered {
        id: resident_id(),
        municipality: chiyoda(),
        registry_key: Some(registry_key()),
        personal,
    };
    vec![
        ("ResidentRegistered_v1", registered(Erasable::Known(personal()))),
        ("ResidentRegistered_v1.erased", registered(Erasable::Erased)),
        ("ResidentFieldsChanged_v1", ResidentEvent::FieldsChanged { changes: Erasable::Known(changes) }),
        ("ResidentFieldsChanged_v1.erased", ResidentEvent::FieldsChanged { changes: Erasable::Erased }),
        ("ResidentMovedOut_v1", ResidentEvent::MovedOut),
        ("ResidentCardAttached_v1", ResidentEvent::CardAttached { fid: fid() }),
        ("ResidentCardDetached_v1", ResidentEvent::CardDetached { fid: fid() }),
        ("ResidentErased_v1", ResidentEvent::Erased { reason: ErasureReason::RetentionExpired }),
        (
            "ResidentErased_v1.request",
            ResidentEvent::Erased {
                reason: ErasureReason::Request { reference: ErasureReference::parse("R8-SOMU-0123").unwrap() },
            },
        ),
    ]
}

fn card_events() -> Vec<(&'static str, CardEvent)> {
    vec![
        (
            "CardRegistered_v1",
            CardEvent::Registered { fid: fid(), municipality: chiyoda(), resident_id: resident_id() },
        ),
        ("CardLocalAreaCreated_v1", CardEvent::LocalAreaCreated),
        (
            "CardApInstalled_v2",
            CardEvent::ApInstalled {
                business_id: BusinessId::LIBRARY,
                standard_id: Some(standard_id()),
                consent: None,
            },
        ),
        (
            "CardApInstalled_v2.consent",
            CardEvent::ApInstalled {
                business_id: BusinessId::CERTIFICATE_ISSUANCE,
                standard_id: None,
                consent: Some(IssuanceConsent::Recorded(ConsentRecord {
                    at: Timestamp::from_unix(1_700_000_000),
                    operator: Some(OperatorKey::from_uuid(Uuid::from_u128(0x0192_a1b2_0000_7000_8000_0000_0000_000a))),
                })),
            },
        ),
        ("CardApInstalled_v2.on_paper", certificate_issuance_on_paper()),
        ("CardApRemoved_v1", CardEvent::ApRemoved { business_id: BusinessId::LIBRARY }),
        ("CardSuspended_v1", CardEvent::Suspended),
        ("CardResumed_v1", CardEvent::Resumed),
        ("CardAbolished_v1", CardEvent::Abolished),
    ]
}

/// AP 01 as installed before consent was recorded: given on paper.
fn certificate_issuance_on_paper() -> CardEvent {
    CardEvent::ApInstalled {
        business_id: BusinessId::CERTIFICATE_ISSUANCE,
        standard_id: None,
        consent: Some(IssuanceConsent::OnPaper),
    }
}

/// The card events of older versions: each golden file decodes (upcast) to this current value.
fn older_card_events() -> Vec<(&'static str, CardEvent)> {
    vec![
        (
            "CardApInstalled_v1",
            CardEvent::ApInstalled {
                business_id: BusinessId::LIBRARY,
                standard_id: Some(standard_id()),
                consent: None,
            },
        ),
        // Installed under the paper process: the consent counts as given.
        ("CardApInstalled_v1.certificate_issuance", certificate_issuance_on_paper()),
    ]
}

fn standard_id_events() -> Vec<(&'static str, StandardIdEvent)> {
    vec![("StandardIdAllocated_v1", StandardIdEvent::Allocated { id: standard_id(), fid: fid() })]
}

fn registry_events() -> Vec<(&'static str, RegistryEvent)> {
    let facts = RegistryFacts {
        name: FullName::parse("山田 太郎").unwrap(),
        kana: Some(KanaName::parse("ヤマダ\u{3000}タロウ").unwrap()),
        birth_date: EraDate::parse("3640107").unwrap(),
        sex: Sex::Male,
        postal_code: Some(PostalCode::parse("100-0001").unwrap()),
        address: Some(Address::parse("東京都千代田区千代田1-1").unwrap()),
    };
    let changes = RegistryChanges {
        name: Some(FullName::parse("山田　花子").unwrap()),
        kana: Some(None),
        sex: Some(Sex::Female),
        address: Some(Some(Address::parse("東京都千代田区千代田２－２").unwrap())),
        ..RegistryChanges::default()
    };
    let imported = |facts| RegistryEvent::Imported { municipality: chiyoda(), key: registry_key(), facts };
    vec![
        ("RegistryEntryImported_v1", imported(Erasable::Known(facts))),
        ("RegistryEntryImported_v1.erased", imported(Erasable::Erased)),
        ("RegistryEntryChanged_v1", RegistryEvent::Changed { changes: Erasable::Known(changes) }),
        ("RegistryEntryChanged_v1.erased", RegistryEvent::Changed { changes: Erasable::Erased }),
        ("RegistryEntryErased_v1", RegistryEvent::Erased),
    ]
}

#[test]
fn local_settings_golden_files() {
    for (file, event) in local_settings_events() {
        check(file, &event);
    }
}

#[test]
fn resident_golden_files() {
    for (file, event) in resident_events() {
        check(file, &event);
    }
}

#[test]
fn card_golden_files() {
    for (file, event) in card_events() {
        check(file, &event);
    }
    for (file, event) in older_card_events() {
        check_upcast(file, &event);
    }
}

#[test]
fn standard_id_golden_files() {
    for (file, event) in standard_id_events() {
        check(file, &event);
    }
}

#[test]
fn registry_golden_files() {
    for (file, event) in registry_events() {
        check(file, &event);
    }
}

/// The variant of each event as a number; these matches stop compiling when a variant is added, so that it gets
/// a golden file and a place in the lists above.
fn local_settings_variant(e: &LocalSettingsEvent) -> usize {
    match e {
        LocalSettingsEvent::Configured { .. } => 0,
    }
}

fn resident_variant(e: &ResidentEvent) -> usize {
    match e {
        ResidentEvent::Registered { .. } => 0,
        ResidentEvent::FieldsChanged { .. } => 1,
        ResidentEvent::MovedOut => 2,
        ResidentEvent::CardAttached { .. } => 3,
        ResidentEvent::CardDetached { .. } => 4,
        ResidentEvent::Erased { .. } => 5,
    }
}

fn card_variant(e: &CardEvent) -> usize {
    match e {
        CardEvent::Registered { .. } => 0,
        CardEvent::LocalAreaCreated => 1,
        CardEvent::ApInstalled { .. } => 2,
        CardEvent::ApRemoved { .. } => 3,
        CardEvent::Suspended => 4,
        CardEvent::Resumed => 5,
        CardEvent::Abolished => 6,
    }
}

fn standard_id_variant(e: &StandardIdEvent) -> usize {
    match e {
        StandardIdEvent::Allocated { .. } => 0,
    }
}

fn registry_variant(e: &RegistryEvent) -> usize {
    match e {
        RegistryEvent::Imported { .. } => 0,
        RegistryEvent::Changed { .. } => 1,
        RegistryEvent::Erased => 2,
    }
}

/// Each variant is listed, under its plain `<EventType>_v<N>` file.
#[track_caller]
fn assert_every_variant<E: DomainEvent>(events: Vec<(&'static str, E)>, variant: fn(&E) -> usize, count: usize) {
    let plain: BTreeSet<usize> = events
        .iter()
        .filter(|(file, e)| *file == format!("{}_v{}", e.event_type(), e.event_version()))
        .map(|(_, e)| variant(e))
        .collect();
    assert_eq!(plain, (0..count).collect(), "a variant has no plain golden file");
}

#[test]
fn every_variant_has_a_golden_file_and_personal_data_an_erased_one() {
    assert_every_variant(local_settings_events(), local_settings_variant, 1);
    assert_every_variant(resident_events(), resident_variant, 6);
    assert_every_variant(card_events(), card_variant, 7);
    assert_every_variant(standard_id_events(), standard_id_variant, 1);
    assert_every_variant(registry_events(), registry_variant, 3);
    let erased: BTreeSet<&str> = resident_events()
        .into_iter()
        .map(|(file, _)| file)
        .chain(registry_events().into_iter().map(|(file, _)| file))
        .filter(|file| file.ends_with(".erased"))
        .collect();
    assert_eq!(
        erased,
        BTreeSet::from([
            "RegistryEntryChanged_v1.erased",
            "RegistryEntryImported_v1.erased",
            "ResidentFieldsChanged_v1.erased",
            "ResidentRegistered_v1.erased",
        ])
    );
}
