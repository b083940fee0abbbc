//! Operator CSV (手引き I 2.2(6)): import in UTF-8 (with and without BOM) and Shift_JIS with the screen's labels
//! or the JSON names as header, all or nothing with every error named by row and column (also in a 10,000-row
//! file), export with the screen's filters and no passwords, export → import into another municipality, and
//! migration (移行) between municipalities keeping passwords and only the permitted business systems.
//! An import is a job: each test follows it to its end and asserts on its outcome (the report, with the generated
//! passwords fetched once, or the problem). After every refused request the event log is unchanged. Every test
//! runs on PostgreSQL and on SQLite.
//!
//! Length: seventeen scenarios of import, export and migration, sharing one setup and the file helpers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_commands::{CommandContext, CommandHandler, Permission};
use cardap_domain::operator::{self, Operator, OperatorCommand, OperatorId, OperatorName, OperatorProfile, Role};
use cardap_domain::{Aggregate, MunicipalityCode, OperatorKey};
use cardap_store::{CommandId, StreamId};
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Imported, Refusal, Reply, TestApp, TestOperator, on_both_backends, operator_with_password, register_clerk,
    register_operator, send, spawn_app, with_check_digit,
};

/// 千代田区 and 札幌市: the municipalities of these tests.
const A: &str = "131016";
const B: &str = "011002";
const MANAGER_PASSWORD: &str = "ManagerPassw0rd";
const LABELS: &str = "オペレータID,氏名・組織名,部門,性別,連絡先電話,内線,E-Mail,情報,付帯情報,許可業務,役割,業務内ID";

fn export_path(code: &str, query: &str) -> String {
    format!("/api/v1/municipalities/{code}/operators/export{query}")
}

fn operator_path(code: &str, id: &str) -> String {
    format!("/api/v1/municipalities/{code}/operators/{id}")
}

const MIGRATIONS: &str = "/api/v1/operator-migrations";

/// Sends `body` as a CSV upload with this `Content-Type`, and follows the job it starts to its end.
fn upload(
    app: &TestApp,
    code: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> impl Future<Output = Imported> + use<> {
    app.import_operators(code, token, content_type, body, &[])
}

/// The report of an import that must succeed, with each generated password (fetched once) in its item.
async fn imported(app: &TestApp, token: &str, import: impl Future<Output = Imported>) -> Value {
    let import = import.await;
    app.import_report(token, &import).await
}

fn utf8(body: &str) -> Vec<u8> {
    body.as_bytes().to_vec()
}

fn with_bom(body: &str) -> Vec<u8> {
    [b"\xEF\xBB\xBF".as_slice(), body.as_bytes()].concat()
}

fn shift_jis(body: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(body);
    assert!(!unmappable, "test data must be representable in Shift_JIS");
    bytes.into_owned()
}

/// Sends the request behind `reply` (an import: follows its job), asserts the refusal, and that the event log
/// did not change; returns the problem.
async fn refused<A: Refusal + std::fmt::Debug>(
    app: &TestApp,
    reply: impl Future<Output = A>,
    status: StatusCode,
    kind: &str,
) -> Value {
    let before = app.event_count().await;
    let reply = reply.await;
    let problem = reply.refusal(status, kind);
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {reply:?}");
    problem
}

/// The `(row, column, field)` of every error of a problem.
fn cells(problem: &Value) -> Vec<(u64, String, String)> {
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["row"].as_u64().unwrap_or_else(|| panic!("an error without row: {e}")),
                e["column"].as_str().unwrap_or_else(|| panic!("an error without column: {e}")).to_owned(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Two municipalities (A may use business systems 01 and 02, B only 01), and an operations manager of A who
/// holds every role and business system his imports give (he gives only what he holds himself).
async fn setup(app: &TestApp) -> (String, TestOperator) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, A, "千代田区", 1).await;
    app.register_municipality(&admin, B, "札幌市", 2).await;
    for (business, code) in [("01", A), ("02", A), ("01", B)] {
        permit(app, &admin, business, code).await;
    }
    let roles = ["operations_manager", "business_admin", "clerk", "auditor"];
    let manager = manager_of(app, &admin, "MGR01", &roles, &["01", "02"]).await;
    (admin, manager)
}

/// An operations manager of A with these roles and business systems, registered by the system administrator.
async fn manager_of(app: &TestApp, admin: &str, id: &str, roles: &[&str], business_systems: &[&str]) -> TestOperator {
    app.add_operators(admin, A, &operator_with_password(id, MANAGER_PASSWORD, roles, business_systems)).await;
    let operator_id = OperatorId::parse(id).unwrap();
    TestOperator {
        key: OperatorKey::for_login(Some(&MunicipalityCode::parse(A).unwrap()), &operator_id),
        municipality: Some(A.to_owned()),
        operator_id: id.to_owned(),
        password: MANAGER_PASSWORD.to_owned(),
    }
}

async fn permit(app: &TestApp, admin: &str, business: &str, code: &str) {
    let reply = app
        .post(
            &format!("/api/v1/business-systems/{business}/permitted-municipalities"),
            Some(admin),
            &json!({ "code": code }),
        )
        .await;
    assert!(reply.status.is_success(), "permit {business} for {code}: {}", reply.text);
}

async fn operator(app: &TestApp, token: &str, code: &str, id: &str) -> Value {
    let reply = app.get(&operator_path(code, id), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "{code}/{id}: {}", reply.text);
    reply.json()
}

/// The data rows of an export (BOM and header checked and taken off).
fn export_rows(reply: &Reply) -> Vec<Vec<String>> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("text/csv; charset=UTF-8"));
    let text = reply.text.strip_prefix('\u{feff}').expect("a UTF-8 export starts with a BOM");
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some(LABELS), "the header is the screen's labels");
    lines.filter(|l| !l.is_empty()).map(|l| l.split(',').map(str::to_owned).collect()).collect()
}

