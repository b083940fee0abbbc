//! The projection runner against real databases: views follow the log, a restarted runner resumes from its
//! stored checkpoint without applying anything twice, two runners of one projection (two nodes) build one
//! correct view, and a rebuild reproduces the same rows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cardap_commands::{CommandContext, CommandHandler, Permission};
use cardap_domain::municipality::{
    DisplayOrder, Municipality, MunicipalityCommand, MunicipalityKind, MunicipalityName,
};
use cardap_domain::{Aggregate, MunicipalityCode};
use cardap_projections::ReadModels;
use cardap_projections::municipalities::{self, MunicipalityRow, Visible};
use cardap_store::{Checkpoint, CommandId, Database, EventStore, StreamId};

/// The event store as the server has it: personal data sealed under the subjects' keys, which the read models
/// open with the same vault.
async fn sealed(db: &Database) -> (Arc<dyn EventStore>, Arc<cardap_store::KeyVault>) {
    let vault = db.key_vault(cardap_store::MasterKey::generate().unwrap()).unwrap();
    (Arc::new(cardap_store::SealedEventStore::new(db.event_store(), vault.clone())), vault)
}

struct Backend {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    _dir: Option<tempfile::TempDir>,
}

async fn postgres() -> Backend {
    let url = cardap_testkit::fresh_postgres_url().await;
    let db = Database::connect(&url, 10).await.unwrap();
    db.migrate().await.unwrap();
    let (store, vault) = sealed(&db).await;
    Backend { store, read: ReadModels::connect(&url, 5, vault).unwrap(), _dir: None }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = cardap_testkit::fresh_sqlite_url(dir.path());
    let db = Database::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let (store, vault) = sealed(&db).await;
    Backend { store, read: ReadModels::connect(&url, 4, vault).unwrap(), _dir: Some(dir) }
}

/// Registers `n` municipalities (valid codes 13xxx + check digit) and renames every other one.
async fn write_history(store: &Arc<dyn EventStore>, n: u32) -> Checkpoint {
    let mut last = Checkpoint::START;
    for i in 0..n {
        let prefix = format!("13{:03}", 101 + i);
        let digits: Vec<u32> = prefix.chars().map(|c| c.to_digit(10).unwrap()).collect();
        let s: u32 = digits.iter().zip([6, 5, 4, 3, 2]).map(|(d, w)| d * w).sum();
        let code = MunicipalityCode::parse(&format!("{prefix}{}", (11 - s % 11) % 10)).unwrap();
        let stream = StreamId::new(Municipality::STREAM_TYPE, code.as_str()).unwrap();
        let handler = CommandHandler::<Municipality>::new(store.clone());
        let ctx = || CommandContext::system(CommandId::generate());
        let register = MunicipalityCommand::Register {
            code: code.clone(),
            name: MunicipalityName::parse(&format!("区{i}")).unwrap(),
            kind: MunicipalityKind::Municipality,
            display_order: DisplayOrder::parse(i64::from(n - i)).unwrap(),
        };
        let done =
            handler.execute(&ctx(), &Permission::ListMunicipalities, &stream, Some(code.clone()), None, register).await;
        last = done.unwrap().outcome.unwrap().checkpoint;
        if i % 2 == 0 {
            let rename = MunicipalityCommand::Change {
                name: Some(MunicipalityName::parse(&format!("新区{i}")).unwrap()),
                display_order: None,
            };
            let done =
                handler.execute(&ctx(), &Permission::ListMunicipalities, &stream, Some(code), None, rename).await;
            last = done.unwrap().outcome.unwrap().checkpoint;
        }
    }
    last
}

async fn rows(read: &ReadModels) -> Vec<MunicipalityRow> {
    municipalities::list(read.pool(), &Visible::All, None, 1000, true).await.unwrap()
}

