//! The verifying tower layer: [`AAuthLayer`] → [`AAuthService`] → [`ResponseFuture`].
//!
//! * Unsigned request (none of the three signature headers): passes through with no
//!   identity; guards and extractors decide later.
//! * Partial or bad signature: `401` with exactly one `Signature-Error`,
//!   `Cache-Control: no-store` and a problem+json body; the inner service never runs.
//! * Valid: the revocation set is checked (`401 revoked_jwt`), a [`VerifiedRequest`](crate::VerifiedRequest) is
//!   inserted into the request's extensions, the default requirement is evaluated, then
//!   the replay store for replay-checked methods (`401 invalid_signature` on a second use,
//!   `503` when the store cannot answer), and the inner service is called. When a route
//!   guard of this crate refuses the request, its replay entry is released before the
//!   refusal is sent: only admitted requests hold replay capacity. See [`crate::policy`]
//!   and [`crate::replay`].
//! * With Web Bot Auth enabled, a request signed with `tag="web-bot-auth"` and no
//!   `Signature-Key` takes the bot path ([`crate::bot`]): verified against its key
//!   directory, a [`VerifiedBot`](crate::bot::VerifiedBot) is inserted instead of a
//!   [`VerifiedRequest`](crate::VerifiedRequest), then the same default requirement, replay
//!   store (`429` on reuse) and inner service follow.
//! * A signed `GET` of a served pending URL (deferred delivery, see [`crate::guard`]) is
//!   answered here, after the same verification: the layer reads the pending record
//!   (in process or in the shared store), and when the poll may run it, re-dispatches the
//!   held request through the application it wraps, so that any replica can answer any
//!   poll. The re-dispatched request carries an in-process marker and is passed to the
//!   application without being verified again.
//! * Every request ends in exactly one audit event ([`crate::policy::audit`]) when a
//!   subscriber listens to that target; nothing is captured for it otherwise. Every
//!   request is counted once in `tower_aauth_requests_total` ([`crate::Metric`]), and a
//!   signed one's verification time is recorded.
//!
//! When every key is in memory the whole verification runs inside `call` and the future
//! is the inner service's own, wrapped without boxing. Only a key fetch, a covered
//! `content-digest` or a networked replay store takes the boxed slow path.
//!
//! The request body type must be constructible from [`Bytes`] so that a body buffered to
//! check `Content-Digest` can be handed on (axum's `Body` and `Full<Bytes>` are).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::batch::Ticket as BatchTicket;
use crate::bot::VerifiedBot;
use crate::challenge::{error_response, polled_after_completion};
use crate::deferred::{Begun, Resumed, Ticket};
use crate::error::Error;
use crate::future::BoxFuture;
use crate::policy::audit::{self, AuditContext};
use crate::replay::key::ReplayKey;
use crate::replay::store::{Insertion, Refused, ReplayStore};
use crate::state::Inspected;
use crate::state::Shared;
use crate::verified::VerifiedRequest;
use crate::verifier::{Pending, Step, Verifier};

/// Verifies AAuth request signatures. Build it with [`AAuth::layer`](crate::AAuth::layer).
#[derive(Clone, Debug)]
pub struct AAuthLayer {
    shared: Arc<Shared>,
}

impl AAuthLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        AAuthLayer { shared }
    }
}

