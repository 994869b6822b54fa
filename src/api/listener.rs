//! Listener filters: the handler API (public as `jisr::listener`, whose docs say what a handler
//! sees and decides).

use crate::api::config::{ConfigError, ConfigHandle};
use crate::executor::pool::Pool;
use crate::filter::listener::{ListenerConfig, ListenerConfigHooks, SocketCore, SocketTask};
use crate::host::listener::SockAddr;
use std::future::Future;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One accepted socket, handed to a listener filter's handler (see the [module docs](crate::listener)).
///
/// It borrows the socket's slot: it cannot leave the handler (no `'static`), and it is not
/// `Send`.
pub struct Socket<'s> {
    core: &'s SocketCore,
    _not_send: PhantomData<*const ()>,
}

/// What [`Socket::peek`] found. Either way the first [`len`](Peeked::len) bytes of the stream
/// are at the start of the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peeked {
    /// More bytes than the previous peek reported; more may come.
    More(usize),
    /// No more will come: the filter's max read bytes are peeked, the buffer is full, or the
    /// socket is closed.
    End(usize),
}

impl Peeked {
    /// How many bytes are in the buffer.
    pub fn len(self) -> usize {
        match self {
            Peeked::More(n) | Peeked::End(n) => n,
        }
    }

    /// Whether no bytes are in the buffer.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Whether no more bytes will come.
    pub fn is_end(self) -> bool {
        matches!(self, Peeked::End(_))
    }
}

/// Longest server name, transport protocol or ALPN name accepted (as TLS allows).
const MAX_NAME: usize = 255;

/// Whether `b` may be set as a name filter-chain matching compares (and access logs print):
/// 1 to 255 bytes, no control characters, spaces or non-ASCII.
fn name_ok(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= MAX_NAME && b.iter().all(|c| c.is_ascii_graphic())
}

impl<'s> Socket<'s> {
    pub(crate) fn new(core: &'s SocketCore) -> Socket<'s> {
        Socket {
            core,
            _not_send: PhantomData,
        }
    }

    /// Waits for client bytes beyond those the previous peek reported, then copies the first
    /// `buf.len()` bytes of the stream into `buf` (always from the start: peeked bytes stay in
    /// the socket). Returns [`Peeked::End`] at once when no more can come.
    pub fn peek<'a>(&'a mut self, buf: &'a mut [u8]) -> Peek<'a> {
        Peek {
            core: self.core,
            buf,
        }
    }

    /// Consumes the first `n` peeked bytes from the socket: the connection never sees them
    /// (e.g. a PROXY protocol header). Works only in the hook where a peek resolved, i.e.
    /// before the handler awaits anything else; `false` otherwise, or when fewer than `n`
    /// bytes were peeked. Later peeks start after them, and the next one reports what
    /// remains at once (waiting only when nothing does).
    pub fn drain(&mut self, n: usize) -> bool {
        self.core.drain(n)
    }

    /// The most bytes Envoy peeks for this filter.
    pub fn max_read_bytes(&self) -> usize {
        self.core.max_read.get()
    }

    /// Sets the transport protocol filter-chain matching sees (`transport_protocol`, e.g.
    /// `tls`; Envoy uses `raw_buffer` when no listener filter sets one). `false` (and nothing
    /// set) for an empty name, one over 255 bytes, or one with spaces, controls or non-ASCII.
    pub fn set_transport_protocol(&mut self, proto: &str) -> bool {
        self.set_name(proto.as_bytes(), |h, b| h.set_transport_protocol(b))
    }

    /// Sets the server name (SNI) filter-chain matching sees (`server_names`). Refuses what
    /// [`set_transport_protocol`](Socket::set_transport_protocol) refuses.
    pub fn set_server_name(&mut self, name: &str) -> bool {
        self.set_name(name.as_bytes(), |h, b| h.set_server_name(b))
    }

    fn set_name(
        &mut self,
        b: &[u8],
        f: impl FnOnce(&dyn crate::host::listener::SocketHost, &[u8]),
    ) -> bool {
        if !name_ok(b) || self.core.ended.get() {
            return false;
        }
        self.core.host.with(|h| f(h, b)).is_some()
    }

    /// Sets the application protocols (ALPN) filter-chain matching sees
    /// (`application_protocols`), replacing any set before. `false` (and nothing set) when
    /// the list is empty or a name would be refused by
    /// [`set_transport_protocol`](Socket::set_transport_protocol).
    pub fn set_application_protocols<P: AsRef<[u8]>>(&mut self, protocols: &[P]) -> bool {
        if protocols.is_empty()
            || !protocols.iter().all(|p| name_ok(p.as_ref()))
            || self.core.ended.get()
        {
            return false;
        }
        const STACK: usize = 16;
        let mut arr: [&[u8]; STACK] = [&[]; STACK];
        let list: std::borrow::Cow<'_, [&[u8]]> = if protocols.len() <= STACK {
            for (a, p) in arr.iter_mut().zip(protocols) {
                *a = p.as_ref();
            }
            std::borrow::Cow::Borrowed(&arr[..protocols.len()])
        } else {
            std::borrow::Cow::Owned(protocols.iter().map(|p| p.as_ref()).collect())
        };
        self.core
            .host
            .with(|h| h.set_application_protocols(&list))
            .is_some()
    }

