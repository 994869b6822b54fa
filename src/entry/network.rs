//! Entry points for Envoy's network filter hooks (`on_network_filter_*`).
//!
//! The config pointer handed to Envoy is a boxed `Box<dyn NetConfigHooks>`; each connection's
//! pointer is its pooled slot, whose first field says how to reach its hooks. Everything runs
//! under the panic guard: a failure inside jisr on a connection resets that connection.

use super::{REGISTRY, bytes, log_error};
use crate::abi::ffi::Buf;
use crate::abi::network::{
    ConnectionEvent, DataStatus, NetworkConfigEnvoyPtr, NetworkFilterEnvoyPtr,
};
use crate::api::config::ConfigHandle;
use crate::executor::catch;
use crate::filter::network::{ConnEvent, ConnHooks, NetConfigHooks, PANIC_DETAILS, hooks_of};
use crate::host::network::envoy::{EnvoyConn, EnvoyNetConfigHost};
use crate::host::network::{Close, ConnHost, Side};
use core::ffi::c_void;

type ConfigBox = Box<dyn NetConfigHooks>;

/// `on_network_filter_config_new`: builds the named filter's config (null: refused, with the
/// reason in Envoy's log).
///
/// # Safety
/// `name` and `cfg` are buffers Envoy passed to this hook; `config` is its config pointer.
pub unsafe fn config_new(config: NetworkConfigEnvoyPtr, name: Buf, cfg: Buf) -> *const c_void {
    // SAFETY: buffers valid during this hook; copied below.
    let (name, cfg) = unsafe { (bytes(name), bytes(cfg)) };
    let made = catch(|| {
        let name = String::from_utf8_lossy(name);
        let Some(registry) = REGISTRY.get() else {
            return Err("jisr: module not initialised (on_program_init did not run)".to_string());
        };
        let Some(build) = registry.network_build(&name) else {
            return Err(format!(
                "jisr: no network filter named '{name}' in this module (registered: {})",
                registry.network_names().collect::<Vec<_>>().join(", ")
            ));
        };
        // SAFETY: Envoy's config pointer of this hook, used only during it.
        let host = unsafe { EnvoyNetConfigHost::new(config) };
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name: &name,
            bytes: cfg,
            host: &host,
            background: None,
        };
        build(&mut handle).map_err(|e| format!("jisr: network filter '{name}': {e}"))
    });
    match made {
        Ok(Ok(c)) => Box::into_raw(Box::new(c)) as *const c_void,
        Ok(Err(msg)) => {
            log_error(&msg);
            core::ptr::null()
        }
        Err(msg) => {
            log_error(&format!(
                "jisr: loading a network filter config panicked: {msg}"
            ));
            core::ptr::null()
        }
    }
}

/// `on_network_filter_config_destroy`.
///
/// # Safety
/// `ptr` is null or came from [`config_new`], and no connection of it is alive.
pub unsafe fn config_destroy(ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
    let cfg = unsafe { Box::from_raw(ptr as *mut ConfigBox) };
    if let Err(msg) = catch(move || drop(cfg)) {
        log_error(&format!(
            "jisr: dropping a network filter config panicked: {msg}"
        ));
    }
}

/// `on_network_filter_new`: a slot for one connection (null: refused; Envoy closes it).
///
/// # Safety
/// `cfg` came from [`config_new`] and is not destroyed.
pub unsafe fn filter_new(cfg: *const c_void, _filter: NetworkFilterEnvoyPtr) -> *const c_void {
    if cfg.is_null() {
        return core::ptr::null();
    }
    // SAFETY: a live config (caller's contract); Envoy destroys it only after its filters, so
    // the `'static` borrow the slots keep stays valid while they use it.
    let cfg: &'static ConfigBox = unsafe { &*(cfg as *const ConfigBox) };
    catch(|| cfg.new_filter()).unwrap_or_else(|msg| {
        log_error(&format!("jisr: starting a connection panicked: {msg}"));
        core::ptr::null()
    })
}

/// Runs one hook of a connection under the panic guard; a failure inside jisr resets it.
///
/// # Safety
/// `filter` is Envoy's filter pointer of the running hook and `slot` a live slot of
/// [`filter_new`].
unsafe fn run<R>(
    filter: NetworkFilterEnvoyPtr,
    slot: *const c_void,
    fallback: R,
    f: impl FnOnce(&dyn ConnHooks, &dyn ConnHost) -> R,
) -> R {
    if slot.is_null() {
        return fallback;
    }
    // SAFETY: the filter pointer of this hook, used only during it.
    let host = unsafe { EnvoyConn::new(filter) };
    // SAFETY: a live slot (caller's contract).
    let hooks = unsafe { hooks_of(slot) };
    let r = match catch(|| f(hooks, &host)) {
        Ok(r) => r,
        Err(msg) => {
            log_error(&format!("jisr: network filter failed: {msg}"));
            let _ = catch(|| host.close(Close::Reset, PANIC_DETAILS.as_bytes()));
            fallback
        }
    };
    if hooks.take_pending_destroy() {
        let destroy = hooks.destroyer();
        // SAFETY: Envoy asked to destroy the slot during the hook; it is not used after.
        let _ = catch(|| unsafe { destroy(slot) });
    }
    r
}

/// `on_network_filter_new_connection`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn new_connection(filter: NetworkFilterEnvoyPtr, slot: *const c_void) -> u32 {
    // SAFETY: forwarded contract.
    let s = unsafe {
        run(filter, slot, DataStatus::StopIteration, |c, h| {
            c.new_connection(h)
        })
    };
    s as u32
}

