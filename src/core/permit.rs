//! Session admission: the global session limit and the per-address limit.
//!
//! The global limit is one `AtomicUsize` shared by every core, taken with a
//! compare-and-swap before a session is created. The per-address limit needs
//! a count per client IP, and connections from one address land on any core
//! (`SO_REUSEPORT` hashes the whole 4-tuple), so it is a map shared by the
//! cores: [`PeerCounts`], split into shards each behind its own mutex, held
//! only for one map update at session start and end, and only when the limit
//! is configured. Both live in [`SessionLimits`] (with the two bounds) and are
//! given back exactly once, when the [`SessionPermit`] is dropped.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Shards of [`PeerCounts`]; a power of two.
const PEER_SHARDS: usize = 16;

/// The node's session limits and the live counts they bound, shared by
/// every core.
pub struct SessionLimits {
    /// `max_sessions`: live streaming sessions across all cores.
    max_sessions: usize,
    /// `max_sessions_per_peer`, when set.
    max_sessions_per_peer: Option<usize>,
    /// Live streaming sessions across all cores (the session limit's count).
    active: AtomicUsize,
    /// Live sessions per client address (used when `max_sessions_per_peer` is set).
    peers: PeerCounts,
}

impl SessionLimits {
    pub fn new(max_sessions: usize, max_sessions_per_peer: Option<usize>) -> Self {
        SessionLimits {
            max_sessions,
            max_sessions_per_peer,
            active: AtomicUsize::new(0),
            peers: PeerCounts::default(),
        }
    }

    /// Live streaming sessions across all cores.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }
}

/// A reserved session slot. Dropping it releases the slot.
pub struct SessionPermit {
    limits: Arc<SessionLimits>,
    /// The address whose per-peer count this permit holds, when that limit is on.
    peer: Option<IpAddr>,
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_sessions` are live.
    ServerFull,
    /// `max_sessions_per_peer` are live from this address.
    PeerFull,
}

impl Refusal {
    /// The text sent to the client with `session_limit_exceeded`.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::ServerFull => "the server is at its session limit; retry later",
            Refusal::PeerFull => "too many concurrent sessions from your address; close one first",
        }
    }
}

impl SessionPermit {
    /// Reserve a slot for a session from `peer`, or say which limit is reached.
    pub fn acquire(limits: &Arc<SessionLimits>, peer: IpAddr) -> Result<SessionPermit, Refusal> {
        if !reserve(&limits.active, limits.max_sessions) {
            return Err(Refusal::ServerFull);
        }
        let peer = match limits.max_sessions_per_peer {
            None => None,
            Some(max) if limits.peers.reserve(peer, max) => Some(peer),
            Some(_) => {
                limits.active.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::PeerFull);
            }
        };
        Ok(SessionPermit {
            limits: Arc::clone(limits),
            peer,
        })
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            self.limits.peers.release(peer);
        }
        let previous = self.limits.active.fetch_sub(1, Ordering::AcqRel);
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

/// Live sessions per client address, for `max_sessions_per_peer`. An address
/// is in the map only while it has a session, so the map is bounded by the
/// live sessions.
pub struct PeerCounts {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<IpAddr, usize>>>,
}

impl Default for PeerCounts {
    fn default() -> Self {
        PeerCounts {
            hasher: RandomState::new(),
            shards: (0..PEER_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl PeerCounts {
    fn shard(&self, peer: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        let index = (self.hasher.hash_one(peer) as usize) & (PEER_SHARDS - 1);
        // A panic while a shard is held cannot leave a half-made update (each
        // is one insert or one decrement), so a poisoned lock is still sound.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count one more session from `peer` unless it has `max` already.
    pub fn reserve(&self, peer: IpAddr, max: usize) -> bool {
        let mut shard = self.shard(peer);
        let live = shard.entry(peer).or_insert(0);
        if *live >= max {
            if *live == 0 {
                shard.remove(&peer);
            }
            return false;
        }
        *live += 1;
        true
    }

    /// Count one session from `peer` less.
    pub fn release(&self, peer: IpAddr) {
        let mut shard = self.shard(peer);
        if let Some(live) = shard.get_mut(&peer) {
            *live -= 1;
            if *live == 0 {
                shard.remove(&peer);
            }
        } else {
            debug_assert!(false, "a per-peer slot of {peer} was released twice");
        }
    }

    /// Live sessions from `peer`.
    #[cfg(test)]
    pub fn live(&self, peer: IpAddr) -> usize {
        self.shard(peer).get(&peer).copied().unwrap_or(0)
    }

    /// Addresses with a live session.
    #[cfg(test)]
    pub fn addresses(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |map| map.len()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

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

    #[test]
    fn each_address_has_its_own_count_and_leaves_the_map_at_zero() {
        let counts = PeerCounts::default();
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(counts.reserve(a, 2));
        assert!(counts.reserve(a, 2));
        assert!(!counts.reserve(a, 2), "a third from the same address");
        assert!(counts.reserve(b, 2), "another address is not affected");
        assert_eq!((counts.live(a), counts.live(b)), (2, 1));
        counts.release(a);
        assert!(counts.reserve(a, 2), "a released slot is free again");
        counts.release(a);
        counts.release(a);
        counts.release(b);
        assert_eq!(counts.addresses(), 0, "no entry outlives its sessions");
        assert!(!counts.reserve(a, 0));
        assert_eq!(counts.addresses(), 0, "a refusal leaves no entry");
    }

    #[test]
    fn the_per_address_limit_holds_under_contention() {
        let counts = Arc::new(PeerCounts::default());
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || (0..500).filter(|_| counts.reserve(peer, 7)).count())
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(granted, 7);
        assert_eq!(counts.live(peer), 7);
    }
}
