//! Operating errors of the request path and the one mapping from an error kind
//! to its HTTP status and public error code (API.md, "Errors").
//!
//! Handlers return an [`ApiError`]; the connection turns it into the JSON body
//! `{"error": {"code": …, "message": …}}` with the status from
//! [`ErrorKind::status`]. Nothing else chooses a status for an error.

use std::borrow::Cow;
use std::fmt;

/// The kinds of error a client can be told about. Small and `Copy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    NotFound,
    SessionNotFound,
    MethodNotAllowed,
    RequestTimeout,
    /// A WebSocket upgrade asking for a protocol version other than 13
    /// (RFC 6455 §4.4): answered with `Sec-WebSocket-Version: 13`.
    UpgradeRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidAudio,
    HeadersTooLarge,
    Internal,
    Overloaded,
    ShuttingDown,
    /// Cluster mode is off, or Redis (or the cluster agent) cannot be reached.
    ClusterUnavailable,
    /// The node owning a session did not answer in time.
    ClusterTimeout,
    /// The loaded model cannot do what was asked (OpenAI dialect: a
    /// translation with an English-only model).
    UnsupportedModel,
    /// No model by that id (OpenAI dialect: `GET /v1/models/{id}`).
    ModelNotFound,
}

impl ErrorKind {
    /// The HTTP status code.
    pub const fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest | ErrorKind::UnsupportedModel => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound | ErrorKind::SessionNotFound | ErrorKind::ModelNotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::UpgradeRequired => 426,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::InvalidAudio => 422,
            ErrorKind::HeadersTooLarge => 431,
            ErrorKind::Internal => 500,
            ErrorKind::Overloaded | ErrorKind::ShuttingDown | ErrorKind::ClusterUnavailable => 503,
            ErrorKind::ClusterTimeout => 504,
        }
    }

    /// The public error code of API.md.
    pub const fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::SessionNotFound => "session_not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::UpgradeRequired => "upgrade_required",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::InvalidAudio => "invalid_audio",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::Internal => "internal",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::ClusterUnavailable => "cluster_unavailable",
            ErrorKind::ClusterTimeout => "cluster_timeout",
            ErrorKind::UnsupportedModel => "unsupported_model",
            ErrorKind::ModelNotFound => "model_not_found",
        }
    }

    /// Whether the connection must be closed after this error because the
    /// request's framing can no longer be trusted (or the client is too slow).
    pub const fn closes_connection(self) -> bool {
        matches!(
            self,
            ErrorKind::BadRequest
                | ErrorKind::RequestTimeout
                | ErrorKind::UpgradeRequired
                | ErrorKind::PayloadTooLarge
                | ErrorKind::HeadersTooLarge
                | ErrorKind::Internal
                | ErrorKind::ShuttingDown
        )
    }
}

