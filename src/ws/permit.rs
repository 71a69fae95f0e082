//! The global session limit: one `AtomicUsize` shared by every core, taken
//! with a compare-and-swap before a session is created and given back exactly
//! once, when the [`SessionPermit`] is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::server::ServerShared;

/// A reserved session slot. Dropping it releases the slot.
pub struct SessionPermit {
    shared: Arc<ServerShared>,
}

impl SessionPermit {
    /// Reserve a slot, or `None` when `max_sessions` are live.
    pub fn acquire(shared: &Arc<ServerShared>) -> Option<SessionPermit> {
        reserve(&shared.active_sessions, shared.settings.max_sessions).then(|| SessionPermit {
            shared: Arc::clone(shared),
        })
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        let previous = self.shared.active_sessions.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(previous > 0, "a session permit was released twice");
    }
}

/// Increment `count` unless it has reached `max`.
fn reserve(count: &AtomicUsize, max: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
            (live < max).then_some(live + 1)
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_more_than_the_limit_even_from_many_threads() {
        let count = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let count = Arc::clone(&count);
                std::thread::spawn(move || (0..1000).filter(|_| reserve(&count, 100)).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(granted, 100);
        assert_eq!(count.load(Ordering::Acquire), 100);
    }
}
