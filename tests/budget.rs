//! Budgets (draft-hardt-aauth-budgets) on a metered route: what a request draws, what
//! `AAuth-Budget` reports, and every refusal — its status, its exact code or challenge,
//! and that the handler did not run.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get as route_get;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use support::fixtures::decode;
use support::harness::{AS, Harness, NOW, RESOURCE, body_json, get};
use tower::ServiceExt;
use tower_aauth::budget::{BudgetOptions, Meter, MeterPolicy};
use tower_aauth::engine;
use tower_aauth::testing::KeySource;

/// A resource whose routes are metered at these prices (all in USD at 6 decimals):
///
/// * `/report`: 1000, the handler reports nothing;
/// * `/cheap`: 400;
/// * `/partial`: 1000, the handler reports 250;
/// * `/over`: 1000, the handler reports 5000;
/// * `/fails`: 1000, the handler answers 500 and reports nothing;
/// * `/fails-charged`: 1000, the handler reports 300 and answers 500;
/// * `/admin`: 1000, and a scope guard further in requires `admin`.
struct Metered {
    harness: Harness,
    calls: Arc<AtomicUsize>,
}

/// The metered routes' guard: `max_cost` USD at 6 decimals, for auth tokens granting `report`.
fn usd(aauth: &tower_aauth::AAuth, max_cost: u64) -> tower_aauth::guard::GuardLayer<MeterPolicy> {
    aauth.meter("USD", 6, max_cost).scopes(["report"])
}

impl Metered {
    fn new() -> Self {
        Metered::with(|b| b)
    }

    fn with(adjust: impl FnOnce(tower_aauth::AAuthBuilder) -> tower_aauth::AAuthBuilder) -> Self {
        Metered {
            harness: Harness::with(adjust),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn router(&self) -> Router {
        let aauth = &self.harness.aauth;
        let counted = |charge: Option<u64>, status: StatusCode| {
            let calls = self.calls.clone();
            move |meter: Meter| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    if let Some(cost) = charge {
                        meter.charge(cost);
                    }
                    status
                }
            }
        };
        Router::new()
            .route(
                "/report",
                route_get(counted(None, StatusCode::OK)).route_layer(usd(aauth, 1000)),
            )
            .route(
                "/cheap",
                route_get(counted(None, StatusCode::OK)).route_layer(usd(aauth, 400)),
            )
            .route(
                "/partial",
                route_get(counted(Some(250), StatusCode::OK)).route_layer(usd(aauth, 1000)),
            )
            .route(
                "/over",
                route_get(counted(Some(5000), StatusCode::OK)).route_layer(usd(aauth, 1000)),
            )
            .route(
                "/fails",
                route_get(counted(None, StatusCode::INTERNAL_SERVER_ERROR)).route_layer(usd(aauth, 1000)),
            )
            .route(
                "/fails-charged",
                route_get(counted(Some(300), StatusCode::INTERNAL_SERVER_ERROR)).route_layer(usd(aauth, 1000)),
            )
            .route(
                "/hangs",
                route_get(|_: Meter| std::future::pending::<StatusCode>()).route_layer(usd(aauth, 1000)),
            )
            .route(
                "/admin",
                route_get(counted(None, StatusCode::OK))
                    .route_layer(aauth.require_scopes(["admin"]))
                    .route_layer(usd(aauth, 1000)),
            )
            .merge(aauth.well_known_router())
            .layer(aauth.layer())
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// An auth token granting `report` and carrying `budget` (none when `Null`), with its
    /// own `jti`.
    fn token(&self, jti: &str, budget: Value) -> String {
        let h = &self.harness;
        let mut claims = h
            .access_server
            .auth_claims(RESOURCE, &h.agent.public_jwk(), "report", NOW);
        claims["jti"] = jti.into();
        if !budget.is_null() {
            claims["budget"] = budget;
        }
        h.access_server.sign(engine::typ::AUTH, &claims)
    }

    async fn send(&self, path: &str, token: &str) -> Response<Body> {
        let mut request = get(path);
        self.harness
            .agent
            .sign(&mut request, &KeySource::Jwt(token.to_owned()), NOW);
        self.router().oneshot(request).await.unwrap()
    }
}

fn budget(amount: u64) -> Value {
    json!({ "amount": amount, "unit": "USD", "decimals": 6 })
}

fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// The claims of the resource token in an `auth-token` challenge, and the parameters
/// after it (`; reason=…`, or empty).
fn challenge(response: &Response<Body>) -> (Value, String) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(header(response, "cache-control"), Some("no-store"));
    let value = header(response, "aauth-requirement").unwrap();
    let rest = value
        .strip_prefix("requirement=auth-token; resource-token=\"")
        .unwrap_or_else(|| panic!("not an auth-token challenge: {value}"));
    let (token, params) = rest.split_once('"').unwrap();
    (decode(token).1, params.to_owned())
}

