//! The replay store's vocabulary: the [`ReplayKey`] it remembers, the [`ReplayStore`]
//! trait, what the layer asks of it and how refusals release their entries.

use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, Method, Response};

use super::key::ReplayKey;
use crate::error::Error;
use crate::future::BoxFuture;
use crate::verified::VerifiedRequest;

/// The outcome of an insert-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insertion {
    /// The key was not present and is now remembered: serve the request.
    First,
    /// The key was already present: a replay.
    Repeat,
}

/// Insert-once storage with a time to live.
///
/// Implementations must be atomic: of any number of concurrent inserts of one key, exactly
/// one answers [`Insertion::First`]. They must answer a `503` [`Error`](crate::Error) when they
/// cannot decide (full, unreachable), never [`Insertion::First`] by default.
pub trait ReplayStore: Send + Sync + 'static {
    /// Decides without I/O when the store can; `None` sends the caller to
    /// [`ReplayStore::insert`]. The default always answers `None`.
    fn try_insert(&self, key: &ReplayKey, ttl: Duration) -> Option<Result<Insertion, Error>> {
        let _ = (key, ttl);
        None
    }

    /// Remembers `key` for `ttl` unless it is already remembered.
    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>>;

    /// Forgets `key` without I/O when the store can; `None` sends the caller to
    /// [`ReplayStore::release`]. The default keeps the entry until it expires.
    fn try_release(&self, key: &ReplayKey) -> Option<Result<(), Error>> {
        let _ = key;
        Some(Ok(()))
    }

    /// Forgets `key`, which this caller inserted ([`Insertion::First`]) for a request that
    /// was then refused before reaching any handler, so that refused requests do not hold
    /// capacity (see the module docs). Only the caller that inserted a key releases it.
    /// Keeping the entry is always safe; the default does, until it expires.
    fn release(&self, key: ReplayKey) -> BoxFuture<'_, Result<(), Error>> {
        let result = self.try_release(&key).unwrap_or(Ok(()));
        Box::pin(std::future::ready(result))
    }
}

/// Marks a response as a refusal by one of this crate's route guards, naming the refused
/// request's replay key (`None` when its method is not replay-checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused(Option<ReplayKey>);

impl Refused {
    /// The marker for the request with these extensions.
    pub(crate) fn of(extensions: &Extensions) -> Self {
        let bot = || extensions.get::<crate::bot::VerifiedBot>().and_then(|b| b.replay);
        Refused(extensions.get::<VerifiedRequest>().and_then(|v| v.replay).or_else(bot))
    }

    /// The marker for a request whose replay key is `key`.
    pub(crate) fn key(key: ReplayKey) -> Self {
        Refused(Some(key))
    }

    pub(crate) fn mark<B>(self, mut response: Response<B>) -> Response<B> {
        response.extensions_mut().insert(self);
        response
    }

    /// Whether `response` is a guard's refusal of the request this marker names.
    pub(crate) fn matches<B>(self, response: &Response<B>) -> bool {
        response.extensions().get::<Refused>() == Some(&self)
    }
}

/// A release still to be awaited (a networked store).
pub(crate) type Releasing = BoxFuture<'static, ()>;

/// Releases `key` now when the store can; otherwise returns the release to await.
pub(crate) fn release(store: &Arc<dyn ReplayStore>, key: ReplayKey) -> Option<Releasing> {
    match store.try_release(&key) {
        Some(result) => {
            log_release(result);
            None
        }
        None => {
            let store = store.clone();
            Some(Box::pin(async move { log_release(store.release(key).await) }))
        }
    }
}

fn log_release(result: Result<(), Error>) {
    if result.is_err() {
        // The entry expires with its time to live: capacity, not safety, is lost. Stores
        // log their own failures with the cause.
        tracing::debug!(target: "tower_aauth", "a refused request's replay entry could not be released");
    }
}

