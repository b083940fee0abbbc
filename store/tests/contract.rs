//! The event store contract: one suite, run against PostgreSQL and SQLite alike.
//!
//! Every test is written once against `Arc<dyn EventStore>`; the `contract!` macro at the bottom instantiates
//! the suite for each backend on a fresh, migrated database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use cardap_domain::{MunicipalityCode, OperatorKey};
use cardap_store::{
    Checkpoint, CommandId, CorrelationId, Database, EventStore, ExpectedVersion, Metadata, NewEvent,
    PostgresEventStore, ReadFilter, SqliteEventStore, StoreError, StoredEvent, StreamAppend, StreamId,
};
use futures_util::TryStreamExt;
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

/// A connected, migrated backend, plus what the stress test needs to simulate a slow writer.
struct Backend {
    store: Arc<dyn EventStore>,
    slow: SlowWriter,
    _dir: Option<TempDir>,
}

enum SlowWriter {
    Postgres(PostgresEventStore),
    Sqlite(SqliteEventStore),
}

impl SlowWriter {
    async fn append_and_hold(&self, stream: &StreamId, events: Vec<NewEvent>, hold: Duration) {
        let m = Metadata::system();
        match self {
            SlowWriter::Postgres(s) => s.append_and_hold(stream, ExpectedVersion::Any, events, &m, hold).await,
            SlowWriter::Sqlite(s) => s.append_and_hold(stream, ExpectedVersion::Any, events, &m, hold).await,
        }
        .unwrap();
    }
}

async fn postgres() -> Backend {
    let url = cardap_testkit::fresh_postgres_url().await;
    let db = Database::connect(&url, 20).await.unwrap();
    db.migrate().await.unwrap();
    let slow = db.postgres_store().unwrap().clone();
    Backend { store: db.event_store(), slow: SlowWriter::Postgres(slow), _dir: None }
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = cardap_testkit::fresh_sqlite_url(dir.path());
    let db = Database::connect(&url, 8).await.unwrap();
    db.migrate().await.unwrap();
    let slow = db.sqlite_store().unwrap().clone();
    Backend { store: db.event_store(), slow: SlowWriter::Sqlite(slow), _dir: Some(dir) }
}

fn stream(key: &str) -> StreamId {
    StreamId::new("test", key).unwrap()
}

fn events(n: usize, tag: &str) -> Vec<NewEvent> {
    (0..n).map(|i| NewEvent::new("Tested", 1, json!({ "tag": tag, "i": i }))).collect()
}

fn code(s: &str) -> MunicipalityCode {
    MunicipalityCode::parse(s).unwrap()
}

fn metadata_for(municipality: Option<&str>, operator: Option<OperatorKey>) -> Metadata {
    Metadata {
        command_id: None,
        correlation_id: CorrelationId::generate(),
        causation_id: None,
        municipality: municipality.map(code),
        operator,
        terminal: Some("窓口-01".into()),
        request_id: Some("req-1".into()),
    }
}

