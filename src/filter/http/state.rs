//! The state of one stream as one plain value, changed only through named transitions.
//!
//! A stream slot is reused by many streams, so everything a stream decides with lives in two
//! `Copy` values — [`StreamState`] for the stream and one [`BodyState`] per body direction —
//! that a new stream resets in one statement each ([`StreamState::NEW`], [`BodyState::NEW`]).
//! A field cannot be forgotten in a reset, and nothing changes them except the transitions
//! below (the state machine in `filter::hooks` and the handles of the API layer call them).
//!
//! # Stream transitions
//!
//! `request` and `response` are each [`HandlerState::Idle`] → [`HandlerState::Running`] → [`HandlerState::Done`];
//! the flags only ever go from clear to set within a stream, except the watermark and the
//! pending start.
//!
//! The tables are the spec: each transition's "from" (stream) or "requires" (body) column is
//! its precondition, checked by a `debug_assert!` in debug builds (so the simulated test suite
//! checks every path it drives). "any" means the transition is valid from every state.
//!
//! | transition | when | from | effect |
//! |---|---|---|---|
//! | [`start_request`](StreamState::start_request) | request headers hook | request `Idle`, not ended | request `Running`, start pending |
//! | [`take_start`](StreamState::take_start) | first poll of the request | any | start no longer pending |
//! | [`stop_request`](StreamState::stop_request) | a request hook returns a stop status | request `Running` | request stopped (completion continues decoding) |
//! | [`finish_request`](StreamState::finish_request) | the request pipeline completed | request `Running` | request `Done` |
//! | [`start_response`](StreamState::start_response) | response headers hook, request `Done`, a response handler exists | response `Idle`, request `Done` | response `Running`; in Observe mode the headers count as sent |
//! | [`stop_response`](StreamState::stop_response) | a response hook returns a stop status | response `Running` | response stopped |
//! | [`finish_response`](StreamState::finish_response) | the response pipeline completed | response `Running` | response `Done`, headers sent |
//! | [`pass_response`](StreamState::pass_response) | response headers go on untouched (no handler, or our own reply) | any | headers sent |
//! | [`reply`](StreamState::reply) | a handler's local reply, or the 500 of a failure | not replied, headers not sent | replied |
//! | [`stream_reply`](StreamState::stream_reply) | a handler starts a streamed reply | not replied, headers not sent | replied, headers sent |
//! | [`fail`](StreamState::fail) | a handler or jisr panicked | any | request and response `Done` |
//! | [`defer_completion`](StreamState::defer_completion) | Envoy completes the stream inside one of our hooks | not ended | completion pending |
//! | [`take_completion`](StreamState::take_completion) | the outermost hook unwinds | any | not pending |
//! | [`end`](StreamState::end) | stream complete or destroyed | not ended | ended: no more polls or calls |
//! | [`defer_destroy`](StreamState::defer_destroy) | Envoy destroys the stream inside one of our hooks | any | destroy pending |
//! | [`take_destroy`](StreamState::take_destroy) | the outermost hook unwinds | any | not pending |
//! | [`mark_unclean`](StreamState::mark_unclean) | ending could not drop the futures | ended | unclean: the slot is never reused |
//! | [`watermark`](StreamState::watermark) | downstream buffer crosses a watermark | any | above the high watermark, or not |
//!
//! # Body transitions
//!
//! | transition | when | requires | effect |
//! |---|---|---|---|
//! | [`retain`](BodyState::retain) | the response handler starts | any | how the body is retained |
//! | [`end_of_stream`](BodyState::end_of_stream) | end flag, empty final chunk or trailers | any | reads end after the buffered bytes |
//! | [`enter_hook`](BodyState::enter_hook) | a body hook starts | not in a hook | what is readable during it |
//! | [`leave_hook`](BodyState::leave_hook) | the body hook ends | in a hook | nothing readable beyond the buffer |
//! | [`advance`](BodyState::advance) | a read copied bytes | the new offset is not below the old | offset grows |
//! | [`pass_chunk`](BodyState::pass_chunk) | Observe mode, after a chunk's hook | retention `Passing` | the chunk is gone |
//! | [`skip`](BodyState::skip), [`limit`](BodyState::limit) | the handler says so | any | reads end |
//! | [`wait`](BodyState::wait) / [`woken`](BodyState::woken) | a read is pending / returned | any | a last poll at stream end if waiting |
//! | [`abort`](BodyState::abort) | the stream ended before the body | end of stream not seen | reads fail |

use crate::filter::http::meta::ResponseMode;

/// Where a handler is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandlerState {
    /// Not started.
    Idle,
    /// Started and pending.
    Running,
    /// Completed, panicked or cancelled.
    Done,
}

