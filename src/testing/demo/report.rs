//! Narration of each step (abbreviated tokens, decoded claims) and the checks that decide
//! whether the flow behaved as the protocol says.

use std::fmt;

use http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use super::{DATA_SCOPES, Expected, PersonAction};
use crate::jose::{AlgPolicy, Jwk};
use crate::names;
use crate::profile::Generation;
use crate::testing::auth_server::normalize_code;
use crate::testing::flow::{auth_token_challenge, interaction, unverified_claims};
use crate::testing::{Exchange, FlowError, FlowEvent, FlowOutcome, FlowStep};

/// One protocol expectation and whether the run met it.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was expected.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
}

/// Every check of one run.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// The checks in flow order.
    pub checks: Vec<Check>,
}

impl DemoReport {
    /// Whether every step behaved as the protocol says.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }

    pub(crate) fn expect(&mut self, ok: bool, name: impl Into<String>) {
        self.checks.push(Check { name: name.into(), ok });
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "=== protocol checks")?;
        for check in &self.checks {
            writeln!(f, "  [{}] {}", if check.ok { "ok" } else { "FAILED" }, check.name)?;
        }
        let verdict = if self.passed() {
            "every step behaved as the protocol says"
        } else {
            "some steps did NOT behave as the protocol says"
        };
        writeln!(f, "=== {verdict}")
    }
}

/// A token shortened for display: never print a whole credential.
pub(crate) fn abbreviate(token: &str) -> String {
    if token.len() <= 40 {
        token.to_owned()
    } else {
        format!("{}…({} bytes)", &token[..32], token.len())
    }
}

/// An opaque credential shortened to its first 8 characters.
pub(crate) fn abbreviate_secret(secret: &str) -> String {
    match secret.get(..8) {
        Some(start) => format!("{start}…({} bytes)", secret.len()),
        None => "…".to_owned(),
    }
}

/// Shortens every long quoted string and byte sequence in a header value.
fn abbreviate_field(value: &str) -> String {
    let mut out = String::new();
    for (i, part) in value.split('"').enumerate() {
        if i > 0 {
            out.push('"');
        }
        if i % 2 == 1 {
            out.push_str(&abbreviate(part));
        } else if let (Some(start), Some(end)) = (part.find(':'), part.rfind(':'))
            && end > start + 40
        {
            out.push_str(&format!(
                "{}:{}…:{}",
                &part[..start],
                &part[start + 1..start + 21],
                &part[end + 1..]
            ));
        } else {
            out.push_str(part);
        }
    }
    out
}

const SHOWN: [&str; 16] = [
    "content-type",
    "content-digest",
    names::header::SIGNATURE_INPUT,
    names::header::SIGNATURE,
    names::header::SIGNATURE_KEY,
    names::header::AAUTH_REQUIREMENT,
    names::header::SIGNATURE_ERROR,
    "location",
    "retry-after",
    "cache-control",
    names::header::ACCEPT_SIGNATURE_SCHEME,
    names::header::AAUTH_LEGACY,
    names::header::AAUTH_BUDGET,
    "aauth-capabilities",
    "authorization",
    "aauth-access",
];

/// Headers whose whole value, or last word, is a credential.
const CREDENTIALS: [&str; 2] = ["authorization", "aauth-access"];

fn headers_text(headers: &HeaderMap) -> String {
    let mut out = String::new();
    for name in SHOWN {
        for value in headers.get_all(name) {
            let value = value.to_str().unwrap_or("<binary>");
            let shown = match value.rsplit_once(' ') {
                _ if !CREDENTIALS.contains(&name) => abbreviate_field(value),
                Some((scheme, credential)) => format!("{scheme} {}", abbreviate_secret(credential)),
                None => abbreviate_secret(value),
            };
            out.push_str(&format!("  {name}: {shown}\n"));
        }
    }
    out
}

