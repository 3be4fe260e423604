//! Metrics through the [`metrics`] facade: the names and label vocabularies of
//! [`Metric`], and the recording calls the engine makes at its decision points.
//!
//! At the bottom of the house: imports nothing from the crate but the vocabulary of
//! decisions ([`AuditDecision`]). Every label value is a `&'static str` chosen here or
//! by the caller from a fixed set; nothing a client sends ever becomes a label.

use std::time::Instant;

use crate::error::AuditDecision;

/// The metrics this crate records through the [`metrics`](https://docs.rs/metrics) facade.
///
/// The crate installs no recorder: with none installed every call is a no-op; install
/// the exporter of your choice (for example `metrics-exporter-prometheus`, as
/// `examples/resource_server.rs` does under `AAUTH_METRICS_ADDR`) and the series below
/// appear. [`Metric::describe_all`] gives the installed recorder each metric's description
/// and unit (Prometheus `# HELP` lines).
///
/// # The metrics
///
/// | name | type | labels | what is counted or measured |
/// |---|---|---|---|
/// | `tower_aauth_requests_total` | counter | `decision`, `code` | every request the layer sees, once, when its answer is known |
/// | `tower_aauth_verification_seconds` | histogram | `outcome` | the layer's verification of a signed request, key fetches and the body digest included |
/// | `tower_aauth_token_cache_lookups_total` | counter | `cache` | lookups of a `jwt` scheme token in the verified-token cache |
/// | `tower_aauth_discovery_cache_lookups_total` | counter | `cache` | synchronous lookups in the discovery cache ([`KeyResolver::cached`](crate::discovery::KeyResolver::cached) of the default resolver) |
/// | `tower_aauth_discovery_fetches_total` | counter | `document` | metadata and JWKS fetches started (successful or not) |
/// | `tower_aauth_discovery_failures_total` | counter | — | refreshes that failed (transport or validation) |
/// | `tower_aauth_discovery_budget_refusals_total` | counter | — | fetches for new issuers refused by the global budget (`503`) |
/// | `tower_aauth_discovery_cooldown_hits_total` | counter | — | unknown `kid`s answered without a fetch because the issuer was refreshed within the cooldown |
/// | `tower_aauth_discovery_negative_hits_total` | counter | — | lookups answered from a remembered failure |
/// | `tower_aauth_discovery_stale_served_total` | counter | — | keys served past their freshness because the issuer could not be reached |
/// | `tower_aauth_store_seconds` | histogram | `store`, `op`, `outcome` | shared-state operations that waited (a networked store's round trip); decisions a store makes without I/O are not timed |
/// | `tower_aauth_store_errors_total` | counter | `store`, `op` | shared-state operations that answered an error (full, unreachable, timed out) |
/// | `tower_aauth_bot_verifications_total` | counter | `outcome` | Web Bot Auth signatures verified or refused ([`crate::bot`]), directory fetches included |
///
/// # Labels and their values
///
/// | label | values |
/// |---|---|
/// | `decision` | `allow`, `challenge`, `deny`, `reject` (the audit event's decision, [`crate::policy::AuditField::Decision`]) |
/// | `code` | with `allow`: `verified`, `bot` (a verified Web Bot Auth bot), `unsigned`. With `challenge`: the requirement asked for, `agent-token`, `person-token`, `auth-token`, or `other`. With `reject`: a [`SignatureErrorCode`](crate::SignatureErrorCode) (`invalid_signature`, `unknown_key`, …), `temporarily_unavailable`, `payload_too_large`, `signature_reused` (a bot's `429`) or `server_error`. With `deny`: the problem code of the `403`: this crate's (`insufficient_scope`, `no_person_server`, `auth_token_required`, `invalid_request`, and those of [`crate::wire`]), `forbidden` for a `403` without one, or the code an application passes to [`Error::forbidden`](crate::Error::forbidden) (a `&'static str`: fixed when the application is compiled) |
/// | `outcome` | `verified`, `refused` (verification); `ok`, `error` (stores) |
/// | `cache` | `hit`, `miss` (a discovery hit is any answer given without a fetch: a key, or a remembered refusal) |
/// | `document` | `metadata`, `jwks`; `bot_directory` (a Web Bot Auth key directory, [`crate::bot`]: its fetches are counted only here, in no other `discovery` metric) |
/// | `store` | `replay` (the replay store, also used for single-use grants), `pending` (held `202` requests and their results), `policy` (the shared revocations, ceilings and key bindings) |
/// | `op` | `insert`, `release` (replay, and a new pending record); `read`, `write` (pending records, the policy sync) |
///
/// No agent identifier, issuer, key id, thumbprint, path or other value a client chooses
/// is ever a label: the number of series is fixed by this table, and labels leak nothing
/// about who called. The identities are in the audit events ([`crate::policy::AuditField`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Metric {
    /// `tower_aauth_requests_total`.
    Requests,
    /// `tower_aauth_verification_seconds`.
    VerificationSeconds,
    /// `tower_aauth_token_cache_lookups_total`.
    TokenCacheLookups,
    /// `tower_aauth_discovery_cache_lookups_total`.
    DiscoveryCacheLookups,
    /// `tower_aauth_discovery_fetches_total`.
    DiscoveryFetches,
    /// `tower_aauth_discovery_failures_total`.
    DiscoveryFailures,
    /// `tower_aauth_discovery_budget_refusals_total`.
    DiscoveryBudgetRefusals,
    /// `tower_aauth_discovery_cooldown_hits_total`.
    DiscoveryCooldownHits,
    /// `tower_aauth_discovery_negative_hits_total`.
    DiscoveryNegativeHits,
    /// `tower_aauth_discovery_stale_served_total`.
    DiscoveryStaleServed,
    /// `tower_aauth_store_seconds`.
    StoreSeconds,
    /// `tower_aauth_store_errors_total`.
    StoreErrors,
    /// `tower_aauth_bot_verifications_total`.
    BotVerifications,
}

