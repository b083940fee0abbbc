//! The UI's pages as HTML (maud: checked at compile time, every value escaped): the layout, the login form, the
//! operator's top page, the one-message page, the confirmation before a change that cannot be undone, and the
//! pieces every form is made of (fields with their notes, the problems above a form, the hidden keys). No script,
//! no inline style (the Content-Security-Policy forbids both); every field has its label, and the order of the
//! fields is the order of work.

use cardap_commands::access::SessionOf;
use cardap_commands::{Actor, Permission, authorize};
use chrono::{DateTime, FixedOffset, Offset, Utc};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use super::UiSession;
use super::form::{FieldErrors, id_of, new_key};

/// A page: the header (with the operator and the logout button when logged in) and `body`.
pub fn layout(title: &str, signed_in: Option<(&SessionOf, &str)>, body: Markup) -> Markup {
    layout_refreshing(title, signed_in, None, body)
}

/// [`layout`] for a page that reloads itself every `refresh` seconds while something runs (an import job):
/// `<meta http-equiv="refresh">`, which the Content-Security-Policy allows, and no script.
pub fn layout_refreshing(
    title: &str,
    signed_in: Option<(&SessionOf, &str)>,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="ja" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — cardap" }
                link rel="stylesheet" href="/ui/assets/app.css";
                @if let Some(seconds) = refresh { meta http-equiv="refresh" content=(seconds); }
            }
            body {
                a.skip-link href="#main" { "本文へ移動" }
                header {
                    h1 { "カードAP搭載システム" }
                    @if let Some((session, csrf)) = signed_in {
                        nav aria-label="メニュー" {
                            @for (href, label) in menu(&session.actor) { a href=(href) { (label) } }
                        }
                        span { "オペレータ: " (session.operator_id) }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "ログアウト" }
                        }
                    }
                }
                main id="main" tabindex="-1" { h2 { (title) } (body) }
            }
        }
    }
}

/// The menu's links the operator may use (the same permissions the API checks; a link he may not use is left
/// out, and its page would refuse him anyway).
fn menu(actor: &Actor) -> Vec<(&'static str, &'static str)> {
    let may = |p: Permission| authorize(actor, &p).is_ok();
    let mut links = vec![("/ui/", "トップ")];
    if let Some(code) = actor.municipality.clone() {
        if may(Permission::ViewResidents(code.clone())) {
            links.push(("/ui/residents", "利用者検索"));
        }
        if may(Permission::RegisterResidents(code.clone())) {
            links.push(("/ui/residents/new", "利用者登録"));
        }
        if may(Permission::ConfigureResidentServices(code.clone())) {
            links.push(("/ui/registry/import", "住基データ取込"));
        }
        if may(Permission::ViewOperators(code.clone())) {
            links.push(("/ui/operators", "オペレータ"));
        }
        if may(Permission::ConfigureResidentServices(code.clone())) {
            links.push(("/ui/settings", "市町村設定"));
        }
        if may(Permission::EraseResidents(code.clone())) {
            links.push(("/ui/erasure", "個人情報の消去"));
        }
        if may(Permission::ManageBiometrics(code.clone())) {
            links.push(("/ui/policies", "認証・監査の設定"));
        }
        if may(Permission::ReadHistory(code)) {
            links.push(("/ui/audit", "監査"));
        }
    }
    if may(Permission::ManageMunicipalities) {
        links.extend([
            ("/ui/operators", "オペレータ"),
            ("/ui/settings", "市町村設定"),
            ("/ui/audit", "監査"),
            ("/ui/admin", "システム管理"),
        ]);
    }
    links
}

