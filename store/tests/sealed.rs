//! Crypto-shredding: the sealed event store and the key vault, run against PostgreSQL and SQLite alike.
//!
//! Every test is written once against a [`Backend`]; the `sealed!` macro at the bottom instantiates the suite for
//! each backend on a fresh, migrated database. The inner (unsealed) store and raw SQL show what is really stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_store::{
    Checkpoint, CommandId, Database, EventId, EventStore, ExpectedVersion, KeyVault, MasterKey, MasterKeyError,
    Metadata, NewEvent, ReadFilter, RecordedEvent, SEALING_SCHEME, SealedEventStore, StoreError, StreamAppend,
    StreamId,
};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use sqlx::sqlite::SqlitePoolOptions;
use tempfile::TempDir;

/// A connected, migrated database with a sealed store over its event store.
struct Backend {
    db: Database,
    master: MasterKey,
    inner: Arc<dyn EventStore>,
    vault: Arc<KeyVault>,
    sealed: Arc<dyn EventStore>,
    _dir: Option<TempDir>,
}

impl Backend {
    async fn connect(url: String, dir: Option<TempDir>) -> Backend {
        let db = Database::connect(&url, 8).await.unwrap();
        db.migrate().await.unwrap();
        let master = MasterKey::generate().unwrap();
        let vault = db.key_vault(master.clone()).unwrap();
        let inner = db.event_store();
        let sealed: Arc<dyn EventStore> = Arc::new(SealedEventStore::new(inner.clone(), vault.clone()));
        Backend { db, master, inner, vault, sealed, _dir: dir }
    }

    /// Another node on the same database: its own connections, vault and cache, the same master key.
    async fn another_node(&self) -> (Arc<KeyVault>, Arc<dyn EventStore>) {
        let db = Database::connect(self.db.url(), 4).await.unwrap();
        let vault = db.key_vault(self.master.clone()).unwrap();
        (vault.clone(), Arc::new(SealedEventStore::new(db.event_store(), vault)))
    }

    /// Every stored payload, as the database holds it in text.
    async fn raw_payloads(&self) -> Vec<String> {
        match self.db.postgres_pool() {
            Some(pool) => sqlx::query_scalar("SELECT payload::text FROM events ORDER BY global_position")
                .fetch_all(pool)
                .await
                .unwrap(),
            None => sqlx::query_scalar("SELECT payload FROM events ORDER BY global_position")
                .fetch_all(&self.sqlite_pool().await)
                .await
                .unwrap(),
        }
    }

    /// Overwrites one stored payload, as an attacker with database access could.
    async fn overwrite_payload(&self, event: EventId, payload: &Value) {
        let text = payload.to_string();
        let updated = match self.db.postgres_pool() {
            Some(pool) => sqlx::query("UPDATE events SET payload = $1::json WHERE event_id = $2")
                .bind(text)
                .bind(event.as_uuid())
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            None => sqlx::query("UPDATE events SET payload = ? WHERE event_id = ?")
                .bind(text)
                .bind(event.as_uuid())
                .execute(&self.sqlite_pool().await)
                .await
                .map(|r| r.rows_affected()),
        };
        assert_eq!(updated.unwrap(), 1);
    }

    async fn key_rows(&self) -> i64 {
        match self.db.postgres_pool() {
            Some(pool) => {
                sqlx::query_scalar("SELECT count(*) FROM personal_data_keys WHERE subject <> '__master_key_check__'")
                    .fetch_one(pool)
                    .await
                    .unwrap()
            }
            None => {
                sqlx::query_scalar("SELECT count(*) FROM personal_data_keys WHERE subject <> '__master_key_check__'")
                    .fetch_one(&self.sqlite_pool().await)
                    .await
                    .unwrap()
            }
        }
    }

    async fn sqlite_pool(&self) -> sqlx::SqlitePool {
        SqlitePoolOptions::new().max_connections(1).connect(self.db.url()).await.unwrap()
    }
}

