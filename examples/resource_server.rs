//! The seed article's "important resource" as a runnable AAuth resource server.
//!
//! ```text
//! AAUTH_RESOURCE=http://127.0.0.1:8080 AAUTH_AUTH_SERVER=http://127.0.0.1:9000 \
//! AAUTH_ALLOW_HTTP_LOOPBACK=1 cargo run --example resource_server
//! ```
//!
//! Routes: `GET /data` needs `data.read`, `POST /data` needs `data.write`, `GET /whoami`
//! needs only a verified signature; `POST /trade?symbol=…&quantity=…` (the CIBA seed's
//! risky operation) needs an auth token whose `authorization_details` approves that exact
//! trade (`{"type":"trade","symbol":…,"quantity":…}`, quantity at most the approved
//! one), answers a missing or different approval with a step-up challenge whose resource
//! token carries the trade to approve, and executes each approval once; `GET /report`
//! is metered (draft-hardt-aauth-budgets): it needs `data.read` and an auth token whose
//! `budget` pays 1000 `USD` at 6 decimals (0.001 USD) per call, answers every call with
//! `AAuth-Budget`, and a spent budget with `401 …; reason=budget-exhausted` and a resource
//! token offering up to 1 USD (the metadata's `budget_units`);
//! `POST /orders` needs `orders.write` and is delivered deferred: an agent without it gets
//! `202` with a pending URL and the `auth-token` requirement, and the held order runs when
//! a poll of that URL presents a sufficient auth token (with `AAUTH_REDIS_URL` the poll may
//! reach any replica); `/.well-known/aauth-resource.json` and its JWKS are public. Every
//! `200` body is JSON naming `agent` (and `agent_provider`), `scheme`, `token_type`,
//! `scope` and `sub`.
//!
//! The layer also answers two endpoints the metadata advertises: `POST /aauth/revoke`
//! (`revocation_endpoint`: a trusted access or person server revokes a token it issued,
//! on every replica when the policy is shared through Redis) and `POST /aauth/authorize`
//! (`authorization_endpoint`: an agent presenting a person token asks for scopes and gets
//! a resource token; this example holds no accounts, so any `account` is
//! `invalid_account`).
//!
//! A three-party resource honours grants only from the person servers it names: any
//! server can be a person server, and one that grants itself `data.write` must not be
//! served. So without `AAUTH_AUTH_SERVER` the example refuses to start unless
//! `AAUTH_PERSON_SERVER` names at least one.
//!
//! Environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AAUTH_ADDR` | listen address | `127.0.0.1:8080` |
//! | `AAUTH_RESOURCE` | resource identifier | `https://important-resource.example` |
//! | `AAUTH_AUTH_SERVER` | trusted access server (four-party); unset: three-party | — |
//! | `AAUTH_PERSON_SERVER` | trusted person servers, comma-separated: their person tokens name the person in four-party resource tokens; in three-party their auth tokens are the grants honoured (required there) | — |
//! | `AAUTH_PROFILE` | `draft-11` or `legacy` | `draft-11` |
//! | `AAUTH_ALLOW_HTTP_LOOPBACK` | `1`: admit `http://127.0.0.1:PORT` identifiers (development) | off |
//! | `AAUTH_WEB_BOT_AUTH` | `1`: verify Web Bot Auth signatures too; `GET /whoami` answers a verified bot `{"bot": {"origin", "thumbprint"}}` (no `agent` member) | off |
//! | `AAUTH_SIGNING_KEYS` | directory of the resource's signing keys, shared by every replica (layout below); reloaded when it changes and on SIGHUP | unset: an ephemeral key, new at each start (development; said on stderr) |
//! | `AAUTH_REDIS_URL` | `redis://host:port/`: the replay store, held (`202`) requests, the budget counters, and revocations, ceilings and key → agent bindings shared by every replica (needs `--features redis`) | per process |
//! | `AAUTH_REVOCATIONS` | a revocation file, reloaded within 1 s of a change | — |
//! | `AAUTH_CEILINGS` | a scope-ceilings file, reloaded within 1 s of a change | — |
//! | `AAUTH_METRICS_ADDR` | serve Prometheus text at `http://ADDR/metrics`: every metric of `tower_aauth::Metric` (requests by decision and code, verification time, caches, discovery, stores); port `0` picks one, printed at start | off |
//!
//! `AAUTH_SIGNING_KEYS` holds one file per key (the full rules are on
//! `AAuthBuilder::signing_keys_from`):
//!
//! ```text
//! keys/
//! ├── 2026-01.pem                         PKCS#8 Ed25519 (openssl genpkey -algorithm ed25519)
//! ├── 2026-04.signs-from-1775001600.pem   published now, signs from that Unix time
//! └── 2026-07.signs-from-1782864000.jwk   a private OKP Ed25519 JWK ("d"), likewise
//! ```
//!
//! Of the keys whose time has come the latest signs; every key in the directory is
//! published at `/.well-known/jwks.json`. Add a new key with a time at least ten minutes
//! ahead; remove the old file at least 300 s after that time.
//!
//! The policy files have the shapes `Revocations::reload_json` and
//! `ScopeCeilings::reload_json` read:
//!
//! ```text
//! $ cat revocations.json
//! {"agents": ["aauth:assistant@agent.example"],
//!  "key_thumbprints": ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"],
//!  "jtis": [{"iss": "https://as.example", "jti": "at-42"}],
//!  "persons": [{"iss": "https://ps.example", "sub": "8f14e45fceea167a5a36dedd4bea2543"}]}
//! $ cat ceilings.json
//! {"agents": {"aauth:reporting@agent.example": "data.read"},
//!  "key_thumbprints": {"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs": "data.read data.write"},
//!  "default": "data.read"}
//! ```
//!
//! A malformed file at start stops the example; a malformed change is logged and what is
//! in force stays. With `AAUTH_REDIS_URL` (`policy::RedisPolicySync`), the revocation file
//! is each replica's local layer, enforced together with the shared set that revocations
//! written through the API (`aauth.revocations().revoke(…)`) and operators' tools travel
//! in; the ceilings file is published to every replica when it changes (the last write
//! wins). A replica that cannot confirm the shared state for 3 s answers verified requests
//! `503` with `Retry-After: 1`. `docs/deployment.md` has the keys and the failure answers.
//!
//! The layer wraps the whole router (not `Router::layer`), so that a poll of a request
//! held by another replica is routed to the held route here.
//!
//! The main listener sets `TCP_NODELAY` on every connection: pipelined requests on one
//! connection are otherwise held back by Nagle's algorithm (about 4× slower on loopback).

