//! Resource-managed interaction ([AAuth draft -11, "Interaction Required" and
//! "Interaction Codes"][draft-11]): the `202` that sends a person to the resource's own
//! page with a code, the polls of its pending URL, and the page's side
//! ([`Interaction`]: look a code up, decide).
//!
//! # Design
//!
//! A pending interaction is a small record in the [`SessionStore`](super::SessionStore)
//! under its pending id (the deferred store's shape: `/aauth/pending/<22 base64url>`,
//! answered by the layer like any pending URL), its code under the code's normal form,
//! and the agent key's one open interaction under the key's thumbprint: an agent key
//! has at most one pending interaction (a new one for other scopes ends the previous),
//! and an agent repeating its request gets the same pending URL and code again. Every
//! record has the interaction lifetime as its time to live and counts against the
//! store's byte bound; only a verified draft -11 request the guard is about to answer
//! with `202` creates one.
//!
//! Codes are 10 symbols of Crockford base32 from the operating system's CSPRNG (50 bits),
//! shown `XXXXX-XXXXX`; look-ups strip hyphens, ignore case and fold `I`/`L` to `1` and
//! `O` to `0`. A code is single use (consumed by the decision) and expires with its
//! pending request. It is a correlation handle, not a credential: the approval itself is
//! the resource's own sign-in on its page. Guessing one is not a practical attack: at
//! 100 000 guesses a second against 10 000 open interactions, one is found after about
//! 2^50 / 10^9 s ≈ 13 days of sustained traffic, and it shows the page, nothing more. So
//! failed look-ups never lock anyone out (a per-process lockout would let anyone block
//! every person with a few dozen requests a minute): beyond [`MAX_FAILED_LOOKUPS`] in a
//! minute they are logged, once a minute, for the operator; a page that wants to slow a
//! client down limits it by the client it sees (the crate sees none). Malformed codes are
//! refused without a store read and are not counted.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::store::{InteractionRecord, Phase, SessionRecord, StoreError, code_key, decode, encode, interaction_key};
use crate::challenge::error_response;
use crate::names;
use crate::profile::Generation;
use crate::state::Shared;
use crate::verified::VerifiedRequest;

/// Failed code look-ups in one minute beyond which the process logs a warning.
pub(crate) const MAX_FAILED_LOOKUPS: u32 = 64;
/// Symbols of a code (50 bits).
const CODE_LEN: usize = 10;
/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Seconds a finished interaction still answers `410` rather than `404`.
const TOMBSTONE: u64 = 120;
/// Seconds added to the interval on each `slow_down`.
const SLOW_DOWN_STEP: u64 = 5;
/// The most scopes and bytes of scopes one interaction asks for.
const MAX_SCOPES: usize = 32;
const MAX_SCOPE_BYTES: usize = 2048;
/// The longest account id a decision may name.
const MAX_ACCOUNT_BYTES: usize = 256;

/// A new code: display form and normal form.
fn new_code() -> (String, String) {
    let mut bytes = [0u8; CODE_LEN];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    let normal: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect();
    let display = format!("{}-{}", &normal[..5], &normal[5..]);
    (display, normal)
}

/// The normal form of a code as a person typed or a page received it.
pub(crate) fn normalize(code: &str) -> Option<String> {
    if code.len() > 32 {
        return None;
    }
    let mut normal = String::with_capacity(CODE_LEN);
    for c in code.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' => continue,
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        normal.push(c);
    }
    (normal.len() == CODE_LEN).then_some(normal)
}

/// The key naming an agent key's open interaction.
fn agent_key(jkt: &str) -> String {
    format!("a:{jkt}")
}

fn ttl(seconds: u64) -> Duration {
    Duration::from_secs(seconds.max(1))
}

/// A problem+json answer (`Cache-Control: no-store`), its body shaped by the hook.
pub(crate) fn refusal<B: From<Bytes>>(
    shared: &Shared,
    status: StatusCode,
    code: &'static str,
    detail: &'static str,
) -> Response<B> {
    crate::challenge::problem_response(shared.hook(), status, code, detail)
}

/// `503` with `Retry-After` for a store that could not answer.
pub(crate) fn unavailable<B: From<Bytes>>(shared: &Shared, _: StoreError) -> Response<B> {
    error_response(
        shared.hook(),
        &crate::replay::store::unavailable("the session store is unreachable"),
    )
}

