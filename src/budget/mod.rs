//! Budgets (draft-hardt-aauth-budgets, "AAuth Budgets"): metered routes that spend an
//! auth token's `budget` claim, report the balance in `AAuth-Budget`, and ask for a new
//! budget with a `401` when it runs out.
//!
//! # Design
//!
//! A metered route is guarded by [`AAuth::meter`](crate::AAuth::meter) with its price: the
//! most one request may cost, in one unit at one scale. The auth token's `budget`
//! claim (`{amount, unit, decimals}`, "The Budget Object") is the grant; a
//! [`BudgetStore`] keeps one counter per auth token, keyed by its `(iss, jti)` and
//! forgotten at its `exp` ("Token Scope": the budget expires with the token).
//!
//! **Reserve, then settle.** Before the handler runs, the meter draws the route's
//! maximum cost from the counter in one atomic step that succeeds only if the counter
//! stays within the grant; after the handler answered, it refunds the part of the
//! reservation the handler did not report as spent ([`Meter::charge`]). The counter is
//! therefore committed cost plus reservations in flight, and the draft's invariant ("The
//! Budget Is a Hard Cap": committed plus reserved never above the grant, under concurrent
//! requests too) is the store's one comparison. An atomic decrement of the actual cost
//! alone could not be refused before serving: the cost is known only once the handler
//! ran, by which time the request would have overspent. A request whose settlement is
//! lost (a crash, a store error, a client that disconnected while the handler ran) stays
//! charged at its reservation, as the draft's "Ambiguous Failures" tells the agent to
//! assume: the error is in the agent's disfavour, never beyond its grant.
//!
//! **Money is integers.** Amounts are `u64` at most 15 digits ("Range Limits"),
//! arithmetic is checked, units are compared byte for byte. A token granting the route's
//! unit at another scale is used when the route's price can be restated in it exactly
//! (1000 at 6 decimals is 100 000 at 8, or 1 at 3); otherwise, as for a token without a
//! budget or with one in another unit, the request carries no budget authorization for
//! this route ("Auth Token Extensions") and is answered with a step-up: `401
//! requirement=auth-token` whose resource token offers a budget in the route's unit and
//! scale. The token's own `unit` and `decimals` are what is enforced, never the
//! resource's current `budget_units`.
//!
//! | the request | answer |
//! |---|---|
//! | no auth token (or one lacking a [required scope](crate::guard::GuardLayer::scopes)) | the challenge of [`AAuth::require_scopes`](crate::AAuth::require_scopes); its resource token carries the budget offer |
//! | auth token without `budget`, or in another unit, or at a scale the price cannot be stated in | `401 requirement=auth-token; resource-token="…"` offering a budget (no `reason`) |
//! | a `budget` that is not a budget object (types, 15 digits, unit of 1–32 of `A-Za-z0-9-_.:/`, `decimals` ≤ 18) | `403 invalid_budget` |
//! | nothing left | `401 requirement=auth-token; resource-token="…"; reason=budget-exhausted` + `AAuth-Budget: remaining=0; …` |
//! | something left, less than the price | `401 …; reason=insufficient-budget` + `AAuth-Budget: remaining=…; required=…; …` |
//! | the store cannot answer | `503` + `Retry-After`, never served unmetered |
//! | the price fits | **serve**, then `AAuth-Budget: remaining=…; cost=…; unit="…"; decimals=…` |
//!
//! The resource token of either budget challenge also carries the presented token's
//! `budget_consumed` record ("Consumption Records"), in the offer's scale.
//!
//! A refused request draws nothing ("Budget Exhaustion": metering a refusal would make
//! exhaustion self-perpetuating), and neither does one a guard further in refuses. What a
//! served request costs is in the table of [`Meter`].
//!
//! # Wire
//!
//! `AAuth-Budget` ("AAuth-Budget Response Header") is written as the draft's examples
//! write it, `remaining` first and the other figures as its parameters, `unit` and
//! `decimals` always together: `remaining=4000; cost=1000; unit="USD"; decimals=6`. The
//! `reason` of a budget challenge is a parameter of the `requirement` member ("The reason
//! Parameter"), so a budget-unaware agent re-authorizes as for any step-up. The metadata
//! publishes `budget_units` and `usage_endpoint` ("Resource Metadata Extensions") when
//! [`BudgetOptions`] configures them.
//!
//! Not implemented: trailers and `reserved` (a handler's cost is settled when it returns
//! its response, before the body streams); `budget_consumed` records of earlier grants
//! (only the presented token's is reported: no per-person ledger is kept); the usage
//! endpoint itself.

pub(crate) mod claim;
pub(crate) mod meter;
pub(crate) mod options;
#[cfg(feature = "redis")]
mod redis_store;
mod store;

pub use meter::{Meter, MeterPolicy};
pub use options::BudgetOptions;
#[cfg(feature = "redis")]
pub use redis_store::RedisBudgetStore;
pub use store::BudgetStore;
