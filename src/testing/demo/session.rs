//! The resource-managed run of the demo (`cargo run --example demo -- --mode
//! resource-managed`): two parties, the agent and the resource, with no auth server in
//! the loop ([AAuth draft -11, "Resource-Managed Access"][draft-11]). Every step is
//! printed and checked.
//!
//! 1. The agent asks for `/notes` declaring `AAuth-Capabilities: interaction`; the
//!    resource answers `202` with `requirement=interaction` (its own page's URL and a
//!    code) and a pending `Location`.
//! 2. The person opens the resource's own consent page (an unsigned browser request)
//!    and presses Approve or Deny; the agent polls the pending URL meanwhile.
//! 3. Approved, the poll's `200` carries `AAuth-Access: <session token>`; the agent
//!    presents it as `Authorization: AAuth <token>` under a signature covering
//!    `authorization` and is served as the person's account. The token alone, under a
//!    signature not covering it, is refused.
//! 4. Revocation through the endpoint: it names a token by `(iss, jti)` of a person or
//!    access server, and a session token, the resource's own opaque credential, has
//!    neither. So the run shows the endpoint on what it can revoke, an auth token the
//!    agent presents on the same route (the auth server's signed `POST`; the next
//!    request with that token is `401 revoked_jwt`; the session is untouched), and the
//!    session ending by the resource's own means (`Session::revoke` behind `POST
//!    /logout`; the next request with it is `401 invalid_session`).
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use tokio::sync::mpsc;

use super::report::{self, DemoReport, signed_as};
use super::resource::{ACCOUNT, INTERACTION_PATH, REVOKE_PATH};
use super::{Demo, PersonAction, Printer, play_person};
use crate::names;
use crate::profile::Generation;
use crate::testing::flow::{auth_token_challenge, interaction, unverified_claims};
use crate::testing::{Exchange, FlowEvent, FlowStep, KeySource, SignOptions};

/// The scope `/notes` requires.
pub(crate) const NOTES_SCOPE: &str = "notes.read";
/// How long the person reads the consent page before deciding: the agent's polls
/// meanwhile answer `202 interacting`.
const READING: Duration = Duration::from_millis(2500);

/// The agent's side of the run: signed requests with the headers of resource-managed
/// access, which the flow-following client does not send.
struct Agent<'a> {
    demo: &'a Demo,
    http: reqwest::Client,
    print: Printer,
}

/// What the agent adds to a request.
#[derive(Default)]
struct Extra<'a> {
    /// `AAuth-Capabilities`.
    capabilities: Option<&'a str>,
    /// The session token, sent as `Authorization: AAuth <token>`.
    session: Option<&'a str>,
    /// Whether the signature covers `authorization`.
    cover_authorization: bool,
}

fn now() -> u64 {
    crate::clock::Clock::now(&crate::clock::SystemClock)
}

impl Agent<'_> {
    /// Sends one request signed by the agent's key under `jwks_uri`, prints it under
    /// `title`, and returns it; `None` (printed) when the transport failed.
    async fn send(&self, title: &str, step: FlowStep, method: Method, url: &str, extra: Extra<'_>) -> Option<Exchange> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url)
            .body(Bytes::new())
            .ok()?;
        let headers = request.headers_mut();
        if let Some(capabilities) = extra.capabilities {
            headers.insert("aauth-capabilities", HeaderValue::from_str(capabilities).ok()?);
        }
        if let Some(token) = extra.session {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&format!("AAuth {token}")).ok()?,
            );
        }
        let mut options = SignOptions::default();
        if extra.cover_authorization {
            options.components.push("authorization".to_owned());
        }
        self.demo
            .agent
            .sign_with(&mut request, &self.demo.key_source(), now(), &options);
        let request_headers = request.headers().clone();
        let exchange = self.execute(step, request, request_headers).await?;
        (self.print)(&report::describe_titled(title, &exchange, Generation::Draft11));
        Some(exchange)
    }

    async fn execute(
        &self,
        step: FlowStep,
        request: Request<Bytes>,
        request_headers: http::HeaderMap,
    ) -> Option<Exchange> {
        let (method, url, request_body) = (
            request.method().clone(),
            request.uri().to_string(),
            request.body().clone(),
        );
        let sent = async {
            let response = self.http.execute(reqwest::Request::try_from(request)?).await?;
            let (status, headers) = (response.status(), response.headers().clone());
            Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
        };
        match sent.await {
            Ok((status, headers, body)) => Some(Exchange {
                step,
                method,
                url,
                request_headers,
                request_body,
                status,
                headers,
                body,
            }),
            Err(error) => {
                (self.print)(&format!("[agent] {method} {url} failed: {error}\n"));
                None
            }
        }
    }

    /// Polls `pending` each `Retry-After` until an answer other than `202` (or `429`),
    /// for at most `budget`; every poll in order.
    async fn poll(&self, pending: &str, budget: Duration) -> Vec<Exchange> {
        let deadline = tokio::time::Instant::now() + budget;
        let mut polls: Vec<Exchange> = Vec::new();
        let mut wait = 1;
        loop {
            (self.print)(&format!("[agent] waits {wait} s (Retry-After) before polling\n"));
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let Some(poll) = self
                .send(
                    "AGENT POLLS the resource's pending URL",
                    FlowStep::Poll,
                    Method::GET,
                    pending,
                    Extra::default(),
                )
                .await
            else {
                return polls;
            };
            let waiting = matches!(poll.status, StatusCode::ACCEPTED | StatusCode::TOO_MANY_REQUESTS);
            wait = poll
                .header(header::RETRY_AFTER.as_str())
                .and_then(|r| r.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 60);
            polls.push(poll);
            if !waiting || tokio::time::Instant::now() >= deadline {
                return polls;
            }
        }
    }
}

