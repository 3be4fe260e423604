//! `aauth-gateway`: AAuth in front of an API that is not written in Rust.
//!
//! ```text
//! aauth-gateway --config gateway.toml           run
//! aauth-gateway --config gateway.toml --check   check the file, print the routes, exit
//! ```
//!
//! One configuration file (see docs/gateway.md) chooses one of three modes: a verifying
//! reverse proxy, an nginx `auth_request` endpoint, or an Envoy `ext_authz` gRPC service.
//! The file is checked as a whole before anything listens; a bad file stops the gateway
//! with exit status 2 and the line at fault. Built on tower-aauth's public API only.
#![forbid(unsafe_code)]

mod auth_request;
mod config;
mod ext_authz;
mod forward;
mod identity;
mod service;

use std::process::ExitCode;

use axum::serve::ListenerExt;
use config::{Batching, Config, Mode};
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::util::BoxCloneSyncService;
use tower_aauth::AAuth;

fn usage() -> ExitCode {
    eprintln!("usage: aauth-gateway --config FILE [--check]");
    ExitCode::from(2)
}

/// The layer's configuration from the checked file.
async fn build(config: &Config) -> Result<AAuth, String> {
    let mut builder = AAuth::builder(config.resource.clone())
        .signing_keys_from(config.signing_keys.clone())
        .max_body_bytes(usize::try_from(config.limits.max_body_bytes).unwrap_or(usize::MAX))
        .require_query_coverage(config.require_query_coverage);
    for (scope, description) in &config.scopes {
        builder = builder.scope(scope.clone(), description.clone());
    }
    if let Some(server) = &config.trust.access_server {
        builder = builder.auth_server(server.clone());
    }
    for server in &config.trust.person_servers {
        builder = builder.person_server(server.clone());
    }
    if !config.trust.agent_providers.is_empty() {
        builder = builder.agent_providers(config.trust.agent_providers.iter().cloned());
    }
    if let Some(bots) = &config.web_bot_auth {
        builder = builder.web_bot_auth(
            tower_aauth::bot::WebBotAuthOptions::new()
                .max_lifetime(bots.max_lifetime)
                .require_nonce(bots.require_nonce),
        );
    }
    match config.batch_verification {
        Batching::Off => {}
        Batching::Concurrent => builder = builder.batch_verification(tower_aauth::BatchOptions::new()),
        Batching::Eager => {
            builder = builder.batch_verification(tower_aauth::BatchOptions::new().join_when_idle(true));
        }
    }
    if config.trust.allow_http_loopback {
        builder = builder.dangerous().allow_http_loopback();
    }
    if let Some(url) = &config.redis_url {
        builder = with_redis(builder, url).await?;
    }
    builder.build().map_err(|error| error.to_string())
}

#[cfg(feature = "redis")]
async fn with_redis(builder: tower_aauth::AAuthBuilder, url: &str) -> Result<tower_aauth::AAuthBuilder, String> {
    let store = tower_aauth::replay::RedisReplayStore::connect(url.to_owned())
        .await
        .map_err(|error| format!("redis_url: {error}"))?;
    Ok(builder.replay(tower_aauth::replay::ReplayOptions::new().store(store)))
}

#[cfg(not(feature = "redis"))]
async fn with_redis(_: tower_aauth::AAuthBuilder, _: &str) -> Result<tower_aauth::AAuthBuilder, String> {
    Err("redis_url needs a gateway built with --features redis".to_owned())
}

async fn serve_metrics(addr: std::net::SocketAddr) -> Result<(), String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot install the metrics recorder: {error}"))?;
    tower_aauth::Metric::describe_all();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| format!("cannot listen on {addr} for metrics: {error}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    handle.render(),
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("aauth-gateway: metrics listener: {error}");
        }
    });
    Ok(())
}

async fn listen(
    addr: std::net::SocketAddr,
) -> Result<impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr>, String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    Ok(without_delay(listener))
}

fn without_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    })
}

