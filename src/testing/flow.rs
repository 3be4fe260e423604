//! [`AgentClient`]: a [`TestAgent`] that follows the AAuth flow over real HTTP.
//!
//! 1. Sign the request with the agent's own key source and send it.
//! 2. On `401` with `AAuth-Requirement: requirement=auth-token; resource-token="…"`, read
//!    the resource token's `aud` (unverified: the agent only routes by it; the auth server
//!    verifies it), fetch `{aud}/.well-known/aauth-access.json` and its
//!    `auth_token_endpoint` (the document's `issuer` must equal `aud`).
//! 3. `POST {"resource_token": …}` there, signed, covering `content-digest`.
//! 4. On `202`, report `requirement=interaction` (`url`, `code`) to the observer and poll
//!    `Location` with signed `GET`s, waiting `Retry-After` (default 5 s) between polls and
//!    five more seconds after a `429 slow_down`, until `200 {"auth_token", "expires_in"}`
//!    or a terminal error.
//! 5. Retry the original request with `Signature-Key: sig=jwt;jwt="<auth token>"`; or,
//!    when the resource deferred it (`202` with `Location` and the same `auth-token`
//!    requirement), poll the resource's pending URL with signed `GET`s under the auth
//!    token, as in step 4, until the held request's answer.
//!
//! With [`AgentClient::with_generation`]`(`[`Generation::Legacy`]`)` the client speaks the
//! March 2026 AAuth demo's generation instead: `Signature-Key: sig=(scheme=… …)` and
//! base64url signatures, the `AAuth: require=auth-token; resource-token="…"; auth-server="…"`
//! challenge (the auth server is its `auth-server`), metadata at
//! `{auth-server}/.well-known/aauth-issuer.json` (`token_endpoint`,
//! `interaction_endpoint`), and `AAuth: require=interaction; code="…"` on the `202`, whose
//! URL is the metadata's `interaction_endpoint`.
//!
//! Every exchange is kept in order ([`FlowOutcome::transcript`]) so that a test or the demo
//! can check each step against the protocol, and streamed to an optional observer as it
//! happens.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Map, Value};

use crate::Generation;
use crate::clock::{Clock, SystemClock};
use crate::httpsig::parse_dictionary_strict;
use crate::jose::{b64url_decode, parse_json_object};
use crate::names;
use crate::testing::{KeySource, SignOptions, TestAgent};

/// Which step of the flow an exchange belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowStep {
    /// The first, signed request to the resource.
    Resource,
    /// The auth server's metadata.
    Metadata,
    /// `POST` of the resource token to the auth token endpoint.
    Token,
    /// A signed `GET` of the pending URL.
    Poll,
    /// The request retried with the auth token.
    Retry,
}

/// One request and its response.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The step.
    pub step: FlowStep,
    /// The request method.
    pub method: Method,
    /// The request URL.
    pub url: String,
    /// The request headers, as signed and sent.
    pub request_headers: HeaderMap,
    /// The request body.
    pub request_body: Bytes,
    /// The response status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The response body.
    pub body: Bytes,
}

