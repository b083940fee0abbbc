//! The counter's work in a real browser (issue 14), in the source document's order: a clerk logs in, registers a
//! resident with the municipality's custom field (fixing the field the page names), registers his card, creates
//! the local area (its preset AP installed with it) and installs two more APs at once; a clerk of another
//! municipality never sees him; an operations manager imports a registry file and watches its progress, each
//! refused row named. axe-core finds no serious or critical violation on these screens, and their screenshots go
//! to `CARDAP_UI_SCREENSHOTS` when set (the README's pictures in `docs/` come from there).
//!
//! SQLite only (`ui.rs` runs the same screens over HTTP on both backends). Needs the browser: `scripts/test`
//! installs it and exports CARDAP_TEST_BROWSER=1; without it these tests say so and pass (and fail under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::browser::{Browser, browser_available};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::ui::{offering, school_district_settings};
use cardap_tests::{
    Backend, TestApp, operator_with_password, resident_body, resident_settings_path, residents_path, spawn_app,
};

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";

/// 千代田区 offering the library (02, the local area's preset) and two systems of its own (05, 06), with a
/// required custom field 学区; clerk01 permitted all three, and manager01, its operations manager. 札幌市 has a
/// resident ヤマダ ハナコ and its own clerk.
async fn two_municipalities() -> TestApp {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    offering(&app, &admin, CHIYODA, &[("05", "子育て支援"), ("06", "健康ポイント")]).await;
    app.permit(&admin, "02", SAPPORO).await;
    let reply = app.put(&resident_settings_path(CHIYODA), Some(&admin), &school_district_settings()).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    app.clerk_token(&admin, CHIYODA, "clerk01", &["02", "05", "06"]).await;
    app.clerk_token(&admin, SAPPORO, "clerk01", &["02"]).await;
    let manager = operator_with_password("manager01", "ClerkPassw0rd", &["operations_manager"], &[]);
    app.add_operators(&admin, CHIYODA, &manager).await;
    let mut hanako = resident_body("ヤマダ", "ハナコ", "3450101");
    hanako["kanji_name"] = json!({"family": "札幌", "given": "花子"});
    let reply = app.post(&residents_path(SAPPORO), Some(&admin), &hanako).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    app
}

