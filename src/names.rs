//! Every name that appears on the wire: header names, token `typ`s, well-known document
//! names (`dwk`), claim names and `Signature-Error` codes.
//!
//! Draft churn touches this module first; nothing else in the crate spells these strings.

/// HTTP header names (lower case, as HTTP/2 sends them).
pub mod header {
    /// RFC 9421 `Signature-Input`.
    pub const SIGNATURE_INPUT: &str = "signature-input";
    /// RFC 9421 `Signature`.
    pub const SIGNATURE: &str = "signature";
    /// `Signature-Key` (draft-hardt-httpbis-signature-key).
    pub const SIGNATURE_KEY: &str = "signature-key";
    /// `AAuth-Budget` (draft-hardt-aauth-budgets): what a metered request cost and what
    /// is left of the auth token's budget.
    pub const AAUTH_BUDGET: &str = "aauth-budget";
    /// `Signature-Error`, sent with every 401 caused by a signature or credential failure.
    pub const SIGNATURE_ERROR: &str = "signature-error";
    /// `Accept-Signature-Scheme`, sent with `unsupported_scheme`.
    pub const ACCEPT_SIGNATURE_SCHEME: &str = "accept-signature-scheme";
    /// `Accept-Signature-Alg`, sent with `unsupported_algorithm`.
    pub const ACCEPT_SIGNATURE_ALG: &str = "accept-signature-alg";
    /// `AAuth-Requirement`, the challenge header ([AAuth draft -11, "Requirement
    /// Responses"][draft-11]).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub const AAUTH_REQUIREMENT: &str = "aauth-requirement";
    /// `AAuth`, the challenge header of the demo generation (legacy profile only).
    pub const AAUTH_LEGACY: &str = "aauth";
    /// `Content-Digest` (RFC 9530).
    pub const CONTENT_DIGEST: &str = "content-digest";
    /// `AAuth-Capabilities`, sent by agents.
    pub const AAUTH_CAPABILITIES: &str = "aauth-capabilities";
    /// `AAuth-Access`, the session token of resource-managed access ([AAuth draft -11,
    /// "Resource-Managed Access"][draft-11]), on the pending URL's `200` and when rotated.
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub const AAUTH_ACCESS: &str = "aauth-access";
}

/// JWT `typ` header values.
pub mod typ {
    /// Agent token ([AAuth draft -11][draft-11]).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub const AGENT: &str = "aa-agent+jwt";
    /// Person token ([AAuth draft -11][draft-11]).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub const PERSON: &str = "aa-person+jwt";
    /// Auth token ([AAuth draft -11][draft-11]).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub const AUTH: &str = "aa-auth+jwt";
    /// Resource token, minted by the resource ([AAuth draft -11][draft-11]).
    ///
    /// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
    pub const RESOURCE: &str = "aa-resource+jwt";
    /// Agent token of the demo generation (legacy profile).
    pub const LEGACY_AGENT: &str = "agent+jwt";
    /// Auth token of the demo generation (legacy profile).
    pub const LEGACY_AUTH: &str = "auth+jwt";
    /// Resource token of the demo generation (legacy profile).
    pub const LEGACY_RESOURCE: &str = "resource+jwt";
}

/// Well-known metadata document names (`dwk`).
pub mod dwk {
    /// Agent provider metadata.
    pub const AGENT: &str = "aauth-agent.json";
    /// Person server metadata.
    pub const PERSON: &str = "aauth-person.json";
    /// Access server metadata.
    pub const ACCESS: &str = "aauth-access.json";
    /// Resource metadata (ours).
    pub const RESOURCE: &str = "aauth-resource.json";
    /// Auth server metadata of the demo generation (legacy profile).
    pub const LEGACY_ISSUER: &str = "aauth-issuer.json";
}

/// `Signature-Key` scheme tokens.
pub mod scheme {
    /// Key carried in the header itself.
    pub const HWK: &str = "hwk";
    /// Key found at `{id}/.well-known/{dwk}` → `jwks_uri` → `kid`.
    pub const JWKS_URI: &str = "jwks_uri";
    /// Key is the `cnf.jwk` of a JWT verified with its issuer's key.
    pub const JWT: &str = "jwt";
}

