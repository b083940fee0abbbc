//! The security suite (issue 9): each test shows an attack and that cardap stops it. Every test runs on
//! PostgreSQL and on SQLite. The attacks through imports (point 7) are in `imports`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_api::settings::ConnectionLimits;
use cardap_store::CredentialStore;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Refusal, Reply, TestApp, cards_path, on_both_backends, operator, operator_path, operator_with_password,
    operators_path, register_clerk, resident_body, resident_path, residents_path, spawn_app, spawn_app_with,
    spawn_app_with_clock,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "security/imports.rs"]
mod imports;

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

/// Point 4: an attacker who sits out every lock and throttle wait can guess for ever, and each guess is one more
/// event on the operator's login record. Every failure stays on record for the auditors, but a login folds only
/// what came after the record's last snapshot, so the guessing does not make his logins ever slower.
async fn endless_guessing_stays_on_record_without_slowing_logins(backend: Backend) {
    let app = spawn_app_with_clock(backend, |_| {}).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let clerk = register_clerk(&app.state, CHIYODA, "OP0501").await;
    let guesses = 60;
    for _ in 0..guesses {
        let guess = json!({"municipality": CHIYODA, "operator_id": "OP0501", "password": "Guess0password"});
        app.post("/api/v1/sessions", None, &guess)
            .await
            .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
        // Past the longest throttle wait and any lock (15 minutes each).
        app.advance(Duration::from_secs(16 * 60));
    }
    let failed = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", guesses).await;
    assert_eq!(failed.len(), guesses, "every failed login is on record");

    let stream = cardap_commands::access::login_stream(
        Some(&cardap_domain::MunicipalityCode::parse(CHIYODA).unwrap()),
        &cardap_domain::operator::OperatorId::parse("OP0501").unwrap(),
    );
    let record = app.state.store.read_stream(&stream, 1).await.unwrap();
    let snapshot = app.state.store.snapshot(&stream).await.unwrap().expect("a long login record has a snapshot");
    let after = record.len() as u64 - snapshot.version;
    assert!(after < 16, "a login would fold {after} of the record's {} events", record.len());
    app.login(Some(CHIYODA), "OP0501", &clerk.password).await;
}

/// Point 13: the first system administrator's generated password is never in the log; it reaches a person
/// through a file only its owner can read (no terminal here), written before its hash is stored, and he must
/// change it before he can do anything else.
async fn a_generated_first_password_must_be_changed_first(backend: Backend) {
    let data = tempfile::tempdir().unwrap();
    let key_file = data.path().join("master.key");
    let app = spawn_app_with(backend, |s| {
        s.bootstrap_password = None;
        s.master_key_file = key_file;
    })
    .await;
    let file = data.path().join(cardap_api::bootstrap::PASSWORD_FILE);
    let password = std::fs::read_to_string(&file).expect("the generated password's file").trim().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let login = app.try_login(None, "admin", &password).await;
    assert_eq!(login.status, StatusCode::CREATED, "{}", login.text);
    assert_eq!(login.json()["password_change_required"], true);
    let token = login.json()["token"].as_str().unwrap().to_owned();
    // Whoever saw the file cannot use the account for anything but setting a password of his own.
    let required = "/problems/password-change-required";
    app.get("/api/v1/municipalities", Some(&token)).await.problem(StatusCode::FORBIDDEN, required);
    let municipality = cardap_tests::municipality(CHIYODA, "千代田区", 1);
    app.post("/api/v1/municipalities", Some(&token), &municipality).await.problem(StatusCode::FORBIDDEN, required);
    let me = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.json()["password_change_required"], true, "{}", me.text);

    let change = json!({"current_password": password, "new_password": "MyOwnPassw0rd1"});
    let changed = cardap_tests::send(
        app.request(cardap_tests::reqwest::Method::PUT, "/api/v1/me/password", Some(&token)).json(&change),
    )
    .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text);
    assert_eq!(app.get("/api/v1/municipalities", Some(&token)).await.status, StatusCode::OK);
    let again = app.try_login(None, "admin", "MyOwnPassw0rd1").await;
    assert_eq!(again.json()["password_change_required"], false, "{}", again.text);
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

