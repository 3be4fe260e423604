//! [`TestHarness`]: a resource under test, its auth server and an agent, on loopback, in
//! one call.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::aauth::AAuth;
use crate::builder::AAuthBuilder;
use crate::error::ConfigError;
use crate::jose::ResourceKey;
use crate::testing::{AgentClient, Consent, KeySource, TestAgent, TestAuthServer};

/// Your app behind this crate's layer, a [`TestAuthServer`] it trusts and an agent with its
/// own identity server, each on a `127.0.0.1` port of its own, served until the harness is
/// dropped. See the [module docs](crate::testing) for a whole test.
///
/// [`TestHarness::spawn`] binds the three ports first, because the resource's identifier
/// (`http://127.0.0.1:PORT`) and the auth server's must both be known before the
/// configuration is built; then it hands your closure an [`AAuthBuilder`] already set
/// for them:
///
/// * `AAuth::builder(resource)` with the resource's loopback identifier,
/// * `.auth_server(auth server)`: the harness's [`TestAuthServer`] (four-party posture),
/// * `.dangerous().allow_http_loopback()`: identifiers, discovery and signers are admitted
///   on `http://127.0.0.1`, `http://localhost` and `http://[::1]` only (the loopback fence;
///   never in production).
///
/// Add what your production configuration adds (scopes, a signing key, policies), build,
/// and return the router exactly as production serves it: guards with `route_layer`,
/// [`AAuth::well_known_router`] merged, [`AAuth::layer`] last. Before returning, the
/// harness fetches the app's `/.well-known/aauth-resource.json` the way the auth server
/// will, and fails with an explanation if the document is not served.
#[derive(Debug)]
pub struct TestHarness {
    resource: String,
    auth_server: TestAuthServer,
    agent: TestAgent,
    agent_id: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TestHarness {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Options of a [`TestHarness`]; [`TestHarness::spawn`] uses the defaults.
#[derive(Debug, Clone)]
pub struct TestHarnessBuilder {
    consent: Consent,
    person: String,
    agent: TestAgent,
}

impl TestHarnessBuilder {
    /// How the auth server consents (default [`Consent::Immediate`]: the auth token comes
    /// back at once, so a flow takes a few milliseconds; [`Consent::Person`] waits for
    /// [`TestAuthServer::approve`] through [`TestHarness::auth_server`]).
    pub fn consent(mut self, consent: Consent) -> Self {
        self.consent = consent;
        self
    }

    /// The `sub` of the person the auth server approves as (default `person-1`).
    pub fn person(mut self, sub: impl Into<String>) -> Self {
        self.person = sub.into();
        self
    }

    /// The agent (default: a fresh key with `kid` `agent-key-1`).
    pub fn agent(mut self, agent: TestAgent) -> Self {
        self.agent = agent;
        self
    }

    /// Binds the ports, builds your app with `app` and serves everything (see
    /// [`TestHarness`]).
    ///
    /// # Errors
    ///
    /// A loopback port cannot be bound, `app` returns a [`ConfigError`], or the app does
    /// not serve its resource metadata publicly.
    pub async fn spawn<F>(self, app: F) -> Result<TestHarness, HarnessError>
    where
        F: FnOnce(AAuthBuilder) -> Result<Router, ConfigError>,
    {
        let (resource_listener, resource) = bind().await?;
        let (auth_listener, auth_url) = bind().await?;
        let (agent_listener, agent_id) = bind().await?;
        let auth_server = TestAuthServer::builder(&auth_url)
            .consent(self.consent)
            .person(self.person)
            .signing_key(ResourceKey::generate().with_kid("auth-key-1"))
            .build()?;
        let builder = AAuth::builder(&resource)
            .auth_server(&auth_url)
            .dangerous()
            .allow_http_loopback();
        let router = app(builder)?;
        let mut harness = TestHarness {
            resource,
            auth_server,
            agent: self.agent,
            agent_id,
            tasks: Vec::with_capacity(3),
        };
        harness.tasks.push(serve(resource_listener, router));
        harness.tasks.push(serve(auth_listener, harness.auth_server.router()));
        harness
            .tasks
            .push(serve(agent_listener, harness.agent.identity_router(&harness.agent_id)));
        harness.check_metadata().await?;
        Ok(harness)
    }
}

impl TestHarness {
    /// Options: consent mode, person, agent.
    pub fn builder() -> TestHarnessBuilder {
        TestHarnessBuilder {
            consent: Consent::Immediate,
            person: "person-1".to_owned(),
            agent: TestAgent::generate().with_kid("agent-key-1"),
        }
    }

    /// [`TestHarnessBuilder::spawn`] with the default options.
    ///
    /// # Errors
    ///
    /// As [`TestHarnessBuilder::spawn`].
    pub async fn spawn<F>(app: F) -> Result<TestHarness, HarnessError>
    where
        F: FnOnce(AAuthBuilder) -> Result<Router, ConfigError>,
    {
        TestHarness::builder().spawn(app).await
    }

    /// The resource identifier, `http://127.0.0.1:PORT`.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The URL of `path` on the resource (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.resource)
    }

    /// The auth server the resource trusts: approve or deny pending requests, read its
    /// identifier.
    pub fn auth_server(&self) -> &TestAuthServer {
        &self.auth_server
    }

    /// The agent's identifier, `http://127.0.0.1:PORT`, where its identity server runs.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// An agent that signs with its identity (`Signature-Key` scheme `jwks_uri`, naming
    /// [`TestHarness::agent_id`]) and follows `401` → auth server → retry with
    /// [`AgentClient::fetch`]. [`AgentClient::get`] sends one signed request and follows
    /// nothing.
    pub fn agent(&self) -> AgentClient {
        let source = KeySource::agent_jwks(&self.agent_id, self.agent.key().kid());
        AgentClient::new(self.agent.clone(), source)
    }

    /// The same agent signing with its bare key (`hwk`): pseudonymous, no identifier.
    pub fn pseudonymous_agent(&self) -> AgentClient {
        AgentClient::new(self.agent.clone(), KeySource::Hwk)
    }

    async fn check_metadata(&self) -> Result<(), HarnessError> {
        let url = self.url(crate::names::path::RESOURCE_METADATA);
        let answer = self.agent().send_unsigned(http::Method::GET, &url).await;
        let problem = match answer {
            Err(error) => format!("fetching {url} failed: {error}"),
            Ok(exchange) if exchange.status == http::StatusCode::OK => {
                let issuer = exchange
                    .json()
                    .and_then(|doc| doc.get("issuer")?.as_str().map(str::to_owned));
                if issuer.as_deref() == Some(self.resource.as_str()) {
                    return Ok(());
                }
                format!("{url} does not name the resource {:?} as its issuer", self.resource)
            }
            Ok(exchange) => format!("GET {url} answered {}", exchange.status),
        };
        Err(HarnessError::App(format!(
            "{problem}: the auth server fetches this document to verify resource tokens. Merge \
             aauth.well_known_router() into the app and keep it public (no guard on it), with \
             .layer(aauth.layer()) last"
        )))
    }
}

/// Why a [`TestHarness`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Binding a loopback port failed.
    #[error("cannot start a loopback server: {0}")]
    Io(#[from] std::io::Error),
    /// The app's configuration (or the auth server's) was refused.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The app is served, but not as the flow needs it.
    #[error("the app under test: {0}")]
    App(String),
}

async fn bind() -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

fn serve(listener: TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Serves until the harness is dropped; an accept error ends only this task.
        let _ = axum::serve(listener, router).await;
    })
}
