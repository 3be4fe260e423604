//! Envoy's external authorization over gRPC (`envoy.service.auth.v3.Authorization/Check`).
//!
//! A `CheckRequest` describes the client's request: `attributes.request.http` gives the
//! method, the request target (`path`, query included, as sent), the host, the headers
//! (`header_map` when Envoy sends raw headers, else the `headers` map; pseudo-headers are
//! skipped) and, with `with_request_body`, the body (`raw_body`, else `body`). The gateway
//! rebuilds that request and runs it through the verified path with the
//! [`Allow`](crate::service::Allow) terminal:
//!
//! * allowed → `OK`, the identity headers to set upstream (overwriting) and every
//!   `x-aauth-*` header the client sent to remove;
//! * refused → `PERMISSION_DENIED` (`UNAUTHENTICATED` for `401`) with the refusal's status,
//!   headers and body as Envoy's `denied_response`;
//! * a `CheckRequest` missing the method, path or host, or carrying a target that is not
//!   origin-form → `INVALID_ARGUMENT` with a `400` denied response. Nothing is allowed
//!   that was not verified.
//!
//! Without the body, a signature covering `content-digest` fails (the layer compares the
//! digest with an empty body): configure `with_request_body` for such routes.

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HttpResponse, HttpStatus,
    HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as EnvoyHeaderValue, HeaderValueOption};
use envoy_types::pb::google::rpc;
use http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use tower::ServiceExt;

use crate::identity;
use crate::service::{HttpService, body_bytes};

/// Largest refusal body relayed to Envoy.
const MAX_DENIED_BODY: usize = 64 * 1024;

/// The `Authorization` service.
pub struct ExtAuthz {
    pub verified: HttpService,
    /// The body cap: a larger `raw_body` is refused (`413`) before verification.
    pub max_body_bytes: u64,
}

fn option(name: &str, value: &[u8], action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(EnvoyHeaderValue {
            key: name.to_owned(),
            value: String::from_utf8_lossy(value).into_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action.into(),
        keep_empty_value: false,
    }
}

fn rpc_status(code: tonic::Code, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: Vec::new(),
    })
}

/// A denied `CheckResponse` carrying `response` (status, headers, body).
fn denied(code: tonic::Code, status: http::StatusCode, headers: &http::HeaderMap, body: Vec<u8>) -> CheckResponse {
    let http_status = HttpStatusCode::try_from(i32::from(status.as_u16())).unwrap_or(HttpStatusCode::Forbidden);
    CheckResponse {
        status: rpc_status(code, status.canonical_reason().unwrap_or("denied")),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: http_status.into(),
            }),
            headers: headers
                .iter()
                .filter(|(name, _)| *name != header::CONTENT_LENGTH)
                .map(|(name, value)| option(name.as_str(), value.as_bytes(), HeaderAppendAction::AppendIfExistsOrAdd))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })),
        ..CheckResponse::default()
    }
}

/// `400`: the `CheckRequest` does not describe a request that could be verified.
fn invalid(detail: &'static str) -> CheckResponse {
    let response = crate::service::problem(http::StatusCode::BAD_REQUEST, "invalid_request", detail);
    let body = serde_json::json!({"detail": detail, "error": "invalid_request", "status": 400, "title": "Bad Request"});
    denied(
        tonic::Code::InvalidArgument,
        http::StatusCode::BAD_REQUEST,
        response.headers(),
        body.to_string().into_bytes(),
    )
}

