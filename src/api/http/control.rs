//! Stream control beyond replies: socket options, GOAWAY, recreating the stream, and filter
//! state that Envoy's own filters understand.

use crate::api::Unsupported;
use crate::api::http::writer::ResponseWriter;
use crate::filter::http::state::StreamState;
use crate::host::http::context::SockOpt;
use crate::host::http::objects;
use std::sync::Arc;

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
    fn abi(self) -> SockOpt {
        SockOpt {
            level: self.level,
            name: self.name,
            state: self.state as u32,
            direction: self.side as u32,
        }
    }
}

impl<'w> ResponseWriter<'w> {
    /// Sets an integer socket option (see [`SocketOption`]); `false` when Envoy refused it
    /// (e.g. `setsockopt` failed on the client's socket).
    pub fn set_socket_option_int(&self, opt: SocketOption, value: i64) -> bool {
        self.core
            .with_host(|h| h.set_socket_option_int(opt.abi(), value))
            .unwrap_or(false)
    }

    /// Sets a bytes socket option (e.g. `TCP_CONGESTION`); `false` when Envoy refused it.
    pub fn set_socket_option_bytes(&self, opt: SocketOption, value: &[u8]) -> bool {
        self.core
            .with_host(|h| h.set_socket_option_bytes(opt.abi(), value))
            .unwrap_or(false)
    }

    /// The integer value this stream's filters set for `opt` (Envoy keeps what was set; it
    /// does not read the socket); `None` when none was set.
    pub fn socket_option_int(&self, opt: SocketOption) -> Option<i64> {
        self.core
            .with_host(|h| h.socket_option_int(opt.abi()))
            .flatten()
    }

