//! `Signature-Agent` (Web Bot Auth): the field and the covered member name, from raw bytes
//! to the key directory. Never a panic; whatever is admitted is an `https://` DNS-name
//! origin (or a loopback origin when the fence allows it), its directory URL is that
//! origin's well-known path and passes URL admission, and the `keyid` shape check agrees
//! with its definition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::discovery::IdentifierPolicy;
use tower_aauth::engine::{admit_url, is_dns_name, is_thumbprint, signature_agent_directory};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The first line names the covered member ("" for the legacy form), the rest is the field.
    let (member, field) = text.split_once('\n').unwrap_or(("agent1", text));
    let member = (!member.is_empty()).then_some(member);
    if let Ok(found) = signature_agent_directory(field, member, &IdentifierPolicy::strict()) {
        let host = found.origin.strip_prefix("https://").expect("strict origins are https");
        assert!(is_dns_name(host));
        assert_eq!(found.url, format!("{}/.well-known/http-message-signatures-directory", found.origin));
        assert!(admit_url(&found.url, false).is_some());
    }
    if let Ok(found) = signature_agent_directory(field, member, &IdentifierPolicy::allowing_http_loopback()) {
        assert!(admit_url(&found.url, true).is_some());
    }
    let thumbprint = is_thumbprint(field);
    assert_eq!(
        thumbprint,
        field.len() == 43 && field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
});
