//! Stall detection for one future: [`Watched`] times each poll and reports
//! the ones that held the thread for longer than a budget. On a
//! thread-per-core runtime such a poll delays every other task of the core;
//! the caller decides how to count and log it (`core::task::watched`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A future whose polls are timed; `on_stall` hears of each one over budget.
pub struct Watched<F, S> {
    inner: Pin<Box<F>>,
    budget: Duration,
    on_stall: S,
}

impl<F: Future, S: Fn(Duration)> Watched<F, S> {
    /// Time every poll of `future`; `on_stall` hears of each that held the
    /// thread for `budget` or longer.
    pub fn new(future: F, budget: Duration, on_stall: S) -> Self {
        Watched {
            inner: Box::pin(future),
            budget,
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
        if held >= this.budget {
            (this.on_stall)(held);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The budget the server runs with (`limits::STALL_BUDGET_MS`).
    const STALL_BUDGET_MS: u64 = 10;
    use std::cell::Cell;
    use std::rc::Rc;

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
            Duration::from_millis(STALL_BUDGET_MS),
            move |held| {
                assert!(held >= Duration::from_millis(STALL_BUDGET_MS));
                counter.set(counter.get() + 1);
            },
        ));
        assert_eq!(stalls.get(), 1);
    }
}
