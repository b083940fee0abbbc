//! `/api/v1/municipalities/{code}/cards` at the counter (手引き I 1.1–1.2): the whole clerk workflow from the
//! settings to a second card; the local area with the municipality's presets (the library AP with its 標準ID);
//! several APs at once, all or none, each refusal named by its index; suspend, resume, abolish; `If-Match` and
//! `Idempotency-Key`; an FID unique across municipalities; one active card per resident; the clerk's 許可業務 and
//! the municipality's shared use; and cards of another municipality, which do not exist for the clerk. After every
//! refused request the event log is unchanged. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, business_system, card_path, cards_path, on_both_backends, resident_body, resident_path,
    resident_settings_path, residents_path, spawn_app,
};

/// 千代田区: the clerk's municipality.
const CHIYODA: &str = "131016";
/// 札幌市: another municipality.
const SAPPORO: &str = "011002";

/// `code` registered and permitted 01, 02 and the municipalities' own systems 10 and 11 (registered if needed);
/// APs 01, 02, 10, 11 offered, 01 and 02 preset.
async fn municipality(app: &TestApp, admin: &str, code: &str, name: &str, order: i64) {
    app.register_municipality(admin, code, name, order).await;
    offer_services(app, admin, code).await;
}

/// `code` permitted 01, 02, 10 and 11 (registered if needed); APs 01, 02, 10, 11 offered, 01 and 02 preset.
async fn offer_services(app: &TestApp, admin: &str, code: &str) {
    for (id, system) in [("10", "施設予約"), ("11", "図書返却ポスト")] {
        let reply = app.post("/api/v1/business-systems", Some(admin), &business_system(id, system)).await;
        assert!(reply.status.is_success() || reply.status == StatusCode::CONFLICT, "{}", reply.text);
    }
    for id in ["01", "02", "10", "11"] {
        app.permit(admin, id, code).await;
    }
    let reply = app.put(&resident_settings_path(code), Some(admin), &settings()).await;
    assert_eq!(reply.status, StatusCode::OK, "settings of {code}: {}", reply.text);
}

/// A required choice; APs 01, 02, 10, 11 offered, 01 and 02 preset.
fn settings() -> Value {
    let mut district = json!({"key": "school_district", "label": "学区", "type": "choice", "required": true});
    district["options"] = json!(["第一", "第二"]);
    json!({"custom_fields": [district], "catalog": ["01", "02", "10", "11"], "presets": ["01", "02"]})
}

/// 千代田区 set up, and a clerk permitted every AP; returns (admin, clerk).
async fn chiyoda(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    municipality(app, &admin, CHIYODA, "千代田区", 1).await;
    let clerk = app.clerk_token(&admin, CHIYODA, "CL0001", &["01", "02", "10", "11"]).await;
    (admin, clerk)
}

fn resident(kana_family: &str, kana_given: &str) -> Value {
    let mut body = resident_body(kana_family, kana_given, "3450101");
    body["custom_fields"] = json!({"school_district": "第一"});
    body
}