/// JOSE algorithm identifiers.
pub mod alg {
    /// Fully specified Ed25519 (RFC 9864); the only JWS algorithm in the strict profile.
    pub const ED25519: &str = "Ed25519";
    /// Polymorphic EdDSA; accepted only by the legacy profile, and only with an Ed25519 key.
    pub const EDDSA: &str = "EdDSA";
}

/// `AAuth-Requirement` values.
pub mod requirement {
    /// The endpoint decides on agent identity.
    pub const AGENT_TOKEN: &str = "agent-token";
    /// The endpoint needs the person, or the resource needs a person token to mint.
    pub const PERSON_TOKEN: &str = "person-token";
    /// The complete `AAuth-Requirement` value asking for a person token (sent with a
    /// revoked auth token, see [`crate::policy::RevocationSet::check`]).
    pub const PERSON_TOKEN_VALUE: &str = "requirement=person-token";
    /// Consent or policy is needed; carries `resource-token`.
    pub const AUTH_TOKEN: &str = "auth-token";
    /// The `resource-token` parameter.
    pub const RESOURCE_TOKEN_PARAM: &str = "resource-token";
    /// The user must visit `url` with `code` (sent with `202`).
    pub const INTERACTION: &str = "interaction";
    /// The interaction URL parameter of `requirement=interaction`.
    pub const URL_PARAM: &str = "url";
    /// The interaction code parameter of `requirement=interaction`.
    pub const CODE_PARAM: &str = "code";
    /// The demo generation's `auth-server` parameter (legacy `AAuth` header only).
    pub const LEGACY_AUTH_SERVER_PARAM: &str = "auth-server";
    /// The demo generation's member name (`AAuth: require=…`) in place of `requirement`.
    pub const LEGACY_REQUIRE: &str = "require";
    /// draft-hardt-aauth-budgets: the `reason` parameter of `requirement=auth-token`.
    pub const REASON_PARAM: &str = "reason";
    /// `reason=budget-exhausted`: the granted budget is spent.
    pub const BUDGET_EXHAUSTED: &str = "budget-exhausted";
    /// `reason=insufficient-budget`: something is left, less than the request's price.
    pub const INSUFFICIENT_BUDGET: &str = "insufficient-budget";
}

/// Problem `error` codes of a pending URL (deferred responses).
pub mod poll {
    /// The person declined: `403`.
    pub const DENIED: &str = "denied";
    /// The pending request expired before completion: `408`.
    pub const EXPIRED: &str = "expired";
    /// Polled faster than `Retry-After`: `429`.
    pub const SLOW_DOWN: &str = "slow_down";
    /// The interaction code was wrong too often, or the pending request is over: `410`.
    pub const INVALID_CODE: &str = "invalid_code";
    /// The held request could not be executed: `500`.
    pub const SERVER_ERROR: &str = "server_error";
    /// No pending request has this URL: `404`.
    pub const NOT_FOUND: &str = "not_found";
    /// Polled by another agent key than the one that created the pending request: `403`.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The `status` member of a `202` body while the request is held.
    pub const PENDING: &str = "pending";
}

/// JWT claim names this crate reads or mints beyond the registered ones.
pub mod claim {
    /// RFC 9396 rich authorization details, in auth tokens (and in the resource tokens of a
    /// step-up challenge).
    pub const AUTHORIZATION_DETAILS: &str = "authorization_details";
    /// draft-hardt-aauth-budgets `budget` (`{amount, unit, decimals}`), in resource and
    /// auth tokens.
    pub const BUDGET: &str = "budget";
    /// draft-hardt-aauth-budgets `budget_consumed` (`[{jti, consumed}]`), in resource tokens.
    pub const BUDGET_CONSUMED: &str = "budget_consumed";
    /// RFC 7638 thumbprint of the key that signed the request.
    pub const AGENT_JKT: &str = "agent_jkt";
    /// `jti` of the person or auth token the request presented.
    pub const PRESENTED_JTI: &str = "presented_jti";
    /// SHA-256 of the mission blob, copied from the presented token.
    pub const MISSION_S256: &str = "mission_s256";
    /// Organisation context, copied from the presented token.
    pub const TENANT: &str = "tenant";
    /// The agent (demo generation resource tokens only).
    pub const AGENT: &str = "agent";
}

