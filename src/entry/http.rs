//! The HTTP filter's entry points: Envoy's `on_http_filter_*` hooks, each run under the panic
//! guard and forwarded to the stream's state machine (`filter::http`).
//!
//! Pointer contracts shared by the functions below (Envoy's dynamic-module ABI):
//! - `e` (an Envoy filter pointer) is the filter of the stream the hook is about, valid for the
//!   duration of the call and only on the calling worker thread;
//! - `m` (a module filter pointer) is a value this module returned from [`filter_new`] for that
//!   stream, and Envoy has not yet called [`destroy`] with it;
//! - a config pointer is a value returned by [`config_new`] (or [`route_config_new`]) that has
//!   not been destroyed; Envoy destroys a filter config only after all of its streams;
//! - buffers and arrays Envoy passes (name, config bytes, headers, body chunks) are readable
//!   for their given lengths until the call returns (or are null with length 0).

use super::{REGISTRY, abi_chunks, abi_headers, bytes, log_error};
use crate::abi::ffi::{Buf, EnvoyConfigPtr, EnvoyFilterPtr};
use crate::api::config::ConfigHandle;
use crate::api::registry::Registry;
use crate::executor::catch;
use crate::filter::http::background::{self, ConfigStreamEvent};
pub use crate::filter::http::hooks::RawStreamEvent;
use crate::filter::http::hooks::{ConfigHooks, HookKind, StreamHooks};
use crate::host::http::Host;
use crate::host::http::envoy::{EnvoyConfigHost, EnvoyHost};
use crate::host::{ChunkArray, HeaderArray};
use core::ffi::c_void;

