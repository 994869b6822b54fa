//! Allocation-free buffers for tapping streams.
//!
//! Everything here is pure code with no Envoy types. Types that keep bytes allocate their
//! storage once, at construction, with a capacity the caller chooses; after that nothing in
//! this module allocates.
//!
//! * [`Ring`]: the last N bytes of a stream.
//! * [`HeadTail`]: the first H and last T bytes of a stream.
//! * [`SseParser`]: server-sent events, parsed incrementally into fixed storage.
//! * [`UsageChunkStripper`]: an OpenAI chat event stream without its usage-only chunk.
//! * [`UsageTracker`]: token usage of OpenAI, Anthropic and Gemini responses, streamed (SSE)
//!   or not (JSON), in constant memory.
//! * [`Encoding`] and, with the cargo feature `decompress`, `ContentDecoder`: compressed
//!   bodies (gzip, deflate, brotli, zstd) decoded as they pass, in bounded memory. Unlike the
//!   rest of this module, a decoder allocates its window when its stream starts.
//! * [`json`]: find one value by key path in JSON text, without a JSON library.
//! * [`json_stream`]: find values by key path in JSON that arrives in pieces, in constant
//!   memory.
//! * [`Budgets`]: token budgets per key and time window, shared by all workers, lock-free;
//!   requests reserve an estimate ([`Reservation`]) and settle it to their real usage.
//! * [`logfmt`]: deterministic `msg key=value` log lines written into any `fmt::Write`.

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
