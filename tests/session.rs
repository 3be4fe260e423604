//! Resource-managed access (digest §0.2, §6.4, §6.6): the `202 requirement=interaction`,
//! the interaction hook, the pending URL's `200` with `AAuth-Access`, the session used
//! under a signature covering `authorization`, rotation, revocation, and every refusal.

mod support;

use http::StatusCode;
use support::session::*;
use tower_aauth::session::SessionOptions;
use tower_aauth::testing::{KeySource, TestAgent};

fn assert_problem(rig: &Rig, response: &http::Response<axum::body::Body>, status: StatusCode, code: &str) {
    assert_eq!(response.status(), status);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(rig.calls(), 0, "the handler must not run");
    let _ = code;
}

async fn assert_problem_code(response: http::Response<axum::body::Body>, code: &str) {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "a problem body"
    );
    let body = body_json(response).await;
    assert_eq!(body["error"], code, "{body}");
}

async fn refused(rig: &Rig, response: http::Response<axum::body::Body>, status: StatusCode, code: &str) {
    assert_problem(rig, &response, status, code);
    assert_problem_code(response, code).await;
}

#[tokio::test]
async fn an_agent_declaring_interaction_gets_202_with_the_interaction_requirement() {
    let rig = Rig::new();
    let response = rig.request_interaction("/notes").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let headers = response.headers();
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(headers["cache-control"], "no-store");
    let (location, code) = pending_of(&response);
    let id = location.strip_prefix(PENDING).expect("a pending URL of the resource");
    assert!(id.len() == 22 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let requirement = headers["aauth-requirement"].to_str().unwrap();
    assert_eq!(
        requirement,
        format!(r#"requirement=interaction; url="{INTERACTION_URL}"; code="{code}""#)
    );
    assert_eq!(code.len(), 11);
    assert_eq!(&code[5..6], "-");
    assert!(
        code.bytes()
            .filter(|&b| b != b'-')
            .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))
    );
    assert_eq!(body_json(response).await["status"], "pending");
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn the_approved_session_reaches_the_handler_as_the_resources_account() {
    let rig = Rig::new();
    let started = rig.request_interaction("/notes").await;
    let (location, code) = pending_of(&started);
    let found = rig.app.aauth.interaction(&code).await.expect("the page finds the code");
    assert!(found.agent.as_deref().unwrap().contains(AGENT_ID));
    assert_eq!(found.scopes, ["data.read"]);
    assert_eq!(found.key_thumbprint, rig.app.agent.thumbprint());
    assert!(decide(&rig.app.aauth, &code, Choice::Approve("acct-42".into())).await);
    rig.app.clock.advance(5);
    let approved = rig.poll(&location).await;
    assert_eq!(approved.status(), StatusCode::OK);
    assert_eq!(approved.headers()["cache-control"], "no-store");
    let token = access_of(&approved).unwrap();
    assert!(token.len() >= 43, "at least 256 bits");
    let served = rig.with_session("/notes", &token).await;
    assert_eq!(served.status(), StatusCode::OK);
    let body = body_json(served).await;
    assert_eq!(body["account"], "acct-42");
    assert_eq!(body["scopes"], serde_json::json!(["data.read"]));
    assert_eq!(rig.calls(), 1);
}

#[tokio::test]
async fn repeating_the_request_gives_the_same_pending_url_and_code() {
    let rig = Rig::new();
    let first = pending_of(&rig.request_interaction("/notes").await);
    let second = pending_of(&rig.request_interaction("/notes").await);
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_new_interaction_for_other_scopes_ends_the_agent_keys_previous_one() {
    let rig = Rig::new();
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);
    let (_, other) = pending_of(&rig.request_interaction("/both").await);
    assert_ne!(code, other);
    assert!(rig.app.aauth.interaction(&code).await.is_none());
    rig.app.clock.advance(5);
    refused(&rig, rig.poll(&location).await, StatusCode::GONE, "invalid_code").await;
}

#[tokio::test]
async fn polls_while_waiting_answer_202_and_interacting_once_the_page_looked_the_code_up() {
    let rig = Rig::new();
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);
    rig.app.clock.advance(5);
    let waiting = rig.poll(&location).await;
    assert_eq!(waiting.status(), StatusCode::ACCEPTED);
    assert_eq!(pending_of(&waiting), (location.clone(), code.clone()));
    assert_eq!(body_json(waiting).await["status"], "pending");
    rig.app.aauth.interaction(&code).await.unwrap();
    rig.app.clock.advance(5);
    let interacting = rig.poll(&location).await;
    assert_eq!(interacting.status(), StatusCode::ACCEPTED);
    assert_eq!(body_json(interacting).await["status"], "interacting");
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn polling_faster_than_retry_after_is_slow_down_and_the_interval_grows() {
    let rig = Rig::new();
    let (location, _) = pending_of(&rig.request_interaction("/notes").await);
    let fast = rig.poll(&location).await;
    assert_eq!(fast.headers()["retry-after"], "10");
    refused(&rig, fast, StatusCode::TOO_MANY_REQUESTS, "slow_down").await;
}

#[tokio::test]
async fn terminal_answers_of_the_pending_url_then_410() {
    for (decision, status, code) in [
        (Choice::Deny, StatusCode::FORBIDDEN, "denied"),
        (Choice::Expire, StatusCode::REQUEST_TIMEOUT, "expired"),
    ] {
        let rig = Rig::new();
        let (location, pending_code) = pending_of(&rig.request_interaction("/notes").await);
        assert!(decide(&rig.app.aauth, &pending_code, decision).await);
        rig.app.clock.advance(5);
        refused(&rig, rig.poll(&location).await, status, code).await;
        rig.app.clock.advance(5);
        refused(&rig, rig.poll(&location).await, StatusCode::GONE, "invalid_code").await;
    }
}

#[tokio::test]
async fn an_interaction_past_its_lifetime_answers_408_expired_and_its_code_is_gone() {
    let rig = Rig::new();
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);
    rig.app.clock.advance(600);
    assert!(rig.app.aauth.interaction(&code).await.is_none());
    assert!(!decide(&rig.app.aauth, &code, Choice::Approve("a".into())).await);
    refused(&rig, rig.poll(&location).await, StatusCode::REQUEST_TIMEOUT, "expired").await;
}