/// Builds a config through `registry`, turning every failure into a message.
pub(crate) fn build_config(
    registry: &Registry,
    handle: &mut ConfigHandle<'_>,
) -> Result<Box<dyn ConfigHooks>, String> {
    let name = handle.filter_name().to_string();
    match catch(|| registry.build(handle)) {
        Ok(Ok(Some(c))) => Ok(c),
        Ok(Ok(None)) => {
            let known: Vec<&str> = registry.names().collect();
            Err(format!(
                "jisr: unknown filter name '{name}'; this module registers: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
        Ok(Err(e)) => Err(format!("jisr: filter '{name}' rejected its config: {e}")),
        Err(panic) => Err(format!(
            "jisr: filter '{name}' config factory panicked: {panic}"
        )),
    }
}

/// Drops a filter config (user state, handlers and their captures), catching a panicking
/// `Drop`; returns its message.
pub(crate) fn drop_config(config: Box<dyn ConfigHooks>) -> Result<(), String> {
    let name = catch(|| config.name().to_string()).unwrap_or_default();
    catch(move || drop(config))
        .map_err(|m| format!("jisr: dropping filter '{name}' config panicked: {m}"))
}

/// Creates a stream on `config`; null (Envoy then fails the stream) when that panics, e.g. in a
/// raw filter's factory, or when the config refuses new streams.
pub(crate) fn new_stream(
    config: &dyn ConfigHooks,
    host: &dyn Host,
) -> Result<*const c_void, String> {
    match catch(|| config.new_stream(host)) {
        Ok(m) if m.is_null() => Err(format!(
            "jisr: filter '{}' refused a new stream (too many slots could not be cleaned)",
            config.name()
        )),
        Ok(m) => Ok(m),
        Err(msg) => Err(format!(
            "jisr: filter '{}': creating a stream panicked: {msg}",
            config.name()
        )),
    }
}

/// `on_http_filter_config_new`.
///
/// # Safety
/// `config` is the Envoy config pointer of this call; `name` and `cfg` follow the buffer
/// contract of the module docs.
pub unsafe fn config_new(config: EnvoyConfigPtr, name: Buf, cfg: Buf) -> *const c_void {
    // SAFETY: buffers valid during this hook (module docs); copied below.
    let (name, cfg) = unsafe { (bytes(name), bytes(cfg)) };
    let made = catch(|| {
        let name = String::from_utf8_lossy(name);
        let Some(registry) = REGISTRY.get() else {
            return Err("jisr: module not initialised (on_program_init did not run)".to_string());
        };
        let host = EnvoyConfigHost::new(config);
        let mut handle = ConfigHandle {
            envoy_stats: true,
            name: &name,
            bytes: cfg,
            host: &host,
            background: None,
        };
        build_config(registry, &mut handle)
    });
    match made {
        Ok(Ok(c)) => Box::into_raw(Box::new(c)) as *const c_void,
        Ok(Err(msg)) => {
            log_error(&msg);
            core::ptr::null()
        }
        Err(msg) => {
            log_error(&format!("jisr: loading a filter config panicked: {msg}"));
            core::ptr::null()
        }
    }
}

/// `on_http_filter_per_route_config_new`.
///
/// # Safety
/// `name` and `cfg` follow the buffer contract of the module docs.
pub unsafe fn route_config_new(name: Buf, cfg: Buf) -> *const c_void {
    // SAFETY: buffers valid during this hook (module docs); copied below.
    let (name, cfg) = unsafe { (bytes(name), bytes(cfg)) };
    let made = catch(|| {
        let name = String::from_utf8_lossy(name);
        let Some(registry) = REGISTRY.get() else {
            return Err("jisr: module not initialised (on_program_init did not run)".to_string());
        };
        registry.build_route(&name, cfg).map(Box::new)
    });
    match made {
        Ok(Ok(b)) => Box::into_raw(b) as *const c_void,
        Ok(Err(msg)) | Err(msg) => {
            log_error(&msg);
            core::ptr::null()
        }
    }
}

/// `on_http_filter_per_route_config_destroy`.
///
/// # Safety
/// `ptr` is null or came from `route_config_new` and is not used afterwards.
pub unsafe fn route_config_destroy(ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr` came from `Box::into_raw(Box<RouteConfigBox>)` and Envoy destroys it once.
    let b = unsafe { Box::from_raw(ptr as *mut crate::host::http::route::RouteConfigBox) };
    if let Err(msg) = catch(move || drop(b)) {
        log_error(&format!(
            "jisr: dropping a per-route config panicked: {msg}"
        ));
    }
}

/// # Safety
/// `ptr` is a config pointer returned by `config_new`, not yet destroyed.
unsafe fn config<'a>(ptr: *const c_void) -> &'a dyn ConfigHooks {
    // SAFETY: `ptr` came from `Box::into_raw(Box<Box<dyn ConfigHooks>>)` and is live.
    unsafe { &**(ptr as *const Box<dyn ConfigHooks>) }
}

/// `on_http_filter_config_destroy`.
///
/// # Safety
/// `ptr` is null or a config pointer returned by `config_new`, not used afterwards.
pub unsafe fn config_destroy(ptr: *const c_void) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: see `config`; Envoy calls destroy once, after all its streams are gone.
    let c = unsafe { Box::from_raw(ptr as *mut Box<dyn ConfigHooks>) };
    if let Err(msg) = drop_config(*c) {
        log_error(&msg);
    }
}

/// `on_http_filter_new`.
///
/// # Safety
/// `cfg` is null or a live config pointer (module docs); `filter` is the new stream's Envoy
/// filter pointer, valid for this call.
pub unsafe fn filter_new(cfg: *const c_void, filter: EnvoyFilterPtr) -> *const c_void {
    if cfg.is_null() {
        return core::ptr::null();
    }
    let host = EnvoyHost::new(filter);
    // SAFETY: `cfg` is a live config pointer.
    match new_stream(unsafe { config(cfg) }, &host) {
        Ok(m) => m,
        Err(msg) => {
            log_error(&msg);
            core::ptr::null()
        }
    }
}

/// # Safety
/// `m` is a module filter pointer from `filter_new`, still live.
pub(crate) unsafe fn stream<'a>(m: *const c_void) -> &'a dyn StreamHooks {
    // SAFETY: every slot type is `#[repr(C)]` with a `*const dyn StreamHooks` to itself first,
    // and the caller guarantees the slot is live.
    unsafe { &**(m as *const *const dyn StreamHooks) }
}

/// Runs a hook on the stream behind `m`, the way every entry point does: a panic inside jisr
/// (handlers are guarded closer to them) fails the stream closed and the hook returns `fail`;
/// then a destroy Envoy requested meanwhile is finished (the slot is only freed once no hook of
/// ours runs on it).
///
/// # Safety
/// `m` is a live module pointer (module docs) and `host` serves its stream for this call.
pub(crate) unsafe fn on_stream<R>(
    m: *const c_void,
    host: &dyn Host,
    kind: HookKind,
    fail: R,
    f: impl FnOnce(&dyn StreamHooks) -> R,
) -> R {
    // SAFETY: guaranteed by the caller.
    let hooks = unsafe { stream(m) };
    // Through the stream's host: the simulated host of `jisr::testing` has no process log.
    let log = |msg: String| {
        let _ = catch(|| host.log(crate::host::log::Level::Error as u32, msg.as_bytes()));
    };
    let r = match catch(|| f(hooks)) {
        Ok(r) => r,
        Err(msg) => {
            if catch(|| hooks.fail_closed(host, kind, &msg)).is_err() {
                log(format!(
                    "jisr: failing a stream closed panicked after: {msg}"
                ));
            }
            fail
        }
    };
    if hooks.take_pending_destroy() {
        let d = hooks.destroyer();
        // SAFETY: Envoy already asked to destroy `m`; this is the one call that frees it, and
        // nothing touches `hooks` afterwards.
        if let Err(msg) = catch(|| unsafe { d(m) }) {
            log(format!("jisr: destroying a stream panicked: {msg}"));
        }
    }
    r
}

/// A stream's hooks on any host, each run through [`on_stream`]. Envoy's entry points below run
/// them with the real host; `jisr::testing::bench` runs them with its bench host, so a
/// benchmark measures the path Envoy's calls take, panic guard and pending destroy included.
pub(crate) struct OnHost<'h>(pub(crate) &'h dyn Host);

macro_rules! forward {
    ($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, $typed:ty => $method:ident, $kind:expr, $fail:expr) => {
        impl OnHost<'_> {
            #[doc = concat!("`on_http_filter_", stringify!($name), "` on this host.")]
            ///
            /// # Safety
            /// `m` is a live module pointer (module docs) of a stream this host serves.
            #[inline]
            pub(crate) unsafe fn $name(&self, m: *const c_void $(, $arg: $ty)*) -> $typed {
                let host = self.0;
                // SAFETY: guaranteed by the caller.
                unsafe { on_stream(m, host, $kind, $fail, |hooks| hooks.$method(host $(, $arg)*)) }
            }
        }

        #[doc = concat!("`on_http_filter_", stringify!($name), "`.")]
        ///
        /// # Safety
        /// `e` and `m` follow the pointer contract of the module docs.
        pub unsafe fn $name(e: EnvoyFilterPtr, m: *const c_void $(, $arg: $ty)*) -> $ret {
            // SAFETY: `m` is the live module pointer Envoy passes with this hook, for the
            // stream of `e`. The typed status becomes the `u32` Envoy reads here, at the edge
            // only.
            unsafe { OnHost(&EnvoyHost::new(e)).$name(m $(, $arg)*) }.into()
        }
    };
}

use crate::abi::http::{BodyStatus, HeadersStatus, TrailersStatus};

forward!(request_headers(eos: bool) -> u32, HeadersStatus => request_headers, HookKind::Request, HeadersStatus::StopIteration);
forward!(request_body(eos: bool) -> u32, BodyStatus => request_body, HookKind::Request, BodyStatus::StopIterationNoBuffer);
forward!(request_trailers() -> u32, TrailersStatus => request_trailers, HookKind::Request, TrailersStatus::StopIteration);
forward!(response_headers(eos: bool) -> u32, HeadersStatus => response_headers, HookKind::Response, HeadersStatus::StopIteration);
forward!(response_body(eos: bool) -> u32, BodyStatus => response_body, HookKind::Response, BodyStatus::StopIterationNoBuffer);
forward!(response_trailers() -> u32, TrailersStatus => response_trailers, HookKind::Response, TrailersStatus::StopIteration);
forward!(stream_complete() -> (), () => stream_complete, HookKind::Other, ());
forward!(scheduled(event: u64) -> (), () => scheduled, HookKind::Other, ());

/// `on_http_filter_downstream_above_write_buffer_high_watermark` and the low one.
///
/// # Safety
/// `e` and `m` follow the pointer contract of the module docs.
pub unsafe fn watermark(e: EnvoyFilterPtr, m: *const c_void, above: bool) {
    let host = EnvoyHost::new(e);
    // SAFETY: live module pointer (module docs).
    unsafe {
        on_stream(m, &host, HookKind::Other, (), |hooks| {
            hooks.watermark(&host, above)
        })
    }
}

/// `on_http_filter_local_reply`.
///
/// # Safety
/// `e` and `m` follow the pointer contract of the module docs.
pub unsafe fn local_reply(
    e: EnvoyFilterPtr,
    m: *const c_void,
    status: u32,
    _details: Buf,
    reset: bool,
) -> u32 {
    let host = EnvoyHost::new(e);
    // SAFETY: live module pointer (module docs).
    unsafe {
        on_stream(
            m,
            &host,
            HookKind::Other,
            crate::abi::http::LocalReplyStatus::Continue,
            |hooks| hooks.local_reply(&host, status, reset),
        )
    }
    .into()
}

/// `on_http_filter_http_callout_done`.
///
/// # Safety
/// `e` and `m` follow the pointer contract of the module docs; `headers`/`chunks` are null or
/// point at `n`/`nc` entries readable for this call.
#[allow(clippy::too_many_arguments)] // Mirrors Envoy's hook signature.
pub unsafe fn callout_done(
    e: EnvoyFilterPtr,
    m: *const c_void,
    id: u64,
    result: u32,
    headers: *const crate::abi::ffi::HeaderPair,
    n: usize,
    chunks: *const Buf,
    nc: usize,
) {
    // SAFETY: the caller's contract: the arrays, and the bytes they point at, are readable and
    // unchanged for this call, which the views do not outlive.
    let (headers, chunks) = unsafe { (abi_headers(headers, n), abi_chunks(chunks, nc)) };
    // SAFETY: live module pointer (module docs), for the stream of `e`.
    unsafe { OnHost(&EnvoyHost::new(e)).callout_done(m, id, result, headers, chunks) }
}

impl OnHost<'_> {
    /// `on_http_filter_http_callout_done` on this host.
    ///
    /// # Safety
    /// `m` is a live module pointer (module docs) of a stream this host serves.
    #[inline]
    pub(crate) unsafe fn callout_done(
        &self,
        m: *const c_void,
        id: u64,
        result: u32,
        headers: HeaderArray<'_>,
        chunks: ChunkArray<'_>,
    ) {
        let host = self.0;
        // SAFETY: guaranteed by the caller.
        unsafe {
            on_stream(m, host, HookKind::Other, (), |hooks| {
                hooks.callout_done(host, id, result, headers, chunks)
            })
        }
    }
}

