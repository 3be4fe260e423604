//! The demo's resource: this crate's layer around `/data`, which needs
//! `data.read data.write`, plus the resource's metadata and JWKS.

use axum::Router;
use axum::extract::Extension;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::jose::ResourceKey;
use crate::token::{Scopes, TokenKind};
use crate::verifier::VerifiedRequest;
use crate::{AAuth, wire};

use super::DATA_SCOPES;

/// Lifetime of the resource tokens the demo mints (the digest recommends at most 5 min).
const RESOURCE_TOKEN_LIFETIME: u64 = 300;

#[derive(Clone)]
struct Resource {
    aauth: AAuth,
    key: std::sync::Arc<ResourceKey>,
    auth_server: String,
}

pub(super) fn router(aauth: AAuth, key: ResourceKey, auth_server: &str) -> Router {
    let issuer = aauth.resource().to_owned();
    let metadata = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "scope_descriptions": {
            "data.read": "Read your data",
            "data.write": "Create and update your data",
        },
    });
    let jwks = json!({ "keys": [key.public_jwk().to_json()] });
    let resource = Resource {
        aauth: aauth.clone(),
        key: std::sync::Arc::new(key),
        auth_server: auth_server.to_owned(),
    };
    Router::new()
        .route("/data", get(data))
        .route(
            &format!("/.well-known/{}", wire::dwk::RESOURCE),
            get(move || std::future::ready(axum::Json(metadata))),
        )
        .route(
            "/.well-known/jwks.json",
            get(move || std::future::ready(axum::Json(jwks))),
        )
        .with_state(resource)
        .layer(aauth.layer())
}

async fn data(
    axum::extract::State(resource): axum::extract::State<Resource>,
    method: Method,
    verified: Option<Extension<VerifiedRequest>>,
) -> Response {
    let Some(Extension(verified)) = verified else {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            wire::header::AAUTH_REQUIREMENT,
            HeaderValue::from_static("requirement=agent-token"),
        );
        return response;
    };
    let required = Scopes::parse(DATA_SCOPES).unwrap_or_default();
    if let Some(token) = &verified.token
        && token.claims.kind == TokenKind::Auth
        && token.claims.scope.contains_all(&required)
    {
        let claims = &token.claims;
        return axum::Json(json!({
            "message": "Access granted",
            "data": "This is protected data (authorized)",
            "scheme": verified.scheme.as_str(),
            "token_type": claims.kind.typ(),
            "method": method.as_str(),
            "agent": &*verified.key_thumbprint,
            "sub": claims.sub,
            "scope": claims.scope.iter().collect::<Vec<_>>().join(" "),
        }))
        .into_response();
    }
    challenge(&resource, &verified)
}

/// `401` + `AAuth-Requirement: requirement=auth-token; resource-token="…"`.
fn challenge(resource: &Resource, verified: &VerifiedRequest) -> Response {
    let now = resource.aauth.clock().now();
    let mut jti = [0u8; 12];
    getrandom::fill(&mut jti).expect("the operating system has no usable random source");
    let claims = json!({
        "iss": resource.aauth.resource(),
        "dwk": wire::dwk::RESOURCE,
        "aud": resource.auth_server,
        "jti": crate::jose::b64url(jti),
        "iat": now,
        "exp": now + RESOURCE_TOKEN_LIFETIME,
        "agent_jkt": &*verified.key_thumbprint,
        "scope": DATA_SCOPES,
    });
    let token = resource.key.sign_jwt(wire::typ::RESOURCE, wire::alg::ED25519, &claims);
    let mut response = (StatusCode::UNAUTHORIZED, "Authorization required").into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "requirement={}; {}=\"{token}\"",
        wire::requirement::AUTH_TOKEN,
        wire::requirement::RESOURCE_TOKEN_PARAM
    )) {
        headers.insert(wire::header::AAUTH_REQUIREMENT, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
