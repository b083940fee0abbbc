//! A PostgreSQL restart under a running server (PostgreSQL only: SQLite has no server to restart).
//!
//! While the database is down, every request that needs it answers promptly with 503 `/problems/unavailable`
//! (problem+json, `Retry-After`) and `/readyz` says not ready; the process neither crashes nor hangs. When the
//! database is back, writes succeed again and the projection runner catches up without a restart of cardap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cardap_api::Settings;
use cardap_testkit::PgCluster;
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::Value;
use cardap_tests::{ADMIN, ADMIN_PASSWORD, Reply, eventually, municipality, send, spawn_app_on};
use tokio::time::Instant;

/// How long a request may take to say "unavailable" while the database is down.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long after the database is back a write must succeed and the list must show it.
const RECOVER_WITHIN: Duration = Duration::from_secs(30);

fn codes(list: &Value) -> Vec<String> {
    list["items"].as_array().expect("items").iter().map(|m| m["code"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_rides_out_a_postgres_restart() {
    let cluster = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap());
    let app = Arc::new(spawn_app_on(Settings::for_tests(cluster.url("postgres")), None).await);
    let token = app.admin_token().await;
    app.register_municipality(&token, "131016", "千代田区", 1).await;

    // The database goes away (fast shutdown: open connections are cut).
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.stop()).await.unwrap();

    // Every request that needs the database answers, all at once and promptly, with "unavailable".
    let register_sapporo = |key: &'static str| {
        app.request(Method::POST, "/api/v1/municipalities", Some(&token))
            .header("idempotency-key", key)
            .json(&municipality("011002", "札幌市", 2))
    };
    let login = app
        .request(Method::POST, "/api/v1/sessions", None)
        .json(&cardap_tests::serde_json::json!({ "operator_id": ADMIN, "password": ADMIN_PASSWORD }));
    let requests = [
        ("list", app.request(Method::GET, "/api/v1/municipalities", Some(&token))),
        ("show", app.request(Method::GET, "/api/v1/municipalities/131016", Some(&token))),
        ("me", app.request(Method::GET, "/api/v1/me", Some(&token))),
        ("register", register_sapporo("sapporo-during-outage")),
        ("login", login),
        ("readyz", app.request(Method::GET, "/readyz", None)),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for (what, request) in requests {
        tasks.spawn(async move {
            let started = Instant::now();
            let reply = tokio::time::timeout(ANSWER_WITHIN, send(request))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_WITHIN:?} while the database is down"));
            (what, reply, started.elapsed())
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (what, reply, took): (&str, Reply, Duration) = done.unwrap();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{what} after {took:?}: {}", reply.text);
        reply.problem(StatusCode::SERVICE_UNAVAILABLE, "/problems/unavailable");
        assert!(reply.header("retry-after").is_some(), "{what}: Retry-After; {:?}", reply.headers);
        assert!(!reply.text.contains("postgres://"), "{what}: no internals in the answer: {}", reply.text);
        eprintln!("{what}: 503 after {took:?}");
    }
    // The process itself is alive.
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);

    // The database comes back.
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.start_again()).await.unwrap();

    let started = Instant::now();
    let registered = eventually(RECOVER_WITHIN, "a registration to succeed after the restart", || async {
        // The same key each time: a retry after a 503 cannot register twice.
        let reply = send(register_sapporo("sapporo-after-restart")).await;
        (reply.status == StatusCode::CREATED).then_some(reply)
    })
    .await;
    assert_eq!(registered.json()["code"], "011002");
    eventually(RECOVER_WITHIN, "the list to show both municipalities", || async {
        let reply = app.get("/api/v1/municipalities", Some(&token)).await;
        (reply.status == StatusCode::OK && codes(&reply.json()) == ["131016", "011002"]).then_some(())
    })
    .await;
    eprintln!("recovered {:?} after the database came back", started.elapsed());
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    // The session made before the restart still works, and a new login too.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status, StatusCode::OK);
    app.login(None, ADMIN, ADMIN_PASSWORD).await;
    // Nothing was written twice.
    for code in ["131016", "011002"] {
        let stream = cardap_store::StreamId::new("municipality", code).unwrap();
        let events = app.state.store.read_stream(&stream, 1).await.unwrap();
        assert_eq!(events.len(), 1, "municipality {code} was written {} times", events.len());
    }
}

/// The order of commits that readers of the event log wait for is the PostgreSQL cluster's: a transaction left
/// open in *another* database of the cluster holds every read model back. `/readyz` names it (database, pid, age)
/// and shows each read model's lag, so an operator can see why the views stand still and end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_names_a_transaction_in_another_database_that_holds_the_views_back() {
    let cluster = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap());
    let app = spawn_app_on(Settings::for_tests(cluster.url("postgres")), None).await;
    let token = app.admin_token().await;
    let (other, connection) = tokio_postgres::connect(&cluster.url("postgres"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    other.batch_execute("CREATE DATABASE reporting").await.unwrap();
    let (reporting, connection) =
        tokio_postgres::connect(&cluster.url("reporting"), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    // Somebody's report in another database, left open with a transaction id.
    reporting.batch_execute("BEGIN; SELECT pg_current_xact_id();").await.unwrap();
    let pid: i32 = reporting.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);

    app.register_municipality(&token, "131016", "千代田区", 1).await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let body = ready.json();
    assert_eq!(body["oldest_transaction"]["database"], "reporting", "{body}");
    assert_eq!(body["oldest_transaction"]["pid"], pid, "{body}");
    assert_eq!(body["oldest_transaction"]["state"], "idle in transaction", "{body}");
    let behind = |body: &Value, name: &str| {
        body["projections"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["behind"].as_u64().unwrap()
    };
    assert!(behind(&body, "municipalities") > 0, "the municipality view is not held back: {body}");

    // Once that transaction ends, the views catch up and nothing is named any more.
    reporting.batch_execute("COMMIT").await.unwrap();
    let deadline = Instant::now() + RECOVER_WITHIN;
    loop {
        let body = app.get("/readyz", None).await.json();
        if behind(&body, "municipalities") == 0 && body.get("oldest_transaction").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the views did not catch up: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