/// Runs `f` with a live config's hooks and an Envoy config host, catching panics (logged).
///
/// # Safety
/// `p` is null or a config pointer returned by `config_new`, not yet destroyed.
unsafe fn on_config(
    c: EnvoyConfigPtr,
    p: *const c_void,
    f: impl FnOnce(&dyn ConfigHooks, &EnvoyConfigHost),
) {
    if p.is_null() {
        return;
    }
    let host = EnvoyConfigHost::new(c);
    // SAFETY: live config pointer (the caller's contract).
    let hooks = unsafe { config(p) };
    if let Err(msg) = catch(|| f(hooks, &host)) {
        log_error(&format!(
            "jisr: filter '{}': a background hook panicked: {msg}",
            hooks.name()
        ));
    }
}

/// `on_http_filter_config_scheduled`: the flush of jisr's Envoy stats
/// (`stats_flush::FLUSH_EVENT`), else polls the config's ready background tasks.
///
/// # Safety
/// `c` is the Envoy config pointer of this call; `p` is null or a live config pointer returned by `config_new`.
pub unsafe fn config_scheduled(c: EnvoyConfigPtr, p: *const c_void, event: u64) {
    // SAFETY: forwarded contract.
    unsafe {
        on_config(c, p, |hooks, host| {
            if event == crate::filter::http::stats_flush::FLUSH_EVENT {
                hooks.flush_envoy_stats(host)
            } else {
                background::run(hooks, host)
            }
        })
    }
}

