//! The demo's resource, written as a resource-server author would write it with this
//! crate's public API: nothing here knows about the demo beyond its identifiers.
//!
//! * `GET /data` needs an auth token granting `data.read` **and** `data.write`
//!   ([`AAuth::require_scopes`]); the guard answers the `auth-token` challenge with a
//!   resource token for the configured auth server.
//! * `GET /whoami` needs only a verified signature (pseudonymous `hwk` included).
//! * `GET /report` is metered ([`AAuth::meter`]): 1000 `USD` at 6 decimals a call, for
//!   an auth token granting `data.read` and a budget; its resource tokens offer 1 USD.
//! * The well-known metadata and JWKS come from [`AAuth::well_known_router`].
//! * The layer is outermost, so guards and extractors see what it verified.

use axum::Router;
use axum::routing::get;
use http::Method;
use serde_json::{Value, json};

use crate::budget::{BudgetOptions, Meter};
use crate::{AAuth, AuthGrant, ConfigError, Profile, ResourceKey, VerifiedAgent};

/// Builds the resource `resource` trusting `auth_server`, answering in `profile`.
pub(super) fn app(resource: &str, auth_server: &str, profile: Profile) -> Result<(AAuth, Router), ConfigError> {
    let mut builder = AAuth::builder(resource)
        .profile(profile)
        .signing_key(ResourceKey::generate().with_kid("resource-key-1"))
        .auth_server(auth_server)
        .scope("data.read", "Read your data")
        .scope("data.write", "Create and update your data")
        .metadata_name("Important Resource")
        .access_mode("auth-token")
        .budgets(BudgetOptions::new().unit("USD", 6, Some(super::budget::OFFER)));
    // Every server of the demo lives on http://127.0.0.1.
    builder = builder.dangerous().allow_http_loopback();
    let aauth = builder.build()?;
    let router = Router::new()
        .route(
            "/data",
            get(data).route_layer(aauth.require_scopes(["data.read", "data.write"])),
        )
        .route("/whoami", get(whoami).route_layer(aauth.require_verified_agent()))
        .route(
            "/report",
            get(report).route_layer(aauth.meter("USD", 6, super::budget::PRICE).scopes(["data.read"])),
        )
        .merge(aauth.well_known_router())
        .layer(aauth.layer());
    Ok((aauth, router))
}

/// Who called, as the original demo's resource reports it: the agent identifier when the
/// request names one (a `jwks_uri` signer, a demo-generation `agent` claim), else the key
/// thumbprint.
fn caller(agent: &VerifiedAgent, method: &Method) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    body.insert("scheme".into(), agent.scheme.as_str().into());
    body.insert("token_type".into(), json!(agent.token_kind.map(|k| k.typ())));
    body.insert("method".into(), method.as_str().into());
    body.insert(
        "agent".into(),
        agent.agent.as_ref().map_or(&*agent.key_thumbprint, |a| a.id()).into(),
    );
    body.insert("agent_jkt".into(), (*agent.key_thumbprint).into());
    body
}

async fn data(method: Method, agent: VerifiedAgent, grant: AuthGrant) -> axum::Json<Value> {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), "Access granted".into());
    body.insert("data".into(), "This is protected data (authorized)".into());
    body.extend(caller(&agent, &method));
    body.insert("sub".into(), json!(grant.subject));
    body.insert("scope".into(), grant.scopes.to_string().into());
    axum::Json(Value::Object(body))
}

async fn whoami(method: Method, agent: VerifiedAgent) -> axum::Json<Value> {
    let mut body = caller(&agent, &method);
    body.insert("message".into(), "Signature verified".into());
    axum::Json(Value::Object(body))
}

/// A metered report: what the budget granted, and a line of data.
async fn report(meter: Meter) -> axum::Json<Value> {
    axum::Json(json!({
        "report": "quarterly figures",
        "granted": { "amount": meter.granted_amount(), "unit": meter.unit(), "decimals": meter.decimals() },
    }))
}