fn pretty(value: &Map<String, Value>) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// The narration of one event.
pub(crate) fn describe(event: &FlowEvent, generation: Generation) -> String {
    match event {
        FlowEvent::Waiting { seconds } => format!("[agent] waits {seconds} s (Retry-After) before polling\n"),
        FlowEvent::Interaction { url, code } => {
            format!("[agent] the auth server needs the person: interaction code {code}\n        consent page: {url}\n")
        }
        FlowEvent::Exchange(exchange) if exchange.step == FlowStep::Metadata => format!(
            "[agent] GET {} -> {} (token endpoint {})\n",
            exchange.url,
            exchange.status,
            exchange
                .json()
                .and_then(|m| {
                    ["auth_token_endpoint", "token_endpoint"]
                        .iter()
                        .find_map(|name| m.get(*name).and_then(Value::as_str).map(str::to_owned))
                })
                .unwrap_or_default()
        ),
        FlowEvent::Exchange(exchange) => describe_exchange(exchange, generation),
    }
}

pub(crate) fn describe_exchange(exchange: &Exchange, generation: Generation) -> String {
    let title = match exchange.step {
        FlowStep::Resource => "AGENT REQUEST to the resource",
        FlowStep::Token => "AGENT TOKEN REQUEST to the auth server",
        FlowStep::Poll => "AGENT POLLS the pending URL",
        FlowStep::Retry => "AGENT RETRIES the resource with the auth token",
        FlowStep::Metadata => "AGENT READS auth server metadata",
    };
    describe_titled(title, exchange, generation)
}

/// The narration of one exchange under `title`.
pub(crate) fn describe_titled(title: &str, exchange: &Exchange, generation: Generation) -> String {
    let mut out = format!("\n>>> {title}\n{} {}\n", exchange.method, exchange.url);
    out.push_str(&headers_text(&exchange.request_headers));
    if !exchange.request_body.is_empty() {
        let body = String::from_utf8_lossy(&exchange.request_body);
        out.push_str(&format!("  [body] {}\n", abbreviate_field(&body)));
    }
    out.push_str(&format!("<<< HTTP {}\n", exchange.status));
    out.push_str(&headers_text(&exchange.headers));
    if let Some(challenge) = auth_token_challenge(exchange, generation) {
        let token = &challenge.resource_token;
        out.push_str(&format!(
            "  resource token header (decoded): {}\n",
            Value::Object(header_json(token))
        ));
        out.push_str("  resource token claims (decoded):\n");
        out.push_str(&pretty(&unverified_claims(token).unwrap_or_default()));
    }
    match exchange.json() {
        Some(mut body) => {
            let token = body.get("auth_token").and_then(Value::as_str).map(str::to_owned);
            if let Some(token) = &token {
                body.insert("auth_token".into(), abbreviate(token).into());
            }
            out.push_str(&format!("  [body] {}\n", Value::Object(body)));
            if let Some(token) = token {
                out.push_str(&format!(
                    "  auth token header (decoded): {}\n",
                    Value::Object(header_json(&token))
                ));
                out.push_str("  auth token claims (decoded):\n");
                out.push_str(&pretty(&unverified_claims(&token).unwrap_or_default()));
            }
        }
        None if !exchange.body.is_empty() => {
            out.push_str(&format!("  [body] {}\n", String::from_utf8_lossy(&exchange.body)));
        }
        None => {}
    }
    out
}

fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn lifetime(claims: &Map<String, Value>) -> Option<u64> {
    let exp = claims.get("exp")?.as_u64()?;
    exp.checked_sub(claims.get("iat")?.as_u64()?)
}

fn header_json(token: &str) -> Map<String, Value> {
    token
        .split('.')
        .next()
        .and_then(crate::jose::b64url_decode)
        .and_then(|b| crate::jose::parse_json_object(&b))
        .unwrap_or_default()
}

fn cnf_thumbprint(claims: &Map<String, Value>, generation: Generation) -> Option<String> {
    let jwk = claims.get("cnf")?.get("jwk")?.as_object()?;
    // The demo generation's cnf.jwk carries no alg.
    let policy = match generation {
        Generation::Legacy => AlgPolicy::Legacy,
        _ => AlgPolicy::Strict,
    };
    Jwk::from_json(jwk, policy).ok().map(|k| k.thumbprint())
}

