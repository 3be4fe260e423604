//! An Envoy-shaped front for the `ext_authz` tests: for every request it sends the gateway
//! the `CheckRequest` Envoy's HTTP ext_authz filter sends over gRPC (method, path with
//! query, host, the headers lower-cased with the `:authority`, `:method` and `:path`
//! pseudo-headers, and the body as with `with_request_body`), then either applies the
//! allowed response's header mutations and forwards to the upstream, or answers the
//! denied response's status, headers and body. `/.well-known/` is routed to the gateway's
//! well-known listener, as an Envoy route would.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use envoy_types::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttributeRequest};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tokio::net::TcpListener;

/// The `CheckRequest` Envoy sends for `request` (body included when non-empty).
pub fn check_request(request: &http::request::Parts, body: &[u8]) -> CheckRequest {
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in &request.headers {
        let value = value.to_str().unwrap_or_default().to_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    let host = request
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let path = request.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    headers.insert(":authority".to_owned(), host.clone());
    headers.insert(":method".to_owned(), request.method.as_str().to_owned());
    headers.insert(":path".to_owned(), path.clone());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttributeRequest {
                http: Some(HttpRequest {
                    id: "1".to_owned(),
                    method: request.method.as_str().to_owned(),
                    headers,
                    path,
                    host,
                    scheme: "http".to_owned(),
                    protocol: "HTTP/1.1".to_owned(),
                    size: body.len() as i64,
                    raw_body: body.to_vec(),
                    ..HttpRequest::default()
                }),
                ..AttributeRequest::default()
            }),
            ..AttributeContext::default()
        }),
    }
}

pub async fn client(port: u16) -> AuthorizationClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    AuthorizationClient::new(channel)
}

pub async fn check(port: u16, request: CheckRequest) -> CheckResponse {
    client(port).await.check(request).await.unwrap().into_inner()
}

fn header_of(option: &HeaderValueOption) -> (HeaderName, HeaderValue) {
    let header = option.header.as_ref().unwrap();
    (
        HeaderName::from_bytes(header.key.as_bytes()).unwrap(),
        HeaderValue::from_str(&header.value).unwrap(),
    )
}

/// The front: listens on a free port, calls the gateway's gRPC `grpc_port`, forwards to
/// `upstream`, routes `/.well-known/` to `well_known`.
pub struct Envoy {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Envoy {
    /// Listens on `port` (the resource's origin is chosen before the gateway starts).
    pub async fn start_on(port: u16, grpc_port: u16, well_known: u16, upstream: u16) -> Envoy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let http = http.clone();
            async move { front(request, http, grpc_port, well_known, upstream).await }
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Envoy { port, task }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(http: &reqwest::Client, parts: http::request::Parts, body: Vec<u8>, port: u16) -> Response<Body> {
    let url = format!(
        "http://127.0.0.1:{port}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut headers = parts.headers;
    headers.remove("host");
    let response = http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let mut answer = Response::builder().status(response.status());
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    answer.body(Body::from(response.bytes().await.unwrap())).unwrap()
}

async fn front(
    request: Request<Body>,
    http: reqwest::Client,
    grpc: u16,
    well_known: u16,
    upstream: u16,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    if parts.uri.path().starts_with("/.well-known/") {
        return relay(&http, parts, body, well_known).await;
    }
    let answer = check(grpc, check_request(&parts, &body)).await;
    let ok = answer.status.as_ref().is_some_and(|status| status.code == 0);
    match answer.http_response {
        Some(HttpResponse::OkResponse(allowed)) if ok => {
            for option in &allowed.headers {
                let (name, value) = header_of(option);
                parts.headers.insert(name, value);
            }
            for name in &allowed.headers_to_remove {
                parts.headers.remove(name.as_str());
            }
            relay(&http, parts, body, upstream).await
        }
        Some(HttpResponse::DeniedResponse(denied)) if !ok => {
            let status = denied.status.map_or(403, |status| status.code);
            let mut response = Response::builder().status(StatusCode::from_u16(status as u16).unwrap());
            for option in &denied.headers {
                let (name, value) = header_of(option);
                response = response.header(name, value);
            }
            response.body(Body::from(denied.body)).unwrap()
        }
        // Envoy denies anything else with 403.
        _ => Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Body::empty())
            .unwrap(),
    }
}
