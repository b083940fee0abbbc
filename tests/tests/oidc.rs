//! Login to business systems through cardap (issue 10, point 7), driven as a business system would: the
//! `openidconnect` relying-party library discovers cardap, sends the operator to its authorization endpoint with
//! PKCE, and verifies the ID token (ES256, the JWKS, issuer, audience, nonce); the operator logs in on cardap's
//! form or with his session. The token names the municipality, the operator ID and his 業務内ID and role for that
//! business system only. Refused: an unregistered redirect URI (shown, never redirected), a replayed code, a
//! wrong PKCE verifier, a wrong client secret, a system the operator may not use, an operator revoked between the
//! code and its exchange. Every test runs on PostgreSQL and on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cardap_tests::reqwest::{self, StatusCode};
use cardap_tests::serde_json::{Value, json};
use cardap_tests::{
    Backend, TestApp, business_system, on_both_backends, operator_path, operator_with_password, spawn_app,
    with_check_digit,
};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreTokenResponse};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, TokenResponse,
};

const REDIRECT: &str = "http://127.0.0.1:9/oidc/callback";
const PASSWORD: &str = "Passw0rdForOidc";

struct World {
    app: TestApp,
    admin: String,
    code: String,
    secret: String,
}

/// A municipality permitted to use business system 05, which is registered as a login client with a secret, and
/// an operator `OP0501` of it permitted for 05, with 業務内ID `L0042` (role 司書) there.
async fn world(backend: Backend) -> World {
    let app = spawn_app(backend).await;
    let admin = app.admin_token().await;
    let code = with_check_digit("13101");
    app.register_municipality(&admin, &code, "千代田区", 1).await;
    let reply = app.post("/api/v1/business-systems", Some(&admin), &business_system("05", "施設予約")).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    app.permit(&admin, "05", &code).await;
    let client = "/api/v1/business-systems/05/login-client";
    let reply = app.put(client, Some(&admin), &json!({ "redirect_uris": [REDIRECT] })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["secret_issued_at"], Value::Null);
    let reply = app.post_empty(&format!("{client}/secret"), Some(&admin)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let secret = reply.json()["client_secret"].as_str().unwrap().to_owned();
    let shown = app.get(client, Some(&admin)).await;
    assert_eq!(shown.json()["redirect_uris"], json!([REDIRECT]));
    assert!(shown.json()["secret_issued_at"].is_string());
    assert!(!shown.text.contains(&secret), "the secret is shown once only");
    let body = operator_with_password("OP0501", PASSWORD, &["clerk"], &["05"]);
    app.add_operators(&admin, &code, &body).await;
    let internal = format!("{}/internal-ids/05", operator_path(&code, "OP0501"));
    let reply = app.put(&internal, Some(&admin), &json!({ "internal_id": "L0042", "role": "司書" })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    World { app, admin, code, secret }
}

/// The business system's HTTP client for the back channel (discovery, JWKS, token): no redirects (SSRF).
fn rp_http() -> reqwest::Client {
    cardap_tests::install_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// What a business system holds while the operator is away at cardap.
struct Flow {
    url: String,
    csrf: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

async fn metadata(app: &TestApp) -> CoreProviderMetadata {
    CoreProviderMetadata::discover_async(IssuerUrl::new(app.address.clone()).unwrap(), &rp_http()).await.unwrap()
}

fn start(meta: &CoreProviderMetadata, secret: &str) -> Flow {
    let client = CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new("05".to_owned()),
        Some(ClientSecret::new(secret.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge)
        .url();
    Flow { url: url.to_string(), csrf, nonce, verifier }
}

/// The query of a redirect's `Location`, as pairs.
fn location_query(reply: &cardap_tests::Reply) -> Vec<(String, String)> {
    let location = reply.header("location").unwrap_or_else(|| panic!("a redirect: {} {}", reply.status, reply.text));
    assert!(location.starts_with(REDIRECT), "back to the registered URI: {location}");
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or_default();
    openidconnect::url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The operator at cardap's login form: GET the authorization URL, then POST the form with his credentials.
async fn log_in_on_form(
    app: &TestApp,
    flow: &Flow,
    municipality: &str,
    operator_id: &str,
    password: &str,
) -> cardap_tests::Reply {
    let page = cardap_tests::send(app.client.get(&flow.url)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.text.contains("オペレータID") && page.text.contains("施設予約"), "{}", page.text);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let mut form: Vec<(String, String)> =
        openidconnect::url::Url::parse(&flow.url).unwrap().query_pairs().into_owned().collect();
    form.push(("municipality".to_owned(), municipality.to_owned()));
    form.push(("operator_id".to_owned(), operator_id.to_owned()));
    form.push(("password".to_owned(), password.to_owned()));
    cardap_tests::send(app.client.post(app.url("/oidc/authorize")).form(&form)).await
}

fn client(
    meta: &CoreProviderMetadata,
    secret: &str,
) -> openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
> {
    CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new("05".to_owned()),
        Some(ClientSecret::new(secret.to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
}

/// The business system exchanges `code` with its secret and the flow's PKCE verifier; an error as its debug text.
async fn exchange(
    meta: &CoreProviderMetadata,
    secret: &str,
    code: String,
    flow: &Flow,
) -> Result<CoreTokenResponse, String> {
    client(meta, secret)
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.secret().clone()))
        .request_async(&rp_http())
        .await
        .map_err(|e| format!("{e:?}"))
}

/// The custom claims of a verified ID token.
fn payload(id_token: &str) -> Value {
    let part = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn a_business_system_logs_an_operator_in_through_cardap(backend: Backend) {
    let w = world(backend).await;
    let meta = metadata(&w.app).await;
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0501", PASSWORD).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.text);
    let pairs = location_query(&back);
    assert_eq!(param(&pairs, "state").as_deref(), Some(flow.csrf.secret().as_str()));
    assert_eq!(param(&pairs, "iss").as_deref(), Some(w.app.address.as_str()));
    let code = param(&pairs, "code").unwrap();

    let rp = client(&meta, &w.secret);
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.secret().clone()))
        .request_async(&rp_http())
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    // Signature (ES256 with the JWKS), issuer, audience, expiry and nonce, checked by the library.
    let claims = id_token.claims(&rp.id_token_verifier(), &flow.nonce).unwrap();
    let amr: Vec<String> = claims.auth_method_refs().unwrap().iter().map(|a| a.as_str().to_owned()).collect();
    assert_eq!(amr, ["pwd"]);
    let custom = payload(&id_token.to_string());
    assert_eq!(custom["municipality"], json!(w.code));
    assert_eq!(custom["operator_id"], "OP0501");
    assert_eq!(custom["internal_id"], "L0042");
    assert_eq!(custom["role"], "司書");
    assert_eq!(custom["auth_method"], "password");
    assert_eq!(custom["aud"], "05");
    let lifetime = custom["exp"].as_i64().unwrap() - custom["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 300, "short-lived by default");

    // The same code again: refused (a replay), whoever sends it.
    let again = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.secret().clone()))
        .request_async(&rp_http())
        .await;
    let text = format!("{again:?}");
    assert!(again.is_err() && text.contains("invalid_grant"), "{text}");

    // An operator with a session at cardap goes straight back with a code (no form).
    let token = w.app.login(Some(&w.code), "OP0501", PASSWORD).await;
    let flow = start(&meta, &w.secret);
    let back = cardap_tests::send(w.app.client.get(&flow.url).bearer_auth(&token)).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.text);
    assert!(param(&location_query(&back), "code").is_some());
    // Nobody logged in and prompt=none: login_required, back to the system.
    let silent = format!("{}&prompt=none", start(&meta, &w.secret).url);
    let back = cardap_tests::send(w.app.client.get(&silent)).await;
    assert_eq!(param(&location_query(&back), "error").as_deref(), Some("login_required"));
}

async fn bad_requests_get_no_code_and_no_token(backend: Backend) {
    let w = world(backend).await;
    let meta = metadata(&w.app).await;

    // An unregistered redirect URI: shown to the operator, never redirected to.
    let flow = start(&meta, &w.secret);
    let evil = flow.url.replace("127.0.0.1%3A9", "evil.example.jp");
    assert_ne!(evil, flow.url);
    let page = cardap_tests::send(w.app.client.get(&evil)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.header("location").is_none());
    assert!(page.text.contains("redirect_uri"), "{}", page.text);
    // An unknown client: the same.
    let page = cardap_tests::send(w.app.client.get(flow.url.replace("client_id=05", "client_id=07"))).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    // No PKCE: an error back to the system.
    let plain = w.app.url(&format!(
        "/oidc/authorize?response_type=code&client_id=05&scope=openid&state=s1&redirect_uri={}",
        REDIRECT.replace(':', "%3A").replace('/', "%2F")
    ));
    let back = cardap_tests::send(w.app.client.get(&plain)).await;
    let pairs = location_query(&back);
    assert_eq!(param(&pairs, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&pairs, "state").as_deref(), Some("s1"));

    // A wrong password: the form again, 401, what was typed kept (but the password).
    let flow = start(&meta, &w.secret);
    let wrong = log_in_on_form(&w.app, &flow, &w.code, "OP0501", "WrongPassw0rd").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text.contains("パスワードが違います") && wrong.text.contains("value=\"OP0501\""));
    assert!(!wrong.text.contains("WrongPassw0rd"));

    // A wrong PKCE verifier: invalid_grant, and the code is spent.
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0501", PASSWORD).await;
    let code = param(&location_query(&back), "code").unwrap();
    let rp = client(&meta, &w.secret);
    let stolen = PkceCodeChallenge::new_random_sha256().1;
    let refused = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(stolen)
        .request_async(&rp_http())
        .await;
    assert!(format!("{refused:?}").contains("invalid_grant"), "{refused:?}");

    // A wrong client secret: invalid_client (401).
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0501", PASSWORD).await;
    let code = param(&location_query(&back), "code").unwrap();
    let reply = cardap_tests::send(
        w.app.client.post(w.app.url("/oidc/token")).basic_auth("05", Some("not-the-secret")).form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", flow.verifier.secret()),
        ]),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert!(reply.header("www-authenticate").is_some());
    // ...and that code still works for the right secret (a failed client authentication spends nothing).
    let ok = exchange(&meta, &w.secret, code, &flow).await;
    assert!(ok.is_ok(), "{ok:?}");

    // An operator not permitted for 05: access_denied, no code.
    let body = operator_with_password("OP0502", PASSWORD, &["clerk"], &[]);
    w.app.add_operators(&w.admin, &w.code, &body).await;
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0502", PASSWORD).await;
    let pairs = location_query(&back);
    assert_eq!(param(&pairs, "error").as_deref(), Some("access_denied"));
    assert!(param(&pairs, "code").is_none());
}

async fn an_operator_revoked_after_the_code_gets_no_token(backend: Backend) {
    let w = world(backend).await;
    let meta = metadata(&w.app).await;
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0501", PASSWORD).await;
    let code = param(&location_query(&back), "code").unwrap();
    let reply = w.app.post_empty(&format!("{}/revoke", operator_path(&w.code, "OP0501")), Some(&w.admin)).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let refused = exchange(&meta, &w.secret, code, &flow).await;
    assert!(format!("{refused:?}").contains("invalid_grant"), "{refused:?}");
    // Withdrawing shared use ends it for everyone of the municipality, too.
    let body = operator_with_password("OP0503", PASSWORD, &["clerk"], &["05"]);
    w.app.add_operators(&w.admin, &w.code, &body).await;
    w.app.withdraw(&w.admin, "05", &w.code).await;
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0503", PASSWORD).await;
    assert_eq!(param(&location_query(&back), "error").as_deref(), Some("access_denied"));
    // His municipality abolished between the code and its exchange: no token either.
    w.app.permit(&w.admin, "05", &w.code).await;
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0503", PASSWORD).await;
    let code = param(&location_query(&back), "code").unwrap();
    let reply = w.app.post_empty(&format!("/api/v1/municipalities/{}/abolish", w.code), Some(&w.admin)).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let refused = exchange(&meta, &w.secret, code, &flow).await;
    assert!(format!("{refused:?}").contains("invalid_grant"), "{refused:?}");
}

async fn only_the_system_administrator_registers_login_clients(backend: Backend) {
    let w = world(backend).await;
    let clerk = w.app.login(Some(&w.code), "OP0501", PASSWORD).await;
    let reply = w.app.post_empty("/api/v1/business-systems/05/login-client/secret", Some(&clerk)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // A redirect URI that is not https (nor loopback http) is refused, named by pointer.
    let reply = w
        .app
        .put(
            "/api/v1/business-systems/05/login-client",
            Some(&w.admin),
            &json!({ "redirect_uris": ["http://lib.example.jp/cb"] }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reply.error_fields(), ["/redirect_uris/0"]);
    // A secret for a system that is no login client: 409.
    let reply = w.app.post("/api/v1/business-systems", Some(&w.admin), &business_system("06", "図書予約")).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let reply = w.app.post_empty("/api/v1/business-systems/06/login-client/secret", Some(&w.admin)).await;
    reply.problem(StatusCode::CONFLICT, "/problems/login-not-configured");
    // A new secret replaces the old one.
    let reply = w.app.post_empty("/api/v1/business-systems/05/login-client/secret", Some(&w.admin)).await;
    let new = reply.json()["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new, w.secret);
    let meta = metadata(&w.app).await;
    let flow = start(&meta, &w.secret);
    let back = log_in_on_form(&w.app, &flow, &w.code, "OP0501", PASSWORD).await;
    let code = param(&location_query(&back), "code").unwrap();
    let old = exchange(&meta, &w.secret, code, &flow).await;
    assert!(format!("{old:?}").contains("invalid_client"), "{old:?}");
}

on_both_backends!(
    a_business_system_logs_an_operator_in_through_cardap,
    bad_requests_get_no_code_and_no_token,
    an_operator_revoked_after_the_code_gets_no_token,
    only_the_system_administrator_registers_login_clients,
);