/// Why a `CheckRequest` is refused before verification.
#[derive(Debug)]
pub enum Unusable {
    /// It does not describe a request (the detail says which field).
    Invalid(&'static str),
    /// Its body is over the cap.
    TooLarge,
}

impl Unusable {
    fn response(&self) -> CheckResponse {
        match self {
            Unusable::Invalid(detail) => invalid(detail),
            Unusable::TooLarge => too_large(),
        }
    }
}

fn too_large() -> CheckResponse {
    const DETAIL: &str = "the request body is over the gateway's cap";
    let response = crate::service::problem(http::StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", DETAIL);
    let body = serde_json::json!({"detail": DETAIL, "error": "payload_too_large", "status": 413, "title": "Payload Too Large"});
    denied(
        tonic::Code::PermissionDenied,
        http::StatusCode::PAYLOAD_TOO_LARGE,
        response.headers(),
        body.to_string().into_bytes(),
    )
}

/// The client's request as the `CheckRequest` describes it.
pub fn rebuild(check: &CheckRequest, max_body_bytes: u64) -> Result<Request<axum::body::Body>, Unusable> {
    let http = check
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.request.as_ref())
        .and_then(|request| request.http.as_ref())
        .ok_or(Unusable::Invalid("the CheckRequest has no attributes.request.http"))?;
    let method = Some(http.method.as_str())
        .filter(|method| !method.is_empty())
        .and_then(|method| Method::from_bytes(method.as_bytes()).ok())
        .ok_or(Unusable::Invalid("the CheckRequest has no valid method"))?;
    let uri = Some(http.path.as_str())
        .filter(|path| path.starts_with('/'))
        .and_then(|path| path.parse::<Uri>().ok())
        .ok_or(Unusable::Invalid("the CheckRequest has no origin-form path"))?;
    let host = HeaderValue::from_str(&http.host)
        .ok()
        .filter(|host| !host.is_empty())
        .ok_or(Unusable::Invalid("the CheckRequest has no valid host"))?;
    let body: Vec<u8> = if !http.raw_body.is_empty() {
        http.raw_body.clone()
    } else {
        http.body.clone().into_bytes()
    };
    if body.len() as u64 > max_body_bytes {
        return Err(Unusable::TooLarge);
    }
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(axum::body::Body::from(body))
        .map_err(|_| Unusable::Invalid("the CheckRequest does not describe a request"))?;
    let headers = request.headers_mut();
    let mut add = |name: &str, value: &[u8]| -> Result<(), Unusable> {
        if name.starts_with(':') {
            return Ok(());
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| Unusable::Invalid("a header name is not valid"))?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Unusable::Invalid("a header value is not valid"))?;
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            headers.append(name, value);
        }
        Ok(())
    };
    match http.header_map.as_ref().filter(|map| !map.headers.is_empty()) {
        Some(map) => {
            for entry in &map.headers {
                let value = if entry.raw_value.is_empty() {
                    entry.value.as_bytes()
                } else {
                    &entry.raw_value
                };
                add(&entry.key, value)?;
            }
        }
        None => {
            for (name, value) in &http.headers {
                add(name, value.as_bytes())?;
            }
        }
    }
    let headers = request.headers_mut();
    headers.insert(header::HOST, host);
    // The signature may cover content-length: the length Envoy saw is the header's.
    let declared = http.headers.get("content-length").cloned().or_else(|| {
        http.header_map.as_ref().and_then(|map| {
            map.headers
                .iter()
                .find(|entry| entry.key.eq_ignore_ascii_case("content-length"))
                .map(|entry| {
                    if entry.raw_value.is_empty() {
                        entry.value.clone()
                    } else {
                        String::from_utf8_lossy(&entry.raw_value).into_owned()
                    }
                })
        })
    });
    if let Some(length) = declared.and_then(|length| HeaderValue::from_str(&length).ok()) {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    Ok(request)
}

impl ExtAuthz {
    /// Answers one `CheckRequest`.
    pub async fn answer(&self, check: &CheckRequest) -> CheckResponse {
        let request = match rebuild(check, self.max_body_bytes) {
            Ok(request) => request,
            Err(unusable) => return unusable.response(),
        };
        let present: Vec<String> = request
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with(identity::PREFIX))
            .map(|name| name.as_str().to_owned())
            .collect();
        let Ok(answer) = self.verified.clone().oneshot(request).await;
        let (parts, body) = answer.into_parts();
        if parts.status == http::StatusCode::OK {
            let mut headers_to_remove = present;
            for name in identity::ALL {
                if !headers_to_remove.iter().any(|present| present == name.as_str()) {
                    headers_to_remove.push(name.as_str().to_owned());
                }
            }
            let set: Vec<HeaderValueOption> = parts
                .headers
                .iter()
                .filter(|(name, _)| name.as_str().starts_with(identity::PREFIX))
                .map(|(name, value)| {
                    option(
                        name.as_str(),
                        value.as_bytes(),
                        HeaderAppendAction::OverwriteIfExistsOrAdd,
                    )
                })
                .collect();
            // Removal happens before the additions in Envoy: the names set are kept out
            // of the removal list so that the verified values survive.
            headers_to_remove.retain(|name| {
                !set.iter()
                    .any(|option| option.header.as_ref().is_some_and(|h| &h.key == name))
            });
            #[allow(deprecated)]
            return CheckResponse {
                status: rpc_status(tonic::Code::Ok, "OK"),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: set,
                    headers_to_remove,
                    ..OkHttpResponse::default()
                })),
                ..CheckResponse::default()
            };
        }
        let body = body_bytes(body, MAX_DENIED_BODY).await.unwrap_or_default();
        let code = if parts.status == http::StatusCode::UNAUTHORIZED {
            tonic::Code::Unauthenticated
        } else {
            tonic::Code::PermissionDenied
        };
        denied(code, parts.status, &parts.headers, body.to_vec())
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.answer(request.get_ref()).await))
    }
}
