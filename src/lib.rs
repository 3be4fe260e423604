#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The house, bottom to top (each module imports only from the rows below it; the
// `layering` test checks it):
//
//   vocabulary  names · clock · future · profile · error · metrics
//   engine      batch · httpsig · jose · legacy · sigkey · discovery · bot · policy::identity · token ·
//               keyring · resource_token · verified · replay · policy · token_cache · authz
//   state       state (the one struct the services share, built only by the builder)
//   services    verifier · challenge · guard · endpoint · layer · deferred · session · rar · extract ·
//               well_known
//   handle      aauth (every method of `AAuth`) · builder (`AAuthBuilder`)
mod aauth;
mod authz;
mod batch;
mod builder;
mod challenge;
mod clock;
mod deferred;
mod diagnose;
mod endpoint;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod httpsig;
mod jose;
mod keyring;
mod layer;
mod legacy;
mod metrics;
mod names;
mod profile;
#[cfg(feature = "redis")]
mod redis_connection;
mod resource_token;
mod sigkey;
mod state;
mod token;
mod token_cache;
mod verified;
mod verifier;
mod well_known;

pub mod bot;
pub mod budget;
pub mod discovery;
pub mod guard;
pub mod policy;
pub mod rar;
pub mod replay;
pub mod session;
#[cfg(feature = "test-util")]
pub mod testing;

// ---------------------------------------------------------------------------------------
// The public interface: what a resource adds a layer, guards, extractors and configuration
// with. Extension points and the types only their users name live in the modules above.
// ---------------------------------------------------------------------------------------

pub use self::metrics::Metric;
pub use aauth::AAuth;
pub use batch::BatchOptions;
pub use builder::{AAuthBuilder, DangerousAAuthBuilder};
pub use challenge::{Rejection, RejectionBody};
pub use clock::{Clock, SystemClock};
pub use deferred::{DeferredOptions, PendingStoreError, PendingWrite, SharedPendingStore};
#[cfg(feature = "redis")]
pub use deferred::{RedisPendingStore, RedisPendingStoreBuilder};
pub use error::{ConfigError, Error, SignatureErrorCode};
#[cfg(feature = "axum")]
pub use extract::{AuthGrant, ExtractRejection, VerifiedAgent};
pub use future::BoxFuture;
pub use jose::{Jwk, ResourceKey};
pub use layer::{AAuthLayer, AAuthService, ResponseFuture};
pub use profile::{Generation, Profile};
pub use sigkey::Scheme;
pub use token::{Scopes, TokenClaims, TokenKind};
pub use token_cache::TokenCacheOptions;
pub use verified::{VerifiedRequest, VerifiedToken};

/// The names this crate puts on the wire that a resource may need to read or set: header
/// names (lower case, as `http` stores them), the paths of the documents it serves, and
/// the problem codes of its own refusals. `Signature-Error` codes are
/// [`SignatureErrorCode`]s.
pub mod wire {
    pub use crate::names::header::{
        AAUTH_ACCESS, AAUTH_BUDGET, AAUTH_CAPABILITIES, AAUTH_REQUIREMENT, ACCEPT_SIGNATURE_ALG,
        ACCEPT_SIGNATURE_SCHEME, CONTENT_DIGEST, SIGNATURE, SIGNATURE_ERROR, SIGNATURE_INPUT, SIGNATURE_KEY,
    };
    pub use crate::names::path::{JWKS as JWKS_PATH, RESOURCE_METADATA as RESOURCE_METADATA_PATH};
    pub use crate::names::problem::{DETAIL_MISMATCH, GRANT_NOT_HONOURED, SCOPE_ABOVE_CEILING};
}

/// The engine's parts, for this crate's fuzz targets, conformance vectors and benches.
///
/// **Not part of the stable API**: anything here may change or go in any release.
#[doc(hidden)]
pub mod engine {
    pub use crate::batch::{BatchStats, decide_batch, verify_like_strict};
    pub use crate::bot::agent::{AgentDirectory, MAX_AGENT_URL, signature_agent_directory};
    pub use crate::bot::verify::is_thumbprint;
    pub use crate::discovery::admission::{admit_url, is_dns_name, is_public_address};
    pub use crate::discovery::keyset::{KeyLookup, KeySet, legacy_metadata_jwks_uri, metadata_jwks_uri};
    pub use crate::httpsig::digest::{content_digest_sha256, verify_content_digest};
    pub use crate::httpsig::{
        Component, CoveredComponent, DEFAULT_HEADER_CAP, DEFAULT_MAX_COMPONENTS, Derived, ParsedInput, RequestTarget,
        SignatureAlphabet, SignatureBase, SignatureHeaders, SignatureParams, decode_signature, encode_signature,
        field_value, parse_dictionary_strict, verify_base,
    };
    pub use crate::jose::{
        AlgPolicy, MAX_JSON_DEPTH, MAX_JWT_LEN, UnverifiedJws, b64url, b64url_decode, parse_json_object,
        thumbprint_of_x, thumbprints_match,
    };
    pub use crate::legacy::{LegacyMember, is_legacy_signature_key, signature_key_member};
    pub use crate::names::{alg, claim, code, dwk, header, path, poll, problem, requirement, scheme, typ};
    pub use crate::policy::identity::is_agent_identifier;
    pub use crate::resource_token::{Audience, KeyRing, MAX_LIFETIME, MintRequest};
    pub use crate::sigkey::{AcceptedSchemes, ParsedSignatureKey, SignatureKey};
    pub use crate::token::{IssuerTrust, TokenPolicy};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
