//! tls-bench: mutual-TLS handshakes per second against the release `cardap` (issue 10's benchmark, the TLS part).
//!
//! Makes an installation's PKI with cardap's own CA (`cardap_commands::pki`): a CA, the server's certificate for
//! 127.0.0.1, an operator certificate for the system administrator and an empty CRL; starts the server with them
//! (`CARDAP_TLS_*`, SQLite in a scratch directory); then, from `--clients` concurrent rustls clients presenting
//! the operator certificate, prints connections per second with a full handshake (no session resumption) and
//! with a resumed one (TLS 1.3 resumption, the handshake kind checked on every connection); each connection also
//! sends one `GET /healthz` (which is how the client receives the tickets it resumes with). Client and server share the
//! machine's cores.
//!
//! ```sh
//! cargo build --release -p cardap-api --bin cardap -p cardap-bench --bin tls-bench
//! target/release/tls-bench [--seconds 10] [--clients 8] [--quick]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_bench::Server;
use cardap_commands::pki::ca::{self, Profile, Serial};
use clap::Parser;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use rustls::client::Resumption;
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser)]
#[command(name = "tls-bench", about = "Mutual-TLS handshakes per second, full and resumed")]
struct Args {
    /// The `cardap` binary to run as the server (default: `cardap` next to this binary).
    #[arg(long, value_name = "PATH")]
    cardap: Option<PathBuf>,
    /// Seconds per kind of handshake (default 10; 2 with --quick).
    #[arg(long)]
    seconds: Option<f64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// A short smoke run: the numbers are not meaningful.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let seconds = args.seconds.unwrap_or(if args.quick { 2.0 } else { 10.0 });
    ensure!(seconds.is_finite() && seconds > 0.0 && args.clients > 0, "--seconds and --clients must be positive");
    let binary = match args.cardap {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("cardap"),
    };
    let scratch = std::env::temp_dir().join(format!("cardap-tls-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let result = run(&binary, &scratch, seconds, args.clients).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn run(binary: &PathBuf, scratch: &std::path::Path, seconds: f64, clients: usize) -> Result<()> {
    let pki = Pki::make(scratch)?;
    let mut key = [0_u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow!("random master key: {e}"))?;
    let url = format!("sqlite://{}/cardap.db?mode=rwc", scratch.display());
    let env = [
        ("CARDAP_TLS_CERT_FILE", pki.server_chain.display().to_string()),
        ("CARDAP_TLS_KEY_FILE", pki.server_key.display().to_string()),
        ("CARDAP_TLS_CLIENT_CA_FILE", pki.client_ca.display().to_string()),
        ("CARDAP_TLS_CRL_FILE", pki.crl.display().to_string()),
    ];
    eprintln!("tls-bench: starting {}", binary.display());
    let server = Server::start_with(binary, &url, &STANDARD.encode(key), &env)?;
    let address = server.address.trim_start_matches("http://").to_owned();

    println!("tls-bench (mutual TLS with an operator certificate, P-256; {clients} clients, {seconds} s each)");
    for (kind, resume) in [("full", false), ("resumed", true)] {
        let connector = TlsConnector::from(Arc::new(pki.client_config(resume)?));
        let (done, resumed) = handshakes(&connector, &address, seconds, clients).await?;
        let rate = done as f64 / seconds;
        println!("  {kind:>7}: {done} handshakes, {rate:.0}/s ({resumed} resumed)");
        if resume {
            ensure!(resumed * 10 >= done * 9, "fewer than 90% of the 'resumed' handshakes were resumptions");
        } else {
            ensure!(resumed == 0, "a handshake was resumed with resumption off");
        }
    }
    server.stop()
}

/// Handshakes from `clients` tasks for `seconds`: how many, and how many of them were resumptions.
async fn handshakes(connector: &TlsConnector, address: &str, seconds: f64, clients: usize) -> Result<(u64, u64)> {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let (done, resumed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (connector, address) = (connector.clone(), address.to_owned());
        let (done, resumed) = (done.clone(), resumed.clone());
        tasks.push(tokio::spawn(async move {
            let name = ServerName::try_from("127.0.0.1").map_err(|e| anyhow!("{e}"))?;
            while Instant::now() < until {
                let tcp = TcpStream::connect(&address).await?;
                tcp.set_nodelay(true)?;
                let mut tls = connector.connect(name.clone(), tcp).await.context("a handshake")?;
                if tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                    resumed.fetch_add(1, Ordering::Relaxed);
                }
                // One request on it: the client reads the session tickets the server sends after the handshake
                // (TLS 1.3), which the next connection resumes with.
                tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await?;
                let mut answer = Vec::new();
                tls.read_to_end(&mut answer).await?;
                ensure!(answer.starts_with(b"HTTP/1.1 200"), "GET /healthz over TLS did not answer 200");
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((done.load(Ordering::Relaxed), resumed.load(Ordering::Relaxed)))
}

/// The installation's PKI in files, and what the client presents.
struct Pki {
    server_chain: PathBuf,
    server_key: PathBuf,
    client_ca: PathBuf,
    crl: PathBuf,
    root: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: Vec<u8>,
}

impl Pki {
    fn make(dir: &std::path::Path) -> Result<Pki> {
        let now = chrono::Utc::now();
        let new = ca::create("cardap tls-bench", now)?;
        let issuing_pem = new.issuing.cert_pem();
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path)
        };
        let server_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let profile = Profile::Tls { dns_names: vec!["localhost".into()], ips: vec!["127.0.0.1".parse()?] };
        let server =
            new.issuing.issue(&server_key.subject_public_key_info(), &profile, &Serial::random()?, None, now)?;
        let client_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let profile = Profile::Operator { municipality: None, operator_id: "admin".into(), business_ids: vec![] };
        let client =
            new.issuing.issue(&client_key.subject_public_key_info(), &profile, &Serial::random()?, None, now)?;
        let crl = dir.join("crl.der");
        std::fs::write(&crl, new.issuing.crl(&[], 1, now, now + chrono::Duration::days(1))?)?;
        Ok(Pki {
            server_chain: write("server.pem", &format!("{}{issuing_pem}", ca::pem("CERTIFICATE", &server)))?,
            server_key: write("server.key", &server_key.serialize_pem())?,
            client_ca: write("client-ca.pem", &format!("{issuing_pem}{}", new.root.cert_pem()))?,
            crl,
            root: CertificateDer::from(new.root.cert_der().to_vec()),
            client_chain: vec![CertificateDer::from(client), CertificateDer::from(new.issuing.cert_der().to_vec())],
            client_key: client_key.serialize_der(),
        })
    }

    fn client_config(&self, resume: bool) -> Result<ClientConfig> {
        #[allow(deprecated)] // ring, the workspace's one provider (see api/src/tls.rs)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.root.clone())?;
        let key = PrivateKeyDer::try_from(self.client_key.clone()).map_err(|e| anyhow!("the client key: {e}"))?;
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.client_chain.clone(), key)?;
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Ok(config)
    }
}
