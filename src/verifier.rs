//! The verification pipeline: what [`crate::layer`] runs on every signed request.
//!
//! # Design
//!
//! Verification is split into a synchronous head (`Verifier::verify_head`) and an
//! asynchronous tail (`Pending::finish`). The head does everything that needs no I/O —
//! header presence and size, `Signature-Input` parsing, covered-component policy, the
//! `created` window, the scheme, JWT shape and claims, the HTTP signature itself when the
//! key is already known — in the order of increasing cost, so garbage is refused before
//! anything expensive happens. When the key is in memory (`hwk`; `jwt` with the token or
//! its issuer key cached) the head finishes the job and the layer never allocates a
//! future. Only a cache miss or a covered `content-digest` (which needs the body) takes
//! the boxed slow path.
//!
//! The head reads as the protocol's steps, one method each: parse `Signature-Input`,
//! check the required coverage, the time window, decode the signature, parse
//! `Signature-Key`, rebuild the signature base, then the scheme's own step (`hwk`,
//! `jwks_uri`, or `jwt` with its cached-token and fresh-token paths), which hands what it
//! found to `Signed::assemble` for the [`VerifiedRequest`](crate::VerifiedRequest).
//!
//! Under the `jwt` scheme the HTTP signature is verified with the token's (not yet
//! trusted) `cnf.jwk` *before* the issuer's keys are fetched: a request with a stolen
//! token and a wrong signature never causes a fetch. Acceptance still requires both.

use std::sync::Arc;
use std::task::Poll;

use http::{HeaderMap, Method, Uri};
use sha2::{Digest, Sha256};

use crate::batch::{Submitted, Ticket};
use crate::discovery::resolve::KeyQuery;
use crate::discovery::resolve::is_known_dwk;
use crate::error::Error;
use crate::httpsig::{CoveredComponent, ParsedInput, RequestTarget, SignatureBase, SignatureHeaders, verify_base};
use crate::jose::{Jwk, UnverifiedJws};
use crate::names;
use crate::profile::Generation;
use crate::profile::Profile;
use crate::replay::key::ReplayKey;
use crate::sigkey::{ParsedSignatureKey, Scheme, SignatureKey};
use crate::state::Shared;
use crate::token::TokenClaims;
use crate::verified::{VerifiedRequest, VerifiedToken};

thread_local! {
    static BASE: std::cell::RefCell<SignatureBase> = std::cell::RefCell::new(SignatureBase::new());
}

/// Outcome of the synchronous head.
pub(crate) enum Step {
    /// No signature headers at all.
    Unsigned,
    /// Finished without I/O.
    Done(Result<VerifiedRequest, Error>),
    /// Verified but for the request's signature, which waits in a batch.
    Queued(VerifiedRequest, Ticket),
    /// Needs a key fetch or the body.
    Pending(Box<Pending>),
}

/// The key work left for the slow path.
enum KeyWork {
    /// Signature and token (if any) already verified, or waiting in a batch.
    None,
    /// Refused by a step after the request's signature was queued in a batch: the
    /// signature's verdict comes first, as it would have without batching.
    Refuse(Error),
    /// A new token whose signature waits in a batch (the issuer's key was cached), with
    /// the key it is checked with, for a refetch when it fails.
    TokenQueued {
        ticket: Ticket,
        token: String,
        claims: Box<TokenClaims>,
        hash: [u8; 32],
        key: Arc<Jwk>,
    },
    /// A new token whose signature verified while the request's waits in a batch: it
    /// is remembered only once the request's verdict is in.
    TokenVerified { claims: Box<TokenClaims>, hash: [u8; 32] },
    /// A `jwks_uri` signer's key, then the HTTP signature.
    Signer {
        issuer: String,
        dwk: String,
        kid: String,
        base: SignatureBase,
        signature: Vec<u8>,
        /// Whether the request is replay-checked (the key needs the thumbprint).
        protect: bool,
    },
    /// A token's issuer key, then the token signature (the HTTP signature already verified
    /// with `cnf.jwk`).
    TokenIssuer {
        token: String,
        claims: Box<TokenClaims>,
        hash: [u8; 32],
    },
    /// A token whose signature failed under the cached key of its `kid` (the HTTP
    /// signature already verified with `cnf.jwk`): one refetch of the issuer's keys, then
    /// the token signature again, else `failure`.
    TokenRekeyed {
        token: String,
        claims: Box<TokenClaims>,
        hash: [u8; 32],
        failed: Arc<Jwk>,
        failure: Error,
    },
}

