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
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use cardap_commands::{Permission, authorize};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::api::{Answer, Call, InProcessApi, Problem, segment};
use super::form::{FieldErrors, Form, new_key};
use super::pages::{self, Input, error_summary, form_keys, input_field, layout, notice};
use super::{CHANGED_MEANWHILE, UiSession, csrf_ok, forbidden, page, refused};
use crate::state::AppState;

/// The system administration screens' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/admin", get(index))
        .route("/ui/admin/municipalities", get(municipalities))
        .route("/ui/admin/municipalities/new", get(municipality_form).post(register_municipality))
        .route("/ui/admin/municipalities/{code}", get(municipality_edit).post(change_municipality))
        .route("/ui/admin/municipalities/{code}/abolish", get(confirm_abolish).post(abolish))
        .route("/ui/admin/business-systems", get(business_systems))
        .route("/ui/admin/business-systems/new", get(system_form).post(register_system))
        .route("/ui/admin/business-systems/{id}", get(system_edit).post(change_system))
        .route("/ui/admin/business-systems/{id}/retire", get(confirm_retire).post(retire))
        .route("/ui/admin/business-systems/{id}/municipalities", get(shared_use).post(permit))
        .route("/ui/admin/business-systems/{id}/municipalities/{code}/withdraw", get(confirm_withdraw).post(withdraw))
}

/// These screens are the system administrator's: anyone else gets a page saying so (403), before any call.
fn refusal(ui: &UiSession, permission: &Permission) -> Option<Response> {
    authorize(&ui.session.actor, permission).err().map(|_| {
        let text = "この画面はシステム管理者が使います。";
        (StatusCode::FORBIDDEN, page(pages::message("システム管理", text))).into_response()
    })
}

/// What a change left to say on the list it returns to (`?done=`), from a fixed list: nothing typed is echoed.
fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "registered" => "市町村・任意団体を登録しました。",
        "changed" => "市町村・任意団体を変更しました。",
        "abolished" => "市町村・任意団体を廃止しました。",
        "system-registered" => "業務システムを登録しました。",
        "system-changed" => "業務システムを変更しました。",
        "retired" => "業務システムを廃止しました。",
        "permitted" => "共同利用を許可しました。",
        "withdrawn" => "共同利用の許可を取り消しました。",
        _ => return None,
    })
}

fn done_of(query: &RawQuery) -> Option<&'static str> {
    done_text(Form::parse(query.0.as_deref().unwrap_or("").as_bytes()).get("done"))
}

/// Every item of a paged API list (following `next_cursor`), with the first page's version (`ETag`).
async fn all_items(api: &InProcessApi, ui: &UiSession, path: &str) -> Result<(Vec<Value>, Option<u64>), Response> {
    let mut items = Vec::new();
    let mut version = None;
    let mut cursor: Option<String> = None;
    // A bound on the pages read, against an API that would never say it is done.
    for _ in 0..100 {
        let at = match &cursor {
            None => path.to_owned(),
            Some(c) => format!("{path}{}cursor={}", if path.contains('?') { '&' } else { '?' }, segment(c)),
        };
        let answer = api.call(&ui.token, Call::get(&at)).await;
        if let Some(problem) = answer.problem() {
            return Err(refused(&problem));
        }
        version = version.or(answer.version);
        items.extend(answer.body.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
        match answer.body.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    Ok((items, version))
}

/// One resource of the API (with its version), or the page for its refusal.
async fn one(api: &InProcessApi, ui: &UiSession, path: &str) -> Result<Answer, Response> {
    let answer = api.call(&ui.token, Call::get(path)).await;
    match answer.problem() {
        None => Ok(answer),
        Some(problem) => Err(refused(&problem)),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool) == Some(true)
}

/// A form's number as the API's JSON: a number when it is one, else the text as typed (the API then names the
/// field), or nothing when blank.
fn number(form: &Form, name: &str) -> Option<Value> {
    let typed = form.value(name)?;
    Some(typed.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(typed.to_owned())))
}

/// The problems of a refused change, placed at `fields`; under `If-Match` a 412 says the data changed meanwhile.
fn problems(problem: &Problem, fields: &[&str]) -> FieldErrors {
    let mut errors = FieldErrors::of(problem, fields);
    if problem.status == StatusCode::PRECONDITION_FAILED {
        errors.general = vec![CHANGED_MEANWHILE.to_owned()];
    }
    errors
}

/// Whether a refusal belongs on the form (fields, a conflict, a change meanwhile) rather than on a page of its own.
fn shown_on_form(problem: &Problem) -> bool {
    matches!(problem.status, StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED)
}

/// システム管理: what the system administrator manages here.
async fn index(ui: UiSession) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    page(layout(
        "システム管理",
        Some((&ui.session, &ui.csrf())),
        html! {
            ul {
                li { a href="/ui/admin/municipalities" { "市町村設定" } " — 市町村・任意団体の登録、名称・表示順の変更、廃止" }
                li { a href="/ui/admin/business-systems" { "業務システム設定" } " — 業務システムの登録・変更・廃止" }
                li { a href="/ui/admin/business-systems" { "共同利用業務設定" } " — 業務システムごとに利用を許可する市町村" }
            }
        },
    ))
}

