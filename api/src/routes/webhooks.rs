//! `/api/v1/business-systems/{business_id}/webhook`: the optional webhook push of a business system's
//! replication feed, for the system administrator — `PUT` sets its URL (`{url}`: https, or http to loopback),
//! `DELETE` removes it, `POST …/webhook/secret` issues the HMAC-SHA-256 signing secret (shown once).
//!
//! Must not push anything nor keep the secret (`cardap_commands::webhooks`); it authorizes the path, parses,
//! calls one use case and answers.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use cardap_commands::{Permission, authorize};
use cardap_domain::webhook::WebhookUrl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Authenticated;
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::json::ApiJson;
use crate::routes::business_systems::{domain_error, path_id};
use crate::routes::{RequestMeta, etag};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/business-systems/{business_id}/webhook", put(set).delete(remove))
        .route("/api/v1/business-systems/{business_id}/webhook/secret", post(issue_secret))
}

/// Where the feed is pushed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://b05.example.jp/cardap/feed"}))]
pub struct SetWebhook {
    /// `https://…`, or `http://` to `127.0.0.1`, `[::1]` or `localhost` only.
    pub url: String,
}

/// A business system's webhook as it is now.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"url": "https://b05.example.jp/cardap/feed", "secret_issued": false, "version": 4}))]
pub struct WebhookView {
    pub url: String,
    /// Whether a signing secret was issued (nothing is pushed until one is).
    pub secret_issued: bool,
    /// The business system's version, also sent as `ETag`.
    pub version: u64,
}

/// A new signing secret: shown once, never again.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"secret": "whsec_3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}))]
pub struct IssuedWebhookSecret {
    /// The HMAC-SHA-256 key: `X-Cardap-Signature` is `sha256=` and the hex HMAC of the body under this text.
    pub secret: String,
}

#[utoipa::path(put, operation_id = "setWebhook", path = "/api/v1/business-systems/{business_id}/webhook",
    tag = "feeds", params(("business_id" = String, Path)), request_body = SetWebhook,
    security(("bearer" = [])),
    responses((status = 200, body = WebhookView, description = "The feed is pushed to this URL once a secret is issued"),
        (status = 403, body = ProblemDetails, description = "Only the system administrator"),
        (status = 404, body = ProblemDetails, description = "No such business system"),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`"),
        (status = 422, body = ProblemDetails, description = "`/url`: not https (nor http to loopback)")))]
pub async fn set(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SetWebhook>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let url = WebhookUrl::parse(&body.url).map_err(|e| ApiError::validation(vec![FieldError::parse("/url", &e)]))?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.webhook", id.as_str());
    let executed = state.webhooks.set_webhook(&ctx, &id, url).await.map_err(|e| command_error(e, domain_error))?;
    let url = executed.state.webhook().map(|u| u.as_str().to_owned()).unwrap_or_default();
    let view =
        WebhookView { url, secret_issued: executed.state.webhook_secret_issued().is_some(), version: executed.version };
    Ok((etag(executed.version), Json(view)).into_response())
}

#[utoipa::path(delete, operation_id = "removeWebhook", path = "/api/v1/business-systems/{business_id}/webhook",
    tag = "feeds", params(("business_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "Nothing is pushed any more (also when there was no webhook)"),
        (status = 403, body = ProblemDetails, description = "Only the system administrator"),
        (status = 404, body = ProblemDetails, description = "No such business system"),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`")))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.webhook", id.as_str());
    let executed = state.webhooks.remove_webhook(&ctx, &id).await.map_err(|e| command_error(e, domain_error))?;
    Ok((StatusCode::NO_CONTENT, etag(executed.version)).into_response())
}

#[utoipa::path(post, operation_id = "issueWebhookSecret",
    path = "/api/v1/business-systems/{business_id}/webhook/secret", tag = "feeds",
    params(("business_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 201, body = IssuedWebhookSecret, description = "A new secret, shown once; the old one stops signing"),
        (status = 403, body = ProblemDetails, description = "Only the system administrator"),
        (status = 404, body = ProblemDetails, description = "No such business system"),
        (status = 409, body = ProblemDetails,
            description = "`/problems/webhook-not-configured` (set its URL first), `/problems/business-system-retired`")))]
pub async fn issue_secret(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    // Each request issues a new secret: no Idempotency-Key (a replay could not show the secret again).
    let ctx = RequestMeta { idempotency_key: None, ..RequestMeta::from_headers(&headers) }.context(
        &auth,
        "business-systems.webhook-secret",
        id.as_str(),
    );
    let issued = state.webhooks.issue_secret(&ctx, &id).await.map_err(|e| command_error(e, domain_error))?;
    let body = IssuedWebhookSecret { secret: issued.secret.expose().to_owned() };
    let mut response = (StatusCode::CREATED, etag(issued.version), Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
