//! The policy's second line: findings of an independent attacker's review of the policy
//! layer (`REVIEW-nn`), each kept as the specification of its fix — bindings that last as
//! long as the grants a key presents, bindings pinned when a policy names their agent
//! later, one agent never locked out of its own key by its own credentials, ceilings
//! that reach `authorization_details`, and policy entries that could never match refused.

mod support;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use http::{Response, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use tower_aauth::engine;
use tower_aauth::policy::{CeilingSet, MemoryAgentBindings, Revoked, ScopeCeilings};
use tower_aauth::testing::{KeySource, SignOptions, TestAgent, TestIssuer};
use tower_aauth::{Profile, testing::ManualClock, wire};

use support::attack::*;
use support::policy::*;

async fn body_text(response: Response<Body>) -> String {
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    String::from_utf8(body.to_vec()).unwrap()
}

/// An auth token from the harness's access server for `key`, issued at `iat`.
fn auth_token_at(h: &Harness, key: &TestAgent, scope: &str, iat: u64) -> KeySource {
    let mut claims = h.access_server.auth_claims(RESOURCE, &key.public_jwk(), scope, iat);
    claims["jti"] = format!("at-{iat}-{}", scope.replace(' ', "_")).into();
    KeySource::Jwt(h.access_server.sign(engine::typ::AUTH, &claims))
}

// ---------------------------------------------------------------------------------------
// REVIEW-01: the key binding is never extended by what the layer attributes through it.
// ---------------------------------------------------------------------------------------

/// A revoked agent stays revoked with a key it was seen using, even after its binding's
/// nominal lifetime, when every token it presents was obtained through a resource token
/// this resource minted *for that agent* (step-up attributed through the binding).
///
/// t=NOW       agent token (exp NOW+3600)            → binding until NOW+7200
/// t=NOW+6000  auth token, too few scopes            → step-up minted for agent A's key
/// t=NOW+6000  AS issues the stepped-up auth token     (exp NOW+9600, honestly)
/// t=NOW+6500  resource revokes agent A
/// t=NOW+7300  A presents that auth token            → served (expected: revoked_jwt)
#[tokio::test]
async fn review_01_a_grant_stepped_up_for_an_agent_keeps_its_key_bound_to_it() {
    let clock = ManualClock::new(NOW);
    let h = {
        let clock = clock.clone();
        harness(move |b| b.clock(clock))
    };
    let a = &h.agent;
    let identity = KeySource::Jwt(h.agent_provider.agent_token(AGENT, &a.public_jwk(), NOW));
    let response = send_guarded(
        &h,
        h.aauth.require_verified_agent(),
        signed_by(a, "GET", "/whoami", &identity, NOW),
    )
    .await;
    assert_eq!(body_text(response).await, format!("{AGENT} by {AP}"));

    // Later, with an auth token (names no agent), attributed through the binding.
    clock.set(NOW + 6000);
    let read = auth_token_at(&h, a, "data.read", NOW + 3000);
    let request = signed_by(a, "GET", "/data", &read, NOW + 6000);
    let response = send_guarded(&h, h.aauth.require_scopes(["data.write"]), request).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a step-up for the bound agent"
    );
    assert!(
        response.headers()[wire::AAUTH_REQUIREMENT]
            .to_str()
            .unwrap()
            .contains("resource-token"),
        "the resource minted a resource token for agent A's key"
    );
    // The access server honours it: a fresh grant for the same key.
    let stepped_up = auth_token_at(&h, a, "data.read data.write", NOW + 6000);

    clock.set(NOW + 6500);
    h.aauth.revocations().revoke(Revoked::Agent(agent(AGENT))).unwrap();
    // Control: right now the revocation reaches the key.
    h.calls.store(0, Ordering::SeqCst);
    let response = h.send(signed_by(a, "GET", "/data", &stepped_up, NOW + 6500)).await;
    Attack::from_response(&h, response).refused("revoked_jwt").await;

    // The grant this resource itself started is still valid after the binding ended.
    clock.set(NOW + 7300);
    h.calls.store(0, Ordering::SeqCst);
    let response = h.send(signed_by(a, "GET", "/data", &stepped_up, NOW + 7300)).await;
    Attack::from_response(&h, response).refused("revoked_jwt").await;
}

