//! Resource tokens (`aa-resource+jwt`): what the resource signs and hands to an agent in an
//! `auth-token` challenge, for the agent to exchange at its person or access server.
//!
//! # Design
//!
//! A resource token is a fixed template ([AAuth draft -11, "Resource Token
//! Structure"][draft-11]): header `{"typ":"aa-resource+jwt","alg":"Ed25519","kid":…}` (demo
//! generation: `{"typ":"resource+jwt","alg":"EdDSA","kid":…}` plus an `agent` claim) and
//! claims `iss`, `dwk`, `aud`, `jti` (128 random bits), `iat`, `exp` (at most five
//! minutes), `agent_jkt` (thumbprint of the key that signed the request), `scope` (exactly
//! what the route requires) and, when the request presented a person or auth token, `ps`,
//! `sub`, `presented_jti`, `mission_s256` and `tenant` copied from it. Nothing in a token
//! comes from a request field the signature did not vouch for.
//!
//! Who may get one, and for which audience ([`Audience`]):
//!
//! * With an access server configured (the four-party flow), `aud` is that server
//!   and any verified signature is enough.
//! * Otherwise (draft -11's three-party flow), `aud` is the person server named by a verified
//!   person token (`iss`) or auth token (`ps`); without one the resource cannot mint and
//!   answers `requirement=person-token`. An unauthenticated caller therefore never makes
//!   the resource sign anything: challenges are no signing oracle.
//!
//! Keys live in a [`KeyRing`] behind a `RwLock`: verification never touches it, and minting
//! (only on challenges) takes a read lock for the time of one signature. Rotation publishes
//! the next key before it signs anything: verifiers refetch a JWKS for an unknown `kid` at
//! most once a minute ([AAuth draft -11, "JWKS Discovery and Caching"][draft-11]), so a
//! token signed with a key they have not seen yet could fail. A ring read from a directory
//! that every replica mounts follows a schedule its file names state (see `keyring`), so
//! that which key signs and which are published is a function of the time.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{Map, Value};

use crate::error::ConfigError;
use crate::jose::{Jwk, ResourceKey, b64url};
use crate::keyring::{KeyDirectory, Schedule};
use crate::names;
use crate::profile::Generation;
use crate::token::{Scopes, TokenClaims, TokenKind};

/// The longest resource-token lifetime accepted in configuration ([AAuth draft -11,
/// "Resource Token"][draft-11]: SHOULD be at most five minutes).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
pub const MAX_LIFETIME: u64 = 300;

/// The resource's keys: one active signing key, and every key currently published in the
/// JWKS (the active one, the next one being staged, retired ones still honoured by
/// verifiers). Either set by hand ([`KeyRing::new`], then staged, rotated and retired), or
/// read from a directory whose file names schedule the keys, so that which key signs and
/// which are published depends on the time.
#[derive(Debug, Clone)]
pub struct KeyRing(Ring);

#[derive(Debug, Clone)]
enum Ring {
    Fixed {
        active: Box<ResourceKey>,
        published: Vec<ResourceKey>,
    },
    Scheduled(Arc<Schedule>),
}

impl KeyRing {
    /// A ring whose only key is `active`.
    pub fn new(active: ResourceKey) -> Self {
        KeyRing(Ring::Fixed {
            published: vec![active.clone()],
            active: Box::new(active),
        })
    }

    /// The key resource tokens are signed with at `now` (Unix seconds).
    pub fn active(&self, now: u64) -> &ResourceKey {
        match &self.0 {
            Ring::Fixed { active, .. } => active,
            Ring::Scheduled(schedule) => schedule.active(now),
        }
    }

    /// The public keys to publish at `now`, active key first.
    pub fn public_keys(&self, now: u64) -> Vec<Jwk> {
        match &self.0 {
            Ring::Fixed { active, published } => {
                let mut keys = vec![active.public_jwk()];
                keys.extend(
                    published
                        .iter()
                        .filter(|k| k.kid() != active.kid())
                        .map(ResourceKey::public_jwk),
                );
                keys
            }
            Ring::Scheduled(schedule) => schedule
                .published(now)
                .into_iter()
                .map(ResourceKey::public_jwk)
                .collect(),
        }
    }
}

/// The shared, rotatable key ring.
pub(crate) struct Keys {
    ring: RwLock<Arc<KeyRing>>,
    minted: AtomicU64,
    /// Where a scheduled ring is read from.
    directory: Option<Mutex<KeyDirectory>>,
}

