//! The per-socket state machine of a listener filter: one pooled slot per accepted socket
//! holding the handler's future, driven inline in Envoy's listener filter hooks.
//!
//! The rules (the API docs in `jisr::listener` say the same to users):
//!
//! - The handler starts in `on_accept`. If it returns there, the socket goes on at once
//!   (`Continue`); otherwise the hook returns `StopIteration` and Envoy peeks at the client's
//!   first bytes (up to the filter's max read bytes), calling `on_data` as they grow.
//! - Each `on_data` copies Envoy's peek buffer into the slot (the handler's `peek` reads that
//!   copy, in any hook) and polls the handler. Returned there: `Continue`; still waiting:
//!   `StopIteration`.
//! - Woken from elsewhere (a value from another thread, a timer), the handler is polled in
//!   `on_scheduled`; if it returns there, the slot calls `continue_filter_chain(true)`.
//! - An HTTP callout's answer (`on_http_callout_done`) goes into the socket's callout table
//!   and polls the handler as `on_scheduled` does; once the socket went on or closed the
//!   answer is dropped without a poll.
//! - A handler that closes the socket ends it: `StopIteration` in `on_accept`/`on_data` (Envoy
//!   sees the closed socket), `continue_filter_chain(false)` in `on_scheduled`.
//! - A handler that panics closes the socket the same way (fail closed), with details
//!   [`PANIC_DETAILS`].
//! - Once the socket went on or closed (or Envoy reported the peer's close with `on_close`),
//!   nothing more is called on Envoy's filter and the handler is not polled again; a handler
//!   still waiting is dropped when Envoy destroys the filter (also after Envoy's
//!   `listener_filters_timeout`, which calls no hook).

use crate::abi::listener::FilterStatus;
use crate::executor::pool::{Idle, Pool, StreamTotals};
use crate::executor::task::{Cleared, TaskCell};
use crate::executor::waker::WakerSlot;
use crate::executor::{Driven, Task};
use crate::filter::callouts::{CalloutOwner, Callouts};
use crate::host::listener::SocketHost;
use crate::host::listener::current::SocketHostSlot;
use crate::host::{ChunkArray, HeaderArray};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

/// Close details of a socket whose handler panicked.
pub(crate) const PANIC_DETAILS: &str = "jisr_listener_handler_panic";
/// Peek buffers larger than this are not kept by an idle slot.
const KEEP_BYTES: usize = 64 << 10;

/// What a registered listener filter starts for each socket.
pub(crate) trait SocketTask: Send + Sync + 'static {
    /// The handler's future.
    type Fut: Future<Output = ()> + 'static;
    /// Starts the handler for one socket.
    fn start(&'static self, core: &'static SocketCore) -> Self::Fut;
}

/// Per-socket state the API reads and writes (inside hooks only).
pub(crate) struct SocketCore {
    /// The host of the running hook.
    pub(crate) host: SocketHostSlot,
    /// The executor's per-socket state.
    pub(crate) task: Task,
    /// The filter's name (for logs).
    pub(crate) name: Arc<str>,
    /// How many bytes Envoy peeks for this filter.
    pub(crate) max_read: Cell<usize>,
    /// Envoy's peek buffer as of the last `on_data` (minus what was drained since).
    pub(crate) bytes: RefCell<Vec<u8>>,
    /// How many of `bytes` the handler's last peek reported.
    pub(crate) seen: Cell<usize>,
    /// The socket is closed (by the handler, a panic, or the peer).
    pub(crate) closed: Cell<bool>,
    /// The handler returned.
    pub(crate) done: Cell<bool>,
    /// The socket went on or closed: nothing more is called on Envoy, no more polls.
    pub(crate) ended: Cell<bool>,
    /// A peek waits here for more bytes.
    pub(crate) data_waker: WakerSlot,
    /// Envoy asked to destroy the filter while one of our hooks ran.
    pub(crate) destroy_pending: Cell<bool>,
    /// Unary HTTP callouts.
    pub(crate) callouts: Callouts,
}

