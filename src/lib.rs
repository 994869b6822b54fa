//! # jisr
//!
//! Envoy HTTP filters as plain `async fn` handlers, shipped as an Envoy *dynamic module*
//! (a `cdylib` Envoy loads with `dlopen`).
//!
//! What most filters need: a config read once per Envoy filter config (refused at load with a
//! clear message when it is wrong), a metric, and a handler that uses both. The config is
//! the `filter_config` bytes of the `DynamicModuleFilter`; [`Registry::filter`] with
//! `.state(load)` builds the state, and the handler gets `&State` first:
//!
//! ```
//! use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
//!
//! struct Keys {
//!     allowed: Vec<String>,
//!     denied: Counter,
//! }
//!
//! fn load(cfg: &mut ConfigHandle<'_>) -> Result<Keys, ConfigError> {
//!     let allowed: Vec<String> = cfg.config_str()?.split(',').map(|k| k.trim().to_owned()).collect();
//!     if allowed.iter().any(String::is_empty) {
//!         return Err(ConfigError::new("an empty key in the list"));
//!     }
//!     Ok(Keys { allowed, denied: cfg.counter("keys_denied_total", &[])? })
//! }
//!
//! async fn check(keys: &Keys, req: Request<'_>, w: ResponseWriter<'_>) {
//!     let key = req.header_str("x-api-key").unwrap_or("");
//!     if !keys.allowed.iter().any(|k| k == key) {
//!         let _ = w.counter_inc(keys.denied, &[]);
//!         w.send(401, b"unknown key\n");
//!     }
//! }
//!
//! fn register(r: &mut Registry) {
//!     r.filter("keys").state(load).handle(check);
//! }
//! jisr::export!(register);
//! ```
//!
//! The same `register` loads the filter into [`testing`], a simulated Envoy stream: drive the
//! hooks Envoy would call and check what the filter did, in a plain `#[test]` of the crate.
//!
//! ```
//! # use jisr::{ConfigError, ConfigHandle, Counter, Registry, Request, ResponseWriter};
//! # struct Keys { allowed: Vec<String>, denied: Counter }
//! # fn load(cfg: &mut ConfigHandle<'_>) -> Result<Keys, ConfigError> {
//! #     let allowed: Vec<String> = cfg.config_str()?.split(',').map(|k| k.trim().to_owned()).collect();
//! #     if allowed.iter().any(String::is_empty) { return Err(ConfigError::new("an empty key in the list")); }
//! #     Ok(Keys { allowed, denied: cfg.counter("keys_denied_total", &[])? })
//! # }
//! # async fn check(keys: &Keys, req: Request<'_>, w: ResponseWriter<'_>) {
//! #     if !keys.allowed.iter().any(|k| Some(k.as_str()) == req.header_str("x-api-key")) {
//! #         let _ = w.counter_inc(keys.denied, &[]);
//! #         w.send(401, b"unknown key\n");
//! #     }
//! # }
//! # fn register(r: &mut Registry) { r.filter("keys").state(load).handle(check); }
//! use jisr::testing::TestFilter;
//!
//! let filter = TestFilter::new(register, "keys", b"k1, k2").unwrap();
//! let mut stream = filter.stream();
//! stream.request_headers(&[(":path", "/"), ("x-api-key", "k2")], true);
//! assert!(stream.local_reply().is_none()); // the request went on upstream
//! let mut stream = filter.stream();
//! stream.request_headers(&[(":path", "/"), ("x-api-key", "k3")], true);
//! assert_eq!(stream.local_reply().unwrap().status, 401);
//! // A bad config is refused at load, with the filter's name and the reason.
//! let err = TestFilter::new(register, "keys", b"k1,,k2").err().unwrap();
//! assert!(err.contains("keys") && err.contains("an empty key in the list"), "{err}");
//! ```
//!
//! A filter without state is `r.register("name", handler)`; a response handler follows with
//! `r.filter(name).respond(mode, request_handler, response_handler)` (see [`Registry`]).
//!
//! # How it runs
//!
//! A handler is a `Future` that jisr polls **inline on the Envoy worker thread**, inside Envoy's
//! own hooks. A handler that never awaits completes inside the hook that started it; one that
//! awaits (body bytes, a callout, a value from another thread) makes the hook return a stop
//! status, and a waker brings the stream back through Envoy's per-filter scheduler. No
//! threads, no runtime, and the handler's future lives inline in a pooled per-stream slot.
//!
//! Handlers compose: middleware runs in front of them and may answer instead (e.g. with a
//! 401).
//!
//! ```
//! use jisr::{chain, Level, LogValue, Next, Registry, Request, ResponseWriter};
//!
//! async fn log_requests(mut req: Request<'_>, mut w: ResponseWriter<'_>, next: Next<'_>) {
//!     let method = req.method().unwrap_or("-").to_owned();
//!     w.log_attrs(Level::Info, "request", &[("method", LogValue::Str(&method))]);
//!     next.run(&mut req, &mut w).await;
//! }
//!
//! async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
//!     req.skip_body();
//!     let _ = req.set_header("x-hello", "from-jisr");
//! }
//!
//! fn register(r: &mut Registry) {
//!     r.register("hello", chain(log_requests, hello));
//! }
//!
//! // In a `cdylib` crate: generates the symbols Envoy looks up.
//! jisr::export!(register);
//! ```
//!
//! How the crate is built inside (extension kinds, layers, where `unsafe` lives):
//! [`architecture`].
#![deny(
    missing_docs,
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc
)]

