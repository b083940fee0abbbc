//! A real headless Chromium for the clerk UI's browser tests, driven through WebDriver (our own client, [`webdriver`]) by Debian's
//! `chromedriver`: one chromedriver on a free port and one fresh browser profile per [`Browser`], so tests run in
//! parallel; both end with it. The few moves a clerk makes (open a page, type, choose, press a button, log in
//! through the form, use the keyboard), what he sees (text, focus, screenshots), and an automated accessibility check (axe-core, vendored in
//! `tests/assets/`, run in the same browser).
//!
//! Owns test support only: it never reaches into the server, and it never runs unless [`browser_available`] says
//! so (`scripts/browser` installs the browser, `scripts/test` exports `CARDAP_TEST_BROWSER=1`).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

pub mod webdriver;

pub use webdriver::{Element, Key};
use webdriver::{KeyAction, Locator, WebDriver};

/// Debian's `chromium` and `chromium-driver` (installed by `scripts/browser`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The window of the screenshots: a common office laptop screen.
const WINDOW: (u32, u32) = (1366, 768);
/// How long [`Browser::wait_for`] waits for an element by default: patience for a loaded 2-core CI machine, not
/// a speed the page must reach.
const WAIT: Duration = Duration::from_secs(20);

/// axe-core (MPL-2.0, see `tests/assets/README.md`), injected into the page under test.
const AXE: &str = include_str!("../assets/axe.min.js");

/// Whether the browser tests may run; says why a test does nothing otherwise. Under CI (`CI=true`) a missing
/// `CARDAP_TEST_BROWSER` fails the test instead: CI must never skip them silently.
pub fn browser_available(test: &str) -> bool {
    if std::env::var_os("CARDAP_TEST_BROWSER").is_some() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: CARDAP_TEST_BROWSER is not set under CI: run the tests through scripts/test, which installs \
         chromium and chromedriver (scripts/browser)"
    );
    eprintln!("{test}: skipped: needs headless Chromium; run it through scripts/test (CARDAP_TEST_BROWSER=1)");
    false
}

/// A headless Chromium session behind its own chromedriver. Dropping it ends both (the browser's processes are in
/// chromedriver's process group).
#[derive(Debug)]
pub struct Browser {
    client: WebDriver,
    /// `None` once ended (and reaped: only then may its id name another process).
    driver: Option<Child>,
    /// chromedriver's log and the browser's profile; removed after both ended.
    _dir: TempDir,
}

/// One accessibility rule a page breaks, as axe-core reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, e.g. `color-contrast`, `label`.
    pub id: String,
    /// False for what axe could not decide alone and leaves to a person ("needs review"), e.g. text in exactly
    /// the colour of its background: axe takes that for deliberately hidden text, yet on these pages it is a link
    /// nobody can see.
    pub confirmed: bool,
    /// `serious` or `critical` (the only ones [`Browser::accessibility`] returns).
    pub impact: String,
    /// What the rule asks for, in one line.
    pub help: String,
    /// The rule's explanation at Deque.
    pub help_url: String,
    /// Each failing element: its CSS selector and axe's summary of what is wrong with it.
    pub nodes: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let review = if self.confirmed { "" } else { ", needs review" };
        write!(f, "[{}{review}] {}: {} ({})", self.impact, self.id, self.help, self.help_url)?;
        for node in &self.nodes {
            write!(f, "\n    {node}")?;
        }
        Ok(())
    }
}

