//! What users write against: the registry, configs, metrics, logs, time, callouts and
//! background work shared by every kind, then one module per kind ([`http`], [`server`]).

pub(crate) mod background;
pub(crate) mod callout;
pub(crate) mod config;
pub(crate) mod http;
pub(crate) mod join;
pub(crate) mod listener;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod network;
pub(crate) mod pb;
pub(crate) mod published;
pub(crate) mod registry;
pub(crate) mod secret;
pub(crate) mod server;
pub(crate) mod time;
pub(crate) mod udp;
pub mod wire;

use std::fmt;

/// A callback this Envoy does not export (it is newer than the running Envoy): the method
/// that needs it did nothing. Each method that can return it says from which Envoy on it works.
///
/// ```
/// # use jisr::testing::TestFilter;
/// use jisr::{Level, Registry, Request, ResponseWriter};
///
/// async fn peer(_req: Request<'_>, w: ResponseWriter<'_>) {
///     match w.downstream_direct_remote_address() {
///         Ok(addr) => w.set_metadata_str("acme", "peer", addr.unwrap_or("-")),
///         Err(unsupported) => w.log(Level::Warn, format_args!("{unsupported}")), // an older Envoy
///     }
/// }
/// fn register(r: &mut Registry) { r.register("peer", peer); }
///
/// let f = TestFilter::new(register, "peer", b"").unwrap();
/// let mut s = f.stream();
/// s.simulate_envoy_before_1_40();
/// s.request_headers(&[(":path", "/")], true);
/// let (_, line) = f.logs().pop().unwrap();
/// assert!(line.starts_with("this Envoy does not provide `envoy_dynamic_module_callback_"), "{line}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The Envoy callback that is missing.
    pub callback: &'static str,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this Envoy does not provide `{}`", self.callback)
    }
}

impl std::error::Error for Unsupported {}