impl SocketCore {
    fn new(name: Arc<str>, max_read: usize) -> SocketCore {
        SocketCore {
            host: SocketHostSlot::default(),
            task: Task::default(),
            name,
            max_read: Cell::new(max_read),
            bytes: RefCell::new(Vec::new()),
            seen: Cell::new(0),
            closed: Cell::new(false),
            done: Cell::new(false),
            ended: Cell::new(false),
            data_waker: WakerSlot::default(),
            destroy_pending: Cell::new(false),
            callouts: Callouts::default(),
        }
    }

    /// Readies the core for the next socket (the future is already dropped).
    fn reset(&mut self, max_read: usize) {
        self.host.reset();
        self.task.reset();
        *self.max_read.get_mut() = max_read;
        let bytes = self.bytes.get_mut();
        bytes.clear();
        if bytes.capacity() > KEEP_BYTES {
            *bytes = Vec::new();
        }
        *self.seen.get_mut() = 0;
        *self.closed.get_mut() = false;
        *self.done.get_mut() = false;
        *self.ended.get_mut() = false;
        self.data_waker.clear();
        *self.destroy_pending.get_mut() = false;
        self.callouts.reset();
    }

    /// Whether `w` is the socket's own waker (not a combinator's).
    pub(crate) fn is_own_waker(&self, w: &std::task::Waker) -> bool {
        self.task.is_own_waker(w)
    }

    /// Closes the socket (once); `details` become the connection's termination details.
    pub(crate) fn close(&self, details: &[u8]) {
        if self.ended.get() || self.closed.replace(true) {
            return;
        }
        self.host.with(|h| h.close(details));
    }

    /// Consumes the first `n` peeked bytes from the socket; `false` outside the `on_data`
    /// hook that peeked them, or past what was peeked.
    pub(crate) fn drain(&self, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if self.ended.get() || self.closed.get() || n > self.bytes.borrow().len() {
            return false;
        }
        if self.host.with(|h| h.drain(n)) != Some(true) {
            return false;
        }
        self.bytes.borrow_mut().drain(..n);
        // The next peek reports what remains at once (the handler re-reads from the new
        // start), or waits when nothing remains.
        self.seen.set(0);
        true
    }

    /// Writes a log line through the running hook's host (dropped outside hooks).
    pub(crate) fn log(&self, level: u32, args: core::fmt::Arguments<'_>) {
        self.host.with(|h| {
            if h.log_enabled(level) {
                crate::host::log::with_line(|s| core::fmt::write(s, args), |l| h.log(level, l));
            }
        });
    }
}

impl CalloutOwner for SocketCore {
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
        if self.ended.get() {
            return None;
        }
        self.host
            .with(|h| h.callout(cluster, headers, body, timeout_ms))
    }

    fn ended(&self) -> bool {
        self.ended.get()
    }

    fn is_own_waker(&self, w: &std::task::Waker) -> bool {
        self.task.is_own_waker(w)
    }
}

/// A listener filter config: the task to start, and the pool of socket slots.
pub(crate) struct ListenerConfig<T: SocketTask> {
    pub(crate) task: T,
    pub(crate) name: Arc<str>,
    pub(crate) max_read: usize,
    /// A log usable at any time (for failures after the socket's last hook).
    pub(crate) process_log: Option<fn(u32, &[u8])>,
    pub(crate) pool: Pool<SocketSlot<T>>,
}

/// What the entry layer calls on a config, whatever its task type.
pub(crate) trait ListenerConfigHooks: Send + Sync {
    /// A new socket: its slot, as Envoy's module filter pointer (null: refused). The config
    /// must outlive the slot (Envoy destroys a config after its filters).
    fn new_filter(&self) -> *const core::ffi::c_void;
}

