//! The CA's signing core, checked by an independent implementation: every certificate and CRL is handed to the
//! `openssl` command line (`verify -x509_strict -crl_check`), and the requests are made by `openssl req` for every
//! accepted key type, as a business system or a terminal would make them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use cardap_commands::pki::ca::{self, CaKey, Profile, Reason, Revoked, Serial};
use cardap_commands::pki::csr::{self, CsrError, KeyKind};
use chrono::{Duration, Utc};

/// `openssl req` for a new key of `kind` (an `openssl genpkey` algorithm spec) and `subject`; the PEM request.
fn request(dir: &Path, name: &str, key_args: &[&str], subject: &str) -> Vec<u8> {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let status = Command::new("openssl").arg("genpkey").args(key_args).arg("-out").arg(&key).output().unwrap();
    assert!(status.status.success(), "genpkey {key_args:?}: {}", String::from_utf8_lossy(&status.stderr));
    let out = Command::new("openssl")
        .args(["req", "-new", "-utf8", "-key"])
        .arg(&key)
        .args(["-subj", subject, "-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(out.status.success(), "req: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&csr).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `openssl verify -x509_strict` of `cert` against the root, through the issuing CA, checking `crl`.
fn verify(dir: &Path, root: &CaKey, issuing: &CaKey, crl: &[u8], cert: &[u8], purpose: &str) -> (bool, String) {
    let root_pem = write(dir, "root.pem", &root.cert_pem());
    let issuing_pem = write(dir, "issuing.pem", &issuing.cert_pem());
    let crl_pem = write(dir, "crl.pem", &ca::pem("X509 CRL", crl));
    let cert_pem = write(dir, "cert.pem", &ca::pem("CERTIFICATE", cert));
    let out = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", purpose, "-crl_check", "-CAfile"])
        .arg(&root_pem)
        .arg("-untrusted")
        .arg(&issuing_pem)
        .arg("-CRLfile")
        .arg(&crl_pem)
        .arg(&cert_pem)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

fn text_of(dir: &Path, cert: &[u8]) -> String {
    let path = write(dir, "shown.pem", &ca::pem("CERTIFICATE", cert));
    let out = Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn certificates_from_requests_of_every_accepted_key_verify_with_openssl_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let new = ca::create("cardap テスト", now).unwrap();
    let (root, issuing) = (new.root, new.issuing);
    let empty_crl = issuing.crl(&[], 1, now, now + Duration::days(7)).unwrap();

    let keys: [(&str, &[&str], KeyKind); 4] = [
        ("rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], KeyKind::Rsa { bits: 2048 }),
        ("p256", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], KeyKind::EcdsaP256),
        ("p384", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], KeyKind::EcdsaP384),
        ("ed25519", &["-algorithm", "ED25519"], KeyKind::Ed25519),
    ];
    let mut issued = vec![];
    for (name, args, kind) in keys {
        let csr = csr::parse(&request(dir.path(), name, args, "/C=JP/O=千代田区/OU=図書館/CN=lib.example.jp")).unwrap();
        assert_eq!(csr.key, kind, "{name}");
        assert_eq!(csr.subject_value("CN"), Some("lib.example.jp"));
        assert_eq!(csr.subject_value("O"), Some("千代田区"));
        let profile =
            Profile::BusinessServer { subject: csr.subject.clone(), dns_names: vec!["lib.example.jp".into()] };
        let serial = Serial::random().unwrap();
        let cert = issuing.issue(&csr.spki_der, &profile, &serial, Some("http://cardap.example/pki/crl"), now).unwrap();
        let (ok, said) = verify(dir.path(), &root, &issuing, &empty_crl, &cert, "sslserver");
        assert!(ok, "{name}: {said}");
        let text = text_of(dir.path(), &cert);
        assert!(text.contains("TLS Web Server Authentication") && text.contains("TLS Web Client Authentication"));
        assert!(text.contains("http://cardap.example/pki/crl"), "{text}");
        issued.push((name, serial, cert));
    }

    // Revoking one: the next CRL names it, openssl refuses it, and the others still verify.
    let (name, serial, cert) = &issued[1];
    let revoked = [Revoked { serial: serial.clone(), at: now, reason: Reason::KeyCompromise }];
    let crl = issuing.crl(&revoked, 2, now, now + Duration::days(7)).unwrap();
    let (ok, said) = verify(dir.path(), &root, &issuing, &crl, cert, "sslserver");
    assert!(!ok && said.contains("revoked"), "{name} after revocation: {said}");
    let (ok, said) = verify(dir.path(), &root, &issuing, &crl, &issued[0].2, "sslserver");
    assert!(ok, "{said}");
    let crl_pem = write(dir.path(), "crl-text.pem", &ca::pem("X509 CRL", &crl));
    let out = Command::new("openssl").args(["crl", "-noout", "-text", "-in"]).arg(&crl_pem).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("Next Update") && text.contains("Key Compromise"), "{text}");
    assert!(text.to_lowercase().contains(&serial.hex()), "{text}");
}

#[test]
fn an_operator_certificate_names_him_and_his_business_systems_for_client_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let now = Utc::now();
    let new = ca::create("cardap", now).unwrap();
    let csr = csr::parse(&request(
        dir.path(),
        "op",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=anything",
    ))
    .unwrap();
    let profile = Profile::Operator {
        municipality: Some("131016".into()),
        operator_id: "OP0501".into(),
        business_ids: vec!["01".into(), "02".into()],
    };
    let cert = new.issuing.issue(&csr.spki_der, &profile, &Serial::random().unwrap(), None, now).unwrap();
    let crl = new.issuing.crl(&[], 1, now, now + Duration::days(1)).unwrap();
    let (ok, said) = verify(dir.path(), &new.root, &new.issuing, &crl, &cert, "sslclient");
    assert!(ok, "{said}");
    let (ok, _) = verify(dir.path(), &new.root, &new.issuing, &crl, &cert, "sslserver");
    assert!(!ok, "an operator certificate must not serve as a server certificate");
    let text = text_of(dir.path(), &cert);
    // The subject is the profile's, not the request's.
    assert!(text.contains("CN = OP0501") && text.contains("OU = 131016") && !text.contains("anything"), "{text}");
    for uri in ["urn:cardap:operator:131016:OP0501", "urn:cardap:business:01", "urn:cardap:business:02"] {
        assert!(text.contains(uri), "{uri} missing: {text}");
    }
    // The listener's side: the operator it names.
    let (municipality, operator_id) = cardap_commands::pki::operator_named_by(&cert).unwrap();
    assert_eq!(municipality.unwrap().as_str(), "131016");
    assert_eq!(operator_id.as_str(), "OP0501");
    let admin = Profile::Operator { municipality: None, operator_id: "admin".into(), business_ids: vec![] };
    let cert = new.issuing.issue(&csr.spki_der, &admin, &Serial::random().unwrap(), None, now).unwrap();
    let (municipality, operator_id) = cardap_commands::pki::operator_named_by(&cert).unwrap();
    assert!(municipality.is_none() && operator_id.as_str() == "admin");
    // A business server's certificate names no operator.
    let server = Profile::BusinessServer { subject: vec![], dns_names: vec!["lib.example.jp".into()] };
    let cert = new.issuing.issue(&csr.spki_der, &server, &Serial::random().unwrap(), None, now).unwrap();
    assert!(cardap_commands::pki::operator_named_by(&cert).is_none());
}

