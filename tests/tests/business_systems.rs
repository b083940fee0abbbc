//! `/api/v1/business-systems` and shared use (共同利用業務設定): the built-ins from the first start (once, however
//! many nodes start), registering with validation in the clerk's language (業務ID 03–99 free, the source's
//! three URLs required), PATCH as a merge with `If-Match`,
//! retiring, permitting and withdrawing municipalities, and a clerk who may read but change nothing.
//! After every refused request the event log is unchanged. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_api::Settings;
use cardap_store::{Checkpoint, ReadFilter};
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, business_system, on_both_backends, register_clerk, send, spawn_app, spawn_app_on,
    with_check_digit,
};

const PATH: &str = "/api/v1/business-systems";

fn one(id: &str) -> String {
    format!("{PATH}/{id}")
}

fn permitted(id: &str) -> String {
    format!("{PATH}/{id}/permitted-municipalities")
}

fn retire(app: &TestApp, id: &str, token: &str, if_match: Option<&str>) -> impl Future<Output = Reply> + use<> {
    let mut request = app.request(Method::POST, &format!("{}/retire", one(id)), Some(token));
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    send(request)
}

fn withdraw(app: &TestApp, id: &str, code: &str, token: &str) -> impl Future<Output = Reply> + use<> {
    app.delete(&format!("{}/{code}", permitted(id)), Some(token))
}

/// A business system with every field.
fn full(id: &str) -> Value {
    json!({
        "business_id": id,
        "name": "施設予約",
        "organization": "南江戸市 情報政策課",
        "image": "https://portal.example.jp/img/hall.png",
        "top_url": "https://portal.example.jp/",
        "operator_admin_url": "https://portal.example.jp/operators",
        "personalize_url": "https://portal.example.jp/me",
        "phone": "03-3333-4444",
        "email": "portal@example.jp",
    })
}

/// The `business_id`s of a list page, in order.
fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|b| b["business_id"].as_str().unwrap().to_owned()).collect()
}

/// The `code`s of a permitted-municipalities page, in order.
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

async fn register(app: &TestApp, token: &str, body: &Value) -> Reply {
    let reply = app.post(PATH, Some(token), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "register {body}: {}", reply.text);
    reply
}

/// The business-system events in the log, as `(business_id, event_type)`.
async fn business_system_events(app: &TestApp) -> Vec<(String, String)> {
    app.event_count().await; // waits until the whole log is readable
    let mut after = Checkpoint::START;
    let mut out = vec![];
    loop {
        let page = app.state.store.read_all(after, 1000, &ReadFilter::All).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        out.extend(
            page.iter()
                .filter(|e| e.stream_type == "business_system")
                .map(|e| (e.stream_id.key().to_owned(), e.event_type.clone())),
        );
    }
    out
}

