//! Read models rebuilt while the server answers, and built by another process.
//!
//! A blue/green rebuild builds the new version of a read model beside the live one: clerks searching meanwhile
//! always get full answers (a rebuild in place would show them an empty or half-built register), writes made
//! during the rebuild are in the new version, and once switched it answers exactly what the old one did. A server
//! started with `projections.runners = "elsewhere"` builds no read model itself: the runners of another process
//! (what `cardap project` runs) do, and the server's read-your-writes and `/readyz` follow their progress. Every
//! test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cardap_api::settings::ProjectionRunners;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, card_path, cards_path, eventually, on_both_backends, resident_body, resident_path,
    residents_path, spawn_app, spawn_app_with,
};

const CHIYODA: &str = "131016";
/// Residents named ヤマダ registered before the rebuild.
const YAMADA: usize = 60;

/// Registers a resident; returns his id.
async fn register(app: &TestApp, token: &str, family: &str, given: &str, birth: &str) -> String {
    let reply = app.post(&residents_path(CHIYODA), Some(token), &resident_body(family, given, birth)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.json()["resident_id"].as_str().unwrap().to_owned()
}

/// Every page of a listing, items in order.
async fn everything(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit=7&cursor={c}"),
            None => format!("{path}{sep}limit=7"),
        };
        let page = app.get(&url, Some(token)).await;
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.text);
        let page = page.json();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// What a clerk sees: every resident (listed, and each one shown) and every card.