/// What the entry layer calls on a socket, whatever its task type.
pub(crate) trait SocketHooks {
    /// `on_listener_filter_on_accept`.
    fn accept(&self, host: &dyn SocketHost) -> FilterStatus;
    /// `on_listener_filter_on_data`.
    fn data(&self, host: &dyn SocketHost) -> FilterStatus;
    /// `on_listener_filter_on_close`: the peer closed while this filter held the socket.
    fn peer_closed(&self);
    /// `on_listener_filter_scheduled`.
    fn scheduled(&self, host: &dyn SocketHost);
    /// `on_listener_filter_http_callout_done`.
    fn callout_done(
        &self,
        host: &dyn SocketHost,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    );
    /// `on_listener_filter_get_max_read_bytes`.
    fn max_read_bytes(&self) -> usize;
    /// Whether Envoy asked to destroy the filter while a hook of ours ran (the entry then
    /// destroys it once that hook returned).
    fn take_pending_destroy(&self) -> bool;
    /// The function that ends the socket's handler and recycles this slot.
    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void);
}

/// One accepted socket. `#[repr(C)]` with the hooks pointer first, so the thin pointer Envoy
/// holds turns back into `&dyn SocketHooks` without knowing the task type.
#[repr(C)]
pub(crate) struct SocketSlot<T: SocketTask> {
    hooks: *const dyn SocketHooks,
    cfg: *const ListenerConfig<T>,
    pub(crate) core: SocketCore,
    fut: TaskCell<T::Fut>,
}

// SAFETY: a slot goes back to the pool only after `finish` dropped its future (a slot whose
// future could not be dropped is leaked instead); what remains is plain per-socket state,
// `Send` wakers, and pointers to itself and its `Sync` config.
unsafe impl<T: SocketTask> Idle for SocketSlot<T> {}

/// The hooks pointer Envoy's module filter pointer holds first.
///
/// # Safety
/// `ptr` came from `ListenerConfigHooks::new_filter` and its socket is not destroyed.
pub(crate) unsafe fn hooks_of<'a>(ptr: *const core::ffi::c_void) -> &'a dyn SocketHooks {
    // SAFETY: every slot is `#[repr(C)]` with the hooks pointer first, set to the slot itself
    // in `new_filter`; the slot lives until its destroyer runs (caller's contract).
    unsafe { &**(ptr as *const *const dyn SocketHooks) }
}

impl<T: SocketTask> ListenerConfigHooks for ListenerConfig<T> {
    fn new_filter(&self) -> *const core::ffi::c_void {
        if self.pool.leaked() >= crate::executor::pool::MAX_LEAKED {
            return core::ptr::null();
        }
        let slot = self.pool.take_or(|| {
            Box::new(SocketSlot {
                hooks: core::ptr::null::<SocketSlot<T>>() as *const dyn SocketHooks,
                cfg: self,
                core: SocketCore::new(self.name.clone(), self.max_read),
                fut: TaskCell::default(),
            })
        });
        let raw = Pool::into_raw(slot);
        // SAFETY: `raw` is the live, uniquely owned slot just released; the self-pointer is
        // derived from it after every mutable access.
        unsafe { (*raw).hooks = raw as *const dyn SocketHooks };
        raw as *const core::ffi::c_void
    }
}

/// Which hook a drive ran in (it decides how the socket goes on).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `on_accept` or `on_data`: the returned status tells Envoy.
    Status,
    /// `on_scheduled`: the slot calls `continue_filter_chain`.
    Scheduled,
}

