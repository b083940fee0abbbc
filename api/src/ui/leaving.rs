//! 転出 and 消去 of a resident in the clerk UI (手引き I 1.1; issue 13's erasure): the section of the resident's
//! page that leads to them, 転出's confirmation (at the version the page showed), and 消去's form (`/ui/erasure`,
//! in the menu of the operations manager, who may erase but not look residents up: he names the resident by his
//! 利用者ID) — why (転出後の保存期間経過, or a documented request with its reference) and the warning that it
//! cannot be undone.
//!
//! Owns these routes and their HTML. Each change is one call of the HTTP API in process
//! (`…/residents/{id}/move-out` under `If-Match`, `…/residents/{id}/erase`): who may, the order of things (his card
//! abolished first, the move-out before a retention erasure, the retention period passed) and the messages are
//! the API's; a refusal is shown on the form that asked, with what was chosen. The resident's page links to 消去
//! only for who may erase (the same `authorize` as the API's).

use axum::Extension;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use cardap_commands::Permission;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::api::{Call, InProcessApi, segment};
use super::flow::{ON_THE_FORM, after_change, allowed, may, one, problems};
use super::form::{FieldErrors, Form, new_key};
use super::pages::{
    Confirmation, Input, confirmation, error_summary, field_note, form_keys, input_field, notice, text_field,
};
use super::{Posted, Reply, UiSession, page};

/// What 消去's form says after an erasure (`/ui/erasure?done=erased`).
const ERASED: &str = "利用者の個人情報を消去しました。もとに戻すことはできません。";

/// The reasons of 消去, as the API names them, with the form's words.
const REASONS: [(&str, &str); 2] = [
    ("retention_expired", "転出後の保存期間が経過した"),
    ("request", "本人の申出・文書による請求があった（転出前でも消去できます）"),
];

/// The resident's page's section: 転出 while he has not moved out, for who registers residents; 消去 for who may
/// erase; nothing once erased, or when there is nothing he may do.
pub fn section(ui: &UiSession, code: &str, resident: &Value) -> Markup {
    let id = resident.get("resident_id").and_then(Value::as_str).unwrap_or("");
    let erased = resident.get("erased").and_then(Value::as_bool) == Some(true);
    let moved_out = resident.get("moved_out").and_then(Value::as_bool) == Some(true);
    let move_out = !erased && !moved_out && may(ui, code, Permission::RegisterResidents);
    let erase = !erased && may(ui, code, Permission::EraseResidents);
    html! {
        @if move_out || erase {
            section aria-labelledby="leaving-title" {
                h3 id="leaving-title" { "転出・消去" }
                @if move_out {
                    p { a href={ "/ui/residents/" (segment(id)) "/move-out" } { "転出を登録する…" } }
                }
                @if erase {
                    p { a href={ "/ui/erasure?resident_id=" (segment(id)) } { "個人情報を消去する…" } }
                }
            }
        }
    }
}

/// The resident in the API.
fn resident_path(code: &str, id: &str) -> String {
    format!("/api/v1/municipalities/{code}/residents/{}", segment(id))
}

/// Who he is, on a confirmation: his name and id.
fn who(resident: &Value, id: &str) -> Markup {
    let text = |p: &str| resident.pointer(p).and_then(Value::as_str).unwrap_or("");
    html! { "利用者 " strong { (text("/kanji_name/family")) " " (text("/kanji_name/given")) } "（" code { (id) } "）" }
}

fn move_out_page(ui: &UiSession, resident: &Value, id: &str, version: &str, errors: &FieldErrors) -> Markup {
    let action = format!("/ui/residents/{}/move-out", segment(id));
    let back = format!("/ui/residents/{}", segment(id));
    let confirm = Confirmation {
        title: "転出の登録",
        what: html! { (who(resident, id)) "を転出済みにします。" },
        warning: html! {
            "転出済みの利用者には、カードの登録や変更はできません。カードは先に廃止してください。"
            "転出から保存期間が経過すると、個人情報を消去できるようになります。"
        },
        action: Some(&action),
        hidden: html! {},
        version,
        button: "転出を登録",
        back: &back,
    };
    confirmation(ui, confirm, errors)
}

/// 転出's confirmation, at the version of now.
pub async fn move_out_form(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(id): Path<String>) -> Reply {
    let code = ui.own_municipality("転出の登録")?;
    let resident = one(&api, &ui, &resident_path(&code, &id)).await?;
    let version = resident.version.map(|v| v.to_string()).unwrap_or_default();
    Ok(page(move_out_page(&ui, &resident.body, &id, &version, &FieldErrors::default())))
}