/// Starts a resource-managed interaction for a verified request: the person is to approve
/// `scopes` for the agent on the resource's interaction page. Answers `202` +
/// `requirement=interaction` with the pending URL (the same one again while the agent
/// key's interaction for the same scopes is open), `503` when the store cannot answer or
/// is full, `500` when the pending URLs are not served (nobody would answer the polls).
///
/// For the crate's own entry points (the session guard; an authorization endpoint that
/// hands the person over to the resource's own interaction).
pub(crate) async fn start_interaction<B: From<Bytes>>(
    shared: &Arc<Shared>,
    verified: &VerifiedRequest,
    scopes: &[String],
    account: Option<&str>,
) -> Response<B> {
    if !shared.pending.is_served() {
        tracing::error!(
            target: "tower_aauth",
            "resource-managed interaction needs the pending URLs served: merge AAuth::pending_router()"
        );
        return error_response(
            shared.hook(),
            &crate::error::Error(crate::error::Kind::Misconfigured {
                detail: "resource-managed interaction needs the pending router",
            }),
        );
    }
    if scopes.len() > MAX_SCOPES || scopes.iter().map(String::len).sum::<usize>() > MAX_SCOPE_BYTES {
        return error_response(
            shared.hook(),
            &crate::error::Error(crate::error::Kind::Misconfigured {
                detail: "an interaction asks for too many scopes",
            }),
        );
    }
    match open(shared, verified, scopes, account).await {
        Ok(Some((id, record))) => pending(shared, &id, &record),
        Ok(None) => {
            tracing::debug!(target: "tower_aauth", "session store full; no interaction started");
            error_response(
                shared.hook(),
                &crate::replay::store::unavailable("no capacity for another interaction"),
            )
        }
        Err(error) => unavailable(shared, error),
    }
}

/// The agent key's open interaction for `scopes`, or a new one; `None` when the store is full.
async fn open(
    shared: &Shared,
    verified: &VerifiedRequest,
    scopes: &[String],
    account: Option<&str>,
) -> Result<Option<(String, InteractionRecord)>, StoreError> {
    let store = &shared.sessions.store;
    let options = &shared.sessions.options;
    let now = shared.clock.now();
    let jkt = verified.key_thumbprint.to_string();
    let index = agent_key(&jkt);
    if let Some(id) = store.get(&index).await?.and_then(|id| String::from_utf8(id).ok())
        && let Some(record) = store
            .get(&interaction_key(&id))
            .await?
            .and_then(|b| decode::<InteractionRecord>(&b))
    {
        let open = matches!(record.phase, Phase::Waiting(_)) && now < record.expires_at;
        let same_key = crate::jose::thumbprints_match(&record.jkt, &jkt);
        if open && same_key && record.scopes == scopes {
            return Ok(Some((id, record)));
        }
        if open {
            // One open interaction per agent key: the new request ends the previous.
            end(shared, &id, &record).await?;
        }
    }
    let id = crate::deferred::store::new_id();
    let (code, normal) = new_code();
    let record = InteractionRecord {
        jkt,
        agent: verified.agent().map(ToString::to_string),
        agent_provider: verified.agent().map(|agent| agent.provider().to_owned()),
        person: person_of(verified),
        account: account.map(str::to_owned),
        scopes: scopes.to_vec(),
        code,
        expires_at: now + options.interaction_lifetime,
        interval: options.retry_after,
        last_answer: now,
        phase: Phase::Waiting(false),
    };
    let lifetime = ttl(options.interaction_lifetime + TOMBSTONE);
    let key = interaction_key(&id);
    if !store.put(&key, encode(&record), lifetime).await? {
        return Ok(None);
    }
    let code = code_key(&normal);
    if !store.put(&code, id.clone().into_bytes(), lifetime).await? {
        store.take(&key).await?;
        return Ok(None);
    }
    if !store.put(&index, id.clone().into_bytes(), lifetime).await? {
        store.take(&key).await?;
        store.take(&code).await?;
        return Ok(None);
    }
    Ok(Some((id, record)))
}

/// Ends an interaction: a tombstone under its id (`410` to polls), its code gone.
async fn end(shared: &Shared, id: &str, record: &InteractionRecord) -> Result<(), StoreError> {
    let store = &shared.sessions.store;
    if let Some(normal) = normalize(&record.code) {
        store.take(&code_key(&normal)).await?;
    }
    let mut over = record.clone();
    over.phase = Phase::Over;
    store.put(&interaction_key(id), encode(&over), ttl(TOMBSTONE)).await?;
    Ok(())
}

/// The person a verified person token names, `(iss, sub)`.
fn person_of(verified: &VerifiedRequest) -> Option<(String, String)> {
    let token = verified.token.as_ref()?;
    if token.claims.kind != crate::token::TokenKind::Person {
        return None;
    }
    Some((token.claims.iss.to_string(), token.claims.sub.clone()?))
}

