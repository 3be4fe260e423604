//! What the builder refuses, and that each refusal quotes the value and states the rule:
//! identifiers (the resource's, auth servers', person servers', agent providers'), extra
//! authorities, components, scopes, metadata, lifetimes, `kid`s, declared scopes nobody can
//! grant, and the PEM keys `ResourceKey::from_pkcs8_pem` loads (the fixtures in
//! `tests/vectors/pem` were made by the commands in its README, the first of which the
//! crate's README shows).

use tower_aauth::{AAuth, AAuthBuilder, ResourceKey};

/// The rule every identifier refusal ends with.
const RULE: &str = "an identifier is https://host exactly";

/// One refused identifier: the value, whether the development flag is on, and what the
/// message must say besides the value and the rule.
struct Refused {
    value: &'static str,
    loopback: bool,
    says: &'static str,
}

const fn refused(value: &'static str, says: &'static str) -> Refused {
    Refused {
        value,
        loopback: false,
        says,
    }
}

const fn refused_on_loopback(value: &'static str, says: &'static str) -> Refused {
    Refused {
        value,
        loopback: true,
        says,
    }
}

const IDENTIFIERS: &[Refused] = &[
    refused(
        "https://notes.example/",
        r#"ends with "/": write it without the trailing slash ("https://notes.example")"#,
    ),
    refused(
        "https://notes.example:8443",
        r#"has the port ":8443": an identifier names no port, not even ":443""#,
    ),
    refused("https://notes.example:443", r#"has the port ":443""#),
    refused(
        "https://notes.example/api",
        r#"has the path "/api": an identifier is the origin alone ("https://notes.example")"#,
    ),
    refused("https://notes.example?v=1", "has a query or a fragment"),
    refused("https://notes.example#top", "has a query or a fragment"),
    refused("https://user@notes.example", "has userinfo"),
    refused("http://notes.example", "uses http: the scheme is https"),
    refused("notes.example", "has no scheme: it must start with https://"),
    refused("ftp://notes.example", r#"has the scheme "ftp": the scheme is https"#),
    refused("HTTPS://notes.example", r#"writes its scheme "HTTPS" in upper case"#),
    refused(
        "https://Notes.Example",
        r#"has upper-case letters: write the host in lower case ("https://notes.example")"#,
    ),
    refused("https://10.0.0.1", "names an IP address"),
    refused("https://[2001:db8::1]", "names an IP address"),
    refused("https://notes", r#"has the single-label host "notes""#),
    refused("https://notes.example.", "ends its host with a dot"),
    refused("https://notes_api.example", "has a host that is not a DNS name"),
    refused("https://-notes.example", "has a host that is not a DNS name"),
    refused("", "is empty"),
    refused(
        "https://notes .example",
        "contains a space, a control character or a non-ASCII character",
    ),
    refused(
        "https://nötes.example",
        "contains a space, a control character or a non-ASCII character",
    ),
    refused(
        "http://127.0.0.1:8080",
        "names a loopback host: loopback identifiers (http or https, with a port) are for development only and need builder.dangerous().allow_http_loopback()",
    ),
    refused("https://localhost", "names a loopback host"),
    refused_on_loopback(
        "http://127.0.0.1:0",
        r#"has the port "0", which is not a number from 1 to 65535"#,
    ),
    refused_on_loopback("http://localhost:99999", r#"has the port "99999""#),
    refused_on_loopback(
        "http://127.0.0.1:8080/",
        r#"ends with "/": write it without the trailing slash ("http://127.0.0.1:8080")"#,
    ),
    refused_on_loopback("http://notes.example", "uses http with a host that is not loopback"),
];

fn loopback(builder: AAuthBuilder, on: bool) -> AAuthBuilder {
    if on {
        builder.dangerous().allow_http_loopback()
    } else {
        builder
    }
}

fn error_of(builder: AAuthBuilder) -> String {
    builder.build().expect_err("the builder refuses").to_string()
}

#[test]
fn every_refused_identifier_is_quoted_with_the_rule_it_breaks() {
    for row in IDENTIFIERS {
        let value = row.value;
        let roles: [(&str, AAuthBuilder); 4] = [
            ("the resource identifier", AAuth::builder(value)),
            (
                "the auth server identifier",
                AAuth::builder("https://notes.example").auth_server(value),
            ),
            (
                "the person server identifier",
                AAuth::builder("https://notes.example").person_server(value),
            ),
            (
                "the agent provider identifier",
                AAuth::builder("https://notes.example").agent_providers([value]),
            ),
        ];
        for (role, builder) in roles {
            let message = error_of(loopback(builder, row.loopback));
            let quoted = format!("{role} {value:?} {}", row.says);
            assert!(
                message.contains(&quoted),
                "{value:?} as {role}:\n  got      {message}\n  expected {quoted}"
            );
            assert!(message.contains(RULE), "{message}");
        }
    }
}

#[test]
fn a_trailing_slash_and_a_port_are_told_apart() {
    let slash = error_of(AAuth::builder("https://notes.example/"));
    let port = error_of(AAuth::builder("https://notes.example:8443"));
    assert_ne!(slash, port);
    assert!(slash.contains(r#""https://notes.example/" ends with "/""#), "{slash}");
    assert!(
        port.contains(r#""https://notes.example:8443" has the port ":8443""#),
        "{port}"
    );
}

#[test]
fn the_identifiers_the_rule_admits_still_build() {
    AAuth::builder("https://notes.example").build().unwrap();
    AAuth::builder("https://api.notes-1.example")
        .auth_server("https://auth.example")
        .person_server("https://ps.example")
        .agent_providers(["https://agents.example"])
        .build()
        .unwrap();
    for value in [
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:1",
        "https://localhost",
    ] {
        loopback(AAuth::builder(value), true).build().unwrap();
    }
}

#[test]
fn every_other_refused_value_is_quoted_with_its_rule() {
    let base = || AAuth::builder("https://notes.example").auth_server("https://auth.example");
    let cases: Vec<(AAuthBuilder, &str)> = vec![
        (
            base().authority("https://alt.example"),
            r#"the extra authority "https://alt.example" has the scheme "https": authority() takes host[:port] alone"#,
        ),
        (
            base().authority("alt.example/api"),
            r#"the extra authority "alt.example/api" has a path, query or fragment"#,
        ),
        (base().authority(""), r#"the extra authority "" is empty"#),
        (
            base().authority("alt_example"),
            r#"the extra authority "alt_example" has a character outside"#,
        ),
        (
            base().require_components(["Content Digest"]),
            r#"the required component "Content Digest" is not a component name"#,
        ),
        (
            base().scope("data read", "two scopes"),
            r#"scope "data read" is not a single RFC 6749 scope token"#,
        ),
        (
            base().scope("data.read", "line\nbreak"),
            r#"the description of scope "data.read" contains control characters"#,
        ),
        (
            base().metadata_name("Notes\r\nX-Injected: 1"),
            r#"the metadata name "Notes\r\nX-Injected: 1" contains control characters"#,
        ),
        (
            base().documentation_uri("http://docs.example"),
            r#"documentation_uri "http://docs.example" is not an https URL"#,
        ),
        (
            base().resource_token_lifetime(0),
            "the resource-token lifetime 0 s is out of range: from 1 to 300 seconds",
        ),
        (
            base().resource_token_lifetime(301),
            "the resource-token lifetime 301 s is out of range",
        ),
        (
            base().signing_key(ResourceKey::generate().with_kid("key one")),
            r#"the signing key's kid "key one" is not visible ASCII"#,
        ),
    ];
    for (builder, expected) in cases {
        let message = error_of(builder);
        assert!(message.contains(expected), "got {message}\nexpected {expected}");
    }
}

#[test]
fn declared_scopes_that_no_trusted_server_can_grant_are_refused() {
    let message = error_of(AAuth::builder("https://notes.example").scope("notes.read", "Read your notes"));
    assert!(
        message.contains(r#"the scopes ["notes.read"] are declared, but no server that could grant them is trusted"#),
        "{message}"
    );
    assert!(message.contains(".auth_server("), "{message}");
    assert!(message.contains(".person_server("), "{message}");
    // Any server able to grant them is enough.
    let scoped = || AAuth::builder("https://notes.example").scope("notes.read", "Read your notes");
    scoped().auth_server("https://auth.example").build().unwrap();
    scoped().person_server("https://ps.example").build().unwrap();
    scoped().accept_any_person_server().build().unwrap();
    // No scope and no grantor: the agent-identity-only posture builds.
    AAuth::builder("https://notes.example").build().unwrap();
}

const PEM_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/pem");

fn pem(name: &str) -> String {
    std::fs::read_to_string(format!("{PEM_DIR}/{name}")).unwrap()
}

/// The body lines of a PEM: key material that no message may quote.
fn material(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|line| !line.starts_with("-----") && line.len() > 8)
        .collect()
}

#[test]
fn the_pem_openssl_genpkey_writes_is_loaded() {
    use base64::Engine;
    let key = ResourceKey::from_pkcs8_pem(&pem("resource-key.pem")).expect("the README's format loads");
    // The public half, as `openssl pkey -pubout` wrote it: an SPKI ending in the 32-byte key.
    let public = pem("resource-key.pub.pem");
    let spki = base64::engine::general_purpose::STANDARD
        .decode(material(&public).concat())
        .unwrap();
    let x = tower_aauth::engine::b64url_decode(key.public_jwk().x()).unwrap();
    assert_eq!(&spki[spki.len() - 32..], &x[..]);
    assert_eq!(key.kid(), key.public_jwk().thumbprint());
    // It signs resource tokens.
    AAuth::builder("https://notes.example")
        .signing_key(key)
        .build()
        .unwrap();
}

#[test]
fn a_pem_of_another_kind_is_named_and_never_quoted() {
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAhk\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let openssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
    let cases = [
        (
            pem("resource-key.pub.pem"),
            r#"is a "PUBLIC KEY": the resource signs resource tokens, so it needs the private key"#,
        ),
        (
            pem("p256-key.pem"),
            "holds a PKCS#8 EC key (algorithm 1.2.840.10045.2.1), not Ed25519 (1.3.101.112)",
        ),
        (encrypted.to_owned(), "is encrypted: decrypt it first"),
        (
            openssh.to_owned(),
            r#"is a "OPENSSH PRIVATE KEY", not a PKCS#8 "PRIVATE KEY""#,
        ),
        (
            "MC4CAQAwBQYDK2VwBCIEIDKuNVWLQ00ac".to_owned(),
            "is not PEM: it has no -----BEGIN …----- line",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDKuNVWL\n-----END PRIVATE KEY-----\n".to_owned(),
            "holds a PKCS#8 key that is malformed or not Ed25519",
        ),
    ];
    for (text, expected) in cases {
        let message = ResourceKey::from_pkcs8_pem(&text).expect_err("refused").to_string();
        assert!(
            message.contains(&format!("the signing key PEM {expected}")),
            "got {message}\nexpected {expected}"
        );
        assert!(
            message.contains("openssl genpkey -algorithm ed25519 -out resource-key.pem"),
            "{message}"
        );
        for line in material(&text) {
            assert!(!message.contains(line), "the message quotes key material: {message}");
        }
    }
}
