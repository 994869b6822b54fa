//! The real host of an HTTP filter stream and of an HTTP filter config: each method is one or
//! two Envoy callbacks.

use super::{BodyKind, Host, Map, MetaKind, MetaRead, MetadataValue};
use crate::abi::ffi::{self, Buf, EnvoyConfigPtr, EnvoyFilterPtr, HeaderPair};
use crate::host::envoy::{
    CHUNKS, INLINE, PAIRS, global_log, global_log_at, global_log_enabled, with_pairs, with_scratch,
};
use crate::host::{Committer, ConfigHost, MetricKind, MetricOp, Outbound, Raw};
use arrayvec::ArrayVec;
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;

/// The Envoy side of one stream, valid for the duration of one hook.
pub(crate) struct EnvoyHost {
    ptr: EnvoyFilterPtr,
    /// The views of the body `copy_body` last fetched, for the next copy of the same hook.
    views: BodyViews,
}

/// Most chunk views a host keeps between two copies of one hook; a body in more chunks is
/// fetched again on each copy.
const KEPT_VIEWS: usize = 4;

/// The chunk views of one body, fetched by one `copy_body` and kept for the next reads of the
/// same hook, so that reading a chunk in small pieces (a handler's `read` loop, or a raw
/// filter's `copy_body` calls) asks Envoy for it once.
///
/// Envoy's views stay valid until the hook returns or the body is modified (ENVOY-ABI.md,
/// `http_get_body_chunks`). The host lives for one hook, and during it only Envoy modifies a
/// body, and Envoy runs only inside a call this host makes. Every such call except the three
/// body getters goes through [`EnvoyHost::filter`], which forgets the views first, so a kept
/// view is never read after anything that could have modified its body.
struct BodyViews {
    /// Nothing kept: 0; else the kept body's `BodyKind` plus 1.
    kind: Cell<u8>,
    /// How many of `views` are set.
    len: Cell<u8>,
    views: UnsafeCell<[MaybeUninit<Buf>; KEPT_VIEWS]>,
}

impl EnvoyHost {
    /// Wraps the filter pointer Envoy passed to the current hook.
    #[inline]
    pub(crate) fn new(filter: EnvoyFilterPtr) -> EnvoyHost {
        EnvoyHost {
            ptr: filter,
            views: BodyViews {
                kind: Cell::new(0),
                len: Cell::new(0),
                views: UnsafeCell::new([MaybeUninit::uninit(); KEPT_VIEWS]),
            },
        }
    }

    /// The filter pointer of the running hook, for a call that may run Envoy code that
    /// modifies a body: the kept body views are forgotten first.
    #[inline]
    pub(crate) fn filter(&self) -> EnvoyFilterPtr {
        self.views.kind.set(0);
        self.ptr
    }

    /// The views of body `kind` kept by `copy_body`, if any.
    #[inline]
    fn kept(&self, kind: BodyKind) -> Option<&[Buf]> {
        let v = &self.views;
        if v.kind.get() != kind as u8 + 1 {
            return None;
        }
        // SAFETY: `kind` says `copy_body` had Envoy write the first `len` entries (at most
        // `KEPT_VIEWS`), in this hook, for this body, and no call that could modify a body has
        // run since: each goes through `filter`, which clears `kind`. Only `copy_body` writes
        // the array, after clearing `kind` and while no slice of it is alive (it takes none
        // across the write, and this borrow of `self` ends before any later call of it).
        Some(unsafe {
            core::slice::from_raw_parts(
                v.views.get().cast::<Buf>().cast_const(),
                usize::from(v.len.get()),
            )
        })
    }

    /// `copy_body` through the thread's scratch array, for a body of `n` chunks.
    fn copy_body_uncached(&self, kind: BodyKind, n: usize, offset: usize, dst: &mut [u8]) -> usize {
        with_scratch(&CHUNKS, |chunks| {
            chunks.resize(n, Buf::EMPTY);
            // SAFETY: `chunks` has room for the `n` views Envoy writes; a getter modifies
            // nothing, so kept views stay valid.
            let ok = unsafe {
                ffi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.ptr,
                    kind as u32,
                    chunks.as_mut_ptr(),
                )
            };
            if !ok {
                return 0;
            }
            // SAFETY: Envoy's getter succeeded on the live filter: each chunk stays valid until
            // the body is modified or the stream ends, which nothing does before this function
            // returns (`ChunkArray::from_abi`'s contract for the length of this call: the views
            // are only copied into `dst`).
            let views = unsafe { crate::host::ChunkArray::from_abi(chunks) };
            crate::host::copy_from_chunks(views.iter(), offset, dst)
        })
    }
}