mod abi;
mod api;

/// The README's complete Rust examples, compiled and run as doctests so they stay true
/// (fragments are marked `ignore` there).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The crate [`jisr_buffer`], re-exported: allocation-free stream taps (SSE, token usage and
/// budgets, JSON paths, ring and head-tail buffers, logfmt, content decoding) that need no
/// Envoy and can be used without jisr.
#[doc(inline)]
pub use jisr_buffer as buffer;
#[doc(hidden)]
pub mod entry;

/// How the crate is built: extension kinds, layers, and where `unsafe` lives.
///
/// # Kinds are the top-level axis
///
/// Envoy lets a dynamic module extend it at about twenty extension points; jisr calls each one
/// a **kind**. Today there are five: `http` (HTTP filters: [`Registry::filter`],
/// [`Registry::register`]), `server` (the bootstrap extension: [`Registry::server`]), `network`
/// (L4 filters owning a TCP connection: [`Registry::network`]), `listener` (listener filters
/// inspecting an accepted socket: [`Registry::listener`]) and `udp` (UDP listener filters, one
/// call per datagram: [`Registry::udp`]).
///
/// **A kind is the same five parts, one in each layer, each named after the kind:**
///
/// | part | `http` | `server` | `network` | `listener` | `udp` |
/// |---|---|---|---|---|---|
/// | entry points: the `extern "C"` hooks [`export!`] generates, each under the panic guard | `entry/http.rs` | `entry/server/` (with its main-thread lifecycle) | `entry/network.rs` | `entry/listener.rs` | `entry/udp.rs` |
/// | host: a safe interface over the callbacks Envoy offers that kind | `host/http/` | `host/server.rs` | `host/network/` | `host/listener/` | `host/udp/` |
/// | state machine: every status a hook returns, decided from the state of one stream, connection, socket or datagram | `filter/http/` | `entry/server/lifecycle.rs` | `filter/network/` | `filter/listener/` | `filter/udp.rs` |
/// | API: what users write against | `api/http/` | `api/server.rs` | `api/network.rs` | `api/listener.rs` | `api/udp.rs` |
/// | test doubles: a simulated Envoy for that kind (feature `testing`) | `testing/http/`, `host/http/sim/`, `host/http/bench.rs` | none yet (a server runs only inside Envoy) | `testing/network.rs`, `host/network/sim.rs` | `testing/listener.rs`, `host/listener/` | `testing/udp.rs`, `host/udp/` |
///
/// What kinds share sits at the root of each layer: raw bytes and outbound HTTP calls
/// (`host/mod.rs`), the simulators' shared records (`host/sim_shared.rs`), the config host, the
/// process log, the background runtime (`filter/background.rs`), the unary callout table
/// (`filter/callouts.rs`, used by HTTP streams and connections alike), configs, metrics,
/// callouts, time, published values and the wire grammar (`api/`), the registry
/// (`api/registry.rs`), and the panic guard, the registry built at load and the hooks macro
/// (`entry/mod.rs`).
///
/// **Where does the next kind go?** Into `<kind>` modules beside the others in each layer, one
/// method on the shared [`Registry`] and one line in [`export!`]; an access logger, for one,
/// takes the same shape.
///
/// The server's state machine sits in its entry module because it only sequences user
/// callbacks (setup, admin handlers, file watches) on the main thread and needs the API's
/// types to do so; HTTP's is a layer of its own because the API's handles call into it.
///
/// # Layers
///
/// The crate is a stack; each folder of `src/` uses only itself and the layers below it:
///
/// | layer | what it is |
/// |---|---|
/// | `entry` | the `extern "C"` hook entry points of each kind, dispatching into `filter`; jisr's own admin endpoints |
/// | `api` | what users see: [`Registry`], configs, metrics, callouts; per kind, e.g. [`Request`], [`Response`], [`ResponseWriter`], middleware, raw filters |
/// | `filter` | per kind, the state machine: stream slots, every status returned to Envoy, callout and reply tables; shared, the background runtime |
/// | `host` | a safe interface over Envoy's callbacks, per kind: the real one, and (feature `testing`) the simulated ones |
/// | `executor` | generic, knows no kind: a task cell, its waker and scheduler handle, the poll loop, slot pools, per-worker spare shelves, the header arena, timers |
/// | `abi` | the C declarations of Envoy's dynamic-module ABI |
///
/// [`testing`] sits on top. [`buffer`] (ring and head-tail buffers, SSE, token usage,
/// budgets, logfmt, content decoding) is a crate of its own, `jisr-buffer`, that depends on
/// nothing of jisr (the compiler enforces it) and has no `unsafe`.
///
/// # Rules, checked in CI
///
/// `.ci/layers.sh` (rules in `.ci/layers.py`) fails the build when:
///
/// - a layer uses one above it;
/// - a kind's module uses another kind's module (in any layer), or a shared module names a kind
///   (except the few places that dispatch to every kind: the registry, the hooks macro, jisr's
///   admin endpoints, `testing`);
/// - the modules of one folder import each other in a circle.
///
/// Paths through the crate root's re-exports (`crate::Request`) count as the module they
/// re-export.
///
/// # Where `unsafe` lives
///
/// In `abi` (late-bound callbacks), `executor` (task cells, wakers, pools, the header arena),
/// `host` (every call into Envoy, byte views of Envoy's memory), `entry` (turning Envoy's
/// pointers back into configs and streams), the slot types (`filter/http/slot.rs`,
/// `api/http/raw/slot.rs`, `api/network/raw.rs`, `filter/network/`, `filter/listener/`: a
/// stream's, connection's or socket's never-moving home, handed to Envoy as a thin pointer),
/// and `testing`, which plays Envoy's part and holds those pointers. Every block states the
/// contract it relies on.
pub mod architecture {}
mod executor;
mod filter;
mod host;
#[cfg(feature = "testing")]
pub mod testing;

