//! A compact JWT through the strict parser and, when it parses, the claims validator
//! (every check that runs before any key is fetched). The first byte chooses the profile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_aauth::engine::{AlgPolicy, UnverifiedJws};
use tower_aauth::engine::{IssuerTrust, TokenPolicy};

const NOW: u64 = 1_730_217_600;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(token) = std::str::from_utf8(rest) else { return };
    let mut policy = TokenPolicy::new("https://resource.example");
    policy.access_servers.push("https://as.example".to_owned());
    policy.person_servers = IssuerTrust::Any;
    if mode & 1 == 1 {
        policy.alg = AlgPolicy::Legacy;
        policy.legacy = true;
    }
    let Ok(jws) = UnverifiedJws::parse(token, policy.alg) else {
        return;
    };
    if let Ok(claims) = policy.check_claims(&jws, NOW) {
        assert!(claims.exp > NOW);
        assert_eq!(claims.kid, jws.kid().unwrap_or_default());
    }
});