async fn postgres() -> Backend {
    Backend::connect(cardap_testkit::fresh_postgres_url().await, None).await
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = cardap_testkit::fresh_sqlite_url(dir.path());
    Backend::connect(url, Some(dir)).await
}

fn resident(key: &str) -> StreamId {
    StreamId::new("resident", key).unwrap()
}

/// A distinctive name that must never appear in stored text.
const NAME: &str = "山田 太郎";
const KANA: &str = "ヤマダ タロウ";

fn personal(name: &str) -> Value {
    json!({ "name": name, "kana": KANA, "birth": "H020401", "address": { "line": "千代田区1-1", "postal": "1000001" } })
}

fn registered(name: &str) -> NewEvent {
    NewEvent::new("ResidentRegistered", 1, json!({ "municipality": "131016", "personal": personal(name) }))
}

fn moved() -> NewEvent {
    NewEvent::new("ResidentMoved", 1, json!({ "municipality": "131016", "on": "2026-04-01" }))
}

/// Waits until everything appended so far is deliverable (on PostgreSQL delivery waits for older transactions).
async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let head = store.head().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut all = Vec::new();
    let mut after = Checkpoint::START;
    while after < head {
        assert!(tokio::time::Instant::now() < deadline, "events up to {head} never became visible");
        let batch = store.read_all(after, 5, &ReadFilter::All).await.unwrap();
        match batch.last() {
            Some(last) => after = last.checkpoint,
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        all.extend(batch);
    }
    all
}

fn sealed_personal(event: &RecordedEvent) -> &serde_json::Map<String, Value> {
    event.payload["personal"].as_object().expect("a sealed personal object")
}

async fn personal_data_reads_back_as_written(b: Backend) {
    let s = resident("0001");
    let new = vec![registered(NAME), moved(), registered("佐藤 花子")];
    b.sealed.append(&s, ExpectedVersion::NoStream, new.clone(), &Metadata::system()).await.unwrap();

    let by_stream = b.sealed.read_stream(&s, 1).await.unwrap();
    let by_all = read_everything(b.sealed.as_ref()).await;
    let by_streams = b.sealed.read_streams(std::slice::from_ref(&s)).await.unwrap();

    for read in [&by_stream, &by_all, &by_streams] {
        assert_eq!(read.len(), 3);
        for (r, n) in read.iter().zip(&new) {
            assert_eq!(r.event_id, n.event_id);
            assert_eq!(r.payload, n.payload, "the payload reads back exactly as appended");
        }
    }
    let (_, other_node) = b.another_node().await;
    assert_eq!(other_node.read_stream(&s, 1).await.unwrap(), by_stream, "another node reads the same");
}

async fn the_stored_payload_holds_no_plaintext(b: Backend) {
    let s = resident("0002");
    b.sealed.append(&s, ExpectedVersion::NoStream, vec![registered(NAME), moved()], &Metadata::system()).await.unwrap();

    let raw = b.raw_payloads().await;
    assert_eq!(raw.len(), 2);
    for text in &raw {
        for secret in ["山田", "ヤマダ", "太郎", "H020401", "千代田区"] {
            assert!(!text.contains(secret), "stored payload contains {secret:?}: {text}");
        }
    }
    assert!(raw[0].contains("131016"), "the rest of the payload stays readable: {}", raw[0]);

    let stored = b.inner.read_stream(&s, 1).await.unwrap();
    let envelope = sealed_personal(&stored[0]);
    assert_eq!(envelope["sealed"], SEALING_SCHEME);
    assert_eq!(envelope["key"], s.as_str());
    assert_eq!(STANDARD.decode(envelope["nonce"].as_str().unwrap()).unwrap().len(), 12);
    assert!(STANDARD.decode(envelope["ciphertext"].as_str().unwrap()).unwrap().len() > 16);
    assert_eq!(stored[0].payload["municipality"], "131016");
    assert_eq!(stored[1].payload, moved_payload(), "an event without personal data is stored as it is");

    // The events as stored (what the audit chain hashes) are the sealed ones, asked of the decorator too.
    read_everything(b.sealed.as_ref()).await;
    let texts: Vec<String> =
        b.sealed.stored_events(Checkpoint::START, 10).map_ok(|e| e.payload).try_collect().await.unwrap();
    assert_eq!(texts, raw);
}

