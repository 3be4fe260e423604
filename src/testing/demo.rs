//! The user-consent flow of [Christian Posta's AAuth demo][aauth-demo], for real, on
//! loopback: what `cargo run --example demo` runs and what the crate's flow tests check.
//!
//! [`Demo::start`] binds three HTTP servers on `127.0.0.1` (random ports) in this process:
//!
//! * the **resource** — this crate's layer around an axum app whose `/data` needs
//!   `data.read data.write`, with its metadata and JWKS;
//! * the **auth server** — a [`TestAuthServer`] with deferred consent;
//! * the **agent identity server** — the agent's metadata and JWKS, so the agent can sign
//!   with `Signature-Key` scheme `jwks_uri`.
//!
//! [`DemoOptions::generation`] picks the wire generation all three speak: draft -11 (the
//! default), or the original demo's own ([`Generation::Legacy`]: the resource under
//! [`Profile::Legacy`], the auth server and the agent in the demo generation).
//!
//! [`run`] first sends one `hwk`-signed `GET /whoami` (a pseudonymous signature, accepted
//! at the identity level), ends with a Web Bot Auth bot verified on `GET /crawl` and named
//! as a bot, and in between drives an [`AgentClient`] through the flow, plays the
//! person (a browser opening the consent page and pressing Approve or Deny, or nobody for
//! `expire`), prints every step through the caller's printer, and checks each step against
//! the protocol.
//!
//! [`run_resource_managed`] runs resource-managed access instead: the resource's own
//! consent page, the `AAuth-Access` session token, the revocation endpoint, and the next
//! request refused (the steps are in `demo/session.rs`).
//!
//! [`run_budget`] runs the budget flow instead (draft-hardt-aauth-budgets): the metered
//! `/report` spends an auth token's budget, refuses with `reason=budget-exhausted`, and
//! serves again after the agent stepped up (the steps are in `demo/budget.rs`).
//!
//! [aauth-demo]: https://github.com/christian-posta/aauth-full-demo

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::Method;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::jose::{Jwk, ResourceKey};
use crate::testing::{AgentClient, Consent, FlowEvent, FlowStep, KeySource, TestAgent, TestAuthServer};
use crate::{Generation, Profile};

mod budget;
mod report;
mod resource;
mod session;

pub use report::{Check, DemoReport};

/// The scopes the demo's `/data` requires.
pub const DATA_SCOPES: &str = "data.read data.write";

/// What the person does with the consent request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PersonAction {
    /// Opens the consent page and presses Approve (the default).
    #[default]
    Approve,
    /// Opens the consent page and presses Deny: the agent's poll gets `403 denied`.
    Deny,
    /// Never answers: the agent's poll gets `408 expired` when the pending request ends.
    Ignore,
    /// A real person: the consent URL is printed and the demo waits for a browser.
    Interactive,
}

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// What the person does.
    pub person: PersonAction,
    /// `Retry-After` of the auth server, in seconds.
    pub retry_after: u64,
    /// Lifetime of a pending request, in seconds.
    pub pending_lifetime: u64,
    /// The wire generation the resource, the auth server and the agent speak.
    pub generation: Generation,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            person: PersonAction::Approve,
            retry_after: 1,
            pending_lifetime: 300,
            generation: Generation::Draft11,
        }
    }
}

impl DemoOptions {
    /// The options for `person`: a short pending lifetime when nobody answers, a long one
    /// when a real person must find the browser.
    pub fn for_person(person: PersonAction) -> Self {
        let pending_lifetime = match person {
            PersonAction::Ignore => 3,
            PersonAction::Interactive => 600,
            _ => 300,
        };
        DemoOptions {
            person,
            pending_lifetime,
            ..DemoOptions::default()
        }
    }
}

