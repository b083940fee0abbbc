//! Wake-ups for readers that follow the log: a counter bumped on every append (in this process) and on every
//! PostgreSQL NOTIFY (from any node), with a slow poll as the safety net when a notification is lost.

use std::time::Duration;

use tokio::sync::watch;

/// The sending side, held by a store.
#[derive(Debug, Clone)]
pub(crate) struct WakeupSender(watch::Sender<u64>);

impl WakeupSender {
    pub(crate) fn new() -> Self {
        WakeupSender(watch::channel(0).0)
    }

    pub(crate) fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn subscribe(&self) -> Wakeups {
        Wakeups(self.0.subscribe())
    }
}

/// A reader's end: `wait` returns when something may have been appended, or after `max` at the latest.
#[derive(Debug, Clone)]
pub struct Wakeups(watch::Receiver<u64>);

impl Wakeups {
    /// Waits for the next wake-up or `max`, whichever comes first. Returns true when woken.
    pub async fn wait(&mut self, max: Duration) -> bool {
        matches!(tokio::time::timeout(max, self.0.changed()).await, Ok(Ok(())))
    }

    /// Forgets wake-ups that arrived before now (call before reading, so none is lost after the read).
    pub fn mark_seen(&mut self) {
        self.0.mark_unchanged();
    }
}
