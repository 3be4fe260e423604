//! The physical limit: one Ed25519 `verify_strict` over a 200-byte message, cycling
//! through distinct signatures as a server's stream of requests does. Every other bench
//! reports its cost as a multiple of this, measured in its own run.

mod common;

use common::{Goal, Limit, benching, interleave, report};

fn main() {
    let limit = Limit::new();
    let mut c = common::criterion();
    c.bench_function("verify_limit", |b| b.iter_custom(|iters| limit.run(iters)));
    c.final_summary();
    if benching() {
        // The limit against itself: the spread of this ratio is the noise floor.
        let other = Limit::new();
        report(
            "verify_limit (self)",
            "limit",
            interleave(|n| limit.run(n), |n| other.run(n)),
            Goal::None,
        );
        // One signature verified again and again, as no server ever does: the branch
        // predictor learns it (see `common::DISTINCT_SIGNATURES`).
        let repeated = Limit::repeated();
        report(
            "one repeated signature",
            "limit",
            interleave(|n| limit.run(n), |n| repeated.run(n)),
            Goal::None,
        );
    }
}
