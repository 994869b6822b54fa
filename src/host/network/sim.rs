//! A simulated connection host, for `jisr::testing`: buffers and records in memory.

use super::{Addr, Close, Committer, ConnHost, MetaValue, Side, SockOpt, UpstreamText};
use crate::host::sim_shared::{self, SimCallouts, SimFilterState, SimMetrics};
use crate::host::{ConfigHost, MetricKind, MetricOp};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// An upstream socket option a filter added: level, name, and the integer value (`Ok`) or
/// bytes (`Err`).
pub(crate) type SimSockOpt = (i64, i64, Result<i64, Vec<u8>>);

/// The close event of one slot, raised from inside [`ConnHost::close`].
#[derive(Clone, Copy)]
pub(crate) struct RaiseClose {
    /// The slot whose hook is running.
    pub(crate) slot: *const core::ffi::c_void,
    /// Delivers the event to it.
    ///
    /// # Safety
    /// `slot` must be the live slot that installed it, inside one of its hooks.
    pub(crate) raise: unsafe fn(*const core::ffi::c_void, &SimConn),
}

/// One simulated connection: Envoy's two buffers and what the filter did.
#[derive(Default)]
pub(crate) struct SimConn {
    /// Envoy's read buffer (client bytes not yet passed on).
    pub(crate) read_buf: RefCell<Vec<u8>>,
    /// The write buffer of the running write hook.
    pub(crate) write_buf: RefCell<Vec<u8>>,
    /// Bytes that reached the filters after this one, toward upstream.
    pub(crate) upstream: RefCell<Vec<u8>>,
    /// Whether the upstream direction was half-closed.
    pub(crate) upstream_end: Cell<bool>,
    /// Bytes that reached the client.
    pub(crate) client: RefCell<Vec<u8>>,
    /// Whether the client direction was half-closed.
    pub(crate) client_end: Cell<bool>,
    /// How and why the filter closed the connection.
    pub(crate) closed: RefCell<Option<(Close, String)>>,
    /// Whether the close event was raised (by a close, or the client's).
    pub(crate) close_raised: Cell<bool>,
    /// How a close raises the close event inside the call, as Envoy does: set by the
    /// connection's slot for the length of each of its hooks.
    pub(crate) close_event: Cell<Option<RaiseClose>>,
    /// Whether reading from the client is disabled.
    pub(crate) read_disabled: Cell<bool>,
    /// Events committed on the connection's scheduler and not yet delivered.
    pub(crate) scheduled: Arc<AtomicU32>,
    /// Log lines written.
    pub(crate) logs: RefCell<Vec<(u32, String)>>,
    /// Dynamic metadata set: namespace, key, value.
    pub(crate) metadata: RefCell<Vec<(String, String, String)>>,
    /// The client's address and port.
    pub(crate) remote: RefCell<(String, u32)>,
    /// The address and port the client connected to.
    pub(crate) local: RefCell<(String, u32)>,
    /// The SNI the client sent.
    pub(crate) sni: RefCell<Option<String>>,
    /// Whether the connection is TLS.
    pub(crate) tls: Cell<bool>,
    /// The connection's id.
    pub(crate) id: Cell<u64>,
    /// Metric values by id (counters and gauges add; histograms keep the last value).
    pub(crate) metrics: SimMetrics,
    /// Bytes filter state.
    pub(crate) filter_state: SimFilterState,
    /// The peer certificate's DNS and URI SANs, and subject.
    pub(crate) peer_cert: RefCell<(Vec<String>, Vec<String>, Option<String>)>,
    /// STARTTLS requests: upstream, downstream.
    pub(crate) tls_started: Cell<(u32, u32)>,
    /// Callouts started, and clusters that do not exist.
    pub(crate) callouts: SimCallouts,
    /// The log level (ABI number): lines below it are not written.
    pub(crate) log_level: Cell<u32>,
    /// Dynamic metadata numbers and bools: namespace, key, value.
    pub(crate) metadata_values: RefCell<Vec<(String, String, MetaValue)>>,
    /// The socket's own peer, when it differs from `remote` (PROXY protocol).
    pub(crate) direct_remote: RefCell<Option<(String, u32)>>,
    /// The upstream host picked: address, port, hostname, cluster.
    pub(crate) upstream_host: RefCell<Option<(String, u32, String, String)>>,
    /// Upstream socket options added: level, name, int value or bytes.
    pub(crate) socket_options: RefCell<Vec<SimSockOpt>>,
    /// The connection's buffer limit (`None`: Envoy's default, 1 MiB).
    pub(crate) buffer_limit: Cell<Option<u32>>,
    /// The worker's index.
    pub(crate) worker: Cell<u32>,
}