#[test]
fn the_issuing_ca_survives_being_stored_and_read_back() {
    let now = Utc::now();
    let new = ca::create("cardap", now).unwrap();
    let again = CaKey::from_parts(new.issuing.cert_der().to_vec(), &new.issuing.key_pkcs8()).unwrap();
    let crl = again.crl(&[], 1, now, now + Duration::days(1)).unwrap();
    assert!(!crl.is_empty());
    assert!(!format!("{again:?}").contains(&format!("{:?}", new.issuing.key_pkcs8())), "a key was printed");
    assert!(CaKey::from_parts(new.issuing.cert_der().to_vec(), b"not a key").is_err());
}

#[test]
fn unacceptable_requests_are_refused_saying_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let weak = request(dir.path(), "weak", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"], "/CN=x");
    assert_eq!(csr::parse(&weak).unwrap_err(), CsrError::WeakRsa(1024));
    let k1 = request(dir.path(), "k1", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1"], "/CN=x");
    assert!(matches!(csr::parse(&k1), Err(CsrError::UnsupportedKey(_))));
    // An RSA-PSS signature.
    let key = dir.path().join("pss.key");
    Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .output()
        .unwrap();
    let pss = dir.path().join("pss.csr");
    let out = Command::new("openssl")
        .args(["req", "-new", "-subj", "/CN=x", "-sigopt", "rsa_padding_mode:pss", "-key"])
        .arg(&key)
        .arg("-out")
        .arg(&pss)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let refused = csr::parse(&std::fs::read(&pss).unwrap()).unwrap_err();
    assert!(matches!(refused, CsrError::UnsupportedSignature(ref s) if s.contains("RSA-PSS")), "{refused:?}");
    assert!(refused.to_string().contains("not RSA-PSS"));
    // A request whose signature does not match its content (one byte of the subject changed).
    let good = request(dir.path(), "good", &["-algorithm", "ED25519"], "/CN=abcdef");
    let text = String::from_utf8(good).unwrap();
    let der = {
        use base64::Engine;
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    };
    let mut tampered = der.clone();
    let at = tampered.windows(6).position(|w| w == b"abcdef").unwrap();
    tampered[at] = b'x';
    assert_eq!(csr::parse(&tampered).unwrap_err(), CsrError::BadSignature);
    assert!(csr::parse(&der).is_ok());
    assert_eq!(csr::parse(b"hello").unwrap_err(), CsrError::Unreadable);
}