/// `on_http_filter_config_http_callout_done`.
///
/// # Safety
/// As [`config_scheduled`]; `headers`/`chunks` are null or point at `n`/`nc` entries readable
/// for this call.
#[allow(clippy::too_many_arguments)] // Mirrors Envoy's hook signature.
pub unsafe fn config_callout_done(
    c: EnvoyConfigPtr,
    p: *const c_void,
    id: u64,
    result: u32,
    headers: *const crate::abi::ffi::HeaderPair,
    n: usize,
    chunks: *const Buf,
    nc: usize,
) {
    // SAFETY: the caller's contract: the arrays, and the bytes they point at, are readable and
    // unchanged for this call, which the views do not outlive.
    let (headers, chunks) = unsafe { (abi_headers(headers, n), abi_chunks(chunks, nc)) };
    // SAFETY: forwarded contract.
    unsafe {
        on_config(c, p, |hooks, host| {
            background::callout_done(hooks, host, id, result, headers, chunks)
        })
    }
}

/// `on_http_filter_config_http_stream_headers`.
///
/// # Safety
/// As [`config_callout_done`].
pub unsafe fn config_stream_headers(
    c: EnvoyConfigPtr,
    p: *const c_void,
    id: u64,
    headers: *const crate::abi::ffi::HeaderPair,
    n: usize,
    eos: bool,
) {
    // SAFETY: the caller's contract: the array and its bytes are readable for this call.
    let headers = unsafe { abi_headers(headers, n) };
    // SAFETY: forwarded contract.
    unsafe {
        on_config(c, p, |hooks, host| {
            background::config_stream_event(
                hooks,
                host,
                id,
                ConfigStreamEvent::Headers(headers, eos),
            )
        })
    }
}

