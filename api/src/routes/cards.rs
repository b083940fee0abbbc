//! `/api/v1/municipalities/{code}/cards`: the card at the counter (手引き I 1.1–1.2) — register a card to a
//! resident, create its local resident area (地域住民向け領域設定, with the municipality's preset APs), install
//! several card APs at once (カードAP搭載), remove one, suspend, resume, abolish; and how many cards carry each AP.
//!
//! Owns the HTTP shape of a card and the mapping of every card refusal to a status and a stable problem `type`:
//! 409 for the card's or resident's state, 422 naming the AP by its index for what the request itself asks
//! wrongly, 422 `/problems/consent-required` for the certificate issuance AP (`01`, 手引き I 1.2) without the
//! resident's consent (`issuance_consent`), 404 for a card of another municipality (exactly as for one that does
//! not exist). The decisions are `ResidentServices`; the AP counts come from the card register.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cardap_commands::residents::{CardAction, CardSnapshot, RegistrationError};
use cardap_commands::{CommandError, Permission, authorize};
use cardap_domain::Localized;
use cardap_domain::card::CardError;
use cardap_domain::resident::{CardFid, ResidentId};
use cardap_domain::{BusinessId, MunicipalityCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, ProblemType, command_error};
use crate::i18n::Text;
use crate::json::{ApiJson, DeferredJson};
use crate::routes::municipality_in_path;
use crate::routes::residents::registration_error;
use crate::routes::{RequestMeta, etag, if_match};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/municipalities/{code}/cards", post(register_card))
        .route("/api/v1/municipalities/{code}/cards/{fid}", get(show))
        .route("/api/v1/municipalities/{code}/cards/{fid}/local-area", post(local_area))
        .route("/api/v1/municipalities/{code}/cards/{fid}/aps", post(install))
        .route("/api/v1/municipalities/{code}/cards/{fid}/aps/{business_id}", delete(remove))
        .route("/api/v1/municipalities/{code}/cards/{fid}/suspend", post(suspend))
        .route("/api/v1/municipalities/{code}/cards/{fid}/resume", post(resume))
        .route("/api/v1/municipalities/{code}/cards/{fid}/abolish", post(abolish))
        .route("/api/v1/municipalities/{code}/card-aps", get(ap_counts))
}

/// A card to register to a resident of the municipality.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fid": "FID0000000000001", "resident_id": "0b7a0c2e-3f7d-5a1e-9b8e-2d5c1f0a6e11"}))]
pub struct CardInput {
    /// カードFID: 1–32 half-width letters and digits, unique nationwide; compared without regard to case and
    /// stored (and answered) in upper case, so `0a1b` and `0A1B` are one card.
    #[serde(default)]
    pub fid: Option<String>,
    /// The resident (of this municipality) the card is his.
    #[serde(default)]
    pub resident_id: Option<String>,
}

/// APs to install at once, all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"business_ids": ["01", "02"], "issuance_consent": true}))]
pub struct ApsInput {
    /// Business ids of the card APs: in the municipality's catalog, permitted to it, and to the clerk (許可業務).
    #[serde(default)]
    pub business_ids: Option<Vec<String>>,
    /// The resident's consent to his user info (the fields of the certificate issuance system's feed) going to the
    /// issuance server (証明発行サーバ): `true` is recorded with the install of AP `01` (when, and by this clerk);
    /// without it AP `01` is refused (422 `/problems/consent-required`). Other APs ignore it.
    #[serde(default)]
    pub issuance_consent: Option<bool>,
}

/// The local area's optional body: the resident's answer for a preset AP `01`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"issuance_consent": true}))]
pub struct LocalAreaInput {
    /// For a preset certificate issuance AP (`01`): `true` installs it with the resident's consent recorded (when,
    /// and by this clerk), `false` (he declined) leaves it out; without it, a preset `01` that would be installed
    /// refuses the whole request (422 `/problems/consent-required`). Without a preset `01`, ignored.
    #[serde(default)]
    pub issuance_consent: Option<bool>,
}

/// One AP on a card.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardApView {
    pub business_id: String,
    /// 標準ID (library AP `02` only): the municipality code followed by 10 digits, unique nationwide.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "1310160123456789")]
    pub standard_id: Option<String>,
}

