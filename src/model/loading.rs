//! Where the model pool's model stands while it loads: the loader thread
//! hands the weights to the workers through [`Loading`], each worker reports
//! when it has made its engine, and readiness ([`ModelState`]) is read from
//! it. Split from `pool.rs`, which owns the queues and the workers.

use std::sync::{Arc, Condvar, Mutex};

use super::SpeechModel;

/// Where the pool's model stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// The weights or some worker's engine state are still being made.
    Loading,
    /// Every worker has its engine.
    Ready,
    /// The model or a worker's engine could not be made; every job fails.
    Failed,
}

/// The loaded model, handed from the loader thread to the workers, and how
/// many workers have made their engine.
pub(super) struct Loading {
    inner: Mutex<LoadingInner>,
    changed: Condvar,
}

pub(super) struct LoadingInner {
    model: Option<Result<Arc<dyn SpeechModel>, String>>,
    workers_pending: usize,
    worker_error: Option<String>,
}

impl Loading {
    pub(super) fn new(workers: usize) -> Loading {
        Loading {
            inner: Mutex::new(LoadingInner {
                model: None,
                workers_pending: workers,
                worker_error: None,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoadingInner> {
        // The lock guards plain data that no panic leaves half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn set_model(&self, model: Result<Arc<dyn SpeechModel>, String>) {
        self.lock().model = Some(model);
        self.changed.notify_all();
    }

    /// Block until the loader is done: the model, or why there is none.
    pub(super) fn wait_model(&self) -> Result<Arc<dyn SpeechModel>, String> {
        self.wait_for(|inner| inner.model.clone())
    }

    /// Block until `settled` gives an answer; it is asked at every change.
    pub(super) fn wait_for<T>(&self, settled: impl Fn(&LoadingInner) -> Option<T>) -> T {
        let mut inner = self.lock();
        loop {
            if let Some(answer) = settled(&inner) {
                return answer;
            }
            inner = self
                .changed
                .wait(inner)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// A worker has made its engine (or failed to: `error`).
    pub(super) fn worker_settled(&self, error: Option<String>) {
        let mut inner = self.lock();
        inner.workers_pending = inner.workers_pending.saturating_sub(1);
        if inner.worker_error.is_none() {
            inner.worker_error = error;
        }
        if Loading::state_of(&inner) == ModelState::Ready {
            tracing::info!("the model is ready in every worker");
        }
        drop(inner);
        self.changed.notify_all();
    }

    pub(super) fn state_of(inner: &LoadingInner) -> ModelState {
        match &inner.model {
            Some(Err(_)) => ModelState::Failed,
            _ if inner.worker_error.is_some() => ModelState::Failed,
            Some(Ok(_)) if inner.workers_pending == 0 => ModelState::Ready,
            _ => ModelState::Loading,
        }
    }

    /// Whether the loaded model is multilingual; `None` until it has loaded.
    pub(super) fn is_multilingual(&self) -> Option<bool> {
        match &self.lock().model {
            Some(Ok(model)) => Some(model.is_multilingual()),
            _ => None,
        }
    }

    pub(super) fn state(&self) -> ModelState {
        Loading::state_of(&self.lock())
    }

    pub(super) fn error(&self) -> Option<String> {
        let inner = self.lock();
        match &inner.model {
            Some(Err(error)) => Some(error.clone()),
            _ => inner.worker_error.clone(),
        }
    }

    pub(super) fn wait_settled(&self) -> ModelState {
        self.wait_for(|inner| {
            Some(Loading::state_of(inner)).filter(|state| *state != ModelState::Loading)
        })
    }
}
