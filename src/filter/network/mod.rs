//! The per-connection state machine of a network (L4) filter: one pooled slot per connection
//! holding the handler's future, driven inline in Envoy's network hooks.
//!
//! The rules (the API docs in `jisr::network` say the same to users):
//!
//! - The handler starts in `on_new_connection`, which always lets the filter chain go on (the
//!   proxy after this filter connects upstream); nothing passes yet.
//! - While the handler runs, the client's bytes stay in Envoy's read buffer until the handler
//!   reads them (`StopIteration`): only what the handler sends upstream reaches it. Envoy's
//!   own read-buffer limit stops reading from the client when that buffer is full.
//! - Upstream bytes pass untouched until the handler first asks for them; from then on each
//!   write hook moves them into the connection's inbox (bounded: the connection is reset with
//!   details past the limit) and only what the handler sends reaches the client.
//! - When the handler returns, the connection flows on untouched: bytes still in Envoy's read
//!   buffer go on upstream, the inbox goes to the client, and later hooks return `Continue`
//!   at once.
//! - A handler that panics resets the connection (fail closed), with details
//!   [`PANIC_DETAILS`].

use crate::abi::network::DataStatus;
use crate::executor::pool::{Idle, Pool, StreamTotals};
use crate::executor::task::{Cleared, TaskCell};
use crate::executor::waker::WakerSlot;
use crate::executor::{Driven, Task};
use crate::filter::callouts::{CalloutOwner, Callouts};
use crate::host::network::current::ConnHostSlot;
use crate::host::network::{Close, ConnHost, Side};
use crate::host::{ChunkArray, HeaderArray};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

/// Close details of a connection whose handler panicked.
pub(crate) const PANIC_DETAILS: &str = "jisr_network_handler_panic";
/// Close details of a connection whose upstream sent more than the inbox holds.
pub(crate) const INBOX_DETAILS: &str = "jisr_network_upstream_inbox_full";
/// The inbox limit when the filter sets none.
pub(crate) const DEFAULT_INBOX: usize = 1 << 20;

/// A connection event, as Envoy reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnEvent {
    /// The client closed the connection.
    RemoteClose,
    /// Envoy (or a filter) closed it.
    LocalClose,
    /// The connection is established.
    Connected,
    /// Established with 0-RTT data.
    ConnectedZeroRtt,
}

impl ConnEvent {
    /// Whether the connection is closed.
    pub(crate) fn is_close(self) -> bool {
        matches!(self, ConnEvent::RemoteClose | ConnEvent::LocalClose)
    }
}

/// What a registered network filter starts for each connection.
pub(crate) trait ConnTask: Send + Sync + 'static {
    /// The handler's future.
    type Fut: Future<Output = ()> + 'static;
    /// Starts the handler for one connection.
    fn start(&'static self, core: &'static ConnCore) -> Self::Fut;
}

/// Per-connection state the API reads and writes (inside hooks only).
pub(crate) struct ConnCore {
    /// The host of the running hook.
    pub(crate) host: ConnHostSlot,
    /// The executor's per-connection state.
    pub(crate) task: Task,
    /// The filter's name (for logs).
    pub(crate) name: Arc<str>,
    /// The upstream inbox limit in bytes.
    pub(crate) inbox_limit: Cell<usize>,
    /// A read hook ran: Envoy's read buffer may be asked for.
    pub(crate) read_seen: Cell<bool>,
    /// The handler took everything Envoy's read buffer held (a copy came back short), so it
    /// stays empty until the next read hook: reads need not ask Envoy.
    pub(crate) read_drained: Cell<bool>,
    /// The client half-closed (a read hook said end of stream).
    pub(crate) read_end: Cell<bool>,
    /// Upstream half-closed (a write hook said end of stream).
    pub(crate) write_end: Cell<bool>,
    /// The connection is closed.
    pub(crate) closed: Cell<bool>,
    /// `read_any` reported the client's end.
    pub(crate) read_end_told: Cell<bool>,
    /// `read_any` reported upstream's end.
    pub(crate) write_end_told: Cell<bool>,
    /// The handler asked for upstream bytes: write hooks move them into the inbox.
    pub(crate) watch_upstream: Cell<bool>,
    /// Upstream bytes the handler has not read yet.
    pub(crate) inbox: RefCell<Vec<u8>>,
    /// A write hook is polling: its bytes are in Envoy's write buffer.
    pub(crate) in_write_hook: Cell<bool>,
    /// The handler half-closed toward upstream itself.
    pub(crate) sent_upstream_end: Cell<bool>,
    /// The handler half-closed toward the client itself.
    pub(crate) sent_downstream_end: Cell<bool>,
    /// The handler returned: the connection flows on untouched.
    pub(crate) done: Cell<bool>,
    /// The handler stopped reading from the client (`hold_reading`).
    pub(crate) reading_held: Cell<bool>,
    /// A reader of client bytes waits here.
    pub(crate) read_waker: WakerSlot,
    /// A reader of upstream bytes waits here.
    pub(crate) upstream_waker: WakerSlot,
    /// Envoy asked to destroy the filter while one of our hooks ran.
    pub(crate) destroy_pending: Cell<bool>,
    /// Unary HTTP callouts.
    pub(crate) callouts: Callouts,
    /// The connection ended: no more host calls, callouts cannot complete.
    pub(crate) ended: Cell<bool>,
}

