//! `Signature`: the strict dictionary and the lenient base64url fallback. Whatever the
//! alphabet, an accepted value is raw bytes; standard-only must never accept what the
//! strict parser refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::{SignatureAlphabet, decode_signature, parse_dictionary_strict};

fuzz_target!(|data: &[u8]| {
    let Ok(field) = std::str::from_utf8(data) else { return };
    let _ = decode_signature(field, "sig", SignatureAlphabet::Lenient);
    if decode_signature(field, "sig", SignatureAlphabet::StandardOnly).is_ok() {
        assert!(parse_dictionary_strict(field).is_some());
    }
});