// ---- served requests ----

#[tokio::test]
async fn a_served_request_draws_its_price_and_reports_the_balance() {
    let m = Metered::new();
    let response = m.send("/report", &m.token("t1", budget(5000))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=4000; cost=1000; unit=\"USD\"; decimals=6")
    );
    assert_eq!(m.calls(), 1);
}

#[tokio::test]
async fn the_budget_pays_for_exactly_as_many_requests_as_it_holds_then_asks_for_more() {
    let m = Metered::new();
    let token = m.token("t1", budget(3000));
    for remaining in [2000, 1000, 0] {
        let response = m.send("/report", &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let expected = format!("remaining={remaining}; cost=1000; unit=\"USD\"; decimals=6");
        assert_eq!(header(&response, "aauth-budget"), Some(expected.as_str()));
    }
    let response = m.send("/report", &token).await;
    let (claims, params) = challenge(&response);
    assert_eq!(params, "; reason=budget-exhausted");
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=0; unit=\"USD\"; decimals=6")
    );
    assert_eq!(
        claims["budget"],
        json!({"amount": 1_000_000, "unit": "USD", "decimals": 6})
    );
    assert_eq!(claims["scope"], "report", "the step-up asks for the grant again");
    assert_eq!(
        claims["budget_consumed"],
        json!([{"jti": "t1", "consumed": 3000}]),
        "the person server learns what the spent grant consumed"
    );
    assert_eq!(claims["aud"], AS);
    assert_eq!(m.calls(), 3, "the handler did not run for the refusal");
}

#[tokio::test]
async fn a_remainder_below_the_price_is_insufficient_budget_naming_what_was_required() {
    let m = Metered::new();
    let token = m.token("t1", budget(1500));
    assert_eq!(m.send("/report", &token).await.status(), StatusCode::OK);
    let response = m.send("/report", &token).await;
    let (claims, params) = challenge(&response);
    assert_eq!(params, "; reason=insufficient-budget");
    assert_eq!(claims["budget_consumed"], json!([{"jti": "t1", "consumed": 1000}]));
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=500; required=1000; unit=\"USD\"; decimals=6")
    );
    assert_eq!(m.calls(), 1);
}

#[tokio::test]
async fn a_refused_request_draws_nothing() {
    let m = Metered::new();
    let token = m.token("t1", budget(1500));
    m.send("/report", &token).await;
    for _ in 0..3 {
        assert_eq!(m.send("/report", &token).await.status(), StatusCode::UNAUTHORIZED);
    }
    let response = m.send("/cheap", &token).await;
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=100; cost=400; unit=\"USD\"; decimals=6")
    );
}

#[tokio::test]
async fn what_a_handler_reports_decides_the_charge() {
    // (route, the charge, what the response says it cost)
    let cases = [
        ("/partial", "reports less than the price", 250),
        ("/over", "reports more than the price: charged the price", 1000),
        ("/fails", "fails without reporting: not charged", 0),
        ("/fails-charged", "fails after reporting: charged the report", 300),
    ];
    for (path, case, cost) in cases {
        let m = Metered::new();
        let response = m.send(path, &m.token("t1", budget(5000))).await;
        let expected = format!("remaining={}; cost={cost}; unit=\"USD\"; decimals=6", 5000 - cost);
        assert_eq!(header(&response, "aauth-budget"), Some(expected.as_str()), "{case}");
        assert_eq!(m.calls(), 1, "{case}");
    }
}

