//! The replay store's key: a domain-separated hash, never the signature or token itself.

use sha2::{Digest, Sha256};

/// What a [`ReplayStore`](super::ReplayStore) remembers: a 32-byte hash, never the signature or token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl std::fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayKey({})", self.to_hex())
    }
}

impl ReplayKey {
    /// The key for a verified request signature: SHA-256 over a domain tag, the
    /// verifying key's thumbprint and the signature base.
    pub fn signature(key_thumbprint: &str, signature_base: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tower-aauth/replay/signature\0");
        hash.update(key_thumbprint.as_bytes());
        hash.update([0]);
        hash.update(signature_base);
        ReplayKey(hash.finalize().into())
    }

    /// The key consuming a token's `(iss, jti)` (single-use grants).
    pub fn jti(issuer: &str, jti: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tower-aauth/replay/jti\0");
        hash.update(issuer.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        ReplayKey(hash.finalize().into())
    }

    /// The key of a Web Bot Auth `nonce` under the bot key of thumbprint `key_thumbprint`,
    /// in a domain of its own.
    pub(crate) fn bot_nonce(key_thumbprint: &str, nonce: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tower-aauth/replay/web-bot-auth-nonce\0");
        hash.update(key_thumbprint.as_bytes());
        hash.update([0]);
        hash.update(nonce.as_bytes());
        ReplayKey(hash.finalize().into())
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of the hash (64 characters), as the Redis store names its keys.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
    }
}
