//! The end-to-end harness: start the real `cardap` server on a fresh database (PostgreSQL or SQLite), talk HTTP
//! to it with `reqwest`, and look at the event log directly to prove that a refused request wrote nothing.
//!
//! Owns test support only. It never reaches into the server's internals except where the API has no door
//! yet: operators other than the bootstrap administrator are registered through the command layer and the
//! credential store (there is no operator-registration API yet), and [`TestApp::event_count`] reads the log.
//! Use [`on_both_backends!`] to run every test once per backend.
//!
//! Length: the harness and the helpers every area's tests share (servers, requests, operators, the registry,
//! residents); the import jobs' helpers are in `jobs`, the browser tests' headless Chromium in `browser`, the clerk
//! UI's pages over HTTP (and the set-ups of its tests) in `ui`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cardap_api::state::AppState;
use cardap_api::{Application, Settings};
use cardap_commands::passwords::{self, Secret};
use cardap_commands::{Clock, CommandContext, CommandHandler, ManualClock, Permission, SystemClock};
use cardap_domain::operator::{self, Operator, OperatorCommand, OperatorId, OperatorName, OperatorProfile, Role};
use cardap_domain::{Aggregate, MunicipalityCode, OperatorKey};
use cardap_store::{Checkpoint, CommandId, ReadFilter, StreamId};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use reqwest;
pub use serde_json;

mod jobs;
pub use jobs::{Imported, Refusal, job_path, operator_import_path};

pub mod browser;
pub mod ui;

/// The bootstrap system administrator of [`Settings::for_tests`].
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "AdminPassw0rd";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The name `/readyz` reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    /// A fresh, empty database of this backend; the directory (SQLite) must outlive the server.
    pub async fn fresh_database(self) -> (String, Option<TempDir>) {
        match self {
            Backend::Postgres => (cardap_testkit::fresh_postgres_url().await, None),
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                (cardap_testkit::fresh_sqlite_url(dir.path()), Some(dir))
            }
        }
    }
}

/// Instantiates async test functions `fn name(backend: Backend)` once per backend, in modules `postgres` and
/// `sqlite`, each on a multi-threaded runtime (the server and the client share it).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test($crate::Backend::Postgres).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test($crate::Backend::Sqlite).await;
                }
            )+
        }
    };
}

/// A running server on its own fresh database.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// The same, for raw TCP.
    pub socket_addr: SocketAddr,
    /// `http://127.0.0.1:<port>` of `/metrics`, apart from the API.
    pub metrics_address: String,
    pub client: reqwest::Client,
    /// The server's state: its event store and read models (for [`register_operator`] and event counts).
    pub state: AppState,
    pub settings: Settings,
    /// The clock the server reads, when the test moves it ([`spawn_app_with_clock`]); else the system clock.
    pub clock: Option<ManualClock>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), cardap_api::StartError>>>,
    _dir: Option<TempDir>,
}