/// A card as shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"fid": "FID0000000000001", "resident_id": "0b7a0c2e-3f7d-5a1e-9b8e-2d5c1f0a6e11",
    "status": "in_use", "local_area": true,
    "aps": [{"business_id": "01"}, {"business_id": "02", "standard_id": "1310160123456789"}], "version": 4}))]
pub struct CardView {
    pub fid: String,
    pub resident_id: String,
    /// カード運用状態: `in_use`, `suspended` or `abolished`.
    #[schema(example = "in_use")]
    pub status: String,
    /// 地域住民向け領域 created.
    pub local_area: bool,
    /// Installed APs, by business id.
    pub aps: Vec<CardApView>,
    /// The stream version, also sent as `ETag`.
    pub version: u64,
}

/// How many cards (not abolished) carry one AP.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApCount {
    pub business_id: String,
    pub cards: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"items": [{"business_id": "01", "cards": 120}, {"business_id": "02", "cards": 45}]}))]
pub struct ApCounts {
    pub items: Vec<ApCount>,
}

pub(crate) fn view(s: &CardSnapshot) -> CardView {
    CardView {
        fid: s.card.fid.to_string(),
        resident_id: s.card.resident_id.to_string(),
        status: s.card.status.as_str().to_owned(),
        local_area: s.card.local_area,
        aps: s
            .card
            .aps
            .iter()
            .map(|(b, id)| CardApView {
                business_id: b.as_str().to_owned(),
                standard_id: id.as_ref().map(ToString::to_string),
            })
            .collect(),
        version: s.version,
    }
}

/// Maps a card's refusal; `business_ids` are the request's APs in order, to name a refused one by its index.
pub fn card_error(e: CardError, business_ids: &[BusinessId]) -> ApiError {
    let text = Text::of(&e);
    let at = |b: &BusinessId, nth: usize| {
        let index = business_ids.iter().enumerate().filter(|(_, x)| *x == b).nth(nth).map(|(i, _)| i);
        index.map_or_else(|| "/business_ids".to_owned(), |i| format!("/business_ids/{i}"))
    };
    match e {
        CardError::AlreadyRegistered => ApiError::state_conflict(ProblemType::FidTaken, text),
        CardError::NotRegistered => ApiError::not_found(),
        CardError::Abolished => ApiError::state_conflict(ProblemType::CardAbolished, text),
        CardError::Suspended => ApiError::state_conflict(ProblemType::CardSuspended, text),
        CardError::AlreadySuspended => ApiError::state_conflict(ProblemType::CardAlreadySuspended, text),
        CardError::NotSuspended => ApiError::state_conflict(ProblemType::CardNotSuspended, text),
        CardError::LocalAreaMissing => ApiError::state_conflict(ProblemType::LocalAreaMissing, text),
        CardError::LocalAreaExists => ApiError::state_conflict(ProblemType::LocalAreaExists, text),
        CardError::ApAlreadyInstalled(_) => ApiError::state_conflict(ProblemType::ApAlreadyInstalled, text),
        CardError::ApNotInstalled(_) => ApiError::state_conflict(ProblemType::ApNotInstalled, text),
        CardError::NoAps => ApiError::validation(vec![FieldError::new("/business_ids", text)]),
        CardError::DuplicateAp(ref b) => ApiError::validation(vec![FieldError::new(at(b, 1), text)]),
        CardError::ApNotInCatalog(ref b) | CardError::ApNotPermitted(ref b) => {
            ApiError::validation(vec![FieldError::new(at(b, 0), text)])
        }
        // The server pairs 標準IDs with the library AP itself; a mismatch is its own bug.
        CardError::StandardIdMismatch(_) => ApiError::internal(e),
        CardError::ConsentRequired => ApiError::consent_required("/issuance_consent", text),
        // What the clerk can fix in his request (422, every such AP by its place), then the consent he must ask
        // for; else what the card refuses.
        CardError::ApsRefused(refused) => {
            let fixable: Vec<FieldError> = refused
                .iter()
                .filter(|(_, e)| {
                    matches!(e, CardError::DuplicateAp(_) | CardError::ApNotInCatalog(_) | CardError::ApNotPermitted(_))
                })
                .map(|(i, e)| FieldError::new(format!("/business_ids/{i}"), Text::of(&e)))
                .collect();
            let consent = refused.iter().any(|(_, e)| *e == CardError::ConsentRequired);
            match refused.into_iter().next() {
                _ if !fixable.is_empty() => ApiError::validation(fixable),
                _ if consent => card_error(CardError::ConsentRequired, business_ids),
                Some((_, first)) => card_error(first, business_ids),
                None => ApiError::internal("an install refused without a reason"),
            }
        }
    }
}