impl ConnCore {
    fn new(name: Arc<str>, inbox_limit: usize) -> ConnCore {
        ConnCore {
            host: ConnHostSlot::default(),
            task: Task::default(),
            name,
            inbox_limit: Cell::new(inbox_limit),
            read_seen: Cell::new(false),
            read_drained: Cell::new(false),
            read_end: Cell::new(false),
            write_end: Cell::new(false),
            closed: Cell::new(false),
            read_end_told: Cell::new(false),
            write_end_told: Cell::new(false),
            watch_upstream: Cell::new(false),
            inbox: RefCell::new(Vec::new()),
            in_write_hook: Cell::new(false),
            sent_upstream_end: Cell::new(false),
            sent_downstream_end: Cell::new(false),
            done: Cell::new(false),
            reading_held: Cell::new(false),
            read_waker: WakerSlot::default(),
            upstream_waker: WakerSlot::default(),
            destroy_pending: Cell::new(false),
            callouts: Callouts::default(),
            ended: Cell::new(false),
        }
    }

    /// Readies the core for the next connection (the future is already dropped).
    fn reset(&mut self) {
        self.host.reset();
        self.task.reset();
        *self.read_seen.get_mut() = false;
        *self.read_drained.get_mut() = false;
        *self.read_end.get_mut() = false;
        *self.write_end.get_mut() = false;
        *self.closed.get_mut() = false;
        *self.read_end_told.get_mut() = false;
        *self.write_end_told.get_mut() = false;
        *self.watch_upstream.get_mut() = false;
        let inbox = self.inbox.get_mut();
        inbox.clear();
        // What one connection grew beyond a small size is returned, not kept per idle slot.
        if inbox.capacity() > 16 << 10 {
            *inbox = Vec::new();
        }
        *self.sent_upstream_end.get_mut() = false;
        *self.in_write_hook.get_mut() = false;
        *self.sent_downstream_end.get_mut() = false;
        *self.done.get_mut() = false;
        *self.reading_held.get_mut() = false;
        self.read_waker.clear();
        self.upstream_waker.clear();
        *self.destroy_pending.get_mut() = false;
        self.callouts.reset();
        *self.ended.get_mut() = false;
    }

