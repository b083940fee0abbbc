//! One operator's page and what is done to him: the change of his management information, roles and 許可業務
//! under `If-Match` (a change by someone else meanwhile is shown with the data of now, never overwritten), 失効
//! after a confirmation, ロック解除, password reset (a generated one shown once, printable), ending his sessions,
//! 業務内ID per business system, 生体情報登録 and the deletion of an authenticator ([`super::authenticators`]); and
//! パスワード一括変更 of the operators chosen in the list.

use std::collections::HashMap;

use axum::Extension;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::super::api::{Answer, Call, InProcessApi, flag, items, segment, strings, text};
use super::super::flow::{Done, after_change, changed_meanwhile, one, permitted_systems, problem_for_the_form};
use super::super::form::{FieldErrors, Form, id_of, new_key};
use super::super::pages::{
    Confirmation, Input, confirmation, error_summary, form_keys, in_japan, input_field, notice, text_field,
};
use super::super::{Posted, Reply, UiSession, page};
use super::{
    PROFILE, Scope, authenticators, checkboxes, password_field, passwords_page, problem_fields, profile_fields, query,
    role_labels, roles, scope, state_label,
};
use crate::state::AppState;

/// What a change left to say on the operator's page (`?done=`).
const DONE: Done = Done(&[
    ("registered", "オペレータを登録しました。"),
    ("changed", "登録内容を変更しました。"),
    ("revoked", "オペレータを失効させました。"),
    ("unlocked", "ロックを解除しました。"),
    ("password", "パスワードを再設定しました。このオペレータのログイン中のセッションは終了しました。"),
    ("sessions", "このオペレータのログイン中のセッションをすべて終了しました。"),
    ("internal_id", "業務内IDを設定しました。"),
    ("internal_id_removed", "業務内IDを削除しました。"),
    (authenticators::REGISTERED, "生体情報を登録しました。この認証器で生体認証のログインができます。"),
    ("authenticator_removed", "認証器を削除しました。この認証器ではログインできなくなりました。"),
]);

/// The fields of the page's other forms besides the change and the password (their problems' places).
const OTHER_FIELDS: [&str; 4] = ["business_id", "internal_id", "role", "label"];

/// The operator as the API shows him (404 for another municipality's, as in the API).
async fn load(api: &InProcessApi, ui: &UiSession, scope: &Scope, id: &str) -> Result<Answer, Response> {
    one(api, ui, &scope.api_of(id)).await
}

/// The operator's data as the change form's values.
fn as_form(operator: &Value) -> Form {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    for field in PROFILE {
        pairs.append_pair(field, text(operator, field));
    }
    for list in ["roles", "business_systems"] {
        for value in strings(operator, list) {
            pairs.append_pair(list, &value);
        }
    }
    Form::parse(pairs.finish().as_bytes())
}

/// What the operator's page shows besides the operator.
struct Shown<'a> {
    /// The change form's values: his data, or what was typed into it.
    change: &'a Form,
    /// The version the change form (and every form under `If-Match`) carries.
    version: Option<u64>,
    /// What was typed into the other forms (業務内ID, the authenticator's name).
    typed: &'a Form,
    /// His authenticators (`None`: the API would not list them).
    authenticators: Option<&'a [Value]>,
    errors: &'a FieldErrors,
    done: Option<&'a str>,
}

