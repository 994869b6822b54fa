//! State machines of the filter kinds: for each stream (or connection) of a kind, every status
//! a hook returns to Envoy is decided here.
//!
//! - [`http`]: the HTTP filter stream.

pub(crate) mod background;
pub(crate) mod callouts;
pub(crate) mod headers;
pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod network;
pub(crate) mod udp;