/// What the person saw and did on the resource's consent page.
#[derive(Default)]
struct PersonSaw {
    page: Option<(StatusCode, String)>,
    decided: Option<StatusCode>,
}

/// The person: a browser that opens the resource's consent page the agent showed and
/// presses a button.
async fn play(action: PersonAction, page_url: String, print: Printer) -> PersonSaw {
    let mut saw = PersonSaw::default();
    let decision = match action {
        PersonAction::Approve => "approve",
        PersonAction::Deny => "deny",
        PersonAction::Ignore => {
            print("[person] does not answer: the pending interaction will expire\n");
            return saw;
        }
        PersonAction::Interactive => {
            print(&format!(
                "[person] open this URL in a browser and press Approve (or Deny):\n         {page_url}\n"
            ));
            return saw;
        }
    };
    let browser = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
    let page = match browser.get(&page_url).send().await {
        Ok(page) => page,
        Err(error) => {
            print(&format!("[person] cannot open the consent page: {error}\n"));
            return saw;
        }
    };
    let status = page.status();
    let html = page.text().await.unwrap_or_default();
    print(&format!(
        "[person] GET {page_url} -> {status} (the resource's own consent page: the agent, the scopes, Approve / Deny)\n"
    ));
    let code = page_url.split("code=").nth(1).unwrap_or_default().to_owned();
    saw.page = Some((status, html));
    tokio::time::sleep(READING).await;
    let action_url = page_url.split('?').next().unwrap_or(&page_url).to_owned();
    let form = format!("code={code}&decision={decision}");
    match browser
        .post(&action_url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
    {
        Ok(answer) => {
            print(&format!(
                "[person] POST {action_url} decision={decision} -> {}\n",
                answer.status()
            ));
            saw.decided = Some(answer.status());
        }
        Err(error) => print(&format!("[person] cannot submit the decision: {error}\n")),
    }
    saw
}

fn json_text(exchange: Option<&Exchange>, name: &str) -> Option<String> {
    exchange?.json()?.get(name)?.as_str().map(str::to_owned)
}

fn served_by(exchange: Option<&Exchange>, by: &str, account: Option<&str>, agent: &str) -> bool {
    exchange.is_some_and(|e| e.status == StatusCode::OK)
        && json_text(exchange, "served_by").as_deref() == Some(by)
        && account.is_none_or(|a| json_text(exchange, "account").as_deref() == Some(a))
        && json_text(exchange, "scope").as_deref() == Some(NOTES_SCOPE)
        && json_text(exchange, "agent").as_deref() == Some(agent)
}

fn problem_code(exchange: Option<&Exchange>, status: StatusCode, code: &str) -> bool {
    exchange.is_some_and(|e| e.status == status) && json_text(exchange, "error").as_deref() == Some(code)
}

fn covers(exchange: &Exchange, component: &str) -> bool {
    exchange
        .request_headers
        .get(names::header::SIGNATURE_INPUT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|input| input.contains(&format!("\"{component}\"")))
}

/// Runs the resource-managed flow against a started demo and checks it.
pub(super) async fn run(demo: &Demo, person: PersonAction, max_polling: Duration, print: Printer) -> DemoReport {
    let mut report = DemoReport::default();
    let agent = Agent {
        demo,
        http: reqwest::Client::builder().no_proxy().build().unwrap_or_default(),
        print: print.clone(),
    };
    let notes = format!("{}/notes", demo.resource);

    print("\n--- step 1: the agent asks for /notes and declares it can send a person to an interaction\n");
    let asked = agent
        .send(
            "AGENT REQUEST to the resource, with AAuth-Capabilities: interaction",
            FlowStep::Resource,
            Method::GET,
            &notes,
            Extra {
                capabilities: Some("interaction"),
                ..Extra::default()
            },
        )
        .await;
    let Some(started) = check_started(&mut report, demo, asked.as_ref()) else {
        print(&report.to_string());
        return report;
    };
    let (page_url, pending) = started;

    print("\n--- step 2: the person decides on the resource's own consent page; the agent polls\n");
    let player = tokio::spawn(play(person, page_url, print.clone()));
    let polls = agent.poll(&pending, max_polling).await;
    let saw = player.await.unwrap_or_default();
    let Some(token) = check_decision(&mut report, demo, person, &saw, &polls) else {
        print(&report.to_string());
        return report;
    };

    print("\n--- step 3: the agent presents the session token, under a signature covering it\n");
    let with_session = |title: &'static str| {
        agent.send(
            title,
            FlowStep::Retry,
            Method::GET,
            &notes,
            Extra {
                session: Some(&token),
                cover_authorization: true,
                ..Extra::default()
            },
        )
    };
    let served = with_session("AGENT REQUEST with Authorization: AAuth <session token>").await;
    report.expect(
        served
            .as_ref()
            .is_some_and(|e| covers(e, "authorization") && signed_as(e, names::scheme::JWKS_URI, Generation::Draft11)),
        "the agent sent Authorization: AAuth <token>, its signature (jwks_uri) covering authorization",
    );
    report.expect(
        served_by(served.as_ref(), "session", Some(ACCOUNT), &demo.agent_id),
        format!(
            "the resource answered 200 as the session's account ({ACCOUNT}), scope {NOTES_SCOPE}, naming the agent"
        ),
    );
    let bare = agent
        .send(
            "AGENT REQUEST with the session token, the signature NOT covering authorization",
            FlowStep::Retry,
            Method::GET,
            &notes,
            Extra {
                session: Some(&token),
                ..Extra::default()
            },
        )
        .await;
    report.expect(
        bare.as_ref().is_some_and(|e| {
            e.status == StatusCode::UNAUTHORIZED
                && e.signature_error().is_some_and(|s| s.contains("error=invalid_input"))
                && e.signature_error().is_some_and(|s| s.contains("authorization"))
        }),
        "the token under a signature not covering authorization: 401 Signature-Error: error=invalid_input naming authorization (no bearer token)",
    );

    print(
        "\n--- step 4: the revocation endpoint\n\
         The endpoint revokes a token by (iss, jti), at the word of the person or access server\n\
         that issued it. A session token is the resource's own opaque credential: no issuer,\n\
         no jti, nothing the endpoint can name. So the endpoint is shown on what it revokes,\n\
         an auth token the agent presents on the same route, and the session ends in step 5.\n",
    );
    endpoint_revokes_an_auth_token(&mut report, demo, &agent, &notes, print.clone()).await;
    let still = with_session("AGENT REQUEST with the session token again").await;
    report.expect(
        served_by(still.as_ref(), "session", Some(ACCOUNT), &demo.agent_id),
        "the auth token's revocation leaves the session alone: the session is still served",
    );

    print("\n--- step 5: the agent logs out: the resource ends the session (Session::revoke)\n");
    let logout = agent
        .send(
            "AGENT REQUEST POST /logout with the session token",
            FlowStep::Retry,
            Method::POST,
            &format!("{}/logout", demo.resource),
            Extra {
                session: Some(&token),
                cover_authorization: true,
                ..Extra::default()
            },
        )
        .await;
    report.expect(
        logout.as_ref().is_some_and(|e| e.status == StatusCode::OK)
            && json_text(logout.as_ref(), "logged_out").as_deref() == Some(ACCOUNT),
        "POST /logout with the session answered 200: the session is revoked",
    );
    let refused = with_session("AGENT REQUEST with the revoked session token").await;
    report.expect(
        problem_code(refused.as_ref(), StatusCode::UNAUTHORIZED, "invalid_session")
            && refused
                .as_ref()
                .is_some_and(|e| e.header(header::CACHE_CONTROL.as_str()) == Some("no-store")),
        "the next request with the revoked session is refused: 401 invalid_session",
    );
    print(&report.to_string());
    report
}