async fn log_in(browser: &Browser, app: &TestApp, municipality: &str, operator_id: &str) {
    browser.goto(&app.url("/ui/login")).await;
    browser.log_in(municipality, operator_id, "ClerkPassw0rd").await;
    browser.wait_for("ul.systems, main p.muted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_registers_a_resident_and_sets_up_his_card() {
    if !browser_available("a_clerk_registers_a_resident_and_sets_up_his_card") {
        return;
    }
    let app = two_municipalities().await;
    let browser = Browser::start().await;
    log_in(&browser, &app, CHIYODA, "clerk01").await;

    // 利用者登録: hiragana where katakana is asked, and no 学区.
    browser.click_link("利用者登録").await;
    browser.wait_for("form[action='/ui/residents/new'][method='post']").await;
    browser.screenshot("register").await;
    browser.assert_accessible("the registration form").await;
    browser.fill("kana_name.family", "やまだ").await;
    browser.fill("kana_name.given", "ﾀﾛｳ").await;
    browser.fill("kanji_name.family", "山田").await;
    browser.fill("kanji_name.given", "太郎").await;
    browser.fill("birth_date", "3450101").await;
    browser.select("sex", "1").await;
    browser.fill("address1", "東京都千代田区千代田1-1").await;
    browser.click_button("登録").await;

    // Each problem next to its field; what he typed is still there.
    browser.wait_for(".error-summary").await;
    let kana = browser.text("#f-kana_name-family-note").await;
    assert!(kana.contains("カタカナ") || kana.contains("カナ"), "the kana field says why: {kana}");
    assert!(!browser.text("#f-custom_fields-school_district-note").await.is_empty(), "学区 is required");
    assert_eq!(browser.value("kanji_name.family").await, "山田");
    assert_eq!(browser.value("address1").await, "東京都千代田区千代田1-1");
    browser.screenshot("register-error").await;
    browser.assert_accessible("the registration form with its errors").await;

    // Fixed, in half-width kana (the API converts it), with 学区: registered, and his page says so.
    browser.fill("kana_name.family", "ﾔﾏﾀﾞ").await;
    browser.select("custom_fields.school_district", "第一").await;
    browser.click_button("登録").await;
    browser.wait_for_text("p.notice", "利用者を登録しました。").await;
    let facts = browser.text("table.facts").await;
    assert!(facts.contains("ヤマダ タロウ") && facts.contains("学区") && facts.contains("第一"), "{facts}");

    // カード登録, then the local area: the preset library AP is named before, installed with it.
    browser.fill("fid", "ui0000000001").await;
    browser.click_button("カード登録").await;
    browser.wait_for_text("p.notice", "カードを登録しました。").await;
    assert!(browser.text("main").await.contains("02 図書館"), "the preset is shown");
    browser.click_button("領域を作成").await;
    browser.wait_for_text("p.notice", "地域住民向け領域を作成しました。").await;

    // Two APs at once.
    browser.click("ap-05").await;
    browser.click("ap-06").await;
    browser.click_button("選んだカードAPを搭載").await;
    browser.wait_for_text("p.notice", "カードAPを搭載しました。").await;
    let installed = browser.texts("section table tbody tr td:first-child").await;
    assert_eq!(installed, ["02", "05", "06"], "the card's APs");
    browser.screenshot("card").await;
    browser.assert_accessible("the resident's card").await;

    // His municipality's search finds him, and not 札幌市's ヤマダ.
    browser.goto(&app.url("/ui/residents?kana_prefix=%E3%83%A4%E3%83%9E%E3%83%80")).await;
    browser.wait_for("table").await;
    let main = browser.text("main").await;
    assert!(main.contains("山田 太郎") && !main.contains("札幌"), "{main}");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clerk_of_another_municipality_never_sees_him() {
    if !browser_available("a_clerk_of_another_municipality_never_sees_him") {
        return;
    }
    let app = two_municipalities().await;
    let admin = app.admin_token().await;
    let mut taro = resident_body("ヤマダ", "タロウ", "3450101");
    taro["custom_fields"] = json!({"school_district": "第一"});
    let reply = app.post(&residents_path(CHIYODA), Some(&admin), &taro).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let chiyoda_resident = reply.json()["resident_id"].as_str().unwrap().to_owned();

    let browser = Browser::start().await;
    log_in(&browser, &app, SAPPORO, "clerk01").await;
    browser.goto(&app.url("/ui/residents?kana_prefix=%E3%83%A4%E3%83%9E%E3%83%80")).await;
    browser.wait_for("table").await;
    let main = browser.text("main").await;
    assert!(main.contains("札幌 花子") && !main.contains("タロウ"), "only 札幌市's resident: {main}");
    // 千代田区's resident by his address: not found, as if he did not exist.
    browser.goto(&app.url(&format!("/ui/residents/{chiyoda_resident}"))).await;
    assert_eq!(browser.text("main h2").await, "見つかりません");
    assert!(!browser.text("main").await.contains("タロウ"));
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_imports_a_registry_file_and_watches_the_progress() {
    if !browser_available("a_manager_imports_a_registry_file_and_watches_the_progress") {
        return;
    }
    let app = two_municipalities().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("juki.csv");
    let mut file = String::from("宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n");
    for i in 0..5000 {
        let birth = if i == 3000 { "3451399" } else { "3450101" };
        file.push_str(&format!(
            "{:09},山田 太郎{i},ヤマダ タロウ,{birth},1,100-0001,東京都千代田区千代田1-{i}\r\n",
            i + 1
        ));
    }
    std::fs::write(&path, file).unwrap();

    let browser = Browser::start().await;
    log_in(&browser, &app, CHIYODA, "manager01").await;
    browser.click_link("住基データ取込").await;
    browser.wait_for("input[type='file']").await;
    browser.assert_accessible("the registry import form").await;
    browser.upload("file", &path).await;
    browser.click_button("取込開始").await;

    // The bar moves as batches are imported (one progress line each), then the summary.
    browser.wait_for("table.summary").await;
    let steps = browser.texts(".rows-done").await;
    assert_eq!(steps, ["0", "1000", "2000", "3000", "4000", "5000", "5000"], "a line per batch, then done");
    let visible = browser.text(".import-log").await;
    assert!(visible.contains("完了") && !visible.contains("取込中"), "only the last bar is drawn: {visible}");
    assert!(browser.text(".row-error").await.contains("3002行目"), "the bad row is named");
    assert!(browser.text("table.summary").await.contains("4999"), "imported");
    browser.screenshot("registry-import").await;
    browser.assert_accessible("the registry import's report").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_imports_an_operator_csv_and_sees_the_bad_row_named() {
    if !browser_available("a_manager_imports_an_operator_csv_and_sees_the_bad_row_named") {
        return;
    }
    let app = two_municipalities().await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("operators.csv");
    // Row 3 (counting the header) has a full-width telephone number.
    std::fs::write(
        &bad,
        "オペレータID,氏名・組織名,連絡先電話\r\nCSV01,取込 太郎,03-1111-2222\r\nCSV02,取込 花子,０３-１１１１-２２２２\r\n",
    )
    .unwrap();

    let browser = Browser::start().await;
    log_in(&browser, &app, CHIYODA, "manager01").await;
    browser.click_link("オペレータ").await;
    browser.wait_for("main table, main p").await;
    browser.screenshot("operators").await;
    browser.assert_accessible("the operator list").await;
    browser.goto(&app.url("/ui/operators/import")).await;
    browser.upload("file", &bad).await;
    browser.click_button("取り込む").await;

    // The job page follows the import and then names the bad row and its column; nobody was registered.
    browser.wait_for("div.error-summary").await;
    let rows = browser.texts("main table tbody tr").await;
    assert_eq!(rows.len(), 1, "one bad row: {rows:?}");
    assert!(rows[0].starts_with('3') && rows[0].contains("連絡先電話"), "row 3, its column: {rows:?}");
    assert!(browser.text("div.error-summary").await.contains("1人も登録していません"));
    browser.screenshot("operator-import-error").await;
    browser.assert_accessible("the operator import's report").await;
    let admin = app.admin_token().await;
    let reply = app.get(&format!("/api/v1/municipalities/{CHIYODA}/operators/CSV01"), Some(&admin)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "all or nothing");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_replays_what_a_clerk_did_and_read() {
    if !browser_available("an_auditor_replays_what_a_clerk_did_and_read") {
        return;
    }
    let app = two_municipalities().await;
    let admin = app.admin_token().await;
    let auditor = operator_with_password("auditor01", "ClerkPassw0rd", &["auditor"], &[]);
    app.add_operators(&admin, CHIYODA, &auditor).await;
    // clerk01 registers a resident and searches for him.
    let clerk = app.login(Some(CHIYODA), "clerk01", "ClerkPassw0rd").await;
    let mut taro = resident_body("ヤマダ", "タロウ", "3450101");
    taro["custom_fields"] = json!({"school_district": "第一"});
    let reply = app.post(&residents_path(CHIYODA), Some(&clerk), &taro).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let resident = reply.json()["resident_id"].as_str().unwrap().to_owned();
    let found = app.get(&format!("{}?kana_prefix=%E3%83%A4%E3%83%9E", residents_path(CHIYODA)), Some(&clerk)).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);

    let browser = Browser::start().await;
    log_in(&browser, &app, CHIYODA, "auditor01").await;
    browser.click_link("監査").await;
    browser.wait_for("form[action='/ui/audit']").await;
    browser.fill("operator_id", "clerk01").await;
    browser.click_button("表示").await;
    browser.wait_for("table.audit").await;
    let rows = browser.texts("table.audit tbody tr").await;
    assert!(rows.iter().any(|r| r.contains("ResidentRegistered") && r.contains("clerk01")), "{rows:?}");
    assert!(rows.iter().all(|r| r.contains("clerk01")), "only his: {rows:?}");
    browser.screenshot("audit").await;
    browser.assert_accessible("the operator history").await;

    // The read access log: his search, with the resident it returned.
    browser.select("log", "access").await;
    browser.click_button("表示").await;
    browser.wait_for_text("#log-title", "参照記録").await;
    let reads = browser.texts("table.audit tbody tr").await;
    assert!(reads.iter().any(|r| r.contains("clerk01") && r.contains(&resident)), "{reads:?}");
    browser.assert_accessible("the read access log").await;

    // A period that is no date is named next to its field.
    browser.fill("from", "12月1日").await;
    browser.click_button("表示").await;
    browser.wait_for(".error-summary").await;
    assert!(browser.text("#f-from-note").await.contains("年-月-日"));
    browser.quit().await;
}