    /// The bytes value set for `opt`, copied into the stream's arena; `None` when none was set.
    pub fn socket_option_bytes(&self, opt: SocketOption) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| {
            h.socket_option_bytes(opt.abi())
                .map(|raw| core.arena.keep(raw.view(&())))
        })
        .flatten()
    }

    /// Sends GOAWAY (HTTP/2 and HTTP/3) and closes the client's connection: at once, or, with
    /// `graceful`, after a drain period in which streams already open may finish. Like a
    /// reply, it takes effect when the handler's current poll ends, after a reply staged in
    /// the same poll. The request itself goes on unless the handler also replies.
    ///
    /// ```
    /// use jisr::{Request, ResponseWriter};
    ///
    /// async fn shed(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     w.send(503, b"draining\n");
    ///     w.goaway_and_close(true); // this client should reconnect elsewhere
    /// }
    /// # let _ = shed;
    /// ```
    pub fn goaway_and_close(&self, graceful: bool) {
        if self.core.with_host(|_| ()).is_some() {
            self.core.goaway.set(Some(graceful));
        }
    }

    /// Restarts the request through the whole filter chain and routing, with its current
    /// headers (change `:path` or a routing header first): Envoy's internal redirect. Like a
    /// reply it takes effect when the handler's current poll ends, and it is the stream's
    /// answer (a later `send` is ignored). The new pass runs every filter again, this one
    /// included, so mark the request (e.g. a header) to avoid a loop.
    ///
    /// Envoy recreates only a request that is complete and has no body; it refuses otherwise,
    /// and jisr then answers 500 (details `jisr_recreate_refused`) and logs a warning, rather
    /// than forward a request the handler meant to restart. Returns `false` (and does nothing)
    /// when the stream was already answered or is over.
    pub fn recreate_stream(&self) -> bool {
        let core = self.core;
        if core.st().replied() || core.st().response_sent() || core.with_host(|_| ()).is_none() {
            return false;
        }
        let Ok(mut reply) = core.reply.try_borrow_mut() else {
            return false;
        };
        reply.stage_recreate();
        core.update(StreamState::reply);
        true
    }

    /// Sets filter state `key` through the object factory Envoy has for that key, so Envoy's
    /// own filters and extensions can read it (e.g. `envoy.network.upstream_server_name`, or
    /// any key read by `%FILTER_STATE(key)%` in an access log). `false` when Envoy has no
    /// factory for `key` or the value does not parse. For plain bytes only other modules
    /// read, use [`set_filter_state`](Self::set_filter_state).
    pub fn set_filter_state_typed(&self, key: &str, value: &[u8]) -> bool {
        self.core
            .with_host(|h| h.set_filter_state_typed(key.as_bytes(), value))
            .unwrap_or(false)
    }

    /// Any filter state object under `key` (set by any filter), serialized by its own type,
    /// copied into the stream's arena; `None` when absent or not serializable.
    pub fn filter_state_typed(&self, key: &str) -> Option<&[u8]> {
        let core = self.core;
        core.with_host(|h| {
            h.filter_state_typed(key.as_bytes())
                .map(|raw| core.arena.keep(raw.view(&())))
        })
        .flatten()
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

impl<'w> ResponseWriter<'w> {
    /// Whether any filter state object (set by any filter, of any type) is stored under `key`.
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn has_filter_state(&self, key: &str) -> Result<bool, Unsupported> {
        self.core
            .with_host(|h| h.has_filter_state(key.as_bytes()))
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_has_filter_state",
            })
    }

    /// Stores a Rust value in Envoy's filter state under `key` for `life`. Later handlers of
    /// any jisr filter in this module read it back with
    /// [`filter_state_object`](Self::filter_state_object) (as an `Arc<T>`, without copying);
    /// Envoy drops it when its life ends. `Ok(false)` when Envoy refused (e.g. a read-only
    /// object already holds `key`); the value is dropped then.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use jisr::control::StateLife;
    /// use jisr::{Request, ResponseWriter};
    ///
    /// struct Principal { user: String }
    ///
    /// async fn authn(req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let user = req.header_str("x-user").unwrap_or("anonymous").to_string();
    ///     let _ = w.set_filter_state_object("acme.principal", Principal { user }, StateLife::Request);
    /// }
    ///
    /// async fn authz(_req: Request<'_>, w: ResponseWriter<'_>) {
    ///     let who: Option<Arc<Principal>> = w.filter_state_object("acme.principal").ok().flatten();
    ///     if who.is_none() {
    ///         w.send(401, b"who are you?\n");
    ///     }
    /// }
    /// # let _ = (authn, authz);
    /// ```
    ///
    /// # Errors
    /// [`Unsupported`] on Envoy 1.38 (the value is dropped); it works from 1.39 on.
    pub fn set_filter_state_object<T: Send + Sync + 'static>(
        &self,
        key: &str,
        value: T,
        life: StateLife,
    ) -> Result<bool, Unsupported> {
        let unsupported = Unsupported {
            callback: "envoy_dynamic_module_callback_http_set_filter_state_object",
        };
        let (ptr, dtor) = objects::into_object(Arc::new(value));
        match self
            .core
            .with_host(|h| h.set_filter_state_object(key.as_bytes(), ptr, dtor, life as u32))
        {
            Some(Some(ok)) => Ok(ok),
            // Envoy never took it.
            _ => {
                objects::reclaim(ptr);
                Err(unsupported)
            }
        }
    }

    /// The value a jisr filter of this module stored under `key` with
    /// [`set_filter_state_object`](Self::set_filter_state_object); `None` when absent, of
    /// another type, or stored by something else (another module, Envoy).
    ///
    /// # Errors
    /// [`Unsupported`] on Envoy 1.38.
    pub fn filter_state_object<T: Send + Sync + 'static>(
        &self,
        key: &str,
    ) -> Result<Option<Arc<T>>, Unsupported> {
        let ptr = self
            .core
            .with_host(|h| h.filter_state_object(key.as_bytes()))
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_get_filter_state_object",
            })?;
        Ok(objects::get::<T>(ptr))
    }

    /// Like [`set_filter_state_typed`](Self::set_filter_state_typed), with the state's life
    /// span and whether it is shared with the upstream connection (e.g. to pool upstream
    /// connections per tenant).
    ///
    /// # Errors
    /// [`Unsupported`] before Envoy 1.40.
    pub fn set_filter_state_typed_with(
        &self,
        key: &str,
        value: &[u8],
        life: StateLife,
        sharing: StateSharing,
    ) -> Result<bool, Unsupported> {
        self.core
            .with_host(|h| {
                h.set_filter_state_value(key.as_bytes(), value, life as u32, sharing as u32)
            })
            .flatten()
            .ok_or(Unsupported {
                callback: "envoy_dynamic_module_callback_http_set_filter_state_value",
            })
    }
}
