//! Facts Envoy 1.40 keeps about a stream: its timing, the client's direct address, and the
//! upstream hosts and connections it used.

use crate::api::Unsupported;
use std::time::Duration;

/// A point in a stream's life whose time Envoy records (see [`Timing`]).
///
/// ```
/// use jisr::info::TimingPoint;
/// # use jisr::testing::TestFilter;
/// # use jisr::{Registry, Request, ResponseWriter};
///
/// async fn reused(mut req: Request<'_>, w: ResponseWriter<'_>) {
///     let Ok(timing) = w.timing() else { return }; // Envoy 1.40+
///     // A connection that began before this request is a reused (keep-alive) one.
///     let began = timing.offset_ns(TimingPoint::DownstreamConnectionBegin);
///     let _ = req.set_header("x-conn-reused", if began.is_some_and(|ns| ns < 0) { "1" } else { "0" });
/// }
/// fn register(r: &mut Registry) { r.register("reused", reused); }
///
/// let f = TestFilter::new(register, "reused", b"").unwrap();
/// let mut s = f.stream();
/// s.set_timing(1_700_000_000_000_000_000, &[(TimingPoint::DownstreamConnectionBegin, -5_000_000_000)]);
/// s.request_headers(&[(":path", "/")], true);
/// assert_eq!(s.request_header("x-conn-reused").as_deref(), Some("1"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingPoint {
    /// The client's connection was accepted.
    DownstreamConnectionBegin = 1,
    /// The client's TLS handshake started.
    DownstreamHandshakeStart = 2,
    /// The client's TLS handshake completed.
    DownstreamHandshakeComplete = 3,
    /// The last byte of the request headers arrived.
    LastDownstreamHeaderRxByteReceived = 4,
    /// The last byte of the request arrived.
    LastDownstreamRxByteReceived = 5,
    /// Envoy started connecting upstream.
    UpstreamConnectStart = 6,
    /// The upstream connection was established.
    UpstreamConnectComplete = 7,
    /// The upstream TLS handshake completed.
    UpstreamHandshakeComplete = 8,
    /// The first request byte was sent upstream.
    FirstUpstreamTxByteSent = 9,
    /// The last request byte was sent upstream.
    LastUpstreamTxByteSent = 10,
    /// The first response byte arrived from upstream (time to first byte).
    FirstUpstreamRxByteReceived = 11,
    /// The first response body byte arrived from upstream.
    FirstUpstreamRxBodyByteReceived = 12,
    /// The last response byte arrived from upstream.
    LastUpstreamRxByteReceived = 13,
    /// The first response byte was sent to the client.
    FirstDownstreamTxByteSent = 14,
    /// The last response byte was sent to the client.
    LastDownstreamTxByteSent = 15,
    /// The client acknowledged the last byte (HTTP/3).
    LastDownstreamAckReceived = 16,
    /// The stream completed.
    RequestComplete = 17,
    /// The client's connection ended.
    DownstreamConnectionEnd = 18,
}

/// Envoy's timing of a stream, from Envoy's own clock (so a handler's latency figures match
/// Envoy's access logs). Points are offsets from the request's start; a point not reached
/// yet is `None`.
///
/// ```
/// use jisr::info::TimingPoint;
/// # use jisr::testing::TestFilter;
/// use jisr::{Registry, Request, Response, ResponseMode, ResponseWriter};
///
/// async fn pass(_req: Request<'_>, _w: ResponseWriter<'_>) {}
/// async fn ttfb(_: (), mut resp: Response<'_>, w: ResponseWriter<'_>) {
///     let Ok(timing) = w.timing() else { return }; // Envoy 1.40+
///     if let Some(d) = timing.since_start(TimingPoint::FirstUpstreamRxByteReceived) {
///         let _ = resp.set_header("x-ttfb-ms", d.as_millis().to_string());
///     }
/// }
/// fn register(r: &mut Registry) { r.filter("ttfb").respond(ResponseMode::Passthrough, pass, ttfb); }
///
/// let f = TestFilter::new(register, "ttfb", b"").unwrap();
/// let mut s = f.stream();
/// s.set_timing(1_700_000_000_000_000_000, &[(TimingPoint::FirstUpstreamRxByteReceived, 42_000_000)]);
/// s.request_headers(&[(":path", "/")], true);
/// s.response_headers(&[(":status", "200")], true);
/// assert_eq!(s.response_header("x-ttfb-ms").as_deref(), Some("42"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub(crate) raw: crate::abi::ffi::TimingInfo,
}

impl Timing {
    /// When the request started, as nanoseconds since the Unix epoch.
    pub fn start_unix_ns(&self) -> Option<i64> {
        self.raw.has[0].then_some(self.raw.ns[0])
    }

    /// The offset of `point` from the request's start in nanoseconds (negative for points
    /// before it, such as the connection's begin on a reused connection).
    pub fn offset_ns(&self, point: TimingPoint) -> Option<i64> {
        let i = point as usize;
        self.raw.has[i].then_some(self.raw.ns[i])
    }

    /// The offset of `point` from the request's start, if reached and not before the start.
    pub fn since_start(&self, point: TimingPoint) -> Option<Duration> {
        let ns = self.offset_ns(point)?;
        u64::try_from(ns).ok().map(Duration::from_nanos)
    }
}

pub(crate) fn unsupported(callback: &'static str) -> Unsupported {
    Unsupported { callback }
}
