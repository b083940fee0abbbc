//! Follows a business system's cardap feed into a SQLite file: one row per resident, upserted by resident id
//! (a `registered`/`changed` item merges its fields into the row, `ap_removed`/`moved_out`/`erased` deletes it),
//! so an item delivered twice leaves the same row; the certificate issuance system's `issuance_service` items (a
//! municipality's certificates and hours) are kept one row per municipality. The cursor is kept in a file beside the
//! database.
//!
//! ```sh
//! cargo run -p cardap-feed-client --example follow -- --url https://cardap.example.jp --business-id 05 \
//!   --ca ca.pem --cert b05.pem --key b05.key --db residents.sqlite --cursor-file residents.cursor
//! ```
//! Stops on Ctrl-C (after the page in hand) or when cardap refuses the feed (4xx).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use cardap_feed_client::{FeedClient, FeedConfig, FeedItem, FileCursorStore, tls_client};
use clap::Parser;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

#[derive(Debug, Parser)]
struct Args {
    /// cardap's address.
    #[arg(long)]
    url: String,
    #[arg(long)]
    business_id: String,
    /// cardap's CA certificate (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// The business server certificate cardap issued (PEM), and its key.
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// The SQLite file to follow the feed into (created when missing).
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    cursor_file: PathBuf,
}

/// Applies one item: an upsert (or a delete) by resident id; a municipality's issuance service (an item about no
/// resident) replaces the one kept of that municipality.
async fn apply(db: &SqlitePool, item: &FeedItem) -> Result<(), sqlx::Error> {
    if !item.is_about_a_resident() {
        sqlx::query(
            "INSERT INTO municipalities (municipality, kind, data, last_item) VALUES (?, ?, ?, ?)
             ON CONFLICT (municipality, kind) DO UPDATE SET data = excluded.data, last_item = excluded.last_item",
        )
        .bind(&item.municipality)
        .bind(&item.kind)
        .bind(item.data.to_string())
        .bind(&item.id)
        .execute(db)
        .await?;
        return Ok(());
    }
    if item.ends_entitlement() {
        sqlx::query("DELETE FROM residents WHERE resident_id = ?").bind(&item.resident_id).execute(db).await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO residents (resident_id, municipality, data, last_item) VALUES (?, ?, ?, ?)
         ON CONFLICT (resident_id) DO UPDATE SET municipality = excluded.municipality,
           data = json_patch(residents.data, excluded.data), last_item = excluded.last_item",
    )
    .bind(&item.resident_id)
    .bind(&item.municipality)
    .bind(item.data.to_string())
    .bind(&item.id)
    .execute(db)
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let http = tls_client(&std::fs::read(&args.ca)?, &std::fs::read(&args.cert)?, &std::fs::read(&args.key)?)?;
    let options = SqliteConnectOptions::new().filename(&args.db).create_if_missing(true);
    let db = SqlitePool::connect_with(options).await?;
    for table in [
        "CREATE TABLE IF NOT EXISTS residents (resident_id TEXT PRIMARY KEY, municipality TEXT NOT NULL,
           data TEXT NOT NULL, last_item TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS municipalities (municipality TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL,
           last_item TEXT NOT NULL, PRIMARY KEY (municipality, kind))",
    ] {
        sqlx::query(table).execute(&db).await?;
    }
    let client =
        FeedClient::new(http, FeedConfig::new(args.url, args.business_id), FileCursorStore::new(args.cursor_file));
    let mut handler = |item: FeedItem| {
        let db = db.clone();
        async move {
            tracing::info!(id = %item.id, kind = %item.kind, "item");
            apply(&db, &item).await
        }
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    client.follow(&mut handler, stop).await?;
    Ok(())
}
