//! `/api/v1/municipalities` as the system administrator sees it: registering, reading, paging, changing with
//! `If-Match`, abolishing, validation in the clerk's language, `Idempotency-Key`, concurrent changes, and a
//! voluntary association (任意団体) registered with an ID of its own, whose operators log in under it.
//! After every refused request the event log is unchanged. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, municipality, on_both_backends, operator_with_password, operators_path, send, spawn_app,
    with_check_digit,
};

const PATH: &str = "/api/v1/municipalities";

fn one(code: &str) -> String {
    format!("{PATH}/{code}")
}

/// The codes of a list page, in order.
fn codes(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|m| m["code"].as_str().unwrap().to_owned()).collect()
}

/// Sends the request behind `reply`, asserts the refusal, and that the event log did not change.
async fn refused(app: &TestApp, reply: impl Future<Output = Reply>, status: StatusCode, kind: &str) -> Reply {
    let before = app.event_count().await;
    let reply = reply.await;
    reply.problem(status, kind);
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {}", reply.text);
    reply
}

async fn the_administrator_registers_a_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let before = app.event_count().await;

    let reply = app
        .post(
            PATH,
            Some(&token),
            &json!({"code": "131016", "name": "千代田区", "kind": "municipality", "display_order": 1}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.etag(), "\"1\"");
    assert_eq!(reply.header("location"), Some("/api/v1/municipalities/131016"));
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let body = reply.json();
    assert_eq!(body["code"], "131016");
    assert_eq!(body["name"], "千代田区");
    assert_eq!(body["kind"], "municipality");
    assert_eq!(body["display_order"], 1);
    assert_eq!(body["abolished"], false);
    assert_eq!(body["version"], 1);
    assert_eq!(app.event_count().await, before + 1);

    // An association too, with an association ID (it has no 全国地方公共団体コード).
    let association = app
        .post(
            PATH,
            Some(&token),
            &json!({"code": "A00011", "name": "札幌広域協議会", "kind": "association", "display_order": 2}),
        )
        .await;
    assert_eq!(association.status, StatusCode::CREATED, "{}", association.text);
    assert_eq!(association.json()["kind"], "association");

    // A charset parameter on the content type is fine.
    let body = municipality(&with_check_digit("27100"), "大阪市", 3).to_string();
    let with_charset = send(
        app.request(Method::POST, PATH, Some(&token))
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(with_charset.status, StatusCode::CREATED, "{}", with_charset.text);
}

async fn a_registered_municipality_can_be_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let created = app.register_municipality(&token, "131016", "千代田区", 7).await;

    let reply = app.get(&one("131016"), Some(&token)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"1\"");
    assert_eq!(reply.json(), created.json(), "GET shows what POST answered");
    // A code nobody registered, and a path that is no code at all, are both "not found".
    for path in [one(&with_check_digit("27100")), one("131017"), one("abc")] {
        app.get(&path, Some(&token)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }
}

async fn the_list_pages_in_display_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    // Registered out of order; two share a display order, and then the code decides.
    for (prefix, order) in [("13101", 30), ("01100", 10), ("27100", 50), ("13102", 20), ("13103", 20)] {
        app.register_municipality(&token, &with_check_digit(prefix), &format!("市{prefix}"), order).await;
    }
    let expected: Vec<String> = ["01100", "13102", "13103", "13101", "27100"].map(with_check_digit).into();

    let everything = app.get(PATH, Some(&token)).await;
    assert_eq!(everything.status, StatusCode::OK, "{}", everything.text);
    assert_eq!(codes(&everything.json()), expected);
    assert_eq!(everything.json()["next_cursor"], json!(null));

    let mut seen = vec![];
    let mut pages = vec![];
    let mut path = format!("{PATH}?limit=2");
    loop {
        let reply = app.get(&path, Some(&token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let page = reply.json();
        pages.push(codes(&page).len());
        seen.extend(codes(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{PATH}?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(seen, expected, "every municipality once, in display order");

    // A page exactly as long as what is left is the last one.
    let exact = app.get(&format!("{PATH}?limit=5"), Some(&token)).await.json();
    assert_eq!(codes(&exact).len(), 5);
    assert_eq!(exact["next_cursor"], json!(null));

    // Bad paging parameters are the clerk's mistake, not the server's.
    for bad in ["limit=0", "limit=501", "cursor=%25%25not-a-cursor"] {
        let reply = app.get(&format!("{PATH}?{bad}"), Some(&token)).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
        let field = if bad.starts_with("limit") { "/limit" } else { "/cursor" };
        assert_eq!(reply.error_fields(), [field], "{bad}");
    }
}

async fn a_change_with_the_current_etag_applies(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;

    let reply = app.patch(&one("131016"), Some(&token), Some("\"1\""), &json!({"name": "新千代田区"})).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"2\"");
    assert_eq!(reply.json()["name"], "新千代田区");
    assert_eq!(reply.json()["display_order"], 1, "omitted fields stay as they are");
    let shown = app.get(&one("131016"), Some(&token)).await;
    assert_eq!(shown.etag(), "\"2\"");
    assert_eq!(shown.json()["name"], "新千代田区");

    // Both at once: one version per event.
    let both =
        app.patch(&one("131016"), Some(&token), Some("\"2\""), &json!({"name": "千代田区", "display_order": 9})).await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.text);
    assert_eq!(both.etag(), "\"4\"");
    assert_eq!(both.json()["display_order"], 9);

    // A change to what already is writes nothing and keeps the version.
    let before = app.event_count().await;
    let same = app.patch(&one("131016"), Some(&token), Some("\"4\""), &json!({"name": "千代田区"})).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    assert_eq!(same.etag(), "\"4\"");
    assert_eq!(app.event_count().await, before);

    // Without If-Match the change is applied to whatever is current.
    let blind = app.patch(&one("131016"), Some(&token), None, &json!({"display_order": 3})).await;
    assert_eq!(blind.status, StatusCode::OK, "{}", blind.text);
    assert_eq!(blind.etag(), "\"5\"");
}

async fn a_change_with_a_stale_etag_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    let first = app.patch(&one("131016"), Some(&token), Some("\"1\""), &json!({"name": "新千代田区"})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);

    let stale = refused(
        &app,
        app.patch(&one("131016"), Some(&token), Some("\"1\""), &json!({"name": "旧千代田区"})),
        StatusCode::PRECONDITION_FAILED,
        "/problems/precondition-failed",
    )
    .await;
    assert!(stale.json()["detail"].as_str().unwrap().contains('2'), "names the current version: {}", stale.text);
    let future = app.patch(&one("131016"), Some(&token), Some("\"7\""), &json!({"name": "旧千代田区"}));
    refused(&app, future, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    assert_eq!(app.get(&one("131016"), Some(&token)).await.json()["name"], "新千代田区");
}

async fn a_malformed_if_match_is_a_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;

    for if_match in ["1", "\"one\"", "\"1", "\"-1\""] {
        let patch = app.patch(&one("131016"), Some(&token), Some(if_match), &json!({"name": "新千代田区"}));
        refused(&app, patch, StatusCode::BAD_REQUEST, "/problems/malformed-request").await;
    }
    let abolish =
        send(app.request(Method::POST, &format!("{}/abolish", one("131016")), Some(&token)).header("if-match", "v1"));
    refused(&app, abolish, StatusCode::BAD_REQUEST, "/problems/malformed-request").await;
    assert_eq!(app.get(&one("131016"), Some(&token)).await.json()["name"], "千代田区");
}

async fn an_abolished_municipality_cannot_be_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    app.register_municipality(&token, "011002", "札幌市", 2).await;

    let abolish = send(
        app.request(Method::POST, &format!("{}/abolish", one("131016")), Some(&token)).header("if-match", "\"1\""),
    )
    .await;

    assert_eq!(abolish.status, StatusCode::OK, "{}", abolish.text);
    assert_eq!(abolish.etag(), "\"2\"");
    assert_eq!(abolish.json()["abolished"], true);
    let patch = app.patch(&one("131016"), Some(&token), Some("\"2\""), &json!({"name": "新千代田区"}));
    let reply = refused(&app, patch, StatusCode::CONFLICT, "/problems/municipality-abolished").await;
    assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains("廃止")), "{}", reply.text);
    let again = send(app.request(Method::POST, &format!("{}/abolish", one("131016")), Some(&token)));
    refused(&app, again, StatusCode::CONFLICT, "/problems/municipality-abolished").await;
    // A code is never reused.
    let reuse = app.post(PATH, Some(&token), &municipality("131016", "千代田区", 1));
    refused(&app, reuse, StatusCode::CONFLICT, "/problems/already-exists").await;
    // Still readable, but gone from the list unless asked for.
    assert_eq!(app.get(&one("131016"), Some(&token)).await.json()["abolished"], true);
    assert_eq!(codes(&app.get(PATH, Some(&token)).await.json()), ["011002"]);
    let all = app.get(&format!("{PATH}?include_abolished=true"), Some(&token)).await.json();
    assert_eq!(codes(&all), ["131016", "011002"]);
    // Abolishing what does not exist is "not found".
    let missing =
        send(app.request(Method::POST, &format!("{}/abolish", one(&with_check_digit("27100"))), Some(&token)));
    refused(&app, missing, StatusCode::NOT_FOUND, "/problems/not-found").await;
}

