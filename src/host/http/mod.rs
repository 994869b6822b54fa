//! The host of an HTTP filter stream: headers, bodies, replies, metadata, filter state and
//! the rest of what Envoy offers a stream, with the real implementation ([`envoy::EnvoyHost`])
//! and, behind the `testing` feature, the simulated ones of `jisr::testing` (`sim::SimHost`,
//! `bench::BenchHost`).

#[cfg(feature = "testing")]
pub(crate) mod bench;
pub(crate) mod context;
pub(crate) mod current;
pub(crate) mod envoy;
mod envoy_context;
pub(crate) mod objects;
pub(crate) mod route;
#[cfg(feature = "testing")]
pub(crate) mod sim;
pub(crate) mod spans;

use super::MetricOp;
use crate::host::{Committer, Outbound, Raw};

/// Header map selector (values are the ABI's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Map {
    RequestHeaders = 0,
    RequestTrailers = 1,
    ResponseHeaders = 2,
    ResponseTrailers = 3,
}

/// Body selector (values are the ABI's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyKind {
    ReceivedRequest = 0,
    BufferedRequest = 1,
    ReceivedResponse = 2,
    BufferedResponse = 3,
}

/// What a stream's host can do. All methods run on the worker thread inside a hook.
pub(crate) trait Host: context::StreamContext + Outbound {
    /// The `index`-th value of `key` and how many values `key` has.
    fn header(&self, map: Map, key: &[u8], index: usize) -> (Option<Raw<'_>>, usize);
    /// Calls `f` for every header of `map`, in order.
    fn for_each_header(&self, map: Map, f: &mut dyn FnMut(Raw<'_>, Raw<'_>));
    /// Replaces all values of `key`; `None` removes the header.
    fn set_header(&self, map: Map, key: &[u8], value: Option<&[u8]>) -> bool;
    /// Appends a value to `key`.
    fn add_header(&self, map: Map, key: &[u8], value: &[u8]) -> bool;

    /// Number of bytes in a body buffer.
    fn body_len(&self, kind: BodyKind) -> usize;
    /// Copies bytes of a body buffer from `offset` into `dst`; returns how many. A host may keep
    /// what it fetched from Envoy for the next copy of the same hook (Envoy's host keeps the
    /// chunk views), so that reading a chunk in small pieces asks Envoy for it once.
    fn copy_body(&self, kind: BodyKind, offset: usize, dst: &mut [u8]) -> usize;
    /// Whether the data of the current request body event is the buffered body itself.
    fn received_is_buffered(&self, request: bool) -> bool;
    /// Drains `n` bytes from the front of a body buffer.
    fn drain_body(&self, kind: BodyKind, n: usize) -> bool;
    /// Appends bytes to a body buffer.
    fn append_body(&self, kind: BodyKind, data: &[u8]) -> bool;

    /// Sends a complete local reply.
    fn send_response(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8], details: &[u8]);
    /// Sends response headers of a module-generated (streaming) reply.
    fn send_response_headers(&self, headers: &[(&[u8], &[u8])], end_stream: bool);
    /// Sends response data of a module-generated reply.
    fn send_response_data(&self, data: &[u8], end_stream: bool);
    /// Sends response trailers of a module-generated reply (ends the stream).
    fn send_response_trailers(&self, trailers: &[(&[u8], &[u8])]);
    /// Resets the downstream stream.
    fn reset_stream(&self, details: &[u8]);

    /// Resumes a stopped request.
    fn continue_decoding(&self);
    /// Resumes a stopped response.
    fn continue_encoding(&self);

