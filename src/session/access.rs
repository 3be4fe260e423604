//! Session tokens ([AAuth draft -11, "AAuth-Access"][draft-11]): issued on the pending
//! URL's `200` once the person approved, returned by the agent as
//! `Authorization: AAuth <token>` under a signature covering `authorization`, checked by
//! the session guard ([`SessionPolicy`]), and rotated.
//!
//! # Design
//!
//! A token is 256 random bits (base64url, 43 characters): opaque to the agent, and to the
//! store, which keeps the session under the token's SHA-256. A session is bound to the
//! thumbprint of the key that started the interaction: every use must be signed by that
//! key with `authorization` covered (the layer refuses an uncovered `AAuth` credential
//! with `invalid_input`; the guard checks again), so a token alone, or under another key,
//! is refused. The credential is read strictly: exactly one `Authorization` field line,
//! the scheme `AAuth` (any case), one space, then an RFC 9110 `token68` of at most 512
//! characters; anything else is `401 invalid_session`, as is an unknown, expired or
//! revoked token, or one bound to another key.
//!
//! Lifetime and rotation: a session is valid for the session lifetime; used after half
//! of it, the response carries a fresh token in `AAuth-Access` (the agent switches to
//! the newest value) and the old token lives 30 seconds more, for requests in flight.
//! Rotation never extends a session past the maximum age after the approval: then the
//! person is asked again. Revocation: [`Session::revoke`] from a handler (logout), or
//! revoking the agent or its key in [`crate::policy`], which the layer applies before
//! any guard.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use tower_service::Service;

use super::interaction::{refusal, start_interaction, supported, unavailable};
use super::store::{ROTATION_GRACE, SessionRecord, SessionStore, StoreError, decode, encode, session_key};
use crate::challenge::{Challenge, challenge_response, error_response};
use crate::guard::judge::{Reader, layer_verdict, precheck, respond};
use crate::guard::middleware::{BoxedResponse, GuardLayer, GuardPolicy, Verdict, take_ready};
use crate::guard::requirement::{Decision, Requirement, RuleContext};
use crate::state::Shared;
use crate::token::Scopes;
use crate::verified::VerifiedRequest;

/// `AAuth-Access`, the response header carrying a session token.
pub(crate) const AAUTH_ACCESS: HeaderName = HeaderName::from_static(crate::names::header::AAUTH_ACCESS);
/// The problem code of every refused session credential.
pub(crate) const INVALID_SESSION: &str = "invalid_session";
/// The problem code for an agent that must interact but cannot.
pub(crate) const INTERACTION_REQUIRED: &str = "interaction_required";
/// The longest session credential read.
const MAX_TOKEN_LEN: usize = 512;

/// A new session token: 256 bits from the operating system's CSPRNG.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    crate::jose::b64url(bytes)
}

/// Stores `record` under a new token and returns the token; `None` when the store is full.
pub(crate) async fn issue(shared: &Shared, record: &SessionRecord) -> Result<Option<String>, StoreError> {
    store_under(shared, new_token(), record).await
}

/// The token that succeeds `token` at rotation: derived from it, so that requests rotating
/// one session at once all write the same successor instead of forking it (the holder of
/// `token` learns the successor from the answer anyway; a store dump holds neither, only
/// their hashes).
fn successor_token(token: &str) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(b"tower-aauth session successor\0");
    hash.update(token.as_bytes());
    crate::jose::b64url(hash.finalize())
}

/// Stores `record` under `token`; `None` when the store is full.
async fn store_under(shared: &Shared, token: String, record: &SessionRecord) -> Result<Option<String>, StoreError> {
    let ttl = record.expires_at.saturating_sub(shared.clock.now()).max(1);
    let stored = shared
        .sessions
        .store
        .put(&session_key(&token), encode(record), Duration::from_secs(ttl))
        .await?;
    Ok(stored.then_some(token))
}

