//! card-bench: the time per card at the counter (issue 13's benchmark): register the resident from the card + create
//! the local area + install two APs (01 and the library AP 02 with its 標準ID), through the card agent's flow
//! (`cardap_card_agent::Agent`) against the card emulator in vsmartcard's virtual reader (pcscd + vpcd) and cardap
//! over mutual TLS (HTTPS with a test CA, the clerk's operator certificate issued through the API) — the set-up of
//! the end-to-end test `tests/tests/card_agent.rs`, with cardap in process on a fresh database.
//!
//! Each card is a new person's card: inserted (waiting until vpcd and pcscd show it: the clerk's hand, not timed),
//! then timed from the agent's start (its TLS client built, the reader connected) to its outcome, the PIN given
//! non-interactively (the resident's typing is not timed), then taken out. Prints each card's time, the mean, p50
//! and max, and PASS when every card took < 1 s, else MISS.
//!
//! ```sh
//! scripts/pcsc start    # pcscd with vpcd, once per host
//! cargo build --release -p cardap-bench --bin card-bench
//! target/release/card-bench [--cards 10] [--backend sqlite|postgres]   # postgres: CARDAP_TEST_DATABASE_URL
//! ```

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use cardap_card_access::{CardReader, Readers};
use cardap_card_agent::{Agent, PinPrompt, Request, Server, ServerConfig};
use cardap_card_emulator::vpcd::{self, Inserted, PullOut};
use cardap_card_emulator::{Card, CardData};
use cardap_domain::resident::CardFid;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::{Backend, TestApp, resident_settings_path};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "card-bench", about = "Time per card: register + local area + two APs through the card agent")]
struct Args {
    /// Cards in a row.
    #[arg(long, default_value_t = 10)]
    cards: usize,
    /// A smoke run: 3 cards.
    #[arg(long)]
    quick: bool,
    /// `sqlite` (a temporary file) or `postgres` (a fresh database from CARDAP_TEST_DATABASE_URL).
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// vpcd's address.
    #[arg(long, default_value = "127.0.0.1:35963")]
    vpcd: String,
}

/// The target per card, excluding the resident's typing.
const TARGET: Duration = Duration::from_secs(1);
const CHIYODA: &str = "131016";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let cards = if args.quick { 3 } else { args.cards };
    ensure!(cards > 0, "--cards must be positive");
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        other => bail!("--backend {other}: sqlite or postgres"),
    };
    let readers = Readers::establish().map_err(|e| anyhow!("{e} (start it with scripts/pcsc start)"))?;
    let reader = readers.pick(None).map_err(|e| anyhow!("{e} (is vpcd loaded? scripts/pcsc start)"))?;
    drop(readers);

    let dir = tempfile::tempdir()?;
    let (app, config) = counter(backend, dir.path()).await?;
    println!(
        "card-bench: {cards} cards, each: PIN, the four facts, registry lookup, resident and card registered, local area \
         created, APs 01 and 02 installed ({} build, {}, reader {reader})",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        backend.name()
    );
    let mut times = Vec::with_capacity(cards);
    for i in 0..cards {
        let fid = format!("BENCH{i:04}");
        let card = card(&app, &fid)?;
        let inserted = insert(&card, &args.vpcd, &reader)?;
        let (took, outcome) = run_agent(&config).await?;
        take_out(inserted, &reader)?;
        let aps = outcome["aps"].as_array().map_or(0, Vec::len);
        ensure!(outcome["local_area"] == json!(true) && aps == 2, "card {fid}: not written as expected: {outcome}");
        println!("  card {:>3}: {:>7.1} ms", i + 1, took.as_secs_f64() * 1e3);
        times.push(took);
    }
    let mut sorted = times.clone();
    sorted.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let p50 = sorted[(sorted.len() - 1) / 2];
    let max = sorted[sorted.len() - 1];
    let verdict = if max < TARGET { "PASS" } else { "MISS" };
    println!(
        "per card: mean {:.1} ms, p50 {:.1} ms, max {:.1} ms (target < {} ms per card, typing excluded: {verdict})",
        mean.as_secs_f64() * 1e3,
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        TARGET.as_millis()
    );
    drop(app);
    Ok(())
}

fn openssl(args: &[&str], path: &Path) -> Result<Vec<u8>> {
    let out = Command::new("openssl").args(args).arg(path).output().context("openssl")?;
    ensure!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    Ok(out.stdout)
}

