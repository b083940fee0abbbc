//! The internal CA's signing (rcgen): a root and an issuing (intermediate) CA, certificates for a public key
//! under a profile per kind, and CRLs. Owns the profiles: what each kind of certificate says and may do.
//!
//! Layout: a root (P-384, 20 years, no path length limit) signs one issuing CA (P-256, 10 years, path length 0),
//! which signs every end-entity certificate and every CRL; so the root's key can be kept off the server once
//! the issuing CA exists. Every certificate gets a random 128-bit serial and explicit validity (rcgen's defaults
//! are a hash of the key and 1975–4096). From a request only the public key is used (`spki_der`, checked by
//! [`super::csr`]); the subject and every extension come from the profile.
//!
//! An operator certificate names its holder twice: `CN=<operator ID>, OU=<municipality code>` (`OU=system` for
//! the system administrator), and SAN URIs `urn:cardap:operator:<municipality code or system>:<operator ID>`
//! and `urn:cardap:business:<business ID>` for each business system he was permitted when it was issued.
//!
//! Private keys never print (`Debug` elides them) and leave this module only as PKCS#8 for sealing.

use std::net::IpAddr;

use cardap_domain::MunicipalityCode;
use cardap_domain::operator::OperatorId;
use chrono::{DateTime, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, RevocationReason, RevokedCertParams, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::CertificateDer;

use super::csr::SubjectAttribute;

const DAY: i64 = 24 * 60 * 60;
/// The SAN URI prefix that names an operator in his certificate.
const OPERATOR_URI: &str = "urn:cardap:operator:";
/// Backdating of `notBefore`, for clocks of relying parties that run a little slow.
const BACKDATE: i64 = 5 * 60;

/// Why signing failed: a broken key or certificate (never the caller's input, which was checked before).
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the CA cannot sign: {0}")]
    Signing(String),
    #[error("the stored CA certificate or key cannot be read: {0}")]
    Corrupt(String),
}

fn signing(e: impl std::fmt::Display) -> CaError {
    CaError::Signing(e.to_string())
}

/// A certificate serial: 16 random bytes, positive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    pub fn random() -> Result<Serial, CaError> {
        let mut bytes = [0_u8; 16];
        getrandom::fill(&mut bytes).map_err(signing)?;
        // Positive (DER INTEGER) and of full length.
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Ok(Serial(bytes.to_vec()))
    }

    pub fn from_hex(hex_str: &str) -> Option<Serial> {
        hex::decode(hex_str).ok().filter(|b| !b.is_empty() && b.len() <= 20).map(Serial)
    }

    /// Lower-case hex, as `openssl x509 -serial` prints it (but lower case).
    pub fn hex(&self) -> String {
        hex::encode(&self.0)
    }

    fn rcgen(&self) -> SerialNumber {
        SerialNumber::from_slice(&self.0)
    }
}

/// What a certificate is for, and who holds it.
#[derive(Debug, Clone)]
pub enum Profile {
    /// オペレータ証明書: authenticates one operator to cardap (client authentication).
    Operator {
        /// `None`: the system administrator.
        municipality: Option<String>,
        operator_id: String,
        business_ids: Vec<String>,
    },
    /// 業務サーバ証明書: a business system's server; also its client certificate towards cardap.
    BusinessServer { subject: Vec<SubjectAttribute>, dns_names: Vec<String> },
    /// SSL通信用証明書: one of cardap's own TLS endpoints.
    Tls { dns_names: Vec<String>, ips: Vec<IpAddr> },
}

impl Profile {
    fn validity_days(&self) -> i64 {
        match self {
            Profile::Operator { .. } => 730,
            Profile::BusinessServer { .. } | Profile::Tls { .. } => 397,
        }
    }

