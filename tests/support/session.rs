//! Resource-managed access under test: an application with session-guarded routes, the
//! pending router and an interaction page of its own, and an agent's side of the
//! exchange (declare `interaction`, poll, present `Authorization: AAuth <token>`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::routing::{get, post};
use http::{Request, Response, StatusCode};
use serde_json::json;
use tower::ServiceExt;
use tower_aauth::session::{Session, SessionOptions};
use tower_aauth::testing::{KeySource, SignOptions, TestAgent};
use tower_aauth::{AAuthBuilder, Clock, engine};

pub use super::app::{App, jwt};
pub use super::fixtures::{AGENT_ID, AP, AS, NOW, PS, RESOURCE, body_json};

pub const PENDING: &str = "https://resource.example/aauth/pending/";
pub const INTERACTION_URL: &str = "https://resource.example/aauth/interaction";

/// A resource with session routes: `/notes` (`data.read`), `/open` (no scope), `/both`
/// (`data.read` + `data.write`), `/logout` (revokes the session), `/account` (the
/// `Session` extractor without a guard), the pending router
/// and an interaction page at `/aauth/interaction` (`GET ?code=` shows what is asked,
/// `POST /aauth/interaction/approve|deny?code=` decides).
pub struct Rig {
    pub app: App,
    pub calls: Arc<AtomicUsize>,
    pub mount_pending: bool,
}

impl Rig {
    /// Four-party posture (an ordinary `auth-token` challenge exists for the scopes).
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    pub fn with(adjust: impl FnOnce(AAuthBuilder) -> AAuthBuilder) -> Self {
        Rig {
            app: App::with(|b| adjust(b.person_server(PS).auth_server(AS))),
            calls: Arc::new(AtomicUsize::new(0)),
            mount_pending: true,
        }
    }

    pub fn with_options(options: SessionOptions) -> Self {
        Self::with(|b| b.sessions(options))
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn now(&self) -> u64 {
        self.app.clock.now()
    }

    pub fn router(&self) -> Router {
        let a = &self.app.aauth;
        let calls = self.calls.clone();
        let handler = move |session: Option<Session>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({
                    "account": session.as_ref().map(|s| s.account.clone()),
                    "agent": session.as_ref().and_then(|s| s.agent.clone()),
                    "scopes": session.as_ref().map(|s| s.scopes.clone()),
                }))
            }
        };
        let calls = self.calls.clone();
        let logout = move |session: Session| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                session.revoke().await.unwrap();
                "bye"
            }
        };
        let mut router = Router::new()
            .route(
                "/notes",
                get(handler.clone()).route_layer(a.require_session(["data.read"])),
            )
            .route(
                "/open",
                get(handler.clone()).route_layer(a.require_session(Vec::<String>::new())),
            )
            .route(
                "/both",
                get(handler).route_layer(a.require_session(["data.read", "data.write"])),
            )
            .route(
                "/logout",
                post(logout).route_layer(a.require_session(Vec::<String>::new())),
            )
            // No guard: the extractor alone.
            .route("/account", get(|session: Session| async move { session.account }))
            .merge(interaction_page(a));
        if self.mount_pending {
            router = router.merge(a.pending_router());
        }
        router.layer(a.layer())
    }

    pub async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.router().oneshot(request).await.expect("infallible")
    }

    /// The agent token of `agent` (issued by the trusted agent provider).
    pub fn agent_token_for(&self, agent: &TestAgent, sub: &str) -> KeySource {
        let claims = json!({
            "iss": AP, "dwk": engine::dwk::AGENT, "sub": sub, "jti": format!("agt-{sub}"),
            "cnf": { "jwk": agent.public_jwk().to_json() },
            "iat": NOW, "exp": NOW + 86_400,
        });
        jwt(self.app.ap.sign(engine::typ::AGENT, &claims))
    }

    pub fn agent_token(&self) -> KeySource {
        self.agent_token_for(&self.app.agent, AGENT_ID)
    }

    /// A GET of `path` by `agent`, signed now with `source`, with `capabilities` and
    /// `authorization` (covered when `cover`).
    pub async fn get_as(
        &self,
        agent: &TestAgent,
        source: &KeySource,
        path: &str,
        capabilities: Option<&str>,
        authorization: &[&str],
        cover: bool,
    ) -> Response<Body> {
        let url = if path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{RESOURCE}{path}")
        };
        let mut request = Request::get(url).body(Body::empty()).unwrap();
        if let Some(capabilities) = capabilities {
            request
                .headers_mut()
                .insert("aauth-capabilities", capabilities.parse().unwrap());
        }
        for value in authorization {
            request.headers_mut().append("authorization", value.parse().unwrap());
        }
        let mut options = SignOptions::default();
        if cover {
            options.components.push("authorization".to_owned());
        }
        agent.sign_with(&mut request, source, self.now(), &options);
        self.send(request).await
    }

    /// The app's agent, with its agent token, declaring `interaction`.
    pub async fn request_interaction(&self, path: &str) -> Response<Body> {
        self.get_as(
            &self.app.agent,
            &self.agent_token(),
            path,
            Some("interaction"),
            &[],
            false,
        )
        .await
    }

    /// A poll of `location` by the app's agent.
    pub async fn poll(&self, location: &str) -> Response<Body> {
        self.get_as(&self.app.agent, &self.agent_token(), location, None, &[], false)
            .await
    }

    /// A request presenting `token`, signed by the app's agent covering `authorization`.
    pub async fn with_session(&self, path: &str, token: &str) -> Response<Body> {
        let value = format!("AAuth {token}");
        self.get_as(&self.app.agent, &self.agent_token(), path, None, &[&value], true)
            .await
    }

    /// Runs the exchange for `path` up to the session token: 202, approval of `account`
    /// by the interaction hook, the poll's 200.
    pub async fn session_for(&self, path: &str, account: &str) -> String {
        let started = self.request_interaction(path).await;
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let (location, code) = pending_of(&started);
        assert!(decide(&self.app.aauth, &code, Choice::Approve(account.into())).await);
        self.app.clock.advance(5);
        let approved = self.poll(&location).await;
        assert_eq!(approved.status(), StatusCode::OK);
        access_of(&approved).expect("AAuth-Access on the pending URL's 200")
    }
}

