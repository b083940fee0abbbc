//! Biometric login (生体認証) end to end over HTTP against the real server, with a software FIDO2 authenticator
//! (webauthn-authenticator-rs's `SoftToken`: packed attestation, user verification claimed, a signature counter):
//! the operations manager registers an authenticator for an operator (生体情報登録), the operator logs in with an
//! assertion and gets a session of method `biometric`; and every refusal — a model the municipality does not
//! allow, an unregistered authenticator, a replayed or unknown challenge, a tampered signature, a counter that
//! goes backwards, a deleted authenticator, a revoked operator, a clerk or another municipality's manager — on
//! PostgreSQL and on SQLite. Refused assertions count as failed logins until the throttle answers 429.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardap_commands::passwords::Secret;
use cardap_domain::operator::AuthMethod;
use cardap_tests::reqwest::{Method, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, Reply, TestApp, on_both_backends, operator_with_password, send, spawn_app, spawn_app_with_clock,
};
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url, WebauthnAuthenticator,
};
use webauthn_authenticator_rs::softtoken::{self, SoftToken};

const CHIYODA: &str = "131016";
const MINATO: &str = "131032";
const PASSWORD: &str = "ClerkPassw0rd";
const MANAGER_PASSWORD: &str = "ManagerPassw0rd";
/// A model no software token is.
const VEIN_READER: &str = "ee882879-721c-4913-9775-3dfcce97072a";

/// The origin the server's relying party expects by default: `http://localhost:<its port>`.
fn origin(app: &TestApp) -> Url {
    Url::parse(&format!("http://localhost:{}", app.socket_addr.port())).unwrap()
}

/// A software authenticator that verifies its user (a fingerprint, as far as the server can tell).
fn reader() -> SoftToken {
    SoftToken::new(true).expect("a software token").0
}

/// The same authenticator as it was at this moment (its keys and its counter): a clone.
fn clone_of(token: &SoftToken) -> SoftToken {
    SoftToken::from_cbor(&token.to_cbor().unwrap()).unwrap()
}

fn authenticators_path(code: &str, operator_id: &str) -> String {
    format!("/api/v1/municipalities/{code}/operators/{operator_id}/authenticators")
}

/// 千代田区 with its operations manager MGR01, clerks OP0501 and OP0502; the administrator's and the manager's
/// tokens.
async fn chiyoda(app: &TestApp) -> (String, String) {
    let admin = app.admin_token().await;
    app.register_municipality(&admin, CHIYODA, "千代田区", 1).await;
    app.permit(&admin, "01", CHIYODA).await;
    let operators = json!([
        operator_with_password("MGR01", MANAGER_PASSWORD, &["operations_manager"], &[]),
        operator_with_password("OP0501", PASSWORD, &["clerk"], &["01"]),
        operator_with_password("OP0502", PASSWORD, &["clerk"], &["01"]),
    ]);
    app.add_operators(&admin, CHIYODA, &operators).await;
    let manager = app.login(Some(CHIYODA), "MGR01", MANAGER_PASSWORD).await;
    (admin, manager)
}

