//! The resident screens of the clerk UI, in the source's order of work: 利用者検索, 利用者登録 (every field, the
//! municipality's custom fields, prefill from the registry by 宛名番号 or by the four facts), and the resident's
//! page with his card: カード登録, 地域住民向け領域設定 (the presets shown), カードAP搭載 and removal (several at
//! once, with the result per AP), 一時停止・再開・廃止 with a confirmation; the way to 転出 and 消去
//! ([`super::leaving`]).
//!
//! Owns these pages' routes and HTML. Every change and every read of a resident is one call of the HTTP API in
//! process (`super::api`): its authorization, parsing and messages are the API's, and a refused field's message is
//! shown next to that field. The search form checks its own three conditions (the search use case is called
//! directly, as the first screen was built).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cardap_domain::resident::EraDate;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{Answer, Call, InProcessApi, items, segment, strings, text};
use super::flow::{Done, ON_THE_FORM, after_change, one, problem_for_the_form, problems};
use super::form::{FieldErrors, Form, insert, new_key};
use super::pages::{
    self, Confirmation, Input, confirmation, error_summary, field_note, form_keys, input_field, notice, options,
    text_field,
};
use super::{Posted, Reply, UiSession, page, refused};
use crate::state::AppState;

/// The fields of 利用者登録 before the custom fields: form name (the API's pointer with dots), label, hint,
/// required.
const PERSONAL: [(&str, &str, &str, bool); 11] = [
    ("kana_name.family", "カナ氏名（姓）", "全角カタカナ（半角カナも可）", true),
    ("kana_name.given", "カナ氏名（名）", "全角カタカナ（半角カナも可）", true),
    ("kanji_name.family", "漢字氏名（姓）", "", true),
    ("kanji_name.given", "漢字氏名（名）", "", true),
    ("birth_date", "生年月日", "元号の数字と年月日の7桁（1明治 2大正 3昭和 4平成 5令和。例: 3450101）", true),
    ("postal_code", "郵便番号", "例: 100-0001", false),
    ("address1", "住所", "", false),
    ("address2", "方書", "", false),
    ("phone", "電話番号", "例: 03-1234-5678", false),
    ("email", "メールアドレス", "", false),
    ("occupation", "職業", "", false),
];

/// 性別 (ISO 5218).
fn sexes() -> Vec<(String, String)> {
    options(&[("1", "男"), ("2", "女"), ("9", "適用不能"), ("0", "不明")])
}

// ---- 利用者検索 -------------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
pub struct SearchFields {
    #[serde(default)]
    kana_prefix: String,
    #[serde(default)]
    birth_date: String,
    #[serde(default)]
    fid: String,
}

/// 利用者検索: the residents of the operator's own municipality by kana prefix, birth date (`EYYMMDD`) or FID,
/// through `GET …/residents` (its parsing and messages, recorded in the read access log with the page's terminal).
/// Each field's problem is shown next to it and what was typed stays in the form; with no condition only the form
/// is shown.
pub async fn search(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Reply {
    let fields: SearchFields = serde_urlencoded::from_str(query.0.as_deref().unwrap_or("")).unwrap_or_default();
    let code = ui.own_municipality("利用者検索")?;
    let conditions = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        let typed = [("kana_prefix", &fields.kana_prefix), ("birth_date", &fields.birth_date), ("fid", &fields.fid)];
        for (name, value) in typed.into_iter().filter(|(_, v)| !v.trim().is_empty()) {
            query.append_pair(name, value.trim());
        }
        query.finish()
    };
    let mut errors = FieldErrors::default();
    let found = if conditions.is_empty() {
        None
    } else {
        let path = format!("/api/v1/municipalities/{code}/residents?{conditions}&limit=100");
        let answer = api.call(&ui, Call::get(&path)).await;
        match problem_for_the_form(&answer, &[StatusCode::UNPROCESSABLE_ENTITY])? {
            Some(problem) => {
                errors = FieldErrors::of(&problem, &["kana_prefix", "birth_date", "fid"]);
                None
            }
            None => Some((items(&answer.body).to_vec(), !answer.body["next_cursor"].is_null())),
        }
    };
    let form = pages::SearchForm { kana_prefix: &fields.kana_prefix, birth_date: &fields.birth_date, fid: &fields.fid };
    Ok(page(pages::residents(
        &ui.session,
        &ui.csrf(),
        &form,
        &errors,
        found.as_ref().map(|(rows, more)| (rows.as_slice(), *more)),
    )))
}

// ---- 利用者登録 -------------------------------------------------------------------------------------------------

/// One custom field of the municipality, as its registration form shows it.
struct CustomField {
    key: String,
    label: String,
    kind: String,
    options: Vec<(String, String)>,
    required: bool,
    hint: String,
}

impl CustomField {
    fn name(&self) -> String {
        format!("custom_fields.{}", self.key)
    }

