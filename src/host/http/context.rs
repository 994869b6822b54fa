//! What a stream's host offers beyond headers, bodies and replies: tracing, socket options,
//! typed filter state, stream control that may end the stream, and facts about the upstream
//! and Envoy's timing. Every method has a default for hosts that lack the feature (the bench
//! host implements only what its allocation tests measure).

use super::Raw;
use crate::abi::ffi::TimingInfo;
use core::ffi::c_void;

/// Destroys a module object Envoy kept in filter state.
pub(crate) type ObjectDtor = unsafe extern "C" fn(*mut c_void);

/// An address of the stream Envoy 1.40 reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Addr {
    DownstreamDirectRemote,
    UpstreamRemote,
}

/// An Envoy span: the stream's active span (lives as long as the stream) or a child span the
/// module owns until it is finished with the function that came with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanPtr(pub(crate) *mut c_void);

/// Finishes (and frees) a child span; must be called exactly once per child.
pub(crate) type FinishSpan = unsafe fn(SpanPtr);

/// A change to a span.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SpanEdit<'a> {
    Tag(&'a [u8], &'a [u8]),
    Log(&'a [u8]),
    Operation(&'a [u8]),
    Sampled(bool),
    Baggage(&'a [u8], &'a [u8]),
}

/// A value read from a span.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SpanField<'a> {
    Baggage(&'a [u8]),
    TraceId,
    SpanId,
}

/// A socket option address: level and name as for `setsockopt`, the socket state it applies
/// in (ABI: 0 prebind, 1 bound, 2 listening) and the side (ABI: 0 upstream, 1 downstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SockOpt {
    pub(crate) level: i64,
    pub(crate) name: i64,
    pub(crate) state: u32,
    pub(crate) direction: u32,
}