/// Paths this crate serves (the well-known documents and deferred requests' pending URLs).
pub mod path {
    /// The resource's metadata document.
    pub const RESOURCE_METADATA: &str = "/.well-known/aauth-resource.json";
    /// The resource's JWKS (the metadata's `jwks_uri`).
    pub const JWKS: &str = "/.well-known/jwks.json";
    /// Where deferred requests wait: `{resource}/aauth/pending/{id}`.
    pub const PENDING_PREFIX: &str = "/aauth/pending/";
}

/// Problem codes of this crate's own `403` refusals (the `code` of the problem body; no
/// `Signature-Error` is sent with them).
pub mod problem {
    /// An agent's scope ceiling excludes a scope its grant carries.
    pub const SCOPE_ABOVE_CEILING: &str = "scope_above_ceiling";
    /// A step-up refused: the person server's grant would not be honoured here.
    pub const GRANT_NOT_HONOURED: &str = "grant_not_honoured";
    /// No `authorization_details` entry of the type a detail guard requires was accepted.
    pub const DETAIL_MISMATCH: &str = "insufficient_authorization_details";
    /// A Web Bot Auth signature or nonce was presented again (`429`).
    pub const SIGNATURE_REUSED: &str = "signature_reused";
    /// A route admits verified Web Bot Auth bots only (`403`, with `Accept-Signature`).
    pub const BOT_REQUIRED: &str = "bot_required";
    /// A verified bot whose directory origin the route does not list (`403`).
    pub const BOT_NOT_ADMITTED: &str = "bot_not_admitted";
}

/// The names of Web Bot Auth ([`crate::bot`]).
pub mod bot {
    /// The `tag` of a Web Bot Auth request signature.
    pub const TAG: &str = "web-bot-auth";
    /// The `tag` of a key directory's response signature.
    pub const DIRECTORY_TAG: &str = "http-message-signatures-directory";
    /// The field naming the signer's key directory.
    pub const SIGNATURE_AGENT: &str = "signature-agent";
    /// RFC 9421's request for a signature.
    pub const ACCEPT_SIGNATURE: &str = "accept-signature";
    /// Where an origin publishes its key directory.
    pub const DIRECTORY_PATH: &str = "/.well-known/http-message-signatures-directory";
    /// The key directory's media type.
    pub const DIRECTORY_MEDIA_TYPE: &str = "application/http-message-signatures-directory+json";
    /// The `alg` signature parameter value of Ed25519 in the HTTP Signature Algorithms registry.
    pub const ED25519: &str = "ed25519";
}

/// `Signature-Error` codes (the registry of
/// [draft-hardt-httpbis-signature-key-09][signature-key-09], as [AAuth draft -11][draft-11]
/// uses them).
///
/// [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11
/// [signature-key-09]: https://datatracker.ietf.org/doc/html/draft-hardt-httpbis-signature-key-09
pub mod code {
    /// Algorithm or key type not supported.
    pub const UNSUPPORTED_ALGORITHM: &str = "unsupported_algorithm";
    /// `Signature-Key` scheme not accepted here.
    pub const UNSUPPORTED_SCHEME: &str = "unsupported_scheme";
    /// Signature missing, malformed, stale, or failed.
    pub const INVALID_SIGNATURE: &str = "invalid_signature";
    /// Required components not covered.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// Malformed request unrelated to the signature.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// Key unparsable, untrusted, or inconsistent.
    pub const INVALID_KEY: &str = "invalid_key";
    /// `kid` not in the issuer's JWKS.
    pub const UNKNOWN_KEY: &str = "unknown_key";
    /// Metadata lacks `issuer`.
    pub const ISSUER_MISSING: &str = "issuer_missing";
    /// Metadata `issuer` differs from the discovery identity.
    pub const ISSUER_MISMATCH: &str = "issuer_mismatch";
    /// JWT malformed, of the wrong kind, or its signature failed.
    pub const INVALID_JWT: &str = "invalid_jwt";
    /// JWT `exp` passed.
    pub const EXPIRED_JWT: &str = "expired_jwt";
    /// JWT revoked.
    pub const REVOKED_JWT: &str = "revoked_jwt";
    /// `created` or `iat` ahead of our clock by more than the window.
    pub const CLOCK_SKEW: &str = "clock_skew";
}
