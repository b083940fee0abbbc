//! The internal CA through HTTP (issue 10): CSRs made by `openssl req -utf8` for every accepted key become
//! certificates that `openssl verify -x509_strict -crl_check` accepts with the chain of `GET /pki/ca.pem` and the
//! CRL of `GET /pki/crl` — until they are revoked, when the next CRL makes openssl refuse them; a reissue
//! supersedes the old certificate; a revoked operator's certificate is in the CRL as affiliationChanged; every
//! bad request is a clear 4xx that issues nothing; a restart keeps the CA, whose key is nowhere in clear.
//! Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_api::Settings;
use cardap_store::{Checkpoint, CredentialStore, ReadFilter};
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::json;
use cardap_tests::{
    Backend, Reply, TestApp, business_system, on_both_backends, register_clerk, send, spawn_app, spawn_app_on,
    with_check_digit,
};

const HOST: &str = "b05.example.jp";

fn certificates(business_id: &str) -> String {
    format!("/api/v1/business-systems/{business_id}/certificates")
}

/// A new key (an `openssl genpkey` spec) and its CSR for `subject`, PEM.
fn csr(dir: &Path, name: &str, key_args: &[&str], subject: &str) -> String {
    let key = dir.join(format!("{name}.key"));
    let out = Command::new("openssl").arg("genpkey").args(key_args).arg("-out").arg(&key).output().unwrap();
    assert!(out.status.success(), "genpkey: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("openssl")
        .args(["req", "-new", "-utf8", "-key"])
        .arg(&key)
        .args(["-subj", subject])
        .output()
        .unwrap();
    assert!(out.status.success(), "req: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"];
const RSA2048: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
const ED25519: &[&str] = &["-algorithm", "ED25519"];

fn subject(cn: &str) -> String {
    format!("/C=JP/ST=東京都/L=南江戸市/O=南江戸市 情報政策課/OU=施設予約/CN={cn}")
}

/// POSTs a CSR as the body itself (`application/pkcs10`).
fn post_csr(app: &TestApp, path: &str, token: &str, pem: &str) -> impl Future<Output = Reply> + use<> {
    send(app.request(Method::POST, path, Some(token)).header("content-type", "application/pkcs10").body(pem.to_owned()))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The chain (issuing CA, root) and the current CRL as PEM files, fetched from the server now.
async fn fetch_trust(app: &TestApp, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let chain = app.get("/pki/ca.pem", None).await;
    assert_eq!(chain.status, StatusCode::OK);
    assert_eq!(chain.header("content-type"), Some("application/pem-certificate-chain"));
    let blocks: Vec<&str> = chain.text.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(blocks.len(), 2, "issuing CA and root: {}", chain.text);
    let crl = app.client.get(app.url("/pki/crl")).send().await.unwrap();
    assert_eq!(crl.headers()["content-type"], "application/pkix-crl");
    let der = crl.bytes().await.unwrap();
    let der_path = write(dir, "crl.der", &der);
    let pem_path = dir.join("crl.pem");
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(&der_path)
        .arg("-out")
        .arg(&pem_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl crl accepts the CRL: {}", String::from_utf8_lossy(&out.stderr));
    (write(dir, "issuing.pem", blocks[0].as_bytes()), write(dir, "root.pem", blocks[1].as_bytes()), pem_path)
}

/// `openssl verify -x509_strict -crl_check` of a PEM certificate with the server's chain and current CRL.
async fn verify(app: &TestApp, dir: &Path, certificate: &str, purpose: &str) -> (bool, String) {
    let (issuing, root, crl) = fetch_trust(app, dir).await;
    let cert = write(dir, "cert.pem", certificate.as_bytes());
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", purpose, "-crl_check", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&issuing)
        .arg("-CRLfile")
        .arg(&crl)
        .arg(&cert)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `openssl crl -text` of the current CRL.
async fn crl_text(app: &TestApp, dir: &Path) -> String {
    let (_, _, crl) = fetch_trust(app, dir).await;
    let out = Command::new("openssl").args(["crl", "-noout", "-text", "-in"]).arg(&crl).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A server with business system `05` registered (its URLs on `b05.example.jp`) and the admin's token.
async fn with_business_system(backend: Backend) -> (TestApp, String) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system("05", "施設予約")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    (app, admin)
}

async fn every_accepted_key_gets_a_certificate_that_openssl_verifies_until_it_is_revoked(backend: Backend) {
    let (app, admin) = with_business_system(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mut issued = vec![];
    for (name, key) in [("rsa2048", RSA2048), ("p256", P256), ("p384", P384), ("ed25519", ED25519)] {
        let pem = csr(dir.path(), name, key, &subject(HOST));
        // As the body itself for two of them, as JSON for the others: both are accepted.
        let reply = if name.starts_with('p') {
            post_csr(&app, &certificates("05"), &admin, &pem).await
        } else {
            app.post(&certificates("05"), Some(&admin), &json!({ "csr": pem })).await
        };
        assert_eq!(reply.status, StatusCode::CREATED, "{name}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["kind"], "business-server");
        assert_eq!(body["holder"], "05");
        assert_eq!(body["revoked"], false);
        let subject = body["subject"].as_str().unwrap();
        assert!(subject.contains(&format!("CN={HOST}")), "{subject}");
        let (ok, said) = verify(&app, dir.path(), body["certificate"].as_str().unwrap(), "sslserver").await;
        assert!(ok, "{name}: openssl verify: {said}");
        issued.push(body);
    }
    // The Japanese subject survives as UTF-8.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "utf8", "-in"])
        .arg(write(dir.path(), "shown.pem", issued[0]["certificate"].as_str().unwrap().as_bytes()))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("南江戸市 情報政策課"), "{:?}", out);

    let listed = app.get(&certificates("05"), Some(&admin)).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 4);

    // Revoke the P-256 one: the next CRL lists it with its reason, and openssl refuses it; the others still pass.
    let serial = issued[1]["serial"].as_str().unwrap();
    let path = format!("{}/{serial}/revoke", certificates("05"));
    let reply = app.post(&path, Some(&admin), &json!({ "reason": "keyCompromise" })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["revocation_reason"], "keyCompromise");
    let (ok, said) = verify(&app, dir.path(), issued[1]["certificate"].as_str().unwrap(), "sslserver").await;
    assert!(!ok && said.contains("certificate revoked"), "{said}");
    let (ok, said) = verify(&app, dir.path(), issued[2]["certificate"].as_str().unwrap(), "sslserver").await;
    assert!(ok, "{said}");
    let text = crl_text(&app, dir.path()).await;
    assert!(text.contains(&serial.to_uppercase()) && text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Next Update"), "{text}");

    // Revoking it again is refused, and writes nothing.
    let before = app.event_count().await;
    app.post(&path, Some(&admin), &json!({ "reason": "keyCompromise" }))
        .await
        .problem(StatusCode::CONFLICT, "/problems/certificate-revoked");
    assert_eq!(app.event_count().await, before);
}

async fn a_reissue_supersedes_the_old_certificate_in_one_step(backend: Backend) {
    let (app, admin) = with_business_system(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let first = post_csr(&app, &certificates("05"), &admin, &csr(dir.path(), "a", P256, &subject(HOST))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let old = first.json();
    let old_serial = old["serial"].as_str().unwrap();

    let path = format!("{}/{old_serial}/reissue", certificates("05"));
    let second = post_csr(&app, &path, &admin, &csr(dir.path(), "b", P384, &subject(HOST))).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let new = second.json();
    assert_ne!(new["serial"], old["serial"]);

    let shown = app.get(&format!("{}/{old_serial}", certificates("05")), Some(&admin)).await.json();
    assert_eq!(shown["revoked"], true);
    assert_eq!(shown["revocation_reason"], "superseded");
    let (ok, said) = verify(&app, dir.path(), old["certificate"].as_str().unwrap(), "sslserver").await;
    assert!(!ok && said.contains("certificate revoked"), "{said}");
    let (ok, said) = verify(&app, dir.path(), new["certificate"].as_str().unwrap(), "sslserver").await;
    assert!(ok, "{said}");
    assert!(crl_text(&app, dir.path()).await.contains("Superseded"));

    // The new one downloads as PEM with its chain: itself, the issuing CA, the root.
    let new_path = format!("{}/{}", certificates("05"), new["serial"].as_str().unwrap());
    let pem = app
        .send_with(Method::GET, &new_path, Some(&admin), &[("accept", "application/pem-certificate-chain")], None)
        .await;
    assert_eq!(pem.status, StatusCode::OK);
    assert_eq!(pem.header("content-type"), Some("application/pem-certificate-chain"));
    assert_eq!(pem.text.matches("-----BEGIN CERTIFICATE-----").count(), 3);
    assert!(pem.text.starts_with(new["certificate"].as_str().unwrap()));

    // The superseded one cannot be reissued again.
    app.post(&path, Some(&admin), &json!({ "csr": csr(dir.path(), "c", P256, &subject(HOST)) }))
        .await
        .problem(StatusCode::CONFLICT, "/problems/certificate-revoked");
}

async fn a_revoked_operator_has_his_certificates_revoked_as_affiliation_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let code = with_check_digit("13101");
    app.register_municipality(&admin, &code, "千代田区", 1).await;
    app.permit(&admin, "02", &code).await;
    let token = app.clerk_token(&admin, &code, "OP0501", &["02"]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = format!("/api/v1/municipalities/{code}/operators/OP0501/certificates");

    // He asks for his own certificate, with a key made on his terminal: it names him and his business system.
    let reply = post_csr(&app, &path, &token, &csr(dir.path(), "op", P256, "/CN=whatever")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let cert = reply.json();
    assert_eq!(cert["kind"], "operator");
    assert_eq!(cert["holder"], format!("{code}:OP0501"));
    assert!(cert["subject"].as_str().unwrap().contains("CN=OP0501"), "only the key is taken from the CSR: {cert}");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(write(dir.path(), "op.pem", cert["certificate"].as_str().unwrap().as_bytes()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("URI:urn:cardap:operator:{code}:OP0501")), "{text}");
    assert!(text.contains("URI:urn:cardap:business:02"), "{text}");
    let (ok, said) = verify(&app, dir.path(), cert["certificate"].as_str().unwrap(), "sslclient").await;
    assert!(ok, "{said}");

    // Another clerk may not ask for one in his name.
    let other = register_clerk(&app.state, &code, "OP0502").await.login(&app).await;
    post_csr(&app, &path, &other, &csr(dir.path(), "x", P256, "/CN=x"))
        .await
        .problem(StatusCode::FORBIDDEN, "/problems/forbidden");

    // Business system 02 is taken from him: the certificate naming it is revoked as privilegeWithdrawn.
    let operator = format!("/api/v1/municipalities/{code}/operators/OP0501");
    let changed = app.patch(&operator, Some(&admin), None, &json!({ "business_systems": [] })).await;
    assert!(changed.status.is_success(), "{}", changed.text);
    let text = crl_text(&app, dir.path()).await;
    let serial = cert["serial"].as_str().unwrap();
    assert!(text.contains(&serial.to_uppercase()) && text.contains("Privilege Withdrawn"), "{text}");

    // A new certificate (naming no business system), then the operator is revoked: it goes with him, in the
    // same transaction, as affiliationChanged.
    let token = app.login(Some(&code), "OP0501", "ClerkPassw0rd").await;
    let reply = post_csr(&app, &path, &token, &csr(dir.path(), "op2", P256, "/CN=whatever")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let second = reply.json();
    let revoke = app.post_empty(&format!("{operator}/revoke"), Some(&admin)).await;
    assert!(revoke.status.is_success(), "{}", revoke.text);
    let text = crl_text(&app, dir.path()).await;
    let serial = second["serial"].as_str().unwrap();
    assert!(text.contains(&serial.to_uppercase()) && text.contains("Affiliation Changed"), "{text}");
    let (ok, said) = verify(&app, dir.path(), second["certificate"].as_str().unwrap(), "sslclient").await;
    assert!(!ok && said.contains("certificate revoked"), "{said}");
    let listed = app.get(&path, Some(&admin)).await.json();
    let reasons: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|c| c["revocation_reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.contains(&"privilegeWithdrawn") && reasons.contains(&"affiliationChanged"), "{reasons:?}");
}

async fn bad_requests_get_a_clear_answer_and_nothing_is_issued(backend: Backend) {
    let (app, admin) = with_business_system(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let code = with_check_digit("13101");
    app.register_municipality(&admin, &code, "千代田区", 1).await;
    let other_code = with_check_digit("13102");
    app.register_municipality(&admin, &other_code, "中央区", 2).await;
    register_clerk(&app.state, &other_code, "OP0601").await;
    let clerk = register_clerk(&app.state, &code, "OP0501").await.login(&app).await;
    let before = app.event_count().await;

    // Not a CSR at all.
    let reply = post_csr(&app, &certificates("05"), &admin, "hello").await;
    let body = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-csr");
    assert!(body["detail"].as_str().unwrap().contains("証明書発行要求"), "{body}");
    // RSA-1024: too small, says what is accepted.
    let weak = csr(dir.path(), "weak", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], &subject(HOST));
    let reply = app
        .send_with(
            Method::POST,
            &certificates("05"),
            Some(&admin),
            &[("accept-language", "en")],
            Some(&json!({ "csr": weak })),
        )
        .await;
    let body = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-csr");
    assert!(body["detail"].as_str().unwrap().contains("at least 2048"), "{body}");
    // Ed448: an unsupported key.
    let ed448 = csr(dir.path(), "ed448", &["-algorithm", "ED448"], &subject(HOST));
    let body = post_csr(&app, &certificates("05"), &admin, &ed448)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-csr");
    assert!(body["detail"].as_str().unwrap().contains("Ed25519"), "{body}");
    // A signature that does not verify: one byte of the signed part changed.
    let good = csr(dir.path(), "good", P256, &subject(HOST));
    let der = STANDARD.decode(good.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let mut tampered = der.clone();
    let at = tampered.windows(HOST.len()).position(|w| w == HOST.as_bytes()).unwrap();
    tampered[at] = b'c';
    let reply = send(
        app.request(Method::POST, &certificates("05"), Some(&admin))
            .header("content-type", "application/pkcs10")
            .body(tampered),
    )
    .await;
    let body = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/invalid-csr");
    assert!(body["detail"].as_str().unwrap().contains("署名"), "{body}");
    // A CN that is not the business system's host.
    let stranger = csr(dir.path(), "stranger", P256, &subject("evil.example.com"));
    let body = post_csr(&app, &certificates("05"), &admin, &stranger)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/csr-subject-mismatch");
    assert!(body["detail"].as_str().unwrap().contains(HOST), "names the accepted host: {body}");
    // A body of another media type.
    send(
        app.request(Method::POST, &certificates("05"), Some(&admin))
            .header("content-type", "image/png")
            .body(good.clone()),
    )
    .await
    .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type");
    // No such business system, no such certificate, a serial that is no serial.
    post_csr(&app, &certificates("77"), &admin, &good).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.post(&format!("{}/4a01/revoke", certificates("05")), Some(&admin), &json!({}))
        .await
        .problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.get(&format!("{}/xyz", certificates("05")), Some(&admin))
        .await
        .problem(StatusCode::NOT_FOUND, "/problems/not-found");
    // A clerk issues no business server certificate.
    post_csr(&app, &certificates("05"), &clerk, &good).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    // Another municipality's operator: 404 before the body is read.
    let path = format!("/api/v1/municipalities/{other_code}/operators/OP0601/certificates");
    post_csr(&app, &path, &clerk, "not even a CSR").await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    assert_eq!(app.event_count().await, before, "nothing was written");

    // An unknown revocation reason is named.
    let issued = post_csr(&app, &certificates("05"), &admin, &good).await.json();
    let path = format!("{}/{}/revoke", certificates("05"), issued["serial"].as_str().unwrap());
    let reply = app.post(&path, Some(&admin), &json!({ "reason": "removeFromCRL" })).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(reply.error_fields(), ["/reason"]);
}

async fn a_restart_keeps_the_ca_whose_key_is_nowhere_in_clear(backend: Backend) {
    let (mut app, admin) = with_business_system(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let chain = app.get("/pki/ca.pem", None).await.text;
    let issued = post_csr(&app, &certificates("05"), &admin, &csr(dir.path(), "a", P256, &subject(HOST))).await.json();

    // The issuing key as sealed in ca_keys, opened with the master key: the PKCS#8 the server signs with.
    let credentials = CredentialStore::new(app.state.read.pool().clone());
    let sealed = credentials.sealed_ca_key("issuing").await.unwrap().expect("the issuing key is stored");
    let master = app.settings.master_key.clone().unwrap();
    let pkcs8 = master.open_secret("cardap-ca:issuing", &STANDARD.decode(&sealed).unwrap()).expect("it opens");
    assert!(!sealed.contains(&STANDARD.encode(&pkcs8)));
    // No event carries it, in any form.
    let mut after = Checkpoint::START;
    loop {
        let page = app.state.store.read_all(after, 1000, &ReadFilter::All).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        for event in &page {
            let text = event.payload.to_string();
            assert!(!text.contains(&STANDARD.encode(&pkcs8)) && !text.contains(&hex(&pkcs8)), "{}", event.event_type);
        }
    }
    // A SQLite database file holds no copy of it either.
    if let Some(file) =
        app.settings.database_url.strip_prefix("sqlite://").or(app.settings.database_url.strip_prefix("sqlite:"))
    {
        let file = file.split('?').next().unwrap();
        for path in [file.to_owned(), format!("{file}-wal")] {
            if let Ok(bytes) = std::fs::read(&path) {
                assert!(!bytes.windows(pkcs8.len()).any(|w| w == pkcs8.as_slice()), "{path} holds the key in clear");
            }
        }
    }

    // Restart on the same database: the same CA, and what it issued before still verifies.
    let settings = app.settings.clone();
    app.shut_down(Duration::from_secs(30)).await;
    let again = spawn_app_on(settings, None).await;
    assert_eq!(again.get("/pki/ca.pem", None).await.text, chain);
    let (ok, said) = verify(&again, dir.path(), issued["certificate"].as_str().unwrap(), "sslserver").await;
    assert!(ok, "{said}");
    let admin = again.admin_token().await;
    let reply = post_csr(&again, &certificates("05"), &admin, &csr(dir.path(), "b", P256, &subject(HOST))).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    drop(app);
}

/// An operator's certificate as a PKCS#12 bundle: the one-time password is answered once, the bundle opens with
/// it in openssl and holds a key, its certificate (verified) and the chain; a second download is 410.
async fn a_pkcs12_bundle_opens_with_its_one_time_password_and_downloads_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let code = with_check_digit("13101");
    app.register_municipality(&admin, &code, "千代田区", 1).await;
    let clerk = register_clerk(&app.state, &code, "OP0501").await.login(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let path = format!("/api/v1/municipalities/{code}/operators/OP0501/certificates/pkcs12");

    let reply = app.post_empty(&path, Some(&admin)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let issued = reply.json();
    let password = issued["one_time_password"].as_str().unwrap().to_owned();
    let download = issued["download"].as_str().unwrap().to_owned();
    assert!(password.len() >= 16);

    // The operator downloads it, once.
    let bundle = app.client.get(app.url(&download)).bearer_auth(&clerk).send().await.unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert_eq!(bundle.headers()["content-type"], "application/x-pkcs12");
    let p12 = write(dir.path(), "op.p12", &bundle.bytes().await.unwrap());
    app.get(&download, Some(&clerk)).await.problem(StatusCode::GONE, "/problems/pkcs12-gone");

    let open = |extra: &[&str]| {
        let out = Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(&p12)
            .args(["-passin", &format!("pass:{password}")])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl pkcs12 {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let certs = open(&["-nokeys"]);
    assert_eq!(certs.matches("-----BEGIN CERTIFICATE-----").count(), 3, "leaf, issuing CA, root");
    let key = open(&["-nocerts", "-nodes"]);
    assert!(key.contains("-----BEGIN PRIVATE KEY-----"));
    let leaf = open(&["-nokeys", "-clcerts"]);
    let leaf_pem = &leaf[leaf.find("-----BEGIN CERTIFICATE-----").unwrap()..];
    assert_eq!(leaf_pem.trim(), issued["certificate"]["certificate"].as_str().unwrap().trim());
    let (ok, said) = verify(&app, dir.path(), leaf_pem, "sslclient").await;
    assert!(ok, "{said}");
    // The key in the bundle is the certificate's.
    let key_file = write(dir.path(), "op.key", key.as_bytes());
    let public = |args: &[&str], file: &Path| {
        let out = Command::new("openssl").args(args).arg(file).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let cert_file = write(dir.path(), "leaf.pem", leaf_pem.as_bytes());
    assert_eq!(
        public(&["pkey", "-pubout", "-in"], &key_file),
        public(&["x509", "-noout", "-pubkey", "-in"], &cert_file)
    );
    // A wrong password does not open it; the one-time password is in no event.
    let out = Command::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(&p12)
        .args(["-passin", "pass:wrong", "-nokeys"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let mut after = Checkpoint::START;
    loop {
        let page = app.state.store.read_all(after, 1000, &ReadFilter::All).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        assert!(page.iter().all(|e| !e.payload.to_string().contains(&password) && !format!("{:?}", e.metadata).contains(&password)));
    }
}

/// SSL communication certificates for cardap's own endpoints: issued for the names given, verified by openssl as
/// server certificates, reissued (the old one superseded), deleted (revoked: cessationOfOperation).
async fn ssl_certificates_of_cardaps_endpoints_are_issued_reissued_and_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let dir = tempfile::tempdir().unwrap();
    let path = "/api/v1/tls-certificates/api";
    let body = |name: &str| {
        json!({
            "csr": csr(dir.path(), name, P256, "/CN=ignored"),
            "dns_names": ["cardap.example.lg.jp"], "ips": ["192.0.2.10"],
        })
    };
    let reply = app.post(path, Some(&admin), &body("a")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let first = reply.json();
    assert_eq!(first["kind"], "tls");
    assert_eq!(first["holder"], "api");
    let (ok, said) = verify(&app, dir.path(), first["certificate"].as_str().unwrap(), "sslserver").await;
    assert!(ok, "{said}");
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(write(dir.path(), "tls.pem", first["certificate"].as_str().unwrap().as_bytes()))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("DNS:cardap.example.lg.jp") && shown.contains("IP Address:192.0.2.10"), "{shown}");

    let reissue = format!("{path}/{}/reissue", first["serial"].as_str().unwrap());
    let reply = app.post(&reissue, Some(&admin), &body("b")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let second = reply.json();
    let one = format!("{path}/{}", second["serial"].as_str().unwrap());
    let reply = app.delete(&one, Some(&admin)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["revocation_reason"], "cessationOfOperation");
    app.delete(&one, Some(&admin)).await.problem(StatusCode::CONFLICT, "/problems/certificate-revoked");
    let text = crl_text(&app, dir.path()).await;
    assert!(text.contains("Superseded") && text.contains("Cessation Of Operation"), "{text}");
    let listed = app.get(path, Some(&admin)).await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    // Names that are none, and no name at all, are named in the answer; nothing is issued.
    let before = app.event_count().await;
    let reply = app
        .post(
            path,
            Some(&admin),
            &json!({ "csr": csr(dir.path(), "c", P256, "/CN=x"), "dns_names": ["bad name"], "ips": ["999.1.1.1"] }),
        )
        .await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(reply.error_fields(), ["/dns_names/0", "/ips/0"]);
    let reply = app.post(path, Some(&admin), &json!({ "csr": csr(dir.path(), "d", P256, "/CN=x") })).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    app.post("/api/v1/tls-certificates/Not_An_Endpoint", Some(&admin), &body("e"))
        .await
        .problem(StatusCode::NOT_FOUND, "/problems/not-found");
    assert_eq!(app.event_count().await, before);
}

/// Nodes starting at once on a fresh database make one CA between them, and serve the same chain.
async fn nodes_starting_at_once_share_one_ca(backend: Backend) {
    let (url, dir) = backend.fresh_database().await;
    let settings = Settings::for_tests(url);
    cardap_api::app::open_database(&settings).await.expect("migrated");
    let (a, b, c) = tokio::join!(
        spawn_app_on(settings.clone(), None),
        spawn_app_on(settings.clone(), None),
        spawn_app_on(settings.clone(), None),
    );
    let chain = a.get("/pki/ca.pem", None).await.text;
    assert_eq!(b.get("/pki/ca.pem", None).await.text, chain);
    assert_eq!(c.get("/pki/ca.pem", None).await.text, chain);
    let mut created = 0;
    let mut after = Checkpoint::START;
    loop {
        let page = a.state.store.read_all(after, 1000, &ReadFilter::All).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.checkpoint;
        created += page.iter().filter(|e| e.event_type == "CaCreated").count();
    }
    assert_eq!(created, 1);
    drop((a, b, c, dir));
}

/// The `Last Update`, `Next Update` and `CRL Number` lines of `openssl crl -text`.
fn crl_dates(text: &str) -> (String, String, String) {
    let line = |key: &str| {
        let at = text.find(key).unwrap_or_else(|| panic!("no {key}: {text}"));
        text[at + key.len()..].lines().next().unwrap().trim().to_owned()
    };
    let number_at = text.find("X509v3 CRL Number:").unwrap();
    let number = text[number_at..].lines().nth(1).unwrap().trim().to_owned();
    (line("Last Update:"), line("Next Update:"), number)
}

/// The CRL says when the next one is due (24 h by default) and is made anew, with a greater number, once half of
/// that has passed — before it runs out — even without a revocation.
async fn the_crl_is_made_anew_before_it_runs_out(backend: Backend) {
    let app = cardap_tests::spawn_app_with_clock(backend, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (last, next, number) = crl_dates(&crl_text(&app, dir.path()).await);
    assert_ne!(last, next);
    // Within the first half: the same CRL.
    app.advance(Duration::from_secs(11 * 3600));
    assert_eq!(crl_dates(&crl_text(&app, dir.path()).await), (last.clone(), next.clone(), number.clone()));
    // Past it: a new one, numbered higher, valid for another 24 h from now.
    app.advance(Duration::from_secs(2 * 3600));
    let (last2, next2, number2) = crl_dates(&crl_text(&app, dir.path()).await);
    assert_ne!(last2, last);
    assert_ne!(next2, next);
    let n = |hex: &str| u128::from_str_radix(&hex.replace(':', ""), 16).unwrap();
    assert!(n(&number2) > n(&number), "{number2} after {number}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

on_both_backends!(
    every_accepted_key_gets_a_certificate_that_openssl_verifies_until_it_is_revoked,
    a_reissue_supersedes_the_old_certificate_in_one_step,
    a_revoked_operator_has_his_certificates_revoked_as_affiliation_changed,
    bad_requests_get_a_clear_answer_and_nothing_is_issued,
    a_restart_keeps_the_ca_whose_key_is_nowhere_in_clear,
    nodes_starting_at_once_share_one_ca,
    a_pkcs12_bundle_opens_with_its_one_time_password_and_downloads_once,
    ssl_certificates_of_cardaps_endpoints_are_issued_reissued_and_deleted,
    the_crl_is_made_anew_before_it_runs_out,
);
