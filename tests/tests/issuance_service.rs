//! The municipality's issuance service (証明書等自動交付, issue 11 point 3), `GET`/`PUT
//! /api/v1/municipalities/{code}/issuance-service`: the defaults until it is set; its operations manager and the
//! system administrator set it, a clerk may not, another municipality's manager does not see it (404 before his body
//! is read); every bad field is named in one 422 and nothing is written; the same setting again records nothing; a
//! stale `If-Match` is 412; the change is in the history with who made it. (What the issuance server is told:
//! `feeds.rs`.) Both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{Backend, Reply, TestApp, on_both_backends, operator_with_password, spawn_app};

const CHIYODA: &str = "131016";
const SAPPORO: &str = "011002";
const PASSWORD: &str = "Passw0rdForKiosk";

fn path(code: &str) -> String {
    format!("/api/v1/municipalities/{code}/issuance-service")
}

/// 住民票の写し, 印鑑登録証明書 and 戸籍証明書, 07:00–21:00, closed over the new year and in mid-August.
fn own() -> Value {
    json!({
        "certificates": ["juminhyo", "inkan", "koseki"],
        "opens": "07:00",
        "closes": "21:00",
        "closed_periods": [{"from": "12-29", "to": "01-03"}, {"from": "08-13", "to": "08-16"}],
    })
}

/// The same, with `field` replaced.
fn own_with(field: &str, value: Value) -> Value {
    let mut body = own();
    body[field] = value;
    body
}

struct World {
    app: TestApp,
    admin: String,
    /// 千代田区's operations manager and clerk; 札幌市's operations manager.
    manager: String,
    clerk: String,
    other_manager: String,
}

async fn world(backend: Backend) -> World {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.register_municipality(&admin, SAPPORO, "札幌市", 2).await;
    let chiyoda = json!([
        operator_with_password("MGR01", PASSWORD, &["operations_manager"], &[]),
        operator_with_password("CL0001", PASSWORD, &["clerk"], &[]),
    ]);
    app.add_operators(&admin, CHIYODA, &chiyoda).await;
    app.add_operators(&admin, SAPPORO, &operator_with_password("MGR02", PASSWORD, &["operations_manager"], &[])).await;
    World {
        manager: app.login(Some(CHIYODA), "MGR01", PASSWORD).await,
        clerk: app.login(Some(CHIYODA), "CL0001", PASSWORD).await,
        other_manager: app.login(Some(SAPPORO), "MGR02", PASSWORD).await,
        admin,
        app,
    }
}

