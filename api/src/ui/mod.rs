//! The clerk web UI under `/ui/` (issue 14): server-rendered Japanese pages over the same use cases as the API
//! (`cardap_commands`), served by `cardap serve` on the same port; `/` redirects there.
//!
//! Owns the UI's routes, its cookie session and its page security:
//! - **Session**: the login form opens an ordinary operator session (the same use case as `POST /api/v1/sessions`,
//!   throttle and lock included) and keeps its token in the cookie `cardap_session` (`HttpOnly`,
//!   `SameSite=Strict`, `Path=/ui`, `Secure` when the connection is TLS); a page without a live session goes to the
//!   login form.
//! - **CSRF**: every form that changes something carries a token derived from the session token (SHA-256 under a
//!   fixed label: unguessable without the `HttpOnly` cookie) and is refused with 403 without it (a posted form is
//!   read through [`Posted`], which checks it); a login or logout posted from another origin (`Origin` or
//!   `Sec-Fetch-Site`) is refused as well.
//! - **Headers of every page**: a strict Content-Security-Policy (nothing inline, nothing from another origin: the
//!   stylesheet and the one script, the login form's biometric button, are served from the binary), no framing,
//!   no referrer, no caching, no MIME sniffing.
//!
//! The shared HTML (layout, fields, messages, confirmations) is in [`pages`], a submitted form and its problems in
//! [`form`], the steps every screen takes around a call (a refusal's page, lists, the way back after a change) in
//! [`flow`]; each area's screens are in their module ([`residents`], [`registry`], [`operators`], [`admin`],
//! [`settings`], [`policies`], [`audit`], [`biometric`], 転出・消去 in [`leaving`]); what a screen changes or shows goes through the HTTP API in process
//! ([`api`]). No SQL, no store and no rule of the domain here.

// A refused step of a screen is the page to answer (an axum `Response`), built once per request and returned at
// once: boxing it would only add an allocation to every `?`.
#![allow(clippy::result_large_err)]

mod admin;
mod api;
mod audit;
mod biometric;
mod flow;
mod form;
mod leaving;
mod operators;
mod pages;
mod policies;
mod registry;
mod residents;
mod settings;

pub use api::InProcessApi;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, middleware};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardap_commands::access::{LoginError, Presented, SessionOf};
use cardap_commands::passwords::Secret;
use maud::Markup;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use self::form::Form;
use crate::serve::OverTls;
use crate::state::AppState;

/// The session cookie.
const COOKIE: &str = "cardap_session";
/// The Content-Security-Policy of every page: only this origin's stylesheet and images, forms to this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes; `api` is the HTTP API's router, which the screens call in process.
pub fn router(api: InProcessApi) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(top))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/login/biometric/challenges", post(biometric::challenge))
        .route("/ui/login/biometric", post(biometric::login))
        .route("/ui/logout", post(logout))
        .route("/ui/residents", get(residents::search))
        .route("/ui/residents/new", get(residents::register_form).post(residents::register))
        .route("/ui/residents/{id}", get(residents::show))
        .route("/ui/residents/{id}/edit", get(residents::edit_form).post(residents::edit))
        .route("/ui/residents/{id}/card", post(residents::register_card))
        .route("/ui/residents/{id}/move-out", get(leaving::move_out_form).post(leaving::move_out))
        .route("/ui/erasure", get(leaving::erase_form).post(leaving::erase))
        .route("/ui/cards/{fid}/local-area", post(residents::local_area))
        .route("/ui/cards/{fid}/aps", post(residents::install))
        .route("/ui/cards/{fid}/aps/remove", post(residents::remove))
        .route("/ui/cards/{fid}/confirm/{action}", get(residents::confirm))
        .route("/ui/cards/{fid}/{action}", post(residents::card_action))
        .route(
            "/ui/registry/import",
            get(registry::form).post(registry::import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .merge(admin::routes())
        .merge(settings::routes())
        .merge(policies::routes())
        .merge(operators::routes())
        .route("/ui/audit", get(audit::show))
        .route("/ui/audit/export", get(audit::export))
        .route("/ui/assets/app.css", get(stylesheet))
        .route("/ui/assets/webauthn.js", get(script))
        .route("/ui/{*rest}", get(|| async { not_found() }))
        .layer(Extension(api))
        .layer(middleware::map_response(security_headers))
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The one script: biometric login on the login form (progressive: the form works without it).
async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("assets/webauthn.js"))
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("assets/app.css"))
}

