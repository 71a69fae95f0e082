//! The listener thread: a second Redis connection subscribed to this node's
//! inbox channel. It parses each message and hands it to the agent thread;
//! it owns nothing else. A subscribed connection can issue no other command,
//! which is why it is not the agent's connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use super::handle::{AgentShared, ToAgent};
use super::link::{connect, Backoff};
use super::record::InboxMessage;

/// How long one wait for a message lasts before the thread checks whether
/// it should stop: bounds the shutdown delay.
pub(crate) const LISTENER_POLL: Duration = Duration::from_millis(100);

/// The largest inbox message parsed; anything longer is not ours.
const INBOX_MESSAGE_BYTES_MAX: usize = 4_096;

/// What the listener needs; moved into its thread.
pub(crate) struct Listener {
    pub client: redis::Client,
    pub channel: String,
    pub to_agent: Sender<ToAgent>,
    pub stop: Arc<AtomicBool>,
    pub shared: Arc<ListenerShared>,
    pub agent_shared: Arc<AgentShared>,
    pub io_timeout: Duration,
}

/// Whether the listener is subscribed; crosses threads.
#[derive(Debug, Default)]
pub(crate) struct ListenerShared {
    pub subscribed: AtomicBool,
}

enum ListenEnd {
    Stopped,
    Lost,
}

impl Listener {
    /// The thread's body: subscribe, forward, and on any failure reconnect
    /// with backoff until told to stop.
    pub(crate) fn run(self) {
        let mut backoff = Backoff::new();
        while !self.stop.load(Ordering::Acquire) {
            match self.listen(&mut backoff) {
                ListenEnd::Stopped => break,
                ListenEnd::Lost => {
                    self.shared.subscribed.store(false, Ordering::Release);
                    // Let the agent find out now rather than at its next heartbeat.
                    if self.agent_shared.available.load(Ordering::Acquire) {
                        let _ = self.to_agent.try_send(ToAgent::Probe);
                    }
                    self.pause(backoff.next_pause());
                }
            }
        }
        self.shared.subscribed.store(false, Ordering::Release);
    }

    fn listen(&self, backoff: &mut Backoff) -> ListenEnd {
        let Ok(mut connection) = connect(&self.client, self.io_timeout) else {
            return ListenEnd::Lost;
        };
        let mut pubsub = connection.as_pubsub();
        if pubsub.subscribe(&self.channel).is_err() {
            return ListenEnd::Lost;
        }
        if pubsub.set_read_timeout(Some(LISTENER_POLL)).is_err() {
            return ListenEnd::Lost;
        }
        backoff.reset();
        self.shared.subscribed.store(true, Ordering::Release);
        loop {
            if self.stop.load(Ordering::Acquire) {
                return ListenEnd::Stopped;
            }
            match pubsub.get_message() {
                Ok(message) => {
                    let Some(inbox) = parse(message.get_payload_bytes()) else {
                        tracing::warn!(channel = %self.channel, "cluster: unreadable inbox message dropped");
                        continue;
                    };
                    // Blocking here blocks only this thread, never a core.
                    if self.to_agent.send(ToAgent::Inbox(inbox)).is_err() {
                        return ListenEnd::Stopped;
                    }
                }
                Err(error) if error.is_timeout() => {}
                Err(_) => return ListenEnd::Lost,
            }
        }
    }

    /// Sleeps `pause` in slices, returning early when told to stop.
    fn pause(&self, pause: Duration) {
        let mut left = pause;
        while !left.is_zero() && !self.stop.load(Ordering::Acquire) {
            let slice = left.min(LISTENER_POLL);
            std::thread::sleep(slice);
            left -= slice;
        }
    }
}

/// One inbox message, or `None` for anything that is not one.
fn parse(payload: &[u8]) -> Option<InboxMessage> {
    if payload.len() > INBOX_MESSAGE_BYTES_MAX {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inbox_messages_pass() {
        let delete = br#"{"type":"delete","request_id":"r","session_id":"s","reply_to":"n"}"#;
        assert!(parse(delete).is_some());
        assert!(parse(b"not json").is_none());
        assert!(parse(&vec![b' '; INBOX_MESSAGE_BYTES_MAX + 1]).is_none());
    }
}
