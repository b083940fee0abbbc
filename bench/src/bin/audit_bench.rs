//! `audit-bench`: the audit trail on PostgreSQL with a large event log (issue 12's figures).
//!
//! On an empty database it writes `--events` synthetic events (default 10,000,000) straight into `events` in
//! chunks of 1,000,000 rows (one transaction each): 1,000 operators in 10 municipalities acting in turn over the
//! year 2026, each event on one of 100,000 streams. Then it prints:
//! 1. **sealing** events/s: the audit chain built over the whole log (`AuditChain::extend`);
//! 2. **verify** events/s: `cardap audit verify` recomputing the chain (`AuditChain::verify`; target ≥ 200,000);
//! 3. **one operator's history for a month**: the time to the first page (first row) of
//!    `GET /api/v1/audit/events?municipality=&operator_id=&from=&to=` — the same use case, `History::page` — for
//!    randomly chosen operators and June 2026, p50/p99 (target p99 < 200 ms), and the time for the whole month.
//!
//! Run: `scripts/bench` (after the others), or by hand:
//!
//! ```text
//! cargo build --release -p cardap-bench --bin audit-bench
//! target/release/audit-bench --database-url postgres://postgres@127.0.0.1:5432/audit_bench [--events N]
//! ```

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use cardap_api::app::{open_database, sealed_store_and_vault};
use cardap_api::settings::Settings;
use cardap_commands::history::{History, HistoryQuery};
use cardap_domain::operator::OperatorId;
use cardap_domain::{MunicipalityCode, OperatorKey};
use cardap_projections::ReadModels;
use cardap_projections::audit::{AuditChain, Verdict};
use cardap_store::MasterKey;
use chrono::{TimeZone, Utc};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "audit-bench", about = "The audit chain and operator history over a large event log on PostgreSQL")]
struct Args {
    /// An empty PostgreSQL database.
    #[arg(long, value_name = "URL")]
    database_url: String,
    /// Events in the log.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Operators whose month is asked for.
    #[arg(long, default_value_t = 50)]
    queries: usize,
}

