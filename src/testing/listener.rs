//! Simulated sockets for listener filters: drive a registered `r.listener(..)` filter hook by
//! hook, as Envoy would, and see what it decided.

use crate::Registry;
use crate::abi::listener::FilterStatus;
use crate::api::config::ConfigHandle;
use crate::filter::listener::{ListenerConfigHooks, SimSlot};
use crate::host::listener::SocketHost;
use crate::host::listener::sim::{SimListenerConfigHost, SimSocket};
use std::sync::atomic::Ordering;

/// A listener filter loaded from a registry, as Envoy loads it for a listener.
///
/// ```
/// use jisr::listener::{Peeked, Socket};
/// use jisr::testing::{SocketOutcome, TestListenerFilter};
/// use jisr::Registry;
///
/// async fn tls_or_not(mut s: Socket<'_>) {
///     let mut first = [0u8; 1];
///     if let Peeked::More(1) | Peeked::End(1) = s.peek(&mut first).await {
///         s.set_transport_protocol(if first[0] == 0x16 { "tls" } else { "raw_buffer" });
///     }
/// }
/// fn register(r: &mut Registry) {
///     r.listener("sniff").max_read_bytes(1).handle(tls_or_not);
/// }
///
/// let f = TestListenerFilter::new(register, "sniff", b"").unwrap();
/// let mut s = f.accept();
/// assert_eq!(s.outcome(), SocketOutcome::Waiting);
/// s.client_sends(&[0x16, 0x03, 0x01]);
/// assert_eq!(s.outcome(), SocketOutcome::WentOn);
/// assert_eq!(s.transport_protocol().as_deref(), Some("tls"));
/// ```
pub struct TestListenerFilter {
    config: Box<dyn ListenerConfigHooks>,
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

impl TestListenerFilter {
    /// Loads listener filter `name` from `register` with `config` as its `filter_config`; an
    /// error is the message Envoy's log would show (and the config would be refused).
    pub fn new(
        register: fn(&mut Registry),
        name: &str,
        config: &[u8],
    ) -> Result<TestListenerFilter, String> {
        let mut r = Registry::default();
        register(&mut r);
        let Some(build) = r.listener_build(name) else {
            return Err(format!(
                "jisr: no listener filter named '{name}' in this module"
            ));
        };
        let host = SimListenerConfigHost::default();
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name,
            bytes: config,
            host: &host,
            background: None,
        };
        let config =
            build(&mut handle).map_err(|e| format!("jisr: listener filter '{name}': {e}"))?;
        let load_logs = host
            .logs
            .take()
            .into_iter()
            .map(|(l, s)| (level(l), s))
            .collect();
        let metric_names = host.metrics.take();
        let metrics = std::rc::Rc::new(std::cell::RefCell::new(vec![0; metric_names.len()]));
        Ok(TestListenerFilter {
            config,
            load_logs,
            metric_names,
            metrics,
        })
    }

