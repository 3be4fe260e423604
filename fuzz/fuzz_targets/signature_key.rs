//! `Signature-Key`, strict (RFC 9651 only) and legacy (the demo generation's member
//! shape as a fallback). The first byte chooses the profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::{AcceptedSchemes, SignatureKey};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(field) = std::str::from_utf8(rest) else { return };
    let accepted = AcceptedSchemes::default();
    let legacy = mode & 1 == 1;
    let _ = SignatureKey::parse_profiled(field, "sig", &accepted, legacy);
    if !legacy {
        // The strict entry point and the profiled one agree when legacy is off.
        assert_eq!(
            SignatureKey::parse(field, "sig", &accepted).is_ok(),
            SignatureKey::parse_profiled(field, "sig", &accepted, false).is_ok()
        );
    }
});
