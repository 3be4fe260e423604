//! Attack POL-12 against real peers: a four-party resource names the person only when it
//! trusts the person server, and then the whole draft -11 four-party flow, through the
//! real Person Server and Access Server of PyPI `introspection-aauth` 0.1.0, ends `200`.
//!
//! # Design
//!
//! Five servers, each on its own `127.0.0.1` port, each named by a `.test` host because
//! draft -11 identifiers are `https://host` with no port (the package refuses anything
//! else): `ps.test` and `as.test` are the package's servers, each a subprocess hosted by
//! `tests/interop/py/introspection_server.py` (uvicorn, killed on drop); `resource.test`
//! is our layer, built in process with the builder calls `examples/resource_server.rs`
//! makes for `AAUTH_AUTH_SERVER` + `AAUTH_PERSON_SERVER`; `agents.test` publishes the
//! agent provider's keys; the agent is the crate's [`TestAgent`] driven by hand, since
//! [`tower_aauth::testing::AgentClient`] speaks to an access server directly and draft -11
//! has the agent speak only to its person server. Every client — the package's `httpx2`,
//! our discovery [`Fetch`], the agent — routes a `.test` host to its loopback port over
//! plain http and refuses any other host, so nothing leaves the machine. Signatures and
//! `Host` still carry the `.test` names, and every server checks them as such.
//!
//! # What is real
//!
//! Real, unmodified, in the package: the PS's mission proposal, approval and person
//! tokens; its verification of our resource token (fetching our metadata and JWKS) and of
//! the presented person token; its federation with the AS, signed as the PS; the AS's
//! verification of the PS's signature and of all three tokens, its auth token, and the
//! PS's check of what it delivers. Ours: the resource, its challenge and resource token,
//! and its verification of the person and auth tokens through ordinary discovery.
//!
//! The host's, because the package leaves them to a host: where each `.test` host
//! listens (the `httpx2` transport and our `Fetch`); the person, who approves the mission
//! through `PersonServer.decide` (what the package's README calls "your approval app",
//! here `POST /_host/decide`); the AS's policy, which allows every request that verified.
//! The agent provider is ours ([`TestIssuer`]): the package has no agent side.
//!
//! Not real: TLS (each `https://NAME` is plain http on loopback, the only way to give the
//! package port-free identifiers here) and the example binary itself (its builder calls
//! are repeated in process, with [`LoopbackFetch`] in place of the default fetcher, whose
//! egress policy rightly refuses loopback addresses for DNS names).
//!
//! # Without `AAUTH_PERSON_SERVER`
//!
//! The same resource refuses the person token outright: `401`, `Signature-Error:
//! error=invalid_jwt` (its issuer is not trusted), no `AAuth-Requirement`, so there is no
//! resource token to exchange. Signing with its agent token instead, the agent does get
//! a four-party challenge, but its resource token names no person (no `ps`, `sub`,
//! `presented_jti`, `mission_s256`, `tenant`), and the real PS refuses to redeem it
//! (`400 invalid_resource_token`, on the first copied claim it checks, `tenant`) before
//! the AS is ever asked. Neither path can end `200`.
//!
//! Needs `bash tests/interop/setup.sh` (without it the tests are reported ignored, and fail under `CI=true`: see `build.rs`).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use support::peers::Peer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tower_aauth::testing::{KeySource, TestAgent, TestIssuer};
use tower_aauth::{AAuth, AuthGrant, Profile, VerifiedAgent};
use tower_aauth::{
    BoxFuture,
    discovery::{Fetch, FetchError, FetchedDocument},
};

const PS: &str = "https://ps.test";
const AS: &str = "https://as.test";
const RESOURCE: &str = "https://resource.test";
const AGENTS: &str = "https://agents.test";
const TENANT: &str = "acme";
/// Every wait in a test is bounded by this.
const PATIENCE: Duration = Duration::from_secs(20);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn host_of(url: &str) -> &str {
    let rest = url.strip_prefix("https://").expect("an https URL");
    rest.split_once('/').map_or(rest, |(host, _)| host)
}

/// Where each `.test` host listens on 127.0.0.1.
#[derive(Debug, Clone, Default)]
struct Hosts(HashMap<String, u16>);

impl Hosts {
    /// `https://NAME/path` as `http://127.0.0.1:PORT/path`, for a known NAME only.
    fn loopback(&self, url: &str) -> Option<String> {
        let host = host_of(url);
        let port = self.0.get(host)?;
        Some(format!(
            "http://127.0.0.1:{port}{}",
            &url["https://".len() + host.len()..]
        ))
    }
}

