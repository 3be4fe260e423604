//! Key directories: fetched through the discovery fetcher, checked, cached.
//!
//! A directory (`{origin}/.well-known/http-message-signatures-directory`) is fetched with
//! the same guarded [`Fetch`] as AAuth discovery (URL admission, every resolved address
//! checked, no redirects, caps, one total timeout), and counts only when it is a `200`
//! of the media type `application/http-message-signatures-directory+json` whose body is a
//! JWKS. A key is used only when the directory response carries a valid signature by
//! that very key (tag `http-message-signatures-directory`, covering `"@authority";req`
//! with the directory's authority, `created` not in the future, `expires` not passed),
//! and only until that signature expires: a directory cannot list another party's key
//! and have requests signed by that party attributed to it.
//!
//! Entries are keyed by directory URL and hold their keys by thumbprint, so a lookup is
//! `(directory URL, thumbprint)`. Lifetimes follow the discovery configuration: the
//! response's `max-age` clamped to `[min_ttl, max_ttl]` (the once-a-minute floor), an
//! unknown thumbprint refetches at most once per `unknown_kid_cooldown`, a failure is
//! remembered for `negative_ttl`, doubling with each consecutive failure up to
//! `max_negative_ttl` (never less than the floor), a failed refetch keeps the keys the
//! directory vouched for until `max_stale` past their freshness (as AAuth discovery
//! does), a never-seen directory and every refetch after a failure draw on the budget of
//! `new_issuers_per_minute` shared with AAuth discovery (one bucket; over it `503` with
//! the seconds until a token is back in `Retry-After`), and the cache is bounded by
//! `max_entries` and `max_weight_bytes`. Concurrent misses of one directory share one
//! fetch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sfv::{BareItem, ListEntry};

use crate::clock::Clock;
use crate::discovery::cache::{DiscoveryConfig, NewOrigins};
use crate::discovery::resolve::Fetch;
use crate::error::{Error, SignatureErrorCode};
use crate::httpsig::parse_dictionary_strict;
use crate::jose::{AlgPolicy, Jwk, parse_json_object};
use crate::names;

/// A key the directory vouched for, usable until its directory signature expires.
#[derive(Debug)]
struct DirectoryKey {
    jwk: Arc<Jwk>,
    valid_until: u64,
}

/// What the cache knows about one directory URL.
#[derive(Debug)]
struct Entry {
    keys: Arc<HashMap<Arc<str>, DirectoryKey>>,
    fresh_until: u64,
    /// Until when the keys may still be used while refetches fail (`max_stale` past
    /// freshness, as for AAuth discovery).
    stale_until: u64,
    last_fetch: u64,
    failure: Option<Failure>,
}

/// The last refetch failed: answered from memory until `retry_at`.
#[derive(Debug)]
struct Failure {
    error: Error,
    retry_at: u64,
    /// Consecutive failures: the backoff doubles with each.
    streak: u32,
}

impl Entry {
    fn weight(&self, url: &str) -> u32 {
        // The entry, its map and each parsed key, as for the discovery cache's entries.
        let bytes = 800 + url.len() + self.keys.len() * 400;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

pub(crate) const UNKNOWN_KEY: Error = Error::signature(
    SignatureErrorCode::UnknownKey,
    "the bot's directory publishes no key with that thumbprint",
);
const UNFETCHABLE: Error = Error::invalid_key("the bot's key directory could not be fetched");
const WRONG_TYPE: Error = Error::invalid_key("the key directory is not of its media type");
const NOT_A_JWKS: Error = Error::invalid_key("the key directory is not a JWKS");
const TOO_MANY_KEYS: Error = Error::invalid_key("the key directory has too many keys");
const UNSIGNED: Error = Error::invalid_key("the key directory carries no key it signed for itself");

/// The directory cache (see the module docs).
pub(crate) struct DirectoryCache {
    fetch: Arc<dyn Fetch>,
    clock: Arc<dyn Clock>,
    config: DiscoveryConfig,
    max_skew: u64,
    store: moka::sync::Cache<Arc<str>, Arc<Entry>>,
    flights: moka::future::Cache<Arc<str>, Arc<Entry>>,
    budget: Arc<NewOrigins>,
}

impl std::fmt::Debug for DirectoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryCache")
            .field("entries", &self.store.entry_count())
            .finish_non_exhaustive()
    }
}