const REQUESTS: &str = "tower_aauth_requests_total";
const VERIFICATION_SECONDS: &str = "tower_aauth_verification_seconds";
const TOKEN_CACHE_LOOKUPS: &str = "tower_aauth_token_cache_lookups_total";
const DISCOVERY_CACHE_LOOKUPS: &str = "tower_aauth_discovery_cache_lookups_total";
const DISCOVERY_FETCHES: &str = "tower_aauth_discovery_fetches_total";
const DISCOVERY_FAILURES: &str = "tower_aauth_discovery_failures_total";
const DISCOVERY_BUDGET_REFUSALS: &str = "tower_aauth_discovery_budget_refusals_total";
const DISCOVERY_COOLDOWN_HITS: &str = "tower_aauth_discovery_cooldown_hits_total";
const DISCOVERY_NEGATIVE_HITS: &str = "tower_aauth_discovery_negative_hits_total";
const DISCOVERY_STALE_SERVED: &str = "tower_aauth_discovery_stale_served_total";
const STORE_SECONDS: &str = "tower_aauth_store_seconds";
const STORE_ERRORS: &str = "tower_aauth_store_errors_total";
const BOT_VERIFICATIONS: &str = "tower_aauth_bot_verifications_total";

impl Metric {
    /// Every metric, in the order of the table above.
    pub const ALL: &'static [Metric] = &[
        Metric::Requests,
        Metric::VerificationSeconds,
        Metric::TokenCacheLookups,
        Metric::DiscoveryCacheLookups,
        Metric::DiscoveryFetches,
        Metric::DiscoveryFailures,
        Metric::DiscoveryBudgetRefusals,
        Metric::DiscoveryCooldownHits,
        Metric::DiscoveryNegativeHits,
        Metric::DiscoveryStaleServed,
        Metric::StoreSeconds,
        Metric::StoreErrors,
        Metric::BotVerifications,
    ];

    /// The metric's name, as recorded.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Requests => REQUESTS,
            Metric::VerificationSeconds => VERIFICATION_SECONDS,
            Metric::TokenCacheLookups => TOKEN_CACHE_LOOKUPS,
            Metric::DiscoveryCacheLookups => DISCOVERY_CACHE_LOOKUPS,
            Metric::DiscoveryFetches => DISCOVERY_FETCHES,
            Metric::DiscoveryFailures => DISCOVERY_FAILURES,
            Metric::DiscoveryBudgetRefusals => DISCOVERY_BUDGET_REFUSALS,
            Metric::DiscoveryCooldownHits => DISCOVERY_COOLDOWN_HITS,
            Metric::DiscoveryNegativeHits => DISCOVERY_NEGATIVE_HITS,
            Metric::DiscoveryStaleServed => DISCOVERY_STALE_SERVED,
            Metric::StoreSeconds => STORE_SECONDS,
            Metric::StoreErrors => STORE_ERRORS,
            Metric::BotVerifications => BOT_VERIFICATIONS,
        }
    }

    /// The labels the metric carries (their values are in the table above).
    pub const fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::Requests => &["decision", "code"],
            Metric::VerificationSeconds | Metric::BotVerifications => &["outcome"],
            Metric::TokenCacheLookups | Metric::DiscoveryCacheLookups => &["cache"],
            Metric::DiscoveryFetches => &["document"],
            Metric::StoreSeconds => &["store", "op", "outcome"],
            Metric::StoreErrors => &["store", "op"],
            Metric::DiscoveryFailures
            | Metric::DiscoveryBudgetRefusals
            | Metric::DiscoveryCooldownHits
            | Metric::DiscoveryNegativeHits
            | Metric::DiscoveryStaleServed => &[],
        }
    }

    /// What the metric counts or measures, for the recorder's description.
    pub const fn description(self) -> &'static str {
        match self {
            Metric::Requests => "Requests the AAuth layer answered, by decision and code",
            Metric::VerificationSeconds => "Time to verify a signed request, key fetches and body digest included",
            Metric::TokenCacheLookups => "Lookups of jwt-scheme tokens in the verified-token cache",
            Metric::DiscoveryCacheLookups => "Synchronous lookups in the discovery key cache",
            Metric::DiscoveryFetches => "Discovery documents fetched (attempts)",
            Metric::DiscoveryFailures => "Discovery refreshes that failed",
            Metric::DiscoveryBudgetRefusals => "Fetches for new issuers refused by the discovery budget",
            Metric::DiscoveryCooldownHits => "Unknown kids answered without a fetch within the refresh cooldown",
            Metric::DiscoveryNegativeHits => "Discovery lookups answered from a remembered failure",
            Metric::DiscoveryStaleServed => "Keys served past their freshness while the issuer was unreachable",
            Metric::StoreSeconds => "Time of shared-state operations that waited for a networked store",
            Metric::StoreErrors => "Shared-state operations that answered an error",
            Metric::BotVerifications => "Web Bot Auth signatures verified or refused",
        }
    }

    /// Gives the installed recorder (global, or the thread's local one) every metric's
    /// description and unit. Call it once after installing a recorder; recording works
    /// without it.
    pub fn describe_all() {
        for metric in Metric::ALL {
            let (name, description) = (metric.name(), metric.description());
            match metric {
                Metric::VerificationSeconds | Metric::StoreSeconds => {
                    metrics::describe_histogram!(name, metrics::Unit::Seconds, description);
                }
                _ => metrics::describe_counter!(name, metrics::Unit::Count, description),
            }
        }
    }
}

