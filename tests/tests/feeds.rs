//! The business systems' replication feeds (issue 11, points 2 and 5), read as a business system reads them: over
//! mutual TLS with the business server certificate cardap issued it. Isolation (another system's feed, a resident
//! without the AP, a municipality after its withdrawal, a retired system), entitlement at each position (an AP
//! removed and installed again, card suspended/resumed/abolished, moved out, erased), minimisation (the library's
//! default list; a change of the list applies to what is delivered after it), the audit record of each delivery,
//! forged and stale cursors, a long poll woken by an append, SSE with `Last-Event-ID` and its end at shutdown, the
//! feed under concurrent writers while a transaction is held open past later commits, and what the certificate
//! issuance system (`01`) learns of each municipality it serves (its issuance service) and of every card (its
//! status). Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cardap_domain::card::CardEvent;
use cardap_domain::{BusinessId, MunicipalityCode};
use cardap_store::{Database, ExpectedVersion, Metadata, NewEvent, StreamId};
use cardap_tests::reqwest::{self, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, business_client, business_system, card_path, cards_path, eventually, on_both_backends,
    resident_body, resident_path, resident_settings_path, residents_path, spawn_https_app, tls_client,
};

/// 千代田区: permitted 01, 02, 05 and 06.
const CHIYODA: &str = "131016";
/// 札幌市: permitted 02 and 05 (05 withdrawn by some tests).
const SAPPORO: &str = "011002";

