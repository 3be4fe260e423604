//! Draft -11 resource features against the real PyPI agents: resource-managed access
//! followed by `aauth` 0.5.0's own poller (the `202 requirement=interaction`, the pending
//! URL's `200` with `AAuth-Access`, then `Authorization: AAuth <token>` under a signature
//! the library made to cover it), the same session replayed by `aauth` 0.3.4 (whose
//! signer never covers `authorization`) or by `@hellocoop/httpsig` 2.2.0 without being
//! told to cover it refused with the exact code, `aauth` 0.3.4's poller following our
//! pending URL without ever prompting the person (it reads the requirement from a body
//! that repeats it, which ours does not), and the revocation
//! endpoint driven by `aauth` 0.5.0's `sign_revocation_request`, whose `send_revocation`
//! also judges our answers.
//!
//! The drivers do no network I/O: the library's poller is replayed step by step
//! (`follow-pending`), and this file carries every request and response between it and
//! our resource (see tests/interop/README.md).
//!
//! Needs `bash tests/interop/setup.sh` (without it the tests are reported ignored, and fail under `CI=true`: see `build.rs`).

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use support::fixtures::decode;
use support::harness::{AP, AS, Harness, NOW, RESOURCE, assert_refused, body_json};
use support::peers::{Peer, Scheme, SignRequest, agent_private_jwk, scripted, signed_request};
use support::session::{AGENT_ID, Choice, INTERACTION_URL, Rig, decide, pending_of};
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::policy::Revoked;
use tower_aauth::testing::KeySource;

// ---- resource-managed access -------------------------------------------------------------

/// The agent token of the rig's agent (the key the drivers sign with), as a string.
fn agent_token(rig: &Rig) -> String {
    match rig.agent_token() {
        KeySource::Jwt(token) => token,
        other => panic!("an agent token, not {other:?}"),
    }
}

/// `follow-pending` of aauth 0.5.0 from the first request's `202`, answering its polls
/// with `responses`, its signatures made at `created`.
fn follow(v05: &std::path::PathBuf, rig: &Rig, initial: &Value, responses: &[Value], created: u64) -> Value {
    Peer::V05.run(
        v05,
        "follow-pending",
        &json!({
            "request_url": format!("{RESOURCE}/notes"),
            "initial": initial,
            "responses": responses,
            "private_jwk": agent_private_jwk(),
            "jwt": agent_token(rig),
            "created": created,
        }),
    )
}

/// A GET of `/notes` presenting `Authorization: AAuth <token>`, signed by `peer` with the
/// agent token; the covered components it chose.
fn session_request(peer: Peer, launcher: &std::path::PathBuf, rig: &Rig, token: &str) -> (Request<Body>, Vec<String>) {
    session_request_covering(peer, launcher, rig, token, Vec::new())
}