    fn params(&self) -> Result<CertificateParams, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        match self {
            Profile::Operator { municipality, operator_id, business_ids } => {
                let place = municipality.as_deref().unwrap_or("system");
                dn.push(DnType::CommonName, operator_id.as_str());
                dn.push(DnType::OrganizationalUnitName, place);
                params.subject_alt_names.push(uri(&format!("{OPERATOR_URI}{place}:{operator_id}"))?);
                for business_id in business_ids {
                    params.subject_alt_names.push(uri(&format!("urn:cardap:business:{business_id}"))?);
                }
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Profile::BusinessServer { subject, dns_names } => {
                for attribute in subject {
                    if let Some(kind) = dn_type(&attribute.name) {
                        dn.push(kind, attribute.value.as_str());
                    }
                }
                for name in dns_names {
                    params.subject_alt_names.push(dns(name)?);
                }
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
                params.extended_key_usages =
                    vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            }
            Profile::Tls { dns_names, ips } => {
                let first = dns_names.first().map(String::as_str).unwrap_or("cardap");
                dn.push(DnType::CommonName, first);
                for name in dns_names {
                    params.subject_alt_names.push(dns(name)?);
                }
                params.subject_alt_names.extend(ips.iter().copied().map(SanType::IpAddress));
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        Ok(params)
    }
}

fn uri(s: &str) -> Result<SanType, CaError> {
    Ok(SanType::URI(s.try_into().map_err(signing)?))
}

fn dns(s: &str) -> Result<SanType, CaError> {
    Ok(SanType::DnsName(s.try_into().map_err(signing)?))
}

fn dn_type(name: &str) -> Option<DnType> {
    Some(match name {
        "CN" => DnType::CommonName,
        "C" => DnType::CountryName,
        "ST" => DnType::StateOrProvinceName,
        "L" => DnType::LocalityName,
        "O" => DnType::OrganizationName,
        "OU" => DnType::OrganizationalUnitName,
        _ => return None,
    })
}

/// Why a certificate was revoked (RFC 5280 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    /// The holder's affiliation changed: an operator revoked, a business system retired.
    AffiliationChanged,
    /// Replaced by a reissued certificate.
    Superseded,
    CessationOfOperation,
    /// A permission the certificate names was withdrawn.
    PrivilegeWithdrawn,
}

impl Reason {
    fn rcgen(self) -> RevocationReason {
        match self {
            Reason::Unspecified => RevocationReason::Unspecified,
            Reason::KeyCompromise => RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => RevocationReason::AffiliationChanged,
            Reason::Superseded => RevocationReason::Superseded,
            Reason::CessationOfOperation => RevocationReason::CessationOfOperation,
            Reason::PrivilegeWithdrawn => RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub serial: Serial,
    pub at: DateTime<Utc>,
    pub reason: Reason,
}

/// A CA certificate with its private key.
#[derive(Debug)]
pub struct CaKey {
    cert_der: Vec<u8>,
    key: KeyPair,
}

/// The two CAs of a new installation.
#[derive(Debug)]
pub struct NewCa {
    pub root: CaKey,
    pub issuing: CaKey,
}

/// Creates a root CA and the issuing CA under it, named after `name` (the installation: `cardap 東京都共同利用`).
pub fn create(name: &str, now: DateTime<Utc>) -> Result<NewCa, CaError> {
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(signing)?;
    let mut root = ca_params(&format!("{name} Root CA"), now, 20 * 365, BasicConstraints::Unconstrained)?;
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).map_err(signing)?;
    let root_issuer = Issuer::new(root, &root_key);

    let issuing_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing)?;
    let mut issuing = ca_params(&format!("{name} Issuing CA"), now, 10 * 365, BasicConstraints::Constrained(0))?;
    issuing.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let issuing_cert = issuing.signed_by(&issuing_key, &root_issuer).map_err(signing)?;
    Ok(NewCa {
        root: CaKey { cert_der: root_cert.der().to_vec(), key: root_key },
        issuing: CaKey { cert_der: issuing_cert.der().to_vec(), key: issuing_key },
    })
}

fn ca_params(
    common_name: &str,
    now: DateTime<Utc>,
    days: i64,
    constraints: BasicConstraints,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "cardap");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(constraints);
    params.serial_number = Some(Serial::random()?.rcgen());
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = validity(now, days)?;
    Ok(params)
}

