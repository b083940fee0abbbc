//! Authentication benchmark: logins per second (Argon2id verification on the blocking pool, plus the
//! `OperatorLoggedIn` event) and the latency of an authenticated request's session check (`GET /api/v1/me`),
//! with 1 and 8 concurrent clients, through the real router in-process (no network in the measurement).
//!
//! Run: `scripts/bench` (both benchmarks), or
//! `cargo run --release -p cardap-bench --bin auth-bench -- --database-url postgres://… [--seconds 5]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cardap_api::app::{Application, Settings, app};
use clap::Parser;
use http_body_util::BodyExt;
use tower::ServiceExt;

#[derive(Debug, Parser)]
struct Args {
    /// A database URL (postgres://… or sqlite:…); the benchmark creates its own operators in it.
    #[arg(long)]
    database_url: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

const MUNICIPALITY: &str = "131016";
const PASSWORD: &str = "BenchPassw0rd";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.seconds);
    let application = Application::build(Settings::for_tests(args.database_url.clone())).await?;
    let router = app(application.state().clone());
    let admin = login(&router, None, "admin", "AdminPassw0rd").await?.context("admin login")?;
    post(
        &router,
        &admin,
        "/api/v1/municipalities",
        r#"{"code":"131016","name":"千代田区","kind":"municipality","display_order":1}"#,
    )
    .await?;
    let operators: Vec<String> = (0..16).map(|i| format!("BENCH{i:02}")).collect();
    let batch: Vec<serde_json::Value> = operators
        .iter()
        .map(|id| serde_json::json!({"operator_id": id, "password": PASSWORD, "name": "性能 試験", "roles": ["clerk"]}))
        .collect();
    let status = post(
        &router,
        &admin,
        &format!("/api/v1/municipalities/{MUNICIPALITY}/operators"),
        &serde_json::to_string(&batch)?,
    )
    .await?;
    anyhow::ensure!(status == StatusCode::CREATED, "registering the bench operators failed: {status}");

    println!("backend: {}", if args.database_url.starts_with("postgres") { "postgres" } else { "sqlite" });
    println!(
        "{:<28} {:>8} {:>12} {:>10} {:>10} {:>10}",
        "measurement", "clients", "ops/s", "p50 ms", "p99 ms", "max ms"
    );
    for clients in [1_usize, 8] {
        let router = router.clone();
        let operators = Arc::new(operators.clone());
        let stats = run(clients, duration, move |client, i| {
            let router = router.clone();
            let id = operators[(client * 2 + i) % operators.len()].clone();
            async move { login(&router, Some(MUNICIPALITY), &id, PASSWORD).await.map(|t| t.is_some()) }
        })
        .await?;
        stats.print("login (Argon2id + event)", clients);
    }
    let mut tokens = vec![];
    for id in &operators {
        tokens.push(login(&router, Some(MUNICIPALITY), id, PASSWORD).await?.context("login")?);
    }
    let tokens = Arc::new(tokens);
    for clients in [1_usize, 8] {
        let router = router.clone();
        let tokens = tokens.clone();
        let stats = run(clients, duration, move |client, _| {
            let router = router.clone();
            let token = tokens[client % tokens.len()].clone();
            async move { get(&router, &token, "/api/v1/me").await.map(|s| s == StatusCode::OK) }
        })
        .await?;
        stats.print("session check (GET /me)", clients);
    }
    Ok(())
}

struct Stats {
    ops: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn print(mut self, name: &str, clients: usize) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{:<28} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
            name,
            clients,
            self.ops as f64 / self.elapsed.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    }
}

/// Runs `op` from `clients` concurrent tasks for `duration`; every call must succeed.
async fn run<F, Fut>(clients: usize, duration: Duration, op: F) -> anyhow::Result<Stats>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = anyhow::Result<bool>> + Send,
{
    let started = Instant::now();
    let mut tasks = vec![];
    for client in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = vec![];
            let mut i = 0;
            while started.elapsed() < duration {
                let t = Instant::now();
                anyhow::ensure!(op(client, i).await?, "a request failed");
                latencies.push(t.elapsed());
                i += 1;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = vec![];
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Stats { ops: latencies.len(), elapsed: started.elapsed(), latencies })
}

async fn login(
    router: &axum::Router,
    municipality: Option<&str>,
    id: &str,
    password: &str,
) -> anyhow::Result<Option<String>> {
    let body = serde_json::json!({"municipality": municipality, "operator_id": id, "password": password});
    let body = if municipality.is_none() { serde_json::json!({"operator_id": id, "password": password}) } else { body };
    let request = Request::post("/api/v1/sessions")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body)?))?;
    let response = router.clone().oneshot(request).await?;
    if response.status() != StatusCode::CREATED {
        return Ok(None);
    }
    let bytes = response.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(json["token"].as_str().map(str::to_owned))
}

async fn post(router: &axum::Router, token: &str, path: &str, body: &str) -> anyhow::Result<StatusCode> {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body.to_owned()))?;
    Ok(router.clone().oneshot(request).await?.status())
}

async fn get(router: &axum::Router, token: &str, path: &str) -> anyhow::Result<StatusCode> {
    let request = Request::get(path).header("authorization", format!("Bearer {token}")).body(Body::empty())?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}
