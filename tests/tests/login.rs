//! Logging in as a municipality's operator: the top page (`GET /api/v1/me`) with exactly the business systems he
//! may use now, failed logins that lock him out (for a while, then until an administrator unlocks him), the
//! failures in the event log, and answers that never tell a wrong password from an unknown operator.
//! Every test runs on PostgreSQL and on SQLite.
//!
//! Failed logins are recorded in the background, so the tests poll the operator's stream (with a deadline)
//! before they expect a lock. The lockout policy is a small one (3 failures, seconds-long locks) to stay fast.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_domain::operator::LockoutPolicy;
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, eventually, on_both_backends, operator_path, operator_with_password, send, spawn_app,
    spawn_app_with, spawn_app_with_clock, with_check_digit,
};

const CHIYODA: &str = "131016";
const PASSWORD: &str = "ClerkPassw0rd";
const WRONG: &str = "WrongPassw0rd";

/// 千代田区 with its clerk OP0501 (permitted 01); the system administrator's token.
async fn chiyoda_and_a_clerk(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", PASSWORD, &["clerk"], &["01"])).await;
    admin
}

/// A server whose operators are locked after 3 failed logins in a row for `lock_seconds`; the 2nd lock is
/// permanent.
async fn with_small_lockout(backend: Backend, lock_seconds: i64) -> TestApp {
    spawn_app_with_clock(backend, |settings| {
        settings.lockout = LockoutPolicy { max_failures: 3, lock_seconds, max_lockouts: 2 };
    })
    .await
}

fn login(app: &TestApp, password: &str) -> impl Future<Output = Reply> + use<> {
    app.try_login(Some(CHIYODA), "OP0501", password)
}

/// Three wrong passwords, each refused as such.
async fn fail_three_times(app: &TestApp) {
    for _ in 0..3 {
        login(app, WRONG).await.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    }
}

/// Waits until the operator's `n`-th lock is recorded and shown, and returns that `OperatorLocked` payload.
async fn wait_for_lock(app: &TestApp, admin: &str, n: usize) -> Value {
    let locks = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLocked", n).await;
    eventually(Duration::from_secs(10), "the operator to be shown locked", || async {
        let shown = app.get(&operator_path(CHIYODA, "OP0501"), Some(admin)).await.json();
        (shown["locked"] == true).then_some(())
    })
    .await;
    locks[n - 1].payload.value().clone()
}

/// The operator as the administrator sees him.
async fn shown(app: &TestApp, admin: &str) -> Value {
    app.get(&operator_path(CHIYODA, "OP0501"), Some(admin)).await.json()
}

