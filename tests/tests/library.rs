//! The library link (図書館, 手引き II 2; issue 11, point 4), as library systems use it: over mutual TLS with their
//! business server certificates. The built-in library `02` serves 千代田区; 札幌市 runs its own library system `05`
//! (a library because its field list carries `standard_id`); `06` is no library. A 千代田区 card is linked by both
//! libraries, each with its own 図書ID; another system's link, a system that is not a library and a client without
//! a certificate are refused; an unknown 標準ID and an abolished card's are refused with their own types; a lookup
//! tells a suspended or abolished card unusable; a reissue tells each linking library the new 標準ID in its feed and
//! the lookup by the new 標準ID finds the same 図書ID. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cardap_tests::reqwest::{self, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, business_client, business_system, card_path, cards_path, eventually, on_both_backends,
    resident_body, resident_settings_path, residents_path, spawn_https_app, tls_client,
};

/// 千代田区: permitted 02 (its library).
const CHIYODA: &str = "131016";
/// 札幌市: permitted 05 (its own library system) and 06 (no library).
const SAPPORO: &str = "011002";

struct World {
    app: TestApp,
    chiyoda: String,
    clients: Vec<(&'static str, reqwest::Client)>,
    anonymous: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn world(backend: Backend) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (app, root) = spawn_https_app(backend, dir.path()).await;
    let admin = app.admin_token().await;
    for (id, name) in [("05", "札幌市図書館"), ("06", "施設予約")] {
        let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system(id, name)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }
    // 05 is a library: the system administrator grants it the 標準ID.
    let fields = json!({ "fields": ["kana_name", "kanji_name", "standard_id", "card_status"] });
    let reply = app.put("/api/v1/business-systems/05/feed-fields", Some(&admin), &fields).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = app
        .patch("/api/v1/business-systems/02", Some(&admin), None, &json!({ "top_url": "https://b02.example.jp/" }))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    for (code, name, order, systems) in
        [(CHIYODA, "千代田区", 1, ["02"].as_slice()), (SAPPORO, "札幌市", 2, ["05", "06"].as_slice())]
    {
        app.register_municipality(&admin, code, name, order).await;
        for id in systems {
            app.permit(&admin, id, code).await;
        }
        let settings = json!({ "custom_fields": [], "catalog": systems, "presets": [] });
        let reply = app.put(&resident_settings_path(code), Some(&admin), &settings).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }
    let chiyoda = app.clerk_token(&admin, CHIYODA, "CL0001", &["02"]).await;
    let mut clients = vec![];
    for id in ["02", "05", "06"] {
        clients.push((id, business_client(&app, &admin, dir.path(), &root, id).await));
    }
    let anonymous = tls_client(&root, None);
    World { app, chiyoda, clients, anonymous, _dir: dir }
}

/// An answer: status and JSON.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
}

impl World {
    fn client(&self, system: Option<&str>) -> &reqwest::Client {
        system.map_or(&self.anonymous, |s| &self.clients.iter().find(|(id, _)| *id == s).unwrap().1)
    }

    /// A 千代田区 resident's card with the library AP; its 標準ID.
    async fn card(&self, resident: &str, fid: &str) -> String {
        let card = json!({ "fid": fid, "resident_id": resident });
        let reply = self.app.post(&cards_path(CHIYODA), Some(&self.chiyoda), &card).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let path = card_path(CHIYODA, fid);
        let reply = self.app.post_empty(&format!("{path}/local-area"), Some(&self.chiyoda)).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        let reply =
            self.app.post(&format!("{path}/aps"), Some(&self.chiyoda), &json!({ "business_ids": ["02"] })).await;
        assert!(reply.status.is_success(), "{}", reply.text);
        let aps = reply.json()["aps"].clone();
        let library = aps.as_array().unwrap().iter().find(|a| a["business_id"] == "02").unwrap();
        library["standard_id"].as_str().unwrap().to_owned()
    }

