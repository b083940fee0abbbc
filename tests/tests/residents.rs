//! `/api/v1/municipalities/{code}/resident-settings` and `…/residents` as the counter uses them (利用者登録,
//! 手引き I 1.1): the municipality's own fields, catalog and presets; registering a resident with every field
//! rule named by its JSON pointer and all problems of a body reported together; half-width kana; searching by
//! kana prefix, birth date and FID in pages; PATCH as a merge under `If-Match`; a retry with the same
//! `Idempotency-Key`; and residents of another municipality, who do not exist for the clerk. After every refused
//! request the event log is unchanged. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, card_path, cards_path, on_both_backends, resident_body, resident_path,
    resident_settings_path, residents_path, spawn_app,
};

/// 千代田区: the clerk's municipality.
const CHIYODA: &str = "131016";
/// 札幌市: another municipality.
const SAPPORO: &str = "011002";

/// The settings of 千代田区: a required choice, an optional number and text; APs 01 and 02, 01 preset.
fn settings() -> Value {
    json!({
        "custom_fields": [
            {"key": "school_district", "label": "学区", "type": "choice", "options": ["第一", "第二"],
                "required": true},
            {"key": "household_size", "label": "世帯人数", "type": "number", "min": 1, "max": 20},
            {"key": "note", "label": "備考", "type": "text", "max_length": 20},
        ],
        "catalog": ["01", "02"],
        "presets": ["01"],
    })
}

/// `code` registered, permitted 01 and 02, configured with [`settings`]; returns (admin, clerk) tokens.
async fn municipality(app: &TestApp, admin: &str, code: &str, name: &str, order: i64) -> String {
    app.register_municipality(admin, code, name, order).await;
    app.permit(admin, "01", code).await;
    app.permit(admin, "02", code).await;
    let reply = app.put(&resident_settings_path(code), Some(admin), &settings()).await;
    assert_eq!(reply.status, StatusCode::OK, "settings of {code}: {}", reply.text);
    app.clerk_token(admin, code, &format!("CL{code}"), &["01", "02"]).await
}

async fn chiyoda(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    let clerk = municipality(app, &admin, CHIYODA, "千代田区", 1).await;
    (admin, clerk)
}

/// A resident of 千代田区 with its required custom field.
fn resident(kana_family: &str, kana_given: &str, birth_date: &str) -> Value {
    let mut body = resident_body(kana_family, kana_given, birth_date);
    body["custom_fields"] = json!({"school_district": "第一"});
    body
}

/// Every field of the registration screen, valid.
fn full() -> Value {
    json!({
        "kana_name": {"family": "ヤマダ", "given": "タロウ"},
        "kanji_name": {"family": "山田", "given": "太郎"},
        "birth_date": "3450101",
        "sex": "1",
        "postal_code": "100-0001",
        "address1": "東京都千代田区千代田１－１",
        "address2": "千代田ハイツ１０１",
        "phone": "03-3333-4444",
        "email": "taro@example.jp",
        "occupation": "会社員",
        "custom_fields": {"school_district": "第一", "household_size": 3, "note": "窓口で確認済み"},
    })
}

/// Registers a resident; panics unless 201. Returns the body.
async fn register(app: &TestApp, token: &str, body: &Value) -> Value {
    let reply = app.post(&residents_path(CHIYODA), Some(token), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "register {body}: {}", reply.text);
    reply.json()
}

fn id_of(resident: &Value) -> String {
    resident["resident_id"].as_str().expect("resident_id").to_owned()
}

/// Sends the request behind `reply`, asserts the refusal, and that the event log did not change.
async fn refused(app: &TestApp, reply: impl Future<Output = Reply>, status: StatusCode, kind: &str) -> Reply {
    let before = app.event_count().await;
    let reply = reply.await;
    reply.problem(status, kind);
    assert_eq!(app.event_count().await, before, "a refused request wrote events: {}", reply.text);
    reply
}

/// Asserts a 422 that names exactly `fields` (in any order), and that nothing was written.
async fn invalid(app: &TestApp, reply: impl Future<Output = Reply>, fields: &[&str]) -> Reply {
    let reply = refused(app, reply, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
    let named: BTreeSet<String> = reply.error_fields().into_iter().collect();
    let expected: BTreeSet<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    assert_eq!(named, expected, "{}", reply.text);
    reply
}

/// The kana names (family + given) of a search page, in order.
fn kana(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| format!("{}{}", r["kana_name"]["family"].as_str().unwrap(), r["kana_name"]["given"].as_str().unwrap()))
        .collect()
}

