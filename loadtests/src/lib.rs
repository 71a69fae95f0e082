//! `loadtests`: the load generator for `transcription-server`.
//!
//! The `loadgen` binary (`src/main.rs`) parses the command line and calls into
//! these modules:
//!
//! * [`dialect`] — the wire dialects `stream` speaks (native, Deepgram, OpenAI
//!   Realtime);
//! * [`target`] — `--url` parsing and the loopback-only safety rule;
//! * [`http`] — a small blocking HTTP/1.1 keep-alive client;
//! * [`runner`] — one thread per connection, closed- or open-loop pacing,
//!   warm-up, time and request bounds;
//! * [`stats`] — histograms, counters, the human summary and the JSON line;
//! * [`scenarios`] — what each run sends (`health`, `transcribe`, `stream`,
//!   `idle`);
//! * [`ws`] — blocking WebSocket connections (tungstenite) for `stream` and
//!   `idle`, and a hand-made upgrade returning the raw socket;
//! * [`wsframe`] — WebSocket frame encoder (masked client frames) and
//!   incremental server-frame decoder for the multiplexed `stream` driver;
//! * [`streaming`] — the pure parts of `stream`: chunk schedule, stream time →
//!   chunk mapping, server messages, the ordering checker;
//! * [`wav`] — finding the PCM16 mono `data` chunk of a WAV file;
//! * [`sys`] — `RLIMIT_NOFILE`, a process's `VmRSS` and CPU time;
//! * [`plot`] — the `loadplot` binary's parsing of JSON lines, plot series
//!   and SVG drawing (`plotters`, SVG backend only).

pub mod dialect;
pub mod http;
pub mod plot;
pub mod runner;
pub mod scenarios;
pub mod stats;
pub mod streaming;
pub mod sys;
pub mod target;
pub mod wav;
pub mod ws;
pub mod wsframe;