/// Registers a resident of `code`; returns his id.
async fn register_resident(app: &TestApp, token: &str, code: &str, kana_given: &str) -> String {
    let reply = app.post(&residents_path(code), Some(token), &resident("ヤマダ", kana_given)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["resident_id"].as_str().unwrap().to_owned()
}

fn card(fid: &str, resident_id: &str) -> Value {
    json!({"fid": fid, "resident_id": resident_id})
}

/// Registers a card of `code`; panics unless 201. Returns the card.
async fn register_card(app: &TestApp, token: &str, code: &str, fid: &str, resident_id: &str) -> Value {
    let reply = app.post(&cards_path(code), Some(token), &card(fid, resident_id)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "card {fid}: {}", reply.text);
    reply.json()
}

/// `POST …/cards/{fid}/{action}` with optional headers.
fn action(
    app: &TestApp,
    token: &str,
    code: &str,
    fid: &str,
    action: &str,
    headers: &[(&str, &str)],
) -> impl Future<Output = Reply> + use<> {
    app.send_with(Method::POST, &format!("{}/{action}", card_path(code, fid)), Some(token), headers, None)
}

/// `POST …/cards/{fid}/local-area` with the resident's consent for the preset AP 01.
fn local_area(
    app: &TestApp,
    token: &str,
    code: &str,
    fid: &str,
    headers: &[(&str, &str)],
) -> impl Future<Output = Reply> + use<> {
    let path = format!("{}/local-area", card_path(code, fid));
    app.send_with(Method::POST, &path, Some(token), headers, Some(&json!({"issuance_consent": true})))
}

/// `POST …/cards/{fid}/aps`, with the resident's consent for AP 01 (ignored by the others).
fn install(app: &TestApp, token: &str, code: &str, fid: &str, ids: &[&str]) -> impl Future<Output = Reply> + use<> {
    let body = json!({"business_ids": ids, "issuance_consent": true});
    app.post(&format!("{}/aps", card_path(code, fid)), Some(token), &body)
}

fn remove(app: &TestApp, token: &str, code: &str, fid: &str, id: &str) -> impl Future<Output = Reply> + use<> {
    app.delete(&format!("{}/aps/{id}", card_path(code, fid)), Some(token))
}

/// Asserts a 200 with a card, and returns it.
#[track_caller]
fn ok(reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

/// The business ids of a card's APs, in order.
fn aps(card: &Value) -> Vec<String> {
    card["aps"].as_array().unwrap().iter().map(|a| a["business_id"].as_str().unwrap().to_owned()).collect()
}

/// Sends the request behind `reply`, asserts the refusal, and that the event log did not change.
async fn refused(app: &TestApp, reply: impl Future<Output = Reply>, status: StatusCode, kind: &str) -> Reply {
    let before = app.event_count().await;
    let reply = reply.await;
    reply.problem(status, kind);
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {}", reply.text);
    reply
}

async fn invalid(app: &TestApp, reply: impl Future<Output = Reply>, fields: &[&str]) -> Reply {
    let reply = refused(app, reply, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), fields, "{}", reply.text);
    reply
}

async fn ap_counts(app: &TestApp, token: &str) -> Value {
    let reply = app.get(&format!("/api/v1/municipalities/{CHIYODA}/card-aps"), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

async fn the_whole_clerk_workflow(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    let found =
        app.get(&format!("{}?kana_prefix=ﾔﾏﾀﾞﾀ&birth_date=3450101", residents_path(CHIYODA)), Some(&clerk)).await;
    assert_eq!(ok(&found)["items"][0]["resident_id"], taro.as_str());

    // The card.
    let before = app.event_count().await;
    let reply = app.post(&cards_path(CHIYODA), Some(&clerk), &card("FID0001", &taro)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(app.event_count().await, before + 2, "the card and the resident's link, together");
    assert_eq!(reply.header("location"), Some(card_path(CHIYODA, "FID0001").as_str()));
    assert_eq!(reply.etag(), "\"1\"");
    let registered = reply.json();
    assert_eq!(
        registered,
        json!({"fid": "FID0001", "resident_id": taro, "status": "in_use", "local_area": false, "aps": [], "version": 1})
    );
    assert_eq!(app.get(&card_path(CHIYODA, "FID0001"), Some(&clerk)).await.json(), registered);
    let him = app.get(&resident_path(CHIYODA, &taro), Some(&clerk)).await.json();
    assert_eq!(him["active_fid"], "FID0001");
    let by_fid = app.get(&format!("{}?fid=FID0001", residents_path(CHIYODA)), Some(&clerk)).await;
    assert_eq!(ok(&by_fid)["items"][0]["resident_id"], taro.as_str());

    // No AP before the local area.
    refused(
        &app,
        install(&app, &clerk, CHIYODA, "FID0001", &["10"]),
        StatusCode::CONFLICT,
        "/problems/local-area-missing",
    )
    .await;

    // The local area brings the presets; the library AP gets its 標準ID.
    let with_area = ok(&local_area(&app, &clerk, CHIYODA, "FID0001", &[("if-match", "\"1\"")]).await);
    assert_eq!(with_area["local_area"], true);
    assert_eq!(aps(&with_area), ["01", "02"]);
    assert_eq!(with_area["aps"][0], json!({"business_id": "01"}), "only the library AP has a 標準ID");
    let standard_id = with_area["aps"][1]["standard_id"].as_str().expect("a 標準ID").to_owned();
    assert_eq!(standard_id.len(), 16, "{standard_id}");
    assert!(standard_id.starts_with(CHIYODA) && standard_id.bytes().all(|b| b.is_ascii_digit()), "{standard_id}");
    refused(
        &app,
        local_area(&app, &clerk, CHIYODA, "FID0001", &[]),
        StatusCode::CONFLICT,
        "/problems/local-area-exists",
    )
    .await;

    // Several APs at once.
    let before = app.event_count().await;
    let installed = ok(&install(&app, &clerk, CHIYODA, "FID0001", &["10", "11"]).await);
    assert_eq!(aps(&installed), ["01", "02", "10", "11"]);
    assert_eq!(app.event_count().await, before + 2);
    assert_eq!(installed["aps"][1]["standard_id"], standard_id.as_str(), "the 標準ID stays");
    assert_eq!(
        ap_counts(&app, &clerk).await,
        json!({"items": [
            {"business_id": "01", "cards": 1}, {"business_id": "02", "cards": 1},
            {"business_id": "10", "cards": 1}, {"business_id": "11", "cards": 1},
        ]})
    );
    refused(
        &app,
        install(&app, &clerk, CHIYODA, "FID0001", &["10"]),
        StatusCode::CONFLICT,
        "/problems/ap-already-installed",
    )
    .await;

    // Remove one.
    let removed = ok(&remove(&app, &clerk, CHIYODA, "FID0001", "11").await);
    assert_eq!(aps(&removed), ["01", "02", "10"]);
    refused(&app, remove(&app, &clerk, CHIYODA, "FID0001", "11"), StatusCode::CONFLICT, "/problems/ap-not-installed")
        .await;

    // Suspended (lost): nothing can be installed until it is resumed.
    let suspended = ok(&action(&app, &clerk, CHIYODA, "FID0001", "suspend", &[]).await);
    assert_eq!(suspended["status"], "suspended");
    refused(&app, install(&app, &clerk, CHIYODA, "FID0001", &["11"]), StatusCode::CONFLICT, "/problems/card-suspended")
        .await;
    refused(
        &app,
        action(&app, &clerk, CHIYODA, "FID0001", "suspend", &[]),
        StatusCode::CONFLICT,
        "/problems/card-already-suspended",
    )
    .await;
    let resumed = ok(&action(&app, &clerk, CHIYODA, "FID0001", "resume", &[]).await);
    assert_eq!(resumed["status"], "in_use");
    refused(
        &app,
        action(&app, &clerk, CHIYODA, "FID0001", "resume", &[]),
        StatusCode::CONFLICT,
        "/problems/card-not-suspended",
    )
    .await;
    assert_eq!(aps(&ok(&install(&app, &clerk, CHIYODA, "FID0001", &["11"]).await)), ["01", "02", "10", "11"]);

    // Abolished, for good; the resident may get a new card.
    let abolished = ok(&action(&app, &clerk, CHIYODA, "FID0001", "abolish", &[]).await);
    assert_eq!(abolished["status"], "abolished");
    assert_eq!(app.get(&resident_path(CHIYODA, &taro), Some(&clerk)).await.json()["active_fid"], Value::Null);
    assert_eq!(ap_counts(&app, &clerk).await, json!({"items": []}), "an abolished card counts no more");
    for step in ["resume", "suspend", "abolish", "local-area"] {
        refused(
            &app,
            action(&app, &clerk, CHIYODA, "FID0001", step, &[]),
            StatusCode::CONFLICT,
            "/problems/card-abolished",
        )
        .await;
    }
    refused(&app, install(&app, &clerk, CHIYODA, "FID0001", &["10"]), StatusCode::CONFLICT, "/problems/card-abolished")
        .await;
    let second = register_card(&app, &clerk, CHIYODA, "FID0002", &taro).await;
    assert_eq!(second["status"], "in_use");
    let second = ok(&local_area(&app, &clerk, CHIYODA, "FID0002", &[]).await);
    let new_id = second["aps"][1]["standard_id"].as_str().unwrap();
    assert_ne!(new_id, standard_id, "a 標準ID is never reused");
    assert_eq!(app.get(&resident_path(CHIYODA, &taro), Some(&clerk)).await.json()["active_fid"], "FID0002");
    // The abolished FID is released: registered again, it is a new card, with nothing of the old one.
    let other = register_resident(&app, &clerk, CHIYODA, "ハナコ").await;
    let again = register_card(&app, &clerk, CHIYODA, "FID0001", &other).await;
    assert_eq!((&again["status"], &again["local_area"], &again["aps"]), (&json!("in_use"), &json!(false), &json!([])));
    assert_eq!(again["resident_id"], other.as_str());
    let counted = json!({"items": [{"business_id": "01", "cards": 1}, {"business_id": "02", "cards": 1}]});
    assert_eq!(ap_counts(&app, &clerk).await, counted, "FID0002's APs only");
}

/// The physical card moves with its holder (issue 9, point 12): once the municipality he leaves has abolished it
/// (he cannot move out before), the municipality he moves to registers it as a card of its own; the one he left
/// no longer sees it, and it does not count there.
async fn a_card_moves_with_its_holder_once_released(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk_a) = chiyoda(&app).await;
    municipality(&app, &admin, SAPPORO, "札幌市", 2).await;
    let clerk_b = app.clerk_token(&admin, SAPPORO, "CL0002", &["01", "02", "10", "11"]).await;
    let taro = register_resident(&app, &clerk_a, CHIYODA, "タロウ").await;
    register_card(&app, &clerk_a, CHIYODA, "FID0001", &taro).await;
    ok(&local_area(&app, &clerk_a, CHIYODA, "FID0001", &[]).await);
    let taro_in_b = register_resident(&app, &clerk_b, SAPPORO, "タロウ").await;

    // Still A's: B cannot take it, and cannot tell from the answer where it is.
    let taken = app.post(&cards_path(SAPPORO), Some(&clerk_b), &card("FID0001", &taro_in_b));
    refused(&app, taken, StatusCode::CONFLICT, "/problems/fid-taken").await;
    // A may not move him out while his card is active; it abolishes the card first, then moves him out.
    let path = format!("{}/move-out", resident_path(CHIYODA, &taro));
    refused(&app, app.post_empty(&path, Some(&clerk_a)), StatusCode::CONFLICT, "/problems/card-still-active").await;
    ok(&action(&app, &clerk_a, CHIYODA, "FID0001", "abolish", &[]).await);
    assert_eq!(app.post_empty(&path, Some(&clerk_a)).await.status, StatusCode::OK);

    let moved = register_card(&app, &clerk_b, SAPPORO, "FID0001", &taro_in_b).await;
    assert_eq!((&moved["status"], &moved["local_area"], &moved["aps"]), (&json!("in_use"), &json!(false), &json!([])));
    assert_eq!(moved["resident_id"], taro_in_b.as_str());
    let with_area = ok(&local_area(&app, &clerk_b, SAPPORO, "FID0001", &[]).await);
    assert_eq!(aps(&with_area), ["01", "02"]);
    assert!(with_area["aps"][1]["standard_id"].as_str().unwrap().starts_with(SAPPORO), "{with_area}");
    // A no longer has it: not shown, not acted on, not counted.
    app.get(&card_path(CHIYODA, "FID0001"), Some(&clerk_a)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let suspend = action(&app, &clerk_a, CHIYODA, "FID0001", "suspend", &[]);
    refused(&app, suspend, StatusCode::NOT_FOUND, "/problems/not-found").await;
    assert_eq!(ap_counts(&app, &clerk_a).await, json!({"items": []}));
    assert_eq!(ok(&app.get(&card_path(SAPPORO, "FID0001"), Some(&clerk_b)).await)["resident_id"], taro_in_b.as_str());
}

async fn bad_requests_name_the_field_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk) = chiyoda(&app).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    let path = cards_path(CHIYODA);

    for (body, fields) in [
        (json!({}), vec!["/fid", "/resident_id"]),
        (card("FID-0001", &taro), vec!["/fid"]),
        (card("", &taro), vec!["/fid"]),
        (card(&"F".repeat(33), &taro), vec!["/fid"]),
        (card("FID0001", "taro"), vec!["/resident_id"]),
        (json!({"fid": "FID0001", "resident_id": taro, "status": "in_use"}), vec!["/status"]),
    ] {
        let fields: Vec<&str> = fields;
        invalid(&app, app.post(&path, Some(&clerk), &body), &fields).await;
    }
    // A resident who does not exist (or is another municipality's) is a bad `resident_id`.
    let nobody = uuid::Uuid::new_v4().to_string();
    let reply = invalid(&app, app.post(&path, Some(&clerk), &card("FID0001", &nobody)), &["/resident_id"]).await;
    assert_eq!(reply.error_message("/resident_id"), "この市町村に該当する利用者が登録されていません");

    register_card(&app, &clerk, CHIYODA, "FID0001", &taro).await;
    ok(&local_area(&app, &clerk, CHIYODA, "FID0001", &[]).await);
    let aps_path = format!("{}/aps", card_path(CHIYODA, "FID0001"));
    for (body, fields) in [
        (json!({"business_ids": []}), vec!["/business_ids"]),
        (json!({}), vec!["/business_ids"]),
        (json!({"business_ids": ["10", "1", "x0"]}), vec!["/business_ids/1", "/business_ids/2"]),
        (json!({"business_ids": ["10", "11", "10"]}), vec!["/business_ids/2"]),
        (json!({"business_ids": "10"}), vec!["/business_ids"]),
        (json!({"business_ids": ["10"], "fid": "FID0001"}), vec!["/fid"]),
    ] {
        let fields: Vec<&str> = fields;
        invalid(&app, app.post(&aps_path, Some(&clerk), &body), &fields).await;
    }
    let reply = invalid(&app, install(&app, &clerk, CHIYODA, "FID0001", &["10", "10"]), &["/business_ids/1"]).await;
    assert_eq!(reply.error_message("/business_ids/1"), "業務ID 10 が重複して指定されています");
    // Not offered to the municipality (99 is nobody's; 00 is cardap's own administration); the system
    // administrator holds every business system, so only the offer refuses.
    let reply = invalid(
        &app,
        install(&app, &admin, CHIYODA, "FID0001", &["10", "99", "00"]),
        &["/business_ids/1", "/business_ids/2"],
    )
    .await;
    assert_eq!(reply.error_message("/business_ids/1"), "業務ID 99 の共同利用が許可されていません");
    // A clerk is refused what his 許可業務 lacks before anything else.
    refused(&app, install(&app, &clerk, CHIYODA, "FID0001", &["99"]), StatusCode::FORBIDDEN, "/problems/forbidden")
        .await;
    // In the municipality's shared use, but not in its catalog.
    let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system("12", "健診")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    app.permit(&admin, "12", CHIYODA).await;
    let reply = invalid(&app, install(&app, &admin, CHIYODA, "FID0001", &["10", "12"]), &["/business_ids/1"]).await;
    assert_eq!(reply.error_message("/business_ids/1"), "業務ID 12 はこの市町村の搭載可能APではありません");
    // Nothing of a refused batch was installed.
    assert_eq!(aps(&app.get(&card_path(CHIYODA, "FID0001"), Some(&clerk)).await.json()), ["01", "02"]);

    // Unknown cards and nonsense ids are not found.
    for path in [card_path(CHIYODA, "FID9999"), card_path(CHIYODA, "FID-1")] {
        app.get(&path, Some(&clerk)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }
    refused(&app, remove(&app, &clerk, CHIYODA, "FID0001", "1x"), StatusCode::NOT_FOUND, "/problems/not-found").await;
}

async fn if_match_and_idempotency_key_hold_for_cards(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    let path = cards_path(CHIYODA);
    let post = |key: &str| {
        app.send_with(Method::POST, &path, Some(&clerk), &[("idempotency-key", key)], Some(&card("FID0001", &taro)))
    };
    let before = app.event_count().await;

    let first = post("c-0001").await;
    let retry = post("c-0001").await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert_eq!(retry.json(), first.json());
    assert_eq!(app.event_count().await, before + 2, "registered once");

    // A local area retried with its key: the presets (and a 標準ID) once.
    let area = || local_area(&app, &clerk, CHIYODA, "FID0001", &[("idempotency-key", "c-0002")]);
    let created = ok(&area().await);
    let before = app.event_count().await;
    assert_eq!(ok(&area().await), created);
    assert_eq!(app.event_count().await, before);

    // A stale If-Match is refused for every change.
    let stale = [("if-match", "\"1\"")];
    refused(
        &app,
        action(&app, &clerk, CHIYODA, "FID0001", "suspend", &stale),
        StatusCode::PRECONDITION_FAILED,
        "/problems/precondition-failed",
    )
    .await;
    let aps = app.send_with(
        Method::POST,
        &format!("{}/aps", card_path(CHIYODA, "FID0001")),
        Some(&clerk),
        &stale,
        Some(&json!({"business_ids": ["10"]})),
    );
    refused(&app, aps, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    let delete =
        app.send_with(Method::DELETE, &format!("{}/aps/01", card_path(CHIYODA, "FID0001")), Some(&clerk), &stale, None);
    refused(&app, delete, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    let current = app.get(&card_path(CHIYODA, "FID0001"), Some(&clerk)).await;
    let version = current.etag().to_owned();
    let suspended = ok(&action(&app, &clerk, CHIYODA, "FID0001", "suspend", &[("if-match", &version)]).await);
    assert_eq!(suspended["status"], "suspended");
    assert_ne!(format!("\"{}\"", suspended["version"]), version);
}

async fn an_fid_is_unique_across_municipalities(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk_a) = chiyoda(&app).await;
    municipality(&app, &admin, SAPPORO, "札幌市", 2).await;
    let clerk_b = app.clerk_token(&admin, SAPPORO, "CL0002", &["01", "02", "10", "11"]).await;
    let taro = register_resident(&app, &clerk_a, CHIYODA, "タロウ").await;
    let jiro = register_resident(&app, &clerk_b, SAPPORO, "ジロウ").await;
    register_card(&app, &clerk_a, CHIYODA, "FID0001", &taro).await;

    let taken = app.post(&cards_path(SAPPORO), Some(&clerk_b), &card("FID0001", &jiro));
    let reply = refused(&app, taken, StatusCode::CONFLICT, "/problems/fid-taken").await;
    for secret in [CHIYODA, "千代田", taro.as_str()] {
        assert!(!reply.text.contains(secret), "the refusal says nothing about the card's owner: {}", reply.text);
    }
    // Within one municipality too.
    let hanako = register_resident(&app, &clerk_a, CHIYODA, "ハナコ").await;
    let taken = app.post(&cards_path(CHIYODA), Some(&clerk_a), &card("FID0001", &hanako));
    refused(&app, taken, StatusCode::CONFLICT, "/problems/fid-taken").await;
    register_card(&app, &clerk_b, SAPPORO, "FID0002", &jiro).await;
}

/// A reader may report an FID in either case: it is one card, stored in upper case, found in either case, and
/// cannot be registered twice.
async fn one_physical_card_is_one_fid_in_either_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk) = chiyoda(&app).await;
    municipality(&app, &admin, SAPPORO, "札幌市", 2).await;
    let clerk_b = app.clerk_token(&admin, SAPPORO, "CL0002", &["01", "02", "10", "11"]).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    let hanako = register_resident(&app, &clerk, CHIYODA, "ハナコ").await;
    let jiro = register_resident(&app, &clerk_b, SAPPORO, "ジロウ").await;

    let registered = register_card(&app, &clerk, CHIYODA, "ABCDEF0123", &taro).await;
    assert_eq!(registered["fid"], "ABCDEF0123");

    // The same card typed in lower or mixed case is taken, in this municipality and in any other.
    for (token, code, resident, fid) in [
        (&clerk, CHIYODA, &hanako, "abcdef0123"),
        (&clerk, CHIYODA, &hanako, "AbCdEf0123"),
        (&clerk_b, SAPPORO, &jiro, "abcdef0123"),
    ] {
        let again = app.post(&cards_path(code), Some(token), &card(fid, resident));
        refused(&app, again, StatusCode::CONFLICT, "/problems/fid-taken").await;
    }
    // Found in either case, and shown in upper case.
    let shown = ok(&app.get(&card_path(CHIYODA, "abcdef0123"), Some(&clerk)).await);
    assert_eq!(shown["fid"], "ABCDEF0123");
    assert_eq!(shown["resident_id"], taro.as_str());
    assert_eq!(ok(&action(&app, &clerk, CHIYODA, "abcdef0123", "suspend", &[]).await)["status"], "suspended");
    let by_fid = ok(&app.get(&format!("{}?fid=abcdef0123", residents_path(CHIYODA)), Some(&clerk)).await);
    let found: Vec<&str> =
        by_fid["items"].as_array().unwrap().iter().map(|r| r["resident_id"].as_str().unwrap()).collect();
    assert_eq!(found, [taro.as_str()]);
    assert_eq!(app.get(&resident_path(CHIYODA, &taro), Some(&clerk)).await.json()["active_fid"], "ABCDEF0123");

    // A card registered in lower case is stored in upper case.
    let lower = register_card(&app, &clerk, CHIYODA, "fid00ff", &hanako).await;
    assert_eq!(lower["fid"], "FID00FF");
    assert_eq!(ok(&app.get(&card_path(CHIYODA, "FID00FF"), Some(&clerk)).await)["resident_id"], hanako.as_str());
}

/// An association (任意団体) has no 全国地方公共団体コード: its cards live under its association ID, and the library
/// AP's 標準ID is that ID followed by 10 digits.
async fn an_associations_cards_get_a_standard_id_from_its_association_id(backend: Backend) {
    const NISHI_KANTO: &str = "A00001";
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let body = json!({"code": NISHI_KANTO, "name": "西関東協議会", "kind": "association", "display_order": 7});
    let reply = app.post("/api/v1/municipalities", Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    offer_services(&app, &admin, NISHI_KANTO).await;
    let clerk = app.clerk_token(&admin, NISHI_KANTO, "CL0001", &["01", "02"]).await;
    let taro = register_resident(&app, &clerk, NISHI_KANTO, "タロウ").await;
    register_card(&app, &clerk, NISHI_KANTO, "FID0001", &taro).await;

    let with_area = ok(&local_area(&app, &clerk, NISHI_KANTO, "FID0001", &[]).await);

    assert_eq!(aps(&with_area), ["01", "02"]);
    let standard_id = with_area["aps"][1]["standard_id"].as_str().expect("a 標準ID");
    assert_eq!(standard_id.len(), 16, "{standard_id}");
    assert!(
        standard_id.starts_with(NISHI_KANTO) && standard_id[6..].bytes().all(|b| b.is_ascii_digit()),
        "{standard_id}"
    );
    assert_eq!(ok(&app.get(&card_path(NISHI_KANTO, "FID0001"), Some(&clerk)).await)["aps"], with_area["aps"]);
}

async fn a_resident_has_one_active_card(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    register_card(&app, &clerk, CHIYODA, "FID0001", &taro).await;

    let second = app.post(&cards_path(CHIYODA), Some(&clerk), &card("FID0002", &taro));
    let reply = refused(&app, second, StatusCode::CONFLICT, "/problems/resident-has-card").await;
    assert!(reply.json()["detail"].as_str().unwrap().contains("FID0001"), "{}", reply.text);
    // A suspended card is still his.
    ok(&action(&app, &clerk, CHIYODA, "FID0001", "suspend", &[]).await);
    let second = app.post(&cards_path(CHIYODA), Some(&clerk), &card("FID0002", &taro));
    refused(&app, second, StatusCode::CONFLICT, "/problems/resident-has-card").await;
    ok(&action(&app, &clerk, CHIYODA, "FID0001", "abolish", &[]).await);
    register_card(&app, &clerk, CHIYODA, "FID0002", &taro).await;
    app.get(&card_path(CHIYODA, "FID0002"), Some(&clerk)).await.json()["resident_id"]
        .as_str()
        .filter(|id| *id == taro)
        .expect("the new card is his");
}

async fn cards_of_another_municipality_do_not_exist(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk_a) = chiyoda(&app).await;
    municipality(&app, &admin, SAPPORO, "札幌市", 2).await;
    let clerk_b = app.clerk_token(&admin, SAPPORO, "CL0002", &["01", "02", "10", "11"]).await;
    let taro = register_resident(&app, &clerk_a, CHIYODA, "タロウ").await;
    register_card(&app, &clerk_a, CHIYODA, "FID0001", &taro).await;
    ok(&local_area(&app, &clerk_a, CHIYODA, "FID0001", &[]).await);
    let not_found = app.get(&card_path(SAPPORO, "FID9999"), Some(&clerk_b)).await;
    not_found.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    for code in [SAPPORO, CHIYODA] {
        let reply = app.get(&card_path(code, "FID0001"), Some(&clerk_b)).await;
        reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
        assert_eq!(reply.text, not_found.text, "byte-identical to a card that does not exist");
        for step in ["local-area", "suspend", "resume", "abolish"] {
            let reply = refused(
                &app,
                action(&app, &clerk_b, code, "FID0001", step, &[]),
                StatusCode::NOT_FOUND,
                "/problems/not-found",
            )
            .await;
            assert_eq!(reply.text, not_found.text, "{step}");
        }
        let reply = refused(
            &app,
            install(&app, &clerk_b, code, "FID0001", &["10"]),
            StatusCode::NOT_FOUND,
            "/problems/not-found",
        )
        .await;
        assert_eq!(reply.text, not_found.text);
        refused(&app, remove(&app, &clerk_b, code, "FID0001", "01"), StatusCode::NOT_FOUND, "/problems/not-found")
            .await;
    }
    // A's resident cannot get a card in B: he does not exist there.
    let theirs = app.post(&cards_path(SAPPORO), Some(&clerk_b), &card("FID0002", &taro));
    let reply = invalid(&app, theirs, &["/resident_id"]).await;
    let nobody = app.post(&cards_path(SAPPORO), Some(&clerk_b), &card("FID0002", &uuid::Uuid::new_v4().to_string()));
    assert_eq!(nobody.await.text, reply.text, "the same answer as for a resident who does not exist");
    // B's AP counts know nothing of A's cards.
    let counts = app.get(&format!("/api/v1/municipalities/{SAPPORO}/card-aps"), Some(&clerk_b)).await;
    assert_eq!(ok(&counts), json!({"items": []}));
    let counts = app.get(&format!("/api/v1/municipalities/{CHIYODA}/card-aps"), Some(&clerk_b)).await;
    counts.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    assert_eq!(aps(&app.get(&card_path(CHIYODA, "FID0001"), Some(&clerk_a)).await.json()), ["01", "02"]);
}

async fn a_clerk_installs_only_the_aps_of_his_business_systems(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = chiyoda(&app).await;
    // 許可業務: certificates and 10, not the library.
    let clerk = app.clerk_token(&admin, CHIYODA, "CL0009", &["01", "10"]).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    register_card(&app, &clerk, CHIYODA, "FID0001", &taro).await;
    // The local area brings every preset, the library's too: that is the municipality's decision.
    assert_eq!(aps(&ok(&local_area(&app, &clerk, CHIYODA, "FID0001", &[]).await)), ["01", "02"]);

    refused(&app, remove(&app, &clerk, CHIYODA, "FID0001", "02"), StatusCode::FORBIDDEN, "/problems/forbidden").await;
    let other = register_resident(&app, &clerk, CHIYODA, "ハナコ").await;
    register_card(&app, &clerk, CHIYODA, "FID0002", &other).await;
    let mut settings = settings();
    settings["presets"] = json!([]);
    ok(&app.put(&resident_settings_path(CHIYODA), Some(&admin), &settings).await);
    ok(&local_area(&app, &clerk, CHIYODA, "FID0002", &[]).await);
    refused(
        &app,
        install(&app, &clerk, CHIYODA, "FID0002", &["10", "02"]),
        StatusCode::FORBIDDEN,
        "/problems/forbidden",
    )
    .await;
    assert_eq!(aps(&ok(&install(&app, &clerk, CHIYODA, "FID0002", &["10", "01"]).await)), ["01", "10"]);
    // A clerk with every AP installs the library's, with its 標準ID.
    let librarian = app.clerk_token(&admin, CHIYODA, "CL0010", &["02"]).await;
    let card = ok(&install(&app, &librarian, CHIYODA, "FID0002", &["02"]).await);
    assert_eq!(aps(&card), ["01", "02", "10"]);
    assert!(card["aps"][1]["standard_id"].as_str().is_some_and(|id| id.starts_with(CHIYODA)), "{card}");
}

async fn an_ap_whose_shared_use_was_withdrawn_cannot_be_installed(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk) = chiyoda(&app).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    register_card(&app, &clerk, CHIYODA, "FID0001", &taro).await;
    app.withdraw(&admin, "02", CHIYODA).await;
    app.withdraw(&admin, "11", CHIYODA).await;

    // The preset library AP is skipped, not refused: the card still gets its area.
    let card = ok(&local_area(&app, &clerk, CHIYODA, "FID0001", &[]).await);
    assert_eq!(aps(&card), ["01"]);

    let reply = invalid(
        &app,
        install(&app, &clerk, CHIYODA, "FID0001", &["10", "02", "11"]),
        &["/business_ids/1", "/business_ids/2"],
    )
    .await;
    assert_eq!(reply.error_message("/business_ids/1"), "業務ID 02 の共同利用が許可されていません");
    assert_eq!(aps(&ok(&install(&app, &clerk, CHIYODA, "FID0001", &["10"]).await)), ["01", "10"]);
    // Permitted again, it can be installed again.
    app.permit(&admin, "02", CHIYODA).await;
    assert_eq!(aps(&ok(&install(&app, &clerk, CHIYODA, "FID0001", &["02"]).await)), ["01", "02", "10"]);
}

/// Every route of this area is in the OpenAPI document, with its bodies and their examples.
/// 1.2 カード管理・利用者情報登録: the certificate issuance AP (01) goes on a card only with the resident's consent to
/// his user info going to the issuance server. Without it the install and a local area that would bring the preset
/// 01 are refused (422 `/problems/consent-required`, in Japanese or English) and nothing is written; a resident who
/// declines gets his area without 01; given, the consent is recorded in the install event, with when and by which
/// clerk, for the auditors to see.
async fn the_certificate_issuance_ap_needs_the_residents_consent(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk) = chiyoda(&app).await;
    let taro = register_resident(&app, &clerk, CHIYODA, "タロウ").await;
    register_card(&app, &clerk, CHIYODA, "FID0001", &taro).await;
    let area_path = format!("{}/local-area", card_path(CHIYODA, "FID0001"));

    // The preset 01 and nobody asked the resident: no area, no event.
    let reply = refused(
        &app,
        app.post_empty(&area_path, Some(&clerk)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/consent-required",
    )
    .await;
    assert_eq!(reply.error_fields(), ["/issuance_consent"]);
    assert!(reply.error_message("/issuance_consent").contains("同意"), "{}", reply.text);
    let english = app.send_with(Method::POST, &area_path, Some(&clerk), &[("accept-language", "en")], None).await;
    english.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/consent-required");
    assert!(english.json()["detail"].as_str().unwrap().contains("consent"), "{}", english.text);
    assert_eq!(ok(&app.get(&card_path(CHIYODA, "FID0001"), Some(&clerk)).await)["local_area"], false);

    // He declines: the area with the library's preset, without 01.
    let declined = ok(&app.post(&area_path, Some(&clerk), &json!({"issuance_consent": false})).await);
    assert_eq!((&declined["local_area"], aps(&declined)), (&json!(true), vec!["02".to_owned()]));

    // Installing 01 without his consent, or with his refusal, is refused whole (10 is not installed either).
    let aps_path = format!("{}/aps", card_path(CHIYODA, "FID0001"));
    for body in
        [json!({"business_ids": ["10", "01"]}), json!({"business_ids": ["10", "01"], "issuance_consent": false})]
    {
        let reply = refused(
            &app,
            app.post(&aps_path, Some(&clerk), &body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/consent-required",
        )
        .await;
        assert_eq!(reply.error_fields(), ["/issuance_consent"], "{body}");
    }
    // A request that is wrong otherwise says that first.
    invalid(&app, app.post(&aps_path, Some(&admin), &json!({"business_ids": ["01", "12"]})), &["/business_ids/1"])
        .await;
    // Other APs need no consent.
    assert_eq!(aps(&ok(&app.post(&aps_path, Some(&clerk), &json!({"business_ids": ["10"]})).await)), ["02", "10"]);

    // He consents: 01 is installed, and the install event records his consent, when, and by which clerk.
    let installed =
        ok(&app.post(&aps_path, Some(&clerk), &json!({"business_ids": ["01"], "issuance_consent": true})).await);
    assert_eq!(aps(&installed), ["01", "02", "10"]);
    let history = app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}"), Some(&admin)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let installs: Vec<Value> = history
        .ndjson()
        .into_iter()
        .filter(|l| l["type"] == "CardApInstalled" && l["changes"]["business_id"] == "01")
        .collect();
    assert_eq!(installs.len(), 1, "{installs:?}");
    let consent = &installs[0]["changes"]["issuance_consent"];
    assert_eq!(consent["given"], "at_counter", "{consent}");
    assert_eq!(installs[0]["operator_id"], "CL0001");
    assert_eq!(consent["operator"], installs[0]["operator_key"], "the clerk who recorded it");
    assert!(consent["at"].as_i64().is_some_and(|at| at > 1_700_000_000), "{consent}");
    let others: Vec<Value> = history
        .ndjson()
        .into_iter()
        .filter(|l| l["type"] == "CardApInstalled" && l["changes"]["business_id"] != "01")
        .collect();
    assert!(others.iter().all(|l| l["changes"]["issuance_consent"].is_null()), "{others:?}");

    // A local area with the preset 01 and his consent brings it at once.
    let hanako = register_resident(&app, &clerk, CHIYODA, "ハナコ").await;
    register_card(&app, &clerk, CHIYODA, "FID0002", &hanako).await;
    assert_eq!(aps(&ok(&local_area(&app, &clerk, CHIYODA, "FID0002", &[]).await)), ["01", "02"]);
}

async fn the_routes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;

    let doc = app.get("/openapi.json", None).await.json();

    for (path, method) in [
        ("/api/v1/municipalities/{code}/cards", "post"),
        ("/api/v1/municipalities/{code}/cards/{fid}", "get"),
        ("/api/v1/municipalities/{code}/cards/{fid}/local-area", "post"),
        ("/api/v1/municipalities/{code}/cards/{fid}/aps", "post"),
        ("/api/v1/municipalities/{code}/cards/{fid}/aps/{business_id}", "delete"),
        ("/api/v1/municipalities/{code}/cards/{fid}/suspend", "post"),
        ("/api/v1/municipalities/{code}/cards/{fid}/resume", "post"),
        ("/api/v1/municipalities/{code}/cards/{fid}/abolish", "post"),
        ("/api/v1/municipalities/{code}/card-aps", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    for schema in ["CardInput", "ApsInput", "CardView", "ApCounts"] {
        let schema = &doc["components"]["schemas"][schema];
        assert!(schema.is_object() && schema["example"].is_object(), "schema and example: {schema}");
    }
    assert!(doc["components"]["schemas"]["CardApView"].is_object());
    assert!(doc["components"]["schemas"]["ApsInput"]["properties"]["issuance_consent"].is_object());
    assert!(doc["components"]["schemas"]["LocalAreaInput"]["properties"]["issuance_consent"].is_object());
    let responses = &doc["paths"]["/api/v1/municipalities/{code}/cards/{fid}/aps"]["post"]["responses"]["422"];
    assert!(responses["description"].as_str().is_some_and(|d| d.contains("/problems/consent-required")), "{responses}");
}

on_both_backends!(
    the_whole_clerk_workflow,
    bad_requests_name_the_field_and_write_nothing,
    if_match_and_idempotency_key_hold_for_cards,
    an_fid_is_unique_across_municipalities,
    a_card_moves_with_its_holder_once_released,
    one_physical_card_is_one_fid_in_either_case,
    an_associations_cards_get_a_standard_id_from_its_association_id,
    a_resident_has_one_active_card,
    cards_of_another_municipality_do_not_exist,
    a_clerk_installs_only_the_aps_of_his_business_systems,
    an_ap_whose_shared_use_was_withdrawn_cannot_be_installed,
    the_certificate_issuance_ap_needs_the_residents_consent,
    the_routes_are_documented,
);