    async fn resident(&self) -> String {
        let body = resident_body("ヤマダ", "タロウ", "3450101");
        let reply = self.app.post(&residents_path(CHIYODA), Some(&self.chiyoda), &body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json()["resident_id"].as_str().unwrap().to_owned()
    }

    async fn card_action(&self, fid: &str, action: &str) {
        let reply = self.app.post_empty(&format!("{}/{action}", card_path(CHIYODA, fid)), Some(&self.chiyoda)).await;
        assert!(reply.status.is_success(), "{action}: {}", reply.text);
    }

    async fn send(&self, system: Option<&str>, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.client(system).request(method, self.app.url(path)).header("accept-language", "ja");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
    }

    /// `PUT /api/v1/library-links/{path_system}/{standard_id}` as `system`.
    async fn link(&self, system: &str, path_system: &str, standard_id: &str, library_id: &str) -> Answer {
        let path = format!("/api/v1/library-links/{path_system}/{standard_id}");
        self.send(Some(system), reqwest::Method::PUT, &path, Some(json!({ "library_id": library_id }))).await
    }

    async fn lookup(&self, system: Option<&str>, path_system: &str, standard_id: &str) -> Answer {
        let path = format!("/api/v1/library-links/{path_system}/{standard_id}");
        self.send(system, reqwest::Method::GET, &path, None).await
    }

    async fn unlink(&self, system: &str, standard_id: &str) -> Answer {
        let path = format!("/api/v1/library-links/{system}/{standard_id}");
        self.send(Some(system), reqwest::Method::DELETE, &path, None).await
    }

    /// `system`'s whole feed from its start.
    async fn feed(&self, system: &str) -> Vec<Value> {
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let query = cursor.as_deref().map_or("limit=100".to_owned(), |c| format!("limit=100&cursor={c}"));
            let answer =
                self.send(Some(system), reqwest::Method::GET, &format!("/api/v1/feeds/{system}?{query}"), None).await;
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
}

#[track_caller]
fn assert_link(answer: &Answer, library_id: &str, status: &str, usable: bool) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["library_id"], library_id, "{}", answer.body);
    assert_eq!(answer.body["card_status"], status, "{}", answer.body);
    assert_eq!(answer.body["usable"], usable, "{}", answer.body);
}

#[track_caller]
fn assert_problem(answer: &Answer, status: StatusCode, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["type"], kind, "{}", answer.body);
}

