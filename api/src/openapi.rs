//! The OpenAPI document (`GET /openapi.json`), generated from the handlers and types themselves.
//!
//! The `#[utoipa::path]` annotations state what is particular to an operation (its success, the 403/404/409/412
//! it can answer, its `operationId`). [`complete`] then adds what follows from the shape of the operation, so that
//! it is said once and stays true everywhere: every error is `application/problem+json` with the problem schema;
//! a secured operation answers 401 (and 403 but for the few a session that must change its password may use), an operation with a body 400/413/415/422, with a query 422, with path
//! parameters 404, with `If-Match` 400/412, a write 409 when a concurrent change wins, every operation 500/503;
//! path parameters carry their pattern and an example; the create operations link to the operations that use the
//! ids they return. `tests` (below) and `scripts/fuzz-openapi` hold the document to this.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::Json;
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ProblemDetails, ProblemField, ProblemType};
use crate::routes::{
    audit, biometrics, business_systems, card_writes, cards, feeds, health, issuance_service, jobs, library_links,
    municipalities, oidc, operator_csv, operators, pki, read_access, registry, resident_settings, residents, sessions,
    webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "cardap", description = "マイナンバーカード カードAP搭載システム API. Errors are application/problem+json \
        with a stable `type`; messages are Japanese unless `Accept-Language: en`."),
    paths(
        health::healthz, health::readyz,
        sessions::login, sessions::logout, sessions::me, sessions::change_own_password,
        biometrics::begin_login, biometrics::finish_login,
        biometrics::begin_registration, biometrics::finish_registration, biometrics::list, biometrics::remove,
        biometrics::show_policy, biometrics::set_policy,
        operators::register, operators::list, operators::show, operators::change, operators::revoke, operators::unlock,
        operators::end_sessions, operators::reset_password, operators::bulk_passwords, operators::assign_internal_id,
        operators::remove_internal_id,
        operator_csv::import, operator_csv::export, operator_csv::migrate,
        jobs::show, jobs::take_passwords,
        registry::import, registry::show, registry::lookup,
        municipalities::list, municipalities::register, municipalities::show, municipalities::change,
        municipalities::abolish, issuance_service::show, issuance_service::replace,
        business_systems::list, business_systems::register, business_systems::show, business_systems::update,
        business_systems::retire, business_systems::permitted, business_systems::permit, business_systems::withdraw,
        resident_settings::show, resident_settings::replace,
        residents::register, residents::search, residents::show, residents::change, residents::move_out,
        residents::erase,
        cards::register_card, cards::show, cards::local_area, cards::install, cards::remove, cards::suspend,
        cards::resume, cards::abolish, cards::ap_counts, card_writes::prepare, card_writes::record,
        pki::chain, pki::crl, pki::issue_business, pki::list_business, pki::show_business, pki::revoke_business,
        pki::reissue_business, pki::issue_operator, pki::list_operator, pki::show_operator, pki::revoke_operator,
        pki::issue_operator_pkcs12, pki::take_pkcs12, pki::issue_tls, pki::list_tls, pki::show_tls, pki::delete_tls, pki::reissue_tls,
        oidc::discovery, oidc::jwks, oidc::authorize_get, oidc::authorize_post, oidc::token, oidc::show_client,
        oidc::configure_client, oidc::issue_secret,
        audit::events, audit::operator_as_of, audit::shared_use_as_of, audit::resident_as_of, audit::card_as_of,
        read_access::access, read_access::alerts, read_access::show_policy, read_access::set_policy,
        feeds::read, feeds::show_fields, feeds::set_fields,
        library_links::link, library_links::lookup, library_links::unlink,
        webhooks::set, webhooks::remove, webhooks::issue_secret,
    ),
    components(schemas(
        ProblemDetails, ProblemField, registry::ImportRowReport, registry::ImportProblemLine,
        registry::ImportSummaryLine, registry::ImportProgressLine, registry::ImportProgress,
    )),
    modifiers(&BearerAuth),
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // The replication feeds: the business system's server certificate as the TLS client certificate.
        components.add_security_scheme("mutual_tls", SecurityScheme::MutualTls { description: None, extensions: None });
    }
}