impl Keys {
    pub(crate) fn new(active: ResourceKey) -> Self {
        Keys {
            ring: RwLock::new(Arc::new(KeyRing::new(active))),
            minted: AtomicU64::new(0),
            directory: None,
        }
    }

    /// The ring read from `dir` at `now`; removed keys stay published [`MAX_LIFETIME`].
    pub(crate) fn from_directory(dir: PathBuf, now: u64) -> Result<Self, ConfigError> {
        let mut directory = KeyDirectory::new(dir, MAX_LIFETIME);
        let schedule = directory.load(now)?;
        Ok(Keys {
            ring: RwLock::new(Arc::new(KeyRing(Ring::Scheduled(schedule)))),
            minted: AtomicU64::new(0),
            directory: Some(Mutex::new(directory)),
        })
    }

    /// The directory the ring is read from, if it is.
    pub(crate) fn directory(&self) -> Option<PathBuf> {
        let directory = self.directory.as_ref()?;
        let directory = directory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Some(directory.path().to_owned())
    }

    /// Reads the directory again at `now`; on error the ring in force stays.
    pub(crate) fn reload(&self, now: u64) -> Result<(), ConfigError> {
        let Some(directory) = &self.directory else {
            return Err(ConfigError::new(
                "the signing keys were not read from a directory (AAuthBuilder::signing_keys_from), \
                 so there is nothing to reload",
            ));
        };
        let mut directory = directory.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let schedule = directory.load(now)?;
        let mut ring = self.ring.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *ring = Arc::new(KeyRing(Ring::Scheduled(schedule)));
        Ok(())
    }

    /// A snapshot of the ring (cheap: one `Arc` clone under a read lock).
    pub(crate) fn snapshot(&self) -> Arc<KeyRing> {
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            // A panic while holding the lock cannot leave the `Arc` half-written.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies `change` to a ring set by hand; a ring read from a directory changes only
    /// with the directory (`false`).
    fn update(&self, change: impl FnOnce(&mut ResourceKey, &mut Vec<ResourceKey>) -> bool) -> bool {
        let mut guard = match self.ring.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut next = KeyRing::clone(&guard);
        let Ring::Fixed { active, published } = &mut next.0 else {
            return false;
        };
        let changed = change(active, published);
        if changed {
            *guard = Arc::new(next);
        }
        changed
    }

    /// Publishes `key` without signing with it yet. `false` if its `kid` is already
    /// published (a `kid` is never reused for other key material).
    pub(crate) fn stage(&self, key: ResourceKey) -> bool {
        self.update(|_, published| match published.iter().find(|k| k.kid() == key.kid()) {
            Some(_) => false,
            None => {
                published.push(key);
                true
            }
        })
    }

    /// Signs with `key` from now on (publishing it if it was not staged); the previous key
    /// stays published until retired. `false` if the `kid` names other key material.
    pub(crate) fn rotate(&self, key: ResourceKey) -> bool {
        self.update(|active, published| {
            match published.iter().find(|k| k.kid() == key.kid()) {
                Some(existing) if existing.public_jwk().x() != key.public_jwk().x() => return false,
                Some(_) => {}
                None => published.push(key.clone()),
            }
            *active = key;
            true
        })
    }

    /// Stops publishing `kid`. The active key cannot be retired.
    pub(crate) fn retire(&self, kid: &str) -> bool {
        self.update(|active, published| {
            if active.kid() == kid {
                return false;
            }
            let before = published.len();
            published.retain(|k| k.kid() != kid);
            published.len() != before
        })
    }

    pub(crate) fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }
}

/// Who a resource token is for, decided by [`Audience::select`].
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Mint for `aud`, copying the person-facing claims from `presented` when present.
    Mint {
        /// The person or access server the agent will take the token to.
        aud: &'a str,
        /// The verified person or auth token the request presented.
        presented: Option<&'a TokenClaims>,
    },
    /// Nothing verified: the request must first prove who signs it.
    NeedSignature,
    /// Three-party posture and no person or auth token: `requirement=person-token`.
    NeedPersonToken,
}

