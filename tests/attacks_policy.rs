//! Attack catalogue §1.15 — policy: whose identity, whose authority, what capacity.
//!
//! One test per row, named by its ID. Each refusal asserts the status, the exact
//! `Signature-Error` code where there is one, and that the handler did not run.

mod support;

#[allow(unused_imports)]
use support::attack::*;

// === POL-01 … POL-05: identity, binding, ceilings, consent ===
// (section: identity)

mod identity {
    use std::sync::atomic::Ordering;

    use axum::Router;
    use axum::routing::post;
    use http::StatusCode;
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use tower_aauth::Scopes;
    use tower_aauth::engine;
    use tower_aauth::guard::{Decision, Requirement};
    use tower_aauth::policy::{AgentId, CeilingSet, PersonId, Revoked, ScopeCeilings};
    use tower_aauth::testing::KeySource;
    use tower_aauth::wire;

    use super::*;
    use crate::support::policy::*;

    fn reset(h: &Harness) {
        h.calls.store(0, Ordering::SeqCst);
    }

    #[tokio::test]
    async fn pol_01_an_agent_token_naming_another_providers_agent_is_invalid_jwt() {
        let h = harness(|b| b);
        let impersonation = agent_token(&h, &evil_provider(), "aauth:payments-bot@agent.example");
        let response = h.send(signed(&h, "GET", "/whoami", &impersonation, NOW)).await;
        Attack::from_response(&h, response).refused("invalid_jwt").await;
    }

