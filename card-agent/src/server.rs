//! The agent's client of cardap's HTTP API over mutual TLS: the clerk's operator certificate logs him in (no
//! password), the server is trusted only through the installation's CA chain. rustls on ring, configured here.
//!
//! Owns the requests the agent makes and the reading of cardap's problems into [`ServerError`]. Never logs a
//! body: they carry the four facts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::Client;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// Why cardap did not answer as asked.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cardap cannot be reached at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// cardap answered with a problem (`application/problem+json`).
    #[error("cardap refused ({status} {kind}): {detail}")]
    Problem { status: u16, kind: String, detail: String },
    #[error("cardap's answer cannot be read: {0}")]
    Unexpected(String),
    #[error("TLS files: {0}")]
    Tls(String),
}

impl ServerError {
    /// The problem `type`, when cardap answered with one.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ServerError::Problem { kind, .. } => Some(kind),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ServerError::Problem { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How to reach cardap.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// e.g. `https://cardap.example.lg.jp:8443`.
    pub url: String,
    /// The installation's CA chain (PEM): the only roots the server's certificate is checked against.
    pub ca_pem: Vec<u8>,
    /// The clerk's operator certificate (PEM, with its chain) and key (PEM, PKCS#8/SEC1).
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// A bearer token instead of (or besides) a certificate (tests, scripts).
    pub bearer: Option<String>,
}

impl ServerConfig {
    /// Reads the CA file and the clerk's certificate and key files.
    pub fn from_files(url: &str, ca: &Path, cert: Option<&Path>, key: Option<&Path>) -> Result<Self, ServerError> {
        let read = |p: &Path| std::fs::read(p).map_err(|e| ServerError::Tls(format!("{}: {e}", p.display())));
        Ok(ServerConfig {
            url: url.trim_end_matches('/').to_owned(),
            ca_pem: read(ca)?,
            client_cert_pem: cert.map(read).transpose()?,
            client_key_pem: key.map(read).transpose()?,
            bearer: None,
        })
    }
}

/// A client of one cardap installation.
#[derive(Debug, Clone)]
pub struct Server {
    url: String,
    client: Client,
    bearer: Option<String>,
}

fn tls(e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(e.to_string())
}

impl Server {
    pub fn new(config: &ServerConfig) -> Result<Server, ServerError> {
        // ring: the workspace's one crypto provider (see api/src/tls.rs on its deprecation).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&config.ca_pem) {
            roots.add(cert.map_err(tls)?).map_err(tls)?;
        }
        if roots.is_empty() {
            return Err(ServerError::Tls("the CA file holds no certificate".into()));
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_root_certificates(roots);
        let tls_config = match (&config.client_cert_pem, &config.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>().map_err(tls)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(tls)?;
                builder.with_client_auth_cert(chain, key).map_err(tls)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(ServerError::Tls("give both the operator certificate and its key".into())),
        };
        let client = Client::builder()
            .use_preconfigured_tls(tls_config)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(tls)?;
        Ok(Server { url: config.url.trim_end_matches('/').to_owned(), client, bearer: config.bearer.clone() })
    }

    /// One request; a 2xx answer's JSON body (or `null`), else the problem.
    pub fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, ServerError> {
        let url = format!("{}{path}", self.url);
        let mut request = self.client.request(method, &url).header("Accept-Language", "ja");
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request.send().map_err(|e| ServerError::Unreachable { url: self.url.clone(), reason: chain(&e) })?;
        let status = response.status();
        let text = response.text().map_err(|e| ServerError::Unexpected(e.to_string()))?;
        let value: Value =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        if status.is_success() {
            return Ok(value);
        }
        let field = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let mut detail =
            [field("title"), field("detail")].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(": ");
        if let Some(errors) = value.get("errors").and_then(Value::as_array) {
            for e in errors {
                detail.push_str(&format!(
                    " [{} {}]",
                    e["field"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                ));
            }
        }
        Err(ServerError::Problem { status: status.as_u16(), kind: field("type"), detail })
    }

    pub fn get(&self, path: &str) -> Result<Value, ServerError> {
        self.call(Method::GET, path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ServerError> {
        self.call(Method::POST, path, Some(body))
    }

    /// Who the certificate logged in: `/api/v1/me`.
    pub fn me(&self) -> Result<Value, ServerError> {
        self.get("/api/v1/me")
    }

    /// The card `fid` of `code`, `None` when it is not registered there.
    pub fn card(&self, code: &str, fid: &str) -> Result<Option<Value>, ServerError> {
        match self.get(&format!("/api/v1/municipalities/{code}/cards/{fid}")) {
            Ok(card) => Ok(Some(card)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The card's write authorized: the image and cardap's COMMIT MAC. `issuance_consent`: the resident's answer
    /// for AP `01`.
    pub fn prepare_write(
        &self,
        code: &str,
        fid: &str,
        challenge: &[u8],
        action: &str,
        business_ids: &[String],
        issuance_consent: Option<bool>,
    ) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
        let body = json!({"challenge": hex::encode(challenge), "action": action, "business_ids": business_ids,
            "issuance_consent": issuance_consent});
        let answer = self.post(&format!("/api/v1/municipalities/{code}/cards/{fid}/card-writes"), &body)?;
        let bytes = |k: &str| {
            answer
                .get(k)
                .and_then(Value::as_str)
                .and_then(|s| hex::decode(s).ok())
                .ok_or_else(|| ServerError::Unexpected(format!("card-writes answered without `{k}`")))
        };
        Ok((bytes("image")?, bytes("commit_mac")?))
    }

    /// What the card holds, with its MAC: cardap's record compared and (maybe) brought up to the card, recording
    /// the resident's answer for an AP `01` it installs.
    pub fn record_state(
        &self,
        code: &str,
        fid: &str,
        image: &[u8],
        nonce: &[u8],
        mac: &[u8],
        issuance_consent: Option<bool>,
    ) -> Result<Value, ServerError> {
        let body = json!({"image": hex::encode(image), "nonce": hex::encode(nonce), "mac": hex::encode(mac),
            "issuance_consent": issuance_consent});
        self.post(&format!("/api/v1/municipalities/{code}/cards/{fid}/card-state"), &body)
    }
}

/// An error with its causes, for a message that says why a connection failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
