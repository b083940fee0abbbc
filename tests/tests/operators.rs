//! `/api/v1/municipalities/{code}/operators` as a municipality's administrators use it: registering one operator
//! or a batch (all or nothing), the rules of every field, shared use of business systems, searching and paging,
//! PATCH as a merge with `If-Match`, revocation and re-registration, password resets (one or in bulk) with the
//! password history, 業務内IDs, and `PUT /api/v1/me/password`. After every refused request the event log is
//! unchanged. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, on_both_backends, operator, operator_path, operator_with_password, operators_path, send,
    spawn_app,
};

/// 千代田区: the municipality whose operators these tests manage.
const CHIYODA: &str = "131016";
/// 札幌市: another municipality.
const SAPPORO: &str = "011002";

/// 千代田区, permitted to use business system 01 (not 02); the system administrator's token.
async fn chiyoda(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    admin
}

/// Sends the request behind `reply`, asserts the refusal, and that the event log did not change.
async fn refused(app: &TestApp, reply: impl Future<Output = Reply>, status: StatusCode, kind: &str) -> Reply {
    let before = app.event_count().await;
    let reply = reply.await;
    reply.problem(status, kind);
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {}", reply.text);
    reply
}

/// Asserts a 422 that names exactly `fields`, and that nothing was written.
async fn invalid(app: &TestApp, reply: impl Future<Output = Reply>, fields: &[&str]) -> Reply {
    let reply = refused(app, reply, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    assert_eq!(reply.error_fields(), fields, "{}", reply.text);
    reply
}

/// Asserts that this login is refused as a wrong operator ID or password.
async fn login_refused(app: &TestApp, operator_id: &str, password: &str) {
    let reply = app.try_login(Some(CHIYODA), operator_id, password).await;
    reply.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
}

/// Asserts that this session is no longer accepted.
async fn session_ended(app: &TestApp, token: &str) {
    app.get("/api/v1/me", Some(token)).await.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
}

/// The `operator_id`s of a list page, in order.
fn ids(page: &Value) -> Vec<String> {
    page["items"].as_array().expect("items").iter().map(|o| o["operator_id"].as_str().unwrap().to_owned()).collect()
}

/// The `business_id`s of `/me`.
fn business_ids(me: &Value) -> Vec<String> {
    me["business_systems"]
        .as_array()
        .expect("business_systems")
        .iter()
        .map(|b| b["business_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A password as the server generates them: half-width alphanumeric, long enough.
#[track_caller]
fn generated(value: &Value) -> String {
    let password = value.as_str().unwrap_or_else(|| panic!("a generated password: {value}"));
    assert!(password.len() >= 12 && password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password:?}");
    password.to_owned()
}

fn password_path(operator_id: &str) -> String {
    format!("{}/password", operator_path(CHIYODA, operator_id))
}

fn internal_id_path(operator_id: &str, business_id: &str) -> String {
    format!("{}/internal-ids/{business_id}", operator_path(CHIYODA, operator_id))
}

/// Every field of the registration screen, valid.
fn full(operator_id: &str) -> Value {
    json!({
        "operator_id": operator_id,
        "name": "窓口 太郎",
        "department": "市民課",
        "sex": "1",
        "phone": "03-3333-4444",
        "extension": "1234",
        "email": "taro@chiyoda.example.jp",
        "info": "本庁舎",
        "extra": "臨時職員",
        "roles": ["clerk"],
        "business_systems": ["01"],
    })
}

async fn an_operator_is_registered_and_his_generated_password_is_shown_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let before = app.event_count().await;
    let body = full("OP0501");

    let reply = app.post(&operators_path(CHIYODA), Some(&admin), &body).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.etag(), "\"1\"");
    assert_eq!(reply.header("location"), Some("/api/v1/municipalities/131016/operators/OP0501"));
    let created = reply.json();
    for field in ["operator_id", "name", "department", "sex", "phone", "extension", "email", "info", "extra"] {
        assert_eq!(created[field], body[field], "{field}");
    }
    assert_eq!(created["municipality"], CHIYODA);
    assert_eq!(created["roles"], json!(["clerk"]));
    assert_eq!(created["business_systems"], json!(["01"]));
    assert_eq!(created["internal_ids"], json!([]));
    assert_eq!((created["revoked"].as_bool(), created["locked"].as_bool()), (Some(false), Some(false)));
    assert_eq!(created["locked_until"], Value::Null);
    assert_eq!(created["version"], 1);
    let password = generated(&created["password"]);
    assert_eq!(app.event_count().await, before + 1);

    // Shown once: reading him back shows everything but the password.
    let shown = app.get(&operator_path(CHIYODA, "OP0501"), Some(&admin)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.etag(), "\"1\"");
    let mut expected = created.clone();
    expected.as_object_mut().unwrap().remove("password");
    assert_eq!(shown.json(), expected);
    // The generated password is his.
    let token = app.login(Some(CHIYODA), "OP0501", &password).await;
    let me = app.get("/api/v1/me", Some(&token)).await.json();
    assert_eq!((me["operator_id"].as_str(), me["municipality"].as_str()), (Some("OP0501"), Some(CHIYODA)));
    assert_eq!(me["roles"], json!(["clerk"]));

    // A password the administrator chose is never echoed.
    let given = operator_with_password("OP0502", "GivenPassw0rd", &["clerk"], &[]);
    let reply = app.post(&operators_path(CHIYODA), Some(&admin), &given).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json().get("password"), None, "{}", reply.text);
    assert!(!reply.text.contains("GivenPassw0rd"));
    app.login(Some(CHIYODA), "OP0502", "GivenPassw0rd").await;
    // A clerk may read his own record, not another's.
    assert_eq!(app.get(&operator_path(CHIYODA, "OP0501"), Some(&token)).await.status, StatusCode::OK);
    let other = app.get(&operator_path(CHIYODA, "OP0502"), Some(&token)).await;
    other.problem(StatusCode::FORBIDDEN, "/problems/forbidden");

    // A municipality nobody registered has no operators to register.
    let nowhere = cardap_tests::with_check_digit("27100");
    refused(
        &app,
        app.post(&operators_path(&nowhere), Some(&admin), &operator("OP0501", &["clerk"], &[])),
        StatusCode::NOT_FOUND,
        "/problems/not-found",
    )
    .await;
}

async fn a_batch_is_registered_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let path = operators_path(CHIYODA);
    let good = |id: &str| operator(id, &["clerk"], &["01"]);
    let mut nameless = good("OP0602");
    nameless["name"] = json!("");
    let mut unusable = good("OP0602");
    unusable["business_systems"] = json!(["02"]);

    let bad_field =
        invalid(&app, app.post(&path, Some(&admin), &json!([good("OP0601"), nameless, good("OP0603")])), &["/1/name"])
            .await;
    let bad_system = invalid(
        &app,
        app.post(&path, Some(&admin), &json!([good("OP0601"), unusable, good("OP0603")])),
        &["/1/business_systems"],
    )
    .await;
    let twice = invalid(
        &app,
        app.post(&path, Some(&admin), &json!([good("OP0601"), good("OP0602"), good("OP0601")])),
        &["/2/operator_id"],
    )
    .await;

    for reply in [&bad_field, &bad_system, &twice] {
        assert!(!reply.error_message(&reply.error_fields()[0]).is_ascii(), "a Japanese message: {}", reply.text);
    }
    assert_eq!(ids(&app.get(&path, Some(&admin)).await.json()), Vec::<String>::new(), "nobody was registered");
    for id in ["OP0601", "OP0602", "OP0603"] {
        let reply = app.get(&operator_path(CHIYODA, id), Some(&admin)).await;
        reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }

    // The same three, all valid: all of them, with the generated passwords shown once.
    let before = app.event_count().await;
    let batch =
        json!([good("OP0601"), operator_with_password("OP0602", "GivenPassw0rd", &["auditor"], &[]), good("OP0603")]);
    let reply = app.post(&path, Some(&admin), &batch).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let items = reply.json()["items"].clone();
    assert_eq!(ids(&reply.json()), ["OP0601", "OP0602", "OP0603"]);
    assert_eq!(items[1].get("password"), None, "a given password is not echoed");
    assert_eq!(app.event_count().await, before + 3);
    app.login(Some(CHIYODA), "OP0601", &generated(&items[0]["password"])).await;
    app.login(Some(CHIYODA), "OP0602", "GivenPassw0rd").await;
    app.login(Some(CHIYODA), "OP0603", &generated(&items[2]["password"])).await;
    // One of a batch registered already: the batch names him and writes nothing.
    invalid(&app, app.post(&path, Some(&admin), &json!([good("OP0604"), good("OP0601")])), &["/1/operator_id"]).await;
    app.get(&operator_path(CHIYODA, "OP0604"), Some(&admin))
        .await
        .problem(StatusCode::NOT_FOUND, "/problems/not-found");
    // An empty batch registers nobody.
    invalid(&app, app.post(&path, Some(&admin), &json!([])), &["/0"]).await;
}