/// Waits until everything appended so far is deliverable. On PostgreSQL delivery waits for every older
/// transaction in the cluster, and other tests run in other databases of the same cluster meanwhile.
async fn wait_until_visible(store: &dyn EventStore) {
    let head = store.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut after = Checkpoint::START;
    while after < head {
        assert!(tokio::time::Instant::now() < deadline, "events up to {head} never became visible");
        match store.read_all(after, 1000, &ReadFilter::All).await.unwrap().last() {
            Some(last) => after = last.checkpoint,
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn read_everything(store: &dyn EventStore, filter: &ReadFilter) -> Vec<cardap_store::RecordedEvent> {
    wait_until_visible(store).await;
    let mut all = Vec::new();
    let mut after = Checkpoint::START;
    loop {
        let batch = store.read_all(after, 7, filter).await.unwrap();
        let Some(last) = batch.last() else { return all };
        after = last.checkpoint;
        all.extend(batch);
    }
}

async fn appends_and_reads_back_in_order(b: Backend) {
    let s = stream("a");
    let operator = OperatorKey::from_uuid(Uuid::now_v7());
    let metadata = metadata_for(Some("131016"), Some(operator));
    assert_eq!(b.store.head().await.unwrap(), Checkpoint::START, "an empty store's head is the start");
    let new = events(3, "x");
    let outcome = b.store.append(&s, ExpectedVersion::NoStream, new.clone(), &metadata).await.unwrap();
    assert_eq!(outcome.stream_version, 3);
    assert!(!outcome.already_applied);

    let read = b.store.read_stream(&s, 1).await.unwrap();
    assert_eq!(read.len(), 3);
    for (i, (r, n)) in read.iter().zip(&new).enumerate() {
        assert_eq!(r.version, i as u64 + 1);
        assert_eq!(r.event_id, n.event_id);
        assert_eq!(r.event_type, "Tested");
        assert_eq!(r.event_version, 1);
        assert_eq!(r.payload, n.payload);
        assert_eq!(r.stream_type, "test");
        assert_eq!(r.metadata, metadata);
    }
    assert_eq!(read[2].checkpoint, outcome.checkpoint);
    assert_eq!(b.store.head().await.unwrap(), outcome.checkpoint);
    assert!(read[0].checkpoint < read[1].checkpoint && read[1].checkpoint < read[2].checkpoint);

    let from_two = b.store.read_stream(&s, 2).await.unwrap();
    assert_eq!(from_two.iter().map(|e| e.version).collect::<Vec<_>>(), vec![2, 3]);
    assert!(b.store.read_stream(&stream("missing"), 1).await.unwrap().is_empty());
}

/// Several whole streams in one read: every event of each asked stream, in version order within it, nothing of
/// another stream, and nothing for a stream that does not exist.
async fn read_streams_gives_each_stream_whole_and_in_order(b: Backend) {
    let m = Metadata::system();
    for (key, n) in [("a", 3), ("b", 2), ("c", 4)] {
        b.store.append(&stream(key), ExpectedVersion::NoStream, events(n, key), &m).await.unwrap();
    }
    b.store.append(&stream("a"), ExpectedVersion::Exact(3), events(1, "a"), &m).await.unwrap();
    let asked = [stream("c"), stream("a"), stream("missing")];
    let read = b.store.read_streams(&asked).await.unwrap();
    let mut by_stream: HashMap<String, Vec<u64>> = HashMap::new();
    for e in &read {
        by_stream.entry(e.stream_id.to_string()).or_default().push(e.version);
    }
    assert_eq!(by_stream.len(), 2, "{by_stream:?}");
    assert_eq!(by_stream[stream("a").as_str()], [1, 2, 3, 4]);
    assert_eq!(by_stream[stream("c").as_str()], [1, 2, 3, 4]);
    for e in &read {
        let one = b.store.read_stream(&e.stream_id, e.version).await.unwrap();
        assert_eq!(one.first(), Some(e), "the same event as read_stream gives");
    }
    assert!(b.store.read_streams(&[]).await.unwrap().is_empty());
}

async fn expected_version_mismatch_is_a_conflict_and_writes_nothing(b: Backend) {
    let s = stream("b");
    let m = Metadata::system();
    b.store.append(&s, ExpectedVersion::NoStream, events(2, "first"), &m).await.unwrap();

    let err = b.store.append(&s, ExpectedVersion::NoStream, events(1, "no"), &m).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 2, .. }), "{err:?}");
    let err = b.store.append(&s, ExpectedVersion::Exact(1), events(1, "no"), &m).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 2, .. }), "{err:?}");
    let err = b.store.append(&s, ExpectedVersion::Exact(5), events(1, "no"), &m).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 2, .. }), "{err:?}");
    let err = b.store.append(&stream("new"), ExpectedVersion::Exact(1), events(1, "no"), &m).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { actual: 0, .. }), "{err:?}");

    assert_eq!(b.store.read_stream(&s, 1).await.unwrap().len(), 2);
    assert_eq!(read_everything(b.store.as_ref(), &ReadFilter::All).await.len(), 2);

    let ok = b.store.append(&s, ExpectedVersion::Exact(2), events(1, "yes"), &m).await.unwrap();
    assert_eq!(ok.stream_version, 3);
    let any = b.store.append(&s, ExpectedVersion::Any, events(2, "any"), &m).await.unwrap();
    assert_eq!(any.stream_version, 5);
}

