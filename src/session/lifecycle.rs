//! A session's lifecycle vocabulary: its [`SessionState`]s (API.md), why it
//! ended ([`EndReason`]), and its bounds and timing ([`SessionConfig`]).

/// The lifecycle states of API.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Connected, no audio yet.
    Created,
    /// Audio has arrived.
    Active,
    /// Ending: waiting for its last finals, or for the close handshake.
    Closing,
    /// Done; the connection is closing or closed.
    Closed,
}

impl SessionState {
    pub fn name(self) -> &'static str {
        match self {
            SessionState::Created => "created",
            SessionState::Active => "active",
            SessionState::Closing => "closing",
            SessionState::Closed => "closed",
        }
    }

    /// Parse a `state` filter.
    pub fn parse(name: &str) -> Option<SessionState> {
        [
            SessionState::Created,
            SessionState::Active,
            SessionState::Closing,
            SessionState::Closed,
        ]
        .into_iter()
        .find(|state| state.name() == name)
    }
}

/// Why a session ended (`session_end.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    ClientEnd,
    ClientDisconnect,
    Terminated,
    IdleTimeout,
    MaxDuration,
    ServerShutdown,
    Error,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::ClientEnd => "client_end",
            EndReason::ClientDisconnect => "client_disconnect",
            EndReason::Terminated => "terminated",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::MaxDuration => "max_duration",
            EndReason::ServerShutdown => "server_shutdown",
            EndReason::Error => "error",
        }
    }

    /// The WebSocket close code that follows `session_end`.
    pub fn close_code(self) -> u16 {
        match self {
            EndReason::ServerShutdown => 1001,
            EndReason::Error => 1011,
            _ => 1000,
        }
    }

    /// Whether the segment in progress is finished and its final delivered
    /// before `session_end` (an orderly end), or the session stops at once.
    pub(super) fn flushes(self) -> bool {
        matches!(
            self,
            EndReason::ClientEnd | EndReason::ServerShutdown | EndReason::MaxDuration
        )
    }
}

/// The session's bounds and timing, from the settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionConfig {
    pub vad_hangover_ms: u32,
    pub max_segment_ms: u32,
    pub interim_interval_ms: u32,
    /// Finals that may wait for room in the model queue before the session
    /// stops reading audio.
    pub finals_waiting_max: usize,
    /// Finals of this session the engine may hold at once (queued or being
    /// computed); the rest wait in the session, so one session cannot fill
    /// the model queue (or a remote engine tier) ahead of the others.
    pub finals_in_flight_max: usize,
}
