//! The certificate use cases (手引き I 2.1, 2.2): the CA of the installation (created once, its keys sealed under
//! the master key in the transaction of `CaCreated`, unsealed at start), business server certificates
//! (業務サーバ証明書) and operator certificates (オペレータ証明書) issued from CSRs (an operator's also as a PKCS#12
//! bundle under a one-time password), SSL communication certificates (SSL通信用証明書) for cardap's own endpoints,
//! looked up, revoked and reissued, the chain and the CRL. Owns the rule that ties a CSR's subject to a business system, and the CRL cache.
//!
//! The subject rule for a business server certificate: the CSR's `CN` must be the host name of one of the
//! business system's URLs (業務トップURL, オペレータ管理URL, パーソナライズURL, 業務画像), compared without case;
//! `C`, `ST`, `L`, `O` and `OU` are taken from the (verified) CSR as written, anything else in its subject is
//! dropped; the certificate's SAN is the `CN` as a DNS name. An operator certificate takes nothing from the CSR
//! but its public key: its subject and SANs name the operator (see [`super::ca`]).
//!
//! The CRL is made from the read model on demand and kept until the revoked set changes or half of its validity
//! has passed; its `crlNumber` is the generation time in seconds, and always one more than the last this node
//! made when two generations fall in the same second. A revocation waits for the read model before it answers,
//! so the next `GET /pki/crl` lists it.
//!
//! Must not: log or return a private key; issue anything when a check fails (every refusal comes before the one
//! append that records the certificate).
//!
//! Length: the CA's start-up (create or unseal), the PKCS#12 bundles, SSL communication certificates and the
//! cascades (an operator revoked, a permission removed) sit beside the use cases they serve; splitting them would
//! spread one small service over files that all need its private parts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_domain::certificate::{
    AUTHORITY_STREAM_KEY, AuthorityCommand, Certificate, CertificateAuthority, CertificateCommand, CertificateError,
    CertificateSerial, Holder, IssuedCertificate, RevocationReason,
};
use cardap_domain::operator::OperatorId;
use cardap_domain::{Aggregate, BusinessId, MunicipalityCode, OperatorKey, Timestamp};
use cardap_projections::certificates::{self as view, CertificateRow};
use cardap_projections::{ReadModels, business_systems, operators};
use cardap_store::{CommandId, Companion, CredentialStore, EventStore, MasterKey, StreamId};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ca::{self, CaKey, Profile, Reason, Revoked, Serial};
use super::csr::{self, CsrError};
use crate::authz::{Permission, authorize};
use crate::engine::{Tx, transact};
use crate::{Clock, CommandContext, CommandError, Views};

const CA_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7264_6170_4341_696e_6974_0000_0001);
/// The AAD of each sealed key: what it is, so a sealed value cannot be swapped for the other.
const ISSUING_LABEL: &str = "cardap-ca:issuing";
const ROOT_LABEL: &str = "cardap-ca:root";

type Result<T, E = PkiError> = std::result::Result<T, CommandError<E>>;

/// Why a certificate request was refused; each says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The CSR's subject does not name the business system.
    #[error(
        "the request's CN {found:?} is not the host of one of the business system's URLs: expected one of {}",
        expected.join(", ")
    )]
    SubjectMismatch { found: String, expected: Vec<String> },
    #[error("the business system has been retired: it gets no certificate")]
    BusinessSystemRetired,
    #[error("the operator has been revoked: he gets no certificate")]
    OperatorRevoked,
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("the CA is not set up on this server (run `cardap ca init` or start the server once)")]
    NoCa,
    /// The PKCS#12 bundle was downloaded already (or its hour passed, or the server restarted): it is kept
    /// nowhere any more.
    #[error("the PKCS#12 bundle was downloaded already or has expired: it is handed out once; issue a new one")]
    BundleGone,
}

impl cardap_domain::Localized for PkiError {
    fn message_ja(&self) -> String {
        match self {
            Self::Csr(e) => csr_message_ja(e),
            Self::SubjectMismatch { found, expected } => format!(
                "証明書発行要求のCN（{found}）が業務システムのURLのホスト名（{}）と一致しません",
                expected.join("、")
            ),
            Self::BusinessSystemRetired => "この業務システムは廃止されています".to_owned(),
            Self::OperatorRevoked => "このオペレータは失効しています".to_owned(),
            Self::Certificate(e) => e.message_ja(),
            Self::NoCa => "認証局が設定されていません".to_owned(),
            Self::BundleGone => {
                "PKCS#12 ファイルは取得済みか、期限（1時間）が過ぎています。取得は一度だけです。改めて発行してください"
                    .to_owned()
            }
        }
    }
}

