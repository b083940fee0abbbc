//! HTTPS and mutual TLS on the listener (issue 10, deliverable 5), driven by independent clients: `curl` and
//! `openssl s_client`. Password mode and certificate mode share the port: no client certificate → a bearer token
//! is needed; a valid operator certificate → the operator it names; a revoked one (a new CRL, taken into use
//! without a restart) or one from another CA → refused in the handshake. Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cardap_api::settings::TlsSettings;
use cardap_commands::pki::ca::{self, CaKey, Profile, Reason, Revoked, Serial};
use cardap_commands::pki::csr;
use cardap_tests::serde_json;
use cardap_tests::serde_json::json;
use cardap_tests::{Backend, TestApp, on_both_backends, register_clerk, spawn_app_with};
use chrono::Utc;

/// A new P-256 key in `dir/<name>.key` and a CSR for it; the key's path and the request.
fn key_and_request(dir: &Path, name: &str) -> (PathBuf, csr::CheckedCsr) {
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new("openssl").args(["req", "-new", "-subj", "/CN=x", "-key"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (key, csr::parse(&out.stdout).unwrap())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// One installation's PKI in files: a CA, the server's certificate for 127.0.0.1 and an operator certificate for
/// the system administrator.
struct Pki {
    dir: tempfile::TempDir,
    issuing: CaKey,
    root_pem: PathBuf,
    crl: PathBuf,
    admin_cert: PathBuf,
    admin_key: PathBuf,
    admin_serial: Serial,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let new = ca::create("cardap tls test", now).unwrap();
        let (root, issuing) = (new.root, new.issuing);
        let root_pem = write(dir.path(), "root.pem", &root.cert_pem());
        write(dir.path(), "client-ca.pem", &format!("{}{}", issuing.cert_pem(), root.cert_pem()));

        let (server_key, request) = key_and_request(dir.path(), "server");
        let profile = Profile::Tls { dns_names: vec!["localhost".into()], ips: vec!["127.0.0.1".parse().unwrap()] };
        let server = issuing.issue(&request.spki_der, &profile, &Serial::random().unwrap(), None, now).unwrap();
        write(dir.path(), "server.pem", &format!("{}{}", ca::pem("CERTIFICATE", &server), issuing.cert_pem()));
        std::fs::rename(server_key, dir.path().join("server.key")).unwrap();

        let (admin_key, request) = key_and_request(dir.path(), "admin");
        let admin_serial = Serial::random().unwrap();
        let profile = Profile::Operator { municipality: None, operator_id: "admin".into(), business_ids: vec![] };
        let admin = issuing.issue(&request.spki_der, &profile, &admin_serial, None, now).unwrap();
        let admin_cert =
            write(dir.path(), "admin.pem", &format!("{}{}", ca::pem("CERTIFICATE", &admin), issuing.cert_pem()));
        let crl = dir.path().join("crl.der");
        std::fs::write(&crl, issuing.crl(&[], 1, now, now + chrono::Duration::days(1)).unwrap()).unwrap();
        Pki { dir, issuing, root_pem, crl, admin_cert, admin_key, admin_serial }
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert_file: Some(self.dir.path().join("server.pem")),
            key_file: Some(self.dir.path().join("server.key")),
            client_ca_file: Some(self.dir.path().join("client-ca.pem")),
            crl_file: Some(self.crl.clone()),
            reload: Duration::from_millis(200),
        }
    }

    /// `curl` over HTTPS to `path`, trusting only this installation's root; `client`: a certificate and key to
    /// present. `Err(exit code)` when no HTTP answer came (a refused handshake).
    fn curl(
        &self,
        app: &TestApp,
        path: &str,
        client: Option<(&Path, &Path)>,
        bearer: Option<&str>,
    ) -> Result<String, i32> {
        let port = app.socket_addr.port();
        let mut command = Command::new("curl");
        command.args(["-s", "-w", "\n%{http_code}", "--cacert"]).arg(&self.root_pem);
        if let Some((cert, key)) = client {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(token) = bearer {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        let out = command.arg(format!("https://127.0.0.1:{port}{path}")).output().unwrap();
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            code => Err(code.unwrap_or(-1)),
        }
    }
}

fn status(answer: &str) -> &str {
    answer.lines().last().unwrap_or_default()
}

async fn an_operator_certificate_logs_him_in_and_no_certificate_means_password_mode(backend: Backend) {
    let pki = Pki::new();
    let tls = pki.settings();
    let app = spawn_app_with(backend, |s| s.tls = tls).await;

    // Server authentication: the chain verifies against the installation's root (openssl as a second client).
    let port = app.socket_addr.port();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-verify_return_error", "-CAfile"])
        .arg(&pki.root_pem)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Verify return code: 0 (ok)"), "{said}");

    // No certificate: password mode. Nobody without a token, the administrator with his.
    let anonymous = pki.curl(&app, "/api/v1/me", None, None).unwrap();
    assert_eq!(status(&anonymous), "401", "{anonymous}");
    let login = r#"{"operator_id":"admin","password":"AdminPassw0rd"}"#;
    let port = app.socket_addr.port();
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&pki.root_pem)
        .args(["-H", "Content-Type: application/json", "-d", login])
        .arg(format!("https://127.0.0.1:{port}/api/v1/sessions"))
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = body["token"].as_str().expect("a session over HTTPS").to_owned();
    let me = pki.curl(&app, "/api/v1/me", None, Some(&token)).unwrap();
    assert_eq!(status(&me), "200", "{me}");

    // His operator certificate alone logs him in.
    let client = Some((pki.admin_cert.as_path(), pki.admin_key.as_path()));
    let me = pki.curl(&app, "/api/v1/me", client, None).unwrap();
    assert_eq!(status(&me), "200", "{me}");
    assert!(me.contains(r#""operator_id":"admin""#), "{me}");

    // A certificate of another CA is refused in the handshake.
    let stranger = ca::create("somebody else", Utc::now()).unwrap().issuing;
    let (key, request) = key_and_request(pki.dir.path(), "stranger");
    let profile = Profile::Operator { municipality: None, operator_id: "admin".into(), business_ids: vec![] };
    let cert = stranger.issue(&request.spki_der, &profile, &Serial::random().unwrap(), None, Utc::now()).unwrap();
    let cert =
        write(pki.dir.path(), "stranger.pem", &format!("{}{}", ca::pem("CERTIFICATE", &cert), stranger.cert_pem()));
    assert!(pki.curl(&app, "/api/v1/me", Some((&cert, &key)), None).is_err(), "a stranger's certificate was accepted");

    // Revoked: a new CRL file is taken into use without a restart, and his certificate no longer gets in.
    let revoked = [Revoked { serial: pki.admin_serial.clone(), at: Utc::now(), reason: Reason::KeyCompromise }];
    let now = Utc::now();
    let crl = pki.issuing.crl(&revoked, 2, now, now + chrono::Duration::days(1)).unwrap();
    std::fs::write(&pki.crl, crl).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if pki.curl(&app, "/api/v1/me", client, None).is_err() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the revoked certificate is still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Password mode goes on.
    let me = pki.curl(&app, "/api/v1/me", None, Some(&token)).unwrap();
    assert_eq!(status(&me), "200", "{me}");
}

/// `curl` with a JSON body over HTTPS; the answer's body and status line's code.
fn curl_json(
    pki: &Pki,
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (String, String) {
    let port = app.socket_addr.port();
    let mut command = Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}", "-X", method, "--cacert"]).arg(&pki.root_pem);
    command.args(["-H", "Content-Type: application/json", "-d", &body.to_string()]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = command.arg(format!("https://127.0.0.1:{port}{path}")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (body.to_owned(), code.to_owned())
}

/// The system administrator's session token, logged in over HTTPS with his password.
fn admin_token_over_https(pki: &Pki, app: &TestApp) -> String {
    let body = json!({"operator_id": "admin", "password": "AdminPassw0rd"});
    let (login, code) = curl_json(pki, app, "POST", "/api/v1/sessions", None, &body);
    assert_eq!(code, "201", "{login}");
    serde_json::from_str::<serde_json::Value>(&login).unwrap()["token"].as_str().unwrap().to_owned()
}

/// Without a client CA file, the listener trusts cardap's own CA: an operator certificate it issued logs its
/// operator in, and once it is revoked, the next CRL shuts it out within the reload interval — no file, no restart.
async fn certificates_of_cardaps_own_ca_log_in_until_revoked(backend: Backend) {
    let pki = Pki::new();
    let mut tls = pki.settings();
    (tls.client_ca_file, tls.crl_file) = (None, None);
    let app = spawn_app_with(backend, |s| s.tls = tls).await;
    let admin = admin_token_over_https(&pki, &app);
    let (answer, code) = curl_json(
        &pki,
        &app,
        "POST",
        "/api/v1/municipalities",
        Some(&admin),
        &cardap_tests::municipality(CHIYODA, "千代田区", 1),
    );
    assert_eq!(code, "201", "{answer}");
    register_clerk(&app.state, CHIYODA, "OP0501").await;

    // His certificate, for a key made on his terminal, issued by cardap's CA.
    let (key, _) = key_and_request(pki.dir.path(), "clerk");
    let pem = String::from_utf8(
        Command::new("openssl").args(["req", "-new", "-subj", "/CN=x", "-key"]).arg(&key).output().unwrap().stdout,
    )
    .unwrap();
    let path = format!("/api/v1/municipalities/{CHIYODA}/operators/OP0501/certificates");
    let (issued, code) = curl_json(&pki, &app, "POST", &path, Some(&admin), &json!({"csr": pem}));
    assert_eq!(code, "201", "{issued}");
    let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
    let cert = write(pki.dir.path(), "clerk.pem", issued["certificate"].as_str().unwrap());
    let me = pki.curl(&app, "/api/v1/me", Some((&cert, &key)), None).unwrap();
    assert_eq!(status(&me), "200", "{me}");
    assert!(me.contains(r#""operator_id":"OP0501""#), "{me}");

    let serial = issued["serial"].as_str().unwrap();
    let (answer, code) = curl_json(
        &pki,
        &app,
        "POST",
        &format!("{path}/{serial}/revoke"),
        Some(&admin),
        &json!({"reason": "keyCompromise"}),
    );
    assert_eq!(code, "200", "{answer}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while pki.curl(&app, "/api/v1/me", Some((&cert, &key)), None).is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the revoked certificate is still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const CHIYODA: &str = "131016";

/// A reqwest client over rustls (ring) trusting only this installation's root, presenting `client` (a PEM chain
/// and its key) when given.
fn reqwest_client(pki: &Pki, client: Option<(&Path, &Path)>) -> cardap_tests::reqwest::Client {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.root_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // ring, the workspace's one provider (deprecated only for lacking post-quantum key exchange; see api/src/tls.rs).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    cardap_tests::reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(cardap_tests::reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The listener driven with reqwest (rustls on ring) as a Rust business system or agent would: a valid operator
/// certificate is accepted and names its operator, none means password mode, a revoked one is refused.
async fn reqwest_with_and_without_a_client_certificate(backend: Backend) {
    let pki = Pki::new();
    let app = spawn_app_with(backend, |s| s.tls = pki.settings()).await;
    let url = format!("https://127.0.0.1:{}/api/v1/me", app.socket_addr.port());
    let anonymous = reqwest_client(&pki, None).get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let client = reqwest_client(&pki, Some((&pki.admin_cert, &pki.admin_key)));
    let me = client.get(&url).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["operator_id"], "admin");

    let revoked = [Revoked { serial: pki.admin_serial.clone(), at: Utc::now(), reason: Reason::KeyCompromise }];
    let now = Utc::now();
    std::fs::write(&pki.crl, pki.issuing.crl(&revoked, 2, now, now + chrono::Duration::days(1)).unwrap()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        // A new connection each time: the revoked certificate must fail its handshake.
        let fresh = reqwest_client(&pki, Some((&pki.admin_cert, &pki.admin_key)));
        if fresh.get(&url).send().await.is_err() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the revoked certificate is still accepted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A business system authenticates to cardap with its business server certificate as the client certificate:
/// at the token endpoint it needs no secret (tls_client_auth); another holder's certificate is not its.
async fn a_business_system_authenticates_with_its_server_certificate(backend: Backend) {
    let pki = Pki::new();
    let mut tls = pki.settings();
    (tls.client_ca_file, tls.crl_file) = (None, None);
    let app = spawn_app_with(backend, |s| s.tls = tls).await;
    let admin = admin_token_over_https(&pki, &app);
    let system = cardap_tests::business_system("05", "施設予約");
    let (answer, code) = curl_json(&pki, &app, "POST", "/api/v1/business-systems", Some(&admin), &system);
    assert_eq!(code, "201", "{answer}");
    let redirect = "https://b05.example.jp/oidc/callback";
    let (answer, code) = curl_json(
        &pki,
        &app,
        "PUT",
        "/api/v1/business-systems/05/login-client",
        Some(&admin),
        &json!({ "redirect_uris": [redirect] }),
    );
    assert_eq!(code, "200", "{answer}");
    // Its server certificate, from its CSR (CN = the host of its URLs).
    let key = pki.dir.path().join("b05.key");
    let out = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj"])
        .arg("/C=JP/O=南江戸市/CN=b05.example.jp")
        .arg("-keyout")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let csr_pem = String::from_utf8(out.stdout).unwrap();
    let (issued, code) = curl_json(
        &pki,
        &app,
        "POST",
        "/api/v1/business-systems/05/certificates",
        Some(&admin),
        &json!({ "csr": csr_pem }),
    );
    assert_eq!(code, "201", "{issued}");
    let issued: serde_json::Value = serde_json::from_str(&issued).unwrap();
    let cert = write(pki.dir.path(), "b05.pem", issued["certificate"].as_str().unwrap());

    // A code for the system administrator (his session at cardap).
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let code_for = || async {
        let authorize = format!(
            "https://127.0.0.1:{}/oidc/authorize?response_type=code&client_id=05&scope=openid&state=s\
             &code_challenge={challenge}&code_challenge_method=S256&redirect_uri={}",
            app.socket_addr.port(),
            redirect.replace(':', "%3A").replace('/', "%2F")
        );
        let back = reqwest_client(&pki, None).get(&authorize).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(back.status(), 303);
        let location = back.headers()["location"].to_str().unwrap().to_owned();
        location.split(['?', '&']).find_map(|p| p.strip_prefix("code=")).unwrap().to_owned()
    };
    let token_url = format!("https://127.0.0.1:{}/oidc/token", app.socket_addr.port());
    let form = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("code_verifier", verifier.to_owned()),
            ("redirect_uri", redirect.to_owned()),
            ("client_id", "05".to_owned()),
        ]
    };
    // Its certificate and no secret: the ID token.
    let code = code_for().await;
    let answer = reqwest_client(&pki, Some((&cert, &key))).post(&token_url).form(&form(&code)).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(body["id_token"].is_string(), "{body}");
    // No certificate and no secret: invalid_client.
    let code = code_for().await;
    let answer = reqwest_client(&pki, None).post(&token_url).form(&form(&code)).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    // Its certificate names 05 only: as client 06 it authenticates nobody.
    let mut other = form(&code);
    other[4].1 = "06".to_owned();
    let answer = reqwest_client(&pki, Some((&cert, &key))).post(&token_url).form(&other).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    assert_eq!(answer.json::<serde_json::Value>().await.unwrap()["error"], "invalid_client");
}

on_both_backends!(
    an_operator_certificate_logs_him_in_and_no_certificate_means_password_mode,
    certificates_of_cardaps_own_ca_log_in_until_revoked,
    reqwest_with_and_without_a_client_certificate,
    a_business_system_authenticates_with_its_server_certificate,
);
