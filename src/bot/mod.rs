//! Web Bot Auth: requests of bots and crawlers from the open web, verified by the same
//! layer as AAuth requests and handed on as a separate kind of caller.
//!
//! # Design
//!
//! A request with `Signature-Input` and `Signature`, **no** `Signature-Key`, whose
//! signature has `tag="web-bot-auth"` (of several signatures, the one member so tagged,
//! when exactly one is: a CDN may add its own; two so tagged stay on the AAuth path), is
//! verified as Web Bot Auth when
//! [`AAuthBuilder::web_bot_auth`](crate::AAuthBuilder::web_bot_auth) enabled it (otherwise,
//! and for every request with `Signature-Key`, nothing changes: the AAuth pipeline answers
//! it). A verified bot becomes a [`VerifiedBot`] in the request's extensions (directory
//! origin + key thumbprint) and **never** a [`VerifiedRequest`](crate::VerifiedRequest): every
//! agent, person, scope and detail requirement treats it as an unsigned request and
//! answers with its usual challenge. [`require_bot`](crate::guard::require_bot) and
//! [`require_bot_from`](crate::guard::require_bot_from) admit bots; audit events carry
//! `kind=bot` and the `tower_aauth_requests_total` reason of an admitted bot is `bot`.
//!
//! The verification is built on this crate's own RFC 9421 engine and discovery
//! fetcher rather than on the `web-bot-auth` crate: the same strict `Signature-Input`
//! parser, signature base and Ed25519 check as the AAuth path (one label, duplicate
//! components and members refused, capped fields, verification with `verify_strict`
//! semantics), the same guarded fetcher (URL admission before any resolver, every
//! resolved address checked, no redirects, body caps, one total timeout) and discovery
//! limits, and no second HTTP client, parser or key cache to pay for on the hot path.
//!
//! # Drafts followed
//!
//! * `draft-ietf-webbotauth-httpsig-protocol-01` (HTTP Message Signatures for automated
//!   traffic), for the request signature;
//! * `draft-meunier-webbotauth-httpsig-directory-00` (HTTP Message Signatures Directory),
//!   for the directory and its response signature;
//! * `draft-meunier-webbotauth-registry-04` (Signature Agent Card), of which only the
//!   JWKS member (`keys`) is read.
//!
//! # What is verified, in order (no I/O before the fetch)
//!
//! 1. `@authority` (or `@target-uri`) covered, with this resource's own authority in the
//!    base; `Signature-Agent` covered exactly once: as `"signature-agent";key="<member>"`
//!    (the Dictionary form), or whole (`"signature-agent"`, the legacy bare-String form a
//!    large provider still sends; refusable with
//!    [`WebBotAuthOptions::legacy_agent_form`]). Else `401 invalid_input`.
//! 2. On a method the layer protects against replay
//!    ([`ReplayProtection`](crate::replay::ReplayProtection), by default every unsafe
//!    method), a signature without `nonce` must cover `@method` and `@path` (or
//!    `@target-uri`), else `401 invalid_input, required_input=("@method" "@path")`: a
//!    signature over the authority alone, captured on a `GET`, would otherwise be replayed
//!    as a `POST` to any path. **A nonce-less signature on a safe method (`GET`) gives
//!    attribution only**: it names the bot, but it may be presented again within its
//!    lifetime; a route for which that matters requires nonces
//!    ([`WebBotAuthOptions::require_nonce`]) or protects every method.
//! 3. `created` and `expires` both present; `created` at most the configured skew ahead
//!    (`clock_skew`), `expires` not passed and at most
//!    [`WebBotAuthOptions::max_lifetime`] after `created` (default one hour).
//! 4. `alg`, when sent, `ed25519` (`unsupported_algorithm`); `keyid` a base64url JWK
//!    SHA-256 thumbprint (43 characters), else `invalid_signature`.
//! 5. The covered `Signature-Agent` member an RFC 9651 String holding an `https` origin
//!    (optionally with `/` or the directory's well-known path), admitted by the same raw-string
//!    grammar as AAuth identifiers (a DNS name, no port, no userinfo, no address literal;
//!    `http://127.0.0.1:PORT` only under the loopback fence), else `invalid_key`.
//! 6. The signature over the rebuilt base with the key of thumbprint `keyid` in the
//!    directory `{origin}/.well-known/http-message-signatures-directory`; then, when the
//!    signature covers `content-digest`, the body against it exactly as on the AAuth path
//!    (read under the same body cap, `413` beyond it; a mismatch is `401
//!    invalid_signature`), so such a request always takes the slow path.
//! 7. `nonce`, when sent, remembered, keyed by key and nonce in a domain of its own;
//!    without a nonce the signature itself is remembered for replay-checked methods.
//!    Either until the signature's `expires` (plus the allowed skew), after which it is
//!    refused anyway. A second use is `429 signature_reused`. On a replay-protected method
//!    the entry goes to the layer's replay store (shared between replicas when it is);
//!    on any other method the nonce goes to a store of the bots' own, in memory and bounded
//!    (50 000 live nonces; beyond it such a bot gets `503`), so that a flood of bot
//!    requests never fills the replay capacity AAuth requests need.
//!
//! The directory is fetched through the discovery fetcher (see [`crate::discovery`]) and
//! counts only when it is a `200` of media type
//! `application/http-message-signatures-directory+json` holding a JWKS of at most
//! `max_keys` keys. A listed key is used only if the directory response carries a
//! signature **by that key** (`tag="http-message-signatures-directory"`, covering
//! `"@authority";req` with the directory's authority, `created` not in the future,
//! `expires` not passed), and only until that signature expires. Keys are cached by
//! `(directory URL, thumbprint)` under the discovery configuration's limits: `max-age`
//! clamped to at least a minute, an unknown thumbprint refetched at most once per
//! cooldown, failures remembered, new directories budgeted. Every fetch failure looks
//! the same to the client (`401 invalid_key`); an unknown thumbprint is `401
//! unknown_key`.
//!
//! Refusals: signature failures are `401` with one `Signature-Error` (the crate's
//! registered codes, as on the AAuth path), reuse is `429` (the draft's answer), and a
//! route that requires a bot answers a request without one `403 bot_required` with an
//! `Accept-Signature` asking for a Web Bot Auth signature.

pub(crate) mod agent;
mod directory;
mod options;
mod principal;
pub(crate) mod verify;

pub use options::WebBotAuthOptions;
pub use principal::VerifiedBot;

pub(crate) use directory::DirectoryCache;
pub(crate) use verify::{BotStep, Bots, Limits, REUSED, Selected, select};
