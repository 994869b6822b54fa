//! Network (L4) filters: the handler API (public as `jisr::network`, whose docs say what a
//! handler sees and decides).

mod raw;

pub(crate) use raw::RawNetConfig;
pub use raw::{Event, RawConnection, RawFactory, RawFilter, RawScheduler, Status};

use crate::api::config::{ConfigError, ConfigHandle};
use crate::executor::pool::Pool;
use crate::filter::network::{ConnCore, ConnTask, NetConfig, NetConfigHooks};
use crate::host::network::{Addr, Close, MetaValue, Side, SockOpt, UpstreamText};
use std::future::Future;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One TCP connection, handed to a network filter's handler (see the [module docs](crate::network)).
///
/// It borrows the connection's slot: it cannot leave the handler (no `'static`), and it is not
/// `Send`.
pub struct Connection<'c> {
    core: &'c ConnCore,
    _not_send: PhantomData<*const ()>,
}

impl<'c> Connection<'c> {
    pub(crate) fn new(core: &'c ConnCore) -> Connection<'c> {
        Connection {
            core,
            _not_send: PhantomData,
        }
    }

    /// Waits for client bytes and moves up to `buf.len()` of them into `buf`; returns how many.
    /// `0` means no more will come: the client half-closed, or the connection is closed (or
    /// `buf` is empty).
    pub fn read<'a>(&'a mut self, buf: &'a mut [u8]) -> Read<'a> {
        Read {
            core: self.core,
            buf,
            side: Side::Read,
        }
    }

    /// Waits for bytes from upstream and moves up to `buf.len()` of them into `buf`; `0` when
    /// upstream half-closed or the connection is closed. The first call turns on the
    /// interception of upstream bytes (see [`watch_upstream`](Connection::watch_upstream)).
    pub fn read_upstream<'a>(&'a mut self, buf: &'a mut [u8]) -> Read<'a> {
        self.core.watch_upstream.set(true);
        Read {
            core: self.core,
            buf,
            side: Side::Write,
        }
    }

    /// Waits for bytes from either side and moves them into `buf`: what a handler that relays
    /// both directions awaits. Client bytes come first when both sides have some; each side's
    /// end is reported once. Turns on the interception of upstream bytes, like
    /// [`read_upstream`](Connection::read_upstream).
    pub fn read_any<'a>(&'a mut self, buf: &'a mut [u8]) -> ReadAny<'a> {
        self.core.watch_upstream.set(true);
        ReadAny {
            core: self.core,
            buf,
        }
    }

    /// From now on, upstream bytes wait for [`read_upstream`](Connection::read_upstream)
    /// instead of passing to the client (call it first thing in a handler that must see every
    /// upstream byte).
    pub fn watch_upstream(&mut self) {
        self.core.watch_upstream.set(true);
    }

    /// Sends `bytes` upstream (to the filters after this one; with `tcp_proxy`, the upstream
    /// connection). Envoy copies them. Once the connection is closed, sends do nothing.
    pub fn send_upstream(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && !self.core.closed.get() {
            self.core.host.with(|h| h.inject_read(bytes, false));
        }
    }

    /// Half-closes toward upstream (after what was sent).
    pub fn end_upstream(&mut self) {
        if self.core.closed.get() || self.core.sent_upstream_end.replace(true) {
            return;
        }
        self.core.host.with(|h| h.inject_read(&[], true));
    }

    /// Sends `bytes` to the client (through the write filters after this one). Envoy copies
    /// them.
    pub fn send_downstream(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() && !self.core.closed.get() {
            self.core.host.with(|h| h.inject_write(bytes, false));
        }
    }

    /// Half-closes toward the client (after what was sent).
    pub fn end_downstream(&mut self) {
        if self.core.closed.get() || self.core.sent_downstream_end.replace(true) {
            return;
        }
        self.core.host.with(|h| h.inject_write(&[], true));
    }

    /// Closes the connection once what was sent is written; `details` appear in Envoy's
    /// access log (`%CONNECTION_TERMINATION_DETAILS%`). They must pass
    /// [`wire::close_details`](crate::wire::close_details) (one word of visible ASCII):
    /// otherwise the connection still closes, with details
    /// [`INVALID_CLOSE_DETAILS`](crate::wire::INVALID_CLOSE_DETAILS), and the reason is
    /// logged at error, so bytes from the peer can never forge an access-log line.
    pub fn close(&mut self, details: &str) {
        let d = self.checked(details);
        self.core.host.with(|h| h.close(Close::Flush, d));
    }

    /// Resets the connection now, dropping what was not written. `details` as for
    /// [`close`](Self::close).
    pub fn reset(&mut self, details: &str) {
        let d = self.checked(details);
        self.core.host.with(|h| h.close(Close::Reset, d));
    }

    fn checked<'d>(&self, details: &'d str) -> &'d [u8] {
        crate::wire::close_details_or_default(details, |e| {
            self.log(
                crate::Level::Error,
                format_args!(
                    "close details refused ({e}); closing with {}",
                    crate::wire::INVALID_CLOSE_DETAILS
                ),
            )
        })
    }

    /// Stops (`true`) or resumes (`false`) reading from the client's socket, e.g. while the
    /// handler waits for something slow: the client's bytes then stay in the kernel and TCP
    /// pushes back on the client. Envoy also stops on its own when its read buffer is full.
    /// Reading resumes when the handler returns.
    pub fn hold_reading(&mut self, hold: bool) {
        if self.core.reading_held.replace(hold) != hold {
            self.core.host.with(|h| h.read_disable(hold));
        }
    }

    /// Whether the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.core.closed.get()
    }

    /// Envoy's id of the connection.
    pub fn id(&self) -> u64 {
        self.core.host.with(|h| h.connection_id()).unwrap_or(0)
    }

    /// The client's address (`None` for a pipe, or outside Envoy's hooks).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.addr(Addr::Remote)
    }

    /// The address the client connected to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr(Addr::Local)
    }

    /// The peer of the socket itself: the same as [`peer_addr`](Self::peer_addr) unless a
    /// listener filter replaced that (a PROXY protocol header, or a jisr listener filter's
    /// `set_remote_addr`), in which case this is the proxy that connected.
    pub fn direct_peer_addr(&self) -> Option<SocketAddr> {
        self.addr(Addr::DirectRemote)
    }

    fn addr(&self, which: Addr) -> Option<SocketAddr> {
        let mut buf = [0u8; 64];
        let (n, port) = self
            .core
            .host
            .with(|h| h.address(which, &mut buf))
            .flatten()?;
        let ip: IpAddr = core::str::from_utf8(&buf[..n]).ok()?.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
    }

    /// The server name (SNI) the client asked for in its TLS handshake, if any.
    pub fn server_name(&self) -> Option<ServerName> {
        let mut name = ServerName {
            bytes: [0; 255],
            len: 0,
        };
        let n = self
            .core
            .host
            .with(|h| h.server_name(&mut name.bytes))
            .flatten()?;
        core::str::from_utf8(&name.bytes[..n]).ok()?;
        name.len = n as u8;
        Some(name)
    }

    /// Whether the client connection is TLS (terminated by Envoy).
    pub fn is_tls(&self) -> bool {
        self.core.host.with(|h| h.is_tls()).unwrap_or(false)
    }

    /// Sets `key` to `value` in the connection's dynamic metadata under `namespace` (seen by
    /// later filters and access logs).
    pub fn set_metadata(&mut self, namespace: &str, key: &str, value: &str) {
        self.core
            .host
            .with(|h| h.set_metadata(namespace.as_bytes(), key.as_bytes(), value.as_bytes()));
    }

    /// Sets `key` to the number `value` in the connection's dynamic metadata.
    pub fn set_metadata_number(&mut self, namespace: &str, key: &str, value: f64) {
        self.set_value(namespace, key, MetaValue::Number(value));
    }

    /// Sets `key` to the bool `value` in the connection's dynamic metadata.
    pub fn set_metadata_bool(&mut self, namespace: &str, key: &str, value: bool) {
        self.set_value(namespace, key, MetaValue::Bool(value));
    }

    fn set_value(&mut self, namespace: &str, key: &str, value: MetaValue) {
        self.core
            .host
            .with(|h| h.set_metadata_value(namespace.as_bytes(), key.as_bytes(), value));
    }

    /// Copies the string under `namespace`/`key` of the connection's dynamic metadata (set by
    /// this filter or an earlier one) into `out` and returns its whole length, which may be
    /// more than `out` holds; `None` when absent or not a string.
    pub fn metadata_str(&self, namespace: &str, key: &str, out: &mut [u8]) -> Option<usize> {
        self.core
            .host
            .with(|h| h.metadata_str(namespace.as_bytes(), key.as_bytes(), out))
            .flatten()
    }

    /// The number under `namespace`/`key` of the connection's dynamic metadata (`None` when
    /// absent or not a number).
    pub fn metadata_number(&self, namespace: &str, key: &str) -> Option<f64> {
        match self.value(namespace, key, MetaValue::Number(0.0))? {
            MetaValue::Number(n) => Some(n),
            MetaValue::Bool(_) => None,
        }
    }

    /// The bool under `namespace`/`key` of the connection's dynamic metadata (`None` when
    /// absent or not a bool).
    pub fn metadata_bool(&self, namespace: &str, key: &str) -> Option<bool> {
        match self.value(namespace, key, MetaValue::Bool(false))? {
            MetaValue::Bool(b) => Some(b),
            MetaValue::Number(_) => None,
        }
    }

    fn value(&self, namespace: &str, key: &str, want: MetaValue) -> Option<MetaValue> {
        self.core
            .host
            .with(|h| h.metadata_value(namespace.as_bytes(), key.as_bytes(), want))
            .flatten()
    }

    /// The address of the upstream host the proxy after this filter (`tcp_proxy`) picked;
    /// `None` until it has picked one (it connects when the connection opens, so a handler
    /// sees it once its first upstream bytes arrive, or after its first read).
    pub fn upstream_addr(&self) -> Option<SocketAddr> {
        self.addr(Addr::Upstream)
    }

    /// Copies the upstream host's hostname (from the endpoint's config; empty when it has
    /// none) into `out`; its whole length. `None` until a host is picked.
    pub fn upstream_hostname(&self, out: &mut [u8]) -> Option<usize> {
        self.upstream_text(UpstreamText::Hostname, out)
    }

    /// Copies the name of the upstream host's cluster into `out`; its whole length. `None`
    /// until a host is picked.
    pub fn upstream_cluster(&self, out: &mut [u8]) -> Option<usize> {
        self.upstream_text(UpstreamText::Cluster, out)
    }

    fn upstream_text(&self, which: UpstreamText, out: &mut [u8]) -> Option<usize> {
        self.core
            .host
            .with(|h| h.upstream_text(which, out))
            .flatten()
    }

    /// Sets an integer socket option (`setsockopt(level, name, value)`, e.g.
    /// `libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1`) on the upstream connection the proxy
    /// after this filter makes. `tcp_proxy` connects when the connection opens, right after
    /// the handler's first poll: call it before the handler's first `.await` (later calls
    /// reach only connections made later, e.g. a retry).
    pub fn set_upstream_socket_option(&mut self, level: i32, name: i32, value: i64) {
        self.core.host.with(|h| {
            h.set_upstream_socket_option(i64::from(level), i64::from(name), SockOpt::Int(value))
        });
    }

    /// As [`set_upstream_socket_option`](Self::set_upstream_socket_option), with a bytes
    /// value (e.g. `SO_BINDTODEVICE`).
    pub fn set_upstream_socket_option_bytes(&mut self, level: i32, name: i32, value: &[u8]) {
        self.core.host.with(|h| {
            h.set_upstream_socket_option(i64::from(level), i64::from(name), SockOpt::Bytes(value))
        });
    }

    /// The connection's buffer limit in bytes: how much Envoy buffers on each side before it
    /// stops reading (`per_connection_buffer_limit_bytes`, 1 MiB by default).
    pub fn buffer_limit(&self) -> u32 {
        self.core.host.with(|h| h.buffer_limit()).unwrap_or(0)
    }

    /// Sets the connection's buffer limit (e.g. larger for a protocol with big frames).
    pub fn set_buffer_limit(&mut self, bytes: u32) {
        self.core.host.with(|h| h.set_buffer_limit(bytes));
    }

    /// The index of the Envoy worker thread running this connection (0-based).
    pub fn worker_index(&self) -> u32 {
        self.core.host.with(|h| h.worker_index()).unwrap_or(0)
    }

    /// Starts an HTTP callout to an Envoy cluster; the future gives the response, its body
    /// appended to `body` (as for HTTP filters: `jisr::callout`). Client bytes keep waiting
    /// in Envoy's read buffer meanwhile.
    ///
    /// ```
    /// use jisr::callout::CalloutRequest;
    /// use jisr::network::Connection;
    ///
    /// async fn authz(mut conn: Connection<'_>) {
    ///     let mut verdict = Vec::new();
    ///     let req = CalloutRequest::get("authz", "/check", "authz.local");
    ///     match conn.callout(req, &mut verdict).await {
    ///         Ok(r) if r.status == 200 => {} // returned: the connection flows on
    ///         _ => conn.reset("authz_denied"),
    ///     }
    /// }
    /// # let _ = authz;
    /// ```
    pub fn callout<'a>(
        &'a self,
        req: crate::callout::CalloutRequest<'a>,
        body: &'a mut Vec<u8>,
    ) -> crate::callout::Callout<'a> {
        crate::api::callout::Callout::new(self.core, req, body)
    }

    /// Sets a filter-state object of bytes under `key`, readable by later filters, access logs
    /// (`%FILTER_STATE(key)%`) and [`filter_state`](Connection::filter_state); whether Envoy
    /// took it (it refuses to replace a read-only object).
    pub fn set_filter_state(&mut self, key: &str, value: &[u8]) -> bool {
        self.core
            .host
            .with(|h| h.set_filter_state(key.as_bytes(), value))
            .unwrap_or(false)
    }

    /// Copies the bytes filter-state object under `key` into `out`; its whole length (which
    /// may exceed `out.len()`: only the first bytes were copied), or `None` when there is none.
    pub fn filter_state(&self, key: &str, out: &mut [u8]) -> Option<usize> {
        self.core
            .host
            .with(|h| h.filter_state(key.as_bytes(), out))
            .flatten()
    }

    /// Calls `f` with each DNS Subject Alternative Name of the client's TLS certificate
    /// (none without mutual TLS).
    pub fn peer_dns_sans(&self, mut f: impl FnMut(&str)) {
        self.core.host.with(|h| {
            h.peer_sans(true, &mut |b| {
                if let Ok(s) = core::str::from_utf8(b) {
                    f(s)
                }
            })
        });
    }

    /// Calls `f` with each URI Subject Alternative Name of the client's TLS certificate (e.g.
    /// a SPIFFE id).
    pub fn peer_uri_sans(&self, mut f: impl FnMut(&str)) {
        self.core.host.with(|h| {
            h.peer_sans(false, &mut |b| {
                if let Ok(s) = core::str::from_utf8(b) {
                    f(s)
                }
            })
        });
    }

    /// Copies the subject of the client's TLS certificate into `out`; its whole length, or
    /// `None` without one.
    pub fn peer_subject(&self, out: &mut [u8]) -> Option<usize> {
        self.core.host.with(|h| h.peer_subject(out)).flatten()
    }

    /// STARTTLS toward upstream: asks the upstream transport socket (Envoy's `starttls`
    /// transport socket) to switch to TLS now; `false` when it cannot.
    pub fn start_upstream_tls(&mut self) -> bool {
        self.core
            .host
            .with(|h| h.start_upstream_tls())
            .unwrap_or(false)
    }

    /// STARTTLS toward the client: asks the downstream transport socket (Envoy's `starttls`
    /// transport socket) to switch to TLS now (Envoy 1.40+); `Ok(false)` when it cannot.
    ///
    /// The switch happens inside the call, but Envoy writes what
    /// [`send_downstream`](Self::send_downstream) queued on a later turn of its event loop:
    /// an answer sent just before would go out inside TLS, to a client that waits for it in
    /// clear text. Hold reading (so the client's handshake reaches the TLS socket, not the
    /// handler), send the answer, let the loop write it, then switch; returning resumes
    /// reading (CONSTRAINTS.md, "Network (L4) filters"; the wait is a margin, not a promise
    /// from Envoy, which has no "written" event for modules):
    ///
    /// ```
    /// # async fn f(mut conn: jisr::network::Connection<'_>) {
    /// conn.hold_reading(true);
    /// conn.send_downstream(b"OK\r\n");
    /// jisr::time::sleep(std::time::Duration::from_millis(10)).await;
    /// if conn.start_downstream_tls() != Ok(true) {
    ///     conn.close("starttls_failed");
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Unsupported`](crate::Unsupported) on Envoys before 1.40.
    pub fn start_downstream_tls(&mut self) -> Result<bool, crate::Unsupported> {
        self.core
            .host
            .with(|h| h.start_downstream_tls())
            .unwrap_or(Some(false))
            .ok_or(crate::Unsupported {
                callback: "envoy_dynamic_module_callback_network_filter_start_downstream_secure_transport",
            })
    }

    crate::api::metrics::metric_methods!(
        "[`MetricError::LabelCount`](crate::handler::MetricError) when labels are given (network \
         filter metrics have none in Envoy's ABI), `NotFound`/`Rejected` from Envoy, and \
         `Detached` outside the handler's polls."
    );

    fn metric(
        &self,
        op: crate::host::MetricOp,
        id: usize,
        expected: usize,
        labels: &[&str],
        v: u64,
    ) -> Result<(), crate::handler::MetricError> {
        crate::api::metrics::label_free(expected, labels, || {
            self.core.host.with(|h| h.metric(op, id, v))
        })
    }

    /// Writes one line to Envoy's `dynamic_modules` log at `level` (formatted only when the
    /// level is on; no allocation once warm).
    pub fn log(&self, level: crate::Level, args: core::fmt::Arguments<'_>) {
        self.core.log(level as u32, args);
    }
}

/// A TLS server name (at most 255 bytes, as DNS allows), copied out of Envoy.
#[derive(Clone, Copy)]
pub struct ServerName {
    bytes: [u8; 255],
    len: u8,
}

impl core::ops::Deref for ServerName {
    type Target = str;
    fn deref(&self) -> &str {
        // Checked as UTF-8 when made.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl core::fmt::Debug for ServerName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&**self, f)
    }
}

/// The future of [`Connection::read`] and [`Connection::read_upstream`]: the number of bytes
/// moved into the buffer, `0` at the end.
#[must_use = "a read does nothing unless awaited"]
pub struct Read<'a> {
    core: &'a ConnCore,
    buf: &'a mut [u8],
    side: Side,
}

impl Future for Read<'_> {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let this = self.get_mut();
        let core = this.core;
        if this.buf.is_empty() {
            return Poll::Ready(0);
        }
        let n = take(core, this.side, this.buf);
        if n > 0 {
            return Poll::Ready(n);
        }
        let ended = core.closed.get()
            || match this.side {
                Side::Read => core.read_end.get(),
                Side::Write => core.write_end.get(),
            };
        if ended {
            return Poll::Ready(0);
        }
        let slot = match this.side {
            Side::Read => &core.read_waker,
            Side::Write => &core.upstream_waker,
        };
        slot.register(cx, |w| core.is_own_waker(w));
        Poll::Pending
    }
}

/// What [`Connection::read_any`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// This many client bytes are at the start of the buffer.
    Client(usize),
    /// This many upstream bytes are at the start of the buffer.
    Upstream(usize),
    /// The client half-closed (reported once).
    ClientEnd,
    /// Upstream half-closed (reported once).
    UpstreamEnd,
    /// The connection is closed, or both ends were reported (or the buffer is empty).
    Closed,
}

/// The future of [`Connection::read_any`].
#[must_use = "a read does nothing unless awaited"]
pub struct ReadAny<'a> {
    core: &'a ConnCore,
    buf: &'a mut [u8],
}

impl Future for ReadAny<'_> {
    type Output = Traffic;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Traffic> {
        let this = self.get_mut();
        let core = this.core;
        if this.buf.is_empty() || core.closed.get() {
            return Poll::Ready(Traffic::Closed);
        }
        let n = take(core, Side::Read, this.buf);
        if n > 0 {
            return Poll::Ready(Traffic::Client(n));
        }
        let n = take(core, Side::Write, this.buf);
        if n > 0 {
            return Poll::Ready(Traffic::Upstream(n));
        }
        if core.read_end.get() && !core.read_end_told.replace(true) {
            return Poll::Ready(Traffic::ClientEnd);
        }
        if core.write_end.get() && !core.write_end_told.replace(true) {
            return Poll::Ready(Traffic::UpstreamEnd);
        }
        if core.read_end_told.get() && core.write_end_told.get() {
            return Poll::Ready(Traffic::Closed);
        }
        core.read_waker.register(cx, |w| core.is_own_waker(w));
        core.upstream_waker.register(cx, |w| core.is_own_waker(w));
        Poll::Pending
    }
}

/// Moves the first bytes of `side` into `buf` (client bytes from Envoy's read buffer once a
/// read hook ran, upstream bytes from the inbox); how many.
fn take(core: &ConnCore, side: Side, buf: &mut [u8]) -> usize {
    match side {
        Side::Read => {
            // Envoy's read buffer exists once a read hook ran; after a close it is not asked
            // for again.
            if !core.read_seen.get() || core.read_drained.get() || core.closed.get() {
                return 0;
            }
            core.host
                .with(|h| {
                    let n = h.copy(Side::Read, buf);
                    if n > 0 {
                        h.drain(Side::Read, n);
                    }
                    if n < buf.len() {
                        // All it held: empty until the next read hook brings more.
                        core.read_drained.set(true);
                    }
                    n
                })
                .unwrap_or(0)
        }
        Side::Write => {
            let mut inbox = core.inbox.borrow_mut();
            if inbox.is_empty() {
                drop(inbox);
                // Inside a write hook the new bytes are still in Envoy's write buffer.
                if !core.in_write_hook.get() || core.closed.get() {
                    return 0;
                }
                return core
                    .host
                    .with(|h| {
                        let n = h.copy(Side::Write, buf);
                        if n > 0 {
                            h.drain(Side::Write, n);
                        }
                        n
                    })
                    .unwrap_or(0);
            }
            let n = inbox.len().min(buf.len());
            buf[..n].copy_from_slice(&inbox[..n]);
            inbox.drain(..n);
            n
        }
    }
}

/// What [`NetworkBuilder::handle`] accepts: `async fn(Connection<'_>)`, or with
/// [`state`](NetworkBuilder::state) `async fn(&S, Connection<'_>)`. Implemented for every such
/// function; you never implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a network handler",
    label = "expected `async fn(Connection<'_>)`, or `async fn(&S, Connection<'_>)` after `.state(load)`"
)]
pub trait NetworkHandler<'a, S: 'a, Marker>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = ()> + 'a;
    /// Starts handling one connection.
    fn call(&self, state: &'a S, conn: Connection<'a>) -> Self::Future;
}

