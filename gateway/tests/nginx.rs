//! A real `nginx` with `auth_request` pointing at the gateway (`auth-request` mode) in
//! front of a loopback upstream: the seed flow and the refusals through nginx, configured
//! as docs/gateway.md shows. Without `nginx` on the machine the test is reported ignored
//! (`build.rs` sets `skip_nginx`), except under `CI=true`, where it fails.

mod support;

use http::{Method, Request, StatusCode};
use serde_json::json;
use support::nginx::Nginx;
use support::scenarios::Front;
use support::{Gateway, Parties, TempDir, Upstream, bounded, config, free_port, key_directory, send};
use tower_aauth::testing::BotDirectory;

struct Deployment {
    parties: Parties,
    upstream: Upstream,
    nginx: Nginx,
    gateway: Gateway,
    _keys: TempDir,
}

impl Deployment {
    async fn start() -> Deployment {
        let parties = Parties::start().await;
        let upstream = Upstream::start().await;
        let keys = key_directory();
        let nginx_port = free_port();
        let gateway_port = free_port();
        let text = config(
            "auth-request",
            &format!("http://127.0.0.1:{nginx_port}"),
            gateway_port,
            keys.path(),
            &parties.auth_origin,
            // The single-threaded runtime serves this deployment.
            "workers = 1",
        );
        let gateway = Gateway::start(&text, gateway_port);
        let nginx = Nginx::start(nginx_port, gateway_port, upstream.port);
        Deployment {
            parties,
            upstream,
            nginx,
            gateway,
            _keys: keys,
        }
    }

    fn front(&self) -> Front<'_> {
        Front {
            origin: self.nginx.origin(),
            upstream: &self.upstream,
            parties: &self.parties,
            strips_every_prefixed: false,
            problem_codes: false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_nginx, ignore = "nginx not found on PATH (apt-get install nginx)")]
async fn the_seed_flow_and_every_refusal_behave_through_nginx_auth_request() {
    bounded(async {
        let deployment = Deployment::start().await;
        let front = deployment.front();
        // No route: the gateway's 404 reaches nginx as 403 (nginx honours only 2xx, 401, 403).
        front.seed_flow_and_every_refusal(StatusCode::FORBIDDEN).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_nginx, ignore = "nginx not found on PATH (apt-get install nginx)")]
async fn a_digest_covered_body_cannot_be_checked_through_auth_request_and_is_refused() {
    bounded(async {
        let deployment = Deployment::start().await;
        let body = json!({"item": "widget"});
        let exchange = deployment
            .parties
            .client()
            .request(
                Method::POST,
                &format!("{}/upload", deployment.nginx.origin()),
                Some(&body),
            )
            .await
            .unwrap();
        assert_eq!(exchange.status, StatusCode::UNAUTHORIZED);
        assert_eq!(exchange.signature_error(), Some("error=invalid_signature"));
        assert_eq!(deployment.upstream.hits(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_nginx, ignore = "nginx not found on PATH (apt-get install nginx)")]
async fn the_auth_request_endpoint_refuses_a_subrequest_without_the_original_request() {
    bounded(async {
        let deployment = Deployment::start().await;
        let request = Request::builder()
            .uri(format!("{}/aauth/auth-request", deployment.gateway.origin()))
            .header("x-original-method", "GET")
            .body(Vec::new())
            .unwrap();
        let (status, headers, body) = send(request).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers["x-aauth-status"], "400");
        assert_eq!(body["error"], "invalid_request");
    })
    .await;
}

/// Web Bot Auth through nginx: see the bot scenarios (403 codes are nginx's fixed body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(skip_nginx, ignore = "nginx not found on PATH (apt-get install nginx)")]
async fn bots_are_admitted_on_bot_routes_only_through_nginx_auth_request() {
    bounded(async {
        let deployment = Deployment::start().await;
        let directory = BotDirectory::spawn([42; 32]).await.unwrap();
        deployment.front().bot_scenarios(&directory).await;
    })
    .await;
}