// ---- Privilege boundaries (points 8, 9, 12) --------------------------------------------------------------------

const SAPPORO: &str = "011002";
const MANAGER_PASSWORD: &str = "ManagerPassw0rd";

/// 千代田区, permitted business systems 01 and 02; an operations manager `MGR01` holding his role and 01 only, and
/// a clerk `CL0001` permitted 01 and 02 (both registered by the system administrator). Returns (admin, manager).
async fn a_manager_and_a_clerk(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    for business_id in ["01", "02"] {
        app.permit(&admin, business_id, CHIYODA).await;
    }
    let manager = operator_with_password("MGR01", MANAGER_PASSWORD, &["operations_manager"], &["01"]);
    let clerk = operator_with_password("CL0001", "ClerkPassw0rd", &["clerk"], &["01", "02"]);
    app.add_operators(&admin, CHIYODA, &json!([manager, clerk])).await;
    let token = app.login(Some(CHIYODA), "MGR01", MANAGER_PASSWORD).await;
    (admin, token)
}

/// Sends the request behind `reply` (an import: follows its job): a 403 `/problems/forbidden` whose detail says
/// `why`, and nothing written.
async fn forbidden<A: Refusal + std::fmt::Debug>(app: &TestApp, reply: impl Future<Output = A>, why: &str) -> Value {
    let before = app.event_count().await;
    let reply = reply.await;
    let body = reply.refusal(StatusCode::FORBIDDEN, "/problems/forbidden");
    assert!(body["detail"].as_str().is_some_and(|d| d.contains(why)), "the detail names {why:?}: {body}");
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {reply:?}");
    body
}

