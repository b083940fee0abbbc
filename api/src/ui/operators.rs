//! The operator screens of the clerk UI (オペレータ管理, 手引き I 2.1(5), 2.2(5)–(6)), for an operations manager of
//! a municipality and for the system administrator, who picks the municipality (`?municipality=`):
//! - the list with the source's filters, paged with the API's cursor, and the CSV export of the same filters;
//! - registration of one operator or of several in one form, the generated passwords shown once, printable
//!   ([`register`]);
//! - an operator's page: change under `If-Match`, 失効 (confirmed), ロック解除, password reset, ending his
//!   sessions, 業務内ID, and パスワード一括変更 for those chosen in the list ([`operator`]); 生体情報登録 and the
//!   deletion of his authenticators ([`authenticators`]);
//! - the CSV import as the API's job, followed on a page that reloads itself while it runs ([`csv`]);
//! - 操作者情報の移行 between municipalities, for the system administrator ([`migration`]).
//!
//! Owns these routes and their HTML, and nothing else: every read and change is one call of the HTTP API in
//! process (`super::api`), so who may do what, the parsing of every field and the Japanese messages are the API's;
//! a refused field's message is shown next to that field. Passwords are never put into an address, a cookie or a
//! later page: only the answer that generated them shows them.

mod authenticators;
mod csv;
mod migration;
mod operator;
mod register;

use axum::extract::{DefaultBodyLimit, RawQuery};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use maud::{Markup, html};
use serde_json::Value;

use super::api::{InProcessApi, flag, items, segment, strings, text};
use super::flow::{municipalities, one};
use super::form::{FieldErrors, Form, id_of};
use super::pages::{Input, field_note, input_field, options, text_field};
use super::{Reply, UiSession, page};
use crate::state::AppState;

/// The operator screens' routes (merged into `ui::router`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/operators", get(list))
        .route("/ui/operators/new", get(register::form).post(register::register))
        .route("/ui/operators/batch", get(register::batch_form).post(register::batch))
        .route("/ui/operators/passwords", get(operator::bulk_confirm).post(operator::bulk_passwords))
        .route(
            "/ui/operators/import",
            get(csv::upload_form)
                .post(csv::upload)
                .layer(DefaultBodyLimit::max(crate::routes::operator_csv::IMPORT_LIMIT + 64 * 1024)),
        )
        .route("/ui/operators/export", get(csv::export))
        .route("/ui/operators/{id}", get(operator::show).post(operator::change))
        .route("/ui/operators/{id}/revoke", get(operator::revoke_confirm).post(operator::revoke))
        .route("/ui/operators/{id}/unlock", post(operator::unlock))
        .route("/ui/operators/{id}/password", post(operator::reset_password))
        .route("/ui/operators/{id}/sessions", post(operator::end_sessions))
        .route("/ui/operators/{id}/internal-ids", post(operator::assign_internal_id))
        .route("/ui/operators/{id}/internal-ids/{business_id}/remove", post(operator::remove_internal_id))
        .route("/ui/operators/{id}/authenticators", post(operator::register_without_script))
        .route("/ui/operators/{id}/authenticators/registrations", post(authenticators::begin))
        .route(
            "/ui/operators/{id}/authenticators/registrations/{registration_id}/finish",
            post(authenticators::finish).layer(DefaultBodyLimit::max(crate::routes::biometrics::WEBAUTHN_BODY_LIMIT)),
        )
        .route("/ui/operators/{id}/authenticators/{credential_id}/remove", post(operator::remove_authenticator))
        .route("/ui/jobs/{id}", get(csv::job))
        .route("/ui/jobs/{id}/passwords", post(csv::job_passwords))
        .route("/ui/operator-migrations", get(migration::form).post(migration::migrate))
}

/// The roles a municipality's operator may have (system administration belongs to no municipality), with the
/// screen's words.
const ROLES: [(&str, &str); 4] = [
    ("operations_manager", "運用管理"),
    ("business_admin", "業務システム管理"),
    ("clerk", "窓口"),
    ("auditor", "監査"),
];

/// 性別 with the operator screen's words (ISO 5218 digits, as the API takes them).
fn sexes() -> Vec<(String, String)> {
    options(&[("0", "指定なし"), ("1", "男性"), ("2", "女性"), ("9", "適用不能")])
}

fn role_label(role: &str) -> &str {
    ROLES.iter().find(|(r, _)| *r == role).map(|(_, l)| *l).unwrap_or(role)
}

