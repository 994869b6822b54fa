//! Callbacks that only newer Envoys export, looked up by name at run time.
//!
//! A cdylib is linked with `BIND_NOW`, so declaring a callback Envoy 1.38 lacks would make
//! `dlopen` fail there. These are resolved once, on first use, with `dlsym` over the global
//! scope (Envoy's own exports); a missing one is `None` and the API that needs it returns
//! `jisr::Unsupported`.

use super::ffi::{Buf, EnvoyConfigPtr, EnvoyFilterPtr, HeaderPair};
use core::ffi::{CStr, c_char, c_void};
use std::sync::OnceLock;

unsafe extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// `RTLD_DEFAULT` on glibc and musl: search the global scope.
const RTLD_DEFAULT: *mut c_void = core::ptr::null_mut();

/// A config-level metric update: `(config, id, label values, label count, value) -> result`.
pub(crate) type ConfigMetricFn =
    unsafe extern "C" fn(EnvoyConfigPtr, usize, *const Buf, usize, u64) -> u32;

macro_rules! late {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty = $name:literal ),* $(,)?) => {
        /// The late-bound callbacks; `None` where this Envoy does not export one.
        #[allow(dead_code)] // Config metrics come next.
        #[derive(Debug)]
        pub(crate) struct Late {
            $( $(#[$doc])* pub(crate) $field: Option<$ty>, )*
        }

        fn resolve() -> Late {
            Late {
                $( $field: {
                    let p = lookup($name);
                    // SAFETY: `p` is the address of Envoy's exported callback of this name,
                    // whose C signature the ABI fixes as `$ty`; a null address stays `None`.
                    (!p.is_null()).then(|| unsafe { core::mem::transmute::<*mut c_void, $ty>(p) })
                }, )*
            }
        }

        /// Names of all late-bound callbacks, for the load-time report and tests.
        #[cfg(test)]
        pub(crate) const NAMES: &[&CStr] = &[$($name),*];
    };
}

late! {
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
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: `name` is NUL-terminated; `dlsym` with `RTLD_DEFAULT` only reads it.
    unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) }
}

static LATE: OnceLock<Late> = OnceLock::new();

/// The late-bound callbacks of the Envoy this module runs in.
pub(crate) fn get() -> &'static Late {
    LATE.get_or_init(resolve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_callbacks_resolve_to_none_outside_envoy() {
        let late = get();
        assert!(late.get_header_values.is_none() && late.config_set_gauge.is_none());
        assert_eq!(NAMES.len(), 8);
        // The lookup itself works: a libc symbol is found.
        assert!(!lookup(c"malloc").is_null());
    }
}