fn moved_payload() -> Value {
    json!({ "municipality": "131016", "on": "2026-04-01" })
}

async fn destroying_a_key_erases_only_that_subjects_personal_data(b: Backend) {
    let (yamada, sato) = (resident("0003"), resident("0004"));
    let m = Metadata::system();
    b.sealed.append(&yamada, ExpectedVersion::NoStream, vec![registered(NAME), moved()], &m).await.unwrap();
    b.sealed.append(&sato, ExpectedVersion::NoStream, vec![registered("佐藤 花子")], &m).await.unwrap();
    let (other_vault, other_node) = b.another_node().await;
    other_node.read_stream(&yamada, 1).await.unwrap(); // the other node has the key cached now

    b.vault.destroy(&yamada).await.unwrap();
    b.vault.destroy(&yamada).await.unwrap(); // idempotent
    other_vault.forget(&yamada); // what the erasure workflow will do on every node

    for store in [&b.sealed, &other_node] {
        let read = store.read_stream(&yamada, 1).await.unwrap();
        assert_eq!(read.len(), 2, "the events stay");
        assert_eq!(read[0].payload, json!({ "municipality": "131016", "personal": null }));
        assert_eq!(read[1].payload, moved_payload());
        let other = store.read_stream(&sato, 1).await.unwrap();
        assert_eq!(other[0].payload["personal"], personal("佐藤 花子"), "other subjects are unaffected");
    }
    let all = read_everything(b.sealed.as_ref()).await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].payload["personal"], Value::Null);
    assert_eq!(all[0].payload["municipality"], "131016");
    assert_eq!(all[2].payload["personal"], personal("佐藤 花子"));

    let (_, fresh_node) = b.another_node().await;
    assert_eq!(fresh_node.read_stream(&yamada, 1).await.unwrap()[0].payload["personal"], Value::Null);
}

async fn personal_data_for_an_erased_subject_is_refused(b: Backend) {
    let (s, never_keyed) = (resident("0005"), resident("0006"));
    let applied = Metadata { command_id: Some(CommandId::generate()), ..Metadata::system() };
    let first = b.sealed.append(&s, ExpectedVersion::NoStream, vec![registered(NAME)], &applied).await.unwrap();
    b.vault.destroy(&s).await.unwrap();
    b.vault.destroy(&never_keyed).await.unwrap();

    let (_, other_node) = b.another_node().await;
    for store in [&b.sealed, &other_node] {
        for subject in [&s, &never_keyed] {
            let err = store
                .append(subject, ExpectedVersion::Any, vec![registered(NAME)], &Metadata::system())
                .await
                .unwrap_err();
            assert!(matches!(&err, StoreError::Erased { subject: e } if e == subject), "{err:?}");
            assert!(err.to_string().contains(subject.as_str()), "the message names the subject: {err}");
        }
        let batch = vec![
            StreamAppend { stream: resident("0007"), expected: ExpectedVersion::Any, events: vec![registered("x")] },
            StreamAppend { stream: s.clone(), expected: ExpectedVersion::Any, events: vec![registered(NAME)] },
        ];
        let err = store.append_many(batch, &Metadata::system()).await.unwrap_err();
        assert!(matches!(err, StoreError::Erased { .. }), "{err:?}");
    }
    assert_eq!(b.inner.read_stream(&s, 1).await.unwrap().len(), 1, "nothing was written");
    assert!(b.inner.read_stream(&never_keyed, 1).await.unwrap().is_empty());
    assert!(b.inner.read_stream(&resident("0007"), 1).await.unwrap().is_empty(), "the batch wrote nothing");

    let retry = b.sealed.append(&s, ExpectedVersion::NoStream, vec![registered(NAME)], &applied).await.unwrap();
    assert!(retry.already_applied, "a retry of a command applied before the erasure gets its first outcome");
    assert_eq!(retry.stream_version, first.stream_version);

    let erasure = NewEvent::new("PersonalDataErased", 1, json!({ "personal": null, "reason": "request" }));
    let outcome = b.sealed.append(&s, ExpectedVersion::Exact(1), vec![erasure, moved()], &Metadata::system()).await;
    assert_eq!(outcome.unwrap().stream_version, 3, "events without personal data are still accepted");
}

