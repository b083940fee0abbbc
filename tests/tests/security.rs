//! The security suite (issue 9): each test shows an attack and that cardap stops it. Every test runs on
//! PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_api::settings::ConnectionLimits;
use cardap_store::CredentialStore;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::{
    Backend, on_both_backends, operator_path, operator_with_password, operators_path, register_clerk, resident_body,
    resident_path, residents_path, spawn_app, spawn_app_with, spawn_app_with_clock,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// A flood of wrong logins (anyone can send them) costs at most one Argon2id worker per core: the logins beyond
/// a short queue are turned away at once with `503` and `Retry-After`, and a clerk who is already logged in
/// keeps working meanwhile. A password of a megabyte is refused before it is read.
async fn a_flood_of_logins_is_turned_away_not_queued(backend: Backend) {
    // Without throttling, which would otherwise answer most of the flood 429 (shown below).
    let app = spawn_app_with(backend, |s| {
        s.throttle.free_per_login = u32::MAX;
        s.throttle.free_per_address = u32::MAX;
    })
    .await;
    let admin = app.admin_token().await;
    let flood: Vec<_> = (0..120)
        .map(|i| {
            app.post(
                "/api/v1/sessions",
                None,
                &json!({"municipality": CHIYODA, "operator_id": format!("OP{i:04}"), "password": "Wrong0password"}),
            )
        })
        .map(tokio::spawn)
        .collect();
    let during = app.get("/api/v1/me", Some(&admin)).await;
    let mut busy = 0;
    for reply in flood {
        let reply = reply.await.unwrap();
        match reply.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                reply.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/busy");
                assert_eq!(reply.header("retry-after"), Some("1"));
                busy += 1;
            }
            other => panic!("a wrong login answered {other}: {}", reply.text),
        }
    }
    assert!(busy > 0, "120 logins at once were all queued for Argon2id");
    assert_eq!(during.status, StatusCode::OK, "the clerk's session check during the flood: {}", during.text);

    let huge = json!({"operator_id": "admin", "password": "a".repeat(1 << 20)});
    let reply = app.post("/api/v1/sessions", None, &huge).await;
    reply.problem(StatusCode::PAYLOAD_TOO_LARGE, "/problems/payload-too-large");
}

/// Revoking an operator forgets his password, its history and his sessions: an operator registered later under
/// the same ID (the same key) cannot log in with the old password, may choose it again, and the old session is gone.
async fn a_revoked_operator_leaves_no_credentials_behind(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let clerk = register_clerk(&app.state, CHIYODA, "OP0501").await;
    let token = clerk.login(&app).await;
    let credentials = CredentialStore::new(app.state.read.pool().clone());
    assert!(credentials.password_hash(clerk.key).await.unwrap().is_some());

    let revoked = app.post(&format!("{}/revoke", operator_path(CHIYODA, "OP0501")), Some(&admin), &json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(credentials.password_hash(clerk.key).await.unwrap(), None, "the hash outlived the revocation");
    assert!(credentials.recent_hashes(clerk.key, 10).await.unwrap().is_empty(), "the password history stayed");
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::UNAUTHORIZED);

    // Registered again with the very password he had: it is no reuse, it is a new operator.
    let again = operator_with_password("OP0501", &clerk.password, &["clerk"], &[]);
    let reply = app.post(&operators_path(CHIYODA), Some(&admin), &again).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(credentials.recent_hashes(clerk.key, 10).await.unwrap().len(), 1);
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::UNAUTHORIZED, "the old session");
}

/// Sessions that can never be used again (ended, past their expiry) do not pile up: the server deletes them.
async fn ended_and_expired_sessions_are_deleted(backend: Backend) {
    let app = spawn_app_with_clock(backend, |_| {}).await;
    let admin = app.admin_token().await;
    let other = app.admin_token().await;
    assert_eq!(app.state.access.purge_sessions().await.unwrap(), 0, "both sessions are live");
    let ended = app.delete("/api/v1/sessions/current", Some(&other)).await;
    assert_eq!(ended.status, StatusCode::NO_CONTENT, "{}", ended.text);
    assert_eq!(app.state.access.purge_sessions().await.unwrap(), 1, "the ended session goes");
    app.advance(Duration::from_secs(9 * 3600));
    assert_eq!(app.state.access.purge_sessions().await.unwrap(), 1, "the expired session goes");
    assert_eq!(app.get("/api/v1/me", Some(&admin)).await.status, StatusCode::UNAUTHORIZED);
}

/// Abolishing a municipality ends what its operators can do: their sessions stop working at once and their
/// logins are refused (like a revoked operator's: nothing recorded against them).
async fn operators_of_an_abolished_municipality_are_shut_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let clerk = register_clerk(&app.state, CHIYODA, "OP0501").await;
    let token = clerk.login(&app).await;
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);

    let abolished = app.post(&format!("/api/v1/municipalities/{CHIYODA}/abolish"), Some(&admin), &json!({})).await;
    assert_eq!(abolished.status, StatusCode::OK, "{}", abolished.text);
    app.get("/api/v1/me", Some(&token)).await.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    let login = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({"municipality": CHIYODA, "operator_id": "OP0501", "password": clerk.password}),
        )
        .await;
    login.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    assert!(app.login_events(Some(CHIYODA), "OP0501").await.iter().all(|e| e.event_type != "OperatorLoginFailed"));
}

