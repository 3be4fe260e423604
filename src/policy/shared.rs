//! The link between a hot-reloadable policy handle ([`Revocations`](super::Revocations),
//! [`ScopeCeilings`](super::ScopeCeilings)) and a component that keeps it in step with
//! other replicas (`RedisPolicySync`, feature `redis`).
//!
//! A link carries two things:
//!
//! * **The freshness gate.** While no sync is attached the gate is open and costs one
//!   relaxed atomic load per request. Once one is attached, the handle's snapshot is
//!   trusted only for `max_staleness` after the sync last confirmed it current; past that
//!   the layer answers `503` with `Retry-After: 1` (fail closed: a revocation written
//!   through another replica may be missing from this one's snapshot). An attached link
//!   starts stale, so a replica that never reached the shared store serves no verified
//!   request.
//! * **The outbox.** Writes through the handle's API apply to the local snapshot at once
//!   and, while a sync is attached, queue for publication; the sync removes them only
//!   once the shared store acknowledged them, so a write made while the store is down is
//!   published when it returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::error::Error;

/// The most writes a handle queues while the shared store does not acknowledge them; one
/// more is refused (an error, and nothing changes).
pub(crate) const MAX_PENDING: usize = 100_000;

/// Milliseconds as the gate counts them (saturating).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A handle's link to a sync: the freshness gate and the outbox `S` (`None` while no sync
/// is attached).
pub(crate) struct Link<S> {
    /// The longest the snapshot is trusted unconfirmed, in ms; 0 while no sync is attached.
    max_staleness_ms: AtomicU64,
    /// 1 + ms after `base` at which the sync last confirmed the snapshot current; 0: never.
    confirmed_ms: AtomicU64,
    base: Instant,
    outbox: Mutex<Option<S>>,
    /// Wakes the sync when a write is queued.
    pub(crate) wake: Notify,
}

impl<S> Default for Link<S> {
    fn default() -> Self {
        Link {
            max_staleness_ms: AtomicU64::new(0),
            confirmed_ms: AtomicU64::new(0),
            base: Instant::now(),
            outbox: Mutex::new(None),
            wake: Notify::new(),
        }
    }
}

impl<S> Link<S> {
    /// The outbox, locked (a poisoned lock is taken over: every writer leaves it whole).
    pub(crate) fn outbox(&self) -> MutexGuard<'_, Option<S>> {
        self.outbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a sync is attached.
    pub(crate) fn attached(&self) -> bool {
        self.outbox().is_some()
    }

    /// Attaches a sync: installs `outbox` and closes the gate until the first
    /// confirmation. `false` (and nothing changes) when one is attached already.
    pub(crate) fn attach(&self, outbox: S, max_staleness: Duration) -> bool {
        let mut slot = self.outbox();
        if slot.is_some() {
            return false;
        }
        *slot = Some(outbox);
        self.confirmed_ms.store(0, Ordering::Release);
        self.max_staleness_ms
            .store(millis(max_staleness).max(1), Ordering::Release);
        true
    }

    /// The sync read the shared store: the snapshot is current as of now.
    pub(crate) fn confirm(&self) {
        let now = millis(self.base.elapsed()).saturating_add(1);
        self.confirmed_ms.store(now, Ordering::Release);
    }

    /// `503` with `Retry-After: 1` when a sync is attached and has not confirmed the
    /// snapshot within the staleness bound.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let max = self.max_staleness_ms.load(Ordering::Relaxed);
        if max == 0 {
            return Ok(());
        }
        let confirmed = self.confirmed_ms.load(Ordering::Acquire);
        let now = millis(self.base.elapsed()).saturating_add(1);
        if confirmed == 0 || now.saturating_sub(confirmed) > max {
            return Err(Error(crate::error::Kind::Unavailable {
                retry_after: 1,
                detail: "the shared revocations and scope ceilings could not be confirmed current",
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_is_open_until_a_sync_attaches_then_closed_until_confirmed() {
        let link: Link<()> = Link::default();
        assert!(link.check().is_ok());
        assert!(link.attach((), Duration::from_millis(50)));
        assert!(!link.attach((), Duration::from_millis(50)), "one sync per handle");
        let refused = link.check().unwrap_err();
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        link.confirm();
        assert!(link.check().is_ok());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            link.check().unwrap_err().status(),
            http::StatusCode::SERVICE_UNAVAILABLE
        );
        link.confirm();
        assert!(link.check().is_ok());
    }
}