/// Discovery for the resource over [`Hosts`]; admission, caching and key checks are the
/// layer's own, as with the default fetcher.
struct LoopbackFetch {
    hosts: Hosts,
    client: reqwest::Client,
}

impl Fetch for LoopbackFetch {
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        Box::pin(async move {
            let target = self.hosts.loopback(url).ok_or(FetchError::Refused)?;
            let response = self
                .client
                .get(target)
                .header(http::header::HOST, host_of(url))
                .send()
                .await
                .map_err(|_| FetchError::Transport)?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status().as_u16()));
            }
            let body = response.bytes().await.map_err(|_| FetchError::Transport)?;
            if body.len() > max_bytes {
                return Err(FetchError::TooLarge);
            }
            Ok(FetchedDocument::new(body))
        })
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PATIENCE)
        .build()
        .unwrap()
}

/// Serves `router` on a free loopback port.
async fn serve(router: Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(axum::serve(listener, router).into_future());
    port
}

/// One introspection-aauth server, running until dropped.
struct PeerServer {
    // Held for kill_on_drop; its stdin's EOF also stops it.
    _child: Child,
    stdin: ChildStdin,
    port: u16,
}

impl PeerServer {
    /// Starts `introspection-server ROLE` with `config`; it binds a free port and says
    /// which before serving anything.
    async fn start(launcher: &Path, role: &str, config: Value) -> PeerServer {
        let mut child = Command::new(launcher)
            .arg(role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", launcher.display()));
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{config}\n").as_bytes()).await.unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        tokio::time::timeout(PATIENCE, stdout.read_line(&mut line))
            .await
            .expect("the server reports its port in time")
            .unwrap();
        let said: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("{role} server said {line:?}, not its port"));
        assert_eq!(said["peer"], Peer::Introspection.pinned(), "{said}");
        let port = said["port"].as_u64().expect("a port") as u16;
        PeerServer {
            _child: child,
            stdin,
            port,
        }
    }