/// Someone holding a stolen session cannot search for the password through the password change (a wrong
/// current password counts towards the lock like a failed login), and changing the password throws out whoever
/// else holds a session of the operator, while the session he changed it from goes on.
async fn a_password_change_guards_the_password_and_ends_other_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let clerk = register_clerk(&app.state, CHIYODA, "OP0501").await;
    let (mine, stolen) = (clerk.login(&app).await, clerk.login(&app).await);

    let guess = json!({"current_password": "Guess0password", "new_password": "Mine0password"});
    let reply = app.put("/api/v1/me/password", Some(&stolen), &guess).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    let failed = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 1).await;
    assert_eq!(failed.len(), 1, "the wrong current password was not counted");

    let change = json!({"current_password": clerk.password, "new_password": "Mine0password"});
    let reply = app.put("/api/v1/me/password", Some(&mine), &change).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    assert_eq!(app.get("/api/v1/me", Some(&mine)).await.status, StatusCode::OK, "his own session goes on");
    assert_eq!(app.get("/api/v1/me", Some(&stolen)).await.status, StatusCode::UNAUTHORIZED, "the other one ends");
}

/// What the server sends on `stream` until it closes it, or `None` if it keeps it open for `patience`.
async fn until_closed(stream: &mut TcpStream, patience: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(patience, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&received).into_owned()),
        Err(_) => None,
    }
}

/// A slow client cannot hold a connection: one that does not finish its headers is cut off after the header time
/// limit, and one whose body stops is answered 400 after the body time limit.
async fn slow_clients_are_cut_off(backend: Backend) {
    let limits =
        ConnectionLimits { max_clients: 100, header_read: Duration::from_secs(1), body_read: Duration::from_secs(1) };
    let app = spawn_app_with(backend, |s| s.connections = limits).await;

    let mut headers = TcpStream::connect(app.socket_addr).await.unwrap();
    headers.write_all(b"GET /healthz HTTP/1.1\r\nHost: cardap\r\n").await.unwrap();
    assert!(until_closed(&mut headers, Duration::from_secs(10)).await.is_some(), "half a header kept it open");

    let mut body = TcpStream::connect(app.socket_addr).await.unwrap();
    let head = "POST /api/v1/sessions HTTP/1.1\r\nHost: cardap\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\nConnection: close\r\n\r\n{\"operator_id\"";
    body.write_all(head.as_bytes()).await.unwrap();
    let answer = until_closed(&mut body, Duration::from_secs(10)).await.expect("a stalled body kept it open");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("/problems/malformed-request"), "{answer}");
}

/// Connections beyond the limit are closed as soon as they are accepted, and the server takes new ones again
/// when a place is free.
async fn connections_beyond_the_limit_are_closed_at_once(backend: Backend) {
    let limits = ConnectionLimits { max_clients: 2, ..ConnectionLimits::default() };
    let app = spawn_app_with(backend, |s| s.connections = limits).await;
    let held = [TcpStream::connect(app.socket_addr).await.unwrap(), TcpStream::connect(app.socket_addr).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut third = TcpStream::connect(app.socket_addr).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: cardap\r\nConnection: close\r\n\r\n").await;
    let answer = until_closed(&mut third, Duration::from_secs(5)).await.expect("the third connection was kept");
    assert_eq!(answer, "", "the third connection was served");

    drop(held);
    let answer = cardap_tests::eventually(Duration::from_secs(10), "a free place", || async {
        let mut again = TcpStream::connect(app.socket_addr).await.ok()?;
        again.write_all(b"GET /healthz HTTP/1.1\r\nHost: cardap\r\nConnection: close\r\n\r\n").await.ok()?;
        until_closed(&mut again, Duration::from_secs(5)).await.filter(|a| !a.is_empty())
    })
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Guessing a password costs the guesser time: after three free failures for one login name, each failure
/// doubles the wait before the next attempt, and an attempt that comes too early is answered 429 with
/// `Retry-After` — checked before any password work and recorded nowhere.
async fn guessing_one_operator_is_throttled(backend: Backend) {
    let app = spawn_app_with_clock(backend, |_| {}).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let clerk = register_clerk(&app.state, CHIYODA, "OP0501").await;
    let guess = |password: &str| {
        app.post(
            "/api/v1/sessions",
            None,
            &json!({"municipality": CHIYODA, "operator_id": "OP0501", "password": password}),
        )
    };
    for _ in 0..4 {
        guess("Guess0password").await.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    }
    let early = guess("Guess0password").await;
    early.problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-attempts");
    assert_eq!(early.header("retry-after"), Some("1"));
    // Even the right password waits its turn (the throttle cannot tell), and nothing was recorded meanwhile.
    guess(&clerk.password).await.problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-attempts");
    let failed = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 4).await;
    assert_eq!(failed.len(), 4);

    app.advance(Duration::from_secs(1));
    guess("Guess0password").await.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    let doubled = guess("Guess0password").await;
    assert_eq!(doubled.header("retry-after"), Some("2"), "{}", doubled.text);
}

/// One client address that tries many operator IDs is held back as a whole, whichever name it tries next.
async fn one_address_guessing_many_operators_is_throttled(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    for i in 0..11 {
        let reply = app
            .post(
                "/api/v1/sessions",
                None,
                &json!({"municipality": CHIYODA, "operator_id": format!("OP{i:04}"), "password": "Guess0password"}),
            )
            .await;
        reply.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    }
    let fresh = json!({"municipality": CHIYODA, "operator_id": "OP9999", "password": "Guess0password"});
    app.post("/api/v1/sessions", None, &fresh)
        .await
        .problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-attempts");
}

on_both_backends!(
    guessing_one_operator_is_throttled,
    one_address_guessing_many_operators_is_throttled,
    slow_clients_are_cut_off,
    connections_beyond_the_limit_are_closed_at_once,
    no_answer_of_the_api_may_be_cached,
    a_password_change_guards_the_password_and_ends_other_sessions,
    operators_of_an_abolished_municipality_are_shut_out,
    a_flood_of_logins_is_turned_away_not_queued,
    a_revoked_operator_leaves_no_credentials_behind,
    ended_and_expired_sessions_are_deleted,
);
