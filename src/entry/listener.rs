//! Entry points for Envoy's listener filter hooks (`on_listener_filter_*`).
//!
//! The config pointer handed to Envoy is a boxed `Box<dyn ListenerConfigHooks>`; each socket's
//! pointer is its pooled slot, whose first field says how to reach its hooks. Everything runs
//! under the panic guard: a failure inside jisr on a socket closes that socket.

use super::{REGISTRY, bytes, log_error};
use crate::abi::ffi::Buf;
use crate::abi::listener::{FilterStatus, ListenerConfigEnvoyPtr, ListenerFilterEnvoyPtr};
use crate::api::config::ConfigHandle;
use crate::executor::catch;
use crate::filter::listener::{ListenerConfigHooks, PANIC_DETAILS, SocketHooks, hooks_of};
use crate::host::listener::SocketHost;
use crate::host::listener::envoy::{EnvoyListenerConfigHost, EnvoySocket};
use core::ffi::c_void;

type ConfigBox = Box<dyn ListenerConfigHooks>;

/// `on_listener_filter_config_new`: builds the named filter's config (null: refused, with the
/// reason in Envoy's log).
///
/// # Safety
/// `name` and `cfg` are buffers Envoy passed to this hook; `config` is its config pointer.
pub unsafe fn config_new(config: ListenerConfigEnvoyPtr, name: Buf, cfg: Buf) -> *const c_void {
    // SAFETY: buffers valid during this hook; copied below.
    let (name, cfg) = unsafe { (bytes(name), bytes(cfg)) };
    let made = catch(|| {
        let name = String::from_utf8_lossy(name);
        let Some(registry) = REGISTRY.get() else {
            return Err("jisr: module not initialised (on_program_init did not run)".to_string());
        };
        let Some(build) = registry.listener_build(&name) else {
            return Err(format!(
                "jisr: no listener filter named '{name}' in this module (registered: {})",
                registry.listener_names().collect::<Vec<_>>().join(", ")
            ));
        };
        // SAFETY: Envoy's config pointer of this hook, used only during it.
        let host = unsafe { EnvoyListenerConfigHost::new(config) };
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name: &name,
            bytes: cfg,
            host: &host,
            background: None,
        };
        build(&mut handle).map_err(|e| format!("jisr: listener filter '{name}': {e}"))
    });
    if made.as_ref().is_ok_and(|r| r.is_ok()) {
        warn_if_wakes_are_lost();
    }
    match made {
        Ok(Ok(c)) => Box::into_raw(Box::new(c)) as *const c_void,
        Ok(Err(msg)) => {
            log_error(&msg);
            core::ptr::null()
        }
        Err(msg) => {
            log_error(&format!(
                "jisr: loading a listener filter config panicked: {msg}"
            ));
            core::ptr::null()
        }
    }
}

/// The warning Envoy 1.38 gets once per process: its listener filters never receive
/// scheduler events (its filter is not shared-owned, so the scheduler's weak reference is always
/// empty), so a handler that awaits anything but a peek waits until the listener's
/// `listener_filters_timeout`. 1.38 is recognised by the callback only it exports
/// (`listener_filter_set_dynamic_metadata`, dropped in 1.39).
pub(crate) const LOST_WAKES_WARNING: &str = "jisr: this Envoy (1.38) does not deliver wakes to \
    listener filters: a handler that awaits anything but Socket::peek waits until the \
    listener's listener_filters_timeout";

fn warn_if_wakes_are_lost() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if crate::abi::listener::listener_late()
        .set_dynamic_metadata
        .is_some()
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        let _ = catch(|| crate::host::envoy::global_log(3, LOST_WAKES_WARNING.as_bytes()));
    }
}

/// `on_listener_filter_config_destroy`.
///
/// # Safety
/// `ptr` is null or came from [`config_new`], and no socket of it is alive.
pub unsafe fn config_destroy(ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
    let cfg = unsafe { Box::from_raw(ptr as *mut ConfigBox) };
    if let Err(msg) = catch(move || drop(cfg)) {
        log_error(&format!(
            "jisr: dropping a listener filter config panicked: {msg}"
        ));
    }
}

/// `on_listener_filter_new`: a slot for one socket (null: refused; Envoy closes it).
///
/// # Safety
/// `cfg` came from [`config_new`] and is not destroyed.
pub unsafe fn filter_new(cfg: *const c_void, _filter: ListenerFilterEnvoyPtr) -> *const c_void {
    if cfg.is_null() {
        return core::ptr::null();
    }
    // SAFETY: a live config (caller's contract); Envoy destroys it only after its filters, so
    // the `'static` borrow the slots keep stays valid while they use it.
    let cfg: &'static ConfigBox = unsafe { &*(cfg as *const ConfigBox) };
    catch(|| cfg.new_filter()).unwrap_or_else(|msg| {
        log_error(&format!("jisr: starting a listener filter panicked: {msg}"));
        core::ptr::null()
    })
}