    fn of(definition: &Value) -> CustomField {
        let text = |k: &str| definition.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let kind = text("type");
        let number = |k: &str| definition.get(k).and_then(Value::as_i64);
        let hint = match kind.as_str() {
            "date" => "年-月-日（例: 2026-04-01）".to_owned(),
            "number" => match (number("min"), number("max")) {
                (Some(a), Some(b)) => format!("{a}〜{b} の整数"),
                (Some(a), None) => format!("{a} 以上の整数"),
                (None, Some(b)) => format!("{b} 以下の整数"),
                (None, None) => "整数".to_owned(),
            },
            "text" => number("max_length").map(|n| format!("{n}文字まで")).unwrap_or_default(),
            _ => String::new(),
        };
        let options = definition
            .get("options")
            .and_then(Value::as_array)
            .map(|o| o.iter().filter_map(Value::as_str).map(|s| (s.to_owned(), s.to_owned())).collect())
            .unwrap_or_default();
        CustomField {
            key: text("key"),
            label: text("label"),
            kind,
            options,
            required: definition.get("required").and_then(Value::as_bool).unwrap_or(false),
            hint,
        }
    }
}

/// The municipality's resident settings (custom fields, AP catalog, presets) as the API answers them.
async fn settings(api: &InProcessApi, ui: &UiSession, code: &str) -> Result<Answer, Response> {
    one(api, ui, &format!("/api/v1/municipalities/{code}/resident-settings")).await
}

fn custom_fields(settings: &Answer) -> Vec<CustomField> {
    settings
        .body
        .get("custom_fields")
        .and_then(Value::as_array)
        .map(|d| d.iter().map(CustomField::of).collect())
        .unwrap_or_default()
}

/// What the registration form shows around its fields.
struct RegistrationPage<'a> {
    form: &'a Form,
    errors: &'a FieldErrors,
    custom: &'a [CustomField],
    /// Registry entries to choose from (a lookup by the four facts that found several).
    matches: &'a [Value],
    note: Option<&'a str>,
}

fn registration_page(ui: &UiSession, p: &RegistrationPage<'_>) -> Markup {
    let form = p.form;
    let sexes = sexes();
    let key = Some(form.idempotency_key()).filter(|k| !k.is_empty()).map(str::to_owned).unwrap_or_else(new_key);
    ui.layout(
        "利用者登録",
        html! {
            (notice(p.note))
            section aria-labelledby="prefill-title" {
                h3 id="prefill-title" { "住基データから入力" }
                form.inline method="get" action="/ui/residents/new" {
                    (text_field("registry_key", "宛名番号", form.get("registry_key"), "住基システムの宛名番号", p.errors))
                    button type="submit" name="by" value="key" { "宛名番号で呼び出し" }
                }
                details {
                    summary { "カードの4情報で呼び出し" }
                    form method="get" action="/ui/residents/new" {
                        (text_field("lookup.name", "氏名", form.get("lookup.name"), "空白・全角半角は問いません", p.errors))
                        (text_field("lookup.birth_date", "生年月日", form.get("lookup.birth_date"), "YYYYMMDD または元号7桁", p.errors))
                        (input_field("lookup.sex", "性別", form.get("lookup.sex"), "", p.errors, Input::Select { options: &sexes, required: false }))
                        (text_field("lookup.address", "住所", form.get("lookup.address"), "同じ住所の候補が先に並びます", p.errors))
                        button type="submit" name="by" value="facts" { "4情報で呼び出し" }
                    }
                }
                @if !p.matches.is_empty() {
                    p role="status" { "該当する住基データが" (p.matches.len()) "件あります。登録する方を選んでください。" }
                    ul {
                        @for m in p.matches {
                            @let key = text(m, "registry_key");
                            li { a href={ "/ui/residents/new?by=key&registry_key=" (segment(key)) } {
                                (draft_label(m)) " （宛名番号 " (key) "）" } }
                        }
                    }
                }
            }
            section aria-labelledby="register-title" {
                h3 id="register-title" { "利用者情報" }
                (error_summary(p.errors))
                form method="post" action="/ui/residents/new" novalidate {
                    (form_keys(&ui.csrf(), &key))
                    input type="hidden" name="registry_key" value=(form.get("registry_key"));
                    (personal_fields(form, p.errors, p.custom))
                    @if !form.get("registry_key").is_empty() {
                        p.muted { "宛名番号 " (form.get("registry_key")) " の住基データと関連付けて登録します。" }
                    }
                    div { button type="submit" { "登録" } }
                }
            }
        },
    )
}

/// The resident's fields of 利用者登録 and 利用者情報の変更: what the form holds, each problem next to its field.
fn personal_fields(form: &Form, errors: &FieldErrors, custom: &[CustomField]) -> Markup {
    let sexes = sexes();
    html! {
        @for (name, label, hint, required) in PERSONAL.iter().take(5) {
            (input_field(name, label, form.get(name), hint, errors, Input::Text { required: *required }))
        }
        (input_field("sex", "性別", form.get("sex"), "", errors, Input::Select { options: &sexes, required: true }))
        @for (name, label, hint, required) in PERSONAL.iter().skip(5) {
            (input_field(name, label, form.get(name), hint, errors, Input::Text { required: *required }))
        }
        @if !custom.is_empty() {
            h4 { "市町村独自項目" }
            @for field in custom {
                @let name = field.name();
                @if field.kind == "choice" {
                    (input_field(&name, &field.label, form.get(&name), &field.hint, errors,
                        Input::Select { options: &field.options, required: field.required }))
                } @else {
                    (input_field(&name, &field.label, form.get(&name), &field.hint, errors,
                        Input::Text { required: field.required }))
                }
            }
        }
    }
}

