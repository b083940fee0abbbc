//! The card agent's two routes (`card-agent/PROFILE.md`): writing the card's local area as cardap authorizes it,
//! and recording what the card confirms it holds.
//!
//! - `POST /api/v1/municipalities/{code}/cards/{fid}/card-writes`: the card's one-time challenge and what to do
//!   (`create_local_area`, `install_aps`, `remove_ap`, `sync`) → the area image and cardap's COMMIT MAC. Nothing
//!   is recorded yet.
//! - `POST /api/v1/municipalities/{code}/cards/{fid}/card-state`: the image the card holds, the nonce and the
//!   card's MAC → `in_agreement`, `recorded` (the install events appended now) or `card_outdated` (write a
//!   `sync`), with the card as cardap now has it.
//!
//! Owns their HTTP shape (bytes as hex) and the mapping of `CardWriteError`; the decisions are
//! `cardap_commands::card_writes`'. Never logs an image, a challenge or a MAC.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cardap_commands::card_writes::{CardStateProof, CardWrite, CardWriteError, Reconciled};
use cardap_commands::{CommandError, Permission, authorize};
use cardap_domain::BusinessId;
use cardap_domain::card::CardEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::ApiJson;
use crate::routes::cards::{CardView, answered, fid_in_path, view};
use crate::routes::residents::registration_error;
use crate::routes::{RequestMeta, municipality_in_path};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities/{code}/cards/{fid}/card-writes", post(prepare))
        .route("/api/v1/municipalities/{code}/cards/{fid}/card-state", post(record))
}

/// A write the card agent asks cardap to authorize.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"challenge": "0011223344556677", "action": "install_aps", "business_ids": ["01", "02"],
    "issuance_consent": true}))]
pub struct CardWriteInput {
    /// The card's answer to GET CHALLENGE (hex, 1–32 bytes).
    pub challenge: String,
    /// `create_local_area`, `install_aps` (with `business_ids`), `remove_ap` (one business id) or `sync` (write
    /// cardap's record onto the card).
    pub action: String,
    #[serde(default)]
    pub business_ids: Option<Vec<String>>,
    /// The resident's consent to his user info going to the certificate issuance server, for AP `01` (installed, or
    /// a preset of `create_local_area`), as `POST …/cards/{fid}/aps` and `…/local-area` take it; send the same with
    /// the card's confirmation (`card-state`), which records it.
    #[serde(default)]
    pub issuance_consent: Option<bool>,
}

/// What the card agent sends to the card: STAGE of `image`, then COMMIT with `commit_mac`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardWriteView {
    /// The area image the card is to hold (hex).
    pub image: String,
    /// cardap's MAC over the card's challenge, its FID and the image (hex, 32 bytes).
    pub commit_mac: String,
}

/// What the card says it holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"image": "", "nonce": "0011223344556677", "mac": "00"}))]
pub struct CardStateInput {
    /// The area image (hex; empty: no local area).
    pub image: String,
    /// The nonce the card MACed with: the COMMIT's challenge, or the READ STATE nonce (hex).
    pub nonce: String,
    /// The card's MAC (hex, 32 bytes).
    pub mac: String,
    /// The resident's consent for AP `01`, recorded with it when the image installs it (as in `card-writes`);
    /// without it an AP `01` cardap has not recorded is not recorded (`card_outdated`: write a `sync`).
    #[serde(default)]
    pub issuance_consent: Option<bool>,
}

/// One change recorded from the card.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordedChange {
    /// `local_area_created`, `ap_installed` or `ap_removed`.
    pub change: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_id: Option<String>,
}

/// How cardap's record and the card compare now.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardStateView {
    /// `in_agreement`, `recorded` (the card's write was recorded now) or `card_outdated` (write a `sync`).
    pub outcome: String,
    pub recorded: Vec<RecordedChange>,
    pub card: CardView,
}

fn hex_field(field: &str, value: &str, errors: &mut Vec<FieldError>) -> Vec<u8> {
    hex::decode(value).unwrap_or_else(|_| {
        errors.push(FieldError::new(field, Text::new("16進数で指定してください", "must be hexadecimal")));
        vec![]
    })
}

fn write_error(e: CommandError<CardWriteError>, ids: &[BusinessId]) -> ApiError {
    command_error(e, |d| match d {
        CardWriteError::Registration(r) => registration_error(r, ids),
        CardWriteError::BadChallenge => ApiError::validation(vec![FieldError::new("/challenge", Text::of(&d))]),
        CardWriteError::BadConfirmation | CardWriteError::BadImage(_) => {
            ApiError::card_confirmation_invalid(Text::of(&d))
        }
        CardWriteError::OtherMunicipality => {
            ApiError::state_conflict(ProblemType::CardOfAnotherMunicipality, Text::of(&d))
        }
    })
}