// The everyday names: what a filter with handlers, state, metrics and logs needs.
pub use api::config::{ConfigError, ConfigHandle};
pub use api::http::attr::Attr;
pub use api::http::pipeline::{Next, chain};
pub use api::http::request::Request;
pub use api::http::response::{Response, ResponseMode};
pub use api::http::writer::{ClusterHosts, MetadataSource, ResponseWriter};
pub use api::join::{join, join3};
pub use api::log::{Level, LogValue};
pub use api::metrics::{Counter, Gauge, Histogram};
pub use api::registry::Registry;
pub use api::secret::Secret;
pub use api::wire;

/// Work a filter config owns, on Envoy's main thread: tasks, callouts, streams and metrics
/// not tied to a request.
pub mod background {
    pub use crate::api::background::{
        Background, BackgroundCallout, BackgroundEvent, BackgroundResponse, BackgroundStream,
    };
}

/// The module's own work on Envoy's main thread: a server (bootstrap) extension with tasks,
/// readiness, admin endpoints, file watches, and values published to request handlers.
pub mod server {
    pub use crate::api::server::{
        AdminHandler, AdminRequest, FileWatch, InitHold, Published, ServerLifecycle, ServerSetup,
    };
}

pub mod network {
    //! Network (L4) filters: an `async fn` that owns one TCP connection.
    //!
    //! ```
    //! use jisr::network::Connection;
    //! use jisr::Registry;
    //!
    //! /// Answers `PING\r\n` itself; anything else goes upstream.
    //! async fn ping(mut conn: Connection<'_>) {
    //!     let mut buf = [0u8; 512];
    //!     loop {
    //!         let n = conn.read(&mut buf).await;
    //!         if n == 0 {
    //!             return; // the client is done: the rest flows on untouched
    //!         }
    //!         if &buf[..n] == b"PING\r\n" {
    //!             conn.send_downstream(b"+PONG\r\n");
    //!         } else {
    //!             conn.send_upstream(&buf[..n]);
    //!         }
    //!     }
    //! }
    //!
    //! fn register(r: &mut Registry) {
    //!     r.network("ping").handle(ping);
    //! }
    //! # let mut r = Registry::default();
    //! # register(&mut r);
    //! ```
    //!
    //! What the handler sees and decides:
    //!
    //! - It starts when the connection is accepted; the filter chain goes on at once (the proxy
    //!   after this filter connects upstream), but **no client byte passes while the handler
    //!   runs** unless it sends it ([`Connection::send_upstream`]). Client bytes wait in Envoy's
    //!   read buffer until [`Connection::read`] takes them; when that buffer reaches the
    //!   listener's `per_connection_buffer_limit_bytes`, Envoy stops reading from the client, so a
    //!   handler that waits (for a callout, a timer) never buffers without bound.
    //! - Upstream bytes pass to the client untouched until the handler first calls
    //!   [`Connection::read_upstream`] (or [`Connection::watch_upstream`]); from then on they wait
    //!   for the handler, and only what it sends ([`Connection::send_downstream`]) reaches the
    //!   client. A handler already waiting reads them straight from Envoy's write buffer; what
    //!   it leaves goes into the connection's inbox. Bytes of one delivery are always taken
    //!   (Envoy's buffer limits bound them); a backlog of unread bytes past the limit set with
    //!   [`NetworkBuilder::inbox_limit`] (1 MiB by default) gets the connection reset, with close
    //!   details `jisr_network_upstream_inbox_full`.
    //! - **When the handler returns, the connection flows on untouched**, at no further cost:
    //!   client bytes it did not read go upstream, the inbox goes to the client, and later data
    //!   passes without polling anything.
    //! - A handler that panics resets the connection (close details
    //!   `jisr_network_handler_panic`); Envoy keeps serving others. A closed connection drops the
    //!   handler's future (cancellation), as for HTTP.
    //! - [`Connection::close`] and [`Connection::reset`] take one word of visible ASCII as close
    //!   details (they reach access logs as they are); other details are replaced by
    //!   [`wire::INVALID_CLOSE_DETAILS`](crate::wire::INVALID_CLOSE_DETAILS) and the connection
    //!   closes all the same. With nothing left to write, Envoy raises the close event inside
    //!   the call: right after it, [`Connection::is_closed`] is true and reads end with 0.
    //!
    //! Besides the bytes, a handler can ask about the connection (addresses, SNI, the peer
    //! certificate, the upstream host the proxy picked, the worker), tune it (upstream socket
    //! options before its first `.await`, the buffer limit, read holding), switch either side to
    //! TLS (STARTTLS), set and read dynamic metadata and filter state, record metrics and make
    //! HTTP callouts. CONSTRAINTS.md ("Network (L4) filters") says how each behaves in Envoy.
    //!
    //! # Raw network filters
    //!
    //! The escape hatch, beside handlers in the same module: a [`RawFilter`] implements
    //! Envoy's per-connection hooks itself (`on_new_connection`, `on_read`, `on_write` with
    //! their end of stream, `on_event`, `on_scheduled`) and returns each hook's [`Status`] to
    //! Envoy as is. Each hook gets a [`RawConnection`]: the read and write buffers as chunks
    //! viewed in place (inside a closure, so no view outlives a change of the buffer), copy
    //! and drain, injection either way, `continue_reading`, `read_disable`, close and reset
    //! with details, addresses, metadata, a scheduler, logs. No future and no executor: what
    //! runs is the method. The filter value lives in a pooled per-connection slot (no
    //! allocation per connection or per read once warm); a panic in a hook resets the
    //! connection (`jisr_network_handler_panic`) and the filter gets no more hooks.
    //!
    //! ```
    //! use jisr::network::{RawConnection, RawFilter, Status};
    //! use jisr::testing::TestNetworkFilter;
    //! use jisr::Registry;
    //!
    //! /// Holds the client's bytes until a whole line is there.
    //! struct FirstLine;
    //! impl RawFilter for FirstLine {
    //!     fn on_read(&mut self, c: &mut RawConnection<'_>, end_stream: bool) -> Status {
    //!         let mut line = false;
    //!         c.read_chunks(|chunk| {
    //!             line = chunk.contains(&b'\n');
    //!             !line // stop looking once found
    //!         });
    //!         if line || end_stream { Status::Continue } else { Status::StopIteration }
    //!     }
    //! }
    //! fn register(r: &mut Registry) {
    //!     r.network_raw("first_line", |_cfg| Ok(|| FirstLine));
    //! }
    //!
    //! let f = TestNetworkFilter::new(register, "first_line", b"").unwrap();
    //! let mut c = f.connect();
    //! c.client_sends(b"HELLO ");
    //! assert_eq!(c.upstream(), b"");
    //! c.client_sends(b"there\n");
    //! assert_eq!(c.upstream(), b"HELLO there\n");
    //! ```
    #[doc(inline)]
    pub use crate::api::network::*;
}

