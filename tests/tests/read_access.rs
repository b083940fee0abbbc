//! The read access log (issue 12, point 4): every read of residents' personal data — a single read, a search
//! page, a registry entry, a registry lookup — is recorded with who, when, from which terminal, which operation
//! and which residents, and `GET /api/v1/audit/access` streams it to the municipality's auditors (NDJSON or CSV,
//! filtered by operator and resident); another municipality's auditor gets 404, a clerk 403; the log holds ids,
//! never a name. A municipality's bulk-read threshold raises one alert when an operator reads more distinct
//! residents within an hour, none below it. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, on_both_backends, operator_with_password, registry_import_path, resident_body, resident_path,
    residents_path, spawn_app,
};
use sqlx::{Connection, Row};

const CHIYODA: &str = "131016";
const MINATO: &str = "131032";
const PASSWORD: &str = "Passw0rdForReads";
const TERMINAL: &str = "窓口3番";

/// The tokens of the operators of these tests.
struct World {
    admin: String,
    /// Clerks of 千代田区.
    clerk: String,
    other_clerk: String,
    /// 千代田区's operations manager and auditor.
    manager: String,
    auditor: String,
    /// 港区's auditor.
    minato_auditor: String,
    /// 千代田区's residents: ヤマダ タロウ, ヤマダ ハナコ, ヤマダ ジロウ, スズキ イチロウ, サトウ ジロウ.
    residents: Vec<String>,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, MINATO, "港区", 2).await;
    let chiyoda = json!([
        operator_with_password("OP0501", PASSWORD, &["clerk"], &[]),
        operator_with_password("OP0502", PASSWORD, &["clerk"], &[]),
        operator_with_password("MGR01", PASSWORD, &["operations_manager"], &[]),
        operator_with_password("AUD01", PASSWORD, &["auditor"], &[]),
    ]);
    app.add_operators(&admin, CHIYODA, &chiyoda).await;
    app.add_operators(&admin, MINATO, &operator_with_password("AUD02", PASSWORD, &["auditor"], &[])).await;
    let clerk = app.login(Some(CHIYODA), "OP0501", PASSWORD).await;
    let mut residents = vec![];
    for (family, given, born) in [
        ("ヤマダ", "タロウ", "4030303"),
        ("ヤマダ", "ハナコ", "4030304"),
        ("ヤマダ", "ジロウ", "4030305"),
        ("スズキ", "イチロウ", "4030306"),
        ("サトウ", "ジロウ", "4030307"),
    ] {
        let reply = app.post(&residents_path(CHIYODA), Some(&clerk), &resident_body(family, given, born)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        residents.push(reply.json()["resident_id"].as_str().unwrap().to_owned());
    }
    World {
        admin,
        clerk,
        other_clerk: app.login(Some(CHIYODA), "OP0502", PASSWORD).await,
        manager: app.login(Some(CHIYODA), "MGR01", PASSWORD).await,
        auditor: app.login(Some(CHIYODA), "AUD01", PASSWORD).await,
        minato_auditor: app.login(Some(MINATO), "AUD02", PASSWORD).await,
        residents,
    }
}

/// A GET from the counter's terminal.
async fn read(app: &TestApp, token: &str, path: &str) -> Value {
    let reply = app.send_with(Method::GET, path, Some(token), &[("x-cardap-terminal", TERMINAL)], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text);
    reply.json()
}

/// The log's NDJSON lines for `query`.
async fn log(app: &TestApp, token: &str, path: &str, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("{path}?{query}"), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    reply.ndjson()
}

