//! Certificate issuance benchmark (issue 10): certificates issued per second from P-256 CSRs, through the signing
//! core (the CSR read and its signature verified, a certificate signed by the issuing CA: target ≥ 500/s, PASS or
//! MISS), and through the HTTP use case (`POST /api/v1/business-systems/{id}/certificates`: the same, plus the
//! `CertificateIssued` append and the read model) with 1 and 8 concurrent clients, in-process (no network); then
//! OpenID Connect code exchanges per second (`POST /oidc/token`: client secret, code taken once, PKCE, the
//! operator's permission checked again, an ES256 ID token signed), with 1 and 8 concurrent business-system clients.
//!
//! Run: `scripts/bench` (every benchmark), or
//! `cargo run --release -p cardap-bench --bin pki-bench -- [--database-url postgres://…] [--count 2000]`
//! (without a URL: a SQLite file in a temporary directory).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use cardap_api::app::{Application, Settings, app};
use cardap_commands::pki::ca::{self, Profile, Serial};
use cardap_commands::pki::csr;
use clap::Parser;
use http_body_util::BodyExt;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use tower::ServiceExt;

#[derive(Debug, Parser)]
struct Args {
    /// A database URL (postgres://… or sqlite:…) for the HTTP measurement; default: a temporary SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Certificates per measurement.
    #[arg(long, default_value_t = 2000)]
    count: usize,
}

/// The signing core's target: P-256 CSRs turned into certificates per second.
const TARGET_PER_SECOND: f64 = 500.0;
const HOST: &str = "b05.example.jp";

fn p256_csrs(count: usize) -> anyhow::Result<Vec<String>> {
    (0..count)
        .map(|_| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CountryName, "JP");
            dn.push(DnType::OrganizationName, "南江戸市");
            dn.push(DnType::CommonName, HOST);
            params.distinguished_name = dn;
            Ok(params.serialize_request(&key)?.pem()?)
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let csrs = p256_csrs(args.count)?;

    // The signing core alone.
    let new = ca::create("bench", chrono::Utc::now())?;
    let started = Instant::now();
    for pem in &csrs {
        let checked = csr::parse(pem.as_bytes())?;
        let profile = Profile::BusinessServer { subject: checked.subject.clone(), dns_names: vec![HOST.to_owned()] };
        let serial = Serial::random()?;
        new.issuing.issue(
            &checked.spki_der,
            &profile,
            &serial,
            Some("https://cardap.example.jp/pki/crl"),
            chrono::Utc::now(),
        )?;
    }
    let per_second = csrs.len() as f64 / started.elapsed().as_secs_f64();
    let verdict = if per_second >= TARGET_PER_SECOND { "PASS" } else { "MISS" };
    println!(
        "signing core: {per_second:.0} certificates/s from P-256 CSRs ({} issued; target ≥ {TARGET_PER_SECOND:.0}/s: {verdict})",
        csrs.len()
    );

    // Through the HTTP use case.
    let dir = tempfile_dir()?;
    let url = args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}/pki-bench.db?mode=rwc", dir.display()));
    let application = Application::build(Settings::for_tests(url.clone())).await?;
    let router = app(application.state().clone());
    let admin = login(&router).await?.context("admin login")?;
    let system = serde_json::json!({
        "business_id": "05", "name": "施設予約", "top_url": format!("https://{HOST}/"),
        "operator_admin_url": format!("https://{HOST}/operators"), "personalize_url": format!("https://{HOST}/me"),
    });
    let status = post(&router, &admin, "/api/v1/business-systems", "application/json", system.to_string()).await?;
    anyhow::ensure!(status == StatusCode::CREATED, "registering the business system failed: {status}");
    println!("backend: {}", if url.starts_with("postgres") { "postgres" } else { "sqlite" });
    let csrs = Arc::new(csrs);
    for clients in [1, 8] {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = vec![];
        for _ in 0..clients {
            let (router, admin, csrs, next) = (router.clone(), admin.clone(), csrs.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(pem) = csrs.get(i) else { return Ok::<(), anyhow::Error>(()) };
                    let path = "/api/v1/business-systems/05/certificates";
                    let status = post(&router, &admin, path, "application/pkcs10", pem.clone()).await?;
                    anyhow::ensure!(status == StatusCode::CREATED, "issuing failed: {status}");
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        let per_second = csrs.len() as f64 / started.elapsed().as_secs_f64();
        println!("HTTP use case, {clients} client(s): {per_second:.0} certificates/s ({} issued)", csrs.len());
    }
    oidc_exchanges(&router, &admin, args.count).await?;
    drop(router);
    drop(application);
    if args.database_url.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let mut suffix = [0_u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::env::temp_dir()
        .join(format!("pki-bench-{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn login(router: &axum::Router) -> anyhow::Result<Option<String>> {
    let body = serde_json::json!({"operator_id": "admin", "password": "AdminPassw0rd"});
    let request = Request::post("/api/v1/sessions")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body)?))?;
    let response = router.clone().oneshot(request).await?;
    if response.status() != StatusCode::CREATED {
        return Ok(None);
    }
    let bytes = response.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes)?;
    Ok(json["token"].as_str().map(str::to_owned))
}