/// Authorize a write to the card: cardap decides it as the clerk's own card operation (same permissions and
/// rules; the local area comes with the municipality's presets, the library AP with a fresh 標準ID) and answers
/// the image with its COMMIT MAC. Nothing is recorded until the card confirms (`card-state`).
#[utoipa::path(post, operation_id = "prepareCardWrite",
    path = "/api/v1/municipalities/{code}/cards/{fid}/card-writes", tag = "cards", request_body = CardWriteInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CardWriteView),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/local-area-missing`, \
            `/problems/local-area-exists`, `/problems/ap-already-installed`, `/problems/ap-not-installed`, \
            `/problems/card-suspended`, `/problems/card-abolished`"),
        (status = 422, body = ProblemDetails, description = "`/challenge`, `/action`, `/business_ids`; \
            `/problems/consent-required`: AP `01` without `issuance_consent: true`")))]
pub async fn prepare(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CardWriteInput>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidents(code.clone()))?;
    let fid = fid_in_path(&fid)?;
    let mut errors = vec![];
    let challenge = hex_field("/challenge", &body.challenge, &mut errors);
    let mut ids = vec![];
    for (i, id) in body.business_ids.iter().flatten().enumerate() {
        match BusinessId::parse(id) {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(FieldError::parse(format!("/business_ids/{i}"), &e)),
        }
    }
    let write = match (body.action.as_str(), ids.as_slice()) {
        ("create_local_area", _) => Some(CardWrite::CreateLocalArea { issuance_consent: body.issuance_consent }),
        ("install_aps", _) => {
            Some(CardWrite::InstallAps { business_ids: ids.clone(), issuance_consent: body.issuance_consent })
        }
        ("remove_ap", [id]) => Some(CardWrite::RemoveAp(id.clone())),
        ("remove_ap", _) => {
            errors.push(FieldError::new(
                "/business_ids",
                Text::new("業務IDを1つ指定してください", "give one business id"),
            ));
            None
        }
        ("sync", _) => Some(CardWrite::Sync),
        _ => {
            errors.push(FieldError::new(
                "/action",
                Text::new(
                    "create_local_area, install_aps, remove_ap, sync のいずれかを指定してください",
                    "one of create_local_area, install_aps, remove_ap, sync",
                ),
            ));
            None
        }
    };
    let Some(write) = write.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "cards.card_write", &format!("{code}/{fid}"));
    let prepared = state
        .card_writes
        .prepare_write(&ctx, &code, &fid, &challenge, write)
        .await
        .map_err(|e| write_error(e, &ids))?;
    Ok(Json(CardWriteView { image: hex::encode(prepared.image), commit_mac: hex::encode(prepared.commit_mac) })
        .into_response())
}

/// Record what the card holds, as it proves with its MAC: after a COMMIT (its answer is the MAC, the nonce the
/// challenge), or at insertion (READ STATE). The install events are appended here, once the card confirmed;
/// a card that holds a write cardap authorized and never recorded is recorded now (`recorded`); a card behind
/// cardap's record is `card_outdated` (write a `sync`).
#[utoipa::path(post, operation_id = "recordCardState",
    path = "/api/v1/municipalities/{code}/cards/{fid}/card-state", tag = "cards", request_body = CardStateInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = CardStateView),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/card-of-another-municipality`"),
        (status = 422, body = ProblemDetails, description = "`/problems/card-confirmation-invalid`; `/image`, \
            `/nonce`, `/mac`")))]
pub async fn record(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CardStateInput>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidents(code.clone()))?;
    let fid = fid_in_path(&fid)?;
    let mut errors = vec![];
    let proof = CardStateProof {
        image: hex_field("/image", &body.image, &mut errors),
        nonce: hex_field("/nonce", &body.nonce, &mut errors),
        mac: hex_field("/mac", &body.mac, &mut errors),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "cards.card_state", &format!("{code}/{fid}"));
    let (outcome, snapshot, checkpoint) = state
        .card_writes
        .record_card_state(&ctx, &code, &fid, &proof, body.issuance_consent)
        .await
        .map_err(|e| write_error(e, &[]))?;
    let (outcome, recorded) = match outcome {
        Reconciled::InAgreement => ("in_agreement", vec![]),
        Reconciled::CardOutdated => ("card_outdated", vec![]),
        Reconciled::Recorded(events) => ("recorded", events.iter().filter_map(change).collect()),
    };
    if checkpoint.is_some() {
        // Wait until the views show it, as the clerk's own card routes do.
        let _ = answered(&state, &snapshot, checkpoint).await;
    }
    Ok(Json(CardStateView { outcome: outcome.to_owned(), recorded, card: view(&snapshot) }).into_response())
}

fn change(event: &CardEvent) -> Option<RecordedChange> {
    let (change, business_id) = match event {
        CardEvent::LocalAreaCreated => ("local_area_created", None),
        CardEvent::ApInstalled { business_id, .. } => ("ap_installed", Some(business_id.as_str().to_owned())),
        CardEvent::ApRemoved { business_id } => ("ap_removed", Some(business_id.as_str().to_owned())),
        _ => return None,
    };
    Some(RecordedChange { change: change.to_owned(), business_id })
}
