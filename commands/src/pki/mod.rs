//! Public key infrastructure (手引き I 2.1, 2.2): the internal CA and the certificates it issues. The signing
//! core — the CA layout, the certificate profiles, CRLs ([`ca`]) and the checking of certificate signing requests
//! ([`csr`]) — and the use cases on top of it ([`Pki`]): the CA created once with its keys sealed at rest,
//! business server and operator certificates issued from CSRs, looked up, revoked and reissued as events, the
//! chain and the CRL.

pub mod ca;
pub mod csr;
mod service;

pub use cardap_projections::certificates::CertificateRow;
pub(crate) use service::stage_operator_revocations;
pub use service::{CaStarted, EndpointName, Pki, PkiError, PkiSettings, TlsNames, certificate_stream};

pub use ca::operator_named_by;
