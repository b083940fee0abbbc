//! 市町村設定 (手引き I 1.1 チューニング) of the clerk UI, `/ui/settings`: what a municipality's operations manager
//! decides about resident registration, on one form — its own registration fields (独自項目, up to 20), the card AP
//! catalog it offers (over the business systems permitted to it) and the presets installed with every local area.
//!
//! Owns this page's route and HTML, and the form's shape: the custom fields are rows (every existing one plus a few
//! empty ones; a row left empty or marked 削除 is not sent, and 空の行を追加 shows more without saving — no script),
//! a choice's options one per line. The settings are replaced whole by one `PUT …/resident-settings` under
//! `If-Match` at the version shown, so a change by someone else meanwhile is shown, never overwritten; every
//! refusal is the API's, next to the field its pointer names (`/custom_fields/3/key`, `/catalog/0`, `/presets/1`).
//!
//! The page is the editor, so it is shown to who may change the settings (the same `authorize` as the `PUT`); the
//! system administrator chooses the municipality (`?municipality=`).

use axum::Extension;
use axum::Router;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cardap_commands::Permission;
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::api::{Call, InProcessApi, segment, strings};
use super::flow::{Done, ON_THE_FORM, after_change, changed_meanwhile, municipalities, one, permitted_systems};
use super::form::{FieldErrors, Form, id_of, new_key};
use super::pages::{Input, error_summary, field_note, form_keys, input_field, notice, options};
use super::{Posted, Reply, UiSession, not_found, page};
use crate::state::AppState;

/// The most custom fields the API takes; the page offers no empty row beyond it.
const MAX_ROWS: usize = 20;
/// Empty rows shown after the existing ones (and added by 空の行を追加).
const EMPTY_ROWS: usize = 3;
/// The business system that is cardap itself: never a card AP, never offered.
const ADMINISTRATION: &str = "00";

/// The resident settings' route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/ui/settings", get(show).post(save))
}

/// The custom field types, as the API names them, with their labels.
fn types() -> Vec<(String, String)> {
    options(&[("text", "文字"), ("number", "数値（整数）"), ("date", "日付"), ("choice", "選択")])
}

/// One row of the custom-field editor, as typed (or as the settings hold it).
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    key: String,
    label: String,
    kind: String,
    max_length: String,
    min: String,
    max: String,
    /// One option per line.
    options: String,
    required: bool,
}

/// The text inputs of a row, by the API's name.
const ROW_TEXTS: [&str; 5] = ["key", "label", "max_length", "min", "max"];

impl Row {
    fn empty() -> Row {
        Row { kind: "text".to_owned(), ..Row::default() }
    }

    /// A custom field of the settings.
    fn of(field: &Value) -> Row {
        let text = |k: &str| field.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let number = |k: &str| field.get(k).and_then(Value::as_i64).map(|n| n.to_string()).unwrap_or_default();
        let options: Vec<&str> = field
            .get("options")
            .and_then(Value::as_array)
            .map(|o| o.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Row {
            key: text("key"),
            label: text("label"),
            kind: text("type"),
            max_length: number("max_length"),
            min: number("min"),
            max: number("max"),
            options: options.join("\n"),
            required: field.get("required").and_then(Value::as_bool) == Some(true),
        }
    }

    /// Row `i` of a submitted form.
    fn typed(form: &Form, i: usize) -> Row {
        let get = |name: &str| form.get(&format!("custom_fields.{i}.{name}")).to_owned();
        Row {
            key: get("key"),
            label: get("label"),
            kind: get("type"),
            max_length: get("max_length"),
            min: get("min"),
            max: get("max"),
            options: get("options"),
            required: !form.get(&format!("custom_fields.{i}.required")).is_empty(),
        }
    }

    /// Nothing typed into it (its type and 必須 alone say nothing).
    fn is_blank(&self) -> bool {
        [&self.key, &self.label, &self.max_length, &self.min, &self.max, &self.options]
            .iter()
            .all(|v| v.trim().is_empty())
    }

    fn text(&self, name: &str) -> &str {
        match name {
            "key" => &self.key,
            "label" => &self.label,
            "max_length" => &self.max_length,
            "min" => &self.min,
            "max" => &self.max,
            _ => "",
        }
    }

    /// The row as the API's custom field: a blank attribute is not given (so the API takes its default or says it
    /// is required), a number as a number (anything else as typed, for the API to name), the options one per line.
    fn json(&self) -> Value {
        let mut field = Map::new();
        field.insert("key".to_owned(), json!(self.key.trim()));
        field.insert("label".to_owned(), json!(self.label.trim()));
        field.insert("type".to_owned(), json!(self.kind.trim()));
        for name in ["max_length", "min", "max"] {
            let typed = self.text(name).trim();
            if !typed.is_empty() {
                let value = typed.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(typed));
                field.insert(name.to_owned(), value);
            }
        }
        let options: Vec<&str> = self.options.lines().map(str::trim).filter(|o| !o.is_empty()).collect();
        if !options.is_empty() {
            field.insert("options".to_owned(), json!(options));
        }
        field.insert("required".to_owned(), json!(self.required));
        Value::Object(field)
    }
}

