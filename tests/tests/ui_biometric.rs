//! Biometric login (生体認証) on the login form of the clerk web UI, in a real browser (issue 14): WebDriver's
//! virtual authenticator stands for the operator's fingerprint reader. The operations manager registers it for the
//! clerk (the registration ceremony runs in the clerk's browser, as at his terminal), then the clerk logs in with
//! the 生体認証でログイン button alone: the form's script asks cardap for a challenge, the browser asks the
//! authenticator, cardap opens the session in the cookie.
//!
//! The page is opened as `http://localhost:<port>`: browsers refuse WebAuthn on an IP address, and `localhost` is
//! the relying party cardap expects by default. Needs the browser (`scripts/test`; without CARDAP_TEST_BROWSER
//! the test says so and passes, and fails under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::browser::{Browser, browser_available};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{Backend, TestApp, operator_with_password, spawn_app};

const CHIYODA: &str = "131016";

/// What a terminal's browser does with the registration options: `navigator.credentials.create()`, and the
/// answer as JSON with its binary fields in base64url (as cardap reads it).
const CREATE: &str = r#"
const options = arguments[0];
const done = arguments[arguments.length - 1];
const buffer = (text) => {
  let b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  while (b64.length % 4) { b64 += '='; }
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
};
const text = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
const publicKey = Object.assign({}, options.publicKey);
publicKey.challenge = buffer(publicKey.challenge);
publicKey.user = Object.assign({}, publicKey.user, { id: buffer(publicKey.user.id) });
if (publicKey.excludeCredentials) {
  publicKey.excludeCredentials = publicKey.excludeCredentials.map((c) => Object.assign({}, c, { id: buffer(c.id) }));
}
navigator.credentials.create({ publicKey }).then((c) => done({
  id: c.id, rawId: text(c.rawId), type: c.type,
  response: { attestationObject: text(c.response.attestationObject), clientDataJSON: text(c.response.clientDataJSON) },
  extensions: {},
}), (e) => done({ error: String(e) }));
"#;

async fn chiyoda_with_a_manager_and_a_clerk() -> (TestApp, String) {
    let app = spawn_app(Backend::Sqlite).await;
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
    browser.goto(&format!("{local}/ui/login")).await;
    browser.wait_for("form[action='/ui/login']").await;

    // 生体情報登録: the manager begins, the clerk's browser creates the credential, the manager finishes.
    let path = format!("/api/v1/municipalities/{CHIYODA}/operators/clerk01/authenticators/registrations");
    let begun = app.post(&path, Some(&manager), &json!({"label": "窓口3番 指静脈リーダー"})).await;
    assert_eq!(begun.status, StatusCode::CREATED, "{}", begun.text);
    let begun = begun.json();
    let created: Value = browser.client().execute_async(CREATE, vec![begun["options"].clone()]).await.unwrap();
    assert!(created.get("error").is_none(), "the authenticator registers: {created}");
    let finish = format!("{path}/{}/finish", begun["registration_id"].as_str().unwrap());
    let finished = app.post(&finish, Some(&manager), &created).await;
    assert!(finished.status.is_success(), "{}", finished.text);

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
