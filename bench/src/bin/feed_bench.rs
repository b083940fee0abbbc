//! feed-bench: the replication feeds (issue 11) measured from outside the release `cardap`, on PostgreSQL.
//!
//! Starts the release `cardap` as a child process on the given (fresh) database with HTTPS — its server
//! certificate from a CA made here, mutual TLS trusting cardap's own CA — and business system 05 with a business
//! server certificate issued through the API (a CSR made here), presented as the client certificate by every
//! subscriber, as a business system reads its feed. Then:
//! 1. **append-to-delivery latency**: `--writers` clerks (8) change residents whose cards carry 05's AP at full
//!    speed for `--seconds` (each `PATCH …/residents/{id}` a new kana name: one `changed` item of 05's feed),
//!    while one subscriber follows the feed by Server-Sent Events and another by long polls (`wait=20`). An
//!    item's latency is from its write's answer (the commit, as the clerk sees it) to its arrival at the
//!    subscriber (0 when it came first, which it may: the answer waits for the resident register); p50/p99 per
//!    subscriber, target p99 < 100 ms (PASS/MISS); and from the write's request, an upper bound;
//! 2. **throughput**: a backlog of `--backlog` newly entitled residents (a `registered` item each; resident, card
//!    and AP appended through the sealed event store in batches of 1,000, as resident-bench populates) is read
//!    from the feed's start by `--subscribers` (10) concurrent subscribers in pages of 500: items/s each and in
//!    total.
//!
//! Run: `scripts/bench` (a durable cluster, a fresh database), or by hand on an empty PostgreSQL database:
//!
//! ```text
//! cargo build --release -p cardap-api --bin cardap -p cardap-bench --bin feed-bench
//! target/release/feed-bench --database-url postgres://postgres@127.0.0.1:5432/feedbench [--quick]
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_api::app::sealed_store;
use cardap_bench::{ADMIN_PASSWORD, Server};
use cardap_commands::pki::ca::{self, Profile, Serial};
use cardap_domain::card::{self, Card, CardEvent};
use cardap_domain::contact::Sex;
use cardap_domain::resident::{
    self, CardFid, EraDate, Erasable, KanaName, KanjiName, PersonName, PersonalData, Resident, ResidentEvent,
    ResidentId,
};
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode};
use cardap_store::{Database, EventStore, ExpectedVersion, MasterKey, NewEvent, StreamAppend, StreamId};
use clap::Parser;
use futures_util::StreamExt;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "feed-bench", about = "Replication feed: append-to-delivery latency and subscriber throughput")]
struct Args {
    /// An empty PostgreSQL database for the server and the benchmark.
    #[arg(long, value_name = "URL")]
    database_url: String,
    /// The `cardap` binary to run as the server (default: `cardap` next to this binary).
    #[arg(long, value_name = "PATH")]
    cardap: Option<PathBuf>,
    /// Seconds of writes for the latency (default 10; 3 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Newly entitled residents in the backlog the subscribers read (default 20,000; 2,000 with --quick).
    #[arg(long)]
    backlog: Option<u64>,
    /// Concurrent subscribers reading the backlog.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// A short smoke run: the numbers are not meaningful.
    #[arg(long)]
    quick: bool,
}

