//! The real host's tracing, socket-option, stream-control and typed filter-state calls.

use super::envoy::EnvoyHost;
use super::extra::{Extra, FinishSpan, SockOpt, SpanEdit, SpanField, SpanPtr};
use super::{Host, Map, Raw};
use crate::abi::ffi::{self, Buf, HeaderPair};
use crate::abi::late;

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

impl Extra for EnvoyHost {
    fn header_values(
        &self,
        map: Map,
        key: &[u8],
        max: usize,
        f: &mut dyn FnMut(Raw),
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
            f(Raw::new(b.ptr, b.len));
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
        let _ = (span, tags);
        false
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

    fn span_read(&self, span: SpanPtr, field: SpanField<'_>) -> Option<Raw> {
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
        ok.then(|| Raw::new(out.ptr, out.len))
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

    fn socket_option_bytes(&self, o: SockOpt) -> Option<Raw> {
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
        ok.then(|| Raw::new(out.ptr, out.len))
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

    fn filter_state_typed(&self, key: &[u8]) -> Option<Raw> {
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
        ok.then(|| Raw::new(out.ptr, out.len))
    }
}
