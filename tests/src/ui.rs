//! The clerk web UI as the `ui*` tests use it over HTTP, like a browser without JavaScript: a client that follows
//! no redirect and keeps no cookie, the [`Page`] it gets, the forms it posts (urlencoded or multipart, with the
//! session's cookie, from this site or another), logging in through the login form, and what a test reads off a
//! page (a hidden field, the redirect, the cookie set, a field's problem, a link, the passwords shown once) or
//! asserts of every page (its strict policy); and the municipality set-ups those tests share.
//!
//! Owns test support only: what each screen must show stays in its test. The real browser is [`crate::browser`].

use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};

use crate::{TestApp, business_system};

/// A browser-like client that does not follow redirects (the tests look at each one) and keeps no cookies.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// What the UI answered.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub async fn read(response: reqwest::Response) -> Page {
        Page { status: response.status(), headers: response.headers().clone(), text: response.text().await.unwrap() }
    }
}

/// A request with the session's cookie pair (`""`: none, as before logging in).
fn with_cookie(request: reqwest::RequestBuilder, cookie: &str) -> reqwest::RequestBuilder {
    if cookie.is_empty() { request } else { request.header(header::COOKIE, cookie) }
}

/// The page at `path`, with the session's `cookie` (`""`: none).
pub async fn get(app: &TestApp, path: &str, cookie: &str) -> Page {
    Page::read(with_cookie(browser().get(app.url(path)), cookie).send().await.unwrap()).await
}

/// Posts `form` as a page of the UI does (`application/x-www-form-urlencoded`), with the session's `cookie` (`""`:
/// none).
pub async fn post<V: AsRef<str>>(app: &TestApp, path: &str, cookie: &str, form: &[(&str, V)]) -> Page {
    Page::read(form_post(app, path, cookie, form).send().await.unwrap()).await
}

/// [`post`] as a page of another site would make the browser send it (`Origin`).
pub async fn post_from<V: AsRef<str>>(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, V)],
    origin: &str,
) -> Page {
    Page::read(form_post(app, path, cookie, form).header(header::ORIGIN, origin).send().await.unwrap()).await
}

/// [`post`] from the counter terminal named `terminal` (`X-Cardap-Terminal`, as the terminal or a proxy in front of
/// it sets it).
pub async fn post_at<V: AsRef<str>>(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, V)],
    terminal: &str,
) -> Page {
    let value = header::HeaderValue::from_bytes(terminal.as_bytes()).unwrap();
    Page::read(form_post(app, path, cookie, form).header("x-cardap-terminal", value).send().await.unwrap()).await
}

fn form_post<V: AsRef<str>>(app: &TestApp, path: &str, cookie: &str, form: &[(&str, V)]) -> reqwest::RequestBuilder {
    let body = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v.as_ref()))).collect::<Vec<_>>().join("&");
    let request =
        browser().post(app.url(path)).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body);
    with_cookie(request, cookie)
}

/// Posts an upload form (`multipart/form-data`) as a browser sends it: the text `fields` in order, then the file
/// (its name and content), if any.
pub async fn post_multipart(
    app: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &[u8])>,
) -> Page {
    let (content_type, body) = multipart(fields, file);
    let request = browser().post(app.url(path)).header(header::CONTENT_TYPE, content_type).body(body);
    Page::read(with_cookie(request, cookie).send().await.unwrap()).await
}

/// A `multipart/form-data` body of `fields` (name, value) and the file last: its content type and its bytes.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----cardapUiBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    if let Some((filename, content)) = file {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: text/csv\r\n\r\n"
            )
            .bytes(),
        );
        body.extend_from_slice(content);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Percent-encodes every byte but the unreserved ones (for a query or a form body).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where a redirect goes ("" when it is none).
pub fn location(page: &Page) -> &str {
    page.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The cookie the page sets, if any.
pub fn set_cookie(page: &Page) -> Option<String> {
    page.headers.get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned())
}