/// [`session_request`], asking the peer to cover `components` too.
fn session_request_covering(
    peer: Peer,
    launcher: &std::path::PathBuf,
    rig: &Rig,
    token: &str,
    components: Vec<&'static str>,
) -> (Request<Body>, Vec<String>) {
    let mut sign = SignRequest::get("/notes", Scheme::Jwt(agent_token(rig)), rig.now());
    sign.headers = json!({ "authorization": format!("AAuth {token}") });
    sign.components = components;
    let signed = peer.run(launcher, "sign", &sign.to_json());
    let covered = signed["covered_components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (signed_request("GET", &sign.url, &signed["headers"], None), covered)
}

/// The exchange up to the session token, every agent step taken by aauth 0.5.0: its first
/// request declares `interaction` (the value built by the library), its poller follows
/// the `202` and signs the poll, and it reads `AAuth-Access` from the pending URL's `200`.
async fn v05_session(v05: &std::path::PathBuf, rig: &Rig) -> String {
    let mut first = SignRequest::get("/notes", Scheme::Jwt(agent_token(rig)), rig.now()).to_json();
    first["capabilities"] = json!(["interaction"]);
    let signed = Peer::V05.run(v05, "sign", &first);
    assert_eq!(signed["headers"]["aauth-capabilities"], "interaction");
    let started = rig
        .send(signed_request(
            "GET",
            &format!("{RESOURCE}/notes"),
            &signed["headers"],
            None,
        ))
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let (location, code) = pending_of(&started);
    let initial = scripted(started).await;

    // The agent waits Retry-After, then the library polls.
    rig.app.clock.advance(5);
    let polled = follow(v05, rig, &initial, &[], rig.now());
    assert_eq!(polled["done"], false, "{polled}");
    assert_eq!(
        polled["interactions"],
        json!([[format!("{INTERACTION_URL}?code={code}"), code]]),
        "the library sends the person to the interaction URL with the code"
    );
    assert_eq!(polled["sleeps"], json!([5]), "it honours Retry-After");
    let poll = &polled["gets"][0];
    assert_eq!(poll["url"], location, "it polls the resource's pending URL");

    // The person opens what the library was told and approves, through the hook.
    let asked = rig
        .app
        .aauth
        .interaction(&code)
        .await
        .expect("the code the library relays");
    assert_eq!(asked.scopes, ["data.read"]);
    assert!(asked.agent.as_deref().unwrap().contains(AGENT_ID));
    assert!(decide(&rig.app.aauth, &code, Choice::Approve("acct-v05".into())).await);

    let approved = rig.send(signed_request("GET", &location, &poll["headers"], None)).await;
    assert_eq!(approved.status(), StatusCode::OK);
    let done = follow(v05, rig, &initial, &[scripted(approved).await], rig.now());
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(done["success"], true, "{done}");
    assert_eq!(done["status_code"], 200);
    assert_eq!(done["gets"][0], *poll, "the replay signs the same poll");
    done["aauth_access"]
        .as_str()
        .unwrap_or_else(|| panic!("AAuth-Access read from the poller's response: {done}"))
        .to_owned()
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_follows_the_interaction_and_its_session_request_covering_authorization_is_served() {
    let v05 = Peer::V05.launcher_path();
    let rig = Rig::new();
    let token = v05_session(&v05, &rig).await;
    assert_eq!(rig.calls(), 0, "nothing served before the session");

    let (request, covered) = session_request(Peer::V05, &v05, &rig, &token);
    assert!(
        covered.iter().any(|c| c == "authorization"),
        "aauth-signing 0.2.0 covers authorization on its own: {covered:?}"
    );
    let served = rig.send(request).await;
    assert_eq!(served.status(), StatusCode::OK);
    let body = body_json(served).await;
    assert_eq!(body["account"], "acct-v05");
    assert_eq!(body["scopes"], json!(["data.read"]));
    assert_eq!(rig.calls(), 1);
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_reports_a_denied_interaction_as_denied() {
    let v05 = Peer::V05.launcher_path();
    let rig = Rig::new();
    let mut first = SignRequest::get("/notes", Scheme::Jwt(agent_token(&rig)), rig.now()).to_json();
    first["capabilities"] = json!(["interaction"]);
    let signed = Peer::V05.run(&v05, "sign", &first);
    let started = rig
        .send(signed_request(
            "GET",
            &format!("{RESOURCE}/notes"),
            &signed["headers"],
            None,
        ))
        .await;
    let (location, code) = pending_of(&started);
    let initial = scripted(started).await;
    rig.app.clock.advance(5);
    let polled = follow(&v05, &rig, &initial, &[], rig.now());
    assert!(decide(&rig.app.aauth, &code, Choice::Deny).await);
    let denied = rig
        .send(signed_request("GET", &location, &polled["gets"][0]["headers"], None))
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let done = follow(&v05, &rig, &initial, &[scripted(denied).await], rig.now());
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(done["success"], false, "{done}");
    assert_eq!(done["error"], "denied", "{done}");
    assert_eq!(done["aauth_access"], Value::Null, "no session for a denial");
    assert_eq!(rig.calls(), 0);
}

#[cfg_attr(
    any(skip_peer_v05, skip_peer_v03),
    ignore = "interop peers peer-v05 / peer-v03 (PyPI aauth 0.5.0 / 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_presenting_the_session_without_covering_authorization_is_invalid_input() {
    let (v05, v03) = (Peer::V05.launcher_path(), Peer::V03.launcher_path());
    let rig = Rig::new();
    let token = v05_session(&v05, &rig).await;

    let (request, covered) = session_request(Peer::V03, &v03, &rig, &token);
    assert!(
        !covered.iter().any(|c| c == "authorization"),
        "aauth-signing 0.1.2 never covers authorization: {covered:?}"
    );
    let response = rig.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["signature-error"],
        r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "authorization")"#,
        "the components a session request must cover"
    );
    assert_eq!(body_json(response).await["error"], "invalid_input");
    assert_eq!(rig.calls(), 0, "the handler must not run");

    // The same session, covered by 0.5.0's signer, is served: only the coverage differed.
    let (request, _) = session_request(Peer::V05, &v05, &rig, &token);
    assert_eq!(rig.send(request).await.status(), StatusCode::OK);
}

