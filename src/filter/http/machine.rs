//! The HTTP stream's state machine: what each hook returns, decided from the stream's state.

use crate::abi::http::{BodyStatus, HeadersStatus, LocalReplyStatus, TrailersStatus};
use crate::executor::task::Cleared;
use crate::executor::{self, Driven};
use crate::filter::http::core::{BodyCursor, FilterStats, ResponseMode, StreamCore};
use crate::filter::http::hooks::{
    ConfigHooks, HookKind, INTERNAL_DETAILS, PANIC_DETAILS, RawStreamEvent, StreamHooks,
};
use crate::filter::http::pipeline::Pipeline;
use crate::filter::http::slot::{JisrConfig, StreamSlot};
use crate::filter::http::state::{BodyState, HandlerState, Retention, StreamState};
use crate::host::http::Host;
use crate::host::log::Level;
use crate::host::{ChunkArray, HeaderArray};
use std::task::Context;

impl<S, Q, R> ConfigHooks for JisrConfig<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    fn new_stream(&self, host: &dyn Host) -> *const core::ffi::c_void {
        if let Some(envoy) = &self.meta.envoy {
            // A report that a stream without a completion hook made due (see
            // `StreamSlot::end_without_completion`), now that there is a host to send it with.
            envoy.report_owed(host, &self.meta.name, &self.pool, &self.meta.stats);
        }
        JisrConfig::new_stream(self)
    }
    fn background(&self) -> Option<&std::sync::Arc<crate::executor::background::Runtime>> {
        self.background.0.as_ref()
    }
    fn flush_envoy_stats(&self, host: &dyn crate::host::ConfigHost) {
        if let Some(envoy) = &self.meta.envoy {
            envoy.flush(host, &self.meta.name, &self.pool, &self.meta.stats);
        }
    }
    fn name(&self) -> &str {
        &self.meta.name
    }
    #[cfg(feature = "testing")]
    fn idle_slots(&self) -> usize {
        self.pool.idle()
    }
    #[cfg(feature = "testing")]
    fn stats(&self) -> crate::filter::http::stats::FilterStatsSnapshot {
        crate::filter::http::stats::FilterStatsSnapshot::new(self.pool.stats(), &self.meta.stats)
    }
    #[cfg(feature = "testing")]
    fn idle_retained_bytes(&self) -> usize {
        self.pool.idle_sum(|s| s.core.retained_bytes())
    }
}

/// Logs through the stream's host at `level` (nothing once the stream ended or detached),
/// located at the caller.
#[track_caller]
pub(crate) fn log_line(core: &StreamCore, level: Level, args: core::fmt::Arguments<'_>) {
    let site = core::panic::Location::caller();
    core.with_host(|h| {
        if h.log_enabled(level as u32) {
            crate::host::log::with_line(
                |s| core::fmt::write(s, args),
                |line| h.log_at(level as u32, line, site.file(), site.line()),
            );
        }
    });
}

/// Which pipeline a drive concerns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

