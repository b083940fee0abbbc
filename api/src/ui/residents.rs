//! The resident screens of the clerk UI, in the source's order of work: 利用者検索, 利用者登録 (every field, the
//! municipality's custom fields, prefill from the registry by 宛名番号 or by the four facts), and the resident's
//! page with his card: カード登録, 地域住民向け領域設定 (the presets shown), カードAP搭載 and removal (several at
//! once, with the result per AP), 一時停止・再開・廃止 with a confirmation.
//!
//! Owns these pages' routes and HTML. Every change and every read of a resident is one call of the HTTP API in
//! process (`super::api`): its authorization, parsing and messages are the API's, and a refused field's message is
//! shown next to that field. The search form checks its own three conditions (the search use case is called
//! directly, as the first screen was built).

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use cardap_commands::CommandContext;
use cardap_commands::residents::ResidentSearch;
use cardap_domain::resident::{CardFid, EraDate, KanaName};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::{Answer, Call, InProcessApi, segment};
use super::form::{FieldErrors, Form, insert, new_key};
use super::pages::{self, Input, error_summary, form_keys, input_field, layout, notice, text_field};
use super::{UiSession, csrf_ok, forbidden, page, refused, unavailable};
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
    [("1", "男"), ("2", "女"), ("9", "適用不能"), ("0", "不明")]
        .into_iter()
        .map(|(v, l)| (v.to_owned(), l.to_owned()))
        .collect()
}