async fn the_builtins_are_there_from_the_first_start(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;

    let reply = app.get(PATH, Some(&token)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let page = reply.json();
    assert_eq!(ids(&page), ["00", "01", "02"]);
    assert_eq!(page["next_cursor"], Value::Null);
    let names: Vec<&str> = page["items"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cardap管理", "証明書等自動交付", "図書館"]);
    for item in page["items"].as_array().unwrap() {
        assert_eq!(item["builtin"], true, "{item}");
        assert_eq!(item["retired"], false, "{item}");
        assert_eq!(item["version"], 1, "{item}");
        assert_eq!(item["email"], Value::Null, "{item}");
    }
    let library = app.get(&one("02"), Some(&token)).await;
    assert_eq!(library.status, StatusCode::OK, "{}", library.text);
    assert_eq!(library.etag(), "\"1\"");
    assert_eq!(library.json(), page["items"][2]);
    let events = business_system_events(&app).await;
    assert_eq!(
        events,
        ["00", "01", "02"].map(|id| (id.to_owned(), "BusinessSystemRegistered".to_owned())),
        "each built-in registered once"
    );
}

/// Nodes starting at once on a fresh database, and a later restart, register each built-in exactly once.
async fn the_builtins_are_registered_once_however_many_nodes_start(backend: Backend) {
    let (url, dir) = backend.fresh_database().await;
    let settings = Settings::for_tests(url);
    // Migrate first: this test is about the bootstrap racing, not the migrations.
    cardap_api::app::open_database(&settings).await.expect("migrated");

    let (a, b, c) = tokio::join!(
        spawn_app_on(settings.clone(), None),
        spawn_app_on(settings.clone(), None),
        spawn_app_on(settings.clone(), None),
    );
    let expected: Vec<(String, String)> =
        ["00", "01", "02"].map(|id| (id.to_owned(), "BusinessSystemRegistered".to_owned())).into();
    let mut events = business_system_events(&a).await;
    events.sort();
    assert_eq!(events, expected);
    for app in [&a, &b, &c] {
        let token = app.admin_token().await;
        assert_eq!(ids(&app.get(PATH, Some(&token)).await.json()), ["00", "01", "02"]);
    }
    let before = a.event_count().await;
    drop((b, c));

    // A restart: nothing new.
    let again = spawn_app_on(settings, dir).await;
    assert_eq!(again.event_count().await, before);
    let token = again.admin_token().await;
    assert_eq!(ids(&again.get(PATH, Some(&token)).await.json()), ["00", "01", "02"]);
}

async fn the_administrator_registers_a_business_system(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let before = app.event_count().await;

    let reply = app.post(PATH, Some(&token), &full("10")).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.etag(), "\"1\"");
    assert_eq!(reply.header("location"), Some("/api/v1/business-systems/10"));
    let mut expected = full("10");
    expected["builtin"] = json!(false);
    expected["retired"] = json!(false);
    expected["version"] = json!(1);
    assert_eq!(reply.json(), expected);
    assert_eq!(app.event_count().await, before + 1);

    let shown = app.get(&one("10"), Some(&token)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.etag(), "\"1\"");
    assert_eq!(shown.json(), expected, "GET shows what POST answered");
    assert_eq!(ids(&app.get(PATH, Some(&token)).await.json()), ["00", "01", "02", "10"]);

    // Only the ID, the name and the three URLs are required; an empty optional field is no value; the name is
    // trimmed.
    let mut minimal = business_system("99", "\u{3000}独自業務 ");
    minimal["email"] = json!("");
    let body = register(&app, &token, &minimal).await.json();
    assert_eq!(body["name"], "独自業務");
    for field in ["organization", "image", "phone", "email"] {
        assert_eq!(body[field], Value::Null, "{field}: {body}");
    }
    assert_eq!(body["personalize_url"], "https://b99.example.jp/me");
}

/// Only `00`–`02` are built in: the source registers 業務ID 05 (手引き I 2.2 (2) ①), and 03–09 are as free as 10–99.
async fn business_ids_03_to_09_are_registrable(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    // The source's screen, field by field.
    let seed = json!({
        "business_id": "05",
        "name": "利用環境設定",
        "organization": "BCS",
        "top_url": "https://www1.city.itozaki.nagano.jp/BizSys/?gid=05&type=1",
        "operator_admin_url": "https://www1.city.itozaki.nagano.jp/BizSys/?gid=05&type=1",
        "personalize_url": "https://www1.city.itozaki.nagano.jp/BizSys/?gid=05&type=1",
    });

    let reply = app.post(PATH, Some(&token), &seed).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.header("location"), Some("/api/v1/business-systems/05"));
    let body = reply.json();
    assert_eq!((body["business_id"].as_str(), body["builtin"].as_bool()), (Some("05"), Some(false)));
    assert_eq!(body["top_url"], seed["top_url"]);
    assert_eq!(app.get(&one("05"), Some(&token)).await.json(), body);
    for id in ["03", "04", "06", "07", "08", "09"] {
        register(&app, &token, &business_system(id, &format!("業務{id}"))).await;
    }
    assert_eq!(
        ids(&app.get(PATH, Some(&token)).await.json()),
        ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09"]
    );
    // 05 is an ordinary business system: it can be permitted and retired.
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    app.permit(&token, "05", "131016").await;
    let retired = retire(&app, "05", &token, None).await;
    assert_eq!(retired.status, StatusCode::OK, "{}", retired.text);
}

