//! The demo's resource, written as a resource-server author would write it with this
//! crate's public API: nothing here knows about the demo beyond its identifiers.
//!
//! * `GET /data` needs an auth token granting `data.read` **and** `data.write`
//!   ([`AAuth::require_scopes`]); the guard answers the `auth-token` challenge with a
//!   resource token for the configured auth server.
//! * `GET /whoami` needs only a verified signature (pseudonymous `hwk` included).
//! * `GET /crawl` admits verified Web Bot Auth bots only ([`crate::guard::require_bot`]).
//! * `GET /report` is metered ([`AAuth::meter`]): 1000 `USD` at 6 decimals a call, for
//!   an auth token granting `data.read` and a budget; its resource tokens offer 1 USD.
//! * The well-known metadata and JWKS come from [`AAuth::well_known_router`].
//! * The layer is outermost, so guards and extractors see what it verified.

use axum::Router;
use axum::extract::{Form, Query};
use axum::response::Html;
use axum::routing::{get, post};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::budget::{BudgetOptions, Meter};
use crate::session::{Session, SessionOptions};
use crate::{AAuth, AuthGrant, ConfigError, Profile, ResourceKey, VerifiedAgent};

/// Builds the resource `resource` trusting `auth_server`, answering in `profile`.
pub(super) fn app(resource: &str, auth_server: &str, profile: Profile) -> Result<(AAuth, Router), ConfigError> {
    let mut builder = AAuth::builder(resource)
        .profile(profile)
        .signing_key(ResourceKey::generate().with_kid("resource-key-1"))
        .auth_server(auth_server)
        .scope("data.read", "Read your data")
        .scope("data.write", "Create and update your data")
        .metadata_name("Important Resource")
        .access_mode("auth-token")
        .budgets(BudgetOptions::new().unit("USD", 6, Some(super::budget::OFFER)));
    // Every server of the demo lives on http://127.0.0.1.
    builder = builder.dangerous().allow_http_loopback();
    // Bots from the open web too: Web Bot Auth signatures, verified as their own kind.
    builder = builder.web_bot_auth(crate::bot::WebBotAuthOptions::new());
    let aauth = builder.build()?;
    let router = Router::new()
        .route(
            "/data",
            get(data).route_layer(aauth.require_scopes(["data.read", "data.write"])),
        )
        .route("/whoami", get(whoami).route_layer(aauth.require_verified_agent()))
        .route("/crawl", get(crawl).route_layer(crate::guard::require_bot()))
        .route(
            "/report",
            get(report).route_layer(aauth.meter("USD", 6, super::budget::PRICE).scopes(["data.read"])),
        )
        .merge(aauth.well_known_router())
        .layer(aauth.layer());
    Ok((aauth, router))
}

/// Who called, as the original demo's resource reports it: the agent identifier when the
/// request names one (a `jwks_uri` signer, a demo-generation `agent` claim), else the key
/// thumbprint.
fn caller(agent: &VerifiedAgent, method: &Method) -> serde_json::Map<String, Value> {
    let mut body = serde_json::Map::new();
    body.insert("scheme".into(), agent.scheme.as_str().into());
    body.insert("token_type".into(), json!(agent.token_kind.map(|k| k.typ())));
    body.insert("method".into(), method.as_str().into());
    body.insert(
        "agent".into(),
        agent.agent.as_ref().map_or(&*agent.key_thumbprint, |a| a.id()).into(),
    );
    body.insert("agent_jkt".into(), (*agent.key_thumbprint).into());
    body
}

async fn data(method: Method, agent: VerifiedAgent, grant: AuthGrant) -> axum::Json<Value> {
    let mut body = serde_json::Map::new();
    body.insert("message".into(), "Access granted".into());
    body.insert("data".into(), "This is protected data (authorized)".into());
    body.extend(caller(&agent, &method));
    body.insert("sub".into(), json!(grant.subject));
    body.insert("scope".into(), grant.scopes.to_string().into());
    axum::Json(Value::Object(body))
}

/// A bot is named by its key directory's origin and key thumbprint, never as an agent.
async fn crawl(bot: crate::bot::VerifiedBot) -> axum::Json<Value> {
    axum::Json(json!({
        "bot": { "origin": bot.directory_origin(), "thumbprint": bot.thumbprint() },
    }))
}

async fn whoami(method: Method, agent: VerifiedAgent) -> axum::Json<Value> {
    let mut body = caller(&agent, &method);
    body.insert("message".into(), "Signature verified".into());
    axum::Json(Value::Object(body))
}