/// The login form: 市町村 (none: the system administrator), オペレータID, パスワード. What was typed (never the
/// password) is kept after a refusal, with the reason above the form.
pub fn login(
    municipalities: &[(String, String)],
    municipality: &str,
    operator_id: &str,
    error: Option<&str>,
) -> Markup {
    layout(
        "ログイン",
        None,
        html! {
            @if let Some(error) = error {
                p.error role="alert" id="login-error" { (error) }
            }
            form method="post" action="/ui/login" {
                label for="municipality" { "市町村" }
                select id="municipality" name="municipality" {
                    option value="" selected[municipality.is_empty()] { "（システム管理者）" }
                    @for (code, name) in municipalities {
                        option value=(code) selected[code == municipality] { (name) " (" (code) ")" }
                    }
                }
                label for="operator_id" { "オペレータID" }
                input id="operator_id" name="operator_id" type="text" autocomplete="username" required
                    value=(operator_id) autofocus[operator_id.is_empty()];
                label for="password" { "パスワード" }
                input id="password" name="password" type="password" autocomplete="current-password" required
                    autofocus[!operator_id.is_empty()];
                div { button type="submit" { "ログイン" } }
                // Shown by the script when the browser can use an authenticator (WebAuthn).
                div.biometric {
                    button.secondary type="button" id="biometric-login" hidden { "生体認証でログイン" }
                    p id="biometric-status" role="status" aria-live="polite" {}
                }
            }
            script src="/ui/assets/webauthn.js" defer {}
        },
    )
}

/// The operator's top page: the business systems he may use now, each with its links.
pub fn top(session: &SessionOf, csrf: &str, systems: &[Value]) -> Markup {
    let municipality = session.actor.municipality.as_ref().map(|m| m.to_string());
    layout(
        "トップ",
        Some((session, csrf)),
        html! {
            p {
                "オペレータID: " strong { (session.operator_id) }
                @if let Some(code) = &municipality { " / 市町村コード: " strong { (code) } }
                @else { " / システム管理者" }
            }
            @if session.actor.password_change_required {
                p.error role="alert" { "初期パスワードのままです。パスワードを変更するまで業務は利用できません。" }
            }
            h3 { "利用できる業務" }
            @if systems.is_empty() {
                p.muted { "いま利用できる業務はありません。" }
            } @else {
                ul.systems {
                    @for system in systems {
                        @let text = |key: &str| system.get(key).and_then(Value::as_str);
                        li {
                            strong { (text("name").unwrap_or("")) } " " span.muted { "(" (text("business_id").unwrap_or("")) ")" }
                            @if let Some(url) = safe_link(text("top_url")) {
                                br; a href=(url) { "業務トップ" }
                            }
                            @if let Some(url) = safe_link(text("operator_admin_url")) {
                                br; a href=(url) { "オペレータ管理" }
                            }
                            @if let Some(url) = safe_link(text("personalize_url")) {
                                br; a href=(url) { "パーソナライズ" }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One text field with its label, what was typed, and its problems right under it (tied by `aria-describedby`).
pub fn text_field(name: &str, label: &str, value: &str, hint: &str, errors: &FieldErrors) -> Markup {
    input_field(name, label, value, hint, errors, Input::Text { required: false })
}

/// What kind of input a field is.
pub enum Input<'a> {
    Text {
        required: bool,
    },
    /// A choice among `(value, label)`, with an empty first option unless required and chosen.
    Select {
        options: &'a [(String, String)],
        required: bool,
    },
    /// Several lines (a list typed one a line, or separated).
    Textarea {
        rows: u8,
    },
    /// A new password: never filled in again (a password is not echoed into a page).
    Password,
}

/// A field of a form: its label (with 必須 when required), the input keeping what was typed, and its problems (or
/// its hint) under it, tied by `aria-describedby`; a field with a problem is `aria-invalid`.
pub fn input_field(name: &str, label: &str, value: &str, hint: &str, errors: &FieldErrors, input: Input<'_>) -> Markup {
    let id = id_of(name);
    let problems = errors.of_field(name);
    let described = format!("{id}-note");
    let invalid = (!problems.is_empty()).then_some("true");
    let required = match input {
        Input::Text { required } | Input::Select { required, .. } => required,
        Input::Textarea { .. } | Input::Password => false,
    };
    html! {
        div.field {
            label for=(id) { (label) @if required { " " span.required { "必須" } } }
            @match input {
                Input::Text { .. } => {
                    input id=(id) name=(name) type="text" value=(value) aria-describedby=(described)
                        aria-invalid=[invalid] aria-required=[required.then_some("true")];
                }
                Input::Select { options, .. } => {
                    select id=(id) name=(name) aria-describedby=(described) aria-invalid=[invalid]
                        aria-required=[required.then_some("true")] {
                        @if !required || value.is_empty() { option value="" { "（選択してください）" } }
                        @for (v, l) in options { option value=(v) selected[v == value] { (l) } }
                    }
                }
                Input::Textarea { rows } => {
                    textarea id=(id) name=(name) rows=(rows) aria-describedby=(described) aria-invalid=[invalid] { (value) }
                }
                Input::Password => {
                    input id=(id) name=(name) type="password" autocomplete="new-password" aria-describedby=(described)
                        aria-invalid=[invalid];
                }
            }
            (field_note(&described, hint, &problems))
        }
    }
}

/// What is under a field: its problems (one a line), else its hint; `id` is what the field's `aria-describedby`
/// names.
pub fn field_note(id: &str, hint: &str, problems: &[&str]) -> Markup {
    html! {
        @if problems.is_empty() {
            span.muted id=(id) { (hint) }
        } @else {
            span.field-error id=(id) { @for (i, p) in problems.iter().enumerate() { @if i > 0 { br; } (p) } }
        }
    }
}

/// The options of a choice, `(value, label)`.
pub fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(value, label)| ((*value).to_owned(), (*label).to_owned())).collect()
}

/// The problems of a refused form, above it (read out at once: `role="alert"`).
pub fn error_summary(errors: &FieldErrors) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.error-summary role="alert" {
                @for message in &errors.general { p { (message) } }
                @if errors.general.is_empty() { p { "入力内容に誤りがあります。各項目の表示を確認してください。" } }
            }
        }
    }
}

/// What a change did, above the page (`role="status"`).
pub fn notice(text: Option<&str>) -> Markup {
    html! { @if let Some(text) = text { p.notice role="status" { (text) } } }
}

/// The hidden fields of every form that changes something: the CSRF token and the form's `Idempotency-Key` (a
/// double click sends the same key twice, and the API applies it once).
pub fn form_keys(csrf: &str, idempotency_key: &str) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="idempotency_key" value=(idempotency_key);
    }
}

