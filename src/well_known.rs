//! What the resource publishes (resource metadata, [AAuth draft -11, "Metadata
//! Documents"][draft-11]): `/.well-known/aauth-resource.json` and the JWKS its `jwks_uri`
//! names.
//!
//! The JWKS lists every published key (the active signing key first, then staged and
//! not-yet-retired ones; see [`AAuth::rotate`]), each with `kid`, `alg` `Ed25519` and
//! `use` `sig`, and public members only, so no private key member can leak. Both
//! documents are served with a short `Cache-Control` so that key removal takes effect
//! within minutes: verifiers honour cache headers when they cache a JWKS.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use serde_json::{Map, Value, json};

use crate::config::AAuth;
use crate::wire;

/// `Cache-Control` of both documents.
pub const CACHE_CONTROL: &str = "public, max-age=300";

const BASE_COMPONENTS: [&str; 4] = ["@method", "@authority", "@path", "signature-key"];

impl AAuth {
    /// The resource metadata document (`/.well-known/aauth-resource.json`).
    pub fn metadata(&self) -> Value {
        let shared = &self.shared;
        let authz = &shared.authz;
        let mut doc = Map::new();
        doc.insert("issuer".into(), shared.resource.clone().into());
        doc.insert(
            "jwks_uri".into(),
            format!("{}{}", shared.resource, wire::path::JWKS).into(),
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
        doc.insert("accept_signature_algs".into(), json!([wire::alg::ED25519]));
        let schemes: Vec<&str> = shared.schemes.schemes().iter().map(|s| s.as_str()).collect();
        doc.insert("accept_signature_schemes".into(), json!(schemes));
        Value::Object(doc)
    }

    /// The JWKS document (public keys only).
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .public_keys()
            .iter()
            .map(|jwk| {
                let mut key = jwk.to_json();
                key["alg"] = wire::alg::ED25519.into();
                key["use"] = "sig".into();
                key
            })
            .collect();
        json!({ "keys": keys })
    }

    /// A router serving [`wire::path::RESOURCE_METADATA`] and [`wire::path::JWKS`]; merge
    /// it into the application's router, inside the AAuth layer (the layer lets unsigned
    /// requests through, and a default requirement never applies to these paths).
    #[cfg(feature = "axum")]
    pub fn well_known_router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        use axum::routing::get;
        let metadata = self.clone();
        let jwks = self.clone();
        axum::Router::new()
            .route(
                wire::path::RESOURCE_METADATA,
                get(move || {
                    let aauth = metadata.clone();
                    async move { document(aauth.metadata()) }
                }),
            )
            .route(
                wire::path::JWKS,
                get(move || {
                    let aauth = jwks.clone();
                    async move { document(aauth.jwks()) }
                }),
            )
    }
}

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
