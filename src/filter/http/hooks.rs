//! What the entry layer calls on an HTTP filter: the hooks of one stream ([`StreamHooks`]) and
//! of one filter config ([`ConfigHooks`]), implemented by jisr's stream slots (`machine`) and
//! by raw filters' slots.

use crate::abi::http::{BodyStatus, HeadersStatus, LocalReplyStatus, TrailersStatus};
#[cfg(feature = "testing")]
use crate::filter::http::stats::FilterStatsSnapshot;
use crate::host::http::Host;
use crate::host::{ChunkArray, HeaderArray};

/// A streaming-callout event as the ABI delivers it.
pub enum RawStreamEvent<'h> {
    /// Response headers (and whether they end the response).
    Headers(HeaderArray<'h>, bool),
    /// Response data chunks (and whether they end the response).
    Data(ChunkArray<'h>, bool),
    /// Response trailers.
    Trailers(HeaderArray<'h>),
    /// The stream completed.
    Complete,
    /// The stream was reset (ABI reason code).
    Reset(u32),
}

/// Details of the 500 sent when a handler panics.
pub const PANIC_DETAILS: &str = "jisr_handler_panic";

/// Which hook an internal failure happened in (decides how the stream fails closed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookKind {
    /// A request-path hook (headers, body, trailers): a 500 is still possible.
    Request,
    /// A response-path hook: the stream is reset unless nothing went downstream yet.
    Response,
    /// Any other hook (scheduled, callout events, watermarks, completion).
    Other,
}

/// Details of the 500 sent when jisr itself fails on a stream.
pub const INTERNAL_DETAILS: &str = "jisr_internal_error";

/// What Envoy can do to a stream, type-erased (one implementation per filter type).
pub(crate) trait StreamHooks {
    fn request_headers(&self, host: &dyn Host, end_of_stream: bool) -> HeadersStatus;
    fn request_body(&self, host: &dyn Host, end_of_stream: bool) -> BodyStatus;
    fn request_trailers(&self, host: &dyn Host) -> TrailersStatus;
    fn response_headers(&self, host: &dyn Host, end_of_stream: bool) -> HeadersStatus;
    fn response_body(&self, host: &dyn Host, end_of_stream: bool) -> BodyStatus;
    fn response_trailers(&self, host: &dyn Host) -> TrailersStatus;
    fn stream_complete(&self, host: &dyn Host);
    fn scheduled(&self, host: &dyn Host, event: u64);
    fn watermark(&self, host: &dyn Host, above: bool);
    fn local_reply(&self, host: &dyn Host, status: u32, reset_imminent: bool) -> LocalReplyStatus;
    fn callout_done(
        &self,
        host: &dyn Host,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    );
    fn http_stream(&self, host: &dyn Host, id: u64, event: RawStreamEvent<'_>);
    /// jisr itself panicked in hook `kind` (`msg`): fail the stream closed (a 500 while the
    /// client has seen nothing, else a reset), never let it continue. A slot that tracks
    /// whether the response went downstream decides from that (jisr's); one that cannot see it
    /// (a raw filter's) decides by `kind`: 500 in a request hook, reset otherwise.
    fn fail_closed(&self, host: &dyn Host, kind: HookKind, msg: &str);
    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void);
    /// Envoy destroyed the stream during one of our hooks and no hook runs anymore: the caller
    /// must call the destroyer now.
    fn take_pending_destroy(&self) -> bool;
}

/// What Envoy can do to a filter config, type-erased.
pub(crate) trait ConfigHooks: Send + Sync {
    /// Creates a stream; returns the module filter pointer.
    fn new_stream(&self, host: &dyn Host) -> *const core::ffi::c_void;
    /// The configured filter name.
    fn name(&self) -> &str;
    /// Idle stream slots kept for reuse.
    #[cfg(feature = "testing")]
    fn idle_slots(&self) -> usize;
    /// Introspection figures.
    #[cfg(feature = "testing")]
    fn stats(&self) -> FilterStatsSnapshot;
    /// Bytes of per-stream buffers kept by the idle slots.
    #[cfg(feature = "testing")]
    fn idle_retained_bytes(&self) -> usize;
    /// The config's background runtime, if it asked for one.
    fn background(&self) -> Option<&std::sync::Arc<crate::executor::background::Runtime>> {
        None
    }
    /// Hands the config's figures to Envoy's `jisr_*` stats (main thread, on the config's
    /// scheduler event `stats_flush::FLUSH_EVENT`).
    fn flush_envoy_stats(&self, _host: &dyn crate::host::ConfigHost) {}
}