/// What the clerk typed into the search form.
#[derive(Debug)]
pub struct SearchForm<'a> {
    pub kana_prefix: &'a str,
    pub birth_date: &'a str,
    pub fid: &'a str,
}

/// 利用者検索: the form (what was typed kept, each problem next to its field) and, when searched, the residents.
pub fn residents(
    session: &SessionOf,
    csrf: &str,
    form: &SearchForm<'_>,
    errors: &FieldErrors,
    found: Option<(&[Value], bool)>,
) -> Markup {
    layout(
        "利用者検索",
        Some((session, csrf)),
        html! {
            form method="get" action="/ui/residents" {
                (text_field("kana_prefix", "カナ氏名（前方一致）", form.kana_prefix, "例: ヤマダ", errors))
                (text_field("birth_date", "生年月日", form.birth_date, "元号の数字と年月日の7桁（例: 3450101）", errors))
                (text_field("fid", "カードFID", form.fid, "カードのFID", errors))
                div { button type="submit" { "検索" } }
            }
            @if let Some((rows, more)) = found {
                @if rows.is_empty() {
                    p role="status" { "該当する利用者はいません。" }
                } @else {
                    p role="status" { (rows.len()) "件" @if more { "（先頭の100件。条件を絞ってください）" } }
                    table {
                        thead { tr { th scope="col" { "カナ氏名" } th scope="col" { "漢字氏名" } th scope="col" { "生年月日" }
                            th scope="col" { "カードFID" } th scope="col" { "状態" } th scope="col" { "利用者ID" } } }
                        tbody {
                            @for r in rows {
                                @let text = |pointer: &str| r.pointer(pointer).and_then(Value::as_str).unwrap_or("");
                                @let id = text("/resident_id");
                                tr {
                                    td { (text("/kana_name/family")) " " (text("/kana_name/given")) }
                                    td { (text("/kanji_name/family")) " " (text("/kanji_name/given")) }
                                    td { (text("/birth_date_label")) }
                                    td { (text("/active_fid")) }
                                    td {
                                        @if r["erased"] == true { "消去済み" } @else if r["moved_out"] == true { "転出" } @else { "—" }
                                    }
                                    td { a href={ "/ui/residents/" (id) } { code { (id) } } }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What a confirmation before a change that cannot be undone says and does.
pub struct Confirmation<'a> {
    pub title: &'a str,
    /// What is about to happen.
    pub what: Markup,
    /// What cannot be undone.
    pub warning: Markup,
    /// Where the form posts; `None` when it is already done (the page then only says what it would do).
    pub action: Option<&'a str>,
    /// The form's hidden fields besides its keys and the version (the operator screens' municipality).
    pub hidden: Markup,
    /// The version the page showed (`If-Match`).
    pub version: &'a str,
    pub button: &'a str,
    /// Where やめる goes.
    pub back: &'a str,
}

/// The confirmation before a change (廃止, 失効, 取り消し, 一時停止…): what it does, the warning, and the button that
/// does it at the version the page showed; after a refusal, the problems above.
pub fn confirmation(ui: &UiSession, c: Confirmation<'_>, errors: &FieldErrors) -> Markup {
    ui.layout(
        c.title,
        html! {
            (error_summary(errors))
            p { (c.what) }
            p.error { (c.warning) }
            @if let Some(action) = c.action {
                form method="post" action=(action) {
                    (form_keys(&ui.csrf(), &new_key()))
                    (c.hidden)
                    input type="hidden" name="version" value=(c.version);
                    button type="submit" { (c.button) }
                }
            }
            p { a href=(c.back) { "やめる" } }
        },
    )
}

/// A page with one message (an error the user can act on).
pub fn message(title: &str, text: &str) -> Markup {
    layout(title, None, html! { p { (text) } p { a href="/ui/" { "トップへ" } } })
}

/// A business system's link, only when it is http(s): never a `javascript:` or `data:` URL in a page.
fn safe_link(url: Option<&str>) -> Option<&str> {
    url.filter(|u| {
        let lower = u.trim_start().to_ascii_lowercase();
        lower.starts_with("https://") || lower.starts_with("http://")
    })
}

/// Japan time (UTC+9, no daylight saving): the screens show times and count days in it.
pub fn japan() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| Utc.fix())
}

/// A time the API gives (RFC 3339) as the screens show it: Japan time, `YYYY-MM-DD HH:MM:SS`; "" when absent.
pub fn in_japan(text: Option<&str>) -> String {
    text.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&japan()).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn what_was_typed_is_escaped_and_kept_but_never_the_password() {
        let page =
            login(&[("131016".into(), "千代田区".into())], "131016", "<script>x</script>", Some("だめ")).into_string();
        assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"), "{page}");
        assert!(!page.contains("<script>"), "no inline script: {page}");
        assert_eq!(page.matches("<script").count(), 1, "only the binary's own webauthn.js: {page}");
        assert!(page.contains(r#"<option value="131016" selected>千代田区 (131016)</option>"#), "{page}");
        assert!(page.contains(r#"<label for="password">パスワード</label>"#));
        assert!(!page.contains("style="), "no inline style: the CSP forbids it");
    }

    #[test]
    fn only_http_links_are_shown() {
        assert_eq!(safe_link(Some("https://lib.example.jp/")), Some("https://lib.example.jp/"));
        assert_eq!(safe_link(Some(" JavaScript:alert(1)")), None);
        assert_eq!(safe_link(Some("data:text/html,x")), None);
        assert_eq!(safe_link(None), None);
    }
}