/// What the request's `Authorization` fields say about a session credential.
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    /// No `AAuth` credential (another scheme, or no field).
    None,
    /// One well-formed `AAuth` credential.
    Token(String),
    /// Empty, whitespace or control characters, not a token68, too long, or more than one
    /// credential.
    Malformed,
}

/// Reads the `AAuth` credential strictly ([AAuth draft -11, "AAuth-Access"][draft-11]:
/// empty values, embedded whitespace or control characters and more than one credential
/// are refused).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
fn credential(headers: &HeaderMap) -> Credential {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Credential::None;
    };
    let bytes = first.as_bytes();
    let names_aauth = |value: &[u8]| value.len() >= 5 && value[..5].eq_ignore_ascii_case(b"aauth");
    let multiple = values.next().is_some();
    if !names_aauth(bytes)
        && !headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .any(|v| names_aauth(v.as_bytes()))
    {
        return Credential::None;
    }
    if multiple || bytes.len() < 7 || bytes[5] != b' ' {
        return Credential::Malformed;
    }
    let token = &bytes[6..];
    if token.len() > MAX_TOKEN_LEN || !is_token68(token) {
        return Credential::Malformed;
    }
    // Visible ASCII only, checked above.
    Credential::Token(String::from_utf8_lossy(token).into_owned())
}

/// RFC 9110 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(value: &[u8]) -> bool {
    let body = value.iter().position(|&b| b == b'=').unwrap_or(value.len());
    body > 0
        && value[..body]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        && value[body..].iter().all(|&b| b == b'=')
}

/// The session a request was served with: the account the resource's interaction page
/// approved, for handlers (an axum extractor; as `Option<Session>` on routes an auth
/// token may also serve).
#[derive(Clone)]
#[non_exhaustive]
pub struct Session {
    /// The resource's own account id, as its interaction page approved it.
    pub account: String,
    /// The agent (its `aauth:` identifier and provider) when it named itself.
    pub agent: Option<String>,
    /// The scopes the person approved.
    pub scopes: Vec<String>,
    /// When the presented token expires (seconds since the epoch, the resource's clock).
    pub expires_at: u64,
    store: Arc<dyn SessionStore>,
    /// The store keys of the presented token and of its successor when this request
    /// rotated it.
    keys: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("account", &self.account)
            .field("agent", &self.agent)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Ends this session (a logout): the presented token, and the fresh one if this
    /// response rotated it, are refused from now on.
    ///
    /// # Errors
    ///
    /// The store could not answer (`503` if answered); the session may still be valid.
    pub async fn revoke(&self) -> Result<(), crate::error::Error> {
        for key in &self.keys {
            if self.store.take(key).await.is_err() {
                return Err(crate::replay::store::unavailable("the session store is unreachable"));
            }
        }
        Ok(())
    }
}

/// The rule of the session guard, a [`GuardLayer`](crate::guard::GuardLayer) made by
/// [`AAuth::require_session`](crate::AAuth::require_session): admit requests that present
/// a session, or that an auth token for its scopes serves.
#[derive(Clone, Debug)]
pub struct SessionPolicy {
    shared: Arc<Shared>,
    scopes: Arc<[String]>,
    requirement: Arc<Requirement>,
}

impl SessionPolicy {
    pub(crate) fn layer(shared: Arc<Shared>, scopes: Vec<String>) -> GuardLayer<SessionPolicy> {
        shared.sessions.mark_page_served();
        let requirement = Requirement::Scopes(Scopes::from_iter_unchecked(scopes.clone()));
        GuardLayer {
            policy: SessionPolicy {
                shared,
                scopes: scopes.into(),
                requirement: Arc::new(requirement),
            },
        }
    }
}

/// What the session guard's asynchronous tail does.
pub enum SessionHold {
    /// Check the presented session token, then serve.
    Use(String),
    /// Start an interaction (`202`).
    Start,
}

