//! Login to business systems through cardap (業務ログイン認証): the OpenID Connect endpoints — discovery, JWKS,
//! the authorization endpoint (an operator already authenticated by a session token or an operator certificate
//! goes straight back with a code; anyone else gets cardap's login form: 市町村コード + オペレータID + パスワード)
//! and the token endpoint — and the system administrator's registration of a business system as a login client
//! (its redirect URIs, its client secret shown once). The rules are in `cardap_commands::oidc`.
//!
//! The authorization endpoint answers HTML or a redirect, the token endpoint OAuth 2.0 JSON errors (RFC 6749
//! §5.2), as the protocol demands; the login-client resources are part of the JSON API (problem+json).

use std::net::SocketAddr;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cardap_commands::access::{LoginError, Presented};
use cardap_commands::oidc::{AuthRequest, AuthorizeError, CheckedRequest, TokenError, TokenRequest};
use cardap_commands::{Permission, authorize};
use cardap_domain::BusinessId;
use cardap_domain::login_client::{LoginClient, RedirectUri};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Authenticated, Secret};
use crate::error::{ApiError, FieldError, ProblemDetails, command_error};
use crate::json::ApiJson;
use crate::routes::business_systems::path_id;
use crate::routes::{RequestMeta, etag, if_match};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/authorize", get(authorize_get).post(authorize_post))
        .route("/oidc/token", post(token))
        .route("/api/v1/business-systems/{business_id}/login-client", get(show_client).put(configure_client))
        .route("/api/v1/business-systems/{business_id}/login-client/secret", post(issue_secret))
}

/// The login form's fields besides the authorization request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub struct LoginForm {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub request: AuthRequest,
    /// 市町村コード (empty for the system administrator).
    pub municipality: Option<String>,
    pub operator_id: Option<String>,
    pub password: Option<String>,
}

#[utoipa::path(get, operation_id = "openidConfiguration", path = "/.well-known/openid-configuration", tag = "login",
    responses((status = 200, description = "OpenID Connect discovery document", body = Object)))]
pub async fn discovery(State(state): State<AppState>) -> Response {
    Json(state.oidc.discovery()).into_response()
}

#[utoipa::path(get, operation_id = "oidcJwks", path = "/oidc/jwks", tag = "login",
    responses((status = 200, description = "The ID-token signing keys (JWKS, ES256)", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.oidc.jwks().map_err(ApiError::internal)?;
    Ok(Json(keys).into_response())
}

#[utoipa::path(get, operation_id = "oidcAuthorize", path = "/oidc/authorize", tag = "login",
    params(
        ("response_type" = Option<String>, Query, description = "`code`"),
        ("client_id" = Option<String>, Query, description = "The business system's 業務ID"),
        ("redirect_uri" = Option<String>, Query, description = "One of its registered redirect URIs, exactly"),
        ("scope" = Option<String>, Query, description = "Must include `openid`"),
        ("state" = Option<String>, Query, description = "Returned as given"),
        ("nonce" = Option<String>, Query, description = "Put into the ID token"),
        ("code_challenge" = Option<String>, Query, description = "PKCE S256 challenge (required)"),
        ("code_challenge_method" = Option<String>, Query, description = "`S256`"),
        ("prompt" = Option<String>, Query, description = "`none`: no login form (`login_required` instead); `login`: always the form")),
    responses(
        (status = 200, description = "cardap's login form (市町村コード, オペレータID, パスワード)", content_type = "text/html"),
        (status = 303, description = "Back to the business system with `code` (or an OAuth `error`), `state` and `iss`"),
        (status = 400, description = "Unknown client or unregistered redirect URI: shown, never redirected", content_type = "text/html")))]
pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<crate::tls::PeerCertificate>>,
    Query(request): Query<AuthRequest>,
) -> Response {
    let checked = match state.oidc.check(&request).await {
        Ok(checked) => checked,
        Err(e) => return refused(&state, request.state.as_deref(), &e),
    };
    let forced = request.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == "login"));
    if !forced
        && let Some(presented) = presented(&headers, peer.as_ref().map(|Extension(p)| p))
        && let Ok(Some(session)) = state.access.authenticate_presented(&presented).await
    {
        return match state.oidc.authorize(&checked, &session).await {
            Ok(url) => see_other(&url),
            Err(e) => refused(&state, checked.state.as_deref(), &e),
        };
    }
    if checked.no_prompt {
        let e = AuthorizeError::Redirect {
            redirect: checked.redirect_uri.clone(),
            error: "login_required",
            description: "the operator is not logged in to cardap".to_owned(),
        };
        return refused(&state, checked.state.as_deref(), &e);
    }
    login_page(StatusCode::OK, &request, &checked, None, None)
}

#[utoipa::path(post, operation_id = "oidcLogin", path = "/oidc/authorize", tag = "login",
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded",
        description = "The authorization request's parameters and the operator's 市町村コード, オペレータID, パスワード",
        example = json!({"response_type": "code", "client_id": "05", "redirect_uri": "https://portal.example.jp/oidc/callback",
            "scope": "openid", "state": "af0ifjsldkj", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256", "municipality": "131016", "operator_id": "OP0501", "password": "Passw0rd"})),
    responses(
        (status = 303, description = "Back to the business system with `code` (or an OAuth `error`), `state` and `iss`"),
        (status = 400, description = "Unknown client or unregistered redirect URI", content_type = "text/html"),
        (status = 401, description = "Wrong municipality, operator ID or password: the form again", content_type = "text/html"),
        (status = 403, description = "The operator is locked, or must log in biometrically (or with his operator \
            certificate): the form again", content_type = "text/html"),
        (status = 429, description = "Too many failed logins: the form again, with `Retry-After`", content_type = "text/html")))]
pub async fn authorize_post(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Response {
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let checked = match state.oidc.check(&form.request).await {
        Ok(checked) => checked,
        Err(e) => return refused(&state, form.request.state.as_deref(), &e),
    };
    let municipality = form.municipality.as_deref().map(str::trim).filter(|m| !m.is_empty());
    let operator_id = form.operator_id.clone().unwrap_or_default();
    let password = Secret::new(form.password.clone().unwrap_or_default());
    let client = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let outcome = state.oidc.authorize_with_password(&checked, municipality, &operator_id, password, client).await;
    match outcome {
        Ok(Ok(url)) => see_other(&url),
        Ok(Err(e)) => refused(&state, checked.state.as_deref(), &e),
        Err(e) => {
            let (status, message, retry) = match &e {
                LoginError::InvalidCredentials => {
                    (StatusCode::UNAUTHORIZED, "市町村コード、オペレータID またはパスワードが違います。", None)
                }
                LoginError::Locked { .. } => {
                    (StatusCode::FORBIDDEN, "このオペレータはロックされています。管理者に連絡してください。", None)
                }
                LoginError::BiometricRequired => (
                    StatusCode::FORBIDDEN,
                    "このオペレータは生体認証（またはオペレータ証明書）でのログインが必要です。",
                    None,
                ),
                LoginError::Throttled { retry_after } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "ログインの失敗が続いたため、しばらく待ってから再度お試しください。",
                    Some(retry_after.as_secs().max(1)),
                ),
                LoginError::Busy => {
                    (StatusCode::SERVICE_UNAVAILABLE, "混み合っています。少し待ってから再度お試しください。", Some(1))
                }
                LoginError::Failed(f) => {
                    tracing::error!(error = %f, "login form failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, "ログインを処理できませんでした。", None)
                }
            };
            let mut page = login_page(status, &form.request, &checked, Some(message), Some(&form));
            if let Some(seconds) = retry
                && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
            {
                page.headers_mut().insert(header::RETRY_AFTER, v);
            }
            page
        }
    }
}

/// A successful token response, as documented.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenAnswer {
    /// Required by OAuth 2.0; opens nothing at cardap.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    /// The ID token (ES256): `municipality`, `operator_id`, `internal_id`, `role` (for this business system only),
    /// `auth_method`, `amr`, `name`, `nonce`.
    pub id_token: String,
}

