//! The WebSocket opening handshake (RFC 6455 §4.2), done by the server on the
//! parsed request head.

use crate::error::ApiError;
use crate::http::{Method, RequestHead, Response};

/// Check that `head` is a valid WebSocket upgrade and return the
/// `Sec-WebSocket-Accept` value.
///
/// # Errors
/// `400 bad_request` naming what is missing.
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
    if head.header("sec-websocket-version") != Some("13") {
        return Err(ApiError::bad_request("Sec-WebSocket-Version must be 13"));
    }
    let key = head
        .header("sec-websocket-key")
        .filter(|key| key.len() == 24)
        .ok_or_else(|| ApiError::bad_request("missing or malformed Sec-WebSocket-Key"))?;
    Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` answer. When the client offered
/// subprotocols (`Sec-WebSocket-Protocol`), the first is echoed: browsers
/// fail a handshake that names none of theirs, and clients that carry a key
/// in the list put a protocol name first (OpenAI's `realtime`); a key is
/// never echoed.
pub fn switching_protocols(accept: &str, head: &RequestHead) -> Vec<u8> {
    let protocol = head
        .header("sec-websocket-protocol")
        .and_then(|list| {
            list.split(',')
                .map(str::trim)
                .find(|protocol| !protocol.starts_with("openai-insecure-api-key."))
        })
        .filter(|protocol| {
            !protocol.is_empty()
                && protocol
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        });
    let protocol_line = protocol
        .map(|protocol| format!("Sec-WebSocket-Protocol: {protocol}\r\n"))
        .unwrap_or_default();
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nServer: transcription-service/{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n{protocol_line}\r\n",
        crate::VERSION
    )
    .into_bytes()
}

/// A request to the streaming endpoint without an upgrade gets this.
pub fn not_an_upgrade(error: &ApiError) -> Response {
    Response::error(error).header("Upgrade", "websocket")
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
}