/// A server on HTTPS with mutual TLS, two municipalities, the municipalities' own systems 05 and 06, and a client
/// per business system (01, 02, 05, 06) that presents that system's business server certificate.
struct World {
    app: TestApp,
    admin: String,
    /// Clerks of 千代田区 and 札幌市, permitted every AP.
    chiyoda: String,
    sapporo: String,
    clients: BTreeMap<&'static str, reqwest::Client>,
    /// Without a client certificate.
    anonymous: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn world(backend: Backend) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (app, root) = spawn_https_app(backend, dir.path()).await;
    let admin = app.admin_token().await;
    for (id, name) in [("05", "施設予約"), ("06", "健康ポイント")] {
        let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system(id, name)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    // The built-in certificate issuance system and library need a URL for the CN of their server certificates.
    for id in ["01", "02"] {
        let url = json!({ "top_url": format!("https://b{id}.example.jp/") });
        let reply = app.patch(&format!("/api/v1/business-systems/{id}"), Some(&admin), None, &url).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    for (code, name, order, systems) in
        [(CHIYODA, "千代田区", 1, ["01", "02", "05", "06"].as_slice()), (SAPPORO, "札幌市", 2, ["02", "05"].as_slice())]
    {
        app.register_municipality(&admin, code, name, order).await;
        for id in systems {
            app.permit(&admin, id, code).await;
        }
        let settings = json!({ "custom_fields": [], "catalog": systems, "presets": [] });
        let reply = app.put(&resident_settings_path(code), Some(&admin), &settings).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let chiyoda = app.clerk_token(&admin, CHIYODA, "CL0001", &["01", "02", "05", "06"]).await;
    let sapporo = app.clerk_token(&admin, SAPPORO, "CL0002", &["02", "05"]).await;
    let mut clients = BTreeMap::new();
    for id in ["01", "02", "05", "06"] {
        clients.insert(id, business_client(&app, &admin, dir.path(), &root, id).await);
    }
    let anonymous = tls_client(&root, None);
    World { app, admin, chiyoda, sapporo, clients, anonymous, _dir: dir }
}

/// A feed answer: status and JSON (a page or a problem).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl World {
    fn clerk(&self, code: &str) -> &str {
        if code == CHIYODA { &self.chiyoda } else { &self.sapporo }
    }

    /// A resident of `code` with a card carrying `aps` (empty: a card with its local area only); his id.
    async fn resident_with_card(&self, code: &str, kana_given: &str, fid: &str, aps: &[&str]) -> String {
        let mut body = resident_body("ヤマダ", kana_given, "3450101");
        body["occupation"] = json!("会社員");
        body["email"] = json!("yamada@example.jp");
        let reply = self.app.post(&residents_path(code), Some(self.clerk(code)), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let id = reply.json()["resident_id"].as_str().unwrap().to_owned();
        let card = json!({ "fid": fid, "resident_id": id });
        let reply = self.app.post(&cards_path(code), Some(self.clerk(code)), &card).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let reply = self.app.post_empty(&format!("{}/local-area", card_path(code, fid)), Some(self.clerk(code))).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        if !aps.is_empty() {
            self.install(code, fid, aps).await;
        }
        id
    }

    /// Installs `aps`, with the resident's consent for AP 01 (ignored by the others).
    async fn install(&self, code: &str, fid: &str, aps: &[&str]) {
        let path = format!("{}/aps", card_path(code, fid));
        let body = json!({ "business_ids": aps, "issuance_consent": true });
        let reply = self.app.post(&path, Some(self.clerk(code)), &body).await;
        assert!(reply.status.is_success(), "{}", reply.text);
    }

    async fn card_action(&self, code: &str, fid: &str, action: &str) {
        let reply = self.app.post_empty(&format!("{}/{action}", card_path(code, fid)), Some(self.clerk(code))).await;
        assert!(reply.status.is_success(), "{action}: {}", reply.text);
    }

    async fn change(&self, code: &str, id: &str, body: Value) {
        let reply = self.app.patch(&resident_path(code, id), Some(self.clerk(code)), None, &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }

    /// `GET /api/v1/feeds/{feed}?{query}` as business system `as_system` (`None`: no client certificate).
    async fn get(&self, as_system: Option<&str>, feed: &str, query: &str) -> Answer {
        let client = as_system.map_or(&self.anonymous, |s| &self.clients[s]);
        let url = self.app.url(&format!("/api/v1/feeds/{feed}?{query}"));
        let response = client.get(url).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// Every item of `system`'s own feed from its start, page by page.
    async fn all(&self, system: &str) -> Vec<Value> {
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let query = cursor.as_deref().map_or("limit=3".to_owned(), |c| format!("limit=3&cursor={c}"));
            let answer = self.get(Some(system), system, &query).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let page = answer.body["items"].as_array().unwrap().clone();
            let next = answer.body["next_cursor"].as_str().map(str::to_owned);
            if page.is_empty() && next == cursor {
                return items;
            }
            items.extend(page);
            cursor = next;
        }
    }

    /// `system`'s whole feed, once it satisfies `done` (the index follows the log a moment behind).
    async fn until(&self, system: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let done = &done;
        eventually(Duration::from_secs(20), what, || async move {
            let items = self.all(system).await;
            done(&items).then_some(items)
        })
        .await
    }
}

/// The items of `resident` (type and data).
fn of(items: &[Value], resident: &str) -> Vec<(String, Value)> {
    items
        .iter()
        .filter(|i| i["resident_id"] == resident)
        .map(|i| (i["type"].as_str().unwrap().to_owned(), i["data"].clone()))
        .collect()
}

fn kinds(items: &[Value], resident: &str) -> Vec<String> {
    of(items, resident).into_iter().map(|(k, _)| k).collect()
}

fn keys(data: &Value) -> BTreeSet<String> {
    data.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// An item id as the place it names, to check the feed's order.
fn place(id: &str) -> (u64, u64, u64) {
    let parts: Vec<u64> = id.split('-').map(|p| p.parse().unwrap()).collect();
    (parts[0], parts[1], parts[2])
}

/// A system reads its own feed and nothing else: only residents whose card carries its AP, in municipalities it
/// serves, only the fields of its list; another system's feed, an unknown one and a client without a business
/// server certificate are refused; the library's default list has names and the 標準ID, not the occupation; a
/// change of the list applies to the items delivered after it; every delivery is in the read access log.
async fn a_system_reads_only_its_own_residents_and_fields(backend: Backend) {
    let w = world(backend).await;
    let both = w.resident_with_card(CHIYODA, "タロウ", "FID0000000000001", &["02", "05"]).await;
    let other = w.resident_with_card(CHIYODA, "ジロウ", "FID0000000000002", &["06"]).await;
    let bare = w.resident_with_card(CHIYODA, "サブロウ", "FID0000000000003", &[]).await;

    let items = w.until("05", "05's first item", |i| !i.is_empty()).await;
    assert_eq!(kinds(&items, &both), ["registered"]);
    assert!(of(&items, &other).is_empty() && of(&items, &bare).is_empty(), "{items:?}");
    let item = &items[0];
    assert_eq!(item["municipality"], CHIYODA);
    assert_eq!(keys(&item["data"]), set(&["kana_name", "kanji_name", "card_status"]));
    assert_eq!(item["data"]["kana_name"], json!({"family": "ヤマダ", "given": "タロウ"}));
    assert_eq!(item["data"]["card_status"], "in_use");
    assert!(item["id"].is_string());

    // The library: names and the 標準ID, not the occupation (nor the e-mail, nor the birth date).
    let library = w.until("02", "the library's first item", |i| !i.is_empty()).await;
    assert_eq!(kinds(&library, &both), ["registered"]);
    let data = &library[0]["data"];
    assert_eq!(keys(data), set(&["kana_name", "kanji_name", "standard_id", "card_status"]));
    assert!(data["standard_id"].as_str().unwrap().starts_with(CHIYODA), "{data}");
    assert!(!library[0].to_string().contains("会社員"), "{}", library[0]);

    // Refused: another system's feed (404, as an unknown one), no certificate (401), a bad business ID (404).
    for (as_system, feed, status) in [
        (Some("05"), "02", StatusCode::NOT_FOUND),
        (Some("05"), "06", StatusCode::NOT_FOUND),
        (Some("05"), "77", StatusCode::NOT_FOUND),
        (Some("05"), "x", StatusCode::NOT_FOUND),
        (None, "05", StatusCode::UNAUTHORIZED),
    ] {
        let answer = w.get(as_system, feed, "").await;
        assert_eq!(answer.status, status, "{as_system:?} reading {feed}: {}", answer.body);
        assert!(!answer.body.to_string().contains("ヤマダ"));
    }
    // An operator's bearer session is not a business system.
    let bearer = w.anonymous.get(w.app.url("/api/v1/feeds/05")).bearer_auth(&w.admin).send().await.unwrap();
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);

    // Changes of unlisted fields reach nobody; a listed one reaches both, with that field only.
    w.change(CHIYODA, &both, json!({ "occupation": "教員", "email": "taro@example.jp" })).await;
    w.change(CHIYODA, &both, json!({ "kana_name": { "given": "タロ" } })).await;
    let library = w.until("02", "the change of the name", |i| kinds(i, &both).len() == 2).await;
    assert_eq!(
        of(&library, &both)[1],
        ("changed".to_owned(), json!({ "kana_name": {"family": "ヤマダ", "given": "タロ"} }))
    );
    let own = w.until("05", "the change of the name", |i| kinds(i, &both).len() == 2).await;
    assert_eq!(kinds(&own, &both), ["registered", "changed"]);

    // The field list: the default, then the occupation added; it applies to what is delivered from now on, also
    // to an item read again.
    let path = "/api/v1/business-systems/02/feed-fields";
    let shown = w.app.get(path, Some(&w.admin)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(
        shown.json(),
        json!({"fields": ["kana_name", "kanji_name", "standard_id", "card_status"], "default": true, "version": shown.json()["version"]})
    );
    let clerk = w.app.get(path, Some(&w.chiyoda)).await;
    assert_eq!(clerk.status, StatusCode::FORBIDDEN);
    let bad = w.app.put(path, Some(&w.admin), &json!({ "fields": ["kana_name", "my_number"] })).await;
    bad.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(bad.error_fields(), ["/fields/1"]);
    let fields = json!({ "fields": ["kana_name", "kanji_name", "standard_id", "card_status", "occupation"] });
    let set_reply = w.app.put(path, Some(&w.admin), &fields).await;
    assert_eq!(set_reply.status, StatusCode::OK, "{}", set_reply.text);
    assert_eq!(set_reply.json()["default"], false);
    let unknown = w.app.put("/api/v1/business-systems/42/feed-fields", Some(&w.admin), &fields).await;
    unknown.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    w.change(CHIYODA, &both, json!({ "occupation": "医師" })).await;
    // Read from the start again, the earlier change of the occupation is now delivered too (the list applies at
    // delivery), and the snapshot has his occupation as he stood then.
    let library = w.until("02", "the change of the occupation", |i| kinds(i, &both).len() == 4).await;
    let story = of(&library, &both);
    assert_eq!(story[1], ("changed".to_owned(), json!({ "occupation": "教員" })));
    assert_eq!(story[3], ("changed".to_owned(), json!({ "occupation": "医師" })));
    assert_eq!(library[0]["data"]["occupation"], "会社員", "the snapshot as he stood, with the list as it is now");

    // Every delivery of personal data is in the read access log.
    let log = w.app.get(&format!("/api/v1/audit/access?municipality={CHIYODA}"), Some(&w.admin)).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let deliveries: Vec<Value> = log.ndjson().into_iter().filter(|l| l["operation"] == "feed.delivery").collect();
    assert!(!deliveries.is_empty(), "{}", log.text);
    assert!(deliveries.iter().all(|l| l["residents"] == json!([both])), "{deliveries:?}");
    assert!(deliveries.iter().any(|l| l["terminal"] == "business-system 02"), "{deliveries:?}");
}

/// Entitlement at each position: a resident appears from his AP's install, leaves at its removal (a change then
/// reaches nobody), comes back with a full snapshot when it is installed again; his card's suspension and
/// resumption are items, its abolition the last; after that only his move-out and erasure, without personal data.
/// A withdrawn municipality's items stop at once, and a retired system's feed is gone.
async fn entitlement_follows_each_position(backend: Backend) {
    let w = world(backend).await;
    let fid = "FID0000000000011";
    let id = w.resident_with_card(CHIYODA, "ハナコ", fid, &["05"]).await;
    let removed = w.app.delete(&format!("{}/aps/05", card_path(CHIYODA, fid)), Some(&w.chiyoda)).await;
    assert!(removed.status.is_success(), "{}", removed.text);
    w.change(CHIYODA, &id, json!({ "kana_name": { "given": "ハナ" } })).await;
    w.install(CHIYODA, fid, &["05"]).await;
    w.card_action(CHIYODA, fid, "suspend").await;
    w.card_action(CHIYODA, fid, "resume").await;
    w.card_action(CHIYODA, fid, "abolish").await;
    w.change(CHIYODA, &id, json!({ "kana_name": { "given": "ハナエ" } })).await;
    let moved = w.app.post_empty(&format!("{}/move-out", resident_path(CHIYODA, &id)), Some(&w.chiyoda)).await;
    assert!(moved.status.is_success(), "{}", moved.text);
    let erase = format!("{}/erase", resident_path(CHIYODA, &id));
    let erased = w.app.post(&erase, Some(&w.admin), &json!({ "reason": "request", "reference": "R8-0001" })).await;
    assert!(erased.status.is_success(), "{}", erased.text);

    let expected = [
        "registered",
        "ap_removed",
        "registered",
        "card_suspended",
        "card_resumed",
        "card_abolished",
        "moved_out",
        "erased",
    ];
    let items = w.until("05", "his whole story", |i| kinds(i, &id).len() == expected.len()).await;
    assert_eq!(kinds(&items, &id), expected);
    let story = of(&items, &id);
    // The second registration is a full snapshot as he stood then (his name changed while he was not entitled),
    // unless his data was erased by the time it is read: then no personal data at all.
    let again = &story[2].1;
    assert!(again.get("kana_name").is_none_or(|n| n["given"] == "ハナ"), "{again}");
    assert_eq!(story[3].1, json!({ "card_status": "suspended" }));
    assert_eq!(story[4].1, json!({ "card_status": "in_use" }));
    assert_eq!(story[5].1, json!({ "card_status": "abolished" }));
    assert_eq!(story[6].1, json!({}));
    assert_eq!(story[7].1, json!({}));
    // Once his keys are destroyed, nothing personal of him is delivered any more, not even when read again.
    let items = w
        .until("05", "his data gone from every item", |i| {
            of(i, &id).iter().all(|(_, data)| data.get("kana_name").is_none())
        })
        .await;
    assert!(!items.iter().any(|i| i.to_string().contains("ハナ")), "{items:?}");

    // 札幌市 withdrawn from 05: nothing of it is delivered any more, neither what happened before nor after.
    let north = w.resident_with_card(SAPPORO, "イチロウ", "FID0000000000012", &["05"]).await;
    let neighbour = w.resident_with_card(SAPPORO, "ジロウ", "FID0000000000013", &["05"]).await;
    w.until("05", "札幌市's residents", |i| !of(i, &north).is_empty() && !of(i, &neighbour).is_empty()).await;
    w.app.withdraw(&w.admin, "05", SAPPORO).await;
    let now = w.all("05").await;
    assert!(of(&now, &north).is_empty(), "{now:?}");
    w.change(SAPPORO, &north, json!({ "kana_name": { "given": "イチ" } })).await;
    // He is still the library's (札幌市 keeps 02); his card gets the library AP: a later item of the log.
    w.install(SAPPORO, "FID0000000000012", &["02"]).await;
    w.until("02", "札幌市's resident in the library", |i| !of(i, &north).is_empty()).await;
    assert!(of(&w.all("05").await, &north).is_empty());
    // Permitted again: from the permit on he is entitled again, with a snapshot as he stands then (his name as
    // changed meanwhile) and nothing of the time in between; a reader from the start sees his earlier item again
    // (the municipality is permitted now).
    w.app.permit(&w.admin, "05", SAPPORO).await;
    let items = w.until("05", "札幌市 permitted again", |i| of(i, &north).len() == 2).await;
    let story = of(&items, &north);
    assert_eq!(kinds(&items, &north), ["registered", "registered"], "{story:?}");
    assert_eq!(story[0].1["kana_name"]["given"], "イチロウ");
    assert_eq!(story[1].1["kana_name"]["given"], "イチ");
    // One permit, two residents: two items of the same event, numbered in resident-id order.
    let permit: Vec<&Value> = items.iter().filter(|i| i["municipality"] == SAPPORO).skip(2).collect::<Vec<_>>();
    let places: Vec<(u64, u64, u64)> = permit.iter().map(|i| place(i["id"].as_str().unwrap())).collect();
    assert_eq!(places.len(), 2, "{permit:?}");
    assert_eq!((places[0].0, places[0].1, places[0].2), (places[1].0, places[1].1, 0));
    assert_eq!(places[1].2, 1);
    let mut ids = [north.as_str(), neighbour.as_str()];
    ids.sort_unstable();
    assert_eq!([permit[0]["resident_id"].as_str().unwrap(), permit[1]["resident_id"].as_str().unwrap()], ids);

    // 06 retired: its feed is gone at once, for its own certificate too.
    let reply = w.app.post_empty("/api/v1/business-systems/06/retire", Some(&w.admin)).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let gone = w.get(Some("06"), "06", "").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
}

/// A cursor names an item this system was given: a forged one, a malformed one and another system's are `400`
/// `/problems/invalid-cursor`; a real one resumes right after its item; `limit` and `wait` are bounded.
async fn forged_and_stale_cursors_are_refused(backend: Backend) {
    let w = world(backend).await;
    let first = w.resident_with_card(CHIYODA, "タロウ", "FID0000000000021", &["02", "05"]).await;
    let second = w.resident_with_card(CHIYODA, "ジロウ", "FID0000000000022", &["02", "05"]).await;
    let own = w.until("05", "two residents", |i| i.len() == 2).await;
    let library = w.until("02", "two residents", |i| i.len() == 2).await;
    assert_eq!(own[0]["resident_id"], first.as_str());
    let resumed = w.get(Some("05"), "05", &format!("cursor={}", own[0]["id"].as_str().unwrap())).await;
    assert_eq!(resumed.status, StatusCode::OK);
    let items = resumed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["resident_id"], second.as_str());
    assert_eq!(resumed.body["next_cursor"], own[1]["id"]);
    // At the end: nothing more, and the same cursor to come back with.
    let end = w.get(Some("05"), "05", &format!("cursor={}", own[1]["id"].as_str().unwrap())).await;
    assert_eq!(end.body["items"], json!([]));
    assert_eq!(end.body["next_cursor"], own[1]["id"]);

    let (tx, position, _) = place(own[1]["id"].as_str().unwrap());
    let library_ids: BTreeSet<&str> = library.iter().map(|i| i["id"].as_str().unwrap()).collect();
    let mut forged = vec![
        "abc".to_owned(),
        "1-2".to_owned(),
        "1-2-3-4".to_owned(),
        format!("{tx}-{position}-7"),
        format!("{}-{}-0", tx + 1_000_000, position + 1_000_000),
        "0-0-0".to_owned(),
    ];
    // The library's item ids name other items than 05's (its own events): not 05's cursors.
    forged.extend(library_ids.iter().filter(|id| !own.iter().any(|o| o["id"] == **id)).map(|id| (*id).to_owned()));
    for cursor in forged {
        let answer = w.get(Some("05"), "05", &format!("cursor={cursor}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{cursor}: {}", answer.body);
        assert_eq!(answer.body["type"], "/problems/invalid-cursor", "{cursor}");
    }
    for query in ["limit=0", "limit=501", "wait=31", "wait=-1", "limit=x"] {
        let answer = w.get(Some("05"), "05", query).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {}", answer.body);
    }
}

/// A long poll at the end of the feed answers as soon as an append gives an item, not after its whole wait.
async fn a_long_poll_is_woken_by_an_append(backend: Backend) {
    let w = world(backend).await;
    let id = w.resident_with_card(CHIYODA, "タロウ", "FID0000000000031", &["05"]).await;
    let items = w.until("05", "the first item", |i| i.len() == 1).await;
    let cursor = items[0]["id"].as_str().unwrap().to_owned();
    let started = tokio::time::Instant::now();
    let url = w.app.url(&format!("/api/v1/feeds/05?cursor={cursor}&wait=25"));
    let poll = tokio::spawn(w.clients["05"].get(url).send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!poll.is_finished(), "the poll answered before anything happened");
    w.change(CHIYODA, &id, json!({ "kana_name": { "given": "タロ" } })).await;
    let answer: Value = poll.await.unwrap().unwrap().json().await.unwrap();
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(10), "woken after {waited:?}");
    assert_eq!(answer["items"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["items"][0]["type"], "changed");
    // Nothing comes: the poll answers an empty page after its wait, with the same cursor.
    let started = tokio::time::Instant::now();
    let next = answer["next_cursor"].as_str().unwrap();
    let empty = w.get(Some("05"), "05", &format!("cursor={next}&wait=1")).await;
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(empty.body["next_cursor"], next);
}

/// Server-Sent Events as a reader sees them.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

/// One event, or a comment.
#[derive(Debug)]
enum SseLine {
    Item { id: String, item: Value },
    Comment(String),
}

impl Sse {
    async fn open(w: &World, system: &str, last_event_id: Option<&str>) -> Sse {
        let mut request =
            w.clients[system].get(w.app.url(&format!("/api/v1/feeds/{system}"))).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        Sse { response, buffer: String::new() }
    }

    /// The next event or comment; `None` when the stream ended cleanly. Panics after `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<SseLine> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        return Some(SseLine::Comment(comment.trim().to_owned()));
                    }
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                return Some(SseLine::Item { id: id.unwrap(), item: serde_json::from_str(&data).unwrap() });
            }
            let chunk = tokio::time::timeout(timeout, self.response.chunk()).await.expect("an SSE chunk in time");
            match chunk.expect("the stream does not break") {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    async fn item(&mut self) -> (String, Value) {
        loop {
            match self.next(Duration::from_secs(20)).await {
                Some(SseLine::Item { id, item }) => return (id, item),
                Some(SseLine::Comment(_)) => continue,
                None => panic!("the stream ended"),
            }
        }
    }
}

/// SSE: the items as events with `id:` the item id; a reader that reconnects with `Last-Event-ID` continues right
/// after it; an idle stream sends keep-alive comments; a forged `Last-Event-ID` is refused before the stream
/// starts; the stream ends cleanly when the server shuts down.
async fn sse_resumes_with_last_event_id_and_ends_at_shutdown(backend: Backend) {
    let mut w = world(backend).await;
    let mut residents = vec![];
    for (n, given) in ["イチ", "ニ", "サン"].iter().enumerate() {
        residents.push(w.resident_with_card(CHIYODA, given, &format!("FID00000000000{:02}", 40 + n), &["05"]).await);
    }
    let mut stream = Sse::open(&w, "05", None).await;
    let mut seen = vec![];
    for _ in 0..3 {
        seen.push(stream.item().await);
    }
    let people: Vec<&str> = seen.iter().map(|(_, i)| i["resident_id"].as_str().unwrap()).collect();
    assert_eq!(people, residents.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(seen.iter().all(|(id, item)| item["id"] == id.as_str() && item["type"] == "registered"));
    drop(stream);

    // Reconnect after the first: the second and third again, then what happens next.
    let mut stream = Sse::open(&w, "05", Some(&seen[0].0)).await;
    assert_eq!(stream.item().await.0, seen[1].0);
    assert_eq!(stream.item().await.0, seen[2].0);
    w.change(CHIYODA, &residents[0], json!({ "kana_name": { "given": "イチロウ" } })).await;
    let (_, changed) = stream.item().await;
    assert_eq!(
        (changed["type"].as_str(), changed["resident_id"].as_str()),
        (Some("changed"), Some(residents[0].as_str()))
    );
    // Idle: a keep-alive comment within its interval.
    match stream.next(Duration::from_secs(15)).await {
        Some(SseLine::Comment(text)) => assert_eq!(text, "keep-alive"),
        other => panic!("expected a keep-alive comment, got {other:?}"),
    }

    let forged = w.clients["05"]
        .get(w.app.url("/api/v1/feeds/05"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "9-9-9")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    // Shutdown: the stream ends cleanly, well within the drain timeout.
    let took = w.app.shut_down(Duration::from_secs(15)).await;
    assert!(took < Duration::from_secs(4), "the open stream held the shutdown for {took:?}");
    loop {
        match stream.next(Duration::from_secs(5)).await {
            Some(SseLine::Comment(_)) => continue,
            Some(SseLine::Item { .. }) => panic!("an item after the shutdown"),
            None => break,
        }
    }
}

/// Concurrent writers change residents of 05 while one transaction — the AP install that makes another resident
/// entitled — is held open past their commits: a follower that keeps reading from its cursor all along gets every
/// item, the late one included once it commits, each resident's changes in the order they were made, and the same
/// items in the same order as a reader from the start.
async fn nothing_is_lost_under_concurrent_writers_with_a_transaction_held_open(backend: Backend) {
    const WRITERS: usize = 4;
    const CHANGES: usize = 5;
    let w = world(backend).await;
    let mut residents = vec![];
    for n in 0..WRITERS {
        let fid = format!("FID00000000001{n:02}");
        residents.push(w.resident_with_card(CHIYODA, "タロウ", &fid, &["05"]).await);
    }
    let late_fid = "FID0000000000199";
    let late = w.resident_with_card(CHIYODA, "オソイ", late_fid, &[]).await;
    w.until("05", "the writers' residents", |i| i.len() == WRITERS).await;

    // The follower: long polls from its cursor until it has everything.
    let expected = WRITERS * (1 + CHANGES) + 1;
    let client = w.clients["05"].clone();
    let base = w.app.url("/api/v1/feeds/05");
    let follower = tokio::spawn(async move {
        let mut items: Vec<Value> = vec![];
        let mut cursor: Option<String> = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while items.len() < expected {
            if tokio::time::Instant::now() >= deadline {
                let got: Vec<String> = items.iter().map(|i| format!("{} {}", i["id"], i["type"])).collect();
                panic!("the follower has {} of {expected} items: {got:?}", items.len());
            }
            let mut url = format!("{base}?wait=1&limit=7");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            cursor = page["next_cursor"].as_str().map(str::to_owned).or(cursor);
        }
        items
    });

    // The slow writer: the AP install of the late resident, committed after everything the others write.
    let db = Database::connect(&w.app.settings.database_url, 2).await.unwrap();
    let stream = StreamId::of("card", late_fid);
    let version = w.app.state.store.read_stream(&stream, 1).await.unwrap().len() as u64;
    let event = NewEvent::from_domain(&CardEvent::ApInstalled {
        business_id: BusinessId::parse("05").unwrap(),
        standard_id: None,
        consent: None,
    });
    let metadata = Metadata { municipality: Some(MunicipalityCode::parse(CHIYODA).unwrap()), ..Metadata::system() };
    let hold = Duration::from_millis(2500);
    let held = tokio::spawn(async move {
        let expected = ExpectedVersion::Exact(version);
        match (db.postgres_store(), db.sqlite_store()) {
            (Some(pg), _) => pg.append_and_hold(&stream, expected, vec![event], &metadata, hold).await,
            (_, Some(lite)) => lite.append_and_hold(&stream, expected, vec![event], &metadata, hold).await,
            _ => unreachable!(),
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The writers, each changing its own resident's name in order (on SQLite they wait for the held writer).
    let digits = ["１", "２", "３", "４", "５", "６", "７", "８", "９"];
    let mut writers = vec![];
    for (n, id) in residents.iter().enumerate() {
        let (app_url, token, id) = (w.app.url(&resident_path(CHIYODA, id)), w.chiyoda.clone(), id.clone());
        let client = w.app.client.clone();
        writers.push(tokio::spawn(async move {
            for c in 0..CHANGES {
                let given = format!("名{}{}", digits[n], digits[c]);
                let body = json!({ "kanji_name": { "given": given } });
                let reply = client.patch(&app_url).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(reply.status(), StatusCode::OK, "{id}: {}", reply.text().await.unwrap());
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    held.await.unwrap().unwrap();

    let followed = follower.await.unwrap();
    assert_eq!(followed.len(), expected, "{followed:?}");
    let ids: Vec<(u64, u64, u64)> = followed.iter().map(|i| place(i["id"].as_str().unwrap())).collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "the follower got items out of order or twice: {ids:?}");
    for (n, id) in residents.iter().enumerate() {
        let names: Vec<String> = of(&followed, id)
            .into_iter()
            .filter(|(k, _)| k == "changed")
            .map(|(_, d)| d["kanji_name"]["given"].as_str().unwrap().to_owned())
            .collect();
        let written: Vec<String> = (0..CHANGES).map(|c| format!("名{}{}", digits[n], digits[c])).collect();
        assert_eq!(names, written, "resident {n}'s changes in the order made");
    }
    assert_eq!(kinds(&followed, &late), ["registered"], "the late transaction's item");
    // A reader from the start sees exactly the same.
    let all = w.all("05").await;
    let all_ids: Vec<&Value> = all.iter().map(|i| &i["id"]).collect();
    let followed_ids: Vec<&Value> = followed.iter().map(|i| &i["id"]).collect();
    assert_eq!(all_ids, followed_ids);
}

/// The `issuance_service` items of `items`: (municipality, data).
fn services(items: &[Value]) -> Vec<(String, Value)> {
    items
        .iter()
        .filter(|i| i["type"] == "issuance_service")
        .map(|i| (i["municipality"].as_str().unwrap().to_owned(), i["data"].clone()))
        .collect()
}

fn service_path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/issuance-service")
}

/// The certificate issuance system (01) learns each municipality it serves (1.2, issue 11 point 3): its feed starts
/// with 千代田区's issuance service (the defaults: 千代田区 was permitted before anything was set), tells every change of
/// it, and a municipality's service as set when it becomes permitted — also again, after its residents, when it is
/// permitted anew — never while it is withdrawn; every resident item says the card's status, so a suspended or
/// abolished card is refused at the kiosk; 01's field list keeps that status; no other system gets these items;
/// and a rebuild of the index gives every item back with the same id.
async fn the_issuance_server_learns_each_municipalitys_service_and_every_card_status(backend: Backend) {
    let w = world(backend).await;
    let defaults = json!({"certificates": ["juminhyo", "inkan"], "opens": "06:30", "closes": "23:00",
                          "closed_periods": [{"from": "12-29", "to": "01-03"}]});
    let items = w.until("01", "千代田区's service", |i| !i.is_empty()).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (&items[0]["type"], &items[0]["municipality"], &items[0]["resident_id"]),
        (&json!("issuance_service"), &json!(CHIYODA), &Value::Null)
    );
    assert_eq!(items[0]["data"], defaults);

    // Every item of a resident says his card's status: registered, suspended, resumed, abolished.
    let taro = w.resident_with_card(CHIYODA, "タロウ", "FID0000000000051", &["01"]).await;
    let hanako = w.resident_with_card(CHIYODA, "ハナコ", "FID0000000000052", &["01"]).await;
    for action in ["suspend", "resume", "abolish"] {
        w.card_action(CHIYODA, "FID0000000000051", action).await;
    }
    let items = w.until("01", "タロウ's card", |i| kinds(i, &taro).len() == 4).await;
    let story = of(&items, &taro);
    assert_eq!(kinds(&items, &taro), ["registered", "card_suspended", "card_resumed", "card_abolished"]);
    assert_eq!(keys(&story[0].1), set(&["kana_name", "kanji_name", "birth_date", "sex", "card_status"]));
    assert_eq!(story[0].1["card_status"], "in_use");
    assert_eq!(story[1].1, json!({ "card_status": "suspended" }));
    assert_eq!(story[2].1, json!({ "card_status": "in_use" }));
    assert_eq!(story[3].1, json!({ "card_status": "abolished" }));
    assert_eq!(of(&items, &hanako)[0].1["card_status"], "in_use");

    // 千代田区 sets its own service: the feed tells it; its first item still says what stood then.
    let own = json!({"certificates": ["juminhyo", "inkan", "koseki"], "opens": "07:00", "closes": "21:00",
                     "closed_periods": [{"from": "12-29", "to": "01-03"}, {"from": "08-13", "to": "08-16"}]});
    let reply = w.app.put(&service_path(CHIYODA), Some(&w.admin), &own).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let items = w.until("01", "千代田区's own service", |i| services(i).len() == 2).await;
    assert_eq!(services(&items), [(CHIYODA.to_owned(), defaults.clone()), (CHIYODA.to_owned(), own.clone())]);

    // 札幌市 sets its service while it may not use 01: nothing; permitted, 01 learns its service as set.
    let sapporo = json!({"certificates": ["juminhyo"], "opens": "08:00", "closes": "20:00", "closed_periods": []});
    let reply = w.app.put(&service_path(SAPPORO), Some(&w.admin), &sapporo).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    w.app.permit(&w.admin, "01", SAPPORO).await;
    let items = w.until("01", "札幌市's service", |i| services(i).len() == 3).await;
    assert_eq!(services(&items)[2], (SAPPORO.to_owned(), sapporo));

    // 千代田区 withdrawn from 01: a change of its service meanwhile reaches nobody; permitted again, 01 learns ハナコ
    // (her card still carries 01) and the service as it stands, from the same permit, the service after her.
    w.app.withdraw(&w.admin, "01", CHIYODA).await;
    let mut meanwhile = own.clone();
    meanwhile["closes"] = json!("22:00");
    let reply = w.app.put(&service_path(CHIYODA), Some(&w.admin), &meanwhile).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    w.app.permit(&w.admin, "01", CHIYODA).await;
    let items = w.until("01", "千代田区 permitted again", |i| of(i, &hanako).len() == 2).await;
    let chiyoda_services: Vec<Value> =
        services(&items).into_iter().filter(|(m, _)| m == CHIYODA).map(|(_, d)| d).collect();
    assert_eq!(chiyoda_services, [defaults, own, meanwhile], "the change while withdrawn gave no item of its own");
    let last = &items[items.len() - 2..];
    assert_eq!((&last[0]["type"], &last[0]["resident_id"]), (&json!("registered"), &json!(hanako)));
    assert_eq!((&last[1]["type"], &last[1]["municipality"]), (&json!("issuance_service"), &json!(CHIYODA)));
    let (permit, service) = (place(last[0]["id"].as_str().unwrap()), place(last[1]["id"].as_str().unwrap()));
    assert_eq!((permit.0, permit.1, permit.2 + 1), service, "one permit: its residents, then the service");

    // 01's field list keeps the card status.
    let fields = json!({ "fields": ["kana_name", "kanji_name"] });
    let refused = w.app.put("/api/v1/business-systems/01/feed-fields", Some(&w.admin), &fields).await;
    refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(refused.error_fields(), ["/fields"]);

    // No other system is told any municipality's service.
    w.resident_with_card(CHIYODA, "ジロウ", "FID0000000000053", &["02", "05", "06"]).await;
    for system in ["02", "05", "06"] {
        let items = w.until(system, "ジロウ", |i| !i.is_empty()).await;
        assert!(services(&items).is_empty(), "{system}: {items:?}");
    }

    // The index rebuilt from the log (as migration 0024 does on upgrade): the same items with the same ids.
    let before: Vec<(Value, Value)> =
        w.all("01").await.into_iter().map(|i| (i["id"].clone(), i["type"].clone())).collect();
    let runners = w.app.state.read.runners(w.app.state.store.clone());
    runners.iter().find(|r| r.name() == "feeds").unwrap().reset().await.unwrap();
    let after = w.until("01", "the rebuilt index", |i| i.len() == before.len()).await;
    let after: Vec<(Value, Value)> = after.into_iter().map(|i| (i["id"].clone(), i["type"].clone())).collect();
    assert_eq!(after, before);
}

on_both_backends!(
    a_system_reads_only_its_own_residents_and_fields,
    entitlement_follows_each_position,
    forged_and_stale_cursors_are_refused,
    a_long_poll_is_woken_by_an_append,
    sse_resumes_with_last_event_id_and_ends_at_shutdown,
    nothing_is_lost_under_concurrent_writers_with_a_transaction_held_open,
    the_issuance_server_learns_each_municipalitys_service_and_every_card_status,
);
