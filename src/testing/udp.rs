//! Simulated datagrams for UDP listener filters: drive a registered `r.udp(..)` filter one
//! datagram at a time, as Envoy's `on_data` would, and see what it passed on and sent.

use crate::Registry;
use crate::abi::udp::FilterStatus;
use crate::api::config::ConfigHandle;
use crate::api::udp::Verdict;
use crate::filter::udp::{UdpConfigHooks, UdpHooks};
use crate::host::MetricKind;
use crate::host::udp::sim::{SimMetrics, SimUdp, SimUdpConfigHost};
use std::net::SocketAddr;
use std::rc::Rc;

/// A UDP listener filter loaded from a registry, as Envoy loads it for a UDP listener.
///
/// ```
/// use jisr::testing::TestUdpFilter;
/// use jisr::udp::{Datagram, Verdict};
/// use jisr::{ConfigError, ConfigHandle, Counter, Registry};
///
/// fn load(cfg: &mut ConfigHandle<'_>) -> Result<Counter, ConfigError> {
///     cfg.counter("answered", &[])
/// }
/// fn echo(answered: &Counter, dg: &mut Datagram<'_>) -> Verdict {
///     if dg.answer(dg.data()).is_ok() {
///         let _ = dg.counter_inc(*answered, &[]);
///     }
///     Verdict::Stop
/// }
/// fn register(r: &mut Registry) {
///     r.udp("echo").state(load).handle(echo);
/// }
///
/// let f = TestUdpFilter::new(register, "echo", b"").unwrap();
/// let mut w = f.worker();
/// let peer = "192.0.2.7:5353".parse().unwrap();
/// assert_eq!(w.receive_from(peer, b"hi"), Verdict::Stop);
/// assert_eq!(w.take_sent(), [(peer, b"hi".to_vec())]);
/// assert_eq!(f.metric("answered"), Some(1));
/// ```
pub struct TestUdpFilter {
    config: Box<dyn UdpConfigHooks>,
    metrics: Rc<SimMetrics>,
    load_logs: Vec<(crate::Level, String)>,
}

impl TestUdpFilter {
    /// Loads UDP listener filter `name` from `register` with `config` as its `filter_config`;
    /// an error is the message Envoy's log would show (and the config would be refused).
    pub fn new(
        register: fn(&mut Registry),
        name: &str,
        config: &[u8],
    ) -> Result<TestUdpFilter, String> {
        let mut r = Registry::default();
        register(&mut r);
        let Some(build) = r.udp_build(name) else {
            return Err(format!("jisr: no udp filter named '{name}' in this module"));
        };
        let metrics = Rc::new(SimMetrics::default());
        let host = SimUdpConfigHost {
            metrics: metrics.clone(),
            logs: Default::default(),
        };
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name,
            bytes: config,
            host: &host,
            background: None,
        };
        let config = build(&mut handle).map_err(|e| format!("jisr: udp filter '{name}': {e}"))?;
        let load_logs = host
            .logs
            .take()
            .into_iter()
            .map(|(l, s)| (crate::Level::from_abi(l), s))
            .collect();
        Ok(TestUdpFilter {
            config,
            metrics,
            load_logs,
        })
    }

    /// Log lines written while the config loaded.
    pub fn load_logs(&self) -> &[(crate::Level, String)] {
        &self.load_logs
    }

    /// The filter of one Envoy worker (Envoy makes one per UDP listener and worker). Its
    /// peer is `127.0.0.1:40000` and its listener `127.0.0.1:10000` until changed.
    pub fn worker(&self) -> TestUdpWorker<'_> {
        TestUdpWorker {
            host: SimUdp::new(self.metrics.clone()),
            filter: self.config.new_filter(),
        }
    }

    /// A counter's or gauge's value, by the name it was defined with.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics
            .all
            .borrow()
            .iter()
            .find(|m| m.name == name && m.kind != MetricKind::Histogram)
            .map(|m| m.value)
    }

    /// The values recorded in a histogram, in order.
    pub fn histogram(&self, name: &str) -> Vec<u64> {
        self.metrics
            .all
            .borrow()
            .iter()
            .find(|m| m.name == name && m.kind == MetricKind::Histogram)
            .map(|m| m.samples.clone())
            .unwrap_or_default()
    }
}

/// One worker's filter of a [`TestUdpFilter`] (from [`TestUdpFilter::worker`]): datagrams go
/// through it one at a time. Nothing here allocates per datagram once warm, so it can drive
/// allocation tests.
pub struct TestUdpWorker<'f> {
    host: SimUdp,
    filter: Box<dyn UdpHooks + 'f>,
}

impl TestUdpWorker<'_> {
    /// A datagram from the current peer (Envoy's `on_data`); what the filter decided.
    pub fn receive(&mut self, bytes: &[u8]) -> Verdict {
        {
            let mut d = self.host.data.borrow_mut();
            d.clear();
            d.extend_from_slice(bytes);
        }
        match self.filter.on_data(&self.host) {
            FilterStatus::Continue => Verdict::Continue,
            FilterStatus::StopIteration => Verdict::Stop,
        }
    }

    /// A datagram from `peer` (which stays the current peer).
    pub fn receive_from(&mut self, peer: SocketAddr, bytes: &[u8]) -> Verdict {
        self.host.peer.set(peer);
        self.receive(bytes)
    }

    /// The last datagram as the filters after this one see it (after any replacement).
    pub fn data(&self) -> Vec<u8> {
        self.host.data.borrow().clone()
    }

    /// Every datagram the filter sent so far, in order: destination and bytes.
    pub fn sent(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.host.sent.borrow().list()
    }

    /// Takes what the filter sent so far (the next call sees only newer datagrams).
    pub fn take_sent(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let out = self.sent();
        self.host.sent.borrow_mut().clear();
        out
    }

    /// How many datagrams the filter sent since the last clear (no allocation).
    pub fn sent_count(&self) -> usize {
        self.host.sent.borrow().items.len()
    }

    /// Forgets what the filter sent, keeping the memory (for allocation tests).
    pub fn clear_sent(&mut self) {
        self.host.sent.borrow_mut().clear();
    }

    /// Sets the peer of the next datagrams.
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.host.peer.set(peer);
    }

    /// Sets the listener address the datagrams arrive on.
    pub fn set_local(&mut self, local: SocketAddr) {
        self.host.local.set(local);
    }

    /// Sets the worker index the filter reports.
    pub fn set_worker_index(&mut self, index: u32) {
        self.host.worker.set(index);
    }

    /// Only lines at `level` or above are written from now on (as Envoy's `dynamic_modules`
    /// logger level).
    pub fn set_log_level(&mut self, level: crate::Level) {
        self.host.log_level.set(level as u32);
    }

    /// Log lines the filter wrote on this worker.
    pub fn logs(&self) -> Vec<(crate::Level, String)> {
        self.host
            .logs
            .borrow()
            .iter()
            .map(|(l, s)| (crate::Level::from_abi(*l), s.clone()))
            .collect()
    }
}
