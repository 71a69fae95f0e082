//! A one-way, thread-local broadcast between tasks.
//!
//! [`Latch`] is a one-way broadcast: once triggered it stays triggered and
//! wakes every waiter. A core's drain is one (connections waiting for their
//! next request await it, so a drain closes idle keep-alive connections at
//! once), and so are a streaming connection's "closing" and "kill" and a
//! session's "over". (One waiter woken at a time: [`super::Notify`].)

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// The latch. Cheap to clone (an `Rc`); never crosses threads.
#[derive(Clone, Default)]
pub struct Latch {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    triggered: Cell<bool>,
    next_waiter_id: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl Latch {
    /// Fire the latch and wake every waiter. Idempotent.
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

    /// A future that completes once the latch has fired.
    pub fn wait(&self) -> LatchWait {
        let id = self.inner.next_waiter_id.get();
        self.inner.next_waiter_id.set(id + 1);
        LatchWait {
            inner: Rc::clone(&self.inner),
            id,
        }
    }
}

/// Completes when the latch fires. Unregisters itself when dropped, so
/// waiters that give up leave nothing behind.
pub struct LatchWait {
    inner: Rc<Inner>,
    id: u64,
}

impl Future for LatchWait {
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

impl Drop for LatchWait {
    fn drop(&mut self) {
        self.inner.waiters.borrow_mut().remove(&self.id);
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
            let drain = Latch::default();
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
