//! `transcribe stream FILE`: the file, decoded here to PCM16, sent over the
//! streaming WebSocket as the microphone would send it, with every transcript
//! shown as it arrives.
//!
//! The session's parameters go in the upgrade's query (`sample_rate`,
//! `encoding`, `interim_results`, `vad_mode`, `language`), the key in an
//! `Authorization` header. Audio leaves in chunks of `--chunk-ms` (20 ms),
//! paced at real time with `--realtime`, otherwise as fast as the server
//! takes them; then `{"type":"end"}`, and everything is read up to the
//! server's close.
//!
//! One thread does both directions without deadlock: while audio is being
//! sent the socket is non-blocking, and every turn of the loop first reads
//! whatever the server has sent, then writes the next chunk only once the
//! previous one has left. When the server stops reading (backpressure), our
//! writes wait and our reads go on, so the server's finals always get out.
//! After `end` the socket blocks on reads until the close.

use std::io::{IsTerminal, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::audio_file::{self, RawInput};
use crate::client::{io_reason, Client, KeyRole};
use crate::error::{output_error, CliError, FailureKind};
use crate::view::{terminal_width, TranscriptView, ViewMode};

/// How long the upgrade may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest silence from the server after `end` before giving up. Finals
/// come as each segment is transcribed; a real model on a slow machine takes
/// seconds per segment, never minutes.
pub const FINALS_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the sending loop sleeps when it can neither read nor write.
const IDLE_POLL: Duration = Duration::from_millis(2);
/// The largest message the client accepts from the server (transcripts are
/// small; this only bounds a misbehaving server).
const SERVER_MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Error codes after which the server closes the socket: they are reported
/// once, in the final message, rather than as they arrive.
const CLOSING_ERROR_CODES: [&str; 5] = [
    "session_limit_exceeded",
    "unsupported_format",
    "message_too_large",
    "slow_consumer",
    "protocol_error",
];

/// Everything a stream run needs besides the client.
pub struct StreamRequest {
    pub file: PathBuf,
    pub raw: RawInput,
    pub language: Option<String>,
    pub vad_mode: Option<u8>,
    pub realtime: bool,
    pub interims: bool,
    pub json: bool,
    pub chunk_ms: u32,
}

/// What the server said about the session, gathered while streaming.
#[derive(Debug, Default)]
struct StreamState {
    session_id: Option<String>,
    session_end: Option<Value>,
    /// The close frame's code and reason, when there was one.
    close: Option<(u16, String)>,
    /// An error message that announced the close (a code in
    /// [`CLOSING_ERROR_CODES`]), reported at the end.
    closing_error: Option<(String, String)>,
    /// Segments the engine failed on (`internal` errors while the session
    /// went on).
    failed_segments: usize,
    /// Why the connection ended without a close, if it did.
    lost: Option<String>,
}

/// Whether the socket is still open after a read turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Open,
    Closed,
}

/// Stream the file and show its transcripts.
///
/// # Errors
/// Audio failures for a file that cannot be read or decoded; connect, auth
/// and server failures; a server failure when the session does not end with
/// `client_end` or a segment could not be transcribed.
pub fn run(client: &Client, request: &StreamRequest) -> Result<(), CliError> {
    let bytes = audio_file::read(&request.file)?;
    let container = audio_file::classify(&request.file, &bytes, request.raw)?;
    let pcm = audio_file::decode_for_stream(container, &bytes)
        .map_err(|error| error.in_file(&request.file))?;
    drop(bytes);
    let audio = audio_file::to_le_bytes(&pcm.samples);
    let mode = if request.json {
        ViewMode::Json
    } else if std::io::stdout().is_terminal() {
        ViewMode::Terminal {
            width: terminal_width(),
        }
    } else {
        ViewMode::Plain {
            interims: request.interims,
        }
    };
    let mut view = TranscriptView::new(std::io::stdout().lock(), mode);
    let chatty = mode != ViewMode::Json && std::io::stderr().is_terminal();
    let query = stream_query(pcm.sample_rate, view.wants_interims(), request);
    let mut socket = connect(client, &query)?;
    let interrupted = install_interrupt();
    let pacing = Pacing {
        chunk_bytes: chunk_bytes(pcm.sample_rate, request.chunk_ms),
        bytes_per_second: f64::from(pcm.sample_rate) * 2.0,
        realtime: request.realtime,
    };
    if chatty {
        eprintln!(
            "transcribe: streaming {} ({:.2} s at {} Hz{}) to {}",
            request.file.display(),
            pcm.duration_s(),
            pcm.sample_rate,
            if request.realtime { ", real time" } else { "" },
            client.endpoint.base
        );
    }
    let mut state = StreamState::default();
    let mut turn = Turn {
        socket: &mut socket,
        view: &mut view,
        state: &mut state,
    };
    turn.send_all(&audio, pacing, &interrupted)?;
    turn.read_to_close()?;
    view.clear_interim().map_err(output_error)?;
    if chatty {
        if let Some(end) = &state.session_end {
            eprintln!("transcribe: {}", describe_end(end));
        }
    }
    conclude(&state, &client.endpoint.base)
}