/// Begins a registration for `operator_id` as `manager`; panics unless it answers 201. Returns the finish path
/// and the creation options.
async fn begin_registration(app: &TestApp, manager: &str, operator_id: &str) -> (String, CreationChallengeResponse) {
    let path = format!("{}/registrations", authenticators_path(CHIYODA, operator_id));
    let reply = app.post(&path, Some(manager), &json!({"label": "窓口3番 指静脈リーダー"})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    let finish = format!("{path}/{}/finish", body["registration_id"].as_str().unwrap());
    (finish, serde_json::from_value(body["options"].clone()).unwrap())
}

/// The whole registration ceremony: the manager begins, `token` answers on the operator's terminal, the manager
/// finishes. Returns the finish's reply.
async fn register(app: &TestApp, manager: &str, operator_id: &str, token: &mut SoftToken) -> Reply {
    let (finish, options) = begin_registration(app, manager, operator_id).await;
    let answer = token.do_registration(origin(app), options).expect("the authenticator registers");
    finish_with_key(app, manager, &finish, &serde_json::to_value(answer).unwrap()).await
}

/// Finishes a registration with an `Idempotency-Key` (the finish path itself).
fn finish_with_key(app: &TestApp, manager: &str, finish: &str, answer: &Value) -> impl Future<Output = Reply> + use<> {
    app.send_with(Method::POST, finish, Some(manager), &[("idempotency-key", finish)], Some(answer))
}

/// Begins a biometric login; panics unless it answers 201. Returns the challenge id and the request options.
async fn begin_login(app: &TestApp, municipality: &str, operator_id: &str) -> (String, Value) {
    let reply = app
        .post(
            "/api/v1/sessions/biometric/challenges",
            None,
            &json!({"municipality": municipality, "operator_id": operator_id}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let body = reply.json();
    (body["challenge_id"].as_str().unwrap().to_owned(), body["options"].clone())
}

/// `token`'s assertion for the login options (as a browser's `navigator.credentials.get()` gives it).
fn assert_with(app: &TestApp, token: &mut SoftToken, options: Value) -> Value {
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    serde_json::to_value(token.do_authentication(origin(app), options).expect("the authenticator answers")).unwrap()
}

fn finish_login(app: &TestApp, challenge_id: &str, credential: &Value) -> impl Future<Output = Reply> + use<> {
    app.post("/api/v1/sessions/biometric", None, &json!({"challenge_id": challenge_id, "credential": credential}))
}

/// A whole biometric login of OP0501 of 千代田区 with `token`; the reply of the finish.
async fn log_in(app: &TestApp, operator_id: &str, token: &mut SoftToken) -> Reply {
    let (challenge, options) = begin_login(app, CHIYODA, operator_id).await;
    let credential = assert_with(app, token, options);
    finish_login(app, &challenge, &credential).await
}

fn credential_ids(options: &Value) -> Vec<String> {
    options["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_manager_registers_an_authenticator_and_the_operator_logs_in_with_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_admin, manager) = chiyoda(&app).await;
    let mut token = reader();

    let registered = register(&app, &manager, "OP0501", &mut token).await;

    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text);
    let view = registered.json();
    assert_eq!(view["aaguid"], softtoken::AAGUID.to_string());
    assert_eq!(view["label"], "窓口3番 指静脈リーダー");
    let credential_id = view["credential_id"].as_str().unwrap().to_owned();
    let events = app.operator_events(Some(CHIYODA), "OP0501").await;
    let event = events.iter().find(|e| e.event_type == "OperatorAuthenticatorRegistered").expect("the event");
    assert_eq!(event.payload["credential_id"], credential_id.as_str());
    assert_eq!(event.payload["aaguid"], softtoken::AAGUID.to_string());
    assert!(event.payload["public_key"].as_str().is_some_and(|k| !k.is_empty()), "{}", event.payload);
    // A retry of a finish that went through (its answer lost) gets the same answer; without the key it is used up.
    let (finish, options) = begin_registration(&app, &manager, "OP0502").await;
    let answer = serde_json::to_value(reader().do_registration(origin(&app), options).unwrap()).unwrap();
    let first = finish_with_key(&app, &manager, &finish, &answer).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let retried = finish_with_key(&app, &manager, &finish, &answer).await;
    assert_eq!((retried.status, retried.json()), (StatusCode::CREATED, first.json()));
    app.post(&finish, Some(&manager), &answer).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let listed = app.get(&authenticators_path(CHIYODA, "OP0501"), Some(&manager)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.json()["items"][0]["credential_id"], credential_id.as_str());

    // The operator logs in: municipality + operator ID, then his authenticator.
    let (challenge, options) = begin_login(&app, CHIYODA, "OP0501").await;
    assert_eq!(credential_ids(&options), std::slice::from_ref(&credential_id));
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let credential = assert_with(&app, &mut token, options);
    let login = finish_login(&app, &challenge, &credential).await;

    assert_eq!(login.status, StatusCode::CREATED, "{}", login.text);
    let session = login.json();
    assert!(session["expires_at"].is_string(), "{session}");
    let session_token = session["token"].as_str().unwrap().to_owned();
    let me = app.get("/api/v1/me", Some(&session_token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    assert_eq!(
        (me.json()["operator_id"].as_str(), me.json()["municipality"].as_str()),
        (Some("OP0501"), Some(CHIYODA))
    );
    let known = app.state.access.authenticate(&Secret::new(session_token)).await.unwrap().unwrap();
    assert_eq!(known.method, AuthMethod::Biometric);
    let logins: Vec<String> =
        app.login_events(Some(CHIYODA), "OP0501").await.into_iter().map(|e| e.event_type).collect();
    assert_eq!(logins, ["OperatorAuthenticatorUsed", "OperatorLoggedIn"]);

    // The challenge was answered: the same assertion again is refused.
    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    // A name that is nobody gets an answer of the same shape, the same every time.
    let (_, nobody) = begin_login(&app, CHIYODA, "NOBODY").await;
    let (_, again) = begin_login(&app, CHIYODA, "NOBODY").await;
    assert_eq!(credential_ids(&nobody), credential_ids(&again));
    assert_ne!(nobody["publicKey"]["challenge"], again["publicKey"]["challenge"]);
    assert_eq!(nobody["publicKey"]["userVerification"], "required");
}

/// A business system that logs the operator in through cardap (OpenID Connect) is told he proved himself
/// biometrically: `auth_method` `biometric`, `amr` `hwk` + `user`.
async fn a_business_system_is_told_the_login_was_biometric(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, manager) = chiyoda(&app).await;
    let redirect = "http://127.0.0.1:9/oidc/callback";
    let client = "/api/v1/business-systems/01/login-client";
    let reply = app.put(client, Some(&admin), &json!({ "redirect_uris": [redirect] })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let secret = app.post_empty(&format!("{client}/secret"), Some(&admin)).await.json()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut token = reader();
    assert_eq!(register(&app, &manager, "OP0501", &mut token).await.status, StatusCode::CREATED);
    let session = log_in(&app, "OP0501", &mut token).await.json()["token"].as_str().unwrap().to_owned();

    let (verifier, challenge) =
        ("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    let authorize = format!(
        "/oidc/authorize?response_type=code&client_id=01&scope=openid&code_challenge={challenge}\
         &code_challenge_method=S256&redirect_uri={}",
        redirect.replace(':', "%3A").replace('/', "%2F")
    );
    let back = app.get(&authorize, Some(&session)).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.text);
    let location = back.header("location").unwrap();
    let code = location.split(['?', '&']).find_map(|p| p.strip_prefix("code=")).unwrap().to_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier),
        ("redirect_uri", redirect),
        ("client_id", "01"),
        ("client_secret", secret.as_str()),
    ];
    let tokens = send(app.client.post(app.url("/oidc/token")).form(&form)).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
    let id_token = tokens.json()["id_token"].as_str().unwrap().to_owned();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["auth_method"], "biometric");
    assert_eq!(claims["amr"], json!(["hwk", "user"]));
    assert_eq!(claims["operator_id"], "OP0501");
}

async fn refused_assertions_count_as_failed_logins_until_throttled(backend: Backend) {
    // A clock that stands still: the throttle's waits do not run out during the test.
    let app = spawn_app_with_clock(backend, |_| {}).await;
    let (_admin, manager) = chiyoda(&app).await;
    let mut token = reader();
    assert_eq!(register(&app, &manager, "OP0501", &mut token).await.status, StatusCode::CREATED);
    let as_registered = clone_of(&token);
    assert_eq!(log_in(&app, "OP0501", &mut token).await.status, StatusCode::CREATED);
    assert_eq!(log_in(&app, "OP0501", &mut token).await.status, StatusCode::CREATED);

    // 1. A tampered signature.
    let (challenge, options) = begin_login(&app, CHIYODA, "OP0501").await;
    let mut credential = assert_with(&app, &mut token, options);
    let mut signature = URL_SAFE_NO_PAD.decode(credential["response"]["signature"].as_str().unwrap()).unwrap();
    let middle = signature.len() / 2;
    signature[middle] ^= 0x01;
    credential["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(signature));
    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");

    // 2. An authenticator that is not registered (it made a credential in a registration nobody finished).
    let mut stranger = reader();
    let (_, creation) = begin_registration(&app, &manager, "OP0502").await;
    let made = serde_json::to_value(stranger.do_registration(origin(&app), creation).unwrap()).unwrap();
    let (challenge, mut options) = begin_login(&app, CHIYODA, "OP0501").await;
    options["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": made["rawId"]}]);
    let credential = assert_with(&app, &mut stranger, options);
    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");

    // 3. A counter that goes backwards: the authenticator as it was at registration, after two logins.
    let mut cloned = as_registered;
    let (challenge, options) = begin_login(&app, CHIYODA, "OP0501").await;
    let credential = assert_with(&app, &mut cloned, options);
    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    let regressed =
        app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorAuthenticatorCounterRegressed", 1).await;
    assert_eq!((&regressed[0].payload["sign_count"], &regressed[0].payload["last_sign_count"]), (&json!(1), &json!(2)));

    // 4. A challenge nobody began.
    finish_login(&app, "0190a6c2-3c4d-4e5f-8a9b-0c1d2e3f4a5b", &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");

    // Each refusal of his assertions is a failed login on his record, towards the lock.
    app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 3).await;
    // One more, and he must wait (3 failures for a login name are free): even the real authenticator is turned
    // away before anything is checked.
    let (challenge, options) = begin_login(&app, CHIYODA, "OP0501").await;
    let mut credential = assert_with(&app, &mut token, options);
    credential["response"]["signature"] = json!("MEUCIQ");
    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    let throttled = app
        .post("/api/v1/sessions/biometric/challenges", None, &json!({"municipality": CHIYODA, "operator_id": "OP0501"}))
        .await;
    throttled.problem(StatusCode::TOO_MANY_REQUESTS, "/problems/too-many-attempts");
    assert!(throttled.header("retry-after").is_some());
}