async fn an_operator_id_is_registered_once_per_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    app.add_operators(&admin, CHIYODA, &operator("OP0501", &["clerk"], &[])).await;

    let again = refused(
        &app,
        app.post(&operators_path(CHIYODA), Some(&admin), &operator("OP0501", &["auditor"], &[])),
        StatusCode::CONFLICT,
        "/problems/already-exists",
    )
    .await;

    assert!(!again.json()["detail"].as_str().unwrap().is_ascii(), "{}", again.text);
    let shown = app.get(&operator_path(CHIYODA, "OP0501"), Some(&admin)).await.json();
    assert_eq!(shown["roles"], json!(["clerk"]), "the first registration stands");
    // Another municipality may have its own OP0501.
    let other = app.add_operators(&admin, SAPPORO, &operator("OP0501", &["auditor"], &[])).await;
    assert_eq!(other["municipality"], SAPPORO);
}

async fn only_business_systems_the_municipality_may_use_can_be_granted(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await; // 01 only
    let path = operators_path(CHIYODA);
    let with = |systems: &[&str]| operator("OP0501", &["clerk"], systems);

    for (systems, field) in [
        (&["02"][..], "/business_systems"),
        (&["01", "02"], "/business_systems"),
        (&["00"], "/business_systems"),
        (&["99"], "/business_systems"),
        (&["1"], "/business_systems/0"),
    ] {
        invalid(&app, app.post(&path, Some(&admin), &with(systems)), &[field]).await;
    }

    // Once 02 is permitted to 千代田区, the same registration goes through.
    app.permit(&admin, "02", CHIYODA).await;
    let created = app.add_operators(&admin, CHIYODA, &with(&["02", "01", "02"])).await;
    assert_eq!(created["business_systems"], json!(["01", "02"]), "sorted, each once");
    // Withdrawn again: no new operator and no change may grant it.
    app.withdraw(&admin, "02", CHIYODA).await;
    invalid(&app, app.post(&path, Some(&admin), &operator("OP0502", &["clerk"], &["02"])), &["/business_systems"])
        .await;
    let change = json!({"business_systems": ["02"]});
    invalid(&app, app.patch(&operator_path(CHIYODA, "OP0501"), Some(&admin), None, &change), &["/business_systems"])
        .await;
}

/// Every refusal of what an operator asks for is named at once: in a batch, each at the item's field, naming the
/// business system it is about; so too for one registration and for a change.
async fn every_business_system_the_municipality_may_not_use_is_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await; // 01 only
    let path = operators_path(CHIYODA);
    let messages = |reply: &Reply| -> Vec<String> {
        let errors = reply.json()["errors"].as_array().unwrap().clone();
        errors.iter().map(|e| e["message"].as_str().unwrap().to_owned()).collect()
    };
    let not_usable = |b: &str| format!("共同利用が許可されていない業務システムは選択できません（{b}）");

    let batch = json!([operator("OP0601", &["clerk"], &["01"]), operator("OP0602", &["clerk"], &["03", "01", "02"])]);
    let reply =
        invalid(&app, app.post(&path, Some(&admin), &batch), &["/1/business_systems", "/1/business_systems"]).await;
    assert_eq!(messages(&reply), [not_usable("02"), not_usable("03")]);
    let english = app.request(Method::POST, &path, Some(&admin)).header("accept-language", "en").json(&batch);
    let english = send(english).await;
    let expected = ["02", "03"].map(|b| format!("business system {b} is not usable by the operator's municipality"));
    assert_eq!(messages(&english), expected, "{}", english.text);

    // One registration: the role and both business systems.
    let one = operator("OP0601", &["system_admin"], &["02", "03"]);
    let reply =
        invalid(&app, app.post(&path, Some(&admin), &one), &["/roles", "/business_systems", "/business_systems"]).await;
    assert_eq!(messages(&reply)[1..], [not_usable("02"), not_usable("03")]);

    // A change: the same.
    app.add_operators(&admin, CHIYODA, &operator("OP0601", &["clerk"], &["01"])).await;
    let change = json!({"roles": ["system_admin"], "business_systems": ["01", "02"]});
    invalid(
        &app,
        app.patch(&operator_path(CHIYODA, "OP0601"), Some(&admin), None, &change),
        &["/roles", "/business_systems"],
    )
    .await;
    assert_eq!(ids(&app.get(&path, Some(&admin)).await.json()), ["OP0601"], "nobody else was registered");
}