impl<T: SocketTask> SocketSlot<T> {
    fn cfg(&self) -> &'static ListenerConfig<T> {
        // SAFETY: Envoy destroys a listener filter config only after every filter made from it
        // (each holds the config), and slots go back to (or are freed with) that config's
        // pool, so the config outlives the slot; it is never moved (boxed in the entry layer).
        unsafe { &*self.cfg }
    }

    fn core_static(&self) -> &'static SocketCore {
        // SAFETY: the slot is boxed and does not move while the socket lives; the future
        // holding this reference is dropped (`finish`) before the slot is reused or freed.
        // Handler code is generic over the lifetime, so it cannot rely on it being `'static`.
        unsafe { &*(&self.core as *const SocketCore) }
    }

    /// Polls the handler once through the executor, `deliver` first.
    fn drive(&self, deliver: impl FnOnce()) -> Driven {
        let core = &self.core;
        core.task.drive(
            || core.host.with(|h| h.new_scheduler()).flatten(),
            deliver,
            |cx| match self.fut.poll(cx) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            },
        )
    }

    /// Acts on how a drive ended: the status for Envoy (`on_accept`/`on_data`), or the
    /// `continue_filter_chain` call (`on_scheduled`).
    fn settle(&self, host: &dyn SocketHost, d: Driven, phase: Phase) -> FilterStatus {
        let core = &self.core;
        match d {
            Driven::Ready => core.done.set(true),
            Driven::Panicked(msg) => {
                core.log(
                    4,
                    format_args!(
                        "jisr: listener filter '{}': handler panicked: {msg}",
                        core.name
                    ),
                );
                core.done.set(true);
                let _ = self.fut.clear();
                if !core.closed.replace(true) {
                    host.close(PANIC_DETAILS.as_bytes());
                }
            }
            Driven::Pending | Driven::Nested => {}
        }
        if core.closed.get() {
            // Envoy sees the closed socket after a status; a scheduled drive must say so.
            core.ended.set(true);
            core.host.detach();
            if phase == Phase::Scheduled {
                host.continue_chain(false);
            }
            return FilterStatus::StopIteration;
        }
        if core.done.get() {
            core.ended.set(true);
            core.host.detach();
            if phase == Phase::Scheduled {
                host.continue_chain(true);
            }
            return FilterStatus::Continue;
        }
        FilterStatus::StopIteration
    }

    /// Ends the socket's handler: no more polls or wakes, the future dropped.
    fn finish(&self) -> bool {
        self.core.ended.set(true);
        crate::executor::waker::kill(&self.core.task.wake);
        match self.fut.clear() {
            Cleared::Clean => true,
            Cleared::Panicked(msg) => {
                if let Some(log) = self.cfg().process_log {
                    log(
                        4,
                        format!(
                            "jisr: listener filter '{}': dropping a handler's future panicked: \
                             {msg}",
                            self.core.name
                        )
                        .as_bytes(),
                    );
                }
                true
            }
            Cleared::Busy => false,
        }
    }

    /// Ends the socket and returns the slot to its pool.
    ///
    /// # Safety
    /// `ptr` is a pointer from `new_filter` of this slot type, not used afterwards.
    unsafe fn destroy(ptr: *const core::ffi::c_void) {
        // SAFETY: guaranteed by the caller: the slot is alive until this call frees it.
        let this = unsafe { &*(ptr as *const Self) };
        this.core.host.detach();
        if this.core.host.is_set() {
            // Destroyed from inside one of our own hooks: the entry finishes once it returns.
            this.core.destroy_pending.set(true);
            return;
        }
        let clean = this.finish();
        // SAFETY: guaranteed by the caller.
        let mut slot = unsafe { Pool::<Self>::from_raw(ptr as *const Self) };
        let cfg = slot.cfg();
        let totals = StreamTotals {
            polls: slot.core.task.polls.get(),
            wakes_inline: slot.core.task.repolls.get(),
            wakes_scheduled: slot.core.task.commits(),
        };
        if clean {
            slot.core.reset(cfg.max_read);
            cfg.pool.put(slot, totals);
        } else {
            cfg.pool.leak(slot, totals);
        }
    }
}

impl<T: SocketTask> SocketHooks for SocketSlot<T> {
    fn accept(&self, host: &dyn SocketHost) -> FilterStatus {
        let core = &self.core;
        if core.ended.get() {
            return FilterStatus::Continue;
        }
        core.host.enter(host, || {
            let fut = self.cfg().task.start(self.core_static());
            let _ = self.fut.set(fut);
            let d = self.drive(|| {});
            self.settle(host, d, Phase::Status)
        })
    }