/// Same root cause, via the "extend only past half-life" shortcut: an agent re-presenting a
/// (short-lived) agent token does not move its binding's end, so the auth token it then
/// obtains outlives the binding.
///
/// t=NOW        agent token exp NOW+600              → binding until NOW+4200
/// t=NOW+1000   new agent token exp NOW+1600          → would be NOW+5200, kept at NOW+4200
/// t=NOW+1000   auth token (exp NOW+4600)
/// t=NOW+4300   that auth token, agent revoked        → served (expected: revoked_jwt)
#[tokio::test]
async fn review_01_a_fresh_agent_token_extends_its_keys_binding() {
    let clock = ManualClock::new(NOW);
    let h = {
        let clock = clock.clone();
        harness(move |b| b.clock(clock))
    };
    let a = &h.agent;
    let short = |iat: u64| {
        let claims = json!({
            "iss": AP, "dwk": engine::dwk::AGENT, "sub": AGENT, "jti": format!("agt-{iat}"),
            "cnf": {"jwk": a.public_jwk().to_json()}, "iat": iat, "exp": iat + 600,
        });
        KeySource::Jwt(h.agent_provider.sign(engine::typ::AGENT, &claims))
    };
    let whoami = |source: &KeySource, at: u64| signed_by(a, "GET", "/whoami", source, at);
    assert_eq!(h.send(whoami(&short(NOW), NOW)).await.status(), StatusCode::OK);
    clock.set(NOW + 1000);
    assert_eq!(
        h.send(whoami(&short(NOW + 1000), NOW + 1000)).await.status(),
        StatusCode::OK
    );
    let grant = auth_token_at(&h, a, "data.read", NOW + 1000);
    h.aauth.revocations().revoke(Revoked::Agent(agent(AGENT))).unwrap();
    clock.set(NOW + 4300);
    h.calls.store(0, Ordering::SeqCst);
    let response = h.send(signed_by(a, "GET", "/data", &grant, NOW + 4300)).await;
    Attack::from_response(&h, response).refused("revoked_jwt").await;
}

// ---------------------------------------------------------------------------------------
// REVIEW-02: pinning is decided at bind time only.
// ---------------------------------------------------------------------------------------

/// An agent revoked by a hot reload *after* its key was bound keeps an ordinary,
/// evictable binding. A flood of throwaway agents (any provider the attacker runs) pushes
/// it out, and the revoked agent's auth token is served again.
#[tokio::test]
async fn review_02_a_binding_made_before_its_agent_was_revoked_survives_a_flood() {
    let h = harness(|b| b.agent_bindings(MemoryAgentBindings::new(32 * 1024)));
    let a = &h.agent;
    let identity = KeySource::Jwt(h.agent_provider.agent_token(AGENT, &a.public_jwk(), NOW));
    assert_eq!(
        h.send(signed_by(a, "GET", "/whoami", &identity, NOW)).await.status(),
        StatusCode::OK
    );
    // The operator revokes the agent (hot reload, as documented).
    h.aauth
        .revocations()
        .reload_json(br#"{"agents": ["aauth:assistant@agent.example"]}"#)
        .unwrap();
    let grant = auth_token_at(&h, a, "data.read", NOW);
    // Control: refused now.
    h.calls.store(0, Ordering::SeqCst);
    let response = h.send(signed_by(a, "GET", "/data", &grant, NOW)).await;
    Attack::from_response(&h, response).refused("revoked_jwt").await;

    // Anyone with a provider of their own floods the binding store.
    let evil = evil_provider();
    for n in 0..2_000u32 {
        let mut seed = [9u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let throwaway = TestAgent::from_seed(seed);
        let token = evil.agent_token(&format!("aauth:flood{n}@evil.example"), &throwaway.public_jwk(), NOW);
        for created in 0..2 {
            let request = signed_by(
                &throwaway,
                "GET",
                "/whoami",
                &KeySource::Jwt(token.clone()),
                NOW - created,
            );
            assert_eq!(h.send(request).await.status(), StatusCode::OK);
        }
    }
    h.calls.store(0, Ordering::SeqCst);
    let response = h.send(signed_by(a, "GET", "/data", &grant, NOW - 1)).await;
    Attack::from_response(&h, response).refused("revoked_jwt").await;
}

// ---------------------------------------------------------------------------------------
// REVIEW-03: one agent, two identities — legitimate agents locked out.
// ---------------------------------------------------------------------------------------

/// The demo generation named an agent by its provider's URL (`agent` claim of the auth
/// token) while its agent token's `sub` was a delegate id (digest §3.1). The layer turns
/// the two into different `AgentId`s, so the same agent, presenting its own auth token
/// with the key its agent token was bound to, is refused as "another agent".
#[tokio::test]
async fn review_03_legacy_a_demo_agent_presenting_its_auth_token_after_its_agent_token_is_served() {
    let h = harness(|b| b.profile(Profile::Legacy));
    let a = &h.agent;
    let mut jwk = a.public_jwk().to_json();
    jwk.as_object_mut().unwrap().remove("alg");
    let delegate = h.agent_provider.sign_with_alg(
        engine::typ::LEGACY_AGENT,
        engine::alg::EDDSA,
        &json!({ "iss": AP, "sub": "delegate-1", "cnf": { "jwk": jwk }, "iat": NOW, "exp": NOW + 3600 }),
    );
    let options = SignOptions {
        legacy_signature_key: true,
        ..SignOptions::default()
    };
    let mut first = get("/data");
    a.sign_with(&mut first, &KeySource::Jwt(delegate), NOW, &options);
    assert_eq!(
        h.send(first).await.status(),
        StatusCode::OK,
        "the delegate's agent token"
    );
    // The same agent's auth token, as its auth server issued it (`agent`: provider URL).
    let auth = h
        .access_server
        .legacy_auth_token(RESOURCE, &a.public_jwk(), AP, "data.read", NOW);
    let mut second = get("/data");
    a.sign_with(&mut second, &KeySource::Jwt(auth), NOW - 1, &options);
    let response = h.send(second).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.headers().get("signature-error")
    );
}

/// A pre-draft-11 auth token from a trusted access server names the agent
/// `aauth:bot@localhost`, the same agent an agent token from its development provider at
/// `http://localhost:8001` names (loopback providers are admitted with
/// `allow_http_loopback`, and `provider_names` accepts any scheme and port for them). `FromStr` implies the provider `https://domain`,
/// the token path keeps `iss` as is: two identities for one agent, and the agent is locked
/// out of its own key.
#[tokio::test]
async fn review_03_a_loopback_agent_is_not_locked_out_by_its_own_auth_token() {
    const PORTED: &str = "http://localhost:8001";
    let provider = TestIssuer::new(PORTED, [11; 32], "ported-key-1");
    let base = Harness::new();
    let keys = resolver(&base).with_key(PORTED, engine::dwk::AGENT, provider.public_jwk());
    let h = Harness::with(move |b| {
        b.key_resolver(keys)
            .profile(Profile::Both)
            .dangerous()
            .allow_http_loopback()
    });
    let a = &h.agent;
    let identity = KeySource::Jwt(provider.agent_token("aauth:bot@localhost", &a.public_jwk(), NOW));
    let response = send_guarded(
        &h,
        h.aauth.require_verified_agent(),
        signed_by(a, "GET", "/whoami", &identity, NOW),
    )
    .await;
    assert_eq!(body_text(response).await, format!("aauth:bot@localhost by {PORTED}"));
    let mut claims = h.access_server.auth_claims(RESOURCE, &a.public_jwk(), "data.read", NOW);
    let object = claims.as_object_mut().unwrap();
    object.remove("ps");
    object.insert("agent".into(), json!("aauth:bot@localhost"));
    let auth = KeySource::Jwt(h.access_server.sign(engine::typ::AUTH, &claims));
    let response = h.send(signed_by(a, "GET", "/data", &auth, NOW - 1)).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{:?}",
        response.headers().get("signature-error")
    );
}

