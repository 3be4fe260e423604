//! `SharedPolicyStore` is a contract any store can meet: two replicas kept in step through
//! an in-memory store written here, outside the crate (no Redis), as through Redis.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, StatusCode};
use support::harness::*;
use tokio::sync::broadcast;
use tower_aauth::BoxFuture;
use tower_aauth::policy::{
    AgentId, BindingWrite, PolicyNotice, PolicyState, PolicySync, PolicyWrite, Revoked, SharedPolicyStore, StoreFailure,
};
use tower_aauth::testing::KeySource;

const AGENT_ID: &str = "aauth:assistant@agent.example";

#[derive(Default)]
struct State {
    version: Option<u64>,
    members: BTreeSet<String>,
    ceilings: Option<String>,
    /// thumbprint → (provider, agent, until, text)
    bindings: BTreeMap<String, (String, String, u64, String)>,
}

/// One store shared by every replica of a test; each replica holds its own handle (its own
/// notice receiver).
struct MemoryStore {
    state: Arc<Mutex<State>>,
    notices: broadcast::Sender<PolicyNotice>,
    receiver: tokio::sync::Mutex<broadcast::Receiver<PolicyNotice>>,
    down: Arc<AtomicBool>,
}

impl MemoryStore {
    fn handle(&self) -> MemoryStore {
        MemoryStore {
            state: self.state.clone(),
            notices: self.notices.clone(),
            receiver: tokio::sync::Mutex::new(self.notices.subscribe()),
            down: self.down.clone(),
        }
    }

    fn new() -> MemoryStore {
        let (notices, receiver) = broadcast::channel(1024);
        MemoryStore {
            state: Arc::default(),
            notices,
            receiver: tokio::sync::Mutex::new(receiver),
            down: Arc::default(),
        }
    }

    fn up(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreFailure> {
        if self.down.load(Ordering::SeqCst) {
            return Err("the store is down".into());
        }
        Ok(self.state.lock().unwrap())
    }
}

impl SharedPolicyStore for MemoryStore {
    fn write<'a>(&'a self, write: &'a PolicyWrite) -> BoxFuture<'a, Result<(), StoreFailure>> {
        Box::pin(async move {
            {
                let mut state = self.up()?;
                if write.clear {
                    state.members.clear();
                }
                for member in &write.remove {
                    state.members.remove(member);
                }
                state.members.extend(write.add.iter().cloned());
                if let Some(document) = &write.ceilings
                    && (!write.ceilings_only_if_absent || state.ceilings.is_none())
                {
                    state.ceilings = Some(document.clone());
                }
                state.version = Some(state.version.unwrap_or(0) + write.version_step);
            }
            let _ = self.notices.send(PolicyNotice::Changed);
            Ok(())
        })
    }

    fn version(&self) -> BoxFuture<'_, Result<Option<u64>, StoreFailure>> {
        Box::pin(async move { Ok(self.up()?.version) })
    }

    fn read(&self) -> BoxFuture<'_, Result<PolicyState, StoreFailure>> {
        Box::pin(async move {
            let state = self.up()?;
            Ok(PolicyState::new(
                state.version,
                state.members.iter().cloned().collect(),
                state.ceilings.clone(),
            ))
        })
    }

    fn write_bindings<'a>(
        &'a self,
        bindings: &'a [BindingWrite],
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<Option<String>>, StoreFailure>> {
        Box::pin(async move {
            let mut replies = Vec::new();
            let mut written = Vec::new();
            {
                let mut state = self.up()?;
                for binding in bindings {
                    let live = state
                        .bindings
                        .get(&binding.thumbprint)
                        .filter(|(.., until, _)| *until > now);
                    match live {
                        Some((provider, agent, _, text)) if !binding.same_agent(provider, agent) => {
                            replies.push(Some(text.clone()));
                            continue;
                        }
                        Some((_, _, until, _)) if *until >= binding.until => {}
                        _ => {
                            state.bindings.insert(
                                binding.thumbprint.clone(),
                                (
                                    binding.provider.clone(),
                                    binding.agent.clone(),
                                    binding.until,
                                    binding.text.clone(),
                                ),
                            );
                            written.push(binding.text.clone());
                        }
                    }
                    replies.push(None);
                }
            }
            for text in written {
                let _ = self.notices.send(PolicyNotice::Binding(text));
            }
            Ok(replies)
        })
    }

    fn read_bindings(&self, now: u64, max: usize) -> BoxFuture<'_, Result<Vec<String>, StoreFailure>> {
        Box::pin(async move {
            let mut state = self.up()?;
            state.bindings.retain(|_, (.., until, _)| *until > now);
            Ok(state
                .bindings
                .values()
                .map(|(.., text)| text.clone())
                .take(max)
                .collect())
        })
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<(), StoreFailure>> {
        Box::pin(async move { self.up().map(|_| ()) })
    }

    fn notice(&self) -> BoxFuture<'_, PolicyNotice> {
        Box::pin(async move {
            match self.receiver.lock().await.recv().await {
                Ok(notice) => notice,
                Err(broadcast::error::RecvError::Lagged(_)) => PolicyNotice::Lost,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        })
    }
}

