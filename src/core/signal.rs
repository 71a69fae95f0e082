//! Core-local wake-ups between tasks.
//!
//! [`DrainSignal`] is a one-way broadcast: once triggered it stays triggered
//! and wakes every waiter. The core's drain uses it (connections waiting for
//! their next request await it, so a drain closes idle keep-alive connections
//! at once), and so do WebSocket connections for "closing" and "kill".
//! [`Notify`] wakes one waiting task and remembers a wake-up that came while
//! nobody waited.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The signal. Cheap to clone (an `Rc`); never crosses threads.
#[derive(Clone, Default)]
pub struct DrainSignal {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: Cell<bool>,
    next_waiter_id: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl DrainSignal {
    /// Fire the signal and wake every waiter. Idempotent.
    pub fn trigger(&self) {
        self.inner.triggered.set(true);
        let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
        for waker in waiters.into_values() {
            waker.wake();
        }
    }

    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.get()
    }

    /// A future that completes once the signal has fired.
    pub fn wait(&self) -> DrainWait {
        let id = self.inner.next_waiter_id.get();
        self.inner.next_waiter_id.set(id + 1);
        DrainWait {
            inner: Rc::clone(&self.inner),
            id,
        }
    }
}

/// Completes when the drain signal fires. Unregisters itself when dropped, so
/// waiters that give up leave nothing behind.
pub struct DrainWait {
    inner: Rc<Inner>,
    id: u64,
}

impl Future for DrainWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.triggered.get() {
            return Poll::Ready(());
        }
        self.inner
            .waiters
            .borrow_mut()
            .insert(self.id, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for DrainWait {
    fn drop(&mut self) {
        self.inner.waiters.borrow_mut().remove(&self.id);
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_complete_after_the_trigger_and_unregister_when_dropped() {
        let mut runtime = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let drain = DrainSignal::default();
            let abandoned = drain.wait();
            drop(abandoned);
            assert!(drain.inner.waiters.borrow().is_empty());
            let waiter = monoio::spawn({
                let drain = drain.clone();
                async move { drain.wait().await }
            });
            monoio::time::sleep(std::time::Duration::from_millis(1)).await;
            assert!(!drain.is_triggered());
            drain.trigger();
            waiter.await;
            assert!(drain.is_triggered());
            // After the trigger a new waiter completes at once.
            drain.wait().await;
        });
    }
}
