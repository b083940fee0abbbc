//! The resident-service read models against real databases: residents (registration, partial changes, move
//! out, erasure, searches in keyset pages), cards with their APs and AP counts, local settings and the imported
//! registry. Events are appended with the plain store (personal data in clear, or `null` as the sealing store
//! hands back an erased subject) and the views caught up; every query is checked for municipality isolation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cardap_domain::card::{Card, CardEvent, CardStatus, IssuanceConsent, StandardId};
use cardap_domain::contact::{Email, Phone, Sex};
use cardap_domain::local_settings::{
    CustomFieldDefinition, CustomFieldType, CustomValue, FieldKey, FieldLabel, LocalSettings, LocalSettingsEvent,
    LocalSettingsValue,
};
use cardap_domain::registry::{FullName, RegistryChanges, RegistryEntry, RegistryEvent, RegistryFacts, RegistryKey};
use cardap_domain::resident::{
    Address, CardFid, EraDate, Erasable, KanaName, KanjiName, Occupation, PersonName, PersonalChanges, PersonalData,
    PostalCode, Resident, ResidentEvent, ResidentId,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use cardap_projections::ReadModels;
use cardap_projections::residents::{ResidentCursor, ResidentRow, ResidentSearch};
use cardap_projections::{cards, local_settings, registry, residents};
use cardap_store::{Database, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use serde_json::{Value, json};
use uuid::Uuid;

/// The event store as the server has it: personal data sealed under the subjects' keys, which the read models
/// open with the same vault.
async fn sealed(db: &Database) -> (Arc<dyn EventStore>, Arc<cardap_store::KeyVault>) {
    let vault = db.key_vault(cardap_store::MasterKey::generate().unwrap()).unwrap();
    (Arc::new(cardap_store::SealedEventStore::new(db.event_store(), vault.clone())), vault)
}

struct Backend {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    vault: Arc<cardap_store::KeyVault>,
    _dir: Option<tempfile::TempDir>,
}

async fn postgres() -> Backend {
    let url = cardap_testkit::fresh_postgres_url().await;
    let db = Database::connect(&url, 10).await.unwrap();
    db.migrate().await.unwrap();
    let (store, vault) = sealed(&db).await;
    Backend { store, read: ReadModels::connect(&url, 5, vault.clone()).unwrap(), vault, _dir: None }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = cardap_testkit::fresh_sqlite_url(dir.path());
    let db = Database::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let (store, vault) = sealed(&db).await;
    Backend { store, read: ReadModels::connect(&url, 4, vault.clone()).unwrap(), vault, _dir: Some(dir) }
}

impl Backend {
    async fn append(&self, stream_type: &str, key: &str, events: Vec<NewEvent>) {
        let stream = StreamId::new(stream_type, key).unwrap();
        self.store.append(&stream, ExpectedVersion::Any, events, &Metadata::system()).await.unwrap();
    }

    async fn resident(&self, id: ResidentId, events: &[ResidentEvent]) {
        self.append(Resident::STREAM_TYPE, &id.to_string(), events.iter().map(NewEvent::from_domain).collect()).await;
    }

    async fn card(&self, fid: &str, events: &[CardEvent]) {
        self.append(Card::STREAM_TYPE, fid, events.iter().map(NewEvent::from_domain).collect()).await;
    }

    async fn registry(&self, code: &MunicipalityCode, key: &str, events: &[RegistryEvent]) {
        let stream_key = format!("{}.{key}", code.as_str());
        self.append(RegistryEntry::STREAM_TYPE, &stream_key, events.iter().map(NewEvent::from_domain).collect()).await;
    }

    async fn catch_up(&self) {
        self.read.catch_up(self.store.clone()).await.unwrap();
    }
}

fn chiyoda() -> MunicipalityCode {
    MunicipalityCode::parse("131016").unwrap()
}

fn sapporo() -> MunicipalityCode {
    MunicipalityCode::parse("011002").unwrap()
}

fn new_id() -> ResidentId {
    ResidentId::from_uuid(Uuid::new_v4())
}

fn fid(s: &str) -> CardFid {
    CardFid::parse(s).unwrap()
}

fn bid(s: &str) -> BusinessId {
    BusinessId::parse(s).unwrap()
}

fn key(s: &str) -> FieldKey {
    FieldKey::parse(s).unwrap()
}

fn date(s: &str) -> EraDate {
    EraDate::parse(s).unwrap()
}

fn person(kana: (&str, &str), kanji: (&str, &str), birth: &str) -> PersonalData {
    PersonalData {
        kana_name: PersonName { family: KanaName::parse(kana.0).unwrap(), given: KanaName::parse(kana.1).unwrap() },
        kanji_name: PersonName {
            family: KanjiName::parse(kanji.0).unwrap(),
            given: KanjiName::parse(kanji.1).unwrap(),
        },
        birth_date: date(birth),
        sex: Sex::Male,
        postal_code: Some(PostalCode::parse("100-0001").unwrap()),
        address1: Some(Address::parse("東京都千代田区千代田１－１").unwrap()),
        address2: Some(Address::parse("千代田ハイツ１０１").unwrap()),
        phone: Some(Phone::parse("03-3333-4444").unwrap()),
        email: None,
        occupation: Some(Occupation::parse("会社員").unwrap()),
        custom_fields: BTreeMap::from([
            (key("school_district"), CustomValue::Text("第一".to_owned())),
            (key("household_size"), CustomValue::Number(3)),
        ]),
    }
}

fn registered(id: ResidentId, code: &MunicipalityCode, personal: PersonalData) -> ResidentEvent {
    ResidentEvent::Registered {
        id,
        municipality: code.clone(),
        registry_key: None,
        personal: Erasable::Known(personal),
    }
}

fn kana(row: &ResidentRow) -> String {
    let n = row.kana_name.as_ref().unwrap();
    format!("{}{}", n.family, n.given)
}

fn search(prefix: Option<&str>) -> ResidentSearch {
    ResidentSearch { kana_prefix: prefix.map(str::to_owned), limit: 100, ..ResidentSearch::default() }
}

async fn registration_changes_and_move_out_are_reflected(b: Backend) {
    let code = chiyoda();
    let id = new_id();
    let mut data = person(("ヤマダ", "タロウ"), ("山田", "太郎"), "3640107");
    data.email = Some(Email::parse("taro@example.jp").unwrap());
    b.resident(
        id,
        &[ResidentEvent::Registered {
            id,
            municipality: code.clone(),
            registry_key: Some(RegistryKey::parse("000123").unwrap()),
            personal: Erasable::Known(data),
        }],
    )
    .await;
    b.catch_up().await;
    let row = residents::get(b.read.pool(), b.read.sealer(), &code, &id).await.unwrap().unwrap();
    assert_eq!(row.kana_name, Some(PersonName { family: "ヤマダ".to_owned(), given: "タロウ".to_owned() }));
    assert_eq!(row.kanji_name, Some(PersonName { family: "山田".to_owned(), given: "太郎".to_owned() }));
    assert_eq!(row.birth_date.as_deref(), Some("3640107"));
    assert_eq!(row.sex.as_deref(), Some("1"));
    assert_eq!(row.email.as_deref(), Some("taro@example.jp"));
    assert_eq!(row.registry_key.as_ref().map(|k| k.as_str()), Some("000123"));
    assert_eq!(row.custom_fields.as_ref().unwrap()[&key("household_size")], CustomValue::Number(3));
    assert_eq!((row.version, row.moved_out, row.erased, row.active_fid.clone()), (1, false, false, None));

    // A change carries only what changed: a new given name, a new phone, address2 and email cleared, one custom
    // field changed, one removed, one added. Everything else must stay.
    let changes = PersonalChanges {
        kana_name: Some(PersonName {
            family: KanaName::parse("ヤマダ").unwrap(),
            given: KanaName::parse("ジロウ").unwrap(),
        }),
        phone: Some(Some(Phone::parse("090-1234-5678").unwrap())),
        address2: Some(None),
        email: Some(None),
        custom_fields: BTreeMap::from([
            (key("school_district"), Some(CustomValue::Text("第二".to_owned()))),
            (key("household_size"), None),
            (key("note"), Some(CustomValue::Text("メモ".to_owned()))),
        ]),
        ..PersonalChanges::default()
    };
    b.resident(id, &[ResidentEvent::FieldsChanged { changes: Erasable::Known(changes) }]).await;
    // A change of one field alone (no custom fields): the merge must leave the custom fields as they are.
    let only_occupation =
        PersonalChanges { occupation: Some(Some(Occupation::parse("教員").unwrap())), ..PersonalChanges::default() };
    b.resident(id, &[ResidentEvent::FieldsChanged { changes: Erasable::Known(only_occupation) }]).await;
    b.catch_up().await;
    let row = residents::get(b.read.pool(), b.read.sealer(), &code, &id).await.unwrap().unwrap();
    assert_eq!(kana(&row), "ヤマダジロウ");
    assert_eq!(row.kanji_name.as_ref().unwrap().given, "太郎", "the kanji name was not in the change");
    assert_eq!(row.phone.as_deref(), Some("090-1234-5678"));
    assert_eq!(row.address2, None);
    assert_eq!(row.email, None);
    assert_eq!(row.address1.as_deref(), Some("東京都千代田区千代田１－１"));
    assert_eq!(row.postal_code.as_deref(), Some("100-0001"));
    assert_eq!(row.birth_date.as_deref(), Some("3640107"));
    assert_eq!(row.occupation.as_deref(), Some("教員"));
    assert_eq!(
        row.custom_fields,
        Some(BTreeMap::from([
            (key("note"), CustomValue::Text("メモ".to_owned())),
            (key("school_district"), CustomValue::Text("第二".to_owned())),
        ]))
    );
    assert_eq!(row.version, 3);
    let found = residents::search(b.read.pool(), b.read.sealer(), &code, &search(Some("ヤマダジ"))).await.unwrap();
    assert_eq!(found.rows.len(), 1, "the search key follows the kana change");
    assert!(
        residents::search(b.read.pool(), b.read.sealer(), &code, &search(Some("ヤマダタ")))
            .await
            .unwrap()
            .rows
            .is_empty()
    );

    b.resident(id, &[ResidentEvent::CardAttached { fid: fid("CARD1") }]).await;
    b.catch_up().await;
    let row = residents::get(b.read.pool(), b.read.sealer(), &code, &id).await.unwrap().unwrap();
    assert_eq!(row.active_fid, Some(fid("CARD1")));
    b.resident(id, &[ResidentEvent::CardDetached { fid: fid("CARD1") }, ResidentEvent::MovedOut]).await;
    b.catch_up().await;
    let row = residents::get(b.read.pool(), b.read.sealer(), &code, &id).await.unwrap().unwrap();
    assert_eq!((row.active_fid.clone(), row.moved_out, row.version), (None, true, 6));
    assert_eq!(row.phone.as_deref(), Some("090-1234-5678"), "moving out keeps the data");

    assert!(
        residents::get(b.read.pool(), b.read.sealer(), &sapporo(), &id).await.unwrap().is_none(),
        "another municipality's"
    );
}

async fn erased_events_null_the_personal_columns(b: Backend) {
    let code = chiyoda();
    let known = new_id();
    b.resident(
        known,
        &[
            registered(known, &code, person(("サトウ", "ハナコ"), ("佐藤", "花子"), "4100505")),
            ResidentEvent::CardAttached { fid: fid("ERASE1") },
        ],
    )
    .await;
    b.card("ERASE1", &[CardEvent::Registered { fid: fid("ERASE1"), municipality: code.clone(), resident_id: known }])
        .await;
    b.catch_up().await;
    assert_eq!(
        residents::search(b.read.pool(), b.read.sealer(), &code, &search(Some("サトウ"))).await.unwrap().rows.len(),
        1
    );

    // The erasure is recorded as a change whose personal part is null (as is every event once the key is gone).
    b.append(
        Resident::STREAM_TYPE,
        &known.to_string(),
        vec![NewEvent::new("ResidentFieldsChanged", 1, json!({ "personal": null }))],
    )
    .await;
    // A resident whose whole history is read back after his key was destroyed.
    let gone = new_id();
    b.append(
        Resident::STREAM_TYPE,
        &gone.to_string(),
        vec![NewEvent::new(
            "ResidentRegistered",
            1,
            json!({ "resident_id": gone.to_string(), "municipality": code.as_str(), "registry_key": "000999",
                "personal": null }),
        )],
    )
    .await;
    b.catch_up().await;

    for (id, version, active) in [(known, 3, Some(fid("ERASE1"))), (gone, 1, None)] {
        let row = residents::get(b.read.pool(), b.read.sealer(), &code, &id).await.unwrap().unwrap();
        assert!(row.erased);
        assert_eq!((row.kana_name.clone(), row.kanji_name.clone()), (None, None));
        assert_eq!((row.birth_date.clone(), row.sex.clone(), row.postal_code.clone()), (None, None, None));
        assert_eq!((row.address1.clone(), row.address2.clone(), row.phone.clone()), (None, None, None));
        assert_eq!((row.email.clone(), row.occupation.clone(), row.custom_fields.clone()), (None, None, None));
        assert_eq!((row.resident_id, row.version, row.active_fid.clone()), (id, version, active));
        assert!(!row.moved_out);
    }
    let gone_row = residents::get(b.read.pool(), b.read.sealer(), &code, &gone).await.unwrap().unwrap();
    assert_eq!(gone_row.registry_key.as_ref().map(|k| k.as_str()), Some("000999"), "the link stays");
    assert!(
        residents::search(b.read.pool(), b.read.sealer(), &code, &search(Some("サトウ")))
            .await
            .unwrap()
            .rows
            .is_empty()
    );
    let by_card = ResidentSearch { fid: Some(fid("ERASE1")), limit: 10, ..ResidentSearch::default() };
    let found = residents::search(b.read.pool(), b.read.sealer(), &code, &by_card).await.unwrap();
    assert_eq!(found.rows.iter().map(|r| r.resident_id).collect::<Vec<_>>(), vec![known], "found by his card");
    let all = residents::search(b.read.pool(), b.read.sealer(), &code, &search(None)).await.unwrap();
    assert_eq!(all.rows.len(), 2, "erased residents are still listed (ids, card, status)");
}

/// 消去: the erasure events purge the rows in place — his resident row goes (no search, no card FID, no registry
/// key leads to him), the registry entry keeps only its key — while others stay as they are.
async fn erasure_events_purge_the_rows_in_place(b: Backend) {
    let code = chiyoda();
    let (him, other) = (new_id(), new_id());
    b.registry(&code, "0001", &[imported(&code, "0001", facts("山田　太郎", "3640107", Sex::Male))]).await;
    b.registry(&code, "0002", &[imported(&code, "0002", facts("山田　花子", "3640107", Sex::Female))]).await;
    b.resident(him, &[registered(him, &code, person(("ヤマダ", "タロウ"), ("山田", "太郎"), "3640107"))]).await;
    b.resident(other, &[registered(other, &code, person(("ヤマダ", "ハナコ"), ("山田", "花子"), "3640107"))]).await;
    b.card("ERASE2", &[CardEvent::Registered { fid: fid("ERASE2"), municipality: code.clone(), resident_id: him }])
        .await;
    b.catch_up().await;
    assert_eq!(
        residents::search(b.read.pool(), b.read.sealer(), &code, &search(Some("ヤマダ"))).await.unwrap().rows.len(),
        2
    );

    b.append(
        Resident::STREAM_TYPE,
        &him.to_string(),
        vec![NewEvent::new("ResidentErased", 1, json!({ "reason": "request", "reference": "R8-0001" }))],
    )
    .await;
    b.append(RegistryEntry::STREAM_TYPE, "131016.0001", vec![NewEvent::new("RegistryEntryErased", 1, json!({}))]).await;
    b.catch_up().await;

    assert_eq!(residents::get(b.read.pool(), b.read.sealer(), &code, &him).await.unwrap(), None);
    let by_kana = residents::search(b.read.pool(), b.read.sealer(), &code, &search(Some("ヤマダ"))).await.unwrap();
    assert_eq!(by_kana.rows.iter().map(|r| r.resident_id).collect::<Vec<_>>(), vec![other]);
    let by_card = ResidentSearch { fid: Some(fid("ERASE2")), limit: 10, ..ResidentSearch::default() };
    assert!(residents::search(b.read.pool(), b.read.sealer(), &code, &by_card).await.unwrap().rows.is_empty());
    let entry = registry::get(b.read.pool(), b.read.sealer(), &code, &RegistryKey::parse("0001").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(entry.erased && entry.facts.is_none(), "{entry:?}");
    assert_eq!(entry.version, 2);
    let kept = registry::get(b.read.pool(), b.read.sealer(), &code, &RegistryKey::parse("0002").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(!kept.erased && kept.facts.is_some());
}

async fn card_lifecycle_aps_and_counts(b: Backend) {
    let code = chiyoda();
    let (a, c) = (new_id(), new_id());
    let library = StandardId::new(&code, 1234567890);
    b.card(
        "FID1",
        &[
            CardEvent::Registered { fid: fid("FID1"), municipality: code.clone(), resident_id: a },
            CardEvent::LocalAreaCreated,
            CardEvent::ApInstalled {
                business_id: bid("01"),
                standard_id: None,
                consent: Some(IssuanceConsent::OnPaper),
            },
            CardEvent::ApInstalled { business_id: bid("02"), standard_id: Some(library.clone()), consent: None },
        ],
    )
    .await;
    b.card(
        "FID2",
        &[
            CardEvent::Registered { fid: fid("FID2"), municipality: code.clone(), resident_id: c },
            CardEvent::LocalAreaCreated,
            CardEvent::ApInstalled {
                business_id: bid("01"),
                standard_id: None,
                consent: Some(IssuanceConsent::OnPaper),
            },
        ],
    )
    .await;
    // Another municipality's card with the same AP must not count here.
    b.card(
        "FID3",
        &[
            CardEvent::Registered { fid: fid("FID3"), municipality: sapporo(), resident_id: new_id() },
            CardEvent::LocalAreaCreated,
            CardEvent::ApInstalled {
                business_id: bid("01"),
                standard_id: None,
                consent: Some(IssuanceConsent::OnPaper),
            },
        ],
    )
    .await;
    b.catch_up().await;
    let pool = b.read.pool();
    let card = cards::get(pool, &code, &fid("FID1")).await.unwrap().unwrap();
    assert_eq!((card.resident_id, card.status, card.local_area, card.version), (a, CardStatus::InUse, true, 4));
    assert_eq!(
        card.aps.iter().map(|ap| (ap.business_id.as_str(), ap.standard_id.clone())).collect::<Vec<_>>(),
        vec![("01", None), ("02", Some(library))]
    );
    assert_eq!(cards::ap_counts(pool, &code).await.unwrap(), vec![(bid("01"), 2), (bid("02"), 1)]);
    assert_eq!(cards::ap_counts(pool, &sapporo()).await.unwrap(), vec![(bid("01"), 1)]);

    b.card("FID1", &[CardEvent::ApRemoved { business_id: bid("02") }, CardEvent::Suspended]).await;
    b.catch_up().await;
    let card = cards::get(pool, &code, &fid("FID1")).await.unwrap().unwrap();
    assert_eq!(card.status, CardStatus::Suspended);
    assert_eq!(card.aps.iter().map(|ap| ap.business_id.as_str()).collect::<Vec<_>>(), vec!["01"]);
    assert_eq!(cards::ap_counts(pool, &code).await.unwrap(), vec![(bid("01"), 2)], "a suspended card still counts");

    b.card("FID1", &[CardEvent::Resumed, CardEvent::Abolished]).await;
    b.catch_up().await;
    let card = cards::get(pool, &code, &fid("FID1")).await.unwrap().unwrap();
    assert_eq!((card.status, card.version), (CardStatus::Abolished, 8));
    assert_eq!(card.aps.len(), 1, "an abolished card lists what it carried");
    assert_eq!(cards::ap_counts(pool, &code).await.unwrap(), vec![(bid("01"), 1)]);

    // A second card for the same resident after the first was abolished.
    b.card("FID4", &[CardEvent::Registered { fid: fid("FID4"), municipality: code.clone(), resident_id: a }]).await;
    b.catch_up().await;
    let his = cards::of_resident(pool, &code, &a).await.unwrap();
    assert_eq!(
        his.iter().map(|c| (c.fid.as_str(), c.status)).collect::<Vec<_>>(),
        vec![("FID1", CardStatus::Abolished), ("FID4", CardStatus::InUse)]
    );
    assert!(his[1].aps.is_empty());

    assert!(cards::get(pool, &sapporo(), &fid("FID1")).await.unwrap().is_none(), "another municipality's card");
    assert!(cards::of_resident(pool, &sapporo(), &a).await.unwrap().is_empty());
    assert!(cards::get(pool, &code, &fid("NOPE")).await.unwrap().is_none());
}

/// Names chosen so that a prefix can be a whole family name, run into the given name, or match a shorter family
/// name whose given name continues it (ヤマ + ダイスケ starts with ヤマダ).
const PEOPLE: [(&str, &str, &str); 8] = [
    ("ヤマダ", "タロウ", "3640107"),
    ("ヤマダ", "ハナコ", "4010108"),
    ("ヤマダ", "タケシ", "3640107"),
    ("ヤマ", "ダイスケ", "5010501"),
    ("ヤマモト", "イチロウ", "3640107"),
    ("ヤマ", "アキラ", "4100505"),
    ("スズキ", "ジロウ", "4100505"),
    ("アベ", "サブロウ", "3500101"),
];

async fn searches_by_kana_birth_date_and_fid_in_pages(b: Backend) {
    let code = chiyoda();
    let mut ids = Vec::new();
    for (family, given, birth) in PEOPLE {
        let id = new_id();
        b.resident(id, &[registered(id, &code, person((family, given), ("山田", "太郎"), birth))]).await;
        ids.push(id);
    }
    // Twenty namesakes, to page through ties of kana_search.
    for _ in 0..20 {
        let id = new_id();
        b.resident(id, &[registered(id, &code, person(("タナカ", "ケン"), ("田中", "健"), "4050505"))]).await;
        ids.push(id);
    }
    // The same people in another municipality.
    for (family, given, birth) in PEOPLE {
        let id = new_id();
        b.resident(id, &[registered(id, &sapporo(), person((family, given), ("山田", "太郎"), birth))]).await;
    }
    b.card(
        "SEARCH1",
        &[CardEvent::Registered { fid: fid("SEARCH1"), municipality: code.clone(), resident_id: ids[4] }],
    )
    .await;
    b.catch_up().await;
    let pool = b.read.pool();
    let sealer = b.read.sealer();
    let names = |rows: &[ResidentRow]| rows.iter().map(kana).collect::<Vec<_>>();

    let page = residents::search(pool, sealer, &code, &search(Some("ヤマダ"))).await.unwrap();
    assert_eq!(names(&page.rows), ["ヤマダイスケ", "ヤマダタケシ", "ヤマダタロウ", "ヤマダハナコ"]);
    assert_eq!(page.next, None);
    let page = residents::search(pool, sealer, &code, &search(Some("ヤマダタ"))).await.unwrap();
    assert_eq!(names(&page.rows), ["ヤマダタケシ", "ヤマダタロウ"], "a prefix running into the given name");
    let page = residents::search(pool, sealer, &code, &search(Some("ヤマダ　タロ"))).await.unwrap();
    assert_eq!(names(&page.rows), ["ヤマダタロウ"], "spaces in the prefix are ignored");
    let page = residents::search(pool, sealer, &code, &search(Some("ﾔﾏﾓﾄ"))).await.unwrap();
    assert_eq!(names(&page.rows), ["ヤマモトイチロウ"], "half-width kana is made full-width");
    let page = residents::search(pool, sealer, &code, &search(Some("ヤマ"))).await.unwrap();
    assert_eq!(page.rows.len(), 6);
    assert!(residents::search(pool, sealer, &code, &search(Some("ヤマダロ"))).await.unwrap().rows.is_empty());

    let by_date = ResidentSearch { birth_date: Some(date("3640107")), limit: 100, ..ResidentSearch::default() };
    let page = residents::search(pool, sealer, &code, &by_date).await.unwrap();
    assert_eq!(names(&page.rows), ["ヤマダタケシ", "ヤマダタロウ", "ヤマモトイチロウ"]);
    let both = ResidentSearch { kana_prefix: Some("ヤマダ".to_owned()), ..by_date.clone() };
    assert_eq!(
        names(&residents::search(pool, sealer, &code, &both).await.unwrap().rows),
        ["ヤマダタケシ", "ヤマダタロウ"]
    );

    let by_fid = ResidentSearch { fid: Some(fid("SEARCH1")), limit: 100, ..ResidentSearch::default() };
    let page = residents::search(pool, sealer, &code, &by_fid).await.unwrap();
    assert_eq!(page.rows.iter().map(|r| r.resident_id).collect::<Vec<_>>(), vec![ids[4]]);
    let wrong = ResidentSearch { kana_prefix: Some("スズキ".to_owned()), ..by_fid.clone() };
    assert!(residents::search(pool, sealer, &code, &wrong).await.unwrap().rows.is_empty(), "conditions are combined");
    let unknown = ResidentSearch { fid: Some(fid("NOSUCH")), limit: 100, ..ResidentSearch::default() };
    assert!(residents::search(pool, sealer, &code, &unknown).await.unwrap().rows.is_empty());

    // Pages of 3 through everything: no duplicates, no gaps. Pages follow each other in registration order (the
    // blind index cannot sort by name); each page, and so one big page, is sorted by kana.
    let registered_as = |r: &ResidentRow| ids.iter().position(|id| *id == r.resident_id).unwrap();
    let everything = residents::search(pool, sealer, &code, &search(None)).await.unwrap().rows;
    assert_eq!(everything.len(), 28);
    for (prefix, size) in [(None, 3), (Some("タナカ"), 7), (Some("ヤマ"), 2)] {
        let mut paged: Vec<ResidentRow> = Vec::new();
        let mut after: Option<ResidentCursor> = None;
        loop {
            let s = ResidentSearch { kana_prefix: prefix.map(str::to_owned), after, limit: size, ..Default::default() };
            let page = residents::search(pool, sealer, &code, &s).await.unwrap();
            assert!(page.rows.len() <= size as usize);
            let names: Vec<String> = page.rows.iter().map(kana).collect();
            assert!(names.is_sorted(), "a page is sorted by kana: {names:?}");
            let last_before = paged.iter().map(registered_as).max();
            assert!(
                page.rows.iter().all(|r| last_before.is_none_or(|l| registered_as(r) > l)),
                "keyset on the registration order"
            );
            paged.extend(page.rows);
            // The cursor is meant to travel through the API as an opaque token.
            let token = page.next.map(|c| serde_json::to_string(&c).unwrap());
            after = token.map(|t| serde_json::from_str(&t).unwrap());
            if after.is_none() {
                break;
            }
        }
        let mut expected: Vec<&ResidentRow> =
            everything.iter().filter(|r| prefix.is_none_or(|p| kana(r).starts_with(p))).collect();
        expected.sort_by_key(|r| r.resident_id);
        paged.sort_by_key(|r| r.resident_id);
        assert_eq!(paged.iter().collect::<Vec<_>>(), expected, "{prefix:?} in pages of {size}");
    }
    let ordered: Vec<String> = everything.iter().map(kana).collect();
    let mut sorted = ordered.clone();
    sorted.sort();
    assert_eq!(ordered, sorted);

    // Isolation: the same searches for another municipality see only its own rows, or nothing.
    let other = MunicipalityCode::parse("271004").unwrap();
    for s in [search(Some("ヤマダ")), by_date.clone(), by_fid.clone(), search(None)] {
        assert!(residents::search(pool, sealer, &other, &s).await.unwrap().rows.is_empty());
    }
    let theirs = residents::search(pool, sealer, &sapporo(), &search(None)).await.unwrap().rows;
    assert_eq!(theirs.len(), PEOPLE.len());
    assert!(theirs.iter().all(|r| r.municipality == sapporo()));
    assert!(
        residents::search(pool, sealer, &sapporo(), &by_fid).await.unwrap().rows.is_empty(),
        "the card is Chiyoda's"
    );

    // Tokens are 64-bit cuts of an HMAC: a collision (made here by hand, スズキジロウ under the tokens of ヤマダ and
    // of another birth date) leads a search to his row, and the opened row keeps him out of the page.
    let suzuki: i64 = sqlx::query_scalar("SELECT seq FROM rm_residents WHERE resident_id = $1")
        .bind(ids[6].to_string())
        .fetch_one(pool)
        .await
        .unwrap();
    for (kind, value, holders) in [("kana-prefix", "ヤマダ", 4), ("birth-date", "3640107", 3)] {
        let token = sealer.token64(code.as_str(), kind, value);
        let count =
            || sqlx::query_scalar::<_, i64>("SELECT count(*) FROM rm_resident_tokens WHERE token = $1").bind(token);
        assert_eq!(count().fetch_one(pool).await.unwrap(), holders, "the register's own token of {value}");
        sqlx::query("INSERT INTO rm_resident_tokens (token, seq) VALUES ($1, $2)")
            .bind(token)
            .bind(suzuki)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(count().fetch_one(pool).await.unwrap(), holders + 1);
    }
    let page = residents::search(pool, sealer, &code, &search(Some("ヤマダ"))).await.unwrap();
    assert_eq!(
        names(&page.rows),
        ["ヤマダイスケ", "ヤマダタケシ", "ヤマダタロウ", "ヤマダハナコ"],
        "no wrong resident"
    );
    let page = residents::search(pool, sealer, &code, &by_date).await.unwrap();
    assert_eq!(names(&page.rows), ["ヤマダタケシ", "ヤマダタロウ", "ヤマモトイチロウ"], "no wrong resident");
}

fn facts(name: &str, birth: &str, sex: Sex) -> RegistryFacts {
    RegistryFacts {
        name: FullName::parse(name).unwrap(),
        kana: Some(KanaName::parse("ヤマダ　タロウ").unwrap()),
        birth_date: date(birth),
        sex,
        postal_code: Some(PostalCode::parse("1000001").unwrap()),
        address: Some(Address::parse("東京都千代田区千代田１－１").unwrap()),
    }
}

fn imported(code: &MunicipalityCode, k: &str, f: RegistryFacts) -> RegistryEvent {
    RegistryEvent::Imported {
        municipality: code.clone(),
        key: RegistryKey::parse(k).unwrap(),
        facts: Erasable::Known(f),
    }
}

async fn registry_entries_imports_changes_and_versions(b: Backend) {
    let code = chiyoda();
    let k = |s: &str| RegistryKey::parse(s).unwrap();
    b.registry(&code, "0001", &[imported(&code, "0001", facts("山田　太郎", "3640107", Sex::Male))]).await;
    b.registry(&code, "0002", &[imported(&code, "0002", facts("山田　花子", "3640107", Sex::Female))]).await;
    b.registry(&code, "0003", &[imported(&code, "0003", facts("鈴木　一郎", "4100505", Sex::Male))]).await;
    b.registry(&sapporo(), "0001", &[imported(&sapporo(), "0001", facts("札幌　太郎", "3640107", Sex::Male))]).await;
    // 0002 changes her name and loses her address; 0003 is erased.
    let changes = RegistryChanges {
        name: Some(FullName::parse("佐藤　花子").unwrap()),
        address: Some(None),
        ..RegistryChanges::default()
    };
    b.registry(&code, "0002", &[RegistryEvent::Changed { changes: Erasable::Known(changes) }]).await;
    b.append(
        RegistryEntry::STREAM_TYPE,
        "131016.0003",
        vec![NewEvent::new("RegistryEntryChanged", 1, json!({ "personal": null }))],
    )
    .await;
    b.catch_up().await;
    let pool = b.read.pool();
    let sealer = b.read.sealer();

    let one = registry::get(pool, sealer, &code, &k("0001")).await.unwrap().unwrap();
    assert_eq!((one.version, one.erased), (1, false));
    assert_eq!(one.facts, Some(facts("山田　太郎", "3640107", Sex::Male)));
    let two = registry::get(pool, sealer, &code, &k("0002")).await.unwrap().unwrap();
    let mut expected = facts("佐藤　花子", "3640107", Sex::Female);
    expected.address = None;
    assert_eq!((two.version, two.facts.clone()), (2, Some(expected.clone())));
    let three = registry::get(pool, sealer, &code, &k("0003")).await.unwrap().unwrap();
    assert_eq!((three.version, three.erased, three.facts), (2, true, None));
    assert!(registry::get(pool, sealer, &code, &k("0404")).await.unwrap().is_none());

    let versions =
        registry::versions(pool, sealer, &code, &[k("0001"), k("0002"), k("0003"), k("0404")]).await.unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[&k("0001")], (1, Some(facts("山田　太郎", "3640107", Sex::Male))));
    assert_eq!(versions[&k("0002")], (2, Some(expected)));
    assert_eq!(versions[&k("0003")], (2, None));
    // More keys than one statement takes.
    let many: Vec<RegistryKey> = (0..2345).map(|i| k(&format!("{i:04}"))).collect();
    let found = registry::versions(pool, sealer, &code, &many).await.unwrap();
    assert_eq!(found.keys().map(|k| k.as_str()).collect::<BTreeSet<_>>(), BTreeSet::from(["0001", "0002", "0003"]));
    let theirs = registry::versions(pool, sealer, &sapporo(), &[k("0001"), k("0002")]).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[&k("0001")].1.as_ref().unwrap().name.as_str(), "札幌　太郎");
    assert!(registry::versions(pool, sealer, &code, &[]).await.unwrap().is_empty());

    // Lookup by the facts read from a card: spaces do not matter, birth date and sex must match exactly.
    for name in ["山田　太郎", "山田 太郎", "山田太郎"] {
        let found =
            registry::find_by_facts(pool, sealer, &code, &date("3640107"), &FullName::parse(name).unwrap(), Sex::Male)
                .await
                .unwrap();
        assert_eq!(found.iter().map(|e| e.registry_key.as_str()).collect::<Vec<_>>(), ["0001"], "{name}");
    }
    let name = FullName::parse("山田太郎").unwrap();
    assert!(
        registry::find_by_facts(pool, sealer, &code, &date("3640107"), &name, Sex::Female).await.unwrap().is_empty()
    );
    assert!(registry::find_by_facts(pool, sealer, &code, &date("3640106"), &name, Sex::Male).await.unwrap().is_empty());
    let old_name = FullName::parse("山田花子").unwrap();
    assert!(
        registry::find_by_facts(pool, sealer, &code, &date("3640107"), &old_name, Sex::Female)
            .await
            .unwrap()
            .is_empty(),
        "the changed name is the one that counts"
    );
    let found = registry::find_by_facts(
        pool,
        sealer,
        &sapporo(),
        &date("3640107"),
        &FullName::parse("札幌太郎").unwrap(),
        Sex::Male,
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        registry::find_by_facts(
            pool,
            sealer,
            &code,
            &date("3640107"),
            &FullName::parse("札幌太郎").unwrap(),
            Sex::Male
        )
        .await
        .unwrap()
        .is_empty()
    );
}

fn definitions() -> Vec<CustomFieldDefinition> {
    vec![
        CustomFieldDefinition {
            key: key("school_district"),
            label: FieldLabel::parse("学区").unwrap(),
            field_type: CustomFieldType::Choice { options: vec!["第一".to_owned(), "第二".to_owned()] },
            required: true,
        },
        CustomFieldDefinition {
            key: key("household_size"),
            label: FieldLabel::parse("世帯人数").unwrap(),
            field_type: CustomFieldType::Number { min: Some(1), max: None },
            required: false,
        },
    ]
}

async fn the_settings_row(b: Backend) {
    let code = chiyoda();
    let first = LocalSettingsValue {
        custom_fields: definitions(),
        catalog: BTreeSet::from([bid("01"), bid("02")]),
        presets: BTreeSet::from([bid("01")]),
    };
    let mut second = first.clone();
    second.catalog.insert(bid("10"));
    second.presets.insert(bid("10"));
    second.custom_fields.reverse();
    let events = [first, second]
        .map(|settings| LocalSettingsEvent::Configured { municipality: code.clone(), settings })
        .iter()
        .map(NewEvent::from_domain)
        .collect();
    b.append(LocalSettings::STREAM_TYPE, code.as_str(), events).await;
    b.catch_up().await;
    let row = local_settings::get(b.read.pool(), &code).await.unwrap().unwrap();
    let mut reversed = definitions();
    reversed.reverse();
    assert_eq!(row.custom_fields, reversed, "the definitions in the municipality's order");
    assert_eq!(row.catalog, vec![bid("01"), bid("02"), bid("10")]);
    assert_eq!(row.presets, vec![bid("01"), bid("10")]);
    assert_eq!((row.municipality, row.version), (code, 2));
    assert!(local_settings::get(b.read.pool(), &sapporo()).await.unwrap().is_none());
    // Serialized as the API will send it.
    let json: Value = serde_json::to_value(&row.custom_fields[1]).unwrap();
    assert_eq!(json["type"], "choice");
}

async fn a_rebuild_reproduces_the_same_rows(b: Backend) {
    let code = chiyoda();
    for (i, (family, given, birth)) in PEOPLE.into_iter().enumerate() {
        let id = new_id();
        b.resident(id, &[registered(id, &code, person((family, given), ("山田", "太郎"), birth))]).await;
        let card = format!("REBUILD{i}");
        b.card(
            &card,
            &[
                CardEvent::Registered { fid: fid(&card), municipality: code.clone(), resident_id: id },
                CardEvent::LocalAreaCreated,
                CardEvent::ApInstalled {
                    business_id: bid("01"),
                    standard_id: None,
                    consent: Some(IssuanceConsent::OnPaper),
                },
            ],
        )
        .await;
    }
    b.catch_up().await;
    let before = residents::search(b.read.pool(), b.read.sealer(), &code, &search(None)).await.unwrap();
    let counts = cards::ap_counts(b.read.pool(), &code).await.unwrap();
    assert_eq!(counts, vec![(bid("01"), PEOPLE.len() as u64)]);
    for name in ["residents", "cards"] {
        let projection = b.read.projection(name).unwrap();
        let runner = cardap_projections::ProjectionRunner::new(b.store.clone(), b.read.pool().clone(), projection);
        runner.reset().await.unwrap();
    }
    assert!(residents::search(b.read.pool(), b.read.sealer(), &code, &search(None)).await.unwrap().rows.is_empty());
    assert!(cards::ap_counts(b.read.pool(), &code).await.unwrap().is_empty());
    b.catch_up().await;
    assert_eq!(residents::search(b.read.pool(), b.read.sealer(), &code, &search(None)).await.unwrap(), before);
    assert_eq!(cards::ap_counts(b.read.pool(), &code).await.unwrap(), counts);
}

async fn long_names_and_keys_that_are_not_cached(b: Backend) {
    let code = chiyoda();
    // 24 characters: longer than the longest prefix with a token of its own.
    let (long, other) = (new_id(), new_id());
    b.resident(
        long,
        &[registered(
            long,
            &code,
            person(("アイウエオカキクケコサシ", "スセソタチツテトナニヌネ"), ("山田", "太郎"), "4050505"),
        )],
    )
    .await;
    b.resident(
        other,
        &[registered(
            other,
            &code,
            person(("アイウエオカキクケコサシ", "スセソタチツテトナニアア"), ("山田", "次郎"), "4050505"),
        )],
    )
    .await;
    b.catch_up().await;
    let (pool, sealer) = (b.read.pool(), b.read.sealer());
    // A projection finds a key this process has forgotten through its own connection (in its transaction).
    let subject = StreamId::new(Resident::STREAM_TYPE, &long.to_string()).unwrap();
    b.vault.clear_cache();
    let mut conn = pool.acquire().await.unwrap();
    assert!(sealer.keys_in(&mut conn, std::slice::from_ref(&subject)).await.unwrap().contains_key(&subject));

    let twenty = residents::search(pool, sealer, &code, &search(Some("アイウエオカキクケコサシスセソタチツテト")))
        .await
        .unwrap();
    assert_eq!(twenty.rows.len(), 2);
    let longer =
        residents::search(pool, sealer, &code, &search(Some("アイウエオカキクケコサシスセソタチツテトナニヌ")))
            .await
            .unwrap();
    assert_eq!(
        longer.rows.iter().map(|r| r.resident_id).collect::<Vec<_>>(),
        [long],
        "the rest is compared once opened"
    );
    let whole =
        residents::search(pool, sealer, &code, &search(Some("アイウエオカキクケコサシスセソタチツテトナニアア")))
            .await
            .unwrap();
    assert_eq!(whole.rows.iter().map(|r| r.resident_id).collect::<Vec<_>>(), [other]);

    // Read with a cold cache, he is all there; once his key is destroyed he reads as erased.
    b.vault.clear_cache();
    let row = residents::get(pool, sealer, &code, &long).await.unwrap().unwrap();
    assert_eq!(row.kana_name.unwrap().given, "スセソタチツテトナニヌネ");
    b.vault.destroy(&subject).await.unwrap();
    let row = residents::get(pool, sealer, &code, &long).await.unwrap().unwrap();
    assert!(row.erased && row.kana_name.is_none() && row.birth_date.is_none(), "{row:?}");
    b.vault.clear_cache();
    assert!(sealer.keys_in(&mut conn, std::slice::from_ref(&subject)).await.unwrap().is_empty(), "destroyed");
}

/// Every resident of a batch as the register shows him, and what each search token finds.
async fn register_state(b: &Backend, code: &MunicipalityCode, ids: &[ResidentId]) -> Vec<String> {
    let mut state = Vec::new();
    for id in ids {
        let row = residents::get(b.read.pool(), b.read.sealer(), code, id).await.unwrap();
        // Without the times: the two registers were written at other instants.
        state.push(format!(
            "{id}: {:?}",
            row.map(|r| (r.kana_name, r.birth_date, r.phone, r.moved_out, r.active_fid, r.erased, r.version))
        ));
    }
    for prefix in ["ア", "アオ", "イ", "カ"] {
        let found = residents::search(b.read.pool(), b.read.sealer(), code, &search(Some(prefix))).await.unwrap();
        state.push(format!("{prefix}: {:?}", found.rows.iter().map(|r| r.resident_id).collect::<Vec<_>>()));
    }
    state
}

/// A batch of registrations with the changes, move-outs, card links and erasures that follow them in the same
/// batch, applied at once (set-based), gives the register the same events applied one by one give.
async fn a_batch_applied_at_once_equals_the_events_one_by_one(at_once: Backend, one_by_one: Backend) {
    let code = chiyoda();
    let ids: Vec<ResidentId> = (0..120).map(|_| new_id()).collect();
    let mut appends = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let given = ["アオイ", "イチロウ", "カオル"][i % 3];
        let mut data = person(("アオキ", given), ("青木", "葵"), "3640107");
        data.phone = Some(Phone::parse("090-1234-5678").unwrap());
        let mut events = vec![registered(*id, &code, data)];
        if i % 4 == 0 {
            events.push(ResidentEvent::CardAttached { fid: fid(&format!("BATCH{i}")) });
        }
        if i % 3 == 0 {
            events.push(ResidentEvent::MovedOut);
        }
        if i % 5 == 0 {
            let changes = PersonalChanges {
                kana_name: Some(PersonName {
                    family: KanaName::parse("イシダ").unwrap(),
                    given: KanaName::parse("カオル").unwrap(),
                }),
                ..PersonalChanges::default()
            };
            events.push(ResidentEvent::FieldsChanged { changes: Erasable::Known(changes) });
        }
        if i % 8 == 0 {
            events.push(ResidentEvent::CardDetached { fid: fid(&format!("BATCH{i}")) });
        }
        if i % 7 == 0 {
            events.push(ResidentEvent::Erased { reason: cardap_domain::resident::ErasureReason::RetentionExpired });
        }
        appends.push((Resident::STREAM_TYPE, id.to_string(), events));
    }
    // Interleaved as a busy log has them: resident by resident, then the next step of each.
    let batch: Vec<cardap_store::StreamAppend> = appends
        .iter()
        .map(|(t, k, events)| cardap_store::StreamAppend {
            stream: StreamId::new(t, k).unwrap(),
            expected: ExpectedVersion::NoStream,
            events: events.iter().map(NewEvent::from_domain).collect(),
        })
        .collect();
    at_once.store.append_many(batch, &Metadata::system()).await.unwrap();
    at_once.catch_up().await;
    for (t, k, events) in &appends {
        for event in events {
            one_by_one.append(t, k, vec![NewEvent::from_domain(event)]).await;
            one_by_one.catch_up().await;
        }
    }
    let expected = register_state(&one_by_one, &code, &ids).await;
    assert!(expected.iter().any(|s| s.contains("moved_out") || s.contains("true")), "{expected:?}");
    assert_eq!(register_state(&at_once, &code, &ids).await, expected);
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test]
            async fn registration_changes_and_move_out_are_reflected() {
                super::registration_changes_and_move_out_are_reflected(super::$backend().await).await;
            }
            #[tokio::test]
            async fn erased_events_null_the_personal_columns() {
                super::erased_events_null_the_personal_columns(super::$backend().await).await;
            }
            #[tokio::test]
            async fn erasure_events_purge_the_rows_in_place() {
                super::erasure_events_purge_the_rows_in_place(super::$backend().await).await;
            }
            #[tokio::test]
            async fn card_lifecycle_aps_and_counts() {
                super::card_lifecycle_aps_and_counts(super::$backend().await).await;
            }
            #[tokio::test]
            async fn searches_by_kana_birth_date_and_fid_in_pages() {
                super::searches_by_kana_birth_date_and_fid_in_pages(super::$backend().await).await;
            }
            #[tokio::test]
            async fn registry_entries_imports_changes_and_versions() {
                super::registry_entries_imports_changes_and_versions(super::$backend().await).await;
            }
            #[tokio::test]
            async fn the_settings_row() {
                super::the_settings_row(super::$backend().await).await;
            }
            #[tokio::test]
            async fn long_names_and_keys_that_are_not_cached() {
                super::long_names_and_keys_that_are_not_cached(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_batch_applied_at_once_equals_the_events_one_by_one() {
                super::a_batch_applied_at_once_equals_the_events_one_by_one(
                    super::$backend().await,
                    super::$backend().await,
                )
                .await;
            }
            #[tokio::test]
            async fn a_rebuild_reproduces_the_same_rows() {
                super::a_rebuild_reproduces_the_same_rows(super::$backend().await).await;
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
