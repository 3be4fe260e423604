//! Explanations of configuration mistakes: what the builder refuses and why, and what a
//! guard or extractor says when it runs without the layer.
//!
//! Nothing here decides anything. Every function runs after a check has already refused
//! (an identifier [`IdentifierPolicy::admits`] did not admit, a request the layer never
//! saw) and only words the refusal: an explanation never turns a refusal into an
//! acceptance.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::discovery::admission::{IdentifierPolicy, is_dns_name};
use crate::error::{ConfigError, GUARD_WITHOUT_LAYER};

/// The rule every server identifier follows, quoted at the end of each refusal.
const IDENTIFIER_RULE: &str = "an identifier is https://host exactly: scheme https, a lower-case DNS name, \
     no port, no path (not even a trailing \"/\"), no query or fragment";

/// Why `policy` refused `value` as `role` (for example "the resource identifier"), quoting
/// the value and naming the rule it breaks. Call it only for a value `policy` refused.
pub(crate) fn refused_identifier(role: &str, value: &str, policy: &IdentifierPolicy) -> ConfigError {
    debug_assert!(!policy.admits(value), "only refusals are explained");
    ConfigError::new(format!(
        "{role} {value:?} {}; {IDENTIFIER_RULE}",
        identifier_problem(value, policy)
    ))
}

/// The first rule `value` breaks, as a clause following the quoted value.
fn identifier_problem(value: &str, policy: &IdentifierPolicy) -> String {
    if value.is_empty() {
        return "is empty".to_owned();
    }
    if !value.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return "contains a space, a control character or a non-ASCII character (write an \
                internationalised name in its xn-- form)"
            .to_owned();
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return "has no scheme: it must start with https://".to_owned();
    };
    let lower = scheme.to_ascii_lowercase();
    if (lower == "https" || lower == "http") && scheme != lower {
        return format!("writes its scheme {scheme:?} in upper case: the scheme is https, in lower case");
    }
    if scheme != "https" && scheme != "http" {
        return format!("has the scheme {scheme:?}: the scheme is https");
    }
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return "has userinfo (a user or password before \"@\"), which an identifier never has".to_owned();
    }
    if tail.contains(['?', '#']) {
        return "has a query or a fragment, which an identifier never has".to_owned();
    }
    if tail == "/" {
        return format!(
            "ends with \"/\": write it without the trailing slash ({:?})",
            format!("{scheme}://{authority}")
        );
    }
    if !tail.is_empty() {
        return format!(
            "has the path {tail:?}: an identifier is the origin alone ({:?}); serve the API below it",
            format!("{scheme}://{authority}")
        );
    }
    let (host, port) = split_port(authority);
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    if loopback && !policy.allows_http_loopback() {
        return "names a loopback host: loopback identifiers (http or https, with a port) are for \
                development only and need builder.dangerous().allow_http_loopback()"
            .to_owned();
    }
    if loopback {
        // The development flag admits every loopback origin with a valid port.
        return match port {
            Some(port) => format!("has the port {port:?}, which is not a number from 1 to 65535"),
            None => "is not a loopback origin the development flag admits".to_owned(),
        };
    }
    if scheme == "http" {
        return if policy.allows_http_loopback() {
            "uses http with a host that is not loopback: http is admitted only for 127.0.0.1, \
             localhost and [::1] (development)"
                .to_owned()
        } else {
            "uses http: the scheme is https (plain http is admitted only on loopback, for \
             development, with builder.dangerous().allow_http_loopback())"
                .to_owned()
        };
    }
    if let Some(port) = port {
        return format!(
            "has the port \":{port}\": an identifier names no port, not even \":443\" (it is \
             served on 443); ports are admitted only on loopback, for development, with \
             builder.dangerous().allow_http_loopback()"
        );
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return format!(
            "has upper-case letters: write the host in lower case ({:?})",
            format!("https://{}", host.to_ascii_lowercase())
        );
    }
    if host.starts_with('[')
        || host
            .rsplit('.')
            .next()
            .is_some_and(|last| !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
    {
        return "names an IP address: the host of an identifier is a DNS name".to_owned();
    }
    if host.ends_with('.') {
        return "ends its host with a dot: write the name without the trailing dot".to_owned();
    }
    if !host.contains('.') {
        return format!("has the single-label host {host:?}: the host is a fully qualified DNS name, with a dot");
    }
    if !is_dns_name(host) {
        return "has a host that is not a DNS name: labels of 1 to 63 characters from a-z, 0-9 and \
                \"-\", not starting or ending with \"-\", the last one starting with a letter, 253 \
                characters in all"
            .to_owned();
    }
    "is not an identifier".to_owned()
}

