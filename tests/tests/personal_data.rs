//! Personal data is erasable from the start (crypto-shredding): what a clerk registers about a resident is
//! stored sealed under that resident's own data key, and destroying the key makes it unreadable everywhere the
//! events go — the event log read raw, a new node, a rebuilt read model — while the events themselves stay.
//! Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_store::{Checkpoint, Database, ReadFilter, RecordedEvent, StreamId};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::{
    Backend, TestApp, card_path, cards_path, on_both_backends, resident_body, resident_path, residents_path, spawn_app,
    spawn_app_on,
};

const CHIYODA: &str = "131016";

/// Registers 千代田区 and one resident with an address and a phone number; returns (admin token, resident_id).
async fn registered(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let mut body = resident_body("ヤマダ", "タロウ", "3450101");
    body["address1"] = json!("東京都千代田区千代田１－１");
    body["phone"] = json!("090-1234-5678");
    let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
    (admin, id)
}

/// Every event as stored, read past the sealing layer.
async fn raw_events(app: &TestApp) -> Vec<RecordedEvent> {
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    db.event_store().read_all(Checkpoint::START, 10_000, &ReadFilter::All).await.unwrap()
}

async fn the_log_holds_no_personal_data_in_clear(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, id) = registered(&app).await;

    let raw = raw_events(&app).await;
    let resident: Vec<_> = raw.iter().filter(|e| e.stream_type == "resident").collect();
    assert_eq!(resident.len(), 1);
    let text = resident[0].payload.to_string();
    for clear in ["ヤマダ", "タロウ", "山田", "太郎", "3450101", "千代田", "090-1234-5678"] {
        assert!(!text.contains(clear), "{clear} is stored in clear: {text}");
    }
    assert_eq!(resident[0].payload["personal"]["sealed"], "aes-256-gcm/v1");
    assert_eq!(resident[0].payload["resident_id"], id.as_str(), "ids stay readable");

    // Through the server the clerk reads it back.
    let admin = app.admin_token().await;
    let shown = app.get(&resident_path(CHIYODA, &id), Some(&admin)).await.json();
    assert_eq!(shown["kana_name"]["family"], "ヤマダ");
    assert_eq!(shown["address1"], "東京都千代田区千代田１－１");
}

async fn destroying_the_key_erases_him_everywhere_and_keeps_the_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, id) = registered(&app).await;
    let (_, other) = {
        let body = resident_body("スズキ", "ハナコ", "4010203");
        let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        ((), reply.json()["resident_id"].as_str().unwrap().to_owned())
    };
    let card = app.post(&cards_path(CHIYODA), Some(&admin), &json!({"fid": "FID0001", "resident_id": id})).await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.text);
    let his_events = |events: Vec<RecordedEvent>| {
        events.into_iter().filter(|e| !e.stream_type.starts_with("operator")).map(|e| e.event_id).collect::<Vec<_>>()
    };
    let events_before = his_events(raw_events(&app).await);

    // The erasure workflow comes later; its core is this: destroy the resident's data key.
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let vault = db.key_vault(app.settings.master_key.clone().unwrap()).unwrap();
    vault.destroy(&StreamId::new("resident", &id).unwrap()).await.unwrap();

    // A node that never saw his key (no cache) answers with his ids only.
    let node = spawn_app_on(app.settings.clone(), None).await;
    let token = node.admin_token().await;
    let shown = node.get(&resident_path(CHIYODA, &id), Some(&token)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let shown = shown.json();
    assert_eq!(shown["erased"], true, "{shown}");
    for field in ["kana_name", "kanji_name", "birth_date", "address1", "phone"] {
        assert!(shown[field].is_null(), "{field} still readable: {shown}");
    }
    assert_eq!(shown["active_fid"], "FID0001", "the card link is not personal data");
    let card = node.get(&card_path(CHIYODA, "FID0001"), Some(&token)).await.json();
    assert_eq!(card["resident_id"], id.as_str());

    // Rebuilt from the log, the read model has nothing of him either; the other resident is untouched.
    for runner in node.state.read.runners(node.state.store.clone()) {
        if runner.name() == "residents" {
            runner.reset().await.unwrap();
            runner.catch_up().await.unwrap();
        }
    }
    let found = node.get(&format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA)), Some(&token)).await.json();
    assert_eq!(found["items"].as_array().unwrap().len(), 0, "{found}");
    let found = node.get(&format!("{}?kana_prefix=スズキ", residents_path(CHIYODA)), Some(&token)).await.json();
    assert_eq!(found["items"][0]["resident_id"], other.as_str(), "{found}");

    // Nothing more can be recorded about him, and the events themselves all stay.
    let change = node.patch(&resident_path(CHIYODA, &id), Some(&token), None, &json!({"occupation": "会社員"})).await;
    assert_eq!(change.status, StatusCode::CONFLICT, "{}", change.text);
    assert_eq!(his_events(raw_events(&app).await), events_before, "only logins were recorded since");
}

on_both_backends!(
    the_log_holds_no_personal_data_in_clear,
    destroying_the_key_erases_him_everywhere_and_keeps_the_events
);
