//! What the crate records through the `metrics` facade, counted by a debugging recorder
//! local to the code run through [`Recorded::scope`] (on whichever thread polls it), so
//! that tests running in parallel count only their own requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// One series with what it recorded since the previous [`Recorded::take`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Sorted by label name.
    pub labels: Vec<(String, String)>,
    /// A counter's increments, or a histogram's number of observations.
    pub count: u64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub struct Recorded {
    recorder: Arc<DebuggingRecorder>,
    snapshotter: Snapshotter,
    /// Everything taken so far (snapshots drain the recorder).
    history: Mutex<Vec<Sample>>,
}

impl Default for Recorded {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorded {
    pub fn new() -> Self {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        Recorded {
            recorder: Arc::new(recorder),
            snapshotter,
            history: Mutex::new(Vec::new()),
        }
    }

    /// `future`, recording into this recorder on whichever thread polls it (wrap spawned
    /// tasks too).
    pub fn scope<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            recorder: self.recorder.clone(),
            future: Box::pin(future),
        }
    }

    /// `f`, recording into this recorder.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The series that recorded something since the previous call, sorted by name and
    /// labels.
    pub fn take(&self) -> Vec<Sample> {
        let mut taken: Vec<Sample> = self
            .snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let count = match value {
                    DebugValue::Counter(n) => n,
                    DebugValue::Histogram(values) => values.len() as u64,
                    DebugValue::Gauge(_) => 1,
                };
                let key = key.key();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                (count > 0).then(|| Sample {
                    name: key.name().to_owned(),
                    labels,
                    count,
                })
            })
            .collect();
        taken.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        self.history.lock().unwrap().extend(taken.iter().cloned());
        taken
    }

    /// Everything recorded so far (including what [`Recorded::take`] already returned).
    pub fn all(&self) -> Vec<Sample> {
        self.take();
        self.history.lock().unwrap().clone()
    }

    /// The total of counter (or observations of histogram) `name` over the series that
    /// carry every label of `labels`, since the start.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.all()
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .map(|s| s.count)
            .sum()
    }
}

/// A future that records into a [`Recorded`] while it is polled.
pub struct Scoped<F> {
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