async fn search(app: &TestApp, token: &str, query: &str) -> Value {
    let reply = app.get(&format!("{}?{query}", residents_path(CHIYODA)), Some(token)).await;
    assert_eq!(reply.status, StatusCode::OK, "search {query}: {}", reply.text);
    reply.json()
}

async fn settings_are_replaced_whole_under_if_match(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    app.permit(&admin, "02", CHIYODA).await;
    let clerk = app.clerk_token(&admin, CHIYODA, "CL0001", &["01"]).await;
    let path = resident_settings_path(CHIYODA);

    // Never configured: nothing, version 0.
    let initial = app.get(&path, Some(&clerk)).await;
    assert_eq!(initial.status, StatusCode::OK, "{}", initial.text);
    assert_eq!(initial.etag(), "\"0\"");
    assert_eq!(initial.json(), json!({"custom_fields": [], "catalog": [], "presets": [], "version": 0}));

    // A clerk may read, not configure.
    refused(&app, app.put(&path, Some(&clerk), &settings()), StatusCode::FORBIDDEN, "/problems/forbidden").await;

    let before = app.event_count().await;
    let reply = app.send_with(Method::PUT, &path, Some(&admin), &[("if-match", "\"0\"")], Some(&settings())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"1\"");
    assert_eq!(app.event_count().await, before + 1);
    let shown = reply.json();
    assert_eq!(shown["catalog"], json!(["01", "02"]));
    assert_eq!(shown["presets"], json!(["01"]));
    assert_eq!(
        shown["custom_fields"],
        json!([
            {"key": "school_district", "label": "学区", "type": "choice", "options": ["第一", "第二"],
                "required": true},
            {"key": "household_size", "label": "世帯人数", "type": "number", "min": 1, "max": 20, "required": false},
            {"key": "note", "label": "備考", "type": "text", "max_length": 20, "required": false},
        ])
    );
    // What GET shows can be PUT back as it is (less its version).
    let got = app.get(&path, Some(&clerk)).await;
    assert_eq!(got.etag(), "\"1\"");
    assert_eq!(got.json(), shown);
    let mut again = shown.clone();
    again.as_object_mut().unwrap().remove("version");
    let before = app.event_count().await;
    let same = app.put(&path, Some(&admin), &again).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    assert_eq!(same.etag(), "\"1\"", "identical settings change nothing");
    assert_eq!(app.event_count().await, before);

    // A stale If-Match is refused.
    let stale = app.send_with(
        Method::PUT,
        &path,
        Some(&admin),
        &[("if-match", "\"0\"")],
        Some(&json!({
        "custom_fields": [], "catalog": [], "presets": []})),
    );
    refused(&app, stale, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;

    // Another municipality's settings do not exist for the clerk.
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    let other = app.get(&resident_settings_path(SAPPORO), Some(&clerk)).await;
    other.problem(StatusCode::NOT_FOUND, "/problems/not-found");
}

async fn bad_settings_name_every_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    let path = resident_settings_path(CHIYODA);
    let body = json!({
        "custom_fields": [
            {"key": "school_district", "label": "学区", "type": "choice", "options": ["第一"], "required": true},
            {"key": "school_district", "label": "学区2", "type": "text"},
            {"key": "Bad-Key", "label": "", "type": "memo"},
            {"key": "note", "label": "備考", "type": "text", "max_length": 201, "options": ["a"]},
            {"key": "grade", "label": "学年", "type": "choice", "options": ["1年", " 1年 ", ""]},
            {"key": "size", "label": "人数", "type": "number", "min": 5, "max": 1},
            {"key": "pick", "label": "選択", "type": "choice"},
        ],
        "catalog": ["00", "02", "01", "01", "1"],
        "presets": ["10"],
    });

    let reply = invalid(
        &app,
        app.put(&path, Some(&admin), &body),
        &[
            "/custom_fields/1/key",
            "/custom_fields/2/key",
            "/custom_fields/2/label",
            "/custom_fields/2/type",
            "/custom_fields/3/max_length",
            "/custom_fields/3/options",
            "/custom_fields/4/options/1",
            "/custom_fields/4/options/2",
            "/custom_fields/5/min",
            "/custom_fields/6/options",
            "/catalog/0",
            "/catalog/1",
            "/catalog/3",
            "/catalog/4",
            "/presets/0",
        ],
    )
    .await;
    assert_eq!(reply.error_message("/custom_fields/1/key"), "独自項目「school_district」が重複しています");
    assert_eq!(reply.error_message("/catalog/0"), "業務ID 00 はカードAPではありません");
    assert_eq!(reply.error_message("/catalog/1"), "業務ID 02 の共同利用が許可されていません");
    assert_eq!(reply.error_message("/presets/0"), "プリセットAP（業務ID 10）が搭載可能APに含まれていません");

    // More than 20 fields; English on request.
    let many: Vec<Value> =
        (0..21).map(|i| json!({"key": format!("f{i}"), "label": format!("項目{i}"), "type": "date"})).collect();
    let too_many = json!({"custom_fields": many, "catalog": [], "presets": []});
    let en = app.send_with(Method::PUT, &path, Some(&admin), &[("accept-language", "en")], Some(&too_many));
    let reply = invalid(&app, en, &["/custom_fields"]).await;
    assert_eq!(reply.error_message("/custom_fields"), "at most 20 custom fields may be defined");

    // Every list is required; unknown fields are refused.
    invalid(&app, app.put(&path, Some(&admin), &json!({"catalog": [], "presets": []})), &["/custom_fields"]).await;
    let unknown = json!({"custom_fields": [], "catalog": [], "presets": [], "version": 1});
    invalid(&app, app.put(&path, Some(&admin), &unknown), &["/version"]).await;
}

