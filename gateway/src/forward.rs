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
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::Service;

use crate::config::Limits;
use crate::identity;
use crate::service::{problem, unrepresentable};

type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Forwards to one upstream origin (with an optional base path). Cloned per request (the
/// service contract), so everything lives behind one `Arc`.
#[derive(Clone)]
pub struct Forward {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, UpstreamBody>,
    authority: Authority,
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
        Forward {
            inner: Arc::new(Inner {
                client,
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
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = Some(path_and_query);
        let Ok(uri) = Uri::from_parts(uri) else {
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
        parts.uri = uri;
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
        let response = match tokio::time::timeout(self.limits.upstream_timeout, self.client.request(upstream)).await {
            Err(_elapsed) => {
                return problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream did not answer in time",
                );
            }
            Ok(Err(error)) if over_cap(&error) => return too_large(),
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
}