/// What a scheme's step hands back: the work left, the request as verified so far, and
/// its signature when that waits in a batch.
type Outcome = (KeyWork, VerifiedRequest, Option<Ticket>);

/// The refusal of a request signature that does not verify (as [`verify_base`]'s).
pub(crate) fn bad_signature() -> Error {
    Error::invalid_signature("the signature does not verify")
}

/// The refusal of a token signature that does not verify (as
/// [`UnverifiedJws::verify_with`]'s).
fn bad_token_signature() -> Error {
    Error::invalid_jwt("the token's signature does not verify")
}

/// State carried from the head to the slow path.
pub(crate) struct Pending {
    work: KeyWork,
    /// The request's signature, when it waits in a batch: its verdict first.
    queued: Option<Ticket>,
    verified: VerifiedRequest,
    /// The `Content-Digest` field to check against the body, when covered.
    pub(crate) digest: Option<String>,
}

/// What the scheme-independent steps established, handed to the scheme's step.
struct Signed<'r> {
    input: &'r ParsedInput,
    base: &'r SignatureBase,
    signature: Vec<u8>,
    created: u64,
    now: u64,
    /// Whether the `Signature-Key` member was in a demo-generation form.
    legacy_form: bool,
    profile: Profile,
    /// Whether the method is replay-checked.
    protect: bool,
}

/// What a scheme's step found behind the signature.
struct Found {
    scheme: Scheme,
    /// Empty while the signer's key is still to be fetched.
    thumbprint: Arc<str>,
    signer: Option<Arc<str>>,
    token: Option<Arc<VerifiedToken>>,
    /// Whether the key or the token is of the demo generation.
    legacy: bool,
}

impl Found {
    /// An `hwk` key: its generation shows in the member's form, not in the key.
    fn hwk(key: &Jwk) -> Self {
        Found {
            scheme: Scheme::Hwk,
            thumbprint: key.thumbprint_shared().clone(),
            signer: None,
            token: None,
            legacy: false,
        }
    }

    /// A `jwks_uri` signer's key that verified the signature.
    fn signer(id: &str, key: &Jwk) -> Self {
        Found {
            scheme: Scheme::JwksUri,
            thumbprint: key.thumbprint_shared().clone(),
            signer: Some(id.into()),
            token: None,
            legacy: is_legacy_key(key),
        }
    }

    /// A `jwks_uri` signer whose key is still to be fetched.
    fn awaiting_signer_key(id: &str) -> Self {
        Found {
            scheme: Scheme::JwksUri,
            thumbprint: Arc::from(""),
            signer: Some(id.into()),
            token: None,
            legacy: false,
        }
    }

    /// A verified token whose `cnf` key (`thumbprint`) verified the signature.
    fn token(thumbprint: Arc<str>, token: Arc<VerifiedToken>) -> Self {
        Found {
            scheme: Scheme::Jwt,
            thumbprint,
            signer: None,
            legacy: token.claims.generation == Generation::Legacy,
            token: Some(token),
        }
    }

    /// A token whose `cnf` key verified the signature, its issuer's key still to be
    /// fetched.
    fn awaiting_issuer_key(thumbprint: Arc<str>, claims: &TokenClaims) -> Self {
        Found {
            scheme: Scheme::Jwt,
            thumbprint,
            signer: None,
            token: None,
            legacy: claims.generation == Generation::Legacy,
        }
    }
}

impl Signed<'_> {
    /// The [`VerifiedRequest`]: answered in the demo generation when any part of the
    /// request spoke it.
    fn assemble(&self, found: Found) -> VerifiedRequest {
        let input = self.input;
        VerifiedRequest {
            scheme: found.scheme,
            replay: (self.protect && !found.thumbprint.is_empty())
                .then(|| ReplayKey::signature(&found.thumbprint, self.base.as_bytes())),
            key_thumbprint: found.thumbprint,
            label: input.label.clone(),
            covered: input
                .components
                .iter()
                .filter(|c| c.covers_in_full(c.name(), &input.label))
                .map(CoveredComponent::shared_name)
                .collect(),
            created: self.created,
            signer: found.signer,
            token: found.token,
            generation: self.profile.answer_in(self.legacy_form || found.legacy),
            agent: None,
        }
    }
}

