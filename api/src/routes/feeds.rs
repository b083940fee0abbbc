//! `/api/v1/feeds/{business_id}`: a business system's replication feed (利用者情報の連携), read by the business
//! system itself over mutual TLS with its business server certificate; and
//! `/api/v1/business-systems/{business_id}/feed-fields`: the field list its feed carries (データの最小化), for the
//! system administrator.
//!
//! Choices of this module, also stated in `/openapi.json`:
//! - the feed authenticates the business system by its client certificate only (a bearer session of an operator
//!   is not a business system): no certificate, or one that is not a live business server certificate cardap
//!   issued, is `401`; another system's feed, a business ID never registered and a retired system are `404`;
//! - `next_cursor` is always where to resume (the id of the last item looked at), also on the last page: keep it
//!   and pass it back; it is `null` only when nothing was ever read and no cursor was given;
//! - `wait` (seconds, at most 30) long-polls: an empty page is answered only after that long, or as soon as an
//!   item comes;
//! - `Accept: text/event-stream` answers the same items as Server-Sent Events, `id:` the item id and `data:` the
//!   item as JSON; `Last-Event-ID` (or `cursor`) resumes after that item; a comment every 10 s keeps the
//!   connection alive; the stream ends when the server shuts down or the system is retired.
//!
//! Must not decide what an item holds or who is entitled (that is `cardap_commands::feeds` and the feeds' index
//! among the read models); it authenticates, parses, calls one use case and answers.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cardap_commands::feeds::{FeedError, FeedItem, FeedRequest, MAX_LIMIT, MAX_WAIT};
use cardap_domain::BusinessId;
use cardap_domain::feed_fields::{FeedField, FeedFields};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::i18n::Text;
use crate::json::{ApiJson, ApiQuery};
use crate::paging;
use crate::routes::business_systems::domain_error;
use crate::routes::{RequestMeta, etag, if_match};
use crate::state::AppState;

/// How often an idle SSE stream sends a comment, so that proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/feeds/{business_id}", get(read))
        .route("/api/v1/business-systems/{business_id}/feed-fields", get(show_fields).put(set_fields))
}

/// The business system whose business server certificate the TLS connection was authenticated with.
#[derive(Debug, Clone)]
pub struct BusinessSystemClient(pub BusinessId);

impl FromRequestParts<AppState> for BusinessSystemClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let refused = || {
            ApiError::unauthenticated().with_detail(Text::new(
                "業務サーバ証明書（クライアント証明書）による相互TLS認証が必要です",
                "mutual TLS with the business system's server certificate (as the client certificate) is required",
            ))
        };
        let Some(peer) = parts.extensions.get::<crate::tls::PeerCertificate>() else { return Err(refused()) };
        let caller = state.feeds.caller(&peer.0).await.map_err(feed_error)?;
        caller.map(BusinessSystemClient).ok_or_else(refused)
    }
}

fn feed_error(e: FeedError) -> ApiError {
    match e {
        FeedError::NotFound => ApiError::not_found(),
        FeedError::InvalidCursor => ApiError::invalid_cursor(),
        FeedError::Store(s) => s.into(),
        FeedError::Query(q) => q.into(),
        FeedError::Internal(i) => ApiError::internal(i),
    }
}