/// 業務トップURL, オペレータ管理URL and パーソナライズURL are required on the source's screen: a registration without
/// them names each missing one, in the clerk's language, and a PATCH cannot clear them.
async fn the_three_urls_are_required(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let urls = ["/top_url", "/operator_admin_url", "/personalize_url"];

    let none = json!({"business_id": "10", "name": "施設予約", "phone": "03-3333-4444"});
    let reply =
        refused(&app, app.post(PATH, Some(&token), &none), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation")
            .await;
    assert_eq!(reply.error_fields(), urls, "{}", reply.text);
    assert_eq!(reply.error_message("/top_url"), "業務トップURLは必須項目です");
    assert_eq!(reply.error_message("/operator_admin_url"), "オペレータ管理URLは必須項目です");
    assert_eq!(reply.error_message("/personalize_url"), "パーソナライズURLは必須項目です");
    let english = send(app.request(Method::POST, PATH, Some(&token)).header("accept-language", "en").json(&none)).await;
    assert_eq!(english.error_fields(), urls);
    assert_eq!(english.error_message("/top_url"), "top_url (業務トップURL) is required");

    // Null or blank is missing too; each one is named on its own.
    for (what, field, value) in [
        ("no top URL", "top_url", Value::Null),
        ("a blank operator URL", "operator_admin_url", json!(" ")),
        ("an empty personalize URL", "personalize_url", json!("")),
    ] {
        let mut body = business_system("10", "施設予約");
        body[field] = value;
        let post = app.post(PATH, Some(&token), &body);
        let reply = refused(&app, post, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
        assert_eq!(reply.error_fields(), [format!("/{field}")], "{what}: {}", reply.text);
    }
    let mut without = business_system("10", "施設予約");
    without.as_object_mut().unwrap().remove("personalize_url");
    let post = app.post(PATH, Some(&token), &without);
    let reply = refused(&app, post, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), ["/personalize_url"]);

    // Registered with them, they may change but not be cleared.
    register(&app, &token, &business_system("10", "施設予約")).await;
    let cleared = app.patch(&one("10"), Some(&token), Some("\"1\""), &json!({"top_url": null, "personalize_url": ""}));
    let reply = refused(&app, cleared, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), ["/top_url", "/personalize_url"]);
    let changed =
        app.patch(&one("10"), Some(&token), Some("\"1\""), &json!({"top_url": "https://b10.example.jp/v2/"})).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.json()["top_url"], "https://b10.example.jp/v2/");

    // The documented body marks them required and its example carries them.
    let doc = app.get("/openapi.json", None).await.json();
    let schema = &doc["components"]["schemas"]["RegisterBusinessSystem"];
    let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for field in ["business_id", "name", "top_url", "operator_admin_url", "personalize_url"] {
        assert!(required.contains(&field), "{field} is not required: {schema}");
        assert!(schema["example"][field].is_string(), "{field} is not in the example: {schema}");
    }
    let example = app.post(PATH, Some(&token), &schema["example"]).await;
    assert_eq!(example.status, StatusCode::CREATED, "the documented example registers: {}", example.text);
}

async fn a_duplicate_business_id_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    register(&app, &token, &full("10")).await;

    let mut other = full("10");
    other["name"] = json!("別の業務");
    let reply =
        refused(&app, app.post(PATH, Some(&token), &other), StatusCode::CONFLICT, "/problems/already-exists").await;
    assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains("業務ID")), "{}", reply.text);
    // A built-in's ID is taken too.
    let builtin = app.post(PATH, Some(&token), &json!({"business_id": "01", "name": "偽の証明書交付"}));
    refused(&app, builtin, StatusCode::CONFLICT, "/problems/already-exists").await;

    assert_eq!(app.get(&one("10"), Some(&token)).await.json()["name"], "施設予約");
    assert_eq!(app.get(&one("01"), Some(&token)).await.json()["name"], "証明書等自動交付");
}