fn roles() -> Vec<(String, String)> {
    options(&ROLES)
}

/// An operator's roles, with the screen's words.
fn role_labels(operator: &Value) -> String {
    strings(operator, "roles").iter().map(|r| role_label(r)).collect::<Vec<_>>().join("、")
}

/// The municipality a screen works in: the operator's own, or (the system administrator) the one he picked.
#[derive(Debug, Clone)]
struct Scope {
    code: String,
}

impl Scope {
    /// `…/operators` of the API.
    fn api(&self) -> String {
        format!("/api/v1/municipalities/{}/operators", segment(&self.code))
    }

    /// `…/operators/{id}` of the API.
    fn api_of(&self, operator_id: &str) -> String {
        format!("{}/{}", self.api(), segment(operator_id))
    }

    /// A UI address in this municipality: `path?municipality=…` (the system administrator's choice travels in
    /// every link; for a municipality's operator it is his own).
    fn href(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{}", query(&[("municipality", &self.code)]))
    }

    /// The UI address of an operator's page.
    fn operator_href(&self, operator_id: &str) -> String {
        self.href(&format!("/ui/operators/{}", segment(operator_id)))
    }

    /// The hidden field that carries the municipality in a form.
    fn hidden(&self) -> Markup {
        html! { input type="hidden" name="municipality" value=(self.code); }
    }
}

/// The municipality of a screen: `given` (a link's or form's `municipality`) when there is one and the API shows
/// it to the operator (another municipality's gets the API's 404), else the operator's own. The system administrator without
/// a choice gets the form that asks for it (a GET to `back_to`).
async fn scope(api: &InProcessApi, ui: &UiSession, given: &str, back_to: &str) -> Result<Scope, Response> {
    let own = ui.session.actor.municipality.as_ref().map(|m| m.to_string());
    match Some(given.trim()).filter(|g| !g.is_empty()) {
        Some(code) if own.as_deref() == Some(code) => return Ok(Scope { code: code.to_owned() }),
        // Another municipality's, or the system administrator's choice: one the API shows him (else its 404).
        Some(code) => {
            one(api, ui, &format!("/api/v1/municipalities/{}", segment(code))).await?;
            return Ok(Scope { code: code.to_owned() });
        }
        None => {
            if let Some(own) = own {
                return Ok(Scope { code: own });
            }
        }
    }
    let municipalities = municipalities(api, ui).await?;
    Err(page(ui.layout(
        "市町村の選択",
        html! {
            p { "オペレータを管理する市町村・任意団体を選んでください。" }
            form method="get" action=(back_to) {
                label for="f-municipality" { "市町村" }
                select id="f-municipality" name="municipality" required {
                    @for (code, name) in &municipalities { option value=(code) { (name) " (" (code) ")" } }
                }
                div { button type="submit" { "表示" } }
            }
        },
    )))
}

/// A query string of the non-empty `pairs`, percent-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if !value.is_empty() {
            out.append_pair(name, value);
        }
    }
    out.finish()
}

/// A group of checkboxes `name` (one per option, each with its label), what is `chosen` checked, and the group's
/// problems (or `hint`) under it.
fn checkboxes(
    name: &str,
    legend: &str,
    options: &[(String, String)],
    chosen: &[&str],
    hint: &str,
    errors: &FieldErrors,
) -> Markup {
    let id = id_of(name);
    let note = format!("{id}-note");
    let problems = errors.of_field(name);
    html! {
        fieldset aria-describedby=(note) aria-invalid=[(!problems.is_empty()).then_some("true")] {
            legend { (legend) }
            @if options.is_empty() { p.muted { "選べるものはありません。" } }
            @for (value, label) in options {
                @let each = format!("{id}-{value}");
                div.check {
                    input type="checkbox" id=(each) name=(name) value=(value) checked[chosen.contains(&value.as_str())];
                    label for=(each) { (label) }
                }
            }
            (field_note(&note, hint, &problems))
        }
    }
}

/// The text fields of an operator's management information after 氏名・組織名 and 部門 (which come first, then
/// 性別): form name (the API's field), label, hint.
const CONTACT: [(&str, &str, &str); 5] = [
    ("phone", "連絡先電話", "半角数字とハイフン（例: 03-1234-5678）"),
    ("extension", "内線", "半角数字"),
    ("email", "E-Mail", "例: madoguchi@city.example.jp"),
    ("info", "情報", "自由に使える項目です（一覧の検索・CSV出力の条件にもなります）"),
    ("extra", "付帯情報", ""),
];

