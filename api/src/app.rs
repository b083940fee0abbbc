//! Building and running the server: settings, start-up (migrate, bootstrap, catch up, start the projection
//! runners), the router with its middleware, and graceful shutdown with a drain timeout.

use cardap_commands::access::{Access, AccessPolicy};
use cardap_commands::biometric::Biometrics;
use cardap_commands::business_systems::BusinessSystems;
use cardap_commands::card_writes::{CardKeys, CardWrites};
use cardap_commands::erasure::Erasure;
use cardap_commands::feeds::Feeds;
use cardap_commands::history::History;
use cardap_commands::imports::Imports;
use cardap_commands::issuance_service::IssuanceServices;
use cardap_commands::jobs::Jobs;
use cardap_commands::library::Library;
use cardap_commands::municipalities::Municipalities;
use cardap_commands::oidc::{LoginProvider, OidcSettings};
use cardap_commands::operators::Operators;
use cardap_commands::pki::{CaStarted, Pki};
use cardap_commands::read_access::ReadAccess;
use cardap_commands::residents::ResidentServices;
use cardap_commands::status::Status;
use cardap_commands::webhooks::{Pusher, Webhooks};
use cardap_commands::{Clock, SystemClock, Views};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
use cardap_projections::audit::heads::read_head_file;
use cardap_projections::audit::{AuditChain, AuditKey, AuditPublicKey, HeadSigner, ReadsVerdict, SignedHead, Verdict};
use cardap_projections::erasure::KeyShredder;
use cardap_projections::{ProjectionError, ReadModels};
use cardap_store::{
    CeremonyStore, CredentialStore, Database, EventStore, KeyVault, MasterKey, MasterKeyError, SealedEventStore,
    StoreError, WebhookStore, redact,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes;
pub use crate::settings::Settings;
use crate::settings::{ProjectionRunners, SettingsError};
use crate::state::AppState;

/// Why the server, or a maintenance command, could not start or stopped with an error: each says what failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("the database: {0}")]
    Store(#[from] StoreError),
    #[error("the read models: {0}")]
    ReadModels(#[from] ProjectionError),
    #[error("the master key: {0}")]
    MasterKey(#[from] MasterKeyError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, said in a sentence (e.g. the system administrator could not be registered).
    #[error("{0}")]
    Failed(String),
    /// `cardap audit verify` found the hash chain broken (and printed where).
    #[error("the audit chain does not verify")]
    Tampered,
}

impl StartError {
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> StartError {
        move |source| StartError::Io { what, source }
    }
}

/// A random number from the operating system's CSPRNG (the random part of a 標準ID).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The OS generator failing is not recoverable; a zero draw then only makes the allocation conflict.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// How long a start applies the backlog before it serves (see `Application::start`).
const START_CATCH_UP: Duration = Duration::from_secs(10);

/// The event store every part of the server uses: personal data sealed under the residents' data keys, which
/// `master` wraps. Fails when `master` is not the key this database's data keys were wrapped with.
pub async fn sealed_store(db: &Database, master: &MasterKey) -> Result<Arc<dyn EventStore>, StartError> {
    Ok(sealed_store_and_vault(db, master).await?.0)
}

/// [`sealed_store`] and the key vault it seals with (one per process: it holds this node's key cache), for the
/// erase use case and the erasure follower that destroy keys through it.
pub async fn sealed_store_and_vault(
    db: &Database,
    master: &MasterKey,
) -> Result<(Arc<dyn EventStore>, Arc<KeyVault>), StartError> {
    let vault = db.key_vault(master.clone())?;
    vault.check_master_key().await.map_err(|e| {
        StartError::Failed(format!(
            "the master key does not open this database's data keys: configure the key it was created with \
             (CARDAP_MASTER_KEY or master_key.file): {e}"
        ))
    })?;
    Ok((Arc::new(SealedEventStore::new(db.event_store(), vault.clone())), vault))
}

/// The internal CA of this installation, loaded (its issuing key unsealed under `master`) or created now.
pub async fn start_ca(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
    views: &Views,
    clock: Arc<dyn Clock>,
    master: &MasterKey,
    settings: &Settings,
) -> Result<Pki, StartError> {
    let pki = Pki::new(store.clone(), read.clone(), views.clone(), clock, master.clone(), settings.pki.clone());
    match pki.start().await {
        Ok(CaStarted::Created) => tracing::warn!(
            "created the internal CA (root and issuing CA), its keys sealed under the master key: install the chain \
             from GET /pki/ca.pem where certificates are checked"
        ),
        Ok(CaStarted::Loaded) => tracing::info!("internal CA loaded"),
        Err(e) => return Err(StartError::Failed(format!("the internal CA cannot start: {e}"))),
    }
    Ok(pki)
}

/// The OpenID Connect provider of the business systems, its signing key loaded (unsealed under `master`) or
/// created now. Its issuer is `pki.public_base_url`, else this server's own address.
#[allow(clippy::too_many_arguments)]
pub async fn start_login_provider(
    store: &Arc<dyn EventStore>,
    read: &ReadModels,
    clock: Arc<dyn Clock>,
    master: &MasterKey,
    access: &Access,
    business_systems: &BusinessSystems,
    pki: &Pki,
    settings: &Settings,
    local: SocketAddr,
) -> Result<LoginProvider, StartError> {
    let tls = settings.tls.files().map_err(StartError::Failed)?.is_some();
    let issuer = match &settings.pki.public_base_url {
        Some(base) => base.clone(),
        None => format!("{}://{local}", if tls { "https" } else { "http" }),
    };
    let provider = LoginProvider::new(
        store.clone(),
        read.clone(),
        clock,
        master.clone(),
        access.clone(),
        business_systems.clone(),
        pki.clone(),
        OidcSettings { issuer, id_token_lifetime: settings.id_token_lifetime },
    );
    provider.start().await.map_err(|e| StartError::Failed(format!("the ID-token signing key cannot start: {e}")))?;
    Ok(provider)
}

/// The master key of `settings`, telling the operator to back it up when its file was just created.
pub fn master_key(settings: &Settings) -> Result<MasterKey, StartError> {
    let (key, created) = settings.master_key()?;
    if created {
        tracing::warn!(
            path = %settings.master_key_file.display(),
            "created a new master key: back it up and give every node the same key; without it no personal \
             data can be read"
        );
    }
    Ok(key)
}

/// The chain a node keeps over the events as stored (personal data sealed: the store without its decorator); it
/// signs heads when an audit key file is configured, creating the key when missing.
pub fn audit_chain(db: &Database, read: &ReadModels, settings: &Settings) -> Result<AuditChain, StartError> {
    let chain = AuditChain::new(read.pool().clone(), db.event_store());
    let Some(path) = &settings.audit.key_file else {
        return Ok(chain);
    };
    let (key, created) = AuditKey::load_or_create(path).map_err(ProjectionError::from)?;
    if created {
        tracing::warn!(
            path = %path.display(),
            public_key = %key.public(),
            "created a new audit key: give its public key (cardap audit public-key) to the auditors, and keep the \
             head file out of the database administrator's reach"
        );
    }
    let signer =
        HeadSigner { key: Arc::new(key), file: settings.audit.head_file.clone(), every: settings.audit.head_every };
    Ok(chain.signing(signer))
}

/// What `cardap audit verify` found: the events' chain's verdict, the read access log's (`None` when the heads'
/// signatures already failed), and the signed heads it checked.
#[derive(Debug)]
pub struct AuditReport {
    pub verdict: Verdict,
    pub reads: Option<ReadsVerdict>,
    pub heads: Vec<SignedHead>,
}

impl AuditReport {
    pub fn intact(&self) -> bool {
        matches!(self.verdict, Verdict::Intact { .. }) && self.reads.as_ref().is_some_and(ReadsVerdict::is_intact)
    }
}

impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.verdict)?;
        if let Some(reads) = &self.reads {
            writeln!(f, "{reads}")?;
        }
        match (self.intact(), self.heads.last()) {
            (true, None) => write!(f, "no signed head checked: only the chain itself was verified"),
            (true, Some(last)) => write!(
                f,
                "{} signed heads checked, the last at position {} signed {}",
                self.heads.len(),
                last.seq,
                last.signed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            (false, _) => write!(f, "the audit chain does not verify"),
        }
    }
}

/// `cardap audit verify`: recomputes the chain, then checks it against the signed heads (of `head_file`, else those
/// in the database) with `public_keys` (base64), else with the public half of the configured audit key file.
pub async fn verify_audit(
    settings: &Settings,
    head_file: Option<&std::path::Path>,
    public_keys: &[String],
) -> Result<AuditReport, StartError> {
    let db = open_database(settings).await?;
    // Verification needs no master key: it reads the chain's own table, not a sealed read model.
    let pool = cardap_projections::connect_pool(&settings.database_url, 4)?;
    // Verification signs nothing: the chain without a signer.
    let chain = AuditChain::new(pool, db.event_store());
    let heads = match head_file {
        Some(file) => read_head_file(file).map_err(ProjectionError::from)?,
        None => chain.heads().await?,
    };
    let keys = match (&settings.audit.key_file, public_keys.is_empty()) {
        (_, false) => public_keys.iter().map(|k| AuditPublicKey::parse(k)).collect::<Result<_, _>>(),
        (Some(path), true) if !heads.is_empty() => AuditKey::load(path).map(|k| vec![k.public().clone()]),
        _ => Ok(Vec::new()),
    }
    .map_err(ProjectionError::from)?;
    if keys.is_empty() && !heads.is_empty() {
        return Err(StartError::Failed(
            "there are signed heads to check but no audit public key: give --public-key or configure audit.key_file"
                .to_owned(),
        ));
    }
    let verdict = chain.verify_against(&heads, &keys).await?;
    let reads = match verdict {
        Verdict::Unsigned { .. } => None,
        _ => {
            let signed: Vec<(u64, String)> = heads.iter().map(|h| (h.reads_seq, h.reads_hash.clone())).collect();
            Some(chain.reads().verify(&signed).await?)
        }
    };
    Ok(AuditReport { verdict, reads, heads })
}

/// Creates a missing data directory (and its parents) readable by its owner only; an existing one is left as it is.
pub fn owner_only_dir(dir: &std::path::Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Connects and migrates, retrying while the database is still starting. A SQLite file's directory is created
/// when missing (the default database is `cardap-data/cardap.db` on a fresh machine).
pub async fn open_database(settings: &Settings) -> Result<Database, StartError> {
    if let Some(dir) = sqlite_directory(&settings.database_url) {
        owner_only_dir(&dir).map_err(StartError::io("cannot create the database's directory"))?;
    }
    let db = Database::connect(&settings.database_url, settings.max_connections).await?;
    let deadline = tokio::time::Instant::now() + settings.startup_timeout;
    loop {
        match db.migrate().await {
            Ok(()) => return Ok(db),
            Err(cardap_store::StoreError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, url = %redact(&settings.database_url), "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The directory of a SQLite database file URL (`sqlite://dir/file.db`, `sqlite:dir/file.db`), if it names one.
fn sqlite_directory(url: &str) -> Option<std::path::PathBuf> {
    cardap_store::sqlite_file(url)?.parent().filter(|d| !d.as_os_str().is_empty()).map(std::path::Path::to_path_buf)
}

/// A built server, bound to its port, with its projection runners started.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    shutdown: watch::Sender<bool>,
    /// Set when the drain timeout expires: requests still running are answered 503 and dropped.
    hard_stop: watch::Sender<bool>,
    /// The projection runners, the session purge and the `/metrics` listener: stopped by `shutdown`.
    runners: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
    connections: crate::settings::ConnectionLimits,
    metrics_addr: SocketAddr,
    /// HTTPS (and mutual TLS) on the listener, when configured.
    tls: Option<Arc<crate::tls::Tls>>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with the clock every use case reads (tests move a [`cardap_commands::ManualClock`]).
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Result<Application, StartError> {
        // On the heap: the start holds every service across its awaits, and a caller that starts several nodes
        // at once (`tokio::join!` in a test) would otherwise hold them all on one thread's stack.
        Box::pin(Self::start(settings, clock)).await
    }

    async fn start(settings: Settings, clock: Arc<dyn Clock>) -> Result<Application, StartError> {
        // Before the database: a webhook CA file that cannot be used stops the start at once, naming it.
        let transport = crate::webhook_transport::HttpTransport::new(settings.webhook.ca_file.as_deref())
            .map_err(|e| StartError::Failed(format!("the webhook client: {e}")))?;
        let db = open_database(&settings).await?;
        let master = master_key(&settings)?;
        let (store, vault) = sealed_store_and_vault(&db, &master).await?;
        let read = ReadModels::connect(&settings.database_url, settings.max_connections, vault.clone())?;
        // A short backlog is applied before the first request; a long one (a restart after a bulk load) is left to
        // the runners, so that the server answers `/healthz` at once and `/readyz` shows the lag meanwhile.
        if settings.projection_runners == ProjectionRunners::Here {
            match tokio::time::timeout(START_CATCH_UP, read.catch_up(store.clone())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "read models are still catching up; serving anyway"),
                Err(_) => tracing::warn!(
                    seconds = START_CATCH_UP.as_secs(),
                    "read models still catching up on a long backlog; serving meanwhile (/readyz shows the lag)"
                ),
            }
        }
        crate::bootstrap::run(&store, &read, &settings).await?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut progress = Vec::new();
        let mut runners = Vec::new();
        runners.push(tokio::spawn(audit_chain(&db, &read, &settings)?.run(shutdown_rx.clone())));
        // Every node follows the erasures itself: it finishes a destruction a dead process left undone, and its own
        // key cache stops opening an erased resident's data.
        let shredder = KeyShredder::new(read.pool().clone(), db.event_store(), vault.clone());
        runners.push(tokio::spawn(shredder.run(shutdown_rx.clone())));
        for runner in read.runners(store.clone()) {
            progress.push((runner.name(), runner.progress()));
            runners.push(match settings.projection_runners {
                ProjectionRunners::Here => tokio::spawn(runner.run(shutdown_rx.clone())),
                ProjectionRunners::Elsewhere => tokio::spawn(runner.watch(shutdown_rx.clone())),
            });
        }
        let views = Views::new(progress);
        let reads = ReadAccess::new(store.clone(), read.clone(), clock.clone());
        let residents = ResidentServices::new(
            store.clone(),
            read.clone(),
            views.clone(),
            Arc::new(random_u64),
            reads.clone(),
            clock.clone(),
        );
        let policy = AccessPolicy {
            sessions: settings.sessions,
            passwords: settings.passwords,
            lockout: settings.lockout,
            throttle: settings.throttle,
        };
        let pki = start_ca(&store, &read, &views, clock.clone(), &master, &settings).await?;
        let credentials = Arc::new(CredentialStore::new(read.pool().clone()));
        let jobs = Jobs::new(clock.clone(), settings.imports.keep_finished);
        let keys: Arc<dyn cardap_commands::ports::DataKeys> = vault.clone();
        let access = Access::new(store.clone(), read.clone(), credentials, clock.clone(), views.clone(), keys, policy);
        let listener = TcpListener::bind(settings.listen).await.map_err(StartError::io("cannot listen"))?;
        let port = listener.local_addr().map_err(StartError::io("cannot listen"))?.port();
        let relying_party = settings.biometric(port).map_err(StartError::Failed)?;
        let biometrics = Biometrics::new(
            store.clone(),
            read.clone(),
            views.clone(),
            access.clone(),
            Arc::new(CeremonyStore::new(read.pool().clone())),
            &relying_party,
            &master.derive_key("cardap webauthn fake credential IDs"),
        )
        .map_err(|e| StartError::Failed(format!("biometric login: {e}")))?;
        tracing::info!(rp_id = %relying_party.rp_id, origin = %relying_party.origin, "biometric login (WebAuthn)");
        let business_systems = BusinessSystems::new(store.clone(), read.clone(), views.clone());
        let oidc = start_login_provider(
            &store,
            &read,
            clock.clone(),
            &master,
            &access,
            &business_systems,
            &pki,
            &settings,
            listener.local_addr().map_err(StartError::io("cannot listen"))?,
        )
        .await?;
        runners.push(tokio::spawn(purge_sessions(
            access.clone(),
            biometrics.clone(),
            jobs.clone(),
            oidc.clone(),
            shutdown_rx.clone(),
        )));
        let card_writes = CardWrites::new(residents.clone(), CardKeys::new(&master));
        let index = views
            .of(cardap_projections::feeds::NAME)
            .ok_or_else(|| StartError::Failed("the feeds' index has no runner".into()))?;
        let feeds = Feeds::new(store.clone(), read.clone(), pki.clone(), reads.clone(), index);
        let webhooks = Webhooks::new(
            store.clone(),
            business_systems.clone(),
            feeds.clone(),
            WebhookStore::new(read.pool().clone()),
            master.clone(),
            clock.clone(),
        );
        let pusher = Pusher::new(webhooks.clone(), Arc::new(transport), settings.webhook.push);
        runners.push(tokio::spawn(pusher.run(shutdown_rx.clone())));
        let state = AppState {
            card_writes,
            municipalities: Municipalities::new(store.clone(), read.clone(), views.clone()),
            business_systems,
            oidc,
            history: History::new(store.clone(), read.clone(), reads.clone()),
            feeds,
            library: Library::new(store.clone(), read.clone()),
            issuance: IssuanceServices::new(store.clone(), clock.clone()),
            webhooks,
            erasure: Erasure::new(store.clone(), views.clone(), vault, clock.clone(), settings.erasure_retention),
            reads,
            operators: Operators::new(store.clone(), read.clone(), access.clone(), views.clone()),
            residents,
            access,
            biometrics,
            views: views.clone(),
            status: Status::new(store.clone(), views.clone()),
            imports: Imports::new(settings.imports),
            jobs,
            pki,
            store,
            read,
            metrics: Arc::new(Metrics::default()),
        };
        // HTTPS when configured: a certificate or key that cannot be used stops the start, naming the file.
        let tls = match settings.tls.files().map_err(StartError::Failed)? {
            Some(files) => {
                let tls = crate::tls::Tls::load(files, Some(state.pki.clone()))
                    .await
                    .map_err(|e| StartError::Failed(format!("TLS: {e}")))?;
                runners.push(tokio::spawn(tls.clone().watch(shutdown_rx.clone())));
                Some(tls)
            }
            None => None,
        };
        let metrics_listener =
            TcpListener::bind(settings.metrics_listen).await.map_err(StartError::io("cannot listen for /metrics"))?;
        tracing::info!(
            address = %listener.local_addr().map_err(StartError::io("cannot listen"))?,
            backend = db.backend().as_str(),
            database = %redact(&settings.database_url),
            metrics = %metrics_listener.local_addr().map_err(StartError::io("cannot listen for /metrics"))?,
            scheme = if tls.is_some() { "https" } else { "http" },
            "cardap listening"
        );
        let (hard_stop, hard_stop_rx) = watch::channel(false);
        let router = app_with_limits(state.clone(), &settings.connections)
            .layer(axum::middleware::from_fn_with_state(hard_stop_rx, hard_stop_guard));
        let metrics = Router::new().route("/metrics", get(crate::metrics::render)).with_state(state.clone());
        let metrics_rx = shutdown_rx.clone();
        let metrics_addr = metrics_listener.local_addr().map_err(StartError::io("cannot listen for /metrics"))?;
        runners.push(tokio::spawn(async move {
            let mut stop = metrics_rx;
            let served = axum::serve(metrics_listener, metrics).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "the /metrics listener stopped");
            }
        }));
        Ok(Application {
            listener,
            router,
            state,
            shutdown,
            hard_stop,
            runners,
            drain_timeout: settings.drain_timeout,
            connections: settings.connections,
            metrics_addr,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `signal` resolves, then stops accepting, lets in-flight requests finish (at most the drain
    /// timeout) and stops the projection runners.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let feeds = self.state.feeds.clone();
        let server = crate::serve::serve(self.listener, self.router, self.connections, self.tls, async move {
            signal.await;
            // Feed followers (SSE) end their streams, so that the connections can drain.
            feeds.close();
            let _ = stop_tx.send(true);
        });
        let drain = self.drain_timeout;
        let drained = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            () = server => {}
            () = drained => {
                tracing::warn!("drain timeout reached; cutting off the requests still running");
                let _ = self.hard_stop.send(true);
            }
        }
        let _ = self.shutdown.send(true);
        for runner in self.runners {
            let _ = runner.await;
        }
        tracing::info!("cardap stopped");
        Ok(())
    }
}

/// Answers 503 to requests that are still running when the drain timeout expires (their handlers are dropped
/// before they write anything more), and to requests that arrive after it.
async fn hard_stop_guard(
    axum::extract::State(mut stop): axum::extract::State<watch::Receiver<bool>>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if *stop.borrow() {
        return crate::error::ApiError::shutting_down().into_response();
    }
    tokio::select! {
        response = next.run(request) => response,
        _ = stop.wait_for(|s| *s) => crate::error::ApiError::shutting_down().into_response(),
    }
}

/// How often sessions that can never be used again are deleted.
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(600);

/// Deletes ended, expired and idle sessions, expired WebAuthn ceremonies and expired login codes of business
/// systems, and drops the import jobs kept past their time, at start and then every [`SESSION_PURGE_EVERY`], until
/// shutdown.
async fn purge_sessions(
    access: Access,
    biometrics: Biometrics,
    jobs: Jobs<ApiError>,
    oidc: LoginProvider,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match access.purge_sessions().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "ended and expired sessions deleted"),
            Err(e) => tracing::warn!(error = %e, "could not delete ended and expired sessions"),
        }
        if let Err(e) = biometrics.purge_ceremonies().await {
            tracing::warn!(error = %e, "could not delete expired WebAuthn ceremonies");
        }
        // Expired login codes of business systems.
        if let Err(e) = oidc.purge().await {
            tracing::warn!(error = %e, "could not delete expired login codes");
        }
        // Finished jobs past their hour, with any generated password nobody fetched, even when nobody asks.
        jobs.purge_expired();
        tokio::select! {
            _ = tokio::time::sleep(SESSION_PURGE_EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// The router with every route and middleware, for `Application` and for tests, with the default limits.
pub fn app(state: AppState) -> Router {
    app_with_limits(state, &crate::settings::ConnectionLimits::default())
}

/// A body that pauses longer than `limit` between two pieces ends with an error (the extractor reading it answers
/// 400); a slow client cannot hold a request open by trickling its body.
async fn body_read_limit(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let request = request.map(|body| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(limit, body)));
    next.run(request).await
}

/// [`app`] with the body-read limit of `limits`.
pub fn app_with_limits(state: AppState, limits: &crate::settings::ConnectionLimits) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let api = api_routes(limits);
    // The clerk UI calls the same routes in process (its field errors are the API's pointers and messages).
    let in_process = crate::ui::InProcessApi::new(
        api.clone()
            .fallback(|| async { crate::error::ApiError::not_found() })
            .layer(axum::middleware::from_fn(crate::i18n::layer))
            .layer(DefaultBodyLimit::max(1024 * 1024))
            .with_state(state.clone()),
    );
    let router = Router::new()
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(crate::openapi::serve))
        .merge(crate::ui::router(in_process))
        .merge(api)
        .fallback(|| async { crate::error::ApiError::not_found() })
        .method_not_allowed_fallback(|| async { crate::error::ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::metrics::count))
        .layer(axum::middleware::from_fn(crate::i18n::layer))
        .layer(axum::middleware::from_fn(no_store))
        .layer(DefaultBodyLimit::max(1024 * 1024));
    guarded(router, REQUEST_TIME_LIMIT)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let path =
                        request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("unmatched");
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %request.method(), path, request_id = id)
                })
                // Not a line per 5xx answer: a 500 is logged where it arises (`ApiError`), with its cause, and a 503 is a
                // deliberate refusal (password workers busy) that a login flood would otherwise turn into a log flood.
                .on_failure(|class: ServerErrorsFailureClass, latency: Duration, _: &tracing::Span| {
                    if let ServerErrorsFailureClass::Error(error) = class {
                        tracing::error!(error, latency_ms = latency.as_millis(), "request failed");
                    }
                }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}