/// `host` and the text after its `:` (if any); an IPv6 literal keeps its brackets.
fn split_port(authority: &str) -> (&str, Option<&str>) {
    let host_end = match authority.strip_prefix('[') {
        Some(inside) => inside.find(']').map_or(authority.len(), |end| end + 2),
        None => authority.find(':').unwrap_or(authority.len()),
    };
    let (host, rest) = authority.split_at(host_end);
    (host, rest.strip_prefix(':'))
}

/// Why an extra authority ([`crate::AAuthBuilder::authority`]) is refused.
pub(crate) fn refused_authority(value: &str) -> ConfigError {
    let problem = if value.is_empty() {
        "is empty".to_owned()
    } else if let Some((scheme, _)) = value.split_once("://") {
        format!("has the scheme {scheme:?}: authority() takes host[:port] alone, the @authority agents sign")
    } else if value.contains(['/', '?', '#']) {
        "has a path, query or fragment: authority() takes host[:port] alone".to_owned()
    } else {
        "has a character outside a-z, 0-9, \".\", \"-\", \":\" and IPv6 brackets".to_owned()
    };
    ConfigError::new(format!(
        "the extra authority {value:?} {problem}; an extra authority is host[:port], for example \
         \"notes.example\" or \"notes.example:8443\""
    ))
}

/// Why [`crate::ResourceKey::from_pkcs8_pem`] refused `pem`: what it holds instead, from
/// its `BEGIN` line and the decoder's error, never a byte of key material.
pub(crate) fn refused_pem(pem: &str, error: &ed25519_dalek::pkcs8::Error) -> ConfigError {
    use ed25519_dalek::pkcs8::{Error, spki};
    let label = pem
        .lines()
        .find_map(|line| line.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"));
    let problem = match (label, error) {
        (None, _) => "is not PEM: it has no -----BEGIN …----- line".to_owned(),
        (Some("PRIVATE KEY"), Error::PublicKey(spki::Error::OidUnknown { .. })) => match pkcs8_algorithm(pem) {
            Some(oid) => format!(
                "holds a PKCS#8 {} key (algorithm {oid}), not Ed25519 (1.3.101.112)",
                algorithm_name(&oid)
            ),
            None => "holds a PKCS#8 key of another algorithm than Ed25519 (1.3.101.112)".to_owned(),
        },
        (Some("PRIVATE KEY"), _) => "holds a PKCS#8 key that is malformed or not Ed25519".to_owned(),
        (Some("ENCRYPTED PRIVATE KEY"), _) => {
            "is encrypted: decrypt it first (openssl pkey -in encrypted.pem -out resource-key.pem)".to_owned()
        }
        (Some(label @ ("PUBLIC KEY" | "ED25519 PUBLIC KEY")), _) => {
            format!("is a {label:?}: the resource signs resource tokens, so it needs the private key")
        }
        (Some(label), _) => format!("is a {label:?}, not a PKCS#8 \"PRIVATE KEY\""),
    };
    ConfigError::new(format!(
        "the signing key PEM {problem}; the signing key is an unencrypted PKCS#8 Ed25519 PEM \
         (-----BEGIN PRIVATE KEY-----), as `openssl genpkey -algorithm ed25519 -out \
         resource-key.pem` writes it"
    ))
}

/// The algorithm OID of the PKCS#8 key in `pem` (public information, never key material).
fn pkcs8_algorithm(pem: &str) -> Option<String> {
    use base64::Engine;
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END "))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).ok()?;
    let info = ed25519_dalek::pkcs8::PrivateKeyInfo::try_from(der.as_slice()).ok()?;
    Some(info.algorithm.oid.to_string())
}

fn algorithm_name(oid: &str) -> &'static str {
    match oid {
        "1.2.840.10045.2.1" => "EC",
        "1.2.840.113549.1.1.1" => "RSA",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" | "1.3.101.111" => "X25519/X448",
        _ => "non-Ed25519",
    }
}

