//! The gateway as a reverse proxy in front of a loopback upstream: the seed flow, the
//! refusals, bodies (streamed within the cap, digest-checked before forwarding) and the
//! upstream's failures, driven by the test kit's agent.

mod support;

use std::time::Duration;

use http::{Method, Request, StatusCode};
use serde_json::json;
use support::{
    Gateway, Parties, ReverseProxy, TempDir, Upstream, bounded, config, free_port, key_directory, now,
    reverse_proxy_gateway, send,
};
use tower_aauth::testing::{BotDirectory, SignOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_and_every_refusal_behave_through_the_reverse_proxy() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let front = proxy.front();
        front.seed_flow_and_every_refusal(StatusCode::NOT_FOUND).await;
    })
    .await;
}

/// Web Bot Auth through the reverse proxy: see the bot scenarios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_admitted_on_bot_routes_only_through_the_reverse_proxy() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let directory = BotDirectory::spawn([42; 32]).await.unwrap();
        proxy.front().bot_scenarios(&directory).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_well_known_documents_are_served_by_the_gateway_not_the_upstream() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let url = format!("{}/.well-known/aauth-resource.json", proxy.gateway.origin());
        let (status, _, metadata) = send(Request::builder().uri(url).body(Vec::new()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(metadata["issuer"], proxy.gateway.origin());
        assert_eq!(metadata["scope_descriptions"]["data.read"], "Read your data");
        assert_eq!(metadata["scope_descriptions"]["admin.all"], "admin.all");
        let url = format!("{}/.well-known/jwks.json", proxy.gateway.origin());
        let (status, _, jwks) = send(Request::builder().uri(url).body(Vec::new()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        assert_eq!(proxy.upstream.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_covered_body_is_checked_then_forwarded_intact() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let body = json!({"item": "widget", "n": 7});
        let outcome = proxy
            .parties
            .client()
            .fetch(Method::POST, &format!("{}/data", proxy.gateway.origin()), Some(&body))
            .await
            .unwrap();
        assert_eq!(outcome.response.status, StatusCode::OK, "{:?}", outcome.response);
        let echoed = outcome.response.json().unwrap();
        assert_eq!(echoed["body"], body.to_string());
        assert_eq!(echoed["headers"]["x-aauth-scope"], json!(["data.write"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_match_its_signed_digest_is_refused_before_forwarding() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/upload", proxy.gateway.origin()))
            .header("content-type", "application/json")
            .body(b"{\"amount\":1}".to_vec())
            .unwrap();
        proxy
            .parties
            .agent
            .sign_with_body(&mut request, b"{\"amount\":1}", &proxy.parties.source(), now());
        *request.body_mut() = b"{\"amount\":9}".to_vec();
        let (status, headers, _) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers["signature-error"], "error=invalid_signature");
        assert_eq!(proxy.upstream.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_covered_body_over_the_cap_is_413_and_not_forwarded() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let body = vec![b'z'; 4096];
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/upload", proxy.gateway.origin()))
            .body(body.clone())
            .unwrap();
        proxy
            .parties
            .agent
            .sign_with_body(&mut request, &body, &proxy.parties.source(), now());
        let (status, _, _) = send(request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(proxy.upstream.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_growing_past_the_cap_is_413() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![b'c'; 512])).collect();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/upload", proxy.gateway.origin()))
            .body(Vec::<u8>::new())
            .unwrap();
        proxy
            .parties
            .agent
            .sign_with(&mut request, &proxy.parties.source(), now(), &SignOptions::default());
        let (parts, _) = request.into_parts();
        let client = reqwest::Client::new();
        let response = client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_is_502_and_a_slow_one_504() {
    bounded(async {
        let parties = Parties::start().await;
        let keys = key_directory();
        let closed = free_port();
        let gateway = reverse_proxy_gateway(keys.path(), &parties.auth_origin, closed, "");
        let mut request = Request::builder()
            .uri(format!("{}/whoami", gateway.origin()))
            .body(Vec::new())
            .unwrap();
        parties
            .agent
            .sign_with(&mut request, &parties.source(), now(), &SignOptions::default());
        let (status, _, body) = send(request).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert_eq!(body["error"], "upstream_unavailable");
        drop(gateway);

        let upstream = Upstream::start().await;
        let gateway = reverse_proxy_gateway(keys.path(), &parties.auth_origin, upstream.port, "");
        let mut request = Request::builder()
            .uri(format!("{}/slow", gateway.origin()))
            .body(Vec::new())
            .unwrap();
        parties
            .agent
            .sign_with(&mut request, &parties.source(), now(), &SignOptions::default());
        let started = std::time::Instant::now();
        let (status, _, body) = send(request).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(body["error"], "upstream_timeout");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "answered at the 1 s timeout"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_the_upstream_could_resolve_elsewhere_is_400() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let request = Request::builder()
            .uri(format!("{}/public/a%2F..%2Fadmin", proxy.gateway.origin()))
            .body(Vec::new())
            .unwrap();
        let (status, _, body) = send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(proxy.upstream.hits(), 0);
    })
    .await;
}

#[test]
fn a_bad_configuration_stops_the_gateway_naming_the_line() {
    let dir = TempDir::new("bad-config");
    let path = dir.path().join("gateway.toml");
    let cases = [
        (
            "resource = \"https://api.example\"\nmode = \"reverse-proxy\"\nlisten = \"127.0.0.1:1\"\nupstreem = \"x\"\n",
            "line 4",
        ),
        (
            "resource = \"https://api.example\"\nmode = \"reverse-proxy\"\nlisten = \"127.0.0.1:1\"\nupstream = \"http://127.0.0.1:2\"\nsigning_keys = \"/nonexistent/keys\"\n[trust]\naccess_server = \"https://as.example\"\n[[route]]\npath = \"/a\"\nagent = true\n",
            "line 5: signing_keys",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_aauth-gateway"))
            .arg("--config")
            .arg(&path)
            .arg("--check")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_address_serves_the_layer_s_prometheus_text() {
    bounded(async {
        let parties = Parties::start().await;
        let upstream = Upstream::start().await;
        let keys = key_directory();
        let port = free_port();
        let metrics = free_port();
        let text = config(
            "reverse-proxy",
            &format!("http://127.0.0.1:{port}"),
            port,
            keys.path(),
            &parties.auth_origin,
            &format!(
                "upstream = \"http://127.0.0.1:{}\"\nmetrics = \"127.0.0.1:{metrics}\"",
                upstream.port
            ),
        );
        let gateway = Gateway::start(&text, port);
        let mut request = Request::builder()
            .uri(format!("{}/whoami", gateway.origin()))
            .body(Vec::new())
            .unwrap();
        parties
            .agent
            .sign_with(&mut request, &parties.source(), now(), &SignOptions::default());
        let (status, _, _) = send(request).await;
        assert_eq!(status, StatusCode::OK);
        let url = format!("http://127.0.0.1:{metrics}/metrics");
        let (status, _, body) = send(Request::builder().uri(url).body(Vec::new()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        let text = body.as_str().expect("Prometheus text");
        assert!(text.contains("tower_aauth_requests_total"), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_subject_cannot_be_a_header_value_is_refused_before_forwarding() {
    bounded(async {
        // A trusted issuer's subject outside visible ASCII could not travel in
        // x-aauth-person: the layer refuses such identifier claims (the gateway would
        // refuse them too, 403 identity_unrepresentable), and nothing is forwarded.
        let proxy = ReverseProxy::start_for(Parties::start_with_person(Some("pérson")).await).await;
        let outcome = proxy
            .parties
            .client()
            .fetch(Method::GET, &format!("{}/data", proxy.gateway.origin()), None)
            .await
            .unwrap();
        assert_eq!(
            outcome.response.status,
            StatusCode::UNAUTHORIZED,
            "{:?}",
            outcome.response
        );
        assert_eq!(outcome.response.signature_error(), Some("error=invalid_jwt"));
        assert_eq!(proxy.upstream.hits(), 0);
    })
    .await;
}

/// Sends `request` on `client` (whose kept-alive connection is one downstream
/// connection) and returns the status and the upstream's echo.
async fn send_on(client: &reqwest::Client, request: Request<Vec<u8>>) -> (StatusCode, serde_json::Value) {
    let response = client
        .execute(reqwest::Request::try_from(request).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// A client keeping one connection to the gateway.
fn one_connection() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sockets listening on `port` (IPv4), from the kernel's table.
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|address| address.ends_with(&local)) && fields.get(3) == Some(&"0A")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_accepts_on_its_own_listener_of_the_one_address() {
    bounded(async {
        for workers in [1, 3] {
            let proxy = ReverseProxy::start_with(Parties::start().await, &format!("workers = {workers}")).await;
            let port = proxy.gateway.port;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while listeners_on(port) < workers && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(listeners_on(port), workers, "one listener per worker");
            // Connections spread over the workers are all served.
            for age in 1..=6 {
                let client = one_connection();
                let request = proxy.whoami(age);
                let (status, echoed) = send_on(&client, request).await;
                assert_eq!(status, StatusCode::OK, "{echoed}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_downstream_connection_keeps_its_own_upstream_connection() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let (first, second) = (one_connection(), one_connection());
        let signed = |age: u64| {
            let mut request = Request::builder()
                .uri(format!("{}/whoami", proxy.gateway.origin()))
                .body(Vec::new())
                .unwrap();
            proxy.parties.agent.sign_with(
                &mut request,
                &proxy.parties.source(),
                now() - age,
                &SignOptions::default(),
            );
            request
        };
        // Alternating: with a shared pool the second connection's request would take the
        // upstream connection the first one left idle.
        let mut ports = Vec::new();
        for (age, client) in [(1, &first), (2, &second), (3, &first), (4, &second)] {
            let (status, echoed) = send_on(client, signed(age)).await;
            assert_eq!(status, StatusCode::OK, "{echoed}");
            ports.push(echoed["peer_port"].as_u64().expect("the upstream's peer port"));
        }
        assert_eq!(
            ports[0], ports[2],
            "the first connection's requests share one upstream connection"
        );
        assert_eq!(
            ports[1], ports[3],
            "the second connection's requests share one upstream connection"
        );
        assert_ne!(
            ports[0], ports[1],
            "each downstream connection has its own upstream connection"
        );
        assert_eq!(proxy.upstream.hits(), 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_connection_the_upstream_closed_is_replaced_on_the_next_request() {
    bounded(async {
        let proxy = ReverseProxy::start().await;
        let client = one_connection();
        let get = |path: &str| {
            Request::builder()
                .uri(format!("{}{path}", proxy.gateway.origin()))
                .body(Vec::new())
                .unwrap()
        };
        let (status, closed) = send_on(&client, get("/public/close")).await;
        assert_eq!(status, StatusCode::OK, "{closed}");
        for _ in 0..3 {
            let (status, echoed) = send_on(&client, get("/public/page")).await;
            assert_eq!(status, StatusCode::OK, "{echoed}");
            assert_ne!(echoed["peer_port"], closed["peer_port"], "a new upstream connection");
        }
        assert_eq!(proxy.upstream.hits(), 4);
    })
    .await;
}