async fn invalid_fields_are_named_by_json_pointer(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let with = |field: &str, value: Value| {
        let mut body = full("10");
        body[field] = value;
        body
    };

    for (what, body, field) in [
        ("one digit", with("business_id", json!("1")), "/business_id"),
        ("full-width digits", with("business_id", json!("１０")), "/business_id"),
        ("letters", with("business_id", json!("abc")), "/business_id"),
        ("three digits", with("business_id", json!("100")), "/business_id"),
        ("empty ID", with("business_id", json!("")), "/business_id"),
        ("ID as a number", with("business_id", json!(10)), "/business_id"),
        ("empty name", with("name", json!("")), "/name"),
        ("too long a name", with("name", json!("あ".repeat(51))), "/name"),
        ("too long an organization", with("organization", json!("あ".repeat(101))), "/organization"),
        ("image without a scheme", with("image", json!("portal.example.jp/img.png")), "/image"),
        ("ftp top URL", with("top_url", json!("ftp://portal.example.jp/")), "/top_url"),
        ("URL with a space", with("operator_admin_url", json!("https://portal.example.jp/a b")), "/operator_admin_url"),
        ("non-ASCII URL", with("personalize_url", json!("https://例え.jp/")), "/personalize_url"),
        ("short phone", with("phone", json!("03-3333-444")), "/phone"),
        ("full-width phone", with("phone", json!("０３-３３３３-４４４４")), "/phone"),
        ("e-mail without @", with("email", json!("portal.example.jp")), "/email"),
        ("e-mail without a domain", with("email", json!("portal@localhost")), "/email"),
        ("unknown field", with("certificate", json!("...")), "/certificate"),
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

    let mut missing = full("10");
    missing.as_object_mut().unwrap().remove("name");
    let reply =
        refused(&app, app.post(PATH, Some(&token), &missing), StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation")
            .await;
    assert_eq!(reply.error_fields(), ["/name"]);

    // Everything wrong at once: every field is named in one answer, in Japanese unless English is asked for.
    let all_wrong = json!({"business_id": "１０", "name": "", "image": "x", "phone": "1", "email": "x"});
    let reply = refused(
        &app,
        app.post(PATH, Some(&token), &all_wrong),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert_eq!(reply.error_fields(), ["/business_id", "/name", "/image", "/phone", "/email"]);
    assert_eq!(reply.error_message("/business_id"), "半角数字で入力してください");
    assert!(reply.error_message("/email").contains("メールアドレス"), "{}", reply.text);
    let english =
        send(app.request(Method::POST, PATH, Some(&token)).header("accept-language", "en").json(&all_wrong)).await;
    assert_eq!(english.error_fields(), reply.error_fields());
    assert_eq!(english.error_message("/email"), "not an e-mail address");

    // A PATCH too.
    register(&app, &token, &full("10")).await;
    for (what, body, fields) in [
        ("the name cleared", json!({"name": null}), vec!["/name"]),
        ("the name blank", json!({"name": " "}), vec!["/name"]),
        ("bad phone and e-mail", json!({"phone": "03", "email": "@example.jp"}), vec!["/phone", "/email"]),
        ("bad URL", json!({"top_url": "portal"}), vec!["/top_url"]),
        ("a required URL cleared", json!({"operator_admin_url": null}), vec!["/operator_admin_url"]),
        ("the ID cannot change", json!({"business_id": "11"}), vec!["/business_id"]),
        ("retired is no field", json!({"retired": true}), vec!["/retired"]),
    ] {
        let patch = app.patch(&one("10"), Some(&token), Some("\"1\""), &body);
        let reply = refused(&app, patch, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
        assert_eq!(reply.error_fields(), fields, "{what}: {}", reply.text);
    }
}

async fn a_patch_merges_and_clears(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    register(&app, &token, &full("10")).await;
    let before = app.event_count().await;

    let reply = app
        .patch(
            &one("10"),
            Some(&token),
            Some("\"1\""),
            &json!({"top_url": "https://portal.example.jp/v2/", "organization": null, "phone": ""}),
        )
        .await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"2\"");
    let mut expected = full("10");
    expected["top_url"] = json!("https://portal.example.jp/v2/");
    expected["organization"] = Value::Null;
    expected["phone"] = Value::Null;
    expected["builtin"] = json!(false);
    expected["retired"] = json!(false);
    expected["version"] = json!(2);
    assert_eq!(reply.json(), expected, "absent fields unchanged, null and empty cleared");
    assert_eq!(app.event_count().await, before + 1);
    let shown = app.get(&one("10"), Some(&token)).await;
    assert_eq!((shown.etag(), shown.json()), ("\"2\"", expected.clone()));

    // Without If-Match it applies to whatever is current.
    let renamed = app.patch(&one("10"), Some(&token), None, &json!({"name": "施設予約（新）"})).await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(renamed.etag(), "\"3\"");
    assert_eq!(renamed.json()["name"], "施設予約（新）");
    assert_eq!(renamed.json()["email"], "portal@example.jp");

    // A change to what it already is, or an empty PATCH, writes nothing and keeps the ETag.
    let count = app.event_count().await;
    for body in [json!({"name": "施設予約（新）", "phone": null}), json!({})] {
        let same = app.patch(&one("10"), Some(&token), Some("\"3\""), &body).await;
        assert_eq!(same.status, StatusCode::OK, "{}", same.text);
        assert_eq!(same.etag(), "\"3\"");
    }
    assert_eq!(app.event_count().await, count);

    // A built-in's profile can be filled in.
    let builtin =
        app.patch(&one("01"), Some(&token), Some("\"1\""), &json!({"top_url": "https://kofu.example.jp/"})).await;
    assert_eq!(builtin.status, StatusCode::OK, "{}", builtin.text);
    assert_eq!(builtin.json()["top_url"], "https://kofu.example.jp/");
    assert_eq!(builtin.json()["name"], "証明書等自動交付");

    // Changing what does not exist is "not found".
    let missing = app.patch(&one("55"), Some(&token), None, &json!({"name": "x"}));
    refused(&app, missing, StatusCode::NOT_FOUND, "/problems/not-found").await;
    let no_id = app.patch(&one("abc"), Some(&token), None, &json!({"name": "x"}));
    refused(&app, no_id, StatusCode::NOT_FOUND, "/problems/not-found").await;
}

async fn a_stale_if_match_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    register(&app, &token, &full("10")).await;
    let changed = app.patch(&one("10"), Some(&token), Some("\"1\""), &json!({"name": "施設予約２"})).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);

    let stale = app.patch(&one("10"), Some(&token), Some("\"1\""), &json!({"name": "施設予約３"}));
    let reply = refused(&app, stale, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains('2')), "{}", reply.text);
    refused(
        &app,
        retire(&app, "10", &token, Some("\"1\"")),
        StatusCode::PRECONDITION_FAILED,
        "/problems/precondition-failed",
    )
    .await;
    let malformed = app.patch(&one("10"), Some(&token), Some("1"), &json!({"name": "施設予約３"}));
    refused(&app, malformed, StatusCode::BAD_REQUEST, "/problems/malformed-request").await;
    assert_eq!(app.get(&one("10"), Some(&token)).await.json()["name"], "施設予約２");
}

