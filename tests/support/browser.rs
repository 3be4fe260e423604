//! A headless Chromium driven over WebDriver (the W3C protocol, spoken to Debian's
//! `chromedriver` with the crate's own HTTP client): what a person sees on a page, and the
//! buttons they press.
//!
//! Chromium runs with a fresh profile and without background networking, so it talks to
//! nothing but the loopback pages a test opens.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use super::fleet::TempDir;

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: TempDir,
}

impl Browser {
    /// Starts `chromedriver` on a free loopback port and a headless Chromium session. A
    /// test that calls this carries `#[cfg_attr(skip_chromium, ignore = "…")]`.
    pub async fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so that Chromium goes with it even when a test
            // panics before ending the session.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is not on PATH: apt-get install chromium chromium-driver (.ci/run does); \
                 only under CI=true does its absence fail the browser tests instead of ignoring them",
            );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = TempDir::new("chromium");
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium(),
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                        // Names resolve to nothing but loopback.
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                        "--window-size=1000,800",
                        format!("--user-data-dir={}", profile.path().display()),
                    ]
                }
            }}
        });
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let created = browser.command("POST", "/session", Some(capabilities)).await;
        browser.session = created["sessionId"].as_str().expect("a WebDriver session").to_owned();
        browser
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let bytes = request
            .send()
            .await
            .expect("chromedriver answers")
            .bytes()
            .await
            .expect("a WebDriver answer");
        let answer: Value = serde_json::from_slice(&bytes).expect("a WebDriver JSON answer");
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        assert!(value.get("error").is_none(), "WebDriver {method} {path}: {value}");
        value
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The text of the page, as a person reads it.
    pub async fn text(&self) -> String {
        let value = self
            .command(
                "POST",
                "/execute/sync",
                Some(json!({ "script": "return document.body.innerText;", "args": [] })),
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.command("GET", "/title", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The WebDriver reference of the element `css` selects, if there is one.
    async fn find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let body = json!({ "using": "css selector", "value": css }).to_string();
        let answer = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("chromedriver answers")
            .bytes()
            .await
            .expect("a WebDriver answer");
        let answer: Value = serde_json::from_slice(&answer).expect("a WebDriver JSON answer");
        // The reference is the one member of the value (the W3C web element identifier);
        // a missing element is an error value instead.
        let value = answer.get("value")?;
        if value.get("error").is_some() {
            return None;
        }
        value.as_object()?.values().next()?.as_str().map(str::to_owned)
    }

    /// Whether the page holds an element `css` selects.
    pub async fn has(&self, css: &str) -> bool {
        self.find(css).await.is_some()
    }

    /// The text of the element `css` selects, waiting for it to appear.
    pub async fn text_of(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(id) = self.find(css).await {
                let text = self.command("GET", &format!("/element/{id}/text"), None).await;
                return text.as_str().unwrap_or_default().to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await.expect("the element exists");
        self.command("POST", &format!("/element/{id}/click"), None).await;
    }

    /// Waits until the page's title is `title` (after a form was submitted).
    pub async fn until_title(&self, title: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.title().await == title {
                return;
            }
            assert!(Instant::now() < deadline, "the page never became {title:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the viewport as `target/browser/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.command("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (Chromium exits); dropping stops the driver.
    pub async fn close(self) {
        let _ = self.command("DELETE", "", None).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// Debian's Chromium.
fn chromium() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .unwrap_or("/usr/bin/chromium")
        .to_owned()
}

/// Where screenshots go: `browser/` in the target directory.
fn artifacts() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("browser")
}
