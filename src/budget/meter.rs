//! The metered route: the guard policy that reserves, serves and settles
//! ([`MeterPolicy`]), and the handle a handler reports its cost through ([`Meter`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use tower_service::Service;

use super::claim::{Budget, Figures, MAX_AMOUNT, header_value, rescale, rescale_up};
use super::store::counter_key;
use crate::challenge::error_response;
use crate::error::Error;
use crate::guard::judge::{budget_challenge, precheck, respond};
use crate::guard::middleware::{BoxedResponse, GuardLayer, GuardPolicy, Verdict, take_ready};
use crate::guard::requirement::{Decision, Requirement, RuleContext};
use crate::names;
use crate::replay::store::Refused;
use crate::state::Shared;
use crate::token::{Scopes, TokenKind};

/// The rule of a metered route guard ([`AAuth::meter`](crate::AAuth::meter)): the scope
/// requirement, then the budget (see [`crate::budget`]).
#[derive(Clone, Debug)]
pub struct MeterPolicy {
    shared: Arc<Shared>,
    route: Arc<Route>,
}

#[derive(Debug, Clone)]
struct Route {
    /// The price as a budget object: `amount` is the maximum cost of one request.
    price: Budget,
    /// The budget the route's resource tokens offer.
    offer: Budget,
    requirement: Requirement,
}

/// The meter for `max_cost` in `unit` at `decimals` ([`AAuth::meter`](crate::AAuth::meter),
/// which documents the panics).
pub(crate) fn layer(shared: Arc<Shared>, unit: &str, decimals: u32, max_cost: u64) -> GuardLayer<MeterPolicy> {
    let Some(price) = Budget::new(max_cost, unit, decimals) else {
        panic!(
            "tower-aauth: the price {max_cost} {unit:?} at decimals {decimals} is not a budget amount \
             (unit of 1 to 32 ASCII letters, digits or \"-_.:/\", decimals at most 18, at most 15 digits)"
        );
    };
    let declared = shared.budgets.unit(unit);
    if shared.budgets.declares_units() && declared.is_none_or(|(scale, _)| scale != decimals) {
        panic!(
            "tower-aauth: the price's unit {unit:?} at decimals {decimals} is not declared in \
             BudgetOptions::unit; resource tokens must name a declared unit at its declared scale"
        );
    }
    let offer = declared
        .and_then(|(_, max)| max)
        .unwrap_or_else(|| max_cost.saturating_mul(1000).min(MAX_AMOUNT));
    let layer = GuardLayer {
        policy: MeterPolicy {
            route: Arc::new(Route {
                offer: price.with_amount(offer),
                price,
                requirement: Requirement::Scopes(Scopes::default()),
            }),
            shared,
        },
    };
    layer.offer(offer)
}

impl GuardLayer<MeterPolicy> {
    /// Scopes the metered route also requires, exactly as
    /// [`AAuth::require_scopes`](crate::AAuth::require_scopes), whose challenge the meter
    /// then sends with the budget offer in its resource token. Replaces earlier scopes.
    ///
    /// # Panics
    ///
    /// At start-up, if a scope is not a single RFC 6749 scope token.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        for scope in &scopes {
            assert!(
                Scopes::parse(scope).is_some_and(|s| s.len() == 1),
                "tower-aauth: {scope:?} is not a single RFC 6749 scope token"
            );
        }
        Arc::make_mut(&mut self.policy.route).requirement = Requirement::Scopes(Scopes::from_iter_unchecked(scopes));
        self
    }

    /// The budget the route's resource tokens offer, in the price's scale (default: the
    /// declared unit's `max`, else 1000 requests' worth, at most 15 digits).
    ///
    /// # Panics
    ///
    /// At start-up, if `amount` cannot pay for one request or exceeds the declared unit's
    /// `max` (an offer the resource itself would not honour).
    pub fn offer(mut self, amount: u64) -> Self {
        let price = self.policy.route.price.amount();
        let ceiling = (self.policy.shared.budgets.unit(self.policy.route.price.unit()))
            .and_then(|(_, max)| max)
            .unwrap_or(MAX_AMOUNT);
        assert!(
            amount >= price && amount <= ceiling,
            "tower-aauth: the budget offer {amount} must pay for one request ({price}) and stay within the unit's max ({ceiling})"
        );
        let route = Arc::make_mut(&mut self.policy.route);
        route.offer = route.price.with_amount(amount);
        self
    }
}