/// `on_http_filter_config_http_stream_data`.
///
/// # Safety
/// As [`config_callout_done`].
pub unsafe fn config_stream_data(
    c: EnvoyConfigPtr,
    p: *const c_void,
    id: u64,
    data: *const Buf,
    n: usize,
    eos: bool,
) {
    // SAFETY: the caller's contract: the array and its bytes are readable for this call.
    let data = unsafe { abi_chunks(data, n) };
    // SAFETY: forwarded contract.
    unsafe {
        on_config(c, p, |hooks, host| {
            background::config_stream_event(hooks, host, id, ConfigStreamEvent::Data(data, eos))
        })
    }
}

/// `on_http_filter_config_http_stream_trailers`.
///
/// # Safety
/// As [`config_callout_done`].
pub unsafe fn config_stream_trailers(
    c: EnvoyConfigPtr,
    p: *const c_void,
    id: u64,
    trailers: *const crate::abi::ffi::HeaderPair,
    n: usize,
) {
    // SAFETY: the caller's contract: the array and its bytes are readable for this call.
    let trailers = unsafe { abi_headers(trailers, n) };
    // SAFETY: forwarded contract.
    unsafe {
        on_config(c, p, |hooks, host| {
            background::config_stream_event(hooks, host, id, ConfigStreamEvent::Trailers(trailers))
        })
    }
}

/// `on_http_filter_config_http_stream_complete` (`reset` false) and `_reset` (true).
///
/// # Safety
/// As [`config_scheduled`].
pub unsafe fn config_stream_end(c: EnvoyConfigPtr, p: *const c_void, id: u64, reset: bool) {
    let ev = if reset {
        ConfigStreamEvent::Reset
    } else {
        ConfigStreamEvent::Complete
    };
    // SAFETY: forwarded contract.
    unsafe {
        on_config(c, p, |hooks, host| {
            background::config_stream_event(hooks, host, id, ev)
        })
    }
}