fn label_bufs(labels: &[&[u8]]) -> ArrayVec<Buf, INLINE> {
    labels.iter().take(INLINE).map(|l| Buf::of(l)).collect()
}

impl Host for EnvoyHost {
    fn header(&self, map: Map, key: &[u8], index: usize) -> (Option<Raw<'_>>, usize) {
        let mut out = Buf::EMPTY;
        let mut count = 0usize;
        // SAFETY: `filter` is the live filter of the current hook; `out` and `count` are valid
        // for writes; `key` outlives the call.
        let found = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_header(
                self.filter(),
                map as u32,
                Buf::of(key),
                &mut out,
                index,
                &mut count,
            )
        };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        let raw = (found && !out.ptr.is_null()).then(|| unsafe { Raw::new(out.ptr, out.len) });
        (raw, count)
    }

    fn for_each_header(&self, map: Map, f: &mut dyn FnMut(Raw<'_>, Raw<'_>)) {
        // SAFETY: live filter pointer.
        let n = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_headers_size(self.filter(), map as u32)
        };
        if n == 0 {
            return;
        }
        with_scratch(&PAIRS, |v| {
            v.resize(n, HeaderPair::EMPTY);
            // SAFETY: `v` has room for the `n` entries Envoy writes.
            let ok = unsafe {
                ffi::envoy_dynamic_module_callback_http_get_headers(
                    self.filter(),
                    map as u32,
                    v.as_mut_ptr(),
                )
            };
            if ok {
                for p in v.iter() {
                    f(
                        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid
                        // until their map/body/value is modified or the stream ends, as `Raw::new`
                        // requires for this `&self` borrow (within the hook).
                        unsafe { Raw::new(p.key_ptr, p.key_len) },
                        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid
                        // until their map/body/value is modified or the stream ends, as `Raw::new`
                        // requires for this `&self` borrow (within the hook).
                        unsafe { Raw::new(p.value_ptr, p.value_len) },
                    );
                }
            }
        })
    }

    fn set_header(&self, map: Map, key: &[u8], value: Option<&[u8]>) -> bool {
        let value = value.map_or(Buf::EMPTY, Buf::of);
        // SAFETY: live filter pointer; buffers outlive the call (a null value removes).
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_header(
                self.filter(),
                map as u32,
                Buf::of(key),
                value,
            )
        }
    }

    fn add_header(&self, map: Map, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; buffers outlive the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_add_header(
                self.filter(),
                map as u32,
                Buf::of(key),
                Buf::of(value),
            )
        }
    }

    fn body_len(&self, kind: BodyKind) -> usize {
        if let Some(views) = self.kept(kind) {
            return views.iter().map(|v| v.len).sum();
        }
        // SAFETY: live filter pointer; a getter modifies nothing, so kept views stay valid.
        unsafe { ffi::envoy_dynamic_module_callback_http_get_body_size(self.ptr, kind as u32) }
    }

    fn copy_body(&self, kind: BodyKind, offset: usize, dst: &mut [u8]) -> usize {
        if dst.is_empty() {
            return 0;
        }
        let tag = kind as u8 + 1;
        let v = &self.views;
        if v.kind.get() != tag {
            // SAFETY: live filter pointer; a getter modifies nothing.
            let n = unsafe {
                ffi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.ptr, kind as u32)
            };
            // The other body's views, if kept, are given up; and these are forgotten while
            // Envoy writes them, so a failed fetch keeps nothing.
            v.kind.set(0);
            if n > KEPT_VIEWS {
                return self.copy_body_uncached(kind, n, offset, dst);
            }
            // SAFETY: the array has room for the `n` (at most `KEPT_VIEWS`) views Envoy writes,
            // and no reference into it is alive (references are only made below, within this
            // call). A getter modifies nothing.
            let ok = n == 0
                || unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_body_chunks(
                        self.ptr,
                        kind as u32,
                        v.views.get().cast::<Buf>(),
                    )
                };
            if !ok {
                return 0;
            }
            v.len.set(n as u8);
            v.kind.set(tag);
        }
        let Some(chunks) = self.kept(kind) else {
            return 0;
        };
        // SAFETY: `kept` gives views fetched in this hook for this body with nothing that could
        // modify it since: each is valid and unchanged for the length of this call
        // (`ChunkArray::from_abi`'s contract; the views are only copied into `dst`).
        let views = unsafe { crate::host::ChunkArray::from_abi(chunks) };
        crate::host::copy_from_chunks(views.iter(), offset, dst)
    }

    fn received_is_buffered(&self, request: bool) -> bool {
        // SAFETY: live filter pointer; a getter modifies nothing, so kept views stay valid.
        unsafe {
            if request {
                ffi::envoy_dynamic_module_callback_http_received_buffered_request_body(self.ptr)
            } else {
                ffi::envoy_dynamic_module_callback_http_received_buffered_response_body(self.ptr)
            }
        }
    }

    fn drain_body(&self, kind: BodyKind, n: usize) -> bool {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_drain_body(self.filter(), kind as u32, n) }
    }

    fn append_body(&self, kind: BodyKind, data: &[u8]) -> bool {
        // SAFETY: live filter pointer; Envoy copies `data`.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_append_body(
                self.filter(),
                kind as u32,
                Buf::of(data),
            )
        }
    }

    fn send_response(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8], details: &[u8]) {
        with_pairs(headers, |ptr, n| {
            let details = if details.is_empty() {
                Buf::EMPTY
            } else {
                Buf::of(details)
            };
            // SAFETY: live filter pointer; every pointer stays valid for the call and Envoy
            // copies what it keeps.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_send_response(
                    self.filter(),
                    status,
                    ptr,
                    n,
                    Buf::of(body),
                    details,
                )
            }
        })
    }

    fn send_response_headers(&self, headers: &[(&[u8], &[u8])], end_stream: bool) {
        with_pairs(headers, |ptr, n| {
            // SAFETY: as in `send_response`.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_send_response_headers(
                    self.filter(),
                    ptr,
                    n,
                    end_stream,
                )
            }
        })
    }

    fn send_response_data(&self, data: &[u8], end_stream: bool) {
        // SAFETY: live filter pointer; Envoy copies `data`.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_send_response_data(
                self.filter(),
                Buf::of(data),
                end_stream,
            )
        }
    }

    fn send_response_trailers(&self, trailers: &[(&[u8], &[u8])]) {
        with_pairs(trailers, |ptr, n| {
            // SAFETY: as in `send_response`.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_send_response_trailers(
                    self.filter(),
                    ptr,
                    n,
                )
            }
        })
    }

    fn reset_stream(&self, details: &[u8]) {
        // SAFETY: live filter pointer.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_reset_stream(
                self.filter(),
                crate::abi::http::RESET_LOCAL,
                Buf::of(details),
            )
        }
    }

    fn continue_decoding(&self) {
        // SAFETY: live filter pointer, called on its worker.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_decoding(self.filter()) }
    }

    fn continue_encoding(&self) {
        // SAFETY: live filter pointer, called on its worker.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_continue_encoding(self.filter()) }
    }

    fn append_metadata(&self, ns: &[u8], key: &[u8], value: MetadataValue<'_>) -> bool {
        let (ns, key) = (Buf::of(ns), Buf::of(key));
        // SAFETY: live filter pointer; Envoy copies the buffers during the call.
        unsafe {
            match value {
                MetadataValue::Str(s) => {
                    ffi::envoy_dynamic_module_callback_http_add_dynamic_metadata_list_string(
                        self.filter(),
                        ns,
                        key,
                        Buf::of(s),
                    )
                }
                MetadataValue::Num(n) => {
                    ffi::envoy_dynamic_module_callback_http_add_dynamic_metadata_list_number(
                        self.filter(),
                        ns,
                        key,
                        n,
                    )
                }
                MetadataValue::Bool(b) => {
                    ffi::envoy_dynamic_module_callback_http_add_dynamic_metadata_list_bool(
                        self.filter(),
                        ns,
                        key,
                        b,
                    )
                }
            }
        }
    }

    fn set_metadata(&self, ns: &[u8], key: &[u8], value: MetadataValue<'_>) {
        let (ns, key) = (Buf::of(ns), Buf::of(key));
        // SAFETY: live filter pointer; Envoy copies the buffers.
        unsafe {
            match value {
                MetadataValue::Str(s) => {
                    ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                        self.filter(),
                        ns,
                        key,
                        Buf::of(s),
                    )
                }
                MetadataValue::Num(n) => {
                    ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_number(
                        self.filter(),
                        ns,
                        key,
                        n,
                    )
                }
                MetadataValue::Bool(b) => {
                    ffi::envoy_dynamic_module_callback_http_set_dynamic_metadata_bool(
                        self.filter(),
                        ns,
                        key,
                        b,
                    )
                }
            }
        }
    }

    fn metadata(&self, source: u32, ns: &[u8], key: &[u8], kind: MetaKind) -> Option<MetaRead<'_>> {
        let (ns, key) = (Buf::of(ns), Buf::of(key));
        match kind {
            MetaKind::Str => {
                let mut out = Buf::EMPTY;
                // SAFETY: live filter pointer; `out` valid for writes; Envoy reads the buffers
                // during the call only.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_metadata_string(
                        self.filter(),
                        source,
                        ns,
                        key,
                        &mut out,
                    )
                };
                // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until
                // their map/body/value is modified or the stream ends, as `Raw::new` requires for
                // this `&self` borrow (within the hook).
                ok.then(|| MetaRead::Str(unsafe { Raw::new(out.ptr, out.len) }))
            }
            MetaKind::Num => {
                let mut out = 0f64;
                // SAFETY: as above.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_metadata_number(
                        self.filter(),
                        source,
                        ns,
                        key,
                        &mut out,
                    )
                };
                ok.then_some(MetaRead::Num(out))
            }
            MetaKind::Bool => {
                let mut out = false;
                // SAFETY: as above.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_metadata_bool(
                        self.filter(),
                        source,
                        ns,
                        key,
                        &mut out,
                    )
                };
                ok.then_some(MetaRead::Bool(out))
            }
        }
    }

    fn metadata_names(&self, source: u32, ns: Option<&[u8]>, f: &mut dyn FnMut(Raw<'_>)) {
        // SAFETY: live filter pointer; Envoy reads `ns` during the call only.
        let count = unsafe {
            match ns {
                Some(ns) => ffi::envoy_dynamic_module_callback_http_get_metadata_keys_count(
                    self.filter(),
                    source,
                    Buf::of(ns),
                ),
                None => ffi::envoy_dynamic_module_callback_http_get_metadata_namespaces_count(
                    self.filter(),
                    source,
                ),
            }
        };
        if count == 0 {
            return;
        }
        // Up to 32 names on the stack; more (rare) in a heap buffer.
        let mut inline = [Buf::EMPTY; 32];
        let mut heap = Vec::new();
        let out: &mut [Buf] = if count <= inline.len() {
            &mut inline[..count]
        } else {
            heap.resize(count, Buf::EMPTY);
            &mut heap
        };
        // SAFETY: live filter pointer; `out` holds `count` writable entries, the number Envoy
        // just reported for the same source and namespace on this thread (nothing ran between).
        let ok = unsafe {
            match ns {
                Some(ns) => ffi::envoy_dynamic_module_callback_http_get_metadata_keys(
                    self.filter(),
                    source,
                    Buf::of(ns),
                    out.as_mut_ptr(),
                ),
                None => ffi::envoy_dynamic_module_callback_http_get_metadata_namespaces(
                    self.filter(),
                    source,
                    out.as_mut_ptr(),
                ),
            }
        };
        if ok {
            for b in out.iter() {
                // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until
                // their map/body/value is modified or the stream ends, as `Raw::new` requires for
                // this `&self` borrow (within the hook).
                f(unsafe { Raw::new(b.ptr, b.len) });
            }
        }
    }

    fn metadata_list_len(&self, source: u32, ns: &[u8], key: &[u8]) -> Option<usize> {
        let mut out = 0usize;
        // SAFETY: live filter pointer; `out` valid for writes; Envoy reads the buffers during the
        // call only.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_metadata_list_size(
                self.filter(),
                source,
                Buf::of(ns),
                Buf::of(key),
                &mut out,
            )
        };
        ok.then_some(out)
    }

    fn metadata_list_item(
        &self,
        source: u32,
        ns: &[u8],
        key: &[u8],
        index: usize,
        kind: MetaKind,
    ) -> Option<MetaRead<'_>> {
        let (ns, key) = (Buf::of(ns), Buf::of(key));
        match kind {
            MetaKind::Str => {
                let mut out = Buf::EMPTY;
                // SAFETY: live filter pointer; `out` valid for writes; Envoy reads the buffers
                // during the call only and points `out` into the metadata, which the caller
                // copies before the next host call.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_metadata_list_string(
                        self.filter(),
                        source,
                        ns,
                        key,
                        index,
                        &mut out,
                    )
                };
                // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until
                // their map/body/value is modified or the stream ends, as `Raw::new` requires for
                // this `&self` borrow (within the hook).
                ok.then(|| MetaRead::Str(unsafe { Raw::new(out.ptr, out.len) }))
            }
            MetaKind::Num => {
                let mut out = 0f64;
                // SAFETY: live filter pointer; `out` valid for writes.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_metadata_list_number(
                        self.filter(),
                        source,
                        ns,
                        key,
                        index,
                        &mut out,
                    )
                };
                ok.then_some(MetaRead::Num(out))
            }
            MetaKind::Bool => {
                let mut out = false;
                // SAFETY: live filter pointer; `out` valid for writes.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_get_metadata_list_bool(
                        self.filter(),
                        source,
                        ns,
                        key,
                        index,
                        &mut out,
                    )
                };
                ok.then_some(MetaRead::Bool(out))
            }
        }
    }

    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; Envoy copies the buffers.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.filter(),
                Buf::of(key),
                Buf::of(value),
            )
        }
    }

    fn filter_state(&self, key: &[u8]) -> Option<Raw<'_>> {
        let mut out = Buf::EMPTY;
        // SAFETY: live filter pointer; `out` valid for writes.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.filter(),
                Buf::of(key),
                &mut out,
            )
        };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        ok.then(|| unsafe { Raw::new(out.ptr, out.len) })
    }

    fn clear_route_cache(&self) {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cache(self.filter()) }
    }

    fn clear_route_cluster_cache(&self) {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_clear_route_cluster_cache(self.filter()) }
    }

    fn add_custom_flag(&self, flag: &[u8]) {
        // SAFETY: live filter pointer; Envoy copies the flag during the call.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_add_custom_flag(self.filter(), Buf::of(flag))
        }
    }

    fn cluster_name(&self) -> Option<Raw<'_>> {
        let mut out = Buf::EMPTY;
        // SAFETY: live filter pointer; `out` is valid for writes. On success Envoy points `out`
        // at its cluster info's name, which the caller copies before the next host call.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_cluster_name(self.filter(), &mut out)
        };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        ok.then(|| unsafe { Raw::new(out.ptr.cast(), out.len) })
    }

    fn cluster_host_count(&self, priority: u32) -> Option<[u64; 3]> {
        let (mut total, mut healthy, mut degraded) = (0usize, 0usize, 0usize);
        // SAFETY: live filter pointer; the three counters are valid for writes.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_cluster_host_count(
                self.filter(),
                priority,
                &mut total,
                &mut healthy,
                &mut degraded,
            )
        };
        ok.then_some([total as u64, healthy as u64, degraded as u64])
    }

    fn buffer_limit(&self) -> u64 {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_get_buffer_limit(self.filter()) }
    }

    fn set_buffer_limit(&self, limit: u64) {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_set_buffer_limit(self.filter(), limit) }
    }

    fn attr_str(&self, id: u32) -> Option<Raw<'_>> {
        let mut out = Buf::EMPTY;
        // SAFETY: live filter pointer; `out` valid for writes.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter(),
                id,
                &mut out,
            )
        };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        ok.then(|| unsafe { Raw::new(out.ptr, out.len) })
    }

    fn attr_int(&self, id: u32) -> Option<u64> {
        let mut out = 0u64;
        // SAFETY: live filter pointer; `out` valid for writes.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.filter(),
                id,
                &mut out,
            )
        };
        ok.then_some(out)
    }

    fn attr_bool(&self, id: u32) -> Option<bool> {
        let mut out = false;
        // SAFETY: live filter pointer; `out` valid for writes.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_get_attribute_bool(
                self.filter(),
                id,
                &mut out,
            )
        };
        ok.then_some(out)
    }

    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> u32 {
        let bufs = label_bufs(labels);
        let (ptr, n) = if bufs.is_empty() {
            (core::ptr::null(), 0)
        } else {
            (bufs.as_ptr(), bufs.len())
        };
        // SAFETY: live filter pointer; `ptr` points at `n` label buffers valid for the call.
        unsafe {
            match op {
                MetricOp::CounterAdd => {
                    ffi::envoy_dynamic_module_callback_http_filter_increment_counter(
                        self.filter(),
                        id,
                        ptr,
                        n,
                        value,
                    )
                }
                MetricOp::GaugeAdd => {
                    ffi::envoy_dynamic_module_callback_http_filter_increment_gauge(
                        self.filter(),
                        id,
                        ptr,
                        n,
                        value,
                    )
                }
                MetricOp::GaugeSub => {
                    ffi::envoy_dynamic_module_callback_http_filter_decrement_gauge(
                        self.filter(),
                        id,
                        ptr,
                        n,
                        value,
                    )
                }
                MetricOp::GaugeSet => ffi::envoy_dynamic_module_callback_http_filter_set_gauge(
                    self.filter(),
                    id,
                    ptr,
                    n,
                    value,
                ),
                MetricOp::HistogramRecord => {
                    ffi::envoy_dynamic_module_callback_http_filter_record_histogram_value(
                        self.filter(),
                        id,
                        ptr,
                        n,
                        value,
                    )
                }
            }
        }
    }

    fn log_enabled(&self, level: u32) -> bool {
        global_log_enabled(level)
    }

    fn log(&self, level: u32, msg: &[u8]) {
        global_log(level, msg)
    }

    fn log_at(&self, level: u32, msg: &[u8], file: &str, line: u32) {
        global_log_at(level, msg, file, line)
    }

    fn new_scheduler(&self) -> Committer {
        // SAFETY: live filter pointer, called on its worker inside a hook.
        let ptr =
            unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_new(self.filter()) };
        // SAFETY: Envoy documents commit as callable from any thread until delete, and the
        // committer deletes exactly once, on drop.
        unsafe { Committer::new(ptr, scheduler_commit, scheduler_delete) }
    }

    fn route_config(&self) -> *const core::ffi::c_void {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_get_most_specific_route_config(self.filter()) }
    }

    fn set_upstream_override_host(&self, host: &[u8], strict: bool) -> bool {
        // SAFETY: live filter pointer; Envoy copies the host string.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_upstream_override_host(
                self.filter(),
                Buf::of(host),
                strict,
            )
        }
    }

    fn worker_index(&self) -> u32 {
        // SAFETY: live filter pointer.
        unsafe { ffi::envoy_dynamic_module_callback_http_filter_get_worker_index(self.filter()) }
    }
}