/// `openssl <args> <path>`'s standard output; panics when it fails.
pub fn openssl(args: &[&str], path: &std::path::Path) -> Vec<u8> {
    let out = std::process::Command::new("openssl").args(args).arg(path).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The server on HTTPS (mutual TLS on the same port, cardap's own CA trusted for client certificates), its
/// certificate for `localhost` and 127.0.0.1 issued by a new test CA whose root is written to `dir/root.pem`;
/// `address` is the `https://` URL and `client` trusts that root. Returns the app and the root's path.
pub async fn spawn_https_app(backend: Backend, dir: &std::path::Path) -> (TestApp, std::path::PathBuf) {
    use cardap_commands::pki::ca::{self, Profile, Serial};
    let now = chrono::Utc::now();
    let issuing = ca::create("cardap https test", now).expect("a test CA");
    let root = dir.join("root.pem");
    std::fs::write(&root, issuing.root.cert_pem()).expect("root.pem written");
    let server_key = dir.join("server.key");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"], &server_key);
    let request = cardap_commands::pki::csr::parse(&openssl(&["req", "-new", "-subj", "/CN=x", "-key"], &server_key))
        .expect("the server's CSR");
    let ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    let profile = Profile::Tls { dns_names: vec!["localhost".into()], ips };
    let serial = Serial::random().expect("a serial");
    let cert = issuing.issuing.issue(&request.spki_der, &profile, &serial, None, now).expect("the server certificate");
    let server_pem = dir.join("server.pem");
    let chain = format!("{}{}", ca::pem("CERTIFICATE", &cert), issuing.issuing.cert_pem());
    std::fs::write(&server_pem, chain).expect("server.pem written");
    let tls = cardap_api::settings::TlsSettings {
        cert_file: Some(server_pem),
        key_file: Some(server_key),
        client_ca_file: None,
        crl_file: None,
        reload: Duration::from_secs(60),
    };
    let mut app = spawn_app_with(backend, |s| s.tls = tls).await;
    app.address = format!("https://127.0.0.1:{}", app.socket_addr.port());
    let root_cert = reqwest::Certificate::from_pem(&std::fs::read(&root).expect("root.pem")).expect("a root");
    app.client = reqwest::Client::builder().add_root_certificate(root_cert).build().expect("an HTTPS client");
    (app, root)
}

/// Makes ring the process's rustls provider (the workspace's one; reqwest's TLS in the tests is built without a
/// provider of its own). Idempotent.
pub fn install_crypto_provider() {
    // Deprecated only for lacking post-quantum key exchange (see api/src/tls.rs); an error means it is installed.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts the server on a fresh database of `backend`.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Like [`spawn_app`], with the settings adjusted by `configure` first.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (url, dir) = backend.fresh_database().await;
    let mut settings = Settings::for_tests(url);
    configure(&mut settings);
    spawn_app_on(settings, dir).await
}

/// Like [`spawn_app_with`], on a clock that stands still until the test moves it (`app.clock`): sessions and
/// locks expire when the test says, never by sleeping.
pub async fn spawn_app_with_clock(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (url, dir) = backend.fresh_database().await;
    let mut settings = Settings::for_tests(url);
    configure(&mut settings);
    spawn_app_clocked(settings, dir, Some(ManualClock::at(chrono::Utc::now()))).await
}

/// Starts the server with exactly these settings (e.g. on a private [`cardap_testkit::PgCluster`]).
pub async fn spawn_app_on(settings: Settings, dir: Option<TempDir>) -> TestApp {
    spawn_app_clocked(settings, dir, None).await
}

async fn spawn_app_clocked(settings: Settings, dir: Option<TempDir>, clock: Option<ManualClock>) -> TestApp {
    install_crypto_provider();
    let system: Arc<dyn Clock> = match &clock {
        Some(c) => Arc::new(c.clone()),
        None => Arc::new(SystemClock),
    };
    let application = Application::build_with_clock(settings.clone(), system).await.expect("the server starts");
    let socket_addr = application.local_addr().expect("bound address");
    let metrics_address = format!("http://{}", application.metrics_addr());
    let address = format!("http://{socket_addr}");
    let state = application.state().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Generous, yet far below the test runner's patience: a hung server fails the test instead of stalling it.
        .timeout(Duration::from_secs(40))
        .build()
        .expect("http client");
    TestApp {
        address,
        metrics_address,
        socket_addr,
        client,
        state,
        settings,
        clock,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl TestApp {
    /// Moves the server's clock forward; panics unless the app was started with [`spawn_app_with_clock`].
    pub fn advance(&self, by: Duration) {
        let clock = self.clock.as_ref().expect("started with spawn_app_with_clock");
        clock.advance(chrono::Duration::from_std(by).expect("a duration chrono can hold"));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request with an optional bearer token.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    // The request helpers build the request at once and return a future that borrows nothing, so a test can
    // hand it to an assertion helper that looks at the event log before and after it is sent.

    pub fn get(&self, path: &str, token: Option<&str>) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::GET, path, token))
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::POST, path, token).json(body))
    }

    pub fn patch(
        &self,
        path: &str,
        token: Option<&str>,
        if_match: Option<&str>,
        body: &Value,
    ) -> impl Future<Output = Reply> + Send + use<> {
        let mut builder = self.request(Method::PATCH, path, token).json(body);
        if let Some(etag) = if_match {
            builder = builder.header("if-match", etag);
        }
        send(builder)
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::DELETE, path, token))
    }

    /// Logs in; `None` for the municipality of a system administrator.
    pub fn try_login(
        &self,
        municipality: Option<&str>,
        operator_id: &str,
        password: &str,
    ) -> impl Future<Output = Reply> + Send + use<> {
        let mut body = json!({ "operator_id": operator_id, "password": password });
        if let Some(code) = municipality {
            body["municipality"] = json!(code);
        }
        self.post("/api/v1/sessions", None, &body)
    }

    /// Logs in and returns the token; panics unless the login succeeds.
    pub async fn login(&self, municipality: Option<&str>, operator_id: &str, password: &str) -> String {
        let reply = self.try_login(municipality, operator_id, password).await;
        assert_eq!(reply.status, StatusCode::CREATED, "login of {operator_id}: {}", reply.text);
        reply.json()["token"].as_str().expect("token").to_owned()
    }

    /// A session of the bootstrap system administrator.
    pub async fn admin_token(&self) -> String {
        self.login(None, ADMIN, ADMIN_PASSWORD).await
    }

    /// Registers a municipality as `token`'s operator; panics unless it answers 201.
    pub async fn register_municipality(&self, token: &str, code: &str, name: &str, display_order: i64) -> Reply {
        let reply = self.post("/api/v1/municipalities", Some(token), &municipality(code, name, display_order)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "register {code}: {}", reply.text);
        reply
    }

    /// Every event committed so far (through the store, not the API).
    ///
    /// On PostgreSQL `read_all` holds back events while an older transaction anywhere in the cluster is still
    /// open (tests on other databases run in parallel), so this reads until it has reached the store's head.
    pub async fn event_count(&self) -> usize {
        let head = self.state.store.head().await.expect("the head of the event log");
        eventually(Duration::from_secs(10), "the event log to reach its head", || async {
            let mut after = Checkpoint::START;
            let mut count = 0;
            loop {
                let page = self.state.store.read_all(after, 1000, &ReadFilter::All).await.expect("read the event log");
                let Some(last) = page.last() else { break };
                after = last.checkpoint;
                count += page.len();
            }
            (after >= head).then_some(count)
        })
        .await
    }

    /// Sends the shutdown signal and waits for `run_until` to return (at most `limit`).
    /// Returns how long it took.
    pub async fn shut_down(&mut self, limit: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        self.signal_shutdown();
        let server = self.server.take().expect("the server is running");
        let result = tokio::time::timeout(limit, server)
            .await
            .unwrap_or_else(|_| panic!("run_until did not return within {limit:?} of the shutdown signal"));
        result.expect("the server task did not panic").expect("run_until returns Ok");
        started.elapsed()
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Whether `run_until` has returned.
    pub fn server_finished(&self) -> bool {
        self.server.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// A registration body.
pub fn municipality(code: &str, name: &str, display_order: i64) -> Value {
    json!({ "code": code, "name": name, "kind": "municipality", "display_order": display_order })
}

/// The check digit of a five-digit JIS X 0402 prefix (S = 6·d1 + … + 2·d5; (11 − S mod 11) mod 10), so tests can
/// make valid codes that nobody registered.
pub fn with_check_digit(prefix: &str) -> String {
    assert_eq!(prefix.len(), 5, "a five-digit prefix");
    let sum: u32 = prefix.bytes().zip((2..=6).rev()).map(|(d, w)| u32::from(d - b'0') * w).sum();
    format!("{prefix}{}", (11 - sum % 11) % 10)
}

/// An answer, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

/// Sends and reads the whole answer.
pub async fn send(builder: RequestBuilder) -> Reply {
    let response = builder.send().await.expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    Reply { status, headers, text }
}

impl Reply {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok())
    }

    /// The `ETag`, e.g. `"1"`.
    pub fn etag(&self) -> &str {
        self.header("etag").unwrap_or_else(|| panic!("no ETag: {:?}", self.headers))
    }

    /// Asserts an `application/problem+json` answer with this status and `type`, and returns its body.
    #[track_caller]
    pub fn problem(&self, status: StatusCode, kind: &str) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type of a {status} answer; body: {:?}",
            self.text
        );
        let body = self.json();
        assert_eq!(body["type"], kind, "problem type; body: {body}");
        assert_eq!(body["status"], status.as_u16(), "problem status; body: {body}");
        assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()), "problem title; body: {body}");
        body
    }

    /// The `field`s of a problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The message of the error about `field`.
    #[track_caller]
    pub fn error_message(&self, field: &str) -> String {
        let body = self.json();
        body["errors"]
            .as_array()
            .and_then(|errors| errors.iter().find(|e| e["field"] == field))
            .and_then(|e| e["message"].as_str())
            .unwrap_or_else(|| panic!("no error about {field}: {body}"))
            .to_owned()
    }
}

