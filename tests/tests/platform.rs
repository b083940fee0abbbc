//! What load balancers, monitoring and client generators rely on: `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`, and problem+json for paths that do not exist. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::StatusCode;
use cardap_tests::{Backend, on_both_backends, spawn_app};

async fn health_and_readiness(backend: Backend) {
    let app = spawn_app(backend).await;

    let health = app.get("/healthz", None).await;
    let ready = app.get("/readyz", None).await;

    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(ready.json()["backend"], backend.name());
}

async fn the_openapi_document_lists_the_fixed_paths(backend: Backend) {
    let app = spawn_app(backend).await;

    let reply = app.get("/openapi.json", None).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let doc = reply.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "an OpenAPI 3 document");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/sessions",
        "/api/v1/sessions/current",
        "/api/v1/me",
        "/api/v1/municipalities",
        "/api/v1/municipalities/{code}",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(path), "{path} is documented; documented: {:?}", paths.keys());
    }
    assert!(paths["/api/v1/municipalities"].get("post").is_some());
    assert!(paths["/api/v1/municipalities/{code}"].get("patch").is_some());
    assert!(doc["components"]["schemas"].get("ProblemDetails").is_some());
}

async fn metrics_count_responses_in_prometheus_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let count_4xx = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("cardap_http_responses_total{class=\"4xx\"} "))
            .expect("a 4xx line")
            .trim()
            .parse()
            .expect("a number")
    };
    let metrics = || cardap_tests::send(app.client.get(format!("{}/metrics", app.metrics_address)));
    let before = metrics().await;

    app.get("/no/such/path", None).await;
    app.get("/api/v1/me", None).await;
    let after = metrics().await;

    assert_eq!(after.status, StatusCode::OK);
    assert!(after.header("content-type").unwrap().starts_with("text/plain"), "{:?}", after.headers);
    assert!(after.text.contains("# TYPE cardap_http_responses_total counter"), "{}", after.text);
    assert!(after.text.contains("cardap_http_responses_total{class=\"2xx\"}"), "{}", after.text);
    assert_eq!(count_4xx(&after.text), count_4xx(&before.text) + 2, "{}", after.text);
    // Not on the API's address: whoever reaches the API does not see every municipality's activity.
    app.get("/metrics", None).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    // Every sample line is `name{labels} value` or `name value`.
    for line in after.text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line {line:?}"));
        assert!(name.starts_with("cardap_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
}

async fn an_unknown_path_is_a_problem(backend: Backend) {
    let app = spawn_app(backend).await;

    let reply = app.get("/api/v1/nothing-here", None).await;
    let english = cardap_tests::send(
        app.request(cardap_tests::reqwest::Method::GET, "/nope", None).header("accept-language", "en"),
    )
    .await;

    reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    assert_eq!(english.problem(StatusCode::NOT_FOUND, "/problems/not-found")["title"], "Not found");
    // Every answer carries a request id for the support desk.
    assert!(reply.header("x-request-id").is_some_and(|id| !id.is_empty()), "{:?}", reply.headers);
}

on_both_backends!(
    health_and_readiness,
    the_openapi_document_lists_the_fixed_paths,
    metrics_count_responses_in_prometheus_text,
    an_unknown_path_is_a_problem,
);