async fn altered_ciphertext_is_corrupt(b: Backend) {
    let s = resident("0008");
    b.sealed
        .append(&s, ExpectedVersion::NoStream, vec![registered(NAME), registered("二人目")], &Metadata::system())
        .await
        .unwrap();
    let stored = b.inner.read_stream(&s, 1).await.unwrap();

    // One flipped bit in the ciphertext.
    let mut altered = stored[0].payload.clone();
    let mut bytes = STANDARD.decode(altered["personal"]["ciphertext"].as_str().unwrap()).unwrap();
    bytes[3] ^= 0x01;
    altered["personal"]["ciphertext"] = json!(STANDARD.encode(&bytes));
    b.overwrite_payload(stored[0].event_id, &altered).await;
    let err = b.sealed.read_stream(&s, 1).await.unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains(&stored[0].event_id.to_string())), "{err:?}");
    for secret in ["山田", "ヤマダ"] {
        assert!(!err.to_string().contains(secret), "no plaintext in the message: {err}");
    }
    let err = read_all_error(b.sealed.as_ref()).await;
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");

    // A valid ciphertext moved from another event of the same subject.
    b.overwrite_payload(stored[0].event_id, &stored[1].payload).await;
    let err = b.sealed.read_stream(&s, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "a ciphertext cannot be moved to another event: {err:?}");

    // An unknown sealing scheme.
    let mut unknown = stored[0].payload.clone();
    unknown["personal"]["sealed"] = json!("rot13/v0");
    b.overwrite_payload(stored[0].event_id, &unknown).await;
    assert!(matches!(b.sealed.read_stream(&s, 1).await.unwrap_err(), StoreError::Corrupt(_)));

    b.overwrite_payload(stored[0].event_id, &stored[0].payload).await;
    assert_eq!(b.sealed.read_stream(&s, 1).await.unwrap()[0].payload["personal"], personal(NAME));
}

async fn read_all_error(store: &dyn EventStore) -> StoreError {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match store.read_all(Checkpoint::START, 100, &ReadFilter::All).await {
            Err(e) => return e,
            Ok(events) if events.is_empty() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(events) => panic!("read_all succeeded with {} events", events.len()),
        }
    }
}

async fn a_wrong_master_key_is_told_apart(b: Backend) {
    let s = resident("0009");
    b.vault.check_master_key().await.unwrap();
    b.sealed.append(&s, ExpectedVersion::NoStream, vec![registered(NAME)], &Metadata::system()).await.unwrap();

    let wrong = b.db.key_vault(MasterKey::generate().unwrap()).unwrap();
    assert!(matches!(wrong.check_master_key().await, Err(StoreError::WrongMasterKey)));
    let wrong_store = SealedEventStore::new(b.inner.clone(), wrong.clone());
    let err = wrong_store.read_stream(&s, 1).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongMasterKey), "a wrong key never reads as erased data: {err:?}");
    let m = Metadata::system();
    let appended = wrong_store.append(&resident("0010"), ExpectedVersion::Any, vec![registered(NAME)], &m).await;
    assert!(matches!(appended, Err(StoreError::WrongMasterKey)));
    assert!(format!("{wrong:?}").contains("<redacted>"));

    let right = b.db.key_vault(b.master.clone()).unwrap();
    right.check_master_key().await.unwrap();
}

