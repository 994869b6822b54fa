//! An allocation-free host for benchmarks and allocation tests.
//!
//! Request/response headers and body chunks come from `'static` data (so views are stable),
//! changes are kept in fixed-capacity storage, and effects are counted, not recorded. Nothing
//! here allocates after construction, so any allocation measured around a request is jisr's.

use super::{BodyKind, Host, Map, MetadataValue};
use crate::host::{Committer, MetricOp, Raw};
use arrayvec::{ArrayString, ArrayVec};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

type Static = &'static [(&'static str, &'static str)];

/// One header change kept by the bench host.
#[derive(Clone)]
struct Changed {
    map: Map,
    key: ArrayString<48>,
    value: Option<ArrayVec<u8, 96>>,
}

/// Effects of the current request, counted.
///
/// ```
/// use jisr::testing::bench::{BenchEffects, BenchFilter};
/// use jisr::{Registry, Request, ResponseWriter};
///
/// async fn deny(_req: Request<'_>, w: ResponseWriter<'_>) {
///     w.set_metadata_str("acme", "decision", "deny");
///     w.send(403, b"no");
/// }
/// fn register(r: &mut Registry) { r.register("deny", deny); }
///
/// let f = BenchFilter::new(register, "deny", b"").unwrap();
/// let mut s = f.session();
/// s.begin(&[(":method", "GET"), (":path", "/")]);
/// s.request_headers(true);
/// let effects: BenchEffects = s.effects();
/// assert_eq!((effects.local_replies, effects.reply_status, effects.metadata), (1, 403, 1));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BenchEffects {
    /// Local replies sent (and the last status).
    pub local_replies: u32,
    /// Last local reply status.
    pub reply_status: u32,
    /// `continue_decoding` calls.
    pub continue_decoding: u32,
    /// `continue_encoding` calls.
    pub continue_encoding: u32,
    /// Header changes applied.
    pub header_changes: u32,
    /// Metadata values set.
    pub metadata: u32,
    /// Metric operations.
    pub metrics: u32,
    /// Log lines emitted.
    pub logs: u32,
    /// Callouts started.
    pub callouts: u32,
    /// Body bytes appended by the filter.
    pub appended: u32,
    /// Streamed response data frames.
    pub streamed_frames: u32,
    /// Changes to spans (tags, logs, ...).
    pub span_edits: u32,
}

/// The metadata string and cluster name every bench stream reads.
const BENCH_NAME: &[u8] = b"bench";

/// The bench host. Reused across requests with [`BenchHost::reset`].
pub(crate) struct BenchHost {
    pub(crate) req: Cell<Static>,
    pub(crate) resp: Cell<Static>,
    changes: RefCell<ArrayVec<Changed, 16>>,
    /// Request body: chunks already buffered by Envoy, and the chunk of the current hook.
    pub(crate) req_buffered: RefCell<ArrayVec<&'static [u8], 64>>,
    pub(crate) req_received: Cell<&'static [u8]>,
    pub(crate) resp_buffered: RefCell<ArrayVec<&'static [u8], 64>>,
    pub(crate) resp_received: Cell<&'static [u8]>,
    pub(crate) effects: Cell<BenchEffects>,
    pub(crate) log_level: Cell<u32>,
    pub(crate) events: &'static AtomicU64,
    pub(crate) next_callout: Cell<u64>,
}

impl BenchHost {
    pub(crate) fn new(events: &'static AtomicU64) -> BenchHost {
        BenchHost {
            req: Cell::new(&[]),
            resp: Cell::new(&[]),
            changes: RefCell::new(ArrayVec::new()),
            req_buffered: RefCell::new(ArrayVec::new()),
            req_received: Cell::new(&[]),
            resp_buffered: RefCell::new(ArrayVec::new()),
            resp_received: Cell::new(&[]),
            effects: Cell::new(BenchEffects::default()),
            log_level: Cell::new(2),
            events,
            next_callout: Cell::new(0),
        }
    }

    pub(crate) fn reset(&self) {
        self.req.set(&[]);
        self.resp.set(&[]);
        self.changes.borrow_mut().clear();
        self.req_buffered.borrow_mut().clear();
        self.req_received.set(&[]);
        self.resp_buffered.borrow_mut().clear();
        self.resp_received.set(&[]);
        self.effects.set(BenchEffects::default());
    }

