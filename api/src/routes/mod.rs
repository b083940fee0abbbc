//! The HTTP routes, one module per area, and the request metadata every command takes from its headers.

pub mod audit;
pub mod biometrics;
pub mod business_systems;
pub mod card_writes;
pub mod cards;
pub mod feeds;
pub mod health;
pub mod issuance_service;
pub mod jobs;
pub mod library_links;
pub mod municipalities;
pub mod oidc;
pub mod operator_csv;
pub mod operators;
pub mod pki;
pub mod read_access;
pub mod registry;
pub mod resident_settings;
pub mod residents;
pub mod sessions;
pub(crate) mod streamed;
pub mod webhooks;

use axum::http::{HeaderMap, header};
use cardap_commands::{CommandContext, Permission, authorize};
use cardap_commands::{CommandId, CorrelationId};
use cardap_domain::MunicipalityCode;
use uuid::Uuid;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError};
use crate::i18n::Text;
use crate::state::AppState;

/// Namespace of command ids derived from `Idempotency-Key`s.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6361_7264_6170_4964_656d_706f_7465_6e74);

/// What a request says about itself in its headers.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub idempotency_key: Option<String>,
    pub request_id: Option<String>,
    pub terminal: Option<String>,
}

impl RequestMeta {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let get = |name: &str| {
            // UTF-8, not only ASCII: a terminal is named as the municipality names it (窓口3番).
            headers
                .get(name)
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.chars().any(char::is_control))
                .map(|v| {
                    // Bounded: these end up in every event's metadata.
                    v.chars().take(200).collect::<String>()
                })
        };
        RequestMeta {
            idempotency_key: get("idempotency-key"),
            request_id: get("x-request-id"),
            terminal: get("x-cardap-terminal"),
        }
    }

    /// The command context: a retry with the same `Idempotency-Key` by the same operator for the same action on
    /// the same target gets the same command id, so it is applied once.
    pub fn context(&self, auth: &Authenticated, action: &str, target: &str) -> CommandContext {
        let command_id = match &self.idempotency_key {
            Some(key) => CommandId::from_uuid(Uuid::new_v5(
                &IDEMPOTENCY_NAMESPACE,
                format!("{}\n{action}\n{target}\n{key}", auth.actor.operator).as_bytes(),
            )),
            None => CommandId::generate(),
        };
        CommandContext {
            actor: Some(auth.actor.clone()),
            command_id,
            correlation_id: CorrelationId::generate(),
            causation_id: None,
            terminal: self.terminal.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The `ETag` header of a resource at `version` (its stream version).
pub fn etag(version: impl std::fmt::Display) -> [(header::HeaderName, String); 1] {
    [(header::ETAG, format!("\"{version}\""))]
}

/// The version in an `If-Match: "n"` header, if any.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let bad = || {
        ApiError::malformed(
            Text::new("If-Match の値が正しくありません", "If-Match must be an ETag from this API, e.g. \"3\""),
            vec![FieldError::new("If-Match", Text::new("ETag を指定してください", "expected an ETag"))],
        )
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).ok_or_else(bad)?;
    inner.parse().map(Some).map_err(|_| bad())
}

/// The municipality in the path, if the caller may see it and it exists; else 404 — before anything else of the
/// request (its query, its body) is read.
pub async fn municipality_in_path(
    state: &AppState,
    auth: &Authenticated,
    code: &str,
) -> Result<MunicipalityCode, ApiError> {
    let code = MunicipalityCode::parse(code).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ViewMunicipality(code.clone()))?;
    state.municipalities.view(&code).await?.ok_or_else(ApiError::not_found)?;
    Ok(code)
}
