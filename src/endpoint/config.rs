//! The endpoints' configuration and per-caller state, held in the shared state: the
//! paths they are mounted at, the account decision of the authorization endpoint, and
//! the revocation endpoint's rate limiter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ConfigError;
use crate::names;
use crate::policy::AccountDecision;
use crate::policy::identity::PersonId;
use crate::sigkey::Scheme;
use crate::token::{TokenKind, TokenPolicy};

/// Decides whether a person holds an account ([`AccountDecision`]).
pub(crate) type Accounts = Arc<dyn Fn(&PersonId, &str) -> AccountDecision + Send + Sync>;

/// The endpoints this resource serves (none unless the builder mounted them).
#[derive(Default)]
pub(crate) struct Endpoints {
    /// The revocation endpoint's path.
    pub(crate) revocation: Option<String>,
    /// The authorization endpoint's path and its account decision.
    pub(crate) authorization: Option<(String, Accounts)>,
    /// Revocations accepted per verified caller.
    pub(crate) limiter: RateLimiter,
}

/// Which endpoint a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    Revocation,
    Authorization,
}

impl Endpoints {
    /// The endpoint mounted at exactly `path`.
    pub(crate) fn at(&self, path: &str) -> Option<Which> {
        if self.revocation.as_deref() == Some(path) {
            return Some(Which::Revocation);
        }
        match &self.authorization {
            Some((mounted, _)) if mounted == path => Some(Which::Authorization),
            _ => None,
        }
    }

    /// Whether an endpoint is mounted at `path`.
    pub(crate) fn serves(&self, path: &str) -> bool {
        self.at(path).is_some()
    }

    /// Checks the mounted paths, and that a mounted endpoint can answer anyone (at build
    /// time): revocations need a trusted server and `jwks_uri` signatures, the
    /// authorization endpoint person tokens under `jwt` and a server to mint for.
    pub(crate) fn validate(
        &self,
        schemes: &[Scheme],
        tokens: &TokenPolicy,
        can_grant: bool,
    ) -> Result<(), ConfigError> {
        if self.revocation.is_some() {
            if !schemes.contains(&Scheme::JwksUri) {
                return Err(ConfigError::new(
                    "the revocation endpoint is mounted but jwks_uri signatures are not accepted: \
                     servers sign revocations with jwks_uri",
                ));
            }
            let named = !tokens.access_servers.is_empty()
                || matches!(&tokens.person_servers, crate::token::IssuerTrust::Listed(list) if !list.is_empty());
            if !named {
                return Err(ConfigError::new(
                    "the revocation endpoint is mounted but no access server or person server is \
                     named: nobody could revoke anything (auth_server(), person_server(); servers \
                     accepted by accept_any_person_server() never revoke)",
                ));
            }
        }
        if self.authorization.is_some()
            && (!schemes.contains(&Scheme::Jwt) || !tokens.accepted.contains(&TokenKind::Person) || !can_grant)
        {
            return Err(ConfigError::new(
                "the authorization endpoint is mounted but cannot answer: it needs person tokens \
                 (scheme jwt, TokenKind::Person) and a trusted access or person server",
            ));
        }
        let paths = [
            self.revocation.as_deref(),
            self.authorization.as_ref().map(|(p, _)| p.as_str()),
        ];
        for path in paths.into_iter().flatten() {
            check_path(path)?;
        }
        if let [Some(a), Some(b)] = paths
            && a == b
        {
            return Err(ConfigError::new(format!(
                "the revocation and authorization endpoints are both mounted at {a:?}"
            )));
        }
        Ok(())
    }
}

