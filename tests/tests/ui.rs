//! The clerk web UI's first screens over HTTP (issue 14): `/` leads to the login form; the form logs a clerk in
//! with the same rules as the API and keeps the session in an `HttpOnly`, `SameSite=Strict` cookie; the top page
//! lists the business systems he may use now; logging out needs the page's CSRF token; every page carries a strict
//! Content-Security-Policy and no inline script or style. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{StatusCode, header};
use cardap_tests::serde_json::json;
use cardap_tests::ui::{
    Page, assert_problem_at, assert_strict, csrf, get, hidden, keys, link, location, logged_in, offering, post,
    post_at, post_from, post_multipart, school_district_settings, set_cookie, urlencode,
};
use cardap_tests::{
    Backend, TestApp, on_both_backends, operator_with_password, resident_body, residents_path, spawn_app,
};

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";

/// 千代田区, permitted to use the library (02); a clerk permitted 02.
async fn chiyoda_with_a_clerk(app: &TestApp) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    offering(app, &admin, CHIYODA, &[("05", "子育て支援")]).await;
    app.clerk_token(&admin, CHIYODA, "clerk01", &["02"]).await;
}

async fn the_root_leads_to_the_login_form(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;

    let root = get(&app, "/", "").await;
    assert_eq!((root.status, location(&root)), (StatusCode::SEE_OTHER, "/ui/"));
    let ui = get(&app, "/ui/", "").await;
    assert_eq!((ui.status, location(&ui)), (StatusCode::SEE_OTHER, "/ui/login"), "no session: the login form");
    let form = get(&app, "/ui/login", "").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_strict(&form);
    assert!(form.text.contains(r#"<html lang="ja">"#));
    assert!(form.text.contains("千代田区 (131016)"), "the municipality to choose: {}", form.text);
    for label in ["市町村", "オペレータID", "パスワード"] {
        assert!(form.text.contains(&format!(">{label}</label>")), "{label} has its label");
    }
    let css = get(&app, "/ui/assets/app.css", "").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers.get(header::CONTENT_TYPE).unwrap(), "text/css; charset=utf-8");
}

async fn a_clerk_logs_in_sees_his_systems_and_logs_out(backend: Backend) {
    let app = spawn_app(backend).await;
    chiyoda_with_a_clerk(&app).await;

    // A wrong password: the form again, with the reason and what he typed (never the password), and no cookie.
    let refused =
        post(&app, "/ui/login", "", &[("municipality", CHIYODA), ("operator_id", "clerk01"), ("password", "nope")])
            .await;
    assert_eq!(refused.status, StatusCode::OK);
    assert!(refused.text.contains("パスワードが正しくありません"), "{}", refused.text);
    assert!(refused.text.contains(r#"value="clerk01""#) && !refused.text.contains("nope"), "{}", refused.text);
    assert!(refused.text.contains(r#"<option value="131016" selected>"#), "{}", refused.text);
    assert!(set_cookie(&refused).is_none());

    // The right one: a session cookie the page's scripts cannot read and no other site's request carries.
    let login = post(
        &app,
        "/ui/login",
        "",
        &[("municipality", CHIYODA), ("operator_id", "clerk01"), ("password", "ClerkPassw0rd")],
    )
    .await;
    assert_eq!((login.status, location(&login)), (StatusCode::SEE_OTHER, "/ui/"));
    let cookie = set_cookie(&login).expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let token = pair.split_once('=').unwrap().1.to_owned();

    // The top page: him, and the systems he may use now (02, which he is permitted; not 05).
    let top = get(&app, "/ui/", &pair).await;
    assert_eq!(top.status, StatusCode::OK, "{}", top.text);
    assert_strict(&top);
    assert!(top.text.contains("clerk01") && top.text.contains("131016"), "{}", top.text);
    assert!(top.text.contains("(02)"), "the library: {}", top.text);
    assert!(!top.text.contains("子育て支援"), "a system he is not permitted: {}", top.text);
    assert!(!top.text.contains(&token), "the session token is never in a page");

    // Logging out needs the page's CSRF token, from this site.
    let forged = post(&app, "/ui/logout", &pair, &[("csrf", "guessed")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let elsewhere = post_from(&app, "/ui/logout", &pair, &[("csrf", &csrf(&top))], "https://evil.example").await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    assert_eq!(get(&app, "/ui/", &pair).await.status, StatusCode::OK, "still logged in");

    let out = post(&app, "/ui/logout", &pair, &[("csrf", &csrf(&top))]).await;
    assert_eq!((out.status, location(&out)), (StatusCode::SEE_OTHER, "/ui/login"));
    assert!(set_cookie(&out).unwrap().contains("Max-Age=0"), "the cookie is cleared");
    let after = get(&app, "/ui/", &pair).await;
    assert_eq!((after.status, location(&after)), (StatusCode::SEE_OTHER, "/ui/login"));
    let api = app.get("/api/v1/me", Some(&token)).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED, "the session itself ended: {}", api.text);
}

async fn a_login_posted_from_another_site_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    chiyoda_with_a_clerk(&app).await;
    let form = [("municipality", CHIYODA), ("operator_id", "clerk01"), ("password", "ClerkPassw0rd")];
    let refused = post_from(&app, "/ui/login", "", &form, "https://evil.example").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(set_cookie(&refused).is_none());
    let same = post_from(&app, "/ui/login", "", &form, app.url("").trim_end_matches('/')).await;
    assert_eq!(same.status, StatusCode::SEE_OTHER, "from the UI itself: {}", same.text);
}

/// Logs `operator_id` of 千代田区 in through the form; returns the cookie pair.
async fn logged_in_as(app: &TestApp, operator_id: &str) -> String {
    logged_in(app, CHIYODA, operator_id, "ClerkPassw0rd").await
}

async fn a_clerk_searches_his_own_residents_only(backend: Backend) {
    let app = spawn_app(backend).await;
    chiyoda_with_a_clerk(&app).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    for (code, kanji) in [(CHIYODA, "千代田"), (SAPPORO, "札幌")] {
        let mut body = resident_body("ヤマダ", "タロウ", "3450101");
        body["kanji_name"] = json!({"family": kanji, "given": "太郎"});
        let reply = app.post(&residents_path(code), Some(&admin), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    let cookie = logged_in_as(&app, "clerk01").await;

    let empty = get(&app, "/ui/residents", &cookie).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_strict(&empty);
    assert!(!empty.text.contains("<table"), "nothing listed before a search");

    let found = get(&app, &format!("/ui/residents?kana_prefix={}", urlencode("ヤマ")), &cookie).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text);
    assert!(found.text.contains("千代田 太郎") && found.text.contains("昭和45年1月1日"), "{}", found.text);
    assert!(!found.text.contains("札幌"), "another municipality's resident: {}", found.text);
    assert!(found.text.contains("1件"), "{}", found.text);

    // A birth date that is no date: the message next to the field, what he typed kept, no search.
    let typo = get(&app, &format!("/ui/residents?kana_prefix={}&birth_date=3451399", urlencode("ヤマ")), &cookie).await;
    assert_eq!(typo.status, StatusCode::OK);
    assert!(typo.text.contains(r#"class="field-error" id="f-birth_date-note""#), "{}", typo.text);
    assert!(typo.text.contains(r#"value="3451399""#) && typo.text.contains(r#"value="ヤマ""#), "{}", typo.text);
    assert!(!typo.text.contains("<table"), "no search with a bad field");
}

/// 千代田区 offering the library (02, a preset of the local area) and two systems of its own (05, 06), with a
/// custom field 学区 that is required; a clerk permitted all three.
async fn chiyoda_with_settings(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    offering(app, &admin, CHIYODA, &[("05", "子育て支援"), ("06", "健康ポイント")]).await;
    let settings = school_district_settings();
    let reply = app.put(&cardap_tests::resident_settings_path(CHIYODA), Some(&admin), &settings).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    app.clerk_token(&admin, CHIYODA, "clerk01", &["02", "05", "06"]).await;
    admin
}

async fn a_clerk_registers_a_resident_and_sets_up_his_card(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_settings(&app).await;
    let cookie = logged_in_as(&app, "clerk01").await;

    let form = get(&app, "/ui/residents/new", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert_strict(&form);
    assert!(form.text.contains(r#"<label for="f-custom_fields-school_district">学区"#), "{}", form.text);
    let key = hidden(&form, "idempotency_key");
    let csrf = csrf(&form);

    // Hiragana where kana is asked, and no 学区: both named next to their fields, what was typed kept.
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("kana_name.family", "やまだ"),
        ("kana_name.given", "ﾀﾛｳ"),
        ("kanji_name.family", "山田"),
        ("kanji_name.given", "太郎"),
        ("birth_date", "3450101"),
        ("sex", "1"),
        ("address1", "東京都千代田区千代田1-1"),
    ];
    let refused = post(&app, "/ui/residents/new", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert!(refused.text.contains(r#"class="field-error" id="f-kana_name-family-note""#), "{}", refused.text);
    assert!(
        refused.text.contains(r#"class="field-error" id="f-custom_fields-school_district-note""#),
        "{}",
        refused.text
    );
    assert!(refused.text.contains(r#"value="やまだ""#) && refused.text.contains("東京都千代田区千代田1-1"));
    assert_eq!(hidden(&refused, "idempotency_key"), key, "the same form keeps its key");

    // Fixed (half-width kana accepted, as the API converts it); a double click registers one resident.
    fields[2] = ("kana_name.family", "ﾔﾏﾀﾞ");
    fields.push(("custom_fields.school_district", "第一"));
    let first = post(&app, "/ui/residents/new", &cookie, &fields).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.text);
    let second = post(&app, "/ui/residents/new", &cookie, &fields).await;
    assert_eq!(location(&second), location(&first), "the same resident");
    let found = app.get(&format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA)), Some(&admin)).await;
    assert_eq!(found.json()["items"].as_array().unwrap().len(), 1, "registered once: {}", found.text);

    let resident_url = location(&first).split('?').next().unwrap().to_owned();
    let shown = get(&app, location(&first), &cookie).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert!(shown.text.contains("利用者を登録しました") && shown.text.contains("ヤマダ タロウ"), "{}", shown.text);
    assert!(shown.text.contains(r#"<th scope="row">学区</th><td>第一</td>"#), "the custom field: {}", shown.text);

    // カード登録 → 地域住民向け領域 (the preset 02 shown, installed with it) → two APs at once.
    let card = [("csrf", csrf.as_str()), ("idempotency_key", "k-card"), ("fid", "ui0000000001")];
    let registered = post(&app, &format!("{resident_url}/card"), &cookie, &card).await;
    assert_eq!(registered.status, StatusCode::SEE_OTHER, "{}", registered.text);
    let page = get(&app, location(&registered), &cookie).await;
    assert!(page.text.contains("カードを登録しました") && page.text.contains("UI0000000001"), "{}", page.text);
    assert!(page.text.contains("02 図書館"), "the preset is shown: {}", page.text);

    let area = [("csrf", csrf.as_str()), ("idempotency_key", "k-area")];
    let created = post(&app, "/ui/cards/UI0000000001/local-area", &cookie, &area).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let page = get(&app, location(&created), &cookie).await;
    assert!(page.text.contains("地域住民向け領域を作成しました"), "{}", page.text);
    assert!(page.text.contains(r#"id="ap-05""#) && page.text.contains(r#"id="ap-06""#), "{}", page.text);

    let aps = [("csrf", csrf.as_str()), ("idempotency_key", "k-aps"), ("business_ids", "05"), ("business_ids", "06")];
    let installed = post(&app, "/ui/cards/UI0000000001/aps", &cookie, &aps).await;
    assert_eq!(installed.status, StatusCode::SEE_OTHER, "{}", installed.text);
    let card = app.get(&format!("/api/v1/municipalities/{CHIYODA}/cards/UI0000000001"), Some(&admin)).await;
    let card = card.json();
    let ids: Vec<&str> = card["aps"].as_array().unwrap().iter().map(|a| a["business_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["02", "05", "06"], "{card}");

    // Suspend, confirmed, at the version shown; a stale page is told someone else changed the card.
    let page = get(&app, &resident_url, &cookie).await;
    let at = page.text.find("/confirm/suspend?version=").unwrap() + "/confirm/suspend?version=".len();
    let version: String = page.text[at..].chars().take_while(char::is_ascii_digit).collect();
    let confirm = get(&app, &format!("/ui/cards/UI0000000001/confirm/suspend?version={version}"), &cookie).await;
    assert!(confirm.text.contains("カードの一時停止を実行"), "{}", confirm.text);
    let suspend = [("csrf", csrf.as_str()), ("idempotency_key", "k-s"), ("version", version.as_str())];
    let done = post(&app, "/ui/cards/UI0000000001/suspend", &cookie, &suspend).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let stale = [("csrf", csrf.as_str()), ("idempotency_key", "k-a"), ("version", version.as_str())];
    let refused = post(&app, "/ui/cards/UI0000000001/abolish", &cookie, &stale).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED, "{}", refused.text);
    assert!(refused.text.contains("ほかの人がこのデータを変更しました"), "{}", refused.text);
    assert!(refused.text.contains("一時停止中"), "the card as it is now: {}", refused.text);

    // Another municipality's resident or card is not found, as in the API.
    let other = get(&app, "/ui/residents/00000000-0000-0000-0000-000000000000", &cookie).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
}

/// Uploads a registry file (UTF-8) through the import form, with the CSRF token `csrf`.
async fn import(app: &TestApp, cookie: &str, csrf: &str, file: &[u8]) -> Page {
    let fields = [("csrf", csrf), ("charset", "UTF-8")];
    post_multipart(app, "/ui/registry/import", cookie, &fields, Some(("juki.csv", file))).await
}

async fn a_manager_imports_a_registry_file_and_watches_its_progress(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let manager = cardap_tests::operator_with_password("manager01", "ClerkPassw0rd", &["operations_manager"], &[]);
    app.add_operators(&admin, CHIYODA, &manager).await;
    let cookie = logged_in_as(&app, "manager01").await;

    let form = get(&app, "/ui/registry/import", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains(r#"enctype="multipart/form-data""#), "{}", form.text);

    // 2,500 rows, the 1,202nd of which (row 1,203 counting the header) has no date.
    let mut file = String::from("宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n");
    for i in 0..2500 {
        let birth = if i == 1201 { "" } else { "3450101" };
        file.push_str(&format!(
            "{:09},山田 太郎{i},ヤマダ タロウ,{birth},1,100-0001,東京都千代田区千代田1-{i}\r\n",
            i + 1
        ));
    }
    let reply = import(&app, &cookie, &csrf(&form), file.as_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.text;
    // A progress line after every batch of 1,000 rows, then the summary; the refused row named.
    let done: Vec<&str> =
        text.split(r#"<strong class="rows-done">"#).skip(1).map(|s| s.split('<').next().unwrap()).collect();
    assert_eq!(done, ["0", "1000", "2000", "2500", "2500"], "{text}");
    assert!(text.contains("<strong>1203行目</strong>（宛名番号 000001202）"), "{text}");
    assert!(text.contains(r#"<th scope="row">新規</th><td>2499</td>"#), "{text}");
    assert!(text.contains(r#"<th scope="row">エラー</th><td>1</td>"#), "{text}");
    assert!(text.ends_with("</html>"), "the page is whole: {text}");

    // Without the page's CSRF token nothing is read.
    let forged = import(&app, &cookie, "forged", file.as_bytes()).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // A file without the required columns: the API's reason, on the form.
    let bad = import(&app, &cookie, &csrf(&form), "氏名,性別\r\nx,1\r\n".as_bytes()).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = bad.text;
    assert!(bad.contains("error-summary") && bad.contains("宛名番号"), "{bad}");
}

/// 利用者情報の変更: the form holds his data as it is; a bad field is named next to it; a blank field is cleared; a
/// page shown before someone else's change is told so and shows the data of now, never overwriting it.
async fn a_clerk_changes_a_resident_and_a_stale_page_is_told(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_settings(&app).await;
    let mut body = resident_body("ヤマダ", "タロウ", "3450101");
    body["phone"] = json!("03-1234-5678");
    body["custom_fields"] = json!({"school_district": "第一"});
    let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
    let cookie = logged_in_as(&app, "clerk01").await;

    let shown = get(&app, &format!("/ui/residents/{id}"), &cookie).await;
    let edit_path = link(&shown, "利用者情報の変更");
    let form = get(&app, &edit_path, &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert_strict(&form);
    assert!(form.text.contains(r#"value="03-1234-5678""#), "his phone: {}", form.text);
    let version = hidden(&form, "version");
    let (csrf, key) = keys(&form);
    let mut fields = vec![
        ("csrf", csrf.clone()),
        ("idempotency_key", key),
        ("version", version.clone()),
        ("kana_name.family", "やまだ".to_owned()),
        ("kana_name.given", "タロウ".to_owned()),
        ("kanji_name.family", "山田".to_owned()),
        ("kanji_name.given", "太郎".to_owned()),
        ("birth_date", "3450101".to_owned()),
        ("sex", "1".to_owned()),
        ("address1", "東京都千代田区丸の内1-1".to_owned()),
        ("phone", String::new()),
        ("custom_fields.school_district", "第二".to_owned()),
    ];
    let refused = post(&app, &edit_path, &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert_problem_at(&refused, "f-kana_name-family");
    assert!(refused.text.contains("東京都千代田区丸の内1-1"), "what he typed is kept");

    fields[3].1 = "ヤマダ".to_owned();
    let changed = post(&app, &edit_path, &cookie, &fields).await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    let page = get(&app, location(&changed), &cookie).await;
    assert!(page.text.contains("利用者情報を変更しました"), "{}", page.text);
    let now = app.get(&format!("{}/{id}", residents_path(CHIYODA)), Some(&admin)).await.json();
    assert_eq!(now["address1"], "東京都千代田区丸の内１－１", "{now}");
    assert_eq!(now["phone"], serde_json::Value::Null, "a blank field is cleared: {now}");
    assert_eq!(now["custom_fields"]["school_district"], "第二");

    // The same page sent again with another change: someone changed him since it was shown.
    fields[1].1 = "k-second".to_owned();
    fields[9].1 = "東京都千代田区大手町1-1".to_owned();
    let stale = post(&app, &edit_path, &cookie, &fields).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    assert!(stale.text.contains("ほかの人がこのデータを変更しました"), "{}", stale.text);
    assert!(stale.text.contains("丸の内") && !stale.text.contains("大手町"), "the data of now: {}", stale.text);
    let after = app.get(&format!("{}/{id}", residents_path(CHIYODA)), Some(&admin)).await.json();
    assert_eq!(after["address1"], now["address1"], "nothing overwritten");
}

/// 利用者登録 prefilled from the registry: by 宛名番号, and by the four facts of a card (one entry fills the
/// form, namesakes are offered to choose from, an unknown key is named next to its field).
async fn the_registration_form_is_prefilled_from_the_registry(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_settings(&app).await;
    let file = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n\
                000000001,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n\
                000000002,鈴木 花子,スズキ ハナコ,3640107,2,100-0001,東京都千代田区千代田２－２\r\n\
                000000003,鈴木 花子,スズキ ハナコ,3640107,2,100-0005,東京都千代田区丸の内１\r\n";
    let path = format!("/api/v1/municipalities/{CHIYODA}/registry/import");
    let reply = app.post_bytes(&path, Some(&admin), "text/csv; charset=UTF-8", file.as_bytes().to_vec()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let cookie = logged_in_as(&app, "clerk01").await;

    let by_key = get(&app, "/ui/residents/new?by=key&registry_key=000000001", &cookie).await;
    assert_eq!(by_key.status, StatusCode::OK, "{}", by_key.text);
    assert!(by_key.text.contains("住基データを読み込みました"), "{}", by_key.text);
    for value in ["ヤマダ", "タロウ", "山田", "太郎", "3640107", "100-0001"] {
        assert!(by_key.text.contains(&format!(r#"value="{value}""#)), "{value} filled in: {}", by_key.text);
    }
    assert_eq!(hidden(&by_key, "registry_key"), "000000001", "the registration links the entry");

    let unknown = get(&app, "/ui/residents/new?by=key&registry_key=000000099", &cookie).await;
    assert_problem_at(&unknown, "f-registry_key");

    let facts = |name: &str| {
        format!(
            "/ui/residents/new?by=facts&lookup.name={}&lookup.birth_date=19890107&lookup.sex=2&lookup.address=",
            urlencode(name)
        )
    };
    let namesakes = get(&app, &facts("鈴木花子"), &cookie).await;
    assert!(namesakes.text.contains("該当する住基データが2件あります"), "{}", namesakes.text);
    let chosen =
        get(&app, &link(&namesakes, "鈴木 花子（スズキ ハナコ） 昭和64年1月7日 （宛名番号 000000003）"), &cookie).await;
    assert!(chosen.text.contains(r#"value="000000003""#) && chosen.text.contains("丸の内"), "{}", chosen.text);
    let nobody = get(&app, &facts("佐藤一郎"), &cookie).await;
    assert!(nobody.text.contains("4情報に該当する住基データはありません"), "{}", nobody.text);
}

/// What a screen appends names the counter terminal its page came from, as a call of the API would: the auditor
/// sees 窓口3番 on the registration.
async fn a_screens_change_names_its_terminal_in_the_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_settings(&app).await;
    let cookie = logged_in_as(&app, "clerk01").await;
    let form = get(&app, "/ui/residents/new", &cookie).await;
    let (csrf, key) = keys(&form);
    let fields = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("kana_name.family", "ヤマダ"),
        ("kana_name.given", "タロウ"),
        ("kanji_name.family", "山田"),
        ("kanji_name.given", "太郎"),
        ("birth_date", "3450101"),
        ("sex", "1"),
        ("custom_fields.school_district", "第一"),
    ];
    let registered = post_at(&app, "/ui/residents/new", &cookie, &fields, "窓口3番").await;
    assert_eq!(registered.status, StatusCode::SEE_OTHER, "{}", registered.text);
    let history =
        app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}&operator_id=clerk01"), Some(&admin)).await;
    let lines = history.ndjson();
    let registration = lines.iter().find(|l| l["type"] == "ResidentRegistered").expect("the registration");
    assert_eq!(registration["terminal"], "窓口3番", "{registration}");
}

/// 転出 from the resident's page: refused while his card is active (said on the confirmation), done once it is
/// abolished. 消去 (`/ui/erasure`): the operations manager's, by 利用者ID; a missing reason or reference is said at
/// its field, a retention erasure before the period has passed and an id of nobody here are refused; once done,
/// nothing of him is left to open or find.
async fn a_resident_moves_out_and_the_manager_erases_him(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_settings(&app).await;
    let manager = operator_with_password("manager01", "ClerkPassw0rd", &["operations_manager"], &[]);
    app.add_operators(&admin, CHIYODA, &manager).await;
    let mut body = resident_body("ヤマダ", "タロウ", "3450101");
    body["custom_fields"] = json!({"school_district": "第一"});
    let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
    let resident_url = format!("/ui/residents/{id}");
    let clerk = logged_in_as(&app, "clerk01").await;
    let shown = get(&app, &resident_url, &clerk).await;
    let (csrf, _) = keys(&shown);
    let card = [("csrf", csrf.as_str()), ("idempotency_key", "k-card"), ("fid", "ui0000000002")];
    assert_eq!(post(&app, &format!("{resident_url}/card"), &clerk, &card).await.status, StatusCode::SEE_OTHER);

    // The clerk: 転出 is offered, 消去 is not (nor done when posted).
    let shown = get(&app, &resident_url, &clerk).await;
    assert!(shown.text.contains("転出・消去") && !shown.text.contains("個人情報を消去する"), "{}", shown.text);
    let confirm = get(&app, &link(&shown, "転出を登録する…"), &clerk).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert_strict(&confirm);
    assert!(confirm.text.contains("ヤマダ") || confirm.text.contains("山田"), "who: {}", confirm.text);
    let version = hidden(&confirm, "version");
    let move_out = [("csrf", csrf.as_str()), ("idempotency_key", "k-mo"), ("version", version.as_str())];
    let refused = post(&app, &format!("{resident_url}/move-out"), &clerk, &move_out).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "his card is still active: {}", refused.text);
    assert!(refused.text.contains("error-summary") && refused.text.contains("転出を登録"), "{}", refused.text);
    let clerk_erase = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", "k-ce"),
        ("resident_id", id.as_str()),
        ("reason", "request"),
        ("reference", "R8-1"),
    ];
    let forbidden = post(&app, "/ui/erasure", &clerk, &clerk_erase).await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN, "{}", forbidden.text);

    // His card abolished, 転出 goes through; his page says so and offers it no more.
    let page = get(&app, &resident_url, &clerk).await;
    let at = page.text.find("/confirm/abolish?version=").unwrap() + "/confirm/abolish?version=".len();
    let card_version: String = page.text[at..].chars().take_while(char::is_ascii_digit).collect();
    let abolish = [("csrf", csrf.as_str()), ("idempotency_key", "k-ab"), ("version", card_version.as_str())];
    assert_eq!(post(&app, "/ui/cards/UI0000000002/abolish", &clerk, &abolish).await.status, StatusCode::SEE_OTHER);
    let version = hidden(&get(&app, &format!("{resident_url}/move-out"), &clerk).await, "version");
    let move_out = [("csrf", csrf.as_str()), ("idempotency_key", "k-mo2"), ("version", version.as_str())];
    let moved = post(&app, &format!("{resident_url}/move-out"), &clerk, &move_out).await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.text);
    let page = get(&app, location(&moved), &clerk).await;
    assert!(page.text.contains("転出を登録しました") && page.text.contains("転出済み"), "{}", page.text);
    assert!(!page.text.contains("転出を登録する…"), "{}", page.text);

    // The manager (who may erase, not look residents up): 消去 in his menu, the resident named by his 利用者ID.
    // No reason, a request without its reference, a retention erasure too early, an id of nobody here: refused.
    let clerk_form = get(&app, &format!("/ui/erasure?resident_id={id}"), &clerk).await;
    assert_eq!(clerk_form.status, StatusCode::FORBIDDEN, "not the clerk's: {}", clerk_form.text);
    let cookie = logged_in_as(&app, "manager01").await;
    let top = get(&app, "/ui/", &cookie).await;
    assert!(link(&top, "個人情報の消去") == "/ui/erasure", "{}", top.text);
    let form = get(&app, &format!("/ui/erasure?resident_id={id}"), &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert_strict(&form);
    assert!(form.text.contains(&format!(r#"value="{id}""#)), "the id filled in: {}", form.text);
    let (csrf, _) = keys(&form);
    let erase = "/ui/erasure";
    let with = |key: &'static str, reason: &'static str, reference: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("idempotency_key", key.to_owned()),
            ("resident_id", id.clone()),
            ("reason", reason.to_owned()),
            ("reference", reference.to_owned()),
        ]
    };
    let mut none = with("k-e0", "", "");
    none.retain(|(k, _)| *k != "reason");
    let none = post(&app, erase, &cookie, &none).await;
    assert_eq!(none.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", none.text);
    assert!(none.text.contains(r#"class="field-error" id="f-reason-note""#), "at the reason: {}", none.text);
    let unreferenced = post(&app, erase, &cookie, &with("k-e1", "request", "")).await;
    assert_eq!(unreferenced.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unreferenced.text);
    assert_problem_at(&unreferenced, "f-reference");
    assert!(unreferenced.text.contains(r#"value="request" checked"#), "the reason stays: {}", unreferenced.text);
    let too_early = post(&app, erase, &cookie, &with("k-e2", "retention_expired", "")).await;
    assert_eq!(too_early.status, StatusCode::CONFLICT, "{}", too_early.text);
    assert!(too_early.text.contains("error-summary"), "{}", too_early.text);
    let mut nobody = with("k-e4", "request", "R8-SOMU-0123");
    nobody[2].1 = "00000000-0000-0000-0000-000000000000".to_owned();
    let nobody = post(&app, erase, &cookie, &nobody).await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND, "{}", nobody.text);
    assert_problem_at(&nobody, "f-resident_id");
    let still = app.get(&format!("{}/{id}", residents_path(CHIYODA)), Some(&admin)).await;
    assert_eq!(still.json()["kana_name"]["family"], "ヤマダ", "nothing erased yet: {}", still.text);

    // A documented request: erased; the form says so, and he is gone from the API and the search.
    let erased = post(&app, erase, &cookie, &with("k-e3", "request", "R8-SOMU-0123")).await;
    assert_eq!(
        (erased.status, location(&erased)),
        (StatusCode::SEE_OTHER, "/ui/erasure?done=erased"),
        "{}",
        erased.text
    );
    let done = get(&app, location(&erased), &cookie).await;
    assert!(done.text.contains("利用者の個人情報を消去しました"), "{}", done.text);
    let gone = app.get(&format!("{}/{id}", residents_path(CHIYODA)), Some(&admin)).await;
    assert_eq!(gone.status, StatusCode::GONE, "{}", gone.text);
    let found = app.get(&format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA)), Some(&admin)).await;
    assert_eq!(found.json()["items"], json!([]), "{}", found.text);
    let page = get(&app, &resident_url, &clerk).await;
    assert!(!page.text.contains("ヤマダ"), "nothing of him on his page: {}", page.text);
}

on_both_backends!(
    a_resident_moves_out_and_the_manager_erases_him,
    a_screens_change_names_its_terminal_in_the_history,
    the_registration_form_is_prefilled_from_the_registry,
    a_clerk_changes_a_resident_and_a_stale_page_is_told,
    a_manager_imports_a_registry_file_and_watches_its_progress,
    a_clerk_registers_a_resident_and_sets_up_his_card,
    a_clerk_searches_his_own_residents_only,
    the_root_leads_to_the_login_form,
    a_clerk_logs_in_sees_his_systems_and_logs_out,
    a_login_posted_from_another_site_is_refused
);
