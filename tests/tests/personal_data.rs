//! Personal data is erasable from the start (crypto-shredding): what a clerk registers about a resident is
//! stored sealed under that resident's own data key, and destroying the key makes it unreadable everywhere the
//! events go — the event log read raw, a new node, a rebuilt read model — while the events themselves stay.
//! The read models keep it sealed too, so that a raw copy of the database shows nobody's name, address, birth date
//! or contact — neither a resident's nor an operator's. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_domain::operator::Role;
use cardap_store::{Checkpoint, Database, ExpectedVersion, Metadata, NewEvent, ReadFilter, RecordedEvent, StreamId};
use cardap_tests::reqwest::StatusCode;
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, card_path, cards_path, on_both_backends, register_operator, registry_import_path, resident_body,
    resident_path, residents_path, spawn_app, spawn_app_on,
};
use sqlx::Row;

const CHIYODA: &str = "131016";

/// Registers 千代田区 and one resident with an address and a phone number; returns (admin token, resident_id).
async fn registered(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let mut body = resident_body("ヤマダ", "タロウ", "3450101");
    body["address1"] = json!("東京都千代田区千代田１－１");
    body["phone"] = json!("090-1234-5678");
    let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
    (admin, id)
}

/// Every event as stored, read past the sealing layer.
async fn raw_events(app: &TestApp) -> Vec<RecordedEvent> {
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    db.event_store().read_all(Checkpoint::START, 10_000, &ReadFilter::All).await.unwrap()
}

async fn the_log_holds_no_personal_data_in_clear(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, id) = registered(&app).await;

    let raw = raw_events(&app).await;
    let resident: Vec<_> = raw.iter().filter(|e| e.stream_type == "resident").collect();
    assert_eq!(resident.len(), 1);
    let text = resident[0].payload.to_string();
    for clear in ["ヤマダ", "タロウ", "山田", "太郎", "3450101", "千代田", "090-1234-5678"] {
        assert!(!text.contains(clear), "{clear} is stored in clear: {text}");
    }
    assert_eq!(resident[0].payload["personal"]["sealed"], "aes-256-gcm/v1");
    assert_eq!(resident[0].payload["resident_id"], id.as_str(), "ids stay readable");

    // Through the server the clerk reads it back.
    let admin = app.admin_token().await;
    let shown = app.get(&resident_path(CHIYODA, &id), Some(&admin)).await.json();
    assert_eq!(shown["kana_name"]["family"], "ヤマダ");
    assert_eq!(shown["address1"], "東京都千代田区千代田１－１");
}

async fn destroying_the_key_erases_him_everywhere_and_keeps_the_events(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let (admin, id) = registered(&app).await;
    let (_, other) = {
        let body = resident_body("スズキ", "ハナコ", "4010203");
        let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        ((), reply.json()["resident_id"].as_str().unwrap().to_owned())
    };
    let card = app.post(&cards_path(CHIYODA), Some(&admin), &json!({"fid": "FID0001", "resident_id": id})).await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.text);
    let his_events = |events: Vec<RecordedEvent>| {
        events.into_iter().filter(|e| !e.stream_type.starts_with("operator")).map(|e| e.event_id).collect::<Vec<_>>()
    };
    let events_before = his_events(raw_events(&app).await);

    // The erasure workflow comes later; its core is this: destroy the resident's data key.
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let vault = db.key_vault(app.settings.master_key.clone().unwrap()).unwrap();
    vault.destroy(&StreamId::new("resident", &id).unwrap()).await.unwrap();
    // The first node still holds his key in its cache (no erasure event told it: the key was destroyed behind its
    // back), so it stops before the rebuild below, which its running projection would otherwise race with his
    // cached key.
    app.shut_down(std::time::Duration::from_secs(15)).await;

    // A node that never saw his key (no cache) answers with his ids only.
    let node = spawn_app_on(app.settings.clone(), None).await;
    let token = node.admin_token().await;
    let shown = node.get(&resident_path(CHIYODA, &id), Some(&token)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    let shown = shown.json();
    assert_eq!(shown["erased"], true, "{shown}");
    for field in ["kana_name", "kanji_name", "birth_date", "address1", "phone"] {
        assert!(shown[field].is_null(), "{field} still readable: {shown}");
    }
    assert_eq!(shown["active_fid"], "FID0001", "the card link is not personal data");
    let card = node.get(&card_path(CHIYODA, "FID0001"), Some(&token)).await.json();
    assert_eq!(card["resident_id"], id.as_str());

    // Rebuilt from the log, the read model has nothing of him either; the other resident is untouched.
    for runner in node.state.read.runners(node.state.store.clone()) {
        if runner.name() == "residents" {
            runner.reset().await.unwrap();
            runner.catch_up().await.unwrap();
        }
    }
    let found = node.get(&format!("{}?kana_prefix=ヤマダ", residents_path(CHIYODA)), Some(&token)).await.json();
    assert_eq!(found["items"].as_array().unwrap().len(), 0, "{found}");
    let found = node.get(&format!("{}?kana_prefix=スズキ", residents_path(CHIYODA)), Some(&token)).await.json();
    assert_eq!(found["items"][0]["resident_id"], other.as_str(), "{found}");

    // Nothing more can be recorded about him, and the events themselves all stay.
    let change = node.patch(&resident_path(CHIYODA, &id), Some(&token), None, &json!({"occupation": "会社員"})).await;
    assert_eq!(change.status, StatusCode::CONFLICT, "{}", change.text);
    assert_eq!(his_events(raw_events(&app).await), events_before, "only logins were recorded since");
}

