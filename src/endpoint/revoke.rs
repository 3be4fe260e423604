//! The revocation endpoint ([AAuth draft -11, "Token Revocation"][draft-11]): a person
//! or access server tells the resource that a token it issued is revoked.
//!
//! * The caller is a server signing under `Signature-Key` scheme `jwks_uri` (verified by
//!   the layer through discovery, as any `jwks_uri` signer), covering `content-type` and
//!   `content-digest`; any other signature is `401` (`unsupported_scheme` with
//!   `Accept-Signature-Scheme: jwks_uri`, or `invalid_input`).
//! * The caller must be an access server or a person server this resource trusts:
//!   otherwise `403 unsupported_iss`.
//! * The body is exactly `{"jti": "…", "exp": …}` (strict JSON, at most
//!   [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES)): anything else is `400
//!   invalid_request`. The issuer of the revoked token is the verified caller, never a
//!   body member, so a caller revokes only its own tokens.
//! * The answer is `200` with an empty body whether or not the token was ever seen; a
//!   token already expired is not remembered. An `exp` further out than the longest
//!   person- or auth-token lifetime this resource accepts is `400 invalid_request`.
//! * The entry goes to the revocation set the layer checks on every request (through
//!   [`Revocations`](crate::policy::Revocations), so a synced set publishes it to every
//!   replica) and lapses after `exp` plus the allowed clock skew.
//! * Capacity: each caller may send [`BURST`](super::config::BURST) requests at once and
//!   regains [`PER_SECOND`](super::config::PER_SECOND) a second, and its live entries may
//!   take [`ISSUER_BUDGET`] bytes; beyond either, `429 rate_limited` with `Retry-After`.
//!   Only requests that would be served are counted.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};

use super::{MAX_BODY_BYTES, VerifiedBody, is_json, is_text, problem_response};
use crate::challenge::error_response;
use crate::error::{Error, Kind, SignatureErrorCode};
use crate::policy::revocation::UntilRefused;
use crate::sigkey::Scheme;
use crate::state::Shared;
use crate::verified::VerifiedRequest;

/// Bytes one caller's live revocations may take in the set (about 6 000 entries).
pub(crate) const ISSUER_BUDGET: usize = 1024 * 1024;
/// Longest `jti` accepted.
const MAX_JTI_BYTES: usize = 1024;
/// What the caller waits once its entries fill its budget.
const BUDGET_RETRY_AFTER: u32 = 60;

const _: () = assert!(MAX_JTI_BYTES + 64 < MAX_BODY_BYTES);

pub(crate) fn answer<B>(shared: &Shared, request: &Request<B>) -> Response<Bytes> {
    let verified = request.extensions().get::<VerifiedRequest>();
    let Some(verified) = verified else {
        return error_response(shared.hook(), &servers_only());
    };
    let (Scheme::JwksUri, Some(caller)) = (verified.scheme, verified.signer.as_deref()) else {
        return error_response(shared.hook(), &servers_only());
    };
    let body = request.extensions().get::<VerifiedBody>();
    let (true, true, Some(VerifiedBody(body))) =
        (verified.covers("content-type"), verified.covers("content-digest"), body)
    else {
        let mut required = shared.required.clone();
        for component in ["content-type", "content-digest"] {
            if !required.iter().any(|c| c == component) {
                required.push(component.to_owned());
            }
        }
        return error_response(shared.hook(), &Error::invalid_input(required));
    };
    let tokens = &shared.tokens;
    // Named servers only: under `accept_any_person_server()` every server on the web is a
    // person server, and each could otherwise grow the revocation set and the limiter.
    let named_person_server =
        matches!(&tokens.person_servers, crate::token::IssuerTrust::Listed(list) if list.iter().any(|i| i == caller));
    if !tokens.access_servers.iter().any(|server| server == caller) && !named_person_server {
        return error_response(
            shared.hook(),
            &Error::forbidden(
                "unsupported_iss",
                "the caller is not a server this resource accepts tokens from",
            ),
        );
    }
    let Some((jti, exp)) = parse(request, body) else {
        return invalid_request(shared, "the body is not {\"jti\": string, \"exp\": integer} in JSON");
    };
    let now = shared.clock.now();
    let horizon = now.saturating_sub(shared.max_skew);
    if exp < horizon {
        // Refused as expired anyway: nothing to remember.
        return ok();
    }
    let latest = now
        .saturating_add(tokens.max_grant_lifetime)
        .saturating_add(shared.max_skew);
    if exp > latest {
        return invalid_request(shared, "exp is later than any token this resource accepts could live");
    }
    if let Err(seconds) = shared.endpoints.limiter.take(caller, now) {
        return rate_limited(shared, seconds);
    }
    match shared
        .revocations
        .revoke_until(caller, &jti, exp, horizon, ISSUER_BUDGET)
    {
        Ok(()) => {
            tracing::info!(target: "tower_aauth", issuer = caller, "a token was revoked by its issuer");
            ok()
        }
        Err(UntilRefused::Budget) => rate_limited(shared, BUDGET_RETRY_AFTER),
        Err(UntilRefused::Malformed) => invalid_request(shared, "the jti is not 1 to 1024 bytes of text"),
        Err(UntilRefused::Full) => error_response(
            shared.hook(),
            &Error(Kind::Unavailable {
                retry_after: 1,
                detail: "the revocation set cannot take another entry now",
            }),
        ),
    }
}

/// `{"jti": text, "exp": integer}` and nothing else, in JSON.
fn parse<B>(request: &Request<B>, body: &Bytes) -> Option<(String, u64)> {
    if !is_json(request) || body.len() > MAX_BODY_BYTES {
        return None;
    }
    let object = crate::jose::parse_json_object(body)?;
    if object.len() != 2 {
        return None;
    }
    let jti = object.get("jti")?.as_str().filter(|jti| is_text(jti, MAX_JTI_BYTES))?;
    let exp = object.get("exp")?.as_u64()?;
    Some((jti.to_owned(), exp))
}

fn servers_only() -> Error {
    Error(Kind::Signature {
        code: SignatureErrorCode::UnsupportedScheme,
        detail: "the revocation endpoint accepts jwks_uri signatures of servers only",
        required_input: None,
        accept: Some(HeaderValue::from_static(crate::names::scheme::JWKS_URI)),
    })
}

fn ok() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn invalid_request(shared: &Shared, detail: &'static str) -> Response<Bytes> {
    problem_response(shared, StatusCode::BAD_REQUEST, "invalid_request", detail)
}

fn rate_limited(shared: &Shared, seconds: u32) -> Response<Bytes> {
    let mut response = problem_response(
        shared,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many revocations from this caller; retry later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
