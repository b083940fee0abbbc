//! 認証・監査の設定 of the clerk UI, `/ui/policies`: the two settings of a municipality's operations manager that
//! had only the API — 生体認証の設定 (who must log in biometrically: nobody, everyone or the operators listed; the
//! authenticator models that may be registered) and 大量参照アラート (how many distinct residents one operator may
//! open within an hour before an alert is raised; none when blank).
//!
//! Owns this page's routes and HTML. Each form is one `PUT` of the API in process (`…/biometric-policy`,
//! `…/read-alert-policy`) under `If-Match` at the version shown, so a change by someone else meanwhile is shown
//! with the settings of now, never overwritten; every refusal is the API's, next to the field its pointer names
//! (`/operators/2` at the operators). Shown to who may change them (the same `authorize` as the `PUT`s).

use axum::Extension;
use axum::Router;
use axum::extract::RawQuery;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cardap_commands::Permission;
use maud::{Markup, html};
use serde_json::{Value, json};

use super::api::{Answer, Call, InProcessApi, strings};
use super::flow::{Done, ON_THE_FORM, after_change, changed_meanwhile, one, problems};
use super::form::{FieldErrors, Form, new_key};
use super::pages::{Input, error_summary, field_note, form_keys, input_field, notice};
use super::{Posted, Reply, UiSession, page};
use crate::state::AppState;

/// The page's routes (merged into `ui::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/policies", get(show))
        .route("/ui/policies/biometric", post(set_biometric))
        .route("/ui/policies/read-alert", post(set_read_alert))
}

/// What a change left to say (`?done=`).
const DONE: Done = Done(&[
    ("biometric", "生体認証の設定を変更しました。"),
    ("read_alert", "大量参照アラートのしきい値を変更しました。"),
]);

/// Who must log in biometrically, as the API names it, with the page's words.
const REQUIRED: [(&str, &str); 3] = [
    ("none", "求めない（パスワードでもログインできる）"),
    ("all", "この市町村のすべてのオペレータ"),
    ("listed", "指定したオペレータだけ"),
];

/// Only who may change the settings gets the page: anyone else of the municipality the page saying why.
fn allowed(ui: &UiSession, code: &str) -> Result<(), Response> {
    super::flow::allowed(ui, code, Permission::ManageBiometrics, "認証・監査の設定", "運用管理部門のオペレータ")
}

fn biometric_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/biometric-policy")
}

fn read_alert_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/read-alert-policy")
}

/// A list typed one a line (or separated by spaces or commas), as the API takes it.
fn listed(typed: &str) -> Vec<String> {
    typed
        .split(|c: char| c.is_whitespace() || c == ',' || c == '、')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The biometric form's values: the policy of now.
fn biometric_form(policy: &Answer) -> Form {
    let mut form = Form::default();
    form.set("required", policy.str("/required"));
    form.set("operators", strings(&policy.body, "operators").join("\n"));
    form.set("allowed_models", strings(&policy.body, "allowed_models").join("\n"));
    form.set("version", policy.version.map(|v| v.to_string()).unwrap_or_default());
    form
}

/// The read-alert form's values: the threshold of now.
fn read_alert_form(policy: &Answer) -> Form {
    let mut form = Form::default();
    let threshold = policy.body.get("residents_per_hour").and_then(Value::as_u64);
    form.set("residents_per_hour", threshold.map(|n| n.to_string()).unwrap_or_default());
    form.set("version", policy.version.map(|v| v.to_string()).unwrap_or_default());
    form
}

/// What the page shows: each form's values (the settings of now, or what was typed into the refused one) and
/// problems.
struct Shown<'a> {
    biometric: &'a Form,
    read_alert: &'a Form,
    errors: &'a FieldErrors,
    done: Option<&'a str>,
}

fn policies_page(ui: &UiSession, shown: &Shown<'_>) -> Markup {
    let csrf = ui.csrf();
    let errors = shown.errors;
    let b = shown.biometric;
    let required_problems = errors.of_field("required");
    ui.layout(
        "認証・監査の設定",
        html! {
            (notice(shown.done))
            (error_summary(errors))
            section aria-labelledby="biometric-title" {
                h3 id="biometric-title" { "生体認証の設定" }
                form method="post" action="/ui/policies/biometric" novalidate {
                    (form_keys(&csrf, &new_key()))
                    input type="hidden" name="version" value=(b.get("version"));
                    fieldset aria-describedby="f-required-note" aria-invalid=[(!required_problems.is_empty()).then_some("true")] {
                        legend { "生体認証でのログインを求めるオペレータ" }
                        @for (value, label) in REQUIRED {
                            @let each = format!("f-required-{value}");
                            div.check {
                                input type="radio" id=(each) name="required" value=(value) checked[b.get("required") == value];
                                label for=(each) { (label) }
                            }
                        }
                        (field_note("f-required-note",
                            "求められたオペレータは、パスワードではログインできません（オペレータ証明書ではできます）。",
                            &required_problems))
                    }
                    (input_field("operators", "指定するオペレータのオペレータID", b.get("operators"),
                        "「指定したオペレータだけ」のとき、1行に1つ", errors, Input::Textarea { rows: 4 }))
                    (input_field("allowed_models", "登録を認める認証器の機種（AAGUID）", b.get("allowed_models"),
                        "1行に1つ。空欄のときはどの機種も登録できます。登録済みの認証器はそのまま使えます。", errors,
                        Input::Textarea { rows: 3 }))
                    div { button type="submit" { "生体認証の設定を変更" } }
                }
            }
            section aria-labelledby="read-alert-title" {
                h3 id="read-alert-title" { "大量参照アラート" }
                form method="post" action="/ui/policies/read-alert" novalidate {
                    (form_keys(&csrf, &new_key()))
                    input type="hidden" name="version" value=(shown.read_alert.get("version"));
                    (input_field("residents_per_hour", "1時間に参照できる利用者の人数（しきい値）",
                        shown.read_alert.get("residents_per_hour"),
                        "1人のオペレータが1時間に、これより多くの利用者を参照すると監査にアラートが記録されます。空欄のときはアラートを出しません。",
                        errors, Input::Text { required: false }))
                    div { button type="submit" { "しきい値を変更" } }
                }
            }
        },
    )
}