/// A metered report: what the budget granted, and a line of data.
async fn report(meter: Meter) -> axum::Json<Value> {
    axum::Json(json!({
        "report": "quarterly figures",
        "granted": { "amount": meter.granted_amount(), "unit": meter.unit(), "decimals": meter.decimals() },
    }))
}

/// The interaction page's path (the crate's default).
pub(super) const INTERACTION_PATH: &str = "/aauth/interaction";
/// Where the revocation endpoint is mounted.
pub(super) const REVOKE_PATH: &str = "/aauth/revoke";
/// The account the demo's person holds at the resource.
pub(super) const ACCOUNT: &str = "testuser";

/// Builds the resource of the resource-managed run: `GET /notes` needs a session for
/// `notes.read` ([`AAuth::require_session`]), and an auth token from `auth_server`
/// granting `notes.read` serves too; `POST /logout` ends the presented session; the
/// resource's own consent page at [`INTERACTION_PATH`]; the revocation endpoint at
/// [`REVOKE_PATH`]; the pending URLs, metadata and JWKS.
/// A pending interaction lives as long as the run's pending requests (60 s at least).
pub(super) fn session_app(
    resource: &str,
    auth_server: &str,
    options: &super::DemoOptions,
) -> Result<(AAuth, Router), ConfigError> {
    let lifetime = options.pending_lifetime.clamp(60, 3600);
    let builder = AAuth::builder(resource)
        .signing_key(ResourceKey::generate().with_kid("resource-key-1"))
        .auth_server(auth_server)
        .scope("notes.read", "Read your notes")
        .metadata_name("Notes Resource")
        .sessions(SessionOptions::new().retry_after(1).interaction_lifetime(lifetime))
        .revocation_endpoint(REVOKE_PATH)
        .dangerous()
        .allow_http_loopback();
    let aauth = builder.build()?;
    let router = Router::new()
        .route("/notes", get(notes).route_layer(aauth.require_session(["notes.read"])))
        .route(
            "/logout",
            post(logout).route_layer(aauth.require_session(Vec::<String>::new())),
        )
        .merge(consent_page(&aauth))
        .merge(aauth.pending_router())
        .merge(aauth.well_known_router())
        .layer(aauth.layer());
    Ok((aauth, router))
}

/// Whom `/notes` serves: the session's account, or the auth token's subject.
async fn notes(agent: VerifiedAgent, session: Option<Session>, grant: Option<AuthGrant>) -> axum::Json<Value> {
    let (served_by, account, scopes) = match (&session, &grant) {
        (Some(session), _) => ("session", json!(session.account), json!(session.scopes.join(" "))),
        (None, Some(grant)) => ("auth token", json!(grant.subject), json!(grant.scopes.to_string())),
        (None, None) => ("nothing", Value::Null, Value::Null),
    };
    axum::Json(json!({
        "notes": ["buy milk", "call the dentist"],
        "served_by": served_by,
        "account": account,
        "scope": scopes,
        "agent": agent.agent.as_ref().map_or(&*agent.key_thumbprint, |a| a.id()),
    }))
}

/// The agent logs out: the presented session ends.
async fn logout(session: Session) -> Result<axum::Json<Value>, crate::Error> {
    session.revoke().await?;
    Ok(axum::Json(json!({ "logged_out": session.account })))
}

#[derive(serde::Deserialize)]
struct Code {
    code: String,
}

#[derive(serde::Deserialize)]
struct Decision {
    code: String,
    decision: String,
}

