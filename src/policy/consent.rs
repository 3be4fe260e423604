//! Person-server grants are consent, not entitlement (the rules are on [`GrantPolicy`]).

use serde_json::Value;

use std::sync::Arc;

use super::identity::PersonId;
use crate::error::Error;
use crate::token::Scopes;

/// The resource's own policy for grants issued by person servers it does not trust by
/// name. Runs on every request presenting such a grant, and before a step-up towards
/// such a PS: keep it cheap and free of I/O.
///
/// Person-server grants are consent, not entitlement.
///
/// In the three-party posture a person server (PS) issues the auth token. Any server can
/// be a PS, so a PS's `scope` says what the person agreed to, not what the resource
/// allows: a resource MUST apply its own policy to PS-issued claims rather than treat an
/// auth token as a bearer grant (draft-hardt-oauth-aauth-protocol-11, "Auth Token
/// Verification"). The layer therefore honours a PS grant's `scope` and
/// `authorization_details` only:
///
/// * from a person server configured by name ([`AAuthBuilder::person_server`](crate::AAuthBuilder::person_server));
/// * or as far as this policy approves, keyed on the person `(iss, sub)`;
/// * or from any PS, when the resource says so explicitly with
///   [`DangerousAAuthBuilder::honour_any_person_server_grants`](crate::DangerousAAuthBuilder::honour_any_person_server_grants).
///
/// Grants from the resource's own access servers (four-party) are honoured as issued.
/// What is not honoured is removed from the token the guards, rules and extractors see,
/// and a step-up towards a PS that would not be honoured is refused (`403
/// grant_not_honoured`) instead of minting a resource token that cannot lead anywhere.
///
pub trait GrantPolicy: Send + Sync + 'static {
    /// The scopes of `granted` this resource honours for `person`.
    fn honoured_scopes(&self, person: &PersonId, granted: &Scopes) -> Scopes;

    /// Whether `details` (the grant's `authorization_details`) are honoured for `person`.
    /// Default: never.
    fn honours_details(&self, person: &PersonId, details: &Value) -> bool {
        let _ = (person, details);
        false
    }
}

impl<F> GrantPolicy for F
where
    F: Fn(&PersonId, &Scopes) -> Scopes + Send + Sync + 'static,
{
    fn honoured_scopes(&self, person: &PersonId, granted: &Scopes) -> Scopes {
        self(person, granted)
    }
}

/// The consent configuration, frozen at build time.
#[derive(Clone, Default)]
pub(crate) struct Consent {
    /// Person servers whose grants are honoured as issued.
    pub(crate) trusted: Vec<String>,
    /// Every person server's grants are honoured as issued (an explicit choice).
    pub(crate) any: bool,
    pub(crate) policy: Option<Arc<dyn GrantPolicy>>,
}

impl Consent {
    pub(crate) fn trusts(&self, person_server: &str) -> bool {
        self.any || self.trusted.iter().any(|ps| ps == person_server)
    }

    /// `Ok` when a grant for `scopes` (and `details`) from `person` would be honoured;
    /// else the `403` that replaces a step-up towards its person server.
    pub(crate) fn check_step_up(
        &self,
        person: Option<PersonId>,
        scopes: &Scopes,
        details: Option<&serde_json::Value>,
    ) -> Result<(), Error> {
        let refused = Error(crate::error::Kind::Forbidden {
            code: crate::names::problem::GRANT_NOT_HONOURED,
            detail: "this resource does not honour that person server's grants for this request",
        });
        let Some(person) = person else {
            return Err(refused);
        };
        if self.trusts(person.issuer()) {
            return Ok(());
        }
        let Some(policy) = &self.policy else {
            return Err(refused);
        };
        let honoured = policy.honoured_scopes(&person, scopes);
        if !honoured.contains_all(scopes) || details.is_some_and(|d| !policy.honours_details(&person, d)) {
            return Err(refused);
        }
        Ok(())
    }
}
