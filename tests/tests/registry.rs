//! The resident registry (既存住基システム / 住基ネットCS): the streamed import with its per-row NDJSON report in
//! UTF-8 and Shift_JIS and in both layouts, bad cells named by row and column while the good rows are imported,
//! re-import changing nothing, a changed row becoming one change event naming its fields, a file of several
//! batches, and the prefill of 利用者登録 by registry key and by the four facts read from a card, invisible to
//! other municipalities. Only the municipality's operations manager imports. Every test runs on PostgreSQL and
//! on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_domain::operator::Role;
use cardap_store::StreamId;
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, on_both_backends, register_clerk, register_operator, registry_import_path, spawn_app,
};

/// 千代田区 and 札幌市.
const A: &str = "131016";
const B: &str = "011002";

const UTF8: &str = "text/csv; charset=UTF-8";
const SJIS: &str = "text/csv; charset=Shift_JIS";

/// The 既存住基 export with the Japanese headers.
const REGISTRY_HEADER: &str = "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所";

fn with_bom(body: &str) -> Vec<u8> {
    [b"\xEF\xBB\xBF".as_slice(), body.as_bytes()].concat()
}

fn shift_jis(body: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(body);
    assert!(!unmappable, "test data must be representable in Shift_JIS");
    bytes.into_owned()
}

fn lookup_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/registry/lookup")
}

fn entry_path(code: &str, key: &str) -> String {
    format!("/api/v1/municipalities/{code}/registry/{key}")
}

/// The operators of these tests: an operations manager of A (imports) and clerks of A and B (prefill).
struct Team {
    manager: String,
    clerk_a: String,
    clerk_b: String,
}

async fn setup(app: &TestApp) -> Team {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, A, "千代田区", 1).await;
    app.register_municipality(&admin, B, "札幌市", 2).await;
    let manager = register_operator(&app.state, Some(A), "MGR01", "ManagerPassw0rd", &[Role::OperationsManager]).await;
    let clerk_a = register_clerk(&app.state, A, "CLK01").await;
    let clerk_b = register_clerk(&app.state, B, "CLK02").await;
    Team { manager: manager.login(app).await, clerk_a: clerk_a.login(app).await, clerk_b: clerk_b.login(app).await }
}

