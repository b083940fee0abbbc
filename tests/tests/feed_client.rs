//! The feed client (`cardap-feed-client`, issue 11 point 6) as a business system embeds it: over mutual TLS with
//! its business server certificate, it follows its feed across a restart of cardap (stopped, started again on the
//! same database and address: the client retries and continues, no item lost or handled twice) and across a
//! restart of itself (a new client with the same cursor file continues after the last item it stored); a cursor
//! that names no item of the feed stops it with the server's 400. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardap_feed_client::{Backoff, FeedClient, FeedConfig, FeedItem, FileCursorStore, FollowError, tls_client};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::{
    Backend, TestApp, business_system, card_path, cards_path, eventually, on_both_backends, resident_body,
    resident_path, resident_settings_path, residents_path, spawn_app_on, spawn_https_app,
};
use tokio::sync::oneshot;

const CHIYODA: &str = "131016";
const CLERK: &str = "CL0001";

/// A server on HTTPS, 千代田区 permitted business system 05, a clerk, and 05's certificate and key.
struct World {
    app: TestApp,
    clerk: String,
    root: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    dir: tempfile::TempDir,
}

async fn world(backend: Backend) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (app, root) = spawn_https_app(backend, dir.path()).await;
    let admin = app.admin_token().await;
    let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system("05", "施設予約")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "05", CHIYODA).await;
    let settings = json!({ "custom_fields": [], "catalog": ["05"], "presets": [] });
    let reply = app.put(&resident_settings_path(CHIYODA), Some(&admin), &settings).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let clerk = app.clerk_token(&admin, CHIYODA, CLERK, &["05"]).await;

    let key = dir.path().join("b05.key");
    let out = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj"])
        .arg("/C=JP/O=test/CN=b05.example.jp")
        .arg("-keyout")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csr = String::from_utf8(out.stdout).unwrap();
    let reply = app.post("/api/v1/business-systems/05/certificates", Some(&admin), &json!({ "csr": csr })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let cert = dir.path().join("b05.pem");
    std::fs::write(&cert, reply.json()["certificate"].as_str().unwrap()).unwrap();
    World { app, clerk, root, cert, key, dir }
}

impl World {
    /// A resident of 千代田区 whose card carries 05's AP; his id.
    async fn resident(&self, app: &TestApp, kana_given: &str, fid: &str) -> String {
        let body = resident_body("ヤマダ", kana_given, "3450101");
        let reply = app.post(&residents_path(CHIYODA), Some(&self.clerk), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
        let reply = app.post(&cards_path(CHIYODA), Some(&self.clerk), &json!({ "fid": fid, "resident_id": id })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let reply = app.post_empty(&format!("{}/local-area", card_path(CHIYODA, fid)), Some(&self.clerk)).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        let path = format!("{}/aps", card_path(CHIYODA, fid));
        let reply = app.post(&path, Some(&self.clerk), &json!({ "business_ids": ["05"] })).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        id
    }

    async fn rename(&self, app: &TestApp, resident: &str, kana_given: &str) {
        let body = json!({ "kana_name": { "given": kana_given } });
        let reply = app.patch(&resident_path(CHIYODA, resident), Some(&self.clerk), None, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }

    /// A feed client of 05 with its cursor in `cursor_file`: short long polls and backoff, small pages.
    fn client(&self, cursor_file: &Path) -> FeedClient<FileCursorStore> {
        let read = |p: &Path| std::fs::read(p).unwrap();
        let http = tls_client(&read(&self.root), &read(&self.cert), &read(&self.key)).unwrap();
        let mut config = FeedConfig::new(self.app.address.clone(), "05");
        config.page_size = 2;
        config.wait = Duration::from_secs(1);
        config.backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(500) };
        FeedClient::new(http, config, FileCursorStore::new(cursor_file))
    }

    /// Every item of 05's feed from its start, read by a client of its own (the reference).
    async fn whole_feed(&self) -> Vec<String> {
        let reference = self.dir.path().join(format!("reference-{}.cursor", uuid::Uuid::new_v4()));
        let items = Arc::new(Mutex::new(vec![]));
        let mut handler = collector(&items);
        self.client(&reference).catch_up(&mut handler).await.unwrap();
        ids(&items)
    }
}

/// A handler that keeps every item it is given, in order.
fn collector(
    items: &Arc<Mutex<Vec<FeedItem>>>,
) -> impl FnMut(FeedItem) -> std::future::Ready<Result<(), std::io::Error>> + Send + use<> {
    let items = items.clone();
    move |item| {
        items.lock().unwrap().push(item);
        std::future::ready(Ok(()))
    }
}

fn ids(items: &Arc<Mutex<Vec<FeedItem>>>) -> Vec<String> {
    items.lock().unwrap().iter().map(|i| i.id.clone()).collect()
}

/// Follows in a task of its own until told to stop; the items it handled.
struct Follower {
    items: Arc<Mutex<Vec<FeedItem>>>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), FollowError>>,
}

fn follow(client: FeedClient<FileCursorStore>) -> Follower {
    let items = Arc::new(Mutex::new(vec![]));
    let mut handler = collector(&items);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        client
            .follow(&mut handler, async {
                let _ = stopped.await;
            })
            .await
    });
    Follower { items, stop, task }
}

