//! Web Bot Auth's world: the in-process [`App`] with Web Bot Auth enabled, a key directory
//! on loopback, its signer, a fetcher that counts directory fetches, and one route per
//! guard and extractor of the crate, each counting its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::routing::get as route;
use axum::{Json, Router};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use tower_aauth::bot::{VerifiedBot, WebBotAuthOptions};
use tower_aauth::discovery::{Fetch, FetchError, FetchPolicy, FetchedDocument, ReqwestFetch};
use tower_aauth::guard::{Decision, Requirement, require_bot, require_bot_from};
use tower_aauth::testing::{BotDirectory, BotSignOptions, BotSigner};
use tower_aauth::{AAuthBuilder, AuthGrant, BoxFuture, VerifiedAgent};

pub use super::app::App;
pub use super::fixtures::{NOW, RESOURCE, get};

/// The seed of the directory's key.
pub const BOT_SEED: [u8; 32] = [42; 32];
/// The origin `require_bot_from` lists besides the test directory's.
pub const LISTED_ORIGIN: &str = "https://bots.example";

/// A fetcher over the loopback-admitting guarded fetcher that counts every fetch.
#[derive(Clone)]
pub struct CountingFetch {
    inner: Arc<ReqwestFetch>,
    pub count: Arc<AtomicUsize>,
}

impl CountingFetch {
    pub fn new(timeout: Duration) -> Self {
        let mut policy = FetchPolicy::default();
        policy.allow_http_loopback = true;
        policy.timeout = timeout;
        CountingFetch {
            inner: Arc::new(ReqwestFetch::with_policy(policy)),
            count: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Fetch for CountingFetch {
    fn get<'a>(&'a self, url: &'a str, max_bytes: usize) -> BoxFuture<'a, Result<FetchedDocument, FetchError>> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.get(url, max_bytes)
    }
}

pub struct BotWorld {
    pub app: App,
    pub directory: BotDirectory,
    pub signer: BotSigner,
    pub fetches: Arc<AtomicUsize>,
}

impl BotWorld {
    /// Web Bot Auth enabled with default options, a 1 s fetch timeout.
    pub async fn new() -> Self {
        Self::with(WebBotAuthOptions::new(), |b| b).await
    }

    pub async fn with(options: WebBotAuthOptions, adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        let fetch = CountingFetch::new(Duration::from_secs(1));
        let fetches = fetch.count.clone();
        let app = App::with(move |b| {
            adjust(
                b.person_server(super::fixtures::PS)
                    .dangerous()
                    .allow_http_loopback()
                    .fetcher(fetch)
                    .web_bot_auth(options),
            )
        });
        let directory = BotDirectory::spawn_with_clock(BOT_SEED, Arc::new(app.clock.clone()))
            .await
            .expect("a loopback port");
        let signer = directory.signer();
        BotWorld {
            app,
            directory,
            signer,
            fetches,
        }
    }

    /// One route per guard and extractor (see the module docs), behind the layer.
    pub fn router(&self) -> Router {
        let a = &self.app.aauth;
        let h = || self.app.handler();
        let calls = self.app.calls.clone();
        let count = move || {
            calls.fetch_add(1, Ordering::SeqCst);
        };
        let deny = Requirement::rule(|cx| match cx.verified {
            Some(_) => Decision::Refuse(tower_aauth::Error::forbidden("policy_denied", "refused")),
            None => Decision::NeedAgent,
        });
        let (c1, c2, c3, c4) = (count.clone(), count.clone(), count.clone(), count);
        Router::new()
            .route("/agent", route(h()).route_layer(a.require_agent_token()))
            .route("/verified", route(h()).route_layer(a.require_verified_agent()))
            .route("/person", route(h()).route_layer(a.require_person()))
            .route("/data", route(h()).route_layer(a.require_scopes(["data.read"])))
            .route("/policy", route(h()).route_layer(a.require(deny)))
            .route(
                "/detail",
                route(h()).route_layer(a.require_detail("trade", |_: &Value, _: &http::request::Parts| true)),
            )
            .route(
                "/single",
                route(h())
                    .route_layer(a.single_use())
                    .route_layer(a.require_scopes(["data.read"])),
            )
            .route("/bot", route(h()).post(h()).route_layer(require_bot()))
            .route("/bot-from", route(h()).route_layer(require_bot_from([LISTED_ORIGIN])))
            .route(
                "/bot-name",
                route(move |bot: VerifiedBot| {
                    c1();
                    std::future::ready(Json(json!({
                        "origin": bot.directory_origin(),
                        "thumbprint": bot.thumbprint(),
                    })))
                }),
            )
            .route(
                "/agent-name",
                route(move |_: VerifiedAgent| {
                    c2();
                    std::future::ready("agent")
                }),
            )
            .route(
                "/grant",
                route(move |_: AuthGrant| {
                    c3();
                    std::future::ready("grant")
                }),
            )
            .route(
                "/open",
                route(move |bot: Option<VerifiedBot>, agent: Option<VerifiedAgent>| {
                    c4();
                    std::future::ready(Json(json!({
                        "bot": bot.map(|b| b.directory_origin().to_owned()),
                        "agent": agent.is_some(),
                    })))
                }),
            )
            .layer(a.layer())
    }

    /// A `GET` of `path` signed by the directory's signer.
    pub fn signed(&self, path: &str) -> Request<Body> {
        let mut request = get(path);
        self.signer.sign(&mut request, NOW);
        request
    }

    /// A `POST` of `body` to `path` signed by the directory's signer with `adjust`
    /// applied to the default options.
    pub fn signed_post(
        &self,
        path: &str,
        body: &'static [u8],
        adjust: impl FnOnce(&mut BotSignOptions),
    ) -> Request<Body> {
        let mut request = Request::post(format!("{RESOURCE}{path}"))
            .body(Body::from(body))
            .unwrap();
        let mut options = BotSignOptions::default();
        adjust(&mut options);
        self.signer.sign_with(&mut request, NOW, &options);
        request
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.expect("infallible")
    }

    pub fn calls(&self) -> usize {
        self.app.calls()
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The response body as JSON.
pub async fn json_of(response: Response<Body>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Asserts a `401` with exactly one `Signature-Error: error=<code>` (for `invalid_input`
/// naming what a bot must cover), `no-store`, a
/// problem body with that code, and no handler call.
pub async fn assert_bot_refused(world: &BotWorld, response: Response<Body>, code: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "expected 401 {code}");
    let values: Vec<_> = response.headers().get_all("signature-error").iter().collect();
    assert_eq!(values.len(), 1, "exactly one Signature-Error");
    if code == "invalid_input" {
        assert_eq!(
            values[0],
            r#"error=invalid_input, required_input=("@authority" "signature-agent")"#
        );
    } else {
        assert_eq!(values[0], &format!("error={code}"));
    }
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("aauth-requirement").is_none());
    assert_eq!(json_of(response).await["error"], code);
    assert_eq!(world.calls(), 0, "the handler must not run");
}