/// Runs the pipeline against one configuration.
pub(crate) struct Verifier<'a> {
    pub(crate) shared: &'a Shared,
}

impl Verifier<'_> {
    /// The synchronous head (see the module docs).
    pub(crate) fn verify_head(&self, method: &Method, uri: &Uri, headers: &HeaderMap, path: &str) -> Step {
        let shared = self.shared;
        let fields = match SignatureHeaders::read(headers, shared.header_cap) {
            Ok(None) => return Step::Unsigned,
            Ok(Some(fields)) => fields,
            Err(error) => return Step::Done(Err(error)),
        };
        // The signature base is rebuilt into a per-thread buffer: no allocation per
        // request. It is copied out only when verification has to wait for a key.
        let step = BASE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut base) => self.verify_fields(&mut base, &fields, method, uri, headers, path),
            Err(_) => self.verify_fields(&mut SignatureBase::new(), &fields, method, uri, headers, path),
        });
        match step {
            Ok(step) => step,
            Err(error) => Step::Done(Err(error)),
        }
    }

    /// Every step that needs no I/O, in the protocol's order. A step returns the first
    /// refusal it finds, so the order of the calls below is the order of the checks.
    fn verify_fields(
        &self,
        base: &mut SignatureBase,
        fields: &SignatureHeaders<'_>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<Step, Error> {
        let now = self.shared.clock.now();
        let input = self.parse_input(fields)?;
        self.check_coverage(&input, uri, headers)?;
        let created = self.check_time_window(&input, &fields.key, now)?;
        let signature = self.decode_signature(fields, &input)?;
        let parsed = self.parse_signature_key(fields, &input)?;
        self.rebuild_base(base, &input, method, uri, headers, path)?;
        let digest = self.covered_digest(&input, headers)?;
        let signed = Signed {
            input: &input,
            base,
            signature,
            created,
            now,
            legacy_form: parsed.legacy_form,
            profile: self.shared.profile,
            protect: self.shared.replay_protection.covers(method),
        };
        let (work, verified, queued) = match parsed.key {
            SignatureKey::Hwk(jwk) => self.verify_hwk(signed, &jwk)?,
            SignatureKey::JwksUri { id, dwk, kid } => self.verify_jwks_uri(signed, id, dwk, kid)?,
            SignatureKey::Jwt { token } => self.verify_jwt(signed, token)?,
        };
        Ok(match (work, digest, queued) {
            (KeyWork::None, None, None) => Step::Done(Ok(verified)),
            (KeyWork::None, None, Some(ticket)) => Step::Queued(verified, ticket),
            (work, digest, queued) => Step::Pending(Box::new(Pending {
                work,
                queued,
                verified,
                digest,
            })),
        })
    }

    /// `Signature-Input`: exactly one label and its parameters.
    fn parse_input(&self, fields: &SignatureHeaders<'_>) -> Result<ParsedInput, Error> {
        ParsedInput::parse(&fields.input, self.shared.max_components)
    }

    /// `created` (required) within the skew and the window, and `expires` (optional) not
    /// passed. Returns `created`.
    fn check_time_window(&self, input: &ParsedInput, signature_key: &str, now: u64) -> Result<u64, Error> {
        let shared = self.shared;
        let created = input
            .params
            .created
            .ok_or(Error::invalid_signature("the signature has no created parameter"))?;
        if created > now.saturating_add(shared.max_skew) {
            return Err(future_created(shared.profile, signature_key));
        }
        if now.saturating_sub(created) > shared.window {
            return Err(Error::invalid_signature("the signature is too old"));
        }
        if let Some(expires) = input.params.expires
            && (expires < created || expires <= now)
        {
            return Err(Error::invalid_signature("the signature has expired"));
        }
        Ok(created)
    }

    /// The `Signature` member of the label, which must be an Ed25519 signature's size.
    fn decode_signature(&self, fields: &SignatureHeaders<'_>, input: &ParsedInput) -> Result<Vec<u8>, Error> {
        let signature = crate::httpsig::decode_signature(&fields.signature, &input.label, self.shared.alphabet)?;
        if signature.len() != 64 {
            return Err(Error::invalid_signature("an Ed25519 signature is 64 bytes"));
        }
        Ok(signature)
    }

    /// The `Signature-Key` member of the label, in an accepted scheme.
    fn parse_signature_key(
        &self,
        fields: &SignatureHeaders<'_>,
        input: &ParsedInput,
    ) -> Result<ParsedSignatureKey, Error> {
        let shared = self.shared;
        SignatureKey::parse_profiled(
            &fields.key,
            &input.label,
            &shared.schemes,
            shared.profile.accepts_legacy(),
        )
    }

    /// The signature base as this resource sees the request: its own scheme and one of
    /// its own authorities, never the ones the request claims.
    fn rebuild_base(
        &self,
        base: &mut SignatureBase,
        input: &ParsedInput,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<(), Error> {
        let shared = self.shared;
        let target = RequestTarget {
            method: method.as_str(),
            scheme: &shared.scheme,
            authority: self.authority(uri, headers)?,
            path,
            query: uri.query(),
        };
        base.build_capped(input, &target, headers, shared.header_cap)
    }

    /// The `Content-Digest` field to check against the body later, when the signature
    /// covers it.
    fn covered_digest(&self, input: &ParsedInput, headers: &HeaderMap) -> Result<Option<String>, Error> {
        if !input.mentions(names::header::CONTENT_DIGEST) {
            return Ok(None);
        }
        let field = crate::httpsig::field_value(headers, names::header::CONTENT_DIGEST, self.shared.header_cap)?
            .ok_or(Error::invalid_signature("a covered field is absent"))?;
        Ok(Some(field.into_owned()))
    }

    /// `hwk`: the key is in the header, so the signature is checked at once.
    fn verify_hwk(&self, signed: Signed<'_>, jwk: &Jwk) -> Result<Outcome, Error> {
        let thumbprint = jwk.thumbprint_shared();
        check_keyid(signed.input, &[thumbprint.as_ref()])?;
        let queued = self.request_signature(&signed, jwk)?;
        Ok((KeyWork::None, signed.assemble(Found::hwk(jwk)), queued))
    }

    /// The request's signature with `key`: verified now, or queued in a batch (`Some`).
    fn request_signature(&self, signed: &Signed<'_>, key: &Jwk) -> Result<Option<Ticket>, Error> {
        let Some(batcher) = &self.shared.batch else {
            verify_base(signed.base, &signed.signature, key)?;
            return Ok(None);
        };
        let Ok(signature) = <&[u8; 64]>::try_from(signed.signature.as_slice()) else {
            verify_base(signed.base, &signed.signature, key)?;
            return Ok(None);
        };
        match batcher.submit(key.verifying_key(), signed.base.as_bytes(), signature) {
            Submitted::Now(_busy) => verify_base(signed.base, &signed.signature, key).map(|()| None),
            Submitted::Refused => Err(bad_signature()),
            Submitted::Queued(ticket) => Ok(Some(ticket)),
        }
    }

    /// A new token's signature with its issuer's `key`: verified now (`Ok(None)`, or the
    /// failure), or queued in a batch.
    fn token_signature(&self, jws: &UnverifiedJws<'_>, key: &Jwk) -> Result<Option<Ticket>, Error> {
        let Some(batcher) = &self.shared.batch else {
            return jws.verify_with(key).map(|()| None);
        };
        let (message, signature) = jws.signed_parts();
        match batcher.submit(key.verifying_key(), message, signature) {
            Submitted::Now(_busy) => jws.verify_with(key).map(|()| None),
            Submitted::Refused => Err(bad_token_signature()),
            Submitted::Queued(ticket) => Ok(Some(ticket)),
        }
    }

    /// `jwks_uri`: an admitted signer and a known document; the signature is checked here
    /// when the signer's key is cached, else after the fetch ([`KeyWork::Signer`]).
    fn verify_jwks_uri(&self, signed: Signed<'_>, id: String, dwk: String, kid: String) -> Result<Outcome, Error> {
        let shared = self.shared;
        if !shared.identifiers.admits(&id) {
            return Err(Error::invalid_key("the signer identifier is not admitted"));
        }
        if !is_known_dwk(&dwk) {
            return Err(Error::invalid_key("the well-known document name is not recognised"));
        }
        check_keyid(signed.input, &[&kid])?;
        let query = KeyQuery {
            issuer: &id,
            dwk: &dwk,
            kid: &kid,
        };
        match shared.resolver.cached(&query) {
            Some(key) => {
                let key = key?;
                check_key_alg(shared.profile, &key)?;
                let queued = self.request_signature(&signed, &key)?;
                let found = Found::signer(&id, &key);
                Ok((KeyWork::None, signed.assemble(found), queued))
            }
            None => {
                let partial = signed.assemble(Found::awaiting_signer_key(&id));
                let work = KeyWork::Signer {
                    issuer: id,
                    dwk,
                    kid,
                    base: signed.base.clone(),
                    signature: signed.signature,
                    protect: signed.protect,
                };
                Ok((work, partial, None))
            }
        }
    }

    /// `jwt`: a token verified before is only checked for time; a new one is verified in
    /// full.
    fn verify_jwt(&self, signed: Signed<'_>, token: String) -> Result<Outcome, Error> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.shared.token_cache.get(&hash) {
            Some(cached) => self.verify_cached_token(signed, cached),
            None => self.verify_fresh_token(signed, token, hash),
        }
    }

    /// A token verified before: only time and revocation can have changed, and
    /// revocation is the policy step's.
    fn verify_cached_token(&self, signed: Signed<'_>, cached: Arc<VerifiedToken>) -> Result<Outcome, Error> {
        if cached.claims.exp <= signed.now {
            return Err(Error::signature(
                crate::error::SignatureErrorCode::ExpiredJwt,
                "the token has expired",
            ));
        }
        let cnf = &cached.claims.cnf;
        let thumbprint = cnf.thumbprint_shared().clone();
        check_keyid(signed.input, &[&*thumbprint, cnf.kid().unwrap_or_default()])?;
        let queued = self.request_signature(&signed, cnf)?;
        Ok((KeyWork::None, signed.assemble(Found::token(thumbprint, cached)), queued))
    }

    /// A token not seen before: shape and claims, the issuer admitted, proof of
    /// possession with `cnf.jwk`, then the issuer's signature: here when the issuer's key
    /// is cached, else after the fetch ([`KeyWork::TokenIssuer`]).
    fn verify_fresh_token(&self, signed: Signed<'_>, token: String, hash: [u8; 32]) -> Result<Outcome, Error> {
        let shared = self.shared;
        let jws = UnverifiedJws::parse(&token, shared.tokens.alg)?;
        let claims = shared.tokens.check_claims(&jws, signed.now)?;
        if !shared.token_identifiers.admits(&claims.iss) {
            return Err(Error::invalid_jwt("the token's issuer identifier is not admitted"));
        }
        let thumbprint = claims.cnf.thumbprint_shared().clone();
        check_keyid(signed.input, &[&*thumbprint, claims.cnf.kid().unwrap_or_default()])?;
        // Proof of possession first: no fetch for a request its key did not sign. A
        // signature waiting in a batch is decided before anything that follows.
        let queued = self.request_signature(&signed, &claims.cnf)?;
        let partial = signed.assemble(Found::awaiting_issuer_key(thumbprint.clone(), &claims));
        let query = KeyQuery {
            issuer: &claims.iss,
            dwk: &claims.dwk,
            kid: &claims.kid,
        };
        let cached = shared.resolver.cached(&query).map(|key| {
            let key = key.map_err(token_key_error)?;
            check_key_alg(shared.profile, &key).map_err(token_key_error)?;
            Ok::<_, Error>(key)
        });
        let key = match (cached, queued) {
            (Some(Ok(key)), queued) => (key, queued),
            (Some(Err(error)), None) => return Err(error),
            (Some(Err(error)), Some(queued)) => return Ok((KeyWork::Refuse(error), partial, Some(queued))),
            (None, queued) => {
                // The claims already tell the token's generation.
                let work = KeyWork::TokenIssuer {
                    token,
                    claims: Box::new(claims),
                    hash,
                };
                return Ok((work, partial, queued));
            }
        };
        let (key, queued) = key;
        match self.token_signature(&jws, &key) {
            Ok(None) if queued.is_some() => {
                // Not cached before the request's own signature is decided: a token must
                // not be taken as verified on the word of a request that may be forged.
                let work = KeyWork::TokenVerified {
                    claims: Box::new(claims),
                    hash,
                };
                Ok((work, partial, queued))
            }
            Ok(None) => {
                let token = self.remember(claims, hash);
                let mut verified = partial;
                verified.token = Some(token);
                Ok((KeyWork::None, verified, queued))
            }
            Ok(Some(ticket)) => {
                let work = KeyWork::TokenQueued {
                    ticket,
                    token,
                    claims: Box::new(claims),
                    hash,
                    key,
                };
                Ok((work, partial, queued))
            }
            Err(failure) => {
                // The kid matched and the signature did not: perhaps the issuer re-keyed
                // under the same kid. Only a request its key signed gets here (proof of
                // possession above, awaited first when queued), so a bad request
                // signature never causes the refetch.
                let work = KeyWork::TokenRekeyed {
                    token,
                    claims: Box::new(claims),
                    hash,
                    failed: key,
                    failure,
                };
                Ok((work, partial, queued))
            }
        }
    }

    fn remember(&self, claims: TokenClaims, hash: [u8; 32]) -> Arc<VerifiedToken> {
        let token = Arc::new(VerifiedToken { claims, hash });
        self.shared.token_cache.insert(hash, token.clone());
        token
    }

    /// Required components: the AAuth minimum, configured extras, `@query` when the
    /// policy asks for it and a query is present, and `authorization` whenever the agent
    /// sends an `AAuth` session token in it (a session token swapped under a valid
    /// signature must break it).
    fn check_coverage(&self, input: &ParsedInput, uri: &Uri, headers: &HeaderMap) -> Result<(), Error> {
        let shared = self.shared;
        let query_needed = shared.require_query && uri.query().is_some();
        let authorization_needed = carries_aauth_authorization(headers);
        let missing = shared.required.iter().any(|c| !input.covers(c))
            || (query_needed && !input.covers("@query"))
            || (authorization_needed && !input.covers("authorization"));
        if missing {
            let mut required: Vec<String> = shared.required.clone();
            if query_needed {
                required.push("@query".to_owned());
            }
            if authorization_needed && !required.iter().any(|c| c == "authorization") {
                required.push("authorization".to_owned());
            }
            return Err(Error::invalid_input(required));
        }
        Ok(())
    }

    /// The canonical authority for `@authority`: one of the configured authorities, chosen
    /// by the request's `Host` (or absolute-form authority), never taken from it unchecked.
    pub(crate) fn authority<'s>(&'s self, uri: &Uri, headers: &HeaderMap) -> Result<&'s str, Error> {
        let shared = self.shared;
        if shared.ignore_request_authority {
            return Ok(&shared.authorities[0]);
        }
        let host = headers.get(http::header::HOST).map(|h| h.to_str().unwrap_or("\u{0}"));
        let from_uri = uri.authority().map(|a| a.as_str());
        let requested = match (from_uri, host) {
            (Some(a), Some(h)) if !authority_eq(a, h, &shared.scheme) => {
                return Err(Error::invalid_signature("the request target and Host disagree"));
            }
            (Some(a), _) => a,
            (None, Some(h)) => h,
            (None, None) => return Ok(&shared.authorities[0]),
        };
        shared
            .authorities
            .iter()
            .find(|a| authority_eq(a, requested, &shared.scheme))
            .map(String::as_str)
            .ok_or(Error::invalid_signature(
                "the request's authority is not served by this resource",
            ))
    }
}