impl<'a> Audience<'a> {
    /// Applies the audience rules of the module docs. `access_server` is the configured
    /// access server, if any; `token` the verified token of the request, if any.
    pub fn select(access_server: Option<&'a str>, signed: bool, token: Option<&'a TokenClaims>) -> Self {
        let presented = token.filter(|t| matches!(t.kind, TokenKind::Person | TokenKind::Auth));
        if let Some(aud) = access_server {
            return if signed {
                Audience::Mint { aud, presented }
            } else {
                Audience::NeedSignature
            };
        }
        match presented {
            Some(t) if t.kind == TokenKind::Person => Audience::Mint { aud: &t.iss, presented },
            Some(t) => Audience::Mint {
                aud: t.ps.as_deref().unwrap_or(&t.iss),
                presented,
            },
            None => Audience::NeedPersonToken,
        }
    }
}

/// Everything a resource token states besides the resource's own configuration.
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    /// `aud`.
    pub aud: &'a str,
    /// `agent_jkt`: thumbprint of the verified key that signed the request.
    pub agent_jkt: &'a str,
    /// `scope`: exactly the scopes the route requires.
    pub scope: &'a Scopes,
    /// The verified person or auth token to copy `ps`, `sub`, `presented_jti`,
    /// `mission_s256` and `tenant` from.
    pub presented: Option<&'a TokenClaims>,
    /// The demo generation's `agent` claim (legacy answers only).
    pub agent: Option<&'a str>,
    /// The generation to mint in: draft -11 uses `alg` `Ed25519`; the demo generation
    /// `EdDSA` (what PyPI `aauth` 0.3 verifies) and adds `agent`.
    pub generation: Generation,
    /// RFC 9396 `authorization_details` the route requires (a `require_detail` step-up):
    /// the array the agent's auth server is asked to approve.
    pub authorization_details: Option<&'a Value>,
    /// draft-hardt-aauth-budgets `budget` the route offers (a metered route's challenge).
    pub budget: Option<&'a Value>,
    /// draft-hardt-aauth-budgets `budget_consumed` records (only beside `budget`).
    pub budget_consumed: Option<&'a Value>,
    /// `account`: the echo of an authorization request's `account` (the authorization
    /// endpoint's, once the resource decided the person holds it).
    pub account: Option<&'a str>,
}

/// The resource's fixed minting parameters.
#[derive(Clone, Copy)]
pub(crate) struct Minter<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) lifetime: u64,
    pub(crate) keys: &'a Keys,
}

impl Minter<'_> {
    /// Signs a resource token issued at `now`.
    pub(crate) fn mint(&self, request: &MintRequest<'_>, now: u64) -> String {
        let claims = self.claims(request, now);
        let (typ, alg) = match request.generation {
            Generation::Legacy => (names::typ::LEGACY_RESOURCE, names::alg::EDDSA),
            _ => (names::typ::RESOURCE, names::alg::ED25519),
        };
        let ring = self.keys.snapshot();
        self.keys.minted.fetch_add(1, Ordering::Relaxed);
        ring.active(now).sign_jwt(typ, alg, &Value::Object(claims))
    }

    fn claims(&self, request: &MintRequest<'_>, now: u64) -> Map<String, Value> {
        let mut claims = Map::new();
        let mut put = |name: &str, value: Value| {
            claims.insert(name.to_owned(), value);
        };
        put("iss", self.issuer.into());
        put("dwk", names::dwk::RESOURCE.into());
        put("aud", request.aud.into());
        put("jti", new_jti().into());
        put("iat", now.into());
        put("exp", now.saturating_add(self.lifetime).into());
        put(names::claim::AGENT_JKT, request.agent_jkt.into());
        if !request.scope.is_empty() {
            put("scope", request.scope.to_string().into());
        }
        if let Some(presented) = request.presented {
            let ps = match presented.kind {
                TokenKind::Person => Some(presented.iss.as_str()),
                _ => presented.ps.as_deref(),
            };
            if let Some(ps) = ps {
                put("ps", ps.into());
            }
            if let Some(sub) = &presented.sub {
                put("sub", sub.as_str().into());
            }
            if let Some(jti) = &presented.jti {
                put(names::claim::PRESENTED_JTI, jti.as_str().into());
            }
            // Copied verbatim: dropping mission_s256 would let an agent strip its mission.
            for name in [names::claim::MISSION_S256, names::claim::TENANT] {
                if let Some(Value::String(value)) = presented.raw.get(name) {
                    put(name, value.as_str().into());
                }
            }
        }
        if let Some(details) = request.authorization_details {
            put(names::claim::AUTHORIZATION_DETAILS, details.clone());
        }
        if let Some(budget) = request.budget {
            put(names::claim::BUDGET, budget.clone());
            if let Some(consumed) = request.budget_consumed {
                put(names::claim::BUDGET_CONSUMED, consumed.clone());
            }
        }
        if let Some(account) = request.account {
            put("account", account.into());
        }
        if request.generation == Generation::Legacy
            && let Some(agent) = request.agent
        {
            put(names::claim::AGENT, agent.into());
        }
        claims
    }
}