/// An operator registered for a test.
#[derive(Debug, Clone)]
pub struct TestOperator {
    pub key: OperatorKey,
    pub municipality: Option<String>,
    pub operator_id: String,
    pub password: String,
}

impl TestOperator {
    pub async fn login(&self, app: &TestApp) -> String {
        app.login(self.municipality.as_deref(), &self.operator_id, &self.password).await
    }
}

/// Registers an operator directly through the command layer and the credential store (no API for it yet), and
/// waits until the read models know him, so he can log in at once.
pub async fn register_operator(
    state: &AppState,
    municipality: Option<&str>,
    operator_id: &str,
    password: &str,
    roles: &[Role],
) -> TestOperator {
    let code = municipality.map(|c| MunicipalityCode::parse(c).expect("a valid municipality code"));
    let login = OperatorId::parse(operator_id).expect("operator id");
    let key = OperatorKey::for_login(code.as_ref(), &login);
    let stream = StreamId::new(Operator::STREAM_TYPE, &operator::stream_key(code.as_ref(), &login)).expect("stream id");
    let hash = passwords::hash_password(Secret::new(password)).await.expect("password hashed");
    let at = chrono::Utc::now();
    let executed = CommandHandler::<Operator>::new(state.store.clone())
        .execute_with(
            &CommandContext::system(CommandId::generate()),
            &Permission::ManageMunicipalities,
            &stream,
            code.clone(),
            None,
            OperatorCommand::Register {
                key,
                municipality: code,
                operator_id: login,
                profile: OperatorProfile::named(OperatorName::parse(&format!("テスト {operator_id}")).expect("name")),
                roles: roles.to_vec(),
                business_systems: vec![],
                usable: vec![],
            },
            |_| vec![cardap_store::Companion::SetPassword { operator: key, hash: hash.clone(), at }],
        )
        .await
        .expect("operator registered");
    state.wait_for_views(executed.outcome.expect("events written").checkpoint).await;
    TestOperator {
        key,
        municipality: municipality.map(str::to_owned),
        operator_id: operator_id.to_owned(),
        password: password.to_owned(),
    }
}

