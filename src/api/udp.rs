//! UDP listener filters: the handler API (public as `jisr::udp`, whose docs say what a handler
//! sees and decides).

use crate::api::config::{ConfigError, ConfigHandle};
use crate::api::metrics::MetricError;
use crate::filter::udp::{DatagramCore, Decision, UdpConfig, UdpConfigHooks, UdpTask};
use crate::host::MetricOp;
use crate::host::udp::Addr;
use std::io::Write as _;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The largest payload a UDP datagram can carry over IPv4 (65,535 bytes less the IP and UDP
/// headers); jisr refuses to send or set more, for either IP version.
pub const MAX_DATAGRAM: usize = 65_507;

/// What a UDP handler decided for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the verdict decides whether the datagram goes on"]
pub enum Verdict {
    /// The listener filters after this one (e.g. `udp_proxy`) get the datagram, with the bytes
    /// the handler left in it. With no filter after this one, it ends here.
    Continue,
    /// The datagram ends here: the handler answered it, or drops it.
    Stop,
}

/// Why a datagram was not sent or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramError {
    /// More bytes than one UDP datagram carries ([`MAX_DATAGRAM`]); nothing was done.
    TooLarge {
        /// The bytes given.
        len: usize,
    },
    /// Envoy refused (an address it cannot send to, or no listener socket).
    Refused,
}

impl core::fmt::Display for DatagramError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DatagramError::TooLarge { len } => write!(
                f,
                "{len} bytes do not fit in one UDP datagram (at most {MAX_DATAGRAM})"
            ),
            DatagramError::Refused => f.write_str("Envoy refused the datagram"),
        }
    }
}

impl std::error::Error for DatagramError {}

/// One datagram, handed to a UDP handler (see the [module docs](crate::udp)).
///
/// It borrows Envoy's current datagram: it cannot leave the handler and is not `Send`.
///
/// ```
/// use jisr::udp::{Datagram, Verdict};
/// # use jisr::testing::TestUdpFilter;
/// # use jisr::Registry;
///
/// /// Tags each datagram with the sender's port, then lets it go on.
/// fn tag(dg: &mut Datagram<'_>) -> Verdict {
///     let port = dg.peer().map_or(0, |p| p.port());
///     let mut out = port.to_be_bytes().to_vec();
///     out.extend_from_slice(dg.data());
///     match dg.set_data(&out) {
///         Ok(()) => Verdict::Continue,
///         Err(_) => Verdict::Stop, // too large once tagged: drop it
///     }
/// }
/// # fn register(r: &mut Registry) { r.udp("tag").handle(tag); }
/// # let f = TestUdpFilter::new(register, "tag", b"").unwrap();
/// # let mut w = f.worker();
/// # w.set_peer("127.0.0.1:513".parse().unwrap());
/// # assert_eq!(w.receive(b"x"), Verdict::Continue);
/// # assert_eq!(w.data(), [2, 1, b'x']);
/// ```
///
/// The bytes [`data`](Datagram::data) returns cannot be held across a replacement:
///
/// ```compile_fail
/// # use jisr::udp::{Datagram, Verdict};
/// fn stale(dg: &mut Datagram<'_>) -> Verdict {
///     let before = dg.data();
///     let _ = dg.set_data(b"new");
///     assert_eq!(before, b"old"); // error: `dg` is borrowed by `before`
///     Verdict::Continue
/// }
/// ```
pub struct Datagram<'d> {
    core: DatagramCore<'d>,
    _not_send: PhantomData<*const ()>,
}