fn operator_page(
    ui: &UiSession,
    scope: &Scope,
    operator: &Answer,
    systems: &[(String, String)],
    shown: &Shown<'_>,
) -> Markup {
    let o = &operator.body;
    let id = text(o, "operator_id");
    let csrf = ui.csrf();
    let base = format!("/ui/operators/{}", segment(id));
    let version = shown.version.map(|v| v.to_string()).unwrap_or_default();
    let revoked = flag(o, "revoked");
    let locked = flag(o, "locked");
    let held = strings(o, "business_systems");
    // His 許可業務 that the municipality may no longer use stay choosable: unchecked only on purpose.
    let mut options = systems.to_vec();
    for b in &held {
        if !options.iter().any(|(v, _)| v == b) {
            options.push((b.clone(), format!("{b}（この市町村では利用できません）")));
        }
    }
    let internal_ids = o.get("internal_ids").and_then(Value::as_array).cloned().unwrap_or_default();
    let system_choices: Vec<(String, String)> = held
        .iter()
        .map(|b| (b.clone(), options.iter().find(|(v, _)| v == b).map_or(b.clone(), |(_, l)| l.clone())))
        .collect();
    let errors = shown.errors;
    ui.layout(
        &format!("オペレータ {id}"),
        html! {
            (notice(shown.done))
            table.facts {
                tbody {
                    tr { th scope="row" { "オペレータID" } td { code { (id) } } }
                    tr { th scope="row" { "市町村" } td { (scope.code) } }
                    tr { th scope="row" { "状態" } td {
                        (state_label(o))
                        @if let Some(until) = o.get("locked_until").and_then(Value::as_str) { "（" (in_japan(Some(until))) " まで）" }
                    } }
                    tr { th scope="row" { "役割" } td { (role_labels(o)) } }
                    tr { th scope="row" { "許可業務" } td { (held.join(" ")) } }
                }
            }
            (error_summary(errors))
            @if revoked {
                p.error { "このオペレータは失効しています。変更はできません（同じオペレータIDで新たに登録することはできます）。" }
            } @else {
                section aria-labelledby="change-title" {
                    h3 id="change-title" { "登録内容の変更" }
                    form method="post" action=(base) novalidate {
                        (form_keys(&csrf, &new_key()))
                        (scope.hidden())
                        input type="hidden" name="version" value=(version);
                        input type="hidden" name="shown_roles" value=(strings(o, "roles").join(" "));
                        input type="hidden" name="shown_business_systems" value=(held.join(" "));
                        (profile_fields("", shown.change, errors))
                        (checkboxes("roles", "役割（1つ以上）", &roles(), &shown.change.all("roles"),
                            "自分の役割・許可業務は変更できません", errors))
                        (checkboxes("business_systems", "許可業務", &options, &shown.change.all("business_systems"),
                            "この市町村が利用できる業務システム", errors))
                        div { button type="submit" { "変更" } }
                    }
                }
                section aria-labelledby="password-title" {
                    h3 id="password-title" { "パスワードの再設定" }
                    form method="post" action={ (base) "/password" } novalidate {
                        (form_keys(&csrf, &new_key()))
                        (scope.hidden())
                        (password_field("password", "新しいパスワード", errors))
                        div { button type="submit" { "パスワードを再設定" } }
                    }
                }
                section aria-labelledby="login-title" {
                    h3 id="login-title" { "ログイン" }
                    @if locked {
                        form method="post" action={ (base) "/unlock" } {
                            (form_keys(&csrf, &new_key()))
                            (scope.hidden())
                            p { "ログインの失敗が続いたため、ロックされています。" }
                            button type="submit" { "ロックを解除" }
                        }
                    }
                    form method="post" action={ (base) "/sessions" } {
                        (form_keys(&csrf, &new_key()))
                        (scope.hidden())
                        button.secondary type="submit" { "ログイン中のセッションをすべて終了" }
                    }
                }
                section aria-labelledby="internal-title" {
                    h3 id="internal-title" { "業務内ID" }
                    @if internal_ids.is_empty() { p.muted { "業務内IDは設定されていません。" } } @else {
                        table {
                            thead { tr { th scope="col" { "業務ID" } th scope="col" { "業務内ID" } th scope="col" { "業務内の役割" } th scope="col" { "削除" } } }
                            tbody {
                                @for entry in &internal_ids {
                                    @let b = text(entry, "business_id");
                                    tr {
                                        td { (b) } td { code { (text(entry, "internal_id")) } } td { (text(entry, "role")) }
                                        td {
                                            form method="post" action={ (base) "/internal-ids/" (segment(b)) "/remove" } {
                                                (form_keys(&csrf, &new_key()))
                                                (scope.hidden())
                                                input type="hidden" name="version" value=(version);
                                                button.secondary type="submit" aria-label={ "業務 " (b) " の業務内IDを削除" } { "削除" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if system_choices.is_empty() {
                        p.muted { "許可業務がないため、業務内IDは設定できません。" }
                    } @else {
                        form method="post" action={ (base) "/internal-ids" } novalidate {
                            (form_keys(&csrf, &new_key()))
                            (scope.hidden())
                            input type="hidden" name="version" value=(version);
                            (input_field("business_id", "業務", shown.typed.get("business_id"), "許可業務のうちの1つ", errors,
                                Input::Select { options: &system_choices, required: true }))
                            (input_field("internal_id", "業務内ID", shown.typed.get("internal_id"), "その業務システムでのID（半角英数字）",
                                errors, Input::Text { required: true }))
                            (text_field("role", "業務内の役割", shown.typed.get("role"), "任意", errors))
                            div { button type="submit" { "業務内IDを設定" } }
                        }
                    }
                }
                (authenticators::section(ui, scope, id, shown.authenticators, &version, shown.typed.get("label"), errors))
                section aria-labelledby="revoke-title" {
                    h3 id="revoke-title" { "失効" }
                    p { a href=(scope.href(&format!("{base}/revoke?{}", query(&[("version", &version)])))) { "このオペレータを失効させる…" } }
                }
            }
            p { a href=(scope.href("/ui/operators")) { "オペレータ一覧へ" } }
        },
    )
}

/// What his page says besides his data of now: the problems, what was just done, and what was typed into its
/// other forms.
struct Said<'a> {
    errors: &'a FieldErrors,
    done: Option<&'a str>,
    typed: &'a Form,
}

/// The operator's page with his data of now.
async fn show_now(
    api: &InProcessApi,
    ui: &UiSession,
    scope: &Scope,
    id: &str,
    status: StatusCode,
    said: Said<'_>,
) -> Reply {
    let operator = load(api, ui, scope, id).await?;
    let systems = permitted_systems(api, ui, &scope.code).await?;
    let change = as_form(&operator.body);
    let listed = authenticators::listed(api, ui, scope, id).await;
    let shown = Shown {
        change: &change,
        version: operator.version,
        typed: said.typed,
        authenticators: listed.as_deref(),
        errors: said.errors,
        done: said.done,
    };
    Ok((status, page(operator_page(ui, scope, &operator, &systems, &shown))).into_response())
}

/// The operator's page (`?done=` says what was just done).
pub async fn show(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    raw: RawQuery,
) -> Reply {
    let q = Form::of_query(&raw);
    let scope = scope(&api, &ui, q.get("municipality"), "/ui/operators").await?;
    let said = Said { errors: &FieldErrors::default(), done: DONE.of(&q), typed: &Form::default() };
    show_now(&api, &ui, &scope, &id, StatusCode::OK, said).await
}

/// The refusals the operator's page shows on itself: those of every form, and what the operator may not give
/// (403: a role he does not hold himself).
const ON_HIS_PAGE: [StatusCode; 4] =
    [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT, StatusCode::PRECONDITION_FAILED, StatusCode::FORBIDDEN];

/// What was typed into the form that was posted: the change form, or another form of the operator's page.
enum Typed<'a> {
    Change(&'a Form),
    Other(&'a Form),
}

/// A form posted on an operator's page (`/ui/operators/{id}/…`): the session and the form (its CSRF token checked,
/// as [`Posted`]), the municipality it was posted in, and the operator.
pub struct HisForm {
    api: InProcessApi,
    ui: UiSession,
    form: Form,
    scope: Scope,
    id: String,
}

impl FromRequest<AppState> for HisForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let Extension(api) = Extension::<InProcessApi>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path(mut params) = Path::<HashMap<String, String>>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let id = params.remove("id").unwrap_or_default();
        let Posted { ui, form } = Posted::from_request(Request::from_parts(parts, body), state).await?;
        let scope = scope(&api, &ui, form.get("municipality"), "/ui/operators").await?;
        Ok(HisForm { api, ui, form, scope, id })
    }
}

impl HisForm {
    /// `tail` under the operator in the API (`/unlock`).
    fn path(&self, tail: &str) -> String {
        format!("{}{tail}", self.scope.api_of(&self.id))
    }

    async fn send(&self, call: Call<'_>) -> Answer {
        self.api.call(&self.ui, call).await
    }

    /// His page of now, `status`, with `errors` and what was `typed` into the form that was sent.
    async fn show_now(&self, status: StatusCode, errors: &FieldErrors, typed: &Form) -> Reply {
        let said = Said { errors, done: None, typed };
        show_now(&self.api, &self.ui, &self.scope, &self.id, status, said).await
    }

    /// After the change: his page with `done`; refused for a field or a rule, his page with the problem next to
    /// its field and what was typed; changed by someone else meanwhile (412), his page of now with that message.
    async fn after(&self, answer: Answer, done: &str, typed: Typed<'_>) -> Reply {
        let (api, ui, scope) = (&self.api, &self.ui, &self.scope);
        let problem = after_change(&answer, &format!("{}&done={done}", scope.operator_href(&self.id)), &ON_HIS_PAGE)?;
        if problem.status == StatusCode::PRECONDITION_FAILED {
            return self.show_now(problem.status, &changed_meanwhile(), &Form::default()).await;
        }
        let errors = FieldErrors::of(&problem, &problem_fields(&OTHER_FIELDS));
        let operator = load(api, ui, scope, &self.id).await?;
        let systems = permitted_systems(api, ui, &scope.code).await?;
        let now = as_form(&operator.body);
        let (change, version, typed) = match typed {
            Typed::Change(form) => (form, form.version(), form),
            Typed::Other(form) => (&now, operator.version, form),
        };
        let listed = authenticators::listed(api, ui, scope, &self.id).await;
        let shown = Shown { change, version, typed, authenticators: listed.as_deref(), errors: &errors, done: None };
        Ok((problem.status, page(operator_page(ui, scope, &operator, &systems, &shown))).into_response())
    }
}

/// Whether the checked `list` differs from what the page showed (`shown_{list}`): only a change is sent, as
/// nobody may change his own roles or 許可業務 even to what they are.
fn changed_list(form: &Form, list: &str) -> Option<Vec<String>> {
    let mut chosen: Vec<String> = form.all(list).into_iter().map(str::to_owned).collect();
    let mut shown: Vec<String> = form.get(&format!("shown_{list}")).split_whitespace().map(str::to_owned).collect();
    let wanted = chosen.clone();
    chosen.sort();
    shown.sort();
    (chosen != shown).then_some(wanted)
}

/// The PATCH of the change form: every field of the management information (blank clears it; the name is
/// required), roles and 許可業務 when they were changed.
fn change_json(form: &Form) -> Value {
    let mut body = Map::new();
    for field in PROFILE {
        let value = match form.value(field) {
            Some(v) => Value::String(v.to_owned()),
            None if field == "name" => Value::String(String::new()),
            None => Value::Null,
        };
        body.insert(field.to_owned(), value);
    }
    for list in ["roles", "business_systems"] {
        if let Some(values) = changed_list(form, list) {
            body.insert(list.to_owned(), json!(values));
        }
    }
    Value::Object(body)
}

/// Changes the operator at the version the page showed (`If-Match`).
pub async fn change(his: HisForm) -> Reply {
    let path = his.path("");
    let answer = his.send(Call::post(&path, change_json(&his.form)).method(Method::PATCH).keyed(&his.form)).await;
    his.after(answer, "changed", Typed::Change(&his.form)).await
}

/// 失効's confirmation: what it does, and the button that does it at the version the page showed.
pub async fn revoke_confirm(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    raw: RawQuery,
) -> Reply {
    let q = Form::of_query(&raw);
    let scope = scope(&api, &ui, q.get("municipality"), "/ui/operators").await?;
    let operator = load(&api, &ui, &scope, &id).await?;
    let version = match q.version() {
        Some(v) => v.to_string(),
        None => operator.version.map(|v| v.to_string()).unwrap_or_default(),
    };
    let action = format!("/ui/operators/{}/revoke", segment(&id));
    let confirm = Confirmation {
        title: "オペレータの失効",
        what: html! { "オペレータ " strong { (id) } "（" (operator.str("/name")) "）を失効させます。" },
        warning: html! {
            "失効させると、このオペレータはログインも操作もできなくなり、氏名・部門・連絡先などの管理情報は消去されます。"
            "元には戻せません（同じオペレータIDで新たに登録することはできます）。"
        },
        action: Some(&action),
        hidden: scope.hidden(),
        version: &version,
        button: "失効させる",
        back: &scope.operator_href(&id),
    };
    Ok(page(confirmation(&ui, confirm, &FieldErrors::default())))
}

/// 失効 (confirmed), at the version the page showed.
pub async fn revoke(his: HisForm) -> Reply {
    let path = his.path("/revoke");
    let answer = his.send(Call::post(&path, json!({})).keyed(&his.form)).await;
    his.after(answer, "revoked", Typed::Other(&his.form)).await
}

/// ロック解除.
pub async fn unlock(his: HisForm) -> Reply {
    let path = his.path("/unlock");
    let answer = his.send(Call::post(&path, json!({})).keyed(&his.form)).await;
    his.after(answer, "unlocked", Typed::Other(&his.form)).await
}

/// Ends every session of the operator.
pub async fn end_sessions(his: HisForm) -> Reply {
    let path = his.path("/sessions");
    let answer = his.send(Call::get(&path).method(Method::DELETE).keyed(&his.form)).await;
    his.after(answer, "sessions", Typed::Other(&his.form)).await
}

/// Resets the operator's password: the one typed, or a generated one shown this once.
pub async fn reset_password(his: HisForm) -> Reply {
    let chosen = his.form.get("password");
    let body = if chosen.is_empty() { json!({}) } else { json!({ "password": chosen }) };
    let path = his.path("/password");
    let answer = his.send(Call::post(&path, body).keyed(&his.form)).await;
    if answer.ok()
        && let Some(password) = answer.body.get("password").and_then(Value::as_str)
    {
        let id = &his.id;
        let rows = [(id.clone(), String::new(), password.to_owned())];
        let intro = format!("オペレータ {id} のパスワードを再設定しました。ログイン中のセッションは終了しました。");
        let back = his.scope.operator_href(id);
        return Ok(page(passwords_page(&his.ui, "パスワードの再設定", &intro, &rows, &back)));
    }
    // A password typed is never shown again.
    his.after(answer, "password", Typed::Other(&Form::default())).await
}

/// Assigns the 業務内ID typed for the chosen business system.
pub async fn assign_internal_id(his: HisForm) -> Reply {
    let form = &his.form;
    let Some(business_id) = form.value("business_id") else {
        let mut errors = FieldErrors::default();
        errors.add("business_id", "業務を選んでください。");
        return his.show_now(StatusCode::UNPROCESSABLE_ENTITY, &errors, &Form::default()).await;
    };
    let path = his.path(&format!("/internal-ids/{}", segment(business_id)));
    let mut body = json!({ "internal_id": form.get("internal_id").trim() });
    if let Some(role) = form.value("role") {
        body["role"] = json!(role);
    }
    let answer = his.send(Call::post(&path, body).method(Method::PUT).keyed(form)).await;
    his.after(answer, "internal_id", Typed::Other(form)).await
}

/// Removes the operator's 業務内ID in one business system.
pub async fn remove_internal_id(Path((_, business_id)): Path<(String, String)>, his: HisForm) -> Reply {
    let path = his.path(&format!("/internal-ids/{}", segment(&business_id)));
    let answer = his.send(Call::get(&path).method(Method::DELETE).keyed(&his.form)).await;
    his.after(answer, "internal_id_removed", Typed::Other(&Form::default())).await
}

/// Deletes one of his authenticators (the 削除 button of its row), at the version the page showed.
pub async fn remove_authenticator(Path((_, credential)): Path<(String, String)>, his: HisForm) -> Reply {
    let path = his.path(&format!("/authenticators/{}", segment(&credential)));
    let answer = his.send(Call::get(&path).method(Method::DELETE).keyed(&his.form)).await;
    his.after(answer, "authenticator_removed", Typed::Other(&Form::default())).await
}

/// The registration form posted without its script (no WebAuthn in this browser, or scripts off): his page says
/// that this browser cannot register, with the name that was typed.
pub async fn register_without_script(his: HisForm) -> Reply {
    let mut errors = FieldErrors::default();
    errors.general.push(
        "このブラウザでは生体情報を登録できません。生体認証に対応したブラウザで、スクリプトを有効にして登録してください。"
            .to_owned(),
    );
    his.show_now(StatusCode::UNPROCESSABLE_ENTITY, &errors, &his.form).await
}

// ---- パスワード一括変更 ------------------------------------------------------------------------------------------

/// The confirmation of a bulk password change: the operators chosen (each with its problem, after a refusal).
fn bulk_page(
    ui: &UiSession,
    scope: &Scope,
    chosen: &[&str],
    problems: &[Vec<String>],
    general: &FieldErrors,
) -> Markup {
    let csrf = ui.csrf();
    ui.layout(
        "パスワードの一括変更",
        html! {
            (error_summary(general))
            @if chosen.is_empty() {
                p { "パスワードを変更するオペレータが選ばれていません。一覧で選んでください。" }
            } @else {
                p { "次の" (chosen.len()) "人のパスワードを新しく生成します。1人でも変更できなければ、誰のパスワードも変更しません。"
                    "新しいパスワードは次の画面に一度だけ表示されます。ログイン中のセッションは終了します。" }
                form method="post" action="/ui/operators/passwords" {
                    (form_keys(&csrf, &new_key()))
                    (scope.hidden())
                    ul {
                        @for (i, id) in chosen.iter().enumerate() {
                            li {
                                input type="hidden" name="operator_ids" value=(id);
                                code { (id) }
                                @for p in problems.get(i).map(Vec::as_slice).unwrap_or_default() {
                                    " " span.field-error id=(id_of(&format!("operator_ids.{i}"))) { (p) }
                                }
                            }
                        }
                    }
                    button type="submit" { "パスワードを一括変更" }
                }
            }
            p { a href=(scope.href("/ui/operators")) { "オペレータ一覧へ" } }
        },
    )
}

/// パスワード一括変更's confirmation of the operators chosen in the list.
pub async fn bulk_confirm(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let q = Form::of_query(&raw);
    let scope = scope(&api, &ui, q.get("municipality"), "/ui/operators").await?;
    Ok(page(bulk_page(&ui, &scope, &q.all("operator_ids"), &[], &FieldErrors::default())))
}

/// パスワード一括変更: new generated passwords for the chosen operators, all or none, shown this once.
pub async fn bulk_passwords(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let scope = scope(&api, &ui, form.get("municipality"), "/ui/operators").await?;
    let chosen = form.all("operator_ids");
    let path = format!("{}/passwords", scope.api());
    let call = Call::post(&path, json!({ "operator_ids": chosen })).keyed(&form);
    let answer = api.call(&ui, call).await;
    let Some(p) = problem_for_the_form(&answer, &[StatusCode::UNPROCESSABLE_ENTITY, StatusCode::FORBIDDEN])? else {
        let changed = items(&answer.body);
        let rows: Vec<(String, String, String)> = changed
            .iter()
            .filter_map(|item| {
                let password = item.get("password").and_then(Value::as_str)?;
                Some((text(item, "operator_id").to_owned(), String::new(), password.to_owned()))
            })
            .collect();
        let intro = format!("{}人のパスワードを変更しました。", changed.len());
        return Ok(page(passwords_page(&ui, "パスワードの一括変更", &intro, &rows, &scope.href("/ui/operators"))));
    };
    let mut problems = vec![Vec::new(); chosen.len()];
    let mut general = FieldErrors::default();
    general.general.push(p.summary().to_owned());
    for error in &p.errors {
        let index = error.field.strip_prefix("/operator_ids/").and_then(|i| i.parse::<usize>().ok());
        match index.and_then(|i| problems.get_mut(i)) {
            Some(list) => list.push(error.message.clone()),
            None => general.general.push(error.message.clone()),
        }
    }
    Ok((p.status, page(bulk_page(&ui, &scope, &chosen, &problems, &general))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_clears_blank_fields_and_sends_only_changed_lists() {
        let form = Form::parse(
            "name=%E7%AA%93%E5%8F%A3&phone=&roles=clerk&roles=auditor&shown_roles=auditor+clerk\
             &business_systems=01&shown_business_systems=01+02"
                .as_bytes(),
        );
        let body = change_json(&form);
        assert_eq!(body["name"], "窓口");
        assert_eq!(body["phone"], Value::Null);
        assert!(body.get("roles").is_none(), "the same roles in another order are no change");
        assert_eq!(body["business_systems"], json!(["01"]));
    }
}
