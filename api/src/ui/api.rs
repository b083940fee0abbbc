//! The UI's one way to the use cases that change or show something: a request to the HTTP API, dispatched in
//! process (no socket, no second port) through the same router the API serves, with the UI session's token as
//! its bearer.
//!
//! Why through the API and not beside it: a screen then takes exactly the API's authorization (a clerk of A gets
//! the API's 404 for B before any body is read), its parsing of every field (half-width kana, era dates) and its
//! validation messages, each named by the JSON pointer that the form puts next to its field; `Idempotency-Key` and
//! `If-Match` mean on a screen what they mean to an integrator. The UI adds no rule of its own.
//!
//! Owns the call (path, method, JSON or raw body, headers) and the reading of its answer: the resource, its
//! `ETag`, or the problem (`type`, detail and field errors), and the fields of a resource as the pages read them
//! ([`text`], [`flag`], [`strings`], [`items`]).

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use tower::ServiceExt;

use super::UiSession;

use super::form::Form;

/// The largest API answer a page reads whole (a page of residents, an operator list).
const ANSWER_LIMIT: usize = 8 * 1024 * 1024;

/// The API's router with its state, for the UI's handlers (an `Extension` of the UI's routes).
#[derive(Debug, Clone)]
pub struct InProcessApi(Router);

impl InProcessApi {
    pub fn new(router: Router) -> Self {
        InProcessApi(router)
    }

    /// Sends `request` as `ui`'s: the session's token as its bearer, the page's terminal and request id; the raw
    /// answer (a stream stays a stream).
    pub(super) async fn send(&self, ui: &UiSession, mut request: Request<Body>) -> Response {
        if let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", ui.token.expose())) {
            request.headers_mut().insert(header::AUTHORIZATION, bearer);
        }
        for (name, value) in &ui.forwarded {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        request.headers_mut().insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("ja"));
        match self.0.clone().oneshot(request).await {
            Ok(response) => response,
            Err(infallible) => match infallible {},
        }
    }

    /// A JSON call: `body` (if any) as JSON, the answer read whole.
    pub(super) async fn call(&self, ui: &UiSession, call: Call<'_>) -> Answer {
        let mut builder = Request::builder().method(call.method).uri(call.path);
        if let Some(key) = call.idempotency_key.filter(|k| !k.is_empty()) {
            builder = builder.header("idempotency-key", key);
        }
        if let Some(version) = call.if_match {
            builder = builder.header(header::IF_MATCH, format!("\"{version}\""));
        }
        let body = match call.body {
            Some(json) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let Ok(request) = builder.body(body) else { return Answer::broken() };
        Answer::read(self.send(ui, request).await).await
    }
}

/// One JSON request to the API.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub body: Option<Value>,
    pub idempotency_key: Option<&'a str>,
    pub if_match: Option<u64>,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str) -> Self {
        Call { method: Method::GET, path, body: None, idempotency_key: None, if_match: None }
    }

    pub fn post(path: &'a str, body: Value) -> Self {
        Call { method: Method::POST, path, body: Some(body), idempotency_key: None, if_match: None }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    pub fn idempotent(mut self, key: &'a str) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    pub fn if_match(mut self, version: Option<u64>) -> Self {
        self.if_match = version;
        self
    }

    /// The keys of the form that asked for this change: its `Idempotency-Key`, and the version its page showed
    /// (`If-Match`) when it carries one (every form that changes what its page shows at a version does).
    pub fn keyed(self, form: &'a Form) -> Self {
        self.idempotent(form.idempotency_key()).if_match(form.version())
    }
}

/// What the API answered, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    /// The resource's version from its `ETag`.
    pub version: Option<u64>,
    pub body: Value,
}

impl Answer {
    /// Reads a response whole (JSON, or `null` when it is not JSON).
    pub async fn read(response: Response) -> Answer {
        let status = response.status();
        let version = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start_matches("W/").trim_matches('"'))
            .and_then(|v| v.parse().ok());
        let body = match to_bytes(response.into_body(), ANSWER_LIMIT).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(_) => return Answer::broken(),
        };
        Answer { status, version, body }
    }

    fn broken() -> Answer {
        Answer { status: StatusCode::INTERNAL_SERVER_ERROR, version: None, body: Value::Null }
    }

    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The problem, when the API refused.
    pub fn problem(&self) -> Option<Problem> {
        (!self.ok()).then(|| Problem::of(self.status, &self.body))
    }

    /// A string field of the answer.
    pub fn str(&self, pointer: &str) -> &str {
        self.body.pointer(pointer).and_then(Value::as_str).unwrap_or("")
    }
}

/// A problem+json answer, as the page shows it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
    pub errors: Vec<ProblemField>,
}

/// One named problem: a field (JSON pointer) or a CSV cell.
#[derive(Debug, Clone)]
pub struct ProblemField {
    pub field: String,
    pub message: String,
    pub row: Option<u64>,
    pub column: Option<String>,
}

impl Problem {
    pub fn of(status: StatusCode, body: &Value) -> Problem {
        let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        let errors = body
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(ProblemField::of).collect())
            .unwrap_or_default();
        Problem { status, title: text("title"), detail: text("detail"), errors }
    }

    /// What the clerk reads above the form: the detail, else the title.
    pub fn summary(&self) -> &str {
        if self.detail.is_empty() { &self.title } else { &self.detail }
    }
}

impl ProblemField {
    pub fn of(error: &Value) -> ProblemField {
        let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
        ProblemField {
            field: text("field").unwrap_or_default(),
            message: text("message").unwrap_or_default(),
            row: error.get("row").and_then(Value::as_u64),
            column: text("column"),
        }
    }
}

/// A path segment as it goes into an API path (percent-encoded: an operator ID may hold any character).
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A string field of a resource, or "".
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Whether a boolean field of a resource is `true` (absent is `false`).
pub fn flag(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool) == Some(true)
}

/// A field that lists strings (ids, roles), in order; absent, none.
pub fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The `items` of a page of a list.
pub fn items(body: &Value) -> &[Value] {
    items_at(body, "items")
}

/// The list at `key` of an answer (empty when it has none).
pub fn items_at<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}