impl<S> Layer<S> for AAuthLayer {
    type Service = AAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AAuthService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service produced by [`AAuthLayer`].
#[derive(Clone)]
pub struct AAuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for AAuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AAuthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The slow path's result: the request to pass on, or a refusal with what was verified
/// before it (for the audit event).
type VerifyFuture<B> = Pin<Box<dyn Future<Output = Result<Next<B>, Refusal>> + Send>>;

/// Where the slow path hands the request back.
enum Next<B> {
    /// Verified: the default requirement, then the replay store for `Some` key.
    Gate(Request<B>, Option<ReplayKey>),
    /// Its replay key was remembered: call the inner service.
    Call(Request<B>, ReplayKey),
}

/// The replay entry a request holds while the inner service runs, released if a guard of
/// this crate refuses it.
struct Release {
    key: ReplayKey,
    store: Arc<dyn ReplayStore>,
    /// A bot nonce's entry in the bots' own store besides (see [`remember_bot_nonce`]).
    local: Option<(ReplayKey, Arc<dyn ReplayStore>)>,
}

impl Release {
    /// Gives the entries back; the local one synchronously (an in-memory store).
    fn release(self) -> Option<crate::replay::store::Releasing> {
        if let Some((key, store)) = &self.local {
            let _ = store.try_release(key);
        }
        crate::replay::store::release(&self.store, self.key)
    }
}

/// A refusal from the slow path.
struct Refusal {
    error: Error,
    verified: Option<VerifiedRequest>,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal { error, verified: None }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = &self.shared;
        request.extensions_mut().insert(Inspected(shared.clone()));
        if request.extensions().get::<Resumed>().is_some() {
            // A held request this layer re-dispatches for a poll (only code in this
            // process sets the marker): verified when it was held, its signature consumed.
            return ResponseFuture {
                state: State::Inner {
                    future: inner.call(request),
                    release: None,
                    ticket: None,
                    // The poll that re-dispatched it is the request counted.
                    verified: None,
                },
                audit: None,
            };
        }
        let verifier = Verifier { shared };
        let path = original_path(&request);
        let mut audit = audit::enabled().then(|| Box::new(AuditContext::new(request.method(), path)));
        let started = Instant::now();
        if let Some(bots) = &shared.bots
            && let Some(selected) = crate::bot::select(request.headers(), shared.header_cap, shared.max_components)
        {
            let state = verify_bot(shared, bots, inner, request, selected, started, audit.as_deref_mut());
            return ResponseFuture { state, audit };
        }
        let step = verifier.verify_head(request.method(), request.uri(), request.headers(), path);
        let state = match step {
            Step::Unsigned => gate(shared, inner, request, None, audit.as_deref()),
            Step::Done(Ok(verified)) => {
                crate::metrics::verification(started, true);
                admitted(shared, inner, request, verified, &mut audit)
            }
            Step::Queued(verified, ticket) => State::Batched {
                ticket,
                waiting: Some(Waiting {
                    request,
                    verified,
                    service: inner,
                }),
                shared: shared.clone(),
                started,
            },
            Step::Done(Err(error)) => {
                crate::metrics::verification(started, false);
                reject(shared, error, audit.as_deref())
            }
            Step::Pending(pending) => State::Verifying {
                future: Box::pin(finish(*pending, shared.clone(), request, started)),
                service: Some(inner),
                shared: shared.clone(),
            },
        };
        ResponseFuture { state, audit }
    }
}

/// A request whose signature waits in a batch, with what the head verified: held in the
/// response future itself (the batched warm path allocates only its ticket).
struct Waiting<S, B> {
    request: Request<B>,
    verified: VerifiedRequest,
    service: S,
}