/// An error answer: a kind and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: Cow<'static, str>,
    /// The `Retry-After` of a refusal that knows when it passes (the
    /// engine's batch backlog); other `overloaded` and `shutting_down`
    /// answers get the default.
    pub retry_after_s: Option<u32>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The same error with a `Retry-After` of `seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorKind::BadRequest, message)
    }

    /// The JSON body of API.md.
    pub fn to_json(&self) -> Vec<u8> {
        let body = serde_json::json!({
            "error": {"code": self.kind.code(), "message": self.message}
        });
        body.to_string().into_bytes()
    }
}

impl From<crate::cluster::ClusterError> for ApiError {
    fn from(error: crate::cluster::ClusterError) -> Self {
        match error {
            crate::cluster::ClusterError::Unavailable => ApiError::new(
                ErrorKind::ClusterUnavailable,
                "the cluster registry (Redis) cannot be reached; retry later",
            ),
            crate::cluster::ClusterError::Timeout => ApiError::new(
                ErrorKind::ClusterTimeout,
                "the node owning the session did not answer in time",
            ),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// The error codes of the streaming protocol and the WebSocket close code
/// each one is followed by (`None`: the session continues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsErrorKind {
    SessionLimitExceeded,
    InvalidMessage,
    UnsupportedFormat,
    MessageTooLarge,
    SlowConsumer,
    Overloaded,
    Internal,
    /// A frame that breaks RFC 6455 (unmasked, reserved bits, bad opcode,
    /// bad control frame, …): close 1002.
    ProtocolError,
    /// A text message that is not UTF-8: close 1007.
    InvalidUtf8,
    /// A new stream while the server drains: close 1013 (try again later,
    /// which a balancer sends to another node).
    ShuttingDown,
}

impl WsErrorKind {
    pub const fn code(self) -> &'static str {
        match self {
            WsErrorKind::SessionLimitExceeded => "session_limit_exceeded",
            WsErrorKind::InvalidMessage => "invalid_message",
            WsErrorKind::UnsupportedFormat => "unsupported_format",
            WsErrorKind::MessageTooLarge => "message_too_large",
            WsErrorKind::SlowConsumer => "slow_consumer",
            WsErrorKind::Overloaded => "overloaded",
            WsErrorKind::Internal => "internal",
            WsErrorKind::ProtocolError | WsErrorKind::InvalidUtf8 => "protocol_error",
            WsErrorKind::ShuttingDown => "shutting_down",
        }
    }

    pub const fn close_code(self) -> Option<u16> {
        match self {
            WsErrorKind::SessionLimitExceeded | WsErrorKind::ShuttingDown => Some(1013),
            WsErrorKind::UnsupportedFormat => Some(1003),
            WsErrorKind::MessageTooLarge => Some(1009),
            WsErrorKind::SlowConsumer => Some(1008),
            WsErrorKind::Internal => Some(1011),
            WsErrorKind::ProtocolError => Some(1002),
            WsErrorKind::InvalidUtf8 => Some(1007),
            WsErrorKind::InvalidMessage | WsErrorKind::Overloaded => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_documented_status_and_code() {
        let expected = [
            (ErrorKind::BadRequest, 400, "bad_request"),
            (ErrorKind::Unauthorized, 401, "unauthorized"),
            (ErrorKind::NotFound, 404, "not_found"),
            (ErrorKind::SessionNotFound, 404, "session_not_found"),
            (ErrorKind::MethodNotAllowed, 405, "method_not_allowed"),
            (ErrorKind::RequestTimeout, 408, "request_timeout"),
            (ErrorKind::UpgradeRequired, 426, "upgrade_required"),
            (ErrorKind::PayloadTooLarge, 413, "payload_too_large"),
            (
                ErrorKind::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (ErrorKind::InvalidAudio, 422, "invalid_audio"),
            (ErrorKind::HeadersTooLarge, 431, "headers_too_large"),
            (ErrorKind::Internal, 500, "internal"),
            (ErrorKind::Overloaded, 503, "overloaded"),
            (ErrorKind::ShuttingDown, 503, "shutting_down"),
            (ErrorKind::ClusterUnavailable, 503, "cluster_unavailable"),
            (ErrorKind::ClusterTimeout, 504, "cluster_timeout"),
            (ErrorKind::UnsupportedModel, 400, "unsupported_model"),
            (ErrorKind::ModelNotFound, 404, "model_not_found"),
        ];
        for (kind, status, code) in expected {
            assert_eq!(kind.status(), status);
            assert_eq!(kind.code(), code);
        }
    }

    #[test]
    fn websocket_errors_close_with_the_documented_codes() {
        let expected = [
            (
                WsErrorKind::SessionLimitExceeded,
                "session_limit_exceeded",
                Some(1013),
            ),
            (WsErrorKind::InvalidMessage, "invalid_message", None),
            (
                WsErrorKind::UnsupportedFormat,
                "unsupported_format",
                Some(1003),
            ),
            (
                WsErrorKind::MessageTooLarge,
                "message_too_large",
                Some(1009),
            ),
            (WsErrorKind::SlowConsumer, "slow_consumer", Some(1008)),
            (WsErrorKind::Overloaded, "overloaded", None),
            (WsErrorKind::Internal, "internal", Some(1011)),
            (WsErrorKind::ProtocolError, "protocol_error", Some(1002)),
            (WsErrorKind::InvalidUtf8, "protocol_error", Some(1007)),
            (WsErrorKind::ShuttingDown, "shutting_down", Some(1013)),
        ];
        for (kind, code, close) in expected {
            assert_eq!((kind.code(), kind.close_code()), (code, close));
        }
    }

    #[test]
    fn cluster_errors_map_to_their_kinds_and_codes() {
        use crate::cluster::ClusterError;
        for error in [ClusterError::Unavailable, ClusterError::Timeout] {
            let api = ApiError::from(error);
            assert_eq!(api.kind.code(), error.code());
            assert!(!api.kind.closes_connection());
        }
        assert_eq!(ApiError::from(ClusterError::Timeout).kind.status(), 504);
    }

    #[test]
    fn json_body_has_the_contract_shape() {
        let error = ApiError::new(ErrorKind::NotFound, "no route");
        let value: serde_json::Value = serde_json::from_slice(&error.to_json()).expect("json");
        assert_eq!(value["error"]["code"], "not_found");
        assert_eq!(value["error"]["message"], "no route");
    }
}