async fn a_municipal_operator_cannot_be_a_system_administrator(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let path = operators_path(CHIYODA);

    for (roles, field) in [
        (&["system_admin"][..], "/roles"),
        (&["clerk", "system_admin"], "/roles"),
        (&[], "/roles"),
        (&["root"], "/roles/0"),
        (&["clerk", "admin"], "/roles/1"),
    ] {
        invalid(&app, app.post(&path, Some(&admin), &operator("OP0501", roles, &[])), &[field]).await;
    }

    // Nor can a change make him one.
    app.add_operators(&admin, CHIYODA, &operator("OP0501", &["clerk"], &[])).await;
    let change = json!({"roles": ["system_admin"]});
    invalid(&app, app.patch(&operator_path(CHIYODA, "OP0501"), Some(&admin), None, &change), &["/roles"]).await;
    let shown = app.get(&operator_path(CHIYODA, "OP0501"), Some(&admin)).await.json();
    assert_eq!(shown["roles"], json!(["clerk"]));
}

async fn every_field_is_checked_and_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let path = operators_path(CHIYODA);
    let mut valid = full("OP0501");
    valid["password"] = json!("Passw0rd");
    #[rustfmt::skip]
    let cases = [
        ("operator_id", json!("ＯＰ０５０１")),
        ("operator_id", json!("OP-0501")),
        ("operator_id", json!("")),
        ("operator_id", json!("A".repeat(33))),
        ("password", json!("Passw0r")),
        ("password", json!("pass word1")),
        ("password", json!("Passw0rd!")),
        ("password", json!("ｐａｓｓｗｏｒｄ１")),
        ("name", json!("")),
        ("name", json!("   ")),
        ("name", json!("窓".repeat(101))),
        ("department", json!("課".repeat(101))),
        ("sex", json!("3")),
        ("sex", json!(1)),
        ("phone", json!("03-3333-444")),
        ("phone", json!("電話")),
        ("extension", json!("内線12")),
        ("extension", json!("12345678901")),
        ("email", json!("taro.example.jp")),
        ("email", json!("taro@example")),
        ("info", json!("情".repeat(201))),
        ("extra", json!("付".repeat(201))),
    ];
    let before = app.event_count().await;

    for (field, value) in &cases {
        let mut body = valid.clone();
        body[*field] = value.clone();
        let reply = app.post(&path, Some(&admin), &body).await;

        let pointer = format!("/{field}");
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
        assert_eq!(reply.error_fields(), [pointer.as_str()], "{field} = {value}: {}", reply.text);
        assert!(!reply.error_message(&pointer).is_ascii(), "a Japanese message for {field} = {value}");
    }

    assert_eq!(app.event_count().await, before, "nothing was written");
    // Several wrong fields at once are named together, in English on request.
    let mut body = valid.clone();
    body["operator_id"] = json!("ＯＰ");
    body["sex"] = json!("3");
    body["email"] = json!("@");
    let reply = send(app.request(Method::POST, &path, Some(&admin)).header("accept-language", "en").json(&body)).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    let mut fields = reply.error_fields();
    fields.sort();
    assert_eq!(fields, ["/email", "/operator_id", "/sex"]);
    assert!(reply.error_message("/sex").is_ascii(), "{}", reply.text);
    // Empty optional fields are simply absent; the valid body goes through.
    let mut body = valid;
    body["department"] = json!("");
    body["phone"] = json!(" ");
    let created = app.add_operators(&admin, CHIYODA, &body).await;
    assert_eq!((&created["department"], &created["phone"]), (&Value::Null, &Value::Null));
}

/// Query parameters of `GET …/operators`.
type Query<'a> = &'a [(&'a str, &'a str)];

/// `GET …/operators` with these query parameters; the operator IDs of the page and the next cursor.
async fn search(app: &TestApp, token: &str, query: &[(&str, &str)]) -> (Vec<String>, Value) {
    let reply = send(app.request(Method::GET, &operators_path(CHIYODA), Some(token)).query(query)).await;
    assert_eq!(reply.status, StatusCode::OK, "{query:?}: {}", reply.text);
    (ids(&reply.json()), reply.json()["next_cursor"].clone())
}

