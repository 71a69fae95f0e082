//! Cluster-wide admission: the local pool of pre-reserved leases.
//!
//! A node holds some leases in the Redis sorted set of leases (see
//! [`super::leases`]); each live session on the node holds one of them
//! through a [`LeaseGuard`]. Both counts live in one `AtomicU64` —
//! `held` in the high 32 bits, `in_use` in the low 32 — so a core admits
//! with a single compare-and-swap (`in_use < held` → `in_use + 1`) and the
//! agent adds or returns leases with another, and no interleaving of the two
//! can make `in_use` exceed `held` through the pool.
//!
//! Only the agent changes `held`, and it keeps `held` equal to the number of
//! lease names it holds in Redis. `in_use` can exceed `held` only through the
//! documented exceptions: guards granted in fail-open mode while Redis is
//! down, and leases Redis lost (an outage longer than the TTL, a flushed
//! database) that could not be taken back. The agent then acquires leases to
//! cover the deficit as soon as the cluster has room.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_channel::oneshot;

use super::settings::FailMode;

/// The answer to an admission request.
#[derive(Debug)]
#[must_use = "dropping a granted admission frees its slot at once"]
pub enum Admit {
    /// Admitted: keep the guard for the life of the session; dropping it
    /// frees the slot.
    Granted(LeaseGuard),
    /// The cluster is at `cluster_max_sessions` (the server answers
    /// `session_limit_exceeded` or `overloaded`, as for its local limit).
    Refused,
    /// Redis is unreachable and the fail mode is `closed` (the server
    /// answers `overloaded`).
    Unavailable,
}

impl Admit {
    /// Whether the session may start.
    pub fn is_granted(&self) -> bool {
        matches!(self, Admit::Granted(_))
    }
}

/// Cluster admission is not bounded (`cluster_max_sessions` unset): every
/// request is granted without Redis.
pub(crate) const MODE_UNBOUNDED: u8 = 0;
/// Redis answers: admission comes from the lease pool.
pub(crate) const MODE_AVAILABLE: u8 = 1;
/// Redis does not answer: admission follows the fail mode.
pub(crate) const MODE_UNAVAILABLE: u8 = 2;

/// The packed pair of counts, as plain functions so they can be tested
/// without threads.
pub(crate) mod slots {
    /// The leases held in Redis.
    pub fn held(word: u64) -> u32 {
        (word >> 32) as u32
    }

    /// The live guards.
    pub fn in_use(word: u64) -> u32 {
        word as u32
    }

    pub fn pack(held: u32, in_use: u32) -> u64 {
        (u64::from(held) << 32) | u64::from(in_use)
    }

    /// Held leases not in use; negative when guards exceed leases (deficit).
    pub fn free(word: u64) -> i64 {
        i64::from(held(word)) - i64::from(in_use(word))
    }
}

/// The state shared by every [`ClusterAdmission`] clone, every
/// [`LeaseGuard`] and the agent: it crosses threads, hence its name.
#[derive(Debug)]
pub(crate) struct AdmissionShared {
    /// `held << 32 | in_use`; see the module docs.
    slots: AtomicU64,
    /// One of the `MODE_*` constants; written by the agent only.
    mode: AtomicU8,
    fail_mode: FailMode,
    /// Below this many free leases the pool asks the agent for more.
    free_low: i64,
    /// Above this many free leases the pool gives the excess back.
    free_high: i64,
    /// A rebalance message is on its way to the agent (at most one at a time).
    rebalance_requested: AtomicBool,
    to_agent: Box<dyn AgentQueue>,
}

/// What the pool asks of the agent.
#[derive(Debug)]
pub(crate) enum PoolRequest {
    /// Refill the pool, or give its excess back.
    Rebalance,
    /// The pool was empty: acquire a lease for this request.
    Admit(oneshot::Sender<Admit>),
}

