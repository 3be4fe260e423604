//! `examples/mcp_server.rs` driven by the MCP SDK's own client (`rmcp`, streamable HTTP)
//! over an HTTP client that signs every request as the test kit's agent: discovery with a
//! signature alone, a `tools/call` refused with the tool's challenge, the auth token from
//! the harness's access server, the retry in the same MCP session; and the refusals, each
//! checked for its status, its `Signature-Error` or `AAuth-Requirement`, and that no tool
//! ran.

// The example's app, built as the example serves it; its `main` is not called here.
#[allow(dead_code)]
#[path = "../examples/mcp_server.rs"]
mod mcp_server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use mcp_server::{MAX_MESSAGE_BYTES, Notes, TOOLS};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientJsonRpcMessage, ProtocolVersion, ServerJsonRpcMessage};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse,
};
use serde_json::{Value, json};
use tower_aauth::testing::{Exchange, FlowStep, KeySource, SignOptions, TestAgent, TestHarness, TestIssuer};

// ---- the signing HTTP client the MCP client sends through ----

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// An `rmcp` HTTP backend that signs every request as `agent` presenting `source` (or
/// sends it unsigned when `source` is `None`), and keeps every exchange for the test.
#[derive(Clone)]
struct SigningClient {
    agent: TestAgent,
    source: Arc<Mutex<Option<KeySource>>>,
    http: reqwest::Client,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

impl SigningClient {
    fn new(agent: TestAgent, source: Option<KeySource>) -> Self {
        SigningClient {
            agent,
            source: Arc::new(Mutex::new(source)),
            http: reqwest::Client::builder().no_proxy().build().expect("reqwest client"),
            exchanges: Arc::default(),
        }
    }

    /// Presents `source` from the next request on (the MCP session goes on).
    fn present(&self, source: KeySource) {
        *self.source.lock().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    fn last(&self) -> Exchange {
        let exchanges = self.exchanges.lock().unwrap_or_else(PoisonError::into_inner);
        exchanges.last().expect("an exchange").clone()
    }

    /// One `POST` of `body` as it is, signed as the MCP client's requests are.
    async fn post_raw(
        &self,
        url: &str,
        body: Vec<u8>,
        headers: HeaderMap,
    ) -> Result<(Exchange, reqwest::Response), HttpError> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(body.clone())
            .map_err(|e| HttpError(e.to_string()))?;
        request.headers_mut().extend(headers);
        let source = self.source.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(source) = source {
            self.agent
                .sign_body_with(&mut request, &body, &source, now(), SignOptions::default());
        }
        let request_headers = request.headers().clone();
        let request = reqwest::Request::try_from(request).map_err(|e| HttpError(e.to_string()))?;
        let response = self.http.execute(request).await.map_err(|e| HttpError(e.to_string()))?;
        let exchange = Exchange {
            step: FlowStep::Resource,
            method: Method::POST,
            url: url.to_owned(),
            request_headers,
            request_body: Bytes::from(body),
            status: response.status(),
            headers: response.headers().clone(),
            body: Bytes::new(),
        };
        Ok((exchange, response))
    }

    /// [`SigningClient::post_raw`], the whole answer read and kept.
    async fn post(&self, url: &str, body: &Value) -> Exchange {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.post_bytes(url, bytes).await
    }

    async fn post_bytes(&self, url: &str, bytes: Vec<u8>) -> Exchange {
        let (mut exchange, response) = self.post_raw(url, bytes, protocol_headers()).await.expect("POST");
        exchange.body = response.bytes().await.expect("body");
        self.keep(exchange.clone());
        exchange
    }