impl<S, Q, R> StreamSlot<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    /// Polls one pipeline until it completes or waits; `deliver` runs first, inside the poll
    /// window (it wakes the wakers of futures waiting for what this hook brings).
    #[inline]
    fn drive(&self, side: Direction, deliver: impl FnOnce()) -> Driven {
        let core = &self.core;
        let new_scheduler = || core.with_host(|h| h.new_scheduler());
        let d = match side {
            Direction::Request => core.task.drive(new_scheduler, deliver, |cx| {
                if core.take(StreamState::take_start) {
                    self.start_request();
                }
                self.poll_request(cx)
            }),
            Direction::Response => core
                .task
                .drive(new_scheduler, deliver, |cx| self.poll_response(cx)),
        };
        if !matches!(d, Driven::Nested) {
            self.flush_reply();
        }
        match &d {
            Driven::Ready => match side {
                Direction::Request => core.update(StreamState::finish_request),
                // Whatever was held now goes downstream.
                Direction::Response => core.update(StreamState::finish_response),
            },
            Driven::Pending => core.note_waiting(),
            Driven::Nested => {}
            Driven::Panicked(msg) => self.fail(msg, PANIC_DETAILS),
        }
        d
    }

    /// Sends the local reply the last poll made, if any.
    #[inline]
    fn flush_reply(&self) {
        // Staging a reply marks the stream replied in the same step, so a stream that is not
        // replied has nothing staged: one flag test on the common path.
        if self.core.st().replied() && matches!(self.core.reply.try_borrow(), Ok(r) if r.armed) {
            self.send_staged();
        }
        if let Some(graceful) = self.core.goaway.take() {
            self.core.with_host(|h| h.goaway_and_close(graceful));
        }
    }

    /// `flush_reply` with a reply staged: sends it from the slot's buffer.
    ///
    /// Envoy may re-enter our hooks inside the reply, or complete and destroy the stream (both
    /// deferred while this hook runs, so the slot stays). The reply is disarmed first and only
    /// a shared borrow is held while Envoy runs it: a re-entered hook finds nothing to send, and
    /// cannot stage another reply (the stream counts as replied, and staging needs the buffer
    /// mutably).
    #[inline(never)]
    fn send_staged(&self) {
        let core = &self.core;
        let recreate = match core.reply.try_borrow_mut() {
            Ok(mut r) if r.armed => {
                r.armed = false;
                r.recreate
            }
            _ => return,
        };
        if recreate {
            self.recreate();
            return;
        }
        if let Ok(r) = core.reply.try_borrow() {
            core.with_host(|h| {
                r.with_parts(|status, headers, body, details| {
                    h.send_response(status, headers, body, details)
                })
            });
        }
        // Keep a bounded buffer for the slot's next reply.
        if let Ok(mut r) = core.reply.try_borrow_mut() {
            if r.capacity() > crate::filter::http::reply::RETAINED {
                r.clear();
            }
        }
    }

    /// Runs a staged `recreate_stream`; when Envoy refuses, the stream fails closed (the
    /// handler meant the request not to go on as it was).
    #[cold]
    #[inline(never)]
    fn recreate(&self) {
        let core = &self.core;
        if core.with_host(|h| h.recreate_stream()) == Some(true) {
            return;
        }
        log_line(
            core,
            Level::Warn,
            format_args!(
                "jisr: filter '{}': Envoy refused to recreate the stream (a request with a body, \
                 or a response already started); answering 500",
                core.name()
            ),
        );
        core.with_host(|h| crate::filter::http::reply::internal_error(h, b"jisr_recreate_refused"));
    }

    /// A handler (or jisr itself) failed: fail closed (500 if the client saw nothing yet, else
    /// reset). Never unwinds.
    fn fail(&self, msg: &str, details: &str) {
        let core = &self.core;
        if details == PANIC_DETAILS {
            FilterStats::bump(&core.meta.stats.panics);
        } else {
            FilterStats::bump(&core.meta.stats.internal_failures);
        }
        core.update(StreamState::fail);
        if details == PANIC_DETAILS {
            log_line(
                core,
                Level::Error,
                format_args!("jisr: handler of filter '{}' panicked: {msg}", core.name()),
            );
        } else {
            log_line(
                core,
                Level::Error,
                format_args!(
                    "jisr: filter '{}': internal failure, failing the stream closed: {msg}",
                    core.name()
                ),
            );
        }
        if let Cleared::Panicked(m) = self.clear() {
            FilterStats::bump(&core.meta.stats.drop_panics);
            log_line(
                core,
                Level::Error,
                format_args!(
                    "jisr: filter '{}': dropping after a panic panicked too: {m}",
                    core.name()
                ),
            );
        }
        if core.st().response_sent() {
            core.with_host(|h| h.reset_stream(details.as_bytes()));
            return;
        }
        // A reply the handler made before failing is still the answer.
        self.flush_reply();
        if core.st().replied() {
            return;
        }
        core.update(StreamState::reply);
        core.with_host(|h| crate::filter::http::reply::internal_error(h, details.as_bytes()));
    }

    /// Runs `f` with `host` current; a stream completion that arrived during one of our own
    /// hooks is finished once the outermost hook is done with it.
    #[inline]
    fn enter<T>(&self, host: &dyn Host, f: impl FnOnce() -> T) -> T {
        let outermost = !self.core.host.is_set();
        self.core.host.enter(host, || {
            let r = f();
            if outermost
                && self.core.st().completion_pending()
                && self.core.take(StreamState::take_completion)
            {
                self.complete_now();
            }
            r
        })
    }

    /// Whether the response passes this filter untouched: our own reply, a request handler
    /// that never finished, no response handler, or one that already ran.
    #[inline]
    fn passes_response(&self) -> bool {
        let st = self.core.st();
        st.replied()
            || !self.has_response()
            || st.request != HandlerState::Done
            || st.response != HandlerState::Idle
    }

    // The hooks with a handler to poll. Each hook first checks whether it is inert (no handler
    // of its direction runs or starts, and no completion waits for a hook's end): then it only
    // records end of stream and answers, without entering the stream's hook context, as
    // nothing in it polls or calls Envoy. The polling paths below stay out of line, so the
    // inert answer, taken by most hooks of most streams, costs a few instructions.

    #[inline(never)]
    fn request_body_running(&self, host: &dyn Host, end_of_stream: bool) -> BodyStatus {
        self.enter(host, || {
            let core = &self.core;
            if end_of_stream {
                core.req_body.update(BodyState::end_of_stream);
            }
            match core.st().request {
                HandlerState::Running => {
                    core.with_host(|h| core.req_body.enter_hook(h, true));
                    let d = self.drive(Direction::Request, || core.req_body.waker.wake());
                    core.req_body.update(BodyState::leave_hook);
                    match d {
                        Driven::Ready if !core.st().replied() => BodyStatus::Continue,
                        Driven::Pending | Driven::Nested if core.req_body.get().done_reading() => {
                            BodyStatus::StopIterationAndWatermark
                        }
                        Driven::Pending | Driven::Nested => BodyStatus::StopIterationAndBuffer,
                        _ => BodyStatus::StopIterationNoBuffer,
                    }
                }
                _ if core.st().replied() => BodyStatus::StopIterationNoBuffer,
                _ => BodyStatus::Continue,
            }
        })
    }

    #[inline(never)]
    fn request_trailers_running(&self, host: &dyn Host) -> TrailersStatus {
        self.enter(host, || {
            let core = &self.core;
            core.req_body.update(BodyState::end_of_stream);
            match core.st().request {
                HandlerState::Running => {
                    match self.drive(Direction::Request, || core.req_body.waker.wake()) {
                        Driven::Ready if !core.st().replied() => TrailersStatus::Continue,
                        _ => TrailersStatus::StopIteration,
                    }
                }
                _ if core.st().replied() => TrailersStatus::StopIteration,
                _ => TrailersStatus::Continue,
            }
        })
    }

    #[inline(never)]
    fn response_headers_starting(&self, host: &dyn Host, end_of_stream: bool) -> HeadersStatus {
        self.enter(host, || {
            let core = &self.core;
            // Our own replies, responses to requests our handler never finished, and filters
            // without a response handler: let it through.
            if self.passes_response() {
                core.update(StreamState::pass_response);
                return HeadersStatus::Continue;
            }
            let mode = self.mode();
            let retention = self.retention();
            core.resp_body.update(|b| {
                let b = b.retain(retention);
                if end_of_stream { b.end_of_stream() } else { b }
            });
            core.update(|s| s.start_response(mode));
            match executor::catch(|| self.start_response()) {
                Ok(true) => {}
                Ok(false) => {
                    core.update(StreamState::finish_response);
                    return HeadersStatus::Continue;
                }
                Err(msg) => {
                    self.fail(&msg, PANIC_DETAILS);
                    return HeadersStatus::StopIteration;
                }
            }
            match (self.drive(Direction::Response, || {}), mode) {
                (Driven::Panicked(_), _) => HeadersStatus::StopIteration,
                (_, ResponseMode::Observe) => HeadersStatus::Continue,
                (Driven::Ready, _) if !core.st().replied() => HeadersStatus::Continue,
                (Driven::Ready, _) => HeadersStatus::StopIteration,
                (Driven::Pending | Driven::Nested, _) => {
                    core.update(StreamState::stop_response);
                    HeadersStatus::StopIteration
                }
            }
        })
    }

    #[inline(never)]
    fn response_body_running(&self, host: &dyn Host, end_of_stream: bool) -> BodyStatus {
        self.enter(host, || {
            let core = &self.core;
            if end_of_stream {
                core.resp_body.update(BodyState::end_of_stream);
            }
            if core.st().response != HandlerState::Running {
                return BodyStatus::Continue;
            }
            let cursor = &core.resp_body;
            core.with_host(|h| cursor.enter_hook(h, false));
            let d = self.drive(Direction::Response, || cursor.waker.wake());
            cursor.update(BodyState::leave_hook);
            if cursor.get().retention == Retention::Passing {
                // Measured when the hook started: nothing changes a chunk during an Observe
                // hook (only Buffer mode replaces bodies). Once the stream ended no read runs
                // again, so the position past the chunk is harmless then too.
                cursor.update(|b| b.pass_chunk(b.hook_end.saturating_sub(b.base)));
            }
            match (d, self.mode()) {
                (Driven::Panicked(_), _) => BodyStatus::StopIterationNoBuffer,
                (_, ResponseMode::Observe) => BodyStatus::Continue,
                (Driven::Ready, _) if !core.st().replied() => BodyStatus::Continue,
                (Driven::Ready, _) => BodyStatus::StopIterationNoBuffer,
                (Driven::Pending | Driven::Nested, ResponseMode::Buffer)
                    if !cursor.get().skipped() =>
                {
                    BodyStatus::StopIterationAndBuffer
                }
                (Driven::Pending | Driven::Nested, _) => BodyStatus::StopIterationAndWatermark,
            }
        })
    }

    #[inline(never)]
    fn response_trailers_running(&self, host: &dyn Host) -> TrailersStatus {
        self.enter(host, || {
            let core = &self.core;
            core.resp_body.update(BodyState::end_of_stream);
            if core.st().response != HandlerState::Running {
                return TrailersStatus::Continue;
            }
            match (
                self.drive(Direction::Response, || core.resp_body.waker.wake()),
                self.mode(),
            ) {
                (Driven::Panicked(_), _) => TrailersStatus::StopIteration,
                (_, ResponseMode::Observe) => TrailersStatus::Continue,
                (Driven::Ready, _) => TrailersStatus::Continue,
                (Driven::Pending | Driven::Nested, _) => TrailersStatus::StopIteration,
            }
        })
    }

    /// A pipeline completed outside the hook that stopped the stream: resume Envoy.
    fn resume(&self, side: Direction) {
        let core = &self.core;
        if core.st().replied() {
            return;
        }
        match side {
            Direction::Request if core.st().request_stopped() => {
                core.with_host(|h| h.continue_decoding());
            }
            Direction::Response if core.st().response_stopped() => {
                core.with_host(|h| h.continue_encoding());
            }
            _ => {}
        }
    }

    /// Drives whichever pipeline is running after `deliver` recorded what this hook brings.
    fn drive_running(&self, deliver: impl FnOnce()) {
        let core = &self.core;
        let side = if core.st().request == HandlerState::Running {
            Direction::Request
        } else if core.st().response == HandlerState::Running {
            Direction::Response
        } else {
            deliver();
            return;
        };
        if let Driven::Ready = self.drive(side, deliver) {
            self.resume(side);
        }
    }

    /// The response handler is about to see the body: how it is retained depends on the mode.
    fn retention(&self) -> Retention {
        match self.mode() {
            ResponseMode::Passthrough => Retention::Hidden,
            ResponseMode::Observe => Retention::Passing,
            ResponseMode::Buffer => Retention::Held,
        }
    }

    /// The stream is complete (inside `enter`, no poll on the stack).
    fn complete_now(&self) {
        let core = &self.core;
        let st = core.st();
        let blocked = |phase: HandlerState, cursor: &BodyCursor| {
            let b = cursor.get();
            phase == HandlerState::Running && b.waiting() && !b.eos()
        };
        if blocked(st.request, &core.req_body) || blocked(st.response, &core.resp_body) {
            self.abort_reads(st.request, st.response);
        }
        if let Some(envoy) = &core.meta.envoy {
            let this = || crate::filter::http::envoy_stats::Finishing {
                polls: core.task.polls.get(),
                wakes_inline: core.task.repolls.get(),
                wakes_scheduled: core.task.commits(),
            };
            let pool = &self.cfg().pool;
            core.with_host(|host| {
                envoy.on_stream_end(host, &core.meta.name, pool, &core.meta.stats, this)
            });
        }
        core.spans.finish_all();
        self.finish();
    }

    /// Whether the stream's completion can be left to its destroy: no handler runs (no read to
    /// abort with a last poll, no future to drop while Envoy's filter is still whole; a
    /// finished handler's future is already gone) and jisr's Envoy stats need no host (they
    /// are handed to Envoy by its main thread). Then completing does what
    /// [`Self::end_without_completion`] and `finish` do at destroy, so the stream's end costs
    /// one step instead of two. The usual stream ends this way: every handler done by then.
    #[inline]
    fn ends_quietly(&self) -> bool {
        let st = self.core.st();
        st.request != HandlerState::Running
            && st.response != HandlerState::Running
            && self
                .core
                .meta
                .envoy
                .as_ref()
                .is_none_or(|e| !e.reports_at_stream_end())
    }

    /// Ends a stream that Envoy destroys without having completed it. In a cluster's upstream
    /// filter chain (`HttpProtocolOptions.http_filters`) this is every stream: Envoy's upstream
    /// filter manager only destroys its filters, it never calls `stream_complete`. Does what
    /// [`Self::complete_now`] does, minus what needs Envoy's filter pointer (which must not be
    /// used once destroy was requested): handlers blocked in a body read get no last poll
    /// (their futures are dropped by `finish`), and the stream's share of jisr's Envoy stats is
    /// reported at this worker's next stream start instead of now.
    pub(crate) fn end_without_completion(&self) {
        let core = &self.core;
        if let Some(envoy) = &core.meta.envoy {
            envoy.on_stream_end_without_host();
        }
        core.spans.finish_all();
    }

    /// A handler blocked in a body read learns that the body will never complete: one last
    /// poll in which the read fails, while metrics, metadata and logs still work. `request` and
    /// `response` are the phases when the stream completed.
    #[cold]
    #[inline(never)]
    fn abort_reads(&self, request: HandlerState, response: HandlerState) {
        let core = &self.core;
        for (side, phase, cursor) in [
            (Direction::Request, request, &core.req_body),
            (Direction::Response, response, &core.resp_body),
        ] {
            let b = cursor.get();
            if phase == HandlerState::Running && b.waiting() && !b.eos() {
                cursor.update(BodyState::abort);
                let _ = self.drive(side, || cursor.waker.wake());
            }
        }
    }
}