/// A mounted path is absolute, visible unreserved ASCII in non-empty segments with no dot
/// segment (so that a request path equal to it is in normal form), and is none of the
/// other paths the layer serves.
fn check_path(path: &str) -> Result<(), ConfigError> {
    let shaped = path.len() <= 256
        && path.starts_with('/')
        && path[1..]
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b));
    if !shaped {
        return Err(ConfigError::new(format!(
            "the endpoint path {path:?} is not an absolute path of non-empty segments of \
             a-z, A-Z, 0-9, '-', '.', '_' and '~' (no dot segment, at most 256 bytes)"
        )));
    }
    if path == names::path::RESOURCE_METADATA
        || path == names::path::JWKS
        || path.starts_with(names::path::PENDING_PREFIX)
        || format!("{path}/") == names::path::PENDING_PREFIX
    {
        return Err(ConfigError::new(format!(
            "the endpoint path {path:?} is one this crate serves already"
        )));
    }
    Ok(())
}

/// Most callers the limiter tracks at once; a new caller when all are busy is refused.
const MAX_TRACKED: usize = 1024;
/// Requests a caller may send at once.
pub(crate) const BURST: u64 = 100;
/// Requests a caller regains per second.
pub(crate) const PER_SECOND: u64 = 20;

/// A token bucket per verified caller (its issuer identifier). Its state is bounded: at
/// most [`MAX_TRACKED`] callers, each an identifier of at most 255 bytes and two numbers.
#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<Arc<str>, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: u64,
    at: u64,
}

impl Bucket {
    fn refilled(self, now: u64) -> Bucket {
        let gained = now.saturating_sub(self.at).saturating_mul(PER_SECOND);
        Bucket {
            tokens: self.tokens.saturating_add(gained).min(BURST),
            at: now.max(self.at),
        }
    }
}

impl RateLimiter {
    /// Spends one request of `caller` at `now`; `Err(seconds)` to wait when it has none.
    pub(crate) fn take(&self, caller: &str, now: u64) -> Result<(), u32> {
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bucket) = buckets.get_mut(caller) {
            let mut refilled = bucket.refilled(now);
            if refilled.tokens == 0 {
                *bucket = refilled;
                return Err(1);
            }
            refilled.tokens -= 1;
            *bucket = refilled;
            return Ok(());
        }
        if buckets.len() >= MAX_TRACKED {
            // A full bucket holds nothing a fresh one would not.
            buckets.retain(|_, bucket| bucket.refilled(now).tokens < BURST);
            if buckets.len() >= MAX_TRACKED {
                return Err(1);
            }
        }
        buckets.insert(
            Arc::from(caller),
            Bucket {
                tokens: BURST - 1,
                at: now,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_waits_and_regains_per_second() {
        let limiter = RateLimiter::default();
        for _ in 0..BURST {
            assert_eq!(limiter.take("https://ps.example", 100), Ok(()));
        }
        assert_eq!(limiter.take("https://ps.example", 100), Err(1));
        assert_eq!(
            limiter.take("https://as.example", 100),
            Ok(()),
            "callers are counted apart"
        );
        for _ in 0..PER_SECOND {
            assert_eq!(limiter.take("https://ps.example", 101), Ok(()));
        }
        assert_eq!(limiter.take("https://ps.example", 101), Err(1));
    }

    #[test]
    fn the_limiter_tracks_a_bounded_number_of_callers() {
        let limiter = RateLimiter::default();
        for i in 0..MAX_TRACKED {
            assert_eq!(limiter.take(&format!("https://s{i}.example"), 100), Ok(()));
        }
        assert_eq!(limiter.take("https://new.example", 100), Err(1), "all busy: refused");
        // Once the others have refilled, they are forgotten and a new caller fits.
        assert_eq!(limiter.take("https://new.example", 101), Ok(()));
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_TRACKED);
    }

    #[test]
    fn paths_that_collide_or_are_not_normal_are_refused() {
        for bad in [
            "revoke",
            "/",
            "//revoke",
            "/a/../revoke",
            "/revoke/",
            "/re%76oke",
            "/.well-known/jwks.json",
            "/aauth/pending/x",
            "/aauth/pending",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in ["/revoke", "/aauth/revoke", "/authorize"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }
}
