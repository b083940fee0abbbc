//! The tamper-evident chain (issue 12, point 5): a running server seals every event into a hash chain, and
//! verification names the first event a database administrator altered, deleted, moved or cut off — each change
//! made directly in the database, as he would. A database administrator who also recomputes the chain, or cuts
//! off its links too, is caught by the heads signed with the audit key (kept out of the database, and exported to
//! a head file); a head not signed by the given key fails verification loudly. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_api::app::verify_audit;
use cardap_api::settings::AuditSettings;
use cardap_projections::audit::AuditChain;
use cardap_projections::audit::heads::read_head_file;
use cardap_projections::audit::{AuditKey, AuditPublicKey, ReadsVerdict, SignedHead, Verdict};
use cardap_store::{Checkpoint, Database, ReadFilter};
use cardap_tests::serde_json::json;
use cardap_tests::{Backend, TestApp, on_both_backends, spawn_app, spawn_app_with};

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

/// The ids of the log's events in the global order, as the chain sealed them (read before any tampering).
async fn event_ids(app: &TestApp) -> Vec<String> {
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let events = db.event_store().read_all(Checkpoint::START, 10_000, &ReadFilter::All).await.unwrap();
    events.iter().map(|e| e.event_id.to_string()).collect()
}

async fn tamper(app: &TestApp, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(app.state.read.pool()).await.unwrap();
}

/// The verdict of `chain`, which must be the same when the verifier reads in chunks of 3 links handed on 2 at a
/// time (the boundaries a long log crosses, with a short one).
async fn verdict(chain: &AuditChain) -> Verdict {
    let verdict = chain.verify().await.unwrap();
    let in_chunks = chain.clone().verifying_in_chunks(3, 2).verify().await.unwrap();
    assert_eq!(in_chunks, verdict, "read in small chunks");
    verdict
}

async fn an_untouched_log_verifies(backend: Backend) {
    let (_app, chain, sealed) = sealed_history(backend).await;
    assert!(sealed > 5);
    assert_eq!(verdict(&chain).await, Verdict::Intact { events: sealed });
    for (chunk, page) in [(1, 1), (1, 5), (5, 1), (4, 4), (usize::try_from(sealed).unwrap(), 1000)] {
        let small = chain.clone().verifying_in_chunks(chunk, page);
        assert_eq!(small.verify().await.unwrap(), Verdict::Intact { events: sealed }, "chunks of {chunk}, {page}");
    }
}

/// Adds a field to the payload of the event at `offset` in the global order.
async fn alter_payload(app: &TestApp, backend: Backend, offset: u32) {
    let sql = match backend {
        Backend::Postgres => format!(
            "UPDATE events SET payload = (payload::jsonb || '{{\"tampered\": true}}'::jsonb)::json \
             WHERE global_position = {}",
            nth(backend, offset)
        ),
        Backend::Sqlite => format!(
            "UPDATE events SET payload = json_set(payload, '$.tampered', json('true')) WHERE global_position = {}",
            nth(backend, offset)
        ),
    };
    tamper(app, &sql).await;
}

async fn an_altered_payload_is_named(backend: Backend) {
    let (app, chain, _) = sealed_history(backend).await;
    let ids = event_ids(&app).await;
    alter_payload(&app, backend, 3).await;
    assert_eq!(verdict(&chain).await, Verdict::Altered { seq: 4, event_id: ids[3].clone() });
}

async fn a_deleted_event_is_named(backend: Backend) {
    let (app, chain, _) = sealed_history(backend).await;
    let ids = event_ids(&app).await;
    tamper(&app, &format!("DELETE FROM events WHERE global_position = {}", nth(backend, 2))).await;
    assert_eq!(verdict(&chain).await, Verdict::Missing { seq: 3, event_id: ids[2].clone() });
}

async fn two_swapped_events_are_named(backend: Backend) {
    let (app, chain, _) = sealed_history(backend).await;
    let ids = event_ids(&app).await;
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
    assert_eq!(verdict(&chain).await, Verdict::Reordered { seq: 3, event_id: ids[2].clone() });
}

/// Deletes the events from `keep` on in the global order (the tail).
async fn cut_off_events(app: &TestApp, backend: Backend, keep: u64) {
    let keep = u32::try_from(keep).unwrap();
    let sql = match backend {
        Backend::Postgres => format!(
            "DELETE FROM events WHERE (transaction_id, global_position) >= \
             (SELECT transaction_id, global_position FROM events ORDER BY transaction_id, global_position \
              LIMIT 1 OFFSET {keep})"
        ),
        Backend::Sqlite => format!("DELETE FROM events WHERE global_position >= {}", nth(backend, keep)),
    };
    tamper(app, &sql).await;
}

async fn a_cut_off_tail_is_named(backend: Backend) {
    let (app, chain, sealed) = sealed_history(backend).await;
    let ids = event_ids(&app).await;
    cut_off_events(&app, backend, sealed - 2).await;
    let event_id = ids[usize::try_from(sealed).unwrap() - 2].clone();
    assert_eq!(verdict(&chain).await, Verdict::Missing { seq: sealed - 1, event_id });
}

