//! HTTPS on the listener (rustls on ring, the workspace's one crypto provider): the server certificate and key
//! from PEM files, and — for mutual TLS — the CAs whose client certificates are accepted with their CRL: cardap's
//! own CA (its chain and its current CRL, from `cardap_commands::pki`) unless a `client_ca` file names others (and
//! a `crl` file their CRL). Owns loading them, and taking a change into use without a restart: every `reload`
//! interval the files' modification times and the internal CA's CRL are compared and, when one changed, a new
//! configuration is built and used for the connections that come after (running ones keep theirs). A revocation
//! therefore shuts a certificate out within one interval. A configuration that does not load keeps the previous
//! one and says why in the log.
//!
//! Mutual TLS is optional for the client: one that presents no certificate is served (password mode, a bearer
//! token authenticates it); one whose certificate does not chain to a client CA, is expired, or is revoked by the
//! CRL is refused in the handshake. The certificate of an accepted connection goes with each of its requests as
//! [`PeerCertificate`], which `crate::auth` turns into the operator it names.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The client certificate a TLS connection was authenticated with (DER), on each of its requests.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<[u8]>);

/// Where the listener's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate chain, PEM (the server certificate first).
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CAs whose client certificates authenticate (mutual TLS), PEM; `None`: no client certificates asked.
    pub client_ca: Option<PathBuf>,
    /// The CRL of those CAs' certificates (PEM or DER, as `GET /pki/crl` serves it).
    pub crl: Option<PathBuf>,
    /// How often the files are looked at for changes.
    pub reload: Duration,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref(), self.crl.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }

    fn stamps(&self) -> Vec<Option<SystemTime>> {
        self.paths().iter().map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()).collect()
    }
}

/// Why the TLS material could not be used; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    #[error("the TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.to_owned(), reason: reason.to_string() }
}

/// The CAs client certificates chain to, and their CRLs (DER).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Trust {
    cas: Vec<Vec<u8>>,
    crls: Vec<Vec<u8>>,
}

/// What a configuration was built from: the files' modification times and the internal CA's trust.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    stamps: Vec<Option<SystemTime>>,
    internal: Option<Trust>,
}

/// The listener's TLS configuration, swapped when its files or the internal CA's CRL change.
#[derive(Debug)]
pub struct Tls {
    files: TlsFiles,
    /// cardap's own CA: trusted for client certificates when no `client_ca` file is configured.
    internal: Option<cardap_commands::pki::Pki>,
    current: RwLock<Arc<ServerConfig>>,
    seen: Mutex<Seen>,
}

impl Tls {
    /// Loads the files (and the internal CA's chain and CRL); an error names what could not be used.
    pub async fn load(files: TlsFiles, internal: Option<cardap_commands::pki::Pki>) -> Result<Arc<Tls>, TlsError> {
        let internal = internal.filter(|_| files.client_ca.is_none());
        let seen = Seen { stamps: files.stamps(), internal: internal_trust(internal.as_ref()).await? };
        let config = Arc::new(server_config(&files, seen.internal.as_ref())?);
        Ok(Arc::new(Tls { files, internal, current: RwLock::new(config), seen: Mutex::new(seen) }))
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |c| c.clone());
        TlsAcceptor::from(config)
    }

    /// Builds a new configuration if a file or the internal CA's CRL changed since the last look; whether one was
    /// taken into use.
    pub async fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = Seen { stamps: self.files.stamps(), internal: internal_trust(self.internal.as_ref()).await? };
        {
            let mut seen = self.seen.lock().map_err(|_| TlsError::Config("a reload panicked".into()))?;
            if *seen == now {
                return Ok(false);
            }
            // Looked at once per change: a broken file is reported once, not at every interval.
            *seen = now.clone();
        }
        let config = Arc::new(server_config(&self.files, now.internal.as_ref())?);
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(true)
    }

    /// Looks for changed files every `reload` interval until `stop` says so.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.files.reload) => {}
                _ = stop.changed() => return,
            }
            match self.reload_if_changed().await {
                Ok(true) => tracing::info!("new TLS certificates, key or CRL taken into use"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "the changed TLS files cannot be used; keeping the previous ones")
                }
            }
        }
    }
}

/// The internal CA's chain and current CRL, when it is the client CA.
async fn internal_trust(internal: Option<&cardap_commands::pki::Pki>) -> Result<Option<Trust>, TlsError> {
    let Some(pki) = internal else { return Ok(None) };
    let failed = |e: &dyn std::fmt::Display| TlsError::Config(format!("the internal CA: {e}"));
    let chain = pki.chain_pem().map_err(|e| failed(&e))?;
    let cas = CertificateDer::pem_slice_iter(chain.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(&e))?;
    let crl = pki.crl().await.map_err(|e| failed(&e))?;
    Ok(Some(Trust { cas, crls: vec![crl] }))
}

fn server_config(files: &TlsFiles, internal: Option<&Trust>) -> Result<ServerConfig, TlsError> {
    // ring: the workspace's one crypto provider (RECIPES.md: it builds in a fraction of aws-lc's time on 2 cores, and
    // a second provider would have to be chosen at start). rustls 0.23.48 deprecates it for lacking post-quantum key
    // exchange; moving to a provider with X25519MLKEM768 is a decision for the whole workspace, not this module.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert, "no certificate in the file"));
    }
    // The key's own error says nothing of the key; still, only the file is named.
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|_| file_error(&files.key, "no private key in PEM"))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let trust = match (&files.client_ca, internal) {
        (Some(ca_file), _) => Some(file_trust(ca_file, files.crl.as_deref())?),
        (None, Some(internal)) => Some(internal.clone()),
        (None, None) => None,
    };
    let builder = match trust {
        None => builder.with_no_client_auth(),
        Some(trust) => {
            let mut roots = RootCertStore::empty();
            for ca in trust.cas {
                roots.add(CertificateDer::from(ca)).map_err(|e| TlsError::Config(format!("a client CA: {e}")))?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                // Password mode on the same port: no certificate is no failure (a bearer token is then needed).
                .allow_unauthenticated();
            if !trust.crls.is_empty() {
                // The CRL is the issuing CA's: it covers the end-entity certificates, not the CA above it.
                let crls: Vec<_> = trust.crls.into_iter().map(CertificateRevocationListDer::from).collect();
                verifier = verifier.with_crls(crls).only_check_end_entity_revocation();
            }
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| file_error(&files.key, e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The client CAs of `ca_file` (PEM) and the CRLs of `crl_file`.
fn file_trust(ca_file: &Path, crl_file: Option<&Path>) -> Result<Trust, TlsError> {
    let mut cas = Vec::new();
    for ca in CertificateDer::pem_file_iter(ca_file).map_err(|e| file_error(ca_file, e))? {
        cas.push(ca.map_err(|e| file_error(ca_file, e))?.to_vec());
    }
    let crls = match crl_file {
        Some(path) => crls(path)?,
        None => vec![],
    };
    Ok(Trust { cas, crls })
}

/// The CRLs in `path`: PEM blocks, or one DER CRL.
fn crls(path: &Path) -> Result<Vec<Vec<u8>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
    if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(path, e))
    } else {
        Ok(vec![bytes])
    }
}