/// When the agent last polled an interaction and the interval it must keep.
#[derive(serde::Serialize, serde::Deserialize)]
struct Pace {
    last_answer: u64,
    interval: u64,
}

/// The key of an interaction's poll pace.
fn pace_key(id: &str) -> String {
    format!("{}:pace", interaction_key(id))
}

/// `202` + `requirement=interaction` for the record.
fn pending<B: From<Bytes>>(shared: &Shared, id: &str, record: &InteractionRecord) -> Response<B> {
    let status = match record.phase {
        Phase::Waiting(true) => "interacting",
        _ => names::poll::PENDING,
    };
    let body = serde_json::to_vec(&serde_json::json!({ "status": status })).unwrap_or_default();
    let mut response = Response::new(B::from(Bytes::from(body)));
    *response.status_mut() = StatusCode::ACCEPTED;
    let url = format!("{}{}", shared.resource, shared.sessions.options.interaction_path);
    let value = format!(
        "requirement={}; {}=\"{url}\"; {}=\"{}\"",
        names::requirement::INTERACTION,
        names::requirement::URL_PARAM,
        names::requirement::CODE_PARAM,
        record.code
    );
    let location = format!("{}{}{id}", shared.resource, names::path::PENDING_PREFIX);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Both are built from the validated resource identifier, path, id and code.
    if let (Ok(value), Ok(location)) = (HeaderValue::from_str(&value), HeaderValue::from_str(&location)) {
        headers.insert(names::header::AAUTH_REQUIREMENT, value);
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::RETRY_AFTER, HeaderValue::from(record.interval));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Answers a poll of pending URL `id` if it names an interaction; `None` otherwise (the
/// deferred store answers it).
pub(crate) async fn poll(shared: &Shared, id: &str, verified: &VerifiedRequest) -> Option<Response<Bytes>> {
    let store = &shared.sessions.store;
    let key = interaction_key(id);
    let record = match store.get(&key).await {
        Ok(found) => decode::<InteractionRecord>(&found?)?,
        Err(error) => return Some(unavailable(shared, error)),
    };
    Some(match answer(shared, id, record, verified).await {
        Ok(response) => response,
        Err(error) => unavailable(shared, error),
    })
}

async fn answer(
    shared: &Shared,
    id: &str,
    mut record: InteractionRecord,
    verified: &VerifiedRequest,
) -> Result<Response<Bytes>, StoreError> {
    let store = &shared.sessions.store;
    let key = interaction_key(id);
    if !crate::jose::thumbprints_match(&record.jkt, &verified.key_thumbprint) {
        return Ok(refusal(
            shared,
            StatusCode::FORBIDDEN,
            names::poll::INVALID_REQUEST,
            "this pending request belongs to another agent key",
        ));
    }
    let now = shared.clock.now();
    // The polls' pace lives apart from the record, so that a poll never writes the
    // record back over the person's decision made meanwhile.
    let pace_key = pace_key(id);
    if let Some(pace) = store.get(&pace_key).await?.and_then(|b| decode::<Pace>(&b)) {
        record.last_answer = pace.last_answer;
        record.interval = pace.interval;
    }
    match record.phase.clone() {
        Phase::Over => Ok(refusal(
            shared,
            StatusCode::GONE,
            names::poll::INVALID_CODE,
            "this pending request is over",
        )),
        Phase::Waiting(_) if now >= record.expires_at => {
            end(shared, id, &record).await?;
            Ok(refusal(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                names::poll::EXPIRED,
                "the interaction expired before the person decided",
            ))
        }
        Phase::Expired => {
            end(shared, id, &record).await?;
            Ok(refusal(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                names::poll::EXPIRED,
                "the interaction expired before the person decided",
            ))
        }
        Phase::Denied => {
            end(shared, id, &record).await?;
            Ok(refusal(
                shared,
                StatusCode::FORBIDDEN,
                names::poll::DENIED,
                "the person declined",
            ))
        }
        Phase::Waiting(_) if now < record.last_answer.saturating_add(record.interval) => {
            record.interval = record.interval.saturating_add(SLOW_DOWN_STEP).min(3600);
            record.last_answer = now;
            let pace = Pace {
                last_answer: now,
                interval: record.interval,
            };
            store
                .put(&pace_key, encode(&pace), ttl(remaining(&record, now)))
                .await?;
            let mut response = refusal(
                shared,
                StatusCode::TOO_MANY_REQUESTS,
                names::poll::SLOW_DOWN,
                "polled faster than Retry-After",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(record.interval));
            Ok(response)
        }
        Phase::Waiting(_) => {
            record.last_answer = now;
            let pace = Pace {
                last_answer: now,
                interval: record.interval,
            };
            store
                .put(&pace_key, encode(&pace), ttl(remaining(&record, now)))
                .await?;
            Ok(pending(shared, id, &record))
        }
        Phase::Approved(account) => {
            // Of polls at once exactly one takes the approval and gets the token.
            if store.take(&key).await?.is_none() {
                return Ok(pending(shared, id, &record));
            }
            let session = SessionRecord {
                jkt: record.jkt.clone(),
                account,
                agent: record.agent.clone(),
                agent_provider: record.agent_provider.clone(),
                person: record.person.clone(),
                scopes: record.scopes.clone(),
                approved_at: now,
                issued_at: now,
                expires_at: now + shared.sessions.options.session_lifetime,
                rotated: false,
            };
            match super::access::issue(shared, &session).await {
                Ok(Some(token)) => {
                    let mut over = record.clone();
                    over.phase = Phase::Over;
                    store.put(&key, encode(&over), ttl(TOMBSTONE)).await?;
                    // The key's index names its one open interaction: forgotten only if it
                    // is still this one (the key may have opened a newer one meanwhile).
                    let index = agent_key(&record.jkt);
                    if store.get(&index).await?.as_deref() == Some(id.as_bytes())
                        && let Some(taken) = store.take(&index).await?
                        && taken != id.as_bytes()
                    {
                        // A newer one slipped in between: put it back.
                        store.put(&index, taken, ttl(remaining(&record, now))).await?;
                    }
                    Ok(approved(&token))
                }
                outcome => {
                    // Not issued: the approval waits for the next poll.
                    store.put(&key, encode(&record), ttl(remaining(&record, now))).await?;
                    outcome?;
                    Ok(error_response(
                        shared.hook(),
                        &crate::replay::store::unavailable("no capacity for another session"),
                    ))
                }
            }
        }
    }
}

/// Seconds a record must still be kept.
fn remaining(record: &InteractionRecord, now: u64) -> u64 {
    record.expires_at.saturating_sub(now) + TOMBSTONE
}

/// The pending URL's `200`: the session token in `AAuth-Access`.
fn approved(token: &str) -> Response<Bytes> {
    let body = serde_json::to_vec(&serde_json::json!({ "status": "approved" })).unwrap_or_default();
    let mut response = Response::new(Bytes::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(token) {
        headers.insert(super::access::AAUTH_ACCESS, value);
    }
    response
}

/// Whether `generation` agents know resource-managed interaction.
pub(crate) fn supported(generation: Generation) -> bool {
    generation == Generation::Draft11
}

/// A pending interaction as the resource's own interaction page sees it
/// ([`AAuth::interaction`](crate::AAuth::interaction)): what to show the person (the
/// agent, the scopes), and the person's decision. The agent learns the decision on its
/// next poll.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Interaction {
    /// The code, in display form (`XXXXX-XXXXX`).
    pub code: String,
    /// The agent (its `aauth:` identifier and provider) when the agent named itself.
    pub agent: Option<String>,
    /// The RFC 7638 thumbprint of the agent's key.
    pub key_thumbprint: String,
    /// The scopes the person is asked to approve.
    pub scopes: Vec<String>,
    /// The person who asked, when the interaction comes from the authorization endpoint
    /// (the `iss` and `sub` of their verified person token): the page should approve only
    /// for that person's own sign-in.
    pub person: Option<crate::policy::PersonId>,
    /// The account that person asked for at the authorization endpoint.
    pub account: Option<String>,
    /// When the interaction expires (seconds since the epoch, the resource's clock).
    pub expires_at: u64,
    shared: Arc<Shared>,
    id: String,
    normal: String,
}

impl Interaction {
    /// The interaction `code` names (as the person typed it or the page received it in
    /// `?code=`), while it waits for a decision; marks it `interacting` for the agent's
    /// polls. `None` for a malformed, unknown, decided or expired code, or a store that
    /// cannot answer.
    pub(crate) async fn find(shared: &Arc<Shared>, code: &str) -> Option<Interaction> {
        normalize(code)?;
        let Some((id, normal, mut record)) = lookup(shared, code).await else {
            failed(shared);
            return None;
        };
        if record.phase == Phase::Waiting(false) {
            record.phase = Phase::Waiting(true);
            let now = shared.clock.now();
            let key = interaction_key(&id);
            let written = shared
                .sessions
                .store
                .put(&key, encode(&record), ttl(remaining(&record, now)))
                .await;
            if written.is_err() {
                return None;
            }
        }
        Some(Interaction {
            code: record.code,
            agent: record.agent,
            key_thumbprint: record.jkt,
            scopes: record.scopes,
            person: record
                .person
                .map(|(issuer, subject)| crate::policy::PersonId::new(issuer, subject)),
            account: record.account,
            expires_at: record.expires_at,
            shared: shared.clone(),
            id,
            normal,
        })
    }

    /// The person approved, for `account`, the resource's own account id (1 to 256
    /// bytes): the agent's next poll gets a session token bound to its key, and its
    /// requests with it reach handlers as this account. `false` when nothing was decided
    /// (the code was used or the interaction ended meanwhile, the account id is unusable,
    /// or the store cannot answer).
    pub async fn approve(&self, account: impl Into<String>) -> bool {
        let account = account.into();
        if account.is_empty() || account.len() > MAX_ACCOUNT_BYTES {
            return false;
        }
        self.decide(Phase::Approved(account)).await
    }

    /// The person declined: the agent's next poll gets `403 denied`.
    pub async fn deny(&self) -> bool {
        self.decide(Phase::Denied).await
    }

    /// The interaction was abandoned or timed out on the page: the agent's next poll
    /// gets `408 expired`.
    pub async fn expire(&self) -> bool {
        self.decide(Phase::Expired).await
    }

    async fn decide(&self, phase: Phase) -> bool {
        let store = &self.shared.sessions.store;
        // Taking the code makes the decision single use, whatever runs at once.
        match store.take(&code_key(&self.normal)).await {
            Ok(Some(id)) if id == self.id.as_bytes() => {}
            _ => return false,
        }
        let key = interaction_key(&self.id);
        let Ok(Some(mut record)) = store
            .get(&key)
            .await
            .map(|b| b.and_then(|b| decode::<InteractionRecord>(&b)))
        else {
            return false;
        };
        let now = self.shared.clock.now();
        if !matches!(record.phase, Phase::Waiting(_)) || now >= record.expires_at {
            return false;
        }
        record.phase = phase;
        matches!(
            store.put(&key, encode(&record), ttl(remaining(&record, now))).await,
            Ok(true)
        )
    }
}

/// The waiting interaction `code` names: its id, the code's normal form and the record.
async fn lookup(shared: &Shared, code: &str) -> Option<(String, String, InteractionRecord)> {
    let store = &shared.sessions.store;
    let normal = normalize(code)?;
    let id = String::from_utf8(store.get(&code_key(&normal)).await.ok()??).ok()?;
    let record = decode::<InteractionRecord>(&store.get(&interaction_key(&id)).await.ok()??)?;
    let waiting = matches!(record.phase, Phase::Waiting(_)) && shared.clock.now() < record.expires_at;
    waiting.then_some((id, normal, record))
}

fn failed(shared: &Shared) {
    let now = shared.clock.now();
    let mut failures = shared
        .sessions
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if failures.0 / 60 != now / 60 {
        *failures = (now, 0);
    }
    failures.1 = failures.1.saturating_add(1);
    if failures.1 == MAX_FAILED_LOOKUPS {
        tracing::warn!(
            target: "tower_aauth",
            failed = MAX_FAILED_LOOKUPS,
            "many failed interaction code look-ups this minute (codes being guessed?); none is refused for it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_codes_are_ten_crockford_symbols_shown_in_two_groups() {
        for _ in 0..64 {
            let (display, normal) = new_code();
            assert_eq!(display.len(), 11);
            assert_eq!(&display[5..6], "-");
            assert_eq!(normalize(&display).as_deref(), Some(normal.as_str()));
            assert!(normal.bytes().all(|b| ALPHABET.contains(&b)));
        }
    }

    #[test]
    fn look_ups_fold_case_hyphens_and_confusable_letters() {
        assert_eq!(normalize("a1b2c-3d4e5").as_deref(), Some("A1B2C3D4E5"));
        assert_eq!(normalize("ILO00-11111").as_deref(), Some("1100011111"));
        assert_eq!(normalize("A-1-B-2-C-3-D-4-E-5").as_deref(), Some("A1B2C3D4E5"));
        for bad in [
            "",
            "A1B2C3D4E",
            "A1B2C3D4E5F",
            "U1B2C3D4E5",
            "A1B2C 3D4E5",
            "A1B2C3D4É5",
            &"-".repeat(40),
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }
}