impl<'d> Datagram<'d> {
    pub(crate) fn new(core: DatagramCore<'d>) -> Datagram<'d> {
        Datagram {
            core,
            _not_send: PhantomData,
        }
    }

    /// The datagram's bytes (after [`set_data`](Datagram::set_data), the new ones).
    pub fn data(&self) -> &[u8] {
        self.core.data
    }

    /// Replaces the datagram's bytes: the filters after this one see `bytes` if the handler
    /// returns [`Verdict::Continue`]. Envoy copies them.
    ///
    /// # Errors
    /// [`DatagramError::TooLarge`] past [`MAX_DATAGRAM`] (nothing changes);
    /// [`DatagramError::Refused`] if Envoy has no current datagram.
    pub fn set_data(&mut self, bytes: &[u8]) -> Result<(), DatagramError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge { len: bytes.len() });
        }
        if !self.core.host.replace(bytes) {
            return Err(DatagramError::Refused);
        }
        self.core.data.clear();
        self.core.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Where the datagram came from (`None` if Envoy reports no IP address).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.addr(Addr::Peer)
    }

    /// The listener address the datagram arrived on.
    pub fn local(&self) -> Option<SocketAddr> {
        self.addr(Addr::Local)
    }

    fn addr(&self, which: Addr) -> Option<SocketAddr> {
        let mut buf = [0u8; 64];
        let (n, port) = self.core.host.address(which, &mut buf)?;
        let ip: IpAddr = core::str::from_utf8(&buf[..n]).ok()?.parse().ok()?;
        Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
    }

    /// Sends `bytes` back to the datagram's peer, from the listener's socket (the address the
    /// peer sent to). Return [`Verdict::Stop`] after answering, unless the datagram should also
    /// go on.
    ///
    /// # Errors
    /// [`DatagramError::TooLarge`] past [`MAX_DATAGRAM`] (nothing is sent);
    /// [`DatagramError::Refused`] if Envoy could not send it.
    pub fn answer(&self, bytes: &[u8]) -> Result<(), DatagramError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge { len: bytes.len() });
        }
        // An empty address: Envoy sends to the current datagram's peer.
        if self.core.host.send(bytes, &[], 0) {
            Ok(())
        } else {
            Err(DatagramError::Refused)
        }
    }

    /// Sends `bytes` to `to`, from the listener's socket.
    ///
    /// # Errors
    /// As [`answer`](Datagram::answer).
    pub fn send_to(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), DatagramError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLarge { len: bytes.len() });
        }
        // The IP as Envoy parses it: text without brackets; the port apart.
        let mut ip = [0u8; 64];
        let cap = ip.len();
        let mut w = &mut ip[..];
        if write!(w, "{}", to.ip()).is_err() {
            return Err(DatagramError::Refused);
        }
        let n = cap - w.len();
        if self.core.host.send(bytes, &ip[..n], u32::from(to.port())) {
            Ok(())
        } else {
            Err(DatagramError::Refused)
        }
    }

    /// The index of the Envoy worker handling this datagram (each worker has its own filter).
    pub fn worker(&self) -> u32 {
        self.core.host.worker_index()
    }

    /// Writes one line to Envoy's `dynamic_modules` log at `level` (formatted only when the
    /// level is on; no allocation once warm).
    pub fn log(&self, level: crate::Level, args: core::fmt::Arguments<'_>) {
        let h = self.core.host;
        let level = level as u32;
        if h.log_enabled(level) {
            crate::host::log::with_line(|s| core::fmt::write(s, args), |l| h.log(level, l));
        }
    }

    fn metric(
        &self,
        op: MetricOp,
        id: usize,
        expected: usize,
        labels: &[&str],
        v: u64,
    ) -> Result<(), MetricError> {
        if labels.len() != expected {
            return Err(MetricError::LabelCount {
                expected,
                got: labels.len(),
            });
        }
        let rc = self.core.host.metric(op, id, v);
        crate::api::metrics::metric_result(Some(rc), expected, labels.len())
    }

    crate::api::metrics::metric_methods!(
        "A label count that differs from the definition (UDP metrics have none: pass `&[]`), \
         or Envoy's refusal."
    );
}

/// What [`UdpBuilder::handle`] accepts: `fn(&mut Datagram<'_>) -> Verdict`, or with
/// [`state`](UdpBuilder::state) `fn(&S, &mut Datagram<'_>) -> Verdict`. Implemented for every
/// such function; you never implement it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a UDP handler",
    label = "expected `fn(&mut Datagram<'_>) -> Verdict`, or `fn(&S, &mut Datagram<'_>) -> Verdict` after `.state(load)`"
)]
pub trait UdpHandler<S, Marker>: Send + Sync + 'static {
    /// Handles one datagram.
    fn call(&self, state: &S, dg: &mut Datagram<'_>) -> Verdict;
}

