//! The security suite (issue 9): each test shows an attack and that cardap stops it. Every test runs on
//! PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::{Backend, on_both_backends, resident_body, resident_path, residents_path, spawn_app};

const CHIYODA: &str = "131016";

/// A shared proxy or the browser's disk cache would keep a resident's data, a new password or an operator's
/// permissions: every answer of the API says `Cache-Control: no-store`, errors included.
async fn no_answer_of_the_api_may_be_cached(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let registered =
        app.post(&residents_path(CHIYODA), Some(&admin), &resident_body("ヤマダ", "タロウ", "3450101")).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text);
    let id = registered.json()["resident_id"].as_str().unwrap().to_owned();
    let resident = app.get(&resident_path(CHIYODA, &id), Some(&admin)).await;
    let me = app.get("/api/v1/me", Some(&admin)).await;
    let refused = app.get(&resident_path(CHIYODA, &id), None).await;
    let login =
        app.post("/api/v1/sessions", None, &json!({"operator_id": "admin", "password": "wrong-password-1"})).await;
    for (what, reply) in
        [("registration", &registered), ("resident", &resident), ("me", &me), ("401", &refused), ("login", &login)]
    {
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}: {}", reply.status);
    }
    // What is public and the same for everyone may be cached.
    assert_eq!(app.get("/healthz", None).await.header("cache-control"), None);
}

on_both_backends!(no_answer_of_the_api_may_be_cached);
