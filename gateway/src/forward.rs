//! The reverse proxy's terminal: forwards an admitted request to the upstream.
//!
//! Headers: hop-by-hop fields go, every incoming `x-aauth-*` goes, the identity headers
//! are set from the [`VerifiedRequest`](tower_aauth::VerifiedRequest) (or the [`VerifiedBot`](tower_aauth::bot::VerifiedBot)); `Host` becomes the upstream's, the original goes
//! in `x-forwarded-host`. Bodies stream through within the cap: a declared length over it
//! is `413` before anything is sent; a chunked body that grows past it aborts the upstream
//! request and is answered `413`. A `Content-Digest`-covered body reaches here already
//! buffered and checked by the layer (its own cap is the same). The upstream's answer
//! streams back. Failures are the gateway's own answers, never a forwarded request:
//! upstream unreachable `502`, no response head within the timeout `504`.
//!
//! Upstream connections: each downstream connection gets its own upstream HTTP/1
//! connection ([`PerConnection`] puts an empty [`Pinned`] slot in every request of that
//! connection), opened on its first forwarded request and reused for the next ones; no
//! pool is consulted and no connection is handed between downstream connections. HTTP/2
//! clients' requests (concurrent streams), and a request whose pinned connection is
//! still busy, take the shared pool instead. A pinned connection the upstream closed is replaced by a fresh
//! one, and a request it could not take is sent again on the fresh one (it was not
//! sent); a failed or abandoned exchange leaves the slot empty.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::Service;

use crate::config::Limits;
use crate::identity;
use crate::service::{problem, unrepresentable};

type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream connection pinned to one downstream connection.
#[derive(Clone, Default)]
pub struct Pinned(Arc<std::sync::Mutex<Slot>>);

#[derive(Default)]
enum Slot {
    /// No connection yet, or the last one failed.
    #[default]
    Empty,
    /// A connection waiting for this downstream connection's next request.
    Idle(SendRequest<UpstreamBody>),
    /// A request of this downstream connection is using it.
    Busy,
}

impl Pinned {
    /// Takes the connection for one exchange: `None` when another request has it.
    fn checkout(&self) -> Option<Checkout<'_>> {
        let mut slot = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match std::mem::replace(&mut *slot, Slot::Busy) {
            Slot::Busy => None,
            Slot::Empty => Some(Checkout {
                pinned: self,
                sender: None,
                given_back: false,
            }),
            Slot::Idle(sender) => Some(Checkout {
                pinned: self,
                sender: Some(sender),
                given_back: false,
            }),
        }
    }

    fn set(&self, to: Slot) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = to;
    }
}

/// A checked-out slot: given back with [`Checkout::done`], or emptied when dropped (a
/// failed, timed-out or cancelled exchange).
struct Checkout<'a> {
    pinned: &'a Pinned,
    sender: Option<SendRequest<UpstreamBody>>,
    given_back: bool,
}

impl Checkout<'_> {
    fn done(mut self, sender: SendRequest<UpstreamBody>) {
        self.pinned.set(Slot::Idle(sender));
        self.given_back = true;
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if !self.given_back {
            self.pinned.set(Slot::Empty);
        }
    }
}

/// The reverse proxy's make-service: one [`Pinned`] slot per downstream connection, put
/// in each of its requests' extensions.
#[derive(Clone)]
pub struct PerConnection(pub crate::service::HttpService);

impl<L: axum::serve::Listener> Service<axum::serve::IncomingStream<'_, L>> for PerConnection {
    type Response = WithPinned;
    type Error = Infallible;
    type Future = std::future::Ready<Result<WithPinned, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: axum::serve::IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(WithPinned {
            inner: self.0.clone(),
            pinned: Pinned::default(),
        }))
    }
}

/// The request path of one downstream connection.
#[derive(Clone)]
pub struct WithPinned {
    inner: crate::service::HttpService,
    pinned: Pinned,
}

impl Service<Request<Body>> for WithPinned {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = <crate::service::HttpService as Service<Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        request.extensions_mut().insert(self.pinned.clone());
        self.inner.call(request)
    }
}

/// Forwards to one upstream origin (with an optional base path). Cloned per request (the
/// service contract), so everything lives behind one `Arc`.
#[derive(Clone)]
pub struct Forward {
    inner: Arc<Inner>,
}

struct Inner {
    /// For requests without a free pinned connection.
    client: Client<HttpConnector, UpstreamBody>,
    authority: Authority,
    /// `Host` of every forwarded request (the upstream's authority).
    host: HeaderValue,
    /// Where a pinned connection connects to.
    address: (String, u16),
    base_path: String,
    limits: Limits,
    /// The resource's scheme, for `x-forwarded-proto`.
    proto: HeaderValue,
}

