//! 消去 (erasure, issue 12 point 6) end to end: the operations manager erases a resident after his move-out and
//! the retention period (or on a documented request); afterwards he is `410`, no search or registry lookup finds
//! anything of him, his events stay but read as erased, and the audit chain still verifies. Every refusal has its
//! own problem type; a clerk or an auditor may not erase; another municipality's path is `404` before the body is
//! read. A second node that had his data key cached stops showing his personal data without a restart. Every test
//! runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_domain::operator::Role;
use cardap_domain::resident::{ErasureReason, ErasureReference, ResidentEvent, RetentionPeriod};
use cardap_projections::audit::{AuditChain, Verdict};
use cardap_store::{Database, ExpectedVersion, Metadata, NewEvent, StreamId};
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, card_path, cards_path, eventually, on_both_backends, register_clerk, register_operator,
    registry_import_path, resident_body, resident_path, residents_path, spawn_app, spawn_app_on, spawn_app_with_clock,
};

/// 千代田区 and 札幌市.
const A: &str = "131016";
const B: &str = "011002";

const MANAGER_PASSWORD: &str = "ManagerPassw0rd";

fn erase_path(code: &str, id: &str) -> String {
    format!("{}/erase", resident_path(code, id))
}

fn retention_expired() -> Value {
    json!({"reason": "retention_expired"})
}

fn request(reference: &str) -> Value {
    json!({"reason": "request", "reference": reference})
}

/// Registers 千代田区 and 札幌市 and an operations manager of each; returns the admin's token.
async fn municipalities(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, A, "千代田区", 1).await;
    app.register_municipality(&admin, B, "札幌市", 2).await;
    register_operator(&app.state, Some(A), "MGR01", MANAGER_PASSWORD, &[Role::OperationsManager]).await;
    register_operator(&app.state, Some(B), "MGR02", MANAGER_PASSWORD, &[Role::OperationsManager]).await;
    admin
}

async fn manager(app: &TestApp, code: &str) -> String {
    let id = if code == A { "MGR01" } else { "MGR02" };
    app.login(Some(code), id, MANAGER_PASSWORD).await
}