/// cardap with HTTPS (server certificate from a test CA), Chiyoda offering APs 01 and 02, and a clerk with an
/// operator certificate issued through the API: the agent's configuration.
async fn counter(backend: Backend, dir: &Path) -> Result<(TestApp, ServerConfig)> {
    let (app, root) = cardap_tests::spawn_https_app(backend, dir).await;

    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    for id in ["01", "02"] {
        app.permit(&admin, id, CHIYODA).await;
    }
    let settings = json!({"custom_fields": [], "catalog": ["01", "02"], "presets": []});
    let reply = app.put(&resident_settings_path(CHIYODA), Some(&admin), &settings).await;
    ensure!(reply.status == StatusCode::OK, "resident settings: {}", reply.text);
    let _ = app.clerk_token(&admin, CHIYODA, "CL0001", &["01", "02"]).await;

    let key = dir.join("clerk.key");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"], &key)?;
    let csr = String::from_utf8(openssl(&["req", "-new", "-subj", "/CN=x", "-key"], &key)?)?;
    let path = format!("/api/v1/municipalities/{CHIYODA}/operators/CL0001/certificates");
    let issued = app.post(&path, Some(&admin), &json!({"csr": csr})).await;
    ensure!(issued.status == StatusCode::CREATED, "operator certificate: {}", issued.text);
    let cert = dir.join("clerk.pem");
    std::fs::write(&cert, issued.json()["certificate"].as_str().context("a certificate")?)?;
    let config = ServerConfig::from_files(&app.address, &root, Some(&cert), Some(&key))?;
    Ok((app, config))
}

/// A new person's card, personalized with the key cardap derives for its FID.
fn card(app: &TestApp, fid: &str) -> Result<Arc<Mutex<Card>>> {
    let parsed = CardFid::parse(fid).map_err(|e| anyhow!("FID {fid}: {e:?}"))?;
    let data = CardData {
        fid: fid.into(),
        pin: "1234".into(),
        card_key: hex::encode(app.state.card_writes.card_key(&parsed)),
        name: "山田 太郎".into(),
        address: "東京都千代田区千代田1-1".into(),
        birth_date: "19890107".into(),
        sex: "1".into(),
        not_my_number_card: false,
    };
    Ok(Arc::new(Mutex::new(Card::open(data, None)?)))
}

/// Inserts the card and waits until pcscd shows it (vpcd has let go of the card before; see `vpcd`).
fn insert(card: &Arc<Mutex<Card>>, addr: &str, reader: &str) -> Result<Inserted> {
    let inserted = vpcd::insert(card.clone(), addr, PullOut::default(), Duration::from_secs(10))
        .with_context(|| format!("vpcd at {addr} (scripts/pcsc start)"))?;
    ensure!(inserted.wait_taken(Duration::from_secs(10)), "vpcd never took the card");
    Readers::establish()?.wait_for_card(reader, Duration::from_secs(10))?;
    Ok(inserted)
}

/// Takes the card out, waits until the reader shows empty and pcscd has finished with it.
fn take_out(inserted: Inserted, reader: &str) -> Result<()> {
    inserted.remove()?;
    Readers::establish()?.wait_for_removal(reader, Duration::from_secs(10))?;
    std::thread::sleep(vpcd::SETTLE);
    Ok(())
}

/// The PIN, given at once.
struct Pin;

impl PinPrompt for Pin {
    fn ask(&mut self, _tries_left: u8) -> Option<String> {
        Some("1234".into())
    }
}

/// One agent run as `cardap-agent` does it (its TLS client, the reader connected, the flow), off the runtime;
/// how long it took and cardap's card at the end.
async fn run_agent(config: &ServerConfig) -> Result<(Duration, cardap_tests::serde_json::Value)> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let server = Server::new(&config)?;
        let readers = Readers::establish()?;
        let reader = readers.pick(None)?;
        let card = readers.connect(&reader)?;
        let mut progress = |_| {};
        let request = Request {
            install: vec!["01".into(), "02".into()],
            remove: vec![],
            kana: Some("ヤマダ タロウ".into()),
            issuance_consent: Some(true),
        };
        let outcome = Agent::new(CardReader::new(card), &server, &mut progress).run(&request, &mut Pin)?;
        Ok((started.elapsed(), outcome.card))
    })
    .await?
}