/// The three running servers.
#[derive(Debug)]
pub struct Demo {
    /// The resource identifier (`http://127.0.0.1:PORT`).
    pub resource: String,
    /// The auth server, to approve or deny programmatically.
    pub auth_server: TestAuthServer,
    /// The agent's identity server identifier (`http://127.0.0.1:PORT`).
    pub agent_id: String,
    /// The agent.
    pub agent: TestAgent,
    /// The resource's public signing key (resource tokens verify with it).
    pub resource_key: Jwk,
    /// The wire generation every party speaks.
    pub generation: Generation,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Builds a resource (its identifier, the auth server it trusts, the run's options).
type ResourceApp = fn(&str, &str, &DemoOptions) -> Result<(crate::AAuth, Router), crate::ConfigError>;

async fn bind() -> std::io::Result<(TcpListener, String)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

fn serve(listener: TcpListener, router: Router) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The server runs until the demo is dropped; an accept error ends only this task.
        let _ = axum::serve(listener, router).await;
    })
}

impl Demo {
    /// Binds and starts the three servers.
    pub async fn start(options: &DemoOptions) -> Result<Demo, DemoError> {
        Demo::start_with(options, |resource, auth_server, options| {
            let profile = match options.generation {
                Generation::Legacy => Profile::Legacy,
                _ => Profile::Draft11,
            };
            resource::app(resource, auth_server, profile)
        })
        .await
    }

    /// Binds and starts the three servers, the resource built by `app`.
    async fn start_with(options: &DemoOptions, app: ResourceApp) -> Result<Demo, DemoError> {
        let (resource_listener, resource) = bind().await?;
        let (auth_listener, auth_url) = bind().await?;
        let (agent_listener, agent_id) = bind().await?;

        let agent = TestAgent::generate().with_kid("agent-key-1");
        let auth_server = TestAuthServer::builder(&auth_url)
            .consent(Consent::Person)
            .person("testuser")
            .retry_after(options.retry_after)
            .pending_lifetime(options.pending_lifetime)
            .generation(options.generation)
            .signing_key(ResourceKey::generate().with_kid("auth-key-1"))
            .budget_amount(budget::ALLOCATION)
            .build()?;
        let (aauth, resource_app) = app(&resource, &auth_url, options)?;
        let resource_jwk = aauth.public_keys().remove(0);

        let tasks = vec![
            serve(resource_listener, resource_app),
            serve(auth_listener, auth_server.router()),
            serve(agent_listener, agent.identity_router(&agent_id)),
        ];
        Ok(Demo {
            resource,
            auth_server,
            agent_id,
            agent,
            resource_key: resource_jwk,
            generation: options.generation,
            tasks,
        })
    }

    /// The protected URL.
    pub fn data_url(&self) -> String {
        format!("{}/data", self.resource)
    }

    /// How the agent signs before it has an auth token: `jwks_uri` naming its identity server.
    pub fn key_source(&self) -> KeySource {
        KeySource::agent_jwks(&self.agent_id, self.agent.key().kid())
    }

    /// The URL that needs only a verified signature.
    pub fn whoami_url(&self) -> String {
        format!("{}/whoami", self.resource)
    }

    /// A flow-following client for the demo's agent, speaking the demo's generation.
    pub fn client(&self) -> AgentClient {
        AgentClient::new(self.agent.clone(), self.key_source()).with_generation(self.generation)
    }
}

