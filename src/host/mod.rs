//! The host: a thin, safe interface over what Envoy offers, one per extension kind, each with
//! a real implementation (calls into Envoy) and, behind the `testing` feature, simulated ones.
//!
//! Shared by every kind: byte views ([`Raw`]), outbound HTTP calls ([`Outbound`]), the config
//! host ([`ConfigHost`]), metric operations, logs, and which host serves the running hook
//! ([`current`]). Per kind: [`http`] (an HTTP filter stream) and [`server`] (the bootstrap
//! extension). Everything above this layer talks to `&dyn` host traits only, so handler
//! signatures never become generic over the host.
//!
//! Byte views returned by a host ([`Raw`]) follow Envoy's rule: they stay valid until the same
//! header map or body is modified, or the stream ends. A `Raw` borrows the host that read it,
//! so it cannot outlive the hook; the API layer copies it at once (into the stream's arena) or
//! ties a view to a handle whose modifying methods take `&mut self` (the raw slot's
//! `header_view`).

use crate::abi::ffi::{Buf, HeaderPair};
use crate::executor::arena::Arena;
use core::marker::PhantomData;

pub(crate) mod current;
pub(crate) mod envoy;
#[cfg(feature = "log")]
pub(crate) mod envoy_log;
pub(crate) mod http;
pub(crate) mod listener;
pub(crate) mod log;
pub(crate) mod network;
pub(crate) mod server;
#[cfg(feature = "testing")]
pub(crate) mod sim_shared;
pub(crate) mod udp;

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

/// Bytes owned by the host, valid for `'h`: the borrow of the host whose read produced them
/// (host read methods return `Raw<'_>`), so a `Raw` cannot outlive the hook that read it.
///
/// What the type guarantees: the bytes stay allocated and unchanged for `'h` unless a later
/// host call modifies or replaces them (see [`new`](Raw::new)). What it cannot see, and
/// remains a contract on the code in between: no such host call happens between the read that
/// made a `Raw` and the copy of it ([`keep_in`](Raw::keep_in), [`to_vec`](Raw::to_vec),
/// [`append_to`](Raw::append_to)). Every read in the crate is copied in the same expression,
/// with no host call in between; the zero-copy [`view`](Raw::view) is `unsafe` and carries
/// that contract to its caller.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Raw<'h> {
    ptr: *const u8,
    len: usize,
    _host: PhantomData<&'h [u8]>,
}

impl<'h> Raw<'h> {
    /// Bytes at `ptr..ptr + len`, valid for `'h`.
    ///
    /// # Safety
    /// When `len` is not 0, `ptr` is non-null and points at `len` initialised bytes that stay
    /// allocated and unchanged for all of `'h`, except after a later host call that modifies
    /// or replaces them: a write to the header map, body or value they belong to, or, for
    /// bytes Envoy (or a simulated host) keeps in a per-call scratch, the next call that refills
    /// it. The caller picks `'h` no longer than that: a host method returns `Raw<'_>` tied to
    /// its `&self`, or hands it to a callback for the length of the call.
    pub(crate) unsafe fn new(ptr: *const u8, len: usize) -> Raw<'h> {
        Raw {
            ptr,
            len,
            _host: PhantomData,
        }
    }

    /// Views the bytes for as long as `anchor` is borrowed (at most `'h`).
    ///
    /// # Safety
    /// Nothing modifies the header map, body or value the bytes belong to before the anchor's
    /// borrow ends (e.g. the anchor is a handle whose modifying methods take `&mut self`).
    pub(crate) unsafe fn view<'a, T: ?Sized>(self, _anchor: &'a T) -> &'a [u8]
    where
        'h: 'a,
    {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: `new`'s contract: `len` initialised bytes, allocated and unchanged for `'h`
        // (which outlives `'a`) unless the map/body is modified, which the caller rules out
        // for `'a`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The one audited copy: `f` gets the bytes and must only copy them (it runs no host call).
    #[inline]
    fn copy<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        if self.ptr.is_null() || self.len == 0 {
            return f(&[]);
        }
        // SAFETY: `new`'s contract gives `len` initialised bytes valid during `'h`, which is
        // still running (`self` is alive); the one remaining condition, no modification of the
        // map/body since the read that made `self`, is the documented contract of the type
        // (each read is copied in the same expression). `f` is one of the three copies below:
        // it cannot call the host, so the slice is not held across a modification.
        f(unsafe { core::slice::from_raw_parts(self.ptr, self.len) })
    }

    /// Copies the bytes into `arena`.
    #[inline]
    pub(crate) fn keep_in(self, arena: &Arena) -> &[u8] {
        self.copy(|b| arena.keep(b))
    }

    /// Copies the bytes into a new vector.
    pub(crate) fn to_vec(self) -> Vec<u8> {
        self.copy(<[u8]>::to_vec)
    }

    /// Appends a copy of the bytes to `out`; returns how many.
    #[inline]
    pub(crate) fn append_to(self, out: &mut Vec<u8>) -> usize {
        self.copy(|b| {
            out.extend_from_slice(b);
            b.len()
        })
    }

    /// Number of bytes.
    pub(crate) fn len(self) -> usize {
        self.len
    }

    /// Host bytes borrowed from `bytes` (a shared borrow: allocated and unchanged for `'h`);
    /// for the bench host, whose bytes are the module's own.
    #[cfg(feature = "testing")]
    pub(crate) fn of(bytes: &'h [u8]) -> Raw<'h> {
        Raw {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
            _host: PhantomData,
        }
    }
}

