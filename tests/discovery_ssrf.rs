//! SSRF through key discovery (attack catalogue §1.4): hostile identifiers and URLs are
//! refused before any resolver or connector runs; hostile resolved addresses are refused
//! before any connector runs; the connector only ever sees vetted addresses. No test here
//! opens a socket: resolver and connector are injected.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use support::discovery::{MapFetch, RecordingConnector, ScriptedResolver};
use tower_aauth::SignatureErrorCode;
use tower_aauth::discovery::{
    DiscoveryResolver, Fetch, FetchError, FetchPolicy, GuardedFetch, IdentifierPolicy, KeyQuery, KeyResolver,
};

fn guarded(resolver: &ScriptedResolver, connector: &RecordingConnector, allow_http_loopback: bool) -> impl Fetch {
    GuardedFetch::with_parts(resolver.clone(), connector.clone(), {
        let mut policy = FetchPolicy::default();
        policy.allow_http_loopback = allow_http_loopback;
        policy.timeout = Duration::from_secs(5);
        policy
    })
}

fn public() -> Vec<IpAddr> {
    vec!["93.184.216.34".parse().unwrap()]
}

/// URLs refused by their raw string: none of them may reach the resolver or connector,
/// whatever a URL parser would have made of them.
const HOSTILE_URLS: &[&str] = &[
    // SSRF-01: not https
    "http://agent.example/jwks",
    "file:///etc/passwd",
    "gopher://agent.example:70/_x",
    "data:application/json,{}",
    "//agent.example/jwks",
    "ftp://agent.example/jwks",
    "HTTPS://agent.example/jwks",
    // SSRF-02: userinfo and parser differentials
    "https://u:p@agent.example/jwks",
    "https://agent.example@evil.example/jwks",
    "https://agent.example\\@evil.example/jwks",
    "https://agent.example%40evil.example/jwks",
    "https://agent .example/jwks",
    "https://agent.example/jw ks",
    "https://agent.example\t/jwks",
    // SSRF-03: ports
    "https://agent.example:443/jwks",
    "https://agent.example:8443/jwks",
    "https://agent.example:22/jwks",
    // SSRF-04: fragments and odd paths
    "https://agent.example/jwks#f",
    "https://agent.example#f",
    // SSRF-05: IP literals in every spelling
    "https://127.0.0.1/jwks",
    "https://2130706433/jwks",
    "https://0x7f.1/jwks",
    "https://0x7f000001/jwks",
    "https://0177.0.0.1/jwks",
    "https://127.1/jwks",
    "https://0/jwks",
    "https://0.0.0.0/jwks",
    "https://[::1]/jwks",
    "https://[::ffff:127.0.0.1]/jwks",
    "https://169.254.169.254/latest/meta-data",
    "https://[fd00::1]/jwks",
    "https://10.0.0.1/jwks",
    "https://192.168.1.1/jwks",
    "https://100.64.0.1/jwks",
    // SSRF-06: normalisation smuggling
    "https://Agent.Example/jwks",
    "https://agent.example./jwks",
    "https://ägent.example/jwks",
    "https://\u{0430}gent.example/jwks",
    "https://agent..example/jwks",
    "https://-agent.example/jwks",
    "https://localhost/jwks",
    "https://metadata/computeMetadata",
    // loopback spellings are refused without the development flag, even over http
    "http://127.0.0.1:8080/jwks",
    "http://localhost:8080/jwks",
    "http://[::1]:8080/jwks",
];

#[tokio::test]
async fn hostile_urls_are_refused_before_any_resolution_or_connection() {
    assert!(HOSTILE_URLS.len() >= 40);
    let resolver = ScriptedResolver::answering(vec![public()]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, false);
    for url in HOSTILE_URLS {
        assert_eq!(fetch.get(url, 1024).await.unwrap_err(), FetchError::Refused, "{url}");
    }
    assert_eq!(resolver.calls(), 0, "no resolver call for a pre-DNS refusal");
    assert_eq!(connector.calls(), 0, "no connection for a pre-DNS refusal");
}

#[tokio::test]
async fn the_development_flag_admits_only_literal_loopback_origins() {
    let resolver = ScriptedResolver::answering(vec![public()]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, true);
    for url in [
        "http://127.0.0.2:8080/jwks",
        "http://127.1:8080/jwks",
        "http://2130706433:8080/jwks",
        "http://10.0.0.1:8080/jwks",
        "http://127.0.0.1.evil.example/jwks",
        "http://localhost.evil.example/jwks",
        "http://user@127.0.0.1:8080/jwks",
        "http://127.0.0.1:0/jwks",
        "http://127.0.0.1:99999/jwks",
    ] {
        assert_eq!(fetch.get(url, 1024).await.unwrap_err(), FetchError::Refused, "{url}");
    }
    assert_eq!((resolver.calls(), connector.calls()), (0, 0));
}

#[tokio::test]
async fn loopback_origins_connect_to_loopback_without_dns_in_development_mode() {
    let resolver = ScriptedResolver::answering(vec![public()]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, true);
    fetch.get("http://127.0.0.1:8080/jwks", 1024).await.unwrap();
    fetch.get("http://localhost:8081/jwks", 1024).await.unwrap();
    assert_eq!(resolver.calls(), 0, "localhost is never sent to DNS");
    let targets = connector.targets.lock().unwrap().clone();
    assert_eq!(targets[0].1, vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]);
    assert_eq!(targets[1].1, vec!["127.0.0.1:8081".parse::<SocketAddr>().unwrap()]);
}

