//! The host of a jisr server extension (Envoy's bootstrap extension): main-thread calls made
//! on behalf of the module rather than a filter.
//!
//! It is a [`ConfigHost`], so the background runtime of filter configs serves server tasks
//! as well (spawn, callouts, metrics); the server-only calls (timers, admin handlers, init,
//! file watches, stats reads) are in [`ServerHost`].

use super::{Committer, ConfigHost, MetricKind, MetricOp, Outbound, Raw};
use crate::abi::ffi::{self, Buf};
use core::ffi::c_void;
use std::cell::Cell;
use std::ptr::NonNull;

/// What only a server extension can do. All of it runs on Envoy's main thread.
pub(crate) trait ServerHost: ConfigHost {
    /// This host as a [`ConfigHost`] (trait upcasting needs Rust 1.86; jisr builds on 1.85).
    fn as_config(&self) -> &dyn ConfigHost;
    /// Creates a main-thread timer (fires `on_bootstrap_extension_timer_fired`).
    fn timer_new(&self) -> *mut c_void;
    /// Arms `timer` to fire in `ms` milliseconds (re-arming replaces the previous deadline).
    fn timer_enable(&self, timer: *mut c_void, ms: u64);
    /// Deletes `timer`.
    fn timer_delete(&self, timer: *mut c_void);
    /// Lets Envoy start serving (the extension's init target is done).
    fn signal_init_complete(&self);
    /// Registers an admin path prefix; `false` when Envoy refused (taken, or no admin).
    fn register_admin(&self, prefix: &[u8], help: &[u8]) -> bool;
    /// Sets the body of the admin response being answered.
    fn admin_response(&self, body: &[u8]);
    /// Watches `path` for being moved to (1) or modified (2).
    fn watch_file(&self, path: &[u8], events: u32) -> bool;
    /// A counter's value by its full name (needs the extension pointer, known once the
    /// extension was created).
    fn counter_value(&self, name: &[u8]) -> Option<u64>;
    /// A gauge's value by its full name.
    fn gauge_value(&self, name: &[u8]) -> Option<u64>;
}

/// The Envoy side of one server extension: its config pointer, and the extension's own
/// pointer once Envoy created it.
#[derive(Clone, Copy)]
pub(crate) struct EnvoyServerHost {
    config: *mut c_void,
    extension: *mut c_void,
}

impl EnvoyServerHost {
    pub(crate) fn new(config: *mut c_void, extension: *mut c_void) -> EnvoyServerHost {
        EnvoyServerHost { config, extension }
    }
}

unsafe fn commit(ptr: *mut c_void, event: u64) {
    // SAFETY: `ptr` is a live bootstrap scheduler (the committer has not deleted it).
    unsafe {
        ffi::envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_commit(ptr, event)
    }
}

unsafe fn delete(ptr: *mut c_void) {
    // SAFETY: called once, by the committer's drop.
    unsafe { ffi::envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_delete(ptr) }
}

fn bufs(labels: &[&[u8]]) -> arrayvec::ArrayVec<Buf, 16> {
    labels.iter().take(16).map(|l| Buf::of(l)).collect()
}

