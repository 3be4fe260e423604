//! A Web Bot Auth signed `GET /data` (`tag="web-bot-auth"`, `Signature-Agent` member,
//! fresh nonce, directory cached), through `AAuthLayer` to an empty axum handler, against
//! the Ed25519 limit measured in the same run. Goal: ≤ 1.10 ×. Each request is signed
//! with its own nonce before its batch is timed, so the nonce's replay-store entry is part
//! of what is measured. The store is in a steady state as in production: signatures live
//! one second and the allowed clock skew is zero, so each entry expires two seconds after
//! it is made and the store, at a capacity of 100 000 (twice the default), holds the
//! last few seconds of nonces; every response is checked to be `200` (a refused request would measure
//! another path). A second, informational line signs without a nonce (nothing is
//! remembered for a `GET`, as in `layer_hwk`).

mod common;

use std::sync::Arc;

use axum::body::Body;
use common::{Goal, Limit, NOW, Resource, URL, benching, interleave, report};
use http::{Request, StatusCode};
use tower_aauth::bot::WebBotAuthOptions;
use tower_aauth::testing::{BotDirectory, BotSignOptions, ManualClock};

/// Twice the default: room for the nonces of two seconds (their lifetime here) at the
/// rate of one core, with the sweeps a full store makes.
const BENCH_NONCES: u64 = 100_000;

fn main() {
    let limit = Limit::new();
    let resource = Resource::with(
        |b| {
            b.max_clock_skew(0)
                .dangerous()
                .allow_http_loopback()
                .web_bot_auth(WebBotAuthOptions::new().nonce_capacity(BENCH_NONCES))
        },
        |aauth, router| router.layer(aauth.layer()),
    );
    let directory = resource
        .block_on(BotDirectory::spawn_with_clock(
            [42; 32],
            Arc::new(ManualClock::new(NOW)),
        ))
        .expect("a loopback port");
    let signer = directory.signer();
    let mut short_lived = BotSignOptions::default();
    short_lived.expires = Some(NOW + 1);
    let signed = |_: u64| {
        let mut request = Request::get(URL).body(Body::empty()).expect("request");
        signer.sign_with(&mut request, NOW, &short_lived);
        request
    };
    // The same without a nonce: a `GET` is not replay-checked, so nothing is remembered
    // (what the `hwk` bench measures); informational, to show the nonce's share.
    let mut without_nonce = BotSignOptions::default();
    without_nonce.nonce = Some(None);
    let signed_without_nonce = |_: u64| {
        let mut request = Request::get(URL).body(Body::empty()).expect("request");
        signer.sign_with(&mut request, NOW, &without_nonce);
        request
    };
    // Warm: the first request fetches the directory, the rest find it cached.
    for _ in 0..2 {
        let router = resource.router.clone();
        let status = resource.block_on(async move {
            use tower::ServiceExt;
            router.oneshot(signed(0)).await.expect("infallible").status()
        });
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(directory.requests(), 1, "the directory is fetched once");

    if common::profile_sides(
        &limit,
        &mut |n| resource.run_served(n, signed),
        &mut [("without_nonce", &mut |n| resource.run_served(n, signed_without_nonce))],
    ) {
        return;
    }
    let mut c = common::criterion();
    let mut group = c.benchmark_group("layer_web_bot_auth");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    group.bench_function("layer_web_bot_auth", |b| {
        b.iter_custom(|iters| resource.run_served(iters, signed))
    });
    group.finish();
    c.final_summary();
    if benching() {
        report(
            "layer_web_bot_auth",
            "limit",
            interleave(|n| limit.run(n), |n| resource.run_served(n, signed)),
            Goal::AtMost(1.10),
        );
        report(
            "layer_web_bot_auth_without_nonce",
            "limit",
            interleave(|n| limit.run(n), |n| resource.run_served(n, signed_without_nonce)),
            Goal::None,
        );
    }
}
