//! A signed `GET /data` under the `hwk` scheme, through `AAuthLayer` to an empty axum
//! handler, against the Ed25519 limit measured in the same run. Goal: ≤ 1.10 ×.

mod common;

use common::{Goal, Limit, Resource, benching, interleave, report};
use http::StatusCode;
use tower_aauth::testing::KeySource;

fn main() {
    let limit = Limit::new();
    let resource = Resource::new();
    // One request shape, each copy with its own signature (see `DISTINCT_SIGNATURES`).
    let variants = resource.signed_variants(&KeySource::Hwk);
    for headers in &variants {
        assert_eq!(resource.status(headers), StatusCode::OK);
    }

    if common::profile(&limit, &mut |n| resource.run_cycling(&variants, n)) {
        return;
    }
    let mut c = common::criterion();
    let mut group = c.benchmark_group("layer_hwk");
    group.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    group.bench_function("layer_hwk", |b| {
        b.iter_custom(|iters| resource.run_cycling(&variants, iters))
    });
    group.finish();
    c.final_summary();
    if benching() {
        report(
            "layer_hwk",
            "limit",
            interleave(|n| limit.run(n), |n| resource.run_cycling(&variants, n)),
            Goal::AtMost(1.10),
        );
    }
}
