//! The command path against real stores: retry on concurrent change, If-Match, idempotent retries,
//! authorization before anything is read or written, and domain refusals that write nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cardap_commands::{Actor, AuthzError, CommandContext, CommandError, CommandHandler, Permission};
use cardap_domain::municipality::{
    DisplayOrder, Municipality, MunicipalityCommand, MunicipalityError, MunicipalityKind, MunicipalityName,
};
use cardap_domain::operator::Role;
use cardap_domain::{Aggregate, MunicipalityCode, OperatorKey};
use cardap_store::{Checkpoint, CommandId, Database, EventStore, ReadFilter, StreamId};

struct Backend {
    store: Arc<dyn EventStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn postgres() -> Backend {
    let db = Database::connect(&cardap_testkit::fresh_postgres_url().await, 10).await.unwrap();
    db.migrate().await.unwrap();
    Backend { store: db.event_store(), _dir: None }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&cardap_testkit::fresh_sqlite_url(dir.path()), 4).await.unwrap();
    db.migrate().await.unwrap();
    Backend { store: db.event_store(), _dir: Some(dir) }
}

fn chiyoda() -> MunicipalityCode {
    MunicipalityCode::parse("131016").unwrap()
}

fn stream() -> StreamId {
    StreamId::new(Municipality::STREAM_TYPE, "131016").unwrap()
}

fn admin() -> CommandContext {
    let mut ctx = CommandContext::system(CommandId::generate());
    ctx.actor = Some(Actor {
        operator: OperatorKey::from_uuid(uuid::Uuid::now_v7()),
        municipality: None,
        roles: vec![Role::SystemAdmin],
        business_systems: vec![],
        password_change_required: false,
    });
    ctx
}

fn register() -> MunicipalityCommand {
    MunicipalityCommand::Register {
        code: chiyoda(),
        name: MunicipalityName::parse("千代田区").unwrap(),
        kind: MunicipalityKind::Municipality,
        display_order: DisplayOrder::parse(1).unwrap(),
    }
}

fn rename(name: &str) -> MunicipalityCommand {
    MunicipalityCommand::Change { name: Some(MunicipalityName::parse(name).unwrap()), display_order: None }
}

/// Counts the events once all of them are deliverable (on PostgreSQL, older transactions anywhere in the
/// cluster, such as other tests', hold delivery back for a moment).
async fn event_count(store: &dyn EventStore) -> usize {
    let head = store.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let events = store.read_all(Checkpoint::START, 10_000, &ReadFilter::All).await.unwrap();
        if events.last().map_or(Checkpoint::START, |e| e.checkpoint) >= head {
            return events.len();
        }
        assert!(tokio::time::Instant::now() < deadline, "events up to {head} never became visible");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn execute(
    b: &Backend,
    ctx: &CommandContext,
    if_match: Option<u64>,
    command: MunicipalityCommand,
) -> Result<cardap_commands::Executed<Municipality>, CommandError<MunicipalityError>> {
    CommandHandler::<Municipality>::new(b.store.clone())
        .execute(ctx, &Permission::ManageMunicipalities, &stream(), Some(chiyoda()), if_match, command)
        .await
}

async fn concurrent_changes_are_decided_again_on_the_new_state(b: Backend) {
    execute(&b, &admin(), None, register()).await.unwrap();
    let tasks: Vec<_> = ["一", "二", "三", "四"]
        .into_iter()
        .map(|n| {
            let store = b.store.clone();
            tokio::spawn(async move {
                CommandHandler::<Municipality>::new(store)
                    .execute(&admin(), &Permission::ManageMunicipalities, &stream(), Some(chiyoda()), None, rename(n))
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let loaded = CommandHandler::<Municipality>::new(b.store.clone()).load(&stream()).await.unwrap();
    assert_eq!(loaded.version, 5, "every concurrent rename must land exactly once");
}

async fn a_stale_if_match_is_refused(b: Backend) {
    execute(&b, &admin(), None, register()).await.unwrap();
    execute(&b, &admin(), Some(1), rename("新千代田区")).await.unwrap();
    let err = execute(&b, &admin(), Some(1), rename("旧千代田区")).await.unwrap_err();
    assert!(matches!(err, CommandError::PreconditionFailed { expected: 1, current: 2 }), "{err:?}");
    assert_eq!(event_count(b.store.as_ref()).await, 2);
}

async fn a_retried_command_is_applied_once(b: Backend) {
    let ctx = admin();
    let first = execute(&b, &ctx, None, register()).await.unwrap();
    let again = execute(&b, &ctx, None, register()).await.unwrap();
    assert_eq!(first.events.len(), 1);
    assert!(again.events.is_empty(), "a retry must not decide again");
    assert_eq!(again.version, 1);
    assert_eq!(event_count(b.store.as_ref()).await, 1);
}

async fn authorization_comes_first_and_writes_nothing(b: Backend) {
    let mut clerk = admin();
    clerk.actor = Some(Actor {
        operator: OperatorKey::from_uuid(uuid::Uuid::now_v7()),
        municipality: Some(chiyoda()),
        roles: vec![Role::Clerk],
        business_systems: vec![],
        password_change_required: false,
    });
    let err = execute(&b, &clerk, None, register()).await.unwrap_err();
    assert!(matches!(err, CommandError::Unauthorized(AuthzError::Forbidden)), "{err:?}");
    assert_eq!(event_count(b.store.as_ref()).await, 0);
}

async fn a_domain_refusal_writes_nothing(b: Backend) {
    execute(&b, &admin(), None, register()).await.unwrap();
    let err = execute(&b, &admin(), None, register()).await.unwrap_err();
    assert!(matches!(err, CommandError::Domain(MunicipalityError::AlreadyRegistered)), "{err:?}");
    assert_eq!(event_count(b.store.as_ref()).await, 1);
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_changes_are_decided_again_on_the_new_state() {
                super::concurrent_changes_are_decided_again_on_the_new_state(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_stale_if_match_is_refused() {
                super::a_stale_if_match_is_refused(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_retried_command_is_applied_once() {
                super::a_retried_command_is_applied_once(super::$backend().await).await;
            }
            #[tokio::test]
            async fn authorization_comes_first_and_writes_nothing() {
                super::authorization_comes_first_and_writes_nothing(super::$backend().await).await;
            }
            #[tokio::test]
            async fn a_domain_refusal_writes_nothing() {
                super::a_domain_refusal_writes_nothing(super::$backend().await).await;
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