async fn a_duplicate_code_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;

    let reply = refused(
        &app,
        app.post(PATH, Some(&token), &municipality("131016", "別の区", 2)),
        StatusCode::CONFLICT,
        "/problems/already-exists",
    )
    .await;

    assert!(reply.json()["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", reply.text);
    assert_eq!(app.get(&one("131016"), Some(&token)).await.json()["name"], "千代田区");
}

/// 西関東協議会 (手引き I 2.2 (4)) is a voluntary association: it has no 全国地方公共団体コード and is registered with
/// an association ID of the administrator's choosing (`A` + 5 digits). Its operators are registered under that ID
/// and log in with it, like a municipality's.
async fn an_association_is_registered_with_an_id_of_its_own_and_its_operators_log_in(backend: Backend) {
    const NISHI_KANTO: &str = "A00001";
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;

    let body = json!({"code": NISHI_KANTO, "name": "西関東協議会", "kind": "association", "display_order": 7});
    let reply = app.post(PATH, Some(&admin), &body).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.header("location"), Some("/api/v1/municipalities/A00001"));
    let registered = reply.json();
    assert_eq!((registered["code"].as_str(), registered["kind"].as_str()), (Some(NISHI_KANTO), Some("association")));
    let shown = app.get(&one(NISHI_KANTO), Some(&admin)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.json(), registered);
    assert!(codes(&app.get(PATH, Some(&admin)).await.json()).contains(&NISHI_KANTO.to_owned()));

    // An association needs an association ID, a municipality a 全国地方公共団体コード; each is told which.
    let with_a_real_code = json!({"code": "011002", "name": "西関東協議会", "kind": "association", "display_order": 8});
    let post = app.post(PATH, Some(&admin), &with_a_real_code);
    let reply = refused(&app, post, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), ["/code"]);
    assert!(reply.error_message("/code").contains("任意団体ID"), "{}", reply.text);
    let with_an_association_id = municipality("A00002", "南武蔵野市", 8);
    let post = app.post(PATH, Some(&admin), &with_an_association_id);
    let reply = refused(&app, post, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert!(reply.error_message("/code").contains("全国地方公共団体コード"), "{}", reply.text);
    let taken = app.post(PATH, Some(&admin), &body);
    refused(&app, taken, StatusCode::CONFLICT, "/problems/already-exists").await;

    // Its operator, permitted a business system it shares, logs in under the association ID.
    app.permit(&admin, "01", NISHI_KANTO).await;
    let operator = operator_with_password("OP0501", "Nishi0Kanto1", &["operations_manager"], &["01"]);
    app.add_operators(&admin, NISHI_KANTO, &operator).await;
    let token = app.login(Some(NISHI_KANTO), "OP0501", "Nishi0Kanto1").await;
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    let me = me.json();
    assert_eq!((me["operator_id"].as_str(), me["municipality"].as_str()), (Some("OP0501"), Some(NISHI_KANTO)));
    let systems: Vec<&str> =
        me["business_systems"].as_array().unwrap().iter().map(|b| b["business_id"].as_str().unwrap()).collect();
    assert_eq!(systems, ["01"]);
    // He works in his association and sees nothing of anyone else.
    let listed = app.get(&operators_path(NISHI_KANTO), Some(&token)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(app.get(&one(NISHI_KANTO), Some(&token)).await.status, StatusCode::OK);
    assert_eq!(codes(&app.get(PATH, Some(&token)).await.json()), [NISHI_KANTO]);
    app.register_municipality(&admin, "131016", "千代田区", 1).await;
    app.get(&one("131016"), Some(&token)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    // The same operator ID elsewhere is someone else.
    let elsewhere = app.try_login(Some("131016"), "OP0501", "Nishi0Kanto1").await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED, "{}", elsewhere.text);
}

async fn invalid_fields_are_named_by_json_pointer(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let valid = municipality("131016", "千代田区", 1);
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };

    for (what, body, field) in [
        ("wrong check digit", with("code", json!("131017")), "/code"),
        ("full-width digits", with("code", json!("１３１０１６")), "/code"),
        ("five digits", with("code", json!("13101")), "/code"),
        ("empty code", with("code", json!("")), "/code"),
        ("empty name", with("name", json!("")), "/name"),
        ("only a full-width space", with("name", json!("\u{3000}")), "/name"),
        ("too long a name", with("name", json!("あ".repeat(51))), "/name"),
        ("unknown kind", with("kind", json!("city")), "/kind"),
        ("display order 0", with("display_order", json!(0)), "/display_order"),
        ("display order too large", with("display_order", json!(1_000_000)), "/display_order"),
        ("display order as text", with("display_order", json!("1")), "/display_order"),
        ("code as a number", with("code", json!(131016)), "/code"),
        ("a municipality with an association ID", with("code", json!("A00001")), "/code"),
        ("a malformed association ID", with("code", json!("A0001")), "/code"),
        ("unknown field", with("population", json!(67000)), "/population"),
    ] {
        let reply = refused(
            &app,
            app.post(PATH, Some(&token), &body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        )
        .await;
        assert_eq!(reply.error_fields(), [field], "{what}: {}", reply.text);
    }

    let missing = json!({"code": "131016", "name": "千代田区", "kind": "municipality"});
    let reply =
        refused(&app, app.post(PATH, Some(&token), &missing), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation")
            .await;
    assert_eq!(reply.error_fields(), ["/display_order"]);

    // Everything wrong at once: every field is named in one answer.
    let all_wrong = json!({"code": "１３１０１６", "name": "", "kind": "city", "display_order": 0});
    let reply = refused(
        &app,
        app.post(PATH, Some(&token), &all_wrong),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert_eq!(reply.error_fields(), ["/code", "/name", "/kind", "/display_order"]);

    // A PATCH too.
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    let bad_patch = app.patch(&one("131016"), Some(&token), Some("\"1\""), &json!({"name": " ", "display_order": 0}));
    let reply = refused(&app, bad_patch, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), ["/name", "/display_order"]);
    let unknown = app.patch(&one("131016"), Some(&token), None, &json!({"kind": "association"}));
    let reply = refused(&app, unknown, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), ["/kind"], "kind cannot be changed");
}

async fn messages_are_japanese_unless_english_is_asked_for(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let body = json!({"code": "131017", "name": "", "kind": "city", "display_order": 0});
    let post = |language: Option<&str>| {
        let mut request = app.request(Method::POST, PATH, Some(&token)).json(&body);
        if let Some(language) = language {
            request = request.header("accept-language", language);
        }
        refused(&app, send(request), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation")
    };

    let default = post(None).await;
    let japanese = post(Some("ja-JP,ja;q=0.9,en;q=0.5")).await;
    let english = post(Some("en")).await;
    let english_us = post(Some("en-US,en;q=0.9")).await;

    assert_eq!(default.json()["title"], "入力内容に誤りがあります");
    assert_eq!(default.error_message("/code"), "検査数字が正しくありません");
    assert_eq!(default.error_message("/name"), "入力してください");
    assert_eq!(default.text, japanese.text);
    assert_eq!(english.json()["title"], "The request has invalid fields");
    assert_eq!(english.error_message("/code"), "the check digit is wrong");
    assert_eq!(english.error_message("/name"), "the value must not be empty");
    assert_eq!(english.text, english_us.text);
    // The type codes and fields never change with the language.
    assert_eq!(english.json()["type"], default.json()["type"]);
    assert_eq!(english.error_fields(), default.error_fields());

    let missing = send(app.request(Method::GET, &one("131016"), Some(&token)).header("accept-language", "en")).await;
    assert_eq!(missing.problem(StatusCode::NOT_FOUND, "/problems/not-found")["title"], "Not found");
    let missing = app.get(&one("131016"), Some(&token)).await;
    assert_eq!(missing.problem(StatusCode::NOT_FOUND, "/problems/not-found")["title"], "対象が見つかりません");
}

async fn a_retry_with_the_same_idempotency_key_is_applied_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let body = municipality("131016", "千代田区", 1);
    let post =
        |key: &str| send(app.request(Method::POST, PATH, Some(&token)).header("idempotency-key", key).json(&body));
    let before = app.event_count().await;

    let first = post("3f1c9a52-retry-1").await;
    let retry = post("3f1c9a52-retry-1").await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(retry.status, StatusCode::CREATED, "the retry gets the first answer: {}", retry.text);
    assert_eq!(retry.json(), first.json());
    assert_eq!(retry.etag(), first.etag());
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(app.event_count().await, before + 1, "one registration, not two");

    let other_key = refused(&app, post("another-key"), StatusCode::CONFLICT, "/problems/already-exists").await;
    assert!(other_key.json()["detail"].is_string());
    let no_key = app.post(PATH, Some(&token), &body);
    refused(&app, no_key, StatusCode::CONFLICT, "/problems/already-exists").await;
}

async fn concurrent_changes_with_the_same_etag_have_one_winner(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    let before = app.event_count().await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (app, token) = (app.clone(), token.clone());
        tasks.spawn(async move {
            let reply =
                app.patch(&one("131016"), Some(&token), Some("\"1\""), &json!({"name": format!("千代田区{i}")})).await;
            (i, reply)
        });
    }
    let mut by_status: BTreeMap<u16, Vec<(i32, Reply)>> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (i, reply) = done.unwrap();
        by_status.entry(reply.status.as_u16()).or_default().push((i, reply));
    }

    let counts: BTreeMap<u16, usize> = by_status.iter().map(|(s, r)| (*s, r.len())).collect();
    assert_eq!(counts, BTreeMap::from([(200, 1), (412, 9)]), "{by_status:#?}");
    for (_, reply) in &by_status[&412] {
        reply.problem(StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed");
    }
    let (winner, won) = &by_status[&200][0];
    assert_eq!(won.etag(), "\"2\"");
    let shown = app.get(&one("131016"), Some(&token)).await;
    assert_eq!(shown.etag(), "\"2\"");
    assert_eq!(shown.json()["version"], 2);
    assert_eq!(shown.json()["name"], format!("千代田区{winner}"));
    assert_eq!(app.event_count().await, before + 1);
}