/// The agent's queue as the pool sees it (the agent's urgent queue
/// implements it, in `handle.rs`).
pub(crate) trait AgentQueue: std::fmt::Debug + Send + Sync {
    /// Queue `request` without waiting; `false` when the queue is full or
    /// the agent has stopped.
    fn offer(&self, request: PoolRequest) -> bool;
}

impl AdmissionShared {
    /// A pool with no lease, in `mode`. `lease_block` is the number of free
    /// leases the pool aims for.
    pub(crate) fn new(
        mode: u8,
        fail_mode: FailMode,
        lease_block: usize,
        to_agent: impl AgentQueue + 'static,
    ) -> Self {
        let block = i64::try_from(lease_block).unwrap_or(i64::MAX / 4);
        AdmissionShared {
            slots: AtomicU64::new(0),
            mode: AtomicU8::new(mode),
            fail_mode,
            free_low: (block + 1) / 2,
            free_high: block * 2,
            rebalance_requested: AtomicBool::new(false),
            to_agent: Box::new(to_agent),
        }
    }

    pub(crate) fn mode(&self) -> u8 {
        self.mode.load(Ordering::Acquire)
    }

    /// Sets the mode. Called by the agent when Redis comes and goes.
    pub(crate) fn set_mode(&self, mode: u8) {
        self.mode.store(mode, Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> u64 {
        self.slots.load(Ordering::Acquire)
    }

    /// Takes one backed slot: succeeds only while `in_use < held`.
    fn claim_backed(&self) -> bool {
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (slots::in_use(word) < slots::held(word)).then_some(word + 1)
            })
            .is_ok()
    }

    /// Takes one slot whether or not a lease backs it (fail-open, unbounded).
    fn claim_unbacked(&self) -> bool {
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (slots::in_use(word) < u32::MAX).then_some(word + 1)
            })
            .is_ok()
    }

    /// Gives one slot back (a guard was dropped).
    fn release_one(&self) {
        let before = self.slots.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(slots::in_use(before) > 0, "a guard released a slot twice");
        if slots::free(before) + 1 > self.free_high {
            self.request_rebalance();
        }
    }

    /// Adds `granted` newly acquired leases and, in the same step, hands up
    /// to `wanted` of the free ones to waiting requests. Returns how many
    /// were handed out. Agent only.
    pub(crate) fn add_held_and_claim(&self, granted: u32, wanted: u32) -> u32 {
        let mut handed = 0;
        let update = self
            .slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let held = slots::held(word).saturating_add(granted);
                let in_use = slots::in_use(word);
                let room = held.saturating_sub(in_use);
                handed = room.min(wanted);
                Some(slots::pack(held, in_use + handed))
            });
        debug_assert!(update.is_ok());
        handed
    }

    /// Takes up to `count` free leases out of the pool so the agent can
    /// return them. Returns how many it took. Agent only.
    pub(crate) fn take_free(&self, count: u32) -> u32 {
        let mut taken = 0;
        let update = self
            .slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let free = slots::held(word).saturating_sub(slots::in_use(word));
                taken = free.min(count);
                Some(slots::pack(slots::held(word) - taken, slots::in_use(word)))
            });
        debug_assert!(update.is_ok());
        taken
    }

    /// Forgets `count` leases Redis no longer has, in use or not. Agent only.
    pub(crate) fn drop_held(&self, count: u32) {
        let update = self
            .slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let held = slots::held(word).saturating_sub(count);
                Some(slots::pack(held, slots::in_use(word)))
            });
        debug_assert!(update.is_ok());
    }

    /// The pool's wish: positive = leases to acquire, negative = leases to
    /// return, zero = fine.
    pub(crate) fn rebalance_wish(&self, lease_block: usize) -> i64 {
        let free = slots::free(self.snapshot());
        let block = i64::try_from(lease_block).unwrap_or(i64::MAX / 4);
        if free < self.free_low || free > self.free_high {
            block - free
        } else {
            0
        }
    }

    /// Clears the "rebalance on its way" flag; the agent calls it before it
    /// rebalances, so a later need sends a new request.
    pub(crate) fn rebalance_started(&self) {
        self.rebalance_requested.store(false, Ordering::Release);
    }

    fn request_rebalance(&self) {
        if !self.rebalance_requested.swap(true, Ordering::AcqRel) {
            // A full queue leaves the flag set; the heartbeat rebalances anyway
            // and clears it.
            let _ = self.to_agent.offer(PoolRequest::Rebalance);
        }
    }

    fn guard(self: &Arc<Self>) -> LeaseGuard {
        LeaseGuard {
            shared: Arc::clone(self),
        }
    }

    /// The answer while Redis is unavailable.
    fn admit_failing(self: &Arc<Self>) -> Admit {
        match self.fail_mode {
            FailMode::Open if self.claim_unbacked() => Admit::Granted(self.guard()),
            FailMode::Open => Admit::Refused,
            FailMode::Closed => Admit::Unavailable,
        }
    }

    /// The pool-only answer, or `None` when the pool is empty and Redis
    /// answers (so only Redis can tell).
    fn admit_local(self: &Arc<Self>) -> Option<Admit> {
        match self.mode() {
            MODE_UNBOUNDED => Some(if self.claim_unbacked() {
                Admit::Granted(self.guard())
            } else {
                Admit::Refused
            }),
            MODE_AVAILABLE => {
                if self.claim_backed() {
                    if slots::free(self.snapshot()) < self.free_low {
                        self.request_rebalance();
                    }
                    Some(Admit::Granted(self.guard()))
                } else {
                    None
                }
            }
            _ => Some(self.admit_failing()),
        }
    }

    /// Grants a slot the agent has already counted as in use (see
    /// [`AdmissionShared::add_held_and_claim`]). Agent only.
    pub(crate) fn granted_by_agent(self: &Arc<Self>) -> Admit {
        Admit::Granted(self.guard())
    }

    /// What the agent answers a waiting request while Redis is unavailable.
    pub(crate) fn answer_failing(self: &Arc<Self>) -> Admit {
        self.admit_failing()
    }

    /// What the agent answers a waiting request: the pool again (a refill
    /// may have landed since the request was sent), else `None`.
    pub(crate) fn answer_from_pool(self: &Arc<Self>) -> Option<Admit> {
        self.admit_local()
    }
}