/// A custom field's value as the API takes it: a whole number for a number field, else the text.
fn custom_value(field: &CustomField, value: &str) -> Value {
    match (field.kind.as_str(), value.parse::<i64>()) {
        ("number", Ok(n)) => json!(n),
        _ => Value::String(value.to_owned()),
    }
}

/// Every form field of the resident (the API's pointers with dots), custom fields included.
fn field_names(custom: &[CustomField]) -> Vec<String> {
    let mut names: Vec<String> = PERSONAL.iter().map(|(n, ..)| (*n).to_owned()).collect();
    names.push("sex".to_owned());
    names.extend(custom.iter().map(CustomField::name));
    names
}

/// A registry entry in a line: kanji name, kana name, birth date.
fn draft_label(draft: &Value) -> String {
    let name = |k: &str| {
        draft
            .get(k)
            .map(|n| format!("{} {}", n["family"].as_str().unwrap_or(""), n["given"].as_str().unwrap_or("")))
            .unwrap_or_default()
    };
    let birth = draft
        .get("birth_date")
        .and_then(Value::as_str)
        .and_then(|d| EraDate::parse(d).ok())
        .map(|d| d.label_ja())
        .unwrap_or_default();
    format!("{}（{}） {}", name("kanji_name"), name("kana_name"), birth)
}

/// Puts a registry draft into the registration form.
fn prefill(form: &mut Form, draft: &Value) {
    for (pointer, name) in [
        ("/registry_key", "registry_key"),
        ("/kana_name/family", "kana_name.family"),
        ("/kana_name/given", "kana_name.given"),
        ("/kanji_name/family", "kanji_name.family"),
        ("/kanji_name/given", "kanji_name.given"),
        ("/birth_date", "birth_date"),
        ("/sex", "sex"),
        ("/postal_code", "postal_code"),
        ("/address1", "address1"),
    ] {
        if let Some(value) = draft.pointer(pointer).and_then(Value::as_str) {
            form.set(name, value);
        }
    }
}

/// 利用者登録's form; with `by=key` (宛名番号) or `by=facts` (the four facts), prefilled from the registry.
pub async fn register_form(
    State(_state): State<AppState>,
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    query: RawQuery,
) -> Reply {
    let code = ui.own_municipality("利用者登録")?;
    let mut form = Form::of_query(&query);
    let settings = settings(&api, &ui, &code).await?;
    let custom = custom_fields(&settings);
    let mut errors = FieldErrors::default();
    let mut matches = Vec::new();
    let mut note = None;
    match form.get("by") {
        "key" => match form.value("registry_key").map(str::to_owned) {
            None => errors.add("registry_key", "宛名番号を入力してください。"),
            Some(key) => {
                let path = format!("/api/v1/municipalities/{code}/registry/{}", segment(&key));
                let answer = api.call(&ui, Call::get(&path)).await;
                match answer.problem() {
                    None => {
                        prefill(&mut form, &answer.body);
                        note = Some("住基データを読み込みました。内容を確認して登録してください。");
                    }
                    Some(p) if p.status == StatusCode::NOT_FOUND => {
                        errors.add("registry_key", "この宛名番号の住基データはありません。")
                    }
                    Some(p) => return Err(refused(&p)),
                }
            }
        },
        "facts" => {
            let mut facts = Map::new();
            for name in ["name", "birth_date", "sex", "address"] {
                if let Some(v) = form.value(&format!("lookup.{name}")) {
                    facts.insert(name.to_owned(), Value::String(v.to_owned()));
                }
            }
            for name in ["name", "birth_date", "sex"] {
                facts.entry(name.to_owned()).or_insert_with(|| Value::String(String::new()));
            }
            let path = format!("/api/v1/municipalities/{code}/registry/lookup");
            let answer = api.call(&ui, Call::post(&path, Value::Object(facts))).await;
            match answer.problem() {
                None => match items(&answer.body) {
                    [] => errors.general.push("4情報に該当する住基データはありません。".to_owned()),
                    [one] => {
                        prefill(&mut form, one);
                        note = Some("住基データを読み込みました。内容を確認して登録してください。");
                    }
                    found => matches = found.to_vec(),
                },
                Some(p) if p.status == StatusCode::UNPROCESSABLE_ENTITY => {
                    let fields = ["lookup.name", "lookup.birth_date", "lookup.sex", "lookup.address"];
                    let mut found = FieldErrors::of(&p, &["name", "birth_date", "sex", "address"]);
                    for (short, long) in ["name", "birth_date", "sex", "address"].iter().zip(fields) {
                        for m in found.of_field(short) {
                            errors.add(long, m);
                        }
                    }
                    errors.general = std::mem::take(&mut found.general);
                }
                Some(p) => return Err(refused(&p)),
            }
        }
        _ => {}
    }
    Ok(page(registration_page(
        &ui,
        &RegistrationPage { form: &form, errors: &errors, custom: &custom, matches: &matches, note },
    )))
}