/// Why the demo could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Binding a loopback port failed.
    #[error("cannot start a loopback server: {0}")]
    Io(#[from] std::io::Error),
    /// A component rejected its configuration.
    #[error("{0}")]
    Config(#[from] crate::ConfigError),
}

/// A printer for the demo's narration.
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// A bot with its own key directory on loopback signs `GET {resource}/crawl` (Web Bot
/// Auth); whether the resource named it as a bot of that directory and key, and what to
/// print.
async fn bot_step(resource: &str) -> (bool, String) {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system has no usable random source");
    let directory = match crate::testing::BotDirectory::spawn(seed).await {
        Ok(directory) => directory,
        Err(error) => return (false, format!("[bot] cannot serve its directory: {error}\n")),
    };
    let signer = directory.signer();
    let url = format!("{resource}/crawl");
    let mut request = http::Request::get(&url).body(()).expect("a valid URL");
    signer.sign(&mut request, crate::clock::Clock::now(&crate::clock::SystemClock));
    let mut outgoing = reqwest::Client::new().get(&url);
    for (name, value) in request.headers() {
        outgoing = outgoing.header(name, value);
    }
    let (status, body) = match outgoing.send().await {
        Ok(response) => {
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default(),
            )
        }
        Err(error) => return (false, format!("[bot] GET /crawl failed: {error}\n")),
    };
    let ok = status == http::StatusCode::OK
        && body["bot"]["origin"] == directory.origin()
        && body["bot"]["thumbprint"] == signer.thumbprint().as_str()
        && body.get("agent").is_none();
    let text = format!(
        "[bot] GET /crawl  Signature-Agent: agent1=\"{}\"  tag=\"web-bot-auth\"\n[resource] {} {}\n",
        directory.origin(),
        status.as_u16(),
        body
    );
    (ok, text)
}

/// Runs the flow once and checks it (module docs). The report says whether every step
/// behaved as the protocol says for the chosen [`PersonAction`].
pub async fn run(options: DemoOptions, print: Printer) -> Result<DemoReport, DemoError> {
    let demo = Demo::start(&options).await?;
    let generation = match options.generation {
        Generation::Legacy => "the demo generation (the seed article's wire format)",
        _ => "draft -11",
    };
    print(&format!(
        "speaking      {generation}\n\
         resource      {}   (tower-aauth layer; /data needs \"{DATA_SCOPES}\", /whoami any signature)\n\
         auth server   {}   (TestAuthServer, deferred consent)\n\
         agent server  {}   (agent metadata + JWKS for jwks_uri)\n",
        demo.resource,
        demo.auth_server.issuer(),
        demo.agent_id
    ));

    // Identity level first: a pseudonymous hwk signature is enough for /whoami.
    print("\n--- step 0: a pseudonymous hwk signature, accepted at the identity level\n");
    let hwk = demo
        .client()
        .send(
            FlowStep::Resource,
            Method::GET,
            &demo.whoami_url(),
            None,
            &KeySource::Hwk,
        )
        .await;
    match &hwk {
        Ok(exchange) => print(&report::describe_exchange(exchange, demo.generation)),
        Err(error) => print(&format!("[agent] GET /whoami failed: {error}\n")),
    }
    print("\n--- the user-consent flow for /data\n");

    let generation = demo.generation;
    let (interactions, person_inbox) = mpsc::unbounded_channel();
    let observer_print = print.clone();
    let client = demo
        .client()
        .with_max_polling(Duration::from_secs(options.pending_lifetime + 30))
        .with_observer(move |event| {
            observer_print(&report::describe(event, generation));
            if let FlowEvent::Interaction { url, .. } = event {
                // The agent shows the person where to go; the person task picks it up.
                let _ = interactions.send(url.clone());
            }
        });
    let person = tokio::spawn(play_person(options.person, person_inbox, print.clone()));
    let outcome = client.fetch(Method::GET, &demo.data_url(), None).await;
    person.abort();

    let expected = Expected {
        resource: demo.resource.clone(),
        auth_server: demo.auth_server.issuer().to_owned(),
        agent_jkt: demo.agent.thumbprint(),
        agent_id: demo.agent_id.clone(),
        person: options.person,
        generation,
    };
    let mut report = report::check(&expected, hwk, outcome);
    print("\n--- a bot from the open web: a Web Bot Auth signature on GET /crawl\n");
    let bot = bot_step(&demo.resource).await;
    print(&bot.1);
    report.expect(
        bot.0,
        "a Web Bot Auth bot was verified against its key directory and named as a bot (directory origin, key thumbprint, no agent)",
    );
    print(&report.to_string());
    Ok(report)
}

