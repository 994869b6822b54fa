//! The host: a thin, safe interface over what Envoy offers, one per extension kind, each with
//! a real implementation (calls into Envoy) and, behind the `testing` feature, simulated ones.
//!
//! Shared by every kind: byte views ([`Raw`]), outbound HTTP calls ([`Outbound`]), the config
//! host ([`ConfigHost`]), metric operations, logs, and which host serves the running hook
//! ([`current`]). Per kind: [`http`] (an HTTP filter stream) and [`server`] (the bootstrap
//! extension). Everything above this layer talks to `&dyn` host traits only, so handler
//! signatures never become generic over the host.
//!
//! Byte views returned by a host (`Raw`) follow Envoy's rule: they stay valid until the same
//! header map or body is modified, or the stream ends. The API layer ties them to borrows that
//! enforce this (see `Request::header`).

use crate::abi::ffi::HeaderPair;

pub(crate) mod current;
pub(crate) mod envoy;
#[cfg(feature = "log")]
pub(crate) mod envoy_log;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod server;

/// Which metric operation to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricOp {
    CounterAdd,
    GaugeAdd,
    GaugeSub,
    GaugeSet,
    HistogramRecord,
}

/// Metric kinds defined at config time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Bytes owned by the host; see the module docs for how long they stay valid.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Raw {
    ptr: *const u8,
    len: usize,
}

impl Raw {
    pub(crate) fn new(ptr: *const u8, len: usize) -> Raw {
        Raw { ptr, len }
    }

    /// Views the bytes for as long as `anchor` is borrowed.
    ///
    /// The caller picks an anchor whose borrow cannot outlive the host's validity rule: the API
    /// layer uses `&Request`/`&Response`, whose mutation methods take `&mut self`, and whose
    /// lifetime brand ends before the stream does.
    pub(crate) fn view<T: ?Sized>(self, _anchor: &T) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: a non-null `Raw` comes from a host that guarantees `len` readable bytes until
        // the map/body is modified or the stream ends; the anchor's borrow ends before either
        // can happen through safe code (see the doc comment above).
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Turns an ABI header array into views valid for the current hook.
pub(crate) fn pairs<'h>(
    h: &'h [HeaderPair],
    anchor: &'h (),
) -> impl Iterator<Item = (&'h [u8], &'h [u8])> {
    h.iter().map(move |p| {
        (
            Raw::new(p.key_ptr, p.key_len).view(anchor),
            Raw::new(p.value_ptr, p.value_len).view(anchor),
        )
    })
}

/// Copies the bytes of a body made of `chunks`, from `offset`, into `dst`; returns how many.
pub(crate) fn copy_from_chunks<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    offset: usize,
    dst: &mut [u8],
) -> usize {
    let mut skip = offset;
    let mut written = 0;
    for c in chunks {
        if written == dst.len() {
            break;
        }
        if skip >= c.len() {
            skip -= c.len();
            continue;
        }
        let take = (c.len() - skip).min(dst.len() - written);
        dst[written..written + take].copy_from_slice(&c[skip..skip + take]);
        written += take;
        skip = 0;
    }
    written
}

/// HTTP calls to other clusters, on behalf of a stream (`Host`, on its worker) or of a filter
/// config (`ConfigHost`, on the main thread).
pub(crate) trait Outbound {
    /// Starts an HTTP callout; returns its id, or the ABI init result on failure.
    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32>;
    /// Starts a streaming callout; returns its id, or the ABI init result on failure.
    fn start_stream(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        end_stream: bool,
        timeout_ms: u64,
    ) -> Result<u64, u32>;
    /// Sends data on a streaming callout.
    fn stream_send(&self, id: u64, data: &[u8], end_stream: bool) -> bool;
    /// Sends trailers on a streaming callout (ends its request).
    fn stream_trailers(&self, id: u64, trailers: &[(&[u8], &[u8])]) -> bool;
    /// Resets a streaming callout.
    fn stream_reset(&self, id: u64);
}

/// What a filter config needs from its host at load time (main thread).
pub(crate) trait ConfigHost: Outbound {
    /// Defines a metric; returns its id or the ABI metrics result on failure.
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32>;
    /// Whether `level` is emitted.
    fn log_enabled(&self, level: u32) -> bool;
    /// Emits one log line.
    fn log(&self, level: u32, msg: &[u8]);
    /// Emits one log line with the source location it was written at (shown by Envoy 1.40).
    fn log_at(&self, level: u32, msg: &[u8], _file: &str, _line: u32) {
        self.log(level, msg)
    }
    /// A log usable from any thread at any time, for lines written when no stream host is at
    /// hand (`None` where there is none).
    fn process_log(&self) -> Option<fn(u32, &[u8])>;
    /// Subscribes to SDS generic secret `name` (`source` empty: a static secret of the
    /// bootstrap, else a `ConfigSource` as JSON). `None` when the host lacks the callback,
    /// `Some(0)` when Envoy refused, else the handle.
    fn subscribe_secret(&self, name: &[u8], source: &[u8]) -> Option<u64> {
        let _ = (name, source);
        None
    }
    /// The current value of a subscribed secret, copied.
    fn secret(&self, handle: u64) -> Option<Vec<u8>>;

    // Work owned by the config (not a stream), on the main thread.

    /// Creates the config's scheduler: events committed from any thread reach
    /// `on_http_filter_config_scheduled` on the main thread.
    fn new_scheduler(&self) -> Committer;
    /// Applies a metric operation through the config (Envoy 1.39+); the ABI metrics result,
    /// or `None` when this Envoy lacks the callback.
    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> Option<u32>;
}

pub(crate) use crate::executor::sched::Committer;