async fn a_repeated_command_is_applied_once(b: Backend) {
    let s = stream("c");
    let mut m = Metadata::system();
    m.command_id = Some(CommandId::generate());
    let first = b.store.append(&s, ExpectedVersion::Any, events(2, "once"), &m).await.unwrap();
    // A retry after a time-out: same command id, even with a stale expected version.
    let again = b.store.append(&s, ExpectedVersion::NoStream, events(2, "once"), &m).await.unwrap();
    assert!(again.already_applied);
    assert_eq!(again.stream_version, first.stream_version);
    assert_eq!(again.checkpoint, first.checkpoint);
    assert_eq!(b.store.read_stream(&s, 1).await.unwrap().len(), 2);
    assert_eq!(b.store.command_outcome(m.command_id.unwrap()).await.unwrap(), Some(again));
    assert_eq!(b.store.command_outcome(CommandId::generate()).await.unwrap(), None);
}

async fn concurrent_retries_of_one_command_write_once(b: Backend) {
    let s = stream("d");
    let mut m = Metadata::system();
    m.command_id = Some(CommandId::generate());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = b.store.clone();
            let (s, m) = (s.clone(), m.clone());
            tokio::spawn(async move { store.append(&s, ExpectedVersion::Any, events(1, "retry"), &m).await })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        let outcome = t.await.unwrap().unwrap();
        if !outcome.already_applied {
            applied += 1;
        }
        assert_eq!(outcome.stream_version, 1);
    }
    assert_eq!(applied, 1);
    assert_eq!(b.store.read_stream(&s, 1).await.unwrap().len(), 1);
}

async fn read_all_pages_and_filters(b: Backend) {
    let alice = OperatorKey::from_uuid(Uuid::now_v7());
    let bob = OperatorKey::from_uuid(Uuid::now_v7());
    let m_a = metadata_for(Some("131016"), Some(alice));
    let m_b = metadata_for(Some("011002"), Some(bob));
    let m_sys = metadata_for(None, None);
    for i in 0..5 {
        b.store.append(&stream(&format!("chiyoda{i}")), ExpectedVersion::Any, events(2, "a"), &m_a).await.unwrap();
        b.store.append(&stream(&format!("sapporo{i}")), ExpectedVersion::Any, events(1, "b"), &m_b).await.unwrap();
        b.store.append(&stream("system"), ExpectedVersion::Any, events(1, "s"), &m_sys).await.unwrap();
    }
    let all = read_everything(b.store.as_ref(), &ReadFilter::All).await;
    assert_eq!(all.len(), 20);
    assert!(all.windows(2).all(|w| w[0].checkpoint < w[1].checkpoint));

    let chiyoda = read_everything(b.store.as_ref(), &ReadFilter::Municipality(code("131016"))).await;
    assert_eq!(chiyoda.len(), 10);
    assert!(chiyoda.iter().all(|e| e.metadata.municipality == Some(code("131016"))));
    let by_bob = read_everything(b.store.as_ref(), &ReadFilter::Operator(bob)).await;
    assert_eq!(by_bob.len(), 5);
    assert!(by_bob.iter().all(|e| e.metadata.operator == Some(bob)));
    // Bob's history: what he did and what the system did on his stream, in the global order, in pages.
    let actor = ReadFilter::Actor { operator: bob, streams: vec![stream("system")], since: None, until: None };
    let of_bob = read_everything(b.store.as_ref(), &actor).await;
    assert_eq!(of_bob.len(), 10);
    assert!(of_bob.windows(2).all(|w| w[0].checkpoint < w[1].checkpoint));
    assert!(of_bob.iter().all(|e| e.metadata.operator == Some(bob) || e.stream_id == stream("system")));

    let first_page = b.store.read_all(Checkpoint::START, 4, &ReadFilter::All).await.unwrap();
    assert_eq!(first_page.len(), 4);
    let rest = b.store.read_all(first_page[3].checkpoint, 100, &ReadFilter::All).await.unwrap();
    assert_eq!(rest.len(), 16);
    assert_eq!(rest[0].event_id, all[4].event_id);
}

