//! Per-stream state shared by the state machine and the handler-facing handles.

use crate::executor::Task;
use crate::executor::arena::Arena;
use crate::executor::waker::WakerSlot;
use crate::filter::callouts::Callouts;
use crate::filter::reply::StagedReply;
use crate::filter::streams::Streams;
use crate::host::current::HostSlot;
use crate::host::{BodyKind, Host};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Facts about one registered filter config, shared by its streams.
pub(crate) struct FilterMeta {
    pub(crate) name: String,
    /// How the response handler sees the response.
    pub(crate) mode: ResponseMode,
    pub(crate) stats: FilterStats,
    /// Envoy metrics mirroring the stats (absent when opted out, and for raw filters).
    pub(crate) envoy: Option<crate::filter::stats::EnvoyStats>,
    /// The process-wide log of the host that loaded the config, for lines written when no
    /// hook (so no stream host) is running, e.g. while a stream is destroyed.
    pub(crate) process_log: Option<fn(u32, &[u8])>,
}

/// Introspection counters of one filter config that are not kept by its slot pool.
#[derive(Debug, Default)]
pub(crate) struct FilterStats {
    pub(crate) panics: AtomicU64,
    /// Destructors of handler futures (or their values) that panicked; caught, and the slot
    /// was still cleaned and reused.
    pub(crate) drop_panics: AtomicU64,
    /// Panics inside jisr itself, failed closed.
    pub(crate) internal_failures: AtomicU64,
}

impl FilterStats {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a filter's response handler sees the response; fixed at registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseMode {
    /// Response headers are held while the handler runs (it may change them); the body is not
    /// given to the handler ([`Response::read`] returns end of body at once) and is not
    /// forwarded before the handler is done.
    Passthrough,
    /// Headers and body flow to the client immediately. The handler reads body chunks as they
    /// pass: each chunk is readable during the hook that delivers it, and bytes the handler has
    /// not read by then are skipped (a handler that stops reading never stalls the stream).
    /// Headers can no longer be changed.
    Observe,
    /// Headers and body are held until the handler is done; the handler can read the whole body,
    /// change headers and replace the body (content-length is kept right).
    Buffer,
}

/// Where a handler is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started.
    Idle,
    /// Started and pending.
    Running,
    /// Completed, panicked or cancelled.
    Done,
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

/// Read position and limits of one body (request or response).
#[derive(Debug)]
pub(crate) struct BodyCursor {
    /// How the body is retained.
    pub(crate) retention: Cell<Retention>,
    /// Passing mode: bytes of the stream before the current chunk.
    pub(crate) base: Cell<usize>,
    /// The stream ended before the body did; reads fail.
    pub(crate) aborted: Cell<bool>,
    /// A read returned pending (the handler is waiting for body bytes).
    pub(crate) waiting: Cell<bool>,
    /// Bytes the handler has read so far.
    pub(crate) offset: Cell<usize>,
    /// End of stream has been seen (end flag or trailers).
    pub(crate) eos: Cell<bool>,
    /// The handler sees at most this many bytes.
    pub(crate) limit: Cell<usize>,
    /// The handler said it won't read (more of) the body.
    pub(crate) skipped: Cell<bool>,
    /// Inside a body hook: the received chunk is not yet part of the buffered body.
    pub(crate) in_hook: Cell<bool>,
    /// Inside a body hook: bytes of the buffered body, and bytes readable in all (buffered plus
    /// the received chunk when it is separate), measured once per hook by [`BodyCursor::enter_hook`].
    hook_buffered: Cell<usize>,
    hook_end: Cell<usize>,
    /// The waker of a read waiting for body bytes (see `WakerSlot`).
    pub(crate) waker: WakerSlot,
}

impl Default for BodyCursor {
    fn default() -> Self {
        BodyCursor {
            retention: Cell::new(Retention::Held),
            base: Cell::new(0),
            aborted: Cell::new(false),
            waiting: Cell::new(false),
            offset: Cell::new(0),
            eos: Cell::new(false),
            limit: Cell::new(usize::MAX),
            skipped: Cell::new(false),
            in_hook: Cell::new(false),
            hook_buffered: Cell::new(0),
            hook_end: Cell::new(0),
            waker: WakerSlot::default(),
        }
    }
}

