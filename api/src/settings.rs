//! The server's settings (the source's 環境基本設定, operating settings): one typed [`Settings`] whose defaults are
//! written once, here, in [`Settings::default`], and [`Settings::load`], which lays over them an optional TOML
//! configuration file (`--config PATH` / `CARDAP_CONFIG`), then the `CARDAP_*` environment variables, then the
//! command-line flags: a later source wins, setting by setting.
//!
//! Every setting that a file, a variable or a flag may give is one row of [`KEYS`] (its key in the file, its
//! variable, its flag, the form of its value); `cardap.example.toml` at the repository root shows them all with
//! their defaults. A key of the file that is not in the table is refused by name, and a value that does not parse
//! is refused with its key and the expected form. The two secrets are read from the environment only, never from
//! the file or a flag (a file gets copied, a command line is visible to every user of the machine):
//! `CARDAP_BOOTSTRAP_PASSWORD` and `CARDAP_MASTER_KEY` (or the key file `master_key.file`). Neither ever appears
//! in `Debug`. This module reads files and variables but opens no database and starts nothing.
//!
//! Length: [`KEYS`] has one row of four names and a parser per setting (about thirty of them).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cardap_commands::imports::ImportLimits;
use cardap_commands::pki::PkiSettings;
use cardap_commands::throttle::ThrottlePolicy;
use cardap_commands::webhooks::PushPolicy;
use cardap_domain::operator::{LockoutPolicy, OperatorId, Password, PasswordPolicy};
use cardap_domain::resident::RetentionPeriod;
use cardap_store::{MasterKey, MasterKeyError, redact};

use crate::auth::{Secret, SessionPolicy};

/// Where the default SQLite database and the default master key file live (relative to the working directory).
const DEFAULT_DATA_DIR: &str = "cardap-data";
/// The variable naming the configuration file (the flag `--config` wins over it).
pub const CONFIG_ENV: &str = "CARDAP_CONFIG";
/// The variable holding the bootstrap administrator's password (environment only: a secret).
pub const BOOTSTRAP_PASSWORD_ENV: &str = "CARDAP_BOOTSTRAP_PASSWORD";
/// The variable holding the master key itself, base64 of 32 bytes (environment only: a secret).
pub const MASTER_KEY_ENV: &str = "CARDAP_MASTER_KEY";

/// The retention period after a move-out when none is configured: 5 years.
pub const DEFAULT_ERASURE_RETENTION: RetentionPeriod = RetentionPeriod::FIVE_YEARS;

/// Everything the server is configured with. Its `Debug` shows no secret: the bootstrap password and the master
/// key print as `***`, and so does a password in the database URL.
#[derive(Clone)]
pub struct Settings {
    /// `postgres://…` or `sqlite:…`.
    pub database_url: String,
    pub listen: SocketAddr,
    /// Where `/metrics` is served (Prometheus): an address of its own, loopback by default, so the activity of
    /// every municipality is not shown to whoever can reach the API.
    pub metrics_listen: SocketAddr,
    /// Database connections per node (event store and read models each).
    pub max_connections: u32,
    /// Operator ID of the system administrator created on first start.
    pub bootstrap_admin: String,
    /// His password; generated and printed once when absent.
    pub bootstrap_password: Option<Secret>,
    pub sessions: SessionPolicy,
    /// Password rules (minimum length, how many previous passwords may not be reused).
    pub passwords: PasswordPolicy,
    /// Failed-login lockout.
    pub lockout: LockoutPolicy,
    /// Failed-login throttling per client address and per login name.
    pub throttle: ThrottlePolicy,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// What one client may hold: connections at once, and how long the server waits for a request's headers and
    /// between two pieces of its body.
    pub connections: ConnectionLimits,
    /// How long start-up waits for the database to come up before giving up.
    pub startup_timeout: Duration,
    /// Wraps every resident's data key (personal data is sealed under those). The same key on every node.
    /// `None`: read from `master_key_file`, which is created with a new key when missing.
    pub master_key: Option<MasterKey>,
    /// The master key's file when `master_key` is not given.
    pub master_key_file: PathBuf,
    /// How many imports run at once (per municipality, on the server), the rows of an operator file, and how long
    /// a finished import job is kept.
    pub imports: ImportLimits,
    /// The internal CA: its name, the public base URL its certificates point to for the CRL, the CRL's validity.
    pub pki: PkiSettings,
    /// HTTPS and mutual TLS on the listener (all `None`: plain HTTP, the default on loopback).
    pub tls: TlsSettings,
    /// How long an ID token cardap issues to a business system is valid (OpenID Connect; the issuer is
    /// `pki.public_base_url`, else this server's own address).
    pub id_token_lifetime: Duration,
    /// Biometric login (WebAuthn): the relying party ID and origin, how long a challenge may be answered.
    pub webauthn: WebauthnSettings,
    /// The audit chain's signed heads: the audit key's file, the head file they are exported to, how often.
    pub audit: AuditSettings,
    /// How long a moved-out resident's personal data is kept before it may be erased (消去) without a documented
    /// request: the municipality's retention period (文書保存年限). 5 years (1826 days) by default.
    pub erasure_retention: RetentionPeriod,
    /// The webhook push of the feeds: its retries, the time one POST may take, and the CAs its receivers'
    /// certificates may chain to besides the system's own.
    pub webhook: WebhookSettings,
    /// Who builds the read models: this server's own runners (the default), or a `cardap project` process (then
    /// this server only follows their progress, for read-your-writes and the lag).
    pub projection_runners: ProjectionRunners,
}

/// Where the projection runners run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProjectionRunners {
    /// Inside `cardap serve`.
    #[default]
    Here,
    /// In a `cardap project` process (one or more, on any node).
    Elsewhere,
}