async fn operators_are_found_by_substrings_and_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let person = |id: &str, name: &str, department: Value, phone: Value, email: Value, info: Value| {
        json!({"operator_id": id, "name": name, "department": department, "phone": phone, "email": email,
            "info": info, "password": "Passw0rdOK", "roles": ["clerk"]})
    };
    let batch = json!([
        person(
            "OP0501",
            "窓口 太郎",
            json!("市民課"),
            json!("03-3333-4444"),
            json!("taro@chiyoda.example.jp"),
            json!("本庁舎")
        ),
        person(
            "OP0502",
            "窓口 花子",
            json!("市民課"),
            json!("03-3333-5555"),
            json!("hanako@chiyoda.example.jp"),
            json!("出張所")
        ),
        person(
            "OP0601",
            "税務 一郎",
            json!("税務課"),
            json!("03-5555-6666"),
            json!("ichiro@tax.example.jp"),
            json!("本庁舎")
        ),
        person("OP0602", "図書 次郎", json!("図書館"), json!("03-7777-8888"), Value::Null, Value::Null),
        person("OP0701", "100%_担当", json!("情報政策課"), Value::Null, Value::Null, json!("50%")),
    ]);
    app.add_operators(&admin, CHIYODA, &batch).await;
    let all = ["OP0501", "OP0502", "OP0601", "OP0602", "OP0701"];

    #[rustfmt::skip]
    let cases: [(Query, &[&str]); 16] = [
        (&[], &all),
        (&[("operator_id", "05")], &["OP0501", "OP0502"]),
        (&[("operator_id", "P06")], &["OP0601", "OP0602"]),
        (&[("name", "窓口")], &["OP0501", "OP0502"]),
        (&[("name", "郎")], &["OP0501", "OP0601", "OP0602"]),
        (&[("department", "市民")], &["OP0501", "OP0502"]),
        (&[("phone", "5555")], &["OP0502", "OP0601"]),
        (&[("email", "chiyoda.example")], &["OP0501", "OP0502"]),
        (&[("email", "example.jp")], &["OP0501", "OP0502", "OP0601"]),
        (&[("info", "本庁舎")], &["OP0501", "OP0601"]),
        (&[("name", "郎"), ("info", "本庁舎")], &["OP0501", "OP0601"]),
        (&[("name", "窓口"), ("department", "税務")], &[]),
        // LIKE's wildcards are taken literally.
        (&[("name", "%")], &["OP0701"]),
        (&[("name", "_")], &["OP0701"]),
        (&[("info", "0%")], &["OP0701"]),
        (&[("name", " 窓口 ")], &["OP0501", "OP0502"]),
    ];
    for (query, expected) in cases {
        let (found, next) = search(&app, &admin, query).await;
        assert_eq!(found, expected, "{query:?}");
        assert_eq!(next, Value::Null, "{query:?}");
    }

    // Paging: every operator once, in operator-ID order, also under a filter.
    let mut seen = vec![];
    let mut pages = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "2")];
        if let Some(c) = &cursor {
            query.push(("cursor", c));
        }
        let (found, next) = search(&app, &admin, &query).await;
        pages.push(found.len());
        seen.extend(found);
        match next.as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(seen, all);
    let (first, next) = search(&app, &admin, &[("name", "郎"), ("limit", "2")]).await;
    assert_eq!(first, ["OP0501", "OP0601"]);
    let (rest, last) =
        search(&app, &admin, &[("name", "郎"), ("limit", "2"), ("cursor", next.as_str().unwrap())]).await;
    assert_eq!((rest, last), (vec!["OP0602".to_owned()], Value::Null));
    let (exact, next) = search(&app, &admin, &[("limit", "5")]).await;
    assert_eq!((exact.len(), next), (5, Value::Null), "a page exactly as long as what is left is the last");
    // A cursor is opaque: one the server did not make names the parameter, like a bad limit.
    for (query, field) in [(("cursor", "OP0501"), "/cursor"), (("limit", "501"), "/limit")] {
        let reply = send(app.request(Method::GET, &operators_path(CHIYODA), Some(&admin)).query(&[query])).await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{query:?}: {}", reply.text);
        assert_eq!(reply.error_fields(), [field]);
    }

    // Revoked operators are left out unless asked for.
    let revoke = app.post_empty(&format!("{}/revoke", operator_path(CHIYODA, "OP0602")), Some(&admin)).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    assert_eq!(search(&app, &admin, &[("name", "郎")]).await.0, ["OP0501", "OP0601"]);
    let (with_revoked, _) = search(&app, &admin, &[("include_revoked", "true"), ("operator_id", "OP06")]).await;
    assert_eq!(with_revoked, ["OP0601", "OP0602"]);
    // His name went with his revocation (失効 erases the management information): no name matches him any more.
    let (by_name, _) = search(&app, &admin, &[("name", "郎"), ("include_revoked", "true")]).await;
    assert_eq!(by_name, ["OP0501", "OP0601"]);
    // Bad paging parameters are the clerk's mistake.
    for bad in ["0", "501", "many"] {
        let reply =
            send(app.request(Method::GET, &operators_path(CHIYODA), Some(&admin)).query(&[("limit", bad)])).await;
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
        assert_eq!(reply.error_fields(), ["/limit"], "limit={bad}");
    }
}

/// Operator IDs are case-sensitive (`OP0501` and `op0501` are two operators), and the filter must say the same
/// on both backends: LIKE is case-sensitive on PostgreSQL but not on SQLite.
async fn the_operator_id_filter_keeps_case_on_both_backends(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let batch = json!([
        operator_with_password("OP0501", "Passw0rdOK", &["clerk"], &[]),
        operator_with_password("op0502", "Passw0rdOK", &["clerk"], &[]),
    ]);
    app.add_operators(&admin, CHIYODA, &batch).await;

    let upper = search(&app, &admin, &[("operator_id", "OP")]).await.0;
    let lower = search(&app, &admin, &[("operator_id", "op")]).await.0;

    assert_eq!(upper, ["OP0501"], "{backend:?}");
    assert_eq!(lower, ["op0502"], "{backend:?}");
}

async fn a_change_merges_into_the_operator_under_if_match(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.permit(&admin, "02", CHIYODA).await;
    app.add_operators(&admin, CHIYODA, &full("OP0501")).await;
    let path = operator_path(CHIYODA, "OP0501");

    let reply = app.patch(&path, Some(&admin), Some("\"1\""), &json!({"department": "税務課", "phone": null})).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"2\"");
    let changed = reply.json();
    assert_eq!((changed["department"].as_str(), &changed["phone"]), (Some("税務課"), &Value::Null));
    for field in ["name", "sex", "extension", "email", "info", "extra", "roles", "business_systems"] {
        assert_eq!(changed[field], full("OP0501")[field], "{field} stays as it was");
    }
    assert_eq!(app.get(&path, Some(&admin)).await.json(), changed, "GET shows what PATCH answered");

    // Roles and business systems: one version per event.
    let both = json!({"roles": ["auditor", "clerk"], "business_systems": ["02", "01"]});
    let reply = app.patch(&path, Some(&admin), Some("\"2\""), &both).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"4\"");
    assert_eq!(
        (&reply.json()["roles"], &reply.json()["business_systems"]),
        (&json!(["clerk", "auditor"]), &json!(["01", "02"]))
    );
    // A stale ETag: 412, nothing written.
    let stale = app.patch(&path, Some(&admin), Some("\"2\""), &json!({"name": "別人"}));
    refused(&app, stale, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    // What already is writes nothing and keeps the version.
    let before = app.event_count().await;
    let same = app.patch(&path, Some(&admin), Some("\"4\""), &json!({"department": "税務課"})).await;
    assert_eq!((same.status, same.etag()), (StatusCode::OK, "\"4\""), "{}", same.text);
    assert_eq!(app.event_count().await, before);
    // Without If-Match the change applies to whatever is current; "" clears like null.
    let blind = app.patch(&path, Some(&admin), None, &json!({"extension": null, "info": ""})).await;
    assert_eq!((blind.status, blind.etag()), (StatusCode::OK, "\"5\""), "{}", blind.text);
    assert_eq!((&blind.json()["extension"], &blind.json()["info"]), (&Value::Null, &Value::Null));
    // Wrong fields are named, and change nothing.
    invalid(&app, app.patch(&path, Some(&admin), None, &json!({"name": ""})), &["/name"]).await;
    invalid(&app, app.patch(&path, Some(&admin), None, &json!({"phone": "12"})), &["/phone"]).await;
    invalid(&app, app.patch(&path, Some(&admin), None, &json!({"operator_id": "OP9999"})), &["/operator_id"]).await;
    let nobody = app.patch(&operator_path(CHIYODA, "OP9999"), Some(&admin), None, &json!({"name": "誰か"}));
    refused(&app, nobody, StatusCode::NOT_FOUND, "/problems/not-found").await;
    assert_eq!(app.get(&path, Some(&admin)).await.etag(), "\"5\"");
}