/// Compares authorities: host case-insensitively, default port omitted.
fn authority_eq(configured: &str, requested: &str, scheme: &str) -> bool {
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let requested = requested.strip_suffix(default_port).unwrap_or(requested);
    configured.eq_ignore_ascii_case(requested)
}

/// `keyid`, when sent, must name the key `Signature-Key` names.
fn check_keyid(input: &ParsedInput, names: &[&str]) -> Result<(), Error> {
    match &input.params.keyid {
        Some(keyid) if !names.iter().any(|n| !n.is_empty() && n == keyid) => Err(Error::invalid_signature(
            "keyid names a different key than Signature-Key",
        )),
        _ => Ok(()),
    }
}

/// A `created` beyond the allowed skew: `clock_skew` since
/// [draft-hardt-httpbis-signature-key-09](https://datatracker.ietf.org/doc/html/draft-hardt-httpbis-signature-key-09); the demo
/// generation knew only `invalid_signature`. Under [`Profile::Both`] only the
/// `Signature-Key` form can tell the generation this early.
fn future_created(profile: Profile, signature_key: &str) -> Error {
    let legacy = match profile {
        Profile::Draft11 => false,
        Profile::Legacy => true,
        Profile::Both => crate::legacy::is_legacy_signature_key(signature_key),
    };
    if legacy {
        Error::invalid_signature("the signature was created in the future")
    } else {
        Error::signature(
            crate::error::SignatureErrorCode::ClockSkew,
            "the signature was created in the future",
        )
    }
}