async fn payloads_without_personal_data_pass_untouched(b: Backend) {
    let s = StreamId::new("municipality", "131016").unwrap();
    let payloads = [
        moved_payload(),
        json!({ "personal": null, "note": "nothing personal" }),
        json!(["an", "array"]),
        json!("a string"),
        json!({ "nested": { "personal": { "name": NAME } } }),
    ];
    let new: Vec<NewEvent> = payloads.iter().map(|p| NewEvent::new("Other", 1, p.clone())).collect();
    b.sealed.append(&s, ExpectedVersion::NoStream, new, &Metadata::system()).await.unwrap();

    let stored: Vec<Value> =
        b.inner.read_stream(&s, 1).await.unwrap().into_iter().map(|e| e.payload.into_value()).collect();
    assert_eq!(stored, payloads, "stored as given");
    let read: Vec<Value> =
        b.sealed.read_stream(&s, 1).await.unwrap().into_iter().map(|e| e.payload.into_value()).collect();
    assert_eq!(read, payloads, "read as stored");
    assert_eq!(b.key_rows().await, 0, "no data key is made for a stream without personal data");
}

async fn a_batch_seals_each_stream_under_its_own_subject(b: Backend) {
    let streams: Vec<StreamId> = (0..6).map(|i| resident(&format!("b{i}"))).collect();
    let registry = StreamId::new("registry_entry", "131016.000123").unwrap();
    let mut appends: Vec<StreamAppend> = streams
        .iter()
        .map(|s| StreamAppend {
            stream: s.clone(),
            expected: ExpectedVersion::NoStream,
            events: vec![registered(&format!("住民 {s}")), moved()],
        })
        .collect();
    appends.push(StreamAppend {
        stream: registry.clone(),
        expected: ExpectedVersion::NoStream,
        events: vec![registered(NAME)],
    });
    appends.push(StreamAppend {
        stream: resident("plain"),
        expected: ExpectedVersion::NoStream,
        events: vec![moved()],
    });
    b.sealed.append_many(appends, &Metadata::system()).await.unwrap();

    for s in streams.iter().chain([&registry]) {
        let stored = b.inner.read_stream(s, 1).await.unwrap();
        assert_eq!(sealed_personal(&stored[0])["key"], s.as_str(), "sealed under its own stream's key");
    }
    assert_eq!(b.key_rows().await, 7, "one key per stream with personal data");

    b.vault.destroy(&streams[2]).await.unwrap();
    for (i, s) in streams.iter().enumerate() {
        let read = b.sealed.read_stream(s, 1).await.unwrap();
        let expected = if i == 2 { Value::Null } else { personal(&format!("住民 {s}")) };
        assert_eq!(read[0].payload["personal"], expected, "{s}");
        assert_eq!(read[1].payload, moved_payload());
    }
    let registry_read = b.sealed.read_stream(&registry, 1).await.unwrap();
    assert_eq!(registry_read[0].payload["personal"], personal(NAME));
    let all = read_everything(b.sealed.as_ref()).await;
    assert_eq!(all.len(), 14);
    assert_eq!(all.iter().filter(|e| e.payload["personal"].is_object()).count(), 6);

    // A ciphertext copied into another subject's event does not open there.
    let victim = b.inner.read_stream(&streams[0], 1).await.unwrap();
    let mut forged = b.inner.read_stream(&streams[1], 1).await.unwrap()[0].payload.clone();
    forged["personal"] = victim[0].payload["personal"].clone();
    let target = b.inner.read_stream(&streams[1], 1).await.unwrap()[0].event_id;
    b.overwrite_payload(target, &forged).await;
    assert!(matches!(b.sealed.read_stream(&streams[1], 1).await, Err(StoreError::Corrupt(_))));
}