/// 128 bits from the operating system's CSPRNG, base64url.
fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system has no usable random source");
    b64url(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{AlgPolicy, UnverifiedJws};

    fn minter(keys: &Keys) -> Minter<'_> {
        Minter {
            issuer: "https://resource.example",
            lifetime: 300,
            keys,
        }
    }

    fn request(scope: &Scopes) -> MintRequest<'_> {
        MintRequest {
            aud: "https://as.example",
            agent_jkt: "jkt",
            scope,
            presented: None,
            agent: Some("https://agent.example"),
            generation: Generation::Draft11,
            authorization_details: None,
            budget: None,
            budget_consumed: None,
            account: None,
        }
    }

    #[test]
    fn jti_has_128_bits_and_does_not_repeat() {
        let ids: std::collections::HashSet<String> = (0..100_000).map(|_| new_jti()).collect();
        assert_eq!(ids.len(), 100_000);
        assert!(ids.iter().all(|id| id.len() == 22));
    }

    #[test]
    fn minted_token_follows_the_template() {
        let keys = Keys::new(ResourceKey::from_seed([9; 32]).with_kid("rk-1"));
        let scope = Scopes::parse("data.read").unwrap();
        let token = minter(&keys).mint(&request(&scope), 1000);
        let jws = UnverifiedJws::parse(&token, AlgPolicy::Strict).unwrap();
        assert_eq!(jws.typ(), Some("aa-resource+jwt"));
        assert_eq!(jws.alg(), "Ed25519");
        assert_eq!(jws.kid(), Some("rk-1"));
        jws.verify_with(&keys.snapshot().active(0).public_jwk()).unwrap();
        let claims = jws.payload();
        assert_eq!(claims["exp"], 1300);
        assert_eq!(claims["scope"], "data.read");
        assert!(!claims.contains_key("agent"), "draft -11 tokens name no agent");
        assert_eq!(keys.minted(), 1);
    }

    #[test]
    fn demo_generation_token_is_a_resource_jwt_signed_eddsa_naming_the_agent() {
        let keys = Keys::new(ResourceKey::from_seed([9; 32]).with_kid("rk-1"));
        let scope = Scopes::parse("data.read").unwrap();
        let request = MintRequest {
            generation: Generation::Legacy,
            ..request(&scope)
        };
        let token = minter(&keys).mint(&request, 1000);
        let jws = UnverifiedJws::parse(&token, AlgPolicy::Legacy).unwrap();
        assert_eq!(jws.typ(), Some("resource+jwt"));
        assert_eq!(jws.alg(), "EdDSA");
        jws.verify_with(&keys.snapshot().active(0).public_jwk()).unwrap();
        assert_eq!(jws.payload()["agent"], "https://agent.example");
        assert_eq!(jws.payload()["agent_jkt"], "jkt");
    }

    #[test]
    fn rotation_publishes_before_signing_and_never_reuses_a_kid() {
        let keys = Keys::new(ResourceKey::from_seed([1; 32]).with_kid("k1"));
        assert!(keys.stage(ResourceKey::from_seed([2; 32]).with_kid("k2")));
        assert!(!keys.stage(ResourceKey::from_seed([3; 32]).with_kid("k2")));
        let ring = keys.snapshot();
        assert_eq!(ring.active(0).kid(), "k1");
        assert_eq!(ring.public_keys(0).len(), 2);
        assert!(!keys.rotate(ResourceKey::from_seed([3; 32]).with_kid("k2")));
        assert!(keys.rotate(ResourceKey::from_seed([2; 32]).with_kid("k2")));
        assert_eq!(keys.snapshot().active(0).kid(), "k2");
        assert!(!keys.retire("k2"), "the active key stays published");
        assert!(keys.retire("k1"));
        assert_eq!(keys.snapshot().public_keys(0).len(), 1);
    }
}