impl Follower {
    async fn until(&self, what: &str, count: usize) {
        eventually(Duration::from_secs(30), what, || async {
            (self.items.lock().unwrap().len() >= count).then_some(())
        })
        .await;
    }

    async fn finish(self) -> Vec<String> {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
        ids(&self.items)
    }
}

/// cardap stops (the client keeps retrying meanwhile) and starts again on the same database and address; the
/// client continues by itself, and what it handled is the whole feed, each item once, in order.
async fn the_client_follows_across_a_restart_of_cardap(backend: Backend) {
    let mut w = world(backend).await;
    let taro = w.resident(&w.app, "タロウ", "FID0000000000001").await;
    w.resident(&w.app, "ジロウ", "FID0000000000002").await;
    let cursor = w.dir.path().join("05.cursor");
    let follower = follow(w.client(&cursor));
    follower.until("the first two residents", 2).await;

    w.app.shut_down(Duration::from_secs(30)).await;
    // Down for a while: the client's requests are refused and retried.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut settings = w.app.settings.clone();
    settings.listen = w.app.socket_addr;
    let mut again = spawn_app_on(settings, None).await;
    again.address.clone_from(&w.app.address);
    again.client = w.app.client.clone();
    w.clerk = again.login(Some(CHIYODA), CLERK, "ClerkPassw0rd").await;

    w.rename(&again, &taro, "タロ").await;
    w.resident(&again, "サブロウ", "FID0000000000003").await;
    follower.until("the rename and the third resident", 4).await;
    let handled = follower.finish().await;

    let feed = w.whole_feed().await;
    assert_eq!(feed.len(), 4, "{feed:?}");
    assert_eq!(handled, feed, "every item once, in the feed's order");
    assert_eq!(std::fs::read_to_string(&cursor).unwrap().trim(), feed[3], "the cursor is the last item handled");
    drop(again);
}

/// A client stops; a new one with the same cursor file begins right after the last item the first one stored.
async fn a_new_client_continues_after_the_last_stored_item(backend: Backend) {
    let w = world(backend).await;
    let taro = w.resident(&w.app, "タロウ", "FID0000000000001").await;
    w.resident(&w.app, "ジロウ", "FID0000000000002").await;
    w.resident(&w.app, "サブロウ", "FID0000000000003").await;
    let cursor = w.dir.path().join("05.cursor");

    let first = follow(w.client(&cursor));
    first.until("three residents", 3).await;
    let before = first.finish().await;
    assert_eq!(std::fs::read_to_string(&cursor).unwrap().trim(), before[2]);

    w.rename(&w.app, &taro, "タロ").await;
    w.resident(&w.app, "シロウ", "FID0000000000004").await;
    let second = follow(w.client(&cursor));
    second.until("the rename and the fourth resident", 2).await;
    let after = second.finish().await;

    let feed = w.whole_feed().await;
    assert_eq!(before.len() + after.len(), feed.len(), "before {before:?}, after {after:?}, feed {feed:?}");
    assert_eq!([before, after].concat(), feed, "the second client begins right after the first one's last item");
}

/// A cursor file that names no item of the feed (forged, or from another cardap) stops the client with the
/// server's 400 instead of retrying forever or starting over.
async fn a_cursor_the_feed_does_not_know_stops_the_client(backend: Backend) {
    let w = world(backend).await;
    w.resident(&w.app, "タロウ", "FID0000000000001").await;
    let cursor = w.dir.path().join("05.cursor");
    std::fs::write(&cursor, "999999-999999-0\n").unwrap();
    let mut handler = collector(&Arc::new(Mutex::new(vec![])));
    let outcome =
        tokio::time::timeout(Duration::from_secs(30), w.client(&cursor).follow(&mut handler, std::future::pending()))
            .await
            .expect("the client stops by itself");
    match outcome {
        Err(FollowError::Refused { status: 400, problem_type, .. }) => {
            assert_eq!(problem_type, "/problems/invalid-cursor");
        }
        other => panic!("expected the server's 400, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&cursor).unwrap().trim(), "999999-999999-0", "the cursor is left alone");
}

on_both_backends!(
    the_client_follows_across_a_restart_of_cardap,
    a_new_client_continues_after_the_last_stored_item,
    a_cursor_the_feed_does_not_know_stops_the_client,
);