/// The webhook pusher as configured (`[webhook]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookSettings {
    /// Retries (capped exponential backoff with jitter), the timeout of one POST, the lease between nodes.
    pub push: PushPolicy,
    /// CA certificates (PEM) trusted for `https://` receivers in addition to the system's bundle: a business
    /// system whose server certificate comes from a private CA (an LGWAN-side or in-house one).
    pub ca_file: Option<PathBuf>,
}

/// The bounds of `webhook.timeout_ms`: at least 100 ms (a receiver over a network needs that), at most 30 s, so
/// that a node's lease on a system's push (60 s, renewed before each POST) outlasts the POST.
pub const WEBHOOK_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=30_000;
/// The bounds of `webhook.initial_backoff_ms` (10 ms to 10 minutes).
pub const WEBHOOK_INITIAL_BACKOFF_MS: std::ops::RangeInclusive<u64> = 10..=600_000;
/// The bounds of `webhook.max_backoff_ms` (10 ms to 1 day), and never below the initial backoff.
pub const WEBHOOK_MAX_BACKOFF_MS: std::ops::RangeInclusive<u64> = 10..=86_400_000;

/// Where the audit key and the exported heads live (`None`: no heads are signed; the chain alone is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The audit key (Ed25519, created with a new key when missing; mode 0600). Default `<data_dir>/audit.key`.
    pub key_file: Option<PathBuf>,
    /// Each signed head is appended here as a JSON line: put it where the database administrator cannot rewrite
    /// it (an append-only file, a log collector). Default `<data_dir>/audit-heads.jsonl`.
    pub head_file: Option<PathBuf>,
    /// How often the chain's head is signed (and once more at shutdown).
    pub head_every: Duration,
}

impl Default for AuditSettings {
    fn default() -> Self {
        let data_dir = Path::new(DEFAULT_DATA_DIR);
        AuditSettings {
            key_file: Some(data_dir.join("audit.key")),
            head_file: Some(data_dir.join("audit-heads.jsonl")),
            head_every: Duration::from_secs(300),
        }
    }
}

/// The WebAuthn relying party as configured; [`Settings::biometric`] fills in what is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnSettings {
    /// `None`: the host of the origin.
    pub rp_id: Option<String>,
    /// `None`: `pki.public_base_url`, else `http://localhost:<port>` (`https` with TLS) of the listener.
    pub origin: Option<String>,
    /// How long a registration or login challenge may be answered.
    pub challenge_ttl: Duration,
}

impl Default for WebauthnSettings {
    fn default() -> Self {
        WebauthnSettings { rp_id: None, origin: None, challenge_ttl: Duration::from_secs(300) }
    }
}

/// The listener's TLS files, as configured (see [`crate::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub crl_file: Option<PathBuf>,
    pub reload: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            crl_file: None,
            reload: Duration::from_secs(60),
        }
    }
}

impl TlsSettings {
    /// The files to serve HTTPS with, `None` for plain HTTP; an error says which setting is missing.
    pub fn files(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        match (&self.cert_file, &self.key_file) {
            (None, None) if self.client_ca_file.is_none() && self.crl_file.is_none() => Ok(None),
            (Some(cert), Some(key)) => {
                if self.crl_file.is_some() && self.client_ca_file.is_none() {
                    return Err("tls.crl_file is for client certificates: set tls.client_ca_file too".into());
                }
                Ok(Some(crate::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.client_ca_file.clone(),
                    crl: self.crl_file.clone(),
                    reload: self.reload,
                }))
            }
            _ => Err("HTTPS needs both tls.cert_file and tls.key_file".into()),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("database_url", &redact(&self.database_url))
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("max_connections", &self.max_connections)
            .field("bootstrap_admin", &self.bootstrap_admin)
            .field("bootstrap_password", &self.bootstrap_password)
            .field("sessions", &self.sessions)
            .field("passwords", &self.passwords)
            .field("lockout", &self.lockout)
            .field("throttle", &self.throttle)
            .field("drain_timeout", &self.drain_timeout)
            .field("connections", &self.connections)
            .field("startup_timeout", &self.startup_timeout)
            .field("master_key", &self.master_key)
            .field("master_key_file", &self.master_key_file)
            .field("imports", &self.imports)
            .field("pki", &self.pki)
            .field("tls", &self.tls)
            .field("id_token_lifetime", &self.id_token_lifetime)
            .field("webauthn", &self.webauthn)
            .field("audit", &self.audit)
            .field("erasure_retention", &self.erasure_retention)
            .field("webhook", &self.webhook)
            .field("projection_runners", &self.projection_runners)
            .finish()
    }
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_clients: usize,
    /// How long a connection may take to send a request's headers (also while idle between requests).
    pub header_read: Duration,
    /// How long a request's body may pause between two pieces (the registry import keeps its own, longer limit).
    pub body_read: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits { max_clients: 4096, header_read: Duration::from_secs(10), body_read: Duration::from_secs(30) }
    }
}

impl Default for Settings {
    /// The defaults of a fresh installation: a SQLite file and a master key file in `./cardap-data`, port 8080 on
    /// the loopback interface, and the operating rules of the source (sessions end after 30 idle minutes and
    /// 8 hours at most; 5 failed logins lock for 15 minutes, no lock is permanent; passwords of 8
    /// half-width alphanumerics at least, the last 3 not reused).
    fn default() -> Self {
        let data_dir = Path::new(DEFAULT_DATA_DIR);
        Settings {
            database_url: sqlite_url(data_dir),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            max_connections: 16,
            bootstrap_admin: "admin".into(),
            bootstrap_password: None,
            sessions: SessionPolicy { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(8 * 3600) },
            passwords: PasswordPolicy::default(),
            lockout: LockoutPolicy::default(),
            throttle: ThrottlePolicy::default(),
            drain_timeout: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
            startup_timeout: Duration::from_secs(60),
            master_key: None,
            master_key_file: data_dir.join("master.key"),
            imports: ImportLimits::default(),
            pki: PkiSettings::default(),
            tls: TlsSettings::default(),
            id_token_lifetime: Duration::from_secs(300),
            webauthn: WebauthnSettings::default(),
            audit: AuditSettings::default(),
            erasure_retention: DEFAULT_ERASURE_RETENTION,
            webhook: WebhookSettings::default(),
            projection_runners: ProjectionRunners::Here,
        }
    }
}