async fn a_resident_is_registered_with_every_field_and_read_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let before = app.event_count().await;

    let reply = app.post(&residents_path(CHIYODA), Some(&clerk), &full()).await;

    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(app.event_count().await, before + 1);
    assert_eq!(reply.etag(), "\"1\"");
    let created = reply.json();
    let id = id_of(&created);
    assert_eq!(reply.header("location"), Some(resident_path(CHIYODA, &id).as_str()));
    let mut expected = full();
    for (k, v) in [
        ("resident_id", json!(id)),
        ("birth_date_label", json!("昭和45年1月1日")),
        ("registry_key", Value::Null),
        ("moved_out", json!(false)),
        ("active_fid", Value::Null),
        ("erased", json!(false)),
        ("version", json!(1)),
    ] {
        expected[k] = v;
    }
    assert_eq!(created, expected);

    let shown = app.get(&resident_path(CHIYODA, &id), Some(&clerk)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.etag(), "\"1\"");
    assert_eq!(shown.json(), expected, "GET shows what POST answered");

    // Only the required fields; an empty optional field is no value; half-width input of an address is widened.
    let mut minimal = resident("ｽｽﾞｷ", "ﾊﾅｺ", "4010108");
    minimal["email"] = json!("");
    minimal["address1"] = json!("千代田区1-1 ABC");
    minimal["sex"] = json!("2");
    let body = register(&app, &clerk, &minimal).await;
    assert_eq!(body["kana_name"], json!({"family": "スズキ", "given": "ハナコ"}), "half-width kana converted");
    assert_eq!(body["address1"], "千代田区１－１\u{3000}ＡＢＣ");
    assert_eq!(body["birth_date_label"], "平成元年1月8日");
    assert_eq!(body["custom_fields"], json!({"school_district": "第一"}));
    for field in ["postal_code", "address2", "phone", "email", "occupation"] {
        assert_eq!(body[field], Value::Null, "{field}: {body}");
    }
    assert_ne!(id_of(&body), id, "every registration is a new resident");

    // Nonsense ids are simply not found.
    let missing = app.get(&resident_path(CHIYODA, "not-a-uuid"), Some(&clerk)).await;
    missing.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let nobody = app.get(&resident_path(CHIYODA, &uuid::Uuid::new_v4().to_string()), Some(&clerk)).await;
    nobody.problem(StatusCode::NOT_FOUND, "/problems/not-found");
}

