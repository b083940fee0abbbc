//! The clerk UI's operator screens over HTTP (オペレータ管理, issue 14), as an operations manager uses them in a
//! browser without JavaScript: registration with a problem next to its field and then fixed (the generated
//! password shown once), several at once, the list with its filters and pages, a change under `If-Match` and the
//! page of a stale version, 失効 after a confirmation, a password reset shown once, the bulk password change, the
//! CSV import as a job whose page names the bad row (and registers nobody) or shows the generated passwords
//! once, the CSV export of the list's filters, and another municipality's operators not found. Every test runs
//! on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_tests::reqwest::{StatusCode, header};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::ui::{
    Page, assert_problem_at, assert_strict, browser, get, hidden, link, location, logged_in, passwords, post,
    post_multipart, urlencode,
};
use cardap_tests::{Backend, TestApp, on_both_backends, operator_path, operator_with_password, spawn_app};

/// 千代田区 (may use 01 and 02) and 札幌市 (01).
const A: &str = "131016";
const B: &str = "011002";
const MANAGER_PASSWORD: &str = "ManagerPassw0rd";

/// The CSV import's upload form, as a browser sends it: the text `fields` in order, then the file.
async fn upload(app: &TestApp, cookie: &str, fields: &[(&str, &str)], file: Option<&[u8]>) -> Page {
    post_multipart(app, "/ui/operators/import", cookie, fields, file.map(|f| ("operators.csv", f))).await
}

/// 千代田区 (01, 02) and 札幌市 (01); an operations manager of each (千代田区's holds the roles and systems he
/// gives); the system administrator's token.
async fn setup(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, A, "千代田区", 1).await;
    app.register_municipality(&admin, B, "札幌市", 2).await;
    for (business, code) in [("01", A), ("02", A), ("01", B)] {
        app.permit(&admin, business, code).await;
    }
    let roles = ["operations_manager", "business_admin", "clerk", "auditor"];
    app.add_operators(&admin, A, &operator_with_password("MGR01", MANAGER_PASSWORD, &roles, &["01", "02"])).await;
    app.add_operators(&admin, B, &operator_with_password("MGRB1", MANAGER_PASSWORD, &roles, &["01"])).await;
    admin
}

async fn manager(app: &TestApp) -> String {
    logged_in(app, A, "MGR01", MANAGER_PASSWORD).await
}

/// An operator of `code` registered by the system administrator through the API.
async fn registered(app: &TestApp, admin: &str, code: &str, id: &str, department: &str) {
    let mut body = operator_with_password(id, "ClerkPassw0rd", &["clerk"], &["01"]);
    body["department"] = json!(department);
    app.add_operators(admin, code, &body).await;
}

/// [`setup`] with 千代田区's operator CIV01 (市民課), and its manager logged in: the app, the system administrator's
/// token and the manager's cookie.
async fn with_civ01(backend: Backend) -> (TestApp, String, String) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    registered(&app, &admin, A, "CIV01", "市民課").await;
    let cookie = manager(&app).await;
    (app, admin, cookie)
}

