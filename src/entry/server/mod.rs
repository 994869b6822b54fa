//! Envoy's bootstrap-extension hooks, for jisr server extensions.
//!
//! The config pointer handed to Envoy is a `Box<ServerBox>`; the extension pointer is the same
//! box (Envoy creates one extension per config). Every hook catches panics (logged) so none
//! reaches Envoy.

use super::{REGISTRY, abi_chunks, abi_headers, bytes, catch, log_error};
use crate::abi::ffi::{Buf, HeaderPair};
use crate::api::config::ConfigHandle;
mod lifecycle;

use crate::api::server::AdminRequest;
use crate::host::server::{EnvoyServerHost, admin_parts};
use core::ffi::c_void;
use lifecycle::ServerBox;
use std::sync::atomic::Ordering;

/// # Safety
/// `p` is null or a pointer returned by [`config_new`], not yet destroyed.
unsafe fn server<'a>(p: *const c_void) -> Option<&'a ServerBox> {
    // SAFETY: `p` came from `Box::into_raw(Box<ServerBox>)` and is live (caller's contract).
    (!p.is_null()).then(|| unsafe { &*(p as *const ServerBox) })
}

/// Runs `f` with the server and its host, catching panics.
///
/// # Safety
/// As for `server`.
unsafe fn with(p: *const c_void, f: impl FnOnce(&ServerBox, &EnvoyServerHost)) {
    // SAFETY: forwarded contract.
    let Some(s) = (unsafe { server(p) }) else {
        return;
    };
    let host = EnvoyServerHost::new(
        s.config_envoy.load(Ordering::Acquire),
        s.extension.load(Ordering::Acquire),
    );
    if let Err(msg) = catch(|| f(s, &host)) {
        log_error(&format!(
            "jisr: server '{}': a hook panicked: {msg}",
            s.shared.name
        ));
    }
}

/// `on_bootstrap_extension_config_new`.
///
/// # Safety
/// `bc` is the Envoy config pointer of this call; `name` and `cfg` are readable for the call.
pub unsafe fn config_new(bc: *mut c_void, name: Buf, cfg: Buf) -> *const c_void {
    // SAFETY: buffers valid during this hook; copied below.
    let (name, cfg) = unsafe { (bytes(name), bytes(cfg)) };
    let made = catch(|| {
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(registry) = REGISTRY.get() else {
            return Err("jisr: module not initialised (on_program_init did not run)".to_string());
        };
        let Some(build) = registry.server_build(&name) else {
            let known: Vec<&str> = registry.server_names().collect();
            return Err(format!(
                "jisr: unknown server extension '{name}'; this module registers: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        let host = EnvoyServerHost::new(bc, core::ptr::null_mut());
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name: &name,
            bytes: cfg,
            host: &host,
            background: None,
        };
        lifecycle::load(build, &mut handle, &host)
            .map_err(|e| format!("jisr: server '{name}' rejected its config: {e}"))
    });
    match made {
        Ok(Ok(s)) => {
            s.config_envoy.store(bc, Ordering::Release);
            Box::into_raw(Box::new(s)) as *const c_void
        }
        Ok(Err(msg)) => {
            log_error(&msg);
            core::ptr::null()
        }
        Err(msg) => {
            log_error(&format!("jisr: loading a server extension panicked: {msg}"));
            core::ptr::null()
        }
    }
}

/// `on_bootstrap_extension_config_destroy`.
///
/// # Safety
/// As for `server`; `p` is not used afterwards.
pub unsafe fn config_destroy(p: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| lifecycle::destroy(s, h)) };
    if !p.is_null() {
        // SAFETY: `p` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
        let b = unsafe { Box::from_raw(p as *mut ServerBox) };
        if let Err(msg) = catch(move || drop(b)) {
            log_error(&format!(
                "jisr: dropping a server extension panicked: {msg}"
            ));
        }
    }
}

/// `on_bootstrap_extension_new`: the extension of config `p`; returns `p` itself.
///
/// # Safety
/// As for `server`.
pub unsafe fn extension_new(p: *const c_void, be: *mut c_void) -> *const c_void {
    // SAFETY: forwarded contract.
    if let Some(s) = unsafe { server(p) } {
        s.extension.store(be, Ordering::Release);
    }
    p
}

/// `on_bootstrap_extension_server_initialized`.
///
/// # Safety
/// As for `server`.
pub unsafe fn server_initialized(p: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| lifecycle::server_initialized(s, h)) }
}

/// `on_bootstrap_extension_drain_started`.
///
/// # Safety
/// As for `server`.
pub unsafe fn drain_started(p: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| lifecycle::drain_started(s, h)) }
}

/// The completion Envoy hands to the shutdown hook.
struct Completion {
    cb: Option<unsafe extern "C" fn(*mut c_void)>,
    ctx: *mut c_void,
}

// SAFETY: Envoy's completion may be called from the main thread only, and jisr calls it there
// (from a main-thread hook); it is moved, never shared.
unsafe impl Send for Completion {}

/// `on_bootstrap_extension_shutdown`.
///
/// # Safety
/// As for `server`; `cb(ctx)` must be callable once on the main thread.
pub unsafe fn shutdown(
    p: *const c_void,
    cb: Option<unsafe extern "C" fn(*mut c_void)>,
    ctx: *mut c_void,
) {
    let completion = Completion { cb, ctx };
    let done: Box<dyn FnOnce() + Send> = Box::new(move || {
        let c = completion;
        if let Some(cb) = c.cb {
            // SAFETY: Envoy's completion callback with its context, called exactly once.
            unsafe { cb(c.ctx) }
        }
    });
    if p.is_null() {
        done();
        return;
    }
    // SAFETY: forwarded contract.
    unsafe { with(p, move |s, h| lifecycle::shutdown(s, h, done)) }
}