const OPERATORS: u64 = 1_000;
const STREAMS: u64 = 100_000;
const CHUNK: u64 = 1_000_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.database_url.starts_with("postgres"), "audit-bench runs on PostgreSQL");
    let settings = Settings::for_tests(args.database_url.clone());
    let db = open_database(&settings).await.context("open and migrate the database")?;
    let master = MasterKey::generate().context("a master key")?;
    let (store, vault) = sealed_store_and_vault(&db, &master).await?;
    let read = ReadModels::connect(&args.database_url, 4, vault)?;
    let pool = sqlx::PgPool::connect(&args.database_url).await?;

    let codes = municipalities();
    ensure!(codes.len() == 10, "ten municipality codes");
    let mut operators: Vec<(MunicipalityCode, OperatorId, OperatorKey)> = Vec::new();
    for j in 0..OPERATORS {
        let code = codes[usize::try_from(j % 10)?].clone();
        let id = OperatorId::parse(&format!("OP{j:04}")).map_err(|e| anyhow::anyhow!("an operator ID: {e}"))?;
        let key = OperatorKey::for_login(Some(&code), &id);
        operators.push((code, id, key));
    }

    let started = Instant::now();
    let year = 365.0 * 86_400.0 / args.events as f64;
    let mut lo = 0;
    while lo < args.events {
        let hi = (lo + CHUNK).min(args.events) - 1;
        sqlx::query(
            "INSERT INTO events (event_id, stream_id, stream_type, version, municipality, operator_id, event_type, \
             event_version, payload, metadata, recorded_at) \
             SELECT gen_random_uuid(), 'bench-' || (i % $7), 'bench', i / $7 + 1, \
                    ($1::text[])[1 + (i % 1000) % 10], ($2::uuid[])[1 + i % 1000], 'BenchActionDone', 1, \
                    json_build_object('n', i, 'note', 'synthetic event ' || i), \
                    json_build_object('command_id', NULL, 'correlation_id', gen_random_uuid(), \
                                      'causation_id', NULL, 'terminal', '窓口' || (i % 5), 'request_id', NULL), \
                    $3::timestamptz + make_interval(secs => i * $4) \
             FROM generate_series($5::bigint, $6::bigint) AS i",
        )
        .bind(codes.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>())
        .bind(operators.iter().map(|(_, _, k)| k.as_uuid()).collect::<Vec<_>>())
        .bind(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().context("a date")?)
        .bind(year)
        .bind(i64::try_from(lo)?)
        .bind(i64::try_from(hi)?)
        .bind(i64::try_from(STREAMS)?)
        .execute(&pool)
        .await
        .context("write synthetic events")?;
        lo = hi + 1;
    }
    sqlx::query("ANALYZE events").execute(&pool).await?;
    println!("audit-bench: {} events written in {:.1} s", args.events, started.elapsed().as_secs_f64());

    // The chain is over the events as stored: the store without the sealing decorator.
    let chain = AuditChain::new(read.pool().clone(), db.event_store());
    let started = Instant::now();
    let sealed = chain.extend().await?;
    let seconds = started.elapsed().as_secs_f64();
    println!("  sealing: {sealed} events in {seconds:.1} s = {:.0} events/s", sealed as f64 / seconds);
    let started = Instant::now();
    let verdict = chain.verify().await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(verdict == Verdict::Intact { events: args.events }, "the untouched log does not verify: {verdict}");
    let rate = args.events as f64 / seconds;
    println!(
        "  verify: {} events in {seconds:.1} s = {rate:.0} events/s {}",
        args.events,
        verdict_mark(rate >= 200_000.0)
    );

    let reads = cardap_commands::read_access::ReadAccess::new(
        store.clone(),
        read.clone(),
        std::sync::Arc::new(cardap_commands::SystemClock),
    );
    let history = History::new(store, read, reads);
    let ctx = cardap_commands::CommandContext::system(cardap_store::CommandId::generate());
    let june = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single().context("a date")?;
    let july = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).single().context("a date")?;
    let mut first = Vec::with_capacity(args.queries);
    let mut whole = Vec::with_capacity(args.queries);
    let mut lines = 0;
    for q in 0..args.queries {
        let (code, id, _) = &operators[(q * 7919) % operators.len()];
        let query = HistoryQuery {
            municipality: Some(code.clone()),
            operator_id: Some(id.clone()),
            resident_id: None,
            from: Some(june),
            to: Some(july),
        };
        let mut names = HashMap::new();
        let started = Instant::now();
        let mut page = history.page(&ctx, &query, None, 200, &mut names).await?;
        first.push(started.elapsed());
        lines += page.lines.len();
        while let Some(next) = page.next {
            page = history.page(&ctx, &query, Some(next), 200, &mut names).await?;
            lines += page.lines.len();
        }
        whole.push(started.elapsed());
    }
    let p = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i].as_secs_f64() * 1000.0
    };
    let p99 = p(&mut first, 0.99);
    println!(
        "  one operator's month ({} operators, {} lines each on average): first page p50 {:.1} ms, p99 {p99:.1} ms {}; \
         whole month p50 {:.1} ms, p99 {:.1} ms",
        args.queries,
        lines / args.queries.max(1),
        p(&mut first, 0.5),
        verdict_mark(p99 < 200.0),
        p(&mut whole, 0.5),
        p(&mut whole, 0.99),
    );
    Ok(())
}

fn verdict_mark(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// Ten municipality codes that parse (the check digit included).
fn municipalities() -> Vec<MunicipalityCode> {
    (10_000..99_999)
        .filter_map(|n| {
            MunicipalityCode::parse(&format!("{n:05}0"))
                .ok()
                .or_else(|| (0..10).find_map(|d| MunicipalityCode::parse(&format!("{n:05}{d}")).ok()))
        })
        .step_by(997)
        .take(10)
        .collect()
}