    fn keep(&self, exchange: Exchange) {
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(exchange);
    }
}

impl StreamableHttpClient for SigningClient {
    type Error = HttpError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<HttpError>> {
        let body = serde_json::to_vec(&message)?;
        let mut headers: HeaderMap = custom_headers.into_iter().collect();
        if let Some(session) = session_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
            headers.insert("mcp-session-id", session);
        }
        let (mut exchange, response) = self
            .post_raw(&uri, body, headers)
            .await
            .map_err(StreamableHttpError::Client)?;
        let session = exchange
            .headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = exchange
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if exchange.status.is_success() && content_type.starts_with("text/event-stream") {
            self.keep(exchange);
            let events = sse_stream::SseStream::from_bytes_stream(response.bytes_stream()).boxed();
            return Ok(StreamableHttpPostResponse::Sse(events, session));
        }
        exchange.body = response
            .bytes()
            .await
            .map_err(|e| StreamableHttpError::Client(HttpError(e.to_string())))?;
        self.keep(exchange.clone());
        match exchange.status {
            StatusCode::ACCEPTED => Ok(StreamableHttpPostResponse::Accepted),
            status if status.is_success() => Ok(StreamableHttpPostResponse::Json(
                serde_json::from_slice::<ServerJsonRpcMessage>(&exchange.body)?,
                session,
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let challenge = exchange
                    .requirement()
                    .or(exchange.signature_error())
                    .unwrap_or_default()
                    .to_owned();
                Err(StreamableHttpError::AuthRequired(AuthRequiredError::new(challenge)))
            }
            status => Err(StreamableHttpError::UnexpectedServerResponse(
                format!("HTTP {status}").into(),
            )),
        }
    }