/// Registers the resident of the form (`POST …/residents` with the form's `Idempotency-Key`: a double click
/// registers one resident); refused, the same form again with every problem next to its field.
pub async fn register(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let code = ui.own_municipality("利用者登録")?;
    let settings = settings(&api, &ui, &code).await?;
    let custom = custom_fields(&settings);
    let mut names: Vec<&str> = PERSONAL.iter().map(|(n, ..)| *n).collect();
    names.extend(["sex", "registry_key"]);
    let mut body = form.json(&names);
    if let Value::Object(root) = &mut body {
        let mut values = Map::new();
        for field in &custom {
            let Some(value) = form.value(&field.name()) else { continue };
            values.insert(field.key.clone(), custom_value(field, value));
        }
        insert(root, "custom_fields", Value::Object(values));
    }
    let path = format!("/api/v1/municipalities/{code}/residents");
    let answer = api.call(&ui, Call::post(&path, body).keyed(&form)).await;
    let on_the_form = [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT];
    let Some(problem) = problem_for_the_form(&answer, &on_the_form)? else {
        let id = answer.str("/resident_id");
        return Ok(Redirect::to(&format!("/ui/residents/{}?done=registered", segment(id))).into_response());
    };
    let mut fields: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    fields.extend(custom.iter().map(CustomField::name));
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let errors = FieldErrors::of(&problem, &fields);
    let markup = registration_page(
        &ui,
        &RegistrationPage { form: &form, errors: &errors, custom: &custom, matches: &[], note: None },
    );
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page(markup)).into_response())
}

// ---- the resident and his card -------------------------------------------------------------------------------

/// What a change left to say on the resident's page (`?done=`).
const DONE: Done = Done(&[
    ("registered", "利用者を登録しました。"),
    ("changed", "利用者情報を変更しました。"),
    ("card", "カードを登録しました。"),
    ("area", "地域住民向け領域を作成しました。"),
    ("installed", "カードAPを搭載しました。"),
    ("suspended", "カードを一時停止しました。"),
    ("resumed", "カードの一時停止を解除しました。"),
    ("abolished", "カードを廃止しました。"),
    ("moved_out", "転出を登録しました。"),
]);

/// Names of the business systems, by id (for the AP lists).
async fn system_names(api: &InProcessApi, ui: &UiSession) -> Vec<(String, String)> {
    let answer = api.call(ui, Call::get("/api/v1/business-systems")).await;
    items(&answer.body).iter().map(|s| (text(s, "business_id").to_owned(), text(s, "name").to_owned())).collect()
}

fn name_of<'a>(names: &'a [(String, String)], id: &str) -> &'a str {
    names.iter().find(|(b, _)| b == id).map(|(_, n)| n.as_str()).unwrap_or("")
}

/// Everything the resident's page shows.
struct ResidentPage {
    resident: Answer,
    custom: Vec<CustomField>,
    card: Option<Answer>,
    catalog: Vec<String>,
    presets: Vec<String>,
    names: Vec<(String, String)>,
}

/// A card of the municipality, in the API.
fn card_path(code: &str, fid: &str) -> String {
    format!("/api/v1/municipalities/{code}/cards/{}", segment(fid))
}

async fn load_resident(api: &InProcessApi, ui: &UiSession, code: &str, id: &str) -> Result<ResidentPage, Response> {
    let resident = one(api, ui, &format!("/api/v1/municipalities/{code}/residents/{}", segment(id))).await?;
    let card = match resident.body.get("active_fid").and_then(Value::as_str) {
        Some(fid) => Some(one(api, ui, &card_path(code, fid)).await?),
        None => None,
    };
    let settings = settings(api, ui, code).await?;
    Ok(ResidentPage {
        card,
        custom: custom_fields(&settings),
        catalog: strings(&settings.body, "catalog"),
        presets: strings(&settings.body, "presets"),
        names: system_names(api, ui).await,
        resident,
    })
}

/// The resident's page: his data and his card, with the card's next steps.
pub async fn show(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    query: RawQuery,
) -> Reply {
    let code = ui.own_municipality("利用者")?;
    let data = load_resident(&api, &ui, &code, &id).await?;
    let done = DONE.of(&Form::of_query(&query));
    Ok(page(resident_page(&ui, &code, &data, done, &FieldErrors::default(), &Form::default())))
}

