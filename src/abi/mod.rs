//! The C ABI: declarations of Envoy's callbacks, enum values and the version string.

pub(crate) mod ffi;
pub(crate) mod http;
pub(crate) mod late;
pub(crate) mod listener;
pub(crate) mod network;
pub(crate) mod udp;

/// Results of the metric callbacks (`envoy_dynamic_module_type_metrics_result`).
pub(crate) mod metrics_result {
    /// Applied.
    pub(crate) const SUCCESS: u32 = 0;
    /// No metric with that id.
    pub(crate) const METRIC_NOT_FOUND: u32 = 1;
    /// The label values do not match the metric's label names.
    pub(crate) const INVALID_LABELS: u32 = 2;
}

/// Results of starting an HTTP callout (`envoy_dynamic_module_type_http_callout_init_result`).
pub(crate) mod callout_init {
    /// Started.
    pub(crate) const SUCCESS: u32 = 0;
    /// `:method`, `:path` or `host` is missing.
    pub(crate) const MISSING_REQUIRED_HEADERS: u32 = 1;
    /// No such cluster.
    pub(crate) const CLUSTER_NOT_FOUND: u32 = 2;
    /// The id is in use.
    pub(crate) const DUPLICATE_CALLOUT_ID: u32 = 3;
    /// Envoy could not make the request.
    pub(crate) const CANNOT_CREATE_REQUEST: u32 = 4;
}

/// How an HTTP callout ended (`envoy_dynamic_module_type_http_callout_result`).
pub(crate) mod callout_result {
    /// An answer arrived.
    pub(crate) const SUCCESS: u32 = 0;
    /// The callout was reset (or timed out).
    pub(crate) const RESET: u32 = 1;
    /// The answer exceeded the response buffer limit (jisr treats every non-zero result
    /// alike; the simulated host produces this one).
    #[cfg(feature = "testing")]
    pub(crate) const EXCEED_RESPONSE_BUFFER_LIMIT: u32 = 2;
}

/// Where metadata is read from (`envoy_dynamic_module_type_metadata_source`).
pub(crate) mod metadata_source {
    /// The stream's dynamic metadata.
    pub(crate) const DYNAMIC: u32 = 0;
    /// The matched route's metadata.
    pub(crate) const ROUTE: u32 = 1;
    /// The upstream cluster's metadata.
    pub(crate) const CLUSTER: u32 = 2;
    /// The selected upstream host's metadata.
    pub(crate) const HOST: u32 = 3;
    /// The selected upstream host's locality metadata.
    pub(crate) const HOST_LOCALITY: u32 = 4;
}

/// The ABI version string returned to Envoy (Envoy 1.40's; 1.38/1.39 log a harmless
/// "deprecated" warning and load the module).
pub const ABI_VERSION: &core::ffi::CStr = c"v0.2.0";