impl Settings {
    /// The defaults, on `database_url` and an ephemeral port, with a known administrator password and a fixed
    /// master key, so that several test nodes on one database share it (never for production data).
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        Settings {
            database_url: database_url.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 10,
            bootstrap_password: Some(Secret::new("AdminPassw0rd")),
            drain_timeout: Duration::from_secs(5),
            startup_timeout: Duration::from_secs(30),
            master_key: MasterKey::from_base64("Y2FyZGFwLXRlc3Qta2V5LW5vdC1mb3ItcHJvZHVjdGk=").ok(),
            // No key file in the working directory; a test that signs heads names its own.
            audit: AuditSettings { key_file: None, head_file: None, ..AuditSettings::default() },
            ..Settings::default()
        }
    }

    /// The defaults, then the configuration file (`sources.config`, else `CARDAP_CONFIG`), then the `CARDAP_*`
    /// variables, then the flags. Reads the file; creates nothing.
    /// A variable set to the empty string counts as not set.
    pub fn load(sources: &Sources) -> Result<Settings, SettingsError> {
        let env = |name: &str| sources.env.get(name).filter(|v| !v.is_empty());
        let mut draft = Draft::default();
        let config = sources.config.clone().or_else(|| env(CONFIG_ENV).map(PathBuf::from));
        if let Some(path) = config {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| SettingsError::Unreadable { path: path.clone(), reason: e.to_string() })?;
            draft.apply_file(&path, &text)?;
        }
        for key in KEYS {
            if let Some(value) = env(key.env) {
                draft.apply(key, &Raw::Text(value.clone()), || Origin::Env(key.env))?;
            }
        }
        for key in KEYS {
            if let Some(value) = sources.flags.get(key.flag) {
                draft.apply(key, &Raw::Text(value.clone()), || Origin::Flag(key.flag))?;
            }
        }
        if let Some(password) = env(BOOTSTRAP_PASSWORD_ENV) {
            // The rule every password follows, with the configured minimum length (never echoed back).
            Password::parse(password, &draft.settings.passwords).map_err(|_| SettingsError::Invalid {
                origin: Origin::Env(BOOTSTRAP_PASSWORD_ENV),
                expected: format!(
                    "{} to {} half-width letters and digits",
                    draft.settings.passwords.min_length,
                    Password::MAX_CHARS
                ),
                found: None,
            })?;
            draft.settings.bootstrap_password = Some(Secret::new(password.clone()));
        }
        if let Some(key) = env(MASTER_KEY_ENV) {
            let key = MasterKey::from_base64(key).map_err(|_| SettingsError::Invalid {
                origin: Origin::Env(MASTER_KEY_ENV),
                expected: "base64 of 32 bytes (standard alphabet, with padding)".into(),
                found: None,
            })?;
            draft.settings.master_key = Some(key);
        }
        let push = &draft.settings.webhook.push;
        if push.max_backoff < push.initial_backoff {
            return Err(SettingsError::Inconsistent(format!(
                "webhook.max_backoff_ms ({} ms) is below webhook.initial_backoff_ms ({} ms)",
                push.max_backoff.as_millis(),
                push.initial_backoff.as_millis()
            )));
        }
        Ok(draft.finish())
    }

    /// The relying party of biometric login for a server listening on `port`: `webauthn.origin`, else
    /// `pki.public_base_url`, else `http://localhost:<port>` (`https://` when TLS is configured; browsers treat
    /// `localhost` as secure); `webauthn.rp_id`, else the origin's host. An error names what does not fit.
    pub fn biometric(&self, port: u16) -> Result<cardap_commands::biometric::BiometricSettings, String> {
        use cardap_commands::biometric::Url;
        let scheme = if self.tls.cert_file.is_some() { "https" } else { "http" };
        let text = match (&self.webauthn.origin, &self.pki.public_base_url) {
            (Some(origin), _) => origin.clone(),
            (None, Some(base)) => base.clone(),
            (None, None) => format!("{scheme}://localhost:{port}"),
        };
        let origin = Url::parse(&text).map_err(|e| format!("webauthn.origin {text:?}: {e}"))?;
        let host = origin.domain().ok_or_else(|| {
            format!("webauthn.origin {text:?} must name a domain (browsers refuse WebAuthn on an IP address)")
        })?;
        let rp_id = self.webauthn.rp_id.clone().unwrap_or_else(|| host.to_owned());
        Ok(cardap_commands::biometric::BiometricSettings {
            rp_id,
            origin,
            rp_name: self.pki.name.clone(),
            ceremony_ttl: self.webauthn.challenge_ttl,
        })
    }

    /// The master key: `master_key` when given, else the key file (created with a new key when missing).
    /// Returns whether the file was created, so the caller can tell the operator to back it up.
    pub fn master_key(&self) -> Result<(MasterKey, bool), MasterKeyError> {
        match &self.master_key {
            Some(key) => Ok((key.clone(), false)),
            None => {
                if let Some(dir) = self.master_key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::app::owner_only_dir(dir)
                        .map_err(|source| MasterKeyError::Io { path: dir.to_path_buf(), source })?;
                }
                MasterKey::load_or_create(&self.master_key_file)
            }
        }
    }
}

