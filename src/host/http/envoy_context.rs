//! The real host's tracing, socket-option, stream-control, filter-state, upstream, timing and
//! secret calls.

use super::context::{
    Addr, FinishSpan, ObjectDtor, SockOpt, SpanEdit, SpanField, SpanPtr, StreamContext,
};
use super::envoy::EnvoyHost;
use super::{Host, Map};
use crate::abi::ffi::{self, Buf, HeaderPair, TimingInfo};
use crate::abi::late;
use crate::host::Raw;
use crate::host::envoy::with_scratch;
use core::ffi::c_void;
use std::cell::RefCell;

thread_local! {
    // The array Envoy fills with the upstream hosts a request tried (grown once per worker).
    static HOSTS: RefCell<Vec<Buf>> = const { RefCell::new(Vec::new()) };
    static IDS: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Most values one `get_header_values` call fetches.
const BATCH: usize = 16;

/// Finishes a child span made by [`EnvoyHost::span_child`].
///
/// # Safety
/// `span` must be a child span Envoy returned from `span_spawn_child` that was not finished.
unsafe fn finish_child(span: SpanPtr) {
    // SAFETY: per this function's contract, `span` is a live child span the module owns; Envoy
    // frees it here and it is never used again.
    unsafe { ffi::envoy_dynamic_module_callback_http_child_span_finish(span.0) }
}

impl StreamContext for EnvoyHost {
    fn header_values(
        &self,
        map: Map,
        key: &[u8],
        max: usize,
        f: &mut dyn FnMut(Raw<'_>),
    ) -> Option<usize> {
        let batch = late::get().get_header_values?;
        // One value (the common case) needs one call; more need the count first.
        let (first, n) = self.header(map, key, 0);
        if n > max || n > BATCH {
            return None;
        }
        if n <= 1 {
            if let Some(v) = first {
                f(v);
            }
            return Some(n);
        }
        let mut out = [Buf::EMPTY; BATCH];
        // SAFETY: `batch` is Envoy's `get_header_values` (resolved by name; signature per the
        // ABI); live filter pointer; `out` has room for the `n` values Envoy just counted for
        // this key, and the map cannot change between the two calls (nothing runs between
        // them). The views are valid until the map changes; `f` copies them at once.
        let ok = unsafe { batch(self.filter(), map as u32, Buf::of(key), out.as_mut_ptr()) };
        if !ok {
            return None;
        }
        for b in &out[..n] {
            // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
            // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
            // requires for this `&self` borrow of the host (within the hook).
            f(unsafe { Raw::new(b.ptr, b.len) });
        }
        Some(n)
    }

    fn set_metadata_strs(&self, ns: &[u8], pairs: &[(&[u8], &[u8])]) -> bool {
        let Some(batch) = late::get().set_dynamic_metadata_string_batch else {
            return false;
        };
        let mut kv = [HeaderPair::EMPTY; BATCH];
        for chunk in pairs.chunks(BATCH) {
            for (slot, (k, v)) in kv.iter_mut().zip(chunk) {
                *slot = HeaderPair::of(k, v);
            }
            // SAFETY: `batch` is Envoy's `set_dynamic_metadata_string_batch` (resolved by name;
            // its key/value pair has the layout of `HeaderPair`); live filter pointer; `kv`
            // holds `chunk.len()` pairs viewing buffers that outlive the call; Envoy copies.
            unsafe { batch(self.filter(), Buf::of(ns), kv.as_ptr(), chunk.len()) };
        }
        true
    }

    fn active_span(&self) -> Option<SpanPtr> {
        // SAFETY: live filter pointer (the host exists only inside a hook of this stream).
        let p = unsafe { ffi::envoy_dynamic_module_callback_http_get_active_span(self.filter()) };
        (!p.is_null()).then_some(SpanPtr(p))
    }

    fn span_edit(&self, span: SpanPtr, edit: SpanEdit<'_>) {
        let s = span.0;
        // SAFETY: `span` is the stream's active span (valid while the stream lives) or an open
        // child span (valid until finished; the child table guarantees it is not yet); the
        // filter pointer is live; Envoy copies the module buffers during the call.
        unsafe {
            match edit {
                SpanEdit::Tag(k, v) => {
                    ffi::envoy_dynamic_module_callback_http_span_set_tag(s, Buf::of(k), Buf::of(v))
                }
                SpanEdit::Log(event) => ffi::envoy_dynamic_module_callback_http_span_log(
                    self.filter(),
                    s,
                    Buf::of(event),
                ),
                SpanEdit::Operation(op) => {
                    ffi::envoy_dynamic_module_callback_http_span_set_operation(s, Buf::of(op))
                }
                SpanEdit::Sampled(b) => {
                    ffi::envoy_dynamic_module_callback_http_span_set_sampled(s, b)
                }
                SpanEdit::Baggage(k, v) => {
                    ffi::envoy_dynamic_module_callback_http_span_set_baggage(
                        s,
                        Buf::of(k),
                        Buf::of(v),
                    )
                }
            }
        }
    }

    fn span_tags(&self, span: SpanPtr, tags: &[(&[u8], &[u8])]) -> bool {
        let Some(batch) = late::get().span_set_tag_batch else {
            return false;
        };
        let mut kv = [HeaderPair::EMPTY; BATCH];
        for chunk in tags.chunks(BATCH) {
            for (slot, (k, v)) in kv.iter_mut().zip(chunk) {
                *slot = HeaderPair::of(k, v);
            }
            // SAFETY: `batch` is Envoy's `span_set_tag_batch` (resolved by name; a tag is laid
            // out like `HeaderPair`); `span` is live as in `span_edit`; `kv` holds
            // `chunk.len()` pairs viewing buffers that outlive the call; Envoy copies them.
            unsafe { batch(span.0, kv.as_ptr(), chunk.len()) };
        }
        true
    }

    fn span_disable_local_decision(&self, span: SpanPtr) -> bool {
        let Some(f) = late::get().span_disable_local_decision else {
            return false;
        };
        // SAFETY: `f` is Envoy's `span_disable_local_decision` (resolved by name, signature per
        // the ABI); `span` is live as in `span_edit`.
        unsafe { f(span.0) };
        true
    }

    fn span_read(&self, span: SpanPtr, field: SpanField<'_>) -> Option<Raw<'_>> {
        let mut out = Buf::EMPTY;
        // SAFETY: `span` is live as in `span_edit`; `out` is valid for writes. Envoy points it
        // at a thread-local buffer valid until the next tracing call, and the caller copies it
        // before making one.
        let ok = unsafe {
            match field {
                SpanField::Baggage(k) => ffi::envoy_dynamic_module_callback_http_span_get_baggage(
                    span.0,
                    Buf::of(k),
                    &mut out,
                ),
                SpanField::TraceId => {
                    ffi::envoy_dynamic_module_callback_http_span_get_trace_id(span.0, &mut out)
                }
                SpanField::SpanId => {
                    ffi::envoy_dynamic_module_callback_http_span_get_span_id(span.0, &mut out)
                }
            }
        };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        ok.then(|| unsafe { Raw::new(out.ptr, out.len) })
    }

    fn span_child(&self, span: SpanPtr, operation: &[u8]) -> Option<(SpanPtr, FinishSpan)> {
        // SAFETY: live filter pointer; `span` is live as in `span_edit`; Envoy copies the name.
        let p = unsafe {
            ffi::envoy_dynamic_module_callback_http_span_spawn_child(
                self.filter(),
                span.0,
                Buf::of(operation),
            )
        };
        (!p.is_null()).then_some((SpanPtr(p), finish_child as FinishSpan))
    }

    fn socket_option_int(&self, o: SockOpt) -> Option<i64> {
        let mut v = 0i64;
        // SAFETY: live filter pointer; `v` is valid for writes; the enums are in range (the API
        // layer builds them from its own enums).
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_socket_option_int(
                self.filter(),
                o.level,
                o.name,
                o.state,
                o.direction,
                &mut v,
            )
        };
        ok.then_some(v)
    }

    fn socket_option_bytes(&self, o: SockOpt) -> Option<Raw<'_>> {
        let mut out = Buf::EMPTY;
        // SAFETY: as in `socket_option_int`; Envoy points `out` at the option it stores for the
        // stream, which the caller copies before the next host call.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_socket_option_bytes(
                self.filter(),
                o.level,
                o.name,
                o.state,
                o.direction,
                &mut out,
            )
        };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        ok.then(|| unsafe { Raw::new(out.ptr, out.len) })
    }

    fn set_socket_option_int(&self, o: SockOpt, value: i64) -> bool {
        // SAFETY: live filter pointer; the enums are in range.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_socket_option_int(
                self.filter(),
                o.level,
                o.name,
                o.state,
                o.direction,
                value,
            )
        }
    }

    fn set_socket_option_bytes(&self, o: SockOpt, value: &[u8]) -> bool {
        // SAFETY: live filter pointer; the enums are in range; Envoy copies the value.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_socket_option_bytes(
                self.filter(),
                o.level,
                o.name,
                o.state,
                o.direction,
                Buf::of(value),
            )
        }
    }

    fn goaway_and_close(&self, graceful: bool) {
        // SAFETY: live filter pointer. Envoy may reset the stream inside the call; the state
        // machine calls this only after the poll ended, with nothing borrowed from Envoy.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_send_go_away_and_close(
                self.filter(),
                graceful,
            )
        }
    }

    fn recreate_stream(&self) -> bool {
        // SAFETY: live filter pointer; null headers with length 0 keep the current request
        // headers. Called, like a reply, only after the poll ended.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_recreate_stream(
                self.filter(),
                core::ptr::null(),
                0,
            )
        }
    }

    fn set_filter_state_typed(&self, key: &[u8], value: &[u8]) -> bool {
        // SAFETY: live filter pointer; Envoy copies both buffers.
        unsafe {
            ffi::envoy_dynamic_module_callback_http_set_filter_state_typed(
                self.filter(),
                Buf::of(key),
                Buf::of(value),
            )
        }
    }

    fn filter_state_typed(&self, key: &[u8]) -> Option<Raw<'_>> {
        let mut out = Buf::EMPTY;
        // SAFETY: live filter pointer; `out` valid for writes; the serialized bytes stay valid
        // until the hook ends or a filter-state setter runs, and the caller copies them first.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_filter_state_typed(
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

    fn timing(&self) -> Option<TimingInfo> {
        let f = late::get().get_timing_info?;
        let mut out = TimingInfo::UNKNOWN;
        // SAFETY: `f` is Envoy's `get_timing_info` (resolved by name; `TimingInfo` is laid out
        // as the ABI's `timing_info_v2`); live filter pointer; `out` is valid for writes.
        unsafe { f(self.filter(), &mut out) };
        Some(out)
    }

    fn address(&self, which: Addr) -> Option<Option<Raw<'_>>> {
        let late = late::get();
        let f = match which {
            Addr::DownstreamDirectRemote => late.get_downstream_direct_remote_address?,
            Addr::UpstreamRemote => late.get_upstream_remote_address?,
        };
        let mut out = Buf::EMPTY;
        // SAFETY: `f` is Envoy's address getter (resolved by name; signature per the ABI);
        // live filter pointer; `out` valid for writes. The string is owned by the address
        // object, which the stream keeps; the caller copies it before the next host call.
        let ok = unsafe { f(self.filter(), &mut out) };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        Some(ok.then(|| unsafe { Raw::new(out.ptr, out.len) }))
    }

    fn upstream_connection_id(&self) -> Option<u64> {
        let f = late::get().get_upstream_connection_id?;
        // SAFETY: Envoy's `get_upstream_connection_id` (resolved by name); live filter pointer.
        Some(unsafe { f(self.filter()) })
    }

    fn upstream_hosts_attempted(&self, f: &mut dyn FnMut(Raw<'_>)) -> bool {
        let late = late::get();
        let (Some(size), Some(get)) = (
            late.get_upstream_hosts_attempted_size,
            late.get_upstream_hosts_attempted,
        ) else {
            return false;
        };
        // SAFETY: Envoy's `get_upstream_hosts_attempted_size` (resolved by name); live filter.
        let n = unsafe { size(self.filter()) };
        if n == 0 {
            return true;
        }
        with_scratch(&HOSTS, |v| {
            v.resize(n, Buf::EMPTY);
            // SAFETY: Envoy's `get_upstream_hosts_attempted` (resolved by name); it writes
            // one buffer per host it just counted, and `v` has that many; nothing runs between
            // the two calls. The strings belong to the hosts' addresses, which the stream
            // keeps; `f` copies each at once.
            if unsafe { get(self.filter(), v.as_mut_ptr()) } {
                for b in v.iter() {
                    // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid
                    // until their map/body/value is modified or the stream ends, as `Raw::new`
                    // requires for this `&self` borrow (within the hook).
                    f(unsafe { Raw::new(b.ptr, b.len) });
                }
            }
        });
        true
    }

    fn upstream_connection_ids_attempted(&self, f: &mut dyn FnMut(u64)) -> bool {
        let late = late::get();
        let (Some(size), Some(get)) = (
            late.get_upstream_connection_ids_attempted_size,
            late.get_upstream_connection_ids_attempted,
        ) else {
            return false;
        };
        // SAFETY: Envoy's `get_upstream_connection_ids_attempted_size`; live filter pointer.
        let n = unsafe { size(self.filter()) };
        if n == 0 {
            return true;
        }
        with_scratch(&IDS, |v| {
            v.resize(n, 0);
            // SAFETY: Envoy's `get_upstream_connection_ids_attempted`; it writes the `n` ids it
            // just counted and `v` has that many; nothing runs between the two calls.
            if unsafe { get(self.filter(), v.as_mut_ptr()) } {
                v.iter().for_each(|id| f(*id));
            }
        });
        true
    }

    fn has_filter_state(&self, key: &[u8]) -> Option<bool> {
        let f = late::get().has_filter_state?;
        // SAFETY: Envoy's `has_filter_state` (resolved by name); live filter pointer.
        Some(unsafe { f(self.filter(), Buf::of(key)) })
    }

    fn set_filter_state_object(
        &self,
        key: &[u8],
        object: *mut c_void,
        dtor: ObjectDtor,
        life_span: u32,
    ) -> Option<bool> {
        let f = late::get().set_filter_state_object?;
        // SAFETY: Envoy's `set_filter_state_object` (resolved by name); live filter pointer;
        // Envoy takes ownership of `object` and calls `dtor` exactly once (at once if the set
        // fails); `life_span` is 0..=2.
        Some(unsafe { f(self.filter(), Buf::of(key), object, Some(dtor), life_span) })
    }

    fn filter_state_object(&self, key: &[u8]) -> Option<*mut c_void> {
        let f = late::get().get_filter_state_object?;
        // SAFETY: Envoy's `get_filter_state_object` (resolved by name); live filter pointer.
        Some(unsafe { f(self.filter(), Buf::of(key)) })
    }

    fn set_filter_state_value(
        &self,
        key: &[u8],
        value: &[u8],
        life_span: u32,
        sharing: u32,
    ) -> Option<bool> {
        let f = late::get().set_filter_state_value?;
        // SAFETY: Envoy's `set_filter_state_value` (resolved by name); live filter pointer;
        // both enums are in range; Envoy copies the buffers.
        Some(unsafe {
            f(
                self.filter(),
                Buf::of(key),
                Buf::of(value),
                life_span,
                sharing,
            )
        })
    }

    fn set_metadata_struct(&self, ns: &[u8], serialized: &[u8]) -> bool {
        let Some(f) = late::get().set_dynamic_metadata_struct else {
            return false;
        };
        // SAFETY: Envoy's `set_dynamic_metadata_struct` (resolved by name); live filter
        // pointer; Envoy parses (copies) the bytes during the call.
        unsafe { f(self.filter(), Buf::of(ns), Buf::of(serialized)) };
        true
    }

    fn set_typed_metadata(&self, ns: &[u8], serialized_any: &[u8]) -> bool {
        let Some(f) = late::get().set_dynamic_typed_metadata else {
            return false;
        };
        // SAFETY: Envoy's `set_dynamic_typed_metadata` (resolved by name); live filter pointer;
        // Envoy parses (copies) the bytes during the call.
        unsafe { f(self.filter(), Buf::of(ns), Buf::of(serialized_any)) };
        true
    }

    fn typed_metadata(&self, source: u32, ns: &[u8]) -> Option<Option<(Raw<'_>, Raw<'_>)>> {
        let f = late::get().get_typed_metadata?;
        let (mut url, mut value) = (Buf::EMPTY, Buf::EMPTY);
        // SAFETY: Envoy's `get_typed_metadata` (resolved by name); live filter pointer; `source`
        // is 0..=4; both outputs are valid for writes and point into the metadata's `Any`,
        // which the caller copies before the next host call.
        let ok = unsafe { f(self.filter(), source, Buf::of(ns), &mut url, &mut value) };
        if !ok {
            return Some(None);
        }
        // SAFETY: Envoy's getter succeeded on the live filter: both views stay valid until a
        // later host call modifies or refills them (see the call above) or the stream ends, as
        // `Raw::new` requires for this `&self` borrow of the host (within the hook).
        let views = unsafe { (Raw::new(url.ptr, url.len), Raw::new(value.ptr, value.len)) };
        Some(Some(views))
    }

    fn secret(&self, handle: u64) -> Option<Option<Raw<'_>>> {
        let f = late::get().filter_get_generic_secret?;
        let mut out = Buf::EMPTY;
        // SAFETY: Envoy's `filter_get_generic_secret` (resolved by name); live filter pointer;
        // a bad handle is refused by Envoy; `out` valid for writes. The bytes belong to the
        // secret provider and are copied by the caller before the next host call.
        let ok = unsafe { f(self.filter(), handle, &mut out) };
        // SAFETY: Envoy's getter succeeded on the live filter: the bytes stay valid until a later
        // host call modifies or refills them (see the call above) or the stream ends, as `Raw::new`
        // requires for this `&self` borrow of the host (within the hook).
        Some(ok.then(|| unsafe { Raw::new(out.ptr, out.len) }))
    }
}