/// What is wrong with a CSR, and what is accepted, in Japanese.
fn csr_message_ja(e: &CsrError) -> String {
    const ACCEPTED: &str = "RSA 2048ビット以上、ECDSA P-256・P-384、Ed25519 の鍵を受け付けます";
    match e {
        CsrError::Unreadable => {
            "証明書発行要求ファイル（PKCS#10、PEM の CERTIFICATE REQUEST または DER）として読み取れません".to_owned()
        }
        CsrError::BadSignature => "証明書発行要求の署名が、要求自身の公開鍵で検証できません".to_owned(),
        CsrError::UnsupportedKey(k) => format!("対応していない鍵です（{k}）。{ACCEPTED}"),
        CsrError::WeakRsa(bits) => format!("RSA {bits}ビットの鍵は短すぎます。RSA は 2048ビット以上が必要です"),
        CsrError::UnsupportedSignature(s) => format!(
            "対応していない署名アルゴリズムです（{s}）。RSA PKCS#1 v1.5（SHA-256/384/512）、ECDSA（SHA-256/384）、\
             Ed25519 を受け付けます（RSA-PSS・SHA-1 は不可）"
        ),
        CsrError::Subject(why) => format!("証明書発行要求のサブジェクトを読み取れません: {why}"),
    }
}

/// The settings of the CA.
#[derive(Debug, Clone)]
pub struct PkiSettings {
    /// The installation's name in the CA names (`<name> Root CA`, `<name> Issuing CA`).
    pub name: String,
    /// The public base URL of cardap (`https://cardap.example.jp`): certificates then carry
    /// `<base>/pki/crl` as their CRL distribution point; `None`: no distribution point.
    pub public_base_url: Option<String>,
    /// How long a CRL is valid (its nextUpdate); it is remade when half of it has passed.
    pub crl_validity: Duration,
}

impl Default for PkiSettings {
    fn default() -> Self {
        PkiSettings { name: "cardap".to_owned(), public_base_url: None, crl_validity: Duration::from_secs(24 * 3600) }
    }
}

/// The CA as this process uses it: the issuing CA with its key, and the root's certificate.
#[derive(Debug)]
struct LoadedCa {
    issuing: CaKey,
    root_der: Vec<u8>,
}

#[derive(Debug, Clone)]
struct CachedCrl {
    der: Vec<u8>,
    revoked: Vec<view::RevokedRow>,
    number: u64,
    this_update: i64,
    next_update: i64,
}

/// What the CA's start-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStarted {
    /// Created now (root and issuing CA), keys sealed.
    Created,
    /// Loaded and unsealed as stored.
    Loaded,
}

/// The certificate use cases over one event store.
#[derive(Debug, Clone)]
pub struct Pki {
    store: Arc<dyn EventStore>,
    read: ReadModels,
    views: Views,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    credentials: Arc<CredentialStore>,
    settings: PkiSettings,
    ca: Arc<RwLock<Option<Arc<LoadedCa>>>>,
    crl: Arc<Mutex<Option<CachedCrl>>>,
    /// PKCS#12 bundles not downloaded yet, by serial: in this process's memory only, each encrypted under its
    /// one-time password, until it is downloaded or [`BUNDLE_LIFETIME`] passes.
    bundles: Arc<Mutex<HashMap<String, Bundle>>>,
}