async fn what_the_clerk_sees(app: &TestApp, token: &str) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let residents = everything(app, token, &residents_path(CHIYODA)).await;
    let mut shown = Vec::new();
    for r in &residents {
        let reply = app.get(&resident_path(CHIYODA, r["resident_id"].as_str().unwrap()), Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        shown.push(reply.json());
    }
    let mut cards = Vec::new();
    for fid in shown.iter().filter_map(|r| r["active_fid"].as_str()) {
        let reply = app.get(&card_path(CHIYODA, fid), Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        cards.push(reply.json());
    }
    (residents, shown, cards)
}

/// Asserts two listings hold the same items, naming only what differs (a page is sorted by kana name within its
/// id range, so residents added between them may reorder the items across pages).
fn same(after: &[Value], before: &[Value], what: &str) {
    let only = |a: &[Value], b: &[Value]| a.iter().filter(|x| !b.contains(x)).cloned().collect::<Vec<_>>();
    let (gone, new) = (only(before, after), only(after, before));
    assert!(gone.is_empty() && new.is_empty(), "{what}: before only {gone:#?}\nafter only {new:#?}");
    assert_eq!(after.len(), before.len(), "{what}: an item twice");
}

async fn a_blue_green_rebuild_keeps_answering_and_ends_equal(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let kana = ["アイ", "イチロウ", "ウメ", "エミ", "オサム", "カナ", "キヨシ", "クミ", "ケン", "コウ"];
    let mut ids = Vec::new();
    for i in 0..YAMADA {
        ids.push(register(&app, &admin, "ヤマダ", kana[i % kana.len()], &format!("34501{:02}", i % 28 + 1)).await);
    }
    for (i, id) in ids.iter().take(5).enumerate() {
        let card = app
            .post(&cards_path(CHIYODA), Some(&admin), &json!({"fid": format!("FID{i:04}"), "resident_id": id}))
            .await;
        assert_eq!(card.status, StatusCode::CREATED, "{}", card.text);
    }
    let before = what_the_clerk_sees(&app, &admin).await;
    let indexes_before = indexes(&app, backend).await;
    assert_eq!(before.0.len(), YAMADA);
    assert_eq!(before.2.len(), 5);

    // Clerks keep searching and opening residents while every read model is rebuilt; another keeps registering.
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let searchers: Vec<_> = (0..3)
        .map(|_| {
            let (app, admin, done, reads, first) =
                (app.clone(), admin.clone(), done.clone(), reads.clone(), ids[0].clone());
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    let found = app
                        .get(&format!("{}?kana_prefix=ヤマダ&limit=100", residents_path(CHIYODA)), Some(&admin))
                        .await;
                    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
                    let n = found.json()["items"].as_array().unwrap().len();
                    assert_eq!(n, YAMADA, "a search during the rebuild found {n} of {YAMADA} residents");
                    let shown = app.get(&resident_path(CHIYODA, &first), Some(&admin)).await;
                    assert_eq!(shown.status, StatusCode::OK, "a resident vanished during the rebuild: {}", shown.text);
                    reads.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let writer = {
        let (app, admin, done) = (app.clone(), admin.clone(), done.clone());
        tokio::spawn(async move {
            let mut written = Vec::new();
            while !done.load(Ordering::SeqCst) || written.is_empty() {
                written.push(register(&app, &admin, "スズキ", "ハナコ", "4010203").await);
            }
            written
        })
    };
    let read = app.state.read.clone();
    for projection in read.projections().iter().map(|p| p.name()).collect::<Vec<_>>() {
        let rebuilt = read.rebuild(app.state.store.clone(), projection).await.expect("a projection").unwrap();
        assert!(rebuilt.reached > cardap_store::Checkpoint::START, "{projection}: {rebuilt:?}");
    }
    done.store(true, Ordering::SeqCst);
    for searcher in searchers {
        searcher.await.expect("every answer during the rebuild was complete");
    }
    let written = writer.await.unwrap();
    assert!(reads.load(Ordering::SeqCst) > 0, "the clerks searched while it was rebuilt");

    // Nothing was lost: what was written during the rebuild is there, and the rest is exactly as before.
    let suzuki = everything(&app, &admin, &format!("{}?kana_prefix=スズキ", residents_path(CHIYODA))).await;
    let mut found: Vec<&str> = suzuki.iter().map(|r| r["resident_id"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = written.iter().map(String::as_str).collect();
    found.sort_unstable();
    expected.sort_unstable();
    assert_eq!(found, expected, "the residents registered during the rebuild");
    let after = what_the_clerk_sees(&app, &admin).await;
    let old = |list: &[Value]| -> Vec<Value> {
        list.iter().filter(|r| !written.iter().any(|w| r["resident_id"] == w.as_str())).cloned().collect()
    };
    same(&old(&after.0), &before.0, "the resident list");
    same(&old(&after.1), &before.1, "each resident as shown");
    same(&after.2, &before.2, "the cards");
    // The indexes and keys a rebuild creates only after loading the rows (the search's) are all there again.
    assert_eq!(indexes(&app, backend).await, indexes_before, "the read models' indexes after the rebuild");

    // The server's own runners go on over the new version.
    let late = register(&app, &admin, "タナカ", "ジロウ", "3450101").await;
    let shown = app.get(&resident_path(CHIYODA, &late), Some(&admin)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);

    // Nothing of the build is left beside the live read models.
    if backend == Backend::Postgres {
        let pool = sqlx::PgPool::connect(&app.settings.database_url).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'cardap_rebuild%'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 0, "a rebuild schema is left");
        // Built unlogged for speed, the read models switched to are durable (they survive a crash of PostgreSQL).
        let unlogged: Vec<String> = sqlx::query_scalar(
            "SELECT relname::text FROM pg_class WHERE relpersistence = 'u' AND relnamespace = current_schema()::regnamespace",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(unlogged.is_empty(), "read models left unlogged: {unlogged:?}");
    } else {
        let url = &app.settings.database_url;
        let file = std::path::PathBuf::from(url.trim_start_matches("sqlite://").split('?').next().unwrap());
        let dir = file.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".rebuild-"))
            .collect();
        assert!(left.is_empty(), "rebuild files left: {left:?}");
    }
}

/// Every index of the live schema (PostgreSQL) or the database (SQLite) with its definition.
async fn indexes(app: &TestApp, backend: Backend) -> Vec<(String, String)> {
    let url = &app.settings.database_url;
    if backend == Backend::Postgres {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_as(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_as("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type = 'index' ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap()
    }
}

/// Starts the runners of another process (what `cardap project` runs) on the server's database.
fn project(app: &TestApp) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runners = app.state.read.runners(app.state.store.clone());
    (stop, runners.into_iter().map(|r| tokio::spawn(r.run(stopped.clone()))).collect())
}

async fn a_server_whose_read_models_are_built_elsewhere_follows_them(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.projection_runners = ProjectionRunners::Elsewhere).await;
    let search = format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA));
    let listed = |found: &Value, id: &str| found["items"].as_array().unwrap().iter().any(|r| r["resident_id"] == id);

    // Another process builds the read models; this server's read-your-writes follows its progress.
    let (stop, runners) = project(&app);
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let first = register(&app, &admin, "ヤマダ", "タロウ", "3450101").await;
    let found = app.get(&search, Some(&admin)).await.json();
    assert!(listed(&found, &first), "{found}");
    let _ = stop.send(true);
    for runner in runners {
        runner.await.unwrap();
    }

    // That process stopped: the write is accepted, the register does not show it, and /readyz says so.
    let second = register(&app, &admin, "ヤマダ", "ハナコ", "3450102").await;
    let found = app.get(&search, Some(&admin)).await.json();
    assert!(!listed(&found, &second), "this server built a read model itself: {found}");
    let ready = app.get("/readyz", None).await.json();
    let residents = ready["projections"].as_array().unwrap().iter().find(|p| p["name"] == "residents").unwrap().clone();
    assert!(residents["behind"].as_u64().unwrap() > 0, "{ready}");

    // It comes back: the server shows what it built, and every read model caught up.
    let (stop, runners) = project(&app);
    eventually(Duration::from_secs(30), "the second resident is listed", || {
        let (get, second) = (app.get(&search, Some(&admin)), second.clone());
        async move { listed(&get.await.json(), &second).then_some(()) }
    })
    .await;
    eventually(Duration::from_secs(30), "/readyz shows every read model caught up", || {
        let get = app.get("/readyz", None);
        async move {
            let ready = get.await.json();
            ready["projections"].as_array().unwrap().iter().all(|p| p["behind"] == 0).then_some(())
        }
    })
    .await;
    let _ = stop.send(true);
    for runner in runners {
        runner.await.unwrap();
    }
}

on_both_backends!(
    a_blue_green_rebuild_keeps_answering_and_ends_equal,
    a_server_whose_read_models_are_built_elsewhere_follows_them
);
