//! Long streams are read from their snapshot: an operator's login record gets one event per failed login for as
//! long as anyone guesses, and every one stays on record, but a login decision folds only the events after the
//! last snapshot (issue: failed logins must not make every later login slower). Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cardap_commands::access::login_stream;
use cardap_commands::engine::{Tx, transact};
use cardap_commands::{CommandContext, CommandError, Permission};
use cardap_domain::operator::{LockoutPolicy, LoginCommand, OperatorError, OperatorEvent, OperatorId, OperatorLogins};
use cardap_domain::{Aggregate, MunicipalityCode, Snapshotted, Timestamp};
use cardap_store::{
    AppendOutcome, BatchOutcome, Checkpoint, CommandId, Companion, EventStore, ExpectedVersion, Metadata, NewEvent,
    ReadFilter, RecordedEvent, Snapshot, StoreError, StoreHealth, StreamAppend, StreamId, TypedRead, Wakeups,
};

/// A store that counts the events `read_stream` hands out (what a decision folds).
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn EventStore>,
    read: AtomicUsize,
}

#[async_trait]
impl EventStore for Counting {
    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        metadata: &Metadata,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner.append(stream, expected, events, metadata).await
    }
    async fn append_with(
        &self,
        appends: Vec<StreamAppend>,
        companions: Vec<Companion>,
        metadata: &Metadata,
    ) -> Result<BatchOutcome, StoreError> {
        self.inner.append_with(appends, companions, metadata).await
    }
    async fn command_outcome(&self, command: CommandId) -> Result<Option<AppendOutcome>, StoreError> {
        self.inner.command_outcome(command).await
    }
    async fn read_stream(&self, stream: &StreamId, from_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(stream, from_version).await?;
        self.read.fetch_add(events.len(), Ordering::SeqCst);
        Ok(events)
    }
    async fn snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.inner.snapshot(stream).await
    }
    async fn save_snapshot(&self, stream: &StreamId, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(stream, snapshot).await
    }
    async fn read_all(
        &self,
        after: Checkpoint,
        limit: usize,
        filter: &ReadFilter,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit, filter).await
    }
    async fn read_types(
        &self,
        after: Checkpoint,
        limit: usize,
        stream_types: &[&'static str],
    ) -> Result<TypedRead, StoreError> {
        self.inner.read_types(after, limit, stream_types).await
    }
    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.inner.head().await
    }
    fn wakeups(&self) -> Wakeups {
        self.inner.wakeups()
    }
    async fn health(&self) -> Result<StoreHealth, StoreError> {
        self.inner.health().await
    }
}

/// One login fact through the engine, the way `Access` records it; the events it appended.
async fn record(store: &Arc<dyn EventStore>, stream: &StreamId, command: LoginCommand) -> Vec<OperatorEvent> {
    let ctx = CommandContext::system(CommandId::generate());
    let command = &command;
    let done = transact(&store.clone(), &ctx, &[Permission::ChangeOwnPassword], None, |mut tx: Tx| async move {
        let login = tx.load_snapshotted::<OperatorLogins, OperatorError>(stream).await?;
        let events = login.state.decide(command.clone()).map_err(CommandError::Domain)?;
        tx.append_snapshotted::<OperatorLogins>(stream, &login, &events);
        Ok((events, tx))
    })
    .await
    .unwrap();
    done.value.unwrap()
}

async fn a_long_login_record_is_read_from_its_snapshot(store: Arc<dyn EventStore>) {
    let counting = Arc::new(Counting { inner: store, read: AtomicUsize::new(0) });
    let store: Arc<dyn EventStore> = counting.clone();
    let stream = login_stream(Some(&MunicipalityCode::parse("131016").unwrap()), &OperatorId::parse("OP0501").unwrap());
    // Given: an attacker's 200 guesses, each lock sitting out its time (the clock moves 16 minutes per round).
    let policy = LockoutPolicy::default();
    let mut at = Timestamp::from_unix(1_700_000_000);
    for _ in 0..40 {
        for _ in 0..policy.max_failures {
            record(&store, &stream, LoginCommand::RecordFailure { at, policy }).await;
        }
        at = at.plus_seconds(16 * 60);
    }
    let history = store.read_stream(&stream, 1).await.unwrap();
    let failures = history.iter().filter(|e| e.event_type == "OperatorLoginFailed").count();
    assert_eq!(failures, 200, "every failure stays on record for the auditors");

    // When: the operator logs in with the right password.
    counting.read.store(0, Ordering::SeqCst);
    let events = record(&store, &stream, LoginCommand::RecordLogin { at }).await;

    // Then: the decision folded fewer events than a snapshot interval, not the whole history, and decided as the
    // whole history would have.
    let read = counting.read.load(Ordering::SeqCst);
    assert!(read < OperatorLogins::SNAPSHOT_EVERY as usize, "a login folded {read} of {} events", history.len());
    let whole = OperatorLogins::fold(&history.iter().map(|e| e.decode::<OperatorEvent>().unwrap()).collect::<Vec<_>>());
    assert_eq!(events, whole.decide(LoginCommand::RecordLogin { at }).unwrap());
}

async fn a_snapshot_of_another_shape_is_ignored(store: Arc<dyn EventStore>) {
    let stream = login_stream(None, &OperatorId::parse("admin").unwrap());
    let policy = LockoutPolicy::default();
    let at = Timestamp::from_unix(1_700_000_000);
    for _ in 0..3 {
        record(&store, &stream, LoginCommand::RecordFailure { at, policy }).await;
    }
    // A snapshot claiming a lock, in a shape this version does not know (as an older or newer cardap wrote it).
    let state = serde_json::json!({
        "failures_in_row": 0, "lockouts": 1, "locked": true, "locked_until": null, "last_login_at": null
    });
    let foreign = Snapshot { kind: "operator_login/0".into(), version: 3, state };
    store.save_snapshot(&stream, &foreign).await.unwrap();
    // The fold from the start decides: three failures, no lock, so a login goes through.
    let events = record(&store, &stream, LoginCommand::RecordLogin { at }).await;
    assert!(matches!(events.as_slice(), [OperatorEvent::LoggedIn { .. }]), "{events:?}");
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres { $(
            #[tokio::test]
            async fn $name() {
                let db = cardap_store::Database::connect(&cardap_testkit::fresh_postgres_url().await, 10).await.unwrap();
                db.migrate().await.unwrap();
                super::$name(db.event_store()).await;
            }
        )* }
        mod sqlite { $(
            #[tokio::test]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                let db = cardap_store::Database::connect(&cardap_testkit::fresh_sqlite_url(dir.path()), 4).await.unwrap();
                db.migrate().await.unwrap();
                super::$name(db.event_store()).await;
            }
        )* }
    };
}

on_both_backends!(a_long_login_record_is_read_from_its_snapshot, a_snapshot_of_another_shape_is_ignored);
