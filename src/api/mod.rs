//! The handler-facing API.

pub(crate) mod attr;
pub(crate) mod background;
pub(crate) mod body;
pub(crate) mod callout;
pub(crate) mod callout_stream;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod info;
pub(crate) mod join;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod pb;
pub(crate) mod pipeline;
pub(crate) mod published;
pub(crate) mod raw;
pub(crate) mod raw_slot;
pub(crate) mod registry;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod stats;
pub(crate) mod stream;
pub(crate) mod time;
pub(crate) mod trace;
pub(crate) mod writer;
