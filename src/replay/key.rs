//! The replay store's key: a domain-separated hash, never the signature or token itself.

use sha2::{Digest, Sha256};

/// Per-process secret keys for [`ReplayKey::local_bot_nonce`].
#[derive(Default)]
pub(crate) struct LocalSecret(std::hash::RandomState);

impl std::fmt::Debug for LocalSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSecret")
    }
}

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

    /// The key of a Web Bot Auth `nonce` kept only in this process's own nonce store: 64
    /// bits of SipHash under a secret key of this process, in place of SHA-256, since no
    /// other replica ever needs to compute it. Two nonces meet on one key only by a
    /// collision of a keyed hash whose key never leaves the process (by chance, about
    /// once in 10¹⁴ inserts into a full store of 50 000); a collision could only refuse a request, never admit
    /// a replay (the same nonce always gives the same key).
    pub(crate) fn local_bot_nonce(secret: &LocalSecret, key_thumbprint: &str, nonce: &str) -> Self {
        use std::hash::BuildHasher;
        let mut key = [0; 32];
        let hash = secret.0.hash_one((key_thumbprint, nonce)).to_le_bytes();
        key[..8].copy_from_slice(&hash);
        // The domain: never equal to a SHA-256 key but by a 192-bit accident.
        key[8..].copy_from_slice(b"tower-aauth/bot-nonce/v1");
        ReplayKey(key)
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