async fn the_top_page_lists_exactly_the_business_systems_he_may_use_now(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    for id in ["10", "11", "12"] {
        let body = json!({
            "business_id": id,
            "name": format!("業務{id}"),
            "top_url": format!("https://b{id}.example.jp/"),
            "operator_admin_url": format!("https://b{id}.example.jp/operators"),
            "personalize_url": format!("https://b{id}.example.jp/me"),
        });
        let reply = app.post("/api/v1/business-systems", Some(&admin), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    // 千代田区 may use 01, 02, 10, 11 (not 12); he is permitted 01, 10, 11 (not 02); 11 is then retired.
    for id in ["01", "02", "10", "11"] {
        app.permit(&admin, id, CHIYODA).await;
    }
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0501", PASSWORD, &["clerk"], &["01", "10", "11"]))
        .await;
    let retire = app.post_empty("/api/v1/business-systems/11/retire", Some(&admin)).await;
    assert_eq!(retire.status, StatusCode::OK, "{}", retire.text);
    let token = app.login(Some(CHIYODA), "OP0501", PASSWORD).await;

    let reply = app.get("/api/v1/me", Some(&token)).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let me = reply.json();
    assert_eq!((me["operator_id"].as_str(), me["municipality"].as_str()), (Some("OP0501"), Some(CHIYODA)));
    assert_eq!(me["roles"], json!(["clerk"]));
    let systems = me["business_systems"].as_array().unwrap();
    let ids: Vec<&str> = systems.iter().map(|b| b["business_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["01", "10"], "his permission ∩ shared use ∩ not retired: {me}");
    assert_eq!(systems[0]["name"], "証明書等自動交付");
    assert_eq!(
        systems[1],
        json!({
            "business_id": "10",
            "name": "業務10",
            "top_url": "https://b10.example.jp/",
            "operator_admin_url": "https://b10.example.jp/operators",
            "personalize_url": "https://b10.example.jp/me",
        })
    );
    // The system administrator may use every business system that is not retired.
    let admin_me = app.get("/api/v1/me", Some(&admin)).await.json();
    let ids: Vec<&str> =
        admin_me["business_systems"].as_array().unwrap().iter().map(|b| b["business_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["00", "01", "02", "10", "12"]);
    assert_eq!(admin_me["municipality"], Value::Null);
}

async fn failed_logins_lock_him_out_for_a_while(backend: Backend) {
    let app = with_small_lockout(backend, 3).await;
    let admin = chiyoda_and_a_clerk(&app).await;
    let token = app.login(Some(CHIYODA), "OP0501", PASSWORD).await;

    fail_three_times(&app).await;

    // Every failure is in the event log, and the third locked him.
    let lock = wait_for_lock(&app, &admin, 1).await;
    let failures = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 3).await;
    let counted: Vec<&Value> = failures.iter().map(|e| &e.payload["failures_in_row"]).collect();
    assert_eq!(counted, [1, 2, 3]);
    assert_eq!(lock["until"].as_i64().unwrap() - lock["at"].as_i64().unwrap(), 3, "{lock}");
    // Now even the right password is refused, and says for how long.
    let refused = login(&app, PASSWORD).await;
    let body = refused.problem(StatusCode::UNAUTHORIZED, "/problems/operator-locked");
    assert!(body["detail"].as_str().unwrap().contains("までログインできません"), "{body}");
    // The lock stops new logins only: the session he has goes on (a lock anyone can cause must not throw him out).
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);
    // While he is locked, a wrong password gets the very answer the right one gets: a right guess is not told.
    let wrong = login(&app, WRONG).await;
    let right = login(&app, PASSWORD).await;
    assert_eq!((wrong.status, &wrong.text), (right.status, &right.text));
    let shown_locked = shown(&app, &admin).await;
    assert_eq!(shown_locked["locked"], true);
    assert!(shown_locked["locked_until"].is_string(), "{shown_locked}");

    // The lock runs out by itself: a second before, still locked; at its end, he is let in.
    app.advance(Duration::from_secs(2));
    login(&app, PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "/problems/operator-locked");
    app.advance(Duration::from_secs(1));
    assert_eq!(login(&app, PASSWORD).await.status, StatusCode::CREATED);
    let shown_after = shown(&app, &admin).await;
    assert_eq!((&shown_after["locked"], &shown_after["locked_until"]), (&json!(false), &Value::Null), "{shown_after}");
}

async fn the_second_lock_lasts_until_an_administrator_unlocks_him(backend: Backend) {
    let app = with_small_lockout(backend, 1).await;
    let admin = chiyoda_and_a_clerk(&app).await;
    let batch = operator_with_password("MGR01", "ManagerPassw0rd", &["operations_manager"], &[]);
    app.add_operators(&admin, CHIYODA, &batch).await;
    let manager = app.login(Some(CHIYODA), "MGR01", "ManagerPassw0rd").await;
    // The first lock (one second) runs out.
    fail_three_times(&app).await;
    wait_for_lock(&app, &admin, 1).await;
    app.advance(Duration::from_secs(1));
    let token = app.login(Some(CHIYODA), "OP0501", PASSWORD).await;

    fail_three_times(&app).await;

    let lock = wait_for_lock(&app, &admin, 2).await;
    assert_eq!(lock["until"], Value::Null, "the second lock is permanent: {lock}");
    let body = login(&app, PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "/problems/operator-locked");
    assert_eq!(body["detail"], "管理者による解除が必要です");
    let shown_locked = shown(&app, &admin).await;
    assert_eq!((&shown_locked["locked"], &shown_locked["locked_until"]), (&json!(true), &Value::Null));
    // Far longer than any temporary lock of this policy (1 s): still locked, and so is his session.
    app.advance(Duration::from_secs(60));
    login(&app, PASSWORD).await.problem(StatusCode::UNAUTHORIZED, "/problems/operator-locked");
    // His running session goes on all the while: a lock stops new logins only.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);

    // The operations manager of 千代田区 unlocks him.
    let unlock = app.post_empty(&format!("{}/unlock", operator_path(CHIYODA, "OP0501")), Some(&manager)).await;
    assert_eq!(unlock.status, StatusCode::OK, "{}", unlock.text);
    assert_eq!((&unlock.json()["locked"], &unlock.json()["locked_until"]), (&json!(false), &Value::Null));
    let token = app.login(Some(CHIYODA), "OP0501", PASSWORD).await;
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);
    // The count starts afresh: three more failures lock him for a while only.
    fail_three_times(&app).await;
    let lock = wait_for_lock(&app, &admin, 3).await;
    assert!(lock["until"].is_i64(), "a temporary lock again: {lock}");
}

async fn a_wrong_password_and_an_unknown_operator_get_the_same_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_and_a_clerk(&app).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0502", PASSWORD, &["clerk"], &[])).await;
    let revoke = app.post_empty(&format!("{}/revoke", operator_path(CHIYODA, "OP0502")), Some(&admin)).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);
    let nowhere = with_check_digit("27100");
    let attempts = [
        ("a wrong password", CHIYODA, "OP0501", WRONG),
        ("an unknown operator", CHIYODA, "OP9999", PASSWORD),
        ("an operator ID that is no ID", CHIYODA, "OP 0501", PASSWORD),
        ("a municipality nobody registered", nowhere.as_str(), "OP0501", PASSWORD),
        ("a revoked operator's right password", CHIYODA, "OP0502", PASSWORD),
    ];

    for lang in ["ja", "en"] {
        let mut replies = vec![];
        for (what, code, operator_id, password) in attempts {
            let body = json!({"municipality": code, "operator_id": operator_id, "password": password});
            let request = app.request(Method::POST, "/api/v1/sessions", None).header("accept-language", lang);
            replies.push((what, send(request.json(&body)).await));
        }

        let (_, first) = &replies[0];
        first.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
        for (what, reply) in &replies[1..] {
            assert_eq!(reply.status, first.status, "{what} ({lang})");
            assert_eq!(reply.text, first.text, "{what} ({lang}): byte-identical body");
            for header in ["content-type", "content-length", "www-authenticate"] {
                assert_eq!(reply.header(header), first.header(header), "{what} ({lang}): {header}");
            }
        }
    }
    // Only the wrong password of a known operator is counted against him.
    let failed = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 2).await;
    assert_eq!(failed.len(), 2, "one per language");
    let revoked_events = app.login_events(Some(CHIYODA), "OP0502").await;
    assert!(revoked_events.iter().all(|e| e.event_type != "OperatorLoginFailed"));
}