/// A request's answer: `tower_aauth_requests_total{decision, code}`. `code` is a fixed
/// code (see the table), never text from the request.
pub(crate) fn request(decision: AuditDecision, code: &'static str) {
    metrics::counter!(REQUESTS, "decision" => decision.as_str(), "code" => code).increment(1);
}

/// A signed request's verification ended, `verified` or refused, `started` at the
/// layer's call.
pub(crate) fn verification(started: Instant, verified: bool) {
    let seconds = started.elapsed().as_secs_f64();
    if verified {
        metrics::histogram!(VERIFICATION_SECONDS, "outcome" => "verified").record(seconds);
    } else {
        metrics::histogram!(VERIFICATION_SECONDS, "outcome" => "refused").record(seconds);
    }
}

/// A lookup in the verified-token cache.
pub(crate) fn token_cache(hit: bool) {
    if hit {
        metrics::counter!(TOKEN_CACHE_LOOKUPS, "cache" => "hit").increment(1);
    } else {
        metrics::counter!(TOKEN_CACHE_LOOKUPS, "cache" => "miss").increment(1);
    }
}

/// A Web Bot Auth signature's verification ended, `verified` or refused.
pub(crate) fn bot_verification(verified: bool) {
    if verified {
        metrics::counter!(BOT_VERIFICATIONS, "outcome" => "verified").increment(1);
    } else {
        metrics::counter!(BOT_VERIFICATIONS, "outcome" => "refused").increment(1);
    }
}

/// A synchronous lookup in the discovery cache.
pub(crate) fn discovery_cache(hit: bool) {
    if hit {
        metrics::counter!(DISCOVERY_CACHE_LOOKUPS, "cache" => "hit").increment(1);
    } else {
        metrics::counter!(DISCOVERY_CACHE_LOOKUPS, "cache" => "miss").increment(1);
    }
}

/// A discovery document about to be fetched: the JWKS (`jwks`) or the metadata.
pub(crate) fn discovery_fetch(jwks: bool) {
    if jwks {
        metrics::counter!(DISCOVERY_FETCHES, "document" => "jwks").increment(1);
    } else {
        metrics::counter!(DISCOVERY_FETCHES, "document" => "metadata").increment(1);
    }
}

/// A Web Bot Auth key directory about to be fetched.
pub(crate) fn bot_directory_fetch() {
    metrics::counter!(DISCOVERY_FETCHES, "document" => "bot_directory").increment(1);
}

/// A discovery refresh failed.
pub(crate) fn discovery_failure() {
    metrics::counter!(DISCOVERY_FAILURES).increment(1);
}

