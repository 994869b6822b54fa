//! The C ABI: declarations of Envoy's callbacks, enum values and the version string.

pub(crate) mod ffi;
pub(crate) mod late;

/// The ABI version string returned to Envoy (Envoy 1.40's; 1.38/1.39 log a harmless
/// "deprecated" warning and load the module).
pub const ABI_VERSION: &core::ffi::CStr = c"v0.2.0";
