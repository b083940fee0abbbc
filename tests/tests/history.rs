//! Operator history for auditors (issue 12, point 2): `GET /api/v1/audit/events` streams who did what to whom,
//! when and from which terminal, in the global order — as NDJSON or CSV — filtered by operator, resident and time;
//! an auditor sees his municipality's history only (another's is 404), a clerk none. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, on_both_backends, operator_with_password, resident_body, residents_path, spawn_app,
};

const CHIYODA: &str = "131016";
const MINATO: &str = "131032";
const PASSWORD: &str = "Passw0rdForAudit";

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// 千代田区 with an auditor and a clerk, 港区 with a clerk; the clerk of 千代田区 registers a resident from 窓口3番
/// and mistypes his password once. Returns the administrator's, the auditor's and the clerk's tokens and the
/// resident's id.
async fn world(app: &TestApp) -> (String, String, String, String) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, MINATO, "港区", 2).await;
    let chiyoda = json!([
        operator_with_password("AUD01", PASSWORD, &["auditor"], &[]),
        operator_with_password("OP0501", PASSWORD, &["clerk"], &[]),
    ]);
    app.add_operators(&admin, CHIYODA, &chiyoda).await;
    app.add_operators(&admin, MINATO, &operator_with_password("OP0601", PASSWORD, &["clerk"], &[])).await;
    let clerk = app.login(Some(CHIYODA), "OP0501", PASSWORD).await;
    let reply = app
        .send_with(
            Method::POST,
            &residents_path(CHIYODA),
            Some(&clerk),
            &[("x-cardap-terminal", "窓口3番")],
            Some(&resident_body("ヤマダ", "タロウ", "4030303")),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let resident = reply.json()["resident_id"].as_str().unwrap().to_owned();
    let failed = app.try_login(Some(CHIYODA), "OP0501", "WrongPassw0rd").await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    let minato = app.login(Some(MINATO), "OP0601", PASSWORD).await;
    let reply = app.post(&residents_path(MINATO), Some(&minato), &resident_body("スズキ", "ハナコ", "4020202")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let auditor = app.login(Some(CHIYODA), "AUD01", PASSWORD).await;
    (admin, auditor, clerk, resident)
}

/// The history as NDJSON lines, once the failed login (recorded in the background) is in.
async fn history(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let path = format!("/api/v1/audit/events?{query}");
    for _ in 0..50 {
        let reply = app.get(&path, Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
        let lines = lines(&reply.text);
        if query.contains("resident_id") || lines.iter().any(|l| l["type"] == "OperatorLoginFailed") {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the failed login never appeared in the history");
}

async fn an_auditor_replays_who_did_what_to_whom(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_admin, auditor, _clerk, resident) = world(&app).await;

    let all = history(&app, &auditor, &format!("municipality={CHIYODA}")).await;
    let positions: Vec<u64> = all.iter().map(|l| l["position"].as_u64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in the global order: {positions:?}");
    assert!(all.iter().all(|l| l["municipality"] == CHIYODA), "only 千代田区's: {all:?}");
    let registered = all.iter().find(|l| l["type"] == "ResidentRegistered").expect("the registration");
    assert_eq!(registered["operator_id"], "OP0501");
    assert_eq!(registered["terminal"], "窓口3番");
    assert_eq!(registered["stream"], format!("resident/{resident}"));
    assert_eq!(registered["changes"]["personal"]["kana_name"]["family"], "ヤマダ", "{registered}");
    assert!(all.iter().any(|l| l["type"] == "OperatorLoginFailed" && l["stream"].as_str().unwrap().contains("OP0501")));
    assert!(!all.iter().any(|l| l.to_string().contains("スズキ")), "nothing of 港区");

    // Every action of OP0501, and what happened to him (the failed login), and nothing of the auditor.
    let his = history(&app, &auditor, &format!("municipality={CHIYODA}&operator_id=OP0501")).await;
    assert!(his.iter().any(|l| l["type"] == "ResidentRegistered"));
    assert!(his.iter().any(|l| l["type"] == "OperatorLoginFailed"));
    assert!(!his.iter().any(|l| l["stream"].as_str().unwrap().contains("AUD01")), "{his:?}");
    // His history within a time range: what lies in it only (on PostgreSQL the range narrows the index read too).
    let at = |line: &Value| chrono::DateTime::parse_from_rfc3339(line["recorded_at"].as_str().unwrap()).unwrap();
    let failed = his.iter().find(|l| l["type"] == "OperatorLoginFailed").unwrap();
    let query = |from: chrono::DateTime<chrono::FixedOffset>, to: chrono::DateTime<chrono::FixedOffset>| {
        let instant = |t: chrono::DateTime<chrono::FixedOffset>| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace('+', "%2B")
        };
        format!(
            "/api/v1/audit/events?municipality={CHIYODA}&operator_id=OP0501&from={}&to={}",
            instant(from),
            instant(to)
        )
    };
    let types = |reply: cardap_tests::Reply| -> Vec<String> {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        lines(&reply.text).iter().map(|l| l["type"].as_str().unwrap().to_owned()).collect()
    };
    let millisecond = chrono::Duration::milliseconds(1);
    let then = types(app.get(&query(at(registered), at(registered) + millisecond), Some(&auditor)).await);
    assert!(
        then.contains(&"ResidentRegistered".to_owned()) && !then.contains(&"OperatorLoginFailed".to_owned()),
        "{then:?}"
    );
    let then = types(app.get(&query(at(failed), at(failed) + millisecond), Some(&auditor)).await);
    assert!(
        then.contains(&"OperatorLoginFailed".to_owned()) && !then.contains(&"ResidentRegistered".to_owned()),
        "{then:?}"
    );
    // What concerns the resident.
    let about = history(&app, &auditor, &format!("municipality={CHIYODA}&resident_id={resident}")).await;
    assert_eq!(about.iter().map(|l| l["type"].as_str().unwrap()).collect::<Vec<_>>(), ["ResidentRegistered"]);
    // A time range that ends before everything: nothing.
    let none =
        history(&app, &auditor, &format!("municipality={CHIYODA}&to=2000-01-01T00:00:00Z&resident_id={resident}"))
            .await;
    assert!(none.is_empty());

    // CSV: a header and the same events.
    let reply = app
        .send_with(
            Method::GET,
            &format!("/api/v1/audit/events?municipality={CHIYODA}&resident_id={resident}"),
            Some(&auditor),
            &[("accept", "text/csv")],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.header("content-type").unwrap().starts_with("text/csv"));
    let mut rows = reply.text.lines();
    assert_eq!(
        rows.next(),
        Some("position,recorded_at,municipality,operator_id,operator_key,terminal,type,stream,changes")
    );
    let row = rows.next().unwrap();
    assert!(row.contains("ResidentRegistered") && row.contains("OP0501") && row.contains("窓口3番"), "{row}");
}

async fn nobody_reads_another_municipalitys_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, auditor, clerk, _) = world(&app).await;
    let other = app.get(&format!("/api/v1/audit/events?municipality={MINATO}"), Some(&auditor)).await;
    other.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let everything = app.get("/api/v1/audit/events", Some(&auditor)).await;
    everything.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let clerk = app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}"), Some(&clerk)).await;
    clerk.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let bad = app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}&from=yesterday"), Some(&auditor)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.error_fields(), ["from"]);
    // The system administrator sees everything, both municipalities.
    let all = history(&app, &admin, "").await;
    assert!(all.iter().any(|l| l["municipality"] == MINATO) && all.iter().any(|l| l["municipality"] == CHIYODA));
    let minato = app.get(&format!("/api/v1/audit/events?municipality={MINATO}"), Some(&admin)).await;
    assert!(lines(&minato.text).iter().all(|l| l["municipality"] == MINATO) && !minato.text.is_empty());
}

