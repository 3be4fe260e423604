//! Account binding at the authorization endpoint ([AAuth draft -11, "Account
//! Binding"][draft-11]): whether the person holds the account an agent names.
//!
//! [draft-11]: https://datatracker.ietf.org/doc/html/draft-hardt-oauth-aauth-protocol-11

/// What the resource says about an `account` an agent names at the authorization
/// endpoint, for the person of its verified person token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountDecision {
    /// The person holds the account: the resource token echoes it in `account`.
    Holds,
    /// The person does not hold it: `400 invalid_account`.
    NotHeld,
    /// Only a user-facing step at the resource could tell (resource-managed
    /// interaction, for example linking an upstream account). This crate cannot run
    /// that step yet: the request is refused with `403 interaction_unavailable`.
    NeedsInteraction,
}
