//! The demo's resource-managed run (`cargo run --example demo -- --mode resource-managed`)
//! in-process, through real loopback servers: the resource's own consent page, the
//! session token, the revocation endpoint, the next request refused.

use std::sync::{Arc, Mutex};

use tower_aauth::testing::demo::{self, DemoOptions, DemoReport, PersonAction};

/// Runs the mode for `person`; the report and the narration.
async fn run(person: PersonAction) -> (DemoReport, String) {
    let narration = Arc::new(Mutex::new(String::new()));
    let sink = narration.clone();
    let print: demo::Printer = Arc::new(move |text: &str| sink.lock().unwrap().push_str(text));
    let report = demo::run_resource_managed(DemoOptions::for_person(person), print)
        .await
        .expect("the demo starts");
    let narration = narration.lock().unwrap().clone();
    assert!(
        report.passed(),
        "failed checks: {:?}\n{narration}",
        report.failures().map(|c| &c.name).collect::<Vec<_>>(),
    );
    (report, narration)
}

fn has_check(report: &DemoReport, needle: &str) -> bool {
    report.checks.iter().any(|c| c.ok && c.name.contains(needle))
}

#[tokio::test]
async fn approved_on_the_resources_page_the_session_is_served_revoked_and_refused() {
    let (report, narration) = run(PersonAction::Approve).await;
    for needle in [
        "sent AAuth-Capabilities: interaction",
        "202 Accepted, not an auth-token challenge",
        "requirement=interaction; url=",
        "opened the consent page: 200 naming the agent and notes.read",
        "{\"status\":\"interacting\"}",
        "200 with AAuth-Access: <session token>",
        "answered 200 as the session's account (testuser)",
        "error=invalid_input naming authorization",
        "the revocation endpoint answered 200",
        "401 Signature-Error: error=revoked_jwt",
        "the session is still served",
        "POST /logout with the session answered 200",
        "401 invalid_session",
    ] {
        assert!(has_check(&report, needle), "no passed check {needle:?}");
    }
    assert!(narration.contains("AUTH SERVER REVOKES the auth token at the resource's revocation endpoint"));
    assert!(narration.contains("A session token is the resource's own opaque credential"));
}

#[tokio::test]
async fn the_narration_never_prints_a_whole_session_token() {
    let (_, narration) = run(PersonAction::Approve).await;
    let shown: Vec<&str> = narration
        .lines()
        .filter_map(|line| line.trim().strip_prefix("aauth-access: "))
        .collect();
    assert_eq!(shown.len(), 1, "the one 200 carrying the session:\n{narration}");
    assert!(shown[0].ends_with("…(43 bytes)") && shown[0].chars().count() == 8 + "…(43 bytes)".chars().count());
    for line in narration
        .lines()
        .filter(|l| l.trim().starts_with("authorization: AAuth "))
    {
        assert!(line.ends_with("…(43 bytes)"), "{line}");
    }
}

#[tokio::test]
async fn denied_on_the_resources_page_the_polling_ends_with_403_denied_and_no_session() {
    let (report, narration) = run(PersonAction::Deny).await;
    assert!(has_check(&report, "403 denied, and no session"));
    assert!(!has_check(&report, "AAuth-Access"));
    assert!(!narration.contains("--- step 3"), "nothing runs after the denial");
}