fn buf(conn: &SimConn, side: Side) -> &RefCell<Vec<u8>> {
    match side {
        Side::Read => &conn.read_buf,
        Side::Write => &conn.write_buf,
    }
}

fn copy_str(s: &str, out: &mut [u8]) -> usize {
    let n = s.len().min(out.len());
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    n
}

impl ConnHost for SimConn {
    fn len(&self, side: Side) -> usize {
        buf(self, side).borrow().len()
    }

    fn copy(&self, side: Side, out: &mut [u8]) -> usize {
        let b = buf(self, side).borrow();
        let n = b.len().min(out.len());
        out[..n].copy_from_slice(&b[..n]);
        n
    }

    fn chunks(&self, side: Side, f: &mut dyn FnMut(&[u8]) -> bool) {
        let b = buf(self, side).borrow();
        if !b.is_empty() {
            f(&b);
        }
    }

    fn drain(&self, side: Side, n: usize) {
        let mut b = buf(self, side).borrow_mut();
        let n = n.min(b.len());
        b.drain(..n);
    }

    fn inject_read(&self, data: &[u8], end: bool) {
        self.upstream.borrow_mut().extend_from_slice(data);
        if end {
            self.upstream_end.set(true);
        }
    }

    fn inject_write(&self, data: &[u8], end: bool) {
        self.client.borrow_mut().extend_from_slice(data);
        if end {
            self.client_end.set(true);
        }
    }

    /// As Envoy: the filters after this one get the read buffer (the proxy sends it on).
    fn continue_reading(&self) {
        let mut r = self.read_buf.borrow_mut();
        self.upstream.borrow_mut().extend_from_slice(&r);
        r.clear();
    }

    fn read_disable(&self, disable: bool) {
        self.read_disabled.set(disable);
    }

    /// As Envoy with nothing left to write: the socket closes at once and the close event is
    /// raised inside this call, re-entering the filter.
    fn close(&self, how: Close, details: &[u8]) {
        {
            let mut c = self.closed.borrow_mut();
            if c.is_some() {
                return;
            }
            *c = Some((how, String::from_utf8_lossy(details).into_owned()));
        }
        if self.close_raised.replace(true) {
            return;
        }
        if let Some(r) = self.close_event.get() {
            // SAFETY: `close_event` is set only by the running hook's slot, and cleared when
            // that hook returns; the host is only called from inside hooks.
            unsafe { (r.raise)(r.slot, self) }
        }
    }

    fn connection_id(&self) -> u64 {
        self.id.get()
    }

    fn address(&self, which: Addr, out: &mut [u8]) -> Option<(usize, u32)> {
        let a = match which {
            Addr::Remote => self.remote.borrow().clone(),
            Addr::Local => self.local.borrow().clone(),
            Addr::DirectRemote => self
                .direct_remote
                .borrow()
                .clone()
                .unwrap_or_else(|| self.remote.borrow().clone()),
            Addr::Upstream => {
                let u = self.upstream_host.borrow();
                let (a, p, _, _) = u.as_ref()?;
                (a.clone(), *p)
            }
        };
        (!a.0.is_empty()).then(|| (copy_str(&a.0, out), a.1))
    }

    fn server_name(&self, out: &mut [u8]) -> Option<usize> {
        self.sni.borrow().as_deref().map(|s| copy_str(s, out))
    }

    fn is_tls(&self) -> bool {
        self.tls.get()
    }

