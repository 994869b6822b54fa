//! Allocation-free buffers for tapping streams.
//!
//! Everything here is pure code with no Envoy types. Types that keep bytes allocate their
//! storage once, at construction, with a capacity the caller chooses; after that nothing in
//! this module allocates.
//!
//! * [`Ring`]: the last N bytes of a stream.
//! * [`HeadTail`]: the first H and last T bytes of a stream.
//! * [`SseParser`]: server-sent events, parsed incrementally into fixed storage.
//! * [`logfmt`]: deterministic `msg key=value` log lines written into any `fmt::Write`.

mod head_tail;
pub mod logfmt;
mod ring;
mod sse;

pub use head_tail::HeadTail;
pub use ring::Ring;
pub use sse::{Event, SseParser};
