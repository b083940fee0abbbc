//! `read_types`: a reader of a few aggregates (a projection) gets exactly their events, and its `scanned` mark
//! moves past the others without ever passing an event whose transaction commits late. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cardap_store::{Checkpoint, Database, EventStore, ExpectedVersion, Metadata, NewEvent, StreamId};
use serde_json::json;
use uuid::Uuid;

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::new("Tested", 1, json!({ "i": i }))).collect()
}

/// Writers on streams of two types, some holding their transaction open before commit (PostgreSQL), while a
/// reader follows only `wanted` through `read_types`, continuing after `scanned` even when a page is empty.
async fn follower_of_one_type(
    store: Arc<dyn EventStore>,
    hold: impl Fn(StreamId, Vec<NewEvent>) -> HoldFut + Send + Sync + 'static,
) {
    let writers = 6;
    let per_writer = 30;
    let hold = Arc::new(hold);
    let mut handles = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let hold = hold.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let kind = if (w + i) % 3 == 0 { "wanted" } else { "other" };
                let s = StreamId::new(kind, &format!("w{w}-s{}", i % 3)).unwrap();
                if i % 4 == 0 {
                    hold(s, events(2)).await;
                } else {
                    store.append(&s, ExpectedVersion::Any, events(2), &Metadata::system()).await.unwrap();
                }
            }
        }));
    }
    let expected: usize = (0..writers).map(|w| (0..per_writer).filter(|i| (w + i) % 3 == 0).count() * 2).sum();

    let reader_store = store.clone();
    let reader = tokio::spawn(async move {
        let mut after = Checkpoint::START;
        let mut seen: HashSet<Uuid> = HashSet::new();
        let mut last_version: HashMap<String, u64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while seen.len() < expected {
            assert!(tokio::time::Instant::now() < deadline, "reader saw only {} of {expected}", seen.len());
            let read = reader_store.read_types(after, 7, &["wanted"]).await.unwrap();
            assert!(read.scanned >= after, "scanned went backwards");
            for e in &read.events {
                assert_eq!(e.stream_type, "wanted");
                assert!(e.checkpoint > after && e.checkpoint <= read.scanned);
                assert!(seen.insert(e.event_id.as_uuid()), "event {} delivered twice", e.event_id);
                let last = last_version.entry(e.stream_id.to_string()).or_insert(0);
                assert_eq!(e.version, *last + 1, "stream {} out of order or with a gap", e.stream_id);
                *last = e.version;
            }
            after = read.scanned;
            if read.events.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (seen.len(), after)
    });
    for h in handles {
        h.await.unwrap();
    }
    let (seen, after) = reader.await.unwrap();
    assert_eq!(seen, expected);
    // Once everything committed, the mark reaches the head and nothing more arrives.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let read = store.read_types(after, 100, &["wanted"]).await.unwrap();
    assert!(read.events.is_empty());
    assert!(read.scanned >= store.head().await.unwrap(), "scanned {} stays below the head", read.scanned);
}

type HoldFut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_follower_of_one_type() {
    let db = Database::connect(&cardap_testkit::fresh_postgres_url().await, 20).await.unwrap();
    db.migrate().await.unwrap();
    let slow = db.postgres_store().unwrap().clone();
    follower_of_one_type(db.event_store(), move |s, e| {
        let slow = slow.clone();
        Box::pin(async move {
            let m = Metadata::system();
            slow.append_and_hold(&s, ExpectedVersion::Any, e, &m, Duration::from_millis(40)).await.unwrap();
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_follower_of_one_type() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::connect(&cardap_testkit::fresh_sqlite_url(dir.path()), 8).await.unwrap();
    db.migrate().await.unwrap();
    let slow = db.sqlite_store().unwrap().clone();
    follower_of_one_type(db.event_store(), move |s, e| {
        let slow = slow.clone();
        Box::pin(async move {
            let m = Metadata::system();
            slow.append_and_hold(&s, ExpectedVersion::Any, e, &m, Duration::from_millis(40)).await.unwrap();
        })
    })
    .await;
}

/// A read that an older open transaction holds back says so (no wake-up comes when that transaction ends, so a
/// projection looks again shortly): an event committed by a later transaction is not returned, `held_back` is
/// set; once the older one commits, both come and nothing is held back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_read_held_back_by_an_older_open_transaction_says_so() {
    let db = Database::connect(&cardap_testkit::fresh_postgres_url().await, 8).await.unwrap();
    db.migrate().await.unwrap();
    let store = db.event_store();
    let slow = db.postgres_store().unwrap().clone();
    let early = StreamId::new("wanted", "early").unwrap();
    let holder = tokio::spawn(async move {
        let m = Metadata::system();
        slow.append_and_hold(&early, ExpectedVersion::Any, events(1), &m, Duration::from_secs(2)).await.unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = StreamId::new("wanted", "late").unwrap();
    store.append(&late, ExpectedVersion::Any, events(1), &Metadata::system()).await.unwrap();

    let read = store.read_types(Checkpoint::START, 100, &["wanted"]).await.unwrap();
    assert!(read.events.is_empty(), "the later commit was read before the earlier transaction ended");
    assert!(read.held_back, "a committed event held back is not said");

    holder.await.unwrap();
    // Transactions of other tests' databases in the same cluster may hold it back a little longer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read = store.read_types(Checkpoint::START, 100, &["wanted"]).await.unwrap();
        if read.events.len() == 2 && !read.held_back {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still held back: {} events", read.events.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