/// `stored_events`: the events `read_all` returns, in the same order and pages, each payload as the JSON text the
/// store keeps (the text it was given: serde_json's compact form).
async fn stored_events_are_the_events_as_stored(b: Backend) {
    let alice = OperatorKey::from_uuid(Uuid::now_v7());
    for i in 0..4 {
        let payload = json!({"z": i, "a": {"note": "窓口 \"東\"\n", "f": 2.5, "list": [1, null, true]}});
        let new = vec![NewEvent::new("Tested", 1, payload), NewEvent::new("Tested", 2, json!([]))];
        let metadata = metadata_for(Some("131016"), Some(alice));
        b.store.append(&stream(&format!("s{i}")), ExpectedVersion::Any, new, &metadata).await.unwrap();
        b.store.append(&stream("system"), ExpectedVersion::Any, events(1, "s"), &Metadata::system()).await.unwrap();
    }
    let recorded = read_everything(b.store.as_ref(), &ReadFilter::All).await;
    assert_eq!(recorded.len(), 12);
    let stored: Vec<StoredEvent> = b.store.stored_events(Checkpoint::START, 100).try_collect().await.unwrap();
    assert_eq!(stored.len(), recorded.len());
    for (stored, recorded) in stored.iter().zip(&recorded) {
        assert_eq!(stored.payload, recorded.payload.to_string(), "the payload's text as stored");
        assert_eq!(*stored, StoredEvent::from(recorded.clone()));
    }
    let first: Vec<StoredEvent> = b.store.stored_events(Checkpoint::START, 5).try_collect().await.unwrap();
    assert_eq!(first[..], stored[..5]);
    let rest: Vec<StoredEvent> = b.store.stored_events(first[4].checkpoint, 100).try_collect().await.unwrap();
    assert_eq!(rest[..], stored[5..]);
    let none: Vec<StoredEvent> = b.store.stored_events(stored[11].checkpoint, 100).try_collect().await.unwrap();
    assert!(none.is_empty());
}

async fn readers_are_woken_by_an_append(b: Backend) {
    let mut wake = b.store.wakeups();
    wake.mark_seen();
    let store = b.store.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.append(&stream("w"), ExpectedVersion::Any, events(1, "w"), &Metadata::system()).await.unwrap();
    });
    assert!(wake.wait(Duration::from_secs(10)).await, "no wake-up within 10 s of an append");
    writer.await.unwrap();
}

/// (a) Many tasks append to one stream with expected versions: one winner per version, no gaps, no duplicates.
/// Concurrent appends, every other one at a wrong version (SQLite commits waiting appends together, each under
/// its own savepoint): each refused append writes nothing and is told so, and every other one is written whole.
async fn a_refused_append_among_concurrent_ones_loses_none_of_theirs(b: Backend) {
    for round in 0..5 {
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = b.store.clone();
                let s = stream(&format!("mixed-{round}-{i}"));
                // The odd ones expect a stream that already holds three events.
                let expected = ExpectedVersion::Exact(if i % 2 == 0 { 0 } else { 3 });
                tokio::spawn(async move {
                    (s.clone(), i, store.append(&s, expected, events(3, "mixed"), &Metadata::system()).await)
                })
            })
            .collect();
        for t in tasks {
            let (s, i, result) = t.await.unwrap();
            let stored = b.store.read_stream(&s, 1).await.unwrap();
            if i % 2 == 0 {
                assert_eq!(result.unwrap().stream_version, 3);
                assert_eq!(stored.len(), 3, "{s}: an accepted append lost its events");
            } else {
                assert!(matches!(result, Err(StoreError::Conflict { actual: 0, .. })), "{s}: {result:?}");
                assert!(stored.is_empty(), "{s}: a refused append wrote {} events", stored.len());
            }
        }
    }
}