/// Concurrent PATCHes of different fields without `If-Match` are merged, none lost.
async fn concurrent_patches_without_if_match_are_all_merged(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let token = app.admin_token().await;
    register(&app, &token, &business_system("10", "施設予約")).await;
    let changes = [
        json!({"organization": "南江戸市 情報政策課"}),
        json!({"image": "https://portal.example.jp/img/hall.png"}),
        json!({"top_url": "https://portal.example.jp/"}),
        json!({"phone": "03-3333-4444"}),
        json!({"email": "portal@example.jp"}),
    ];

    let mut tasks = tokio::task::JoinSet::new();
    for change in &changes {
        tasks.spawn(app.patch(&one("10"), Some(&token), None, change));
    }
    for reply in tasks.join_all().await {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }

    let shown = app.get(&one("10"), Some(&token)).await;
    assert_eq!(shown.etag(), format!("\"{}\"", changes.len() + 1));
    let body = shown.json();
    for change in &changes {
        for (field, value) in change.as_object().unwrap() {
            assert_eq!(&body[field], value, "{field} was lost: {body}");
        }
    }
}

async fn a_retired_business_system_cannot_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    register(&app, &token, &full("10")).await;
    let permit = app.post(&permitted("10"), Some(&token), &json!({"code": "131016"})).await;
    assert_eq!(permit.status, StatusCode::CREATED, "{}", permit.text);
    let before = app.event_count().await;

    let reply = retire(&app, "10", &token, Some("\"2\"")).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"3\"");
    assert_eq!(reply.json()["retired"], true);
    assert_eq!(reply.json()["version"], 3);
    assert_eq!(app.event_count().await, before + 1);

    let retired = "/problems/business-system-retired";
    let patch = app.patch(&one("10"), Some(&token), Some("\"3\""), &json!({"name": "復活"}));
    let reply = refused(&app, patch, StatusCode::CONFLICT, retired).await;
    assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains("廃止")), "{}", reply.text);
    refused(&app, retire(&app, "10", &token, None), StatusCode::CONFLICT, retired).await;
    let permit_again = app.post(&permitted("10"), Some(&token), &json!({"code": "131016"}));
    refused(&app, permit_again, StatusCode::CONFLICT, retired).await;
    refused(&app, withdraw(&app, "10", "131016", &token), StatusCode::CONFLICT, retired).await;
    // Its ID is never reused.
    refused(&app, app.post(PATH, Some(&token), &full("10")), StatusCode::CONFLICT, "/problems/already-exists").await;

    // Still readable; gone from the list unless asked for; it permits nobody.
    assert_eq!(app.get(&one("10"), Some(&token)).await.json()["retired"], true);
    assert_eq!(ids(&app.get(PATH, Some(&token)).await.json()), ["00", "01", "02"]);
    let all = app.get(&format!("{PATH}?include_retired=true"), Some(&token)).await.json();
    assert_eq!(ids(&all), ["00", "01", "02", "10"]);
    assert_eq!(codes(&app.get(&permitted("10"), Some(&token)).await.json()), Vec::<String>::new());
}

