//! `/api/v1/library-links/{business_id}/{standard_id}`: the library link (図書館, 手引き II 2) — a library system,
//! over mutual TLS with its business server certificate (as for its feed), links a card's 標準ID to its own 図書ID
//! (`PUT`), looks it up (`GET`: the 図書ID and whether the card is usable now) and unlinks it (`DELETE`).
//!
//! Choices of this module, also stated in `/openapi.json`: another system's path, a system that is not a library
//! (its field list lacks `standard_id`) or serves no municipality, a 標準ID that does not parse and a 標準ID it has
//! not linked are all `404`; an unknown 標準ID is `422` `/problems/unknown-standard-id` and an abolished card's
//! `409` `/problems/card-abolished`. Who is a library and for which municipalities it acts is documented in
//! `cardap_commands::library`.
//!
//! Must not decide anything about links; it authenticates, parses, calls one use case and answers.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use cardap_commands::CommandContext;
use cardap_commands::library::{LibraryError, LinkView};
use cardap_commands::{CommandId, CorrelationId};
use cardap_domain::BusinessId;
use cardap_domain::card::StandardId;
use cardap_domain::library_link::{LibraryId, LibraryLinkError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::ApiJson;
use crate::routes::feeds::BusinessSystemClient;
use crate::routes::{RequestMeta, etag};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/library-links/{business_id}/{standard_id}", put(link).get(lookup).delete(unlink))
}

/// Link a 標準ID to the library's own user number.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"library_id": "0001234567"}))]
pub struct LinkBody {
    /// 図書ID: 1 to 32 half-width letters, digits and hyphens.
    pub library_id: String,
}

/// A link as the library sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"business_id": "02", "standard_id": "1310169876543210",
    "linked_standard_id": "1310161234567890", "library_id": "0001234567", "card_status": "in_use", "usable": true}))]
pub struct LinkAnswer {
    pub business_id: String,
    /// The 標準ID asked for.
    pub standard_id: String,
    /// The 標準ID the link was made with: the same, or a reissued card's earlier one that `standard_id` replaced.
    pub linked_standard_id: String,
    /// 図書ID.
    pub library_id: String,
    /// The status of the card carrying `standard_id` (`in_use`, `suspended`, `abolished`); `null` when no card
    /// carries it any more.
    pub card_status: Option<String>,
    /// The card may be used at the counter now: in use (not suspended, not abolished).
    pub usable: bool,
}

impl From<LinkView> for LinkAnswer {
    fn from(v: LinkView) -> Self {
        LinkAnswer {
            business_id: v.business_id.as_str().to_owned(),
            standard_id: v.standard_id.to_string(),
            linked_standard_id: v.linked_standard_id.to_string(),
            library_id: v.library_id.to_string(),
            card_status: v.card_status.map(|s| s.as_str().to_owned()),
            usable: v.usable,
        }
    }
}

fn library_error(e: LibraryError) -> ApiError {
    let refused = |d: LibraryLinkError| {
        let text = Text::of(&d);
        match d {
            LibraryLinkError::UnknownStandardId => ApiError::unknown_standard_id(text),
            LibraryLinkError::StandardIdAbolished => ApiError::state_conflict(ProblemType::CardAbolished, text),
            LibraryLinkError::NotLinked => ApiError::not_found(),
        }
    };
    match e {
        LibraryError::NotFound => ApiError::not_found(),
        LibraryError::Refused(d) => refused(d),
        LibraryError::Command(c) => command_error(c, refused),
        LibraryError::Store(s) => s.into(),
        LibraryError::Query(q) => q.into(),
    }
}

/// The 標準ID in the path; one that does not parse names no link (404).
fn standard_id_in_path(text: &str) -> Result<StandardId, ApiError> {
    StandardId::parse(text).map_err(|_| ApiError::not_found())
}

/// The command context of a business system's request: no operator; the system is the terminal. A retry with the
/// same `Idempotency-Key` for the same link gets the same command id.
fn context(headers: &HeaderMap, caller: &BusinessId, action: &str, target: &str) -> CommandContext {
    let meta = RequestMeta::from_headers(headers);
    let command_id = match &meta.idempotency_key {
        Some(key) => CommandId::from_uuid(uuid::Uuid::new_v5(
            &uuid::Uuid::from_u128(0x6c69_6272_6172_792d_6c69_6e6b_0000_0001),
            format!("{caller}\n{action}\n{target}\n{key}").as_bytes(),
        )),
        None => CommandId::generate(),
    };
    CommandContext {
        actor: None,
        command_id,
        correlation_id: CorrelationId::generate(),
        causation_id: None,
        terminal: Some(format!("business-system {caller}")),
        request_id: meta.request_id,
    }
}