async fn contended_stream_has_one_winner_per_version(b: Backend) {
    let s = stream("contended");
    let target = 120_u64;
    let tasks: Vec<_> = (0..12)
        .map(|t| {
            let store = b.store.clone();
            let s = s.clone();
            tokio::spawn(async move {
                let (mut wins, mut conflicts) = (0_u64, 0_u64);
                loop {
                    let current = store.read_stream(&s, 1).await.unwrap().len() as u64;
                    if current >= target {
                        return (wins, conflicts);
                    }
                    let e = NewEvent::new("Won", 1, json!({ "task": t, "version": current + 1 }));
                    match store.append(&s, ExpectedVersion::Exact(current), vec![e], &Metadata::system()).await {
                        Ok(o) => {
                            assert_eq!(o.stream_version, current + 1);
                            wins += 1;
                        }
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
            })
        })
        .collect();
    let (mut wins, mut conflicts) = (0, 0);
    for t in tasks {
        let (w, c) = t.await.unwrap();
        wins += w;
        conflicts += c;
    }
    assert!(conflicts > 0, "12 tasks on one stream never conflicted: the test did not contend");
    assert_eq!(wins, target);
    let read = b.store.read_stream(&s, 1).await.unwrap();
    assert_eq!(read.iter().map(|e| e.version).collect::<Vec<_>>(), (1..=target).collect::<Vec<_>>());
    for e in &read {
        assert_eq!(e.payload["version"], json!(e.version), "event written for one version stored at another");
    }
    let ids: HashSet<_> = read.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), read.len());
}

/// (b) Writers on many streams, some holding their transaction open before commit, while a reader follows
/// `read_all`: the reader sees every committed event exactly once, in per-stream order.
async fn follower_sees_every_event_once_despite_late_commits(b: Backend) {
    let writers = 8;
    let appends_per_writer = 30;
    let store = b.store.clone();
    let slow = Arc::new(b.slow);
    let mut handles = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let slow = slow.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..appends_per_writer {
                let s = stream(&format!("w{w}-s{}", i % 3));
                if w % 4 == 0 && i % 5 == 0 {
                    slow.append_and_hold(&s, events(2, "slow"), Duration::from_millis(40)).await;
                } else {
                    store.append(&s, ExpectedVersion::Any, events(2, "fast"), &Metadata::system()).await.unwrap();
                }
            }
        }));
    }
    let expected_total = writers * appends_per_writer * 2;

    let reader_store = store.clone();
    let reader = tokio::spawn(async move {
        let mut wake = reader_store.wakeups();
        let mut after = Checkpoint::START;
        let mut seen: HashSet<Uuid> = HashSet::new();
        let mut last_version: HashMap<String, u64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while seen.len() < expected_total {
            assert!(tokio::time::Instant::now() < deadline, "reader saw only {} of {expected_total}", seen.len());
            wake.mark_seen();
            let batch = reader_store.read_all(after, 50, &ReadFilter::All).await.unwrap();
            if batch.is_empty() {
                wake.wait(Duration::from_millis(250)).await;
                continue;
            }
            for e in batch {
                assert!(e.checkpoint > after, "checkpoints went backwards");
                after = e.checkpoint;
                assert!(seen.insert(e.event_id.as_uuid()), "event {} delivered twice", e.event_id);
                let last = last_version.entry(e.stream_id.to_string()).or_insert(0);
                assert_eq!(e.version, *last + 1, "stream {} out of order or with a gap", e.stream_id);
                *last = e.version;
            }
        }
        seen.len()
    });
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), expected_total);
    // Nothing more arrives after everything was seen.
    let all = read_everything(store.as_ref(), &ReadFilter::All).await;
    assert_eq!(all.len(), expected_total);
}