    #[tokio::test]
    async fn pol_01_a_sub_agent_under_another_providers_parent_is_invalid_jwt() {
        let h = harness(|b| b);
        let evil = evil_provider();
        let mut claims: Value = json!({
            "iss": EVIL, "dwk": engine::dwk::AGENT, "sub": "aauth:helper@evil.example",
            "parent_agent": "aauth:payments-bot@agent.example", "jti": "agt-1",
            "cnf": {"jwk": h.agent.public_jwk().to_json()}, "iat": NOW, "exp": NOW + 3600,
        });
        let token = evil.sign(engine::typ::AGENT, &claims);
        let response = h.send(signed(&h, "GET", "/whoami", &KeySource::Jwt(token), NOW)).await;
        Attack::from_response(&h, response).refused("invalid_jwt").await;
        // Control: the same sub-agent under its own provider's parent is served.
        claims["parent_agent"] = "aauth:orchestrator@evil.example".into();
        let token = evil.sign(engine::typ::AGENT, &claims);
        let (status, _) = whoami(&h, &KeySource::Jwt(token), NOW).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn pol_01_the_same_local_name_at_another_provider_is_another_agent() {
        let h = harness(|b| b);
        let (status, who) = whoami(
            &h,
            &agent_token(&h, &evil_provider(), "aauth:payments-bot@evil.example"),
            NOW,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(who, "aauth:payments-bot@evil.example by https://evil.example");
    }

    #[tokio::test]
    async fn pol_01_a_ceiling_for_an_agent_does_not_reach_a_namesake_elsewhere() {
        // The ceiling names the agent by its pair; the parsed form implies its provider.
        let ceilings = CeilingSet::new().agent(agent(AGENT), "data.read").unwrap();
        assert!(ceilings.names(&AgentId::new(AP, AGENT).unwrap()));
        assert!(AgentId::new(EVIL, AGENT).is_err(), "no other provider can even name it");
    }

    #[tokio::test]
    async fn pol_02_a_capped_agent_switching_to_its_auth_token_stays_capped() {
        let ceilings = ScopeCeilings::from_set(CeilingSet::new().agent(agent(AGENT), "data.read").unwrap());
        let h = harness(|b| b.scope_ceilings(ceilings));
        // The agent shows who it is once.
        let (status, who) = whoami(&h, &agent_token(&h, &h.agent_provider, AGENT), NOW).await;
        assert_eq!(
            (status, who.as_str()),
            (StatusCode::OK, "aauth:assistant@agent.example by https://agent.example")
        );
        reset(&h);
        let minted = h.aauth.minted_resource_tokens();
        // Then presents an auth token (which names no agent) granting more.
        let response = write(&h, &auth_token(&h, "data.read data.write"), NOW).await;
        let code = Attack::from_response(&h, response).forbidden().await;
        assert_eq!(code, "scope_above_ceiling");
        assert_eq!(
            h.aauth.minted_resource_tokens(),
            minted,
            "no resource token above the ceiling"
        );
    }

    #[tokio::test]
    async fn pol_02_the_auth_token_of_a_capped_agent_serves_what_the_ceiling_allows() {
        let ceilings = ScopeCeilings::from_set(CeilingSet::new().agent(agent(AGENT), "data.read").unwrap());
        let h = harness(|b| b.scope_ceilings(ceilings));
        whoami(&h, &agent_token(&h, &h.agent_provider, AGENT), NOW).await;
        reset(&h);
        let guard = h.aauth.require_scopes(["data.read"]);
        let request = signed(&h, "GET", "/data", &auth_token(&h, "data.read data.write"), NOW);
        let response = send_guarded(&h, guard, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        assert_eq!(
            body, "aauth:assistant@agent.example by https://agent.example",
            "the agent is known"
        );
    }

    #[tokio::test]
    async fn pol_02_a_key_no_agent_was_seen_using_gets_the_default_ceiling() {
        let set = CeilingSet::new()
            .agent(agent("aauth:trusted@agent.example"), "data.read data.write")
            .unwrap()
            .default_ceiling("data.read")
            .unwrap();
        let h = harness(|b| b.scope_ceilings(ScopeCeilings::from_set(set)));
        let code = Attack::from_response(&h, write(&h, &auth_token(&h, "data.write"), NOW).await)
            .forbidden()
            .await;
        assert_eq!(code, "scope_above_ceiling");
    }

    #[tokio::test]
    async fn pol_02_a_bound_key_presented_as_another_agent_is_invalid_jwt() {
        let h = harness(|b| b);
        whoami(&h, &agent_token(&h, &h.agent_provider, AGENT), NOW).await;
        reset(&h);
        // The key's holder mints itself a second identity at a provider it runs.
        let second = agent_token(&h, &evil_provider(), "aauth:fresh@evil.example");
        let response = h.send(signed(&h, "GET", "/whoami", &second, NOW)).await;
        Attack::from_response(&h, response).refused("invalid_jwt").await;
    }

    #[tokio::test]
    async fn pol_02_a_bound_key_presented_as_a_jwks_uri_signer_is_invalid_key() {
        let h = harness(|b| b);
        whoami(&h, &agent_token(&h, &h.agent_provider, AGENT), NOW).await;
        reset(&h);
        // The provider publishes the same key: the key would become the server's agent.
        let signer = KeySource::agent_jwks(AP, "agent-key-1");
        let response = h.send(signed(&h, "GET", "/whoami", &signer, NOW)).await;
        Attack::from_response(&h, response)
            .refused_because("invalid_key", "the signing key belongs to another agent")
            .await;
    }

    #[tokio::test]
    async fn pol_03_a_revoked_agent_switching_to_its_auth_token_is_revoked_jwt() {
        let h = harness(|b| b);
        whoami(&h, &agent_token(&h, &h.agent_provider, AGENT), NOW).await;
        reset(&h);
        h.aauth.revocations().revoke(Revoked::Agent(agent(AGENT))).unwrap();
        for source in [auth_token(&h, "data.read"), KeySource::Hwk] {
            let response = h.send(signed(&h, "GET", "/data", &source, NOW)).await;
            let headers = Attack::from_response(&h, response).refused("revoked_jwt").await;
            assert!(
                headers.get(wire::AAUTH_REQUIREMENT).is_none(),
                "no grant helps a revoked agent"
            );
        }
    }

    #[tokio::test]
    async fn pol_03_a_revoked_jwks_uri_signer_is_revoked_with_its_auth_token() {
        let h = harness(|b| b);
        let signer = KeySource::agent_jwks(AP, "agent-key-1");
        assert_eq!(whoami(&h, &signer, NOW).await.0, StatusCode::OK);
        reset(&h);
        h.aauth.revocations().revoke(Revoked::Agent(agent(AP))).unwrap();
        let response = h
            .send(signed(&h, "GET", "/data", &auth_token(&h, "data.read"), NOW))
            .await;
        Attack::from_response(&h, response).refused("revoked_jwt").await;
    }

    fn wants_write() -> Requirement {
        Requirement::rule(|cx| {
            let granted = cx
                .verified
                .and_then(|v| v.token.as_deref())
                .is_some_and(|t| t.claims.scope.contains("data.write"));
            if granted {
                Decision::Allow
            } else {
                Decision::NeedAuth(Scopes::parse("data.write").unwrap())
            }
        })
    }

    #[tokio::test]
    async fn pol_04_scopes_a_rule_asks_for_meet_the_ceiling_before_any_minting() {
        let h = Harness::new();
        let key = h.agent.thumbprint();
        let set = CeilingSet::new().key(key, "data.read").unwrap();
        let h = harness(move |b| b.scope_ceilings(ScopeCeilings::from_set(set)));
        let minted = h.aauth.minted_resource_tokens();
        // Four-party: any signature may be sent to the access server, but not for this.
        let guard = h.aauth.require(wants_write());
        let request = signed(&h, "POST", "/data", &agent_token(&h, &h.agent_provider, AGENT), NOW);
        let code = Attack::from_response(&h, send_guarded(&h, guard, request).await)
            .forbidden()
            .await;
        assert_eq!(code, "scope_above_ceiling");
        assert_eq!(h.aauth.minted_resource_tokens(), minted);
    }

    #[tokio::test]
    async fn pol_04_a_rule_reading_the_token_sees_only_scopes_under_the_ceiling() {
        let h = Harness::new();
        let set = CeilingSet::new().key(h.agent.thumbprint(), "data.read").unwrap();
        let h = harness(move |b| b.scope_ceilings(ScopeCeilings::from_set(set)));
        let guard = h.aauth.require(wants_write());
        let request = signed(&h, "POST", "/data", &auth_token(&h, "data.read data.write"), NOW);
        let code = Attack::from_response(&h, send_guarded(&h, guard, request).await)
            .forbidden()
            .await;
        assert_eq!(code, "scope_above_ceiling");
    }

    #[tokio::test]
    async fn pol_05_a_self_hosted_person_server_granting_itself_write_is_not_served() {
        let h = three_party(|b| b);
        let minted = h.aauth.minted_resource_tokens();
        let grant = ps_grant(&h, &self_hosted_ps(), "data.write", json!({}));
        let code = Attack::from_response(&h, write(&h, &grant, NOW).await)
            .forbidden()
            .await;
        assert_eq!(code, "grant_not_honoured");
        assert_eq!(
            h.aauth.minted_resource_tokens(),
            minted,
            "no step-up towards a PS we would not honour"
        );
    }

    #[derive(serde::Deserialize, serde::Serialize)]
    struct Trade {
        symbol: String,
        quantity: u64,
    }

    #[tokio::test]
    async fn pol_05_a_self_hosted_person_server_approving_a_huge_trade_is_not_served() {
        let h = three_party(|b| b);
        let grant = ps_grant(
            &h,
            &self_hosted_ps(),
            "",
            json!({"authorization_details": [{"type": "trade", "symbol": "ACME", "quantity": 1_000_000}]}),
        );
        let calls = h.calls.clone();
        let router = Router::new()
            .route(
                "/trade",
                post(move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { "executed" }
                })
                .route_layer(
                    h.aauth
                        .require_detail("trade", |_: &Trade, _: &http::request::Parts| true)
                        .step_up(|_| Some(json!({"symbol": "ACME", "quantity": 1_000_000}))),
                ),
            )
            .layer(h.aauth.layer());
        let response = router.oneshot(signed(&h, "POST", "/trade", &grant, NOW)).await.unwrap();
        let code = Attack::from_response(&h, response).forbidden().await;
        assert_eq!(code, "grant_not_honoured");
    }

    #[tokio::test]
    async fn pol_05_a_person_server_grant_naming_another_ps_is_invalid_jwt() {
        // A step-up would carry its `sub` to the person server it names.
        let h = three_party(|b| b);
        let grant = ps_grant(&h, &self_hosted_ps(), "data.write", json!({"ps": PS}));
        let response = write(&h, &grant, NOW).await;
        Attack::from_response(&h, response)
            .refused_because("invalid_jwt", "a person server's auth token names another ps")
            .await;
    }

    #[tokio::test]
    async fn pol_05_a_person_server_trusted_by_name_is_honoured() {
        let h = three_party(|b| b.person_server(SELF_PS));
        let grant = ps_grant(&h, &self_hosted_ps(), "data.write", json!({}));
        assert_eq!(write(&h, &grant, NOW).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn pol_05_a_grant_policy_decides_per_person() {
        let policy = |person: &PersonId, granted: &Scopes| {
            if person.issuer() == SELF_PS && person.subject() == "user-1" {
                granted.clone()
            } else {
                Scopes::default()
            }
        };
        let h = three_party(move |b| b.grant_policy(policy));
        let approved = ps_grant(&h, &self_hosted_ps(), "data.write", json!({}));
        assert_eq!(write(&h, &approved, NOW).await.status(), StatusCode::OK);
        reset(&h);
        let stranger = ps_grant(
            &h,
            &self_hosted_ps(),
            "data.write",
            json!({"sub": "user-2", "jti": "at-2"}),
        );
        let code = Attack::from_response(&h, write(&h, &stranger, NOW + 1).await)
            .forbidden()
            .await;
        assert_eq!(code, "grant_not_honoured");
    }

    #[tokio::test]
    async fn pol_05_honouring_any_person_server_is_an_explicit_choice() {
        let h = three_party(|b| b.dangerous().honour_any_person_server_grants());
        let grant = ps_grant(&h, &self_hosted_ps(), "data.write", json!({}));
        assert_eq!(write(&h, &grant, NOW).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn pol_05_a_person_token_from_any_person_server_still_identifies_the_person() {
        let h = three_party(|b| b);
        let token = self_hosted_ps().person_token(RESOURCE, &h.agent.public_jwk(), NOW);
        let guard = h.aauth.require_person();
        let request = signed(&h, "GET", "/data", &KeySource::Jwt(token), NOW);
        assert_eq!(send_guarded(&h, guard, request).await.status(), StatusCode::OK);
    }

    /// The example binary, built by `cargo test` next to this test's own binary.
    fn example(name: &str) -> std::path::PathBuf {
        let exe = std::env::current_exe().unwrap();
        let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
        dir.join("examples")
            .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
    }

    #[test]
    fn pol_05_the_example_refuses_a_three_party_start_without_a_person_server() {
        let output = std::process::Command::new(example("resource_server"))
            .env_remove("AAUTH_AUTH_SERVER")
            .env_remove("AAUTH_PERSON_SERVER")
            .env("AAUTH_ADDR", "127.0.0.1:0")
            .output()
            .expect("cargo test builds the examples");
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("AAUTH_PERSON_SERVER"), "{stderr}");
    }
}

// === POL-06: replay capacity ===
// (section: replay)

mod pol_06 {
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use http::{Request, Response, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;
    use tower_aauth::replay::{MemoryReplayStore, ReplayOptions};
    use tower_aauth::testing::{KeySource, TestAgent};
    use tower_aauth::{
        Error,
        guard::{Decision, Requirement},
    };

    use super::support::attack::*;
    use super::support::fixtures::copy;

    /// Far below the default so that a flood many times the capacity stays fast: what is
    /// shown is that refused requests leave no entry at all (`len() == 0`), which does not
    /// depend on the capacity. Before the fix, request 65 of such a flood was already `503`.
    const SMALL: u64 = 64;

    fn harness(store: &MemoryReplayStore) -> Harness {
        let store = store.clone();
        Harness::with(move |b| b.replay(ReplayOptions::new().store(store)))
    }

    /// A POST signed with a throwaway `hwk` key (one per `n`), as a flooding client sends.
    fn throwaway_post(path: &str, n: u32) -> Request<Body> {
        let mut seed = [7u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
        TestAgent::from_seed(seed).sign(&mut request, &KeySource::Hwk, NOW);
        request
    }

    /// A POST by the harness's agent presenting `token`, signed at `created`.
    fn authorized_post(h: &Harness, path: &str, token: &str, created: u64) -> Request<Body> {
        let mut request = Request::post(format!("{RESOURCE}{path}")).body(Body::empty()).unwrap();
        h.agent.sign(&mut request, &KeySource::Jwt(token.to_owned()), created);
        request
    }

    fn write_token(h: &Harness) -> String {
        h.access_server
            .auth_token(RESOURCE, &h.agent.public_jwk(), "data.write", NOW)
    }

    /// One route per guard of this crate, each in front of the harness's counting handler.
    fn routes(h: &Harness) -> Router {
        let calls = h.calls.clone();
        let handler = move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                "handler ran"
            }
        };
        let closed = Requirement::rule(|_| Decision::Refuse(Error::forbidden("closed", "this route is closed")));
        let a = &h.aauth;
        Router::new()
            .route(
                "/data",
                post(handler.clone()).route_layer(a.require_scopes(["data.write"])),
            )
            .route("/admin", post(handler.clone()).route_layer(a.require(closed)))
            .route(
                "/trade",
                post(handler.clone()).route_layer(a.require_detail("trade", |_: &Value, _: &_| true)),
            )
            .route(
                "/report",
                post(handler.clone()).route_layer(a.require_person().deferred()),
            )
            .route("/once", post(handler.clone()).route_layer(a.single_use()))
            // The documented order: the guard decides, then the grant is consumed.
            .route(
                "/task",
                post(handler.clone())
                    .route_layer(a.single_use())
                    .route_layer(a.require_scopes(["data.write"])),
            )
            // The other order: the grant is consumed, then the guard refuses.
            .route(
                "/admin-task",
                post(handler)
                    .route_layer(a.require_scopes(["admin"]))
                    .route_layer(a.single_use()),
            )
            .layer(a.layer())
    }

    async fn send(h: &Harness, request: Request<Body>) -> Response<Body> {
        routes(h).oneshot(request).await.expect("infallible")
    }

    /// Sends a throwaway-key POST to each guard in turn and asserts its refusal.
    async fn refuse_one_of_each(h: &Harness, n: u32) {
        let response = send(h, throwaway_post("/data", n)).await;
        Attack::from_response(h, response).challenged();
        let response = send(h, throwaway_post("/admin", n)).await;
        assert_eq!(Attack::from_response(h, response).forbidden().await, "closed");
        let response = send(h, throwaway_post("/trade", n)).await;
        Attack::from_response(h, response).challenged();
        let response = send(h, throwaway_post("/report", n)).await;
        Attack::from_response(h, response).refused("unsupported_scheme").await;
        let response = send(h, throwaway_post("/once", n)).await;
        assert_eq!(
            Attack::from_response(h, response).forbidden().await,
            "auth_token_required"
        );
        let response = send(h, throwaway_post("/task", n)).await;
        Attack::from_response(h, response).challenged();
    }

    const GUARDS: u64 = 6;

    /// POL-06: a flood of valid `hwk` POSTs that every kind of guard refuses, many times the
    /// store's capacity, leaves it empty; an authorized write and a single-use grant are then
    /// served.
    #[tokio::test]
    async fn pol_06_refused_requests_spend_no_replay_capacity() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let rounds = 4 * SMALL as u32;
        for n in 0..rounds {
            refuse_one_of_each(&h, n).await;
        }
        assert!(u64::from(rounds) * GUARDS > 20 * SMALL);
        assert_eq!(store.len(), 0, "refused requests left replay entries");

        let token = write_token(&h);
        let response = send(&h, authorized_post(&h, "/data", &token, NOW)).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 1)).await;
        Attack::from_response(&h, response).accepted();
        // Two signatures and one grant.
        assert_eq!(store.len(), 3);
    }

    /// POL-06 positive control: the store still refuses a replay of an admitted request after
    /// the flood, and keeps refusing the grant a second time.
    #[tokio::test]
    async fn pol_06_a_replay_of_an_admitted_request_is_still_invalid_signature() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        for n in 0..SMALL as u32 {
            refuse_one_of_each(&h, n).await;
        }
        let token = write_token(&h);
        let request = authorized_post(&h, "/data", &token, NOW);
        let replay = copy(&request);
        let response = send(&h, request).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, replay).await;
        Attack::from_response(&h, response).refused("invalid_signature").await;

        let request = authorized_post(&h, "/task", &token, NOW - 1);
        let replay = copy(&request);
        let response = send(&h, request).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, replay).await;
        Attack::from_response(&h, response).refused("invalid_signature").await;
        // A fresh signature presenting the consumed grant.
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 2)).await;
        Attack::from_response(&h, response).refused("invalid_jwt").await;
    }

    /// POL-06: a replay of a refused request is judged again and refused again, by the guard
    /// (not as a replay, since it was never admitted), and still leaves no entry.
    #[tokio::test]
    async fn pol_06_a_replay_of_a_refused_request_is_refused_again() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let challenged = throwaway_post("/data", 1);
        let forbidden = throwaway_post("/admin", 2);
        for _ in 0..3 {
            let response = send(&h, copy(&challenged)).await;
            Attack::from_response(&h, response).challenged();
            let response = send(&h, copy(&forbidden)).await;
            assert_eq!(Attack::from_response(&h, response).forbidden().await, "closed");
        }
        assert_eq!(store.len(), 0);
    }

    /// POL-06: a request the layer-wide default requirement refuses never reaches the store.
    #[tokio::test]
    async fn pol_06_a_flood_the_default_requirement_refuses_spends_no_capacity() {
        let store = MemoryReplayStore::new(SMALL);
        let h = {
            let store = store.clone();
            Harness::with(move |b| {
                b.replay(ReplayOptions::new().store(store))
                    .default_requirement(Requirement::scopes(["data.write"]))
            })
        };
        for n in 0..3 * SMALL as u32 {
            let response = h.send(throwaway_post("/anything", n)).await;
            Attack::from_response(&h, response).challenged();
        }
        assert_eq!(store.len(), 0);
        let token = write_token(&h);
        let request = authorized_post(&h, "/anything", &token, NOW);
        let replay = copy(&request);
        Attack::from_response(&h, h.send(request).await).accepted();
        h.calls.store(0, Ordering::SeqCst);
        Attack::from_response(&h, h.send(replay).await)
            .refused("invalid_signature")
            .await;
    }

    /// POL-06: a grant consumed by `single_use` outside a guard that then refuses is given
    /// back; the same grant is served on a route it authorizes.
    #[tokio::test]
    async fn pol_06_a_grant_consumed_before_a_refusing_guard_is_released() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let token = write_token(&h);
        for created in 0..3 {
            let request = authorized_post(&h, "/admin-task", &token, NOW - created);
            let response = send(&h, request).await;
            Attack::from_response(&h, response).challenged();
        }
        assert_eq!(store.len(), 0, "neither the signatures nor the grant are held");
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 10)).await;
        Attack::from_response(&h, response).accepted();
    }

    /// POL-06: the check is still one atomic insert before the handler: of 32 concurrent
    /// copies of an authorized write through a guarded route, exactly one is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pol_06_concurrent_copies_of_an_admitted_request_are_served_once() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let request = authorized_post(&h, "/data", &write_token(&h), NOW);
        let router = routes(&h);
        let tasks: Vec<_> = (0..32)
            .map(|_| tokio::spawn(router.clone().oneshot(copy(&request))))
            .collect();
        let mut statuses = Vec::new();
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            if response.status() != StatusCode::OK {
                assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
                assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
            }
            statuses.push(response.status());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(h.calls(), 1);
        assert_eq!(store.len(), 1);
    }

    /// POL-06 race: copies of a refused request in flight together. A copy that meets the
    /// original's entry is `invalid_signature`, the others meet the guard; none reaches the
    /// handler and no entry outlives them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pol_06_concurrent_copies_of_a_refused_request_are_all_refused() {
        let store = MemoryReplayStore::new(SMALL);
        let h = harness(&store);
        let request = throwaway_post("/admin", 1);
        let router = routes(&h);
        let tasks: Vec<_> = (0..32)
            .map(|_| tokio::spawn(router.clone().oneshot(copy(&request))))
            .collect();
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            match response.status() {
                StatusCode::FORBIDDEN => assert!(response.headers().get("signature-error").is_none()),
                StatusCode::UNAUTHORIZED => {
                    assert_eq!(response.headers()["signature-error"], "error=invalid_signature")
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(h.calls(), 0);
        assert_eq!(store.len(), 0);
        // Judged by the guard again afterwards.
        let response = send(&h, copy(&request)).await;
        assert_eq!(Attack::from_response(&h, response).forbidden().await, "closed");
    }

    /// POL-06 at the default capacity, as the catalogue states it: 100 000 refused POSTs,
    /// then an authorized write and a single-use grant (about half a minute in a debug
    /// build; the small-capacity tests above show the same property quickly).
    #[tokio::test]
    async fn pol_06_the_default_store_survives_100_000_refused_posts() {
        let store = MemoryReplayStore::default();
        let h = harness(&store);
        let started = Instant::now();
        let router = routes(&h);
        for n in 0..100_000u32 {
            let response = router.clone().oneshot(throwaway_post("/admin", n)).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "request {n}");
        }
        assert_eq!(h.calls(), 0);
        assert_eq!(store.len(), 0);
        eprintln!("100 000 refused POSTs in {:?}", started.elapsed());
        let token = write_token(&h);
        let response = send(&h, authorized_post(&h, "/data", &token, NOW)).await;
        Attack::from_response(&h, response).accepted();
        h.calls.store(0, Ordering::SeqCst);
        let response = send(&h, authorized_post(&h, "/task", &token, NOW - 1)).await;
        Attack::from_response(&h, response).accepted();
    }
}

