//! Pooled slots for raw filters.

use super::{RawFactory, RawFilter, RawStream};
use crate::abi::http as abi;
use crate::executor::pool::Pool;
use crate::filter::http::core::FilterMeta;
use crate::filter::http::hooks::{ConfigHooks, HookKind, StreamHooks};
use crate::host::http::Host;
use crate::host::log::Level;
use std::cell::RefCell;
use std::sync::Arc;

/// Per-config state of a raw filter.
pub(crate) struct RawConfig<F: RawFactory> {
    meta: Arc<FilterMeta>,
    factory: F,
    pool: std::sync::Arc<Pool<RawSlot<F>>>,
}

impl<F: RawFactory> RawConfig<F> {
    pub(crate) fn new(meta: Arc<FilterMeta>, factory: F) -> RawConfig<F> {
        let pool: Arc<Pool<RawSlot<F>>> = Arc::default();
        crate::filter::http::meta::register_live(&meta, pool.clone());
        RawConfig {
            meta,
            factory,
            pool,
        }
    }
}

/// One raw stream; hooks pointer first (see `StreamSlot`).
#[repr(C)]
pub(crate) struct RawSlot<F: RawFactory> {
    hooks: *const dyn StreamHooks,
    cfg: *const RawConfig<F>,
    filter: RefCell<Option<F::Filter>>,
    destroy_pending: std::cell::Cell<bool>,
    /// Envoy destroyed the stream during one of the filter's hooks: its pointer is dead.
    detached: std::cell::Cell<bool>,
}

impl<F: RawFactory> ConfigHooks for RawConfig<F> {
    fn new_stream(&self, _host: &dyn Host) -> *const core::ffi::c_void {
        let slot = self.pool.take_or(|| {
            Box::new(RawSlot {
                hooks: core::ptr::null::<RawSlot<F>>() as *const dyn StreamHooks,
                cfg: self,
                filter: RefCell::new(None),
                destroy_pending: std::cell::Cell::new(false),
                detached: std::cell::Cell::new(false),
            })
        });
        slot.detached.set(false);
        slot.destroy_pending.set(false);
        // The user's factory may panic: hand the slot back first so it is not lost.
        let filter = match crate::executor::catch(|| self.factory.new_filter()) {
            Ok(f) => f,
            Err(msg) => {
                self.pool.put(slot, Default::default());
                std::panic::resume_unwind(Box::new(msg));
            }
        };
        *slot.filter.borrow_mut() = Some(filter);
        let raw = Pool::into_raw(slot);
        // SAFETY: as for jisr slots: the self-pointer is derived from the released box.
        unsafe { (*raw).hooks = raw as *const dyn StreamHooks };
        raw as *const core::ffi::c_void
    }

    fn name(&self) -> &str {
        &self.meta.name
    }

    #[cfg(feature = "testing")]
    fn idle_slots(&self) -> usize {
        self.pool.idle()
    }

    #[cfg(feature = "testing")]
    fn stats(&self) -> crate::filter::http::stats::FilterStatsSnapshot {
        crate::filter::http::stats::FilterStatsSnapshot::new(self.pool.stats(), &self.meta.stats)
    }

    #[cfg(feature = "testing")]
    fn idle_retained_bytes(&self) -> usize {
        0
    }
}

impl<F: RawFactory> RawSlot<F> {
    fn cfg(&self) -> &RawConfig<F> {
        // SAFETY: the config outlives its streams (Envoy destroys configs after their streams).
        unsafe { &*self.cfg }
    }

