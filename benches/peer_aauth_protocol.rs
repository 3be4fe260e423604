//! The same signed requests verified by another Rust AAuth implementation, the
//! `aauth-protocol` 0.2.0 crate (`resource::authenticate` for `jwt`, `httpsig::verify`
//! for `hwk`), in the same run as our layer and the Ed25519 limit. Goal: our warm `jwt`
//! path at least 1.8 × faster than the peer's.
//!
//! The peer is called directly (no HTTP framework around it); ours goes through axum and
//! the layer, so the comparison favours the peer.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use aauth_protocol::discovery::{JwksResolver, NoKeys, StaticFetch};
use aauth_protocol::httpsig::{Incoming, VerifyOptions};
use aauth_protocol::token::TokenKind;
use common::{AS, Goal, Limit, NOW, RESOURCE, Resource, benching, interleave, report};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use tower_aauth::testing::KeySource;

fn incoming(headers: &HeaderMap) -> Incoming<'_> {
    Incoming {
        method: "GET",
        authority: "resource.example",
        path: "/data",
        query: None,
        headers,
        body: None,
    }
}

fn main() {
    let limit = Limit::new();
    let resource = Resource::guarded();
    let token = resource.auth_token("data.read", 0);
    // Both sides cycle through the same requests, each with its own signature.
    let jwt = resource.signed_variants(&KeySource::Jwt(token));
    // hwk carries no token: it goes to the same handler without the scope guard.
    let unguarded = Resource::new();
    let hwk = unguarded.signed_variants(&KeySource::Hwk);
    for (jwt, hwk) in jwt.iter().zip(&hwk) {
        assert_eq!(resource.status(jwt), StatusCode::OK);
        assert_eq!(unguarded.status(hwk), StatusCode::OK);
    }

    let fetch = StaticFetch::new();
    fetch.insert(
        format!("{AS}/.well-known/aauth-access.json"),
        json!({ "issuer": AS, "jwks": resource.access_server.jwks() }),
    );
    let resolver = JwksResolver::new(Arc::new(fetch));
    let options = VerifyOptions {
        now: NOW as i64,
        ..VerifyOptions::default()
    };
    let accept = [TokenKind::Auth];
    for (jwt, hwk) in jwt.iter().zip(&hwk) {
        let authenticated = resource.block_on(aauth_protocol::resource::authenticate(
            &incoming(jwt),
            RESOURCE,
            &accept,
            &options,
            &resolver,
        ));
        assert!(
            authenticated.is_ok(),
            "the peer accepts the jwt request: {:?}",
            authenticated.err()
        );
        let verified = resource.block_on(aauth_protocol::httpsig::verify(&incoming(hwk), &options, &NoKeys));
        assert!(verified.is_ok(), "the peer accepts the hwk request");
    }

    let peer_jwt = |iters: u64| {
        resource.block_on(async {
            let start = common::Stopwatch::start();
            for i in 0..iters as usize {
                let headers = &jwt[i % jwt.len()];
                let result =
                    aauth_protocol::resource::authenticate(&incoming(headers), RESOURCE, &accept, &options, &resolver)
                        .await;
                black_box(result.is_ok());
            }
            start.elapsed()
        })
    };
    let peer_hwk = |iters: u64| {
        resource.block_on(async {
            let start = common::Stopwatch::start();
            for i in 0..iters as usize {
                let result = aauth_protocol::httpsig::verify(&incoming(&hwk[i % hwk.len()]), &options, &NoKeys).await;
                black_box(result.is_ok());
            }
            start.elapsed()
        })
    };
    let ours_jwt = |iters: u64| resource.run_cycling(&jwt, iters);
    let ours_hwk = |iters: u64| unguarded.run_cycling(&hwk, iters);

    let mut c = common::criterion();
    let mut group = c.benchmark_group("peer_aauth_protocol");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    group.bench_function("ours_warm_jwt", |b| b.iter_custom(ours_jwt));
    group.bench_function("peer_authenticate_jwt", |b| b.iter_custom(peer_jwt));
    group.bench_function("ours_hwk", |b| b.iter_custom(ours_hwk));
    group.bench_function("peer_verify_hwk", |b| b.iter_custom(peer_hwk));
    group.finish();
    c.final_summary();
    if benching() {
        report(
            "peer jwt (authenticate)",
            "limit",
            interleave(|n| limit.run(n), peer_jwt),
            Goal::None,
        );
        report(
            "peer hwk (httpsig::verify)",
            "limit",
            interleave(|n| limit.run(n), peer_hwk),
            Goal::None,
        );
        report(
            "ours warm jwt vs peer",
            "peer",
            interleave(peer_jwt, ours_jwt),
            Goal::SpeedUpAtLeast(1.8),
        );
        report("ours hwk vs peer", "peer", interleave(peer_hwk, ours_hwk), Goal::None);
    }
}