    async fn delete_session(
        &self,
        _uri: Arc<str>,
        _session_id: Arc<str>,
        _auth_header: Option<String>,
        _custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<HttpError>> {
        Err(StreamableHttpError::ServerDoesNotSupportDeleteSession)
    }

    async fn get_stream(
        &self,
        _uri: Arc<str>,
        _session_id: Option<Arc<str>>,
        _last_event_id: Option<String>,
        _auth_header: Option<String>,
        _custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>, StreamableHttpError<HttpError>> {
        // The server is stateless: no standalone stream to open.
        Err(StreamableHttpError::ServerDoesNotSupportSse)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The headers a legacy-handshake MCP client sends after `initialize`.
fn protocol_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("mcp-protocol-version", HeaderValue::from_static("2025-11-25"));
    headers
}

// ---- the world: the example's app behind the harness ----

struct World {
    harness: TestHarness,
    notes: Notes,
    client: SigningClient,
}

impl World {
    async fn start() -> World {
        let notes = Notes::default();
        let served = notes.clone();
        let harness = TestHarness::spawn(move |builder| {
            let aauth = builder
                .scope("notes.read", "Read your notes")
                .scope("notes.write", "Change your notes")
                .build()?;
            let host = aauth.resource().trim_start_matches("http://").to_owned();
            Ok(mcp_server::app(&aauth, served, &host))
        })
        .await
        .expect("harness");
        let agent = harness.agent();
        let source = KeySource::agent_jwks(harness.agent_id(), agent.agent().key().kid());
        let client = SigningClient::new(agent.agent().clone(), Some(source));
        World { harness, notes, client }
    }

    fn url(&self) -> String {
        self.harness.url(mcp_server::MCP_PATH)
    }

    /// An MCP client over `client`, after the `initialize` handshake.
    async fn connect(&self, client: &SigningClient) -> Result<RunningService<RoleClient, ()>, String> {
        self.connect_with(client, ClientLifecycleMode::Initialize).await
    }

    async fn connect_with(
        &self,
        client: &SigningClient,
        lifecycle: ClientLifecycleMode,
    ) -> Result<RunningService<RoleClient, ()>, String> {
        let config = StreamableHttpClientTransportConfig::with_uri(self.url());
        let transport = StreamableHttpClientTransport::with_client(client.clone(), config);
        ().serve_with_lifecycle(transport, lifecycle)
            .await
            .map_err(|e| e.to_string())
    }

    /// The auth token the harness's access server issues for the resource token of
    /// `challenge`, asked for by the agent signing as itself.
    async fn auth_token_for(&self, challenge: &Exchange) -> String {
        let claims = challenge.resource_token_claims().expect("a resource token");
        let resource_token = {
            let field = challenge.requirement().expect("AAuth-Requirement");
            let start = field.find("resource-token=\"").expect("resource-token") + "resource-token=\"".len();
            let end = field[start..].find('"').expect("closing quote") + start;
            field[start..end].to_owned()
        };
        assert_eq!(claims["aud"], self.harness.auth_server().issuer());
        let endpoint = self.harness.auth_server().metadata()["auth_token_endpoint"]
            .as_str()
            .expect("token endpoint")
            .to_owned();
        let answer = self
            .harness
            .agent()
            .send(
                FlowStep::Token,
                Method::POST,
                &endpoint,
                Some(&json!({ "resource_token": resource_token })),
                &KeySource::agent_jwks(self.harness.agent_id(), self.harness.agent().agent().key().kid()),
            )
            .await
            .expect("token request");
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.json().expect("JSON")["auth_token"]
            .as_str()
            .expect("auth_token")
            .to_owned()
    }

    /// An agent token for the harness's agent from an agent provider served on
    /// `http://localhost:PORT` (an agent identifier needs a DNS name: `aauth:…@localhost`),
    /// naming the access server as the person server (`ps`).
    async fn agent_token(&self) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let provider = TestIssuer::new(format!("http://localhost:{port}"), [9; 32], "provider-key-1");
        let (metadata, jwks) = (provider.metadata(), provider.jwks());
        let router = axum::Router::new()
            .route(
                "/.well-known/aauth-agent.json",
                axum::routing::get(move || std::future::ready(axum::Json(metadata))),
            )
            .route(
                "/.well-known/jwks.json",
                axum::routing::get(move || std::future::ready(axum::Json(jwks))),
            );
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.ok();
        });
        let token = provider.sign(
            "aa-agent+jwt",
            &json!({
                "iss": provider.issuer,
                "dwk": "aauth-agent.json",
                "sub": "aauth:assistant@localhost",
                "ps": self.harness.auth_server().issuer(),
                "jti": "agent-token-1",
                "cnf": { "jwk": self.client.agent.public_jwk().to_json() },
                "iat": now(),
                "exp": now() + 600,
            }),
        );
        (token, server)
    }
}

fn call(name: &str, arguments: Value) -> CallToolRequestParams {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|content| content.as_text().map(|text| text.text.clone()))
        .collect()
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

fn assert_auth_challenge_for(exchange: &Exchange, scope: &str) {
    assert_eq!(exchange.status, StatusCode::UNAUTHORIZED);
    assert!(
        exchange
            .requirement()
            .is_some_and(|r| r.starts_with("requirement=auth-token; resource-token=")),
        "{:?}",
        exchange.requirement()
    );
    assert_eq!(exchange.signature_error(), None);
    let claims = exchange.resource_token_claims().expect("resource token");
    assert_eq!(claims["scope"], scope);
}

// ---- the loop ----

#[tokio::test]
async fn discovery_needs_a_signature_and_no_token_and_lists_every_tool_with_its_requirement() {
    let world = World::start().await;
    let mcp = world
        .connect(&world.client)
        .await
        .expect("initialize with a signature alone");
    let tools = mcp.list_all_tools().await.expect("tools/list");
    let mut listed: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    let mut table: Vec<&str> = TOOLS.iter().map(|(name, _)| *name).collect();
    listed.sort_unstable();
    table.sort_unstable();
    assert_eq!(listed, table, "every served tool has a requirement, and no other");
    for tool in &tools {
        let description = tool.description.as_deref().unwrap_or_default();
        assert!(description.contains("Needs:"), "{} says what it needs", tool.name);
    }
    let methods: Vec<String> = world
        .client
        .exchanges
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            assert!(e.status.is_success(), "{e:?}");
            serde_json::from_slice::<Value>(&e.request_body).unwrap()["method"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(methods, ["initialize", "notifications/initialized", "tools/list"]);
    assert!(world.notes.runs().is_empty());
    mcp.cancel().await.ok();
}

#[tokio::test]
async fn a_call_without_the_tools_scope_is_challenged_then_served_with_the_token_from_the_access_server() {
    let world = World::start().await;
    let mcp = world.connect(&world.client).await.expect("initialize");

    let refused = mcp
        .call_tool(call("read_notes", json!({})))
        .await
        .expect_err("no token yet");
    assert!(matches!(refused, ServiceError::TransportSend(_)), "{refused:?}");
    assert!(
        refused
            .auth_challenge()
            .is_some_and(|c| c.starts_with("requirement=auth-token; resource-token=")),
        "{:?}",
        refused.auth_challenge()
    );
    let challenge = world.client.last();
    assert_auth_challenge_for(&challenge, "notes.read");
    assert!(world.notes.runs().is_empty(), "the tool did not run");

    let token = world.auth_token_for(&challenge).await;
    world.client.present(KeySource::Jwt(token));
    let served = mcp
        .call_tool(call("read_notes", json!({})))
        .await
        .expect("served with the token");
    assert_eq!(text(&served), "[]");
    assert_eq!(world.notes.runs(), ["read_notes"]);
    mcp.cancel().await.ok();
}

#[tokio::test]
async fn a_person_approved_token_with_notes_write_adds_and_deletes_notes() {
    let world = World::start().await;
    let mcp = world.connect(&world.client).await.expect("initialize");
    mcp.call_tool(call("add_note", json!({ "text": "milk" })))
        .await
        .expect_err("no token yet");
    let token = world.auth_token_for(&world.client.last()).await;
    world.client.present(KeySource::Jwt(token));
    let added = mcp
        .call_tool(call("add_note", json!({ "text": "milk" })))
        .await
        .expect("add");
    assert_eq!(text(&added), "added note 0");
    let deleted = mcp
        .call_tool(call("delete_note", json!({ "index": 0 })))
        .await
        .expect("delete");
    assert_eq!(text(&deleted), "deleted note 0");
    assert_eq!(world.notes.runs(), ["add_note", "delete_note"]);
    assert!(world.notes.notes().is_empty());
    mcp.cancel().await.ok();
}

#[tokio::test]
async fn whoami_needs_only_a_signature_and_reports_the_verified_agent() {
    let world = World::start().await;
    let mcp = world.connect(&world.client).await.expect("initialize");
    let answer = mcp.call_tool(call("whoami", json!({}))).await.expect("whoami");
    let who: Value = serde_json::from_str(&text(&answer)).expect("JSON");
    assert_eq!(who["agent"], world.harness.agent_id());
    assert_eq!(who["token_type"], Value::Null);
    assert_eq!(world.notes.runs(), ["whoami"]);
    mcp.cancel().await.ok();
}

#[tokio::test]
async fn the_current_protocols_discover_lifecycle_gets_the_same_discovery_and_challenges() {
    let world = World::start().await;
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::LATEST],
    };
    let mcp = world
        .connect_with(&world.client, lifecycle)
        .await
        .expect("server/discover with a signature alone");
    assert_eq!(mcp.list_all_tools().await.expect("tools/list").len(), TOOLS.len());