    /// Whether `w` is the connection's own waker (not a combinator's).
    pub(crate) fn is_own_waker(&self, w: &std::task::Waker) -> bool {
        self.task.is_own_waker(w)
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

impl CalloutOwner for ConnCore {
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

/// A network filter config: the task to start, and the pool of connection slots.
pub(crate) struct NetConfig<T: ConnTask> {
    pub(crate) task: T,
    pub(crate) name: Arc<str>,
    pub(crate) inbox_limit: usize,
    /// A log usable at any time (for failures after the connection's last hook).
    pub(crate) process_log: Option<fn(u32, &[u8])>,
    pub(crate) pool: Pool<ConnSlot<T>>,
}

/// What the entry layer calls on a config, whatever its task type.
pub(crate) trait NetConfigHooks: Send + Sync {
    /// A new connection: its slot, as Envoy's module filter pointer (null: refused). The
    /// config must outlive the slot (Envoy destroys a config after its filters).
    fn new_filter(&self) -> *const core::ffi::c_void;
}

/// What the entry layer calls on a connection, whatever its task type.
pub(crate) trait ConnHooks {
    /// `on_network_filter_new_connection`.
    fn new_connection(&self, host: &dyn ConnHost) -> DataStatus;
    /// `on_network_filter_read` / `_write` (the data is in `side`'s buffer).
    fn data(&self, host: &dyn ConnHost, side: Side, end: bool) -> DataStatus;
    /// `on_network_filter_event`.
    fn event(&self, host: &dyn ConnHost, event: ConnEvent);
    /// `on_network_filter_scheduled`.
    fn scheduled(&self, host: &dyn ConnHost);
    /// `on_network_filter_http_callout_done`.
    fn callout_done(
        &self,
        host: &dyn ConnHost,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    );
    /// Whether Envoy asked to destroy the filter while a hook of ours ran (the entry then
    /// destroys it once that hook returned).
    fn take_pending_destroy(&self) -> bool;
    /// The function that ends the connection and recycles this slot.
    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void);
}

/// One connection. `#[repr(C)]` with the hooks pointer first, so the thin pointer Envoy holds
/// turns back into `&dyn ConnHooks` without knowing the task type.
#[repr(C)]
pub(crate) struct ConnSlot<T: ConnTask> {
    hooks: *const dyn ConnHooks,
    cfg: *const NetConfig<T>,
    pub(crate) core: ConnCore,
    fut: TaskCell<T::Fut>,
}

// SAFETY: a slot goes back to the pool only after `finish` dropped its future (a slot whose
// future could not be dropped is leaked instead); what remains is plain per-connection state,
// `Send` wakers, and pointers to itself and its `Sync` config.
unsafe impl<T: ConnTask> Idle for ConnSlot<T> {}

/// The hooks pointer Envoy's module filter pointer holds first.
///
/// # Safety
/// `ptr` came from `NetConfigHooks::new_filter` and its connection is not destroyed.
pub(crate) unsafe fn hooks_of<'a>(ptr: *const core::ffi::c_void) -> &'a dyn ConnHooks {
    // SAFETY: every slot is `#[repr(C)]` with the hooks pointer first, set to the slot itself
    // in `new_filter`; the slot lives until its destroyer runs (caller's contract).
    unsafe { &**(ptr as *const *const dyn ConnHooks) }
}

impl<T: ConnTask> NetConfigHooks for NetConfig<T> {
    fn new_filter(&self) -> *const core::ffi::c_void {
        if self.pool.leaked() >= crate::executor::pool::MAX_LEAKED {
            return core::ptr::null();
        }
        let slot = self.pool.take_or(|| {
            Box::new(ConnSlot {
                hooks: core::ptr::null::<ConnSlot<T>>() as *const dyn ConnHooks,
                cfg: self,
                core: ConnCore::new(self.name.clone(), self.inbox_limit),
                fut: TaskCell::default(),
            })
        });
        let raw = Pool::into_raw(slot);
        // SAFETY: `raw` is the live, uniquely owned slot just released; the self-pointer is
        // derived from it after every mutable access.
        unsafe { (*raw).hooks = raw as *const dyn ConnHooks };
        raw as *const core::ffi::c_void
    }
}

impl<T: ConnTask> ConnSlot<T> {
    fn cfg(&self) -> &'static NetConfig<T> {
        // SAFETY: Envoy destroys a network filter config only after every filter made from it
        // (each holds the config), and slots go back to (or are freed with) that config's pool,
        // so the config outlives the slot; it is never moved (boxed in the entry layer).
        unsafe { &*self.cfg }
    }

    fn core_static(&self) -> &'static ConnCore {
        // SAFETY: the slot is boxed and does not move while the connection lives; the future
        // holding this reference is dropped (`finish`) before the slot is reused or freed.
        // Handler code is generic over the lifetime, so it cannot rely on it being `'static`.
        unsafe { &*(&self.core as *const ConnCore) }
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

    /// Acts on how a drive ended; `in_read`: the drive ran in a read hook (whose status
    /// passes the read buffer on).
    fn after(&self, host: &dyn ConnHost, d: Driven, in_read: bool) {
        match d {
            Driven::Ready => self.complete(host, in_read),
            Driven::Panicked(msg) => {
                self.core.log(
                    4,
                    format_args!(
                        "jisr: network filter '{}': handler panicked: {msg}",
                        self.core.name
                    ),
                );
                self.core.done.set(true);
                let _ = self.fut.clear();
                // Reset, and nothing more passes: not even what this hook brought.
                if !self.core.closed.replace(true) {
                    host.close(Close::Reset, PANIC_DETAILS.as_bytes());
                }
            }
            Driven::Pending | Driven::Nested => {}
        }
    }

    /// The handler returned: what it left flows on.
    fn complete(&self, host: &dyn ConnHost, in_read: bool) {
        let core = &self.core;
        core.done.set(true);
        if core.closed.get() {
            return;
        }
        if core.reading_held.replace(false) {
            host.read_disable(false);
        }
        // Taken out of the cell for the call: nothing of ours can borrow it meanwhile.
        let mut inbox = core::mem::take(&mut *core.inbox.borrow_mut());
        if !inbox.is_empty() || core.write_end.get() {
            host.inject_write(&inbox, core.write_end.get());
        }
        inbox.clear();
        *core.inbox.borrow_mut() = inbox;
        // Client bytes held by earlier `StopIteration`s: a read hook passes them with its
        // status; any other hook hands them on now.
        let held = core.read_seen.get() && (host.len(Side::Read) > 0 || core.read_end.get());
        if !in_read && held && !core.sent_upstream_end.get() {
            host.continue_reading();
        }
    }

    /// Ends the connection's handler: no more polls or wakes, the future dropped.
    fn finish(&self) -> bool {
        self.core.done.set(true);
        self.core.ended.set(true);
        crate::executor::waker::kill(&self.core.task.wake);
        match self.fut.clear() {
            Cleared::Clean => true,
            Cleared::Panicked(msg) => {
                if let Some(log) = self.cfg().process_log {
                    log(
                        4,
                        format!(
                            "jisr: network filter '{}': dropping a handler's future panicked: \
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

    /// Ends the connection and returns the slot to its pool.
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
            slot.core.reset();
            cfg.pool.put(slot, totals);
        } else {
            cfg.pool.leak(slot, totals);
        }
    }
}

impl<T: ConnTask> ConnHooks for ConnSlot<T> {
    fn new_connection(&self, host: &dyn ConnHost) -> DataStatus {
        self.core.host.enter(host, || {
            let fut = self.cfg().task.start(self.core_static());
            let _ = self.fut.set(fut);
            let d = self.drive(|| {});
            self.after(host, d, false);
        });
        // The chain goes on (the proxy connects upstream); reads are held in `data`.
        DataStatus::Continue
    }

    fn data(&self, host: &dyn ConnHost, side: Side, end: bool) -> DataStatus {
        let core = &self.core;
        if core.done.get() {
            return DataStatus::Continue;
        }
        match side {
            Side::Read => {
                core.read_seen.set(true);
                core.read_drained.set(false);
                if end {
                    core.read_end.set(true);
                }
                core.host.enter(host, || {
                    let d = self.drive(|| core.read_waker.wake());
                    if !matches!(d, Driven::Pending) {
                        self.after(host, d, true);
                    }
                });
                if core.done.get() && !core.closed.get() && !core.sent_upstream_end.get() {
                    // Returned: what it did not read goes on with this hook.
                    DataStatus::Continue
                } else {
                    DataStatus::StopIteration
                }
            }
            Side::Write => {
                if !core.watch_upstream.get() {
                    return DataStatus::Continue;
                }
                if end {
                    core.write_end.set(true);
                }
                core.host.enter(host, || {
                    // The handler reads this hook's bytes straight from Envoy's write buffer
                    // while it runs (no copy into the inbox first).
                    core.in_write_hook.set(true);
                    let d = self.drive(|| core.upstream_waker.wake());
                    core.in_write_hook.set(false);
                    self.after(host, d, false);
                    if core.done.get() || core.closed.get() {
                        return;
                    }
                    // What it did not take waits in the inbox, which bounds the backlog: bytes
                    // of one hook are always taken (Envoy's own buffer limits bound them), a
                    // backlog past the limit resets the connection.
                    let n = host.len(Side::Write);
                    if n == 0 {
                        return;
                    }
                    let held = core.inbox.borrow().len();
                    if held > 0 && held + n > core.inbox_limit.get() {
                        core.log(
                            3,
                            format_args!(
                                "jisr: network filter '{}': upstream sent {} bytes the handler \
                                 has not read (limit {}): connection reset",
                                core.name,
                                held + n,
                                core.inbox_limit.get()
                            ),
                        );
                        core.closed.set(true);
                        host.close(Close::Reset, INBOX_DETAILS.as_bytes());
                        return;
                    }
                    let mut inbox = core.inbox.borrow_mut();
                    inbox.resize(held + n, 0);
                    let got = host.copy(Side::Write, &mut inbox[held..]);
                    inbox.truncate(held + got);
                    drop(inbox);
                    host.drain(Side::Write, got);
                });
                DataStatus::StopIteration
            }
        }
    }

    fn event(&self, host: &dyn ConnHost, event: ConnEvent) {
        let core = &self.core;
        if !event.is_close() || core.closed.get() {
            return;
        }
        core.closed.set(true);
        if core.done.get() {
            return;
        }
        core.host.enter(host, || {
            let d = self.drive(|| {
                core.read_waker.wake();
                core.upstream_waker.wake();
            });
            self.after(host, d, false);
        });
    }

    fn scheduled(&self, host: &dyn ConnHost) {
        let core = &self.core;
        core.task.wake.delivered();
        if core.done.get() {
            return;
        }
        core.host.enter(host, || {
            let d = self.drive(|| {});
            self.after(host, d, false);
        });
    }

    fn callout_done(
        &self,
        host: &dyn ConnHost,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    ) {
        let core = &self.core;
        if core.done.get() {
            // The handler returned: nothing waits for it.
            return;
        }
        core.host.enter(host, || {
            let d = self.drive(|| {
                core.callouts
                    .deliver(id, result, headers.iter(), chunks.iter());
            });
            self.after(host, d, false);
        });
    }

    fn take_pending_destroy(&self) -> bool {
        !self.core.host.is_set() && self.core.destroy_pending.replace(false)
    }

    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        Self::destroy
    }
}

/// A simulated connection's slot, owned: hooks run through it and dropping it destroys the
/// connection as Envoy would (for `jisr::testing`).
#[cfg(feature = "testing")]
pub(crate) struct SimSlot<'c> {
    ptr: *const core::ffi::c_void,
    _config: core::marker::PhantomData<&'c dyn NetConfigHooks>,
}

#[cfg(feature = "testing")]
impl<'c> SimSlot<'c> {
    /// A new connection of `config` (`None`: refused).
    pub(crate) fn new(config: &'c dyn NetConfigHooks) -> Option<SimSlot<'c>> {
        let ptr = config.new_filter();
        (!ptr.is_null()).then_some(SimSlot {
            ptr,
            _config: core::marker::PhantomData,
        })
    }

    /// Runs one hook on `host`, then a destroy Envoy asked for during it (as the entry layer
    /// does). While it runs, a close raises the close event inside the call, as Envoy does.
    pub(crate) fn hook<R>(
        &self,
        host: &crate::host::network::sim::SimConn,
        f: impl FnOnce(&dyn ConnHooks) -> R,
    ) -> R {
        use crate::host::network::sim::{RaiseClose, SimConn};
        /// # Safety
        /// `ptr` is a live slot, inside one of its hooks.
        unsafe fn raise(ptr: *const core::ffi::c_void, host: &SimConn) {
            // SAFETY: guaranteed by the caller.
            unsafe { hooks_of(ptr) }.event(host, ConnEvent::LocalClose);
        }
        struct Restore<'h>(&'h SimConn, Option<RaiseClose>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.close_event.set(self.1);
            }
        }
        let _restore = Restore(
            host,
            host.close_event.replace(Some(RaiseClose {
                slot: self.ptr,
                raise,
            })),
        );
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