#[tokio::test]
async fn a_poll_signed_by_another_key_is_refused_and_changes_nothing() {
    let rig = Rig::new();
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);
    assert!(decide(&rig.app.aauth, &code, Choice::Approve("acct".into())).await);
    rig.app.clock.advance(5);
    let other = TestAgent::from_seed([9; 32]);
    let response = rig.get_as(&other, &KeySource::Hwk, &location, None, &[], false).await;
    assert!(access_of(&response).is_none());
    refused(&rig, response, StatusCode::FORBIDDEN, "invalid_request").await;
    assert_eq!(
        rig.poll(&location).await.status(),
        StatusCode::OK,
        "the owner still gets it"
    );
}

#[tokio::test]
async fn the_approval_is_handed_out_once() {
    let rig = Rig::new();
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);
    assert!(decide(&rig.app.aauth, &code, Choice::Approve("acct".into())).await);
    rig.app.clock.advance(5);
    assert!(access_of(&rig.poll(&location).await).is_some());
    rig.app.clock.advance(5);
    let again = rig.poll(&location).await;
    assert!(access_of(&again).is_none());
    refused(&rig, again, StatusCode::GONE, "invalid_code").await;
}

#[tokio::test]
async fn codes_are_single_use_and_read_in_any_case_with_confusables_folded() {
    let rig = Rig::new();
    let (_, code) = pending_of(&rig.request_interaction("/notes").await);
    let typed = code
        .replace('-', "")
        .to_ascii_lowercase()
        .replace('1', "l")
        .replace('0', "o");
    assert!(rig.app.aauth.interaction(&typed).await.is_some());
    assert!(decide(&rig.app.aauth, &typed, Choice::Deny).await);
    assert!(!decide(&rig.app.aauth, &code, Choice::Approve("acct".into())).await);
    assert!(rig.app.aauth.interaction(&code).await.is_none());
}

#[tokio::test]
async fn an_interaction_found_once_is_decided_once() {
    let rig = Rig::new();
    let (_, code) = pending_of(&rig.request_interaction("/notes").await);
    let first = rig.app.aauth.interaction(&code).await.unwrap();
    let second = rig.app.aauth.interaction(&code).await.unwrap();
    assert!(first.approve("acct").await);
    assert!(!second.deny().await);
    assert!(!first.expire().await);
}

