//! Biometrics (生体認証) in the clerk web UI (issue 14).
//!
//! In a real browser, WebDriver's virtual authenticator standing for the operator's fingerprint reader: the
//! operations manager, signed in on the clerk's terminal, registers it on the clerk's page (生体情報登録: the
//! page's script begins, the browser creates the credential, the script finishes), then the clerk logs in with the
//! 生体認証でログイン button alone: the form's script asks cardap for a challenge, the browser asks the
//! authenticator, cardap opens the session in the cookie.
//!
//! Over HTTP without a browser, a software authenticator answering for the terminal's browser: the script's calls
//! of the operator's page (begin, finish) with their refusals (a bad name next to its field, no CSRF token,
//! another origin, another municipality's operator), the form posted without the script, and the deletion of an
//! authenticator on the page, after which it no longer logs in.
//!
//! The browser opens the page as `http://localhost:<port>`: browsers refuse WebAuthn on an IP address, and
//! `localhost` is the relying party cardap expects by default. The browser test needs the browser
//! (`scripts/test`; without CARDAP_TEST_BROWSER it says so and passes, and fails under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::browser::{Browser, browser_available};
use cardap_tests::reqwest::{StatusCode, header};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::ui;
use cardap_tests::{Backend, TestApp, on_both_backends, operator_with_password, spawn_app};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softtoken::{self, SoftToken};

const CHIYODA: &str = "131016";
const MINATO: &str = "131032";

async fn chiyoda_with_a_manager_and_a_clerk() -> (TestApp, String) {
    chiyoda_with_a_manager_and_a_clerk_on(Backend::Sqlite).await
}

/// 千代田区 with its operations manager manager01 and its clerk clerk01 (password ClerkPassw0rd), on `backend`;
/// the manager's API token.
async fn chiyoda_with_a_manager_and_a_clerk_on(backend: Backend) -> (TestApp, String) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let operators = json!([
        operator_with_password("manager01", "ClerkPassw0rd", &["operations_manager"], &[]),
        operator_with_password("clerk01", "ClerkPassw0rd", &["clerk"], &[]),
    ]);
    app.add_operators(&admin, CHIYODA, &operators).await;
    let manager = app.login(Some(CHIYODA), "manager01", "ClerkPassw0rd").await;
    (app, manager)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_logs_in_with_his_registered_authenticator() {
    if !browser_available("a_clerk_logs_in_with_his_registered_authenticator") {
        return;
    }
    let (app, manager) = chiyoda_with_a_manager_and_a_clerk().await;
    let local = format!("http://localhost:{}", app.socket_addr.port());
    let browser = Browser::start().await;
    browser
        .client()
        .add_virtual_authenticator(json!({
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserConsenting": true, "isUserVerified": true,
        }))
        .await
        .unwrap();
    // 生体情報登録 on the clerk's page: the manager, signed in on the clerk's terminal, names the reader and presses
    // the button; the page's script begins, the browser creates the credential, the script finishes.
    browser.goto(&format!("{local}/ui/login")).await;
    browser.log_in(CHIYODA, "manager01", "ClerkPassw0rd").await;
    browser.wait_for("ul.systems, main p.muted").await;
    browser.goto(&format!("{local}/ui/operators/clerk01")).await;
    browser.wait_for("#biometric-register-button:not([hidden])").await;
    assert!(
        browser.texts("#biometric-register-unsupported:not([hidden])").await.is_empty(),
        "the script hides the note"
    );
    browser.click_button("この端末で生体情報を登録").await;
    assert!(browser.text("#biometric-register-status").await.contains("認証器の名前を入力"), "asks for a name");
    browser.fill("label", "窓口3番 指静脈リーダー").await;
    browser.click_button("この端末で生体情報を登録").await;
    browser.wait_for_text("p.notice", "生体情報を登録しました").await;
    assert!(browser.text("section[aria-labelledby='biometric-title'] table").await.contains("窓口3番 指静脈リーダー"));
    browser.assert_accessible("the operator's page with an authenticator").await;
    let scroll = "document.getElementById('biometric-title').scrollIntoView()";
    browser.client().execute(scroll, vec![]).await.unwrap();
    browser.screenshot("operator-biometric").await;
    // The same reader again: the browser refuses it (it is registered already, the options exclude it), said under
    // the button; nothing more is registered.
    browser.fill("label", "もう一度").await;
    browser.click_button("この端末で生体情報を登録").await;
    browser.wait_for_text("#biometric-register-status", "登録が完了しませんでした").await;
    let path = format!("/api/v1/municipalities/{CHIYODA}/operators/clerk01/authenticators");
    let listed = app.get(&path, Some(&manager)).await;
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1, "{}", listed.text);
    browser.click_button("ログアウト").await;
    browser.wait_for("form[action='/ui/login']").await;

    // The login form: the button appears where WebAuthn works; without an operator ID it asks for one.
    browser.goto(&format!("{local}/ui/login")).await;
    browser.wait_for("#biometric-login:not([hidden])").await;
    browser.click_button("生体認証でログイン").await;
    assert!(browser.text("#biometric-status").await.contains("オペレータIDを入力"), "asks for the operator ID");
    browser.select("municipality", CHIYODA).await;
    browser.fill("operator_id", "clerk01").await;
    browser.click_button("生体認証でログイン").await;

    // No password typed: the authenticator answered, the session is in the cookie, the top page shows him.
    browser.wait_for("ul.systems, main p.muted").await;
    assert!(browser.url().await.ends_with("/ui/"), "{}", browser.url().await);
    assert!(browser.text("header").await.contains("オペレータ: clerk01"));
    let sessions = app.get(&format!("/api/v1/municipalities/{CHIYODA}/operators/clerk01"), Some(&manager)).await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.text);
    browser.assert_accessible("the top page after a biometric login").await;

    // An operator with no authenticator is told so on the form, and stays there.
    browser.click_button("ログアウト").await;
    browser.wait_for("form[action='/ui/login']").await;
    browser.select("municipality", CHIYODA).await;
    browser.fill("operator_id", "manager01").await;
    browser.click_button("生体認証でログイン").await;
    browser.wait_for_text("#biometric-status", "生体認証が完了しませんでした").await;
    assert!(browser.url().await.ends_with("/ui/login"));
    browser.quit().await;
}