    /// Sets `key` to the string `value` in the connection's dynamic metadata under
    /// `namespace` (seen by network filters and access logs, `%DYNAMIC_METADATA(ns:key)%`).
    pub fn set_metadata(&mut self, namespace: &str, key: &str, value: &str) {
        self.core
            .host
            .with(|h| h.set_metadata(namespace.as_bytes(), key.as_bytes(), value.as_bytes()));
    }

    /// Sets `key` to the number `value` in the connection's dynamic metadata.
    pub fn set_metadata_number(&mut self, namespace: &str, key: &str, value: f64) {
        self.core
            .host
            .with(|h| h.set_metadata_number(namespace.as_bytes(), key.as_bytes(), value));
    }

    /// Sets a filter-state object of bytes under `key`, readable by later listener and network
    /// filters, access logs (`%FILTER_STATE(key)%`) and
    /// [`filter_state`](Socket::filter_state); whether Envoy took it (it refuses to replace a
    /// read-only object). `false` once the socket went on or closed.
    pub fn set_filter_state(&mut self, key: &str, value: &[u8]) -> bool {
        if self.core.ended.get() {
            return false;
        }
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

    /// Writes `data` to the client now, before any connection exists: a plain-text error on a
    /// port that expects TLS, a protocol's greeting or refusal. Bytes written (the kernel may
    /// take fewer than offered: a listener filter's socket is not buffered by Envoy), or
    /// `None`: nothing to write, the write failed, or the socket went on or closed. Writing
    /// does not close: call [`close`](Socket::close) after a refusal.
    ///
    /// ```
    /// use jisr::listener::Socket;
    ///
    /// async fn tls_only(mut s: Socket<'_>) {
    ///     let mut first = [0u8; 1];
    ///     if s.peek(&mut first).await.len() == 1 && first[0] != 0x16 {
    ///         let _ = s.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    ///         s.close("tls_required");
    ///     }
    /// }
    /// # let _ = tls_only;
    /// ```
    pub fn write(&mut self, data: &[u8]) -> Option<usize> {
        if self.gone() {
            return None;
        }
        self.core.host.with(|h| h.write(data)).flatten()
    }

    /// The client's JA3 fingerprint (the MD5 of its TLS ClientHello's fields, 32 hex digits),
    /// copied into `buf`: set by `envoy.filters.listener.tls_inspector` with
    /// `enable_ja3_fingerprinting: true` when it comes before this filter (or by an earlier
    /// module filter). `None` when unset (not TLS, no inspector, fingerprinting off), or
    /// when it does not fit `buf`.
    pub fn ja3_hash<'b>(&self, buf: &'b mut [u8; 64]) -> Option<&'b str> {
        self.fingerprint(false, buf)
    }

    /// The client's JA4 fingerprint (e.g. `t13d1516h2_8daaf6152771_02713d6af862`), as
    /// [`ja3_hash`](Socket::ja3_hash) with `enable_ja4_fingerprinting: true`.
    pub fn ja4_hash<'b>(&self, buf: &'b mut [u8; 64]) -> Option<&'b str> {
        self.fingerprint(true, buf)
    }

    /// The socket went on or was closed: nothing more is written or set on it.
    fn gone(&self) -> bool {
        self.core.ended.get() || self.core.closed.get()
    }

    fn fingerprint<'b>(&self, ja4: bool, buf: &'b mut [u8; 64]) -> Option<&'b str> {
        let n = self
            .core
            .host
            .with(|h| h.fingerprint(ja4, buf))
            .flatten()
            .filter(|&n| n <= buf.len())?;
        core::str::from_utf8(&buf[..n]).ok()
    }

    /// Sets an integer option on the client's socket now (`setsockopt`: e.g. `SOL_SOCKET`,
    /// `SO_KEEPALIVE`, 1; the numbers are the platform's, as in `libc`); whether the kernel
    /// took it. The option stays with the connection the socket becomes. `false` once the
    /// socket went on or closed.
    pub fn set_socket_option(&mut self, level: i64, name: i64, value: i64) -> bool {
        if self.gone() {
            return false;
        }
        self.core
            .host
            .with(|h| h.set_socket_option(level, name, value))
            .unwrap_or(false)
    }

    /// Reads an integer option of the client's socket (`getsockopt`); `None` when the kernel
    /// refuses it or the socket went on or closed.
    pub fn socket_option(&self, level: i64, name: i64) -> Option<i64> {
        if self.gone() {
            return None;
        }
        self.core
            .host
            .with(|h| h.socket_option(level, name))
            .flatten()
    }

    /// Starts an HTTP callout to an Envoy cluster; the future gives the response, its body
    /// appended to `body` (as for HTTP and network filters: `jisr::callout`). The socket waits
    /// meanwhile: no connection is made until the handler returns. Errors are those of
    /// [`CalloutError`](crate::callout::CalloutError): an unknown cluster fails at once, a
    /// service that does not answer gives `Unavailable`, `Reset` or `Timeout`. Once the
    /// socket is closed (by the client, or Envoy's `listener_filters_timeout`), the handler is
    /// not polled again and a late answer is dropped.
    ///
    /// On Envoy 1.38 a listener callout is refused before Envoy is asked
    /// ([`CannotCreateRequest`](crate::callout::CalloutError::CannotCreateRequest)): that
    /// version cannot deliver its answer to a listener filter (and aborts when asked).
    ///
    /// ```
    /// use jisr::callout::CalloutRequest;
    /// use jisr::listener::Socket;
    ///
    /// async fn admit(mut s: Socket<'_>) {
    ///     let mut verdict = Vec::new();
    ///     let req = CalloutRequest::get("admission", "/admit", "admission.local");
    ///     match s.callout(req, &mut verdict).await {
    ///         Ok(r) if r.status == 200 => {} // returned: the socket goes on
    ///         _ => s.close("admission_denied"),
    ///     }
    /// }
    /// # let _ = admit;
    /// ```
    pub fn callout<'a>(
        &'a self,
        req: crate::callout::CalloutRequest<'a>,
        body: &'a mut Vec<u8>,
    ) -> crate::callout::Callout<'a> {
        crate::api::callout::Callout::new(self.core, req, body)
    }

    crate::api::metrics::metric_methods!(
        "[`MetricError::LabelCount`](crate::handler::MetricError) when labels are given (listener \
         filter metrics have none in Envoy's ABI), `NotFound`/`Rejected` from Envoy, and \
         `Detached` outside the handler's polls or once the socket went on or closed."
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

    /// The client's address as Envoy sees it (after any filter set it); `None` for a pipe.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.addr(SockAddr::Remote)
    }

    /// The address the socket is really connected to (never changed by filters).
    pub fn direct_peer_addr(&self) -> Option<SocketAddr> {
        self.addr(SockAddr::DirectRemote)
    }

    /// The local address (the listener's, or one a filter restored).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr(SockAddr::Local)
    }

    fn addr(&self, which: SockAddr) -> Option<SocketAddr> {
        let mut buf = [0u8; 64];
        let (n, port) = self
            .core
            .host
            .with(|h| h.address(which, &mut buf))
            .flatten()?;
        let ip: IpAddr = core::str::from_utf8(&buf[..n]).ok()?.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
    }

    /// Overrides the client's address for everything after this filter (e.g. from a PROXY
    /// protocol header): logs, `source_prefix_ranges` matching, the connection. `false` when
    /// Envoy refused it.
    pub fn set_peer_addr(&mut self, addr: SocketAddr) -> bool {
        self.with_addr(addr, |h, ip, port, v6| h.set_remote_address(ip, port, v6))
    }

    /// Restores the local address: the one the client meant to reach (e.g. the destination of
    /// a PROXY protocol header). `false` when Envoy refused it.
    pub fn restore_local_addr(&mut self, addr: SocketAddr) -> bool {
        self.with_addr(addr, |h, ip, port, v6| {
            h.restore_local_address(ip, port, v6)
        })
    }

    fn with_addr(
        &mut self,
        addr: SocketAddr,
        f: impl FnOnce(&dyn crate::host::listener::SocketHost, &[u8], u32, bool) -> bool,
    ) -> bool {
        if self.core.ended.get() {
            return false;
        }
        let mut text = IpText::new();
        use core::fmt::Write as _;
        if write!(text, "{}", addr.ip()).is_err() {
            return false;
        }
        let v6 = addr.is_ipv6();
        self.core
            .host
            .with(|h| f(h, text.as_bytes(), u32::from(addr.port()), v6))
            .unwrap_or(false)
    }

    /// Closes the socket now: no connection is made. `details` become the connection's
    /// termination details (`%CONNECTION_TERMINATION_DETAILS%` in the listener's access log).
    /// The handler may go on running, but nothing it sets matters any more.
    ///
    /// `details` must pass [`wire::close_details`](crate::wire::close_details) (one word of
    /// visible ASCII): otherwise the socket still closes, with details
    /// [`INVALID_CLOSE_DETAILS`](crate::wire::INVALID_CLOSE_DETAILS), and the reason is
    /// logged at error.
    pub fn close(&mut self, details: &str) {
        let d = crate::wire::close_details_or_default(details, |e| {
            self.log(
                crate::Level::Error,
                format_args!(
                    "close details refused ({e}); closing with {}",
                    crate::wire::INVALID_CLOSE_DETAILS
                ),
            )
        });
        self.core.close(d);
    }

    /// Whether the socket is closed (by the handler or the client).
    pub fn is_closed(&self) -> bool {
        self.core.closed.get()
    }

    /// Writes one line to Envoy's `dynamic_modules` log at `level` (formatted only when the
    /// level is on; no allocation once warm).
    pub fn log(&self, level: crate::Level, args: core::fmt::Arguments<'_>) {
        self.core.log(level as u32, args);
    }
}

