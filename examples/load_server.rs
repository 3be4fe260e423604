//! The resource server of the loopback load run (see docs/performance.md):
//! `GET /data` behind `AAuthLayer` and `require_scopes(["data.read"])` (as in
//! `examples/resource_server.rs`) on one port and the same router without the layer on
//! another, on a 2-worker runtime. It writes the headers of a signed `GET /data` (`jwt`
//! scheme, an auth token, `created` = now) to a file for `wrk -H`, and prints the
//! Ed25519 limit measured on this machine.
//!
//! ```text
//! cargo run --release --example load_server -- <layer port> <plain port> <headers file>
//! ```
//!
//! Its second mode stands in for the access server of `examples/resource_server.rs`,
//! so that the load run can also measure that example itself, discovery over loopback
//! included: it serves the metadata and JWKS of the issuer `http://127.0.0.1:<port>`
//! and writes the headers of a signed `GET <resource>/data` carrying an auth token of
//! that issuer.
//!
//! ```text
//! cargo run --release --example load_server -- access-server <port> <resource> <headers file>
//! ```
//! `benches/load.sh` runs both together with `wrk`. With `AAUTH_BATCH=1` in the
//! environment the layer verifies concurrent requests' signatures in batches.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use ed25519_dalek::{Signer, SigningKey};
use http::Request;
use tower_aauth::AAuth;
use tower_aauth::discovery::StaticResolver;
use tower_aauth::engine;
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};

const AS: &str = "https://as.example";

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, port, resource, out] = args.as_slice()
        && mode == "access-server"
    {
        return access_server(port.parse().expect("a port"), resource, out);
    }
    let [layer_port, plain_port, out] = args.as_slice() else {
        eprintln!(
            "usage: load_server <layer port> <plain port> <headers file>\n       \
             load_server access-server <port> <resource> <headers file>"
        );
        std::process::exit(2);
    };
    let layer_port: u16 = layer_port.parse().expect("a port");
    let plain_port: u16 = plain_port.parse().expect("a port");

    let verify_ns = limit_ns();
    println!(
        "limit: verify_strict {verify_ns:.0} ns; 2 cores / verify = {:.0} requests/s",
        2e9 / verify_ns
    );

    let resource = format!("http://127.0.0.1:{layer_port}");
    let access_server = TestIssuer::new(AS, [2; 32], "as-key-1");
    let mut builder = AAuth::builder(&resource)
        .key_resolver(StaticResolver::new().with_key(AS, engine::dwk::ACCESS, access_server.public_jwk()))
        .auth_server(AS)
        // The run signs once and replays the same GET for its whole duration.
        .signature_window(600);
    builder = builder.dangerous().allow_http_loopback();
    // `AAUTH_BATCH=1`: batch verification of concurrent requests (see `BatchOptions`).
    if std::env::var("AAUTH_BATCH").is_ok_and(|v| v == "1") {
        builder = builder.batch_verification(tower_aauth::BatchOptions::new());
        println!("batch verification on");
    }
    let aauth = builder.build().expect("configuration");

    write_signed_get(&access_server, &resource, out)?;

    let routes = Router::new().route("/data", axum::routing::get(|| async { "ok" }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let layered = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], layer_port))).await?;
        let plain = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], plain_port))).await?;
        println!("listening: layer on {layer_port}, plain on {plain_port}");
        let with_layer = routes
            .clone()
            .route_layer(aauth.require_scopes(["data.read"]))
            .layer(aauth.layer());
        tokio::spawn(async move { axum::serve(plain, routes).await });
        axum::serve(layered, with_layer).await
    })
}

/// The headers of a signed `GET <resource>/data` (`jwt` scheme, an auth token of
/// `access_server` for `data.read`, `created` = now), one `name: value` per line.
fn write_signed_get(access_server: &TestIssuer, resource: &str, out: &str) -> std::io::Result<()> {
    let agent = TestAgent::from_seed([1; 32]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let token = access_server.auth_token(resource, &agent.public_jwk(), "data.read", now);
    let mut request = Request::get(format!("{resource}/data"))
        .body(Body::empty())
        .expect("request");
    agent.sign(&mut request, &KeySource::Jwt(token), now);
    let headers: String = request
        .headers()
        .iter()
        .map(|(name, value)| format!("{name}: {}\n", value.to_str().expect("ASCII")))
        .collect();
    std::fs::write(out, headers)
}

/// The access server `http://127.0.0.1:<port>`: its metadata and JWKS, on loopback.
fn access_server(port: u16, resource: &str, out: &str) -> std::io::Result<()> {
    let issuer = format!("http://127.0.0.1:{port}");
    let access_server = TestIssuer::new(&issuer, [2; 32], "as-key-1");
    write_signed_get(&access_server, resource, out)?;
    let metadata = access_server.metadata();
    let jwks = access_server.jwks();
    let routes = Router::new()
        .route(
            &format!("/.well-known/{}", engine::dwk::ACCESS),
            axum::routing::get(move || std::future::ready(axum::Json(metadata))),
        )
        .route(
            "/.well-known/jwks.json",
            axum::routing::get(move || std::future::ready(axum::Json(jwks))),
        );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("listening: access server {issuer}");
        axum::serve(listener, routes).await
    })
}

/// Median ns of one `verify_strict` over 200 bytes, over 15 rounds of 50 ms.
fn limit_ns() -> f64 {
    let key = SigningKey::from_bytes(&[7; 32]);
    let message = [0x5au8; 200];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    let mut rounds: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_millis(50) {
                black_box(public.verify_strict(black_box(&message), &signature).is_ok());
                n += 1;
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}