/// Every field of the management information, in the screen's order.
const PROFILE: [&str; 8] = ["name", "department", "sex", "phone", "extension", "email", "info", "extra"];

/// The fields of an operator where the API may place a problem (their form names without a row's prefix are the
/// API's): the management information, roles, 許可業務, the password, and `more` of the form at hand.
fn problem_fields(more: &[&'static str]) -> Vec<&'static str> {
    PROFILE.into_iter().chain(["roles", "business_systems", "password"]).chain(more.iter().copied()).collect()
}

/// The management information fields (氏名・組織名 … 付帯情報), each named `{prefix}{field}`, with what `typed`
/// holds and the problems of each.
fn profile_fields(prefix: &str, typed: &Form, errors: &FieldErrors) -> Markup {
    let sexes = sexes();
    let name = |field: &str| format!("{prefix}{field}");
    html! {
        (input_field(&name("name"), "氏名・組織名", typed.get(&name("name")), "", errors, Input::Text { required: true }))
        (input_field(&name("department"), "部門", typed.get(&name("department")), "", errors, Input::Text { required: false }))
        (input_field(&name("sex"), "性別", typed.get(&name("sex")), "", errors, Input::Select { options: &sexes, required: false }))
        @for (field, label, hint) in CONTACT {
            (input_field(&name(field), label, typed.get(&name(field)), hint, errors, Input::Text { required: false }))
        }
    }
}

/// A password field (never filled in again after a refusal), blank for a generated one.
fn password_field(name: &str, label: &str, errors: &FieldErrors) -> Markup {
    let hint = "半角英数字。空欄にすると自動で生成し、一度だけ表示します。";
    input_field(name, label, "", hint, errors, Input::Password)
}

/// A page of new passwords, shown this once: what each operator gets, printable (the menu is not printed), and
/// the warning that it cannot be shown again.
fn passwords_page(ui: &UiSession, title: &str, intro: &str, rows: &[(String, String, String)], back: &str) -> Markup {
    let named = rows.iter().any(|(_, name, _)| !name.is_empty());
    ui.layout(
        title,
        html! {
            p.notice role="status" { (intro) }
            @if rows.is_empty() {
                p { "生成されたパスワードはありません。" }
            } @else {
                p.error.no-print {
                    "パスワードはこの画面に一度だけ表示されます。画面を閉じると二度と表示できません。"
                    "ブラウザの印刷機能で印刷するか、本人に確実に伝えてください。"
                }
                table.passwords {
                    thead { tr {
                        th scope="col" { "オペレータID" }
                        @if named { th scope="col" { "氏名・組織名" } }
                        th scope="col" { "パスワード" }
                    } }
                    tbody {
                        @for (id, name, password) in rows {
                            tr { td { (id) } @if named { td { (name) } } td { code.password { (password) } } }
                        }
                    }
                }
            }
            p.no-print { a href=(back) { "戻る" } }
        },
    )
}

/// オペレータ一覧: the filter form (the list's conditions, each a substring), the operators of one page with a
/// link to each, the next page by the API's cursor; the CSV export with the same conditions; the operators chosen
/// here go to the bulk password change.
async fn list(Extension(api): Extension<InProcessApi>, ui: UiSession, raw: RawQuery) -> Reply {
    let q = Form::of_query(&raw);
    let scope = scope(&api, &ui, q.get("municipality"), "/ui/operators").await?;
    let filters: Vec<(&str, &str)> = FILTERS.iter().map(|(name, _)| (*name, q.get(name).trim())).collect();
    let include_revoked = if q.get("include_revoked") == "true" { "true" } else { "" };
    let mut asked = filters.clone();
    asked.extend([("include_revoked", include_revoked), ("cursor", q.get("cursor")), ("limit", q.get("limit"))]);
    let answer = one(&api, &ui, &format!("{}?{}", scope.api(), query(&asked))).await?;
    let operators = items(&answer.body);
    let next = answer.body.get("next_cursor").and_then(Value::as_str).filter(|c| !c.is_empty());
    let mut kept = filters.clone();
    kept.extend([("include_revoked", include_revoked), ("limit", q.get("limit"))]);
    let here = scope.href(&format!("/ui/operators?{}", query(&kept)));
    let export = |charset: &str| {
        let mut with = filters.clone();
        with.extend([("include_revoked", include_revoked), ("charset", charset)]);
        scope.href(&format!("/ui/operators/export?{}", query(&with)))
    };
    let admin = ui.session.actor.is_system_admin();
    let errors = FieldErrors::default();
    Ok(page(ui.layout(
        &format!("オペレータ一覧（{}）", scope.code),
        html! {
            p.actions {
                a href=(scope.href("/ui/operators/new")) { "オペレータ登録" }
                a href=(scope.href("/ui/operators/batch")) { "複数まとめて登録" }
                a href=(scope.href("/ui/operators/import")) { "CSVで一括登録" }
                @if admin { a href=(scope.href("/ui/operator-migrations")) { "他の市町村への移行" } }
                @if admin { a href="/ui/operators" { "市町村を選び直す" } }
            }
            section aria-labelledby="filter-title" {
                h3 id="filter-title" { "検索条件" }
                form method="get" action="/ui/operators" {
                    (scope.hidden())
                    @for (name, label) in FILTERS {
                        (text_field(name, label, q.get(name), "部分一致", &errors))
                    }
                    div.check {
                        input type="checkbox" id="f-include_revoked" name="include_revoked" value="true"
                            checked[!include_revoked.is_empty()];
                        label for="f-include_revoked" { "失効したオペレータも表示する" }
                    }
                    div { button type="submit" { "検索" } }
                }
            }
            section aria-labelledby="list-title" {
                h3 id="list-title" { "オペレータ" }
                p.actions {
                    a href=(export("UTF-8")) { "この条件でCSV出力（UTF-8）" }
                    a href=(export("Shift_JIS")) { "この条件でCSV出力（Shift_JIS）" }
                }
                @if operators.is_empty() {
                    p role="status" { "該当するオペレータはいません。" }
                } @else {
                    form method="get" action="/ui/operators/passwords" {
                        (scope.hidden())
                        table {
                            thead { tr {
                                th scope="col" { "選択" } th scope="col" { "オペレータID" } th scope="col" { "氏名・組織名" }
                                th scope="col" { "部門" } th scope="col" { "連絡先電話" } th scope="col" { "E-Mail" }
                                th scope="col" { "情報" } th scope="col" { "役割" } th scope="col" { "許可業務" } th scope="col" { "状態" }
                            } }
                            tbody {
                                @for o in operators {
                                    @let id = text(o, "operator_id");
                                    @let check = format!("pick-{}", segment(id));
                                    tr {
                                        td { @if !flag(o, "revoked") {
                                            input type="checkbox" id=(check) name="operator_ids" value=(id);
                                            label.visually-hidden for=(check) { (id) " を選択" }
                                        } }
                                        td { a href=(scope.operator_href(id)) { (id) } }
                                        td { (text(o, "name")) } td { (text(o, "department")) } td { (text(o, "phone")) }
                                        td { (text(o, "email")) } td { (text(o, "info")) }
                                        td { (role_labels(o)) }
                                        td { (strings(o, "business_systems").join(" ")) }
                                        td { (state_label(o)) }
                                    }
                                }
                            }
                        }
                        div { button.secondary type="submit" { "選択したオペレータのパスワードを一括変更…" } }
                    }
                }
                p.actions {
                    @if !q.get("cursor").is_empty() { a href=(here) { "最初のページ" } }
                    @if let Some(next) = next {
                        a href={ (here) "&" (query(&[("cursor", next)])) } { "次のページ" }
                    }
                }
            }
        },
    )))
}

/// The list's filters (`GET …/operators`' conditions), with the screen's labels.
const FILTERS: [(&str, &str); 6] = [
    ("operator_id", "オペレータID"),
    ("name", "氏名・組織名"),
    ("department", "部門"),
    ("phone", "連絡先電話"),
    ("email", "E-Mail"),
    ("info", "情報"),
];

/// 失効 / ロック中 / 有効.
fn state_label(operator: &Value) -> &'static str {
    if flag(operator, "revoked") {
        "失効"
    } else if flag(operator, "locked") {
        "ロック中"
    } else {
        "有効"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_leaves_out_blank_conditions_and_encodes_the_rest() {
        assert_eq!(
            query(&[("name", "窓口 太郎"), ("phone", ""), ("cursor", "a+b")]),
            "name=%E7%AA%93%E5%8F%A3+%E5%A4%AA%E9%83%8E&cursor=a%2Bb"
        );
        let scope = Scope { code: "131016".to_owned() };
        assert_eq!(scope.href("/ui/operators/new"), "/ui/operators/new?municipality=131016");
        assert_eq!(scope.operator_href("OP/1"), "/ui/operators/OP%2F1?municipality=131016");
    }
}