/// The audit key (in a directory of its own, as on a server) and the head of `chain` signed with it, exported to
/// the head file too.
async fn signed_head(chain: &AuditChain) -> (tempfile::TempDir, AuditKey, SignedHead) {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
    let head = chain.sign_head(&key, Some(&dir.path().join("heads.jsonl")), chrono::Utc::now()).await.unwrap();
    (dir, key, head.expect("a head over the sealed events"))
}

async fn a_rewritten_and_rechained_log_is_caught_by_the_signed_head(backend: Backend) {
    let (app, chain, sealed) = sealed_history(backend).await;
    let (dir, key, head) = signed_head(&chain).await;
    assert_eq!(head.seq, sealed);
    let keys = [key.public().clone()];
    assert_eq!(
        chain.verify_against(&chain.heads().await.unwrap(), &keys).await.unwrap(),
        Verdict::Intact { events: sealed }
    );

    // He alters an event and recomputes the whole chain over the altered log: the chain alone now verifies.
    alter_payload(&app, backend, 3).await;
    tamper(&app, "DELETE FROM audit_chain").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The server's own sealer may be rebuilding it at the same moment; one of the two wins.
    while chain.extend().await.is_err() || chain.verify().await.unwrap() != (Verdict::Intact { events: sealed }) {
        assert!(tokio::time::Instant::now() < deadline, "the chain was not recomputed: the chain alone is fooled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The head signed before is not his chain's: from the database and from the exported file alike.
    let rewritten = Verdict::Rewritten { after: 0, seq: sealed };
    assert_eq!(chain.verify_against(&chain.heads().await.unwrap(), &keys).await.unwrap(), rewritten);
    let exported = read_head_file(&dir.path().join("heads.jsonl")).unwrap();
    assert_eq!(exported, [head]);
    assert_eq!(chain.verify_against(&exported, &keys).await.unwrap(), rewritten);
}

async fn a_tail_cut_off_with_its_links_is_caught_by_the_signed_head(backend: Backend) {
    let (app, chain, sealed) = sealed_history(backend).await;
    let (_dir, key, _) = signed_head(&chain).await;
    cut_off_events(&app, backend, sealed - 2).await;
    tamper(&app, &format!("DELETE FROM audit_chain WHERE seq > {}", sealed - 2)).await;
    assert_eq!(chain.verify().await.unwrap(), Verdict::Intact { events: sealed - 2 }, "the chain alone is fooled");
    let verdict = chain.verify_against(&chain.heads().await.unwrap(), &[key.public().clone()]).await.unwrap();
    assert_eq!(verdict, Verdict::Truncated { ends: sealed - 2, seq: sealed });
}

async fn a_head_not_signed_by_the_given_key_fails_loudly(backend: Backend) {
    let (app, chain, sealed) = sealed_history(backend).await;
    let (dir, key, head) = signed_head(&chain).await;
    let (other, _) = AuditKey::load_or_create(&dir.path().join("other.key")).unwrap();
    let unsigned = Verdict::Unsigned { seq: sealed, key_id: head.key_id.clone() };
    assert_eq!(chain.verify_against(&chain.heads().await.unwrap(), &[other.public().clone()]).await.unwrap(), unsigned);

    // A head rewritten in the database to match a recomputed chain carries a signature that no longer fits.
    tamper(&app, &format!("UPDATE audit_heads SET hash = '{}'", "0".repeat(64))).await;
    assert_eq!(chain.verify_against(&chain.heads().await.unwrap(), &[key.public().clone()]).await.unwrap(), unsigned);
    assert!(AuditPublicKey::parse("not a key").is_err());
}

async fn a_server_signs_heads_into_its_head_file_and_verify_checks_them(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (key_file, head_file) = (dir.path().join("audit.key"), dir.path().join("audit-heads.jsonl"));
    let audit = AuditSettings {
        key_file: Some(key_file.clone()),
        head_file: Some(head_file.clone()),
        head_every: Duration::from_secs(1),
    };
    let app = spawn_app_with(backend, |s| s.audit = audit).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let events = app.event_count().await as u64;
    // Within a few rounds the server has sealed every event and signed a head over them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let heads = loop {
        let heads = if head_file.exists() { read_head_file(&head_file).unwrap() } else { Vec::new() };
        if heads.last().is_some_and(|h| h.seq >= events) {
            break heads;
        }
        assert!(tokio::time::Instant::now() < deadline, "no head over the {events} events was signed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the audit key is readable by its owner only");
    }
    let key = AuditKey::load(&key_file).unwrap();

    // `cardap audit verify` with the head file and the public key, and with the database's heads and the key file.
    let report = verify_audit(&app.settings, Some(&head_file), &[key.public().to_string()]).await.unwrap();
    assert!(report.intact(), "{report}");
    assert!(report.heads.len() >= heads.len());
    let report = verify_audit(&app.settings, None, &[]).await.unwrap();
    assert!(report.intact(), "{report}");
    assert!(report.to_string().contains("signed heads checked"), "{report}");

    // With another key's public half it fails, naming the head.
    let (other, _) = AuditKey::load_or_create(&dir.path().join("other.key")).unwrap();
    let report = verify_audit(&app.settings, Some(&head_file), &[other.public().to_string()]).await.unwrap();
    assert!(matches!(report.verdict, Verdict::Unsigned { .. }), "{report}");
    assert!(report.to_string().contains("UNSIGNED"), "{report}");
}

/// A clerk of 千代田区 who registered a resident and read him `reads` times: rows of the read access log.
async fn reads_on_record(app: &TestApp, reads: usize) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let clerk = cardap_tests::operator_with_password("OP0501", "Passw0rdForAudit", &["clerk"], &[]);
    app.add_operators(&admin, CHIYODA, &clerk).await;
    let clerk = app.login(Some(CHIYODA), "OP0501", "Passw0rdForAudit").await;
    let body = cardap_tests::resident_body("ヤマダ", "タロウ", "4030303");
    let reply = app.post(&cardap_tests::residents_path(CHIYODA), Some(&clerk), &body).await;
    assert_eq!(reply.status, cardap_tests::reqwest::StatusCode::CREATED, "{}", reply.text);
    let path = format!("{}/{}", cardap_tests::residents_path(CHIYODA), reply.json()["resident_id"].as_str().unwrap());
    for _ in 0..reads {
        assert!(app.get(&path, Some(&clerk)).await.status.is_success());
    }
}