/// How long an operator's PKCS#12 bundle waits for its one download.
pub const BUNDLE_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Clone)]
struct Bundle {
    holder: Holder,
    pkcs12: Vec<u8>,
    expires_at: i64,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("holder", &self.holder)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn internal(e: impl std::fmt::Display) -> CommandError<PkiError> {
    CommandError::Internal(e.to_string())
}

fn refused<T>(e: PkiError) -> Result<T> {
    Err(CommandError::Domain(e))
}

/// The stream of one certificate.
pub fn certificate_stream(serial: &CertificateSerial) -> StreamId {
    crate::ids::stream_of::<Certificate>(&cardap_domain::certificate::stream_key(serial))
}

fn authority_stream() -> StreamId {
    crate::ids::stream_of::<CertificateAuthority>(AUTHORITY_STREAM_KEY)
}

fn reason(r: RevocationReason) -> Reason {
    match r {
        RevocationReason::Unspecified => Reason::Unspecified,
        RevocationReason::KeyCompromise => Reason::KeyCompromise,
        RevocationReason::AffiliationChanged => Reason::AffiliationChanged,
        RevocationReason::Superseded => Reason::Superseded,
        RevocationReason::CessationOfOperation => Reason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn => Reason::PrivilegeWithdrawn,
    }
}

/// The host of an `http(s)://` URL, lower case.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') { host } else { host.split(':').next()? };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

impl Pki {
    pub fn new(
        store: Arc<dyn EventStore>,
        read: ReadModels,
        views: Views,
        clock: Arc<dyn Clock>,
        master: MasterKey,
        settings: PkiSettings,
    ) -> Self {
        let credentials = Arc::new(CredentialStore::new(read.pool().clone()));
        Pki {
            store,
            read,
            views,
            clock,
            master,
            credentials,
            settings,
            ca: Arc::new(RwLock::new(None)),
            crl: Arc::new(Mutex::new(None)),
            bundles: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn loaded(&self) -> Result<Arc<LoadedCa>> {
        self.ca.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or(CommandError::Domain(PkiError::NoCa))
    }

    /// The CRL distribution point of new certificates.
    fn crl_url(&self) -> Option<String> {
        self.settings.public_base_url.as_ref().map(|base| format!("{}/pki/crl", base.trim_end_matches('/')))
    }

    /// Loads the CA (unsealing its issuing key), or creates it when there is none: on first start and by
    /// `cardap ca init`. Safe when several nodes start at once: the creation's command id is derived, the
    /// `CaCreated` append expects no stream, and the loser loads what the winner stored.
    pub async fn start(&self) -> Result<CaStarted> {
        if self.load_ca().await? {
            return Ok(CaStarted::Loaded);
        }
        let now = self.clock.now();
        let new = ca::create(&self.settings.name, now).map_err(internal)?;
        let seal = |label: &str, key: &CaKey| -> Result<String> {
            Ok(STANDARD.encode(self.master.seal_secret(label, key.key_pkcs8()).map_err(internal)?))
        };
        let (issuing_sealed, root_sealed) = (seal(ISSUING_LABEL, &new.issuing)?, seal(ROOT_LABEL, &new.root)?);
        let stream = authority_stream();
        let ctx = CommandContext::system(CommandId::from_uuid(Uuid::new_v5(&CA_NAMESPACE, stream.as_str().as_bytes())));
        let command = AuthorityCommand::Create {
            root_der: new.root.cert_der().to_vec(),
            issuing_der: new.issuing.cert_der().to_vec(),
            at: Timestamp::from_unix(now.timestamp()),
        };
        let (stream_ref, command_ref) = (&stream, &command);
        let (issuing_ref, root_ref) = (&issuing_sealed, &root_sealed);
        let done = transact(&self.store, &ctx, &[], None, |mut tx: Tx| async move {
            let loaded = tx.load::<CertificateAuthority, PkiError>(stream_ref).await?;
            // `AlreadyCreated`, its one refusal: another node created it first; nothing to add.
            let events: Vec<_> = CertificateAuthority::decide(&loaded.state, command_ref.clone()).unwrap_or_default();
            if !events.is_empty() {
                tx.companion(Companion::StoreCaKey {
                    name: "issuing".to_owned(),
                    sealed: issuing_ref.clone(),
                    at: now,
                });
                tx.companion(Companion::StoreCaKey { name: "root".to_owned(), sealed: root_ref.clone(), at: now });
            }
            tx.append::<CertificateAuthority>(stream_ref, loaded.version, &events);
            Ok((!events.is_empty(), tx))
        })
        .await?;
        if done.value == Some(true) {
            tracing::info!(name = %self.settings.name, "internal CA created (root and issuing CA); keys sealed");
            *self.ca.write().unwrap_or_else(PoisonError::into_inner) =
                Some(Arc::new(LoadedCa { issuing: new.issuing, root_der: new.root.cert_der().to_vec() }));
            return Ok(CaStarted::Created);
        }
        // Another node created it first.
        if self.load_ca().await? {
            Ok(CaStarted::Loaded)
        } else {
            Err(internal("the CA was created but cannot be loaded"))
        }
    }

    /// Loads the stored CA into this process; `false` when none was created yet.
    async fn load_ca(&self) -> Result<bool> {
        let loaded = Tx::new(self.store.clone()).load::<CertificateAuthority, PkiError>(&authority_stream()).await?;
        let Some((root_der, issuing_der)) = loaded.state.created else { return Ok(false) };
        let sealed = self
            .credentials
            .sealed_ca_key("issuing")
            .await?
            .ok_or_else(|| internal("the CA exists but its issuing key is not in ca_keys"))?;
        let sealed = STANDARD.decode(sealed).map_err(|_| internal("ca_keys.issuing is not base64"))?;
        let pkcs8 = self.master.open_secret(ISSUING_LABEL, &sealed).ok_or_else(|| {
            internal("the issuing CA's key cannot be unsealed: wrong master key, or the ca_keys row was altered")
        })?;
        let issuing = CaKey::from_parts(issuing_der, &pkcs8).map_err(internal)?;
        *self.ca.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(LoadedCa { issuing, root_der }));
        Ok(true)
    }

    /// The root CA's key (PKCS#8 DER) and certificate, unsealed, to be written to the file the operator named by
    /// `cardap ca export-root` and kept offline; `None` when the root key was removed from the server already.
    pub async fn export_root(&self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let loaded = Tx::new(self.store.clone()).load::<CertificateAuthority, PkiError>(&authority_stream()).await?;
        let Some((root_der, _)) = loaded.state.created else { return refused(PkiError::NoCa) };
        let Some(sealed) = self.credentials.sealed_ca_key("root").await? else { return Ok(None) };
        let sealed = STANDARD.decode(sealed).map_err(|_| internal("ca_keys.root is not base64"))?;
        let pkcs8 = self.master.open_secret(ROOT_LABEL, &sealed).ok_or_else(|| {
            internal("the root CA's key cannot be unsealed: wrong master key, or the ca_keys row was altered")
        })?;
        // Checks that key and certificate belong together before anyone relies on the exported file.
        CaKey::from_parts(root_der.clone(), &pkcs8).map_err(internal)?;
        Ok(Some((pkcs8, root_der)))
    }

    /// Removes the root CA's key from the server (after [`Pki::export_root`]): the issuing CA goes on signing;
    /// only a new issuing CA would need the root again. Whether a key was removed.
    pub async fn remove_root_key(&self) -> Result<bool> {
        Ok(self.credentials.remove_ca_key("root").await?)
    }

    /// The chain a relying party installs: the issuing CA, then the root (PEM).
    pub fn chain_pem(&self) -> Result<String> {
        let ca = self.loaded()?;
        Ok(format!("{}{}", ca.issuing.cert_pem(), ca::pem("CERTIFICATE", &ca.root_der)))
    }

    /// The current CRL (DER), made anew when a revocation changed the list or half its validity has passed.
    pub async fn crl(&self) -> Result<Vec<u8>> {
        let ca = self.loaded()?;
        let now = self.clock.now().timestamp();
        let revoked = view::revoked(self.read.pool(), now).await.map_err(internal)?;
        let last = self.crl.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(c) = &last
            && c.revoked == revoked
            && now < c.this_update + (c.next_update - c.this_update) / 2
        {
            return Ok(c.der.clone());
        }
        let number = u64::try_from(now).unwrap_or(0).max(last.as_ref().map_or(0, |c| c.number + 1));
        let validity = i64::try_from(self.settings.crl_validity.as_secs()).unwrap_or(i64::MAX / 4);
        let entries = revoked
            .iter()
            .map(|r| {
                let serial = Serial::from_hex(&r.serial).ok_or_else(|| internal("a stored serial is not hex"))?;
                let why = RevocationReason::parse(&r.reason).map_err(internal)?;
                let at = DateTime::from_timestamp(r.revoked_at, 0).ok_or_else(|| internal("revocation time"))?;
                Ok(Revoked { serial, at, reason: reason(why) })
            })
            .collect::<Result<Vec<_>>>()?;
        let at = |t: i64| DateTime::<Utc>::from_timestamp(t, 0).ok_or_else(|| internal("CRL time out of range"));
        let der = ca.issuing.crl(&entries, number, at(now)?, at(now + validity)?).map_err(internal)?;
        *self.crl.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(CachedCrl { der: der.clone(), revoked, number, this_update: now, next_update: now + validity });
        Ok(der)
    }

    /// Signs a certificate for `spki` under `profile` with a new serial: what the `Issue` command records.
    fn sign(&self, spki: &[u8], profile: &Profile, holder: Holder) -> Result<IssuedCertificate> {
        let ca = self.loaded()?;
        let now = self.clock.now();
        let serial = Serial::random().map_err(internal)?;
        let der = ca.issuing.issue(spki, profile, &serial, self.crl_url().as_deref(), now).map_err(internal)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(internal)?;
        let validity = cert.validity();
        Ok(IssuedCertificate {
            serial: CertificateSerial::parse(&serial.hex()).map_err(internal)?,
            holder,
            subject: cert.subject().to_string(),
            not_before: Timestamp::from_unix(validity.not_before.timestamp()),
            not_after: Timestamp::from_unix(validity.not_after.timestamp()),
            der,
        })
    }

    /// Records `issued` (and, for a reissue, the revocation of `supersedes`) in one transaction; the new row.
    async fn record(
        &self,
        ctx: &CommandContext,
        permissions: &[Permission],
        municipality: Option<MunicipalityCode>,
        issued: IssuedCertificate,
        supersedes: Option<&CertificateSerial>,
    ) -> Result<CertificateRow> {
        let stream = certificate_stream(&issued.serial);
        let at = self.clock.timestamp();
        let (stream_ref, issued_ref) = (&stream, &issued);
        let done = transact(&self.store, ctx, permissions, municipality, |mut tx: Tx| async move {
            let loaded = tx.load::<Certificate, PkiError>(stream_ref).await?;
            let events = Certificate::decide(&loaded.state, CertificateCommand::Issue(issued_ref.clone()))
                .map_err(|e| CommandError::Domain(e.into()))?;
            tx.append::<Certificate>(stream_ref, loaded.version, &events);
            if let Some(old) = supersedes {
                let old_stream = certificate_stream(old);
                let loaded = tx.load::<Certificate, PkiError>(&old_stream).await?;
                let revoke = CertificateCommand::Revoke { reason: RevocationReason::Superseded, at };
                let events = Certificate::decide(&loaded.state, revoke).map_err(|e| CommandError::Domain(e.into()))?;
                tx.append::<Certificate>(&old_stream, loaded.version, &events);
            }
            Ok(((), tx))
        })
        .await?;
        if let Some(checkpoint) = done.checkpoint {
            self.views.wait_for_view(checkpoint, view::NAME).await;
        }
        if done.value.is_none() {
            // A retry of an applied command: a new serial was drawn, the first one stands; the holder's newest.
            let rows = view::of_holder(self.read.pool(), &issued.holder).await.map_err(internal)?;
            return rows.into_iter().next().ok_or_else(|| internal("the issued certificate is not in the view"));
        }
        view::get(self.read.pool(), &issued.serial)
            .await
            .map_err(internal)?
            .ok_or_else(|| internal("the issued certificate is not in the view yet"))
    }

    /// 業務サーバ証明書: issues a certificate for the business system from its CSR (システム管理). The CSR must verify
    /// and its CN must be the host of one of the system's URLs (see the module's rule).
    pub async fn issue_business_server(
        &self,
        ctx: &CommandContext,
        business_id: &BusinessId,
        csr_input: &[u8],
    ) -> Result<CertificateRow> {
        self.issue_or_reissue_business_server(ctx, business_id, csr_input, None).await
    }

    /// Issues a new certificate for the business system from a new CSR and revokes `old` (superseded), in one
    /// transaction. `old` must be a certificate of this business system that is not revoked.
    pub async fn reissue_business_server(
        &self,
        ctx: &CommandContext,
        business_id: &BusinessId,
        old: &CertificateSerial,
        csr_input: &[u8],
    ) -> Result<CertificateRow> {
        self.issue_or_reissue_business_server(ctx, business_id, csr_input, Some(old)).await
    }

    async fn issue_or_reissue_business_server(
        &self,
        ctx: &CommandContext,
        business_id: &BusinessId,
        csr_input: &[u8],
        old: Option<&CertificateSerial>,
    ) -> Result<CertificateRow> {
        let permission = [Permission::ManageBusinessSystems];
        if let Some(actor) = &ctx.actor {
            authorize(actor, &permission[0])?;
        }
        let holder = Holder::BusinessServer { business_id: business_id.clone() };
        if let Some(old) = old {
            self.live_certificate_of(&holder, old).await?;
        }
        let system = business_systems::get(self.read.pool(), business_id)
            .await
            .map_err(internal)?
            .ok_or(CommandError::Domain(PkiError::Certificate(CertificateError::Unknown)))?;
        if system.retired {
            return refused(PkiError::BusinessSystemRetired);
        }
        let checked = csr::parse(csr_input).map_err(|e| CommandError::Domain(e.into()))?;
        let mut expected: Vec<String> =
            [&system.top_url, &system.operator_admin_url, &system.personalize_url, &system.image]
                .into_iter()
                .flatten()
                .filter_map(|u| url_host(u))
                .collect();
        expected.dedup();
        let cn = checked.subject_value("CN").unwrap_or_default().to_owned();
        if !expected.iter().any(|h| h.eq_ignore_ascii_case(&cn)) {
            return refused(PkiError::SubjectMismatch { found: cn, expected });
        }
        let subject = checked
            .subject
            .iter()
            .filter(|a| ["CN", "C", "ST", "L", "O", "OU"].contains(&a.name.as_str()))
            .cloned()
            .collect();
        let profile = Profile::BusinessServer { subject, dns_names: vec![cn.to_ascii_lowercase()] };
        let issued = self.sign(&checked.spki_der, &profile, holder)?;
        self.record(ctx, &permission, None, issued, old).await
    }

    /// A certificate of `holder` that is not revoked (to revoke or supersede it); else `Unknown` (not his) or
    /// `AlreadyRevoked`.
    async fn live_certificate_of(&self, holder: &Holder, serial: &CertificateSerial) -> Result<CertificateRow> {
        let row = self
            .certificate_of(holder, serial)
            .await?
            .ok_or(CommandError::Domain(PkiError::Certificate(CertificateError::Unknown)))?;
        if row.revoked_at.is_some() {
            return refused(PkiError::Certificate(CertificateError::AlreadyRevoked));
        }
        Ok(row)
    }

    /// The business system whose server certificate (業務サーバ証明書, also its client certificate) `der` is: one
    /// this CA issued to it and that is not revoked. The TLS listener checked the chain, the validity and the CRL
    /// already; this ties the certificate to its holder. `None` for anything else (an operator's certificate, an
    /// unknown one).
    pub async fn business_system_presenting(&self, der: &[u8]) -> Result<Option<BusinessId>> {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Ok(None) };
        let Ok(serial) = CertificateSerial::parse(&hex::encode(cert.raw_serial())) else { return Ok(None) };
        let Some(row) = view::get(self.read.pool(), &serial).await.map_err(internal)? else { return Ok(None) };
        if row.kind != "business-server" || row.revoked_at.is_some() || row.der != der {
            return Ok(None);
        }
        Ok(BusinessId::parse(&row.holder).ok())
    }

