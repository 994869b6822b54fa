//! The HTTP filter API: requests, responses, the response writer, handler traits and
//! middleware, streamed replies, raw filters and the wire grammar checks.

pub(crate) mod attr;
pub(crate) mod body;
pub(crate) mod callout_stream;
pub(crate) mod control;
pub(crate) mod info;
pub(crate) mod pipeline;
pub(crate) mod raw;
pub(crate) mod reply_stream;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod stats;
pub(crate) mod trace;
pub(crate) mod writer;