/// 転出 (confirmed), at the version the page showed: his page says so; refused (his card still active, changed
/// meanwhile), the confirmation again with why, at the version of now.
pub async fn move_out(
    Extension(api): Extension<InProcessApi>,
    Path(id): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let code = ui.own_municipality("転出の登録")?;
    let path = format!("{}/move-out", resident_path(&code, &id));
    let answer = api.call(&ui, Call::post(&path, json!({})).keyed(&form)).await;
    let done = format!("/ui/residents/{}?done=moved_out", segment(&id));
    let problem = after_change(&answer, &done, ON_THE_FORM)?;
    let errors = problems(&problem, &[]);
    let resident = one(&api, &ui, &resident_path(&code, &id)).await?;
    let version = resident.version.map(|v| v.to_string()).unwrap_or_default();
    Ok((problem.status, page(move_out_page(&ui, &resident.body, &id, &version, &errors))).into_response())
}

fn erase_page(ui: &UiSession, typed: &Form, errors: &FieldErrors, done: bool) -> Markup {
    let chosen = typed.get("reason");
    let problems = errors.of_field("reason");
    let key = Some(typed.idempotency_key()).filter(|k| !k.is_empty()).map(str::to_owned).unwrap_or_else(new_key);
    ui.layout(
        "個人情報の消去",
        html! {
            (notice(done.then_some(ERASED)))
            (error_summary(errors))
            p { "利用者の個人情報（氏名・生年月日・住所・連絡先・独自項目）を、利用者IDを指定して消去します。" }
            p.error {
                "消去すると、その利用者の個人情報はどこからも読めなくなり、もとに戻すことはできません。"
                "利用者ID・カードの番号と状態だけが残り、検索でも見つからなくなります。"
                "カードは先に廃止されている必要があります。"
            }
            form method="post" action="/ui/erasure" novalidate {
                (form_keys(&ui.csrf(), &key))
                (input_field("resident_id", "利用者ID", typed.get("resident_id"), "利用者の画面に表示される利用者ID", errors,
                    Input::Text { required: true }))
                fieldset aria-describedby="f-reason-note" aria-invalid=[(!problems.is_empty()).then_some("true")] {
                    legend { "消去の理由" }
                    @for (value, label) in REASONS {
                        @let each = format!("f-reason-{value}");
                        div.check {
                            input type="radio" id=(each) name="reason" value=(value) checked[chosen == value];
                            label for=(each) { (label) }
                        }
                    }
                    (field_note("f-reason-note", "", &problems))
                }
                (text_field("reference", "請求の参照番号", typed.get("reference"),
                    "文書による請求のときに、その文書の番号（例: R8-SOMU-0123）", errors))
                div { button type="submit" { "消去する" } }
            }
        },
    )
}

/// 消去's form (`?resident_id=` fills the id, from the resident's page; `?done=erased` says the last one is done).
pub async fn erase_form(ui: UiSession, query: RawQuery) -> Reply {
    let code = ui.own_municipality("個人情報の消去")?;
    allowed(&ui, &code, Permission::EraseResidents, "個人情報の消去", "運用管理部門のオペレータ")?;
    let q = Form::of_query(&query);
    let mut typed = Form::default();
    typed.set("resident_id", q.get("resident_id"));
    Ok(page(erase_page(&ui, &typed, &FieldErrors::default(), q.get("done") == "erased")))
}

/// 消去 of the resident named on the form: the form again, saying it is done; refused, the form again with why
/// and what was typed (an id that is no resident of the municipality is said at its field).
pub async fn erase(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let code = ui.own_municipality("個人情報の消去")?;
    let id = form.get("resident_id").trim();
    let mut errors = FieldErrors::default();
    if id.is_empty() {
        errors.add("resident_id", "利用者IDを入力してください。".to_owned());
        errors.general.push("入力内容に誤りがあります。各項目の表示を確認してください。".to_owned());
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page(erase_page(&ui, &form, &errors, false))).into_response());
    }
    let reason = form.value("reason").map_or(Value::Null, |r| Value::String(r.to_owned()));
    let reference = form.value("reference").map_or(Value::Null, |r| Value::String(r.to_owned()));
    let path = format!("{}/erase", resident_path(&code, id));
    let call =
        Call::post(&path, json!({ "reason": reason, "reference": reference })).idempotent(form.idempotency_key());
    let answer = api.call(&ui, call).await;
    if answer.status == StatusCode::NOT_FOUND {
        errors.add("resident_id", "この利用者IDの利用者は、この市町村にはいません。".to_owned());
        errors.general.push("利用者が見つかりません。".to_owned());
        return Ok((StatusCode::NOT_FOUND, page(erase_page(&ui, &form, &errors, false))).into_response());
    }
    let problem = after_change(&answer, "/ui/erasure?done=erased", ON_THE_FORM)?;
    let errors = problems(&problem, &["reason", "reference"]);
    Ok((problem.status, page(erase_page(&ui, &form, &errors, false))).into_response())
}
