//! Per-stream state shared by the state machine and the handler-facing handles.

use crate::executor::Task;
use crate::executor::arena::Arena;
use crate::executor::spare;
use crate::executor::waker::WakerSlot;
use crate::filter::callouts::Callouts;
use crate::filter::http::callout_streams::Streams;
use crate::filter::http::reply::StagedReply;
use crate::filter::http::state::{BodyState, Retention, StreamState};
use crate::host::http::current::HostSlot;
use crate::host::http::spans::ChildSpans;
use crate::host::http::{BodyKind, Host};
use std::cell::Cell;
use std::sync::Arc;

pub use crate::filter::http::meta::ResponseMode;
pub(crate) use crate::filter::http::meta::{FilterMeta, FilterStats};

/// One body direction: its state value and the waker of a read waiting for it.
#[derive(Debug)]
pub(crate) struct BodyCursor {
    state: Cell<BodyState>,
    /// The waker of a read waiting for body bytes (see `WakerSlot`).
    pub(crate) waker: WakerSlot,
}

impl Default for BodyCursor {
    fn default() -> Self {
        BodyCursor {
            state: Cell::new(BodyState::NEW),
            waker: WakerSlot::default(),
        }
    }
}

impl BodyCursor {
    /// The body's state.
    #[inline]
    pub(crate) fn get(&self) -> BodyState {
        self.state.get()
    }

    /// Applies a transition (see `filter::state`).
    #[inline]
    pub(crate) fn update(&self, f: impl FnOnce(BodyState) -> BodyState) {
        self.state.set(f(self.state.get()));
    }

    #[inline]
    pub(crate) fn reset(&mut self) {
        *self.state.get_mut() = BodyState::NEW;
        self.waker.clear();
    }

    /// A body hook starts: measures what is readable during it (the body does not change while
    /// the hook runs, except through the handler's own `replace_body`).
    #[inline]
    pub(crate) fn enter_hook(&self, host: &dyn Host, request: bool) {
        let (buffered, received) = if request {
            (BodyKind::BufferedRequest, BodyKind::ReceivedRequest)
        } else {
            (BodyKind::BufferedResponse, BodyKind::ReceivedResponse)
        };
        let received_len = host.body_len(received);
        let b = self.get();
        let (hook_buffered, hook_end) = match b.retention {
            Retention::Passing => (0, b.base + received_len),
            _ => {
                let buf = host.body_len(buffered);
                // The chunk counts apart unless it is the buffered body itself. With nothing
                // buffered the answer does not matter (a chunk that is the empty buffered body
                // is empty too), so Envoy is not asked: the first chunk of a body costs one
                // host call less.
                let separate = buf == 0 || !host.received_is_buffered(request);
                (buf, buf + if separate { received_len } else { 0 })
            }
        };
        self.update(|b| b.enter_hook(hook_buffered, hook_end));
    }

    /// Copies the next bytes of the body into `dst`.
    ///
    /// Returns `Some(n)` with `n > 0` for data, `Some(0)` at end of body (or limit), and `None`
    /// when more data may still arrive.
    #[inline]
    pub(crate) fn read(&self, host: &dyn Host, request: bool, dst: &mut [u8]) -> Option<usize> {
        let (buffered, received) = if request {
            (BodyKind::BufferedRequest, BodyKind::ReceivedRequest)
        } else {
            (BodyKind::BufferedResponse, BodyKind::ReceivedResponse)
        };
        let b = self.get();
        match b.retention {
            _ if b.skipped() => Some(0),
            Retention::Hidden => Some(0),
            Retention::Passing => self.read_passing(b, host, received, dst),
            Retention::Held => self.read_held(b, host, buffered, received, dst),
        }
    }

    /// Held bodies: the buffered body, then the received chunk when it is separate.
    #[inline]
    fn read_held(
        &self,
        b: BodyState,
        host: &dyn Host,
        buffered: BodyKind,
        received: BodyKind,
        dst: &mut [u8],
    ) -> Option<usize> {
        let offset = b.offset;
        let room = b.limit.saturating_sub(offset);
        if room == 0 || dst.is_empty() {
            return Some(0);
        }
        let dst_len = dst.len().min(room);
        let dst = &mut dst[..dst_len];
        let (buffered_len, with_received) = if b.in_hook() {
            if offset >= b.hook_end {
                // Everything readable in this hook was read: no need to ask Envoy again.
                return if b.eos() { Some(0) } else { None };
            }
            (b.hook_buffered, b.hook_end > b.hook_buffered)
        } else if !b.hook_seen() && !b.eos() {
            // No body hook yet and no end of stream: no byte of the body reached this filter
            // (what Envoy holds for a filter before this one is not this filter's yet), so
            // Envoy is not asked. A read in the headers hook, the usual first read, pends here.
            return None;
        } else {
            (host.body_len(buffered), false)
        };
        let mut n = 0;
        if offset < buffered_len {
            n = host.copy_body(buffered, offset, dst);
        }
        if with_received && n < dst.len() {
            let recv_offset = (offset + n).saturating_sub(buffered_len);
            n += host.copy_body(received, recv_offset, &mut dst[n..]);
        }
        if n > 0 {
            self.update(|b| b.advance(offset + n));
            return Some(n);
        }
        if b.eos() { Some(0) } else { None }
    }