const MUNICIPALITY: &str = "131016";
const SYSTEM: &str = "05";
const PASSWORD: &str = "BenchPassw0rd";
/// Residents each writer changes in turn.
const RESIDENTS_PER_WRITER: usize = 8;
/// Alternating kana given names: each change is a change.
const NAMES: [&str; 2] = ["タロウ", "ジロウ"];
const P99_TARGET_MS: f64 = 100.0;
const PAGE: usize = 500;
const POPULATE_BATCH: u64 = 1_000;
const POPULATE_WRITERS: u64 = 4;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.database_url.starts_with("postgres"), "feed-bench runs on PostgreSQL: give a postgres:// URL");
    let seconds = args.seconds.unwrap_or(if args.quick { 3.0 } else { 10.0 });
    let backlog = args.backlog.unwrap_or(if args.quick { 2_000 } else { 20_000 });
    ensure!(seconds.is_finite() && seconds > 0.0, "--seconds must be a positive number");
    ensure!(args.writers > 0 && args.subscribers > 0, "--writers and --subscribers must be positive");
    let binary = match &args.cardap {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("cardap"),
    };
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let total = Instant::now();

    let mut key = [0_u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow!("random master key: {e}"))?;
    let master_text = STANDARD.encode(key);
    let master = MasterKey::from_base64(&master_text)?;
    let pki = Pki::make(scratch.path())?;
    let env = [
        ("CARDAP_TLS_CERT_FILE", pki.server_chain.display().to_string()),
        ("CARDAP_TLS_KEY_FILE", pki.server_key.display().to_string()),
    ];
    eprintln!("feed-bench: starting {}", binary.display());
    let server = Server::start_with(&binary, &args.database_url, &master_text, &env)?;
    let base = server.address.replacen("http://", "https://", 1);
    let api = Api { client: pki.client(None)?, base: base.clone() };

    // Setup: the municipality, business system 05 serving it, its client certificate, the clerks.
    let admin = api.login(None, "admin", ADMIN_PASSWORD).await?;
    let municipality = json!({"code": MUNICIPALITY, "name": "千代田区", "kind": "municipality", "display_order": 1});
    api.expect(&admin, "POST", "/api/v1/municipalities", Some(&municipality), 201).await?;
    let system = json!({
        "business_id": SYSTEM, "name": "施設予約", "top_url": "https://b05.example.jp/",
        "operator_admin_url": "https://b05.example.jp/operators", "personalize_url": "https://b05.example.jp/me",
    });
    api.expect(&admin, "POST", "/api/v1/business-systems", Some(&system), 201).await?;
    let permit = format!("/api/v1/business-systems/{SYSTEM}/permitted-municipalities");
    api.expect(&admin, "POST", &permit, Some(&json!({"code": MUNICIPALITY})), 201).await?;
    let settings = json!({"custom_fields": [], "catalog": [SYSTEM], "presets": []});
    let path = format!("/api/v1/municipalities/{MUNICIPALITY}/resident-settings");
    api.expect(&admin, "PUT", &path, Some(&settings), 200).await?;
    let (csr, business_key) = business_csr()?;
    let path = format!("/api/v1/business-systems/{SYSTEM}/certificates");
    let issued = api.expect(&admin, "POST", &path, Some(&json!({"csr": csr})), 201).await?;
    let business_cert = issued["certificate"].as_str().context("the business server certificate")?.to_owned();
    let feed = Feed { client: pki.client(Some((&business_cert, &business_key)))?, base };
    let operators: Vec<Value> = (0..args.writers)
        .map(|c| {
            json!({"operator_id": format!("CLK{c:02}"), "password": PASSWORD, "name": "窓口 担当",
                "roles": ["clerk"], "business_systems": [SYSTEM]})
        })
        .collect();
    let path = format!("/api/v1/municipalities/{MUNICIPALITY}/operators");
    api.expect(&admin, "POST", &path, Some(&Value::Array(operators)), 201).await?;
    let mut clerks = vec![];
    for c in 0..args.writers {
        clerks.push(api.login(Some(MUNICIPALITY), &format!("CLK{c:02}"), PASSWORD).await?);
    }

    // 1. Latency.
    eprintln!("1. latency: {} writers × {RESIDENTS_PER_WRITER} residents with 05's AP", args.writers);
    let mut residents = vec![];
    for (c, clerk) in clerks.iter().enumerate() {
        let mut own = vec![];
        for r in 0..RESIDENTS_PER_WRITER {
            own.push(api.resident_with_ap(clerk, &format!("F{c:02}{r:013}")).await?);
        }
        residents.push(own);
    }
    let start = feed.end().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let sse = Subscriber::default();
    let polled = Subscriber::default();
    let sse_task = tokio::spawn(feed.clone().follow_sse(start.clone(), sse.clone(), stop.clone()));
    let poll_task = tokio::spawn(feed.clone().follow_polls(start, polled.clone(), stop.clone()));
    sse.wait_connected().await?;
    eprintln!("   subscribers connected; {} writers for {seconds} s", args.writers);
    let writes = write_changes(&api, &clerks, &residents, Duration::from_secs_f64(seconds)).await?;
    let expected = writes.len();
    let waited = Instant::now();
    while (sse.count() < expected || polled.count() < expected) && waited.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    sse_task.abort();
    poll_task.abort();
    let sse_result = latencies(&writes, &sse)?;
    let poll_result = latencies(&writes, &polled)?;

    // 2. Throughput.
    eprintln!("2. throughput: a backlog of {backlog} newly entitled residents through the sealed event store");
    let db = Database::connect(&args.database_url, 8).await?;
    let store = sealed_store(&db, &master).await?;
    populate(store, backlog).await?;
    let pool = db.postgres_pool().context("a PostgreSQL database")?.clone();
    let items = (residents.len() * RESIDENTS_PER_WRITER) as i64 + expected as i64 + backlog as i64;
    let indexed = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM feed_items WHERE business_id = $1")
            .bind(SYSTEM)
            .fetch_one(&pool)
            .await?;
        if n >= items {
            break;
        }
        ensure!(indexed.elapsed() < Duration::from_secs(1800), "the feed index holds {n} of {items} items");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "   indexed {items} items {:.1} s after the last append; {} subscribers read from the start",
        indexed.elapsed().as_secs_f64(),
        args.subscribers
    );
    let started = Instant::now();
    let mut readers = vec![];
    for _ in 0..args.subscribers {
        let feed = feed.clone();
        readers.push(tokio::spawn(async move { feed.read_all().await }));
    }
    let mut each = vec![];
    for reader in readers {
        each.push(reader.await??);
    }
    let wall = started.elapsed();
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    let fsync: String = sqlx::query_scalar("SELECT current_setting('fsync')").fetch_one(&pool).await?;
    let sync: String = sqlx::query_scalar("SELECT current_setting('synchronous_commit')").fetch_one(&pool).await?;
    server.stop()?;

    // Report.
    println!(
        "feed-bench — PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync}), cardap over HTTPS \
         with mutual TLS{}",
        if args.quick { ", --quick (numbers not meaningful)" } else { "" }
    );
    let rate = expected as f64 / writes.elapsed.as_secs_f64();
    println!(
        "append-to-delivery latency, {} writers at full speed for {:.1} s: {expected} changes ({rate:.0}/s), write \
         p50 {:.1} ms / p99 {:.1} ms",
        args.writers,
        writes.elapsed.as_secs_f64(),
        percentile_ms(&writes.latencies, 0.5),
        percentile_ms(&writes.latencies, 0.99),
    );
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    for (label, result) in [("SSE", &sse_result), ("long poll (wait=20)", &poll_result)] {
        let p99 = percentile_ms(&result.latencies, 0.99);
        println!(
            "  {label:<20} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  ({} of {expected} items, {} before their \
             write's answer) — p99 < {P99_TARGET_MS:.0} ms: {}",
            percentile_ms(&result.latencies, 0.5),
            p99,
            percentile_ms(&result.latencies, 1.0),
            result.latencies.len(),
            result.early,
            verdict(p99 < P99_TARGET_MS && result.latencies.len() == expected),
        );
        println!(
            "  {:<20} from the write's request instead (its commit lies between): p50 {:.1} ms, p99 {:.1} ms",
            "",
            percentile_ms(&result.from_request, 0.5),
            percentile_ms(&result.from_request, 0.99),
        );
    }
    let read: u64 = each.iter().map(|(n, _)| n).sum();
    println!(
        "throughput, {} subscribers each reading {items} items from the start (pages of {PAGE}): {:.0} items/s in \
         total ({read} items in {:.1} s)",
        args.subscribers,
        read as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
    let rates: Vec<String> = each.iter().map(|(n, d)| format!("{:.0}", *n as f64 / d.as_secs_f64())).collect();
    println!("  items/s each: {}", rates.join(", "));
    for (n, _) in &each {
        ensure!(*n as i64 == items, "a subscriber read {n} items of {items}");
    }
    if args.quick {
        println!("  (--quick: a smoke run, these numbers are not meaningful)");
    }
    println!("total run time {:.1} s", total.elapsed().as_secs_f64());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// The server's PKI and clients

struct Pki {
    server_chain: PathBuf,
    server_key: PathBuf,
    root: CertificateDer<'static>,
}

impl Pki {
    /// A CA of this run and a server certificate for 127.0.0.1 it issued, in files.
    fn make(dir: &Path) -> Result<Pki> {
        let now = chrono::Utc::now();
        let new = ca::create("cardap feed-bench", now)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let profile = Profile::Tls { dns_names: vec!["localhost".into()], ips: vec!["127.0.0.1".parse()?] };
        let cert = new.issuing.issue(&key.subject_public_key_info(), &profile, &Serial::random()?, None, now)?;
        let server_chain = dir.join("server.pem");
        std::fs::write(&server_chain, format!("{}{}", ca::pem("CERTIFICATE", &cert), new.issuing.cert_pem()))?;
        let server_key = dir.join("server.key");
        std::fs::write(&server_key, key.serialize_pem())?;
        Ok(Pki { server_chain, server_key, root: CertificateDer::from(new.root.cert_der().to_vec()) })
    }

    /// An HTTPS client trusting the server, presenting `identity` (certificate chain and key, PEM) when given:
    /// rustls on ring, the workspace's one provider.
    fn client(&self, identity: Option<(&str, &str)>) -> Result<reqwest::Client> {
        #[allow(deprecated)] // ring, the workspace's one provider (see api/src/tls.rs)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.root.clone())?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes())?)?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(reqwest::Client::builder().use_preconfigured_tls(config).tcp_nodelay(true).build()?)
    }
}

/// A CSR for 05's business server certificate (CN: the host of its URLs) and its key, PEM.
fn business_csr() -> Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CountryName, "JP");
    params.distinguished_name.push(DnType::OrganizationName, "feed-bench");
    params.distinguished_name.push(DnType::CommonName, "b05.example.jp");
    Ok((params.serialize_request(&key)?.pem()?, key.serialize_pem()))
}

