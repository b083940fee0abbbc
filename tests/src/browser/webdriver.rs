//! A small W3C WebDriver client (<https://www.w3.org/TR/webdriver2/>) over the tests' own `reqwest`: one session,
//! CSS/XPath lookups, the element commands, scripts, screenshots and key actions — what [`super::Browser`] needs.
//!
//! Ours rather than fantoccini's: fantoccini brings Mozilla's `webdriver` crate and with it a second major version
//! of http, cookie and the icu crates beside the workspace's own (the project allows no duplicate major versions).
//! Owns the wire protocol only: no waiting, no retries, no panics; every command answers a [`Result`] whose error
//! shows what the driver said (its `error` and `message`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

/// The key under which WebDriver names an element in JSON (W3C "web element identifier").
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Longest a single command may take: beyond the driver's own script (30 s) and page-load timeouts of a slow
/// machine, so a hung chromedriver fails the test instead of stalling it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What went wrong with a command.
#[derive(Debug)]
pub enum Error {
    /// The driver refused it: its HTTP status, W3C error code (e.g. `no such element`) and message.
    Driver { status: u16, error: String, message: String },
    /// The driver could not be reached or its answer not read.
    Http(reqwest::Error),
    /// An answer without the shape the protocol promises.
    Protocol(String),
}