fn header(exchange: &Exchange, name: impl AsRef<str>) -> Option<&str> {
    exchange.header(name.as_ref())
}

fn sent<'a>(exchange: &'a Exchange, name: &str) -> Option<&'a str> {
    exchange.request_headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request was signed under `scheme`, in `generation`'s `Signature-Key` form.
pub(crate) fn signed_as(exchange: &Exchange, scheme: &str, generation: Generation) -> bool {
    let prefix = match generation {
        Generation::Legacy => format!("sig=(scheme={scheme} "),
        _ => format!("sig={scheme};"),
    };
    sent(exchange, names::header::SIGNATURE_KEY).is_some_and(|k| k.starts_with(&prefix))
}

/// Checks a run against what the protocol says for `expected.person`.
pub(crate) fn check(
    expected: &Expected,
    hwk: Result<Exchange, FlowError>,
    outcome: Result<FlowOutcome, FlowError>,
) -> DemoReport {
    let mut report = DemoReport::default();
    check_hwk(&mut report, expected, hwk.ok().as_ref());
    let (transcript, terminal) = match &outcome {
        Ok(outcome) => (outcome.transcript.as_slice(), None),
        Err(FlowError::Refused {
            status,
            error,
            transcript,
            ..
        }) => (transcript.as_slice(), Some((*status, error.as_str()))),
        Err(error) => {
            report.expect(false, format!("the flow ran to an answer (it stopped: {error})"));
            return report;
        }
    };
    check_challenge(&mut report, expected, transcript);
    check_deferral(&mut report, expected, transcript);

    let polls: Vec<&Exchange> = transcript.iter().filter(|e| e.step == FlowStep::Poll).collect();
    report.expect(!polls.is_empty(), "the agent polled the pending URL");
    report.expect(
        polls.iter().all(|p| p.status != StatusCode::TOO_MANY_REQUESTS),
        "every poll honoured Retry-After (no 429 slow_down)",
    );
    report.expect(
        polls
            .iter()
            .all(|p| signed_as(p, names::scheme::JWKS_URI, expected.generation)),
        "every poll was signed by the agent",
    );
    let waiting = polls.iter().rev().skip(1);
    report.expect(
        waiting.clone().all(|p| p.status == StatusCode::ACCEPTED),
        "polls before the answer were 202 pending/interacting",
    );

    match expected.person {
        PersonAction::Approve | PersonAction::Interactive => match outcome {
            Ok(outcome) => check_grant(&mut report, expected, &outcome),
            Err(_) => report.expect(false, "the person approved and the agent got an auth token"),
        },
        PersonAction::Deny => report.expect(
            terminal == Some((StatusCode::FORBIDDEN, names::poll::DENIED)),
            "the denied consent ended the flow with 403 denied",
        ),
        PersonAction::Ignore => report.expect(
            terminal == Some((StatusCode::REQUEST_TIMEOUT, names::poll::EXPIRED)),
            "the unanswered consent ended the flow with 408 expired",
        ),
    }
    report
}

fn check_hwk(report: &mut DemoReport, expected: &Expected, exchange: Option<&Exchange>) {
    let body = exchange.and_then(Exchange::json).unwrap_or_default();
    report.expect(
        exchange.is_some_and(|e| signed_as(e, names::scheme::HWK, expected.generation))
            && exchange.is_some_and(|e| e.status == StatusCode::OK)
            && text(&body, "scheme") == Some(names::scheme::HWK)
            && text(&body, "agent") == Some(expected.agent_jkt.as_str()),
        "an hwk-signed GET /whoami was answered 200 naming the key thumbprint (identity level)",
    );
}