/// Seals the read access log (the server's own sealer may do it at the same moment; one of the two wins) until
/// its chain verifies over `rows` rows.
async fn reads_sealed(chain: &AuditChain, rows: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while chain.reads().extend().await.is_err()
        || chain.reads().verify(&[]).await.unwrap() != (ReadsVerdict::Intact { rows })
    {
        assert!(tokio::time::Instant::now() < deadline, "the read access log was not sealed over {rows} rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn every_change_to_the_read_access_log_is_named(backend: Backend) {
    let app = spawn_app(backend).await;
    reads_on_record(&app, 4).await;
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let chain = AuditChain::new(app.state.read.pool().clone(), db.event_store());
    reads_sealed(&chain, 4).await;
    let (_dir, key, head) = signed_head(&chain).await;
    assert_eq!(head.reads_seq, 4);
    let signed = [(head.reads_seq, head.reads_hash.clone())];
    // The log refuses changes by trigger; the database administrator removes that first.
    let unguard = match backend {
        Backend::Postgres => "ALTER TABLE read_access_log DISABLE TRIGGER USER",
        Backend::Sqlite => "DROP TRIGGER read_access_log_no_update",
    };
    tamper(&app, unguard).await;
    if backend == Backend::Sqlite {
        tamper(&app, "DROP TRIGGER read_access_log_no_delete").await;
    }
    let second = "(SELECT seq FROM read_access_log ORDER BY seq LIMIT 1 OFFSET 1)";

    // A row said to have read nobody.
    let residents: String =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT residents FROM read_access_log WHERE seq = {second}")))
            .fetch_one(app.state.read.pool())
            .await
            .unwrap();
    tamper(&app, &format!("UPDATE read_access_log SET residents = '' WHERE seq = {second}")).await;
    let verdict = chain.reads().verify(&signed).await.unwrap();
    assert!(matches!(verdict, ReadsVerdict::Altered { seq: 2, .. }), "{verdict}");
    tamper(&app, &format!("UPDATE read_access_log SET residents = '{residents}' WHERE seq = {second}")).await;
    assert_eq!(chain.reads().verify(&signed).await.unwrap(), ReadsVerdict::Intact { rows: 4 });

    // A row deleted.
    tamper(&app, &format!("DELETE FROM read_access_log WHERE seq = {second}")).await;
    let verdict = chain.reads().verify(&signed).await.unwrap();
    assert!(matches!(verdict, ReadsVerdict::Missing { seq: 2, .. }), "{verdict}");

    // The chain recomputed over what is left: it verifies in itself, not against the signed head.
    tamper(&app, "DELETE FROM read_access_chain").await;
    reads_sealed(&chain, 3).await;
    assert_eq!(chain.reads().verify(&signed).await.unwrap(), ReadsVerdict::Truncated { ends: 3, seq: 4 });
    let report = verify_audit_with(&app, &key).await;
    assert!(!report.intact(), "{report}");
    assert!(report.to_string().contains("read access log TRUNCATED"), "{report}");
}

/// `cardap audit verify` against the heads in the database, with the audit key's public half.
async fn verify_audit_with(app: &TestApp, key: &AuditKey) -> cardap_api::app::AuditReport {
    verify_audit(&app.settings, None, &[key.public().to_string()]).await.unwrap()
}

on_both_backends!(
    an_untouched_log_verifies,
    an_altered_payload_is_named,
    a_deleted_event_is_named,
    two_swapped_events_are_named,
    a_cut_off_tail_is_named,
    a_rewritten_and_rechained_log_is_caught_by_the_signed_head,
    a_tail_cut_off_with_its_links_is_caught_by_the_signed_head,
    a_head_not_signed_by_the_given_key_fails_loudly,
    a_server_signs_heads_into_its_head_file_and_verify_checks_them,
    every_change_to_the_read_access_log_is_named,
);
