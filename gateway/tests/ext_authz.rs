//! The gateway as Envoy's external authorization service
//! (`envoy.service.auth.v3.Authorization/Check` over gRPC): the seed flow and the refusals
//! through an Envoy-shaped front that sends the `CheckRequest`s Envoy sends, and the
//! mapping of single `CheckRequest`s (allow with headers to set and remove, deny with the
//! refusal's status, headers and body, malformed requests) by a plain gRPC client.

mod support;

use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use support::envoy::{Envoy, check, check_request};
use support::scenarios::Front;
use support::{Gateway, Parties, TempDir, Upstream, bounded, config, free_port, key_directory, now};
use tower_aauth::testing::{BotDirectory, KeySource, SignOptions};

struct Deployment {
    parties: Parties,
    upstream: Upstream,
    envoy: Envoy,
    _gateway: Gateway,
    grpc: u16,
    _keys: TempDir,
}

impl Deployment {
    async fn start() -> Deployment {
        let parties = Parties::start().await;
        let upstream = Upstream::start().await;
        let keys = key_directory();
        let grpc = free_port();
        let well_known = free_port();
        // The resource is the front's origin: bind it first to know it.
        let envoy_port = free_port();
        let text = config(
            "ext-authz",
            &format!("http://127.0.0.1:{envoy_port}"),
            grpc,
            keys.path(),
            &parties.auth_origin,
            &format!("well_known_listen = \"127.0.0.1:{well_known}\""),
        );
        let gateway = Gateway::start(&text, grpc);
        let envoy = Envoy::start_on(envoy_port, grpc, well_known, upstream.port).await;
        Deployment {
            parties,
            upstream,
            envoy,
            _gateway: gateway,
            grpc,
            _keys: keys,
        }
    }

    fn front(&self) -> Front<'_> {
        Front {
            origin: self.envoy.origin(),
            upstream: &self.upstream,
            parties: &self.parties,
            strips_every_prefixed: true,
            problem_codes: true,
        }
    }

    fn signed(&self, method: Method, path: &str, source: &KeySource, headers: &[(&str, &str)]) -> CheckRequest {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.envoy.origin()));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Vec::new()).unwrap();
        self.parties
            .agent
            .sign_with(&mut request, source, now(), &SignOptions::default());
        let (mut parts, body) = request.into_parts();
        let host = parts.uri.authority().unwrap().as_str().to_owned();
        parts.headers.insert("host", host.parse().unwrap());
        check_request(&parts, &body)
    }
}