fn ids(line: &Value, field: &str) -> Vec<String> {
    line[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

async fn an_auditor_sees_who_read_which_residents(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let registry = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n\
                    000000001,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n";
    let reply = app
        .post_bytes(&registry_import_path(CHIYODA), Some(&w.manager), "text/csv; charset=UTF-8", registry.into())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let started = chrono::Utc::now();

    // OP0501 reads one resident, searches ヤマダ (three on the page), reads a registry entry and looks one up by
    // a card's facts; OP0502 reads another resident.
    read(&app, &w.clerk, &resident_path(CHIYODA, &w.residents[0])).await;
    let page = read(&app, &w.clerk, &format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA))).await;
    let found: Vec<String> =
        page["items"].as_array().unwrap().iter().map(|r| r["resident_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(found.len(), 3);
    read(&app, &w.clerk, &format!("/api/v1/municipalities/{CHIYODA}/registry/000000001")).await;
    let facts = json!({"name": "山田太郎", "birth_date": "19890107", "sex": "1"});
    let reply = app
        .send_with(
            Method::POST,
            &format!("/api/v1/municipalities/{CHIYODA}/registry/lookup"),
            Some(&w.clerk),
            &[("x-cardap-terminal", TERMINAL)],
            Some(&facts),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    read(&app, &w.other_clerk, &resident_path(CHIYODA, &w.residents[3])).await;
    // A search that finds nobody showed nobody's data: nothing to record.
    read(&app, &w.clerk, &format!("{}?kana_prefix=ワタナベ", residents_path(CHIYODA))).await;

    let lines = log(&app, &w.auditor, "/api/v1/audit/access", &format!("municipality={CHIYODA}")).await;
    let operations: Vec<&str> = lines.iter().map(|l| l["operation"].as_str().unwrap()).collect();
    assert_eq!(
        operations,
        ["resident.read", "resident.search", "registry.read", "registry.lookup", "resident.read"],
        "exactly the reads, in order; the registrations are in the history, not here: {lines:?}"
    );
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|s| s[0] < s[1]), "{seqs:?}");
    for line in &lines[..4] {
        assert_eq!(line["operator_id"], "OP0501");
        assert_eq!(line["terminal"], TERMINAL);
        assert_eq!(line["municipality"], CHIYODA);
        let at = chrono::DateTime::parse_from_rfc3339(line["recorded_at"].as_str().unwrap()).unwrap();
        assert!(at >= started - chrono::Duration::seconds(1) && at <= chrono::Utc::now(), "{line}");
    }
    assert_eq!(ids(&lines[0], "residents"), [w.residents[0].clone()]);
    assert_eq!(ids(&lines[1], "residents"), found, "the residents of the page returned");
    assert_eq!(ids(&lines[2], "registry_keys"), ["000000001"]);
    assert_eq!(ids(&lines[3], "registry_keys"), ["000000001"]);
    assert!(ids(&lines[3], "residents").is_empty());
    assert_eq!(
        (lines[4]["operator_id"].as_str(), ids(&lines[4], "residents")),
        (Some("OP0502"), vec![w.residents[3].clone()])
    );

    // By operator, by resident.
    let his =
        log(&app, &w.auditor, "/api/v1/audit/access", &format!("municipality={CHIYODA}&operator_id=OP0502")).await;
    assert_eq!(his.len(), 1);
    assert_eq!(ids(&his[0], "residents"), [w.residents[3].clone()]);
    let about = log(
        &app,
        &w.auditor,
        "/api/v1/audit/access",
        &format!("municipality={CHIYODA}&resident_id={}", w.residents[0]),
    )
    .await;
    let about: Vec<&str> = about.iter().map(|l| l["operation"].as_str().unwrap()).collect();
    assert_eq!(about, ["resident.read", "resident.search"]);
    let nobody = log(
        &app,
        &w.auditor,
        "/api/v1/audit/access",
        &format!("municipality={CHIYODA}&resident_id={}", w.residents[4]),
    )
    .await;
    assert!(nobody.is_empty(), "サトウ was never read: {nobody:?}");
    let before =
        log(&app, &w.auditor, "/api/v1/audit/access", &format!("municipality={CHIYODA}&to=2000-01-01T00:00:00Z")).await;
    assert!(before.is_empty());

    // CSV: a header and the same reads.
    let reply = app
        .send_with(
            Method::GET,
            &format!("/api/v1/audit/access?municipality={CHIYODA}&operator_id=OP0501"),
            Some(&w.auditor),
            &[("accept", "text/csv")],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("text/csv; charset=utf-8"));
    // No cell here needs quoting (ids, names of operations, the terminal): a plain split reads the rows.
    let rows: Vec<Vec<&str>> = reply.text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0][..8],
        ["seq", "recorded_at", "municipality", "operator_id", "operator_key", "terminal", "request_id", "operation"]
    );
    assert_eq!(rows.len(), 1 + 4, "{}", reply.text);
    assert_eq!(rows[2][7], "resident.search");
    assert_eq!(rows[2][8].split(' ').collect::<Vec<_>>(), found);

    // The system administrator sees every municipality's log at once.
    let all = log(&app, &w.admin, "/api/v1/audit/access", "").await;
    assert_eq!(all.len(), 5);
}

