//! Operator authentication at the HTTP edge: the [`Authenticated`] extractor turns a `Bearer` token — or, without
//! one, the operator certificate the TLS connection was authenticated with ([`crate::tls::PeerCertificate`]) —
//! into the acting operator through the login use cases ([`cardap_commands::access`]). Never logs a password or a
//! token.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use cardap_commands::access::{Access, Presented, SessionCheck};
use cardap_commands::{Actor, Permission};

use crate::error::ApiError;
use crate::i18n::Text;
use crate::state::AppState;

pub use cardap_commands::access::SessionPolicy;
pub use cardap_commands::passwords::Secret;

/// The operator behind a request, from a valid `Authorization: Bearer` session or a verified operator
/// certificate.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub actor: Actor,
    /// The operator's login ID (for `/me`).
    pub operator_id: String,
    /// How he proved who he is.
    pub method: cardap_domain::operator::AuthMethod,
    /// What the request presented (for logout, and for work that outlives the request).
    pub credential: Presented,
}

impl Authenticated {
    /// The session as the use cases know it.
    pub fn session(&self) -> cardap_commands::access::SessionOf {
        cardap_commands::access::SessionOf {
            actor: self.actor.clone(),
            operator_id: self.operator_id.clone(),
            method: self.method,
        }
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| Secret::new(t.trim()));
        // A bearer token wins (password mode over a TLS connection with a certificate); else the certificate.
        let credential = match (token, parts.extensions.get::<crate::tls::PeerCertificate>()) {
            (Some(token), _) => Presented::Token(token),
            (None, Some(peer)) => Presented::Certificate(peer.0.clone()),
            (None, None) => return Err(ApiError::unauthenticated()),
        };
        let session = state.access.authenticate_presented(&credential).await?.ok_or_else(ApiError::unauthenticated)?;
        Ok(Authenticated { actor: session.actor, operator_id: session.operator_id, method: session.method, credential })
    }
}

/// Whether what the request presented still permits `permission`, for work that outlives its request (an import):
/// `Some(problem)` stops it — his session ended (logout, expiry, revocation) or he lost the permission. A failing
/// database is not held against him: the work it guards fails on its own then.
pub async fn still_permitted(access: &Access, credential: &Presented, permission: &Permission) -> Option<ApiError> {
    match access.session_permits(credential, permission).await {
        Ok(SessionCheck::Live) => None,
        Ok(SessionCheck::Ended) => Some(ApiError::session_ended()),
        Ok(SessionCheck::Forbidden) => Some(ApiError::forbidden().with_detail(Text::new(
            "取り込みを実行していたオペレータの権限が変わったため中止しました",
            "the importing operator no longer holds the permission; the import was stopped",
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "could not check the session of a running import");
            None
        }
    }
}