impl Browser {
    /// Starts chromedriver on a free port and opens a session of headless Chromium with a fresh profile.
    /// Panics (with chromedriver's log) when it cannot.
    pub async fn start() -> Browser {
        let dir = tempfile::tempdir().expect("a temp dir for the browser");
        let log = dir.path().join("chromedriver.log");
        let profile = dir.path().join("profile");
        // A port that was free a moment ago may be taken by the time chromedriver binds it: then try another.
        for _ in 0..3 {
            let port = free_port();
            let mut driver = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, which the browser it starts joins: Drop ends them all by its id.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("{CHROMEDRIVER} does not start ({e}): run scripts/browser start"));
            if !listening(port, &mut driver).await {
                let _ = driver.kill();
                let _ = driver.wait();
                continue;
            }
            let client = match WebDriver::new_session(&format!("http://127.0.0.1:{port}"), capabilities(&profile)).await
            {
                Ok(client) => client,
                Err(e) => {
                    end_group(&mut Some(driver));
                    panic!("no browser session ({e}); chromedriver's log:\n{}", tail(&log));
                }
            };
            return Browser { client, driver: Some(driver), _dir: dir };
        }
        panic!("chromedriver did not listen on a free port in 3 tries; its log:\n{}", tail(&log));
    }

    /// The underlying WebDriver client, for what these helpers do not cover.
    pub fn client(&self) -> &WebDriver {
        &self.client
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The address of the page shown now.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap_or_else(|e| format!("(no URL: {e})"))
    }

    /// The form field whose `id` or `name` is `field`, waited for.
    pub async fn field(&self, field: &str) -> Element {
        self.wait_for(&format!(r#"[id="{field}"], [name="{field}"]"#)).await
    }

    /// Types `text` into the field `field` (by `id` or `name`), after clearing what it held.
    pub async fn fill(&self, field: &str, text: &str) {
        let element = self.field(field).await;
        element.clear().await.unwrap_or_else(|e| panic!("clear the field {field}: {e}"));
        element.send_keys(text).await.unwrap_or_else(|e| panic!("type into the field {field}: {e}"));
    }

    /// Chooses the option whose `value` is `value` in the select `field` (by `id` or `name`).
    pub async fn select(&self, field: &str, value: &str) {
        let element = self.field(field).await;
        assert!(!value.contains('"'), "an option value with a quote: {value}");
        let option = element.find(Locator::Css(&format!(r#"option[value="{value}"]"#))).await;
        let chosen = match option {
            Ok(option) => option.click().await,
            Err(e) => Err(e),
        };
        chosen.unwrap_or_else(|e| panic!("choose {value:?} in {field}: {e}"));
    }

    /// What the field `field` (by `id` or `name`) holds now.
    pub async fn value(&self, field: &str) -> String {
        let element = self.field(field).await;
        match element.property("value").await {
            Ok(Value::String(value)) => value,
            Ok(_) => String::new(),
            Err(e) => panic!("read the value of {field}: {e}"),
        }
    }

    /// Clicks the button labelled `label` (its visible text) and waits for what it loads.
    pub async fn click_button(&self, label: &str) {
        assert!(!label.contains('\''), "a button label with a quote: {label}");
        let button = self.wait_for_xpath(&format!("//button[normalize-space()='{label}']"), label).await;
        button.click().await.unwrap_or_else(|e| panic!("click the button {label}: {e}"));
    }

    /// Fills the login form of the page shown (市町村, オペレータID, パスワード) and sends it.
    pub async fn log_in(&self, municipality: &str, operator_id: &str, password: &str) {
        self.select("municipality", municipality).await;
        self.fill("operator_id", operator_id).await;
        self.fill("password", password).await;
        self.click_button("ログイン").await;
    }

    /// Clicks the link whose visible text is `text` and waits for what it loads.
    pub async fn click_link(&self, text: &str) {
        assert!(!text.contains('\''), "a link text with a quote: {text}");
        let link = self.wait_for_xpath(&format!("//a[normalize-space()='{text}']"), text).await;
        link.click().await.unwrap_or_else(|e| panic!("click the link {text}: {e}"));
    }

    /// Clicks the field `field` (by `id` or `name`): a checkbox or radio button.
    pub async fn click(&self, field: &str) {
        let element = self.field(field).await;
        element.click().await.unwrap_or_else(|e| panic!("click the field {field}: {e}"));
    }

    /// Puts the file at `path` into the file input `field` (by `id` or `name`), as choosing it would.
    pub async fn upload(&self, field: &str, path: &std::path::Path) {
        let element = self.field(field).await;
        let path = path.to_str().expect("a UTF-8 path");
        element.send_keys(path).await.unwrap_or_else(|e| panic!("choose the file {path} in {field}: {e}"));
    }

    /// The text content of every element `css` (drawn or not: a hidden element's too), in page order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let elements = self.client.find_all(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        let mut texts = Vec::with_capacity(elements.len());
        for element in elements {
            match element.property("textContent").await {
                Ok(Value::String(text)) => texts.push(text.trim().to_owned()),
                Ok(_) => texts.push(String::new()),
                Err(e) => panic!("read the text of {css}: {e}"),
            }
        }
        texts
    }

    /// Waits up to 20 s for the element `css` to show `needle` in its text: what a script writes there, or the
    /// next page's (a form just sent, the old page may still be shown).
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            // The page may be replaced while it is read (a form just sent): read it again then.
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            assert!(std::time::Instant::now() < deadline, "{css} never said {needle:?}; it says {text:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The visible text of the element `css`, waited for.
    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        element.text().await.unwrap_or_else(|e| panic!("read the text of {css}: {e}"))
    }

    /// Waits up to 20 s for the element `css`; panics naming it, the page's address and its text otherwise.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_for_within(css, WAIT).await
    }

    /// Like [`Browser::wait_for`], with its own timeout.
    pub async fn wait_for_within(&self, css: &str, timeout: Duration) -> Element {
        self.wait_until_found(Locator::Css(css), css, timeout).await
    }

    async fn wait_for_xpath(&self, xpath: &str, what: &str) -> Element {
        self.wait_until_found(Locator::XPath(xpath), &format!("{what:?}"), WAIT).await
    }

    /// Looks for `locator` every 250 ms until found or `timeout` passed; any error but "no such element" ends it.
    async fn wait_until_found(&self, locator: Locator<'_>, what: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        let error = loop {
            match self.client.find(locator).await {
                Ok(element) => return element,
                Err(e) if e.is_no_such_element() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => break e,
            }
        };
        panic!("waited {timeout:?} for {what} ({error}) on {}:\n{}", self.url().await, self.body().await)
    }

    /// The page's visible text (for failure messages).
    async fn body(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(e) => format!("(no body: {e})"),
        }
    }

    /// Presses the keys of `keys` one after the other on the keyboard, into whatever has the focus (WebDriver key
    /// actions: the key events a person's keyboard sends). Special keys go in as [`Key`] chars, e.g.
    /// `format!("clerk01{}", Key::Tab)`.
    pub async fn keyboard(&self, keys: &str) {
        let actions: Vec<KeyAction> = keys.chars().flat_map(|key| [KeyAction::Down(key), KeyAction::Up(key)]).collect();
        self.perform(&actions, keys).await;
    }

    /// Shift+Tab: the focus moves back by one.
    pub async fn shift_tab(&self) {
        let (shift, tab) = (char::from(Key::Shift), char::from(Key::Tab));
        let actions = [KeyAction::Down(shift), KeyAction::Down(tab), KeyAction::Up(tab), KeyAction::Up(shift)];
        self.perform(&actions, "Shift+Tab").await;
    }

    async fn perform(&self, actions: &[KeyAction], what: &str) {
        self.client.perform_key_actions(actions).await.unwrap_or_else(|e| panic!("press {what:?}: {e}"));
        self.client.release_actions().await.unwrap_or_else(|e| panic!("release the keys after {what:?}: {e}"));
    }

    /// The element that has the keyboard focus: its `id`, else its `name`, else its text (a link, a button), e.g.
    /// `password` or `利用者検索`.
    pub async fn focused(&self) -> String {
        let script = "const e = document.activeElement; \
                      return e ? (e.id || e.getAttribute('name') || e.textContent.trim()) : '';";
        match self.client.execute(script, vec![]).await {
            Ok(Value::String(s)) => s,
            other => panic!("the focused element: {other:?}"),
        }
    }

    /// Saves the window as `<name>.png` into `CARDAP_UI_SCREENSHOTS` when set (created if missing), else into
    /// `cardap-ui-screenshots` under the temp dir, so an ordinary run leaves the repository alone. Returns the path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = match std::env::var_os("CARDAP_UI_SCREENSHOTS") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join("cardap-ui-screenshots"),
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot {name}: not a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("screenshot {name}: {}", path.display());
        path
    }

    /// Runs axe-core on the page shown now and returns the violations of impact `serious` or `critical`, with
    /// what axe leaves to review at those impacts (`confirmed: false`).
    ///
    /// axe is injected through WebDriver's script execution, which the page's Content-Security-Policy does not
    /// govern (the page itself still runs no script of its own). Panics when axe cannot run.
    pub async fn accessibility(&self) -> Vec<Violation> {
        self.client.execute(AXE, vec![]).await.unwrap_or_else(|e| panic!("inject axe-core: {e}"));
        let run = r#"
            const done = arguments[arguments.length - 1];
            if (typeof axe === 'undefined') { done({ error: 'axe is not defined after its injection' }); return; }
            const summary = (v, confirmed) => ({
                id: v.id, confirmed, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                nodes: v.nodes.map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').replace(/\s+/g, ' ')),
            });
            axe.run(document, { resultTypes: ['violations', 'incomplete'] })
                .then(result => done({ violations: result.violations.map(v => summary(v, true))
                    .concat(result.incomplete.map(v => summary(v, false))) }))
                .catch(e => done({ error: String(e) }));
        "#;
        let answer = self.client.execute_async(run, vec![]).await.unwrap_or_else(|e| panic!("run axe-core: {e}"));
        if let Some(error) = answer.get("error") {
            panic!("axe-core failed on {}: {error}", self.url().await);
        }
        let Some(violations) = answer.get("violations").and_then(Value::as_array) else {
            panic!("axe-core answered no violations list: {answer}");
        };
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        violations
            .iter()
            .map(|v| Violation {
                id: text(v, "id"),
                confirmed: v.get("confirmed").and_then(Value::as_bool).unwrap_or(true),
                impact: text(v, "impact"),
                help: text(v, "help"),
                help_url: text(v, "helpUrl"),
                nodes: v
                    .get("nodes")
                    .and_then(Value::as_array)
                    .map(|nodes| nodes.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
            .filter(|v| matches!(v.impact.as_str(), "serious" | "critical"))
            .collect()
    }

    /// Panics, listing each rule and element, when axe-core finds a serious or critical violation on the page
    /// shown now; `page` names it in the message.
    pub async fn assert_accessible(&self, page: &str) {
        let violations = self.accessibility().await;
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(
            violations.is_empty(),
            "{page} ({}): {} serious or critical accessibility violation(s):\n{}",
            self.url().await,
            violations.len(),
            list.join("\n")
        );
    }

    /// Ends the browser session cleanly, then chromedriver.
    pub async fn quit(mut self) {
        let _ = self.client.delete_session().await;
        end_group(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        end_group(&mut self.driver);
    }
}

/// Ends chromedriver and the browser it started (its process group, named by chromedriver's id, which cannot
/// name another process before chromedriver is reaped here), then reaps it.
fn end_group(driver: &mut Option<Child>) {
    let Some(mut child) = driver.take() else { return };
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// The session's capabilities: Debian's chromium, headless, with a fresh profile; no network of its own (the
/// machine's closed network refuses it, and a test needs none), in Japanese, at the screenshots' size.
fn capabilities(profile: &Path) -> Value {
    let (width, height) = WINDOW;
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--window-size={width},{height}"),
        "--lang=ja".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    })
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("the bound port").port()
}

/// Waits up to 10 s until chromedriver accepts connections on `port`; false when it ended or never did.
async fn listening(port: u16, driver: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return true;
        }
        if let Ok(Some(_)) = driver.try_wait() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