/// SSRF-08/09: special-purpose addresses returned by DNS.
const HOSTILE_ADDRESSES: &[&str] = &[
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.5",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "198.18.0.1",
    "198.19.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fd12::1",
    "fc00::1",
    "fec0::1",
    "ff02::1",
    "::ffff:10.0.0.1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",
    "::10.0.0.1",
    "64:ff9b::a00:1",
    "64:ff9b::7f00:1",
    "64:ff9b:1::1",
    "2002:a00:1::",
    "2002:7f00:1::",
    "2001:db8::1",
    "2001::1",
    "2001:2::1",
    "3fff::1",
    "100::1",
];

#[tokio::test]
async fn special_purpose_resolved_addresses_are_refused_before_connecting() {
    for address in HOSTILE_ADDRESSES {
        let resolver = ScriptedResolver::answering(vec![vec![address.parse().unwrap()]]);
        let connector = RecordingConnector::default();
        let fetch = guarded(&resolver, &connector, false);
        let result = fetch.get("https://agent.example/jwks", 1024).await;
        assert_eq!(result.unwrap_err(), FetchError::Refused, "{address}");
        assert_eq!(resolver.calls(), 1, "{address}");
        assert_eq!(connector.calls(), 0, "{address} must never be connected to");
    }
}

#[tokio::test]
async fn loopback_addresses_from_dns_are_refused_even_in_development_mode() {
    let resolver = ScriptedResolver::answering(vec![vec!["127.0.0.1".parse().unwrap()]]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, true);
    let result = fetch.get("https://agent.example/jwks", 1024).await;
    assert_eq!(result.unwrap_err(), FetchError::Refused);
    assert_eq!(connector.calls(), 0);
}

#[tokio::test]
async fn one_private_address_in_a_mixed_answer_refuses_the_name() {
    let resolver = ScriptedResolver::answering(vec![vec![
        "93.184.216.34".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    ]]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, false);
    let result = fetch.get("https://agent.example/jwks", 1024).await;
    assert_eq!(result.unwrap_err(), FetchError::Refused);
    assert_eq!(connector.calls(), 0);
}

#[tokio::test]
async fn the_connector_receives_only_the_vetted_addresses_of_one_resolution() {
    // SSRF-11: a rebinding resolver answers public first, loopback afterwards.
    let resolver = ScriptedResolver::answering(vec![public(), vec!["127.0.0.1".parse().unwrap()]]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, false);
    fetch.get("https://agent.example/jwks", 1024).await.unwrap();
    assert_eq!(resolver.calls(), 1, "one resolution per fetch");
    let targets = connector.targets.lock().unwrap().clone();
    assert_eq!(
        targets,
        vec![("agent.example".to_owned(), vec!["93.184.216.34:443".parse().unwrap()])]
    );
}

#[tokio::test]
async fn an_empty_answer_is_a_resolution_failure_without_connection() {
    let resolver = ScriptedResolver::answering(vec![vec![]]);
    let connector = RecordingConnector::default();
    let fetch = guarded(&resolver, &connector, false);
    assert_eq!(
        fetch.get("https://agent.example/jwks", 1024).await.unwrap_err(),
        FetchError::Resolution
    );
    assert_eq!(connector.calls(), 0);
}

/// Identifiers (and `dwk`s) that the resolver refuses before asking its fetcher.
#[tokio::test]
async fn hostile_identifiers_and_dwks_never_reach_the_fetcher() {
    let fetch = MapFetch::default();
    let resolver = DiscoveryResolver::new(fetch.clone(), IdentifierPolicy::strict());
    let mut identifiers: Vec<&str> = HOSTILE_URLS.to_vec();
    identifiers.extend([
        "https://agent.example/",
        "https://agent.example/v1",
        "https://agent.example?x=1",
        "https://agent.example:443",
    ]);
    for issuer in identifiers {
        let query = KeyQuery::new(issuer, "aauth-agent.json", "k");
        assert!(resolver.cached(&query).is_none());
        let error = resolver.resolve(query).await.unwrap_err();
        assert_eq!(error.signature_code(), Some(SignatureErrorCode::InvalidKey), "{issuer}");
    }
    for dwk in [
        "../../admin",
        "a/b",
        "x?y",
        "%2e%2e",
        "aauth-agent.json/../x",
        "jwks.json",
    ] {
        let query = KeyQuery::new("https://agent.example", dwk, "k");
        let error = resolver.resolve(query).await.unwrap_err();
        assert_eq!(error.signature_code(), Some(SignatureErrorCode::InvalidKey), "{dwk}");
    }
    assert_eq!(fetch.total_calls(), 0);
    assert_eq!(resolver.cached_issuers(), 0, "refusals create no cache entry");
}

#[tokio::test]
async fn every_fetch_failure_looks_the_same_to_the_client() {
    // SSRF-21: refused address, DNS failure, transport failure, timeout and status all
    // become one code and one detail, so discovery is no port-scanning oracle.
    let causes = [
        FetchError::Refused,
        FetchError::Resolution,
        FetchError::Transport,
        FetchError::Timeout,
        FetchError::Status(500),
        FetchError::TooLarge,
        FetchError::ContentType,
    ];
    let answers: Vec<_> = causes
        .into_iter()
        .map(|cause| {
            let error = cause.into_error();
            (error.code(), error.detail(), error.status())
        })
        .collect();
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0].0, "invalid_key");
}