/// Imports `body`, asserts a streamed NDJSON answer, and returns its lines (the summary last).
async fn import(app: &TestApp, token: &str, content_type: &str, body: Vec<u8>) -> Vec<Value> {
    let reply = app.post_bytes(&registry_import_path(A), Some(token), content_type, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let lines = reply.ndjson();
    let last = lines.last().expect("at least the summary");
    assert!(last["summary"].is_object(), "the last line is the summary: {}", reply.text);
    lines
}

fn summary(lines: &[Value]) -> &Value {
    &lines.last().expect("a summary")["summary"]
}

/// The row lines as `(row, registry_key, outcome)`.
fn outcomes(lines: &[Value]) -> Vec<(u64, String, String)> {
    lines
        .iter()
        .filter(|l| l.get("row").is_some())
        .map(|l| {
            (
                l["row"].as_u64().unwrap(),
                l["registry_key"].as_str().unwrap_or_default().to_owned(),
                l["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The `(column, field)` of every error of the line about `row`.
fn cell_errors(lines: &[Value], row: u64) -> Vec<(String, String)> {
    let line = lines.iter().find(|l| l["row"] == row).unwrap_or_else(|| panic!("no line about row {row}"));
    assert_eq!(line["outcome"], "error", "{line}");
    line["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "a message: {e}");
            (e["column"].as_str().unwrap().to_owned(), e["field"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn counts(lines: &[Value]) -> (u64, u64, u64, u64, u64) {
    let s = summary(lines);
    let n = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("summary.{k}: {s}"));
    (n("rows"), n("imported"), n("changed"), n("unchanged"), n("errors"))
}

async fn registry_events(app: &TestApp, key: &str) -> Vec<String> {
    let stream = StreamId::new("registry_entry", &format!("{A}.{key}")).unwrap();
    app.state.store.read_stream(&stream, 1).await.unwrap().into_iter().map(|e| e.event_type).collect()
}

async fn both_layouts_in_utf8_and_shift_jis_are_imported_with_a_report_per_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let before = app.event_count().await;

    // 既存住基, UTF-8 with BOM: row 4 has a date outside its era and an unknown sex, row 5 a bad postal code;
    // the blank line 6 keeps its number.
    let file = format!(
        "{REGISTRY_HEADER}\r\n\
         000000001,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n\
         000000002,山田 花子,ﾔﾏﾀﾞ ﾊﾅｺ,19900215,女,1000001,東京都千代田区千代田１－１\r\n\
         000000003,鈴木 一郎,スズキ イチロウ,3640108,X,100-0002,東京都千代田区丸の内１\r\n\
         000000004,佐藤 次郎,サトウ ジロウ,1975-05-05,男,12-345,\r\n\
         \r\n\
         000000005,高橋 三郎,,昭和50年6月1日,1,,\r\n"
    );
    let lines = import(&app, &team.manager, UTF8, with_bom(&file)).await;
    assert_eq!(
        outcomes(&lines),
        [
            (2, "000000001".into(), "imported".into()),
            (3, "000000002".into(), "imported".into()),
            (4, "000000003".into(), "error".into()),
            (5, "000000004".into(), "error".into()),
            (7, "000000005".into(), "imported".into()),
        ]
    );
    assert_eq!(
        cell_errors(&lines, 4),
        [("生年月日".to_owned(), "birth_date".to_owned()), ("性別".to_owned(), "sex".to_owned())]
    );
    assert_eq!(cell_errors(&lines, 5), [("郵便番号".to_owned(), "postal_code".to_owned())]);
    assert_eq!(counts(&lines), (5, 3, 0, 0, 2));
    assert_eq!(summary(&lines)["layout"], "registry");
    assert_eq!(app.event_count().await, before + 3, "one event per good row, none for the bad ones");

    // 住基ネットCS four facts, Shift_JIS: the address is required.
    let file = "宛名番号,氏名,住所,生年月日,性別\r\n\
                000000101,伊藤 四郎,北海道札幌市中央区北１条西２丁目,19601010,男\r\n\
                000000102,渡辺 五月,,19700505,女\r\n\
                000000103,髙橋 六子,東京都千代田区永田町１,4010108,2\r\n";
    let lines = import(&app, &team.manager, SJIS, shift_jis(file)).await;
    assert_eq!(summary(&lines)["layout"], "juki_net_cs");
    assert_eq!(
        outcomes(&lines),
        [
            (2, "000000101".into(), "imported".into()),
            (3, "000000102".into(), "error".into()),
            (4, "000000103".into(), "imported".into()),
        ]
    );
    assert_eq!(cell_errors(&lines, 3), [("住所".to_owned(), "address".to_owned())]);
    assert_eq!(counts(&lines), (3, 2, 0, 0, 1));

    // The English headers with the name in two columns, UTF-8 without BOM, an ignored extra column.
    let file = "registry_key,kanji_family,kanji_given,kana,birth_date,sex,postal_code,address,household\n\
                000000201,中村,七海,ナカムラ ナナミ,2001-07-07,2,100-0005,東京都千代田区丸の内１,H1\n\
                000000202,小林,,コバヤシ,2002-02-02,1,,,H2\n";
    let lines = import(&app, &team.manager, UTF8, file.as_bytes().to_vec()).await;
    assert_eq!(outcomes(&lines)[0], (2, "000000201".into(), "imported".into()));
    assert_eq!(cell_errors(&lines, 3), [("kanji_given".to_owned(), "kanji_given".to_owned())]);
    assert_eq!(summary(&lines)["ignored_columns"], json!(["household"]));

    // What was imported is what the file said, normalised.
    let draft = app.get(&entry_path(A, "000000002"), Some(&team.clerk_a)).await;
    assert_eq!(draft.status, StatusCode::OK, "{}", draft.text);
    assert_eq!(
        draft.json(),
        json!({
            "registry_key": "000000002",
            "kana_name": {"family": "ヤマダ", "given": "ハナコ"},
            "kanji_name": {"family": "山田", "given": "花子"},
            "birth_date": "4020215",
            "sex": "2",
            "postal_code": "100-0001",
            "address1": "東京都千代田区千代田１－１",
        })
    );
    let draft = app.get(&entry_path(A, "000000103"), Some(&team.clerk_a)).await.json();
    assert_eq!(draft["kanji_name"], json!({"family": "髙橋", "given": "六子"}), "Shift_JIS (CP932) decoded");
    assert_eq!(app.get(&entry_path(A, "000000003"), Some(&team.clerk_a)).await.status, StatusCode::NOT_FOUND);
}

async fn reimport_changes_nothing_and_a_changed_row_becomes_one_change_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let file = format!(
        "{REGISTRY_HEADER}\r\n\
         000000001,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n\
         000000002,山田 花子,ヤマダ ハナコ,4020215,2,100-0001,東京都千代田区千代田１－１\r\n\
         000000003,鈴木 一郎,スズキ イチロウ,3500601,1,100-0002,東京都千代田区丸の内１\r\n"
    );
    let lines = import(&app, &team.manager, UTF8, file.clone().into_bytes()).await;
    assert_eq!(counts(&lines), (3, 3, 0, 0, 0));
    let after_first = app.event_count().await;

    // The same file again, this time in Shift_JIS: nothing changes, no row line, no event.
    let lines = import(&app, &team.manager, SJIS, shift_jis(&file)).await;
    assert_eq!(lines.len(), 1, "only the summary: {lines:?}");
    assert_eq!(counts(&lines), (3, 0, 0, 3, 0));
    assert_eq!(app.event_count().await, after_first);

    // 鈴木 moved: his postal code and address changed.
    let changed = file.replace("100-0002,東京都千代田区丸の内１", "100-0005,東京都千代田区丸の内２");
    let lines = import(&app, &team.manager, UTF8, changed.into_bytes()).await;
    assert_eq!(outcomes(&lines), [(4, "000000003".into(), "changed".into())]);
    assert_eq!(lines[0]["changed"], json!(["postal_code", "address"]));
    assert_eq!(counts(&lines), (3, 0, 1, 2, 0));
    assert_eq!(app.event_count().await, after_first + 1, "one change event");
    assert_eq!(registry_events(&app, "000000003").await, ["RegistryEntryImported", "RegistryEntryChanged"]);
    let draft = app.get(&entry_path(A, "000000003"), Some(&team.clerk_a)).await.json();
    assert_eq!(
        (draft["postal_code"].clone(), draft["address1"].clone()),
        (json!("100-0005"), json!("東京都千代田区丸の内２"))
    );

    // A 住基ネットCS file with the same four facts does not clear the kana and postal code it does not carry.
    let cs = "宛名番号,氏名,住所,生年月日,性別\r\n000000001,山田　太郎,東京都千代田区千代田１－１,19890107,1\r\n";
    let lines = import(&app, &team.manager, UTF8, cs.as_bytes().to_vec()).await;
    assert_eq!(counts(&lines), (1, 0, 0, 1, 0), "{lines:?}");
    assert_eq!(app.event_count().await, after_first + 1);
}

async fn a_file_of_several_batches_is_reported_in_file_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let before = app.event_count().await;
    let mut file = String::from("registry_key,name,kana,birth_date,sex,postal_code,address\n");
    for i in 1..=2_600_u32 {
        let key = format!("{:09}", if i == 2_500 { 10 } else { i });
        let date = if i == 1_501 { "3640108".to_owned() } else { format!("{}", 3_500_101 + (i % 28)) };
        let address =
            if i == 2_500 { "東京都千代田区丸の内９" } else { "東京都千代田区千代田１" };
        file.push_str(&format!("{key},試験 太郎,シケン タロウ,{date},1,100-0001,{address}\n"));
    }
    let lines = import(&app, &team.manager, UTF8, file.into_bytes()).await;
    let rows = outcomes(&lines);
    assert_eq!(rows.len(), 2_600);
    assert!(rows.windows(2).all(|w| w[0].0 < w[1].0), "rows in file order");
    assert_eq!(rows[1_500], (1_502, "000001501".into(), "error".into()), "row numbers stay right across batches");
    assert_eq!(cell_errors(&lines, 1_502), [("birth_date".to_owned(), "birth_date".to_owned())]);
    assert_eq!(rows[2_499], (2_501, "000000010".into(), "changed".into()), "a key seen in an earlier batch");
    assert_eq!(counts(&lines), (2_600, 2_598, 1, 0, 1));
    assert_eq!(app.event_count().await, before + 2_599);
    assert!(lines.iter().all(|l| l.get("progress").is_none()), "progress lines only when asked");
}

/// `?progress=true`: a line after every batch with the rows decided and refused so far (for a progress bar), in
/// order among the row lines; the summary still ends the report. A bad value is named.
async fn progress_lines_follow_each_batch_when_asked(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let mut file = String::from("registry_key,name,kana,birth_date,sex,postal_code,address\n");
    for i in 1..=2_100_u32 {
        let date = if i == 1_200 || i == 2_050 { "3641399" } else { "3640107" };
        file.push_str(&format!("{i:09},試験 太郎,シケン タロウ,{date},1,100-0001,東京都千代田区千代田１\n"));
    }
    let path = format!("{}?progress=true", registry_import_path(A));
    let reply = app.post_bytes(&path, Some(&team.manager), UTF8, file.into_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let lines = reply.ndjson();
    let progress: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|l| l.get("progress"))
        .map(|p| (p["rows"].as_u64().unwrap(), p["errors"].as_u64().unwrap()))
        .collect();
    assert_eq!(progress, [(1_000, 0), (2_000, 1), (2_100, 2)]);
    let second_bar = lines.iter().position(|l| l.get("progress").is_some_and(|p| p["rows"] == 2_000)).unwrap();
    assert_eq!(lines[second_bar - 1]["row"], 2_001, "after its batch: rows 1,002–2,001 (the header is row 1)");
    assert!(lines.last().unwrap().get("summary").is_some(), "the summary ends it");

    let bad = format!("{}?progress=maybe", registry_import_path(A));
    let reply = app.post_bytes(&bad, Some(&team.manager), UTF8, "registry_key,name\n".into()).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(reply.error_fields(), ["progress"]);
}

async fn prefill_by_key_and_by_the_facts_of_a_card_stays_in_its_municipality(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let file = format!(
        "{REGISTRY_HEADER}\r\n\
         000000001,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,東京都千代田区千代田１－１\r\n\
         000000002,山田 太郎,ヤマダ タロウ,3640107,1,100-0002,東京都千代田区丸の内１\r\n\
         000000003,山田 花子,ヤマダ ハナコ,3640107,2,100-0001,東京都千代田区千代田１－１\r\n\
         000000004,ＪＯＨＮ　ＳＭＩＴＨ,,19800101,1,,\r\n"
    );
    import(&app, &team.manager, UTF8, file.into_bytes()).await;

    // By key.
    let reply = app.get(&entry_path(A, "000000001"), Some(&team.clerk_a)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let draft = reply.json();
    assert_eq!(draft["kana_name"], json!({"family": "ヤマダ", "given": "タロウ"}));
    assert_eq!(draft["kanji_name"], json!({"family": "山田", "given": "太郎"}));
    assert_eq!((draft["birth_date"].clone(), draft["sex"].clone()), (json!("3640107"), json!("1")));
    assert_eq!(app.get(&entry_path(A, "999999999"), Some(&team.clerk_a)).await.status, StatusCode::NOT_FOUND);

    // The draft registers a resident as it is.
    let reply = app.post(&format!("/api/v1/municipalities/{A}/residents"), Some(&team.clerk_a), &draft).await;
    assert_eq!(reply.status, StatusCode::CREATED, "a draft is a registration body: {}", reply.text);
    assert_eq!(reply.json()["registry_key"], "000000001");

    // By the card's facts: its name without the space, its birth date as YYYYMMDD; the one at the card's address
    // first.
    let facts = json!({"name": "山田太郎", "address": "東京都千代田区丸の内1", "birth_date": "19890107", "sex": "1"});
    let reply = app.post(&lookup_path(A), Some(&team.clerk_a), &facts).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let keys: Vec<_> = reply.json()["items"].as_array().unwrap().iter().map(|d| d["registry_key"].clone()).collect();
    assert_eq!(keys, [json!("000000002"), json!("000000001")]);
    // Half-width letters and a half-width space match the full-width registry name; EYYMMDD works too.
    let facts = json!({"name": "JOHN SMITH", "address": "", "birth_date": "3550101", "sex": "1"});
    let items = app.post(&lookup_path(A), Some(&team.clerk_a), &facts).await.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["kanji_name"], json!({"family": "ＪＯＨＮ", "given": "ＳＭＩＴＨ"}));
    // Birth date and sex must be exact.
    let facts = json!({"name": "山田 太郎", "birth_date": "19890107", "sex": "2"});
    assert_eq!(app.post(&lookup_path(A), Some(&team.clerk_a), &facts).await.json()["items"], json!([]));
    let bad = json!({"name": "山田 太郎", "birth_date": "19890230", "sex": "3"});
    let reply = app.post(&lookup_path(A), Some(&team.clerk_a), &bad).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(reply.error_fields(), ["/birth_date", "/sex"]);

    // Another municipality sees nothing of A's registry.
    let facts = json!({"name": "山田太郎", "birth_date": "19890107", "sex": "1"});
    let reply = app.post(&lookup_path(B), Some(&team.clerk_b), &facts).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["items"], json!([]));
    app.get(&entry_path(B, "000000001"), Some(&team.clerk_b))
        .await
        .problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.get(&entry_path(A, "000000001"), Some(&team.clerk_b))
        .await
        .problem(StatusCode::NOT_FOUND, "/problems/not-found");
    app.post(&lookup_path(A), Some(&team.clerk_b), &facts).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
}

async fn only_the_operations_manager_imports_and_a_bad_file_is_refused_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let file = format!("{REGISTRY_HEADER}\r\n000000001,山田 太郎,ヤマダ タロウ,3640107,1,100-0001,千代田\r\n");
    let before = app.event_count().await;
    let path = registry_import_path(A);

    let reply: Reply = app.post_bytes(&path, Some(&team.clerk_a), UTF8, file.clone().into_bytes()).await;
    reply.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let reply = app.post_bytes(&registry_import_path(B), Some(&team.manager), UTF8, file.clone().into_bytes()).await;
    reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let reply = app.post_bytes(&path, None, UTF8, file.clone().into_bytes()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // A header without the birth date, with an unknown charset, Shift_JIS undeclared, a My Number column.
    let reply = app.post_bytes(&path, Some(&team.manager), UTF8, "宛名番号,氏名,性別\n1,山田 太郎,1\n".into()).await;
    let body = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(body["errors"][0]["row"], 1);
    assert_eq!(body["errors"][0]["column"], "生年月日");
    let reply = app.post_bytes(&path, Some(&team.manager), "text/csv; charset=EUC-JP", file.clone().into_bytes()).await;
    reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type");
    let reply = app.post_bytes(&path, Some(&team.manager), "text/csv", shift_jis(&file)).await;
    reply.problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "/problems/unsupported-media-type");
    let with_my_number = "宛名番号,個人番号,氏名,生年月日,性別\n1,123456789012,山田 太郎,3640107,1\n";
    let reply = app.post_bytes(&path, Some(&team.manager), UTF8, with_my_number.into()).await;
    let body = reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(body["errors"][0]["column"], "個人番号");
    let reply = app.post_bytes(&path, Some(&team.manager), UTF8, vec![]).await;
    reply.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(app.event_count().await, before, "nothing was written");

    // English messages on request.
    let bad = format!("{REGISTRY_HEADER}\r\n000000001,山田 太郎,ヤマダ タロウ,3640108,1,,\r\n");
    let reply = app
        .request(cardap_tests::reqwest::Method::POST, &path, Some(&team.manager))
        .header("content-type", UTF8)
        .header("accept-language", "en")
        .body(bad.into_bytes())
        .send()
        .await
        .unwrap();
    let text = reply.text().await.unwrap();
    assert!(text.contains("the date lies outside its era"), "{text}");
}

/// Rows `from..=to` of a generated 既存住基 file.
fn generated_rows(from: u32, to: u32) -> String {
    (from..=to)
        .map(|i| format!("{i:09},試験 太郎,シケン タロウ,3500101,1,100-0001,東京都千代田区千代田１\r\n"))
        .collect()
}

/// One chunk of a `Transfer-Encoding: chunked` body.
async fn write_chunk(stream: &mut tokio::net::TcpStream, data: &[u8]) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await.unwrap();
    stream.write_all(data).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
}

/// Reads from `stream` into `received` until it holds `needle`.
async fn read_until(stream: &mut tokio::net::TcpStream, received: &mut Vec<u8>, needle: &[u8]) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0_u8; 16 * 1024];
    while !received.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before {:?}", String::from_utf8_lossy(needle));
        received.extend_from_slice(&buf[..n]);
    }
}

