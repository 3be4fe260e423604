//! What the resource publishes (resource metadata, [AAuth draft -11, "Metadata
//! Documents"][draft-11]): `/.well-known/aauth-resource.json` and the JWKS its `jwks_uri`
//! names.
//!
//! The JWKS lists every published key (the active signing key first, then staged and
//! not-yet-retired ones; see [`AAuth::rotate`](crate::AAuth::rotate)), each with `kid`, `alg` `Ed25519` and
//! `use` `sig`, and public members only, so no private key member can leak. Both
//! documents are served with a short `Cache-Control` so that key removal takes effect
//! within minutes: verifiers honour cache headers when they cache a JWKS.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

#[cfg(feature = "axum")]
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::names;
use crate::state::Shared;

/// `Cache-Control` of both documents.
#[cfg(feature = "axum")]
const CACHE_CONTROL: &str = "public, max-age=300";

const BASE_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "signature-key"];

#[cfg(feature = "axum")]
fn document(value: Value) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static(CACHE_CONTROL),
        )],
        axum::Json(value),
    )
        .into_response()
}

/// The resource metadata document (`/.well-known/aauth-resource.json`).
pub(crate) fn metadata(shared: &Shared) -> Value {
    let authz = &shared.authz;
    let mut doc = Map::new();
    doc.insert("issuer".into(), shared.resource.clone().into());
    doc.insert(
        "jwks_uri".into(),
        format!("{}{}", shared.resource, names::path::JWKS).into(),
    );
    let m = &authz.metadata;
    for (name, value) in [
        ("access_mode", &m.access_mode),
        ("name", &m.name),
        ("description", &m.description),
        ("documentation_uri", &m.documentation_uri),
    ] {
        if let Some(value) = value {
            doc.insert(name.into(), value.clone().into());
        }
    }
    if !authz.scopes.is_empty() {
        let scopes: Map<String, Value> = authz
            .scopes
            .iter()
            .map(|(name, description)| (name.clone(), description.clone().into()))
            .collect();
        doc.insert("scope_descriptions".into(), Value::Object(scopes));
    }
    doc.insert("signature_window".into(), shared.window.into());
    let extra: Vec<&str> = shared
        .required
        .iter()
        .map(String::as_str)
        .filter(|c| !BASE_COMPONENTS.contains(c))
        .collect();
    if !extra.is_empty() {
        doc.insert("additional_signature_components".into(), json!(extra));
    }
    let endpoints = &shared.endpoints;
    if let Some(path) = &endpoints.revocation {
        doc.insert(
            "revocation_endpoint".into(),
            format!("{}{path}", shared.resource).into(),
        );
    }
    if let Some((path, _)) = &endpoints.authorization {
        doc.insert(
            "authorization_endpoint".into(),
            format!("{}{path}", shared.resource).into(),
        );
    }
    doc.insert("accept_signature_algs".into(), json!([names::alg::ED25519]));
    let schemes: Vec<&str> = shared.schemes.schemes().iter().map(|s| s.as_str()).collect();
    doc.insert("accept_signature_schemes".into(), json!(schemes));
    for (name, value) in shared.budgets.metadata() {
        doc.insert(name.into(), value);
    }
    Value::Object(doc)
}

/// The JWKS document (public keys only).
pub(crate) fn jwks(shared: &Shared) -> Value {
    let keys: Vec<Value> = shared
        .authz
        .keys
        .snapshot()
        .public_keys(shared.clock.now())
        .iter()
        .map(|jwk| {
            let mut key = jwk.to_json();
            key["alg"] = names::alg::ED25519.into();
            key["use"] = "sig".into();
            key
        })
        .collect();
    json!({ "keys": keys })
}

/// A router serving [`names::path::RESOURCE_METADATA`] and [`names::path::JWKS`]; merge
/// it into the application's router, inside the AAuth layer (the layer lets unsigned
/// requests through, and a default requirement never applies to these paths).
#[cfg(feature = "axum")]
pub(crate) fn router<S>(shared: Arc<Shared>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use axum::routing::get;
    let for_jwks = shared.clone();
    axum::Router::new()
        .route(
            names::path::RESOURCE_METADATA,
            get(move || {
                let shared = shared.clone();
                async move { document(metadata(&shared)) }
            }),
        )
        .route(
            names::path::JWKS,
            get(move || {
                let shared = for_jwks.clone();
                async move { document(jwks(&shared)) }
            }),
        )
}