/// Commits an event on an Envoy scheduler.
///
/// # Safety
/// `ptr` came from `scheduler_new` and is not yet deleted.
unsafe fn config_scheduler_commit(ptr: *mut core::ffi::c_void, event: u64) {
    // SAFETY: `ptr` is a live config scheduler (the committer has not deleted it yet).
    unsafe { ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(ptr, event) }
}

unsafe fn config_scheduler_delete(ptr: *mut core::ffi::c_void) {
    // SAFETY: called once, by the committer's drop.
    unsafe { ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(ptr) }
}

unsafe fn scheduler_commit(ptr: *mut core::ffi::c_void, event: u64) {
    // SAFETY: guaranteed by the caller; Envoy allows commits from any thread.
    unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_commit(ptr, event) }
}

/// Deletes an Envoy scheduler.
///
/// # Safety
/// `ptr` came from `scheduler_new`; called once.
unsafe fn scheduler_delete(ptr: *mut core::ffi::c_void) {
    // SAFETY: guaranteed by the caller.
    unsafe { ffi::envoy_dynamic_module_callback_http_filter_scheduler_delete(ptr) }
}

/// The Envoy side of a filter config during `on_http_filter_config_new`.
pub(crate) struct EnvoyConfigHost {
    config: EnvoyConfigPtr,
}