async fn the_municipality_chooses_the_models_and_a_deleted_authenticator_no_longer_logs_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_admin, manager) = chiyoda(&app).await;
    let policy = "/api/v1/municipalities/131016/biometric-policy";
    let set = app.put(policy, Some(&manager), &json!({"required": "none", "allowed_models": [VEIN_READER]})).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.json()["allowed_models"], json!([VEIN_READER]));

    let refused = register(&app, &manager, "OP0501", &mut reader()).await;

    let body = refused.problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/authenticator-model-not-allowed");
    assert!(body["detail"].as_str().unwrap().contains(&softtoken::AAGUID.to_string()), "{body}");
    assert!(
        app.operator_events(Some(CHIYODA), "OP0501")
            .await
            .iter()
            .all(|e| e.event_type != "OperatorAuthenticatorRegistered")
    );

    // The municipality allows the model: now it registers, and logs him in.
    let both = json!({"required": "none", "allowed_models": [VEIN_READER, softtoken::AAGUID.to_string()]});
    assert_eq!(app.put(policy, Some(&manager), &both).await.status, StatusCode::OK);
    let mut token = reader();
    let registered = register(&app, &manager, "OP0501", &mut token).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text);
    let credential_id = registered.json()["credential_id"].as_str().unwrap().to_owned();
    assert_eq!(log_in(&app, "OP0501", &mut token).await.status, StatusCode::CREATED);

    // A login begun before the deletion and answered after it gets nothing.
    let (challenge, options) = begin_login(&app, CHIYODA, "OP0501").await;
    let credential = assert_with(&app, &mut token, options);
    let path = format!("{}/{credential_id}", authenticators_path(CHIYODA, "OP0501"));
    let deleted = app.delete(&path, Some(&manager)).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);

    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    // … and counts as a failed login of his.
    app.wait_for_operator_events(Some(CHIYODA), "OP0501", "OperatorLoginFailed", 1).await;
    let (_, options) = begin_login(&app, CHIYODA, "OP0501").await;
    assert!(!credential_ids(&options).contains(&credential_id), "a deleted credential is not asked for");
    assert_eq!(app.get(&authenticators_path(CHIYODA, "OP0501"), Some(&manager)).await.json()["items"], json!([]));
    app.delete(&path, Some(&manager)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    let types: Vec<String> =
        app.operator_events(Some(CHIYODA), "OP0501").await.into_iter().map(|e| e.event_type).collect();
    assert!(
        types.ends_with(&["OperatorAuthenticatorRegistered".to_owned(), "OperatorAuthenticatorRemoved".to_owned()])
    );
}

