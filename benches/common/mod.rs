//! Shared bench fixtures and the same-run ratio summary.
//!
//! Criterion gives the detailed statistics; the numbers the targets are about are
//! *ratios to the Ed25519 limit measured in the same process*, because the machine these
//! run on is shared and absolute times drift with its load. [`compare`] interleaves
//! rounds of the limit and the subject, so both see the same load, and reports the
//! median of the per-round ratios.
//!
//! Both sides are timed on the running thread's CPU clock ([`Stopwatch`]), not the wall
//! clock: time the thread spends descheduled while another tenant runs is nobody's cost,
//! and counting it made the ratios swing by ±0.07 on a loaded machine. Everything a
//! measured request does runs on that thread (the bench runtime is single-threaded);
//! kernel time it causes (page faults, syscalls) is counted.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use http::{HeaderMap, Request, StatusCode};
use tower::ServiceExt;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AAuthBuilder, testing::ManualClock};

/// CPU time of the calling thread (user and system), the clock every side is timed on.
#[derive(Clone, Copy)]
pub struct Stopwatch(Duration);

impl Stopwatch {
    pub fn start() -> Self {
        Stopwatch(thread_cpu_time())
    }

    /// CPU time this thread used since [`Stopwatch::start`].
    pub fn elapsed(&self) -> Duration {
        thread_cpu_time().saturating_sub(self.0)
    }
}

fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// The fixed clock: signatures made at `NOW` stay fresh for the whole run.
pub const NOW: u64 = 1_730_217_600;
/// Our resource identifier.
pub const RESOURCE: &str = "https://resource.example";
/// The trusted access server.
pub const AS: &str = "https://as.example";
/// The URL every bench request targets.
pub const URL: &str = "https://resource.example/data";

/// How many distinct signatures every verifying loop cycles through, the limit's and the
/// layer's alike. A server never verifies one signature twice, but a loop over a single
/// one lets the branch predictor learn the branches of its variable-time scalar
/// multiplication: that makes it about 3 % faster than any stream of distinct signatures
/// (`verify_limit` reports the difference). 60, one per second of the `created` window,
/// is as many as one request shape can carry.
pub const DISTINCT_SIGNATURES: usize = 60;

/// The physical limit: `verify_strict` of a 64-byte signature over 200 bytes, cycling
/// through [`DISTINCT_SIGNATURES`] messages of one key.
pub struct Limit {
    key: VerifyingKey,
    signed: Vec<([u8; 200], Signature)>,
}

impl Limit {
    pub fn new() -> Self {
        Self::cycling(DISTINCT_SIGNATURES)
    }

    /// One message and signature, verified again and again (the limit every bench used
    /// until commit `71b6870`, 2026-12-04).
    pub fn repeated() -> Self {
        Self::cycling(1)
    }

    fn cycling(distinct: usize) -> Self {
        let signer = SigningKey::from_bytes(&[7; 32]);
        let signed = (0..distinct)
            .map(|k| {
                let mut message = [0u8; 200];
                for (i, b) in message.iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(31).wrapping_add(1).wrapping_add(k as u8);
                }
                let signature = signer.sign(&message);
                (message, signature)
            })
            .collect();
        let limit = Limit {
            key: signer.verifying_key(),
            signed,
        };
        for (message, signature) in &limit.signed {
            assert!(limit.key.verify_strict(message, signature).is_ok());
        }
        limit
    }

    /// Runs `iters` verifications; returns the time they took.
    pub fn run(&self, iters: u64) -> Duration {
        let start = Stopwatch::start();
        let mut next = 0;
        for _ in 0..iters {
            let (message, signature) = &self.signed[next];
            let ok = black_box(&self.key)
                .verify_strict(black_box(message), black_box(signature))
                .is_ok();
            black_box(ok);
            next = if next + 1 == self.signed.len() { 0 } else { next + 1 };
        }
        start.elapsed()
    }
}

/// The floor of a first-seen `jwt` request: the two `verify_strict` it cannot avoid,
/// over the messages it really signs — the token's signing input (issuer key) and the
/// request's signature base, which holds the whole token (agent key). Both are longer
/// than the limit's 200 bytes, so this floor is above 2 × the limit. Cycles through
/// several requests, as the limit does.
pub struct TwoVerifications {
    pairs: Vec<[(VerifyingKey, Vec<u8>, Signature); 2]>,
}