/// The SQLite database in a data directory.
fn sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}/cardap.db", data_dir.display())
}

/// What [`Settings::load`] reads besides the defaults.
#[derive(Default)]
pub struct Sources {
    /// `--config PATH`; when absent, `CARDAP_CONFIG` names the file, and without it there is none.
    pub config: Option<PathBuf>,
    /// The environment (only `CARDAP_*` variables are read): [`Sources::environment`] in the binary, a map of
    /// its own in a test.
    pub env: BTreeMap<String, String>,
    /// The flags given, by their name without `--` ([`Key::flag`]), each with its text.
    pub flags: BTreeMap<String, String>,
}

impl Sources {
    /// The process's `CARDAP_*` variables (those that are valid Unicode).
    pub fn environment() -> BTreeMap<String, String> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("CARDAP_"))
            .collect()
    }
}

impl fmt::Debug for Sources {
    /// Names only: the environment holds secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("config", &self.config)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("flags", &self.flags.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where a refused value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A key of the configuration file, e.g. `sessions.idle_minutes` in `/etc/cardap.toml`.
    File {
        path: PathBuf,
        key: String,
    },
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, key } => write!(f, "`{key}` in {}", path.display()),
            Origin::Env(name) => write!(f, "{name}"),
            Origin::Flag(name) => write!(f, "--{name}"),
        }
    }
}

/// Why the settings could not be loaded: each names the key (or variable, or flag) and what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the configuration file {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("the configuration file {} is not valid TOML: {reason}", path.display())]
    NotToml { path: PathBuf, reason: String },
    #[error("unknown key `{key}` in {} (the keys are those of cardap.example.toml)", path.display())]
    UnknownKey { path: PathBuf, key: String },
    #[error("`{key}` in {}: a secret is not read from the configuration file; set {env} instead", path.display())]
    SecretInFile { path: PathBuf, key: String, env: &'static str },
    /// Two settings that do not fit together, both named.
    #[error("{0}")]
    Inconsistent(String),
    #[error("{origin}: expected {expected}{}", found.as_ref().map(|f| format!(", found {f}")).unwrap_or_default())]
    Invalid {
        origin: Origin,
        expected: String,
        /// What was there (never for a secret).
        found: Option<String>,
    },
}

/// One setting that the file, a variable and a flag may give.
#[derive(Debug)]
pub struct Key {
    /// `section.name` in the configuration file.
    pub file: &'static str,
    /// Its `CARDAP_*` variable.
    pub env: &'static str,
    /// Its flag, without `--`.
    pub flag: &'static str,
    /// The form of its value, as an error message says it (after "expected").
    pub form: &'static str,
    /// One line for `cardap --help`.
    pub help: &'static str,
    set: fn(&mut Draft, &Raw) -> Option<()>,
}

