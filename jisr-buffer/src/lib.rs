//! # jisr-buffer
//!
//! Allocation-free buffers and parsers for tapping byte streams: server-sent events, token
//! usage of LLM responses, token budgets, ring and head-tail captures, logfmt lines and
//! compressed bodies decoded as they pass.
//!
//! Everything here is pure code with no Envoy types and no `unsafe`: it works in an LLM
//! client, another proxy or a log shipper as well as in a [jisr](https://docs.rs/jisr) filter,
//! which re-exports it as `jisr::buffer`. Types that keep bytes allocate their storage once,
//! at construction, with a capacity the caller chooses; after that nothing in this crate
//! allocates.
//!
//! * [`Ring`]: the last N bytes of a stream.
//! * [`HeadTail`]: the first H and last T bytes of a stream.
//! * [`SseParser`]: server-sent events, parsed incrementally into fixed storage.
//! * [`UsageChunkStripper`]: an OpenAI chat event stream without its usage-only chunk.
//! * [`UsageTracker`]: token usage of OpenAI, Anthropic and Gemini responses, streamed (SSE)
//!   or not (JSON), in constant memory.
//! * [`Encoding`] and, with the cargo feature `decompress`, `ContentDecoder`: compressed
//!   bodies (gzip, deflate, brotli, zstd) decoded as they pass, in bounded memory. Unlike the
//!   rest of this crate, a decoder allocates its window when its stream starts.
//! * [`json`]: find one value by key path in JSON text, without a JSON library.
//! * [`json_stream`]: find values by key path in JSON that arrives in pieces, in constant
//!   memory.
//! * [`Budgets`]: token budgets per key and time window, shared by all threads, lock-free;
//!   requests reserve an estimate ([`Reservation`]) and settle it to their real usage.
//! * [`logfmt`]: deterministic `msg key=value` log lines written into any `fmt::Write`.
//!
//! A streamed chat answer, fed in chunks cut anywhere, as a client reading it from a socket
//! would: the events as they complete, and the token usage at the end.
//!
//! ```
//! use jisr_buffer::{Provider, SseParser, UsageTracker};
//!
//! let chunks: [&[u8]; 3] = [
//!     b"data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n",
//!     b"\ndata: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":",
//!     b"{\"prompt_tokens\":12,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n",
//! ];
//! let mut events = SseParser::new();
//! let mut usage = UsageTracker::new();
//! let mut seen = 0;
//! for chunk in chunks {
//!     events.feed(chunk, |e| seen += usize::from(e.data_str().is_some()));
//!     usage.feed(chunk);
//! }
//! assert_eq!(seen, 3);
//! assert_eq!(usage.provider(), Provider::OpenAi);
//! let usage = usage.usage().unwrap();
//! assert_eq!((usage.input_tokens, usage.output_tokens), (Some(12), Some(1)));
//! ```
#![forbid(unsafe_code)]
#![deny(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

/// The README's example, compiled and run as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod budget;
mod decode;
mod head_tail;
pub mod json;
pub mod json_stream;
pub mod logfmt;
mod ring;
mod scan;
mod sse;
mod sse_lines;
mod sse_usage_chunks;
mod usage;

pub use budget::{BudgetError, Budgets, Reservation};
#[cfg(feature = "decompress")]
pub use decode::ContentDecoder;
pub use decode::{DecodeError, Encoding};
pub use head_tail::HeadTail;
pub use ring::Ring;
pub use sse::{Event, SseParser};
pub use sse_usage_chunks::UsageChunkStripper;
pub use usage::{BodyFormat, Provider, Usage, UsageTracker};