/// The resource's own consent page: `GET ?code=` shows the agent and the scopes with
/// Approve and Deny; the form posts back to the same path (the one path a person's
/// unsigned browser may open). The demo's resource has no login: the person is
/// [`ACCOUNT`].
fn consent_page(aauth: &AAuth) -> Router {
    let show = aauth.clone();
    let decide = aauth.clone();
    Router::new().route(
        INTERACTION_PATH,
        get(move |Query(Code { code }): Query<Code>| {
            let aauth = show.clone();
            async move {
                let Some(found) = aauth.interaction(&code).await else {
                    return (StatusCode::NOT_FOUND, Html(page("Unknown or expired code", "")));
                };
                let agent = found.agent.unwrap_or_else(|| format!("key {}", found.key_thumbprint));
                let body = format!(
                    "<p>Signed in as <b>{ACCOUNT}</b>.</p>\
                     <p>The agent <code id=\"agent\">{}</code> asks for:</p>\
                     <ul id=\"scopes\">{}</ul>\
                     <form method=\"post\" action=\"{INTERACTION_PATH}\">\
                     <input type=\"hidden\" name=\"code\" value=\"{}\">\
                     <button name=\"decision\" value=\"approve\">Approve</button> \
                     <button name=\"decision\" value=\"deny\">Deny</button></form>",
                    escape(&agent),
                    found
                        .scopes
                        .iter()
                        .map(|s| format!("<li>{}</li>", escape(s)))
                        .collect::<String>(),
                    escape(&found.code),
                );
                (
                    StatusCode::OK,
                    Html(page("Notes Resource: an agent asks for access", &body)),
                )
            }
        })
        .post(move |Form(Decision { code, decision }): Form<Decision>| {
            let aauth = decide.clone();
            async move {
                let found = aauth.interaction(&code).await;
                let done = match (found, decision.as_str()) {
                    (Some(found), "approve") => found.approve(ACCOUNT).await.then_some("Approved"),
                    (Some(found), "deny") => found.deny().await.then_some("Denied"),
                    _ => None,
                };
                match done {
                    Some(done) => (StatusCode::OK, Html(page(done, "<p>You may close this page.</p>"))),
                    None => (StatusCode::NOT_FOUND, Html(page("Unknown or expired code", ""))),
                }
            }
        }),
    )
}

fn page(title: &str, body: &str) -> String {
    format!("<!doctype html><html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>")
}

/// HTML text escaping for what the store hands the page.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::testing::{KeySource, SignOptions, TestAgent};

    const RESOURCE: &str = "http://127.0.0.1:1";

    fn app() -> Router {
        session_app(RESOURCE, "http://127.0.0.1:2", &super::super::DemoOptions::default())
            .expect("the demo's resource builds")
            .1
    }

    async fn send(app: &Router, request: Request<Body>) -> (StatusCode, String) {
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Starts an interaction for `/notes` as an `hwk` agent; its code.
    async fn start(app: &Router) -> String {
        let mut request = Request::get(format!("{RESOURCE}/notes"))
            .header("aauth-capabilities", "interaction")
            .body(Body::empty())
            .unwrap();
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        TestAgent::generate().sign_with(&mut request, &KeySource::Hwk, now, &SignOptions::default());
        let response = app.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let requirement = response.headers()["aauth-requirement"].to_str().unwrap();
        let code = requirement.split("code=\"").nth(1).and_then(|c| c.split('"').next());
        code.expect("a code").to_owned()
    }

    fn decide(code: &str, decision: &str) -> Request<Body> {
        Request::post(format!("{RESOURCE}{INTERACTION_PATH}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("code={code}&decision={decision}")))
            .unwrap()
    }

    fn page(code: &str) -> Request<Body> {
        Request::get(format!("{RESOURCE}{INTERACTION_PATH}?code={code}"))
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn the_consent_page_shows_the_scopes_with_both_buttons_to_an_unsigned_browser() {
        let app = app();
        let code = start(&app).await;
        let (status, html) = send(&app, page(&code)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("<li>notes.read</li>"), "{html}");
        assert!(html.contains("value=\"approve\"") && html.contains("value=\"deny\""));
        assert!(html.contains(&format!("value=\"{code}\"")));
    }

    #[tokio::test]
    async fn an_unknown_code_finds_no_page_and_decides_nothing() {
        let app = app();
        for request in [page("ZZZZZ-ZZZZZ"), decide("ZZZZZ-ZZZZZ", "approve")] {
            let (status, html) = send(&app, request).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert!(html.contains("Unknown or expired code"));
        }
    }

    #[tokio::test]
    async fn a_decision_other_than_approve_or_deny_decides_nothing() {
        let app = app();
        let code = start(&app).await;
        let (status, _) = send(&app, decide(&code, "maybe")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, html) = send(&app, decide(&code, "approve")).await;
        assert_eq!((status, html.contains("Approved")), (StatusCode::OK, true));
    }

    #[tokio::test]
    async fn a_code_is_decided_once() {
        let app = app();
        let code = start(&app).await;
        assert_eq!(send(&app, decide(&code, "deny")).await.0, StatusCode::OK);
        assert_eq!(send(&app, decide(&code, "approve")).await.0, StatusCode::NOT_FOUND);
        assert_eq!(send(&app, page(&code)).await.0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
