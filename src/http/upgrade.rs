//! The WebSocket opening handshake (RFC 6455 §4.2), done by the server on the
//! parsed request head.

use crate::error::{ApiError, ErrorKind};
use crate::http::{Method, RequestHead, Response};

/// Check that `head` is a valid WebSocket upgrade and return the
/// `Sec-WebSocket-Accept` value.
///
/// # Errors
/// `400 bad_request` naming what is missing; `426 upgrade_required` for a
/// `Sec-WebSocket-Version` other than 13 (RFC 6455 §4.4: the client may
/// retry with a version the answer's `Sec-WebSocket-Version` names).
pub fn accept_key(head: &RequestHead) -> Result<String, ApiError> {
    if head.method != Method::Get || head.minor_version < 1 {
        return Err(ApiError::bad_request(
            "a WebSocket upgrade must be an HTTP/1.1 GET",
        ));
    }
    let has_token = |name: &str, token: &str| {
        head.headers
            .iter()
            .filter(|(key, _)| key == name)
            .flat_map(|(_, value)| value.split(','))
            .any(|value| value.trim().eq_ignore_ascii_case(token))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(ApiError::bad_request(
            "this endpoint needs a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)",
        ));
    }
    match head.header("sec-websocket-version").map(str::trim) {
        Some(WEBSOCKET_VERSION) => {}
        Some(_) => {
            return Err(ApiError::new(
                ErrorKind::UpgradeRequired,
                "this server speaks WebSocket version 13 only",
            ))
        }
        None => return Err(ApiError::bad_request("missing Sec-WebSocket-Version")),
    }
    let key = head
        .header("sec-websocket-key")
        .filter(|key| key.len() == 24)
        .ok_or_else(|| ApiError::bad_request("missing or malformed Sec-WebSocket-Key"))?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` answer, naming the subprotocol chosen
/// among the client's, if any.
pub fn switching_protocols(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    let protocol = protocol
        .map(|protocol| format!("Sec-WebSocket-Protocol: {protocol}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: transcription-service/{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol}\r\n",
        crate::VERSION
    )
    .into_bytes()
}

/// The one WebSocket protocol version this server speaks (RFC 6455).
pub const WEBSOCKET_VERSION: &str = "13";

/// A request to the streaming endpoint without a valid upgrade gets this;
/// a version it does not speak also learns the one it does.
pub fn not_an_upgrade(error: &ApiError) -> Response {
    let response = Response::error(error).header("Upgrade", "websocket");
    if error.kind == ErrorKind::UpgradeRequired {
        response.header("Sec-WebSocket-Version", WEBSOCKET_VERSION)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_head;

    fn head(text: &str) -> RequestHead {
        parse_head(text.as_bytes(), 16 * 1024)
            .expect("valid")
            .expect("complete")
            .0
    }

    #[test]
    fn the_rfc_example_key() {
        let head = head("GET /v1/transcribe/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        assert_eq!(
            accept_key(&head).expect("valid"),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn incomplete_handshakes_are_refused() {
        for text in [
            "GET /s HTTP/1.1\r\n\r\n",
            "GET /s HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "GET /s HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "GET /s HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ] {
            assert!(accept_key(&head(text)).is_err(), "{text:?}");
        }
    }

    #[test]
    fn another_version_is_426_with_the_version_spoken() {
        for version in ["8", "14", "13, 8", "x"] {
            let text = format!("GET /s HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n");
            let error = accept_key(&head(&text)).expect_err(version);
            assert_eq!(error.kind, ErrorKind::UpgradeRequired, "{version}");
            let response = not_an_upgrade(&error);
            assert_eq!(response.status, 426);
        }
        let missing = "GET /s HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(
            accept_key(&head(missing)).expect_err("missing").kind,
            ErrorKind::BadRequest
        );
    }
}
