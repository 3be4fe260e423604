//! Pending requests (deferred consent): the records behind pending URLs and interaction
//! codes, the poll rules, and the consent page.
//!
//! # Poll rules
//!
//! After [AAuth draft -11, "Deferred Responses"][draft-11].
//!
//! In this order: an unknown id is `404`; a poll signed by another key than the one that
//! created the record is `403` and changes nothing (the URL is bound to the agent key's
//! thumbprint); after a terminal answer the URL is `410`; past its lifetime an unapproved
//! request is `408 expired`; a poll sooner than the current interval after the previous
//! one is `429 slow_down` and the interval grows by five seconds; then `403 denied`, `200`
//! with the auth token, or `202` again. Every terminal answer makes the URL `410`.
//!
//! # Interaction codes
//!
//! After [AAuth draft -11, "Requirement Responses"][draft-11] (the interaction code format).
//!
//! Eight Crockford base32 symbols (40 bits) from the CSPRNG. Hyphens are stripped and
//! the comparison is case-insensitive with `I`/`L` → `1` and `O` → `0`. A code is single
//! use: a decision consumes it, and it dies with its pending request.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::collections::HashMap;

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

use super::Grant;
use crate::jose::Jwk;

/// Crockford's base32 alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Seconds added to the interval on each `slow_down`.
const SLOW_DOWN_STEP: u64 = 5;

/// Where a pending request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingState {
    /// Waiting for the person.
    Pending,
    /// The person opened the consent page.
    Interacting,
    /// Approved by the person `sub`; the next poll receives the auth token.
    Approved {
        /// The approving person's `sub`.
        sub: String,
    },
    /// Declined; the next poll receives `403 denied`.
    Denied,
    /// A terminal answer was given; the pending URL answers `410`.
    Gone,
}

/// One pending request.
pub(super) struct Record {
    pub(super) id: String,
    pub(super) code: String,
    agent: Jwk,
    agent_jkt: String,
    grant: Grant,
    state: PendingState,
    expires_at: u64,
    interval: u64,
    last_poll: Option<u64>,
}

impl Record {
    pub(super) fn new(agent: Jwk, grant: Grant, state: PendingState, now: u64, lifetime: u64, interval: u64) -> Self {
        Record {
            id: super::random_id(),
            code: interaction_code(),
            agent_jkt: agent.thumbprint(),
            agent,
            grant,
            state,
            expires_at: now + lifetime,
            interval,
            // The 202 counts as the first answer: the agent waits `Retry-After` before polling.
            last_poll: Some(now),
        }
    }
}

/// The answer to one poll.
pub(super) enum Poll {
    Unknown,
    OtherAgent,
    Gone,
    SlowDown { retry_after: u64 },
    Expired,
    Denied,
    Waiting { retry_after: u64, status: &'static str },
    Approved { grant: Grant, sub: String, agent: Box<Jwk> },
}

/// What the consent page shows.
pub(super) enum ConsentView {
    Unknown,
    Over,
    Open {
        code: String,
        resource: String,
        scope: String,
        agent_jkt: String,
    },
}

/// Every pending request, by id, and the live codes.
#[derive(Default)]
pub(super) struct Store {
    records: HashMap<String, Record>,
    codes: HashMap<String, String>,
}

impl Store {
    pub(super) fn insert(&mut self, record: Record) {
        self.codes.insert(record.code.clone(), record.id.clone());
        self.records.insert(record.id.clone(), record);
    }

    pub(super) fn poll(&mut self, id: &str, thumbprint: &str, now: u64) -> Poll {
        let Some(record) = self.records.get_mut(id) else {
            return Poll::Unknown;
        };
        if !crate::jose::thumbprints_match(&record.agent_jkt, thumbprint) {
            return Poll::OtherAgent;
        }
        let answer = match &record.state {
            PendingState::Gone => return Poll::Gone,
            PendingState::Pending | PendingState::Interacting if now >= record.expires_at => Poll::Expired,
            _ if record.last_poll.is_some_and(|last| now < last + record.interval) => {
                record.interval += SLOW_DOWN_STEP;
                record.last_poll = Some(now);
                return Poll::SlowDown {
                    retry_after: record.interval,
                };
            }
            PendingState::Denied => Poll::Denied,
            PendingState::Approved { sub } => Poll::Approved {
                grant: record.grant.clone(),
                sub: sub.clone(),
                agent: Box::new(record.agent.clone()),
            },
            PendingState::Pending => Poll::Waiting {
                retry_after: record.interval,
                status: "pending",
            },
            PendingState::Interacting => Poll::Waiting {
                retry_after: record.interval,
                status: "interacting",
            },
        };
        record.last_poll = Some(now);
        if !matches!(answer, Poll::Waiting { .. }) {
            record.state = PendingState::Gone;
            self.codes.remove(&record.code);
        }
        answer
    }

    fn live(&mut self, code: &str, now: u64) -> Option<&mut Record> {
        let id = self.codes.get(&normalize_code(code)?)?;
        self.records
            .get_mut(id)
            .filter(|r| now < r.expires_at && matches!(r.state, PendingState::Pending | PendingState::Interacting))
    }

