#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod authz;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod deferred;
mod diagnose;
pub mod discovery;
pub mod error;
#[cfg(feature = "axum")]
pub mod extract;
pub mod guard;
pub mod httpsig;
pub mod jose;
pub mod layer;
pub mod legacy;
pub mod policy;
pub mod rar;
pub mod replay;
pub mod resource_token;
pub mod sigkey;
pub mod token;
pub mod token_cache;
pub mod verifier;
pub mod well_known;
pub mod wire;

pub use challenge::{Challenge, Rejection, RejectionBody};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AAuth, AAuthBuilder, ConfigError, Generation, Profile};
pub use error::{Error, SignatureErrorCode};
#[cfg(feature = "axum")]
pub use extract::{AuthGrant, VerifiedAgent};
pub use guard::{Decision, GuardLayer, Requirement};
pub use jose::{Jwk, ResourceKey};
pub use layer::{AAuthLayer, AAuthService, ResponseFuture};
pub use sigkey::Scheme;
pub use token::{Scopes, TokenClaims, TokenKind};
pub use verifier::{VerifiedRequest, VerifiedToken};
#[cfg(feature = "test-util")]
pub mod testing;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