#[cfg_attr(
    any(skip_peer_v05, skip_peer_js),
    ignore = "interop peers peer-v05 / peer-js (PyPI aauth 0.5.0, npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn hellocoop_2_2_0_presenting_the_session_is_served_only_when_told_to_cover_authorization() {
    let (v05, js) = (Peer::V05.launcher_path(), Peer::Js.launcher_path());
    let rig = Rig::new();
    let token = v05_session(&v05, &rig).await;

    let (request, covered) = session_request(Peer::Js, &js, &rig, &token);
    assert!(!covered.iter().any(|c| c == "authorization"), "{covered:?}");
    let response = rig.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["signature-error"],
        r#"error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "authorization")"#,
        "the components a session request must cover"
    );
    assert_eq!(rig.calls(), 0, "the handler must not run");

    let (request, covered) = session_request_covering(Peer::Js, &js, &rig, &token, vec!["authorization"]);
    assert!(covered.iter().any(|c| c == "authorization"), "{covered:?}");
    let served = rig.send(request).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(body_json(served).await["account"], "acct-v05");
    assert_eq!(rig.calls(), 1);
}

#[cfg_attr(
    skip_peer_v03,
    ignore = "interop peer peer-v03 (PyPI aauth 0.3.4) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_3_4_polls_our_interaction_without_prompting_the_person() {
    // Its poller reads `requirement` and `code` from a JSON body that repeats them; ours
    // carries them in AAuth-Requirement only, with `{"status":"pending"}` as the body
    // (which keeps its unguarded `response.json()` from failing).
    let v03 = Peer::V03.launcher_path();
    let rig = Rig::new();
    let mut first = SignRequest::get("/notes", Scheme::Jwt(agent_token(&rig)), rig.now()).to_json();
    first["capabilities"] = json!(["interaction"]);
    let signed = Peer::V03.run(&v03, "sign", &first);
    let started = rig
        .send(signed_request(
            "GET",
            &format!("{RESOURCE}/notes"),
            &signed["headers"],
            None,
        ))
        .await;
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let (location, _) = pending_of(&started);

    rig.app.clock.advance(5);
    let follow = |responses: &[Value]| {
        Peer::V03.run(
            &v03,
            "follow-pending",
            &json!({ "pending_url": location, "responses": responses, "jwt": agent_token(&rig),
                     "private_jwk": agent_private_jwk(), "created": rig.now() }),
        )
    };
    let polled = follow(&[]);
    let waiting = rig
        .send(signed_request("GET", &location, &polled["gets"][0]["headers"], None))
        .await;
    assert_eq!(waiting.status(), StatusCode::ACCEPTED, "its poll is accepted");
    assert!(
        waiting.headers()["aauth-requirement"]
            .to_str()
            .unwrap()
            .starts_with("requirement=interaction;")
    );
    let replayed = follow(&[scripted(waiting).await]);
    assert_eq!(replayed["done"], false, "{replayed}");
    assert_eq!(replayed["sleeps"], json!([5]), "it honours Retry-After: {replayed}");
    assert_eq!(
        replayed["gets"].as_array().unwrap().len(),
        2,
        "and polls again: {replayed}"
    );
    assert_eq!(
        replayed["interactions"],
        json!([]),
        "but never sends the person: {replayed}"
    );
    assert_eq!(rig.calls(), 0);
}

// ---- the revocation endpoint ---------------------------------------------------------------

const REVOKE: &str = "/aauth/revoke";

/// A resource trusting [`AS`], with the revocation endpoint mounted.
fn revocation_resource() -> Harness {
    let (agent, access, provider) = (
        support::fixtures::agent(),
        support::fixtures::access_server(),
        support::fixtures::agent_provider(),
    );
    let resolver = StaticResolver::new()
        .with_key(AS, engine::dwk::ACCESS, access.public_jwk())
        .with_key(AP, engine::dwk::AGENT, provider.public_jwk())
        .with_key(AP, engine::dwk::AGENT, agent.public_jwk());
    Harness::with(|b| b.key_resolver(resolver).revocation_endpoint(REVOKE))
}

/// The private JWK of a fixture issuer's key seed.
fn private_jwk(seed: [u8; 32]) -> Value {
    use base64::Engine;
    let x = tower_aauth::testing::TestAgent::from_seed(seed)
        .public_jwk()
        .x()
        .to_owned();
    json!({ "kty": "OKP", "crv": "Ed25519", "x": x,
            "d": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seed) })
}

