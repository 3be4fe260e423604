//! Rich authorization requests (RFC 9396): the `authorization_details` an auth token
//! carries, read as the resource's own types.
//!
//! # Design
//!
//! When a person approves a transaction out of band (as with Client-Initiated Backchannel
//! Authentication for agents), the point is that the *resource*, not the agent or its
//! model, checks that the token carries the exact transaction the person approved. An auth
//! server puts that transaction in `authorization_details`: an array of objects, each with
//! a string `type` and members that `type` defines. This module
//!
//! * validates the claim's shape on use, with caps (32 entries, 256 bytes per `type`): a wrong shape is a [`DetailError`], never an empty
//!   list that a check could mistake for "nothing to verify";
//! * deserialises the entries of one `type` into the caller's struct (`serde`); an entry of
//!   that type that does not fit the struct is an error, not skipped;
//! * backs the `require_detail` route guard ([`RequireDetailLayer`](crate::guard::RequireDetailLayer)): the route runs only
//!   when some entry of the named type deserialises and the caller's predicate accepts it
//!   against the request (amount ≤ approved, symbol = path parameter, …). Otherwise `403`
//!   with a problem body naming the type (`insufficient_authorization_details`), or, when
//!   configured, a step-up challenge.
//!
//! Entries of other types are ignored by a guard for one type, as
//! [RFC 9396 §2](https://www.rfc-editor.org/rfc/rfc9396#section-2) lets a
//! resource ignore types it does not know; a token with *only* unknown types fails every
//! `require_detail` guard.
//!
//! The struct sees the whole entry, `type` included: declare a `type` field or do not use
//! `#[serde(deny_unknown_fields)]`.

pub(crate) mod details;
pub(crate) mod require;

pub use details::{AuthorizationDetails, DetailError};