/// A new issuer's fetch was refused by the budget.
pub(crate) fn discovery_budget_refusal() {
    metrics::counter!(DISCOVERY_BUDGET_REFUSALS).increment(1);
}

/// An unknown `kid` answered within the refresh cooldown.
pub(crate) fn discovery_cooldown_hit() {
    metrics::counter!(DISCOVERY_COOLDOWN_HITS).increment(1);
}

/// A lookup answered from a remembered failure.
pub(crate) fn discovery_negative_hit() {
    metrics::counter!(DISCOVERY_NEGATIVE_HITS).increment(1);
}

/// A key served past its freshness.
pub(crate) fn discovery_stale_served() {
    metrics::counter!(DISCOVERY_STALE_SERVED).increment(1);
}

/// Which piece of shared state an operation touched (the `store` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// The replay store (requests and single-use grants).
    Replay,
    /// The pending (`202`) records.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    Pending,
    /// The shared policy (revocations, ceilings, key bindings).
    Policy,
}

impl Store {
    const fn as_str(self) -> &'static str {
        match self {
            Store::Replay => "replay",
            Store::Pending => "pending",
            Store::Policy => "policy",
        }
    }
}

/// What an operation did (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Insert-once.
    Insert,
    /// Forget an entry.
    Release,
    /// Read shared state.
    Read,
    /// Change shared state.
    Write,
}

impl Op {
    const fn as_str(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Release => "release",
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// A store operation answered an error.
pub(crate) fn store_error(store: Store, op: Op) {
    metrics::counter!(STORE_ERRORS, "store" => store.as_str(), "op" => op.as_str()).increment(1);
}

/// A store operation that waited ended, `ok` or not, `started` when it was asked.
pub(crate) fn store_waited(store: Store, op: Op, started: Instant, ok: bool) {
    let seconds = started.elapsed().as_secs_f64();
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(STORE_SECONDS, "store" => store.as_str(), "op" => op.as_str(), "outcome" => outcome)
        .record(seconds);
    if !ok {
        store_error(store, op);
    }
}

/// For unit tests: a debugging recorder local to the futures and closures run through it,
/// so that tests running in parallel count only their own calls.
#[cfg(test)]
pub(crate) mod recorded {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll};

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    /// A series' name, labels and counter total.
    type Total = (String, Vec<(String, String)>, u64);

    /// Counts what the code run through [`Recorded::scope`] records.
    pub(crate) struct Recorded {
        recorder: Arc<DebuggingRecorder>,
        snapshotter: Snapshotter,
        /// Counter totals so far, by name and labels (snapshots drain the recorder).
        totals: Mutex<Vec<Total>>,
    }

    impl Recorded {
        pub(crate) fn new() -> Self {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            Recorded {
                recorder: Arc::new(recorder),
                snapshotter,
                totals: Mutex::new(Vec::new()),
            }
        }

        /// `future`, recording into this recorder on whichever thread polls it.
        pub(crate) fn scope<F: Future>(&self, future: F) -> impl Future<Output = F::Output> {
            Scoped {
                recorder: self.recorder.clone(),
                future: Box::pin(future),
            }
        }

        /// The sum of counter `name` over the series carrying every label of `labels`.
        pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
            let mut totals = self.totals.lock().unwrap();
            for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
                if let DebugValue::Counter(n) = value {
                    let key = key.key();
                    let pairs: Vec<(String, String)> = key
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    let name = key.name().to_owned();
                    match totals.iter_mut().find(|(k, l, _)| *k == name && *l == pairs) {
                        Some((_, _, total)) => *total += n,
                        None => totals.push((name, pairs, n)),
                    }
                }
            }
            totals
                .iter()
                .filter(|(k, l, _)| {
                    k == name && labels.iter().all(|(lk, lv)| l.iter().any(|(k, v)| k == lk && v == lv))
                })
                .map(|(_, _, n)| n)
                .sum()
        }
    }

    struct Scoped<F> {
        recorder: Arc<DebuggingRecorder>,
        future: Pin<Box<F>>,
    }

    impl<F: Future> Future for Scoped<F> {
        type Output = F::Output;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            let this = &mut *self;
            metrics::with_local_recorder(&*this.recorder, || this.future.as_mut().poll(cx))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_unique_and_suffixed_by_type() {
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        for metric in Metric::ALL {
            let name = metric.name();
            assert!(name.starts_with("tower_aauth_"), "{name}");
            let histogram = matches!(metric, Metric::VerificationSeconds | Metric::StoreSeconds);
            assert_eq!(name.ends_with("_seconds"), histogram, "{name}");
            assert_eq!(name.ends_with("_total"), !histogram, "{name}");
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
    }
}