const REQUEST_STOPPED: u16 = 1;
const RESPONSE_STOPPED: u16 = 1 << 1;
const REPLIED: u16 = 1 << 2;
const RESPONSE_SENT: u16 = 1 << 3;
const COMPLETION_PENDING: u16 = 1 << 4;
const ENDED: u16 = 1 << 5;
const DESTROY_PENDING: u16 = 1 << 6;
const UNCLEAN: u16 = 1 << 7;
const ABOVE_HIGH_WATERMARK: u16 = 1 << 8;
const START_PENDING: u16 = 1 << 9;

/// The stream's state (see the module docs for the transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamState {
    /// The request handler's phase.
    pub(crate) request: HandlerState,
    /// The response handler's phase.
    pub(crate) response: HandlerState,
    flags: u16,
}

impl StreamState {
    /// A new stream.
    pub(crate) const NEW: StreamState = StreamState {
        request: HandlerState::Idle,
        response: HandlerState::Idle,
        flags: 0,
    };

    fn has(self, f: u16) -> bool {
        self.flags & f != 0
    }

    fn with(mut self, f: u16, on: bool) -> StreamState {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
        self
    }

    /// A request hook stopped iteration (completion must continue decoding).
    pub(crate) fn request_stopped(self) -> bool {
        self.has(REQUEST_STOPPED)
    }
    /// A response hook stopped iteration.
    pub(crate) fn response_stopped(self) -> bool {
        self.has(RESPONSE_STOPPED)
    }
    /// This filter sent (or staged) a local reply or started a streamed reply.
    pub(crate) fn replied(self) -> bool {
        self.has(REPLIED)
    }
    /// Response headers went downstream.
    pub(crate) fn response_sent(self) -> bool {
        self.has(RESPONSE_SENT)
    }
    /// Envoy completed the stream inside one of our hooks; the outermost hook finishes it.
    pub(crate) fn completion_pending(self) -> bool {
        self.has(COMPLETION_PENDING)
    }
    /// The stream is over: no more polls or calls.
    pub(crate) fn ended(self) -> bool {
        self.has(ENDED)
    }
    /// Ending could not drop the stream's futures.
    pub(crate) fn unclean(self) -> bool {
        self.has(UNCLEAN)
    }
    /// The downstream write buffer is above its high watermark.
    pub(crate) fn above_high_watermark(self) -> bool {
        self.has(ABOVE_HIGH_WATERMARK)
    }

