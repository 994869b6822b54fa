//! A simulated socket host, for `jisr::testing`: a peek buffer and records in memory.

use super::{Committer, SockAddr, SocketHost};
use crate::host::sim_shared::{self, SimCallouts, SimFilterState, SimMetrics};
use crate::host::{ConfigHost, MetricKind, MetricOp};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// One simulated accepted socket: the bytes the client sent, and what the filter did.
#[derive(Default)]
pub(crate) struct SimSocket {
    /// Bytes in the socket (peekable up to the filter's limit, drained from the front).
    pub(crate) bytes: RefCell<Vec<u8>>,
    /// How many bytes Envoy peeks (the filter's max read bytes).
    pub(crate) peek_limit: Cell<usize>,
    /// An `on_data` hook is running (the only place the peek buffer exists, as in Envoy).
    pub(crate) in_data: Cell<bool>,
    /// Bytes the filter drained (consumed) from the socket.
    pub(crate) drained: RefCell<Vec<u8>>,
    /// The transport protocol set (empty: none; kept as one buffer so a reused socket does
    /// not allocate).
    pub(crate) transport: RefCell<String>,
    /// The server name set (empty: none).
    pub(crate) sni: RefCell<String>,
    /// The application protocols set.
    pub(crate) alpn: RefCell<Vec<String>>,
    /// Dynamic metadata set: namespace, key, value (numbers as their text).
    pub(crate) metadata: RefCell<Vec<(String, String, String)>>,
    /// The peer's address and port as Envoy sees it.
    pub(crate) remote: RefCell<(String, u32)>,
    /// The peer the socket is really connected to.
    pub(crate) direct_remote: RefCell<(String, u32)>,
    /// The local address and port.
    pub(crate) local: RefCell<(String, u32)>,
    /// Whether the local address was restored.
    pub(crate) local_restored: Cell<bool>,
    /// `continue_filter_chain` calls, in order.
    pub(crate) continued: RefCell<Vec<bool>>,
    /// Why the filter closed the socket.
    pub(crate) closed: RefCell<Option<String>>,
    /// Events committed on the socket's scheduler and not yet delivered.
    pub(crate) scheduled: Arc<AtomicU32>,
    /// Log lines written.
    pub(crate) logs: RefCell<Vec<(u32, String)>>,
    /// The log level (ABI number): lines below it are not written.
    pub(crate) log_level: Cell<u32>,
    /// Metric values by id, shared by the config's sockets (counters and gauges add;
    /// histograms keep the last value).
    pub(crate) metrics: SimMetrics,
    /// Bytes filter state.
    pub(crate) filter_state: SimFilterState,
    /// Callouts started, and clusters that do not exist.
    pub(crate) callouts: SimCallouts,
    /// Bytes the filter wrote to the client.
    pub(crate) written: RefCell<Vec<u8>>,
    /// The TLS fingerprints an earlier filter set: JA3, JA4 (empty: none).
    pub(crate) ja3: RefCell<String>,
    pub(crate) ja4: RefCell<String>,
    /// Integer socket options set: level, name, value.
    pub(crate) options: RefCell<Vec<(i64, i64, i64)>>,
}

impl SimSocket {
    /// What Envoy's peek returns: the first bytes, up to the limit.
    pub(crate) fn peekable(&self) -> usize {
        self.bytes.borrow().len().min(self.peek_limit.get())
    }
}

/// Replaces `slot` with `b` (as Envoy ignores an empty name), reusing its buffer.
fn set_text(slot: &RefCell<String>, b: &[u8]) {
    if !b.is_empty() {
        let mut s = slot.borrow_mut();
        s.clear();
        s.push_str(&String::from_utf8_lossy(b));
    }
}

fn copy_str(s: &str, out: &mut [u8]) -> usize {
    let n = s.len().min(out.len());
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    n
}

/// Parses an address as Envoy does for `set_remote_address` / `restore_local_address`.
fn parse_ip(ip: &[u8], v6: bool) -> Option<String> {
    let text = core::str::from_utf8(ip).ok()?;
    let addr: std::net::IpAddr = text.parse().ok()?;
    (addr.is_ipv6() == v6).then(|| addr.to_string())
}

impl SocketHost for SimSocket {
    fn peeked(&self, out: &mut Vec<u8>) -> bool {
        if !self.in_data.get() {
            return false;
        }
        out.clear();
        out.extend_from_slice(&self.bytes.borrow()[..self.peekable()]);
        true
    }

    fn drain(&self, n: usize) -> bool {
        if !self.in_data.get() || n == 0 {
            return false;
        }
        let mut b = self.bytes.borrow_mut();
        let n = n.min(b.len());
        self.drained.borrow_mut().extend(b.drain(..n));
        true
    }

    fn set_transport_protocol(&self, proto: &[u8]) {
        set_text(&self.transport, proto);
    }

    fn set_server_name(&self, name: &[u8]) {
        set_text(&self.sni, name);
    }

    fn set_application_protocols(&self, protos: &[&[u8]]) {
        if protos.is_empty() {
            return;
        }
        *self.alpn.borrow_mut() = protos
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
    }