async fn a_builtin_cannot_be_retired(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;

    for id in ["00", "01", "02"] {
        let reply =
            refused(&app, retire(&app, id, &token, None), StatusCode::CONFLICT, "/problems/builtin-business-system")
                .await;
        assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains("廃止できません")), "{}", reply.text);
        assert_eq!(app.get(&one(id), Some(&token)).await.json()["retired"], false);
    }
    // Retiring what does not exist is "not found".
    for id in ["55", "abc", "1"] {
        refused(&app, retire(&app, id, &token, None), StatusCode::NOT_FOUND, "/problems/not-found").await;
        app.get(&one(id), Some(&token)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }
}

async fn a_clerk_may_read_but_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, "131016", "千代田区", 1).await;
    app.register_municipality(&admin, "011002", "札幌市", 2).await;
    register(&app, &admin, &full("10")).await;
    for code in ["131016", "011002"] {
        let reply = app.post(&permitted("01"), Some(&admin), &json!({"code": code})).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let clerk = register_clerk(&app.state, "131016", "OP0501").await.login(&app).await;
    let before = app.event_count().await;

    let changes = [
        ("register", app.post(PATH, Some(&clerk), &full("11")).await),
        ("register with invalid fields", app.post(PATH, Some(&clerk), &json!({"business_id": "1", "name": ""})).await),
        ("update", app.patch(&one("10"), Some(&clerk), Some("\"1\""), &json!({"name": "乗っ取り"})).await),
        ("update with invalid fields", app.patch(&one("10"), Some(&clerk), None, &json!({"email": "x"})).await),
        ("retire", retire(&app, "10", &clerk, None).await),
        ("permit", app.post(&permitted("10"), Some(&clerk), &json!({"code": "131016"})).await),
        ("permit an invalid code", app.post(&permitted("10"), Some(&clerk), &json!({"code": "1"})).await),
        ("withdraw", withdraw(&app, "01", "131016", &clerk).await),
    ];
    for (what, reply) in changes {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}: {}", reply.text);
        reply.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    }
    assert_eq!(app.event_count().await, before, "nothing was written");

    // He reads the business systems …
    let list = app.get(PATH, Some(&clerk)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(ids(&list.json()), ["00", "01", "02", "10"]);
    let shown = app.get(&one("10"), Some(&clerk)).await;
    assert_eq!((shown.status, shown.json()["name"].as_str()), (StatusCode::OK, Some("施設予約")));
    // … but of shared use only his own municipality: which others share a system is not his to know.
    let shared = app.get(&permitted("01"), Some(&clerk)).await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
    assert_eq!(codes(&shared.json()), ["131016"]);
    assert_eq!(codes(&app.get(&permitted("01"), Some(&admin)).await.json()), ["011002", "131016"]);
    assert_eq!(codes(&app.get(&permitted("10"), Some(&clerk)).await.json()), Vec::<String>::new());
}

