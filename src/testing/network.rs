//! Simulated connections for network filters: drive a registered `r.network(..)` filter hook
//! by hook, as Envoy would, and see what reached each side.

use crate::Registry;
use crate::abi::network::DataStatus;
use crate::api::config::ConfigHandle;
use crate::filter::network::{ConnEvent, NetConfigHooks, SimSlot};
use crate::host::network::sim::{SimConn, SimNetConfigHost};
use crate::host::network::{Close, MetaValue, Side};
use std::sync::atomic::Ordering;

/// A network filter loaded from a registry, as Envoy loads it for a listener.
///
/// ```
/// use jisr::network::Connection;
/// use jisr::testing::TestNetworkFilter;
/// use jisr::Registry;
///
/// async fn shout(mut conn: Connection<'_>) {
///     let mut buf = [0u8; 64];
///     let n = conn.read(&mut buf).await;
///     buf[..n].make_ascii_uppercase();
///     conn.send_upstream(&buf[..n]);
/// }
/// fn register(r: &mut Registry) {
///     r.network("shout").handle(shout);
/// }
///
/// let f = TestNetworkFilter::new(register, "shout", b"").unwrap();
/// let mut c = f.connect();
/// c.client_sends(b"hello");
/// c.client_sends(b" world"); // the handler returned: this flows on untouched
/// assert_eq!(c.upstream(), b"HELLO world");
/// ```
pub struct TestNetworkFilter {
    config: Box<dyn NetConfigHooks>,
    load_logs: Vec<(crate::Level, String)>,
    metric_names: Vec<String>,
    metrics: std::rc::Rc<std::cell::RefCell<Vec<u64>>>,
}

fn level(l: u32) -> crate::Level {
    match l {
        0 => crate::Level::Trace,
        1 => crate::Level::Debug,
        2 => crate::Level::Info,
        3 => crate::Level::Warn,
        _ => crate::Level::Error,
    }
}

impl TestNetworkFilter {
    /// Loads network filter `name` from `register` with `config` as its `filter_config`; an
    /// error is the message Envoy's log would show (and the config would be refused).
    pub fn new(
        register: fn(&mut Registry),
        name: &str,
        config: &[u8],
    ) -> Result<TestNetworkFilter, String> {
        let mut r = Registry::default();
        register(&mut r);
        let Some(build) = r.network_build(name) else {
            return Err(format!(
                "jisr: no network filter named '{name}' in this module"
            ));
        };
        let host = SimNetConfigHost::default();
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name,
            bytes: config,
            host: &host,
            background: None,
        };
        let config =
            build(&mut handle).map_err(|e| format!("jisr: network filter '{name}': {e}"))?;
        let load_logs = host
            .logs
            .take()
            .into_iter()
            .map(|(l, s)| (level(l), s))
            .collect();
        let metric_names = host.metrics.take();
        let metrics = std::rc::Rc::new(std::cell::RefCell::new(vec![0; metric_names.len()]));
        Ok(TestNetworkFilter {
            config,
            load_logs,
            metric_names,
            metrics,
        })
    }

    /// The value of metric `name` defined by the config (counters and gauges as Envoy would
    /// show them; a histogram's last recorded value), summed over this filter's connections.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let i = self.metric_names.iter().position(|n| n == name)?;
        self.metrics.borrow().get(i).copied()
    }

    /// Log lines written while the config loaded.
    pub fn load_logs(&self) -> &[(crate::Level, String)] {
        &self.load_logs
    }

    /// Accepts a new connection: the handler starts (Envoy's `on_new_connection`).
    pub fn connect(&self) -> TestConnection<'_> {
        let host = SimConn::default();
        *host.remote.borrow_mut() = ("127.0.0.1".to_string(), 40000);
        *host.local.borrow_mut() = ("127.0.0.1".to_string(), 10000);
        host.id.set(1);
        self.start(Hosted::Owned(Box::new(host)))
    }

    /// Accepts a new connection on `socket`, reused from earlier connections: its buffers
    /// keep their capacity, so a warm connection allocates nothing in the simulator (for
    /// allocation tests and benchmarks). The previous connection on it must be gone.
    ///
    /// ```
    /// use jisr::network::Connection;
    /// use jisr::testing::{Socket, TestNetworkFilter};
    ///
    /// async fn pass(_conn: Connection<'_>) {}
    /// fn register(r: &mut jisr::Registry) { r.network("pass").handle(pass); }
    ///
    /// let f = TestNetworkFilter::new(register, "pass", b"").unwrap();
    /// let socket = Socket::default();
    /// for _ in 0..3 {
    ///     let mut c = f.connect_on(&socket);
    ///     c.client_sends(b"x");
    ///     assert_eq!(c.take_upstream(), b"x");
    /// }
    /// ```
    pub fn connect_on<'a>(&'a self, socket: &'a Socket) -> TestConnection<'a> {
        let h = &socket.0;
        h.read_buf.borrow_mut().clear();
        h.write_buf.borrow_mut().clear();
        h.upstream.borrow_mut().clear();
        h.client.borrow_mut().clear();
        h.upstream_end.set(false);
        h.client_end.set(false);
        *h.closed.borrow_mut() = None;
        h.close_raised.set(false);
        h.socket_options.borrow_mut().clear();
        h.metadata_values.borrow_mut().clear();
        h.upstream_host.replace(None);
        h.buffer_limit.set(None);
        h.read_disabled.set(false);
        h.scheduled.store(0, Ordering::Relaxed);
        self.start(Hosted::Borrowed(h))
    }

    fn start<'a>(&'a self, host: Hosted<'a>) -> TestConnection<'a> {
        // The config's metrics, shared by its connections (a reference count, no copy).
        host.metrics.replace(self.metrics.clone());
        let slot = SimSlot::new(&*self.config).expect("the config refused the connection");
        let mut c = TestConnection { host, slot };
        c.hook(|s, h| {
            s.new_connection(h);
        });
        c
    }
}

