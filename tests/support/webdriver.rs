//! A tiny W3C WebDriver client for the browser tests: a `chromedriver` child on a loopback
//! port, one headless Chromium session, and the few commands the tests need, spoken over
//! plain HTTP with curl (like the rest of `support`).

use super::TempDir;
use base64::Engine;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a wait for the page (an element, a condition) may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(60);
/// The W3C key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromium_path() -> PathBuf {
    std::env::var_os("PURSER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn chromedriver_path() -> PathBuf {
    std::env::var_os("PURSER_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// A headless Chromium driven through chromedriver; both end on drop.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    /// The profile directory; outlives the browser (fields drop after `Drop::drop`).
    _profile: TempDir,
    pub log: PathBuf,
}

impl Browser {
    /// Starts a browser, or fails the test saying how to install one. A browser test
    /// without a browser fails everywhere (under CI and on a developer's machine alike):
    /// a test that returns early would pass without testing anything.
    pub(crate) fn start_or_fail(test: &str) -> Browser {
        let missing: Vec<String> = [chromium_path(), chromedriver_path()]
            .into_iter()
            .filter(|path| !path.exists())
            .map(|path| path.display().to_string())
            .collect();
        assert!(
            missing.is_empty(),
            "{test}: {} not found. Install them with `apt-get install chromium \
             chromium-driver` (Debian, Ubuntu), or point PURSER_CHROMIUM and \
             PURSER_CHROMEDRIVER at a Chromium and the chromedriver of the same version.",
            missing.join(" and ")
        );
        Browser::start()
    }

    /// Starts chromedriver on a free loopback port and opens a headless session.
    pub(crate) fn start() -> Browser {
        let profile = TempDir::new("chromium-profile");
        let log = profile.path().join("chromedriver.log");
        let (driver, base) = spawn_driver(&log);
        let user_data = profile.path().join("user-data");
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium_path().display().to_string(),
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--no-first-run",
                            "--no-proxy-server",
                            "--window-size=1400,1000",
                            format!("--user-data-dir={}", user_data.display()),
                        ]
                    }
                }
            }
        });
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            _profile: profile,
            log,
        };
        let created = browser
            .call("POST", "/session", Some(&capabilities))
            .unwrap_or_else(|e| panic!("new WebDriver session: {e}\n{}", browser.driver_log()));
        browser.session = created["sessionId"]
            .as_str()
            .expect("sessionId in the new-session answer")
            .to_string();
        browser
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .map(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            })
            .unwrap_or_default()
    }

    /// One WebDriver command: the answer's `value`, or the WebDriver error as text.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--noproxy", "*", "--max-time", "120", "-X", method])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{}{path}", self.base))
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY");
        if let Some(body) = body {
            command.args(["-H", "content-type: application/json; charset=utf-8"]);
            command.args(["--data-binary", &body.to_string()]);
        }
        let output = command.output().map_err(|e| format!("run curl: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        let status: u16 = status.trim().parse().unwrap_or(0);
        if status == 0 {
            return Err(format!(
                "no answer from chromedriver: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let answer: Value = serde_json::from_str(body)
            .map_err(|e| format!("chromedriver answered {status} with non-JSON ({e}): {body}"))?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 {
            return Err(format!(
                "{}: {}",
                value["error"].as_str().unwrap_or("error"),
                value["message"].as_str().unwrap_or(body)
            ));
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// Opens `url` and waits for the document to load.
    pub(crate) fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub(crate) fn execute(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The first element matching `css` now, if any.
    pub(crate) fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let path = format!("/session/{}/element", self.session);
        let body = json!({ "using": "css selector", "value": css });
        match self.call("POST", &path, Some(&body)) {
            Ok(value) => Some(Element {
                browser: self,
                id: value[ELEMENT_KEY]
                    .as_str()
                    .expect("element reference")
                    .to_string(),
            }),
            Err(e) if e.starts_with("no such element") => None,
            Err(e) => panic!("find {css}: {e}"),
        }
    }

    /// Waits (bounded) for an element matching `css` to appear.
    pub(crate) fn find(&self, css: &str) -> Element<'_> {
        let mut found = None;
        self.wait_until(&format!("an element matching `{css}`"), || {
            found = self.try_find(css);
            found.is_some()
        });
        found.expect("found")
    }

    /// Waits (bounded) until `condition` holds; on giving up, fails with the page's text.
    pub(crate) fn wait_until(&self, what: &str, mut condition: impl FnMut() -> bool) {
        let start = Instant::now();
        while !condition() {
            if start.elapsed() > PATIENCE {
                let text = self.execute("return document.body.innerText", json!([]));
                panic!(
                    "gave up waiting for {what}; the page says:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resizes the window so that the page's viewport is `width` x `height` CSS pixels
    /// (as a phone's or a desktop's would be), and checks that it is.
    pub(crate) fn set_viewport(&self, width: u32, height: u32) {
        let mut outer = (width, height);
        for _ in 0..3 {
            let rect = json!({ "width": outer.0, "height": outer.1 });
            self.session_call("POST", "/window/rect", Some(&rect));
            let inner = self.viewport();
            if inner == (width, height) {
                return;
            }
            // The window's frame (if any) takes its share: grow the window by it.
            outer = (
                (outer.0 + width).saturating_sub(inner.0),
                (outer.1 + height).saturating_sub(inner.1),
            );
        }
        panic!(
            "cannot make the viewport {width}x{height}: it is {:?}",
            self.viewport()
        );
    }

    /// The viewport's size in CSS pixels.
    pub(crate) fn viewport(&self) -> (u32, u32) {
        let size = self.execute("return [window.innerWidth, window.innerHeight]", json!([]));
        let side = |i: usize| size[i].as_u64().unwrap_or(0) as u32;
        (side(0), side(1))
    }

    /// Saves a PNG of the viewport to `path`.
    pub(crate) fn screenshot(&self, path: &Path) {
        let data = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 screenshot"))
            .expect("decode screenshot");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = self.call("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Spawns chromedriver on a free loopback port and waits until it says it is ready.
fn spawn_driver(log: &Path) -> (Child, String) {
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("pick a free port")
            .port();
        let mut child = Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while start.elapsed() < PATIENCE {
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!("chromedriver exited with {status}");
                break;
            }
            let output = Command::new("curl")
                .args(["-sS", "--noproxy", "*", "--max-time", "5"])
                .arg(format!("{base}/status"))
                .output()
                .expect("run curl");
            let ready = serde_json::from_slice::<Value>(&output.stdout)
                .map(|status| status["value"]["ready"] == Value::Bool(true))
                .unwrap_or(false);
            if ready {
                return (child, base);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        if last_error.is_empty() {
            last_error = "chromedriver never became ready".into();
        }
    }
    panic!("{last_error}; see {}", log.display());
}

/// A reference to an element on the current page.
pub(crate) struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Element<'_> {
    fn call(&self, method: &str, action: &str, body: Option<&Value>) -> Value {
        self.browser
            .session_call(method, &format!("/element/{}{action}", self.id), body)
    }

    pub(crate) fn click(&self) {
        self.call("POST", "/click", Some(&json!({})));
    }

    /// The rendered text.
    pub(crate) fn text(&self) -> String {
        self.call("GET", "/text", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub(crate) fn attribute(&self, name: &str) -> Option<String> {
        self.call("GET", &format!("/attribute/{name}"), None)
            .as_str()
            .map(str::to_string)
    }

    /// Empties an input.
    pub(crate) fn clear(&self) {
        self.call("POST", "/clear", Some(&json!({})));
    }

    /// Types `text` into the element, as keystrokes.
    pub(crate) fn type_text(&self, text: &str) {
        self.call("POST", "/value", Some(&json!({ "text": text })));
    }
}