/// A ceiling (or revocation) document can only name `aauth:local@domain` as the pair
/// `(https://domain, …)`. An agent whose provider is a loopback `http://localhost:port`
/// (admitted in development, and accepted by `provider_names` for exactly that reason) can
/// never be named: the per-agent ceiling is accepted and silently caps nothing.
#[tokio::test]
async fn review_03_a_ceiling_document_naming_a_loopback_agent_reaches_it() {
    const PORTED: &str = "http://localhost:8001";
    let provider = TestIssuer::new(PORTED, [11; 32], "ported-key-1");
    let base = Harness::new();
    let keys = resolver(&base).with_key(PORTED, engine::dwk::AGENT, provider.public_jwk());
    let ceilings = ScopeCeilings::new();
    ceilings
        .reload_json(br#"{"agents": {"aauth:bot@localhost": "data.read"}}"#)
        .unwrap();
    let h = Harness::with(move |b| {
        let mut b = b.key_resolver(keys).scope_ceilings(ceilings);
        b = b.dangerous().allow_http_loopback();
        b
    });
    let a = &h.agent;
    let identity = KeySource::Jwt(provider.agent_token("aauth:bot@localhost", &a.public_jwk(), NOW));
    assert_eq!(
        h.send(signed_by(a, "GET", "/whoami", &identity, NOW)).await.status(),
        StatusCode::OK
    );
    h.calls.store(0, Ordering::SeqCst);
    let grant = auth_token_at(&h, a, "data.read data.write", NOW);
    let request = signed_by(a, "POST", "/data", &grant, NOW);
    let response = send_guarded(&h, h.aauth.require_scopes(["data.write"]), request).await;
    let code = Attack::from_response(&h, response).forbidden().await;
    assert_eq!(code, "scope_above_ceiling");
}

/// An agent named by a ceiling (so its bindings are pinned, never evicted) may run as
/// many live keys as the store keeps for one agent — thousands of instances or sessions —
/// and only the key past that bound is refused, saying so, rather than being bound as an
/// evictable binding that a flood could push out.
#[tokio::test]
async fn review_03_a_capped_agent_runs_thousands_of_keys_and_the_one_past_the_bound_is_refused_as_such() {
    let ceilings = ScopeCeilings::from_set(CeilingSet::new().agent(agent(AGENT), "data.read").unwrap());
    let h = harness(|b| b.scope_ceilings(ceilings));
    let bound = MemoryAgentBindings::MAX_KEYS_PER_PINNED_AGENT as u32;
    for n in 0..=bound {
        let mut seed = [5u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let instance = TestAgent::from_seed(seed);
        let token = h.agent_provider.agent_token(AGENT, &instance.public_jwk(), NOW);
        let response = h
            .send(signed_by(&instance, "GET", "/whoami", &KeySource::Jwt(token), NOW))
            .await;
        if n < bound {
            assert_eq!(response.status(), StatusCode::OK, "instance {n}");
        } else {
            h.calls.store(0, Ordering::SeqCst);
            Attack::from_response(&h, response)
                .refused_because("invalid_jwt", "the agent holds too many live keys")
                .await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// REVIEW-04: ceilings do not reach `authorization_details`.
// ---------------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct Trade {
    #[allow(dead_code)]
    symbol: String,
    #[allow(dead_code)]
    quantity: u64,
}

/// A key (or agent, or default) ceiling of `data.read` is "the most an agent may use,
/// whatever a token grants" — yet a grant's `authorization_details` pass every ceiling
/// untouched: the capped agent's auth token approving a trade executes it on a
/// `require_detail` route. (`narrow_grant` only filters `scope`; `check_ceilings` only
/// collects `Requirement::Scopes`.)
#[tokio::test]
async fn review_04_a_capped_agent_cannot_execute_a_detail_grant_above_its_ceiling() {
    let base = Harness::new();
    let set = CeilingSet::new().key(base.agent.thumbprint(), "data.read").unwrap();
    let h = harness(move |b| b.scope_ceilings(ScopeCeilings::from_set(set)));
    let a = &h.agent;
    let mut claims = h.access_server.auth_claims(RESOURCE, &a.public_jwk(), "data.read", NOW);
    claims["authorization_details"] = json!([{"type": "trade", "symbol": "ACME", "quantity": 1_000_000}]);
    let grant = KeySource::Jwt(h.access_server.sign(engine::typ::AUTH, &claims));
    let calls = h.calls.clone();
    let router = Router::new()
        .route(
            "/trade",
            axum::routing::post(move || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { "executed" }
            })
            .route_layer(
                h.aauth
                    .require_detail("trade", |_: &Trade, _: &http::request::Parts| true),
            ),
        )
        .layer(h.aauth.layer());
    let response = router
        .oneshot(signed_by(a, "POST", "/trade", &grant, NOW))
        .await
        .unwrap();
    assert_ne!(
        response.status(),
        StatusCode::OK,
        "a trade above the ceiling was executed"
    );
    assert_eq!(h.calls(), 0);
}

// ---------------------------------------------------------------------------------------
// REVIEW-05: entries that can never match are accepted ("revokes nothing" silently).
// ---------------------------------------------------------------------------------------

/// `Revoked::validate` exists because "a malformed entry would silently revoke nothing",
/// but an agent, person issuer or jti issuer is only checked to be `http(s)://` + printable
/// ASCII. `https://agent.example/` (trailing slash), `https://Agent.example` or
/// `https://agent.example:443` parse, are counted, and can never equal an identifier the
/// layer admits (`https://` + lower-case DNS name): the operator believes the agent is
/// revoked. The same goes for ceiling documents.
#[test]
fn review_05_a_revocation_or_ceiling_entry_that_can_never_match_is_an_error() {
    use tower_aauth::policy::RevocationSet;
    for never in [
        "https://agent.example/",
        "https://Agent.example",
        "https://agent.example:443",
        "http://agent.example",
    ] {
        let document = format!(r#"{{"agents": ["{never}"]}}"#);
        assert!(
            RevocationSet::from_json(document.as_bytes()).is_err(),
            "revocation of {never} accepted, revokes nothing"
        );
        let document = format!(r#"{{"persons": [{{"iss": "{never}", "sub": "user-1"}}]}}"#);
        assert!(
            RevocationSet::from_json(document.as_bytes()).is_err(),
            "person issuer {never} accepted, revokes nothing"
        );
        let document = format!(r#"{{"agents": {{"{never}": "data.read"}}}}"#);
        assert!(
            CeilingSet::from_json(document.as_bytes()).is_err(),
            "ceiling for {never} accepted, caps nothing"
        );
    }
}
