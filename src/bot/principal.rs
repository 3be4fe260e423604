//! [`VerifiedBot`]: the principal of a verified Web Bot Auth request.

use std::sync::Arc;

/// A bot whose Web Bot Auth signature the layer verified: named by the origin of its key
/// directory and the thumbprint of its key. Inserted into the request's extensions
/// instead of a [`VerifiedRequest`](crate::VerifiedRequest), so that it never satisfies
/// an agent, person, scope or detail requirement. With the `axum` feature it is an
/// extractor, refusing a request without it like [`require_bot`](crate::guard::require_bot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBot {
    pub(crate) origin: Arc<str>,
    pub(crate) thumbprint: Arc<str>,
    /// The request's replay entry, released when a guard of this crate refuses it.
    pub(crate) replay: Option<crate::replay::key::ReplayKey>,
    /// The signature's `expires`: how long its replay entry must live.
    pub(crate) expires: u64,
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