impl Exchange {
    /// The response body as a JSON object, if it is one.
    pub fn json(&self) -> Option<Map<String, Value>> {
        parse_json_object(&self.body)
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `error` code of the response, if any.
    pub fn error_code(&self) -> Option<String> {
        self.json()?.get("error")?.as_str().map(str::to_owned)
    }

    /// The `AAuth-Requirement` challenge of the response, if any (for example
    /// `requirement=agent-token`).
    pub fn requirement(&self) -> Option<&str> {
        self.header(crate::names::header::AAUTH_REQUIREMENT)
    }

    /// A figure of the response's `AAuth-Budget` field (draft-hardt-aauth-budgets):
    /// `remaining`, `cost`, `required`, `decimals`. The field is parsed as an RFC 9651
    /// Dictionary; a figure is read as a member or as a parameter of one (the draft's
    /// examples write `remaining=…; cost=…`). `None` when absent or not an Integer.
    pub fn budget_figure(&self, name: &str) -> Option<u64> {
        let dictionary = parse_dictionary_strict(self.header(crate::names::header::AAUTH_BUDGET)?)?;
        let integer = |item: &sfv::BareItem| match item {
            sfv::BareItem::Integer(value) => u64::try_from(i64::from(*value)).ok(),
            _ => None,
        };
        dictionary.iter().find_map(|(key, entry)| {
            let sfv::ListEntry::Item(item) = entry else {
                return None;
            };
            if key.as_str() == name {
                return integer(&item.bare_item);
            }
            item.params
                .iter()
                .find(|(param, _)| param.as_str() == name)
                .and_then(|(_, value)| integer(value))
        })
    }

    /// The `reason` of a draft -11 `requirement=auth-token` challenge
    /// (`budget-exhausted`, `insufficient-budget`), if any.
    pub fn requirement_reason(&self) -> Option<String> {
        let (value, params) = requirement(self, Generation::Draft11)?;
        if value != names::requirement::AUTH_TOKEN {
            return None;
        }
        params
            .iter()
            .find(|(key, _)| key.as_str() == names::requirement::REASON_PARAM)
            .and_then(|(_, value)| match value {
                sfv::BareItem::Token(token) => Some(token.as_str().to_owned()),
                _ => None,
            })
    }

    /// The `Signature-Error` of the response, if any (for example `error=invalid_signature`).
    pub fn signature_error(&self) -> Option<&str> {
        self.header(crate::names::header::SIGNATURE_ERROR)
    }

    /// The claims of the resource token a draft -11 `401 requirement=auth-token` challenge
    /// carries (its `scope`, `aud`, `agent_jkt`, …), read without verifying its signature:
    /// for asserting what a route asked for. `None` for any other response.
    pub fn resource_token_claims(&self) -> Option<Map<String, Value>> {
        unverified_claims(&auth_token_challenge(self, Generation::Draft11)?.resource_token)
    }
}

/// What the observer sees while the flow runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FlowEvent {
    /// An exchange completed.
    Exchange(Box<Exchange>),
    /// The auth server needs the person: show them `url` and `code`.
    Interaction {
        /// The interaction URL, with `?code=` appended.
        url: String,
        /// The interaction code.
        code: String,
    },
    /// The agent waits before the next poll.
    Waiting {
        /// Seconds.
        seconds: u64,
    },
}

/// Why the flow stopped short of the resource's answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// A transport failure.
    #[error("HTTP request to {url} failed: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// The client's message.
        message: String,
    },
    /// A response that does not follow the protocol.
    #[error("protocol violation at {step:?}: {detail}")]
    Protocol {
        /// Where.
        step: FlowStep,
        /// What was wrong.
        detail: String,
    },
    /// The auth server refused the token request or ended the pending request
    /// (`403 denied`, `408 expired`, `410`, …).
    #[error("the auth server answered {status} {error}")]
    Refused {
        /// Where.
        step: FlowStep,
        /// The status.
        status: StatusCode,
        /// The problem `error` code (empty when absent).
        error: String,
        /// Every exchange so far, the refusal last.
        transcript: Vec<Exchange>,
    },
    /// The pending request did not complete within the polling budget.
    #[error("gave up polling after {0:?}")]
    PollingTimeout(Duration),
}

/// The resource's final answer and how the flow got there.
#[derive(Debug, Clone)]
pub struct FlowOutcome {
    /// The last exchange with the resource.
    pub response: Exchange,
    /// The auth token obtained, when the resource asked for one.
    pub auth_token: Option<String>,
    /// Every exchange in order.
    pub transcript: Vec<Exchange>,
}

type Observer = Arc<dyn Fn(&FlowEvent) + Send + Sync>;

/// An agent that follows `401` → auth server → retry over HTTP. Cheap to clone.
#[derive(Clone)]
pub struct AgentClient {
    agent: TestAgent,
    source: KeySource,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    observer: Option<Observer>,
    max_polling: Duration,
    generation: Generation,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client signing as `agent` with `source` (usually `jwks_uri` naming the agent's
    /// identity server, or `hwk`).
    pub fn new(agent: TestAgent, source: KeySource) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        AgentClient {
            agent,
            source,
            http,
            clock: Arc::new(SystemClock),
            observer: None,
            max_polling: Duration::from_secs(300),
            generation: Generation::Draft11,
        }
    }

    /// The same agent presenting `source` instead (for example
    /// `KeySource::Jwt(auth_token)` to reuse a token [`AgentClient::fetch`] obtained).
    pub fn with_source(mut self, source: KeySource) -> Self {
        self.source = source;
        self
    }

