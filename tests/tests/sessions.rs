//! Logging in and out, and who the server thinks the caller is: `POST /api/v1/sessions`,
//! `DELETE /api/v1/sessions/current`, `GET /api/v1/me`. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_commands::Clock;
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::json;
use cardap_tests::{
    ADMIN, ADMIN_PASSWORD, Backend, on_both_backends, register_clerk, send, spawn_app, spawn_app_with_clock,
};

async fn the_system_administrator_logs_in(backend: Backend) {
    let app = spawn_app(backend).await;

    let reply = app.try_login(None, ADMIN, ADMIN_PASSWORD).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let body = reply.json();
    let token = body["token"].as_str().expect("a token");
    assert!(token.len() >= 32, "a token long enough not to be guessed: {token:?}");
    let expires_at = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().expect("expires_at"))
        .expect("expires_at is RFC 3339");
    // Settings::for_tests: sessions end 8 hours after login at the latest.
    let minutes = (expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((8 * 60 - 2..=8 * 60).contains(&minutes), "expires in {minutes} minutes");
    // The token works.
    assert_eq!(app.get("/api/v1/me", Some(token)).await.status, StatusCode::OK);
    // Each login is its own session.
    let second = app.login(None, ADMIN, ADMIN_PASSWORD).await;
    assert_ne!(second, token);
}

async fn a_wrong_password_and_an_unknown_operator_are_refused_alike(backend: Backend) {
    let app = spawn_app(backend).await;
    register_clerk(&app.state, "131016", "OP0501").await;

    let wrong_password = app.try_login(None, ADMIN, "WrongPassw0rd").await;
    let unknown_operator = app.try_login(None, "nobody", ADMIN_PASSWORD).await;
    let invalid_operator_id = app.try_login(None, "ad min", ADMIN_PASSWORD).await;
    // The administrator belongs to no municipality; the clerk must name his.
    let admin_with_municipality = app.try_login(Some("131016"), ADMIN, ADMIN_PASSWORD).await;
    let clerk_without_municipality = app.try_login(None, "OP0501", "ClerkPassw0rd").await;
    let clerk_of_another_town = app.try_login(Some("011002"), "OP0501", "ClerkPassw0rd").await;
    let clerk_with_a_bad_code = app.try_login(Some("131017"), "OP0501", "ClerkPassw0rd").await;

    let expected = wrong_password.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    for (what, reply) in [
        ("unknown operator", &unknown_operator),
        ("invalid operator id", &invalid_operator_id),
        ("admin with a municipality", &admin_with_municipality),
        ("clerk without municipality", &clerk_without_municipality),
        ("clerk of another town", &clerk_of_another_town),
        ("clerk with a bad code", &clerk_with_a_bad_code),
    ] {
        let body = reply.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
        assert_eq!(body, expected, "{what}: nothing tells which part was wrong");
        assert_eq!(reply.text, wrong_password.text, "{what}: byte-identical body");
    }
    // The clerk himself gets in with all three right.
    let token = app.login(Some("131016"), "OP0501", "ClerkPassw0rd").await;
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);
}

async fn a_login_body_that_is_not_valid_json_is_a_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;

    let reply = send(
        app.request(Method::POST, "/api/v1/sessions", None)
            .header("content-type", "application/json")
            .body(r#"{"operator_id": "admin", "password": "#),
    )
    .await;

    reply.problem(StatusCode::BAD_REQUEST, "/problems/malformed-request");
}

async fn a_login_without_password_names_the_missing_field(backend: Backend) {
    let app = spawn_app(backend).await;

    let reply = app.post("/api/v1/sessions", None, &json!({ "operator_id": "admin" })).await;

    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(reply.error_fields(), ["/password"]);
    assert_eq!(reply.error_message("/password"), "必須項目です");
}

async fn a_login_with_an_unknown_field_names_it(backend: Backend) {
    let app = spawn_app(backend).await;

    let body = json!({ "operator_id": "admin", "password": ADMIN_PASSWORD, "remember_me": true });
    let reply = app.post("/api/v1/sessions", None, &body).await;

    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(reply.error_fields(), ["/remember_me"]);
}

async fn a_login_that_is_not_json_is_an_unsupported_media_type(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({ "operator_id": "admin", "password": ADMIN_PASSWORD }).to_string();

    let form = send(
        app.request(Method::POST, "/api/v1/sessions", None)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("operator_id=admin&password=AdminPassw0rd"),
    )
    .await;
    let json_as_text = send(
        app.request(Method::POST, "/api/v1/sessions", None).header("content-type", "text/plain").body(body.clone()),
    )
    .await;
    let no_content_type = send(app.request(Method::POST, "/api/v1/sessions", None).body(body)).await;

    for reply in [form, json_as_text, no_content_type] {
        reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type");
    }
}