async fn the_log_is_for_the_municipalitys_auditors_and_holds_no_personal_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    read(&app, &w.clerk, &resident_path(CHIYODA, &w.residents[0])).await;
    read(&app, &w.clerk, &format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA))).await;

    for path in ["/api/v1/audit/access", "/api/v1/audit/access-alerts"] {
        let query = format!("{path}?municipality={CHIYODA}");
        let reply = app.get(&query, Some(&w.minato_auditor)).await;
        reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
        assert!(!reply.text.contains(&w.residents[0]));
        app.get(&query, Some(&w.clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
        // Every municipality at once is the system administrator's.
        app.get(path, Some(&w.auditor)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    }
    // 港区's auditor sees 港区's log: empty.
    assert!(log(&app, &w.minato_auditor, "/api/v1/audit/access", &format!("municipality={MINATO}")).await.is_empty());
    // An auditor changes nothing: not the threshold.
    let policy = format!("/api/v1/municipalities/{CHIYODA}/read-alert-policy");
    let body = json!({"residents_per_hour": 1});
    app.put(&policy, Some(&w.auditor), &body).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    app.put(&policy, Some(&w.clerk), &body).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    app.get(&policy, Some(&w.clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    app.get(&policy, Some(&w.minato_auditor)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    assert_eq!(app.get(&policy, Some(&w.auditor)).await.json()["residents_per_hour"], Value::Null);

    // What is stored: ids, not a name, a birth date or an address.
    let rows = sqlx::query(
        "SELECT municipality || '|' || operator_key || '|' || COALESCE(terminal, '') || '|' || operation || '|' || \
         residents || '|' || registry_keys AS line FROM read_access_log",
    )
    .fetch_all(app.state.read.pool())
    .await
    .unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get::<String, _>("line")).collect();
    assert_eq!(stored.len(), 2);
    assert!(stored[0].contains(&w.residents[0]), "{stored:?}");
    for personal in ["ヤマダ", "タロウ", "山田", "4030303", "昭和"] {
        assert!(!stored.iter().any(|l| l.contains(personal)), "{personal} in {stored:?}");
    }
    let lines = app.get(&format!("/api/v1/audit/access?municipality={CHIYODA}"), Some(&w.auditor)).await;
    assert!(!lines.text.contains("ヤマダ") && !lines.text.contains("山田"), "{}", lines.text);
    // Append-only: the database refuses to change or remove a record.
    assert!(sqlx::query("DELETE FROM read_access_log").execute(app.state.read.pool()).await.is_err());
    assert!(sqlx::query("UPDATE read_access_log SET residents = ''").execute(app.state.read.pool()).await.is_err());
}

async fn bulk_reads_over_the_threshold_raise_one_alert(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let policy = format!("/api/v1/municipalities/{CHIYODA}/read-alert-policy");
    let reply = app.put(&policy, Some(&w.manager), &json!({"residents_per_hour": 3})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["residents_per_hour"], 3);
    assert_eq!(reply.json()["window_minutes"], 60);
    let reply = app.put(&policy, Some(&w.manager), &json!({"residents_per_hour": 0})).await;
    assert_eq!(
        reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation")["errors"][0]["field"],
        "/residents_per_hour"
    );
    let alerts_query = format!("municipality={CHIYODA}");

    // OP0502 reads three residents, one of them twice: not more than three distinct.
    for i in [0, 1, 2, 0] {
        read(&app, &w.other_clerk, &resident_path(CHIYODA, &w.residents[i])).await;
    }
    assert!(log(&app, &w.auditor, "/api/v1/audit/access-alerts", &alerts_query).await.is_empty());

    // OP0501 reads four: one alert; a fifth within the hour raises no second one.
    for resident in &w.residents[..4] {
        read(&app, &w.clerk, &resident_path(CHIYODA, resident)).await;
    }
    read(&app, &w.clerk, &resident_path(CHIYODA, &w.residents[4])).await;
    let alerts = log(&app, &w.auditor, "/api/v1/audit/access-alerts", &alerts_query).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["operator_id"], "OP0501");
    assert_eq!(alerts[0]["municipality"], CHIYODA);
    assert_eq!((alerts[0]["distinct_residents"].as_u64(), alerts[0]["threshold"].as_u64()), (Some(4), Some(3)));
    assert!(
        log(&app, &w.auditor, "/api/v1/audit/access-alerts", &format!("{alerts_query}&operator_id=OP0502"))
            .await
            .is_empty()
    );
    let metrics =
        app.client.get(format!("{}/metrics", app.metrics_address)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "cardap_read_alerts_total 1"), "{metrics}");

    // OP0502 reads a resident he read before (still three), then a fourth: now his alert too.
    read(&app, &w.other_clerk, &resident_path(CHIYODA, &w.residents[1])).await;
    let his = format!("{alerts_query}&operator_id=OP0502");
    assert!(log(&app, &w.auditor, "/api/v1/audit/access-alerts", &his).await.is_empty());
    read(&app, &w.other_clerk, &resident_path(CHIYODA, &w.residents[3])).await;
    let alerts = log(&app, &w.auditor, "/api/v1/audit/access-alerts", &his).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["distinct_residents"], 4);

    // Who set the threshold is in the history.
    let history =
        log(&app, &w.auditor, "/api/v1/audit/events", &format!("municipality={CHIYODA}&operator_id=MGR01")).await;
    let set: Vec<&Value> = history.iter().filter(|l| l["type"] == "MunicipalityReadAlertSet").collect();
    assert_eq!(set.len(), 1, "{history:?}");
    assert_eq!(set[0]["changes"]["residents_per_hour"], 3);
}

/// More records than one page of the answer (200): all of them, each once, in order.
async fn a_long_log_streams_page_by_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let reads = 450;
    for i in 0..reads {
        let resident = &w.residents[i % w.residents.len()];
        let reply = app.get(&resident_path(CHIYODA, resident), Some(&w.clerk)).await;
        assert_eq!(reply.status, StatusCode::OK);
    }

    let lines = log(&app, &w.auditor, "/api/v1/audit/access", &format!("municipality={CHIYODA}")).await;
    assert_eq!(lines.len(), reads);
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|s| s[0] < s[1]), "each once, in order");
    let his = log(
        &app,
        &w.auditor,
        "/api/v1/audit/access",
        &format!("municipality={CHIYODA}&resident_id={}", w.residents[4]),
    )
    .await;
    assert_eq!(his.len(), reads / w.residents.len());
}

