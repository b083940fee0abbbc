//! オペレータ登録: one operator with every field of `POST …/operators`, or several in one form (the API's array
//! registration: all or none). A refused form comes back with each problem next to its field and what was typed
//! kept (never a password), under the same `Idempotency-Key`; the generated passwords are shown once, printable.

use axum::Extension;
use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::super::api::{Call, InProcessApi, Problem, items, text};
use super::super::flow::{permitted_systems, problem_for_the_form};
use super::super::form::{FieldErrors, Form, new_key};
use super::super::pages::{Input, error_summary, form_keys, input_field};
use super::super::{Posted, Reply, UiSession, page};
use super::{PROFILE, Scope, checkboxes, password_field, passwords_page, problem_fields, profile_fields, roles, scope};

/// Rows of a fresh batch form, and the most one form has.
const BATCH_ROWS: usize = 5;
const BATCH_MAX: usize = 20;

/// The API's body for the registration named `{prefix}…` in `form`: blank fields left out (the two required ones
/// sent empty, for the API to name them), the password as typed, roles and 許可業務 as checked.
fn operator_json(form: &Form, prefix: &str) -> Value {
    let name = |field: &str| format!("{prefix}{field}");
    let mut body = Map::new();
    for field in ["operator_id"].into_iter().chain(PROFILE) {
        if let Some(value) = form.value(&name(field)) {
            body.insert(field.to_owned(), Value::String(value.to_owned()));
        }
    }
    for required in ["operator_id", "name"] {
        body.entry(required).or_insert_with(|| Value::String(String::new()));
    }
    let password = form.get(&name("password"));
    if !password.is_empty() {
        body.insert("password".to_owned(), Value::String(password.to_owned()));
    }
    for list in ["roles", "business_systems"] {
        let chosen = form.all(&name(list)).into_iter().map(|v| Value::String(v.to_owned())).collect();
        body.insert(list.to_owned(), Value::Array(chosen));
    }
    Value::Object(body)
}

/// The refusals a registration form shows on itself: its fields, an ID taken, or what the operator may not give
/// (403: a role he does not hold himself).
const ON_THE_FORM: [StatusCode; 3] = [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT, StatusCode::FORBIDDEN];

/// The fields of one operator (`prefix` "" alone, `"3."` in a batch).
fn operator_fields(prefix: &str, typed: &Form, systems: &[(String, String)], errors: &FieldErrors) -> Markup {
    let name = |field: &str| format!("{prefix}{field}");
    let chosen_roles = typed.all(&name("roles"));
    let chosen_systems = typed.all(&name("business_systems"));
    html! {
        (input_field(&name("operator_id"), "オペレータID", typed.get(&name("operator_id")), "半角英数字（市町村内で重複しないもの）",
            errors, Input::Text { required: true }))
        (password_field(&name("password"), "パスワード", errors))
        (profile_fields(prefix, typed, errors))
        (checkboxes(&name("roles"), "役割（1つ以上）", &roles(), &chosen_roles, "自分が持っている役割だけを与えられます", errors))
        (checkboxes(&name("business_systems"), "許可業務", systems, &chosen_systems,
            "この市町村が利用できる業務システム", errors))
    }
}

/// The registration form of one operator.
fn register_page(
    ui: &UiSession,
    scope: &Scope,
    systems: &[(String, String)],
    typed: &Form,
    errors: &FieldErrors,
    key: &str,
) -> Markup {
    ui.layout(
        "オペレータ登録",
        html! {
            p { "市町村 " (scope.code) " のオペレータを登録します。" a href=(scope.href("/ui/operators/batch")) { "複数まとめて登録する" } }
            (error_summary(errors))
            form method="post" action="/ui/operators/new" novalidate {
                (form_keys(&ui.csrf(), key))
                (scope.hidden())
                (operator_fields("", typed, systems, errors))
                div { button type="submit" { "登録" } }
            }
            p { a href=(scope.href("/ui/operators")) { "オペレータ一覧へ" } }
        },
    )
}

