//! The boundary of every task a core spawns for a connection or a job:
//! stall detection and panic isolation.
//!
//! A task poll that holds its core longer than [`STALL_BUDGET_MS`] delays
//! every other connection of the core. [`Watched`] wraps a task's future,
//! times each poll, and reports the ones over budget; [`watched`] counts them
//! (`transcribe_reactor_stalls_total`) and logs them with the task's label,
//! so the log says what ran. [`watched`] also catches a panic escaping the
//! task: it is counted (`transcribe_task_panics_total`) and logged, the task
//! ends, and the core goes on with its other tasks.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::unwind::catch_unwind_future;
use super::CoreContext;
use crate::limits::STALL_BUDGET_MS;

/// A future whose polls are timed; `on_stall` hears of each one over budget.
pub struct Watched<F, S> {
    inner: Pin<Box<F>>,
    on_stall: S,
}

impl<F: Future, S: Fn(Duration)> Watched<F, S> {
    pub fn new(future: F, on_stall: S) -> Self {
        Watched {
            inner: Box::pin(future),
            on_stall,
        }
    }
}

impl<F: Future, S: Fn(Duration) + Unpin> Future for Watched<F, S> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Unpin: the inner future is boxed.
        let this = self.get_mut();
        let started = Instant::now();
        let result = this.inner.as_mut().poll(cx);
        let held = started.elapsed();
        if held >= Duration::from_millis(STALL_BUDGET_MS) {
            (this.on_stall)(held);
        }
        result
    }
}

/// Watch `future`, a task of `core` described by `label`: stalls are
/// counted and logged, and a panic ends only this task.
pub fn watched<F: Future<Output = ()>>(
    core: &Rc<CoreContext>,
    label: &'static str,
    future: F,
) -> impl Future<Output = ()> {
    let panics = Rc::clone(core);
    let task = Watched::new(catch_unwind_future(future), stall_reporter(core, label));
    async move {
        if let Err(message) = task.await {
            panics.metrics.count(|c| c.task_panics += 1);
            tracing::error!(core = panics.core_id, task = label, %message, "a task panicked; the core goes on");
        }
    }
}

fn stall_reporter(core: &Rc<CoreContext>, label: &'static str) -> impl Fn(Duration) + Unpin {
    let core = Rc::clone(core);
    move |held: Duration| {
        core.metrics.count(|c| c.reactor_stalls += 1);
        tracing::warn!(
            core = core.core_id,
            task = label,
            held_ms = held.as_secs_f64() * 1000.0,
            budget_ms = STALL_BUDGET_MS,
            "reactor stall: a task held the core"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn only_polls_over_budget_are_reported() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        let stalls = Rc::new(Cell::new(0));
        let counter = Rc::clone(&stalls);
        runtime.block_on(Watched::new(
            async {
                // A well-behaved poll, then one that blocks the thread.
                monoio::time::sleep(Duration::from_millis(1)).await;
                std::thread::sleep(Duration::from_millis(STALL_BUDGET_MS + 5));
            },
            move |held| {
                assert!(held >= Duration::from_millis(STALL_BUDGET_MS));
                counter.set(counter.get() + 1);
            },
        ));
        assert_eq!(stalls.get(), 1);
    }
}