/// The personal values of the raw-dump test: none of them may appear anywhere in the database.
const SECRETS: &[&str] = &[
    // A resident: kana and kanji names, address, contact, occupation, birth date (昭和63年4月5日) in every form.
    "ミナミカワ",
    "ヨシツネ",
    "南川",
    "義経",
    "1008999",
    "福井県敦賀市鷹巣町",
    "岐阜県郡上市八幡町",
    "ミサキ荘",
    "080-7777-3131",
    "yoshitsune@example.jp",
    "鷹匠",
    "3630405",
    "19880405",
    "1988-04-05",
    // A registry entry: name, kana, address, birth date (昭和55年9月12日).
    "東雲",
    "葵",
    "シノノメ",
    "アオイ",
    "5918888",
    "和歌山県新宮市熊野川町",
    "高知県四万十市",
    "3550912",
    "19800912",
    "1980-09-12",
    // An operator's management information: name, department, phone, e-mail, info (issue 12: sealed per operator).
    "鷲尾",
    "隼人",
    "情報政策課",
    "03-4444-9191",
    "hayato@example.jp",
    "夜間窓口",
];

/// Every row of every table, each column as text (bytes read as UTF-8, lossily, so that text stored as bytes shows).
async fn dump_every_table(app: &TestApp) -> String {
    let pool = app.state.read.pool();
    let postgres = app.settings.database_url.starts_with("postgres");
    let tables: Vec<String> = if postgres {
        sqlx::query("SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public'")
    } else {
        sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("name"))
    .collect();
    assert!(tables.iter().any(|t| t == "rm_residents") && tables.iter().any(|t| t == "events"), "{tables:?}");
    let mut dump = String::new();
    for table in &tables {
        dump.push_str(&format!("== {table}\n"));
        let sql = if postgres {
            format!("SELECT t::text AS row FROM \"{table}\" t")
        } else {
            // Every column as text, or as its bytes when it holds a blob (declared types such as DATETIME are not
            // decodable through the Any driver).
            let columns: Vec<String> =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                    .fetch_all(pool)
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.get::<String, _>("name"))
                    .collect();
            let select = columns
                .iter()
                .map(|c| {
                    format!(
                        "CASE WHEN typeof(\"{c}\") = 'blob' THEN NULL ELSE CAST(\"{c}\" AS TEXT) END, \
                         CASE WHEN typeof(\"{c}\") = 'blob' THEN \"{c}\" END"
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT {select} FROM \"{table}\"")
        };
        for row in sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await.unwrap() {
            for i in 0..row.len() {
                let text = match row.try_get::<Option<String>, _>(i) {
                    Ok(v) => v.unwrap_or_default(),
                    Err(_) => match row.try_get::<Option<Vec<u8>>, _>(i) {
                        Ok(v) => String::from_utf8_lossy(&v.unwrap_or_default()).into_owned(),
                        Err(_) => match row.try_get::<Option<i64>, _>(i) {
                            Ok(v) => v.map(|v| v.to_string()).unwrap_or_default(),
                            Err(_) => {
                                row.try_get::<Option<f64>, _>(i).unwrap().map(|v| v.to_string()).unwrap_or_default()
                            }
                        },
                    },
                };
                dump.push_str(&text);
                dump.push('\t');
            }
            dump.push('\n');
        }
    }
    dump
}

/// The SQLite database file, its WAL checkpointed into it first, as bytes.
async fn sqlite_file(app: &TestApp) -> Vec<u8> {
    let url = &app.settings.database_url;
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap();
    let path = path.split('?').next().unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(app.state.read.pool()).await.unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    // Whatever a checkpoint could not move yet is in the WAL: it is part of the copy too.
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn a_raw_copy_of_the_database_shows_nobodys_personal_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let body = json!({
        "kana_name": {"family": "ミナミカワ", "given": "ヨシツネ"},
        "kanji_name": {"family": "南川", "given": "義経"},
        "birth_date": "3630405",
        "sex": "1",
        "postal_code": "1008999",
        "address1": "福井県敦賀市鷹巣町３－３",
        "address2": "ミサキ荘２０１",
        "phone": "080-7777-3131",
        "email": "yoshitsune@example.jp",
        "occupation": "鷹匠",
    });
    let reply = app.post(&residents_path(CHIYODA), Some(&admin), &body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
    let manager = register_operator(&app.state, Some(CHIYODA), "MGR01", "ManagerPassw0rd", &[Role::OperationsManager])
        .await
        .login(&app)
        .await;
    let file = String::from(
        "宛名番号,氏名,カナ氏名,生年月日,性別,郵便番号,住所\r\n\
                000000777,東雲 葵,シノノメ アオイ,3550912,2,591-8888,和歌山県新宮市熊野川町１－２\r\n",
    );
    let import = app
        .post_bytes(
            &registry_import_path(CHIYODA),
            Some(&manager),
            "text/csv; charset=UTF-8",
            file.clone().into_bytes(),
        )
        .await;
    assert_eq!(import.status, StatusCode::OK, "{}", import.text);
    assert!(import.text.contains("\"imported\":1"), "{}", import.text);
    // Both change: his new address and the entry's new one are sealed as well.
    let changed = app
        .patch(&resident_path(CHIYODA, &id), Some(&admin), None, &json!({"address1": "岐阜県郡上市八幡町島谷７"}))
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let file = file.replace("和歌山県新宮市熊野川町１－２", "高知県四万十市西土佐江川崎４");
    let import = app
        .post_bytes(&registry_import_path(CHIYODA), Some(&manager), "text/csv; charset=UTF-8", file.into_bytes())
        .await;
    assert!(import.text.contains("\"changed\":1"), "{}", import.text);
    app.state.read.catch_up(app.state.store.clone()).await.unwrap();

    // An operator with his management information, changed once.
    let op = json!({
        "operator_id": "OP0777", "password": "OperatorPassw0rd", "name": "鷲尾 隼人", "department": "情報政策課",
        "phone": "03-4444-9191", "email": "hayato@example.jp", "roles": ["clerk"], "business_systems": [],
    });
    let reply = app.post(&format!("/api/v1/municipalities/{CHIYODA}/operators"), Some(&admin), &op).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let op_path = format!("/api/v1/municipalities/{CHIYODA}/operators/OP0777");
    let reply = app.patch(&op_path, Some(&admin), None, &json!({"info": "夜間窓口"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let found = app.get(&format!("/api/v1/municipalities/{CHIYODA}/operators?name=隼人"), Some(&admin)).await.json();
    assert_eq!(found["items"][0]["phone"], "03-4444-9191", "{found}");

    // The clerk still reads and finds them through the server.
    let shown = app.get(&resident_path(CHIYODA, &id), Some(&admin)).await.json();
    assert_eq!(
        (&shown["address1"], &shown["occupation"]),
        (&json!("岐阜県郡上市八幡町島谷７"), &json!("鷹匠")),
        "{shown}"
    );
    for query in ["kana_prefix=ミナミ", "birth_date=3630405", "kana_prefix=ミナミカワヨシツネ&birth_date=3630405"]
    {
        let found = app.get(&format!("{}?{query}", residents_path(CHIYODA)), Some(&admin)).await.json();
        assert_eq!(found["items"][0]["resident_id"], id.as_str(), "{query}: {found}");
    }
    let entry = app.get(&format!("/api/v1/municipalities/{CHIYODA}/registry/000000777"), Some(&admin)).await;
    assert!(entry.text.contains("東雲") && entry.text.contains("四万十市"), "{}", entry.text);

    // A copy of every table holds none of it.
    let dump = dump_every_table(&app).await;
    assert!(dump.contains(&id), "the dump reaches the read models");
    for secret in SECRETS {
        // The table it was found in, named by the dump's header line before it.
        let table = dump.find(secret).map(|i| dump[dump[..i].rfind("== ").unwrap_or(0)..].lines().next());
        assert!(table.is_none(), "{secret} is stored in clear in {table:?}");
    }
    // Nor do the bytes of the SQLite file.
    if !app.settings.database_url.starts_with("postgres") {
        let bytes = sqlite_file(&app).await;
        for secret in SECRETS {
            assert!(!contains(&bytes, secret), "{secret} is in the SQLite file");
        }
    }
}

/// An operator registered before profiles were sealed (`OperatorRegistered` v2, his profile in clear in the log):
/// the rebuilt directory still shows him, keeps his profile sealed (under a key derived from the master key), and
/// revoking him erases it there.
async fn an_operator_registered_before_sealing_is_shown_kept_sealed_and_erased_on_revocation(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    let code = cardap_domain::MunicipalityCode::parse(CHIYODA).unwrap();
    let id = cardap_domain::operator::OperatorId::parse("OP0888").unwrap();
    let key = cardap_domain::OperatorKey::for_login(Some(&code), &id);
    let legacy = NewEvent::new(
        "OperatorRegistered",
        2,
        json!({
            "key": key.to_string(), "municipality": CHIYODA, "operator_id": "OP0888",
            "profile": {"name": "古川 半蔵", "phone": "03-8888-0000", "email": "hanzo@example.jp"},
            "roles": ["clerk"], "business_systems": [],
        }),
    );
    let db = Database::connect(&app.settings.database_url, 2).await.unwrap();
    let stream = StreamId::new("operator", &format!("{CHIYODA}.OP0888")).unwrap();
    db.event_store().append(&stream, ExpectedVersion::NoStream, vec![legacy], &Metadata::system()).await.unwrap();
    app.state.read.catch_up(app.state.store.clone()).await.unwrap();

    let path = format!("/api/v1/municipalities/{CHIYODA}/operators/OP0888");
    let shown = app.get(&path, Some(&admin)).await.json();
    assert_eq!((&shown["name"], &shown["email"]), (&json!("古川 半蔵"), &json!("hanzo@example.jp")), "{shown}");
    // The rows of the operator directory in the dump: the lines after its header, up to the next table's.
    let directory = |dump: &str| {
        let rows = &dump[dump.find("== rm_operators\n").unwrap()..];
        rows.lines().skip(1).take_while(|l| !l.starts_with("== ")).collect::<Vec<_>>().join("\n")
    };
    let before = directory(&dump_every_table(&app).await);
    assert!(before.contains("OP0888"), "{before}");
    assert!(!before.contains("半蔵") && !before.contains("hanzo@example.jp"), "in clear in the directory: {before}");

    let revoked = app.post_empty(&format!("{path}/revoke"), Some(&admin)).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let shown = app.get(&path, Some(&admin)).await.json();
    assert_eq!((&shown["revoked"], &shown["name"], &shown["email"]), (&json!(true), &Value::Null, &Value::Null));
}

on_both_backends!(
    an_operator_registered_before_sealing_is_shown_kept_sealed_and_erased_on_revocation,
    the_log_holds_no_personal_data_in_clear,
    destroying_the_key_erases_him_everywhere_and_keeps_the_events,
    a_raw_copy_of_the_database_shows_nobodys_personal_data
);
