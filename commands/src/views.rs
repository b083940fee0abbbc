//! Read-your-writes: a use case that answers from a read model waits until that model shows its write.
//! Owns nothing but the waiting; the projection runners own the progress it watches.

use std::sync::Arc;
use std::time::Duration;

use cardap_projections::Progress;
use cardap_store::Checkpoint;

/// How long a write waits for the read models to show it before answering anyway.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// The progress of this node's projection runners.
#[derive(Debug, Clone, Default)]
pub struct Views {
    progress: Arc<Vec<Progress>>,
}

impl Views {
    pub fn new(progress: Arc<Vec<Progress>>) -> Self {
        Views { progress }
    }

    /// Waits until every read model shows the write at `checkpoint`, so the clerk's next GET sees it. Gives up
    /// quietly after a few seconds (the write stands; the view catches up later).
    pub async fn wait_for(&self, checkpoint: Checkpoint) {
        for progress in self.progress.iter() {
            let mut p = progress.clone();
            if p.wait_for(checkpoint, READ_YOUR_WRITES).await.is_err() {
                tracing::warn!(%checkpoint, "read models did not catch up in time; answering anyway");
                return;
            }
        }
    }
}