/// A verified request: the policy's admission, then the default requirement and the
/// inner service.
fn admitted<S, B, ResBody>(
    shared: &Arc<Shared>,
    inner: S,
    mut request: Request<B>,
    mut verified: VerifiedRequest,
    audit: &mut Option<Box<AuditContext>>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Send + 'static,
    ResBody: From<Bytes>,
{
    let admission = admit_now(shared, &mut verified);
    if let Some(audit) = audit {
        audit.verified = Some(verified.clone());
    }
    match admission {
        Ok(replay) => {
            request.extensions_mut().insert(verified);
            gate(shared, inner, request, replay, audit.as_deref())
        }
        Err(error) => reject(shared, error, audit.as_deref()),
    }
}

/// Calls the inner service unless the default requirement answers first; a request it
/// refuses never reaches the replay store.
fn gate<S, B, ResBody>(
    shared: &Arc<Shared>,
    inner: S,
    request: Request<B>,
    replay: Option<ReplayKey>,
    audit: Option<&AuditContext>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Send + 'static,
    ResBody: From<Bytes>,
{
    if let Some(requirement) = &shared.authz.default_requirement
        && !shared.is_public(original_path(&request))
        && let Some(response) = crate::guard::judge::check(
            shared,
            requirement,
            &crate::guard::requirement::RuleContext::of_request(&request),
        )
    {
        answered(
            &response,
            request.extensions().get::<VerifiedRequest>().is_some(),
            audit,
        );
        return State::Answered {
            response: Some(response),
        };
    }
    remember(shared, inner, request, replay, audit)
}

/// The replay check (for `Some` key), then the inner service.
fn remember<S, B, ResBody>(
    shared: &Arc<Shared>,
    inner: S,
    mut request: Request<B>,
    replay: Option<ReplayKey>,
    audit: Option<&AuditContext>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Send + 'static,
    ResBody: From<Bytes>,
{
    let Some(key) = replay else {
        return call_inner(shared, inner, request, None, audit);
    };
    if let Err(error) = still_acceptable(shared, &request).and_then(|()| remember_bot_nonce(shared, &mut request)) {
        return reject(shared, error, audit);
    }
    let bot = request.extensions().get::<VerifiedBot>();
    let local = local_nonce(shared, bot);
    let (ttl, store, bot) = (replay_ttl(shared, bot), replay_store(shared, bot), bot.is_some());
    match store.try_insert(&key, ttl) {
        Some(Ok(Insertion::First)) => call_remembered(shared, inner, request, key, audit),
        Some(Ok(Insertion::Repeat)) => reject(shared, replayed(bot), audit),
        Some(Err(error)) => {
            // Not served: the nonce's local entry is given back.
            if let Some((key, store)) = local {
                let _ = store.try_release(&key);
            }
            reject(shared, error, audit)
        }
        None => State::Verifying {
            future: Box::pin(remember_later(shared.clone(), key, request)),
            service: Some(inner),
            shared: shared.clone(),
        },
    }
}

fn call_remembered<S, B, ResBody>(
    shared: &Arc<Shared>,
    inner: S,
    request: Request<B>,
    key: ReplayKey,
    audit: Option<&AuditContext>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Send + 'static,
    ResBody: From<Bytes>,
{
    let bot = request.extensions().get::<VerifiedBot>();
    let release = Release {
        key,
        store: replay_store(shared, bot).clone(),
        local: local_nonce(shared, bot).map(|(key, store)| (key, store.clone())),
    };
    call_inner(shared, inner, request, Some(release), audit)
}

/// Calls the inner service, or answers a poll of a served pending URL or a request to a
/// mounted endpoint.
fn call_inner<S, B, ResBody>(
    shared: &Arc<Shared>,
    mut inner: S,
    request: Request<B>,
    release: Option<Release>,
    audit: Option<&AuditContext>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Send + 'static,
    ResBody: From<Bytes>,
{
    let path = original_path(&request);
    if let Some(which) = shared.endpoints.at(path) {
        let response = match crate::endpoint::answer(shared, which, &request) {
            crate::endpoint::Answer::Now(response) => response.map(ResBody::from),
            crate::endpoint::Answer::Later(future) => {
                return State::Polling {
                    future: Box::pin(async move { crate::deferred::Begun::Answer(future.await) }),
                    service: Some(inner),
                    shared: shared.clone(),
                };
            }
        };
        answered(
            &response,
            request.extensions().get::<VerifiedRequest>().is_some(),
            audit,
        );
        return State::Answered {
            response: Some(response),
        };
    }
    if request.method() == http::Method::GET && shared.pending.serves(path) {
        let path = path.to_owned();
        let (parts, _) = request.into_parts();
        return State::Polling {
            future: Box::pin(crate::deferred::begin(shared.clone(), parts, path)),
            service: Some(inner),
            shared: shared.clone(),
        };
    }
    let verified = Some(if request.extensions().get::<VerifiedRequest>().is_some() {
        Caller::Agent
    } else if request.extensions().get::<VerifiedBot>().is_some() {
        Caller::Bot
    } else {
        Caller::Unsigned
    });
    State::Inner {
        future: inner.call(request),
        release,
        ticket: None,
        verified,
    }
}

/// The path the agent signed: the original URI's, even inside a nested axum router.
fn original_path<B>(request: &Request<B>) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = request.extensions().get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    request.uri().path()
}

/// After verification, before anything downstream: the policy's admission (the agent
/// behind the key, revocation on every request, cached tokens included, and the grant
/// narrowed to what is honoured). `Ok(Some(key))`: the replay key, checked once the default requirement
/// admits the request, so that requests it refuses spend no replay capacity.
fn admit_now(shared: &Shared, verified: &mut VerifiedRequest) -> Result<Option<ReplayKey>, Error> {
    crate::policy::admit::admit(shared, verified)?;
    Ok(verified.replay)
}

/// The replay store's slow path (a networked store).
async fn remember_later<B>(shared: Arc<Shared>, key: ReplayKey, request: Request<B>) -> Result<Next<B>, Refusal> {
    let bot = request.extensions().get::<VerifiedBot>();
    let local = local_nonce(&shared, bot).map(|(key, store)| (key, store.clone()));
    let (ttl, store, bot) = (replay_ttl(&shared, bot), replay_store(&shared, bot), bot.is_some());
    match store.insert(key, ttl).await {
        Ok(Insertion::First) => Ok(Next::Call(request, key)),
        Ok(Insertion::Repeat) => Err(replayed(bot).into()),
        Err(error) => {
            if let Some((key, store)) = local {
                let _ = store.try_release(&key);
            }
            Err(error.into())
        }
    }
}

/// The signature's time, checked again when its replay entry is asked for. The head
/// checked it when the request arrived, but a covered body is read in between, for as
/// long as the client takes: a copy whose body arrives after the first use's entry
/// expired would find the store empty. Every entry outlives the moment its signature
/// stops being acceptable, so a signature still acceptable now always finds it.
fn still_acceptable<B>(shared: &Shared, request: &Request<B>) -> Result<(), Error> {
    let now = shared.clock.now();
    if let Some(bot) = request.extensions().get::<VerifiedBot>()
        && bot.expires <= now
    {
        return Err(Error::invalid_signature("the signature has expired"));
    }
    if let Some(verified) = request.extensions().get::<VerifiedRequest>()
        && now.saturating_sub(verified.created) > shared.window
    {
        return Err(Error::invalid_signature("the signature is too old"));
    }
    Ok(())
}

/// A bot nonce on a replay-protected method is first remembered in the bots' own store,
/// where the same nonce on a safe method went: one use in this process whatever the
/// method, before the layer's store (shared by replicas) is asked. A nonce found there is
/// refused. A full bots' store (one bot can fill it) does not refuse the request: the
/// layer's store still decides its reuse, and the entry it did not get is not released.
fn remember_bot_nonce<B>(shared: &Shared, request: &mut Request<B>) -> Result<(), Error> {
    let bot = request.extensions().get::<VerifiedBot>();
    let Some((key, store)) = local_nonce(shared, bot) else {
        return Ok(());
    };
    match store.try_insert(&key, replay_ttl(shared, bot)) {
        Some(Ok(Insertion::First)) => Ok(()),
        Some(Ok(Insertion::Repeat)) => Err(crate::bot::REUSED),
        Some(Err(_)) | None => {
            if let Some(bot) = request.extensions_mut().get_mut::<VerifiedBot>() {
                bot.local = None;
            }
            Ok(())
        }
    }
}

/// The local key and store of a bot nonce on a replay-protected method.
fn local_nonce<'a>(shared: &'a Shared, bot: Option<&VerifiedBot>) -> Option<(ReplayKey, &'a Arc<dyn ReplayStore>)> {
    Some((bot?.local?, shared.bot_nonces.as_ref()?))
}

/// Where a request's replay entry goes: the layer's replay store, except for the nonce of
/// a bot on a method the layer does not protect, kept in the bots' own bounded store.
fn replay_store<'a>(shared: &'a Shared, bot: Option<&VerifiedBot>) -> &'a Arc<dyn ReplayStore> {
    match (&shared.bot_nonces, bot) {
        (Some(nonces), Some(bot)) if bot.unprotected => nonces,
        _ => &shared.replay_store,
    }
}

/// How long a replay entry is kept: as long as the signature could be accepted again. A
/// Web Bot Auth signature is accepted until its own `expires` (plus the allowed skew), which
/// may lie beyond the AAuth window; its entry lives exactly that long, no longer.
fn replay_ttl(shared: &Shared, bot: Option<&VerifiedBot>) -> std::time::Duration {
    match bot {
        Some(bot) => {
            let left = bot.expires.saturating_sub(shared.clock.now());
            std::time::Duration::from_secs(left.saturating_add(shared.max_skew).saturating_add(1))
        }
        None => shared.replay_ttl,
    }
}

/// The refusal of a second use: `401 invalid_signature` for AAuth, `429` for a bot (the
/// Web Bot Auth protocol's answer to reuse).
fn replayed(bot: bool) -> Error {
    if bot {
        crate::bot::REUSED
    } else {
        crate::replay::store::REPLAYED
    }
}

/// The Web Bot Auth path of [`AAuthService::call`]: the head, then, as for AAuth, the
/// default requirement, the replay store and the inner service; a directory fetch takes
/// the boxed slow path.
fn verify_bot<S, B, ResBody>(
    shared: &Arc<Shared>,
    bots: &Arc<crate::bot::Bots>,
    inner: S,
    mut request: Request<B>,
    selected: crate::bot::Selected,
    started: Instant,
    audit: Option<&mut AuditContext>,
) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes>,
{
    let verifier = Verifier { shared };
    let path = original_path(&request);
    let head = verifier
        .authority(request.uri(), request.headers())
        .and_then(|authority| {
            let target = crate::httpsig::RequestTarget {
                method: request.method().as_str(),
                scheme: &shared.scheme,
                authority,
                path,
                query: request.uri().query(),
            };
            let limits = crate::bot::Limits {
                now: shared.clock.now(),
                max_skew: shared.max_skew,
                header_cap: shared.header_cap,
                alphabet: shared.alphabet,
                protect: shared.replay_protection.covers(request.method()),
            };
            bots.head(selected, &target, request.headers(), &limits)
        });
    match head {
        Ok(crate::bot::BotStep::Done(bot, replay)) => {
            crate::metrics::verification(started, true);
            crate::metrics::bot_verification(true);
            let audit = audit.map(|audit| {
                audit.bot = Some(bot.clone());
                &*audit
            });
            request.extensions_mut().insert(bot);
            gate(shared, inner, request, replay, audit)
        }
        Ok(crate::bot::BotStep::Fetch(pending)) => {
            let bots = bots.clone();
            let shared_ = shared.clone();
            State::Verifying {
                future: Box::pin(async move {
                    let outcome = async {
                        if !pending.needs_body() {
                            return pending.finish(&bots, None).await.map(|done| (request, done));
                        }
                        let endpoint = shared_.endpoints.serves(original_path(&request));
                        let (parts, bytes) = read_body(&shared_, request, endpoint).await?;
                        let done = pending.finish(&bots, Some(&bytes)).await?;
                        Ok((rebuilt(parts, bytes, endpoint), done))
                    }
                    .await;
                    crate::metrics::verification(started, outcome.is_ok());
                    crate::metrics::bot_verification(outcome.is_ok());
                    let (mut request, (bot, replay)) = outcome?;
                    request.extensions_mut().insert(bot);
                    Ok(Next::Gate(request, replay))
                }),
                service: Some(inner),
                shared: shared.clone(),
            }
        }
        Err(error) => {
            crate::metrics::verification(started, false);
            crate::metrics::bot_verification(false);
            reject(shared, error, audit.map(|a| &*a))
        }
    }
}

/// The slow path's verification (`started` at the layer's call), then admission.
async fn finish<B>(
    mut pending: Pending,
    shared: Arc<Shared>,
    request: Request<B>,
    started: Instant,
) -> Result<Next<B>, Refusal>
where
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let endpoint = shared.endpoints.serves(original_path(&request));
    let verification = async {
        if pending.digest.is_none() {
            let verified: VerifiedRequest = pending.finish(shared.clone(), None).await?;
            return Ok((request, verified));
        }
        // Signatures waiting in a batch are decided before the body is read: a request
        // is polled for its batch while it waits, and a forged one is refused as it is
        // without batching (not read, not answered by the body's size).
        pending.settle().await?;
        let (parts, bytes) = read_body(&shared, request, endpoint).await?;
        let verified = pending.finish(shared.clone(), Some(&bytes)).await?;
        Ok::<_, Error>((rebuilt(parts, bytes, endpoint), verified))
    }
    .await;
    crate::metrics::verification(started, verification.is_ok());
    let (request, mut verified) = verification?;
    match admit_now(&shared, &mut verified) {
        Ok(replay) => {
            let mut request = request;
            request.extensions_mut().insert(verified);
            Ok(Next::Gate(request, replay))
        }
        Err(error) => Err(Refusal {
            error,
            verified: Some(verified),
        }),
    }
}