    /// The certificates of a holder, newest first.
    pub async fn certificates_of(&self, holder: &Holder) -> Result<Vec<CertificateRow>> {
        view::of_holder(self.read.pool(), holder).await.map_err(internal)
    }

    /// One certificate of a holder (`None`: no such serial, or another holder's).
    pub async fn certificate_of(&self, holder: &Holder, serial: &CertificateSerial) -> Result<Option<CertificateRow>> {
        let row = view::get(self.read.pool(), serial).await.map_err(internal)?;
        Ok(row.filter(|r| r.kind == holder.kind() && r.holder == view::holder_key(holder)))
    }

    /// The certificate and the chain above it, PEM (what a server installs).
    pub fn pem_with_chain(&self, row: &CertificateRow) -> Result<String> {
        Ok(format!("{}{}", ca::pem("CERTIFICATE", &row.der), self.chain_pem()?))
    }

    /// Revokes a certificate of a business system (システム管理) with `why`; the CRL lists it from now on.
    pub async fn revoke_business_server(
        &self,
        ctx: &CommandContext,
        business_id: &BusinessId,
        serial: &CertificateSerial,
        why: RevocationReason,
    ) -> Result<CertificateRow> {
        let permission = [Permission::ManageBusinessSystems];
        if let Some(actor) = &ctx.actor {
            authorize(actor, &permission[0])?;
        }
        let holder = Holder::BusinessServer { business_id: business_id.clone() };
        self.revoke(ctx, &permission, None, &holder, serial, why).await
    }

