//! Attack catalogue §1.3: JWS header-parameter injection (`kid`, `jku`, `x5u`, `x5c`,
//! `jwk`). Keys come only from the issuer's published JWKS, looked up by an opaque `kid`;
//! nothing in a token header can name or carry a key.

mod support;

use serde_json::{Value, json};
use support::attack::*;
use tower_aauth::ResourceKey;

fn token_with_header(h: &Harness, header: Value, key: &ResourceKey) -> String {
    raw_jwt(&header.to_string(), &h.auth_claims().to_string(), key)
}

fn evil() -> ResourceKey {
    ResourceKey::from_seed([66; 32]).with_kid("evil")
}

/// Keys are looked up by `kid` in the issuer's parsed JWKS, a map: whatever the `kid`
/// says, it is a string compared with other strings. A `kid` with spaces is not even an
/// opaque id and is refused before any fetch (stricter than the catalogue's
/// "after ≤ 1 refresh").
#[tokio::test]
async fn kid_01_a_kid_shaped_like_a_path_query_or_template_is_only_an_unknown_key() {
    for kid in ["../../etc/passwd", "${jndi:ldap://x}", "%0d%0aSet-Cookie", "{{7*7}}"] {
        let logs = Logs::capture();
        let issuer = tower_aauth::testing::TestIssuer::new(AS, [2; 32], "as-key-1");
        let (h, fetches) = discovering(issuer.jwks());
        let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": kid});
        let token = token_with_header(&h, header, h.access_server.key());
        h.token_attack(&token).await.refused("unknown_key").await;
        assert!(
            fetches.load(std::sync::atomic::Ordering::SeqCst) <= 2,
            "metadata and one JWKS fetch at most"
        );
        logs.assert_clean(&[&token]);
    }
    let h = Harness::new();
    let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "' OR 1=1 --"});
    let token = token_with_header(&h, header, h.access_server.key());
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn kid_02_an_oversized_or_control_character_kid_is_invalid_jwt_before_any_fetch() {
    let long = "k".repeat(10 * 1024);
    for kid in [long.as_str(), "a\u{0}b", "a\r\nb", "a\u{7f}"] {
        let logs = Logs::capture();
        let h = Harness::with(|b| b.max_header_bytes(64 * 1024));
        let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": kid});
        let token = token_with_header(&h, header, h.access_server.key());
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
        logs.assert_clean(&[&token]);
    }
}

#[tokio::test]
async fn kid_03_jku_and_x5u_are_never_fetched_and_an_attacker_key_never_verifies() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    for name in ["jku", "x5u"] {
        let h = Harness::new();
        let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "as-key-1", name: url});
        let token = token_with_header(&h, header, &evil());
        h.token_attack(&token).await.refused("invalid_jwt").await;
    }
    assert!(listener.accept().is_err(), "nobody connected to the attacker's JWKS");
}

#[tokio::test]
async fn kid_04_an_embedded_jwk_or_x5c_header_is_ignored() {
    let h = Harness::new();
    let embedded = evil().public_jwk().to_json();
    let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "as-key-1", "jwk": embedded});
    let token = token_with_header(&h, header, &evil());
    h.token_attack(&token).await.refused("invalid_jwt").await;

    let h = Harness::new();
    let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt", "kid": "as-key-1", "x5c": ["MIIB"]});
    let token = token_with_header(&h, header, &evil());
    h.token_attack(&token).await.refused("invalid_jwt").await;
}

#[tokio::test]
async fn kid_05_a_token_without_kid_is_invalid_jwt_without_trying_every_key() {
    let h = Harness::new();
    let header = json!({"alg": "Ed25519", "typ": "aa-auth+jwt"});
    let token = token_with_header(&h, header, h.access_server.key());
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

/// The duplicated `kid` is unusable (the rest of the JWKS still works): the key layer
/// answers `invalid_key`, which a token surfaces as `invalid_jwt`, "the token issuer's keys
/// could not be used". The catalogue's `unknown_key` would tell the agent a rotation might
/// fix it; nothing will until the issuer fixes its JWKS.
#[tokio::test]
async fn kid_06_a_jwks_with_two_keys_sharing_a_kid_makes_that_kid_unusable() {
    let issuer = tower_aauth::testing::TestIssuer::new(AS, [2; 32], "as-key-1");
    let mut twin = evil().public_jwk().to_json();
    twin["kid"] = json!("as-key-1");
    let other = ResourceKey::from_seed([5; 32]).with_kid("as-key-2");
    let jwks = json!({"keys": [issuer.public_jwk().to_json(), twin, other.public_jwk().to_json()]});
    let (h, _) = discovering(jwks.clone());
    let token = issuer.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    h.token_attack(&token)
        .await
        .refused_because("invalid_jwt", "the token issuer's keys could not be used")
        .await;
    // The same document still serves its other, unambiguous key.
    let (h, _) = discovering(jwks);
    let other_issuer = tower_aauth::testing::TestIssuer::new(AS, [5; 32], "as-key-2");
    let token = other_issuer.auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    h.token_attack(&token).await.accepted();
}
