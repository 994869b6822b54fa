//! The host of a listener filter: what an accepted socket's handler asks of Envoy, real
//! ([`envoy`]) or simulated (`sim`, feature `testing`).

pub(crate) mod current;
pub(crate) mod envoy;
#[cfg(feature = "testing")]
pub(crate) mod sim;

pub(crate) use crate::executor::sched::Committer;

/// Which address of the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockAddr {
    /// The peer as Envoy sees it (after any filter set it).
    Remote,
    /// The peer the socket is really connected to.
    DirectRemote,
    /// The local address (after any filter restored it).
    Local,
}

/// What a socket's handler may ask of its host, on the worker, inside a hook.
pub(crate) trait SocketHost {
    /// Replaces `out` with the bytes peeked so far (only inside `on_data`; `false` elsewhere,
    /// `out` left alone).
    fn peeked(&self, out: &mut Vec<u8>) -> bool;
    /// Consumes the first `n` peeked bytes from the socket (only inside `on_data`).
    fn drain(&self, n: usize) -> bool;
    /// Sets the transport protocol filter-chain matching sees.
    fn set_transport_protocol(&self, proto: &[u8]);
    /// Sets the server name (SNI) filter-chain matching sees.
    fn set_server_name(&self, name: &[u8]);
    /// Sets the application protocols (ALPN) filter-chain matching sees.
    fn set_application_protocols(&self, protos: &[&[u8]]);
    /// Sets a string in the connection's dynamic metadata.
    fn set_metadata(&self, namespace: &[u8], key: &[u8], value: &[u8]);
    /// Sets a number in the connection's dynamic metadata.
    fn set_metadata_number(&self, namespace: &[u8], key: &[u8], value: f64);
    /// Copies address `which` (IP text, no port) into `out`; its length and the port (`None`:
    /// not an IP address).
    fn address(&self, which: SockAddr, out: &mut [u8]) -> Option<(usize, u32)>;
    /// Overrides the peer address (e.g. from a PROXY header).
    fn set_remote_address(&self, ip: &[u8], port: u32, v6: bool) -> bool;
    /// Restores the local address (the one the client meant to reach).
    fn restore_local_address(&self, ip: &[u8], port: u32, v6: bool) -> bool;
    /// Applies a metric update (listener metrics have no labels); the ABI metrics result.
    fn metric(&self, op: crate::host::MetricOp, id: usize, value: u64) -> u32;
    /// Sets a bytes filter-state object under `key`; whether Envoy took it.
    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool;
    /// Copies the bytes filter-state object under `key` into `out` (its whole length, even
    /// when `out` is shorter); `None` when there is none.
    fn filter_state(&self, key: &[u8], out: &mut [u8]) -> Option<usize>;
    /// Starts an HTTP callout to `cluster`: Envoy's id, or its init result.
    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32>;
    /// Writes `data` to the client now (no connection exists yet); bytes written, `None` when
    /// the write failed.
    fn write(&self, data: &[u8]) -> Option<usize>;
    /// Copies the client's TLS fingerprint (JA4 when `ja4`, else JA3), as `tls_inspector` or
    /// an earlier filter set it, into `out`; its whole length, `None` when unset.
    fn fingerprint(&self, ja4: bool, out: &mut [u8]) -> Option<usize>;
    /// `setsockopt` with an integer value; whether it succeeded.
    fn set_socket_option(&self, level: i64, name: i64, value: i64) -> bool;
    /// `getsockopt` of an integer value.
    fn socket_option(&self, level: i64, name: i64) -> Option<i64>;
    /// Lets the socket go on (`true`) or drops it (`false`) after this filter stopped.
    fn continue_chain(&self, success: bool);
    /// Closes the socket now; `details` go to the connection's termination details.
    fn close(&self, details: &[u8]);
    /// Creates the socket's scheduler (`None`: it can no longer be called).
    fn new_scheduler(&self) -> Option<Committer>;
    /// Whether `level` is written.
    fn log_enabled(&self, level: u32) -> bool;
    /// Writes one log line.
    fn log(&self, level: u32, line: &[u8]);
}