/// What the form shows: the rows, the chosen catalog and presets, at a version of the settings.
#[derive(Debug, Clone)]
struct Editor {
    code: String,
    rows: Vec<Row>,
    catalog: Vec<String>,
    presets: Vec<String>,
    version: Option<u64>,
    /// Empty rows after `rows`.
    empty: usize,
}

impl Editor {
    fn of(code: &str, settings: &Value, version: Option<u64>) -> Editor {
        let rows: Vec<Row> = settings
            .get("custom_fields")
            .and_then(Value::as_array)
            .map(|f| f.iter().map(Row::of).collect())
            .unwrap_or_default();
        Editor {
            code: code.to_owned(),
            empty: EMPTY_ROWS.min(MAX_ROWS.saturating_sub(rows.len())),
            rows,
            catalog: strings(settings, "catalog"),
            presets: strings(settings, "presets"),
            version,
        }
    }

    /// The submitted form: the rows that are sent (neither empty nor marked 削除), in order, so that row `i` of
    /// the page is `/custom_fields/{i}` of the body.
    fn typed(code: &str, form: &Form) -> Editor {
        let count = form.get("rows").parse::<usize>().unwrap_or(0).min(MAX_ROWS + 2 * EMPTY_ROWS);
        let rows: Vec<Row> = (0..count)
            .filter(|i| form.get(&format!("custom_fields.{i}.delete")).is_empty())
            .map(|i| Row::typed(form, i))
            .filter(|row| !row.is_blank())
            .collect();
        Editor {
            code: code.to_owned(),
            empty: EMPTY_ROWS.min(MAX_ROWS.saturating_sub(rows.len())),
            rows,
            catalog: form.all("catalog").into_iter().map(str::to_owned).collect(),
            presets: form.all("presets").into_iter().map(str::to_owned).collect(),
            version: form.version(),
        }
    }

    fn body(&self) -> Value {
        json!({
            "custom_fields": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "catalog": self.catalog,
            "presets": self.presets,
        })
    }

    /// The form's field names the API's pointers may name.
    fn fields(&self) -> Vec<String> {
        let mut fields = vec!["custom_fields".to_owned(), "catalog".to_owned(), "presets".to_owned()];
        for i in 0..self.rows.len() {
            for name in ROW_TEXTS.iter().chain(&["type", "options", "required"]) {
                fields.push(format!("custom_fields.{i}.{name}"));
            }
        }
        fields.extend((0..self.catalog.len()).map(|i| format!("catalog.{i}")));
        fields.extend((0..self.presets.len()).map(|i| format!("presets.{i}")));
        fields
    }
}

/// The municipality of the page: the one asked for (`municipality`), else the operator's own; `None` for the
/// system administrator who has not chosen yet.
fn municipality_of(ui: &UiSession, asked: &str) -> Option<String> {
    Some(asked.trim())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .or_else(|| ui.session.actor.municipality.as_ref().map(|m| m.to_string()))
}

