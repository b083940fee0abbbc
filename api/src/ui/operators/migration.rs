//! 操作者情報の移行 (手引き I 2.2(6)), the system administrator's screen: operators of one municipality registered
//! in another with the same ID, information, roles and password (`POST /api/v1/operator-migrations`), and the
//! report per operator: the 許可業務 kept, those the target may not use (dropped), the 業務内IDs carried over.

use axum::Extension;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::super::api::{Call, InProcessApi, flag, strings, text};
use super::super::flow::{municipalities, problem_for_the_form};
use super::super::form::{FieldErrors, Form, new_key};
use super::super::pages::{Input, error_summary, form_keys, input_field};
use super::super::{Posted, Reply, UiSession, page};

/// The operator IDs typed (separated by spaces, commas or lines); none means every operator of the source.
fn typed_ids(form: &Form) -> Vec<&str> {
    form.get("operator_ids")
        .split(|c: char| c.is_whitespace() || c == ',' || c == '、')
        .filter(|s| !s.is_empty())
        .collect()
}

fn migration_page(
    ui: &UiSession,
    choices: &[(String, String)],
    typed: &Form,
    errors: &FieldErrors,
    key: &str,
) -> Markup {
    let options: Vec<(String, String)> = choices.iter().map(|(c, n)| (c.clone(), format!("{n} ({c})"))).collect();
    let hint = "空白・カンマ・改行で区切って入力。空欄なら、失効していないオペレータ全員を移行します。";
    ui.layout(
        "オペレータの移行",
        html! {
            p { "移行元の市町村・任意団体のオペレータを、同じオペレータID・管理情報・役割・パスワードのまま移行先に登録します。"
                "許可業務は移行先が利用できるものだけを引き継ぎます。移行元のオペレータはそのまま残ります。"
                "移行先に同じオペレータIDがあれば、1人も移行しません。" }
            (error_summary(errors))
            form method="post" action="/ui/operator-migrations" novalidate {
                (form_keys(&ui.csrf(), key))
                (input_field("from", "移行元", typed.get("from"), "", errors, Input::Select { options: &options, required: true }))
                (input_field("to", "移行先", typed.get("to"), "", errors, Input::Select { options: &options, required: true }))
                (input_field("operator_ids", "移行するオペレータID", typed.get("operator_ids"), hint, errors,
                    Input::Textarea { rows: 5 }))
                div { button type="submit" { "移行する" } }
            }
            p { a href="/ui/operators" { "オペレータ管理へ" } }
        },
    )
}

/// The system administrator's only: a page saying so for anyone else (the API refuses them too).
fn only_for_the_administrator(ui: &UiSession) -> Result<(), Response> {
    if ui.session.actor.is_system_admin() {
        return Ok(());
    }
    let body = html! { p { "オペレータの移行は、システム管理者が行います。" } };
    Err((StatusCode::FORBIDDEN, page(ui.layout("オペレータの移行", body))).into_response())
}

/// The migration form.
pub async fn form(Extension(api): Extension<InProcessApi>, ui: UiSession) -> Reply {
    only_for_the_administrator(&ui)?;
    let choices = municipalities(&api, &ui).await?;
    Ok(page(migration_page(&ui, &choices, &Form::default(), &FieldErrors::default(), &new_key())))
}

/// Migrates the operators of the form; refused, the form again with each problem next to its field (an operator
/// ID's problem named with the ID).
pub async fn migrate(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let ids = typed_ids(&form);
    let mut request = json!({ "from": form.get("from").trim(), "to": form.get("to").trim() });
    if !ids.is_empty() {
        request["operator_ids"] = json!(ids);
    }
    let answer = api.call(&ui, Call::post("/api/v1/operator-migrations", request).keyed(&form)).await;
    let on_the_form = [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::CONFLICT];
    let Some(mut p) = problem_for_the_form(&answer, &on_the_form)? else {
        let migrated = answer.body.get("migrated").and_then(Value::as_array).cloned().unwrap_or_default();
        return Ok(page(ui.layout(
            "オペレータの移行の結果",
            html! {
                p.notice role="status" { (migrated.len()) "人のオペレータを " (form.get("to")) " に移行しました。" }
                table {
                    thead { tr {
                        th scope="col" { "オペレータID" } th scope="col" { "許可業務" }
                        th scope="col" { "引き継がなかった許可業務" } th scope="col" { "業務内IDを引き継いだ業務" }
                        th scope="col" { "パスワード" }
                    } }
                    tbody {
                        @for m in &migrated {
                            tr {
                                td { (text(m, "operator_id")) }
                                td { (strings(m, "business_systems").join(" ")) }
                                td { (strings(m, "dropped_business_systems").join(" ")) }
                                td { (strings(m, "internal_ids").join(" ")) }
                                td { @if flag(m, "password_kept") { "引き継ぎ" } @else { "なし（再設定が必要）" } }
                            }
                        }
                    }
                }
                p { a href={ "/ui/operators?municipality=" (form.get("to")) } { "移行先のオペレータ一覧へ" } }
            },
        )));
    };
    for error in &mut p.errors {
        let at = error.field.strip_prefix("/operator_ids/").and_then(|i| i.parse::<usize>().ok());
        if let Some(id) = at.and_then(|i| ids.get(i)) {
            error.message = format!("{id}: {}", error.message);
        }
    }
    let errors = FieldErrors::of(&p, &["from", "to", "operator_ids"]);
    let choices = municipalities(&api, &ui).await?;
    let markup = migration_page(&ui, &choices, &form, &errors, form.idempotency_key());
    Ok((p.status, page(markup)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_ids_are_separated_by_spaces_commas_or_lines() {
        let form = Form::parse("operator_ids=OP01%2C+OP02%0D%0AOP03%E3%80%81OP04".as_bytes());
        assert_eq!(typed_ids(&form), ["OP01", "OP02", "OP03", "OP04"]);
        assert!(typed_ids(&Form::default()).is_empty());
    }
}