/// Marks a handler without state.
#[doc(hidden)]
pub struct Stateless;
/// Marks a handler with state.
#[doc(hidden)]
pub struct WithState;

impl<'a, F, Fut> NetworkHandler<'a, (), Stateless> for F
where
    F: Fn(Connection<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, _: &'a (), conn: Connection<'a>) -> Fut {
        self(conn)
    }
}

impl<'a, S: 'a, F, Fut> NetworkHandler<'a, S, WithState> for F
where
    F: Fn(&'a S, Connection<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, state: &'a S, conn: Connection<'a>) -> Fut {
        self(state, conn)
    }
}

/// A handler bound to its config's state: what each connection starts.
struct Bound<S, H, M> {
    state: S,
    handler: H,
    _marker: PhantomData<fn() -> M>,
}

impl<S, H, M> ConnTask for Bound<S, H, M>
where
    S: Send + Sync + 'static,
    H: for<'a> NetworkHandler<'a, S, M>,
    M: 'static,
{
    type Fut = <H as NetworkHandler<'static, S, M>>::Future;
    fn start(&'static self, core: &'static ConnCore) -> Self::Fut {
        self.handler.call(&self.state, Connection::new(core))
    }
}

/// Builds one network filter config.
pub(crate) type NetBuild = Box<
    dyn Fn(&mut ConfigHandle<'_>) -> Result<Box<dyn NetConfigHooks>, ConfigError> + Send + Sync,
>;

/// A network filter being registered (from [`Registry::network`](crate::Registry::network)):
/// optional per-config state and inbox limit, then the handler.
pub struct NetworkBuilder<'r, S, C> {
    pub(crate) sink: &'r mut Vec<(String, NetBuild)>,
    pub(crate) name: String,
    pub(crate) state: C,
    pub(crate) inbox_limit: usize,
    pub(crate) _state: PhantomData<fn() -> S>,
}