impl ConfigHost for EnvoyServerHost {
    fn define_metric(&self, kind: MetricKind, name: &str, labels: &[&str]) -> Result<usize, u32> {
        let labels: arrayvec::ArrayVec<&[u8], 16> =
            labels.iter().take(16).map(|l| l.as_bytes()).collect();
        let b = bufs(&labels);
        let ptr = if b.is_empty() {
            core::ptr::null()
        } else {
            b.as_ptr()
        };
        let mut id = 0usize;
        let f = match kind {
            MetricKind::Counter => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_define_counter
            }
            MetricKind::Gauge => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_define_gauge
            }
            MetricKind::Histogram => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_define_histogram
            }
        };
        // SAFETY: live bootstrap config pointer on the main thread; label buffers and `id`
        // valid for the call.
        let rc = unsafe { f(self.config, Buf::of(name.as_bytes()), ptr, b.len(), &mut id) };
        if rc == crate::abi::callout_init::SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    fn log_enabled(&self, level: u32) -> bool {
        super::envoy::global_log_enabled(level)
    }

    fn log(&self, level: u32, msg: &[u8]) {
        super::envoy::global_log(level, msg)
    }

    fn log_at(&self, level: u32, msg: &[u8], file: &str, line: u32) {
        super::envoy::global_log_at(level, msg, file, line)
    }

    fn process_log(&self) -> Option<fn(u32, &[u8])> {
        Some(super::envoy::global_log)
    }

    fn secret(&self, _handle: u64) -> Option<Vec<u8>> {
        None
    }

    fn new_scheduler(&self) -> Committer {
        // SAFETY: live bootstrap config pointer on the main thread.
        let ptr = unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_config_scheduler_new(self.config)
        };
        // SAFETY: commit is callable from any thread until delete; the committer deletes once.
        unsafe { Committer::new(ptr, commit, delete) }
    }

    fn metric(&self, op: MetricOp, id: usize, labels: &[&[u8]], value: u64) -> Option<u32> {
        let b = bufs(labels);
        let ptr = if b.is_empty() {
            core::ptr::null()
        } else {
            b.as_ptr()
        };
        let f = match op {
            MetricOp::CounterAdd => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter
            }
            MetricOp::GaugeAdd => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_increment_gauge
            }
            MetricOp::GaugeSub => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_decrement_gauge
            }
            MetricOp::GaugeSet => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_set_gauge
            }
            MetricOp::HistogramRecord => {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_config_record_histogram_value
            }
        };
        // SAFETY: live bootstrap config pointer on the main thread; `ptr` points at `b.len()`
        // label buffers valid for the call.
        Some(unsafe { f(self.config, id, ptr, b.len(), value) })
    }
}

impl Outbound for EnvoyServerHost {
    fn callout(
        &self,
        cluster: &[u8],
        headers: &[(&[u8], &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> Result<u64, u32> {
        let mut id = 0u64;
        // Headers go as the stream and config callouts send them (inline, or the thread's
        // scratch past 16): none is dropped.
        let rc = super::envoy::with_pairs(headers, |ptr, n| {
            // SAFETY: live bootstrap config pointer on the main thread; buffers valid for the
            // call and copied by Envoy.
            unsafe {
                ffi::envoy_dynamic_module_callback_bootstrap_extension_http_callout(
                    self.config,
                    &mut id,
                    Buf::of(cluster),
                    ptr,
                    n,
                    Buf::of(body),
                    timeout_ms,
                )
            }
        });
        if rc == crate::abi::callout_init::SUCCESS {
            Ok(id)
        } else {
            Err(rc)
        }
    }

    /// Server extensions have no streaming callouts in Envoy's ABI.
    fn start_stream(
        &self,
        _cluster: &[u8],
        _headers: &[(&[u8], &[u8])],
        _body: &[u8],
        _end_stream: bool,
        _timeout_ms: u64,
    ) -> Result<u64, u32> {
        Err(4)
    }

    fn stream_send(&self, _id: u64, _data: &[u8], _end_stream: bool) -> bool {
        false
    }

    fn stream_trailers(&self, _id: u64, _trailers: &[(&[u8], &[u8])]) -> bool {
        false
    }

    fn stream_reset(&self, _id: u64) {}
}

impl ServerHost for EnvoyServerHost {
    fn as_config(&self) -> &dyn ConfigHost {
        self
    }

    fn timer_new(&self) -> *mut c_void {
        // SAFETY: live bootstrap config pointer on the main thread.
        unsafe { ffi::envoy_dynamic_module_callback_bootstrap_extension_timer_new(self.config) }
    }

    fn timer_enable(&self, timer: *mut c_void, ms: u64) {
        // SAFETY: `timer` came from `timer_new` and is not deleted (the caller keeps it until
        // the config is destroyed).
        unsafe { ffi::envoy_dynamic_module_callback_bootstrap_extension_timer_enable(timer, ms) }
    }

    fn timer_delete(&self, timer: *mut c_void) {
        // SAFETY: as for `timer_enable`; deleted once.
        unsafe { ffi::envoy_dynamic_module_callback_bootstrap_extension_timer_delete(timer) }
    }

    fn signal_init_complete(&self) {
        // SAFETY: live bootstrap config pointer on the main thread; the caller signals once.
        unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
                self.config,
            )
        }
    }

    fn register_admin(&self, prefix: &[u8], help: &[u8]) -> bool {
        // SAFETY: live bootstrap config pointer on the main thread; Envoy copies the buffers.
        unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_register_admin_handler(
                self.config,
                Buf::of(prefix),
                Buf::of(help),
                false,
                false,
            )
        }
    }