    async fn revoke(
        &self,
        ctx: &CommandContext,
        permissions: &[Permission],
        municipality: Option<MunicipalityCode>,
        holder: &Holder,
        serial: &CertificateSerial,
        why: RevocationReason,
    ) -> Result<CertificateRow> {
        self.certificate_of(holder, serial)
            .await?
            .ok_or(CommandError::Domain(PkiError::Certificate(CertificateError::Unknown)))?;
        let stream = certificate_stream(serial);
        let at = self.clock.timestamp();
        let stream_ref = &stream;
        let done = transact(&self.store, ctx, permissions, municipality, |mut tx: Tx| async move {
            let loaded = tx.load::<Certificate, PkiError>(stream_ref).await?;
            let events = Certificate::decide(&loaded.state, CertificateCommand::Revoke { reason: why, at })
                .map_err(|e| CommandError::Domain(e.into()))?;
            tx.append::<Certificate>(stream_ref, loaded.version, &events);
            Ok(((), tx))
        })
        .await?;
        if let Some(checkpoint) = done.checkpoint {
            self.views.wait_for_view(checkpoint, view::NAME).await;
        }
        view::get(self.read.pool(), serial).await.map_err(internal)?.ok_or_else(|| internal("certificate vanished"))
    }

    /// オペレータ証明書: issues a certificate for an operator from a CSR made on his terminal. The operator himself
    /// may ask for his own; who manages the municipality's operators (運用管理部門, システム管理) for any of them.
    /// The certificate names his municipality, his operator ID and his permitted business systems now.
    pub async fn issue_operator(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        csr_input: &[u8],
    ) -> Result<CertificateRow> {
        let permissions = self.operator_permissions(ctx, code, operator_id)?;
        self.operator_may_have_one(code, operator_id).await?;
        let checked = csr::parse(csr_input).map_err(|e| CommandError::Domain(e.into()))?;
        self.issue_operator_for(ctx, &permissions, code, operator_id, &checked.spki_der).await
    }