impl<S, ReqBody, ResBody> GuardPolicy<S, ReqBody, ResBody> for SessionPolicy
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body + From<Bytes> + Send + 'static,
{
    type Hold = SessionHold;

    fn check(&self, request: &Parts) -> Verdict<ResBody, SessionHold> {
        let shared = &self.shared;
        if shared.is_public_path(request) {
            return Verdict::Allow;
        }
        let verified = match layer_verdict(&request.extensions, Reader::Guard) {
            Ok(verified) => verified,
            Err(error) => return Verdict::Answer(error_response(shared.hook(), &error)),
        };
        let Some(verified) = verified else {
            // A session token without a signature is a bearer token: never accepted.
            let generation = shared.profile.default_generation();
            return Verdict::Answer(challenge_response(shared.hook(), &Challenge::AgentToken, generation));
        };
        if let Some(response) = precheck(shared, &self.requirement, &request.extensions) {
            return Verdict::Answer(response);
        }
        match credential(&request.headers) {
            Credential::Malformed => Verdict::Answer(refusal(
                shared,
                StatusCode::UNAUTHORIZED,
                INVALID_SESSION,
                "the AAuth credential is not one well-formed session token",
            )),
            // The layer refuses an uncovered AAuth credential; checked again all the same.
            Credential::Token(_) if !verified.covers("authorization") => Verdict::Answer(error_response(
                shared.hook(),
                &crate::error::Error::invalid_input(["authorization"]),
            )),
            Credential::Token(token) => Verdict::Hold(SessionHold::Use(token)),
            Credential::None => {
                let cx = RuleContext::of_parts(request);
                let decision = if self.scopes.is_empty() {
                    Decision::Refuse(crate::error::Error::forbidden(
                        INTERACTION_REQUIRED,
                        "this resource signs agents in through its own interaction",
                    ))
                } else {
                    self.requirement.evaluate(&cx)
                };
                if matches!(decision, Decision::Allow) {
                    return Verdict::Allow;
                }
                if supported(verified.generation) && super::capabilities::declares_interaction(&request.headers) {
                    return Verdict::Hold(SessionHold::Start);
                }
                match respond(shared, decision, Some(verified)) {
                    Some(response) => Verdict::Answer(response),
                    None => Verdict::Allow,
                }
            }
        }
    }

    fn hold(&self, hold: SessionHold, inner: &mut S, request: Request<ReqBody>) -> BoxedResponse<ResBody, S::Error> {
        let (shared, scopes, inner) = (self.shared.clone(), self.scopes.clone(), take_ready(inner));
        Box::pin(async move {
            let refused = crate::replay::store::Refused::of(request.extensions());
            let Some(verified) = request.extensions().get::<VerifiedRequest>().cloned() else {
                let generation = shared.profile.default_generation();
                return Ok(refused.mark(challenge_response(shared.hook(), &Challenge::AgentToken, generation)));
            };
            match hold {
                SessionHold::Start => Ok(refused.mark(start_interaction(&shared, &verified, &scopes, None).await)),
                SessionHold::Use(token) => {
                    serve(shared, &scopes, verified, token, inner, request)
                        .await
                        .map(|served| match served {
                            Served::Ran(response) => response,
                            Served::Refused(response) => refused.mark(response),
                        })
                }
            }
        })
    }
}

enum Served<B> {
    Ran(Response<B>),
    Refused(Response<B>),
}

/// The session's agent, when the interaction knew it.
fn record_agent(record: &SessionRecord) -> Option<crate::policy::identity::AgentId> {
    let id = record.agent.as_deref()?;
    match record.agent_provider.as_deref() {
        Some(provider) => crate::policy::identity::AgentId::new(provider, id.split(" (").next()?).ok(),
        None => id.parse().ok(),
    }
}

