//! The resource-managed interaction page in a real browser (digest §6.4): headless
//! Chromium, driven over WebDriver (`chromedriver`), opens `{url}?code=…`, sees the agent
//! and the scopes asked for, and its approve and deny buttons decide; the agent's poll
//! then completes. Screenshots of the page are saved under `target/browser/`.
//!
//! Without `chromium` and `chromedriver` on `PATH` (`apt-get install chromium
//! chromium-driver`; `.ci/run` does) the tests are reported ignored (`build.rs` sets
//! `skip_chromium`), except under `CI=true`, where they fail. Everything stays on
//! loopback: the browser resolves no other host and runs no background networking.

mod support;

use http::StatusCode;
use support::browser::Browser;
use support::session::*;

/// Serves the rig's application on a loopback port; returns its origin.
async fn serve(rig: &Rig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = rig.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    origin
}

#[cfg_attr(
    skip_chromium,
    ignore = "chromium or chromedriver not found on PATH (apt-get install chromium chromium-driver)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_approving_in_the_browser_completes_the_agents_poll() {
    let rig = Rig::new();
    let origin = serve(&rig).await;
    let browser = Browser::start().await;
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);

    browser.goto(&format!("{origin}/aauth/interaction?code={code}")).await;
    assert!(browser.text_of("#agent").await.contains(AGENT_ID));
    assert_eq!(browser.text_of("#scopes").await, "data.read");
    browser.screenshot("session-interaction").await;

    rig.app.clock.advance(5);
    let interacting = rig.poll(&location).await;
    assert_eq!(interacting.status(), StatusCode::ACCEPTED);
    assert_eq!(body_json(interacting).await["status"], "interacting");

    browser.click("#approve").await;
    assert_eq!(browser.text_of("#done").await, "approved");
    browser.screenshot("session-approved").await;
    browser.close().await;

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
    let browser = Browser::start().await;
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);

    browser.goto(&format!("{origin}/aauth/interaction?code={code}")).await;
    browser.click("#deny").await;
    assert_eq!(browser.text_of("#done").await, "denied");
    // The code is used up: the page no longer finds it.
    browser.goto(&format!("{origin}/aauth/interaction?code={code}")).await;
    assert!(!browser.has("#approve").await);
    browser.close().await;

    rig.app.clock.advance(5);
    let denied = rig.poll(&location).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(body_json(denied).await["error"], "denied");
    assert_eq!(rig.calls(), 0);
}