async fn every_bad_field_is_named_with_the_clerks_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let path = residents_path(CHIYODA);
    let with = |pointer: &str, value: Value| {
        let mut body = full();
        let mut target = &mut body;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for part in &parts[..parts.len() - 1] {
            target = &mut target[*part];
        }
        target[parts[parts.len() - 1]] = value;
        body
    };

    for (body, field, message) in [
        (
            with("/kana_name/family", json!("やまだ")),
            "/kana_name/family",
            "全角カタカナで入力してください（「や」は使用できません）",
        ),
        (
            with("/kana_name/given", json!("タロウ taro")),
            "/kana_name/given",
            "全角カタカナで入力してください（半角スペースは使用できません）",
        ),
        (with("/kana_name/family", json!("")), "/kana_name/family", "入力してください"),
        (with("/kana_name/family", json!("ア".repeat(51))), "/kana_name/family", "50文字以内で入力してください"),
        (
            with("/kanji_name/family", json!("Yamada")),
            "/kanji_name/family",
            "全角で入力してください（「Y」は使用できません）",
        ),
        (with("/kanji_name/given", Value::Null), "/kanji_name/given", "必須項目です"),
        (with("/birth_date", json!("3640108")), "/birth_date", "元号の期間外の日付です"),
        (with("/birth_date", json!("4050229")), "/birth_date", "存在しない日付です"),
        (
            with("/birth_date", json!("6010101")),
            "/birth_date",
            "元号は1（明治）・2（大正）・3（昭和）・4（平成）・5（令和）のいずれかで入力してください",
        ),
        (with("/birth_date", json!("S450101")), "/birth_date", "半角数字で入力してください"),
        (with("/birth_date", json!("345011")), "/birth_date", "7桁で入力してください"),
        (with("/sex", json!("3")), "/sex", "「3」は選択できない値です"),
        (
            with("/postal_code", json!("1000")),
            "/postal_code",
            "郵便番号は半角数字7桁（例: 100-0001）で入力してください",
        ),
        (with("/address1", json!("あ".repeat(101))), "/address1", "100文字以内で入力してください"),
        (
            with("/phone", json!("03-3333-444")),
            "/phone",
            "電話番号は半角数字とハイフンで入力してください（10桁、050・060・070・080・090で始まる番号は11桁）",
        ),
        (with("/email", json!("taro")), "/email", "メールアドレスの形式が正しくありません（例: taro@example.jp）"),
        (with("/occupation", json!("職".repeat(51))), "/occupation", "50文字以内で入力してください"),
        (
            with("/custom_fields/school_district", json!("第三")),
            "/custom_fields/school_district",
            "次のいずれかを選択してください: 第一、第二",
        ),
        (with("/custom_fields/school_district", Value::Null), "/custom_fields/school_district", "入力してください"),
        (
            with("/custom_fields/household_size", json!(25)),
            "/custom_fields/household_size",
            "1から20までの数値で入力してください",
        ),
        (with("/custom_fields/household_size", json!("三")), "/custom_fields/household_size", "整数で入力してください"),
        (with("/custom_fields/note", json!("あ".repeat(21))), "/custom_fields/note", "20文字以内で入力してください"),
        (with("/custom_fields/nope", json!("x")), "/custom_fields/nope", "この項目は市町村で定義されていません"),
        (with("/registry_key", json!("00-12")), "/registry_key", "半角英数字で入力してください"),
        (with("/nickname", json!("タロ")), "/nickname", "この項目は受け付けられません"),
        (
            with("/resident_id", json!("0b7a0c2e-3f7d-5a1e-9b8e-2d5c1f0a6e11")),
            "/resident_id",
            "この項目は受け付けられません",
        ),
        (with("/sex", json!(1)), "/sex", "値の型が正しくありません"),
    ] {
        let reply = invalid(&app, app.post(&path, Some(&clerk), &body), &[field]).await;
        assert_eq!(reply.error_message(field), message, "{field}");
    }

    // A required custom field left out.
    let mut body = full();
    body["custom_fields"] = json!({});
    invalid(&app, app.post(&path, Some(&clerk), &body), &["/custom_fields/school_district"]).await;

    // Every problem of a body at once.
    let all = json!({
        "kana_name": {"family": "やまだ", "given": ""},
        "kanji_name": {"family": "Yamada"},
        "birth_date": "3640108",
        "sex": "3",
        "postal_code": "1000",
        "phone": "03-3333-444",
        "email": "taro",
        "custom_fields": {"school_district": "第三", "household_size": 25, "nope": "x"},
    });
    invalid(
        &app,
        app.post(&path, Some(&clerk), &all),
        &[
            "/kana_name/family",
            "/kana_name/given",
            "/kanji_name/family",
            "/kanji_name/given",
            "/birth_date",
            "/sex",
            "/postal_code",
            "/phone",
            "/email",
            "/custom_fields/school_district",
            "/custom_fields/household_size",
            "/custom_fields/nope",
        ],
    )
    .await;
    invalid(
        &app,
        app.post(&path, Some(&clerk), &json!({})),
        &[
            "/kana_name/family",
            "/kana_name/given",
            "/kanji_name/family",
            "/kanji_name/given",
            "/birth_date",
            "/sex",
            "/custom_fields/school_district",
        ],
    )
    .await;

    // In English on request, with the same pointers.
    let en =
        app.send_with(Method::POST, &path, Some(&clerk), &[("accept-language", "en")], Some(&with("/sex", json!("3"))));
    let reply = invalid(&app, en, &["/sex"]).await;
    assert_eq!(reply.error_message("/sex"), "\"3\" is not one of the allowed values");
}

