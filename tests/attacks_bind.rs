//! Attack catalogue §1.11: token binding (`cnf`) and thumbprints. Under the `jwt` scheme
//! the key that must have signed the request is the token's `cnf.jwk`; a token is never a
//! bearer credential.

mod support;

use axum::body::Body;
use http::Request;
use serde_json::{Value, json};
use support::attack::*;
use tower_aauth::testing::{KeySource, TestAgent};
use tower_aauth::{
    Jwk,
    engine::{b64url_decode, thumbprint_of_x},
};

fn token_with_cnf(h: &Harness, cnf: Option<Value>) -> String {
    let mut claims = h.auth_claims();
    match cnf {
        Some(cnf) => claims["cnf"] = cnf,
        None => {
            claims.as_object_mut().unwrap().remove("cnf");
        }
    }
    h.access_server.sign("aa-auth+jwt", &claims)
}

#[tokio::test]
async fn bind_01_a_stolen_token_used_with_another_key_is_invalid_signature() {
    let h = Harness::new();
    let token = h
        .access_server
        .auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    let thief = TestAgent::from_seed([66; 32]);
    let mut request = get("/data");
    thief.sign(&mut request, &KeySource::Jwt(token), NOW);
    h.attack(request)
        .await
        .without_fetch()
        .refused("invalid_signature")
        .await;
}

#[tokio::test]
async fn bind_02_a_structurally_incomplete_cnf_is_invalid_jwt() {
    let h0 = Harness::new();
    let jwk = h0.agent.public_jwk().to_json();
    let without = |member: &str| {
        let mut jwk = jwk.clone();
        jwk.as_object_mut().unwrap().remove(member);
        json!({ "jwk": jwk })
    };
    let cases = [
        None,
        Some(json!({})),
        Some(json!({"jkt": h0.agent.thumbprint()})),
        Some(without("kty")),
        Some(without("crv")),
        Some(without("x")),
        Some(json!({"jwk": "not an object"})),
    ];
    for cnf in cases {
        let h = Harness::new();
        let token = token_with_cnf(&h, cnf);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

/// The catalogue expects `invalid_jwt`; we answer `invalid_key`, the code SIGKEY-09
/// registers for a key that is "unparsable, untrusted, or inconsistent" — the token is
/// well formed, the key it binds is not (BIND-04 uses `invalid_key` for the same reason).
#[tokio::test]
async fn bind_03_private_members_in_cnf_jwk_are_invalid_key() {
    for member in ["d", "p", "q", "k"] {
        let h = Harness::new();
        let mut jwk = h.agent.public_jwk().to_json();
        jwk[member] = json!("AAAA");
        let token = token_with_cnf(&h, Some(json!({ "jwk": jwk })));
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_key")
            .await;
    }
}

/// Digest §3 rule 7: an unsupported or polymorphic algorithm is `unsupported_algorithm`
/// (with `Accept-Signature-Alg`), an `alg` that contradicts the key type is `invalid_key`.
/// An absent `alg` is the demo generation's form, accepted only by the legacy profile.
#[tokio::test]
async fn bind_04_cnf_jwk_algorithm_games_are_refused_before_any_fetch() {
    for (edit, code) in [
        (json!({"alg": "EdDSA"}), "unsupported_algorithm"),
        (json!({"crv": "Ed448"}), "unsupported_algorithm"),
        (json!({"kty": "EC"}), "unsupported_algorithm"),
        (json!({"alg": "ES256"}), "invalid_key"),
    ] {
        let h = Harness::new();
        let mut jwk = h.agent.public_jwk().to_json();
        for (name, value) in edit.as_object().unwrap() {
            jwk[name] = value.clone();
        }
        let token = token_with_cnf(&h, Some(json!({ "jwk": jwk })));
        h.token_attack(&token).await.without_fetch().refused(code).await;
    }
    let h = Harness::new();
    let mut jwk = h.agent.public_jwk().to_json();
    jwk.as_object_mut().unwrap().remove("alg");
    let token = token_with_cnf(&h, Some(json!({ "jwk": jwk })));
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("unsupported_algorithm")
        .await;
}

#[test]
fn bind_05_thumbprints_follow_rfc_7638_whatever_the_member_order_or_extras() {
    // RFC 8037 A.3.
    assert_eq!(
        thumbprint_of_x("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    // RFC 9421 B.1.4 test-key-ed25519.
    let x = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";
    assert_eq!(thumbprint_of_x(x), "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U");
    let plain = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "Ed25519"});
    let decorated = json!({"x": x, "use": "sig", "kid": "k", "alg": "Ed25519", "crv": "Ed25519", "kty": "OKP"});
    for jwk in [plain, decorated] {
        let parsed = Jwk::from_json(jwk.as_object().unwrap(), tower_aauth::engine::AlgPolicy::Strict).unwrap();
        assert_eq!(parsed.thumbprint(), "poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U");
    }
    assert_eq!(b64url_decode(x).unwrap().len(), 32);
}

#[tokio::test]
async fn bind_06_a_token_sent_as_a_bearer_credential_is_challenged_never_served() {
    let h = Harness::new();
    let token = h
        .access_server
        .auth_token(RESOURCE, &h.agent.public_jwk(), "data.read", NOW);
    let request = Request::get(format!("{RESOURCE}/data"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let response = h.send_scoped(request, &["data.read"]).await;
    assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
    assert!(response.headers().get("aauth-requirement").is_some());
    assert_eq!(h.calls(), 0, "the inner service must not run");
    assert_eq!(h.fetches(), 0);
}
