//! A small W3C WebDriver client over reqwest, for chromedriver and Debian's headless
//! Chromium. It holds only the commands the console tests use; a full client (fantoccini)
//! would add a dozen crates to build for the same few requests.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TempDir;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to listen.
const DRIVER_START_MAX: Duration = Duration::from_secs(20);
/// How long a navigation may take.
const NAVIGATION_MAX: Duration = Duration::from_secs(10);

/// chromedriver, a Chromium session, and the profile directory; all gone on drop.
pub struct Browser {
    driver: Child,
    base: String,
    client: reqwest::Client,
    _profile: TempDir,
    pub screenshots: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Browser {
    pub async fn start(screenshots: &Path) -> Browser {
        // A fresh machine has no browser: install it as the PostgreSQL tests install their
        // server (as root; what `.ci/run` does too).
        let present = |p: &str| Path::new(p).exists();
        if !present("/usr/bin/chromium") || !present("/usr/bin/chromedriver") {
            gongji_pg::testkit::install_debian_packages(
                &["chromium", "chromium-driver", "fonts-wqy-zenhei"],
                "Chromium or chromedriver is not installed",
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let port = free_port();
        // Its own process group, which Chromium joins: a failing test ends them all at once.
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian: apt-get install -y chromium chromium-driver)");
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        // chromedriver's readiness is only observable by asking it.
        loop {
            if let Ok(r) = client.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < DRIVER_START_MAX,
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir::new("chromium-profile");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            &format!("--user-data-dir={}", profile.0.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let resp: Value = client
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_owned();
        std::fs::create_dir_all(screenshots).expect("screenshot dir");
        Browser {
            driver,
            base: format!("{base}/session/{id}"),
            client,
            _profile: profile,
            screenshots: screenshots.to_owned(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body.unwrap_or(json!({}))),
        };
        let resp = req.send().await.expect("webdriver request");
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.expect("webdriver json");
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    async fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("webdriver {method} {path}: {e}"),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.must("GET", "/url", None)
            .await
            .as_str()
            .expect("url")
            .to_owned()
    }

    pub async fn source(&self) -> String {
        self.must("GET", "/source", None)
            .await
            .as_str()
            .expect("source")
            .to_owned()
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .must(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {v}"))
            .to_owned()
    }

    pub async fn exists(&self, css: &str) -> bool {
        self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .await
        .is_ok()
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.must("GET", &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .expect("text")
            .trim()
            .to_owned()
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.must("POST", &format!("/element/{e}/click"), Some(json!({})))
            .await;
    }

    /// Waits until the current URL contains `part` (a click's navigation may still be under
    /// way when the click returns); panics after `NAVIGATION_MAX`.
    pub async fn wait_url(&self, part: &str) -> String {
        let started = Instant::now();
        loop {
            let url = self.url().await;
            if url.contains(part) {
                // The new document, not the old one still unloading.
                let ready = self.script("return document.readyState", json!(null)).await;
                if ready == json!("complete") {
                    return url;
                }
            }
            assert!(
                started.elapsed() < NAVIGATION_MAX,
                "{url} never became {part}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Clicks `css` and waits for the page it leads to: the old document is marked first, so
    /// a navigation that lands on the same URL (a refused sign-in) is still seen.
    pub async fn click_navigate(&self, css: &str) {
        self.script("window.__gj_old = true", json!(null)).await;
        self.click(css).await;
        self.wait_new_document().await;
    }

    /// Runs `script` (which navigates) and waits for the new document, as `click_navigate`.
    pub async fn script_navigate(&self, script: &str, arg: Value) {
        self.script("window.__gj_old = true", json!(null)).await;
        self.script(script, arg).await;
        self.wait_new_document().await;
    }

    async fn wait_new_document(&self) {
        let started = Instant::now();
        loop {
            let done = self
                .call(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": "return window.__gj_old === undefined && document.readyState === 'complete'", "args": []})),
                )
                .await;
            if done == Ok(json!(true)) {
                return;
            }
            assert!(started.elapsed() < NAVIGATION_MAX, "no navigation");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.must(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs `script` in the page (`arguments[0]` is `arg`) and returns its value.
    pub async fn script(&self, script: &str, arg: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": [arg]})),
        )
        .await
    }

    /// The text of every element matching `css`, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .script(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent.trim())",
                json!(css),
            )
            .await;
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("text").to_owned())
            .collect()
    }

    /// The cookie named `name` as the browser holds it (flags included).
    pub async fn cookie(&self, name: &str) -> Option<Value> {
        self.call("GET", &format!("/cookie/{name}"), None)
            .await
            .ok()
    }

    /// Whether a JavaScript dialog (an injected `alert`) is open.
    pub async fn alert_open(&self) -> bool {
        self.call("GET", "/alert/text", None).await.is_ok()
    }

    /// Writes a PNG screenshot of the viewport as `<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.must("GET", "/screenshot", None).await;
        let png = base64_decode(b64.as_str().expect("base64"));
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Quits Chromium through the session; dropping then ends chromedriver.
    pub async fn close(self) {
        let _ = self.call("DELETE", "", None).await;
    }
}

impl Drop for Browser {
    /// After a failure the session was never closed: end chromedriver's whole process group
    /// (Chromium and its helpers), not chromedriver alone.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}
