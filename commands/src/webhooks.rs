//! Webhook push of the replication feeds (issue 11 point 2), optional per business system: the system
//! administrator's use cases (set or remove the URL — events on the business system's stream — and issue the
//! signing secret, shown once and stored sealed under the master key in the transaction of its event), and the
//! pusher that runs in `cardap serve`.
//!
//! The pusher reads each system's feed through [`Feeds::page`] as that system (the same items, minimisation,
//! isolation and read-access record as a page it reads itself) and POSTs the items one by one, in order, to its
//! URL with `X-Cardap-Signature: sha256=<hex HMAC-SHA-256 of the body>` and `X-Cardap-Item-Id`. A 2xx advances
//! the system's push cursor; a timeout or anything else is retried after a capped exponential backoff with
//! jitter ([`PushPolicy`]). Every system is pushed by a task of its own, so a slow or failing receiver holds up
//! nobody else; a lease on the system's push row (`cardap_store::WebhookStore`), renewed with every acknowledged
//! item and longer than two POSTs, keeps two nodes from pushing it at once. A node that stops gives its leases
//! back between two items, or keeps one to run out when it cut a POST off (the receiver may still be handling
//! it).
//!
//! Must not speak HTTP itself (the [`WebhookTransport`] port, whose adapter is in `cardap-api`) nor decide what an
//! item holds (that is `feeds`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cardap_domain::business_system::{BusinessSystem, BusinessSystemCommand, BusinessSystemError};
use cardap_domain::webhook::WebhookUrl;
use cardap_domain::{Aggregate, BusinessId, Timestamp};
use cardap_store::{Companion, EventStore, MasterKey, StoreError, WebhookStore};
use tokio::sync::watch;

use crate::authz::Permission;
use crate::business_systems::{BusinessSystems, stream as business_stream};
use crate::engine::{Tx, transact};
use crate::feeds::{FeedError, FeedItem, FeedRequest, Feeds};
use crate::handler::{CommandError, Executed};
use crate::passwords::Secret;
use crate::{Clock, CommandContext, CommandHandler};

/// How many items one round reads (then the lease is renewed and the next round reads on).
const PAGE: usize = 50;

/// The answer of one POST: the status, or why there was none (connection refused, timeout, TLS).
pub type Delivery = Result<u16, String>;

/// The port the pusher speaks HTTP through (adapter: `cardap_api::webhook_transport`).
#[async_trait::async_trait]
pub trait WebhookTransport: Send + Sync + std::fmt::Debug {
    /// POSTs `body` (JSON) to `url` with `headers`, giving up after `timeout`.
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: Vec<u8>, timeout: Duration) -> Delivery;
}

/// Retry and lease settings of the pusher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPolicy {
    /// The wait before the first retry of a failed item; doubled per failure up to `max_backoff`, and each wait
    /// lengthened by a random part of up to a quarter of it (jitter). Never shorter than this.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts, before its jitter.
    pub max_backoff: Duration,
    /// How long one POST may take.
    pub timeout: Duration,
    /// How often the pusher looks for systems with a webhook and new items.
    pub interval: Duration,
    /// How long a node's lease on a system's push lasts without renewal (it is renewed with every acknowledged
    /// item); never less than twice `timeout`, so that no POST outlives the lease it was sent under.
    pub lease: Duration,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
        }
    }
}

impl PushPolicy {
    /// The wait after `failures` consecutive failures: `min(initial × 2^(n-1), max)`, plus a random part of up to
    /// a quarter of it (jitter, so that receivers that come back are not hit by every system's retry at once).
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let delay = self.initial_backoff.saturating_mul(1u32 << exp).min(self.max_backoff);
        let mut bytes = [0u8; 4];
        let random = getrandom::fill(&mut bytes).map(|()| u32::from_le_bytes(bytes)).unwrap_or(0);
        delay + (delay / 4).mul_f64(f64::from(random) / f64::from(u32::MAX))
    }

    /// The lease a node takes: `lease`, but at least twice the POST timeout.
    fn lease_ms(&self) -> i64 {
        let lease = self.lease.max(self.timeout.saturating_mul(2));
        i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A webhook signing secret, shown once.
#[derive(Debug)]
pub struct IssuedWebhookSecret {
    pub secret: Secret,
    pub version: u64,
}

/// `sha256=<hex>`: the HMAC-SHA-256 of `body` under `secret` (the secret's text as the key).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(ring::hmac::sign(&key, body).as_ref()))
}

/// The JSON of an item, as a feed page carries it.
pub fn item_json(item: &FeedItem) -> serde_json::Value {
    serde_json::json!({
        "id": item.id, "type": item.kind, "municipality": item.municipality,
        "resident_id": item.resident_id, "data": item.data,
    })
}

fn label(id: &BusinessId) -> String {
    format!("cardap-webhook:{}", id.as_str())
}

