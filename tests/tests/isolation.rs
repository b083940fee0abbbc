//! Roles and shared use (共同利用): an operator of one municipality may read his own municipality, may not manage
//! municipalities at all, and never learns whether another municipality exists (404 exactly as for a code that
//! was never registered, never 403). Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::json;
use cardap_tests::{
    Backend, Reply, TestApp, municipality, on_both_backends, register_clerk, send, spawn_app, with_check_digit,
};

const PATH: &str = "/api/v1/municipalities";

/// 千代田区 (the clerk's own) and 札幌市 (another town), registered by the administrator; the clerk's token.
async fn two_towns_and_a_clerk_of_chiyoda(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, "131016", "千代田区", 2).await;
    app.register_municipality(&admin, "011002", "札幌市", 1).await;
    register_clerk(&app.state, "131016", "OP0501").await.login(app).await
}

/// Asserts a 404 that says nothing more than "not found", and that nothing was written.
async fn hidden(app: &TestApp, reply: impl Future<Output = Reply>) -> Reply {
    let before = app.event_count().await;
    let reply = reply.await;
    reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    assert_eq!(app.event_count().await, before);
    reply
}

async fn a_clerk_may_not_manage_municipalities(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = two_towns_and_a_clerk_of_chiyoda(&app).await;
    let before = app.event_count().await;

    let register_new = app.post(PATH, Some(&clerk), &municipality(&with_check_digit("27100"), "大阪市", 3)).await;
    let register_own = app.post(PATH, Some(&clerk), &municipality("131016", "千代田区", 2)).await;
    // Invalid fields too: he hears that he may not, not what is wrong with the fields.
    let register_invalid = app.post(PATH, Some(&clerk), &municipality("131017", "", 0)).await;
    let rename_own =
        app.patch(&format!("{PATH}/131016"), Some(&clerk), Some("\"1\""), &json!({"name": "新千代田区"})).await;
    let rename_invalid = app.patch(&format!("{PATH}/131016"), Some(&clerk), None, &json!({"name": ""})).await;
    let abolish_own =
        send(app.request(Method::POST, &format!("{PATH}/131016/abolish"), Some(&clerk)).header("if-match", "\"1\""))
            .await;

    for (what, reply) in [
        ("register a new one", register_new),
        ("register his own", register_own),
        ("register with invalid fields", register_invalid),
        ("rename his own", rename_own),
        ("rename his own with invalid fields", rename_invalid),
        ("abolish his own", abolish_own),
    ] {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}: {}", reply.text);
        reply.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    }
    assert_eq!(app.event_count().await, before, "nothing was written");
    let own = app.get(&format!("{PATH}/131016"), Some(&clerk)).await.json();
    assert_eq!((own["name"].as_str(), own["abolished"].as_bool()), (Some("千代田区"), Some(false)));
}

async fn a_clerk_lists_and_reads_only_his_own_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = two_towns_and_a_clerk_of_chiyoda(&app).await;

    let list = app.get(PATH, Some(&clerk)).await;
    let abolished_too = app.get(&format!("{PATH}?include_abolished=true&limit=1"), Some(&clerk)).await;
    let own = app.get(&format!("{PATH}/131016"), Some(&clerk)).await;

    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    let items = list.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    assert_eq!(items[0]["code"], "131016");
    assert_eq!(list.json()["next_cursor"], json!(null));
    assert_eq!(abolished_too.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(abolished_too.json()["next_cursor"], json!(null), "no hint that more exist");
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert_eq!(own.etag(), "\"1\"");
    assert_eq!(own.json()["name"], "千代田区");
}

async fn another_municipality_is_indistinguishable_from_one_that_does_not_exist(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = two_towns_and_a_clerk_of_chiyoda(&app).await;
    let nowhere = with_check_digit("27100");

    let get_other = hidden(&app, app.get(&format!("{PATH}/011002"), Some(&clerk))).await;
    let get_nowhere = hidden(&app, app.get(&format!("{PATH}/{nowhere}"), Some(&clerk))).await;
    let rename = json!({"name": "新札幌市"});
    let patch_other = hidden(&app, app.patch(&format!("{PATH}/011002"), Some(&clerk), Some("\"1\""), &rename)).await;
    let patch_nowhere =
        hidden(&app, app.patch(&format!("{PATH}/{nowhere}"), Some(&clerk), Some("\"1\""), &rename)).await;
    let abolish = |code: &str| send(app.request(Method::POST, &format!("{PATH}/{code}/abolish"), Some(&clerk)));
    let abolish_other = hidden(&app, abolish("011002")).await;
    let abolish_nowhere = hidden(&app, abolish(&nowhere)).await;

    assert_eq!(get_other.text, get_nowhere.text);
    assert_eq!(patch_other.text, patch_nowhere.text);
    assert_eq!(abolish_other.text, abolish_nowhere.text);
    for (other, nowhere) in [(&get_other, &get_nowhere), (&patch_other, &patch_nowhere)] {
        assert_eq!(other.header("etag"), None);
        assert_eq!(other.header("content-type"), nowhere.header("content-type"));
        assert_eq!(other.header("content-length"), nowhere.header("content-length"));
    }
    // Even a stale If-Match, which would be 412 for the administrator, is "not found".
    hidden(&app, app.patch(&format!("{PATH}/011002"), Some(&clerk), Some("\"9\""), &rename)).await;
    // And 札幌市 is untouched.
    let admin = app.admin_token().await;
    assert_eq!(app.get(&format!("{PATH}/011002"), Some(&admin)).await.json()["name"], "札幌市");
}

/// Routes that take a body under another municipality's path answer 404 before the body is read: an invalid body
/// (which would be 422 at home) and a body that is not JSON at all (415) learn nothing either.
async fn a_body_under_another_municipality_is_not_judged(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = two_towns_and_a_clerk_of_chiyoda(&app).await;
    let sapporo = "/api/v1/municipalities/011002";
    let invalid = json!({ "unexpected": [1, 2, 3] });
    let requests = [
        (Method::POST, format!("{sapporo}/operators/passwords")),
        (Method::PUT, format!("{sapporo}/resident-settings")),
        (Method::PUT, format!("{sapporo}/operators/OP0001/internal-ids/01")),
        (Method::POST, format!("{sapporo}/registry/lookup")),
    ];
    for (method, path) in &requests {
        let json_body = send(app.request(method.clone(), path, Some(&clerk)).json(&invalid));
        let reply = hidden(&app, json_body).await;
        assert!(reply.error_fields().is_empty(), "{method} {path} judged the body: {}", reply.text);
        let not_json =
            send(app.request(method.clone(), path, Some(&clerk)).header("content-type", "text/plain").body("x"));
        hidden(&app, not_json).await;
    }
}

on_both_backends!(
    a_body_under_another_municipality_is_not_judged,
    a_clerk_may_not_manage_municipalities,
    a_clerk_lists_and_reads_only_his_own_municipality,
    another_municipality_is_indistinguishable_from_one_that_does_not_exist,
);
