//! [`VerifiedBot`]: the principal of a verified Web Bot Auth request.

use std::sync::Arc;

/// A bot whose Web Bot Auth signature the layer verified: named by the origin of its key
/// directory and the thumbprint of its key. Inserted into the request's extensions
/// instead of a [`VerifiedRequest`](crate::VerifiedRequest), so that it never satisfies
/// an agent, person, scope or detail requirement. With the `axum` feature it is an
/// extractor, refusing a request without it like [`require_bot`](crate::guard::require_bot).
///
/// Two bots are equal when they are the same principal: the same directory origin and
/// thumbprints that match (compared in constant time, as every thumbprint in the crate).
#[derive(Debug, Clone)]
pub struct VerifiedBot {
    pub(crate) origin: Arc<str>,
    pub(crate) thumbprint: Arc<str>,
    /// The request's replay entry, released when a guard of this crate refuses it.
    pub(crate) replay: Option<crate::replay::key::ReplayKey>,
    /// The signature's `expires`: how long its replay entry must live.
    pub(crate) expires: u64,
    /// Whether the method is not replay-protected: the nonce goes to the bots' own store.
    pub(crate) unprotected: bool,
    /// On a replay-protected method, the nonce's key in this process's own nonce store as
    /// well (`replay` is its key in the layer's store): a nonce first used on a safe
    /// method is then still known when the same signature comes back on another.
    pub(crate) local: Option<crate::replay::key::ReplayKey>,
}

impl VerifiedBot {
    /// The origin of the key directory that vouched for the key, for example
    /// `https://bots.example` (`http://127.0.0.1:PORT` under the loopback fence).
    pub fn directory_origin(&self) -> &str {
        &self.origin
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the signing key (base64url), the signature's
    /// `keyid`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

impl PartialEq for VerifiedBot {
    fn eq(&self, other: &Self) -> bool {
        let same_key = crate::jose::thumbprints_match(&self.thumbprint, &other.thumbprint);
        same_key && self.origin == other.origin
    }
}

impl Eq for VerifiedBot {}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(origin: &str, thumbprint: &str, expires: u64) -> VerifiedBot {
        VerifiedBot {
            origin: Arc::from(origin),
            thumbprint: Arc::from(thumbprint),
            replay: None,
            expires,
            unprotected: true,
            local: None,
        }
    }

    #[test]
    fn bots_are_equal_when_origin_and_thumbprint_are() {
        let a = "UDDReOZl1ipXAfp9wYsm13sDBMK5og--QWdBjzuf6o4";
        let b = "VDDReOZl1ipXAfp9wYsm13sDBMK5og--QWdBjzuf6o4";
        assert_eq!(bot("https://bots.example", a, 1), bot("https://bots.example", a, 2));
        assert_ne!(bot("https://bots.example", a, 1), bot("https://bots.example", b, 1));
        assert_ne!(bot("https://bots.example", a, 1), bot("https://other.example", a, 1));
    }
}