/// One admitted session's slot. Dropping it gives the slot back to the
/// node's pool (one atomic); the agent returns pooled leases above the high
/// mark to Redis.
#[derive(Debug)]
pub struct LeaseGuard {
    shared: Arc<AdmissionShared>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.shared.release_one();
    }
}

/// How many slots the node holds and uses, for tests and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionSnapshot {
    /// Leases this node holds in Redis.
    pub held: u32,
    /// Live guards (admitted sessions).
    pub in_use: u32,
    /// Whether Redis answers (`false` also when the cluster is unbounded).
    pub redis_backed: bool,
}

/// Cluster-wide admission for one node. `Clone`, `Send` and `Sync`: every
/// core keeps a clone.
#[derive(Debug, Clone)]
pub struct ClusterAdmission {
    shared: Arc<AdmissionShared>,
}

impl ClusterAdmission {
    pub(crate) fn new(shared: Arc<AdmissionShared>) -> Self {
        ClusterAdmission { shared }
    }

    /// Admission without waiting: one compare-and-swap on the local pool.
    /// `Refused` here can also mean "the pool is empty right now" (a refill
    /// is then requested); [`ClusterAdmission::admit`] asks Redis instead.
    pub fn try_admit(&self) -> Admit {
        self.shared.admit_local().unwrap_or(Admit::Refused)
    }