async fn concurrent_registrations_of_one_code_have_one_winner(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let token = app.admin_token().await;
    let before = app.event_count().await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        tasks.spawn(app.post(PATH, Some(&token), &municipality("131016", &format!("千代田区{i}"), 1)));
    }
    let replies = tasks.join_all().await;

    let created: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::CREATED).collect();
    assert_eq!(created.len(), 1, "{replies:#?}");
    for reply in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
        reply.problem(StatusCode::CONFLICT, "/problems/already-exists");
    }
    assert_eq!(app.get(&one("131016"), Some(&token)).await.json(), created[0].json());
    assert_eq!(app.event_count().await, before + 1);
}

/// A double-clicked submit: the retries race the first attempt, and each must still get the first answer.
async fn concurrent_retries_with_one_idempotency_key_register_once(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let token = app.admin_token().await;
    let before = app.event_count().await;

    // A few rounds, each its own code and key: the race is narrow, so give it several chances to show.
    let rounds = ["13101", "13102", "13103", "13104"].map(with_check_digit);
    for (round, code) in rounds.iter().enumerate() {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let request = app
                .request(Method::POST, PATH, Some(&token))
                .header("idempotency-key", format!("double-click-{round}"))
                .json(&municipality(code, "千代田区", 1));
            tasks.spawn(send(request));
        }
        let replies = tasks.join_all().await;

        for reply in &replies {
            assert_eq!(reply.status, StatusCode::CREATED, "{code}: every retry gets the first answer: {}", reply.text);
            assert_eq!(reply.json(), replies[0].json());
            assert_eq!(reply.etag(), "\"1\"");
        }
    }
    assert_eq!(app.event_count().await, before + rounds.len(), "one registration per code");
}