/// A simulated socket that connections can reuse (see [`TestNetworkFilter::connect_on`]).
#[derive(Default)]
pub struct Socket(SimConn);

impl Socket {
    /// Makes callouts to `cluster` fail to start on connections of this socket (as for a
    /// cluster Envoy does not know), from their first hook on.
    pub fn set_unknown_cluster(&self, cluster: &str) {
        self.0
            .callouts
            .unknown_clusters
            .borrow_mut()
            .push(cluster.to_string());
    }
}

enum Hosted<'a> {
    Owned(Box<SimConn>),
    Borrowed(&'a SimConn),
}

impl core::ops::Deref for Hosted<'_> {
    type Target = SimConn;
    fn deref(&self) -> &SimConn {
        match self {
            Hosted::Owned(b) => b,
            Hosted::Borrowed(r) => r,
        }
    }
}

/// One simulated TCP connection through the filter (from [`TestNetworkFilter::connect`]).
/// Dropping it destroys the filter as Envoy does when the connection goes away.
pub struct TestConnection<'f> {
    // Declared before the host: the filter is destroyed first.
    slot: SimSlot<'f>,
    host: Hosted<'f>,
}

impl TestConnection<'_> {
    fn hook<R>(
        &mut self,
        f: impl FnOnce(&dyn crate::filter::network::ConnHooks, &SimConn) -> R,
    ) -> R {
        let host: &SimConn = &self.host;
        // A close the filter asks for raises the close event inside the call (the host does).
        self.slot.hook(host, |s| f(s, host))
    }

    /// The client sends `bytes` (one read hook). What the filter lets through reaches
    /// [`upstream`](TestConnection::upstream).
    pub fn client_sends(&mut self, bytes: &[u8]) {
        self.read(bytes, false);
    }

    /// The client half-closes (a read hook with end of stream).
    pub fn client_ends(&mut self) {
        self.read(&[], true);
    }

    fn read(&mut self, bytes: &[u8], end: bool) {
        if self.host.close_raised.get() {
            return;
        }
        self.host.read_buf.borrow_mut().extend_from_slice(bytes);
        let s = self.hook(|c, h| c.data(h, Side::Read, end));
        if s == DataStatus::Continue {
            // The proxy after the filter takes the buffer.
            crate::host::network::ConnHost::continue_reading(&*self.host);
            if end {
                self.host.upstream_end.set(true);
            }
        }
    }

    /// Upstream sends `bytes` toward the client (one write hook). What the filter lets
    /// through reaches [`client`](TestConnection::client); bytes it left in the buffer come
    /// again with the next write, as in Envoy.
    pub fn upstream_sends(&mut self, bytes: &[u8]) {
        self.write(bytes, false);
    }

    /// Upstream half-closes.
    pub fn upstream_ends(&mut self) {
        self.write(&[], true);
    }

    fn write(&mut self, bytes: &[u8], end: bool) {
        if self.host.close_raised.get() {
            return;
        }
        self.host.write_buf.borrow_mut().extend_from_slice(bytes);
        let s = self.hook(|c, h| c.data(h, Side::Write, end));
        if s == DataStatus::Continue {
            let mut w = self.host.write_buf.borrow_mut();
            self.host.client.borrow_mut().extend_from_slice(&w);
            w.clear();
            if end {
                self.host.client_end.set(true);
            }
        }
    }

    /// The client closes the connection (Envoy's remote-close event).
    pub fn client_closes(&mut self) {
        if !self.host.close_raised.replace(true) {
            self.hook(|c, h| c.event(h, ConnEvent::RemoteClose));
        }
    }

    /// Delivers the scheduler events committed so far (wakes from outside a hook); returns
    /// how many.
    pub fn run_scheduled(&mut self) -> usize {
        let mut n = 0;
        while self.host.scheduled.swap(0, Ordering::AcqRel) > 0 {
            n += 1;
            self.hook(|c, h| c.scheduled(h));
        }
        n
    }

    /// Everything that reached upstream so far.
    pub fn upstream(&self) -> Vec<u8> {
        self.host.upstream.borrow().clone()
    }

    /// Takes what reached upstream so far (the next call sees only newer bytes).
    pub fn take_upstream(&self) -> Vec<u8> {
        core::mem::take(&mut *self.host.upstream.borrow_mut())
    }

    /// How many bytes reached upstream so far (no copy).
    pub fn upstream_len(&self) -> usize {
        self.host.upstream.borrow().len()
    }

    /// How many bytes reached the client so far (no copy).
    pub fn client_len(&self) -> usize {
        self.host.client.borrow().len()
    }

    /// Whether the upstream direction was half-closed.
    pub fn upstream_ended(&self) -> bool {
        self.host.upstream_end.get()
    }

    /// Everything that reached the client so far.
    pub fn client(&self) -> Vec<u8> {
        self.host.client.borrow().clone()
    }

    /// Takes what reached the client so far.
    pub fn take_client(&self) -> Vec<u8> {
        core::mem::take(&mut *self.host.client.borrow_mut())
    }

    /// Whether the client direction was half-closed.
    pub fn client_ended(&self) -> bool {
        self.host.client_end.get()
    }

    /// Client bytes still held in Envoy's read buffer (not read, not passed).
    pub fn held(&self) -> usize {
        self.host.read_buf.borrow().len()
    }

    /// The close details, if the filter closed the connection.
    pub fn closed(&self) -> Option<String> {
        self.host.closed.borrow().as_ref().map(|(_, d)| d.clone())
    }

    /// Whether the filter reset the connection (rather than closing it after a flush).
    pub fn was_reset(&self) -> bool {
        matches!(*self.host.closed.borrow(), Some((Close::Reset, _)))
    }

    /// Whether the filter stopped reading from the client.
    pub fn reading_disabled(&self) -> bool {
        self.host.read_disabled.get()
    }

    /// A dynamic metadata string the filter set.
    pub fn metadata(&self, namespace: &str, key: &str) -> Option<String> {
        self.host
            .metadata
            .borrow()
            .iter()
            .find(|(n, k, _)| n == namespace && k == key)
            .map(|(_, _, v)| v.clone())
    }

    /// Log lines the filter wrote on this connection.
    pub fn logs(&self) -> Vec<(crate::Level, String)> {
        self.host
            .logs
            .borrow()
            .iter()
            .map(|(l, s)| (level(*l), s.clone()))
            .collect()
    }

    /// Sets the client's address as Envoy would report it (before the handler asks).
    pub fn set_peer(&self, ip: &str, port: u32) {
        *self.host.remote.borrow_mut() = (ip.to_string(), port);
    }

    /// The callouts the filter started on this connection, in order.
    pub fn callouts(&self) -> Vec<crate::testing::SimCallout> {
        self.host.callouts.started.borrow().clone()
    }

    /// Makes callouts to `cluster` fail to start (as for a cluster Envoy does not know).
    pub fn set_unknown_cluster(&self, cluster: &str) {
        self.host
            .callouts
            .unknown_clusters
            .borrow_mut()
            .push(cluster.to_string());
    }

    /// Completes callout `id` with a response (as Envoy's callout-done hook would).
    pub fn complete_callout(
        &mut self,
        id: u64,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        crate::host::sim_shared::with_callout_response(status, headers, body, |hs, cs| {
            self.hook(|c, h| c.callout_done(h, id, crate::abi::callout_result::SUCCESS, hs, cs))
        });
    }

    /// Fails callout `id` as a reset stream.
    pub fn fail_callout(&mut self, id: u64) {
        self.hook(|c, h| {
            c.callout_done(
                h,
                id,
                crate::abi::callout_result::RESET,
                crate::host::HeaderArray::EMPTY,
                crate::host::ChunkArray::EMPTY,
            )
        });
    }

    /// The bytes filter-state object the filter set under `key`.
    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        self.host
            .filter_state
            .borrow()
            .iter()
            .find(|(k, _)| k.as_slice() == key.as_bytes())
            .map(|(_, v)| v.clone())
    }

    /// Sets the client's TLS certificate: DNS SANs, URI SANs and subject.
    pub fn set_peer_certificate(&self, dns_sans: &[&str], uri_sans: &[&str], subject: &str) {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        *self.host.peer_cert.borrow_mut() = (s(dns_sans), s(uri_sans), Some(subject.to_string()));
        self.host.tls.set(true);
    }

    /// How many times the filter asked for STARTTLS: upstream, downstream.
    pub fn tls_started(&self) -> (u32, u32) {
        self.host.tls_started.get()
    }

    /// Sets the TLS server name the client asked for.
    pub fn set_server_name(&self, name: &str) {
        *self.host.sni.borrow_mut() = Some(name.to_string());
        self.host.tls.set(true);
    }

    /// Sets the socket's own peer, as after a PROXY protocol header (by default it is the
    /// client's address).
    pub fn set_direct_peer(&self, ip: &str, port: u32) {
        *self.host.direct_remote.borrow_mut() = Some((ip.to_string(), port));
    }

    /// Makes the proxy after the filter pick an upstream host (as `tcp_proxy` does when it
    /// connects).
    pub fn set_upstream_host(&self, ip: &str, port: u32, hostname: &str, cluster: &str) {
        *self.host.upstream_host.borrow_mut() = Some((
            ip.to_string(),
            port,
            hostname.to_string(),
            cluster.to_string(),
        ));
    }

    /// The upstream socket options the filter added, in order: level, name, and the integer
    /// value (`Ok`) or bytes (`Err`).
    pub fn upstream_socket_options(&self) -> Vec<(i64, i64, Result<i64, Vec<u8>>)> {
        self.host.socket_options.borrow().clone()
    }

    /// The connection's buffer limit as the filter left it (1 MiB unless it set one).
    pub fn buffer_limit(&self) -> u32 {
        crate::host::network::ConnHost::buffer_limit(&*self.host)
    }

    /// Sets the worker index the connection runs on.
    pub fn set_worker_index(&self, index: u32) {
        self.host.worker.set(index);
    }

    /// The number the filter set under `namespace`/`key` of the dynamic metadata.
    pub fn metadata_number(&self, namespace: &str, key: &str) -> Option<f64> {
        match self.typed_metadata(namespace, key)? {
            MetaValue::Number(n) => Some(n),
            MetaValue::Bool(_) => None,
        }
    }

    /// The bool the filter set under `namespace`/`key` of the dynamic metadata.
    pub fn metadata_bool(&self, namespace: &str, key: &str) -> Option<bool> {
        match self.typed_metadata(namespace, key)? {
            MetaValue::Bool(b) => Some(b),
            MetaValue::Number(_) => None,
        }
    }

    fn typed_metadata(&self, namespace: &str, key: &str) -> Option<MetaValue> {
        self.host
            .metadata_values
            .borrow()
            .iter()
            .find(|(n, k, _)| n == namespace && k == key)
            .map(|(_, _, v)| *v)
    }
}