/// The upgrade's path and query.
fn stream_query(sample_rate: u32, interims: bool, request: &StreamRequest) -> String {
    let mut query = format!(
        "/v1/transcribe/stream?sample_rate={sample_rate}&encoding=pcm_s16le&interim_results={interims}"
    );
    if let Some(vad_mode) = request.vad_mode {
        query.push_str(&format!("&vad_mode={vad_mode}"));
    }
    if let Some(language) = &request.language {
        query.push_str("&language=");
        query.push_str(&percent_encode(language));
    }
    query
}

/// Percent-encode a query value (anything but unreserved characters).
fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Bytes of PCM16 in a chunk of `chunk_ms` (whole samples, at least one).
fn chunk_bytes(sample_rate: u32, chunk_ms: u32) -> usize {
    let samples = (u64::from(sample_rate) * u64::from(chunk_ms) / 1000).max(1);
    usize::try_from(samples * 2).unwrap_or(usize::MAX)
}

/// Open the socket and upgrade it.
fn connect(client: &Client, path_and_query: &str) -> Result<WebSocket<TcpStream>, CliError> {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::handshake::HandshakeError;

    let stream = client.endpoint.connect_tcp()?;
    let configure = stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)))
        .and_then(|()| stream.set_nodelay(true));
    configure.map_err(|error| client.endpoint.unreachable(&io_reason(&error)))?;
    let url = client.endpoint.ws_url(path_and_query);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| CliError::usage(format!("cannot build the request for {url}: {error}")))?;
    if let Some(key) = client.key(KeyRole::Api) {
        let value = tungstenite::http::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| CliError::usage("--api-key must be printable ASCII"))?;
        request
            .headers_mut()
            .insert(tungstenite::http::header::AUTHORIZATION, value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(SERVER_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(SERVER_MESSAGE_BYTES_MAX));
    match tungstenite::client::client_with_config(request, stream, Some(config)) {
        Ok((socket, _response)) => Ok(socket),
        Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response
                .body()
                .as_ref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default();
            Err(client.http_failure(response.status().as_u16(), &body, KeyRole::Api))
        }
        Err(HandshakeError::Failure(tungstenite::Error::Io(error))) => Err(CliError::new(
            FailureKind::Connect,
            format!(
                "the WebSocket upgrade at {} failed: {}",
                client.endpoint.base,
                io_reason(&error)
            ),
        )),
        Err(HandshakeError::Failure(error)) => Err(CliError::server(format!(
            "the WebSocket upgrade at {} failed: {error}",
            client.endpoint.base
        ))),
        Err(HandshakeError::Interrupted(_)) => Err(CliError::new(
            FailureKind::Connect,
            format!(
                "the WebSocket upgrade at {} timed out",
                client.endpoint.base
            ),
        )),
    }
}

/// Ctrl-C once: stop sending audio, end the session, print the remaining
/// finals. Ctrl-C again: exit at once with 130.
fn install_interrupt() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    // The conditional shutdown must be registered first: it acts on the
    // second signal, when the flag is already set.
    let _ = signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&flag),
    );
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&flag));
    flag
}

/// How audio is cut and paced.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    chunk_bytes: usize,
    bytes_per_second: f64,
    realtime: bool,
}

/// The socket, the view and what has been learnt, for the two phases.
struct Turn<'a, W: Write> {
    socket: &'a mut WebSocket<TcpStream>,
    view: &'a mut TranscriptView<W>,
    state: &'a mut StreamState,
}