async fn post(
    router: &axum::Router,
    token: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> anyhow::Result<StatusCode> {
    let request = Request::post(path)
        .header("content-type", content_type)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::from(body))?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status)
}

/// OpenID Connect: `count` codes for the system administrator (his session at cardap, no form), then exchanged
/// for ID tokens by 1 and 8 concurrent clients.
async fn oidc_exchanges(router: &axum::Router, admin: &str, count: usize) -> anyhow::Result<()> {
    const REDIRECT: &str = "https://b05.example.jp/oidc/callback";
    let body = serde_json::json!({ "redirect_uris": [REDIRECT] }).to_string();
    let request = Request::put("/api/v1/business-systems/05/login-client")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {admin}"))
        .body(Body::from(body))?;
    let response = router.clone().oneshot(request).await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "registering the login client failed: {}", response.status());
    let request = Request::post("/api/v1/business-systems/05/login-client/secret")
        .header("authorization", format!("Bearer {admin}"))
        .body(Body::empty())?;
    let response = router.clone().oneshot(request).await?;
    anyhow::ensure!(response.status() == StatusCode::CREATED, "issuing the secret failed: {}", response.status());
    let bytes = response.into_body().collect().await?.to_bytes();
    let secret = serde_json::from_slice::<serde_json::Value>(&bytes)?["client_secret"]
        .as_str()
        .context("a client secret")?
        .to_owned();
    // One verifier for all: its S256 challenge.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    for clients in [1, 8] {
        let mut codes = Vec::with_capacity(count);
        for i in 0..count {
            let uri = format!(
                "/oidc/authorize?response_type=code&client_id=05&scope=openid&state=s{i}&nonce=n{i}\
                 &code_challenge={challenge}&code_challenge_method=S256&redirect_uri={}",
                REDIRECT.replace(':', "%3A").replace('/', "%2F")
            );
            let request = Request::get(uri).header("authorization", format!("Bearer {admin}")).body(Body::empty())?;
            let response = router.clone().oneshot(request).await?;
            let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
            let code = location.split(['?', '&']).find_map(|p| p.strip_prefix("code=")).context("a code")?;
            codes.push(code.to_owned());
        }
        let codes = Arc::new(codes);
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = vec![];
        for _ in 0..clients {
            let (router, codes, next, secret) = (router.clone(), codes.clone(), next.clone(), secret.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(code) = codes.get(i) else { return Ok::<(), anyhow::Error>(()) };
                    let form = format!(
                        "grant_type=authorization_code&code={code}&code_verifier={verifier}&client_id=05\
                         &client_secret={secret}&redirect_uri={}",
                        REDIRECT.replace(':', "%3A").replace('/', "%2F")
                    );
                    let request = Request::post("/oidc/token")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(Body::from(form))?;
                    let response = router.clone().oneshot(request).await?;
                    let status = response.status();
                    response.into_body().collect().await?;
                    anyhow::ensure!(status == StatusCode::OK, "the exchange failed: {status}");
                }
            }));
        }
        for task in tasks {
            task.await??;
        }
        let per_second = count as f64 / started.elapsed().as_secs_f64();
        println!("OIDC code exchanges, {clients} client(s): {per_second:.0}/s ({count} ID tokens)");
    }
    Ok(())
}