/// What `sign-revocation` / `revocation-outcome` need to act as the access server
/// (seed `[2; 32]`, kid `as-key-1`, `aauth-access.json`) revoking `jti`.
fn as_revocation(jti: &str, exp: u64) -> Value {
    json!({
        "endpoint": format!("{RESOURCE}{REVOKE}"), "jti": jti, "exp": exp,
        "private_jwk": private_jwk([2; 32]), "issuer": AS, "kid": "as-key-1",
        "dwk": engine::dwk::ACCESS, "created": NOW,
    })
}

fn revocation_post(signed: &Value) -> Request<Body> {
    signed_request(
        "POST",
        &format!("{RESOURCE}{REVOKE}"),
        &signed["headers"],
        Some(signed["body"].as_str().unwrap().to_owned()),
    )
}

/// aauth 0.5.0's `send_revocation` verdict on `response`.
async fn outcome(v05: &std::path::PathBuf, input: &Value, response: http::Response<Body>) -> Value {
    let mut input = input.clone();
    input["response"] = scripted(response).await;
    let judged = Peer::V05.run(v05, "revocation-outcome", &input);
    assert_eq!(judged["posts"], json!([format!("{RESOURCE}{REVOKE}")]));
    judged["verdict"].clone()
}

fn revoked(h: &Harness, jti: &str) -> bool {
    h.aauth.revocations().snapshot().contains(&Revoked::Jti {
        issuer: AS.to_owned(),
        jti: jti.to_owned(),
    })
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_sign_revocation_request_is_accepted_and_the_token_is_refused_from_then_on() {
    let v05 = Peer::V05.launcher_path();
    let h = revocation_resource();
    let token = h.auth_token("data.read");
    let (_, claims) = decode(&token);
    let (jti, exp) = (claims["jti"].as_str().unwrap(), claims["exp"].as_u64().unwrap());
    let before = SignRequest::get("/data", Scheme::Jwt(token.clone()), NOW).sign(Peer::V05, &v05);
    assert_eq!(h.send(before).await.status(), StatusCode::OK);

    let input = as_revocation(jti, exp);
    let signed = Peer::V05.run(&v05, "sign-revocation", &input);
    assert_eq!(signed["body"], format!(r#"{{"jti":"{jti}","exp":{exp}}}"#));
    let calls = h.calls();
    let response = h.send(revocation_post(&signed)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.calls(), calls, "the layer answers the endpoint itself");
    assert!(revoked(&h, jti));
    assert_eq!(
        outcome(&v05, &input, response).await,
        json!({}),
        "the library reads success"
    );

    let after = SignRequest::get("/data", Scheme::Jwt(token), NOW + 1).sign(Peer::V05, &v05);
    let refused = h.send(after).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["signature-error"], "error=revoked_jwt");
    assert_eq!(h.calls(), calls, "the handler must not run");
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_revocation_with_a_changed_body_is_invalid_signature_and_revokes_nothing() {
    let v05 = Peer::V05.launcher_path();
    let h = revocation_resource();
    let input = as_revocation("at-1", NOW + 600);
    let signed = Peer::V05.run(&v05, "sign-revocation", &input);
    let (parts, _) = revocation_post(&signed).into_parts();
    let tampered = Request::from_parts(parts, Body::from(format!(r#"{{"jti":"at-2","exp":{}}}"#, NOW + 600)));
    let response = h.send(tampered).await;
    assert!(h.aauth.revocations().snapshot().is_empty(), "nothing revoked");
    assert_eq!(
        outcome(&v05, &input, h.send(revocation_post(&signed)).await).await,
        json!({}),
        "control: the untouched request is accepted"
    );
    assert_refused(&h, response, "invalid_signature").await;
}

#[cfg_attr(
    skip_peer_v05,
    ignore = "interop peer peer-v05 (PyPI aauth 0.5.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn aauth_0_5_0_revocation_by_a_server_we_do_not_trust_is_unsupported_iss_and_the_library_reads_it_so() {
    let v05 = Peer::V05.launcher_path();
    let h = revocation_resource();
    // The agent provider (seed [3; 32], kid ap-key-1) signs as a server but issued no
    // token this resource accepts from a server.
    let mut input = as_revocation("at-1", NOW + 600);
    input["private_jwk"] = private_jwk([3; 32]);
    input["issuer"] = json!(AP);
    input["kid"] = json!("ap-key-1");
    input["dwk"] = json!(engine::dwk::AGENT);
    let signed = Peer::V05.run(&v05, "sign-revocation", &input);
    let response = h.send(revocation_post(&signed)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(h.aauth.revocations().snapshot().is_empty(), "nothing revoked");
    assert_eq!(h.calls(), 0);
    assert_eq!(
        outcome(&v05, &input, response).await,
        json!({ "error": "revocation_unsupported" }),
        "the library's verdict on 403 unsupported_iss"
    );
}
