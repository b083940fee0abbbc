//! Public key infrastructure (手引き I 2.1, 2.2): the internal CA and the requests it signs. So far the signing
//! core — the CA layout, the certificate profiles, CRLs ([`ca`]) and the checking of certificate signing requests
//! ([`csr`]); the certificate use cases (issue, revoke, reissue as events; the CA's key sealed at rest) build on
//! them.

pub mod ca;
pub mod csr;

pub use ca::operator_named_by;