/// Only who may change the settings gets the editor: another municipality's is "not found", as in the API; anyone
/// else gets the page saying why.
fn allowed(ui: &UiSession, code: &str) -> Result<(), Response> {
    super::flow::allowed(ui, code, Permission::ConfigureResidentServices, "市町村設定", "運用管理部門のオペレータ")
}

/// A business system the catalog may offer: its id and name.
type Offered = Vec<(String, String)>;

/// The business systems permitted to the municipality (shared use), `00` never; with their names.
async fn offered(api: &InProcessApi, ui: &UiSession, code: &str) -> Result<Offered, Response> {
    let mut offered = permitted_systems(api, ui, code).await?;
    offered.retain(|(id, _)| id != ADMINISTRATION && !id.is_empty());
    Ok(offered)
}

/// The settings as they stand (the editor of them), or the page for the API's refusal.
async fn current(api: &InProcessApi, ui: &UiSession, code: &str) -> Result<Editor, Response> {
    let answer = one(api, ui, &settings_path(code)).await?;
    Ok(Editor::of(code, &answer.body, answer.version))
}

/// The municipality's resident settings in the API.
fn settings_path(code: &str) -> String {
    format!("/api/v1/municipalities/{}/resident-settings", segment(code))
}

const DONE: Done = Done(&[("saved", "市町村設定を保存しました。")]);

/// 市町村設定: the editor of the municipality's settings (the system administrator first chooses one).
async fn show(Extension(api): Extension<InProcessApi>, ui: UiSession, query: RawQuery) -> Reply {
    let query = Form::of_query(&query);
    let Some(code) = municipality_of(&ui, query.get("municipality")) else {
        return chooser(&api, &ui).await;
    };
    allowed(&ui, &code)?;
    let editor = current(&api, &ui, &code).await?;
    let offered = offered(&api, &ui, &code).await?;
    Ok(page(settings_page(&ui, &editor, &offered, &FieldErrors::default(), DONE.of(&query))))
}

/// The system administrator's choice of the municipality whose settings he edits.
async fn chooser(api: &InProcessApi, ui: &UiSession) -> Reply {
    let choices: Vec<(String, String)> = municipalities(api, ui)
        .await?
        .into_iter()
        .map(|(code, name)| (code.clone(), format!("{name}（{code}）")))
        .collect();
    Ok(page(ui.layout(
        "市町村設定",
        html! {
            form method="get" action="/ui/settings" {
                (input_field("municipality", "市町村・任意団体", "", "設定する市町村を選んでください", &FieldErrors::default(),
                    Input::Select { options: &choices, required: true }))
                div { button type="submit" { "表示" } }
            }
        },
    )))
}

/// Saves the whole settings (`PUT` under `If-Match` at the version shown); 空の行を追加 shows the same form with
/// more empty rows, saving nothing.
async fn save(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let Some(code) = municipality_of(&ui, form.get("municipality")) else { return Err(not_found()) };
    allowed(&ui, &code)?;
    let mut editor = Editor::typed(&code, &form);
    let offered = offered(&api, &ui, &code).await?;
    if form.get("action") == "add_rows" {
        editor.empty = (editor.empty + EMPTY_ROWS).min(MAX_ROWS.saturating_sub(editor.rows.len()));
        let note = Some("空の行を追加しました。まだ保存されていません。");
        return Ok(page(settings_page(&ui, &editor, &offered, &FieldErrors::default(), note)));
    }
    let path = settings_path(&code);
    let call = Call::post(&path, editor.body()).method(axum::http::Method::PUT).keyed(&form);
    let answer = api.call(&ui, call).await;
    let to = format!("/ui/settings?municipality={}&done=saved", segment(&code));
    let problem = after_change(&answer, &to, ON_THE_FORM)?;
    let (shown, errors) = if problem.status == StatusCode::PRECONDITION_FAILED {
        (current(&api, &ui, &code).await?, changed_meanwhile())
    } else {
        let fields = editor.fields();
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        let errors = FieldErrors::of(&problem, &fields);
        (editor, errors)
    };
    Ok((problem.status, page(settings_page(&ui, &shown, &offered, &errors, None))).into_response())
}