impl<S, Q, R> StreamHooks for StreamSlot<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    fn request_headers(&self, host: &dyn Host, end_of_stream: bool) -> HeadersStatus {
        if !Q::PRESENT {
            // No request handler: nothing to start or poll. The request is done at once, with
            // the value (`()`) the response handler receives.
            let core = &self.core;
            if end_of_stream {
                core.req_body.update(BodyState::end_of_stream);
            }
            core.update(|s| s.start_request().take_start().1.finish_request());
            let _ = self.poll_request(&mut Context::from_waker(std::task::Waker::noop()));
            return HeadersStatus::Continue;
        }
        self.enter(host, || {
            let core = &self.core;
            if end_of_stream {
                core.req_body.update(BodyState::end_of_stream);
            }
            // Started inside the first poll, under the same panic guard.
            core.update(StreamState::start_request);
            match self.drive(Direction::Request, || {}) {
                Driven::Ready if !core.st().replied() => HeadersStatus::Continue,
                Driven::Pending | Driven::Nested => {
                    core.update(StreamState::stop_request);
                    HeadersStatus::StopIteration
                }
                _ => HeadersStatus::StopIteration,
            }
        })
    }

    fn request_body(&self, host: &dyn Host, end_of_stream: bool) -> BodyStatus {
        let core = &self.core;
        if core.st().request != HandlerState::Running && !core.st().completion_pending() {
            // The hook is inert: no handler to poll, nothing to ask Envoy (see `inert`).
            if end_of_stream {
                core.req_body.update(BodyState::end_of_stream);
            }
            return if core.st().replied() {
                BodyStatus::StopIterationNoBuffer
            } else {
                BodyStatus::Continue
            };
        }
        self.request_body_running(host, end_of_stream)
    }

    fn request_trailers(&self, host: &dyn Host) -> TrailersStatus {
        let core = &self.core;
        if core.st().request != HandlerState::Running && !core.st().completion_pending() {
            core.req_body.update(BodyState::end_of_stream);
            return if core.st().replied() {
                TrailersStatus::StopIteration
            } else {
                TrailersStatus::Continue
            };
        }
        self.request_trailers_running(host)
    }

    fn response_headers(&self, host: &dyn Host, end_of_stream: bool) -> HeadersStatus {
        let core = &self.core;
        if self.passes_response() && !core.st().completion_pending() {
            core.update(StreamState::pass_response);
            return HeadersStatus::Continue;
        }
        self.response_headers_starting(host, end_of_stream)
    }

    fn response_body(&self, host: &dyn Host, end_of_stream: bool) -> BodyStatus {
        let core = &self.core;
        if core.st().response != HandlerState::Running && !core.st().completion_pending() {
            if end_of_stream {
                core.resp_body.update(BodyState::end_of_stream);
            }
            return BodyStatus::Continue;
        }
        self.response_body_running(host, end_of_stream)
    }

    fn response_trailers(&self, host: &dyn Host) -> TrailersStatus {
        let core = &self.core;
        if core.st().response != HandlerState::Running && !core.st().completion_pending() {
            core.resp_body.update(BodyState::end_of_stream);
            return TrailersStatus::Continue;
        }
        self.response_trailers_running(host)
    }
    fn stream_complete(&self, host: &dyn Host) {
        let nested = self.core.host.is_set();
        if self.ends_quietly() && !(nested && self.core.spans.any()) {
            // Nothing of the stream's end needs this hook: Envoy's destroy, which follows,
            // ends and recycles the slot in one step (`StreamSlot::destroy`). This includes a
            // completion inside one of our own hooks once its handler is done (a
            // `continue_decoding` that let a direct response finish the stream). Child spans
            // still finish now, with the stream's own span (never from inside our own hook).
            self.core.spans.finish_all();
            return;
        }
        if nested {
            // Completed from inside one of our own hooks (e.g. a local reply finished the
            // stream synchronously): finish when the outermost hook is done.
            self.core.update(StreamState::defer_completion);
            return;
        }
        self.enter(host, || self.complete_now());
    }

    fn scheduled(&self, host: &dyn Host, _event: u64) {
        let core = &self.core;
        core.task.wake.delivered();
        self.enter(host, || {
            self.drive_running(|| {
                if !core.st().above_high_watermark() {
                    core.send_waker.wake();
                }
            })
        })
    }

    fn watermark(&self, host: &dyn Host, above: bool) {
        self.enter(host, || {
            let core = &self.core;
            core.update(|s| s.watermark(above));
            if !above && !core.st().ended() {
                let wake = &core.task.wake;
                if !wake.has_scheduler() {
                    if let Some(c) = core.with_host(|h| h.new_scheduler()) {
                        wake.set_scheduler(c);
                    }
                }
                // A streaming reply waiting for the client to drain can go on — but not from
                // inside this callout of Envoy's codec (writing from here re-enters it): resume
                // through the scheduler, right after.
                wake.commit();
            }
        })
    }

    fn local_reply(
        &self,
        _host: &dyn Host,
        _status: u32,
        _reset_imminent: bool,
    ) -> LocalReplyStatus {
        LocalReplyStatus::Continue
    }

    fn callout_done(
        &self,
        host: &dyn Host,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    ) {
        self.enter(host, || {
            let core = &self.core;
            self.drive_running(|| {
                // A callout whose future was dropped: nothing takes it.
                core.callouts
                    .deliver(id, result, headers.iter(), chunks.iter());
            });
        })
    }

    fn http_stream(&self, host: &dyn Host, id: u64, event: RawStreamEvent<'_>) {
        use crate::filter::http::callout_streams::{Recorded, StreamEvent};
        self.enter(host, || {
            let core = &self.core;
            self.drive_running(|| {
                let recorded = match event {
                    RawStreamEvent::Headers(h, eos) => core
                        .streams
                        .record(id, StreamEvent::Headers(&mut h.iter(), eos)),
                    RawStreamEvent::Data(d, eos) => core
                        .streams
                        .record(id, StreamEvent::Data(&mut d.iter(), eos)),
                    RawStreamEvent::Trailers(t) => core
                        .streams
                        .record(id, StreamEvent::Trailers(&mut t.iter())),
                    RawStreamEvent::Complete => core.streams.record(id, StreamEvent::Complete),
                    RawStreamEvent::Reset(r) => core.streams.record(id, StreamEvent::Reset(r)),
                };
                if let Recorded::Overflow(id) = recorded {
                    // Outside the table's borrow: Envoy may report the reset synchronously.
                    core.with_host(|h| h.stream_reset(id));
                }
            });
        })
    }

    /// The hook kind approximates what the stream's state records exactly: whether response
    /// headers went downstream (`response_sent`, set by every path that lets them go). `fail`
    /// decides from that state: a 500 while it is clear, whatever the hook (a Buffer response
    /// handler holds the headers, so a response hook can still reply), a reset once it is set.
    fn fail_closed(&self, host: &dyn Host, _kind: HookKind, msg: &str) {
        self.core
            .host
            .enter(host, || self.fail(msg, INTERNAL_DETAILS));
    }

    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        StreamSlot::destroyer(self)
    }

    fn take_pending_destroy(&self) -> bool {
        StreamSlot::take_pending_destroy(self)
    }
}