#[tokio::test]
async fn a_request_refused_by_a_guard_further_in_is_not_charged() {
    let m = Metered::new();
    let response = m.send("/admin", &m.token("t1", budget(5000))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=5000; cost=0; unit=\"USD\"; decimals=6")
    );
    assert_eq!(m.calls(), 0);
}

#[tokio::test]
async fn a_finer_scale_is_charged_the_exact_equivalent_of_the_price() {
    let m = Metered::new();
    let granted = json!({ "amount": 500_000, "unit": "USD", "decimals": 8 });
    let response = m.send("/report", &m.token("t1", granted)).await;
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=400000; cost=100000; unit=\"USD\"; decimals=8")
    );
}

#[tokio::test]
async fn a_cost_finer_than_the_tokens_scale_is_rounded_up_never_down() {
    let m = Metered::new();
    // The token counts in thousandths of a dollar; /partial reports 250 millionths.
    let granted = json!({ "amount": 5, "unit": "USD", "decimals": 3 });
    let response = m.send("/partial", &m.token("t1", granted)).await;
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=4; cost=1; unit=\"USD\"; decimals=3")
    );
}

#[tokio::test]
async fn every_aauth_budget_field_is_an_rfc_9651_dictionary_with_remaining_first() {
    let m = Metered::new();
    let token = m.token("t1", budget(1500));
    let served = m.send("/report", &token).await;
    let refused = m.send("/report", &token).await;
    for response in [&served, &refused] {
        let value = header(response, "aauth-budget").unwrap();
        let dictionary = engine::parse_dictionary_strict(value).expect("a valid Dictionary");
        let (first, _) = dictionary.iter().next().unwrap();
        assert_eq!(first.as_str(), "remaining", "{value}");
    }
}

