//! The network escape hatch: filters written directly against Envoy's network hooks.

use crate::abi::network::DataStatus;
use crate::executor::pool::{Idle, Pool, StreamTotals};
use crate::filter::network::{ConnEvent, ConnHooks, NetConfigHooks, PANIC_DETAILS};
use crate::host::Committer;
use crate::host::network::{Addr, Close, ConnHost, Side};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::Arc;

/// What a raw network filter's data hook returns (Envoy's `Network::FilterStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The buffer goes on to the filters after this one (with `tcp_proxy`: upstream, or to
    /// the client for a write).
    Continue,
    /// The buffer stays where it is: what the filter left in it waits, and comes again with
    /// the next data (a read resumes with [`RawConnection::continue_reading`]).
    StopIteration,
}

impl Status {
    fn abi(self) -> DataStatus {
        match self {
            Status::Continue => DataStatus::Continue,
            Status::StopIteration => DataStatus::StopIteration,
        }
    }
}

/// A connection event, as Envoy reports it to [`RawFilter::on_event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The client closed the connection.
    RemoteClose,
    /// Envoy (or a filter, this one included) closed it.
    LocalClose,
    /// The connection is established.
    Connected,
    /// Established with 0-RTT data.
    ConnectedZeroRtt,
}

impl Event {
    fn of(e: ConnEvent) -> Event {
        match e {
            ConnEvent::RemoteClose => Event::RemoteClose,
            ConnEvent::LocalClose => Event::LocalClose,
            ConnEvent::Connected => Event::Connected,
            ConnEvent::ConnectedZeroRtt => Event::ConnectedZeroRtt,
        }
    }
}

/// A network filter implemented directly against Envoy's per-connection hooks: the network
/// twin of [`jisr::raw::RawFilter`](crate::raw::RawFilter). Every method has a default that
/// lets the connection through. Registered with
/// [`Registry::network_raw`](crate::Registry::network_raw) beside other filters of the module.
///
/// No future, no executor: each hook runs the method and returns its status to Envoy as is.
/// A panic in a hook resets the connection (close details `jisr_network_handler_panic`), and
/// the filter gets no more hooks.
///
/// ```
/// use jisr::network::{RawConnection, RawFilter, Status};
/// use jisr::testing::TestNetworkFilter;
/// use jisr::Registry;
///
/// /// Counts the lines the client sends; the bytes go on untouched.
/// #[derive(Default)]
/// struct Lines(usize);
/// impl RawFilter for Lines {
///     fn on_read(&mut self, c: &mut RawConnection<'_>, _end_stream: bool) -> Status {
///         c.read_chunks(|chunk| {
///             self.0 += chunk.iter().filter(|b| **b == b'\n').count();
///             true // the next chunk, if any
///         });
///         Status::Continue
///     }
/// }
/// fn register(r: &mut Registry) {
///     r.network_raw("lines", |_cfg| Ok(|| Lines::default()));
/// }
///
/// let f = TestNetworkFilter::new(register, "lines", b"").unwrap();
/// let mut c = f.connect();
/// c.client_sends(b"a\nb\n");
/// assert_eq!(c.upstream(), b"a\nb\n");
/// ```
pub trait RawFilter: 'static {
    /// The connection was accepted (the filter chain starts). With `StopIteration`, the
    /// filters after this one (the proxy) wait for [`RawConnection::continue_reading`].
    fn on_new_connection(&mut self, c: &mut RawConnection<'_>) -> Status {
        let _ = c;
        Status::Continue
    }
    /// Client bytes arrived: they are in the read buffer ([`RawConnection::read_chunks`]);
    /// `end_stream`: the client half-closed.
    fn on_read(&mut self, c: &mut RawConnection<'_>, end_stream: bool) -> Status {
        let _ = (c, end_stream);
        Status::Continue
    }
    /// Bytes toward the client arrived: they are in the write buffer
    /// ([`RawConnection::write_chunks`], during this hook only); `end_stream`: upstream
    /// half-closed.
    fn on_write(&mut self, c: &mut RawConnection<'_>, end_stream: bool) -> Status {
        let _ = (c, end_stream);
        Status::Continue
    }
    /// A connection event. A close the filter itself asks for during a hook is reported once
    /// that hook returned.
    fn on_event(&mut self, c: &mut RawConnection<'_>, event: Event) {
        let _ = (c, event);
    }
    /// A commit of a [`RawScheduler`] of this connection is delivered.
    fn on_scheduled(&mut self, c: &mut RawConnection<'_>) {
        let _ = c;
    }
}