    /// Admission that asks Redis only when the local pool is empty. The
    /// future is ready at once in the common case (no allocation, no
    /// channel); otherwise the agent answers after one Redis round trip,
    /// batched with other waiting requests, or by the fail mode if Redis is
    /// down. It never waits longer than the agent's current Redis call
    /// (bounded by the I/O timeout) plus that round trip.
    pub fn admit(&self) -> AdmitFuture {
        if let Some(answer) = self.shared.admit_local() {
            return AdmitFuture::ready(answer);
        }
        let (reply, receiver) = oneshot::channel();
        if self.shared.to_agent.offer(PoolRequest::Admit(reply)) {
            AdmitFuture {
                state: AdmitState::Waiting(receiver, Arc::clone(&self.shared)),
            }
        } else {
            AdmitFuture::ready(self.shared.admit_failing())
        }
    }

    /// The current counts.
    pub fn snapshot(&self) -> AdmissionSnapshot {
        let word = self.shared.snapshot();
        AdmissionSnapshot {
            held: slots::held(word),
            in_use: slots::in_use(word),
            redis_backed: self.shared.mode() == MODE_AVAILABLE,
        }
    }
}

/// The answer of [`ClusterAdmission::admit`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct AdmitFuture {
    state: AdmitState,
}

#[derive(Debug)]
enum AdmitState {
    Ready(Option<Admit>),
    Waiting(oneshot::Receiver<Admit>, Arc<AdmissionShared>),
}

impl AdmitFuture {
    fn ready(answer: Admit) -> Self {
        AdmitFuture {
            state: AdmitState::Ready(Some(answer)),
        }
    }
}

