//! `cardap-feed-client`: what a business system embeds to follow its cardap replication feed
//! (`GET /api/v1/feeds/{business_id}`, 利用者情報の連携) into its own database.
//!
//! It owns the business system's side of the feed protocol: the mutual-TLS connection with the business server
//! certificate cardap issued ([`tls_client`]), reading pages with a long poll, handing each item in order to a
//! caller-supplied [`Handler`], storing the cursor through a [`CursorStore`] only after the handler succeeded
//! ([`FileCursorStore`]: temp file, fsync, rename, fsync of the folder), and riding out restarts of either side:
//! a connection error, a timeout or a `5xx` is retried with capped exponential backoff and jitter ([`Backoff`]);
//! any other `4xx` (an invalid cursor, a feed that is not this system's, a revoked certificate) stops with
//! [`FollowError::Refused`], since asking again would get the same answer.
//!
//! # Idempotency: what the handler must do
//!
//! Delivery is at-least-once. The cursor is stored after a page's items were all handled, so after a crash (of
//! the business system, between the handler's success and the cursor's write) the last page may be delivered
//! again; cardap itself may deliver an item again after its own restart. Every item has a stable `id` and names
//! its resident: **the handler must upsert by `resident_id`** (a `registered` or `changed` item merges its fields
//! into the resident's row; `ap_removed`, `moved_out` and `erased` delete it) so that handling an item twice
//! leaves the same state as handling it once. A handler that stores the item id beside the row can also skip an
//! item it has already applied. Storing the cursor in the same transaction as the rows (a [`CursorStore`] of
//! your own over your database) makes redelivery impossible to observe at all.
//!
//! Must not interpret the items' personal data (the handler does) nor hold more than one page in memory.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The longest long poll cardap allows (seconds).
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// One item of a feed, as cardap delivers it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct FeedItem {
    /// Stable; the cursor after this item.
    pub id: String,
    /// `registered`, `changed`, `card_suspended`, `card_resumed`, `card_abolished`, `ap_removed`, `moved_out`,
    /// `erased`; to a library system `standard_id_replaced`; to the certificate issuance system `issuance_service`
    /// (a municipality's certificates, service hours and closed periods: about no resident).
    #[serde(rename = "type")]
    pub kind: String,
    /// The resident's municipality (全国地方公共団体コード), or the one an `issuance_service` item is about.
    pub municipality: String,
    /// The key to upsert by; empty for an item about no resident (`issuance_service`, which cardap sends with
    /// `resident_id: null`): see [`FeedItem::is_about_a_resident`].
    #[serde(deserialize_with = "null_as_empty")]
    pub resident_id: String,
    /// The fields of the system's field list (for `changed`, the ones that changed).
    pub data: serde_json::Value,
}

impl FeedItem {
    /// Whether this item ends what the business system may keep of the resident (`ap_removed`, `moved_out`,
    /// `erased`): delete his row.
    pub fn ends_entitlement(&self) -> bool {
        matches!(self.kind.as_str(), "ap_removed" | "moved_out" | "erased")
    }

    /// Whether this item is about a resident (to upsert by `resident_id`); an `issuance_service` item is about a
    /// municipality (`municipality`), and `data` is its service to keep as a whole.
    pub fn is_about_a_resident(&self) -> bool {
        !self.resident_id.is_empty()
    }
}

/// A `resident_id` of `null` (an item about no resident) reads as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<FeedItem>,
    next_cursor: Option<String>,
}

/// What handles each item, in the feed's order. A closure `FnMut(FeedItem) -> impl Future<Output = Result<(), E>>`
/// is one.
pub trait Handler: Send {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Applies `item` to the business system's database; must be idempotent (an upsert by `resident_id`).
    fn handle(&mut self, item: FeedItem) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<F, Fut, E> Handler for F
where
    F: FnMut(FeedItem) -> Fut + Send,
    Fut: Future<Output = Result<(), E>> + Send,
    E: std::error::Error + Send + Sync + 'static,
{
    type Error = E;
    fn handle(&mut self, item: FeedItem) -> impl Future<Output = Result<(), E>> + Send {
        self(item)
    }
}

/// Where the cursor (the id of the last item handled) is kept between runs.
pub trait CursorStore: Send + Sync {
    /// The stored cursor; `None`: from the feed's start.
    fn load(&self) -> impl Future<Output = Result<Option<String>, CursorError>> + Send;
    /// Stores `cursor` durably; called only after the items up to it were handled.
    fn save(&self, cursor: &str) -> impl Future<Output = Result<(), CursorError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor file {path} could not be read or written: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the cursor file {0} does not hold a cursor")]
    Corrupt(PathBuf),
}

/// A cursor in a file of its own, replaced atomically: the new cursor is written to `<file>.tmp`, flushed to disk,
/// renamed over the file and the folder flushed, so that after a crash the file holds the old cursor or the new
/// one, never a torn one.
#[derive(Debug, Clone)]
pub struct FileCursorStore {
    path: PathBuf,
}

impl FileCursorStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileCursorStore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The rename is durable only once the folder's entry is: fsync the folder (POSIX; a no-op elsewhere).
    std::fs::File::open(folder)?.sync_all()
}

