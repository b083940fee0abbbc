//! Stored events must stay readable forever: each `golden/<EventType>_v<N>.json` still decodes, and
//! re-encodes to the same JSON. A new event or version gets a new golden file; an existing one is never edited.

use std::path::{Path, PathBuf};

use cardap_domain::municipality::{DisplayOrder, MunicipalityEvent, MunicipalityKind, MunicipalityName};
use cardap_domain::operator::{OperatorEvent, OperatorId, OperatorName, Role};
use cardap_domain::{DomainEvent, EventDecodeError, MunicipalityCode, OperatorKey};
use serde_json::Value;
use uuid::Uuid;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden_path(event_type: &str, event_version: u32) -> PathBuf {
    golden_dir().join(format!("{event_type}_v{event_version}.json"))
}

/// Decodes with `E`; `None` when the event belongs to another enum.
fn round_trip<E: DomainEvent>(event_type: &str, event_version: u32, payload: &Value) -> Option<Value> {
    match E::decode(event_type, event_version, payload) {
        Ok(event) => {
            assert_eq!((event.event_type(), event.event_version()), (event_type, event_version));
            Some(event.encode())
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
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let (event_type, version) = stem.rsplit_once("_v").unwrap();
        let version: u32 = version.parse().unwrap();
        let payload: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();

        let encoded = round_trip::<MunicipalityEvent>(event_type, version, &payload)
            .or_else(|| round_trip::<OperatorEvent>(event_type, version, &payload))
            .unwrap_or_else(|| panic!("{stem}: no event enum knows this type and version"));
        assert_eq!(encoded, payload, "{stem}");
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn every_event_type_and_version_has_a_golden_file() {
    let code = MunicipalityCode::parse("131016").unwrap();
    let name = MunicipalityName::parse("千代田区").unwrap();
    let order = DisplayOrder::parse(1).unwrap();
    // Add every new variant here.
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
    let operator = [OperatorEvent::Registered {
        key: OperatorKey::from_uuid(Uuid::nil()),
        municipality: None,
        operator_id: OperatorId::parse("admin").unwrap(),
        name: OperatorName::parse("システム管理者").unwrap(),
        roles: vec![Role::SystemAdmin],
    }];
    let kinds = municipality
        .iter()
        .map(|e| (e.event_type(), e.event_version()))
        .chain(operator.iter().map(|e| (e.event_type(), e.event_version())));
    for (event_type, version) in kinds {
        let path = golden_path(event_type, version);
        assert!(path.exists(), "missing golden file {}", path.display());
    }
}
