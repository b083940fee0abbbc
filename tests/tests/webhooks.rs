//! Webhook push of the replication feeds (issue 11 point 2), seen from a business system's receiver: the system
//! administrator registers a URL and issues a signing secret; cardap POSTs each feed item once it is acknowledged,
//! in order, signed `X-Cardap-Signature: sha256=<hex HMAC-SHA-256 of the body>`; a receiver that answers 500 is
//! retried with the configured backoff until it answers 2xx, and a receiver that never answers holds up no other
//! system's deliveries. Over HTTPS the receiver's certificate must chain to a CA cardap trusts (`webhook.ca_file`):
//! one that does not gets nothing until its certificate is fixed, and loses nothing meanwhile. Two nodes on one
//! PostgreSQL database never push one system at once, and one takes over when the other stops. The routes'
//! answers (validation, a secret before a URL, who may) too. Every test runs on PostgreSQL and on SQLite (the
//! two-node test on PostgreSQL only: SQLite is single-node).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardap_commands::webhooks::PushPolicy;
use cardap_domain::BusinessId;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, business_system, card_path, cards_path, eventually, on_both_backends, resident_body,
    resident_path, resident_settings_path, residents_path, spawn_app_on, spawn_app_with,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const CHIYODA: &str = "131016";

/// One request a receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// `None`: it never answered.
    answered: Option<u16>,
    /// When its head had arrived.
    at: Instant,
}

/// How a receiver answers its n-th request (0-based): a status, or `None` to never answer.
type Script = Arc<dyn Fn(usize) -> Option<u16> + Send + Sync>;

/// How a receiver behaves.
struct Behaviour {
    script: Script,
    /// How long it takes over each request before answering (so that two pushes of one system in flight at once
    /// would overlap here).
    delay: Duration,
    /// HTTPS with this acceptor, which the test may swap while it runs (a receiver fixing its certificate);
    /// `None`: plain HTTP.
    tls: Option<Arc<Mutex<TlsAcceptor>>>,
}

impl Behaviour {
    fn answering(script: Script) -> Self {
        Behaviour { script, delay: Duration::ZERO, tls: None }
    }
}

/// Requests of one business system (`X-Cardap-Business-Id`) in flight now, and the most there ever were at once.
#[derive(Debug, Default, Clone, Copy)]
struct Flight {
    now: usize,
    most: usize,
}

/// A local receiver: where it listens and what it got.
struct Receiver {
    /// `http://127.0.0.1:<port>`, or `https://localhost:<port>`.
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
    /// TCP connections accepted (with HTTPS: handshakes tried, whether they succeeded or not).
    connections: Arc<AtomicUsize>,
    flights: Arc<Mutex<BTreeMap<String, Flight>>>,
}

impl Receiver {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests it acknowledged with a 2xx, in arrival order.
    fn accepted(&self) -> Vec<Received> {
        self.all().into_iter().filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s))).collect()
    }

    /// The acknowledged requests of one business system.
    fn accepted_of(&self, system: &str) -> Vec<Received> {
        self.accepted().into_iter().filter(|r| r.headers["x-cardap-business-id"] == system).collect()
    }

    fn most_in_flight(&self, system: &str) -> usize {
        self.flights.lock().unwrap().get(system).map_or(0, |f| f.most)
    }
}

async fn receiver(behaviour: Behaviour) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // HTTPS by the host name its certificate names (and the URL's host is verified against it).
    let base =
        if behaviour.tls.is_some() { format!("https://localhost:{port}") } else { format!("http://127.0.0.1:{port}") };
    let receiver = Receiver { base, got: Arc::default(), connections: Arc::default(), flights: Arc::default() };
    let (got, connections, flights) = (receiver.got.clone(), receiver.connections.clone(), receiver.flights.clone());
    let behaviour = Arc::new(behaviour);
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            connections.fetch_add(1, Ordering::SeqCst);
            let (got, flights, behaviour, requests) =
                (got.clone(), flights.clone(), behaviour.clone(), requests.clone());
            tokio::spawn(async move {
                let served = Served { got, flights, behaviour: behaviour.clone(), requests };
                match &behaviour.tls {
                    Some(acceptor) => {
                        let acceptor = acceptor.lock().unwrap().clone();
                        // A handshake cardap refuses (an untrusted certificate) ends here: no request.
                        if let Ok(tls) = acceptor.accept(socket).await {
                            served.one(tls).await;
                        }
                    }
                    None => served.one(socket).await,
                }
            });
        }
    });
    receiver
}