pub(crate) fn mapped(e: CommandError<RegistrationError>, business_ids: &[BusinessId]) -> ApiError {
    command_error(e, |d| registration_error(d, business_ids))
}

pub(crate) fn fid_in_path(fid: &str) -> Result<CardFid, ApiError> {
    CardFid::parse(fid).map_err(|_| ApiError::not_found())
}

pub(crate) async fn answered(
    state: &AppState,
    snapshot: &CardSnapshot,
    checkpoint: Option<cardap_commands::Checkpoint>,
) -> Response {
    if let Some(checkpoint) = checkpoint {
        // A card decision also changes its resident (card attached, detached): both views answer for it.
        state.residents.card_shown(checkpoint).await;
        state.metrics.commands_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    (etag(snapshot.version), Json(view(snapshot))).into_response()
}

/// Register a card to a resident: it is in use from now on and becomes his one active card. The resident is
/// checked first: one who is not of this municipality (or does not exist) is refused as `/resident_id` (422),
/// one who moved out or already has a card with `/problems/resident-moved-out` or `/problems/resident-has-card`
/// (409), whatever the FID. Then an FID held anywhere (registered and not abolished) is `/problems/fid-taken`
/// (409): the same answer whether it is held in this municipality or in another, never saying where. An
/// abolished card is released (its holder moved, the card with him): it is registered afresh, here or in any
/// other municipality, with no local area and no APs.
#[utoipa::path(post, operation_id = "registerCard",
    path = "/api/v1/municipalities/{code}/cards", tag = "cards", request_body = CardInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "A retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses((status = 201, body = CardView, headers(("ETag" = String), ("Location" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/resident-has-card`, \
            `/problems/resident-moved-out` (the resident, decided first); `/problems/fid-taken` (the FID is held, \
            here or elsewhere: one answer for both)"),
        (status = 422, body = ProblemDetails, description = "`/fid`, `/resident_id` (also: no such resident here)")))]
pub async fn register_card(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CardInput>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    let mut errors = vec![];
    let fid = match body.fid.as_deref() {
        None => {
            errors.push(FieldError::required("/fid"));
            None
        }
        Some(f) => CardFid::parse(f).map_err(|e| errors.push(FieldError::parse("/fid", &e))).ok(),
    };
    let resident_id = match body.resident_id.as_deref() {
        None => {
            errors.push(FieldError::required("/resident_id"));
            None
        }
        Some(r) => ResidentId::parse(r).map_err(|e| errors.push(FieldError::parse("/resident_id", &e))).ok(),
    };
    let (Some(fid), Some(resident_id)) = (fid, resident_id) else {
        return Err(ApiError::validation(errors));
    };
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "cards.register", &format!("{code}/{fid}"));
    let (snapshot, checkpoint) =
        state.residents.register_card(&ctx, &code, &fid, &resident_id).await.map_err(|e| match e {
            CommandError::Domain(RegistrationError::ResidentNotFound) => no_such_resident(),
            other => mapped(other, &[]),
        })?;
    let mut response = answered(&state, &snapshot, checkpoint).await;
    *response.status_mut() = StatusCode::CREATED;
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/municipalities/{code}/cards/{fid}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The same answer for a resident of another municipality as for one who does not exist.
fn no_such_resident() -> ApiError {
    ApiError::validation(vec![FieldError::new(
        "/resident_id",
        Text::new("この市町村に該当する利用者が登録されていません", "no such resident in this municipality"),
    )])
}