/// Marks a handler without state.
#[doc(hidden)]
pub struct Stateless;
/// Marks a handler with state.
#[doc(hidden)]
pub struct WithState;

impl<F> UdpHandler<(), Stateless> for F
where
    F: Fn(&mut Datagram<'_>) -> Verdict + Send + Sync + 'static,
{
    fn call(&self, _: &(), dg: &mut Datagram<'_>) -> Verdict {
        self(dg)
    }
}

impl<S, F> UdpHandler<S, WithState> for F
where
    F: Fn(&S, &mut Datagram<'_>) -> Verdict + Send + Sync + 'static,
{
    fn call(&self, state: &S, dg: &mut Datagram<'_>) -> Verdict {
        self(state, dg)
    }
}

/// A handler bound to its config's state: what each datagram runs.
struct Bound<S, H, M> {
    state: S,
    handler: H,
    _marker: PhantomData<fn() -> M>,
}

impl<S, H, M> UdpTask for Bound<S, H, M>
where
    S: Send + Sync + 'static,
    H: UdpHandler<S, M>,
    M: 'static,
{
    fn datagram(&self, core: DatagramCore<'_>) -> Decision {
        let mut dg = Datagram::new(core);
        match self.handler.call(&self.state, &mut dg) {
            Verdict::Continue => Decision::Pass,
            Verdict::Stop => Decision::Stop,
        }
    }
}

/// Builds one UDP listener filter config.
pub(crate) type UdpBuild = Box<
    dyn Fn(&mut ConfigHandle<'_>) -> Result<Box<dyn UdpConfigHooks>, ConfigError> + Send + Sync,
>;

/// A UDP listener filter being registered (from [`Registry::udp`](crate::Registry::udp)):
/// optional per-config state, then the handler.
pub struct UdpBuilder<'r, S, C> {
    pub(crate) sink: &'r mut Vec<(String, UdpBuild)>,
    pub(crate) name: String,
    pub(crate) state: C,
    pub(crate) _state: PhantomData<fn() -> S>,
}

/// The state function of a UDP filter without state.
#[doc(hidden)]
pub type NoUdpState = fn(&mut ConfigHandle<'_>) -> Result<(), ConfigError>;

pub(crate) fn no_state(_: &mut ConfigHandle<'_>) -> Result<(), ConfigError> {
    Ok(())
}

impl<'r> UdpBuilder<'r, (), NoUdpState> {
    /// Per-config state: `config_fn` runs once per Envoy filter config (main thread), parses
    /// the config and defines metrics, and may refuse it with an error naming the problem;
    /// the handler then receives `&S` first.
    pub fn state<S, C>(self, config_fn: C) -> UdpBuilder<'r, S, C>
    where
        S: Send + Sync + 'static,
        C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
    {
        UdpBuilder {
            sink: self.sink,
            name: self.name,
            state: config_fn,
            _state: PhantomData,
        }
    }
}

impl<'r, S, C> UdpBuilder<'r, S, C>
where
    S: Send + Sync + 'static,
    C: Fn(&mut ConfigHandle<'_>) -> Result<S, ConfigError> + Send + Sync + 'static,
{
    /// Registers the filter with its datagram handler.
    pub fn handle<H, M>(self, handler: H)
    where
        H: UdpHandler<S, M> + Clone,
        M: 'static,
    {
        let state_fn = self.state;
        let name = self.name;
        self.sink.retain(|(n, _)| *n != name);
        self.sink.push((
            name,
            Box::new(move |cfg| {
                let state = state_fn(cfg)?;
                let config = UdpConfig {
                    task: Bound {
                        state,
                        handler: handler.clone(),
                        _marker: PhantomData,
                    },
                    name: Arc::from(cfg.filter_name()),
                };
                Ok(Box::new(config) as Box<dyn UdpConfigHooks>)
            }),
        ));
    }
}