fn validity(now: DateTime<Utc>, days: i64) -> Result<(time::OffsetDateTime, time::OffsetDateTime), CaError> {
    let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map_err(signing);
    let now = now.timestamp();
    Ok((at(now - BACKDATE)?, at(now + days * DAY)?))
}

impl CaKey {
    /// A CA stored earlier: its certificate (DER) and its key (PKCS#8 DER, as [`CaKey::key_pkcs8`] gave it).
    pub fn from_parts(cert_der: Vec<u8>, key_pkcs8: &[u8]) -> Result<CaKey, CaError> {
        let key = KeyPair::try_from(key_pkcs8).map_err(|e| CaError::Corrupt(e.to_string()))?;
        Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), &key)
            .map_err(|e| CaError::Corrupt(e.to_string()))?;
        Ok(CaKey { cert_der, key })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert_der)
    }

    /// The private key as PKCS#8 DER: only to be sealed under the master key, never written or shown in clear.
    pub fn key_pkcs8(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&CertificateDer::from(self.cert_der.as_slice()), &self.key)
            .map_err(|e| CaError::Corrupt(e.to_string()))
    }

    /// Signs a certificate for the public key `spki_der` under `profile`, valid from `now`; its DER.
    pub fn issue(
        &self,
        spki_der: &[u8],
        profile: &Profile,
        serial: &Serial,
        crl_url: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, CaError> {
        let public_key = SubjectPublicKeyInfo::from_der(spki_der).map_err(signing)?;
        let mut params = profile.params()?;
        params.serial_number = Some(serial.rcgen());
        (params.not_before, params.not_after) = validity(now, profile.validity_days())?;
        if let Some(url) = crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.to_owned()] }];
        }
        let cert = params.signed_by(&public_key, &self.issuer()?).map_err(signing)?;
        Ok(cert.der().to_vec())
    }

    /// A CRL of `revoked`, numbered `number` (one more than the last), valid from `now` until `next_update`; its
    /// DER.
    pub fn crl(
        &self,
        revoked: &[Revoked],
        number: u64,
        now: DateTime<Utc>,
        next_update: DateTime<Utc>,
    ) -> Result<Vec<u8>, CaError> {
        let at = |t: DateTime<Utc>| time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(signing);
        let params = CertificateRevocationListParams {
            this_update: at(now)?,
            next_update: at(next_update)?,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| {
                    Ok(RevokedCertParams {
                        serial_number: r.serial.rcgen(),
                        revocation_time: at(r.at)?,
                        reason_code: Some(r.reason.rcgen()),
                        invalidity_date: None,
                    })
                })
                .collect::<Result<_, CaError>>()?,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer()?).map_err(signing)?.der().to_vec())
    }
}

/// The operator an operator certificate names in its SAN URI `urn:cardap:operator:<municipality code or
/// system>:<operator ID>` (its `OU` and `CN` say the same, but the URI is what cardap reads). `None` for any
/// other certificate, or one that cannot be read. Says nothing of the certificate's validity: the TLS listener
/// checked that.
pub fn operator_named_by(der: &[u8]) -> Option<(Option<MunicipalityCode>, OperatorId)> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| {
        let GeneralName::URI(uri) = name else { return None };
        let rest = uri.strip_prefix(OPERATOR_URI)?;
        let (place, operator_id) = rest.split_once(':')?;
        let municipality = match place {
            "system" => None,
            code => Some(MunicipalityCode::parse(code).ok()?),
        };
        Some((municipality, OperatorId::parse(operator_id).ok()?))
    })
}

/// `der` as a PEM block of `label`.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