    fn admin_response(&self, body: &[u8]) {
        // SAFETY: live bootstrap config pointer, inside the admin request hook; Envoy copies.
        unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_admin_set_response(
                self.config,
                Buf::of(body),
            )
        }
    }

    fn watch_file(&self, path: &[u8], events: u32) -> bool {
        // SAFETY: live bootstrap config pointer on the main thread; Envoy copies the path.
        unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_file_watcher_add_watch(
                self.config,
                Buf::of(path),
                events,
            )
        }
    }

    fn counter_value(&self, name: &[u8]) -> Option<u64> {
        if self.extension.is_null() {
            return None;
        }
        let mut v = 0u64;
        // SAFETY: live extension pointer (set once Envoy created the extension) on the main
        // thread; `v` valid for writes.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_get_counter_value(
                self.extension,
                Buf::of(name),
                &mut v,
            )
        };
        ok.then_some(v)
    }

    fn gauge_value(&self, name: &[u8]) -> Option<u64> {
        if self.extension.is_null() {
            return None;
        }
        let mut v = 0u64;
        // SAFETY: as for `counter_value`.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_bootstrap_extension_get_gauge_value(
                self.extension,
                Buf::of(name),
                &mut v,
            )
        };
        ok.then_some(v)
    }
}

/// Copies the admin request's parts out of Envoy's buffers.
///
/// # Safety
/// Each buffer has length 0 or points at that many initialised bytes, valid and unchanged
/// during this call (Envoy's admin hook passes them for its own duration).
pub(crate) unsafe fn admin_parts(method: Buf, path: Buf, body: Buf) -> (String, String, Vec<u8>) {
    // SAFETY: guaranteed by the caller, for this call, and each view is copied at once.
    let (method, path, body) = unsafe {
        (
            Raw::new(method.ptr, method.len),
            Raw::new(path.ptr, path.len),
            Raw::new(body.ptr, body.len),
        )
    };
    let s = |r: Raw<'_>| String::from_utf8_lossy(&r.to_vec()).into_owned();
    (s(method), s(path), body.to_vec())
}

// ---- Which server host serves the hook running on this thread.

thread_local! {
    /// The host of the server extension whose hook runs on this thread (main thread).
    static SERVER_HOST: Cell<Option<NonNull<dyn ServerHost + 'static>>> = const { Cell::new(None) };
}

/// Makes `host` the current server host for the duration of `f` (re-entrant).
pub(crate) fn enter_server<R>(host: &dyn ServerHost, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<NonNull<dyn ServerHost + 'static>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERVER_HOST.with(|c| c.set(self.0));
        }
    }
    let ptr: NonNull<dyn ServerHost + '_> = NonNull::from(host);
    // SAFETY: only the lifetime bound changes; as in `enter_config`, the pointer is removed
    // (also on unwind) before `host` can go away and is only handed out inside `with_server`.
    let ptr: NonNull<dyn ServerHost + 'static> = unsafe { core::mem::transmute(ptr) };
    let _restore = Restore(SERVER_HOST.with(|c| c.replace(Some(ptr))));
    f()
}

/// Runs `f` with the current server host; `None` outside a server extension's hook.
pub(crate) fn with_server<R>(f: impl FnOnce(&dyn ServerHost) -> R) -> Option<R> {
    let ptr = SERVER_HOST.with(Cell::get)?;
    // SAFETY: valid until `enter_server` returns, and we are inside it on this thread.
    Some(f(unsafe { ptr.as_ref() }))
}