/// Registers a resident of `code` from `body`; returns his id.
async fn register(app: &TestApp, token: &str, code: &str, body: &Value) -> String {
    let reply = app.post(&residents_path(code), Some(token), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["resident_id"].as_str().unwrap().to_owned()
}

async fn post_ok(app: &TestApp, token: &str, path: &str, body: &Value) -> Value {
    let reply = app.post(path, Some(token), body).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    reply.json()
}

/// The resident ids a search of `code` finds with `query`.
async fn found(app: &TestApp, token: &str, code: &str, query: &str) -> Vec<String> {
    let reply = app.get(&format!("{}?{query}", residents_path(code)), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()["items"].as_array().unwrap().iter().map(|r| r["resident_id"].as_str().unwrap().to_owned()).collect()
}

/// The history lines of a resident as node `app` shows them to the system administrator.
async fn history_of(app: &TestApp, token: &str, id: &str) -> String {
    let reply = app.get(&format!("/api/v1/audit/events?municipality={A}&resident_id={id}"), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.text
}

/// Waits until the audit chain has sealed every event, and returns its verdict then.
async fn verified(app: &TestApp) -> Verdict {
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let chain = AuditChain::new(app.state.read.pool().clone(), db.event_store());
    let events = app.event_count().await as u64;
    eventually(Duration::from_secs(20), "the audit chain to seal every event", || async {
        match chain.verify().await.unwrap() {
            Verdict::Intact { events: sealed } if sealed < events => None,
            verdict => Some(verdict),
        }
    })
    .await
}

async fn erased_after_the_move_out_and_the_retention_period_nothing_of_him_is_found(backend: Backend) {
    let app = spawn_app_with_clock(backend, |s| s.erasure_retention = RetentionPeriod::days(30).unwrap()).await;
    let admin = municipalities(&app).await;
    let manager_a = manager(&app, A).await;
    // He was prefilled from the registry; another resident of the same municipality stays as he is.
    let file = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n\
                000000001,山田 太郎,ヤマダ タロウ,3450101,1,100-0001,東京都千代田区千代田１－１\r\n";
    let reply =
        app.post_bytes(&registry_import_path(A), Some(&manager_a), "text/csv; charset=UTF-8", file.into()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut body = resident_body("ヤマダ", "タロウ", "3450101");
    body["registry_key"] = json!("000000001");
    body["address1"] = json!("東京都千代田区千代田１－１");
    body["phone"] = json!("090-1234-5678");
    let id = register(&app, &admin, A, &body).await;
    let other = register(&app, &admin, A, &resident_body("スズキ", "ハナコ", "4010203")).await;
    let card = app.post(&cards_path(A), Some(&admin), &json!({"fid": "FID0001", "resident_id": id})).await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.text);
    post_ok(&app, &admin, &format!("{}/abolish", card_path(A, "FID0001")), &json!({})).await;
    post_ok(&app, &admin, &format!("{}/move-out", resident_path(A, &id)), &json!({})).await;

    // Within the retention period: refused, naming the day from which it is possible.
    let early = app.post(&erase_path(A, &id), Some(&manager_a), &retention_expired()).await;
    let problem = early.problem(StatusCode::CONFLICT, "/problems/retention-not-passed");
    assert!(problem["detail"].as_str().unwrap().contains("保存期間"), "{problem}");

    app.advance(Duration::from_secs(31 * 86_400));
    let (admin, manager_a) = (app.admin_token().await, manager(&app, A).await);
    let erased = post_ok(&app, &manager_a, &erase_path(A, &id), &retention_expired()).await;
    assert_eq!(erased, json!({"resident_id": id, "erased": true, "reason": "retention_expired", "reference": null}));

    // Read, he is gone; no search finds him — by kana, birth date or his card's FID; the other one is there.
    let shown = app.get(&resident_path(A, &id), Some(&admin)).await;
    let problem = shown.problem(StatusCode::GONE, "/problems/resident-erased");
    assert!(!shown.text.contains("ヤマダ") && !problem["detail"].as_str().unwrap().is_empty());
    assert_eq!(found(&app, &admin, A, "kana_prefix=ヤマダ").await, Vec::<String>::new());
    assert_eq!(found(&app, &admin, A, "birth_date=3450101").await, Vec::<String>::new());
    assert_eq!(found(&app, &admin, A, "fid=FID0001").await, Vec::<String>::new());
    assert_eq!(found(&app, &admin, A, "").await, vec![other.clone()]);
    // His registry key says nothing about him: neither by key nor by the facts of his card.
    let entry = app.get(&format!("/api/v1/municipalities/{A}/registry/000000001"), Some(&admin)).await;
    assert_eq!(entry.status, StatusCode::NOT_FOUND, "{}", entry.text);
    assert!(!entry.text.contains("山田"));
    let facts = json!({"name": "山田太郎", "birth_date": "3450101", "sex": "1"});
    let lookup = app.post(&format!("/api/v1/municipalities/{A}/registry/lookup"), Some(&admin), &facts).await;
    assert_eq!(lookup.json()["items"], json!([]), "{}", lookup.text);
    // Nothing more is recorded about him.
    let change = app.patch(&resident_path(A, &id), Some(&admin), None, &json!({"occupation": "会社員"})).await;
    change.problem(StatusCode::CONFLICT, "/problems/resident-erased");

    // His events stay, read as erased; the erasure events themselves are plain.
    let his = app.state.store.read_stream(&StreamId::new("resident", &id).unwrap(), 1).await.unwrap();
    let types: Vec<&str> = his.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["ResidentRegistered", "ResidentCardAttached", "ResidentCardDetached", "ResidentMovedOut", "ResidentErased"]
    );
    assert_eq!(his[0].payload["personal"], Value::Null, "{}", his[0].payload);
    assert_eq!(his[0].payload["resident_id"], id.as_str());
    assert_eq!(his[4].payload, retention_expired());
    let entry_stream = StreamId::new("registry_entry", &format!("{A}.000000001")).unwrap();
    let entry = app.state.store.read_stream(&entry_stream, 1).await.unwrap();
    assert_eq!(
        entry.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        ["RegistryEntryImported", "RegistryEntryErased"]
    );
    assert_eq!(entry[0].payload["personal"], Value::Null);
    // The other resident still reads in full.
    let shown = app.get(&resident_path(A, &other), Some(&admin)).await.json();
    assert_eq!(shown["kana_name"]["family"], "スズキ", "{shown}");

    // The audit chain over the events as stored still verifies.
    assert!(matches!(verified(&app).await, Verdict::Intact { .. }));
}

async fn each_refusal_has_its_own_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = municipalities(&app).await;
    let manager_a = manager(&app, A).await;
    let carded = register(&app, &admin, A, &resident_body("ヤマダ", "タロウ", "3450101")).await;
    let card = app.post(&cards_path(A), Some(&admin), &json!({"fid": "FID0001", "resident_id": carded})).await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.text);
    let id = register(&app, &admin, A, &resident_body("スズキ", "ハナコ", "4010203")).await;

    // An active card first has to be abolished, whatever the reason (the Japanese detail says so).
    let reply = app.post(&erase_path(A, &carded), Some(&manager_a), &request("R8-0001")).await;
    let problem = reply.problem(StatusCode::CONFLICT, "/problems/card-still-active");
    assert!(problem["detail"].as_str().unwrap().contains("FID0001"), "{problem}");
    // Not moved out, without a documented request.
    let reply = app.post(&erase_path(A, &id), Some(&manager_a), &retention_expired()).await;
    let problem = reply.problem(StatusCode::CONFLICT, "/problems/resident-not-moved-out");
    assert!(problem["detail"].as_str().unwrap().contains("転出"), "{problem}");
    // Moved out, but the retention period (5 years by default) has not passed.
    post_ok(&app, &admin, &format!("{}/move-out", resident_path(A, &id)), &json!({})).await;
    let reply = app.post(&erase_path(A, &id), Some(&manager_a), &retention_expired()).await;
    reply.problem(StatusCode::CONFLICT, "/problems/retention-not-passed");

    // A clerk or an auditor may not erase; another municipality's manager does not see the resident's path, even
    // with a body that is not JSON (it is not read).
    let clerk = register_clerk(&app.state, A, "CLK01").await.login(&app).await;
    let auditor =
        register_operator(&app.state, Some(A), "AUD01", "AuditorPassw0rd", &[Role::Auditor]).await.login(&app).await;
    for token in [&clerk, &auditor] {
        let reply = app.post(&erase_path(A, &id), Some(token), &request("R8-0002")).await;
        reply.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    }
    let manager_b = manager(&app, B).await;
    let reply = app.post(&erase_path(A, &id), Some(&manager_b), &request("R8-0002")).await;
    reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let garbage = app
        .send_with(Method::POST, &erase_path(A, &id), Some(&manager_b), &[("content-type", "application/json")], None)
        .await;
    garbage.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    // Nor does a resident of A exist under B's path.
    let reply = app.post(&erase_path(B, &id), Some(&manager_b), &request("R8-0002")).await;
    reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    // A body that says no reason, an unknown one, a request without its reference, a reference that is a name.
    for (body, field) in [
        (json!({}), "/reason"),
        (json!({"reason": "forgotten"}), "/reason"),
        (json!({"reason": "request"}), "/reference"),
        (json!({"reason": "request", "reference": "山田太郎"}), "/reference"),
        (json!({"reason": "retention_expired", "reference": "R8-0003"}), "/reference"),
    ] {
        let reply = app.post(&erase_path(A, &id), Some(&manager_a), &body).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
        assert_eq!(reply.error_fields(), [field], "{body}: {}", reply.text);
    }

    // A documented request erases him before the retention period; once erased, again is refused.
    let erased = post_ok(&app, &manager_a, &erase_path(A, &id), &request("R8-SOMU-0123")).await;
    assert_eq!((erased["reason"].clone(), erased["reference"].clone()), (json!("request"), json!("R8-SOMU-0123")));
    let again = app.post(&erase_path(A, &id), Some(&manager_a), &request("R8-SOMU-0124")).await;
    again.problem(StatusCode::CONFLICT, "/problems/resident-erased");
    // The system administrator may erase too (a documented request before the move-out, once the card is gone).
    post_ok(&app, &admin, &format!("{}/abolish", card_path(A, "FID0001")), &json!({})).await;
    post_ok(&app, &admin, &erase_path(A, &carded), &request("R8-SOMU-0125")).await;
    app.get(&resident_path(A, &carded), Some(&admin)).await.problem(StatusCode::GONE, "/problems/resident-erased");
}

