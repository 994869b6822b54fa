//! The host of a network (L4) filter: what a connection's handler asks of Envoy, real
//! ([`envoy`]) or simulated (`sim`, feature `testing`).

pub(crate) mod current;
pub(crate) mod envoy;
#[cfg(feature = "testing")]
pub(crate) mod sim;

pub(crate) use crate::executor::sched::Committer;

/// Which side of the connection a buffer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// Bytes from the client on their way upstream (Envoy's read buffer).
    Read,
    /// Bytes from upstream on their way to the client (Envoy's write buffer, inside a write
    /// hook only).
    Write,
}

/// How the module closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// Write what is pending, then close.
    Flush,
    /// Drop what is pending and reset the socket.
    Reset,
}

/// Which address of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    /// The peer (client) as Envoy sees it.
    Remote,
    /// The local address the client connected to.
    Local,
    /// The peer of the socket itself, before any PROXY protocol or `x-forwarded-for`-style
    /// override.
    DirectRemote,
    /// The upstream host the proxy after this filter picked (none before it connects).
    Upstream,
}

/// A text of the upstream host the proxy picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamText {
    /// Its hostname (as configured for the endpoint; may be empty).
    Hostname,
    /// The name of its cluster.
    Cluster,
}

/// A dynamic metadata value that is not a string.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum MetaValue {
    /// A number.
    Number(f64),
    /// A bool.
    Bool(bool),
}

/// A socket option's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SockOpt<'a> {
    /// An integer option.
    Int(i64),
    /// A bytes option.
    Bytes(&'a [u8]),
}

/// What a connection's handler may ask of its host, on the worker, inside a hook.
pub(crate) trait ConnHost {
    /// Bytes held in `side`'s buffer.
    fn len(&self, side: Side) -> usize;
    /// Copies the first bytes of `side`'s buffer into `out`; returns how many.
    fn copy(&self, side: Side, out: &mut [u8]) -> usize;
    /// Calls `f` with each chunk of `side`'s buffer in order, viewed in place (valid for the
    /// call only); stops when `f` returns `false`.
    fn chunks(&self, side: Side, f: &mut dyn FnMut(&[u8]) -> bool);
    /// Removes the first `n` bytes of `side`'s buffer.
    fn drain(&self, side: Side, n: usize);
    /// Hands `data` to the filters after this one, toward upstream (`end`: and half-closes).
    fn inject_read(&self, data: &[u8], end: bool);
    /// Hands `data` to the write filters after this one, toward the client.
    fn inject_write(&self, data: &[u8], end: bool);
    /// Lets the filters after this one see the read buffer again (after `StopIteration`).
    fn continue_reading(&self);
    /// Stops (`true`) or resumes reading from the client.
    fn read_disable(&self, disable: bool);
    /// Closes the connection; `details` go to Envoy's access log.
    fn close(&self, how: Close, details: &[u8]);
    /// Envoy's id of the connection.
    fn connection_id(&self) -> u64;
    /// Copies the address `which` (IP text, no port) into `out`; its length and the port.
    fn address(&self, which: Addr, out: &mut [u8]) -> Option<(usize, u32)>;
    /// Copies the SNI the client asked for into `out`; its length (`None`: none given).
    fn server_name(&self, out: &mut [u8]) -> Option<usize>;
    /// Whether the client connection is TLS.
    fn is_tls(&self) -> bool;
    /// Sets a string in the connection's dynamic metadata.
    fn set_metadata(&self, namespace: &[u8], key: &[u8], value: &[u8]);
    /// Applies a metric update (network metrics have no labels); the ABI metrics result.
    fn metric(&self, op: crate::host::MetricOp, id: usize, value: u64) -> u32;
    /// Sets a bytes filter-state object under `key`; whether Envoy took it.
    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool;
    /// Copies the bytes filter-state object under `key` into `out` (its whole length, even
    /// when `out` is shorter); `None` when there is none.
    fn filter_state(&self, key: &[u8], out: &mut [u8]) -> Option<usize>;
    /// Calls `f` with each Subject Alternative Name of the peer certificate (`dns`: DNS
    /// names, else URIs).
    fn peer_sans(&self, dns: bool, f: &mut dyn FnMut(&[u8]));
    /// Copies the peer certificate's subject into `out`; its whole length.
    fn peer_subject(&self, out: &mut [u8]) -> Option<usize>;
    /// Sets a number or bool in the connection's dynamic metadata.
    fn set_metadata_value(&self, namespace: &[u8], key: &[u8], value: MetaValue);
    /// Copies the string under `namespace`/`key` of the dynamic metadata into `out`; its
    /// whole length (`None`: absent, or not a string).
    fn metadata_str(&self, namespace: &[u8], key: &[u8], out: &mut [u8]) -> Option<usize>;
    /// The number or bool (as `want` asks) under `namespace`/`key` of the dynamic metadata.
    fn metadata_value(&self, namespace: &[u8], key: &[u8], want: MetaValue) -> Option<MetaValue>;
    /// Copies a text of the upstream host into `out`; its whole length (`None`: no host
    /// picked yet).
    fn upstream_text(&self, which: UpstreamText, out: &mut [u8]) -> Option<usize>;
    /// Adds a socket option for the upstream connection the proxy makes after this call.
    fn set_upstream_socket_option(&self, level: i64, name: i64, value: SockOpt<'_>);
    /// The connection's buffer limit in bytes (0: none).
    fn buffer_limit(&self) -> u32;
    /// Sets the connection's buffer limit.
    fn set_buffer_limit(&self, limit: u32);
    /// The index of the worker thread running the connection.
    fn worker_index(&self) -> u32;
    /// Asks the upstream transport socket to switch to TLS (STARTTLS).
    fn start_upstream_tls(&self) -> bool;
    /// Asks the downstream transport socket to switch to TLS; `None` before Envoy 1.40.
    fn start_downstream_tls(&self) -> Option<bool>;
    /// Starts an HTTP callout to `cluster`: Envoy's id, or its init result.
    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32>;
    /// Creates the connection's scheduler (`None`: the connection can no longer be called).
    fn new_scheduler(&self) -> Option<Committer>;
    /// Whether `level` is written.
    fn log_enabled(&self, level: u32) -> bool;
    /// Writes one log line.
    fn log(&self, level: u32, line: &[u8]);
}
