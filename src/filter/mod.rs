//! The per-stream state machine: every status returned to Envoy is decided here.

pub(crate) mod callouts;
pub(crate) mod core;
pub(crate) mod hooks;
pub(crate) mod reply;
pub(crate) mod streams;
