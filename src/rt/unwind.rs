//! Panic isolation at task boundaries. A bug reached by one request must cost
//! that request (or session), not the core and every other connection on it.
//! [`CatchUnwind`] polls a future inside `catch_unwind`; a panic becomes an
//! `Err` with the panic's message, the future is dropped, and the caller
//! answers `internal`.
//!
//! State touched by the panicking poll is core-local (`RefCell`s release their
//! borrows while unwinding); what the caller does next — answer 500, close the
//! WebSocket with 1011, drop the session from the shard — leaves the core in
//! a consistent state.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future that turns a panic in `inner` into `Err(message)`.
pub struct CatchUnwind<F> {
    inner: Option<Pin<Box<F>>>,
}

/// Wrap `future` so that a panic inside it is returned, not propagated.
pub fn catch_unwind_future<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind {
        inner: Some(Box::pin(future)),
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Unpin: the inner future is boxed.
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err("polled after a panic".to_string()));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => {
                this.inner = None;
                Poll::Ready(Err(panic_message(panic.as_ref())))
            }
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_normal_output_passes_through() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let ok = catch_unwind_future(async { 7 }).await;
            assert_eq!(ok, Ok(7));
            let failed = catch_unwind_future(async {
                monoio::time::sleep(std::time::Duration::from_millis(1)).await;
                if ok.is_ok() {
                    panic!("boom");
                }
                1
            })
            .await;
            assert_eq!(failed, Err("boom".to_string()));
        });
    }
}
