//! The operations configuration of `examples/resource_server.rs` for revocations, scope
//! ceilings and the shared Redis (`AAUTH_REDIS_URL`, `AAUTH_REVOCATIONS`,
//! `AAUTH_CEILINGS`); the example's header documents them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tower_aauth::AAuth;
use tower_aauth::budget::BudgetOptions;
use tower_aauth::replay::ReplayOptions;

/// How often a policy file is checked for a change.
const FILE_POLL: Duration = Duration::from_millis(250);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The replay options for `AAUTH_REDIS_URL` (the shared store), or `None` without it.
pub async fn replay_options() -> Result<Option<ReplayOptions>, String> {
    let Some(url) = env("AAUTH_REDIS_URL") else {
        return Ok(None);
    };
    #[cfg(feature = "redis")]
    {
        let store = tower_aauth::replay::RedisReplayStore::connect(url)
            .await
            .map_err(|e| format!("AAUTH_REDIS_URL: {e}"))?;
        Ok(Some(ReplayOptions::new().store(store)))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err("AAUTH_REDIS_URL needs the redis feature: cargo run --features redis --example resource_server".to_owned())
    }
}

/// Deferred delivery: held requests in Redis with `AAUTH_REDIS_URL` (a poll may reach any
/// replica), else in this process.
pub async fn deferred_options() -> Result<tower_aauth::DeferredOptions, String> {
    let options = tower_aauth::DeferredOptions::new();
    let Some(url) = env("AAUTH_REDIS_URL") else {
        return Ok(options);
    };
    #[cfg(feature = "redis")]
    {
        let store = tower_aauth::RedisPendingStore::builder(url)
            .connect()
            .await
            .map_err(|e| format!("AAUTH_REDIS_URL: {e}"))?;
        Ok(options.store(store))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err("AAUTH_REDIS_URL needs the redis feature: cargo run --features redis --example resource_server".to_owned())
    }
}

/// The budgets of the metered `GET /report`: `USD` at 6 decimals, resource tokens offer
/// at most 1 USD; with `AAUTH_REDIS_URL` the counters live in the shared Redis, so that a
/// budget is spent once across the fleet, not once per replica.
pub async fn budget_options() -> Result<BudgetOptions, String> {
    let options = BudgetOptions::new().unit("USD", 6, Some(1_000_000));
    let Some(url) = env("AAUTH_REDIS_URL") else {
        return Ok(options);
    };
    #[cfg(feature = "redis")]
    {
        let store = tower_aauth::budget::RedisBudgetStore::connect(url)
            .await
            .map_err(|e| format!("AAUTH_REDIS_URL: {e}"))?;
        Ok(options.store(store))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = url;
        Err("AAUTH_REDIS_URL needs the redis feature: cargo run --features redis --example resource_server".to_owned())
    }
}

/// What keeps the policy current: the Redis sync, if any (the file watchers run on their
/// own tasks).
pub struct Policy {
    #[cfg(feature = "redis")]
    _sync: Option<tower_aauth::policy::RedisPolicySync>,
}

/// Starts the Redis sync (with `AAUTH_REDIS_URL`) and loads and watches the policy files.
/// A malformed file at start is an error; later, a malformed file is logged and the
/// policy in force stays.
pub async fn start(aauth: &AAuth) -> Result<Policy, String> {
    #[cfg(feature = "redis")]
    let sync = match env("AAUTH_REDIS_URL") {
        Some(url) => Some(
            tower_aauth::policy::RedisPolicySync::builder(url)
                .agent_bindings(aauth.agent_bindings(), aauth.clock())
                .start(aauth.revocations(), aauth.scope_ceilings())
                .await
                .map_err(|e| format!("AAUTH_REDIS_URL: {e}"))?,
        ),
        None => None,
    };
    if let Some(path) = env("AAUTH_REVOCATIONS") {
        let revocations = aauth.revocations().clone();
        #[cfg(feature = "redis")]
        let sync = sync.clone();
        // With Redis the file is this replica's local layer, enforced with the shared set;
        // without, it is the whole set.
        let apply = move |bytes: &[u8]| -> Result<usize, String> {
            #[cfg(feature = "redis")]
            if let Some(sync) = &sync {
                return sync.local_revocations_json(bytes).map_err(|e| e.to_string());
            }
            revocations.reload_json(bytes).map_err(|e| e.to_string())
        };
        watch("AAUTH_REVOCATIONS", PathBuf::from(path), apply).await?;
    }
    if let Some(path) = env("AAUTH_CEILINGS") {
        // With Redis this publishes the document to every replica.
        let ceilings = aauth.scope_ceilings().clone();
        let apply = move |bytes: &[u8]| -> Result<usize, String> {
            ceilings.reload_json(bytes).map(|()| 1).map_err(|e| e.to_string())
        };
        watch("AAUTH_CEILINGS", PathBuf::from(path), apply).await?;
    }
    Ok(Policy {
        #[cfg(feature = "redis")]
        _sync: sync,
    })
}

/// What tells a changed file: its modification time and length.
fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Applies the file at `path` now (an error stops the start), then checks it every 250 ms
/// and applies each changed content (an error is logged; what is in force stays).
async fn watch(
    name: &'static str,
    path: PathBuf,
    apply: impl Fn(&[u8]) -> Result<usize, String> + Send + 'static,
) -> Result<(), String> {
    let mut seen = stamp(&path);
    let mut content = std::fs::read(&path).map_err(|e| format!("{name}: cannot read {}: {e}", path.display()))?;
    let loaded = apply(&content).map_err(|e| format!("{name}: {e}"))?;
    eprintln!("resource_server: {name}: {} loaded ({loaded} entries)", path.display());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FILE_POLL).await;
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            let Ok(bytes) = std::fs::read(&path) else {
                tracing::error!(file = %path.display(), "{name}: cannot read the file; the policy in force stays");
                continue;
            };
            if bytes == content {
                continue;
            }
            match apply(&bytes) {
                Ok(loaded) => tracing::info!(file = %path.display(), loaded, "{name}: reloaded"),
                Err(error) => {
                    tracing::error!(file = %path.display(), %error, "{name}: not applied; the policy in force stays")
                }
            }
            content = bytes;
        }
    });
    Ok(())
}