async fn operator(app: &TestApp, admin: &str, code: &str, id: &str) -> Value {
    let reply = app.get(&operator_path(code, id), Some(admin)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

async fn a_manager_registers_an_operator_after_a_validation_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    let cookie = manager(&app).await;

    let form = get(&app, "/ui/operators/new", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert_strict(&form);
    for (id, label) in [("f-operator_id", "オペレータID"), ("f-name", "氏名・組織名"), ("f-phone", "連絡先電話")]
    {
        assert!(form.text.contains(&format!(r#"<label for="{id}">{label}"#)), "{label}: {}", form.text);
    }
    assert!(form.text.contains(r#"id="f-business_systems-01""#) && form.text.contains(r#"id="f-business_systems-02""#));
    let key = hidden(&form, "idempotency_key");
    let csrf = hidden(&form, "csrf");

    // No name and a full-width phone number: each named next to its field, what was typed kept.
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("municipality", A),
        ("operator_id", "OP0501"),
        ("name", ""),
        ("department", "市民課"),
        ("phone", "０３-１２３４-５６７８"),
        ("roles", "clerk"),
        ("business_systems", "01"),
    ];
    let refused = post(&app, "/ui/operators/new", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert_problem_at(&refused, "f-name");
    assert_problem_at(&refused, "f-phone");
    assert!(refused.text.contains(r#"value="０３-１２３４-５６７８""#) && refused.text.contains(r#"value="市民課""#));
    assert!(refused.text.contains(r#"id="f-business_systems-01" name="business_systems" value="01" checked"#));
    assert_eq!(hidden(&refused, "idempotency_key"), key, "the same form keeps its key");
    assert_eq!(app.get(&operator_path(A, "OP0501"), Some(&admin)).await.status, StatusCode::NOT_FOUND);

    // Fixed: registered, and his generated password shown on a printable page, this once.
    fields[4] = ("name", "窓口 太郎");
    fields[6] = ("phone", "03-1234-5678");
    let done = post(&app, "/ui/operators/new", &cookie, &fields).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_strict(&done);
    assert!(done.text.contains("一度だけ表示されます") && done.text.contains("窓口 太郎"), "{}", done.text);
    let [password] = passwords(&done).try_into().expect("one password");
    app.login(Some(A), "OP0501", &password).await;
    let shown = operator(&app, &admin, A, "OP0501").await;
    assert_eq!(
        (&shown["phone"], &shown["roles"], &shown["business_systems"]),
        (&json!("03-1234-5678"), &json!(["clerk"]), &json!(["01"]))
    );

    // Sent again (a double click, a reload): the same operator, and no password any more.
    let again = post(&app, "/ui/operators/new", &cookie, &fields).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text);
    let page = get(&app, location(&again), &cookie).await;
    assert!(page.text.contains("オペレータを登録しました") && page.text.contains("窓口 太郎"), "{}", page.text);
    assert!(!page.text.contains(&password), "the password is shown once");
}

async fn a_batch_is_registered_all_at_once_or_its_bad_row_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    let cookie = manager(&app).await;
    let form = get(&app, "/ui/operators/batch?rows=3", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(form.text.contains(r#"<label for="f-2-operator_id">"#), "a third row: {}", form.text);
    let (csrf, key) = (hidden(&form, "csrf"), hidden(&form, "idempotency_key"));

    // Rows 1 and 3 filled (row 2 empty), the third with a bad e-mail: named in the third row, nobody registered.
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("idempotency_key", key.as_str()),
        ("municipality", A),
        ("rows", "3"),
        ("0.operator_id", "BAT01"),
        ("0.name", "一括 一郎"),
        ("0.roles", "clerk"),
        ("2.operator_id", "BAT03"),
        ("2.name", "一括 三郎"),
        ("2.email", "not-an-email"),
        ("2.roles", "clerk"),
    ];
    let refused = post(&app, "/ui/operators/batch", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert_problem_at(&refused, "f-2-email");
    assert!(!refused.text.contains(r#"class="field-error" id="f-0-email-note""#), "the first row is right");
    assert!(refused.text.contains(r#"value="not-an-email""#), "{}", refused.text);
    assert_eq!(app.get(&operator_path(A, "BAT01"), Some(&admin)).await.status, StatusCode::NOT_FOUND);

    fields[9] = ("2.email", "saburo@example.jp");
    let done = post(&app, "/ui/operators/batch", &cookie, &fields).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("2人のオペレータを登録しました"), "{}", done.text);
    let shown = passwords(&done);
    assert_eq!(shown.len(), 2, "{}", done.text);
    app.login(Some(A), "BAT03", &shown[1]).await;
}

async fn the_list_is_filtered_and_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    for (id, department) in [("CIV01", "市民課"), ("TAX01", "税務課"), ("TAX02", "税務課")] {
        registered(&app, &admin, A, id, department).await;
    }
    let cookie = manager(&app).await;

    let all = get(&app, "/ui/operators", &cookie).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_strict(&all);
    assert!(all.text.contains(">CIV01</a>") && all.text.contains(">TAX02</a>"), "{}", all.text);
    assert!(all.text.contains(r#"href="/ui/operators/CIV01?municipality=131016""#), "{}", all.text);

    let taxes = get(&app, &format!("/ui/operators?department={}", urlencode("税務")), &cookie).await;
    assert!(taxes.text.contains(">TAX01</a>") && taxes.text.contains(">TAX02</a>"), "{}", taxes.text);
    assert!(!taxes.text.contains(">CIV01</a>"), "another department: {}", taxes.text);
    assert!(taxes.text.contains(r#"value="税務""#), "the condition stays in the form");

    // One a page: the next page by the API's cursor, with the same condition.
    let first = get(&app, &format!("/ui/operators?department={}&limit=1", urlencode("税務")), &cookie).await;
    assert!(first.text.contains(">TAX01</a>") && !first.text.contains(">TAX02</a>"), "{}", first.text);
    let second = get(&app, &link(&first, "次のページ"), &cookie).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert!(second.text.contains(">TAX02</a>") && !second.text.contains(">TAX01</a>"), "{}", second.text);
    assert!(!second.text.contains("次のページ"), "the last page");

    // The system administrator picks the municipality first.
    let admin_cookie = logged_in(&app, "", "admin", cardap_tests::ADMIN_PASSWORD).await;
    let pick = get(&app, "/ui/operators", &admin_cookie).await;
    assert_eq!(pick.status, StatusCode::OK, "{}", pick.text);
    assert!(
        pick.text.contains(r#"<label for="f-municipality">市町村</label>"#) && pick.text.contains("札幌市 (011002)")
    );
    let sapporo = get(&app, "/ui/operators?municipality=011002", &admin_cookie).await;
    assert!(sapporo.text.contains(">MGRB1</a>") && !sapporo.text.contains(">CIV01</a>"), "{}", sapporo.text);
}

async fn a_change_applies_under_if_match_and_a_stale_page_is_told(backend: Backend) {
    let (app, admin, cookie) = with_civ01(backend).await;

    let shown = get(&app, "/ui/operators/CIV01", &cookie).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_strict(&shown);
    assert!(shown.text.contains(r#"value="市民課""#), "{}", shown.text);
    let (csrf, version) = (hidden(&shown, "csrf"), hidden(&shown, "version"));
    let change = |department: &'static str, key: &'static str| {
        let fields = [
            ("csrf", csrf.clone()),
            ("idempotency_key", key.to_owned()),
            ("municipality", A.to_owned()),
            ("version", version.clone()),
            ("shown_roles", "clerk".to_owned()),
            ("shown_business_systems", "01".to_owned()),
            ("name", "テスト CIV01".to_owned()),
            ("department", department.to_owned()),
            ("roles", "clerk".to_owned()),
            ("business_systems", "01".to_owned()),
        ];
        let (app, cookie) = (&app, &cookie);
        async move { post(app, "/ui/operators/CIV01", cookie, &fields).await }
    };

    let changed = change("税務課", "k-change-1").await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.text);
    let page = get(&app, location(&changed), &cookie).await;
    assert!(page.text.contains("登録内容を変更しました") && page.text.contains(r#"value="税務課""#), "{}", page.text);

    // The page shown before that change: refused, with the data of now.
    let stale = change("総務課", "k-change-2").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text);
    assert!(stale.text.contains("ほかの人がこのデータを変更しました"), "{}", stale.text);
    assert!(
        stale.text.contains(r#"value="税務課""#) && !stale.text.contains("総務課"),
        "the data of now: {}",
        stale.text
    );
    assert_ne!(hidden(&stale, "version"), version, "the form now carries the version of now");
    assert_eq!(operator(&app, &admin, A, "CIV01").await["department"], "税務課");
}

async fn revoking_is_confirmed_first(backend: Backend) {
    let (app, admin, cookie) = with_civ01(backend).await;

    let shown = get(&app, "/ui/operators/CIV01", &cookie).await;
    let confirm = get(&app, &link(&shown, "このオペレータを失効させる…"), &cookie).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(
        confirm.text.contains("元には戻せません") && confirm.text.contains("失効させる</button>"),
        "{}",
        confirm.text
    );
    assert_eq!(operator(&app, &admin, A, "CIV01").await["revoked"], false, "nothing done before the confirmation");

    let fields = [
        ("csrf", hidden(&confirm, "csrf")),
        ("idempotency_key", hidden(&confirm, "idempotency_key")),
        ("municipality", A.to_owned()),
        ("version", hidden(&confirm, "version")),
    ];
    let revoked = post(&app, "/ui/operators/CIV01/revoke", &cookie, &fields).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text);
    let page = get(&app, location(&revoked), &cookie).await;
    assert!(page.text.contains("オペレータを失効させました") && page.text.contains("失効しています"), "{}", page.text);
    assert_eq!(operator(&app, &admin, A, "CIV01").await["revoked"], true);
}

async fn a_password_reset_shows_the_new_password_once(backend: Backend) {
    let (app, _, cookie) = with_civ01(backend).await;
    let shown = get(&app, "/ui/operators/CIV01", &cookie).await;
    let csrf = hidden(&shown, "csrf");

    // One that breaks the rules: next to the field, never echoed.
    let short = [("csrf", csrf.as_str()), ("idempotency_key", "k-pw-1"), ("municipality", A), ("password", "Sh0rt")];
    let refused = post(&app, "/ui/operators/CIV01/password", &cookie, &short).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert_problem_at(&refused, "f-password");
    assert!(!refused.text.contains("Sh0rt"), "{}", refused.text);
    app.login(Some(A), "CIV01", "ClerkPassw0rd").await;

    // Blank: generated, shown this once.
    let generate = [("csrf", csrf.as_str()), ("idempotency_key", "k-pw-2"), ("municipality", A), ("password", "")];
    let reset = post(&app, "/ui/operators/CIV01/password", &cookie, &generate).await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert!(reset.text.contains("一度だけ表示されます"), "{}", reset.text);
    let [password] = passwords(&reset).try_into().expect("one password");
    app.login(Some(A), "CIV01", &password).await;
    let again = get(&app, "/ui/operators/CIV01", &cookie).await;
    assert!(!again.text.contains(&password), "never shown again");
    let retried = post(&app, "/ui/operators/CIV01/password", &cookie, &generate).await;
    assert!(!retried.text.contains(&password), "not by a retry either: {}", retried.text);
    app.login(Some(A), "CIV01", &password).await;
}

async fn a_bulk_password_change_shows_each_new_password_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    for id in ["CIV01", "CIV02"] {
        registered(&app, &admin, A, id, "市民課").await;
    }
    let cookie = manager(&app).await;
    let confirm =
        get(&app, "/ui/operators/passwords?municipality=131016&operator_ids=CIV01&operator_ids=CIV02", &cookie).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text);
    assert!(confirm.text.contains("2人のパスワード"), "{}", confirm.text);
    let fields = [
        ("csrf", hidden(&confirm, "csrf")),
        ("idempotency_key", hidden(&confirm, "idempotency_key")),
        ("municipality", A.to_owned()),
        ("operator_ids", "CIV01".to_owned()),
        ("operator_ids", "CIV02".to_owned()),
    ];
    let done = post(&app, "/ui/operators/passwords", &cookie, &fields).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    let shown = passwords(&done);
    assert_eq!(shown.len(), 2, "{}", done.text);
    app.login(Some(A), "CIV02", &shown[1]).await;
}

/// The job page once the job has ended (it reloads itself while the job runs).
async fn ended_job(app: &TestApp, cookie: &str, path: &str) -> Page {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let page = get(app, path, cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        if !page.text.contains(r#"<meta http-equiv="refresh" content="1">"#) {
            return page;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job did not end: {}", page.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_csv_import_names_the_bad_row_then_imports_a_good_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    let cookie = manager(&app).await;
    let form = get(&app, "/ui/operators/import", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert_strict(&form);
    assert!(form.text.contains(r#"enctype="multipart/form-data""#) && form.text.contains(r#"<label for="f-charset">"#));
    let csrf = hidden(&form, "csrf");
    let fields = |key: &'static str, charset: &'static str| {
        [("csrf", csrf.as_str()), ("idempotency_key", key), ("municipality", A), ("charset", charset)]
    };

    // Without the page's CSRF token, the file is not even read.
    let forged = upload(&app, &cookie, &[("csrf", "guessed")], Some(b"operator_id,name\nX1,x\n")).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    // Row 3 has a full-width phone number: the job's page names it, and nobody is registered.
    let bad = "オペレータID,氏名・組織名,連絡先電話\r\nCSV01,取込 太郎,03-1111-2222\r\nCSV02,取込 花子,０３-１１１１-２２２２\r\n";
    let started = upload(&app, &cookie, &fields("k-import-1", "UTF-8"), Some(bad.as_bytes())).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text);
    assert!(location(&started).starts_with("/ui/jobs/"), "{}", location(&started));
    let failed = ended_job(&app, &cookie, location(&started)).await;
    assert_strict(&failed);
    assert!(failed.text.contains("1人も登録していません"), "{}", failed.text);
    assert!(
        failed.text.contains("<th scope=\"col\">行</th><th scope=\"col\">列</th><th scope=\"col\">メッセージ</th>")
    );
    assert!(failed.text.contains("<tr><td>3</td><td>連絡先電話</td>"), "row 3 named: {}", failed.text);
    assert!(!failed.text.contains("<tr><td>2</td>"), "the good row is not: {}", failed.text);
    assert_eq!(app.get(&operator_path(A, "CSV01"), Some(&admin)).await.status, StatusCode::NOT_FOUND);

    // Fixed (and in Shift_JIS): registered; the generated passwords shown once, on request.
    let good = "オペレータID,氏名・組織名,連絡先電話,パスワード\r\nCSV01,取込 太郎,03-1111-2222,\r\nCSV02,髙橋 花子,03-1111-3333,Passw0rdCSV02\r\nCSV03,取込 三郎,,\r\n";
    let (sjis, _, unmappable) = encoding_rs::SHIFT_JIS.encode(good);
    assert!(!unmappable);
    let started = upload(&app, &cookie, &fields("k-import-2", "Shift_JIS"), Some(&sjis)).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.text);
    let job = location(&started).to_owned();
    let succeeded = ended_job(&app, &cookie, &job).await;
    assert!(succeeded.text.contains("3人のオペレータを登録しました"), "{}", succeeded.text);
    assert!(passwords(&succeeded).is_empty(), "not before he asks");
    assert_eq!(operator(&app, &admin, A, "CSV02").await["name"], "髙橋 花子");
    let take = [("csrf", csrf.as_str()), ("idempotency_key", "k-take")];
    let shown = post(&app, &format!("{job}/passwords"), &cookie, &take).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert!(shown.text.contains("一度だけ表示されます"), "{}", shown.text);
    let generated = passwords(&shown);
    assert_eq!(generated.len(), 2, "rows 2 and 4 had none: {}", shown.text);
    app.login(Some(A), "CSV03", &generated[1]).await;
    let again = post(&app, &format!("{job}/passwords"), &cookie, &take).await;
    assert_eq!(again.status, StatusCode::GONE, "{}", again.text);
    assert!(passwords(&again).is_empty());
    let after = get(&app, &job, &cookie).await;
    assert!(after.text.contains("表示済み") && !after.text.contains(&generated[0]), "{}", after.text);
}

async fn the_csv_export_downloads_the_lists_operators(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    for (id, department) in [("CIV01", "市民課"), ("TAX01", "税務課")] {
        registered(&app, &admin, A, id, department).await;
    }
    let cookie = manager(&app).await;
    let list = get(&app, &format!("/ui/operators?department={}", urlencode("税務")), &cookie).await;
    let href = link(&list, "この条件でCSV出力（UTF-8）");
    assert!(href.contains("department=%E7%A8%8E%E5%8B%99"), "the list's condition: {href}");

    let response = browser().get(app.url(&href)).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = response.headers().get(header::CONTENT_DISPOSITION).unwrap().to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("operators-131016.csv"), "{disposition}");
    assert_eq!(response.headers().get(header::CONTENT_TYPE).unwrap(), "text/csv; charset=UTF-8");
    let text = response.text().await.unwrap();
    assert!(text.starts_with("\u{feff}オペレータID,氏名・組織名,部門"), "{text}");
    assert!(text.contains("TAX01,テスト TAX01,税務課") && !text.contains("CIV01"), "{text}");
    assert!(!text.contains("ClerkPassw0rd"), "never a password");
}

async fn another_municipalitys_operators_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    registered(&app, &admin, B, "BOP01", "市民課").await;
    let cookie = manager(&app).await;
    let own = get(&app, "/ui/operators", &cookie).await;
    let csrf = hidden(&own, "csrf");

    for path in [
        "/ui/operators/BOP01",
        "/ui/operators/BOP01?municipality=011002",
        "/ui/operators?municipality=011002",
        "/ui/operators/new?municipality=011002",
        "/ui/operators/BOP01/revoke?municipality=011002",
        "/ui/operators/export?municipality=011002",
    ] {
        let page = get(&app, path, &cookie).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.text);
        assert!(!page.text.contains("BOP01") && !page.text.contains("市民課"), "{path}: {}", page.text);
    }
    let revoke = [("csrf", csrf.as_str()), ("idempotency_key", "k-r"), ("municipality", B), ("version", "1")];
    let refused = post(&app, "/ui/operators/BOP01/revoke", &cookie, &revoke).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    let reset = [("csrf", csrf.as_str()), ("idempotency_key", "k-p"), ("municipality", B), ("password", "")];
    let refused = post(&app, "/ui/operators/BOP01/password", &cookie, &reset).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    assert_eq!(operator(&app, &admin, B, "BOP01").await["revoked"], false);
}

async fn an_internal_id_is_set_and_removed(backend: Backend) {
    let (app, admin, cookie) = with_civ01(backend).await;
    let shown = get(&app, "/ui/operators/CIV01", &cookie).await;
    let (csrf, version) = (hidden(&shown, "csrf"), hidden(&shown, "version"));
    assert!(shown.text.contains(r#"<label for="f-internal_id">業務内ID"#), "{}", shown.text);

    // Full-width digits: named next to the field, what was typed kept.
    let mut fields = vec![
        ("csrf", csrf.clone()),
        ("idempotency_key", "k-id-1".to_owned()),
        ("municipality", A.to_owned()),
        ("version", version),
        ("business_id", "01".to_owned()),
        ("internal_id", "１０００".to_owned()),
        ("role", "窓口担当".to_owned()),
    ];
    let refused = post(&app, "/ui/operators/CIV01/internal-ids", &cookie, &fields).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    assert_problem_at(&refused, "f-internal_id");
    assert!(refused.text.contains(r#"value="１０００""#) && refused.text.contains(r#"value="窓口担当""#));

    fields[5].1 = "1000000010".to_owned();
    let set = post(&app, "/ui/operators/CIV01/internal-ids", &cookie, &fields).await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.text);
    let page = get(&app, location(&set), &cookie).await;
    assert!(
        page.text.contains("業務内IDを設定しました") && page.text.contains("<code>1000000010</code>"),
        "{}",
        page.text
    );
    assert_eq!(operator(&app, &admin, A, "CIV01").await["internal_ids"][0]["internal_id"], "1000000010");

    let remove = [
        ("csrf", csrf),
        ("idempotency_key", "k-id-2".to_owned()),
        ("municipality", A.to_owned()),
        ("version", hidden(&page, "version")),
    ];
    let removed = post(&app, "/ui/operators/CIV01/internal-ids/01/remove", &cookie, &remove).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.text);
    let page = get(&app, location(&removed), &cookie).await;
    assert!(page.text.contains("業務内IDを削除しました") && !page.text.contains("1000000010"), "{}", page.text);
}

async fn the_system_administrator_migrates_operators(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = setup(&app).await;
    let mut body = operator_with_password("CIV01", "ClerkPassw0rd", &["clerk"], &["01", "02"]);
    body["department"] = json!("市民課");
    app.add_operators(&admin, A, &body).await;

    let refused = get(&app, "/ui/operator-migrations", &manager(&app).await).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "only the system administrator: {}", refused.text);

    let cookie = logged_in(&app, "", "admin", cardap_tests::ADMIN_PASSWORD).await;
    let form = get(&app, "/ui/operator-migrations", &cookie).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.text);
    assert!(
        form.text.contains(r#"<label for="f-from">移行元"#) && form.text.contains(r#"<label for="f-operator_ids">"#)
    );
    let fields = [
        ("csrf", hidden(&form, "csrf")),
        ("idempotency_key", hidden(&form, "idempotency_key")),
        ("from", A.to_owned()),
        ("to", B.to_owned()),
        ("operator_ids", "CIV01".to_owned()),
    ];
    let done = post(&app, "/ui/operator-migrations", &cookie, &fields).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("1人のオペレータを 011002 に移行しました"), "{}", done.text);
    assert!(done.text.contains("<td>CIV01</td><td>01</td><td>02</td>"), "02 is not used in 札幌市: {}", done.text);
    app.login(Some(B), "CIV01", "ClerkPassw0rd").await;

    // Again (a new form): he is in the target already, said above the form, and nothing migrated.
    let mut again = fields.to_vec();
    again[1].1 = "k-migrate-again".to_owned();
    let refused = post(&app, "/ui/operator-migrations", &cookie, &again).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert!(refused.text.contains("移行先に既に登録されているオペレータID") && refused.text.contains("CIV01"));
}

on_both_backends!(
    a_manager_registers_an_operator_after_a_validation_error,
    a_batch_is_registered_all_at_once_or_its_bad_row_named,
    the_list_is_filtered_and_paged,
    a_change_applies_under_if_match_and_a_stale_page_is_told,
    revoking_is_confirmed_first,
    a_password_reset_shows_the_new_password_once,
    a_bulk_password_change_shows_each_new_password_once,
    a_csv_import_names_the_bad_row_then_imports_a_good_file,
    the_csv_export_downloads_the_lists_operators,
    another_municipalitys_operators_are_not_found,
    an_internal_id_is_set_and_removed,
    the_system_administrator_migrates_operators
);
