//! `transcribe`: `POST /v1/transcribe` with one audio file as the body, in a
//! loop — batch transcription throughput and latency, including the server's
//! `503 overloaded` answers when its model queue is full (counted by status).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{HttpOptions, HttpScenario};
use crate::http::build_request;

/// The path exercised.
pub const PATH: &str = "/v1/transcribe";

/// Largest body this scenario will load into memory and send.
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// What to send.
#[derive(Debug, Clone)]
pub struct TranscribeOptions<'a> {
    /// The audio file sent as the body.
    pub file: &'a Path,
    /// Its media type (`audio/wav` by default).
    pub content_type: &'a str,
    /// An optional query string (without `?`), e.g. `vad_mode=3&words=true`.
    pub query: Option<&'a str>,
}

/// Reads the file once and builds the scenario around it.
pub fn scenario(opts: &HttpOptions, t: &TranscribeOptions<'_>) -> Result<HttpScenario> {
    let meta = std::fs::metadata(t.file)
        .with_context(|| format!("cannot read audio file {}", t.file.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!("{} is larger than {MAX_FILE_BYTES} bytes", t.file.display());
    }
    let body = std::fs::read(t.file)
        .with_context(|| format!("cannot read audio file {}", t.file.display()))?;
    if t.content_type.contains("wav")
        && (body.len() < 12 || &body[0..4] != b"RIFF" || &body[8..12] != b"WAVE")
    {
        // Not fatal: sending bad audio on purpose is a fair test of 415/422.
        eprintln!(
            "warning: {} does not look like a RIFF/WAVE file but is sent as {}",
            t.file.display(),
            t.content_type
        );
    }
    if t.content_type.contains(['\r', '\n']) {
        bail!("--content-type must be a single line");
    }
    let path = match t.query {
        Some(q) if !q.is_empty() => {
            if q.contains([' ', '\r', '\n', '#']) {
                bail!("--query must be a URL-encoded query string");
            }
            format!("{PATH}?{}", q.trim_start_matches('?'))
        }
        _ => PATH.to_string(),
    };
    let request = build_request(
        "POST",
        &opts.target,
        &path,
        &opts.headers,
        Some((t.content_type, &body)),
    );
    Ok(HttpScenario::new("transcribe", opts, request))
}