/// The state function of a network filter without state.
#[doc(hidden)]
pub type NoNetState = fn(&mut ConfigHandle<'_>) -> Result<(), ConfigError>;

pub(crate) fn no_state(_: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    Ok(())
}

impl<'r> NetworkBuilder<'r, (), NoNetState> {
    /// Per-config state: `config_fn` runs once per Envoy filter config (main thread) and may
    /// refuse it with an error naming the problem; the handler then receives `&S` first.
    pub fn state<S, C>(self, config_fn: C) -> NetworkBuilder<'r, S, C>
    where
        S: Send + Sync + 'static,
        C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        NetworkBuilder {
            sink: self.sink,
            name: self.name,
            state: config_fn,
            inbox_limit: self.inbox_limit,
            _state: PhantomData,
        }
    }
}

impl<'r, S, C> NetworkBuilder<'r, S, C>
where
    S: Send + Sync + 'static,
    C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
{
    /// The most upstream bytes kept for the handler while it does not read them (default
    /// 1 MiB); past it the connection is reset.
    pub fn inbox_limit(mut self, bytes: usize) -> Self {
        self.inbox_limit = bytes;
        self
    }

    /// Registers the filter with its connection handler.
    pub fn handle<H, M>(self, handler: H)
    where
        H: for<'a> NetworkHandler<'a, S, M> + Clone,
        M: 'static,
    {
        let state_fn = self.state;
        let limit = self.inbox_limit;
        let name = self.name;
        self.sink.retain(|(n, _)| *n != name);
        self.sink.push((
            name,
            Box::new(move |cfg| {
                let state = state_fn(cfg)?;
                let config = NetConfig {
                    task: Bound {
                        state,
                        handler: handler.clone(),
                        _marker: PhantomData,
                    },
                    name: Arc::from(cfg.filter_name()),
                    inbox_limit: limit,
                    process_log: cfg.host.process_log(),
                    pool: Pool::default(),
                };
                Ok(Box::new(config) as Box<dyn NetConfigHooks>)
            }),
        ));
    }
}