/// オペレータ登録's form (役割 窓口 checked to begin with).
pub async fn form(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let scope = scope(&api, &ui, Form::of_query(&raw).get("municipality"), "/ui/operators/new").await?;
    let systems = permitted_systems(&api, &ui, &scope.code).await?;
    let mut typed = Form::default();
    typed.set("roles", "clerk");
    Ok(page(register_page(&ui, &scope, &systems, &typed, &FieldErrors::default(), &new_key())))
}

/// Registers the operator of the form (with its `Idempotency-Key`: a double click registers him once). Registered,
/// his generated password is shown this once; refused, the same form with every problem next to its field.
pub async fn register(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let scope = scope(&api, &ui, form.get("municipality"), "/ui/operators/new").await?;
    let path = scope.api();
    let call = Call::post(&path, operator_json(&form, "")).keyed(&form);
    let answer = api.call(&ui, call).await;
    let Some(problem) = problem_for_the_form(&answer, &ON_THE_FORM)? else {
        let id = answer.str("/operator_id");
        return Ok(match answer.body.get("password").and_then(Value::as_str) {
            Some(password) => {
                let rows = [(id.to_owned(), answer.str("/name").to_owned(), password.to_owned())];
                let intro = format!("オペレータ {id} を登録しました。パスワードを自動で生成しました。");
                page(passwords_page(&ui, "オペレータ登録の完了", &intro, &rows, &scope.operator_href(id)))
            }
            None => Redirect::to(&format!("{}&done=registered", scope.operator_href(id))).into_response(),
        });
    };
    let systems = permitted_systems(&api, &ui, &scope.code).await?;
    let errors = FieldErrors::of(&problem, &problem_fields(&["operator_id"]));
    let markup = register_page(&ui, &scope, &systems, &form, &errors, form.idempotency_key());
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page(markup)).into_response())
}

/// How many rows a batch form has (`rows`, 1–20).
fn row_count(form: &Form) -> usize {
    form.get("rows").parse().unwrap_or(BATCH_ROWS).clamp(1, BATCH_MAX)
}

/// The batch form: `rows` operators, each in his own group of fields.
fn batch_page(
    ui: &UiSession,
    scope: &Scope,
    systems: &[(String, String)],
    typed: &Form,
    rows: usize,
    errors: &FieldErrors,
    key: &str,
) -> Markup {
    ui.layout(
        "オペレータの一括登録",
        html! {
            p { "市町村 " (scope.code) " のオペレータを、入力した行の分だけまとめて登録します。"
                "1人でも誤りがあれば、誰も登録しません。空の行は無視します。" }
            p.actions {
                @if rows < BATCH_MAX {
                    a href=(scope.href(&format!("/ui/operators/batch?rows={}", (rows + 5).min(BATCH_MAX)))) { "行を増やした空の画面を開く" }
                }
                a href=(scope.href("/ui/operators/import")) { "CSVファイルで登録する" }
            }
            (error_summary(errors))
            form method="post" action="/ui/operators/batch" novalidate {
                (form_keys(&ui.csrf(), key))
                (scope.hidden())
                input type="hidden" name="rows" value=(rows);
                @for i in 0..rows {
                    fieldset {
                        legend { (i + 1) "人目" }
                        (operator_fields(&format!("{i}."), typed, systems, errors))
                    }
                }
                div { button type="submit" { "まとめて登録" } }
            }
            p { a href=(scope.href("/ui/operators")) { "オペレータ一覧へ" } }
        },
    )
}

/// The batch form (`?rows=` rows, 役割 窓口 checked in each).
pub async fn batch_form(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let q = Form::of_query(&raw);
    let scope = scope(&api, &ui, q.get("municipality"), "/ui/operators/batch").await?;
    let systems = permitted_systems(&api, &ui, &scope.code).await?;
    let rows = row_count(&q);
    let mut typed = Form::default();
    for i in 0..rows {
        typed.set(&format!("{i}.roles"), "clerk");
    }
    Ok(page(batch_page(&ui, &scope, &systems, &typed, rows, &FieldErrors::default(), &new_key())))
}