impl CursorStore for FileCursorStore {
    async fn load(&self) -> Result<Option<String>, CursorError> {
        match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => {
                let cursor = text.trim();
                if cursor.is_empty() || cursor.chars().any(char::is_whitespace) {
                    return Err(CursorError::Corrupt(self.path.clone()));
                }
                Ok(Some(cursor.to_owned()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CursorError::Io { path: self.path.clone(), source }),
        }
    }

    async fn save(&self, cursor: &str) -> Result<(), CursorError> {
        let path = self.path.clone();
        let text = format!("{cursor}\n");
        let io = |source| CursorError::Io { path: self.path.clone(), source };
        tokio::task::spawn_blocking(move || write_atomically(&path, &text))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)
    }
}

/// Capped exponential backoff with full jitter: the n-th consecutive failure waits a random time in
/// `[delay/2, delay]` where `delay = min(initial × 2ⁿ, max)`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// How long to wait after `failures` consecutive failures (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let delay = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let mut bytes = [0u8; 4];
        // Without randomness the jitter is left out, the delay stays capped.
        let random = getrandom::fill(&mut bytes).map(|()| u32::from_le_bytes(bytes)).unwrap_or(u32::MAX);
        let half = delay / 2;
        half + half.mul_f64(f64::from(random) / f64::from(u32::MAX))
    }
}

/// How to follow a feed.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// cardap's address, e.g. `https://cardap.example.jp`.
    pub base_url: String,
    /// The business system's own business ID (two digits).
    pub business_id: String,
    /// Items per page (1–500).
    pub page_size: u32,
    /// The long poll (at most [`MAX_WAIT`]).
    pub wait: Duration,
    pub backoff: Backoff,
}