    pub(super) fn decide(&mut self, code: &str, decision: PendingState, now: u64) -> bool {
        let Some(record) = self.live(code, now) else {
            return false;
        };
        record.state = decision;
        let code = record.code.clone();
        self.codes.remove(&code);
        true
    }

    pub(super) fn open(&mut self, code: &str, now: u64) -> ConsentView {
        if let Some(record) = self.live(code, now) {
            record.state = PendingState::Interacting;
            return ConsentView::Open {
                code: record.code.clone(),
                resource: record.grant.resource.clone(),
                scope: record.grant.scope.clone(),
                agent_jkt: record.agent_jkt.clone(),
            };
        }
        let known = normalize_code(code).is_some_and(|c| self.codes.contains_key(&c));
        if known { ConsentView::Over } else { ConsentView::Unknown }
    }

    pub(super) fn state_by_code(&self, code: &str) -> Option<PendingState> {
        let code = normalize_code(code)?;
        self.records.values().find(|r| r.code == code).map(|r| r.state.clone())
    }
}

/// Eight Crockford base32 symbols from 40 CSPRNG bits.
fn interaction_code() -> String {
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    let bits = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    (0..8)
        .rev()
        .map(|i| char::from(CROCKFORD[((bits >> (i * 5)) & 31) as usize]))
        .collect()
}

/// The canonical form of a code as a person may type it, or `None` if it cannot be one.
pub(crate) fn normalize_code(code: &str) -> Option<String> {
    let mut out = String::with_capacity(8);
    for c in code.chars().filter(|c| *c != '-') {
        let c = match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            c if c.is_ascii() && CROCKFORD.contains(&(c as u8)) => c,
            _ => return None,
        };
        out.push(c);
    }
    (out.len() >= 8 && out.len() <= 64).then_some(out)
}

/// `?code=…` on the consent page.
#[derive(Debug, serde::Deserialize)]
pub(super) struct InteractQuery {
    #[serde(default)]
    pub(super) code: String,
}

/// The consent form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ConsentForm {
    pub(super) code: String,
    pub(super) decision: String,
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto}}\
         code{{background:#eee;padding:0 .2em}}button{{font-size:1.1em;margin-right:1em}}</style>\
         </head><body><h1>{title}</h1>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    response
        .headers_mut()
        .insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

pub(super) fn render_consent(view: &ConsentView, person: &str) -> Response {
    match view {
        ConsentView::Unknown => page(
            StatusCode::NOT_FOUND,
            "Unknown code",
            "<p>No pending request has this code.</p>",
        ),
        ConsentView::Over => page(
            StatusCode::GONE,
            "Request over",
            "<p>This request was already decided or has expired.</p>",
        ),
        ConsentView::Open {
            code,
            resource,
            scope,
            agent_jkt,
        } => {
            let scopes: String = scope
                .split(' ')
                .map(|s| format!("<li><code>{}</code></li>", escape(s)))
                .collect();
            let body = format!(
                "<p>Signed in as <b>{person}</b>. Code <code>{code}</code>.</p>\
                 <p>An agent (key thumbprint <code>{agent}</code>, verified by its signature) asks \
                 to access <b>{resource}</b> with:</p><ul>{scopes}</ul>\
                 <form method=\"post\" action=\"interact\">\
                 <input type=\"hidden\" name=\"code\" value=\"{code}\">\
                 <button name=\"decision\" value=\"approve\">Approve</button>\
                 <button name=\"decision\" value=\"deny\">Deny</button></form>",
                person = escape(person),
                code = escape(code),
                agent = escape(agent_jkt),
                resource = escape(resource),
            );
            page(StatusCode::OK, "Authorize an agent", &body)
        }
    }
}

pub(super) fn render_decision(decided: bool, decision: &str) -> Response {
    match (decided, decision) {
        (true, "approve") => page(
            StatusCode::OK,
            "Approved",
            "<p>The agent will receive its auth token. You can close this page.</p>",
        ),
        (true, _) => page(
            StatusCode::OK,
            "Denied",
            "<p>The agent's request was declined. You can close this page.</p>",
        ),
        (false, _) => page(
            StatusCode::GONE,
            "Request over",
            "<p>This request was already decided or has expired.</p>",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_codes_are_eight_crockford_symbols() {
        for _ in 0..64 {
            let code = interaction_code();
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| CROCKFORD.contains(&b)), "{code}");
        }
    }

    #[test]
    fn codes_compare_after_hyphens_case_and_look_alikes_are_folded() {
        assert_eq!(normalize_code("7r6x-kprp").as_deref(), Some("7R6XKPRP"));
        assert_eq!(normalize_code("ILO0-abcd").as_deref(), Some("1100ABCD"));
        assert_eq!(normalize_code("7R6XKPR"), None);
        assert_eq!(normalize_code("7R6XKPRU"), None);
        assert_eq!(normalize_code("7R6XKPR\u{e9}"), None);
    }
}
