//! The bottom of the crate: runtime utilities for tasks on one thread. It
//! imports nothing from the crate, and everything above may use it.
//!
//! - [`Latch`]: a one-way broadcast (a core's drain, a connection's
//!   closing and kill, a session being over).
//! - [`Notify`]: wakes one waiting task.
//! - [`catch_unwind_future`]: the panic boundary of a task.
//! - [`Watched`]: times each poll of a future and reports stalls.

mod latch;
mod notify;
mod stall;
mod unwind;

pub use latch::Latch;
pub use notify::Notify;
pub use stall::Watched;
pub use unwind::{catch_unwind_future, panic_message};