fn internal<E: std::error::Error + 'static>(e: impl std::fmt::Display) -> CommandError<E> {
    CommandError::Internal(e.to_string())
}

/// The webhook use cases and the pusher's state.
#[derive(Debug, Clone)]
pub struct Webhooks {
    store: Arc<dyn EventStore>,
    systems: CommandHandler<BusinessSystem>,
    business_systems: BusinessSystems,
    feeds: Feeds,
    hooks: WebhookStore,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    /// This node's name in the push leases (new at every start).
    node: Arc<str>,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn EventStore>,
        business_systems: BusinessSystems,
        feeds: Feeds,
        hooks: WebhookStore,
        master: MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Webhooks {
            systems: CommandHandler::new(store.clone()),
            store,
            business_systems,
            feeds,
            hooks,
            master,
            clock,
            node: uuid::Uuid::new_v4().to_string().into(),
        }
    }

    /// This node's name in the push leases.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The node whose lease on `id`'s push is running now, if any.
    pub async fn pushed_by(&self, id: &BusinessId) -> Result<Option<String>, StoreError> {
        self.hooks.holder(id.as_str(), self.now_ms()).await
    }

    /// Pushes the system's feed to `url` from now on (the system administrator).
    pub async fn set_webhook(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
        url: WebhookUrl,
    ) -> Result<Executed<BusinessSystem>, CommandError<BusinessSystemError>> {
        let command = BusinessSystemCommand::SetWebhook { url };
        self.systems.execute(ctx, &Permission::ManageBusinessSystems, &business_stream(id), None, None, command).await
    }

    /// Stops pushing the system's feed (the system administrator); the push cursor stays for a later URL.
    pub async fn remove_webhook(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
    ) -> Result<Executed<BusinessSystem>, CommandError<BusinessSystemError>> {
        let command = BusinessSystemCommand::RemoveWebhook;
        self.systems.execute(ctx, &Permission::ManageBusinessSystems, &business_stream(id), None, None, command).await
    }

    /// Issues a new signing secret, replacing the old one: 256 random bits, answered once, sealed under the
    /// master key and stored with the event in one transaction.
    pub async fn issue_secret(
        &self,
        ctx: &CommandContext,
        id: &BusinessId,
    ) -> Result<IssuedWebhookSecret, CommandError<BusinessSystemError>> {
        let mut raw = [0_u8; 32];
        getrandom::fill(&mut raw).map_err(internal)?;
        let secret = format!("whsec_{}", URL_SAFE_NO_PAD.encode(raw));
        let sealed =
            STANDARD.encode(self.master.seal_secret(&label(id), secret.as_bytes().to_vec()).map_err(internal)?);
        let stream = business_stream(id);
        let at = self.clock.now();
        let (stream_ref, sealed_ref, id_ref) = (&stream, &sealed, id.as_str());
        let permissions = [Permission::ManageBusinessSystems];
        let done = transact(&self.store, ctx, &permissions, None, |mut tx: Tx| async move {
            let loaded = tx.load::<BusinessSystem, BusinessSystemError>(stream_ref).await?;
            let command = BusinessSystemCommand::IssueWebhookSecret { at: Timestamp::from_unix(at.timestamp()) };
            let events = BusinessSystem::decide(&loaded.state, command).map_err(CommandError::Domain)?;
            tx.companion(Companion::SetWebhookSecret {
                business_id: id_ref.to_owned(),
                sealed: sealed_ref.clone(),
                at,
            });
            tx.append::<BusinessSystem>(stream_ref, loaded.version, &events);
            Ok((loaded.version + events.len() as u64, tx))
        })
        .await?;
        let version = done.value.ok_or_else(|| internal("a new secret's command was applied before"))?;
        self.business_systems.settle_at(done.checkpoint).await;
        Ok(IssuedWebhookSecret { secret: Secret::new(secret), version })
    }

    /// The signing secret of `id` in clear, for signing only.
    async fn secret(&self, id: &BusinessId) -> Result<Option<Vec<u8>>, String> {
        let Some(sealed) = self.hooks.sealed_secret(id.as_str()).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let bytes = STANDARD.decode(sealed).map_err(|e| e.to_string())?;
        self.master.open_secret(&label(id), &bytes).map(Some).ok_or_else(|| "the webhook secret does not open".into())
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

/// How long a stopping pusher waits for its tasks to give their leases back before it aborts them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Pushes every system's feed to its webhook until `shutdown` turns true; one task per system with a webhook.
#[derive(Debug)]
pub struct Pusher {
    webhooks: Webhooks,
    transport: Arc<dyn WebhookTransport>,
    policy: PushPolicy,
}

impl Pusher {
    pub fn new(webhooks: Webhooks, transport: Arc<dyn WebhookTransport>, policy: PushPolicy) -> Self {
        Pusher { webhooks, transport, policy }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(node = %self.webhooks.node(), "webhook pusher started");
        let this = Arc::new(self);
        let busy: Arc<Mutex<HashSet<BusinessId>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            match this.webhooks.business_systems.list(false).await {
                Ok(rows) => {
                    for row in rows {
                        let Ok(id) = BusinessId::parse(&row.business_id) else { continue };
                        if !busy.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone()) {
                            continue;
                        }
                        let (this, busy, stop) = (this.clone(), busy.clone(), shutdown.clone());
                        tasks.spawn(async move {
                            if let Err(e) = this.push(&id, stop).await {
                                tracing::warn!(business_id = %id.as_str(), error = %e, "webhook push");
                            }
                            busy.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook push: the business systems could not be listed"),
            }
            while tasks.try_join_next().is_some() {}
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                () = tokio::time::sleep(this.policy.interval) => {}
            }
        }
        // The tasks see the shutdown too: each gives its lease back between two items (or keeps it, to run out,
        // when a POST was cut off), so that another node takes over at once after a graceful stop.
        let _ = tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
    }

    /// One round for one system: when it has a webhook and a secret, and its push is due and not another node's,
    /// POSTs what its feed has after the push cursor, in order, until done, an attempt fails, the lease is lost or
    /// the node stops.
    async fn push(&self, id: &BusinessId, mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let w = &self.webhooks;
        let node = w.node();
        let state = w.business_systems.current(id).await.map_err(|e| e.to_string())?.state;
        let Some(url) = state.webhook().cloned() else { return Ok(()) };
        let Some(secret) = w.secret(id).await? else { return Ok(()) };
        let lease = self.policy.lease_ms();
        loop {
            let now = w.now_ms();
            let Some(row) =
                w.hooks.lease(id.as_str(), node, now, now.saturating_add(lease)).await.map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            let request = FeedRequest { request_id: Some(format!("webhook:{}", id.as_str())) };
            let page = match w.feeds.page(id, id.as_str(), row.cursor.as_deref(), PAGE, Duration::ZERO, &request).await
            {
                Ok(page) => page,
                // Retired, or its cursor is gone (a feed rebuilt elsewhere): nothing to push.
                Err(FeedError::NotFound | FeedError::InvalidCursor) => {
                    w.hooks.release(id.as_str(), node).await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Err(e) => return Err(e.to_string()),
            };
            if page.items.is_empty() {
                w.hooks.release(id.as_str(), node).await.map_err(|e| e.to_string())?;
                return Ok(());
            }
            let mut failures = row.failures;
            for item in &page.items {
                if *stop.borrow() {
                    w.hooks.release(id.as_str(), node).await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                let body = serde_json::to_vec(&item_json(item)).map_err(|e| e.to_string())?;
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("x-cardap-signature", signature(&secret, &body)),
                    ("x-cardap-item-id", item.id.clone()),
                    ("x-cardap-business-id", id.as_str().to_owned()),
                ];
                let answer = tokio::select! {
                    answer = self.transport.post(url.as_str(), &headers, body, self.policy.timeout) => answer,
                    // Cut off: the receiver may still be handling it, so the lease is kept until it runs out
                    // (after the POST's timeout would have): no other node pushes this system meanwhile.
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                };
                match answer {
                    Ok(status) if (200..300).contains(&status) => {
                        let now = w.now_ms();
                        let until = now.saturating_add(lease);
                        let held =
                            w.hooks.advance(id.as_str(), node, &item.id, until).await.map_err(|e| e.to_string())?;
                        if !held {
                            // Another node took the push over (this one's lease ran out): it goes on from the
                            // cursor it finds, and this item may come once more.
                            tracing::info!(business_id = %id.as_str(), "webhook push lease lost; stopping this round");
                            return Ok(());
                        }
                        failures = 0;
                    }
                    failed => {
                        let failures = failures.saturating_add(1);
                        let delay = self.policy.backoff(u32::try_from(failures).unwrap_or(u32::MAX));
                        let next = w.now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                        tracing::info!(business_id = %id.as_str(), item = %item.id, ?failed, failures, ?delay,
                            "webhook delivery failed; retrying later");
                        w.hooks.failed(id.as_str(), node, failures, next).await.map_err(|e| e.to_string())?;
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_only_lengthens_it() {
        let p = PushPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..Default::default()
        };
        for _ in 0..100 {
            let d = p.backoff(1);
            assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(125), "{d:?}");
            let d = p.backoff(4);
            assert!(d >= Duration::from_millis(800) && d <= Duration::from_millis(1000), "{d:?}");
            let d = p.backoff(1000);
            assert!(d >= Duration::from_secs(2) && d <= Duration::from_millis(2500), "{d:?}");
        }
    }

    #[test]
    fn the_lease_outlasts_two_posts() {
        let p = PushPolicy { timeout: Duration::from_secs(30), lease: Duration::from_secs(10), ..Default::default() };
        assert_eq!(p.lease_ms(), 60_000);
        assert_eq!(PushPolicy::default().lease_ms(), 60_000);
    }
}
