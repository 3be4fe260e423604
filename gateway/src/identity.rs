//! The identity headers the upstream receives: what the layer verified, and nothing a
//! client sent. Every incoming header named `x-aauth-*` is removed before ours are set,
//! so an upstream can trust any `x-aauth-*` header it sees to come from the gateway.

use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use tower_aauth::bot::VerifiedBot;
use tower_aauth::{TokenKind, VerifiedRequest};

/// The prefix of every header the gateway sets and strips.
pub const PREFIX: &str = "x-aauth-";

pub const SCHEME: HeaderName = HeaderName::from_static("x-aauth-scheme");
pub const KEY_THUMBPRINT: HeaderName = HeaderName::from_static("x-aauth-key-thumbprint");
pub const AGENT: HeaderName = HeaderName::from_static("x-aauth-agent");
pub const AGENT_PROVIDER: HeaderName = HeaderName::from_static("x-aauth-agent-provider");
pub const PERSON: HeaderName = HeaderName::from_static("x-aauth-person");
pub const PERSON_ISSUER: HeaderName = HeaderName::from_static("x-aauth-person-issuer");
pub const SCOPE: HeaderName = HeaderName::from_static("x-aauth-scope");
pub const BOT_ORIGIN: HeaderName = HeaderName::from_static("x-aauth-bot-origin");
pub const BOT_THUMBPRINT: HeaderName = HeaderName::from_static("x-aauth-bot-thumbprint");

/// The `x-aauth-scheme` of a verified Web Bot Auth request.
const BOT_SCHEME: HeaderValue = HeaderValue::from_static("web-bot-auth");

/// Every header name the gateway may set, for deployments (Envoy) that remove by name.
pub const ALL: [HeaderName; 9] = [
    SCHEME,
    KEY_THUMBPRINT,
    AGENT,
    AGENT_PROVIDER,
    PERSON,
    PERSON_ISSUER,
    SCOPE,
    BOT_ORIGIN,
    BOT_THUMBPRINT,
];

/// Removes every `x-aauth-*` header (any case: `http` stores names in lower case).
pub fn strip(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// A verified value that cannot travel as a header value (a control character in a
/// claim): the request is refused rather than forwarded with a mangled identity.
#[derive(Debug)]
pub struct Unrepresentable;

/// The identity headers for a request (from the layer's extensions): an AAuth caller's,
/// a verified bot's (scheme, directory origin, key thumbprint: never agent or person
/// headers), or none when it was not signed.
pub fn headers(extensions: &Extensions) -> Result<Vec<(HeaderName, HeaderValue)>, Unrepresentable> {
    let value = |text: &str| HeaderValue::from_str(text).map_err(|_| Unrepresentable);
    let Some(verified) = extensions.get::<VerifiedRequest>() else {
        return match extensions.get::<VerifiedBot>() {
            None => Ok(Vec::new()),
            Some(bot) => Ok(vec![
                (SCHEME, BOT_SCHEME),
                (BOT_ORIGIN, value(bot.directory_origin())?),
                (BOT_THUMBPRINT, value(bot.thumbprint())?),
            ]),
        };
    };
    let mut out = Vec::with_capacity(7);
    out.push((SCHEME, HeaderValue::from_static(verified.scheme.as_str())));
    out.push((KEY_THUMBPRINT, value(&verified.key_thumbprint)?));
    if let Some(agent) = verified.agent() {
        out.push((AGENT, value(agent.id())?));
        out.push((AGENT_PROVIDER, value(agent.provider())?));
    }
    if let Some(person) = verified.person() {
        out.push((PERSON, value(person.subject())?));
        out.push((PERSON_ISSUER, value(person.issuer())?));
    }
    if let Some(token) = verified.token.as_deref()
        && token.claims.kind == TokenKind::Auth
    {
        let scopes: Vec<&str> = token.claims.scope.iter().collect();
        out.push((SCOPE, value(&scopes.join(" "))?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_x_aauth_header_is_stripped_and_others_are_kept() {
        let mut headers = HeaderMap::new();
        headers.append("x-aauth-agent", HeaderValue::from_static("aauth:forged@evil.example"));
        headers.append("x-aauth-agent", HeaderValue::from_static("second"));
        headers.append("X-AAuth-Scope", HeaderValue::from_static("admin"));
        headers.append("x-aauth-anything-else", HeaderValue::from_static("1"));
        headers.append("x-aauthz", HeaderValue::from_static("kept: not the prefix"));
        headers.append("accept", HeaderValue::from_static("*/*"));
        strip(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-aauthz"]);
    }

    #[test]
    fn an_unsigned_request_has_no_identity_headers() {
        assert!(headers(&Extensions::new()).unwrap().is_empty());
    }
}
