//! `Signature-Input`: the strict dictionary parse, label selection, component and
//! parameter rules. Any outcome but a panic is fine; an accepted input must re-serialise
//! to a `@signature-params` value that parses back to the same components.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::{DEFAULT_MAX_COMPONENTS, ParsedInput};

fuzz_target!(|data: &[u8]| {
    let Ok(field) = std::str::from_utf8(data) else { return };
    if let Ok(input) = ParsedInput::parse(field, DEFAULT_MAX_COMPONENTS) {
        let again = ParsedInput::parse(
            &format!("{}={}", input.label, input.signature_params),
            DEFAULT_MAX_COMPONENTS,
        )
        .expect("our own serialisation parses");
        assert_eq!(again.components, input.components);
        assert_eq!(again.params, input.params);
    }
});
