//! `loadtests`: the load generator for `transcription-server`.
//!
//! The `loadgen` binary (`src/main.rs`) parses the command line and calls into
//! these modules:
//!
//! * [`target`] — `--url` parsing and the loopback-only safety rule;
//! * [`http`] — a small blocking HTTP/1.1 keep-alive client;
//! * [`runner`] — one thread per connection, closed- or open-loop pacing,
//!   warm-up, time and request bounds;
//! * [`stats`] — histograms, counters, the human summary and the JSON line;
//! * [`scenarios`] — what each run sends (`health`, `transcribe`, …).

pub mod http;
pub mod runner;
pub mod scenarios;
pub mod stats;
pub mod target;
