//! Read-your-writes: a use case that answers from a read model waits until that model shows its write — that
//! model only, not every one. Owns nothing but the waiting; the projection runners own the progress it watches.

use std::sync::Arc;
use std::time::Duration;

use cardap_projections::Progress;
use cardap_store::Checkpoint;

/// How long a write waits for the read models to show it before answering anyway.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// The progress of this node's projection runners, by read-model name.
#[derive(Debug, Clone, Default)]
pub struct Views {
    progress: Arc<Vec<(&'static str, Progress)>>,
}

impl Views {
    pub fn new(progress: Vec<(&'static str, Progress)>) -> Self {
        Views { progress: Arc::new(progress) }
    }

    /// Waits until every read model shows the write at `checkpoint` (an import that feeds several).
    pub async fn wait_for(&self, checkpoint: Checkpoint) {
        for (name, _) in self.progress.iter() {
            self.wait_for_view(checkpoint, name).await;
        }
    }

    /// Waits until the read model `name` shows the write at `checkpoint`, so the clerk's next GET sees it. Gives
    /// up quietly after a few seconds (the write stands; the view catches up later).
    pub async fn wait_for_view(&self, checkpoint: Checkpoint, name: &str) {
        for (_, progress) in self.progress.iter().filter(|(n, _)| *n == name) {
            let mut p = progress.clone();
            if p.wait_for(checkpoint, READ_YOUR_WRITES).await.is_err() {
                tracing::warn!(%checkpoint, view = name, "the read model did not catch up in time; answering anyway");
            }
        }
    }

    /// The progress of the read model `name` on this node, if it runs here.
    pub fn of(&self, name: &str) -> Option<Progress> {
        self.progress.iter().find(|(n, _)| *n == name).map(|(_, p)| p.clone())
    }

    /// The progress of every read model, by name (for metrics).
    pub fn progress(&self) -> &[(&'static str, Progress)] {
        &self.progress
    }
}