on_both_backends!(
    a_long_log_streams_page_by_page,
    an_auditor_sees_who_read_which_residents,
    the_log_is_for_the_municipalitys_auditors_and_holds_no_personal_data,
    bulk_reads_over_the_threshold_raise_one_alert,
);

/// PostgreSQL: a read right after the database dropped the server's connections (a restart, a failover) is
/// still answered and recorded. A record takes an idle connection without the pool's liveness ping; the one it
/// takes here is dead, so the record is written again on a fresh connection, and the read waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_the_database_dropped_its_connections_is_still_recorded() {
    let app = spawn_app(Backend::Postgres).await;
    let w = world(&app).await;
    let url = &app.settings.database_url;
    // A log over a pool of one connection: the record after the drop can only find the dead one idle.
    let log = cardap_store::AccessLogStore::new(cardap_projections::connect_pool(url, 1).unwrap());
    let record = |request: &str| cardap_store::NewReadAccess {
        recorded_at: 1_700_000_000_000,
        municipality: CHIYODA.to_owned(),
        operator: cardap_domain::OperatorKey::from_uuid(uuid::Uuid::nil()),
        terminal: Some(TERMINAL.to_owned()),
        request_id: Some(request.to_owned()),
        operation: "resident.read",
        residents: vec![w.residents[0].clone()],
        registry_keys: vec![],
    };
    log.record(&record("before-the-drop")).await.unwrap();

    let mut admin = sqlx::postgres::PgConnection::connect(url).await.unwrap();
    let dropped: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(dropped.len() >= 2, "the server's and the log's connections were dropped: {dropped:?}");

    log.record(&record("after-the-drop")).await.unwrap();
    let reply = app.get(&resident_path(CHIYODA, &w.residents[1]), Some(&w.clerk)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT request_id FROM read_access_log WHERE request_id IN ('before-the-drop', 'after-the-drop') ORDER BY seq",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(recorded, ["before-the-drop", "after-the-drop"], "each once");
    let lines = log_of(&app, &w, &w.residents[1]).await;
    assert_eq!(lines.len(), 1, "the server's read after the drop is in the log: {lines:?}");
}

/// The auditor's lines of the log about `resident`.
async fn log_of(app: &TestApp, w: &World, resident: &str) -> Vec<Value> {
    log(app, &w.auditor, "/api/v1/audit/access", &format!("municipality={CHIYODA}&resident_id={resident}")).await
}