impl Error {
    /// Whether the driver found no element for a lookup (a wait tries again).
    pub fn is_no_such_element(&self) -> bool {
        matches!(self, Error::Driver { error, .. } if error == "no such element")
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Driver { status, error, message } => write!(f, "WebDriver {status} {error}: {message}"),
            Error::Http(e) => write!(f, "WebDriver unreachable: {e}"),
            Error::Protocol(what) => write!(f, "WebDriver protocol: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// How a lookup finds elements (W3C "locator strategies").
#[derive(Debug, Clone, Copy)]
pub enum Locator<'a> {
    Css(&'a str),
    XPath(&'a str),
}

impl Locator<'_> {
    fn json(self) -> Value {
        match self {
            Locator::Css(css) => json!({ "using": "css selector", "value": css }),
            Locator::XPath(xpath) => json!({ "using": "xpath", "value": xpath }),
        }
    }
}

/// One step of a keyboard action sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    Down(char),
    Up(char),
}

/// The W3C special keys (<https://www.w3.org/TR/webdriver2/#keyboard-actions>), as the Private Use Area code
/// points WebDriver reads in typed text and key actions: `format!("clerk01{}", Key::Tab)`.
macro_rules! keys {
    ($($key:ident = $code:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Key { $($key),* }

        impl From<Key> for char {
            fn from(key: Key) -> char {
                match key { $(Key::$key => $code),* }
            }
        }
    };
}

keys! {
    Null = '\u{e000}', Cancel = '\u{e001}', Help = '\u{e002}', Backspace = '\u{e003}', Tab = '\u{e004}',
    Clear = '\u{e005}', Return = '\u{e006}', Enter = '\u{e007}', Shift = '\u{e008}', Control = '\u{e009}',
    Alt = '\u{e00a}', Pause = '\u{e00b}', Escape = '\u{e00c}', Space = '\u{e00d}', PageUp = '\u{e00e}',
    PageDown = '\u{e00f}', End = '\u{e010}', Home = '\u{e011}', Left = '\u{e012}', Up = '\u{e013}',
    Right = '\u{e014}', Down = '\u{e015}', Insert = '\u{e016}', Delete = '\u{e017}', Semicolon = '\u{e018}',
    Equals = '\u{e019}', NumPad0 = '\u{e01a}', NumPad1 = '\u{e01b}', NumPad2 = '\u{e01c}', NumPad3 = '\u{e01d}',
    NumPad4 = '\u{e01e}', NumPad5 = '\u{e01f}', NumPad6 = '\u{e020}', NumPad7 = '\u{e021}', NumPad8 = '\u{e022}',
    NumPad9 = '\u{e023}', Multiply = '\u{e024}', Add = '\u{e025}', Separator = '\u{e026}', Subtract = '\u{e027}',
    Decimal = '\u{e028}', Divide = '\u{e029}', F1 = '\u{e031}', F2 = '\u{e032}', F3 = '\u{e033}', F4 = '\u{e034}',
    F5 = '\u{e035}', F6 = '\u{e036}', F7 = '\u{e037}', F8 = '\u{e038}', F9 = '\u{e039}', F10 = '\u{e03a}',
    F11 = '\u{e03b}', F12 = '\u{e03c}', Meta = '\u{e03d}', Command = '\u{e03d}',
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", char::from(*self))
    }
}

/// One WebDriver session. Cheap to clone (the HTTP client is shared); ended by [`WebDriver::delete_session`].
#[derive(Debug, Clone)]
pub struct WebDriver {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`: every command's path starts here.
    session: String,
}

/// An element of the page, as the session knows it (stale once the page is replaced).
#[derive(Debug, Clone)]
pub struct Element {
    driver: WebDriver,
    id: String,
}

impl WebDriver {
    /// Opens a session on the driver at `driver` (e.g. `http://127.0.0.1:9515`) with these capabilities, all
    /// required (`alwaysMatch`).
    pub async fn new_session(driver: &str, capabilities: Value) -> Result<WebDriver, Error> {
        // reqwest's TLS (unused on this plain-HTTP loopback) is built with the process's rustls provider.
        crate::install_crypto_provider();
        let http = reqwest::Client::builder().no_proxy().timeout(COMMAND_TIMEOUT).build().map_err(Error::Http)?;
        let driver = driver.trim_end_matches('/');
        let body = json!({ "capabilities": { "alwaysMatch": capabilities } });
        let answer = send(&http, Method::POST, &format!("{driver}/session"), Some(body)).await?;
        let Some(id) = answer.get("sessionId").and_then(Value::as_str) else {
            return Err(Error::Protocol(format!("a new session without a sessionId: {answer}")));
        };
        Ok(WebDriver { session: format!("{driver}/session/{id}"), http })
    }

    async fn get(&self, path: &str) -> Result<Value, Error> {
        send(&self.http, Method::GET, &format!("{}{path}", self.session), None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Error> {
        send(&self.http, Method::POST, &format!("{}{path}", self.session), Some(body)).await
    }

    /// Opens `url`; returns once the page has loaded (the session's page-load strategy, `normal` by default).
    pub async fn goto(&self, url: &str) -> Result<(), Error> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    /// The address of the page shown now.
    pub async fn current_url(&self) -> Result<String, Error> {
        string(self.get("/url").await?)
    }

    /// The first element `locator` finds; [`Error::is_no_such_element`] when there is none.
    pub async fn find(&self, locator: Locator<'_>) -> Result<Element, Error> {
        let answer = self.post("/element", locator.json()).await?;
        self.element(&answer)
    }

    /// Every element `locator` finds, in document order (none is no error).
    pub async fn find_all(&self, locator: Locator<'_>) -> Result<Vec<Element>, Error> {
        match self.post("/elements", locator.json()).await? {
            Value::Array(found) => found.iter().map(|e| self.element(e)).collect(),
            other => Err(Error::Protocol(format!("elements: not a list: {other}"))),
        }
    }

    /// The element that has the focus (the body when none has).
    pub async fn active_element(&self) -> Result<Element, Error> {
        let answer = self.get("/element/active").await?;
        self.element(&answer)
    }

    fn element(&self, reference: &Value) -> Result<Element, Error> {
        match reference.get(ELEMENT).and_then(Value::as_str) {
            Some(id) => Ok(Element { driver: self.clone(), id: id.to_owned() }),
            None => Err(Error::Protocol(format!("not an element reference: {reference}"))),
        }
    }

    /// Runs `script` as a function body with `args` as `arguments`; its `return` value.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.post("/execute/sync", json!({ "script": script, "args": args })).await
    }

    /// Runs `script` with a callback as its last argument; what it passes to the callback.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value, Error> {
        self.post("/execute/async", json!({ "script": script, "args": args })).await
    }

    /// Adds a virtual authenticator (WebAuthn's WebDriver extension) with these options (`protocol`,
    /// `transport`, `hasResidentKey`, `hasUserVerification`, `isUserVerified`, …); its id.
    pub async fn add_virtual_authenticator(&self, options: Value) -> Result<String, Error> {
        string(self.post("/webauthn/authenticator", options).await?)
    }

    /// The window's viewport as a PNG.
    pub async fn screenshot(&self) -> Result<Vec<u8>, Error> {
        let encoded = string(self.get("/screenshot").await?)?;
        STANDARD.decode(encoded).map_err(|e| Error::Protocol(format!("screenshot: not base64: {e}")))
    }

    /// Sends `actions` as one keyboard's key presses and releases, in order.
    pub async fn perform_key_actions(&self, actions: &[KeyAction]) -> Result<(), Error> {
        let steps: Vec<Value> = actions
            .iter()
            .map(|action| match action {
                KeyAction::Down(key) => json!({ "type": "keyDown", "value": key.to_string() }),
                KeyAction::Up(key) => json!({ "type": "keyUp", "value": key.to_string() }),
            })
            .collect();
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": steps }] });
        self.post("/actions", body).await.map(drop)
    }

    /// Releases whatever keys the actions left pressed.
    pub async fn release_actions(&self) -> Result<(), Error> {
        send(&self.http, Method::DELETE, &format!("{}/actions", self.session), None).await.map(drop)
    }

    /// Ends the session and closes its browser windows.
    pub async fn delete_session(&self) -> Result<(), Error> {
        send(&self.http, Method::DELETE, &self.session, None).await.map(drop)
    }
}

impl Element {
    async fn get(&self, command: &str) -> Result<Value, Error> {
        self.driver.get(&format!("/element/{}/{command}", self.id)).await
    }

    async fn post(&self, command: &str, body: Value) -> Result<Value, Error> {
        self.driver.post(&format!("/element/{}/{command}", self.id), body).await
    }

    /// The first element inside this one that `locator` finds.
    pub async fn find(&self, locator: Locator<'_>) -> Result<Element, Error> {
        let answer = self.post("element", locator.json()).await?;
        self.driver.element(&answer)
    }

    /// Clicks its centre (scrolled into view first), as a mouse would.
    pub async fn click(&self) -> Result<(), Error> {
        self.post("click", json!({})).await.map(drop)
    }

    /// Types `text` into it (special keys as [`Key`] chars).
    pub async fn send_keys(&self, text: &str) -> Result<(), Error> {
        self.post("value", json!({ "text": text })).await.map(drop)
    }

    /// Empties an editable field.
    pub async fn clear(&self) -> Result<(), Error> {
        self.post("clear", json!({})).await.map(drop)
    }

    /// Its rendered text, as a person sees it.
    pub async fn text(&self) -> Result<String, Error> {
        string(self.get("text").await?)
    }

    /// The HTML attribute `name` as written in the markup; `None` when absent.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>, Error> {
        match self.get(&format!("attribute/{name}")).await? {
            Value::Null => Ok(None),
            other => string(other).map(Some),
        }
    }

    /// The DOM property `name` now (e.g. a field's `value` after typing); `Null` when undefined.
    pub async fn property(&self, name: &str) -> Result<Value, Error> {
        self.get(&format!("property/{name}")).await
    }
}

/// Sends one command and unwraps the W3C answer `{"value": …}`; an error answer becomes [`Error::Driver`].
async fn send(http: &reqwest::Client, method: Method, url: &str, body: Option<Value>) -> Result<Value, Error> {
    let request = http.request(method, url);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.map_err(Error::Http)?;
    let status = response.status();
    let text = response.text().await.map_err(Error::Http)?;
    let mut answer: Value =
        serde_json::from_str(&text).map_err(|e| Error::Protocol(format!("HTTP {status}, not JSON ({e}): {text}")))?;
    let value = answer.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let field = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("(none)").to_owned();
    Err(Error::Driver { status: status.as_u16(), error: field("error"), message: field("message") })
}

fn string(value: Value) -> Result<String, Error> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(Error::Protocol(format!("not a string: {other}"))),
    }
}