async fn concurrent_first_appends_share_one_key(b: Backend) {
    let (_, node_a) = b.another_node().await;
    let (_, node_b) = b.another_node().await;
    let m = Metadata::system();
    let streams: Vec<StreamId> = (0..10).map(|i| resident(&format!("c{i}"))).collect();
    for s in &streams {
        let (a, c) = tokio::join!(
            node_a.append(s, ExpectedVersion::Any, vec![registered("ノードA")], &m),
            node_b.append(s, ExpectedVersion::Any, vec![registered("ノードB")], &m),
        );
        a.unwrap();
        c.unwrap();
    }
    let batch = |name: &'static str| {
        streams
            .iter()
            .map(|s| StreamAppend { stream: s.clone(), expected: ExpectedVersion::Any, events: vec![registered(name)] })
            .collect::<Vec<_>>()
    };
    let fresh: Vec<StreamId> = (0..10).map(|i| resident(&format!("d{i}"))).collect();
    let fresh_batch = |name: &'static str| {
        fresh
            .iter()
            .map(|s| StreamAppend { stream: s.clone(), expected: ExpectedVersion::Any, events: vec![registered(name)] })
            .collect::<Vec<_>>()
    };
    let (a, c) =
        tokio::join!(node_a.append_many(fresh_batch("ノードA"), &m), node_b.append_many(fresh_batch("ノードB"), &m),);
    a.unwrap();
    c.unwrap();
    node_a.append_many(batch("三回目"), &Metadata::system()).await.unwrap();

    assert_eq!(b.key_rows().await, 20, "one key per subject");
    let (_, reader) = b.another_node().await;
    for s in streams.iter().chain(&fresh) {
        for store in [&reader, &node_a, &node_b] {
            let names: Vec<Value> =
                store.read_stream(s, 1).await.unwrap().iter().map(|e| e.payload["personal"]["name"].clone()).collect();
            assert!(names.contains(&json!("ノードA")) && names.contains(&json!("ノードB")), "{s}: {names:?}");
        }
    }
}

/// An operator's stream: each registration's profile under a key of its own (`"personal_key"`).
fn profile(part: &str, name: &str) -> NewEvent {
    NewEvent::new("OperatorProfileUpdated", 2, json!({ "personal_key": part, "personal": personal(name) }))
}

async fn a_named_personal_key_seals_a_part_of_the_stream_that_is_erased_alone(b: Backend) {
    let s = StreamId::new("operator", "131016.OP0501").unwrap();
    let (first, second) = (StreamId::parse("operator-131016.OP0501#r1").unwrap(), "operator-131016.OP0501#r2");
    let m = Metadata::system();
    b.sealed.append(&s, ExpectedVersion::NoStream, vec![profile("r1", NAME), moved()], &m).await.unwrap();
    let stored = b.inner.read_stream(&s, 1).await.unwrap();
    assert_eq!(sealed_personal(&stored[0])["key"], first.as_str(), "sealed under the part's own subject");
    assert!(!b.raw_payloads().await.iter().any(|p| p.contains("山田")));

    // Erasing the first part: its data reads as erased, the stream goes on with the next part's new key.
    b.vault.destroy(&first).await.unwrap();
    let refused = b.sealed.append(&s, ExpectedVersion::Any, vec![profile("r1", "x")], &m).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Erased { subject } if subject == &first), "{refused:?}");
    b.sealed.append(&s, ExpectedVersion::Any, vec![profile("r2", "佐藤 花子")], &m).await.unwrap();
    let read = b.sealed.read_stream(&s, 1).await.unwrap();
    assert_eq!(read[0].payload, json!({ "personal_key": "r1", "personal": null }));
    assert_eq!(read[2].payload["personal"], personal("佐藤 花子"));
    assert_eq!(sealed_personal(&b.inner.read_stream(&s, 3).await.unwrap()[0])["key"], second);

    // A key name that is not a plain word is refused before anything is written.
    for bad in [json!("r1#x"), json!(""), json!(3), json!("r/1")] {
        let event = NewEvent::new("OperatorProfileUpdated", 2, json!({ "personal_key": bad, "personal": {"n": 1} }));
        let err = b.sealed.append(&s, ExpectedVersion::Any, vec![event], &m).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{bad}: {err:?}");
    }
    assert_eq!(b.inner.read_stream(&s, 1).await.unwrap().len(), 3);
}