// === POL-07 … POL-11: exemptions, coverage, minting, caches, legacy lifetime ===
// (section: hardening)

/// An agent token for the harness's agent, from its agent provider.
fn pol_agent_token(h: &Harness) -> String {
    h.agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW)
}

/// The claims of a resource token in a challenge.
fn pol_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&tower_aauth::engine::b64url_decode(payload).expect("base64url")).expect("JSON claims")
}

#[tokio::test]
async fn pol_07_nothing_under_the_pending_prefix_skips_the_default_requirement_while_no_pending_router_is_mounted() {
    use http::StatusCode;
    use tower_aauth::guard::Requirement;
    for path in [
        "/aauth/pending/x/../../admin",
        "/aauth/pending/%2e%2e/%2e%2e/admin",
        "/aauth/pending/%2E%2E/admin",
        // The exact shape of an issued id, but nothing serves pending URLs.
        "/aauth/pending/AAAAAAAAAAAAAAAAAAAAAA",
        "/aauth/pending/",
    ] {
        let h = Harness::with(|b| b.default_requirement(Requirement::Agent));
        let headers = h.attack(get(path)).await.refused_with_status(StatusCode::UNAUTHORIZED);
        assert_eq!(requirement_of(&headers), "requirement=agent-token", "{path}");
    }
}

