//! What every handler can reach: the event store, the read models, session policy and metrics.

use std::sync::Arc;
use std::time::Duration;

use cardap_commands::residents::ResidentServices;
use cardap_projections::{Progress, ReadModels};
use cardap_store::{Checkpoint, EventStore};

use cardap_domain::operator::{LockoutPolicy, PasswordPolicy};

use crate::auth::SessionPolicy;
use crate::metrics::Metrics;

/// How long a write waits for the read models to show it before answering anyway.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn EventStore>,
    pub read: ReadModels,
    /// One per projection runner of this node.
    pub progress: Arc<Vec<Progress>>,
    pub sessions: SessionPolicy,
    pub passwords: PasswordPolicy,
    pub lockout: LockoutPolicy,
    pub metrics: Arc<Metrics>,
    /// Resident service registration (residents, cards, settings, registry import) over `store`.
    pub residents: ResidentServices,
}

impl AppState {
    /// Waits until every read model shows the write at `checkpoint`, so the clerk's next GET sees it.
    /// Gives up quietly after a few seconds (the write stands; the view catches up later).
    pub async fn wait_for_views(&self, checkpoint: Checkpoint) {
        for progress in self.progress.iter() {
            let mut p = progress.clone();
            if p.wait_for(checkpoint, READ_YOUR_WRITES).await.is_err() {
                tracing::warn!(%checkpoint, "read models did not catch up in time; answering anyway");
                return;
            }
        }
    }
}