impl BodyCursor {
    pub(crate) fn reset(&self) {
        self.retention.set(Retention::Held);
        self.base.set(0);
        self.aborted.set(false);
        self.waiting.set(false);
        self.offset.set(0);
        self.eos.set(false);
        self.limit.set(usize::MAX);
        self.skipped.set(false);
        self.in_hook.set(false);
        self.waker.clear();
    }

    /// A body hook starts: measures what is readable during it (the body does not change while
    /// the hook runs, except through the handler's own `replace_body`).
    pub(crate) fn enter_hook(&self, host: &dyn Host, request: bool) {
        let (buffered, received) = if request {
            (BodyKind::BufferedRequest, BodyKind::ReceivedRequest)
        } else {
            (BodyKind::BufferedResponse, BodyKind::ReceivedResponse)
        };
        let received_len = host.body_len(received);
        match self.retention.get() {
            Retention::Passing => {
                self.hook_buffered.set(0);
                self.hook_end.set(self.base.get() + received_len);
            }
            _ => {
                let b = host.body_len(buffered);
                let separate = !host.received_is_buffered(request);
                self.hook_buffered.set(b);
                self.hook_end
                    .set(b + if separate { received_len } else { 0 });
            }
        }
        self.in_hook.set(true);
    }

    /// Whether the handler is done reading (skipped or limit reached).
    pub(crate) fn done_reading(&self) -> bool {
        self.skipped.get() || self.offset.get() >= self.limit.get()
    }

    /// Copies the next bytes of the body into `dst`.
    ///
    /// Returns `Some(n)` with `n > 0` for data, `Some(0)` at end of body (or limit), and `None`
    /// when more data may still arrive.
    pub(crate) fn read(&self, host: &dyn Host, request: bool, dst: &mut [u8]) -> Option<usize> {
        let (buffered, received) = if request {
            (BodyKind::BufferedRequest, BodyKind::ReceivedRequest)
        } else {
            (BodyKind::BufferedResponse, BodyKind::ReceivedResponse)
        };
        if self.skipped.get() || self.retention.get() == Retention::Hidden {
            return Some(0);
        }
        if self.retention.get() == Retention::Passing {
            return self.read_passing(host, received, dst);
        }
        let offset = self.offset.get();
        let room = self.limit.get().saturating_sub(offset);
        if room == 0 {
            return Some(0);
        }
        if dst.is_empty() {
            return Some(0);
        }
        let dst_len = dst.len().min(room);
        let dst = &mut dst[..dst_len];
        let (buffered_len, with_received) = if self.in_hook.get() {
            if offset >= self.hook_end.get() {
                // Everything readable in this hook was read: no need to ask Envoy again.
                return if self.eos.get() { Some(0) } else { None };
            }
            let b = self.hook_buffered.get();
            (b, self.hook_end.get() > b)
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
            self.offset.set(offset + n);
            return Some(n);
        }
        if self.eos.get() { Some(0) } else { None }
    }

    /// Observe mode: only the chunk of the current hook is readable; bytes the handler did not
    /// read while they passed are skipped.
    fn read_passing(&self, host: &dyn Host, received: BodyKind, dst: &mut [u8]) -> Option<usize> {
        let base = self.base.get();
        let mut offset = self.offset.get().max(base);
        let room = self.limit.get().saturating_sub(offset);
        if room == 0 || dst.is_empty() {
            return Some(0);
        }
        if self.in_hook.get() && offset < self.hook_end.get() {
            let want = dst.len().min(room);
            let n = host.copy_body(received, offset - base, &mut dst[..want]);
            offset += n;
            self.offset.set(offset);
            return Some(n);
        }
        self.offset.set(offset);
        if self.eos.get() { Some(0) } else { None }
    }
}