/// An OAuth 2.0 error (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type`, `server_error`.
    pub error: String,
    pub error_description: String,
}

#[utoipa::path(post, operation_id = "oidcToken", path = "/oidc/token", tag = "login",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded",
        description = "`grant_type=authorization_code`, `code`, `redirect_uri`, `code_verifier`; the client \
            authenticates with HTTP Basic (業務ID, client secret), `client_id` + `client_secret` in the form, or \
            `client_id` alone over mutual TLS with its business server certificate (tls_client_auth)",
        example = json!({"grant_type": "authorization_code", "code": "SplxlOBeZQQYbYS6WxSbIA",
            "redirect_uri": "https://portal.example.jp/oidc/callback",
            "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "client_id": "05", "client_secret": "secret"})),
    responses(
        (status = 200, body = TokenAnswer, description = "The ID token"),
        (status = 400, body = OAuthError, content_type = "application/json",
            description = "`invalid_grant` (unknown, used, expired or foreign code; wrong redirect URI or PKCE verifier; \
            the operator may no longer use the business system), `invalid_request`, `unsupported_grant_type`"),
        (status = 401, body = OAuthError, content_type = "application/json",
            description = "`invalid_client`: unknown business system or wrong client secret")))]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Option<Extension<crate::tls::PeerCertificate>>,
    body: Bytes,
) -> Response {
    let request: TokenRequest = match serde_urlencoded::from_bytes(&body) {
        Ok(request) => request,
        Err(e) => return oauth_error(&TokenError::InvalidRequest(format!("the form cannot be read: {e}"))),
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, value)| STANDARD.decode(value.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
            let decode =
                |s: &str| form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned());
            Some((decode(id)?, decode(secret)?))
        });
    let certificate = peer.as_ref().map(|Extension(p)| &p.0[..]);
    match state.oidc.exchange(request, basic, certificate).await {
        Ok(answer) => {
            let mut response = Json(TokenAnswer {
                access_token: answer.access_token,
                token_type: answer.token_type.to_owned(),
                expires_in: answer.expires_in,
                id_token: answer.id_token,
            })
            .into_response();
            no_store(&mut response);
            response
        }
        Err(e) => oauth_error(&e),
    }
}

fn oauth_error(e: &TokenError) -> Response {
    let status = match e {
        TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        TokenError::Internal(why) => {
            tracing::error!(error = %why, "token endpoint failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let description = match e {
        TokenError::Internal(_) => "the token could not be issued".to_owned(),
        other => other.to_string().split_once(": ").map_or_else(|| other.to_string(), |(_, d)| d.to_owned()),
    };
    let body = OAuthError { error: e.code().to_owned(), error_description: description };
    let mut response = (status, Json(body)).into_response();
    if matches!(e, TokenError::InvalidClient(_)) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"cardap\""));
    }
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// What the request presented: a bearer token, else the connection's operator certificate.
fn presented(headers: &HeaderMap, peer: Option<&crate::tls::PeerCertificate>) -> Option<Presented> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| Secret::new(t.trim()));
    match (token, peer) {
        (Some(token), _) => Some(Presented::Token(token)),
        (None, Some(peer)) => Some(Presented::Certificate(peer.0.clone())),
        (None, None) => None,
    }
}

fn see_other(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            no_store(&mut response);
            response
        }
        Err(_) => html(StatusCode::BAD_REQUEST, "ログイン連携", "<p>戻り先のURLを作れません。</p>", None),
    }
}

/// A refused authorization: back to the business system when that is safe, else an error page.
fn refused(state: &AppState, client_state: Option<&str>, e: &AuthorizeError) -> Response {
    match state.oidc.error_redirect(client_state, e) {
        Some(url) => see_other(&url),
        None => {
            let body = format!(
                "<p>この業務システムへのログイン要求は受け付けられません。業務システムの管理者に連絡してください。</p>\
                 <p lang=\"en\">{}</p>",
                escape(&e.to_string())
            );
            html(StatusCode::BAD_REQUEST, "ログイン連携エラー", &body, None)
        }
    }
}