pub mod listener {
    //! Listener filters: an `async fn` that looks at an accepted socket before Envoy makes a
    //! connection of it, and decides what filter-chain matching sees.
    //!
    //! ```
    //! use jisr::listener::{Peeked, Socket};
    //! use jisr::Registry;
    //!
    //! /// Sends clients whose first bytes are `GET ` to the chain matching transport `http-get`.
    //! async fn sniff(mut s: Socket<'_>) {
    //!     let mut buf = [0u8; 4];
    //!     loop {
    //!         match s.peek(&mut buf).await {
    //!             Peeked::More(n) if n < 4 => continue, // wait for more bytes
    //!             p => {
    //!                 if &buf[..p.len()] == b"GET " {
    //!                     s.set_transport_protocol("http-get");
    //!                 }
    //!                 return; // the socket goes on to filter-chain matching
    //!             }
    //!         }
    //!     }
    //! }
    //!
    //! fn register(r: &mut Registry) {
    //!     r.listener("sniff").max_read_bytes(4).handle(sniff);
    //! }
    //! # let mut r = Registry::default();
    //! # register(&mut r);
    //! ```
    //!
    //! What the handler sees and decides:
    //!
    //! - It starts when Envoy accepts the socket, before any connection or filter chain exists.
    //!   **When it returns, the socket goes on** (the next listener filter, then filter-chain
    //!   matching with what it set); [`Socket::close`] ends it instead.
    //! - [`Socket::peek`] waits for the client's first bytes; they stay in the socket for the
    //!   connection (only [`Socket::drain`] consumes some, e.g. a PROXY protocol header). Envoy
    //!   peeks at most the filter's [`max_read_bytes`](ListenerBuilder::max_read_bytes) (0 by
    //!   default: the handler sees no bytes, and Envoy does not wait for any).
    //! - What it sets ([`Socket::set_server_name`], [`Socket::set_application_protocols`],
    //!   [`Socket::set_transport_protocol`], addresses) is what `filter_chain_match` sees;
    //!   dynamic metadata goes on with the connection (access logs, later filters).
    //! - While it waits, the socket waits too, up to the listener's `listener_filters_timeout`
    //!   (Envoy's default 15 s): then Envoy closes the socket, or with
    //!   `continue_on_listener_filters_timeout` lets it go on, and the handler is dropped.
    //! - A handler that panics closes the socket (termination details
    //!   `jisr_listener_handler_panic`); Envoy keeps serving others. A peer that closes while the
    //!   handler waits ends the socket, and the handler is dropped (cancellation).
    //! - It may await a callout before the socket goes on: [`Socket::callout`] asks an HTTP
    //!   service on an Envoy cluster (the same request, response and
    //!   [`CalloutError`](crate::callout::CalloutError) as HTTP and network filters), and the
    //!   socket waits for the answer. An answer that comes after the socket closed is dropped:
    //!   the handler is not polled again. Any other future may be awaited too (a value from
    //!   another thread comes back through Envoy's scheduler).
    //! - Metrics are defined at config time without labels ([`ConfigHandle::counter`](crate::ConfigHandle::counter) etc. with
    //!   `&[]`; a labelled one refuses the config) and updated with [`Socket::counter_inc`] and
    //!   the like; Envoy shows them in the listener's scope,
    //!   `listener.<address>.dynamicmodulescustom.<name>`. [`Socket::set_filter_state`] leaves
    //!   bytes for later filters and access logs (`%FILTER_STATE(key:PLAIN)%`).
    //! - **Envoy 1.38** delivers no wake and no callout answer to a listener filter: there a
    //!   handler that awaits anything but [`Socket::peek`] holds the socket until
    //!   `listener_filters_timeout` (jisr logs a warning once), and [`Socket::callout`] is refused
    //!   at once with [`CalloutError::CannotCreateRequest`](crate::callout::CalloutError), so
    //!   the handler can decide without waiting.
    //!
    //! A listener filter that asks an admission service, counts, and passes the answer on:
    //!
    //! ```
    //! use jisr::callout::CalloutRequest;
    //! use jisr::listener::Socket;
    //! use jisr::{ConfigError, ConfigHandle, Counter, Registry};
    //!
    //! struct Admission {
    //!     refused: Counter,
    //! }
    //!
    //! fn load(cfg: &mut ConfigHandle<'_>) -> Result<Admission, ConfigError> {
    //!     Ok(Admission { refused: cfg.counter("refused", &[])? })
    //! }
    //!
    //! async fn admit(a: &Admission, mut s: Socket<'_>) {
    //!     let mut seat = Vec::new();
    //!     let req = CalloutRequest::get("admission", "/admit", "admission.local");
    //!     match s.callout(req, &mut seat).await {
    //!         Ok(r) if r.status == 200 => {
    //!             s.set_filter_state("acme.seat", &seat); // then the socket goes on
    //!         }
    //!         _ => {
    //!             let _ = s.counter_inc(a.refused, &[]);
    //!             s.close("admission_refused");
    //!         }
    //!     }
    //! }
    //!
    //! fn register(r: &mut Registry) {
    //!     r.listener("admit").state(load).handle(admit);
    //! }
    //! # let mut r = Registry::default();
    //! # register(&mut r);
    //! ```
    #[doc(inline)]
    pub use crate::api::listener::*;
}

