//! A stream slot: the pooled, never-moving home of one stream's state and handler futures.

use crate::api::handler::Service;
use crate::executor::pool::Pool;
use crate::filter::core::{FilterMeta, FilterStats, StreamCore};
use crate::filter::hooks::StreamHooks;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Per-config state of a jisr filter: the pipeline, the user's state and the slot pool.
pub(crate) struct JisrConfig<S: Send + Sync + 'static, Svc: Service<S>> {
    pub(crate) meta: Arc<FilterMeta>,
    pub(crate) state: S,
    pub(crate) svc: Svc,
    pub(crate) pool: Pool<Slot<S, Svc>>,
}

/// One stream. `#[repr(C)]` with the hooks pointer first, so the thin pointer Envoy holds can be
/// turned back into `&dyn StreamHooks` without knowing the types.
#[repr(C)]
pub(crate) struct Slot<S: Send + Sync + 'static, Svc: Service<S>> {
    hooks: *const dyn StreamHooks,
    cfg: *const JisrConfig<S, Svc>,
    pub(crate) core: StreamCore,
    storage: Svc::Storage,
}

impl<S: Send + Sync + 'static, Svc: Service<S>> JisrConfig<S, Svc> {
    /// Takes a slot from the pool (or allocates one) and hands it out as Envoy's module
    /// filter pointer.
    pub(crate) fn new_stream(&self) -> *const core::ffi::c_void
    where
        Slot<S, Svc>: StreamHooks,
    {
        let slot = match self.pool.take() {
            Some(mut slot) => {
                slot.core.reset();
                slot
            }
            None => {
                FilterStats::bump(&self.meta.stats.slots_allocated);
                let mut slot = Box::new(Slot {
                    hooks: core::ptr::null::<Slot<S, Svc>>() as *const dyn StreamHooks,
                    cfg: self,
                    core: StreamCore::new(self.meta.clone()),
                    storage: Svc::Storage::default(),
                });
                let this: &Slot<S, Svc> = &slot;
                slot.hooks = this as &dyn StreamHooks as *const dyn StreamHooks;
                slot
            }
        };
        FilterStats::bump(&self.meta.stats.streams);
        self.meta
            .stats
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Pool::into_raw(slot) as *const core::ffi::c_void
    }
}

impl<S: Send + Sync + 'static, Svc: Service<S>> Slot<S, Svc> {
    fn cfg(&self) -> &JisrConfig<S, Svc> {
        // SAFETY: Envoy destroys a filter config only after every stream created from it is
        // destroyed, and slots are returned to (or freed with) that config's pool, so the config
        // outlives the slot.
        unsafe { &*self.cfg }
    }

    fn statics(
        &self,
    ) -> (
        &'static Svc,
        &'static Svc::Storage,
        &'static S,
        &'static StreamCore,
    ) {
        let cfg = self.cfg();
        // SAFETY: the slot is boxed and does not move while the stream lives; every future
        // created here is dropped (`clear_request`) before the slot is reused or freed, and the
        // config outlives the slot (see `cfg`). Handler code is generic over these lifetimes,
        // so it cannot rely on them being `'static`.
        unsafe {
            (
                &*(&cfg.svc as *const Svc),
                &*(&self.storage as *const Svc::Storage),
                &*(&cfg.state as *const S),
                &*(&self.core as *const StreamCore),
            )
        }
    }

    /// Starts the request pipeline.
    pub(crate) fn start_request(&self) {
        let (svc, storage, state, core) = self.statics();
        svc.start(storage, state, core);
    }

    /// Polls the request pipeline.
    pub(crate) fn poll_request(&self, cx: &mut Context<'_>) -> Poll<()> {
        Svc::poll(&self.storage, cx)
    }

    /// Drops the request pipeline's futures; false while they are being polled.
    pub(crate) fn clear_request(&self) -> bool {
        Svc::clear(&self.storage)
    }

    /// The function Envoy's destroy hook calls with this slot's pointer.
    pub(crate) fn destroyer(&self) -> unsafe fn(*const core::ffi::c_void) {
        Self::destroy
    }

    /// Ends the stream and returns the slot to its pool.
    ///
    /// # Safety
    /// `ptr` is a pointer from `new_stream` of this slot type, not used afterwards.
    unsafe fn destroy(ptr: *const core::ffi::c_void) {
        // SAFETY: guaranteed by the caller.
        let slot = unsafe { Pool::<Slot<S, Svc>>::from_raw(ptr as *const Slot<S, Svc>) };
        slot.finish();
        let clean = slot.clear_request();
        // SAFETY: the config outlives its streams (see `cfg`); read before the box moves.
        let cfg = unsafe { &*slot.cfg };
        cfg.meta
            .stats
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if clean {
            cfg.pool.put(slot);
        }
    }

    /// Marks the stream over: no more polls, wakes are no-ops, futures dropped.
    pub(crate) fn finish(&self) {
        self.core.ended.set(true);
        self.core.wake.kill();
        // Drop impls of user futures run with no host: nothing can reach the stream anymore.
        let _ = crate::executor::catch(|| self.clear_request());
    }
}

/// Starts an inner pipeline from a chain's `Next::run`.
pub(crate) fn start_inner<S: 'static, I: Service<S>>(
    svc: &'static I,
    storage: &I::Storage,
    state: &'static S,
    core: &StreamCore,
) {
    // SAFETY: `storage` and `core` live in the same boxed slot as the chain that calls this;
    // the inner future is dropped before that slot is reused or freed (chain storage clears
    // outer, then inner).
    let (storage, core): (&'static I::Storage, &'static StreamCore) = unsafe {
        (
            &*(storage as *const I::Storage),
            &*(core as *const StreamCore),
        )
    };
    svc.start(storage, state, core);
}