/// `on_bootstrap_extension_config_scheduled`.
///
/// # Safety
/// As for `server`.
pub unsafe fn config_scheduled(p: *const c_void, event: u64) {
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| lifecycle::scheduled(s, h, event)) }
}

/// `on_bootstrap_extension_timer_fired`.
///
/// # Safety
/// As for `server`.
pub unsafe fn timer_fired(p: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| lifecycle::timer_fired(s, h)) }
}

/// `on_bootstrap_extension_file_changed`.
///
/// # Safety
/// As for `server`; `path` is readable for the call.
pub unsafe fn file_changed(p: *const c_void, path: Buf) {
    // SAFETY: valid during this hook; copied.
    let path = String::from_utf8_lossy(unsafe { bytes(path) }).into_owned();
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| lifecycle::file_changed(s, h, &path)) }
}

/// `on_bootstrap_extension_http_callout_done`.
///
/// # Safety
/// As for `server`; `headers`/`chunks` are null or `n`/`nc` entries readable for the call.
#[allow(clippy::too_many_arguments)] // Mirrors Envoy's hook signature.
pub unsafe fn callout_done(
    p: *const c_void,
    id: u64,
    result: u32,
    headers: *const HeaderPair,
    n: usize,
    chunks: *const Buf,
    nc: usize,
) {
    // SAFETY: the caller's contract: the arrays and the bytes they point at are readable and
    // unchanged for this call, which the views do not outlive.
    let (headers, chunks) = unsafe { (abi_headers(headers, n), abi_chunks(chunks, nc)) };
    // SAFETY: forwarded contract.
    unsafe {
        with(p, |s, h| {
            lifecycle::callout_done(s, h, id, result, headers, chunks)
        })
    }
}

/// `on_bootstrap_extension_admin_request`; returns the HTTP status.
///
/// # Safety
/// As for `server`; the buffers are readable for the call.
pub unsafe fn admin_request(p: *const c_void, method: Buf, path: Buf, body: Buf) -> u32 {
    // SAFETY: the caller's contract: the buffers are readable for this call.
    let (method, path, body) = unsafe { admin_parts(method, path, body) };
    let req = AdminRequest { method, path, body };
    let mut status = 500;
    // SAFETY: forwarded contract.
    unsafe { with(p, |s, h| status = lifecycle::admin_request(s, h, &req)) };
    status
}

/// The bootstrap-extension hooks of [`export!`](crate::export).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_server_hooks {
    () => {
        const _: () = {
            use ::core::ffi::c_void;
            use $crate::entry::server as h;
            #[allow(unused)]
            type Buf = $crate::entry::EnvoyBuf;
            #[allow(unused)]
            type HeaderPair = $crate::entry::EnvoyHeader;

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_new(
                bc: *mut c_void,
                name: Buf,
                config: Buf,
            ) -> *const c_void {
                unsafe { h::config_new(bc, name, config) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_destroy(
                p: *const c_void,
            ) {
                unsafe { h::config_destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_new(
                p: *const c_void,
                be: *mut c_void,
            ) -> *const c_void {
                unsafe { h::extension_new(p, be) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_server_initialized(
                _be: *mut c_void,
                p: *const c_void,
            ) {
                unsafe { h::server_initialized(p) }
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized(
                _be: *mut c_void,
                _p: *const c_void,
            ) {
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_drain_started(
                _be: *mut c_void,
                p: *const c_void,
            ) {
                unsafe { h::drain_started(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_shutdown(
                _be: *mut c_void,
                p: *const c_void,
                cb: Option<unsafe extern "C" fn(*mut c_void)>,
                ctx: *mut c_void,
            ) {
                unsafe { h::shutdown(p, cb, ctx) }
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_destroy(
                _p: *const c_void,
            ) {
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_scheduled(
                _bc: *mut c_void,
                p: *const c_void,
                event: u64,
            ) {
                unsafe { h::config_scheduled(p, event) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_timer_fired(
                _bc: *mut c_void,
                p: *const c_void,
                _timer: *mut c_void,
            ) {
                unsafe { h::timer_fired(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_file_changed(
                _bc: *mut c_void,
                p: *const c_void,
                path: Buf,
                _events: u32,
            ) {
                unsafe { h::file_changed(p, path) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_http_callout_done(
                _bc: *mut c_void,
                p: *const c_void,
                id: u64,
                result: u32,
                headers: *const HeaderPair,
                n: usize,
                chunks: *const Buf,
                nc: usize,
            ) {
                unsafe { h::callout_done(p, id, result, headers, n, chunks, nc) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_bootstrap_extension_admin_request(
                _bc: *mut c_void,
                p: *const c_void,
                method: Buf,
                path: Buf,
                body: Buf,
            ) -> u32 {
                unsafe { h::admin_request(p, method, path, body) }
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update(
                _bc: *mut c_void,
                _p: *const c_void,
                _name: Buf,
            ) {
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_removal(
                _bc: *mut c_void,
                _p: *const c_void,
                _name: Buf,
            ) {
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update(
                _bc: *mut c_void,
                _p: *const c_void,
                _name: Buf,
            ) {
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_removal(
                _bc: *mut c_void,
                _p: *const c_void,
                _name: Buf,
            ) {
            }
        };
    };
}