    /// オペレータ証明書 as a PKCS#12 bundle, for a terminal that cannot make its own key: the server makes a P-256
    /// key, issues the certificate and seals key, certificate and chain in a bundle under a generated one-time
    /// password, which is answered now (once). The bundle is kept in this process's memory only, encrypted, for
    /// one download ([`Pki::take_pkcs12`]) within [`BUNDLE_LIFETIME`]; the key is kept nowhere else.
    pub async fn issue_operator_pkcs12(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
    ) -> Result<(CertificateRow, crate::passwords::Secret)> {
        use rcgen::PublicKeyData;
        let permissions = self.operator_permissions(ctx, code, operator_id)?;
        self.operator_may_have_one(code, operator_id).await?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(internal)?;
        let row = self.issue_operator_for(ctx, &permissions, code, operator_id, &key.subject_public_key_info()).await?;
        let password = crate::passwords::generate_password(16).map_err(internal)?;
        let ca = self.loaded()?;
        let chain = [row.der.as_slice(), ca.issuing.cert_der(), ca.root_der.as_slice()]
            .into_iter()
            .map(p12_keystore::Certificate::from_der)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(internal)?;
        let private = p12_keystore::PrivateKey::from_der(&key.serialize_der()).map_err(internal)?;
        let mut store = p12_keystore::KeyStore::new();
        let alias = format!("{}:{}", code.as_str(), operator_id.as_str());
        let local_key_id = hex::decode(&row.serial).map_err(internal)?;
        store.add_entry(
            &alias,
            p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
                local_key_id,
                private,
                chain,
            )),
        );
        let pkcs12 = store.writer(password.expose()).write().map_err(internal)?;
        let now = self.clock.now().timestamp();
        let lifetime = i64::try_from(BUNDLE_LIFETIME.as_secs()).unwrap_or(3600);
        let holder = Holder::Operator { municipality: Some(code.clone()), operator_id: operator_id.clone() };
        let mut bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        bundles.retain(|_, b| b.expires_at > now);
        bundles.insert(row.serial.clone(), Bundle { holder, pkcs12, expires_at: now + lifetime });
        Ok((row, password))
    }

    /// The operator's PKCS#12 bundle `serial`, handed out once (himself, or who manages the municipality's
    /// operators); afterwards, or after [`BUNDLE_LIFETIME`], [`PkiError::BundleGone`].
    pub fn take_pkcs12(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        serial: &CertificateSerial,
    ) -> Result<Vec<u8>> {
        self.operator_permissions(ctx, code, operator_id)?;
        let holder = Holder::Operator { municipality: Some(code.clone()), operator_id: operator_id.clone() };
        let now = self.clock.now().timestamp();
        let mut bundles = self.bundles.lock().unwrap_or_else(PoisonError::into_inner);
        match bundles.get(serial.as_str()) {
            Some(b) if b.holder == holder && b.expires_at > now => {}
            Some(b) if b.holder == holder => {
                bundles.remove(serial.as_str());
                return refused(PkiError::BundleGone);
            }
            _ => return refused(PkiError::BundleGone),
        }
        bundles.remove(serial.as_str()).map(|b| b.pkcs12).ok_or(CommandError::Domain(PkiError::BundleGone))
    }

    /// Refuses a certificate for an operator who is not registered (not found) or revoked.
    async fn operator_may_have_one(&self, code: &MunicipalityCode, operator_id: &OperatorId) -> Result<()> {
        let operator = operators::find_by_login(self.read.pool(), self.read.sealer(), Some(code), operator_id)
            .await
            .map_err(internal)?
            .ok_or(CommandError::Domain(PkiError::Certificate(CertificateError::Unknown)))?;
        if operator.revoked {
            return refused(PkiError::OperatorRevoked);
        }
        Ok(())
    }

    /// Signs and records an operator certificate for `spki`, naming his permitted business systems now.
    async fn issue_operator_for(
        &self,
        ctx: &CommandContext,
        permissions: &[Permission],
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        spki: &[u8],
    ) -> Result<CertificateRow> {
        let operator = operators::find_by_login(self.read.pool(), self.read.sealer(), Some(code), operator_id)
            .await
            .map_err(internal)?
            .ok_or(CommandError::Domain(PkiError::Certificate(CertificateError::Unknown)))?;
        let profile = Profile::Operator {
            municipality: Some(code.as_str().to_owned()),
            operator_id: operator_id.as_str().to_owned(),
            business_ids: operator.business_systems.iter().map(|b| b.as_str().to_owned()).collect(),
        };
        let holder = Holder::Operator { municipality: Some(code.clone()), operator_id: operator_id.clone() };
        let issued = self.sign(spki, &profile, holder)?;
        self.record(ctx, permissions, Some(code.clone()), issued, None).await
    }

    /// Revokes one certificate of an operator (himself, or who manages the municipality's operators).
    pub async fn revoke_operator(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
        serial: &CertificateSerial,
        why: RevocationReason,
    ) -> Result<CertificateRow> {
        let permissions = self.operator_permissions(ctx, code, operator_id)?;
        let holder = Holder::Operator { municipality: Some(code.clone()), operator_id: operator_id.clone() };
        self.revoke(ctx, &permissions, Some(code.clone()), &holder, serial, why).await
    }

    /// What the actor needs for an operator's certificates: nothing more for his own, else managing the
    /// municipality's operators (checked here, and again by the engine).
    fn operator_permissions(
        &self,
        ctx: &CommandContext,
        code: &MunicipalityCode,
        operator_id: &OperatorId,
    ) -> Result<Vec<Permission>> {
        let own = OperatorKey::for_login(Some(code), operator_id);
        match &ctx.actor {
            Some(actor) if actor.operator == own => Ok(vec![]),
            Some(actor) => {
                let permission = Permission::ManageOperators(code.clone());
                authorize(actor, &permission)?;
                Ok(vec![permission])
            }
            None => Ok(vec![]),
        }
    }
}