/// The problems of a field, or its hint, under it (tied by `aria-describedby` to the note's id); nothing when
/// there is neither.
fn note(id: &str, hint: &str, problems: &[&str]) -> Markup {
    html! { @if !problems.is_empty() || !hint.is_empty() { (field_note(id, hint, problems)) } }
}

/// A checkbox with its label (and its problems).
fn checkbox(name: &str, value: &str, label: &str, checked: bool, id: &str, problems: &[&str]) -> Markup {
    let described = format!("{id}-note");
    html! {
        div.check {
            input type="checkbox" id=(id) name=(name) value=(value) checked[checked]
                aria-describedby=[(!problems.is_empty()).then_some(described.as_str())]
                aria-invalid=[(!problems.is_empty()).then_some("true")];
            label for=(id) { (label) }
            (note(&described, "", problems))
        }
    }
}

/// One row of the custom-field editor, numbered `i` (its pointer's index).
fn row_fields(i: usize, row: &Row, errors: &FieldErrors, types: &[(String, String)], existing: bool) -> Markup {
    let name = |n: &str| format!("custom_fields.{i}.{n}");
    let hints = [
        ("key", "キー", "半角英小文字で始まり、英小文字・数字・_ の32文字まで（例: school_district）"),
        ("label", "表示名", "登録画面に表示する項目名（50文字まで）"),
        ("max_length", "最大文字数", "型が文字のとき（1〜200、省略時200）"),
        ("min", "最小値", "型が数値のとき（省略可）"),
        ("max", "最大値", "型が数値のとき（省略可）"),
    ];
    let field_problems = |n: &str| errors.of_field(&name(n)).into_iter().map(str::to_owned).collect::<Vec<_>>();
    html! {
        fieldset.custom-field {
            legend { "独自項目 " (i + 1) @if !existing { "（追加）" } }
            @for (n, label, hint) in hints.iter().take(2) {
                (input_field(&name(n), label, row.text(n), hint, errors, Input::Text { required: false }))
            }
            (input_field(&name("type"), "型", &row.kind, "", errors, Input::Select { options: types, required: true }))
            @for (n, label, hint) in hints.iter().skip(2) {
                (input_field(&name(n), label, row.text(n), hint, errors, Input::Text { required: false }))
            }
            (input_field(&name("options"), "選択肢", &row.options, "型が選択のとき、1行に1つ（50個まで）", errors,
                Input::Textarea { rows: 3 }))
            @let required = field_problems("required");
            @let required: Vec<&str> = required.iter().map(String::as_str).collect();
            (checkbox(&name("required"), "true", "必須（登録時に入力が必要）", row.required, &id_of(&name("required")), &required))
            @if existing {
                (checkbox(&name("delete"), "true", "この項目を削除", false, &id_of(&name("delete")), &[]))
            }
        }
    }
}

/// A group of business-system checkboxes (`catalog` or `presets`): each problem next to its box, by the index the
/// box had in the list sent.
fn system_boxes(
    name: &str,
    legend: &str,
    hint: &str,
    choices: &[(String, String)],
    chosen: &[String],
    errors: &FieldErrors,
) -> Markup {
    let group_note = format!("f-{name}-note");
    html! {
        fieldset aria-describedby=(group_note) {
            legend { (legend) }
            @if choices.is_empty() { p.muted { "この市町村に利用が許可されている業務システムはありません。" } }
            @for (id, label) in choices {
                @let problems = chosen.iter().position(|c| c == id)
                    .map(|i| errors.of_field(&format!("{name}.{i}"))).unwrap_or_default();
                (checkbox(name, id, &format!("{id} {label}"), chosen.contains(id), &format!("{name}-{id}"), &problems))
            }
            (note(&group_note, hint, &errors.of_field(name)))
        }
    }
}

