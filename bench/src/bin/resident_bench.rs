//! `resident-bench`: resident service registration on PostgreSQL, measured from outside the server.
//!
//! It starts the release `cardap` binary as a child process (`cardap serve --listen 127.0.0.1:0` on the given
//! database, with a fresh master key in `CARDAP_MASTER_KEY`; the address is read from its JSON start-up log) and:
//! 1. **registrations/s**: 8 concurrent clients `POST …/residents` with full valid bodies for a few seconds
//!    (p50/p99 latency too);
//! 2. **import rows/s and peak memory**: a registry CSV of 1,000,000 rows is generated on the fly and streamed to
//!    `POST …/registry/import` (never written to disk nor held in memory) while the NDJSON report is read; the
//!    server's peak resident memory is `VmHWM` of `/proc/<pid>/status`, reset just before the import through
//!    `/proc/<pid>/clear_refs` (and `VmRSS` is sampled every 100 ms as a cross-check);
//! 3. **search latency over 1,000,000 residents**: `ResidentRegistered` events (every tenth resident with a
//!    card: `CardRegistered` + `ResidentCardAttached`) are appended in batches of 1,000 streams with
//!    `append_many` through the same sealed event store the server uses (same master key) while no server runs;
//!    a new server is started and its projections' **catch-up** on that backlog is timed from its start (polled on
//!    `rm_residents` / `rm_cards`; events/s), then ~2,000 searches by kana prefix, birth
//!    date and FID with random values are timed one at a time (p50/p99 per kind);
//! 4. **rebuild events/s**: with the server stopped, `cardap projections rebuild residents` builds a new resident
//!    register beside the live one from the log (every resident event) and switches to it (blue/green); events/s
//!    over its whole run.
//!
//! Targets (printed with PASS/MISS): import ≥ 20,000 rows/s, peak RSS < 200 MB, search p99 < 20 ms, catch-up and
//! rebuild ≥ 100,000 events/s.
//!
//! Run: `scripts/bench` (after the other benches), or by hand on an empty PostgreSQL database:
//!
//! ```text
//! cargo build --release -p cardap-api --bin cardap -p cardap-bench --bin resident-bench
//! target/release/resident-bench --database-url postgres://postgres@127.0.0.1:5432/bench [--quick]
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use cardap_api::app::sealed_store;
use cardap_bench::{ADMIN_PASSWORD, Server};
use cardap_domain::card::{self, Card, CardEvent};
use cardap_domain::contact::{Email, Phone, Sex};
use cardap_domain::resident::{
    self, Address, CardFid, EraDate, Erasable, KanaName, KanjiName, Occupation, PersonName, PersonalData, PostalCode,
    Resident, ResidentEvent, ResidentId,
};
use cardap_domain::{Aggregate, MunicipalityCode};
use cardap_store::{Database, EventStore, ExpectedVersion, MasterKey, NewEvent, StreamAppend, StreamId};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(name = "resident-bench", about = "Resident registration, registry import and search on PostgreSQL")]
struct Args {
    /// An empty PostgreSQL database for the server and the benchmark.
    #[arg(long, value_name = "URL")]
    database_url: String,
    /// The `cardap` binary to run as the server (default: `cardap` next to this binary).
    #[arg(long, value_name = "PATH")]
    cardap: Option<PathBuf>,
    /// A smoke run with small sizes (20,000 rows and residents): the numbers are not meaningful.
    #[arg(long)]
    quick: bool,
    /// Rows of the generated registry file (default 1,000,000; 20,000 with --quick).
    #[arg(long)]
    import_rows: Option<u64>,
    /// Residents to search over (default 1,000,000; 20,000 with --quick).
    #[arg(long)]
    residents: Option<u64>,
    /// Searches to time (default 2,000; 300 with --quick).
    #[arg(long)]
    searches: Option<u64>,
    /// Seconds of registrations (default 10; 2 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
}

const MUNICIPALITY: &str = "131016";
const PASSWORD: &str = "BenchPassw0rd";
const CLIENTS: usize = 8;
/// Residents per `append_many` while populating, and the writers doing it at once.
const POPULATE_BATCH: u64 = 1_000;
const POPULATE_WRITERS: u64 = 4;
/// Every n-th populated resident gets a card (for the FID search).
const CARD_EVERY: u64 = 10;
/// Registry rows per chunk of the streamed upload.
const CSV_CHUNK_ROWS: u64 = 1_000;

