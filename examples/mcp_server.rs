//! An MCP server (the official Rust SDK, `rmcp`, streamable HTTP on axum) protected by
//! the AAuth layer, each tool asking for what it needs.
//!
//! ```text
//! AAUTH_RESOURCE=http://127.0.0.1:8080 AAUTH_AUTH_SERVER=http://127.0.0.1:9000 \
//! AAUTH_ALLOW_HTTP_LOOPBACK=1 cargo run --example mcp_server
//! ```
//!
//! The design in three lines: the layer verifies every request to `/mcp` as it verifies
//! any route; MCP multiplexes every tool on that one `POST` endpoint, so a small
//! middleware between the layer and the MCP service reads the (bounded) JSON-RPC message,
//! looks the called tool up in [`TOOLS`] and applies that tool's guard
//! ([`AAuth::require`]), which answers with the same challenges a route guard gives.
//!
//! | tool | needs | refused with |
//! |---|---|---|
//! | `whoami` | a verified signature (any scheme, `hwk` included) | `401 requirement=agent-token` |
//! | `read_notes` | an auth token granting `notes.read` | `401 requirement=auth-token; resource-token=…` (scope `notes.read`) |
//! | `add_note` | an auth token granting `notes.write` | the same, scope `notes.write` |
//! | `delete_note` | the person: a person-approved token, and `notes.write` | `401 requirement=person-token` for an agent-only token (`403` if it names no person server), then the `notes.write` challenge |
//!
//! **Discovery needs a signature, no token.** `initialize`, `server/discover`,
//! `tools/list`, notifications and every other method but `tools/call` are served to any
//! request with a verified signature (the `whoami` requirement), so that an agent can
//! connect and learn the tools and what each needs (their descriptions say it) before it
//! asks anybody for a token. They are not answered openly: an unsigned request gets
//! `401 requirement=agent-token`, which tells an MCP client that knows nothing of AAuth
//! what is expected, and a signature costs an agent nothing while it gives the resource
//! replay protection, per-agent policy (revocations, ceilings) and a key to account
//! requests to.
//!
//! The middleware refuses what it cannot judge: a body over [`MAX_MESSAGE_BYTES`]
//! (`413`), a body that is not JSON (`400`, JSON-RPC `-32700`), a JSON-RPC batch (`400`,
//! `-32600`: one decision per request, and the current MCP revisions send no batches),
//! and a `tools/call` of a tool the table does not name (JSON-RPC `-32602`, after the
//! signature check): a tool added to the server but not to [`TOOLS`] is never served
//! under a weaker requirement. The message handed to the MCP service is the one judged,
//! re-serialised, so that no two JSON parsers can disagree on which tool is called
//! (duplicate keys, for example).
//!
//! The server runs statelessly with JSON responses (`rmcp`'s `legacy_session_mode` off):
//! every request is signed and judged on its own, so there is no `Mcp-Session-Id` to
//! steal, and any replica can answer any request.
//!
//! Environment:
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `AAUTH_ADDR` | listen address | `127.0.0.1:8080` |
//! | `AAUTH_RESOURCE` | resource identifier | `http://127.0.0.1:8080` |
//! | `AAUTH_AUTH_SERVER` | trusted access server (four-party): it issues the auth tokens; unset, the example refuses to start | — |
//! | `AAUTH_ALLOW_HTTP_LOOPBACK` | `1`: admit `http://127.0.0.1:PORT` identifiers (development) | off |

use std::collections::HashMap;
use std::convert::Infallible;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use tower_aauth::guard::{GuardLayer, Requirement};
use tower_aauth::{AAuth, TokenKind, VerifiedRequest};

/// The path the MCP endpoint is served at.
pub const MCP_PATH: &str = "/mcp";

/// The largest JSON-RPC message the middleware reads to find the tool called.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What each tool needs, in one table: the middleware guards `tools/call` with it, and the
/// tests check that the server lists exactly these tools.
pub const TOOLS: &[(&str, Need)] = &[
    ("whoami", Need::Signature),
    ("read_notes", Need::Scope("notes.read")),
    ("add_note", Need::Scope("notes.write")),
    ("delete_note", Need::PersonAndScope("notes.write")),
];