/// cardap's login form for a business system; `again` keeps what was typed (never the password).
fn login_page(
    status: StatusCode,
    request: &AuthRequest,
    checked: &CheckedRequest,
    message: Option<&str>,
    again: Option<&LoginForm>,
) -> Response {
    let mut hidden = String::new();
    let fields = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("scope", &request.scope),
        ("state", &request.state),
        ("nonce", &request.nonce),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            hidden.push_str(&format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value)));
        }
    }
    let kept =
        |f: fn(&LoginForm) -> &Option<String>| again.and_then(|a| f(a).as_deref()).map(escape).unwrap_or_default();
    let alert = message.map(|m| format!("<p role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    let body = format!(
        "<p>業務システム「{name}」（業務ID {id}）にログインします。</p>{alert}\
         <form method=\"post\" action=\"/oidc/authorize\">{hidden}\
         <p><label for=\"municipality\">市町村コード</label> <input id=\"municipality\" name=\"municipality\" \
         inputmode=\"numeric\" autocomplete=\"organization\" value=\"{municipality}\"> （システム管理者は空欄）</p>\
         <p><label for=\"operator_id\">オペレータID</label> <input id=\"operator_id\" name=\"operator_id\" required \
         autocomplete=\"username\" value=\"{operator_id}\"></p>\
         <p><label for=\"password\">パスワード</label> <input id=\"password\" name=\"password\" type=\"password\" \
         required autocomplete=\"current-password\"></p>\
         <p><button type=\"submit\">ログイン</button></p></form>",
        name = escape(&checked.business_name),
        id = escape(checked.business_id.as_str()),
        municipality = kept(|f| &f.municipality),
        operator_id = kept(|f| &f.operator_id),
    );
    html(status, "ログイン", &body, Some(&checked.redirect_uri))
}

/// An HTML page with a strict Content-Security-Policy (no script, no style, no frames); the form may post to
/// cardap and follow the redirect to `redirect_to`'s origin.
fn html(status: StatusCode, title: &str, body: &str, redirect_to: Option<&str>) -> Response {
    let page = format!(
        "<!DOCTYPE html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{} - cardap</title></head>\
         <body><h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    );
    let origin = redirect_to.and_then(origin_of).map(|o| format!(" {o}")).unwrap_or_default();
    let csp = format!("default-src 'none'; form-action 'self'{origin}; frame-ancestors 'none'; base-uri 'none'");
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response.headers_mut().insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    no_store(&mut response);
    response
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(format!("{scheme}://{authority}"))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A business system's registration as a login client.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"client_id": "05", "redirect_uris": ["https://portal.example.jp/oidc/callback"],
    "secret_issued_at": "2026-12-05T10:00:00Z", "version": 3}))]
pub struct LoginClientView {
    /// The OpenID Connect `client_id`: the 業務ID.
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    /// When its current client secret was issued; `null`: it has none yet (no token can be exchanged).
    pub secret_issued_at: Option<String>,
    /// The business system's stream version (its `ETag`).
    pub version: u64,
}

/// The redirect URIs to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"redirect_uris": ["https://portal.example.jp/oidc/callback"]}))]
pub struct ConfigureLoginClient {
    /// 1 to 10 distinct `https://` URLs (or `http://` to localhost, 127.0.0.1, [::1]), compared exactly.
    pub redirect_uris: Vec<String>,
}

/// A new client secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedClientSecret {
    pub client_id: String,
    /// Shown only in this answer; cardap keeps only its hash.
    pub client_secret: String,
}

fn view(
    id: &BusinessId,
    client: &LoginClient,
    issued: Option<cardap_domain::Timestamp>,
    version: u64,
) -> LoginClientView {
    LoginClientView {
        client_id: id.as_str().to_owned(),
        redirect_uris: client.redirect_uris.iter().map(|u| u.as_str().to_owned()).collect(),
        secret_issued_at: issued.and_then(|t| chrono::DateTime::from_timestamp(t.unix(), 0)).map(|t| t.to_rfc3339()),
        version,
    }
}

