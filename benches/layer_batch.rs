//! Batch verification under load: the layer (`hwk`, empty handler) on a 2-worker tokio
//! runtime, driven by N concurrent clients sending distinct signed requests (N = 1, 8,
//! 64), batching off and on, honest traffic and 10 % bad signatures. Reported: process
//! CPU time per request (every thread's, from `/proc/self/task/*/schedstat`) as a
//! multiple of one `verify_strict`, measured on the same CPU clock in the same run,
//! rounds interleaved. CPU time rather than wall time: the machine is shared.
//!
//! Goals (issue "adaptive batch verification"): honest N = 64 with batching ≤ 0.65 ×;
//! N = 1 with batching within 5 % of batching off; 10 % bad at N = 64 with batching never
//! above 1.10 × batching off.
//!
//! `cargo bench --bench layer_batch` (`AAUTH_BENCH_ROUNDS` rounds, default 15).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use common::{Limit, NOW, RESOURCE, URL};
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::testing::{KeySource, ManualClock, TestAgent};
use tower_aauth::{AAuth, BatchOptions};

/// Signing keys: every request of a round is signed by one of them.
const AGENTS: usize = 64;
/// Requests per configuration per round.
const REQUESTS: usize = 1280;

/// Process CPU time so far: the sum over the process's threads.
fn cpu_now() -> Duration {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc") {
        let path = entry.expect("task").path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

struct Config {
    name: String,
    clients: usize,
    bad: bool,
    batching: bool,
    router: Router,
    aauth: AAuth,
    runtime: tokio::runtime::Runtime,
}

/// `REQUESTS` distinct signed requests' headers; every tenth spoiled when `bad`.
fn requests(agents: &[TestAgent], bad: bool) -> Vec<HeaderMap> {
    let mut all: Vec<HeaderMap> = (0..REQUESTS)
        .map(|i| {
            let mut request = Request::get(URL).body(Body::empty()).unwrap();
            // Distinct signatures: one key and `created` per request.
            let created = NOW - (i / AGENTS) as u64;
            agents[i % AGENTS].sign(&mut request, &KeySource::Hwk, created);
            request.headers().clone()
        })
        .collect();
    if bad {
        for i in (0..REQUESTS).step_by(10) {
            let donor = all[(i + 1) % REQUESTS]["signature"].clone();
            all[i].insert("signature", donor);
        }
    }
    all
}

impl Config {
    fn new(clients: usize, bad: bool, batching: bool) -> Self {
        let mut builder = AAuth::builder(RESOURCE)
            .clock(ManualClock::new(NOW))
            .key_resolver(StaticResolver::new())
            .auth_server(common::AS);
        if batching {
            builder = builder.batch_verification(BatchOptions::new());
        }
        let aauth = builder.build().expect("configuration");
        let router = Router::new()
            .route("/data", axum::routing::get(|| async {}))
            .layer(aauth.layer());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Config {
            name: format!(
                "N={clients:<2} {} {}",
                if bad { "10% bad" } else { "honest " },
                if batching { "batch on " } else { "batch off" }
            ),
            clients,
            bad,
            batching,
            router,
            aauth,
            runtime,
        }
    }

    /// Sends every request of `headers` from `clients` concurrent clients; returns the
    /// process CPU time it took and the number of `200`s.
    fn run(&self, headers: &Arc<Vec<HeaderMap>>) -> (Duration, usize) {
        let next = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let start = cpu_now();
        self.runtime.block_on(async {
            let mut clients = tokio::task::JoinSet::new();
            for _ in 0..self.clients {
                let (router, headers, next, accepted) =
                    (self.router.clone(), headers.clone(), next.clone(), accepted.clone());
                clients.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(headers) = headers.get(i) else { break };
                        let request = common::request_with(headers.clone());
                        let response = router.clone().oneshot(request).await.expect("infallible");
                        if response.status() == StatusCode::OK {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            clients.join_all().await;
        });
        (cpu_now() - start, accepted.load(Ordering::Relaxed))
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let limit = Limit::new();
    let agents: Vec<TestAgent> = (0..AGENTS).map(|i| TestAgent::from_seed([i as u8 + 1; 32])).collect();
    let honest = Arc::new(requests(&agents, false));
    let spoiled = Arc::new(requests(&agents, true));
    let mut configs = Vec::new();
    for clients in [1, 8, 64] {
        for bad in [false, true] {
            for batching in [false, true] {
                configs.push(Config::new(clients, bad, batching));
            }
        }
    }
    let rounds: usize = std::env::var("AAUTH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds = if smoke { 1 } else { rounds };
    let mut ratios = vec![Vec::new(); configs.len()];
    let mut limits = Vec::new();
    for round in 0..rounds {
        let limit_ops = 2000;
        let start = cpu_now();
        limit.run(limit_ops);
        let limit_ns = (cpu_now() - start).as_nanos() as f64 / limit_ops as f64;
        limits.push(limit_ns);
        // Alternate the order so that no configuration always follows the same one.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..configs.len()).collect()
        } else {
            (0..configs.len()).rev().collect()
        };
        for i in order {
            let config = &configs[i];
            let headers = if config.bad { &spoiled } else { &honest };
            let (cpu, accepted) = config.run(headers);
            let expected = if config.bad { REQUESTS - REQUESTS / 10 } else { REQUESTS };
            assert_eq!(accepted, expected, "{}: every honest request and no other", config.name);
            let per = cpu.as_nanos() as f64 / REQUESTS as f64;
            ratios[i].push(per / limit_ns);
        }
    }
    let limit_ns = median(&mut limits);
    println!("limit: verify_strict {limit_ns:.0} ns CPU (median of {rounds} rounds)");
    let mut medians = Vec::new();
    for (config, ratios) in configs.iter().zip(&mut ratios) {
        let ratio = median(ratios);
        medians.push(ratio);
        let stats = config.aauth.batch_stats();
        let detail = if config.batching {
            format!(
                "idle {} backed-off {} batched {} in {} batches (largest {}, {} failed), {} equations, {} singles",
                stats.idle,
                stats.backed_off,
                stats.batched,
                stats.batches,
                stats.largest,
                stats.failed_batches,
                stats.equations,
                stats.singles
            )
        } else {
            String::new()
        };
        println!(
            "RATIO {:<28} {:>6.3}x verify_strict CPU per request  {detail}",
            config.name, ratio
        );
    }
    // Goals: configs are ordered (clients, bad, batching).
    let at = |clients_index: usize, bad: usize, on: usize| medians[clients_index * 4 + bad * 2 + on];
    let goal = |name: &str, met: bool, figure: String| {
        println!("GOAL {name:<44} {figure:<28} {}", if met { "met" } else { "MISSED" });
    };
    goal(
        "honest N=64, batching on <= 0.65x",
        at(2, 0, 1) <= 0.65,
        format!("{:.3}x", at(2, 0, 1)),
    );
    let n1 = at(0, 0, 1) / at(0, 0, 0);
    goal(
        "honest N=1, on within 5 % of off",
        (n1 - 1.0).abs() <= 0.05,
        format!("on/off = {n1:.3}"),
    );
    let bad = at(2, 1, 1) / at(2, 1, 0);
    goal(
        "10 % bad N=64, on <= 1.10 x off",
        bad <= 1.10,
        format!("on/off = {bad:.3}"),
    );
}