fn resident_page(
    ui: &UiSession,
    code: &str,
    data: &ResidentPage,
    done: Option<&str>,
    errors: &FieldErrors,
    typed: &Form,
) -> Markup {
    let r = &data.resident.body;
    let text = |p: &str| r.pointer(p).and_then(Value::as_str).unwrap_or("");
    let id = text("/resident_id");
    let csrf = ui.csrf();
    let rows: [(&str, String); 9] = [
        ("カナ氏名", format!("{} {}", text("/kana_name/family"), text("/kana_name/given"))),
        ("漢字氏名", format!("{} {}", text("/kanji_name/family"), text("/kanji_name/given"))),
        ("生年月日", text("/birth_date_label").to_owned()),
        ("性別", sexes().into_iter().find(|(v, _)| v == text("/sex")).map(|(_, l)| l).unwrap_or_default()),
        ("郵便番号", text("/postal_code").to_owned()),
        ("住所", format!("{} {}", text("/address1"), text("/address2"))),
        ("電話番号", text("/phone").to_owned()),
        ("メールアドレス", text("/email").to_owned()),
        ("職業", text("/occupation").to_owned()),
    ];
    let custom = r.get("custom_fields").and_then(Value::as_object);
    let title = format!("利用者 {} {}", text("/kanji_name/family"), text("/kanji_name/given"));
    ui.layout(
        &title,
        html! {
            (notice(done))
            @if r.get("erased").and_then(Value::as_bool) == Some(true) { p.error { "この利用者の個人情報は消去されています。" } }
            @if r.get("moved_out").and_then(Value::as_bool) == Some(true) { p.error { "この利用者は転出済みです。" } }
            (error_summary(errors))
            div.resident {
            section aria-labelledby="facts-title" {
            h3 id="facts-title" { "利用者情報" }
            @if r.get("erased").and_then(Value::as_bool) != Some(true) {
                p { a href={ "/ui/residents/" (segment(id)) "/edit" } { "利用者情報の変更" } }
            }
            table.facts {
                tbody {
                    tr { th scope="row" { "利用者ID" } td { code { (id) } } }
                    @for (label, value) in &rows { tr { th scope="row" { (label) } td { (value.trim()) } } }
                    @if let Some(custom) = custom {
                        @for (k, v) in custom {
                            @let label = data.custom.iter().find(|f| &f.key == k).map(|f| f.label.as_str()).unwrap_or(k);
                            tr { th scope="row" { (label) } td { (v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())) } }
                        }
                    }
                }
            }
            }
            section aria-labelledby="card-title" {
                h3 id="card-title" { "カード" }
                @match &data.card {
                    None => {
                        form method="post" action={ "/ui/residents/" (segment(id)) "/card" } novalidate {
                            (form_keys(&csrf, &new_key()))
                            (input_field("fid", "カードFID", typed.get("fid"), "カードに記録されたFID（半角英数字）", errors, Input::Text { required: true }))
                            div { button type="submit" { "カード登録" } }
                        }
                    }
                    Some(card) => { (card_section(&csrf, data, card, errors)) }
                }
            }
            }
            (super::leaving::section(ui, code, r))
        },
    )
}

fn status_label(status: &str) -> &'static str {
    match status {
        "in_use" => "使用中",
        "suspended" => "一時停止中",
        "abolished" => "廃止",
        _ => "—",
    }
}