on_both_backends!(
    the_manager_registers_and_deletes_an_authenticator_on_the_operators_page,
    the_manager_sets_who_logs_in_biometrically_and_the_read_alert_threshold
);

/// What the page's script posts (JSON, with the session's cookie), optionally as a page of `origin`; the status
/// and the JSON answered.
async fn script_post(
    app: &TestApp,
    path: &str,
    cookie: &str,
    body: &Value,
    origin: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = ui::browser().post(app.url(path)).header(header::COOKIE, cookie).json(body);
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A biometric login of `operator_id` of 千代田区 through the API with `token`: the status of the finish.
async fn biometric_login(app: &TestApp, origin: &Url, operator_id: &str, token: &mut SoftToken) -> StatusCode {
    let begun = app
        .post(
            "/api/v1/sessions/biometric/challenges",
            None,
            &json!({"municipality": CHIYODA, "operator_id": operator_id}),
        )
        .await;
    assert_eq!(begun.status, StatusCode::CREATED, "{}", begun.text);
    let options: RequestChallengeResponse = serde_json::from_value(begun.json()["options"].clone()).unwrap();
    let Ok(credential) = token.do_authentication(origin.clone(), options) else { return StatusCode::UNAUTHORIZED };
    let body = json!({"challenge_id": begun.json()["challenge_id"], "credential": credential});
    app.post("/api/v1/sessions/biometric", None, &body).await.status
}

/// 生体情報登録 on the clerk's page as its script does it, a software authenticator answering for the terminal's
/// browser; the refusals of those calls; the form without its script; the deletion on the page.
async fn the_manager_registers_and_deletes_an_authenticator_on_the_operators_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, MINATO, "港区", 2).await;
    for code in [CHIYODA, MINATO] {
        let operators = json!([
            operator_with_password("manager01", "ClerkPassw0rd", &["operations_manager"], &[]),
            operator_with_password("clerk01", "ClerkPassw0rd", &["clerk"], &[]),
            operator_with_password("auditor01", "ClerkPassw0rd", &["auditor"], &[]),
        ]);
        app.add_operators(&admin, code, &operators).await;
    }
    let origin = Url::parse(&format!("http://localhost:{}", app.socket_addr.port())).unwrap();
    let cookie = ui::logged_in(&app, CHIYODA, "manager01", "ClerkPassw0rd").await;
    let page = ui::get(&app, "/ui/operators/clerk01", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    ui::assert_strict(&page);
    assert!(page.text.contains("生体情報は登録されていません。"), "{}", page.text);
    assert!(page.text.contains(r#"<script src="/ui/assets/webauthn.js" defer></script>"#));
    let csrf = ui::csrf(&page);
    let begin = "/ui/operators/clerk01/authenticators/registrations";
    let keys = |label: &str| json!({"csrf": csrf, "municipality": CHIYODA, "label": label});

    // A name too long is said next to its field; without the page's token, or from another site, nothing begins.
    let (status, said) = script_post(&app, begin, &cookie, &keys(&"長".repeat(51)), None).await;
    assert_eq!((status, said["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("label")), "{said}");
    assert!(!said["message"].as_str().unwrap().is_empty(), "{said}");
    let forged = json!({"csrf": "forged", "municipality": CHIYODA, "label": "窓口3番"});
    assert_eq!(script_post(&app, begin, &cookie, &forged, None).await.0, StatusCode::FORBIDDEN);
    let elsewhere = script_post(&app, begin, &cookie, &keys("窓口3番"), Some("https://evil.example")).await;
    assert_eq!(elsewhere.0, StatusCode::FORBIDDEN);
    // Another municipality's manager gets nothing for 千代田区's clerk.
    let minato = ui::logged_in(&app, MINATO, "manager01", "ClerkPassw0rd").await;
    let minato_csrf = ui::csrf(&ui::get(&app, "/ui/", &minato).await);
    let theirs = json!({"csrf": minato_csrf, "municipality": CHIYODA, "label": "窓口3番"});
    let (status, said) = script_post(&app, begin, &minato, &theirs, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{said}");
    assert!(said.get("options").is_none(), "{said}");

    // Begun, created by the terminal's authenticator, finished: the page says so and lists it.
    let (status, begun) = script_post(&app, begin, &cookie, &keys("窓口3番 指静脈リーダー"), None).await;
    assert_eq!(status, StatusCode::OK, "{begun}");
    let options: CreationChallengeResponse = serde_json::from_value(begun["options"].clone()).unwrap();
    let mut token = SoftToken::new(true).unwrap().0;
    let credential = serde_json::to_value(token.do_registration(origin.clone(), options).unwrap()).unwrap();
    let finish = format!("{begin}/{}/finish", begun["registration_id"].as_str().unwrap());
    let body = json!({"csrf": csrf, "municipality": CHIYODA, "credential": credential});
    let (status, finished) = script_post(&app, &finish, &cookie, &body, None).await;
    assert_eq!(status, StatusCode::OK, "{finished}");
    let location = finished["location"].as_str().unwrap();
    assert_eq!(location, "/ui/operators/clerk01?municipality=131016&done=authenticator");
    let page = ui::get(&app, location, &cookie).await;
    assert!(page.text.contains("生体情報を登録しました。"), "{}", page.text);
    assert!(page.text.contains("窓口3番 指静脈リーダー") && page.text.contains(&softtoken::AAGUID.to_string()));
    // An auditor sees his authenticators, and nothing to register or delete them with.
    let auditor = ui::logged_in(&app, CHIYODA, "auditor01", "ClerkPassw0rd").await;
    let seen = ui::get(&app, "/ui/operators/clerk01", &auditor).await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
    assert!(seen.text.contains("窓口3番 指静脈リーダー"), "{}", seen.text);
    assert!(!seen.text.contains("biometric-register") && !seen.text.contains("/remove\""), "{}", seen.text);
    // A finish is used once.
    let (status, _) = script_post(&app, &finish, &cookie, &body, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(biometric_login(&app, &origin, "clerk01", &mut token).await, StatusCode::CREATED);

    // The form posted without its script says this browser cannot register, and keeps the name typed.
    let (csrf, key) = ui::keys(&page);
    let form = [("csrf", csrf.as_str()), ("idempotency_key", &key), ("municipality", CHIYODA), ("label", "窓口4番")];
    let without = ui::post(&app, "/ui/operators/clerk01/authenticators", &cookie, &form).await;
    assert_eq!(without.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", without.text);
    assert!(without.text.contains("このブラウザでは生体情報を登録できません"), "{}", without.text);
    assert!(without.text.contains(r#"value="窓口4番""#), "{}", without.text);

    // Deleted on the page: it is gone from the page, and it logs him in no more.
    let listed = app
        .get(
            &format!("/api/v1/municipalities/{CHIYODA}/operators/clerk01/authenticators"),
            Some(&app.login(Some(CHIYODA), "manager01", "ClerkPassw0rd").await),
        )
        .await;
    let credential_id = listed.json()["items"][0]["credential_id"].as_str().unwrap().to_owned();
    // Its registration time on the page is Japan time (the API's is UTC).
    let registered = listed.json()["items"][0]["registered_at"].as_str().unwrap().to_owned();
    let registered = chrono::DateTime::parse_from_rfc3339(&registered).unwrap();
    let japan = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let shown = registered.with_timezone(&japan).format("%Y-%m-%d %H:%M:%S").to_string();
    assert!(page.text.contains(&format!("<td>{shown}</td>")), "{shown} on the page: {}", page.text);
    let remove = format!("/ui/operators/clerk01/authenticators/{credential_id}/remove");
    assert!(page.text.contains(&remove), "the page has the button: {}", page.text);
    let version = ui::hidden(&page, "version");
    let form = [("csrf", csrf.as_str()), ("idempotency_key", "rm-1"), ("municipality", CHIYODA), ("version", &version)];
    let removed = ui::post(&app, &remove, &cookie, &form).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
    let page = ui::get(&app, ui::location(&removed), &cookie).await;
    assert!(page.text.contains("認証器を削除しました。"), "{}", page.text);
    assert!(page.text.contains("生体情報は登録されていません。"), "{}", page.text);
    assert_ne!(biometric_login(&app, &origin, "clerk01", &mut token).await, StatusCode::CREATED);
}

/// 認証・監査の設定: the operations manager's page (not a clerk's); who must log in biometrically and the models
/// allowed, each refusal at its field and what was typed kept; the clerk listed can no longer log in with his
/// password; the bulk-read threshold set (full-width digits too), refused out of range, lifted when blank; a page
/// sent after someone else's change is told so.
async fn the_manager_sets_who_logs_in_biometrically_and_the_read_alert_threshold(backend: Backend) {
    let (app, _) = chiyoda_with_a_manager_and_a_clerk_on(backend).await;
    let clerk = ui::logged_in(&app, CHIYODA, "clerk01", "ClerkPassw0rd").await;
    assert_eq!(ui::get(&app, "/ui/policies", &clerk).await.status, StatusCode::FORBIDDEN);
    let cookie = ui::logged_in(&app, CHIYODA, "manager01", "ClerkPassw0rd").await;
    let top = ui::get(&app, "/ui/", &cookie).await;
    assert_eq!(ui::link(&top, "認証・監査の設定"), "/ui/policies", "in his menu");
    let page = ui::get(&app, "/ui/policies", &cookie).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    ui::assert_strict(&page);
    assert!(page.text.contains(r#"value="none" checked"#), "nobody required yet: {}", page.text);
    let (csrf, _) = ui::keys(&page);
    let version = ui::hidden(&page, "version");
    let biometric = |key: &str, required: &str, operators: &str, models: &str, version: &str| {
        [
            ("csrf", csrf.clone()),
            ("idempotency_key", key.to_owned()),
            ("version", version.to_owned()),
            ("required", required.to_owned()),
            ("operators", operators.to_owned()),
            ("allowed_models", models.to_owned()),
        ]
    };

    let nobody = ui::post(&app, "/ui/policies/biometric", &cookie, &biometric("k1", "listed", "", "", &version)).await;
    assert_eq!(nobody.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", nobody.text);
    ui::assert_problem_at(&nobody, "f-operators");
    assert!(nobody.text.contains(r#"value="listed" checked"#), "the choice stays: {}", nobody.text);
    let model =
        ui::post(&app, "/ui/policies/biometric", &cookie, &biometric("k2", "all", "", "指静脈", &version)).await;
    assert_eq!(model.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", model.text);
    ui::assert_problem_at(&model, "f-allowed_models");
    assert!(model.text.contains("指静脈"), "what was typed stays: {}", model.text);

    let set =
        ui::post(&app, "/ui/policies/biometric", &cookie, &biometric("k3", "listed", "clerk01\n", "", &version)).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.text);
    let page = ui::get(&app, ui::location(&set), &cookie).await;
    assert!(page.text.contains("生体認証の設定を変更しました。"), "{}", page.text);
    assert!(
        page.text.contains(r#"value="listed" checked"#) && page.text.contains(">clerk01</textarea>"),
        "{}",
        page.text
    );
    let form = [("municipality", CHIYODA), ("operator_id", "clerk01"), ("password", "ClerkPassw0rd")];
    let refused = ui::post(&app, "/ui/login", "", &form).await;
    assert!(refused.text.contains("このオペレータは生体認証でログインする設定です。"), "{}", refused.text);
    assert!(ui::set_cookie(&refused).is_none(), "no session for his password");
    // The page of before, sent again: someone (this manager) changed the settings since.
    let stale = ui::post(&app, "/ui/policies/biometric", &cookie, &biometric("k4", "none", "", "", &version)).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    assert!(stale.text.contains("ほかの人がこのデータを変更しました"), "{}", stale.text);
    assert!(stale.text.contains(r#"value="listed" checked"#), "the settings of now: {}", stale.text);

    // The bulk-read threshold: not a number, out of range, full-width digits, then lifted.
    let threshold_path = format!("/api/v1/municipalities/{CHIYODA}/read-alert-policy");
    let manager = app.login(Some(CHIYODA), "manager01", "ClerkPassw0rd").await;
    let alert = |key: &str, value: &str, version: &str| {
        [
            ("csrf", csrf.clone()),
            ("idempotency_key", key.to_owned()),
            ("version", version.to_owned()),
            ("residents_per_hour", value.to_owned()),
        ]
    };
    let page = ui::get(&app, "/ui/policies", &cookie).await;
    let at = page.text.find(r#"action="/ui/policies/read-alert""#).unwrap();
    let alert_version = ui::hidden(&ui::Page { text: page.text[at..].to_owned(), ..page }, "version");
    for typed in ["たくさん", "0"] {
        let bad = ui::post(&app, "/ui/policies/read-alert", &cookie, &alert("k5", typed, &alert_version)).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{typed}: {}", bad.text);
        ui::assert_problem_at(&bad, "f-residents_per_hour");
        assert!(bad.text.contains(&format!(r#"value="{typed}""#)), "{}", bad.text);
    }
    let set = ui::post(&app, "/ui/policies/read-alert", &cookie, &alert("k6", "５０", &alert_version)).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.text);
    assert!(ui::get(&app, ui::location(&set), &cookie).await.text.contains("大量参照アラートのしきい値を変更しました"));
    let now = app.get(&threshold_path, Some(&manager)).await;
    assert_eq!(now.json()["residents_per_hour"], 50, "{}", now.text);
    let version = now.json()["version"].to_string();
    let lifted = ui::post(&app, "/ui/policies/read-alert", &cookie, &alert("k7", "", &version)).await;
    assert_eq!(lifted.status, StatusCode::SEE_OTHER, "{}", lifted.text);
    let now = app.get(&threshold_path, Some(&manager)).await;
    assert_eq!(now.json()["residents_per_hour"], Value::Null, "{}", now.text);
}
