//! Test doubles for discovery: a loopback issuer server that counts its hits, an
//! in-memory `Fetch`, and counting resolver/connector mocks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, Uri};
use bytes::Bytes;
use tower_aauth::{
    BoxFuture,
    discovery::{Connector, Fetch, FetchError, FetchedDocument, NameResolver, PinnedRequest},
};

/// A canned response.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub delay: Option<Duration>,
    /// Send the body as a stream of this chunk size, without `Content-Length`.
    pub chunked: Option<usize>,
}

impl Canned {
    pub fn json(value: &serde_json::Value) -> Self {
        Self::raw("application/json", value.to_string())
    }

    pub fn raw(content_type: &str, body: impl Into<Bytes>) -> Self {
        Canned {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
            delay: None,
            chunked: None,
        }
    }

    pub fn status(status: u16) -> Self {
        Canned {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            delay: None,
            chunked: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn chunked(mut self, size: usize) -> Self {
        self.chunked = Some(size);
        self
    }
}

#[derive(Default)]
struct ServerState {
    routes: Mutex<HashMap<String, Canned>>,
    hits: Mutex<HashMap<String, usize>>,
}

/// An HTTP server on 127.0.0.1 serving canned documents and counting hits per path.
pub struct IssuerServer {
    pub origin: String,
    pub addr: SocketAddr,
    state: Arc<ServerState>,
}

impl IssuerServer {
    pub async fn start() -> Self {
        let state = Arc::new(ServerState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(serve).with_state(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        IssuerServer {
            origin: format!("http://127.0.0.1:{}", addr.port()),
            addr,
            state,
        }
    }

    pub fn set(&self, path: &str, canned: Canned) {
        self.state.routes.lock().unwrap().insert(path.to_owned(), canned);
    }

    /// Serves `{issuer: origin, jwks_uri: origin/.well-known/jwks.json}` at `dwk` and
    /// `jwks` at the JWKS path.
    pub fn publish(&self, dwk: &str, jwks: &serde_json::Value) {
        self.set(&format!("/.well-known/{dwk}"), Canned::json(&self.metadata()));
        self.set("/.well-known/jwks.json", Canned::json(jwks));
    }

    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({ "issuer": self.origin, "jwks_uri": format!("{}/.well-known/jwks.json", self.origin) })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }
}

async fn serve(State(state): State<Arc<ServerState>>, uri: Uri) -> Response<Body> {
    let path = uri.path().to_owned();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let canned = state.routes.lock().unwrap().get(&path).cloned();
    let Some(canned) = canned else {
        return Response::builder().status(404).body(Body::empty()).unwrap();
    };
    if let Some(delay) = canned.delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::builder().status(canned.status);
    for (name, value) in &canned.headers {
        response = response.header(name, value);
    }
    let body = match canned.chunked {
        Some(size) => Body::new(Chunks(canned.body.chunks(size).map(Bytes::copy_from_slice).collect())),
        None => Body::from(canned.body),
    };
    response.body(body).unwrap()
}

/// A body of known chunks with no declared length, so hyper sends it chunked.
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// An in-memory `Fetch`: URL → document or error, counting calls per URL.
#[derive(Clone, Default)]
pub struct MapFetch {
    documents: Arc<Mutex<HashMap<String, Result<FetchedDocument, FetchError>>>>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl MapFetch {
    pub fn set(&self, url: &str, body: impl Into<Bytes>) {
        self.documents
            .lock()
            .unwrap()
            .insert(url.to_owned(), Ok(FetchedDocument::new(body)));
    }

    /// Serves `document` (with its caching hint) at `url`.
    pub fn set_document(&self, url: &str, document: FetchedDocument) {
        self.documents.lock().unwrap().insert(url.to_owned(), Ok(document));
    }

    pub fn set_json(&self, url: &str, value: &serde_json::Value) {
        self.set(url, value.to_string());
    }

    pub fn fail(&self, url: &str, error: FetchError) {
        self.documents.lock().unwrap().insert(url.to_owned(), Err(error));
    }

    /// Publishes metadata for `issuer` at `dwk` and `jwks` at `issuer/jwks`.
    pub fn publish(&self, issuer: &str, dwk: &str, jwks: &serde_json::Value) {
        self.set_json(
            &format!("{issuer}/.well-known/{dwk}"),
            &serde_json::json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks") }),
        );
        self.set_json(&format!("{issuer}/jwks"), jwks);
    }

    pub fn calls(&self, url: &str) -> usize {
        self.calls.lock().unwrap().get(url).copied().unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }
}

impl Fetch for MapFetch {
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        *self.calls.lock().unwrap().entry(url.to_owned()).or_default() += 1;
        let answer = self
            .documents
            .lock()
            .unwrap()
            .get(url)
            .cloned()
            .unwrap_or(Err(FetchError::Status(404)));
        Box::pin(async move {
            // Yield like a real fetch would, so concurrent callers overlap.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            let document = answer?;
            if document.body.len() > max_bytes {
                return Err(FetchError::TooLarge);
            }
            Ok(document)
        })
    }
}

/// A resolver answering from a fixed script (one answer per call, the last repeated),
/// counting calls.
#[derive(Clone, Default)]
pub struct ScriptedResolver {
    answers: Arc<Mutex<Vec<Vec<IpAddr>>>>,
    pub calls: Arc<AtomicUsize>,
}

impl ScriptedResolver {
    pub fn answering(answers: Vec<Vec<IpAddr>>) -> Self {
        ScriptedResolver {
            answers: Arc::new(Mutex::new(answers)),
            calls: Arc::default(),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl NameResolver for ScriptedResolver {
    fn resolve<'a>(&'a self, _host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, FetchError>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let answers = self.answers.lock().unwrap();
        let answer = answers.get(call).or(answers.last()).cloned().unwrap_or_default();
        Box::pin(async move { Ok(answer) })
    }
}

/// A connector that never touches the network: records what it was asked to connect to
/// and answers with a canned document.
/// What a connector was asked to reach: host and addresses.
pub type Target = (String, Vec<SocketAddr>);

#[derive(Clone, Default)]
pub struct RecordingConnector {
    pub targets: Arc<Mutex<Vec<Target>>>,
    pub body: Arc<Mutex<Bytes>>,
}

impl RecordingConnector {
    pub fn calls(&self) -> usize {
        self.targets.lock().unwrap().len()
    }
}

impl Connector for RecordingConnector {
    fn get<'a>(&'a self, request: PinnedRequest<'a>) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        self.targets
            .lock()
            .unwrap()
            .push((request.host.to_owned(), request.addresses.to_vec()));
        let body = self.body.lock().unwrap().clone();
        Box::pin(async move { Ok(FetchedDocument::new(body)) })
    }
}