    mcp.call_tool(call("read_notes", json!({})))
        .await
        .expect_err("no token yet");
    let challenge = world.client.last();
    assert_auth_challenge_for(&challenge, "notes.read");
    assert!(world.notes.runs().is_empty());
    world
        .client
        .present(KeySource::Jwt(world.auth_token_for(&challenge).await));
    mcp.call_tool(call("read_notes", json!({})))
        .await
        .expect("served with the token");
    assert_eq!(world.notes.runs(), ["read_notes"]);
    mcp.cancel().await.ok();
}

#[tokio::test]
async fn a_pseudonymous_signer_can_discover_the_tools_and_call_whoami() {
    let world = World::start().await;
    let hwk = SigningClient::new(world.client.agent.clone(), Some(KeySource::Hwk));
    let mcp = world.connect(&hwk).await.expect("initialize with an hwk signature");
    assert_eq!(mcp.list_all_tools().await.expect("tools/list").len(), TOOLS.len());
    let who = mcp.call_tool(call("whoami", json!({}))).await.expect("whoami");
    let who: Value = serde_json::from_str(&text(&who)).unwrap();
    assert_eq!(who["agent"], Value::Null, "hwk names no agent");
    assert_eq!(world.notes.runs(), ["whoami"]);
    mcp.cancel().await.ok();
}