/// Whether the request carries `Authorization: AAuth …` (the scheme name is
/// case-insensitive, [RFC 9110 §11.1](https://www.rfc-editor.org/rfc/rfc9110#section-11.1)).
fn carries_aauth_authorization(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::AUTHORIZATION).iter().any(|value| {
        let value = value.as_bytes();
        value.len() > 6 && value[..5].eq_ignore_ascii_case(b"aauth") && value[5] == b' '
    })
}

/// Draft -11 keys carry a fully specified `alg`, whatever resolver produced them (a
/// pinned key may have been parsed leniently).
fn check_key_alg(profile: Profile, key: &Jwk) -> Result<(), Error> {
    if is_legacy_key(key) && !profile.accepts_legacy() {
        return Err(Error::signature(
            crate::error::SignatureErrorCode::UnsupportedAlgorithm,
            "the key has no fully specified alg",
        ));
    }
    Ok(())
}

/// A signer key published without `alg` (or with `EdDSA`) is a demo-generation key.
fn is_legacy_key(key: &Jwk) -> bool {
    key.alg().is_none_or(|alg| alg == names::alg::EDDSA)
}

/// A token issuer's key lookup failing is a token failure; a capacity refusal (`503`)
/// stays one.
fn token_key_error(error: Error) -> Error {
    if matches!(error.0, crate::error::Kind::Unavailable { .. }) {
        return error;
    }
    match error.signature_code() {
        Some(crate::error::SignatureErrorCode::UnknownKey) => error,
        Some(crate::error::SignatureErrorCode::IssuerMismatch | crate::error::SignatureErrorCode::IssuerMissing) => {
            error
        }
        _ => Error::invalid_jwt("the token issuer's keys could not be used"),
    }
}