/// The report of the first batch arrives while the rest of the file has not even been sent: the body is read
/// and imported as it comes, never gathered first.
async fn the_report_streams_while_the_file_is_still_uploading(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(backend).await;
    let team = setup(&app).await;
    let mut stream = tokio::net::TcpStream::connect(app.socket_addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: cardap\r\nAuthorization: Bearer {}\r\nContent-Type: {UTF8}\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        registry_import_path(A),
        team.manager
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    write_chunk(&mut stream, format!("{REGISTRY_HEADER}\r\n{}", generated_rows(1, 1_500)).as_bytes()).await;

    let mut received = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(30), read_until(&mut stream, &mut received, b"\"row\":1001,"))
        .await
        .expect("the first batch is reported while the upload is still open");
    assert!(received.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&received));
    assert!(!received.windows(10).any(|w| w == b"\"summary\""), "no summary before the end of the file");

    write_chunk(&mut stream, generated_rows(1_501, 2_000).as_bytes()).await;
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), read_until(&mut stream, &mut received, b"\"summary\""))
        .await
        .expect("the summary at the end");
    read_until(&mut stream, &mut received, b"}}\n").await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("\"rows\":2000,\"imported\":2000,"), "{text}");
}

/// The three routes and the shapes of their answers are in the OpenAPI document.
async fn the_routes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = app.get("/openapi.json", None).await.json();
    for (path, method) in [
        ("/api/v1/municipalities/{code}/registry/import", "post"),
        ("/api/v1/municipalities/{code}/registry/{registry_key}", "get"),
        ("/api/v1/municipalities/{code}/registry/lookup", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
    }
    let import = doc["paths"]["/api/v1/municipalities/{code}/registry/import"]["post"].to_string();
    for documented in
        ["application/x-ndjson", "住基ネットCS", "既存住基システム", "kanji_family", "宛名番号", "progress"]
    {
        assert!(import.contains(documented), "{documented} is documented");
    }
    for schema in [
        "ImportLine",
        "ImportRowReport",
        "ImportSummary",
        "ImportProgressLine",
        "RegistryDraft",
        "CardFacts",
        "RegistryMatches",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
}

on_both_backends!(
    both_layouts_in_utf8_and_shift_jis_are_imported_with_a_report_per_row,
    reimport_changes_nothing_and_a_changed_row_becomes_one_change_event,
    a_file_of_several_batches_is_reported_in_file_order,
    progress_lines_follow_each_batch_when_asked,
    prefill_by_key_and_by_the_facts_of_a_card_stays_in_its_municipality,
    only_the_operations_manager_imports_and_a_bad_file_is_refused_whole,
    the_report_streams_while_the_file_is_still_uploading,
    the_routes_are_documented,
);