impl<W: Write> Turn<'_, W> {
    /// Send every chunk and then `end`, reading whatever arrives meanwhile.
    /// Returns when `end` has left, or when the socket can no longer be
    /// written (the reads that follow tell why).
    fn send_all(
        &mut self,
        audio: &[u8],
        pacing: Pacing,
        interrupted: &AtomicBool,
    ) -> Result<(), CliError> {
        let set = self.socket.get_ref().set_nonblocking(true);
        set.map_err(|error| CliError::server(format!("cannot use the socket: {error}")))?;
        let started = Instant::now();
        let mut offset = 0;
        let mut end_queued = false;
        let mut unflushed = false;
        let mut noted_interrupt = false;
        // Until `end` has been queued and has left.
        while !end_queued || unflushed {
            if self.read_ready()? == Link::Closed {
                return Ok(());
            }
            let mut progressed = false;
            if unflushed {
                match self.socket.flush() {
                    Ok(()) => {
                        unflushed = false;
                        progressed = true;
                    }
                    Err(error) if would_block(&error) => {}
                    Err(_) => return Ok(()),
                }
            }
            if !unflushed && !end_queued {
                if interrupted.load(Ordering::Relaxed) && !noted_interrupt {
                    noted_interrupt = true;
                    offset = audio.len();
                    self.view.clear_interim().map_err(output_error)?;
                    eprintln!("transcribe: interrupted: ending the session (Ctrl-C again to quit)");
                }
                let message = if offset < audio.len() {
                    let due = Duration::from_secs_f64(offset as f64 / pacing.bytes_per_second);
                    if pacing.realtime && started.elapsed() < due {
                        None
                    } else {
                        let end = (offset + pacing.chunk_bytes).min(audio.len());
                        let chunk = audio[offset..end].to_vec();
                        offset = end;
                        Some(Message::binary(chunk))
                    }
                } else {
                    end_queued = true;
                    Some(Message::text(r#"{"type":"end"}"#))
                };
                if let Some(message) = message {
                    progressed = true;
                    match self.socket.send(message) {
                        Ok(()) => {}
                        Err(error) if would_block(&error) => unflushed = true,
                        Err(_) => return Ok(()),
                    }
                }
            }
            if !progressed {
                std::thread::sleep(IDLE_POLL);
            }
        }
        Ok(())
    }

    /// Read every message the server has sent so far (non-blocking).
    fn read_ready(&mut self) -> Result<Link, CliError> {
        loop {
            match self.socket.read() {
                Ok(message) => self.on_message(message)?,
                Err(error) if would_block(&error) => return Ok(Link::Open),
                Err(error) => return Ok(self.on_read_error(error)),
            }
        }
    }

    /// After `end`: block on reads until the server closes.
    fn read_to_close(&mut self) -> Result<(), CliError> {
        let stream = self.socket.get_ref();
        let set = stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(FINALS_TIMEOUT)));
        set.map_err(|error| CliError::server(format!("cannot use the socket: {error}")))?;
        loop {
            match self.socket.read() {
                Ok(message) => self.on_message(message)?,
                Err(tungstenite::Error::Io(error))
                    if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) if would_block(&error) => {
                    self.state.lost = Some(format!(
                        "no answer for {} s after the end of the audio",
                        FINALS_TIMEOUT.as_secs()
                    ));
                    return Ok(());
                }
                Err(error) => {
                    self.on_read_error(error);
                    return Ok(());
                }
            }
        }
    }

    fn on_read_error(&mut self, error: tungstenite::Error) -> Link {
        match error {
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {}
            tungstenite::Error::Io(error) => self.state.lost = Some(io_reason(&error)),
            other => self.state.lost = Some(other.to_string()),
        }
        Link::Closed
    }

    fn on_message(&mut self, message: Message) -> Result<(), CliError> {
        match message {
            Message::Text(text) => self.on_text(text.as_str()),
            Message::Close(frame) => {
                self.state.close = Some(match frame {
                    Some(frame) => (u16::from(frame.code), frame.reason.as_str().to_string()),
                    None => (1005, String::new()),
                });
                Ok(())
            }
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        }
    }

    fn on_text(&mut self, text: &str) -> Result<(), CliError> {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            self.view.clear_interim().map_err(output_error)?;
            eprintln!("transcribe: ignoring a message that is not JSON from the server");
            return Ok(());
        };
        self.view.on_message(text, &message).map_err(output_error)?;
        match message["type"].as_str() {
            Some("session_start") => {
                self.state.session_id = message["session_id"].as_str().map(str::to_string);
            }
            Some("session_end") => self.state.session_end = Some(message),
            Some("error") => self.on_error(&message)?,
            _ => {}
        }
        Ok(())
    }

    /// An `error` message: kept for the end when the server closes after it,
    /// shown at once (stderr) when the session goes on.
    fn on_error(&mut self, message: &Value) -> Result<(), CliError> {
        let code = message["code"].as_str().unwrap_or("unknown").to_string();
        let text = message["message"].as_str().unwrap_or_default().to_string();
        if CLOSING_ERROR_CODES.contains(&code.as_str()) {
            self.state.closing_error = Some((code, text));
            return Ok(());
        }
        if code == "internal" {
            self.state.failed_segments += 1;
        }
        self.view.clear_interim().map_err(output_error)?;
        eprintln!("transcribe: server error {code}: {text}");
        Ok(())
    }
}