async fn a_second_node_stops_showing_him_without_a_restart(backend: Backend) {
    let node_a = spawn_app(backend).await;
    let admin = municipalities(&node_a).await;
    let mut body = resident_body("ヤマダ", "タロウ", "3450101");
    body["address1"] = json!("東京都千代田区千代田１－１");
    let id = register(&node_a, &admin, A, &body).await;

    // Node B reads his history, which opens his personal data with his key: now cached on node B.
    let node_b = spawn_app_on(node_a.settings.clone(), None).await;
    let admin_b = node_b.admin_token().await;
    assert!(history_of(&node_b, &admin_b, &id).await.contains("ヤマダ"), "node B reads him before the erasure");

    let manager_a = manager(&node_a, A).await;
    post_ok(&node_a, &manager_a, &erase_path(A, &id), &request("R8-SOMU-0123")).await;

    // Node B learns of the erasure from the log and stops opening his data, without a restart.
    eventually(Duration::from_secs(15), "node B to stop showing his personal data", || async {
        let history = history_of(&node_b, &admin_b, &id).await;
        (!history.contains("ヤマダ") && !history.contains("千代田１－１")).then_some(())
    })
    .await;
    let shown = node_b.get(&resident_path(A, &id), Some(&admin_b)).await;
    shown.problem(StatusCode::GONE, "/problems/resident-erased");
    assert!(history_of(&node_a, &admin, &id).await.contains("ResidentErased"));
}

