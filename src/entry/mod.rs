//! Entry points for Envoy's hooks, one module per extension kind. The
//! [`export!`](crate::export) macro generates the `#[no_mangle]` symbols in the user's crate
//! and forwards each to a function of [`http`] or [`server`]; what every kind shares is here:
//! the registry built at load, the panic guard, the process log, and turning ABI buffers and
//! arrays into slices.
//!
//! No entry point unwinds into Envoy: everything that may run user code (registration, config
//! factories and destructors, per-route parsers, filter factories, handlers, `Drop`s) runs under
//! a panic guard, and a failure inside jisr on a stream fails that stream closed (a 500, or a
//! reset once the response started), never lets it continue.
//!
//! Not part of the public API.
#![allow(missing_docs)]

use crate::abi::ffi::Buf;
use crate::api::registry::Registry;
use crate::executor::catch;
use crate::host::envoy::global_log;
use core::ffi::c_char;
use std::sync::OnceLock;

pub mod http;
pub(crate) mod introspection;
pub mod listener;
pub mod network;
pub(crate) mod panic_mode;
pub mod server;
#[cfg(feature = "tracing")]
pub(crate) mod tracing;
pub mod udp;

pub use crate::abi::ABI_VERSION;

pub(crate) static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Logs an error line through Envoy's module logger (never unwinds).
pub(crate) fn log_error(msg: &str) {
    let _ = catch(|| global_log(4, msg.as_bytes()));
}

/// `on_program_init`: builds the registry once and returns the ABI version.
pub fn program_init(register: fn(&mut Registry)) -> *const c_char {
    let built = catch(|| {
        panic_mode::check_at_load();
        panic_mode::install_hook();
        #[cfg(feature = "log")]
        crate::host::envoy_log::install();
        #[cfg(feature = "tracing")]
        tracing::install(tracing::Sink {
            log: crate::host::envoy::global_log_at,
            enabled: crate::host::envoy::global_log_enabled,
        });
        REGISTRY.get_or_init(|| {
            let mut r = Registry::default();
            register(&mut r);
            r
        });
        panic_mode::chain_user_hook();
    });
    match built {
        Ok(()) => ABI_VERSION.as_ptr(),
        Err(msg) => {
            log_error(&format!("jisr: registering filters panicked: {msg}"));
            core::ptr::null()
        }
    }
}

/// # Safety
/// `b` is a buffer Envoy passed to the current hook (readable for `len` bytes, or null).
pub(crate) unsafe fn bytes<'a>(b: Buf) -> &'a [u8] {
    if b.ptr.is_null() || b.len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `len` readable bytes for the duration of the hook, and
        // the returned slice does not outlive it (callers copy what they keep).
        unsafe { core::slice::from_raw_parts(b.ptr, b.len) }
    }
}

/// Turns an ABI array into a slice (null → empty).
///
/// # Safety
/// `ptr` is null or points at `n` entries valid for the current hook.
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, n: usize) -> &'a [T] {
    if ptr.is_null() || n == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { core::slice::from_raw_parts(ptr, n) }
    }
}

/// A header array Envoy passed to a hook (null: empty).
///
/// # Safety
/// `ptr` is null or points at `n` pairs readable for `'a`, and each key and value has length 0
/// or points at that many initialised bytes, allocated and unchanged for `'a`. Envoy's arrays
/// passed to a hook are so until the hook returns: the caller keeps `'a` within the hook.
pub(crate) unsafe fn abi_headers<'a>(
    ptr: *const crate::abi::ffi::HeaderPair,
    n: usize,
) -> crate::host::HeaderArray<'a> {
    // SAFETY: guaranteed by the caller (the array, and the bytes its pairs point at).
    unsafe { crate::host::HeaderArray::from_abi(slice(ptr, n)) }
}

/// A body-chunk array Envoy passed to a hook (null: empty).
///
/// # Safety
/// As [`abi_headers`], for `n` chunks.
pub(crate) unsafe fn abi_chunks<'a>(
    ptr: *const crate::abi::ffi::Buf,
    n: usize,
) -> crate::host::ChunkArray<'a> {
    // SAFETY: guaranteed by the caller (the array, and the bytes its chunks point at).
    unsafe { crate::host::ChunkArray::from_abi(slice(ptr, n)) }
}

/// Generates the `#[no_mangle]` hooks Envoy looks up, forwarding to jisr. See
/// [`export!`](crate::export).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_hooks {
    ($register:path) => {
        // Expanded in the filter's crate, so the warning reaches its author even when jisr is
        // a crates.io or git dependency (Cargo silences warnings inside those).
        #[cfg(panic = "abort")]
        const _: () = {
            #[deprecated(
                note = "this module is built with panic = \"abort\": a panicking handler will \
                        abort Envoy instead of answering 500; build with panic = \"unwind\" \
                        (jisr)"
            )]
            const JISR_PANIC_ABORT: () = ();
            JISR_PANIC_ABORT
        };
        const _: () = {
            use ::core::ffi::c_char;
            use $crate::entry as h;

            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
                h::program_init($register)
            }
        };
        $crate::__export_http_hooks!();
        $crate::__export_server_hooks!();
        $crate::__export_network_hooks!();
        $crate::__export_listener_hooks!();
        $crate::__export_udp_hooks!();
    };
}

pub use crate::abi::ffi::{Buf as EnvoyBuf, HeaderPair as EnvoyHeader};
