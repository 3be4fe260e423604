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
//! # Revocation and budgets
//!
//! The same world serves two draft -11 additions. Revocation: the package has no
//! revocation of its own, so the host asks its PS or AS (`POST /_host/revoke`) to sign the
//! draft's `{"jti","exp"}` POST with its real server key and signer, and our endpoint's
//! answer decides whether the token is refused from then on. Budgets: the person gives the
//! mission a budget, our metered `/report` offers one in its resource token, the real PS
//! weighs it against the mission and sends it to the real AS, whose policy lowers it; our
//! meter spends the grant and asks again with `reason=budget-exhausted` (which the PyPI
//! and npm agents' challenge parsers still read). The real PS will not redeem that step-up
//! resource token, which is bound to the spent auth token: it takes only its own person
//! token as the presented token in a federated exchange. Presenting the person token
//! again, the agent gets a resource token the PS redeems within what the mission has left.
//! In the three-party posture (the resource names no AS) the PS itself issues the auth
//! token with exactly the offered budget, spent from the mission, and asks the person once
//! the mission's budget is spent.
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
/// Our revocation endpoint.
const REVOKE: &str = "/aauth/revoke";
/// Our authorization endpoint.
const AUTHORIZE: &str = "/aauth/authorize";
/// `/report` costs 1 USD (at 6 decimals)...
const PRICE: u64 = 1_000_000;
/// ...and its resource tokens offer a budget of 5 USD.
const OFFER: u64 = 5_000_000;
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
/// discovery over [`LoopbackFetch`]; with the revocation endpoint at [`REVOKE`], the
/// authorization endpoint at [`AUTHORIZE`] (no accounts), and `/report` metered at
/// [`PRICE`], offering [`OFFER`]. Without `access_server` it is the three-party posture
/// (no `AAUTH_AUTH_SERVER`: resource tokens are for the person server).
fn resource(person_server: Option<&str>, hosts: &Hosts, access_server: bool) -> Router {
    let mut builder = AAuth::builder(RESOURCE)
        .profile(Profile::Draft11)
        .scope("data.read", "Read access to your data")
        .scope("data.write", "Create and update your data")
        .metadata_name("Important Resource")
        .access_mode("auth-token");
    if access_server {
        builder = builder.auth_server(AS);
    }
    if let Some(person_server) = person_server {
        builder = builder.person_server(person_server);
    }
    let aauth = builder
        .revocation_endpoint(REVOKE)
        .authorization_endpoint(AUTHORIZE, |_, _| tower_aauth::policy::AccountDecision::NotHeld)
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
        .route(
            "/report",
            get(|| std::future::ready("report"))
                .route_layer(aauth.meter("USD", 6, PRICE).scopes(["data.read"]).offer(OFFER)),
        )
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
    as_port: u16,
    // Held so that both peers live as long as the test.
    _ps: PeerServer,
    _as: PeerServer,
}

impl FourParty {
    /// Starts everything, the resource trusting `AS` and, when given, `person_server`.
    async fn start(person_server: Option<&str>) -> FourParty {
        FourParty::start_with(person_server, None, true).await
    }