#[tokio::test]
async fn consumption_is_reported_in_the_scale_of_the_new_offer() {
    let m = Metered::new();
    // 100 050 at 8 decimals pays for one call (100 000 at 8 is 1 000 at 6, the price) and
    // leaves 50, below the price; the new offer is at the route's 6 decimals.
    let token = m.token("t1", json!({ "amount": 100_050, "unit": "USD", "decimals": 8 }));
    assert_eq!(m.send("/report", &token).await.status(), StatusCode::OK);
    let response = m.send("/report", &token).await;
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=50; required=100000; unit=\"USD\"; decimals=8")
    );
    let (claims, params) = challenge(&response);
    assert_eq!(params, "; reason=insufficient-budget");
    assert_eq!(claims["budget"]["decimals"], 6);
    assert_eq!(claims["budget_consumed"], json!([{"jti": "t1", "consumed": 1000}]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_spend_a_budget_twice() {
    let m = Arc::new(Metered::new());
    let token = m.token("t1", budget(10_000));
    let requests = (0..50).map(|_| {
        let (m, token) = (m.clone(), token.clone());
        tokio::spawn(async move { m.send("/report", &token).await.status() })
    });
    let mut served = 0;
    for request in requests {
        match request.await.unwrap() {
            StatusCode::OK => served += 1,
            status => assert_eq!(status, StatusCode::UNAUTHORIZED),
        }
    }
    assert_eq!(served, 10);
    assert_eq!(m.calls(), 10);
}

#[tokio::test]
async fn budgets_of_different_tokens_are_counted_apart() {
    let m = Metered::new();
    let (first, second) = (m.token("t1", budget(1000)), m.token("t2", budget(1000)));
    assert_eq!(m.send("/report", &first).await.status(), StatusCode::OK);
    assert_eq!(m.send("/report", &second).await.status(), StatusCode::OK);
    assert_eq!(m.send("/report", &first).await.status(), StatusCode::UNAUTHORIZED);
}

// ---- refusals: no budget for this route ----

#[tokio::test]
async fn a_token_without_a_usable_budget_is_asked_to_come_back_with_one() {
    let cases = [
        ("no budget claim", Value::Null),
        ("another unit", json!({ "amount": 5000, "unit": "EUR", "decimals": 6 })),
        (
            "a scale the price cannot be stated in",
            json!({ "amount": 500, "unit": "USD", "decimals": 2 }),
        ),
        (
            "a unit differing in case",
            json!({ "amount": 5000, "unit": "usd", "decimals": 6 }),
        ),
    ];
    for (case, granted) in cases {
        let m = Metered::new();
        let response = m.send("/report", &m.token("t1", granted)).await;
        let (claims, params) = challenge(&response);
        assert_eq!(params, "", "{case}: no reason, this is not exhaustion");
        assert_eq!(
            claims["budget"],
            json!({"amount": 1_000_000, "unit": "USD", "decimals": 6}),
            "{case}"
        );
        assert!(
            response.headers().get("aauth-budget").is_none(),
            "{case}: nothing was granted"
        );
        assert!(claims.get("budget_consumed").is_none(), "{case}: nothing was consumed");
        assert_eq!(m.calls(), 0, "{case}");
    }
}

#[tokio::test]
async fn malformed_budget_claims_are_refused_with_invalid_budget() {
    let cases = [
        ("a float amount", json!({ "amount": 1.5, "unit": "USD", "decimals": 6 })),
        (
            "a string amount",
            json!({ "amount": "5000", "unit": "USD", "decimals": 6 }),
        ),
        (
            "a negative amount",
            json!({ "amount": -1, "unit": "USD", "decimals": 6 }),
        ),
        (
            "sixteen digits",
            json!({ "amount": 1_000_000_000_000_000u64, "unit": "USD", "decimals": 6 }),
        ),
        (
            "a quote in the unit",
            json!({ "amount": 5000, "unit": "US\"D", "decimals": 6 }),
        ),
        (
            "a long unit",
            json!({ "amount": 5000, "unit": "U".repeat(33), "decimals": 6 }),
        ),
        (
            "decimals above 18",
            json!({ "amount": 5000, "unit": "USD", "decimals": 19 }),
        ),
        ("no decimals", json!({ "amount": 5000, "unit": "USD" })),
        ("not an object", json!("5000 USD")),
    ];
    for (case, granted) in cases {
        let m = Metered::new();
        let response = m.send("/report", &m.token("t1", granted)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{case}");
        assert!(response.headers().get("aauth-requirement").is_none(), "{case}");
        assert!(response.headers().get("signature-error").is_none(), "{case}");
        assert_eq!(body_json(response).await["error"], "invalid_budget", "{case}");
        assert_eq!(m.calls(), 0, "{case}");
    }
}

#[tokio::test]
async fn a_request_without_an_auth_token_gets_the_scope_challenge_offering_a_budget() {
    let m = Metered::new();
    let h = &m.harness;
    let agent_token = h
        .agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW);
    let response = m.send("/report", &agent_token).await;
    let (claims, params) = challenge(&response);
    assert_eq!(params, "");
    assert_eq!(claims["scope"], "report");
    assert_eq!(
        claims["budget"],
        json!({"amount": 1_000_000, "unit": "USD", "decimals": 6})
    );
    assert_eq!(m.calls(), 0);
}

#[tokio::test]
async fn an_unsigned_request_is_asked_to_sign_and_mints_nothing() {
    let m = Metered::new();
    let response = m.router().oneshot(get("/report")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "aauth-requirement"), Some("requirement=agent-token"));
    assert_eq!(m.harness.aauth.minted_resource_tokens(), 0);
    assert_eq!(m.calls(), 0);
}

#[tokio::test]
async fn a_full_counter_store_answers_503_and_serves_nothing() {
    let m = Metered::with(|b| b.budgets(BudgetOptions::new().capacity_bytes(0)));
    let response = m.send("/report", &m.token("t1", budget(5000))).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_some());
    assert!(response.headers().get("signature-error").is_none());
    assert_eq!(body_json(response).await["error"], "temporarily_unavailable");
    assert_eq!(m.calls(), 0);
}

// ---- metadata and configuration ----

#[tokio::test]
async fn the_metadata_publishes_budget_units_and_the_usage_endpoint_when_configured() {
    let options = BudgetOptions::new()
        .unit("USD", 6, Some(10_000_000))
        .unit("tokens", 0, None)
        .usage_endpoint("https://resource.example/usage");
    let m = Metered::with(|b| b.budgets(options));
    let metadata = m.harness.aauth.metadata();
    assert_eq!(
        metadata["budget_units"],
        json!([{"unit": "USD", "decimals": 6, "max": 10_000_000}, {"unit": "tokens", "decimals": 0}])
    );
    assert_eq!(metadata["usage_endpoint"], "https://resource.example/usage");
    // The offer is the declared maximum.
    let response = m.send("/report", &m.token("t1", Value::Null)).await;
    assert_eq!(challenge(&response).0["budget"]["amount"], 10_000_000);
}

