//! What shared state on Redis costs: the time a replay-checked request spends on its one
//! `SET NX PX` round trip to a local `redis-server`, against the same request with the
//! in-process replay store, in one run; and the bytes Redis holds per replay entry,
//! revocation and key → agent binding (`INFO memory` before and after writing
//! 10 000 of each through the crate). Needs `redis-server` on `PATH` (it is started on a
//! free loopback port); without one the bench says so and measures nothing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use common::{Goal, NOW, Resource, benching, interleave, report};
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_aauth::policy::{AgentId, RedisPolicySync, Revoked};
use tower_aauth::replay::{RedisReplayStore, ReplayOptions, ReplayProtection};
use tower_aauth::testing::KeySource;

/// Entries written per kind for the memory figures.
const ENTRIES: u64 = 10_000;

struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Redis { port, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `used_memory` of `INFO memory`, in bytes.
    fn used_memory(&self) -> u64 {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("redis");
        stream
            .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n")
            .expect("redis");
        std::thread::sleep(Duration::from_millis(50));
        let mut reply = vec![0; 64 * 1024];
        let n = stream.read(&mut reply).expect("redis");
        let text = String::from_utf8_lossy(&reply[..n]);
        text.lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("used_memory in INFO memory")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A resource checking replay on every method, with `store` (`None`: in process).
fn resource(store: Option<RedisReplayStore>) -> Resource {
    Resource::with(
        |builder| {
            let options = ReplayOptions::new().protection(ReplayProtection::AllMethods);
            builder.replay(match store {
                Some(store) => options.store(store),
                None => options,
            })
        },
        |aauth, router| router.layer(aauth.layer()),
    )
}

/// `iters` requests, each a distinct signed `GET /data?n=…` (a replayed one would be
/// refused); only the sending is timed.
fn run(resource: &Resource, next: &mut u64, iters: u64) -> Duration {
    resource.run_with(iters, |_| {
        *next += 1;
        let mut request = Request::get(format!("{}?n={next}", common::URL))
            .body(Body::empty())
            .expect("request");
        resource.agent.sign(&mut request, &KeySource::Hwk, NOW);
        request
    })
}

fn main() {
    let Some(redis) = Redis::start() else {
        println!("shared_state: redis-server not found on PATH (apt-get install redis-server); nothing measured");
        return;
    };
    // The connection manager's tasks run on a runtime of their own, alive for the run.
    let io = tokio::runtime::Runtime::new().expect("runtime");
    let store = io
        .block_on(RedisReplayStore::connect(redis.url()))
        .expect("redis store");
    // The connection is made lazily, on the runtime of its first use: make it here, so
    // that its tasks run on `io` whichever resource's runtime sends a request.
    let probe = store.clone();
    let key = tower_aauth::replay::ReplayKey::jti("https://bench.example", "connect");
    io.block_on(async move { tower_aauth::replay::ReplayStore::insert(&probe, key, Duration::from_secs(1)).await })
        .expect("redis answers");
    let local = resource(None);
    let shared = resource(Some(store.clone()));
    let (mut next_local, mut next_shared) = (0, 0);
    assert_eq!(local.status(&local.signed_headers(&KeySource::Hwk)), StatusCode::OK);
    assert_eq!(shared.status(&shared.signed_headers(&KeySource::Hwk)), StatusCode::OK);

    let mut c = common::criterion();
    let mut group = c.benchmark_group("shared_state");
    group.bench_function("replay_in_process", |b| {
        b.iter_custom(|n| run(&local, &mut next_local, n))
    });
    group.bench_function("replay_redis", |b| b.iter_custom(|n| run(&shared, &mut next_shared, n)));
    group.finish();
    c.final_summary();
    if !benching() {
        return;
    }
    if std::env::var_os("AAUTH_BENCH_MEMORY_ONLY").is_some() {
        memory(&redis, &io, store);
        return;
    }
    let figures = interleave(
        |n| run(&local, &mut next_local, n),
        |n| run(&shared, &mut next_shared, n),
    );
    report("replay_redis", "replay_in_process", figures, Goal::None);
    println!(
        "ADDED  replay_redis adds {:.1} µs per replay-checked request (one SET NX PX on loopback)",
        (figures.1 - figures.0) / 1000.0
    );

    memory(&redis, &io, store);
}

/// Bytes per entry, as Redis counts them, for each kind written through the crate.
fn memory(redis: &Redis, io: &tokio::runtime::Runtime, store: RedisReplayStore) {
    let before = redis.used_memory();
    let entries = resource(Some(store));
    for n in 0..ENTRIES {
        let mut request = Request::get(format!("{}?memory={n}", common::URL))
            .body(Body::empty())
            .expect("request");
        entries.agent.sign(&mut request, &KeySource::Hwk, NOW);
        let router = entries.router.clone();
        let (status, body) = entries.block_on(async move {
            let response = router.oneshot(request).await.expect("infallible");
            let status = response.status();
            (
                status,
                axum::body::to_bytes(response.into_body(), 4096)
                    .await
                    .unwrap_or_default(),
            )
        });
        assert_eq!(status, StatusCode::OK, "entry {n}: {}", String::from_utf8_lossy(&body));
    }
    let replay = redis.used_memory();
    let policy = resource(None);
    let sync = io
        .block_on(
            RedisPolicySync::builder(redis.url())
                .agent_bindings(policy.aauth.agent_bindings(), policy.aauth.clock())
                .start(policy.aauth.revocations(), policy.aauth.scope_ceilings()),
        )
        .expect("policy sync");
    for n in 0..ENTRIES {
        let agent: AgentId = format!("aauth:agent-{n:05}@agent.example").parse().expect("agent");
        policy
            .aauth
            .revocations()
            .revoke(Revoked::Agent(agent))
            .expect("revoke");
    }
    settle(io);
    let revocations = redis.used_memory();
    let bindings = policy.aauth.agent_bindings();
    for n in 0..ENTRIES {
        let agent: AgentId = format!("aauth:bound-{n:05}@agent.example").parse().expect("agent");
        let thumbprint = format!("{n:0>43}");
        bindings
            // Pinned: only the bindings of agents a policy names are shared.
            .bind(&thumbprint, &agent, NOW + 3600, NOW, true)
            .expect("bind");
    }
    settle(io);
    let bound = redis.used_memory();
    drop(sync);
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / ENTRIES as f64;
    println!(
        "MEMORY replay entry          {:>6.0} bytes in Redis",
        per(replay, before)
    );
    println!(
        "MEMORY revocation (agent)    {:>6.0} bytes in Redis",
        per(revocations, replay)
    );
    println!(
        "MEMORY key → agent binding   {:>6.0} bytes in Redis",
        per(bound, revocations)
    );
}

/// Lets the sync's background task publish what was queued.
fn settle(io: &tokio::runtime::Runtime) {
    io.block_on(async { tokio::time::sleep(Duration::from_secs(2)).await });
}