macro_rules! sealed {
    ($backend:ident) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn personal_data_reads_back_as_written() {
                super::personal_data_reads_back_as_written(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn the_stored_payload_holds_no_plaintext() {
                super::the_stored_payload_holds_no_plaintext(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn destroying_a_key_erases_only_that_subjects_personal_data() {
                super::destroying_a_key_erases_only_that_subjects_personal_data(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn personal_data_for_an_erased_subject_is_refused() {
                super::personal_data_for_an_erased_subject_is_refused(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn altered_ciphertext_is_corrupt() {
                super::altered_ciphertext_is_corrupt(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_wrong_master_key_is_told_apart() {
                super::a_wrong_master_key_is_told_apart(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn payloads_without_personal_data_pass_untouched() {
                super::payloads_without_personal_data_pass_untouched(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_batch_seals_each_stream_under_its_own_subject() {
                super::a_batch_seals_each_stream_under_its_own_subject(super::$backend().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_named_personal_key_seals_a_part_of_the_stream_that_is_erased_alone() {
                super::a_named_personal_key_seals_a_part_of_the_stream_that_is_erased_alone(super::$backend().await)
                    .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_first_appends_share_one_key() {
                super::concurrent_first_appends_share_one_key(super::$backend().await).await;
            }
        }
    };
}

sealed!(postgres);
sealed!(sqlite);

#[test]
fn a_master_key_never_prints_and_rejects_bad_text() {
    let key = MasterKey::generate().unwrap();
    assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    assert!(matches!(MasterKey::from_base64("not base64 at all!"), Err(MasterKeyError::NotBase64)));
    let short = STANDARD.encode([7_u8; 16]);
    let err = MasterKey::from_base64(&short).unwrap_err();
    assert!(matches!(err, MasterKeyError::WrongLength(16)));
    assert!(!err.to_string().contains(&short), "the message does not repeat the key");
    MasterKey::from_base64(&format!("  {}\n", STANDARD.encode([7_u8; 32]))).unwrap();
}

#[test]
fn a_master_key_file_is_created_once_private_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("master.key");
    let (_, created) = MasterKey::load_or_create(&path).unwrap();
    assert!(created);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (_, created_again) = MasterKey::load_or_create(&path).unwrap();
    assert!(!created_again);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "an existing key file is never replaced");
    assert_eq!(std::fs::read_dir(dir.path().join("keys")).unwrap().count(), 1, "no temporary file is left");

    std::fs::write(&path, "garbage").unwrap();
    assert!(matches!(MasterKey::load_or_create(&path), Err(MasterKeyError::NotBase64)));
}

/// Both loads of a freshly created key file give the same key: data sealed under one vault opens under the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_read_back_from_its_file_is_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let (created, _) = MasterKey::load_or_create(&path).unwrap();
    let (loaded, _) = MasterKey::load_or_create(&path).unwrap();
    let url = cardap_testkit::fresh_sqlite_url(dir.path());
    let db = Database::connect(&url, 4).await.unwrap();
    db.migrate().await.unwrap();
    let s = resident("file");
    let writer = SealedEventStore::new(db.event_store(), db.key_vault(created).unwrap());
    writer.append(&s, ExpectedVersion::NoStream, vec![registered(NAME)], &Metadata::system()).await.unwrap();
    let reader = SealedEventStore::new(db.event_store(), db.key_vault(loaded).unwrap());
    reader.vault().check_master_key().await.unwrap();
    assert_eq!(reader.read_stream(&s, 1).await.unwrap()[0].payload["personal"], personal(NAME));
}