async fn a_running_view_follows_the_log(b: Backend) {
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let runner = b.read.runners(b.store.clone()).remove(0);
    let mut progress = runner.progress();
    let task = tokio::spawn(runner.run(stop_rx));
    let last = write_history(&b.store, 6).await;
    progress.wait_for(last, Duration::from_secs(10)).await.unwrap();
    let rows = rows(&b.read).await;
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].display_order, 1, "listed in display order");
    assert!(rows.iter().filter(|r| r.name.starts_with("新")).count() == 3);
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("runner stops on shutdown").unwrap();
}

async fn a_restarted_runner_resumes_without_applying_twice(b: Backend) {
    write_history(&b.store, 3).await;
    b.read.catch_up(b.store.clone()).await.unwrap();
    write_history_more(&b.store).await;
    // A fresh runner (a restarted node) continues from the stored checkpoint: re-applying a registration
    // would fail on the primary key, so success means nothing was applied twice.
    b.read.catch_up(b.store.clone()).await.unwrap();
    assert_eq!(rows(&b.read).await.len(), 4);
}

async fn write_history_more(store: &Arc<dyn EventStore>) {
    let code = MunicipalityCode::parse("011002").unwrap();
    let stream = StreamId::new(Municipality::STREAM_TYPE, code.as_str()).unwrap();
    let register = MunicipalityCommand::Register {
        code: code.clone(),
        name: MunicipalityName::parse("札幌市").unwrap(),
        kind: MunicipalityKind::Municipality,
        display_order: DisplayOrder::parse(99).unwrap(),
    };
    CommandHandler::<Municipality>::new(store.clone())
        .execute(
            &CommandContext::system(CommandId::generate()),
            &Permission::ListMunicipalities,
            &stream,
            Some(code),
            None,
            register,
        )
        .await
        .unwrap();
}

/// Two runners of the first projection (two nodes) catching up at once.
async fn race_two_runners(b: &Backend) {
    let a = b.read.runners(b.store.clone()).remove(0);
    let c = b.read.runners(b.store.clone()).remove(0);
    let (ra, rc) = tokio::join!(a.catch_up(), c.catch_up());
    ra.unwrap();
    rc.unwrap();
}

async fn two_nodes_running_one_projection_build_one_view(b: Backend) {
    write_history(&b.store, 20).await;
    race_two_runners(&b).await;
    let rows = rows(&b.read).await;
    assert_eq!(rows.len(), 20);
    assert_eq!(rows.iter().filter(|r| r.version == 2).count(), 10);
}

/// A backlog of several batches: the runner reads the next batch while it applies one; two runners racing over
/// it drop what they read ahead once the other has moved the checkpoint.
async fn a_backlog_of_several_batches_is_applied_once(b: Backend) {
    write_history(&b.store, 700).await;
    race_two_runners(&b).await;
    let rows = rows(&b.read).await;
    assert_eq!(rows.len(), 700, "every registration of 1,050 events");
    assert_eq!(rows.iter().filter(|r| r.version == 2).count(), 350, "every rename, after its registration");
    assert!(rows.iter().filter(|r| r.version == 2).all(|r| r.name.starts_with('新')));
}

async fn a_rebuild_reproduces_the_same_rows(b: Backend) {
    write_history(&b.store, 8).await;
    b.read.catch_up(b.store.clone()).await.unwrap();
    let before = rows(&b.read).await;
    let runner = b.read.runners(b.store.clone()).remove(0);
    runner.reset().await.unwrap();
    assert!(rows(&b.read).await.is_empty(), "reset empties the view");
    runner.catch_up().await.unwrap();
    assert_eq!(rows(&b.read).await, before);
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_running_view_follows_the_log() {
                super::a_running_view_follows_the_log(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_restarted_runner_resumes_without_applying_twice() {
                super::a_restarted_runner_resumes_without_applying_twice(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_nodes_running_one_projection_build_one_view() {
                super::two_nodes_running_one_projection_build_one_view(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_backlog_of_several_batches_is_applied_once() {
                super::a_backlog_of_several_batches_is_applied_once(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_rebuild_reproduces_the_same_rows() {
                super::a_rebuild_reproduces_the_same_rows(super::$backend().await).await;
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