impl TwoVerifications {
    /// From signed requests of the bench agent, each with its token of the access server.
    pub fn new(requests: &[(String, HeaderMap)]) -> Self {
        let pairs = requests
            .iter()
            .map(|(token, headers)| Self::pair(token, headers))
            .collect();
        TwoVerifications { pairs }
    }

    fn pair(token: &str, headers: &HeaderMap) -> [(VerifyingKey, Vec<u8>, Signature); 2] {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        use tower_aauth::engine::{ParsedInput, RequestTarget, SignatureBase, SignatureHeaders};

        let (signing_input, signature) = token.rsplit_once('.').expect("compact JWS");
        let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
        let issuer = SigningKey::from_bytes(&ISSUER_SEED).verifying_key();
        let token = (
            issuer,
            signing_input.as_bytes().to_vec(),
            Signature::from_slice(&signature).expect("64 bytes"),
        );

        let fields = SignatureHeaders::read(headers, usize::MAX)
            .expect("fields")
            .expect("signed");
        let input = ParsedInput::parse(&fields.input, 24).expect("Signature-Input");
        let target = RequestTarget {
            method: "GET",
            scheme: "https",
            authority: "resource.example",
            path: "/data",
            query: None,
        };
        let mut base = SignatureBase::new();
        base.build(&input, &target, headers).expect("base");
        let prefix = format!("{}=:", input.label);
        let encoded = fields
            .signature
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_suffix(':'))
            .expect("sig=:…:");
        let signature = STANDARD.decode(encoded).expect("base64");
        let agent = SigningKey::from_bytes(&AGENT_SEED).verifying_key();
        let request = (
            agent,
            base.as_bytes().to_vec(),
            Signature::from_slice(&signature).expect("64 bytes"),
        );

        for (key, message, signature) in [&token, &request] {
            assert!(
                key.verify_strict(message, signature).is_ok(),
                "the floor verifies what the layer verifies"
            );
        }
        [token, request]
    }

    /// The two message lengths of the first request, signing input first.
    pub fn lengths(&self) -> (usize, usize) {
        (self.pairs[0][0].1.len(), self.pairs[0][1].1.len())
    }

    /// Runs `iters` pairs of verifications; returns the time they took.
    pub fn run(&self, iters: u64) -> Duration {
        let start = Stopwatch::start();
        let mut next = 0;
        for _ in 0..iters {
            for (key, message, signature) in &self.pairs[next] {
                let ok = black_box(key)
                    .verify_strict(black_box(message), black_box(signature))
                    .is_ok();
                black_box(ok);
            }
            next = if next + 1 == self.pairs.len() { 0 } else { next + 1 };
        }
        start.elapsed()
    }
}

/// The agent's and the access server's key seeds.
const AGENT_SEED: [u8; 32] = [1; 32];
const ISSUER_SEED: [u8; 32] = [2; 32];

/// A resource: `GET /data` with an empty handler behind the layer, driven on a
/// current-thread runtime.
pub struct Resource {
    pub aauth: AAuth,
    pub router: Router,
    pub agent: TestAgent,
    pub access_server: TestIssuer,
    runtime: tokio::runtime::Runtime,
}

impl Resource {
    /// With the empty handler directly behind the layer.
    pub fn new() -> Self {
        Self::with(|b| b, |aauth, router| router.layer(aauth.layer()))
    }

    /// `GET /data` guarded by `require_scopes(["data.read"])`, inside the layer.
    pub fn guarded() -> Self {
        Self::with(
            |b| b,
            |aauth, router| {
                router
                    .route_layer(aauth.require_scopes(["data.read"]))
                    .layer(aauth.layer())
            },
        )
    }

