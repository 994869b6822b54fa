//! Callbacks that only newer Envoys export, looked up by name at run time.
//!
//! A cdylib is linked with `BIND_NOW`, so declaring a callback Envoy 1.38 lacks would make
//! `dlopen` fail there. These are resolved once, on first use, with `dlsym` over the global
//! scope (Envoy's own exports); a missing one is `None` and the API that needs it returns
//! `jisr::Unsupported`.

use super::ffi::{Buf, EnvoyConfigPtr, EnvoyFilterPtr, HeaderPair, TimingInfo};
use core::ffi::{CStr, c_char, c_void};

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT` on glibc and musl: search the global scope.
const RTLD_DEFAULT: *mut c_void = core::ptr::null_mut();

/// A config-level metric update: `(config, id, label values, label count, value) -> result`.
pub(crate) type ConfigMetricFn =
    unsafe extern "C" fn(EnvoyConfigPtr, usize, *const Buf, usize, u64) -> u32;

/// Declares one table of late-bound callbacks: a struct with one `Option<fn>` field per
/// callback, its `NAMES` (the C names, in field order) and an accessor that resolves the whole
/// table with `dlsym` on first use and keeps it in its own `OnceLock`.
///
/// ```text
/// late_table! {
///     /// What the table is for.
///     NetworkLate, network_late;
///     /// When Envoy added it.
///     field: unsafe extern "C" fn(..) -> .. = c"envoy_dynamic_module_callback_...",
/// }
/// ```
///
/// Each kind keeps its table beside its other declarations (`abi/<kind>.rs`); the HTTP
/// filter's table is below.
macro_rules! late_table {
    (
        $(#[$meta:meta])*
        $table:ident, $get:ident;
        $( $(#[$doc:meta])* $field:ident : $ty:ty = $name:literal ),* $(,)?
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub(crate) struct $table {
            $( $(#[$doc])* pub(crate) $field: Option<$ty>, )*
        }

        impl $table {
            /// The C names of this table's callbacks, in field order.
            #[cfg_attr(not(test), allow(dead_code))]
            pub(crate) const NAMES: &'static [&'static ::core::ffi::CStr] = &[$($name),*];

            fn resolve() -> Self {
                Self {
                    $( $field: {
                        let p = $crate::abi::late::lookup($name);
                        // SAFETY: `p` is the address of Envoy's exported callback of this
                        // name, whose C signature the ABI fixes as the field's type; a null
                        // address stays `None`.
                        (!p.is_null()).then(|| unsafe {
                            ::core::mem::transmute::<*mut ::core::ffi::c_void, $ty>(p)
                        })
                    }, )*
                }
            }
        }

        /// The table for the Envoy this module runs in, resolved on first use.
        pub(crate) fn $get() -> &'static $table {
            static TABLE: ::std::sync::OnceLock<$table> = ::std::sync::OnceLock::new();
            TABLE.get_or_init($table::resolve)
        }
    };
}
pub(crate) use late_table;

late_table! {
    /// The HTTP filter's late-bound callbacks; `None` where this Envoy does not export one.
    Late, get;
    /// 1.40: a log line with the module's source location (file, line) instead of `[:]`.
    log_v2: unsafe extern "C" fn(u32, Buf, Buf, u32) = c"envoy_dynamic_module_callback_log_v2",
    /// 1.39+: every value of a header in one call.
    get_header_values: unsafe extern "C" fn(EnvoyFilterPtr, u32, Buf, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_get_header_values",
    /// 1.39+: several string metadata values under one namespace.
    set_dynamic_metadata_string_batch:
        unsafe extern "C" fn(EnvoyFilterPtr, Buf, *const HeaderPair, usize) =
        c"envoy_dynamic_module_callback_http_set_dynamic_metadata_string_batch",
    /// 1.39+: sampling follows the tracer only.
    span_disable_local_decision: unsafe extern "C" fn(*mut c_void) =
        c"envoy_dynamic_module_callback_http_span_disable_local_decision",
    /// 1.39+: config-level metrics (usable without a stream).
    config_increment_counter: ConfigMetricFn =
        c"envoy_dynamic_module_callback_http_filter_config_increment_counter",
    config_increment_gauge: ConfigMetricFn =
        c"envoy_dynamic_module_callback_http_filter_config_increment_gauge",
    config_decrement_gauge: ConfigMetricFn =
        c"envoy_dynamic_module_callback_http_filter_config_decrement_gauge",
    config_set_gauge: ConfigMetricFn =
        c"envoy_dynamic_module_callback_http_filter_config_set_gauge",
    config_record_histogram_value: ConfigMetricFn =
        c"envoy_dynamic_module_callback_http_filter_config_record_histogram_value",
    /// 1.40: several tags in one call.
    span_set_tag_batch: unsafe extern "C" fn(*mut c_void, *const HeaderPair, usize) =
        c"envoy_dynamic_module_callback_http_span_set_tag_batch",
    /// 1.40: Envoy's timing of the stream.
    get_timing_info: unsafe extern "C" fn(EnvoyFilterPtr, *mut TimingInfo) =
        c"envoy_dynamic_module_callback_http_get_timing_info",
    /// 1.40: the client's own address (`ip:port`, before XFF handling).
    get_downstream_direct_remote_address: unsafe extern "C" fn(EnvoyFilterPtr, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_get_downstream_direct_remote_address",
    /// 1.40: the upstream host's address (`ip:port`).
    get_upstream_remote_address: unsafe extern "C" fn(EnvoyFilterPtr, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_get_upstream_remote_address",
    /// 1.39: the upstream connection's id (0: none).
    get_upstream_connection_id: unsafe extern "C" fn(EnvoyFilterPtr) -> u64 =
        c"envoy_dynamic_module_callback_http_get_upstream_connection_id",
    /// 1.40: hosts tried for the request.
    get_upstream_hosts_attempted_size: unsafe extern "C" fn(EnvoyFilterPtr) -> usize =
        c"envoy_dynamic_module_callback_http_get_upstream_hosts_attempted_size",
    get_upstream_hosts_attempted: unsafe extern "C" fn(EnvoyFilterPtr, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_get_upstream_hosts_attempted",
    /// 1.40: upstream connection ids tried for the request.
    get_upstream_connection_ids_attempted_size: unsafe extern "C" fn(EnvoyFilterPtr) -> usize =
        c"envoy_dynamic_module_callback_http_get_upstream_connection_ids_attempted_size",
    get_upstream_connection_ids_attempted: unsafe extern "C" fn(EnvoyFilterPtr, *mut u64) -> bool =
        c"envoy_dynamic_module_callback_http_get_upstream_connection_ids_attempted",
    /// 1.40: whether filter state has any object under a key.
    has_filter_state: unsafe extern "C" fn(EnvoyFilterPtr, Buf) -> bool =
        c"envoy_dynamic_module_callback_http_has_filter_state",
    /// 1.39: a module object in filter state (Envoy calls the destructor when it drops it,
    /// also when the set fails); life span 0 filter chain, 1 request, 2 connection.
    set_filter_state_object: unsafe extern "C" fn(
        EnvoyFilterPtr,
        Buf,
        *mut c_void,
        Option<unsafe extern "C" fn(*mut c_void)>,
        u32,
    ) -> bool = c"envoy_dynamic_module_callback_http_set_filter_state_object",
    /// 1.39: the module object stored under a key, or null.
    get_filter_state_object: unsafe extern "C" fn(EnvoyFilterPtr, Buf) -> *mut c_void =
        c"envoy_dynamic_module_callback_http_get_filter_state_object",
    /// 1.40: typed filter state with life span and upstream sharing.
    set_filter_state_value: unsafe extern "C" fn(EnvoyFilterPtr, Buf, Buf, u32, u32) -> bool =
        c"envoy_dynamic_module_callback_http_set_filter_state_value",
    /// 1.40: dynamic metadata from a serialized `google.protobuf.Struct`.
    set_dynamic_metadata_struct: unsafe extern "C" fn(EnvoyFilterPtr, Buf, Buf) =
        c"envoy_dynamic_module_callback_http_set_dynamic_metadata_struct",
    /// 1.40: typed dynamic metadata from a serialized `google.protobuf.Any`.
    set_dynamic_typed_metadata: unsafe extern "C" fn(EnvoyFilterPtr, Buf, Buf) =
        c"envoy_dynamic_module_callback_http_set_dynamic_typed_metadata",
    /// 1.40: typed metadata of a source: its type URL and serialized value.
    get_typed_metadata: unsafe extern "C" fn(EnvoyFilterPtr, u32, Buf, *mut Buf, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_get_typed_metadata",
    /// 1.40: SDS generic secrets: subscribe at config load (returns a 1-based handle, 0 on
    /// error), read from the config or a stream.
    config_generic_secret_subscribe: unsafe extern "C" fn(EnvoyConfigPtr, Buf, Buf) -> u64 =
        c"envoy_dynamic_module_callback_http_filter_config_generic_secret_subscribe",
    config_get_generic_secret: unsafe extern "C" fn(EnvoyConfigPtr, u64, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_filter_config_get_generic_secret",
    filter_get_generic_secret: unsafe extern "C" fn(EnvoyFilterPtr, u64, *mut Buf) -> bool =
        c"envoy_dynamic_module_callback_http_filter_get_generic_secret",
}

/// The address of Envoy's exported symbol `name`, or null when this Envoy lacks it.
pub(crate) fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: `name` is NUL-terminated; `dlsym` with `RTLD_DEFAULT` only reads it.
    unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) }
}

/// Names of the HTTP filter's late-bound callbacks, for tests.
#[cfg(test)]
pub(crate) const NAMES: &[&CStr] = Late::NAMES;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_callbacks_resolve_to_none_outside_envoy() {
        let late = get();
        assert!(late.get_header_values.is_none() && late.config_set_gauge.is_none());
        assert_eq!(NAMES.len(), 28);
        // The lookup itself works: a libc symbol is found.
        assert!(!lookup(c"malloc").is_null());
    }
}
