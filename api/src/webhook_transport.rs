//! The HTTP adapter of the webhook pusher's port (`cardap_commands::webhooks::WebhookTransport`): one POST per
//! item over HTTP/1.1 (hyper), on a new connection each time, TLS by rustls on ring for `https://` URLs. A
//! receiver's certificate must chain to the system's CA bundle (`SSL_CERT_FILE`, else
//! `/etc/ssl/certs/ca-certificates.crt`) or to a CA of `webhook.ca_file` (PEM), and name the URL's host; anything
//! else fails the handshake, which counts as a failed attempt (retried, the push cursor stays).
//!
//! Must not decide anything about retries or what is sent: it answers the status, or why there was none.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cardap_commands::webhooks::{Delivery, WebhookTransport};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct HttpTransport {
    tls: Arc<rustls::ClientConfig>,
}

impl HttpTransport {
    /// A transport trusting the system's CA bundle (none readable: only `extra` and http) and the CA
    /// certificates of the PEM file `extra`, which must be readable and hold at least one.
    pub fn new(extra: Option<&Path>) -> Result<Self, String> {
        let bundle = std::env::var_os("SSL_CERT_FILE")
            .map_or_else(|| std::path::PathBuf::from("/etc/ssl/certs/ca-certificates.crt"), Into::into);
        let mut roots = rustls::RootCertStore::empty();
        if let Ok(iter) = CertificateDer::pem_file_iter(&bundle) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
        }
        if let Some(path) = extra {
            let named = |e: &dyn std::fmt::Display| format!("webhook.ca_file {}: {e}", path.display());
            let mut added = 0;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| named(&e))? {
                roots.add(cert.map_err(|e| named(&e))?).map_err(|e| named(&e))?;
                added += 1;
            }
            if added == 0 {
                return Err(named(&"no CERTIFICATE in it"));
            }
        }
        // ring, the workspace's one provider (deprecated only for lacking post-quantum key exchange; see tls.rs).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpTransport { tls: Arc::new(config) })
    }

    async fn send(&self, url: &str, headers: &[(&'static str, String)], body: Vec<u8>) -> Delivery {
        let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        let https = uri.scheme_str() == Some("https");
        let authority = uri.authority().ok_or("no host in the URL")?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = hyper::Request::post(path).header(hyper::header::HOST, authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        if https {
            let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            exchange(TokioIo::new(tls), request).await
        } else {
            exchange(TokioIo::new(tcp), request).await
        }
    }
}

async fn exchange<T>(io: T, request: hyper::Request<Full<Bytes>>) -> Delivery
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let answer = sender.send_request(request).await.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
    driver.abort();
    answer
}

#[async_trait::async_trait]
impl WebhookTransport for HttpTransport {
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: Vec<u8>, timeout: Duration) -> Delivery {
        tokio::time::timeout(timeout, self.send(url, headers, body))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    }
}
