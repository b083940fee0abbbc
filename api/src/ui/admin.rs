//! The system administrator's screens of the clerk UI (システム管理, under `/ui/admin…`), in the source's order:
//! 市町村設定 (the municipalities and associations in display order: register, rename or reorder under `If-Match`,
//! abolish after a confirmation), 業務システム設定 (register with the three URLs, change under `If-Match`, retire
//! after a confirmation) and 共同利用業務設定 (per business system, the municipalities permitted to use it: permit
//! one, withdraw one after a confirmation).
//!
//! Owns these pages' routes and HTML only. Every read and change is one call of the HTTP API in process
//! (`super::api`, `routes::municipalities` and `routes::business_systems`): who may do it, the parsing of every field
//! and the Japanese messages are the API's, each refused field's message shown next to that field. The pages are
//! shown only to who may manage municipalities and business systems (the same `authorize` as the API's).

use axum::Extension;
use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cardap_commands::{Permission, authorize};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::api::{Answer, Call, InProcessApi, Problem, flag, segment, text};
use super::flow::{Done, ON_THE_FORM, after_change, all_items, municipalities, one, problems};
use super::form::{FieldErrors, Form, new_key};
use super::pages::{self, Confirmation, Input, confirmation, error_summary, form_keys, input_field, notice, options};
use super::{Posted, Reply, UiSession, page};
use crate::state::AppState;

/// The system administration screens' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/admin", get(index))
        .route("/ui/admin/municipalities", get(municipality_list))
        .route("/ui/admin/municipalities/new", get(municipality_form).post(register_municipality))
        .route("/ui/admin/municipalities/{code}", get(municipality_edit).post(change_municipality))
        .route("/ui/admin/municipalities/{code}/abolish", get(confirm_ending::<Abolish>).post(end::<Abolish>))
        .route("/ui/admin/business-systems", get(business_systems))
        .route("/ui/admin/business-systems/new", get(system_form).post(register_system))
        .route("/ui/admin/business-systems/{id}", get(system_edit).post(change_system))
        .route("/ui/admin/business-systems/{id}/retire", get(confirm_ending::<Retire>).post(end::<Retire>))
        .route("/ui/admin/business-systems/{id}/municipalities", get(shared_use).post(permit))
        .route("/ui/admin/business-systems/{id}/municipalities/{code}/withdraw", get(confirm_withdraw).post(withdraw))
}

/// These screens are the system administrator's: anyone else gets a page saying so (403), before any call.
fn allowed(ui: &UiSession, permission: &Permission) -> Result<(), Response> {
    authorize(&ui.session.actor, permission).map_err(|_| {
        let text = "この画面はシステム管理者が使います。";
        (StatusCode::FORBIDDEN, page(pages::message("システム管理", text))).into_response()
    })
}

/// What a change left to say on the list it returns to (`?done=`).
const DONE: Done = Done(&[
    ("registered", "市町村・任意団体を登録しました。"),
    ("changed", "市町村・任意団体を変更しました。"),
    ("abolished", "市町村・任意団体を廃止しました。"),
    ("system-registered", "業務システムを登録しました。"),
    ("system-changed", "業務システムを変更しました。"),
    ("retired", "業務システムを廃止しました。"),
    ("permitted", "共同利用を許可しました。"),
    ("withdrawn", "共同利用の許可を取り消しました。"),
]);

/// A form's number as the API's JSON: a number when it is one, else the text as typed (the API then names the
/// field), or nothing when blank.
fn number(form: &Form, name: &str) -> Option<Value> {
    let typed = form.value(name)?;
    Some(typed.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(typed.to_owned())))
}

/// The version a page showed, for its hidden field.
fn version_field(version: Option<u64>) -> String {
    version.map(|v| v.to_string()).unwrap_or_default()
}

/// システム管理: what the system administrator manages here.
async fn index(ui: UiSession) -> Reply {
    allowed(&ui, &Permission::ManageMunicipalities)?;
    Ok(page(ui.layout(
        "システム管理",
        html! {
            ul {
                li { a href="/ui/admin/municipalities" { "市町村設定" } " — 市町村・任意団体の登録、名称・表示順の変更、廃止" }
                li { a href="/ui/admin/business-systems" { "業務システム設定" } " — 業務システムの登録・変更・廃止" }
                li { a href="/ui/admin/business-systems" { "共同利用業務設定" } " — 業務システムごとに利用を許可する市町村" }
            }
        },
    )))
}