/// Runs one hook of a socket under the panic guard; a failure inside jisr closes it.
///
/// # Safety
/// `filter` is Envoy's filter pointer of the running hook and `slot` a live slot of
/// [`filter_new`].
unsafe fn run<R>(
    filter: ListenerFilterEnvoyPtr,
    slot: *const c_void,
    fallback: R,
    f: impl FnOnce(&dyn SocketHooks, &dyn SocketHost) -> R,
) -> R {
    if slot.is_null() {
        return fallback;
    }
    // SAFETY: the filter pointer of this hook, used only during it.
    let host = unsafe { EnvoySocket::new(filter) };
    // SAFETY: a live slot (caller's contract).
    let hooks = unsafe { hooks_of(slot) };
    let r = match catch(|| f(hooks, &host)) {
        Ok(r) => r,
        Err(msg) => {
            log_error(&format!("jisr: listener filter failed: {msg}"));
            let _ = catch(|| host.close(PANIC_DETAILS.as_bytes()));
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

/// `on_listener_filter_on_accept`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn on_accept(filter: ListenerFilterEnvoyPtr, slot: *const c_void) -> u32 {
    // SAFETY: forwarded contract.
    let s = unsafe {
        run(filter, slot, FilterStatus::StopIteration, |s, h| {
            s.accept(h)
        })
    };
    s.into()
}

/// `on_listener_filter_on_data`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn on_data(filter: ListenerFilterEnvoyPtr, slot: *const c_void) -> u32 {
    // SAFETY: forwarded contract.
    let s = unsafe { run(filter, slot, FilterStatus::StopIteration, |s, h| s.data(h)) };
    s.into()
}

/// `on_listener_filter_on_close`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn on_close(filter: ListenerFilterEnvoyPtr, slot: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { run(filter, slot, (), |s, _| s.peer_closed()) }
}

/// `on_listener_filter_scheduled`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`].
pub unsafe fn scheduled(filter: ListenerFilterEnvoyPtr, slot: *const c_void) {
    // SAFETY: forwarded contract.
    unsafe { run(filter, slot, (), |s, h| s.scheduled(h)) }
}

/// `on_listener_filter_http_callout_done`.
///
/// # Safety
/// `filter` is the running hook's filter pointer and `slot` a live slot of [`filter_new`];
/// `headers` and `chunks` are null or point at `n_headers` / `n_chunks` entries Envoy keeps
/// valid until this hook returns.
#[allow(clippy::too_many_arguments)] // Mirrors Envoy's hook signature.
pub unsafe fn callout_done(
    filter: ListenerFilterEnvoyPtr,
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
        run(filter, slot, (), |s, h| {
            s.callout_done(h, id, result, headers, chunks)
        })
    }
}

/// `on_listener_filter_get_max_read_bytes` (cheap: one field read).
///
/// # Safety
/// `slot` is null or a live slot of [`filter_new`].
pub unsafe fn max_read_bytes(slot: *const c_void) -> usize {
    if slot.is_null() {
        return 0;
    }
    // SAFETY: a live slot (caller's contract).
    let hooks = unsafe { hooks_of(slot) };
    catch(|| hooks.max_read_bytes()).unwrap_or(0)
}

/// `on_listener_filter_destroy`.
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
        log_error(&format!("jisr: ending a listener filter panicked: {msg}"));
    }
}

/// Generates the `#[no_mangle]` listener filter hooks. See [`export!`](crate::export).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_listener_hooks {
    () => {
        const _: () = {
            use ::core::ffi::c_void;
            use $crate::entry::listener as h;
            type Buf = $crate::entry::EnvoyBuf;
            type HeaderPair = $crate::entry::EnvoyHeader;

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_config_new(
                c: *mut c_void,
                name: Buf,
                config: Buf,
            ) -> *const c_void {
                unsafe { h::config_new(c, name, config) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_config_destroy(
                p: *const c_void,
            ) {
                unsafe { h::config_destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_new(
                p: *const c_void,
                f: *mut c_void,
            ) -> *const c_void {
                unsafe { h::filter_new(p, f) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_on_accept(
                f: *mut c_void,
                p: *const c_void,
            ) -> u32 {
                unsafe { h::on_accept(f, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_on_data(
                f: *mut c_void,
                p: *const c_void,
                _len: usize,
            ) -> u32 {
                unsafe { h::on_data(f, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_on_close(
                f: *mut c_void,
                p: *const c_void,
            ) {
                unsafe { h::on_close(f, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_get_max_read_bytes(
                _f: *mut c_void,
                p: *const c_void,
            ) -> usize {
                unsafe { h::max_read_bytes(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_destroy(
                p: *const c_void,
            ) {
                unsafe { h::destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_scheduled(
                f: *mut c_void,
                p: *const c_void,
                _event: u64,
            ) {
                unsafe { h::scheduled(f, p) }
            }
            /// Listener configs commit no events of their own.
            #[unsafe(no_mangle)]
            pub extern "C" fn envoy_dynamic_module_on_listener_filter_config_scheduled(
                _c: *mut c_void,
                _p: *const c_void,
                _event: u64,
            ) {
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_listener_filter_http_callout_done(
                f: *mut c_void,
                p: *const c_void,
                id: u64,
                result: u32,
                headers: *const HeaderPair,
                headers_len: usize,
                chunks: *const Buf,
                chunks_len: usize,
            ) {
                unsafe {
                    h::callout_done(f, p, id, result, headers, headers_len, chunks, chunks_len)
                }
            }
        };
    };
}
