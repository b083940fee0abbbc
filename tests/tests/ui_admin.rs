//! The clerk web UI's system administration (`/ui/admin…`: 市町村設定, 業務システム設定, 共同利用業務設定) and a
//! municipality's resident settings (`/ui/settings`: 独自項目, カタログ, プリセット) over HTTP, as a browser uses them:
//! log in through the form, keep the cookie, post forms with the page's CSRF token and Idempotency-Key. Each refusal
//! is the API's, shown next to its field with what was typed kept; a stale page is told that someone else changed
//! the data. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::json;
use cardap_tests::ui::{assert_strict, field_error, get, hidden, keys, location, logged_in, offering, post};
use cardap_tests::{Backend, TestApp, on_both_backends, operator_with_password, resident_settings_path, spawn_app};

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";
const CHANGED_MEANWHILE: &str = "ほかの人がこのデータを変更しました";

async fn administrator(app: &TestApp) -> String {
    logged_in(app, "", "admin", "AdminPassw0rd").await
}

async fn the_administrator_registers_reorders_and_abolishes_municipalities(backend: Backend) {
    let app = spawn_app(backend).await;
    let cookie = administrator(&app).await;

    let menu = get(&app, "/ui/admin", &cookie).await;
    assert_eq!(menu.status, StatusCode::OK, "{}", menu.text);
    assert_strict(&menu);
    assert!(menu.text.contains(r#"href="/ui/admin/municipalities""#), "{}", menu.text);

    // A code whose check digit is wrong: the API's message next to the code, what was typed kept.
    let form = get(&app, "/ui/admin/municipalities/new", &cookie).await;
    assert_strict(&form);
    for (id, label) in [("f-code", "コード"), ("f-name", "名称"), ("f-kind", "種別"), ("f-display_order", "表示順")]
    {
        assert!(form.text.contains(&format!(r#"<label for="{id}">{label}"#)), "{label}: {}", form.text);
    }
    let (csrf, key) = keys(&form);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("kind", "municipality"),
        ("code", "131017"),
        ("name", "千代田区"),
        ("display_order", "1"),
    ];
    let refused = post(&app, "/ui/admin/municipalities/new", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert!(!field_error(&refused, "f-code").is_empty());
    assert!(!refused.text.contains(r#"class="field-error" id="f-name-note""#), "only the code is wrong");
    assert!(refused.text.contains(r#"value="131017""#) && refused.text.contains(r#"value="千代田区""#));
    assert_ne!(hidden(&refused, "idempotency_key"), key, "a fresh key for the form shown again");

    fields[3] = ("code", CHIYODA);
    let registered = post(&app, "/ui/admin/municipalities/new", &cookie, &fields).await;
    assert_eq!(registered.status, StatusCode::SEE_OTHER, "{}", registered.text);
    let list = get(&app, location(&registered), &cookie).await;
    assert!(list.text.contains("市町村・任意団体を登録しました") && list.text.contains("千代田区"), "{}", list.text);

    let form = get(&app, "/ui/admin/municipalities/new", &cookie).await;
    let (csrf, key) = keys(&form);
    let sapporo = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("kind", "municipality"),
        ("code", SAPPORO),
        ("name", "札幌市"),
        ("display_order", "2"),
    ];
    assert_eq!(post(&app, "/ui/admin/municipalities/new", &cookie, &sapporo).await.status, StatusCode::SEE_OTHER);
    let list = get(&app, "/ui/admin/municipalities", &cookie).await;
    assert!(list.text.find("千代田区").unwrap() < list.text.find("札幌市").unwrap(), "display order: {}", list.text);

    // 千代田区 moves below 札幌市.
    let edit = get(&app, &format!("/ui/admin/municipalities/{CHIYODA}"), &cookie).await;
    assert_eq!(edit.status, StatusCode::OK, "{}", edit.text);
    assert_strict(&edit);
    let (csrf, _) = keys(&edit);
    let shown = hidden(&edit, "version");
    let change = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", "k-order"),
        ("version", shown.as_str()),
        ("name", "千代田区"),
        ("display_order", "3"),
    ];
    let changed = post(&app, &format!("/ui/admin/municipalities/{CHIYODA}"), &cookie, &change).await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    let list = get(&app, location(&changed), &cookie).await;
    assert!(list.text.contains("市町村・任意団体を変更しました"), "{}", list.text);
    assert!(list.text.find("札幌市").unwrap() < list.text.find("千代田区").unwrap(), "reordered: {}", list.text);

    // The page shown before that change: refused, with the municipality as it is now.
    let stale = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", "k-stale"),
        ("version", shown.as_str()),
        ("name", "新千代田区"),
        ("display_order", "1"),
    ];
    let refused = post(&app, &format!("/ui/admin/municipalities/{CHIYODA}"), &cookie, &stale).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED, "{}", refused.text);
    assert!(refused.text.contains(CHANGED_MEANWHILE), "{}", refused.text);
    assert!(
        refused.text.contains(r#"id="f-display_order" name="display_order" type="text" value="3""#),
        "{}",
        refused.text
    );
    assert_ne!(hidden(&refused, "version"), shown, "the form now carries the current version");
    let api = app.get(&format!("/api/v1/municipalities/{CHIYODA}"), Some(&app.admin_token().await)).await;
    assert_eq!(api.json()["name"], "千代田区", "nothing overwritten: {}", api.text);

    // 廃止, confirmed.
    let confirm = get(&app, &format!("/ui/admin/municipalities/{SAPPORO}/abolish"), &cookie).await;
    assert!(confirm.text.contains("廃止を実行") && confirm.text.contains("札幌市"), "{}", confirm.text);
    let version = hidden(&confirm, "version");
    let (csrf, key) = keys(&confirm);
    let abolish = [("csrf", csrf.as_str()), ("idempotency_key", key.as_str()), ("version", version.as_str())];
    let done = post(&app, &format!("/ui/admin/municipalities/{SAPPORO}/abolish"), &cookie, &abolish).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    let list = get(&app, location(&done), &cookie).await;
    assert!(list.text.contains("市町村・任意団体を廃止しました"), "{}", list.text);
    assert!(!list.text.contains(&format!("/ui/admin/municipalities/{SAPPORO}/abolish")), "{}", list.text);
}

async fn the_administrator_registers_a_business_system_and_permits_its_shared_use(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let cookie = administrator(&app).await;

    // Without the パーソナライズURL: named next to it, the rest kept.
    let form = get(&app, "/ui/admin/business-systems/new", &cookie).await;
    assert_strict(&form);
    assert!(form.text.contains(r#"<label for="f-personalize_url">パーソナライズURL"#), "{}", form.text);
    let (csrf, key) = keys(&form);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("business_id", "05"),
        ("name", "子育て支援"),
        ("top_url", "https://b05.example.jp/"),
        ("operator_admin_url", "https://b05.example.jp/operators"),
        ("personalize_url", ""),
    ];
    let refused = post(&app, "/ui/admin/business-systems/new", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert!(field_error(&refused, "f-personalize_url").contains("パーソナライズURL"), "{}", refused.text);
    assert!(refused.text.contains(r#"value="https://b05.example.jp/operators""#), "{}", refused.text);

    fields[6] = ("personalize_url", "https://b05.example.jp/me");
    let registered = post(&app, "/ui/admin/business-systems/new", &cookie, &fields).await;
    assert_eq!(registered.status, StatusCode::SEE_OTHER, "{}", registered.text);
    let list = get(&app, location(&registered), &cookie).await;
    assert!(list.text.contains("業務システムを登録しました") && list.text.contains("子育て支援"), "{}", list.text);

    // Renamed: only the changed field is sent, the URLs stay.
    let edit = get(&app, "/ui/admin/business-systems/05", &cookie).await;
    let (csrf, _) = keys(&edit);
    let version = hidden(&edit, "version");
    let mut change = vec![("csrf", csrf.as_str()), ("idempotency_key", "k-rename"), ("version", version.as_str())];
    let texts = [
        ("name", "子育て支援システム"),
        ("top_url", "https://b05.example.jp/"),
        ("operator_admin_url", "https://b05.example.jp/operators"),
        ("personalize_url", "https://b05.example.jp/me"),
    ];
    change.extend(texts);
    let changed = post(&app, "/ui/admin/business-systems/05", &cookie, &change).await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    let shown = app.get("/api/v1/business-systems/05", Some(&admin)).await.json();
    assert_eq!(
        (shown["name"].as_str(), shown["top_url"].as_str()),
        (Some("子育て支援システム"), Some("https://b05.example.jp/"))
    );

    // 共同利用: permit 千代田区, then withdraw it after a confirmation.
    let shared = get(&app, "/ui/admin/business-systems/05/municipalities", &cookie).await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
    assert_strict(&shared);
    assert!(shared.text.contains(r#"<option value="131016">千代田区（131016）</option>"#), "{}", shared.text);
    let (csrf, key) = keys(&shared);
    let version = hidden(&shared, "version");
    let permit =
        [("csrf", csrf.as_str()), ("idempotency_key", key.as_str()), ("version", version.as_str()), ("code", CHIYODA)];
    let permitted = post(&app, "/ui/admin/business-systems/05/municipalities", &cookie, &permit).await;
    assert_eq!(permitted.status, StatusCode::SEE_OTHER, "{}", permitted.text);
    let shared = get(&app, location(&permitted), &cookie).await;
    assert!(shared.text.contains("共同利用を許可しました"), "{}", shared.text);
    assert!(shared.text.contains("<code>131016</code></td><td>千代田区</td>"), "listed: {}", shared.text);
    let api = app.get("/api/v1/business-systems/05/permitted-municipalities", Some(&admin)).await.json();
    assert_eq!(api["items"][0]["code"], CHIYODA, "{api}");

    let version = hidden(&shared, "version");
    let withdraw_url = format!("/ui/admin/business-systems/05/municipalities/{CHIYODA}/withdraw");
    let confirm = get(&app, &format!("{withdraw_url}?version={version}"), &cookie).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(confirm.text.contains("取り消しを実行") && confirm.text.contains("千代田区"), "{}", confirm.text);
    let (csrf, key) = keys(&confirm);
    let withdraw = [("csrf", csrf.as_str()), ("idempotency_key", key.as_str()), ("version", version.as_str())];
    let withdrawn = post(&app, &withdraw_url, &cookie, &withdraw).await;
    assert_eq!(withdrawn.status, StatusCode::SEE_OTHER, "{}", withdrawn.text);
    let shared = get(&app, location(&withdrawn), &cookie).await;
    assert!(shared.text.contains("共同利用の許可を取り消しました"), "{}", shared.text);
    assert!(shared.text.contains("利用を許可している市町村はありません"), "{}", shared.text);
    let api = app.get("/api/v1/business-systems/05/permitted-municipalities", Some(&admin)).await.json();
    assert_eq!(api["items"], json!([]), "{api}");
}

/// 千代田区 permitted 02 and 05; its operations manager `manager01`; a clerk `clerk01` permitted both.
async fn chiyoda_with_a_manager(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    offering(app, &admin, CHIYODA, &[("05", "子育て支援")]).await;
    let manager = operator_with_password("manager01", "ManagerPassw0rd", &["operations_manager"], &[]);
    app.add_operators(&admin, CHIYODA, &manager).await;
    app.clerk_token(&admin, CHIYODA, "clerk01", &["02", "05"]).await;
    admin
}

async fn a_manager_adds_a_custom_field_and_chooses_the_catalog_and_presets(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_a_manager(&app).await;
    let cookie = logged_in(&app, CHIYODA, "manager01", "ManagerPassw0rd").await;

    let form = get(&app, "/ui/settings", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert_strict(&form);
    assert!(form.text.contains(r#"id="catalog-02""#) && form.text.contains(r#"id="catalog-05""#), "{}", form.text);
    assert!(!form.text.contains(r#"id="catalog-00""#) && !form.text.contains(r#"id="catalog-01""#), "not permitted");
    assert!(form.text.contains(r#"<label for="f-custom_fields-0-key">キー"#), "an empty row: {}", form.text);
    let (csrf, key) = keys(&form);
    let version = hidden(&form, "version");
    let rows = hidden(&form, "rows");

    // A key that is no key, and a preset outside the catalog: each next to its own field, everything kept.
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("municipality", CHIYODA),
        ("version", version.as_str()),
        ("rows", rows.as_str()),
        ("custom_fields.0.key", "School District"),
        ("custom_fields.0.label", "学区"),
        ("custom_fields.0.type", "choice"),
        ("custom_fields.0.options", "第一\r\n第二\r\n"),
        ("custom_fields.0.required", "true"),
        ("custom_fields.1.key", ""),
        ("custom_fields.1.label", ""),
        ("custom_fields.1.type", "text"),
        ("catalog", "02"),
        ("presets", "02"),
        ("presets", "05"),
        ("action", "save"),
    ];
    let refused = post(&app, "/ui/settings", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert_strict(&refused);
    assert!(!field_error(&refused, "f-custom_fields-0-key").is_empty());
    assert!(!field_error(&refused, "presets-05").is_empty(), "the preset 05 is not in the catalog");
    assert!(!refused.text.contains(r#"class="field-error" id="f-custom_fields-0-label-note""#));
    assert!(
        refused.text.contains(r#"value="School District""#) && refused.text.contains(">第一\r\n第二"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains(r#"id="presets-05" name="presets" value="05" checked"#), "{}", refused.text);

    // More empty rows, without saving (no script: the form is shown again).
    let mut more = fields.clone();
    *more.last_mut().unwrap() = ("action", "add_rows");
    let added = post(&app, "/ui/settings", &cookie, &more).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert!(added.text.contains(r#"name="custom_fields.6.key""#) && added.text.contains("まだ保存されていません"));
    assert!(added.text.contains(r#"value="School District""#), "{}", added.text);
    let untouched = app.get(&resident_settings_path(CHIYODA), Some(&admin)).await.json();
    assert_eq!(untouched["custom_fields"], json!([]), "nothing saved: {untouched}");

    fields[5] = ("custom_fields.0.key", "school_district");
    fields.insert(14, ("catalog", "05"));
    let saved = post(&app, "/ui/settings", &cookie, &fields).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    let shown = get(&app, location(&saved), &cookie).await;
    assert!(shown.text.contains("市町村設定を保存しました"), "{}", shown.text);
    assert!(shown.text.contains(r#"value="school_district""#), "{}", shown.text);
    assert!(shown.text.contains(r#"<label for="f-custom_fields-0-delete">この項目を削除"#), "{}", shown.text);
    let settings = app.get(&resident_settings_path(CHIYODA), Some(&admin)).await.json();
    assert_eq!(
        settings["custom_fields"],
        json!([{"key": "school_district", "label": "学区", "type": "choice", "options": ["第一", "第二"],
            "required": true}])
    );
    assert_eq!((settings["catalog"].clone(), settings["presets"].clone()), (json!(["02", "05"]), json!(["02", "05"])));

    // The clerk's registration form now asks for 学区.
    let clerk = logged_in(&app, CHIYODA, "clerk01", "ClerkPassw0rd").await;
    let registration = get(&app, "/ui/residents/new", &clerk).await;
    assert_eq!(registration.status, StatusCode::OK, "{}", registration.text);
    assert!(
        registration.text.contains(r#"<label for="f-custom_fields-school_district">学区"#),
        "{}",
        registration.text
    );
    assert!(registration.text.contains(r#"<option value="第二">第二</option>"#), "{}", registration.text);

    // The page shown before that save: refused, with the settings as they are now.
    fields[1] = ("idempotency_key", "k-stale");
    let stale = post(&app, "/ui/settings", &cookie, &fields).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    assert!(stale.text.contains(CHANGED_MEANWHILE) && stale.text.contains(r#"value="school_district""#));
    assert_ne!(hidden(&stale, "version"), version);
}

async fn the_settings_are_the_managers_of_that_municipality_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = chiyoda_with_a_manager(&app).await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    let sapporo = json!({"custom_fields": [{"key": "ward", "label": "札幌の区", "type": "text"}],
        "catalog": [], "presets": []});
    let reply = app.put(&resident_settings_path(SAPPORO), Some(&admin), &sapporo).await;
    assert!(reply.status.is_success(), "{}", reply.text);

    // A clerk reads the settings through the API, but the editor is not his; nor is system administration.
    let clerk = logged_in(&app, CHIYODA, "clerk01", "ClerkPassw0rd").await;
    let refused = get(&app, "/ui/settings", &clerk).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(!refused.text.contains("<form method=\"post\" action=\"/ui/settings\""));
    assert_eq!(get(&app, "/ui/admin/municipalities", &clerk).await.status, StatusCode::FORBIDDEN);

    // 千代田区's manager: 札幌市's settings are not found, to read or to replace.
    let manager = logged_in(&app, CHIYODA, "manager01", "ManagerPassw0rd").await;
    let other = get(&app, &format!("/ui/settings?municipality={SAPPORO}"), &manager).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{}", other.text);
    assert!(!other.text.contains("札幌の区"), "{}", other.text);
    let own = get(&app, "/ui/settings", &manager).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert!(!own.text.contains("札幌の区"), "{}", own.text);
    let (csrf, key) = keys(&own);
    let overwrite = [
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("municipality", SAPPORO),
        ("rows", "0"),
        ("action", "save"),
    ];
    let refused = post(&app, "/ui/settings", &manager, &overwrite).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    let settings = app.get(&resident_settings_path(SAPPORO), Some(&admin)).await.json();
    assert_eq!(settings["custom_fields"][0]["label"], "札幌の区", "unchanged: {settings}");
    assert_eq!(get(&app, "/ui/admin", &manager).await.status, StatusCode::FORBIDDEN);

    // The system administrator chooses the municipality.
    let cookie = administrator(&app).await;
    let chooser = get(&app, "/ui/settings", &cookie).await;
    assert!(chooser.text.contains(r#"<option value="011002">札幌市（011002）</option>"#), "{}", chooser.text);
    let shown = get(&app, &format!("/ui/settings?municipality={SAPPORO}"), &cookie).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert!(shown.text.contains(r#"value="札幌の区""#), "{}", shown.text);
}

on_both_backends!(
    the_administrator_registers_reorders_and_abolishes_municipalities,
    the_administrator_registers_a_business_system_and_permits_its_shared_use,
    a_manager_adds_a_custom_field_and_chooses_the_catalog_and_presets,
    the_settings_are_the_managers_of_that_municipality_only
);
