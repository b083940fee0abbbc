//! Read models of cardap: the projection runner and the views it builds from the event log.
//!
//! Owns the read-model tables (migrations `0002_read_models.sql`), their checkpoints, rebuilds, and the queries
//! the API serves from them. A read model is changed only by its projection, and the projection stores its
//! checkpoint in the same transaction as the change, so a crash never applies an event twice or loses one.
//! Read models are reached through sqlx's `Any` driver: the same SQL serves PostgreSQL and SQLite.

pub mod audit;
pub mod business_systems;
pub mod cards;
pub mod certificates;
pub mod erasure;
pub mod feeds;
pub mod library_links;
pub mod local_settings;
pub mod municipalities;
pub mod operators;
mod rebuild;
pub mod registry;
pub mod residents;
mod runner;
pub mod sealing;
mod typed;

pub use rebuild::Rebuilt;
pub use runner::{Progress, Projection, ProjectionError, ProjectionRunner};
pub use sealing::RowSealer;
pub use typed::{Recorded, Typed, View};

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cardap_store::{Checkpoint, EventStore, KeyVault};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

/// The VALUES of a multi-row INSERT: `rows` rows of `columns` parameters each, numbered from `$1` row by row
/// (`($1, $2), ($3, $4)` for two rows of two).
pub(crate) fn values_list(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "${}", row * columns + column + 1);
        }
        out.push(')');
    }
    out
}

/// The read-model database and every projection of this build.
#[derive(Debug, Clone)]
pub struct ReadModels {
    pool: AnyPool,
    /// The database's URL (a blue/green rebuild opens its own connections).
    url: String,
    sealer: RowSealer,
    projections: Vec<Arc<dyn Projection>>,
}

/// Opens a read-model pool on `url` (lazily: the server starts even while the database is down), for a tool that
/// reads a read model without running the projections (`cardap audit verify`).
pub fn connect_pool(url: &str, max_connections: u32) -> Result<AnyPool, ProjectionError> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url)
        .map_err(ProjectionError::from_sqlx)
}

impl ReadModels {
    /// Opens the read-model pool on the same database as the event store (lazily: the server starts even
    /// while the database is down). The personal columns of the resident register and of the registry are
    /// sealed with the data keys of `vault` (the process's one, shared with the sealed event store).
    pub fn connect(url: &str, max_connections: u32, vault: Arc<KeyVault>) -> Result<Self, ProjectionError> {
        let pool = connect_pool(url, max_connections)?;
        let sealer = RowSealer::new(vault);
        Ok(ReadModels {
            pool,
            url: url.to_owned(),
            projections: vec![
                Arc::new(Typed(municipalities::MunicipalityList)),
                Arc::new(Typed(operators::OperatorDirectory::new(sealer.clone()))),
                Arc::new(Typed(business_systems::BusinessSystems)),
                Arc::new(Typed(local_settings::LocalSettingsView)),
                Arc::new(Typed(residents::ResidentRegister::new(sealer.clone()))),
                Arc::new(Typed(cards::CardRegister)),
                Arc::new(Typed(registry::RegistryView::new(sealer.clone()))),
                Arc::new(Typed(certificates::Certificates)),
                Arc::new(feeds::FeedIndex),
            ],
            sealer,
        })
    }

    /// What opens the sealed personal columns and makes search tokens (for the resident and registry queries).
    pub fn sealer(&self) -> &RowSealer {
        &self.sealer
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    pub fn projection(&self, name: &str) -> Option<Arc<dyn Projection>> {
        self.projections.iter().find(|p| p.name() == name).cloned()
    }

    /// A runner per projection (not yet started).
    pub fn runners(&self, store: Arc<dyn EventStore>) -> Vec<ProjectionRunner> {
        self.projections.iter().map(|p| ProjectionRunner::new(store.clone(), self.pool.clone(), p.clone())).collect()
    }

    /// Applies everything up to the current head for every projection, all at once, then returns (start-up, CLI,
    /// tests).
    pub async fn catch_up(&self, store: Arc<dyn EventStore>) -> Result<Checkpoint, ProjectionError> {
        let runners = self.runners(store);
        let reached = futures_util::future::try_join_all(runners.iter().map(ProjectionRunner::catch_up)).await?;
        Ok(reached.into_iter().max().unwrap_or(Checkpoint::START))
    }

    /// Rebuilds the read model `name` blue/green: a new version is built beside the live one from the start of the
    /// log and replaces it once caught up, while the live one keeps answering (see [`rebuild`]'s comment). `None`
    /// when no projection has that name.
    pub async fn rebuild(&self, store: Arc<dyn EventStore>, name: &str) -> Option<Result<Rebuilt, ProjectionError>> {
        let projection = self.projection(name)?;
        Some(rebuild::rebuild_beside(&self.pool, &self.url, store, projection).await)
    }
}

/// Current time as stored in read models (RFC 3339, UTC).
pub(crate) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_values_list_numbers_its_parameters_row_by_row() {
        assert_eq!(super::values_list(2, 2), "($1, $2), ($3, $4)");
        assert_eq!(super::values_list(1, 3), "($1, $2, $3)");
        assert_eq!(super::values_list(0, 3), "");
    }
}