    /// The value of metric `name` defined by the config (counters and gauges as Envoy would
    /// show them; a histogram's last recorded value), summed over this filter's sockets.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let i = self.metric_names.iter().position(|n| n == name)?;
        self.metrics.borrow().get(i).copied()
    }

    /// Log lines written while the config loaded.
    pub fn load_logs(&self) -> &[(crate::Level, String)] {
        &self.load_logs
    }

    /// Accepts a socket from `127.0.0.1:40000` on `127.0.0.1:10000`: the handler starts
    /// (Envoy's `on_accept`).
    pub fn accept(&self) -> TestSocket<'_> {
        self.accept_from("127.0.0.1", 40000)
    }

    /// Accepts a socket from `ip:port` (on `127.0.0.1:10000`).
    pub fn accept_from(&self, ip: &str, port: u32) -> TestSocket<'_> {
        let host = SimSocket::default();
        *host.remote.borrow_mut() = (ip.to_string(), port);
        *host.direct_remote.borrow_mut() = (ip.to_string(), port);
        *host.local.borrow_mut() = ("127.0.0.1".to_string(), 10000);
        self.start(Hosted::Owned(Box::new(host)))
    }

    /// Accepts a socket on `socket`, reused from earlier sockets: its buffers keep their
    /// capacity, so a warm socket allocates nothing in the simulator (for allocation tests and
    /// benchmarks). The previous socket on it must be gone; what it set is cleared.
    ///
    /// ```
    /// use jisr::listener::{Peeked, Socket};
    /// use jisr::testing::{AcceptedSocket, SocketOutcome, TestListenerFilter};
    ///
    /// async fn sniff(mut s: Socket<'_>) {
    ///     let mut first = [0u8; 1];
    ///     if s.peek(&mut first).await.len() == 1 && first[0] == 0x16 {
    ///         s.set_transport_protocol("tls");
    ///     }
    /// }
    /// fn register(r: &mut jisr::Registry) { r.listener("sniff").max_read_bytes(1).handle(sniff); }
    ///
    /// let f = TestListenerFilter::new(register, "sniff", b"").unwrap();
    /// let socket = AcceptedSocket::default();
    /// for _ in 0..3 {
    ///     let mut s = f.accept_on(&socket);
    ///     s.client_sends(&[0x16]);
    ///     assert_eq!(s.outcome(), SocketOutcome::WentOn);
    ///     assert_eq!(s.transport_protocol().as_deref(), Some("tls"));
    /// }
    /// ```
    pub fn accept_on<'a>(&'a self, socket: &'a AcceptedSocket) -> TestSocket<'a> {
        let h = &socket.0;
        h.bytes.borrow_mut().clear();
        h.peek_limit.set(0);
        h.in_data.set(false);
        h.drained.borrow_mut().clear();
        h.transport.borrow_mut().clear();
        h.sni.borrow_mut().clear();
        h.alpn.borrow_mut().clear();
        h.metadata.borrow_mut().clear();
        h.local_restored.set(false);
        h.continued.borrow_mut().clear();
        *h.closed.borrow_mut() = None;
        h.scheduled.store(0, Ordering::Relaxed);
        h.filter_state.borrow_mut().clear();
        h.callouts.started.borrow_mut().clear();
        h.written.borrow_mut().clear();
        h.options.borrow_mut().clear();
        // Addresses: the defaults of `accept`, written into the buffers they already have.
        for (a, ip, port) in [
            (&h.remote, "127.0.0.1", 40000),
            (&h.direct_remote, "127.0.0.1", 40000),
            (&h.local, "127.0.0.1", 10000),
        ] {
            let mut a = a.borrow_mut();
            a.0.clear();
            a.0.push_str(ip);
            a.1 = port;
        }
        self.start(Hosted::Borrowed(h))
    }

    fn start<'a>(&'a self, host: Hosted<'a>) -> TestSocket<'a> {
        // The config's metrics, shared by its sockets (a reference count, no copy).
        host.metrics.replace(self.metrics.clone());
        let slot = SimSlot::new(&*self.config).expect("the config refused the socket");
        let mut s = TestSocket {
            slot,
            host,
            outcome: SocketOutcome::Waiting,
        };
        let st = s.slot.hook(|h| h.accept(&*s.host));
        s.after_status(st);
        s
    }
}

/// A simulated accepted socket that [`TestListenerFilter::accept_on`] can reuse.
#[derive(Default)]
pub struct AcceptedSocket(SimSocket);

impl AcceptedSocket {
    /// Gives sockets accepted on this one the TLS fingerprints `tls_inspector` would have
    /// set (JA3 and JA4 hashes; empty: none), from their first hook on.
    ///
    /// ```
    /// use jisr::listener::Socket;
    /// use jisr::testing::{AcceptedSocket, SocketOutcome, TestListenerFilter};
    ///
    /// async fn deny_listed(mut s: Socket<'_>) {
    ///     let mut buf = [0u8; 64];
    ///     if s.ja3_hash(&mut buf) == Some("e7d705a3286e19ea42f587b344ee6865") {
    ///         s.close("ja3_denied");
    ///     }
    /// }
    /// fn register(r: &mut jisr::Registry) { r.listener("ja3").handle(deny_listed); }
    ///
    /// let f = TestListenerFilter::new(register, "ja3", b"").unwrap();
    /// let socket = AcceptedSocket::default();
    /// socket.set_tls_fingerprints("e7d705a3286e19ea42f587b344ee6865", "");
    /// assert_eq!(f.accept_on(&socket).outcome(), SocketOutcome::Closed("ja3_denied".into()));
    /// socket.set_tls_fingerprints("", "");
    /// assert_eq!(f.accept_on(&socket).outcome(), SocketOutcome::WentOn);
    /// ```
    pub fn set_tls_fingerprints(&self, ja3: &str, ja4: &str) {
        for (slot, v) in [(&self.0.ja3, ja3), (&self.0.ja4, ja4)] {
            let mut slot = slot.borrow_mut();
            slot.clear();
            slot.push_str(v);
        }
    }

