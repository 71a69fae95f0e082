//! The agent's side of cluster admission: renewing this node's leases in
//! Redis, keeping the local pool between its low and high marks, and
//! answering the admission requests the pool could not.

use std::time::Instant;

use futures_channel::oneshot;

use super::state::*;
use crate::cluster::admission::Admit;
use crate::cluster::leases::release;
use crate::cluster::record::InboxMessage;

impl Agent {
    /// Extends every held lease; forgets those Redis lost and could not
    /// give back.
    pub(super) fn renew_leases(&mut self) {
        let Some(max) = self.settings.cluster_max_sessions else {
            return;
        };
        if self.book.len() == 0 {
            return;
        }
        let ttl_ms = self.ttl_ms();
        let names = self.book.names();
        let lost = self.link.run("lease renew", |connection, keys, scripts| {
            scripts.renew(connection, keys, ttl_ms, max, names)
        });
        if let Some(lost) = lost {
            if !lost.is_empty() {
                let forgotten = self.book.forget(&lost);
                self.admission
                    .drop_held(u32::try_from(forgotten).unwrap_or(u32::MAX));
                tracing::warn!(
                    lost = forgotten,
                    "cluster: leases lost in Redis could not be taken back"
                );
            }
        }
        self.assert_book_matches_pool();
    }

    /// Serves waiting admission requests and brings the pool back between
    /// its marks, with at most one script call.
    pub(super) fn rebalance(&mut self, waiters: Vec<oneshot::Sender<Admit>>) {
        self.rebalance_due = false;
        self.admission.rebalance_started();
        let mut waiting = Vec::new();
        for waiter in waiters {
            match self.admission.answer_from_pool() {
                Some(answer) => answer_admit(waiter, answer),
                None => waiting.push(waiter),
            }
        }
        let Some(max) = self.settings.cluster_max_sessions else {
            return;
        };
        if !self.link.is_connected() {
            for waiter in waiting {
                answer_admit(waiter, self.admission.answer_failing());
            }
            return;
        }
        let block = self.settings.lease_block_effective();
        let mut wish = self.admission.rebalance_wish(block);
        if self
            .refill_paused_until
            .is_some_and(|until| Instant::now() < until)
        {
            // Another node was refused at the limit: take leases for this
            // node's admissions only, never to refill the pool.
            wish = wish.min(0);
        }
        let want = usize::try_from(wish.max(0)).unwrap_or(0) + waiting.len();
        if want > 0 {
            self.acquire(max, want, waiting);
        } else if wish < 0 {
            self.give_back(u32::try_from(-wish).unwrap_or(u32::MAX));
        }
        self.assert_book_matches_pool();
    }

    pub(super) fn acquire(
        &mut self,
        max: usize,
        want: usize,
        waiting: Vec<oneshot::Sender<Admit>>,
    ) {
        let ttl_ms = self.ttl_ms();
        let candidates = self.book.candidates(want);
        let granted = self.link.run("lease acquire", |connection, keys, scripts| {
            scripts.acquire(connection, keys, ttl_ms, max, &candidates)
        });
        let Some(granted) = granted else {
            for waiter in waiting {
                answer_admit(waiter, self.admission.answer_failing());
            }
            return;
        };
        self.book.add_granted(candidates, granted);
        let handed = self.admission.add_held_and_claim(
            u32::try_from(granted).unwrap_or(u32::MAX),
            u32::try_from(waiting.len()).unwrap_or(u32::MAX),
        );
        let mut refused = Vec::new();
        for (index, waiter) in waiting.into_iter().enumerate() {
            if index < handed as usize {
                answer_admit(waiter, self.admission.granted_by_agent());
            } else {
                refused.push(waiter);
            }
        }
        if refused.is_empty() {
            if self.returns.waiters.is_empty() {
                self.returns.deadline = None;
            }
            return;
        }
        self.wait_for_returns(refused);
    }

    /// Admissions the cluster limit refused: the first time, ask every other
    /// node to give back its free pooled leases, then retry every
    /// [`RETURN_RETRY_INTERVAL`] until [`RETURN_WAIT`] is over. A pool of
    /// idle leases on another node never starves this one.
    fn wait_for_returns(&mut self, refused: Vec<oneshot::Sender<Admit>>) {
        let now = Instant::now();
        let deadline = match self.returns.deadline {
            Some(deadline) => deadline,
            None => {
                self.ask_for_returns();
                let deadline = now + RETURN_WAIT;
                self.returns.deadline = Some(deadline);
                deadline
            }
        };
        if now >= deadline {
            for waiter in refused {
                answer_admit(waiter, Admit::Refused);
            }
            if self.returns.waiters.is_empty() {
                self.returns.deadline = None;
            }
            return;
        }
        self.returns.waiters.extend(refused);
        self.returns.next_retry = Some((now + RETURN_RETRY_INTERVAL).min(deadline));
    }

    /// Publish [`InboxMessage::ReturnLeases`] to every other live node.
    fn ask_for_returns(&mut self) {
        let Ok(nodes) = self.nodes() else {
            return;
        };
        let message = InboxMessage::ReturnLeases {
            from: self.settings.node_id.clone(),
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            return;
        };
        let others: Vec<String> = nodes
            .into_iter()
            .map(|node| node.node_id)
            .filter(|id| *id != self.settings.node_id)
            .collect();
        tracing::debug!(
            nodes = others.len(),
            "cluster: at the limit, asking other nodes for their pooled leases"
        );
        for node in others {
            let _ = self
                .link
                .run("publish return leases", |connection, keys, _| {
                    redis::cmd("PUBLISH")
                        .arg(keys.inbox(&node))
                        .arg(&payload)
                        .query::<u64>(connection)
                });
        }
    }

    /// Another node was refused at the limit: give back every free pooled
    /// lease, and refill the pool only on demand for [`REFILL_PAUSE`].
    pub(super) fn return_pooled_leases(&mut self, from: &str) {
        if self.settings.cluster_max_sessions.is_none() || from == self.settings.node_id {
            return;
        }
        self.refill_paused_until = Some(Instant::now() + REFILL_PAUSE);
        let free = crate::cluster::admission::slots::free(self.admission.snapshot());
        if free > 0 {
            tracing::debug!(free, asked_by = from, "cluster: giving pooled leases back");
            self.give_back(u32::try_from(free).unwrap_or(u32::MAX));
        }
        self.assert_book_matches_pool();
    }

    pub(super) fn give_back(&mut self, count: u32) {
        let taken = self.admission.take_free(count);
        let names = self.book.take(taken as usize);
        // On failure the names are already out of the book: nobody renews
        // them, so they expire within one TTL.
        let _ = self.link.run("lease release", |connection, keys, _| {
            release(connection, keys, &names)
        });
    }

    pub(super) fn assert_book_matches_pool(&self) {
        let held = crate::cluster::admission::slots::held(self.admission.snapshot());
        debug_assert_eq!(
            held as usize,
            self.book.len(),
            "lease book and pool disagree"
        );
    }
}

/// Sends an admission answer; if the asker is gone, the guard in the answer
/// is dropped and its slot goes back to the pool.
pub(super) fn answer_admit(waiter: oneshot::Sender<Admit>, answer: Admit) {
    let _ = waiter.send(answer);
}
