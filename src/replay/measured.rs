//! The replay store the layer uses: the configured one, measured (errors of every
//! operation; the time of operations that wait for I/O), for any implementation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::key::ReplayKey;
use super::store::{Insertion, ReplayStore};
use crate::error::Error;
use crate::future::BoxFuture;
use crate::metrics::{Op, Store};

/// Wraps the configured store; answers exactly what it answers.
pub(crate) struct Measured(pub(crate) Arc<dyn ReplayStore>);

fn counted<T>(answer: Option<Result<T, Error>>, op: Op) -> Option<Result<T, Error>> {
    if let Some(Err(_)) = &answer {
        crate::metrics::store_error(Store::Replay, op);
    }
    answer
}

impl ReplayStore for Measured {
    fn try_insert(&self, key: &ReplayKey, ttl: Duration) -> Option<Result<Insertion, Error>> {
        counted(self.0.try_insert(key, ttl), Op::Insert)
    }

    fn insert(&self, key: ReplayKey, ttl: Duration) -> BoxFuture<'_, Result<Insertion, Error>> {
        let started = Instant::now();
        let insert = self.0.insert(key, ttl);
        Box::pin(async move {
            let answer = insert.await;
            crate::metrics::store_waited(Store::Replay, Op::Insert, started, answer.is_ok());
            answer
        })
    }

    fn try_release(&self, key: &ReplayKey) -> Option<Result<(), Error>> {
        counted(self.0.try_release(key), Op::Release)
    }

    fn release(&self, key: ReplayKey) -> BoxFuture<'_, Result<(), Error>> {
        let started = Instant::now();
        let release = self.0.release(key);
        Box::pin(async move {
            let answer = release.await;
            crate::metrics::store_waited(Store::Replay, Op::Release, started, answer.is_ok());
            answer
        })
    }
}