// ---------------------------------------------------------------------------------------------------------------
// The clerks' side

#[derive(Debug, Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn login(&self, municipality: Option<&str>, operator_id: &str, password: &str) -> Result<String> {
        let mut body = json!({"operator_id": operator_id, "password": password});
        if let Some(code) = municipality {
            body["municipality"] = json!(code);
        }
        let reply = self.call(None, "POST", "/api/v1/sessions", Some(&body)).await?;
        ensure!(reply.0 == 201, "login of {operator_id}: {} {}", reply.0, reply.1);
        Ok(reply.1["token"].as_str().context("a token")?.to_owned())
    }

    async fn call(&self, token: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = request.send().await?;
        let status = reply.status().as_u16();
        let text = reply.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn expect(&self, token: &str, method: &str, path: &str, body: Option<&Value>, status: u16) -> Result<Value> {
        let (got, reply) = self.call(Some(token), method, path, body).await?;
        ensure!(got == status, "{method} {path}: {got} {reply}");
        Ok(reply)
    }

    /// A resident whose card (`fid`) carries 05's AP; his id.
    async fn resident_with_ap(&self, clerk: &str, fid: &str) -> Result<String> {
        let body = json!({
            "kana_name": {"family": "ヤマダ", "given": "ハナコ"}, "kanji_name": {"family": "山田", "given": "花子"},
            "birth_date": "3450101", "sex": "2",
        });
        let residents = format!("/api/v1/municipalities/{MUNICIPALITY}/residents");
        let id = self.expect(clerk, "POST", &residents, Some(&body), 201).await?["resident_id"]
            .as_str()
            .context("a resident id")?
            .to_owned();
        let cards = format!("/api/v1/municipalities/{MUNICIPALITY}/cards");
        self.expect(clerk, "POST", &cards, Some(&json!({"fid": fid, "resident_id": id})), 201).await?;
        let (status, reply) = self.call(Some(clerk), "POST", &format!("{cards}/{fid}/local-area"), None).await?;
        ensure!((200..300).contains(&status), "local area: {status} {reply}");
        let aps = json!({"business_ids": [SYSTEM]});
        let (status, reply) = self.call(Some(clerk), "POST", &format!("{cards}/{fid}/aps"), Some(&aps)).await?;
        ensure!((200..300).contains(&status), "AP: {status} {reply}");
        Ok(id)
    }
}