    fn bump(&self, f: impl FnOnce(&mut BenchEffects)) {
        let mut e = self.effects.get();
        f(&mut e);
        self.effects.set(e);
    }

    fn base(&self, map: Map) -> Static {
        match map {
            Map::RequestHeaders => self.req.get(),
            Map::ResponseHeaders => self.resp.get(),
            _ => &[],
        }
    }
}

/// Bytes of this host's own storage, as host bytes of a `&self` borrow of the host.
///
/// # Safety
/// `b` lies in the host's storage (its cells, borrowed for `'h` through `&self`), which changes
/// only through a host method that modifies or refills it, as `Raw::new` requires.
unsafe fn raw<'h>(b: &[u8]) -> Raw<'h> {
    // SAFETY: guaranteed by the caller.
    unsafe { Raw::new(b.as_ptr(), b.len()) }
}

impl Host for BenchHost {
    fn header(&self, map: Map, key: &[u8], index: usize) -> (Option<Raw<'_>>, usize) {
        let changes = self.changes.borrow();
        if let Some(c) = changes
            .iter()
            .rev()
            .find(|c| c.map == map && c.key.as_bytes().eq_ignore_ascii_case(key))
        {
            return match &c.value {
                // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed
                // only by a host method that modifies them, as `raw` requires.
                Some(v) if index == 0 => (Some(unsafe { raw(v) }), 1),
                Some(_) => (None, 1),
                None => (None, 0),
            };
        }
        let mut count = 0;
        let mut found = None;
        for (k, v) in self.base(map) {
            if k.as_bytes().eq_ignore_ascii_case(key) {
                if count == index {
                    // SAFETY: the bytes are in this host's cells (borrowed through `&self`),
                    // changed only by a host method that modifies them, as `raw` requires.
                    found = Some(unsafe { raw(v.as_bytes()) });
                }
                count += 1;
            }
        }
        (found, count)
    }

    fn for_each_header(&self, map: Map, f: &mut dyn FnMut(Raw<'_>, Raw<'_>)) {
        for (k, v) in self.base(map) {
            // SAFETY: the bytes are in this host's cells (borrowed through `&self`), changed only
            // by a host method that modifies them, as `raw` requires.
            f(unsafe { raw(k.as_bytes()) }, unsafe { raw(v.as_bytes()) });
        }
    }

    fn set_header(&self, map: Map, key: &[u8], value: Option<&[u8]>) -> bool {
        let (Ok(k), Some(v)) = (
            core::str::from_utf8(key),
            value.map(ArrayVec::try_from).transpose().ok(),
        ) else {
            return false;
        };
        let Ok(key) = ArrayString::from(k) else {
            return false;
        };
        let mut changes = self.changes.borrow_mut();
        if changes.is_full() {
            changes.remove(0);
        }
        changes.push(Changed { map, key, value: v });
        self.bump(|e| e.header_changes += 1);
        true
    }

    fn add_header(&self, map: Map, key: &[u8], value: &[u8]) -> bool {
        self.set_header(map, key, Some(value))
    }

    fn body_len(&self, kind: BodyKind) -> usize {
        match kind {
            BodyKind::BufferedRequest => self.req_buffered.borrow().iter().map(|c| c.len()).sum(),
            BodyKind::ReceivedRequest => self.req_received.get().len(),
            BodyKind::BufferedResponse => self.resp_buffered.borrow().iter().map(|c| c.len()).sum(),
            BodyKind::ReceivedResponse => self.resp_received.get().len(),
        }
    }

    fn copy_body(&self, kind: BodyKind, offset: usize, dst: &mut [u8]) -> usize {
        match kind {
            BodyKind::BufferedRequest => crate::host::copy_from_chunks(
                self.req_buffered.borrow().iter().copied(),
                offset,
                dst,
            ),
            BodyKind::ReceivedRequest => {
                crate::host::copy_from_chunks([self.req_received.get()], offset, dst)
            }
            BodyKind::BufferedResponse => crate::host::copy_from_chunks(
                self.resp_buffered.borrow().iter().copied(),
                offset,
                dst,
            ),
            BodyKind::ReceivedResponse => {
                crate::host::copy_from_chunks([self.resp_received.get()], offset, dst)
            }
        }
    }