/// An IP address as text, on the stack.
struct IpText {
    buf: [u8; 64],
    len: usize,
}

impl IpText {
    fn new() -> IpText {
        IpText {
            buf: [0; 64],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The future of [`Socket::peek`].
#[must_use = "a peek does nothing unless awaited"]
pub struct Peek<'a> {
    core: &'a SocketCore,
    buf: &'a mut [u8],
}

impl Future for Peek<'_> {
    type Output = Peeked;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Peeked> {
        let this = self.get_mut();
        let core = this.core;
        let bytes = core.bytes.borrow();
        let have = bytes.len();
        let n = have.min(this.buf.len());
        let end = core.closed.get() || core.ended.get() || have >= core.max_read.get();
        let end = end || n == this.buf.len();
        if have > core.seen.get() || end {
            this.buf[..n].copy_from_slice(&bytes[..n]);
            core.seen.set(have);
            return Poll::Ready(if end { Peeked::End(n) } else { Peeked::More(n) });
        }
        core.data_waker.register(cx, |w| core.is_own_waker(w));
        Poll::Pending
    }
}

/// What [`ListenerBuilder::handle`] accepts: `async fn(Socket<'_>)`, or with
/// [`state`](ListenerBuilder::state) `async fn(&S, Socket<'_>)`. Implemented for every such
/// function; you never implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a listener handler",
    label = "expected `async fn(Socket<'_>)`, or `async fn(&S, Socket<'_>)` after `.state(load)`"
)]
pub trait ListenerHandler<'a, S: 'a, Marker>: Send + Sync + 'static {
    /// The handler's future.
    type Future: Future<Output = ()> + 'a;
    /// Starts handling one socket.
    fn call(&self, state: &'a S, socket: Socket<'a>) -> Self::Future;
}