#[utoipa::path(get, operation_id = "showLoginClient",
    path = "/api/v1/business-systems/{business_id}/login-client", tag = "login",
    params(("business_id" = String, Path, description = "業務ID")),
    security(("bearer" = [])),
    responses((status = 200, body = LoginClientView),
        (status = 404, body = ProblemDetails, description = "No such business system, or it is not a login client")))]
pub async fn show_client(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let found = state.oidc.client_of(&id).await.map_err(|e| command_error(e, super::business_systems::domain_error))?;
    let (client, issued, version) = found.ok_or_else(ApiError::not_found)?;
    Ok((etag(version), Json(view(&id, &client, issued, version))).into_response())
}

#[utoipa::path(put, operation_id = "configureLoginClient",
    path = "/api/v1/business-systems/{business_id}/login-client", tag = "login",
    request_body = ConfigureLoginClient,
    params(("business_id" = String, Path, description = "業務ID"),
        ("If-Match" = Option<String>, Header, description = "The ETag last seen; 412 if it changed since"),
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses((status = 200, body = LoginClientView, description = "Registered; the same URIs again change nothing"),
        (status = 409, body = ProblemDetails, description = "`/problems/business-system-retired`"),
        (status = 422, body = ProblemDetails, description = "A redirect URI that is not accepted, named by JSON pointer")))]
pub async fn configure_client(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(business_id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ConfigureLoginClient>,
) -> Result<Response, ApiError> {
    let id = path_id(&business_id)?;
    authorize(&auth.actor, &Permission::ManageBusinessSystems)?;
    let mut errors = vec![];
    let uris: Vec<RedirectUri> = body
        .redirect_uris
        .iter()
        .enumerate()
        .filter_map(|(i, u)| {
            RedirectUri::parse(u).map_err(|e| errors.push(FieldError::parse(format!("/redirect_uris/{i}"), &e))).ok()
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let client =
        LoginClient::new(uris).map_err(|e| ApiError::validation(vec![FieldError::parse("/redirect_uris", &e)]))?;
    let ctx = RequestMeta::from_headers(&headers).context(&auth, "business-systems.login-client", id.as_str());
    let executed = state
        .oidc
        .configure_client(&ctx, &id, if_match(&headers)?, client)
        .await
        .map_err(|e| command_error(e, super::business_systems::domain_error))?;
    let login = executed.state.login().cloned().ok_or_else(|| ApiError::internal("the login client was not stored"))?;
    let issued = executed.state.login_secret_issued();
    Ok((etag(executed.version), Json(view(&id, &login, issued, executed.version))).into_response())
}

#[utoipa::path(post, operation_id = "issueLoginClientSecret",
    path = "/api/v1/business-systems/{business_id}/login-client/secret", tag = "login",
    params(("business_id" = String, Path, description = "業務ID")),
    security(("bearer" = [])),
    responses((status = 201, body = IssuedClientSecret, description = "A new secret, shown once; the old one stops working"),
        (status = 409, body = ProblemDetails,
            description = "`/problems/login-not-configured` (register redirect URIs first), `/problems/business-system-retired`")))]
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
        "business-systems.login-secret",
        id.as_str(),
    );
    let issued = state
        .oidc
        .issue_client_secret(&ctx, &id)
        .await
        .map_err(|e| command_error(e, super::business_systems::domain_error))?;
    let body = IssuedClientSecret { client_id: issued.client_id, client_secret: issued.secret.expose().to_owned() };
    let mut response = (StatusCode::CREATED, etag(issued.version), Json(body)).into_response();
    no_store(&mut response);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_origins_are_cut_at_the_path() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(origin_of("https://lib.example.jp:8443/cb?x=1").as_deref(), Some("https://lib.example.jp:8443"));
        assert_eq!(origin_of("nonsense"), None);
    }
}