/// Step 1's checks: the `202` with `requirement=interaction`. The page URL with its
/// code and the pending URL, when the answer has them.
fn check_started(report: &mut DemoReport, demo: &Demo, asked: Option<&Exchange>) -> Option<(String, String)> {
    report.expect(
        asked.is_some_and(|e| {
            signed_as(e, names::scheme::JWKS_URI, Generation::Draft11)
                && e.request_headers
                    .get("aauth-capabilities")
                    .is_some_and(|v| v == "interaction")
        }),
        "the agent signed its request (jwks_uri) and sent AAuth-Capabilities: interaction",
    );
    report.expect(
        asked.is_some_and(|e| e.status == StatusCode::ACCEPTED),
        "the resource answered 202 Accepted, not an auth-token challenge",
    );
    let page = format!("{}{INTERACTION_PATH}", demo.resource);
    let found = asked.and_then(|e| interaction(e, Generation::Draft11));
    let code = found.as_ref().and_then(|(url, code)| {
        let well_formed = crate::session::interaction::normalize(code).is_some() && code.len() == 11;
        (url.as_deref() == Some(page.as_str()) && well_formed).then(|| code.clone())
    });
    report.expect(
        code.is_some(),
        "AAuth-Requirement: requirement=interaction; url=\"<the resource's own page>\"; code=\"XXXXX-XXXXX\" (Crockford base32)",
    );
    let pending_prefix = format!("{}/aauth/pending/", demo.resource);
    let pending = asked
        .and_then(|e| e.header(header::LOCATION.as_str()))
        .filter(|l| l.starts_with(&pending_prefix))
        .map(str::to_owned);
    report.expect(
        pending.is_some()
            && asked.is_some_and(|e| {
                e.header(header::RETRY_AFTER.as_str()).is_some_and(|r| r.parse::<u64>().is_ok())
                    && e.header(header::CACHE_CONTROL.as_str()) == Some("no-store")
            })
            && json_text(asked, "status").as_deref() == Some("pending"),
        "the 202 carries a pending Location on the resource, Retry-After, Cache-Control: no-store, {\"status\":\"pending\"}",
    );
    Some((format!("{page}?code={}", code?), pending?))
}