async fn a_revoked_operator_gets_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_admin, manager) = chiyoda(&app).await;
    let mut token = reader();
    assert_eq!(register(&app, &manager, "OP0501", &mut token).await.status, StatusCode::CREATED);
    let (challenge, options) = begin_login(&app, CHIYODA, "OP0501").await;
    let credential = assert_with(&app, &mut token, options);

    let revoke = app.post_empty("/api/v1/municipalities/131016/operators/OP0501/revoke", Some(&manager)).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text);

    finish_login(&app, &challenge, &credential)
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    let (_, options) = begin_login(&app, CHIYODA, "OP0501").await;
    let registered = app.operator_events(Some(CHIYODA), "OP0501").await;
    let id = registered.iter().find(|e| e.event_type == "OperatorAuthenticatorRegistered").unwrap();
    assert!(!credential_ids(&options).contains(&id.payload["credential_id"].as_str().unwrap().to_owned()));
    let registration = format!("{}/registrations", authenticators_path(CHIYODA, "OP0501"));
    app.post(&registration, Some(&manager), &json!({"label": "予備"}))
        .await
        .problem(StatusCode::CONFLICT, "/problems/operator-revoked");
}

async fn a_municipality_requiring_biometric_refuses_his_password_login(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_admin, manager) = chiyoda(&app).await;
    let mut token = reader();
    assert_eq!(register(&app, &manager, "OP0501", &mut token).await.status, StatusCode::CREATED);
    let policy = "/api/v1/municipalities/131016/biometric-policy";
    let before = app.get(policy, Some(&manager)).await;
    assert_eq!(before.json(), json!({"required": "none", "operators": [], "allowed_models": [], "version": 0}));

    let set = app.put(policy, Some(&manager), &json!({"required": "listed", "operators": ["OP0501"]})).await;

    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.etag(), "\"1\"");
    let body = app
        .try_login(Some(CHIYODA), "OP0501", PASSWORD)
        .await
        .problem(StatusCode::FORBIDDEN, "/problems/biometric-required");
    assert!(body["title"].as_str().unwrap().contains("生体認証"), "{body}");
    // A wrong password is answered as always: the requirement is told only to whoever knows the password.
    app.try_login(Some(CHIYODA), "OP0501", "WrongPassw0rd")
        .await
        .problem(StatusCode::UNAUTHORIZED, "/problems/invalid-credentials");
    // Another operator, not listed, still logs in with his password; OP0501 with his authenticator.
    app.login(Some(CHIYODA), "OP0502", PASSWORD).await;
    assert_eq!(log_in(&app, "OP0501", &mut token).await.status, StatusCode::CREATED);
    // The policy is an event; setting it again changes nothing; an old ETag is refused.
    let events = app.event_count().await;
    let same = app.put(policy, Some(&manager), &json!({"required": "listed", "operators": ["OP0501"]})).await;
    assert_eq!((same.status, same.etag()), (StatusCode::OK, "\"1\""));
    assert_eq!(app.event_count().await, events);
    let stale = app
        .send_with(Method::PUT, policy, Some(&manager), &[("if-match", "\"0\"")], Some(&json!({"required": "all"})))
        .await;
    stale.problem(StatusCode::PRECONDITION_FAILED, "/problems/precondition-failed");
    // Requiring it of all reaches OP0502 too.
    assert_eq!(app.put(policy, Some(&manager), &json!({"required": "all"})).await.status, StatusCode::OK);
    app.try_login(Some(CHIYODA), "OP0502", PASSWORD)
        .await
        .problem(StatusCode::FORBIDDEN, "/problems/biometric-required");
    app.put(policy, Some(&manager), &json!({"required": "listed", "operators": []}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "/problems/validation");
}

