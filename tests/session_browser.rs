//! The resource-managed interaction page in a real browser (digest §6.4): headless
//! Chromium, driven over WebDriver (`chromedriver`), opens `{url}?code=…`, sees the agent
//! and the scopes asked for, and its approve and deny buttons decide; the agent's poll
//! then completes. A screenshot of the page is saved under the target directory
//! (`<target>/tmp/session-interaction.png`).
//!
//! Without `chromium` and `chromedriver` on `PATH` (`apt-get install chromium
//! chromium-driver`; `.ci/run` does) the tests are reported ignored (`build.rs` sets
//! `skip_chromium`), except under `CI=true`, where they fail. Everything stays on
//! loopback: the browser resolves no other host and runs no background networking.

mod support;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use http::StatusCode;
use serde_json::json;
use support::session::*;

/// A `chromedriver` child process on a free loopback port, killed on drop, and the
/// browser's fresh profile directory, removed on drop.
struct Driver {
    port: u16,
    child: Child,
    profile: std::path::PathBuf,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver is not on PATH: apt-get install chromium chromium-driver (.ci/run does); \
                 only under CI=true does its absence fail the tests instead of ignoring them",
            );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = std::env::temp_dir().join(format!("tower-aauth-chromium-{port}-{}", std::process::id()));
        Driver { port, child, profile }
    }

    /// A headless Chromium session with a fresh profile that reaches loopback only.
    async fn browser(&self) -> Client {
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
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            &format!("--user-data-dir={}", self.profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "args": args }));
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with headless Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Serves the rig's application on a loopback port; returns its origin.
async fn serve(rig: &Rig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = rig.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    origin
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id(id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[cfg_attr(
    skip_chromium,
    ignore = "chromium or chromedriver not found on PATH (apt-get install chromium chromium-driver)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approving_in_the_browser_completes_the_agents_poll() {
    let rig = Rig::new();
    let origin = serve(&rig).await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);

    browser
        .goto(&format!("{origin}/aauth/interaction?code={code}"))
        .await
        .unwrap();
    assert!(text_of(&browser, "agent").await.contains(AGENT_ID));
    assert_eq!(text_of(&browser, "scopes").await, "data.read");
    let screenshot = browser.screenshot().await.unwrap();
    assert!(screenshot.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("session-interaction.png");
    std::fs::write(&path, &screenshot).unwrap();

    rig.app.clock.advance(5);
    let interacting = rig.poll(&location).await;
    assert_eq!(interacting.status(), StatusCode::ACCEPTED);
    assert_eq!(body_json(interacting).await["status"], "interacting");

    browser
        .find(Locator::Id("approve"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(text_of(&browser, "done").await, "approved");
    browser.close().await.unwrap();

    rig.app.clock.advance(10);
    let approved = rig.poll(&location).await;
    assert_eq!(approved.status(), StatusCode::OK);
    let token = access_of(&approved).unwrap();
    let served = rig.with_session("/notes", &token).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(body_json(served).await["account"], "account-7");
}

#[cfg_attr(
    skip_chromium,
    ignore = "chromium or chromedriver not found on PATH (apt-get install chromium chromium-driver)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_denying_in_the_browser_ends_the_agents_poll_with_denied() {
    let rig = Rig::new();
    let origin = serve(&rig).await;
    let driver = Driver::start();
    let browser = driver.browser().await;
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);

    browser
        .goto(&format!("{origin}/aauth/interaction?code={code}"))
        .await
        .unwrap();
    browser.find(Locator::Id("deny")).await.unwrap().click().await.unwrap();
    assert_eq!(text_of(&browser, "done").await, "denied");
    // The code is used up: the page no longer finds it.
    browser
        .goto(&format!("{origin}/aauth/interaction?code={code}"))
        .await
        .unwrap();
    assert!(browser.find(Locator::Id("approve")).await.is_err());
    browser.close().await.unwrap();

    rig.app.clock.advance(5);
    let denied = rig.poll(&location).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(body_json(denied).await["error"], "denied");
    assert_eq!(rig.calls(), 0);
}
