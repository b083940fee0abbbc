//! `login-flood-bench`: the server under a flood of wrong-password logins, measured from outside (issue 9).
//!
//! It starts the release `cardap` binary as a child process (SQLite in a scratch directory unless
//! `--database-url` is given), logs the system administrator in as the "legitimate clerk", then for `--seconds`
//! (30; 5 with `--quick`) sends wrong-password logins from loopback at `--rate` per second (1,000) for ever new
//! operator IDs, from many connections, while the clerk checks his session (`GET /api/v1/me`) every 20 ms.
//!
//! Prints: the flood's answers by status (401 checked, 429 throttled, 503 turned away), the server's peak
//! resident memory during the flood (`VmHWM` of `/proc/<pid>/status`, reset just before it), the clerk's
//! session-check latency (p50/p99) and whether his session survived (every check 200). Targets (PASS/MISS):
//! peak RSS < 300 MB, session-check p99 < 50 ms, the session survives.
//!
//! Run: `scripts/bench` (after the other benches), or by hand:
//!
//! ```text
//! cargo build --release -p cardap-api --bin cardap -p cardap-bench --bin login-flood-bench
//! target/release/login-flood-bench [--database-url postgres://…] [--seconds 30] [--rate 1000] [--quick]
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_bench::{ADMIN_PASSWORD, Server};
use clap::Parser;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(name = "login-flood-bench", about = "The server under a flood of wrong-password logins")]
struct Args {
    /// A database for the server (default: SQLite in a scratch directory).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The `cardap` binary to run as the server (default: `cardap` next to this binary).
    #[arg(long, value_name = "PATH")]
    cardap: Option<PathBuf>,
    /// Seconds of flood (default 30; 5 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Wrong logins sent per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// A short smoke run: the numbers are not meaningful.
    #[arg(long)]
    quick: bool,
}

/// Connections the flood is sent from.
const FLOOD_CONNECTIONS: usize = 64;
const RSS_TARGET_MB: f64 = 300.0;
const P99_TARGET_MS: f64 = 50.0;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.unwrap_or(if args.quick { 5.0 } else { 30.0 });
    ensure!(seconds.is_finite() && seconds > 0.0 && args.rate > 0, "--seconds and --rate must be positive");
    let binary = match args.cardap {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("cardap"),
    };
    let scratch = std::env::temp_dir().join(format!("cardap-login-flood-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}/cardap.db?mode=rwc", scratch.display()),
    };
    let mut key = [0_u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("random master key: {e}"))?;

    eprintln!("login-flood-bench: starting {}", binary.display());
    let server = Server::start(&binary, &url, &STANDARD.encode(key))?;
    let base = server.address.clone();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let login = client
        .post(format!("{base}/api/v1/sessions"))
        .json(&json!({"operator_id": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?;
    ensure!(login.status() == reqwest::StatusCode::CREATED, "the clerk's login: {}", login.status());
    let token = login.json::<serde_json::Value>().await?["token"].as_str().context("a token")?.to_owned();
    let start_rss = server.memory_mb("VmRSS")?;
    let peak_reset = server.reset_peak();

    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let answers: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs_f64(FLOOD_CONNECTIONS as f64 / args.rate as f64);
    let mut flood = Vec::new();
    for connection in 0..FLOOD_CONNECTIONS {
        // A client of its own per connection: the flood comes from many connections, as an attacker's would.
        let flooder = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        let (base, answers, sent) = (base.clone(), answers.clone(), sent.clone());
        flood.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut n = 0_u64;
            while Instant::now() < until {
                tick.tick().await;
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                let body = json!({"municipality": "131016", "operator_id": format!("F{connection:02}{n:06}"),
                    "password": "Wrong0password"});
                let status = match flooder.post(format!("{base}/api/v1/sessions")).json(&body).send().await {
                    Ok(reply) => reply.status().as_u16(),
                    Err(_) => 0,
                };
                *answers.lock().await.entry(status).or_default() += 1;
            }
        }));
    }

    let mut latencies = Vec::new();
    let mut refused = 0_u64;
    while Instant::now() < until {
        let started = Instant::now();
        let reply = client.get(format!("{base}/api/v1/me")).bearer_auth(&token).send().await;
        latencies.push(started.elapsed());
        if !matches!(reply, Ok(ref r) if r.status() == reqwest::StatusCode::OK) {
            refused += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for task in flood {
        let _ = task.await;
    }
    let peak_mb = server.memory_mb("VmHWM")?;
    let end_rss = server.memory_mb("VmRSS")?;
    server.stop()?;
    let _ = std::fs::remove_dir_all(&scratch);

    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let (p50, p99) = (at(0.50), at(0.99));
    let answers = answers.lock().await;
    let total: u64 = answers.values().sum();
    println!(
        "login-flood-bench ({}, {seconds} s at {} wrong logins/s asked)",
        if args.database_url.is_some() { "given database" } else { "SQLite" },
        args.rate
    );
    println!("  flood: {} sent, {:.0}/s answered", sent.load(Ordering::Relaxed), total as f64 / seconds);
    for (status, n) in answers.iter() {
        let what = match status {
            401 => "checked (invalid credentials)",
            429 => "throttled before any work",
            503 => "turned away (password workers busy)",
            0 => "no answer (client time-out or error)",
            _ => "other",
        };
        println!("    {status}: {n} — {what}");
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let peak_note = if peak_reset { "" } else { " (VmHWM could not be reset: peak since start)" };
    println!("  server memory: {start_rss:.0} MB before, peak {peak_mb:.0} MB{peak_note}, {end_rss:.0} MB after");
    println!("    peak < {RSS_TARGET_MB} MB: {}", verdict(peak_mb < RSS_TARGET_MB));
    println!("  clerk's session check: {} checks, p50 {p50:.1} ms, p99 {p99:.1} ms", latencies.len());
    println!("    p99 < {P99_TARGET_MS} ms: {}", verdict(p99 < P99_TARGET_MS));
    println!("    session survived (every check 200): {} ({refused} refused)", verdict(refused == 0));
    Ok(())
}