/// The non-generic part of a stream slot.
pub struct StreamCore {
    pub(crate) host: HostSlot,
    pub(crate) meta: Arc<FilterMeta>,
    /// The executor's side: wake cell and poll counts.
    pub(crate) task: Task,
    pub(crate) req_phase: Cell<Phase>,
    /// A request hook returned a stop status, so completion must resume decoding.
    pub(crate) req_stopped: Cell<bool>,
    pub(crate) resp_phase: Cell<Phase>,
    pub(crate) resp_stopped: Cell<bool>,
    /// This filter sent a local reply or started a streamed reply.
    pub(crate) replied: Cell<bool>,
    /// Response headers went downstream (a panic then resets instead of replying).
    pub(crate) resp_headers_sent: Cell<bool>,
    /// Envoy reported the stream complete while a poll was running; finish after it.
    pub(crate) complete_pending: Cell<bool>,
    /// The stream is over: no more polls or callbacks.
    pub(crate) ended: Cell<bool>,
    /// Envoy destroyed the filter while one of our hooks ran; finish when it unwinds.
    pub(crate) destroy_pending: Cell<bool>,
    /// Ending the stream could not drop its futures: the slot must never be reused.
    pub(crate) unclean: Cell<bool>,
    pub(crate) req_body: BodyCursor,
    pub(crate) resp_body: BodyCursor,
    /// Downstream write buffer is above its high watermark.
    pub(crate) above_high_watermark: Cell<bool>,
    /// The waker of a streamed-reply `send` waiting for the client to drain.
    pub(crate) send_waker: WakerSlot,
    /// The request pipeline is to be started by the next poll.
    pub(crate) req_start: Cell<bool>,
    /// Unary callouts.
    pub(crate) callouts: Callouts,
    /// Streaming callouts (buffers reused across streams of this slot).
    pub(crate) streams: Streams,
    /// Copies of the header values handed to handlers.
    pub(crate) arena: Arena,
    /// Scratch for iterating all headers of a map (taken out while in use).
    pub(crate) snapshot: Cell<Vec<u8>>,
    /// A local reply made by the running poll, sent when the poll returns.
    pub(crate) reply: std::cell::RefCell<StagedReply>,
}

impl StreamCore {
    pub(crate) fn new(meta: Arc<FilterMeta>) -> StreamCore {
        StreamCore {
            host: HostSlot::default(),
            meta,
            task: Task::default(),
            req_phase: Cell::new(Phase::Idle),
            req_stopped: Cell::new(false),
            resp_phase: Cell::new(Phase::Idle),
            resp_stopped: Cell::new(false),
            replied: Cell::new(false),
            resp_headers_sent: Cell::new(false),
            complete_pending: Cell::new(false),
            ended: Cell::new(false),
            destroy_pending: Cell::new(false),
            unclean: Cell::new(false),
            req_body: BodyCursor::default(),
            resp_body: BodyCursor::default(),
            above_high_watermark: Cell::new(false),
            send_waker: WakerSlot::default(),
            req_start: Cell::new(false),
            callouts: Callouts::default(),
            streams: Streams::default(),
            arena: Arena::default(),
            snapshot: Cell::new(Vec::new()),
            reply: std::cell::RefCell::new(StagedReply::default()),
        }
    }

    /// Readies the core for a new stream (every future of the previous one is gone).
    pub(crate) fn reset(&mut self) {
        self.host.reset();
        self.task.reset();
        self.req_phase.set(Phase::Idle);
        self.req_stopped.set(false);
        self.resp_phase.set(Phase::Idle);
        self.resp_stopped.set(false);
        self.replied.set(false);
        self.resp_headers_sent.set(false);
        self.complete_pending.set(false);
        self.ended.set(false);
        self.destroy_pending.set(false);
        self.unclean.set(false);
        self.req_body.reset();
        self.resp_body.reset();
        self.above_high_watermark.set(false);
        self.send_waker.clear();
        self.req_start.set(false);
        self.callouts.reset();
        self.streams.reset();
        self.arena.reset();
        self.reply.get_mut().clear();
        let snapshot = self.snapshot.get_mut();
        snapshot.clear();
        if snapshot.capacity() > RETAINED_SNAPSHOT {
            *snapshot = Vec::new();
        }
    }

    /// Runs `f` with the current host, if a hook is running and the stream is live.
    pub(crate) fn with_host<R>(&self, f: impl FnOnce(&dyn Host) -> R) -> Option<R> {
        if self.ended.get() {
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

    /// Whether `w` is the stream's own waker.
    pub(crate) fn is_own_waker(&self, w: &std::task::Waker) -> bool {
        self.task.is_own_waker(w)
    }

    /// The filter's configured name.
    pub(crate) fn name(&self) -> &str {
        &self.meta.name
    }

    /// Bytes of per-stream buffers this slot keeps allocated (bounded while idle; see
    /// `RETAINED_*` in the arena, callout and stream tables).
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

/// Capacity the header-iteration scratch keeps for the slot's next streams.
pub(crate) const RETAINED_SNAPSHOT: usize = 16 * 1024;