    /// Tells the server where every `.test` host listens; it then serves.
    async fn route(&mut self, hosts: &Hosts) {
        let line = json!({ "hosts": hosts.0 }).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

/// The resource as `examples/resource_server.rs` builds it in four-party posture (with
/// `AAUTH_AUTH_SERVER`, and `AAUTH_PERSON_SERVER` when `person_server` is given), its
/// discovery over [`LoopbackFetch`].
fn resource(person_server: Option<&str>, hosts: &Hosts) -> Router {
    let mut builder = AAuth::builder(RESOURCE)
        .profile(Profile::Draft11)
        .scope("data.read", "Read access to your data")
        .scope("data.write", "Create and update your data")
        .metadata_name("Important Resource")
        .access_mode("auth-token")
        .auth_server(AS);
    if let Some(person_server) = person_server {
        builder = builder.person_server(person_server);
    }
    let aauth = builder
        .fetcher(LoopbackFetch {
            hosts: hosts.clone(),
            client: client(),
        })
        .build()
        .unwrap();
    async fn read_data(agent: VerifiedAgent, grant: Option<AuthGrant>) -> axum::Json<Value> {
        let token = agent.request.token.as_deref().map(|t| &t.claims);
        axum::Json(json!({
            "token_type": agent.token_kind.map(|k| k.typ()),
            "scope": grant.map(|g| g.scopes.to_string()),
            "sub": token.and_then(|t| t.sub.as_deref()),
            "data": ["important", "records"],
        }))
    }
    Router::new()
        .route("/data", get(read_data).route_layer(aauth.require_scopes(["data.read"])))
        .merge(aauth.well_known_router())
        .layer(aauth.layer())
}

/// An answer, its headers kept.
struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

/// The agent: a key, its agent token from `agents.test`, and a client that reaches the
/// `.test` hosts on loopback.
struct Agent {
    key: TestAgent,
    agent_token: String,
    hosts: Hosts,
    client: reqwest::Client,
}

impl Agent {
    /// Signs `method url` (with `body` as JSON, covering its digest) presenting `token`,
    /// and sends it where `url`'s host listens, with that host as `Host`.
    async fn send(&self, method: Method, url: &str, body: Option<&Value>, token: &str) -> Answer {
        let mut request = Request::builder().method(method.clone()).uri(url);
        let bytes = body.map(|b| b.to_string().into_bytes());
        if bytes.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let mut request = request.body(()).unwrap();
        let source = KeySource::Jwt(token.to_owned());
        match &bytes {
            Some(bytes) => self.key.sign_with_body(&mut request, bytes, &source, now()),
            None => self.key.sign(&mut request, &source, now()),
        }
        let target = self.hosts.loopback(url).expect("a .test host");
        let mut outgoing = self
            .client
            .request(method, target)
            .header(http::header::HOST, host_of(url));
        for (name, value) in request.headers() {
            outgoing = outgoing.header(name, value);
        }
        if let Some(bytes) = bytes {
            outgoing = outgoing.body(bytes);
        }
        let response = outgoing.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, headers, body }
    }

    /// Polls a `202`'s `Location`, signed with the agent token, until it is not `202`.
    async fn settle(&self, pending: Answer) -> Answer {
        let deadline = Instant::now() + PATIENCE;
        let mut answer = pending;
        while answer.status == StatusCode::ACCEPTED {
            assert!(Instant::now() < deadline, "still pending after {PATIENCE:?}");
            let location = answer.header("location").to_owned();
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = self.send(Method::GET, &location, None, &self.agent_token).await;
        }
        answer
    }
}

/// The payload of a compact JWT, unverified: the agent reads what it routes by.
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a compact JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The `resource-token` parameter of an `auth-token` challenge.
fn resource_token(challenge: &Answer) -> String {
    let requirement = challenge.header("aauth-requirement");
    assert!(
        requirement.starts_with("requirement=auth-token;"),
        "an auth-token challenge: {requirement}"
    );
    let start = requirement.find("resource-token=\"").expect("a resource token") + "resource-token=\"".len();
    requirement[start..].split('"').next().unwrap().to_owned()
}

/// The servers of one test, the agent, and the person's approval app.
struct FourParty {
    agent: Agent,
    ps_port: u16,
    // Held so that both peers live as long as the test.
    _ps: PeerServer,
    _as: PeerServer,
}

impl FourParty {
    /// Starts everything, the resource trusting `AS` and, when given, `person_server`.
    async fn start(person_server: Option<&str>) -> FourParty {
        let launcher = Peer::Introspection.launcher_path();
        let key = TestAgent::generate();
        let provider = TestIssuer::new(AGENTS, [7; 32], "agents-key-1");
        let agent_token = provider.agent_token("aauth:assistant@agents.test", &key.public_jwk(), now());
        let (metadata, jwks) = (provider.metadata(), provider.jwks());
        let agents_port = serve(
            Router::new()
                .route(
                    "/.well-known/aauth-agent.json",
                    get(move || std::future::ready(axum::Json(metadata))),
                )
                .route(
                    "/.well-known/jwks.json",
                    get(move || std::future::ready(axum::Json(jwks))),
                ),
        )
        .await;

        let mut access = PeerServer::start(
            &launcher,
            "access",
            json!({ "issuer": AS, "resources": [RESOURCE], "person_servers": [PS],
                    "agent_providers": [AGENTS] }),
        )
        .await;
        let mut person = PeerServer::start(
            &launcher,
            "person",
            json!({ "issuer": PS, "tenant": TENANT, "agent_providers": [AGENTS] }),
        )
        .await;
        let mut hosts = Hosts::default();
        hosts.0.insert(host_of(PS).to_owned(), person.port);
        hosts.0.insert(host_of(AS).to_owned(), access.port);
        hosts.0.insert(host_of(AGENTS).to_owned(), agents_port);
        // The resource's port is known only once it listens, and it needs the map first.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        hosts
            .0
            .insert(host_of(RESOURCE).to_owned(), listener.local_addr().unwrap().port());
        tokio::spawn(axum::serve(listener, resource(person_server, &hosts)).into_future());
        access.route(&hosts).await;
        person.route(&hosts).await;
        FourParty {
            agent: Agent {
                key,
                agent_token,
                hosts,
                client: client(),
            },
            ps_port: person.port,
            _ps: person,
            _as: access,
        }
    }

    /// The person approves the approval `pending` names, through the host's approval app.
    async fn approve(&self, pending: &Answer) {
        assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.body);
        let location = pending.header("location");
        let (tenant, id) = location
            .strip_prefix(&format!("{PS}/aauth/pending/"))
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("a pending URL of the PS: {location}"));
        let decision = json!({ "tenant": tenant, "approval_id": id, "status": "approved", "decided_by": "alice" });
        let decided = self
            .agent
            .client
            .post(format!("http://127.0.0.1:{}/_host/decide", self.ps_port))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(decision.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let decided: Value =
            serde_json::from_str(&decided).unwrap_or_else(|_| panic!("the approval app said {decided}"));
        assert_eq!(decided["status"], "approved", "{decided}");
    }