#[test]
fn the_metadata_has_no_budget_members_when_none_are_configured() {
    let metadata = Harness::new().aauth.metadata();
    assert!(metadata.get("budget_units").is_none());
    assert!(metadata.get("usage_endpoint").is_none());
}

#[test]
fn invalid_budget_options_are_configuration_errors() {
    let cases = [
        ("a space in the unit", BudgetOptions::new().unit("US D", 6, None)),
        ("decimals above 18", BudgetOptions::new().unit("USD", 19, None)),
        (
            "a max of 16 digits",
            BudgetOptions::new().unit("USD", 6, Some(1_000_000_000_000_000)),
        ),
        (
            "a unit declared twice",
            BudgetOptions::new().unit("USD", 6, None).unit("USD", 2, None),
        ),
        (
            "a plain-http usage endpoint",
            BudgetOptions::new().usage_endpoint("http://resource.example/usage"),
        ),
        (
            "a usage endpoint with credentials",
            BudgetOptions::new().usage_endpoint("https://u:p@resource.example/usage"),
        ),
    ];
    for (case, options) in cases {
        let built = tower_aauth::AAuth::builder(RESOURCE).budgets(options).build();
        assert!(built.is_err(), "{case}");
    }
}

#[test]
#[should_panic(expected = "is not declared in BudgetOptions::unit")]
fn a_price_in_an_undeclared_scale_panics_at_start_up() {
    let h = Harness::with(|b| b.budgets(BudgetOptions::new().unit("USD", 2, None)));
    let _ = h.aauth.meter("USD", 6, 1000);
}

#[test]
#[should_panic(expected = "must pay for one request")]
fn an_offer_below_one_request_panics_at_start_up() {
    let _ = Harness::new().aauth.meter("USD", 6, 1000).offer(999);
}

#[tokio::test]
async fn the_meter_extractor_without_the_meter_is_a_server_misconfiguration() {
    let h = Harness::new();
    let router = Router::new()
        .route("/x", route_get(|_: Meter| async { "never" }))
        .layer(h.aauth.layer());
    let mut request: Request<Body> = get("/x");
    h.agent.sign(&mut request, &KeySource::Jwt(h.auth_token("report")), NOW);
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

// ---- end to end ----

#[tokio::test]
async fn the_demo_budget_run_spends_the_budget_runs_out_and_steps_up_over_loopback() {
    use tower_aauth::testing::demo::{self, DemoOptions, PersonAction};
    let narration = Arc::new(std::sync::Mutex::new(String::new()));
    let sink = narration.clone();
    let print: demo::Printer = Arc::new(move |text: &str| sink.lock().unwrap().push_str(text));
    let report = demo::run_budget(DemoOptions::for_person(PersonAction::Approve), print)
        .await
        .expect("the demo starts");
    assert!(
        report.passed(),
        "failed checks: {:?}\n{}",
        report.failures().map(|c| &c.name).collect::<Vec<_>>(),
        narration.lock().unwrap()
    );
    assert!(report.checks.iter().any(|c| c.name.contains("reason=budget-exhausted")));
    assert!(
        narration
            .lock()
            .unwrap()
            .contains("aauth-budget: remaining=0; unit=\"USD\"; decimals=6")
    );
}

#[tokio::test]
async fn a_spent_budget_is_a_step_up_even_where_missing_scopes_are_refused_outright() {
    // `deny_insufficient_scope` turns a scope step-up into a 403; a budget is not a scope.
    let m = Metered::with(|b| b.deny_insufficient_scope());
    let token = m.token("t1", budget(1000));
    assert_eq!(m.send("/report", &token).await.status(), StatusCode::OK);
    let (_, params) = challenge(&m.send("/report", &token).await);
    assert_eq!(params, "; reason=budget-exhausted");
}

#[tokio::test]
async fn a_metered_route_above_the_agents_scope_ceiling_is_refused_before_anything_is_drawn() {
    let m = Metered::new();
    let ceilings = tower_aauth::policy::CeilingSet::new()
        .key(m.harness.agent.thumbprint(), "data.read")
        .unwrap();
    m.harness.aauth.scope_ceilings().replace(ceilings);
    let token = m.token("t1", budget(5000));
    let response = m.send("/report", &token).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get("aauth-budget").is_none());
    assert_eq!(body_json(response).await["error"], "scope_above_ceiling");
    assert_eq!(m.calls(), 0);
    m.harness
        .aauth
        .scope_ceilings()
        .replace(tower_aauth::policy::CeilingSet::new());
    let response = m.send("/report", &token).await;
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=4000; cost=1000; unit=\"USD\"; decimals=6"),
        "the refusal drew nothing"
    );
}