/// Which requests are checked against which store, for [`crate::AAuthBuilder::replay`].
#[derive(Clone, Default)]
pub struct ReplayOptions {
    pub(crate) protection: ReplayProtection,
    pub(crate) store: Option<Arc<dyn ReplayStore>>,
}

impl std::fmt::Debug for ReplayOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayOptions")
            .field("protection", &self.protection)
            .field("store", &self.store.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl ReplayOptions {
    /// The defaults: [`ReplayProtection::UnsafeMethods`], and a [`MemoryReplayStore`](crate::replay::MemoryReplayStore) of
    /// [`MemoryReplayStore::DEFAULT_CAPACITY`](crate::replay::MemoryReplayStore::DEFAULT_CAPACITY) entries, for one process.
    pub fn new() -> Self {
        ReplayOptions::default()
    }

    /// Which requests are checked.
    pub fn protection(mut self, protection: ReplayProtection) -> Self {
        self.protection = protection;
        self
    }

    /// The store. Several replicas share a `RedisReplayStore` (feature `redis`).
    pub fn store(mut self, store: impl ReplayStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store shared with other code (for example several [`crate::AAuth`]s).
    pub fn shared_store(mut self, store: Arc<dyn ReplayStore>) -> Self {
        self.store = Some(store);
        self
    }
}

/// Which requests the layer checks for replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplayProtection {
    /// No replay cache; only the `created` window bounds replay.
    Off,
    /// Every method except `GET`, `HEAD`, `OPTIONS` and `TRACE` (the default).
    #[default]
    UnsafeMethods,
    /// Every request.
    AllMethods,
}

impl ReplayProtection {
    /// Whether a request with `method` is checked.
    pub fn covers(self, method: &Method) -> bool {
        match self {
            ReplayProtection::Off => false,
            ReplayProtection::AllMethods => true,
            ReplayProtection::UnsafeMethods => !is_safe(method),
        }
    }
}

/// [RFC 9110 §9.2.1](https://www.rfc-editor.org/rfc/rfc9110#section-9.2.1) safe methods.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// The refusal for a second use of a signature.
pub(crate) const REPLAYED: Error = Error::invalid_signature("the signature was already used");

/// The refusal for a store that cannot answer.
pub(crate) fn unavailable(detail: &'static str) -> Error {
    Error(crate::error::Kind::Unavailable { retry_after: 1, detail })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::memory::MemoryReplayStore;

    #[test]
    fn signature_keys_depend_on_thumbprint_and_base() {
        let a = ReplayKey::signature("thumb-a", b"base");
        assert_eq!(a, ReplayKey::signature("thumb-a", b"base"));
        assert_ne!(a, ReplayKey::signature("thumb-b", b"base"));
        assert_ne!(a, ReplayKey::signature("thumb-a", b"base2"));
        // The separator keeps the thumbprint/base boundary unambiguous.
        assert_ne!(ReplayKey::signature("ab", b"c"), ReplayKey::signature("a", b"bc"));
    }

    #[test]
    fn local_bot_nonce_keys_depend_on_key_nonce_and_the_process_secret() {
        use crate::replay::key::LocalSecret;
        let secret = LocalSecret::default();
        let a = ReplayKey::local_bot_nonce(&secret, "thumb-a", "n1");
        assert_eq!(a, ReplayKey::local_bot_nonce(&secret, "thumb-a", "n1"));
        assert_ne!(a, ReplayKey::local_bot_nonce(&secret, "thumb-b", "n1"));
        assert_ne!(a, ReplayKey::local_bot_nonce(&secret, "thumb-a", "n2"));
        // Unambiguous boundary, and a key of its own domain.
        assert_ne!(
            ReplayKey::local_bot_nonce(&secret, "ab", "c"),
            ReplayKey::local_bot_nonce(&secret, "a", "bc")
        );
        assert_ne!(a, ReplayKey::bot_nonce("thumb-a", "n1"));
        // Another process (another secret) computes another key.
        assert_ne!(a, ReplayKey::local_bot_nonce(&LocalSecret::default(), "thumb-a", "n1"));
    }

    #[test]
    fn jti_keys_are_separate_from_signature_keys() {
        assert_ne!(ReplayKey::jti("iss", "x"), ReplayKey::signature("iss", b"x"));
        assert_ne!(ReplayKey::jti("https://a", "1"), ReplayKey::jti("https://b", "1"));
    }

    #[test]
    fn unsafe_methods_are_covered_by_default() {
        let default = ReplayProtection::default();
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(default.covers(&method), "{method}");
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(!default.covers(&method), "{method}");
            assert!(ReplayProtection::AllMethods.covers(&method));
        }
        assert!(!ReplayProtection::Off.covers(&Method::POST));
    }

    /// A store implementing only what the trait requires.
    #[derive(Default)]
    struct InsertOnly(std::sync::Mutex<std::collections::HashSet<ReplayKey>>);

    impl ReplayStore for InsertOnly {
        fn insert(&self, key: ReplayKey, _: Duration) -> BoxFuture<'_, Result<Insertion, Error>> {
            let first = self.0.lock().unwrap().insert(key);
            Box::pin(std::future::ready(Ok(if first {
                Insertion::First
            } else {
                Insertion::Repeat
            })))
        }
    }

    fn ready<T>(mut future: BoxFuture<'_, T>) -> T {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("a ready future"),
        }
    }

    #[test]
    fn the_default_release_keeps_the_entry() {
        let store = InsertOnly::default();
        let key = ReplayKey::jti("i", "j");
        assert_eq!(
            ready(store.insert(key, Duration::from_secs(1))).unwrap(),
            Insertion::First
        );
        assert!(matches!(store.try_release(&key), Some(Ok(()))));
        assert!(ready(store.release(key)).is_ok());
        assert_eq!(
            ready(store.insert(key, Duration::from_secs(1))).unwrap(),
            Insertion::Repeat
        );
    }

    #[test]
    fn release_with_a_synchronous_answer_needs_no_future() {
        let memory: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::new(1));
        let key = ReplayKey::jti("i", "j");
        assert_eq!(
            memory.try_insert(&key, Duration::from_secs(60)).unwrap().unwrap(),
            Insertion::First
        );
        assert!(release(&memory, key).is_none());
        assert_eq!(
            memory.try_insert(&key, Duration::from_secs(60)).unwrap().unwrap(),
            Insertion::First
        );
    }

    fn verified(replay: Option<ReplayKey>) -> VerifiedRequest {
        VerifiedRequest {
            scheme: crate::sigkey::Scheme::Hwk,
            key_thumbprint: "thumb".into(),
            label: "sig".into(),
            covered: Arc::from(Vec::new()),
            created: 0,
            signer: None,
            token: None,
            generation: crate::profile::Generation::Draft11,
            replay,
            agent: None,
        }
    }

    #[test]
    fn a_refusal_marker_matches_only_the_request_it_names() {
        let key = ReplayKey::signature("thumb", b"base");
        let other = ReplayKey::signature("thumb", b"other base");
        let mut extensions = Extensions::new();
        extensions.insert(verified(Some(key)));
        let refusal = Refused::of(&extensions).mark(Response::new(()));
        assert!(Refused::key(key).matches(&refusal));
        assert!(!Refused::key(other).matches(&refusal));
        assert!(!Refused::key(key).matches(&Response::new(())), "an unmarked response");
        // A request without a replay key (a safe method) is named by `None`.
        let mut safe = Extensions::new();
        safe.insert(verified(None));
        let refusal = Refused::of(&safe).mark(Response::new(()));
        assert!(Refused::of(&safe).matches(&refusal));
        assert!(!Refused::key(key).matches(&refusal));
        assert_eq!(Refused::of(&Extensions::new()), Refused::of(&safe));
    }

    #[test]
    fn hex_is_lower_case_and_64_chars() {
        let hex = ReplayKey::jti("i", "j").to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