    /// [`FourParty::start`], the AS's policy granting `grant_budget` when given; without
    /// `access_server` the resource does not name the AS (three-party posture).
    async fn start_with(person_server: Option<&str>, grant_budget: Option<Value>, access_server: bool) -> FourParty {
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
                    "agent_providers": [AGENTS], "grant_budget": grant_budget }),
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
        tokio::spawn(axum::serve(listener, resource(person_server, &hosts, access_server)).into_future());
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
            as_port: access.port,
            _ps: person,
            _as: access,
        }
    }

    /// The person approves the approval `pending` names, through the host's approval app,
    /// giving a mission `budget` when given.
    async fn approve(&self, pending: &Answer, budget: Option<Value>) {
        assert_eq!(pending.status, StatusCode::ACCEPTED, "{}", pending.body);
        let location = pending.header("location");
        let (tenant, id) = location
            .strip_prefix(&format!("{PS}/aauth/pending/"))
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("a pending URL of the PS: {location}"));
        let decision = json!({ "tenant": tenant, "approval_id": id, "status": "approved", "decided_by": "alice",
                               "budget": budget });
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
        self.person_token_with(None).await
    }

    /// [`FourParty::person_token`], the person giving the mission `budget` when given.
    async fn person_token_with(&self, budget: Option<Value>) -> String {
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
        self.approve(&proposed, budget).await;
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
        self.get(token, "/data").await
    }

    async fn get(&self, token: &str, path: &str) -> Answer {
        self.agent
            .send(Method::GET, &format!("{RESOURCE}{path}"), None, token)
            .await
    }

    /// The real PS (`port` = `ps_port`) or AS (`as_port`) signs a revocation of `token`
    /// (its `jti` and `exp`) to our endpoint, through the host's `POST /_host/revoke`;
    /// what our resource answered it.
    async fn revoke(&self, port: u16, token: &str) -> Value {
        let claims = claims(token);
        let asked = json!({ "url": format!("{RESOURCE}{REVOKE}"), "jti": claims["jti"], "exp": claims["exp"] });
        let answered = self
            .agent
            .client
            .post(format!("http://127.0.0.1:{port}/_host/revoke"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(asked.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str(&answered).unwrap_or_else(|_| panic!("the host said {answered}"))
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

// ---- revocation: the real servers' signatures at our endpoint ------------------------------
//
// The package has no revocation (no `revocation_endpoint` in its metadata, nothing that sends
// one): the host asks the server to revoke, and the package signs the POST as that server.

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn the_real_servers_revoke_the_tokens_they_issued_and_the_layer_refuses_them_from_then_on() {
    let world = FourParty::start(Some(PS)).await;
    let person_token = world.person_token().await;
    let resource_token = resource_token(&world.get_data(&person_token).await);
    let issued = world.exchange(&resource_token, &person_token).await;
    let auth_token = issued.body["auth_token"].as_str().expect("an auth token").to_owned();
    assert_eq!(world.get_data(&auth_token).await.status, StatusCode::OK);

    // The PS names the AS's token: its entry is its own, the AS's token stays good.
    let foreign = world.revoke(world.ps_port, &auth_token).await;
    assert_eq!(foreign["status"], 200, "{foreign}");
    assert_eq!(world.get_data(&auth_token).await.status, StatusCode::OK);

    let revoked = world.revoke(world.as_port, &auth_token).await;
    assert_eq!(revoked["status"], 200, "{revoked}");
    assert_eq!(revoked["body"], "", "200 with an empty body");
    let key = revoked["signed"]["signature-key"].as_str().unwrap();
    assert!(
        key.starts_with("sig=jwks_uri;") && key.contains("dwk=\"aauth-access.json\""),
        "{key}"
    );
    let refused = world.get_data(&auth_token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(refused.header("signature-error"), "error=revoked_jwt");

    let revoked = world.revoke(world.ps_port, &person_token).await;
    assert_eq!(revoked["status"], 200, "{revoked}");
    let key = revoked["signed"]["signature-key"].as_str().unwrap();
    assert!(key.contains("dwk=\"aauth-person.json\""), "{key}");
    let refused = world.get_data(&person_token).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(refused.header("signature-error"), "error=revoked_jwt");
}

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn without_the_person_server_configured_its_revocation_is_unsupported_iss() {
    let world = FourParty::start(None).await;
    let person_token = world.person_token().await;
    let answered = world.revoke(world.ps_port, &person_token).await;
    assert_eq!(answered["status"], 403, "{answered}");
    let problem: Value = serde_json::from_str(answered["body"].as_str().unwrap()).unwrap();
    assert_eq!(problem["error"], "unsupported_iss", "{problem}");
}

// ---- budgets: the real PS and AS carry the resource token's budget into the auth token ------

fn usd(amount: u64) -> Value {
    json!({ "amount": amount, "unit": "USD", "decimals": 6 })
}

#[cfg_attr(
    any(skip_peer_introspection, skip_peer_v05, skip_peer_v03, skip_peer_js),
    ignore = "interop peers (PyPI introspection-aauth 0.1.0, aauth 0.5.0 / 0.3.4, npm @hellocoop/httpsig 2.2.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn the_real_servers_grant_a_budget_our_meter_spends_then_the_agent_steps_up_with_its_person_token() {
    // The mission holds 10 USD; /report offers 5 USD at 1 USD a call; the AS grants 2.
    let world = FourParty::start_with(Some(PS), Some(usd(2_000_000)), true).await;
    let person_token = world.person_token_with(Some(usd(10_000_000))).await;

    let challenge = world.get(&person_token, "/report").await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED, "{}", challenge.body);
    let offered = resource_token(&challenge);
    assert_eq!(claims(&offered)["budget"], usd(OFFER));

    let issued = world.exchange(&offered, &person_token).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let auth_token = issued.body["auth_token"].as_str().expect("an auth token").to_owned();
    assert_eq!(
        claims(&auth_token)["budget"],
        usd(2_000_000),
        "the AS's grant, carried by the real PS"
    );

    for remaining in [1_000_000, 0] {
        let served = world.get(&auth_token, "/report").await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.body);
        assert_eq!(
            served.header("aauth-budget"),
            format!("remaining={remaining}; cost={PRICE}; unit=\"USD\"; decimals=6")
        );
    }
    let spent = world.get(&auth_token, "/report").await;
    assert_eq!(spent.status, StatusCode::UNAUTHORIZED, "{}", spent.body);
    assert!(
        spent.header("aauth-requirement").ends_with("; reason=budget-exhausted"),
        "{}",
        spent.header("aauth-requirement")
    );
    assert_eq!(spent.header("aauth-budget"), "remaining=0; unit=\"USD\"; decimals=6");
    let step_up = resource_token(&spent);
    let asked = claims(&step_up);
    assert_eq!(asked["budget"], usd(OFFER));
    assert_eq!(asked["budget_consumed"][0]["consumed"], 2_000_000, "{asked}");

    // Agents that know nothing of budgets still read the step-up's resource token.
    let headers: serde_json::Map<String, Value> = spent
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value.to_str().unwrap())))
        .collect();
    let input = json!({ "status": 401, "headers": headers });
    for peer in [Peer::V05, Peer::V03, Peer::Js] {
        let parsed = peer.run(&peer.launcher_path(), "parse-challenge", &input);
        assert_eq!(parsed["requirement"], "auth-token", "{peer:?}: {parsed}");
        assert_eq!(parsed["resource_token"], step_up.as_str(), "{peer:?}: {parsed}");
    }

    // The real PS does not redeem the step-up itself: it binds the resource token to the
    // token presented with it, here the spent auth token (the AS's), while it takes only
    // its own person token as the presented token.
    for (presented, code) in [
        (&person_token, "invalid_resource_token"),
        (&auth_token, "invalid_presented_token"),
    ] {
        let refused = world.exchange(&step_up, presented).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
        assert_eq!(refused.body["error"], code, "{}", refused.body);
    }
    // Presenting its person token again, the agent gets a resource token the real PS
    // redeems within what the mission has left (10 - 2 USD), and the new grant is fresh.
    let fresh = resource_token(&world.get(&person_token, "/report").await);
    let again = world.exchange(&fresh, &person_token).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let renewed = again.body["auth_token"].as_str().expect("an auth token").to_owned();
    let served = world.get(&renewed, "/report").await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert_eq!(
        served.header("aauth-budget"),
        format!("remaining=1000000; cost={PRICE}; unit=\"USD\"; decimals=6")
    );
}

