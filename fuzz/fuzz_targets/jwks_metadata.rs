//! Fetched documents: a JWKS, issuer metadata (draft -11) and demo-generation metadata.
//! The first byte chooses the key policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::AlgPolicy;
use tower_aauth::engine::{KeySet, legacy_metadata_jwks_uri, metadata_jwks_uri};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let policy = if mode & 1 == 1 {
        AlgPolicy::Legacy
    } else {
        AlgPolicy::Strict
    };
    if let Ok(set) = KeySet::from_jwks(body, 32, policy) {
        assert!(set.len() <= 32);
    }
    let _ = metadata_jwks_uri(body, "https://issuer.example");
    let _ = legacy_metadata_jwks_uri(body, "https://issuer.example");
});