/// One item of a feed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "812-40-0", "type": "registered", "municipality": "131016",
    "resident_id": "0190a6c2-3c4d-7e5f-8a9b-0c1d2e3f4a5b",
    "data": {"kana_name": {"family": "ヤマダ", "given": "タロウ"}, "kanji_name": {"family": "山田", "given": "太郎"},
        "standard_id": "1310161234567890", "card_status": "in_use"}
}))]
pub struct FeedItemView {
    /// Stable; pass it as `cursor` (or `Last-Event-ID`) to resume after it.
    pub id: String,
    /// `registered` (the first item of a newly entitled resident: every field of the list as he stands),
    /// `changed` (the listed fields that changed), `card_suspended`, `card_resumed`, `card_abolished` and
    /// `ap_removed` (the last item until he is entitled again), `moved_out`, `erased` (no personal data: drop
    /// what you keep of him); to a library system, `standard_id_replaced` (`data`: `old_standard_id`,
    /// `new_standard_id`: a reissued card's new 標準ID replaces one it linked; the link follows, and
    /// `resident_id` is empty unless the system serves the card's municipality); to the certificate issuance system,
    /// `issuance_service` (about no resident, `resident_id` `null`; `data`: the municipality's issuance service as it
    /// stood then — `certificates` (codes), `opens`, `closes` (`HH:MM`), `closed_periods` (`[{from, to}]`, `MM-DD`) —
    /// when it is set and when the municipality becomes permitted to use `01`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The resident's municipality (全国地方公共団体コード or association ID); of an `issuance_service` item, the
    /// municipality whose service it is.
    pub municipality: String,
    /// `null` for an item about no resident (`issuance_service`).
    pub resident_id: Option<String>,
    /// Only the fields of the system's field list (`kana_name`, `kanji_name`, `birth_date`, `sex`,
    /// `postal_code`, `address1`, `address2`, `phone`, `email`, `occupation`, `custom_fields`, `standard_id`,
    /// `card_status`), in the resident API's shapes.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<FeedItem> for FeedItemView {
    fn from(i: FeedItem) -> Self {
        FeedItemView { id: i.id, kind: i.kind, municipality: i.municipality, resident_id: i.resident_id, data: i.data }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedPage {
    /// In the feed's order: the log's, per resident in the order things happened to him.
    pub items: Vec<FeedItemView>,
    /// Where to resume (also after the last page): pass it as `cursor`. `null` only when nothing was read yet
    /// and no cursor was given.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// The id of the last item received (from `next_cursor` or an item's `id`); none: from the start.
    pub cursor: Option<String>,
    /// Page size, 1–500 (default 100).
    #[param(minimum = 1, maximum = 500, example = 100)]
    pub limit: Option<i64>,
    /// Long poll: when no item is there yet, wait up to this many seconds (0–30, default 0) for the first.
    #[param(minimum = 0, maximum = 30, example = 20)]
    pub wait: Option<i64>,
}

/// Read the feed (as a business system, over mutual TLS with its business server certificate).
#[utoipa::path(get, operation_id = "readFeed", path = "/api/v1/feeds/{business_id}", tag = "feeds",
    params(("business_id" = String, Path), FeedParams,
        ("Last-Event-ID" = Option<String>, Header, description = "With `Accept: text/event-stream`: resume after this item id (instead of `cursor`)")),
    security(("mutual_tls" = [])),
    responses(
        (status = 200, description = "A page of items as JSON; with `Accept: text/event-stream` the items as \
            Server-Sent Events (`id:` the item id, `data:` the item as JSON, a comment every 10 s while idle)",
            content((FeedPage = "application/json"), (String = "text/event-stream"))),
        (status = 400, body = ProblemDetails, description = "`/problems/invalid-cursor`: the cursor (or \
            `Last-Event-ID`) names no item of this feed"),
        (status = 401, body = ProblemDetails, description = "No business server certificate cardap issued (and has \
            not revoked) was presented as the TLS client certificate"),
        (status = 404, body = ProblemDetails, description = "Another system's feed, or a business ID not registered \
            or retired")))]
pub async fn read(
    State(state): State<AppState>,
    client: BusinessSystemClient,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<FeedParams>,
) -> Result<Response, ApiError> {
    let mut errors = vec![];
    let limit = paging::limit(params.limit, i64::try_from(MAX_LIMIT).unwrap_or(500)).map_err(|e| errors.push(e)).ok();
    let max_wait = i64::try_from(MAX_WAIT.as_secs()).unwrap_or(30);
    let wait = match params.wait {
        None => Some(0),
        Some(w) if (0..=max_wait).contains(&w) => u64::try_from(w).ok(),
        Some(_) => None,
    };
    if wait.is_none() {
        errors.push(FieldError::new(
            "/wait",
            Text::new(format!("0から{max_wait}の範囲で指定してください"), format!("must be between 0 and {max_wait}")),
        ));
    }
    let (Some(limit), Some(wait), true) = (limit, wait, errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    let request = FeedRequest { request_id: RequestMeta::from_headers(&headers).request_id };
    let sse =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"));
    if sse {
        let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cursor = last_event_id.or(params.cursor);
        let items =
            state.feeds.follow(&client.0, &business_id, cursor.as_deref(), request).await.map_err(feed_error)?;
        let events = items.map(|item| {
            let id = item.id.clone();
            Ok::<_, Infallible>(match Event::default().id(id).json_data(FeedItemView::from(item)) {
                Ok(event) => event,
                // Serializing an item (strings and JSON values) cannot fail; a comment keeps the stream well-formed.
                Err(_) => Event::default().comment("an item could not be written"),
            })
        });
        let keep_alive = KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive");
        return Ok(Sse::new(events).keep_alive(keep_alive).into_response());
    }
    let page = state
        .feeds
        .page(&client.0, &business_id, params.cursor.as_deref(), limit, Duration::from_secs(wait), &request)
        .await
        .map_err(feed_error)?;
    Ok(Json(FeedPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor })
        .into_response())
}