impl EnvoyConfigHost {
    pub(crate) fn new(config: EnvoyConfigPtr) -> EnvoyConfigHost {
        EnvoyConfigHost { config }
    }

    /// The config pointer of the running call.
    fn config(&self) -> EnvoyConfigPtr {
        self.config
    }
}

impl ConfigHost for EnvoyConfigHost {
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        let bufs: ArrayVec<Buf, INLINE> = labels
            .iter()
            .take(INLINE)
            .map(|l| Buf::of(l.as_bytes()))
            .collect();
        let (ptr, n) = if bufs.is_empty() {
            (core::ptr::null(), 0)
        } else {
            (bufs.as_ptr(), bufs.len())
        };
        let mut id = 0usize;
        let name = Buf::of(name.as_bytes());
        // SAFETY: `config` is the Envoy config of the running config_new; buffers and `id` are
        // valid for the call.
        let rc = unsafe {
            match kind {
                MetricKind::Counter => {
                    ffi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                        self.config,
                        name,
                        ptr,
                        n,
                        &mut id,
                    )
                }
                MetricKind::Gauge => {
                    ffi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                        self.config,
                        name,
                        ptr,
                        n,
                        &mut id,
                    )
                }
                MetricKind::Histogram => {
                    ffi::envoy_dynamic_module_callback_http_filter_config_define_histogram(
                        self.config,
                        name,
                        ptr,
                        n,
                        &mut id,
                    )
                }
            }
        };
        if rc == crate::abi::callout_init::SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    fn log_enabled(&self, level: u32) -> bool {
        global_log_enabled(level)
    }

    fn log(&self, level: u32, msg: &[u8]) {
        global_log(level, msg)
    }

    fn log_at(&self, level: u32, msg: &[u8], file: &str, line: u32) {
        global_log_at(level, msg, file, line)
    }

    fn new_scheduler(&self) -> Committer {
        // SAFETY: live config pointer, on the main thread (config load).
        let ptr = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.config)
        };
        // SAFETY: commit is callable from any thread until delete; the committer deletes
        // exactly once, on drop (at config destroy, on the main thread).
        unsafe { Committer::new(ptr, config_scheduler_commit, config_scheduler_delete) }
    }

    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> Option<u32> {
        let late = crate::abi::late::get();
        let f = match op {
            MetricOp::CounterAdd => late.config_increment_counter,
            MetricOp::GaugeAdd => late.config_increment_gauge,
            MetricOp::GaugeSub => late.config_decrement_gauge,
            MetricOp::GaugeSet => late.config_set_gauge,
            MetricOp::HistogramRecord => late.config_record_histogram_value,
        }?;
        let bufs = label_bufs(labels);
        let ptr = if bufs.is_empty() {
            core::ptr::null()
        } else {
            bufs.as_ptr()
        };
        // SAFETY: `f` is Envoy's config-level metric update of this kind (resolved by name;
        // signature per the ABI); live config pointer on the main thread; `ptr` points at
        // `bufs.len()` label buffers valid for the call.
        Some(unsafe { f(self.config, id, ptr, bufs.len(), value) })
    }

    fn subscribe_secret(&self, name: &[u8], source: &[u8]) -> Option<u64> {
        let f = crate::abi::late::get().config_generic_secret_subscribe?;
        // SAFETY: Envoy's `generic_secret_subscribe` (resolved by name); the config pointer is
        // live during config load, the only time jisr calls this; Envoy copies the buffers.
        Some(unsafe { f(self.config, Buf::of(name), Buf::of(source)) })
    }

    fn secret(&self, handle: u64) -> Option<Vec<u8>> {
        let f = crate::abi::late::get().config_get_generic_secret?;
        let mut out = Buf::EMPTY;
        // SAFETY: Envoy's `config_get_generic_secret` (resolved by name); live config pointer;
        // Envoy refuses a bad handle; the bytes are copied before anything else runs.
        let ok = unsafe { f(self.config, handle, &mut out) };
        // SAFETY: Envoy's getter succeeded: the secret's bytes stay valid until it is next
        // updated (on this main thread, not during this call), as `Raw::new` requires for this
        // `&self` borrow; they are copied at once.
        ok.then(|| unsafe { Raw::new(out.ptr, out.len) }.to_vec())
    }

    fn process_log(&self) -> Option<fn(u32, &[u8])> {
        Some(global_log)
    }
}