async fn replica(store: &MemoryStore) -> (Harness, PolicySync) {
    let harness = Harness::new();
    let sync = PolicySync::builder()
        .poll_interval(Duration::from_millis(100))
        .max_staleness(Duration::from_millis(600))
        .operation_timeout(Duration::from_millis(100))
        .agent_bindings(harness.aauth.agent_bindings(), harness.aauth.clock())
        .start(
            store.handle(),
            harness.aauth.revocations(),
            harness.aauth.scope_ceilings(),
        )
        .await
        .expect("valid options");
    (harness, sync)
}

fn signed(harness: &Harness, source: KeySource) -> Request<Body> {
    let mut request = Request::get(format!("{RESOURCE}/data")).body(Body::empty()).unwrap();
    harness.agent.sign(&mut request, &source, NOW);
    request
}

fn as_agent(harness: &Harness) -> Request<Body> {
    let token = harness
        .agent_provider
        .agent_token(AGENT_ID, &harness.agent.public_jwk(), NOW);
    signed(harness, KeySource::Jwt(token))
}

fn with_grant(harness: &Harness) -> Request<Body> {
    signed(harness, KeySource::Jwt(harness.auth_token("data.read")))
}

/// The status `harness` answers `make()` with once it is `status`, within one second.
async fn until_status(harness: &Harness, status: StatusCode, make: impl Fn(&Harness) -> Request<Body>) {
    let started = Instant::now();
    loop {
        let answer = harness.send(make(harness)).await.status();
        if answer == status {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still {answer}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_and_a_key_binding_travel_through_a_store_written_outside_the_crate() {
    let store = MemoryStore::new();
    let (a, _sync_a) = replica(&store).await;
    let (b, _sync_b) = replica(&store).await;
    assert_eq!(a.send(as_agent(&a)).await.status(), StatusCode::OK);
    let agent: AgentId = AGENT_ID.parse().unwrap();
    // Revoking the agent names it: its key's binding is pinned and shared.
    a.aauth.revocations().revoke(Revoked::Agent(agent)).unwrap();
    // Replica B never saw the agent: it learns the key's agent and the revocation from
    // the store, and refuses the agent's grant.
    until_status(&b, StatusCode::UNAUTHORIZED, with_grant).await;
    assert_eq!(store.state.lock().unwrap().members.len(), 1);
    assert_eq!(store.state.lock().unwrap().bindings.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_closes_the_replica_after_the_staleness_bound_and_reopens_it() {
    let store = MemoryStore::new();
    let (a, _sync_a) = replica(&store).await;
    assert_eq!(a.send(with_grant(&a)).await.status(), StatusCode::OK);
    store.down.store(true, Ordering::SeqCst);
    until_status(&a, StatusCode::SERVICE_UNAVAILABLE, with_grant).await;
    let refused = a.send(with_grant(&a)).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(refused.headers().get("signature-error").is_none());
    store.down.store(false, Ordering::SeqCst);
    until_status(&a, StatusCode::OK, with_grant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_emptied_behind_the_replicas_backs_is_refilled_and_nothing_revoked_is_lifted() {
    let store = MemoryStore::new();
    let (a, _sync_a) = replica(&store).await;
    let agent: AgentId = AGENT_ID.parse().unwrap();
    a.aauth.revocations().revoke(Revoked::Agent(agent)).unwrap();
    until_status(&a, StatusCode::UNAUTHORIZED, as_agent).await;
    let started = Instant::now();
    while store.state.lock().unwrap().version.is_none() {
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    *store.state.lock().unwrap() = State::default();
    let started = Instant::now();
    while store.state.lock().unwrap().members.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(1), "the store was not refilled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(a.send(as_agent(&a)).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_queued_during_an_outage_never_hides_that_the_store_came_back_empty() {
    // Seen version 1; the store restarts empty while a write waits. Published first, that
    // write would start the version again at 1, equal to the one seen, and nothing would
    // put back what the store lost.
    let store = MemoryStore::new();
    let (a, _sync_a) = replica(&store).await;
    let first = Revoked::Agent(AGENT_ID.parse().unwrap());
    a.aauth.revocations().revoke(first).unwrap();
    let started = Instant::now();
    while store.state.lock().unwrap().version != Some(1) {
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    store.down.store(true, Ordering::SeqCst);
    let queued = Revoked::KeyThumbprint("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".to_owned());
    a.aauth.revocations().revoke(queued).unwrap();
    *store.state.lock().unwrap() = State::default();
    store.down.store(false, Ordering::SeqCst);
    let started = Instant::now();
    while store.state.lock().unwrap().members.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the store lost the first revocation: {:?}",
            store.state.lock().unwrap().members
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