/// Step 2's checks: the page, the person's decision, the polls. The session token once
/// approved.
fn check_decision(
    report: &mut DemoReport,
    demo: &Demo,
    person: PersonAction,
    saw: &PersonSaw,
    polls: &[Exchange],
) -> Option<String> {
    if matches!(person, PersonAction::Approve | PersonAction::Deny) {
        let html = saw.page.as_ref().filter(|(s, _)| *s == StatusCode::OK).map(|(_, h)| h);
        report.expect(
            html.is_some_and(|h| {
                h.contains(&demo.agent_id)
                    && h.contains(&format!("<li>{NOTES_SCOPE}</li>"))
                    && h.contains("value=\"approve\"")
                    && h.contains("value=\"deny\"")
            }),
            "the person's unsigned browser opened the consent page: 200 naming the agent and notes.read, with Approve and Deny",
        );
        report.expect(
            saw.decided == Some(StatusCode::OK),
            "the page recorded the person's decision (200)",
        );
    }
    report.expect(!polls.is_empty(), "the agent polled the pending URL");
    report.expect(
        polls.iter().all(|p| {
            signed_as(p, names::scheme::JWKS_URI, Generation::Draft11) && p.status != StatusCode::TOO_MANY_REQUESTS
        }),
        "every poll was signed by the agent's key and honoured Retry-After (no 429 slow_down)",
    );
    let waiting = &polls[..polls.len().saturating_sub(1)];
    report.expect(
        waiting.iter().all(|p| p.status == StatusCode::ACCEPTED),
        "polls before the decision were 202",
    );
    if matches!(person, PersonAction::Approve | PersonAction::Deny) {
        report.expect(
            waiting
                .iter()
                .any(|p| json_text(Some(p), "status").as_deref() == Some("interacting")),
            "once the person opened the page the polls said {\"status\":\"interacting\"}",
        );
    }
    let last = polls.last();
    match person {
        PersonAction::Deny => {
            report.expect(
                problem_code(last, StatusCode::FORBIDDEN, names::poll::DENIED)
                    && last.is_some_and(|e| e.header(crate::session::access::AAUTH_ACCESS.as_str()).is_none()),
                "the denied interaction ended the agent's polling with 403 denied, and no session",
            );
            None
        }
        PersonAction::Ignore => {
            report.expect(
                problem_code(last, StatusCode::REQUEST_TIMEOUT, names::poll::EXPIRED),
                "the unanswered interaction ended the agent's polling with 408 expired",
            );
            None
        }
        PersonAction::Approve | PersonAction::Interactive => {
            let token = last
                .filter(|e| e.status == StatusCode::OK)
                .and_then(|e| e.header(crate::session::access::AAUTH_ACCESS.as_str()))
                .map(str::to_owned);
            report.expect(
                token.as_ref().is_some_and(|t| {
                    t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }) && last.is_some_and(|e| e.header(header::CACHE_CONTROL.as_str()) == Some("no-store")),
                "after approval the pending URL answered 200 with AAuth-Access: <session token> (256 bits) and Cache-Control: no-store",
            );
            token
        }
    }
}

