//! Certificate signing requests (証明書発行要求ファイル): read from PEM or DER, their signature verified, and only
//! what an issuer may take from them kept — the public key and the subject. Owns which shapes are accepted and
//! the message for each that is not.
//!
//! Accepted keys: RSA of 2048 bits or more (signed PKCS#1 v1.5 with SHA-256, -384 or -512), ECDSA P-256 and
//! P-384 (signed with SHA-256 or SHA-384), Ed25519. Refused: RSA-PSS and SHA-1 signatures, smaller RSA keys, other
//! curves and key types. Requested extensions are ignored: the issuing profile alone decides what a certificate
//! may do (not rcgen's own CSR reader, which refuses unknown extensions and takes the key's algorithm from the
//! signature's).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION, OID_PKCS1_SHA256WITHRSA,
    OID_PKCS1_SHA384WITHRSA, OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ED25519, Oid,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// The smallest RSA key accepted.
pub const MIN_RSA_BITS: usize = 2048;

/// The kind of key a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

/// One attribute of the requested subject, as written (`CN`, `O`, `OU`, `C`, `ST`, `L`; others by their OID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectAttribute {
    pub name: String,
    pub value: String,
}

/// A request whose signature verified: the subject it asks for and its public key.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub subject: Vec<SubjectAttribute>,
    /// The DER `SubjectPublicKeyInfo`: the only part of the request a certificate takes as it is.
    pub spki_der: Vec<u8>,
    pub key: KeyKind,
}

impl CheckedCsr {
    /// The value of the first subject attribute `name` (`CN`, `O` …).
    pub fn subject_value(&self, name: &str) -> Option<&str> {
        self.subject.iter().find(|a| a.name == name).map(|a| a.value.as_str())
    }
}

/// Why a request was refused; each says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("not a certificate signing request (PEM `CERTIFICATE REQUEST` or DER, PKCS#10)")]
    Unreadable,
    #[error("the request's signature does not verify with its own key")]
    BadSignature,
    #[error("unsupported key {0}: RSA of 2048 bits or more, ECDSA P-256 or P-384, or Ed25519 are accepted")]
    UnsupportedKey(String),
    #[error("an RSA key of {0} bits is too small: at least 2048 bits")]
    WeakRsa(usize),
    #[error(
        "unsupported signature {0}: RSA PKCS#1 v1.5 with SHA-256/384/512, ECDSA with SHA-256/384, or Ed25519 \
         are accepted (not RSA-PSS, not SHA-1)"
    )]
    UnsupportedSignature(String),
    #[error("the subject cannot be read: {0}")]
    Subject(String),
}

/// Reads a request from PEM (`-----BEGIN CERTIFICATE REQUEST-----`, also `NEW CERTIFICATE REQUEST`) or DER.
pub fn parse(input: &[u8]) -> Result<CheckedCsr, CsrError> {
    let der = match std::str::from_utf8(input).ok().filter(|s| s.contains("-----BEGIN")) {
        Some(text) => pem_body(text).ok_or(CsrError::Unreadable)?,
        None => input.to_vec(),
    };
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|_| CsrError::Unreadable)?;
    if !rest.is_empty() {
        return Err(CsrError::Unreadable);
    }
    let info = &csr.certification_request_info;
    let key = key_kind(&info.subject_pki)?;
    let signature = &csr.signature_algorithm.algorithm;
    if !signature_accepted(signature, key) {
        return Err(CsrError::UnsupportedSignature(signature_name(signature)));
    }
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    let mut subject = vec![];
    for attribute in info.subject.iter_attributes() {
        let value = attribute.as_str().map_err(|e| CsrError::Subject(e.to_string()))?;
        subject.push(SubjectAttribute { name: attribute_name(attribute.attr_type()), value: value.to_owned() });
    }
    Ok(CheckedCsr { subject, spki_der: info.subject_pki.raw.to_vec(), key })
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CsrError> {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => return Err(CsrError::Unreadable),
        };
        return if bits >= MIN_RSA_BITS { Ok(KeyKind::Rsa { bits }) } else { Err(CsrError::WeakRsa(bits)) };
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => Ok(KeyKind::EcdsaP256),
            Some(c) if c == OID_NIST_EC_P384 => Ok(KeyKind::EcdsaP384),
            Some(c) => Err(CsrError::UnsupportedKey(format!("ECDSA on curve {c}"))),
            None => Err(CsrError::UnsupportedKey("ECDSA without a named curve".into())),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return Ok(KeyKind::Ed25519);
    }
    Err(CsrError::UnsupportedKey(algorithm.to_id_string()))
}

fn signature_accepted(signature: &Oid<'_>, key: KeyKind) -> bool {
    match key {
        KeyKind::Rsa { .. } => {
            *signature == OID_PKCS1_SHA256WITHRSA
                || *signature == OID_PKCS1_SHA384WITHRSA
                || *signature == OID_PKCS1_SHA512WITHRSA
        }
        KeyKind::EcdsaP256 | KeyKind::EcdsaP384 => {
            *signature == OID_SIG_ECDSA_WITH_SHA256 || *signature == OID_SIG_ECDSA_WITH_SHA384
        }
        KeyKind::Ed25519 => *signature == OID_SIG_ED25519,
    }
}

fn signature_name(oid: &Oid<'_>) -> String {
    let known = [
        ("1.2.840.113549.1.1.10", "RSA-PSS"),
        ("1.2.840.113549.1.1.5", "RSA with SHA-1"),
        ("1.2.840.10045.4.1", "ECDSA with SHA-1"),
        ("1.2.840.10045.4.3.4", "ECDSA with SHA-512"),
    ];
    let id = oid.to_id_string();
    known.iter().find(|(k, _)| *k == id).map_or(id.clone(), |(_, name)| format!("{name} ({id})"))
}

fn attribute_name(oid: &Oid<'_>) -> String {
    let id = oid.to_id_string();
    let name = match id.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.5" => "serialNumber",
        _ => return id,
    };
    name.to_owned()
}

/// The DER inside the first `CERTIFICATE REQUEST` PEM block.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let mut inside = false;
    let mut body = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            inside = line.contains("CERTIFICATE REQUEST");
            continue;
        }
        if line.starts_with("-----END") {
            if inside {
                return base64::engine::general_purpose::STANDARD.decode(body.as_bytes()).ok();
            }
            continue;
        }
        if inside {
            body.push_str(line);
        }
    }
    None
}