/// A change of the profile together with roles or business systems is one decision: refused in part, it is
/// refused as a whole.
async fn a_change_refused_in_part_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await; // 01 only
    app.add_operators(&admin, CHIYODA, &full("OP0501")).await;
    let path = operator_path(CHIYODA, "OP0501");

    let admin_role = json!({"name": "窓口 次郎", "roles": ["system_admin"]});
    let no_roles = json!({"name": "窓口 次郎", "roles": []});
    let unusable = json!({"department": "税務課", "business_systems": ["02"]});
    let both = json!({"name": "窓口 次郎", "roles": ["auditor"], "business_systems": ["02"]});
    let admin_role = invalid(&app, app.patch(&path, Some(&admin), Some("\"1\""), &admin_role), &["/roles"]).await;
    let no_roles = invalid(&app, app.patch(&path, Some(&admin), Some("\"1\""), &no_roles), &["/roles"]).await;
    let unusable =
        invalid(&app, app.patch(&path, Some(&admin), Some("\"1\""), &unusable), &["/business_systems"]).await;
    let both = invalid(&app, app.patch(&path, Some(&admin), Some("\"1\""), &both), &["/business_systems"]).await;

    for reply in [admin_role, no_roles, unusable, both] {
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let shown = app.get(&path, Some(&admin)).await;
    assert_eq!(shown.etag(), "\"1\"");
    let shown = shown.json();
    assert_eq!((shown["name"].as_str(), shown["department"].as_str()), (Some("窓口 太郎"), Some("市民課")));
    assert_eq!(shown["roles"], json!(["clerk"]));
}

async fn a_revoked_operator_can_do_nothing_until_he_is_registered_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let mut first = operator_with_password("OP0501", "ClerkPassw0rd", &["clerk"], &["01"]);
    first["name"] = json!("窓口 次郎");
    first["phone"] = json!("03-1111-2222");
    first["email"] = json!("jiro@example.jp");
    first["department"] = json!("市民課");
    app.add_operators(&admin, CHIYODA, &first).await;
    let changed = app.patch(&operator_path(CHIYODA, "OP0501"), Some(&admin), None, &json!({"info": "窓口担当"})).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let assigned =
        app.put(&internal_id_path("OP0501", "01"), Some(&admin), &json!({"internal_id": "1000000010"})).await;
    assert_eq!(assigned.status, StatusCode::OK, "{}", assigned.text);
    let token = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    let revoke_path = format!("{}/revoke", operator_path(CHIYODA, "OP0501"));

    let reply = app.post_empty(&revoke_path, Some(&admin)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["revoked"], true);
    // His session ends with the very next request, and he cannot log in; nothing tells him why.
    session_ended(&app, &token).await;
    let login = app.try_login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    let unknown = app.try_login(Some(CHIYODA), "OP9999", "ClerkPassw0rd").await;
    login.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    assert_eq!(login.text, unknown.text);
    // Nothing more can be done to him.
    let path = operator_path(CHIYODA, "OP0501");
    let kind = "/problems/operator-revoked";
    refused(&app, app.post_empty(&revoke_path, Some(&admin)), StatusCode::CONFLICT, kind).await;
    refused(&app, app.patch(&path, Some(&admin), None, &json!({"department": "税務課"})), StatusCode::CONFLICT, kind)
        .await;
    refused(&app, app.post(&password_path("OP0501"), Some(&admin), &json!({})), StatusCode::CONFLICT, kind).await;
    // He is on record, out of the default list — his ID, roles and history, without his management information
    // (操作者の登録情報を削除): name, department, phone, e-mail and info are erased, in the directory and in the
    // events his administrators recorded.
    let shown = app.get(&path, Some(&admin)).await.json();
    assert_eq!(
        (&shown["revoked"], &shown["operator_id"], &shown["roles"]),
        (&json!(true), &json!("OP0501"), &json!(["clerk"]))
    );
    for field in ["name", "department", "phone", "email", "info"] {
        assert_eq!(shown[field], Value::Null, "{field}: {shown}");
    }
    let history =
        app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}&operator_id=OP0501"), Some(&admin)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let lines: Vec<Value> = history.text.lines().map(|l| cardap_tests::serde_json::from_str(l).unwrap()).collect();
    let of = |kind: &str| lines.iter().find(|l| l["type"] == kind).unwrap_or_else(|| panic!("no {kind}: {lines:?}"));
    assert_eq!(of("OperatorRegistered")["changes"]["operator_id"], "OP0501");
    assert_eq!(of("OperatorRegistered")["changes"]["personal"], Value::Null);
    assert_eq!(of("OperatorProfileUpdated")["changes"]["personal"], Value::Null);
    assert!(lines.iter().any(|l| l["type"] == "OperatorRevoked"), "what was done to him stays: {lines:?}");
    for erased in ["次郎", "03-1111-2222", "jiro@example.jp", "市民課", "窓口担当"] {
        assert!(!history.text.contains(erased), "{erased} outlived his revocation: {}", history.text);
    }
    assert_eq!(search(&app, &admin, &[]).await.0, Vec::<String>::new());
    assert_eq!(search(&app, &admin, &[("include_revoked", "true")]).await.0, ["OP0501"]);

    // Registered again: a new decision and a fresh start.
    let again = operator_with_password("OP0501", "NewClerkPassw0rd", &["auditor"], &[]);
    let reply = app.post(&operators_path(CHIYODA), Some(&admin), &again).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    assert_eq!((body["revoked"].as_bool(), &body["roles"]), (Some(false), &json!(["auditor"])));
    assert_eq!((&body["name"], &body["phone"]), (&json!("テスト OP0501"), &Value::Null), "his new registration's own");
    assert_eq!((&body["business_systems"], &body["internal_ids"]), (&json!([]), &json!([])));
    let new_token = app.login(Some(CHIYODA), "OP0501", "NewClerkPassw0rd").await;
    assert_eq!(app.get("/api/v1/me", Some(&new_token)).await.json()["roles"], json!(["auditor"]));
    login_refused(&app, "OP0501", "ClerkPassw0rd").await;
    session_ended(&app, &token).await;
    assert_eq!(search(&app, &admin, &[]).await.0, ["OP0501"]);
}