    fn received_is_buffered(&self, _request: bool) -> bool {
        false
    }

    fn drain_body(&self, kind: BodyKind, _n: usize) -> bool {
        match kind {
            BodyKind::BufferedRequest => self.req_buffered.borrow_mut().clear(),
            BodyKind::ReceivedRequest => self.req_received.set(&[]),
            BodyKind::BufferedResponse => self.resp_buffered.borrow_mut().clear(),
            BodyKind::ReceivedResponse => self.resp_received.set(&[]),
        }
        true
    }

    fn append_body(&self, _kind: BodyKind, data: &[u8]) -> bool {
        self.bump(|e| e.appended += data.len() as u32);
        true
    }

    fn send_response(
        &self,
        status: u32,
        _headers: &[(&[u8], &[u8])],
        _body: &[u8],
        _details: &[u8],
    ) {
        self.bump(|e| {
            e.local_replies += 1;
            e.reply_status = status;
        });
    }

    fn send_response_headers(&self, _headers: &[(&[u8], &[u8])], _end_stream: bool) {
        self.bump(|e| e.streamed_frames += 1);
    }

    fn send_response_data(&self, _data: &[u8], _end_stream: bool) {
        self.bump(|e| e.streamed_frames += 1);
    }

    fn send_response_trailers(&self, _trailers: &[(&[u8], &[u8])]) {
        self.bump(|e| e.streamed_frames += 1);
    }

    fn reset_stream(&self, _details: &[u8]) {}

    fn continue_decoding(&self) {
        self.bump(|e| e.continue_decoding += 1);
    }

    fn continue_encoding(&self) {
        self.bump(|e| e.continue_encoding += 1);
    }

    fn append_metadata(&self, _ns: &[u8], _key: &[u8], _value: MetadataValue<'_>) -> bool {
        self.bump(|e| e.metadata += 1);
        true
    }

    fn set_metadata(&self, _ns: &[u8], _key: &[u8], _value: MetadataValue<'_>) {
        self.bump(|e| e.metadata += 1);
    }

    fn metadata(
        &self,
        _source: u32,
        _ns: &[u8],
        _key: &[u8],
        kind: super::MetaKind,
    ) -> Option<super::MetaRead<'_>> {
        // Fixed values, so reads exercise the copy into the stream's arena.
        Some(match kind {
            super::MetaKind::Str => super::MetaRead::Str(Raw::of(BENCH_NAME)),
            super::MetaKind::Num => super::MetaRead::Num(1.0),
            super::MetaKind::Bool => super::MetaRead::Bool(true),
        })
    }

    fn set_filter_state(&self, _key: &[u8], _value: &[u8]) -> bool {
        true
    }

    fn filter_state(&self, _key: &[u8]) -> Option<Raw<'_>> {
        None
    }

    fn clear_route_cache(&self) {}

    fn clear_route_cluster_cache(&self) {}

    fn add_custom_flag(&self, _flag: &[u8]) {}

    fn metadata_names(&self, _source: u32, _ns: Option<&[u8]>, f: &mut dyn FnMut(Raw<'_>)) {
        f(Raw::of(BENCH_NAME));
    }

    fn metadata_list_len(&self, _source: u32, _ns: &[u8], _key: &[u8]) -> Option<usize> {
        Some(1)
    }

    fn metadata_list_item(
        &self,
        source: u32,
        ns: &[u8],
        key: &[u8],
        index: usize,
        kind: super::MetaKind,
    ) -> Option<super::MetaRead<'_>> {
        if index == 0 {
            self.metadata(source, ns, key, kind)
        } else {
            None
        }
    }

    fn cluster_name(&self) -> Option<Raw<'_>> {
        Some(Raw::of(BENCH_NAME))
    }

    fn cluster_host_count(&self, priority: u32) -> Option<[u64; 3]> {
        (priority == 0).then_some([1, 1, 0])
    }

    fn buffer_limit(&self) -> u64 {
        1 << 20
    }

    fn set_buffer_limit(&self, _limit: u64) {}

    fn attr_str(&self, _id: u32) -> Option<Raw<'_>> {
        None
    }

    fn attr_int(&self, _id: u32) -> Option<u64> {
        None
    }

    fn attr_bool(&self, _id: u32) -> Option<bool> {
        None
    }

    fn metric(&self, _op: MetricOp, _id: usize, _labels: &[&[u8]], _value: u64) -> u32 {
        self.bump(|e| e.metrics += 1);
        0
    }

    fn log_enabled(&self, level: u32) -> bool {
        level >= self.log_level.get()
    }

    fn log(&self, _level: u32, _msg: &[u8]) {
        self.bump(|e| e.logs += 1);
    }

    fn new_scheduler(&self) -> Committer {
        let ptr = self.events as *const AtomicU64 as *mut core::ffi::c_void;
        // SAFETY: `ptr` is a `&'static AtomicU64`; committing is an atomic add from any thread
        // and releasing does nothing.
        unsafe { Committer::new(ptr, bench_commit, bench_release) }
    }

    fn route_config(&self) -> *const core::ffi::c_void {
        core::ptr::null()
    }

    fn set_upstream_override_host(&self, _host: &[u8], _strict: bool) -> bool {
        true
    }

    fn worker_index(&self) -> u32 {
        0
    }
}