/// The operator's municipality, or the page saying these screens are for municipalities' operators.
#[allow(clippy::result_large_err)] // the page goes straight back to the browser, once per request
fn own_municipality(ui: &UiSession, title: &str) -> Result<String, Response> {
    ui.session
        .actor
        .municipality
        .as_ref()
        .map(|m| m.to_string())
        .ok_or_else(|| page(pages::message(title, "この画面は市町村のオペレータが使います。")))
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

/// 利用者検索: the residents of the operator's own municipality by kana prefix, birth date (`EYYMMDD`) or FID (the
/// same use case as `GET …/residents`, recorded in the read access log). Each field's problem is shown next to it
/// and what was typed stays in the form; with no condition only the form is shown.
pub async fn search(State(state): State<AppState>, ui: UiSession, query: RawQuery) -> Response {
    let fields: SearchFields = serde_urlencoded::from_str(query.0.as_deref().unwrap_or("")).unwrap_or_default();
    let code = match own_municipality(&ui, "利用者検索") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let Ok(code) = cardap_domain::MunicipalityCode::parse(&code) else { return unavailable() };
    let typed = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_owned);
    let mut errors = FieldErrors::default();
    let kana_prefix = typed(&fields.kana_prefix).and_then(|p| {
        let compact: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        KanaName::parse(&compact)
            .map(String::from)
            .map_err(|_| errors.add("kana_prefix", "カタカナで入力してください（半角カナも可）。"))
            .ok()
    });
    let birth_date = typed(&fields.birth_date).and_then(|d| {
        EraDate::parse(&d)
            .map_err(|_| {
                errors.add("birth_date", "元号の数字と年月日の7桁で入力してください（例: 3450101 = 昭和45年1月1日）。")
            })
            .ok()
    });
    let fid = typed(&fields.fid)
        .and_then(|f| CardFid::parse(&f).map_err(|_| errors.add("fid", "カードのFIDを正しく入力してください。")).ok());
    let asked = kana_prefix.is_some() || birth_date.is_some() || fid.is_some();
    let found = if asked && errors.is_empty() {
        let search = ResidentSearch { kana_prefix, birth_date, fid, after: None, limit: 100 };
        let ctx = CommandContext {
            actor: Some(ui.session.actor.clone()),
            command_id: cardap_store::CommandId::generate(),
            correlation_id: cardap_store::CorrelationId::generate(),
            causation_id: None,
            terminal: None,
            request_id: None,
        };
        match state.residents.search_residents(&ctx, &code, &search).await {
            Ok(page) => Some((page.rows, page.next.is_some())),
            Err(cardap_commands::CommandError::Unauthorized(_)) => {
                return page(pages::message("利用者検索", "利用者検索の権限がありません。"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "the UI could not search residents");
                return unavailable();
            }
        }
    } else {
        None
    };
    let form = pages::SearchForm { kana_prefix: &fields.kana_prefix, birth_date: &fields.birth_date, fid: &fields.fid };
    page(pages::residents(
        &ui.session,
        &ui.csrf(),
        &form,
        &errors,
        found.as_ref().map(|(rows, more)| (rows.as_slice(), *more)),
    ))
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
    let path = format!("/api/v1/municipalities/{code}/resident-settings");
    let answer = api.call(&ui.token, Call::get(&path)).await;
    match answer.problem() {
        None => Ok(answer),
        Some(problem) => Err(refused(&problem)),
    }
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
    layout(
        "利用者登録",
        Some((&ui.session, &ui.csrf())),
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
                            @let key = m.get("registry_key").and_then(Value::as_str).unwrap_or("");
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
                    @for (name, label, hint, required) in PERSONAL.iter().take(5) {
                        (input_field(name, label, form.get(name), hint, p.errors, Input::Text { required: *required }))
                    }
                    (input_field("sex", "性別", form.get("sex"), "", p.errors, Input::Select { options: &sexes, required: true }))
                    @for (name, label, hint, required) in PERSONAL.iter().skip(5) {
                        (input_field(name, label, form.get(name), hint, p.errors, Input::Text { required: *required }))
                    }
                    @if !p.custom.is_empty() {
                        h4 { "市町村独自項目" }
                        @for field in p.custom {
                            @let name = field.name();
                            @if field.kind == "choice" {
                                (input_field(&name, &field.label, form.get(&name), &field.hint, p.errors,
                                    Input::Select { options: &field.options, required: field.required }))
                            } @else {
                                (input_field(&name, &field.label, form.get(&name), &field.hint, p.errors,
                                    Input::Text { required: field.required }))
                            }
                        }
                    }
                    @if !form.get("registry_key").is_empty() {
                        p.muted { "宛名番号 " (form.get("registry_key")) " の住基データと関連付けて登録します。" }
                    }
                    div { button type="submit" { "登録" } }
                }
            }
        },
    )
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
) -> Response {
    let code = match own_municipality(&ui, "利用者登録") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let mut form = Form::parse(query.0.as_deref().unwrap_or("").as_bytes());
    let settings = match settings(&api, &ui, &code).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let custom = custom_fields(&settings);
    let mut errors = FieldErrors::default();
    let mut matches = Vec::new();
    let mut note = None;
    match form.get("by") {
        "key" => match form.value("registry_key").map(str::to_owned) {
            None => errors.add("registry_key", "宛名番号を入力してください。"),
            Some(key) => {
                let path = format!("/api/v1/municipalities/{code}/registry/{}", segment(&key));
                let answer = api.call(&ui.token, Call::get(&path)).await;
                match answer.problem() {
                    None => {
                        prefill(&mut form, &answer.body);
                        note = Some("住基データを読み込みました。内容を確認して登録してください。");
                    }
                    Some(p) if p.status == StatusCode::NOT_FOUND => {
                        errors.add("registry_key", "この宛名番号の住基データはありません。")
                    }
                    Some(p) => return refused(&p),
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
            let answer = api.call(&ui.token, Call::post(&path, Value::Object(facts))).await;
            match answer.problem() {
                None => {
                    let items = answer.body.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                    match items.as_slice() {
                        [] => errors.general.push("4情報に該当する住基データはありません。".to_owned()),
                        [one] => {
                            prefill(&mut form, one);
                            note = Some("住基データを読み込みました。内容を確認して登録してください。");
                        }
                        _ => matches = items,
                    }
                }
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
                Some(p) => return refused(&p),
            }
        }
        _ => {}
    }
    page(registration_page(
        &ui,
        &RegistrationPage { form: &form, errors: &errors, custom: &custom, matches: &matches, note },
    ))
}

/// Registers the resident of the form (`POST …/residents` with the form's `Idempotency-Key`: a double click
/// registers one resident); refused, the same form again with every problem next to its field.
pub async fn register(Extension(api): Extension<InProcessApi>, ui: UiSession, body: axum::body::Bytes) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    let code = match own_municipality(&ui, "利用者登録") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let settings = match settings(&api, &ui, &code).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let custom = custom_fields(&settings);
    let mut names: Vec<&str> = PERSONAL.iter().map(|(n, ..)| *n).collect();
    names.extend(["sex", "registry_key"]);
    let mut body = form.json(&names);
    if let Value::Object(root) = &mut body {
        let mut values = Map::new();
        for field in &custom {
            let Some(value) = form.value(&field.name()) else { continue };
            let value = match (field.kind.as_str(), value.parse::<i64>()) {
                ("number", Ok(n)) => json!(n),
                _ => Value::String(value.to_owned()),
            };
            values.insert(field.key.clone(), value);
        }
        insert(root, "custom_fields", Value::Object(values));
    }
    let path = format!("/api/v1/municipalities/{code}/residents");
    let answer = api.call(&ui.token, Call::post(&path, body).idempotent(form.idempotency_key())).await;
    match answer.problem() {
        None => {
            let id = answer.str("/resident_id");
            Redirect::to(&format!("/ui/residents/{}?done=registered", segment(id))).into_response()
        }
        Some(p) if p.status == StatusCode::UNPROCESSABLE_ENTITY || p.status == StatusCode::CONFLICT => {
            let mut fields: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            fields.extend(custom.iter().map(CustomField::name));
            let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
            let errors = FieldErrors::of(&p, &fields);
            let markup = registration_page(
                &ui,
                &RegistrationPage { form: &form, errors: &errors, custom: &custom, matches: &[], note: None },
            );
            (StatusCode::UNPROCESSABLE_ENTITY, page(markup)).into_response()
        }
        Some(p) => refused(&p),
    }
}

// ---- the resident and his card -------------------------------------------------------------------------------

/// What a change left to say on the resident's page (`?done=`), from a fixed list: nothing typed is echoed.
fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "registered" => "利用者を登録しました。",
        "card" => "カードを登録しました。",
        "area" => "地域住民向け領域を作成しました。",
        "installed" => "カードAPを搭載しました。",
        "suspended" => "カードを一時停止しました。",
        "resumed" => "カードの一時停止を解除しました。",
        "abolished" => "カードを廃止しました。",
        _ => return None,
    })
}