/// The field list of a business system's feed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"fields": ["kana_name", "kanji_name", "standard_id", "card_status"], "default": true, "version": 3}))]
pub struct FeedFieldsView {
    /// The fields its feed carries, in the order of the 利用者登録 screen.
    #[schema(value_type = Vec<String>)]
    pub fields: Vec<&'static str>,
    /// `true`: never set, the built-in default of its business ID (`01`: names, birth date, sex, card status;
    /// `02`: names, 標準ID, card status; any other: names, card status).
    pub default: bool,
    /// The business system's version, also sent as `ETag`.
    pub version: u64,
}

/// Replace the field list: every field the feed may carry from now on (items delivered after the change carry
/// these and no others).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"fields": ["kana_name", "kanji_name", "standard_id", "card_status", "email"]}))]
pub struct SetFeedFields {
    /// Any of `kana_name`, `kanji_name`, `birth_date`, `sex`, `postal_code`, `address1`, `address2`, `phone`,
    /// `email`, `occupation`, `custom_fields`, `standard_id`, `card_status`; an empty list sends ids and item types
    /// only. The certificate issuance system's (`01`) keeps `card_status`: its kiosks refuse a suspended or
    /// abolished card by it.
    pub fields: Vec<String>,
}

/// The business ID in the path, for the system administrator (registered or not is the stream's to say: the use
/// case answers `NotRegistered`, a 404).
fn business_id_in_path(auth: &Authenticated, business_id: &str) -> Result<BusinessId, ApiError> {
    cardap_commands::authorize(&auth.actor, &cardap_commands::Permission::ManageBusinessSystems)?;
    BusinessId::parse(business_id).map_err(|_| ApiError::not_found())
}

#[utoipa::path(get, operation_id = "showFeedFields", path = "/api/v1/business-systems/{business_id}/feed-fields",
    tag = "feeds", params(("business_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = FeedFieldsView),
        (status = 403, body = ProblemDetails, description = "Only the system administrator"),
        (status = 404, body = ProblemDetails, description = "No such business system")))]
pub async fn show_fields(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = business_id_in_path(&auth, &business_id)?;
    let list = state.feeds.fields(&auth.actor, &id).await.map_err(|e| command_error(e, domain_error))?;
    let list = list.ok_or_else(ApiError::not_found)?;
    let view = FeedFieldsView { fields: list.fields.names(), default: !list.set, version: list.version };
    Ok((etag(list.version), Json(view)).into_response())
}

#[utoipa::path(put, operation_id = "setFeedFields", path = "/api/v1/business-systems/{business_id}/feed-fields",
    tag = "feeds", params(("business_id" = String, Path),
        ("If-Match" = Option<String>, Header, description = "The business system's ETag")),
    request_body = SetFeedFields,
    security(("bearer" = [])),
    responses((status = 200, body = FeedFieldsView),
        (status = 403, body = ProblemDetails, description = "Only the system administrator"),
        (status = 404, body = ProblemDetails, description = "No such business system"),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`"),
        (status = 422, body = ProblemDetails, description = "An unknown field name, named by its index (`/fields/2`); \
            `/fields`: the certificate issuance system's (`01`) list without `card_status`")))]
pub async fn set_fields(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetFeedFields>,
) -> Result<Response, ApiError> {
    let id = business_id_in_path(&auth, &business_id)?;
    let if_match = if_match(&headers)?;
    let mut errors = vec![];
    let mut fields = vec![];
    for (index, name) in body.fields.iter().enumerate() {
        match FeedField::parse(name) {
            Ok(field) => fields.push(field),
            Err(e) => errors.push(FieldError::parse(format!("/fields/{index}"), &e)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let meta = RequestMeta::from_headers(&headers);
    let ctx = meta.context(&auth, "business-systems.feed-fields", id.as_str());
    let executed = state
        .feeds
        .set_fields(&ctx, &id, if_match, FeedFields::new(fields))
        .await
        .map_err(|e| command_error(e, domain_error))?;
    let state_now = &executed.state;
    let view = FeedFieldsView {
        fields: state_now.feed_fields().names(),
        default: !state_now.feed_fields_set(),
        version: executed.version,
    };
    Ok((etag(executed.version), Json(view)).into_response())
}
