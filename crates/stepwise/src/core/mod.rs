//! The pure engine: events, workflow definitions and their validation, the
//! reducer, and the codecs that turn a run into data and back. Nothing here
//! spawns a task, does I/O, reads a clock or names a store: time comes in with
//! each tick, and what the reducer decides goes out as commands for a runtime
//! to carry out.
//!
//! Inside the layer, modules import downwards only:
//! `codec` ─► `reducer` ─► `define` ─► `context` ─► the basics (`event`,
//! `builtin`, `depth`, `error`, `ids`, `retry`, `state`).

pub(crate) mod builtin;
pub(crate) mod codec;
pub(crate) mod context;
pub(crate) mod define;
pub(crate) mod depth;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod ids;
pub(crate) mod reducer;
pub mod retry;
pub mod state;