fn card_section(csrf: &str, data: &ResidentPage, card: &Answer, errors: &FieldErrors) -> Markup {
    let fid = card.str("/fid");
    let status = card.str("/status");
    let version = card.version.unwrap_or(0).to_string();
    let local_area = card.body.get("local_area").and_then(Value::as_bool) == Some(true);
    let aps = card.body.get("aps").and_then(Value::as_array).cloned().unwrap_or_default();
    let installed: Vec<&str> = aps.iter().filter_map(|a| a.get("business_id").and_then(Value::as_str)).collect();
    let offered: Vec<&String> = data.catalog.iter().filter(|b| !installed.contains(&b.as_str())).collect();
    let base = format!("/ui/cards/{}", segment(fid));
    html! {
        table.facts {
            tbody {
                tr { th scope="row" { "カードFID" } td { (fid) } }
                tr { th scope="row" { "状態" } td { (status_label(status)) } }
                tr { th scope="row" { "地域住民向け領域" } td { @if local_area { "作成済み" } @else { "未作成" } } }
            }
        }
        h4 { "搭載済みのカードAP" }
        @if aps.is_empty() { p.muted { "搭載されているカードAPはありません。" } } @else {
            table {
                thead { tr { th scope="col" { "業務ID" } th scope="col" { "業務名" } th scope="col" { "標準ID" } } }
                tbody {
                    @for ap in &aps {
                        @let b = ap.get("business_id").and_then(Value::as_str).unwrap_or("");
                        tr { td { (b) } td { (name_of(&data.names, b)) }
                             td { (ap.get("standard_id").and_then(Value::as_str).unwrap_or("—")) } }
                    }
                }
            }
        }
        @if status == "in_use" && !local_area {
            h4 { "地域住民向け領域設定" }
            form method="post" action={ (base) "/local-area" } {
                (form_keys(csrf, &new_key()))
                @if data.presets.is_empty() { p.muted { "同時に搭載されるカードAPはありません。" } } @else {
                    p { "領域と同時に搭載されるカードAP（プリセット）: "
                        @for (i, b) in data.presets.iter().enumerate() { @if i > 0 { "、" } (b) " " (name_of(&data.names, b)) } }
                }
                @if data.presets.iter().any(|b| b == "01") {
                    (consent_choice(errors))
                }
                div { button type="submit" { "領域を作成" } }
            }
        }
        @if status == "in_use" && local_area {
            h4 { "カードAP搭載" }
            @if offered.is_empty() { p.muted { "搭載できるカードAPはすべて搭載済みです。" } } @else {
                form method="post" action={ (base) "/aps" } novalidate {
                    (form_keys(csrf, &new_key()))
                    fieldset aria-describedby="f-business_ids-note" {
                        legend { "搭載するカードAP（複数選べます）" }
                        @for b in &offered {
                            div.check {
                                input type="checkbox" id={ "ap-" (b) } name="business_ids" value=(b);
                                label for={ "ap-" (b) } { (b) " " (name_of(&data.names, b)) }
                            }
                        }
                        (field_note("f-business_ids-note", "市町村が提供するカードAPのうち未搭載のもの", &errors.of_field("business_ids")))
                    }
                    @if offered.iter().any(|b| b.as_str() == "01") {
                        div.check {
                            input type="checkbox" id="f-issuance_consent" name="issuance_consent" value="true"
                                aria-describedby="f-issuance_consent-note";
                            label for="f-issuance_consent" { "証明書等自動交付（01）の利用者情報連携に本人が同意した" }
                            (field_note("f-issuance_consent-note", "01 を搭載するときに必要です", &errors.of_field("issuance_consent")))
                        }
                    }
                    div { button type="submit" { "選んだカードAPを搭載" } }
                }
            }
        }
        @if status != "abolished" && !installed.is_empty() {
            h4 { "カードAP削除" }
            form method="post" action={ (base) "/aps/remove" } {
                (form_keys(csrf, &new_key()))
                fieldset {
                    legend { "削除するカードAP（複数選べます）" }
                    @for b in &installed {
                        div.check {
                            input type="checkbox" id={ "rm-" (b) } name="business_ids" value=(b);
                            label for={ "rm-" (b) } { (b) " " (name_of(&data.names, b)) }
                        }
                    }
                }
                div { button.secondary type="submit" { "選んだカードAPを削除" } }
            }
        }
        @if status != "abolished" {
            h4 { "カードの運用" }
            p.actions {
                @if status == "in_use" { a href={ (base) "/confirm/suspend?version=" (version) } { "一時停止" } }
                @if status == "suspended" { a href={ (base) "/confirm/resume?version=" (version) } { "一時停止の解除" } }
                a href={ (base) "/confirm/abolish?version=" (version) } { "廃止" }
            }
        }
    }
}

/// The resident's answer for a preset certificate issuance AP (`01`).
fn consent_choice(errors: &FieldErrors) -> Markup {
    html! {
        fieldset aria-describedby="f-issuance_consent-note" {
            legend { "証明書等自動交付（01）の利用者情報連携への同意" }
            div.check { input type="radio" id="consent-yes" name="issuance_consent" value="true";
                label for="consent-yes" { "同意する（01 を搭載）" } }
            div.check { input type="radio" id="consent-no" name="issuance_consent" value="false";
                label for="consent-no" { "同意しない（01 は搭載しない）" } }
            (field_note("f-issuance_consent-note", "本人に確認してください", &errors.of_field("issuance_consent")))
        }
    }
}

/// カード登録 for the resident.
pub async fn register_card(
    Extension(api): Extension<InProcessApi>,
    Path(id): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let code = ui.own_municipality("カード登録")?;
    let body = json!({"fid": form.get("fid").trim(), "resident_id": id});
    let path = format!("/api/v1/municipalities/{code}/cards");
    let answer = api.call(&ui, Call::post(&path, body).keyed(&form)).await;
    back_to_resident(&api, &ui, (&code, &id), answer, "card", &["fid", "resident_id"], &form).await
}

/// After a change of the resident's card: his page with `done`, or the same page with the problem next to its
/// field (the fields the form had are `fields`).
async fn back_to_resident(
    api: &InProcessApi,
    ui: &UiSession,
    (code, resident_id): (&str, &str),
    answer: Answer,
    done: &str,
    fields: &[&str],
    typed: &Form,
) -> Reply {
    let to = format!("/ui/residents/{}?done={done}", segment(resident_id));
    let problem = after_change(&answer, &to, ON_THE_FORM)?;
    let errors = problems(&problem, fields);
    let data = load_resident(api, ui, code, resident_id).await?;
    Ok((problem.status, page(resident_page(ui, code, &data, None, &errors, typed))).into_response())
}

/// The operator's municipality (for the screen `title`) and the owner of its card `fid`, for the page to go back
/// to.
async fn card_of(api: &InProcessApi, ui: &UiSession, title: &str, fid: &str) -> Result<(String, String), Response> {
    let code = ui.own_municipality(title)?;
    let card = one(api, ui, &card_path(&code, fid)).await?;
    let owner = card.str("/resident_id").to_owned();
    Ok((code, owner))
}

