//! A signed `GET /data` under the `jwt` scheme whose auth token is already in the
//! verified-token cache, through `AAuthLayer` and `require_scopes(["data.read"])` to an
//! empty axum handler, against the
//! Ed25519 limit measured in the same run. Goal: ≤ 1.15 ×.

mod common;

use common::{Goal, Limit, Resource, benching, interleave, report};
use http::StatusCode;
use tower_aauth::testing::KeySource;

fn main() {
    let limit = Limit::new();
    let resource = Resource::guarded();
    let token = resource.auth_token("data.read", 0);
    // One request shape, each copy with its own signature (see `DISTINCT_SIGNATURES`).
    let variants = resource.signed_variants(&KeySource::Jwt(token));
    // The first request verifies the token and caches it; the bench measures the rest.
    for headers in &variants {
        assert_eq!(resource.status(headers), StatusCode::OK);
    }
    assert_eq!(resource.aauth.cached_tokens(), 1);

    if common::profile(&limit, &mut |n| resource.run_cycling(&variants, n)) {
        return;
    }
    let mut c = common::criterion();
    let mut group = c.benchmark_group("layer_warm_jwt");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    group.bench_function("layer_warm_jwt", |b| {
        b.iter_custom(|iters| resource.run_cycling(&variants, iters))
    });
    group.finish();
    c.final_summary();
    if benching() {
        report(
            "layer_warm_jwt",
            "limit",
            interleave(|n| limit.run(n), |n| resource.run_cycling(&variants, n)),
            Goal::AtMost(1.15),
        );
    }
}