/// The value of the first field `name` of a page (the hidden fields of its first form that has one).
pub fn hidden(page: &Page, name: &str) -> String {
    let needle = format!(r#"name="{name}" value=""#);
    let at = page.text.find(&needle).unwrap_or_else(|| panic!("no {name} field: {}", page.text)) + needle.len();
    page.text[at..].split('"').next().unwrap().to_owned()
}

/// The page's CSRF token.
pub fn csrf(page: &Page) -> String {
    hidden(page, "csrf")
}

/// A form's hidden keys: its CSRF token and Idempotency-Key.
pub fn keys(page: &Page) -> (String, String) {
    (hidden(page, "csrf"), hidden(page, "idempotency_key"))
}

/// The message of a field, as the page shows it right under the field (`id="f-…-note"`).
pub fn field_error<'a>(page: &'a Page, id: &str) -> &'a str {
    let needle = format!(r#"class="field-error" id="{id}-note">"#);
    let at = page.text.find(&needle).unwrap_or_else(|| panic!("no error at {id}: {}", page.text)) + needle.len();
    page.text[at..].split('<').next().unwrap()
}

/// Asserts that the field `id` (`f-phone`) shows a problem right under it.
#[track_caller]
pub fn assert_problem_at(page: &Page, id: &str) {
    assert!(page.text.contains(&format!(r#"class="field-error" id="{id}-note""#)), "no problem at {id}: {}", page.text);
}

/// The `href` of the link with this text.
pub fn link(page: &Page, text: &str) -> String {
    let end = page.text.find(&format!("\">{text}</a>")).unwrap_or_else(|| panic!("no link {text}: {}", page.text));
    let start = page.text[..end].rfind("href=\"").unwrap() + "href=\"".len();
    page.text[start..end].replace("&amp;", "&")
}

/// The passwords a page shows (`<code class="password">`).
pub fn passwords(page: &Page) -> Vec<String> {
    page.text
        .split(r#"<code class="password">"#)
        .skip(1)
        .map(|rest| rest.split("</code>").next().unwrap().to_owned())
        .collect()
}

/// Every page: the strict policy, and nothing it would have to allow.
pub fn assert_strict(page: &Page) {
    let csp = page.headers.get(header::CONTENT_SECURITY_POLICY).expect("a Content-Security-Policy").to_str().unwrap();
    for directive in ["default-src 'none'", "style-src 'self'", "form-action 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{directive} missing: {csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
    assert_eq!(page.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
    assert_eq!(page.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    // The one script is the binary's own file (the login form's biometric button); never one inline.
    let scripts = page.text.matches("<script").count();
    let own = page.text.matches(r#"<script src="/ui/assets/webauthn.js" defer></script>"#).count();
    assert!(scripts == own && !page.text.contains("style="), "inline script or style");
}

/// Logs in through the form (municipality "" for the system administrator); returns the cookie pair.
pub async fn logged_in(app: &TestApp, municipality: &str, operator_id: &str, password: &str) -> String {
    let form = [("municipality", municipality), ("operator_id", operator_id), ("password", password)];
    let login = post(app, "/ui/login", "", &form).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text);
    set_cookie(&login).unwrap().split(';').next().unwrap().to_owned()
}

/// Business systems of a municipality's own (`(id, name)`) registered, and they and the library (02) permitted
/// to `code`.
pub async fn offering(app: &TestApp, admin: &str, code: &str, own: &[(&str, &str)]) {
    for (id, name) in own {
        let reply = app.post("/api/v1/business-systems", Some(admin), &business_system(id, name)).await;
        assert!(reply.status.is_success(), "{}", reply.text);
    }
    app.permit(admin, "02", code).await;
    for (id, _) in own {
        app.permit(admin, id, code).await;
    }
}

/// Resident settings with a required custom field 学区 (第一 or 第二), the library (02, the local area's preset) and
/// 05 and 06 in the catalog.
pub fn school_district_settings() -> Value {
    json!({
        "custom_fields": [{"key": "school_district", "label": "学区", "type": "choice",
                           "options": ["第一", "第二"], "required": true}],
        "catalog": ["02", "05", "06"],
        "presets": ["02"],
    })
}
