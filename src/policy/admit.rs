//! The policy step of the layer: after the signature verified and before the replay store,
//! guards or handlers, decide who the agent is, whether anything is revoked, and what the
//! presented grant is worth here.

use std::sync::Arc;

use serde_json::Value;

use super::identity::{AgentId, BindingRefused, PersonId};
use crate::error::Error;
use crate::names;
use crate::state::Shared;
use crate::token::{Scopes, TokenKind};
use crate::verified::VerifiedRequest;
use crate::verified::VerifiedToken;

/// Everything the policy decides after the signature verified and before the replay
/// store, guards or handlers: who the agent is, whether anything is revoked, and what the
/// presented grant is worth here.
pub(crate) fn admit(shared: &Shared, verified: &mut VerifiedRequest) -> Result<(), Error> {
    let now = shared.clock.now();
    // A replica whose shared policy is stale serves nothing, and binds nothing either.
    shared.revocations.link().check()?;
    identify(shared, verified, now)?;
    shared
        .revocations
        .check_at(verified, now.saturating_sub(shared.max_skew))?;
    shared.ceilings.ensure_current()?;
    narrow_grant(shared, verified);
    Ok(())
}

/// Bindings end on a five-minute grid, so that the requests of one grant extend a
/// binding once, not on every request.
const BINDING_GRID: u64 = 300;

fn on_grid(until: u64) -> u64 {
    until.div_ceil(BINDING_GRID).saturating_mul(BINDING_GRID)
}

/// Sets [`VerifiedRequest::agent`](crate::VerifiedRequest::agent) and keeps the key's binding as long as the credentials
/// it presents: an agent token binds its key for the token's life plus the longest grant
/// lifetime, and a grant presented by a bound key keeps the binding until the grant ends.
fn identify(shared: &Shared, verified: &mut VerifiedRequest, now: u64) -> Result<(), Error> {
    pin_newly_named(shared, now);
    let grace = shared.tokens.max_grant_lifetime;
    let named = match (&verified.token, &verified.signer) {
        (Some(token), _) => token
            .claims
            .agent_id
            .as_ref()
            .map(|agent| (agent.clone(), token.claims.exp.saturating_add(grace))),
        (None, Some(signer)) => Some((AgentId::server(signer.clone()), now.saturating_add(grace))),
        (None, None) => None,
    };
    let thumbprint = &*verified.key_thumbprint;
    let (agent, until) = match named {
        Some(named) => named,
        None => {
            let Some(bound) = shared.bindings.binding(thumbprint, now) else {
                return Ok(());
            };
            let presented_until = verified
                .token
                .as_ref()
                .map_or(0, |t| t.claims.exp.saturating_add(grace));
            if presented_until > bound.until || (!bound.pinned && names_in_policy(shared, &bound.agent)) {
                bind(shared, verified, &bound.agent, presented_until, now)?;
            }
            verified.agent = Some(bound.agent);
            return Ok(());
        }
    };
    let current = shared.bindings.binding(thumbprint, now);
    let settled = current.is_some_and(|bound| {
        bound.agent == agent && bound.until >= on_grid(until) && (bound.pinned || !names_in_policy(shared, &agent))
    });
    if !settled {
        bind(shared, verified, &agent, until, now)?;
    }
    verified.agent = Some(agent);
    Ok(())
}

/// Binds the request's key to `agent` until at least `until`.
fn bind(shared: &Shared, verified: &VerifiedRequest, agent: &AgentId, until: u64, now: u64) -> Result<(), Error> {
    let pinned = names_in_policy(shared, agent);
    match shared
        .bindings
        .bind(&verified.key_thumbprint, agent, on_grid(until), now, pinned)
    {
        Ok(()) => Ok(()),
        Err(refused) => {
            tracing::debug!(target: "tower_aauth", ?refused, "a key binding was refused");
            let detail = match refused {
                BindingRefused::TooManyKeys => "the agent holds too many live keys",
                _ => "the signing key belongs to another agent",
            };
            Err(if verified.token.is_some() {
                Error::invalid_jwt(detail)
            } else {
                Error::invalid_key(detail)
            })
        }
    }
}

/// Before a resource token is minted for a request attributed to an agent: the grant it
/// will be exchanged for may live the longest grant lifetime from now, and must still be
/// attributed to the agent then.
pub(crate) fn bind_for_grant(shared: &Shared, verified: &VerifiedRequest) {
    if let Some(agent) = &verified.agent {
        let now = shared.clock.now();
        let until = now
            .saturating_add(shared.authz.lifetime)
            .saturating_add(shared.tokens.max_grant_lifetime);
        // A refusal here means the key is another agent's or the agent is at its key
        // bound; the request was admitted under its current binding either way.
        let _ = bind(shared, verified, agent, until, now);
    }
}

/// Whether a ceiling or a revocation names `agent`: its bindings are then pinned.
fn names_in_policy(shared: &Shared, agent: &AgentId) -> bool {
    shared.ceilings.names(agent) || shared.revocations.names(agent)
}