// ---- 市町村設定 -------------------------------------------------------------------------------------------------

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "municipality" => "市町村",
        "association" => "任意団体",
        _ => "—",
    }
}

/// A municipality of the API.
fn municipality_path(code: &str) -> String {
    format!("/api/v1/municipalities/{}", segment(code))
}

/// 市町村設定: every municipality and association in display order (the abolished ones marked), with their actions.
async fn municipality_list(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Reply {
    allowed(&ui, &Permission::ManageMunicipalities)?;
    let (rows, _) = all_items(&api, &ui, "/api/v1/municipalities?limit=500&include_abolished=true").await?;
    Ok(page(ui.layout(
        "市町村設定",
        html! {
            (notice(DONE.of(&Form::of_query(&query))))
            p { a href="/ui/admin/municipalities/new" { "市町村・任意団体を登録" } }
            @if rows.is_empty() { p.muted { "登録されている市町村はありません。" } } @else {
                table {
                    caption { "表示順に" (rows.len()) "件" }
                    thead { tr { th scope="col" { "表示順" } th scope="col" { "コード" } th scope="col" { "名称" }
                        th scope="col" { "種別" } th scope="col" { "状態" } th scope="col" { "操作" } } }
                    tbody {
                        @for m in &rows {
                            @let code = text(m, "code");
                            tr {
                                td { (m.get("display_order").and_then(Value::as_i64).unwrap_or(0)) }
                                td { code { (code) } }
                                td { (text(m, "name")) }
                                td { (kind_label(text(m, "kind"))) }
                                td { @if flag(m, "abolished") { "廃止" } @else { "利用中" } }
                                td {
                                    @if !flag(m, "abolished") {
                                        a href={ "/ui/admin/municipalities/" (segment(code)) } { "変更" }
                                        " "
                                        a href={ "/ui/admin/municipalities/" (segment(code)) "/abolish" } { "廃止" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )))
}

const MUNICIPALITY_FIELDS: [&str; 4] = ["code", "name", "kind", "display_order"];

fn municipality_register_page(ui: &UiSession, form: &Form, errors: &FieldErrors) -> Markup {
    let kinds = options(&[("municipality", "市町村"), ("association", "任意団体")]);
    ui.layout(
        "市町村・任意団体の登録",
        html! {
            (error_summary(errors))
            form method="post" action="/ui/admin/municipalities/new" novalidate {
                (form_keys(&ui.csrf(), &new_key()))
                (input_field("kind", "種別", form.get("kind"), "", errors, Input::Select { options: &kinds, required: true }))
                (input_field("code", "コード", form.get("code"),
                    "市町村は全国地方公共団体コード6桁（検査数字を含む）、任意団体は A と数字5桁（例: A00001）",
                    errors, Input::Text { required: true }))
                (input_field("name", "名称", form.get("name"), "50文字まで", errors, Input::Text { required: true }))
                (input_field("display_order", "表示順", form.get("display_order"),
                    "1〜999999。小さいほど一覧の上に表示します", errors, Input::Text { required: true }))
                div.actions { button type="submit" { "登録" } a href="/ui/admin/municipalities" { "一覧へ戻る" } }
            }
        },
    )
}

async fn municipality_form(ui: UiSession) -> Reply {
    allowed(&ui, &Permission::ManageMunicipalities)?;
    let mut form = Form::default();
    form.set("kind", "municipality");
    Ok(page(municipality_register_page(&ui, &form, &FieldErrors::default())))
}

/// Registers a municipality or association (`POST /api/v1/municipalities` with the form's `Idempotency-Key`).
async fn register_municipality(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    allowed(&ui, &Permission::ManageMunicipalities)?;
    let mut body = Map::new();
    for name in ["code", "name", "kind"] {
        body.insert(name.to_owned(), Value::String(form.get(name).trim().to_owned()));
    }
    if let Some(order) = number(&form, "display_order") {
        body.insert("display_order".to_owned(), order);
    }
    let call = Call::post("/api/v1/municipalities", Value::Object(body)).keyed(&form);
    let answer = api.call(&ui, call).await;
    let problem = after_change(&answer, "/ui/admin/municipalities?done=registered", ON_THE_FORM)?;
    let errors = problems(&problem, &MUNICIPALITY_FIELDS);
    Ok((problem.status, page(municipality_register_page(&ui, &form, &errors))).into_response())
}

/// The change form of a municipality: its name and display order as `values` holds them, at `version`.
fn municipality_edit_page(
    ui: &UiSession,
    current: &Value,
    values: &Form,
    version: Option<u64>,
    errors: &FieldErrors,
) -> Markup {
    let code = text(current, "code");
    ui.layout(
        "市町村・任意団体の変更",
        html! {
            (error_summary(errors))
            table.facts { tbody {
                tr { th scope="row" { "コード" } td { code { (code) } } }
                tr { th scope="row" { "種別" } td { (kind_label(text(current, "kind"))) } }
                tr { th scope="row" { "現在の名称" } td { (text(current, "name")) } }
                tr { th scope="row" { "現在の表示順" } td { (current.get("display_order").and_then(Value::as_i64).unwrap_or(0)) } }
            } }
            form method="post" action={ "/ui/admin/municipalities/" (segment(code)) } novalidate {
                (form_keys(&ui.csrf(), &new_key()))
                input type="hidden" name="version" value=(version_field(version));
                (input_field("name", "名称", values.get("name"), "50文字まで", errors, Input::Text { required: true }))
                (input_field("display_order", "表示順", values.get("display_order"),
                    "1〜999999。小さいほど一覧の上に表示します", errors, Input::Text { required: true }))
                div.actions { button type="submit" { "変更" } a href="/ui/admin/municipalities" { "一覧へ戻る" } }
            }
        },
    )
}

/// The municipality's name and display order as a form shows them.
fn municipality_values(current: &Value) -> Form {
    let mut values = Form::default();
    values.set("name", text(current, "name"));
    let order = current.get("display_order").and_then(Value::as_i64).map(|o| o.to_string()).unwrap_or_default();
    values.set("display_order", order);
    values
}

async fn municipality_edit(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(code): Path<String>) -> Reply {
    allowed(&ui, &Permission::ManageMunicipalities)?;
    let current = one(&api, &ui, &municipality_path(&code)).await?;
    let values = municipality_values(&current.body);
    Ok(page(municipality_edit_page(&ui, &current.body, &values, current.version, &FieldErrors::default())))
}

/// Renames and reorders (`PATCH` under `If-Match` at the version the form showed): a change by someone else
/// meanwhile is shown with the municipality as it is now, never overwritten.
async fn change_municipality(
    Extension(api): Extension<InProcessApi>,
    Path(code): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    allowed(&ui, &Permission::ManageMunicipalities)?;
    let path = municipality_path(&code);
    let order = number(&form, "display_order").unwrap_or_else(|| Value::String(String::new()));
    let body = json!({"name": form.get("name").trim(), "display_order": order});
    let call = Call::post(&path, body).method(Method::PATCH).keyed(&form);
    let answer = api.call(&ui, call).await;
    let problem = after_change(&answer, "/ui/admin/municipalities?done=changed", ON_THE_FORM)?;
    let errors = problems(&problem, &["name", "display_order"]);
    let (current, values, version) = shown_again(&api, &ui, &path, &problem, None, &form, municipality_values).await?;
    Ok((problem.status, page(municipality_edit_page(&ui, &current, &values, version, &errors))).into_response())
}

/// What an edit form shows again after a refused change: under 412 the resource as it is now (`path` read again)
/// with its values and version, for what was typed is stale; else the resource as the change found it (`before`,
/// or read again) with what was typed, at the version the form carried.
async fn shown_again(
    api: &InProcessApi,
    ui: &UiSession,
    path: &str,
    problem: &Problem,
    before: Option<Answer>,
    typed: &Form,
    values: fn(&Value) -> Form,
) -> Result<(Value, Form, Option<u64>), Response> {
    if problem.status == StatusCode::PRECONDITION_FAILED {
        let now = one(api, ui, path).await?;
        let values = values(&now.body);
        return Ok((now.body, values, now.version));
    }
    let shown = match before {
        Some(before) => before,
        None => one(api, ui, path).await?,
    };
    Ok((shown.body, typed.clone(), typed.version()))
}

/// 廃止 of a municipality or association.
struct Abolish;

impl Ends for Abolish {
    const ENDING: Ending = Ending {
        permission: Permission::ManageMunicipalities,
        path: municipality_path,
        id: "code",
        verb: "abolish",
        ended: "abolished",
        list: "/ui/admin/municipalities",
        title: "市町村・任意団体の廃止",
        what: |m| html! { strong { (text(m, "name")) } "（" (text(m, "code")) "）を廃止します。" },
        warning: "廃止した市町村・任意団体は元に戻せません。そのオペレータはログインできなくなります。",
    };
}

// ---- 業務システム設定 -------------------------------------------------------------------------------------------

/// The fields of a business system in the order of the source's screen: form name (the API's), label, hint,
/// required.
const SYSTEM_FIELDS: [(&str, &str, &str, bool); 8] = [
    ("name", "業務システム名", "50文字まで", true),
    ("organization", "管理組織名", "100文字まで", false),
    ("image", "業務画像URL", "トップページに表示するアイコン（http:// または https://）", false),
    ("top_url", "業務トップURL", "http:// または https://", true),
    ("operator_admin_url", "オペレータ管理URL", "http:// または https://", true),
    ("personalize_url", "パーソナライズURL", "http:// または https://", true),
    ("phone", "連絡先電話", "半角数字とハイフン（例: 03-3333-4444）", false),
    ("email", "E-Mail", "", false),
];

/// A business system of the API.
fn system_path(id: &str) -> String {
    format!("/api/v1/business-systems/{}", segment(id))
}

/// 業務システム設定: every business system (the retired ones marked), with their actions.
async fn business_systems(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let (rows, _) = all_items(&api, &ui, "/api/v1/business-systems?include_retired=true").await?;
    Ok(page(ui.layout(
        "業務システム設定",
        html! {
            (notice(DONE.of(&Form::of_query(&query))))
            p { a href="/ui/admin/business-systems/new" { "業務システムを登録" } }
            table {
                caption { "業務ID順に" (rows.len()) "件" }
                thead { tr { th scope="col" { "業務ID" } th scope="col" { "業務システム名" } th scope="col" { "管理組織名" }
                    th scope="col" { "状態" } th scope="col" { "操作" } } }
                tbody {
                    @for s in &rows {
                        @let id = text(s, "business_id");
                        @let base = format!("/ui/admin/business-systems/{}", segment(id));
                        tr {
                            td { code { (id) } }
                            td { (text(s, "name")) }
                            td { (text(s, "organization")) }
                            td { @if flag(s, "retired") { "廃止" } @else if flag(s, "builtin") { "組込み" } @else { "利用中" } }
                            td {
                                @if !flag(s, "retired") {
                                    a href=(base) { "変更" } " "
                                    a href={ (base) "/municipalities" } { "共同利用" }
                                    @if !flag(s, "builtin") { " " a href={ (base) "/retire" } { "廃止" } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )))
}

fn system_fields(form: &Form, errors: &FieldErrors) -> Markup {
    html! {
        @for (name, label, hint, required) in SYSTEM_FIELDS {
            (input_field(name, label, form.get(name), hint, errors, Input::Text { required }))
        }
    }
}

fn system_register_page(ui: &UiSession, form: &Form, errors: &FieldErrors) -> Markup {
    ui.layout(
        "業務システムの登録",
        html! {
            (error_summary(errors))
            form method="post" action="/ui/admin/business-systems/new" novalidate {
                (form_keys(&ui.csrf(), &new_key()))
                (input_field("business_id", "業務ID", form.get("business_id"),
                    "半角数字2桁（03〜99。00〜02 は組込み）", errors, Input::Text { required: true }))
                (system_fields(form, errors))
                div.actions { button type="submit" { "登録" } a href="/ui/admin/business-systems" { "一覧へ戻る" } }
            }
        },
    )
}

async fn system_form(ui: UiSession) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    Ok(page(system_register_page(&ui, &Form::default(), &FieldErrors::default())))
}

/// Registers a business system (`POST /api/v1/business-systems`): a blank optional field is no value, a blank
/// required one is named by the API.
async fn register_system(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let mut fields: Vec<&str> = SYSTEM_FIELDS.iter().map(|(n, ..)| *n).collect();
    fields.push("business_id");
    let mut body = Map::new();
    for name in &fields {
        body.insert((*name).to_owned(), Value::String(form.get(name).trim().to_owned()));
    }
    let call = Call::post("/api/v1/business-systems", Value::Object(body)).keyed(&form);
    let answer = api.call(&ui, call).await;
    let problem = after_change(&answer, "/ui/admin/business-systems?done=system-registered", ON_THE_FORM)?;
    let errors = problems(&problem, &fields);
    Ok((problem.status, page(system_register_page(&ui, &form, &errors))).into_response())
}

/// A business system's fields as a form shows them.
fn system_values(current: &Value) -> Form {
    let mut values = Form::default();
    for (name, ..) in SYSTEM_FIELDS {
        values.set(name, text(current, name));
    }
    values
}

fn system_edit_page(
    ui: &UiSession,
    current: &Value,
    values: &Form,
    version: Option<u64>,
    errors: &FieldErrors,
) -> Markup {
    let id = text(current, "business_id");
    ui.layout(
        "業務システムの変更",
        html! {
            (error_summary(errors))
            p { "業務ID " code { (id) } @if flag(current, "builtin") { "（組込み）" } }
            form method="post" action={ "/ui/admin/business-systems/" (segment(id)) } novalidate {
                (form_keys(&ui.csrf(), &new_key()))
                input type="hidden" name="version" value=(version_field(version));
                (system_fields(values, errors))
                div.actions { button type="submit" { "変更" } a href="/ui/admin/business-systems" { "一覧へ戻る" } }
            }
        },
    )
}

async fn system_edit(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(id): Path<String>) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let current = one(&api, &ui, &system_path(&id)).await?;
    let values = system_values(&current.body);
    Ok(page(system_edit_page(&ui, &current.body, &values, current.version, &FieldErrors::default())))
}

/// Changes a business system (`PATCH` under `If-Match`): only the fields the form changed are sent (a blank one
/// clears it), so a field the page showed empty, such as a built-in's URL, stays as it is.
async fn change_system(
    Extension(api): Extension<InProcessApi>,
    Path(id): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let path = system_path(&id);
    let before = one(&api, &ui, &path).await?;
    let mut changes = Map::new();
    for (name, ..) in SYSTEM_FIELDS {
        let typed = form.get(name).trim();
        if typed != text(&before.body, name) {
            let value = if typed.is_empty() { Value::Null } else { Value::String(typed.to_owned()) };
            changes.insert(name.to_owned(), value);
        }
    }
    let call = Call::post(&path, Value::Object(changes)).method(Method::PATCH).keyed(&form);
    let answer = api.call(&ui, call).await;
    let problem = after_change(&answer, "/ui/admin/business-systems?done=system-changed", ON_THE_FORM)?;
    let fields: Vec<&str> = SYSTEM_FIELDS.iter().map(|(n, ..)| *n).collect();
    let errors = problems(&problem, &fields);
    let (current, values, version) =
        shown_again(&api, &ui, &path, &problem, Some(before), &form, system_values).await?;
    Ok((problem.status, page(system_edit_page(&ui, &current, &values, version, &errors))).into_response())
}

/// 廃止 of a business system.
struct Retire;

impl Ends for Retire {
    const ENDING: Ending = Ending {
        permission: Permission::ManageBusinessSystems,
        path: system_path,
        id: "business_id",
        verb: "retire",
        ended: "retired",
        list: "/ui/admin/business-systems",
        title: "業務システムの廃止",
        what: |s| html! { strong { (text(s, "name")) } "（業務ID " (text(s, "business_id")) "）を廃止します。" },
        warning: "廃止した業務システムは元に戻せません。どの市町村も利用できなくなり、業務IDは再利用できません。",
    };
}

// ---- 廃止 -----------------------------------------------------------------------------------------------------

/// The end (廃止) of a municipality (`…/abolish`) or of a business system (`…/retire`): the same confirmation at the
/// version shown, then `POST …/{verb}` under `If-Match`, back to the list with `?done={ended}`; refused, the
/// confirmation again with the resource as it is now.
struct Ending {
    permission: Permission,
    /// The resource in the API, by the id in the address.
    path: fn(&str) -> String,
    /// The resource's id field.
    id: &'static str,
    verb: &'static str,
    /// The resource's field that says it has ended, and the `done` of the list.
    ended: &'static str,
    /// The screen's list, the resource's UI address under it.
    list: &'static str,
    title: &'static str,
    /// What is about to end, said of the resource.
    what: fn(&Value) -> Markup,
    warning: &'static str,
}

/// What ends: its [`Ending`], for the two routes of the confirmation and of the change.
trait Ends {
    const ENDING: Ending;
}

fn ending_page(e: &Ending, ui: &UiSession, current: &Value, version: Option<u64>, errors: &FieldErrors) -> Markup {
    let action = format!("{}/{}/{}", e.list, segment(text(current, e.id)), e.verb);
    let confirm = Confirmation {
        title: e.title,
        what: (e.what)(current),
        warning: html! { (e.warning) },
        action: (!flag(current, e.ended)).then_some(action.as_str()),
        hidden: html! {},
        version: &version_field(version),
        button: "廃止を実行",
        back: e.list,
    };
    confirmation(ui, confirm, errors)
}

/// 廃止's confirmation: what is about to happen, and the button that does it (at the version shown).
async fn confirm_ending<E: Ends>(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
) -> Reply {
    let e = &E::ENDING;
    allowed(&ui, &e.permission)?;
    let current = one(&api, &ui, &(e.path)(&id)).await?;
    Ok(page(ending_page(e, &ui, &current.body, current.version, &FieldErrors::default())))
}

/// 廃止 (confirmed), at the version the page showed.
async fn end<E: Ends>(
    Extension(api): Extension<InProcessApi>,
    Path(id): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let e = &E::ENDING;
    allowed(&ui, &e.permission)?;
    let path = (e.path)(&id);
    let action = format!("{path}/{}", e.verb);
    let answer = api.call(&ui, Call::post(&action, json!({})).keyed(&form)).await;
    let problem = after_change(&answer, &format!("{}?done={}", e.list, e.ended), ON_THE_FORM)?;
    let current = one(&api, &ui, &path).await?;
    let errors = problems(&problem, &[]);
    Ok((problem.status, page(ending_page(e, &ui, &current.body, current.version, &errors))).into_response())
}

// ---- 共同利用業務設定 -------------------------------------------------------------------------------------------

/// What the shared-use page of a business system shows.
struct SharedUse {
    system: Value,
    /// The permitted municipalities, in code order.
    permitted: Vec<Value>,
    /// The business system's version (the permits are part of it).
    version: Option<u64>,
    /// The municipalities that may still be permitted: registered, not abolished, not yet permitted.
    offered: Vec<(String, String)>,
}

async fn load_shared_use(api: &InProcessApi, ui: &UiSession, id: &str) -> Result<SharedUse, Response> {
    let base = system_path(id);
    let system = one(api, ui, &base).await?;
    let (permitted, version) = all_items(api, ui, &format!("{base}/permitted-municipalities?limit=500")).await?;
    let offered = municipalities(api, ui)
        .await?
        .into_iter()
        .filter(|(code, _)| !permitted.iter().any(|p| text(p, "code") == code))
        .map(|(code, name)| (code.clone(), format!("{name}（{code}）")))
        .collect();
    Ok(SharedUse { version: version.or(system.version), system: system.body, permitted, offered })
}

/// The shared-use page of a business system's: under `/ui/admin/business-systems/{id}/municipalities`.
fn shared_use_base(id: &str) -> String {
    format!("/ui/admin/business-systems/{}/municipalities", segment(id))
}

fn shared_use_page(ui: &UiSession, data: &SharedUse, chosen: &str, errors: &FieldErrors, done: Option<&str>) -> Markup {
    let id = text(&data.system, "business_id");
    let base = shared_use_base(id);
    let version = version_field(data.version);
    ui.layout(
        &format!("共同利用業務設定: {}（{}）", text(&data.system, "name"), id),
        html! {
            (notice(done))
            (error_summary(errors))
            section aria-labelledby="permitted-title" {
                h3 id="permitted-title" { "利用を許可している市町村" }
                @if data.permitted.is_empty() { p.muted { "利用を許可している市町村はありません。" } } @else {
                    table {
                        thead { tr { th scope="col" { "コード" } th scope="col" { "名称" } th scope="col" { "操作" } } }
                        tbody {
                            @for m in &data.permitted {
                                @let code = text(m, "code");
                                tr {
                                    td { code { (code) } }
                                    td { (text(m, "name")) }
                                    td {
                                        form.inline method="get" action={ (base) "/" (segment(code)) "/withdraw" } {
                                            input type="hidden" name="version" value=(version);
                                            button.secondary type="submit" aria-label={ (text(m, "name")) "の許可を取り消す" } { "許可を取り消す" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if !flag(&data.system, "retired") {
                section aria-labelledby="permit-title" {
                    h3 id="permit-title" { "利用を許可する" }
                    @if data.offered.is_empty() { p.muted { "許可できる市町村はありません（すべて許可済みです）。" } } @else {
                        form method="post" action=(base) novalidate {
                            (form_keys(&ui.csrf(), &new_key()))
                            input type="hidden" name="version" value=(version);
                            (input_field("code", "市町村・任意団体", chosen, "", errors, Input::Select { options: &data.offered, required: true }))
                            div { button type="submit" { "利用を許可" } }
                        }
                    }
                }
            }
            p { a href="/ui/admin/business-systems" { "業務システム一覧へ戻る" } }
        },
    )
}

/// 共同利用業務設定 of one business system: the municipalities permitted, the permit form, the withdraw buttons.
async fn shared_use(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    query: RawQuery,
) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let data = load_shared_use(&api, &ui, &id).await?;
    let done = DONE.of(&Form::of_query(&query));
    Ok(page(shared_use_page(&ui, &data, "", &FieldErrors::default(), done)))
}

/// After a permit or a withdrawal: the shared-use page with `done`, or as it is now with the problem.
async fn after_shared_use(
    api: &InProcessApi,
    ui: &UiSession,
    id: &str,
    answer: &Answer,
    done: &str,
    chosen: &str,
) -> Reply {
    let problem = after_change(answer, &format!("{}?done={done}", shared_use_base(id)), ON_THE_FORM)?;
    let data = load_shared_use(api, ui, id).await?;
    let errors = problems(&problem, &["code"]);
    Ok((problem.status, page(shared_use_page(ui, &data, chosen, &errors, None))).into_response())
}

/// Permits the chosen municipality (`POST …/permitted-municipalities` under `If-Match` at the version shown).
async fn permit(Extension(api): Extension<InProcessApi>, Path(id): Path<String>, Posted { ui, form }: Posted) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let path = format!("{}/permitted-municipalities", system_path(&id));
    let call = Call::post(&path, json!({"code": form.get("code").trim()})).keyed(&form);
    let answer = api.call(&ui, call).await;
    after_shared_use(&api, &ui, &id, &answer, "permitted", form.get("code")).await
}

async fn confirm_withdraw(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path((id, code)): Path<(String, String)>,
    query: RawQuery,
) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let query = Form::of_query(&query);
    let data = load_shared_use(&api, &ui, &id).await?;
    let Some(municipality) = data.permitted.iter().find(|m| text(m, "code") == code) else {
        return Err(super::not_found());
    };
    let system_id = text(&data.system, "business_id");
    let base = shared_use_base(system_id);
    let action = format!("{base}/{}/withdraw", segment(&code));
    let confirm = Confirmation {
        title: "共同利用の許可の取り消し",
        what: html! { strong { (text(municipality, "name")) } "（" (code) "）に対する "
        strong { (text(&data.system, "name")) } "（業務ID " (system_id) "）の利用の許可を取り消します。" },
        warning: html! { "取り消すと、この市町村のオペレータはこの業務を利用できなくなります。" },
        action: Some(&action),
        hidden: html! {},
        version: query.get("version"),
        button: "取り消しを実行",
        back: &base,
    };
    Ok(page(confirmation(&ui, confirm, &FieldErrors::default())))
}

/// Withdraws the municipality's permit (`DELETE …/permitted-municipalities/{code}` under `If-Match`).
async fn withdraw(
    Extension(api): Extension<InProcessApi>,
    Path((id, code)): Path<(String, String)>,
    Posted { ui, form }: Posted,
) -> Reply {
    allowed(&ui, &Permission::ManageBusinessSystems)?;
    let path = format!("{}/permitted-municipalities/{}", system_path(&id), segment(&code));
    let call = Call::get(&path).method(Method::DELETE).keyed(&form);
    let answer = api.call(&ui, call).await;
    after_shared_use(&api, &ui, &id, &answer, "withdrawn", "").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_sent_as_one_and_anything_else_as_typed() {
        let form = Form::parse("a=12&b=%EF%BC%91%EF%BC%92&c=+".as_bytes());
        assert_eq!(number(&form, "a"), Some(json!(12)));
        assert_eq!(number(&form, "b"), Some(json!("１２")));
        assert_eq!(number(&form, "c"), None);
    }
}