impl FeedConfig {
    pub fn new(base_url: impl Into<String>, business_id: impl Into<String>) -> Self {
        FeedConfig {
            base_url: base_url.into(),
            business_id: business_id.into(),
            page_size: 100,
            wait: Duration::from_secs(20),
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// cardap refused the request with a `4xx`; asking again would get the same answer (e.g. `400
    /// /problems/invalid-cursor`: the stored cursor names no item of this feed; `404`: not this system's feed or
    /// the system was retired; `401`: the certificate is not, or no longer, a business server certificate).
    #[error("cardap refused the feed request: {status} {problem_type} {title}")]
    Refused { status: u16, problem_type: String, title: String },
    /// cardap could not be reached or answered `5xx` ([`FeedClient::catch_up`] only; `follow` retries).
    #[error("cardap is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The handler failed on item `item_id`; the cursor stays before it.
    #[error("the handler failed on item {item_id}: {source}")]
    Handler { item_id: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("the TLS identity could not be read: {0}")]
    Identity(String),
}

/// A page fetch that failed, and whether trying again can help.
enum Failure {
    Retry(String),
    Fatal(FollowError),
}

/// An HTTPS client that trusts `root_pem` (cardap's CA) and presents the business server certificate
/// (`cert_pem`, with its chain) and its key (`key_pem`) as the TLS client certificate. ring is the crypto provider.
pub fn tls_client(root_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> Result<reqwest::Client, FollowError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| FollowError::Identity(format!("{what}: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.map_err(|e| bad("root certificate", &e))?).map_err(|e| bad("root certificate", &e))?;
    }
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("client certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad("client key", &e))?;
    // ring, the workspace's one provider (deprecated only for lacking post-quantum key exchange).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad("client certificate", &e))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| bad("HTTP client", &e))
}

/// Follows one business system's feed, storing its cursor in `S`.
#[derive(Debug)]
pub struct FeedClient<S> {
    http: reqwest::Client,
    config: FeedConfig,
    cursors: S,
}

impl<S: CursorStore> FeedClient<S> {
    pub fn new(http: reqwest::Client, config: FeedConfig, cursors: S) -> Self {
        FeedClient { http, config, cursors }
    }

    /// Follows the feed until `stop` completes (returns `Ok`) or a fatal error. Between pages and while waiting
    /// for one it stops at once; a page being handled is finished and its cursor stored first.
    pub async fn follow<H: Handler>(&self, handler: &mut H, stop: impl Future<Output = ()>) -> Result<(), FollowError> {
        let mut stop = std::pin::pin!(stop);
        let mut cursor = self.cursors.load().await?;
        let mut failures = 0u32;
        loop {
            let fetched = tokio::select! {
                () = &mut stop => return Ok(()),
                fetched = self.fetch(cursor.as_deref(), self.config.wait) => fetched,
            };
            let page = match fetched {
                Ok(page) => page,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) => {
                    failures = failures.saturating_add(1);
                    let delay = self.config.backoff.delay(failures);
                    tracing::warn!(%why, failures, ?delay, "the feed could not be read; retrying");
                    tokio::select! {
                        () = &mut stop => return Ok(()),
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            failures = 0;
            cursor = self.apply(page, cursor, handler).await?;
        }
    }

    /// Reads and handles pages without waiting until the feed has nothing more; how many items were handled.
    /// Errors are not retried here.
    pub async fn catch_up<H: Handler>(&self, handler: &mut H) -> Result<usize, FollowError> {
        let mut cursor = self.cursors.load().await?;
        let mut handled = 0;
        loop {
            let page = match self.fetch(cursor.as_deref(), Duration::ZERO).await {
                Ok(page) => page,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) => return Err(FollowError::Unavailable(why)),
            };
            let empty = page.items.is_empty();
            handled += page.items.len();
            cursor = self.apply(page, cursor, handler).await?;
            if empty {
                return Ok(handled);
            }
        }
    }

    /// Hands a page's items to the handler in order, then stores where to resume; on a handler failure, stores
    /// the last item handled and fails.
    async fn apply<H: Handler>(
        &self,
        page: Page,
        cursor: Option<String>,
        handler: &mut H,
    ) -> Result<Option<String>, FollowError> {
        let mut last: Option<String> = None;
        for item in page.items {
            let id = item.id.clone();
            if let Err(e) = handler.handle(item).await {
                if let Some(done) = &last {
                    self.cursors.save(done).await?;
                }
                return Err(FollowError::Handler { item_id: id, source: Box::new(e) });
            }
            last = Some(id);
        }
        let next = page.next_cursor.or(last).or(cursor.clone());
        if next != cursor
            && let Some(next) = &next
        {
            self.cursors.save(next).await?;
        }
        Ok(next)
    }

    async fn fetch(&self, cursor: Option<&str>, wait: Duration) -> Result<Page, Failure> {
        let wait = wait.min(MAX_WAIT);
        let url = format!("{}/api/v1/feeds/{}", self.config.base_url.trim_end_matches('/'), self.config.business_id);
        let mut query = vec![("limit", self.config.page_size.clamp(1, 500).to_string())];
        query.push(("wait", wait.as_secs().to_string()));
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let response = self
            .http
            .get(url)
            .query(&query)
            .header("accept", "application/json")
            // The long poll plus room for a slow answer; a hung connection counts as a failure.
            .timeout(wait + Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response.json::<Page>().await.map_err(|e| Failure::Retry(e.to_string()));
        }
        let retry = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        let problem: serde_json::Value = response.json().await.unwrap_or_default();
        let text = |k: &str| problem.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        if retry {
            return Err(Failure::Retry(format!("{status} {}", text("type"))));
        }
        Err(Failure::Fatal(FollowError::Refused {
            status: status.as_u16(),
            problem_type: text("type"),
            title: text("title"),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_item_about_no_resident_reads_with_an_empty_resident_id() {
        let item: FeedItem = serde_json::from_value(serde_json::json!({
            "id": "812-40-1", "type": "issuance_service", "municipality": "131016", "resident_id": null,
            "data": {"certificates": ["juminhyo", "inkan"], "opens": "06:30", "closes": "23:00",
                     "closed_periods": [{"from": "12-29", "to": "01-03"}]}
        }))
        .unwrap();
        assert!(!item.is_about_a_resident() && !item.ends_entitlement());
        assert_eq!(item.resident_id, "");
        let resident: FeedItem = serde_json::from_value(serde_json::json!({
            "id": "812-40-0", "type": "registered", "municipality": "131016",
            "resident_id": "0190a6c2-3c4d-7e5f-8a9b-0c1d2e3f4a5b", "data": {}
        }))
        .unwrap();
        assert!(resident.is_about_a_resident());
    }

    #[tokio::test]
    async fn a_cursor_file_keeps_the_last_cursor_and_replaces_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileCursorStore::new(dir.path().join("feed.cursor"));
        assert_eq!(store.load().await.unwrap(), None);
        store.save("812-40-0").await.unwrap();
        store.save("813-41-1").await.unwrap();
        assert_eq!(store.load().await.unwrap().as_deref(), Some("813-41-1"));
        assert!(!dir.path().join("feed.cursor.tmp").exists());
    }

    #[tokio::test]
    async fn a_garbled_cursor_file_is_an_error_not_the_start_of_the_feed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.cursor");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(FileCursorStore::new(&path).load().await, Err(CursorError::Corrupt(_))));
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        let first = b.delay(1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let third = b.delay(3);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
        for n in [10, 40, u32::MAX] {
            let d = b.delay(n);
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_secs(1), "{n}: {d:?}");
        }
    }
}