    /// The clock for `created` (default: the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `observer` with every event as it happens.
    pub fn with_observer(mut self, observer: impl Fn(&FlowEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The longest time spent polling one pending URL (default 300 s).
    pub fn with_max_polling(mut self, budget: Duration) -> Self {
        self.max_polling = budget;
        self
    }

    /// The wire generation to speak (default [`Generation::Draft11`]; module docs).
    pub fn with_generation(mut self, generation: Generation) -> Self {
        self.generation = generation;
        self
    }

    /// The wire generation the client speaks.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The agent.
    pub fn agent(&self) -> &TestAgent {
        &self.agent
    }

    fn emit(&self, event: FlowEvent) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
    }

    /// Sends one `GET` signed with the client's own key source and follows nothing: the
    /// resource's answer as it came (a `401` challenge included). For the whole flow use
    /// [`AgentClient::fetch`].
    pub async fn get(&self, url: &str) -> Result<Exchange, FlowError> {
        self.request(Method::GET, url, None).await
    }

    /// Sends one request signed with the client's own key source and follows nothing. A
    /// JSON `body` is sent with `Content-Type: application/json` and covered by
    /// `content-digest`.
    pub async fn request(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Exchange, FlowError> {
        self.send(FlowStep::Resource, method, url, body, &self.source).await
    }

    /// Sends one request with no signature at all (what a client that knows nothing of
    /// AAuth sends) and follows nothing.
    pub async fn send_unsigned(&self, method: Method, url: &str) -> Result<Exchange, FlowError> {
        let transport = |e: &dyn std::fmt::Display| FlowError::Transport {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let request = self
            .http
            .request(method.clone(), url)
            .build()
            .map_err(|e| transport(&e))?;
        let request_headers = request.headers().clone();
        let response = self.http.execute(request).await.map_err(|e| transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| transport(&e))?;
        let exchange = Exchange {
            step: FlowStep::Resource,
            method,
            url: url.to_owned(),
            request_headers,
            request_body: Bytes::new(),
            status,
            headers,
            body,
        };
        self.emit(FlowEvent::Exchange(Box::new(exchange.clone())));
        Ok(exchange)
    }

    /// Sends one request signed with `source`, without following anything. A JSON `body`
    /// is sent with `Content-Type: application/json` and covered by `content-digest`.
    pub async fn send(
        &self,
        step: FlowStep,
        method: Method,
        url: &str,
        body: Option<&Value>,
        source: &KeySource,
    ) -> Result<Exchange, FlowError> {
        let transport = |e: &dyn std::fmt::Display| FlowError::Transport {
            url: url.to_owned(),
            message: e.to_string(),
        };
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url)
            .body(bytes.clone())
            .map_err(|e| transport(&e))?;
        let created = self.clock.now();
        let options = SignOptions::for_generation(self.generation);
        if body.is_some() {
            request
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            self.agent
                .sign_body_with(&mut request, &bytes, source, created, options);
        } else {
            self.agent.sign_with(&mut request, source, created, &options);
        }
        let request_headers = request.headers().clone();
        let request = reqwest::Request::try_from(request).map_err(|e| transport(&e))?;
        let response = self.http.execute(request).await.map_err(|e| transport(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| transport(&e))?;
        let exchange = Exchange {
            step,
            method,
            url: url.to_owned(),
            request_headers,
            request_body: Bytes::from(bytes),
            status,
            headers,
            body,
        };
        self.emit(FlowEvent::Exchange(Box::new(exchange.clone())));
        Ok(exchange)
    }

    /// Sends the request and follows the flow (module docs) until the resource answers
    /// something other than an `auth-token` challenge.
    pub async fn fetch(&self, method: Method, url: &str, body: Option<&Value>) -> Result<FlowOutcome, FlowError> {
        self.fetch_signed(method, url, body, &self.source).await
    }

    /// [`AgentClient::fetch`], the first request presenting `auth_token` (an auth token the
    /// agent already holds): a resource that answers with a step-up (a scope it lacks, a
    /// budget spent) sends the agent to the auth server again, signing there as usual.
    pub async fn fetch_presenting(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        auth_token: &str,
    ) -> Result<FlowOutcome, FlowError> {
        let source = KeySource::Jwt(auth_token.to_owned());
        self.fetch_signed(method, url, body, &source).await
    }

    async fn fetch_signed(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        source: &KeySource,
    ) -> Result<FlowOutcome, FlowError> {
        let mut transcript = Vec::new();
        let first = self.send(FlowStep::Resource, method.clone(), url, body, source).await?;
        let first_answered = tokio::time::Instant::now();
        transcript.push(first.clone());
        // A held request's pending URL is polled with the auth token: only on the
        // resource's own origin.
        let held_at = (first.status == StatusCode::ACCEPTED)
            .then(|| {
                first
                    .header(header::LOCATION.as_str())
                    .map(|location| resolve(url, location))
            })
            .flatten()
            .filter(|pending| same_origin(pending, url));
        let challenge = match &held_at {
            Some(_) => requirement_challenge(&first, self.generation),
            None => auth_token_challenge(&first, self.generation),
        };
        let Some(challenge) = challenge else {
            return Ok(FlowOutcome {
                response: first,
                auth_token: None,
                transcript,
            });
        };
        let auth_server = challenge
            .auth_server
            .or_else(|| token_audience(&challenge.resource_token))
            .ok_or_else(|| FlowError::Protocol {
                step: FlowStep::Resource,
                detail: "the challenge names no auth server and the resource token no readable aud".to_owned(),
            })?;
        let endpoints = self.endpoints(&auth_server, &mut transcript).await?;
        let endpoint = endpoints.token.clone();
        let request = serde_json::json!({ "resource_token": challenge.resource_token });
        let answer = self
            .send(FlowStep::Token, Method::POST, &endpoint, Some(&request), &self.source)
            .await?;
        transcript.push(answer.clone());
        let auth_token = match answer.status {
            StatusCode::OK => read_auth_token(&answer)?,
            StatusCode::ACCEPTED => self.poll(&endpoints, answer, &mut transcript).await?,
            status => return Err(refused(FlowStep::Token, status, &answer, transcript)),
        };
        let retry = match held_at {
            Some(pending_url) => {
                let source = KeySource::Jwt(auth_token.clone());
                self.poll_held(&pending_url, &first, first_answered, &source, &mut transcript)
                    .await?
            }
            None => {
                let retry = self
                    .send(FlowStep::Retry, method, url, body, &KeySource::Jwt(auth_token.clone()))
                    .await?;
                transcript.push(retry.clone());
                retry
            }
        };
        Ok(FlowOutcome {
            response: retry,
            auth_token: Some(auth_token),
            transcript,
        })
    }

    async fn endpoints(&self, auth_server: &str, transcript: &mut Vec<Exchange>) -> Result<Endpoints, FlowError> {
        let (dwk, token_member) = match self.generation {
            Generation::Legacy => (names::dwk::LEGACY_ISSUER, LEGACY_TOKEN_ENDPOINT),
            _ => (names::dwk::ACCESS, TOKEN_ENDPOINT),
        };
        let url = format!("{auth_server}/.well-known/{dwk}");
        let response = self.http.get(&url).send().await.map_err(|e| FlowError::Transport {
            url: url.clone(),
            message: e.to_string(),
        })?;
        let exchange = Exchange {
            step: FlowStep::Metadata,
            method: Method::GET,
            url: url.clone(),
            request_headers: HeaderMap::new(),
            request_body: Bytes::new(),
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap_or_default(),
        };
        self.emit(FlowEvent::Exchange(Box::new(exchange.clone())));
        transcript.push(exchange.clone());
        let metadata = exchange.json().ok_or_else(|| FlowError::Protocol {
            step: FlowStep::Metadata,
            detail: "the auth server metadata is not a JSON object".to_owned(),
        })?;
        if metadata.get("issuer").and_then(Value::as_str) != Some(auth_server) {
            return Err(FlowError::Protocol {
                step: FlowStep::Metadata,
                detail: "the metadata issuer differs from the resource token's aud".to_owned(),
            });
        }
        let on_origin = |member: &str| {
            metadata
                .get(member)
                .and_then(Value::as_str)
                .filter(|e| e.starts_with(auth_server))
                .map(str::to_owned)
        };
        let token = on_origin(token_member).ok_or_else(|| FlowError::Protocol {
            step: FlowStep::Metadata,
            detail: format!("the metadata has no {token_member} on the server's origin"),
        })?;
        Ok(Endpoints {
            token,
            interaction: on_origin("interaction_endpoint"),
        })
    }

    /// Polls the resource's pending URL of a held request under `source`, first when the
    /// `202`'s `Retry-After` has passed since it was `answered`, until an answer other than
    /// `202` (or `429`), which it returns.
    async fn poll_held(
        &self,
        pending_url: &str,
        accepted: &Exchange,
        answered: tokio::time::Instant,
        source: &KeySource,
        transcript: &mut Vec<Exchange>,
    ) -> Result<Exchange, FlowError> {
        let started = tokio::time::Instant::now();
        // The time spent getting the token counts towards the first interval.
        let mut wait = retry_after(accepted)
            .unwrap_or(DEFAULT_INTERVAL)
            .saturating_sub(answered.elapsed().as_secs());
        loop {
            if started.elapsed().saturating_add(Duration::from_secs(wait)) > self.max_polling {
                return Err(FlowError::PollingTimeout(self.max_polling));
            }
            if wait > 0 {
                self.emit(FlowEvent::Waiting { seconds: wait });
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            let answer = self
                .send(FlowStep::Poll, Method::GET, pending_url, None, source)
                .await?;
            transcript.push(answer.clone());
            match answer.status {
                StatusCode::ACCEPTED => {
                    wait = retry_after(&answer)
                        .or(retry_after(accepted))
                        .unwrap_or(DEFAULT_INTERVAL)
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    wait = retry_after(&answer)
                        .unwrap_or(wait)
                        .max(wait.saturating_add(SLOW_DOWN_STEP));
                }
                _ => return Ok(answer),
            }
        }
    }

    async fn poll(
        &self,
        endpoints: &Endpoints,
        accepted: Exchange,
        transcript: &mut Vec<Exchange>,
    ) -> Result<String, FlowError> {
        let location = accepted
            .header(header::LOCATION.as_str())
            .ok_or_else(|| FlowError::Protocol {
                step: FlowStep::Token,
                detail: "a 202 without Location".to_owned(),
            })?;
        let pending_url = resolve(&endpoints.token, location);
        let shown = interaction(&accepted, self.generation).and_then(|(url, code)| {
            // The demo generation names only the code: the page is the metadata's.
            Some((url.or_else(|| endpoints.interaction.clone())?, code))
        });
        if let Some((url, code)) = shown {
            let separator = if url.contains('?') { '&' } else { '?' };
            self.emit(FlowEvent::Interaction {
                url: format!("{url}{separator}code={code}"),
                code,
            });
        }
        let started = tokio::time::Instant::now();
        let mut wait = retry_after(&accepted).unwrap_or(DEFAULT_INTERVAL);
        loop {
            if started.elapsed().saturating_add(Duration::from_secs(wait)) > self.max_polling {
                return Err(FlowError::PollingTimeout(self.max_polling));
            }
            self.emit(FlowEvent::Waiting { seconds: wait });
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let answer = self
                .send(FlowStep::Poll, Method::GET, &pending_url, None, &self.source)
                .await?;
            transcript.push(answer.clone());
            match answer.status {
                StatusCode::OK => return read_auth_token(&answer),
                StatusCode::ACCEPTED => wait = retry_after(&answer).unwrap_or(DEFAULT_INTERVAL),
                StatusCode::TOO_MANY_REQUESTS => {
                    wait = retry_after(&answer)
                        .unwrap_or(wait)
                        .max(wait.saturating_add(SLOW_DOWN_STEP));
                }
                status => {
                    return Err(refused(FlowStep::Poll, status, &answer, std::mem::take(transcript)));
                }
            }
        }
    }
}

/// Where the auth server takes token requests and shows people the consent page.
struct Endpoints {
    token: String,
    interaction: Option<String>,
}

/// The token endpoint's metadata member (draft -11) …
const TOKEN_ENDPOINT: &str = "auth_token_endpoint";
/// … and the demo generation's (`aauth-issuer.json`).
pub(crate) const LEGACY_TOKEN_ENDPOINT: &str = "token_endpoint";

/// Polling interval when `Retry-After` is absent ([AAuth draft -11, "Deferred
/// Responses"][draft-11]).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
const DEFAULT_INTERVAL: u64 = 5;
/// Seconds an agent adds after `slow_down`.
const SLOW_DOWN_STEP: u64 = 5;

fn refused(step: FlowStep, status: StatusCode, answer: &Exchange, transcript: Vec<Exchange>) -> FlowError {
    FlowError::Refused {
        step,
        status,
        error: answer.error_code().unwrap_or_default(),
        transcript,
    }
}

fn read_auth_token(answer: &Exchange) -> Result<String, FlowError> {
    answer
        .json()
        .and_then(|body| body.get("auth_token").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| FlowError::Protocol {
            step: answer.step,
            detail: "a 200 without auth_token".to_owned(),
        })
}

fn retry_after(answer: &Exchange) -> Option<u64> {
    answer.header(header::RETRY_AFTER.as_str())?.trim().parse().ok()
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// `Location` may be absolute or relative to the endpoint's origin.
fn resolve(endpoint: &str, location: &str) -> String {
    match url::Url::parse(endpoint).and_then(|base| base.join(location)) {
        Ok(url) => url.to_string(),
        Err(_) => location.to_owned(),
    }
}

/// The challenge member and its parameters: `AAuth-Requirement: requirement=…` (draft
/// -11) or `AAuth: require=…` (demo generation).
fn requirement(exchange: &Exchange, generation: Generation) -> Option<(String, sfv::Parameters)> {
    let (header, member) = match generation {
        Generation::Legacy => (names::header::AAUTH_LEGACY, names::requirement::LEGACY_REQUIRE),
        _ => (names::header::AAUTH_REQUIREMENT, "requirement"),
    };
    let field = exchange.header(header)?;
    let dictionary = parse_dictionary_strict(field)?;
    let (_, entry) = dictionary.iter().find(|(key, _)| key.as_str() == member)?;
    let sfv::ListEntry::Item(item) = entry else {
        return None;
    };
    let sfv::BareItem::Token(token) = &item.bare_item else {
        return None;
    };
    Some((token.as_str().to_owned(), item.params.clone()))
}

fn string_param(params: &sfv::Parameters, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(key, _)| key.as_str() == name)
        .and_then(|(_, value)| match value {
            sfv::BareItem::String(s) => Some(s.as_str().to_owned()),
            _ => None,
        })
}

/// A `401` `auth-token` challenge.
pub(crate) struct AuthChallenge {
    /// The resource token.
    pub(crate) resource_token: String,
    /// The demo generation's `auth-server` parameter.
    pub(crate) auth_server: Option<String>,
}

/// The `401` `auth-token` challenge of `exchange`, in `generation`'s header.
pub(crate) fn auth_token_challenge(exchange: &Exchange, generation: Generation) -> Option<AuthChallenge> {
    if exchange.status != StatusCode::UNAUTHORIZED {
        return None;
    }
    requirement_challenge(exchange, generation)
}

/// The `auth-token` requirement of an answer, whatever its status.
fn requirement_challenge(exchange: &Exchange, generation: Generation) -> Option<AuthChallenge> {
    let (value, params) = requirement(exchange, generation)?;
    if value != names::requirement::AUTH_TOKEN {
        return None;
    }
    Some(AuthChallenge {
        resource_token: string_param(&params, names::requirement::RESOURCE_TOKEN_PARAM)?,
        auth_server: string_param(&params, names::requirement::LEGACY_AUTH_SERVER_PARAM)
            .filter(|_| generation == Generation::Legacy),
    })
}

/// `url` (absent in the demo generation) and `code` of an `interaction` requirement.
pub(crate) fn interaction(exchange: &Exchange, generation: Generation) -> Option<(Option<String>, String)> {
    let (value, params) = requirement(exchange, generation)?;
    if value != names::requirement::INTERACTION {
        return None;
    }
    let url = string_param(&params, names::requirement::URL_PARAM);
    if url.is_none() && generation != Generation::Legacy {
        return None;
    }
    Some((url, string_param(&params, names::requirement::CODE_PARAM)?))
}

/// The payload of a compact JWT, unverified (for display and routing only).
pub(crate) fn unverified_claims(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    parse_json_object(&b64url_decode(payload)?)
}

fn token_audience(token: &str) -> Option<String> {
    match unverified_claims(token)?.get("aud")? {
        Value::String(aud) => Some(aud.clone()),
        Value::Array(items) if items.len() == 1 => items[0].as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn a_held_requests_pending_url_is_followed_only_on_the_resources_origin() {
        let resource = "https://resource.example/orders";
        let cases = [
            ("https://resource.example/aauth/pending/x", true),
            ("https://resource.example:443/aauth/pending/x", true),
            ("https://evil.example/aauth/pending/x", false),
            ("http://resource.example/aauth/pending/x", false),
            ("https://resource.example:8443/aauth/pending/x", false),
            ("not a url", false),
        ];
        for (pending, followed) in cases {
            assert_eq!(same_origin(pending, resource), followed, "{pending}");
        }
    }
}
