//! A one-waiter, thread-local wake-up: [`Notify`] wakes the task waiting on
//! it and remembers a wake-up that came while nobody waited. A streaming
//! connection's writer waits on one; so does a core's retry of finals.

use std::cell::{Cell, RefCell};
use std::task::{Poll, Waker};

/// Wakes a single waiting task; a notification sent while nobody waits is
/// kept for the next wait.
#[derive(Default)]
pub struct Notify {
    notified: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.notified.set(true);
        if let Some(waker) = self.waker.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Completes at the next notification (or at once if one is pending).
    pub async fn notified(&self) {
        std::future::poll_fn(|cx| {
            if self.notified.replace(false) {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