async fn withdrawing_shared_use_takes_the_system_off_his_top_page_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.permit(&admin, "02", CHIYODA).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", "ClerkPassw0rd", &["clerk"], &["01", "02"]))
        .await;
    let token = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    assert_eq!(business_ids(&app.get("/api/v1/me", Some(&token)).await.json()), ["01", "02"]);

    app.withdraw(&admin, "01", CHIYODA).await;

    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(business_ids(&me.json()), ["02"]);
    // His own permission is still on record: permitted again, 01 is back.
    let shown = app.get(&operator_path(CHIYODA, "OP0501"), Some(&admin)).await.json();
    assert_eq!(shown["business_systems"], json!(["01", "02"]));
    app.permit(&admin, "01", CHIYODA).await;
    assert_eq!(business_ids(&app.get("/api/v1/me", Some(&token)).await.json()), ["01", "02"]);
}

async fn an_administrator_resets_a_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", "ClerkPassw0rd", &["clerk"], &[])).await;
    let token = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;

    // No body: a password is generated and shown once.
    let reply = app.post_empty(&password_path("OP0501"), Some(&admin)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["operator_id"], "OP0501");
    let new = generated(&reply.json()["password"]);
    login_refused(&app, "OP0501", "ClerkPassw0rd").await;
    session_ended(&app, &token).await;
    let token = app.login(Some(CHIYODA), "OP0501", &new).await;
    let events = app.operator_events(Some(CHIYODA), "OP0501").await;
    let changed = events.iter().rfind(|e| e.event_type == "OperatorPasswordChanged").expect("the change is recorded");
    assert_eq!(changed.payload["by_administrator"], true);
    assert!(events.iter().all(|e| !e.payload.to_string().contains(&new)), "no event carries the password");

    // A password the administrator chose: set, not echoed.
    let reply = app.post(&password_path("OP0501"), Some(&admin), &json!({"password": "ChosenPassw0rd"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(!reply.text.contains("ChosenPassw0rd"), "{}", reply.text);
    login_refused(&app, "OP0501", &new).await;
    session_ended(&app, &token).await;
    app.login(Some(CHIYODA), "OP0501", "ChosenPassw0rd").await;
    // One that breaks the rules changes nothing.
    invalid(&app, app.post(&password_path("OP0501"), Some(&admin), &json!({"password": "Short1"})), &["/password"])
        .await;
    invalid(
        &app,
        app.post(&password_path("OP0501"), Some(&admin), &json!({"password": "パスワード123"})),
        &["/password"],
    )
    .await;
    app.login(Some(CHIYODA), "OP0501", "ChosenPassw0rd").await;
    let nobody = app.post_empty(&password_path("OP9999"), Some(&admin));
    refused(&app, nobody, StatusCode::NOT_FOUND, "/problems/not-found").await;
}

async fn none_of_the_last_three_passwords_may_be_used_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", "FirstPassw0rd", &["clerk"], &[])).await;
    let token = app.login(Some(CHIYODA), "OP0501", "FirstPassw0rd").await;
    let change = |current: &str, new: &str| {
        app.put("/api/v1/me/password", Some(&token), &json!({"current_password": current, "new_password": new}))
    };
    let changed = |reply: Reply| assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);

    invalid(&app, change("FirstPassw0rd", "FirstPassw0rd"), &["/new_password"]).await;
    changed(change("FirstPassw0rd", "SecondPassw0rd").await);
    changed(change("SecondPassw0rd", "ThirdPassw0rd").await);

    // First, second and third are the last three.
    let reply = invalid(&app, change("ThirdPassw0rd", "FirstPassw0rd"), &["/new_password"]).await;
    assert!(reply.error_message("/new_password").contains('3'), "{}", reply.text);
    let reset = app.post(&password_path("OP0501"), Some(&admin), &json!({"password": "SecondPassw0rd"}));
    invalid(&app, reset, &["/password"]).await;
    app.login(Some(CHIYODA), "OP0501", "ThirdPassw0rd").await;
    // A fourth pushes the first out of the history.
    changed(change("ThirdPassw0rd", "FourthPassw0rd").await);
    changed(change("FourthPassw0rd", "FirstPassw0rd").await);
    app.login(Some(CHIYODA), "OP0501", "FirstPassw0rd").await;
    login_refused(&app, "OP0501", "FourthPassw0rd").await;
}

