//! The tamper-evident chain (issue 12, point 5): a running server seals every event into a hash chain, and
//! verification names the first event a database administrator altered, deleted, moved or cut off — each change
//! made directly in the database, as he would. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_projections::audit::{AuditChain, Verdict};
use cardap_store::Database;
use cardap_tests::serde_json::json;
use cardap_tests::{Backend, TestApp, on_both_backends, spawn_app};

const CHIYODA: &str = "131016";

/// A server with some history (a municipality, shared use, operators), its whole log sealed.
async fn sealed_history(backend: Backend) -> (TestApp, AuditChain, u64) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    let operators = json!([
        {"operator_id": "OP0501", "name": "窓口 一郎", "roles": ["clerk"], "business_systems": ["01"]},
        {"operator_id": "OP0502", "name": "窓口 二郎", "roles": ["clerk"], "business_systems": ["01"]},
    ]);
    app.add_operators(&admin, CHIYODA, &operators).await;
    // The chain is over the events as stored: the store without the sealing decorator.
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let chain = AuditChain::new(app.state.read.pool().clone(), db.event_store());
    let events = app.event_count().await as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match chain.verify().await.unwrap() {
            Verdict::Intact { events: sealed } if sealed >= events => return (app, chain, sealed),
            Verdict::Intact { .. } => {}
            other => panic!("an untouched log does not verify: {other}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the server did not seal its {events} events");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The global position of the event at `offset` in the global order.
fn nth(backend: Backend, offset: u32) -> String {
    match backend {
        Backend::Postgres => {
            format!(
                "(SELECT global_position FROM events ORDER BY transaction_id, global_position LIMIT 1 OFFSET {offset})"
            )
        }
        Backend::Sqlite => {
            format!("(SELECT global_position FROM events ORDER BY global_position LIMIT 1 OFFSET {offset})")
        }
    }
}

async fn tamper(app: &TestApp, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(app.state.read.pool()).await.unwrap();
}

async fn an_untouched_log_verifies(backend: Backend) {
    let (_app, chain, sealed) = sealed_history(backend).await;
    assert!(sealed > 5);
    assert_eq!(chain.verify().await.unwrap(), Verdict::Intact { events: sealed });
}

async fn an_altered_payload_is_named(backend: Backend) {
    let (app, chain, _) = sealed_history(backend).await;
    let sql = match backend {
        Backend::Postgres => format!(
            "UPDATE events SET payload = (payload::jsonb || '{{\"tampered\": true}}'::jsonb)::json \
             WHERE global_position = {}",
            nth(backend, 3)
        ),
        Backend::Sqlite => format!(
            "UPDATE events SET payload = json_set(payload, '$.tampered', json('true')) WHERE global_position = {}",
            nth(backend, 3)
        ),
    };
    tamper(&app, &sql).await;
    assert!(matches!(chain.verify().await.unwrap(), Verdict::Altered { seq: 4, .. }));
}

async fn a_deleted_event_is_named(backend: Backend) {
    let (app, chain, _) = sealed_history(backend).await;
    tamper(&app, &format!("DELETE FROM events WHERE global_position = {}", nth(backend, 2))).await;
    assert!(matches!(chain.verify().await.unwrap(), Verdict::Missing { seq: 3, .. }));
}

async fn two_swapped_events_are_named(backend: Backend) {
    let (app, chain, _) = sealed_history(backend).await;
    let (third, fourth) = (nth(backend, 2), nth(backend, 3));
    // The third and fourth rows trade their event ids: each event now stands in the other's place.
    let mut tx = app.state.read.pool().begin().await.unwrap();
    for sql in [
        format!(
            "CREATE TEMP TABLE swap AS SELECT global_position AS gp, event_id AS id FROM events \
             WHERE global_position IN ({third}, {fourth})"
        ),
        "UPDATE events SET event_id = (SELECT id FROM swap WHERE gp <> events.global_position) \
         WHERE global_position IN (SELECT gp FROM swap)"
            .to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let verdict = chain.verify().await.unwrap();
    assert!(matches!(verdict, Verdict::Reordered { seq: 3, .. }), "{verdict}");
}

async fn a_cut_off_tail_is_named(backend: Backend) {
    let (app, chain, sealed) = sealed_history(backend).await;
    let keep = u32::try_from(sealed - 2).unwrap();
    let sql = match backend {
        Backend::Postgres => format!(
            "DELETE FROM events WHERE (transaction_id, global_position) >= \
             (SELECT transaction_id, global_position FROM events ORDER BY transaction_id, global_position \
              LIMIT 1 OFFSET {keep})"
        ),
        Backend::Sqlite => format!("DELETE FROM events WHERE global_position >= {}", nth(backend, keep)),
    };
    tamper(&app, &sql).await;
    let verdict = chain.verify().await.unwrap();
    assert!(matches!(verdict, Verdict::Missing { seq, .. } if seq == sealed - 1), "{verdict}");
}

on_both_backends!(
    an_untouched_log_verifies,
    an_altered_payload_is_named,
    a_deleted_event_is_named,
    two_swapped_events_are_named,
    a_cut_off_tail_is_named,
);