pub mod udp {
    //! UDP listener filters: a plain function called once per datagram.
    //!
    //! ```
    //! use jisr::udp::{Datagram, Verdict};
    //! use jisr::Registry;
    //!
    //! /// Answers `ping` itself, drops empty datagrams, passes the rest on (to `udp_proxy`).
    //! fn ping(dg: &mut Datagram<'_>) -> Verdict {
    //!     match dg.data() {
    //!         b"" => Verdict::Stop,
    //!         b"ping" => {
    //!             let _ = dg.answer(b"pong");
    //!             Verdict::Stop
    //!         }
    //!         _ => Verdict::Continue,
    //!     }
    //! }
    //!
    //! fn register(r: &mut Registry) {
    //!     r.udp("ping").handle(ping);
    //! }
    //! # let f = jisr::testing::TestUdpFilter::new(register, "ping", b"").unwrap();
    //! # let mut w = f.worker();
    //! # assert_eq!(w.receive(b"ping"), Verdict::Stop);
    //! # assert_eq!(w.take_sent()[0].1, b"pong");
    //! # assert_eq!(w.receive(b"other"), Verdict::Continue);
    //! ```
    //!
    //! What the handler sees and decides:
    //!
    //! - It runs **synchronously, once per datagram**, on the Envoy worker that received it, and
    //!   returns a [`Verdict`]: [`Verdict::Continue`] hands the datagram (as the handler left it)
    //!   to the listener filters after this one, typically `udp_proxy`; [`Verdict::Stop`] ends it
    //!   here: answered with [`Datagram::answer`], or dropped.
    //! - **Why not an `async fn`:** Envoy's UDP listener filter ABI calls the module once per
    //!   datagram and the datagram exists only during that call; unlike HTTP and network filters,
    //!   it offers no scheduler to re-enter the filter later and no way to hold a datagram and
    //!   release it afterwards. An `async` handler would have to answer from a later hook that
    //!   never comes, or buffer datagrams jisr could not hand back to the chain. So the handler is
    //!   a plain function, and what it needs to decide (tables, limits) is loaded with the config
    //!   ([`UdpBuilder::state`]) or read from values other threads publish.
    //! - It sees the datagram's bytes ([`Datagram::data`], copied once into a per-worker buffer
    //!   that is reused: no allocation per datagram once warm), where it came from
    //!   ([`Datagram::peer`]) and where it arrived ([`Datagram::local`]).
    //! - It may replace the bytes ([`Datagram::set_data`]: later filters see the new ones), send
    //!   datagrams from the listener's socket ([`Datagram::answer`] to the peer,
    //!   [`Datagram::send_to`] anywhere), and update metrics defined at config time (UDP metrics
    //!   take no labels).
    //! - A handler that panics **drops the datagram** (fail closed) and an error is logged; the
    //!   next datagram is handled as usual.
    //! - A config that is refused (its state function returns an error) never lets a datagram
    //!   through unfiltered: Envoy 1.40 refuses the listener's filter config (the error is in its
    //!   log); Envoy 1.38 and 1.39 run the listener anyway, and jisr's filter there **drops every
    //!   datagram**.
    #[doc(inline)]
    pub use crate::api::udp::*;
}