    /// Request headers arrived: the request handler runs, started by the next poll.
    pub(crate) fn start_request(self) -> StreamState {
        debug_assert!(
            self.request == HandlerState::Idle && !self.ended(),
            "start_request from {self:?}"
        );
        StreamState {
            request: HandlerState::Running,
            ..self.with(START_PENDING, true)
        }
    }
    /// The first poll takes the pending start; returns whether there was one.
    pub(crate) fn take_start(self) -> (bool, StreamState) {
        (self.has(START_PENDING), self.with(START_PENDING, false))
    }
    /// A request hook returned a stop status.
    pub(crate) fn stop_request(self) -> StreamState {
        debug_assert_eq!(
            self.request,
            HandlerState::Running,
            "stop_request from {self:?}"
        );
        self.with(REQUEST_STOPPED, true)
    }
    /// The request pipeline completed.
    pub(crate) fn finish_request(self) -> StreamState {
        debug_assert_eq!(
            self.request,
            HandlerState::Running,
            "finish_request from {self:?}"
        );
        StreamState {
            request: HandlerState::Done,
            ..self
        }
    }
    /// The response handler starts (Observe mode: the headers are already on their way).
    pub(crate) fn start_response(self, mode: ResponseMode) -> StreamState {
        debug_assert!(
            self.response == HandlerState::Idle && self.request == HandlerState::Done,
            "start_response from {self:?}"
        );
        StreamState {
            response: HandlerState::Running,
            ..self.with(
                RESPONSE_SENT,
                mode == ResponseMode::Observe || self.response_sent(),
            )
        }
    }
    /// A response hook returned a stop status.
    pub(crate) fn stop_response(self) -> StreamState {
        debug_assert_eq!(
            self.response,
            HandlerState::Running,
            "stop_response from {self:?}"
        );
        self.with(RESPONSE_STOPPED, true)
    }
    /// The response pipeline completed: whatever was held goes downstream.
    pub(crate) fn finish_response(self) -> StreamState {
        debug_assert_eq!(
            self.response,
            HandlerState::Running,
            "finish_response from {self:?}"
        );
        StreamState {
            response: HandlerState::Done,
            ..self.with(RESPONSE_SENT, true)
        }
    }
    /// The response headers go on untouched.
    pub(crate) fn pass_response(self) -> StreamState {
        self.with(RESPONSE_SENT, true)
    }
    /// A local reply (the first one counts).
    pub(crate) fn reply(self) -> StreamState {
        debug_assert!(
            !self.replied() && !self.response_sent(),
            "reply from {self:?}"
        );
        self.with(REPLIED, true)
    }
    /// A streamed reply started: its headers went downstream.
    pub(crate) fn stream_reply(self) -> StreamState {
        debug_assert!(
            !self.replied() && !self.response_sent(),
            "stream_reply from {self:?}"
        );
        self.with(REPLIED, true).with(RESPONSE_SENT, true)
    }
    /// A handler or jisr failed: neither pipeline runs again.
    pub(crate) fn fail(self) -> StreamState {
        StreamState {
            request: HandlerState::Done,
            response: HandlerState::Done,
            ..self
        }
    }
    /// Envoy completed the stream inside one of our hooks.
    pub(crate) fn defer_completion(self) -> StreamState {
        debug_assert!(!self.ended(), "defer_completion from {self:?}");
        self.with(COMPLETION_PENDING, true)
    }
    /// Takes a pending completion; returns whether there was one.
    pub(crate) fn take_completion(self) -> (bool, StreamState) {
        (
            self.has(COMPLETION_PENDING),
            self.with(COMPLETION_PENDING, false),
        )
    }
    /// The stream is over.
    pub(crate) fn end(self) -> StreamState {
        debug_assert!(!self.ended(), "end from {self:?}");
        self.with(ENDED, true)
    }
    /// Envoy destroyed the stream inside one of our hooks.
    pub(crate) fn defer_destroy(self) -> StreamState {
        self.with(DESTROY_PENDING, true)
    }
    /// Envoy asked to destroy the stream while one of our hooks ran.
    pub(crate) fn destroy_pending(self) -> bool {
        self.has(DESTROY_PENDING)
    }
    /// Takes a pending destroy; returns whether there was one.
    pub(crate) fn take_destroy(self) -> (bool, StreamState) {
        (self.has(DESTROY_PENDING), self.with(DESTROY_PENDING, false))
    }
    /// Ending could not drop the futures.
    pub(crate) fn mark_unclean(self) -> StreamState {
        debug_assert!(self.ended(), "mark_unclean from {self:?}");
        self.with(UNCLEAN, true)
    }
    /// The downstream buffer crossed a watermark.
    pub(crate) fn watermark(self, above: bool) -> StreamState {
        self.with(ABOVE_HIGH_WATERMARK, above)
    }
}

/// Where a body's bytes are while the handler reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retention {
    /// Held by Envoy (request body, Buffer mode): buffered body + current chunk.
    Held,
    /// Passing through (Observe mode): only the current chunk, during its hook.
    Passing,
    /// Not given to the handler (Passthrough mode).
    Hidden,
}

const B_ABORTED: u8 = 1;
const B_WAITING: u8 = 1 << 1;
const B_EOS: u8 = 1 << 2;
const B_SKIPPED: u8 = 1 << 3;
const B_IN_HOOK: u8 = 1 << 4;
const B_HOOK_SEEN: u8 = 1 << 5;

/// Read position and limits of one body (see the module docs for the transitions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BodyState {
    /// How the body is retained.
    pub(crate) retention: Retention,
    /// Passing mode: bytes of the stream before the current chunk.
    pub(crate) base: usize,
    /// Bytes the handler has read so far.
    pub(crate) offset: usize,
    /// The handler sees at most this many bytes.
    pub(crate) limit: usize,
    /// Inside a body hook: bytes of the buffered body, and bytes readable in all (buffered plus
    /// the received chunk when it is separate), measured once per hook.
    pub(crate) hook_buffered: usize,
    pub(crate) hook_end: usize,
    flags: u8,
}

impl BodyState {
    /// A body nothing happened to yet.
    pub(crate) const NEW: BodyState = BodyState {
        retention: Retention::Held,
        base: 0,
        offset: 0,
        limit: usize::MAX,
        hook_buffered: 0,
        hook_end: 0,
        flags: 0,
    };

    fn has(self, f: u8) -> bool {
        self.flags & f != 0
    }

    fn with(mut self, f: u8, on: bool) -> BodyState {
        if on {
            self.flags |= f;
        } else {
            self.flags &= !f;
        }
        self
    }

