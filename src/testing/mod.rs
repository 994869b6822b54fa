//! Run filters without Envoy: a simulated stream that records everything Envoy would see.
//!
//! Build a [`TestFilter`] from the same `register` function the module exports, open streams
//! on it, drive them hook by hook, and inspect every status returned and every effect (headers,
//! local reply, metadata, metrics, logs, scheduler events).
//!
//! Available with the cargo feature `testing`, meant for test builds only: enable it on a
//! dev-dependency beside the normal one, so the module Envoy loads carries none of this.
//!
//! ```toml
//! [dependencies]
//! jisr = "0.1"
//!
//! [dev-dependencies]
//! jisr = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```
//! use jisr::testing::TestFilter;
//! use jisr::{Registry, Request, ResponseWriter, raw::HeadersStatus};
//!
//! async fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
//!     let _ = req.set_header("x-hello", "from-jisr");
//! }
//! fn register(r: &mut Registry) {
//!     r.register("hello", hello);
//! }
//!
//! let filter = TestFilter::new(register, "hello", b"").unwrap();
//! let mut s = filter.stream();
//! assert_eq!(s.request_headers(&[(":path", "/")], true), HeadersStatus::Continue);
//! assert_eq!(s.request_header("x-hello").as_deref(), Some("from-jisr"));
//! ```
//!
//! One module per extension kind, like the rest of the crate (see
//! [`architecture`](crate::architecture)): the HTTP filter's simulated stream is re-exported
//! here (`jisr::testing::TestFilter`, `jisr::testing::bench`); the server extension runs only
//! inside Envoy and has no simulator yet.

mod http;

pub use http::*;
mod network;
pub use network::{Socket, TestConnection, TestNetworkFilter};
mod listener;
pub use listener::{AcceptedSocket, SocketOutcome, TestListenerFilter, TestSocket};
mod udp;
pub use udp::{TestUdpFilter, TestUdpWorker};