/// A listener on `addr` that other threads of this process may open on the same address
/// (`SO_REUSEPORT`): the kernel spreads new connections over them.
fn shared_listener(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener, String> {
    let failed = |error: std::io::Error| format!("cannot listen on {addr}: {error}");
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(failed)?;
    socket.set_reuseaddr(true).map_err(failed)?;
    socket.set_reuseport(true).map_err(failed)?;
    socket.bind(addr).map_err(failed)?;
    socket.listen(1024).map_err(failed)
}

async fn serve_http(addr: std::net::SocketAddr, service: service::HttpService) -> Result<(), String> {
    axum::serve(
        listen(addr).await?,
        axum::ServiceExt::<http::Request<axum::body::Body>>::into_make_service(service),
    )
    .await
    .map_err(|error| error.to_string())
}

/// The reverse proxy: each downstream connection with its own upstream connection, on
/// `workers` single-threaded runtimes (this one and `workers - 1` threads), each
/// accepting on its own listener of the one address. A connection's requests, its
/// upstream connection and its verifications then stay on one thread: no hand-offs
/// between threads, and the signatures of the requests that thread has ready are
/// verified together (batch verification), as with `workers = 1`, on every core.
async fn serve_proxy(addr: std::net::SocketAddr, service: service::HttpService, workers: usize) -> Result<(), String> {
    let first = shared_listener(addr)?;
    // The port actually bound (the configured one may be 0) is the others' address.
    let addr = first.local_addr().map_err(|error| error.to_string())?;
    for worker in 1..workers {
        let service = service.clone();
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("aauth-gateway-{worker}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(format!("cannot start a runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match shared_listener(addr) {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = ready.send(Err(error));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    if let Err(error) = axum::serve(without_delay(listener), forward::PerConnection(service)).await {
                        eprintln!("aauth-gateway: worker {worker}: {error}");
                    }
                });
            })
            .map_err(|error| format!("cannot start a worker thread: {error}"))?;
        // Every worker listens before the gateway says it does.
        started.recv().map_err(|_| "a worker thread stopped".to_owned())??;
    }
    axum::serve(without_delay(first), forward::PerConnection(service))
        .await
        .map_err(|error| error.to_string())
}

/// Runtime threads: the configured `workers`, else one per core.
fn worker_count(config: &Config) -> usize {
    config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

async fn run(config: Config, aauth: AAuth) -> Result<(), String> {
    tokio::spawn(aauth.watch_signing_keys());
    if let Some(addr) = config.metrics {
        serve_metrics(addr).await?;
    }
    let allow = BoxCloneSyncService::new(service::Allow);
    match config.mode {
        Mode::ReverseProxy => {
            let upstream = config.upstream.as_ref().ok_or("reverse-proxy needs upstream")?;
            let forward = forward::Forward::new(upstream, &config.resource, config.limits);
            let verified = service::verified_path(&aauth, &config, BoxCloneSyncService::new(forward));
            eprintln!(
                "aauth-gateway: {} reverse proxy on http://{} → {upstream} (batch verification {})",
                config.resource,
                config.listen,
                config.batch_verification.as_str()
            );
            serve_proxy(config.listen, verified, worker_count(&config)).await
        }
        Mode::AuthRequest => {
            let verified = service::verified_path(&aauth, &config, allow);
            let front = auth_request::AuthRequest {
                path: config.auth_request_path.clone(),
                verified,
            };
            eprintln!(
                "aauth-gateway: {} auth_request endpoint on http://{}{}",
                config.resource, config.listen, config.auth_request_path
            );
            serve_http(config.listen, BoxCloneSyncService::new(front)).await
        }
        Mode::ExtAuthz => {
            let verified = service::verified_path(&aauth, &config, allow);
            if let Some(addr) = config.well_known_listen {
                let documents = BoxCloneSyncService::new(aauth.well_known_router::<()>());
                tokio::spawn(async move {
                    if let Err(error) = serve_http(addr, documents).await {
                        eprintln!("aauth-gateway: well-known listener: {error}");
                    }
                });
            }
            let service = ext_authz::ExtAuthz {
                verified,
                max_body_bytes: config.limits.max_body_bytes,
            };
            eprintln!("aauth-gateway: {} ext_authz gRPC on {}", config.resource, config.listen);
            tonic::transport::Server::builder()
                .timeout(config.limits.upstream_timeout)
                .add_service(AuthorizationServer::new(service))
                .serve(config.listen)
                .await
                .map_err(|error| error.to_string())
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "aauth_gateway=info,tower_aauth=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut path = None;
    let mut check_only = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => path = args.next(),
            "--check" => check_only = true,
            _ => return usage(),
        }
    }
    let Some(path) = path else {
        return usage();
    };
    let config = match Config::load(std::path::Path::new(&path)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("aauth-gateway: {path}: {error}");
            return ExitCode::from(2);
        }
    };
    // The reverse proxy runs one single-threaded runtime per worker (see `serve_proxy`);
    // the other modes a work-stealing runtime on that many threads (every core by
    // default), or one thread.
    let workers = worker_count(&config);
    let runtime = if workers == 1 || config.mode == Mode::ReverseProxy {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("aauth-gateway: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(start(path, config, check_only))
}

async fn start(path: String, config: Config, check_only: bool) -> ExitCode {
    let aauth = match build(&config).await {
        Ok(aauth) => aauth,
        Err(error) => {
            eprintln!("aauth-gateway: {path}: {error}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!(
            "{path}: ok ({} routes, signing kid {}, batch verification {})",
            config.routes.len(),
            aauth.active_kid(),
            config.batch_verification.as_str()
        );
        return ExitCode::SUCCESS;
    }
    match run(config, aauth).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aauth-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
