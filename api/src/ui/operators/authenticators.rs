//! 生体情報登録 on an operator's page (手引き I 2.1(2)②): the operations manager, signed in on the operator's
//! terminal, names the authenticator and presses the button; the terminal's browser creates the credential while
//! the operator touches the reader (`assets/webauthn.js`), and the manager's session finishes the registration.
//! The page lists his authenticators, each with a button that deletes it.
//!
//! Owns the section of the operator's page and the two JSON calls of the script (begin, finish): each is one call
//! of the API in process (`…/authenticators/registrations`, `…/{registration_id}/finish`), so the permission
//! (運用管理 of the municipality), the label's parsing, the verification of the answer and the municipality's
//! allow-list of models are the API's. The calls carry the page's CSRF token in their JSON and are refused from
//! another origin. Without the script (or without WebAuthn in the browser) the form says that this browser
//! cannot register; the deletion is an ordinary form.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cardap_commands::Permission;
use maud::{Markup, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::super::api::{Answer, Call, InProcessApi, segment, text};
use super::super::flow::may;
use super::super::form::{FieldErrors, new_key};
use super::super::pages::{form_keys, in_japan, text_field};
use super::super::{UiSession, cross_site, csrf_ok};
use super::{Scope, scope};

/// What the page's `done` says after a registration.
pub const REGISTERED: &str = "authenticator";

/// The operator's authenticators as the API lists them; `None` when it would not (the page then says so).
pub async fn listed(api: &InProcessApi, ui: &UiSession, scope: &Scope, id: &str) -> Option<Vec<Value>> {
    let answer = api.call(ui, Call::get(&format!("{}/authenticators", scope.api_of(id)))).await;
    answer.ok().then(|| answer.body.get("items").and_then(Value::as_array).cloned().unwrap_or_default())
}

/// The section of the operator's page: his authenticators and, for who may manage them (`ui`: the operations
/// manager, the system administrator), each one's 削除 at the page's `version` and the registration form
/// (`label`: what was typed into it).
pub fn section(
    ui: &UiSession,
    scope: &Scope,
    id: &str,
    authenticators: Option<&[Value]>,
    version: &str,
    label: &str,
    errors: &FieldErrors,
) -> Markup {
    let manage = may(ui, &scope.code, Permission::ManageBiometrics);
    let csrf = ui.csrf();
    let csrf = csrf.as_str();
    let base = format!("/ui/operators/{}/authenticators", segment(id));
    html! {
        section aria-labelledby="biometric-title" {
            h3 id="biometric-title" { "生体情報（生体認証の認証器）" }
            @match authenticators {
                None => p.muted { "登録されている認証器を表示できません。" },
                Some([]) => p.muted { "生体情報は登録されていません。" },
                Some(list) => table {
                    thead { tr {
                        th scope="col" { "名前" } th scope="col" { "登録日時（日本時間）" } th scope="col" { "機種（AAGUID）" }
                        @if manage { th scope="col" { "削除" } }
                    } }
                    tbody {
                        @for a in list {
                            @let name = text(a, "label");
                            tr {
                                td { (name) } td { (in_japan(a.get("registered_at").and_then(Value::as_str))) } td { code { (text(a, "aaguid")) } }
                                @if manage {
                                    td {
                                        form method="post" action={ (base) "/" (segment(text(a, "credential_id"))) "/remove" } {
                                            (form_keys(csrf, &new_key()))
                                            (scope.hidden())
                                            input type="hidden" name="version" value=(version);
                                            button.secondary type="submit" aria-label={ "認証器 " (name) " を削除" } { "削除" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            }
            @if manage {
                form id="biometric-register" method="post" action=(base) novalidate {
                    (form_keys(csrf, &new_key()))
                    (scope.hidden())
                    (text_field("label", "認証器の名前", label, "1〜50文字（例: 窓口3番 指静脈リーダー）", errors))
                    p.muted {
                        "この操作者の端末で、この画面から登録します。ボタンを押したあと、操作者本人が認証器に触れてください。"
                    }
                    p id="biometric-register-unsupported" {
                        "このブラウザでは生体情報を登録できません（生体認証に対応したブラウザで、スクリプトを有効にしてください）。"
                    }
                    div { button type="submit" id="biometric-register-button" hidden { "この端末で生体情報を登録" } }
                    p id="biometric-register-status" role="status" aria-live="polite" {}
                }
                script src="/ui/assets/webauthn.js" defer {}
            }
        }
    }
}

/// What every call of the script carries: the page's CSRF token and municipality.
#[derive(Debug, Deserialize)]
struct Keys {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    municipality: String,
}

/// What the script posts to begin (besides its [`Keys`]).
#[derive(Debug, Deserialize)]
struct Begin {
    #[serde(default)]
    label: String,
}

/// What the script posts to finish (besides its [`Keys`]): the credential as `navigator.credentials.create()`
/// gave it (binary fields base64url).
#[derive(Debug, Deserialize)]
struct Finish {
    credential: Value,
}

/// A refusal the script shows as it is (`field`: the form's field it is about).
fn said(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    (status, axum::Json(json!({ "message": message, "field": field }))).into_response()
}

fn unreadable() -> Response {
    said(StatusCode::BAD_REQUEST, "登録の要求を読み取れませんでした。画面を読み込み直してください。", None)
}

/// The API's refusal, said as the page would: the label's problem next to it, else the problem's summary.
fn refused(answer: &Answer) -> Response {
    let Some(problem) = answer.problem() else { return unreadable() };
    if let Some(label) = problem.errors.iter().find(|e| e.field == "/label" && !e.message.is_empty()) {
        return said(problem.status, &label.message, Some("label"));
    }
    let summary = problem.summary();
    let message = if summary.is_empty() { "生体情報を登録できませんでした。" } else { summary };
    said(problem.status, message, None)
}

/// A call of the script, read and checked: its body (`T`), from this origin with the page's CSRF token, and the
/// municipality of the page (another municipality's is the API's 404).
async fn accepted<T: DeserializeOwned>(
    api: &InProcessApi,
    ui: &UiSession,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(T, Scope), Response> {
    let (Ok(keys), Ok(call)) = (serde_json::from_slice::<Keys>(body), serde_json::from_slice::<T>(body)) else {
        return Err(unreadable());
    };
    if cross_site(headers) || !csrf_ok(ui, &keys.csrf) {
        return Err(said(StatusCode::FORBIDDEN, "この操作は受け付けられません。画面を読み込み直してください。", None));
    }
    let scope = scope(api, ui, &keys.municipality, "/ui/operators").await.map_err(|page| {
        let status = page.status();
        let status = if status.is_success() || status.is_redirection() { StatusCode::NOT_FOUND } else { status };
        said(status, "この操作者は見つかりません。", None)
    })?;
    Ok((call, scope))
}

/// Begins a registration: the API's registration id and the options for `navigator.credentials.create()`.
pub async fn begin(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (begin, scope) = match accepted::<Begin>(&api, &ui, &headers, &body).await {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal,
    };
    let path = format!("{}/authenticators/registrations", scope.api_of(&id));
    let answer = api.call(&ui, Call::post(&path, json!({ "label": begin.label }))).await;
    if !answer.ok() {
        return refused(&answer);
    }
    axum::Json(json!({ "registration_id": answer.body["registration_id"], "options": answer.body["options"] }))
        .into_response()
}

/// Finishes a registration with the authenticator's answer: where the page goes next (the operator's page, saying
/// it is registered).
pub async fn finish(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path((id, registration)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (finish, scope) = match accepted::<Finish>(&api, &ui, &headers, &body).await {
        Ok(accepted) => accepted,
        Err(refusal) => return refusal,
    };
    let path = format!("{}/authenticators/registrations/{}/finish", scope.api_of(&id), segment(&registration));
    let answer = api.call(&ui, Call::post(&path, finish.credential)).await;
    if !answer.ok() {
        return refused(&answer);
    }
    axum::Json(json!({ "location": format!("{}&done={REGISTERED}", scope.operator_href(&id)) })).into_response()
}