#[tokio::test]
async fn in_the_three_party_posture_the_step_up_goes_to_the_person_server_naming_the_person() {
    use support::app::App;
    use support::fixtures::PS;
    let app = App::three_party();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new()
        .route(
            "/report",
            route_get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "report" }
            })
            .route_layer(app.aauth.meter("USD", 6, 1000).scopes(["data.read"])),
        )
        .layer(app.aauth.layer());
    let claims = json!({
        "iss": PS, "dwk": engine::dwk::PERSON, "aud": RESOURCE, "ps": PS, "sub": "person-1",
        "jti": "at-1", "cnf": { "jwk": app.agent.public_jwk().to_json() },
        "scope": "data.read", "budget": budget(1000),
        "iat": NOW, "exp": NOW + 3600,
    });
    let token = app.ps.sign(engine::typ::AUTH, &claims);
    let send = |token: String| {
        let mut request = get("/report");
        app.agent.sign(&mut request, &KeySource::Jwt(token), NOW);
        router.clone().oneshot(request)
    };
    assert_eq!(send(token.clone()).await.unwrap().status(), StatusCode::OK);
    let response = send(token).await.unwrap();
    let (resource_token, params) = challenge(&response);
    assert_eq!(params, "; reason=budget-exhausted");
    assert_eq!(resource_token["aud"], PS);
    assert_eq!(resource_token["sub"], "person-1");
    assert_eq!(resource_token["presented_jti"], "at-1");
    assert_eq!(resource_token["budget"]["unit"], "USD");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_budget_from_a_person_server_the_resource_does_not_trust_by_name_is_never_spent() {
    use support::policy::{ps_grant, self_hosted_ps, three_party};
    // Any person server is accepted, and a grant policy honours `data.read` from anyone:
    // the scope is honoured, the budget (money the issuer vouches for) is not.
    let policy = |_: &tower_aauth::policy::PersonId, granted: &tower_aauth::Scopes| granted.clone();
    let h = three_party(move |b| b.grant_policy(policy));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new()
        .route(
            "/report",
            route_get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "report" }
            })
            .route_layer(h.aauth.meter("USD", 6, 1000).scopes(["data.read"])),
        )
        .layer(h.aauth.layer());
    let grant = ps_grant(
        &h,
        &self_hosted_ps(),
        "data.read",
        json!({ "budget": budget(1_000_000) }),
    );
    let mut request = get("/report");
    h.agent.sign(&mut request, &grant, NOW);
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&response, "aauth-requirement").is_some_and(|r| r.starts_with("requirement=")),
        "{:?}",
        response.headers()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing is served on a self-granted budget"
    );
}

#[tokio::test]
async fn a_request_dropped_before_it_is_answered_is_not_charged() {
    let m = Metered::new();
    let token = m.token("t1", budget(1000));
    // The client goes away (or a timeout outside the layer fires) while the handler runs.
    let dropped = tokio::time::timeout(Duration::from_millis(20), m.send("/hangs", &token)).await;
    assert!(dropped.is_err(), "the handler never answers");
    // The refund runs on the runtime once the request future is dropped.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let response = m.send("/report", &token).await;
    assert_eq!(response.status(), StatusCode::OK, "the whole budget is still there");
    assert_eq!(
        header(&response, "aauth-budget"),
        Some("remaining=0; cost=1000; unit=\"USD\"; decimals=6")
    );
}