/// The body of a request whose signature covers `content-digest`, read under the body
/// cap (the endpoints' smaller one for a mounted endpoint).
async fn read_body<B>(
    shared: &Shared,
    request: Request<B>,
    endpoint: bool,
) -> Result<(http::request::Parts, Bytes), Error>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    let limit = if endpoint {
        shared.max_body_bytes.min(crate::endpoint::MAX_BODY_BYTES)
    } else {
        shared.max_body_bytes
    };
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(Error(crate::error::Kind::PayloadTooLarge))
        }
        Err(_) => Err(Error::invalid_signature("the request body could not be read")),
    }
}

/// The request again around the body [`read_body`] read, which an endpoint receives as
/// verified.
fn rebuilt<B: From<Bytes>>(parts: http::request::Parts, bytes: Bytes, endpoint: bool) -> Request<B> {
    let mut request = Request::from_parts(parts, B::from(bytes.clone()));
    if endpoint {
        request.extensions_mut().insert(crate::endpoint::VerifiedBody(bytes));
    }
    request
}

fn reject<S, B, ResBody>(shared: &Shared, error: Error, audit: Option<&AuditContext>) -> State<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    log_rejection(&error);
    let outcome = error.audit_outcome();
    crate::metrics::request(outcome.decision, outcome.reason);
    if let Some(audit) = audit {
        audit.refusal(&error);
    }
    State::Answered {
        response: Some(error_response(shared.hook(), &error)),
    }
}