    fn with<R>(
        &self,
        host: &dyn Host,
        default: R,
        f: impl FnOnce(&mut F::Filter, &mut RawStream<'_>) -> R,
    ) -> R {
        let cfg = self.cfg();
        let mut s = RawStream {
            host,
            meta: &cfg.meta,
            detached: &self.detached,
        };
        match self.filter.try_borrow_mut() {
            Ok(mut g) => match g.as_mut() {
                Some(filter) => f(filter, &mut s),
                None => default,
            },
            // Re-entered from inside one of its own hooks (e.g. a local reply): let it pass.
            Err(_) => default,
        }
    }

    unsafe fn destroy(ptr: *const core::ffi::c_void) {
        // SAFETY: guaranteed by the caller: alive until this call frees it.
        let this = unsafe { &*(ptr as *const RawSlot<F>) };
        if this.filter.try_borrow_mut().is_err() {
            // Destroyed from inside the filter's own hook: Envoy's pointer is dead from now on,
            // and the slot is finished when that hook unwinds.
            this.destroy_pending.set(true);
            this.detached.set(true);
            return;
        }
        // SAFETY: guaranteed by the caller (pointer from `new_stream`, used once).
        let slot = unsafe { Pool::<RawSlot<F>>::from_raw(ptr as *const RawSlot<F>) };
        let filter = slot.filter.borrow_mut().take();
        // The user's `Drop` may panic; the slot is clean either way.
        let _ = crate::executor::catch(move || drop(filter));
        // SAFETY: the config outlives its streams (see `cfg`); read before the box moves.
        let cfg = unsafe { &*slot.cfg };
        cfg.pool.put(slot, Default::default());
    }
}

impl<F: RawFactory> StreamHooks for RawSlot<F> {
    fn request_headers(&self, host: &dyn Host, eos: bool) -> abi::HeadersStatus {
        self.with(host, abi::HeadersStatus::Continue, |f, s| {
            f.on_request_headers(s, eos).abi()
        })
    }
    fn request_body(&self, host: &dyn Host, eos: bool) -> abi::BodyStatus {
        self.with(host, abi::BodyStatus::Continue, |f, s| {
            f.on_request_body(s, eos).abi()
        })
    }
    fn request_trailers(&self, host: &dyn Host) -> abi::TrailersStatus {
        self.with(host, abi::TrailersStatus::Continue, |f, s| {
            f.on_request_trailers(s).abi()
        })
    }
    fn response_headers(&self, host: &dyn Host, eos: bool) -> abi::HeadersStatus {
        self.with(host, abi::HeadersStatus::Continue, |f, s| {
            f.on_response_headers(s, eos).abi()
        })
    }
    fn response_body(&self, host: &dyn Host, eos: bool) -> abi::BodyStatus {
        self.with(host, abi::BodyStatus::Continue, |f, s| {
            f.on_response_body(s, eos).abi()
        })
    }
    fn response_trailers(&self, host: &dyn Host) -> abi::TrailersStatus {
        self.with(host, abi::TrailersStatus::Continue, |f, s| {
            f.on_response_trailers(s).abi()
        })
    }
    fn stream_complete(&self, host: &dyn Host) {
        self.with(host, (), |f, s| f.on_stream_complete(s))
    }
    fn scheduled(&self, host: &dyn Host, event: u64) {
        self.with(host, (), |f, s| f.on_scheduled(s, event))
    }
    fn watermark(&self, _host: &dyn Host, _above: bool) {}
    fn local_reply(
        &self,
        _host: &dyn Host,
        _status: u32,
        _reset_imminent: bool,
    ) -> abi::LocalReplyStatus {
        abi::LocalReplyStatus::Continue
    }
    fn callout_done(
        &self,
        _host: &dyn Host,
        _id: u64,
        _result: u32,
        _headers: crate::host::HeaderArray<'_>,
        _chunks: crate::host::ChunkArray<'_>,
    ) {
    }

    fn http_stream(
        &self,
        _host: &dyn Host,
        _id: u64,
        _event: crate::filter::http::hooks::RawStreamEvent<'_>,
    ) {
    }

    fn fail_closed(&self, host: &dyn Host, kind: HookKind, msg: &str) {
        // The raw filter (or jisr around it) panicked: its state is unknown, so it gets no
        // more hooks, and the stream fails closed.
        let poisoned = self.filter.try_borrow_mut().map(|mut f| f.take());
        if let Ok(filter) = poisoned {
            let _ = crate::executor::catch(move || drop(filter));
        }
        if self.detached.get() {
            return;
        }
        if host.log_enabled(Level::Error as u32) {
            let line = format!(
                "jisr: raw filter '{}' panicked: {msg}",
                self.cfg().meta.name
            );
            host.log(Level::Error as u32, line.as_bytes());
        }
        match kind {
            HookKind::Request => crate::filter::http::reply::internal_error(
                host,
                crate::filter::http::hooks::PANIC_DETAILS.as_bytes(),
            ),
            _ => host.reset_stream(crate::filter::http::hooks::PANIC_DETAILS.as_bytes()),
        }
    }

    fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        Self::destroy
    }

    fn take_pending_destroy(&self) -> bool {
        if self.destroy_pending.get() && self.filter.try_borrow_mut().is_ok() {
            self.destroy_pending.set(false);
            return true;
        }
        false
    }
}

// SAFETY: `destroy` hands a slot to the pool only after taking and dropping its filter (the
// only user, possibly thread-bound, value); what remains are cells and pointers to the slot and
// its `Sync` config.
unsafe impl<F: RawFactory> crate::executor::pool::Idle for RawSlot<F> {}

/// The first value of header `name` of `map`, viewed in Envoy's memory for as long as `s` is
/// borrowed (no copy: raw filters read headers in place).
pub(super) fn header_view<'s>(
    s: &'s RawStream<'_>,
    host: &'s dyn Host,
    map: crate::host::http::Map,
    name: &str,
) -> Option<&'s [u8]> {
    let raw = crate::api::http::request::with_key(name, |key| host.header(map, key, 0).0)?;
    // SAFETY: `view`'s contract, nothing modifies the header map while `s` is borrowed: `s` is
    // the only `RawStream` of this stream (made per hook in `with_filter`, its host not
    // reachable by the filter), and every method of it that modifies headers or replies
    // (`set_header`, `add_header`, `send_response`, `continue_*`) takes `&mut self`. Envoy runs
    // nothing on the stream while the filter's hook runs.
    Some(unsafe { raw.view(s) })
}