/// The page with the settings of now, `status`, `errors` and `done`; `typed`: the form that was sent
/// (`biometric`, `read_alert`), shown with what was typed into it instead.
async fn show_now(
    api: &InProcessApi,
    ui: &UiSession,
    code: &str,
    status: StatusCode,
    (errors, done): (&FieldErrors, Option<&str>),
    typed: Option<(&str, &Form)>,
) -> Reply {
    let biometric = biometric_form(&one(api, ui, &biometric_path(code)).await?);
    let read_alert = read_alert_form(&one(api, ui, &read_alert_path(code)).await?);
    let shown = Shown {
        biometric: match typed {
            Some(("biometric", form)) => form,
            _ => &biometric,
        },
        read_alert: match typed {
            Some(("read_alert", form)) => form,
            _ => &read_alert,
        },
        errors,
        done,
    };
    Ok((status, page(policies_page(ui, &shown))).into_response())
}

/// 認証・監査の設定 (`?done=` says what was just changed).
pub async fn show(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let code = ui.own_municipality("認証・監査の設定")?;
    allowed(&ui, &code)?;
    show_now(&api, &ui, &code, StatusCode::OK, (&FieldErrors::default(), DONE.of(&Form::of_query(&raw))), None).await
}

/// After the form `which` (`biometric`, `read_alert`) was sent: done, the page saying so; refused, that form again
/// with what was typed (a change meanwhile: the settings of now, saying so) and the other with the settings of now.
async fn refused_form(
    api: &InProcessApi,
    ui: &UiSession,
    code: &str,
    answer: &Answer,
    typed: (&str, &Form),
    fields: &[&str],
) -> Reply {
    let (which, _) = typed;
    let problem = after_change(answer, &format!("/ui/policies?done={which}"), ON_THE_FORM)?;
    if problem.status == StatusCode::PRECONDITION_FAILED {
        return show_now(api, ui, code, problem.status, (&changed_meanwhile(), None), None).await;
    }
    show_now(api, ui, code, problem.status, (&problems(&problem, fields), None), Some(typed)).await
}

/// 生体認証の設定, replaced whole at the version shown.
pub async fn set_biometric(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let code = ui.own_municipality("認証・監査の設定")?;
    allowed(&ui, &code)?;
    let required = form.get("required");
    // The operators typed count only with `listed`: with another choice they are not sent (the API refuses a list).
    let operators = if required == "listed" { listed(form.get("operators")) } else { vec![] };
    let body = json!({
        "required": required,
        "operators": operators,
        "allowed_models": listed(form.get("allowed_models")),
    });
    let path = biometric_path(&code);
    let answer = api.call(&ui, Call::post(&path, body).method(Method::PUT).keyed(&form)).await;
    let fields = ["required", "operators", "allowed_models"];
    refused_form(&api, &ui, &code, &answer, ("biometric", &form), &fields).await
}

/// 大量参照アラートのしきい値, at the version shown; blank lifts it.
pub async fn set_read_alert(Extension(api): Extension<InProcessApi>, Posted { ui, form }: Posted) -> Reply {
    let code = ui.own_municipality("認証・監査の設定")?;
    allowed(&ui, &code)?;
    let typed = form.get("residents_per_hour").trim();
    let threshold = if typed.is_empty() {
        Value::Null
    } else {
        // Full-width digits are digits too; anything else is not a number, said at the field.
        let digits: String = typed
            .chars()
            .map(|c| match c {
                '０'..='９' => char::from_u32(u32::from(c) - u32::from('０') + u32::from('0')).unwrap_or(c),
                _ => c,
            })
            .collect();
        match digits.parse::<u64>() {
            Ok(n) => json!(n),
            Err(_) => {
                let mut errors = FieldErrors::default();
                errors.add("residents_per_hour", "1以上の整数で入力してください。");
                errors.general.push("入力内容に誤りがあります。各項目の表示を確認してください。".to_owned());
                let typed = Some(("read_alert", &form));
                return show_now(&api, &ui, &code, StatusCode::UNPROCESSABLE_ENTITY, (&errors, None), typed).await;
            }
        }
    };
    let path = read_alert_path(&code);
    let body = json!({ "residents_per_hour": threshold });
    let answer = api.call(&ui, Call::post(&path, body).method(Method::PUT).keyed(&form)).await;
    refused_form(&api, &ui, &code, &answer, ("read_alert", &form), &["residents_per_hour"]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_list_is_split_on_lines_spaces_and_commas() {
        assert_eq!(listed("OP0501\r\nOP0502, OP0503、OP0504\n\n"), ["OP0501", "OP0502", "OP0503", "OP0504"]);
        assert!(listed("  \n ").is_empty());
    }
}