async fn residents_are_searched_by_kana_prefix_birth_date_and_fid(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let taro = register(&app, &clerk, &resident("ヤマダ", "タロウ", "3450101")).await;
    register(&app, &clerk, &resident("ヤマダ", "ハナコ", "3470505")).await;
    register(&app, &clerk, &resident("ヤマモト", "ジロウ", "3450101")).await;
    let ichiro = register(&app, &clerk, &resident("スズキ", "イチロウ", "4010108")).await;
    let card = app.post(&cards_path(CHIYODA), Some(&clerk), &json!({"fid": "FID0001", "resident_id": id_of(&ichiro)}));
    assert_eq!(card.await.status, StatusCode::CREATED);

    assert_eq!(
        kana(&search(&app, &clerk, "").await),
        ["スズキイチロウ", "ヤマダタロウ", "ヤマダハナコ", "ヤマモトジロウ"]
    );
    assert_eq!(kana(&search(&app, &clerk, "kana_prefix=ヤマダ").await), ["ヤマダタロウ", "ヤマダハナコ"]);
    // The prefix runs from the family into the given name; spaces and half-width kana are taken as typed.
    assert_eq!(kana(&search(&app, &clerk, "kana_prefix=ヤマダタ").await), ["ヤマダタロウ"]);
    assert_eq!(kana(&search(&app, &clerk, "kana_prefix=ﾔﾏﾀﾞ%20ﾀ").await), ["ヤマダタロウ"]);
    assert_eq!(kana(&search(&app, &clerk, "kana_prefix=ﾔﾏ").await), ["ヤマダタロウ", "ヤマダハナコ", "ヤマモトジロウ"]);
    assert_eq!(kana(&search(&app, &clerk, "birth_date=3450101").await), ["ヤマダタロウ", "ヤマモトジロウ"]);
    assert_eq!(kana(&search(&app, &clerk, "kana_prefix=ヤマモ&birth_date=3450101").await), ["ヤマモトジロウ"]);
    assert_eq!(kana(&search(&app, &clerk, "fid=FID0001").await), ["スズキイチロウ"]);
    assert_eq!(kana(&search(&app, &clerk, "fid=FID9999").await), Vec::<String>::new());
    assert_eq!(kana(&search(&app, &clerk, "kana_prefix=ワ").await), Vec::<String>::new());
    let found = search(&app, &clerk, "kana_prefix=ヤマダタ").await;
    assert_eq!(found["items"][0], app.get(&resident_path(CHIYODA, &id_of(&taro)), Some(&clerk)).await.json());
    assert_eq!(found["items"][0]["birth_date_label"], "昭和45年1月1日");
    assert_eq!(
        search(&app, &clerk, "fid=FID0001").await["items"][0]["active_fid"],
        "FID0001",
        "the search shows his card"
    );

    // Pages: they follow each other in registration order (names are only searchable through their blind index),
    // each page sorted by kana; together they hold every match once.
    let first = search(&app, &clerk, "kana_prefix=ヤマ&limit=2").await;
    assert_eq!(kana(&first).len(), 2);
    assert!(kana(&first).is_sorted(), "{first}");
    let cursor = first["next_cursor"].as_str().expect("a next page").to_owned();
    let second = search(&app, &clerk, &format!("kana_prefix=ヤマ&limit=2&cursor={cursor}")).await;
    assert_eq!(kana(&second).len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);
    let mut both = [kana(&first), kana(&second)].concat();
    both.sort();
    assert_eq!(both, ["ヤマダタロウ", "ヤマダハナコ", "ヤマモトジロウ"]);

    // Bad conditions are named.
    let bad = |query: &str| app.get(&format!("{}?{query}", residents_path(CHIYODA)), Some(&clerk));
    for (query, fields) in [
        ("birth_date=3640108", vec!["/birth_date"]),
        ("kana_prefix=やまだ", vec!["/kana_prefix"]),
        ("fid=FID-1", vec!["/fid"]),
        ("limit=0", vec!["/limit"]),
        ("limit=many", vec!["/limit"]),
        ("cursor=nonsense", vec!["/cursor"]),
        ("birth_date=1&fid=%E3%81%82", vec!["/birth_date", "/fid"]),
    ] {
        let fields: Vec<&str> = fields;
        invalid(&app, bad(query), &fields).await;
    }
}