fn settings_page(
    ui: &UiSession,
    editor: &Editor,
    offered: &Offered,
    errors: &FieldErrors,
    done: Option<&str>,
) -> Markup {
    let types = types();
    // The permitted systems, and any the settings or the form still hold (withdrawn since: to be unchecked).
    let mut choices: Vec<(String, String)> = offered.clone();
    for id in editor.catalog.iter().chain(&editor.presets) {
        if !choices.iter().any(|(c, _)| c == id) {
            choices.push((id.clone(), "（利用の許可がありません）".to_owned()));
        }
    }
    choices.sort();
    let total = editor.rows.len() + editor.empty;
    let empty = Row::empty();
    ui.layout(
        "市町村設定",
        html! {
            (notice(done))
            p { "市町村コード: " strong { (editor.code) } }
            (error_summary(errors))
            form method="post" action="/ui/settings" novalidate {
                (form_keys(&ui.csrf(), &new_key()))
                input type="hidden" name="municipality" value=(editor.code);
                input type="hidden" name="version" value=(editor.version.map(|v| v.to_string()).unwrap_or_default());
                input type="hidden" name="rows" value=(total);
                section aria-labelledby="custom-title" {
                    h3 id="custom-title" { "利用者登録の独自項目" }
                    p.muted id="f-custom_fields-note" {
                        "最大" (MAX_ROWS) "項目。キー・表示名などをすべて空にした行は保存されません。「この項目を削除」を選んで保存すると削除されます。"
                    }
                    @for p in errors.of_field("custom_fields") { p.field-error { (p) } }
                    @for (i, row) in editor.rows.iter().enumerate() {
                        (row_fields(i, row, errors, &types, true))
                    }
                    @for i in editor.rows.len()..total {
                        (row_fields(i, &empty, errors, &types, false))
                    }
                }
                section aria-labelledby="catalog-title" {
                    h3 id="catalog-title" { "提供するカードAP（カタログ）" }
                    (system_boxes("catalog", "利用者のカードに搭載できるカードAP",
                        "この市町村に利用が許可されている業務システムから選びます", &choices, &editor.catalog, errors))
                }
                section aria-labelledby="presets-title" {
                    h3 id="presets-title" { "プリセット" }
                    (system_boxes("presets", "地域住民向け領域の作成と同時に搭載するカードAP",
                        "カタログで選んだものから選びます", &choices, &editor.presets, errors))
                }
                div.actions {
                    // The first button is the one Enter presses: saving.
                    button type="submit" name="action" value="save" { "保存" }
                    @if total < MAX_ROWS {
                        button.secondary type="submit" name="action" value="add_rows" { "独自項目の空の行を追加（保存はしません）" }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_left_empty_or_marked_for_deletion_are_not_sent_and_the_rest_keep_their_order() {
        let form = Form::parse(
            "rows=4&custom_fields.0.key=a&custom_fields.0.label=A&custom_fields.0.type=text&custom_fields.0.delete=true\
             &custom_fields.1.key=&custom_fields.1.label=&custom_fields.1.type=text\
             &custom_fields.2.key=district&custom_fields.2.label=%E5%AD%A6%E5%8C%BA&custom_fields.2.type=choice\
             &custom_fields.2.options=%E7%AC%AC%E4%B8%80%0D%0A%0D%0A+%E7%AC%AC%E4%BA%8C+&custom_fields.2.required=true\
             &custom_fields.3.key=size&custom_fields.3.label=n&custom_fields.3.type=number&custom_fields.3.min=1\
             &custom_fields.3.max=x&catalog=02&catalog=05&presets=02"
                .as_bytes(),
        );
        let editor = Editor::typed("131016", &form);
        assert_eq!(
            editor.body(),
            json!({
                "custom_fields": [
                    {"key": "district", "label": "学区", "type": "choice", "options": ["第一", "第二"], "required": true},
                    {"key": "size", "label": "n", "type": "number", "min": 1, "max": "x", "required": false},
                ],
                "catalog": ["02", "05"],
                "presets": ["02"],
            })
        );
        assert!(editor.fields().contains(&"custom_fields.1.max".to_owned()), "row 1 is the second row sent");
    }

    #[test]
    fn a_field_of_the_settings_becomes_a_row_and_back() {
        let field = json!({"key": "district", "label": "学区", "type": "choice", "options": ["第一", "第二"],
            "required": true});
        let row = Row::of(&field);
        assert_eq!(row.options, "第一\n第二");
        assert_eq!(row.json(), field);
    }
}