#[tokio::test]
async fn pol_07_a_mounted_pending_router_exempts_exactly_the_ids_it_issues() {
    use http::StatusCode;
    use tower_aauth::guard::Requirement;
    use tower_aauth::testing::KeySource;
    // The default requirement asks for an auth token: an agent-token poll reaches the
    // pending router only if its URL is exempt (then `404`, the id is unknown).
    let id = "A".repeat(22);
    for (path, exempt) in [
        (format!("/aauth/pending/{id}"), true),
        (format!("/aauth/pending/{id}/"), false),
        (format!("/aauth/pending/{id}/../../../admin"), false),
        (format!("/aauth/pending/{}%41", &id[..20]), false),
        ("/aauth/pending/x/../../admin".to_owned(), false),
        ("/aauth/pending/%2e%2e/admin".to_owned(), false),
        (format!("/aauth/pending/{}", &id[1..]), false),
        (format!("/aauth/pending/{id}A"), false),
    ] {
        let h = Harness::with(|b| b.default_requirement(Requirement::scopes(["data.write"])));
        let request = h.signed(&path, &KeySource::Jwt(pol_agent_token(&h)));
        let response = send_routed(&h, h.aauth.pending_router(), request).await;
        if exempt {
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(h.calls(), 0);
        } else {
            Attack::from_response(&h, response).challenged();
        }
    }
}