// ---- refusals ----

#[tokio::test]
async fn an_unsigned_client_cannot_even_initialize() {
    let world = World::start().await;
    let unsigned = SigningClient::new(world.client.agent.clone(), None);
    world.connect(&unsigned).await.expect_err("unsigned");
    let exchange = unsigned.last();
    assert_eq!(exchange.status, StatusCode::UNAUTHORIZED);
    assert_eq!(exchange.requirement(), Some("requirement=agent-token"));
    assert_eq!(exchange.signature_error(), None);
    assert!(world.notes.runs().is_empty());
}

#[tokio::test]
async fn an_unsigned_tools_call_is_refused_before_the_tool_is_looked_at() {
    let world = World::start().await;
    let unsigned = SigningClient::new(world.client.agent.clone(), None);
    for tool in ["whoami", "read_notes", "delete_note", "no_such_tool"] {
        let exchange = unsigned
            .post(
                &world.url(),
                &rpc(1, "tools/call", json!({ "name": tool, "arguments": {} })),
            )
            .await;
        assert_eq!(exchange.status, StatusCode::UNAUTHORIZED, "{tool}");
        assert_eq!(exchange.requirement(), Some("requirement=agent-token"), "{tool}");
        assert_eq!(exchange.signature_error(), None, "{tool}");
    }
    assert!(world.notes.runs().is_empty());
}