/// The `Location` and the `code` of a `202 requirement=interaction`.
pub fn pending_of(response: &Response<Body>) -> (String, String) {
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let requirement = response.headers()["aauth-requirement"].to_str().unwrap();
    let parsed = sfv::Parser::new(requirement).parse::<sfv::Dictionary>().unwrap();
    let sfv::ListEntry::Item(item) = &parsed["requirement"] else {
        panic!("requirement is an item")
    };
    let code = item
        .params
        .get("code")
        .and_then(|c| c.as_string())
        .map(|c| c.as_str().to_owned())
        .unwrap();
    (location, code)
}

/// The `AAuth-Access` value of a response.
pub fn access_of(response: &Response<Body>) -> Option<String> {
    response
        .headers()
        .get("aauth-access")
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The resource's own interaction page, on the interaction hook: shows the agent and the
/// scopes asked for, with approve and deny buttons.
pub fn interaction_page(aauth: &tower_aauth::AAuth) -> Router {
    #[derive(serde::Deserialize)]
    struct Code {
        code: String,
    }
    let show = aauth.clone();
    let approve = aauth.clone();
    let deny = aauth.clone();
    Router::new()
        .route(
            "/aauth/interaction",
            get(move |Query(Code { code }): Query<Code>| {
                let aauth = show.clone();
                async move {
                    let Some(found) = aauth.interaction(&code).await else {
                        return (StatusCode::NOT_FOUND, axum::response::Html("unknown code".to_owned()));
                    };
                    let agent = found.agent.unwrap_or_else(|| "an unnamed agent".to_owned());
                    let scopes = found.scopes.join(" ");
                    let code = found.code;
                    (
                        StatusCode::OK,
                        axum::response::Html(format!(
                            "<html><body><p id=\"agent\">{agent}</p><p id=\"scopes\">{scopes}</p>\
                             <form method=\"post\" action=\"/aauth/interaction/approve?code={code}\">\
                             <button id=\"approve\">Approve</button></form>\
                             <form method=\"post\" action=\"/aauth/interaction/deny?code={code}\">\
                             <button id=\"deny\">Deny</button></form></body></html>"
                        )),
                    )
                }
            }),
        )
        .route(
            "/aauth/interaction/approve",
            post(move |Query(Code { code }): Query<Code>| {
                let aauth = approve.clone();
                async move {
                    let done = decide(&aauth, &code, Choice::Approve("account-7".into())).await;
                    axum::response::Html(if done {
                        "<p id=\"done\">approved</p>"
                    } else {
                        "<p id=\"done\">not found</p>"
                    })
                }
            }),
        )
        .route(
            "/aauth/interaction/deny",
            post(move |Query(Code { code }): Query<Code>| {
                let aauth = deny.clone();
                async move {
                    let done = decide(&aauth, &code, Choice::Deny).await;
                    axum::response::Html(if done {
                        "<p id=\"done\">denied</p>"
                    } else {
                        "<p id=\"done\">not found</p>"
                    })
                }
            }),
        )
}

/// What the person decides on the interaction page (test-side shorthand).
#[derive(Debug, Clone)]
pub enum Choice {
    Approve(String),
    Deny,
    Expire,
}

/// Looks `code` up through the interaction hook and records `choice`; `false` when the
/// code finds nothing or nothing was decided.
pub async fn decide(aauth: &tower_aauth::AAuth, code: &str, choice: Choice) -> bool {
    let Some(interaction) = aauth.interaction(code).await else {
        return false;
    };
    match choice {
        Choice::Approve(account) => interaction.approve(account).await,
        Choice::Deny => interaction.deny().await,
        Choice::Expire => interaction.expire().await,
    }
}