    /// Observe mode: only the chunk of the current hook is readable; bytes the handler did not
    /// read while they passed are skipped.
    #[inline]
    fn read_passing(
        &self,
        b: BodyState,
        host: &dyn Host,
        received: BodyKind,
        dst: &mut [u8],
    ) -> Option<usize> {
        let base = b.base;
        let mut offset = b.offset.max(base);
        let room = b.limit.saturating_sub(offset);
        if room == 0 || dst.is_empty() {
            return Some(0);
        }
        if b.in_hook() && offset < b.hook_end {
            let want = dst.len().min(room);
            let n = host.copy_body(received, offset - base, &mut dst[..want]);
            offset += n;
            self.update(|b| b.advance(offset));
            return Some(n);
        }
        self.update(|b| b.advance(offset));
        if b.eos() { Some(0) } else { None }
    }
}

/// The non-generic part of a stream slot.
pub struct StreamCore {
    pub(crate) host: HostSlot,
    pub(crate) meta: Arc<FilterMeta>,
    /// The executor's side: wake cell and poll counts.
    pub(crate) task: Task,
    /// The stream's state (see `filter::state`).
    state: Cell<StreamState>,
    pub(crate) req_body: BodyCursor,
    pub(crate) resp_body: BodyCursor,
    /// The waker of a streamed-reply `send` waiting for the client to drain.
    pub(crate) send_waker: WakerSlot,
    /// Unary callouts.
    pub(crate) callouts: Callouts,
    /// Streaming callouts (buffers reused across streams of this slot).
    pub(crate) streams: Streams,
    /// Copies of the header values handed to handlers.
    pub(crate) arena: Arena,
    /// Scratch for iterating all headers of a map (taken out while in use; from the worker's
    /// shelf on first use).
    snapshot: Cell<Vec<u8>>,
    /// A local reply made by the running poll, sent when the poll returns.
    pub(crate) reply: std::cell::RefCell<StagedReply>,
    /// Child spans started by handlers and not finished yet.
    pub(crate) spans: ChildSpans,
    /// GOAWAY-and-close asked for by the running poll (`Some(graceful)`), sent after its reply.
    pub(crate) goaway: Cell<Option<bool>>,
    /// The stream's entry among the waiting streams, once its handler pended.
    pub(crate) live: Cell<Option<crate::filter::http::live::LiveKey>>,
}

impl StreamCore {
    pub(crate) fn new(meta: Arc<FilterMeta>) -> StreamCore {
        StreamCore {
            host: HostSlot::default(),
            meta,
            task: Task::default(),
            state: Cell::new(StreamState::NEW),
            req_body: BodyCursor::default(),
            resp_body: BodyCursor::default(),
            send_waker: WakerSlot::default(),
            callouts: Callouts::default(),
            streams: Streams::default(),
            arena: Arena::default(),
            snapshot: Cell::new(Vec::new()),
            reply: std::cell::RefCell::new(StagedReply::default()),
            spans: ChildSpans::default(),
            goaway: Cell::new(None),
            live: Cell::new(None),
        }
    }