/// Whether a tungstenite error only means "not now" (non-blocking socket) or
/// a read timeout.
fn would_block(error: &tungstenite::Error) -> bool {
    matches!(
        error,
        tungstenite::Error::Io(error)
            if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    )
}

/// The summary line of a `session_end`.
fn describe_end(end: &Value) -> String {
    let metrics = &end["metrics"];
    format!(
        "session {} ended ({}): {} segments, {:.2} s of audio",
        end["session_id"].as_str().unwrap_or("?"),
        end["reason"].as_str().unwrap_or("?"),
        metrics["segments"].as_u64().unwrap_or(0),
        metrics["audio_seconds"].as_f64().unwrap_or(0.0)
    )
}

/// The outcome of the run from what the server said.
fn conclude(state: &StreamState, base: &str) -> Result<(), CliError> {
    if let Some(end) = &state.session_end {
        let reason = end["reason"].as_str().unwrap_or("unknown");
        if reason != "client_end" {
            return Err(CliError::server(format!(
                "the server ended the session early: {reason}{}",
                explain_reason(reason)
            )));
        }
        if state.failed_segments > 0 {
            return Err(CliError::server(format!(
                "{} segment(s) could not be transcribed (see the errors above)",
                state.failed_segments
            )));
        }
        return Ok(());
    }
    let cause = match &state.closing_error {
        Some((code, message)) => format!(": {code}: {message}"),
        None => String::new(),
    };
    match (&state.close, &state.lost) {
        (Some((code, reason)), _) => {
            let reason = if reason.is_empty() {
                close_code_name(*code).to_string()
            } else {
                reason.clone()
            };
            Err(CliError::server(format!(
                "the server closed the stream{cause} (close {code} {reason})"
            )))
        }
        (None, lost) => Err(CliError::server(format!(
            "the connection to {base} was lost before the session ended{cause}{}",
            lost.as_deref()
                .map(|lost| format!(" ({lost})"))
                .unwrap_or_default()
        ))),
    }
}

fn explain_reason(reason: &str) -> &'static str {
    match reason {
        "terminated" => " (an operator ended it)",
        "idle_timeout" => " (no audio for too long)",
        "max_duration" => {
            " (the server's session time limit; the rest of the audio was not transcribed)"
        }
        "server_shutdown" => " (the server is shutting down)",
        _ => "",
    }
}

/// RFC 6455 names of the close codes the server uses.
fn close_code_name(code: u16) -> &'static str {
    match code {
        1000 => "normal",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no code",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "internal error",
        1013 => "try again later",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_samples() {
        assert_eq!(chunk_bytes(16_000, 20), 640);
        assert_eq!(chunk_bytes(8_000, 20), 320);
        assert_eq!(chunk_bytes(16_000, 0), 2);
    }

    #[test]
    fn languages_are_percent_encoded() {
        assert_eq!(percent_encode("en"), "en");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn a_client_end_is_success_and_anything_else_is_not() {
        let ok = StreamState {
            session_end: Some(serde_json::json!({"type": "session_end", "reason": "client_end"})),
            ..StreamState::default()
        };
        assert!(conclude(&ok, "http://x").is_ok());
        let terminated = StreamState {
            session_end: Some(serde_json::json!({"type": "session_end", "reason": "terminated"})),
            ..StreamState::default()
        };
        let error = conclude(&terminated, "http://x").expect_err("terminated");
        assert_eq!(
            error.message,
            "the server ended the session early: terminated (an operator ended it)"
        );
        let refused = StreamState {
            close: Some((1013, String::new())),
            closing_error: Some(("session_limit_exceeded".into(), "full".into())),
            ..StreamState::default()
        };
        assert_eq!(
            conclude(&refused, "http://x").expect_err("refused").message,
            "the server closed the stream: session_limit_exceeded: full (close 1013 try again later)"
        );
        let lost = StreamState::default();
        assert_eq!(
            conclude(&lost, "http://x").expect_err("lost").message,
            "the connection to http://x was lost before the session ended"
        );
    }
}
