//! The host of a UDP listener filter: what a datagram's handler asks of Envoy, real
//! ([`envoy`]) or simulated (`sim`, feature `testing`).
//!
//! Envoy offers these calls only while `on_data` runs for one datagram (the "current"
//! datagram); a host value is made per hook and never outlives it.

pub(crate) mod envoy;
#[cfg(feature = "testing")]
pub(crate) mod sim;

use crate::host::MetricOp;

/// Which address of the current datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    /// Where the datagram came from.
    Peer,
    /// The listener address it arrived on.
    Local,
}

/// What a datagram's handler may ask of its host, on the worker, inside `on_data`.
pub(crate) trait UdpHost {
    /// Replaces `out`'s contents with the current datagram's bytes (no allocation once `out`
    /// has grown to the datagram's size).
    fn read(&self, out: &mut Vec<u8>);
    /// Replaces the current datagram's bytes: what the filters after this one see. `false`:
    /// Envoy has no current datagram.
    fn replace(&self, data: &[u8]) -> bool;
    /// Copies the address `which` (IP text, no port) into `out`; its length and the port
    /// (`None`: not an IP address).
    fn address(&self, which: Addr, out: &mut [u8]) -> Option<(usize, u32)>;
    /// Sends `data` from the listener's socket to `ip`:`port`; an empty `ip` sends to the
    /// current datagram's peer. `false`: not sent (an address Envoy cannot parse, no
    /// listener).
    fn send(&self, data: &[u8], ip: &[u8], port: u32) -> bool;
    /// The Envoy worker that runs this filter.
    fn worker_index(&self) -> u32;
    /// Applies a metric update; Envoy's result code.
    fn metric(&self, op: MetricOp, id: usize, value: u64) -> u32;
    /// Whether `level` is written.
    fn log_enabled(&self, level: u32) -> bool;
    /// Writes one log line.
    fn log(&self, level: u32, line: &[u8]);
}
