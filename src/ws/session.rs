//! The session core ([`crate::session`]) as the WebSocket connection and
//! the tests see it: its types, and the native protocol's [`Output`]
//! (`native.rs` adds `Session::on_text`, `Session::take_outputs` and
//! `Session::start_message`).

pub use super::native::Output;
pub use crate::session::*;

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