    fn set_metadata(&self, namespace: &[u8], key: &[u8], value: &[u8]) {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut m = self.metadata.borrow_mut();
        m.retain(|(n, k, _)| n.as_bytes() != namespace || k.as_bytes() != key);
        m.push((s(namespace), s(key), s(value)));
    }

    fn set_metadata_number(&self, namespace: &[u8], key: &[u8], value: f64) {
        self.set_metadata(namespace, key, value.to_string().as_bytes());
    }

    fn address(&self, which: SockAddr, out: &mut [u8]) -> Option<(usize, u32)> {
        let a = match which {
            SockAddr::Remote => self.remote.borrow(),
            SockAddr::DirectRemote => self.direct_remote.borrow(),
            SockAddr::Local => self.local.borrow(),
        };
        (!a.0.is_empty()).then(|| (copy_str(&a.0, out), a.1))
    }

    fn set_remote_address(&self, ip: &[u8], port: u32, v6: bool) -> bool {
        let Some(ip) = parse_ip(ip, v6).filter(|_| port <= 65535) else {
            return false;
        };
        *self.remote.borrow_mut() = (ip, port);
        true
    }

    fn restore_local_address(&self, ip: &[u8], port: u32, v6: bool) -> bool {
        let Some(ip) = parse_ip(ip, v6).filter(|_| port <= 65535) else {
            return false;
        };
        *self.local.borrow_mut() = (ip, port);
        self.local_restored.set(true);
        true
    }

    fn metric(&self, op: MetricOp, id: usize, value: u64) -> u32 {
        sim_shared::apply_metric(&self.metrics, op, id, value)
    }

    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool {
        sim_shared::set_filter_state(&self.filter_state, key, value)
    }

    fn filter_state(&self, key: &[u8], out: &mut [u8]) -> Option<usize> {
        sim_shared::filter_state(&self.filter_state, key, out)
    }

    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.callouts.start(cluster, headers, body, timeout_ms)
    }

    fn write(&self, data: &[u8]) -> Option<usize> {
        // As Envoy: nothing to write is an error; a closed socket takes nothing.
        if data.is_empty() || self.closed.borrow().is_some() {
            return None;
        }
        self.written.borrow_mut().extend_from_slice(data);
        Some(data.len())
    }

    fn fingerprint(&self, ja4: bool, out: &mut [u8]) -> Option<usize> {
        let h = if ja4 { &self.ja4 } else { &self.ja3 }.borrow();
        (!h.is_empty()).then(|| {
            copy_str(&h, out);
            h.len()
        })
    }

    fn set_socket_option(&self, level: i64, name: i64, value: i64) -> bool {
        let mut o = self.options.borrow_mut();
        o.retain(|&(l, n, _)| (l, n) != (level, name));
        o.push((level, name, value));
        true
    }

    fn socket_option(&self, level: i64, name: i64) -> Option<i64> {
        self.options
            .borrow()
            .iter()
            .find(|&&(l, n, _)| (l, n) == (level, name))
            .map(|&(_, _, v)| v)
    }

    fn continue_chain(&self, success: bool) {
        self.continued.borrow_mut().push(success);
    }

    fn close(&self, details: &[u8]) {
        let mut c = self.closed.borrow_mut();
        if c.is_none() {
            *c = Some(String::from_utf8_lossy(details).into_owned());
        }
    }

    fn new_scheduler(&self) -> Option<Committer> {
        unsafe fn commit(ptr: *mut core::ffi::c_void, _event: u64) {
            // SAFETY: `ptr` is the `Arc<AtomicU32>` leaked below, alive until `release`.
            unsafe { &*(ptr as *const AtomicU32) }.fetch_add(1, Ordering::Relaxed);
        }
        unsafe fn release(ptr: *mut core::ffi::c_void) {
            // SAFETY: `ptr` came from `Arc::into_raw` below; released once.
            drop(unsafe { Arc::from_raw(ptr as *const AtomicU32) });
        }
        let ptr = Arc::into_raw(self.scheduled.clone()) as *mut core::ffi::c_void;
        // SAFETY: `commit` only touches an atomic kept alive by the reference `ptr` owns, from
        // any thread; `release` gives that reference back once.
        Some(unsafe { Committer::new(ptr, commit, release) })
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

/// A listener filter config's simulated host while it loads.
#[derive(Default)]
pub(crate) struct SimListenerConfigHost {
    /// Names of the metrics defined, in order (the index is the id).
    pub(crate) metrics: RefCell<Vec<String>>,
    /// Log lines written while loading.
    pub(crate) logs: RefCell<Vec<(u32, String)>>,
}

impl ConfigHost for SimListenerConfigHost {
    fn define_metric(&self, _kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        if !labels.is_empty() {
            return Err(crate::abi::metrics_result::INVALID_LABELS);
        }
        let mut m = self.metrics.borrow_mut();
        m.push(name.to_string());
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

// As Envoy's listener configs: no outbound calls while loading.
crate::host::no_outbound!(SimListenerConfigHost);