async fn a_change_merges_into_the_resident_under_if_match(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let created = register(&app, &clerk, &full()).await;
    let path = resident_path(CHIYODA, &id_of(&created));
    let before = app.event_count().await;

    let change = json!({
        "kana_name": {"family": "ﾔﾏﾓﾄ"},
        "address1": "東京都千代田区丸の内１－１",
        "phone": null,
        "email": "",
        "custom_fields": {"household_size": 4, "note": null},
    });
    let reply = app.patch(&path, Some(&clerk), Some("\"1\""), &change).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.etag(), "\"2\"");
    assert_eq!(app.event_count().await, before + 1, "one event for the whole change");
    let changed = reply.json();
    assert_eq!(changed["kana_name"], json!({"family": "ヤマモト", "given": "タロウ"}), "the other part stays");
    assert_eq!(changed["kanji_name"], created["kanji_name"]);
    assert_eq!(changed["address1"], "東京都千代田区丸の内１－１");
    assert_eq!(changed["address2"], created["address2"]);
    assert_eq!(changed["phone"], Value::Null);
    assert_eq!(changed["email"], Value::Null);
    assert_eq!(changed["custom_fields"], json!({"school_district": "第一", "household_size": 4}));
    assert_eq!(changed["version"], 2);
    assert_eq!(app.get(&path, Some(&clerk)).await.json(), changed);
    let found = search(&app, &clerk, "kana_prefix=ヤマモトタ").await;
    assert_eq!(found["items"][0], changed, "the search shows the change");

    // The same values again: nothing to record.
    let same = app.patch(&path, Some(&clerk), None, &change).await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.text);
    assert_eq!(same.etag(), "\"2\"");
    assert_eq!(app.event_count().await, before + 1);

    // A stale If-Match.
    let stale = app.patch(&path, Some(&clerk), Some("\"1\""), &json!({"occupation": "自営業"}));
    refused(&app, stale, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    // Required fields cannot be cleared; bad values are named; nothing of a refused change is applied.
    for (body, fields) in [
        (json!({"sex": null}), vec!["/sex"]),
        (json!({"birth_date": null, "occupation": "自営業"}), vec!["/birth_date"]),
        (json!({"kana_name": null}), vec!["/kana_name/family", "/kana_name/given"]),
        (json!({"kanji_name": {"given": null}}), vec!["/kanji_name/given"]),
        (json!({"custom_fields": {"school_district": null}}), vec!["/custom_fields/school_district"]),
        (
            json!({"phone": "1", "custom_fields": {"household_size": 0}}),
            vec!["/phone", "/custom_fields/household_size"],
        ),
        (json!({"resident_id": "x"}), vec!["/resident_id"]),
    ] {
        let fields: Vec<&str> = fields;
        invalid(&app, app.patch(&path, Some(&clerk), None, &body), &fields).await;
    }
    assert_eq!(app.get(&path, Some(&clerk)).await.json(), changed);
}

/// Two clerks change the two halves of a name at the same moment, without If-Match: both changes survive (the
/// half a PATCH does not name is merged inside the decision, not from a read made before it).
async fn concurrent_changes_of_the_two_name_halves_both_survive(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    for round in 0..12 {
        let created = register(&app, &clerk, &full()).await;
        let path = resident_path(CHIYODA, &id_of(&created));
        let family = app.patch(&path, Some(&clerk), None, &json!({"kanji_name": {"family": "田中"}}));
        let given = app.patch(&path, Some(&clerk), None, &json!({"kanji_name": {"given": "次郎"}}));
        let (family, given) = tokio::join!(family, given);
        assert_eq!(family.status, StatusCode::OK, "{}", family.text);
        assert_eq!(given.status, StatusCode::OK, "{}", given.text);
        let now = app.get(&path, Some(&clerk)).await.json();
        assert_eq!(now["kanji_name"], json!({"family": "田中", "given": "次郎"}), "round {round}: a half was lost");
    }
}