#[tokio::test]
async fn decisions_with_an_unusable_account_id_decide_nothing() {
    let rig = Rig::new();
    let (_, code) = pending_of(&rig.request_interaction("/notes").await);
    assert!(!decide(&rig.app.aauth, &code, Choice::Approve(String::new())).await);
    assert!(!decide(&rig.app.aauth, &code, Choice::Approve("a".repeat(257))).await);
    assert!(rig.app.aauth.interaction(&code).await.is_some(), "still waiting");
}

#[tokio::test]
async fn the_interaction_page_shows_the_agent_and_scopes_and_its_buttons_decide() {
    let rig = Rig::new();
    let (location, code) = pending_of(&rig.request_interaction("/notes").await);
    let page = rig
        .send(
            http::Request::get(format!("{INTERACTION_URL}?code={code}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = String::from_utf8(axum::body::to_bytes(page.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap();
    assert!(html.contains(AGENT_ID) && html.contains("data.read"), "{html}");
    let approve = rig
        .send(
            http::Request::post(format!("{INTERACTION_URL}/approve?code={code}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(approve.status(), StatusCode::OK);
    rig.app.clock.advance(5);
    let token = access_of(&rig.poll(&location).await).unwrap();
    let served = rig.with_session("/notes", &token).await;
    assert_eq!(body_json(served).await["account"], "account-7");
}

// --- using the session: every refusal ----------------------------------------------------

#[tokio::test]
async fn a_session_token_without_a_signature_is_refused_as_a_bearer_token() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let request = http::Request::get(format!("{RESOURCE}/notes"))
        .header("authorization", format!("AAuth {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = rig.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["aauth-requirement"], "requirement=agent-token");
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn a_session_token_under_a_signature_not_covering_authorization_is_invalid_input() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let value = format!("AAuth {token}");
    let response = rig
        .get_as(&rig.app.agent, &rig.agent_token(), "/notes", None, &[&value], false)
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error = response.headers()["signature-error"].to_str().unwrap();
    assert!(error.starts_with("error=invalid_input"), "{error}");
    assert!(error.contains("authorization"), "{error}");
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn malformed_credentials_are_invalid_session() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let twice = format!("AAuth {token}, AAuth {token}");
    let spaced = format!("AAuth  {token}");
    let inner_space = format!("AAuth {} {}", &token[..10], &token[10..]);
    let tab = format!("AAuth {token}\t");
    let long = format!("AAuth {}", "a".repeat(600));
    let one = format!("AAuth {token}");
    for values in [
        vec!["AAuth "],
        vec!["AAuth ="],
        vec![spaced.as_str()],
        vec![inner_space.as_str()],
        vec![tab.as_str()],
        vec![twice.as_str()],
        vec![one.as_str(), one.as_str()],
        vec![one.as_str(), "Bearer abc"],
        vec![long.as_str()],
    ] {
        let response = rig
            .get_as(&rig.app.agent, &rig.agent_token(), "/notes", None, &values, true)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{values:?}");
        refused(&rig, response, StatusCode::UNAUTHORIZED, "invalid_session").await;
    }
}

#[tokio::test]
async fn an_unknown_token_is_invalid_session() {
    let rig = Rig::new();
    let response = rig.with_session("/notes", &"A".repeat(43)).await;
    refused(&rig, response, StatusCode::UNAUTHORIZED, "invalid_session").await;
}

#[tokio::test]
async fn a_token_presented_with_another_key_is_invalid_session() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let thief = TestAgent::from_seed([9; 32]);
    let source = rig.agent_token_for(&thief, "aauth:thief@agent.example");
    let value = format!("AAuth {token}");
    let response = rig.get_as(&thief, &source, "/notes", None, &[&value], true).await;
    refused(&rig, response, StatusCode::UNAUTHORIZED, "invalid_session").await;
}

#[tokio::test]
async fn an_expired_session_is_invalid_session() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    rig.app.clock.advance(3600);
    let response = rig.with_session("/notes", &token).await;
    refused(&rig, response, StatusCode::UNAUTHORIZED, "invalid_session").await;
}

#[tokio::test]
async fn a_revoked_session_is_invalid_session() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let value = format!("AAuth {token}");
    let mut request = http::Request::post(format!("{RESOURCE}/logout"))
        .header("authorization", &value)
        .body(axum::body::Body::empty())
        .unwrap();
    let mut options = tower_aauth::testing::SignOptions::default();
    options.components.push("authorization".to_owned());
    rig.app
        .agent
        .sign_with(&mut request, &rig.agent_token(), rig.now(), &options);
    assert_eq!(rig.send(request).await.status(), StatusCode::OK);
    rig.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let response = rig.with_session("/notes", &token).await;
    refused(&rig, response, StatusCode::UNAUTHORIZED, "invalid_session").await;
}

#[tokio::test]
async fn a_session_not_approved_for_the_routes_scopes_is_403_insufficient_scope() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let response = rig.with_session("/both", &token).await;
    assert_problem(&rig, &response, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_problem_code(response, "insufficient_scope").await;
}

#[tokio::test]
async fn a_session_for_other_scopes_starts_a_new_interaction_for_an_agent_that_can_interact() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let value = format!("AAuth {token}");
    let response = rig
        .get_as(
            &rig.app.agent,
            &rig.agent_token(),
            "/both",
            Some("interaction"),
            &[&value],
            true,
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (_, code) = pending_of(&response);
    let found = rig.app.aauth.interaction(&code).await.unwrap();
    assert_eq!(found.scopes, ["data.read", "data.write"]);
    assert_eq!(rig.calls(), 0);
}

// --- lifetime and rotation --------------------------------------------------------------

#[tokio::test]
async fn a_session_used_after_half_its_lifetime_is_rotated_and_the_old_token_lives_30_seconds() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    let early = rig.with_session("/notes", &token).await;
    assert!(access_of(&early).is_none(), "not yet due");
    rig.app.clock.advance(1800);
    let due = rig.with_session("/notes", &token).await;
    assert_eq!(due.status(), StatusCode::OK);
    let fresh = access_of(&due).expect("a rotated token");
    assert_ne!(fresh, token);
    rig.app.clock.advance(29);
    let grace = rig.with_session("/notes", &token).await;
    assert_eq!(grace.status(), StatusCode::OK);
    assert!(access_of(&grace).is_none(), "a rotated-out token is not rotated again");
    rig.app.clock.advance(1);
    let calls = rig.calls();
    let old = rig.with_session("/notes", &token).await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rig.calls(), calls);
    let new = rig.with_session("/notes", &fresh).await;
    assert_eq!(body_json(new).await["account"], "acct");
}

#[tokio::test]
async fn rotation_never_extends_a_session_past_its_maximum_age() {
    let rig = Rig::with_options(SessionOptions::new().session_lifetime(600).max_session_age(1200));
    let mut token = rig.session_for("/notes", "acct").await;
    let mut rotations = 0;
    for _ in 0..8 {
        rig.app.clock.advance(300);
        let response = rig.with_session("/notes", &token).await;
        if response.status() != StatusCode::OK {
            break;
        }
        if let Some(fresh) = access_of(&response) {
            token = fresh;
            rotations += 1;
        }
    }
    assert!(rotations >= 1);
    let response = rig.with_session("/notes", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "over after 1200 s");
}

// --- bounds and configuration -------------------------------------------------------------

#[tokio::test]
async fn a_full_store_answers_503_and_starts_nothing() {
    let rig = Rig::with_options(SessionOptions::new().capacity_bytes(2048));
    let mut unavailable = 0;
    for seed in 10..30u8 {
        let agent = TestAgent::from_seed([seed; 32]);
        let response = rig
            .get_as(&agent, &KeySource::Hwk, "/open", Some("interaction"), &[], false)
            .await;
        match response.status() {
            StatusCode::ACCEPTED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(response.headers()["retry-after"], "1");
                unavailable += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(unavailable > 0, "the byte bound was reached");
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn a_route_without_scopes_answers_403_interaction_required_to_an_agent_that_cannot_interact() {
    let rig = Rig::new();
    let response = rig
        .get_as(&rig.app.agent, &rig.agent_token(), "/open", None, &[], false)
        .await;
    refused(&rig, response, StatusCode::FORBIDDEN, "interaction_required").await;
}

#[tokio::test]
async fn the_session_extractor_refuses_a_request_no_session_guard_admitted() {
    let rig = Rig::new();
    let token = rig.session_for("/notes", "acct").await;
    // Even a valid session token: only the guard checks it and hands the session on.
    let response = rig.with_session("/account", &token).await;
    refused(&rig, response, StatusCode::FORBIDDEN, "interaction_required").await;
}

#[tokio::test]
async fn without_the_pending_router_no_interaction_starts() {
    let mut rig = Rig::new();
    rig.mount_pending = false;
    let response = rig.request_interaction("/notes").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(rig.calls(), 0);
}

#[tokio::test]
async fn the_interaction_page_alone_is_exempt_from_the_default_requirement() {
    let rig = Rig::with(|b| b.default_requirement(tower_aauth::guard::Requirement::Signature));
    let (_, code) = pending_of(&rig.request_interaction("/notes").await);
    let unsigned = |path: String| {
        http::Request::get(format!("{RESOURCE}{path}"))
            .body(axum::body::Body::empty())
            .unwrap()
    };
    let page = rig.send(unsigned(format!("/aauth/interaction?code={code}"))).await;
    assert_eq!(page.status(), StatusCode::OK, "a browser opens the page unsigned");
    for path in [
        format!("/aauth/interaction/approve?code={code}"),
        format!("/aauth/interaction/../interaction?code={code}"),
        "/aauth/interactions".to_owned(),
    ] {
        let response = rig.send(unsigned(path.clone())).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(response.headers()["aauth-requirement"], "requirement=agent-token");
    }
    assert!(rig.app.aauth.interaction(&code).await.is_some(), "nothing was decided");
}

#[test]
fn session_options_out_of_range_are_configuration_errors() {
    for options in [
        SessionOptions::new().session_lifetime(10),
        SessionOptions::new().session_lifetime(600).max_session_age(60),
        SessionOptions::new().interaction_lifetime(5),
        SessionOptions::new().retry_after(4000),
        SessionOptions::new().interaction_path("interaction"),
        SessionOptions::new().interaction_path("/a?b"),
        SessionOptions::new().interaction_path("/a#b"),
        SessionOptions::new().interaction_path("/a/../b"),
    ] {
        let built = tower_aauth::AAuth::builder(RESOURCE).sessions(options.clone()).build();
        assert!(built.is_err(), "{options:?}");
    }
}

#[tokio::test]
async fn a_flood_of_wrong_codes_never_locks_a_person_out_of_their_own() {
    let rig = Rig::new();
    let (_, code) = pending_of(&rig.request_interaction("/notes").await);
    for n in 0..500u32 {
        // Well-formed codes that name nothing, and malformed ones.
        let guess = format!("{:05}-{:05}", n % 100_000, n);
        assert!(rig.app.aauth.interaction(&guess).await.is_none());
        assert!(rig.app.aauth.interaction("not a code").await.is_none());
    }
    let found = rig.app.aauth.interaction(&code).await;
    assert!(found.is_some(), "the person's own code is still found");
}

#[tokio::test]
async fn the_approved_agents_revocation_holds_for_its_session_whatever_key_scheme_is_used() {
    // A store that forgets every binding at once: the key's binding to the agent has
    // lapsed (evicted, or its agent token long expired) while the session lives on.
    struct Forgetful;
    impl tower_aauth::policy::AgentBindings for Forgetful {
        fn binding(&self, _: &str, _: u64) -> Option<tower_aauth::policy::Binding> {
            None
        }
        fn bind(
            &self,
            _: &str,
            _: &tower_aauth::policy::AgentId,
            _: u64,
            _: u64,
            _: bool,
        ) -> Result<(), tower_aauth::policy::BindingRefused> {
            Ok(())
        }
        fn pin_named(&self, _: &dyn Fn(&tower_aauth::policy::AgentId) -> bool, _: u64) {}
    }
    let rig = Rig::with(|b| b.agent_bindings(Forgetful));
    let token = rig.session_for("/notes", "account-7").await;
    // Signed with the bare key (hwk) the request names no agent; the session does.
    let value = format!("AAuth {token}");
    let agent = rig.app.agent.clone();
    let served = rig
        .get_as(&agent, &KeySource::Hwk, "/notes", None, &[value.as_str()], true)
        .await;
    assert_eq!(served.status(), StatusCode::OK);
    rig.app
        .aauth
        .revocations()
        .revoke(tower_aauth::policy::Revoked::Agent(AGENT_ID.parse().unwrap()))
        .unwrap();
    let calls = rig.calls();
    let refused = rig
        .get_as(&agent, &KeySource::Hwk, "/notes", None, &[value.as_str()], true)
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["signature-error"], "error=revoked_jwt");
    assert_eq!(rig.calls(), calls, "the handler did not run");
}