/// When the ceilings or revocations changed since the last request, pins the bindings of
/// every agent they now name (once per change).
fn pin_newly_named(shared: &Shared, now: u64) {
    let seen = shared.ceilings.generation() ^ shared.revocations.generation().rotate_left(32);
    // A load first: the steady state reads a shared line without writing it.
    let pinned_for = &shared.pinned_for;
    if pinned_for.load(std::sync::atomic::Ordering::Acquire) != seen
        && pinned_for.swap(seen, std::sync::atomic::Ordering::AcqRel) != seen
    {
        shared.bindings.pin_named(&|agent| names_in_policy(shared, agent), now);
    }
}

/// How far the resource honours a grant's issuer.
enum Honour {
    All,
    Scopes(Scopes, bool),
}

/// The grant the guards see: the auth token's `scope` narrowed to what its issuer is
/// honoured for and to the ceilings, and its `authorization_details` to the entries whose
/// type the ceilings permit (a ceiling lists detail types as it lists scopes), all of them
/// dropped when the issuer's details are not honoured. Allocates only when something is
/// taken away.
fn narrow_grant(shared: &Shared, verified: &mut VerifiedRequest) {
    let Some(token) = &verified.token else {
        return;
    };
    let claims = &token.claims;
    if claims.kind != TokenKind::Auth {
        return;
    }
    let honour = honour(shared, claims);
    let ceilings = shared.ceilings.snapshot();
    if ceilings.is_empty() && matches!(honour, Honour::All) {
        return;
    }
    let (allowed, details_honoured) = match &honour {
        Honour::All => (None, true),
        Honour::Scopes(scopes, details) => (Some(scopes), *details),
    };
    // A budget is money a grant's issuer vouches for: honoured only from an issuer whose
    // grants are honoured in full, never from a person server the resource does not trust.
    let strip_budget = !matches!(honour, Honour::All) && claims.raw.contains_key(names::claim::BUDGET);
    let effective = Scopes::from_iter_unchecked(
        claims
            .scope
            .iter()
            .filter(|s| allowed.is_none_or(|a| a.contains(s)) && ceilings.permits(verified, s)),
    );
    let details = claims.raw.get(names::claim::AUTHORIZATION_DETAILS);
    let kept_details = match details {
        None => None,
        Some(_) if !details_honoured => Some(None),
        Some(details) if detail_types(details).all(|t| ceilings.permits(verified, t)) => None,
        Some(Value::Array(entries)) => {
            let kept: Vec<Value> = entries
                .iter()
                .filter(|entry| detail_type(entry).is_some_and(|t| ceilings.permits(verified, t)))
                .cloned()
                .collect();
            Some((!kept.is_empty()).then_some(Value::Array(kept)))
        }
        Some(_) => Some(None),
    };
    if effective.len() == claims.scope.len() && kept_details.is_none() && !strip_budget {
        return;
    }
    let mut narrowed = claims.clone();
    let mut raw = (*claims.raw).clone();
    if effective.is_empty() {
        raw.remove("scope");
    } else {
        raw.insert("scope".into(), effective.to_string().into());
    }
    match kept_details {
        Some(Some(kept)) => {
            raw.insert(names::claim::AUTHORIZATION_DETAILS.into(), kept);
        }
        Some(None) => {
            raw.remove(names::claim::AUTHORIZATION_DETAILS);
        }
        None => {}
    }
    if strip_budget {
        raw.remove(names::claim::BUDGET);
    }
    narrowed.scope = effective;
    narrowed.raw = Arc::new(raw);
    verified.token = Some(Arc::new(VerifiedToken {
        claims: narrowed,
        hash: token.hash,
    }));
}

/// The `type` of one `authorization_details` entry.
fn detail_type(entry: &Value) -> Option<&str> {
    entry.get("type").and_then(Value::as_str)
}

/// The types of an `authorization_details` array (an entry without one counts as the
/// empty type, which no ceiling lists).
pub(crate) fn detail_types(details: &Value) -> impl Iterator<Item = &str> {
    details
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| detail_type(entry).unwrap_or_default())
}

/// Whose grant this is and how far it is honoured (see [`consent`]).
fn honour(shared: &Shared, claims: &crate::token::TokenClaims) -> Honour {
    if claims.dwk != names::dwk::PERSON || shared.consent.trusts(&claims.iss) {
        return Honour::All;
    }
    let Some(policy) = &shared.consent.policy else {
        return Honour::Scopes(Scopes::default(), false);
    };
    let Some(sub) = claims.sub.as_deref() else {
        return Honour::Scopes(Scopes::default(), false);
    };
    let person = PersonId::new(claims.iss.as_str(), sub);
    let details = claims
        .raw
        .get(names::claim::AUTHORIZATION_DETAILS)
        .is_some_and(|details| policy.honours_details(&person, details));
    Honour::Scopes(policy.honoured_scopes(&person, &claims.scope), details)
}