/// The operator of a live UI session (from the cookie); without one, the login form.
pub(super) struct UiSession {
    pub session: SessionOf,
    pub token: Secret,
    /// What the page's request said of itself (`X-Cardap-Terminal`, set by the terminal or a proxy in front of
    /// it, and the request id): passed on to the API's calls, so every event a screen appends names its terminal
    /// and request as one made through the API would.
    pub forwarded: Vec<(HeaderName, HeaderValue)>,
}

impl UiSession {
    pub fn csrf(&self) -> String {
        csrf_token(&self.token)
    }

    /// A page of his: the layout with his menu and the logout button.
    pub fn layout(&self, title: &str, body: Markup) -> Markup {
        pages::layout(title, Some((&self.session, &self.csrf())), body)
    }

    /// His municipality, for the screens of a municipality's operators (`title`); the system administrator gets
    /// the page saying so.
    pub fn own_municipality(&self, title: &str) -> Result<String, Response> {
        self.session
            .actor
            .municipality
            .as_ref()
            .map(|m| m.to_string())
            .ok_or_else(|| page(pages::message(title, "この画面は市町村のオペレータが使います。")))
    }
}

impl FromRequestParts<AppState> for UiSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/ui/login").into_response();
        let Some(token) = session_cookie(&parts.headers) else { return Err(to_login()) };
        match state.access.authenticate(&token).await {
            Ok(Some(session)) => {
                let forwarded = ["x-cardap-terminal", "x-request-id"]
                    .into_iter()
                    .filter_map(|name| {
                        let value = parts.headers.get(name)?.clone();
                        Some((HeaderName::from_static(name), value))
                    })
                    .collect();
                Ok(UiSession { session, token, forwarded })
            }
            Ok(None) => Err(to_login()),
            Err(e) => {
                tracing::warn!(error = %e, "the UI could not check a session");
                Err(unavailable())
            }
        }
    }
}

/// A form posted from a page of the UI (`application/x-www-form-urlencoded`): the operator of a live session (else
/// the login form, as [`UiSession`]) and the form, whose CSRF token is his session's (else the 403 page, before the
/// handler does anything). The multipart uploads read their token from their own body.
pub(super) struct Posted {
    pub ui: UiSession,
    pub form: Form,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let ui = UiSession::from_request_parts(&mut parts, state).await?;
        let body =
            Bytes::from_request(Request::from_parts(parts, body), state).await.map_err(IntoResponse::into_response)?;
        let form = Form::parse(&body);
        if !csrf_ok(&ui, form.csrf()) {
            return Err(forbidden());
        }
        Ok(Posted { ui, form })
    }
}

/// What a screen's handler answers: its page, or (`Err`, returned early with `?`) the page of a refusal.
pub(super) type Reply = Result<Response, Response>;

fn session_cookie(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| Secret::new(value))
}

/// The CSRF token of a session: SHA-256 of the session token under a fixed label, base64url.
fn csrf_token(token: &Secret) -> String {
    let digest = Sha256::new().chain_update(b"cardap ui csrf\n").chain_update(token.expose().as_bytes()).finalize();
    URL_SAFE_NO_PAD.encode(digest)
}

/// Whether a form's CSRF token is the session's (compared in constant time).
pub(super) fn csrf_ok(session: &UiSession, given: &str) -> bool {
    let expected = session.csrf();
    expected.len() == given.len() && expected.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A request that a page of another origin made the browser send.
pub(super) fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    let (Some(origin), Some(host)) = (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin != "null" && origin.split_once("://").map(|(_, rest)| rest) != Some(host)
}

fn set_cookie(value: &str, tls: bool, max_age: Option<i64>) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    let cookie = format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict{secure}{age}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("cardap_session=; Path=/ui; Max-Age=0"))
}

pub(super) fn over_tls(tls: Option<Extension<OverTls>>) -> bool {
    tls.is_some_and(|Extension(OverTls(on))| on)
}

pub(super) fn page(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

pub(super) fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(pages::message("ただいま利用できません", "しばらくしてから再度お試しください。")),
    )
        .into_response()
}

pub(super) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        page(pages::message("この操作は受け付けられません", "画面を読み込み直してから、もう一度操作してください。")),
    )
        .into_response()
}

/// What a change refused under `If-Match` (412) says: the data changed since the page was shown.
pub(super) const CHANGED_MEANWHILE: &str =
    "表示している間に、ほかの人がこのデータを変更しました。最新の内容を確認してから、もう一度操作してください。";

/// A page the address names nothing on, or another municipality's (the API's 404, shown).
pub(super) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, page(pages::message("見つかりません", "指定されたページまたはデータは見つかりません。")))
        .into_response()
}