async fn a_batch_is_all_or_nothing(b: Backend) {
    let m = Metadata::system();
    b.store.append(&stream("existing"), ExpectedVersion::NoStream, events(2, "x"), &m).await.unwrap();
    let batch = vec![
        StreamAppend { stream: stream("one"), expected: ExpectedVersion::NoStream, events: events(1, "b") },
        StreamAppend { stream: stream("existing"), expected: ExpectedVersion::NoStream, events: events(1, "b") },
        StreamAppend { stream: stream("two"), expected: ExpectedVersion::NoStream, events: events(1, "b") },
    ];
    let err = b.store.append_many(batch, &m).await.unwrap_err();
    match err {
        StoreError::Conflict { stream: s, actual, .. } => {
            assert_eq!(s, stream("existing"));
            assert_eq!(actual, 2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(b.store.read_stream(&stream("one"), 1).await.unwrap().is_empty(), "half a batch was written");
    assert_eq!(read_everything(b.store.as_ref(), &ReadFilter::All).await.len(), 2);
}

async fn a_batch_appends_every_stream_once(b: Backend) {
    let mut m = metadata_for(Some("131016"), None);
    m.command_id = Some(CommandId::generate());
    b.store.append(&stream("a"), ExpectedVersion::Any, events(1, "x"), &Metadata::system()).await.unwrap();
    let batch = || {
        vec![
            StreamAppend { stream: stream("a"), expected: ExpectedVersion::Exact(1), events: events(2, "b") },
            StreamAppend { stream: stream("b"), expected: ExpectedVersion::NoStream, events: events(1, "b") },
        ]
    };
    let outcome = b.store.append_many(batch(), &m).await.unwrap();
    assert_eq!(outcome.stream_versions, vec![3, 1]);
    assert!(!outcome.already_applied);
    assert_eq!(b.store.head().await.unwrap(), outcome.checkpoint);
    let again = b.store.append_many(batch(), &m).await.unwrap();
    assert!(again.already_applied);
    assert_eq!(again.checkpoint, outcome.checkpoint);
    let all = read_everything(b.store.as_ref(), &ReadFilter::All).await;
    assert_eq!(all.len(), 4);
    assert!(
        all[1..].iter().all(|e| e.metadata.command_id == m.command_id && e.metadata.municipality == m.municipality)
    );
}

/// Concurrent batches over shared streams, followed by a reader: one global order, per-stream order kept.
async fn concurrent_batches_keep_per_stream_order(b: Backend) {
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let store = b.store.clone();
            tokio::spawn(async move {
                for i in 0..15_usize {
                    let batch = (0..3)
                        .map(|k| StreamAppend {
                            stream: stream(&format!("shared{}", (t + i + k * 2) % 5)),
                            expected: ExpectedVersion::Any,
                            events: events(1, "c"),
                        })
                        .collect();
                    store.append_many(batch, &Metadata::system()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let all = read_everything(b.store.as_ref(), &ReadFilter::All).await;
    assert_eq!(all.len(), 6 * 15 * 3);
    let mut last: HashMap<String, u64> = HashMap::new();
    for e in &all {
        let v = last.entry(e.stream_id.to_string()).or_insert(0);
        assert_eq!(e.version, *v + 1, "stream {} out of order in the global order", e.stream_id);
        *v = e.version;
    }
}

async fn a_snapshot_is_replaced_only_by_a_newer_one_or_another_shape(b: Backend) {
    let s = stream("snap");
    let snap = |kind: &str, version: u64| cardap_store::Snapshot {
        kind: kind.into(),
        version,
        state: json!({"version": version}),
    };
    assert_eq!(b.store.snapshot(&s).await.unwrap(), None);
    b.store.save_snapshot(&s, &snap("k/1", 16)).await.unwrap();
    // A writer that loaded an older snapshot and saves after a newer one landed does not set it back.
    b.store.save_snapshot(&s, &snap("k/1", 8)).await.unwrap();
    assert_eq!(b.store.snapshot(&s).await.unwrap(), Some(snap("k/1", 16)));
    b.store.save_snapshot(&s, &snap("k/1", 32)).await.unwrap();
    assert_eq!(b.store.snapshot(&s).await.unwrap(), Some(snap("k/1", 32)));
    // A new shape replaces the old one at any version (an old-shape snapshot is of no use to the new reader).
    b.store.save_snapshot(&s, &snap("k/2", 20)).await.unwrap();
    assert_eq!(b.store.snapshot(&s).await.unwrap(), Some(snap("k/2", 20)));
    assert_eq!(b.store.snapshot(&stream("other")).await.unwrap(), None);
}

macro_rules! contract {
    ($backend:ident) => {
        mod $backend {

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn appends_and_reads_back_in_order() {
                super::appends_and_reads_back_in_order(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn expected_version_mismatch_is_a_conflict_and_writes_nothing() {
                super::expected_version_mismatch_is_a_conflict_and_writes_nothing(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_repeated_command_is_applied_once() {
                super::a_repeated_command_is_applied_once(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_refused_append_among_concurrent_ones_loses_none_of_theirs() {
                super::a_refused_append_among_concurrent_ones_loses_none_of_theirs(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_retries_of_one_command_write_once() {
                super::concurrent_retries_of_one_command_write_once(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn read_all_pages_and_filters() {
                super::read_all_pages_and_filters(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn read_streams_gives_each_stream_whole_and_in_order() {
                super::read_streams_gives_each_stream_whole_and_in_order(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn stored_events_are_the_events_as_stored() {
                super::stored_events_are_the_events_as_stored(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_batch_is_all_or_nothing() {
                super::a_batch_is_all_or_nothing(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_batch_appends_every_stream_once() {
                super::a_batch_appends_every_stream_once(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_batches_keep_per_stream_order() {
                super::concurrent_batches_keep_per_stream_order(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn readers_are_woken_by_an_append() {
                super::readers_are_woken_by_an_append(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn contended_stream_has_one_winner_per_version() {
                super::contended_stream_has_one_winner_per_version(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_snapshot_is_replaced_only_by_a_newer_one_or_another_shape() {
                super::a_snapshot_is_replaced_only_by_a_newer_one_or_another_shape(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn follower_sees_every_event_once_despite_late_commits() {
                super::follower_sees_every_event_once_despite_late_commits(super::$backend().await).await;
            }
        }
    };
}

contract!(postgres);
contract!(sqlite);

/// PostgreSQL only: an append on one node wakes a reader on another node (LISTEN/NOTIFY), not just the poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_append_on_one_node_wakes_readers_on_another() {
    let url = cardap_testkit::fresh_postgres_url().await;
    let node_a = Database::connect(&url, 4).await.unwrap();
    node_a.migrate().await.unwrap();
    let node_b = Database::connect(&url, 4).await.unwrap();
    let mut wake_b = node_b.event_store().wakeups();
    // Let node B's LISTEN connection come up (its first wake-up announces it), then forget that wake-up.
    wake_b.wait(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    wake_b.mark_seen();
    node_a.event_store().append(&stream("x"), ExpectedVersion::Any, events(1, "x"), &Metadata::system()).await.unwrap();
    assert!(wake_b.wait(Duration::from_secs(10)).await, "node B was not notified of node A's append");
    let seen = node_b.event_store().read_all(Checkpoint::START, 10, &ReadFilter::All).await.unwrap();
    assert_eq!(seen.len(), 1);
}