/// The media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Path parameters by name: the same name is the same domain value on every route (its `parse` decides the
/// pattern; a value that does not parse is answered 404).
const PATH_PARAMETERS: [(&str, &str, &str, &str); 12] = [
    // name, pattern, example, description
    (
        "code",
        "^([0-9]{6}|A[0-9]{5})$",
        "131016",
        "全国地方公共団体コード (five digits and a check digit), or an association ID (A + 5 digits)",
    ),
    ("business_id", "^[0-9]{2}$", "01", "業務ID"),
    ("operator_id", "^[0-9A-Za-z]{1,32}$", "OP0501", "オペレータID"),
    ("fid", "^[0-9A-Za-z]{1,32}$", "FID0000000000001", "カードのFID"),
    ("registry_key", "^[0-9A-Za-z]{1,20}$", "000123456", "宛名番号"),
    ("resident_id", "", "0190a6c2-3c4d-7e5f-8a9b-0c1d2e3f4a5b", "住民ID"),
    ("job_id", "", "0190a6c2-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "A job's id, from the `202` that started it"),
    ("endpoint", "^[a-z0-9-]{1,32}$", "api", "The name of one of cardap's own TLS endpoints"),
    ("serial", "^([0-9a-fA-F]{2}){1,20}$", "4f1c0e5b9d2a7c3e8b6f1a0d2c4e6f80", "A certificate's serial number, hex"),
    (
        "registration_id",
        "",
        "0190a6c2-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        "An authenticator registration in progress, from the `201` that began it",
    ),
    ("credential_id", "^[A-Za-z0-9_-]{1,1364}$", "3q2-7wABAgMEBQYHCAkKCw", "A WebAuthn credential ID, base64url"),
    ("standard_id", "^([0-9]{6}|A[0-9]{5})[0-9]{10}$", "1310161234567890", "標準ID (the card's library AP)"),
];

/// What a create operation returns that other operations take as a path parameter (an operation that starts a
/// job: its `202`).
const CREATED_IDS: [(&str, &str, &str, &str); 7] = [
    // operationId, path parameter, where its value is in the body, the status of that body
    ("registerMunicipality", "code", "/code", "201"),
    ("registerBusinessSystem", "business_id", "/business_id", "201"),
    ("registerOperator", "operator_id", "/operator_id", "201"),
    ("registerResident", "resident_id", "/resident_id", "201"),
    ("registerCard", "fid", "/fid", "201"),
    ("importOperators", "job_id", "/job_id", "202"),
    ("beginAuthenticatorRegistration", "registration_id", "/registration_id", "201"),
];

/// Create operations that take another's new id in their body: (creator, target, body field, where the id is in
/// the creator's 201 body). The target's path parameters come from the creator's request path.
const BODY_LINKS: [(&str, &str, &str, &str); 1] = [("registerResident", "registerCard", "resident_id", "/resident_id")];

/// Writes that append no event, so no concurrent change can make them answer 409 `/problems/conflict` (a login
/// does: it records the attempt on the operator).
const NO_COMMAND: [&str; 9] = [
    "logout",
    "lookupRegistry",
    "takeJobPasswords",
    "takeOperatorPkcs12",
    "prepareCardWrite",
    "oidcLogin",
    "oidcToken",
    "beginAuthenticatorRegistration",
    "beginBiometricLogin",
];

/// The OpenID Connect endpoints answer errors as the protocol says (an HTML page, a redirect, an OAuth 2.0 JSON
/// error): the error answers they document keep their own content; only what the server's layers add (413, 500,
/// 503) is problem+json.
const PROTOCOL_ERRORS: [&str; 3] = ["oidcAuthorize", "oidcLogin", "oidcToken"];

/// Operations that stream their body under limits of their own (reported in the answer) instead of refusing a
/// large body with 413: the registry import (`routes::registry`).
const STREAMED_BODY: [&str; 1] = ["importRegistry"];

/// The operations a session whose password must be changed may still use; every other secured operation answers
/// `403` `/problems/password-change-required` to it.
const PASSWORD_CHANGE_ALLOWED: [&str; 3] = ["logout", "showMe", "changeOwnPassword"];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

static DOCUMENT: LazyLock<Value> = LazyLock::new(document);

/// The document as served.
pub fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    complete(&mut doc);
    doc
}

pub async fn serve() -> Json<Value> {
    Json(DOCUMENT.clone())
}

/// Adds to every operation what follows from its shape (see the module comment).
fn complete(doc: &mut Value) {
    describe_problem_types(doc);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for item in paths.values_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                complete_operation(method, op);
            }
        }
    }
    add_links(doc);
}