/// A drawn reservation not yet settled: refunded in full when dropped armed.
struct Unsettled {
    store: Option<Arc<dyn super::store::BudgetStore>>,
    key: [u8; 32],
    cost: u64,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let (key, cost) = (self.key, self.cost);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = store.refund(key, cost).await;
                });
            }
            // No runtime to refund on: the reservation stays charged, never more than
            // the grant (as when the store cannot answer).
            Err(_) => tracing::debug!(target: "tower_aauth", "a dropped metered request's reservation stays charged"),
        }
    }
}

/// What the asynchronous tail of a metered request needs: which counter, what to reserve
/// against which grant.
pub struct Reservation {
    key: [u8; 32],
    /// The route's maximum cost in the granted scale.
    cost: u64,
    granted: Budget,
    /// How long the counter must outlive this request: the token's remaining lifetime.
    ttl: std::time::Duration,
    /// The scopes the step-up resource token asks for again: those already granted.
    scopes: Scopes,
}

/// The refusal of an auth token whose `budget` claim is not a budget object.
const INVALID_BUDGET: Error = Error::forbidden(
    "invalid_budget",
    "the auth token's budget claim is not a budget object within this resource's limits",
);

impl MeterPolicy {
    /// The `auth-token` challenge whose resource token asks for `scopes` and this route's
    /// budget offer, with `reason` on the requirement and `figures` in `AAuth-Budget`.
    fn step_up<B: From<Bytes>>(
        &self,
        parts_verified: Option<&crate::verified::VerifiedRequest>,
        scopes: &Scopes,
        reason: Option<&'static str>,
        figures: Option<(&Figures, &Budget)>,
    ) -> Response<B> {
        let offer = self.route.offer.to_claim();
        let consumed = figures.and_then(|(figures, granted)| self.consumed(parts_verified, figures, granted));
        let mut response = budget_challenge(&self.shared, parts_verified, scopes, &offer, consumed.as_ref());
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(reason) = reason {
                add_reason(&mut response, reason);
            }
            if let Some((figures, granted)) = figures {
                set_budget_header(&mut response, figures, granted);
            }
        }
        response
    }
}

impl MeterPolicy {
    /// The `budget_consumed` record of the presented auth token ("Consumption Records"):
    /// what its budget has drawn (committed, and any reservation still in flight), restated
    /// in the offer's scale. `None` when it cannot be stated there exactly (beyond 15
    /// digits), as the draft requires. Only the presented token is reported: the resource
    /// keeps no per-person history of earlier grants.
    fn consumed(
        &self,
        verified: Option<&crate::verified::VerifiedRequest>,
        figures: &Figures,
        granted: &Budget,
    ) -> Option<serde_json::Value> {
        let jti = verified?.token.as_deref()?.claims.jti.as_deref()?;
        let drawn = granted.amount().saturating_sub(figures.remaining);
        let consumed = rescale(drawn, granted.decimals(), self.route.offer.decimals())?;
        Some(serde_json::json!([{ "jti": jti, "consumed": consumed }]))
    }
}

/// Adds `reason` to the `requirement` member of `AAuth-Requirement` (draft-hardt-aauth-
/// budgets, "The reason Parameter"); a demo-generation challenge has no such header and
/// is left as it is.
fn add_reason<B>(response: &mut Response<B>, reason: &'static str) {
    let headers = response.headers_mut();
    let Some(value) = headers
        .get(names::header::AAUTH_REQUIREMENT)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    if let Ok(value) = HeaderValue::try_from(format!("{value}; {}={reason}", names::requirement::REASON_PARAM)) {
        headers.insert(names::header::AAUTH_REQUIREMENT, value);
    }
}

fn set_budget_header<B>(response: &mut Response<B>, figures: &Figures, granted: &Budget) {
    if let Ok(value) = HeaderValue::try_from(header_value(figures, granted)) {
        response.headers_mut().insert(names::header::AAUTH_BUDGET, value);
    }
}

