//! A stream slot: the pooled, never-moving home of one stream's state and handler futures.

use crate::executor::pool::Pool;
use crate::executor::task::Cleared;
use crate::filter::http::core::{FilterMeta, FilterStats, StreamCore};
use crate::filter::http::hooks::StreamHooks;
use crate::filter::http::meta::ResponseMode;
use crate::filter::http::pipeline::Pipeline;
use crate::filter::http::state::StreamState;
use std::cell::RefCell;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Per-config state of a jisr filter: pipelines, the user's state and the slot pool.
pub(crate) struct JisrConfig<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    pub(crate) meta: Arc<FilterMeta>,
    /// Background tasks (dropped, and the runtime closed, before the state).
    pub(crate) background: crate::filter::background::BackgroundSlot,
    pub(crate) state: S,
    pub(crate) req: Q,
    pub(crate) resp: R,
    pub(crate) pool: std::sync::Arc<Pool<StreamSlot<S, Q, R>>>,
}

/// One stream. `#[repr(C)]` with the hooks pointer first, so the thin pointer Envoy holds can be
/// turned back into `&dyn StreamHooks` without knowing the types.
#[repr(C)]
pub(crate) struct StreamSlot<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    hooks: *const dyn StreamHooks,
    cfg: *const JisrConfig<S, Q, R>,
    pub(crate) core: StreamCore,
    req: Q::Storage,
    resp: R::Storage,
    /// What the request handler returned, until the response handler takes it.
    value: RefCell<Option<Q::Output>>,
}

impl<S, Q, R> JisrConfig<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    /// Takes a slot from the pool (or allocates one) and hands it out as Envoy's module
    /// filter pointer.
    pub(crate) fn new_stream(&self) -> *const core::ffi::c_void
    where
        StreamSlot<S, Q, R>: StreamHooks,
    {
        if self.pool.leaked() >= crate::executor::pool::MAX_LEAKED {
            // Refuse the stream (Envoy answers 500 or closes it) rather than leak without bound.
            return core::ptr::null();
        }
        let slot = self.pool.take_or(|| {
            Box::new(StreamSlot {
                hooks: core::ptr::null::<StreamSlot<S, Q, R>>() as *const dyn StreamHooks,
                cfg: self,
                core: StreamCore::new(self.meta.clone()),
                req: Q::Storage::default(),
                resp: R::Storage::default(),
                value: RefCell::new(None),
            })
        });
        if let Some(envoy) = &self.meta.envoy {
            // The lane counted a started stream: Envoy's stats must learn it.
            envoy.touched();
        }
        // A pooled slot was readied when its last stream ended (see `destroy`).
        let raw = Pool::into_raw(slot);
        // SAFETY: `raw` is the live, uniquely owned slot we just released; the self-pointer is
        // derived from it after every mutable access, so later uses through Envoy's copy of
        // `raw` stay valid.
        unsafe { (*raw).hooks = raw as *const dyn StreamHooks };
        raw as *const core::ffi::c_void
    }
}