/// What a connection's task records into.
struct Served {
    got: Arc<Mutex<Vec<Received>>>,
    flights: Arc<Mutex<BTreeMap<String, Flight>>>,
    behaviour: Arc<Behaviour>,
    requests: Arc<AtomicUsize>,
}

impl Served {
    /// Reads one request, records it, takes its time and answers.
    async fn one<S: AsyncRead + AsyncWrite + Unpin>(self, mut socket: S) {
        let mut raw = vec![];
        let mut buf = [0u8; 4096];
        let (head, body_start) = loop {
            let Ok(read) = socket.read(&mut buf).await else { return };
            if read == 0 {
                return;
            }
            raw.extend_from_slice(&buf[..read]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break (String::from_utf8(raw[..end].to_vec()).unwrap(), end + 4);
            }
        };
        let at = Instant::now();
        let headers: BTreeMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers.get("content-length").map_or(0, |v| v.parse().unwrap());
        let mut body = raw[body_start..].to_vec();
        while body.len() < length {
            let Ok(read) = socket.read(&mut buf).await else { return };
            if read == 0 {
                break;
            }
            body.extend_from_slice(&buf[..read]);
        }
        let system = headers.get("x-cardap-business-id").cloned().unwrap_or_default();
        {
            let mut flights = self.flights.lock().unwrap();
            let flight = flights.entry(system.clone()).or_default();
            flight.now += 1;
            flight.most = flight.most.max(flight.now);
        }
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let answer = (self.behaviour.script)(n);
        self.got.lock().unwrap().push(Received { headers, body, answered: answer, at });
        let Some(status) = answer else {
            // Never answers: the pusher's timeout must give up on it.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return;
        };
        tokio::time::sleep(self.behaviour.delay).await;
        // Done before the answer leaves: a next request that overlaps this one was sent without waiting for it.
        self.flights.lock().unwrap().entry(system).or_default().now -= 1;
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = socket.write_all(reply.as_bytes()).await;
        let _ = socket.shutdown().await;
    }
}