/// Step 4: the agent earns an auth token for `/notes` (the four-party flow, the person
/// approving on the auth server's page), the auth server revokes it through the
/// resource's revocation endpoint, and the next request presenting it is refused.
async fn endpoint_revokes_an_auth_token(
    report: &mut DemoReport,
    demo: &Demo,
    agent: &Agent<'_>,
    notes: &str,
    print: Printer,
) {
    let (interactions, mut inbox) = mpsc::unbounded_channel::<String>();
    let observer_print = print.clone();
    let client = demo
        .client()
        .with_max_polling(Duration::from_secs(60))
        .with_observer(move |event| {
            observer_print(&report::describe(event, Generation::Draft11));
            if let FlowEvent::Interaction { url, .. } = event {
                let _ = interactions.send(url.clone());
            }
        });
    let person_print = print.clone();
    let person = tokio::spawn(async move {
        if let Some(url) = inbox.recv().await {
            let (one, only) = mpsc::unbounded_channel();
            let _ = one.send(url);
            play_person(PersonAction::Approve, only, person_print).await;
        }
    });
    print("[agent] asks for /notes without AAuth-Capabilities: the resource's ordinary auth-token challenge\n");
    let fetched = client.fetch(Method::GET, notes, None).await;
    person.abort();
    let outcome = match fetched {
        Ok(outcome) => outcome,
        Err(error) => {
            print(&format!("[agent] the flow failed: {error}\n"));
            report.expect(false, "the agent earned an auth token for /notes from the auth server");
            return;
        }
    };
    let challenge = outcome
        .transcript
        .first()
        .and_then(|e| auth_token_challenge(e, Generation::Draft11));
    report.expect(
        challenge
            .and_then(|c| unverified_claims(&c.resource_token))
            .is_some_and(|c| c.get("scope").and_then(Value::as_str) == Some(NOTES_SCOPE)),
        "without AAuth-Capabilities the same route answered 401 requirement=auth-token for notes.read",
    );
    let claims = outcome
        .auth_token
        .as_deref()
        .and_then(unverified_claims)
        .unwrap_or_default();
    let jti = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
    let exp = claims.get("exp").and_then(Value::as_u64);
    report.expect(
        served_by(Some(&outcome.response), "auth token", None, &demo.agent_id)
            && claims.get("iss").and_then(Value::as_str) == Some(demo.auth_server.issuer()),
        "with the auth server's auth token the route answered 200 (served by the auth token)",
    );
    let (Some(token), Some(jti), Some(exp)) = (outcome.auth_token, jti, exp) else {
        report.expect(false, "the auth token has a jti and an exp to revoke it by");
        return;
    };

    let url = format!("{}{REVOKE_PATH}", demo.resource);
    let request = demo.auth_server.revocation_request(&url, &jti, exp);
    let request_headers = request.headers().clone();
    let revoked = agent.execute(FlowStep::Token, request, request_headers).await;
    if let Some(revoked) = &revoked {
        print(&report::describe_titled(
            "AUTH SERVER REVOKES the auth token at the resource's revocation endpoint",
            revoked,
            Generation::Draft11,
        ));
    }
    report.expect(
        revoked.as_ref().is_some_and(|e| {
            signed_as(e, names::scheme::JWKS_URI, Generation::Draft11)
                && covers(e, "content-digest")
                && e.request_body.as_ref() == serde_json::json!({ "jti": jti, "exp": exp }).to_string().as_bytes()
        }),
        "the auth server POSTed {\"jti\",\"exp\"} of its token, signed (jwks_uri) over the body",
    );
    report.expect(
        revoked.as_ref().is_some_and(|e| {
            e.status == StatusCode::OK && e.header(header::CACHE_CONTROL.as_str()) == Some("no-store")
        }),
        "the revocation endpoint answered 200",
    );
    let refused = client
        .send(FlowStep::Retry, Method::GET, notes, None, &KeySource::Jwt(token))
        .await
        .ok();
    report.expect(
        refused.as_ref().is_some_and(|e| {
            e.status == StatusCode::UNAUTHORIZED && e.signature_error().is_some_and(|s| s.contains("revoked_jwt"))
        }),
        "the next request with the revoked auth token is refused: 401 Signature-Error: error=revoked_jwt",
    );
}