async fn shared_use_is_permitted_and_withdrawn(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    app.register_municipality(&token, "011002", "札幌市", 2).await;
    assert_eq!(codes(&app.get(&permitted("01"), Some(&token)).await.json()), Vec::<String>::new());
    let before = app.event_count().await;

    let reply = app.post(&permitted("01"), Some(&token), &json!({"code": "131016"})).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json(), json!({"code": "131016", "name": "千代田区"}));
    assert_eq!(reply.etag(), "\"2\"", "the business system's new version");
    assert_eq!(app.event_count().await, before + 1);
    assert_eq!(app.get(&one("01"), Some(&token)).await.etag(), "\"2\"");

    // Permitting again changes nothing and says so with 200.
    let again = app.post(&permitted("01"), Some(&token), &json!({"code": "131016"})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!((again.etag(), again.json()), ("\"2\"", reply.json()));
    assert_eq!(app.event_count().await, before + 1);

    let sapporo = app.post(&permitted("01"), Some(&token), &json!({"code": "011002"})).await;
    assert_eq!(sapporo.status, StatusCode::CREATED, "{}", sapporo.text);
    let list = app.get(&permitted("01"), Some(&token)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert_eq!(list.etag(), "\"3\"");
    assert_eq!(
        list.json(),
        json!({"items": [{"code": "011002", "name": "札幌市"}, {"code": "131016", "name": "千代田区"}], "next_cursor": null})
    );
    let paged = app.get(&format!("{}?limit=1", permitted("01")), Some(&token)).await.json();
    assert_eq!(codes(&paged), ["011002"]);
    let next = paged["next_cursor"].as_str().expect("a next page");
    let last = app.get(&format!("{}?limit=1&cursor={next}", permitted("01")), Some(&token)).await.json();
    assert_eq!((codes(&last), &last["next_cursor"]), (vec!["131016".to_owned()], &Value::Null));
    // Another business system is not affected.
    assert_eq!(codes(&app.get(&permitted("02"), Some(&token)).await.json()), Vec::<String>::new());

    // Withdraw.
    let count = app.event_count().await;
    let gone = withdraw(&app, "01", "131016", &token).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);
    assert_eq!(gone.etag(), "\"4\"");
    assert!(gone.text.is_empty());
    assert_eq!(app.event_count().await, count + 1);
    assert_eq!(codes(&app.get(&permitted("01"), Some(&token)).await.json()), ["011002"]);

    // Withdrawing again, or a municipality never permitted: 409; no code, or no such system: 404.
    let not_permitted = "/problems/shared-use-not-permitted";
    let reply = refused(&app, withdraw(&app, "01", "131016", &token), StatusCode::CONFLICT, not_permitted).await;
    assert!(reply.json()["detail"].as_str().is_some_and(|d| d.contains("許可")), "{}", reply.text);
    refused(&app, withdraw(&app, "02", "011002", &token), StatusCode::CONFLICT, not_permitted).await;
    refused(&app, withdraw(&app, "01", "abc", &token), StatusCode::NOT_FOUND, "/problems/not-found").await;
    refused(&app, withdraw(&app, "55", "011002", &token), StatusCode::NOT_FOUND, "/problems/not-found").await;
    let no_system = app.post(&permitted("55"), Some(&token), &json!({"code": "131016"}));
    refused(&app, no_system, StatusCode::NOT_FOUND, "/problems/not-found").await;
    app.get(&permitted("55"), Some(&token)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    // A withdrawn municipality can be permitted again.
    let back = app.post(&permitted("01"), Some(&token), &json!({"code": "131016"})).await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.text);
    assert_eq!(codes(&app.get(&permitted("01"), Some(&token)).await.json()), ["011002", "131016"]);
}