impl<S, B, ResBody> GuardPolicy<S, B, ResBody> for MeterPolicy
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Hold = Reservation;

    fn check(&self, request: &Parts) -> Verdict<ResBody, Reservation> {
        let shared = &self.shared;
        // Applied router-wide, a meter still leaves the documents the layer leaves
        // public (the metadata, the JWKS, pending URLs), as every guard does.
        if shared.is_public_path(request) {
            return Verdict::Allow;
        }
        let requirement = &self.route.requirement;
        if let Some(response) = precheck(shared, requirement, &request.extensions) {
            return Verdict::Answer(response);
        }
        let cx = RuleContext::of_parts(request);
        let verified = cx.verified;
        match requirement.evaluate(&cx) {
            Decision::Allow => {}
            Decision::NeedAuth(scopes) => return Verdict::Answer(self.step_up(verified, &scopes, None, None)),
            other => {
                if let Some(response) = respond(shared, other, verified) {
                    return Verdict::Answer(response);
                }
            }
        }
        // The requirement admits auth tokens only.
        let Some(verified) = verified else {
            return Verdict::Answer(self.step_up(None, &Scopes::default(), None, None));
        };
        let Some(claims) = verified
            .token
            .as_deref()
            .map(|t| &t.claims)
            .filter(|c| c.kind == TokenKind::Auth)
        else {
            return Verdict::Answer(self.step_up(Some(verified), &Scopes::default(), None, None));
        };
        // No budget, or one in another unit or a scale that cannot state this route's
        // price exactly: no budget authorization for this route ("Auth Token
        // Extensions"), so ask for one, in this route's denomination.
        let granted = match claims.raw.get(names::claim::BUDGET).map(Budget::from_claim) {
            None => return Verdict::Answer(self.step_up(Some(verified), &claims.scope, None, None)),
            Some(None) => return Verdict::Answer(error_response(shared.hook(), &INVALID_BUDGET)),
            Some(Some(granted)) => granted,
        };
        let price = &self.route.price;
        let cost = match rescale(price.amount(), price.decimals(), granted.decimals()) {
            Some(cost) if granted.unit() == price.unit() => cost,
            _ => return Verdict::Answer(self.step_up(Some(verified), &claims.scope, None, None)),
        };
        let Some(jti) = claims.jti.as_deref() else {
            let error = Error::invalid_jwt("a budget is counted against the auth token's jti, and it has none");
            return Verdict::Answer(error_response(shared.hook(), &error));
        };
        Verdict::Hold(Reservation {
            key: counter_key(&claims.iss, jti),
            cost,
            ttl: std::time::Duration::from_secs(
                claims
                    .exp
                    .saturating_add(shared.max_skew)
                    .saturating_sub(shared.clock.now())
                    .max(1),
            ),
            granted,
            scopes: claims.scope.clone(),
        })
    }

    fn hold(&self, reservation: Reservation, inner: &mut S, request: Request<B>) -> BoxedResponse<ResBody, S::Error> {
        let mut inner = take_ready(inner);
        let policy = self.clone();
        Box::pin(async move {
            let Reservation {
                key,
                cost,
                ref granted,
                ttl,
                ref scopes,
            } = reservation;
            let mut request = request;
            let refused = Refused::of(request.extensions());
            let store = &policy.shared.budgets.store;
            let limit = granted.amount();
            let before = match store.draw(key, cost, limit, ttl).await {
                Ok(before) => before,
                Err(error) => return Ok(refused.mark(error_response(policy.shared.hook(), &error))),
            };
            if before.checked_add(cost).is_none_or(|after| after > limit) {
                // Refused before serving: nothing was drawn ("Budget Exhaustion").
                let remaining = limit.saturating_sub(before);
                let (reason, required) = match remaining {
                    0 => (names::requirement::BUDGET_EXHAUSTED, None),
                    _ => (names::requirement::INSUFFICIENT_BUDGET, Some(cost)),
                };
                let figures = Figures {
                    remaining,
                    cost: None,
                    required,
                };
                let verified = request.extensions().get::<crate::verified::VerifiedRequest>();
                let response = policy.step_up(verified, scopes, Some(reason), Some((&figures, granted)));
                return Ok(refused.mark(response));
            }
            // From here the reservation is refunded whatever happens to this future: a
            // request dropped unanswered (the client gone, a timeout outside) was not
            // served, and is not charged.
            let mut unsettled = Unsettled {
                store: Some(store.clone()),
                key,
                cost,
            };
            let meter = Meter {
                state: Arc::new(MeterState {
                    granted: granted.clone(),
                    route_decimals: policy.route.price.decimals(),
                    reserved: cost,
                    reported: AtomicU64::new(NOT_REPORTED),
                }),
            };
            request.extensions_mut().insert(meter.clone());
            let mut response = match inner.call(request).await {
                Ok(response) => response,
                Err(error) => {
                    // The service failed without a response: no cost can be stated.
                    unsettled.store = None;
                    let _ = store.refund(key, cost).await;
                    return Err(error);
                }
            };
            unsettled.store = None;
            // A guard further in refused the request: it was not served, and a refusal
            // never draws on the budget, whatever was reported.
            let charged = match refused.matches(&response) {
                true => 0,
                false => meter.charged(response.status()),
            };
            match store.refund(key, cost.saturating_sub(charged)).await {
                Ok(after) => {
                    let figures = Figures {
                        remaining: limit.saturating_sub(after),
                        cost: Some(charged),
                        required: None,
                    };
                    set_budget_header(&mut response, &figures, granted);
                }
                Err(_) => tracing::warn!(
                    target: "tower_aauth",
                    "the budget store could not settle a metered request; its whole reservation stays charged"
                ),
            }
            Ok(response)
        })
    }
}