    /// Readies the core for a new stream (every future of the previous one is gone).
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.host.reset();
        self.task.reset();
        *self.state.get_mut() = StreamState::NEW;
        self.req_body.reset();
        self.resp_body.reset();
        self.send_waker.clear();
        // What the stream grew goes back to the worker's shelves (`executor::spare`): a slot
        // at rest holds no buffer but, at most, its arena's first block (`Arena::reset`).
        self.callouts.reset();
        self.streams.reset();
        self.arena.reset();
        self.spans.reset();
        self.goaway.set(None);
        if let Some(key) = self.live.take() {
            crate::filter::http::live::leave(key);
        }
        // A reply staged but never sent (the stream ended inside the poll that made it) is
        // dropped with it.
        self.reply.get_mut().clear();
        if self.snapshot.get_mut().capacity() != 0 {
            spare::give(core::mem::take(self.snapshot.get_mut()));
        }
    }

    /// The header-iteration scratch: the slot's own, or one from the worker's shelf. Handed
    /// back with [`StreamCore::put_snapshot`].
    #[inline]
    pub(crate) fn take_snapshot(&self) -> Vec<u8> {
        let buf = self.snapshot.take();
        if buf.capacity() != 0 {
            return buf;
        }
        spare::bytes()
    }

    /// Keeps `buf` as the stream's scratch (until the stream ends); a nested iteration's
    /// scratch, already replaced, goes back to the shelf.
    #[inline]
    pub(crate) fn put_snapshot(&self, buf: Vec<u8>) {
        spare::give_bytes(self.snapshot.replace(buf));
    }

    /// The stream's state.
    #[inline]
    pub(crate) fn st(&self) -> StreamState {
        self.state.get()
    }

    /// Applies a transition (see `filter::state`).
    #[inline]
    pub(crate) fn update(&self, f: impl FnOnce(StreamState) -> StreamState) {
        self.state.set(f(self.state.get()));
    }

    /// Applies a transition that also answers a question (e.g. "was a start pending?").
    #[inline]
    pub(crate) fn take(&self, f: impl FnOnce(StreamState) -> (bool, StreamState)) -> bool {
        let (answer, next) = f(self.state.get());
        self.state.set(next);
        answer
    }

    /// Runs `f` with the current host, if a hook is running and the stream is live.
    #[inline]
    pub(crate) fn with_host<R>(&self, f: impl FnOnce(&dyn Host) -> R) -> Option<R> {
        if self.st().ended() {
            return None;
        }
        self.host.with(f)
    }

    /// Logs a line even when no stream host can take it (the stream ended, or Envoy destroys
    /// it): through the running hook's host if any, else the config's process-wide log.
    pub(crate) fn log_always(&self, level: u32, args: core::fmt::Arguments<'_>) {
        let mut line = String::new();
        let _ = core::fmt::write(&mut line, args);
        if self.host.with(|h| h.log(level, line.as_bytes())).is_none() {
            if let Some(log) = self.meta.process_log {
                log(level, line.as_bytes());
            }
        }
    }

    /// Records (or refreshes) the stream among the waiting streams: its handler pended. Only
    /// while something can list them (a server extension runs); the first time takes the
    /// worker's registry lock once, later polls only store figures.
    #[inline]
    pub(crate) fn note_waiting(&self) {
        // Inline: on the common path (nothing lists streams) a pending hook pays one load.
        if crate::filter::http::live::enabled() {
            self.note_waiting_listed();
        }
    }

    /// `note_waiting` while a server extension lists the waiting streams.
    #[inline(never)]
    fn note_waiting_listed(&self) {
        let key = match self.live.get() {
            Some(key) => key,
            None => {
                let worker = self.with_host(|h| h.worker_index()).unwrap_or(0);
                let key = crate::filter::http::live::enter(worker, self.meta.clone());
                self.live.set(Some(key));
                key
            }
        };
        key.figures.set(
            self.st().response == crate::filter::http::state::HandlerState::Running,
            self.task.polls.get(),
            self.task.repolls.get(),
            self.task.commits(),
        );
    }

    /// Whether `w` is the stream's own waker.
    #[inline]
    pub(crate) fn is_own_waker(&self, w: &std::task::Waker) -> bool {
        self.task.is_own_waker(w)
    }

    /// The filter's configured name.
    #[inline]
    pub(crate) fn name(&self) -> &str {
        &self.meta.name
    }

    /// Bytes of per-stream buffers this slot holds (none once reset: see `reset`).
    #[cfg(feature = "testing")]
    pub(crate) fn retained_bytes(&self) -> usize {
        self.arena.capacity()
            + self.callouts.capacity()
            + self.streams.capacity()
            + self.reply.try_borrow().map_or(0, |r| r.capacity())
            + {
                let v = self.snapshot.take();
                let n = v.capacity();
                self.snapshot.set(v);
                n
            }
    }
}

impl crate::filter::callouts::CalloutOwner for StreamCore {
    fn callouts(&self) -> &Callouts {
        &self.callouts
    }

    fn start_callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<Result<u64, u32>> {
        self.with_host(|h| h.callout(cluster, headers, body, timeout_ms))
    }

    fn ended(&self) -> bool {
        self.st().ended()
    }

    fn is_own_waker(&self, w: &std::task::Waker) -> bool {
        StreamCore::is_own_waker(self, w)
    }
}