async fn a_bulk_password_change_is_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let three: Vec<Value> = ["OP0501", "OP0502", "OP0503"]
        .iter()
        .map(|id| operator_with_password(id, &format!("Passw0rd{id}"), &["clerk"], &[]))
        .collect();
    app.add_operators(&admin, CHIYODA, &json!(three)).await;
    let token = app.login(Some(CHIYODA), "OP0501", "Passw0rdOP0501").await;
    let path = format!("{}/passwords", operators_path(CHIYODA));
    let bulk = |ids: &[&str]| app.post(&path, Some(&admin), &json!({ "operator_ids": ids }));

    invalid(&app, bulk(&["OP0501", "OP9999", "OP0503"]), &["/operator_ids/1"]).await;
    invalid(&app, bulk(&["OP0501", "ＯＰ０５０２"]), &["/operator_ids/1"]).await;
    invalid(&app, bulk(&[]), &["/operator_ids"]).await;

    for id in ["OP0501", "OP0502", "OP0503"] {
        app.login(Some(CHIYODA), id, &format!("Passw0rd{id}")).await;
    }
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK, "his session is alive");

    // All of them: new passwords, shown once.
    let before = app.event_count().await;
    let reply = bulk(&["OP0501", "OP0503"]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let items = reply.json()["items"].clone();
    assert_eq!(ids(&reply.json()), ["OP0501", "OP0503"]);
    assert_eq!(app.event_count().await, before + 2);
    for (i, id) in ["OP0501", "OP0503"].into_iter().enumerate() {
        login_refused(&app, id, &format!("Passw0rd{id}")).await;
        app.login(Some(CHIYODA), id, &generated(&items[i]["password"])).await;
    }
    app.login(Some(CHIYODA), "OP0502", "Passw0rdOP0502").await;
    session_ended(&app, &token).await;
    // A revoked operator among them: nobody's password changes.
    let revoke = app.post_empty(&format!("{}/revoke", operator_path(CHIYODA, "OP0502")), Some(&admin)).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    invalid(&app, bulk(&["OP0501", "OP0502"]), &["/operator_ids/1"]).await;
    app.login(Some(CHIYODA), "OP0501", &generated(&items[0]["password"])).await;
}

/// The same operator twice in one bulk change is the clerk's slip: named like a duplicate in a batch
/// registration, not a server-side conflict.
async fn a_bulk_password_change_names_an_operator_listed_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", "Passw0rdOP0501", &["clerk"], &[])).await;
    let path = format!("{}/passwords", operators_path(CHIYODA));

    let reply = app.post(&path, Some(&admin), &json!({"operator_ids": ["OP0501", "OP0501"]}));

    invalid(&app, reply, &["/operator_ids/1"]).await;
    app.login(Some(CHIYODA), "OP0501", "Passw0rdOP0501").await;
}

async fn a_business_administrator_maps_internal_ids_of_his_own_systems_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.permit(&admin, "02", CHIYODA).await;
    let batch = json!([
        operator_with_password("BIZ01", "BizPassw0rd", &["business_admin"], &["01"]),
        operator("OP0501", &["clerk"], &["01", "02"]),
        operator("OP0502", &["clerk"], &["02"]),
    ]);
    app.add_operators(&admin, CHIYODA, &batch).await;
    let biz = app.login(Some(CHIYODA), "BIZ01", "BizPassw0rd").await;
    let path01 = internal_id_path("OP0501", "01");

    let reply = app.put(&path01, Some(&biz), &json!({"internal_id": "1000000010", "role": "窓口担当"})).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"2\"");
    let mapped = json!([{"business_id": "01", "internal_id": "1000000010", "role": "窓口担当"}]);
    assert_eq!(reply.json()["internal_ids"], mapped);
    assert_eq!(app.get(&operator_path(CHIYODA, "OP0501"), Some(&admin)).await.json()["internal_ids"], mapped);
    // Replaced.
    let reply = app.put(&path01, Some(&biz), &json!({"internal_id": "1000000020"})).await;
    assert_eq!((reply.status, reply.etag()), (StatusCode::OK, "\"3\""), "{}", reply.text);
    assert_eq!(reply.json()["internal_ids"], json!([{"business_id": "01", "internal_id": "1000000020", "role": null}]));
    // The same again writes nothing.
    let before = app.event_count().await;
    let same = app.put(&path01, Some(&biz), &json!({"internal_id": "1000000020"})).await;
    assert_eq!((same.status, same.etag()), (StatusCode::OK, "\"3\""), "{}", same.text);
    assert_eq!(app.event_count().await, before);
    invalid(&app, app.put(&path01, Some(&biz), &json!({"internal_id": "1000-0020"})), &["/internal_id"]).await;
    invalid(&app, app.put(&path01, Some(&biz), &json!({"internal_id": ""})), &["/internal_id"]).await;
    // 02 is not his: forbidden, whatever the body.
    let path02 = internal_id_path("OP0501", "02");
    let forbidden = "/problems/forbidden";
    refused(&app, app.put(&path02, Some(&biz), &json!({"internal_id": "L0001"})), StatusCode::FORBIDDEN, forbidden)
        .await;
    refused(&app, app.put(&path02, Some(&biz), &json!({"internal_id": "L-1"})), StatusCode::FORBIDDEN, forbidden).await;
    refused(&app, app.delete(&path02, Some(&biz)), StatusCode::FORBIDDEN, forbidden).await;
    // The system administrator may, for 02 too.
    let reply = app.put(&path02, Some(&admin), &json!({"internal_id": "L0001", "role": "司書"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["internal_ids"].as_array().unwrap().len(), 2);
    // Only for a system the operator is permitted.
    let reply = app.put(&internal_id_path("OP0502", "01"), Some(&biz), &json!({"internal_id": "1000000030"}));
    invalid(&app, reply, &["/business_systems"]).await;

    // Removed.
    let reply = app.delete(&path01, Some(&biz)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["internal_ids"], json!([{"business_id": "02", "internal_id": "L0001", "role": "司書"}]));
    refused(&app, app.delete(&path01, Some(&biz)), StatusCode::NOT_FOUND, "/problems/not-found").await;
    // A business system he loses takes its internal ID with it.
    let change = json!({"business_systems": ["01"]});
    let reply = app.patch(&operator_path(CHIYODA, "OP0501"), Some(&admin), None, &change).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["internal_ids"], json!([]));
    // A path that names no business system is not found.
    let reply = app.put(&internal_id_path("OP0501", "1"), Some(&admin), &json!({"internal_id": "1"}));
    refused(&app, reply, StatusCode::NOT_FOUND, "/problems/not-found").await;
}

