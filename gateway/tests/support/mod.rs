//! The world the gateway tests run in, all on loopback: a small upstream that echoes what
//! reached it (and counts it), the test kit's access server and an agent publishing its
//! keys, gateway processes (the binary Cargo built for these tests) and, for the nginx
//! test, a real `nginx`. Every child process is killed on drop; every wait is bounded.
#![allow(dead_code)]

pub mod envoy;
pub mod nginx;
#[path = "../../../tests/support/redis.rs"]
pub mod redis;
pub mod scenarios;

use std::collections::BTreeMap;
use std::net::{TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_aauth::ResourceKey;
use tower_aauth::testing::{AgentClient, Consent, KeySource, TestAgent, TestAuthServer};

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {port}: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aauth-gateway-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A signing-key directory holding one PKCS#8 Ed25519 key.
pub fn key_directory() -> TempDir {
    let keys = TempDir::new("keys");
    let pem = include_str!("../../../tests/vectors/pem/resource-key.pem");
    std::fs::write(keys.path().join("resource-1.pem"), pem).unwrap();
    keys
}

/// The echoing upstream: answers every request with JSON naming its method, path, query,
/// body length, every `x-aauth-*` / `x-forwarded-*` header (all values, in order) and
/// the port its connection came from (`peer_port`). `/slow` answers after 5 s; a path
/// ending in `/close` is answered with `Connection: close`. It counts the requests it
/// received.
pub struct Upstream {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                echo(request).await
            }
        });
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Upstream { port, hits, task }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    if parts.uri.path() == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-aauth-") || name.as_str().starts_with("x-forwarded-") {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap_or("<binary>").to_owned());
        }
    }
    let peer_port = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.port());
    let answer = json!({
        "peer_port": peer_port,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "body": String::from_utf8_lossy(&body),
        "headers": headers,
    });
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json");
    if parts.uri.path().ends_with("/close") {
        response = response.header("connection", "close");
    }
    response.body(Body::from(answer.to_string())).unwrap()
}