/// Creates one [`RawFilter`] per connection; one factory per Envoy filter config. Any
/// `Fn() -> F` closure is one.
///
/// ```
/// use jisr::network::{RawConnection, RawFactory, RawFilter, Status};
/// use jisr::testing::TestNetworkFilter;
/// use jisr::{ConfigError, ConfigHandle, Registry};
///
/// /// Refuses connections whose first read is longer than its `filter_config` says.
/// struct MaxFirst(usize);
/// struct Check { max: usize }
/// impl RawFilter for Check {
///     fn on_read(&mut self, c: &mut RawConnection<'_>, _end: bool) -> Status {
///         if c.read_len() > self.max {
///             c.close("too_long");
///             return Status::StopIteration;
///         }
///         Status::Continue
///     }
/// }
/// impl RawFactory for MaxFirst {
///     type Filter = Check;
///     fn new_filter(&self) -> Check { Check { max: self.0 } }
/// }
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<MaxFirst, ConfigError> {
///     cfg.config_str()?.parse().map(MaxFirst).map_err(|_| ConfigError::new("not a size"))
/// }
/// fn register(r: &mut Registry) { r.network_raw("max_first", load); }
///
/// let f = TestNetworkFilter::new(register, "max_first", b"4").unwrap();
/// let mut c = f.connect();
/// c.client_sends(b"hello");
/// assert_eq!(c.closed().as_deref(), Some("too_long"));
/// ```
pub trait RawFactory: Send + Sync + 'static {
    /// The per-connection filter.
    type Filter: RawFilter;
    /// Creates the filter of a new connection (on the worker thread).
    fn new_filter(&self) -> Self::Filter;
}

impl<F: RawFilter, C: Fn() -> F + Send + Sync + 'static> RawFactory for C {
    type Filter = F;
    fn new_filter(&self) -> F {
        self()
    }
}

/// The connection as a raw network filter sees it during one hook.
///
/// Buffer views ([`read_chunks`](RawConnection::read_chunks),
/// [`write_chunks`](RawConnection::write_chunks)) point into Envoy's memory and live only
/// inside the closure they are handed to, under a shared borrow of the connection; every call
/// that may change a buffer (drain, inject, continue, close) takes `&mut self`, so none can
/// run while a view is alive:
///
/// ```compile_fail,E0500
/// # use jisr::network::{RawConnection, Status};
/// fn hook(c: &mut RawConnection<'_>) -> Status {
///     c.read_chunks(|chunk| {
///         c.drain_read(chunk.len()); // error: `*c` is already borrowed
///         true
///     });
///     Status::Continue
/// }
/// ```
///
/// ```compile_fail,E0521
/// # use jisr::network::{RawConnection, Status};
/// fn hook(c: &mut RawConnection<'_>) -> Status {
///     let mut first: &[u8] = &[];
///     c.read_chunks(|chunk| {
///         first = chunk; // error: the view does not outlive the closure call
///         false
///     });
///     Status::Continue
/// }
/// ```
pub struct RawConnection<'h> {
    host: &'h dyn ConnHost,
    name: &'h str,
    /// A read hook ran: Envoy has a read buffer to ask about.
    read_ok: bool,
    /// This is a write hook: Envoy's write buffer exists.
    write_ok: bool,
    /// Set when the filter closes the connection.
    closed: &'h Cell<bool>,
}