/// # Panics
/// If polled again after it returned its answer (a caller bug).
impl Future for AdmitFuture {
    type Output = Admit;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Admit> {
        let this = self.get_mut();
        match &mut this.state {
            AdmitState::Ready(answer) => match answer.take() {
                Some(answer) => Poll::Ready(answer),
                None => panic!("AdmitFuture polled after it completed"),
            },
            AdmitState::Waiting(receiver, shared) => match Pin::new(receiver).poll(context) {
                Poll::Ready(Ok(answer)) => Poll::Ready(answer),
                // The agent is gone: nothing can ask Redis any more.
                Poll::Ready(Err(oneshot::Canceled)) => Poll::Ready(shared.admit_failing()),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(mode: u8, fail_mode: FailMode, block: usize) -> Arc<AdmissionShared> {
        let (to_agent, _from_handles) = crossbeam_channel::bounded(16);
        Arc::new(AdmissionShared::new(mode, fail_mode, block, to_agent))
    }

    #[test]
    fn packing_keeps_both_halves() {
        let word = slots::pack(7, 3);
        assert_eq!((slots::held(word), slots::in_use(word)), (7, 3));
        assert_eq!(slots::free(word), 4);
        assert_eq!(slots::free(slots::pack(1, 3)), -2);
        let word = slots::pack(u32::MAX, u32::MAX);
        assert_eq!(
            (slots::held(word), slots::in_use(word)),
            (u32::MAX, u32::MAX)
        );
    }

    #[test]
    fn pool_grants_exactly_its_leases_and_takes_returns() {
        let shared = pool(MODE_AVAILABLE, FailMode::Closed, 4);
        let admission = ClusterAdmission::new(Arc::clone(&shared));
        assert!(matches!(admission.try_admit(), Admit::Refused));
        assert_eq!(shared.add_held_and_claim(3, 0), 0);
        let guards: Vec<Admit> = (0..3).map(|_| admission.try_admit()).collect();
        assert!(guards.iter().all(Admit::is_granted));
        assert!(matches!(admission.try_admit(), Admit::Refused));
        drop(guards);
        let snapshot = admission.snapshot();
        assert_eq!((snapshot.held, snapshot.in_use), (3, 0));
        assert!(admission.try_admit().is_granted());
    }

    #[test]
    fn agent_grants_to_waiters_only_what_is_backed() {
        let shared = pool(MODE_AVAILABLE, FailMode::Open, 4);
        // Two unbacked guards (fail-open while Redis was down).
        shared.set_mode(MODE_UNAVAILABLE);
        let unbacked = [shared.answer_failing(), shared.answer_failing()];
        assert!(unbacked.iter().all(Admit::is_granted));
        assert_eq!(slots::free(shared.snapshot()), -2);
        // Three new leases cover the deficit first: one left for waiters.
        shared.set_mode(MODE_AVAILABLE);
        assert_eq!(shared.add_held_and_claim(3, 5), 1);
        let handed = shared.granted_by_agent();
        assert_eq!(slots::free(shared.snapshot()), 0);
        drop(unbacked);
        assert_eq!(slots::in_use(shared.snapshot()), 1);
        drop(handed);
        assert_eq!(shared.snapshot(), slots::pack(3, 0));
    }

    #[test]
    fn take_free_never_takes_a_slot_in_use() {
        let shared = pool(MODE_AVAILABLE, FailMode::Open, 4);
        shared.add_held_and_claim(5, 0);
        let admission = ClusterAdmission::new(Arc::clone(&shared));
        let held: Vec<Admit> = (0..3).map(|_| admission.try_admit()).collect();
        assert_eq!(shared.take_free(10), 2);
        assert_eq!(slots::held(shared.snapshot()), 3);
        assert!(matches!(admission.try_admit(), Admit::Refused));
        drop(held);
        shared.drop_held(10);
        assert_eq!(shared.snapshot(), 0);
    }

    #[test]
    fn rebalance_wish_refills_below_low_and_returns_above_high() {
        let shared = pool(MODE_AVAILABLE, FailMode::Open, 4);
        assert_eq!(shared.rebalance_wish(4), 4);
        shared.add_held_and_claim(2, 0);
        assert_eq!(shared.rebalance_wish(4), 0);
        shared.add_held_and_claim(6, 0);
        assert_eq!(shared.rebalance_wish(4), 0);
        shared.add_held_and_claim(1, 0);
        assert_eq!(shared.rebalance_wish(4), -5);
    }

    #[test]
    fn fail_modes_decide_while_redis_is_down() {
        let open = ClusterAdmission::new(pool(MODE_UNAVAILABLE, FailMode::Open, 4));
        let closed = ClusterAdmission::new(pool(MODE_UNAVAILABLE, FailMode::Closed, 4));
        let unbounded = ClusterAdmission::new(pool(MODE_UNBOUNDED, FailMode::Closed, 0));
        let granted = open.try_admit();
        assert!(granted.is_granted());
        assert_eq!(open.snapshot().in_use, 1);
        drop(granted);
        assert_eq!(open.snapshot().in_use, 0);
        assert!(matches!(closed.try_admit(), Admit::Unavailable));
        assert!(unbounded.try_admit().is_granted());
    }

    #[test]
    fn concurrent_claims_never_exceed_held_while_the_agent_takes_leases() {
        let shared = pool(MODE_AVAILABLE, FailMode::Closed, 4);
        shared.add_held_and_claim(64, 0);
        let admission = ClusterAdmission::new(Arc::clone(&shared));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let admission = admission.clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut kept = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let word = admission.shared.snapshot();
                        assert!(slots::in_use(word) <= slots::held(word));
                        match admission.try_admit() {
                            Admit::Granted(guard) if kept.len() < 8 => kept.push(guard),
                            _ => {
                                kept.pop();
                            }
                        }
                    }
                })
            })
            .collect();
        let (mut taken, mut added) = (0_i64, 0_i64);
        for _ in 0..10_000 {
            taken += i64::from(shared.take_free(1));
            let word = shared.snapshot();
            assert!(slots::in_use(word) <= slots::held(word));
            if slots::held(word) < 8 {
                shared.add_held_and_claim(1, 0);
                added += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            assert!(worker.join().is_ok());
        }
        let word = shared.snapshot();
        assert_eq!(slots::in_use(word), 0);
        assert_eq!(i64::from(slots::held(word)) + taken - added, 64);
    }
}
