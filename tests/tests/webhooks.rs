//! Webhook push of the replication feeds (issue 11 point 2), seen from a business system's receiver: the system
//! administrator registers a URL and issues a signing secret; cardap POSTs each feed item once it is acknowledged,
//! in order, signed `X-Cardap-Signature: sha256=<hex HMAC-SHA-256 of the body>`; a receiver that answers 500 is
//! retried with backoff until it answers 2xx, and a receiver that never answers holds up no other system's
//! deliveries. The routes' answers (validation, a secret before a URL, who may) too. Every test runs on PostgreSQL
//! and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardap_commands::webhooks::PushPolicy;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, business_system, card_path, cards_path, eventually, on_both_backends, resident_body,
    resident_settings_path, residents_path, spawn_app_with,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CHIYODA: &str = "131016";

/// One POST a receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    answered: u16,
}

/// How a receiver answers its n-th request (0-based): a status, or `None` to never answer.
type Script = Arc<dyn Fn(usize) -> Option<u16> + Send + Sync>;

/// A local HTTP receiver; its URL and what it got.
async fn receiver(script: Script) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = got.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let answer = script(n);
            n += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let mut raw = vec![];
                let mut buf = [0u8; 4096];
                let (head, body_start) = loop {
                    let read = socket.read(&mut buf).await.unwrap();
                    if read == 0 {
                        return;
                    }
                    raw.extend_from_slice(&buf[..read]);
                    if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8(raw[..end].to_vec()).unwrap(), end + 4);
                    }
                };
                let headers: BTreeMap<String, String> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers.get("content-length").map_or(0, |v| v.parse().unwrap());
                let mut body = raw[body_start..].to_vec();
                while body.len() < length {
                    let read = socket.read(&mut buf).await.unwrap();
                    if read == 0 {
                        break;
                    }
                    body.extend_from_slice(&buf[..read]);
                }
                let Some(status) = answer else {
                    // Never answers: the pusher's timeout must give up on it.
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                };
                log.lock().unwrap().push(Received { headers, body, answered: status });
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, got)
}

struct World {
    app: TestApp,
    admin: String,
    clerk: String,
}