/// Names of the business systems, by id (for the AP lists).
async fn system_names(api: &InProcessApi, ui: &UiSession) -> Vec<(String, String)> {
    let answer = api.call(&ui.token, Call::get("/api/v1/business-systems")).await;
    answer
        .body
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|s| {
                    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    (text("business_id"), text("name"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn name_of<'a>(names: &'a [(String, String)], id: &str) -> &'a str {
    names.iter().find(|(b, _)| b == id).map(|(_, n)| n.as_str()).unwrap_or("")
}

fn ids(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
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

async fn load_resident(api: &InProcessApi, ui: &UiSession, code: &str, id: &str) -> Result<ResidentPage, Response> {
    let path = format!("/api/v1/municipalities/{code}/residents/{}", segment(id));
    let resident = api.call(&ui.token, Call::get(&path)).await;
    if let Some(p) = resident.problem() {
        return Err(refused(&p));
    }
    let card = match resident.body.get("active_fid").and_then(Value::as_str) {
        Some(fid) => {
            let path = format!("/api/v1/municipalities/{code}/cards/{}", segment(fid));
            let card = api.call(&ui.token, Call::get(&path)).await;
            if let Some(p) = card.problem() {
                return Err(refused(&p));
            }
            Some(card)
        }
        None => None,
    };
    let settings = settings(api, ui, code).await?;
    Ok(ResidentPage {
        card,
        custom: custom_fields(&settings),
        catalog: ids(settings.body.get("catalog")),
        presets: ids(settings.body.get("presets")),
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
) -> Response {
    let code = match own_municipality(&ui, "利用者") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let query = Form::parse(query.0.as_deref().unwrap_or("").as_bytes());
    let data = match load_resident(&api, &ui, &code, &id).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    page(resident_page(&ui, &data, done_text(query.get("done")), &FieldErrors::default(), &Form::default()))
}

fn resident_page(
    ui: &UiSession,
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
    layout(
        &title,
        Some((&ui.session, &csrf)),
        html! {
            (notice(done))
            @if r.get("erased").and_then(Value::as_bool) == Some(true) { p.error { "この利用者の個人情報は消去されています。" } }
            @if r.get("moved_out").and_then(Value::as_bool) == Some(true) { p.error { "この利用者は転出済みです。" } }
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
            (error_summary(errors))
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
                        @let problems = errors.of_field("business_ids");
                        @if problems.is_empty() { span.muted id="f-business_ids-note" { "市町村が提供するカードAPのうち未搭載のもの" } }
                        @else { span.field-error id="f-business_ids-note" { @for p in &problems { (p) br; } } }
                    }
                    @if offered.iter().any(|b| b.as_str() == "01") {
                        div.check {
                            input type="checkbox" id="f-issuance_consent" name="issuance_consent" value="true"
                                aria-describedby="f-issuance_consent-note";
                            label for="f-issuance_consent" { "証明書等自動交付（01）の利用者情報連携に本人が同意した" }
                            @let problems = errors.of_field("issuance_consent");
                            @if problems.is_empty() { span.muted id="f-issuance_consent-note" { "01 を搭載するときに必要です" } }
                            @else { span.field-error id="f-issuance_consent-note" { @for p in &problems { (p) } } }
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
    let problems = errors.of_field("issuance_consent");
    html! {
        fieldset aria-describedby="f-issuance_consent-note" {
            legend { "証明書等自動交付（01）の利用者情報連携への同意" }
            div.check { input type="radio" id="consent-yes" name="issuance_consent" value="true";
                label for="consent-yes" { "同意する（01 を搭載）" } }
            div.check { input type="radio" id="consent-no" name="issuance_consent" value="false";
                label for="consent-no" { "同意しない（01 は搭載しない）" } }
            @if problems.is_empty() { span.muted id="f-issuance_consent-note" { "本人に確認してください" } }
            @else { span.field-error id="f-issuance_consent-note" { @for p in &problems { (p) } } }
        }
    }
}

/// カード登録 for the resident.
pub async fn register_card(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    let code = match own_municipality(&ui, "カード登録") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let body = json!({"fid": form.get("fid").trim(), "resident_id": id});
    let path = format!("/api/v1/municipalities/{code}/cards");
    let answer = api.call(&ui.token, Call::post(&path, body).idempotent(form.idempotency_key())).await;
    back_to_resident(&api, &ui, &code, &id, answer, "card", &["fid", "resident_id"], &form).await
}

/// After a change of the resident's card: his page with `done`, or the same page with the problem next to its
/// field (the fields the form had are `fields`).
#[allow(clippy::too_many_arguments)] // the change's answer and everything the page shown again needs
async fn back_to_resident(
    api: &InProcessApi,
    ui: &UiSession,
    code: &str,
    resident_id: &str,
    answer: Answer,
    done: &str,
    fields: &[&str],
    typed: &Form,
) -> Response {
    let Some(problem) = answer.problem() else {
        return Redirect::to(&format!("/ui/residents/{}?done={done}", segment(resident_id))).into_response();
    };
    if !matches!(
        problem.status,
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED
    ) {
        return refused(&problem);
    }
    let mut errors = FieldErrors::of(&problem, fields);
    if problem.status == StatusCode::PRECONDITION_FAILED {
        errors.general = vec![super::CHANGED_MEANWHILE.to_owned()];
    }
    match load_resident(api, ui, code, resident_id).await {
        Ok(data) => (problem.status, page(resident_page(ui, &data, None, &errors, typed))).into_response(),
        Err(page) => page,
    }
}

/// The card's owner, for the page to go back to.
async fn card_owner(
    api: &InProcessApi,
    ui: &UiSession,
    code: &str,
    fid: &str,
) -> Result<(String, Option<u64>), Response> {
    let path = format!("/api/v1/municipalities/{code}/cards/{}", segment(fid));
    let card = api.call(&ui.token, Call::get(&path)).await;
    match card.problem() {
        None => Ok((card.str("/resident_id").to_owned(), card.version)),
        Some(p) => Err(refused(&p)),
    }
}

/// 地域住民向け領域設定 (the presets installed with it; the resident's answer for a preset `01`).
pub async fn local_area(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(fid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    let code = match own_municipality(&ui, "地域住民向け領域設定") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let (owner, _) = match card_owner(&api, &ui, &code, &fid).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let body = match form.get("issuance_consent") {
        "true" => json!({"issuance_consent": true}),
        "false" => json!({"issuance_consent": false}),
        _ => json!({}),
    };
    let path = format!("/api/v1/municipalities/{code}/cards/{}/local-area", segment(&fid));
    let answer = api.call(&ui.token, Call::post(&path, body).idempotent(form.idempotency_key())).await;
    back_to_resident(&api, &ui, &code, &owner, answer, "area", &["issuance_consent"], &form).await
}

/// カードAP搭載: the chosen APs at once (all or none, as the API installs them).
pub async fn install(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(fid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    let code = match own_municipality(&ui, "カードAP搭載") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let (owner, _) = match card_owner(&api, &ui, &code, &fid).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let chosen = form.all("business_ids");
    let mut body = json!({"business_ids": chosen});
    if chosen.contains(&"01") {
        body["issuance_consent"] = json!(form.get("issuance_consent") == "true");
    }
    let path = format!("/api/v1/municipalities/{code}/cards/{}/aps", segment(&fid));
    let answer = api.call(&ui.token, Call::post(&path, body).idempotent(form.idempotency_key())).await;
    back_to_resident(&api, &ui, &code, &owner, answer, "installed", &["business_ids", "issuance_consent"], &form).await
}

/// カードAP削除: each chosen AP removed in turn, and the result per AP.
pub async fn remove(
    Extension(api): Extension<InProcessApi>,
    ui: UiSession,
    Path(fid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    let code = match own_municipality(&ui, "カードAP削除") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let (owner, _) = match card_owner(&api, &ui, &code, &fid).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let names = system_names(&api, &ui).await;
    let mut results = Vec::new();
    for business_id in form.all("business_ids") {
        let path = format!("/api/v1/municipalities/{code}/cards/{}/aps/{}", segment(&fid), segment(business_id));
        let key = format!("{}-{business_id}", form.idempotency_key());
        let answer = api.call(&ui.token, Call::get(&path).method(Method::DELETE).idempotent(&key)).await;
        let outcome = match answer.problem() {
            None => Ok(()),
            Some(p) => Err(p.summary().to_owned()),
        };
        results.push((business_id.to_owned(), outcome));
    }
    let markup = layout(
        "カードAP削除の結果",
        Some((&ui.session, &ui.csrf())),
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
    );
    page(markup)
}

/// 一時停止・再開・廃止: what is about to happen, and the button that does it.
pub async fn confirm(ui: UiSession, Path((fid, action)): Path<(String, String)>, query: RawQuery) -> Response {
    let Some((title, warning)) = action_text(&action) else { return super::not_found() };
    let query = Form::parse(query.0.as_deref().unwrap_or("").as_bytes());
    let csrf = ui.csrf();
    page(layout(
        title,
        Some((&ui.session, &csrf)),
        html! {
            p { "カードFID " strong { (fid) } " を" (title.trim_start_matches("カードの")) "します。" }
            p.error { (warning) }
            form method="post" action={ "/ui/cards/" (segment(&fid)) "/" (action) } {
                (form_keys(&csrf, &new_key()))
                input type="hidden" name="version" value=(query.get("version"));
                button type="submit" { (title) "を実行" }
            }
            p { a href={ "/ui/residents?fid=" (segment(&fid)) } { "やめる" } }
        },
    ))
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
    ui: UiSession,
    Path((fid, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let done = match action.as_str() {
        "suspend" => "suspended",
        "resume" => "resumed",
        "abolish" => "abolished",
        _ => return super::not_found(),
    };
    let form = Form::parse(&body);
    if !csrf_ok(&ui, form.csrf()) {
        return forbidden();
    }
    let code = match own_municipality(&ui, "カードの運用") {
        Ok(code) => code,
        Err(page) => return page,
    };
    let (owner, _) = match card_owner(&api, &ui, &code, &fid).await {
        Ok(o) => o,
        Err(page) => return page,
    };
    let path = format!("/api/v1/municipalities/{code}/cards/{}/{action}", segment(&fid));
    let call = Call::post(&path, json!({})).idempotent(form.idempotency_key()).if_match(form.version());
    let answer = api.call(&ui.token, call).await;
    back_to_resident(&api, &ui, &code, &owner, answer, done, &[], &form).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_outcomes_are_said() {
        assert_eq!(done_text("installed"), Some("カードAPを搭載しました。"));
        assert_eq!(done_text("<script>"), None);
    }

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