impl DirectoryCache {
    pub(crate) fn new(
        fetch: Arc<dyn Fetch>,
        clock: Arc<dyn Clock>,
        config: DiscoveryConfig,
        max_skew: u64,
        budget: Arc<NewOrigins>,
    ) -> Self {
        let entries = config.max_entries.max(1);
        let store = moka::sync::Cache::builder()
            .max_capacity(config.max_weight_bytes.max(entries))
            .weigher(|url: &Arc<str>, entry: &Arc<Entry>| entry.weight(url))
            .time_to_live(
                config
                    .max_ttl
                    .saturating_add(config.max_stale)
                    .saturating_add(config.max_negative_ttl)
                    .min(Duration::from_secs(365 * 24 * 3600)),
            )
            .build();
        let flights = moka::future::Cache::builder()
            .max_capacity(entries)
            .time_to_live(Duration::from_secs(60))
            .build();
        DirectoryCache {
            fetch,
            clock,
            config,
            max_skew,
            store,
            flights,
            budget,
        }
    }

    /// The cache's clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Answers from memory: `None` when the directory must be fetched.
    pub(crate) fn cached(&self, url: &str, thumbprint: &str, now: u64) -> Option<Result<Arc<Jwk>, Error>> {
        let entry = self.store.get(url)?;
        self.answer(&entry, thumbprint, now, false)
    }

    fn answer(&self, entry: &Entry, thumbprint: &str, now: u64, fetched: bool) -> Option<Result<Arc<Jwk>, Error>> {
        if let Some(failure) = &entry.failure
            && (fetched || now < failure.retry_at)
        {
            // The directory is failing: the keys it vouched for before still serve until
            // they would go stale (or their directory signature expires).
            if now < entry.stale_until && !entry.keys.is_empty() {
                return Some(match entry.keys.get(thumbprint) {
                    Some(key) if now < key.valid_until => Ok(key.jwk.clone()),
                    _ => Err(UNKNOWN_KEY),
                });
            }
            return Some(Err(failure.error.clone()));
        }
        if now >= entry.fresh_until && !fetched {
            return None;
        }
        if let Some(key) = entry.keys.get(thumbprint)
            && now < key.valid_until
        {
            return Some(Ok(key.jwk.clone()));
        }
        let cooldown = self.config.unknown_kid_cooldown.as_secs();
        if fetched || now < entry.last_fetch.saturating_add(cooldown) {
            return Some(Err(UNKNOWN_KEY));
        }
        None
    }

    /// Fetches the directory (once for concurrent callers, and not again within the
    /// refresh floor) and answers for `thumbprint`.
    pub(crate) async fn resolve(&self, url: &str, authority: &str, thumbprint: &str) -> Result<Arc<Jwk>, Error> {
        let key: Arc<str> = Arc::from(url);
        let floor = self.config.min_ttl.as_secs().max(1);
        let result = self
            .flights
            .try_get_with(key.clone(), async {
                let now = self.clock.now();
                let previous = self.store.get(url);
                if let Some(previous) = &previous
                    && now < previous.last_fetch.saturating_add(floor)
                    && previous.failure.is_none()
                {
                    return Ok(previous.clone());
                }
                // A never-seen directory, and every refetch after a failure, draws on the
                // budget of new origins: a failing directory costs what a new one does.
                if previous.as_ref().is_none_or(|p| p.failure.is_some()) {
                    self.charge_budget()?;
                }
                let entry = Arc::new(self.refresh(url, authority, now, previous.as_deref()).await);
                self.store.insert(key.clone(), entry.clone());
                Ok::<_, Error>(entry)
            })
            .await;
        self.flights.invalidate(&key).await;
        let entry = result.map_err(|error| (*error).clone())?;
        self.answer(&entry, thumbprint, self.clock.now(), true)
            .unwrap_or(Err(UNKNOWN_KEY))
    }

    /// One token from the budget of new origins, shared with AAuth discovery.
    fn charge_budget(&self) -> Result<(), Error> {
        let retry_after = match self.budget.charge(self.config.new_issuers_per_minute, self.clock.now()) {
            Ok(()) => return Ok(()),
            Err(retry_after) => retry_after,
        };
        Err(Error(crate::error::Kind::Unavailable {
            retry_after,
            detail: "too many new bot directories to discover right now",
        }))
    }