/// `on_http_filter_http_stream_*`: one streaming-callout event.
///
/// # Safety
/// `e` and `m` follow the pointer contract of the module docs; arrays inside `event` are
/// readable for this call.
pub unsafe fn http_stream(e: EnvoyFilterPtr, m: *const c_void, id: u64, event: RawStreamEvent<'_>) {
    let host = EnvoyHost::new(e);
    // SAFETY: live module pointer (module docs).
    unsafe {
        on_stream(m, &host, HookKind::Other, (), |hooks| {
            hooks.http_stream(&host, id, event)
        })
    }
}

/// Builds a headers event.
///
/// # Safety
/// `h` null or `n` entries readable for `'a`, each pointing at bytes valid and unchanged for
/// `'a` (Envoy's arrays passed to a hook: until it returns; `'a` ends within the hook).
pub unsafe fn stream_headers<'a>(
    h: *const crate::abi::ffi::HeaderPair,
    n: usize,
    eos: bool,
) -> RawStreamEvent<'a> {
    // SAFETY: guaranteed by the caller.
    RawStreamEvent::Headers(unsafe { abi_headers(h, n) }, eos)
}

/// Builds a data event.
///
/// # Safety
/// As [`stream_headers`], for `n` chunks at `d`.
pub unsafe fn stream_data<'a>(d: *const Buf, n: usize, eos: bool) -> RawStreamEvent<'a> {
    // SAFETY: guaranteed by the caller.
    RawStreamEvent::Data(unsafe { abi_chunks(d, n) }, eos)
}

/// Builds a trailers event.
///
/// # Safety
/// As [`stream_headers`], for `n` pairs at `t`.
pub unsafe fn stream_trailers<'a>(
    t: *const crate::abi::ffi::HeaderPair,
    n: usize,
) -> RawStreamEvent<'a> {
    // SAFETY: guaranteed by the caller.
    RawStreamEvent::Trailers(unsafe { abi_headers(t, n) })
}

/// `on_http_filter_destroy`.
///
/// # Safety
/// `m` is null or a live module pointer (module docs), not used afterwards.
pub unsafe fn destroy(m: *const c_void) {
    // SAFETY: forwarded contract.
    if let Err(msg) = unsafe { destroy_stream(m) } {
        log_error(&msg);
    }
}

/// What `on_http_filter_destroy` does, a panic returned as the line to log.
///
/// # Safety
/// As [`destroy`].
unsafe fn destroy_stream(m: *const c_void) -> Result<(), String> {
    if m.is_null() {
        return Ok(());
    }
    // SAFETY: live module pointer; `destroyer` consumes it exactly once (while one of our hooks
    // runs on the stream, it only marks the destroy pending, for `on_stream` to finish).
    let d = unsafe { stream(m).destroyer() };
    // SAFETY: as above.
    catch(|| unsafe { d(m) }).map_err(|msg| format!("jisr: destroying a stream panicked: {msg}"))
}

impl OnHost<'_> {
    /// `on_http_filter_destroy`, a panic logged through this host (a simulated host has no
    /// process log).
    ///
    /// # Safety
    /// As [`destroy`].
    #[cfg(feature = "testing")]
    pub(crate) unsafe fn destroy(&self, m: *const c_void) {
        // SAFETY: forwarded contract.
        if let Err(msg) = unsafe { destroy_stream(m) } {
            let _ = catch(|| self.0.log(4, msg.as_bytes()));
        }
    }
}

