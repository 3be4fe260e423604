//! Web Bot Auth through the layer: what is accepted, how a bot is named, and that a bot is
//! a kind of caller of its own, never an AAuth agent. The refusals are in
//! `tests/attacks_web_bot_auth.rs`.

mod support;

use axum::body::Body;
use http::{Request, StatusCode};
use support::app::App;
use support::bots::{BotWorld, LISTED_ORIGIN, NOW, assert_bot_refused, get, json_of};
use support::fixtures::copy;
use support::metrics::Recorded;
use tower_aauth::bot::WebBotAuthOptions;
use tower_aauth::testing::{BotSigner, KeySource};

#[tokio::test]
async fn a_signed_bot_is_served_on_a_bot_route() {
    let world = BotWorld::new().await;
    let response = world.send(world.signed("/bot")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
    assert_eq!(world.directory.requests(), 1, "the directory was fetched once");
}

#[tokio::test]
async fn the_bot_is_named_by_its_directory_origin_and_key_thumbprint() {
    let world = BotWorld::new().await;
    let response = world.send(world.signed("/bot-name")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["origin"], world.directory.origin());
    assert_eq!(body["thumbprint"], world.signer.thumbprint());
}

#[tokio::test]
async fn an_unguarded_route_sees_a_bot_and_no_agent() {
    let world = BotWorld::new().await;
    let body = json_of(world.send(world.signed("/open")).await).await;
    assert_eq!(body["bot"], world.directory.origin());
    assert_eq!(body["agent"], false);
}

#[tokio::test]
async fn the_legacy_bare_string_signature_agent_is_accepted() {
    let world = BotWorld::new().await;
    let signer = world.signer.clone().legacy_agent_form();
    let mut request = get("/bot");
    signer.sign(&mut request, NOW);
    assert_eq!(
        request.headers()["signature-agent"],
        format!("\"{}\"", world.directory.origin())
    );
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn the_legacy_form_is_refused_when_the_option_turns_it_off() {
    let world = BotWorld::with(WebBotAuthOptions::new().legacy_agent_form(false), |b| b).await;
    let mut request = get("/bot");
    world.signer.clone().legacy_agent_form().sign(&mut request, NOW);
    let response = world.send(request).await;
    assert_bot_refused(&world, response, "invalid_input").await;
    assert_eq!(world.fetches(), 0, "refused before any fetch");
}

#[tokio::test]
async fn the_directory_is_cached_between_requests() {
    let world = BotWorld::new().await;
    for _ in 0..3 {
        assert_eq!(world.send(world.signed("/bot")).await.status(), StatusCode::OK);
    }
    assert_eq!(world.directory.requests(), 1);
    assert_eq!(world.calls(), 3);
}

#[tokio::test]
async fn a_second_key_of_the_directory_is_accepted() {
    let world = BotWorld::new().await;
    world.directory.add_key([43; 32]);
    let mut request = get("/bot-name");
    let second = BotSigner::new([43; 32], world.directory.origin());
    second.sign(&mut request, NOW);
    let body = json_of(world.send(request).await).await;
    assert_eq!(body["thumbprint"], second.thumbprint());
}

#[tokio::test]
async fn a_signature_living_exactly_the_maximum_lifetime_is_accepted() {
    let world = BotWorld::new().await;
    let mut request = get("/bot");
    world.signer.clone().lifetime(3600).sign(&mut request, NOW);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn verification_is_off_by_default_and_a_bot_gets_todays_answer() {
    let app = App::three_party();
    let world = BotWorld::new().await;
    let response = app.send(world.signed("/agent")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
    assert_eq!(app.calls(), 0);
    assert_eq!(world.directory.requests(), 0, "nothing is fetched when disabled");
}

#[tokio::test]
async fn a_request_with_signature_key_stays_on_the_aauth_path() {
    let world = BotWorld::new().await;
    let mut request = get("/verified");
    let options = tower_aauth::testing::SignOptions {
        extra_params: ";tag=\"web-bot-auth\"".to_owned(),
        ..Default::default()
    };
    world.app.agent.sign_with(&mut request, &KeySource::Hwk, NOW, &options);
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::OK, "verified as AAuth hwk");
    assert_eq!(world.fetches(), 0);
    let bot_route = world.send({
        let mut request = get("/bot");
        world.app.agent.sign(&mut request, &KeySource::Hwk, NOW);
        request
    });
    let response = bot_route.await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "an AAuth agent is not a bot");
}

/// Every requirement of an AAuth agent, person, scope or detail answers a bot exactly as
/// it answers an unsigned request, and its handler does not run.
#[tokio::test]
async fn a_bot_never_satisfies_an_agent_person_scope_or_detail_requirement() {
    let world = BotWorld::new().await;
    for path in [
        "/agent",
        "/verified",
        "/person",
        "/data",
        "/policy",
        "/detail",
        "/single",
        "/agent-name",
        "/grant",
    ] {
        let unsigned = world.send(get(path)).await;
        let bot = world.send(world.signed(path)).await;
        assert_eq!(bot.status(), unsigned.status(), "{path}");
        assert_ne!(bot.status(), StatusCode::OK, "{path}");
        assert_eq!(
            bot.headers().get("aauth-requirement"),
            unsigned.headers().get("aauth-requirement"),
            "{path}: the normal challenge"
        );
        assert!(bot.headers().get("signature-error").is_none(), "{path}");
        assert_eq!(world.calls(), 0, "{path}: the handler must not run");
    }
}

#[tokio::test]
async fn require_bot_refuses_unsigned_requests_with_403_and_accept_signature() {
    let world = BotWorld::new().await;
    let response = world.send(get("/bot")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let accept = response.headers()["accept-signature"].to_str().unwrap().to_owned();
    assert!(accept.contains(r#"tag="web-bot-auth""#), "{accept}");
    assert!(accept.contains("\"@authority\""), "{accept}");
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(json_of(response).await["error"], "bot_required");
    assert_eq!(world.calls(), 0);
}

#[tokio::test]
async fn the_bot_extractor_refuses_a_request_without_a_bot() {
    let world = BotWorld::new().await;
    let response = world.send(get("/bot-name")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().contains_key("accept-signature"));
    assert_eq!(json_of(response).await["error"], "bot_required");
    assert_eq!(world.calls(), 0);
}

#[tokio::test]
async fn require_bot_from_admits_only_the_listed_origins() {
    let world = BotWorld::new().await;
    let response = world.send(world.signed("/bot-from")).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("accept-signature").is_none());
    assert_eq!(json_of(response).await["error"], "bot_not_admitted");
    assert_eq!(world.calls(), 0);

    let listed = tower_aauth::guard::require_bot_from([LISTED_ORIGIN, world.directory.origin()]);
    let router = axum::Router::new()
        .route("/listed", axum::routing::get(world.app.handler()).route_layer(listed))
        .layer(world.app.aauth.layer());
    let response = tower::ServiceExt::oneshot(router, world.signed("/listed"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_reused_signature_is_answered_429_and_the_handler_runs_once() {
    let world = BotWorld::new().await;
    let request = world.signed("/bot");
    let replay = copy(&request);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    let response = world.send(replay).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(json_of(response).await["error"], "signature_reused");
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn a_bot_refused_by_a_guard_gets_its_nonce_back() {
    let world = BotWorld::new().await;
    let request = world.signed("/bot");
    let agent_only = axum::Router::new()
        .route(
            "/bot",
            axum::routing::get(world.app.handler()).route_layer(world.app.aauth.require_agent_token()),
        )
        .layer(world.app.aauth.layer());
    let refused = tower::ServiceExt::oneshot(agent_only, copy(&request)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(world.send(request).await.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn without_a_nonce_a_replay_checked_method_still_refuses_the_second_use() {
    let world = BotWorld::new().await;
    let mut request = Request::post(format!("{}/bot", support::bots::RESOURCE))
        .body(Body::empty())
        .unwrap();
    let mut options = tower_aauth::testing::BotSignOptions::default();
    options.nonce = Some(None);
    // Without a nonce, a replay-checked method needs the method and path covered.
    options.components = Some(
        [
            r#""@authority""#,
            r#""signature-agent";key="agent1""#,
            r#""@method""#,
            r#""@path""#,
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    world.signer.sign_with(&mut request, NOW, &options);
    let replay = copy(&request);
    let router = axum::Router::new()
        .route(
            "/bot",
            axum::routing::post(world.app.handler()).route_layer(tower_aauth::guard::require_bot()),
        )
        .layer(world.app.aauth.layer());
    let first = tower::ServiceExt::oneshot(router.clone(), request).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = tower::ServiceExt::oneshot(router, replay).await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn metrics_count_the_bot_as_its_own_kind() {
    let world = BotWorld::new().await;
    let recorded = Recorded::new();
    recorded.scope(world.send(world.signed("/bot"))).await;
    recorded.scope(world.send(world.signed("/agent"))).await;
    assert_eq!(
        recorded.count("tower_aauth_bot_verifications_total", &[("outcome", "verified")]),
        2
    );
    assert_eq!(
        recorded.count("tower_aauth_requests_total", &[("decision", "allow"), ("code", "bot")]),
        1
    );
    assert_eq!(
        recorded.count(
            "tower_aauth_requests_total",
            &[("decision", "challenge"), ("code", "agent-token")]
        ),
        1
    );
}

#[tokio::test]
async fn a_refused_bot_is_counted_as_refused() {
    let world = BotWorld::new().await;
    let recorded = Recorded::new();
    let mut request = get("/bot");
    let mut options = tower_aauth::testing::BotSignOptions::default();
    options.keyid = Some("not-a-thumbprint".to_owned());
    world.signer.sign_with(&mut request, NOW, &options);
    let response = recorded.scope(world.send(request)).await;
    assert_bot_refused(&world, response, "invalid_signature").await;
    assert_eq!(
        recorded.count("tower_aauth_bot_verifications_total", &[("outcome", "refused")]),
        1
    );
}

/// The `resource_server` example with `AAUTH_WEB_BOT_AUTH` set to `bots`, on a free port.
fn example_server(bots: &str) -> (support::fleet::Replica, String) {
    let port = support::fleet::free_port();
    let resource = format!("http://127.0.0.1:{port}");
    let replica = support::fleet::Replica::start(
        port,
        &[
            ("AAUTH_RESOURCE", resource.clone()),
            ("AAUTH_PERSON_SERVER", "https://ps.example".to_owned()),
            ("AAUTH_ALLOW_HTTP_LOOPBACK", "1".to_owned()),
            ("AAUTH_WEB_BOT_AUTH", bots.to_owned()),
        ],
    );
    (replica, resource)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A bot's `GET {resource}/whoami` over HTTP, answered with status and JSON body.
async fn bot_whoami(resource: &str, signer: &BotSigner) -> (StatusCode, serde_json::Value) {
    let mut request = Request::get(format!("{resource}/whoami")).body(()).unwrap();
    signer.sign(&mut request, now());
    let mut outgoing = reqwest::Client::new().get(format!("{resource}/whoami"));
    for (name, value) in request.headers() {
        outgoing = outgoing.header(name, value);
    }
    let response = outgoing.send().await.unwrap();
    let status = response.status();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn the_example_names_a_bot_on_whoami_when_web_bot_auth_is_on() {
    let directory = tower_aauth::testing::BotDirectory::spawn([42; 32]).await.unwrap();
    let (_server, resource) = example_server("1");
    let (status, body) = bot_whoami(&resource, &directory.signer()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["bot"]["origin"], directory.origin());
    assert_eq!(body["bot"]["thumbprint"], directory.signer().thumbprint());
    assert!(body.get("agent").is_none(), "a bot is not an agent: {body}");
}

#[tokio::test]
async fn the_example_refuses_bots_on_whoami_by_default() {
    let directory = tower_aauth::testing::BotDirectory::spawn([42; 32]).await.unwrap();
    let (_server, resource) = example_server("0");
    let (status, body) = bot_whoami(&resource, &directory.signer()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_signature");
    assert_eq!(directory.requests(), 0);
}

#[tokio::test]
async fn the_example_still_challenges_an_unsigned_whoami_with_web_bot_auth_on() {
    let (_server, resource) = example_server("1");
    let response = reqwest::get(format!("{resource}/whoami")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["aauth-requirement"], "requirement=agent-token");
}

#[tokio::test]
async fn require_bot_from_normalises_its_origins() {
    let world = BotWorld::new().await;
    // Upper case and a trailing slash name the same origin as the bot's directory.
    let spelled = format!("{}/", world.directory.origin().to_ascii_uppercase());
    let listed = tower_aauth::guard::require_bot_from([spelled]);
    let router = axum::Router::new()
        .route("/listed", axum::routing::get(world.app.handler()).route_layer(listed))
        .layer(world.app.aauth.layer());
    let response = tower::ServiceExt::oneshot(router, world.signed("/listed"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(world.calls(), 1);
}

#[test]
fn require_bot_from_accepts_the_https_default_port_and_case() {
    // Constructs without panicking: normalised to `https://bots.example`.
    let _ = tower_aauth::guard::require_bot_from(["HTTPS://Bots.Example:443/", "http://127.0.0.1:8080"]);
}

#[test]
fn require_bot_from_panics_on_an_origin_no_bot_can_have() {
    for origin in [
        "https://10.0.0.1",
        "https://bots.example:8443",
        "https://bots.example/path",
        "https://user@bots.example",
        "http://bots.example",
        "http://localhost:8080",
        "https://metadata",
        "bots.example",
        "",
    ] {
        let panicked = std::panic::catch_unwind(|| tower_aauth::guard::require_bot_from([origin]));
        let message = panicked.expect_err(origin);
        let message = message.downcast_ref::<String>().map(String::as_str).unwrap_or_default();
        assert!(
            message.contains("is not an origin a Web Bot Auth directory can have"),
            "{origin}: {message}"
        );
    }
}

/// Appends a second signature (`cdn`, tagged `tag`) to a request the bot signed.
fn with_second_signature(request: &mut Request<Body>, tag: &str) {
    let headers = request.headers_mut();
    let input = headers["signature-input"].to_str().unwrap().to_owned();
    let signature = headers["signature"].to_str().unwrap().to_owned();
    let extra = format!(r#"cdn=("@authority");created={NOW};keyid="edge";tag="{tag}""#);
    headers.insert("signature-input", format!("{input}, {extra}").parse().unwrap());
    headers.insert(
        "signature",
        format!("{signature}, cdn=:{}:", "A".repeat(86) + "==").parse().unwrap(),
    );
}

#[tokio::test]
async fn of_several_signatures_the_one_tagged_web_bot_auth_is_verified() {
    let world = BotWorld::new().await;
    let mut request = world.signed("/bot-name");
    with_second_signature(&mut request, "cdn-edge");
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["thumbprint"], world.signer.thumbprint());
    assert_eq!(world.calls(), 1);
}

#[tokio::test]
async fn two_signatures_tagged_web_bot_auth_are_not_a_bot() {
    let world = BotWorld::new().await;
    let mut request = world.signed("/bot");
    with_second_signature(&mut request, "web-bot-auth");
    let response = world.send(request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["signature-error"], "error=invalid_signature");
    assert_eq!(world.calls(), 0);
    assert_eq!(world.fetches(), 0);
}

#[tokio::test]
async fn directory_fetches_are_counted_as_bot_directories_not_as_aauth_discovery() {
    let world = BotWorld::new().await;
    let recorded = Recorded::new();
    recorded.scope(world.send(world.signed("/bot"))).await;
    recorded.scope(world.send(world.signed("/bot-name"))).await;
    assert_eq!(
        recorded.count("tower_aauth_discovery_fetches_total", &[("document", "bot_directory")]),
        1
    );
    assert_eq!(
        recorded.count("tower_aauth_discovery_fetches_total", &[("document", "jwks")]),
        0
    );
    for cache in ["hit", "miss"] {
        assert_eq!(
            recorded.count("tower_aauth_discovery_cache_lookups_total", &[("cache", cache)]),
            0,
            "{cache}"
        );
    }
}
