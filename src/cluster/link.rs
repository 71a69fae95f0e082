//! The agent's Redis connection: connecting with a timeout, reconnecting
//! with exponential backoff, and turning any failed call into "Redis is
//! unavailable" for the handles and the admission pool.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

use super::admission::{AdmissionShared, MODE_AVAILABLE, MODE_UNAVAILABLE, MODE_UNBOUNDED};
use super::handle::AgentShared;
use super::keys::Keys;
use super::leases::LeaseScripts;
use super::settings::{RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};

/// Exponential backoff between reconnect attempts:
/// [`RECONNECT_BACKOFF_MIN`], doubling, capped at [`RECONNECT_BACKOFF_MAX`].
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            next: RECONNECT_BACKOFF_MIN,
        }
    }

    /// The pause before the next attempt.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(RECONNECT_BACKOFF_MAX);
        pause
    }

    /// After a success: the next failure starts from the minimum again.
    pub(crate) fn reset(&mut self) {
        self.next = RECONNECT_BACKOFF_MIN;
    }
}

/// Opens a connection with every timeout set.
pub(crate) fn connect(client: &redis::Client, io_timeout: Duration) -> RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(io_timeout)?;
    connection.set_read_timeout(Some(io_timeout))?;
    connection.set_write_timeout(Some(io_timeout))?;
    Ok(connection)
}

/// The connection and what depends on its state.
pub(crate) struct RedisLink {
    client: redis::Client,
    connection: Option<Connection>,
    /// Registered (everything written again after a connect): only then do
    /// the handles and the pool see Redis as available.
    registered: bool,
    pub(crate) keys: Keys,
    scripts: LeaseScripts,
    backoff: Backoff,
    reconnect_at: Instant,
    io_timeout: Duration,
    shared: Arc<AgentShared>,
    admission: Arc<AdmissionShared>,
    /// The pool's mode while Redis answers.
    mode_up: u8,
}

impl RedisLink {
    pub(crate) fn new(
        client: redis::Client,
        keys: Keys,
        io_timeout: Duration,
        shared: Arc<AgentShared>,
        admission: Arc<AdmissionShared>,
        bounded: bool,
    ) -> Self {
        RedisLink {
            client,
            connection: None,
            registered: false,
            keys,
            scripts: LeaseScripts::new(),
            backoff: Backoff::new(),
            reconnect_at: Instant::now(),
            io_timeout,
            shared,
            admission,
            mode_up: if bounded {
                MODE_AVAILABLE
            } else {
                MODE_UNBOUNDED
            },
        }
    }

    /// Connected (registration may still be under way).
    pub(crate) fn is_connected(&self) -> bool {
        self.connection.is_some()
    }

    /// When the next connect attempt is due, if disconnected.
    pub(crate) fn reconnect_at(&self) -> Option<Instant> {
        (!self.is_connected()).then_some(self.reconnect_at)
    }

    /// Tries to connect if disconnected and the backoff allows. Returns
    /// `true` on a new connection: the caller registers everything, then
    /// calls [`RedisLink::registered`].
    pub(crate) fn connect_if_due(&mut self, now: Instant) -> bool {
        if self.is_connected() || now < self.reconnect_at {
            return false;
        }
        match connect(&self.client, self.io_timeout) {
            Ok(connection) => {
                self.connection = Some(connection);
                true
            }
            Err(error) => {
                let pause = self.backoff.next_pause();
                self.reconnect_at = Instant::now() + pause;
                tracing::debug!(kind = ?error.kind(), pause_ms = pause.as_millis() as u64,
                    "cluster: Redis unreachable, retrying");
                false
            }
        }
    }

    /// Everything is written again: Redis is available to the node.
    pub(crate) fn registered(&mut self) {
        if self.connection.is_none() {
            return;
        }
        self.registered = true;
        self.backoff.reset();
        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        self.shared.available.store(true, Ordering::Release);
        self.admission.set_mode(self.mode_up);
        tracing::info!("cluster: connected to Redis and registered");
    }

    /// Runs one Redis operation; any error drops the connection, marks Redis
    /// unavailable and schedules a reconnect, and gives `None`.
    pub(crate) fn run<T>(
        &mut self,
        what: &'static str,
        operation: impl FnOnce(&mut Connection, &Keys, &LeaseScripts) -> RedisResult<T>,
    ) -> Option<T> {
        let connection = self.connection.as_mut()?;
        match operation(connection, &self.keys, &self.scripts) {
            Ok(value) => Some(value),
            Err(error) => {
                self.lost(what, &error);
                None
            }
        }
    }

    /// Drops the connection after an error.
    fn lost(&mut self, what: &'static str, error: &redis::RedisError) {
        if self.registered {
            tracing::warn!(operation = what, kind = ?error.kind(), %error,
                "cluster: Redis call failed; serving local sessions only until it is back");
        }
        self.connection = None;
        self.registered = false;
        self.shared.available.store(false, Ordering::Release);
        if self.mode_up == MODE_AVAILABLE {
            self.admission.set_mode(MODE_UNAVAILABLE);
        }
        let pause = self.backoff.next_pause();
        self.reconnect_at = Instant::now() + pause;
    }

    /// Closes the connection without an error (shutdown).
    pub(crate) fn close(&mut self) {
        self.connection = None;
        self.registered = false;
        self.shared.available.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new();
        let pauses: Vec<Duration> = (0..8).map(|_| backoff.next_pause()).collect();
        assert_eq!(pauses[0], RECONNECT_BACKOFF_MIN);
        assert_eq!(pauses[1], RECONNECT_BACKOFF_MIN * 2);
        assert!(pauses.windows(2).all(|pair| pair[0] <= pair[1]));
        assert_eq!(pauses[7], RECONNECT_BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next_pause(), RECONNECT_BACKOFF_MIN);
    }
}
