//! Pages a person sees, in a real browser: the test kit's consent page, driven by headless
//! Chromium over WebDriver. The page shows what is asked (the resource, the agent's key,
//! the scopes), its buttons decide, and the agent's poll then completes. Each page's
//! screenshot is kept under `target/browser/`.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use http::{Method, StatusCode};
use support::browser::Browser;
use tokio::sync::oneshot;
use tower_aauth::testing::{AgentClient, Consent, FlowError, FlowEvent, FlowOutcome, TestHarness};

/// A resource whose `GET /data` needs `data.read`, its agent, and the consent page the
/// agent's first token request opens (the URL it would show its person).
async fn flow_waiting_for_a_person() -> (
    TestHarness,
    tokio::task::JoinHandle<Result<FlowOutcome, FlowError>>,
    String,
) {
    let harness = TestHarness::builder()
        .consent(Consent::Person)
        .spawn(|builder| {
            let aauth = builder.scope("data.read", "Read your data").build()?;
            Ok(Router::new()
                .route(
                    "/data",
                    get(|| async { "the data" }).route_layer(aauth.require_scopes(["data.read"])),
                )
                .merge(aauth.well_known_router())
                .layer(aauth.layer()))
        })
        .await
        .expect("the harness starts");
    let (shown, page) = oneshot::channel();
    let shown = Arc::new(Mutex::new(Some(shown)));
    let client: AgentClient = harness
        .agent()
        .with_max_polling(std::time::Duration::from_secs(30))
        .with_observer(move |event| {
            if let FlowEvent::Interaction { url, .. } = event
                && let Some(shown) = shown.lock().unwrap().take()
            {
                let _ = shown.send(url.clone());
            }
        });
    let url = harness.url("/data");
    let flow = tokio::spawn(async move { client.fetch(Method::GET, &url, None).await });
    let page = page.await.expect("the agent was sent to a consent page");
    (harness, flow, page)
}

#[cfg_attr(
    skip_chromium,
    ignore = "chromium or chromedriver not found on PATH (apt-get install chromium chromium-driver)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_page_shows_the_request_and_approve_completes_the_agents_poll() {
    let (harness, flow, page) = flow_waiting_for_a_person().await;
    let browser = Browser::start().await;
    browser.goto(&page).await;
    assert_eq!(browser.title().await, "Authorize an agent");
    let text = browser.text().await;
    assert!(text.contains(harness.resource()), "the resource is named: {text}");
    assert!(text.contains("data.read"), "the scope is named: {text}");
    assert!(
        text.contains(&harness.agent().agent().thumbprint()),
        "the agent's key is named: {text}"
    );
    browser.screenshot("consent-page").await;

    browser.click("button[value=approve]").await;
    browser.until_title("Approved").await;
    browser.screenshot("consent-approved").await;
    let outcome = flow.await.unwrap().expect("the flow completes");
    assert_eq!(outcome.response.status, StatusCode::OK);
    assert_eq!(&outcome.response.body[..], b"the data");
    browser.close().await;
}

#[cfg_attr(
    skip_chromium,
    ignore = "chromium or chromedriver not found on PATH (apt-get install chromium chromium-driver)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_on_the_consent_page_ends_the_agents_poll_with_a_refusal() {
    let (_harness, flow, page) = flow_waiting_for_a_person().await;
    let browser = Browser::start().await;
    browser.goto(&page).await;
    browser.click("button[value=deny]").await;
    browser.until_title("Denied").await;
    browser.screenshot("consent-denied").await;
    match flow.await.unwrap() {
        Err(FlowError::Refused { status, error, .. }) => {
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert_eq!(error, "denied");
        }
        other => panic!("expected the poll to be refused, got {other:?}"),
    }
    // The denial was delivered and the request is gone: its code opens no consent page.
    browser.goto(&page).await;
    assert_eq!(browser.title().await, "Unknown code");
    browser.close().await;
}