async fn an_operator_changes_his_own_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", "ClerkPassw0rd", &["clerk"], &[])).await;
    let token = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    let change = |token: Option<&str>, current: &str, new: &str| {
        app.put("/api/v1/me/password", token, &json!({"current_password": current, "new_password": new}))
    };

    // A wrong current password is refused and counted as a failed login (a stolen session cannot search for it).
    let wrong = change(Some(&token), "WrongPassw0rd", "NewPassw0rd1").await;
    wrong.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(wrong.error_fields(), ["/current_password"], "{}", wrong.text);
    app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 1).await;
    invalid(&app, change(Some(&token), "ClerkPassw0rd", "short"), &["/new_password"]).await;
    invalid(&app, change(Some(&token), "ClerkPassw0rd", "ClerkPassw0rd"), &["/new_password"]).await;
    refused(&app, change(None, "ClerkPassw0rd", "NewPassw0rd1"), StatusCode::UNAUTHORIZED, "/problems/unauthenticated")
        .await;
    app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;

    let reply = change(Some(&token), "ClerkPassw0rd", "NewPassw0rd1").await;

    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    login_refused(&app, "OP0501", "ClerkPassw0rd").await;
    app.login(Some(CHIYODA), "OP0501", "NewPassw0rd1").await;
    let events = app.operator_events(Some(CHIYODA), "OP0501").await;
    let changed: Vec<&Value> =
        events.iter().filter(|e| e.event_type == "OperatorPasswordChanged").map(|e| e.payload.value()).collect();
    assert_eq!(changed.len(), 1, "only the change that went through is recorded");
    assert_eq!(changed[0]["by_administrator"], false);
    // The system administrator, who belongs to no municipality, too.
    let reply = app
        .put(
            "/api/v1/me/password",
            Some(&admin),
            &json!({"current_password": cardap_tests::ADMIN_PASSWORD, "new_password": "NewAdminPassw0rd"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    app.login(None, cardap_tests::ADMIN, "NewAdminPassw0rd").await;
}

async fn ending_his_sessions_logs_him_out_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", "ClerkPassw0rd", &["clerk"], &[])).await;
    let first = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    let second = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    let path = format!("{}/sessions", operator_path(CHIYODA, "OP0501"));

    let reply = app.delete(&path, Some(&admin)).await;

    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    session_ended(&app, &first).await;
    session_ended(&app, &second).await;
    // He may log in again at once: nothing else changed.
    let third = app.login(Some(CHIYODA), "OP0501", "ClerkPassw0rd").await;
    assert_eq!(app.get("/api/v1/me", Some(&third)).await.status, StatusCode::OK);
    refused(
        &app,
        app.delete(&format!("{}/sessions", operator_path(CHIYODA, "OP9999")), Some(&admin)),
        StatusCode::NOT_FOUND,
        "/problems/not-found",
    )
    .await;
}

/// A retry with the same `Idempotency-Key` (the clerk's tool did not see the first answer, or sent it twice)
/// changes nothing: the password the first answer showed stays his, and no other one is shown.
async fn a_retry_with_the_same_idempotency_key_changes_no_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    let register = || {
        let request = app.request(Method::POST, &operators_path(CHIYODA), Some(&admin));
        send(request.header("idempotency-key", "register-OP0501").json(&operator("OP0501", &["clerk"], &[])))
    };
    let first = register().await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let password = generated(&first.json()["password"]);
    let before = app.event_count().await;

    let retry = register().await;

    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert_eq!(app.event_count().await, before, "the retry wrote no events");
    let first_password_works = app.try_login(Some(CHIYODA), "OP0501", &password).await.status == StatusCode::CREATED;
    let shown = retry.json()["password"].clone();
    assert!(first_password_works, "the password of the first answer no longer works; the retry showed {shown}");
    assert!(shown.is_null() || shown == password.as_str(), "the retry shows another password: {shown}");

    // The same for a reset.
    let reset = || {
        let request = app.request(Method::POST, &password_path("OP0501"), Some(&admin));
        send(request.header("idempotency-key", "reset-OP0501"))
    };
    let first = reset().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let password = generated(&first.json()["password"]);
    let retry = reset().await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.text);
    let first_password_works = app.try_login(Some(CHIYODA), "OP0501", &password).await.status == StatusCode::CREATED;
    let shown = retry.json()["password"].clone();
    assert!(first_password_works, "the password of the first answer no longer works; the retry showed {shown}");
    assert!(shown.is_null() || shown == password.as_str(), "the retry shows another password: {shown}");
}

/// Two administrators change different fields of one operator at the same moment, without If-Match: both changes
/// survive (the PATCH is merged with his profile inside the decision, not with a read made before it).
async fn concurrent_changes_of_different_fields_both_survive(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda(&app).await;
    for round in 0..10 {
        let id = format!("OPC{round:03}");
        app.add_operators(&admin, CHIYODA, &operator(&id, &["clerk"], &[])).await;
        let path = operator_path(CHIYODA, &id);
        let department = app.patch(&path, Some(&admin), None, &json!({"department": "住民課"}));
        let phone = app.patch(&path, Some(&admin), None, &json!({"phone": "03-1111-2222"}));
        let (department, phone) = tokio::join!(department, phone);
        assert_eq!(department.status, StatusCode::OK, "{}", department.text);
        assert_eq!(phone.status, StatusCode::OK, "{}", phone.text);
        let now = app.get(&path, Some(&admin)).await.json();
        assert_eq!((&now["department"], &now["phone"]), (&json!("住民課"), &json!("03-1111-2222")), "round {round}");
    }
}

on_both_backends!(
    concurrent_changes_of_different_fields_both_survive,
    an_operator_is_registered_and_his_generated_password_is_shown_once,
    a_batch_is_registered_all_or_nothing,
    an_operator_id_is_registered_once_per_municipality,
    only_business_systems_the_municipality_may_use_can_be_granted,
    a_municipal_operator_cannot_be_a_system_administrator,
    every_business_system_the_municipality_may_not_use_is_named,
    every_field_is_checked_and_named,
    operators_are_found_by_substrings_and_paged,
    the_operator_id_filter_keeps_case_on_both_backends,
    a_change_merges_into_the_operator_under_if_match,
    a_change_refused_in_part_writes_nothing,
    a_revoked_operator_can_do_nothing_until_he_is_registered_again,
    withdrawing_shared_use_takes_the_system_off_his_top_page_at_once,
    an_administrator_resets_a_password,
    none_of_the_last_three_passwords_may_be_used_again,
    a_bulk_password_change_is_all_or_nothing,
    a_bulk_password_change_names_an_operator_listed_twice,
    a_business_administrator_maps_internal_ids_of_his_own_systems_only,
    an_operator_changes_his_own_password,
    ending_his_sessions_logs_him_out_everywhere,
    a_retry_with_the_same_idempotency_key_changes_no_password,
);