const IMPORT_TARGET: f64 = 20_000.0;
/// Issue 11's target for the read models' catch-up and rebuild, events/s.
const PROJECTION_TARGET: f64 = 100_000.0;
const RSS_TARGET_MB: f64 = 200.0;
const SEARCH_P99_TARGET_MS: f64 = 20.0;

/// Family names: (kanji, kana).
const FAMILIES: [(&str, &str); 24] = [
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
];

/// Given names: (kanji, kana, ISO 5218 sex).
const GIVEN: [(&str, &str, &str); 16] = [
    ("太郎", "タロウ", "1"),
    ("一郎", "イチロウ", "1"),
    ("健太", "ケンタ", "1"),
    ("翔", "ショウ", "1"),
    ("大輔", "ダイスケ", "1"),
    ("誠", "マコト", "1"),
    ("拓也", "タクヤ", "1"),
    ("直樹", "ナオキ", "1"),
    ("花子", "ハナコ", "2"),
    ("陽子", "ヨウコ", "2"),
    ("美咲", "ミサキ", "2"),
    ("愛", "アイ", "2"),
    ("恵子", "ケイコ", "2"),
    ("由美", "ユミ", "2"),
    ("さくら", "サクラ", "2"),
    ("真由美", "マユミ", "2"),
];

/// A small deterministic generator (xorshift64*): the same data every run, no dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items` (which must not be empty).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[i.min(items.len().saturating_sub(1))]
    }

    /// A birth date between 1930 and 2015 (days 1–28, so it always exists).
    fn birth(&mut self) -> (i32, u32, u32) {
        (1930 + self.below(86) as i32, 1 + self.below(12) as u32, 1 + self.below(28) as u32)
    }
}

/// A person of the generated data.
#[derive(Debug, Clone, Copy)]
struct Person {
    family: (&'static str, &'static str),
    given: (&'static str, &'static str, &'static str),
    birth: (i32, u32, u32),
}

impl Person {
    fn random(rng: &mut Rng) -> Person {
        Person { family: *rng.pick(&FAMILIES), given: *rng.pick(&GIVEN), birth: rng.birth() }
    }

