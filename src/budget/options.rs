//! [`BudgetOptions`] and the frozen state the meters share ([`Budgets`]).

use std::sync::Arc;

use serde_json::{Value, json};

use super::claim::{MAX_AMOUNT, MAX_DECIMALS, is_unit};
use super::store::{BudgetStore, MemoryBudgetStore};
use crate::clock::Clock;
use crate::error::ConfigError;

/// Budget configuration ([`AAuthBuilder::budgets`](crate::AAuthBuilder::budgets)): the
/// units published as `budget_units`, the `usage_endpoint`, and where the counters live.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BudgetOptions {
    units: Vec<(String, u32, Option<u64>)>,
    usage_endpoint: Option<String>,
    store: Option<Arc<dyn BudgetStore>>,
    capacity_bytes: Option<usize>,
}

impl std::fmt::Debug for BudgetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetOptions")
            .field("units", &self.units)
            .field("usage_endpoint", &self.usage_endpoint)
            .finish_non_exhaustive()
    }
}

impl BudgetOptions {
    /// No declared unit, no usage endpoint, counters in process (16 MiB).
    pub fn new() -> Self {
        BudgetOptions::default()
    }

    /// Declares a unit in the metadata's `budget_units`, with the scale every budget in
    /// it uses and, when `max` is given, the largest amount one auth token may carry.
    /// Once a unit is declared, every [`AAuth::meter`](crate::AAuth::meter) must price in
    /// a declared unit at its declared scale (it panics otherwise), and the resource tokens
    /// it mints offer at most `max`.
    pub fn unit(mut self, unit: impl Into<String>, decimals: u32, max: Option<u64>) -> Self {
        self.units.push((unit.into(), decimals, max));
        self
    }

    /// The `usage_endpoint` published in the metadata (an `https://` URL). This crate
    /// publishes it; serving usage counters there is the application's.
    pub fn usage_endpoint(mut self, url: impl Into<String>) -> Self {
        self.usage_endpoint = Some(url.into());
        self
    }

    /// Keeps the counters in `store` (shared by replicas: `RedisBudgetStore`).
    pub fn store(mut self, store: impl BudgetStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The byte bound of the default in-process store (default 16 MiB, about 170 000 live
    /// budgets). Counters past their token's `exp` make room; live ones are never evicted
    /// (forgetting one would hand its budget out again), so a store full of live budgets
    /// answers `503` to new ones until some expire.
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity_bytes = Some(bytes);
        self
    }

    /// Checks the options and freezes them.
    pub(crate) fn build(self, clock: Arc<dyn Clock>, allow_http_loopback: bool) -> Result<Budgets, ConfigError> {
        for (i, (unit, decimals, max)) in self.units.iter().enumerate() {
            if !is_unit(unit) {
                return Err(ConfigError::new(format!(
                    "budget unit {unit:?} is not 1 to 32 ASCII letters, digits or \"-_.:/\""
                )));
            }
            if *decimals > MAX_DECIMALS {
                return Err(ConfigError::new(format!(
                    "budget unit {unit:?}: decimals {decimals} is above {MAX_DECIMALS}"
                )));
            }
            if max.is_some_and(|max| max > MAX_AMOUNT) {
                return Err(ConfigError::new(format!(
                    "budget unit {unit:?}: max is above 999999999999999 (15 digits)"
                )));
            }
            if self.units[..i].iter().any(|(other, ..)| other == unit) {
                return Err(ConfigError::new(format!("budget unit {unit:?} is declared twice")));
            }
        }
        if let Some(url) = &self.usage_endpoint {
            let parsed = url::Url::parse(url).ok();
            let loopback = |u: &url::Url| {
                u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
            };
            let valid = parsed.as_ref().is_some_and(|u| {
                (u.scheme() == "https" || (allow_http_loopback && loopback(u)))
                    && u.host_str().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.fragment().is_none()
            });
            if !valid {
                return Err(ConfigError::new(format!(
                    "the usage endpoint {url:?} is not an https:// URL without credentials or fragment"
                )));
            }
        }
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(MemoryBudgetStore::with_clock(
                self.capacity_bytes.unwrap_or(16 * 1024 * 1024),
                clock,
            )),
        };
        Ok(Budgets {
            units: self.units,
            usage_endpoint: self.usage_endpoint,
            store,
        })
    }
}

/// The budget configuration the meters and the metadata read.
pub(crate) struct Budgets {
    units: Vec<(String, u32, Option<u64>)>,
    usage_endpoint: Option<String>,
    pub(crate) store: Arc<dyn BudgetStore>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            units: Vec::new(),
            usage_endpoint: None,
            store: Arc::new(MemoryBudgetStore::default()),
        }
    }
}

impl Budgets {
    /// Whether units are declared; then a price must use one of them.
    pub(crate) fn declares_units(&self) -> bool {
        !self.units.is_empty()
    }

    /// The declared scale and maximum of `unit`, when it is declared.
    pub(crate) fn unit(&self, unit: &str) -> Option<(u32, Option<u64>)> {
        self.units
            .iter()
            .find(|(name, ..)| name == unit)
            .map(|(_, decimals, max)| (*decimals, *max))
    }

    /// The metadata members (`budget_units`, `usage_endpoint`) that are configured.
    pub(crate) fn metadata(&self) -> impl Iterator<Item = (&'static str, Value)> + '_ {
        let units = (!self.units.is_empty()).then(|| {
            let units: Vec<Value> = self
                .units
                .iter()
                .map(|(unit, decimals, max)| match max {
                    Some(max) => json!({ "unit": unit, "decimals": decimals, "max": max }),
                    None => json!({ "unit": unit, "decimals": decimals }),
                })
                .collect();
            ("budget_units", Value::Array(units))
        });
        let endpoint = self
            .usage_endpoint
            .as_ref()
            .map(|url| ("usage_endpoint", Value::String(url.clone())));
        units.into_iter().chain(endpoint)
    }
}