fn complete_operation(method: &str, op: &mut Map<String, Value>) {
    let secured = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    let has_body = op.contains_key("requestBody");
    let params: Vec<(String, String)> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().map(|p| (str_of(p, "name").to_owned(), str_of(p, "in").to_owned())).collect())
        .unwrap_or_default();
    let has = |place: &str| params.iter().any(|(_, i)| i == place);
    let if_match = params.iter().any(|(n, i)| i == "header" && n.eq_ignore_ascii_case("If-Match"));
    let id = op.get("operationId").and_then(Value::as_str).unwrap_or_default().to_owned();

    let mut add = |status: &str, description: Option<&str>| {
        let responses = op.entry("responses").or_insert_with(|| json!({}));
        if let Some(responses) = responses.as_object_mut() {
            let description = description.unwrap_or_else(|| describe(status));
            responses.entry(status).or_insert_with(|| json!({ "description": description }));
        }
    };
    if secured {
        add("401", None);
        if !PASSWORD_CHANGE_ALLOWED.contains(&id.as_str()) {
            add("403", None);
        }
    }
    if has_body {
        add("400", None);
        if !STREAMED_BODY.contains(&id.as_str()) {
            add("413", None);
        }
        add("415", None);
        add("422", None);
    }
    if has("query") {
        add("422", None);
    }
    if has("path") {
        add("404", None);
    }
    if if_match {
        add("400", None);
        add("412", None);
    }
    if method != "get" && !NO_COMMAND.contains(&id.as_str()) {
        add("409", Some("A concurrent change won; try again (`/problems/conflict`)"));
    }
    add("500", None);
    add("503", None);

    if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
        for (status, response) in responses.iter_mut() {
            if status.starts_with('4') || status.starts_with('5') {
                if PROTOCOL_ERRORS.contains(&id.as_str()) && response.get("content").is_some() {
                    continue;
                }
                if str_of(response, "description").is_empty() {
                    response["description"] = json!(describe(status));
                }
                response["content"] =
                    json!({ PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/ProblemDetails" } } });
            }
        }
    }
    if let Some(parameters) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in parameters.iter_mut().filter(|p| str_of(p, "in") == "path") {
            describe_path_parameter(p);
        }
    }
}

/// What an error status means on any operation (an annotation may say more).
fn describe(status: &str) -> &'static str {
    match status {
        "400" => "The body, or a header such as `If-Match`, cannot be read (`/problems/malformed-request`)",
        "401" => "Not logged in: the bearer session is missing, invalid or expired (`/problems/unauthenticated`)",
        "403" => {
            "The caller's roles do not allow this (`/problems/forbidden`), or his password was generated for him and \
             must be changed first (`/problems/password-change-required`)"
        }
        "404" => "No such resource, or not visible to the caller (`/problems/not-found`)",
        "409" => {
            "Not possible in the current state (a `type` per state), or a concurrent change won; try again \
             (`/problems/conflict`)"
        }
        "412" => "`If-Match` names an older version (`/problems/precondition-failed`)",
        "413" => "The body is larger than the server accepts (`/problems/payload-too-large`)",
        "415" => "The `Content-Type` is not the documented one (`/problems/unsupported-media-type`)",
        "410" => "Gone: handed out once already (`/problems/passwords-gone`)",
        "422" => "Invalid fields or query parameters, named by JSON pointer (`/problems/validation`)",
        "429" => "Too many at once (`/problems/too-many-imports`); `Retry-After` says when to retry",
        "500" => "An internal error, a failing handler included; details are logged, never sent (`/problems/internal`)",
        "503" => {
            "The database is unavailable or the server is shutting down (`/problems/unavailable`), or the request \
             ran into the server's time limit (`/problems/timeout`); `Retry-After` says when to retry"
        }
        _ => "A problem (`application/problem+json`)",
    }
}

fn describe_path_parameter(p: &mut Value) {
    let name = str_of(p, "name").to_owned();
    let Some(&(_, pattern, example, description)) = PATH_PARAMETERS.iter().find(|(n, ..)| *n == name) else {
        return;
    };
    p["schema"] = if pattern.is_empty() {
        json!({ "type": "string", "format": "uuid" })
    } else {
        json!({ "type": "string", "pattern": pattern })
    };
    p["example"] = json!(example);
    if p.get("description").is_none() {
        p["description"] = json!(description);
    }
}