async fn only_a_registered_municipality_can_be_permitted(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    app.register_municipality(&token, "011002", "札幌市", 2).await;
    let abolished = send(app.request(Method::POST, "/api/v1/municipalities/011002/abolish", Some(&token))).await;
    assert_eq!(abolished.status, StatusCode::OK, "{}", abolished.text);

    for (what, body, field) in [
        ("a code nobody registered", json!({"code": with_check_digit("27100")}), "/code"),
        ("an abolished municipality", json!({"code": "011002"}), "/code"),
        ("a wrong check digit", json!({"code": "131017"}), "/code"),
        ("full-width digits", json!({"code": "１３１０１６"}), "/code"),
        ("no code", json!({}), "/code"),
        ("a code as a number", json!({"code": 131016}), "/code"),
        ("an unknown field", json!({"code": "131016", "name": "千代田区"}), "/name"),
    ] {
        let reply = refused(
            &app,
            app.post(&permitted("01"), Some(&token), &body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        )
        .await;
        assert_eq!(reply.error_fields(), [field], "{what}: {}", reply.text);
    }
    let unknown = app.post(&permitted("01"), Some(&token), &json!({"code": with_check_digit("27100")})).await;
    assert_eq!(unknown.error_message("/code"), "この市町村・任意団体は登録されていません");
    let gone = app.post(&permitted("01"), Some(&token), &json!({"code": "011002"})).await;
    assert_eq!(gone.error_message("/code"), "この市町村・任意団体は廃止されています");
    assert_eq!(codes(&app.get(&permitted("01"), Some(&token)).await.json()), Vec::<String>::new());
}

async fn a_retry_with_the_same_idempotency_key_is_applied_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;
    let before = app.event_count().await;
    let post = |path: String, key: &str, body: Value| {
        send(app.request(Method::POST, &path, Some(&token)).header("idempotency-key", key).json(&body))
    };

    let first = post(PATH.to_owned(), "bs-retry-1", full("10")).await;
    let retry = post(PATH.to_owned(), "bs-retry-1", full("10")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(retry.status, StatusCode::CREATED, "the retry gets the first answer: {}", retry.text);
    assert_eq!((retry.etag(), retry.json()), (first.etag(), first.json()));
    assert_eq!(retry.header("location"), first.header("location"));

    let first = post(permitted("10"), "permit-retry-1", json!({"code": "131016"})).await;
    let retry = post(permitted("10"), "permit-retry-1", json!({"code": "131016"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(retry.status, StatusCode::CREATED, "the retry gets the first answer: {}", retry.text);
    assert_eq!((retry.etag(), retry.json()), (first.etag(), first.json()));
    assert_eq!(app.event_count().await, before + 2, "one registration and one permit");

    let other_key = post(PATH.to_owned(), "bs-retry-2", full("10"));
    refused(&app, other_key, StatusCode::CONFLICT, "/problems/already-exists").await;
}

async fn the_list_pages_in_business_id_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    for id in ["42", "10", "99", "11"] {
        register(&app, &token, &business_system(id, &format!("業務{id}"))).await;
    }

    let mut seen = vec![];
    let mut path = format!("{PATH}?limit=3");
    loop {
        let reply = app.get(&path, Some(&token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let page = reply.json();
        assert!(ids(&page).len() <= 3);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{PATH}?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["00", "01", "02", "10", "11", "42", "99"]);

    for (query, field) in [("limit=0", "/limit"), ("limit=101", "/limit"), ("cursor=%%%", "/cursor")] {
        let reply = app.get(&format!("{PATH}?{query}"), Some(&token)).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
        assert_eq!(reply.error_fields(), [field], "{query}: {}", reply.text);
    }
    // Without a session: 401.
    app.get(PATH, None).await.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
}

/// Every route of this area is in the OpenAPI document.
async fn the_routes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;

    let doc = app.get("/openapi.json", None).await.json();

    for (path, methods) in [
        ("/api/v1/business-systems", &["get", "post"][..]),
        ("/api/v1/business-systems/{business_id}", &["get", "patch"]),
        ("/api/v1/business-systems/{business_id}/retire", &["post"]),
        ("/api/v1/business-systems/{business_id}/permitted-municipalities", &["get", "post"]),
        ("/api/v1/business-systems/{business_id}/permitted-municipalities/{code}", &["delete"]),
    ] {
        for method in methods {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
    }
    for schema in ["BusinessSystemView", "RegisterBusinessSystem", "UpdateBusinessSystem", "PermittedPage"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
}

on_both_backends!(
    the_builtins_are_there_from_the_first_start,
    the_builtins_are_registered_once_however_many_nodes_start,
    the_administrator_registers_a_business_system,
    a_duplicate_business_id_is_refused,
    business_ids_03_to_09_are_registrable,
    the_three_urls_are_required,
    invalid_fields_are_named_by_json_pointer,
    a_patch_merges_and_clears,
    a_stale_if_match_is_refused,
    concurrent_patches_without_if_match_are_all_merged,
    a_retired_business_system_cannot_change,
    a_builtin_cannot_be_retired,
    a_clerk_may_read_but_change_nothing,
    shared_use_is_permitted_and_withdrawn,
    only_a_registered_municipality_can_be_permitted,
    a_retry_with_the_same_idempotency_key_is_applied_once,
    the_list_pages_in_business_id_order,
    the_routes_are_documented,
);