/// A query parameter of the wrong type is the clerk's mistake, answered like any other: problem+json naming it.
async fn list_parameters_of_the_wrong_type_are_a_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;

    for (query, field) in [("limit=ten", "/limit"), ("include_abolished=yes", "/include_abolished")] {
        let reply = app.get(&format!("{PATH}?{query}"), Some(&token)).await;
        assert!(
            reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {} {}",
            reply.status,
            reply.text
        );
        assert_eq!(reply.header("content-type"), Some("application/problem+json"), "{query}: {:?}", reply.text);
        assert_eq!(reply.error_fields(), [field], "{query}: {}", reply.text);
    }
}

/// API.md: every error is `application/problem+json`, including a method the path does not have.
async fn a_method_the_path_does_not_have_is_a_problem(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;

    let reply = send(app.request(Method::DELETE, PATH, Some(&token))).await;

    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply.header("allow").is_some_and(|a| a.contains("GET") && a.contains("POST")), "{:?}", reply.headers);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"), "body: {:?}", reply.text);
    assert!(reply.json()["type"].as_str().is_some_and(|t| t.starts_with("/problems/")), "{}", reply.text);
}

/// A body over the limit (1 MiB) is "too large" (413), not "malformed" (400): the client must send less, not fix
/// its JSON.
async fn a_body_over_the_limit_is_too_large(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let huge =
        json!({"code": "131016", "name": "x".repeat(2 * 1024 * 1024), "kind": "municipality", "display_order": 1});

    let reply = refused(
        &app,
        app.post(PATH, Some(&token), &huge),
        StatusCode::PAYLOAD_TOO_LARGE,
        "/problems/payload-too-large",
    )
    .await;

    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

on_both_backends!(
    the_administrator_registers_a_municipality,
    a_registered_municipality_can_be_read_back,
    the_list_pages_in_display_order,
    a_change_with_the_current_etag_applies,
    a_change_with_a_stale_etag_is_refused,
    a_malformed_if_match_is_a_malformed_request,
    an_abolished_municipality_cannot_be_changed,
    a_duplicate_code_is_refused,
    an_association_is_registered_with_an_id_of_its_own_and_its_operators_log_in,
    invalid_fields_are_named_by_json_pointer,
    messages_are_japanese_unless_english_is_asked_for,
    a_retry_with_the_same_idempotency_key_is_applied_once,
    concurrent_changes_with_the_same_etag_have_one_winner,
    concurrent_registrations_of_one_code_have_one_winner,
    concurrent_retries_with_one_idempotency_key_register_once,
    list_parameters_of_the_wrong_type_are_a_problem,
    a_method_the_path_does_not_have_is_a_problem,
    a_body_over_the_limit_is_too_large,
);