/// The API's routes (the `/api/v1` resources, the CA's and the login provider's), without the server's outer
/// layers: served by the server and called in process by the clerk UI.
fn api_routes(limits: &crate::settings::ConnectionLimits) -> Router<AppState> {
    Router::new()
        .merge(routes::sessions::router())
        .merge(routes::biometrics::router())
        .merge(routes::municipalities::router())
        .merge(routes::business_systems::router())
        .merge(routes::operators::router())
        .merge(routes::operator_csv::router())
        .merge(routes::jobs::router())
        .merge(routes::resident_settings::router())
        .merge(routes::residents::router())
        .merge(routes::cards::router())
        .merge(routes::card_writes::router())
        .merge(routes::pki::router())
        .merge(routes::oidc::router())
        .merge(routes::audit::router())
        .merge(routes::read_access::router())
        .merge(routes::issuance_service::router())
        .merge(routes::feeds::router())
        .merge(routes::library_links::router())
        .merge(routes::webhooks::router())
        // Every route above; the registry import (below) reads its streamed body under its own stall limit.
        .layer(axum::middleware::from_fn_with_state(limits.body_read, body_read_limit))
        .merge(routes::registry::router())
}

/// Every answer of the API may carry personal data, a password or an operator's permissions: none of it is for a
/// cache (a shared proxy, the browser's disk). An answer that says otherwise itself keeps its own header.
async fn no_store(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    if api && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// How long a request may take until its response starts. Generous: a JSON batch registration (`POST …/operators`
/// with an array, 1 MiB at most) hashes one Argon2id password per operator. The operator CSV import answers `202`
/// as soon as its header row is read and works in a job (routes::jobs); the registry import answers once its
/// header row is read and then streams under its own limits (routes::registry: IMPORT_TIME_LIMIT 2 h in all,
/// STALL_TIMEOUT 120 s without upload bytes).
const REQUEST_TIME_LIMIT: Duration = Duration::from_secs(300);

/// A handler that panics or runs past `time_limit` is answered like any other failure: problem+json, 500
/// `/problems/internal` or 503 `/problems/timeout`.
fn guarded<S: Clone + Send + Sync + 'static>(router: Router<S>, time_limit: Duration) -> Router<S> {
    router
        .layer(axum::middleware::from_fn_with_state(time_limit, time_limit_guard))
        .layer(CatchPanicLayer::custom(panic_response))
}

async fn time_limit_guard(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::error::ApiError::timed_out(limit).into_response(),
    }
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    crate::error::ApiError::internal(format!("the handler panicked: {message}")).into_response()
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    fn router() -> Router {
        let panics = || async {
            if true {
                panic!("index out of bounds: the len is 0 but the index is 1");
            }
            "unreachable"
        };
        let sleeps = || async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "too late"
        };
        guarded(Router::new().route("/panics", get(panics)).route("/sleeps", get(sleeps)), Duration::from_millis(50))
    }

    async fn problem(path: &str) -> (StatusCode, String, serde_json::Value) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = router().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[axum::http::header::CONTENT_TYPE].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, content_type, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_problem_json_500() {
        let (status, content_type, body) = problem("/panics").await;

        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["type"], crate::error::ProblemType::Internal.as_str());
        assert!(!body.to_string().contains("index out of bounds"), "the panic stays in the log: {body}");
    }

    #[tokio::test]
    async fn a_handler_past_the_time_limit_answers_problem_json_503() {
        let (status, content_type, body) = problem("/sleeps").await;

        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(body["type"], crate::error::ProblemType::Timeout.as_str());
        assert_eq!(body["status"], 503);
    }
}