fn check_challenge(report: &mut DemoReport, expected: &Expected, transcript: &[Exchange]) {
    let first = transcript.first();
    let legacy = expected.generation == Generation::Legacy;
    report.expect(
        first.is_some_and(|e| signed_as(e, names::scheme::JWKS_URI, expected.generation)),
        if legacy {
            "the agent signed its first request with Signature-Key sig=(scheme=jwks_uri id=\"…\" kid=\"…\")"
        } else {
            "the agent signed its first request with Signature-Key scheme jwks_uri"
        },
    );
    let challenge = first.and_then(|e| auth_token_challenge(e, expected.generation));
    if legacy {
        report.expect(
            challenge
                .as_ref()
                .is_some_and(|c| c.auth_server.as_deref() == Some(expected.auth_server.as_str()))
                && first.is_some_and(|e| e.header(names::header::AAUTH_REQUIREMENT).is_none()),
            "the resource answered 401 with AAuth: require=auth-token; resource-token=\"…\"; auth-server=\"…\" (and no AAuth-Requirement)",
        );
    } else {
        report.expect(
            challenge.is_some(),
            "the resource answered 401 with AAuth-Requirement: requirement=auth-token; resource-token=\"…\"",
        );
    }
    let token = challenge.map(|c| c.resource_token).unwrap_or_default();
    let head = header_json(&token);
    let claims = unverified_claims(&token).unwrap_or_default();
    if legacy {
        report.expect(
            text(&head, "typ") == Some(names::typ::LEGACY_RESOURCE) && text(&head, "alg") == Some(names::alg::EDDSA),
            "the resource token is a resource+jwt signed with EdDSA",
        );
        report.expect(
            text(&claims, names::claim::AGENT) == Some(expected.agent_id.as_str()),
            "the resource token names the agent (agent)",
        );
    } else {
        report.expect(
            text(&head, "typ") == Some(names::typ::RESOURCE) && text(&head, "alg") == Some(names::alg::ED25519),
            "the resource token is an aa-resource+jwt signed with Ed25519",
        );
    }
    report.expect(
        text(&claims, "iss") == Some(expected.resource.as_str())
            && text(&claims, "aud") == Some(expected.auth_server.as_str())
            && text(&claims, "dwk") == Some(names::dwk::RESOURCE),
        "the resource token names the resource (iss) and the auth server (aud)",
    );
    report.expect(
        text(&claims, "agent_jkt") == Some(expected.agent_jkt.as_str()),
        "the resource token is bound to the agent key (agent_jkt)",
    );
    report.expect(
        text(&claims, "scope") == Some(DATA_SCOPES) && lifetime(&claims).is_some_and(|l| l <= 300),
        "the resource token asks for exactly data.read data.write, for at most 5 minutes",
    );
}

fn check_deferral(report: &mut DemoReport, expected: &Expected, transcript: &[Exchange]) {
    let deferred = transcript.iter().find(|e| e.step == FlowStep::Token);
    report.expect(
        deferred.is_some_and(|e| {
            e.method == http::Method::POST
                && sent(e, names::header::SIGNATURE_INPUT).is_some_and(|i| i.contains("content-digest"))
        }),
        "the agent POSTed the resource token to the auth server, signed over its body",
    );
    let Some(deferred) = deferred else { return };
    report.expect(
        deferred.status == StatusCode::ACCEPTED,
        "the auth server deferred with 202 Accepted",
    );
    report.expect(
        header(deferred, header::LOCATION)
            .is_some_and(|l| l.starts_with(&format!("{}/pending/", expected.auth_server)))
            && header(deferred, header::RETRY_AFTER).is_some_and(|r| r.parse::<u64>().is_ok())
            && header(deferred, header::CACHE_CONTROL) == Some("no-store"),
        "the 202 carries a pending Location, Retry-After and Cache-Control: no-store",
    );
    let found = interaction(deferred, expected.generation);
    let well_formed = |c: &str| c.len() >= 8 && normalize_code(c).as_deref() == Some(c);
    if expected.generation == Generation::Legacy {
        let body = deferred.json().unwrap_or_default();
        report.expect(
            found.as_ref().is_some_and(|(_, code)| {
                well_formed(code)
                    && text(&body, "code") == Some(code.as_str())
                    && text(&body, names::requirement::LEGACY_REQUIRE) == Some(names::requirement::INTERACTION)
                    && text(&body, "location") == header(deferred, header::LOCATION)
            }),
            "the 202 carries AAuth: require=interaction; code=\"…\" (Crockford base32, 8+ symbols), echoed in its body",
        );
    } else {
        report.expect(
            found.is_some_and(|(url, code)| url.is_some() && well_formed(&code)),
            "the 202 carries requirement=interaction with a url and a Crockford base32 code of 8+ symbols",
        );
    }
}

