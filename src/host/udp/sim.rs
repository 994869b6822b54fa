//! A simulated UDP listener host, for `jisr::testing`: the current datagram and what the
//! filter sent, in memory. Allocation-free once warm (sent datagrams go into one reused byte
//! buffer), so the zero-allocation test can drive it.

use super::{Addr, UdpHost};
use crate::executor::sched::Committer;
use crate::host::{ConfigHost, MetricKind, MetricOp};
use std::cell::{Cell, RefCell};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

/// Datagrams the filter sent: their bytes back to back, and where each went.
#[derive(Default)]
pub(crate) struct Sent {
    pub(crate) bytes: Vec<u8>,
    pub(crate) items: Vec<(SocketAddr, usize, usize)>,
}

impl Sent {
    /// Forgets what was sent (keeps the capacity).
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    /// Each datagram sent, in order: its destination and bytes.
    pub(crate) fn list(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        self.items
            .iter()
            .map(|&(to, a, b)| (to, self.bytes[a..b].to_vec()))
            .collect()
    }
}

/// One metric defined by a simulated config.
pub(crate) struct SimMetric {
    pub(crate) name: String,
    pub(crate) kind: MetricKind,
    pub(crate) value: u64,
    pub(crate) samples: Vec<u64>,
}

/// The metrics of one simulated config, shared by its workers (the index is the id).
#[derive(Default)]
pub(crate) struct SimMetrics {
    pub(crate) all: RefCell<Vec<SimMetric>>,
}

impl SimMetrics {
    fn apply(&self, op: MetricOp, id: usize, v: u64) -> u32 {
        let mut all = self.all.borrow_mut();
        let Some(m) = all.get_mut(id) else {
            return crate::abi::metrics_result::METRIC_NOT_FOUND;
        };
        let fits = matches!(
            (op, m.kind),
            (MetricOp::CounterAdd, MetricKind::Counter)
                | (
                    MetricOp::GaugeAdd | MetricOp::GaugeSub | MetricOp::GaugeSet,
                    MetricKind::Gauge
                )
                | (MetricOp::HistogramRecord, MetricKind::Histogram)
        );
        if !fits {
            // Envoy keeps one id space per kind: an id of another kind is not found.
            return crate::abi::metrics_result::METRIC_NOT_FOUND;
        }
        match op {
            MetricOp::CounterAdd | MetricOp::GaugeAdd => m.value = m.value.wrapping_add(v),
            MetricOp::GaugeSub => m.value = m.value.saturating_sub(v),
            MetricOp::GaugeSet => m.value = v,
            MetricOp::HistogramRecord => m.samples.push(v),
        }
        crate::abi::metrics_result::SUCCESS
    }
}

/// One simulated UDP listener filter's host (one Envoy worker): the current datagram, its
/// addresses, and what the filter did.
pub(crate) struct SimUdp {
    /// The current datagram (what the filters after this one see).
    pub(crate) data: RefCell<Vec<u8>>,
    /// Where the current datagram came from.
    pub(crate) peer: Cell<SocketAddr>,
    /// The listener's address.
    pub(crate) local: Cell<SocketAddr>,
    /// Datagrams the filter sent.
    pub(crate) sent: RefCell<Sent>,
    /// The worker index.
    pub(crate) worker: Cell<u32>,
    /// Log lines written.
    pub(crate) logs: RefCell<Vec<(u32, String)>>,
    /// The log level (ABI number): lines below it are not written.
    pub(crate) log_level: Cell<u32>,
    /// The config's metrics.
    pub(crate) metrics: Rc<SimMetrics>,
}

impl SimUdp {
    /// A worker's host of a config whose metrics are `metrics`.
    pub(crate) fn new(metrics: Rc<SimMetrics>) -> SimUdp {
        SimUdp {
            data: RefCell::new(Vec::new()),
            peer: Cell::new(SocketAddr::from(([127, 0, 0, 1], 40000))),
            local: Cell::new(SocketAddr::from(([127, 0, 0, 1], 10000))),
            sent: RefCell::new(Sent::default()),
            worker: Cell::new(0),
            logs: RefCell::new(Vec::new()),
            log_level: Cell::new(0),
            metrics,
        }
    }
}

impl UdpHost for SimUdp {
    fn read(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.data.borrow());
    }

    fn replace(&self, data: &[u8]) -> bool {
        let mut d = self.data.borrow_mut();
        d.clear();
        d.extend_from_slice(data);
        true
    }

    fn address(&self, which: Addr, out: &mut [u8]) -> Option<(usize, u32)> {
        let a = match which {
            Addr::Peer => self.peer.get(),
            Addr::Local => self.local.get(),
        };
        // As Envoy: the IP as text (no brackets for IPv6), the port apart.
        let cap = out.len();
        let mut w = &mut out[..];
        write!(w, "{}", a.ip()).ok()?;
        let left = w.len();
        Some((cap - left, u32::from(a.port())))
    }

    fn send(&self, data: &[u8], ip: &[u8], port: u32) -> bool {
        let to = if ip.is_empty() {
            self.peer.get()
        } else {
            // As Envoy: an address it cannot parse is not sent to.
            let Some(ip) = core::str::from_utf8(ip)
                .ok()
                .and_then(|s| s.parse::<IpAddr>().ok())
            else {
                return false;
            };
            let Ok(port) = u16::try_from(port) else {
                return false;
            };
            SocketAddr::new(ip, port)
        };
        let mut s = self.sent.borrow_mut();
        let start = s.bytes.len();
        s.bytes.extend_from_slice(data);
        let end = s.bytes.len();
        s.items.push((to, start, end));
        true
    }

    fn worker_index(&self) -> u32 {
        self.worker.get()
    }

    fn metric(&self, op: MetricOp, id: usize, value: u64) -> u32 {
        self.metrics.apply(op, id, value)
    }

    fn log_enabled(&self, level: u32) -> bool {
        level >= self.log_level.get()
    }

    fn log(&self, level: u32, line: &[u8]) {
        self.logs
            .borrow_mut()
            .push((level, String::from_utf8_lossy(line).into_owned()));
    }
}

/// A UDP listener filter config's simulated host while it loads.
pub(crate) struct SimUdpConfigHost {
    /// The config's metrics (definitions go here).
    pub(crate) metrics: Rc<SimMetrics>,
    /// Log lines written while loading.
    pub(crate) logs: RefCell<Vec<(u32, String)>>,
}

impl ConfigHost for SimUdpConfigHost {
    /// As Envoy: no labels on UDP listener filter metrics.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        if !labels.is_empty() {
            return Err(crate::abi::metrics_result::INVALID_LABELS);
        }
        let mut m = self.metrics.all.borrow_mut();
        m.push(SimMetric {
            name: name.to_string(),
            kind,
            value: 0,
            samples: Vec::new(),
        });
        Ok(m.len() - 1)
    }

    fn log_enabled(&self, _level: u32) -> bool {
        true
    }

    fn log(&self, level: u32, msg: &[u8]) {
        self.logs
            .borrow_mut()
            .push((level, String::from_utf8_lossy(msg).into_owned()));
    }

    fn process_log(&self) -> Option<fn(u32, &[u8])> {
        None
    }

    fn secret(&self, _handle: u64) -> Option<Vec<u8>> {
        None
    }

    fn new_scheduler(&self) -> Committer {
        Committer::inert()
    }

    fn metric(&self, _op: MetricOp, _id: usize, _labels: &[&[u8]], _value: u64) -> Option<u32> {
        None
    }
}

// As Envoy's UDP configs: no outbound calls while loading.
crate::host::no_outbound!(SimUdpConfigHost);