impl<S, Q, R> StreamSlot<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
    pub(crate) fn cfg(&self) -> &JisrConfig<S, Q, R> {
        // SAFETY: Envoy destroys a filter config only after every stream created from it is
        // destroyed, and slots are returned to (or freed with) that config's pool, so the config
        // outlives the slot.
        unsafe { &*self.cfg }
    }

    /// `'static` views of the config and of this slot's storage, for starting pipelines.
    fn statics(&self) -> (&'static JisrConfig<S, Q, R>, &'static Self) {
        // SAFETY: the slot is boxed and does not move while the stream lives; every future
        // created from these references is dropped (`clear_*`) before the slot is reused or
        // freed, and the config outlives the slot (see `cfg`). Handler code is generic over
        // the lifetimes it receives, so it cannot rely on them being `'static`.
        unsafe {
            (
                &*(self.cfg() as *const JisrConfig<S, Q, R>),
                &*(self as *const Self),
            )
        }
    }

    /// Starts the request pipeline.
    pub(crate) fn start_request(&self) {
        let (cfg, this) = self.statics();
        cfg.req.start(&this.req, &cfg.state, (), &this.core);
    }

    /// Polls the request pipeline; its value is kept for the response handler.
    pub(crate) fn poll_request(&self, cx: &mut Context<'_>) -> Poll<()> {
        match Q::poll(&self.req, cx) {
            Poll::Ready(Some(v)) => {
                if R::PRESENT {
                    *self.value.borrow_mut() = Some(v);
                }
                Poll::Ready(())
            }
            Poll::Ready(None) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the filter has a response handler.
    pub(crate) fn has_response(&self) -> bool {
        R::PRESENT
    }

    /// Starts the response pipeline with the request handler's value; false if there is none
    /// (the request handler did not complete).
    pub(crate) fn start_response(&self) -> bool {
        let Some(value) = self.value.borrow_mut().take() else {
            return false;
        };
        let (cfg, this) = self.statics();
        cfg.resp.start(&this.resp, &cfg.state, value, &this.core);
        true
    }

    /// Polls the response pipeline.
    pub(crate) fn poll_response(&self, cx: &mut Context<'_>) -> Poll<()> {
        R::poll(&self.resp, cx).map(|_| ())
    }

    /// The response mode the filter was registered with.
    pub(crate) fn mode(&self) -> ResponseMode {
        self.core.meta.mode
    }

    /// Drops both pipelines' futures and the pending value (not while one is being polled).
    /// A destructor that panics is caught; everything is dropped anyway.
    pub(crate) fn clear(&self) -> Cleared {
        let resp = R::clear(&self.resp);
        if resp == Cleared::Busy {
            return resp;
        }
        let req = Q::clear(&self.req);
        if req == Cleared::Busy {
            return req;
        }
        if !R::PRESENT {
            // No response pipeline: no value is ever kept.
            return resp.and(req);
        }
        let value = match self.value.borrow_mut().take() {
            // Usually taken by the response handler already: nothing to drop.
            None => Cleared::Clean,
            Some(v) => match crate::executor::catch(move || drop(v)) {
                Ok(()) => Cleared::Clean,
                Err(msg) => Cleared::Panicked(msg),
            },
        };
        resp.and(req).and(value)
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
        // SAFETY: guaranteed by the caller: the slot is alive until this call frees it.
        let this = unsafe { &*(ptr as *const Self) };
        if this.core.host.is_set() {
            // Envoy destroys the filter from inside one of our own hooks (an Envoy that tears
            // the stream down synchronously, e.g. during a local reply): freeing now would pull
            // the slot from under the running hook, and Envoy's filter pointer is dead from now
            // on. The hook entry finishes it when it unwinds.
            this.core.update(StreamState::defer_destroy);
            this.core.host.detach();
            return;
        }
        let st = this.core.st();
        let clean = if st.ended() {
            // The usual order: `stream_complete` finished the stream, destroy only recycles it.
            !st.unclean()
        } else {
            // Destroyed without a completion first (the upstream filter chain never completes).
            this.end_without_completion();
            this.finish()
        };
        // SAFETY: guaranteed by the caller.
        let slot = unsafe { Pool::<Self>::from_raw(ptr as *const Self) };
        // SAFETY: the config outlives its streams (see `cfg`); read before the box moves.
        let cfg = unsafe { &*slot.cfg };
        let totals = crate::executor::pool::StreamTotals {
            polls: slot.core.task.polls.get(),
            wakes_inline: slot.core.task.repolls.get(),
            wakes_scheduled: slot.core.task.commits(),
        };
        if clean {
            // Readied for the next stream now: its buffers go back to the worker's shelves.
            let mut slot = slot;
            slot.core.reset();
            cfg.pool.put(slot, totals);
        } else {
            cfg.pool.leak(slot, totals);
        }
        if let Some(envoy) = &cfg.meta.envoy {
            // After the lane counted the end (and the stream's polls and wakes), so a flush
            // this arms reads them.
            envoy.touched();
        }
    }

    /// Whether Envoy asked to destroy the stream while one of our hooks ran, and no hook is
    /// running anymore: the hook entry must now call the destroyer.
    pub(crate) fn take_pending_destroy(&self) -> bool {
        // Read first: after nearly every hook nothing is pending, and the state is not written.
        self.core.st().destroy_pending()
            && !self.core.host.is_set()
            && self.core.take(StreamState::take_destroy)
    }

    /// Marks the stream over: no more polls, wakes are no-ops, futures dropped (their `Drop`s
    /// run with no host: nothing can reach the stream anymore).
    pub(crate) fn finish(&self) -> bool {
        if self.core.st().ended() {
            return !self.core.st().unclean();
        }
        self.core.update(StreamState::end);
        if let Some(key) = self.core.live.take() {
            crate::filter::http::live::leave(key);
        }
        crate::executor::waker::kill(&self.core.task.wake);
        match self.clear() {
            Cleared::Clean => true,
            Cleared::Panicked(msg) => {
                FilterStats::bump(&self.core.meta.stats.drop_panics);
                self.core.log_always(
                    4,
                    format_args!(
                        "jisr: filter '{}': dropping a handler's future panicked: {msg}",
                        self.core.name()
                    ),
                );
                true
            }
            // Not expected: `finish` runs only once no hook (so no poll) of the stream is on
            // the stack. Should it happen, the slot is leaked, never reused (see `destroy`).
            Cleared::Busy => {
                self.core.update(StreamState::mark_unclean);
                false
            }
        }
    }
}

/// Starts the inner pipeline of a chain (from `Next::run`).
pub(crate) fn start_inner<S: 'static, In: 'static, I: Pipeline<S, In>>(
    svc: &'static I,
    storage: &I::Storage,
    state: &'static S,
    input: In,
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
    svc.start(storage, state, input, core);
}

// SAFETY: `destroy` hands a slot to the pool only after `finish` cleaned it: both pipelines'
// futures and the request handler's value are dropped (a slot that could not be cleaned is
// leaked instead). What remains is plain per-stream state (cells, buffers, the arena's heap
// blocks, `Send` wakers) and pointers to the slot itself and its `Sync` config.
unsafe impl<S, Q, R> crate::executor::pool::Idle for StreamSlot<S, Q, R>
where
    S: Send + Sync + 'static,
    Q: Pipeline<S, ()>,
    R: Pipeline<S, Q::Output, Output = ()>,
{
}