impl Forward {
    pub fn new(upstream: &url::Url, resource: &str, limits: Limits) -> Forward {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let host = upstream.host_str().unwrap_or("127.0.0.1");
        let authority = match upstream.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let proto = if resource.starts_with("https:") {
            "https"
        } else {
            "http"
        };
        let address = (
            host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            upstream.port_or_known_default().unwrap_or(80),
        );
        Forward {
            inner: Arc::new(Inner {
                client,
                host: HeaderValue::from_str(&authority).expect("a checked URL's host and port"),
                address,
                authority: authority.parse().expect("a checked URL's host and port"),
                base_path: upstream.path().trim_end_matches('/').to_owned(),
                limits,
                proto: HeaderValue::from_static(proto),
            }),
        }
    }
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

/// Whether `error` (or what caused it) is the body cap.
fn over_cap(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = error.source();
    }
    false
}

fn too_large() -> Response<Body> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is over the gateway's cap",
    )
}

impl Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.inner.clone();
        Box::pin(async move { Ok(this.forward(request).await) })
    }
}

impl Inner {
    async fn forward(&self, request: Request<Body>) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        let cap = self.limits.max_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > cap) {
            return too_large();
        }
        let identity = match identity::headers(&parts.extensions) {
            Ok(identity) => identity,
            Err(identity::Unrepresentable) => return unrepresentable(),
        };
        // Without a base path the target is the client's, reused as parsed (no copy).
        let path_and_query = match (self.base_path.is_empty(), parts.uri.path_and_query()) {
            (true, Some(path_and_query)) => Ok(path_and_query.clone()),
            (_, path_and_query) => {
                let path_and_query = path_and_query.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))
            }
        };
        let Ok(path_and_query) = path_and_query else {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request target cannot be forwarded",
            );
        };
        let original_host = parts.headers.remove(header::HOST);
        let headers = &mut parts.headers;
        strip_hop_by_hop(headers);
        identity::strip(headers);
        for forwarded in ["x-forwarded-host", "x-forwarded-proto", "forwarded"] {
            headers.remove(forwarded);
        }
        if let Some(host) = original_host {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host);
        }
        headers.insert(HeaderName::from_static("x-forwarded-proto"), self.proto.clone());
        headers.extend(identity.into_iter().map(|(name, value)| (Some(name), value)));
        headers.insert(header::HOST, self.host.clone());
        // An HTTP/2 client's streams run concurrently: one HTTP/1 upstream connection
        // would make each wait for the previous one's response body. They take the pool.
        let pinned = parts
            .extensions
            .remove::<Pinned>()
            .filter(|_| parts.version <= http::Version::HTTP_11);
        // Origin form, as sent on the wire.
        parts.uri = Uri::from(path_and_query);
        parts.version = http::Version::HTTP_11;
        parts.extensions = http::Extensions::new();
        let limit = usize::try_from(cap).unwrap_or(usize::MAX);
        // A request that has ended (no body, or a digest-checked one already read whole
        // and empty) needs no cap to count against.
        let body: UpstreamBody = if body.is_end_stream() {
            UpstreamBody::default()
        } else {
            Limited::new(body, limit).boxed_unsync()
        };
        let upstream = Request::from_parts(parts, body);
        let exchange = self.exchange(pinned.as_ref(), upstream);
        let response = match tokio::time::timeout(self.limits.upstream_timeout, exchange).await {
            Err(_elapsed) => {
                return problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream did not answer in time",
                );
            }
            Ok(Err(error)) if over_cap(&*error) => return too_large(),
            Ok(Err(error)) => {
                tracing::warn!(target: "aauth_gateway", %error, "upstream request failed");
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unavailable",
                    "the upstream could not be reached",
                );
            }
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Response::from_parts(parts, Body::new(body))
    }

    /// Sends `request` (origin form, `Host` set) on the pinned connection, opening one
    /// when there is none or it closed; on the shared pool when there is no free one.
    async fn exchange(
        &self,
        pinned: Option<&Pinned>,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let Some(mut checkout) = pinned.and_then(Pinned::checkout) else {
            return self.pooled(request).await;
        };
        let mut request = request;
        if let Some(mut sender) = checkout.sender.take()
            && sender.ready().await.is_ok()
        {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    checkout.done(sender);
                    return Ok(response);
                }
                // Not sent (the connection closed meanwhile): again on a fresh one.
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(error.into_error().into()),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender.send_request(request).await?;
        checkout.done(sender);
        Ok(response)
    }

    async fn pooled(&self, request: Request<UpstreamBody>) -> Result<Response<Incoming>, BoxError> {
        let (mut parts, body) = request.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri)?;
        Ok(self.client.request(Request::from_parts(parts, body)).await?)
    }

    /// A new HTTP/1 connection to the upstream, its I/O driven by a task of its own.
    async fn connect(&self) -> Result<SendRequest<UpstreamBody>, BoxError> {
        let (host, port) = (&self.address.0, self.address.1);
        let tcp = tokio::time::timeout(
            self.limits.connect_timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_elapsed| "connect timeout")??;
        tcp.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(target: "aauth_gateway", %error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}