/// "What could operator X do on date D": his stream and his business systems' replayed up to then.
async fn what_an_operator_could_do_on_a_given_date(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, auditor, clerk, _) = world(&app).await;
    let now = || {
        let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        t.replace('+', "%2B")
    };
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(50));
    app.permit(&admin, "01", CHIYODA).await;
    app.add_operators(&admin, CHIYODA, &operator_with_password("OP0502", PASSWORD, &["clerk"], &["01"])).await;
    pause().await;
    let permitted = now();
    pause().await;
    app.withdraw(&admin, "01", CHIYODA).await;
    pause().await;
    let withdrawn = now();
    pause().await;
    let revoke = format!("/api/v1/municipalities/{CHIYODA}/operators/OP0502/revoke");
    assert!(app.post_empty(&revoke, Some(&admin)).await.status.is_success());
    pause().await;
    let revoked = now();
    let as_of = |at: &str| format!("/api/v1/municipalities/{CHIYODA}/operators/OP0502/as-of?at={at}");

    let then = app.get(&as_of(&permitted), Some(&auditor)).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.text);
    let then = then.json();
    assert_eq!((then["registered"].clone(), then["revoked"].clone()), (json!(true), json!(false)));
    assert_eq!(then["business_systems"], json!(["01"]));
    assert_eq!(then["usable_business_systems"], json!(["01"]));
    let then = app.get(&as_of(&withdrawn), Some(&auditor)).await.json();
    assert_eq!(then["business_systems"], json!(["01"]), "still permitted to him");
    assert_eq!(then["usable_business_systems"], json!([]), "but no longer to his municipality");
    let then = app.get(&as_of(&revoked), Some(&auditor)).await.json();
    assert_eq!(then["revoked"], json!(true));
    let before = app.get(&as_of("2000-01-01T00:00:00Z"), Some(&auditor)).await.json();
    assert_eq!((before["registered"].clone(), before["version"].clone()), (json!(false), json!(0)));

    // 共同利用 as of then: the auditor sees whether his municipality could use 01; the administrator sees all.
    let shared = |at: &str| format!("/api/v1/business-systems/01/as-of?at={at}");
    let then = app.get(&shared(&permitted), Some(&auditor)).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.text);
    assert_eq!(then.json()["permitted_municipalities"], json!([CHIYODA]));
    assert_eq!(app.get(&shared(&withdrawn), Some(&auditor)).await.json()["permitted_municipalities"], json!([]));
    assert_eq!(app.get(&shared(&permitted), Some(&admin)).await.json()["permitted_municipalities"], json!([CHIYODA]));
    app.get(&shared(&permitted), Some(&clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let unknown = format!("/api/v1/business-systems/77/as-of?at={permitted}");
    app.get(&unknown, Some(&auditor)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    let nobody = format!("/api/v1/municipalities/{CHIYODA}/operators/NOBODY/as-of?at={revoked}");
    app.get(&nobody, Some(&auditor)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let other = format!("/api/v1/municipalities/{MINATO}/operators/OP0601/as-of?at={revoked}");
    app.get(&other, Some(&auditor)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.get(&as_of(&revoked), Some(&clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let missing = app.get(&format!("/api/v1/municipalities/{CHIYODA}/operators/OP0502/as-of"), Some(&auditor)).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Now, in RFC 3339 with microseconds, escaped for a query string; and a pause so that it lies strictly between
/// the events before and after it.
async fn instant() -> String {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace('+', "%2B");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    t
}

async fn a_resident_and_his_card_as_they_stood_then(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, auditor, clerk, taro) = world(&app).await;
    let registered = instant().await;
    let path = format!("{}/{taro}", residents_path(CHIYODA));
    let changed = app.patch(&path, Some(&clerk), None, &json!({"occupation": "自営業"})).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let reply = app
        .post(
            &format!("/api/v1/municipalities/{CHIYODA}/cards"),
            Some(&clerk),
            &json!({"fid": "FID0001", "resident_id": taro}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let card_registered = instant().await;
    let card = format!("/api/v1/municipalities/{CHIYODA}/cards/FID0001");
    assert!(app.post_empty(&format!("{card}/local-area"), Some(&clerk)).await.status.is_success());
    let area_created = instant().await;
    assert!(app.post_empty(&format!("{card}/suspend"), Some(&clerk)).await.status.is_success());
    let suspended = instant().await;

    let resident_then = |at: &str| format!("{path}/as-of?at={at}");
    let then = app.get(&resident_then(&registered), Some(&auditor)).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.text);
    let then = then.json()["resident"].clone();
    assert_eq!(then["kana_name"], json!({"family": "ヤマダ", "given": "タロウ"}));
    assert_eq!(
        (then["occupation"].clone(), then["active_fid"].clone(), then["version"].clone()),
        (Value::Null, Value::Null, json!(1))
    );
    let then = app.get(&resident_then(&card_registered), Some(&auditor)).await.json()["resident"].clone();
    assert_eq!((then["occupation"].clone(), then["active_fid"].clone()), (json!("自営業"), json!("FID0001")));
    let before = app.get(&resident_then("2000-01-01T00:00:00Z"), Some(&auditor)).await;
    before.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    let card_then = |at: &str| format!("{card}/as-of?at={at}");
    let then = app.get(&card_then(&card_registered), Some(&auditor)).await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.text);
    let then = then.json()["card"].clone();
    assert_eq!(
        (then["status"].clone(), then["local_area"].clone(), then["resident_id"].clone()),
        (json!("in_use"), json!(false), json!(taro))
    );
    let then = app.get(&card_then(&area_created), Some(&auditor)).await.json()["card"].clone();
    assert_eq!((then["status"].clone(), then["local_area"].clone()), (json!("in_use"), json!(true)));
    let then = app.get(&card_then(&suspended), Some(&auditor)).await.json()["card"].clone();
    assert_eq!(then["status"], json!("suspended"));
    app.get(&card_then(&registered), Some(&auditor)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    // The auditor's looks at his personal data are in the read access log, as are the history pages that showed it.
    let history =
        app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}&resident_id={taro}"), Some(&auditor)).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    let reply =
        app.get(&format!("/api/v1/audit/access?municipality={CHIYODA}&operator_id=AUD01"), Some(&auditor)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reads = lines(&reply.text);
    let operations: Vec<&str> = reads.iter().map(|l| l["operation"].as_str().unwrap()).collect();
    assert_eq!(operations.iter().filter(|o| **o == "resident.as_of").count(), 2, "{operations:?}");
    assert_eq!(operations.last(), Some(&"audit.history"), "{operations:?}");
    assert!(reads.iter().all(|l| l["residents"].to_string().contains(&taro)), "{reads:?}");

    // A clerk is no auditor; another municipality's path is not found; `at` is required.
    app.get(&resident_then(&suspended), Some(&clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    app.get(&card_then(&suspended), Some(&clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let elsewhere = format!("/api/v1/municipalities/{MINATO}/residents/{taro}/as-of?at={suspended}");
    app.get(&elsewhere, Some(&auditor)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let missing = app.get(&format!("{path}/as-of"), Some(&auditor)).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
}

on_both_backends!(
    an_auditor_replays_who_did_what_to_whom,
    nobody_reads_another_municipalitys_history,
    what_an_operator_could_do_on_a_given_date,
    a_resident_and_his_card_as_they_stood_then,
);