    /// Makes callouts to `cluster` fail to start on sockets accepted on this one (as for a
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
    Owned(Box<SimSocket>),
    Borrowed(&'a SimSocket),
}

impl core::ops::Deref for Hosted<'_> {
    type Target = SimSocket;
    fn deref(&self) -> &SimSocket {
        match self {
            Hosted::Owned(b) => b,
            Hosted::Borrowed(r) => r,
        }
    }
}

/// Where a simulated socket stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketOutcome {
    /// The filter holds the socket (waiting for bytes or a wake).
    Waiting,
    /// The socket went on to the next filter and filter-chain matching.
    WentOn,
    /// The socket was closed, with these details (empty when none were given).
    Closed(String),
}

/// One simulated accepted socket through the filter (from [`TestListenerFilter::accept`]).
/// Dropping it destroys the filter as Envoy does.
pub struct TestSocket<'f> {
    // Declared before the host: the filter is destroyed first.
    slot: SimSlot<'f>,
    host: Hosted<'f>,
    outcome: SocketOutcome,
}

impl TestSocket<'_> {
    /// Applies what Envoy does with a hook's status.
    fn after_status(&mut self, st: FilterStatus) {
        self.settle();
        if self.outcome != SocketOutcome::Waiting {
            return;
        }
        if let Some(d) = self.host.closed.borrow().clone() {
            // Envoy sees the closed socket after `StopIteration`.
            self.outcome = SocketOutcome::Closed(d);
            return;
        }
        if st == FilterStatus::Continue {
            self.outcome = SocketOutcome::WentOn;
        }
    }

    /// Applies the `continue_filter_chain` calls made.
    fn settle(&mut self) {
        if self.outcome != SocketOutcome::Waiting {
            return;
        }
        let first = self.host.continued.borrow().first().copied();
        match first {
            Some(true) => self.outcome = SocketOutcome::WentOn,
            Some(false) => {
                let d = self.host.closed.borrow().clone().unwrap_or_default();
                self.outcome = SocketOutcome::Closed(d);
            }
            None => {}
        }
    }

    /// The client sends `bytes`. While the filter holds the socket and wants bytes, Envoy
    /// peeks (up to the filter's max read bytes) and calls `on_data`.
    pub fn client_sends(&mut self, bytes: &[u8]) {
        self.host.bytes.borrow_mut().extend_from_slice(bytes);
        if self.outcome != SocketOutcome::Waiting {
            return;
        }
        let max = self.slot.hook(|h| h.max_read_bytes());
        if max == 0 || self.host.bytes.borrow().is_empty() {
            return;
        }
        self.host.peek_limit.set(max);
        self.host.in_data.set(true);
        let st = self.slot.hook(|h| h.data(&*self.host));
        self.host.in_data.set(false);
        self.after_status(st);
    }

    /// The client closes the socket while the filter holds it (Envoy's `on_close`; the socket
    /// is then dropped).
    pub fn client_closes(&mut self) {
        if self.outcome != SocketOutcome::Waiting {
            return;
        }
        self.slot.hook(|h| h.peer_closed());
        self.outcome = SocketOutcome::Closed(String::new());
    }

    /// Delivers the scheduler events committed so far (wakes from outside a hook); returns
    /// how many.
    pub fn run_scheduled(&mut self) -> usize {
        let mut n = 0;
        while self.host.scheduled.swap(0, Ordering::AcqRel) > 0 {
            n += 1;
            self.slot.hook(|h| h.scheduled(&*self.host));
            self.settle();
        }
        n
    }

    /// Where the socket stands.
    pub fn outcome(&self) -> SocketOutcome {
        self.outcome.clone()
    }

    /// The server name (SNI) the filter set.
    pub fn server_name(&self) -> Option<String> {
        Some(self.host.sni.borrow().clone()).filter(|s| !s.is_empty())
    }

    /// Whether the filter set the server name `name` (no allocation, for allocation tests).
    pub fn server_name_is(&self, name: &str) -> bool {
        *self.host.sni.borrow() == name
    }

    /// The application protocols (ALPN) the filter set.
    pub fn application_protocols(&self) -> Vec<String> {
        self.host.alpn.borrow().clone()
    }

    /// The transport protocol the filter set.
    pub fn transport_protocol(&self) -> Option<String> {
        Some(self.host.transport.borrow().clone()).filter(|s| !s.is_empty())
    }

    /// A dynamic metadata value the filter set (numbers as text).
    pub fn metadata(&self, namespace: &str, key: &str) -> Option<String> {
        self.host
            .metadata
            .borrow()
            .iter()
            .find(|(n, k, _)| n == namespace && k == key)
            .map(|(_, _, v)| v.clone())
    }

    /// The client's address as the filter left it (`ip`, port).
    pub fn peer(&self) -> (String, u32) {
        self.host.remote.borrow().clone()
    }

    /// The local address as the filter left it, and whether it was restored.
    pub fn local(&self) -> (String, u32, bool) {
        let (ip, port) = self.host.local.borrow().clone();
        (ip, port, self.host.local_restored.get())
    }

    /// Bytes the filter drained from the socket (the connection never sees them).
    pub fn drained(&self) -> Vec<u8> {
        self.host.drained.borrow().clone()
    }

    /// Bytes the filter wrote to the client ([`Socket::write`](crate::listener::Socket::write)).
    pub fn written(&self) -> Vec<u8> {
        self.host.written.borrow().clone()
    }

    /// The integer socket option the filter set at `level`/`name`, if any.
    pub fn socket_option(&self, level: i64, name: i64) -> Option<i64> {
        self.host.socket_option(level, name)
    }

    /// Bytes still in the socket (what the connection would read first).
    pub fn remaining(&self) -> Vec<u8> {
        self.host.bytes.borrow().clone()
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

    /// Sets a bytes filter-state object before the filter reads it (as an earlier listener
    /// filter would have).
    pub fn set_filter_state(&self, key: &str, value: &[u8]) {
        crate::host::sim_shared::set_filter_state(&self.host.filter_state, key.as_bytes(), value);
    }

    /// The callouts the filter started on this socket, in order.
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

    /// Completes callout `id` with a response (as Envoy's callout-done hook would). Envoy
    /// calls the hook while its filter lives, even after the socket went on or closed.
    pub fn complete_callout(
        &mut self,
        id: u64,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        crate::host::sim_shared::with_callout_response(status, headers, body, |hs, cs| {
            self.callout_done(id, crate::abi::callout_result::SUCCESS, hs, cs)
        });
    }

    /// Fails callout `id` as a reset stream.
    pub fn fail_callout(&mut self, id: u64) {
        self.callout_done(
            id,
            crate::abi::callout_result::RESET,
            crate::host::HeaderArray::EMPTY,
            crate::host::ChunkArray::EMPTY,
        );
    }

    fn callout_done(
        &mut self,
        id: u64,
        result: u32,
        headers: crate::host::HeaderArray<'_>,
        chunks: crate::host::ChunkArray<'_>,
    ) {
        let host: &SimSocket = &self.host;
        self.slot
            .hook(|h| h.callout_done(host, id, result, headers, chunks));
        self.settle();
    }

    /// Log lines the filter wrote on this socket.
    pub fn logs(&self) -> Vec<(crate::Level, String)> {
        self.host
            .logs
            .borrow()
            .iter()
            .map(|(l, s)| (level(*l), s.clone()))
            .collect()
    }
}