use std::process::ExitCode;

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use http::request::Parts;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_aauth::bot::{VerifiedBot, WebBotAuthOptions};
use tower_aauth::budget::{BudgetOptions, Meter};
use tower_aauth::policy::AccountDecision;
use tower_aauth::replay::ReplayOptions;
use tower_aauth::{AAuth, AuthGrant, DeferredOptions, ExtractRejection, Profile, VerifiedAgent};

#[path = "fleet/policy.rs"]
mod fleet_policy;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn configure(
    replay: Option<ReplayOptions>,
    deferred: DeferredOptions,
    budgets: BudgetOptions,
) -> Result<(String, AAuth), String> {
    let addr = env("AAUTH_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let resource = env("AAUTH_RESOURCE").unwrap_or_else(|| "https://important-resource.example".to_owned());
    let profile = match env("AAUTH_PROFILE").as_deref() {
        None | Some("draft-11") => Profile::Draft11,
        Some("legacy") => Profile::Legacy,
        Some(other) => return Err(format!("AAUTH_PROFILE must be draft-11 or legacy, not {other:?}")),
    };
    let mut builder = AAuth::builder(resource)
        .profile(profile)
        .scope("data.read", "Read access to your data")
        .scope("data.write", "Create and update your data")
        .scope("orders.write", "Place orders")
        .deferred_delivery(deferred)
        .metadata_name("Important Resource")
        .access_mode("auth-token")
        .budgets(budgets)
        .revocation_endpoint("/aauth/revoke")
        .authorization_endpoint("/aauth/authorize", |_, _| AccountDecision::NotHeld);
    let person_servers: Vec<String> = env("AAUTH_PERSON_SERVER")
        .map(|list| {
            list.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    builder = match env("AAUTH_AUTH_SERVER") {
        Some(server) => builder.auth_server(server),
        None if person_servers.is_empty() => {
            return Err("three-party posture (no AAUTH_AUTH_SERVER) needs AAUTH_PERSON_SERVER: \
                        the person servers whose grants this resource honours"
                .to_owned());
        }
        None => builder,
    };
    for person_server in person_servers {
        builder = builder.person_server(person_server);
    }
    match env("AAUTH_ALLOW_HTTP_LOOPBACK").as_deref() {
        None | Some("0") => {}
        Some("1") => {
            builder = builder.dangerous().allow_http_loopback();
        }
        Some(other) => return Err(format!("AAUTH_ALLOW_HTTP_LOOPBACK must be 1 or 0, not {other:?}")),
    }
    builder = match env("AAUTH_SIGNING_KEYS") {
        Some(dir) => builder.signing_keys_from(dir),
        None => {
            eprintln!(
                "resource_server: AAUTH_SIGNING_KEYS is not set: signing with an ephemeral key, new at \
                 each start (development only: another replica or a restart cannot verify its \
                 resource tokens)"
            );
            builder
        }
    };
    if let Some(replay) = replay {
        builder = builder.replay(replay);
    }
    match env("AAUTH_WEB_BOT_AUTH").as_deref() {
        None | Some("0") => {}
        Some("1") => builder = builder.web_bot_auth(WebBotAuthOptions::new()),
        Some(other) => return Err(format!("AAUTH_WEB_BOT_AUTH must be 1 or 0, not {other:?}")),
    }
    let aauth = builder.build().map_err(|e| e.to_string())?;
    Ok((addr, aauth))
}

/// What every `200` says about the caller.
fn describe(agent: &VerifiedAgent, grant: Option<&AuthGrant>) -> Value {
    let token = agent.request.token.as_deref().map(|t| &t.claims);
    json!({
        "agent": agent.agent.as_ref().map_or(&*agent.key_thumbprint, |a| a.id()),
        "agent_provider": agent.agent.as_ref().map(|a| a.provider()),
        "scheme": agent.scheme.as_str(),
        "token_type": agent.token_kind.map(|k| k.typ()),
        "scope": grant.map(|g| g.scopes.to_string()),
        "sub": token.and_then(|t| t.sub.as_deref()),
    })
}

async fn read_data(agent: VerifiedAgent, grant: Option<AuthGrant>) -> axum::Json<Value> {
    let mut body = describe(&agent, grant.as_ref());
    body["data"] = json!(["important", "records"]);
    axum::Json(body)
}

async fn write_data(agent: VerifiedAgent, grant: Option<AuthGrant>) -> axum::Json<Value> {
    let mut body = describe(&agent, grant.as_ref());
    body["written"] = true.into();
    axum::Json(body)
}

/// The approved transaction, as the auth server puts it in `authorization_details`.
#[derive(Debug, Deserialize, Serialize)]
struct Trade {
    symbol: String,
    quantity: u64,
}

/// The trade the request asks for, from its (signed) query.
fn requested_trade(request: &Parts) -> Option<Trade> {
    let mut symbol = None;
    let mut quantity = None;
    for (name, value) in url::form_urlencoded::parse(request.uri.query()?.as_bytes()) {
        match &*name {
            "symbol" => symbol = Some(value.into_owned()),
            "quantity" => quantity = value.parse().ok(),
            _ => {}
        }
    }
    Some(Trade {
        symbol: symbol?,
        quantity: quantity?,
    })
}

/// The person approved this symbol and at most this quantity.
fn approves(approved: &Trade, request: &Parts) -> bool {
    requested_trade(request).is_some_and(|r| r.symbol == approved.symbol && r.quantity <= approved.quantity)
}

async fn trade(agent: VerifiedAgent, grant: AuthGrant) -> axum::Json<Value> {
    let mut body = describe(&agent, Some(&grant));
    body["approved"] = grant
        .details::<Trade>("trade")
        .map(|trades| json!(trades))
        .unwrap_or(Value::Null);
    body["executed"] = true.into();
    axum::Json(body)
}

async fn place_order(agent: VerifiedAgent, grant: Option<AuthGrant>, body: axum::body::Bytes) -> axum::Json<Value> {
    let mut answer = describe(&agent, grant.as_ref());
    answer["order"] = serde_json::from_slice(&body).unwrap_or(Value::Null);
    answer["placed"] = true.into();
    axum::Json(answer)
}

/// The metered report: every call costs the route's price (the handler reports nothing).
async fn report(agent: VerifiedAgent, grant: AuthGrant, meter: Meter) -> axum::Json<Value> {
    let mut body = describe(&agent, Some(&grant));
    body["report"] = "quarterly figures".into();
    body["budget"] = json!({ "amount": meter.granted_amount(), "unit": meter.unit(), "decimals": meter.decimals() });
    axum::Json(body)
}

async fn whoami(agent: VerifiedAgent, grant: Option<AuthGrant>) -> axum::Json<Value> {
    axum::Json(describe(&agent, grant.as_ref()))
}

/// `GET /whoami`: any verified AAuth signature; with `AAUTH_WEB_BOT_AUTH=1` also a verified
/// Web Bot Auth bot, answered as a bot.
fn whoami_route(aauth: &AAuth) -> axum::routing::MethodRouter {
    if env("AAUTH_WEB_BOT_AUTH").as_deref() == Some("1") {
        get(whoami_or_bot)
    } else {
        get(whoami).route_layer(aauth.require_verified_agent())
    }
}

/// A bot is named by its key directory's origin and its key's thumbprint, and is never an
/// agent; any other caller needs a verified AAuth signature, answered as without bots (the
/// extractor's refusal is the guard's challenge).
async fn whoami_or_bot(
    bot: Option<VerifiedBot>,
    agent: Result<VerifiedAgent, ExtractRejection>,
    grant: Option<AuthGrant>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match (bot, agent) {
        (Some(bot), _) => axum::Json(json!({
            "bot": { "origin": bot.directory_origin(), "thumbprint": bot.thumbprint() },
        }))
        .into_response(),
        (None, Ok(agent)) => axum::Json(describe(&agent, grant.as_ref())).into_response(),
        (None, Err(refusal)) => refusal.into_response(),
    }
}

/// Histogram buckets of the `_seconds` metrics: 50 µs (a warm verification) to 2.5 s (a
/// slow discovery fetch).
const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// With `AAUTH_METRICS_ADDR` set: installs the Prometheus recorder and serves its text at
/// `/metrics` on that address (a listener of its own, apart from the resource's routes).
async fn serve_metrics() -> Result<(), String> {
    let Some(addr) = env("AAUTH_METRICS_ADDR") else {
        return Ok(());
    };
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), SECONDS_BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    tower_aauth::Metric::describe_all();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| format!("cannot listen on {addr} for metrics: {error}"))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    let render = |handle: PrometheusHandle| async move {
        (
            [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            handle.render(),
        )
    };
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms and summaries are compacted here rather than on each render.
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = Router::new().route("/metrics", get(move || render(handle.clone())));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("resource_server: metrics listener: {error}");
        }
    });
    println!("resource_server: metrics on http://{local}/metrics");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "tower_aauth=info".into()),
        )
        .init();
    let configured = match (
        fleet_policy::replay_options().await,
        fleet_policy::deferred_options().await,
        fleet_policy::budget_options().await,
    ) {
        (Ok(replay), Ok(deferred), Ok(budgets)) => configure(replay, deferred, budgets),
        (Err(message), _, _) | (_, Err(message), _) | (_, _, Err(message)) => Err(message),
    };
    let (addr, aauth) = match configured {
        Ok(configured) => configured,
        Err(message) => {
            eprintln!("resource_server: {message}");
            return ExitCode::from(2);
        }
    };
    if env("AAUTH_SIGNING_KEYS").is_some() {
        tokio::spawn(aauth.watch_signing_keys());
    }
    let _policy = match fleet_policy::start(&aauth).await {
        Ok(policy) => policy,
        Err(message) => {
            eprintln!("resource_server: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = serve_metrics().await {
        eprintln!("resource_server: {message}");
        return ExitCode::from(2);
    }
    let app = Router::new()
        .route("/data", get(read_data).route_layer(aauth.require_scopes(["data.read"])))
        .route(
            "/data",
            axum::routing::post(write_data).route_layer(aauth.require_scopes(["data.write"])),
        )
        .route("/whoami", whoami_route(&aauth))
        .route(
            "/report",
            get(report).route_layer(aauth.meter("USD", 6, 1000).scopes(["data.read"])),
        )
        .route(
            "/trade",
            axum::routing::post(trade).route_layer(
                aauth
                    .require_detail("trade", approves)
                    .step_up(requested_trade)
                    .single_use(),
            ),
        )
        .route(
            "/orders",
            axum::routing::post(place_order).route_layer(aauth.require_scopes(["orders.write"]).deferred()),
        )
        .merge(aauth.pending_router())
        .merge(aauth.well_known_router());
    let app = tower::Layer::layer(&aauth.layer(), app);
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("resource_server: cannot listen on {addr}: {error}");
            return ExitCode::from(2);
        }
    };
    println!(
        "resource_server: {} listening on http://{addr} (signing kid {})",
        aauth.resource(),
        aauth.active_kid()
    );
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            eprintln!("resource_server: cannot set TCP_NODELAY: {error}");
        }
    });
    match axum::serve(
        listener,
        axum::ServiceExt::<http::Request<axum::body::Body>>::into_make_service(app),
    )
    .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("resource_server: {error}");
            ExitCode::FAILURE
        }
    }
}
