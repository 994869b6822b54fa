//! Entry points for Envoy's UDP listener filter hooks (`on_udp_listener_filter_*`).
//!
//! The config pointer handed to Envoy is a boxed `Box<dyn UdpConfigHooks>`; each worker's
//! filter pointer is a boxed `Box<dyn UdpHooks>` (thin pointers, one allocation pair per
//! worker, none per datagram). Everything runs under the panic guard: a failure inside jisr
//! on a datagram drops that datagram.
//!
//! Envoy 1.40 refuses a UDP listener filter whose module config came back null; 1.38 and 1.39
//! run the listener anyway, with a null config. And every version lets each datagram pass a
//! filter whose module filter is null. So `filter_new` never returns null: when there is no
//! config to make a filter from (it was refused) or making one fails, the worker gets a
//! filter that drops every datagram.

use super::{REGISTRY, bytes, log_error};
use crate::abi::ffi::Buf;
use crate::abi::udp::{FilterStatus, UdpConfigEnvoyPtr, UdpFilterEnvoyPtr};
use crate::api::config::ConfigHandle;
use crate::executor::catch;
use crate::filter::udp::{DropAll, UdpConfigHooks, UdpHooks};
use crate::host::udp::envoy::{EnvoyUdp, EnvoyUdpConfigHost};
use core::ffi::c_void;

type ConfigBox = Box<dyn UdpConfigHooks>;
type FilterBox = Box<dyn UdpHooks>;

/// `on_udp_listener_filter_config_new`: builds the named filter's config (null: refused, with
/// the reason in Envoy's log; see the module docs for what Envoy does then).
///
/// # Safety
/// `name` and `cfg` are buffers Envoy passed to this hook; `config` is its config pointer.
pub unsafe fn config_new(config: UdpConfigEnvoyPtr, name: Buf, cfg: Buf) -> *const c_void {
    // SAFETY: buffers valid during this hook; copied below.
    let (name, cfg) = unsafe { (bytes(name), bytes(cfg)) };
    let made = catch(|| {
        let name = String::from_utf8_lossy(name);
        let Some(registry) = REGISTRY.get() else {
            return Err("jisr: module not initialised (on_program_init did not run)".to_string());
        };
        let Some(build) = registry.udp_build(&name) else {
            return Err(format!(
                "jisr: no udp filter named '{name}' in this module (registered: {})",
                registry.udp_names().collect::<Vec<_>>().join(", ")
            ));
        };
        // SAFETY: Envoy's config pointer of this hook, used only during it.
        let host = unsafe { EnvoyUdpConfigHost::new(config) };
        let mut handle = ConfigHandle {
            envoy_stats: false,
            name: &name,
            bytes: cfg,
            host: &host,
            background: None,
        };
        build(&mut handle).map_err(|e| format!("jisr: udp filter '{name}': {e}"))
    });
    match made {
        Ok(Ok(c)) => Box::into_raw(Box::new(c)) as *const c_void,
        Ok(Err(msg)) => {
            log_error(&msg);
            core::ptr::null()
        }
        Err(msg) => {
            log_error(&format!(
                "jisr: loading a udp filter config panicked: {msg}"
            ));
            core::ptr::null()
        }
    }
}

/// `on_udp_listener_filter_config_destroy`.
///
/// # Safety
/// `ptr` is null or came from [`config_new`], and no filter of it is alive.
pub unsafe fn config_destroy(ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `Box::into_raw` in `config_new`; Envoy destroys it once.
    let cfg = unsafe { Box::from_raw(ptr as *mut ConfigBox) };
    if let Err(msg) = catch(move || drop(cfg)) {
        log_error(&format!(
            "jisr: dropping a udp filter config panicked: {msg}"
        ));
    }
}

/// `on_udp_listener_filter_new`: one worker's filter. Never null (see the module docs).
///
/// # Safety
/// `cfg` is null or came from [`config_new`] and is not destroyed.
pub unsafe fn filter_new(cfg: *const c_void, _filter: UdpFilterEnvoyPtr) -> *const c_void {
    let made: FilterBox = if cfg.is_null() {
        Box::new(DropAll)
    } else {
        // SAFETY: a live config (caller's contract); Envoy destroys it only after its filters
        // (each filter holds the config), so the `'static` borrow a filter keeps stays valid
        // while the filter is used.
        let cfg: &'static ConfigBox = unsafe { &*(cfg as *const ConfigBox) };
        catch(|| cfg.new_filter()).unwrap_or_else(|msg| {
            log_error(&format!(
                "jisr: making a udp filter panicked: {msg}; this worker drops every datagram"
            ));
            Box::new(DropAll)
        })
    };
    Box::into_raw(Box::new(made)) as *const c_void
}

/// `on_udp_listener_filter_on_data`: the status of the current datagram.
///
/// # Safety
/// `filter` is Envoy's filter pointer of the running hook and `ptr` a live filter of
/// [`filter_new`].
pub unsafe fn on_data(filter: UdpFilterEnvoyPtr, ptr: *const c_void) -> u32 {
    if ptr.is_null() {
        return FilterStatus::StopIteration.into();
    }
    // SAFETY: the filter pointer of this hook, used only during it.
    let host = unsafe { EnvoyUdp::new(filter) };
    // SAFETY: a live filter (caller's contract): the box made in `filter_new`.
    let hooks: &FilterBox = unsafe { &*(ptr as *const FilterBox) };
    match catch(|| hooks.on_data(&host)) {
        Ok(s) => s.into(),
        Err(msg) => {
            log_error(&format!("jisr: udp filter failed: {msg}; datagram dropped"));
            FilterStatus::StopIteration.into()
        }
    }
}

/// `on_udp_listener_filter_destroy`.
///
/// # Safety
/// `ptr` is null or a filter of [`filter_new`], not used afterwards.
pub unsafe fn destroy(ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `Box::into_raw` in `filter_new`; Envoy destroys it once, after
    // its last `on_data`.
    let f = unsafe { Box::from_raw(ptr as *mut FilterBox) };
    if let Err(msg) = catch(move || drop(f)) {
        log_error(&format!("jisr: dropping a udp filter panicked: {msg}"));
    }
}

/// Generates the `#[no_mangle]` UDP listener filter hooks. See [`export!`](crate::export).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_udp_hooks {
    () => {
        const _: () = {
            use ::core::ffi::c_void;
            use $crate::entry::udp as h;
            type Buf = $crate::entry::EnvoyBuf;

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_config_new(
                c: *mut c_void,
                name: Buf,
                config: Buf,
            ) -> *const c_void {
                unsafe { h::config_new(c, name, config) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_config_destroy(
                p: *const c_void,
            ) {
                unsafe { h::config_destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_new(
                p: *const c_void,
                f: *mut c_void,
            ) -> *const c_void {
                unsafe { h::filter_new(p, f) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_on_data(
                f: *mut c_void,
                p: *const c_void,
            ) -> u32 {
                unsafe { h::on_data(f, p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_udp_listener_filter_destroy(
                p: *const c_void,
            ) {
                unsafe { h::destroy(p) }
            }
        };
    };
}