fn socket_addr(host: &dyn ConnHost, which: Addr) -> Option<SocketAddr> {
    let mut buf = [0u8; 64];
    let (n, port) = host.address(which, &mut buf)?;
    let ip = core::str::from_utf8(&buf[..n]).ok()?.parse().ok()?;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

impl RawConnection<'_> {
    /// Bytes in Envoy's read buffer (client bytes not passed on yet); `0` before the first
    /// read hook.
    pub fn read_len(&self) -> usize {
        if self.read_ok {
            self.host.len(Side::Read)
        } else {
            0
        }
    }

    /// Calls `f` with each chunk of the read buffer, in order, viewed in place (no copy);
    /// stops early when `f` returns `false`.
    pub fn read_chunks(&self, mut f: impl FnMut(&[u8]) -> bool) {
        if self.read_ok {
            self.host.chunks(Side::Read, &mut f);
        }
    }

    /// Copies the first bytes of the read buffer into `out`; returns how many.
    pub fn copy_read(&self, out: &mut [u8]) -> usize {
        if self.read_ok {
            self.host.copy(Side::Read, out)
        } else {
            0
        }
    }

    /// Removes the first `n` bytes of the read buffer (they never reach upstream).
    pub fn drain_read(&mut self, n: usize) {
        if self.read_ok && n > 0 {
            self.host.drain(Side::Read, n);
        }
    }

    /// Bytes in Envoy's write buffer (toward the client); `0` outside [`RawFilter::on_write`].
    pub fn write_len(&self) -> usize {
        if self.write_ok {
            self.host.len(Side::Write)
        } else {
            0
        }
    }

    /// As [`read_chunks`](RawConnection::read_chunks), for the write buffer (in
    /// [`RawFilter::on_write`] only).
    pub fn write_chunks(&self, mut f: impl FnMut(&[u8]) -> bool) {
        if self.write_ok {
            self.host.chunks(Side::Write, &mut f);
        }
    }

    /// Copies the first bytes of the write buffer into `out` (in [`RawFilter::on_write`]
    /// only); returns how many.
    pub fn copy_write(&self, out: &mut [u8]) -> usize {
        if self.write_ok {
            self.host.copy(Side::Write, out)
        } else {
            0
        }
    }

    /// Removes the first `n` bytes of the write buffer (in [`RawFilter::on_write`] only).
    pub fn drain_write(&mut self, n: usize) {
        if self.write_ok && n > 0 {
            self.host.drain(Side::Write, n);
        }
    }

    /// Hands `data` to the filters after this one, toward upstream (`end_stream`: and
    /// half-closes that direction). Envoy copies it.
    pub fn inject_read(&mut self, data: &[u8], end_stream: bool) {
        self.host.inject_read(data, end_stream);
    }

    /// Hands `data` to the write filters after this one, toward the client (`end_stream`:
    /// and half-closes that direction). Envoy copies it.
    pub fn inject_write(&mut self, data: &[u8], end_stream: bool) {
        self.host.inject_write(data, end_stream);
    }

    /// Lets the filters after this one see the read buffer again after a `StopIteration`.
    pub fn continue_reading(&mut self) {
        self.host.continue_reading();
    }

    /// Stops (`true`) or resumes (`false`) reading from the client socket.
    pub fn read_disable(&mut self, disable: bool) {
        self.host.read_disable(disable);
    }

    /// Closes the connection after what is pending toward the client is written; `details`
    /// go to Envoy's access log (`%CONNECTION_TERMINATION_DETAILS%`).
    pub fn close(&mut self, details: &str) {
        if !self.closed.replace(true) {
            self.host.close(Close::Flush, details.as_bytes());
        }
    }

    /// Resets the connection at once (pending bytes dropped); `details` as for
    /// [`close`](RawConnection::close).
    pub fn reset(&mut self, details: &str) {
        if !self.closed.replace(true) {
            self.host.close(Close::Reset, details.as_bytes());
        }
    }

    /// Envoy's id of the connection.
    pub fn id(&self) -> u64 {
        self.host.connection_id()
    }

    /// The client's address as Envoy sees it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        socket_addr(self.host, Addr::Remote)
    }

    /// The local address the client connected to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        socket_addr(self.host, Addr::Local)
    }

    /// Whether the client connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.host.is_tls()
    }

    /// Sets a string in the connection's dynamic metadata.
    pub fn set_metadata(&mut self, namespace: &str, key: &str, value: &str) {
        self.host
            .set_metadata(namespace.as_bytes(), key.as_bytes(), value.as_bytes());
    }

    /// Creates a scheduler for this connection (call once, keep it); its commits arrive as
    /// [`RawFilter::on_scheduled`] on the connection's worker, from any thread. Once the
    /// connection is gone, commits do nothing.
    pub fn scheduler(&self) -> RawScheduler {
        RawScheduler(self.host.new_scheduler().unwrap_or_else(Committer::inert))
    }

    /// Logs a line (nothing is formatted when the level is disabled).
    pub fn log(&self, level: crate::Level, args: core::fmt::Arguments<'_>) {
        let level = level as u32;
        if self.host.log_enabled(level) {
            crate::host::log::with_line(|s| core::fmt::write(s, args), |l| self.host.log(level, l));
        }
    }

    /// The `filter_name` this filter was configured with.
    pub fn filter_name(&self) -> &str {
        self.name
    }
}

/// Commits wakes to a connection from any thread; see [`RawConnection::scheduler`].
pub struct RawScheduler(Committer);

