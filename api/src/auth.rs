//! Operator authentication at the HTTP edge: the [`Authenticated`] extractor turns a `Bearer` token into the acting
//! operator through the login use cases ([`cardap_commands::access`]). Never logs a password or a token.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use cardap_commands::Actor;

use crate::error::ApiError;
use crate::state::AppState;

pub use cardap_commands::access::SessionPolicy;
pub use cardap_commands::passwords::Secret;

/// The operator behind a request, from a valid `Authorization: Bearer` session.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub actor: Actor,
    /// The operator's login ID (for `/me`).
    pub operator_id: String,
    pub token: Secret,
}

impl Authenticated {
    /// The session as the use cases know it.
    pub fn session(&self) -> cardap_commands::access::SessionOf {
        cardap_commands::access::SessionOf { actor: self.actor.clone(), operator_id: self.operator_id.clone() }
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
            .map(|(_, t)| Secret::new(t.trim()))
            .ok_or_else(ApiError::unauthenticated)?;
        let session = state.access.authenticate(&token).await?.ok_or_else(ApiError::unauthenticated)?;
        Ok(Authenticated { actor: session.actor, operator_id: session.operator_id, token })
    }
}