/// Link, look up, unlink; a 千代田区 card at 札幌市's own library; each library sees only its own links; what is
/// refused, and how.
async fn a_card_is_linked_by_any_municipalitys_library_and_by_no_other_system(backend: Backend) {
    let w = world(backend).await;
    let resident = w.resident().await;
    let sid = w.card(&resident, "FID0000000000001").await;

    // 千代田区's library and 札幌市's own library system link the same 千代田区 card, each to its own 図書ID.
    let linked = w.link("02", "02", &sid, "C-0001").await;
    assert_link(&linked, "C-0001", "in_use", true);
    assert_eq!(linked.body["linked_standard_id"], sid.as_str());
    assert_link(&w.link("05", "05", &sid, " S-9 ").await, "S-9", "in_use", true);
    assert_link(&w.lookup(Some("02"), "02", &sid).await, "C-0001", "in_use", true);
    assert_link(&w.lookup(Some("05"), "05", &sid).await, "S-9", "in_use", true);
    // Linking again with the same 図書ID changes nothing; with another replaces it.
    assert_link(&w.link("02", "02", &sid, "C-0001").await, "C-0001", "in_use", true);
    assert_link(&w.link("02", "02", &sid, "C-0002").await, "C-0002", "in_use", true);
    assert_link(&w.lookup(Some("02"), "02", &sid).await, "C-0002", "in_use", true);

    // Another system's links, a system that is no library, no certificate, a 標準ID that does not parse.
    assert_problem(&w.lookup(Some("05"), "02", &sid).await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_problem(&w.link("05", "02", &sid, "X-1").await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_problem(&w.link("06", "06", &sid, "X-1").await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_problem(&w.lookup(Some("06"), "06", &sid).await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_problem(&w.lookup(None, "02", &sid).await, StatusCode::UNAUTHORIZED, "/problems/unauthenticated");
    assert_problem(&w.lookup(Some("02"), "02", "1310161234").await, StatusCode::NOT_FOUND, "/problems/not-found");

    // A 図書ID that does not parse: a field error in Japanese.
    let bad = w.link("02", "02", &sid, "図書1").await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
    assert_eq!(bad.body["errors"][0]["field"], "/library_id", "{}", bad.body);
    assert!(bad.body["errors"][0]["message"].as_str().unwrap().contains("図書ID"), "{}", bad.body);

    // A 標準ID no card carries (well-formed, never handed out).
    let unknown = if sid.ends_with("0000000001") { "1310160000000002" } else { "1310160000000001" };
    let refused = w.link("05", "05", unknown, "S-10").await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "/problems/unknown-standard-id");
    assert!(refused.body["detail"].as_str().unwrap().contains("標準ID"), "{}", refused.body);
    assert_problem(&w.lookup(Some("05"), "05", unknown).await, StatusCode::NOT_FOUND, "/problems/not-found");

    // Suspended: the link stands, the card is not usable; resumed, it is again.
    w.card_action("FID0000000000001", "suspend").await;
    assert_link(&w.lookup(Some("05"), "05", &sid).await, "S-9", "suspended", false);
    w.card_action("FID0000000000001", "resume").await;
    assert_link(&w.lookup(Some("05"), "05", &sid).await, "S-9", "in_use", true);

    // Unlinked: gone for that library only.
    let answer = w.unlink("05", &sid).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_problem(&w.lookup(Some("05"), "05", &sid).await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_problem(&w.unlink("05", &sid).await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_link(&w.lookup(Some("02"), "02", &sid).await, "C-0002", "in_use", true);

    // Abolished: the lookup says unusable; no new link can be made with it.
    w.card_action("FID0000000000001", "abolish").await;
    assert_link(&w.lookup(Some("02"), "02", &sid).await, "C-0002", "abolished", false);
    let refused = w.link("05", "05", &sid, "S-9").await;
    assert_problem(&refused, StatusCode::CONFLICT, "/problems/card-abolished");
}

/// A card reissued to the same resident: each library that linked the old 標準ID is told the new one in its feed,
/// and a lookup (and an unlink) by the new 標準ID finds the link made with the old one.
async fn a_reissue_tells_the_linking_libraries_and_the_link_follows(backend: Backend) {
    let w = world(backend).await;
    let resident = w.resident().await;
    let old = w.card(&resident, "FID0000000000001").await;
    assert_eq!(w.link("05", "05", &old, "S-9").await.status, StatusCode::OK);
    assert_eq!(w.link("02", "02", &old, "C-1").await.status, StatusCode::OK);
    // Another resident's card, linked too: its libraries hear nothing of this reissue.
    let other = w.resident().await;
    let untouched = w.card(&other, "FID0000000000002").await;
    assert_eq!(w.link("05", "05", &untouched, "S-10").await.status, StatusCode::OK);

    w.card_action("FID0000000000001", "abolish").await;
    let new = w.card(&resident, "FID0000000000003").await;
    assert_ne!(new, old);

    let replaced = |items: &[Value]| -> Vec<Value> {
        items.iter().filter(|i| i["type"] == "standard_id_replaced").cloned().collect::<Vec<_>>()
    };
    let told = eventually(Duration::from_secs(20), "05 is told the new 標準ID", || async {
        let items = replaced(&w.feed("05").await);
        (!items.is_empty()).then_some(items)
    })
    .await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["data"], json!({ "old_standard_id": old, "new_standard_id": new }));
    assert_eq!(told[0]["municipality"], CHIYODA);
    // 札幌市's library does not serve 千代田区: the resident's id is not given to it.
    assert_eq!(told[0]["resident_id"], "");
    // 千代田区's library is told too, with the resident's id (it serves his municipality).
    let told = replaced(&w.feed("02").await);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["data"], json!({ "old_standard_id": old, "new_standard_id": new }));
    assert_eq!(told[0]["resident_id"], resident.as_str());
    // 06 (no library, no link) hears nothing.
    assert!(replaced(&w.feed("06").await).is_empty());

    // The link follows: by the new 標準ID, the same 図書ID, usable on the new card.
    let found = w.lookup(Some("05"), "05", &new).await;
    assert_link(&found, "S-9", "in_use", true);
    assert_eq!(found.body["standard_id"], new.as_str());
    assert_eq!(found.body["linked_standard_id"], old.as_str());
    assert_link(&w.lookup(Some("02"), "02", &new).await, "C-1", "in_use", true);
    // By the old one: still the link, on the abolished card.
    assert_link(&w.lookup(Some("05"), "05", &old).await, "S-9", "abolished", false);
    // The other resident's link is untouched.
    assert_link(&w.lookup(Some("05"), "05", &untouched).await, "S-10", "in_use", true);

    // Unlinking by the new 標準ID removes the followed link.
    assert_eq!(w.unlink("05", &new).await.status, StatusCode::NO_CONTENT);
    assert_problem(&w.lookup(Some("05"), "05", &new).await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_problem(&w.lookup(Some("05"), "05", &old).await, StatusCode::NOT_FOUND, "/problems/not-found");
    assert_link(&w.lookup(Some("02"), "02", &new).await, "C-1", "in_use", true);
}

on_both_backends!(
    a_card_is_linked_by_any_municipalitys_library_and_by_no_other_system,
    a_reissue_tells_the_linking_libraries_and_the_link_follows,
);