/// Headers a hook hands over (a callout's answer, a stream event), valid for `'h`: an ABI
/// array Envoy passed, or module-owned slices (the simulated hosts).
#[derive(Clone, Copy)]
pub struct HeaderArray<'h>(HeaderRepr<'h>);

#[derive(Clone, Copy)]
enum HeaderRepr<'h> {
    Abi(&'h [HeaderPair]),
    Slices(&'h [(&'h [u8], &'h [u8])]),
}

impl<'h> HeaderArray<'h> {
    /// No headers.
    pub const EMPTY: HeaderArray<'static> = HeaderArray(HeaderRepr::Slices(&[]));

    /// An array Envoy passed to a hook.
    ///
    /// # Safety
    /// For every pair, each of key and value has length 0 or a non-null pointer to that many
    /// initialised bytes, allocated and unchanged for all of `'h` (Envoy's rule for arrays it
    /// passes to a hook: until the hook returns, so `'h` ends with the hook).
    pub unsafe fn from_abi(pairs: &'h [HeaderPair]) -> HeaderArray<'h> {
        HeaderArray(HeaderRepr::Abi(pairs))
    }

    /// Module-owned headers.
    pub fn of(pairs: &'h [(&'h [u8], &'h [u8])]) -> HeaderArray<'h> {
        HeaderArray(HeaderRepr::Slices(pairs))
    }

    /// The headers, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'h [u8], &'h [u8])> {
        type Views<'h> = &'h [(&'h [u8], &'h [u8])];
        let (abi, slices): (&'h [HeaderPair], Views<'h>) = match self.0 {
            HeaderRepr::Abi(a) => (a, &[]),
            HeaderRepr::Slices(s) => (&[], s),
        };
        abi.iter()
            .map(|p| {
                // SAFETY: `from_abi`'s contract: both views are valid and unchanged for `'h`.
                unsafe {
                    (
                        abi_bytes(p.key_ptr, p.key_len),
                        abi_bytes(p.value_ptr, p.value_len),
                    )
                }
            })
            .chain(slices.iter().copied())
    }
}

/// Body chunks a hook hands over, valid for `'h`: an ABI array Envoy passed, or module-owned
/// slices (the simulated hosts).
#[derive(Clone, Copy)]
pub struct ChunkArray<'h>(ChunkRepr<'h>);

#[derive(Clone, Copy)]
enum ChunkRepr<'h> {
    Abi(&'h [Buf]),
    Slices(&'h [&'h [u8]]),
}

impl<'h> ChunkArray<'h> {
    /// No chunks.
    pub const EMPTY: ChunkArray<'static> = ChunkArray(ChunkRepr::Slices(&[]));

