//! Replay protection: remember each accepted signature for as long as it could be
//! accepted again, and refuse the second use.
//!
//! # Design
//!
//! The layer inserts a verified request's key into the store (atomically, before anything
//! downstream runs) and **releases it again when one of this crate's route guards refuses
//! the request**; the layer-wide default requirement and revocation are judged before the
//! insert. The rule: *replay capacity is spent only on requests that were admitted* — that
//! reached a handler, or a deferred route's hold. A flood of valid signatures that guards
//! refuse (throwaway `hwk` keys) leaves the store as it found it.
//!
//! AAuth defines no nonce; the `created` window bounds replay in time and this module
//! closes the window itself ([AAuth draft -11, "HTTP Message Signatures Profile",
//! freshness and replay][draft-11] lets a verifier keep such a cache):
//!
//! * **What is remembered.** A [`ReplayKey`]: SHA-256 over a domain tag, the thumbprint of
//!   the key that verified the request and the exact signature base. Never the `Signature`
//!   bytes or text: base64 padding bits and alphabets (we accept both) and, for ECDSA,
//!   `(r, n−s)` give several valid encodings of one signature. The base covers
//!   `@signature-params`, so `created`, the label and the covered list are all in the key.
//! * **When.** Only after the signature (and any token) verified, the token is not revoked
//!   and the default requirement (if any) admits the request: an attacker cannot fill the
//!   store with garbage, and a forged request cannot burn a legitimate one's slot.
//! * **Which methods.** By default the unsafe ones (`POST`, `PUT`, `PATCH`, `DELETE`, and
//!   any method that is not `GET`/`HEAD`/`OPTIONS`/`TRACE`); [`ReplayProtection::AllMethods`]
//!   extends it to every request. A second use is `401 invalid_signature`.
//! * **How long.** Signature window + allowed clock skew: a signature is accepted from
//!   `created − skew` to `created + window`, so no entry can be needed for longer.
//! * **Failing closed.** A store that cannot answer ([`MemoryReplayStore`] full,
//!   `RedisReplayStore` unreachable) yields a `503` [`Error`](crate::Error) with
//!   `Retry-After`; the request is not served unprotected. Nothing is cached about the
//!   failure, so service resumes as soon as the store answers again.
//!
//! # Releasing refused requests
//!
//! Why release after the fact rather than insert at the point of admission: a route
//! without any guard has no point of admission the layer could hand the insert to, and
//! the check must stay one atomic insert before the handler (of two concurrent copies of
//! one request, exactly one reaches it). So the insert stays where it was and a refusal
//! undoes it:
//!
//! * Every refusal by [`GuardLayer`](crate::guard::GuardLayer) (challenge, `403`, scope ceiling),
//!   [`require_detail`](crate::AAuth::require_detail), [`SingleUseLayer`](crate::guard::SingleUseLayer) and a deferred
//!   guard's non-deferred answers carries a crate-private response extension naming the
//!   request's replay key. When the response reaches the layer with the key it inserted,
//!   the layer releases it ([`ReplayStore::try_release`], or [`ReplayStore::release`]
//!   awaited inside the response future, so the refusal is sent after the entry is gone
//!   and a resent copy meets the guard again, not `invalid_signature`).
//! * These guards decide before calling what they wrap, so a released request never
//!   reached a handler: a request runs at most once per signature even if a guard's
//!   verdict changes within the signature window. A replay of a refused request is judged
//!   (and refused) again; a copy arriving while the original is still in flight is
//!   `invalid_signature`, as before.
//! * Naming the key means a refusal that a handler obtains from some other request (say,
//!   by calling a guarded service itself) cannot release this request's entry.
//! * Not released: responses of handlers and of anything that is not one of these guards
//!   (axum's `404`/`405`, a rejection by this crate's axum extractors, which
//!   run inside the handler once other extractors may have acted), inner-service errors,
//!   and requests whose response future is dropped. A `202` of a deferred route keeps its
//!   entry: the held request may still run.
//! * A single-use grant is released the same way when a guard inside [`SingleUseLayer`](crate::guard::SingleUseLayer)
//!   refuses after the grant was consumed.
//!
//! The [`ReplayStore`] trait has a synchronous [`ReplayStore::try_insert`] so that the
//! in-memory store keeps the layer's no-allocation fast path; a networked store answers
//! `None` there and is awaited through [`ReplayStore::insert`]. Release follows the same
//! pattern; a store that does not implement it keeps refused requests' entries until they
//! expire (correct, but without this protection of its capacity).
//!
//! The same stores back single-use grants: a [`ReplayKey::jti`] key consumes an auth
//! token's `(iss, jti)` once (only on routes that ask for it; an auth token is otherwise
//! presented on every request for its lifetime).
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

pub(crate) mod key;
pub(crate) mod measured;
pub(crate) mod memory;
#[cfg(feature = "redis")]
mod redis_store;
pub(crate) mod single_use;
pub(crate) mod store;

pub use key::ReplayKey;
pub use memory::MemoryReplayStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{RedisReplayStore, RedisReplayStoreBuilder};
pub use store::{Insertion, ReplayOptions, ReplayProtection, ReplayStore};