    /// Sets dynamic metadata.
    fn set_metadata(&self, ns: &[u8], key: &[u8], value: MetadataValue<'_>);
    /// Appends `value` to the dynamic-metadata list `ns:key` (created when absent); `false`
    /// when Envoy refused (e.g. the key holds a non-list value).
    fn append_metadata(&self, ns: &[u8], key: &[u8], value: MetadataValue<'_>) -> bool;
    /// Reads metadata `ns:key` of `source` (ABI metadata source: 0 dynamic, 1 route, 2 cluster,
    /// 3 host, 4 host locality) as the type asked for; `None` when absent or of another type.
    fn metadata(&self, source: u32, ns: &[u8], key: &[u8], kind: MetaKind) -> Option<MetaRead<'_>>;
    /// Calls `f` with each key of namespace `ns` (or, with `ns` `None`, each namespace) of
    /// `source`'s metadata. The views are valid during the call only.
    fn metadata_names(&self, source: u32, ns: Option<&[u8]>, f: &mut dyn FnMut(Raw<'_>));
    /// Length of the list metadata `ns:key` from `source`; `None` when absent or not a list.
    fn metadata_list_len(&self, source: u32, ns: &[u8], key: &[u8]) -> Option<usize>;
    /// Element `index` of the list metadata `ns:key` from `source`, if it is of `kind`.
    fn metadata_list_item(
        &self,
        source: u32,
        ns: &[u8],
        key: &[u8],
        index: usize,
        kind: MetaKind,
    ) -> Option<MetaRead<'_>>;
    /// Sets filter-state bytes.
    fn set_filter_state(&self, key: &[u8], value: &[u8]) -> bool;
    /// Reads filter-state bytes.
    fn filter_state(&self, key: &[u8]) -> Option<Raw<'_>>;
    /// Clears the route cache so the next route lookup sees current headers.
    fn clear_route_cache(&self);
    /// Makes Envoy pick the route's cluster again (the route itself is kept).
    fn clear_route_cluster_cache(&self);
    /// Adds a custom response flag (shown by the access log's `%CUSTOM_FLAGS%`).
    fn add_custom_flag(&self, flag: &[u8]);
    /// The name of the cluster the route picked; `None` without a routed cluster. A view into
    /// Envoy's cluster info: copy it before the next host call.
    fn cluster_name(&self) -> Option<Raw<'_>>;
    /// `[total, healthy, degraded]` host counts of the routed cluster at `priority`.
    fn cluster_host_count(&self, priority: u32) -> Option<[u64; 3]>;
    /// The stream's buffer limit in bytes.
    fn buffer_limit(&self) -> u64;
    /// Sets the stream's buffer limit in bytes.
    fn set_buffer_limit(&self, limit: u64);

    /// Stream attributes.
    fn attr_str(&self, id: u32) -> Option<Raw<'_>>;
    fn attr_int(&self, id: u32) -> Option<u64>;
    fn attr_bool(&self, id: u32) -> Option<bool>;

    /// Applies a metric operation; returns the ABI metrics result (0 = success).
    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> u32;

    /// Whether `level` (0 trace .. 5 critical) is emitted.
    fn log_enabled(&self, level: u32) -> bool;
    /// Emits one log line.
    fn log(&self, level: u32, msg: &[u8]);
    /// Emits one log line with the source location it was written at (shown by Envoy 1.40).
    fn log_at(&self, level: u32, msg: &[u8], _file: &str, _line: u32) {
        self.log(level, msg)
    }

    /// Creates this stream's scheduler (once; the caller keeps it).
    fn new_scheduler(&self) -> Committer;

    /// The per-route config pointer of the most specific route (null if none).
    fn route_config(&self) -> *const core::ffi::c_void;
    /// Overrides the upstream host for this request.
    fn set_upstream_override_host(&self, host: &[u8], strict: bool) -> bool;
    /// Index of the worker running this stream.
    fn worker_index(&self) -> u32;
}

/// The type of a metadata value to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaKind {
    Str,
    Num,
    Bool,
}

/// A metadata value read from the host (a string is valid as [`Raw`] says).
#[derive(Clone, Copy, Debug)]
pub(crate) enum MetaRead<'h> {
    Str(Raw<'h>),
    Num(f64),
    Bool(bool),
}

/// A metadata value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum MetadataValue<'a> {
    Str(&'a [u8]),
    Num(f64),
    Bool(bool),
}