/// The name of one of cardap's own TLS endpoints (`api`, `card-agent` …): 1–32 lower-case letters, digits and
/// hyphens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointName(String);

impl EndpointName {
    pub fn parse(s: &str) -> Option<EndpointName> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        ok.then(|| EndpointName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an SSL communication certificate names: DNS names and IP addresses (at least one of them).
#[derive(Debug, Clone)]
pub struct TlsNames {
    pub dns_names: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
}

impl Pki {
    /// SSL通信用証明書: a certificate for one of cardap's own TLS endpoints from its CSR (システム管理), naming
    /// `names` (serverAuth, 397 days); only the CSR's public key is used.
    pub async fn issue_tls(
        &self,
        ctx: &CommandContext,
        endpoint: &EndpointName,
        names: &TlsNames,
        csr_input: &[u8],
    ) -> Result<CertificateRow> {
        self.issue_or_reissue_tls(ctx, endpoint, names, csr_input, None).await
    }

    /// A new certificate for the endpoint from a new CSR; `old` is revoked as superseded in the same transaction.
    pub async fn reissue_tls(
        &self,
        ctx: &CommandContext,
        endpoint: &EndpointName,
        old: &CertificateSerial,
        names: &TlsNames,
        csr_input: &[u8],
    ) -> Result<CertificateRow> {
        self.issue_or_reissue_tls(ctx, endpoint, names, csr_input, Some(old)).await
    }

    async fn issue_or_reissue_tls(
        &self,
        ctx: &CommandContext,
        endpoint: &EndpointName,
        names: &TlsNames,
        csr_input: &[u8],
        old: Option<&CertificateSerial>,
    ) -> Result<CertificateRow> {
        let permission = [Permission::ManageTlsCertificates];
        if let Some(actor) = &ctx.actor {
            authorize(actor, &permission[0])?;
        }
        let holder = Holder::Tls { endpoint: endpoint.as_str().to_owned() };
        if let Some(old) = old {
            self.live_certificate_of(&holder, old).await?;
        }
        let checked = csr::parse(csr_input).map_err(|e| CommandError::Domain(e.into()))?;
        let dns_names = names.dns_names.iter().map(|n| n.to_ascii_lowercase()).collect();
        let profile = Profile::Tls { dns_names, ips: names.ips.clone() };
        let issued = self.sign(&checked.spki_der, &profile, holder)?;
        self.record(ctx, &permission, None, issued, old).await
    }

    /// Deletes an SSL communication certificate: revokes it (cessationOfOperation); it stays listed as revoked.
    pub async fn delete_tls(
        &self,
        ctx: &CommandContext,
        endpoint: &EndpointName,
        serial: &CertificateSerial,
    ) -> Result<CertificateRow> {
        let permission = [Permission::ManageTlsCertificates];
        if let Some(actor) = &ctx.actor {
            authorize(actor, &permission[0])?;
        }
        let holder = Holder::Tls { endpoint: endpoint.as_str().to_owned() };
        self.revoke(ctx, &permission, None, &holder, serial, RevocationReason::CessationOfOperation).await
    }
}

/// Stages, in a decision about an operator, the revocation of his certificates that are not revoked yet: all of
/// them (`removed` `None`: he was revoked; reason affiliationChanged), or those naming one of the business
/// systems `removed` (privilegeWithdrawn). The operator's own decision and these commit together.
pub(crate) async fn stage_operator_revocations<E: std::error::Error + 'static>(
    tx: &mut Tx,
    read: &ReadModels,
    municipality: Option<&MunicipalityCode>,
    operator_id: &OperatorId,
    removed: Option<&[BusinessId]>,
    at: Timestamp,
) -> std::result::Result<(), CommandError<E>> {
    let holder = Holder::Operator { municipality: municipality.cloned(), operator_id: operator_id.clone() };
    let rows = view::of_holder(read.pool(), &holder).await.map_err(|e| CommandError::Internal(e.to_string()))?;
    for row in rows.into_iter().filter(|r| r.revoked_at.is_none()) {
        let why = match removed {
            None => RevocationReason::AffiliationChanged,
            Some(ids) if names_any(&row.der, ids) => RevocationReason::PrivilegeWithdrawn,
            Some(_) => continue,
        };
        let Ok(serial) = CertificateSerial::parse(&row.serial) else { continue };
        let stream = certificate_stream(&serial);
        let loaded = tx.load::<Certificate, E>(&stream).await?;
        // Already revoked in the stream (the view lags): nothing to add.
        if let Ok(events) = Certificate::decide(&loaded.state, CertificateCommand::Revoke { reason: why, at }) {
            tx.append::<Certificate>(&stream, loaded.version, &events);
        }
    }
    Ok(())
}

/// Whether the certificate names one of `ids` as a permitted business system (SAN `urn:cardap:business:<id>`).
fn names_any(der: &[u8], ids: &[BusinessId]) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return false };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return false };
    san.value.general_names.iter().any(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => {
            ids.iter().any(|id| uri.strip_prefix("urn:cardap:business:") == Some(id.as_str()))
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn url_hosts_are_read_without_scheme_port_path_or_case() {
        assert_eq!(url_host("https://Portal.Example.jp:8443/BizSys/?gid=05").as_deref(), Some("portal.example.jp"));
        assert_eq!(url_host("http://user@host.jp/x").as_deref(), Some("host.jp"));
        assert_eq!(url_host("https://host.jp").as_deref(), Some("host.jp"));
        assert_eq!(url_host("not a url"), None);
    }
}
