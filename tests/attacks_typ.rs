//! Attack catalogue §1.2: token-type (`typ`) confusion. A validly signed token of one kind
//! offered where another is needed is refused or challenged, never served; `typ` is
//! checked before any issuer key is fetched.

mod support;

use serde_json::json;
use support::attack::*;
use tower_aauth::ResourceKey;
use tower_aauth::engine;
use tower_aauth::testing::KeySource;

fn header(typ: &str, kid: &str) -> String {
    json!({"alg": "Ed25519", "typ": typ, "kid": kid}).to_string()
}

fn auth_token_typed(h: &Harness, typ: &str) -> String {
    raw_jwt(
        &header(typ, "as-key-1"),
        &h.auth_claims().to_string(),
        h.access_server.key(),
    )
}

#[tokio::test]
async fn typ_01_our_own_resource_token_presented_as_a_credential_is_invalid_jwt() {
    let resource_key = ResourceKey::from_seed([7; 32]).with_kid("resource-key-1");
    let h = Harness::with(|b| b.signing_key(resource_key));
    let minted = h
        .scoped_attack(h.signed("/data", &KeySource::Hwk), &["data.read"])
        .await
        .challenged();
    h.calls.store(0, std::sync::atomic::Ordering::SeqCst);
    let fetched = h.fetches();
    h.token_attack(&minted).await.refused("invalid_jwt").await;
    assert_eq!(h.fetches(), fetched, "our own key is never looked up as an issuer's");
}

#[tokio::test]
async fn typ_02_an_agent_token_on_a_scoped_route_is_challenged_never_served() {
    let h = Harness::new();
    let token = h
        .agent_provider
        .agent_token("aauth:assistant@agent.example", &h.agent.public_jwk(), NOW);
    let request = h.signed("/data", &KeySource::Jwt(token));
    h.scoped_attack(request, &["data.read"]).await.challenged();
}

#[tokio::test]
async fn typ_03_a_person_token_on_a_scoped_route_is_challenged_never_served() {
    let h = Harness::new();
    let token = h.person_server.person_token(RESOURCE, &h.agent.public_jwk(), NOW);
    let request = h.signed("/data", &KeySource::Jwt(token));
    h.scoped_attack(request, &["data.read"]).await.challenged();
}

#[tokio::test]
async fn typ_04_missing_or_generic_typ_is_invalid_jwt_before_any_fetch() {
    for typ in ["JWT", "at+jwt", "dpop+jwt", "jwt", ""] {
        let h = Harness::new();
        let token = auth_token_typed(&h, typ);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
    let h = Harness::new();
    let untyped = json!({"alg": "Ed25519", "kid": "as-key-1"}).to_string();
    let token = raw_jwt(&untyped, &h.auth_claims().to_string(), h.access_server.key());
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn typ_05_the_application_prefix_and_letter_case_are_normalised() {
    for typ in ["application/aa-auth+jwt", "AA-AUTH+JWT", "Application/Aa-Auth+Jwt"] {
        let h = Harness::new();
        let token = auth_token_typed(&h, typ);
        h.token_attack(&token).await.accepted();
    }
}

#[tokio::test]
async fn typ_05_whitespace_or_parameters_in_typ_are_invalid_jwt() {
    for typ in [
        "aa-auth+jwt ",
        " aa-auth+jwt",
        "aa-auth+jwt;v=1",
        "aa-auth+jwt; v=1",
        "application/ aa-auth+jwt",
    ] {
        let h = Harness::new();
        let token = auth_token_typed(&h, typ);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn typ_06_legacy_typ_names_are_invalid_jwt_under_the_strict_profile() {
    for typ in [engine::typ::LEGACY_AUTH, "resource+jwt", "agent+jwt"] {
        let h = Harness::new();
        let token = auth_token_typed(&h, typ);
        h.token_attack(&token)
            .await
            .without_fetch()
            .refused("invalid_jwt")
            .await;
    }
}

#[tokio::test]
async fn typ_06_a_legacy_resource_token_is_never_a_credential_under_the_legacy_profile() {
    let h = Harness::with(|b| b.profile(tower_aauth::Profile::Both));
    let token = auth_token_typed(&h, "resource+jwt");
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}

#[tokio::test]
async fn typ_07_an_auth_token_naming_the_agent_document_as_dwk_is_invalid_jwt() {
    let h = Harness::new();
    let mut claims = h.auth_claims();
    claims["dwk"] = json!(engine::dwk::AGENT);
    let token = raw_jwt(
        &header("aa-auth+jwt", "as-key-1"),
        &claims.to_string(),
        h.access_server.key(),
    );
    h.token_attack(&token)
        .await
        .without_fetch()
        .refused("invalid_jwt")
        .await;
}
