//! `Content-Digest` against a body: the field is the first line, the body the rest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::{content_digest_sha256, verify_content_digest};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (field, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    if let Ok(field) = std::str::from_utf8(field) {
        let _ = verify_content_digest(field, body);
    }
    // Our own digest of any body always verifies it.
    verify_content_digest(&content_digest_sha256(body), body).expect("own digest verifies");
});