/// The writes of the latency run: when each was sent and answered (its commit lies between), by resident and
/// its number among his changes.
struct Writes {
    by_change: HashMap<(String, usize), Written>,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Writes {
    fn len(&self) -> usize {
        self.by_change.len()
    }
}

/// Each writer changes its residents in turn, as fast as the answers come, for `duration`.
async fn write_changes(api: &Api, clerks: &[String], residents: &[Vec<String>], duration: Duration) -> Result<Writes> {
    let started = Instant::now();
    let mut tasks = vec![];
    for (clerk, own) in clerks.iter().zip(residents) {
        let (api, clerk, own) = (api.clone(), clerk.clone(), own.clone());
        tasks.push(tokio::spawn(async move {
            let mut answered = vec![];
            let mut latencies = vec![];
            let mut n = 0_usize;
            while started.elapsed() < duration {
                let resident = &own[n % own.len()];
                let k = n / own.len();
                let name = NAMES[k % 2];
                let body = json!({"kana_name": {"family": "ヤマダ", "given": name}});
                let path = format!("/api/v1/municipalities/{MUNICIPALITY}/residents/{resident}");
                let sent = Instant::now();
                api.expect(&clerk, "PATCH", &path, Some(&body), 200).await?;
                let at = Instant::now();
                latencies.push(at - sent);
                answered.push(((resident.clone(), k), Written { sent, answered: at, name }));
                n += 1;
            }
            anyhow::Ok((answered, latencies))
        }));
    }
    let mut writes = Writes { by_change: HashMap::new(), latencies: vec![], elapsed: Duration::ZERO };
    for task in tasks {
        let (answered, latencies) = task.await??;
        writes.by_change.extend(answered);
        writes.latencies.extend(latencies);
    }
    writes.elapsed = started.elapsed();
    Ok(writes)
}

// ---------------------------------------------------------------------------------------------------------------
// The business system's side

#[derive(Debug, Clone)]
struct Feed {
    client: reqwest::Client,
    base: String,
}

/// What a following subscriber received: (resident, kana given name, when), in order.
#[derive(Debug, Clone, Default)]
struct Subscriber {
    got: Arc<Mutex<Vec<(String, String, Instant)>>>,
    connected: Arc<AtomicBool>,
}

impl Subscriber {
    fn count(&self) -> usize {
        self.got.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn take(&self, item: &Value, at: Instant) {
        if item["type"] != "changed" {
            return;
        }
        let resident = item["resident_id"].as_str().unwrap_or_default().to_owned();
        let name = item["data"]["kana_name"]["given"].as_str().unwrap_or_default().to_owned();
        self.got.lock().unwrap_or_else(PoisonError::into_inner).push((resident, name, at));
    }

    async fn wait_connected(&self) -> Result<()> {
        let started = Instant::now();
        while !self.connected.load(Ordering::SeqCst) {
            ensure!(started.elapsed() < Duration::from_secs(30), "the SSE subscriber did not connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Feed {
    fn url(&self, query: &str) -> String {
        format!("{}/api/v1/feeds/{SYSTEM}?{query}", self.base)
    }

    async fn page(&self, cursor: Option<&str>, wait: u64) -> Result<(Vec<Value>, Option<String>)> {
        let mut query = format!("limit={PAGE}&wait={wait}");
        if let Some(cursor) = cursor {
            query.push_str(&format!("&cursor={cursor}"));
        }
        let reply = self.client.get(self.url(&query)).send().await?;
        let status = reply.status();
        let body: Value = reply.json().await?;
        ensure!(status.as_u16() == 200, "feed page: {status} {body}");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        Ok((items, body["next_cursor"].as_str().map(str::to_owned)))
    }

    /// The cursor after the last item there is now.
    async fn end(&self) -> Result<Option<String>> {
        let mut cursor = None;
        loop {
            let (items, next) = self.page(cursor.as_deref(), 0).await?;
            cursor = next.or(cursor);
            if items.is_empty() {
                return Ok(cursor);
            }
        }
    }

    /// Follows the feed by Server-Sent Events from `cursor` until `stop`.
    async fn follow_sse(self, cursor: Option<String>, into: Subscriber, stop: Arc<AtomicBool>) -> Result<()> {
        let mut request = self.client.get(self.url("")).header("accept", "text/event-stream");
        if let Some(cursor) = cursor {
            request = request.header("last-event-id", cursor);
        }
        let reply = request.send().await?;
        ensure!(reply.status().as_u16() == 200, "SSE: {}", reply.status());
        into.connected.store(true, Ordering::SeqCst);
        let mut stream = reply.bytes_stream();
        let mut pending: Vec<u8> = vec![];
        while let Some(chunk) = stream.next().await {
            let at = Instant::now();
            pending.extend_from_slice(&chunk?);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&event).lines() {
                    if let Some(data) = line.strip_prefix("data:") {
                        into.take(&serde_json::from_str(data.trim_start())?, at);
                    }
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        Ok(())
    }

    /// Follows the feed by long polls (`wait=20`) from `cursor` until `stop`.
    async fn follow_polls(self, mut cursor: Option<String>, into: Subscriber, stop: Arc<AtomicBool>) -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            let (items, next) = self.page(cursor.as_deref(), 20).await?;
            let at = Instant::now();
            for item in &items {
                into.take(item, at);
            }
            cursor = next.or(cursor);
        }
        Ok(())
    }

    /// Reads the whole feed from its start in pages: how many items, and how long it took.
    async fn read_all(self) -> Result<(u64, Duration)> {
        let started = Instant::now();
        let mut cursor: Option<String> = None;
        let mut count = 0_u64;
        loop {
            let (items, next) = self.page(cursor.as_deref(), 0).await?;
            if items.is_empty() {
                return Ok((count, started.elapsed()));
            }
            count += items.len() as u64;
            cursor = next.or(cursor);
        }
    }
}

/// One write.
#[derive(Debug, Clone, Copy)]
struct Written {
    sent: Instant,
    answered: Instant,
    name: &'static str,
}

/// One subscriber's latencies from each write's answer (0 when the item came first: `early` of them), and from
/// its request (an upper bound: the commit was between the two).
struct Timed {
    latencies: Vec<Duration>,
    early: usize,
    from_request: Vec<Duration>,
}

/// Matches the k-th `changed` item of each resident with his k-th change.
fn latencies(writes: &Writes, subscriber: &Subscriber) -> Result<Timed> {
    let got = subscriber.got.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut result = Timed { latencies: vec![], early: 0, from_request: vec![] };
    for (resident, name, at) in got {
        let k = seen.entry(resident.clone()).or_default();
        let Some(written) = writes.by_change.get(&(resident.clone(), *k)) else {
            // A change whose answer the writer had not recorded when the run ended cannot be timed.
            continue;
        };
        ensure!(name == written.name, "resident {resident}'s change {k} came as {name}, written {}", written.name);
        *k += 1;
        if at < written.answered {
            result.early += 1;
        }
        result.latencies.push(at.saturating_duration_since(written.answered));
        result.from_request.push(at.saturating_duration_since(written.sent));
    }
    Ok(result)
}

fn percentile_ms(values: &[Duration], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort();
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------------------------
// The backlog

/// Appends `count` residents, each with a card carrying 05's AP (a `registered` item each), in batches of
/// `POPULATE_BATCH` from `POPULATE_WRITERS` tasks through the sealed store.
async fn populate(store: Arc<dyn EventStore>, count: u64) -> Result<()> {
    let code = MunicipalityCode::parse(MUNICIPALITY)?;
    let system = BusinessId::parse(SYSTEM)?;
    let batches = count.div_ceil(POPULATE_BATCH);
    let mut tasks = vec![];
    for writer in 0..POPULATE_WRITERS {
        let (store, code, system) = (store.clone(), code.clone(), system.clone());
        tasks.push(tokio::spawn(async move {
            for batch in (writer..batches).step_by(POPULATE_WRITERS as usize) {
                let (from, to) = (batch * POPULATE_BATCH, ((batch + 1) * POPULATE_BATCH).min(count));
                let mut appends = Vec::with_capacity(((to - from) * 2) as usize);
                for i in from..to {
                    appends.extend(entitled_resident(&code, &system, i)?);
                }
                let metadata = cardap_bench::bench_metadata(&code, "feed-bench");
                store.append_many(appends, &metadata).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Resident `i` registered, with a card whose local area and 05's AP are installed.
fn entitled_resident(code: &MunicipalityCode, system: &BusinessId, i: u64) -> Result<Vec<StreamAppend>> {
    let parse = |what: &str, e: cardap_domain::ParseError| anyhow!("{what}: {e}");
    let personal = PersonalData {
        kana_name: PersonName {
            family: KanaName::parse("サトウ").map_err(|e| parse("kana", e))?,
            given: KanaName::parse("ハナコ").map_err(|e| parse("kana", e))?,
        },
        kanji_name: PersonName {
            family: KanjiName::parse("佐藤").map_err(|e| parse("kanji", e))?,
            given: KanjiName::parse("花子").map_err(|e| parse("kanji", e))?,
        },
        birth_date: EraDate::from_gregorian(1970 + (i % 40) as i32, 1 + (i % 12) as u32, 1 + (i % 28) as u32)
            .map_err(|e| anyhow!("birth date: {e}"))?,
        sex: Sex::parse("2").map_err(|e| parse("sex", e))?,
        postal_code: None,
        address1: None,
        address2: None,
        phone: None,
        email: None,
        occupation: None,
        custom_fields: Default::default(),
    };
    let id = ResidentId::from_uuid(Uuid::new_v4());
    let fid = CardFid::parse(&format!("E{i:015}")).map_err(|e| parse("fid", e))?;
    let card = vec![
        NewEvent::from_domain(&CardEvent::Registered { fid: fid.clone(), municipality: code.clone(), resident_id: id }),
        NewEvent::from_domain(&CardEvent::LocalAreaCreated),
        NewEvent::from_domain(&CardEvent::ApInstalled {
            business_id: system.clone(),
            standard_id: None,
            consent: None,
        }),
    ];
    let resident = vec![
        NewEvent::from_domain(&ResidentEvent::Registered {
            id,
            municipality: code.clone(),
            registry_key: None,
            personal: Erasable::Known(personal),
        }),
        NewEvent::from_domain(&ResidentEvent::CardAttached { fid: fid.clone() }),
    ];
    Ok(vec![
        StreamAppend {
            stream: StreamId::new(Resident::STREAM_TYPE, &resident::stream_key(&id))?,
            expected: ExpectedVersion::NoStream,
            events: resident,
        },
        StreamAppend {
            stream: StreamId::new(Card::STREAM_TYPE, &card::stream_key(&fid))?,
            expected: ExpectedVersion::NoStream,
            events: card,
        },
    ])
}
