//! Counters for discovery, and safe display of attacker-supplied strings in logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most issuers tracked individually; the per-issuer map must not grow with the number
/// of identifiers callers invent.
const MAX_TRACKED_ISSUERS: usize = 1024;

/// Discovery counters. Cheap atomics; read them in tests and export them to metrics.
#[derive(Debug, Default)]
pub struct DiscoveryMetrics {
    metadata_fetches: AtomicU64,
    jwks_fetches: AtomicU64,
    failed_refreshes: AtomicU64,
    cooldown_hits: AtomicU64,
    negative_hits: AtomicU64,
    stale_served: AtomicU64,
    budget_refusals: AtomicU64,
    per_issuer: Mutex<HashMap<String, u64>>,
}

impl DiscoveryMetrics {
    /// Metadata documents fetched (attempts, successful or not).
    pub fn metadata_fetches(&self) -> u64 {
        self.metadata_fetches.load(Ordering::Relaxed)
    }

    /// JWKS documents fetched (attempts).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks_fetches.load(Ordering::Relaxed)
    }

    /// Documents (metadata + JWKS) fetched for `issuer`; 0 for issuers beyond the first
    /// 1024 tracked.
    pub fn fetches_for(&self, issuer: &str) -> u64 {
        self.per_issuer
            .lock()
            .map(|map| map.get(issuer).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Refreshes that failed (transport or validation).
    pub fn failed_refreshes(&self) -> u64 {
        self.failed_refreshes.load(Ordering::Relaxed)
    }

    /// Unknown `kid`s answered without a fetch because the issuer was refreshed recently.
    pub fn cooldown_hits(&self) -> u64 {
        self.cooldown_hits.load(Ordering::Relaxed)
    }

    /// Requests answered from a cached failure.
    pub fn negative_hits(&self) -> u64 {
        self.negative_hits.load(Ordering::Relaxed)
    }

    /// Keys served past their freshness because the issuer could not be reached.
    pub fn stale_served(&self) -> u64 {
        self.stale_served.load(Ordering::Relaxed)
    }

    /// Fetches for new issuers refused by the global budget.
    pub fn budget_refusals(&self) -> u64 {
        self.budget_refusals.load(Ordering::Relaxed)
    }

    pub(crate) fn fetched(&self, issuer: &str, jwks: bool) {
        let counter = if jwks {
            &self.jwks_fetches
        } else {
            &self.metadata_fetches
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut map) = self.per_issuer.lock() {
            if let Some(count) = map.get_mut(issuer) {
                *count += 1;
            } else if map.len() < MAX_TRACKED_ISSUERS {
                map.insert(issuer.to_owned(), 1);
            }
        }
    }

    pub(crate) fn failed(&self) {
        self.failed_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cooldown_hit(&self) {
        self.cooldown_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn negative_hit(&self) {
        self.negative_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stale(&self) {
        self.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn budget_refused(&self) {
        self.budget_refusals.fetch_add(1, Ordering::Relaxed);
    }
}

/// Displays an attacker-supplied string for a log line: escaped (no raw CR/LF or other
/// control characters, no non-ASCII) and truncated to 128 characters.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const LIMIT: usize = 128;
        for c in self.0.chars().take(LIMIT) {
            write!(f, "{}", c.escape_default())?;
        }
        if self.0.chars().nth(LIMIT).is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_and_truncates() {
        assert_eq!(Shown("a\r\nb").to_string(), "a\\r\\nb");
        assert_eq!(Shown(&"x".repeat(200)).to_string(), format!("{}…", "x".repeat(128)));
    }

    #[test]
    fn per_issuer_map_is_bounded() {
        let metrics = DiscoveryMetrics::default();
        for i in 0..MAX_TRACKED_ISSUERS + 10 {
            metrics.fetched(&format!("https://i{i}.example"), false);
        }
        assert_eq!(metrics.per_issuer.lock().unwrap().len(), MAX_TRACKED_ISSUERS);
        assert_eq!(metrics.metadata_fetches(), (MAX_TRACKED_ISSUERS + 10) as u64);
    }
}