    fn era_date(&self) -> Result<EraDate> {
        let (y, m, d) = self.birth;
        EraDate::from_gregorian(y, m, d).map_err(|e| anyhow::anyhow!("birth date {y}-{m}-{d}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

#[derive(Debug, Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self, municipality: Option<&str>, operator_id: &str, password: &str) -> Result<String> {
        let mut body = json!({"operator_id": operator_id, "password": password});
        if let Some(code) = municipality {
            body["municipality"] = json!(code);
        }
        let reply = self.client.post(self.url("/api/v1/sessions")).json(&body).send().await?;
        let status = reply.status();
        let body: Value = reply.json().await?;
        ensure!(status.as_u16() == 201, "login of {operator_id}: {status} {body}");
        Ok(body["token"].as_str().context("a token")?.to_owned())
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
        let reply = self.client.post(self.url(path)).bearer_auth(token).json(body).send().await?;
        let status = reply.status().as_u16();
        let text = reply.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

/// Latencies of one measurement.
#[derive(Debug, Default)]
struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile_ms(&mut self, p: f64) -> f64 {
        self.0.sort();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// `1234567.8` → `1,234,568`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Registrations

fn resident_body(person: &Person, n: u64) -> Result<Value> {
    Ok(json!({
        "kana_name": {"family": person.family.1, "given": person.given.1},
        "kanji_name": {"family": person.family.0, "given": person.given.0},
        "birth_date": person.era_date()?.as_str(),
        "sex": person.given.2,
        "postal_code": "100-0001",
        "address1": format!("東京都千代田区千代田{}－{}", 1 + n % 9, 1 + n % 30),
        "address2": "千代田ハイツ１０１",
        "phone": "03-3333-4444",
        "email": format!("resident{n}@example.jp"),
        "occupation": "会社員",
    }))
}

/// Registrations by `CLIENTS` clerks at once for `duration`: (registrations, elapsed, latencies).
async fn registrations(api: &Api, clerks: &[String], duration: Duration) -> Result<(u64, Duration, Latencies)> {
    let started = Instant::now();
    let path = format!("/api/v1/municipalities/{MUNICIPALITY}/residents");
    let mut tasks = vec![];
    for (client, token) in clerks.iter().enumerate() {
        let (api, token, path) = (api.clone(), token.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1_000 + client as u64);
            let mut latencies = vec![];
            let mut n = 0_u64;
            while started.elapsed() < duration {
                let body = resident_body(&Person::random(&mut rng), client as u64 * 1_000_000 + n)?;
                let t = Instant::now();
                let (status, reply) = api.post(&token, &path, &body).await?;
                ensure!(status == 201, "registration answered {status}: {reply}");
                latencies.push(t.elapsed());
                n += 1;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = vec![];
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.len() as u64, started.elapsed(), Latencies(all)))
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Import

/// Rows `from..to` of the generated registry file (既存住基 layout, `YYYYMMDD` dates).
fn csv_chunk(from: u64, to: u64) -> Bytes {
    let mut out = String::with_capacity(((to - from) * 130) as usize);
    for i in from..to {
        let mut rng = Rng::new(i);
        let p = Person::random(&mut rng);
        let (y, m, d) = p.birth;
        let _ = writeln!(
            out,
            "{i:09},{} {},{} {},{y:04}{m:02}{d:02},{},{:03}-{:04},東京都千代田区千代田{}－{}",
            p.family.0,
            p.given.0,
            p.family.1,
            p.given.1,
            p.given.2,
            100 + i % 900,
            i % 10_000,
            1 + i % 9,
            1 + i % 30
        );
    }
    Bytes::from(out)
}

#[derive(Debug)]
struct ImportResult {
    rows: u64,
    elapsed: Duration,
    /// Until the last row line arrived (the summary waits for the read models, at most 5 s).
    rows_elapsed: Duration,
    summary: Value,
    error_lines: u64,
    peak_mb: f64,
    peak_reset: bool,
    sampled_max_mb: f64,
}

async fn import(api: &Api, server: &Server, token: &str, rows: u64) -> Result<ImportResult> {
    let peak_reset = server.reset_peak();
    let sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let sampled = sampled.clone();
        let pid = server.pid();
        tokio::spawn(async move {
            loop {
                if let Ok(status) = tokio::fs::read_to_string(format!("/proc/{pid}/status")).await
                    && let Some(kb) = status
                        .lines()
                        .find(|l| l.starts_with("VmRSS"))
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|v| v.parse::<u64>().ok())
                {
                    sampled.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let header = Bytes::from_static("宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\n".as_bytes());
    let chunks = rows.div_ceil(CSV_CHUNK_ROWS);
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(header) }).chain(
        futures_util::stream::iter(0..chunks)
            .map(move |k| Ok(csv_chunk(k * CSV_CHUNK_ROWS + 1, ((k + 1) * CSV_CHUNK_ROWS).min(rows) + 1))),
    );
    let started = Instant::now();
    let reply = api
        .client
        .post(api.url(&format!("/api/v1/municipalities/{MUNICIPALITY}/registry/import")))
        .bearer_auth(token)
        .header("content-type", "text/csv; charset=UTF-8")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?;
    ensure!(reply.status().as_u16() == 200, "import answered {}: {}", reply.status(), reply.text().await?);
    let mut stream = reply.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut last = Value::Null;
    let mut error_lines = 0_u64;
    let mut rows_elapsed = Duration::ZERO;
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = &pending[start..start + end];
            start += end + 1;
            if line.starts_with(b"{\"row\"") {
                rows_elapsed = started.elapsed();
                if line.windows(17).any(|w| w == b"\"outcome\":\"error\"") {
                    error_lines += 1;
                }
            } else if !line.is_empty() {
                last = serde_json::from_slice(line)?;
            }
        }
        pending.drain(..start);
    }
    let elapsed = started.elapsed();
    sampler.abort();
    let summary = last.get("summary").cloned().with_context(|| format!("no summary line; last line {last}"))?;
    Ok(ImportResult {
        rows,
        elapsed,
        rows_elapsed,
        summary,
        error_lines,
        peak_mb: server.memory_mb("VmHWM")?,
        peak_reset,
        sampled_max_mb: sampled.load(Ordering::Relaxed) as f64 / 1024.0,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Search

/// Appends `count` residents (every `CARD_EVERY`-th with a card) in batches of `POPULATE_BATCH` streams through
/// `store`, from `POPULATE_WRITERS` tasks. Returns the FIDs of the cards.
async fn populate(store: Arc<dyn EventStore>, count: u64) -> Result<Vec<String>> {
    let code = MunicipalityCode::parse(MUNICIPALITY)?;
    let batches = count.div_ceil(POPULATE_BATCH);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = vec![];
    for writer in 0..POPULATE_WRITERS {
        let (store, code, done) = (store.clone(), code.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut fids = vec![];
            for batch in (writer..batches).step_by(POPULATE_WRITERS as usize) {
                let from = batch * POPULATE_BATCH;
                let to = ((batch + 1) * POPULATE_BATCH).min(count);
                let mut appends = Vec::with_capacity((to - from) as usize * 2);
                for i in from..to {
                    appends.extend(resident_appends(&code, i, &mut fids)?);
                }
                let metadata = cardap_bench::bench_metadata(&code, "resident-bench");
                store.append_many(appends, &metadata).await?;
                let total = done.fetch_add(to - from, Ordering::Relaxed) + (to - from);
                if total % 100_000 < POPULATE_BATCH {
                    eprintln!(
                        "  populated {} residents ({:.0}/s)",
                        thousands(total as f64),
                        total as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            anyhow::Ok(fids)
        }));
    }
    let mut fids = vec![];
    for task in tasks {
        fids.extend(task.await??);
    }
    Ok(fids)
}

/// The appends of resident `i`: his stream, and his card's when he has one.
fn resident_appends(code: &MunicipalityCode, i: u64, fids: &mut Vec<String>) -> Result<Vec<StreamAppend>> {
    let mut rng = Rng::new(10_000_000 + i);
    let p = Person::random(&mut rng);
    let parse = |what: &str, e: cardap_domain::ParseError| anyhow::anyhow!("{what}: {e}");
    let personal = PersonalData {
        kana_name: PersonName {
            family: KanaName::parse(p.family.1).map_err(|e| parse("kana", e))?,
            given: KanaName::parse(p.given.1).map_err(|e| parse("kana", e))?,
        },
        kanji_name: PersonName {
            family: KanjiName::parse(p.family.0).map_err(|e| parse("kanji", e))?,
            given: KanjiName::parse(p.given.0).map_err(|e| parse("kanji", e))?,
        },
        birth_date: p.era_date()?,
        sex: Sex::parse(p.given.2).map_err(|e| parse("sex", e))?,
        postal_code: Some(PostalCode::parse("100-0001").map_err(|e| parse("postal code", e))?),
        address1: Some(
            Address::parse(&format!("東京都千代田区千代田{}－{}", 1 + i % 9, 1 + i % 30))
                .map_err(|e| parse("address", e))?,
        ),
        address2: None,
        phone: Some(Phone::parse("03-3333-4444").map_err(|e| parse("phone", e))?),
        email: Some(Email::parse(&format!("r{i}@example.jp")).map_err(|e| parse("email", e))?),
        occupation: Some(Occupation::parse("会社員").map_err(|e| parse("occupation", e))?),
        custom_fields: BTreeMap::new(),
    };
    let id = ResidentId::from_uuid(Uuid::new_v4());
    let mut events = vec![NewEvent::from_domain(&ResidentEvent::Registered {
        id,
        municipality: code.clone(),
        registry_key: None,
        personal: Erasable::Known(personal),
    })];
    let mut appends = vec![];
    if i.is_multiple_of(CARD_EVERY) {
        let fid = CardFid::parse(&format!("B{i:015}")).map_err(|e| parse("fid", e))?;
        events.push(NewEvent::from_domain(&ResidentEvent::CardAttached { fid: fid.clone() }));
        appends.push(StreamAppend {
            stream: StreamId::new(Card::STREAM_TYPE, &card::stream_key(&fid))?,
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent::from_domain(&CardEvent::Registered {
                fid: fid.clone(),
                municipality: code.clone(),
                resident_id: id,
            })],
        });
        fids.push(fid.as_str().to_owned());
    }
    appends.push(StreamAppend {
        stream: StreamId::new(Resident::STREAM_TYPE, &resident::stream_key(&id))?,
        expected: ExpectedVersion::NoStream,
        events,
    });
    Ok(appends)
}

/// Waits until every read model in `views` (projection name, the stream type it follows) has applied the last event
/// of its stream type in the log, polling the stored checkpoints (cheap: counting a million rows every half second
/// would take a share of the machine the catch-up is measured on). Answers how long it waited.
async fn wait_for_projections(pool: &sqlx::PgPool, views: &[(&str, &str)], limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut targets = Vec::new();
    for (name, stream_type) in views {
        let last: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM events WHERE stream_type = $1 \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .bind(*stream_type)
        .fetch_optional(pool)
        .await?;
        targets.push((*name, last.unwrap_or((0, 0))));
    }
    loop {
        let mut behind = Vec::new();
        for (name, target) in &targets {
            let reached: Option<(i64, i64)> =
                sqlx::query_as("SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1")
                    .bind(*name)
                    .fetch_optional(pool)
                    .await?;
            if reached.unwrap_or((0, 0)) < *target {
                behind.push(*name);
            }
        }
        if behind.is_empty() {
            return Ok(started.elapsed());
        }
        ensure!(started.elapsed() < limit, "the read models {behind:?} did not catch up within {limit:?}");
        if last_report.elapsed() > Duration::from_secs(15) {
            let residents: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_residents").fetch_one(pool).await?;
            eprintln!("  projections: {behind:?} behind; {} residents so far", thousands(residents as f64));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `cardap projections rebuild <name>` on the database (its own data directory, the server's master key)
/// and answers how long it took.
fn rebuild(binary: &PathBuf, url: &str, master_key: &str, name: &str) -> Result<Duration> {
    let data = tempfile::tempdir().context("a data directory for the rebuild")?;
    let started = Instant::now();
    let output = std::process::Command::new(binary)
        .args(["projections", "rebuild", name, "--database-url", url])
        .env("CARDAP_DATA_DIR", data.path())
        .env("CARDAP_MASTER_KEY", master_key)
        .env("CARDAP_LOG", "warn")
        .output()
        .with_context(|| format!("running {} projections rebuild", binary.display()))?;
    let elapsed = started.elapsed();
    ensure!(
        output.status.success(),
        "cardap projections rebuild {name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(elapsed)
}

/// The three kinds of search.
const KINDS: [&str; 3] = ["kana_prefix", "birth_date", "fid"];

/// `count` searches, one at a time, cycling through the kinds with random values: latencies per kind and the
/// average number of hits.
async fn searches(api: &Api, token: &str, count: u64, fids: &[String]) -> Result<Vec<(Latencies, f64)>> {
    let path = api.url(&format!("/api/v1/municipalities/{MUNICIPALITY}/residents"));
    let mut rng = Rng::new(42);
    let mut results: Vec<(Latencies, u64)> = KINDS.iter().map(|_| (Latencies::default(), 0)).collect();
    ensure!(!fids.is_empty(), "no cards to search for");
    for n in 0..count {
        let kind = (n % 3) as usize;
        let value = match kind {
            0 => {
                let kana: Vec<char> = rng.pick(&FAMILIES).1.chars().collect();
                kana[..(1 + rng.below(kana.len() as u64) as usize).min(kana.len())].iter().collect::<String>()
            }
            1 => Person::random(&mut rng).era_date()?.as_str().to_owned(),
            _ => rng.pick(fids).clone(),
        };
        let t = Instant::now();
        let reply = api.client.get(&path).bearer_auth(token).query(&[(KINDS[kind], value.as_str())]).send().await?;
        let status = reply.status();
        let body: Value = reply.json().await?;
        let elapsed = t.elapsed();
        ensure!(status.as_u16() == 200, "search {}={value} answered {status}: {body}", KINDS[kind]);
        let hits = body["items"].as_array().map_or(0, Vec::len) as u64;
        ensure!(kind != 2 || hits == 1, "the card {value} should find its resident: {body}");
        if let Some((latencies, total)) = results.get_mut(kind) {
            latencies.0.push(elapsed);
            *total += hits;
        }
    }
    Ok(results
        .into_iter()
        .map(|(l, hits)| {
            let n = l.0.len().max(1) as f64;
            (l, hits as f64 / n)
        })
        .collect())
}

/// One line of the results table.
fn table_row(label: &str, value: String, p50: String, p99: String) {
    println!("{label:<50} | {value:>16} | {p50:>8} | {p99:>8}");
}

// ---------------------------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.database_url.starts_with("postgres"), "resident-bench runs on PostgreSQL: give a postgres:// URL");
    let import_rows = args.import_rows.unwrap_or(if args.quick { 20_000 } else { 1_000_000 });
    let residents = args.residents.unwrap_or(if args.quick { 20_000 } else { 1_000_000 });
    let search_count = args.searches.unwrap_or(if args.quick { 300 } else { 2_000 });
    let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 10.0 });
    ensure!(seconds.is_finite() && seconds > 0.0, "--seconds must be a positive number");
    let binary = match args.cardap {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("cardap"),
    };
    let total = Instant::now();

    // A throwaway master key; RESIDENT_BENCH_MASTER_KEY gives one instead, to profile the database after the run
    // (`cardap projections rebuild` needs it).
    let master_text = match std::env::var("RESIDENT_BENCH_MASTER_KEY") {
        Ok(given) => given,
        Err(_) => {
            let mut key = [0_u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random master key: {e}"))?;
            STANDARD.encode(key)
        }
    };
    let master = MasterKey::from_base64(&master_text)?;

    eprintln!("resident-bench: starting {}", binary.display());
    let server = Server::start(&binary, &args.database_url, &master_text)?;
    eprintln!("  server pid {} at {}", server.pid(), server.address);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(4 * 3600)).build()?;
    let api = Api { client: client.clone(), base: server.address.clone() };

    // Setup: the municipality, an operations manager (imports) and CLIENTS clerks (registrations, searches).
    let admin = api.login(None, "admin", ADMIN_PASSWORD).await?;
    let (status, body) = api
        .post(
            &admin,
            "/api/v1/municipalities",
            &json!({"code": MUNICIPALITY, "name": "千代田区", "kind": "municipality", "display_order": 1}),
        )
        .await?;
    ensure!(status == 201, "registering the municipality: {status} {body}");
    let mut operators = vec![
        json!({"operator_id": "MGR01", "password": PASSWORD, "name": "運用 管理", "roles": ["operations_manager"]}),
    ];
    for c in 0..CLIENTS {
        operators.push(
            json!({"operator_id": format!("CLK{c:02}"), "password": PASSWORD, "name": "窓口 担当", "roles": ["clerk"]}),
        );
    }
    let (status, body) =
        api.post(&admin, &format!("/api/v1/municipalities/{MUNICIPALITY}/operators"), &Value::Array(operators)).await?;
    ensure!(status == 201, "registering the operators: {status} {body}");
    let mut clerks = vec![];
    for c in 0..CLIENTS {
        clerks.push(api.login(Some(MUNICIPALITY), &format!("CLK{c:02}"), PASSWORD).await?);
    }

    // 1. Registrations.
    eprintln!("1. registrations: {CLIENTS} clients for {seconds} s");
    let (registered, reg_elapsed, mut reg_latencies) =
        registrations(&api, &clerks, Duration::from_secs_f64(seconds)).await?;
    let reg_rate = registered as f64 / reg_elapsed.as_secs_f64();
    let setup_rss = server.memory_mb("VmRSS")?;
    server.stop()?;

    // 2. Import, on a server process of its own: the first one's memory holds what 10 Argon2id hashes (19 MiB
    // each) left in the allocator's arenas, which says nothing about the import.
    let server = Server::start(&binary, &args.database_url, &master_text)?;
    let api = Api { client, base: server.address.clone() };
    let manager = api.login(Some(MUNICIPALITY), "MGR01", PASSWORD).await?;
    let start_rss = server.memory_mb("VmRSS")?;
    eprintln!(
        "2. import: {} generated rows, streamed to a fresh server (pid {}, RSS {start_rss:.1} MB)",
        thousands(import_rows as f64),
        server.pid()
    );
    let imported = import(&api, &server, &manager, import_rows).await?;
    let import_rate = imported.rows as f64 / imported.elapsed.as_secs_f64();
    ensure!(
        imported.summary["imported"].as_u64() == Some(import_rows) && imported.error_lines == 0,
        "the import did not take every row: {} ({} error lines)",
        imported.summary,
        imported.error_lines
    );
    // The import's own read model done before the server stops, so that the catch-up below is only the
    // populated residents'.
    let db = Database::connect(&args.database_url, 8).await?;
    let pool = db.postgres_pool().context("a PostgreSQL database")?.clone();
    let limit = Duration::from_secs(if args.quick { 600 } else { 3 * 3600 });
    let registry_after = wait_for_projections(&pool, &[("registry", "registry_entry")], limit).await?;
    server.stop()?;

    // 3. Search over `residents` more residents, appended while no server runs; the read models' catch-up on
    // them is timed from the start of the next server.
    eprintln!("3. search: populating {} residents through the sealed event store", thousands(residents as f64));
    let store = sealed_store(&db, &master).await?;
    let populate_started = Instant::now();
    let fids = populate(store, residents).await?;
    let populate_elapsed = populate_started.elapsed();
    let backlog = residents + 2 * fids.len() as u64;
    let catch_up_started = Instant::now();
    let server = Server::start(&binary, &args.database_url, &master_text)?;
    let api = Api { client: api.client.clone(), base: server.address.clone() };
    wait_for_projections(&pool, &[("residents", "resident"), ("cards", "card")], limit).await?;
    let catch_up = catch_up_started.elapsed();
    let catch_up_rate = backlog as f64 / catch_up.as_secs_f64().max(1e-9);
    eprintln!(
        "  a new server's projections caught up on {} events in {:.1} s ({} events/s); {} searches",
        thousands(backlog as f64),
        catch_up.as_secs_f64(),
        thousands(catch_up_rate),
        search_count
    );
    let searcher = api.login(Some(MUNICIPALITY), "CLK00", PASSWORD).await?;
    let mut results = searches(&api, &searcher, search_count, &fids).await?;
    let mut all = Latencies(results.iter().flat_map(|(l, _)| l.0.iter().copied()).collect());
    let total_residents: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_residents").fetch_one(&pool).await?;
    // The read access log's part of a search: the one INSERT (and its durable commit) a search page records.
    let log = cardap_store::AccessLogStore::new(cardap_projections::connect_pool(&args.database_url, 2)?);
    let mut records = Latencies::default();
    for n in 0..search_count {
        let read = cardap_store::NewReadAccess {
            recorded_at: chrono::Utc::now().timestamp_millis(),
            municipality: MUNICIPALITY.to_owned(),
            operator: cardap_domain::OperatorKey::from_uuid(uuid::Uuid::now_v7()),
            terminal: Some("bench".to_owned()),
            request_id: Some(format!("bench-{n}")),
            operation: "resident.search",
            residents: (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect(),
            registry_keys: vec![],
        };
        let started = Instant::now();
        log.record(&read).await?;
        records.0.push(started.elapsed());
    }

    server.stop()?;

    // 4. The resident register rebuilt from the log by `cardap projections rebuild residents`, the server stopped.
    let resident_events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_type = 'resident'").fetch_one(&pool).await?;
    eprintln!("4. rebuild: the resident register from {} events", thousands(resident_events as f64));
    let rebuild_elapsed = rebuild(&binary, &args.database_url, &master_text, "residents")?;
    let rebuild_rate = resident_events as f64 / rebuild_elapsed.as_secs_f64().max(1e-9);

    // Report.
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    let fsync: String = sqlx::query_scalar("SELECT current_setting('fsync')").fetch_one(&pool).await?;
    println!(
        "resident-bench — PostgreSQL {version} (fsync={fsync}), the release cardap as a child process{}",
        if args.quick { ", --quick (numbers not meaningful)" } else { "" }
    );
    let ms = |v: f64| format!("{v:.1}");
    let dash = || "—".to_owned();
    table_row("measurement", "value".into(), "p50 ms".into(), "p99 ms".into());
    println!("{}", "-".repeat(50 + 3 + 16 + 3 + 8 + 3 + 8));
    table_row(
        &format!("registrations/s, {CLIENTS} clients, {:.0} s", reg_elapsed.as_secs_f64()),
        thousands(reg_rate),
        ms(reg_latencies.percentile_ms(0.5)),
        ms(reg_latencies.percentile_ms(0.99)),
    );
    table_row(
        &format!("import rows/s, {} rows streamed", thousands(imported.rows as f64)),
        thousands(import_rate),
        dash(),
        dash(),
    );
    table_row("server peak RSS during the import (VmHWM)", format!("{:.1} MB", imported.peak_mb), dash(), dash());
    for ((latencies, hits), kind) in results.iter_mut().zip(KINDS) {
        table_row(
            &format!("search by {kind} ({hits:.1} hits on average)"),
            format!("{} req", latencies.0.len()),
            ms(latencies.percentile_ms(0.5)),
            ms(latencies.percentile_ms(0.99)),
        );
    }
    table_row(
        &format!("search, all kinds, over {} residents", thousands(total_residents as f64)),
        format!("{} req", all.0.len()),
        ms(all.percentile_ms(0.5)),
        ms(all.percentile_ms(0.99)),
    );
    let (record_p50, search_p50) = (records.percentile_ms(0.5), all.percentile_ms(0.5));
    table_row(
        "read access log: a search's record (20 ids, one INSERT)",
        format!("{:.1}% of search p50", 100.0 * record_p50 / search_p50.max(1e-9)),
        ms(record_p50),
        ms(records.percentile_ms(0.99)),
    );
    println!(
        "import: the last row line after {:.1} s ({} rows/s), the summary after {:.1} s (it waits ≤ 5 s for the \
         read models)",
        imported.rows_elapsed.as_secs_f64(),
        thousands(imported.rows as f64 / imported.rows_elapsed.as_secs_f64().max(1e-9)),
        imported.elapsed.as_secs_f64()
    );
    println!(
        "import: the registry read model applied the last row {:.1} s after the import's summary",
        registry_after.as_secs_f64()
    );
    println!(
        "import memory: a fresh server, RSS {start_rss:.1} MB before the import; {}; VmRSS sampled every 100 ms: \
         max {:.1} MB",
        if imported.peak_reset { "VmHWM reset just before it" } else { "VmHWM since the server started" },
        imported.sampled_max_mb
    );
    println!("the server of the registrations, after its logins and registrations: RSS {setup_rss:.1} MB");
    println!(
        "populate: {} residents + {} cards appended in {:.1} s ({} residents/s), no server running",
        thousands(residents as f64),
        thousands(fids.len() as f64),
        populate_elapsed.as_secs_f64(),
        thousands(residents as f64 / populate_elapsed.as_secs_f64()),
    );
    println!(
        "catch-up: a new server's read models on those {} events in {:.1} s = {} events/s (from its start)",
        thousands(backlog as f64),
        catch_up.as_secs_f64(),
        thousands(catch_up_rate)
    );
    println!(
        "rebuild: the resident register from {} events in {:.1} s = {} events/s (`cardap projections rebuild \
         residents`, the server stopped)",
        thousands(resident_events as f64),
        rebuild_elapsed.as_secs_f64(),
        thousands(rebuild_rate)
    );
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!("targets:");
    println!(
        "  import ≥ {} rows/s: {} ({})",
        thousands(IMPORT_TARGET),
        verdict(import_rate >= IMPORT_TARGET),
        thousands(import_rate)
    );
    println!(
        "  server peak RSS < {RSS_TARGET_MB:.0} MB during the import: {} ({:.1} MB)",
        verdict(imported.peak_mb < RSS_TARGET_MB),
        imported.peak_mb
    );
    println!(
        "  catch-up ≥ {} events/s: {} ({})",
        thousands(PROJECTION_TARGET),
        verdict(catch_up_rate >= PROJECTION_TARGET),
        thousands(catch_up_rate)
    );
    println!(
        "  rebuild ≥ {} events/s: {} ({})",
        thousands(PROJECTION_TARGET),
        verdict(rebuild_rate >= PROJECTION_TARGET),
        thousands(rebuild_rate)
    );
    let p99 = all.percentile_ms(0.99);
    println!("  search p99 < {SEARCH_P99_TARGET_MS:.0} ms: {} ({p99:.1} ms)", verdict(p99 < SEARCH_P99_TARGET_MS));
    if args.quick {
        println!("  (--quick: a smoke run, these numbers are not meaningful)");
    }
    println!("total run time {:.1} s", total.elapsed().as_secs_f64());
    Ok(())
}