async fn a_retry_with_the_same_idempotency_key_registers_nobody_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let path = residents_path(CHIYODA);
    let post = |key: &str| {
        app.send_with(
            Method::POST,
            &path,
            Some(&clerk),
            &[("idempotency-key", key)],
            Some(&resident("ヤマダ", "タロウ", "3450101")),
        )
    };
    let before = app.event_count().await;

    let first = post("9f1c-0001").await;
    let retry = post("9f1c-0001").await;

    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.text);
    assert_eq!(retry.json(), first.json(), "the retry answers the same resident");
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(app.event_count().await, before + 1, "one registration");
    assert_eq!(search(&app, &clerk, "").await["items"].as_array().unwrap().len(), 1);

    // Another key is another registration.
    let other = post("9f1c-0002").await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text);
    assert_ne!(id_of(&other.json()), id_of(&first.json()));
    assert_eq!(app.event_count().await, before + 2);
}

async fn residents_of_another_municipality_do_not_exist(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk_a) = chiyoda(&app).await;
    let clerk_b = municipality(&app, &admin, SAPPORO, "札幌市", 2).await;
    let theirs = register(&app, &clerk_a, &full()).await;
    let id = id_of(&theirs);
    let nobody = uuid::Uuid::new_v4().to_string();
    let not_found = app.get(&resident_path(SAPPORO, &nobody), Some(&clerk_b)).await;
    not_found.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    // Through B's own path and through A's: exactly as for a resident who does not exist.
    for path in [resident_path(SAPPORO, &id), resident_path(CHIYODA, &id)] {
        let reply = app.get(&path, Some(&clerk_b)).await;
        reply.problem(StatusCode::NOT_FOUND, "/problems/not-found");
        assert_eq!(reply.text, not_found.text, "byte-identical to a resident who does not exist");
        let change = app.patch(&path, Some(&clerk_b), None, &json!({"occupation": "自営業"}));
        let reply = refused(&app, change, StatusCode::NOT_FOUND, "/problems/not-found").await;
        assert_eq!(reply.text, not_found.text);
        let out = app.post_empty(&format!("{path}/move-out"), Some(&clerk_b));
        refused(&app, out, StatusCode::NOT_FOUND, "/problems/not-found").await;
    }
    let register_there = app.post(&residents_path(CHIYODA), Some(&clerk_b), &full());
    refused(&app, register_there, StatusCode::NOT_FOUND, "/problems/not-found").await;
    let search_there = app.get(&residents_path(CHIYODA), Some(&clerk_b)).await;
    search_there.problem(StatusCode::NOT_FOUND, "/problems/not-found");

    // B's search never shows A's residents, whatever the condition.
    register(&app, &clerk_a, &resident("ヤマダ", "ハナコ", "3450101")).await;
    for query in ["", "kana_prefix=ヤマダ", "birth_date=3450101"] {
        let reply = app.get(&format!("{}?{query}", residents_path(SAPPORO)), Some(&clerk_b)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.json(), json!({"items": [], "next_cursor": null}), "{query}");
    }
    // A still sees his own.
    assert_eq!(search(&app, &clerk_a, "kana_prefix=ヤマダ").await["items"].as_array().unwrap().len(), 2);
    let card = card_path(CHIYODA, "FID0001");
    assert_eq!(app.get(&card, Some(&clerk_a)).await.status, StatusCode::NOT_FOUND);
}

async fn a_resident_moves_out_once_his_card_is_abolished(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, clerk) = chiyoda(&app).await;
    let created = register(&app, &clerk, &full()).await;
    let path = resident_path(CHIYODA, &id_of(&created));
    let card = app.post(&cards_path(CHIYODA), Some(&clerk), &json!({"fid": "FID0001", "resident_id": id_of(&created)}));
    assert_eq!(card.await.status, StatusCode::CREATED);

    let out = app.post_empty(&format!("{path}/move-out"), Some(&clerk));
    let reply = refused(&app, out, StatusCode::CONFLICT, "/problems/card-still-active").await;
    assert!(reply.json()["detail"].as_str().unwrap().contains("FID0001"), "{}", reply.text);

    let abolished = app.post_empty(&format!("{}/abolish", card_path(CHIYODA, "FID0001")), Some(&clerk)).await;
    assert_eq!(abolished.status, StatusCode::OK, "{}", abolished.text);
    let current = app.get(&path, Some(&clerk)).await;
    assert_eq!(current.json()["active_fid"], Value::Null);
    let stale = app.send_with(Method::POST, &format!("{path}/move-out"), Some(&clerk), &[("if-match", "\"1\"")], None);
    refused(&app, stale, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
    let moved = app
        .send_with(Method::POST, &format!("{path}/move-out"), Some(&clerk), &[("if-match", current.etag())], None)
        .await;

    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    assert_eq!(moved.json()["moved_out"], true);
    let change = app.patch(&path, Some(&clerk), None, &json!({"occupation": "自営業"}));
    refused(&app, change, StatusCode::CONFLICT, "/problems/resident-moved-out").await;
    let again = app.post_empty(&format!("{path}/move-out"), Some(&clerk));
    refused(&app, again, StatusCode::CONFLICT, "/problems/resident-moved-out").await;
    let new_card =
        app.post(&cards_path(CHIYODA), Some(&clerk), &json!({"fid": "FID0002", "resident_id": id_of(&created)}));
    refused(&app, new_card, StatusCode::CONFLICT, "/problems/resident-moved-out").await;
}