/// An operations manager reaches every resident if he may PATCH himself a clerk (or an auditor, or a business
/// system): nobody changes his own roles or business systems, by any path; his own profile he may change.
async fn an_operations_manager_cannot_raise_his_own_privileges(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = a_manager_and_a_clerk(&app).await;
    let me = operator_path(CHIYODA, "MGR01");

    for body in [
        json!({"roles": ["operations_manager", "clerk"]}),
        json!({"roles": ["operations_manager", "auditor"]}),
        json!({"business_systems": ["01", "02"]}),
        json!({"business_systems": []}),
        json!({"department": "情報政策課", "roles": ["clerk"]}),
    ] {
        forbidden(&app, app.patch(&me, Some(&manager), None, &body), "自分自身").await;
    }
    // Nor by registering himself again, alone or in a batch.
    let again = json!([operator_with_password("MGR01", MANAGER_PASSWORD, &["operations_manager"], &["01"])]);
    forbidden(&app, app.post(&operators_path(CHIYODA), Some(&manager), &again), "自分自身").await;

    let shown = app.get(&me, Some(&admin)).await.json();
    assert_eq!((&shown["roles"], &shown["business_systems"]), (&json!(["operations_manager"]), &json!(["01"])));
    assert_eq!(shown["department"], Value::Null, "all parts of a PATCH or none: {shown}");
    app.get(&residents_path(CHIYODA), Some(&manager)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    // His profile is his to change; naming his roles as they are changes none of them.
    let body = json!({"department": "情報政策課", "roles": ["operations_manager"], "business_systems": ["01"]});
    let reply = app.patch(&me, Some(&manager), None, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["department"], "情報政策課");
}

/// An operations manager gives only what he holds himself: a role or a business system he lacks is refused,
/// registering or changing another operator, one at a time, in a batch or by CSV; taking one away, or giving
/// what he holds (the operations-manager role included), goes through. The system administrator gives anything.
async fn an_operations_manager_gives_only_what_he_holds(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = a_manager_and_a_clerk(&app).await;
    let register = |body: Value| app.post(&operators_path(CHIYODA), Some(&manager), &body);

    forbidden(&app, register(operator("OP0601", &["clerk"], &[])), "clerk").await;
    forbidden(&app, register(operator("OP0602", &["operations_manager"], &["02"])), "許可業務 02").await;
    let batch = json!([operator("OP0603", &["operations_manager"], &["01"]), operator("OP0604", &["auditor"], &[])]);
    forbidden(&app, register(batch), "auditor").await;
    let file = "オペレータID,氏名・組織名,許可業務,役割\r\nOP0605,窓口 太郎,01,clerk\r\n";
    let import = app.import_operators(CHIYODA, &manager, "text/csv", file.as_bytes().to_vec(), &[]);
    forbidden(&app, import, "clerk").await;
    for id in ["OP0601", "OP0602", "OP0603", "OP0604", "OP0605"] {
        let reply = app.get(&operator_path(CHIYODA, id), Some(&admin)).await;
        reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }

    let clerk = operator_path(CHIYODA, "CL0001");
    forbidden(&app, app.patch(&clerk, Some(&manager), None, &json!({"roles": ["clerk", "auditor"]})), "auditor").await;
    // Taking 02 away is no grant; giving it back is, and he does not hold it.
    let reply = app.patch(&clerk, Some(&manager), None, &json!({"business_systems": ["01"]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let give = app.patch(&clerk, Some(&manager), None, &json!({"business_systems": ["01", "02"]}));
    forbidden(&app, give, "許可業務 02").await;

    // What he holds he gives: his role and 01. The operations manager he makes gives no more than he does.
    let new = operator_with_password("OP0606", MANAGER_PASSWORD, &["operations_manager"], &["01"]);
    assert_eq!(register(new).await.status, StatusCode::CREATED);
    let reply = app.patch(&clerk, Some(&manager), None, &json!({"roles": ["clerk", "operations_manager"]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let second = app.login(Some(CHIYODA), "OP0606", MANAGER_PASSWORD).await;
    let reply = app.post(&operators_path(CHIYODA), Some(&second), &operator("OP0607", &["clerk"], &[]));
    forbidden(&app, reply, "clerk").await;
    // The system administrator gives anything.
    let reply = app.patch(&clerk, Some(&admin), None, &json!({"business_systems": ["01", "02"]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

/// 千代田区 permitted 01; a business administrator `BIZ01` of 01 and two clerks permitted 01. Returns (admin, the
/// business administrator's token).
async fn a_business_administrator_and_two_clerks(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    let operators = json!([
        operator_with_password("BIZ01", MANAGER_PASSWORD, &["business_admin"], &["01"]),
        operator("OP0501", &["clerk"], &["01"]),
        operator("OP0502", &["clerk"], &["01"]),
    ]);
    app.add_operators(&admin, CHIYODA, &operators).await;
    let token = app.login(Some(CHIYODA), "BIZ01", MANAGER_PASSWORD).await;
    (admin, token)
}

fn internal_id_path(operator_id: &str) -> String {
    format!("{}/internal-ids/01", operator_path(CHIYODA, operator_id))
}

/// The 業務内IDs in 01 of an operator, as shown.
async fn internal_ids_of(app: &TestApp, admin: &str, operator_id: &str) -> Vec<String> {
    let shown = app.get(&operator_path(CHIYODA, operator_id), Some(admin)).await.json();
    shown["internal_ids"].as_array().unwrap().iter().map(|i| i["internal_id"].as_str().unwrap().to_owned()).collect()
}

/// A business administrator maps himself (or anyone) to another operator's 業務内ID and acts as him in the
/// business system: a 業務内ID names one operator per municipality and business system. Removing it, assigning
/// him another one, revoking him or dropping the business system frees it; an import is refused in its cell.
async fn an_internal_id_names_one_operator(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, biz) = a_business_administrator_and_two_clerks(&app).await;
    let assign = |operator_id: &str, internal_id: &str| {
        app.put(&internal_id_path(operator_id), Some(&biz), &json!({"internal_id": internal_id}))
    };
    assert_eq!(assign("OP0501", "1000000010").await.status, StatusCode::OK);

    for someone in ["BIZ01", "OP0502"] {
        let before = app.event_count().await;
        assign(someone, "1000000010").await.problem(StatusCode::CONFLICT, "/problems/already-exists");
        assert_eq!(app.event_count().await, before, "a refused assignment wrote events");
        assert!(internal_ids_of(&app, &admin, someone).await.is_empty());
    }

    // Removed: free.
    assert_eq!(app.delete(&internal_id_path("OP0501"), Some(&biz)).await.status, StatusCode::OK);
    assert_eq!(assign("OP0502", "1000000010").await.status, StatusCode::OK);
    // Another one assigned: the first is free.
    assert_eq!(assign("OP0502", "1000000011").await.status, StatusCode::OK);
    assert_eq!(assign("OP0501", "1000000010").await.status, StatusCode::OK);
    assign("OP0502", "1000000010").await.problem(StatusCode::CONFLICT, "/problems/already-exists");
    // Revoked: free.
    let revoked = app.post_empty(&format!("{}/revoke", operator_path(CHIYODA, "OP0501")), Some(&admin)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(assign("OP0502", "1000000010").await.status, StatusCode::OK);
    // The business system taken from him: free.
    let dropped = app.patch(&operator_path(CHIYODA, "OP0502"), Some(&admin), None, &json!({"business_systems": []}));
    assert_eq!(dropped.await.status, StatusCode::OK);
    assert_eq!(assign("BIZ01", "1000000010").await.status, StatusCode::OK);
    assert_eq!(internal_ids_of(&app, &admin, "BIZ01").await, ["1000000010"]);

    // An import naming an ID someone holds, or one an earlier row takes: each row refused in its cell.
    let file = "オペレータID,氏名・組織名,許可業務,業務内ID\r\n\
                OP0701,窓口 一郎,01,01:1000000010\r\n\
                OP0702,窓口 次郎,01,01:2000000001\r\n\
                OP0703,窓口 三郎,01,01:2000000001\r\n";
    let before = app.event_count().await;
    let import = app.import_operators(CHIYODA, &admin, "text/csv", file.as_bytes().to_vec(), &[]).await;
    let problem = import.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    let fields: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["/rows/2/internal_ids", "/rows/4/internal_ids"], "{problem}");
    assert_eq!(app.event_count().await, before);
}

/// Two business administrators assign one 業務内ID to two operators at the same moment: one wins, the other is
/// told the ID is taken, and exactly one operator holds it.
async fn two_concurrent_assignments_of_one_internal_id_one_wins(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, biz) = a_business_administrator_and_two_clerks(&app).await;
    for round in 0..6 {
        let internal_id = format!("30000000{round:02}");
        let body = json!({"internal_id": internal_id});
        let first = tokio::spawn(app.put(&internal_id_path("OP0501"), Some(&biz), &body));
        let second = tokio::spawn(app.put(&internal_id_path("OP0502"), Some(&biz), &body));
        let replies = [first.await.unwrap(), second.await.unwrap()];

        let won: Vec<&Reply> = replies.iter().filter(|r| r.status == StatusCode::OK).collect();
        assert_eq!(won.len(), 1, "round {round}: {} / {}", replies[0].text, replies[1].text);
        let lost = replies.iter().find(|r| r.status != StatusCode::OK).unwrap();
        lost.problem(StatusCode::CONFLICT, "/problems/already-exists");
        let mut holders = 0;
        for id in ["OP0501", "OP0502"] {
            holders += usize::from(internal_ids_of(&app, &admin, id).await.contains(&internal_id));
        }
        assert_eq!(holders, 1, "round {round}: {internal_id} held by {holders} operators");
    }
}

/// A clerk probes FIDs with a resident who already has a card: had the answer been "FID taken" for a card
/// registered elsewhere and "resident has a card" otherwise, he would learn, writing nothing, whether any FID is
/// registered in another municipality. The resident's own refusal comes first, whatever the FID; and the
/// refusal of an FID held elsewhere is the one of an FID held here.
async fn whether_a_card_is_held_elsewhere_is_not_told(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    let clerk_a = app.clerk_token(&admin, CHIYODA, "CL0001", &[]).await;
    let clerk_b = app.clerk_token(&admin, SAPPORO, "CL0002", &[]).await;
    let resident = |token: &str, code: &str, given: &str| {
        let reply = app.post(&residents_path(code), Some(token), &resident_body("ヤマダ", given, "3450101"));
        async move {
            let reply = reply.await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            reply.json()["resident_id"].as_str().unwrap().to_owned()
        }
    };
    let card = |token: &str, code: &str, fid: &str, resident: &str| {
        app.post(&cards_path(code), Some(token), &json!({"fid": fid, "resident_id": resident}))
    };
    let taro = resident(&clerk_a, CHIYODA, "タロウ").await;
    assert_eq!(card(&clerk_a, CHIYODA, "FIDA0001", &taro).await.status, StatusCode::CREATED);
    let (jiro, saburo) = (resident(&clerk_b, SAPPORO, "ジロウ").await, resident(&clerk_b, SAPPORO, "サブロウ").await);
    assert_eq!(card(&clerk_b, SAPPORO, "FIDB0001", &jiro).await.status, StatusCode::CREATED);
    let hanako = resident(&clerk_b, SAPPORO, "ハナコ").await;
    assert_eq!(card(&clerk_b, SAPPORO, "FIDB0002", &saburo).await.status, StatusCode::CREATED);
    let before = app.event_count().await;

    // Jiro has a card: held in A, held here or never seen, the answer is about Jiro.
    let mut answers = vec![];
    for fid in ["FIDA0001", "FIDB0002", "FIDNEVER"] {
        let reply = card(&clerk_b, SAPPORO, fid, &jiro).await;
        reply.problem(StatusCode::CONFLICT, "/problems/resident-has-card");
        answers.push(reply.text);
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "the answers differ: {answers:?}");
    // Hanako has none: an FID held in A and one held here are refused alike, without saying where.
    let elsewhere = card(&clerk_b, SAPPORO, "FIDA0001", &hanako).await;
    let here = card(&clerk_b, SAPPORO, "FIDB0002", &hanako).await;
    elsewhere.problem(StatusCode::CONFLICT, "/problems/fid-taken");
    assert_eq!(elsewhere.text, here.text);
    for secret in [CHIYODA, "千代田", taro.as_str()] {
        assert!(!elsewhere.text.contains(secret), "{}", elsewhere.text);
    }
    assert_eq!(app.event_count().await, before, "a refused registration wrote events");
}

on_both_backends!(
    guessing_one_operator_is_throttled,
    endless_guessing_stays_on_record_without_slowing_logins,
    a_generated_first_password_must_be_changed_first,
    one_address_guessing_many_operators_is_throttled,
    an_operations_manager_cannot_raise_his_own_privileges,
    an_operations_manager_gives_only_what_he_holds,
    an_internal_id_names_one_operator,
    two_concurrent_assignments_of_one_internal_id_one_wins,
    whether_a_card_is_held_elsewhere_is_not_told,
    slow_clients_are_cut_off,
    connections_beyond_the_limit_are_closed_at_once,
    no_answer_of_the_api_may_be_cached,
    a_password_change_guards_the_password_and_ends_other_sessions,
    operators_of_an_abolished_municipality_are_shut_out,
    a_flood_of_logins_is_turned_away_not_queued,
    a_revoked_operator_leaves_no_credentials_behind,
    ended_and_expired_sessions_are_deleted,
);