/// A CA of a business system's own (not cardap's, not the system's bundle).
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { pem, issuer: Issuer::new(params, key) }
    }

    /// Writes its certificate into `dir`; the file's path (for `webhook.ca_file`).
    fn write(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("webhook-ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A TLS acceptor serving a certificate it issued for `localhost` and 127.0.0.1.
    fn acceptor(&self) -> TlsAcceptor {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        // ring, the workspace's one provider (deprecated only for lacking post-quantum key exchange).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        TlsAcceptor::from(Arc::new(config))
    }
}

struct World {
    app: TestApp,
    admin: String,
    clerk: String,
}

/// Retries fast, so that the tests do.
fn quick_policy() -> PushPolicy {
    PushPolicy {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(200),
        lease: Duration::from_secs(10),
    }
}

async fn world(backend: Backend) -> World {
    world_with(backend, |_| {}).await
}

/// Business systems 05 and 06 serving 千代田区, whose clerk may install both APs; the pusher retries per
/// [`quick_policy`], then `configure` has its say.
async fn world_with(backend: Backend, configure: impl FnOnce(&mut cardap_api::Settings)) -> World {
    let app = spawn_app_with(backend, |s| {
        s.webhook.push = quick_policy();
        configure(s);
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

fn item(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

fn place(id: &str) -> Vec<u64> {
    id.split('-').map(|p| p.parse().unwrap()).collect()
}

/// `delivered` are the `registered` items of `residents`, in the feed's order, each once, with 05's default
/// fields, each signed with `secret` and named by its `X-Cardap-Item-Id`.
fn assert_registered_in_order_and_signed(delivered: &[Received], residents: &[String], secret: &str) {
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
    let rx = receiver(Behaviour::answering(Arc::new(|n| Some(if n < 2 { 500 } else { 200 })))).await;
    let secret = w.webhook("05", &rx.url("/hook")).await;

    eventually(Duration::from_secs(30), "three acknowledged deliveries", || async {
        (rx.accepted().len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = rx.all();
    let statuses: Vec<Option<u16>> = all.iter().map(|r| r.answered).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200), Some(200), Some(200)], "no item again after its 2xx");
    let first = item(&all[0])["id"].clone();
    assert!(all[..3].iter().all(|r| item(r)["id"] == first), "the failed item is retried, not skipped");
    assert_registered_in_order_and_signed(&rx.accepted(), &residents, &secret);

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

/// The retries follow `webhook.timeout_ms`, `webhook.initial_backoff_ms` and `webhook.max_backoff_ms`: the receiver
/// never answers the first attempt, answers 500 to the next six and 200 after. Seen from the receiver, the second
/// attempt comes after the timeout plus the first backoff, each later one after the doubled backoff up to its cap
/// — never sooner (jitter only lengthens a wait), and never much later than the cap plus its jitter (with a wide
/// margin for a loaded machine: an uncapped doubling, or the defaults of 10 s and 1 s, would be seconds over it).
async fn retries_are_spaced_by_the_configured_timeout_and_backoff(backend: Backend) {
    let policy = PushPolicy {
        initial_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_millis(400),
        timeout: Duration::from_millis(1000),
        interval: Duration::from_millis(50),
        lease: Duration::from_secs(10),
    };
    let w = world_with(backend, |s| s.webhook.push = policy).await;
    let resident = w.resident("タロウ", "FID0000000000001", &["05"]).await;
    let rx = receiver(Behaviour::answering(Arc::new(|n| match n {
        0 => None,
        1..=6 => Some(500),
        _ => Some(200),
    })))
    .await;
    let secret = w.webhook("05", &rx.url("/hook")).await;

    eventually(Duration::from_secs(60), "the item acknowledged after seven failed attempts", || async {
        (!rx.accepted().is_empty()).then_some(())
    })
    .await;
    let all = rx.all();
    assert_eq!(all.len(), 8, "one attempt per failure, then the success: {:?}", all.len());
    assert!(all.iter().all(|r| item(r)["id"] == item(&all[0])["id"]), "the same item each time");
    assert_eq!(item(&all[7])["resident_id"], resident.as_str());
    assert_registered_in_order_and_signed(&all[7..], &[resident], &secret);
    let margin = Duration::from_millis(20);
    let slack = Duration::from_secs(5);
    for k in 1..all.len() {
        let gap = all[k].at - all[k - 1].at;
        // After failure k: min(initial × 2^(k-1), max); the first failure also waited for the timeout.
        let backoff = (policy.initial_backoff * (1 << (k - 1))).min(policy.max_backoff);
        let least = backoff + if k == 1 { policy.timeout } else { Duration::ZERO };
        let most = least + backoff / 4 + slack;
        assert!(gap + margin >= least, "attempt {k} came {gap:?} after the one before, sooner than {least:?}");
        assert!(gap <= most, "attempt {k} came {gap:?} after the one before, later than {most:?}");
    }
}

/// 05's receiver never answers; 06's gets its items meanwhile, each once.
async fn a_receiver_that_never_answers_delays_no_other_system(backend: Backend) {
    let w = world(backend).await;
    let slow = receiver(Behaviour::answering(Arc::new(|_| None))).await;
    let fast = receiver(Behaviour::answering(Arc::new(|_| Some(204)))).await;
    w.webhook("05", &slow.url("/hook")).await;
    w.webhook("06", &fast.url("/hook")).await;
    let a = w.resident("タロウ", "FID0000000000001", &["05", "06"]).await;
    let b = w.resident("ジロウ", "FID0000000000002", &["05", "06"]).await;

    eventually(Duration::from_secs(15), "06's two items while 05's receiver hangs", || async {
        (fast.accepted().len() >= 2).then_some(())
    })
    .await;
    let whom: Vec<String> =
        fast.accepted().iter().map(|r| item(r)["resident_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(whom, [a, b]);
    assert!(slow.accepted().is_empty());
}

/// An HTTPS receiver whose certificate comes from a business system's own CA, trusted through `webhook.ca_file`:
/// it gets every item, in order, each once, signed.
async fn an_https_receiver_of_a_ca_in_the_ca_file_gets_every_item_signed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("b05 private CA");
    let ca_file = ca.write(dir.path());
    let w = world_with(backend, |s| s.webhook.ca_file = Some(ca_file)).await;
    let residents = [
        w.resident("タロウ", "FID0000000000001", &["05"]).await,
        w.resident("ジロウ", "FID0000000000002", &["05"]).await,
        w.resident("サブロウ", "FID0000000000003", &["05"]).await,
    ];
    let tls = Arc::new(Mutex::new(ca.acceptor()));
    let rx = receiver(Behaviour { script: Arc::new(|_| Some(200)), delay: Duration::ZERO, tls: Some(tls) }).await;
    assert!(rx.url("/hook").starts_with("https://localhost:"));
    let secret = w.webhook("05", &rx.url("/hook")).await;

    eventually(Duration::from_secs(30), "three deliveries over HTTPS", || async {
        (rx.accepted().len() >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.all().len(), 3, "each item once");
    assert_registered_in_order_and_signed(&rx.accepted(), &residents, &secret);
}

/// A receiver whose certificate chains to no CA cardap trusts (not the system's bundle, not `webhook.ca_file`)
/// gets nothing: every handshake is refused and retried, and the push cursor stays. Once it serves a certificate
/// of the trusted CA, every item arrives from the first, in order, each once.
async fn an_untrusted_receiver_gets_nothing_until_its_certificate_is_fixed(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let trusted = TestCa::new("b05 private CA");
    let stranger = TestCa::new("a CA nobody configured");
    let ca_file = trusted.write(dir.path());
    let w = world_with(backend, |s| s.webhook.ca_file = Some(ca_file)).await;
    let residents = [
        w.resident("タロウ", "FID0000000000001", &["05"]).await,
        w.resident("ジロウ", "FID0000000000002", &["05"]).await,
    ];
    let tls = Arc::new(Mutex::new(stranger.acceptor()));
    let rx =
        receiver(Behaviour { script: Arc::new(|_| Some(200)), delay: Duration::ZERO, tls: Some(tls.clone()) }).await;
    let secret = w.webhook("05", &rx.url("/hook")).await;

    eventually(Duration::from_secs(30), "three refused handshakes (retries)", || async {
        (rx.connections.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(rx.all().is_empty(), "no request may reach a receiver whose certificate does not verify");

    *tls.lock().unwrap() = trusted.acceptor();
    eventually(Duration::from_secs(30), "both items once the certificate is fixed", || async {
        (rx.accepted().len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.all().len(), 2, "each item once");
    assert_registered_in_order_and_signed(&rx.accepted(), &residents, &secret);
}

/// A `webhook.ca_file` that holds no certificate stops the start and is named.
async fn a_ca_file_without_a_certificate_stops_the_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-ca.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let (url, _db_dir) = backend.fresh_database().await;
    let mut settings = cardap_api::Settings::for_tests(url);
    settings.webhook.ca_file = Some(path);
    cardap_tests::install_crypto_provider();
    let Err(e) = cardap_api::Application::build(settings).await else { panic!("the server started") };
    let message = e.to_string();
    assert!(message.contains("webhook.ca_file") && message.contains("not-a-ca.pem"), "{message}");
}

/// Two nodes on one PostgreSQL database and one receiver that takes 200 ms over each request: every item of 05
/// and 06 arrives, in the feed's order, and never two of one system at once — while both nodes compete for the
/// pushes (items arriving one by one through either node), through a backlog that takes twice the lease to push,
/// and when the node holding 05's push stops in the middle of another backlog: the other takes over from the push
/// cursor and delivers the rest.
async fn two_nodes_never_push_one_system_at_once_and_one_takes_over(backend: Backend) {
    if backend == Backend::Sqlite {
        eprintln!("skipped on SQLite: a SQLite database has one node");
        return;
    }
    let policy = PushPolicy {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(100),
        lease: Duration::from_secs(3),
    };
    let mut w = world_with(backend, |s| s.webhook.push = policy).await;
    let mut b = spawn_app_on(w.app.settings.clone(), None).await;
    let residents = [
        w.resident("タロウ", "FID0000000000001", &["05", "06"]).await,
        w.resident("ジロウ", "FID0000000000002", &["05", "06"]).await,
        w.resident("サブロウ", "FID0000000000003", &["05", "06"]).await,
    ];
    let rx =
        receiver(Behaviour { script: Arc::new(|_| Some(200)), delay: Duration::from_millis(200), tls: None }).await;
    w.webhook("05", &rx.url("/05")).await;
    w.webhook("06", &rx.url("/06")).await;
    // The n-th change: resident n mod 3 gets a given name he does not have yet.
    let change = |node: &TestApp, clerk: &str, n: usize| {
        let path = resident_path(CHIYODA, &residents[n % residents.len()]);
        let given = format!("{}{}", ["イチロウ", "ジロウ", "サブロウ"][n % 3], "ノ".repeat(n / 3 + 1));
        node.patch(&path, Some(clerk), None, &json!({ "kana_name": { "family": "ヤマダ", "given": given } }))
    };

    // Both nodes compete: one change at a time through either node, so that the rounds of both pushers are short.
    for n in 0..8 {
        let node = if n % 2 == 0 { &w.app } else { &b };
        let reply = change(node, &w.clerk, n).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // A backlog of 30 (6 s at 200 ms an item, twice the lease: it must be renewed as the items are acknowledged,
    // or the other node takes over in the middle of a POST).
    for n in 8..38 {
        let reply = change(&b, &w.clerk, n).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    for system in ["05", "06"] {
        eventually(Duration::from_secs(90), &format!("the first backlog of {system}"), || async {
            let mut ids: Vec<Value> = rx.accepted_of(system).iter().map(|r| item(r)["id"].clone()).collect();
            ids.dedup();
            (ids.len() >= residents.len() + 38).then_some(())
        })
        .await;
    }
    // Another backlog, and the node holding 05's push stops in its middle.
    for n in 38..58 {
        let reply = change(&b, &w.clerk, n).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let b05 = BusinessId::parse("05").unwrap();
    let holder = eventually(Duration::from_secs(30), "a node pushing 05", || async {
        w.app.state.webhooks.pushed_by(&b05).await.unwrap()
    })
    .await;
    let before_stop = rx.accepted_of("05").len();
    assert!(before_stop < residents.len() + 58, "the backlog was pushed before the stop: nothing to take over");
    let a_holds = holder == w.app.state.webhooks.node();
    assert!(a_holds || holder == b.state.webhooks.node(), "a node of this test pushes 05");
    let (stopped, survivor) = if a_holds { (&mut w.app, &b) } else { (&mut b, &w.app) };
    stopped.shut_down(Duration::from_secs(30)).await;
    // And more through the node that remains.
    for n in 58..61 {
        let reply = change(survivor, &w.clerk, n).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let expected = residents.len() + 61;

    for system in ["05", "06"] {
        let delivered = eventually(Duration::from_secs(90), &format!("every item of {system}"), || async {
            let delivered = rx.accepted_of(system);
            let mut ids: Vec<Value> = delivered.iter().map(|r| item(r)["id"].clone()).collect();
            ids.dedup();
            (ids.len() >= expected).then_some(delivered)
        })
        .await;
        let places: Vec<Vec<u64>> = delivered.iter().map(|r| place(item(r)["id"].as_str().unwrap())).collect();
        assert!(places.windows(2).all(|p| p[0] <= p[1]), "{system}: in the feed's order (an item may come again)");
        let mut distinct = places.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), expected, "{system}: every item");
        let kinds: Vec<Value> = delivered.iter().map(|r| item(r)["type"].clone()).collect();
        assert!(kinds[..residents.len()].iter().all(|k| k == "registered"), "{system}: {kinds:?}");
        assert!(kinds[residents.len()..].iter().all(|k| k == "changed"), "{system}: {kinds:?}");
        assert_eq!(rx.most_in_flight(system), 1, "{system}: two pushes of one system were in flight at once");
    }
    assert!(rx.accepted_of("05").len() > before_stop, "the remaining node went on with 05's push");
    let now = survivor.state.webhooks.pushed_by(&b05).await.unwrap();
    assert!(now.is_none_or(|h| h == survivor.state.webhooks.node()), "only the remaining node pushes now");
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
    retries_are_spaced_by_the_configured_timeout_and_backoff,
    a_receiver_that_never_answers_delays_no_other_system,
    an_https_receiver_of_a_ca_in_the_ca_file_gets_every_item_signed,
    an_untrusted_receiver_gets_nothing_until_its_certificate_is_fixed,
    a_ca_file_without_a_certificate_stops_the_start,
    two_nodes_never_push_one_system_at_once_and_one_takes_over,
    the_webhook_routes_answer_what_they_document,
);