/// Every setting of [`Settings`] that is not a secret.
pub const KEYS: &[Key] = &[
    Key {
        file: "server.listen",
        env: "CARDAP_LISTEN",
        flag: "listen",
        form: "an address and port such as 127.0.0.1:8080",
        help: "Address and port to listen on",
        set: |d, raw| {
            d.settings.listen = raw.text()?.parse().ok()?;
            Some(())
        },
    },
    Key {
        file: "server.metrics_listen",
        env: "CARDAP_METRICS_LISTEN",
        flag: "metrics-listen",
        form: "an address and port such as 127.0.0.1:9464",
        help: "Address and port of /metrics (Prometheus), apart from the API",
        set: |d, raw| {
            d.settings.metrics_listen = raw.text()?.parse().ok()?;
            Some(())
        },
    },
    Key {
        file: "server.drain_seconds",
        env: "CARDAP_DRAIN_SECONDS",
        flag: "drain-seconds",
        form: "a whole number of seconds, 1 or more",
        help: "How long shutdown waits for requests in flight, seconds",
        set: |d, raw| {
            d.settings.drain_timeout = Duration::from_secs(raw.positive()?);
            Some(())
        },
    },
    Key {
        file: "server.max_clients",
        env: "CARDAP_MAX_CLIENTS",
        flag: "max-clients",
        form: "a whole number, 1 or more",
        help: "Connections served at once; more are closed at once",
        set: |d, raw| {
            d.settings.connections.max_clients = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "server.header_read_seconds",
        env: "CARDAP_HEADER_READ_SECONDS",
        flag: "header-read-seconds",
        form: "a whole number of seconds, 1 or more",
        help: "How long a connection may take to send a request's headers, seconds",
        set: |d, raw| {
            d.settings.connections.header_read = Duration::from_secs(raw.positive()?);
            Some(())
        },
    },
    Key {
        file: "server.body_read_seconds",
        env: "CARDAP_BODY_READ_SECONDS",
        flag: "body-read-seconds",
        form: "a whole number of seconds, 1 or more",
        help: "How long a request's body may pause between two pieces, seconds (not the registry import)",
        set: |d, raw| {
            d.settings.connections.body_read = Duration::from_secs(raw.positive()?);
            Some(())
        },
    },
    Key {
        file: "server.startup_seconds",
        env: "CARDAP_STARTUP_SECONDS",
        flag: "startup-seconds",
        form: "a whole number of seconds, 1 or more",
        help: "How long start-up waits for the database to come up, seconds",
        set: |d, raw| {
            d.settings.startup_timeout = Duration::from_secs(raw.positive()?);
            Some(())
        },
    },
    Key {
        file: "database.url",
        env: "CARDAP_DATABASE_URL",
        flag: "database-url",
        form: "postgres://user@host:port/db or sqlite:path",
        help: "Database URL (default: the SQLite file cardap.db in the data directory)",
        set: |d, raw| {
            let url = raw.text()?;
            let known = ["postgres://", "postgresql://", "sqlite:"].iter().any(|p| url.starts_with(p));
            d.database_url = Some(url.to_owned()).filter(|_| known);
            d.database_url.as_ref().map(|_| ())
        },
    },
    Key {
        file: "database.data_dir",
        env: "CARDAP_DATA_DIR",
        flag: "data-dir",
        form: "a directory path",
        help: "Where the default SQLite database and the default master key file live",
        set: |d, raw| {
            d.data_dir = PathBuf::from(raw.text().filter(|t| !t.is_empty())?);
            Some(())
        },
    },
    Key {
        file: "database.max_connections",
        env: "CARDAP_MAX_CONNECTIONS",
        flag: "max-connections",
        form: "a whole number, 1 or more",
        help: "Database connections per node",
        set: |d, raw| {
            d.settings.max_connections = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "master_key.file",
        env: "CARDAP_MASTER_KEY_FILE",
        flag: "master-key-file",
        form: "a file path",
        help: "File holding the master key (base64 of 32 bytes), created when missing; default <data-dir>/master.key",
        set: |d, raw| {
            d.master_key_file = Some(PathBuf::from(raw.text().filter(|t| !t.is_empty())?));
            Some(())
        },
    },
    Key {
        file: "bootstrap.admin",
        env: "CARDAP_BOOTSTRAP_ADMIN",
        flag: "bootstrap-admin",
        form: "an operator ID (half-width letters and digits)",
        help: "Operator ID of the system administrator created on first start",
        set: |d, raw| {
            d.settings.bootstrap_admin = OperatorId::parse(raw.text()?).ok()?.to_string();
            Some(())
        },
    },
    Key {
        file: "sessions.idle_minutes",
        env: "CARDAP_SESSION_IDLE_MINUTES",
        flag: "session-idle-minutes",
        form: "a whole number of minutes, 1 or more",
        help: "A session unused this long ends, minutes",
        set: |d, raw| {
            d.settings.sessions.idle = Duration::from_secs(raw.positive::<u64>()?.checked_mul(60)?);
            Some(())
        },
    },
    Key {
        file: "sessions.absolute_minutes",
        env: "CARDAP_SESSION_ABSOLUTE_MINUTES",
        flag: "session-absolute-minutes",
        form: "a whole number of minutes, 1 or more",
        help: "A session ends this long after login, minutes",
        set: |d, raw| {
            d.settings.sessions.absolute = Duration::from_secs(raw.positive::<u64>()?.checked_mul(60)?);
            Some(())
        },
    },
    Key {
        file: "passwords.min_length",
        env: "CARDAP_PASSWORD_MIN_LENGTH",
        flag: "password-min-length",
        form: "a whole number from 1 to 64",
        help: "Shortest password allowed (half-width letters and digits)",
        set: |d, raw| {
            d.settings.passwords.min_length = raw.positive().filter(|n| *n <= Password::MAX_CHARS)?;
            Some(())
        },
    },
    Key {
        file: "passwords.history",
        env: "CARDAP_PASSWORD_HISTORY",
        flag: "password-history",
        form: "a whole number, 0 or more",
        help: "How many previous passwords may not be reused",
        set: |d, raw| {
            d.settings.passwords.history = raw.number()?;
            Some(())
        },
    },
    Key {
        file: "lockout.max_failures",
        env: "CARDAP_LOCKOUT_MAX_FAILURES",
        flag: "lockout-max-failures",
        form: "a whole number, 1 or more",
        help: "Failed logins in a row that lock the operator",
        set: |d, raw| {
            d.settings.lockout.max_failures = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "lockout.lock_seconds",
        env: "CARDAP_LOCKOUT_SECONDS",
        flag: "lockout-seconds",
        form: "a whole number of seconds, 1 or more",
        help: "How long a temporary lock lasts, seconds",
        set: |d, raw| {
            d.settings.lockout.lock_seconds = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "lockout.free_failures_per_login",
        env: "CARDAP_LOCKOUT_FREE_FAILURES_PER_LOGIN",
        flag: "lockout-free-failures-per-login",
        form: "a whole number, 0 or more",
        help: "Failed logins for one login name before each next attempt must wait (1 s, doubling to 15 min)",
        set: |d, raw| {
            d.settings.throttle.free_per_login = raw.number::<u32>()?;
            Some(())
        },
    },
    Key {
        file: "lockout.free_failures_per_address",
        env: "CARDAP_LOCKOUT_FREE_FAILURES_PER_ADDRESS",
        flag: "lockout-free-failures-per-address",
        form: "a whole number, 0 or more",
        help: "Failed logins from one client address before each next attempt must wait (1 s, doubling to 15 min)",
        set: |d, raw| {
            d.settings.throttle.free_per_address = raw.number::<u32>()?;
            Some(())
        },
    },
    Key {
        file: "lockout.max_lockouts",
        env: "CARDAP_LOCKOUT_MAX_LOCKOUTS",
        flag: "lockout-max-lockouts",
        form: "a whole number, 0 (never) or more",
        help: "The lockout with this number is permanent (until an administrator unlocks); 0: none is",
        set: |d, raw| {
            d.settings.lockout.max_lockouts = raw.number::<u32>()?;
            Some(())
        },
    },
    Key {
        file: "imports.per_municipality",
        env: "CARDAP_IMPORTS_PER_MUNICIPALITY",
        flag: "imports-per-municipality",
        form: "a whole number, 1 or more",
        help: "Imports of each kind (registry, operator CSV) one municipality may run at once",
        set: |d, raw| {
            d.settings.imports.per_municipality = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "imports.registry_max",
        env: "CARDAP_IMPORTS_REGISTRY_MAX",
        flag: "imports-registry-max",
        form: "a whole number, 1 or more",
        help: "Registry imports running at once on this server; more are answered 429",
        set: |d, raw| {
            d.settings.imports.registry_imports = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "imports.operator_max",
        env: "CARDAP_IMPORTS_OPERATOR_MAX",
        flag: "imports-operator-max",
        form: "a whole number, 1 or more",
        help: "Operator CSV import jobs running at once on this server; more are answered 429",
        set: |d, raw| {
            d.settings.imports.operator_imports = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "imports.operator_rows",
        env: "CARDAP_IMPORTS_OPERATOR_ROWS",
        flag: "imports-operator-rows",
        form: "a whole number, 1 or more",
        help: "Data rows an operator CSV file may have",
        set: |d, raw| {
            d.settings.imports.operator_rows = raw.positive()?;
            Some(())
        },
    },
    Key {
        file: "imports.keep_jobs_minutes",
        env: "CARDAP_IMPORTS_KEEP_JOBS_MINUTES",
        flag: "imports-keep-jobs-minutes",
        form: "a whole number of minutes, 1 or more",
        help: "How long a finished import job (and its generated passwords) is kept, minutes",
        set: |d, raw| {
            d.settings.imports.keep_finished = Duration::from_secs(raw.positive::<u64>()?.checked_mul(60)?);
            Some(())
        },
    },
    Key {
        file: "pki.name",
        env: "CARDAP_PKI_NAME",
        flag: "pki-name",
        form: "a name, 1 to 64 characters",
        help: "The installation's name in the internal CA's names (`<name> Root CA`, `<name> Issuing CA`), used when the CA is created",
        set: |d, raw| {
            let name = raw.text()?.trim();
            (!name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control)).then_some(())?;
            d.settings.pki.name = name.to_owned();
            Some(())
        },
    },
    Key {
        file: "pki.public_base_url",
        env: "CARDAP_PKI_PUBLIC_BASE_URL",
        flag: "pki-public-base-url",
        form: "an http:// or https:// URL without query, e.g. https://cardap.example.jp",
        help: "Where relying parties reach this server: issued certificates name <URL>/pki/crl as their CRL distribution point (none when unset)",
        set: |d, raw| {
            let url = raw.text()?.trim().trim_end_matches('/');
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && url.len() > "https://".len()
                && !url.contains(['?', '#', ' ']);
            ok.then_some(())?;
            d.settings.pki.public_base_url = Some(url.to_owned());
            Some(())
        },
    },
    Key {
        file: "pki.crl_validity_hours",
        env: "CARDAP_PKI_CRL_VALIDITY_HOURS",
        flag: "pki-crl-validity-hours",
        form: "a whole number of hours, 1 or more",
        help: "How long a CRL is valid (its nextUpdate); it is made anew after half of that, and at every revocation",
        set: |d, raw| {
            d.settings.pki.crl_validity = Duration::from_secs(raw.positive::<u64>()?.checked_mul(3600)?);
            Some(())
        },
    },
    Key {
        file: "audit.key_file",
        env: "CARDAP_AUDIT_KEY_FILE",
        flag: "audit-key-file",
        form: "a file path",
        help: "The audit key that signs the audit chain's heads (Ed25519, created when missing); default <data-dir>/audit.key",
        set: |d, raw| {
            d.audit_key_file = Some(PathBuf::from(raw.text().filter(|t| !t.is_empty())?));
            Some(())
        },
    },
    Key {
        file: "audit.head_file",
        env: "CARDAP_AUDIT_HEAD_FILE",
        flag: "audit-head-file",
        form: "a file path",
        help: "Where each signed head of the audit chain is appended (JSON lines), out of the database administrator's reach; default <data-dir>/audit-heads.jsonl",
        set: |d, raw| {
            d.audit_head_file = Some(PathBuf::from(raw.text().filter(|t| !t.is_empty())?));
            Some(())
        },
    },
    Key {
        file: "audit.head_seconds",
        env: "CARDAP_AUDIT_HEAD_SECONDS",
        flag: "audit-head-seconds",
        form: "a whole number of seconds, 1 to 86400",
        help: "How often the audit chain's head is signed with the audit key",
        set: |d, raw| {
            let seconds = raw.positive::<u64>()?;
            (1..=86_400).contains(&seconds).then_some(())?;
            d.settings.audit.head_every = Duration::from_secs(seconds);
            Some(())
        },
    },
    Key {
        file: "oidc.id_token_seconds",
        env: "CARDAP_OIDC_ID_TOKEN_SECONDS",
        flag: "oidc-id-token-seconds",
        form: "a whole number of seconds, 30 to 3600",
        help: "How long an ID token issued to a business system is valid: a revoked operator is out of every business system within this time",
        set: |d, raw| {
            let seconds = raw.positive::<u64>()?;
            (30..=3600).contains(&seconds).then_some(())?;
            d.settings.id_token_lifetime = Duration::from_secs(seconds);
            Some(())
        },
    },
    Key {
        file: "erasure.retention_days",
        env: "CARDAP_ERASURE_RETENTION_DAYS",
        flag: "erasure-retention-days",
        form: "a whole number of days, 1 to 36500",
        help: "How long a moved-out resident's personal data is kept before it may be erased without a documented request (the municipality's retention period)",
        set: |d, raw| {
            let days = raw.positive::<u32>()?;
            (1..=36_500).contains(&days).then_some(())?;
            d.settings.erasure_retention = RetentionPeriod::days(days).ok()?;
            Some(())
        },
    },
    Key {
        file: "projections.runners",
        env: "CARDAP_PROJECTION_RUNNERS",
        flag: "projection-runners",
        form: "`here` (cardap serve builds the read models) or `elsewhere` (a `cardap project` process does)",
        help: "Who builds the read models: this server (here) or a `cardap project` process (elsewhere)",
        set: |d, raw| {
            d.settings.projection_runners = match raw.text()? {
                "here" => ProjectionRunners::Here,
                "elsewhere" => ProjectionRunners::Elsewhere,
                _ => return None,
            };
            Some(())
        },
    },
    Key {
        file: "tls.cert_file",
        env: "CARDAP_TLS_CERT_FILE",
        flag: "tls-cert-file",
        form: "a file path",
        help: "HTTPS: the server certificate chain (PEM), with tls.key_file",
        set: |d, raw| {
            d.settings.tls.cert_file = Some(PathBuf::from(raw.text()?));
            Some(())
        },
    },
    Key {
        file: "tls.key_file",
        env: "CARDAP_TLS_KEY_FILE",
        flag: "tls-key-file",
        form: "a file path",
        help: "HTTPS: the server certificate's private key (PEM)",
        set: |d, raw| {
            d.settings.tls.key_file = Some(PathBuf::from(raw.text()?));
            Some(())
        },
    },
    Key {
        file: "tls.client_ca_file",
        env: "CARDAP_TLS_CLIENT_CA_FILE",
        flag: "tls-client-ca-file",
        form: "a file path",
        help: "Mutual TLS: other CAs (PEM) than cardap's own whose operator certificates authenticate",
        set: |d, raw| {
            d.settings.tls.client_ca_file = Some(PathBuf::from(raw.text()?));
            Some(())
        },
    },
    Key {
        file: "tls.crl_file",
        env: "CARDAP_TLS_CRL_FILE",
        flag: "tls-crl-file",
        form: "a file path",
        help: "Mutual TLS: the CRL (PEM or DER) of the client certificates; a revoked one is refused",
        set: |d, raw| {
            d.settings.tls.crl_file = Some(PathBuf::from(raw.text()?));
            Some(())
        },
    },
    Key {
        file: "tls.reload_seconds",
        env: "CARDAP_TLS_RELOAD_SECONDS",
        flag: "tls-reload-seconds",
        form: "a whole number of seconds, 1 or more",
        help: "How often the TLS files are looked at; a changed one is taken into use without a restart",
        set: |d, raw| {
            d.settings.tls.reload = Duration::from_secs(raw.positive()?);
            Some(())
        },
    },
    Key {
        file: "webauthn.rp_id",
        env: "CARDAP_WEBAUTHN_RP_ID",
        flag: "webauthn-rp-id",
        form: "a domain name such as cardap.example.jp",
        help: "Biometric login: the WebAuthn relying party ID (default: the host of webauthn.origin); never change it once authenticators are registered",
        set: |d, raw| {
            let id = raw.text()?.trim().to_ascii_lowercase();
            let ok = !id.is_empty()
                && id.len() <= 253
                && id.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            ok.then_some(())?;
            d.settings.webauthn.rp_id = Some(id);
            Some(())
        },
    },
    Key {
        file: "webauthn.origin",
        env: "CARDAP_WEBAUTHN_ORIGIN",
        flag: "webauthn-origin",
        form: "an https:// (or http://localhost) URL without path, e.g. https://cardap.example.jp",
        help: "Biometric login: the origin the terminals' browsers load cardap from (default: pki.public_base_url, else http://localhost:<port>)",
        set: |d, raw| {
            let url = raw.text()?.trim().trim_end_matches('/');
            let ok = (url.starts_with("https://") || url.starts_with("http://localhost"))
                && url.len() > "https://".len()
                && !url.contains(['?', '#', ' '])
                && !url["https://".len()..].contains('/');
            ok.then_some(())?;
            d.settings.webauthn.origin = Some(url.to_owned());
            Some(())
        },
    },
    Key {
        file: "webauthn.challenge_seconds",
        env: "CARDAP_WEBAUTHN_CHALLENGE_SECONDS",
        flag: "webauthn-challenge-seconds",
        form: "a whole number of seconds from 30 to 3600",
        help: "Biometric login: how long a registration or login challenge may be answered (used once), seconds",
        set: |d, raw| {
            let seconds: u64 = raw.number().filter(|n| (30..=3600).contains(n))?;
            d.settings.webauthn.challenge_ttl = Duration::from_secs(seconds);
            Some(())
        },
    },
    Key {
        file: "webhook.timeout_ms",
        env: "CARDAP_WEBHOOK_TIMEOUT_MS",
        flag: "webhook-timeout-ms",
        form: "a whole number of milliseconds, 100 to 30000",
        help: "Webhook push: how long one POST to a business system's receiver may take before it counts as failed, ms",
        set: |d, raw| {
            let ms: u64 = raw.number().filter(|n| WEBHOOK_TIMEOUT_MS.contains(n))?;
            d.settings.webhook.push.timeout = Duration::from_millis(ms);
            Some(())
        },
    },
    Key {
        file: "webhook.initial_backoff_ms",
        env: "CARDAP_WEBHOOK_INITIAL_BACKOFF_MS",
        flag: "webhook-initial-backoff-ms",
        form: "a whole number of milliseconds, 10 to 600000",
        help: "Webhook push: the wait before the first retry of a failed item, doubled per failure, ms",
        set: |d, raw| {
            let ms: u64 = raw.number().filter(|n| WEBHOOK_INITIAL_BACKOFF_MS.contains(n))?;
            d.settings.webhook.push.initial_backoff = Duration::from_millis(ms);
            Some(())
        },
    },
    Key {
        file: "webhook.max_backoff_ms",
        env: "CARDAP_WEBHOOK_MAX_BACKOFF_MS",
        flag: "webhook-max-backoff-ms",
        form: "a whole number of milliseconds, 10 to 86400000, not below webhook.initial_backoff_ms",
        help: "Webhook push: the longest wait between two attempts (before up to a quarter more of jitter), ms",
        set: |d, raw| {
            let ms: u64 = raw.number().filter(|n| WEBHOOK_MAX_BACKOFF_MS.contains(n))?;
            d.settings.webhook.push.max_backoff = Duration::from_millis(ms);
            Some(())
        },
    },
    Key {
        file: "webhook.ca_file",
        env: "CARDAP_WEBHOOK_CA_FILE",
        flag: "webhook-ca-file",
        form: "a file path",
        help: "Webhook push: CA certificates (PEM) trusted for https:// receivers, in addition to the system's CA bundle",
        set: |d, raw| {
            d.settings.webhook.ca_file = Some(PathBuf::from(raw.text().filter(|t| !t.is_empty())?));
            Some(())
        },
    },
];

/// Keys of the file that name a secret: refused with the variable to use instead.
const SECRETS_IN_FILE: &[(&str, &str)] = &[
    ("bootstrap.password", BOOTSTRAP_PASSWORD_ENV),
    ("master_key.key", MASTER_KEY_ENV),
    ("master_key.value", MASTER_KEY_ENV),
];

/// A value as given: a TOML value from the file, or the text of a variable or a flag.
#[derive(Debug)]
enum Raw {
    Toml(toml::Value),
    Text(String),
}

impl Raw {
    fn text(&self) -> Option<&str> {
        match self {
            Raw::Toml(toml::Value::String(s)) => Some(s),
            Raw::Text(s) => Some(s.trim()),
            Raw::Toml(_) => None,
        }
    }

    fn number<T: TryFrom<i64> + std::str::FromStr>(&self) -> Option<T> {
        match self {
            Raw::Toml(toml::Value::Integer(n)) => T::try_from(*n).ok(),
            Raw::Text(s) => s.trim().parse().ok(),
            Raw::Toml(_) => None,
        }
    }

    fn positive<T: TryFrom<i64> + std::str::FromStr + PartialOrd + From<u8>>(&self) -> Option<T> {
        self.number::<T>().filter(|n| *n >= T::from(1))
    }

    /// For an error message.
    fn describe(&self) -> String {
        match self {
            Raw::Text(s) | Raw::Toml(toml::Value::String(s)) => format!("{s:?}"),
            Raw::Toml(toml::Value::Integer(n)) => n.to_string(),
            Raw::Toml(toml::Value::Float(n)) => n.to_string(),
            Raw::Toml(toml::Value::Boolean(b)) => b.to_string(),
            Raw::Toml(toml::Value::Datetime(d)) => d.to_string(),
            Raw::Toml(toml::Value::Array(_)) => "an array".into(),
            Raw::Toml(toml::Value::Table(_)) => "a table".into(),
        }
    }
}

/// The settings while sources are laid over the defaults; the data directory decides the defaults of the
/// database and the key file only at the end, whichever source gave it.
#[derive(Debug, Default)]
struct Draft {
    settings: Settings,
    data_dir: PathBuf,
    database_url: Option<String>,
    master_key_file: Option<PathBuf>,
    audit_key_file: Option<PathBuf>,
    audit_head_file: Option<PathBuf>,
}

impl Draft {
    fn apply(&mut self, key: &Key, raw: &Raw, origin: impl FnOnce() -> Origin) -> Result<(), SettingsError> {
        (key.set)(self, raw).ok_or_else(|| SettingsError::Invalid {
            origin: origin(),
            expected: key.form.to_owned(),
            // A database URL may carry a password.
            found: Some(if key.env == "CARDAP_DATABASE_URL" { redact(&raw.describe()) } else { raw.describe() }),
        })
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), SettingsError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| SettingsError::NotToml { path: path.into(), reason: e.to_string() })?;
        let mut values = Vec::new();
        flatten("", table, &mut values);
        for (name, value) in values {
            if let Some((_, env)) = SECRETS_IN_FILE.iter().find(|(secret, _)| *secret == name) {
                return Err(SettingsError::SecretInFile { path: path.into(), key: name, env });
            }
            let Some(key) = KEYS.iter().find(|k| k.file == name) else {
                return Err(SettingsError::UnknownKey { path: path.into(), key: name });
            };
            self.apply(key, &Raw::Toml(value), || Origin::File { path: path.into(), key: name.clone() })?;
        }
        Ok(())
    }

    fn finish(self) -> Settings {
        let data_dir =
            if self.data_dir.as_os_str().is_empty() { PathBuf::from(DEFAULT_DATA_DIR) } else { self.data_dir };
        Settings {
            database_url: self.database_url.unwrap_or_else(|| sqlite_url(&data_dir)),
            master_key_file: self.master_key_file.unwrap_or_else(|| data_dir.join("master.key")),
            audit: AuditSettings {
                key_file: Some(self.audit_key_file.unwrap_or_else(|| data_dir.join("audit.key"))),
                head_file: Some(self.audit_head_file.unwrap_or_else(|| data_dir.join("audit-heads.jsonl"))),
                ..self.settings.audit
            },
            ..self.settings
        }
    }
}

/// The file's values by dotted key, in the file's order; a table is opened into its keys, so `[sessions]` with
/// `idle_minutes = 30` gives `sessions.idle_minutes`.
fn flatten(prefix: &str, table: toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (name, value) in table {
        let full = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        match value {
            toml::Value::Table(inner) => flatten(&full, inner, out),
            other => out.push((full, other)),
        }
    }
}