#[allow(unused_variables)]
pub(crate) trait StreamContext {
    /// Calls `f` with every value of header `key` of `map` in one call into the host, when
    /// the key has at most `max` values; returns how many values the key has. `None` when the
    /// host has no batch call or the key has more than `max` values (nothing is passed to `f`
    /// then); the caller reads value by value instead.
    fn header_values(
        &self,
        map: super::Map,
        key: &[u8],
        max: usize,
        f: &mut dyn FnMut(Raw<'_>),
    ) -> Option<usize> {
        None
    }

    /// Sets several string values of dynamic-metadata namespace `ns` in one call; `false` when
    /// the host has no batch call (the caller sets them one by one).
    fn set_metadata_strs(&self, ns: &[u8], pairs: &[(&[u8], &[u8])]) -> bool {
        false
    }

    /// The stream's active span; `None` without tracing.
    fn active_span(&self) -> Option<SpanPtr> {
        None
    }
    /// Applies one change to `span`.
    fn span_edit(&self, span: SpanPtr, edit: SpanEdit<'_>) {}
    /// Sets several tags in one call; `false` when the host has no batch call (the caller
    /// then sets them one by one).
    fn span_tags(&self, span: SpanPtr, tags: &[(&[u8], &[u8])]) -> bool {
        false
    }
    /// Makes the span's sampling follow the tracer's decision only; `false` when unsupported.
    fn span_disable_local_decision(&self, span: SpanPtr) -> bool {
        false
    }
    /// Reads a value of `span`; the view lives until the next host call.
    fn span_read(&self, span: SpanPtr, field: SpanField<'_>) -> Option<Raw<'_>> {
        None
    }
    /// Starts a child of `span`, with the function that finishes it.
    fn span_child(&self, span: SpanPtr, operation: &[u8]) -> Option<(SpanPtr, FinishSpan)> {
        None
    }

    /// Reads an integer socket option.
    fn socket_option_int(&self, opt: SockOpt) -> Option<i64> {
        None
    }
    /// Reads a bytes socket option; the view lives until the next host call.
    fn socket_option_bytes(&self, opt: SockOpt) -> Option<Raw<'_>> {
        None
    }
    /// Sets an integer socket option.
    fn set_socket_option_int(&self, opt: SockOpt, value: i64) -> bool {
        false
    }
    /// Sets a bytes socket option.
    fn set_socket_option_bytes(&self, opt: SockOpt, value: &[u8]) -> bool {
        false
    }

    /// Sends GOAWAY (HTTP/2 and 3) and closes the downstream connection; may end the stream
    /// inside the call.
    fn goaway_and_close(&self, graceful: bool) {}
    /// Restarts the stream's filter chain with its current request headers; `false` when Envoy
    /// refuses (e.g. the request has a body). May end the stream inside the call.
    fn recreate_stream(&self) -> bool {
        false
    }

    /// Sets filter state through the object factory Envoy has for `key`.
    fn set_filter_state_typed(&self, key: &[u8], value: &[u8]) -> bool {
        false
    }
    /// Reads any filter state object serialized as bytes; the view lives until the next host
    /// call.
    fn filter_state_typed(&self, key: &[u8]) -> Option<Raw<'_>> {
        None
    }

    // Envoy 1.40 only: `None` from these means this Envoy lacks the callback.

    /// Envoy's timing facts of the stream.
    fn timing(&self) -> Option<TimingInfo> {
        None
    }
    /// An address of the stream (`Some(None)`: not known yet); the view lives until the next
    /// host call.
    fn address(&self, which: Addr) -> Option<Option<Raw<'_>>> {
        None
    }
    /// The upstream connection's id (`Some(0)`: none yet).
    fn upstream_connection_id(&self) -> Option<u64> {
        None
    }
    /// Calls `f` with each upstream host tried (`ip:port`); `false` when unsupported.
    fn upstream_hosts_attempted(&self, f: &mut dyn FnMut(Raw<'_>)) -> bool {
        false
    }
    /// Calls `f` with each upstream connection id tried; `false` when unsupported.
    fn upstream_connection_ids_attempted(&self, f: &mut dyn FnMut(u64)) -> bool {
        false
    }
    /// Whether any filter state object is stored under `key`.
    fn has_filter_state(&self, key: &[u8]) -> Option<bool> {
        None
    }
    /// Stores a module object under `key`; Envoy owns it from here on and calls `dtor` when
    /// it drops it, also at once when the set fails. When unsupported (`None`) the caller
    /// still owns it.
    fn set_filter_state_object(
        &self,
        key: &[u8],
        object: *mut c_void,
        dtor: ObjectDtor,
        life_span: u32,
    ) -> Option<bool> {
        None
    }
    /// The module object stored under `key` (`Some(null)`: none).
    fn filter_state_object(&self, key: &[u8]) -> Option<*mut c_void> {
        None
    }
    /// Sets filter state through Envoy's factory for `key`, with a life span and upstream
    /// sharing mode.
    fn set_filter_state_value(
        &self,
        key: &[u8],
        value: &[u8],
        life_span: u32,
        sharing: u32,
    ) -> Option<bool> {
        None
    }
    /// Sets dynamic metadata namespace `ns` from a serialized `google.protobuf.Struct`;
    /// `false` when unsupported.
    fn set_metadata_struct(&self, ns: &[u8], serialized: &[u8]) -> bool {
        false
    }
    /// Sets typed dynamic metadata `ns` from a serialized `google.protobuf.Any`; `false` when
    /// unsupported.
    fn set_typed_metadata(&self, ns: &[u8], serialized_any: &[u8]) -> bool {
        false
    }
    /// Typed metadata `ns` of `source`: its type URL and serialized value (`Some(None)`:
    /// absent). Views live until the next host call.
    fn typed_metadata(&self, source: u32, ns: &[u8]) -> Option<Option<(Raw<'_>, Raw<'_>)>> {
        None
    }
    /// The current value of a subscribed SDS generic secret (`Some(None)`: not available).
    fn secret(&self, handle: u64) -> Option<Option<Raw<'_>>> {
        None
    }
}