/// Sleeps, timeouts and intervals for handlers and background tasks.
pub mod time {
    pub use crate::api::time::{Elapsed, Interval, Sleep, interval, sleep, sleep_until, timeout};
}

/// Tracing from a handler: the active span and child spans.
pub mod trace {
    pub use crate::api::http::trace::Span;
}

/// What Envoy 1.40 knows about a stream: its timing.
pub mod info {
    pub use crate::api::http::info::{Timing, TimingPoint};
}

/// Stream control beyond replies: socket options and filter-state options.
pub mod control {
    pub use crate::api::http::control::{
        SocketOption, SocketSide, SocketState, StateLife, StateSharing,
    };
}

pub use api::Unsupported;

/// Handler traits, composition and the types request methods return.
pub mod handler {
    pub use crate::api::http::body::{BodyError, ReadBody};
    pub use crate::api::http::pipeline::{
        Chained, Handler, IntoPipeline, IntoRegistered, IntoRequestHandler, IntoResponseHandler,
        Middleware, NextFuture, OnRequest, OnResponse, Phase, Req, Resp, Side, StateHandler,
    };
    pub use crate::api::http::request::{HeaderError, HeaderValues, ReplaceError};
    pub use crate::api::http::writer::{INVALID_REPLY_DETAILS, MetadataNames, ReplyError};
    pub use crate::api::metrics::MetricError;
    pub use crate::api::pb::{StructValue, TypedMetadata};
    pub use crate::api::registry::FilterBuilder;
}