    async fn refresh(&self, url: &str, authority: &str, now: u64, previous: Option<&Entry>) -> Entry {
        crate::metrics::bot_directory_fetch();
        let fetched = async {
            let document = self.fetch.get(url, self.config.max_jwks_bytes).await.map_err(|cause| {
                tracing::debug!(cause = %cause, "web bot auth: directory fetch failed");
                UNFETCHABLE
            })?;
            let keys = read_directory(
                &document.body,
                &document.headers,
                authority,
                now,
                self.max_skew,
                self.config.max_keys,
            )?;
            Ok::<_, Error>((keys, document.max_age))
        }
        .await;
        match fetched {
            Ok((keys, max_age)) => {
                let ttl = max_age.unwrap_or(self.config.default_ttl.as_secs()).clamp(
                    self.config.min_ttl.as_secs(),
                    self.config.max_ttl.as_secs().max(self.config.min_ttl.as_secs()),
                );
                Entry {
                    keys: Arc::new(keys),
                    fresh_until: now.saturating_add(ttl),
                    stale_until: now.saturating_add(ttl).saturating_add(self.config.max_stale.as_secs()),
                    last_fetch: now,
                    failure: None,
                }
            }
            Err(error) => {
                let streak = previous
                    .and_then(|p| p.failure.as_ref())
                    .map_or(1, |f| f.streak.saturating_add(1));
                Entry {
                    keys: previous.map_or_else(Default::default, |p| p.keys.clone()),
                    fresh_until: previous.map_or(0, |p| p.fresh_until),
                    stale_until: previous.map_or(0, |p| p.stale_until),
                    last_fetch: now,
                    failure: Some(Failure {
                        error,
                        retry_at: now.saturating_add(self.backoff(streak)),
                        streak,
                    }),
                }
            }
        }
    }
}

impl DirectoryCache {
    /// How long after the `streak`-th consecutive failure the directory is not fetched
    /// again: `negative_ttl`, doubling with each failure up to `max_negative_ttl`, never
    /// sooner than the refresh floor (`min_ttl`).
    fn backoff(&self, streak: u32) -> u64 {
        let config = &self.config;
        let ceiling = config.max_negative_ttl.as_secs().max(config.negative_ttl.as_secs());
        config
            .negative_ttl
            .as_secs()
            .saturating_mul(1 << streak.saturating_sub(1).min(16))
            .min(ceiling)
            .max(config.min_ttl.as_secs().max(1))
    }
}

/// The keys of a fetched directory that signed its response (see the module docs).
fn read_directory(
    body: &[u8],
    headers: &http::HeaderMap,
    authority: &str,
    now: u64,
    max_skew: u64,
    max_keys: usize,
) -> Result<HashMap<Arc<str>, DirectoryKey>, Error> {
    let media_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(names::bot::DIRECTORY_MEDIA_TYPE)) {
        return Err(WRONG_TYPE);
    }
    let document = parse_json_object(body).ok_or(NOT_A_JWKS)?;
    let Some(serde_json::Value::Array(entries)) = document.get("keys") else {
        return Err(NOT_A_JWKS);
    };
    if entries.len() > max_keys {
        return Err(TOO_MANY_KEYS);
    }
    let candidates: HashMap<Arc<str>, Jwk> = entries
        .iter()
        .filter_map(|entry| Jwk::from_json(entry.as_object()?, AlgPolicy::Legacy).ok())
        .map(|jwk| (jwk.thumbprint_shared().clone(), jwk))
        .collect();
    let field = |name: &str| {
        crate::httpsig::field_value(headers, name, crate::httpsig::DEFAULT_HEADER_CAP)
            .ok()
            .flatten()
    };
    let (Some(input), Some(signature)) = (field("signature-input"), field("signature")) else {
        return Err(UNSIGNED);
    };
    let (Some(input), Some(signature)) = (parse_dictionary_strict(&input), parse_dictionary_strict(&signature)) else {
        return Err(UNSIGNED);
    };
    let mut keys = HashMap::new();
    for (label, entry) in &input {
        let ListEntry::InnerList(inner) = entry else { continue };
        let Some(signed) = directory_signature(inner, authority, now, max_skew) else {
            continue;
        };
        let Some(jwk) = candidates.get(signed.keyid.as_str()) else {
            continue;
        };
        let bytes = match signature.get(label) {
            Some(ListEntry::Item(item)) => match &item.bare_item {
                BareItem::ByteSequence(bytes) => bytes.clone(),
                _ => continue,
            },
            _ => continue,
        };
        if bytes.len() != 64 || !jwk.verify(signed.base.as_bytes(), &bytes) {
            continue;
        }
        keys.insert(
            jwk.thumbprint_shared().clone(),
            DirectoryKey {
                jwk: Arc::new(jwk.clone()),
                valid_until: signed.expires,
            },
        );
    }
    if keys.is_empty() {
        return Err(UNSIGNED);
    }
    Ok(keys)
}