/// Counts (and audits) a response the layer answers without the inner service: the
/// default requirement's refusal.
fn answered<B>(response: &Response<B>, verified: bool, audit: Option<&AuditContext>) {
    let (decision, code) = audit::classify(response, verified);
    crate::metrics::request(decision, code);
    if let Some(audit) = audit {
        audit.response(response);
    }
}

fn log_rejection(error: &Error) {
    tracing::debug!(target: "tower_aauth", code = error.code(), detail = error.detail(), "request refused");
}

pin_project! {
    /// The response future of [`AAuthService`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        audit: Option<Box<AuditContext>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            release: Option<Release>,
            // Who was verified, for the request counter; `None` for a re-dispatched held
            // request, whose poll is the request counted.
            verified: Option<Caller>,
            // A re-dispatched held request's record, to write back.
            ticket: Option<Ticket>,
        },
        Polling {
            future: BoxFuture<'static, Begun>,
            service: Option<S>,
            shared: Arc<Shared>,
        },
        Verifying {
            future: VerifyFuture<B>,
            service: Option<S>,
            shared: Arc<Shared>,
        },
        Batched {
            ticket: BatchTicket,
            waiting: Option<Waiting<S, B>>,
            shared: Arc<Shared>,
            started: Instant,
        },
        Answered {
            response: Option<S::Response>,
        },
        Releasing {
            future: crate::replay::store::Releasing,
            response: Option<S::Response>,
        },
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: From<Bytes> + Send + 'static,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner {
                    future,
                    release,
                    verified,
                    ticket,
                } => {
                    let result = ready!(future.poll(cx));
                    if let Some(verified) = *verified {
                        count_inner(&result, verified);
                    }
                    if let (Ok(response), Some(audit)) = (&result, this.audit.take()) {
                        audit.response(response);
                    }
                    if let Some(ticket) = ticket.take() {
                        match result {
                            // Awaited before answering: a repeated poll finds the result.
                            Ok(response) => this.state.set(State::Releasing {
                                future: ticket.finish(),
                                response: Some(response),
                            }),
                            // The record stays `Running` and is judged interrupted later.
                            Err(error) => return Poll::Ready(Err(error)),
                        }
                        continue;
                    }
                    match (result, release.take()) {
                        (Ok(response), Some(release)) if Refused::key(release.key).matches(&response) => {
                            match release.release() {
                                None => return Poll::Ready(Ok(response)),
                                // Awaited before answering: a resent copy meets the guard again.
                                Some(future) => this.state.set(State::Releasing {
                                    future,
                                    response: Some(response),
                                }),
                            }
                        }
                        (result, _) => return Poll::Ready(result),
                    }
                }
                StateProj::Verifying {
                    future,
                    service,
                    shared,
                } => {
                    let result = ready!(future.as_mut().poll(cx));
                    let shared = shared.clone();
                    match result {
                        Ok(next) => {
                            let Some(service) = service.take() else {
                                return Poll::Ready(Ok(polled_after_completion()));
                            };
                            let state = match next {
                                Next::Gate(request, replay) => {
                                    if let Some(audit) = this.audit.as_mut() {
                                        audit.verified = request.extensions().get::<VerifiedRequest>().cloned();
                                        audit.bot = request.extensions().get::<VerifiedBot>().cloned();
                                    }
                                    gate(&shared, service, request, replay, this.audit.as_deref())
                                }
                                Next::Call(request, key) => {
                                    call_remembered(&shared, service, request, key, this.audit.as_deref())
                                }
                            };
                            this.state.set(state);
                        }
                        Err(Refusal { error, verified }) => {
                            // A refusal by the replay store comes after the identity was recorded.
                            if let (Some(audit), Some(verified)) = (this.audit.as_mut(), verified) {
                                audit.verified = Some(verified);
                            }
                            this.state.set(reject(&shared, error, this.audit.as_deref()));
                        }
                    }
                }
                StateProj::Batched {
                    ticket,
                    waiting,
                    shared,
                    started,
                } => {
                    let good = ready!(ticket.poll_verdict(cx));
                    let Some(Waiting {
                        request,
                        verified,
                        service,
                    }) = waiting.take()
                    else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let shared = shared.clone();
                    crate::metrics::verification(*started, good);
                    let state = if good {
                        admitted(&shared, service, request, verified, this.audit)
                    } else {
                        reject(&shared, crate::verifier::bad_signature(), this.audit.as_deref())
                    };
                    this.state.set(state);
                }
                StateProj::Polling {
                    future,
                    service,
                    shared,
                } => {
                    let begun = ready!(future.as_mut().poll(cx));
                    let Some(mut service) = service.take() else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    match begun {
                        Begun::Answer(response) => {
                            let response = response.map(ResBody::from);
                            if let Some(audit) = this.audit.take() {
                                audit.response(&response);
                            }
                            return Poll::Ready(Ok(response));
                        }
                        Begun::Dispatch(dispatch) => {
                            let (request, ticket) = *dispatch;
                            let mut request = request.map(B::from);
                            request.extensions_mut().insert(Inspected(shared.clone()));
                            this.state.set(State::Inner {
                                future: service.call(request),
                                release: None,
                                ticket: Some(ticket),
                                verified: Some(Caller::Agent),
                            });
                        }
                    }
                }
                StateProj::Answered { response } => {
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Releasing { future, response } => {
                    ready!(future.as_mut().poll(cx));
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}

/// Who the layer let through, for the request counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Unsigned,
    Agent,
    Bot,
}

/// Counts a request the inner service answered (or failed: the layer let it through).
fn count_inner<B, E>(result: &Result<Response<B>, E>, caller: Caller) {
    let (decision, code) = match result {
        Ok(response) => audit::classify(response, caller == Caller::Agent),
        Err(_) => (crate::error::AuditDecision::Allow, "unsigned"),
    };
    let code = match (caller, decision, code) {
        (Caller::Agent, crate::error::AuditDecision::Allow, "unsigned") => "verified",
        (Caller::Bot, crate::error::AuditDecision::Allow, "unsigned") => "bot",
        _ => code,
    };
    crate::metrics::request(decision, code);
}