/// Links each create operation's 201 to every operation it supplies the path parameters of: the new id from the
/// body, the others from the create request's own path.
fn add_links(doc: &mut Value) {
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else { return };
    // (operationId, its path parameters, where the operation is)
    let mut operations: Vec<(String, BTreeSet<String>, String, String)> = vec![];
    for (path, item) in paths {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                let names = path_parameters(op);
                operations.push((str_of(op, "operationId").to_owned(), names, path.clone(), method.to_owned()));
            }
        }
    }
    for (creator, param, pointer, status) in CREATED_IDS {
        let Some((_, given, path, method)) = operations.iter().find(|(id, ..)| id == creator) else { continue };
        let mut links = Map::new();
        for (target, needs, ..) in &operations {
            if target == creator || !needs.contains(param) || !needs.iter().all(|n| n == param || given.contains(n)) {
                continue;
            }
            let parameters: Map<String, Value> = needs
                .iter()
                .map(|n| {
                    let source =
                        if n == param { format!("$response.body#{pointer}") } else { format!("$request.path.{n}") };
                    (n.clone(), json!(source))
                })
                .collect();
            links.insert(target.clone(), json!({ "operationId": target, "parameters": parameters }));
        }
        for (_, target, field, from) in BODY_LINKS.iter().filter(|(c, ..)| *c == creator) {
            let Some((_, needs, ..)) = operations.iter().find(|(id, ..)| id == target) else { continue };
            if !needs.is_subset(given) {
                continue;
            }
            let parameters: Map<String, Value> =
                needs.iter().map(|n| (n.clone(), json!(format!("$request.path.{n}")))).collect();
            let body = json!({ *field: format!("$response.body#{from}") });
            links.insert(
                (*target).to_owned(),
                json!({ "operationId": target, "parameters": parameters, "requestBody": body }),
            );
        }
        if let Some(created) = doc.pointer_mut(&format!("/paths/{}/{method}/responses/{status}", escape(path))) {
            created["links"] = Value::Object(links);
        }
    }
}

/// Lists the catalogue in the problem schema's `type`.
fn describe_problem_types(doc: &mut Value) {
    let list: Vec<&str> = ProblemType::ALL.iter().map(|t| t.as_str()).collect();
    if let Some(kind) = doc.pointer_mut("/components/schemas/ProblemDetails/properties/type") {
        kind["description"] = json!(format!(
            "Stable problem code; clients branch on it. One of: {}",
            list.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        ));
    }
}

