//! The HTTP filter stream's state machine: every status returned to Envoy's HTTP filter hooks
//! is decided here.

pub(crate) mod background;
pub(crate) mod callout_streams;

pub(crate) mod core;
pub(crate) mod envoy_stats;
pub(crate) mod hooks;
pub(crate) mod live;
pub(crate) mod machine;
pub(crate) mod meta;
pub(crate) mod pipeline;
pub(crate) mod reply;
pub(crate) mod slot;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod stats_flush;