/// One family of Envoy's outbound calls: the stream's (`http_filter_*`) or the config's
/// (`http_filter_config_*`); both take their owner's pointer first.
struct OutboundFns {
    callout: unsafe extern "C" fn(
        *mut core::ffi::c_void,
        *mut u64,
        Buf,
        *const HeaderPair,
        usize,
        Buf,
        u64,
    ) -> u32,
    start: unsafe extern "C" fn(
        *mut core::ffi::c_void,
        *mut u64,
        Buf,
        *const HeaderPair,
        usize,
        Buf,
        bool,
        u64,
    ) -> u32,
    send: unsafe extern "C" fn(*mut core::ffi::c_void, u64, Buf, bool) -> bool,
    trailers: unsafe extern "C" fn(*mut core::ffi::c_void, u64, *const HeaderPair, usize) -> bool,
    reset: unsafe extern "C" fn(*mut core::ffi::c_void, u64),
}

const STREAM_OUTBOUND: OutboundFns = OutboundFns {
    callout: ffi::envoy_dynamic_module_callback_http_filter_http_callout,
    start: ffi::envoy_dynamic_module_callback_http_filter_start_http_stream,
    send: ffi::envoy_dynamic_module_callback_http_stream_send_data,
    trailers: ffi::envoy_dynamic_module_callback_http_stream_send_trailers,
    reset: ffi::envoy_dynamic_module_callback_http_filter_reset_http_stream,
};

