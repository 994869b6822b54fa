//! What the state machine drives: a compiled pipeline of one phase (a handler, or middleware
//! around one) whose futures live in per-stream storage.
//!
//! Both phases are the same shape: a request pipeline takes `()` and produces the value the
//! response pipeline takes. The API layer implements this for handlers, state handlers and
//! chains; the state machine only starts, polls and clears.

use crate::executor::task::Cleared;
use crate::filter::http::core::StreamCore;
use std::task::{Context, Poll};

/// The seal of jisr's plumbing traits (`Pipeline`, and the API's `Side` and `Phase`): its
/// module is private to the crate, so only jisr's own types implement them.
pub(crate) mod sealed {
    /// Implemented by jisr's own pipeline, side and phase types only.
    pub trait Sealed {}
}

/// A compiled pipeline for config state `S`, started with `In`.
///
/// Implementation detail of registration; it appears in bounds only. Sealed: only jisr's own
/// pipeline types implement it.
#[doc(hidden)]
pub trait Pipeline<S: 'static, In: 'static>: sealed::Sealed + Send + Sync + 'static {
    /// Whether there is a pipeline at all (a filter without a response handler has none; one
    /// without a request handler has none either, and its value is ready at once).
    const PRESENT: bool = true;
    /// What the pipeline produces (the request phase's value goes to the response phase).
    type Output: 'static;
    /// Per-stream storage for the pipeline's futures.
    type Storage: Default + 'static;
    /// Starts the pipeline for one stream.
    fn start(
        &'static self,
        storage: &'static Self::Storage,
        state: &'static S,
        input: In,
        core: &'static StreamCore,
    );
    /// Polls the pipeline; `Ready(None)` if nothing was running.
    fn poll(storage: &Self::Storage, cx: &mut Context<'_>) -> Poll<Option<Self::Output>>;
    /// Drops whatever the pipeline holds (not while it is being polled).
    fn clear(storage: &Self::Storage) -> Cleared;
}
