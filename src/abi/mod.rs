//! The C ABI: declarations of Envoy's callbacks and the entry points of Envoy's hooks.

#[allow(dead_code)] // A catalogue of the ABI: some declarations serve later features.
pub(crate) mod ffi;
pub mod hooks;
pub(crate) mod panic_mode;