    /// The stream ended before the body did; reads fail.
    pub(crate) fn aborted(self) -> bool {
        self.has(B_ABORTED)
    }
    /// A read returned pending.
    pub(crate) fn waiting(self) -> bool {
        self.has(B_WAITING)
    }
    /// End of stream has been seen.
    pub(crate) fn eos(self) -> bool {
        self.has(B_EOS)
    }
    /// The handler said it won't read (more of) the body.
    pub(crate) fn skipped(self) -> bool {
        self.has(B_SKIPPED)
    }
    /// Inside a body hook.
    pub(crate) fn in_hook(self) -> bool {
        self.has(B_IN_HOOK)
    }
    /// A body hook of this direction ran (or runs).
    pub(crate) fn hook_seen(self) -> bool {
        self.has(B_HOOK_SEEN)
    }
    /// Whether the handler is done reading (skipped or limit reached).
    pub(crate) fn done_reading(self) -> bool {
        self.skipped() || self.offset >= self.limit
    }

    /// How the response body reaches the handler (set when the response handler starts).
    pub(crate) fn retain(self, retention: Retention) -> BodyState {
        BodyState { retention, ..self }
    }
    /// The end of the body was signalled.
    pub(crate) fn end_of_stream(self) -> BodyState {
        self.with(B_EOS, true)
    }
    /// A body hook starts with `buffered` bytes buffered and `end` bytes readable in all.
    pub(crate) fn enter_hook(self, buffered: usize, end: usize) -> BodyState {
        debug_assert!(!self.in_hook(), "enter_hook from {self:?}");
        BodyState {
            hook_buffered: buffered,
            hook_end: end,
            ..self.with(B_IN_HOOK | B_HOOK_SEEN, true)
        }
    }
    /// The body hook is over.
    pub(crate) fn leave_hook(self) -> BodyState {
        debug_assert!(self.in_hook(), "leave_hook from {self:?}");
        self.with(B_IN_HOOK, false)
    }
    /// A read reached `offset`.
    pub(crate) fn advance(self, offset: usize) -> BodyState {
        debug_assert!(offset >= self.offset, "advance to {offset} from {self:?}");
        BodyState { offset, ..self }
    }
    /// Observe mode: the chunk of `len` bytes has passed.
    pub(crate) fn pass_chunk(self, len: usize) -> BodyState {
        debug_assert_eq!(
            self.retention,
            Retention::Passing,
            "pass_chunk from {self:?}"
        );
        BodyState {
            base: self.base + len,
            ..self
        }
    }
    /// The handler won't read (more of) the body.
    pub(crate) fn skip(self) -> BodyState {
        self.with(B_SKIPPED, true)
    }
    /// The handler sees at most `n` bytes.
    pub(crate) fn limit(self, n: usize) -> BodyState {
        BodyState { limit: n, ..self }
    }
    /// A read is pending.
    pub(crate) fn wait(self) -> BodyState {
        self.with(B_WAITING, true)
    }
    /// A read returned.
    pub(crate) fn woken(self) -> BodyState {
        self.with(B_WAITING, false)
    }
    /// The stream ended first.
    pub(crate) fn abort(self) -> BodyState {
        debug_assert!(!self.eos(), "abort from {self:?}");
        self.with(B_ABORTED, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_stream_has_nothing_set() {
        let s = StreamState::NEW;
        assert!(!s.replied() && !s.response_sent() && !s.ended() && !s.request_stopped());
        let (started, s) = s.start_request().take_start();
        assert!(started);
        assert_eq!(s.request, HandlerState::Running);
        assert!(!s.take_start().0, "a start is taken once");
    }

    #[test]
    fn observe_sends_headers_when_the_response_handler_starts() {
        let s = StreamState::NEW.start_request().finish_request();
        assert!(s.start_response(ResponseMode::Observe).response_sent());
        assert!(!s.start_response(ResponseMode::Buffer).response_sent());
        assert!(
            s.start_response(ResponseMode::Buffer)
                .finish_response()
                .response_sent()
        );
    }

    #[test]
    fn watermark_goes_both_ways_and_flags_are_independent() {
        let s = StreamState::NEW.reply().watermark(true);
        assert!(s.above_high_watermark() && s.replied());
        let s = s.watermark(false);
        assert!(!s.above_high_watermark() && s.replied());
    }

    /// The preconditions are checked in debug builds: a transition from the wrong state panics.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "finish_request from")]
    fn a_request_that_never_started_cannot_finish() {
        let _ = StreamState::NEW.finish_request();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "reply from")]
    fn a_second_reply_is_refused() {
        let _ = StreamState::NEW.reply().reply();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "leave_hook from")]
    fn a_body_hook_is_left_only_once() {
        let _ = BodyState::NEW.enter_hook(0, 0).leave_hook().leave_hook();
    }

    #[test]
    fn body_reads_end_at_skip_or_limit() {
        let b = BodyState::NEW.limit(10).advance(9);
        assert!(!b.done_reading());
        assert!(b.advance(10).done_reading());
        assert!(BodyState::NEW.skip().done_reading());
    }
}