#[tokio::test]
async fn pol_08_required_signature_key_coverage_means_the_member_the_signature_uses() {
    use tower_aauth::testing::KeySource;
    let h0 = Harness::new();
    let token = h0
        .access_server
        .auth_token(RESOURCE, &h0.agent.public_jwk(), "data.read", NOW);
    // The token sits in the member the label selects; a decoy member is what gets covered.
    let decoy = h0.agent.signature_key_value(&KeySource::Hwk, "other");
    let signature_key = format!(r#"sig=jwt;jwt="{token}", {decoy}"#);
    for (coverage, refused) in [
        (r#""signature-key";key="other""#, true),
        (r#""signature-key";sf"#, true),
        (r#""signature-key";key="sig""#, false),
        (r#""signature-key""#, false),
    ] {
        let h = Harness::new();
        let mut request = get("/data");
        let components = format!(r#""@method" "@authority" "@path" {coverage}"#);
        sign_covering(&h, &mut request, &signature_key, &components);
        let attack = h.attack(request).await;
        if refused {
            let headers = attack.without_fetch().refused("invalid_input").await;
            let error = headers[tower_aauth::wire::SIGNATURE_ERROR].to_str().unwrap();
            assert!(
                error.contains(r#"required_input=("@method" "@authority" "@path" "signature-key")"#),
                "{coverage}: {error}"
            );
        } else {
            attack.accepted();
        }
    }
}

#[tokio::test]
async fn pol_08_required_authorization_coverage_means_the_whole_field() {
    use http::HeaderValue;
    use tower_aauth::testing::KeySource;
    for (coverage, refused) in [
        (r#""authorization";sf"#, true),
        (r#""authorization";key="sig""#, true),
        (r#""authorization""#, false),
    ] {
        let h = Harness::new();
        let mut request = get("/data");
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, HeaderValue::from_static("AAuth session-1"));
        let signature_key = h.agent.signature_key_value(&KeySource::Hwk, "sig");
        let components = format!(r#""@method" "@authority" "@path" "signature-key" {coverage}"#);
        sign_covering(&h, &mut request, &signature_key, &components);
        let attack = h.attack(request).await;
        if refused {
            let headers = attack.without_fetch().refused("invalid_input").await;
            let error = headers[tower_aauth::wire::SIGNATURE_ERROR].to_str().unwrap();
            assert!(error.contains(r#""authorization")"#), "{coverage}: {error}");
        } else {
            attack.accepted();
        }
    }
}

/// `POST /trade` behind `require_detail` with a step-up whose detail `build` makes.
fn pol_trade_routes(h: &Harness, build: fn(&http::request::Parts) -> Option<serde_json::Value>) -> axum::Router {
    use std::sync::atomic::Ordering;
    let calls = h.calls.clone();
    let handler = axum::routing::post(move || {
        calls.fetch_add(1, Ordering::SeqCst);
        async { "handler ran" }
    });
    let guard = h
        .aauth
        .require_detail("trade", |_: &serde_json::Value, _: &http::request::Parts| true)
        .step_up(build);
    axum::Router::new().route("/trade", handler.route_layer(guard))
}

#[tokio::test]
async fn pol_09_no_step_up_resource_token_is_minted_from_a_query_the_signature_does_not_cover() {
    use tower_aauth::testing::KeySource;
    let from_query = |parts: &http::request::Parts| Some(serde_json::json!({ "query": parts.uri.query()? }));
    for (components, minted) in [
        (r#""@method" "@authority" "@path" "signature-key""#, false),
        (r#""@method" "@authority" "@path" "@query" "signature-key""#, true),
    ] {
        let h = Harness::new();
        let mut request = http::Request::post(format!("{RESOURCE}/trade?symbol=ACME&quantity=5000"))
            .body(axum::body::Body::empty())
            .unwrap();
        let signature_key = h.agent.signature_key_value(&KeySource::Jwt(pol_agent_token(&h)), "sig");
        sign_covering(&h, &mut request, &signature_key, components);
        let response = send_routed(&h, pol_trade_routes(&h, from_query), request).await;
        let attack = Attack::from_response(&h, response);
        if minted {
            let token = attack.challenged();
            let details = &pol_claims(&token)["authorization_details"];
            assert_eq!(details[0]["query"], "symbol=ACME&quantity=5000");
            assert_eq!(h.aauth.minted_resource_tokens(), 1);
        } else {
            let headers = attack.refused("invalid_input").await;
            let error = headers[tower_aauth::wire::SIGNATURE_ERROR].to_str().unwrap();
            assert!(
                error.contains(r#"required_input=("@method" "@authority" "@path" "signature-key" "@query")"#),
                "{error}"
            );
            assert_eq!(h.aauth.minted_resource_tokens(), 0);
        }
    }
}

#[tokio::test]
async fn pol_09_a_step_up_detail_never_carries_a_header_the_signature_does_not_cover() {
    use http::HeaderValue;
    use tower_aauth::testing::KeySource;
    let from_header = |parts: &http::request::Parts| {
        let order = parts.headers.get("x-order")?.to_str().ok()?;
        Some(serde_json::json!({ "order": order }))
    };
    for (components, carried) in [
        (r#""@method" "@authority" "@path" "signature-key""#, false),
        (r#""@method" "@authority" "@path" "signature-key" "x-order";sf"#, false),
        (r#""@method" "@authority" "@path" "signature-key" "x-order""#, true),
    ] {
        let h = Harness::new();
        let mut request = http::Request::post(format!("{RESOURCE}/trade"))
            .body(axum::body::Body::empty())
            .unwrap();
        request.headers_mut().insert("x-order", HeaderValue::from_static("buy"));
        let signature_key = h.agent.signature_key_value(&KeySource::Jwt(pol_agent_token(&h)), "sig");
        sign_covering(&h, &mut request, &signature_key, components);
        let response = send_routed(&h, pol_trade_routes(&h, from_header), request).await;
        // Without the detail the route still challenges, with a token asking for nothing
        // taken from the request.
        let token = Attack::from_response(&h, response).challenged();
        let details = pol_claims(&token).get("authorization_details").cloned();
        match carried {
            true => assert_eq!(details, Some(serde_json::json!([{ "order": "buy", "type": "trade" }]))),
            false => assert_eq!(details, None, "{components}"),
        }
    }
}

#[tokio::test]
async fn pol_10_junk_key_parameters_of_refused_requests_stay_within_the_parsed_key_cache_budget() {
    use http::HeaderValue;
    use tower_aauth::engine::encode_signature;
    use tower_aauth::testing::{KeySource, parsed_key_cache_bytes};
    const REQUESTS: usize = 6_000;
    /// The cache's budget: what 6 000 requests pinning 8 KiB each (47 MiB) must not reach.
    const BUDGET: u64 = 2 * 1024 * 1024;
    let h = Harness::new();
    let key = h.agent.signature_key_value(&KeySource::Hwk, "sig");
    let input = format!(r#"sig=("@method" "@authority" "@path" "signature-key");created={NOW}"#);
    let signature = format!("sig=:{}:", encode_signature(&[0x5a; 64]));
    // The largest Signature-Key under the 8 KiB header cap.
    let padding = 8 * 1024 - key.len() - r#";junk="00000000""#.len();
    for i in 0..REQUESTS {
        let mut request = get("/data");
        let headers = request.headers_mut();
        let signature_key = format!(r#"{key};junk="{i:08}{}""#, "j".repeat(padding));
        assert_eq!(signature_key.len(), 8 * 1024);
        headers.insert(
            tower_aauth::wire::SIGNATURE_KEY,
            HeaderValue::from_str(&signature_key).unwrap(),
        );
        headers.insert(
            tower_aauth::wire::SIGNATURE_INPUT,
            HeaderValue::from_str(&input).unwrap(),
        );
        headers.insert(tower_aauth::wire::SIGNATURE, HeaderValue::from_str(&signature).unwrap());
        h.attack(request)
            .await
            .without_fetch()
            .refused("invalid_signature")
            .await;
    }
    // The cache is the process's: other tests in this binary fill it with real keys at
    // the same time, and the cache applies evictions in batches, so a batch of their
    // inserts may be pending when it is read.
    const PENDING_BATCH: u64 = 64 * 1024;
    let held = parsed_key_cache_bytes();
    assert!(
        held <= BUDGET + PENDING_BATCH,
        "the parsed-key cache holds {held} bytes"
    );
}

#[tokio::test]
async fn pol_11_a_legacy_token_without_iat_lives_at_most_its_kind_s_lifetime_from_now() {
    use tower_aauth::Profile;
    const YEAR: u64 = 365 * 24 * 3600;
    for profile in [Profile::Legacy, Profile::Both] {
        for (exp, accepted) in [(NOW + 10 * YEAR, false), (NOW + 3600 + 61, false), (NOW + 3600, true)] {
            let h = legacy_harness(profile);
            let mut claims = h
                .access_server
                .legacy_auth_claims(RESOURCE, &h.agent.public_jwk(), AP, "data.read", NOW);
            claims.as_object_mut().unwrap().remove("iat");
            claims["exp"] = exp.into();
            let token = h.access_server.sign_with_alg(
                tower_aauth::engine::typ::LEGACY_AUTH,
                tower_aauth::engine::alg::EDDSA,
                &claims,
            );
            let attack = h.token_attack(&token).await;
            if accepted {
                attack.accepted();
            } else {
                attack.refused("invalid_jwt").await;
            }
        }
    }
}

// === POL-12: four-party resource names the person ===
// (section: four-party)

mod four_party {
    use axum::body::Body;
    use http::Request;
    use serde_json::Value;
    use tower_aauth::engine::b64url_decode;
    use tower_aauth::testing::KeySource;

    use super::*;

    fn payload(token: &str) -> Value {
        let segment = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&b64url_decode(segment).unwrap()).unwrap()
    }

    fn person_request(h: &Harness) -> Request<Body> {
        let token = h.person_server.person_token(RESOURCE, &h.agent.public_jwk(), NOW);
        h.signed("/data", &KeySource::Jwt(token))
    }

    #[tokio::test]
    async fn pol_12_a_resource_trusting_its_person_server_names_the_person_in_resource_tokens() {
        let h = Harness::new();
        let resource_token = h.scoped_attack(person_request(&h), &["data.read"]).await.challenged();
        let claims = payload(&resource_token);
        assert_eq!(claims["aud"], AS, "four-party: the access server");
        assert_eq!(claims["ps"], PS);
        assert_eq!(claims["sub"], "person-1");
        assert_eq!(claims["presented_jti"], format!("pt-{NOW}"));
    }

    #[tokio::test]
    async fn pol_12_without_its_person_server_the_person_token_cannot_be_verified() {
        let h = Harness::new();
        let without_ps = Harness::with(|_| {
            let keys = tower_aauth::discovery::StaticResolver::new()
                .with_key(AS, tower_aauth::engine::dwk::ACCESS, h.access_server.public_jwk())
                .with_key(PS, tower_aauth::engine::dwk::PERSON, h.person_server.public_jwk());
            tower_aauth::AAuth::builder(RESOURCE)
                .clock(tower_aauth::testing::ManualClock::new(NOW))
                .key_resolver(keys)
                .auth_server(AS)
        });
        without_ps
            .scoped_attack(person_request(&without_ps), &["data.read"])
            .await
            .refused("invalid_jwt")
            .await;
    }
}