#[tokio::test]
async fn a_bad_signature_is_refused_by_the_layer_with_its_signature_error() {
    let world = World::start().await;
    let body = serde_json::to_vec(&rpc(1, "tools/call", json!({ "name": "whoami", "arguments": {} }))).unwrap();
    // Signed for another body: the content digest no longer matches.
    let mut request = Request::post(world.url())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(body.clone())
        .unwrap();
    let source = world.client.source.lock().unwrap().clone().unwrap();
    world
        .client
        .agent
        .sign_body_with(&mut request, b"{}", &source, now(), SignOptions::default());
    let response = world
        .client
        .http
        .execute(reqwest::Request::try_from(request).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let error = response.headers().get("signature-error").and_then(|v| v.to_str().ok());
    assert_eq!(error, Some("error=invalid_signature"));
    assert!(world.notes.runs().is_empty());
}

#[tokio::test]
async fn a_token_for_another_scope_is_challenged_for_the_called_tools_scope() {
    let world = World::start().await;
    let mcp = world.connect(&world.client).await.expect("initialize");
    mcp.call_tool(call("read_notes", json!({})))
        .await
        .expect_err("no token yet");
    let read_token = world.auth_token_for(&world.client.last()).await;
    world.client.present(KeySource::Jwt(read_token));
    mcp.call_tool(call("read_notes", json!({}))).await.expect("read");

    let refused = mcp
        .call_tool(call("add_note", json!({ "text": "milk" })))
        .await
        .expect_err("notes.read does not write");
    assert!(refused.auth_challenge().is_some());
    assert_auth_challenge_for(&world.client.last(), "notes.write");
    assert_eq!(world.notes.runs(), ["read_notes"], "add_note did not run");
    assert!(world.notes.notes().is_empty());
    mcp.cancel().await.ok();
}

#[tokio::test]
async fn delete_note_asks_an_agent_only_token_for_the_person() {
    let world = World::start().await;
    let (token, provider) = world.agent_token().await;
    world.client.present(KeySource::Jwt(token));
    let mcp = world
        .connect(&world.client)
        .await
        .expect("initialize with an agent token");
    let who = mcp.call_tool(call("whoami", json!({}))).await.expect("whoami");
    let who: Value = serde_json::from_str(&text(&who)).unwrap();
    assert_eq!(who["token_type"], "agent", "the agent token verified");

    let refused = mcp
        .call_tool(call("delete_note", json!({ "index": 0 })))
        .await
        .expect_err("an agent token is not the person");
    assert_eq!(refused.auth_challenge(), Some("requirement=person-token"));
    let exchange = world.client.last();
    assert_eq!(exchange.status, StatusCode::UNAUTHORIZED);
    assert_eq!(exchange.requirement(), Some("requirement=person-token"));
    assert_eq!(exchange.signature_error(), None);
    assert_eq!(world.notes.runs(), ["whoami"], "delete_note did not run");
    mcp.cancel().await.ok();
    provider.abort();
}

#[tokio::test]
async fn delete_note_with_a_read_grant_is_challenged_for_notes_write() {
    let world = World::start().await;
    let mcp = world.connect(&world.client).await.expect("initialize");
    mcp.call_tool(call("read_notes", json!({})))
        .await
        .expect_err("no token yet");
    world
        .client
        .present(KeySource::Jwt(world.auth_token_for(&world.client.last()).await));
    let refused = mcp
        .call_tool(call("delete_note", json!({ "index": 0 })))
        .await
        .expect_err("the person approved reading only");
    assert!(refused.auth_challenge().is_some());
    assert_auth_challenge_for(&world.client.last(), "notes.write");
    assert!(world.notes.runs().is_empty(), "delete_note did not run");
    mcp.cancel().await.ok();
}

// ---- what the middleware refuses to judge ----

#[tokio::test]
async fn the_tool_judged_is_the_tool_run_whatever_duplicate_keys_say() {
    let world = World::start().await;
    // Of two `name`s, a parser keeping the first sees whoami (a signature suffices) where
    // the middleware sees delete_note: it judges delete_note, and the MCP service is handed
    // what was judged. An identity signature without a token is no person.
    let smuggled = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","name":"delete_note","arguments":{"index":0}}}"#;
    let exchange = world.client.post_bytes(&world.url(), smuggled.to_vec()).await;
    assert_eq!(exchange.status, StatusCode::UNAUTHORIZED);
    assert_eq!(exchange.signature_error(), Some("error=unsupported_scheme"));
    assert!(world.notes.runs().is_empty(), "neither tool ran");

    // The other order: judged as whoami, and whoami is what runs.
    let reversed = br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete_note","name":"whoami","arguments":{}}}"#;
    let exchange = world.client.post_bytes(&world.url(), reversed.to_vec()).await;
    assert_eq!(exchange.status, StatusCode::OK, "{:?}", exchange.body);
    assert_eq!(world.notes.runs(), ["whoami"]);
}

#[tokio::test]
async fn messages_the_middleware_cannot_judge_are_refused_and_run_nothing() {
    let world = World::start().await;
    let call_whoami = rpc(1, "tools/call", json!({ "name": "whoami", "arguments": {} }));
    let cases: [(&str, Vec<u8>, StatusCode, i64); 4] = [
        (
            "batch",
            serde_json::to_vec(&json!([call_whoami.clone()])).unwrap(),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        ("not JSON", b"{\"jsonrpc\":".to_vec(), StatusCode::BAD_REQUEST, -32700),
        (
            "too large",
            serde_json::to_vec(&rpc(
                1,
                "tools/call",
                json!({ "name": "whoami", "arguments": { "pad": "x".repeat(MAX_MESSAGE_BYTES) } }),
            ))
            .unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            -32600,
        ),
        (
            "unknown tool",
            serde_json::to_vec(&rpc(1, "tools/call", json!({ "name": "shell" }))).unwrap(),
            StatusCode::OK,
            -32602,
        ),
    ];
    for (case, body, status, code) in cases {
        let exchange = world.client.post_bytes(&world.url(), body).await;
        assert_eq!(exchange.status, status, "{case}");
        assert_eq!(
            exchange.json().expect("JSON-RPC error")["error"]["code"],
            code,
            "{case}"
        );
        assert_eq!(exchange.signature_error(), None, "{case}");
    }
    assert!(world.notes.runs().is_empty());
}
