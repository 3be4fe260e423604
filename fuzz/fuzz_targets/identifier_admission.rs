//! Identifier and URL admission: the raw-string grammar that runs before any URL parser
//! or resolver. An admitted identifier is always `https://` + a lower-case DNS name (or
//! loopback http when that is allowed), and its URL is admitted too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::is_agent_identifier;
use tower_aauth::{
    discovery::IdentifierPolicy,
    engine::{admit_url, is_dns_name},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if IdentifierPolicy::strict().admits(text) {
        let host = text.strip_prefix("https://").expect("strict identifiers are https");
        assert!(is_dns_name(host));
        assert!(admit_url(&format!("{text}/.well-known/aauth-agent.json"), false).is_some());
    }
    let _ = IdentifierPolicy::allowing_http_loopback().admits(text);
    let _ = admit_url(text, false);
    let _ = admit_url(text, true);
    let _ = is_agent_identifier(text);
});