const NOT_REPORTED: u64 = u64::MAX;

/// The metering handle of one request of a metered route, in its extensions (and an axum
/// extractor): what the auth token's `budget` claim grants, and where the handler reports
/// what the request cost.
///
/// | the handler | the request is charged |
/// |---|---|
/// | reports `cost` with [`Meter::charge`] | `cost` (at most the route's price) |
/// | reports nothing, answers below `400` | the route's price |
/// | reports nothing, answers `4xx`/`5xx` | nothing |
/// | never runs (refused by a guard further in) | nothing, even if something was reported |
#[derive(Clone, Debug)]
pub struct Meter {
    state: Arc<MeterState>,
}

#[derive(Debug)]
struct MeterState {
    granted: Budget,
    route_decimals: u32,
    /// The reservation, in the granted scale.
    reserved: u64,
    /// The reported cost in the route's scale, or [`NOT_REPORTED`].
    reported: AtomicU64,
}

impl Meter {
    /// Reports what this request cost, in the scale of the route's price; a later call
    /// replaces an earlier one, and a call after the handler returned its response (the
    /// moment the request is settled) is ignored. A cost above the price is charged at the price (the
    /// reservation is the most a request can take, so the grant is never overspent) and
    /// logged; a cost finer than the token's scale is rounded up.
    pub fn charge(&self, cost: u64) {
        self.state.reported.store(cost.min(NOT_REPORTED - 1), Ordering::Relaxed);
    }

    /// The granted budget's `amount`: the ceiling, in units of `10^-decimals` of its unit.
    pub fn granted_amount(&self) -> u64 {
        self.state.granted.amount()
    }

    /// The granted budget's `unit` (`USD`, `tokens`, …), compared byte for byte.
    pub fn unit(&self) -> &str {
        self.state.granted.unit()
    }

    /// The granted budget's `decimals`: the scale of its amounts, which `AAuth-Budget`
    /// reports in (it may be finer than the route's price).
    pub fn decimals(&self) -> u32 {
        self.state.granted.decimals()
    }

    /// What the request will be charged, in the granted scale.
    fn charged(&self, status: StatusCode) -> u64 {
        let state = &self.state;
        match state.reported.load(Ordering::Relaxed) {
            NOT_REPORTED if status.as_u16() < 400 => state.reserved,
            NOT_REPORTED => 0,
            cost => match rescale_up(cost, state.route_decimals, state.granted.decimals()) {
                Some(cost) if cost <= state.reserved => cost,
                _ => {
                    tracing::warn!(
                        target: "tower_aauth",
                        "a metered handler reported a cost above the route's price; the price was charged"
                    );
                    state.reserved
                }
            },
        }
    }
}

/// A handler named [`Meter`] on a route without [`AAuth::meter`](crate::AAuth::meter).
#[cfg(feature = "axum")]
const METER_WITHOUT_LAYER: &str = "the Meter extractor runs only on a route behind AAuth::meter(..): \
     add .route_layer(aauth.meter(unit, decimals, max_cost)) to the metered route";

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Meter {
    type Rejection = crate::extract::ExtractRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Meter>().cloned().ok_or_else(|| {
            tracing::error!(target: "tower_aauth", "{METER_WITHOUT_LAYER}");
            let error = Error(crate::error::Kind::Misconfigured {
                detail: METER_WITHOUT_LAYER,
            });
            crate::extract::ExtractRejection(Box::new(error.to_response()))
        })
    }
}
