//! The clerk web UI in a real browser (issue 14): headless Chromium through WebDriver (`cardap_tests::browser`)
//! logs a clerk in through the login form, shows his top page and finds a resident; a wrong password keeps what
//! he typed; the keyboard alone is enough; the page's Content-Security-Policy is in force; axe-core finds no serious
//! or critical accessibility violation on the login form, the top page and the resident search. Screenshots of
//! those three screens (`login`, `top`, `residents`) go to `CARDAP_UI_SCREENSHOTS` when set.
//!
//! SQLite only: the browser sees the same pages on either backend (`ui.rs` checks both over HTTP). Needs the
//! browser: `scripts/test` installs it (`scripts/browser`) and exports CARDAP_TEST_BROWSER=1; without it these
//! tests say so and pass (and fail under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::browser::{Browser, Key, browser_available};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::ui::offering;
use cardap_tests::{Backend, TestApp, resident_body, residents_path, spawn_app};

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";

/// 千代田区 and 札幌市, 千代田区 permitted the library (02) and 子育て支援 (05); clerk01 of 千代田区 permitted 02;
/// 千代田 太郎 (ヤマダ タロウ, 昭和45年1月1日) registered in 千代田区, his namesake 札幌 太郎 in 札幌市.
async fn chiyoda_with_a_clerk_and_a_resident() -> TestApp {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    offering(&app, &admin, CHIYODA, &[("05", "子育て支援")]).await;
    app.clerk_token(&admin, CHIYODA, "clerk01", &["02"]).await;
    for (code, kanji) in [(CHIYODA, "千代田"), (SAPPORO, "札幌")] {
        let mut body = resident_body("ヤマダ", "タロウ", "3450101");
        body["kanji_name"] = json!({"family": kanji, "given": "太郎"});
        let reply = app.post(&residents_path(code), Some(&admin), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_logs_in_sees_his_systems_and_finds_a_resident() {
    if !browser_available("a_clerk_logs_in_sees_his_systems_and_finds_a_resident") {
        return;
    }
    let app = chiyoda_with_a_clerk_and_a_resident().await;
    let browser = Browser::start().await;

    // The address a clerk types: the root leads to the login form.
    browser.goto(&app.url("/")).await;
    browser.wait_for("form[action='/ui/login']").await;
    assert!(browser.url().await.ends_with("/ui/login"), "{}", browser.url().await);
    assert_eq!(browser.text("main h2").await, "ログイン");
    browser.screenshot("login").await;
    browser.assert_accessible("the login form").await;

    browser.log_in(CHIYODA, "clerk01", "ClerkPassw0rd").await;

    // The top page: him, his municipality, and only the systems he may use now.
    browser.wait_for("ul.systems").await;
    assert!(browser.url().await.ends_with("/ui/"), "{}", browser.url().await);
    let main = browser.text("main").await;
    assert!(main.contains("clerk01") && main.contains(CHIYODA), "{main}");
    assert!(main.contains("(02)"), "the library: {main}");
    assert!(!main.contains("子育て支援"), "a system he is not permitted: {main}");
    assert!(browser.text("header").await.contains("オペレータ: clerk01"));
    browser.screenshot("top").await;
    browser.assert_accessible("the top page").await;

    // 利用者検索 by the first kana of the name: his municipality's resident, not the namesake elsewhere.
    browser.click_link("利用者検索").await;
    browser.fill("kana_prefix", "ヤマ").await;
    browser.click_button("検索").await;
    browser.wait_for("table").await;
    assert_eq!(browser.text("p[role='status']").await, "1件");
    let row = browser.text("table tbody tr").await;
    assert!(row.contains("ヤマダ タロウ") && row.contains("千代田 太郎") && row.contains("昭和45年1月1日"), "{row}");
    assert!(!browser.text("main").await.contains("札幌"), "another municipality's resident");
    assert_eq!(browser.value("kana_prefix").await, "ヤマ", "what he searched for stays in the form");
    browser.screenshot("residents").await;
    browser.assert_accessible("the resident search").await;

    // Logging out ends the session: the top page leads to the login form again.
    browser.click_button("ログアウト").await;
    browser.wait_for("form[action='/ui/login']").await;
    browser.goto(&app.url("/ui/")).await;
    browser.wait_for("form[action='/ui/login']").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_shows_why_and_keeps_what_he_typed() {
    if !browser_available("a_wrong_password_shows_why_and_keeps_what_he_typed") {
        return;
    }
    let app = chiyoda_with_a_clerk_and_a_resident().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/login")).await;

    browser.log_in(CHIYODA, "clerk01", "nope").await;

    let error = browser.text("#login-error").await;
    assert!(error.contains("パスワードが正しくありません"), "{error}");
    assert!(browser.url().await.ends_with("/ui/login"), "{}", browser.url().await);
    assert_eq!(browser.value("municipality").await, CHIYODA, "the municipality stays chosen");
    assert_eq!(browser.value("operator_id").await, "clerk01", "the operator ID stays typed");
    assert_eq!(browser.value("password").await, "", "the password is never sent back");
    assert_eq!(browser.focused().await, "password", "the cursor waits in the password field");
    browser.assert_accessible("the login form with its error").await;

    // The right password from there logs him in.
    browser.fill("password", "ClerkPassw0rd").await;
    browser.click_button("ログイン").await;
    browser.wait_for("ul.systems").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_logs_in_and_searches_with_the_keyboard_only() {
    if !browser_available("a_clerk_logs_in_and_searches_with_the_keyboard_only") {
        return;
    }
    let app = chiyoda_with_a_clerk_and_a_resident().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/login")).await;
    browser.wait_for("form[action='/ui/login']").await;

    // The cursor starts in the operator ID; the municipality is one step back, chosen with the arrow key.
    assert_eq!(browser.focused().await, "operator_id");
    browser.shift_tab().await;
    assert_eq!(browser.focused().await, "municipality");
    browser.keyboard(&Key::Down.to_string()).await;
    assert_eq!(browser.value("municipality").await, CHIYODA, "the first municipality after （システム管理者）");
    browser.keyboard(&format!("{}clerk01{}", Key::Tab, Key::Tab)).await;
    assert_eq!(browser.focused().await, "password");
    browser.keyboard(&format!("ClerkPassw0rd{}", Key::Enter)).await;
    browser.wait_for("ul.systems").await;

    // From the top page to the search: past 本文へ移動 and トップ to the link, Enter; type the kana, Enter.
    browser.keyboard(&Key::Tab.to_string().repeat(3)).await;
    assert_eq!(browser.focused().await, "利用者検索", "the third stop: 本文へ移動, トップ, then 利用者検索");
    browser.keyboard(&Key::Enter.to_string()).await;
    browser.wait_for("form[action='/ui/residents']").await;
    // 本文へ移動 (the first stop of every page) skips the menu: the next stop is the form's first field (its id is
    // `f-` and its name, api/src/ui/form.rs).
    browser.keyboard(&Key::Tab.to_string()).await;
    assert_eq!(browser.focused().await, "本文へ移動");
    browser.keyboard(&format!("{}{}", Key::Enter, Key::Tab)).await;
    assert_eq!(browser.focused().await, "f-kana_prefix", "past the menu: the first field");
    browser.keyboard("ヤマ").await;
    browser.keyboard(&Key::Enter.to_string()).await;
    browser.wait_for("table").await;
    assert!(browser.text("table tbody tr").await.contains("千代田 太郎"));
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_policy_stops_a_planted_script_and_the_checker_still_runs() {
    if !browser_available("the_pages_policy_stops_a_planted_script_and_the_checker_still_runs") {
        return;
    }
    let app = spawn_app(Backend::Sqlite).await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/ui/login")).await;
    browser.wait_for("form[action='/ui/login']").await;

    // What injected markup would do: an inline script. It does not run (default-src 'none').
    let planted = r#"
        const done = arguments[arguments.length - 1];
        const inline = document.createElement('script');
        inline.textContent = 'window.cardapProbe = "inline ran";';
        document.body.appendChild(inline);
        setTimeout(() => done(window.cardapProbe || 'blocked'), 200);
    "#;
    let outcome = browser.client().execute_async(planted, vec![]).await.unwrap();
    assert_eq!(outcome, json!("blocked"), "an inline script ran despite the Content-Security-Policy");
    // axe-core, injected through WebDriver rather than by the page, runs under the same policy and answers.
    let violations = browser.accessibility().await;
    assert!(violations.is_empty(), "{violations:?}");
    browser.quit().await;
}
