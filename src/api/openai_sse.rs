//! `POST /v1/audio/transcriptions` with `stream=true`: the transcript as
//! Server-Sent Events, the way OpenAI streams it. Each segment's text goes
//! out as a `transcript.text.delta` as soon as it and the segments before
//! it are transcribed (the deltas joined are the full text), then one
//! `transcript.text.done` with the full text:
//!
//! ```text
//! data: {"type":"transcript.text.delta","delta":"alpha bravo"}
//!
//! data: {"type":"transcript.text.delta","delta":" charlie"}
//!
//! data: {"type":"transcript.text.done","text":"alpha bravo charlie","usage":{"type":"duration","seconds":4.5}}
//! ```
//!
//! Errors found before the first event (bad form, undecodable audio, a full
//! queue) are answered as usual, with a status; one met after it is a last
//! `data: {"error": {...}}` event, which OpenAI's SDKs raise. The work runs
//! in a task on the core; the connection writes each event as one chunk as
//! it comes (`http::conn`). When the client leaves, the connection drops
//! the event receiver, the task stops at its next event and drops its
//! pending job receivers, and the pool drops those jobs unrun.

use std::ops::ControlFlow;
use std::rc::Rc;

use serde::Serialize;

use super::batch::{self, PreparedAudio};
use super::openai_error::OpenAiError;
use crate::core::CoreContext;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::model::TranscribeOptions;

#[derive(Serialize)]
#[serde(tag = "type")]
enum StreamEvent<'a> {
    #[serde(rename = "transcript.text.delta")]
    Delta { delta: &'a str },
    #[serde(rename = "transcript.text.done")]
    Done { text: &'a str, usage: Usage },
}

/// The `usage` of `transcript.text.done`: the audio's duration, OpenAI's
/// `{"type": "duration", "seconds"}` form (we count no tokens), as the
/// Realtime dialect's `completed` reports it.
#[derive(Serialize)]
struct Usage {
    #[serde(rename = "type")]
    kind: &'static str,
    seconds: f64,
}

impl Usage {
    fn duration(seconds: f64) -> Usage {
        Usage {
            kind: "duration",
            seconds: (seconds.max(0.0) * 1000.0).round() / 1000.0,
        }
    }
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    error: OpenAiError<'a>,
}

/// One Server-Sent Event carrying `data` as JSON.
fn event_bytes(data: &impl Serialize) -> Vec<u8> {
    let mut bytes = b"data: ".to_vec();
    // Our own event types always serialize.
    let _ = serde_json::to_writer(&mut bytes, data);
    bytes.extend_from_slice(b"\n\n");
    bytes
}

/// Start a streamed transcription: decode and segment the audio here (so
/// that bad audio is still a plain error answer), then hand the model work
/// to a task and answer with its events.
///
/// # Errors
/// As `batch::prepare`.
pub async fn transcriptions(
    core: &Rc<CoreContext>,
    request: &mut Request,
    options: TranscribeOptions,
) -> Result<Response, ApiError> {
    let audio = batch::prepare(core, request, None, core.shared.settings.session.vad_mode).await?;
    let (sender, receiver) = futures_channel::mpsc::unbounded();
    let task = stream_events(Rc::clone(core), audio, options, sender);
    monoio::spawn(crate::core::task::watched(
        core,
        "openai transcription stream",
        task,
    ));
    let mut response = Response::with_body(200, "text/event-stream; charset=utf-8", Vec::new())
        .header("Cache-Control", "no-cache")
        .header("X-Accel-Buffering", "no");
    response.stream = Some(receiver);
    response.close = true;
    Ok(response)
}

/// The task behind a streamed answer: a delta per segment, then the done
/// event (or an error event). Dropping `sender` ends the response.
async fn stream_events(
    core: Rc<CoreContext>,
    audio: PreparedAudio,
    options: TranscribeOptions,
    sender: futures_channel::mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut first = true;
    let mut delta = String::new();
    let result = batch::run_batch_each(&core, &audio, &options, |segment| {
        delta.clear();
        if !first {
            delta.push(' ');
        }
        first = false;
        delta.push_str(&segment.text);
        let event = event_bytes(&StreamEvent::Delta { delta: &delta });
        match sender.unbounded_send(event) {
            Ok(()) => ControlFlow::Continue(()),
            // The client has gone: stop the work.
            Err(_) => ControlFlow::Break(()),
        }
    })
    .await;
    if sender.is_closed() {
        // Nobody to tell; the jobs not run were dropped with their receivers.
        return;
    }
    let last = match result {
        Ok(transcript) => event_bytes(&StreamEvent::Done {
            text: &transcript.text(),
            usage: Usage::duration(transcript.duration),
        }),
        Err(error) => event_bytes(&ErrorEvent {
            error: OpenAiError::of(&error),
        }),
    };
    let _ = sender.unbounded_send(last);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_data_lines_of_json() {
        assert_eq!(
            event_bytes(&StreamEvent::Delta { delta: " a\nb" }),
            b"data: {\"type\":\"transcript.text.delta\",\"delta\":\" a\\nb\"}\n\n".to_vec()
        );
        assert_eq!(
            event_bytes(&StreamEvent::Done {
                text: "x",
                usage: Usage::duration(4.32109),
            }),
            b"data: {\"type\":\"transcript.text.done\",\"text\":\"x\",\"usage\":{\"type\":\"duration\",\"seconds\":4.321}}\n\n".to_vec()
        );
    }
}