/// A tool's requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any verified signature.
    Signature,
    /// An auth token granting this scope.
    Scope(&'static str),
    /// The person (a person-approved token: a person or auth token, never an agent
    /// token alone) and an auth token granting this scope.
    PersonAndScope(&'static str),
}

impl Need {
    /// The crate's requirement for it.
    pub fn requirement(self) -> Requirement {
        match self {
            Need::Signature => Requirement::Signature,
            Need::Scope(scope) => Requirement::scopes([scope]),
            // The person first: an agent-only token is told to bring the person, not
            // sent to the access server for a scope it could not grant to the agent alone.
            Need::PersonAndScope(scope) => {
                Requirement::All(Arc::from([Requirement::Person, Requirement::scopes([scope])]))
            }
        }
    }
}

/// The notes the tools share, and which tools ran (the tests read it to check that a
/// refused call ran nothing).
#[derive(Debug, Clone, Default)]
pub struct Notes {
    inner: Arc<Mutex<NotesInner>>,
}

#[derive(Debug, Default)]
struct NotesInner {
    notes: Vec<String>,
    runs: Vec<&'static str>,
}

/// A note is at most this many bytes.
const MAX_NOTE_BYTES: usize = 1024;
/// The store keeps at most this many notes.
const MAX_NOTES: usize = 256;
/// The run log keeps the last this many entries.
const MAX_RUNS: usize = 1024;

impl Notes {
    /// The tools that ran, oldest first.
    pub fn runs(&self) -> Vec<&'static str> {
        self.lock().runs.clone()
    }

    /// The notes, oldest first.
    pub fn notes(&self) -> Vec<String> {
        self.lock().notes.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NotesInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ran(&self, tool: &'static str) -> std::sync::MutexGuard<'_, NotesInner> {
        let mut inner = self.lock();
        if inner.runs.len() == MAX_RUNS {
            inner.runs.remove(0);
        }
        inner.runs.push(tool);
        inner
    }
}

/// The MCP server: four tools over [`Notes`].
#[derive(Debug, Clone)]
pub struct NotesServer {
    notes: Notes,
    tool_router: ToolRouter<Self>,
}

/// `add_note`'s arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddNote {
    /// The note's text (at most 1024 bytes).
    pub text: String,
}

/// `delete_note`'s arguments.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct DeleteNote {
    /// The note's index in `read_notes`' list, from 0.
    pub index: usize,
}