async fn only_clerks_register_and_auditors_only_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, clerk) = chiyoda(&app).await;
    let created = register(&app, &clerk, &full()).await;
    app.add_operators(
        &admin,
        CHIYODA,
        &cardap_tests::operator_with_password("AU0001", "AuditPassw0rd", &["auditor"], &[]),
    )
    .await;
    app.add_operators(
        &admin,
        CHIYODA,
        &cardap_tests::operator_with_password("OM0001", "ManagerPassw0rd", &["operations_manager"], &[]),
    )
    .await;
    let auditor = app.login(Some(CHIYODA), "AU0001", "AuditPassw0rd").await;
    let manager = app.login(Some(CHIYODA), "OM0001", "ManagerPassw0rd").await;
    let path = resident_path(CHIYODA, &id_of(&created));

    assert_eq!(app.get(&path, Some(&auditor)).await.status, StatusCode::OK);
    assert_eq!(app.get(&residents_path(CHIYODA), Some(&auditor)).await.status, StatusCode::OK);
    let post = app.post(&residents_path(CHIYODA), Some(&auditor), &full());
    refused(&app, post, StatusCode::FORBIDDEN, "/problems/forbidden").await;
    let patch = app.patch(&path, Some(&auditor), None, &json!({"occupation": "自営業"}));
    refused(&app, patch, StatusCode::FORBIDDEN, "/problems/forbidden").await;
    // The operations manager configures, but neither registers nor reads residents.
    app.get(&path, Some(&manager)).await.problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    let post = app.post(&residents_path(CHIYODA), Some(&manager), &full());
    refused(&app, post, StatusCode::FORBIDDEN, "/problems/forbidden").await;
    assert_eq!(app.get(&resident_settings_path(CHIYODA), Some(&manager)).await.status, StatusCode::OK);
    app.get(&path, None).await.problem(StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
}

/// Every route of this area is in the OpenAPI document, with its bodies and their examples.
async fn the_routes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;

    let doc = app.get("/openapi.json", None).await.json();

    for (path, methods) in [
        ("/api/v1/municipalities/{code}/resident-settings", &["get", "put"][..]),
        ("/api/v1/municipalities/{code}/residents", &["get", "post"]),
        ("/api/v1/municipalities/{code}/residents/{resident_id}", &["get", "patch"]),
        ("/api/v1/municipalities/{code}/residents/{resident_id}/move-out", &["post"]),
    ] {
        for method in methods {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
    }
    let params: Vec<&str> = doc["paths"]["/api/v1/municipalities/{code}/residents"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["kana_prefix", "birth_date", "fid", "cursor", "limit"] {
        assert!(params.contains(&name), "search parameter {name}: {params:?}");
    }
    for schema in ["ResidentInput", "ResidentChange", "ResidentView", "ResidentSettingsInput", "ResidentSettingsView"] {
        let schema = &doc["components"]["schemas"][schema];
        assert!(schema.is_object() && schema["example"].is_object(), "schema and example: {schema}");
    }
    for schema in ["NameInput", "NameChange", "NameView", "ResidentPage", "CustomFieldInput"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema}");
    }
}

on_both_backends!(
    concurrent_changes_of_the_two_name_halves_both_survive,
    settings_are_replaced_whole_under_if_match,
    bad_settings_name_every_field,
    a_resident_is_registered_with_every_field_and_read_back,
    every_bad_field_is_named_with_the_clerks_message,
    residents_are_searched_by_kana_prefix_birth_date_and_fid,
    a_change_merges_into_the_resident_under_if_match,
    a_retry_with_the_same_idempotency_key_registers_nobody_twice,
    residents_of_another_municipality_do_not_exist,
    a_resident_moves_out_once_his_card_is_abolished,
    only_clerks_register_and_auditors_only_read,
    the_routes_are_documented,
);