/// The erase use case appends the event, then destroys the key; a process that dies in between leaves the event
/// without the destruction. Here the event is appended the way the use case does, and nobody destroys the key: the
/// erasure follower of the running node does.
async fn an_erasure_cut_short_before_its_key_was_destroyed_is_finished(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = municipalities(&app).await;
    let id = register(&app, &admin, A, &resident_body("ヤマダ", "タロウ", "3450101")).await;
    let subject = StreamId::new("resident", &id).unwrap();
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let vault = db.key_vault(app.settings.master_key.clone().unwrap()).unwrap();
    assert_eq!(vault.get(std::slice::from_ref(&subject)).await.unwrap().len(), 1, "he has a data key");

    let erased = ResidentEvent::Erased {
        reason: ErasureReason::Request { reference: ErasureReference::parse("R8-SOMU-0123").unwrap() },
    };
    app.state
        .store
        .append(&subject, ExpectedVersion::Exact(1), vec![NewEvent::from_domain(&erased)], &Metadata::system())
        .await
        .unwrap();

    eventually(Duration::from_secs(15), "the erasure follower to destroy his key", || async {
        vault.clear_cache();
        vault.get(std::slice::from_ref(&subject)).await.unwrap().is_empty().then_some(())
    })
    .await;
    let his = app.state.store.read_stream(&subject, 1).await.unwrap();
    assert_eq!(his[0].payload["personal"], Value::Null, "{}", his[0].payload);
}

on_both_backends!(
    erased_after_the_move_out_and_the_retention_period_nothing_of_him_is_found,
    each_refusal_has_its_own_answer,
    a_second_node_stops_showing_him_without_a_restart,
    an_erasure_cut_short_before_its_key_was_destroyed_is_finished
);