#[tool_router]
impl NotesServer {
    /// A server over `notes`.
    pub fn new(notes: Notes) -> Self {
        NotesServer {
            notes,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Who the resource sees calling: agent, scheme, token. Needs: a verified signature.")]
    fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        drop(self.notes.ran("whoami"));
        let Some(verified) = parts.extensions.get::<VerifiedRequest>() else {
            // Unreachable behind the layer and the middleware; answer nothing rather than guess.
            return json!({ "error": "not verified" }).to_string();
        };
        let token = verified.token.as_deref().map(|token| &token.claims);
        json!({
            "agent": verified.signer.as_deref(),
            "scheme": format!("{:?}", verified.scheme),
            "token_type": token.map(|claims| match claims.kind {
                TokenKind::Agent => "agent",
                TokenKind::Person => "person",
                TokenKind::Auth => "auth",
                _ => "other",
            }),
            // An agent token's `sub` names the agent; person and auth tokens name the person.
            "person": token.filter(|claims| claims.kind != TokenKind::Agent).and_then(|claims| claims.sub.as_deref()),
            "scope": token.map(|claims| claims.scope.to_string()),
        })
        .to_string()
    }

    #[tool(description = "The notes, as a JSON list. Needs: scope notes.read.")]
    fn read_notes(&self) -> String {
        let inner = self.notes.ran("read_notes");
        json!(inner.notes).to_string()
    }

    #[tool(description = "Adds a note. Needs: scope notes.write.")]
    fn add_note(&self, Parameters(AddNote { text }): Parameters<AddNote>) -> String {
        let mut inner = self.notes.ran("add_note");
        if text.len() > MAX_NOTE_BYTES || inner.notes.len() >= MAX_NOTES {
            return "refused: the note is too long or the store is full".to_owned();
        }
        inner.notes.push(text);
        format!("added note {}", inner.notes.len() - 1)
    }

    #[tool(description = "Deletes a note. Needs: the person (a person-approved token) and scope notes.write.")]
    fn delete_note(&self, Parameters(DeleteNote { index }): Parameters<DeleteNote>) -> String {
        let mut inner = self.notes.ran("delete_note");
        if index >= inner.notes.len() {
            return format!("no note {index}");
        }
        inner.notes.remove(index);
        format!("deleted note {index}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build()).with_instructions(
            "Notes behind AAuth: sign every request (HTTP Message Signatures with Signature-Key); \
             each tool's description says what it needs.",
        )
    }
}

/// The guards the middleware applies: one per tool, and the endpoint's own.
#[derive(Clone)]
struct ToolGuards {
    endpoint: GuardLayer,
    tools: Arc<HashMap<&'static str, GuardLayer>>,
}

/// The MCP endpoint behind `aauth`'s layer: `/mcp` (tools guarded per call) and the
/// well-known documents. `allowed_host` is the resource identifier's authority, the
/// only `Host` the MCP transport answers (its DNS-rebinding defence).
pub fn app(aauth: &AAuth, notes: Notes, allowed_host: &str) -> Router {
    let guards = ToolGuards {
        endpoint: aauth.require(Requirement::Signature),
        tools: Arc::new(
            TOOLS
                .iter()
                .map(|(name, need)| (*name, aauth.require(need.requirement())))
                .collect(),
        ),
    };
    let mut config = StreamableHttpServerConfig::default();
    config.legacy_session_mode = false;
    config.json_response = true;
    config.allowed_hosts = vec![allowed_host.to_owned()];
    let mcp = StreamableHttpService::new(
        move || Ok(NotesServer::new(notes.clone())),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service(MCP_PATH, mcp)
        .route_layer(axum::middleware::from_fn_with_state(guards, guard_tool_calls))
        .merge(aauth.well_known_router())
        .layer(aauth.layer())
}

/// Every request needs a verified signature first (so that nothing below answers an
/// unsigned request); a `tools/call` then gets the called tool's guard.
async fn guard_tool_calls(State(guards): State<ToolGuards>, request: Request, next: Next) -> Response {
    let endpoint = guards.endpoint.clone();
    let judge = tower::service_fn(move |request: Request| {
        let (guards, next) = (guards.clone(), next.clone());
        async move { Ok::<_, Infallible>(judge_call(guards, request, next).await) }
    });
    match endpoint.layer(judge).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Reads the JSON-RPC message (bounded) and applies its tool's guard.
async fn judge_call(guards: ToolGuards, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await else {
        return rpc_error(StatusCode::PAYLOAD_TOO_LARGE, Value::Null, -32600, "message too large");
    };
    let message = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Array(_)) => {
            return rpc_error(StatusCode::BAD_REQUEST, Value::Null, -32600, "batches are not accepted");
        }
        Ok(message) => message,
        Err(_) => return rpc_error(StatusCode::BAD_REQUEST, Value::Null, -32700, "parse error"),
    };
    // The MCP service parses exactly what is judged here.
    let judged = Bytes::from(serde_json::to_vec(&message).unwrap_or_default());
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(judged.len()));
    let request = Request::from_parts(parts, Body::from(judged));
    if message.get("method").and_then(Value::as_str) != Some("tools/call") {
        return next.run(request).await;
    }
    let tool = message.pointer("/params/name").and_then(Value::as_str);
    let Some(guard) = tool.and_then(|name| guards.tools.get(name)) else {
        // What the SDK answers for a tool it does not have; a tool the table does not
        // name is never served.
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        return rpc_error(StatusCode::OK, id, -32602, "unknown tool");
    };
    match guard.clone().layer(next).oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let addr = env("AAUTH_ADDR").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let resource = env("AAUTH_RESOURCE").unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    let Some(auth_server) = env("AAUTH_AUTH_SERVER") else {
        eprintln!("AAUTH_AUTH_SERVER must name the access server that issues the tools' auth tokens");
        return ExitCode::FAILURE;
    };
    let Some(host) = url::Url::parse(&resource).ok().and_then(|url| {
        Some(format!(
            "{}{}",
            url.host_str()?,
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ))
    }) else {
        eprintln!("AAUTH_RESOURCE is not a URL: {resource}");
        return ExitCode::FAILURE;
    };
    let mut builder = AAuth::builder(&resource)
        .auth_server(&auth_server)
        .scope("notes.read", "Read your notes")
        .scope("notes.write", "Change your notes");
    if env("AAUTH_ALLOW_HTTP_LOOPBACK").as_deref() == Some("1") {
        builder = builder.dangerous().allow_http_loopback();
    }
    let aauth = match builder.build() {
        Ok(aauth) => aauth,
        Err(error) => {
            eprintln!("configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("MCP server for {resource} at http://{addr}{MCP_PATH}");
    let app = app(&aauth, Notes::default(), &host);
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server: {error}");
            ExitCode::FAILURE
        }
    }
}