    /// An array Envoy passed to a hook.
    ///
    /// # Safety
    /// Every chunk has length 0 or a non-null pointer to that many initialised bytes,
    /// allocated and unchanged for all of `'h` (until the hook returns).
    pub unsafe fn from_abi(chunks: &'h [Buf]) -> ChunkArray<'h> {
        ChunkArray(ChunkRepr::Abi(chunks))
    }

    /// Module-owned chunks.
    pub fn of(chunks: &'h [&'h [u8]]) -> ChunkArray<'h> {
        ChunkArray(ChunkRepr::Slices(chunks))
    }

    /// The chunks, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = &'h [u8]> {
        let (abi, slices): (&'h [Buf], &'h [&'h [u8]]) = match self.0 {
            ChunkRepr::Abi(a) => (a, &[]),
            ChunkRepr::Slices(s) => (&[], s),
        };
        abi.iter()
            // SAFETY: `from_abi`'s contract: each chunk is valid and unchanged for `'h`.
            .map(|c| unsafe { abi_bytes(c.ptr, c.len) })
            .chain(slices.iter().copied())
    }
}

/// `len` bytes at `ptr` (null or 0: empty).
///
/// # Safety
/// When `len` is not 0, `ptr` points at `len` initialised bytes allocated and unchanged for `'h`.
pub(crate) unsafe fn abi_bytes<'h>(ptr: *const u8, len: usize) -> &'h [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(ptr, len) }
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

/// Implements [`Outbound`] for a config host whose kind makes no outbound calls while loading
/// (network, listener and UDP configs): every callout is refused as if the cluster did not
/// exist, stream calls do nothing.
macro_rules! no_outbound {
    ($host:ty) => {
        impl $crate::host::Outbound for $host {
            fn callout(
                &self,
                _: &[u8],
                _: &[(&[u8], &[u8])],
                _: &[u8],
                _: u64,
            ) -> Result<u64, u32> {
                Err($crate::abi::callout_init::CLUSTER_NOT_FOUND)
            }

            fn start_stream(
                &self,
                _: &[u8],
                _: &[(&[u8], &[u8])],
                _: &[u8],
                _: bool,
                _: u64,
            ) -> Result<u64, u32> {
                Err($crate::abi::callout_init::CLUSTER_NOT_FOUND)
            }

            fn stream_send(&self, _: u64, _: &[u8], _: bool) -> bool {
                false
            }

            fn stream_trailers(&self, _: u64, _: &[(&[u8], &[u8])]) -> bool {
                false
            }

            fn stream_reset(&self, _: u64) {}
        }
    };
}
pub(crate) use no_outbound;

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
    /// Whether jisr's process-wide timers schedule the config's `jisr_*` stats flush (`false`:
    /// the host runs it when asked).
    fn timers_fire_stats_flush(&self) -> bool {
        true
    }
}

pub(crate) use crate::executor::sched::Committer;

#[cfg(test)]
mod tests {
    use super::http::sim::SimHost;
    use super::http::{Host, Map};
    use super::{ChunkArray, HeaderArray, Raw};
    use crate::executor::arena::Arena;

    /// The hole this closes: `Raw::view(&())` used to make a `'static` slice of the host's
    /// memory, so a header read before `set_header` and used after it read freed memory (the
    /// simulated host frees the old value, as Envoy does; Miri reports it). A read is now copied
    /// at once through the one copy path, and the copy outlives the change.
    #[test]
    fn a_header_read_is_copied_before_the_map_changes() {
        let host = SimHost::default();
        assert!(host.set_header(Map::RequestHeaders, b"x-k", Some(b"before")));
        let arena = Arena::default();
        let kept = host
            .header(Map::RequestHeaders, b"x-k", 0)
            .0
            .expect("set above")
            .keep_in(&arena);
        assert!(host.set_header(Map::RequestHeaders, b"x-k", Some(b"after, and longer")));
        assert_eq!(kept, b"before");
        let mut out = Vec::new();
        let mut n = 0;
        host.for_each_header(Map::RequestHeaders, &mut |k, v| {
            n += k.append_to(&mut out) + v.append_to(&mut out);
        });
        assert_eq!(out, b"x-kafter, and longer");
        assert_eq!(n, out.len());
    }

    #[test]
    fn module_owned_arrays_read_as_themselves() {
        let pairs = [(b"a".as_slice(), b"1".as_slice()), (b"b", b"")];
        let got: Vec<_> = HeaderArray::of(&pairs).iter().collect();
        assert_eq!(got, pairs);
        let chunks = [b"ab".as_slice(), b"", b"c"];
        assert_eq!(
            ChunkArray::of(&chunks).iter().collect::<Vec<_>>().concat(),
            b"abc"
        );
        assert_eq!(HeaderArray::EMPTY.iter().count(), 0);
        assert_eq!(Raw::of(b"xyz").to_vec(), b"xyz");
    }
}