impl RawScheduler {
    /// Asks Envoy to call [`RawFilter::on_scheduled`] on the connection's worker. A no-op once
    /// the connection is gone.
    pub fn commit(&self) {
        self.0.commit(0)
    }
}

// ---- the pooled per-connection slot ----------------------------------------------------

/// Per-config state of a raw network filter.
pub(crate) struct RawNetConfig<F: RawFactory> {
    name: Arc<str>,
    factory: F,
    pool: Pool<RawConnSlot<F>>,
}

impl<F: RawFactory> RawNetConfig<F> {
    pub(crate) fn new(name: Arc<str>, factory: F) -> RawNetConfig<F> {
        RawNetConfig {
            name,
            factory,
            pool: Pool::default(),
        }
    }
}

/// One connection of a raw network filter; `#[repr(C)]` with the hooks pointer first (see
/// `hooks_of`).
#[repr(C)]
pub(crate) struct RawConnSlot<F: RawFactory> {
    hooks: *const dyn ConnHooks,
    cfg: *const RawNetConfig<F>,
    /// `None`: not made yet, poisoned by a panic, or ended.
    filter: RefCell<Option<F::Filter>>,
    read_seen: Cell<bool>,
    closed: Cell<bool>,
    /// A close event Envoy raised inside one of the filter's own hooks, delivered after it.
    deferred_close: Cell<Option<ConnEvent>>,
    /// One of this slot's hooks is running (the filter may not be borrowed all along: a
    /// panic's clean-up calls Envoy after giving the filter up).
    in_hook: Cell<bool>,
    /// Envoy asked to destroy the filter while one of its hooks ran.
    destroy_pending: Cell<bool>,
}

// SAFETY: `destroy` hands a slot to the pool only after taking and dropping its filter (the
// only user value, possibly thread-bound); what remains are cells and pointers to the slot
// and its `Sync` config.
unsafe impl<F: RawFactory> Idle for RawConnSlot<F> {}

impl<F: RawFactory> NetConfigHooks for RawNetConfig<F> {
    fn new_filter(&self) -> *const core::ffi::c_void {
        let slot = self.pool.take_or(|| {
            Box::new(RawConnSlot {
                hooks: core::ptr::null::<RawConnSlot<F>>() as *const dyn ConnHooks,
                cfg: self,
                filter: RefCell::new(None),
                read_seen: Cell::new(false),
                closed: Cell::new(false),
                deferred_close: Cell::new(None),
                in_hook: Cell::new(false),
                destroy_pending: Cell::new(false),
            })
        });
        // The user's factory may panic: hand the slot back first so it is not lost.
        let filter = match crate::executor::catch(|| self.factory.new_filter()) {
            Ok(f) => f,
            Err(msg) => {
                self.pool.put(slot, StreamTotals::default());
                std::panic::resume_unwind(Box::new(msg));
            }
        };
        *slot.filter.borrow_mut() = Some(filter);
        let raw = Pool::into_raw(slot);
        // SAFETY: `raw` is the live, uniquely owned slot just released; the self-pointer is
        // derived from it after every mutable access.
        unsafe { (*raw).hooks = raw as *const dyn ConnHooks };
        raw as *const core::ffi::c_void
    }
}

impl<F: RawFactory> RawConnSlot<F> {
    fn cfg(&self) -> &RawNetConfig<F> {
        // SAFETY: Envoy destroys a network filter config only after every filter made from it,
        // and slots go back to (or are freed with) that config's pool: the config outlives
        // the slot; it is boxed in the entry layer and never moves.
        unsafe { &*self.cfg }
    }