/// The response phase: response middleware and handler traits, errors, and replies the filter
/// streams itself.
pub mod response {
    pub use crate::api::http::pipeline::{ResponseNext, response_chain};
    pub use crate::api::http::reply_stream::{SendData, StreamError, StreamWriter};
    pub use crate::api::http::response::{Finished, ResponseError};
}

/// HTTP callouts to other clusters, unary and streaming.
pub mod callout {
    pub use crate::api::callout::Callout;
    pub use crate::api::callout::{
        CalloutError, CalloutHeaders, CalloutRequest, CalloutResponse, NoAnswer,
    };
    pub use crate::api::http::callout_stream::{CalloutHead, CalloutStream};
}

/// The escape hatch: filters written directly against Envoy's hooks, beside jisr filters.
pub mod raw {
    pub use crate::api::http::raw::{
        BodyStatus, HeadersStatus, RawFactory, RawFilter, RawScheduler, RawStream, TrailersStatus,
    };
}

/// Introspection: per-filter figures and the built-in introspection filter.
pub mod stats {
    pub use crate::api::http::stats::{FilterStatsSnapshot, INTROSPECTION_FILTER, filter_stats};
    pub use crate::filter::http::hooks::{INTERNAL_DETAILS, PANIC_DETAILS};
}

/// Exports the Envoy hooks from a `cdylib` crate and registers its filters.
///
/// `register` is a `fn(&mut Registry)` called once when Envoy loads the module. Envoy then picks
/// a filter by the `filter_name` of each `DynamicModuleFilter` config; an unknown name makes
/// Envoy refuse that config, and the module logs the names it knows.
///
/// ```
/// fn register(r: &mut jisr::Registry) {
///     r.register("noop", |_req: jisr::Request<'_>, _w: jisr::ResponseWriter<'_>| async {});
/// }
/// jisr::export!(register);
/// ```
#[macro_export]
macro_rules! export {
    ($register:path) => {
        $crate::__export_hooks!($register);
    };
}