/// Link a 標準ID to a 図書ID (関連付け), as the library system itself; linking again with another 図書ID replaces
/// it, with the same one changes nothing.
#[utoipa::path(put, operation_id = "linkLibraryCard", path = "/api/v1/library-links/{business_id}/{standard_id}",
    tag = "library", params(("business_id" = String, Path), ("standard_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key is applied once")),
    request_body = LinkBody,
    security(("mutual_tls" = [])),
    responses((status = 200, body = LinkAnswer, description = "Linked (the link as it stands; `ETag`: its version)"),
        (status = 401, body = ProblemDetails, description = "No business server certificate cardap issued (and has \
            not revoked) was presented as the TLS client certificate"),
        (status = 404, body = ProblemDetails, description = "Another system's path, a system that is not a \
            library (its field list lacks `standard_id`) or is permitted for no municipality, or a 標準ID that does \
            not parse"),
        (status = 409, body = ProblemDetails, description = "`/problems/card-abolished`: the card carrying the \
            標準ID is abolished; or a concurrent change won (`/problems/conflict`)"),
        (status = 422, body = ProblemDetails, description = "`/problems/unknown-standard-id`: no card's library AP \
            carries the 標準ID; or `/problems/validation`: the 図書ID (`/library_id`)")))]
pub async fn link(
    State(state): State<AppState>,
    client: BusinessSystemClient,
    Path((business_id, standard_id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LinkBody>,
) -> Result<Response, ApiError> {
    let standard_id = standard_id_in_path(&standard_id)?;
    let library_id = LibraryId::parse(&body.library_id)
        .map_err(|e| ApiError::validation(vec![FieldError::parse("/library_id", &e)]))?;
    let ctx = context(&headers, &client.0, "library-links.link", &format!("{business_id}/{standard_id}"));
    let view =
        state.library.link(&ctx, &client.0, &business_id, standard_id, library_id).await.map_err(library_error)?;
    Ok((etag(view.version), Json(LinkAnswer::from(view))).into_response())
}

/// Look up the 図書ID linked to a 標準ID (also the new 標準ID of a reissued card whose old one was linked), and
/// whether the card is usable now.
#[utoipa::path(get, operation_id = "lookupLibraryCard", path = "/api/v1/library-links/{business_id}/{standard_id}",
    tag = "library", params(("business_id" = String, Path), ("standard_id" = String, Path)),
    security(("mutual_tls" = [])),
    responses((status = 200, body = LinkAnswer),
        (status = 401, body = ProblemDetails, description = "No business server certificate cardap issued (and has \
            not revoked) was presented as the TLS client certificate"),
        (status = 404, body = ProblemDetails, description = "Not linked by this library (nor through a reissue), \
            another system's path, or a system that is not a library")))]
pub async fn lookup(
    State(state): State<AppState>,
    client: BusinessSystemClient,
    Path((business_id, standard_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let standard_id = standard_id_in_path(&standard_id)?;
    let view = state.library.lookup(&client.0, &business_id, standard_id).await.map_err(library_error)?;
    Ok((etag(view.version), Json(LinkAnswer::from(view))).into_response())
}

/// Unlink (関連付けの解除): the link the 標準ID finds (made with it, or with the 標準ID it replaced).
#[utoipa::path(delete, operation_id = "unlinkLibraryCard", path = "/api/v1/library-links/{business_id}/{standard_id}",
    tag = "library", params(("business_id" = String, Path), ("standard_id" = String, Path)),
    security(("mutual_tls" = [])),
    responses((status = 204, description = "Unlinked"),
        (status = 401, body = ProblemDetails, description = "No business server certificate cardap issued (and has \
            not revoked) was presented as the TLS client certificate"),
        (status = 404, body = ProblemDetails, description = "Not linked by this library, another system's path, or a \
            system that is not a library")))]
pub async fn unlink(
    State(state): State<AppState>,
    client: BusinessSystemClient,
    Path((business_id, standard_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let standard_id = standard_id_in_path(&standard_id)?;
    let ctx = context(&headers, &client.0, "library-links.unlink", &format!("{business_id}/{standard_id}"));
    state.library.unlink(&ctx, &client.0, &business_id, standard_id).await.map_err(library_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