/// Marks a handler without state.
#[doc(hidden)]
pub struct Stateless;
/// Marks a handler with state.
#[doc(hidden)]
pub struct WithState;

impl<'a, F, Fut> ListenerHandler<'a, (), Stateless> for F
where
    F: Fn(Socket<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, _: &'a (), socket: Socket<'a>) -> Fut {
        self(socket)
    }
}

impl<'a, S: 'a, F, Fut> ListenerHandler<'a, S, WithState> for F
where
    F: Fn(&'a S, Socket<'a>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'a,
{
    type Future = Fut;
    fn call(&self, state: &'a S, socket: Socket<'a>) -> Fut {
        self(state, socket)
    }
}

/// A handler bound to its config's state: what each socket starts.
struct Bound<S, H, M> {
    state: S,
    handler: H,
    _marker: PhantomData<fn() -> M>,
}

impl<S, H, M> SocketTask for Bound<S, H, M>
where
    S: Send + Sync + 'static,
    H: for<'a> ListenerHandler<'a, S, M>,
    M: 'static,
{
    type Fut = <H as ListenerHandler<'static, S, M>>::Future;
    fn start(&'static self, core: &'static SocketCore) -> Self::Fut {
        self.handler.call(&self.state, Socket::new(core))
    }
}

/// Builds one listener filter config.
pub(crate) type ListenerBuild = Box<
    dyn Fn(&mut ConfigHandle<'_>) -> Result<Box<dyn ListenerConfigHooks>, ConfigError>
        + Send
        + Sync,
>;

/// A listener filter being registered (from [`Registry::listener`](crate::Registry::listener)):
/// optional per-config state and max read bytes, then the handler.
pub struct ListenerBuilder<'r, S, C> {
    pub(crate) sink: &'r mut Vec<(String, ListenerBuild)>,
    pub(crate) name: String,
    pub(crate) state: C,
    pub(crate) max_read: usize,
    pub(crate) _state: PhantomData<fn() -> S>,
}

/// The state function of a listener filter without state.
#[doc(hidden)]
pub type NoListenerState = fn(&mut ConfigHandle<'_>) -> Result<(), ConfigError>;

pub(crate) fn no_state(_: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    Ok(())
}

impl<'r> ListenerBuilder<'r, (), NoListenerState> {
    /// Per-config state: `config_fn` runs once per Envoy filter config (main thread) and may
    /// refuse it with an error naming the problem; the handler then receives `&S` first.
    pub fn state<S, C>(self, config_fn: C) -> ListenerBuilder<'r, S, C>
    where
        S: Send + Sync + 'static,
        C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        ListenerBuilder {
            sink: self.sink,
            name: self.name,
            state: config_fn,
            max_read: self.max_read,
            _state: PhantomData,
        }
    }
}

impl<'r, S, C> ListenerBuilder<'r, S, C>
where
    S: Send + Sync + 'static,
    C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
{
    /// How many of the client's first bytes Envoy peeks for the handler (0 by default: no
    /// peeking, and Envoy calls no data hook). Envoy allocates a buffer of this size per
    /// socket while the filter runs.
    pub fn max_read_bytes(mut self, bytes: usize) -> Self {
        self.max_read = bytes;
        self
    }

    /// Registers the filter with its socket handler.
    pub fn handle<H, M>(self, handler: H)
    where
        H: for<'a> ListenerHandler<'a, S, M> + Clone,
        M: 'static,
    {
        let state_fn = self.state;
        let max_read = self.max_read;
        let name = self.name;
        self.sink.retain(|(n, _)| *n != name);
        self.sink.push((
            name,
            Box::new(move |cfg| {
                let state = state_fn(cfg)?;
                let config = ListenerConfig {
                    task: Bound {
                        state,
                        handler: handler.clone(),
                        _marker: PhantomData,
                    },
                    name: Arc::from(cfg.filter_name()),
                    max_read,
                    process_log: cfg.host.process_log(),
                    pool: Pool::default(),
                };
                Ok(Box::new(config) as Box<dyn ListenerConfigHooks>)
            }),
        ));
    }
}