impl World {
    /// A PUT with optional headers.
    fn put(
        &self,
        token: &str,
        code: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> impl Future<Output = Reply> + use<> {
        self.app.send_with(Method::PUT, &path(code), Some(token), headers, Some(body))
    }

    /// The manager's PUT of `body`: refused with a 422 naming `fields`, nothing written.
    async fn invalid(&self, body: Value, fields: &[&str]) -> Reply {
        let reply = self.put(&self.manager, CHIYODA, &[], &body);
        let reply = self.refused(reply, StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation").await;
        assert_eq!(reply.error_fields(), fields, "{}", reply.text);
        reply
    }

    /// Sends the request behind `reply`, asserts the refusal, and that the event log did not change.
    async fn refused(&self, reply: impl Future<Output = Reply>, status: StatusCode, kind: &str) -> Reply {
        let before = self.app.event_count().await;
        let reply = reply.await;
        reply.problem(status, kind);
        assert_eq!(self.app.event_count().await, before, "a refused request wrote events: {}", reply.text);
        reply
    }
}

/// Until the municipality sets it, the source's コンビニ交付 defaults apply; its operations manager sets its own,
/// which is shown from then on; the same again records nothing; the system administrator may set it too; the
/// history says who set what.
async fn the_defaults_apply_until_the_municipality_sets_its_own(backend: Backend) {
    let w = world(backend).await;
    let shown = w.app.get(&path(CHIYODA), Some(&w.manager)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text);
    assert_eq!(shown.etag(), "\"0\"");
    assert_eq!(
        shown.json(),
        json!({"certificates": ["juminhyo", "inkan"], "opens": "06:30", "closes": "23:00",
               "closed_periods": [{"from": "12-29", "to": "01-03"}], "default": true, "version": 0})
    );

    let set = w.put(&w.manager, CHIYODA, &[("if-match", "\"0\"")], &own()).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let mut expected = own();
    expected["default"] = json!(false);
    expected["version"] = json!(1);
    assert_eq!(set.json(), expected);
    assert_eq!(set.etag(), "\"1\"");
    assert_eq!(w.app.get(&path(CHIYODA), Some(&w.manager)).await.json(), expected);
    // 札幌市 still has the defaults.
    assert_eq!(w.app.get(&path(SAPPORO), Some(&w.other_manager)).await.json()["default"], true);

    // The same again: nothing recorded, the same version.
    let before = w.app.event_count().await;
    let again = w.put(&w.manager, CHIYODA, &[], &own()).await;
    assert_eq!((again.status, again.json()["version"].clone()), (StatusCode::OK, json!(1)), "{}", again.text);
    assert_eq!(w.app.event_count().await, before);

    // The system administrator, open until midnight and every day of the year.
    let all_day = json!({"certificates": ["koseki_fuhyo", "shotoku_kazei", "juminhyo_kisai"], "opens": "00:00",
                         "closes": "24:00", "closed_periods": []});
    let by_admin = w.put(&w.admin, CHIYODA, &[], &all_day).await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);
    assert_eq!(by_admin.json()["certificates"], json!(["koseki_fuhyo", "shotoku_kazei", "juminhyo_kisai"]));
    assert_eq!((&by_admin.json()["closes"], &by_admin.json()["version"]), (&json!("24:00"), &json!(2)));

    let history = w.app.get(&format!("/api/v1/audit/events?municipality={CHIYODA}"), Some(&w.admin)).await;
    let set: Vec<Value> =
        history.ndjson().into_iter().filter(|l| l["type"] == "MunicipalityIssuanceServiceSet").collect();
    assert_eq!(set.len(), 2, "{}", history.text);
    assert_eq!((&set[0]["operator_id"], &set[0]["changes"]["opens"]), (&json!("MGR01"), &json!("07:00")));
    assert_eq!(set[1]["changes"]["closed_periods"], json!([]));
}

/// Only the municipality's operations managers and the system administrator: a clerk is 403; another
/// municipality's manager gets 404 whatever he sends, his body unread; a stale `If-Match` is 412.
async fn only_its_managers_may_set_it(backend: Backend) {
    let w = world(backend).await;
    w.refused(w.app.get(&path(CHIYODA), Some(&w.clerk)), StatusCode::FORBIDDEN, "/problems/forbidden").await;
    w.refused(w.put(&w.clerk, CHIYODA, &[], &own()), StatusCode::FORBIDDEN, "/problems/forbidden").await;
    w.refused(w.app.get(&path(CHIYODA), Some(&w.other_manager)), StatusCode::NOT_FOUND, "/problems/not-found").await;
    for body in [own(), json!("not a setting"), json!({"certificates": ["x"]})] {
        w.refused(w.put(&w.other_manager, CHIYODA, &[], &body), StatusCode::NOT_FOUND, "/problems/not-found").await;
    }
    let broken = w.app.send_with(Method::PUT, &path(CHIYODA), Some(&w.other_manager), &[], None);
    w.refused(broken, StatusCode::NOT_FOUND, "/problems/not-found").await;
    // A municipality nobody registered, and a path that is no code.
    for code in ["131032", "13101"] {
        w.refused(w.put(&w.admin, code, &[], &own()), StatusCode::NOT_FOUND, "/problems/not-found").await;
    }

    let set = w.put(&w.manager, CHIYODA, &[], &own()).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let stale = w.put(&w.manager, CHIYODA, &[("if-match", "\"0\"")], &own_with("opens", json!("08:00")));
    w.refused(stale, StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed").await;
}

/// Every field that does not parse is named at once; then the rules of the setting, each on its field, in
/// Japanese (English with `Accept-Language: en`); nothing is written.
async fn bad_settings_name_the_field_and_write_nothing(backend: Backend) {
    let w = world(backend).await;
    let reply = w
        .invalid(
            json!({"certificates": ["juminhyo", "住民票", "Inkan"], "opens": "6:30", "closes": "24:01",
               "closed_periods": [{"from": "12-29", "to": "02-30"}, {"from": "13-01", "to": "01-03"}]}),
            &[
                "/certificates/1",
                "/certificates/2",
                "/opens",
                "/closes",
                "/closed_periods/0/to",
                "/closed_periods/1/from",
            ],
        )
        .await;
    assert_eq!(reply.error_message("/certificates/1"), "「住民票」は選択できない値です");
    assert!(reply.error_message("/opens").contains("00:00〜24:00"), "{}", reply.text);
    assert!(reply.error_message("/closed_periods/0/to").contains("存在する日付"), "{}", reply.text);

    let reply = w.invalid(own_with("certificates", json!([])), &["/certificates"]).await;
    assert_eq!(reply.error_message("/certificates"), "交付する証明書を1つ以上選択してください");
    let reply = w.invalid(own_with("certificates", json!(["inkan", "juminhyo", "inkan"])), &["/certificates/2"]).await;
    assert_eq!(reply.error_message("/certificates/2"), "証明書「印鑑登録証明書」が重複して指定されています");
    w.invalid(own_with("closes", json!("07:00")), &["/closes"]).await;
    w.invalid(own_with("opens", json!("22:00")), &["/closes"]).await;
    let twice = json!([{"from": "12-29", "to": "01-03"}, {"from": "12-29", "to": "01-03"}]);
    w.invalid(own_with("closed_periods", twice), &["/closed_periods/1"]).await;
    let everything = json!({"certificates": [], "opens": "21:00", "closes": "07:00",
        "closed_periods": [{"from": "05-03", "to": "05-05"}, {"from": "05-03", "to": "05-05"}]});
    w.invalid(everything, &["/certificates", "/closes", "/closed_periods/1"]).await;
    // Every field is required, and no other is taken.
    let mut missing = own();
    missing.as_object_mut().unwrap().remove("closed_periods");
    w.invalid(missing, &["/closed_periods"]).await;
    w.invalid(own_with("default", json!(true)), &["/default"]).await;

    let english = w.put(&w.manager, CHIYODA, &[("accept-language", "en")], &own_with("closes", json!("07:00"))).await;
    assert_eq!(english.error_message("/closes"), "the service must open before it closes");
    assert_eq!(w.app.get(&path(CHIYODA), Some(&w.manager)).await.json()["default"], true);
}

async fn the_routes_are_documented(backend: Backend) {
    let app = spawn_app(backend).await;
    let doc = app.get("/openapi.json", None).await.json();
    let documented = &doc["paths"]["/api/v1/municipalities/{code}/issuance-service"];
    assert!(documented["get"].is_object() && documented["put"].is_object(), "{documented}");
    for schema in ["IssuanceServiceInput", "IssuanceServiceView"] {
        assert!(doc["components"]["schemas"][schema]["example"].is_object(), "{schema}");
    }
}

on_both_backends!(
    the_defaults_apply_until_the_municipality_sets_its_own,
    only_its_managers_may_set_it,
    bad_settings_name_the_field_and_write_nothing,
    the_routes_are_documented,
);