// ---- 市町村設定 -------------------------------------------------------------------------------------------------

fn kinds() -> Vec<(String, String)> {
    vec![("municipality".to_owned(), "市町村".to_owned()), ("association".to_owned(), "任意団体".to_owned())]
}

fn kind_label(kind: &str) -> &'static str {
    match kind {
        "municipality" => "市町村",
        "association" => "任意団体",
        _ => "—",
    }
}

/// 市町村設定: every municipality and association in display order (the abolished ones marked), with their actions.
async fn municipalities(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let (rows, _) = match all_items(&api, &ui, "/api/v1/municipalities?limit=500&include_abolished=true").await {
        Ok(found) => found,
        Err(page) => return page,
    };
    page(layout(
        "市町村設定",
        Some((&ui.session, &ui.csrf())),
        html! {
            (notice(done_of(&query)))
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
    ))
}

const MUNICIPALITY_FIELDS: [&str; 4] = ["code", "name", "kind", "display_order"];

fn municipality_register_page(ui: &UiSession, form: &Form, errors: &FieldErrors) -> Markup {
    let kinds = kinds();
    layout(
        "市町村・任意団体の登録",
        Some((&ui.session, &ui.csrf())),
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

async fn municipality_form(ui: UiSession) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let mut form = Form::default();
    form.set("kind", "municipality");
    page(municipality_register_page(&ui, &form, &FieldErrors::default()))
}

/// Registers a municipality or association (`POST /api/v1/municipalities` with the form's `Idempotency-Key`).
async fn register_municipality(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let mut body = Map::new();
    for name in ["code", "name", "kind"] {
        body.insert(name.to_owned(), Value::String(form.get(name).trim().to_owned()));
    }
    if let Some(order) = number(&form, "display_order") {
        body.insert("display_order".to_owned(), order);
    }
    let call = Call::post("/api/v1/municipalities", Value::Object(body)).idempotent(form.idempotency_key());
    let answer = api.call(&ui.token, call).await;
    match answer.problem() {
        None => Redirect::to("/ui/admin/municipalities?done=registered").into_response(),
        Some(p) if shown_on_form(&p) => {
            let errors = problems(&p, &MUNICIPALITY_FIELDS);
            (p.status, page(municipality_register_page(&ui, &form, &errors))).into_response()
        }
        Some(p) => refused(&p),
    }
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
    layout(
        "市町村・任意団体の変更",
        Some((&ui.session, &ui.csrf())),
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
                input type="hidden" name="version" value=(version.map(|v| v.to_string()).unwrap_or_default());
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

async fn municipality_edit(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(code): Path<String>,
) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let current = match one(&api, &ui, &format!("/api/v1/municipalities/{}", segment(&code))).await {
        Ok(answer) => answer,
        Err(page) => return page,
    };
    let values = municipality_values(&current.body);
    page(municipality_edit_page(&ui, &current.body, &values, current.version, &FieldErrors::default()))
}

/// Renames and reorders (`PATCH` under `If-Match` at the version the form showed): a change by someone else
/// meanwhile is shown with the municipality as it is now, never overwritten.
async fn change_municipality(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let path = format!("/api/v1/municipalities/{}", segment(&code));
    let order = number(&form, "display_order").unwrap_or_else(|| Value::String(String::new()));
    let body = json!({"name": form.get("name").trim(), "display_order": order});
    let call =
        Call::post(&path, body).method(Method::PATCH).idempotent(form.idempotency_key()).if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    let Some(problem) = answer.problem() else {
        return Redirect::to("/ui/admin/municipalities?done=changed").into_response();
    };
    if !shown_on_form(&problem) {
        return refused(&problem);
    }
    let errors = problems(&problem, &["name", "display_order"]);
    let current = match one(&api, &ui, &path).await {
        Ok(answer) => answer,
        Err(page) => return page,
    };
    let markup = if problem.status == StatusCode::PRECONDITION_FAILED {
        municipality_edit_page(&ui, &current.body, &municipality_values(&current.body), current.version, &errors)
    } else {
        municipality_edit_page(&ui, &current.body, &form, form.version(), &errors)
    };
    (problem.status, page(markup)).into_response()
}

/// 廃止: what is about to happen, and the button that does it (at the version shown).
async fn confirm_abolish(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(code): Path<String>) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let current = match one(&api, &ui, &format!("/api/v1/municipalities/{}", segment(&code))).await {
        Ok(answer) => answer,
        Err(page) => return page,
    };
    page(abolish_page(&ui, &current.body, current.version, &FieldErrors::default()))
}

fn abolish_page(ui: &UiSession, current: &Value, version: Option<u64>, errors: &FieldErrors) -> Markup {
    let code = text(current, "code");
    layout(
        "市町村・任意団体の廃止",
        Some((&ui.session, &ui.csrf())),
        html! {
            (error_summary(errors))
            p { strong { (text(current, "name")) } "（" (code) "）を廃止します。" }
            p.error { "廃止した市町村・任意団体は元に戻せません。そのオペレータはログインできなくなります。" }
            @if !flag(current, "abolished") {
                form method="post" action={ "/ui/admin/municipalities/" (segment(code)) "/abolish" } {
                    (form_keys(&ui.csrf(), &new_key()))
                    input type="hidden" name="version" value=(version.map(|v| v.to_string()).unwrap_or_default());
                    button type="submit" { "廃止を実行" }
                }
            }
            p { a href="/ui/admin/municipalities" { "やめる" } }
        },
    )
}

async fn abolish(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(code): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageMunicipalities) {
        return page;
    }
    let path = format!("/api/v1/municipalities/{}", segment(&code));
    let action = format!("{path}/abolish");
    let call = Call::post(&action, json!({})).idempotent(form.idempotency_key()).if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    let Some(problem) = answer.problem() else {
        return Redirect::to("/ui/admin/municipalities?done=abolished").into_response();
    };
    if !shown_on_form(&problem) {
        return refused(&problem);
    }
    match one(&api, &ui, &path).await {
        Ok(current) => {
            let errors = problems(&problem, &[]);
            (problem.status, page(abolish_page(&ui, &current.body, current.version, &errors))).into_response()
        }
        Err(page) => page,
    }
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

/// 業務システム設定: every business system (the retired ones marked), with their actions.
async fn business_systems(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let (rows, _) = match all_items(&api, &ui, "/api/v1/business-systems?include_retired=true").await {
        Ok(found) => found,
        Err(page) => return page,
    };
    page(layout(
        "業務システム設定",
        Some((&ui.session, &ui.csrf())),
        html! {
            (notice(done_of(&query)))
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
    ))
}

fn system_fields(form: &Form, errors: &FieldErrors) -> Markup {
    html! {
        @for (name, label, hint, required) in SYSTEM_FIELDS {
            (input_field(name, label, form.get(name), hint, errors, Input::Text { required }))
        }
    }
}

fn system_register_page(ui: &UiSession, form: &Form, errors: &FieldErrors) -> Markup {
    layout(
        "業務システムの登録",
        Some((&ui.session, &ui.csrf())),
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

async fn system_form(ui: UiSession) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    page(system_register_page(&ui, &Form::default(), &FieldErrors::default()))
}

/// Registers a business system (`POST /api/v1/business-systems`): a blank optional field is no value, a blank
/// required one is named by the API.
async fn register_system(Extension(api): Extension<InProcessApi>, ui: UiSession, body: axum::body::Bytes) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let mut body = Map::new();
    for name in std::iter::once("business_id").chain(SYSTEM_FIELDS.iter().map(|(n, ..)| *n)) {
        body.insert(name.to_owned(), Value::String(form.get(name).trim().to_owned()));
    }
    let call = Call::post("/api/v1/business-systems", Value::Object(body)).idempotent(form.idempotency_key());
    let answer = api.call(&ui.token, call).await;
    match answer.problem() {
        None => Redirect::to("/ui/admin/business-systems?done=system-registered").into_response(),
        Some(p) if shown_on_form(&p) => {
            let mut fields: Vec<&str> = SYSTEM_FIELDS.iter().map(|(n, ..)| *n).collect();
            fields.push("business_id");
            let errors = problems(&p, &fields);
            (p.status, page(system_register_page(&ui, &form, &errors))).into_response()
        }
        Some(p) => refused(&p),
    }
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
    layout(
        "業務システムの変更",
        Some((&ui.session, &ui.csrf())),
        html! {
            (error_summary(errors))
            p { "業務ID " code { (id) } @if flag(current, "builtin") { "（組込み）" } }
            form method="post" action={ "/ui/admin/business-systems/" (segment(id)) } novalidate {
                (form_keys(&ui.csrf(), &new_key()))
                input type="hidden" name="version" value=(version.map(|v| v.to_string()).unwrap_or_default());
                (system_fields(values, errors))
                div.actions { button type="submit" { "変更" } a href="/ui/admin/business-systems" { "一覧へ戻る" } }
            }
        },
    )
}

async fn system_edit(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(id): Path<String>) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let current = match one(&api, &ui, &format!("/api/v1/business-systems/{}", segment(&id))).await {
        Ok(answer) => answer,
        Err(page) => return page,
    };
    page(system_edit_page(&ui, &current.body, &system_values(&current.body), current.version, &FieldErrors::default()))
}

/// Changes a business system (`PATCH` under `If-Match`): only the fields the form changed are sent (a blank one
/// clears it), so a field the page showed empty, such as a built-in's URL, stays as it is.
async fn change_system(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let path = format!("/api/v1/business-systems/{}", segment(&id));
    let before = match one(&api, &ui, &path).await {
        Ok(answer) => answer,
        Err(page) => return page,
    };
    let mut changes = Map::new();
    for (name, ..) in SYSTEM_FIELDS {
        let typed = form.get(name).trim();
        if typed != text(&before.body, name) {
            let value = if typed.is_empty() { Value::Null } else { Value::String(typed.to_owned()) };
            changes.insert(name.to_owned(), value);
        }
    }
    let call = Call::post(&path, Value::Object(changes))
        .method(Method::PATCH)
        .idempotent(form.idempotency_key())
        .if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    let Some(problem) = answer.problem() else {
        return Redirect::to("/ui/admin/business-systems?done=system-changed").into_response();
    };
    if !shown_on_form(&problem) {
        return refused(&problem);
    }
    let fields: Vec<&str> = SYSTEM_FIELDS.iter().map(|(n, ..)| *n).collect();
    let errors = problems(&problem, &fields);
    let markup = if problem.status == StatusCode::PRECONDITION_FAILED {
        let current = match one(&api, &ui, &path).await {
            Ok(answer) => answer,
            Err(page) => return page,
        };
        system_edit_page(&ui, &current.body, &system_values(&current.body), current.version, &errors)
    } else {
        system_edit_page(&ui, &before.body, &form, form.version(), &errors)
    };
    (problem.status, page(markup)).into_response()
}

fn retire_page(ui: &UiSession, current: &Value, version: Option<u64>, errors: &FieldErrors) -> Markup {
    let id = text(current, "business_id");
    layout(
        "業務システムの廃止",
        Some((&ui.session, &ui.csrf())),
        html! {
            (error_summary(errors))
            p { strong { (text(current, "name")) } "（業務ID " (id) "）を廃止します。" }
            p.error { "廃止した業務システムは元に戻せません。どの市町村も利用できなくなり、業務IDは再利用できません。" }
            @if !flag(current, "retired") {
                form method="post" action={ "/ui/admin/business-systems/" (segment(id)) "/retire" } {
                    (form_keys(&ui.csrf(), &new_key()))
                    input type="hidden" name="version" value=(version.map(|v| v.to_string()).unwrap_or_default());
                    button type="submit" { "廃止を実行" }
                }
            }
            p { a href="/ui/admin/business-systems" { "やめる" } }
        },
    )
}

async fn confirm_retire(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(id): Path<String>) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    match one(&api, &ui, &format!("/api/v1/business-systems/{}", segment(&id))).await {
        Ok(current) => page(retire_page(&ui, &current.body, current.version, &FieldErrors::default())),
        Err(page) => page,
    }
}

async fn retire(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let path = format!("/api/v1/business-systems/{}", segment(&id));
    let action = format!("{path}/retire");
    let call = Call::post(&action, json!({})).idempotent(form.idempotency_key()).if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    let Some(problem) = answer.problem() else {
        return Redirect::to("/ui/admin/business-systems?done=retired").into_response();
    };
    if !shown_on_form(&problem) {
        return refused(&problem);
    }
    match one(&api, &ui, &path).await {
        Ok(current) => {
            let errors = problems(&problem, &[]);
            (problem.status, page(retire_page(&ui, &current.body, current.version, &errors))).into_response()
        }
        Err(page) => page,
    }
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
    let base = format!("/api/v1/business-systems/{}", segment(id));
    let system = one(api, ui, &base).await?;
    let (permitted, version) = all_items(api, ui, &format!("{base}/permitted-municipalities?limit=500")).await?;
    let (municipalities, _) = all_items(api, ui, "/api/v1/municipalities?limit=500").await?;
    let offered = municipalities
        .iter()
        .filter(|m| !permitted.iter().any(|p| text(p, "code") == text(m, "code")))
        .map(|m| (text(m, "code").to_owned(), format!("{}（{}）", text(m, "name"), text(m, "code"))))
        .collect();
    Ok(SharedUse { version: version.or(system.version), system: system.body, permitted, offered })
}

fn shared_use_page(ui: &UiSession, data: &SharedUse, chosen: &str, errors: &FieldErrors, done: Option<&str>) -> Markup {
    let id = text(&data.system, "business_id");
    let base = format!("/ui/admin/business-systems/{}/municipalities", segment(id));
    let version = data.version.map(|v| v.to_string()).unwrap_or_default();
    layout(
        &format!("共同利用業務設定: {}（{}）", text(&data.system, "name"), id),
        Some((&ui.session, &ui.csrf())),
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
) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    match load_shared_use(&api, &ui, &id).await {
        Ok(data) => page(shared_use_page(&ui, &data, "", &FieldErrors::default(), done_of(&query))),
        Err(page) => page,
    }
}

/// After a refused permit or withdrawal: the shared-use page as it is now, with the problem.
async fn shared_use_refused(api: &InProcessApi, ui: &UiSession, id: &str, problem: &Problem, chosen: &str) -> Response {
    if !shown_on_form(problem) {
        return refused(problem);
    }
    match load_shared_use(api, ui, id).await {
        Ok(data) => {
            let errors = problems(problem, &["code"]);
            (problem.status, page(shared_use_page(ui, &data, chosen, &errors, None))).into_response()
        }
        Err(page) => page,
    }
}

/// Permits the chosen municipality (`POST …/permitted-municipalities` under `If-Match` at the version shown).
async fn permit(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let path = format!("/api/v1/business-systems/{}/permitted-municipalities", segment(&id));
    let call = Call::post(&path, json!({"code": form.get("code").trim()}))
        .idempotent(form.idempotency_key())
        .if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    match answer.problem() {
        None => Redirect::to(&format!("/ui/admin/business-systems/{}/municipalities?done=permitted", segment(&id)))
            .into_response(),
        Some(problem) => shared_use_refused(&api, &ui, &id, &problem, form.get("code")).await,
    }
}

async fn confirm_withdraw(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path((id, code)): Path<(String, String)>,
    query: RawQuery,
) -> Response {
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let query = Form::parse(query.0.as_deref().unwrap_or("").as_bytes());
    let data = match load_shared_use(&api, &ui, &id).await {
        Ok(data) => data,
        Err(page) => return page,
    };
    let Some(municipality) = data.permitted.iter().find(|m| text(m, "code") == code) else {
        return super::not_found();
    };
    let system_id = text(&data.system, "business_id");
    let base = format!("/ui/admin/business-systems/{}/municipalities", segment(system_id));
    page(layout(
        "共同利用の許可の取り消し",
        Some((&ui.session, &ui.csrf())),
        html! {
            p { strong { (text(municipality, "name")) } "（" (code) "）に対する "
                strong { (text(&data.system, "name")) } "（業務ID " (system_id) "）の利用の許可を取り消します。" }
            p.error { "取り消すと、この市町村のオペレータはこの業務を利用できなくなります。" }
            form method="post" action={ (base) "/" (segment(&code)) "/withdraw" } {
                (form_keys(&ui.csrf(), &new_key()))
                input type="hidden" name="version" value=(query.get("version"));
                button type="submit" { "取り消しを実行" }
            }
            p { a href=(base) { "やめる" } }
        },
    ))
}

/// Withdraws the municipality's permit (`DELETE …/permitted-municipalities/{code}` under `If-Match`).
async fn withdraw(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path((id, code)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    if let Some(page) = refusal(&ui, &Permission::ManageBusinessSystems) {
        return page;
    }
    let path = format!("/api/v1/business-systems/{}/permitted-municipalities/{}", segment(&id), segment(&code));
    let call = Call::get(&path).method(Method::DELETE).idempotent(form.idempotency_key()).if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    match answer.problem() {
        None => Redirect::to(&format!("/ui/admin/business-systems/{}/municipalities?done=withdrawn", segment(&id)))
            .into_response(),
        Some(problem) => shared_use_refused(&api, &ui, &id, &problem, "").await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_outcomes_are_said() {
        assert_eq!(done_text("permitted"), Some("共同利用を許可しました。"));
        assert_eq!(done_text("<b>x</b>"), None);
    }

    #[test]
    fn a_number_is_sent_as_one_and_anything_else_as_typed() {
        let form = Form::parse("a=12&b=%EF%BC%91%EF%BC%92&c=+".as_bytes());
        assert_eq!(number(&form, "a"), Some(json!(12)));
        assert_eq!(number(&form, "b"), Some(json!("１２")));
        assert_eq!(number(&form, "c"), None);
    }
}