const CONFIG_OUTBOUND: OutboundFns = OutboundFns {
    callout: ffi::envoy_dynamic_module_callback_http_filter_config_http_callout,
    start: ffi::envoy_dynamic_module_callback_http_filter_config_start_http_stream,
    send: ffi::envoy_dynamic_module_callback_http_filter_config_stream_send_data,
    trailers: ffi::envoy_dynamic_module_callback_http_filter_config_stream_send_trailers,
    reset: ffi::envoy_dynamic_module_callback_http_filter_config_reset_http_stream,
};

/// Implements `Outbound` for a host whose Envoy pointer the method `$ptr` returns, with the calls of `$fns`.
/// The pointer must be live for the hook (a filter pointer on its worker, a config pointer on
/// the main thread); Envoy copies every buffer during the call.
macro_rules! outbound {
    ($host:ty, $ptr:ident, $fns:expr) => {
        impl Outbound for $host {
            fn callout(
                &self,
                cluster: &[u8],
                headers: &[(&[u8], &[u8])],
                body: &[u8],
                timeout_ms: u64,
            ) -> Result<u64, u32> {
                let mut id = 0u64;
                let rc = with_pairs(headers, |ptr, n| {
                    // SAFETY: live owner pointer (see the macro); buffers valid for the call.
                    unsafe {
                        ($fns.callout)(
                            self.$ptr(),
                            &mut id,
                            Buf::of(cluster),
                            ptr,
                            n,
                            Buf::of(body),
                            timeout_ms,
                        )
                    }
                });
                if rc == crate::abi::callout_init::SUCCESS {
                    Ok(id)
                } else {
                    Err(rc)
                }
            }

            fn start_stream(
                &self,
                cluster: &[u8],
                headers: &[(&[u8], &[u8])],
                body: &[u8],
                end_stream: bool,
                timeout_ms: u64,
            ) -> Result<u64, u32> {
                let mut id = 0u64;
                let rc = with_pairs(headers, |ptr, n| {
                    // SAFETY: live owner pointer (see the macro); buffers valid for the call.
                    unsafe {
                        ($fns.start)(
                            self.$ptr(),
                            &mut id,
                            Buf::of(cluster),
                            ptr,
                            n,
                            Buf::of(body),
                            end_stream,
                            timeout_ms,
                        )
                    }
                });
                if rc == crate::abi::callout_init::SUCCESS {
                    Ok(id)
                } else {
                    Err(rc)
                }
            }

            fn stream_send(&self, id: u64, data: &[u8], end_stream: bool) -> bool {
                // SAFETY: live owner pointer (see the macro); Envoy copies the data.
                unsafe { ($fns.send)(self.$ptr(), id, Buf::of(data), end_stream) }
            }

            fn stream_trailers(&self, id: u64, trailers: &[(&[u8], &[u8])]) -> bool {
                with_pairs(trailers, |ptr, n| {
                    // SAFETY: live owner pointer (see the macro); Envoy copies the trailers.
                    unsafe { ($fns.trailers)(self.$ptr(), id, ptr, n) }
                })
            }

            fn stream_reset(&self, id: u64) {
                // SAFETY: live owner pointer (see the macro).
                unsafe { ($fns.reset)(self.$ptr(), id) }
            }
        }
    };
}

outbound!(EnvoyHost, filter, STREAM_OUTBOUND);
outbound!(EnvoyConfigHost, config, CONFIG_OUTBOUND);