/// The page for what the API refused outright (not a field of the form): a session that ended goes to the login
/// form, another municipality's data is "not found", a change made meanwhile by someone else says so.
pub(super) fn refused(problem: &api::Problem) -> Response {
    match problem.status {
        StatusCode::UNAUTHORIZED => Redirect::to("/ui/login").into_response(),
        StatusCode::NOT_FOUND => not_found(),
        StatusCode::PRECONDITION_FAILED => {
            (StatusCode::PRECONDITION_FAILED, page(pages::message("ほかの操作で変更されています", CHANGED_MEANWHILE)))
                .into_response()
        }
        status if status.is_server_error() => unavailable(),
        status => (status, page(pages::message("この操作はできません", problem.summary()))).into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct LoginFields {
    #[serde(default)]
    municipality: String,
    #[serde(default)]
    operator_id: String,
    #[serde(default)]
    password: String,
}

/// The login form (市町村 selection + オペレータID + パスワード).
async fn login_form(State(state): State<AppState>) -> Response {
    match state.municipalities.login_choices().await {
        Ok(choices) => page(pages::login(&choices, "", "", None)),
        Err(e) => {
            tracing::warn!(error = %e, "the login form could not list the municipalities");
            unavailable()
        }
    }
}

/// Logs in from the form; the session's token goes into the cookie, never into the page.
async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    tls: Option<Extension<OverTls>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers) {
        return forbidden();
    }
    let fields: LoginFields = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let municipality = Some(fields.municipality.trim()).filter(|m| !m.is_empty());
    let client = peer.map(|Extension(ConnectInfo(address))| address.ip());
    let result =
        state.access.login(municipality, &fields.operator_id, Secret::new(fields.password.as_str()), client).await;
    let (status, why) = match result {
        Ok(session) => {
            let cookie = signed_in(&session, over_tls(tls));
            return (
                StatusCode::SEE_OTHER,
                [(header::SET_COOKIE, cookie), (header::LOCATION, HeaderValue::from_static("/ui/"))],
            )
                .into_response();
        }
        Err(e) => match refusal(&e) {
            Some(why) => why,
            None => return unavailable(),
        },
    };
    let choices = state.municipalities.login_choices().await.unwrap_or_default();
    let typed = pages::login(&choices, municipality.unwrap_or(""), fields.operator_id.trim(), Some(why));
    (status, page(typed)).into_response()
}

/// What a refused login says (with its status); `None` when the server could not decide (busy, failing).
pub(super) fn refusal(e: &LoginError) -> Option<(StatusCode, &'static str)> {
    Some(match e {
        LoginError::InvalidCredentials => (StatusCode::OK, "市町村、オペレータID またはパスワードが正しくありません。"),
        LoginError::Locked { .. } => (
            StatusCode::OK,
            "ログインに続けて失敗したため、このオペレータIDはしばらくロックされています。時間をおいてから、または管理者に解除を依頼してください。",
        ),
        LoginError::Throttled { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "ログインの試行が多すぎます。しばらくしてから再度お試しください。")
        }
        LoginError::BiometricRequired => (StatusCode::OK, "このオペレータは生体認証でログインする設定です。"),
        LoginError::Busy | LoginError::Failed(_) => return None,
    })
}

/// The session cookie of a new session and where the browser goes next.
pub(super) fn signed_in(session: &cardap_commands::access::NewSession, tls: bool) -> HeaderValue {
    let age = (session.expires_at - chrono::Utc::now()).num_seconds().max(0);
    set_cookie(session.token.expose(), tls, Some(age))
}

/// Ends the session (with the form's CSRF token) and clears the cookie.
async fn logout(
    State(state): State<AppState>,
    tls: Option<Extension<OverTls>>,
    headers: HeaderMap,
    Posted { ui, .. }: Posted,
) -> Response {
    if cross_site(&headers) {
        return forbidden();
    }
    if let Err(e) = state.access.logout(&Presented::Token(ui.token)).await {
        tracing::warn!(error = %e, "the UI could not end a session");
        return unavailable();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie("", over_tls(tls), Some(0))),
            (header::LOCATION, HeaderValue::from_static("/ui/login")),
        ],
    )
        .into_response()
}

/// The operator's top page: who he is and the business systems he may use now, with their links.
async fn top(Extension(api): Extension<InProcessApi>, ui: UiSession) -> Reply {
    let me = flow::one(&api, &ui, "/api/v1/me").await?;
    Ok(page(pages::top(&ui.session, &ui.csrf(), api::items_at(&me.body, "business_systems"))))
}
