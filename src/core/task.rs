//! The boundary of every task a core spawns for a connection or a job:
//! stall detection and panic isolation.
//!
//! A task poll that holds its core longer than [`STALL_BUDGET_MS`] delays
//! every other connection of the core. [`Watched`] (from `rt`) wraps a task's
//! future, times each poll, and reports the ones over budget; [`watched`] counts them
//! (`transcribe_reactor_stalls_total`) and logs them with the task's label,
//! so the log says what ran. [`watched`] also catches a panic escaping the
//! task: it is counted (`transcribe_task_panics_total`) and logged, the task
//! ends, and the core goes on with its other tasks.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use super::CoreContext;
use crate::limits::STALL_BUDGET_MS;
use crate::rt::{catch_unwind_future, Watched};

/// Watch `future`, a task of `core` described by `label`: stalls are
/// counted and logged, and a panic ends only this task.
pub fn watched<F: Future<Output = ()>>(
    core: &Rc<CoreContext>,
    label: &'static str,
    future: F,
) -> impl Future<Output = ()> {
    let panics = Rc::clone(core);
    let task = Watched::new(
        catch_unwind_future(future),
        Duration::from_millis(STALL_BUDGET_MS),
        stall_reporter(core, label),
    );
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