async fn only_the_municipalitys_operations_manager_registers(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, _manager) = chiyoda(&app).await;
    app.register_municipality(&admin, MINATO, "港区", 2).await;
    app.add_operators(&admin, MINATO, &operator_with_password("MGR02", MANAGER_PASSWORD, &["operations_manager"], &[]))
        .await;
    let clerk = app.login(Some(CHIYODA), "OP0502", PASSWORD).await;
    let other_manager = app.login(Some(MINATO), "MGR02", MANAGER_PASSWORD).await;
    let registration = format!("{}/registrations", authenticators_path(CHIYODA, "OP0501"));

    app.post(&registration, Some(&clerk), &json!({"label": "窓口"}))
        .await
        .problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    // Another municipality's manager: 404, before his body is even read (this one is not JSON).
    let not_json = send(
        app.request(Method::POST, &registration, Some(&other_manager)).header("content-type", "text/plain").body("x"),
    )
    .await;
    not_json.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    for path in [authenticators_path(CHIYODA, "OP0501"), "/api/v1/municipalities/131016/biometric-policy".to_owned()] {
        app.get(&path, Some(&other_manager)).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    }
    app.put("/api/v1/municipalities/131016/biometric-policy", Some(&clerk), &json!({"required": "all"}))
        .await
        .problem(StatusCode::FORBIDDEN, "/problems/forbidden");
    // The system administrator registers for every municipality; the ceremony is finished by whoever began it.
    let (finish, options) = begin_registration(&app, &admin, "OP0501").await;
    let answer = serde_json::to_value(reader().do_registration(origin(&app), options).unwrap()).unwrap();
    let manager = app.login(Some(CHIYODA), "MGR01", MANAGER_PASSWORD).await;
    app.post(&finish, Some(&manager), &answer).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
    // … which used it up.
    app.post(&finish, Some(&admin), &answer).await.problem(StatusCode::NOT_FOUND, "/problems/not-found");
}

on_both_backends!(
    the_manager_registers_an_authenticator_and_the_operator_logs_in_with_it,
    a_business_system_is_told_the_login_was_biometric,
    refused_assertions_count_as_failed_logins_until_throttled,
    the_municipality_chooses_the_models_and_a_deleted_authenticator_no_longer_logs_in,
    a_revoked_operator_gets_nothing,
    a_municipality_requiring_biometric_refuses_his_password_login,
    only_the_municipalitys_operations_manager_registers,
);