/// `on_network_filter_read` and `on_network_filter_write`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn data(
    filter: NetworkFilterEnvoyPtr,
    slot: *const c_void,
    write: bool,
    end: bool,
) -> u32 {
    let side = if write { Side::Write } else { Side::Read };
    // SAFETY: forwarded contract.
    let s = unsafe {
        run(filter, slot, DataStatus::StopIteration, |c, h| {
            c.data(h, side, end)
        })
    };
    s as u32
}

/// `on_network_filter_event`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn conn_event(filter: NetworkFilterEnvoyPtr, slot: *const c_void, e: u32) {
    let e = match e {
        x if x == ConnectionEvent::RemoteClose as u32 => ConnEvent::RemoteClose,
        x if x == ConnectionEvent::LocalClose as u32 => ConnEvent::LocalClose,
        x if x == ConnectionEvent::ConnectedZeroRtt as u32 => ConnEvent::ConnectedZeroRtt,
        _ => ConnEvent::Connected,
    };
    // SAFETY: forwarded contract.
    unsafe { run(filter, slot, (), |c, h| c.event(h, e)) }
}

/// `on_network_filter_scheduled`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn scheduled(filter: NetworkFilterEnvoyPtr, slot: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { run(filter, slot, (), |c, h| c.scheduled(h)) }
}

/// `on_network_filter_http_callout_done`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`];
/// `headers` and `chunks` are null or point at `n_headers` / `n_chunks` entries Envoy keeps
/// valid until this hook returns.
#[allow(clippy::too_many_arguments)] // Mirrors Envoy's hook signature.
pub unsafe fn callout_done(
    filter: NetworkFilterEnvoyPtr,
    slot: *const c_void,
    id: u64,
    result: u32,
    headers: *const crate::abi::ffi::HeaderPair,
    n_headers: usize,
    chunks: *const Buf,
    n_chunks: usize,
) {
    // SAFETY: per the caller, valid for this hook; read only inside it.
    let (headers, chunks) = unsafe {
        (
            super::abi_headers(headers, n_headers),
            super::abi_chunks(chunks, n_chunks),
        )
    };
    // SAFETY: forwarded contract.
    unsafe {
        run(filter, slot, (), |c, h| {
            c.callout_done(h, id, result, headers, chunks)
        })
    }
}

/// `on_network_filter_destroy`.
///
/// # Safety
/// `slot` is null or a slot of [`filter_new`], not used afterwards.
pub unsafe fn destroy(slot: *const c_void) {
    if slot.is_null() {
        return;
    }
    // SAFETY: a live slot (caller's contract).
    let destroy = unsafe { hooks_of(slot) }.destroyer();
    // SAFETY: Envoy destroys each filter once, after its last hook.
    if let Err(msg) = catch(|| unsafe { destroy(slot) }) {
        log_error(&format!("jisr: ending a connection panicked: {msg}"));
    }
}

/// Generates the `#[no_mangle]` network filter hooks. See [`export!`](crate::export).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_network_hooks {
    () => {
        const _: () = {
            use ::core::ffi::c_void;
            use $crate::entry::network as h;
            type Buf = $crate::entry::EnvoyBuf;
            type HeaderPair = $crate::entry::EnvoyHeader;

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_new(
                c: *mut c_void,
                name: Buf,
                config: Buf,
            ) -> *const c_void {
                unsafe { h::config_new(c, name, config) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_config_destroy(
                p: *const c_void,
            ) {
                unsafe { h::config_destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new(
                p: *const c_void,
                f: *mut c_void,
            ) -> *const c_void {
                unsafe { h::filter_new(p, f) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_new_connection(
                f: *mut c_void,
                p: *const c_void,
            ) -> u32 {
                unsafe { h::new_connection(f, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_read(
                f: *mut c_void,
                p: *const c_void,
                _len: usize,
                end: bool,
            ) -> u32 {
                unsafe { h::data(f, p, false, end) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_write(
                f: *mut c_void,
                p: *const c_void,
                _len: usize,
                end: bool,
            ) -> u32 {
                unsafe { h::data(f, p, true, end) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_event(
                f: *mut c_void,
                p: *const c_void,
                e: u32,
            ) {
                unsafe { h::conn_event(f, p, e) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_destroy(
                p: *const c_void,
            ) {
                unsafe { h::destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_scheduled(
                f: *mut c_void,
                p: *const c_void,
                _event: u64,
            ) {
                unsafe { h::scheduled(f, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_network_filter_http_callout_done(
                f: *mut c_void,
                p: *const c_void,
                id: u64,
                result: u32,
                headers: *const HeaderPair,
                headers_len: usize,
                chunks: *const Buf,
                chunks_len: usize,
            ) {
                unsafe { h::callout_done(f, p, id, result, headers, headers_len, chunks, chunks_len) }
            }
            /// Network configs commit no events of their own.
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_network_filter_config_scheduled(
                _p: *const c_void,
                _event: u64,
            ) {
            }
            /// Flow control toward the client is Envoy's own (its write buffer limits).
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark(
                _f: *mut c_void,
                _p: *const c_void,
            ) {
            }
            /// See the high watermark.
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark(
                _f: *mut c_void,
                _p: *const c_void,
            ) {
            }
        };
    };
}
