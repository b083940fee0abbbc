//! 生体認証ログイン on the login form (手引き I 2.1(4)(b)): the two JSON calls of `assets/webauthn.js`. The first
//! asks for a challenge for the municipality and operator ID typed into the form; the second sends the
//! authenticator's answer and, accepted, opens the session exactly as the password form does (the cookie, never
//! the token in the page). The same use cases as `POST /api/v1/sessions/biometric/challenges` and `…/biometric`:
//! throttle, lock and the counter check are theirs. Posted from another origin, both are refused.
//!
//! Owns these two routes and their JSON; refusals are said in Japanese as the password form says them.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cardap_commands::access::LoginError;
use cardap_commands::biometric::PublicKeyCredential;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{cross_site, over_tls, refusal, signed_in};
use crate::serve::OverTls;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
struct Begin {
    #[serde(default)]
    municipality: String,
    #[serde(default)]
    operator_id: String,
}

#[derive(Deserialize)]
struct Finish {
    challenge_id: Uuid,
    credential: serde_json::Value,
}

/// A refusal the script shows as it is.
fn said(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// Posted from another origin.
fn elsewhere() -> Response {
    said(StatusCode::FORBIDDEN, "この操作は受け付けられません。")
}

fn unreadable() -> Response {
    said(StatusCode::BAD_REQUEST, "生体認証の要求を読み取れませんでした。画面を読み込み直してください。")
}

fn unavailable() -> Response {
    said(StatusCode::SERVICE_UNAVAILABLE, "ただいま利用できません。しばらくしてから再度お試しください。")
}

/// A refused login, said as the password form says it (but always with an error status, for the script).
fn refused(e: &LoginError) -> Response {
    if let LoginError::InvalidCredentials = e {
        return said(
            StatusCode::UNAUTHORIZED,
            "生体認証で本人を確認できませんでした。登録した認証器で、もう一度お試しください。",
        );
    }
    match refusal(e) {
        Some((status, why)) => said(if status == StatusCode::OK { StatusCode::UNAUTHORIZED } else { status }, why),
        None => unavailable(),
    }
}

fn client(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<std::net::IpAddr> {
    peer.map(|Extension(ConnectInfo(address))| address.ip())
}

/// Begins a biometric login: the challenge and the WebAuthn options for `navigator.credentials.get()`.
pub async fn challenge(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers) {
        return elsewhere();
    }
    let Ok(begin) = serde_json::from_slice::<Begin>(&body) else { return unreadable() };
    let municipality = Some(begin.municipality.trim()).filter(|m| !m.is_empty());
    match state.biometrics.begin_login(municipality, &begin.operator_id, client(peer)).await {
        Ok(started) => Json(json!({ "challenge_id": started.id, "options": started.options })).into_response(),
        Err(e) => refused(&e),
    }
}

/// Finishes a biometric login with the authenticator's answer: the session cookie, and where to go.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    tls: Option<Extension<OverTls>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers) {
        return elsewhere();
    }
    let Ok(finish) = serde_json::from_slice::<Finish>(&body) else { return unreadable() };
    let Ok(assertion) = serde_json::from_value::<PublicKeyCredential>(finish.credential) else { return unreadable() };
    match state.biometrics.finish_login(finish.challenge_id, &assertion, client(peer)).await {
        Ok(session) => {
            let cookie = signed_in(&session, over_tls(tls));
            ([(header::SET_COOKIE, cookie)], Json(json!({ "location": "/ui/" }))).into_response()
        }
        Err(e) => refused(&e),
    }
}