    /// Runs one hook of the filter; `default` when it is gone or busy (re-entered). A panic
    /// poisons the filter and resets the connection.
    #[inline]
    fn with<R>(
        &self,
        host: &dyn ConnHost,
        write_ok: bool,
        default: R,
        f: impl FnOnce(&mut F::Filter, &mut RawConnection<'_>) -> R,
    ) -> R {
        let outer = self.in_hook.replace(true);
        let r = self.run(host, write_ok, default, f);
        self.in_hook.set(outer);
        r
    }

    #[inline]
    fn run<R>(
        &self,
        host: &dyn ConnHost,
        write_ok: bool,
        default: R,
        f: impl FnOnce(&mut F::Filter, &mut RawConnection<'_>) -> R,
    ) -> R {
        let cfg = self.cfg();
        let Ok(mut guard) = self.filter.try_borrow_mut() else {
            return default;
        };
        let Some(filter) = guard.as_mut() else {
            return default;
        };
        let mut c = RawConnection {
            host,
            name: &cfg.name,
            read_ok: self.read_seen.get(),
            write_ok,
            closed: &self.closed,
        };
        let r = match crate::executor::catch(|| f(filter, &mut c)) {
            Ok(r) => r,
            Err(msg) => {
                drop(guard);
                self.fail_closed(host, &msg);
                return default;
            }
        };
        // A close Envoy raised while the filter ran (its own `close`): told now.
        if let Some(e) = self.deferred_close.take() {
            if let Err(msg) = crate::executor::catch(|| filter.on_event(&mut c, Event::of(e))) {
                drop(guard);
                self.fail_closed(host, &msg);
            }
        }
        r
    }

    #[cold]
    #[inline(never)]
    fn fail_closed(&self, host: &dyn ConnHost, msg: &str) {
        // Its state is unknown: no more hooks; the connection is reset, nothing more passes.
        let poisoned = self.filter.try_borrow_mut().map(|mut f| f.take());
        if let Ok(filter) = poisoned {
            let _ = crate::executor::catch(move || drop(filter));
        }
        if host.log_enabled(crate::Level::Error as u32) {
            let line = format!(
                "jisr: raw network filter '{}' panicked: {msg}",
                self.cfg().name
            );
            host.log(crate::Level::Error as u32, line.as_bytes());
        }
        if !self.closed.replace(true) {
            host.close(Close::Reset, PANIC_DETAILS.as_bytes());
        }
    }

    /// Ends the connection and returns the slot to its pool.
    ///
    /// # Safety
    /// `ptr` is a pointer from `new_filter` of this slot type, not used afterwards.
    unsafe fn destroy(ptr: *const core::ffi::c_void) {
        // SAFETY: guaranteed by the caller: the slot is alive until this call frees it.
        let this = unsafe { &*(ptr as *const Self) };
        if this.in_hook.get() {
            // Destroyed from inside one of its hooks: finished once that hook returned.
            this.destroy_pending.set(true);
            return;
        }
        // SAFETY: guaranteed by the caller.
        let slot = unsafe { Pool::<Self>::from_raw(ptr as *const Self) };
        let filter = slot.filter.borrow_mut().take();
        // The user's `Drop` may panic; the slot is clean either way.
        let _ = crate::executor::catch(move || drop(filter));
        slot.read_seen.set(false);
        slot.closed.set(false);
        slot.deferred_close.set(None);
        slot.in_hook.set(false);
        slot.destroy_pending.set(false);
        // SAFETY: as in `cfg`; read before the box moves.
        let cfg = unsafe { &*slot.cfg };
        cfg.pool.put(slot, StreamTotals::default());
    }
}

impl<F: RawFactory> ConnHooks for RawConnSlot<F> {
    fn new_connection(&self, host: &dyn ConnHost) -> DataStatus {
        self.with(host, false, DataStatus::StopIteration, |f, c| {
            f.on_new_connection(c).abi()
        })
    }

    fn data(&self, host: &dyn ConnHost, side: Side, end: bool) -> DataStatus {
        match side {
            Side::Read => {
                self.read_seen.set(true);
                self.with(host, false, DataStatus::StopIteration, |f, c| {
                    f.on_read(c, end).abi()
                })
            }
            Side::Write => self.with(host, true, DataStatus::StopIteration, |f, c| {
                f.on_write(c, end).abi()
            }),
        }
    }

    fn event(&self, host: &dyn ConnHost, event: ConnEvent) {
        if event.is_close() {
            self.closed.set(true);
            if self.filter.try_borrow_mut().is_err() {
                // Raised by the filter's own close, inside its hook: told when it returns.
                self.deferred_close.set(Some(event));
                return;
            }
        }
        self.with(host, false, (), |f, c| f.on_event(c, Event::of(event)))
    }

    fn scheduled(&self, host: &dyn ConnHost) {
        self.with(host, false, (), |f, c| f.on_scheduled(c))
    }

    fn callout_done(
        &self,
        _host: &dyn ConnHost,
        _id: u64,
        _result: u32,
        _headers: crate::host::HeaderArray<'_>,
        _chunks: crate::host::ChunkArray<'_>,
    ) {
        // Raw network filters start no callouts.
    }

    fn take_pending_destroy(&self) -> bool {
        !self.in_hook.get() && self.destroy_pending.replace(false)
    }

    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        Self::destroy
    }
}