/// The HTTP filter hooks of [`export!`](crate::export).
#[doc(hidden)]
#[macro_export]
macro_rules! __export_http_hooks {
    () => {
        const _: () = {
            use ::core::ffi::c_void;
            use $crate::entry::http as h;
            #[allow(unused)]
            type Buf = $crate::entry::EnvoyBuf;
            #[allow(unused)]
            type HeaderPair = $crate::entry::EnvoyHeader;

            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
                c: *mut c_void, name: Buf, cfg: Buf,
            ) -> *const c_void {
                unsafe { h::config_new(c, name, cfg) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(p: *const c_void) {
                unsafe { h::config_destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
                name: Buf, cfg: Buf,
            ) -> *const c_void {
                unsafe { h::route_config_new(name, cfg) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(p: *const c_void) {
                unsafe { h::route_config_destroy(p) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
                c: *const c_void, e: *mut c_void,
            ) -> *const c_void {
                unsafe { h::filter_new(c, e) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
                e: *mut c_void, m: *const c_void, eos: bool,
            ) -> u32 {
                unsafe { h::request_headers(e, m, eos) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
                e: *mut c_void, m: *const c_void, eos: bool,
            ) -> u32 {
                unsafe { h::request_body(e, m, eos) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
                e: *mut c_void, m: *const c_void,
            ) -> u32 {
                unsafe { h::request_trailers(e, m) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
                e: *mut c_void, m: *const c_void, eos: bool,
            ) -> u32 {
                unsafe { h::response_headers(e, m, eos) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
                e: *mut c_void, m: *const c_void, eos: bool,
            ) -> u32 {
                unsafe { h::response_body(e, m, eos) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
                e: *mut c_void, m: *const c_void,
            ) -> u32 {
                unsafe { h::response_trailers(e, m) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
                e: *mut c_void, m: *const c_void,
            ) {
                unsafe { h::stream_complete(e, m) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(m: *const c_void) {
                unsafe { h::destroy(m) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
                e: *mut c_void, m: *const c_void, id: u64, result: u32,
                headers: *const HeaderPair, n: usize, chunks: *const Buf, nc: usize,
            ) {
                unsafe { h::callout_done(e, m, id, result, headers, n, chunks, nc) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
                e: *mut c_void, m: *const c_void, id: u64, hd: *const HeaderPair, n: usize, eos: bool,
            ) {
                unsafe { h::http_stream(e, m, id, h::stream_headers(hd, n, eos)) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
                e: *mut c_void, m: *const c_void, id: u64, d: *const Buf, n: usize, eos: bool,
            ) {
                unsafe { h::http_stream(e, m, id, h::stream_data(d, n, eos)) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
                e: *mut c_void, m: *const c_void, id: u64, t: *const HeaderPair, n: usize,
            ) {
                unsafe { h::http_stream(e, m, id, h::stream_trailers(t, n)) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
                e: *mut c_void, m: *const c_void, id: u64,
            ) {
                unsafe { h::http_stream(e, m, id, h::RawStreamEvent::Complete) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
                e: *mut c_void, m: *const c_void, id: u64, reason: u32,
            ) {
                unsafe { h::http_stream(e, m, id, h::RawStreamEvent::Reset(reason)) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
                e: *mut c_void, m: *const c_void, event: u64,
            ) {
                unsafe { h::scheduled(e, m, event) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
                e: *mut c_void, m: *const c_void,
            ) {
                unsafe { h::watermark(e, m, true) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
                e: *mut c_void, m: *const c_void,
            ) {
                unsafe { h::watermark(e, m, false) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
                e: *mut c_void, m: *const c_void, status: u32, details: Buf, reset: bool,
            ) -> u32 {
                unsafe { h::local_reply(e, m, status, details, reset) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
                c: *mut c_void, p: *const c_void, event: u64,
            ) {
                unsafe { h::config_scheduled(c, p, event) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
                c: *mut c_void, p: *const c_void, id: u64, result: u32,
                headers: *const HeaderPair, n: usize, chunks: *const Buf, nc: usize,
            ) {
                unsafe { h::config_callout_done(c, p, id, result, headers, n, chunks, nc) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
                c: *mut c_void, p: *const c_void, id: u64, hs: *const HeaderPair, n: usize, eos: bool,
            ) {
                unsafe { h::config_stream_headers(c, p, id, hs, n, eos) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
                c: *mut c_void, p: *const c_void, id: u64, d: *const Buf, n: usize, eos: bool,
            ) {
                unsafe { h::config_stream_data(c, p, id, d, n, eos) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
                c: *mut c_void, p: *const c_void, id: u64, t: *const HeaderPair, n: usize,
            ) {
                unsafe { h::config_stream_trailers(c, p, id, t, n) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
                c: *mut c_void, p: *const c_void, id: u64,
            ) {
                unsafe { h::config_stream_end(c, p, id, false) }
            }
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
                c: *mut c_void, p: *const c_void, id: u64, _reason: u32,
            ) {
                unsafe { h::config_stream_end(c, p, id, true) }
            }
        };
    };
}