#[utoipa::path(get, operation_id = "showCard", path = "/api/v1/municipalities/{code}/cards/{fid}", tag = "cards",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails)))]
pub async fn show(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidents(code.clone()))?;
    let fid = fid_in_path(&fid)?;
    let snapshot = state.residents.card(&code, &fid).await.map_err(|e| mapped(e, &[]))?;
    Ok((etag(snapshot.version), Json(view(&snapshot))).into_response())
}

/// Runs one card operation and answers with the card.
async fn act(
    state: &AppState,
    auth: &Authenticated,
    headers: &HeaderMap,
    code: MunicipalityCode,
    fid: &str,
    name: &str,
    action: CardAction,
) -> Result<Response, ApiError> {
    let fid = fid_in_path(fid)?;
    let ids = match &action {
        CardAction::InstallAps { business_ids, .. } => business_ids.clone(),
        CardAction::RemoveAp(id) => vec![id.clone()],
        _ => vec![],
    };
    let meta = RequestMeta::from_headers(headers);
    let ctx = meta.context(auth, &format!("cards.{name}"), &format!("{code}/{fid}"));
    let (snapshot, checkpoint) = state
        .residents
        .card_action(&ctx, &code, &fid, if_match(headers)?, action)
        .await
        .map_err(|e| mapped(e, &ids))?;
    Ok(answered(state, &snapshot, checkpoint).await)
}

/// The municipality in the path, and the clerk's right to register residents and cards there.
async fn clerk_of(state: &AppState, auth: &Authenticated, code: &str) -> Result<MunicipalityCode, ApiError> {
    let code = municipality_in_path(state, auth, code).await?;
    authorize(&auth.actor, &Permission::RegisterResidents(code.clone()))?;
    Ok(code)
}

/// 地域住民向け領域設定: creates the local resident area; the municipality's preset APs it may still use are
/// installed with it (the library AP with a fresh 標準ID). The body is optional: a preset certificate issuance AP
/// (`01`) needs the resident's answer (`issuance_consent`).
#[utoipa::path(post, operation_id = "createLocalArea",
    path = "/api/v1/municipalities/{code}/cards/{fid}/local-area", tag = "cards",
    request_body(content = Option<LocalAreaInput>, description = "Optional; none is `{}`",
        example = json!({"issuance_consent": true})),
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails,
            description = "`/problems/local-area-exists`, `/problems/card-suspended`, \
            `/problems/card-abolished`"),
        (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "`/problems/consent-required`: a preset AP `01` and no \
            `issuance_consent`")))]
pub async fn local_area(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
    body: DeferredJson,
) -> Result<Response, ApiError> {
    let code = clerk_of(&state, &auth, &code).await?;
    let body: LocalAreaInput = body.parse_optional().await?.unwrap_or_default();
    let action = CardAction::CreateLocalArea { issuance_consent: body.issuance_consent };
    act(&state, &auth, &headers, code, &fid, "local_area", action).await
}

/// カードAP搭載: several APs at once, all or none. Each must be in the municipality's catalog and permitted to it
/// (422 `/business_ids/{i}`), and the clerk must be permitted its business system (403).
#[utoipa::path(post, operation_id = "installCardAps",
    path = "/api/v1/municipalities/{code}/cards/{fid}/aps", tag = "cards", request_body = ApsInput,
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/local-area-missing`, \
            `/problems/ap-already-installed`, `/problems/card-suspended`, `/problems/card-abolished`"),
        (status = 412, body = ProblemDetails),
        (status = 422, body = ProblemDetails, description = "`/business_ids/{i}`: not in the catalog, not permitted, \
            given twice; `/business_ids`: none given; `/problems/consent-required`: AP `01` without \
            `issuance_consent: true`")))]
pub async fn install(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ApsInput>,
) -> Result<Response, ApiError> {
    let code = clerk_of(&state, &auth, &code).await?;
    let mut errors = vec![];
    let mut ids = vec![];
    let raw = body.business_ids.unwrap_or_default();
    for (i, r) in raw.iter().enumerate() {
        match BusinessId::parse(r) {
            Ok(id) => ids.push(id),
            Err(e) => errors.push(FieldError::parse(format!("/business_ids/{i}"), &e)),
        }
    }
    if raw.is_empty() {
        errors.push(FieldError::new(
            "/business_ids",
            Text::new(CardError::NoAps.message_ja(), CardError::NoAps.to_string()),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    for id in &ids {
        authorize(&auth.actor, &Permission::ManageCardAp(code.clone(), id.clone()))?;
    }
    // The decision names every refused AP at once (a card that cannot take APs at all says so first, 409).
    let action = CardAction::InstallAps { business_ids: ids, issuance_consent: body.issuance_consent };
    act(&state, &auth, &headers, code, &fid, "install_aps", action).await
}

/// Remove one AP (the clerk must be permitted its business system).
#[utoipa::path(delete, operation_id = "removeCardAp",
    path = "/api/v1/municipalities/{code}/cards/{fid}/aps/{business_id}", tag = "cards",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("business_id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since")),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/ap-not-installed`, `/problems/card-abolished`"),
        (status = 412, body = ProblemDetails)))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid, business_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    let business_id = BusinessId::parse(&business_id).map_err(|_| ApiError::not_found())?;
    authorize(&auth.actor, &Permission::ManageCardAp(code.clone(), business_id.clone()))?;
    act(&state, &auth, &headers, code, &fid, "remove_ap", CardAction::RemoveAp(business_id)).await
}