    fn set_metadata(&self, namespace: &[u8], key: &[u8], value: &[u8]) {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut m = self.metadata.borrow_mut();
        m.retain(|(n, k, _)| n.as_bytes() != namespace || k.as_bytes() != key);
        m.push((s(namespace), s(key), s(value)));
        self.metadata_values
            .borrow_mut()
            .retain(|(n, k, _)| n.as_bytes() != namespace || k.as_bytes() != key);
    }

    fn set_metadata_value(&self, namespace: &[u8], key: &[u8], value: MetaValue) {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        self.metadata
            .borrow_mut()
            .retain(|(n, k, _)| n.as_bytes() != namespace || k.as_bytes() != key);
        let mut m = self.metadata_values.borrow_mut();
        m.retain(|(n, k, _)| n.as_bytes() != namespace || k.as_bytes() != key);
        m.push((s(namespace), s(key), value));
    }

    fn metadata_str(&self, namespace: &[u8], key: &[u8], out: &mut [u8]) -> Option<usize> {
        let m = self.metadata.borrow();
        let (_, _, v) = m
            .iter()
            .find(|(n, k, _)| n.as_bytes() == namespace && k.as_bytes() == key)?;
        copy_str(v, out);
        Some(v.len())
    }

    fn metadata_value(&self, namespace: &[u8], key: &[u8], want: MetaValue) -> Option<MetaValue> {
        let m = self.metadata_values.borrow();
        let (_, _, v) = m
            .iter()
            .find(|(n, k, _)| n.as_bytes() == namespace && k.as_bytes() == key)?;
        // As Envoy: a value of another type is absent.
        match (want, *v) {
            (MetaValue::Number(_), MetaValue::Number(_))
            | (MetaValue::Bool(_), MetaValue::Bool(_)) => Some(*v),
            _ => None,
        }
    }

    fn upstream_text(&self, which: UpstreamText, out: &mut [u8]) -> Option<usize> {
        let u = self.upstream_host.borrow();
        let (_, _, host, cluster) = u.as_ref()?;
        let t = match which {
            UpstreamText::Hostname => host,
            UpstreamText::Cluster => cluster,
        };
        copy_str(t, out);
        Some(t.len())
    }

    fn set_upstream_socket_option(&self, level: i64, name: i64, value: SockOpt<'_>) {
        let v = match value {
            SockOpt::Int(i) => Ok(i),
            SockOpt::Bytes(b) => Err(b.to_vec()),
        };
        self.socket_options.borrow_mut().push((level, name, v));
    }

    fn buffer_limit(&self) -> u32 {
        self.buffer_limit.get().unwrap_or(1 << 20)
    }

    fn set_buffer_limit(&self, limit: u32) {
        self.buffer_limit.set(Some(limit));
    }

    fn worker_index(&self) -> u32 {
        self.worker.get()
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

    fn peer_sans(&self, dns: bool, f: &mut dyn FnMut(&[u8])) {
        let c = self.peer_cert.borrow();
        for s in if dns { &c.0 } else { &c.1 } {
            f(s.as_bytes());
        }
    }

    fn peer_subject(&self, out: &mut [u8]) -> Option<usize> {
        let c = self.peer_cert.borrow();
        let s = c.2.as_deref()?;
        copy_str(s, out);
        Some(s.len())
    }

    fn start_upstream_tls(&self) -> bool {
        let (u, d) = self.tls_started.get();
        self.tls_started.set((u + 1, d));
        true
    }

    fn start_downstream_tls(&self) -> Option<bool> {
        let (u, d) = self.tls_started.get();
        self.tls_started.set((u, d + 1));
        Some(true)
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

/// A network filter config's simulated host while it loads.
#[derive(Default)]
pub(crate) struct SimNetConfigHost {
    /// Names of the metrics defined, in order (the index is the id).
    pub(crate) metrics: RefCell<Vec<String>>,
    /// Log lines written while loading.
    pub(crate) logs: RefCell<Vec<(u32, String)>>,
}

impl ConfigHost for SimNetConfigHost {
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

// As Envoy's network configs: no outbound calls while loading.
crate::host::no_outbound!(SimNetConfigHost);