    /// `adjust` tunes the builder; `wrap` puts guards and the layer around the routes.
    pub fn with(
        adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder,
        wrap: impl FnOnce(&AAuth, Router) -> Router,
    ) -> Self {
        let agent = TestAgent::from_seed(AGENT_SEED).with_kid("agent-key-1");
        let access_server = TestIssuer::new(AS, ISSUER_SEED, "as-key-1");
        let resolver = StaticResolver::new().with_key(AS, engine::dwk::ACCESS, access_server.public_jwk());
        let builder = AAuth::builder(RESOURCE)
            .clock(ManualClock::new(NOW))
            .key_resolver(resolver)
            .auth_server(AS);
        let aauth = adjust(builder).build().expect("valid configuration");
        let routes = Router::new().route("/data", axum::routing::get(|| async {}));
        let router = wrap(&aauth, routes);
        Resource {
            aauth,
            router,
            agent,
            access_server,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// An auth token for `scope`, bound to the agent; `jti` makes it distinct.
    pub fn auth_token(&self, scope: &str, jti: u64) -> String {
        let mut claims = self
            .access_server
            .auth_claims(RESOURCE, &self.agent.public_jwk(), scope, NOW);
        claims["jti"] = format!("bench-{jti}").into();
        self.access_server.sign(engine::typ::AUTH, &claims)
    }

    /// The headers of a signed `GET /data`.
    pub fn signed_headers(&self, source: &KeySource) -> HeaderMap {
        self.signed_at(source, NOW)
    }

    /// The headers of a `GET /data` signed at `created`.
    pub fn signed_at(&self, source: &KeySource, created: u64) -> HeaderMap {
        let mut request = Request::get(URL).body(Body::empty()).expect("request");
        self.agent.sign(&mut request, source, created);
        request.headers().clone()
    }

    /// [`DISTINCT_SIGNATURES`] signed `GET /data`s, `created` one second apart and all
    /// inside the window: the same request, each with its own signature.
    pub fn signed_variants(&self, source: &KeySource) -> Vec<HeaderMap> {
        (0..DISTINCT_SIGNATURES as u64)
            .map(|age| self.signed_at(source, NOW - age))
            .collect()
    }

    /// Sends one request and returns the status (outside timed loops: correctness).
    pub fn status(&self, headers: &HeaderMap) -> StatusCode {
        let router = self.router.clone();
        let request = request_with(headers.clone());
        self.runtime
            .block_on(async move { router.oneshot(request).await.expect("infallible").status() })
    }

    /// Sends `iters` requests made by `make` one after another; only the sending is
    /// timed. Requests are made in small batches just before they are sent, so that, as
    /// in a server where hyper has just parsed them, they are in cache: a batch of
    /// thousands built up front would measure cache misses on the request, not the layer.
    pub fn run_with(&self, iters: u64, mut make: impl FnMut(u64) -> Request<Body>) -> Duration {
        const BATCH: u64 = 16;
        let router = &self.router;
        self.runtime.block_on(async move {
            let mut batch = Vec::with_capacity(BATCH as usize);
            let mut total = Duration::ZERO;
            let mut sent = 0;
            while sent < iters {
                let n = BATCH.min(iters - sent);
                batch.extend((sent..sent + n).map(&mut make));
                let start = Stopwatch::start();
                for request in batch.drain(..) {
                    let response = router.clone().oneshot(request).await.expect("infallible");
                    black_box(response);
                }
                total += start.elapsed();
                sent += n;
            }
            total
        })
    }

    /// [`Resource::run_with`] for requests that must all be served: a refusal (a full
    /// store, an expired signature) would measure another path, so it stops the bench.
    pub fn run_served(&self, iters: u64, mut make: impl FnMut(u64) -> Request<Body>) -> Duration {
        let router = &self.router;
        self.runtime.block_on(async move {
            let mut batch = Vec::with_capacity(16);
            let mut total = Duration::ZERO;
            let mut sent = 0;
            while sent < iters {
                let n = 16.min(iters - sent);
                batch.extend((sent..sent + n).map(&mut make));
                let start = Stopwatch::start();
                for request in batch.drain(..) {
                    let response = router.clone().oneshot(request).await.expect("infallible");
                    assert_eq!(
                        response.status(),
                        http::StatusCode::OK,
                        "a measured request was refused"
                    );
                    black_box(response);
                }
                total += start.elapsed();
                sent += n;
            }
            total
        })
    }

    /// `iters` requests cycling through `variants`, sent; only the sending is timed.
    pub fn run_cycling(&self, variants: &[HeaderMap], iters: u64) -> Duration {
        self.run_with(iters, |i| request_with(variants[i as usize % variants.len()].clone()))
    }

    /// Runs a future on the bench runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// A `GET /data` carrying `headers`.
pub fn request_with(headers: HeaderMap) -> Request<Body> {
    let mut request = Request::get(URL).body(Body::empty()).expect("request");
    *request.headers_mut() = headers;
    request
}

/// A ratio target.
#[derive(Clone, Copy)]
pub enum Goal {
    /// The subject must cost at most this multiple of the limit.
    AtMost(f64),
    /// The subject must be at least this many times faster than `other` (speed-up).
    SpeedUpAtLeast(f64),
    /// Informational.
    None,
}

/// Whether this is a real `cargo bench` run (not `cargo test --benches`).
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Per-round ns/op of `f` run in batches sized to take about `target`.
fn batch_size(f: &mut dyn FnMut(u64) -> Duration, target: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let took = f(iters);
        if took >= target / 4 || iters >= 1 << 20 {
            let per = took.as_secs_f64() / iters as f64;
            return ((target.as_secs_f64() / per.max(1e-9)) as u64).clamp(1, 1 << 22);
        }
        iters *= 4;
    }
}

/// The same-run comparison: `rounds` interleaved rounds of `baseline` and `subject`.
/// Returns `(baseline ns/op, subject ns/op, median per-round ratio subject/baseline)`.
pub fn interleave(
    mut baseline: impl FnMut(u64) -> Duration,
    mut subject: impl FnMut(u64) -> Duration,
) -> (f64, f64, f64) {
    let rounds: usize = std::env::var("AAUTH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(101);
    // Short rounds: the two halves of a round are a few milliseconds apart, so a change
    // of machine speed (other tenants, frequency) mostly hits both; the order alternates
    // so that neither side always runs on a cache the other warmed.
    let target = Duration::from_millis(8);
    let nb = batch_size(&mut baseline, target);
    let ns = batch_size(&mut subject, target);
    let (mut b, mut s, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (bt, st) = if round % 2 == 0 {
            let bt = baseline(nb).as_secs_f64() * 1e9 / nb as f64;
            (bt, subject(ns).as_secs_f64() * 1e9 / ns as f64)
        } else {
            let st = subject(ns).as_secs_f64() * 1e9 / ns as f64;
            (baseline(nb).as_secs_f64() * 1e9 / nb as f64, st)
        };
        b.push(bt);
        s.push(st);
        r.push(st / bt);
    }
    (median(&mut b), median(&mut s), median(&mut r))
}

/// Prints one summary line comparing `subject` against `baseline` in this run.
pub fn report(name: &str, baseline_name: &str, figures: (f64, f64, f64), goal: Goal) {
    let (b, s, ratio) = figures;
    let verdict = match goal {
        Goal::AtMost(max) => format!("goal <= {max:.2}x: {}", if ratio <= max { "met" } else { "MISSED" }),
        Goal::SpeedUpAtLeast(min) => {
            let speed_up = 1.0 / ratio;
            format!(
                "speed-up {speed_up:.2}x, goal >= {min:.2}x: {}",
                if speed_up >= min { "met" } else { "MISSED" }
            )
        }
        Goal::None => String::new(),
    };
    println!("RATIO {name:<28} {s:>10.0} ns/op vs {baseline_name} {b:>8.0} ns/op = {ratio:>6.3}x  {verdict}");
}

/// Criterion settings for a shared 2-core machine: short, few samples.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}

/// Instruction-count mode for `valgrind --tool=callgrind`: with
/// `AAUTH_BENCH_PROFILE=limit|subject` and `AAUTH_BENCH_ITERS=N`, a bench runs only that
/// side `N` times and exits, without criterion (see docs/performance.md).
pub fn profile(limit: &Limit, subject: &mut dyn FnMut(u64) -> Duration) -> bool {
    profile_sides(limit, subject, &mut [])
}

/// [`profile`] with further named sides (`AAUTH_BENCH_PROFILE=<name>`).
pub fn profile_sides(
    limit: &Limit,
    subject: &mut dyn FnMut(u64) -> Duration,
    others: &mut [(&str, &mut dyn FnMut(u64) -> Duration)],
) -> bool {
    let Ok(which) = std::env::var("AAUTH_BENCH_PROFILE") else {
        return false;
    };
    let iters = std::env::var("AAUTH_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let took = match (which.as_str(), others.iter_mut().find(|(name, _)| *name == which)) {
        ("limit", _) => limit.run(iters),
        (_, Some((_, side))) => side(iters),
        _ => subject(iters),
    };
    black_box(took);
    true
}