/// 一時停止 (e.g. reported lost): nothing can be installed until it is resumed.
#[utoipa::path(post, operation_id = "suspendCard",
    path = "/api/v1/municipalities/{code}/cards/{fid}/suspend", tag = "cards",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/card-already-suspended`, \
            `/problems/card-abolished`"),
        (status = 412, body = ProblemDetails)))]
pub async fn suspend(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = clerk_of(&state, &auth, &code).await?;
    act(&state, &auth, &headers, code, &fid, "suspend", CardAction::Suspend).await
}

/// 再開: a suspended card is in use again.
#[utoipa::path(post, operation_id = "resumeCard",
    path = "/api/v1/municipalities/{code}/cards/{fid}/resume", tag = "cards",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails,
            description = "`/problems/card-not-suspended`, `/problems/card-abolished`"),
        (status = 412, body = ProblemDetails)))]
pub async fn resume(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = clerk_of(&state, &auth, &code).await?;
    act(&state, &auth, &headers, code, &fid, "resume", CardAction::Resume).await
}

/// 廃止, for good: the resident may get a new card afterwards.
#[utoipa::path(post, operation_id = "abolishCard",
    path = "/api/v1/municipalities/{code}/cards/{fid}/abolish", tag = "cards",
    params(("code" = String, Path, description = "全国地方公共団体コード"), ("fid" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key changes nothing")),
    security(("bearer" = [])),
    responses((status = 200, body = CardView, headers(("ETag" = String))),
        (status = 403, body = ProblemDetails), (status = 404, body = ProblemDetails),
        (status = 409, body = ProblemDetails, description = "`/problems/card-abolished`"),
        (status = 412, body = ProblemDetails)))]
pub async fn abolish(
    State(state): State<AppState>,
    auth: Authenticated,
    Path((code, fid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let code = clerk_of(&state, &auth, &code).await?;
    act(&state, &auth, &headers, code, &fid, "abolish", CardAction::Abolish).await
}

/// How many cards of the municipality (not abolished) carry each AP.
#[utoipa::path(get, operation_id = "countCardAps", path = "/api/v1/municipalities/{code}/card-aps", tag = "cards",
    params(("code" = String, Path, description = "全国地方公共団体コード")),
    security(("bearer" = [])),
    responses((status = 200, body = ApCounts), (status = 403, body = ProblemDetails),
        (status = 404, body = ProblemDetails)))]
pub async fn ap_counts(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(code): Path<String>,
) -> Result<Json<ApCounts>, ApiError> {
    let code = municipality_in_path(&state, &auth, &code).await?;
    authorize(&auth.actor, &Permission::ViewResidents(code.clone()))?;
    let counts = state.residents.ap_counts(&code).await?;
    let items =
        counts.into_iter().map(|(b, cards)| ApCount { business_id: b.as_str().to_owned(), cards }).collect::<Vec<_>>();
    Ok(Json(ApCounts { items }))
}