/// 地域住民向け領域設定 (the presets installed with it; the resident's answer for a preset `01`).
pub async fn local_area(
    Extension(api): Extension<InProcessApi>,
    Path(fid): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let (code, owner) = card_of(&api, &ui, "地域住民向け領域設定", &fid).await?;
    let body = match form.get("issuance_consent") {
        "true" => json!({"issuance_consent": true}),
        "false" => json!({"issuance_consent": false}),
        _ => json!({}),
    };
    let path = format!("{}/local-area", card_path(&code, &fid));
    let answer = api.call(&ui, Call::post(&path, body).keyed(&form)).await;
    back_to_resident(&api, &ui, (&code, &owner), answer, "area", &["issuance_consent"], &form).await
}

/// カードAP搭載: the chosen APs at once (all or none, as the API installs them).
pub async fn install(
    Extension(api): Extension<InProcessApi>,
    Path(fid): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let (code, owner) = card_of(&api, &ui, "カードAP搭載", &fid).await?;
    let chosen = form.all("business_ids");
    let mut body = json!({"business_ids": chosen});
    if chosen.contains(&"01") {
        body["issuance_consent"] = json!(form.get("issuance_consent") == "true");
    }
    let path = format!("{}/aps", card_path(&code, &fid));
    let answer = api.call(&ui, Call::post(&path, body).keyed(&form)).await;
    back_to_resident(&api, &ui, (&code, &owner), answer, "installed", &["business_ids", "issuance_consent"], &form)
        .await
}

/// カードAP削除: each chosen AP removed in turn, and the result per AP.
pub async fn remove(
    Extension(api): Extension<InProcessApi>,
    Path(fid): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let (code, owner) = card_of(&api, &ui, "カードAP削除", &fid).await?;
    let names = system_names(&api, &ui).await;
    let mut results = Vec::new();
    for business_id in form.all("business_ids") {
        let path = format!("{}/aps/{}", card_path(&code, &fid), segment(business_id));
        let key = format!("{}-{business_id}", form.idempotency_key());
        let answer = api.call(&ui, Call::get(&path).method(Method::DELETE).idempotent(&key)).await;
        let outcome = match answer.problem() {
            None => Ok(()),
            Some(p) => Err(p.summary().to_owned()),
        };
        results.push((business_id.to_owned(), outcome));
    }
    Ok(page(ui.layout(
        "カードAP削除の結果",
        html! {
            @if results.is_empty() { p { "削除するカードAPが選ばれていません。" } } @else {
                table {
                    thead { tr { th scope="col" { "業務ID" } th scope="col" { "業務名" } th scope="col" { "結果" } } }
                    tbody {
                        @for (b, outcome) in &results {
                            tr {
                                td { (b) } td { (name_of(&names, b)) }
                                td { @match outcome { Ok(()) => { "削除しました" } Err(why) => { span.error { "削除できませんでした: " (why) } } } }
                            }
                        }
                    }
                }
            }
            p { a href={ "/ui/residents/" (segment(&owner)) } { "利用者の画面へ戻る" } }
        },
    )))
}

/// 一時停止・再開・廃止: what is about to happen, and the button that does it.
pub async fn confirm(ui: UiSession, Path((fid, action)): Path<(String, String)>, query: RawQuery) -> Reply {
    let Some((title, warning)) = action_text(&action) else { return Err(super::not_found()) };
    let query = Form::of_query(&query);
    let to = format!("/ui/cards/{}/{action}", segment(&fid));
    let back = format!("/ui/residents?fid={}", segment(&fid));
    let confirm = Confirmation {
        title,
        what: html! { "カードFID " strong { (fid) } " を" (title.trim_start_matches("カードの")) "します。" },
        warning: html! { (warning) },
        action: Some(&to),
        hidden: html! {},
        version: query.get("version"),
        button: &format!("{title}を実行"),
        back: &back,
    };
    Ok(page(confirmation(&ui, confirm, &FieldErrors::default())))
}

fn action_text(action: &str) -> Option<(&'static str, &'static str)> {
    Some(match action {
        "suspend" => ("カードの一時停止", "一時停止中のカードは、解除するまでどの業務でも使えません。"),
        "resume" => ("カードの一時停止解除", "解除すると、カードは再びすべての搭載業務で使えます。"),
        "abolish" => ("カードの廃止", "廃止したカードは元に戻せません。"),
        _ => return None,
    })
}

/// Suspends, resumes or abolishes the card at the version the page showed (`If-Match`): a change by someone
/// else meanwhile is shown as such, never overwritten.
pub async fn card_action(
    Extension(api): Extension<InProcessApi>,
    Path((fid, action)): Path<(String, String)>,
    Posted { ui, form }: Posted,
) -> Reply {
    let done = match action.as_str() {
        "suspend" => "suspended",
        "resume" => "resumed",
        "abolish" => "abolished",
        _ => return Err(super::not_found()),
    };
    let (code, owner) = card_of(&api, &ui, "カードの運用", &fid).await?;
    let path = format!("{}/{action}", card_path(&code, &fid));
    let call = Call::post(&path, json!({})).keyed(&form);
    let answer = api.call(&ui, call).await;
    back_to_resident(&api, &ui, (&code, &owner), answer, done, &[], &form).await
}