fn denied(response: &CheckResponse) -> (i32, u16, Vec<(String, String)>, Value) {
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("not denied: {response:?}");
    };
    let headers = denied
        .headers
        .iter()
        .map(|option| {
            let header = option.header.as_ref().unwrap();
            (header.key.clone(), header.value.clone())
        })
        .collect();
    (
        response.status.as_ref().unwrap().code,
        denied.status.as_ref().unwrap().code as u16,
        headers,
        serde_json::from_str(&denied.body).unwrap_or(Value::Null),
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_flow_and_every_refusal_behave_through_ext_authz() {
    bounded(async {
        let deployment = Deployment::start().await;
        let front = deployment.front();
        front.seed_flow_and_every_refusal(StatusCode::NOT_FOUND).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_check_sets_the_identity_and_removes_what_the_client_sent() {
    bounded(async {
        let deployment = Deployment::start().await;
        let signed = deployment.signed(
            Method::GET,
            "/whoami",
            &deployment.parties.source(),
            &[("x-aauth-agent", "aauth:forged@evil.example"), ("x-aauth-extra", "1")],
        );
        let response = check(deployment.grpc, signed).await;
        assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
        let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
            panic!("not allowed: {response:?}");
        };
        let set: Vec<(&str, &str)> = ok
            .headers
            .iter()
            .map(|option| {
                let header = option.header.as_ref().unwrap();
                (header.key.as_str(), header.value.as_str())
            })
            .collect();
        assert!(set.contains(&("x-aauth-scheme", "jwks_uri")), "{set:?}");
        assert!(
            set.contains(&("x-aauth-agent", deployment.parties.agent_id.as_str())),
            "{set:?}"
        );
        assert!(
            ok.headers_to_remove.contains(&"x-aauth-extra".to_owned()),
            "{:?}",
            ok.headers_to_remove
        );
        assert!(
            ok.headers_to_remove.contains(&"x-aauth-scope".to_owned()),
            "{:?}",
            ok.headers_to_remove
        );
        assert!(
            !ok.headers_to_remove.contains(&"x-aauth-agent".to_owned()),
            "set, so overwritten, not removed"
        );
        assert_eq!(deployment.upstream.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_check_carries_the_challenge_status_headers_and_body() {
    bounded(async {
        let deployment = Deployment::start().await;
        let mut tampered = deployment.signed(Method::GET, "/whoami", &deployment.parties.source(), &[]);
        let http = tampered
            .attributes
            .as_mut()
            .unwrap()
            .request
            .as_mut()
            .unwrap()
            .http
            .as_mut()
            .unwrap();
        http.method = "POST".to_owned();
        http.headers.insert(":method".to_owned(), http.method.clone());
        let response = check(deployment.grpc, tampered).await;
        let (code, status, headers, body) = denied(&response);
        assert_eq!(code, tonic::Code::Unauthenticated as i32);
        assert_eq!(status, 401);
        assert_eq!(header(&headers, "signature-error"), Some("error=invalid_signature"));
        assert_eq!(header(&headers, "cache-control"), Some("no-store"));
        assert_eq!(body["error"], "invalid_signature");

        // A query the signature does not cover is not let through to the upstream.
        let mut added = deployment.signed(Method::GET, "/whoami", &deployment.parties.source(), &[]);
        let http = added.attributes.as_mut().unwrap().request.as_mut().unwrap().http.as_mut().unwrap();
        http.path = "/whoami?account=other".to_owned();
        http.headers.insert(":path".to_owned(), http.path.clone());
        let (code, status, headers, _) = denied(&check(deployment.grpc, added).await);
        assert_eq!((code, status), (tonic::Code::Unauthenticated as i32, 401));
        assert_eq!(header(&headers, "signature-error"), Some("error=invalid_input, required_input=(\"@method\" \"@authority\" \"@path\" \"signature-key\" \"@query\")"));

        let unsigned = {
            let request = Request::builder()
                .uri(format!("{}/data", deployment.envoy.origin()))
                .header("host", deployment.envoy.origin().trim_start_matches("http://"))
                .body(Vec::<u8>::new())
                .unwrap();
            let (parts, body) = request.into_parts();
            check_request(&parts, &body)
        };
        let (code, status, headers, _) = denied(&check(deployment.grpc, unsigned).await);
        assert_eq!(code, tonic::Code::Unauthenticated as i32);
        assert_eq!(status, 401);
        let requirement = header(&headers, "aauth-requirement").expect("a challenge");
        assert!(requirement.starts_with("requirement=agent-token"), "{requirement}");
        assert_eq!(deployment.upstream.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_request_missing_fields_is_invalid_argument_with_400() {
    bounded(async {
        let deployment = Deployment::start().await;
        let complete = deployment.signed(Method::GET, "/whoami", &deployment.parties.source(), &[]);
        let strip = |edit: fn(&mut CheckRequest)| {
            let mut request = complete.clone();
            edit(&mut request);
            request
        };
        let cases: Vec<(&str, CheckRequest)> = vec![
            ("no attributes", CheckRequest::default()),
            (
                "no http request",
                CheckRequest {
                    attributes: Some(AttributeContext::default()),
                },
            ),
            (
                "no method",
                strip(|r| {
                    r.attributes
                        .as_mut()
                        .unwrap()
                        .request
                        .as_mut()
                        .unwrap()
                        .http
                        .as_mut()
                        .unwrap()
                        .method
                        .clear()
                }),
            ),
            (
                "no path",
                strip(|r| {
                    r.attributes
                        .as_mut()
                        .unwrap()
                        .request
                        .as_mut()
                        .unwrap()
                        .http
                        .as_mut()
                        .unwrap()
                        .path
                        .clear()
                }),
            ),
            (
                "no host",
                strip(|r| {
                    r.attributes
                        .as_mut()
                        .unwrap()
                        .request
                        .as_mut()
                        .unwrap()
                        .http
                        .as_mut()
                        .unwrap()
                        .host
                        .clear()
                }),
            ),
            (
                "absolute-form path",
                strip(|r| {
                    r.attributes
                        .as_mut()
                        .unwrap()
                        .request
                        .as_mut()
                        .unwrap()
                        .http
                        .as_mut()
                        .unwrap()
                        .path = "http://elsewhere.example/whoami".to_owned()
                }),
            ),
        ];
        for (what, request) in cases {
            let (code, status, _, body) = denied(&check(deployment.grpc, request).await);
            assert_eq!(code, tonic::Code::InvalidArgument as i32, "{what}");
            assert_eq!(status, 400, "{what}");
            assert_eq!(body["error"], "invalid_request", "{what}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_covered_body_is_checked_when_envoy_sends_it() {
    bounded(async {
        let deployment = Deployment::start().await;
        let body = json!({"n": 1}).to_string().into_bytes();
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/upload", deployment.envoy.origin()))
            .header("content-type", "application/json")
            .body(body.clone())
            .unwrap();
        deployment
            .parties
            .agent
            .sign_with_body(&mut request, &body, &deployment.parties.source(), now());
        let (mut parts, _) = request.into_parts();
        let host = parts.uri.authority().unwrap().as_str().to_owned();
        parts.headers.insert("host", host.parse().unwrap());
        let allowed = check(deployment.grpc, check_request(&parts, &body)).await;
        assert_eq!(allowed.status.as_ref().unwrap().code, 0, "{allowed:?}");
        let (code, status, headers, _) = denied(&check(deployment.grpc, check_request(&parts, b"{\"n\":2}")).await);
        assert_eq!((code, status), (tonic::Code::Unauthenticated as i32, 401));
        assert_eq!(header(&headers, "signature-error"), Some("error=invalid_signature"));
        let (_, status, _, _) = denied(&check(deployment.grpc, check_request(&parts, &[b'x'; 4096])).await);
        assert_eq!(status, 413);
    })
    .await;
}

/// Web Bot Auth through `ext_authz`: see the bot scenarios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_are_admitted_on_bot_routes_only_through_ext_authz() {
    bounded(async {
        let deployment = Deployment::start().await;
        let directory = BotDirectory::spawn([42; 32]).await.unwrap();
        deployment.front().bot_scenarios(&directory).await;
    })
    .await;
}