/// Runs the budget flow once and checks it (module docs): three calls of `/report` on
/// one budget, the fourth refused with `reason=budget-exhausted`, a step-up with the
/// person's approval, a call on the new budget. Draft -11 only.
pub async fn run_budget(options: DemoOptions, print: Printer) -> Result<DemoReport, DemoError> {
    let options = DemoOptions {
        generation: Generation::Draft11,
        ..options
    };
    let demo = Demo::start(&options).await?;
    print(&format!(
        "speaking      draft -11 with draft-hardt-aauth-budgets\n\
         resource      {}   (GET /report costs 1000 USD at 6 decimals = 0.001 USD; offers up to 1 USD)\n\
         auth server   {}   (TestAuthServer, deferred consent; grants 3000 of any budget offered)\n",
        demo.resource,
        demo.auth_server.issuer(),
    ));
    Ok(budget::run(&demo, print).await)
}

/// Runs the resource-managed flow once and checks it (module docs): the resource's own
/// consent page, the session token, revocation, the next request refused. Draft -11
/// only (resource-managed access is new in it). The person approves or denies on the
/// page; [`PersonAction::Ignore`] waits the interaction's 60 s lifetime out.
pub async fn run_resource_managed(options: DemoOptions, print: Printer) -> Result<DemoReport, DemoError> {
    let options = DemoOptions {
        generation: Generation::Draft11,
        ..options
    };
    let demo = Demo::start_with(&options, resource::session_app).await?;
    print(&format!(
        "speaking      draft -11, resource-managed access (two parties: the agent and the resource)\n\
         resource      {}   (GET /notes needs a session for \"{}\"; its own consent page at {}; revocation endpoint {})\n\
         auth server   {}   (TestAuthServer: only for the auth token the revocation endpoint revokes in step 4)\n\
         agent server  {}   (agent metadata + JWKS for jwks_uri)\n",
        demo.resource,
        session::NOTES_SCOPE,
        resource::INTERACTION_PATH,
        resource::REVOKE_PATH,
        demo.auth_server.issuer(),
        demo.agent_id,
    ));
    let max_polling = Duration::from_secs(options.pending_lifetime.clamp(60, 3600) + 30);
    Ok(session::run(&demo, options.person, max_polling, print).await)
}

/// What the checks compare against.
pub(crate) struct Expected {
    pub(crate) resource: String,
    pub(crate) auth_server: String,
    pub(crate) agent_jkt: String,
    pub(crate) agent_id: String,
    pub(crate) person: PersonAction,
    pub(crate) generation: Generation,
}

/// The person: a browser that opens the consent URL the agent showed and presses a button.
async fn play_person(action: PersonAction, mut inbox: mpsc::UnboundedReceiver<String>, print: Printer) {
    let Some(url) = inbox.recv().await else { return };
    let decision = match action {
        PersonAction::Approve => "approve",
        PersonAction::Deny => "deny",
        PersonAction::Ignore => {
            print("[person] does not answer: the pending request will expire\n");
            return;
        }
        PersonAction::Interactive => {
            print(&format!(
                "[person] open this URL in a browser and press Approve (or Deny):\n         {url}\n"
            ));
            return;
        }
    };
    let browser = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
    let page = match browser.get(&url).send().await {
        Ok(page) => page,
        Err(error) => return print(&format!("[person] cannot open the consent page: {error}\n")),
    };
    let status = page.status();
    let html = page.text().await.unwrap_or_default();
    print(&format!(
        "[person] GET {url} -> {status} (consent page; shows the scopes and the agent key)\n"
    ));
    // A person takes a moment to read the page: the agent's polls meanwhile stay 202.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let Some(code) = url.split("code=").nth(1) else { return };
    let action_url = url.split('?').next().unwrap_or(&url).to_owned();
    if !html.contains("value=\"approve\"") {
        return print("[person] the consent page has no Approve button\n");
    }
    let form = format!("code={code}&decision={decision}");
    match browser
        .post(&action_url)
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
    {
        Ok(answer) => print(&format!(
            "[person] POST {action_url} decision={decision} -> {}\n",
            answer.status()
        )),
        Err(error) => print(&format!("[person] cannot submit the decision: {error}\n")),
    }
}