    /// A mission covering the resource, proposed by the agent and approved by the person;
    /// the PS answers with the person token for the resource.
    async fn person_token(&self) -> String {
        let agent = &self.agent;
        let proposed = agent
            .send(
                Method::POST,
                &format!("{PS}/aauth/mission"),
                Some(&json!({ "description": "Read my important records",
                              "resources": [RESOURCE], "login_hint": "alice" })),
                &agent.agent_token,
            )
            .await;
        self.approve(&proposed).await;
        let mission = agent.settle(proposed).await;
        assert_eq!(mission.status, StatusCode::OK, "{}", mission.body);
        mission.body["person_tokens"][RESOURCE]
            .as_str()
            .unwrap_or_else(|| panic!("a person token for the resource: {}", mission.body))
            .to_owned()
    }

    /// The agent's `auth-token` exchange at its PS: `POST /token`, then its pending URL.
    async fn exchange(&self, resource_token: &str, person_token: &str) -> Answer {
        let agent = &self.agent;
        let asked = agent
            .send(
                Method::POST,
                &format!("{PS}/aauth/token"),
                Some(&json!({ "resource_token": resource_token, "presented_token": person_token })),
                &agent.agent_token,
            )
            .await;
        agent.settle(asked).await
    }

    async fn get_data(&self, token: &str) -> Answer {
        self.agent
            .send(Method::GET, &format!("{RESOURCE}/data"), None, token)
            .await
    }
}

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn trusting_the_person_server_lets_the_real_four_party_flow_end_200() {
    let world = FourParty::start(Some(PS)).await;
    let person_token = world.person_token().await;
    let person = claims(&person_token);

    let challenge = world.get_data(&person_token).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED, "{}", challenge.body);
    let resource_token = resource_token(&challenge);
    let asked = claims(&resource_token);
    assert_eq!(asked["aud"], AS, "four-party: the resource token is for the AS");
    assert_eq!(asked["ps"], PS, "{asked}");
    assert_eq!(asked["sub"], person["sub"], "{asked}");
    assert_eq!(asked["presented_jti"], person["jti"], "{asked}");
    assert_eq!(asked["mission_s256"], person["mission_s256"], "{asked}");
    assert_eq!(asked["tenant"], TENANT, "{asked}");

    let issued = world.exchange(&resource_token, &person_token).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let auth_token = issued.body["auth_token"].as_str().expect("an auth token").to_owned();
    let granted = claims(&auth_token);
    assert_eq!(granted["iss"], AS, "the AS issued it: {granted}");
    assert_eq!(granted["ps"], PS, "{granted}");
    assert_eq!(granted["sub"], person["sub"], "{granted}");
    assert_eq!(granted["aud"], RESOURCE, "{granted}");

    let served = world.get_data(&auth_token).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert_eq!(served.body["scope"], "data.read");
    assert_eq!(served.body["sub"], person["sub"]);
}

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn without_the_person_server_configured_the_person_token_is_refused_not_challenged() {
    let world = FourParty::start(None).await;
    let person_token = world.person_token().await;

    let refused = world.get_data(&person_token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(refused.header("signature-error"), "error=invalid_jwt");
    assert!(
        !refused.headers.contains_key("aauth-requirement"),
        "no resource token to exchange: {:?}",
        refused.headers
    );
}

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn without_the_person_server_configured_the_resource_token_names_no_person_and_the_real_ps_refuses_it() {
    let world = FourParty::start(None).await;
    let person_token = world.person_token().await;

    // Signed with its agent token, the agent still gets a four-party challenge...
    let challenge = world.get_data(&world.agent.agent_token).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED, "{}", challenge.body);
    let resource_token = resource_token(&challenge);
    let asked = claims(&resource_token);
    assert_eq!(asked["aud"], AS);
    for copied in ["ps", "sub", "presented_jti", "mission_s256", "tenant"] {
        assert!(
            asked.get(copied).is_none(),
            "{copied} without a verified person token: {asked}"
        );
    }

    // ...but a token that names no person is not one the PS will redeem at the AS.
    let refused = world.exchange(&resource_token, &person_token).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["error"], "invalid_resource_token", "{}", refused.body);
}