    fn data(&self, host: &dyn SocketHost) -> FilterStatus {
        let core = &self.core;
        if core.ended.get() {
            return if core.closed.get() {
                FilterStatus::StopIteration
            } else {
                FilterStatus::Continue
            };
        }
        {
            let mut bytes = core.bytes.borrow_mut();
            if !host.peeked(&mut bytes) {
                bytes.clear();
            }
            let max = core.max_read.get();
            if bytes.len() > max {
                bytes.truncate(max);
            }
            if core.seen.get() > bytes.len() {
                core.seen.set(bytes.len());
            }
        }
        core.host.enter(host, || {
            let d = self.drive(|| core.data_waker.wake());
            self.settle(host, d, Phase::Status)
        })
    }

    fn peer_closed(&self) {
        let core = &self.core;
        core.closed.set(true);
        core.ended.set(true);
        core.host.detach();
    }

    fn scheduled(&self, host: &dyn SocketHost) {
        let core = &self.core;
        core.task.wake.delivered();
        if core.ended.get() {
            return;
        }
        core.host.enter(host, || {
            let d = self.drive(|| {});
            self.settle(host, d, Phase::Scheduled);
        });
    }

    fn callout_done(
        &self,
        host: &dyn SocketHost,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    ) {
        let core = &self.core;
        if core.ended.get() {
            // The socket went on or closed: nothing waits, and Envoy's filter is not called.
            return;
        }
        core.host.enter(host, || {
            let d = self.drive(|| {
                core.callouts
                    .deliver(id, result, headers.iter(), chunks.iter());
            });
            // Answered inside the call that started it: the running poll goes on and its
            // hook settles the socket.
            if !matches!(d, Driven::Nested) {
                self.settle(host, d, Phase::Scheduled);
            }
        });
    }

    fn max_read_bytes(&self) -> usize {
        self.core.max_read.get()
    }

    fn take_pending_destroy(&self) -> bool {
        !self.core.host.is_set() && self.core.destroy_pending.replace(false)
    }

    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        Self::destroy
    }
}

/// A simulated socket's slot, owned: hooks run through it and dropping it destroys the filter
/// as Envoy would (for `jisr::testing`).
#[cfg(feature = "testing")]
pub(crate) struct SimSlot<'c> {
    ptr: *const core::ffi::c_void,
    _config: core::marker::PhantomData<&'c dyn ListenerConfigHooks>,
}

#[cfg(feature = "testing")]
impl<'c> SimSlot<'c> {
    /// A new socket of `config` (`None`: refused).
    pub(crate) fn new(config: &'c dyn ListenerConfigHooks) -> Option<SimSlot<'c>> {
        let ptr = config.new_filter();
        (!ptr.is_null()).then_some(SimSlot {
            ptr,
            _config: core::marker::PhantomData,
        })
    }

    /// Runs one hook, then a destroy Envoy asked for during it (as the entry layer does).
    pub(crate) fn hook<R>(&self, f: impl FnOnce(&dyn SocketHooks) -> R) -> R {
        // SAFETY: the slot lives until `drop` destroys it; the config it points at is borrowed
        // for `'c`, which outlives `self`.
        let hooks = unsafe { hooks_of(self.ptr) };
        let r = f(hooks);
        debug_assert!(!hooks.take_pending_destroy());
        r
    }
}

#[cfg(feature = "testing")]
impl Drop for SimSlot<'_> {
    fn drop(&mut self) {
        // SAFETY: as `hook`; the pointer is not used after this.
        let destroy = unsafe { hooks_of(self.ptr) }.destroyer();
        // SAFETY: destroyed once, after the last hook.
        unsafe { destroy(self.ptr) };
    }
}