impl Pending {
    /// Decides every signature of this request that waits in a batch, the request's and
    /// a new token's, before anything else is awaited (the body, a key fetch): both
    /// tickets are polled together, so a ticket that leads its batch runs it whatever
    /// the other one waits for, and a request whose signature fails is refused before
    /// its body is read, as it is without batching. A token that failed under its cached
    /// key is left for the one refetch, after the body as without batching.
    pub(crate) async fn settle(&mut self) -> Result<(), Error> {
        let request = self.queued.take();
        let work = std::mem::replace(&mut self.work, KeyWork::None);
        let (work, token) = match work {
            KeyWork::TokenQueued {
                ticket,
                token,
                claims,
                hash,
                key,
            } => (
                KeyWork::TokenRekeyed {
                    token,
                    claims,
                    hash,
                    failed: key,
                    failure: bad_token_signature(),
                },
                Some(ticket),
            ),
            work => (work, None),
        };
        let token_queued = token.is_some();
        let (request_good, token_good) = verdicts(request, token).await;
        if !request_good {
            return Err(bad_signature());
        }
        self.work = match work {
            KeyWork::Refuse(error) => return Err(error),
            // Only a token whose signature was just decided in a batch: one that failed
            // under its cached key without batching stays for the refetch.
            KeyWork::TokenRekeyed { claims, hash, .. } if token_queued && token_good => {
                KeyWork::TokenVerified { claims, hash }
            }
            work => work,
        };
        Ok(())
    }