// ---- 利用者情報の変更 -----------------------------------------------------------------------------------------

/// The form of a resident as he is now: his fields under their form names, and his version.
fn as_form(resident: &Answer) -> Form {
    let mut form = Form::default();
    for name in PERSONAL.iter().map(|(n, ..)| *n).chain(["sex"]) {
        let pointer = format!("/{}", name.replace('.', "/"));
        form.set(name, resident.body.pointer(&pointer).and_then(Value::as_str).unwrap_or(""));
    }
    if let Some(custom) = resident.body.get("custom_fields").and_then(Value::as_object) {
        for (key, value) in custom {
            form.set(
                &format!("custom_fields.{key}"),
                value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string()),
            );
        }
    }
    form.set("version", resident.version.map(|v| v.to_string()).unwrap_or_default());
    form
}

fn edit_page(ui: &UiSession, id: &str, form: &Form, errors: &FieldErrors, custom: &[CustomField]) -> Markup {
    let key = Some(form.idempotency_key()).filter(|k| !k.is_empty()).map(str::to_owned).unwrap_or_else(new_key);
    ui.layout(
        "利用者情報の変更",
        html! {
            (error_summary(errors))
            form method="post" action={ "/ui/residents/" (segment(id)) "/edit" } novalidate {
                (form_keys(&ui.csrf(), &key))
                input type="hidden" name="version" value=(form.get("version"));
                (personal_fields(form, errors, custom))
                div { button type="submit" { "変更" } }
            }
            p { a href={ "/ui/residents/" (segment(id)) } { "やめる" } }
        },
    )
}

/// 利用者情報の変更: the form with his data as it is now.
pub async fn edit_form(Extension(api): Extension<InProcessApi>, ui: UiSession, Path(id): Path<String>) -> Reply {
    let code = ui.own_municipality("利用者情報の変更")?;
    let resident = one(&api, &ui, &format!("/api/v1/municipalities/{code}/residents/{}", segment(&id))).await?;
    let custom = custom_fields(&settings(&api, &ui, &code).await?);
    Ok(page(edit_page(&ui, &id, &as_form(&resident), &FieldErrors::default(), &custom)))
}

/// Changes the resident (`PATCH` under `If-Match` at the version the form showed: a change by someone else since
/// is shown with his data as it is now, never overwritten). A field left blank is cleared.
pub async fn edit(
    Extension(api): Extension<InProcessApi>,
    Path(id): Path<String>,
    Posted { ui, form }: Posted,
) -> Reply {
    let code = ui.own_municipality("利用者情報の変更")?;
    let custom = custom_fields(&settings(&api, &ui, &code).await?);
    let mut body = Map::new();
    for name in PERSONAL.iter().map(|(n, ..)| *n).chain(["sex"]) {
        let value = form.value(name).map_or(Value::Null, |v| Value::String(v.to_owned()));
        insert(&mut body, name, value);
    }
    let mut values = Map::new();
    for field in &custom {
        values.insert(field.key.clone(), form.value(&field.name()).map_or(Value::Null, |v| custom_value(field, v)));
    }
    body.insert("custom_fields".to_owned(), Value::Object(values));
    let path = format!("/api/v1/municipalities/{code}/residents/{}", segment(&id));
    let answer = api.call(&ui, Call::post(&path, Value::Object(body)).method(Method::PATCH).keyed(&form)).await;
    let done = format!("/ui/residents/{}?done=changed", segment(&id));
    let problem = match after_change(&answer, &done, ON_THE_FORM) {
        Ok(problem) => problem,
        Err(answer) => return Ok(answer),
    };
    let names = field_names(&custom);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let errors = problems(&problem, &names);
    // Changed meanwhile: his data as it is now (what was typed would undo the other change).
    let shown =
        if problem.status == StatusCode::PRECONDITION_FAILED { as_form(&one(&api, &ui, &path).await?) } else { form };
    Ok((problem.status, page(edit_page(&ui, &id, &shown, &errors, &custom))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_draft_fills_the_form() {
        let mut form = Form::default();
        prefill(
            &mut form,
            &json!({"registry_key": "000123456", "kana_name": {"family": "ヤマダ", "given": "タロウ"},
                "birth_date": "3640107", "sex": "1", "address1": "東京都千代田区"}),
        );
        assert_eq!(form.get("kana_name.given"), "タロウ");
        assert_eq!(form.get("registry_key"), "000123456");
        assert_eq!(form.get("kanji_name.family"), "");
        assert_eq!(
            draft_label(&json!({"kanji_name": {"family": "山田", "given": "太郎"}, "birth_date": "3640107"})),
            "山田 太郎（） 昭和64年1月7日"
        );
    }
}