async fn utf8_with_and_without_bom_and_shift_jis_all_import(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    let before = app.event_count().await;

    // UTF-8 with BOM, the screen's labels, no password and no roles column: generated passwords, role clerk.
    let file = "オペレータID,氏名・組織名,部門,性別,連絡先電話,内線,E-Mail,情報,付帯情報,許可業務\r\n\
                OP0501,窓口 太郎,市民課,男性,03-3333-4444,1234,taro@example.jp,窓口,,01 02\r\n\
                OP0502,窓口 花子,市民課,女性,,,,,,\r\n";
    let import = upload(&app, A, &token, "text/csv; charset=UTF-8", with_bom(file)).await;
    let Imported::Finished { accepted, .. } = &import else { panic!("refused at once: {import:?}") };
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(accepted.json()["state"], "running", "{}", accepted.text);
    let body = app.import_report(&token, &import).await;
    assert_eq!(body["imported"], 2);
    assert_eq!(body["items"][0]["row"], 2, "the header is row 1");
    assert_eq!(body["items"][0]["operator_id"], "OP0501");
    assert_eq!(body["items"][1]["row"], 3);
    let generated = body["items"][0]["password"].as_str().expect("a generated password").to_owned();
    assert_eq!(app.event_count().await, before + 2, "one registration per row");
    let op = operator(&app, &token, A, "OP0501").await;
    assert_eq!(op["name"], "窓口 太郎");
    assert_eq!(op["department"], "市民課");
    assert_eq!(op["sex"], "1");
    assert_eq!(op["phone"], "03-3333-4444");
    assert_eq!(op["extension"], "1234");
    assert_eq!(op["email"], "taro@example.jp");
    assert_eq!(op["info"], "窓口");
    assert_eq!(op["extra"], Value::Null, "an empty cell is absent");
    assert_eq!(op["roles"], json!(["clerk"]), "without a roles column: clerk");
    assert_eq!(op["business_systems"], json!(["01", "02"]));
    assert_eq!(operator(&app, &token, A, "OP0502").await["sex"], "2");
    app.login(Some(A), "OP0501", &generated).await;

    // UTF-8 without BOM, the JSON names, passwords and roles given.
    let file = "operator_id,password,name,department,sex,phone,roles,business_systems\n\
                OP0601,Passw0rdOP0601,運用 一郎,情報政策課,9,090-1234-5678,operations_manager clerk,01\n";
    let body = imported(&app, &token, upload(&app, A, &token, "text/csv; charset=utf-8", utf8(file))).await;
    assert!(body["items"][0].get("password").is_none(), "a given password is not echoed");
    assert_eq!(body["items"][0]["password_generated"], false);
    let op = operator(&app, &token, A, "OP0601").await;
    assert_eq!(op["roles"], json!(["operations_manager", "clerk"]));
    assert_eq!(op["sex"], "9");
    app.login(Some(A), "OP0601", "Passw0rdOP0601").await;

    // UTF-8 without any charset: read as UTF-8.
    upload(&app, A, &token, "text/csv", utf8("オペレータID,氏名・組織名\nOP0701,無指定 太郎\n")).await.report();

    // Shift_JIS as municipal systems write it, windows-31j characters (髙, ①) included, under each label.
    for (i, charset) in ["Shift_JIS", "shift_jis", "windows-31j", "cp932"].into_iter().enumerate() {
        let id = format!("SJ0{i}");
        let file = format!(
            "*オペレータID(半角英数),パスワード(半角英数),氏名・組織名,部門,性別,連絡先電話(半角数字),許可業務\r\n\
             {id},Passw0rd{id},髙橋 一郎,第①課,指定なし,03-1111-2222,02\r\n"
        );
        upload(&app, A, &token, &format!("text/csv; charset={charset}"), shift_jis(&file)).await.report();
        let op = operator(&app, &token, A, &id).await;
        assert_eq!(op["name"], "髙橋 一郎", "{charset}");
        assert_eq!(op["department"], "第①課", "{charset}");
        assert_eq!(op["sex"], "0", "{charset}");
        assert_eq!(op["business_systems"], json!(["02"]));
        app.login(Some(A), &id, &format!("Passw0rd{id}")).await;
    }

    // Shift_JIS without saying so is not guessed: 415 with a clear message, nothing written.
    let file = shift_jis("オペレータID,氏名・組織名\r\nSJ99,髙橋 次郎\r\n");
    let reply = refused(
        &app,
        upload(&app, A, &token, "text/csv", file),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "/problems/unsupported-media-type",
    )
    .await;
    assert!(reply["detail"].as_str().unwrap().contains("Shift_JIS"), "{reply}");
    // Not CSV, or a charset we cannot read: 415.
    for content_type in ["application/json", "text/csv; charset=EUC-JP"] {
        refused(
            &app,
            upload(&app, A, &token, content_type, utf8("operator_id,name\nX1,x\n")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "/problems/unsupported-media-type",
        )
        .await;
    }
}

async fn a_bad_row_in_a_large_file_is_named_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;

    // 10,000 data rows, several MiB (over the API's usual 1 MiB), one full-width phone number in row 7,321.
    let extra = "付帯情報".repeat(40);
    let mut file = String::from("オペレータID,氏名・組織名,部門,連絡先電話,付帯情報,許可業務\r\n");
    for i in 0..10_000 {
        let row = i + 2;
        let phone = if row == 7_321 {
            "０３-３３３３-４４４４".to_owned()
        } else {
            format!("03-{:04}-{:04}", i / 100, i)
        };
        file.push_str(&format!("OP{i:05},職員 {i},市民課,{phone},{extra},01\r\n"));
    }
    assert!(file.len() > 2 * 1024 * 1024, "the file is larger than the default body limit");

    let reply = refused(
        &app,
        upload(&app, A, &token, "text/csv; charset=UTF-8", utf8(&file)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert_eq!(cells(&reply), [(7_321, "連絡先電話".to_owned(), "/rows/7321/phone".to_owned())], "{reply}");
    assert_eq!(app.get(&operator_path(A, "OP00000"), Some(&token)).await.status, StatusCode::NOT_FOUND);

    // In English on request.
    let import = app.import_operators(A, &token, "text/csv", utf8(&file), &[("accept-language", "en")]).await;
    let problem = import.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert!(problem["detail"].as_str().unwrap().contains("nothing was registered"), "{problem}");
}

async fn every_error_is_named_by_row_and_column(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;

    let file = "operator_id,name,sex,E-Mail,roles,business_systems\n\
                OK01,正しい 行,1,ok@example.jp,,\n\
                ＯＰ１,全角 ID,1,,,\n\
                OK02,,5,not-an-email,superuser,01\n\
                OK03,共同利用外,,,,10\n\
                OK04,システム管理,,,system_admin,\n";
    let reply = refused(
        &app,
        upload(&app, A, &token, "text/csv", utf8(file)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    let found = cells(&reply);
    for expected in [
        (3, "operator_id", "/rows/3/operator_id"),
        (4, "name", "/rows/4/name"),
        (4, "sex", "/rows/4/sex"),
        (4, "E-Mail", "/rows/4/email"),
        (4, "roles", "/rows/4/roles/0"),
        (5, "business_systems", "/rows/5/business_systems"),
        (6, "roles", "/rows/6/roles"),
    ] {
        assert!(
            found.contains(&(expected.0, expected.1.to_owned(), expected.2.to_owned())),
            "{expected:?} not in {found:?}"
        );
    }
    assert!(found.iter().all(|(row, _, _)| *row != 2), "the good row has no error: {found:?}");

    // A header that names no column, or lacks the operator ID: row 1.
    let reply = refused(
        &app,
        upload(&app, A, &token, "text/csv", utf8("氏名・組織名,住所\n窓口 太郎,千代田区\n")),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    let found = cells(&reply);
    assert!(found.contains(&(1, "住所".to_owned(), "/rows/1".to_owned())), "{found:?}");
    assert!(found.contains(&(1, "オペレータID".to_owned(), "/rows/1/operator_id".to_owned())), "{found:?}");
    // A header without data rows.
    refused(
        &app,
        upload(&app, A, &token, "text/csv", utf8("operator_id,name\r\n")),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
}

async fn duplicate_ids_in_the_file_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;

    let file = "オペレータID,氏名・組織名\nOP0501,窓口 太郎\nOP0502,窓口 花子\nOP0501,窓口 次郎\n";
    let reply = refused(
        &app,
        upload(&app, A, &token, "text/csv", utf8(file)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert_eq!(cells(&reply), [(4, "オペレータID".to_owned(), "/rows/4/operator_id".to_owned())]);
    assert!(reply["errors"][0]["message"].as_str().unwrap().contains("2行目"), "names the first row");
    assert_eq!(app.get(&operator_path(A, "OP0502"), Some(&token)).await.status, StatusCode::NOT_FOUND);
}

async fn an_existing_operator_id_is_refused_naming_its_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    register_clerk(&app.state, A, "OP0502").await;

    let file = "オペレータID,氏名・組織名\nOP0501,窓口 太郎\nOP0502,窓口 花子\n";
    let reply = refused(
        &app,
        upload(&app, A, &token, "text/csv", utf8(file)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert_eq!(cells(&reply), [(3, "オペレータID".to_owned(), "/rows/3/operator_id".to_owned())]);
    assert_eq!(app.get(&operator_path(A, "OP0501"), Some(&token)).await.status, StatusCode::NOT_FOUND);

    // The same ID in another municipality is another operator.
    let admin = app.admin_token().await;
    upload(&app, B, &admin, "text/csv", utf8(file)).await.report();
}

/// A row refused for several reasons hears of all of them in one answer, each in its cell, in the screen's order:
/// a 業務内ID outside the row's 許可業務, the system administrator's role, every business system the municipality
/// may not use, an ID registered already, and (a later row) the same ID twice.
async fn every_refusal_of_a_row_is_named_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = setup(&app).await; // B may use 01 only
    register_clerk(&app.state, B, "OP0501").await;

    let file = "オペレータID,氏名・組織名,許可業務,役割,業務内ID\r\n\
                OP0501,窓口 太郎,02 01 03,system_admin,04:A77 01:1000000010\r\n\
                OP0501,窓口 次郎,01,clerk,\r\n";
    let reply = refused(
        &app,
        upload(&app, B, &admin, "text/csv", utf8(file)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    let found: Vec<(u64, String, String, String)> = cells(&reply)
        .into_iter()
        .zip(reply["errors"].as_array().unwrap())
        .map(|((row, column, field), e)| (row, column, field, e["message"].as_str().unwrap().to_owned()))
        .collect();
    let expected = [
        (2, "業務内ID", "/rows/2/internal_ids", "このオペレータに許可されていない業務システムです（04）"),
        (2, "役割", "/rows/2/roles", "システム管理者には市町村・任意団体を指定できません"),
        (2, "許可業務", "/rows/2/business_systems", "共同利用が許可されていない業務システムは選択できません（02）"),
        (2, "許可業務", "/rows/2/business_systems", "共同利用が許可されていない業務システムは選択できません（03）"),
        (2, "オペレータID", "/rows/2/operator_id", "このオペレータは既に登録されています（OP0501）"),
        (3, "オペレータID", "/rows/3/operator_id", "同じオペレータID OP0501 が2行目にもあります"),
        (3, "オペレータID", "/rows/3/operator_id", "このオペレータは既に登録されています（OP0501）"),
    ]
    .map(|(row, column, field, message)| (row, column.to_owned(), field.to_owned(), message.to_owned()));
    assert_eq!(found, expected, "{reply}");
    assert!(reply["detail"].as_str().unwrap().starts_with("7件の誤りがあります"), "{reply}");
}

async fn only_those_who_manage_operators_may_import_and_view_may_export(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let manager_token = manager.login(&app).await;
    let clerk = register_clerk(&app.state, A, "CLERK01").await.login(&app).await;
    let file = || utf8("operator_id,name\nOP0501,窓口 太郎\n");

    refused(&app, upload(&app, A, &clerk, "text/csv", file()), StatusCode::FORBIDDEN, "/problems/forbidden").await;
    // Another municipality does not exist for him.
    refused(&app, upload(&app, B, &manager_token, "text/csv", file()), StatusCode::NOT_FOUND, "/problems/not-found")
        .await;
    app.get(&export_path(B, ""), Some(&manager_token)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.get(&export_path(A, ""), Some(&clerk)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    app.get(&export_path(A, ""), None).await.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    let unknown = with_check_digit("99999");
    app.get(&export_path(&unknown, ""), Some(&admin)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.get(&export_path(A, "?charset=EUC-JP"), Some(&admin))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
}

async fn the_export_is_filtered_and_has_no_passwords(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    let file = "operator_id,password,name,department,sex,phone,email,info,extra,roles,business_systems\n\
                OP0501,Passw0rdSecret1,窓口 太郎,市民課,1,03-3333-4444,taro@example.jp,窓口担当,\"a, b\",clerk,01\n\
                OP0502,Passw0rdSecret2,窓口 花子,市民課,2,03-3333-5555,hanako@example.jp,窓口担当,,clerk,\n\
                OP0601,Passw0rdSecret3,税務 一郎,税務課,,03-4444-5555,ichiro@example.jp,,=1+2,business_admin,01 02\n\
                XX0001,Passw0rdSecret4,市民 太郎,市民課,,,,,,auditor,\n";
    upload(&app, A, &token, "text/csv", utf8(file)).await.report();

    // Everything, in operator-ID order, with the screen's labels and no password anywhere.
    let reply = app.get(&export_path(A, ""), Some(&token)).await;
    assert!(reply.header("content-disposition").unwrap().starts_with("attachment"));
    assert!(!reply.text.contains("パスワード") && !reply.text.contains("Passw0rd"), "{}", reply.text);
    let rows = export_rows(&reply);
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["MGR01", "OP0501", "OP0502", "OP0601", "XX0001"]);
    assert!(
        reply
            .text
            .contains("OP0501,窓口 太郎,市民課,男性,03-3333-4444,,taro@example.jp,窓口担当,\"a, b\",01,clerk,\r\n")
    );
    assert!(reply.text.contains(",'=1+2,01 02,business_admin,\r\n"), "a formula is guarded: {}", reply.text);

    // Filters: substrings, all of them at once.
    for (query, expected) in [
        ("?operator_id=OP05", &["OP0501", "OP0502"][..]),
        ("?name=太郎", &["OP0501", "XX0001"]),
        ("?department=市民課&name=太郎", &["OP0501", "XX0001"]),
        ("?department=市民課&phone=3333", &["OP0501", "OP0502"]),
        ("?email=hanako", &["OP0502"]),
        ("?info=窓口&phone=4444", &["OP0501"]),
        ("?name=該当なし", &[]),
    ] {
        let rows = export_rows(&app.get(&export_path(A, query), Some(&token)).await);
        let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, expected, "{query}");
    }

    // Shift_JIS on request: no BOM, the same content.
    let reply = app.get(&export_path(A, "?charset=Shift_JIS&operator_id=OP0501"), Some(&token)).await;
    assert_eq!(reply.header("content-type"), Some("text/csv; charset=Shift_JIS"));
    let raw = app
        .client
        .get(app.url(&export_path(A, "?charset=Shift_JIS&operator_id=OP0501")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (text, _, errors) = encoding_rs::SHIFT_JIS.decode(&raw);
    assert!(!errors);
    assert!(text.starts_with(LABELS), "{text}");
    assert!(text.contains("OP0501,窓口 太郎,市民課,男性"), "{text}");
}

async fn an_export_imports_into_another_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    let file = "オペレータID,氏名・組織名,部門,性別,連絡先電話,内線,E-Mail,情報,付帯情報,許可業務,役割\n\
                OP0501,窓口 太郎,市民課,男性,03-3333-4444,12-34,taro@example.jp,窓口担当,=SUM(A1),01,clerk\n\
                OP0502,窓口 花子,市民課,女性,,,,,,,auditor business_admin\n";
    upload(&app, A, &token, "text/csv", utf8(file)).await.report();
    let exported = app.get(&export_path(A, "?operator_id=OP05"), Some(&token)).await;
    assert_eq!(export_rows(&exported).len(), 2);

    // B may use 01 too: the export imports as it is, with generated passwords.
    let body =
        imported(&app, &admin, upload(&app, B, &admin, "text/csv; charset=UTF-8", exported.text.clone().into_bytes()))
            .await;
    let items = body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i["password"].as_str().is_some_and(|p| p.len() >= 8)), "{items:?}");
    app.login(Some(B), "OP0501", items[0]["password"].as_str().unwrap()).await;

    // And exports the same again.
    let again = app.get(&export_path(B, ""), Some(&admin)).await;
    assert_eq!(again.text, exported.text);
    let op = operator(&app, &admin, B, "OP0501").await;
    assert_eq!(op["extra"], "=SUM(A1)", "the formula guard is taken off again");
    assert_eq!(op["extension"], "12-34");

    // Shift_JIS round trip too.
    let raw = app
        .client
        .get(app.url(&export_path(A, "?charset=Shift_JIS&operator_id=OP0502")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let import = upload(&app, B, &admin, "text/csv; charset=Shift_JIS", raw.to_vec()).await;
    let problem = import.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(cells(&problem), [(2, "オペレータID".to_owned(), "/rows/2/operator_id".to_owned())], "already there");
}

/// A's operators with business systems 01 and 02 and a 業務内ID in each; B may use only 01.
async fn migration_setup(app: &TestApp, token: &str, admin: &str) {
    let file = "operator_id,password,name,department,sex,roles,business_systems\n\
                OP0501,Passw0rdOP0501,窓口 太郎,市民課,1,clerk,01 02\n\
                OP0502,Passw0rdOP0502,窓口 花子,市民課,2,business_admin,02\n";
    upload(app, A, token, "text/csv", utf8(file)).await.report();
    for (id, business, internal) in [("OP0501", "01", "1000000010"), ("OP0501", "02", "L77"), ("OP0502", "02", "L78")] {
        let reply = send(
            app.request(Method::PUT, &format!("{}/internal-ids/{business}", operator_path(A, id)), Some(admin))
                .json(&json!({ "internal_id": internal, "role": "窓口担当" })),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
}

async fn migration_keeps_passwords_and_only_permitted_business_systems(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    migration_setup(&app, &token, &admin).await;
    let before = app.event_count().await;

    let reply =
        app.post(MIGRATIONS, Some(&admin), &json!({ "from": A, "to": B, "operator_ids": ["OP0501", "OP0502"] })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["migrated"][0]["operator_id"], "OP0501");
    assert_eq!(body["migrated"][0]["business_systems"], json!(["01"]));
    assert_eq!(body["migrated"][0]["dropped_business_systems"], json!(["02"]));
    assert_eq!(body["migrated"][0]["internal_ids"], json!(["01"]));
    assert_eq!(body["migrated"][0]["password_kept"], true);
    assert_eq!(body["migrated"][1]["operator_id"], "OP0502");
    assert_eq!(body["migrated"][1]["business_systems"], json!([]));
    assert_eq!(body["migrated"][1]["dropped_business_systems"], json!(["02"]));
    // Two registrations, one 業務内ID and its claim in B.
    assert_eq!(app.event_count().await, before + 4);

    // The same profile, roles and password in B; only 01 and its 業務内ID.
    let op = operator(&app, &admin, B, "OP0501").await;
    assert_eq!(op["name"], "窓口 太郎");
    assert_eq!(op["department"], "市民課");
    assert_eq!(op["sex"], "1");
    assert_eq!(op["roles"], json!(["clerk"]));
    assert_eq!(op["business_systems"], json!(["01"]));
    assert_eq!(op["internal_ids"], json!([{"business_id": "01", "internal_id": "1000000010", "role": "窓口担当"}]));
    assert_eq!(operator(&app, &admin, B, "OP0502").await["roles"], json!(["business_admin"]));
    let session = app.login(Some(B), "OP0501", "Passw0rdOP0501").await;
    let me = app.get("/api/v1/me", Some(&session)).await.json();
    assert_eq!(me["municipality"], B);
    app.login(Some(B), "OP0502", "Passw0rdOP0502").await;
    // A's operators stay as they were.
    assert_eq!(operator(&app, &admin, A, "OP0501").await["business_systems"], json!(["01", "02"]));
    app.login(Some(A), "OP0501", "Passw0rdOP0501").await;

    // Again: they are there already; named, nothing written.
    let reply = refused(
        &app,
        app.post(MIGRATIONS, Some(&admin), &json!({ "from": A, "to": B, "operator_ids": ["OP0501"] })),
        StatusCode::CONFLICT,
        "/problems/already-exists",
    )
    .await;
    assert!(reply["detail"].as_str().unwrap().contains("OP0501"), "{reply}");
}

async fn migrating_everyone_takes_all_operators_that_are_not_revoked(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    migration_setup(&app, &token, &admin).await;
    let reply = app.post(&format!("{}/revoke", operator_path(A, "OP0502")), Some(&admin), &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // An operator of B with an ID that A has too: the whole migration is refused, naming it.
    register_clerk(&app.state, B, "MGR01").await;
    let reply = refused(
        &app,
        app.post(MIGRATIONS, Some(&admin), &json!({ "from": A, "to": B })),
        StatusCode::CONFLICT,
        "/problems/already-exists",
    )
    .await;
    assert!(reply["detail"].as_str().unwrap().contains("MGR01"), "{reply}");
    assert_eq!(app.get(&operator_path(B, "OP0501"), Some(&admin)).await.status, StatusCode::NOT_FOUND);

    // Into a third municipality: MGR01 and OP0501, not the revoked OP0502.
    let c = with_check_digit("27100");
    app.register_municipality(&admin, &c, "大阪市", 3).await;
    let reply = app.post(MIGRATIONS, Some(&admin), &json!({ "from": A, "to": c })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    let ids: Vec<&str> =
        body["migrated"].as_array().unwrap().iter().map(|m| m["operator_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["MGR01", "OP0501"]);
    // The third municipality may use nothing: every business system dropped.
    assert_eq!(body["migrated"][1]["dropped_business_systems"], json!(["01", "02"]));
    app.login(Some(&c), "MGR01", MANAGER_PASSWORD).await;
}

async fn migration_is_for_the_system_administrator_and_known_municipalities(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    migration_setup(&app, &token, &admin).await;
    let body = json!({ "from": A, "to": B });

    refused(&app, app.post(MIGRATIONS, Some(&token), &body), StatusCode::FORBIDDEN, "/problems/forbidden").await;
    let clerk = register_clerk(&app.state, B, "CLERK01").await.login(&app).await;
    refused(&app, app.post(MIGRATIONS, Some(&clerk), &body), StatusCode::FORBIDDEN, "/problems/forbidden").await;
    refused(&app, app.post(MIGRATIONS, None, &body), StatusCode::UNAUTHORIZED, "/problems/unauthenticated").await;

    let unknown = with_check_digit("99999");
    for body in [json!({ "from": A, "to": unknown }), json!({ "from": unknown, "to": B })] {
        refused(&app, app.post(MIGRATIONS, Some(&admin), &body), StatusCode::NOT_FOUND, "/problems/not-found").await;
    }
    for (body, field) in [
        (json!({ "from": A, "to": A }), "/to"),
        (json!({ "from": "13101X", "to": B }), "/from"),
        (json!({ "from": A, "to": B, "operator_ids": ["NOSUCH"] }), "/operator_ids/0"),
        (json!({ "from": A, "to": B, "operator_ids": [] }), "/operator_ids/0"),
        (json!({ "from": A, "to": B, "operator_ids": ["OP0501", "OP0501"] }), "/operator_ids/1"),
        (json!({ "from": A, "to": B, "extra": 1 }), "/extra"),
    ] {
        let reply = refused(
            &app,
            app.post(MIGRATIONS, Some(&admin), &body),
            StatusCode::UNPROCESSABLE_ENTITY,
            "/problems/validation",
        )
        .await;
        let fields: Vec<&str> =
            reply["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, [field], "{body}: {reply}");
    }
}

/// Registers `n` clerks `BULK00000`… in `code` in one batch through the command layer, without passwords
/// (hashing a thousand passwords would make the test slow, and export and migration never need them).
async fn register_many(app: &TestApp, code: &str, n: usize) {
    let code = MunicipalityCode::parse(code).unwrap();
    let items = (0..n)
        .map(|i| {
            let id = OperatorId::parse(&format!("BULK{i:05}")).unwrap();
            let stream = StreamId::new(Operator::STREAM_TYPE, &operator::stream_key(Some(&code), &id)).unwrap();
            let command = OperatorCommand::Register {
                key: OperatorKey::for_login(Some(&code), &id),
                municipality: Some(code.clone()),
                operator_id: id,
                profile: OperatorProfile::named(OperatorName::parse(&format!("職員 {i}")).unwrap()),
                roles: vec![Role::Clerk],
                business_systems: vec![],
                usable: vec![],
            };
            (stream, command)
        })
        .collect();
    let executed = CommandHandler::<Operator>::new(app.state.store.clone())
        .execute_many(
            &CommandContext::system(CommandId::generate()),
            &Permission::ManageMunicipalities,
            Some(code),
            items,
        )
        .await
        .expect("operators registered");
    let checkpoint = executed.iter().filter_map(|e| e.outcome).map(|o| o.checkpoint).max().unwrap();
    app.state.wait_for_views(checkpoint).await;
}

/// 付帯情報 filters the export like the other conditions: a substring that must match, with the others.
async fn the_export_filters_on_extra_info(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    let file = "operator_id,name,department,extra\n\
                OP0501,窓口 太郎,市民課,夜間窓口 応援\n\
                OP0502,窓口 花子,税務課,夜間窓口\n\
                OP0503,窓口 次郎,市民課,\n";
    upload(&app, A, &token, "text/csv", utf8(file)).await.report();
    for (query, expected) in [
        ("?extra=夜間", &["OP0501", "OP0502"][..]),
        ("?extra=応援", &["OP0501"]),
        ("?extra=夜間&department=税務課", &["OP0502"]),
        ("?extra=%20", &["MGR01", "OP0501", "OP0502", "OP0503"]),
        ("?extra=該当なし", &[]),
    ] {
        let rows = export_rows(&app.get(&export_path(A, query), Some(&token)).await);
        let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, expected, "{query}");
    }
    // Also across pages: the condition is applied to every page, not only the first.
    register_many(&app, A, 600).await;
    let rows = export_rows(&app.get(&export_path(A, "?extra=応援"), Some(&token)).await);
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["OP0501"]);
}

/// 業務内ID travels in the CSV: imported (by those who may map 業務内IDs), exported in the same form, and an
/// entry for a business system the row does not permit is named by row and column.
async fn internal_ids_are_imported_and_exported(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    let file = "オペレータID,氏名・組織名,許可業務,役割,業務内ID\r\n\
                OP0501,窓口 太郎,01 02,clerk,02:A77:窓口%20担当 01:1000000010\r\n\
                OP0502,窓口 花子,01,clerk,\r\n";

    // An operations manager who is no business administrator may register operators but not map 業務内IDs:
    // nothing is written.
    let registrar = manager_of(&app, &admin, "MGR02", &["operations_manager", "clerk"], &["01", "02"]).await;
    let registrar = registrar.login(&app).await;
    let reply = upload(&app, A, &registrar, "text/csv", utf8(file));
    refused(&app, reply, StatusCode::FORBIDDEN, "/problems/forbidden").await;

    // A 業務内ID outside the row's 許可業務, or one that is not an entry: every error named, nothing written.
    let bad = "オペレータID,氏名・組織名,許可業務,業務内ID\r\n\
               OP0501,窓口 太郎,01,02:A77\r\n\
               OP0502,窓口 花子,01,1000000010\r\n";
    let reply = refused(
        &app,
        upload(&app, A, &admin, "text/csv", utf8(bad)),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert_eq!(
        cells(&reply),
        [
            (2, "業務内ID".to_owned(), "/rows/2/internal_ids".to_owned()),
            (3, "業務内ID".to_owned(), "/rows/3/internal_ids".to_owned()),
        ]
    );

    upload(&app, A, &admin, "text/csv", utf8(file)).await.report();
    let op = operator(&app, &admin, A, "OP0501").await;
    assert_eq!(
        op["internal_ids"],
        json!([
            {"business_id": "01", "internal_id": "1000000010", "role": null},
            {"business_id": "02", "internal_id": "A77", "role": "窓口 担当"},
        ])
    );
    assert_eq!(operator(&app, &admin, A, "OP0502").await["internal_ids"], json!([]));

    let reply = app.get(&export_path(A, "?operator_id=OP05"), Some(&token)).await;
    let rows = export_rows(&reply);
    assert_eq!(rows[0][11], "01:1000000010 02:A77:窓口%20担当");
    assert_eq!(rows[1][11], "");
}

/// Migration by file (移行, 手引き I 2.2(6)): the system administrator's export with the password hashes imports
/// into another municipality with everyone's password and 業務内IDs, as the JSON migration keeps them.
async fn a_migration_file_keeps_internal_ids_and_passwords(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = setup(&app).await;
    let token = manager.login(&app).await;
    migration_setup(&app, &token, &admin).await;
    permit(&app, &admin, "02", B).await;

    // Only the system administrator gets the hashes; an ordinary export has none.
    let plain = app.get(&export_path(A, "?operator_id=OP05"), Some(&token)).await;
    assert!(!plain.text.contains("$argon2"), "{}", plain.text);
    app.get(&export_path(A, "?operator_id=OP05&include_password_hash=true"), Some(&token))
        .await
        .problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let file = app.get(&export_path(A, "?operator_id=OP05&include_password_hash=true"), Some(&admin)).await;
    assert_eq!(file.status, StatusCode::OK, "{}", file.text);
    assert!(file.text.contains(&format!("{LABELS},パスワードハッシュ\r\n")), "{}", file.text);
    assert!(file.text.contains(",\"$argon2id$"), "{}", file.text);

    // Nobody but the system administrator imports hashes.
    let manager_b = register_operator(&app.state, Some(B), "MGR02", MANAGER_PASSWORD, &[Role::OperationsManager]).await;
    let token_b = manager_b.login(&app).await;
    refused(
        &app,
        upload(&app, B, &token_b, "text/csv", file.text.clone().into_bytes()),
        StatusCode::FORBIDDEN,
        "/problems/forbidden",
    )
    .await;

    let body =
        imported(&app, &admin, upload(&app, B, &admin, "text/csv; charset=UTF-8", file.text.clone().into_bytes()))
            .await;
    assert_eq!(body["passwords"], "none", "{body}");
    let items = body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.get("password").is_none()), "no password is generated: {items:?}");

    // The same passwords and 業務内IDs in B.
    app.login(Some(B), "OP0501", "Passw0rdOP0501").await;
    app.login(Some(B), "OP0502", "Passw0rdOP0502").await;
    for id in ["OP0501", "OP0502"] {
        let (a, b) = (operator(&app, &admin, A, id).await, operator(&app, &admin, B, id).await);
        assert_eq!(b["internal_ids"], a["internal_ids"], "{id}");
        assert_eq!(b["business_systems"], a["business_systems"], "{id}");
    }
    assert_eq!(
        operator(&app, &admin, B, "OP0501").await["internal_ids"],
        json!([
            {"business_id": "01", "internal_id": "1000000010", "role": "窓口担当"},
            {"business_id": "02", "internal_id": "L77", "role": "窓口担当"},
        ])
    );

    // A hash that is not Argon2id is named, nothing written.
    let forged = file.text.replace("$argon2id$", "$md5$");
    let reply = refused(
        &app,
        upload(&app, "011002", &admin, "text/csv", forged.into_bytes()),
        StatusCode::UNPROCESSABLE_ENTITY,
        "/problems/validation",
    )
    .await;
    assert!(cells(&reply).iter().any(|(_, column, _)| column == "パスワードハッシュ"), "{reply}");
}

/// More operators than one read-model page: the export streams them all, once each, in order, and migrating
/// "everyone" takes them all.
async fn export_and_migration_page_through_a_large_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _) = setup(&app).await;
    register_many(&app, A, 1_234).await;

    let exported = app.get(&export_path(A, ""), Some(&admin)).await;
    let ids: Vec<String> = export_rows(&exported).into_iter().map(|r| r[0].clone()).collect();
    let mut expected: Vec<String> = (0..1_234).map(|i| format!("BULK{i:05}")).collect();
    expected.push("MGR01".to_owned());
    assert_eq!(ids, expected);
    let filtered = export_rows(&app.get(&export_path(A, "?operator_id=BULK00"), Some(&admin)).await);
    assert_eq!(filtered.len(), 1_000);

    let reply = app.post(MIGRATIONS, Some(&admin), &json!({ "from": A, "to": B })).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let migrated = reply.json()["migrated"].as_array().unwrap().clone();
    assert_eq!(migrated.len(), 1_235);
    assert_eq!(migrated.iter().filter(|m| m["password_kept"] == true).count(), 1, "only MGR01 had a password");
    let again = app.get(&export_path(B, ""), Some(&admin)).await;
    // B may use 01 only: the manager keeps 01 and no more.
    let expected = exported.text.replace(",01 02,operations_manager", ",01,operations_manager");
    assert!(again.text == expected, "B has the same operators now");
}

/// The three operations and the job they start are in the OpenAPI document.
async fn the_routes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = app.get("/openapi.json", None).await.json();
    for (path, method) in [
        ("/api/v1/municipalities/{code}/operators/import", "post"),
        ("/api/v1/municipalities/{code}/operators/export", "get"),
        ("/api/v1/operator-migrations", "post"),
        ("/api/v1/jobs/{job_id}", "get"),
        ("/api/v1/jobs/{job_id}/passwords", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    let import = doc["paths"]["/api/v1/municipalities/{code}/operators/import"]["post"].to_string();
    assert!(import.contains("clerk"), "the default role is documented");
    assert!(import.contains("/api/v1/jobs/"), "the job is documented");
    for status in ["202", "429"] {
        assert!(
            doc["paths"]["/api/v1/municipalities/{code}/operators/import"]["post"]["responses"][status].is_object()
        );
    }
    for schema in ["ImportReport", "MigrationInput", "MigrationReport", "JobResource", "JobPasswords"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
    let field = &doc["components"]["schemas"]["ProblemField"]["properties"];
    assert!(field["row"].is_object() && field["column"].is_object(), "{field}");
}

on_both_backends!(
    utf8_with_and_without_bom_and_shift_jis_all_import,
    a_bad_row_in_a_large_file_is_named_and_nothing_is_written,
    every_error_is_named_by_row_and_column,
    duplicate_ids_in_the_file_are_refused,
    an_existing_operator_id_is_refused_naming_its_row,
    every_refusal_of_a_row_is_named_at_once,
    only_those_who_manage_operators_may_import_and_view_may_export,
    the_export_is_filtered_and_has_no_passwords,
    an_export_imports_into_another_municipality,
    migration_keeps_passwords_and_only_permitted_business_systems,
    migrating_everyone_takes_all_operators_that_are_not_revoked,
    migration_is_for_the_system_administrator_and_known_municipalities,
    export_and_migration_page_through_a_large_municipality,
    the_routes_are_documented,
    the_export_filters_on_extra_info,
    internal_ids_are_imported_and_exported,
    a_migration_file_keeps_internal_ids_and_passwords,
);