/// A directory response signature's parameters and its signature base.
struct DirectorySignature {
    keyid: String,
    expires: u64,
    base: String,
}

/// The signature base of one `Signature-Input` member of a directory response, when it
/// is a directory signature (tag, the one component `"@authority";req`, keyid, created,
/// expires) valid at `now`.
fn directory_signature(inner: &sfv::InnerList, authority: &str, now: u64, max_skew: u64) -> Option<DirectorySignature> {
    let [component] = inner.items.as_slice() else {
        return None;
    };
    let covers_authority = matches!(&component.bare_item, BareItem::String(name) if name.as_str() == "@authority")
        && component.params.len() == 1
        && component
            .params
            .iter()
            .all(|(name, value)| name.as_str() == "req" && *value == BareItem::Boolean(true));
    if !covers_authority {
        return None;
    }
    let mut keyid = None;
    let mut created = None;
    let mut expires = None;
    let mut tag = None;
    for (name, value) in &inner.params {
        match (name.as_str(), value) {
            ("keyid", BareItem::String(v)) => keyid = Some(v.as_str().to_owned()),
            ("tag", BareItem::String(v)) => tag = Some(v.as_str().to_owned()),
            ("created", BareItem::Integer(v)) => created = u64::try_from(i64::from(*v)).ok(),
            ("expires", BareItem::Integer(v)) => expires = u64::try_from(i64::from(*v)).ok(),
            ("alg", BareItem::String(v)) if v.as_str() == names::bot::ED25519 => {}
            ("alg", _) => return None,
            _ => {}
        }
    }
    let (keyid, created, expires) = (keyid?, created?, expires?);
    if tag.as_deref() != Some(names::bot::DIRECTORY_TAG) || created > now.saturating_add(max_skew) || expires <= now {
        return None;
    }
    let mut serializer = sfv::ListSerializer::new();
    serializer.members(std::iter::once(&ListEntry::InnerList(inner.clone())));
    let params = serializer.finish()?;
    Some(DirectorySignature {
        keyid,
        expires,
        base: format!("\"@authority\";req: {authority}\n\"@signature-params\": {params}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::ResourceKey;

    /// A fetcher that must never be reached.
    struct NoFetch;

    impl Fetch for NoFetch {
        fn get<'a>(
            &'a self,
            _: &'a str,
            _: usize,
        ) -> crate::BoxFuture<'a, Result<crate::discovery::FetchedDocument, crate::discovery::FetchError>> {
            panic!("over the budget nothing is fetched")
        }
    }

    #[tokio::test]
    async fn bot_directories_and_aauth_discovery_draw_on_one_budget() {
        let config = DiscoveryConfig {
            new_issuers_per_minute: 2,
            ..DiscoveryConfig::default()
        };
        let aauth = crate::aauth::AAuth::builder("https://resource.example")
            .discovery(config)
            .fetcher(NoFetch)
            .web_bot_auth(crate::bot::WebBotAuthOptions::new())
            .build()
            .unwrap();
        let bots = aauth.shared.bots.as_ref().unwrap();
        bots.cache.charge_budget().unwrap();
        bots.cache.charge_budget().unwrap();
        // The two tokens went to bot directories: AAuth discovery of a new issuer waits.
        let query = crate::discovery::KeyQuery {
            issuer: "https://agents.example",
            dwk: "aauth-agent.json",
            kid: "k1",
        };
        let refused = aauth.shared.resolver.resolve(query).await.unwrap_err();
        assert_eq!(refused.code(), "temporarily_unavailable");
        assert_eq!(
            refused.retry_after(),
            Some(30),
            "half a minute for one of two tokens a minute"
        );
        let refused = bots.cache.charge_budget().unwrap_err();
        assert_eq!(refused.retry_after(), Some(30));
    }

    const AUTHORITY: &str = "bots.example";
    const NOW: u64 = 1_800_000_000;

    fn signed_headers(key: &ResourceKey, authority: &str, tag: &str, created: u64, expires: u64) -> http::HeaderMap {
        let thumbprint = key.public_jwk().thumbprint();
        let params = format!(
            "(\"@authority\";req);created={created};expires={expires};keyid=\"{thumbprint}\";alg=\"ed25519\";tag=\"{tag}\""
        );
        let base = format!("\"@authority\";req: {authority}\n\"@signature-params\": {params}");
        let signature = crate::httpsig::encode_signature(&key.sign_bytes(base.as_bytes()));
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", names::bot::DIRECTORY_MEDIA_TYPE.parse().unwrap());
        headers.insert("signature-input", format!("binding0={params}").parse().unwrap());
        headers.insert("signature", format!("binding0=:{signature}:").parse().unwrap());
        headers
    }

    fn body(keys: &[&ResourceKey]) -> Vec<u8> {
        let keys: Vec<_> = keys.iter().map(|k| k.public_jwk().to_json()).collect();
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn a_key_that_signed_the_directory_is_kept_until_its_signature_expires() {
        let key = ResourceKey::from_seed([1; 32]);
        let headers = signed_headers(&key, AUTHORITY, names::bot::DIRECTORY_TAG, NOW - 10, NOW + 300);
        let keys = read_directory(&body(&[&key]), &headers, AUTHORITY, NOW, 60, 32).unwrap();
        let found = &keys[key.public_jwk().thumbprint().as_str()];
        assert_eq!(found.valid_until, NOW + 300);
    }

    #[test]
    fn a_listed_key_that_did_not_sign_the_directory_is_not_kept() {
        let signer = ResourceKey::from_seed([1; 32]);
        let listed = ResourceKey::from_seed([2; 32]);
        let headers = signed_headers(&signer, AUTHORITY, names::bot::DIRECTORY_TAG, NOW, NOW + 300);
        let keys = read_directory(&body(&[&signer, &listed]), &headers, AUTHORITY, NOW, 60, 32).unwrap();
        assert!(keys.contains_key(signer.public_jwk().thumbprint().as_str()));
        assert!(!keys.contains_key(listed.public_jwk().thumbprint().as_str()));
    }

    #[test]
    fn directory_signatures_that_do_not_hold_leave_no_key() {
        let key = ResourceKey::from_seed([1; 32]);
        let cases = [
            (
                "another authority",
                signed_headers(&key, "evil.example", names::bot::DIRECTORY_TAG, NOW, NOW + 300),
            ),
            (
                "another tag",
                signed_headers(&key, AUTHORITY, "web-bot-auth", NOW, NOW + 300),
            ),
            (
                "expired",
                signed_headers(&key, AUTHORITY, names::bot::DIRECTORY_TAG, NOW - 600, NOW - 1),
            ),
            (
                "from the future",
                signed_headers(&key, AUTHORITY, names::bot::DIRECTORY_TAG, NOW + 600, NOW + 900),
            ),
        ];
        for (case, headers) in cases {
            let refused = read_directory(&body(&[&key]), &headers, AUTHORITY, NOW, 60, 32).unwrap_err();
            assert_eq!(refused.code(), "invalid_key", "{case}");
        }
    }

    #[test]
    fn hostile_documents_are_refused_as_invalid_key() {
        let key = ResourceKey::from_seed([1; 32]);
        let good = signed_headers(&key, AUTHORITY, names::bot::DIRECTORY_TAG, NOW, NOW + 300);
        let mut json_type = good.clone();
        json_type.insert("content-type", "application/json".parse().unwrap());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let many: Vec<_> = (0..40).map(|_| key.public_jwk().to_json()).collect();
        let many = serde_json::to_vec(&serde_json::json!({ "keys": many })).unwrap();
        let cases: Vec<(&str, Vec<u8>, &http::HeaderMap)> = vec![
            ("wrong media type", body(&[&key]), &json_type),
            ("not JSON", b"\xff\xfe".to_vec(), &good),
            ("deeply nested", format!("{{\"keys\":{deep}}}").into_bytes(), &good),
            ("keys not an array", br#"{"keys":{}}"#.to_vec(), &good),
            ("too many keys", many, &good),
        ];
        for (case, body, headers) in cases {
            let refused = read_directory(&body, headers, AUTHORITY, NOW, 60, 32).unwrap_err();
            assert_eq!(refused.code(), "invalid_key", "{case}");
        }
    }
}