/// Checks the session token, rotates it when due, and runs the route with the session.
async fn serve<S, ReqBody, ResBody>(
    shared: Arc<Shared>,
    scopes: &[String],
    verified: VerifiedRequest,
    token: String,
    mut inner: S,
    mut request: Request<ReqBody>,
) -> Result<Served<ResBody>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    let store = &shared.sessions.store;
    let key = session_key(&token);
    let record = match store.get(&key).await {
        Ok(found) => found.and_then(|bytes| decode::<SessionRecord>(&bytes)),
        Err(error) => return Ok(Served::Refused(unavailable(&shared, error))),
    };
    let now = shared.clock.now();
    let invalid = |detail| {
        Ok(Served::Refused(refusal(
            &shared,
            StatusCode::UNAUTHORIZED,
            INVALID_SESSION,
            detail,
        )))
    };
    let Some(record) = record.filter(|r| now < r.expires_at) else {
        return invalid("the session token is unknown, expired or revoked");
    };
    if !crate::jose::thumbprints_match(&record.jkt, &verified.key_thumbprint) {
        return invalid("the session token is bound to another key");
    }
    // The agent the person approved stays the session's agent: its revocation and
    // ceilings hold on every use, even after the key's binding to it lapsed.
    let mut verified = verified;
    if let Some(agent) = record_agent(&record) {
        match verified.agent() {
            Some(current) if *current != agent => return invalid("the session belongs to another agent"),
            Some(_) => {}
            None => verified.agent = Some(agent),
        }
        if let Err(error) = shared.revocations.check(&verified) {
            return Ok(Served::Refused(error_response(shared.hook(), &error)));
        }
        if let Err(error) = shared.ceilings.check(&verified, scopes.iter().map(String::as_str)) {
            return Ok(Served::Refused(error_response(shared.hook(), &error)));
        }
    }
    // The person who asked through the authorization endpoint: their revocation ends it.
    if let Some((issuer, subject)) = &record.person {
        let person = crate::policy::PersonId::new(issuer.as_str(), subject.as_str());
        if shared
            .revocations
            .snapshot()
            .contains(&crate::policy::Revoked::Person(person))
        {
            return Ok(Served::Refused(error_response(
                shared.hook(),
                &crate::error::Error(crate::error::Kind::Revoked {
                    detail: "the person is revoked",
                    person_token: false,
                }),
            )));
        }
    }
    if !scopes.iter().all(|s| record.scopes.contains(s)) {
        if supported(verified.generation) && super::capabilities::declares_interaction(request.headers()) {
            return Ok(Served::Refused(
                start_interaction(&shared, &verified, scopes, None).await,
            ));
        }
        return Ok(Served::Refused(error_response(
            shared.hook(),
            &crate::error::Error::forbidden(
                "insufficient_scope",
                "the session was not approved for every scope this route requires",
            ),
        )));
    }
    let mut keys = vec![key.clone()];
    let fresh = match rotate(&shared, &token, &key, &record, now).await {
        Ok(fresh) => fresh,
        Err(error) => return Ok(Served::Refused(unavailable(&shared, error))),
    };
    if let Some((token, _)) = &fresh {
        keys.push(session_key(token));
    }
    let expires_at = fresh.as_ref().map_or(record.expires_at, |(_, r)| r.expires_at);
    request.extensions_mut().insert(Session {
        account: record.account,
        agent: record.agent,
        scopes: record.scopes,
        expires_at,
        store: store.clone(),
        keys,
    });
    let mut response = inner.call(request).await?;
    if let Some((token, _)) = fresh
        && let Ok(value) = HeaderValue::from_str(&token)
    {
        response.headers_mut().insert(AAUTH_ACCESS, value);
    }
    Ok(Served::Ran(response))
}

