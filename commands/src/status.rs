//! The server's own condition, for readiness checks and metrics: whether the event store answers, on which
//! backend, how old its oldest open writing transaction is and which one it is (it holds back every read model
//! and feed, whichever database of the PostgreSQL cluster it is in), and how far behind the log each of this
//! node's read models is. Owns nothing but these questions; the projection progress is [`crate::views`]'.

use std::sync::Arc;

use cardap_store::{EventStore, StoreError, StoreHealth};

use crate::views::Views;

/// The most events a lag is counted up to: beyond it, "at least this many" is all a monitor needs.
pub const LAG_CAP: u64 = 100_000;

/// How far one read model is behind the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionLag {
    pub name: &'static str,
    /// Where it has applied up to (`transaction.position`, as stored).
    pub checkpoint: String,
    /// Committed events after it (0: caught up), at most [`LAG_CAP`].
    pub behind: u64,
}

/// Asks the event store and the projection runners how they are.
#[derive(Debug, Clone)]
pub struct Status {
    store: Arc<dyn EventStore>,
    views: Views,
}

impl Status {
    pub fn new(store: Arc<dyn EventStore>, views: Views) -> Self {
        Status { store, views }
    }

    /// The store answers (its backend and oldest open transaction), or why not.
    pub async fn store(&self) -> Result<StoreHealth, StoreError> {
        self.store.health().await
    }

    /// Every read model of this node, with how many committed events it has not applied yet (counted up to
    /// [`LAG_CAP`]).
    pub async fn projections(&self) -> Result<Vec<ProjectionLag>, StoreError> {
        // Read models that are caught up share their checkpoint: each distinct one is counted once.
        let mut counted: Vec<(cardap_store::Checkpoint, u64)> = Vec::new();
        let mut lags = Vec::with_capacity(self.views.progress().len());
        for (name, progress) in self.views.progress() {
            let checkpoint = progress.current();
            let behind = match counted.iter().find(|(c, _)| *c == checkpoint) {
                Some((_, behind)) => *behind,
                None => {
                    let behind = self.store.count_after(checkpoint, LAG_CAP).await?;
                    counted.push((checkpoint, behind));
                    behind
                }
            };
            lags.push(ProjectionLag { name, checkpoint: checkpoint.to_string(), behind });
        }
        Ok(lags)
    }
}