// ---- the authorization endpoint: no peer calls it, the real PS and AS redeem its token -----

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn the_real_servers_redeem_the_resource_token_our_authorization_endpoint_answers() {
    let world = FourParty::start(Some(PS)).await;
    let person_token = world.person_token().await;
    let person = claims(&person_token);

    // No peer has an agent that calls an authorization endpoint: ours asks, presenting
    // the real PS's person token.
    let answered = world
        .agent
        .send(
            Method::POST,
            &format!("{RESOURCE}{AUTHORIZE}"),
            Some(&json!({ "scope": "data.read" })),
            &person_token,
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
    let resource_token = answered.body["resource_token"]
        .as_str()
        .expect("a resource token")
        .to_owned();
    let asked = claims(&resource_token);
    assert_eq!(asked["aud"], AS, "four-party: for the AS");
    assert_eq!(asked["presented_jti"], person["jti"], "{asked}");
    assert_eq!(asked["scope"], "data.read", "{asked}");

    let issued = world.exchange(&resource_token, &person_token).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", issued.body);
    let auth_token = issued.body["auth_token"].as_str().expect("an auth token").to_owned();
    assert_eq!(claims(&auth_token)["scope"], "data.read");
    let served = world.get_data(&auth_token).await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.body);
    assert_eq!(served.body["sub"], person["sub"]);
}

#[cfg_attr(
    skip_peer_introspection,
    ignore = "interop peer introspection-server (PyPI introspection-aauth 0.1.0) not installed: bash tests/interop/setup.sh"
)]
#[tokio::test]
async fn three_party_the_real_ps_grants_the_offered_budget_from_the_mission_and_asks_the_person_past_it() {
    // The mission holds 10 USD; /report offers 5 USD at 1 USD a call.
    let world = FourParty::start_with(Some(PS), None, false).await;
    let person_token = world.person_token_with(Some(usd(10_000_000))).await;

    for round in 0..2 {
        let challenge = world.get(&person_token, "/report").await;
        assert_eq!(challenge.status, StatusCode::UNAUTHORIZED, "{}", challenge.body);
        let offered = resource_token(&challenge);
        assert_eq!(claims(&offered)["aud"], PS, "three-party: for the PS");
        let issued = world.exchange(&offered, &person_token).await;
        assert_eq!(issued.status, StatusCode::OK, "round {round}: {}", issued.body);
        let auth_token = issued.body["auth_token"].as_str().expect("an auth token").to_owned();
        let granted = claims(&auth_token);
        assert_eq!(granted["iss"], PS, "{granted}");
        assert_eq!(granted["budget"], usd(OFFER), "exactly the offer: {granted}");
        let served = world.get(&auth_token, "/report").await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.body);
        assert_eq!(
            served.header("aauth-budget"),
            format!("remaining=4000000; cost={PRICE}; unit=\"USD\"; decimals=6")
        );
    }

    // Both offers spent the mission's 10 USD: the third goes to the person.
    let offered = resource_token(&world.get(&person_token, "/report").await);
    let asked = world
        .agent
        .send(
            Method::POST,
            &format!("{PS}/aauth/token"),
            Some(&json!({ "resource_token": offered, "presented_token": person_token })),
            &world.agent.agent_token,
        )
        .await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    assert!(
        asked.header("aauth-requirement").starts_with("requirement=approval"),
        "{}",
        asked.header("aauth-requirement")
    );
}
