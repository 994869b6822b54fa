//! Stream control beyond replies: socket options, GOAWAY, recreating the stream, and filter
//! state that Envoy's own filters understand.

use crate::host::http::context::SockOpt;

/// Which connection a socket option is for.
///
/// ```
/// use jisr::control::{SocketOption, SocketSide, SocketState};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// // TCP_NODELAY (IPPROTO_TCP 6, option 1) on the client's own connection, set at once.
/// const NODELAY: SocketOption =
///     SocketOption { level: 6, name: 1, state: SocketState::Bound, side: SocketSide::Downstream };
///
/// async fn realtime(req: Request<'_>, w: ResponseWriter<'_>) {
///     if req.path().is_some_and(|p| p.starts_with("/live/")) {
///         w.set_socket_option_int(NODELAY, 1);
///     }
/// }
/// fn register(r: &mut Registry) { r.register("realtime", realtime); }
///
/// let f = TestFilter::new(register, "realtime", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/live/scores")], true);
/// let (option, value) = s.socket_options_set().remove(0);
/// assert_eq!((option.side, value), (SocketSide::Downstream, Ok(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketSide {
    /// The upstream connection Envoy opens for this request: the option is stored and applied
    /// when that connection is created (an existing pooled connection is not changed).
    Upstream = 0,
    /// The client's connection: applied with `setsockopt` at once.
    Downstream = 1,
}

/// The socket state an option applies in (Envoy's `SocketOption` states).
///
/// ```
/// use jisr::control::{SocketOption, SocketSide, SocketState};
///
/// // IP_BIND_ADDRESS_NO_PORT (IPPROTO_IP 0, option 24) only helps before `bind`.
/// let no_port = SocketOption {
///     level: 0,
///     name: 24,
///     state: SocketState::Prebind,
///     side: SocketSide::Upstream,
/// };
/// assert_ne!(no_port, SocketOption { state: SocketState::Bound, ..no_port });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// Before `bind`.
    Prebind = 0,
    /// After `bind`.
    Bound = 1,
    /// After `listen`.
    Listening = 2,
}

/// A socket option: `level` and `name` as for `setsockopt` (e.g. `libc::SOL_SOCKET`,
/// `libc::SO_KEEPALIVE`), the state it applies in and the connection it is for.
///
/// ```
/// use jisr::control::{SocketOption, SocketSide, SocketState};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// // SO_KEEPALIVE (SOL_SOCKET 1, option 9) on the upstream connection of this request.
/// const KEEPALIVE: SocketOption =
///     SocketOption { level: 1, name: 9, state: SocketState::Prebind, side: SocketSide::Upstream };
///
/// async fn keepalive(_req: Request<'_>, w: ResponseWriter<'_>) {
///     w.set_socket_option_int(KEEPALIVE, 1);
/// }
/// fn register(r: &mut Registry) { r.register("keepalive", keepalive); }
///
/// let f = TestFilter::new(register, "keepalive", b"").unwrap();
/// let mut s = f.stream();
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.socket_options_set()[0], (KEEPALIVE, Ok(1)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketOption {
    /// Protocol level (`SOL_SOCKET` is 1 on Linux, `IPPROTO_TCP` 6).
    pub level: i64,
    /// Option name (`SO_KEEPALIVE` is 9, `TCP_NODELAY` 1).
    pub name: i64,
    /// When it applies.
    pub state: SocketState,
    /// Which connection.
    pub side: SocketSide,
}

impl SocketOption {
    pub(crate) fn abi(self) -> SockOpt {
        SockOpt {
            level: self.level,
            name: self.name,
            state: self.state as u32,
            direction: self.side as u32,
        }
    }
}

/// How long filter state lives (Envoy's `LifeSpan`).
///
/// ```
/// use jisr::control::{StateLife, StateSharing};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn tenant(req: Request<'_>, w: ResponseWriter<'_>) {
///     let tenant = req.header_str("x-tenant").unwrap_or("none");
///     // Later requests on the same client connection see it too.
///     let life = StateLife::Connection;
///     let _ = w.set_filter_state_typed_with("acme.tenant", tenant.as_bytes(), life, StateSharing::None);
/// }
/// fn register(r: &mut Registry) { r.register("tenant", tenant); }
///
/// let f = TestFilter::new(register, "tenant", b"").unwrap();
/// let mut s = f.stream();
/// s.add_filter_state_factory("acme.tenant"); // Envoy knows how to build `acme.tenant`
/// s.request_headers(&[(":path", "/"), ("x-tenant", "t1")], true);
/// assert_eq!(s.typed_filter_state("acme.tenant").as_deref(), Some(&b"t1"[..]));
/// assert_eq!(s.filter_state_options()[0].1, StateLife::Connection as u32);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateLife {
    /// Until this filter chain is done (the default of the other setters).
    FilterChain = 0,
    /// For the whole request, across internal redirects.
    Request = 1,
    /// For the downstream connection (later requests on it see it).
    Connection = 2,
}

/// Whether filter state is shared with the upstream connection (Envoy's
/// `StreamSharingMayImpactPooling`).
///
/// ```
/// use jisr::control::{StateLife, StateSharing};
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn pool_per_tenant(req: Request<'_>, w: ResponseWriter<'_>) {
///     let tenant = req.header_str("x-tenant").unwrap_or("none");
///     // Requests of different tenants never share an upstream connection.
///     let sharing = StateSharing::SharedWithUpstreamConnection;
///     let _ = w.set_filter_state_typed_with("acme.tenant", tenant.as_bytes(), StateLife::Request, sharing);
/// }
/// fn register(r: &mut Registry) { r.register("pool", pool_per_tenant); }
///
/// let f = TestFilter::new(register, "pool", b"").unwrap();
/// let mut s = f.stream();
/// s.add_filter_state_factory("acme.tenant");
/// s.request_headers(&[(":path", "/"), ("x-tenant", "t1")], true);
/// let (key, _life, sharing) = s.filter_state_options().remove(0);
/// assert_eq!((key.as_str(), sharing), ("acme.tenant", StateSharing::SharedWithUpstreamConnection as u32));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateSharing {
    /// Not shared.
    None = 0,
    /// Shared with the upstream connection; connections are pooled per distinct value.
    SharedWithUpstreamConnection = 1,
    /// Shared with the upstream connection once.
    SharedWithUpstreamConnectionOnce = 2,
}