/// A clerk (窓口) of `municipality`.
pub async fn register_clerk(state: &AppState, municipality: &str, operator_id: &str) -> TestOperator {
    register_operator(state, Some(municipality), operator_id, "ClerkPassw0rd", &[Role::Clerk]).await
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Operators through the API, shared use, and the operator streams (tests/tests/operators.rs, login.rs,
// authorization.rs).

/// `/api/v1/municipalities/{code}/operators`
pub fn operators_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/operators")
}

/// `/api/v1/municipalities/{code}/operators/{operator_id}`
pub fn operator_path(code: &str, operator_id: &str) -> String {
    format!("{}/{operator_id}", operators_path(code))
}

/// A registration body for `POST …/operators` with only the required fields (the password is generated).
pub fn operator(operator_id: &str, roles: &[&str], business_systems: &[&str]) -> Value {
    json!({
        "operator_id": operator_id,
        "name": format!("テスト {operator_id}"),
        "roles": roles,
        "business_systems": business_systems,
    })
}

/// The same, with a given password.
pub fn operator_with_password(operator_id: &str, password: &str, roles: &[&str], business_systems: &[&str]) -> Value {
    let mut body = operator(operator_id, roles, business_systems);
    body["password"] = json!(password);
    body
}

impl TestApp {
    pub fn put(&self, path: &str, token: Option<&str>, body: &Value) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::PUT, path, token).json(body))
    }

    /// A POST without a body (revoke, unlock).
    pub fn post_empty(&self, path: &str, token: Option<&str>) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::POST, path, token))
    }

    /// Permits `code` to use `business_id` (shared use) as the system administrator; panics unless it answers 2xx.
    pub async fn permit(&self, admin: &str, business_id: &str, code: &str) {
        let path = format!("/api/v1/business-systems/{business_id}/permitted-municipalities");
        let reply = self.post(&path, Some(admin), &json!({ "code": code })).await;
        assert!(reply.status.is_success(), "permit {code} to use {business_id}: {} {}", reply.status, reply.text);
    }

    /// Withdraws that permission; panics unless it answers 204.
    pub async fn withdraw(&self, admin: &str, business_id: &str, code: &str) {
        let path = format!("/api/v1/business-systems/{business_id}/permitted-municipalities/{code}");
        let reply = self.delete(&path, Some(admin)).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "withdraw {business_id} from {code}: {}", reply.text);
    }

    /// Registers one operator (an object) or a batch (an array) through the API; panics unless it answers 201.
    /// Returns the body (for a batch, `{"items": [...]}`), with any generated password.
    pub async fn add_operators(&self, token: &str, code: &str, body: &Value) -> Value {
        let reply = self.post(&operators_path(code), Some(token), body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "register operators of {code}: {}", reply.text);
        reply.json()
    }

    /// The events of one operator's stream, in order (`None`: the system administrator).
    pub async fn operator_events(&self, code: Option<&str>, operator_id: &str) -> Vec<cardap_store::RecordedEvent> {
        let code = code.map(|c| MunicipalityCode::parse(c).expect("a valid municipality code"));
        let id = OperatorId::parse(operator_id).expect("operator id");
        let stream = StreamId::new(Operator::STREAM_TYPE, &operator::stream_key(code.as_ref(), &id)).expect("stream");
        self.state.store.read_stream(&stream, 1).await.expect("read the operator's stream")
    }

    /// The events of one operator's login stream (failed logins, locks, logins, unlocks), in order.
    pub async fn login_events(&self, code: Option<&str>, operator_id: &str) -> Vec<cardap_store::RecordedEvent> {
        let code = code.map(|c| MunicipalityCode::parse(c).expect("a valid municipality code"));
        let id = OperatorId::parse(operator_id).expect("operator id");
        let stream = StreamId::of(operator::OperatorLogins::STREAM_TYPE, &operator::stream_key(code.as_ref(), &id));
        self.state.store.read_stream(&stream, 1).await.expect("read the operator's login stream")
    }

    /// Polls the operator's own and login streams until they hold `count` events of `event_type` (they may be
    /// written in the background, e.g. failed logins), and returns those events.
    pub async fn wait_for_operator_events(
        &self,
        code: Option<&str>,
        operator_id: &str,
        event_type: &str,
        count: usize,
    ) -> Vec<cardap_store::RecordedEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut events = self.operator_events(code, operator_id).await;
            events.extend(self.login_events(code, operator_id).await);
            let found: Vec<_> = events.iter().filter(|e| e.event_type == event_type).cloned().collect();
            if found.len() >= count {
                return found;
            }
            if tokio::time::Instant::now() >= deadline {
                let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
                panic!("timed out waiting for {count} × {event_type} of {operator_id}; the stream holds {types:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The resident registry import and prefill (tests/tests/registry.rs).

/// `/api/v1/municipalities/{code}/registry/import`
pub fn registry_import_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/registry/import")
}

impl TestApp {
    /// A POST of raw bytes with this `Content-Type` (CSV uploads).
    pub fn post_bytes(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Reply> + Send + use<> {
        send(self.request(Method::POST, path, token).header("content-type", content_type).body(body))
    }
}

impl Reply {
    /// The body as NDJSON: one value per non-empty line; panics with the body when a line is not JSON.
    pub fn ndjson(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not an NDJSON line ({e}): {l:?} in {:?}", self.text))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Resident service registration: settings, residents and cards (tests/tests/residents.rs, cards.rs).

/// `/api/v1/municipalities/{code}/resident-settings`
pub fn resident_settings_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/resident-settings")
}

/// `/api/v1/municipalities/{code}/residents`
pub fn residents_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/residents")
}

/// `/api/v1/municipalities/{code}/residents/{resident_id}`
pub fn resident_path(code: &str, resident_id: &str) -> String {
    format!("{}/{resident_id}", residents_path(code))
}

/// `/api/v1/municipalities/{code}/cards`
pub fn cards_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/cards")
}

/// `/api/v1/municipalities/{code}/cards/{fid}`
pub fn card_path(code: &str, fid: &str) -> String {
    format!("{}/{fid}", cards_path(code))
}

/// A resident with the required fields only (`sex` 1, 漢字氏名 山田 太郎).
pub fn resident_body(kana_family: &str, kana_given: &str, birth_date: &str) -> Value {
    json!({
        "kana_name": { "family": kana_family, "given": kana_given },
        "kanji_name": { "family": "山田", "given": "太郎" },
        "birth_date": birth_date,
        "sex": "1",
    })
}

impl TestApp {
    /// A request with extra headers (`If-Match`, `Idempotency-Key`, `Accept-Language` …) and an optional JSON body.
    pub fn send_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> impl Future<Output = Reply> + Send + use<> {
        let mut builder = self.request(method, path, token);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        send(builder)
    }

    /// Registers a clerk of `code` through the API, permitted `business_systems` (which the municipality must be
    /// permitted to use), and returns his token.
    pub async fn clerk_token(&self, admin: &str, code: &str, operator_id: &str, business_systems: &[&str]) -> String {
        let body = operator_with_password(operator_id, "ClerkPassw0rd", &["clerk"], business_systems);
        self.add_operators(admin, code, &body).await;
        self.login(Some(code), operator_id, "ClerkPassw0rd").await
    }
}

/// A business-system registration body with what the source's screen requires: the ID, the name and the three
/// URLs (業務トップURL, オペレータ管理URL, パーソナライズURL).
pub fn business_system(business_id: &str, name: &str) -> Value {
    json!({
        "business_id": business_id,
        "name": name,
        "top_url": format!("https://b{business_id}.example.jp/"),
        "operator_admin_url": format!("https://b{business_id}.example.jp/operators"),
        "personalize_url": format!("https://b{business_id}.example.jp/me"),
    })
}

/// A reqwest client that trusts `root` (PEM) and presents `identity` (certificate and key PEM files) when given:
/// rustls on ring, the workspace's one provider.
pub fn tls_client(root: &std::path::Path, identity: Option<(&std::path::Path, &std::path::Path)>) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // ring, the workspace's one provider (deprecated only for lacking post-quantum key exchange; see api/src/tls.rs).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder().use_preconfigured_tls(config).build().unwrap()
}

/// Business system `id`'s server certificate (from a CSR made by `openssl`, CN `b<id>.example.jp`, the host of its
/// URLs), issued by cardap's CA into `dir`, and a client presenting it that trusts `root`.
pub async fn business_client(
    app: &TestApp,
    admin: &str,
    dir: &std::path::Path,
    root: &std::path::Path,
    id: &str,
) -> reqwest::Client {
    let key = dir.join(format!("b{id}.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj"])
        .arg(format!("/C=JP/O=test/CN=b{id}.example.jp"))
        .arg("-keyout")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csr = String::from_utf8(out.stdout).unwrap();
    let path = format!("/api/v1/business-systems/{id}/certificates");
    let reply = app.post(&path, Some(admin), &json!({ "csr": csr })).await;
    assert_eq!(reply.status, reqwest::StatusCode::CREATED, "{}", reply.text);
    let cert = dir.join(format!("b{id}.pem"));
    std::fs::write(&cert, reply.json()["certificate"].as_str().unwrap()).unwrap();
    tls_client(root, Some((&cert, &key)))
}