/// Registers the filled rows of the batch form at once (all or none); refused, the form again with each problem
/// at its row's field.
pub async fn batch(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let scope = scope(&api, &ui, form.get("municipality"), "/ui/operators/batch").await?;
    let rows = row_count(&form);
    // The rows sent, by their place in the form: an empty row is not an operator.
    let filled: Vec<usize> = (0..rows)
        .filter(|i| ["operator_id", "name"].iter().any(|f| form.value(&format!("{i}.{f}")).is_some()))
        .collect();
    let errors = if filled.is_empty() {
        let mut errors = FieldErrors::default();
        errors.general.push("登録するオペレータを入力してください。".to_owned());
        errors
    } else {
        let list = filled.iter().map(|i| operator_json(&form, &format!("{i}."))).collect();
        let path = scope.api();
        let call = Call::post(&path, Value::Array(list)).keyed(&form);
        let answer = api.call(&ui, call).await;
        let Some(problem) = problem_for_the_form(&answer, &ON_THE_FORM)? else {
            let registered = items(&answer.body);
            let rows: Vec<(String, String, String)> = registered
                .iter()
                .filter_map(|o| {
                    let password = o.get("password").and_then(Value::as_str)?;
                    Some((text(o, "operator_id").to_owned(), text(o, "name").to_owned(), password.to_owned()))
                })
                .collect();
            let intro = format!("{}人のオペレータを登録しました。", registered.len());
            let back = scope.href("/ui/operators");
            return Ok(page(passwords_page(&ui, "オペレータ一括登録の完了", &intro, &rows, &back)));
        };
        let names = batch_fields(rows);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        FieldErrors::of(&at_rows(problem, &filled), &names)
    };
    let systems = permitted_systems(&api, &ui, &scope.code).await?;
    let markup = batch_page(&ui, &scope, &systems, &form, rows, &errors, form.idempotency_key());
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page(markup)).into_response())
}

/// The form names of every row's fields (`3.name`).
fn batch_fields(rows: usize) -> Vec<String> {
    let fields = problem_fields(&["operator_id"]);
    (0..rows).flat_map(|i| fields.iter().map(move |f| format!("{i}.{f}"))).collect()
}

/// The problem of a batch with each pointer at the row of the form: the API numbers the operators it was sent
/// (`/1/phone`), the form numbers its rows, empty ones included (`/3/phone`).
fn at_rows(mut problem: Problem, filled: &[usize]) -> Problem {
    for error in &mut problem.errors {
        let rest = error.field.trim_start_matches('/');
        let (index, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(row) = index.parse::<usize>().ok().and_then(|i| filled.get(i)) {
            error.field = if tail.is_empty() { format!("/{row}") } else { format!("/{row}/{tail}") };
        }
    }
    problem
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_form_becomes_the_apis_body_and_blank_fields_are_left_out() {
        let form = Form::parse(
            "2.operator_id=OP01&2.name=%E7%AA%93%E5%8F%A3&2.phone=+&2.roles=clerk&2.roles=auditor&2.password=Pw+1"
                .as_bytes(),
        );
        assert_eq!(
            operator_json(&form, "2."),
            json!({"operator_id": "OP01", "name": "窓口", "password": "Pw 1", "roles": ["clerk", "auditor"],
                "business_systems": []})
        );
        assert_eq!(operator_json(&Form::default(), "")["name"], "", "the API names a missing name");
    }

    #[test]
    fn a_batch_problem_is_placed_at_the_forms_rows() {
        let problem = Problem::of(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"type": "/problems/validation", "title": "t", "errors": [
                {"field": "/1/phone", "message": "電話番号"}, {"field": "/0/roles/0", "message": "役割"}]}),
        );
        let names = batch_fields(5);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let errors = FieldErrors::of(&at_rows(problem, &[1, 3]), &names);
        assert_eq!(errors.of_field("3.phone"), ["電話番号"]);
        assert_eq!(errors.of_field("1.roles"), ["役割"]);
    }
}