/// What the builder says when no trusted server could grant a scope: every scope guard
/// would answer challenges that no token can satisfy.
pub(crate) fn no_grantor(declared: &[(String, String)]) -> ConfigError {
    let names: Vec<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
    ConfigError::new(format!(
        "the scopes {names:?} are declared, but no server that could grant them is trusted, so \
         every route guarded by require_scopes would be unreachable: trust the access server \
         with .auth_server(\"https://auth.example\") (four-party), or the person servers whose \
         grants you honour with .person_server(…) (three-party), or \
         .accept_any_person_server() with a .grant_policy(…)"
    ))
}

/// The warning for a scope guard built on a configuration that trusts no server able to
/// grant it (no scope declared, so `build()` accepted it).
pub(crate) fn warn_unreachable_scope_guard() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "tower_aauth",
            "require_scopes on a configuration that trusts no auth server and no person server: \
             no token can grant a scope, so the guarded routes are unreachable; add \
             .auth_server(…) or .person_server(…) to the builder"
        );
    }
}

/// Logs `detail` at error level the first time a guard (or an extractor) meets a request
/// the layer never saw, once per process for each, so that a misconfigured router does
/// not flood the log with one line per request.
pub(crate) fn log_without_layer_once(detail: &'static str) {
    static GUARD: AtomicBool = AtomicBool::new(false);
    static EXTRACTOR: AtomicBool = AtomicBool::new(false);
    let logged = if detail == GUARD_WITHOUT_LAYER {
        &GUARD
    } else {
        &EXTRACTOR
    };
    if !logged.swap(true, Ordering::Relaxed) {
        tracing::error!(target: "tower_aauth", "{detail}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EXTRACTOR_WITHOUT_LAYER, misconfiguration_detail};

    #[test]
    fn release_builds_never_send_the_explanation() {
        for detail in [GUARD_WITHOUT_LAYER, EXTRACTOR_WITHOUT_LAYER, "secret cause"] {
            assert_eq!(misconfiguration_detail(detail, false), "internal server error");
        }
        assert_eq!(misconfiguration_detail("secret cause", true), "internal server error");
        assert_eq!(misconfiguration_detail(GUARD_WITHOUT_LAYER, true), GUARD_WITHOUT_LAYER);
    }

    #[test]
    fn the_explanations_name_axums_layer_rule_and_route_layer() {
        for detail in [GUARD_WITHOUT_LAYER, EXTRACTOR_WITHOUT_LAYER] {
            assert!(detail.contains("Router::layer wraps only the routes added before it"));
            assert!(detail.contains(".layer(aauth.layer())"));
        }
        assert!(GUARD_WITHOUT_LAYER.contains("route_layer"));
    }

    #[test]
    fn ports_are_split_off_hosts_and_ipv6_literals() {
        assert_eq!(split_port("notes.example:8443"), ("notes.example", Some("8443")));
        assert_eq!(split_port("notes.example"), ("notes.example", None));
        assert_eq!(split_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_port("[::1]"), ("[::1]", None));
    }
}