/// Failed logins that arrive at once are each counted: the lockout cannot be outrun by asking in parallel.
async fn failed_logins_that_arrive_together_are_all_counted(backend: Backend) {
    // 5 failures lock; no throttling (it would hold most of the burst back, which tests/tests/security.rs shows).
    let app = spawn_app_with(backend, |s| {
        s.throttle.free_per_login = u32::MAX;
        s.throttle.free_per_address = u32::MAX;
    })
    .await;
    chiyoda_and_a_clerk(&app).await;
    let attempts = 20;

    // Logins beyond the password workers' queue are turned away unchecked (503, not counted): those are sent
    // again, together, until every attempt was answered. Once the lock shows, an attempt is answered
    // `operator-locked` and counts no more.
    let (mut answered, mut counted) = (0, 0);
    while answered < attempts {
        let replies = futures_join_all((answered..attempts).map(|_| login(&app, WRONG))).await;
        for reply in &replies {
            match reply.status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    reply.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/busy");
                }
                _ if reply.json()["type"] == "/problems/operator-locked" => answered += 1,
                _ => {
                    reply.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
                    answered += 1;
                    counted += 1;
                }
            }
        }
    }
    assert!(counted >= 5, "only {counted} of {attempts} were checked");
    let failures = app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", counted).await;
    assert_eq!(failures.len(), counted, "every failure answered as such is on record");
    let locks = app.login_events(Some(CHIYODA), "OP0501").await;
    assert!(locks.iter().any(|e| e.event_type == "OperatorLocked"), "{counted} failures lock him");
}

/// Logging in, failing to, and being unlocked are kept on the operator's login stream: his `ETag` stays, so an
/// administrator's `If-Match` still holds after the operator merely logged in.
async fn logging_in_leaves_the_operators_etag_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_and_a_clerk(&app).await;
    let path = operator_path(CHIYODA, "OP0501");
    let before = app.get(&path, Some(&admin)).await;
    let etag = before.etag().to_owned();
    let events = app.operator_events(Some(CHIYODA), "OP0501").await.len();

    app.login(Some(CHIYODA), "OP0501", PASSWORD).await;
    login(&app, WRONG).await.problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 1).await;
    app.login(Some(CHIYODA), "OP0501", PASSWORD).await;

    assert_eq!(app.get(&path, Some(&admin)).await.etag(), etag, "a login changed his ETag");
    assert_eq!(app.operator_events(Some(CHIYODA), "OP0501").await.len(), events, "logins on his own stream");
    let types: Vec<String> =
        app.login_events(Some(CHIYODA), "OP0501").await.into_iter().map(|e| e.event_type).collect();
    assert_eq!(types, ["OperatorLoggedIn", "OperatorLoginFailed", "OperatorLoggedIn"]);
    let rename = app.patch(&path, Some(&admin), Some(&etag), &json!({"name": "新しい名前"})).await;
    assert_eq!(rename.status, StatusCode::OK, "If-Match after a login: {}", rename.text);
}

/// Runs the futures concurrently (on the runtime's worker threads) and collects their outputs in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("the request task did not panic"));
    }
    out
}

on_both_backends!(
    logging_in_leaves_the_operators_etag_alone,
    the_top_page_lists_exactly_the_business_systems_he_may_use_now,
    failed_logins_lock_him_out_for_a_while,
    the_second_lock_lasts_until_an_administrator_unlocks_him,
    a_wrong_password_and_an_unknown_operator_get_the_same_answer,
    failed_logins_that_arrive_together_are_all_counted,
);