impl super::Outbound for BenchHost {
    fn callout(
        &self,
        _cluster: &[u8],
        _headers: &[(&[u8], &[u8])],
        _body: &[u8],
        _timeout_ms: u64,
    ) -> Result<u64, u32> {
        let id = self.next_callout.get() + 1;
        self.next_callout.set(id);
        self.bump(|e| e.callouts += 1);
        Ok(id)
    }

    fn start_stream(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        _end_stream: bool,
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        self.callout(cluster, headers, body, timeout_ms)
    }

    fn stream_send(&self, _id: u64, _data: &[u8], _end_stream: bool) -> bool {
        true
    }

    fn stream_trailers(&self, _id: u64, _trailers: &[(&[u8], &[u8])]) -> bool {
        true
    }

    fn stream_reset(&self, _id: u64) {}
}

/// # Safety
/// `ptr` is a `&'static AtomicU64`.
unsafe fn bench_commit(ptr: *mut core::ffi::c_void, _event: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { &*(ptr as *const AtomicU64) }.fetch_add(1, Ordering::AcqRel);
}

/// # Safety
/// Nothing to release: the counter is static.
unsafe fn bench_release(_ptr: *mut core::ffi::c_void) {}

impl super::context::StreamContext for BenchHost {
    fn active_span(&self) -> Option<super::context::SpanPtr> {
        // Any non-null address: the bench host never dereferences it.
        Some(super::context::SpanPtr(
            core::ptr::NonNull::<u8>::dangling().as_ptr().cast(),
        ))
    }

    fn span_edit(&self, _span: super::context::SpanPtr, _edit: super::context::SpanEdit<'_>) {
        self.bump(|e| e.span_edits += 1);
    }

    fn span_tags(&self, _span: super::context::SpanPtr, tags: &[(&[u8], &[u8])]) -> bool {
        self.bump(|e| e.span_edits += tags.len() as u32);
        true
    }

    fn span_child(
        &self,
        _span: super::context::SpanPtr,
        _operation: &[u8],
    ) -> Option<(super::context::SpanPtr, super::context::FinishSpan)> {
        /// Bench children own nothing.
        unsafe fn finish(_: super::context::SpanPtr) {}
        let p = core::ptr::NonNull::<u16>::dangling().as_ptr().cast();
        Some((
            super::context::SpanPtr(p),
            finish as super::context::FinishSpan,
        ))
    }

    fn timing(&self) -> Option<crate::abi::ffi::TimingInfo> {
        let mut t = crate::abi::ffi::TimingInfo::UNKNOWN;
        t.ns[0] = 1_700_000_000_000_000_000;
        t.has[0] = true;
        t.ns[11] = 1_000_000;
        t.has[11] = true;
        Some(t)
    }

    fn set_metadata_struct(&self, _ns: &[u8], serialized: &[u8]) -> bool {
        self.bump(|e| e.metadata += u32::from(!serialized.is_empty()));
        true
    }

    fn set_metadata_strs(&self, _ns: &[u8], pairs: &[(&[u8], &[u8])]) -> bool {
        self.bump(|e| e.metadata += pairs.len() as u32);
        true
    }
}
