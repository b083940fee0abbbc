//! The server's own condition, for readiness checks and metrics: whether the event store answers, on which
//! backend, and how old its oldest open writing transaction is (it holds back every read model and feed).
//! Owns nothing but these questions; the projection progress is [`crate::views`]'.

use std::sync::Arc;

use cardap_store::{EventStore, StoreError, StoreHealth};

/// Asks the event store how it is.
#[derive(Debug, Clone)]
pub struct Status {
    store: Arc<dyn EventStore>,
}

impl Status {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Status { store }
    }

    /// The store answers (its backend and oldest open transaction), or why not.
    pub async fn store(&self) -> Result<StoreHealth, StoreError> {
        self.store.health().await
    }
}