async fn world(backend: Backend) -> World {
    let app = spawn_app_with(backend, |s| {
        s.webhook_push = PushPolicy {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            interval: Duration::from_millis(200),
            lease: Duration::from_secs(10),
        };
    })
    .await;
    let admin = app.admin_token().await;
    for (id, name) in [("05", "施設予約"), ("06", "健康ポイント")] {
        let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system(id, name)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    for id in ["05", "06"] {
        app.permit(&admin, id, CHIYODA).await;
    }
    let settings = json!({ "custom_fields": [], "catalog": ["05", "06"], "presets": [] });
    let reply = app.put(&resident_settings_path(CHIYODA), Some(&admin), &settings).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let clerk = app.clerk_token(&admin, CHIYODA, "CL0001", &["05", "06"]).await;
    World { app, admin, clerk }
}

impl World {
    /// A resident whose card carries `aps`; his id.
    async fn resident(&self, kana_given: &str, fid: &str, aps: &[&str]) -> String {
        let body = resident_body("ヤマダ", kana_given, "3450101");
        let reply = self.app.post(&residents_path(CHIYODA), Some(&self.clerk), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
        let reply =
            self.app.post(&cards_path(CHIYODA), Some(&self.clerk), &json!({ "fid": fid, "resident_id": id })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let reply = self.app.post_empty(&format!("{}/local-area", card_path(CHIYODA, fid)), Some(&self.clerk)).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        let path = format!("{}/aps", card_path(CHIYODA, fid));
        let reply = self.app.post(&path, Some(&self.clerk), &json!({ "business_ids": aps })).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        id
    }

    /// Registers `url` as `system`'s webhook and issues its secret; the secret.
    async fn webhook(&self, system: &str, url: &str) -> String {
        let path = format!("/api/v1/business-systems/{system}/webhook");
        let reply = self.app.put(&path, Some(&self.admin), &json!({ "url": url })).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.json()["url"], url);
        let reply = self.app.post_empty(&format!("{path}/secret"), Some(&self.admin)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        reply.json()["secret"].as_str().unwrap().to_owned()
    }
}

fn accepted(got: &Arc<Mutex<Vec<Received>>>) -> Vec<Received> {
    got.lock().unwrap().iter().filter(|r| (200..300).contains(&r.answered)).cloned().collect()
}

fn item(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn place(id: &str) -> Vec<u64> {
    id.split('-').map(|p| p.parse().unwrap()).collect()
}

/// A receiver that answers 500 twice, then 200: every item arrives once it is acknowledged, each once, in order,
/// signed with the secret, after the retries.
async fn a_failing_receiver_gets_every_item_once_in_order_after_retries(backend: Backend) {
    let w = world(backend).await;
    let residents = [
        w.resident("タロウ", "FID0000000000001", &["05"]).await,
        w.resident("ジロウ", "FID0000000000002", &["05"]).await,
        w.resident("サブロウ", "FID0000000000003", &["05"]).await,
    ];
    let (url, got) = receiver(Arc::new(|n| Some(if n < 2 { 500 } else { 200 }))).await;
    let secret = w.webhook("05", &url).await;

    eventually(Duration::from_secs(30), "three acknowledged deliveries", || async {
        (accepted(&got).len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = got.lock().unwrap().clone();
    let statuses: Vec<u16> = all.iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [500, 500, 200, 200, 200], "no item is pushed again after its 2xx");
    let first = item(&all[0])["id"].clone();
    assert!(all[..3].iter().all(|r| item(r)["id"] == first), "the failed item is retried, not skipped");

    let delivered = accepted(&got);
    let items: Vec<Value> = delivered.iter().map(item).collect();
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| place(id));
    sorted.dedup();
    assert_eq!(ids, sorted, "in the feed's order, each once");
    let whom: Vec<&str> = items.iter().map(|i| i["resident_id"].as_str().unwrap()).collect();
    assert_eq!(whom, residents.iter().map(String::as_str).collect::<Vec<_>>());
    for (r, i) in delivered.iter().zip(&items) {
        assert_eq!(i["type"], "registered");
        // The same minimisation as a page: 05's default list.
        let mut keys: Vec<&str> = i["data"].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["card_status", "kana_name", "kanji_name"], "{i}");
        assert_eq!(r.headers["x-cardap-item-id"], i["id"].as_str().unwrap());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let sig = r.headers["x-cardap-signature"].strip_prefix("sha256=").unwrap();
        ring::hmac::verify(&key, &r.body, &hex::decode(sig).unwrap()).expect("a valid signature");
    }

    // Pushed personal data is in the read access log, as a page read by the system would be.
    let log = w.app.get(&format!("/api/v1/audit/access?municipality={CHIYODA}"), Some(&w.admin)).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let deliveries: Vec<Value> = log.ndjson().into_iter().filter(|l| l["operation"] == "feed.delivery").collect();
    for resident in &residents {
        let logged = deliveries.iter().any(|l| l["residents"].as_array().unwrap().iter().any(|r| r == resident));
        assert!(logged, "{resident}: {deliveries:?}");
    }
    assert!(deliveries.iter().all(|l| l["terminal"] == "business-system 05"), "{deliveries:?}");
}

/// 05's receiver never answers; 06's gets its items meanwhile, each once.
async fn a_receiver_that_never_answers_delays_no_other_system(backend: Backend) {
    let w = world(backend).await;
    let (slow_url, slow) = receiver(Arc::new(|_| None)).await;
    let (fast_url, fast) = receiver(Arc::new(|_| Some(204))).await;
    w.webhook("05", &slow_url).await;
    w.webhook("06", &fast_url).await;
    let a = w.resident("タロウ", "FID0000000000001", &["05", "06"]).await;
    let b = w.resident("ジロウ", "FID0000000000002", &["05", "06"]).await;

    eventually(Duration::from_secs(15), "06's two items while 05's receiver hangs", || async {
        (accepted(&fast).len() >= 2).then_some(())
    })
    .await;
    let whom: Vec<String> =
        accepted(&fast).iter().map(|r| item(r)["resident_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(whom, [a, b]);
    assert!(accepted(&slow).is_empty());
}

/// The routes: only https (or http to loopback); a secret needs a URL; a removed webhook is gone; only the
/// system administrator.
async fn the_webhook_routes_answer_what_they_document(backend: Backend) {
    let w = world(backend).await;
    let path = "/api/v1/business-systems/05/webhook";
    let reply = w.app.put(path, Some(&w.admin), &json!({ "url": "http://b05.example.jp/hook" })).await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", reply.text);
    assert_eq!(reply.error_fields(), ["/url"]);
    let reply = w.app.post_empty(&format!("{path}/secret"), Some(&w.admin)).await;
    reply.problem(StatusCode::CONFLICT, "/problems/webhook-not-configured");
    let reply = w.app.put(path, Some(&w.clerk), &json!({ "url": "https://b05.example.jp/hook" })).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    let reply =
        w.app.put("/api/v1/business-systems/77/webhook", Some(&w.admin), &json!({ "url": "https://x.jp/" })).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let reply = w.app.put(path, Some(&w.admin), &json!({ "url": "https://b05.example.jp/hook" })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["secret_issued"], false);
    let reply = w.app.delete(path, Some(&w.admin)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let reply = w.app.post_empty(&format!("{path}/secret"), Some(&w.admin)).await;
    reply.problem(StatusCode::CONFLICT, "/problems/webhook-not-configured");
}

on_both_backends!(
    a_failing_receiver_gets_every_item_once_in_order_after_retries,
    a_receiver_that_never_answers_delays_no_other_system,
    the_webhook_routes_answer_what_they_document,
);