    /// The slow path: fetch what is missing, verify, check the body digest.
    pub(crate) async fn finish(mut self, shared: Arc<Shared>, body: Option<&[u8]>) -> Result<VerifiedRequest, Error> {
        self.settle().await?;
        let Pending {
            work,
            queued: _,
            mut verified,
            digest,
        } = self;
        match work {
            KeyWork::None => {}
            KeyWork::Refuse(error) => return Err(error),
            KeyWork::TokenQueued { .. } => {
                // `settle` turned it into one of the others.
                return Err(bad_token_signature());
            }
            KeyWork::TokenVerified { claims, hash } => {
                verified.token = Some(Verifier { shared: &shared }.remember(*claims, hash));
            }
            KeyWork::Signer {
                issuer,
                dwk,
                kid,
                base,
                signature,
                protect,
            } => {
                let key = shared
                    .resolver
                    .resolve(KeyQuery {
                        issuer: &issuer,
                        dwk: &dwk,
                        kid: &kid,
                    })
                    .await?;
                check_key_alg(shared.profile, &key)?;
                verify_base(&base, &signature, &key)?;
                let thumbprint = key.thumbprint_shared().clone();
                if protect {
                    verified.replay = Some(ReplayKey::signature(&thumbprint, base.as_bytes()));
                }
                verified.key_thumbprint = thumbprint;
                if is_legacy_key(&key) {
                    verified.generation = shared.profile.answer_in(true);
                }
            }
            KeyWork::TokenIssuer { token, claims, hash } => {
                let key: Arc<Jwk> = shared
                    .resolver
                    .resolve(KeyQuery {
                        issuer: &claims.iss,
                        dwk: &claims.dwk,
                        kid: &claims.kid,
                    })
                    .await
                    .map_err(token_key_error)?;
                check_key_alg(shared.profile, &key).map_err(token_key_error)?;
                let jws = UnverifiedJws::parse(&token, shared.tokens.alg)?;
                jws.verify_with(&key)?;
                let verifier = Verifier { shared: &shared };
                verified.token = Some(verifier.remember(*claims, hash));
            }
            KeyWork::TokenRekeyed {
                token,
                claims,
                hash,
                failed,
                failure,
            } => {
                verified.token = Some(rekeyed(&shared, token, claims, hash, failed, failure).await?);
            }
        }
        if let Some(field) = digest {
            let body = body.ok_or(Error::invalid_signature("the body could not be read"))?;
            crate::httpsig::digest::verify_content_digest(&field, body)?;
        }
        Ok(verified)
    }
}

