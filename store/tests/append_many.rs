//! Multi-stream appends (`append_many`) beyond the contract suite, on both backends: large batches, stale
//! streams, streams new and old, a stream named twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cardap_store::{
    Checkpoint, CommandId, Database, EventStore, ExpectedVersion, Metadata, NewEvent, ReadFilter, RecordedEvent,
    StoreError, StreamAppend, StreamId,
};
use serde_json::json;
use tempfile::TempDir;

struct Backend {
    store: Arc<dyn EventStore>,
    _dir: Option<TempDir>,
}

async fn postgres() -> Backend {
    let url = cardap_testkit::fresh_postgres_url().await;
    let db = Database::connect(&url, 8).await.unwrap();
    db.migrate().await.unwrap();
    Backend { store: db.event_store(), _dir: None }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = cardap_testkit::fresh_sqlite_url(dir.path());
    let db = Database::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    Backend { store: db.event_store(), _dir: Some(dir) }
}

fn stream(key: &str) -> StreamId {
    StreamId::new("test", key).unwrap()
}

fn events(n: usize, tag: &str) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::new("Tested", 1, json!({ "tag": tag, "i": i }))).collect()
}

fn append(key: &str, expected: ExpectedVersion, n: usize, tag: &str) -> StreamAppend {
    StreamAppend { stream: stream(key), expected, events: events(n, tag) }
}

/// Everything in global order, once every transaction is visible.
async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let head = store.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = all.last().map_or(Checkpoint::START, |e| e.checkpoint);
        if after >= head {
            return all;
        }
        assert!(tokio::time::Instant::now() < deadline, "events up to {head} never became visible");
        let batch = store.read_all(after, 1000, &ReadFilter::All).await.unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        all.extend(batch);
    }
}

fn assert_per_stream_order(all: &[RecordedEvent]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for e in all {
        let v = last.entry(e.stream_id.to_string()).or_insert(0);
        assert_eq!(e.version, *v + 1, "stream {} out of order in the global order", e.stream_id);
        *v = e.version;
    }
}

async fn a_large_batch_with_stale_streams_writes_nothing_and_names_the_first(b: Backend) {
    let m = Metadata::system();
    b.store.append(&stream("a-stale"), ExpectedVersion::Any, events(1, "x"), &m).await.unwrap();
    b.store.append(&stream("z-stale"), ExpectedVersion::Any, events(3, "x"), &m).await.unwrap();
    // 1,000 streams; the stale ones at caller positions 10 ("z-stale") and 900 ("a-stale"): the conflict names
    // the first in the caller's order.
    let batch: Vec<StreamAppend> = (0..1000)
        .map(|i| match i {
            10 => append("z-stale", ExpectedVersion::NoStream, 1, "b"),
            900 => append("a-stale", ExpectedVersion::NoStream, 1, "b"),
            _ => append(&format!("new-{i:04}"), ExpectedVersion::NoStream, 1, "b"),
        })
        .collect();
    match b.store.append_many(batch, &m).await.unwrap_err() {
        StoreError::Conflict { stream: s, expected, actual } => {
            assert_eq!(s, stream("z-stale"));
            assert_eq!(expected, ExpectedVersion::NoStream);
            assert_eq!(actual, 3);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(b.store.read_stream(&stream("new-0000"), 1).await.unwrap().is_empty(), "half a batch was written");
    assert_eq!(read_everything(b.store.as_ref()).await.len(), 4);

    // The same 1,000 new streams without the stale ones go through, in one piece.
    let batch: Vec<StreamAppend> =
        (0..1000).map(|i| append(&format!("new-{i:04}"), ExpectedVersion::NoStream, 1, "b")).collect();
    let outcome = b.store.append_many(batch, &m).await.unwrap();
    assert_eq!(outcome.stream_versions, vec![1; 1000]);
    assert_eq!(b.store.head().await.unwrap(), outcome.checkpoint);
    assert_eq!(read_everything(b.store.as_ref()).await.len(), 1004);
}

async fn a_batch_mixes_new_and_existing_streams(b: Backend) {
    let m = Metadata::system();
    for key in ["e0", "e1", "e2"] {
        b.store.append(&stream(key), ExpectedVersion::NoStream, events(2, "before"), &m).await.unwrap();
    }
    let mut batch_m = Metadata::system();
    batch_m.command_id = Some(CommandId::generate());
    let batch = vec![
        append("n0", ExpectedVersion::NoStream, 1, "batch"),
        append("e0", ExpectedVersion::Exact(2), 2, "batch"),
        append("e1", ExpectedVersion::Any, 1, "batch"),
        append("e2", ExpectedVersion::Exact(2), 0, "batch"),
        append("n1", ExpectedVersion::Any, 3, "batch"),
    ];
    let outcome = b.store.append_many(batch.clone(), &batch_m).await.unwrap();
    assert_eq!(outcome.stream_versions, vec![1, 4, 3, 2, 3]);
    assert!(!outcome.already_applied);
    assert_eq!(b.store.head().await.unwrap(), outcome.checkpoint);

    let again = b.store.append_many(batch, &batch_m).await.unwrap();
    assert!(again.already_applied);
    assert_eq!(again.checkpoint, outcome.checkpoint);

    let all = read_everything(b.store.as_ref()).await;
    assert_eq!(all.len(), 6 + 7);
    assert_per_stream_order(&all);
    assert_eq!(all.last().unwrap().checkpoint, outcome.checkpoint);
    assert!(all[6..].iter().all(|e| e.payload["tag"] == json!("batch")));
    let e0 = b.store.read_stream(&stream("e0"), 1).await.unwrap();
    assert_eq!(
        e0.iter().map(|e| e.payload["tag"].as_str().unwrap()).collect::<Vec<_>>(),
        ["before", "before", "batch", "batch"]
    );
}

async fn a_stream_named_twice_is_appended_in_the_callers_order(b: Backend) {
    let m = Metadata::system();
    let batch = vec![
        append("a", ExpectedVersion::Any, 2, "first"),
        append("b", ExpectedVersion::NoStream, 1, "b"),
        // Counts the events the first entry appends.
        append("a", ExpectedVersion::Exact(2), 1, "second"),
    ];
    let outcome = b.store.append_many(batch, &m).await.unwrap();
    assert_eq!(outcome.stream_versions, vec![2, 1, 3]);
    let a = b.store.read_stream(&stream("a"), 1).await.unwrap();
    assert_eq!(a.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(a.iter().map(|e| e.payload["tag"].as_str().unwrap()).collect::<Vec<_>>(), ["first", "first", "second"]);

    // Both entries expect a new stream: the second is stale once the first has gone in.
    let batch = vec![append("c", ExpectedVersion::NoStream, 1, "c"), append("c", ExpectedVersion::NoStream, 1, "c")];
    match b.store.append_many(batch, &m).await.unwrap_err() {
        StoreError::Conflict { stream: s, actual, .. } => {
            assert_eq!(s, stream("c"));
            assert_eq!(actual, 1);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(b.store.read_stream(&stream("c"), 1).await.unwrap().is_empty());
    assert_per_stream_order(&read_everything(b.store.as_ref()).await);
}

macro_rules! suite {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_large_batch_with_stale_streams_writes_nothing_and_names_the_first() {
                super::a_large_batch_with_stale_streams_writes_nothing_and_names_the_first(super::$backend().await)
                    .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_batch_mixes_new_and_existing_streams() {
                super::a_batch_mixes_new_and_existing_streams(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_stream_named_twice_is_appended_in_the_callers_order() {
                super::a_stream_named_twice_is_appended_in_the_callers_order(super::$backend().await).await;
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