fn path_parameters(op: &Value) -> BTreeSet<String> {
    op.get("parameters")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter(|p| str_of(p, "in") == "path").map(|p| str_of(p, "name").to_owned()).collect())
        .unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A JSON pointer segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    //! The document's invariants, so that they cannot regress between runs of the fuzzer (`scripts/fuzz-openapi`).
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Every operation as (`METHOD path`, operation).
    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let mut all = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    all.push((format!("{} {path}", method.to_uppercase()), op));
                }
            }
        }
        assert!(all.len() > 40, "the document lists the operations: {}", all.len());
        all
    }

    fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
            None => schema,
        }
    }

    #[test]
    fn operation_ids_are_present_and_unique() {
        let doc = document();
        let mut seen = std::collections::BTreeMap::new();
        for (name, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{name} has no operationId"));
            if let Some(other) = seen.insert(id.to_owned(), name.clone()) {
                panic!("operationId {id} is used by {other} and by {name}");
            }
        }
    }

    #[test]
    fn every_secured_operation_documents_401_as_problem_json() {
        let doc = document();
        for (name, op) in operations(&doc) {
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                let unauthorized = &op["responses"]["401"]["content"][PROBLEM_JSON]["schema"]["$ref"];
                assert_eq!(unauthorized, "#/components/schemas/ProblemDetails", "{name}");
            }
        }
    }

    #[test]
    fn every_error_is_problem_json_with_the_problem_schema() {
        let doc = document();
        for (name, op) in operations(&doc) {
            let protocol = PROTOCOL_ERRORS.contains(&op["operationId"].as_str().unwrap_or_default());
            for (status, response) in op["responses"].as_object().unwrap() {
                // The OpenID Connect endpoints answer their own errors as the protocol says; what the server's
                // layers answer for them (413, 500, 503) is problem+json like everywhere.
                if protocol && !["413", "415", "500", "503"].contains(&status.as_str()) {
                    continue;
                }
                if status.starts_with('4') || status.starts_with('5') {
                    let types: Vec<&String> = response["content"].as_object().unwrap().keys().collect();
                    assert_eq!(types, [PROBLEM_JSON], "{name} {status}");
                    let schema = &response["content"][PROBLEM_JSON]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/ProblemDetails", "{name} {status}");
                }
            }
        }
    }

    #[test]
    fn bodies_and_queries_document_what_parsing_them_answers() {
        let doc = document();
        for (name, op) in operations(&doc) {
            let responses = &op["responses"];
            if op.get("requestBody").is_some() {
                let id = op["operationId"].as_str().unwrap();
                let statuses: &[&str] =
                    if STREAMED_BODY.contains(&id) { &["400", "415", "422"] } else { &["400", "413", "415", "422"] };
                for status in statuses {
                    assert!(responses.get(*status).is_some(), "{name} reads a body but does not document {status}");
                }
            }
            let parameters = op["parameters"].as_array().cloned().unwrap_or_default();
            if parameters.iter().any(|p| p["in"] == "query") {
                assert!(responses.get("422").is_some(), "{name} reads a query but does not document 422");
            }
        }
    }

    #[test]
    fn every_limit_has_its_range() {
        let doc = document();
        let mut limits = 0;
        for (name, op) in operations(&doc) {
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["name"] == "limit") {
                limits += 1;
                assert_eq!(p["schema"]["minimum"], 1, "{name}: {p}");
                let max = p["schema"]["maximum"].as_i64().unwrap_or_else(|| panic!("{name}: no maximum: {p}"));
                assert!(max == 100 || max == 500, "{name}: {p}");
            }
        }
        assert!(limits >= 5, "the paged lists have a limit: {limits}");
    }

    #[test]
    fn every_path_parameter_has_a_pattern_or_format_and_an_example() {
        let doc = document();
        for (name, op) in operations(&doc) {
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                let schema = &p["schema"];
                assert!(schema.get("pattern").is_some() || schema.get("format").is_some(), "{name}: {p}");
                assert!(p.get("example").is_some(), "{name}: {p}");
            }
        }
    }

    #[test]
    fn every_request_body_has_an_example() {
        let doc = document();
        for (name, op) in operations(&doc) {
            let Some(body) = op.get("requestBody") else { continue };
            for (media, content) in body["content"].as_object().unwrap() {
                let schema = resolve(&doc, &content["schema"]);
                let example = content.get("example").or(schema.get("example")).or(schema.get("examples"));
                assert!(example.is_some(), "{name} {media} has no example");
            }
        }
    }

    #[test]
    fn the_create_operations_link_to_the_operations_that_use_their_ids() {
        let doc = document();
        let ids: BTreeSet<String> =
            operations(&doc).iter().map(|(_, op)| op["operationId"].as_str().unwrap().to_owned()).collect();
        let created = |path: &str| doc["paths"][path]["post"]["responses"]["201"]["links"].clone();

        let municipality = created("/api/v1/municipalities");
        assert_eq!(municipality["showMunicipality"]["parameters"]["code"], "$response.body#/code");
        assert!(municipality.get("registerResident").is_some(), "{municipality}");
        let resident = created("/api/v1/municipalities/{code}/residents");
        assert_eq!(resident["changeResident"]["parameters"]["resident_id"], "$response.body#/resident_id");
        assert_eq!(resident["changeResident"]["parameters"]["code"], "$request.path.code");
        assert_eq!(resident["registerCard"]["requestBody"]["resident_id"], "$response.body#/resident_id");
        for links in [&municipality, &resident] {
            for (target, link) in links.as_object().unwrap() {
                assert!(ids.contains(link["operationId"].as_str().unwrap()), "{target} links to no operation");
            }
        }
        for path in [
            "/api/v1/business-systems",
            "/api/v1/municipalities/{code}/operators",
            "/api/v1/municipalities/{code}/cards",
        ] {
            assert!(created(path).as_object().is_some_and(|l| !l.is_empty()), "{path} links to nothing");
        }
    }

    #[test]
    #[ignore = "writes the document for a look: cargo test -p cardap-api --lib dump -- --ignored"]
    fn dump() {
        std::fs::write("/tmp/openapi.json", serde_json::to_string_pretty(&document()).unwrap()).unwrap();
    }
}