/// The verdicts of a request's ticket and its token's (`true` for one not queued),
/// polled together; the token's is not awaited once the request's failed.
async fn verdicts(mut request: Option<Ticket>, mut token: Option<Ticket>) -> (bool, bool) {
    let mut request_good = request.is_none().then_some(true);
    let mut token_good = token.is_none().then_some(true);
    std::future::poll_fn(|cx| {
        for (ticket, good) in [(&mut request, &mut request_good), (&mut token, &mut token_good)] {
            if let Some(pending) = ticket
                && let Poll::Ready(verdict) = pending.poll_verdict(cx)
            {
                *good = Some(verdict);
                // Decided: out of flight at once (and never polled again).
                *ticket = None;
            }
        }
        match (request_good, token_good) {
            (Some(false), _) => Poll::Ready((false, false)),
            (Some(request), Some(token)) => Poll::Ready((request, token)),
            _ => Poll::Pending,
        }
    })
    .await
}

/// A token whose signature failed under the cached key of its `kid`: one refetch of the
/// issuer's keys, then the token signature again, else `failure`.
async fn rekeyed(
    shared: &Arc<Shared>,
    token: String,
    claims: Box<TokenClaims>,
    hash: [u8; 32],
    failed: Arc<Jwk>,
    failure: Error,
) -> Result<Arc<VerifiedToken>, Error> {
    let query = KeyQuery {
        issuer: &claims.iss,
        dwk: &claims.dwk,
        kid: &claims.kid,
    };
    let key = match shared.resolver.refetch(query).await {
        None => return Err(failure),
        Some(key) => key.map_err(token_key_error)?,
    };
    if crate::jose::thumbprints_match(key.thumbprint_shared(), failed.thumbprint_shared()) {
        return Err(failure);
    }
    check_key_alg(shared.profile, &key).map_err(token_key_error)?;
    let jws = UnverifiedJws::parse(&token, shared.tokens.alg)?;
    jws.verify_with(&key)?;
    Ok(Verifier { shared }.remember(*claims, hash))
}