async fn a_request_without_a_valid_session_is_unauthenticated(backend: Backend) {
    let app = spawn_app(backend).await;

    let none = app.get("/api/v1/me", None).await;
    let garbage = app.get("/api/v1/me", Some("not-a-token")).await;
    let empty = send(app.request(Method::GET, "/api/v1/me", None).header("authorization", "Bearer ")).await;
    let basic = send(app.request(Method::GET, "/api/v1/me", None).basic_auth(ADMIN, Some(ADMIN_PASSWORD))).await;
    let list = app.get("/api/v1/municipalities", Some("not-a-token")).await;
    let register = app.post("/api/v1/municipalities", None, &cardap_tests::municipality("131016", "千代田区", 1)).await;

    for (what, reply) in [("none", none), ("garbage", garbage), ("empty", empty), ("basic", basic), ("list", list)]
        .into_iter()
        .chain([("register", register)])
    {
        reply.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}");
    }
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive; some HTTP clients send `bearer`.
async fn the_bearer_scheme_is_case_insensitive(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;

    for scheme in ["bearer", "BEARER"] {
        let reply =
            send(app.request(Method::GET, "/api/v1/me", None).header("authorization", format!("{scheme} {token}")))
                .await;
        assert_eq!(reply.status, StatusCode::OK, "scheme {scheme:?}: {}", reply.text);
    }
}

async fn me_shows_the_system_administrator(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;

    let reply = app.get("/api/v1/me", Some(&token)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let me = reply.json();
    assert_eq!(me["operator_id"], "admin");
    assert_eq!(me["municipality"], json!(null));
    assert_eq!(me["roles"], json!(["system_admin"]));
    assert!(me["business_systems"].is_array(), "{me}");
}

async fn me_shows_a_clerk_and_his_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = register_clerk(&app.state, "131016", "OP0501").await;
    let token = clerk.login(&app).await;

    let me = app.get("/api/v1/me", Some(&token)).await.json();

    assert_eq!(me["operator_id"], "OP0501");
    assert_eq!(me["municipality"], "131016");
    assert_eq!(me["roles"], json!(["clerk"]));
}

async fn after_logout_the_token_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = app.admin_token().await;
    let other_session = app.admin_token().await;

    let logout = app.delete("/api/v1/sessions/current", Some(&token)).await;

    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text);
    let me = app.get("/api/v1/me", Some(&token)).await;
    me.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    assert_eq!(me.header("www-authenticate"), Some("Bearer"));
    let list = app.get("/api/v1/municipalities", Some(&token)).await;
    list.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    // Logging out twice is refused like any dead token.
    app.delete("/api/v1/sessions/current", Some(&token))
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    // Only that session ended.
    assert_eq!(app.get("/api/v1/me", Some(&other_session)).await.status, StatusCode::OK);
}

async fn sessions_end_after_the_idle_and_the_absolute_timeout(backend: Backend) {
    // Ten minutes without use end a session; one hour ends it in any case. The clock moves, nobody sleeps.
    let app = spawn_app_with_clock(backend, |s| {
        s.sessions.idle = Duration::from_secs(600);
        s.sessions.absolute = Duration::from_secs(3600);
    })
    .await;
    let login = app.try_login(None, ADMIN, ADMIN_PASSWORD).await;
    let kept_busy = login.json()["token"].as_str().unwrap().to_owned();
    let expires_at = chrono::DateTime::parse_from_rfc3339(login.json()["expires_at"].as_str().unwrap()).unwrap();
    let now = app.clock.as_ref().unwrap().now();
    assert_eq!(expires_at.with_timezone(&chrono::Utc) - now, chrono::Duration::seconds(3600));
    let left_alone = app.admin_token().await;

    // Used every nine minutes, a session lives until its hour is up.
    for step in 1..=6 {
        app.advance(Duration::from_secs(540));
        let me = app.get("/api/v1/me", Some(&kept_busy)).await;
        assert_eq!(me.status, StatusCode::OK, "after {} minutes: {}", step * 9, me.text);
        if step == 2 {
            // Unused for eighteen minutes, the other one is over.
            let reply = app.get("/api/v1/me", Some(&left_alone)).await;
            reply.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
    app.advance(Duration::from_secs(540));
    app.get("/api/v1/me", Some(&kept_busy)).await.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    // A new login works at once.
    app.admin_token().await;
}

on_both_backends!(
    the_system_administrator_logs_in,
    a_wrong_password_and_an_unknown_operator_are_refused_alike,
    a_login_body_that_is_not_valid_json_is_a_malformed_request,
    a_login_without_password_names_the_missing_field,
    a_login_with_an_unknown_field_names_it,
    a_login_that_is_not_json_is_an_unsupported_media_type,
    a_request_without_a_valid_session_is_unauthenticated,
    the_bearer_scheme_is_case_insensitive,
    me_shows_the_system_administrator,
    me_shows_a_clerk_and_his_municipality,
    after_logout_the_token_is_refused,
    sessions_end_after_the_idle_and_the_absolute_timeout,
);