fn check_grant(report: &mut DemoReport, expected: &Expected, outcome: &FlowOutcome) {
    let granted = outcome
        .transcript
        .iter()
        .rev()
        .find(|e| e.step == FlowStep::Poll && e.status == StatusCode::OK);
    let expires_in = granted
        .and_then(Exchange::json)
        .and_then(|b| b.get("expires_in").and_then(Value::as_u64));
    report.expect(
        expires_in.is_some_and(|e| e > 0 && e <= 3600) && outcome.auth_token.is_some(),
        "after consent the pending URL answered 200 {auth_token, expires_in ≤ 3600}",
    );
    let token = outcome.auth_token.clone().unwrap_or_default();
    let head = header_json(&token);
    let claims = unverified_claims(&token).unwrap_or_default();
    let legacy = expected.generation == Generation::Legacy;
    let from_to = text(&claims, "iss") == Some(expected.auth_server.as_str())
        && text(&claims, "aud") == Some(expected.resource.as_str());
    if legacy {
        let cnf = claims.get("cnf").and_then(|c| c.get("jwk")).and_then(Value::as_object);
        report.expect(
            text(&head, "typ") == Some(names::typ::LEGACY_AUTH)
                && text(&head, "alg") == Some(names::alg::EDDSA)
                && from_to
                && !claims.contains_key("dwk"),
            "the auth token is an auth+jwt (EdDSA, no dwk) from the auth server for the resource",
        );
        report.expect(
            cnf.is_some_and(|jwk| jwk.contains_key("kid") && !jwk.contains_key("alg"))
                && text(&claims, names::claim::AGENT) == Some(expected.agent_id.as_str())
                && claims.contains_key("jti"),
            "the auth token's cnf.jwk has a kid and no alg, and its agent claim names the agent",
        );
    } else {
        report.expect(
            text(&head, "typ") == Some(names::typ::AUTH) && text(&claims, "dwk") == Some(names::dwk::ACCESS) && from_to,
            "the auth token is an aa-auth+jwt from the auth server for the resource",
        );
    }
    report.expect(
        cnf_thumbprint(&claims, expected.generation).as_deref() == Some(expected.agent_jkt.as_str()),
        "the auth token is bound to the agent key (cnf.jwk)",
    );
    report.expect(
        text(&claims, "scope") == Some(DATA_SCOPES)
            && text(&claims, "sub").is_some()
            && lifetime(&claims).is_some_and(|l| l <= 3600),
        "the auth token grants data.read data.write to the approving person for at most 1 h",
    );
    let retry = &outcome.response;
    report.expect(
        retry.step == FlowStep::Retry && signed_as(retry, names::scheme::JWT, expected.generation),
        "the agent retried with Signature-Key scheme jwt carrying the auth token",
    );
    let body = retry.json().unwrap_or_default();
    // The agent behind the auth token is known in both generations: the demo generation
    // names it in the token, draft -11 through its key's binding to the `jwks_uri`
    // signer that key first signed as.
    let agent = &expected.agent_id;
    report.expect(
        retry.status == StatusCode::OK
            && text(&body, "scope") == Some(DATA_SCOPES)
            && text(&body, "agent") == Some(agent.as_str())
            && body.contains_key("data"),
        "the resource answered 200 JSON naming the agent, the scope and the data",
    );
}