/// Issues a successor when the session is past half its lifetime and may still be
/// extended; the presented token then lives only [`ROTATION_GRACE`] seconds more.
async fn rotate(
    shared: &Shared,
    token: &str,
    key: &str,
    record: &SessionRecord,
    now: u64,
) -> Result<Option<(String, SessionRecord)>, StoreError> {
    let options = &shared.sessions.options;
    let half = options.session_lifetime / 2;
    let end = record.approved_at.saturating_add(options.max_session_age);
    if record.rotated || now < record.issued_at.saturating_add(half) || now >= end.saturating_sub(half) {
        return Ok(None);
    }
    let successor = SessionRecord {
        issued_at: now,
        expires_at: (now + options.session_lifetime).min(end),
        rotated: false,
        ..record.clone()
    };
    let Some(token) = store_under(shared, successor_token(token), &successor).await? else {
        return Ok(None);
    };
    let old = SessionRecord {
        rotated: true,
        expires_at: record.expires_at.min(now + ROTATION_GRACE),
        ..record.clone()
    };
    shared
        .sessions
        .store
        .put(key, encode(&old), Duration::from_secs(ROTATION_GRACE))
        .await?;
    Ok(Some((token, successor)))
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use crate::extract::ExtractRejection;
    use crate::guard::judge::{Reader, layer_verdict};
    use crate::session::access::{INTERACTION_REQUIRED, Session};

    impl<S: Send + Sync> FromRequestParts<S> for Session {
        type Rejection = ExtractRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            if let Err(error) = layer_verdict(&parts.extensions, Reader::Extractor) {
                return Err(ExtractRejection::of_error(&error));
            }
            parts.extensions.get::<Session>().cloned().ok_or_else(|| {
                ExtractRejection::of_error(&crate::error::Error::forbidden(
                    INTERACTION_REQUIRED,
                    "this route was not served with a session",
                ))
            })
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
        type Rejection = ExtractRejection;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
            if let Err(error) = layer_verdict(&parts.extensions, Reader::Extractor) {
                return Err(ExtractRejection::of_error(&error));
            }
            Ok(parts.extensions.get::<Session>().cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(http::header::AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn one_aauth_token68_is_a_credential_in_any_scheme_case() {
        for (value, token) in [
            (&b"AAuth abc-_.~+/"[..], "abc-_.~+/"),
            (b"aauth abc==", "abc=="),
            (b"AAUTH x", "x"),
        ] {
            assert_eq!(credential(&headers(&[value])), Credential::Token(token.to_owned()));
        }
    }

    #[test]
    fn other_schemes_and_no_field_are_no_credential() {
        assert_eq!(credential(&HeaderMap::new()), Credential::None);
        assert_eq!(credential(&headers(&[b"Bearer abc"])), Credential::None);
        assert_eq!(credential(&headers(&[b"Basic abc="])), Credential::None);
    }

    #[test]
    fn empty_whitespaced_control_multiple_or_oversized_credentials_are_malformed() {
        let long = [b"AAuth ".as_slice(), &[b'a'; MAX_TOKEN_LEN + 1]].concat();
        for values in [
            &[&b"AAuth"[..]][..],
            &[b"AAuth "],
            &[b"AAuth  abc"],
            &[b"AAuth abc def"],
            &[b"AAuth abc\t"],
            &[b"AAuth\tabc"],
            &[b"AAuth ab\xffc"],
            &[b"AAuth abc, AAuth def"],
            &[b"AAuth =abc"],
            &[b"AAuth ab=c"],
            &[b"AAuth abc", b"AAuth abc"],
            &[b"Bearer abc", b"AAuth abc"],
            &[b"AAuth abc", b"Bearer abc"],
            &[b"AAuthabc"],
            &[long.as_slice()],
        ] {
            assert_eq!(credential(&headers(values)), Credential::Malformed, "{values:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_authorization_fields_are_read_without_panicking(values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..700), 0..4)) {
            let mut headers = HeaderMap::new();
            for value in &values {
                if let Ok(value) = HeaderValue::from_bytes(value) {
                    headers.append(http::header::AUTHORIZATION, value);
                }
            }
            if let Credential::Token(token) = credential(&headers) {
                proptest::prop_assert!(token.len() <= MAX_TOKEN_LEN && is_token68(token.as_bytes()));
                proptest::prop_assert_eq!(headers.get_all(http::header::AUTHORIZATION).iter().count(), 1);
            }
        }
    }
}