/// The access server and the agent (with its published `jwks_uri` identity).
pub struct Parties {
    pub auth_server: TestAuthServer,
    pub auth_origin: String,
    pub agent: TestAgent,
    pub agent_id: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Parties {
    pub async fn start() -> Parties {
        Parties::start_with_person(None).await
    }

    /// The access server's tokens name `person` as their `sub` (default: the kit's).
    pub async fn start_with_person(person: Option<&str>) -> Parties {
        let agent = TestAgent::generate();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent_id = format!("http://{}", listener.local_addr().unwrap());
        let router = agent.identity_router(&agent_id);
        let agent_task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let auth_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth_origin = format!("http://{}", auth_listener.local_addr().unwrap());
        let mut builder = TestAuthServer::builder(&auth_origin)
            .consent(Consent::AutoApprove)
            .retry_after(0)
            .signing_key(ResourceKey::generate().with_kid("gateway-as"));
        if let Some(person) = person {
            builder = builder.person(person);
        }
        let auth_server = builder.build().unwrap();
        let auth_router = auth_server.router();
        let auth_task = tokio::spawn(async move {
            axum::serve(auth_listener, auth_router).await.unwrap();
        });
        Parties {
            auth_server,
            auth_origin,
            agent,
            agent_id,
            tasks: vec![agent_task, auth_task],
        }
    }

    /// The agent signing with its own identity (`jwks_uri`).
    pub fn client(&self) -> AgentClient {
        AgentClient::new(self.agent.clone(), self.source()).with_max_polling(Duration::from_secs(10))
    }

    pub fn source(&self) -> KeySource {
        KeySource::agent_jwks(&self.agent_id, self.agent.key().kid())
    }
}

impl Drop for Parties {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The routes every test deployment protects.
pub const ROUTES: &str = r#"
[[route]]
path = "/bots/*"
bots = true

[[route]]
path = "/partners/*"
bots = ["https://bots.example"]
[[route]]
path = "/data"
methods = ["GET"]
scopes = ["data.read"]

[[route]]
path = "/data"
methods = ["POST"]
scopes = ["data.write"]

[[route]]
path = "/admin/*"
scopes = ["admin.all"]

[[route]]
path = "/whoami"
signature = true

[[route]]
path = "/upload"
methods = ["POST", "PUT"]
signature = true

[[route]]
path = "/slow"
signature = true

[[route]]
path = "/public/*"
public = true

[scopes]
"data.read" = "Read your data"
"#;

/// A gateway process with its configuration file.
pub struct Gateway {
    pub port: u16,
    child: Child,
    _dir: TempDir,
}

impl Gateway {
    /// Starts the gateway with `config` (the TOML text) and waits until `port` listens.
    pub fn start(config: &str, port: u16) -> Gateway {
        let dir = TempDir::new("config");
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::env::var_os("GATEWAY_LOG").is_some();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aauth-gateway"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(if log { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .expect("the aauth-gateway binary starts");
        wait_for_port(port, "aauth-gateway", &mut child);
        Gateway { port, child, _dir: dir }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration of a test gateway: `mode`, `resource`, `listen`, the keys, the access
/// server, loopback identifiers allowed, a 1 KiB body cap, a 1 s upstream timeout, Web
/// Bot Auth on, the routes, and `extra` top-level lines.
pub fn config(mode: &str, resource: &str, listen: u16, keys: &Path, auth_origin: &str, extra: &str) -> String {
    format!(
        "resource = \"{resource}\"\nmode = \"{mode}\"\nlisten = \"127.0.0.1:{listen}\"\n\
         signing_keys = \"{}\"\n{extra}\n\
         [trust]\naccess_server = \"{auth_origin}\"\nallow_http_loopback = true\n\n\
         [limits]\nmax_body_bytes = 1024\nupstream_timeout_ms = 1000\nconnect_timeout_ms = 500\n\n\
         [web_bot_auth]\nenabled = true\n{ROUTES}",
        keys.display()
    )
}

/// Sends `request` (already signed, or not) as is and returns status, headers and body.
pub async fn send(request: Request<Vec<u8>>) -> (StatusCode, http::HeaderMap, Value) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let request = reqwest::Request::try_from(request).unwrap();
    let response = client.execute(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Bounds a scenario: a hung peer fails the test instead of hanging it.
pub async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(90), future)
        .await
        .expect("the scenario finished within 90 s")
}

/// The gateway as a reverse proxy in front of an echo upstream, for the parties.
pub struct ReverseProxy {
    pub parties: Parties,
    pub upstream: Upstream,
    pub gateway: Gateway,
    _keys: TempDir,
}

/// A reverse-proxy gateway on a free port in front of the upstream on `upstream_port`,
/// signing with the keys in `keys`, with `extra` top-level configuration lines.
pub fn reverse_proxy_gateway(keys: &Path, auth_origin: &str, upstream_port: u16, extra: &str) -> Gateway {
    let port = free_port();
    let text = config(
        "reverse-proxy",
        &format!("http://127.0.0.1:{port}"),
        port,
        keys,
        auth_origin,
        &format!("upstream = \"http://127.0.0.1:{upstream_port}\"\n{extra}"),
    );
    Gateway::start(&text, port)
}

impl ReverseProxy {
    pub async fn start() -> ReverseProxy {
        ReverseProxy::start_for(Parties::start().await).await
    }

    pub async fn start_for(parties: Parties) -> ReverseProxy {
        ReverseProxy::start_with(parties, "").await
    }

    /// With `extra` top-level configuration lines.
    pub async fn start_with(parties: Parties, extra: &str) -> ReverseProxy {
        let upstream = Upstream::start().await;
        let keys = key_directory();
        let gateway = reverse_proxy_gateway(keys.path(), &parties.auth_origin, upstream.port, extra);
        ReverseProxy {
            parties,
            upstream,
            gateway,
            _keys: keys,
        }
    }

    pub fn front(&self) -> scenarios::Front<'_> {
        scenarios::Front {
            origin: self.gateway.origin(),
            upstream: &self.upstream,
            parties: &self.parties,
            strips_every_prefixed: true,
            problem_codes: true,
        }
    }

    /// A signed `GET /whoami`, its signature created `age` seconds ago (distinct ages:
    /// distinct signatures).
    pub fn whoami(&self, age: u64) -> Request<Vec<u8>> {
        let mut request = Request::builder()
            .uri(format!("{}/whoami", self.gateway.origin()))
            .body(Vec::new())
            .unwrap();
        self.parties.agent.sign_with(
            &mut request,
            &self.parties.source(),
            now() - age,
            &tower_aauth::testing::SignOptions::default(),
        );
        request
    }
}
