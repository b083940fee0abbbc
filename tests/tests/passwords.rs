//! A password change is one write: the event, the new hash and the end of the operator's sessions commit together
//! or not at all, however the request is cut off, and a retry of an applied change (same command id) changes
//! nothing. Every test runs on PostgreSQL and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_commands::CommandContext;
use cardap_domain::MunicipalityCode;
use cardap_domain::operator::OperatorId;
use cardap_store::{CommandId, CredentialStore};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::{Backend, on_both_backends, register_clerk, spawn_app};

async fn a_reset_cut_off_at_any_point_happens_whole_or_not_at_all(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = register_clerk(&app.state, "131016", "OP0501").await;
    let code = MunicipalityCode::parse("131016").unwrap();
    let id = OperatorId::parse("OP0501").unwrap();
    let credentials = CredentialStore::new(app.state.read.pool().clone());
    let mut token = clerk.login(&app).await;
    let mut hash = credentials.password_hash(clerk.key).await.unwrap();
    let mut resets = 0;
    let (mut whole, mut none) = (0, 0);
    for attempt in 0..24_u64 {
        let access = app.state.access.clone();
        let (code_c, id_c, key) = (code.clone(), id.clone(), clerk.key);
        let task = tokio::spawn(async move {
            let ctx = CommandContext::system(CommandId::generate());
            access.reset_many(&ctx, &code_c, vec![(id_c, key, None)]).await
        });
        // Cut the request off at a different point each time (hashing, the append, the wait for the views); the
        // last one runs to its end, so both outcomes are seen however fast the machine is.
        if attempt < 23 {
            tokio::time::sleep(Duration::from_millis(attempt * 20)).await;
            task.abort();
        }
        let _ = task.await;
        // An aborted request may still commit a moment later (SQLite's worker thread finishes a COMMIT it was already
        // sent), so read the events and the session between two reads of the hash that agree: all three commit
        // together, so what was read while the hash stood still belongs with that hash.
        let (now_resets, now_hash, me) = loop {
            let before = credentials.password_hash(clerk.key).await.unwrap();
            let events = app.operator_events(Some("131016"), "OP0501").await;
            let me = app.get("/api/v1/me", Some(&token)).await.status;
            let after = credentials.password_hash(clerk.key).await.unwrap();
            if before == after {
                break (events.iter().filter(|e| e.event_type == "OperatorPasswordChanged").count(), after, me);
            }
        };
        if now_resets == resets {
            assert_eq!(now_hash, hash, "attempt {attempt}: no event, yet the hash changed");
            assert_eq!(me, StatusCode::OK, "attempt {attempt}: no event, yet the session ended");
            none += 1;
        } else {
            assert_eq!(now_resets, resets + 1, "attempt {attempt}: one reset, one event");
            assert_ne!(now_hash, hash, "attempt {attempt}: the event was written but the hash is the old one");
            assert_eq!(me, StatusCode::UNAUTHORIZED, "attempt {attempt}: reset, yet his session lives on");
            whole += 1;
            // A fresh session for the next attempt: the generated password is unknown to the test, so set a known
            // one (never a recent one) through the use case.
            let fresh = format!("Fresh{attempt}Passw0rd");
            let ctx = CommandContext::system(CommandId::generate());
            let chosen = Some(app.state.access.acceptable(clerk.key, &fresh).await.unwrap());
            let set = app.state.access.reset_many(&ctx, &code, vec![(id.clone(), clerk.key, chosen)]).await.unwrap();
            assert!(!set[0].replayed);
            token = app.login(Some("131016"), "OP0501", &fresh).await;
            resets = now_resets + 1;
            hash = credentials.password_hash(clerk.key).await.unwrap();
            continue;
        }
        resets = now_resets;
        hash = now_hash;
    }
    assert!(whole > 0 && none > 0, "the cut-offs hit both sides (whole {whole}, none {none})");
}

async fn a_retried_reset_changes_nothing_and_says_so(backend: Backend) {
    let app = spawn_app(backend).await;
    let clerk = register_clerk(&app.state, "131016", "OP0501").await;
    let code = MunicipalityCode::parse("131016").unwrap();
    let id = OperatorId::parse("OP0501").unwrap();
    let credentials = CredentialStore::new(app.state.read.pool().clone());
    let ctx = CommandContext::system(CommandId::generate());
    let first = app.state.access.reset_many(&ctx, &code, vec![(id.clone(), clerk.key, None)]).await.unwrap();
    let password = first[0].generated.clone().expect("a generated password, shown once");
    assert!(!first[0].replayed);
    let hash = credentials.password_hash(clerk.key).await.unwrap();
    let events = app.operator_events(Some("131016"), "OP0501").await.len();

    let again = app.state.access.reset_many(&ctx, &code, vec![(id, clerk.key, None)]).await.unwrap();
    assert!(again[0].replayed, "the retry says it replays");
    assert!(again[0].generated.is_none(), "a generated password is shown once");
    assert_eq!(credentials.password_hash(clerk.key).await.unwrap(), hash, "the retry changed the password");
    assert_eq!(app.operator_events(Some("131016"), "OP0501").await.len(), events);
    app.login(Some("131016"), "OP0501", password.expose()).await;
}

on_both_backends!(
    a_reset_cut_off_at_any_point_happens_whole_or_not_at_all,
    a_retried_reset_changes_nothing_and_says_so
);
